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

    def _const(self, expr):
        """numpy value of a constant (through variable bindings), else None."""
        from tvm import relax

        expr = self._resolve(expr)
        if isinstance(expr, (relax.Var, relax.Call)):
            return None
        value = getattr(expr, "value", None)       # a relax constant's tensor
        return value.numpy() if value is not None and hasattr(value, "numpy") else None


def rewrite(mutator_class, mod):
    """``mod`` with each of its Relax functions rewritten by one ``mutator_class(mod)`` (a
    ``relax.PyExprMutator``), dead code eliminated: how every pass here applies its mutator."""
    from tvm import relax

    mutator = mutator_class(mod)
    for gv, func in mod.functions_items():
        if isinstance(func, relax.Function):
            mutator.builder_.update_func(gv, mutator.visit_expr(func))
    return relax.transform.DeadCodeElimination()(mutator.builder_.finalize())
