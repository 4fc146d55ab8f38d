"""The graph-wide layout: NCHW as imported, or channels last (NHWC) from the first convolution
to the last.

Channels last, every dense convolution runs ``conv2d_nhwc`` (ops/conv2d.py): the kernel's
register tile is pixels by output channels, so its accumulator is written back as whole
vectors, where NCHW scatters each vector across channel planes. Relax's ``ConvertLayout``
carries the layout through the graph (pooling, concatenation, elementwise ops, residual adds,
means) and leaves one transpose at the graph's entry and one before whatever needs NCHW (a
flatten before the classifier).

``auto`` picks channels last where every convolution of the model has a channels-last kernel:
dense weights, a direct compressed conv (``shift_conv2d_nhwc``...), XNOR on binarized inputs
(``xnor_conv2d_nhwc``) or a depthwise conv of one output per channel
(``depthwise_conv2d_nhwc``), direct geometry; a model with dilated convolutions, or with
tvmopt.nn's own nodes, stays NCHW, since those kernels read NCHW and each would need a
transpose on either side, and so does one with a channel shuffle (ShuffleNet: see
``_convolutions``). MobileNet-V2-, V3- and EfficientNet-style networks (depthwise convolutions,
ReLU6, hard-swish or SiLU, squeeze-and-excitation), untuned, channels last against NCHW in the
same run (Zen 4): 1.26x, 1.14x and 1.41x. Their ReLU6 is a Clip, which the importer gives Relax
as ``maximum`` and ``minimum`` ops (``model/frontend.py``) so that the conversion carries it. ``nhwc`` forces channels last (such convolutions then run between two transposes);
``nchw`` keeps the import's layout. Row-table convolutions (AVX2's large binary layers,
``binary_rowlut_conv2d``) read NCHW too, but run between two transposes in a channels-last
graph: measured cheaper than the rest of the graph NCHW (``_has_channels_last_kernel``). ``tvmopt build --layout`` (and inspect, tune) chooses.

Measured (benchmarks/layout.py, BENCHMARKS.md "Graph layout"; untuned, NHWC against NCHW in
the same run, two runs of 9 and 5 rounds): SqueezeNet 1.45x and 1.42x faster, VGG-19 1.08x and
1.10x, Inception v1 1.23x and 1.05x, ResNet-50 1.12x and 1.02x, Inception v2 1.10x and 1.02x,
AlexNet and ZFNet 1.00 to 1.02x, DenseNet-121 1.08x and 0.96x (its 58 concatenations copy
runs of channels per pixel where NCHW copies whole planes); ShuffleNet forced to NHWC 0.92x and
0.61x (its depthwise convolutions between transposes, before they had a channels-last kernel;
with it, 0.95x: its channel shuffles between transposes); with each shuffle one channels-last
kernel (``channel_shuffle_kernel``) and the padded groups' crop vectorized a group at a time,
1.13x, so ``auto`` takes it channels last.
"""

from __future__ import annotations

import warnings

from .bindings import Bindings, rewrite

LAYOUTS = ("auto", "nchw", "nhwc")

#: the binary ops whose constant operand is broadcast to rank 4 before the conversion
_BINARY = ("relax.add", "relax.subtract", "relax.multiply", "relax.divide", "relax.maximum", "relax.minimum")


def choose_layout(mod, options, detect_once) -> str:
    """``"NHWC"`` or ``"NCHW"`` for ``mod`` (after batch norms are folded) under
    ``options.layout``; ``detect_once``: the lowering's :func:`~.structure.detector`."""
    if options.layout == "nchw":
        return "NCHW"
    if options.layout == "nhwc":
        return "NHWC"
    if _has_placeholders(mod):          # tvmopt.nn's conv nodes left (not constant): NCHW kernels
        return "NCHW"
    convs, shuffles = _convolutions(mod)
    if shuffles:        # channel splits that are not a whole shuffle: they would run between transposes
        return "NCHW"
    return "NHWC" if convs and all(_has_channels_last_kernel(call, w, binarized, options, detect_once)
                                   for call, w, binarized in convs) else "NCHW"


