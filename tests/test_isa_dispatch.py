"""Kernels pick their instruction set from the target and keep an AVX2 path (issue 18, item 4;
issue 19): the same task compiled for an AVX2-only CPU (Zen 3) and an AVX-512 one (Zen 5, with
VPOPCNTDQ) uses each one's instructions, and both agree with numpy where this machine runs them."""

import re
from pathlib import Path

import numpy as np
import pytest

from tvmopt.ops.task import get_task
from tvmopt.schedules import lowering
from tvmopt.target import parse_target
from tests_support import avx512_cpu

AVX2, AVX512 = "znver3", "znver5"


def _host_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def _build(key: str, cpu: str):
    task = get_task(key)
    spec = parse_target(f"llvm -mcpu={cpu} -num-cores=2")
    lib = lowering.compile(task.schedule(task.space.initial(), spec), spec.tvm_target())
    return task, lib, lib.mod.inspect_source("asm")


def _run(task, lib) -> None:
    import tvm

    inputs = task.make_inputs(np.random.default_rng(0))
    expected = task.reference(inputs)
    out = tvm.runtime.tensor(np.zeros(expected.shape, expected.dtype))
    lib["main"](*[tvm.runtime.tensor(a) for a in inputs], out)
    assert task.mismatch(out.numpy(), expected) is None


@pytest.mark.parametrize("key", ["xnor_dense:16x256x512", "xnor_conv2d:1x64x8x8x32x3x3x1x1", "ternary_dense:4x256x512",
                                 "dense:4x256x512", "binary_rowlut_dense:32x256x512", "ternary_rowlut_dense:16x128x256",
                                 "binary_rowlut_conv2d:1x32x8x8x64x3x3x1x1"])
def test_each_target_gets_its_instruction_set_and_both_agree(key):
    flags = _host_flags()
    task, lib2, asm2 = _build(key, AVX2)
    # the AVX-512 build runs here only when compiled for this very CPU: Zen 5 code holds
    # instructions a Zen 4 lacks (an illegal instruction there), so an AVX-512 host builds for itself
    host_avx512 = {"avx512f", "avx512_vpopcntdq"} <= flags or {"avx512f", "avx512vpopcntdq"} <= flags
    _, lib5, asm5 = _build(key, avx512_cpu() if host_avx512 else AVX512)
    assert "zmm" not in asm2 and "ymm" in asm2                     # AVX2: 256-bit vectors only
    assert "zmm" in asm5                                           # AVX-512: 512-bit vectors
    if key.startswith("xnor"):
        assert re.search(r"vpopcnt[dq]", asm5) and "popcnt" not in asm2   # VPOPCNTDQ; AVX2 has no vector popcount
    if "avx2" in flags:
        _run(task, lib2)
    if host_avx512:
        _run(task, lib5)


