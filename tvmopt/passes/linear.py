"""Linear regions: subgraphs that mix one tensor with itself through constant-free butterflies.

A plain export of a Fastfood or fixed-Hadamard layer has no weight matrix: it is hundreds of
small ops (reshape, take, add, subtract, concat, multiply by constant vectors) that compute a
linear map of one input. This pass finds each such *region*, measures the map it computes by
running its ops in numpy on probe inputs, and replaces it:

- by the ``Fastfood`` placeholder when the map is ``S H G Pi H B`` (blocks stacked, output cut,
  bias): the three constant vectors the region multiplies by are S, G and B, and the permutation
  is read off the ops between the first two multiplies (they compute ``Pi H``). The result is
  checked against the Fastfood reference on random inputs before it is used;
- otherwise by a matmul with the measured matrix (plus bias), which the lowering pass then
  treats like any constant weight: Hadamard rows become the FWHT kernel, anything else is a
  tuned dense GEMM.

A region must contain at least one *mix* (an add or subtract of two tensors that both depend on
the input): reshapes and transposes alone stay as they are. Rows of the batch must not mix; the
random check catches a region that does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .bindings import rewrite

#: ops a region may contain, and the operand positions that may hold the region's tensor
_LINEAR = {"relax.reshape", "relax.expand_dims", "relax.squeeze", "relax.permute_dims", "relax.take",
           "relax.strided_slice", "relax.concat", "relax.add", "relax.subtract", "relax.multiply",
           "relax.divide", "relax.negative"}
#: ops evaluated when all their operands are known (shape arithmetic left by exporters)
_STATIC = {"relax.shape_of", "relax.shape_to_tensor", "relax.less", "relax.greater", "relax.where", "relax.add",
           "relax.subtract", "relax.multiply", "relax.take", "relax.reshape", "relax.expand_dims",
           "relax.squeeze", "relax.concat"}
MAX_DENSE_ELEMENTS = 1 << 22       # a region collapses to a matrix only up to 16 MiB of fp32
RTOL = 1e-4


@dataclass
class Region:
    src: object                                  # the relax.Var the region transforms
    bindings: list = field(default_factory=list)  # VarBindings computing region tensors, in order
    muls: list = field(default_factory=list)     # (binding, constant) multiplies by a constant
    mixes: int = 0
    outputs: list = field(default_factory=list)  # region vars used outside the region
    known: dict = field(default_factory=dict)    # values of the shape arithmetic it reads
    shapes: dict = field(default_factory=dict)   # binding var -> static shape (read per probe)


def _shape(expr) -> tuple[int, ...] | None:
    """Static shape of a Relax expression (None if it has none)."""
    try:
        return tuple(int(d) for d in expr.ty.shape)
    except (AttributeError, TypeError, ValueError):
        return None


def _ints(expr) -> list[int]:
    from tvm import relax

    if isinstance(expr, relax.ShapeExpr):
        return [int(v) for v in expr.values]
    if isinstance(expr, relax.Tuple):
        return [int(f.value) for f in expr.fields]
    if _is_prim(expr):
        return [int(expr.value)]
    raise TypeError(type(expr))


def _is_prim(expr) -> bool:
    """A prim value (``R.prim_value`` is an integer immediate in TVM 0.27)."""
    return type(expr).__name__ in ("IntImm", "FloatImm", "PrimValue", "StringImm")


class _Interp:
    """numpy semantics of the ops above, on one call whose operands are already values."""

    @staticmethod
    def run(call, args: list, out_shape):
        op = call.op.name
        a = call.attrs
        if op == "relax.reshape":
            return np.reshape(args[0], out_shape)
        if op == "relax.expand_dims":
            return np.expand_dims(args[0], tuple(int(v) for v in a.axis))
        if op == "relax.squeeze":
            return np.reshape(args[0], out_shape)
        if op == "relax.permute_dims":
            axes = None if a.axes is None else [int(v) for v in a.axes]
            return np.transpose(args[0], axes)
        if op == "relax.take":
            idx = np.asarray(args[1]).astype(np.int64)
            axis = 0 if a.axis is None else int(a.axis)
            mode = str(a.mode)
            return np.take(args[0], idx, axis=axis, mode="wrap" if mode == "wrap" else "clip")
        if op == "relax.strided_slice":
            x = args[0]
            axes, begin, end = (_ints(call.args[i]) for i in (1, 2, 3))
            strides = _ints(call.args[4]) if len(call.args) > 4 else [1] * len(axes)
            index = [slice(None)] * x.ndim
            for ax, b, e, s in zip(axes, begin, end, strides):
                index[ax] = slice(b, e, s)
            return x[tuple(index)]
        if op == "relax.concat":
            return np.concatenate(args[0], axis=0 if a.axis is None else int(a.axis))
        if op in ("relax.add", "relax.subtract", "relax.multiply", "relax.divide", "relax.less",
                  "relax.greater"):
            f = {"relax.add": np.add, "relax.subtract": np.subtract, "relax.multiply": np.multiply,
                 "relax.divide": np.divide, "relax.less": np.less, "relax.greater": np.greater}[op]
            return f(args[0], args[1])
        if op == "relax.negative":
            return np.negative(args[0])
        if op == "relax.where":
            return np.where(args[0], args[1], args[2])
        if op == "relax.shape_to_tensor":
            return np.asarray(args[0], dtype=np.int64)
        raise KeyError(op)


def _constant(expr):
    from tvm import relax

    if isinstance(expr, (relax.Var, relax.Call, relax.Tuple, relax.ShapeExpr)) or _is_prim(expr):
        return None
    value = getattr(expr, "value", None)
    return value.numpy() if value is not None and hasattr(value, "numpy") else None


def find_regions(func) -> list[Region]:
    """The regions of a Relax function (at most one output each is collapsed later)."""
    import tvm
    from tvm import relax

    known: dict = {}      # var -> numpy value (constants and shape arithmetic)
    owner: dict = {}      # var -> Region it belongs to (the region's source for its own src)
    regions: dict = {}

    def value_of(expr):
        if isinstance(expr, relax.Var):
            return known.get(expr)
        if isinstance(expr, relax.Tuple):
            vals = [value_of(f) for f in expr.fields]
            return None if any(v is None for v in vals) else vals
        return _constant(expr)

    def region_of(expr):
        return owner.get(expr) if isinstance(expr, relax.Var) else None

    def escape(expr):
        """``expr`` is used by something outside its region."""
        exprs = expr.fields if isinstance(expr, relax.Tuple) else [expr]
        for e in exprs:
            reg = region_of(e)
            if reg is not None and e is not reg.src and e not in reg.outputs:
                reg.outputs.append(e)

    bindings = [b for block in func.body.blocks for b in block.bindings]
    for b in bindings:
        var, call = b.var, b.value
        if not isinstance(call, relax.Call) or not isinstance(call.op, tvm.ir.Op):
            for e in _operands(call):
                escape(e)
            continue
        op = call.op.name
        args = list(call.args)
        if op == "relax.shape_of" and _shape(args[0]) is not None:
            known[var] = np.asarray(_shape(args[0]), dtype=np.int64)
            continue
        vals = [value_of(a) for a in args]
        tensor_args = [a for a in args if not isinstance(a, relax.ShapeExpr) and not _is_prim(a)]
        if op in _STATIC and all(v is not None for v, a in zip(vals, args) if a in tensor_args):
            try:
                known[var] = _Interp.run(call, vals, _shape(var))
                continue
            except Exception:  # noqa: BLE001 - anything unusual is simply not static
                pass
        if op not in _LINEAR or _shape(var) is None:
            for e in args:
                escape(e)
            continue
        # the operands that are tensors depending on a source: all must share one region
        if op == "relax.concat":
            fields = list(args[0].fields) if isinstance(args[0], relax.Tuple) else [args[0]]
        elif op in ("relax.add", "relax.subtract", "relax.multiply", "relax.divide"):
            fields = args[:2]
        else:
            fields = args[:1]
        dynamic = [e for e in fields if value_of(e) is None and isinstance(e, relax.Var)]
        if not dynamic or any(value_of(e) is None and not isinstance(e, relax.Var) for e in fields):
            for e in args:
                escape(e)
            continue
        # indices must be known; only the dividend may depend on the input
        if (op == "relax.take" and value_of(args[1]) is None) or (op == "relax.divide" and
                                                                  value_of(args[0]) is not None):
            for e in args:
                escape(e)
            continue
        regs = {id(region_of(e) or e): (region_of(e), e) for e in dynamic}
        if len(regs) != 1:
            for e in args:
                escape(e)
            continue
        reg, src = next(iter(regs.values()))
        if reg is None:
            reg = regions.get(src)
            if reg is None:
                reg = regions[src] = Region(src, known=known)
                owner[src] = reg
        if op in ("relax.multiply", "relax.divide") and len(dynamic) == 2:
            for e in args:
                escape(e)
            continue
        if op in ("relax.add", "relax.subtract") and len(dynamic) == 2:
            reg.mixes += 1
        if op == "relax.multiply":
            const = value_of(args[1]) if value_of(args[1]) is not None else value_of(args[0])
            reg.muls.append((b, np.asarray(const, np.float32)))
        reg.bindings.append(b)
        reg.shapes[var] = _shape(var)
        owner[var] = reg
    # the function's result escapes too
    escape(func.body.body)
    return [r for r in regions.values() if r.mixes and r.outputs]


def _operands(expr):
    from tvm import relax

    if isinstance(expr, relax.Call):
        return list(expr.args)
    if isinstance(expr, relax.Tuple):
        return list(expr.fields)
    return [expr]


def evaluate(region: Region, start, value: np.ndarray, stop) -> np.ndarray:
    """Run the region's ops from ``start`` (given ``value``) up to the var ``stop``."""
    from tvm import relax

    env = {start: value}

    def get(expr):
        if isinstance(expr, relax.Tuple):
            return [get(f) for f in expr.fields]
        if isinstance(expr, relax.Var):
            if expr in env:
                return env[expr]
            if expr in region.known:
                return region.known[expr]
            raise KeyError(expr)
        c = _constant(expr)
        if c is None:
            return expr                       # ShapeExpr / PrimValue: read by the op itself
        return c

    for b in region.bindings:
        if b.var in env:
            continue
        try:
            args = [get(a) for a in b.value.args]
        except KeyError:
            continue                          # before ``start`` or in another branch
        env[b.var] = _Interp.run(b.value, args, region.shapes[b.var])
        if b.var.same_as(stop):
            return env[b.var]
    if stop in env:
        return env[stop]
    raise KeyError("stop not reached")


