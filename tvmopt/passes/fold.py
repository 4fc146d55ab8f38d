"""Inference batch norm, folded at import.

``batch_norm(conv2d(x, W) [+ b], gamma, beta, mean, var)`` with constant parameters becomes
``conv2d(x, W * s) + (beta + (b - mean) * s)`` with ``s = gamma / sqrt(var + eps)`` per output
channel: the normalization costs nothing at run time and the bias becomes an epilogue the
convolution kernel fuses. A batch norm that follows anything else becomes a per-channel
``x * s + t``, which fuses into its neighbours like any elementwise op.

Folding a batch norm into a compressed convolution's weight leaves the structure intact up to a
per-output-channel scale, which :func:`tvmopt.passes.structure.detect` recognizes.
"""

from __future__ import annotations

import numpy as np

from tvmopt.model.frontend import static_shape
from .bindings import Bindings, rewrite


def fold_batch_norm(mod):
    """``mod`` with every inference ``relax.nn.batch_norm`` on constant statistics folded."""
    import tvm
    from tvm import relax

    op_bn = tvm.ir.Op.get("relax.nn.batch_norm")
    op_conv = tvm.ir.Op.get("relax.nn.conv2d")
    op_add = tvm.ir.Op.get("relax.add")

    @relax.expr_functor.mutator
    class Folder(relax.PyExprMutator, Bindings):
        def visit_tuple_getitem_(self, op):
            op = super().visit_tuple_getitem_(op)
            bn = self._resolve(op.tuple_value)
            if op.index != 0 or not (isinstance(bn, relax.Call) and bn.op.same_as(op_bn)):
                return op
            stats = [self._const(a) for a in bn.args[1:5]]
            if any(s is None for s in stats) or int(bn.attrs.axis) != 1 or bool(bn.attrs.training):
                return op
            gamma, beta, mean, var = (s.astype(np.float64).reshape(-1) for s in stats)
            scale = gamma / np.sqrt(var + float(bn.attrs.epsilon))
            shift = beta - mean * scale
            data = bn.args[0]
            conv, bias = self._conv_and_bias(data, len(scale))
            channels = (1, len(scale)) + (1,) * (len(static_shape(data)) - 2)
            if conv is not None:
                weight = self._const(conv.args[1])
                folded = (weight.astype(np.float64) * scale.reshape((-1,) + (1,) * (weight.ndim - 1)))
                a = conv.attrs
                y = self.builder_.emit(relax.op.nn.conv2d(
                    conv.args[0], relax.const(folded.astype(np.float32)), a.strides, a.padding, a.dilation,
                    a.groups, a.data_layout, a.kernel_layout, a.out_layout))
                total = shift + (bias * scale if bias is not None else 0.0)
                return relax.op.add(y, relax.const(total.reshape(channels).astype(np.float32)))
            y = self.builder_.emit(relax.op.multiply(data, relax.const(scale.reshape(channels).astype(np.float32))))
            return relax.op.add(y, relax.const(shift.reshape(channels).astype(np.float32)))

        def _conv_and_bias(self, expr, channels: int):
            """(conv2d call with a constant NCHW/OIHW weight, its constant bias or None), or
            (None, None) when ``expr`` is not one."""
            call = self._resolve(expr)
            bias = None
            if isinstance(call, relax.Call) and call.op.same_as(op_add):
                b = self._const(call.args[1])
                if b is None or b.size != channels:
                    return None, None
                bias = b.astype(np.float64).reshape(-1)
                call = self._resolve(call.args[0])
            if not (isinstance(call, relax.Call) and call.op.same_as(op_conv)):
                return None, None
            w = self._const(call.args[1])
            a = call.attrs
            if w is None or w.shape[0] != channels or str(a.data_layout) != "NCHW" \
                    or str(a.kernel_layout) != "OIHW":
                return None, None
            return call, bias

    return rewrite(Folder, mod)
