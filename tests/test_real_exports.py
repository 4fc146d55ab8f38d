"""Real exports import, and nothing wrong passes silently (issue 23): shape arithmetic folded
before import (a CIFAR ResNet-20 with DeepShift's option-A shortcuts, from both torch.onnx
exporters), every output kept, NaN kept NaN, records, targets and modules checked."""

import json
import subprocess
import sys
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import tvmopt.nn as tn
from tvmopt.build.compile import compile_model
from tvmopt.passes import DetectOptions
from tvmopt.testing.nets import ResNet20, randomize_batch_norm
from tvmopt.testing.reliability import run_cli


def _resnet20():
    torch.manual_seed(0)
    return randomize_batch_norm(ResNet20().eval())


def _ort(path, *inputs):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {i.name: x for i, x in zip(sess.get_inputs(), inputs)})


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize("compressed", [False, True], ids=["fp32", "shift"])
def test_deepshift_resnet20_builds_and_matches_onnxruntime(tmp_path, exporter, compressed):
    model = _resnet20()
    if compressed:      # DeepShift-PS on every conv but the first; the classifier stays fp32, as in the paper
        model = tn.to_plain(tn.compress(model, "shift", skip=("conv1", "linear"))).eval()
    x = torch.randn(1, 3, 32, 32)
    path = tmp_path / "r20.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), dynamo=exporter == "dynamo", input_names=["x"],
                          **({} if exporter == "dynamo" else {"opset_version": 17}))
    if exporter == "torchscript":       # the exporter computes the shortcut's pads in the graph
        ops = {n.op_type for n in onnx.load(str(path)).graph.node}
        assert {"ConstantOfShape", "Concat"} & ops
    compiled = compile_model(path, "llvm", records=tmp_path / "none", shipped=False)
    got = compiled(x.numpy())
    want = _ort(path, x.numpy())[0]
    scale = float(np.abs(want).max())
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, scale)
    with torch.no_grad():
        assert np.abs(got - model(x).numpy()).max() <= 1e-4 * max(1.0, scale)
    kinds = {layer.structure.split(" ")[0] for layer in compiled.lowered.layers}
    assert ("shift" in kinds) == compressed


class _TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(32, 64)
        self.a = nn.Linear(64, 10)
        self.b = nn.Linear(64, 3)

    def forward(self, x):
        h = F.relu(self.body(x))
        return self.a(h), torch.sigmoid(self.b(h))


def test_every_output_is_kept_in_order(tmp_path):
    torch.manual_seed(1)
    model = _TwoHeads().eval()
    x = torch.randn(1, 32)
    path = tmp_path / "two.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, input_names=["x"])
    want = _ort(path, x.numpy())
    got = compile_model(path, "llvm", records=tmp_path / "none", shipped=False)(x.numpy())
    assert isinstance(got, tuple) and [g.shape for g in got] == [w.shape for w in want]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)

    program = torch.export.export(model, (x,))
    got = compile_model(program, "llvm", records=tmp_path / "none", shipped=False)(x.numpy())
    assert isinstance(got, tuple) and len(got) == 2
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)

    # the CLI: build, run prints both, --output writes an .npz in the model's order
    so = tmp_path / "two.so"
    assert run_cli(["build", str(path), "-o", str(so)], tmp_path).returncode == 0
    meta = json.loads((tmp_path / "two.so.json").read_text())
    assert meta["output_shapes"] == [[1, 10], [1, 3]]
    np.save(tmp_path / "x.npy", x.numpy())
    out = run_cli(["run", str(so), "--inputs", str(tmp_path / "x.npy"), "--outputs", str(tmp_path / "y.npy")],
                  tmp_path)
    assert out.returncode == 0, out.stderr
    assert "output 0: shape (1, 10)" in out.stdout and "output 1: shape (1, 3)" in out.stdout
    saved = np.load(tmp_path / "y.npz")
    for name, w in zip(("output_0", "output_1"), want):
        np.testing.assert_allclose(saved[name], w, rtol=1e-5, atol=1e-5)


def _mlp_with(weight_edit, tmp_path, name):
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).eval()
    with torch.no_grad():
        weight_edit(model)
    path = tmp_path / name
    torch.onnx.export(model, (torch.randn(1, 64),), str(path), dynamo=False, opset_version=17, input_names=["x"])
    return path


