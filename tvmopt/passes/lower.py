"""The Relax pass: every compressed layer becomes a call of a scheduled custom kernel.

It rewrites, in ``main``:

* each ``ai.tvmopt`` linear placeholder left by the frontend (``call_dps_packed("tvmopt.<Op>")``;
  conv nodes were turned into the plain ops they decode to first: :mod:`.placeholders`);
* each ``matmul(x, W)`` / ``matmul(x, permute_dims(W))`` with a constant W whose structure
  :func:`tvmopt.passes.structure.detect` recognizes (binary, ternary, powers of two, N:M,
  codebook, Hadamard rows), with ``where(x >= 0, 1, -1)`` on the input turning binary into
  XNOR-popcount;
* every other matmul with a constant weight into the tuned dense GEMM (``dense:MxNxK``), so
  no heavy op is left unscheduled.

Each kernel is built from its task (so tuning records keyed by the task apply) with the best
config ``configs(key, space)`` returns (one that fits the space), or the space's initial config. Scales, biases and input
transforms become ordinary Relax ops around the ``call_tir``; where the input had more than
two axes, the ops after the output's reshape are moved before it (:mod:`.flat_epilogue`), so
they fuse with the kernel too.

Convolutions with constant weights: a dense fp32 weight becomes the direct ``conv2d`` task,
emitted *unscheduled* and fusable so that its bias, ReLU and residual add fuse into it
(:mod:`.fuse_schedule` applies its config after fusion); a grouped one with dense weights one
``conv2d`` task over all its groups (key ``...xG``), a depthwise one a ``depthwise_conv2d`` task
(its own space), grouped compressed ones one conv per group. A compressed weight (plain ``conv2d`` with detected structure, or ``ai.tvmopt`` conv
nodes, decoded exactly and detected again) becomes the direct compressed conv of its format
(``shift_conv2d``..., :mod:`tvmopt.ops.compressed_conv2d`), emitted the same fusable way, or
``xnor_conv2d`` when the input is binarized; dilated or unevenly strided ones an im2col stage and
the GEMM-family kernel over ``[N*OH*OW, C*kh*kw] x [C*kh*kw, O]``. Whether a layer runs its
compressed or its dense kernel is :mod:`.choose`'s call. Batch norms are folded first (:mod:`.fold`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from tvmopt.model.frontend import PLACEHOLDER_PREFIX, ModelError, static_shape
from . import flat_epilogue
from .bindings import Bindings, rewrite
from .fold import fold_batch_norm
from .linear import collapse as collapse_linear_regions
from tvmopt.passes.fuse_schedule import OPAQUE, OUT_EWISE_FUSABLE, whole_powers
from .choose import (ROW_TABLE_MIN_ROWS, Choice, choose, conv_register_tables, conv_row_tables, few_pixels,
                     from_costs, nm_register_select, register_tables, small_layer, xnor_conv_prefix,
                     xnor_dense_family)
from tvmopt.ops.compressed_conv2d import CONV_OF, conv_key
from tvmopt.ops.conv2d import output_shape
from tvmopt.ops.winograd_conv2d import PREFIX as WINOGRAD_PREFIX, winograd_prefix
from tvmopt.schedules.conv2d import ConvShape
from tvmopt.schedules.gemm import padded_rows
from tvmopt.schedules.winograd import preferred as winograd_preferred
from tvmopt.ops.kernel import array_bytes, scale_bytes
from .layout import choose_layout, to_channels_last
from .placeholders import is_placeholder, placeholder_parts, plain_conv_placeholders
from .structure import (DENSE, LUT_MAX_ROWS, DetectOptions, Kernel, conv_geometry, dense_kernel, detector,
                        direct_conv, from_compact)
from tvmopt.ops.row_tables import takes_rows

#: the kernel a layer of this family runs with enough rows (``choose.ROW_TABLE_MIN_ROWS``): lookup
#: tables shared by a vector of rows (ops/row_tables.py; the same compact weights)
ROW_TABLES_OF = {"binary_dense": "binary_rowlut_dense", "binary_lut_dense": "binary_rowlut_dense",
                 "ternary_dense": "ternary_rowlut_dense", "ternary_lut_dense": "ternary_rowlut_dense"}


@dataclass
class LayerReport:
    """One row of ``tvmopt inspect``."""
    index: int
    source: str            # "ai.tvmopt:ShiftGemm", "matmul", "conv2d"
    shape: str             # "M x N x K" or conv geometry
    structure: str
    kernel: str            # the task key, or "relax" when left to Relax
    dense_bytes: int
    compact_bytes: int
    choice: str = ""       # compressed or dense, and why (passes/choose.py); "" for dense layers
    scale_bytes: int = 0   # of compact_bytes, the per-channel (or per-layer) scale the write-back applies


#: the block annotation naming a compressed CUDA kernel's function (``Lowered.cuda_kernels``)
CUDA_KERNEL_ANNOTATION = "tvmopt_cuda_kernel"


@dataclass
class Lowered:
    mod: object                                  # tvm.IRModule
    layers: list[LayerReport]
    tasks: dict[str, object]                     # task key -> Task (deduplicated)
    #: CUDA builds: kernel function name -> (CudaTask, config) of each compressed kernel the pass
    #: emitted fusable, for :func:`tvmopt.build.gpu.schedule_gpu` to schedule after fusion
    cuda_kernels: dict[str, tuple] = field(default_factory=dict)
    #: task key -> how many products of two activations (attention's) run it: no weight, no layer
    products: dict[str, int] = field(default_factory=dict)


def lower(mod, configs: Callable[[str, object], object] | None = None, options: DetectOptions | None = None,
          costs: Callable[[str], float | None] | None = None, target_kind: str = "llvm") -> Lowered:
    """Apply the pass to ``mod`` (from :func:`tvmopt.model.frontend.load`). ``costs(key)``: the
    seconds of a task's best record (or a fresh measurement), which decide between a layer's
    compressed and dense kernels (:mod:`tvmopt.passes.choose`).

    ``target_kind="cuda"``: a compressed layer runs the kernel of its family that has a CUDA
    view (:func:`tvmopt.ops.task.cuda_family`), scheduled by that view's space (``configs``
    then looks up CUDA records), where :mod:`.choose_cuda` picks it; every other function is
    left unscheduled for DLight's GPU rules (:mod:`tvmopt.build.gpu`), im2col included."""
    import tvm
    from tvm import relax

    from tvmopt.ops.task import cuda_family
    from .choose_cuda import choose_cuda

    gpu = target_kind == "cuda"
    pick = choose_cuda if gpu else choose

    configs = configs or (lambda key, space: None)
    options = options or DetectOptions()
    detect_once = detector(options)       # the layout choice and the pass read the same weights
    layers: list[LayerReport] = []
    tasks: dict[str, object] = {}
    funcs: dict[tuple, object] = {}
    cuda_kernels: dict[str, tuple] = {}
    products: dict[str, int] = {}
    shifted: dict = {}                    # int8 quantized tensors re-quantized as uint8, by tensor
    network_macs = 0                      # the model's multiply-adds (set before the rewrite below)

    op_matmul = tvm.ir.Op.get("relax.matmul")
    op_permute = tvm.ir.Op.get("relax.permute_dims")
    op_conv = tvm.ir.Op.get("relax.nn.conv2d")
    op_astype = tvm.ir.Op.get("relax.astype")

    @relax.expr_functor.mutator
    class Rewriter(relax.PyExprMutator, Bindings):
        def _quantized_input(self, expr):
            """(the uint8 tensor, scale, zero point) when ``expr`` is ONNX's DequantizeLinear of a
            uint8 or int8 tensor with one scale and zero point (after its QuantizeLinear, or any
            other producer of bytes: a max pool of a QOperator file's quantized map); else None."""
            if gpu:
                return None
            dq = self._call(expr, "dequantize")
            if dq is None:
                return None
            values = [self._const(a) for a in (dq.args[1], dq.args[2])]
            if any(v is None or v.size != 1 for v in values) or values[1].dtype not in (np.uint8, np.int8):
                return None
            scale, zero = float(values[0].reshape(-1)[0]), int(values[1].reshape(-1)[0])
            tensor = dq.args[0]
            if values[1].dtype == np.uint8:
                return tensor, scale, zero
            # int8 activations (ONNX Runtime's QDQ default): shifted by 128 they are uint8 with the
            # zero point + 128; once per quantized tensor (attention's Q, K and V products share it)
            if tensor not in shifted:
                q = self._call(tensor, "quantize")
                if q is not None and all(np.array_equal(self._const(a), v) for a, v in zip(q.args[1:3], values)):
                    # the quantization itself, to uint8: clip(round(x / s) + zp + 128, 0, 255)
                    shifted[tensor] = self.builder_.emit(relax.op.quantize(
                        q.args[0], q.args[1], relax.const(np.uint8(zero + 128)), axis=int(q.attrs.axis), out_dtype="uint8"))
                else:
                    wide = relax.op.add(relax.op.astype(tensor, "int32"), relax.const(np.int32(128)))
                    shifted[tensor] = self.builder_.emit(relax.op.astype(wide, "uint8"))
            return shifted[tensor], scale, zero + 128

        def _integer_const(self, expr):
            """The integer value of a constant, of a cast of one or of a difference of two
            (``B - b_zero_point``, which the frontend writes and ``FoldConstant`` leaves); else None."""
            value = self._const(expr)
            if value is not None:
                return value if np.issubdtype(value.dtype, np.integer) else None
            call = self._resolve(expr)
            name = getattr(getattr(call, "op", None), "name", "")
            if name == "relax.astype":
                inner = self._integer_const(call.args[0])
                return None if inner is None else inner.astype(np.dtype(str(call.attrs.dtype)))
            if name == "relax.subtract":
                a, b = (self._integer_const(x) for x in call.args)
                return None if a is None or b is None else (a.astype(np.int64) - b.astype(np.int64))
            return None

        def _matmul_integer(self, cast):
            """ONNX's ``MatMulInteger`` of uint8 activations (a zero point that may be data) and
            a constant integer weight, cast to float32, as ONNX Runtime's dynamic quantization
            writes every MatMul (``DynamicQuantizeLinear``, ``MatMulInteger``, ``Cast``, then
            the scales' ``Mul``): the ``int8_dense`` kernel, its zero-point term computed at run
            time; the same int32 sums, so the same floats. Else None (the int32 product then
            stays with Relax)."""
            from tvmopt.ops.int8_dense import LANES as INT8_LANES, column_sums, integer_matmul_kernel

            if gpu or str(cast.attrs.dtype) != "float32":
                return None
            mm = self._call(cast.args[0], "matmul")
            if mm is None or str(mm.attrs.out_dtype) != "int32":
                return None
            t = self._integer_const(mm.args[1])
            if t is None or t.ndim != 2:
                return None
            a, zp = mm.args[0], None
            sub = self._call(a, "subtract")
            if sub is not None:
                a, zp = sub.args[0], sub.args[1]
            widen = self._call(a, "astype")
            if widen is None or str(getattr(getattr(widen.args[0], "ty", None), "dtype", "")) != "uint8":
                return None
            q = widen.args[0]
            try:
                xshape = static_shape(q)
                if zp is not None and int(np.prod(static_shape(zp))) != 1:
                    return None                     # a zero point per row
            except ModelError:
                return None
            outputs = t.shape[1]
            t = np.pad(t, ((0, 0), (0, -outputs % INT8_LANES)))   # whole vectors (a classifier's 1000 or 10)
            kern = integer_matmul_kernel(t)
            if kern is None:
                return None
            q, xshape = self._kernel_input(kern, q, xshape)
            runtime = {}
            if zp is not None:
                zp = self.builder_.emit(relax.op.reshape(zp, ()))
                runtime[2] = self.builder_.emit(relax.op.multiply(relax.op.negative(zp), relax.const(column_sums(kern))))
            y = self._emit(kern, q, xshape, "MatMulInteger", choice="integer product (the model's own)", pad_rows=True,
                           runtime_args=runtime)
            if kern.out_features == outputs:
                return y
            return relax.op.strided_slice(self.builder_.emit(y), axes=[len(xshape) - 1], begin=[0], end=[outputs])

        def _fixed_point_input(self, expr):
            """``(x, int_bits, frac_bits)`` when ``expr`` is DeepShift's fixed-point rounding of
            ``x`` as the plain export writes it (``clip(round(x / step) * step, -b, b)``, see
            :func:`_fixed_point`); else None."""
            clamped = self._clamp(expr)
            if clamped is None:
                return None
            inner, lo, hi = clamped
            mul = self._call(inner, "multiply")
            rnd = None if mul is None else self._call(mul.args[0], "round")
            div = None if rnd is None else self._call(rnd.args[0], "divide")
            if div is None:
                return None
            steps = [self._const(a) for a in (div.args[1], mul.args[1])]
            if any(v is None or v.size != 1 for v in steps) or steps[0].reshape(-1)[0] != steps[1].reshape(-1)[0]:
                return None
            step = float(steps[0].reshape(-1)[0])
            frac = -np.log2(step) if step > 0 else np.nan
            if not (np.isfinite(frac) and frac == round(frac)):
                return None
            frac = int(round(frac))
            bits = np.log2(hi + step) if hi + step > 0 else np.nan
            if lo != -hi or not (np.isfinite(bits) and bits == round(bits)):
                return None
            return div.args[0], int(round(bits)), frac

        def _clamp(self, expr):
            """``(x, lo, hi)`` with float bounds when ``expr`` clamps ``x``: ``relax.clip``, or
            ``minimum(maximum(x, lo), hi)`` as ops or as the ONNX importer's TE functions (its
            Clip with bound inputs); else None."""
            clip = self._call(expr, "clip")
            if clip is not None:
                try:
                    return clip.args[0], float(clip.args[1].value.value), float(clip.args[2].value.value)
                except (AttributeError, TypeError):
                    return None

            def parts(expr, name):
                call, te = self._call(expr, name), self._call(expr, "call_tir")
                if call is not None:
                    args = call.args
                elif te is not None and te.args[0].name_hint.startswith(name) and len(te.args[1].fields) == 2:
                    args = te.args[1].fields
                else:
                    return None
                bound = self._const(args[1])
                return None if bound is None or bound.size != 1 else (args[0], float(bound.reshape(-1)[0]))

            upper = parts(expr, "minimum")
            lower = None if upper is None else parts(upper[0], "maximum")
            return None if lower is None else (lower[0], lower[1], upper[1])

        def _fixed_point_as_uint8(self, x, int_bits: int, frac_bits: int):
            """``(lazy uint8 tensor, scale, zero point)`` of DeepShift's fixed-point rounding of
            ``x`` when its integers fit a byte (``int_bits + frac_bits <= 7``: ±127 steps at
            most); else None. The integers are computed by the ops the fp32 path uses (the same
            rounding), offset by 128."""
            if gpu or int_bits + frac_bits > 7:
                return None
            step, bound = 2.0 ** -frac_bits, 2 ** (int_bits + frac_bits) - 1

            def emit():
                i = relax.op.clip(relax.op.round(relax.op.divide(x, relax.const(np.float32(step)))), -float(bound), float(bound))
                shifted = self.builder_.emit(relax.op.add(i, relax.const(np.float32(128))))
                return self.builder_.emit(relax.op.astype(shifted, "uint8"))

            return emit, step, 128

        def visit_call_(self, call):
            call = super().visit_call_(call)
            if is_placeholder(call):
                return self._lower_placeholder(call)
            if call.op.same_as(op_matmul):
                return self._lower_matmul(call)
            if call.op.same_as(op_astype):
                lowered = self._matmul_integer(call)
                return call if lowered is None else lowered
            if call.op.same_as(op_conv):
                return self._lower_conv(call)
            return call

        def _lower_conv(self, call):
            w = self._const(call.args[1])
            a = call.attrs
            groups = int(a.groups)
            if w is not None and str(a.data_layout) == "NHWC" and str(a.kernel_layout) == "OIHW" \
                    and str(a.out_layout) == "NHWC":
                return self._channels_last_conv(call, w)
            if w is not None and str(a.data_layout) == "NCHW" and str(a.kernel_layout) == "OIHW":
                geometry = conv_geometry(a)
                if groups == 1:
                    source = self._binarized_source(call.args[0])   # the XNOR kernel binarizes it itself
                    return self._conv(call.args[0] if source is None else source, w, geometry, "conv2d",
                                      binarized=source is not None)
                if w.shape[1] > 1:
                    return self._grouped_conv(call.args[0], w, groups, geometry)
                if direct_conv(geometry, options):        # depthwise (dilated ones stay with Relax)
                    return self._direct_conv(call.args[0], w, geometry["strides"][0], geometry["pads"],
                                             prefix="depthwise_conv2d", source="conv2d depthwise")
            return call

        def _channels_last_conv(self, call, w):
            """A convolution ``ConvertLayout`` made NHWC (:mod:`.layout`): dense weights and
            direct geometry, the ``conv2d_nhwc`` task (grouped ones too, all groups in one), a
            depthwise one ``depthwise_conv2d_nhwc``; anything else the NCHW path between two
            transposes."""
            a = call.attrs
            groups, x = int(a.groups), call.args[0]
            geometry = conv_geometry(a)
            y = None
            if groups == 1:
                source = self._binarized_source(x)
                y = self._conv(x if source is None else source, w, geometry, "conv2d NHWC",
                               binarized=source is not None, nhwc=True)
            elif w.shape[1] > 1:
                y = self._grouped_conv(x, w, groups, geometry, nhwc=True)
            elif w.shape[0] == groups and direct_conv(geometry, options):
                # depthwise, one output per channel: a tap of a pixel is a vector of channels
                y = self._direct_conv(x, w, geometry["strides"][0], geometry["pads"],
                                      prefix="depthwise_conv2d_nhwc", source="conv2d depthwise NHWC")
            if y is not None:
                return y
            nchw = self.builder_.emit(relax.op.permute_dims(x, [0, 3, 1, 2]))
            conv = relax.op.nn.conv2d(nchw, call.args[1], a.strides, a.padding, a.dilation, groups)
            y = self._lower_conv(self.builder_.normalize(conv))
            return relax.op.permute_dims(self.builder_.emit(y), [0, 2, 3, 1])

        def _grouped_conv(self, x, w, groups, geometry, nhwc=False):
            """A grouped convolution: dense weights, one direct conv task over all groups (key
            ``...xG``); otherwise one convolution per group on its slice of the channels,
            concatenated (each group is an ordinary conv task; identical groups share it).
            ShuffleNet's grouped 1x1 layers ran as 88 calls of per-group kernels plus their slices
            and concatenations. One run, three builds: per group 0.35x onnxruntime, one kernel per
            grouped layer 0.38x, and with ``depthwise_conv2d`` too 0.45x. What is left: its groups
            of 34 and 68 channels make vector blocks of 2 and 4 lanes (13 GFLOPS at 136 x 28 x 28).
            ``nhwc``: ``x`` channels last, the ``conv2d_nhwc`` task; None where it is not dense."""
            found = detect_once(w.reshape(w.shape[0], -1))
            if direct_conv(geometry, options) and (found.family == DENSE or nhwc):
                # channels last, a structured weight runs decoded: no grouped compressed kernel
                # there, and the layout stays the dense network's (passes/layout.py)
                structured = found.family != DENSE
                return self._direct_conv(x, w, geometry["strides"][0], geometry["pads"], groups=groups,
                                         structure=found.structure if structured else "dense",
                                         choice=Choice(False, "no channels-last grouped compressed kernel").label
                                         if structured else "", prefix="conv2d_nhwc" if nhwc else "conv2d",
                                         source=f"conv2d{' NHWC' if nhwc else ''} {groups} groups")
            if nhwc:
                return None
            per_in, per_out = w.shape[1], w.shape[0] // groups
            outs = []
            for g in range(groups):
                part = self.builder_.emit(relax.op.strided_slice(x, axes=[1], begin=[g * per_in],
                                                                 end=[(g + 1) * per_in]))
                conv = self._conv(part, w[g * per_out:(g + 1) * per_out], geometry, f"conv2d group {g}")
                outs.append(self.builder_.emit(conv))
            return relax.op.concat(outs, axis=1)

        # ---- matmul with a constant weight ----
        def _lower_matmul(self, call):
            x, wexpr = call.args
            if str(getattr(call.ty, "dtype", "float32")) != "float32":
                return call             # integer products (MatMulInteger): :meth:`_matmul_integer`
            w = self._const(wexpr)
            if w is not None:
                weight = np.ascontiguousarray(w.T)                     # [N, K]
            else:
                target = self._resolve(wexpr)
                if not (isinstance(target, relax.Call) and target.op.same_as(op_permute)):
                    return self._activation_matmul(call)
                w = self._const(target.args[0])
                if w is None or w.ndim != 2:
                    return self._activation_matmul(call)
                axes = target.attrs.axes
                if axes is not None and [int(a) for a in axes] != [1, 0]:
                    return call
                weight = np.ascontiguousarray(w)                       # already [N, K]
            if weight.ndim != 2:
                return call
            xshape = static_shape(x)
            integer = self._int8(x, lambda: weight, xshape, "matmul")
            if integer is not None:
                return integer
            source = self._binarized_source(x)
            kern = detect_once(weight, source is not None)
            if source is not None and kern.family == "xnor_dense":
                x = source                          # the kernel binarizes (x >= 0) itself
            return self._emit(kern, x, xshape, "matmul", dense_weight=lambda: weight, pad_rows=True)

        def _activation_matmul(self, call):
            """A product of two activations (attention's ``Q . K^T`` and its weighted sum of ``V``):
            the ``bgemm`` kernel on the operands viewed as ``[batch, M, K]`` and ``[batch, K, N]``
            (``bgemm_nt`` on ``[batch, N, K]`` where the second operand is a transpose of its last
            two axes), emitted fusable so the scale after it (``/ sqrt(d)``) runs in its
            write-back. CPU only (on a GPU, DLight's matmul rule), float32 with static shapes and
            the same leading axes on both sides; anything else stays with Relax."""
            a, b = call.args
            if gpu or any(getattr(getattr(e, "ty", None), "dtype", "") != "float32" for e in (a, b, call)):
                return call
            try:
                ashape, bshape = static_shape(a), static_shape(b)
            except ModelError:
                return call
            if len(ashape) < 2 or len(bshape) != len(ashape) or ashape[:-2] != bshape[:-2] or ashape[-1] != bshape[-2]:
                return call
            lead, (m, k), n = ashape[:-2], ashape[-2:], bshape[-1]
            batch = int(np.prod(lead)) if lead else 1
            family, operand = "bgemm", b
            permute = self._call(b, "permute_dims")
            if permute is not None and permute.attrs.axes is not None:
                # B = transpose(S): read B^T instead, S itself where B swaps S's last two axes,
                # else S transposed with B's last two axes swapped where that keeps S's last axis
                # last (a copy of whole rows: attention's K^T, [0, 2, 3, 1] of [batch, tokens,
                # heads, d], took 0.13 ms per BERT-base layer as a transposing copy, 5x this)
                axes = [int(x) for x in permute.attrs.axes]
                rank = len(axes)
                swapped = axes[:-2] + [axes[-1], axes[-2]]
                if swapped == list(range(rank)):
                    family, operand = "bgemm_nt", permute.args[0]          # read as [batch, N, K]
                elif swapped[-1] == rank - 1:
                    family = "bgemm_nt"
                    operand = self.builder_.emit(relax.op.permute_dims(permute.args[0], swapped))
            key = f"{family}:{batch}x{m}x{n}x{k}"
            if key not in funcs:
                from tvmopt.ops.task import get_task

                task = tasks.setdefault(key, get_task(key))
                funcs[key] = self.builder_.add_func(_fusable(task), key.replace(":", "_").replace("x", "_"))
            products[key] = products.get(key, 0) + 1
            shape_b = (batch, n, k) if family == "bgemm_nt" else (batch, k, n)
            args = [self.builder_.emit(relax.op.reshape(a, (batch, m, k))),
                    self.builder_.emit(relax.op.reshape(operand, shape_b))]
            y = self.builder_.emit(relax.call_tir(funcs[key], args, relax.TensorType((batch, m, n), "float32")))
            return relax.op.reshape(y, tuple(lead) + (m, n))

        def _quantized(self, x, fixed=None):
            """``(lazy uint8 tensor, scale, zero point)`` when ``x`` is quantized: ONNX's
            QuantizeLinear then DequantizeLinear (:meth:`_quantized_input`), DeepShift's
            fixed-point rounding of a byte (``fixed``: ``(int_bits, frac_bits)`` of a compressed
            node's input, or the plain export's rounding ops, :meth:`_fixed_point_input`); else
            None."""
            if fixed is None:
                plain = self._fixed_point_input(x)
                if plain is not None:
                    x, fixed = plain[0], plain[1:]
            if fixed is not None:
                return self._fixed_point_as_uint8(x, *fixed)
            quantized = self._quantized_input(x)
            if quantized is not None:
                return (lambda q=quantized[0]: q,) + quantized[1:]
            moved = self._resolve(x)                # a transpose of a quantized tensor: transpose the bytes
            if isinstance(moved, relax.Call) and moved.op.same_as(op_permute) and moved.attrs.axes is not None:
                quantized = self._quantized_input(moved.args[0])
                if quantized is not None:
                    axes = [int(a) for a in moved.attrs.axes]
                    return (lambda q=quantized[0]: self.builder_.emit(relax.op.permute_dims(q, axes)),) + quantized[1:]
            return None

        def _int8(self, x, weight, xshape, source, bias=None, fixed=None):
            """The layer on ``int8_dense`` when its input ``x`` is quantized (:meth:`_quantized`),
            its weight (``weight()``, [N, K]) has rows of a scale times small integers
            (``int8_dense.integer_rows``) and the policy agrees; else None."""
            quantized = self._quantized(x, fixed)
            if quantized is None:
                return None
            from tvmopt.ops.int8_dense import int8_kernel

            make_q, scale, zero_point = quantized
            w = np.asarray(weight(), np.float32)
            kern = int8_kernel(w.reshape(w.shape[0], -1), scale, zero_point)
            if kern is None:
                return None
            m = int(np.prod(xshape[:-1])) if len(xshape) > 1 else 1
            picked = choose(options.kernels, "int8_dense", kern.key(m), _dense_key(m, kern.out_features, kern.reduction),
                            m, w.size, conv=False, cost=costs)
            if not picked.compressed:
                return None
            kern.bias = None if bias is None else np.asarray(bias, np.float32)
            q, xshape = self._kernel_input(kern, make_q(), xshape)
            return self._emit(kern, q, xshape, source, choice=picked.label, pad_rows=True)

        def _kernel_input(self, kern, q, shape):
            """``(q, shape)`` as ``kern`` reads it: cast to its ``input_dtype`` (a wide
            ``int8_dense``'s int16), ``kern.input_copies`` times along the last axis (a weight
            split into parts, ``int8_dense.byte_parts``)."""
            if kern.input_dtype:
                q = self.builder_.emit(relax.op.astype(q, kern.input_dtype))
            copies = kern.input_copies
            if copies == 1:
                return q, shape
            q = self.builder_.emit(relax.op.concat([q] * copies, axis=-1))
            return q, tuple(shape[:-1]) + (copies * shape[-1],)

        def _int8_conv(self, x, w, geometry, source, nhwc, sizes):
            """A convolution whose input is quantized (:meth:`_quantized`) and whose weight's
            output channels are a scale times small integers: im2col of the uint8 input (the
            zero point outside the image: a dequantized 0) and ``int8_dense`` over
            [N*OH*OW, C*KH*KW] x [C*KH*KW, O], columns in the input's layout order; else None.
            ``sizes``: (N, C, H, W, OH, OW), as :meth:`_conv` read them."""
            quantized = self._quantized(x)
            if quantized is None:
                return None
            from tvmopt.ops.int8_dense import GROUP as INT8_GROUP, int8_kernel

            make_q, scale, zero_point = quantized
            n, c, h, wd, oh, ow = sizes
            o, _, kh, kw = w.shape
            (sh, sw), (dh, dw) = geometry["strides"], geometry["dilations"]
            pt, pl, pb, pr = geometry["pads"]
            order = np.transpose(w, (0, 2, 3, 1)) if nhwc else w          # columns (kh, kw, c) / (c, kh, kw)
            columns = c * kh * kw
            # columns to a multiple of the 4 bytes a VNNI lane sums, with zero weights (a first
            # layer of 3 channels: 3 x 7 x 7 = 147 as 148)
            extra = -columns % INT8_GROUP
            weight = np.pad(np.asarray(order, np.float32).reshape(o, -1), ((0, 0), (0, extra)))
            kern = int8_kernel(weight, scale, zero_point)
            if kern is None:
                return None
            rows = n * oh * ow
            suffix = "_nhwc" if nhwc else ""
            dense_key = conv_key("conv2d" + suffix, _conv_dims(n, c, h, wd, o, kh, kw, sh, (pt, pl, pb, pr))) \
                if direct_conv(geometry, options) else _dense_key(rows, o, c * kh * kw)
            picked = choose(options.kernels, "int8_dense", kern.key(rows), dense_key, rows, w.size, conv=True,
                            cost=costs)
            if not picked.compressed:
                return None
            cols = self.builder_.call_te(_im2col, make_q(), kh, kw, (sh, sw), (pt, pl), (dh, dw), oh, ow,
                                         nhwc=nhwc, fill=zero_point,
                                         primfunc_name_hint="im2col_nhwc" if nhwc else "im2col")
            if extra:
                cols = self.builder_.emit(relax.op.nn.pad(cols, [0, 0, 0, extra], pad_value=float(zero_point)))
            cols, cols_shape = self._kernel_input(kern, cols, (rows, columns + extra))
            y = self._emit(kern, cols, cols_shape, f"{source} {kh}x{kw}/{sh} (uint8 im2col)", pad_rows=True,
                           report_shape=f"{n}x{c}x{h}x{wd} -> {o}x{oh}x{ow}", choice=picked.label)
            y = self.builder_.emit(relax.op.reshape(y, (n, oh, ow, o)))
            return y if nhwc else relax.op.permute_dims(y, [0, 3, 1, 2])

        # ---- ai.tvmopt placeholder ----
        def _lower_placeholder(self, call):
            op, x, inputs, attrs, unread = placeholder_parts(call, self._const)
            if unread:
                raise ModelError(f"{op}: input '{unread[0]}' is not a constant")
            kern = from_compact(op, inputs, attrs)      # conv nodes are plain ops by now (placeholders.py)

            def dense_weight():
                from tvmopt.model.opset import decode_weight

                return decode_weight(op, inputs, attrs)

            if not attrs.get("binarize_input") and (not kern.input_transform or kern.input_transform[0] == "fixed"):
                fixed = tuple(kern.input_transform[1:]) if kern.input_transform else None
                integer = self._int8(x, dense_weight, static_shape(x), f"ai.tvmopt:{op}", inputs.get("bias"), fixed)
                if integer is not None:
                    return integer
            return self._emit(kern, x, static_shape(x), f"ai.tvmopt:{op}", dense_weight=dense_weight, pad_rows=True)

        def _conv(self, x, w, geometry, source, binarized=False, nhwc=False):
            """conv2d: the direct dense conv, a direct compressed conv (weight decoded in blocks),
            the XNOR conv (``binarized``: ``x`` is the input *before* ``where(x >= 0, 1, -1)``), or
            im2col + a GEMM-family kernel over [N*OH*OW, C*kh*kw] x [C*kh*kw, O] (dilated or
            unevenly strided convolutions). ``nhwc``: ``x`` is channels last and so is the
            result, a ``*_conv2d_nhwc`` task; None where this layer's kernel is NCHW only (row
            tables, im2col)."""
            if nhwc:
                n, h, wd, c = static_shape(x)
            else:
                n, c, h, wd = static_shape(x)
            suffix = "_nhwc" if nhwc else ""
            o, _, kh, kw = w.shape
            (sh, sw), (dh, dw) = geometry["strides"], geometry["dilations"]
            pt, pl, pb, pr = geometry["pads"]
            oh = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
            ow = (wd + pl + pr - dw * (kw - 1) - 1) // sw + 1
            if not binarized and not gpu:
                integer = self._int8_conv(x, w, geometry, source, nhwc, (n, c, h, wd, oh, ow))
                if integer is not None:
                    return integer
            kern = detect_once(w.reshape(o, -1))
            direct = direct_conv(geometry, options)
            found, choice = kern.structure, ""
            if gpu:
                kern.family = cuda_family(kern.family) or kern.family
            if binarized:
                if direct and not gpu and kern.family in ("binary_dense", "binary_lut_dense"):
                    dims = _conv_dims(n, c, h, wd, o, kh, kw, sh, (pt, pl, pb, pr))
                    xnor = xnor_conv_prefix(nhwc, ConvShape(*dims, layout="NHWC" if nhwc else "NCHW"))
                    picked = choose(options.kernels, "xnor_conv2d", conv_key(xnor, dims),
                                    conv_key("conv2d" + suffix, dims), n * oh * ow, o * c * kh * kw, conv=True,
                                    cost=costs)
                    if picked.compressed:
                        return self._direct_conv(x, w, sh, (pt, pl, pb, pr), "binary, XNOR-popcount",
                                                 picked.label, kern, xnor, source=source)
                # binarized activations with zero padding are not ±1: the other kernels take them as data
                x = self.builder_.emit(binarize(x))
            conv_prefix = CONV_OF.get(kern.family) if direct and not gpu else None    # no direct ones on CUDA
            tables = conv_row_tables(conv_prefix, n * oh * ow, o * c * kh * kw)
            if tables:
                conv_prefix = tables        # large layers: tables shared by 16 output pixels
            # channels last, 3x3, stride 1: the Winograd kernels (2.25x fewer multiply-adds)
            winograd = nhwc and direct and not gpu and options.winograd and \
                winograd_preferred(ConvShape(n, c, h, wd, o, kh, kw, sh, pt, layout="NHWC")) and pt == pl == pb == pr
            dense_prefix = WINOGRAD_PREFIX if winograd else "conv2d" + suffix
            if nhwc:
                conv_prefix = conv_register_tables(conv_prefix, c, o, min(kh, kw), sh) or conv_prefix
                if winograd:
                    conv_prefix = winograd_prefix(conv_prefix)
            if nhwc and (not direct or tables):
                return None
            if kern.family != DENSE:
                rows = n * oh * ow
                dims = _conv_dims(n, c, h, wd, o, kh, kw, sh, (pt, pl, pb, pr))
                dense_key = conv_key(dense_prefix, dims) if direct else _dense_key(rows, o, c * kh * kw)
                if nhwc and direct and not gpu:
                    gemm = self._few_pixels(x, w, kern, geometry, source, (n, c, h, wd, oh, ow), dense_key)
                    if gemm is not None:
                        return gemm
                compressed_key = conv_key(conv_prefix + suffix, dims, kern.key_dims) if conv_prefix else kern.key(rows)
                picked = pick(options.kernels, (cuda_family(kern.family) if gpu else conv_prefix or kern.family),
                              compressed_key, dense_key, rows, o * c * kh * kw, conv=True, cost=costs)
                if conv_prefix and not gpu:
                    picked = small_layer(picked, options.kernels, rows * o * c * kh * kw, network_macs)
                choice = picked.label
                if not picked.compressed:
                    kern = dense_kernel(w.reshape(o, -1), found)
                elif conv_prefix:
                    return self._direct_conv(x, w, sh, (pt, pl, pb, pr), found, choice, kern,
                                             conv_prefix + suffix, source=source)
            if kern.family == DENSE and direct:
                return self._direct_conv(x, w, sh, (pt, pl, pb, pr), found if choice else "dense", choice,
                                         prefix=dense_prefix, source=source)
            if nhwc:
                return None
            cols = self.builder_.call_te(_im2col, x, kh, kw, (sh, sw), (pt, pl), (dh, dw), oh, ow,
                                         primfunc_name_hint="im2col")
            y = self._emit(kern, cols, (n * oh * ow, c * kh * kw),
                           f"{source} {kh}x{kw}/{sh}", report_shape=f"{n}x{c}x{h}x{wd} -> {o}x{oh}x{ow}",
                           choice=choice)
            y = self.builder_.emit(relax.op.reshape(y, (n, oh, ow, o)))
            return relax.op.permute_dims(y, [0, 3, 1, 2])

        def _few_pixels(self, x, w, kern, geometry, source, sizes, dense_key):
            """A channels-last convolution of few output pixels and a large compressed weight
            (``choose.few_pixels``) as im2col + the compressed linear kernel, which decodes each
            weight vector in registers for every pixel at once (the direct compressed conv decodes
            tiles into a buffer and reads them back), columns (kh, kw, c); else None, and None
            where records (or ``measure``) time both kernels and the dense conv wins."""
            n, c, h, wd, oh, ow = sizes
            o, _, kh, kw = w.shape
            rows = n * oh * ow
            picked = few_pixels(options.kernels, kern.family, rows, w.size)
            if picked is None:
                return None
            (sh, sw), (dh, dw) = geometry["strides"], geometry["dilations"]
            pt, pl, pb, pr = geometry["pads"]
            columns = detect_once(np.ascontiguousarray(np.transpose(w, (0, 2, 3, 1))).reshape(o, -1))
            if columns.family != kern.family:
                return None
            columns.family = _cpu_family(columns, rows)            # the key the kernel will run
            timed = from_costs(costs, columns.key(rows), dense_key, "measured" if options.kernels == "measure"
                               else "records") if options.kernels != "compressed" else None
            if timed is not None:
                if not timed.compressed:
                    return None
                picked = timed
            cols = self.builder_.call_te(_im2col, x, kh, kw, (sh, sw), (pt, pl), (dh, dw), oh, ow, nhwc=True,
                                         primfunc_name_hint="im2col_nhwc")
            y = self._emit(columns, cols, (rows, c * kh * kw), f"{source} {kh}x{kw}/{sh} (im2col)",
                           report_shape=f"{n}x{c}x{h}x{wd} -> {o}x{oh}x{ow}", choice=picked.label)
            return self.builder_.emit(relax.op.reshape(y, (n, oh, ow, o)))

        def _direct_conv(self, x, w, stride, pads, structure="dense", choice="", kern=None,
                         prefix="conv2d", source="conv2d", groups=1):
            """A convolution as a direct conv task (``conv2d`` or ``depthwise_conv2d``, or with
            ``kern`` a compressed weight's ``<format>_conv2d`` or ``xnor_conv2d``), emitted
            *unscheduled* (fusable), so its scale, bias and activation fuse with it and
            :mod:`.fuse_schedule` applies the config afterwards."""
            from tvmopt.ops.task import get_task

            nhwc = prefix.endswith("_nhwc")
            if nhwc:
                n, h, wd, c = static_shape(x)
            else:
                n, c, h, wd = static_shape(x)
            o, _, kh, kw = w.shape
            pt, pl, pb, pr = pads
            dims = _conv_dims(n, c, h, wd, o, kh, kw, stride, pads) + ((groups,) if groups > 1 else ())
            key = conv_key(prefix, dims, kern.key_dims if kern else ())
            if not pt == pl == pb == pr:
                spatial = [pt, pb, pl, pr]
                x = self.builder_.emit(relax.op.nn.pad(x, [0, 0] + spatial + [0, 0] if nhwc else [0, 0, 0, 0] + spatial))
                h, wd = h + pt + pb, wd + pl + pr
            task = tasks[key] = tasks.get(key) or get_task(key)
            params = tuple(sorted(kern.params.items())) if kern else ()
            if (key, params) not in funcs:
                if kern is not None:
                    task = task.with_params(kern.params)
                name = prefix + "_" + "_".join(key.split(":")[1].split("x"))
                funcs[(key, params)] = self.builder_.add_func(_fusable(task), name)
            shape = task.shape
            # dense and XNOR convs lay out (or pack the signs of) w itself (the dense Winograd conv
            # transforms it); XNOR's scale is kern.scale
            arrays = task.to_kernel([w] if kern is None or prefix.startswith(("xnor_conv2d", "xnor8_conv2d")) else kern.arrays)
            y = relax.call_tir(funcs[(key, params)], [x] + [relax.const(a) for a in arrays],
                               relax.TensorType(output_shape(shape), "float32"))
            if kern is not None and kern.scale is not None:
                value = np.asarray(kern.scale, np.float32)
                channels = (1, 1, 1, -1) if nhwc else (1, -1, 1, 1)
                y = relax.op.multiply(self.builder_.emit(y), relax.const(value.reshape(channels) if value.size > 1 else
                                                                         value.reshape(())))
            # a compressed conv stores its own layout of the codes (the register-table convs: words
            # per tap), plus the scale the write-back applies
            scale = scale_bytes(kern.scale) if kern is not None else 0
            if kern is not None or prefix == WINOGRAD_PREFIX:    # the dense Winograd conv's U: 16/9 the weight
                stored = array_bytes(arrays) + scale
            else:
                stored = w.size * 4
            layers.append(LayerReport(len(layers), f"{source} {kh}x{kw}/{stride}",
                                      f"{n}x{c}x{h}x{wd} -> {o}x{shape.oh}x{shape.ow}", structure, key,
                                      w.size * 4, stored, choice, scale))
            return y

        # ---- emit one kernel ----
        def _emit(self, kern: Kernel, x, xshape, source, report_shape: str | None = None, dense_weight=None,
                  choice: str = "", pad_rows: bool = False, runtime_args: dict | None = None):
            """Call ``kern``'s kernel on ``x``; ``runtime_args``: Relax expressions that replace
            some of its constant arrays (by index in the kernel layout), data the model computes."""
            lead, k = xshape[:-1], xshape[-1]
            m = int(np.prod(lead)) if lead else 1
            # a compressed linear kernel's register tile takes rows that 4 divides: other counts
            # (a ViT's 197 tokens) are computed padded, as the dense kernel pads its own
            # (``pad_rows``; not the im2col GEMMs of fp32 convolutions; the int8 kernels, whose
            # register tile takes 1 to 8 rows that divide the count, also: ResNet-18's 7 x 7 QDQ
            # layers, 49 rows, ran one row per tile at 0.55 ms a call)
            rows = padded_rows(m) if pad_rows and not gpu else m
            if k != kern.reduction:
                raise ModelError(f"{source}: input has {k} features, the weight expects {kern.reduction}")
            if gpu:
                kern.family = cuda_family(kern.family) or kern.family     # CPU-only variants: the GPU kernel
            else:
                kern.family = _cpu_family(kern, rows)
            if kern.family != DENSE and dense_weight is not None:
                dense_key = _dense_key(m, kern.out_features, kern.reduction)
                picked = pick(options.kernels, cuda_family(kern.family) if gpu else kern.family, kern.key(rows),
                              dense_key, m, kern.out_features * kern.reduction, conv=False, cost=costs)
                choice = picked.label
                if not picked.compressed:
                    # the decoded weight already holds the kernel's scale; bias and input transform stay
                    alternative = dense_kernel(np.asarray(dense_weight(), np.float32).reshape(kern.out_features, -1),
                                               kern.structure)
                    alternative.bias, alternative.input_transform = kern.bias, kern.input_transform
                    kern = alternative
            if len(xshape) != 2:
                x = self.builder_.emit(relax.op.reshape(x, (m, k)))
            if kern.input_transform:
                _, ib, fb = kern.input_transform
                x = self.builder_.emit(_fixed_point(x, ib, fb))
            if kern.family == DENSE:
                rows = m
            elif rows != m:                  # zero rows appended; the output's are dropped below
                x = self.builder_.emit(relax.op.nn.pad(x, [0, rows - m, 0, 0]))
            key = kern.key(rows)
            gv, layout = self._kernel_func(kern, key)
            arrays = layout.to_kernel(kern.arrays)
            runtime_args = runtime_args or {}
            args = [x] + [runtime_args[i] if i in runtime_args else relax.const(a) for i, a in enumerate(arrays)]
            y = self.builder_.emit(relax.call_tir(gv, args, relax.TensorType((rows, kern.out_features), "float32")))
            if kern.scale is not None:
                y = self.builder_.emit(relax.op.multiply(y, relax.const(kern.scale.astype(np.float32))))
            if kern.bias is not None:
                y = self.builder_.emit(relax.op.add(y, relax.const(kern.bias.astype(np.float32))))
            if rows != m:      # after the epilogue: flat_epilogue moves it past the ops after it too
                y = self.builder_.emit(relax.op.strided_slice(y, axes=[0], begin=[0], end=[m]))
            if len(xshape) != 2:
                y = relax.op.reshape(y, tuple(lead) + (kern.out_features,))
            shape = f"{m} x {kern.out_features} x {kern.reduction}"
            if rows != m:
                shape += f", {rows} rows computed"
            if report_shape:
                shape = f"{report_shape} ({shape})"
            layers.append(LayerReport(len(layers), source, shape, kern.structure, key,
                                      kern.dense_bytes, kern.compact_bytes, choice, scale_bytes(kern.scale)))
            return y

        def _kernel_func(self, kern: Kernel, key: str):
            """(the kernel's function, the task whose ``to_kernel`` lays out its weights)."""
            from tvmopt.ops.task import cuda_task, get_task

            task = tasks.get(key)
            if task is None:
                task = get_task(key)
                tasks[key] = task
            params = tuple(sorted(kern.params.items()))
            cache_key = (key, params)
            if cache_key not in funcs:
                if kern.family != DENSE:
                    task = task.with_params(kern.params)
                name = re.sub(r"(?<=\d)x(?=\d)", "_", key.replace(":", "_")) + (f"_{len(funcs)}" if kern.params else "")
                layout = tasks[key]
                view = cuda_task(task) if gpu else None
                # dense layers on a GPU: DLight's rules, unless a CUDA record tunes tvmopt's space
                tuned = configs(key, view.space) if view is not None else None
                if gpu and (kern.family != DENSE or tuned is not None):
                    # the CUDA view of the same task (same compute; the dense view reads a plain
                    # [K, N] weight, no CPU panels), scheduled by its space: a CUDA record's
                    # config or the space's start; fusable where its schedule folds the scale,
                    # bias and activation into its write-back
                    config = tuned or view.space.initial()
                    layout = view.base
                    if view.fuses_epilogue:
                        import tvm
                        from tvm import te

                        func = te.create_prim_func(list(view.compute(config)), index_dtype_override="int64")
                        sch = tvm.s_tir.Schedule(tvm.IRModule({"main": func}))
                        sch.annotate(sch.get_sblock("C"), CUDA_KERNEL_ANNOTATION, name)
                        func = sch.mod["main"].with_attr("op_pattern", OUT_EWISE_FUSABLE).without_attr("global_symbol")
                        cuda_kernels[name] = (view, config)
                    else:
                        func = view.schedule(config)["main"].with_attr("tirx.is_scheduled", True)
                        func = func.with_attr("global_symbol", name).with_attr("op_pattern", OPAQUE)
                elif task.fuses_epilogue:
                    # unscheduled and fusable: Relax fuses the scale, bias and activation after it
                    # into one function, which fuse_schedule.schedule_module schedules by the
                    # task's annotation with the epilogue in the accumulator's write-back
                    func = _fusable(task)
                else:
                    config = configs(key, task.space)
                    func = _primfunc(task, config).with_attr("tirx.is_scheduled", True).with_attr("global_symbol", name)
                    func = func.with_attr("op_pattern", OPAQUE)      # scheduled already: never re-fused
                funcs[cache_key] = (self.builder_.add_func(func, name), layout)
            return funcs[cache_key]

    # exporters leave ops on constant weights (Sign, Transpose, Mul by a folded BN scale...)
    # plain exports of Fastfood / Hadamard layers: butterfly regions -> placeholder or matmul
    # (first: folding their shape arithmetic would compile hundreds of tiny functions)
    mod = collapse_linear_regions(mod)
    mod = whole_powers(mod)
    mod = relax.transform.FoldConstant()(mod)
    mod = fold_batch_norm(mod)
    mod = plain_conv_placeholders(mod)
    if choose_layout(mod, options, detect_once) == "NHWC":
        mod = to_channels_last(mod)
    network_macs = multiply_adds(mod)
    new_mod = rewrite(Rewriter, mod)
    new_mod = relax.transform.CanonicalizeBindings()(new_mod)     # no `y = x` aliases: they stop fusion
    new_mod = flat_epilogue.flatten(new_mod)        # a 3-D MatMul's bias and activation: fusable
    if not gpu:
        new_mod = _schedule_im2col(new_mod)         # on a GPU, DLight's rules schedule it
    _check_no_placeholder(new_mod)
    return Lowered(new_mod, layers, tasks, cuda_kernels, products)


