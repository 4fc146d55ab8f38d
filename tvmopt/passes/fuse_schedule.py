"""After the pass: fuse, then schedule every PrimFunc of the module.

1. :func:`fuse` runs Relax's legalization and fusion (``LegalizeOps``, ``AnnotateTIROpPattern``,
   ``FuseOps``, ``FuseTIR``). The dense convolutions the pass emits are *unscheduled* TE
   functions marked ``op_pattern = kOutEWiseFusable``, so bias adds, batch-norm shifts, ReLUs and
   residual adds after them fuse into one function with them.
2. :func:`schedule_module` schedules each fused function: a block carrying a task annotation
   (``tvmopt_task``) gets its task's config (the best record, or the space's start) and its
   epilogue blocks are inlined into the accumulator's write-back; every other unscheduled
   function gets :func:`default_schedule` (parallel outer loops, vectorized inner loop), so no
   heavy loop nest runs serial and scalar.
3. :func:`unscheduled_heavy` is the checker the build runs last: functions with enough work
   and neither a parallel nor a vectorized loop.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable

from tvmopt.ops.task import TASK_ANNOTATION

#: Relax's pattern kind of a kernel that accepts elementwise epilogues (conv2d, matmul)
OUT_EWISE_FUSABLE = 4
OPAQUE = 8

#: a function doing at least this many innermost iterations counts as heavy
HEAVY_WORK = 1 << 16

#: loops fused into the parallel loop until it has at least this many iterations
MIN_PARALLEL = 64


def _relu_keeping_nan(bb, call):
    """ReLU as ``x < 0 ? 0 : x``: TOPI's ``max(x, 0)`` becomes LLVM's maxnum, which turns NaN
    into 0, where onnxruntime and PyTorch keep NaN."""
    from tvm import te, tirx

    def relu(x):
        return te.compute(x.shape, lambda *i: tirx.Select(x(*i) < tirx.const(0, x.dtype),
                                                          tirx.const(0, x.dtype), x(*i)), name="relu")

    return bb.call_te(relu, call.args[0], primfunc_name_hint="relu")


def _small_power(bb, call):
    """``x ** c`` for a constant ``c`` that is a whole number of quarters up to 4 in size as
    products and square roots (GELU's tanh form has ``x ** 3``, local response normalization
    ``** 0.75``: ``sqrt(x) * sqrt(sqrt(x))``; a negative ``c`` its reciprocal). TOPI's power is a
    scalar libm ``pow`` call per element, which LLVM cannot vectorize: Inception v1's first LRN
    took 1.4 ms of its 17.7. ``vsqrtps`` is correctly rounded, so the result is within a few ulp
    of ``pow``'s, NaN for negative ``x`` where ``c`` is fractional as ``pow``'s; other exponents
    keep TOPI's."""
    import tvm
    from tvm import te, topi

    x, y = call.args
    value = None
    if isinstance(y, tvm.ir.expr.Constant) and y.value.numpy().size == 1:
        value = float(y.value.numpy().reshape(-1)[0])
    if value is None or value * 4 != int(value * 4) or not 0 < abs(value) <= 4 or \
            "float" not in str(call.ty.dtype):
        return bb.call_te(topi.power, x, y)
    whole, quarters = int(abs(value)), int(round((abs(value) % 1) * 4))

    def power(t):
        def at(*i):
            v = t(*i)
            factors = [v] * whole
            if quarters:
                root = tvm.tirx.sqrt(v)
                factors += {1: [tvm.tirx.sqrt(root)], 2: [root], 3: [root, tvm.tirx.sqrt(root)]}[quarters]
            out = factors[0]
            for f in factors[1:]:
                out = out * f
            return tvm.tirx.const(1.0, t.dtype) / out if value < 0 else out
        return te.compute(t.shape, at, name="power")

    return bb.call_te(power, x, primfunc_name_hint="power")


