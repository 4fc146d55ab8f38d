"""The CUDA build's kernel choice (tvmopt/passes/choose_cuda.py): records decide where both
kernels have one; otherwise less arithmetic wins at any size and a decode kernel only where the
product is bound by the weight's bytes; every prediction says it is unmeasured on a GPU."""

import pytest

from tvmopt.ops.task import cuda_family
from tvmopt.passes.choose_cuda import choose_cuda


def test_cpu_only_variants_map_to_the_gpu_kernel_of_the_same_weights():
    assert cuda_family("binary_lut_dense") == "binary_dense"
    assert cuda_family("ternary_rowlut_dense") == "ternary_dense"
    assert cuda_family("binary_perm_dense") == "binary_dense"
    assert cuda_family("nm_perm_dense") == "nm_decode_dense"
    assert cuda_family("xnor_dense") == "xnor_dense" and cuda_family("fastfood") == "fastfood"
    assert cuda_family("int8_dense") is None and cuda_family("shift_conv2d") is None


def test_prediction_follows_arithmetic_and_bytes():
    gemv = choose_cuda("auto", "binary_dense", "binary_dense:1x4096x4096", "dense:1x4096x4096", 1, 1 << 24, False)
    assert gemv.compressed and "unmeasured on a GPU" in gemv.why
    many_rows = choose_cuda("auto", "binary_dense", "binary_dense:256x4096x4096", "dense:256x4096x4096", 256,
                            1 << 24, False)
    small = choose_cuda("auto", "shift_dense", "shift_dense:1x256x256", "dense:1x256x256", 1, 1 << 16, False)
    assert not many_rows.compressed and not small.compressed
    assert choose_cuda("auto", "xnor_dense", "xnor_dense:512x64x64", "dense:512x64x64", 512, 4096, False).compressed
    assert choose_cuda("auto", "fastfood", "fastfood:64x256x256", "dense:64x256x256", 64, 1 << 16, False).compressed
    assert not choose_cuda("auto", "hashed_dense", "hashed_dense:1x4096x4096x1024x1", "dense:1x4096x4096", 1,
                           1 << 24, False).compressed
    conv = choose_cuda("auto", "binary_dense", "binary_dense:3136x64x576", "conv2d:1x64x56x56x64x3x3x1x1", 3136,
                       1 << 16, True)
    assert not conv.compressed and "compute-bound" in conv.why


def test_records_decide_and_forcing_works():
    costs = {"binary_dense:1x4096x4096": 2e-5, "dense:1x4096x4096": 1e-5}
    picked = choose_cuda("auto", "binary_dense", "binary_dense:1x4096x4096", "dense:1x4096x4096", 1, 1 << 24, False,
                         cost=costs.get)
    assert not picked.compressed and picked.why == "CUDA records: dense 2.00x faster"
    assert choose_cuda("compressed", "binary_dense", "binary_dense:256x64x64", "dense:256x64x64", 256, 4096,
                       False).label == "compressed (forced)"
    assert choose_cuda("dense", "fastfood", "fastfood:1x256x256", "dense:1x256x256", 1, 1 << 16,
                       False).label == "dense (forced)"
    # a format without a CUDA kernel stays dense, even forced
    none = choose_cuda("compressed", None, "int8_dense:1x64x64", "dense:1x64x64", 1, 4096, False)
    assert not none.compressed and "no CUDA kernel" in none.why
    with pytest.raises(ValueError, match="on CUDA"):
        choose_cuda("measure", "binary_dense", "k", "d", 1, 1, False)
