"""Compressed layers: their effective weights have the claimed structure (checked with numpy,
independently of the layer code), forward equals the dense product with those weights, the
compact form decodes to the same function, and gradients train them."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from torch import nn

import tvmopt.nn as tn
from tvmopt.model import formats
from tvmopt.model.opset import reference


def _np(t):
    return t.detach().numpy().astype(np.float64)


def _structure_shift(layer):
    w = _np(layer.effective_weight())
    nz = w[w != 0]
    mant, exp = np.frexp(np.abs(nz))           # |w| = mant * 2^exp, power of two <=> mant == 0.5
    assert (mant == 0.5).all()
    assert ((exp - 1 >= layer.shift_min) & (exp - 1 <= layer.shift_max)).all()
    if layer.mode == "ps":
        sign = np.round(np.clip(_np(layer.sign), -1, 1))
        shift = np.round(np.clip(_np(layer.shift), layer.shift_min, layer.shift_max))
        np.testing.assert_array_equal(w, sign * 2.0 ** shift)
    else:
        lat = _np(layer.weight)
        expect = np.sign(lat) * 2.0 ** np.clip(np.round(np.log2(np.abs(lat))), layer.shift_min, layer.shift_max)
        np.testing.assert_allclose(w, expect, rtol=1e-6)


def _structure_binary(layer):
    w = _np(layer.effective_weight()).reshape(layer.out_features, -1)
    lat = _np(layer.weight).reshape(layer.out_features, -1)
    alpha = np.abs(lat).mean(axis=1, keepdims=True) if layer.scale == "channel" else (
        np.abs(lat).mean() if layer.scale == "layer" else 1.0)
    np.testing.assert_allclose(w, np.where(lat >= 0, 1.0, -1.0) * alpha, rtol=1e-6)


def _structure_ternary(layer):
    w = _np(layer.effective_weight()).reshape(layer.out_features, -1)
    lat = _np(layer.weight).reshape(layer.out_features, -1)
    for r in range(lat.shape[0]):
        src = lat[r] if layer.per_channel else lat
        delta = layer.threshold * np.abs(src).mean()
        keep = np.abs(lat[r]) > delta
        alpha = np.abs(src[np.abs(src) > delta]).mean()
        np.testing.assert_allclose(w[r], np.sign(lat[r]) * keep * alpha, rtol=1e-5, atol=1e-7)
    assert len(np.unique(np.abs(w[w != 0]).round(6))) <= (lat.shape[0] if layer.per_channel else 1)


def _structure_nm(layer):
    w = _np(layer.effective_weight()).reshape(layer.out_features, -1)
    groups = w.reshape(w.shape[0], -1, layer.m)
    assert ((groups != 0).sum(axis=2) <= layer.n).all()
    lat = np.abs(_np(layer.weight).reshape(w.shape))
    if not layer.transposable:   # the kept ones are the largest of their group
        lg = lat.reshape(groups.shape)
        kept = groups != 0
        assert (np.where(kept, lg, np.inf).min(axis=2) >= np.where(kept, -np.inf, lg).max(axis=2)).all()


def _structure_hashed(layer):
    w = _np(layer.effective_weight())
    v = _np(layer.values)
    total = np.zeros_like(w)
    for k in range(layer.num_hashes):
        bucket, sign = formats.hash_indices(layer.out_features, layer.in_features, layer.buckets, layer.seed, k)
        total += (1.0 if layer.mix is None else float(layer.mix[k].detach())) * sign * v[bucket]
    np.testing.assert_allclose(w, total, rtol=1e-6, atol=1e-7)
    if layer.num_hashes == 1:
        assert len(np.unique(np.abs(w).round(7))) <= layer.buckets


def _structure_fastfood(layer):
    n, out = layer.n, layer.out_features
    h = scipy.linalg.hadamard(n).astype(np.float64)
    rows = []
    for b in range(layer.blocks):
        p = np.eye(n)[_np(layer.perm[b]).astype(int)]          # (P x)[i] = x[perm[i]]
        v = np.diag(_np(layer.diag_s[b])) @ h @ np.diag(_np(layer.diag_g[b])) @ p @ h @ np.diag(_np(layer.diag_b[b]))
        rows.append(v)
    dense = np.concatenate(rows)[:out, : layer.in_features]
    np.testing.assert_allclose(_np(layer.effective_weight()), dense, rtol=1e-5, atol=1e-6)


def _structure_hadamard(layer):
    h = scipy.linalg.hadamard(layer.n)[1: 1 + layer.out_features, : layer.in_features]
    np.testing.assert_allclose(_np(layer.effective_weight()), h * float(layer.scale.detach()), rtol=1e-6)


LINEAR = [
    ("shift-ps", lambda: tn.ShiftLinear(24, 12), _structure_shift),
    ("shift-q", lambda: tn.ShiftLinear(24, 12, mode="q", weight_bits=4), _structure_shift),
    ("shift-act", lambda: tn.ShiftLinear(24, 12, activation_bits=(4, 6)), _structure_shift),
    ("binary", lambda: tn.BinaryLinear(24, 12), _structure_binary),
    ("binary-xnor", lambda: tn.BinaryLinear(24, 12, scale="layer", binarize_input=True), _structure_binary),
    ("binary-noscale", lambda: tn.BinaryLinear(24, 12, scale=None, bias=False), _structure_binary),
    ("ternary", lambda: tn.TernaryLinear(24, 12), _structure_ternary),
    ("ternary-channel", lambda: tn.TernaryLinear(24, 12, per_channel=True), _structure_ternary),
    ("nm", lambda: tn.NMSparseLinear(24, 12), _structure_nm),
    ("nm-1:4", lambda: tn.NMSparseLinear(24, 12, n=1, m=4), _structure_nm),
    ("nm-T", lambda: tn.NMSparseLinear(24, 12, transposable=True), _structure_nm),
    ("hashed", lambda: tn.HashedLinear(24, 12, buckets=20), _structure_hashed),
    ("funhash", lambda: tn.HashedLinear(24, 12, buckets=20, num_hashes=3, seed=5), _structure_hashed),
    ("fastfood", lambda: tn.Fastfood(24, 40), _structure_fastfood),
    ("fastfood-narrow", lambda: tn.Fastfood(32, 10, bias=False), _structure_fastfood),
    ("hadamard", lambda: tn.HadamardClassifier(24, 10), _structure_hadamard),
]
CONV = [
    ("shift", lambda: tn.ShiftConv2d(4, 8, 3, padding=1), _structure_shift),
    ("binary", lambda: tn.BinaryConv2d(4, 8, 3, stride=2, padding=1, binarize_input=True), _structure_binary),
    ("ternary", lambda: tn.TernaryConv2d(4, 8, (3, 1), padding=(1, 0)), _structure_ternary),
    ("nm", lambda: tn.NMSparseConv2d(4, 8, 3, dilation=2, padding=2), _structure_nm),
    ("nm-T", lambda: tn.NMSparseConv2d(4, 8, 2, transposable=True), _structure_nm),
]


def _expected(layer, x):
    """numpy forward from the effective weight."""
    x = _np(x)
    if getattr(layer, "binarize_input", False):
        x = np.where(x >= 0, 1.0, -1.0)
    if getattr(layer, "activation_bits", None):
        ib, fb = layer.activation_bits
        step = 2.0 ** -fb
        x = np.clip(np.round(x / step) * step, -(2.0 ** ib - step), 2.0 ** ib - step)
    w = _np(layer.effective_weight())
    b = None if layer.bias is None else _np(layer.bias)
    if layer.is_conv:
        y = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), None if b is None else torch.from_numpy(b),
                     layer.stride, layer.padding, layer.dilation).numpy()
        return y
    return x @ w.T + (0 if b is None else b)


@pytest.mark.parametrize("name,make,structure", LINEAR + CONV, ids=[f"linear-{n}" for n, _, _ in LINEAR]
                         + [f"conv-{n}" for n, _, _ in CONV])
def test_layer_structure_forward_and_compact_form(name, make, structure):
    torch.manual_seed(0)
    layer = make()
    structure(layer)
    x = torch.randn(5, 4, 7, 7) if layer.is_conv else torch.randn(5, layer.in_features)
    with torch.no_grad():
        y = layer(x)
    np.testing.assert_allclose(_np(y), _expected(layer, x), rtol=1e-5, atol=1e-5)
    # the compact form (what ONNX stores) decodes to the same function
    inputs, attrs = layer.compact()
    np.testing.assert_allclose(reference(layer.onnx_op, x.numpy(), inputs, attrs), _np(y), rtol=1e-5, atol=1e-5)
    assert layer.weight_bytes() < layer.dense_weight_bytes()


@pytest.mark.parametrize("name,make,structure", LINEAR + CONV, ids=[f"linear-{n}" for n, _, _ in LINEAR]
                         + [f"conv-{n}" for n, _, _ in CONV])
def test_one_training_step_lowers_the_loss(name, make, structure):
    torch.manual_seed(1)
    layer = make()
    x = torch.randn(64, 4, 7, 7) if layer.is_conv else torch.randn(64, layer.in_features)
    with torch.no_grad():
        target = torch.randn_like(layer(x))
    # discrete weights need steps big enough to cross a rounding boundary; Fastfood's diagonals
    # are continuous and sensitive (a product of three of them)
    lr = 1e-3 if isinstance(layer, (tn.Fastfood, tn.HadamardClassifier)) else 0.05
    opt = torch.optim.Adam(layer.parameters(), lr=lr)
    loss = F.mse_loss(layer(x), target)
    loss.backward()
    grads = [p.grad for p in layer.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    opt.step()
    with torch.no_grad():
        after = F.mse_loss(layer(x), target)
    assert after < loss.detach()


def test_weight_memory_ratios():
    assert tn.ShiftLinear(512, 512).weight_bytes() == 512 * 512 * 5 // 8
    assert tn.BinaryLinear(512, 512, scale=None).weight_bytes() == 512 * 512 // 8
    assert tn.TernaryLinear(512, 512).weight_bytes() == 512 * 512 // 4 + 4
    nm = tn.NMSparseLinear(512, 512)
    assert nm.dense_weight_bytes() / nm.weight_bytes() >= 1.7      # values + 2-bit positions
    ff = tn.Fastfood(512, 1024)
    assert ff.weight_bytes() == 2 * 512 * (3 * 4 + 4)              # O(n): 3 diagonals + permutation
    assert tn.HashedLinear(512, 512, buckets=1000).weight_bytes() == 4000


def test_from_dense_conversions_keep_what_they_should():
    torch.manual_seed(0)
    dense = nn.Linear(16, 8)
    with torch.no_grad():   # a dense layer that is already powers of two converts exactly
        dense.weight.copy_(torch.sign(torch.randn(8, 16)) * 2.0 ** torch.randint(-10, 1, (8, 16)).float())
    for mode in ("q", "ps"):
        shift = tn.ShiftLinear.from_dense(dense, mode=mode)
        np.testing.assert_array_equal(_np(shift.effective_weight()), _np(dense.weight))
        np.testing.assert_array_equal(_np(shift.bias), _np(dense.bias))
    binary = tn.BinaryLinear.from_dense(dense, scale=None)
    np.testing.assert_array_equal(_np(binary.effective_weight()), np.where(_np(dense.weight) >= 0, 1.0, -1.0))
    nm = tn.NMSparseLinear.from_dense(dense, n=2, m=4)
    np.testing.assert_array_equal(_np(nm.effective_weight()), _np(dense.weight) * tn.nm_mask(_np(dense.weight), 2, 4))
    # a weight that is itself hashed is recovered exactly by the bucket means
    hashed = tn.HashedLinear(16, 8, buckets=12, seed=3)
    dense2 = nn.Linear(16, 8)
    with torch.no_grad():
        dense2.weight.copy_(hashed.effective_weight())
    back = tn.HashedLinear.from_dense(dense2, buckets=12, seed=3)
    used = np.unique(hashed.bucket[0].numpy())
    np.testing.assert_allclose(_np(back.values)[used], _np(hashed.values)[used], rtol=1e-6)


def test_compress_replaces_layers_and_keeps_skipped_ones():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 16), nn.ReLU(), nn.Linear(16, 4))
    out = tn.compress(model, "ternary", skip=("5",))
    assert isinstance(out[0], tn.TernaryConv2d) and isinstance(out[3], tn.TernaryLinear)
    assert type(out[5]) is nn.Linear and type(model[0]) is nn.Conv2d        # original untouched
    hashed = tn.compress(model, "hashed")
    assert type(hashed[0]) is nn.Conv2d and isinstance(hashed[3], tn.HashedLinear)  # no conv form
    wb = tn.weight_bytes(out)
    assert wb["dense"] == 16 * 4 * 4 and wb["compressed"] < wb["compressed_dense"]
    with pytest.raises(ValueError, match="unknown method"):
        tn.compress(model, "pruned")


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="mode"):
        tn.ShiftLinear(4, 4, mode="x")
    with pytest.raises(ValueError, match="multiple of M"):
        tn.NMSparseLinear(6, 4)
    with pytest.raises(ValueError, match="grouped"):
        tn.BinaryConv2d.from_dense(nn.Conv2d(4, 4, 3, groups=2))
    with pytest.raises(ValueError, match="buckets"):
        tn.HashedLinear(4, 4, buckets=100)


def test_binary_latent_weights_are_clipped():
    layer = tn.BinaryLinear(8, 4)
    with torch.no_grad():
        layer.weight.mul_(10)
    tn.clip_latent_(nn.Sequential(layer))
    assert float(layer.weight.detach().abs().max()) <= 1.0
    assert math.isclose(float(layer.alpha()[0].detach()), float(layer.weight[0].detach().abs().mean()), rel_tol=1e-6)