def whole_powers(mod):
    """``mod`` with each ``x ** c`` for a whole constant ``c`` from 2 to 4 written as products
    (``(x * x) * x``, the order :func:`_small_power` computes). The result is the same; Relax's
    ``FoldConstant``, which the pass runs before fusion, legalizes a ``power`` by TOPI's, whose
    ``pow(x, 3)`` printed TVM's "Detected pow(x, y) where y >= 3" warning three times for every
    build of a model with a tanh GELU."""
    import tvm
    from tvm import relax

    from .bindings import Bindings, rewrite

    op_power = tvm.ir.Op.get("relax.power")

    @relax.expr_functor.mutator
    class Powers(relax.PyExprMutator, Bindings):
        def visit_call_(self, call):
            call = super().visit_call_(call)
            if not call.op.same_as(op_power) or "float" not in str(getattr(call.ty, "dtype", "")):
                return call
            value = self._const(call.args[1])
            if value is None or value.size != 1 or float(value.reshape(-1)[0]) not in (2.0, 3.0, 4.0):
                return call
            x = call.args[0]
            out = x
            for _ in range(int(value.reshape(-1)[0]) - 1):
                out = self.builder_.emit(relax.op.multiply(out, x))
            return out

    return rewrite(Powers, mod)


def _fast(name, compute=None):
    """``name`` (a TOPI op) as a vectorizable approximation, float32 only: ``compute`` (TE), else
    TOPI's ``fast_<name>``. tanh and erf: TOPI's rational approximations (within a few ulp of
    float32; onnxruntime uses the same kind of approximation); exp and sigmoid: on
    :func:`_fast_exp_keeping_nan`. Other types keep TOPI's exact op."""
    def legalize(bb, call):
        from tvm import topi

        x = call.args[0]
        if str(call.ty.dtype) != "float32":
            return bb.call_te(getattr(topi, name), x)
        return bb.call_te(compute or getattr(topi, f"fast_{name}"), x, primfunc_name_hint=name)
    return legalize


def _fast_exp_keeping_nan(x):
    """TOPI's ``fast_exp`` (range reduction and a degree-7 polynomial: vector instructions only)
    with NaN passed through: its clamp to the exponent range is LLVM's maxnum and minnum, which
    turn NaN into a number. LLVM lowers the ``exp`` of a vector to one scalar libm ``expf`` call
    per lane, about 1 ns an element on 2 Zen 4 cores, 10x the polynomial."""
    from tvm import te, tirx, topi

    e = topi.fast_exp(x)
    return te.compute(x.shape, lambda *i: tirx.Select(x(*i) != x(*i), x(*i), e(*i)), name="exp")


def _fast_sigmoid_keeping_nan(x):
    """``sigmoid(x) = 1 / (1 + exp(-x))`` on :func:`_fast_exp_keeping_nan`: TOPI's sigmoid calls
    libm's ``expf`` per element, and SiLU (``x * sigmoid(x)``, EfficientNet's activation) after
    each convolution of an EfficientNet-style network took 2.7x onnxruntime's time for the whole
    network (1.4 ns an element, in the conv's write-back)."""
    from tvm import te, tirx, topi

    e = _fast_exp_keeping_nan(topi.negative(x))
    one = tirx.const(1.0, "float32")
    return te.compute(x.shape, lambda *i: one / (one + e(*i)), name="sigmoid")


