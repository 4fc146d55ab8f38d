"""Attention as exporters write it: the products of two activations run the batched GEMM
kernels (``bgemm``, and ``bgemm_nt`` reading K untransposed) with the scale after them in their
write-back, and softmax and layer normalization run as scheduled row kernels
(passes/row_ops.py). Values against onnxruntime and numpy."""

import re

import numpy as np
import onnxruntime as ort
import pytest

from tvmopt.build.compile import compile_model
from tvmopt.ops.task import TASK_ANNOTATION
from tvmopt.passes.row_ops import layer_norm_func, layer_norm_reference, softmax_func, softmax_reference

BATCH, TOKENS, WIDTH, HEADS = 2, 16, 64, 4


def _attention_block(path, k_perm=(0, 2, 3, 1), mask_shape=(1, 1, 1, TOKENS)):
    """Self-attention and its output projection, residual and LayerNormalization, the way
    torch.onnx writes a BERT layer: K transposed straight from [batch, tokens, heads, d]
    (``k_perm`` [0, 2, 3, 1]) or as Q and V then its last two axes swapped ([0, 2, 1, 3] then a
    second Transpose), ``/ sqrt(d)``, an additive mask, Softmax on the last axis."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    d = WIDTH // HEADS
    consts = {f"w{n}": rng.standard_normal((WIDTH, WIDTH)) / 8 for n in "qkvo"}
    consts.update({f"b{n}": rng.standard_normal(WIDTH) / 4 for n in "qkvo"})
    consts.update({"heads": np.array([BATCH, TOKENS, HEADS, d], np.int64),
                   "flat": np.array([BATCH, TOKENS, WIDTH], np.int64), "scale": np.sqrt(d),
                   "mask": np.where(rng.random(mask_shape) < 0.2, -1e4, 0.0),
                   "gamma": rng.standard_normal(WIDTH), "beta": rng.standard_normal(WIDTH)})
    init = [numpy_helper.from_array(np.asarray(v, np.int64 if k in ("heads", "flat") else np.float32), k)
            for k, v in consts.items()]
    node = helper.make_node
    nodes = []
    for n in "qkv":
        nodes += [node("MatMul", ["x", f"w{n}"], [f"{n}0"]), node("Add", [f"{n}0", f"b{n}"], [f"{n}1"]),
                  node("Reshape", [f"{n}1", "heads"], [f"{n}2"])]
    nodes += [node("Transpose", ["q2"], ["q"], perm=[0, 2, 1, 3]), node("Transpose", ["v2"], ["v"], perm=[0, 2, 1, 3])]
    if tuple(k_perm) == (0, 2, 3, 1):
        nodes.append(node("Transpose", ["k2"], ["kt"], perm=list(k_perm)))
    else:
        nodes += [node("Transpose", ["k2"], ["k"], perm=[0, 2, 1, 3]), node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2])]
    nodes += [node("MatMul", ["q", "kt"], ["s0"]), node("Div", ["s0", "scale"], ["s1"]),
              node("Add", ["s1", "mask"], ["s2"]), node("Softmax", ["s2"], ["p"], axis=-1),
              node("MatMul", ["p", "v"], ["c0"]), node("Transpose", ["c0"], ["c1"], perm=[0, 2, 1, 3]),
              node("Reshape", ["c1", "flat"], ["c"]), node("MatMul", ["c", "wo"], ["o0"]),
              node("Add", ["o0", "bo"], ["o1"]), node("Add", ["o1", "x"], ["r"]),
              node("LayerNormalization", ["r", "gamma", "beta"], ["y"], axis=-1, epsilon=1e-5)]
    shape = [BATCH, TOKENS, WIDTH]
    graph = helper.make_graph(nodes, "attention", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], init)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def _functions(compiled):
    return {gv.name_hint: f.script() for gv, f in compiled.mod.functions_items() if type(f).__name__ == "PrimFunc"}


@pytest.mark.parametrize("k_perm", [(0, 2, 3, 1), (0, 2, 1, 3)])
def test_attention_runs_batched_gemms_and_row_kernels(k_perm, tmp_path):
    path = tmp_path / "attention.onnx"
    _attention_block(path, k_perm)
    compiled = compile_model(path, shipped=False, records=tmp_path)
    functions = _functions(compiled)
    kernels = {n: s for n, s in functions.items() if TASK_ANNOTATION in s}
    # Q . K^T reads K as [batch * heads, tokens, d]; the scale and the mask add in its write-back
    scores = [n for n in kernels if n.startswith(f"fused_bgemm_nt_{BATCH * HEADS}_{TOKENS}_{TOKENS}_{WIDTH // HEADS}")]
    assert len(scores) == 1 and "divide" in scores[0] and "add" in scores[0], sorted(kernels)
    assert not re.findall(r'T\.sblock\("T_(divide|add)\w*"', kernels[scores[0]])
    assert any(n.startswith(f"bgemm_{BATCH * HEADS}_{TOKENS}_{WIDTH // HEADS}_{TOKENS}") for n in kernels), sorted(kernels)
    # softmax and layer norm: the row kernels (rows in parallel, lane partials), not TOPI's stages
    for name in ("softmax", "layer_norm"):
        text = functions[name]
        assert "T.parallel" in text and "T.vectorized" in text and "_lanes" in text, text
    assert not any("T_softmax_maxelem" in s or "T_layer_norm" in s for s in functions.values())
    x = np.random.default_rng(1).standard_normal((BATCH, TOKENS, WIDTH)).astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = sess.run(None, {"x": x})[0]
    np.testing.assert_allclose(compiled(x), want, rtol=1e-4, atol=1e-4)


def test_products_of_activations_that_broadcast_stay_with_relax(tmp_path):
    """Leading axes that differ (a broadcast) are not a batched GEMM: Relax's matmul, same values."""
    import onnx
    from onnx import TensorProto, helper

    shape_a, shape_b = [2, 3, 8, 16], [1, 3, 16, 8]
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["y"])], "bmm",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, shape_a),
                               helper.make_tensor_value_info("b", TensorProto.FLOAT, shape_b)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 8, 8])])
    path = tmp_path / "bmm.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    compiled = compile_model(path, shipped=False, records=tmp_path)
    assert not any("bgemm" in n for n in _functions(compiled))
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal(shape_a).astype(np.float32), rng.standard_normal(shape_b).astype(np.float32)
    np.testing.assert_allclose(compiled(a, b), np.matmul(a, b), rtol=1e-5, atol=1e-5)


