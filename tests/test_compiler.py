"""The compiler: models exported plainly and with ai.tvmopt ops are both rewritten to the
compressed kernels (asserted on the IR), build for llvm and match onnxruntime / PyTorch; random
dense weights are not rewritten; inspect and errors."""

import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

import tvmopt.nn as tn
from tvmopt.cli.main import main
from tests_support import avx2_host, xnor_linear, xnor_nhwc
from tvmopt.build.compile import compile_model
from tvmopt.passes import DetectOptions, detect
from tvmopt.schedules import isa

#: tests of the compressed lowering itself force it (the default picks the faster of compressed and dense)
COMPRESSED = DetectOptions(kernels="compressed")

IN = 64


def _model(layer):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, IN), nn.ReLU(), layer).eval()


#: binary and ternary layers of 16-multiple widths run register tables on AVX-512 (ops/perm_tables.py)
BINARY = "binary_perm_dense" if isa.host().lanes >= 16 else "binary_dense"
TERNARY = "ternary_perm_dense" if isa.host().lanes >= 16 else "ternary_dense"
#: 2:4 layers of few rows pick their inputs in registers there (ops/nm_perm_dense.py)
NM = "nm_perm_dense" if isa.host().lanes >= 16 else "nm_decode_dense"

STRUCTURES = {
    # name: (layer, kernel family for the ai.tvmopt export, for the plain export)
    "shift": (lambda: tn.ShiftLinear(IN, 48), "shift_dense", "shift_dense"),
    "shift-act": (lambda: tn.ShiftLinear(IN, 48, mode="q", activation_bits=(4, 6)), "shift_dense", "shift_dense"),
    "binary": (lambda: tn.BinaryLinear(IN, 48), BINARY, BINARY),
    "xnor": (lambda: tn.BinaryLinear(IN, 48, binarize_input=True), "xnor_dense", "xnor_dense"),
    "ternary": (lambda: tn.TernaryLinear(IN, 48, per_channel=True), TERNARY, TERNARY),
    "nm": (lambda: tn.NMSparseLinear(IN, 48), NM, NM),
    # plain: the hash is found again (seed and bucket count recovered), so the 8x compact form is kept
    "hashed": (lambda: tn.HashedLinear(IN, 48, buckets=200, seed=7), "hashed_dense", "hashed_dense"),
    # two hashes mix into too many distinct values for a codebook: the plain export stays dense
    "funhash": (lambda: tn.HashedLinear(IN, 48, buckets=200, seed=3, num_hashes=2), "hashed_dense", "dense"),
    # plain: hundreds of butterfly ops, measured as a linear region and factored (passes/linear.py)
    "fastfood": (lambda: tn.Fastfood(IN, 100), "fastfood", "fastfood"),
    "hadamard": (lambda: tn.HadamardClassifier(IN, 10), "hadamard", "hadamard"),
}


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    out = {}
    d = tmp_path_factory.mktemp("compiler")
    x = torch.randn(2, 32)
    for name, (make, _, _) in STRUCTURES.items():
        model = _model(make())
        out[name] = (model, tn.export_onnx(model, x, d / f"{name}.onnx"),
                     tn.export_onnx(model, x, d / f"{name}.plain.onnx", plain=True))
    return out


def _families(compiled):
    return [layer.kernel.split(":")[0] for layer in compiled.lowered.layers]


def _funcs(compiled):
    """Names of the PrimFuncs in the lowered module."""
    return [gv.name_hint for gv, f in compiled.lowered.mod.functions_items() if type(f).__name__ == "PrimFunc"]


@pytest.mark.parametrize("name", list(STRUCTURES))
def test_both_exports_are_rewritten_and_match(name, exports):
    model, compact, plain = exports[name]
    _, family, plain_family = STRUCTURES[name]
    x = torch.randn(4, 32)
    with torch.no_grad():
        ref = model(x).numpy()
    sess = ort.InferenceSession(str(plain), providers=["CPUExecutionProvider"])
    ort_out = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    for path, fam in ((compact, family), (plain, plain_family)):
        compiled = compile_model(path, batch=4, options=COMPRESSED)
        fams = _families(compiled)
        assert fams[0] == "dense"                       # the fp32 first layer: tuned GEMM
        if fam is not None:
            assert fams[1] == fam, (path.name, fams)
            assert any(n.startswith(fam) for n in _funcs(compiled)), _funcs(compiled)
        got = compiled(x.numpy())
        scale = np.abs(ref).max()
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * scale)
        np.testing.assert_allclose(got, ort_out, rtol=1e-4, atol=1e-4 * scale)