def multiply_adds(mod) -> int:
    """The multiply-adds of ``mod``'s convolutions and matrix products (static shapes; others
    count nothing)."""
    from tvm import relax

    total = 0

    def visit(expr):
        nonlocal total
        name = getattr(getattr(expr, "op", None), "name", "") if isinstance(expr, relax.Call) else ""
        if name not in ("relax.nn.conv2d", "relax.matmul"):
            return
        try:
            outputs = int(np.prod([int(d) for d in expr.ty.shape]))
            if name == "relax.nn.conv2d":
                _, per_group, kh, kw = (int(d) for d in expr.args[1].ty.shape)
                total += outputs * per_group * kh * kw
            else:
                total += outputs * int(expr.args[0].ty.shape[-1])
        except (AttributeError, TypeError, ValueError):     # a symbolic or unknown shape
            pass

    relax.analysis.post_order_visit(mod["main"], visit)
    return total


def _cpu_family(kern: Kernel, rows: int) -> str:
    """The CPU kernel a linear layer of ``rows`` rows runs for ``kern``'s format: the decode kernel
    where lookup tables would be rebuilt for too many rows, row tables, register tables, the
    2:4 register selects, the XNOR kernel's width."""
    family = kern.family
    if family.endswith("_lut_dense") and rows > LUT_MAX_ROWS:
        # the tables are rebuilt for every row of X: with many rows the decode kernel (same
        # weight layout) is cheaper
        family = family.replace("_lut_dense", "_dense")
    tables = ROW_TABLES_OF.get(family)
    if tables and takes_rows(rows) and rows >= ROW_TABLE_MIN_ROWS[tables]:
        family = tables
    family = register_tables(family, rows, kern.out_features) or family
    family = nm_register_select(family, rows, kern.out_features, kern.reduction, kern.params) or family
    return xnor_dense_family(family, kern.out_features) or family


