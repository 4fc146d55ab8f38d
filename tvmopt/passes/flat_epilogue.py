"""Elementwise ops after a GEMM computed on its 2-D output, so that they fuse into its write-back.

A MatMul on a 3-D input (every transformer export: ``[batch, tokens, features]``) becomes the
2-D ``dense:MxNxK`` kernel between two reshapes, and the bias add and activation the exporter
wrote after it read the 3-D tensor. Relax fuses elementwise and broadcast ops into a kernel
that accepts epilogues, but not a reshape, so they ran as a kernel of their own: the BERT-sized
encoder MLP's bias and tanh GELU took 5% of its time (Zen 4, 128 tokens) and wrote and read
back its 1.5 MB activation.

:func:`flatten` moves such a reshape past the elementwise ops that follow it: ``op(reshape(y,
S), c)`` becomes ``reshape(op(y, c'), S)`` where ``y`` is 2-D ``[M, N]``, ``S`` keeps the last
axis ``N`` (``prod(S[:-1]) == M``), and every other operand is the same kind of reshape, a
tensor of shape ``S`` (reshaped too: a view) or broadcasts over the last axis alone (a bias, a
scalar). ``reshape(reshape(y, S), (M, N))`` (the next MatMul's input) becomes ``y``. Values are
unchanged: the same ops on the same elements. The batched kernel of a product of two
activations (``bgemm``, ``[batch, M, N]`` viewed as ``[..., heads, M, N]``) gets the same
treatment, so attention's ``/ sqrt(d)`` runs in its write-back.

A compressed kernel computes a row count that 4 does not divide on padded rows
(``schedules.gemm.padded_rows``) and its rows are cropped after it (``strided_slice``);
``op(crop(z), c)`` becomes ``crop(op(z, c))`` where every other operand has no row axis (a bias, a scalar) or is
cropped alike (GELU's ``x * f(x)``), so the crop comes after the activation. The crop goes into
the write-back last, once the kernel's schedule has placed it, where TVM bounds the store with a
predicate (``fuse_schedule._inline_crop``; ``schedules.gemm.inline_epilogue`` never inlines it
earlier: there TVM wrote past the end of the smaller buffer).
"""

from __future__ import annotations

from .bindings import Bindings, rewrite, tensor_shape as _shape

#: ops applied element by element, with their broadcasting
ELEMENTWISE = frozenset({
    "relax.add", "relax.subtract", "relax.multiply", "relax.divide", "relax.power", "relax.maximum",
    "relax.minimum", "relax.tanh", "relax.exp", "relax.sigmoid", "relax.sqrt", "relax.rsqrt", "relax.erf",
    "relax.negative", "relax.abs", "relax.clip", "relax.log", "relax.round", "relax.floor", "relax.ceil",
    "relax.sign", "relax.nn.relu", "relax.nn.gelu", "relax.nn.gelu_tanh", "relax.nn.silu", "relax.square"})


#: elementwise too where their scale and zero point are one value for the whole tensor (a QDQ
#: export quantizes each activation per tensor, the GEMM's output and each op of its epilogue:
#: ONNX Runtime's QDQ BERT MLP ran its bias, GELU and 9 quantizer pairs as a kernel of its own,
#: 1.7 ms against 0.8 ms for the integer product before it, Zen 4)
QUANTIZERS = frozenset({"relax.quantize", "relax.dequantize"})


def _per_tensor(call) -> bool:
    """A quantize or dequantize whose scale and zero point are each a single value."""
    shapes = [_shape(a) for a in call.args[1:3]]
    return len(shapes) == 2 and all(s is not None and len(s) <= 1 and all(d == 1 for d in s) for s in shapes)


def _same_op(call, args):
    """``call``'s op on ``args``; a per-tensor quantizer with ``axis=-1`` (its axis may not exist
    in the new shape, and a single scale does not read it)."""
    from tvm import relax

    name = getattr(call.op, "name", "")
    if name in QUANTIZERS:
        make = relax.op.quantize if name == "relax.quantize" else relax.op.dequantize
        return make(args[0], args[1], args[2], axis=-1, out_dtype=str(call.attrs.out_dtype))
    return relax.Call(call.op, args, call.attrs, call.ty_args)


def _ints(expr) -> list[int] | None:
    """The integers of a tuple of PrimValues (a strided_slice's axes, begins, ends, strides)."""
    try:
        return [int(f.value) for f in expr.fields]
    except (AttributeError, TypeError):
        return None


