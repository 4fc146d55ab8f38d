"""ONNX models whose layers take quantized activations (QuantizeLinear then DequantizeLinear, as
QDQ exports write them) times integer weights: the test and benchmark inputs of ``int8_dense``."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def qdq_matmul_model(path: Path, m: int, k: int, n: int, zero_point: int = 128, binary: bool = False,
                     zp_type=np.uint8, scale: float = 0.05, seed: int = 7, powers: int = 0) -> Path:
    """``relu(dequant(quant(x)) @ W + b)`` with ``W[:, j] = a_j * t`` (t in {-1, 1} for
    ``binary``; ``±2^p`` with p in 0..powers-1 for ``powers`` (DeepShift's weights); else
    {-1, 0, 1}); written to ``path``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    alpha = rng.uniform(0.5, 2.0, n).astype(np.float32)
    signs = rng.choice([-1, 1], (n, k)) if binary else rng.integers(-1, 2, (n, k))
    if powers:
        signs = rng.choice([-1, 1], (n, k)) * 2 ** rng.integers(0, powers, (n, k))
    w = (signs * alpha[:, None]).astype(np.float32).T            # MatMul's [K, N]
    bias = rng.standard_normal(n).astype(np.float32)
    inits = [numpy_helper.from_array(np.array(scale, np.float32), "s"),
             numpy_helper.from_array(np.array(zero_point, zp_type), "zp"),
             numpy_helper.from_array(w, "W"), numpy_helper.from_array(bias, "b")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["dq"]),
             helper.make_node("MatMul", ["dq", "W"], ["mm"]),
             helper.make_node("Add", ["mm", "b"], ["pre"]),
             helper.make_node("Relu", ["pre"], ["y"])]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return Path(path)
