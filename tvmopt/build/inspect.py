"""`tvmopt inspect`: what the pass finds in a model, as a table."""

from __future__ import annotations

from tvmopt.build.compile import load_and_lower, lower_for_gpu, plan_kernels, schedule_for_gpu
from tvmopt.passes import DetectOptions, LayerReport


def inspect_model(source, batch: int | None = None, options: DetectOptions | None = None, records=None,
                  target: str = "llvm", shapes: dict | None = None) -> list[LayerReport]:
    """Import and lower ``source`` (nothing is compiled) and return one row per weighted layer;
    each layer's kernel is chosen as ``build`` would choose it for ``target`` and ``records``."""
    return inspect_lowered(source, batch, options, records, target, shapes).layers


def inspect_lowered(source, batch: int | None = None, options: DetectOptions | None = None, records=None,
                    target: str = "llvm", shapes: dict | None = None):
    """:func:`inspect_model`'s lowering whole (:class:`tvmopt.passes.lower.Lowered`): its layers,
    and the tasks without a weight (``products``: attention's products of two activations)."""
    from tvmopt.schedules import isa
    from tvmopt.target import parse_target

    spec = parse_target(target)
    if spec.kind == "cuda":
        return lower_for_gpu(source, spec, batch, options, records, shapes=shapes)[1]
    # the kernels the target's instruction set offers (AVX2 code has no register tables), as build
    with isa.use(isa.for_target(spec)), plan_kernels(spec, records, options) as (lookup, _, costs):
        return load_and_lower(source, batch, configs=lookup, options=options, costs=costs, shapes=shapes)[1]


def format_products(products: dict[str, int]) -> str:
    """The line ``inspect`` prints under its table for the products of two activations."""
    if not products:
        return ""
    count = sum(products.values())
    return (f"{count} product(s) of two activations (attention), tunable tasks like the layers': "
            + ", ".join(f"{key} x{n}" for key, n in sorted(products.items())))


def inspect_gpu(source, target: str, batch: int | None = None, options: DetectOptions | None = None,
                records=None, shapes: dict | None = None) -> tuple[list[LayerReport], dict[str, str]]:
    """A CUDA build of ``source`` up to scheduling (nothing is compiled): its layers, and the
    functions it would compile, each with what schedules it (a DLight rule, or the pass's own
    CUDA space for a compressed kernel)."""
    from pathlib import Path

    from tvmopt.target import parse_target

    spec = parse_target(target)
    imported, lowered, _ = lower_for_gpu(source, spec, batch, options, records, shapes=shapes)
    return lowered.layers, schedule_for_gpu(lowered, spec, Path(imported.source).name)[1]


def _size(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n >= 1024 else f"{n} B"


def format_layers(layers: list[LayerReport]) -> str:
    head = ("#", "layer", "shape (M x N x K)", "structure found", "lowered to", "weights", "stored", "ratio",
            "kernel chosen")
    rows = [(str(l.index), l.source, l.shape, l.structure, l.kernel, _size(l.dense_bytes), _size(l.compact_bytes),
             f"{l.dense_bytes / max(1, l.compact_bytes):.1f}x", l.choice) for l in layers]
    dense = sum(l.dense_bytes for l in layers)
    stored = sum(l.compact_bytes for l in layers)
    rows.append(("", "total", "", "", "", _size(dense), _size(stored), f"{dense / max(1, stored):.1f}x", ""))
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(head), line(tuple("-" * w for w in widths))] + [line(r) for r in rows])
