"""N:M weights with the product vectorized along the rows (``nm_token_dense``): every config of
its space against numpy on AVX2 and AVX-512 code, its weight layout, the refusals, and 2:4
layers built by the pass: the kernel from 64 rows (AVX2 from 64K weights, AVX-512 from 1M) with
the bias and ReLU in its write-back, matching PyTorch."""

import re

import numpy as np
import pytest

from tvmopt.errors import WorkloadError
from tvmopt.ops.task import TASK_ANNOTATION, get_task
from tvmopt.schedules import isa
from tests_support import avx2_host, check_every_avx512_config, two_four_mlp

AVX512 = isa.host().lanes >= 16


@pytest.mark.parametrize("vector_isa", ["avx2", "avx512"])
@pytest.mark.parametrize("key", ["nm_token_dense:64x48x64x2x4", "nm_token_dense:128x32x128x2x4",
                                 "nm_token_dense:192x16x256x1x4", "nm_token_dense:64x8x64x4x8"])
def test_every_config_matches_numpy(key, vector_isa):
    """AVX2 code runs on every CI machine; AVX-512 code runs where the host has it, else it is
    only compiled."""
    check_every_avx512_config(key, seed=5, least=4, wide=vector_isa == "avx512")


def test_layout_holds_each_output_s_kept_weights_in_blocks_of_32():
    """Block b, output j: kept weights 32b..32b+31 of output j, one after the other (values
    float32, positions 2-bit fields, 4 to a byte, the first in the low bits); the inverse gives
    ``nm_decode_dense``'s logical arrays back."""
    key = "nm_token_dense:64x24x128x2x4"
    task = get_task(key)
    plain = get_task(key.replace("nm_token_dense", "nm_decode_dense"))
    logical = plain.logical(plain.make_inputs(np.random.default_rng(1))[1:])
    values, fields = task.to_kernel(logical)
    assert values.shape == (2, 24, 32) and fields.shape == (2, 24, 8) and fields.dtype == np.uint8
    w = plain.dense_weight(logical)                                    # [K, N]
    for j in range(task.n):
        for s in range(task.kept):
            b, t = divmod(s, 32)
            assert values[b, j, t] == logical[0][s, j]
            pos = (int(fields[b, j, t // 4]) >> (2 * (t % 4))) & 3
            assert w[s // 2 * 4 + pos, j] == logical[0][s, j]
    assert all(np.array_equal(a, b) for a, b in zip(task.logical([values, fields]), logical))


def test_refusals_name_what_is_missing():
    with pytest.raises(WorkloadError, match="multiple of 64"):
        get_task("nm_token_dense:100x32x128x2x4")
    with pytest.raises(WorkloadError, match="32 kept weights"):
        get_task("nm_token_dense:64x32x32x2x4")          # 16 kept weights per output


@pytest.mark.parametrize("wide, width, expected", [(False, 256, "nm_token_dense"), (True, 256, "dense"),
                                                   (True, 1024, "nm_token_dense")])
def test_two_four_layers_of_many_rows_broadcast_weights_over_rows(wide, width, expected, tmp_path):
    """128 rows: AVX2 takes the kernel from 64K weights; AVX-512, whose dense tile is twice as
    wide, from 1M (a 256-wide layer stays dense there). Bias and ReLU run in its write-back."""
    if wide and not AVX512:
        pytest.skip("this CPU has no AVX-512")
    if wide and isa.host().double_pumped:
        pytest.skip("Zen 4 keeps nm_perm_dense at every row count")
    compiled, x, ref = two_four_mlp(tmp_path, (width, width), 128, "llvm" if wide else avx2_host())
    families = [layer.kernel.split(":")[0] for layer in compiled.lowered.layers]
    assert families == [expected, "dense"], families
    np.testing.assert_allclose(compiled(x), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    if expected == "nm_token_dense":
        kernels = [f.script() for _, f in compiled.mod.functions_items()
                   if type(f).__name__ == "PrimFunc" and TASK_ANNOTATION in f.script() and "nm_token" in f.script()]
        assert len(kernels) == 1
        assert not re.findall(r'T\.sblock\("(T_multiply|T_add|relu)\w*"', kernels[0])
        # bias and ReLU read the product where the transposing write-back does
        assert re.search(r"T\.Select\(CT\[v_j, v_i\] \+ \w+\[v_j\] < T\.float32\(0\.0\)", kernels[0]), kernels[0]
