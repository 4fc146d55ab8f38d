"""Direct convolution or im2col + GEMM for dense fp32 convolutions? Measured on whole networks.

    python benchmarks/conv_choice.py [--networks resnet50,squeezenet] [--rounds 5]

Each network is compiled twice with default schedules only (no records): dense convolutions
as the direct conv2d kernel, and as an im2col stage + the dense GEMM kernel (the path the
compressed convolutions keep). Both are timed interleaved against onnxruntime in the same
rounds. Writes benchmarks/results/conv_choice.json and BENCHMARKS.md's "conv_choice" section.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from networks import WORK  # noqa: E402
from report import machine, median_seconds, update_section, write_json, wait_quiet  # noqa: E402


def main() -> None:
    import onnxruntime as ort

    from tvmopt.testing import zoo
    from tvmopt.build.compile import compile_model
    from tvmopt.passes import DetectOptions

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--networks", default="resnet50,squeezenet")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.networks.split(","):
        path = zoo.realize(name, WORK / f"{name}.onnx")
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        x = np.random.default_rng(1).standard_normal(inp.shape).astype(np.float32)
        builds = {}
        for label, direct in (("direct", True), ("im2col", False)):
            start = time.perf_counter()
            builds[label] = compile_model(path, "llvm", records=WORK / "no-records", shipped=False,
                                          options=DetectOptions(direct_conv=direct))
            builds[label + "_compile_s"] = time.perf_counter() - start
        fns = {"onnxruntime": lambda: sess.run(None, {inp.name: x}),
               "direct": lambda: builds["direct"](x), "im2col": lambda: builds["im2col"](x)}
        samples = {k: [] for k in fns}
        for _ in range(args.rounds):
            for k, fn in fns.items():
                wait_quiet()
                samples[k].append(median_seconds(fn, 0.3))
        row = {"network": name, **{f"{k}_ms": statistics.median(v) * 1e3 for k, v in samples.items()},
               **{f"{k}_vs_onnxruntime": statistics.median(o / t for o, t in zip(samples["onnxruntime"], samples[k]))
                  for k in ("direct", "im2col")},
               "direct_vs_im2col": statistics.median(i / d for i, d in zip(samples["im2col"], samples["direct"])),
               "direct_compile_s": builds["direct_compile_s"], "im2col_compile_s": builds["im2col_compile_s"]}
        print(row, flush=True)
        rows.append(row)
    meta = {"machine": machine(), "rounds": args.rounds}
    write_json("conv_choice", {**meta, "rows": rows})
    lines = ["## conv2d: direct vs im2col (issue 11)", "",
             f"`benchmarks/conv_choice.py`, {meta['machine']['cpu']}, {meta['machine']['date']}, commit "
             f"{meta['machine']['commit']}. Whole networks, batch 1, default schedules only; medians of "
             f"{args.rounds} interleaved rounds. Ratios: onnxruntime's time over ours; the last column is the "
             f"im2col build's time over the direct one's.", "",
             "| network | direct vs onnxruntime | im2col + GEMM vs onnxruntime | direct speed-up over im2col |",
             "|---|---:|---:|---:|"]
    lines += [f"| {r['network']} | {r['direct_vs_onnxruntime']:.2f}x | {r['im2col_vs_onnxruntime']:.2f}x | "
              f"{r['direct_vs_im2col']:.2f}x |" for r in rows]
    update_section("conv_choice", "\n".join(lines))


if __name__ == "__main__":
    main()