def test_start_configs_are_shaped_for_the_targets_registers():
    """AVX2 (16 ymm) and AVX-512 (32 zmm) register tiles in the untuned starts; the target's
    CPU picks which (schedules/isa.py); every start computes the right thing."""
    from tvmopt.schedules import isa

    assert isa.for_target(parse_target(f"llvm -mcpu={AVX2}")) is isa.AVX2
    assert isa.for_target(parse_target(f"llvm -mcpu={AVX512}")) is isa.AVX512_VNNI
    assert isa.for_target(parse_target("cuda")) is None
    starts = {}
    for chosen in (isa.AVX2, isa.AVX512):
        with isa.use(chosen):
            conv = get_task("conv2d:1x64x14x14x64x3x3x1x1")
            dense = get_task("dense:16x256x512")
        c = conv.space.as_dict(conv.space.initial())
        d = dense.space.as_dict(dense.space.initial())
        starts[chosen.name] = (c["tile_c"][1] * conv.shape.ob, c["tile_h"][1] * c["tile_w"][1], d["tile_m"][3],
                               d["tile_n"][3], d["pack_b"], c["reduce_order"], d["tile_m"][1])
        for task in (conv, dense):
            _run(task, tvm_build(task))
    # AVX2: 8 ymm accumulators (2 vectors x 4 pixels), the window's taps innermost; 16 rows of a
    # dense layer all inside each block of weight rows (m1 = 1), the weight read once, unpacked
    assert starts["avx2"] == (16, 4, 4, 16, False, "ic_inner", 1)
    # AVX-512: 14 zmm (2 vectors x 7 pixels); 8 x 32 GEMM tile, the 16 rows streaming the weight too
    assert starts["avx512"] == (32, 7, 8, 32, False, "ic_inner", 1)
    # blocks of 8 channels (a grouped conv's 34 per group, padded to 40): two of them on
    # AVX-512, 2 x 8 accumulators (four blocks by 8 pixels would be 32, every zmm)
    with isa.use(isa.AVX512):
        grouped = get_task("conv2d:1x136x28x28x136x1x1x1x0x4")
    g = grouped.space.as_dict(grouped.space.initial())
    assert grouped.shape.ob == 8 and g["tile_c"][1] == 2 and g["tile_h"][1] * g["tile_w"][1] == 8
    _run(grouped, tvm_build(grouped))
    # groups of 68 (ShuffleNet's 272 channels in 4): full-width AVX-512 computes 80 per group in
    # blocks of 16 (one zmm), AVX2 and Zen 4 72 in blocks of 8; both agree with numpy
    shapes = {}
    for chosen in (isa.AVX512, isa.AVX2, isa.ZEN4):
        with isa.use(chosen):
            task = get_task("conv2d_nhwc:1x68x6x6x136x1x1x1x0x2")
            shapes[chosen.name] = (task.shape.ogp, task.shape.ob)
            if chosen is not isa.ZEN4:
                _run(task, tvm_build(task))
    assert shapes == {isa.AVX512.name: (80, 16), isa.AVX2.name: (72, 8), isa.ZEN4.name: (72, 8)}, shapes
    # Zen 4 (double-pumped AVX-512), channels last: 4 zmm of weights by 2 x 2 pixels where 64
    # channels and an even map allow, 1 x 4 on a batch's 8-wide padded 7x7 map; a one-image 7x7
    # map keeps 2 x 7, and so do 48 channels and NCHW outputs; the full-width AVX-512 core takes
    # the same tiles for one image and keeps 32 channels by 8 pixels for a batch; there, a 1x1
    # conv of one image on a 7-wide map takes 64 channels by 7 pixels, input channels inside the
    # tile, where its 64-channel chunks are even in number (Zen 4 keeps 2 x 7)
    tiles, inside = {}, {}
    for chosen in (isa.ZEN4, isa.AVX512):
        for key in ("conv2d_nhwc:2x64x14x14x64x3x3x1x1", "conv2d_nhwc:2x64x7x7x64x3x3x1x1",
                    "conv2d_nhwc:1x64x7x7x64x3x3x1x1", "conv2d_nhwc:1x16x14x14x48x3x3x1x1", "conv2d:2x64x14x14x64x3x3x1x1",
                    "conv2d_nhwc:1x64x14x14x64x3x3x1x1", "conv2d_nhwc:1x64x7x7x128x1x1x1x0",
                    "conv2d_nhwc:1x64x7x7x192x1x1x1x0"):
            with isa.use(chosen):
                task = get_task(key)
            c = task.space.as_dict(task.space.initial())
            tiles[chosen.name, key] = (c["tile_c"][1] * task.shape.ob, c["tile_h"][1], c["tile_w"][1])
            inside[chosen.name, key] = c["ic_at"] == "inside"
            if (chosen is isa.ZEN4 and key.startswith("conv2d_nhwc:2x64x14")) or \
                    (chosen is isa.AVX512 and key.startswith(("conv2d_nhwc:1x64x14", "conv2d_nhwc:1x64x7x7x128"))):
                _run(task, tvm_build(task))
    zen4 = {k: v for (name, k), v in tiles.items() if name == "avx512-vnni-zen4"}
    full = {k: v for (name, k), v in tiles.items() if name == "avx512"}
    assert zen4["conv2d_nhwc:2x64x14x14x64x3x3x1x1"] == (64, 2, 2)
    assert zen4["conv2d_nhwc:2x64x7x7x64x3x3x1x1"] == (64, 1, 4)
    assert zen4["conv2d_nhwc:1x64x7x7x64x3x3x1x1"] == full["conv2d_nhwc:1x64x7x7x64x3x3x1x1"] == (32, 1, 7)
    assert zen4["conv2d_nhwc:1x16x14x14x48x3x3x1x1"] == full["conv2d_nhwc:1x16x14x14x48x3x3x1x1"]
    assert full["conv2d_nhwc:2x64x14x14x64x3x3x1x1"] == (32, 1, 7)
    assert zen4["conv2d_nhwc:1x64x14x14x64x3x3x1x1"] == full["conv2d_nhwc:1x64x14x14x64x3x3x1x1"] == (64, 2, 2)
    assert zen4["conv2d:2x64x14x14x64x3x3x1x1"] == full["conv2d:2x64x14x14x64x3x3x1x1"]
    assert full["conv2d_nhwc:1x64x7x7x128x1x1x1x0"] == (64, 1, 7) and inside["avx512", "conv2d_nhwc:1x64x7x7x128x1x1x1x0"]
    assert zen4["conv2d_nhwc:1x64x7x7x128x1x1x1x0"] == full["conv2d_nhwc:1x64x7x7x192x1x1x1x0"] == (32, 1, 7)
    assert isa.current() is isa.host()                     # the context is gone