def _concat_by_input(bb, call):
    """A concatenation of static shapes as one copy loop nest per input, each writing its own
    slice of the output: TOPI's one loop nest over the output selects the input with an
    ``if_then_else`` on the concatenated axis, and along a channels-last tensor's innermost axis
    that condition is a vector, so LLVM got the loop scalar. SqueezeNet's fire modules
    (1x55x55 maps, 64 + 64 channels) copied at 14 to 25 GB/s; split by input, 5 to 9x faster.
    Anything else (a symbolic shape) keeps TOPI's."""
    import tvm
    from tvm import relax

    from .concat import CONCAT_AXIS, copy_nest, int64s, static_shape

    t = call.args[0]
    while isinstance(t, relax.Var) and isinstance(bb.lookup_binding(t), (relax.Tuple, relax.Var)):
        t = bb.lookup_binding(t)
    legalize = tvm.ir.Op.get("relax.concat").get_attr("FLegalize")
    shapes = []
    if isinstance(t, relax.Tuple) and call.attrs.axis is not None:
        for field in t.fields:
            shape = static_shape(getattr(getattr(field, "ty", None), "shape", None))
            if shape is None:
                return legalize(bb, call)
            shapes.append(shape)
    if not shapes or len({len(sh) for sh in shapes}) != 1 or str(call.ty.dtype) not in ("float32", "int32", "int8"):
        return legalize(bb, call)
    rank, dtype = len(shapes[0]), str(call.ty.dtype)
    axis = int(call.attrs.axis) % rank
    out = list(shapes[0])
    out[axis] = sum(sh[axis] for sh in shapes)
    params = ", ".join(f"x{i}: T.Buffer(({int64s(sh)},), {dtype!r})" for i, sh in enumerate(shapes))
    lines = ["@T.prim_func(private=True, s_tir=True)",
             f"def concatenate({params}, out: T.Buffer(({int64s(out)},), {dtype!r})):",
             f'    T.func_attr({{"op_pattern": 2, "tirx.noalias": True, "{CONCAT_AXIS}": {axis}}})']
    offset = 0
    for i, sh in enumerate(shapes):
        lines += copy_nest(f"x{i}", sh, axis, offset, f"concatenate_{i}")
        offset += sh[axis]
    func = tvm.script.from_source("\n".join(lines) + "\n")
    gv = bb.add_func(func, "concatenate")
    return relax.call_tir(gv, list(t.fields), call.ty)


def fuse(mod, cpu: bool = True):
    """``cpu``: softmax and layer normalization over the last axis become scheduled CPU kernels
    (:mod:`.row_ops`); for a GPU, TOPI's, which DLight's rules schedule."""
    import tvm
    from tvm import relax

    from .row_ops import legalize_layer_norm, legalize_softmax

    custom = {"relax.nn.relu": _relu_keeping_nan, "relax.power": _small_power,
              "relax.tanh": _fast("tanh"), "relax.erf": _fast("erf"), "relax.exp": _fast("exp", _fast_exp_keeping_nan),
              "relax.sigmoid": _fast("sigmoid", _fast_sigmoid_keeping_nan), "relax.concat": _concat_by_input}
    if cpu:
        custom.update({"relax.nn.softmax": legalize_softmax, "relax.nn.layer_norm": legalize_layer_norm})
    return tvm.transform.Sequential([
        relax.transform.LegalizeOps(customize_legalize_map=custom),
        relax.transform.AnnotateTIROpPattern(),
        relax.transform.FoldConstant(),
        relax.transform.FuseOps(),
        relax.transform.FuseTIR(),
        # a reshape left alone (a model's flatten) becomes a view instead of a copying kernel;
        # after scheduling its loops would no longer read as a reshape
        relax.transform.RewriteDataflowReshape(),
        relax.transform.DeadCodeElimination(),      # the kernels' unfused originals
    ])(mod)


def schedule_module(mod, configs: Callable[[str, object], object]) -> tuple[object, list[str]]:
    """Schedule every unscheduled PrimFunc of ``mod``. Returns the module and the names of the
    functions that got the default rule."""
    import tvm

    from tvmopt.ops.task import get_task

    defaulted = []
    for gv, func in list(mod.functions_items()):
        if not isinstance(func, tvm.tirx.PrimFunc) or func.attrs is not None and \
                func.attrs.get("tirx.is_scheduled", False):
            continue
        sch = tvm.s_tir.Schedule(tvm.IRModule({"main": func}))
        blocks = _blocks(sch)
        at = next((i for i, b in enumerate(blocks) if TASK_ANNOTATION in sch.get(b).annotations), None)
        task = None
        if at is not None:
            task = get_task(str(sch.get(blocks[at]).annotations[TASK_ANNOTATION]))
            if task.tensorized:
                # tensor intrinsics are written with int32 indices: narrow the function first
                sch = tvm.s_tir.Schedule(tvm.IRModule({"main": _narrow_indices(func)}))
                blocks = _blocks(sch)
            block = blocks[at]
            # the task schedules its own stages (a pad) and inlines what it can of the epilogue
            for rest in task.apply(sch, block, configs(task.key, task.space), blocks[at + 1:]) or ():
                cropped = _inline_crop(sch, rest)
                if cropped is not None:
                    sch = cropped
                    continue
                _parallel_vectorize(sch, rest)
        else:
            default_schedule(sch)
            defaulted.append(gv.name_hint)
        scheduled = _narrow_indices(sch.mod["main"]).with_attr("tirx.is_scheduled", True)
        # the task a kernel runs, for its profile (``tvmopt run --profile`` sets it beside its record)
        mod[gv] = scheduled.with_attr(TASK_ANNOTATION, task.key) if task is not None else scheduled
    return mod, defaulted


