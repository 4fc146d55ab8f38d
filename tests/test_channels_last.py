"""The graph-wide channels-last layout (passes/layout.py): which models get it, and every
conversion (pooling, concatenation, residual adds, means, flatten, dropout, exported scales,
asymmetric padding, depthwise and compressed convolutions) against onnxruntime."""

import re

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from tvmopt.build.compile import compile_model
from tvmopt.passes.structure import DetectOptions
from tvmopt.schedules import lowering


class _Inception(nn.Module):
    """stem conv, max pool, two branches concatenated, a residual add, dropout, a per-channel
    scale and shift (a batch norm not after a conv), average pool, flatten, linear."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.a = nn.Conv2d(16, 8, 1)
        self.b = nn.Sequential(nn.Conv2d(16, 8, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))
        self.bn = nn.BatchNorm2d(16)
        self.odd = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(16, 24, 2, stride=2))    # asymmetric padding
        self.drop = nn.Dropout(0.5)
        self.avg = nn.AvgPool2d(2)
        self.head = nn.Linear(24 * 2 * 2, 10)

    def forward(self, x):
        x = self.pool(torch.relu(self.stem(x)))
        y = torch.cat([self.a(x), self.b(x)], dim=1) + x
        y = self.odd(torch.relu(self.bn(y)))
        return self.head(torch.flatten(self.avg(self.drop(y)), 1))


def _export(model, path, shape=(1, 3, 32, 32)):
    torch.onnx.export(model.eval(), (torch.randn(*shape),), str(path), dynamo=False, opset_version=17,
                      input_names=["x"])
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    return x, ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def _permutes(compiled) -> int:
    return compiled.lowered.mod.script(show_meta=False).count("R.permute_dims(")


def _kernels(compiled) -> list[str]:
    return [layer.kernel for layer in compiled.lowered.layers]


@pytest.fixture(scope="module")
def inception(tmp_path_factory):
    torch.manual_seed(0)
    model = _Inception()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("nhwc") / "inception.onnx"
    return (path,) + _export(model, path)


def test_a_dense_model_runs_channels_last_end_to_end_and_matches_onnxruntime(inception):
    path, x, want = inception
    compiled = compile_model(path, "llvm", shipped=False)
    kernels = _kernels(compiled)
    assert all(k.startswith("conv2d_nhwc:") for k in kernels if "conv2d" in k), kernels
    assert "conv2d_nhwc:1x16x9x9x24x2x2x2x0" in kernels       # 8x8 padded right and bottom (a Pad op)
    # one transpose in (the image) and one out (before the flatten): pooling, concat, the residual
    # add, the scale and shift, dropout and the average pool all stay channels last
    assert _permutes(compiled) == 2, compiled.lowered.mod.script(show_meta=False)
    np.testing.assert_allclose(compiled(x), want, rtol=1e-4, atol=1e-4)


def test_nchw_on_request_gives_the_same_outputs(inception):
    path, x, want = inception
    compiled = compile_model(path, "llvm", shipped=False, options=DetectOptions(layout="nchw", winograd=False))
    assert not any("nhwc" in k for k in _kernels(compiled))
    assert _permutes(compiled) == 0
    np.testing.assert_allclose(compiled(x), want, rtol=1e-4, atol=1e-4)


class _Depthwise(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 16, 3, padding=1)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.g = nn.Conv2d(16, 32, 1, groups=2)

    def forward(self, x):
        return self.g(torch.relu(self.dw(torch.relu(self.a(x))))).mean(dim=(2, 3))


def test_depthwise_models_run_channels_last_and_match_in_either_layout(tmp_path):
    """A depthwise conv of one output per channel has a channels-last kernel
    (``depthwise_conv2d_nhwc``: a tap is one vector of channels), so a MobileNet-style model runs
    NHWC end to end (EfficientNet- and MobileNet-style networks 1.26 to 1.41x their NCHW builds);
    NCHW on request; both match onnxruntime."""
    torch.manual_seed(0)
    path = tmp_path / "dw.onnx"
    x, want = _export(_Depthwise(), path, (1, 3, 12, 12))
    auto = compile_model(path, "llvm", shipped=False, options=DetectOptions(winograd=False))
    kernels = _kernels(auto)
    assert "depthwise_conv2d_nhwc:1x16x12x12x16x3x3x1x1" in kernels and "conv2d_nhwc:1x16x12x12x32x1x1x1x0x2" in kernels
    assert _permutes(auto) == 1, _permutes(auto)          # the image's, and none around the depthwise conv
    nchw = compile_model(path, "llvm", shipped=False, options=DetectOptions(layout="nchw"))
    assert "depthwise_conv2d:1x16x12x12x16x3x3x1x1" in _kernels(nchw)
    for compiled in (auto, nchw):
        np.testing.assert_allclose(compiled(x), want, rtol=1e-4, atol=1e-4)


class _Shuffle(nn.Module):
    """ShuffleNet's unit in small: a grouped 1x1 conv, a channel shuffle, a depthwise conv."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 16, 3, padding=1)
        self.g = nn.Conv2d(16, 16, 1, groups=4)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)

    def forward(self, x):
        y = torch.relu(self.g(torch.relu(self.a(x))))
        n, c, h, w = y.shape
        y = y.reshape(n, 4, c // 4, h, w).transpose(1, 2).reshape(n, c, h, w)
        return self.dw(y).mean(dim=(2, 3))


def test_a_channel_shuffle_runs_channels_last_as_one_kernel(tmp_path):
    """A channel shuffle (reshape into groups, transpose, reshape back) is one channels-last kernel
    (``channel_shuffle_kernel``: each pixel's groups x channels transposed), not the NCHW chain
    between two transposes, so ``auto`` takes ShuffleNet-style models channels last; the graph's
    only transpose is the image's. NCHW on request; both match onnxruntime, and the kernel
    matches numpy's shuffle of an NHWC map."""
    import tvm

    from tvmopt.passes.layout import channel_shuffle_kernel

    torch.manual_seed(0)
    path = tmp_path / "shuffle.onnx"
    x, want = _export(_Shuffle(), path, (1, 3, 12, 12))
    auto = compile_model(path, "llvm", shipped=False, options=DetectOptions(winograd=False))
    assert "depthwise_conv2d_nhwc:1x16x12x12x16x3x3x1x1" in _kernels(auto) and \
        "conv2d_nhwc:1x16x12x12x16x1x1x1x0x4" in _kernels(auto), _kernels(auto)
    script = auto.lowered.mod.script(show_meta=False)
    assert script.count("channel_shuffle") >= 2 and "R.reshape(" not in script, script      # defined and called
    assert _permutes(auto) == 1, _permutes(auto)
    nchw = compile_model(path, "llvm", shipped=False, options=DetectOptions(layout="nchw"))
    assert "depthwise_conv2d:1x16x12x12x16x3x3x1x1" in _kernels(nchw)
    for compiled in (auto, nchw):
        np.testing.assert_allclose(compiled(x), want, rtol=1e-4, atol=1e-4)
    a = np.random.default_rng(1).standard_normal((2, 3, 5, 12)).astype(np.float32)
    lib = lowering.compile(tvm.IRModule({"main": channel_shuffle_kernel(2, 3, 5, 4, 3).with_attr("global_symbol", "main")}),
                           tvm.target.Target("llvm"))
    out = tvm.runtime.tensor(np.zeros_like(a))
    lib["main"](tvm.runtime.tensor(a), out)
    np.testing.assert_array_equal(out.numpy(), a.reshape(2, 3, 5, 4, 3).transpose(0, 1, 2, 4, 3).reshape(2, 3, 5, 12))


def test_a_channel_split_that_is_not_a_shuffle_keeps_the_graph_nchw(tmp_path):
    """Channels reshaped into groups and used otherwise (here summed over the groups) would run
    between two transposes channels last: ``auto`` keeps such a model NCHW."""

    class Split(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 16, 3, padding=1)

        def forward(self, x):
            y = torch.relu(self.a(x))
            n, c, h, w = y.shape
            return y.reshape(n, 4, c // 4, h, w).sum(dim=1).mean(dim=(2, 3))

    torch.manual_seed(0)
    path = tmp_path / "split.onnx"
    x, want = _export(Split(), path, (1, 3, 12, 12))
    auto = compile_model(path, "llvm", shipped=False, options=DetectOptions(winograd=False))
    assert not any("nhwc" in k for k in _kernels(auto)), _kernels(auto)
    np.testing.assert_allclose(auto(x), want, rtol=1e-4, atol=1e-4)


def test_compressed_convolutions_run_channels_last_too(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with torch.no_grad():        # the second conv's weights: signed powers of two
        w = model[2].weight
        w.copy_(torch.sign(w) * 2.0 ** torch.randint(-6, 0, w.shape).float())
    path = tmp_path / "shift.onnx"
    x, want = _export(model, path, (1, 3, 10, 10))
    for layout, kernel in (("auto", "shift_conv2d_nhwc:"), ("nchw", "shift_conv2d:")):
        compiled = compile_model(path, "llvm", shipped=False, options=DetectOptions(layout=layout, winograd=False,
                                                                                     kernels="compressed"))
        assert any(k.startswith(kernel) for k in _kernels(compiled)), _kernels(compiled)
        np.testing.assert_allclose(compiled(x), want, rtol=1e-4, atol=1e-4)



class _OptionA(nn.Module):
    """DeepShift's CIFAR ResNet shortcut (option A): a strided slice, then channels padded with
    zeros, added to a strided conv's output."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.down = nn.Conv2d(8, 16, 3, stride=2, padding=1)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        shortcut = nn.functional.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 4, 4))
        return torch.relu(self.down(x) + shortcut)


def test_a_zero_pad_of_channels_is_carried_through_channels_last(tmp_path):
    """Relax has no layout rule for nn.pad: without the pass's rewrite each shortcut ran
    between two transposes."""
    torch.manual_seed(0)
    path = tmp_path / "option_a.onnx"
    x, want = _export(_OptionA(), path, (1, 3, 12, 12))
    compiled = compile_model(path, "llvm", shipped=False)
    assert all(k.startswith("conv2d_nhwc:") for k in _kernels(compiled)), _kernels(compiled)
    assert _permutes(compiled) == 2                      # the entry's and the exit's only
    np.testing.assert_allclose(compiled(x), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("variant", ["ternary", "shift"])
def test_compact_exports_run_channels_last_and_match_their_plain_export(variant, llvm_target, tmp_path):
    """tvmopt.nn's ai.tvmopt conv nodes become the plain ops they decode to before the layout is
    chosen (passes/placeholders.py), so a bundled compact CNN runs its convolutions channels last
    (it was held NCHW) and agrees with onnxruntime on the model's plain export."""
    from pathlib import Path

    models = Path(__file__).resolve().parents[1] / "examples" / "models"
    compiled = compile_model(models / f"digits_cnn_{variant}.onnx", llvm_target, records=tmp_path / "r",
                             shipped=False, batch=4)
    convs = [layer.kernel for layer in compiled.lowered.layers if "conv2d" in layer.kernel]
    assert convs and all(k.split(":")[0].endswith("conv2d_nhwc") for k in convs), convs
    x = np.random.default_rng(0).standard_normal((4, 1, 8, 8)).astype(np.float32)
    sess = ort.InferenceSession(str(models / f"digits_cnn_{variant}.plain.onnx"), providers=["CPUExecutionProvider"])
    expected = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(compiled(x), expected, rtol=1e-4, atol=1e-4)


def test_a_channels_last_concatenation_copies_each_input_with_vector_loops():
    """Concatenation along the innermost axis (fire modules, inception blocks channels last):
    one copy per input into its slice of the output, vectorized, with a ReLU after it fused
    (passes/fuse_schedule.py ``_concat_by_input``); unequal and odd channel counts included."""
    import tvm
    from tvm import relax

    from tvmopt.passes.fuse_schedule import fuse, schedule_module
    from tvmopt.target import parse_target

    shapes = [(2, 5, 7, 16), (2, 5, 7, 24), (2, 5, 7, 5)]
    bb = relax.BlockBuilder()
    xs = [relax.Var(f"x{i}", relax.TensorType(s, "float32")) for i, s in enumerate(shapes)]
    with bb.function("main", xs):
        with bb.dataflow():
            y = bb.emit(relax.op.concat(xs, axis=-1))
            y = bb.emit_output(bb.emit(relax.op.nn.relu(y)))
        bb.emit_func_output(y)
    mod, _ = schedule_module(fuse(bb.get()), lambda *a: None)
    text = mod.script(show_meta=False)
    assert all(f'T.sblock("concatenate_{i}")' in text for i in range(3)) and "if_then_else" not in text, text
    assert all(re.search(rf"T\.vectorized\((T\.int64\()?{n}\b", text) for n in (16, 24)), text
    vm = relax.VirtualMachine(lowering.compile(mod, parse_target("llvm").tvm_target()), tvm.cpu())
    arrays = [np.random.default_rng(i).standard_normal(s).astype(np.float32) for i, s in enumerate(shapes)]
    got = vm["main"](*[tvm.runtime.tensor(a) for a in arrays]).numpy()
    np.testing.assert_array_equal(got, np.maximum(np.concatenate(arrays, axis=-1), 0))


class _Fire(nn.Module):
    """A fire module's two expand convs and a pooling of the squeeze output concatenated, then a
    DenseNet-style concatenation of that tensor (read by a conv too) with the conv's output."""

    def __init__(self):
        super().__init__()
        self.squeeze = nn.Conv2d(32, 16, 1)
        self.e1 = nn.Conv2d(16, 32, 1)
        self.e3 = nn.Conv2d(16, 48, 3, padding=1)
        self.pool = nn.MaxPool2d(3, stride=1, padding=1)
        self.dense = nn.Conv2d(96, 24, 3, padding=1)
        self.head = nn.Conv2d(120, 10, 1)

    def forward(self, x):
        s = torch.relu(self.squeeze(x))
        y = torch.cat([torch.relu(self.e1(s)), torch.relu(self.e3(s)), self.pool(s)], dim=1)
        z = torch.cat([y, torch.relu(self.dense(y))], dim=1)
        return self.head(z).mean(dim=(2, 3))


def _built_with_functions(model_class, path, shape):
    """Export a ``model_class()`` (seeded), build it without records: (compiled, input,
    onnxruntime's output, the scheduled module's script, its function names)."""
    torch.manual_seed(0)
    x, want = _export(model_class(), path, shape)
    compiled = compile_model(path, "llvm", shipped=False, records=path.parent / "none")
    script = compiled.mod.script(show_meta=False)
    return compiled, x, want, script, set(re.findall(r"def (\w+)\(", script))


def test_convolutions_write_their_slices_of_a_concatenation(tmp_path):
    """``passes/concat.py``: the convs feeding a concatenation store straight into their slices
    (the slice copy inlined into the conv's write-back, bias and ReLU with it; the first conv
    allocates the tensor, the others write in place), and what no conv computes for the
    concatenation alone (the pooling, the tensor the next conv reads too) is copied into its
    slice; no concatenation kernel is left, and the outputs match onnxruntime's."""
    compiled, x, want, script, functions = _built_with_functions(_Fire, tmp_path / "fire.onnx", (2, 32, 9, 9))
    into = sorted(f for f in functions if f.endswith("_into_concat"))
    assert len(into) == 3 and not [f for f in functions if f.startswith("concatenate")], functions
    bodies = script.split("def ")
    for name in into:          # each conv's function: the copy inlined, no block of its own
        body = next(b for b in bodies if b.startswith(name + "("))
        assert 'T.sblock("concat_slice")' not in body and "tvmopt_task" in body, body
    assert script.count("R.call_tir_inplace(") == 3, script          # e3 and the pooling; the dense conv
    np.testing.assert_allclose(compiled(x), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


class _DenseBlock(nn.Module):
    """Two layers of a dense block: the same conv shape (one kernel) writing the 8 channels after
    8 of a 16-channel tensor, then after 16 of a 24-channel one."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.layers = nn.ModuleList([nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)])
        self.squeeze = nn.Conv2d(16, 8, 1)

    def forward(self, x):
        y = torch.relu(self.stem(x))
        y = torch.cat([y, torch.relu(self.layers[0](y))], dim=1)
        y = torch.cat([y, torch.relu(self.layers[1](torch.relu(self.squeeze(y))))], dim=1)
        return y.mean(dim=(2, 3))


def test_a_kernel_shared_by_layers_writing_different_slices_stays_one_kernel(tmp_path):
    """Merged with its slice copies, a conv kernel that two layers share would become one kernel
    per slice (DenseNet-121: 54 kernels where it had 4, compile time 2.4x): it is left alone, the
    concatenations copy its result, and the outputs match onnxruntime's."""
    compiled, x, want, script, functions = _built_with_functions(_DenseBlock, tmp_path / "block.onnx", (1, 3, 12, 12))
    shared = [f for f in functions if "_8_12_12_8_3_3_1_1" in f]
    assert len(shared) == 1 and not shared[0].endswith("_into_concat"), functions
    assert len(re.findall(rf"R\.call_tir\(cls\.{shared[0]},", script)) == 2, script
    np.testing.assert_allclose(compiled(x), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


class _TwoBranches(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(8, 16, 1)
        self.b = nn.Conv2d(8, 16, 3, padding=1)

    def forward(self, x):
        return torch.cat([torch.relu(self.a(x)), self.b(x)], dim=1)


def test_an_nchw_concatenation_returned_by_the_model_is_written_in_place(tmp_path):
    """Along NCHW's channel axis (not the innermost) and as the model's output: both convs write
    their slices, and a second call leaves the first call's output as it was."""
    torch.manual_seed(0)
    model = _TwoBranches().eval()
    path = tmp_path / "two.onnx"
    x, want = _export(model, path, (1, 8, 10, 10))
    compiled = compile_model(path, "llvm", shipped=False, records=tmp_path / "none", options=DetectOptions(layout="nchw"))
    assert compiled.mod.script(show_meta=False).count("_into_concat(") == 2
    first = compiled(x)
    second = compiled(2 * x)
    np.testing.assert_allclose(first, want, rtol=1e-4, atol=1e-5)
    want2 = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": 2 * x})[0]
    np.testing.assert_allclose(second, want2, rtol=1e-4, atol=1e-5)


class _Squeeze(nn.Module):
    """SqueezeNet's tail on a 13x13 map: a fire module's 1x1 convs with bias and ReLU, a
    residual add after a 1x1, and the classifier's 1x1 conv (130 outputs, padded to 144)."""

    def __init__(self):
        super().__init__()
        self.squeeze = nn.Conv2d(64, 48, 1)
        self.expand = nn.Conv2d(48, 64, 1)
        self.classifier = nn.Conv2d(64, 130, 1)

    def forward(self, x):
        y = torch.relu(self.expand(torch.relu(self.squeeze(x)))) + x
        return torch.relu(self.classifier(y)).mean(dim=(2, 3))


def test_pointwise_convolutions_on_a_prime_map_run_as_one_row_of_pixels(tmp_path):
    """On a 13x13 map a register tile of pixels holds one (13 is prime): the dense conv computes
    the map's 169 pixels as one row of 176 (``ConvShape.flat``), and the crop that drops the
    extra ones carries the bias, ReLU and residual add."""
    torch.manual_seed(0)
    path = tmp_path / "squeeze.onnx"
    x, want = _export(_Squeeze(), path, (2, 64, 13, 13))
    compiled = compile_model(path, "llvm", shipped=False)
    from tvmopt.ops.task import get_task

    kernels = _kernels(compiled)
    assert kernels == ["conv2d_nhwc:2x64x13x13x48x1x1x1x0", "conv2d_nhwc:2x48x13x13x64x1x1x1x0",
                       "conv2d_nhwc:2x64x13x13x130x1x1x1x0"], kernels
    assert all(get_task(k).shape.flat for k in kernels)
    script = compiled.mod.script(show_meta=False)
    assert script.count("T.Buffer((2, 1, 176, ") == 0 and script.count("(2, 1, 176, ") >= 3    # the flat grid, inside
    functions = set(re.findall(r"def (\w+)\(", script))
    assert {"fused_conv2d_nhwc_2_64_13_13_48_1_1_1_0_add_relu", "fused_conv2d_nhwc_2_48_13_13_64_1_1_1_0_add1_relu1_add2",
            "fused_conv2d_nhwc_2_64_13_13_130_1_1_1_0_add3_relu2"} <= functions, functions      # epilogues fused
    np.testing.assert_allclose(compiled(x), want, rtol=1e-4, atol=1e-4)


def test_structured_grouped_convs_keep_the_network_channels_last(tmp_path):
    """A grouped conv whose weight is ternary (AlexNet's grouped layers given compressed weights)
    runs the dense grouped conv channels last on its decoded weight, so the network keeps the
    layout of its dense build, and matches onnxruntime."""
    import tvmopt.nn as tn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1, groups=2),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10)).eval()
    with torch.no_grad():
        w = model[2].weight
        w.copy_(torch.sign(w) * (w.abs() > 0.5 * w.abs().mean()) * 0.25)      # ternary, one scale
    x = torch.randn(1, 3, 12, 12)
    path = tn.export_onnx(model, x, tmp_path / "grouped.onnx", plain=True)
    compiled = compile_model(path, "llvm", shipped=False, records=tmp_path / "none")
    grouped = [la for la in compiled.lowered.layers if la.kernel.endswith("x2")]
    assert len(grouped) == 1 and grouped[0].kernel.startswith("conv2d_nhwc:"), compiled.lowered.layers
    assert grouped[0].structure.startswith("ternary") and "no channels-last grouped" in grouped[0].choice
    assert "R.permute_dims(" in compiled.lowered.mod.script(show_meta=False)     # one layout change in
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(compiled(x.numpy()), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


class _PatchAttention(nn.Module):
    """A ViT's start: a patch convolution, then PyTorch's MultiheadAttention, whose export
    splits Q, K and V with a squeeze of axis -2."""

    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, 32, 4, 4)
        self.attention = nn.MultiheadAttention(32, 4, batch_first=True)

    def forward(self, x):
        y = self.patch(x).flatten(2).transpose(1, 2)
        return self.attention(y, y, y, need_weights=False)[0]


def test_a_squeeze_of_a_negative_axis_keeps_the_graph_channels_last(tmp_path, recwarn):
    """Relax's layout inference failed on squeeze(axis=[-2]) (std::bad_alloc) and the whole graph
    stayed NCHW; the pass counts the axis from the front first."""
    torch.manual_seed(0)
    model = _PatchAttention().eval()
    path = tmp_path / "patch_attention.onnx"
    x = torch.randn(1, 3, 16, 16)
    torch.onnx.export(model, (x,), dynamo=True, opset_version=18, input_names=["x"],
                      external_data=False).save(str(path), external_data=False)
    compiled = compile_model(path, "llvm", shipped=False, records=tmp_path)
    assert not [w for w in recwarn if "channels-last layout not applied" in str(w.message)]
    assert [k for k in _kernels(compiled) if "conv2d" in k] == ["conv2d_nhwc:1x3x16x16x32x4x4x4x0"]
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    np.testing.assert_allclose(compiled(x.numpy()), want, rtol=1e-4, atol=1e-5)


def test_clips_with_constant_bounds_stay_channels_last_and_match_onnxruntime(tmp_path):
    """ONNX Clip with constant bounds (a MobileNet's ReLU6) imports as Relax's maximum and
    minimum, which the conversion carries: no transposes around it (each ReLU6 of a MobileNet-style
    network ran between two, 1.4x the whole network's time). A NaN bound is no bound, as in
    onnxruntime; a bound computed in the graph keeps TVM's import. Outputs match onnxruntime."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.standard_normal((8, 8, 1, 1)).astype(np.float32), "w2"),
             numpy_helper.from_array(np.array(0.0, np.float32), "lo"), numpy_helper.from_array(np.array(6.0, np.float32), "hi"),
             numpy_helper.from_array(np.array(np.nan, np.float32), "nan"),
             numpy_helper.from_array(np.array(1.5, np.float32), "top")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Clip", ["c1", "lo", "hi"], ["r6"]),
             helper.make_node("Conv", ["r6", "w2"], ["c2"]),
             helper.make_node("Clip", ["c2", "nan", "top"], ["k"]),            # no lower bound
             helper.make_node("ReduceMax", ["x"], ["m"], keepdims=0),
             helper.make_node("Clip", ["k", "", "m"], ["y"])]                  # a bound from the graph
    graph = helper.make_graph(nodes, "clips", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 10, 10])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    path = tmp_path / "clips.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    x = rng.standard_normal((1, 3, 10, 10)).astype(np.float32)
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert want.min() < -1.0                           # the NaN lower bound really left values below 0
    compiled = compile_model(path, "llvm", shipped=False, options=DetectOptions(winograd=False))
    assert all(k.startswith("conv2d_nhwc:") for k in _kernels(compiled)), _kernels(compiled)
    # in, and out before the Clip of a computed bound (TVM's import: NCHW); none around the others
    # (the conversion also permutes the computed scalar bound, axes=[]: nothing moves)
    text = compiled.lowered.mod.script(show_meta=False)
    assert text.count("R.permute_dims(") - text.count("axes=[])") == 2, text
    np.testing.assert_allclose(compiled(x), want, rtol=1e-5, atol=1e-5)


def test_hard_swish_and_squeeze_excitation_gates_stay_channels_last(tmp_path):
    """ONNX HardSwish and HardSigmoid import as Relax ``clip`` (no layout rule: each one ran between
    two transposes in a MobileNet-V3) and HardSigmoid as ``alpha * x`` (the constant first, whose
    layout the conversion would take): both are rewritten so that the graph keeps one transpose,
    at its entry. Outputs match onnxruntime."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(8)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.standard_normal((4, 8, 1, 1)).astype(np.float32), "w2"),
             numpy_helper.from_array(rng.standard_normal((8, 4, 1, 1)).astype(np.float32), "w3")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("HardSwish", ["c1"], ["h"]),
             helper.make_node("GlobalAveragePool", ["h"], ["m"]),
             helper.make_node("Conv", ["m", "w2"], ["s1"]), helper.make_node("Relu", ["s1"], ["s2"]),
             helper.make_node("Conv", ["s2", "w3"], ["s3"]),
             helper.make_node("HardSigmoid", ["s3"], ["g"], alpha=1 / 6, beta=0.5),
             helper.make_node("Mul", ["h", "g"], ["y"])]
    graph = helper.make_graph(nodes, "se", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 10, 10])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    path = tmp_path / "se.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), path)
    x = rng.standard_normal((1, 3, 10, 10)).astype(np.float32) * 3
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    compiled = compile_model(path, "llvm", shipped=False, options=DetectOptions(winograd=False))
    assert all(k.startswith("conv2d_nhwc:") for k in _kernels(compiled)), _kernels(compiled)
    assert _permutes(compiled) == 2, _permutes(compiled)          # the image in, the result out
    np.testing.assert_allclose(compiled(x), want, rtol=1e-5, atol=1e-5)