def _same_nans(got, want):
    assert np.array_equal(np.isnan(got), np.isnan(want))
    finite = ~np.isnan(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-4, atol=1e-4)


def test_non_finite_weights_are_never_compressed_and_nan_propagates(tmp_path):
    x = np.random.default_rng(0).standard_normal((1, 64)).astype(np.float32)

    def pm1_with_nan(model):          # ±1 weights with one NaN: not a shift/binary layer
        w = torch.where(torch.rand(32, 64) > 0.5, 1.0, -1.0)
        w[3, 5] = float("nan")
        model[0].weight.copy_(w)

    def dense_nan(model):             # a NaN before the ReLU: max(NaN, 0) must stay NaN
        model[0].weight[7, 0] = float("nan")

    def inf_weight(model):
        model[2].weight[1, 1] = float("inf")

    for edit, name in ((pm1_with_nan, "pm1.onnx"), (dense_nan, "dense.onnx"), (inf_weight, "inf.onnx")):
        path = _mlp_with(edit, tmp_path, name)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            compiled = compile_model(path, "llvm", records=tmp_path / "none", shipped=False)
        assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], name     # no numpy noise
        assert any("NaN or Inf" in str(w.message) for w in caught), name
        assert all(layer.structure.startswith("dense") for layer in compiled.lowered.layers), name
        _same_nans(compiled(x), _ort(path, x)[0])
    all_nan = np.full((1, 64), np.nan, np.float32)
    path = _mlp_with(lambda m: None, tmp_path, "plain.onnx")
    got = compile_model(path, "llvm", records=tmp_path / "none", shipped=False)(all_nan)
    assert np.isnan(got).all() and np.isnan(_ort(path, all_nan)[0]).all()


def test_records_lines_of_newer_versions_load_and_impossible_configs_are_invalid(tmp_path):
    from tvmopt.records.check import invalid_records, stale_records
    from tvmopt.records.store import Record, RecordCache
    from tvmopt.target import parse_target

    key = parse_target("llvm").key
    good = Record("gemm:8x8x8", key, ((8, 1, 1, 1), (8, 1, 1, 1), (8, 1), False, "local", 0, True, 0), (1e-5,))
    line = json.loads(good.to_line())
    newer = dict(line, measured_by="tvmopt 9.9", noise_band=[0.9, 1.1])      # fields a newer tvmopt adds
    lines = [json.dumps(newer)]
    for config in ([[8, 1, 1, 1], [8, 1, 1, 1], [8, -1], False, "local", 0, True, 0],
                   [[8, 1, 1, 1], [8, 1, 1, 1], [10**12, 1], False, "local", 0, True, 0]):
        lines.append(json.dumps(dict(line, config=config)))
    lines.append(json.dumps(dict(line, config=[[4, 2, 1, 1], [8, 1, 1, 1], [8, 1], False, "local", 0, True, 0, 7])))
    (tmp_path / f"{key}.jsonl").write_text("\n".join(lines) + "\n")
    records, unusable = RecordCache(tmp_path).scan(key)
    assert not unusable and len(records) == 4
    assert records[0].config == good.config
    invalid = invalid_records(records)
    assert [r.config[2] for r, _ in invalid] == [(8, -1), (10**12, 1)]
    assert len(stale_records(records)) == 1                      # a plausible config of another space
    out = run_cli(["records", "--records", str(tmp_path)], tmp_path)
    assert out.returncode == 0 and "2 invalid record(s)" in out.stdout and "1 record(s) made before" in out.stdout


def test_build_takes_one_records_file_like_tvmc(tmp_path):
    from tvmopt.testing.reliability import MODELS

    model = MODELS / "digits_mlp_fp32.onnx"
    out = run_cli(["build", str(model), "-o", str(tmp_path / "m.so"), "--tuning-records",
                   str(tmp_path / "missing.jsonl")], tmp_path)
    assert out.returncode == 2 and "does not exist" in out.stderr


def test_internal_failures_are_exit_1_not_user_errors():
    from tvmopt.errors import ModelError, model_stage

    with pytest.raises(AssertionError):
        with model_stage("model.onnx: lowering"):
            raise AssertionError("an invariant of ours")
    with pytest.raises(ModelError):
        with model_stage("model.onnx: import"):
            raise ValueError("the model's fault")


