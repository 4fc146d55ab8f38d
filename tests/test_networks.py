"""Whole networks: the direct conv2d task, batch-norm folding, epilogue fusion, the default
schedule of every other op, and real CNNs against onnxruntime."""

import itertools
import re

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from tvmopt.build.compile import compile_model
from tvmopt.nn.export import export_onnx
from tvmopt.ops.conv2d import conv2d_reference
from tvmopt.passes.fuse_schedule import fuse, unscheduled_heavy
from tvmopt.schedules import lowering
from tvmopt.target import parse_target
from tvmopt.ops.task import get_task

from tests_support import knob_configs, run_config


def _run_task(task, config, target):
    inputs = task.make_inputs(np.random.default_rng(0))
    return run_config(task, config, inputs, target.tvm_target()), task.reference(inputs)


def test_conv2d_reference_is_pytorch_conv2d():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 9, 11)).astype(np.float32)
    w = rng.standard_normal((7, 5, 3, 2)).astype(np.float32)
    expected = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), stride=2, padding=1).numpy()
    np.testing.assert_allclose(conv2d_reference(x, w, 2, 1), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("key", ["conv2d:1x6x10x9x24x3x3x1x1",    # ob = 8, prime-ish widths
                                 "conv2d:2x16x8x8x32x1x1x2x0",   # batch 2, strided 1x1
                                 "conv2d:1x32x11x13x24x3x3x1x1",   # a prime width, computed padded
                                 "conv2d:1x12x9x9x68x1x1x1x0x2",  # groups of 34 outputs, computed as 40
                                 "conv2d_nhwc:1x6x10x9x24x3x3x1x1",    # channels last: padded input in blocks
                                 "conv2d_nhwc:2x16x8x8x32x1x1x2x0",
                                 "conv2d_nhwc:1x32x11x13x24x3x3x1x1",
                                 "conv2d_nhwc:1x12x9x9x68x1x1x1x0x2",
                                 "conv2d_nhwc:2x32x7x7x16x3x3x1x1",   # a batch of 7-wide maps, computed 8 wide
                                 "conv2d:1x32x5x5x136x1x1x1x0",      # 136 outputs computed as 144 (blocks of 16)
                                 "conv2d_nhwc:2x32x5x5x136x3x3x1x1",
                                 "conv2d_nhwc:1x32x5x27x24x3x3x1x1",    # 27 wide (tiles of 3): 28 computed
                                 "conv2d_nhwc:1x48x11x11x40x1x1x1x0",   # pointwise on a prime map: one row of 128
                                 "conv2d_nhwc:2x128x5x5x136x1x1x1x0"])  # flat (25 -> 32) and channels padded
def test_every_knob_value_of_the_conv2d_space_is_correct(key):
    task = get_task(key)
    if key.startswith("conv2d_nhwc"):               # channels last in and out
        assert task.make_inputs(np.random.default_rng(0))[0].shape[-1] == task.shape.c
    if key.endswith("x11x13x24x3x3x1x1"):          # 13 wide: 16 computed, 3 columns cropped
        assert (task.shape.ow, task.shape.owp) == (13, 16) and task.space.knobs[2].extent == 16
        # a batch of 7-wide maps is computed 8 wide; one image, or stride 2, keeps 7
        assert get_task("conv2d_nhwc:16x512x7x7x512x3x3x1x1").shape.owp == 8
        assert get_task("conv2d_nhwc:1x512x7x7x512x3x3x1x1").shape.owp == 7
        assert get_task("conv2d_nhwc:16x256x14x14x512x3x3x2x1").shape.owp == 7
    if "x136x" in key:                              # 136 -> 144 (160 adds too many); 24 (a third more) stays 24
        assert (task.shape.op, task.shape.ob, task.space.knobs[0].extent) == (144, 16, 9)
        assert get_task("conv2d_nhwc:1x512x13x13x1000x1x1x1x0").shape.op == 1024       # pairs of 16-blocks
        assert get_task("conv2d:1x8x5x5x24x1x1x1x0").shape.op == 24
        assert get_task("shift_conv2d:1x32x5x5x136x1x1x1x0").shape.op == 136    # compressed: no padded channels
    if key.endswith("x1x1x1x0") and key.startswith("conv2d_nhwc:") and key.split("x")[2] in ("11", "5"):
        # pixels as one row, padded to a multiple of 8; the same 1x1 on a map that tiles, NCHW,
        # a 3x3, few inputs, or 5 pixels a tile and fewer than 128 inputs stays 2-D
        assert task.shape.flat and (task.shape.gh, task.shape.gw) == ((1, 128) if "x11x11x" in key else (1, 32))
        assert task.space.knobs[1].extent == 1 and task.space.as_dict(task.space.initial())["parallel"] == 4
        for other in ("conv2d_nhwc:1x48x8x8x40x1x1x1x0", "conv2d:1x48x11x11x40x1x1x1x0", "conv2d_nhwc:1x48x11x11x40x3x3x1x1",
                      "conv2d_nhwc:1x32x11x11x40x1x1x1x0", "conv2d_nhwc:1x64x5x5x40x1x1x1x0"):
            assert not get_task(other).shape.flat, other
        # the direct compressed convs compute the same flat row, their weight decoded once per call
        compressed = get_task("shift_conv2d_nhwc:1x48x11x11x40x1x1x1x0")
        assert compressed.shape.flat and compressed.space.as_dict(compressed.space.initial())["decode"] == "global"
    if "x5x27x" in key:                             # no divisor of 27 from 4 to 8: padded like a prime
        assert (task.shape.ow, task.shape.owp, task.space.knobs[2].extent) == (27, 28, 28)
        assert get_task("conv2d_nhwc:1x32x5x25x24x3x3x1x1").shape.owp == 25       # tiles of 5 already
    if key.endswith("x2"):                          # 8-lane blocks over 2 x 40 channels
        assert (task.shape.ogp, task.shape.ob, task.space.knobs[0].extent) == (40, 8, 10)
    target = parse_target("llvm")
    for config in knob_configs(task.space, 1, 3):      # each value of each choice knob once
        got, expected = _run_task(task, config, target)
        assert task.mismatch(got, expected) is None, config


@pytest.mark.parametrize("key", ["conv2d_nhwc:1x256x7x7x32x1x1x1x0",     # 49 pixels: one row of 54
                                 "conv2d_nhwc:1x256x14x14x48x1x1x2x0",   # stride 2 onto 7x7
                                 "conv2d_nhwc:2x256x14x14x32x1x1x1x0"])  # a batch of 196-pixel maps: 198
def test_avx2_pointwise_convs_on_small_maps_run_as_one_row_of_six_pixel_tiles(key):
    """Built for AVX2, a 1x1 conv of 256 or more inputs on a 7x7 or 14x14 output map (where a 2-D
    tile holds 1 or 4 pixels) computes its pixels as one row padded to a multiple of 6, started
    with the 6-pixel by 2-ymm tile; built for AVX-512 the same key keeps its 2-D grid (its tile
    holds 7 pixels). Every choice knob value and random configs match numpy."""
    from tvmopt.schedules import isa

    with isa.use(isa.AVX512):
        assert not get_task(key).shape.flat
    with isa.use(isa.AVX2):
        task = get_task(key)
    s = task.shape
    pixels = s.oh * s.ow
    assert s.flat and s.narrow_flat and (s.gh, s.gw) == (1, -(-pixels // 6) * 6)
    start = task.space.as_dict(task.space.initial())
    assert start["tile_w"][1] == 6 and start["tile_c"][1] == 1 and start["parallel"] == 4
    with isa.use(isa.AVX2):             # a smaller map tiles well; few inputs, 3x3 or padding stay 2-D
        for other in ("conv2d_nhwc:1x256x28x28x32x1x1x1x0", "conv2d_nhwc:1x128x7x7x32x1x1x1x0",
                      "conv2d_nhwc:1x256x7x7x32x3x3x1x1", "conv2d:1x256x7x7x32x1x1x1x0"):
            assert not get_task(other).shape.flat, other
    target = parse_target("llvm")
    for config in knob_configs(task.space, 2, 3):
        got, expected = _run_task(task, config, target)
        assert task.mismatch(got, expected) is None, config


class _Block(nn.Module):
    """conv-BN-ReLU, conv-BN, + identity, ReLU (a ResNet basic block)."""

    def __init__(self, c):
        super().__init__()
        self.a, self.bn_a = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.b, self.bn_b = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        y = torch.relu(self.bn_a(self.a(x)))
        return torch.relu(self.bn_b(self.b(y)) + x)


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem, self.bn = nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16)
        self.block = _Block(16)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        x = self.pool(self.block(torch.relu(self.bn(self.stem(x)))))
        return self.head(x.mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def small_cnn(tmp_path_factory):
    torch.manual_seed(0)
    model = SmallCNN().eval()
    for m in model.modules():                 # non-trivial running statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    path = export_onnx(model, torch.randn(1, 3, 32, 32), tmp_path_factory.mktemp("cnn") / "small_cnn.onnx",
                       plain=True, dynamic_batch=False)
    x = np.random.default_rng(3).standard_normal((1, 3, 32, 32)).astype(np.float32)
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    return path, x, expected


def _close(got, expected, rel=1e-4):
    assert np.abs(got - expected).max() <= rel * np.abs(expected).max(), np.abs(got - expected).max()


def test_small_cnn_untuned_matches_onnxruntime_with_bn_folded_and_epilogues_fused(small_cnn):
    path, x, expected = small_cnn
    compiled = compile_model(path, "llvm", records=path.parent / "no-records")
    _close(compiled(x), expected)
    # BN folded at import: no batch_norm is left after the pass
    assert "batch_norm" not in compiled.lowered.mod.script(show_meta=False)
    # each conv's bias, ReLU and the residual add run inside the conv's function
    fused = {gv.name_hint: f.script() for gv, f in compiled.mod.functions_items()
             if "tvmopt_task" in f.script() and gv.name_hint.startswith(("fused_conv2d", "fused_winograd_conv2d"))}
    assert len(fused) == 3, sorted(fused)
    # ReLU fused (as x < 0 ? 0 : x, which keeps NaN where max(x, 0) would not)
    assert all("T.Select(" in text and "< T.float32(0.0)" in text for text in fused.values())
    assert any(name.count("add") >= 2 for name in fused)                         # bias + residual
    # nothing heavy runs serial: the build's own checker, and it does catch an unscheduled module
    assert compiled.serial == []
    assert unscheduled_heavy(fuse(compiled.lowered.mod), threshold=1 << 12)


def test_small_cnn_tuned_uses_its_records_and_matches_onnxruntime(small_cnn, tmp_path):
    from tvmopt.tune.loop import tune_model

    path, x, expected = small_cnn
    target = parse_target("llvm")
    result = tune_model(path, target, tuner="random", trials=6, records=tmp_path, progress=False, log=lambda *a: None)
    keys = [key for key, *_ in result.tasks]
    # the stem (3 channels: direct) + the two identical block convs (Winograd)
    assert sum(k.startswith(("conv2d_nhwc:", "winograd_conv2d_nhwc:")) for k in keys) == 2
    compiled = compile_model(path, target, records=tmp_path)
    assert all(compiled.tuned[k] == "records" for k in keys)
    _close(compiled(x), expected)


@pytest.mark.parametrize("network", ["squeezenet", "resnet50"])
def test_real_network_matches_onnxruntime(network, tmp_path):
    from tvmopt.testing import zoo

    path = zoo.realize(network, tmp_path / f"{network}.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    x = np.random.default_rng(1).standard_normal(inp.shape).astype(np.float32)
    expected = sess.run(None, {inp.name: x})[0]
    assert np.std(expected) > 1e-3                 # random weights: logits that differ
    compiled = compile_model(path, "llvm", records=tmp_path / "none")
    _close(compiled(x), expected)
    assert compiled.serial == []
    assert all(k.startswith(("conv2d_nhwc:", "winograd_conv2d_nhwc:", "dense:")) for k in compiled.tuned)  # channels last
    if network == "resnet50":                    # its 3x3 stride-1 layers, 64 to 512 channels: Winograd
        from tvmopt.schedules import isa

        # but on Zen 4, the 512-channel one (16 MiB transformed weight) stays direct
        direct = isa.host() != isa.ZEN4
        assert sum(k.startswith("winograd_conv2d_nhwc:") for k in compiled.tuned) == (3 if direct else 4)
        assert ("conv2d_nhwc:1x512x7x7x512x3x3x1x1" in compiled.tuned) == direct


def test_untuned_build_names_the_tasks_on_defaults(small_cnn, tmp_path):
    from tvmopt.testing.reliability import run_cli

    path, _, _ = small_cnn
    (tmp_path / "none").mkdir()                 # an explicit --records must exist (issue 23)
    out = run_cli(["build", str(path), "-o", str(tmp_path / "m.so"), "--records", str(tmp_path / "none")],
                  cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    warning = [line for line in out.stderr.splitlines() if "no tuning record" in line]
    assert len(warning) == 1 and "conv2d_nhwc:1x16x16x16x16x3x3x1x1" in warning[0], out.stderr


def test_the_start_splits_large_maps_of_one_image_by_rows():
    """One image whose maps outweigh the weight starts with ``parallel = rows`` (each core a band
    of rows, every channel), and so does a compressed conv whose decoded weight fits L2 (each
    thread decodes it), grouped channels-last convs too (ShuffleNet 1.07 to 1.10x); small maps
    under a large weight, a batch, NCHW groups and compressed convs whose decoded weight outgrows
    L2 (decoded per channel chunk) keep the channel chunks, and only one image, of one group or
    channels last, has the value at all."""
    def parallel(key):
        task = get_task(key)
        return task.space.as_dict(task.space.initial())["parallel"], task.space.knobs[8].values

    for key in ("conv2d_nhwc:1x64x56x56x256x1x1x1x0", "conv2d:1x64x56x56x64x3x3x1x1",
                "conv2d_nhwc:1x128x28x28x512x1x1x1x0", "shift_conv2d_nhwc:1x64x56x56x64x3x3x1x1",
                "conv2d_nhwc:1x136x28x28x136x1x1x1x0x4"):
        assert parallel(key)[0] == "rows", key
    for key in ("conv2d_nhwc:1x512x7x7x2048x1x1x1x0", "conv2d_nhwc:1x256x14x14x1024x1x1x1x0",
                "shift_conv2d_nhwc:1x256x56x56x256x3x3x1x1"):
        start, values = parallel(key)
        assert start != "rows" and "rows" in values, key
    for key in ("conv2d_nhwc:2x64x56x56x256x1x1x1x0", "conv2d:1x64x56x56x256x1x1x1x0x2"):
        assert "rows" not in parallel(key)[1], key
    task = get_task("conv2d_nhwc:1x12x9x9x68x1x1x1x0x2")      # padded groups, split by rows: as numpy
    config = task.space.replaced(task.space.initial(), {"parallel": "rows"})
    got, expected = _run_task(task, config, parse_target("llvm"))
    assert task.mismatch(got, expected) is None


def test_space_moves_stay_in_the_conv2d_space():
    space = get_task("conv2d:1x64x56x56x64x3x3x1x1").space
    start = space.initial()
    assert space.contains(start)
    for c in itertools.islice(space.neighbours(start), 50):
        assert space.contains(c)


def test_batch_norm_not_after_a_conv_and_asymmetric_padding(tmp_path):
    """BN after a ReLU becomes a per-channel multiply-add; a conv with asymmetric pads gets an
    explicit pad before the direct kernel (pads = 0 in its key). Both match onnxruntime."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(4)
    w1 = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    w2 = rng.standard_normal((16, 8, 2, 2)).astype(np.float32)
    stats = [rng.uniform(0.5, 1.5, 8), rng.normal(0, 0.1, 8), rng.normal(0, 0.1, 8), rng.uniform(0.5, 1.5, 8)]
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")] + [
        numpy_helper.from_array(a.astype(np.float32), n) for a, n in zip(stats, ("g", "b", "m", "v"))]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("BatchNormalization", ["r1", "g", "b", "m", "v"], ["n1"]),
             helper.make_node("Conv", ["n1", "w2"], ["y"], pads=[0, 1, 1, 0], strides=[2, 2])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 11, 11])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    path = tmp_path / "bn_pad.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    x = rng.standard_normal((1, 3, 11, 11)).astype(np.float32)
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    compiled = compile_model(path, "llvm", records=tmp_path / "none")
    _close(compiled(x), expected)
    assert "batch_norm" not in compiled.lowered.mod.script(show_meta=False)
    assert "conv2d_nhwc:1x8x12x12x16x2x2x2x0" in compiled.tuned     # 11 + 0 + 1 padded explicitly


@pytest.mark.parametrize("case", ["max", "avg", "max_128", "avg_72", "sum_hw", "row_sum", "nchw_max"])
def test_default_schedule_vectorizes_channels_last_window_reductions(case):
    """Pooling over NHWC: the channels go inside the window loops and run as vectors (the serial
    NHWC max pool of ResNet-18 took 2.4x onnxruntime's time), wide channels in chunks with the
    window inside each (128 as 2 x 64, 72 as 9 x 8); reductions whose inner axis is not the
    buffers' last (a row sum, NCHW pooling) keep the plain schedule. All against torch."""
    import tvm
    from tvm import te, topi

    from tvmopt.passes.fuse_schedule import default_schedule

    rng = np.random.default_rng(0)
    nhwc = case in ("max", "avg", "max_128", "avg_72", "sum_hw")
    shape = {"row_sum": (6, 40), "nchw_max": (1, 16, 12, 12), "sum_hw": (2, 7, 7, 32), "max_128": (2, 9, 9, 128),
             "avg_72": (1, 11, 11, 72)}.get(case, (2, 12, 12, 32))
    x = rng.standard_normal(shape).astype(np.float32)
    X = te.placeholder(shape, "float32", name="X")
    t = torch.from_numpy(x)
    kind = case.split("_")[0]
    if kind in ("max", "avg"):
        Y = topi.nn.pool2d(X, (3, 3), (2, 2), (1, 1), (1, 1, 1, 1), kind, layout="NHWC", count_include_pad=True)
        pool = torch.nn.functional.max_pool2d if kind == "max" else torch.nn.functional.avg_pool2d
        want = pool(t.permute(0, 3, 1, 2), 3, 2, 1).permute(0, 2, 3, 1)
    elif case == "sum_hw":                      # a global pool's sum over rows and columns
        Y = topi.sum(X, axis=(1, 2))
        want = t.sum(dim=(1, 2))
    elif case == "row_sum":
        Y = topi.sum(X, axis=1)
        want = t.sum(dim=1)
    else:
        Y = topi.nn.pool2d(X, (3, 3), (2, 2), (1, 1), (1, 1, 1, 1), "max", layout="NCHW")
        want = torch.nn.functional.max_pool2d(t, 3, 2, 1)
    sch = tvm.s_tir.Schedule(tvm.IRModule({"main": te.create_prim_func([X, Y]).with_attr("global_symbol", "main")}))
    default_schedule(sch)
    script = sch.mod.script()
    vector_inside = _vector_inside_window(script)
    assert vector_inside == nhwc, script
    if case in ("max_128", "avg_72"):           # the chunk of channels outside the window's taps
        lines = script.splitlines()
        chunk = next(i for i, line in enumerate(lines) if re.search(r"for \w+_0 in ", line))
        taps = next(i for i, line in enumerate(lines) if "for rv" in line)
        assert chunk < taps, script
    lib = lowering.compile(sch.mod, parse_target("llvm").tvm_target())
    out = tvm.runtime.tensor(np.zeros(tuple(int(d) for d in Y.shape), np.float32))
    lib["main"](tvm.runtime.tensor(x), out)
    np.testing.assert_allclose(out.numpy(), want.numpy(), rtol=1e-5, atol=1e-5)


def _vector_inside_window(script: str) -> bool:
    """Whether the vectorized loop of the reduction's update (not of an init moved before it)
    sits inside a loop over reduction variables (rv*/k*)."""
    lines = script.splitlines()
    for i, line in enumerate(lines):
        if "T.vectorized(" in line and "_init" not in line:
            return any(("for rv" in prev or "for k" in prev) for prev in lines[max(0, i - 3):i])
    return False


def test_exp_and_sigmoid_run_as_polynomials_and_match_onnxruntime(tmp_path):
    """``Exp``, ``Sigmoid`` and SiLU (``x * sigmoid(x)``, fused into a conv's write-back) run as
    TOPI's fast_exp polynomial, not a libm ``expf`` per element (an EfficientNet-style network
    took 2.7x onnxruntime's time in them); NaN stays NaN and the infinities give 0, 1 and inf as
    in onnxruntime; exp and sigmoid within 1e-5 of float64 numpy, SiLU within 1e-6 of
    onnxruntime's largest output (whose logistic flushes tiny values to 0)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(5)
    w = numpy_helper.from_array((rng.standard_normal((8, 4, 3, 3)) * 0.5).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Sigmoid", ["c"], ["s"]), helper.make_node("Mul", ["c", "s"], ["silu"]),
             helper.make_node("Exp", ["x"], ["e"]), helper.make_node("Sigmoid", ["x"], ["sx"])]
    outputs = ["silu", "e", "sx"]
    graph = helper.make_graph(nodes, "fastmath", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs], [w])
    path = tmp_path / "fastmath.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    x = rng.uniform(-30.0, 30.0, (1, 4, 8, 8)).astype(np.float32)
    x[0, 0, 0, :4] = [np.nan, np.inf, -np.inf, 0.0]
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    compiled = compile_model(path, "llvm", records=tmp_path / "none")
    got = [np.asarray(g) for g in compiled(x)]
    silu, e = got[0], expected[0]
    np.testing.assert_array_equal(np.isnan(silu), np.isnan(e))             # the NaN input's window
    fin = np.isfinite(e)
    assert np.abs(silu[fin] - e[fin]).max() <= 1e-6 * np.abs(e[fin]).max(), np.abs(silu[fin] - e[fin]).max()
    x64 = x.astype(np.float64)
    with np.errstate(over="ignore"):
        exact = {"e": np.exp(x64), "sx": 1 / (1 + np.exp(-x64))}
    for name, g, want in zip(outputs[1:], got[1:], expected[1:]):
        np.testing.assert_allclose(g, exact[name], rtol=1e-5, atol=0, equal_nan=True, err_msg=name)
        np.testing.assert_array_equal(np.isnan(g), np.isnan(want))             # NaN where onnxruntime has it
        np.testing.assert_array_equal(g[np.isinf(x)], want[np.isinf(x)])         # exp: inf, 0; sigmoid: 1, 0
    text = compiled.mod.script(show_meta=False)
    assert "T.exp(" not in text and "T.sigmoid(" not in text
    assert any(gv.name_hint.startswith("fused_conv2d") and "sigmoid" in gv.name_hint
               for gv, _ in compiled.mod.functions_items()), "SiLU left out of the conv's write-back"


def test_quarter_powers_run_as_square_roots_and_match_onnxruntime(tmp_path):
    """``x ** c`` for a constant whole number of quarters (local response normalization's 0.75,
    its reciprocal, 0.5, 2.25) runs as products and square roots, vectorizable, not a libm
    ``pow`` per element; NaN where ``pow`` gives NaN (negative x); other exponents keep ``pow``.
    LRN as Inception v1 and AlexNet have it matches onnxruntime."""
    import onnx
    from onnx import TensorProto, helper

    exps = [0.75, -0.75, 0.5, 2.25, 1.3]
    nodes = [helper.make_node("LRN", ["x"], ["lrn"], size=5, alpha=1e-4, beta=0.75, bias=1.0)]
    for i, c in enumerate(exps):
        nodes.append(helper.make_node("Constant", [], [f"c{i}"], value=helper.make_tensor(f"t{i}", TensorProto.FLOAT, [], [c])))
        nodes.append(helper.make_node("Pow", ["x", f"c{i}"], [f"p{i}"]))
    outputs = ["lrn"] + [f"p{i}" for i in range(len(exps))]
    graph = helper.make_graph(nodes, "pows", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 6, 6])],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs])
    path = tmp_path / "pows.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    x = np.random.default_rng(4).uniform(0.05, 4.0, (1, 16, 6, 6)).astype(np.float32)
    x[0, 0, 0, :3] = [-1.0, 0.0, -2.5]                        # pow: NaN, 0 (inf for -0.75), NaN
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    compiled = compile_model(path, "llvm", records=tmp_path / "none")
    got = compiled(x)
    got = got if isinstance(got, (list, tuple)) else [got]
    for name, g, e in zip(outputs, got, expected):
        np.testing.assert_allclose(np.asarray(g), e, rtol=2e-6, atol=0, equal_nan=True, err_msg=name)
    text = compiled.mod.script(show_meta=False)
    assert text.count("T.pow(") == 1 and text.count("T.sqrt(") >= 4, text.count("T.pow(")     # 1.3 alone keeps pow


@pytest.mark.parametrize("case", ["max", "min", "sum", "odd"])
def test_default_schedule_splits_whole_tensor_reductions_across_cores_and_lanes(case):
    """A tensor reduced to one value (``DynamicQuantizeLinear``'s max and min of every quantized
    input): partial results per parallel chunk and vector lane, then reduced (serial and scalar,
    two of them over BERT's 128 x 3072 hidden activations took 0.43 ms). A count that does not
    divide into chunks and lanes keeps the serial schedule. All against numpy."""
    import tvm
    from tvm import te

    from tvmopt.passes.fuse_schedule import FULL_REDUCTION_CHUNKS, FULL_REDUCTION_LANES, default_schedule

    shape = (63, 67) if case == "odd" else (64, 96)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    X = te.placeholder(shape, "float32", name="X")
    i, j = te.reduce_axis((0, shape[0]), name="i"), te.reduce_axis((0, shape[1]), name="j")
    reducer = {"max": te.max, "min": te.min}.get(case, te.sum)
    Y = te.compute((), lambda: reducer(X[i, j], axis=[i, j]), name="Y")
    sch = tvm.s_tir.Schedule(tvm.IRModule({"main": te.create_prim_func([X, Y]).with_attr("global_symbol", "main")}))
    default_schedule(sch)
    script = sch.mod.script()
    split = case != "odd"
    assert (f"T.parallel({FULL_REDUCTION_CHUNKS})" in script) == split, script
    assert (f"T.vectorized({FULL_REDUCTION_LANES})" in script) == split, script
    lib = lowering.compile(sch.mod, parse_target("llvm").tvm_target())
    out = tvm.runtime.tensor(np.zeros((), np.float32))
    lib["main"](tvm.runtime.tensor(x), out)
    want = {"max": x.max(), "min": x.min()}.get(case, x.astype(np.float64).sum())
    np.testing.assert_allclose(float(out.numpy()), want, rtol=1e-5, atol=1e-4)