def _inline_crop(sch, block):
    """A copy of ``sch`` with ``block``, the crop of a kernel computed on padded rows
    (``schedules.gemm.padded_rows``) that the task left over, inlined into the kernel's write-back, or
    None. The task has placed its write-back by then, and TVM bounds the inlined store with a
    predicate (``T.where(row < 197)``): checked, else None (inlined before, it wrote past the end
    of the smaller buffer). Saves a pass over the output (a ViT's 197 x 3072 GELU)."""
    from tvmopt.schedules.gemm import is_crop

    try:
        if not is_crop(sch, block):
            return None
        before = sch.mod["main"].script().count("T.where(")
        trial = sch.copy()
        trial.reverse_compute_inline(block)
        return trial if trial.mod["main"].script().count("T.where(") > before else None
    except Exception:  # noqa: BLE001 - TVM's ScheduleError: not inlinable here, a loop of its own
        return None


def kernel_tasks(mod) -> dict[str, str]:
    """function name -> the task key of each kernel :func:`schedule_module` scheduled from a task."""
    import tvm

    return {gv.name_hint: str(func.attrs[TASK_ANNOTATION]) for gv, func in mod.functions_items()
            if isinstance(func, tvm.tirx.PrimFunc) and func.attrs is not None and TASK_ANNOTATION in func.attrs}


def _narrow_indices(func):
    """``func`` with int32 loop and index arithmetic. Relax gives every function int64 shapes
    (the pass emits its kernels likewise so FuseTIR can merge them with their epilogues), and
    int64 indices cost the dense GEMM 30% and the FWHT kernels 2.3x (wider gathers, 64-bit
    address arithmetic in the vector loops). Kept int64 when some buffer is too large."""
    import tvm

    try:
        return tvm.tirx.transform.ForceNarrowIndexToInt32()(tvm.IRModule({"main": func}))["main"]
    except Exception:  # noqa: BLE001 - symbolic or >2^31-element shapes: leave int64
        return func


def _blocks(sch) -> list:
    return list(sch.get_child_blocks(sch.get_sblock("root"))) if _has_root(sch) else []


def _has_root(sch) -> bool:
    try:
        sch.get_sblock("root")
        return True
    except Exception:  # noqa: BLE001 - a function without a root block has nothing to schedule
        return False


def default_schedule(sch) -> None:
    """A sound schedule for any function without a template: for each block, the leading
    spatial loops fused into one parallel loop (until it has ``MIN_PARALLEL`` iterations) and,
    for blocks without a reduction, the innermost loop vectorized when its extent is a
    multiple of 4 up to 64 (else split by 8 with the inner part vectorized when that divides);
    for a short window reduction over the buffers' last axis (NHWC pooling), that axis moved
    inside the window's loops and vectorized (:func:`_vectorizable_across`). Injective stages
    that feed another stage are inlined first where TVM allows it."""
    blocks = _blocks(sch)
    for block in blocks[:-1]:
        try:
            sch.compute_inline(block)
        except Exception:  # noqa: BLE001 - not inlinable (reduction, multiple consumers...)
            pass
    for block in _blocks(sch):
        try:
            _parallel_vectorize(sch, block)
        except Exception as exc:  # noqa: BLE001 - the checker reports what stays serial
            warnings.warn(f"default schedule failed for block {sch.get(block).name_hint}: {exc}")