def to_channels_last(mod):
    """``mod`` with its convolutions NHWC and the layout carried through the graph; ``mod``
    itself (with a warning) where Relax cannot convert it."""
    from tvm import relax

    prepared = _quantizers_as_elementwise(_prepare(mod))
    try:
        converted = relax.transform.ConvertLayout({"relax.nn.conv2d": ["NHWC", "OIHW"]})(prepared)
    except Exception as exc:  # noqa: BLE001 - an op Relax's layout inference does not know
        warnings.warn(f"channels-last layout not applied (the graph stays NCHW): {str(exc).splitlines()[-1]}")
        return mod
    return _quantizers_back(_fold_transposed_constants(converted))


#: the range of each quantized type
_QRANGE = {"uint8": (0, 255), "int8": (-128, 127), "uint16": (0, 65535), "int16": (-32768, 32767)}


def _quantizers_as_elementwise(mod):
    """Per-tensor ``quantize`` and ``dequantize`` of 4-d maps written as the elementwise ops they
    stand for (TVM's own lowering of them): ``astype(minimum(maximum(round(x / s) + z, lo), hi),
    t)`` and ``(astype(q, float32) - z) * s``, constants of rank 4. ``ConvertLayout`` has no rule
    for the quantizers, so a QDQ CNN (ONNX Runtime's ``quantize_static``: a pair after every
    convolution, pooling and residual add) ran NCHW between its convolutions, two transposes
    around each, its max pool and residual adds NCHW; the elementwise ops it carries channels
    last. A quantize whose scale and zero point are scalars computed at run time
    (DynamicQuantizeLinear's, before each ConvInteger of a dynamically quantized CNN: 37
    transposes in ResNet-18) is written so too. :func:`_quantizers_back` restores the ops after
    the conversion."""
    import numpy as np
    from tvm import relax

    @relax.expr_functor.mutator
    class Elementwise(relax.PyExprMutator, Bindings):
        def visit_call_(self, call):
            call = super().visit_call_(call)
            name = getattr(call.op, "name", "")
            if name not in ("relax.quantize", "relax.dequantize") or _rank(call.args[0]) != 4:
                return call
            scale, zero = self._const(call.args[1]), self._const(call.args[2])
            const = lambda v: relax.const(np.full((1, 1, 1, 1), v, np.float32))  # noqa: E731
            if name == "relax.quantize" and scale is None and zero is None and \
                    all(_rank(a) == 0 for a in call.args[1:3]):
                # a scale and zero point computed at run time (DynamicQuantizeLinear): scalars
                # of the graph, the zero point in float for the add
                s, z = call.args[1], self.builder_.emit(relax.op.astype(call.args[2], "float32"))
            elif scale is None or zero is None or scale.size != 1 or zero.size != 1:
                return call
            else:
                s, z = const(float(scale.reshape(-1)[0])), const(float(zero.reshape(-1)[0]))
            if name == "relax.quantize":
                dtype = str(call.attrs.out_dtype)
                if dtype not in _QRANGE or str(getattr(call.args[0].ty, "dtype", "")) != "float32":
                    return call
                lo, hi = _QRANGE[dtype]
                v = self.builder_.emit(relax.op.divide(call.args[0], s))
                v = self.builder_.emit(relax.op.add(relax.op.round(v), z))
                v = self.builder_.emit(relax.op.minimum(relax.op.maximum(v, const(lo)), const(hi)))
                return relax.op.astype(v, dtype)
            if str(getattr(call.args[0].ty, "dtype", "")) not in _QRANGE or str(call.attrs.out_dtype) != "float32":
                return call
            v = self.builder_.emit(relax.op.subtract(relax.op.astype(call.args[0], "float32"), z))
            return relax.op.multiply(v, s)

    return rewrite(Elementwise, mod)