def _probe(fn, rows: int, features: int) -> tuple[np.ndarray, np.ndarray]:
    """Matrix W [out, features] and offset [rows, out] of an affine ``fn`` on [rows, features]."""
    zero = fn(np.zeros((rows, features), np.float32))
    cols = []
    for j0 in range(0, features, rows):
        x = np.zeros((rows, features), np.float32)
        count = min(rows, features - j0)
        x[np.arange(count), j0 + np.arange(count)] = 1.0
        y = fn(x) - zero
        cols.append(y[:count])
    return np.concatenate(cols).T, zero


def _geometry(src_shape, out_shape) -> tuple[int, int, int] | None:
    """(rows, features, outputs) of a region from its input and output shapes: [rows, ...] ->
    [rows, out] (the features are everything after the first axis), or [..., features] ->
    [..., out] with the same leading axes (tokens of a sequence: every leading position is a row)."""
    if src_shape is None or out_shape is None:
        return None
    if len(out_shape) == 2 and src_shape[0] == out_shape[0]:
        return src_shape[0], int(np.prod(src_shape[1:])), out_shape[1]
    if len(out_shape) == len(src_shape) >= 3 and src_shape[:-1] == out_shape[:-1]:
        return int(np.prod(src_shape[:-1])), src_shape[-1], out_shape[-1]
    return None