def _parallel_vectorize(sch, block) -> None:
    loops = sch.get_loops(block)
    if not loops:
        return
    kinds = [int(v.iter_type) for v in sch.get(block).iter_vars]
    extents = [int(sch.get(lp).extent) for lp in loops]
    plain = len(kinds) == len(loops)   # one loop per block variable, in their order
    if not plain:                      # a block whose loops were rearranged: parallel outer only
        kinds = [0] + [2] * (len(loops) - 1)
    spatial = 0
    while spatial < len(loops) and kinds[spatial] == 0:
        spatial += 1
    reduces = spatial < len(loops)
    if plain and spatial == 0 and math.prod(extents) >= FULL_REDUCTION_MIN:
        _full_reduction(sch, block, loops, math.prod(extents))
        return
    across = reduces and plain and _vectorizable_across(sch, block, spatial, extents)
    keep_inner = (not reduces or across) and spatial > 1     # the innermost spatial loop is vectorized
    take, product = 0, 1
    while take < spatial - (1 if keep_inner else 0) and product < MIN_PARALLEL:
        product *= extents[take]
        take += 1
    if take and product > 1:
        sch.parallel(sch.fuse(*loops[:take]) if take > 1 else loops[0])
    if across:
        # a window reduction over channels last (max/avg pooling): the channels go inside the
        # window's loops, one vector of them updated per tap (ResNet-18's NHWC max pool ran
        # serial over channels, 2.4x onnxruntime's time)
        _window_inside_channels(sch, block, loops[spatial - 1], loops[spatial:], extents[spatial - 1])
    elif not reduces and take < len(loops):
        _vectorize(sch, loops[-1], extents[-1])


#: a reduction of a whole tensor to one value (``max(x)``, ``min(x)``: ONNX Runtime's
#: ``DynamicQuantizeLinear`` takes both of every quantized input) from this many elements is split
#: in partial results per core and vector lane (:func:`_full_reduction`)
FULL_REDUCTION_MIN = 1 << 12
#: its partial results: chunks run in parallel, lanes of a vector in each
FULL_REDUCTION_CHUNKS, FULL_REDUCTION_LANES = 8, 16


def _full_reduction(sch, block, loops, extent: int) -> None:
    """A whole tensor reduced to one value: the elements in ``FULL_REDUCTION_CHUNKS`` parallel
    chunks, each reduced into ``FULL_REDUCTION_LANES`` partial results held in one vector
    (contiguous loads), and the partials reduced after (``rfactor``). Serial and scalar, the
    two reductions over BERT's 128 x 3072 hidden activations took 0.43 ms, 1.1x the integer
    product they quantize for (Zen 4). Left serial where the count does not divide or the
    reducer is not one TIR can factor."""
    chunks, lanes = FULL_REDUCTION_CHUNKS, FULL_REDUCTION_LANES
    if extent % (chunks * lanes):
        return
    try:
        r = sch.fuse(*loops) if len(loops) > 1 else loops[0]
        p, n, lane = sch.split(r, factors=[chunks, None, lanes])
        sch.reorder(p, lane, n)
        partial = sch.rfactor(sch.fuse(p, lane), 0)
        pl, n = sch.get_loops(partial)
        p, lane = sch.split(pl, factors=[chunks, lanes])
        sch.reorder(p, n, lane)
        sch.parallel(p)
        sch.vectorize(lane)
        init = sch.decompose_reduction(partial, n)
        sch.vectorize(sch.get_loops(init)[-1])
    except Exception:  # noqa: BLE001 - a reducer rfactor does not take: stays serial
        pass


#: the channels of a window reduction updated together per tap (:func:`_window_inside_channels`)
WINDOW_LANES = (64, 32, 16, 8)


