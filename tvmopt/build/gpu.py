"""Whole-model CUDA builds (issue 21, first step): the pass's lowering with every layer on its
decoded dense weight, every function scheduled by TVM's DLight GPU rules, compiled for the
target's architecture. Compiles on a machine without a GPU; the module runs where one is.

Why dense: the compressed kernels' CUDA spaces (``tvmopt tune --target cuda``, the
``remote_cuda`` batches) build each task from its own compute and weight layout, while the
pass lowers a layer with the CPU task's (panels, register tables, code words for ``vpermps``).
DLight's rules on the CPU-shaped compressed computes compiled some bundled models and failed
on others (an assertion in the GEMV rule on hashed weights, a negative unsigned constant on
shift convolutions, an inlining of Fastfood's butterflies that did not finish), so until the
pass lowers layers with their CUDA views, a CUDA build stores and runs decoded fp32 weights,
and says so (``Compiled.notes``, the module's ``.json``).

Each function gets the first DLight rule that schedules it (``RULES``, most specific first); a
rule that raises is passed over, so one rule's bug costs only its own speed, never the build.
"""

from __future__ import annotations

#: DLight's GPU rules in the order tried: the names are kept in the build's report
RULE_NAMES = ("Matmul", "GEMV", "Reduction", "GeneralReduction", "Fallback")

DENSE_NOTE = ("CUDA builds run every layer on its decoded fp32 weight (DLight's default GPU schedules); "
              "compressed CUDA kernels are tuned per task so far (tvmopt tune --target cuda)")


def schedule_gpu(mod, target, rules=None) -> tuple[object, dict[str, str]]:
    """Schedule every unscheduled PrimFunc of ``mod`` for the GPU ``target`` (a tvm Target)
    with the first of ``rules`` ((name, DLight rule) pairs; default ``RULE_NAMES``) that does.
    Returns the module and, per function, the name of that rule. A function no rule schedules
    is a TargetError naming it."""
    import tvm
    from tvm.s_tir import dlight as dl

    from tvmopt.errors import TargetError

    rules = rules if rules is not None else [(name, getattr(dl.gpu, name)()) for name in RULE_NAMES]
    used: dict[str, str] = {}
    for gv, func in list(mod.functions_items()):
        if not isinstance(func, tvm.tirx.PrimFunc) or func.attrs is not None and \
                func.attrs.get("tirx.is_scheduled", False):
            continue
        scheduled, failures = None, []
        for name, rule in rules:
            try:
                with target:
                    scheduled = rule.apply(func, target, False)
            except Exception as e:  # noqa: BLE001 - a DLight rule's bug: the next rule schedules it
                failures.append(f"{name}: {type(e).__name__}")
                scheduled = None
            if isinstance(scheduled, list):
                scheduled = scheduled[0] if scheduled else None
            if scheduled is not None:
                used[gv.name_hint] = name
                break
        if scheduled is None:
            raise TargetError(f"target {target.kind.name}: no GPU schedule for function '{gv.name_hint}' "
                              f"({'; '.join(failures) or 'no rule applies'})")
        mod[gv] = scheduled.mod["main"].with_attr("tirx.is_scheduled", True)
    return mod, used


def relax_pipeline(target):
    """The CUDA Relax pipeline minus legalization, fusion and DLight, which the build already did."""
    from tvm.relax.backend.cuda import pipeline as cuda

    from tvmopt.build.compile import scheduled_pipeline

    return scheduled_pipeline(cuda, target)
