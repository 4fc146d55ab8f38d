"""Row tables in whole networks: each suite model built twice in one process, with the pass's
row-table kernels and with them switched off (binary convolutions then run the direct
``binary_conv2d``, binary and ternary dense layers their decode kernels), timed in interleaved
rounds.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/row_tables.py
    python benchmarks/row_tables.py --rows resnet18:binary:1,encoder:ternary:1 --rounds 5

(unset both variables together, and only here: they hold numpy to an old kernel.) A per-layer
win is checked where it counts, in the network. Untuned builds (no records), the suite's plain ONNX exports (``benchmarks/suite.py``). Writes
benchmarks/results/row_tables_<width>.json and BENCHMARKS.md's ``row_tables_<width>`` section.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, medians, paired, timed_rounds, update_section, cpu_kind, write_json  # noqa: E402
from suite import WORK, build_model, compressed, export  # noqa: E402

ROWS = ("resnet18:binary:1", "resnet18:binary:16", "vgg:binary:1", "vgg:binary:16", "encoder:binary:1",
        "encoder:ternary:1", "mlp4096:binary:16")


def measure(model_name: str, variant: str, batch: int, target, rounds: int) -> dict:
    import tvmopt.passes  # noqa: F401  - loads the pass module, whose table is switched below
    from tvmopt.build.compile import compile_model
    from tvmopt.ops import row_table_conv2d

    pass_module = sys.modules["tvmopt.passes.lower"]
    tables = (pass_module.ROW_TABLES_OF, row_table_conv2d.ROW_TABLES_OF)
    saved = [dict(t) for t in tables]
    base = build_model(model_name)
    shape = tuple(base.input_shape)
    path = export(compressed(model_name, base, variant), shape, WORK / f"{model_name}_{variant}.onnx")
    x = np.random.default_rng(1).standard_normal((batch,) + shape).astype(np.float32)
    empty = WORK / "no-records"
    try:
        on = compile_model(path, target, records=empty, shipped=False, batch=batch)
        for t in tables:
            t.clear()
        off = compile_model(path, target, records=empty, shipped=False, batch=batch)
    finally:
        for t, s in zip(tables, saved):
            t.clear()
            t.update(s)
    np.testing.assert_allclose(on(x), off(x), rtol=1e-4, atol=1e-4 * float(np.abs(off(x)).max()))
    samples = timed_rounds({"on": lambda: on(x), "off": lambda: off(x)}, rounds, 0.3)
    med = medians(samples)
    kernels = sorted({layer.kernel.split(":")[0] for layer in on.lowered.layers if "rowlut" in layer.kernel})
    count = sum("rowlut" in layer.kernel for layer in on.lowered.layers)
    row = {"model": model_name, "variant": variant, "batch": batch, "tables_ms": med["on"] * 1e3,
           "without_ms": med["off"] * 1e3, "speedup": paired(samples, "off", "on"), "kernels": kernels,
           "layers": count}
    print(f"{model_name:9s} {variant:8s} b{batch:<3d} {count} layer(s) on tables: {row['speedup']:.2f}x "
          f"({row['without_ms']:.2f} -> {row['tables_ms']:.2f} ms)", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default=",".join(ROWS), help="model:variant:batch, comma-separated")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    from tvmopt.target import parse_target

    target = parse_target("llvm")
    rows = []
    for spec in args.rows.split(","):
        model_name, variant, batch = spec.split(":")
        rows.append(measure(model_name, variant, int(batch), target, args.rounds))
    meta = {**machine(), "target": target.key}
    name = f"row_tables_{cpu_kind(target)}"
    write_json(name, {"meta": meta, "rows": rows})
    lines = ["## Row tables in whole networks (`benchmarks/row_tables.py`)", "",
             f"Measured on {meta['cpu']} ({meta['target']}), 2 cores, commit {meta['commit']}, {meta['date']}. "
             "Each model built twice in one process, untuned: with the pass's row-table kernels and with them "
             "switched off (binary convolutions on the direct `binary_conv2d`, dense layers on their decode "
             "kernels); medians of interleaved rounds; outputs of the two builds agree to 1e-4. "
             "*Speed-up*: time without / time with (> 1: the tables help).", "",
             "| model | variant | batch | layers on tables | without ms | with ms | speed-up |",
             "|---|---|---:|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['variant']} | {r['batch']} | {r['layers']} ({', '.join(r['kernels'])}) | "
                     f"{r['without_ms']:.2f} | {r['tables_ms']:.2f} | {r['speedup']:.2f}x |")
    update_section(name, "\n".join(lines))


if __name__ == "__main__":
    main()
