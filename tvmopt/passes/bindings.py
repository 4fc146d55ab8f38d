"""What the pass's Relax mutators share: looking through variable bindings."""

from __future__ import annotations


class Bindings:
    """Mixed into a ``relax.PyExprMutator``: constants and bound expressions behind variables."""

    def _resolve(self, expr):
        """What a variable is bound to, through chains of bindings (the variable if unbound)."""
        from tvm import relax

        while isinstance(expr, relax.Var):
            bound = self.lookup_binding(expr)
            if bound is None:
                return expr
            expr = bound
        return expr

    def _call(self, expr, name: str):
        """The call ``expr`` resolves to (through bindings) when it is ``relax.<name>``, else None."""
        from tvm import relax

        call = self._resolve(expr)
        return call if isinstance(call, relax.Call) and getattr(call.op, "name", "") == f"relax.{name}" else None

    def _const(self, expr):
        """numpy value of a constant (through variable bindings), else None."""
        from tvm import relax

        expr = self._resolve(expr)
        if isinstance(expr, (relax.Var, relax.Call)):
            return None
        value = getattr(expr, "value", None)       # a relax constant's tensor
        return value.numpy() if value is not None and hasattr(value, "numpy") else None

    def _binarized_source(self, expr):
        """``x`` where ``expr`` is ``where(x >= 0, 1, -1)`` (tvmopt.nn's plain export of a
        binarized activation: the XNOR kernels binarize ``x`` themselves), else None."""
        import numpy as np
        from tvm import relax

        call = self._resolve(expr)
        if not (isinstance(call, relax.Call) and getattr(call.op, "name", "") == "relax.where"):
            return None
        hi, lo = self._const(call.args[1]), self._const(call.args[2])
        cond = self._resolve(call.args[0])
        if (hi is not None and lo is not None and np.all(hi == 1) and np.all(lo == -1)
                and isinstance(cond, relax.Call) and getattr(cond.op, "name", "") == "relax.greater_equal"
                and np.all(self._const(cond.args[1]) == 0)):
            return cond.args[0]
        return None


def tensor_shape(expr) -> tuple[int, ...] | None:
    """The static shape of a tensor expression (from its type), else None."""
    from tvm import relax

    info = getattr(expr, "ty", None)
    if not isinstance(info, relax.TensorType) or info.shape is None:
        return None
    try:
        return tuple(int(d) for d in info.shape)
    except (TypeError, AttributeError):
        return None


def rewrite(mutator_class, mod):
    """``mod`` with each of its Relax functions rewritten by one ``mutator_class(mod)`` (a
    ``relax.PyExprMutator``), dead code eliminated: how every pass here applies its mutator."""
    from tvm import relax

    mutator = mutator_class(mod)
    for gv, func in mod.functions_items():
        if isinstance(func, relax.Function):
            mutator.builder_.update_func(gv, mutator.visit_expr(func))
    return relax.transform.DeadCodeElimination()(mutator.builder_.finalize())