def test_random_dense_weights_are_not_rewritten():
    rng = np.random.default_rng(0)
    for shape in [(64, 128), (10, 256)]:
        assert detect(rng.standard_normal(shape).astype(np.float32)).family == "dense"
    # nor weights that are almost structured (one value off)
    w = np.sign(rng.standard_normal((32, 64))).astype(np.float32)
    w[3, 5] = 0.7
    assert detect(w).family != "binary_dense"


def test_detection_of_folded_batch_norm_scales():
    rng = np.random.default_rng(1)
    scale = rng.uniform(0.5, 2.0, size=(32, 1)).astype(np.float32)
    binary = np.sign(rng.standard_normal((32, 64))).astype(np.float32) * scale
    kern = detect(binary)
    assert kern.family == "binary_dense" and kern.scale.shape == (32,)
    shifts = np.sign(rng.standard_normal((32, 64))) * 2.0 ** rng.integers(-8, 0, size=(32, 64))
    kern = detect((shifts * scale).astype(np.float32))
    assert kern.family == "shift_dense" and kern.scale is not None
    sparse = rng.standard_normal((32, 64)).astype(np.float32) * tn.nm_mask(rng.standard_normal((32, 64)), 2, 4)
    assert detect(sparse).params == {"n": 2, "m": 4}
    assert detect(np.sign(sparse)).family == "ternary_dense"


def test_sign_on_constant_weights_and_binarized_input_become_xnor(tmp_path):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 32)).astype(np.float32)
    nodes = [helper.make_node("Sign", ["W"], ["Ws"]),
             helper.make_node("GreaterOrEqual", ["X", "zero"], ["ge"]),
             helper.make_node("Where", ["ge", "one", "mone"], ["Xb"]),
             helper.make_node("MatMul", ["Xb", "Ws"], ["Y"])]
    consts = [numpy_helper.from_array(w, "W")] + [numpy_helper.from_array(np.array(v, np.float32), n)
                                                  for n, v in (("zero", 0), ("one", 1), ("mone", -1))]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [3, 64])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [3, 32])], consts)
    path = tmp_path / "sign.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    compiled = compile_model(path)
    assert _families(compiled) == [xnor_linear()]
    x = rng.standard_normal((3, 64)).astype(np.float32)
    np.testing.assert_array_equal(compiled(x), np.where(x >= 0, 1.0, -1.0) @ np.sign(w))   # exact
    if xnor_linear() == "xnor_dense":
        # the counts stay int32 in the fused kernel (int64 lanes ran it at half speed)
        kernels = [f.script() for gv, f in compiled.mod.functions_items() if "xnor_dense" in gv.name_hint]
        assert kernels and not any('T.Cast("int64"' in k for k in kernels)


def test_torch_export_program_compiles():
    model = nn.Sequential(tn.ShiftLinear(32, 64), nn.ReLU(), tn.TernaryLinear(64, 16)).eval()
    x = torch.randn(3, 32)
    compiled = compile_model(tn.export_program(model, x), options=COMPRESSED)
    assert _families(compiled) == ["shift_dense", TERNARY]
    with torch.no_grad():
        np.testing.assert_allclose(compiled(x.numpy()), model(x).numpy(), rtol=1e-4, atol=1e-5)


def test_bundled_cnn_compiles_and_keeps_pytorch_accuracy():
    import json
    from pathlib import Path

    models = Path(__file__).resolve().parent.parent / "examples" / "models"
    row = next(r for r in json.loads((models / "digits.json").read_text())["models"]
               if r["arch"] == "cnn" and r["variant"] == "binary")
    data = np.load(models / "digits_test.npz")
    compiled = compile_model(models / row["onnx"], batch=len(data["y"]), options=COMPRESSED)
    assert "binary_rowlut_dense" in _families(compiled)      # the whole test set at once: rows share tables
    accuracy = float((compiled(data["x"]).argmax(1) == data["y"]).mean())
    assert accuracy == pytest.approx(row["accuracy"])


