"""2:4 weights picking their inputs in registers (``nm_perm_dense``, AVX-512): the kernel under
every config of its space against numpy (compiled for an AVX-512 CPU where the host lacks one),
its code-word layout, the refusals, and a 2:4 MLP built by the pass: the kernel at few rows on
AVX-512 with the bias and ReLU in its write-back, dense on AVX2 and at 64 rows."""

import re

import numpy as np
import pytest

from tvmopt.errors import WorkloadError
from tvmopt.ops.task import TASK_ANNOTATION, get_task
from tvmopt.schedules import isa
from tests_support import avx2_host, two_four_mlp, check_every_avx512_config

AVX512 = isa.host().lanes >= 16


@pytest.mark.parametrize("key", ["nm_perm_dense:1x32x64x2x4", "nm_perm_dense:4x64x48x2x4",
                                 "nm_perm_dense:6x48x32x2x4", "nm_perm_dense:3x256x32x2x4"])
def test_every_config_matches_numpy(key):
    check_every_avx512_config(key, seed=3, least=4)


def test_code_words_hold_each_kept_inputs_position_among_sixteen():
    """Word w, field t (bits 4t..4t+3) of output j: where kept slot 8w + t of output j sits
    among inputs 16w..16w+15; the values stay nm_decode_dense's. Both are stored in panels of
    128 outputs (schedules/nm_perm.py), each panel whole: output j's entry of row r sits at row
    (j // 128) * rows + r, column j % 128."""
    key = "nm_perm_dense:1x256x32x2x4"
    with isa.use(isa.AVX512):
        task = get_task(key)
    plain = get_task(key.replace("nm_perm_dense", "nm_decode_dense"))
    logical = plain.logical(plain.make_inputs(np.random.default_rng(1))[1:])
    values, words = task.to_kernel(logical)
    assert task.panel == 128 and values.shape == (2 * task.kept, 128) and words.shape == (2 * task.kept // 8, 128)
    w = plain.dense_weight(logical)                                   # [K, N]
    for j in range(task.n):
        p, c = divmod(j, 128)
        for s in range(task.kept):
            assert values[p * task.kept + s, c] == logical[0][s, j]
            at = (int(words[p * task.kept // 8 + s // 8, c].view(np.uint32)) >> (4 * (s % 8))) & 15
            assert w[16 * (s // 8) + at, j] == logical[0][s, j]
    assert all(np.array_equal(a, b) for a, b in zip(task.logical([values, words]), logical))


def test_start_reads_whole_panels_in_at_least_two_parallel_chunks():
    """The start tile is as wide as the weight's panel (one contiguous stream per tile), then as
    many rows as fit 16 accumulators; narrower outputs get narrower panels; a layer of one panel
    gets a narrower tile, so its columns still make two parallel chunks (its 8-vector tile ran on
    one core: 0.73 to 0.80x the dense kernel at 16 and 32 x 128 x 512 on Zen 4)."""
    with isa.use(isa.AVX512):
        for key, rows, vectors in [("nm_perm_dense:1x4096x4096x2x4", 1, 8), ("nm_perm_dense:16x4096x4096x2x4", 2, 8),
                                   ("nm_perm_dense:6x48x32x2x4", 6, 1), ("nm_perm_dense:4x64x48x2x4", 4, 2),
                                   ("nm_perm_dense:16x128x512x2x4", 4, 4), ("nm_perm_dense:1x128x512x2x4", 1, 4)]:
            space = get_task(key).space
            start = space.as_dict(space.initial())
            assert (start["rows"], start["vectors"], start["order"]) == (rows, vectors, "panel"), key


def test_refusals_name_what_is_missing():
    with isa.use(isa.AVX2):
        with pytest.raises(WorkloadError, match="needs AVX-512"):
            get_task("nm_perm_dense:1x32x64x2x4")
    with isa.use(isa.AVX512):
        with pytest.raises(WorkloadError, match="2:4 sparsity"):
            get_task("nm_perm_dense:1x32x64x1x4")
        with pytest.raises(WorkloadError, match="multiples of 16"):
            get_task("nm_perm_dense:1x40x64x2x4")


@pytest.mark.parametrize("wide, batch", [(True, 4), (False, 4), (True, 64)])
def test_two_four_layers_pick_inputs_in_registers_at_few_rows_on_avx512(wide, batch, tmp_path):
    if wide and not AVX512:
        pytest.skip("this CPU has no AVX-512")
    compiled, x, ref = two_four_mlp(tmp_path, (512, 256, 256), batch, "llvm" if wide else avx2_host())
    families = [layer.kernel.split(":")[0] for layer in compiled.lowered.layers]
    # AVX2 at these sizes, and 64 rows on a full-width AVX-512 core: the dense kernel (predicted
    # as fast or faster); on a double-pumped one (Zen 4) the permutes pay at any row count
    expected = "nm_perm_dense" if wide and (batch <= 32 or isa.host().double_pumped) else "dense"
    assert families == [expected, expected, "dense"], families
    np.testing.assert_allclose(compiled(x), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    if expected == "nm_perm_dense":      # the bias and the ReLU run in the kernels' write-back
        kernels = [f.script() for _, f in compiled.mod.functions_items()
                   if type(f).__name__ == "PrimFunc" and TASK_ANNOTATION in f.script() and "nm_perm" in f.script()]
        assert len(kernels) == 2
        for text in kernels:
            assert "permvar" in text
            assert not re.findall(r'T\.sblock\("(T_multiply|T_add|relu)\w*"', text)


def test_start_tiles_are_wide_for_streamed_weights_and_tall_for_many_rows():
    """Up to 32 rows the weight streams from memory once per row tile: the widest tile (2 x 8 at
    16x4096x4096: 1.55x the dense start, 8 x 2 1.04 to 1.17x); from 64 rows it is read from cache
    by many row tiles: the tallest (8 x 2 at 128x768x3072: 1.42x, 2 x 8 1.25x; Zen 4)."""
    from tvmopt.schedules.nm_perm import nm_perm_space

    def start(m, n):
        space = nm_perm_space(m, n, "nm")
        knobs = space.as_dict(space.initial())
        return knobs["rows"], knobs["vectors"], knobs["order"]

    assert start(16, 4096) == (2, 8, "panel")
    assert start(32, 4096) == (2, 8, "panel")
    assert start(128, 768) == (8, 2, "panel")
    assert start(64, 256) == (8, 2, "panel")
