"""Whole-model CUDA builds (issue 21): compressed layers on their CUDA kernels, every other
function scheduled by TVM's DLight GPU rules, compiled for the target's architecture. Compiles
on a machine without a GPU; the module runs where one is.

The pass lowers with ``target_kind="cuda"`` (:func:`tvmopt.passes.lower.lower`): a layer whose
weight format has a CUDA kernel (:func:`tvmopt.ops.task.cuda_family`) runs it where
:mod:`tvmopt.passes.choose_cuda` picks it, scheduled by the task's CUDA space with the best
CUDA record's config or the space's start, and marked scheduled; CPU-only variants (byte
tables, row tables, register tables) run the GPU kernel of the same weights. Every other layer
runs its decoded fp32 weight, and the remaining functions (dense products and convolutions with
their fused epilogues, the compressed kernels' scale and bias, im2col, poolings) get the first
DLight rule that schedules them (``RULES``, most specific first); a rule that raises is passed
over, so one rule's bug costs only its own speed, never the build.
"""

from __future__ import annotations

#: DLight's GPU rules in the order tried: the names are kept in the build's report
RULE_NAMES = ("Matmul", "GEMV", "Reduction", "GeneralReduction", "Fallback")
#: what the report says of a function the pass scheduled itself (a compressed kernel)
TVMOPT_SPACE = "tvmopt-space"


def build_notes(lowered) -> list[str]:
    """The notes a CUDA build keeps in ``Compiled.notes`` and the module's ``.json``."""
    compressed = [l for l in lowered.layers if l.choice.startswith("compressed")]
    notes = [f"{len(compressed)} of {len(lowered.layers)} layer(s) on compressed CUDA kernels; the others on "
             f"decoded fp32 weights under DLight's GPU schedules"]
    if any("unmeasured" in l.choice for l in lowered.layers):
        notes.append("kernel choices without CUDA records are predicted from arithmetic and bytes, unmeasured on "
                     "a GPU (tvmopt tune --target cuda records decide instead)")
    return notes


def schedule_gpu(mod, target, rules=None, kernels=None) -> tuple[object, dict[str, str]]:
    """Schedule every unscheduled PrimFunc of ``mod`` for the GPU ``target`` (a tvm Target)
    with the first of ``rules`` ((name, DLight rule) pairs; default ``RULE_NAMES``) that does.
    Returns the module and, per function, the name of that rule (``TVMOPT_SPACE`` for one the
    pass scheduled itself). A function no rule schedules
    is a TargetError naming it."""
    import tvm
    from tvm.s_tir import dlight as dl

    from tvmopt.errors import TargetError

    rules = rules if rules is not None else [(name, getattr(dl.gpu, name)()) for name in RULE_NAMES]
    used: dict[str, str] = {}
    for gv, func in list(mod.functions_items()):
        if not isinstance(func, tvm.tirx.PrimFunc):
            continue
        if func.attrs is not None and func.attrs.get("tirx.is_scheduled", False):
            used[gv.name_hint] = TVMOPT_SPACE
            continue
        fused = _schedule_kernel(func, kernels or {})
        if fused is not None:
            mod[gv] = fused
            used[gv.name_hint] = TVMOPT_SPACE
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


def _schedule_kernel(func, kernels: dict):
    """``func`` scheduled by the CUDA space of the compressed kernel it holds (the pass's
    ``Lowered.cuda_kernels``), with the elementwise blocks Relax fused after the product folded
    into its write-back, and those that could not be one thread per element; None when it
    holds none."""
    import tvm

    from tvmopt.passes.fuse_schedule import _narrow_indices
    from tvmopt.passes.lower import CUDA_KERNEL_ANNOTATION
    from tvmopt.schedules.gemm import PROLOGUE_THREADS, bind_flat

    sch = tvm.s_tir.Schedule(tvm.IRModule({"main": func}))
    blocks = sch.get_child_blocks(sch.get_sblock("root"))
    names = [sch.get(b).name_hint for b in blocks]
    at = next((i for i, b in enumerate(blocks) if CUDA_KERNEL_ANNOTATION in sch.get(b).annotations), None)
    if at is None:
        return None
    view, config = kernels[str(sch.get(blocks[at]).annotations[CUDA_KERNEL_ANNOTATION])]
    for leftover in view.apply_fused(sch, config, names[at + 1:]):
        bind_flat(sch, leftover, PROLOGUE_THREADS)
    return _narrow_indices(sch.mod["main"]).with_attr("tirx.is_scheduled", True)


def relax_pipeline(target):
    """The CUDA Relax pipeline minus legalization, fusion and DLight, which the build already did."""
    from tvm.relax.backend.cuda import pipeline as cuda

    from tvmopt.build.compile import scheduled_pipeline

    return scheduled_pipeline(cuda, target)