def tvm_build(task):
    import tvm

    return lowering.compile(task.schedule(task.space.initial(), None), tvm.target.Target({"kind": "llvm"}))


@pytest.mark.parametrize("key", ["conv2d:1x32x7x7x64x3x3x1x1", "conv2d:2x16x7x7x32x3x3x1x1",
                                 "conv2d:1x8x7x5x13x3x3x1x1"])
def test_half_block_register_tiles_compute_the_convolution(key):
    """``c1_at = halves``: each 16-channel block as two 8-lane tiles over a row of pixels (the
    AVX2 start of one image with a 7-wide output, where 7 x 2 ymm accumulators would spill);
    every config with it agrees with numpy, an odd block (13) included, where it acts as outer."""
    import tvm

    from tvmopt.schedules import isa

    with isa.use(isa.AVX2):
        task = get_task(key)
    start = task.space.as_dict(task.space.initial())
    one_image_of_16 = key.startswith("conv2d:1x") and task.shape.ob == 16
    assert (start["c1_at"] == "halves") == one_image_of_16, start
    if one_image_of_16:
        assert start["tile_w"] == (1, 7) and start["tile_c"][1] == 1
    config = task.space.initial()
    knobs = [k.name for k in task.space.knobs]
    config = config[:knobs.index("c1_at")] + ("halves",) + config[knobs.index("c1_at") + 1:]
    for cfg in {task.space.initial(), config}:
        _run(task, lowering.compile(task.schedule(cfg, None), tvm.target.Target({"kind": "llvm"})))


@pytest.mark.parametrize("key", ["conv2d_nhwc:1x384x13x13x48x1x1x1x0", "conv2d_nhwc:1x48x13x13x192x1x1x1x0",
                                 "conv2d_nhwc:1x32x27x27x128x1x1x1x0"])
def test_avx2_channels_last_starts_take_one_block_of_channels(key):
    """AVX2 channels last (``conv2d.AVX2_ONE_BLOCK``): one block of channels by a tile of at least
    6 ymm accumulators, not several blocks inside the pixel tile, whose 12 accumulators with
    their weight vectors fill all 16 registers and spill (SqueezeNet's 13x13 layers ran 4 to 5x
    slower); the AVX-512 starts are not affected. Compiled for Zen 3, the start agrees with numpy."""
    from tvmopt.schedules import conv2d, isa

    spec = parse_target(f"llvm -mcpu={AVX2} -num-cores=2")
    starts = {}
    for one_block in (True, False):
        conv2d.AVX2_ONE_BLOCK = one_block
        try:
            for chosen in (isa.AVX2, isa.AVX512):
                with isa.use(chosen):
                    starts[one_block, chosen.name] = get_task(key)
        finally:
            conv2d.AVX2_ONE_BLOCK = True
    task = starts[True, "avx2"]
    c = task.space.as_dict(task.space.initial())
    before = starts[False, "avx2"].space.as_dict(starts[False, "avx2"].space.initial())
    assert before["tile_c"][1] > 1 and before["c1_at"] == "inner", before    # what the rule replaces
    assert c["tile_c"][1] == 1 and c["tile_h"][1] * c["tile_w"][1] * task.shape.ob // 8 >= 6, c
    assert starts[True, "avx512"].space.initial() == starts[False, "avx512"].space.initial()
    lib = lowering.compile(task.schedule(task.space.initial(), spec), spec.tvm_target())
    if "avx2" in _host_flags():
        _run(task, lib)