def test_inspect_prints_the_table(capsys, exports):
    _, compact, plain = exports["nm"]
    assert main(["inspect", str(plain), "--batch", "8", "--kernels", "compressed"]) == 0
    out = capsys.readouterr().out
    assert "2:4 sparse" in out and f"{NM}:8x48x64x2x4" in out and "dense:8x64x32" in out
    assert "total" in out


@pytest.mark.parametrize("content,message", [(None, "not found"), (b"not a model", "cannot read")])
def test_bad_model_files_exit_2_with_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "m.onnx"
    if content is not None:
        path.write_bytes(content)
    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_unsupported_operator_is_named(tmp_path, capsys):
    node = helper.make_node("FancyOp", ["X"], ["Y"], domain="com.example")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 4])])
    path = tmp_path / "fancy.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18),
                                                      helper.make_opsetid("com.example", 1)]), str(path))
    assert main(["inspect", str(path)]) == 2
    assert "unsupported operator(s): FancyOp" in capsys.readouterr().err


def test_tuned_records_are_used_by_the_build(tmp_path, exports):
    from tvmopt.target import parse_target
    from tvmopt.tune.loop import tune_task

    model, compact, _ = exports["ternary"]
    key = f"{TERNARY}:4x48x64"
    result = tune_task(key, parse_target("llvm"), tuner="random", trials=3, records=tmp_path, progress=False)
    assert result.measured == 3 and result.best_config is not None
    compiled = compile_model(compact, batch=4, records=tmp_path, options=COMPRESSED)
    assert compiled.tuned[key] == "records" and compiled.tuned["dense:4x64x32"] == ""
    x = torch.randn(4, 32)
    with torch.no_grad():
        np.testing.assert_allclose(compiled(x.numpy()), model(x).numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("layer,family", [
    (lambda: tn.ShiftConv2d(8, 16, 3, padding=1, stride=2), "shift_conv2d"),
    (lambda: tn.BinaryConv2d(8, 32, 3, padding=1, binarize_input=True), "xnor_conv2d"),
    (lambda: tn.TernaryConv2d(8, 16, (3, 1), padding=(1, 0)), "ternary_conv2d"),
    (lambda: tn.NMSparseConv2d(8, 16, 3, dilation=2, padding=2), "nm_decode_dense"),
], ids=["shift", "binary-binarized-input", "ternary", "nm-dilated"])
def test_compressed_convolutions_become_direct_compressed_kernels(layer, family, tmp_path):
    """Compressed convolutions: a direct conv decoding their weight in blocks (no im2col);
    dilated ones: im2col + their GEMM-family kernel; the fp32 one: direct conv2d."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), layer()).eval()
    x = torch.randn(2, 3, 9, 9)
    with torch.no_grad():
        ref = model(x).numpy()
    for plain in (False, True):
        path = tn.export_onnx(model, x, tmp_path / f"c{int(plain)}.onnx", plain=plain)
        compiled = compile_model(path, batch=2, options=COMPRESSED)
        # direct formats and XNOR run channels last (passes/layout.py), tvmopt.nn's own nodes too
        # (decoded to plain ops first: passes/placeholders.py); dilated convolutions keep NCHW
        nhwc = family in ("shift_conv2d", "ternary_conv2d", "xnor_conv2d")
        channels_last = xnor_nhwc() if family == "xnor_conv2d" else family + "_nhwc"
        assert _families(compiled) == (["conv2d_nhwc", channels_last] if nhwc else ["conv2d", family])
        assert ("im2col" in " ".join(_funcs(compiled))) == family.endswith("_dense")
        np.testing.assert_allclose(compiled(x.numpy()), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_wide_binary_layers_use_lookup_tables_and_ternary_the_decode_kernel(tmp_path):
    """Where the tables won in ops_llvm: binary layers from 4096 outputs; ternary never (the AVX2
    rules: on AVX-512 binary layers run register tables, tests/test_perm_tables.py)."""
    rng = np.random.default_rng(2)
    signs = np.sign(rng.standard_normal((4096, 24))).astype(np.float32)
    assert detect(signs).family == "binary_lut_dense"
    assert detect(signs[:1024]).family == "binary_dense"
    ternary = (signs * (rng.random((4096, 24)) > 0.4)).astype(np.float32)
    assert detect(ternary).family == "ternary_dense"
    model = nn.Sequential(tn.TernaryLinear(24, 96), nn.ReLU(), tn.BinaryLinear(96, 4096)).eval()
    x = torch.randn(3, 24)
    compiled = compile_model(tn.export_onnx(model, x, tmp_path / "wide.onnx"), avx2_host(), batch=3,
                             options=COMPRESSED)
    assert _families(compiled) == ["ternary_dense", "binary_lut_dense"]
    with torch.no_grad():
        ref = model(x).numpy()
    np.testing.assert_allclose(compiled(x.numpy()), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_batches_of_rows_share_lookup_tables_and_small_layers_stay_dense(tmp_path):
    """With enough rows (binary 8, ternary 64), binary and ternary layers read tables of partial
    sums shared by a vector of rows (odd row counts padded); the never-slower prediction keeps
    binary layers under 2^14 weights dense (ternary under 2^18); with fewer rows ternary layers
    keep their decode kernel (the AVX2 rules: on AVX-512 binary layers run register tables,
    tests/test_perm_tables.py)."""
    model = nn.Sequential(tn.TernaryLinear(512, 1024), nn.ReLU(), tn.BinaryLinear(1024, 512), nn.ReLU(),
                          tn.BinaryLinear(512, 16)).eval()
    x = torch.randn(67, 512)
    with torch.no_grad():
        ref = model(x).numpy()
    path = tn.export_onnx(model, x, tmp_path / "rows.onnx")
    compiled = compile_model(path, avx2_host(), batch=67)
    assert _families(compiled) == ["ternary_rowlut_dense", "binary_rowlut_dense", "dense"]
    np.testing.assert_allclose(compiled(x.numpy()), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    few = compile_model(path, avx2_host(), batch=13, options=COMPRESSED)
    assert _families(few) == ["ternary_dense", "binary_rowlut_dense", "binary_rowlut_dense"]
    np.testing.assert_allclose(few(x[:13].numpy()), ref[:13], rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_large_binary_convolutions_share_tables_over_output_pixels(tmp_path):
    """A binary conv of 2^18 weights or more (with a folded batch norm's scale, bias, a residual
    add and ReLU after it) reads tables of partial sums shared by 16 output pixels, the window
    gathered from the image (padding included, no im2col); a small one stays direct."""
    torch.manual_seed(0)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.small = tn.BinaryConv2d(8, 256, 1)
            self.big = tn.BinaryConv2d(256, 256, 3, padding=1, stride=1)
            self.bn = nn.BatchNorm2d(256)

        def forward(self, x):
            y = torch.relu(self.small(x))
            return torch.relu(self.bn(self.big(y)) + y)

    model = Block().eval()
    model.bn.running_mean.uniform_(-1, 1)
    model.bn.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 8, 9, 15)            # 270 output pixels: the small conv decodes once for enough of them
    with torch.no_grad():
        ref = model(x).numpy()
    # AVX2's rules (on AVX-512 the small conv is predicted dense: choose.DIRECT_CONV_AVX512_MIN_ROWS)
    compiled = compile_model(tn.export_onnx(model, x, tmp_path / "bigconv.onnx", plain=True), avx2_host(), batch=2)
    # the graph channels last, the row-table conv (NCHW) between two transposes: cheaper than
    # the whole graph NCHW (ResNet-18 binary at batch 16 on AVX2: 1.05x its dense build, 0.83x NCHW)
    assert _families(compiled) == ["binary_conv2d_nhwc", "binary_rowlut_conv2d"]
    np.testing.assert_allclose(compiled(x.numpy()), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_shipped_records_of_another_cpu_are_used_when_this_one_has_none(tmp_path, exports, monkeypatch):
    """A config tuned on another CPU of the same target kind beats the untuned default."""
    from tvmopt.build import compile as compiler
    from tvmopt.records.store import Record, RecordCache
    from tvmopt.ops.task import get_task

    _, compact, _ = exports["ternary"]
    key = f"{TERNARY}:4x48x64"
    task = get_task(key)
    import random
    config = task.space.random(random.Random(3))
    RecordCache(tmp_path).append([Record(key, "llvm-elsewhere-64c", config, (1e-6,))])
    RecordCache(tmp_path).append([Record(key, "cuda-sm_90", task.space.initial(), (1e-9,))])
    monkeypatch.setattr("tvmopt.records.shipped.records_dir", lambda: tmp_path)
    lookup, used = compiler.best_configs(compiler.parse_target("llvm"), None)
    assert lookup(key) == config and used[key] == "shipped:llvm-elsewhere-64c"
    assert lookup("dense:4x64x32") is None and used["dense:4x64x32"] == ""
    compiled = compile_model(compact, batch=4, options=COMPRESSED)
    assert compiled.tuned[key] == "shipped:llvm-elsewhere-64c"


def test_records_of_another_cpu_stand_in_only_at_the_same_vector_width():
    """Nearest CPU first: same ISA (AVX-512 with VNNI), then same width, then CPUs LLVM cannot
    describe; AVX2 records never shape an AVX-512 build, nor the reverse."""
    from tvmopt.build.compile import _nearest_targets
    from tvmopt.target import parse_target

    keys = ["llvm-znver3-2c", "llvm-skylake-avx512-4c", "llvm-znver4-2c", "llvm-elsewhere-64c", "cuda-sm_90",
            "llvm-znver5-2c"]
    assert _nearest_targets(parse_target("llvm -mcpu=znver5 -num-cores=2"), keys) == \
        ["llvm-znver4-2c", "llvm-skylake-avx512-4c", "llvm-elsewhere-64c"]
    assert _nearest_targets(parse_target("llvm -mcpu=znver2 -num-cores=2"), keys) == \
        ["llvm-znver3-2c", "llvm-elsewhere-64c"]
    assert _nearest_targets(parse_target("cuda -arch=sm_80"), keys) == ["cuda-sm_90"]


def test_a_cpu_with_hidden_avx512_has_its_own_key_and_counts_as_avx2():
    """A Zen 4 whose hypervisor hides AVX-512 is 'znver4' to LLVM: its key says avx2, so its
    records never stand in for a real Zen 4's, and AVX2 builds pick them over AVX-512 ones."""
    from tvmopt.build.compile import _nearest_targets
    from tvmopt.schedules import isa
    from tvmopt.target import TargetSpec

    masked = TargetSpec("llvm", {"kind": "llvm", "mcpu": "znver4", "num-cores": 2, "mattr": ["-avx512f"]}, None)
    full = TargetSpec("llvm", {"kind": "llvm", "mcpu": "znver4", "num-cores": 2}, None)
    assert (masked.key, full.key) == ("llvm-znver4-avx2-2c", "llvm-znver4-2c")
    assert isa.for_target_key(masked.key) == isa.AVX2 and isa.for_target_key(full.key).lanes == 16
    keys = ["llvm-znver5-2c", "llvm-znver4-avx2-2c", "llvm-znver3-2c", "llvm-znver4-2c"]
    assert _nearest_targets(masked, keys) == ["llvm-znver3-2c"]
    assert _nearest_targets(full, keys) == ["llvm-znver5-2c"]


def test_linear_regions_that_are_not_fastfood_become_a_matrix_and_rows_never_mix():
    """A butterfly region whose multiplies are not S, G, B of a Fastfood is replaced by its
    measured matrix (then lowered like any constant weight); a region that mixes batch rows is
    left alone."""
    from tvmopt.passes.linear import collapse

    class Butterfly(nn.Module):
        def forward(self, x):                         # [a + b, a - b] * c: linear, not Fastfood
            a, b = x[:, :16], x[:, 16:]
            return torch.cat([a + b, a - b], dim=1) * torch.linspace(0.5, 2.0, 32)

    class MixRows(nn.Module):
        def forward(self, x):                         # row 0 + row 1: linear but mixes the batch
            return torch.cat([x[:1] + x[1:], x[1:] - x[:1]], dim=0)

    for module, collapsed in ((Butterfly(), True), (MixRows(), False)):
        model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), module).eval()
        x = torch.randn(2, 8)
        path = tn.export_onnx(model, x, Path(tempfile.mkdtemp()) / "m.onnx", plain=True)
        compiled = compile_model(path, batch=2)
        with torch.no_grad():
            np.testing.assert_allclose(compiled(x.numpy()), model(x).numpy(), rtol=1e-4, atol=1e-5)
        from tvmopt.model.frontend import load

        text = collapse(load(path, batch=2).mod).script()
        assert ("R.subtract" not in text) == collapsed, text


