"""Compact weight formats, FWHT and N:M masks, against independent references."""

import itertools

import numpy as np
import pytest
import scipy.linalg
import torch

from tvmopt.model import formats
from tvmopt.nn.fastfood import fwht, fwht_np
from tvmopt.nn.nm import nm_mask, transposable_mask


@pytest.mark.parametrize("bits", [1, 2, 3, 5, 8, 11])
def test_pack_bits_round_trip(bits):
    rng = np.random.default_rng(bits)
    codes = rng.integers(0, 1 << bits, size=37)
    stream = formats.pack_bits(codes, bits)
    assert stream.dtype == np.uint8 and stream.size == formats.packed_nbytes(37, bits)
    np.testing.assert_array_equal(formats.unpack_bits(stream, bits, 37), codes)
    rows = rng.integers(0, 1 << bits, size=(5, 13))
    packed = formats.pack_rows(rows, bits)
    assert packed.shape == (5, formats.packed_nbytes(13, bits))
    np.testing.assert_array_equal(formats.unpack_rows(packed, bits, 13), rows)
    np.testing.assert_array_equal(packed[2], formats.pack_bits(rows[2], bits))


def test_pack_bits_layout_is_little_endian():
    # codes 1 and 2 in 3 bits: stream bits 0..2 = 1,0,0 and 3..5 = 0,1,0 -> 0b00010001
    assert formats.pack_bits(np.array([1, 2]), 3).tolist() == [0b00010001]
    with pytest.raises(ValueError):
        formats.pack_bits(np.array([8]), 3)


def test_shift_codes():
    smin, smax = formats.shift_range(5)
    assert (smin, smax) == (-14, 0)
    sign = np.array([1, -1, 0, 1, -1])
    shift = np.array([-14, 0, -3, -7, -1])
    codes = formats.encode_shift(sign, shift, 5, smin)
    assert codes.max() < 32
    np.testing.assert_array_equal(formats.decode_shift(codes, 5, smin),
                                  np.array([2.0 ** -14, -1.0, 0.0, 2.0 ** -7, -0.5], np.float32))
    with pytest.raises(ValueError):
        formats.encode_shift(np.array([1]), np.array([1]), 5, smin)


def test_ternary_codes():
    t = np.array([-1, 0, 1, 1, -1])
    np.testing.assert_array_equal(formats.decode_ternary(formats.encode_ternary(t)), t.astype(np.float32))


def _fmix32_python(h: int) -> int:
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    h ^= h >> 16
    return h


def test_hash_matches_plain_python_murmur_finalizer():
    out, inp, buckets, seed = 7, 11, 13, 42
    for k in range(2):
        bucket, sign = formats.hash_indices(out, inp, buckets, seed, k)
        sb, ss = _fmix32_python(seed + 2 * k), _fmix32_python(seed + 2 * k + 1)
        for i, j in [(0, 0), (3, 5), (6, 10)]:
            key = i * inp + j
            assert bucket[i, j] == (_fmix32_python(key ^ sb) * buckets) >> 32
            assert sign[i, j] == 1 - 2 * (_fmix32_python(key ^ ss) >> 31)
    assert set(np.unique(sign)) <= {-1.0, 1.0}


def test_nm_compress_round_trip():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 16)).astype(np.float32)
    w = w * nm_mask(w, 2, 4)
    w[0, :4] = 0  # a group with fewer than N nonzeros
    values, pos = formats.compress_nm(w, 2, 4)
    assert values.shape == (6, 8) and pos.max() < 4
    np.testing.assert_array_equal(formats.expand_nm(values, pos, 2, 4, 16), w)
    with pytest.raises(ValueError):
        formats.compress_nm(np.ones((2, 8), np.float32), 2, 4)


@pytest.mark.parametrize("n", [1, 2, 8, 64, 1024])
def test_fwht_matches_dense_hadamard(n):
    x = np.random.default_rng(n).standard_normal((3, n)).astype(np.float64)
    expected = x @ scipy.linalg.hadamard(n).T
    np.testing.assert_allclose(fwht(torch.from_numpy(x)).numpy(), expected, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(fwht_np(x), expected, rtol=1e-10, atol=1e-9)
    with pytest.raises(ValueError):
        fwht(torch.zeros(3, 6))


@pytest.mark.parametrize("n,m", [(2, 4), (1, 4), (4, 8), (3, 5)])
def test_nm_mask_keeps_largest_in_each_group(n, m):
    w = np.random.default_rng(m).standard_normal((8, 4 * m))
    mask = nm_mask(w, n, m)
    groups, kept = np.abs(w).reshape(8, 4, m), mask.reshape(8, 4, m)
    assert (kept.sum(axis=2) == n).all()
    # every kept magnitude >= every dropped one in its group
    assert (np.where(kept, groups, np.inf).min(axis=2) >= np.where(kept, -np.inf, groups).max(axis=2)).all()


def _check_transposable(mask, n, m):
    rows, k = mask.shape
    b = mask.reshape(rows // m, m, k // m, m).transpose(0, 2, 1, 3)
    assert (b.sum(axis=3) == n).all(), "row constraint"
    assert (b.sum(axis=2) == n).all(), "column constraint"


@pytest.mark.parametrize("n,m", [(2, 4), (1, 4), (3, 4), (2, 5), (4, 8)])
def test_transposable_masks_constraints_and_optimality(n, m):
    rng = np.random.default_rng(10 * n + m)
    w = rng.standard_normal((2 * m, 3 * m))
    methods = ["optimal", "flow", "greedy"] if m <= 5 else ["optimal", "greedy"]
    masks = {meth: transposable_mask(w, n, m, meth) for meth in methods}
    for mask in masks.values():
        _check_transposable(mask, n, m)
    kept = {meth: float(np.abs(w)[mask].sum()) for meth, mask in masks.items()}
    assert kept["optimal"] >= kept["greedy"] - 1e-9
    if "flow" in kept:   # enumeration and networkx's min-cost flow find the same optimum
        assert kept["optimal"] == pytest.approx(kept["flow"], rel=1e-9)


def test_transposable_optimal_beats_greedy_somewhere_and_brute_force_agrees():
    rng = np.random.default_rng(3)
    # exhaustive check of one 4x4 block: the optimum over all valid masks
    block = np.abs(rng.standard_normal((4, 4)))
    best = max(sum(block[i, j] for i in range(4) for j in range(4) if pick[i][j])
               for pick in _all_2of4_masks())
    opt = transposable_mask(block, 2, 4, "optimal")
    assert float(block[opt].sum()) == pytest.approx(best)
    # over many blocks greedy loses magnitude somewhere
    w = rng.standard_normal((64, 64))
    gap = np.abs(w)[transposable_mask(w, 2, 4)].sum() - np.abs(w)[transposable_mask(w, 2, 4, "greedy")].sum()
    assert gap > 0


def _all_2of4_masks():
    rows = [r for r in itertools.product([0, 1], repeat=4) if sum(r) == 2]
    for pick in itertools.product(rows, repeat=4):
        if all(sum(pick[i][j] for i in range(4)) == 2 for j in range(4)):
            yield pick


def test_transposable_mask_rejects_bad_shapes():
    with pytest.raises(ValueError, match="divisible"):
        transposable_mask(np.ones((6, 8)), 2, 4)
    with pytest.raises(ValueError):
        nm_mask(np.ones((4, 8)), 5, 4)
