"""Concatenations without copies: each kernel feeding a concatenation writes its own slice of
the concatenated tensor (a pass on the fused module, before scheduling; CPU builds).

After :func:`tvmopt.passes.fuse_schedule.fuse`, a concatenation is a kernel of its own
(``_concat_by_input``: one copy loop nest per input) that reads every input once more and writes
the output: SqueezeNet's fire modules (two convolutions of the same squeeze output, then their
channels concatenated) spent 0.49 of 5.7 ms there on a Zen 3, Inception's and DenseNet's blocks
likewise. Here every input that a scheduled kernel (a block carrying a task annotation) computes
for the concatenation alone gets that kernel extended with the copy of its result into its slice
(FuseTIR merges the two, and the kernel's schedule inlines the copy into its write-back like
any epilogue), so the convolution stores straight into the concatenated tensor. The first such
kernel allocates the tensor (``call_tir``, its slice written, the rest left to the others), the
others write theirs in place (``call_tir_inplace``). An input that is not such a kernel's
(a graph input, a pooling, a tensor used elsewhere too, as DenseNet's running concatenation) is
copied into its slice in place, as the concatenation did. A kernel is merged only where every
concatenation it feeds takes its result into the same slice of tensors of one shape: merged, it
is one kernel to compile per slice, and DenseNet-121's shared 3x3 convs (6 to 32 slices a dense
block) took its compile time from 27 to 66 s, so its blocks keep their copies.
"""

from __future__ import annotations

#: attribute ``_concat_by_input`` gives the concatenation kernels it writes: the concatenated axis
CONCAT_AXIS = "tvmopt.concat_axis"


def int64s(values) -> str:
    """TVMScript extents as int64, as Relax's own legalized functions have (FuseTIR matches them)."""
    return ", ".join(f"T.int64({v})" for v in values)


def copy_nest(source: str, shape: list[int], axis: int, offset: int, block: str) -> list[str]:
    """TVMScript lines (in a function body): one loop nest copying buffer ``source`` of ``shape``
    into ``out`` from ``offset`` along ``axis``, as block ``block``."""
    rank = len(shape)
    names = [f"v{i}" for i in range(rank)]
    loops = ", ".join(f"a{i}" for i in range(rank))
    index = ", ".join(f"{v} + T.int64({offset})" if d == axis and offset else v for d, v in enumerate(names))
    return [f"    for {loops} in T.grid({int64s(shape)}):",
            f'        with T.sblock("{block}"):',
            f"            {', '.join(names)} = T.axis.remap({'S' * rank!r}, [{loops}])",
            f"            out[{index}] = {source}[{', '.join(names)}]"]


def slice_copy(in_shape: list[int], out_shape: list[int], axis: int, offset: int, dtype: str):
    """TIR: ``out[..., i + offset, ...] = x[..., i, ...]`` along ``axis`` (x's slice of out)."""
    import tvm

    src = "\n".join([
        "@T.prim_func(private=True, s_tir=True)",
        f"def concat_slice(x: T.Buffer(({int64s(in_shape)},), {dtype!r}), "
        f"out: T.Buffer(({int64s(out_shape)},), {dtype!r})):",
        '    T.func_attr({"op_pattern": 2, "tirx.noalias": True})',
        *copy_nest("x", in_shape, axis, offset, "concat_slice")]) + "\n"
    return tvm.script.from_source(src)


def _is_task_kernel(func) -> bool:
    import tvm

    from tvmopt.ops.task import TASK_ANNOTATION

    from .fuse_schedule import _blocks

    sch = tvm.s_tir.Schedule(tvm.IRModule({"main": func}))
    return any(TASK_ANNOTATION in sch.get(b).annotations for b in _blocks(sch))


def static_shape(shape) -> list[int] | None:
    """A Relax tensor shape as ints, or None where it is missing or has a symbolic dimension."""
    import tvm

    if shape is None or not all(isinstance(d, tvm.tirx.IntImm) for d in shape):
        return None
    return [int(d) for d in shape]


