"""Softmax and layer normalization over the last axis, legalized as scheduled CPU kernels.

Transformers apply both to every row of an activation: softmax to each row of attention's
scores (``[batch, heads, tokens, tokens]``), layer normalization to each token's features.
TOPI's versions are several stages each, and the default schedule vectorizes no reduction
(:func:`.fuse_schedule.default_schedule`). Two BERT-base layers (128 tokens, Zen 4):
softmax 0.60 ms per call and layer normalization 0.115 ms per call, 4.7% of the model's time
(here 0.045 and 0.029).

Here each row is one iteration of a parallel loop, and everything for the row is computed
inside it, in L1: the reductions (max and sum for softmax, mean and variance for layer
normalization) run as ``lanes`` partial results updated one vector at a time (a manual rfactor),
then reduced across lanes; softmax's ``exp`` is TOPI's ``fast_exp`` (a vectorizable polynomial
within a few ulp of float32's exp, the kind of approximation onnxruntime uses); the write-back is
vectorized. Variance is computed in a second pass over the row (``sum((x - mean)^2)``), as
exactly as TOPI's. A row that the lanes do not divide (a ViT's 197 tokens) ends in a scalar
tail. Rows shorter than 8, 1-D tensors, other axes and dtypes keep TOPI's versions. The numpy references are :func:`softmax_reference` and
:func:`layer_norm_reference`.
"""

from __future__ import annotations

import numpy as np

from .bindings import tensor_shape
from .fuse_schedule import OPAQUE