def _quantizers_back(mod):
    """The ``quantize`` and ``dequantize`` ops that :func:`_quantizers_as_elementwise` wrote as
    elementwise ops, in whatever layout the conversion gave them (per tensor: ``axis=-1``), so
    the pass sees the QDQ pairs (integer products) and their kernels are TVM's own again."""
    import numpy as np
    from tvm import relax

    @relax.expr_functor.mutator
    class Back(relax.PyExprMutator, Bindings):
        def _scalar(self, expr):
            value = self._const(expr)
            return None if value is None or value.size != 1 else float(value.reshape(-1)[0])

        def visit_call_(self, call):
            call = super().visit_call_(call)
            name = getattr(call.op, "name", "")
            if name == "relax.astype" and str(call.attrs.dtype) in _QRANGE:
                return self._quantize(call)
            if name == "relax.multiply":
                return self._dequantize(call)
            return call

        def _quantize(self, call):
            dtype = str(call.attrs.dtype)
            hi = self._call(call.args[0], "minimum")
            lo = None if hi is None else self._call(hi.args[0], "maximum")
            add = None if lo is None else self._call(lo.args[0], "add")
            rnd = None if add is None else self._call(add.args[0], "round")
            div = None if rnd is None else self._call(rnd.args[0], "divide")
            if div is None or (self._scalar(lo.args[1]), self._scalar(hi.args[1])) != tuple(map(float, _QRANGE[dtype])):
                return call
            s, z = self._scalar(div.args[1]), self._scalar(add.args[1])
            if s is None and z is None and _rank(div.args[1]) == 0:
                # run-time scalars: the zero point behind its cast to float
                widen = self._call(add.args[1], "astype")
                if widen is None or _rank(widen.args[0]) != 0:
                    return call
                return relax.op.quantize(div.args[0], div.args[1], widen.args[0], axis=-1, out_dtype=dtype)
            if s is None or z is None:
                return call
            return relax.op.quantize(div.args[0], relax.const(np.float32(s)), relax.const(np.array(z).astype(dtype)),
                                     axis=-1, out_dtype=dtype)

        def _dequantize(self, call):
            sub = self._call(call.args[0], "subtract")
            widen = None if sub is None else self._call(sub.args[0], "astype")
            if widen is None or str(widen.attrs.dtype) != "float32":
                return call
            dtype = str(getattr(widen.args[0].ty, "dtype", ""))
            s, z = self._scalar(call.args[1]), self._scalar(sub.args[1])
            if dtype not in _QRANGE or s is None or z is None:
                return call
            return relax.op.dequantize(widen.args[0], relax.const(np.float32(s)), relax.const(np.array(z).astype(dtype)),
                                       axis=-1, out_dtype="float32")

    return rewrite(Back, mod)


