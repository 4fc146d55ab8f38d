"""GEMM on this CPU: a hand-picked config of the space and random search's best after a
budget, each timed against numpy (OpenBLAS) and torch in the same run.

    python benchmarks/gemm_llvm.py [--workload gemm:1024x1024x1024] [--trials 200]

Writes benchmarks/results/gemm_llvm_<cpu>.json (one per CPU kind: ``report.cpu_kind``), the search log under logs/, and its section of
BENCHMARKS.md. Ratios > 1 mean tvmopt is faster.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from report import ROOT, machine, per_cpu, update_section, write_json

from tvmopt.measure.local import LocalMeasurer
from tvmopt.target import parse_target
from tvmopt.ops.task import get_task
from tvmopt.tune.loop import tune_task

# Goto-style: 2 parallel row halves, 8-row x 32-column register tile (16 zmm accumulators on
# AVX-512, 32 ymm would spill on AVX2: see BENCHMARKS.md), B packed in 32-wide panels.
HAND_PICKED = {
    "gemm:1024x1024x1024": ((2, 64, 1, 8), (1, 32, 1, 32), (1, 1024), True, "local", 0, True, 1),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", default="gemm:1024x1024x1024", choices=sorted(HAND_PICKED))
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds per comparison")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    target = parse_target("llvm")
    task = get_task(args.workload)
    hand = HAND_PICKED[args.workload]
    records = Path(tempfile.mkdtemp(prefix="tvmopt-bench-"))
    rows = []
    with LocalMeasurer(target, run_timeout=30) as measurer:
        start = time.time()
        result = tune_task(task.key, target, "random", args.trials, records, seed=args.seed, measurer=measurer)
        search_s = time.time() - start
        for label, config in (("hand-picked config", hand), (f"random search, best of {args.trials}", result.best_config)):
            t = measurer.compare_with_references(task.key, config, rounds=args.rounds)
            rows.append({"label": label, "config": task.space.as_dict(config), "seconds": t,
                         "gflops": task.flops / t["tvm"] / 1e9,
                         "vs_numpy": t["numpy"] / t["tvm"], "vs_torch": t["torch"] / t["tvm"]})
            print(f"{label}: {rows[-1]['gflops']:.1f} GFLOPS, {rows[-1]['vs_numpy']:.2f}x numpy, "
                  f"{rows[-1]['vs_torch']:.2f}x torch")
    log = ROOT / "logs" / "search" / f"gemm_llvm_random_{task.key.replace(':', '_')}_{target.key}.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(records / f"{target.key}.jsonl", log)
    shutil.rmtree(records, ignore_errors=True)

    info = machine()
    name = per_cpu("gemm_llvm", target)
    write_json(name, {"workload": task.key, "target": target.key, "machine": info, "trials": args.trials,
                             "search_wall_s": search_s, "failed_trials": result.failed, "rows": rows})
    lines = [
        f"## GEMM on LLVM, {target.key} (`{task.key}`, fp32)",
        "",
        f"`python benchmarks/gemm_llvm.py --trials {args.trials}` on {info['cpu']} ({target.key}), {info['date']}, "
        f"commit {info['commit']}. Medians of {args.rounds} interleaved rounds; ratio > 1 means tvmopt is faster. "
        f"Random search took {search_s / 60:.1f} min for {args.trials} trials ({result.failed} failed candidates); "
        f"log: `{log.relative_to(ROOT)}`.",
        "",
        "| schedule | GFLOPS | vs numpy (OpenBLAS) | vs torch |",
        "| --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(f"| {r['label']} | {r['gflops']:.1f} | {r['vs_numpy']:.2f}x | {r['vs_torch']:.2f}x |")
    lines.append("")
    lines.append("Configs: " + "; ".join(f"{r['label']}: `{r['config']}`" for r in rows))
    update_section(name, "\n".join(lines))


if __name__ == "__main__":
    main()
