"""ONNX's QOperator form of a quantized model as the QDQ form it stands for.

ONNX Runtime's ``quantize_static(quant_format=QOperator)`` and the int8 models of the ONNX model
zoo write each quantized layer as one operator over quantized tensors: ``QLinearConv`` and
``QLinearMatMul`` (standard ONNX), ``QGemm``, ``QLinearAdd``, ``QLinearMul``,
``QLinearGlobalAveragePool``, ``QLinearConcat``, ``QLinearSoftmax`` (over the last axis),
``QLinearSigmoid`` and ``QLinearLeakyRelu`` (ONNX Runtime's ``com.microsoft`` domain).
TVM's importer knows none of them. Each becomes ``DequantizeLinear`` of its quantized inputs, the
float operator, and ``QuantizeLinear`` of its output with the output's scale and zero point: the
QDQ form, whose pairs the pass turns into integer products (``int8_dense``) like any QDQ file's.
An integer bias (int32, scale ``x_scale * w_scale``) is dequantized with that scale.

The float path rounds once per operator where ONNX Runtime's integer kernels requantize in
their own arithmetic, so an output can land a quantum apart (as between ONNX Runtime's own QDQ
and QOperator runs of one model).

``ConvInteger`` (ONNX Runtime's ``quantize_dynamic`` of a convolution, after DynamicQuantizeLinear)
becomes the float convolution of ``x - x_zero_point`` and ``w - w_zero_point`` (zero padding of
the difference is padding ``x`` with its zero point, as ONNX Runtime does), rounded, left in
float32 for the Cast to float that follows it: the same integers wherever the float sums stay
exact (below 2^24 in magnitude), and within an ulp of them above. It runs the fp32 convolution kernels, not integer products (the zero point is data,
which the uint8 im2col's padding would need at run time).
"""

from __future__ import annotations

#: the operators rewritten, by domain
STANDARD = ("QLinearConv", "QLinearMatMul", "ConvInteger")
MICROSOFT = ("QGemm", "QLinearAdd", "QLinearMul", "QLinearGlobalAveragePool", "QLinearConcat", "QLinearSoftmax",
             "QLinearSigmoid", "QLinearLeakyRelu")


def is_qoperator(node) -> bool:
    return (node.domain in ("", "ai.onnx") and node.op_type in STANDARD) or \
        (node.domain == "com.microsoft" and node.op_type in MICROSOFT)