def _run(func, *arrays):
    import tvm

    from tvmopt.target import parse_target

    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}),
                      target=parse_target("llvm").tvm_target())
    args = [tvm.runtime.tensor(a) for a in arrays]
    lib(*args)
    return args[-1].numpy()


@pytest.mark.parametrize("shape", [(3, 5, 128), (7, 24), (2, 2, 3, 12), (3, 197), (2, 5, 13), (4, 8)])
def test_row_kernels_match_numpy(shape):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(shape) * 4).astype(np.float32)
    x[..., 1] = -1e4                                       # a masked position: exp underflows to ~0
    out = np.zeros(shape, np.float32)
    np.testing.assert_allclose(_run(softmax_func(shape), x, out), softmax_reference(x), rtol=1e-5, atol=1e-6)
    gamma, beta = rng.standard_normal(shape[-1]).astype(np.float32), rng.standard_normal(shape[-1]).astype(np.float32)
    x = x + 3                                             # a mean far from zero
    got = _run(layer_norm_func(shape, 1e-5), x, gamma, beta, out)
    np.testing.assert_allclose(got, layer_norm_reference(x, gamma, beta, 1e-5), rtol=1e-4, atol=1e-4)


def test_inspect_lists_the_products_of_activations(tmp_path, capsys):
    """`tvmopt inspect` prints a line for the batched GEMM tasks that have no weight (tune tunes them)."""
    from tvmopt.cli.main import main

    path = tmp_path / "attention.onnx"
    _attention_block(path)
    assert main(["inspect", str(path), "--records", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    d = WIDTH // HEADS
    assert (f"2 product(s) of two activations (attention), tunable tasks like the layers': "
            f"bgemm:{BATCH * HEADS}x{TOKENS}x{d}x{TOKENS} x1, bgemm_nt:{BATCH * HEADS}x{TOKENS}x{TOKENS}x{d} x1") in out
