"""The graph's layout: the same network built NCHW and channels last (NHWC), untuned, against
onnxruntime in the same run, batch 1.

    python benchmarks/layout.py                              # the nine zoo networks
    python benchmarks/layout.py --networks resnet50,squeezenet --rounds 9

Both builds use default schedules only (no user or shipped records), so the figure is the
layout's, not a tuning's. ``auto`` is what ``tvmopt build`` picks (``--layout auto``): NHWC
where every convolution has a channels-last kernel (ShuffleNet's depthwise convolutions keep it
NCHW). Rounds are interleaved (onnxruntime, NCHW, NHWC), each the median of several calls;
ratios are medians over rounds of onnxruntime's time over each build's (> 1: faster than
onnxruntime), and ``nhwc/nchw`` the median per-round speed-up of NHWC over NCHW with its range.
Writes benchmarks/results/layout.json and BENCHMARKS.md's "layout" section.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import ROOT, machine, median_seconds, update_section, write_json, wait_quiet  # noqa: E402

WORK = ROOT / ".bench" / "networks"


def evaluate(name: str, rounds: int) -> dict:
    import onnxruntime as ort

    from tvmopt.build.compile import compile_model
    from tvmopt.passes.structure import DetectOptions
    from tvmopt.testing import zoo

    path = zoo.realize(name, WORK / f"{name}.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    x = np.random.default_rng(1).standard_normal(inp.shape).astype(np.float32)
    expected = sess.run(None, {inp.name: x})[0]
    builds = {layout: compile_model(path, "llvm", records=WORK / "no-records", shipped=False,
                                    options=DetectOptions(layout=layout)) for layout in ("nchw", "nhwc", "auto")}
    auto = "nhwc" if any("_nhwc:" in la.kernel for la in builds["auto"].lowered.layers) else "nchw"
    fns = {"onnxruntime": lambda: sess.run(None, {inp.name: x}),
           "nchw": lambda: builds["nchw"](x), "nhwc": lambda: builds["nhwc"](x)}
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            wait_quiet()          # the previous runtime's spinning threads go to sleep
            samples[k].append(median_seconds(fn, 0.3))
    speedup = [a / b for a, b in zip(samples["nchw"], samples["nhwc"])]
    row = {"network": name, "auto": auto, "onnxruntime_ms": statistics.median(samples["onnxruntime"]) * 1e3,
           "nhwc_over_nchw": statistics.median(speedup), "nhwc_over_nchw_range": [min(speedup), max(speedup)],
           "max_rel_err": max(float(np.abs(b(x) - expected).max() / np.abs(expected).max()) for b in builds.values())}
    for k in ("nchw", "nhwc"):
        row[f"{k}_vs_onnxruntime"] = statistics.median(o / t for o, t in zip(samples["onnxruntime"], samples[k]))
    return row


def table(rows: list[dict], meta: dict) -> str:
    lines = [
        "## Graph layout: NCHW against channels last (issue 19, `benchmarks/layout.py`)", "",
        f"Machine: {meta['machine']['cpu']} ({meta['cores']} cores), {meta['machine']['date']}, "
        f"commit {meta['machine']['commit']}. Untuned builds (default schedules, no records), batch 1, "
        f"{meta['rounds']} interleaved rounds. Columns: onnxruntime's time over each build's (> 1: faster than "
        "onnxruntime); NHWC over NCHW: the median per-round speed-up and its range; auto: the layout "
        "`tvmopt build` picks.", "",
        "| network | onnxruntime ms | NCHW | NHWC | NHWC over NCHW | range | auto | max rel err |",
        "|---|---:|---:|---:|---:|---|---|---:|"]
    for r in rows:
        lo, hi = r["nhwc_over_nchw_range"]
        lines.append(f"| {r['network']} | {r['onnxruntime_ms']:.1f} | {r['nchw_vs_onnxruntime']:.2f}x | "
                     f"{r['nhwc_vs_onnxruntime']:.2f}x | {r['nhwc_over_nchw']:.2f}x | {lo:.2f}-{hi:.2f} | {r['auto']} | "
                     f"{r['max_rel_err']:.1e} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    from tvmopt.testing import zoo

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--networks", default=",".join(zoo.NETWORKS), help="comma-separated (default: all)")
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.networks.split(","):
        row = evaluate(name, args.rounds)
        print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
        rows.append(row)
    meta = {"machine": machine(), "rounds": args.rounds, "cores": os.cpu_count()}
    write_json("layout", {**meta, "rows": rows})
    update_section("layout", table(rows, meta))


if __name__ == "__main__":
    main()