def as_qdq(model):
    """``model`` with every QOperator node replaced by its QDQ form (the same object when it has
    none)."""
    from onnx import TensorProto, helper

    if not any(is_qoperator(n) for n in model.graph.node):
        return model
    nodes = []
    counter = [0]

    def fresh(base: str) -> str:
        counter[0] += 1
        return f"{base}__qdq{counter[0]}"

    def dq(x, scale, zero="", axis=None):
        out = fresh(x)
        inputs = [x, scale] + ([zero] if zero else [])
        nodes.append(helper.make_node("DequantizeLinear", inputs, [out], **({"axis": axis} if axis is not None else {})))
        return out

    def q(x, scale, zero, out):
        nodes.append(helper.make_node("QuantizeLinear", [x, scale] + ([zero] if zero else []), [out]))

    def mul(a, b):
        out = fresh("scale")
        nodes.append(helper.make_node("Mul", [a, b], [out]))
        return out

    def arg(node, i):
        return node.input[i] if i < len(node.input) else ""

    def as_float(x, zero, weight=False):
        """float32 of ``x - zero`` (a weight's zero point per output channel: [M, 1, 1, 1])."""
        value = fresh(x)
        nodes.append(helper.make_node("Cast", [x], [value], to=TensorProto.FLOAT))
        if not zero:
            return value
        z = fresh(zero)
        nodes.append(helper.make_node("Cast", [zero], [z], to=TensorProto.FLOAT))
        if weight:
            shaped = fresh(zero)
            shape = fresh("shape")
            nodes.append(helper.make_node("Constant", [], [shape], value=helper.make_tensor(
                shape, TensorProto.INT64, [4], [-1, 1, 1, 1])))
            nodes.append(helper.make_node("Reshape", [z, shape], [shaped]))
            z = shaped
        diff = fresh(x)
        nodes.append(helper.make_node("Sub", [value, z], [diff]))
        return diff

    for node in model.graph.node:
        if not is_qoperator(node):
            nodes.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        kind, out = node.op_type, node.output[0]
        if kind == "ConvInteger":
            x, w = (as_float(node.input[i], arg(node, i + 2), weight=i == 1) for i in (0, 1))
            y = fresh(out)
            nodes.append(helper.make_node("Conv", [x, w], [y], **attrs))
            # float, not int32: what follows is ONNX Runtime's Cast to float (here a no-op), and
            # TVM's import of a Cast to int32 emulates wraparound in int64 (five ops a value)
            nodes.append(helper.make_node("Round", [y], [out]))
        elif kind == "QLinearConv":
            x = dq(arg(node, 0), arg(node, 1), arg(node, 2))
            w = dq(arg(node, 3), arg(node, 4), arg(node, 5), axis=0)
            inputs = [x, w]
            if arg(node, 8):
                inputs.append(dq(arg(node, 8), mul(arg(node, 1), arg(node, 4)), axis=0))
            y = fresh(out)
            nodes.append(helper.make_node("Conv", inputs, [y], **attrs))
            q(y, arg(node, 6), arg(node, 7), out)
        elif kind == "QLinearMatMul":
            a = dq(arg(node, 0), arg(node, 1), arg(node, 2))
            b = dq(arg(node, 3), arg(node, 4), arg(node, 5), axis=-1)
            y = fresh(out)
            nodes.append(helper.make_node("MatMul", [a, b], [y]))
            q(y, arg(node, 6), arg(node, 7), out)
        elif kind == "QGemm":
            a = dq(arg(node, 0), arg(node, 1), arg(node, 2))
            b = dq(arg(node, 3), arg(node, 4), arg(node, 5), axis=0 if attrs.get("transB", 0) else -1)
            inputs = [a, b]
            if arg(node, 6):
                inputs.append(dq(arg(node, 6), mul(arg(node, 1), arg(node, 4)), axis=-1))
            gemm = {k: v for k, v in attrs.items() if k in ("alpha", "transA", "transB")}
            if arg(node, 7):                    # a quantized output; without its scale, float
                y = fresh(out)
                nodes.append(helper.make_node("Gemm", inputs, [y], **gemm))
                q(y, arg(node, 7), arg(node, 8), out)
            else:
                nodes.append(helper.make_node("Gemm", inputs, [out], **gemm))
        elif kind in ("QLinearAdd", "QLinearMul"):
            a = dq(arg(node, 0), arg(node, 1), arg(node, 2))
            b = dq(arg(node, 3), arg(node, 4), arg(node, 5))
            y = fresh(out)
            nodes.append(helper.make_node(kind[len("QLinear"):], [a, b], [y]))
            q(y, arg(node, 6), arg(node, 7), out)
        elif kind == "QLinearGlobalAveragePool":
            if attrs.get("channels_last", 0):
                from tvmopt.errors import ModelError

                raise ModelError(f"{node.name or kind}: QLinearGlobalAveragePool with channels_last=1 is not supported")
            x = dq(arg(node, 0), arg(node, 1), arg(node, 2))
            y = fresh(out)
            nodes.append(helper.make_node("GlobalAveragePool", [x], [y]))
            q(y, arg(node, 3), arg(node, 4), out)
        elif kind in ("QLinearSoftmax", "QLinearSigmoid", "QLinearLeakyRelu"):
            # X, X_scale, X_zero_point, Y_scale, Y_zero_point
            x = dq(arg(node, 0), arg(node, 1), arg(node, 2))
            y = fresh(out)
            if kind == "QLinearSoftmax":
                if attrs.get("axis", -1) != -1:
                    from tvmopt.errors import ModelError

                    raise ModelError(f"{node.name or kind}: QLinearSoftmax over axis {attrs['axis']} is not supported "
                                     "(only the last axis, where every opset's Softmax agrees)")
                nodes.append(helper.make_node("Softmax", [x], [y], axis=-1))
            elif kind == "QLinearSigmoid":
                nodes.append(helper.make_node("Sigmoid", [x], [y]))
            else:
                nodes.append(helper.make_node("LeakyRelu", [x], [y], alpha=attrs.get("alpha", 0.01)))
            q(y, arg(node, 3), arg(node, 4), out)
        else:                                   # QLinearConcat: Y_scale, Y_zero, then (X, scale, zero) per input
            parts = [dq(node.input[i], node.input[i + 1], node.input[i + 2]) for i in range(2, len(node.input), 3)]
            y = fresh(out)
            nodes.append(helper.make_node("Concat", parts, [y], axis=attrs.get("axis", 0)))
            q(y, arg(node, 0), arg(node, 1), out)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model
