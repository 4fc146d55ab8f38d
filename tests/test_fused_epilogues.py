"""Fused epilogues for the GEMM-family kernels (issue 18, item 3): the pass emits dense and
compressed linear kernels unscheduled; Relax fuses the per-output scale, the bias and the
activation after them, and the scheduler inlines those into the accumulator's write-back. The
IR then holds no elementwise function between a kernel and the next."""

import re
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from tvmopt.build.compile import compile_model
from tvmopt.ops.task import TASK_ANNOTATION
from tvmopt.passes import DetectOptions
from tests_support import avx2_host

MODELS = Path(__file__).resolve().parent.parent / "examples" / "models"
COMPRESSED = DetectOptions(kernels="compressed")


def _functions(compiled):
    return {gv.name_hint: f.script() for gv, f in compiled.mod.functions_items() if type(f).__name__ == "PrimFunc"}


@pytest.mark.parametrize("name,family,batch", [
    ("mlp_ternary", "ternary_dense", 4), ("mlp_binary.plain", "binary_dense", 4), ("mlp_shift", "shift_dense", 4),
    ("mlp_nm24", "nm_decode_dense", 4), ("mlp_hashed", "hashed_dense", 4), ("mlp_fp32", "dense", 4),
    ("mlp_ternary", "ternary_rowlut_dense", 64), ("mlp_binary.plain", "binary_rowlut_dense", 16)])
def test_scale_bias_and_relu_run_in_the_kernels_write_back(name, family, batch, tmp_path):
    path = MODELS / f"digits_{name}.onnx"
    # binary, ternary and 2:4 layers: the decode and row-table kernels of AVX2 targets (AVX-512
    # gives the 16-wide ones register kernels: tests/test_perm_tables.py and test_nm_perm.py
    # check their write-back)
    target = avx2_host() if family.startswith(("binary", "ternary", "nm")) else "llvm"
    compiled = compile_model(path, target, batch=batch, options=COMPRESSED, shipped=False, records=tmp_path)
    functions = _functions(compiled)
    kernels = {n: s for n, s in functions.items() if TASK_ANNOTATION in s}
    assert len(kernels) == 3 and all(n.startswith(f"fused_{family}_") for n in kernels), sorted(kernels)
    # every kernel carries its epilogue (bias, and the scale where the layer has one, the ReLU)...
    assert sum("relu" in n for n in kernels) == 2 and all("add" in n for n in kernels)
    # ...inlined into the write-back: no elementwise block is left inside the fused function
    for text in kernels.values():
        assert not re.findall(r'T\.sblock\("(T_multiply|T_add|relu)\w*"', text)
    # and no function between the kernels but the input's reshape
    assert set(functions) - set(kernels) <= {"reshape"}
    x = np.load(MODELS / "digits_test.npz")["x"][:batch]
    plain = MODELS / f"digits_{name.split('.')[0]}.plain.onnx"
    plain = plain if plain.exists() else path
    sess = ort.InferenceSession(str(plain), providers=["CPUExecutionProvider"])
    want = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(compiled(x), want, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(want).max())))


@pytest.mark.parametrize("name", ["mlp_fastfood", "mlp_fastfood.plain"])
def test_the_walsh_hadamard_kernels_carry_their_epilogue_too(name, tmp_path):
    """Fastfood and Hadamard kernels are emitted unscheduled and fusable like the GEMMs: the
    bias and ReLU after each run in its output stage; no elementwise function is left."""
    path = MODELS / f"digits_{name}.onnx"
    compiled = compile_model(path, batch=8, shipped=False, records=tmp_path)     # fewer rows: predicted dense
    assert [la.kernel.split(":")[0] for la in compiled.lowered.layers] == ["fastfood", "fastfood", "hadamard"]
    functions = _functions(compiled)
    kernels = {n: s for n, s in functions.items() if TASK_ANNOTATION in s}
    assert len(kernels) == 3 and sum("relu" in n for n in kernels) == 2, sorted(kernels)
    for text in kernels.values():
        assert not re.findall(r'T\.sblock\("(T_multiply|T_add|relu)\w*"', text)
    assert set(functions) - set(kernels) <= {"reshape"}, sorted(set(functions) - set(kernels))
    x = np.load(MODELS / "digits_test.npz")["x"][:8]
    sess = ort.InferenceSession(str(MODELS / "digits_mlp_fastfood.plain.onnx"), providers=["CPUExecutionProvider"])
    want = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(compiled(x), want, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(want).max())))