class _Grouped(nn.Module):
    """ShuffleNet's pieces: grouped 1x1 and 3x3 convolutions with batch norm, a channel shuffle,
    a depthwise conv, then pooling and a classifier."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, padding=1)
        self.g1 = nn.Conv2d(32, 48, 1, groups=4, bias=False)
        self.bn1 = nn.BatchNorm2d(48)
        self.g2 = nn.Conv2d(48, 48, 3, stride=2, padding=1, groups=2)
        self.dw = nn.Conv2d(48, 48, 3, padding=1, groups=48)
        self.fc = nn.Linear(48, 10)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.relu(self.bn1(self.g1(x)))
        n, c, h, w = x.shape
        x = x.reshape(n, 4, c // 4, h, w).transpose(1, 2).reshape(n, c, h, w)     # channel shuffle
        x = self.dw(torch.relu(self.g2(x)))
        return self.fc(x.mean(dim=(2, 3)))


def test_grouped_convolutions_are_one_kernel_each_and_match_onnxruntime(tmp_path):
    """A grouped conv with dense weights is one direct conv task over all its groups (key
    ``...xG``), not one task per group joined by slices and a concatenation; the depthwise conv
    is a ``depthwise_conv2d`` task. Outputs match onnxruntime."""
    from tvmopt.ops.task import get_task
    from tvmopt.testing.nets import randomize_batch_norm

    torch.manual_seed(0)
    model = randomize_batch_norm(_Grouped().eval())
    path = tmp_path / "grouped.onnx"
    torch.onnx.export(model, (torch.randn(1, 3, 16, 16),), str(path), dynamo=False, opset_version=17,
                      input_names=["x"])
    compiled = compile_model(path, "llvm", records=tmp_path / "none", shipped=False)
    keys = [layer.kernel for layer in compiled.lowered.layers]
    # channels last: the shuffle is one kernel of its own (test_channels_last.py)
    assert "conv2d_nhwc:1x32x16x16x48x1x1x1x0x4" in keys and "conv2d_nhwc:1x48x16x16x48x3x3x2x1x2" in keys, keys
    assert "depthwise_conv2d_nhwc:1x48x8x8x48x3x3x1x1" in keys, keys
    assert not any(layer.source.startswith("conv2d group ") for layer in compiled.lowered.layers)
    assert not any(name.startswith("strided_slice") for name in _funcs(compiled))
    assert get_task("conv2d:1x48x16x16x48x3x3x2x1x2").shape.ob == 8         # a block within a group of 24
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(compiled(x), want, rtol=1e-4, atol=1e-4)


def test_calls_take_arrays_of_any_type_and_layout_and_names(tmp_path):
    """A compiled model's call binds its arguments whatever they are: exact float32 arrays go
    straight to the staged input buffer, others (float64, a strided view, a list, by name) are
    converted first; every call gives its own input's output, equal to onnxruntime's (and kept
    by the caller through later calls); a wrong
    shape is refused with the input's name."""
    models = Path(__file__).resolve().parent.parent / "examples" / "models"
    path = models / "digits_mlp_fp32.onnx"
    compiled = compile_model(path, batch=2, records=tmp_path, shipped=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.load(models / "digits_test.npz")["x"][:8].astype(np.float32)
    first, second = x[:2], x[2:4]
    strided = x[::4]                                    # rows 0 and 4: not contiguous
    kept = []
    for arg, want_in in [(first, first), (second, second), (first.astype(np.float64), first),
                         (strided, np.ascontiguousarray(strided)), (first.tolist(), first)]:
        want = sess.run(None, {"input": want_in})[0]
        kept.append((compiled(arg), want))
        np.testing.assert_allclose(kept[-1][0], want, rtol=1e-4, atol=1e-5)
    for got, want in kept:                              # later calls left earlier outputs alone
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(compiled(input=second), sess.run(None, {"input": second})[0], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="input 'input' shape"):
        compiled(x[:3])