def _schedule_im2col(mod):
    """The im2col stages: rows of patches in parallel (left unscheduled, the stage ran serially
    and took most of the digits CNN's time at batch 64)."""
    import tvm

    for gv, func in list(mod.functions_items()):
        if not gv.name_hint.startswith("im2col") or type(func).__name__ != "PrimFunc":
            continue
        sch = tvm.s_tir.Schedule(tvm.IRModule({"main": func}))
        block = sch.get_sblock("im2col")
        rows, cols = sch.get_loops(block)
        sch.parallel(rows)
        channels = int(sch.get(block).reads[0].source.shape[-1])       # the input's last axis
        run = int(sch.get(block).annotations.get(IM2COL_RUN, 0))
        if gv.name_hint.startswith("im2col_nhwc") and channels % 16 == 0:
            # channels last: each tap's run of channels is contiguous, one bounds check per run
            _, inner = sch.split(cols, [None, channels])
            sch.vectorize(sch.split(inner, [None, 64 if channels % 64 == 0 else 16])[1])
        elif run and int(sch.get(cols).extent) % run == 0:
            # few channels (a first layer's 3): a row of the kernel window at a time, its taps'
            # channels one run of the input row, so the column's index needs no division by the
            # window (ResNet-18's 7 x 7 x 3 uint8 patches: 2.4 -> 0.1 ms, Zen 4)
            sch.split(cols, [None, run])
        # opaque: fused with the quantize before it, the pair ran as a function that crashed
        # (SIGSEGV) on 2 threads in ResNet-18's batch-16 QDQ build, and the im2col is scheduled already
        mod[gv] = sch.mod["main"].with_attr("tirx.is_scheduled", True).with_attr("global_symbol", gv.name_hint) \
            .with_attr("op_pattern", OPAQUE)
    return mod