def flatten(mod):
    """``mod`` with reshapes of 2-D GEMM outputs moved past the elementwise ops after them."""
    from tvm import relax

    @relax.expr_functor.mutator
    class Flatten(relax.PyExprMutator, Bindings):
        def _flat(self, expr):
            """(y, S) when ``expr`` is ``reshape(y, S)`` with ``y`` [..., N] (2-D from a dense
            kernel, 3-D from a batched one) and S ending in N."""
            call = self._call(expr, "reshape")
            if call is None:
                return None
            source, target = _shape(call.args[0]), _shape(expr)
            if source is None or target is None or len(source) < 2 or len(target) < 2 or target[-1] != source[-1]:
                return None
            return call.args[0], target

        def _operand(self, expr, target, flat_shape):
            """``expr`` as an operand of the op on the source's shape ``flat_shape``: a reshape's
            source of that shape, a tensor of shape ``target`` viewed in it, or one broadcast over
            the last axis alone; else None."""
            flat = self._flat(expr)
            if flat is not None:
                return flat[0] if flat[1] == target and _shape(flat[0]) == flat_shape else None
            shape = _shape(expr)
            if shape is None:
                return None
            if shape == target:
                return relax.op.reshape(expr, flat_shape)
            if len(shape) <= 1 or (len(shape) <= len(target) and all(d == 1 for d in shape[:-1])):
                if len(shape) <= 1:
                    return expr
                value = self._const(expr)
                new = (shape[-1],)
                return relax.const(value.reshape(new)) if value is not None else relax.op.reshape(expr, new)
            return None

        escaping = False

        def visit_var_binding_(self, binding):
            # a value leaving the dataflow block (the model's output) keeps its reshape before
            # the ops: Relax makes a reshape there a copying kernel, not a view (0.075 ms for the
            # encoder's 128 x 768 output, where the reshape fused with the bias add took 0.019)
            self.escaping = not isinstance(binding.var, relax.DataflowVar)
            try:
                super().visit_var_binding_(binding)
            finally:
                self.escaping = False

        def visit_call_(self, call):
            call = super().visit_call_(call)
            name = getattr(call.op, "name", "")
            if self.escaping:
                return call
            if name == "relax.reshape":
                flat = self._flat(call.args[0])
                if flat is not None and _shape(call) == _shape(flat[0]):
                    return flat[0]          # reshape(reshape(y, S), shape of y)
                return call
            if not call.args or not (name in ELEMENTWISE or (name in QUANTIZERS and _per_tensor(call))):
                return call
            tensors = [a for a in call.args if isinstance(getattr(a, "ty", None), relax.TensorType)]
            found = [f for f in (self._flat(a) for a in tensors) if f is not None]
            if not found:
                return self._through_slice(call)
            target, flat_shape = found[0][1], _shape(found[0][0])
            if _shape(call) != target:
                return call
            args = []
            for a in call.args:
                if not isinstance(getattr(a, "ty", None), relax.TensorType):
                    args.append(a)
                    continue
                operand = self._operand(a, target, flat_shape)
                if operand is None:
                    return call
                args.append(operand)
            flat = self.builder_.emit(self._through_slice(_same_op(call, args)))
            return relax.op.reshape(flat, target)

        def _rows_slice(self, expr):
            """``z`` when ``expr`` is the first rows of a 2-D ``z``: the crop after a compressed
            kernel computed on padded rows (``schedules.gemm.padded_rows``); else None."""
            call = self._call(expr, "strided_slice")
            if call is None:
                return None
            source, out = _shape(call.args[0]), _shape(expr)
            if source is None or out is None or len(source) != 2 or out[1:] != source[1:]:
                return None
            if _ints(call.args[1]) != [0] or _ints(call.args[2]) != [0]:
                return None
            if len(call.args) > 4 and _ints(call.args[4]) != [1]:
                return None
            return call.args[0]

        def _through_slice(self, call):
            """``op(slice(z), c)`` as ``slice(op(z, c))`` where ``c`` has no row axis (a bias, a
            scalar): the op runs on the padded rows too, so it fuses into the kernel's
            write-back, and the crop comes last."""
            args, sliced = [], None
            for a in call.args:
                a = self.builder_.normalize(a)          # a reshape made by the rule above has no type yet
                source = self._rows_slice(a) if isinstance(getattr(a, "ty", None), relax.TensorType) else None
                if source is not None and (sliced is None or (_shape(a) == _shape(sliced[0])
                                                              and _shape(source) == _shape(sliced[1]))):
                    sliced = sliced or (a, source)           # every operand cropped alike: GELU's x * f(x)
                    args.append(source)
                    continue
                shape = _shape(a) if isinstance(getattr(a, "ty", None), relax.TensorType) else ()
                if shape is None or (len(shape) == 2 and shape[0] != 1) or len(shape) > 2:
                    return call
                args.append(a)
            if sliced is None:
                return call
            slice_call = self._call(sliced[0], "strided_slice")
            inner = self.builder_.emit(_same_op(call, args))
            return relax.Call(slice_call.op, [inner] + list(slice_call.args[1:]), slice_call.attrs)

    return rewrite(Flatten, mod)
