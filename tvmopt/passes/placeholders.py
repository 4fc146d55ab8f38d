"""``ai.tvmopt`` convolution nodes (tvmopt.nn's compact exports) as the plain Relax ops they
decode to, before the layout is chosen.

The lowering decodes the weight exactly and detection finds its structure again, as for any
plain export, so nothing is lost by turning the node into plain ops: the input's
fixed-point rounding (``act_int_bits``/``act_frac_bits``) or binarization (``where(x >= 0, 1,
-1)``, the pattern the XNOR conv recognizes), ``conv2d`` on the decoded weight, the bias added
after it. The graph then reads as a plain export's, and the layout choice treats it like one:
channels last where every convolution has an NHWC kernel. Kept as nodes, they held the whole
graph in NCHW (the bundled digits CNNs ran their dense convolutions NCHW; cnn_ternary at batch 64
was 0.72x onnxruntime on the Intel Xeon).
"""

from __future__ import annotations

import numpy as np


def placeholder_parts(call, const):
    """``(op, x, inputs, attrs, unread)`` of an ``ai.tvmopt`` placeholder ``call``
    (``call_dps_packed("tvmopt.<Op>", (x, inputs..., attrs...))``), constants read with
    ``const``: ``inputs[name]`` is None for an empty input; ``unread``, the names of the inputs
    that are not constants."""
    from tvmopt.model.frontend import PLACEHOLDER_PREFIX
    from tvmopt.model.opset import SPECS

    op = str(call.args[0].global_symbol)[len(PLACEHOLDER_PREFIX):]
    spec = SPECS[op]
    args = list(call.args[1].fields)
    inputs, attrs, unread = {}, {}, []
    for (name, _, _), arg in zip(spec.inputs, args[1:]):
        value = const(arg)
        if value is None:
            unread.append(name)
        else:
            inputs[name] = None if value.size == 0 else value
    for (name, kind), arg in zip(spec.attrs, args[1 + len(spec.inputs):]):
        attrs[name] = [int(v) for v in arg.values] if kind == "ints" else int(arg.value)
    return op, args[0], inputs, attrs, unread


def is_placeholder(call) -> bool:
    from tvm import relax

    from tvmopt.model.frontend import PLACEHOLDER_PREFIX

    return (isinstance(call, relax.Call) and getattr(call.op, "name", "") == "relax.call_dps_packed"
            and isinstance(call.args[0], relax.ExternFunc)
            and str(call.args[0].global_symbol).startswith(PLACEHOLDER_PREFIX))


def plain_conv_placeholders(mod):
    """``mod`` with every ``ai.tvmopt`` conv node whose inputs are constants replaced by the
    plain ops it decodes to (see the module's docstring); linear nodes stay."""
    from tvm import relax

    from tvmopt.model.opset import SPECS, decode_weight

    from .bindings import Bindings, rewrite
    from .lower import _fixed_point, binarize

    @relax.expr_functor.mutator
    class Plain(relax.PyExprMutator, Bindings):
        def visit_call_(self, call):
            call = super().visit_call_(call)
            if not is_placeholder(call):
                return call
            op, x, inputs, attrs, unread = placeholder_parts(call, self._const)
            if not SPECS[op].conv or unread:
                return call                 # the lowering reports a non-constant input
            w = decode_weight(op, inputs, attrs).astype(np.float32)
            if attrs.get("act_int_bits") or attrs.get("act_frac_bits"):
                x = self.builder_.emit(_fixed_point(x, attrs["act_int_bits"], attrs["act_frac_bits"]))
            if attrs.get("binarize_input"):
                x = self.builder_.emit(binarize(x))
            y = relax.op.nn.conv2d(x, relax.const(w), strides=attrs["strides"], padding=attrs["pads"],
                                   dilation=attrs["dilations"])
            bias = inputs.get("bias")
            if bias is not None:
                y = relax.op.add(self.builder_.emit(y), relax.const(bias.astype(np.float32).reshape(1, -1, 1, 1)))
            return y

    return rewrite(Plain, mod)