def concat_in_place(mod):
    """``mod`` (fused, unscheduled) with every concatenation written in place by its inputs'
    kernels where one of them is a task's kernel; the rest unchanged."""
    from tvm import relax

    changed = False
    bb = relax.BlockBuilder(mod)
    for gv, func in list(mod.functions_items()):
        if not isinstance(func, relax.Function) or (func.attrs is not None and "Primitive" in func.attrs):
            continue
        new_blocks, touched = [], False
        for block in func.body.blocks:
            dataflow = isinstance(block, relax.DataflowBlock)
            rewritten = _rewrite_block(mod, bb, list(block.bindings), dataflow)
            if rewritten is None:
                new_blocks.append(block)
                continue
            touched = True
            new_blocks.append(relax.DataflowBlock(rewritten) if dataflow else relax.BindingBlock(rewritten))
        if touched:
            changed = True
            bb.update_func(gv, relax.Function(func.params, relax.SeqExpr(new_blocks, func.body.body), func.ret_ty,
                                              func.is_pure, func.attrs))
    if not changed:
        return mod
    return relax.transform.DeadCodeElimination()(bb.get())      # the concatenations' kernels


_counter = [0]


def _fresh(dataflow: bool, ty):
    from tvm import relax

    _counter[0] += 1
    return (relax.DataflowVar if dataflow else relax.Var)(f"tvmopt_concat{_counter[0]}", ty)


def _rewrite_block(mod, bb, bindings, dataflow: bool):
    """The block's bindings with its concatenations rewritten, or None where none is: an input a
    task's kernel computes for the concatenation alone is computed by that kernel merged with its
    slice copy, at the kernel's place; any other input is copied into its slice at the
    concatenation's place. The first call in binding order allocates the tensor, every later one
    writes in place into the tensor the one before returned."""
    import tvm
    from tvm import relax

    call_tir = tvm.ir.Op.get("relax.call_tir")
    position = {b.var: i for i, b in enumerate(bindings)}
    uses = _uses(bindings)
    task_kernel: dict[str, bool] = {}

    def kernel_for_concat_alone(x):
        """The binding index of the task kernel computing ``x`` for the concatenation alone, or None."""
        value = bindings[position[x]].value if x in position else None
        if (value is None or not isinstance(x, relax.DataflowVar) or uses.get(x, 0) != 1
                or not (isinstance(value, relax.Call) and value.op.same_as(call_tir) and len(value.args) == 2
                        and isinstance(value.args[1], relax.Tuple))):
            return None
        name = value.args[0].name_hint
        if name not in task_kernel:
            func = mod[value.args[0]]
            task_kernel[name] = isinstance(func, tvm.tirx.PrimFunc) and _is_task_kernel(func)
        return position[x] if task_kernel[name] else None

    concatenations = []    # (binding index, binding, axis, inputs, their shapes, the output's shape, producers)
    for ci, b in enumerate(bindings):
        call = b.value
        if not (isinstance(call, relax.Call) and call.op.same_as(call_tir) and isinstance(call.args[1], relax.Tuple)):
            continue
        concat = mod[call.args[0]]
        if not isinstance(concat, tvm.tirx.PrimFunc) or concat.attrs is None or CONCAT_AXIS not in concat.attrs:
            continue
        inputs = list(call.args[1].fields)
        out_shape = static_shape(getattr(call.ty, "shape", None))
        shapes = [static_shape(getattr(x.ty, "shape", None)) for x in inputs]
        if out_shape is None or any(s is None for s in shapes) or len(set(inputs)) != len(inputs):
            continue
        concatenations.append((ci, b, int(concat.attrs[CONCAT_AXIS]), inputs, shapes, out_shape,
                               [kernel_for_concat_alone(x) for x in inputs]))

    # A kernel merged with a slice copy is a kernel of its own to compile: merged only where all
    # the concatenations it feeds take its result into the same slice of tensors of one shape
    # (SqueezeNet's fire modules, most of Inception's blocks), so that it adds at most one kernel
    # (none where every call of the kernel feeds a concatenation). Shared by layers writing
    # different slices, it multiplied: DenseNet-121's 3x3 convs, shared by the layers of a dense
    # block, write 6 to 32 slices of growing tensors (54 kernels where it had 4), and its compile
    # time went from 27 to 66 s (Zen 3) for 1.04x less kernel time; Inception v2's from 27 to 43 s
    # with two slices for some kernels
    slices: dict[str, set] = {}
    for _, _, axis, _, shapes, out_shape, producers in concatenations:
        offset = 0
        for shape, at in zip(shapes, producers):
            if at is not None:
                slices.setdefault(bindings[at].value.args[0].name_hint, set()).add((axis, offset, tuple(out_shape)))
            offset += shape[axis]

    plan: dict[int, list] = {}
    for ci, b, axis, inputs, shapes, out_shape, producers in concatenations:
        call = b.value
        producers = [at if at is not None and len(slices[bindings[at].value.args[0].name_hint]) == 1 else None
                     for at in producers]
        if all(p is None for p in producers):
            continue
        dtype = str(call.ty.dtype)
        pieces, offset = [], 0            # (binding index, function, args)
        for x, shape, at in zip(inputs, shapes, producers):
            copy = slice_copy(shape, out_shape, axis, offset, dtype)
            offset += shape[axis]
            if at is not None:
                producer = bindings[at].value
                pieces.append((at, _group(bb, mod, producer, copy, call.ty), list(producer.args[1].fields)))
            else:
                pieces.append((ci, bb.add_func(copy, "concat_slice"), [x]))
        pieces.sort(key=lambda p: p[0])
        prev = None
        for at, gv, args in pieces:
            var = _fresh(dataflow, call.ty)
            value = (relax.call_tir(gv, relax.Tuple(args), call.ty) if prev is None else
                     relax.op.call_tir_inplace(gv, relax.Tuple(args + [prev]), [len(args)], call.ty))
            plan.setdefault(at, []).append(relax.VarBinding(var, value))
            prev = var
        plan.setdefault(ci, []).append(relax.VarBinding(b.var, prev))
    if not plan:
        return None
    out = []
    for i, b in enumerate(bindings):
        out.extend(plan[i] if i in plan else [b])
    return out