def _im2col(x, kh, kw, strides, pads, dilations, oh, ow, nhwc=False, fill=0):
    """TE: patches [N*OH*OW, C*kh*kw] of NCHW ``x``, columns (c, kh, kw), or of NHWC ``x``
    (``nhwc``), columns (kh, kw, c); ``fill`` outside the image (a uint8 input's zero point)."""
    import tvm
    from tvm import te

    if nhwc:
        n, h, w, c = (int(d) for d in x.shape)
    else:
        n, c, h, w = (int(d) for d in x.shape)

    def patch(r, q):
        b, rem = r // (oh * ow), r % (oh * ow)
        y, xx = rem // ow, rem % ow
        if nhwc:
            rq, ci = q // c, q % c
        else:
            ci, rq = q // (kh * kw), q % (kh * kw)
        i, j = rq // kw, rq % kw
        hi = y * strides[0] + i * dilations[0] - pads[0]
        wi = xx * strides[1] + j * dilations[1] - pads[1]
        inside = tvm.tirx.all(hi >= 0, hi < h, wi >= 0, wi < w)
        hc, wc = tvm.tirx.max(tvm.tirx.min(hi, h - 1), 0), tvm.tirx.max(tvm.tirx.min(wi, w - 1), 0)
        value = x[b, hc, wc, ci] if nhwc else x[b, ci, hc, wc]
        return tvm.tirx.Select(inside, value, tvm.tirx.const(fill, x.dtype))

    run = {IM2COL_RUN: kw * c} if nhwc and dilations[1] == 1 else {}
    return te.compute((n * oh * ow, c * kh * kw), patch, name="im2col", attrs=run)


