"""Every sampled config of the GEMM space builds and matches numpy, odd shapes included."""

import random

import numpy as np
import pytest
import tvm

from tvmopt.errors import ConfigError
from tvmopt.ops.task import get_task
from tvmopt.schedules import lowering

SHAPES = ["gemm:96x80x48", "gemm:127x64x33", "dense:127x64x33", "dense:40x24x36", "bgemm:3x16x20x12",
          "gemm:1x7x5", "dense:48x96x40",   # weight in panels of 48
          "dense:7x10x33", "dense:197x10x20",  # outputs padded to 16 (and rows to 200)
          # products of two activations: rows padded to 16, columns to 32 in a copy of B (pad_b)
          "bgemm:2x13x21x9", "bgemm_nt:2x13x21x9", "bgemm_nt:3x16x20x12"]


def run(task, config, target, inputs):
    exe = lowering.compile(task.schedule(config, target), target)
    out = tvm.runtime.tensor(np.zeros(task.reference(inputs).shape, "float32"))
    exe.mod["main"](*[tvm.runtime.tensor(x) for x in inputs], out)
    return out.numpy()


@pytest.mark.parametrize("key", SHAPES)
def test_sampled_configs_match_numpy(key, llvm_target):
    task = get_task(key)
    target = llvm_target.tvm_target()
    inputs = task.make_inputs(np.random.default_rng(0))
    expected = task.reference(inputs)
    rng = random.Random(key)
    configs = [task.space.initial()] + [task.space.random(rng) for _ in range(7)]
    for config in configs:
        got = run(task, config, target, inputs)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4, err_msg=str(config))


def test_every_knob_value_is_exercised(llvm_target):
    """Each choice of each non-split knob, on top of a random tiling, stays correct."""
    task = get_task("dense:24x32x16")
    space = task.space
    target = llvm_target.tvm_target()
    inputs = task.make_inputs(np.random.default_rng(1))
    expected = task.reference(inputs)
    rng = random.Random(5)
    for i, knob in enumerate(space.knobs):
        if not hasattr(knob, "values"):
            continue
        for value in knob.values:
            config = list(space.random(rng))
            config[i] = value
            np.testing.assert_allclose(run(task, tuple(config), target, inputs), expected, rtol=1e-4, atol=1e-4,
                                       err_msg=str(config))


@pytest.mark.parametrize("which,n3,split", [("AVX2", 24, True), ("AVX2", 16, True), ("AVX2", 8, False),
                                            ("AVX512", 32, False), ("AVX512", 48, True)])