def _uses(bindings) -> dict:
    from tvm import relax

    counts = {}
    for b in bindings:
        for v in relax.analysis.free_vars(b.value):
            counts[v] = counts.get(v, 0) + 1
    return counts


def _group(bb, mod, producer, copy, out_ty):
    """The producer's kernel, then the copy of its result into its slice, merged into one kernel
    (by FuseTIR, on a module of their own) whose last parameter is the concatenated tensor."""
    from tvm import relax

    kernel_gv = producer.args[0]
    tb = relax.BlockBuilder()
    kernel = tb.add_func(mod[kernel_gv], kernel_gv.name_hint)
    copy_gv = tb.add_func(copy, "concat_slice")
    params = [relax.Var(f"p{i}", a.ty) for i, a in enumerate(producer.args[1].fields)]
    y = relax.DataflowVar("y", producer.ty)
    o = relax.DataflowVar("o", out_ty)
    body = relax.SeqExpr([relax.DataflowBlock([
        relax.VarBinding(y, relax.call_tir(kernel, relax.Tuple(params), producer.ty)),
        relax.VarBinding(o, relax.call_tir(copy_gv, relax.Tuple([y]), out_ty))])], o)
    group = tb.add_func(relax.Function(params, body, out_ty, True).with_attr("Primitive", True), "group")
    outer = [relax.Var(f"a{i}", a.ty) for i, a in enumerate(producer.args[1].fields)]
    r = relax.Var("r", out_ty)
    tb.add_func(relax.Function(outer, relax.SeqExpr([relax.BindingBlock([relax.VarBinding(r, relax.Call(group, outer))])], r),
                               out_ty, True).with_attr("global_symbol", "main"), "main")
    fused = relax.transform.FuseTIR()(relax.transform.Normalize()(tb.get()))
    call = fused["main"].body.blocks[0].bindings[0].value
    return bb.add_func(fused[call.args[0]], f"{kernel_gv.name_hint}_into_concat")