def softmax_reference(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def layer_norm_reference(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def _lanes(n: int) -> int:
    """The partial results' count along a row of ``n``: a width whose whole vectors cover the
    row at least twice over (the rest of the row, ``n % lanes``, is a scalar tail), else 0."""
    return next((lanes for lanes in (16, 8, 4) if n >= 2 * lanes), 0)


def _static(expr) -> tuple[int, ...] | None:
    """The static shape of a float32 tensor expression, else None."""
    shape = tensor_shape(expr)
    return shape if shape is not None and str(expr.ty.dtype) == "float32" else None


def _row_sum(te, values, shape, lanes, name, combine="sum"):
    """``combine`` (sum or max) over each row's last axis of ``values`` (a callable on indices):
    partial results per lane over the row's whole vectors, then across lanes, then with the
    row's scalar tail where ``lanes`` does not divide it (a ViT's 197 tokens). Returns the
    totals; the names of the lane and tail blocks are ``{name}_lanes`` and ``{name}_tail``."""
    from tvm import tirx

    n = shape[-1]
    chunks = n // lanes
    jo = te.reduce_axis((0, chunks), name=f"{name}_jo")
    reducer = te.sum if combine == "sum" else te.max
    partial = te.compute(shape[:-1] + (lanes,),
                         lambda *i: reducer(values(*i[:-1], jo * lanes + i[-1]), axis=jo), name=f"{name}_lanes")
    lane = te.reduce_axis((0, lanes), name=f"{name}_l")
    total = te.compute(shape[:-1], lambda *i: reducer(partial(*i, lane), axis=lane),
                       name=name if n == chunks * lanes else f"{name}_vectors")
    if n == chunks * lanes:
        return total
    t = te.reduce_axis((chunks * lanes, n), name=f"{name}_t")
    tail = te.compute(shape[:-1], lambda *i: reducer(values(*i, t), axis=t), name=f"{name}_tail")
    both = (lambda a, b: a + b) if combine == "sum" else tirx.max
    return te.compute(shape[:-1], lambda *i: both(total(*i), tail(*i)), name=name)


def _schedule_rows(func, lanes: int, partials: list[str], stages: list[str], inline: list[str]):
    """Rows in parallel, every stage of a row computed inside the row's iteration: ``partials``
    (lane reductions: reduction loop outside, lanes vectorized), ``stages`` (whole-row
    elementwise stages, vectorized), ``inline`` inlined into their consumers. The output block
    is the function's last."""
    import tvm

    from .fuse_schedule import _narrow_indices

    sch = tvm.s_tir.Schedule(tvm.IRModule({"main": func}))
    for name in inline:
        sch.compute_inline(sch.get_sblock(name))
    blocks = list(sch.get_child_blocks(sch.get_sblock("root")))
    out = blocks[-1]
    loops = sch.get_loops(out)
    row = sch.fuse(*loops[:-1]) if len(loops) > 2 else loops[0]
    sch.parallel(row)
    _vector_loop(sch, sch.get_loops(out)[-1], lanes)
    for block in reversed(blocks[:-1]):             # consumers first: each lands under the row loop
        sch.compute_at(block, row)
    for name in partials:
        block = sch.get_sblock(name)
        lane, step = sch.get_loops(block)[-2:]
        sch.reorder(step, lane)
        sch.vectorize(lane)
        init = sch.decompose_reduction(block, step)
        sch.vectorize(sch.get_loops(init)[-1])
    for name in stages:
        block = sch.get_sblock(name)
        _vector_loop(sch, sch.get_loops(block)[-1], lanes)
    func = _narrow_indices(sch.mod["main"]).without_attr("global_symbol")
    return func.with_attr("tirx.is_scheduled", True).with_attr("op_pattern", OPAQUE)


def _vector_loop(sch, loop, lanes: int) -> None:
    """Vectorize a row's elementwise loop by ``lanes``; a row that ``lanes`` does not divide is
    left to LLVM's loop vectorizer, which handles the remainder (a split would predicate every
    vector)."""
    if int(sch.get(loop).extent) % lanes == 0:
        sch.vectorize(sch.split(loop, factors=[None, lanes])[1])


def softmax_func(shape: tuple[int, ...]):
    """The scheduled PrimFunc of softmax over the last axis of a float32 tensor of ``shape``
    (rank 2 or more, rows of 8 or more)."""
    from tvm import te, topi

    lanes = _lanes(shape[-1])
    x = te.placeholder(shape, "float32", name="x")
    peak = _row_sum(te, lambda *i: x(*i), shape, lanes, "row_max", combine="max")
    shifted = te.compute(shape, lambda *i: x(*i) - peak(*i[:-1]), name="shifted")
    e = topi.fast_exp(shifted)
    total = _row_sum(te, lambda *i: e(*i), shape, lanes, "row_sum")
    scale = te.compute(shape[:-1], lambda *i: 1.0 / total(*i), name="reciprocal")
    out = te.compute(shape, lambda *i: e(*i) * scale(*i[:-1]), name="softmax")
    func = te.create_prim_func([x, out])
    return _schedule_rows(func, lanes, ["row_max_lanes", "row_sum_lanes"], [e.op.name], ["shifted"])


def layer_norm_func(shape: tuple[int, ...], eps: float):
    """The scheduled PrimFunc of layer normalization over the last axis of a float32 tensor of
    ``shape`` (rank 2 or more, rows of 8 or more), with ``gamma`` and ``beta`` of the last axis's size."""
    from tvm import te

    n, lanes = shape[-1], _lanes(shape[-1])
    x = te.placeholder(shape, "float32", name="x")
    gamma = te.placeholder((n,), "float32", name="gamma")
    beta = te.placeholder((n,), "float32", name="beta")
    total = _row_sum(te, lambda *i: x(*i), shape, lanes, "row_sum")
    mean = te.compute(shape[:-1], lambda *i: total(*i) * (1.0 / n), name="mean")
    squares = _row_sum(te, lambda *i: (x(*i) - mean(*i[:-1])) * (x(*i) - mean(*i[:-1])), shape, lanes,
                          "row_squares")
    rstd = te.compute(shape[:-1], lambda *i: te.rsqrt(squares(*i) * (1.0 / n) + eps), name="rstd")
    out = te.compute(shape, lambda *i: (x(*i) - mean(*i[:-1])) * rstd(*i[:-1]) * gamma[i[-1]] + beta[i[-1]],
                     name="layer_norm")
    func = te.create_prim_func([x, gamma, beta, out])
    return _schedule_rows(func, lanes, ["row_sum_lanes", "row_squares_lanes"], [], [])


def legalize_softmax(bb, call):
    from tvm import relax

    legalize = call.op.get_attr("FLegalize")
    shape = _static(call.args[0])
    if shape is None or len(shape) < 2 or int(call.attrs.axis) not in (-1, len(shape) - 1) or not _lanes(shape[-1]):
        return legalize(bb, call)
    gv = bb.add_func(softmax_func(shape), "softmax")
    return relax.call_tir(gv, [call.args[0]], call.ty)


def legalize_layer_norm(bb, call):
    from tvm import relax

    legalize = call.op.get_attr("FLegalize")
    x, gamma, beta = call.args
    shape = _static(x)
    a = call.attrs
    if shape is None or len(shape) < 2 or [int(v) for v in a.axes] not in ([-1], [len(shape) - 1]) \
            or not _lanes(shape[-1]) \
            or not (a.center and a.scale) or _static(gamma) != shape[-1:] or _static(beta) != shape[-1:]:
        return legalize(bb, call)
    gv = bb.add_func(layer_norm_func(shape, float(a.epsilon)), "layer_norm")
    return relax.call_tir(gv, [x, gamma, beta], call.ty)
