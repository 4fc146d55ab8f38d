"""Exports keep the structure: ai.tvmopt ONNX nodes (validated by their schemas and executed by
a pure-Python evaluator), plain ONNX run by onnxruntime, and torch.export naming the ops."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

import tvmopt.nn as tn
from tvmopt.model.opset import DOMAIN, SPECS, register_onnx_schemas, run_onnx


def _all_layers_model():
    torch.manual_seed(0)
    return nn.Sequential(
        tn.ShiftConv2d(1, 8, 3, padding=1, activation_bits=(6, 8)), nn.ReLU(),
        tn.BinaryConv2d(8, 8, 3, padding=1), nn.ReLU(),
        tn.TernaryConv2d(8, 8, 3, padding=1), nn.ReLU(),
        tn.NMSparseConv2d(8, 4, 3, padding=1, transposable=True), nn.ReLU(),
        nn.Flatten(),
        tn.BinaryLinear(4 * 8 * 8, 64, binarize_input=True), nn.ReLU(),
        tn.Fastfood(64, 100), tn.NMSparseLinear(100, 32, bias=False), nn.ReLU(),
        tn.HashedLinear(32, 32, num_hashes=2), tn.HashedLinear(32, 32, block=16, seed=3), tn.ShiftLinear(32, 24, mode="q"),
        tn.TernaryLinear(24, 16, per_channel=True), tn.HadamardClassifier(16, 10),
    ).eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = _all_layers_model()
    d = tmp_path_factory.mktemp("export")
    x = torch.randn(3, 1, 8, 8)
    return model, tn.export_onnx(model, x, d / "m.onnx"), tn.export_onnx(model, x, d / "p.onnx", plain=True)


def test_custom_domain_nodes_hold_the_compact_form(exported):
    model, path, _ = exported
    proto = onnx.load(str(path))
    register_onnx_schemas()
    onnx.checker.check_model(proto, full_check=True)     # schemas validate every ai.tvmopt node
    ops = [n.op_type for n in proto.graph.node if n.domain == DOMAIN]
    assert ops == ["ShiftConv", "BinaryConv", "TernaryConv", "NMSparseConv", "BinaryGemm", "Fastfood",
                   "NMSparseGemm", "HashedGemm", "HashedBlockGemm", "ShiftGemm", "TernaryGemm", "HadamardGemm"]
    assert {n.op_type for n in proto.graph.node if n.domain != DOMAIN} <= {"Relu", "Reshape", "Flatten"}
    inits = {i.name: i for i in proto.graph.initializer}
    node = next(n for n in proto.graph.node if n.op_type == "BinaryGemm")
    signs = inits[node.input[1]]
    assert signs.data_type == onnx.TensorProto.UINT8 and list(signs.dims) == [64, 256 // 8]
    nm = next(n for n in proto.graph.node if n.op_type == "NMSparseGemm")
    assert len(nm.input) < 4 or nm.input[3] == ""                     # no bias
    # the dense fp32 weights are gone: the file is smaller than the plain export
    assert path.stat().st_size < exported[2].stat().st_size
    # batch is symbolic
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param


def test_custom_domain_model_runs_in_the_reference_evaluator(exported):
    model, path, _ = exported
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        ref = model(x).numpy()
    np.testing.assert_allclose(run_onnx(path, x.numpy()), ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_plain_export_runs_in_onnxruntime(exported):
    model, _, plain = exported
    proto = onnx.load(str(plain))
    onnx.checker.check_model(proto)
    assert all(n.domain in ("", "ai.onnx") for n in proto.graph.node)
    assert {"Conv", "Gemm"} & {n.op_type for n in proto.graph.node}
    sess = ort.InferenceSession(str(plain), providers=["CPUExecutionProvider"])
    for batch in (1, 7):
        x = torch.randn(batch, 1, 8, 8)
        with torch.no_grad():
            ref = model(x).numpy()
        got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
        assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()


def test_torch_export_names_the_custom_ops():
    model = _all_layers_model()
    x = torch.randn(2, 1, 8, 8)
    program = tn.export_program(model, x)
    targets = [str(n.target) for n in program.graph.nodes if n.op == "call_function"]
    names = {t.split(".")[1] for t in targets if t.startswith("tvmopt.")}
    assert names == {"shift_conv", "binary_conv", "ternary_conv", "nm_sparse_conv", "binary_gemm", "fastfood",
                     "nm_sparse_gemm", "hashed_gemm", "hashed_block_gemm", "shift_gemm", "ternary_gemm", "hadamard_gemm"}
    assert len(names) == len(SPECS)
    with torch.no_grad():
        np.testing.assert_allclose(program.module()(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-5)


def test_frozen_and_plain_models_match_the_original():
    model = _all_layers_model()
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        ref = model(x)
        np.testing.assert_allclose(tn.freeze(model)(x).numpy(), ref.numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(tn.to_plain(model)(x).numpy(), ref.numpy(), rtol=1e-5, atol=1e-5)
    assert not any(isinstance(m, tn.CompressedLayer) for m in tn.to_plain(model).modules())