def recover(region: Region, out_var):
    """What replaces ``out_var``: ("fastfood", tensors) or ("dense", W [out, in], bias), or None.

    The map is measured in numpy (``_probe``, one probe per input feature) only where a dense
    matrix may replace it (up to ``MAX_DENSE_ELEMENTS``); a larger region can still be a Fastfood
    layer, checked against its reference on random inputs."""
    src_shape = _shape(region.src)
    geometry = _geometry(src_shape, _shape(out_var))
    if geometry is None:
        return None
    rows, features, out = geometry

    def f(x2d):
        return evaluate(region, region.src, x2d.reshape(src_shape), out_var).reshape(rows, out)

    rng = np.random.default_rng(0)
    check = rng.standard_normal((rows, features)).astype(np.float32)
    if features * out > MAX_DENSE_ELEMENTS:
        try:
            zero, want = f(np.zeros((rows, features), np.float32)), f(check)
        except Exception:  # noqa: BLE001 - an op the interpreter does not know: leave the region alone
            return None
        bias = zero[0]
        if not np.allclose(zero, bias, rtol=RTOL, atol=RTOL):
            return None
        fastfood = _fastfood(region, rows, features, out, None if not np.any(bias) else bias.astype(np.float32),
                             check, want)
        return None if fastfood is None else ("fastfood", fastfood)
    try:
        w, zero = _probe(f, rows, features)
    except Exception:  # noqa: BLE001 - an op the interpreter does not know: leave the region alone
        return None
    bias = zero[0]
    want = f(check)
    if not np.allclose(zero, bias, rtol=RTOL, atol=RTOL) or not _close(check @ w.T + bias, want):
        return None                          # not affine row by row
    bias = None if not np.any(bias) else bias.astype(np.float32)
    fastfood = _fastfood(region, rows, features, out, bias, check, want)
    if fastfood is not None:
        return ("fastfood", fastfood)
    return ("dense", w.astype(np.float32), bias)