def test_register_tiles_of_several_vectors_are_split_into_whole_vectors(which, n3, split, llvm_target):
    """4 x 24 on AVX2 is three 8-lane vectors unrolled, not one 24-lane vector (which LLVM keeps
    in no register); on AVX2 any tile of several vectors is split so (4 x 16: two ymm per row,
    1.04 to 1.15x on BERT-sized products), while AVX-512 keeps power-of-two widths as one
    vector. All match numpy."""
    from tvmopt.schedules import isa

    chosen = getattr(isa, which)
    task = get_task("gemm:8x96x32")          # a plain [K, N] B (a dense layer's weight is in panels)
    config = ((1, 1, 2, 4), (1, 96 // n3, 1, n3), (1, 32), False, "local", 16, True, 2)
    assert task.space.contains(config)
    with isa.use(chosen):
        mod = task.schedule(config, llvm_target.tvm_target())
        script = mod.script()
        update = script[:script.index('T.sblock("C_update")')]
        lanes = int(update[update.rindex("T.vectorized(") + len("T.vectorized("):].split(")")[0])
        width = chosen.lanes if n3 % chosen.lanes == 0 else 8
        assert lanes == (width if split else n3), script
        lines = update.splitlines()
        vector = max(i for i, line in enumerate(lines) if "T.vectorized(" in line)
        assert (f"T.unroll({n3 // width})" in lines[vector - 1]) == split, script
        inputs = task.make_inputs(np.random.default_rng(1))
        got = run(task, config, llvm_target.tvm_target(), inputs)
    np.testing.assert_allclose(got, task.reference(inputs), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("which", ["AVX2", "AVX512"])
def test_dense_layers_read_their_weight_in_panels(which, llvm_target):
    """From 32 rows, and below from 1M weights, a dense layer's weight W[N, K] is stored as
    [N/P, K, P] panels at build (P = 48 here), with no packing knob left; the ISA's start (8 x 48
    tiles on AVX-512, 4 x 16 on AVX2) and a register tile across two panels (n3 = 32) both match
    numpy, and so does one row's start (1 x 48 on both: on AVX2 a few rows read each panel
    whole, ``AVX2_PANEL_STREAM_ROWS``). Smaller layers of fewer rows, and widths no panel divides,
    keep [K, N]."""
    from tvmopt.ops.gemm import from_panels
    from tvmopt.schedules import isa

    assert get_task("dense:64x1000x40").shape.panel == 0          # no panel width divides 1000
    assert get_task("dense:16x96x40").shape.panel == 0            # few rows, a small weight
    assert get_task("dense:1x4096x4096").shape.panel == 64        # few rows, a weight past L2
    rng = np.random.default_rng(3)
    w = rng.standard_normal((96, 40)).astype("float32")
    x = rng.standard_normal((64, 40)).astype("float32")
    with isa.use(getattr(isa, which)):
        task = get_task("dense:64x96x40")
        (kernel,) = task.to_kernel([w])
        assert task.shape.panel == 48 and kernel.shape == (2, 40, 48)
        np.testing.assert_array_equal(from_panels(kernel, 48), w.T)
        assert task.space.as_dict(task.space.initial())["tile_n"][3] == (48 if which == "AVX512" else 16)
        assert [k.values for k in task.space.knobs if k.name == "pack_b"] == [(False,)]
        across = ((1, 1, 8, 8), (1, 3, 1, 32), (1, 40), False, "local", 16, True, 2)
        for config in (task.space.initial(), across):
            got = run(task, config, llvm_target.tvm_target(), [x, kernel])
            np.testing.assert_allclose(got, x @ w.T, rtol=1e-4, atol=1e-4, err_msg=str(config))
        import tvmopt.schedules.gemm as gemm

        old, gemm.PANEL_FEW_ROWS_MIN_WEIGHTS = gemm.PANEL_FEW_ROWS_MIN_WEIGHTS, 1   # one row in panels
        try:
            one = get_task("dense:1x96x40")
        finally:
            gemm.PANEL_FEW_ROWS_MIN_WEIGHTS = old
        assert one.shape.panel == 48
        start = one.space.as_dict(one.space.initial())
        assert (start["tile_m"][3], start["tile_n"][3]) == (1, 48)     # one row reads the panel whole
        got = run(one, one.space.initial(), llvm_target.tvm_target(), [x[:1], kernel])
        np.testing.assert_allclose(got, x[:1] @ w.T, rtol=1e-4, atol=1e-4)


def test_rows_that_4_does_not_divide_are_computed_padded_to_8(llvm_target, tmp_path):
    """197 rows (a ViT's tokens) are computed as 200 so the register tile holds 8 rows, not 1:
    the input gets zero rows appended, the write-back (with a fused bias and ReLU) skips them."""
    task = get_task("dense:197x96x40")
    from tvmopt.schedules.isa import current

    # 8 rows on AVX-512, 4 on AVX2 (16 ymm): 197 rows would leave a 1-row tile
    assert task.shape.mp == 200 and task.space.as_dict(task.space.initial())["tile_m"][3] == \
        (8 if current().lanes >= 16 else 4)
    assert get_task("dense:196x96x40").shape.mp == 196 and get_task("gemm:197x96x40").shape.mp == 197
    compiled = _mlp_against_torch(197, 24, llvm_target, tmp_path)
    assert [layer.kernel for layer in compiled.lowered.layers] == ["dense:197x96x40", "dense:197x24x96"]


def _mlp_against_torch(rows: int, outputs: int, llvm_target, tmp_path):
    """A 40 -> 96 -> ``outputs`` MLP exported from PyTorch, compiled for ``rows`` rows, checked
    against PyTorch; returns the compiled model."""
    import torch

    from tvmopt.build.compile import compile_model

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(40, 96), torch.nn.ReLU(), torch.nn.Linear(96, outputs)).eval()
    x = torch.randn(rows, 40)
    torch.onnx.export(model, (x,), str(tmp_path / "m.onnx"), dynamo=False)
    compiled = compile_model(tmp_path / "m.onnx", llvm_target, records=tmp_path / "records", shipped=False)
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(compiled(x.numpy()), expected, rtol=1e-4, atol=1e-5)
    return compiled


def test_few_outputs_that_16_does_not_divide_are_computed_padded(llvm_target, tmp_path):
    """A 10-class head is computed 16 wide so its register tile holds whole vectors: the weight
    is stored with zero columns appended, the write-back (with the fused bias) drops them."""
    task = get_task("dense:64x10x256")
    assert task.shape.np == 16 and task.space.as_dict(task.space.initial())["tile_n"][3] == 16
    assert task.to_kernel([np.ones((10, 256), np.float32)])[0].shape == (256, 16)
    assert get_task("dense:64x48x256").shape.np == 48 and get_task("dense:64x100x256").shape.np == 100
    assert get_task("gemm:64x10x256").shape.np == 10
    compiled = _mlp_against_torch(64, 10, llvm_target, tmp_path)
    assert [layer.kernel for layer in compiled.lowered.layers] == ["dense:64x96x40", "dense:64x10x96"]
    assert compiled.output_shapes() == [[64, 10]]


def test_config_outside_space_is_rejected(llvm_target):
    task = get_task("gemm:16x16x16")
    bad = ((16, 1, 1, 2),) + task.space.initial()[1:]
    with pytest.raises(ConfigError):
        task.schedule(bad, llvm_target.tvm_target())


@pytest.mark.parametrize("key,msg", [("gemm:16x16", "needs 3 dimensions"), ("conv:3x3x3", "unknown workload family"),
                                     ("gemm 16x16x16", "cannot read workload"), ("gemm:0x4x4", "zero extent"),
                                     ("bgemm:4x4x4", "needs 4 dimensions")])
def test_bad_workload_keys(key, msg):
    from tvmopt.errors import WorkloadError

    with pytest.raises(WorkloadError) as info:
        get_task(key)
    assert msg in str(info.value)


@pytest.mark.parametrize("key", ["dense:4x1000x64", "dense:64x256x128", "bgemm_nt:2x8x24x16", "gemm:8x24x16"])
def test_numpy_product_timed_beside_the_kernel_is_the_reference_product(key):
    # the measurer times numpy's product against the kernel: the weight leaves its panels (and
    # padding) before the timed call, and the product still equals the task's reference
    task = get_task(key)
    inputs = task.make_inputs(np.random.default_rng(3))
    np.testing.assert_allclose(task.numpy_product(inputs)(), task.reference(inputs), rtol=1e-5, atol=1e-5)