def _encoder_mlp(path, tokens=16, width=64, hidden=128):
    """A transformer's MLP block as exporters write it: MatMuls on [batch, tokens, features],
    bias Adds after them, GELU in its tanh form (Pow 3) and a residual Add."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    consts = {"w1": rng.standard_normal((width, hidden)) / 8, "b1": rng.standard_normal(hidden),
              "w2": rng.standard_normal((hidden, width)) / 11, "b2": rng.standard_normal(width),
              "three": 3.0, "c": 0.044715, "k": (2 / np.pi) ** 0.5, "one": 1.0, "half": 0.5}
    init = [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in consts.items()]
    node = helper.make_node
    nodes = [node("MatMul", ["x", "w1"], ["m1"]), node("Add", ["m1", "b1"], ["h"]),
             node("Pow", ["h", "three"], ["h3"]), node("Mul", ["h3", "c"], ["h3c"]), node("Add", ["h", "h3c"], ["u"]),
             node("Mul", ["u", "k"], ["uk"]), node("Tanh", ["uk"], ["t"]), node("Add", ["t", "one"], ["t1"]),
             node("Mul", ["h", "t1"], ["ht"]), node("Mul", ["ht", "half"], ["g"]),
             node("MatMul", ["g", "w2"], ["m2"]), node("Add", ["m2", "b2"], ["o"]), node("Add", ["o", "x"], ["r"]),
             node("Relu", ["r"], ["y"])]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, tokens, width])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, tokens, width])], init)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_a_3d_matmuls_bias_gelu_and_residual_fuse_into_the_gemm(tmp_path, capfd):
    """A MatMul on a 3-D input runs the 2-D dense kernel between reshapes; the bias, the GELU
    and the residual add after it are computed on its 2-D output (passes/flat_epilogue.py), so
    they fuse into its write-back: one function per GEMM, with the last op (the model's output)
    beside its reshape; no elementwise block left inside the GEMMs; outputs as onnxruntime's."""
    path = tmp_path / "mlp.onnx"
    _encoder_mlp(path)
    compiled = compile_model(path, shipped=False, records=tmp_path)
    functions = _functions(compiled)
    kernels = {n: s for n, s in functions.items() if TASK_ANNOTATION in s}
    assert len(kernels) == 2, sorted(functions)
    gelu = next(n for n in kernels if "tanh" in n)
    assert gelu.startswith("fused_dense_32_128_64_add") and gelu.count("multiply") >= 5, gelu
    residual = next(n for n in kernels if n != gelu)
    assert residual.startswith("fused_dense_32_64_128_add") and residual.count("add") == 2, residual
    for text in kernels.values():
        assert not re.findall(r'T\.sblock\("(T_multiply|T_add|T_tanh|T_power|tanh)\w*"', text)
    # the rest: the output's reshape with its ReLU (a reshape there is a copy, so the last op stays)
    assert len(set(functions) - set(kernels)) == 1 and "relu" in "".join(set(functions) - set(kernels))
    # x ** 3 went in as products: TVM's C++ log warns about pow(x, 3) on stderr otherwise
    assert "pow(x, y)" not in capfd.readouterr().err
    x = np.random.default_rng(1).standard_normal((2, 16, 64)).astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = sess.run(None, {"x": x})[0]
    np.testing.assert_allclose(compiled(x), want, rtol=1e-4, atol=1e-5 * max(1.0, float(np.abs(want).max())))


@pytest.mark.parametrize("method", ["ternary", "nm", "binary-act"])
def test_compressed_kernels_compute_a_prime_token_count_on_padded_rows(method, tmp_path):
    """197 tokens (a ViT's): the compressed kernel computes 200 rows (a register tile of one row
    ran 2:4 at 0.92x its dense kernel), the bias and GELU still in its write-back function and
    the dropped rows cropped after them, never stored past the 197 rows (AVX2's ``xnor8_dense``
    computes ``[1, 200, 1, N]``: its crop once went into the write-back unbounded and corrupted
    the heap); outputs as onnxruntime's."""
    import torch

    import tvmopt.nn as tn

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.GELU(), torch.nn.Linear(128, 64)).eval()
    model = tn.compress(model, "binary", binarize_input=True) if method == "binary-act" else tn.compress(model, method)
    path = tmp_path / "mlp197.onnx"
    tn.export_onnx(model, torch.randn(1, 197, 64), path, plain=True)
    compiled = compile_model(path, "llvm", shipped=False, records=tmp_path, options=COMPRESSED)
    layers = compiled.lowered.layers
    assert [la.kernel.split(":")[1].split("x")[0] for la in layers] == ["200", "200"], [la.kernel for la in layers]
    assert all(la.shape.endswith(", 200 rows computed") for la in layers)
    functions = _functions(compiled)
    gelu = [n for n in functions if TASK_ANNOTATION in functions[n] and "erf" in n]
    # bias and GELU on the padded rows, then the crop (passes/flat_epilogue.py moves it past them)
    assert len(gelu) == 1 and gelu[0].index("add") < gelu[0].index("erf") < gelu[0].index("strided_slice"), \
        sorted(functions)
    for name in gelu:      # the 197-row output: a bounded store (T.where) or a crop loop of its own
        text = functions[name]
        assert "T.where(" in text or "T.axis.spatial(197" in text, name
    x = np.random.default_rng(2).standard_normal((1, 197, 64)).astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(compiled(x), want, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(want).max())))