def test_inspect_and_tune_show_the_kernels_of_the_targets_instruction_set(tmp_path):
    """``inspect --target`` and ``tune``'s task list choose kernels as ``build`` does for that
    target, whatever CPU runs them: register tables (AVX-512 only) for a Zen 5, not for a Zen 3
    (they showed the host's choice)."""
    import torch

    import tvmopt.nn as tn
    from tvmopt.build.inspect import inspect_model
    from tvmopt.tune.loop import extract_tasks

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 1024), tn.BinaryLinear(1024, 1024), torch.nn.ReLU(),
                                torch.nn.Linear(1024, 10)).eval()
    path = tn.export_onnx(model, torch.randn(16, 64), tmp_path / "b.onnx", plain=True)
    kernels = {}
    for cpu in (AVX2, AVX512):
        spec = f"llvm -mcpu={cpu} -num-cores=2"
        kernels[cpu] = inspect_model(path, batch=16, target=spec, records=tmp_path)[1].kernel.split(":")[0]
        tasks = [key.split(":")[0] for key, _, _ in extract_tasks(path, 16, target=parse_target(spec), records=tmp_path)]
        assert kernels[cpu] in tasks, (cpu, tasks)
    assert kernels[AVX512] == "binary_perm_dense", kernels
    assert "perm" not in kernels[AVX2], kernels


def test_binarized_convs_count_in_words_with_vpopcntdq_and_in_bytes_on_avx2(tmp_path):
    """The pass picks the XNOR conv for the target's CPU: AVX-512 counts 64-bit words with
    ``vpopcntq`` (``xnor_conv2d_nhwc``), AVX2, which has no vector popcount, counts bytes with
    table shuffles summed over taps (``xnor8_conv2d_nhwc``) where the output channels fill
    ymm blocks of 32 (16: the word kernel); the build for this host matches PyTorch."""
    import torch
    from torch import nn

    import tvmopt.nn as tn
    from tvmopt.build.compile import compile_model

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(),
                          tn.BinaryConv2d(32, 32, 3, padding=1, binarize_input=True), nn.BatchNorm2d(32),
                          tn.BinaryConv2d(32, 32, 1, binarize_input=True), nn.ReLU(),
                          tn.BinaryConv2d(32, 16, 3, padding=1, binarize_input=True)).eval()
    x = torch.randn(1, 3, 10, 10)
    path = tn.export_onnx(model, x, tmp_path / "bnn.onnx")
    for cpu, kernel in ((AVX2, "xnor8_conv2d_nhwc"), (avx512_cpu(), "xnor_conv2d_nhwc")):
        compiled = compile_model(path, f"llvm -mcpu={cpu} -num-cores=2", batch=1, shipped=False,
                                 records=tmp_path / "none")
        assert [layer.kernel.split(":")[0] for layer in compiled.lowered.layers] == \
            ["conv2d_nhwc"] + [kernel] * 2 + ["xnor_conv2d_nhwc"]
        if (kernel == "xnor8_conv2d_nhwc") == ("avx512f" not in _host_flags()):
            with torch.no_grad():
                want = model(x).numpy()
            np.testing.assert_allclose(compiled(x.numpy()), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_binarized_dense_layers_count_in_bytes_on_avx2(tmp_path):
    """The same choice for linear layers: ``xnor8_dense`` on AVX2 where the outputs fill blocks
    of 32, ``xnor_dense`` on AVX-512 and for 48 outputs; scale and bias in the write-back."""
    import torch
    from torch import nn

    import tvmopt.nn as tn
    from tvmopt.build.compile import compile_model

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 96), tn.BinaryLinear(96, 64, binarize_input=True), nn.ReLU(),
                          tn.BinaryLinear(64, 48, binarize_input=True)).eval()
    x = torch.randn(6, 20)
    path = tn.export_onnx(model, x, tmp_path / "mlp.onnx")
    for cpu, first in ((AVX2, "xnor8_dense"), (avx512_cpu(), "xnor_dense")):
        compiled = compile_model(path, f"llvm -mcpu={cpu} -num-cores=2", batch=6, shipped=False,
                                 records=tmp_path / "none")
        assert [layer.kernel.split(":")[0] for layer in compiled.lowered.layers] == ["dense", first, "xnor_dense"]
        if (first == "xnor8_dense") == ("avx512f" not in _host_flags()):
            with torch.no_grad():
                want = model(x).numpy()
            np.testing.assert_allclose(compiled(x.numpy()), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