def _window_inside_channels(sch, block, channels, window: list, extent: int) -> None:
    """Channels last: the window's taps inside a chunk of channels, the chunk one vector
    (``WINDOW_LANES``, or the channels whole), its init before the taps: the chunk's running
    maximum or sum stays in registers over the window, one load per tap. With the taps outside
    every channel (the vector updated in memory at each tap), SqueezeNet's 1x55x55x128 3x3
    max pool took 0.165 ms on AVX2 code, 4.3x its AVX-512 build (Zen 4)."""
    lanes = next((w for w in WINDOW_LANES if extent % w == 0), extent)
    if lanes < extent:
        outer, inner = sch.split(channels, factors=[None, lanes])
        sch.reorder(outer, *window, inner)
    else:
        sch.reorder(*window, channels)
        inner = channels
    sch.vectorize(inner)
    try:
        sch.decompose_reduction(block, window[0])
    except Exception:  # noqa: BLE001 - no init to move (a block without one)
        pass


def _vectorize(sch, loop, extent: int) -> None:
    """Vectorize ``loop`` whole when its extent is a multiple of 4 up to 64, else its inner 8
    when 8 divides it (else leave it scalar)."""
    if extent % 4 == 0 and extent <= 64:
        sch.vectorize(loop)
    elif extent % 8 == 0:
        sch.vectorize(sch.split(loop, factors=[None, 8])[1])


#: a reduction's innermost spatial loop goes inside its reduction loops (and is vectorized) only
#: where those loops are this short: the output vector is updated in memory once per step
ACROSS_MAX_STEPS = 64


def _vectorizable_across(sch, block, spatial: int, extents: list[int]) -> bool:
    """Whether a reduction block can vectorize its innermost spatial axis across its reduction
    loops: an outer spatial loop left for the parallel one, the axis's extent one that
    :func:`_vectorize` vectorizes, few reduction steps, and every buffer the block reads and
    writes indexed by that axis alone in its last dimension (unit stride: pooling windows over
    NHWC; not a row sum, whose inner axis would gather)."""
    if spatial < 2:
        return False
    extent = extents[spatial - 1]
    if not (extent % 8 == 0 or (extent % 4 == 0 and extent <= 64)) or math.prod(extents[spatial:]) > ACROSS_MAX_STEPS:
        return False
    stmt = sch.get(block)
    var = stmt.iter_vars[spatial - 1].var
    regions = list(stmt.reads) + list(stmt.writes)
    return bool(regions) and all(r.region[-1].min.same_as(var) and int(r.region[-1].extent) == 1 for r in regions)


def unscheduled_heavy(mod, threshold: int = HEAVY_WORK) -> list[str]:
    """Names of the PrimFuncs of ``mod`` that do at least ``threshold`` innermost iterations
    without any parallel or vectorized loop."""
    import tvm
    from tvm.tirx import ForKind

    heavy = []
    for gv, func in mod.functions_items():
        if not isinstance(func, tvm.tirx.PrimFunc):
            continue
        work, fast = _work(func.body, ForKind)
        if work >= threshold and not fast:
            heavy.append(gv.name_hint)
    return heavy


def _work(stmt, ForKind) -> tuple[int, bool]:
    """(innermost iterations of ``stmt``, whether it has a parallel or vectorized loop)."""
    import tvm

    total, fast = 0, False

    def visit(node, mult):
        nonlocal total, fast
        if isinstance(node, tvm.tirx.For):
            extent = node.extent.value if hasattr(node.extent, "value") else 1
            if node.kind in (ForKind.PARALLEL, ForKind.VECTORIZED):
                fast = True
            visit(node.body, mult * extent)
        elif isinstance(node, tvm.tirx.SeqStmt):
            for s in node.seq:
                visit(s, mult)
        elif isinstance(node, (tvm.tirx.BufferStore,)):
            total += mult
        else:
            for attr in ("body", "block", "then_case", "else_case"):
                child = getattr(node, attr, None)
                if isinstance(child, tvm.tirx.Stmt):
                    visit(child, mult)

    visit(stmt, 1)
    return total, fast