def _fold_transposed_constants(mod):
    """``permute_dims`` of constants (the biases and scales ``ConvertLayout`` transposed)
    evaluated with numpy: Relax's ``FoldConstant`` compiles a kernel for each (ResNet-50: 55
    compilations, 5 s). And a ``where`` (one value on each branch) or an ``nn.pad`` between a
    transpose and its inverse applied in the outer layout: Relax has no layout rule for either,
    so a binarized activation (``where(x >= 0, 1, -1)``, the XNOR conv's input) came out as
    NHWC -> NCHW -> where -> NHWC, two transposes per binarized layer (53 in ResNet-18), and a
    zero pad of channels the same (ResNet-20's shortcuts)."""
    import numpy as np
    import tvm
    from tvm import relax

    op_permute = tvm.ir.Op.get("relax.permute_dims")
    op_where = tvm.ir.Op.get("relax.where")
    op_pad = tvm.ir.Op.get("relax.nn.pad")

    def axes_of(call):
        return None if call.attrs.axes is None else [int(a) for a in call.attrs.axes]

    @relax.expr_functor.mutator
    class Fold(relax.PyExprMutator, Bindings):
        def visit_call_(self, call):
            call = super().visit_call_(call)
            if not call.op.same_as(op_permute):
                return call
            value = self._const(call.args[0])
            if value is None:
                return self._through_transposes(call)
            return relax.const(np.ascontiguousarray(np.transpose(value, axes_of(call))))

        def _through_transposes(self, outer):
            """permute(op(permute(c, A), ...), B) with B undoing A, for an op Relax has no
            layout rule for: the op applied to c in the outer layout. ``where`` with a, b each
            one value (the export's are full tensors of ones and minus ones): where(c, a, b),
            a and b scalars; ``nn.pad`` (a zero pad of channels: ResNet-20's option-A
            shortcuts): the pad with its widths permuted."""
            op = self._resolve(outer.args[0])
            shuffle = self._channel_shuffle(outer, op)
            if shuffle is not None:
                return shuffle
            if not (isinstance(op, relax.Call) and (op.op.same_as(op_where) or op.op.same_as(op_pad))):
                return outer
            inner = self._resolve(op.args[0])
            if not (isinstance(inner, relax.Call) and inner.op.same_as(op_permute)):
                return outer
            first, then = axes_of(inner), axes_of(outer)
            if first is None or then is None or [first[i] for i in then] != list(range(len(then))):
                return outer
            if op.op.same_as(op_pad):
                widths = [int(v) for v in op.attrs.pad_width]
                pairs = [None] * len(first)
                for i, axis in enumerate(first):           # the inner tensor's axis i is c's axis first[i]
                    pairs[axis] = widths[2 * i: 2 * i + 2]
                return relax.op.nn.pad(inner.args[0], [v for pair in pairs for v in pair], str(op.attrs.pad_mode),
                                       float(op.attrs.pad_value))
            a, b = self._const(op.args[1]), self._const(op.args[2])
            if not all(v is not None and v.size and np.all(v == v.flat[0]) for v in (a, b)):
                return outer
            return relax.op.where(inner.args[0], relax.const(a.flat[0]), relax.const(b.flat[0]))

        def _channel_shuffle(self, outer, merged):
            """permute(reshape(permute(reshape(permute(c, NHWC->NCHW), [N, G, C/G, H, W]), [0, 2, 1, 3, 4]),
            [N, C, H, W]), NCHW->NHWC): a channel shuffle (ShuffleNet's) that the conversion left
            in NCHW between two transposes, as one channels-last kernel
            (:func:`channel_shuffle_kernel`). None where ``outer`` is not that chain."""
            split = _whole_shuffle(merged, self._resolve)
            inner = None if split is None else self._resolve(split.args[0])
            if not (_is_call(inner, op_permute) and axes_of(inner) == [0, 3, 1, 2] and axes_of(outer) == [0, 2, 3, 1]):
                return None
            n, groups, per_group, h, w = _static(split)           # static: _splits_channels checked it
            kernel = self.builder_.add_func(channel_shuffle_kernel(n, h, w, groups, per_group, str(outer.ty.dtype)),
                                            "channel_shuffle")
            return relax.call_tir(kernel, [inner.args[0]], outer.ty)

    return rewrite(Fold, mod)