#: the im2col block's annotation: the columns of one row of the kernel window (kw x c, channels last)
IM2COL_RUN = "tvmopt_im2col_run"


def _fusable(task):
    """The task's unscheduled compute as a private PrimFunc marked ``kOutEWiseFusable``: Relax
    fuses the elementwise ops after it into one function (DCE drops the original once fused),
    and :func:`.fuse_schedule.schedule_module` schedules it by the task's annotation. int64
    indices, as Relax's legalized functions have, so FuseTIR can merge them."""
    from tvm import te

    func = te.create_prim_func(list(task.compute()), index_dtype_override="int64")
    return func.with_attr("op_pattern", OUT_EWISE_FUSABLE).without_attr("global_symbol")


def _primfunc(task, config):
    if config is not None and not task.space.contains(config):
        import warnings

        warnings.warn(f"{task.key}: a record's config does not fit the current space; using the default")
        config = None
    return task.primfunc(config)


def _dense_key(m: int, out_features: int, reduction: int) -> str:
    """The dense kernel's key for ``m`` rows (what :func:`dense_kernel`'s ``key(m)`` gives)."""
    return f"{DENSE}:{m}x{out_features}x{reduction}"


def _conv_dims(n, c, h, w, o, kh, kw, stride, pads) -> tuple[int, ...]:
    """A direct conv task's nine dimensions; asymmetric padding is applied by an explicit pad first."""
    pt, pl, pb, pr = pads
    if not pt == pl == pb == pr:
        h, w, pt = h + pt + pb, w + pl + pr, 0
    return (n, c, h, w, o, kh, kw, stride, pt)


def binarize(x):
    """``where(x >= 0, 1, -1)``: a binarized activation as tvmopt.nn's plain export writes it (the
    pattern ``Bindings._binarized_source`` and the XNOR kernels recognize)."""
    from tvm import relax

    return relax.op.where(relax.op.greater_equal(x, relax.const(0.0, "float32")),
                          relax.const(1.0, "float32"), relax.const(-1.0, "float32"))


def _fixed_point(x, int_bits: int, frac_bits: int):
    from tvm import relax

    step = 2.0 ** -frac_bits
    bound = 2.0 ** int_bits - step
    q = relax.op.multiply(relax.op.round(relax.op.divide(x, relax.const(np.float32(step)))),
                          relax.const(np.float32(step)))
    return relax.op.clip(q, -bound, bound)


def _check_no_placeholder(mod) -> None:
    text = mod.script(show_meta=False)
    if f'call_dps_packed("{PLACEHOLDER_PREFIX}' in text:
        raise ModelError("a compressed layer was left unlowered (unsupported ai.tvmopt node)")
