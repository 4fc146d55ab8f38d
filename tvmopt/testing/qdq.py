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


def qdq_conv_model(path: Path, shape=(1, 16, 12, 12), out_channels: int = 32, kernel: int = 3, stride: int = 1,
                   pad: int = 1, zero_point: int = 128, scale: float = 0.05, powers: int = 0, seed: int = 7,
                   layers: int = 1) -> Path:
    """``layers`` times ``relu(conv(dequant(quant(x)), W) + b)`` with ``W[o] = a_o * t``
    (``±2^p``, p in 0..powers-1, for ``powers``; else t in {-1, 0, 1}); the later layers keep
    the channel count and take stride 1. Written to ``path``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    n, c, h, w = shape
    inits, nodes, src = [numpy_helper.from_array(np.array(scale, np.float32), "s"),
                         numpy_helper.from_array(np.array(zero_point, np.uint8), "zp")], [], "x"
    for i in range(layers):
        cin = c if i == 0 else out_channels
        t = rng.integers(-1, 2, (out_channels, cin, kernel, kernel))
        if powers:
            t = rng.choice([-1, 1], t.shape) * 2 ** rng.integers(0, powers, t.shape)
        alpha = rng.uniform(0.5, 2.0, out_channels).astype(np.float32) / np.float32(np.sqrt(cin * kernel * kernel))
        inits += [numpy_helper.from_array((t * alpha[:, None, None, None]).astype(np.float32), f"W{i}"),
                  numpy_helper.from_array(rng.standard_normal(out_channels).astype(np.float32), f"b{i}")]
        nodes += [helper.make_node("QuantizeLinear", [src, "s", "zp"], [f"q{i}"]),
                  helper.make_node("DequantizeLinear", [f"q{i}", "s", "zp"], [f"dq{i}"]),
                  helper.make_node("Conv", [f"dq{i}", f"W{i}", f"b{i}"], [f"c{i}"], pads=[pad] * 4,
                                   strides=[stride if i == 0 else 1] * 2),
                  helper.make_node("Relu", [f"c{i}"], [f"y{i}"])]
        src = f"y{i}"
        if i == 0:
            h, w = (h + 2 * pad - kernel) // stride + 1, (w + 2 * pad - kernel) // stride + 1
        else:
            h, w = h + 2 * pad - kernel + 1, w + 2 * pad - kernel + 1
    graph = helper.make_graph(nodes, "qdq_conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info(src, TensorProto.FLOAT, [n, out_channels, h, w])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return Path(path)