def channel_shuffle_kernel(n: int, h: int, w: int, groups: int, per_group: int, dtype: str = "float32"):
    """A scheduled PrimFunc: the channel shuffle of an NHWC map, ``out[.., k * G + g] = x[.., g * C/G + k]``
    (each pixel's ``G x C/G`` channels transposed), rows of pixels in parallel, the groups
    unrolled innermost. The chain the conversion leaves (transposes either side of ONNX's
    reshape, transpose, reshape), fused into one kernel, computed each channel's source with a
    division and gathered it: 1x14x14x272 in 4 groups took 36 us, this kernel 6.7 us (NCHW's
    shuffle, which copies whole planes, 18 us in the network; Intel Xeon, AVX-512)."""
    import tvm
    from tvm import te

    x = te.placeholder((n, h, w, groups * per_group), dtype, name="x")
    split = te.compute((n, h, w, groups, per_group), lambda i, y, xx, g, k: x[i, y, xx, g * per_group + k], name="split")
    out = te.compute((n, h, w, groups * per_group),
                     lambda i, y, xx, c: split[i, y, xx, c % groups, c // groups], name="shuffle")
    sch = tvm.s_tir.Schedule(tvm.IRModule({"main": te.create_prim_func([x, out])}))
    sch.compute_inline(sch.get_sblock("split"))
    i, y, xx, c = sch.get_loops(sch.get_sblock("shuffle"))
    _, g = sch.split(c, [per_group, groups])
    sch.unroll(g)
    sch.parallel(sch.fuse(i, y))
    return sch.mod["main"].without_attr("global_symbol").with_attr("tirx.is_scheduled", True).with_attr("op_pattern", 8)


def _whole_shuffle(merged, resolve):
    """The reshape that splits channels into groups (``[N, C, H, W] -> [N, G, C/G, H, W]``) where
    ``merged`` reshapes a transpose ``[0, 2, 1, 3, 4]`` of it back to ``[N, C, H, W]``: a whole
    channel shuffle. None otherwise. ``resolve``: a bound variable to its value (``Bindings``)."""
    import tvm

    op_reshape, op_permute = tvm.ir.Op.get("relax.reshape"), tvm.ir.Op.get("relax.permute_dims")
    if not _is_call(merged, op_reshape):
        return None
    swap = resolve(merged.args[0])
    if not (_is_call(swap, op_permute) and [int(a) for a in swap.attrs.axes or ()] == [0, 2, 1, 3, 4]):
        return None
    split = resolve(swap.args[0])
    if not (_is_call(split, op_reshape) and _splits_channels(split)):
        return None
    shape = _static(merged)
    return split if shape is not None and shape == _static(split.args[0]) else None


def _static(expr) -> list[int] | None:
    """``expr``'s shape as ints; None where it is unknown or symbolic."""
    try:
        return [int(d) for d in expr.ty.shape]
    except (AttributeError, TypeError):
        return None


def _is_call(expr, op) -> bool:
    import tvm

    return isinstance(expr, tvm.relax.Call) and expr.op.same_as(op)


def _convolutions(mod) -> tuple[list, int]:
    """(call, constant weight or None, whether its input is binarized) of every conv2d in
    ``main``, and the number of reshapes that split an NCHW map's channels into groups
    (``[N, C, H, W] -> [N, G, C/G, H, W]``) other than in a whole channel shuffle (ShuffleNet's:
    that reshape, a transpose of the two, a reshape back to ``[N, C, H, W]``). Those keep the
    graph NCHW: channels last, each would run between two transposes. A whole shuffle becomes one
    channels-last kernel (:func:`channel_shuffle_kernel`): ShuffleNet channels last ran 1.13x its
    NCHW build (untuned, 11 interleaved rounds, Intel Xeon, AVX-512), where with the shuffles
    between transposes it ran 0.95x."""
    import tvm
    from tvm import relax

    op_conv = tvm.ir.Op.get("relax.nn.conv2d")
    op_reshape = tvm.ir.Op.get("relax.reshape")
    found = []
    shuffles = 0

    @relax.expr_functor.mutator
    class Collect(relax.PyExprMutator, Bindings):      # reads only: its rewritten function is dropped
        def visit_call_(self, call):
            nonlocal shuffles
            call = super().visit_call_(call)
            if call.op.same_as(op_conv):
                found.append((call, self._const(call.args[1]), self._binarized_source(call.args[0]) is not None))
            elif call.op.same_as(op_reshape) and _splits_channels(call):
                shuffles += 1
            elif _whole_shuffle(call, self._resolve) is not None:
                shuffles -= 1
            return call

    Collect(mod).visit_expr(mod["main"])
    return found, shuffles


def _splits_channels(call) -> bool:
    """Whether a reshape turns a static 4-d ``[N, C, H, W]`` into ``[N, G, C/G, H, W]``."""
    try:
        src = [int(d) for d in call.args[0].ty.shape]
        dst = [int(d) for d in call.ty.shape]
    except (AttributeError, TypeError):
        return False
    return len(src) == 4 and len(dst) == 5 and dst[0] == src[0] and dst[3:] == src[2:] and \
        dst[1] > 1 and dst[2] > 1 and dst[1] * dst[2] == src[1]


def _has_channels_last_kernel(call, w, binarized, options, detect_once) -> bool:
    """Whether the lowering gives this conv a channels-last kernel (:func:`tvmopt.passes.lower`'s
    ``_conv``): dense, a direct compressed format (row tables between transposes) or XNOR
    (``binarized`` input), direct geometry; depthwise with one output per channel (``depthwise_conv2d_nhwc``,
    its weight run dense whatever its structure, as NCHW); grouped ones whatever their weights (a structured
    grouped weight runs the dense grouped conv channels last, as the dense network does: AlexNet's
    grouped layers made its compressed exports NCHW, 0.91x its dense build)."""
    from tvmopt.ops.compressed_conv2d import CONV_OF
    from .structure import DENSE, conv_geometry, direct_conv

    a = call.attrs
    if w is None or str(a.data_layout) != "NCHW" or str(a.kernel_layout) != "OIHW":
        return False
    groups = int(a.groups)
    if not direct_conv(conv_geometry(a), options):
        return False
    if groups > 1 and w.shape[1] == 1:        # depthwise: channels last where each channel has one output
        return w.shape[0] == groups
    family = detect_once(w.reshape(w.shape[0], -1)).family
    if family == DENSE:
        return True
    if groups > 1:           # structured grouped weights: the dense grouped conv on the decoded weight
        return True
    if family not in CONV_OF:
        return False
    if binarized:                             # the XNOR conv (xnor_conv2d_nhwc)
        return family in ("binary_dense", "binary_lut_dense")
    # a row-table conv (AVX2's large binary layers) reads NCHW and runs between two transposes:
    # cheaper than the rest of the graph NCHW. Zen 4 with AVX2 code, untuned, against the dense
    # build (channels last, Winograd): ResNet-18 binary 1.41x channels last, 1.03x NCHW at batch
    # 1, 1.05x and 0.83x at batch 16; VGG 1.98x and 1.94x, 1.17x and 1.06x
    return True


def _has_placeholders(mod) -> bool:
    """Whether ``mod`` holds an ``ai.tvmopt`` conv node (those with constant inputs became plain
    ops: ``placeholders.plain_conv_placeholders``); linear nodes take any layout's flattened rows."""
    from tvm import relax

    from tvmopt.model.frontend import PLACEHOLDER_PREFIX
    from tvmopt.model.opset import SPECS

    from .placeholders import is_placeholder

    found = []

    def visit(expr):
        if is_placeholder(expr) and SPECS[str(expr.args[0].global_symbol)[len(PLACEHOLDER_PREFIX):]].conv:
            found.append(expr)

    relax.analysis.post_order_visit(mod["main"], visit)
    return bool(found)


def _rank(expr) -> int:
    shape = getattr(getattr(expr, "ty", None), "shape", None)
    return -1 if shape is None else len(shape)


def _prepare(mod):
    """What ``ConvertLayout`` needs: dropouts (identity at inference; their tuple output stops
    the conversion) taken out, constants of a binary op with a 4-d operand given rank 4
    (an exported ``Mul`` by a ``[C, 1, 1]`` scale otherwise keeps NCHW, a transpose either side),
    and a ``squeeze``'s negative axes counted from the front: Relax's layout inference for
    squeeze failed with ``std::bad_alloc`` on ``axis=[-2]`` (PyTorch's MultiheadAttention splits
    its Q, K, V projection so), and the whole graph stayed NCHW (a ViT's patch convolution);
    ``clip`` with constant bounds as ``maximum`` and ``minimum`` (``_clip_as_bounds``), and a
    commutative op's constant operand put second."""
    import numpy as np
    import tvm
    from tvm import relax

    op_dropout = tvm.ir.Op.get("relax.nn.dropout")
    op_squeeze = tvm.ir.Op.get("relax.squeeze")
    op_pad = tvm.ir.Op.get("relax.nn.pad")
    op_conv = tvm.ir.Op.get("relax.nn.conv2d")
    op_clip = tvm.ir.Op.get("relax.clip")
    binary = [tvm.ir.Op.get(name) for name in _BINARY]
    commutative = [tvm.ir.Op.get(name) for name in ("relax.add", "relax.multiply", "relax.maximum", "relax.minimum")]

    @relax.expr_functor.mutator
    class Prepare(relax.PyExprMutator, Bindings):
        def visit_tuple_getitem_(self, op):
            op = super().visit_tuple_getitem_(op)
            value = self._resolve(op.tuple_value)
            if op.index == 0 and isinstance(value, relax.Call) and value.op.same_as(op_dropout):
                return value.args[0]
            return op

        def visit_call_(self, call):
            call = super().visit_call_(call)
            if call.op.same_as(op_conv):
                return self._absorb_pad(call)
            if call.op.same_as(op_squeeze):
                return self._squeeze_axes(call)
            if call.op.same_as(op_clip):
                return self._clip_as_bounds(call)
            if not any(call.op.same_as(b) for b in binary):
                return call
            args = list(call.args)
            ranks = [_rank(a) for a in args]
            if 4 not in ranks:
                return call
            changed = False
            for i, a in enumerate(args):
                value = self._const(a)
                if value is not None and 0 <= ranks[i] < 4:
                    args[i] = relax.const(value.reshape((1,) * (4 - value.ndim) + value.shape))
                    changed = True
            if any(call.op.same_as(c) for c in commutative) and self._const(args[0]) is not None \
                    and self._const(args[1]) is None:
                # the map first: the conversion takes a binary op's layout from its first operand
                # (ONNX HardSigmoid's alpha * x kept each squeeze-and-excitation gate NCHW)
                args, changed = args[::-1], True
            return relax.Call(call.op, args, call.attrs) if changed else call

        def _clip_as_bounds(self, call):
            """``clip(x, lo, hi)`` of a 4-d float32 map as ``minimum(maximum(x, lo), hi)`` with
            rank-4 constants: ``ConvertLayout`` has no rule for clip (TVM's import of ONNX
            HardSwish and HardSigmoid, PyTorch's ReLU6 and hardtanh through torch.export), so it
            kept NCHW around each one, two transposes per activation of a MobileNet-V3."""
            x = call.args[0]
            if _rank(x) != 4 or str(getattr(x.ty, "dtype", "")) != "float32":
                return call
            try:         # IntImm / FloatImm bounds (or a PrimValue holding one)
                lo, hi = (float(getattr(b.value, "value", b.value)) for b in call.args[1:3])
            except (AttributeError, TypeError):     # bounds that are not constants
                return call
            lower = self.builder_.emit(relax.op.maximum(x, relax.const(np.full((1, 1, 1, 1), lo, np.float32))))
            return relax.op.minimum(lower, relax.const(np.full((1, 1, 1, 1), hi, np.float32)))

        def _squeeze_axes(self, call):
            axes, rank = call.attrs.axis, _rank(call.args[0])
            if axes is None or rank < 0 or all(int(a) >= 0 for a in axes):
                return call
            return relax.op.squeeze(call.args[0], [int(a) % rank for a in axes])

        def _absorb_pad(self, conv):
            """conv2d(nn.pad(x)) with zeros padded on rows and columns only: the conv pads x
            itself (``ConvertLayout`` has no rule for ``nn.pad``; it would keep NCHW around it)."""
            pad = self._resolve(conv.args[0])
            if not (isinstance(pad, relax.Call) and pad.op.same_as(op_pad)) or str(pad.attrs.pad_mode) != "constant":
                return conv
            widths = [int(v) for v in pad.attrs.pad_width]
            if len(widths) != 8 or any(widths[:4]) or float(pad.attrs.pad_value) != 0.0 or \
                    str(conv.attrs.data_layout) != "NCHW":
                return conv
            top, bottom, left, right = widths[4:]
            padding = [int(v) for v in conv.attrs.padding]
            a = conv.attrs
            return relax.op.nn.conv2d(pad.args[0], conv.args[1], a.strides,
                                      [padding[0] + top, padding[1] + left, padding[2] + bottom, padding[3] + right],
                                      a.dilation, int(a.groups), str(a.data_layout), str(a.kernel_layout),
                                      str(a.out_layout), a.out_dtype or None)

    return rewrite(Prepare, mod)