def test_cli_conventions(tmp_path):
    version = subprocess.run([sys.executable, "-m", "tvmopt", "--version"], capture_output=True, text=True)
    assert "Apache TVM 0.27" in version.stdout
    helptext = subprocess.run([sys.executable, "-m", "tvmopt", "tune", "--help"], capture_output=True, text=True)
    assert "  fault:N" not in helptext.stdout and "  xnor_dense:MxNxK" in helptext.stdout
    out = run_cli(["tune", "gemm:8x8x8", "--trials", "2", "--no-compare", "--records", str(tmp_path / "r")], tmp_path)
    assert out.returncode == 0 and "trial/s" not in out.stderr and "\r" not in out.stderr   # no bar in a pipe


class _Encoder(nn.Module):
    """Token ids (int64) and an attention mask in, a pooled projection out."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(100, 32)
        self.l1 = nn.Linear(32, 64)
        self.l2 = nn.Linear(64, 4)

    def forward(self, ids, mask):
        h = self.emb(ids) * mask.unsqueeze(-1).float()
        h = torch.relu(self.l1(h)).sum(1) / mask.float().sum(1, keepdim=True)
        return self.l2(h)


class _TwoBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(8, 16)
        self.b = nn.Linear(12, 16)
        self.o = nn.Linear(16, 3)

    def forward(self, x, y):
        return self.o(torch.relu(self.a(x)) + torch.relu(self.b(y)))


def test_models_with_several_named_inputs_of_any_dtype(tmp_path):
    torch.manual_seed(3)
    model = _Encoder().eval()
    ids = torch.randint(0, 100, (2, 16))
    mask = torch.ones(2, 16, dtype=torch.int64)
    mask[1, 10:] = 0
    path = tmp_path / "enc.onnx"
    torch.onnx.export(model, (ids, mask), str(path), dynamo=False, opset_version=17, input_names=["ids", "mask"])
    want = _ort(path, ids.numpy(), mask.numpy())[0]
    compiled = compile_model(path, "llvm", records=tmp_path / "none", shipped=False)
    assert [(i.name, i.dtype) for i in compiled.imported.inputs] == [("ids", "int64"), ("mask", "int64")]
    np.testing.assert_allclose(compiled(ids.numpy(), mask.numpy()), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(compiled(mask=mask.numpy(), ids=ids.numpy()), want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="takes 2 input"):
        compiled(ids.numpy())

    so = tmp_path / "enc.so"
    assert run_cli(["build", str(path), "-o", str(so)], tmp_path).returncode == 0
    np.savez(tmp_path / "in.npz", mask=mask.numpy(), ids=ids.numpy())
    out = run_cli(["run", str(so), "--inputs", str(tmp_path / "in.npz"), "--output", str(tmp_path / "y.npy")],
                  tmp_path)
    assert out.returncode == 0, out.stderr
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), want, rtol=1e-5, atol=1e-5)
    out = run_cli(["run", str(so), "--inputs", str(tmp_path / "y.npy")], tmp_path)
    assert out.returncode == 2 and "takes 2 inputs" in out.stderr

    branch = _TwoBranch().eval()
    x, y = torch.randn(1, 8), torch.randn(1, 12)
    got = compile_model(torch.export.export(branch, (x, y)), "llvm", records=tmp_path / "none", shipped=False)(
        x.numpy(), y.numpy())
    with torch.no_grad():
        np.testing.assert_allclose(got, branch(x, y).numpy(), rtol=1e-5, atol=1e-5)


def test_batch_rebatches_static_exports_and_specialises_dynamic_programs(tmp_path):
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).eval()
    path = tmp_path / "static1.onnx"
    torch.onnx.export(model, (torch.randn(1, 3, 8, 8),), str(path), dynamo=False, opset_version=17)
    x = torch.randn(8, 3, 8, 8)
    compiled = compile_model(path, "llvm", records=tmp_path / "none", shipped=False, batch=8)
    assert compiled.imported.input_shape == (8, 3, 8, 8)
    with torch.no_grad():
        np.testing.assert_allclose(compiled(x.numpy()), model(x).numpy(), rtol=1e-4, atol=1e-5)
    assert compile_model(path, "llvm", records=tmp_path / "none", shipped=False).imported.input_shape[0] == 1

    class FixedBatch(nn.Module):          # a graph that hard-codes its batch cannot be rebatched
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(16, 4)

        def forward(self, x):
            return self.lin(x.reshape(1, -1)[:, :16])

    fixed = tmp_path / "fixed.onnx"
    torch.onnx.export(FixedBatch().eval(), (torch.randn(1, 16),), str(fixed), dynamo=False, opset_version=17)
    out = run_cli(["build", str(fixed), "-o", str(tmp_path / "f.so"), "--batch", "8"], tmp_path)
    assert out.returncode == 2 and "static batch of 1" in out.stderr and not (tmp_path / "f.so").exists()

    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(model, (torch.randn(2, 3, 8, 8),), dynamic_shapes=({0: batch},))
    compiled = compile_model(program, "llvm", records=tmp_path / "none", shipped=False, batch=8)
    assert compiled.imported.input_shape == (8, 3, 8, 8)
    with torch.no_grad():
        np.testing.assert_allclose(compiled(x.numpy()), model(x).numpy(), rtol=1e-4, atol=1e-5)


def test_input_shapes_set_a_dynamic_sequence_length_like_tvmc(tmp_path):
    """An export with a dynamic batch and sequence length (as Hugging Face exports are): the
    error names --input-shapes with the axes to fill in; given one input's shape, the other
    input sharing the symbolic axis follows; the build matches onnxruntime at that length, from
    the CLI and the Python API, ONNX and torch.export; bad specs are one line, exit 2."""
    from tvmopt.model.frontend import parse_input_shapes

    torch.manual_seed(5)
    model = _Encoder().eval()
    ids = torch.randint(0, 100, (1, 24))
    mask = torch.ones(1, 24, dtype=torch.int64)
    path = tmp_path / "dyn.onnx"
    torch.onnx.export(model, (ids, mask), str(path), dynamo=False, opset_version=17, input_names=["ids", "mask"],
                      dynamic_axes={"ids": {0: "batch", 1: "sequence"}, "mask": {0: "batch", 1: "sequence"}})
    out = run_cli(["build", str(path), "-o", str(tmp_path / "d.so")], tmp_path)
    assert out.returncode == 2 and '--input-shapes "ids:[batch,sequence]"' in out.stderr, out.stderr
    so = tmp_path / "d.so"
    out = run_cli(["build", str(path), "-o", str(so), "--input-shapes", "ids:[2,24]"], tmp_path)
    assert out.returncode == 0, out.stderr
    ids2 = torch.randint(0, 100, (2, 24))
    mask2 = torch.ones(2, 24, dtype=torch.int64)
    mask2[1, 20:] = 0
    want = _ort(path, ids2.numpy(), mask2.numpy())[0]
    np.savez(tmp_path / "in.npz", ids=ids2.numpy(), mask=mask2.numpy())
    out = run_cli(["run", str(so), "--inputs", str(tmp_path / "in.npz"), "--output", str(tmp_path / "y.npy")],
                  tmp_path)
    assert out.returncode == 0, out.stderr
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), want, rtol=1e-5, atol=1e-5)
    compiled = compile_model(path, "llvm", records=tmp_path / "none", shipped=False,
                             shapes=parse_input_shapes("ids:[2,24], mask:[2,24]"))
    np.testing.assert_allclose(compiled(ids2.numpy(), mask2.numpy()), want, rtol=1e-5, atol=1e-5)
    for spec, message in [("ids:[2,2x]", "whole numbers"), ("ids:[2,0]", "positive"), ("ids 2,24", "NAME:[D1"),
                          ("idz:[2,24]", "'idz', which the model does not take (its inputs: ids, mask)"),
                          ("ids:[2,24,1]", "3 axes, the model 2")]:
        out = run_cli(["inspect", str(path), "--input-shapes", spec], tmp_path)
        assert out.returncode == 2 and message in out.stderr and len(out.stderr.strip().splitlines()) == 1, \
            (spec, out.stderr)

    sequence = torch.export.Dim("sequence", min=2, max=512)
    program = torch.export.export(model, (ids, mask), dynamic_shapes=({1: sequence}, {1: sequence}))
    with pytest.raises(Exception, match="--input-shapes"):
        compile_model(program, "llvm", records=tmp_path / "none", shipped=False)
    ids3, mask3 = torch.randint(0, 100, (1, 40)), torch.ones(1, 40, dtype=torch.int64)
    compiled = compile_model(program, "llvm", records=tmp_path / "none", shipped=False, shapes={"ids": (1, 40)})
    with torch.no_grad():
        np.testing.assert_allclose(compiled(ids3.numpy(), mask3.numpy()), model(ids3, mask3).numpy(),
                                   rtol=1e-5, atol=1e-5)


def test_compress_keeps_layers_it_cannot_take_dense_and_names_them():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 16))
    with pytest.warns(UserWarning, match=r"kept 1 layer\(s\) dense .*0 \(reduction length 27 is not a multiple"):
        out = tn.compress(model, "nm")
    assert type(out[0]) is nn.Conv2d and type(out[3]).__name__ == "NMSparseLinear"
    with pytest.raises(ValueError, match=r"layer '0' cannot be made nm: .* skip=\('0',\)"):
        tn.compress(model, "nm", strict=True)


def test_plain_exports_of_hashed_layers_keep_their_compact_form(tmp_path):
    """HashedNets in a plain export: the bucket values behind the hash are recovered (8x), not
    a codebook of their distinct values (about 1.3x)."""
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(32, 256), nn.ReLU(), tn.HashedLinear(256, 128, seed=2)).eval()
    x = torch.randn(1, 32)
    path = tn.export_onnx(model, x, tmp_path / "hashed.plain.onnx", plain=True)
    compiled = compile_model(path, "llvm", records=tmp_path / "none", shipped=False,
                             options=DetectOptions(kernels="compressed"))     # the default may keep it dense
    layer = compiled.lowered.layers[-1]
    assert layer.kernel.startswith("hashed_dense:") and layer.dense_bytes / layer.compact_bytes > 7.9
    np.testing.assert_allclose(compiled(x.numpy()), _ort(path, x.numpy())[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("plain", [False, True])
def test_block_hashed_layers_run_the_block_kernel_from_both_exports(tmp_path, plain):
    """HashedLinear(block=16): the compact export's HashedBlockGemm and the plain export's dense
    weight (its block hash found again) both lower to hashed_block_dense, 8x smaller than fp32,
    and agree with onnxruntime and PyTorch."""
    torch.manual_seed(6)
    model = nn.Sequential(nn.Linear(32, 256), nn.ReLU(), tn.HashedLinear(256, 128, seed=4, block=16)).eval()
    x = torch.randn(1, 32)
    path = tn.export_onnx(model, x, tmp_path / ("hb.plain.onnx" if plain else "hb.onnx"), plain=plain)
    compiled = compile_model(path, "llvm", records=tmp_path / "none", shipped=False,
                             options=DetectOptions(kernels="compressed"))
    layer = compiled.lowered.layers[-1]
    assert layer.kernel.startswith("hashed_block_dense:") and layer.kernel.endswith("x128x256x4096x1x16"), layer.kernel
    assert layer.dense_bytes / layer.compact_bytes > 7.9
    with torch.no_grad():
        np.testing.assert_allclose(compiled(x.numpy()), model(x).numpy(), rtol=1e-4, atol=1e-5)
    if plain:
        np.testing.assert_allclose(compiled(x.numpy()), _ort(path, x.numpy())[0], rtol=1e-4, atol=1e-5)


def test_initializers_listed_as_inputs_and_folded_away_stay_constants(tmp_path):
    """Exports of ONNX IR version 3 (the model zoo's inception_v2) list every initializer among the
    graph's inputs. When folding consumes one (a scale computed from two constants), it must not
    become an input of the model: the build takes the one real input and matches onnxruntime."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 16)).astype(np.float32)
    a = rng.standard_normal((16,)).astype(np.float32)
    b = rng.standard_normal((16,)).astype(np.float32)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(a, "sc_a"), numpy_helper.from_array(b, "sc_b")]
    nodes = [helper.make_node("Mul", ["sc_a", "sc_b"], ["scale"]),          # folded: sc_a and sc_b die
             helper.make_node("MatMul", ["x", "w"], ["y0"]),
             helper.make_node("Mul", ["y0", "scale"], ["y"])]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])] + [
        helper.make_tensor_value_info(t.name, TensorProto.FLOAT, list(t.dims)) for t in inits]
    graph = helper.make_graph(nodes, "ir3", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    path = tmp_path / "ir3.onnx"
    onnx.save(model, str(path))
    x = rng.standard_normal((1, 8)).astype(np.float32)
    compiled = compile_model(path, "llvm", records=tmp_path / "none", shipped=False)
    assert [i.name for i in compiled.imported.inputs] == ["x"]
    np.testing.assert_allclose(compiled(x), _ort(path, x)[0], rtol=1e-5, atol=1e-5)