def _close(got, want) -> bool:
    scale = max(float(np.abs(want).max()), 1e-30)
    return float(np.abs(got - want).max()) <= RTOL * scale


def _fastfood(region: Region, rows, features, out, bias, check, want):
    """The Fastfood factors of a region with exactly three constant multiplies, else None."""
    from tvmopt.model.opset import reference

    if len(region.muls) != 3:
        return None
    (b_bind, b_const), (g_bind, g_const), (s_bind, s_const) = region.muls
    shapes = {c.size for _, c in region.muls}
    g_shape = _shape(g_bind.var)
    if len(shapes) != 1 or g_shape is None:
        return None
    n = g_shape[-1]
    size = next(iter(shapes))
    if n & (n - 1) or size % n:
        return None
    blocks = size // n
    diag = [np.broadcast_to(c, c.shape).reshape(blocks, n).astype(np.float32) for c in (b_const, g_const, s_const)]
    # Pi H: the ops between the first two multiplies, probed on the first multiply's output
    g_in = g_bind.value.args[0] if _constant(g_bind.value.args[0]) is None else g_bind.value.args[1]
    b_shape = _shape(b_bind.var)
    if b_shape is None or int(np.prod(b_shape)) != rows * blocks * n:
        return None

    def segment(x2d):
        return evaluate(region, b_bind.var, x2d.reshape(b_shape), g_in).reshape(rows, blocks * n)

    try:
        m1, _ = _probe(segment, rows, blocks * n)
    except Exception:  # noqa: BLE001
        return None
    from scipy.linalg import hadamard

    h = hadamard(n).astype(np.float64)
    p = m1 @ np.kron(np.eye(blocks), h) / n
    perm_flat = p.argmax(axis=1)
    if not np.allclose(p, np.eye(blocks * n)[perm_flat], atol=1e-3):
        return None
    if np.any(perm_flat // n != np.arange(blocks * n) // n):
        return None                          # a permutation across blocks: not our kernel's
    perm = (perm_flat - np.repeat(np.arange(blocks) * n, n)).reshape(blocks, n).astype(np.int32)
    tensors = {"diag_b": diag[0], "diag_g": diag[1], "diag_s": diag[2], "perm": perm, "bias": bias}
    got = reference("Fastfood", check, tensors, {"out_features": out, "in_features": features})
    return tensors if _close(got, want) else None


def collapse(mod):
    """Rewrite every linear region of every Relax function in ``mod`` (see the module doc)."""
    from tvm import relax

    from tvmopt.model.frontend import placeholder

    plans = {}
    for _, func in mod.functions_items():
        if not isinstance(func, relax.Function):
            continue
        for region in find_regions(func):
            if len(region.outputs) != 1:
                continue
            out_var = region.outputs[0]
            plan = recover(region, out_var)
            if plan is not None:
                plans[out_var] = (region, plan)
    if not plans:
        return mod

    @relax.expr_functor.mutator
    class Collapse(relax.PyExprMutator):
        def visit_var_binding_(self, binding):
            if binding.var not in plans:
                return super().visit_var_binding_(binding)
            region, plan = plans[binding.var]
            src = self.visit_expr(region.src)
            shape, out_shape = _shape(region.src), _shape(binding.var)
            rows, features, out = _geometry(shape, out_shape)
            x = src if len(shape) == 2 else self.builder_.emit(relax.op.reshape(src, (rows, features)))
            if plan[0] == "fastfood":
                tensors = {k: (None if v is None else relax.const(v)) for k, v in plan[1].items()}
                expr = placeholder("Fastfood", x, tensors, {"in_features": features, "out_features": out}, (rows, out))
            else:
                _, w, bias = plan
                expr = relax.op.matmul(x, relax.const(np.ascontiguousarray(w.T)))
                if bias is not None:
                    expr = relax.op.add(self.builder_.emit(expr), relax.const(bias))
            if len(out_shape) != 2:
                expr = relax.op.reshape(self.builder_.emit(expr), out_shape)
            emit = self.builder_.emit if isinstance(binding.var, relax.DataflowVar) else self.builder_.emit_output
            new = emit(expr)
            self.set_var_remap(binding.var, new)

    return rewrite(Collapse, mod)


__all__ = ["collapse", "find_regions", "recover", "Region"]
