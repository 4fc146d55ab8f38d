"""GEMM on this CPU: the space's heuristic start (what an untuned build runs), a hand-picked
config where there is one, and a tuner's best after a budget, each timed against numpy
(OpenBLAS) and torch in the same run.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/gemm_llvm.py \
        [--workload gemm:1024x1024x1024] [--trials 200] [--tuner random] [--table]

(unset both variables together, and only here: they hold numpy to an old kernel.)
``gemm:128x3072x768`` is BERT-base's feed-forward product (128 tokens, 768 -> 3072); as
``dense:128x3072x768`` (dense keys are M x N x K too) it is tuned the way ``tvmopt tune`` tunes a model's layer. Writes
benchmarks/results/gemm_llvm_<cpu>[_<shape>].json (one per CPU kind: ``report.cpu_kind``; the
shape suffix for any workload but 1024^3), the search log under logs/, and its section of
BENCHMARKS.md. Ratios > 1 mean tvmopt is faster. ``--table`` adds the fastest config of this
CPU's replay table of the workload (``logs/replay/``, measured exhaustively by
``make_replay_table.py``): what the space holds, whatever a tuner finds; ``--trials 0`` skips the search.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from report import CPU_LABELS, ROOT, blas, cpu_kind, machine, per_cpu, update_section, write_json

from tvmopt.measure.local import LocalMeasurer
from tvmopt.target import parse_target
from tvmopt.ops.task import get_task
from tvmopt.schedules import isa
from tvmopt.tune.loop import tune_task

# Goto-style: 2 parallel row halves, 8-row x 32-column register tile (16 zmm accumulators on
# AVX-512, 32 ymm would spill on AVX2: see BENCHMARKS.md), B packed in 32-wide panels.
HAND_PICKED = {
    "gemm:1024x1024x1024": ((2, 64, 1, 8), (1, 32, 1, 32), (1, 1024), True, "local", 0, True, 1),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", default="gemm:1024x1024x1024",
                        help="a gemm:MxNxK task key (the tuner starts from the untiled config), or dense:MxNxK "
                             "(what a model's layer tunes: from the heuristic start, weights in panels)")
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--tuner", default="random", help="the tuner whose best is timed (default: random)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds per comparison")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--table", action="store_true",
                        help="also time the fastest config of this CPU's replay table of the workload")
    args = parser.parse_args()

    target = parse_target("llvm")
    task = get_task(args.workload)
    hand = HAND_PICKED.get(task.key)
    records = Path(tempfile.mkdtemp(prefix="tvmopt-bench-"))
    rows = []
    table = table_best(task, target) if args.table else None
    with LocalMeasurer(target, run_timeout=30) as measurer:
        start = time.time()
        result = (tune_task(task.key, target, args.tuner, args.trials, records, seed=args.seed, measurer=measurer)
                  if args.trials else None)
        search_s = time.time() - start
        # an untuned build runs the same product as a dense layer: its task and heuristic start
        m, n, k = task.shape.m, task.shape.n, task.shape.k
        with isa.use(isa.for_target(target)):
            dense = get_task(f"dense:{m}x{n}x{k}")
            dense_start = dense.space.initial()
        candidates = [(f"heuristic start (untuned build, `{dense.key}`)", dense, dense_start)]
        candidates += [("hand-picked config (8 x 32 register tile, for AVX-512)", task, hand)] if hand else []
        candidates += [(f"{args.tuner} search, best of {args.trials}", task, result.best_config)] if result else []
        candidates += [(f"replay table's fastest (of {table[1]:,} configs measured, `{table[2]}`)", task, table[0])
                       ] if table else []
        for label, which, config in candidates:
            t = measurer.compare_with_references(which.key, config, rounds=args.rounds)
            rows.append({"label": label, "task": which.key, "config": which.space.as_dict(config), "seconds": t,
                         "gflops": task.flops / t["tvm"] / 1e9,
                         "vs_numpy": t["numpy"] / t["tvm"], "vs_torch": t["torch"] / t["tvm"]})
            print(f"{label}: {rows[-1]['gflops']:.1f} GFLOPS, {rows[-1]['vs_numpy']:.2f}x numpy, "
                  f"{rows[-1]['vs_torch']:.2f}x torch")
    log = ROOT / "logs" / "search" / f"gemm_llvm_{args.tuner}_{task.key.replace(':', '_')}_{target.key}.jsonl"
    if result:
        log.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(records / f"{target.key}.jsonl", log)
    shutil.rmtree(records, ignore_errors=True)

    info = machine()
    name = per_cpu("gemm_llvm", target)
    if task.key != "gemm:1024x1024x1024":
        name += "_" + task.key.replace(":", "_")
    failed = result.failed if result else 0
    write_json(name, {"workload": task.key, "target": target.key, "machine": info, "trials": args.trials,
                      "search_wall_s": search_s, "failed_trials": failed, "rows": rows})
    search = (f"The {args.tuner} search took {search_s / 60:.1f} min for {args.trials} trials ({failed} failed "
              f"candidates); log: `{log.relative_to(ROOT)}`. " if result else "")
    table_note = (f"The replay table's fastest config is the best of every config of `{table[2]}`, each measured "
                  "on this CPU kind by `benchmarks/make_replay_table.py` (an exhaustive search of that sub-space). "
                  if table else "")
    lines = [
        f"## GEMM on LLVM, {target.key} (`{task.key}`, fp32)",
        "",
        f"`python benchmarks/gemm_llvm.py --workload {task.key} --trials {args.trials}"
        f"{f' --tuner {args.tuner}' if result else ''}"
        f"{' --table' if table else ''}` on "
        f"{info['cpu']} ({target.key}, {CPU_LABELS[cpu_kind(target)]}), {info['date']}, commit {info['commit']}; "
        f"BLAS: {blas()}. Medians of {args.rounds} interleaved rounds; ratio > 1 means tvmopt is faster. "
        f"{search}{table_note}Goals (issue 19): tuned >= 1.0x the faster of numpy and torch, the heuristic start >= 0.8x.",
        "",
        "| schedule | GFLOPS | vs numpy (OpenBLAS) | vs torch |",
        "| --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(f"| {r['label']} | {r['gflops']:.1f} | {r['vs_numpy']:.2f}x | {r['vs_torch']:.2f}x |")
    lines.append("")
    lines.append("Configs: " + "; ".join(f"{r['label']}: `{r['config']}`" for r in rows))
    update_section(name, "\n".join(lines))


def table_best(task, target) -> tuple:
    """(fastest config, configs measured, file) of this CPU's replay table of the task, read by the
    ReplayMeasurer (which checks the table and its configs against the task's space)."""
    from tvmopt.errors import UserError
    from tvmopt.measure.replay import ReplayMeasurer

    path = ROOT / "logs" / "replay" / f"{task.key.replace(':', '_')}_{target.key}.json"
    if not path.exists():
        raise UserError(f"no replay table {path.relative_to(ROOT)}: make it with benchmarks/make_replay_table.py "
                        f"--workload {task.key}")
    table = ReplayMeasurer(path).table
    measured = [c for c, (cost, _, _) in table.items() if cost is not None]
    return min(measured, key=lambda c: table[c][0]), len(measured), str(path.relative_to(ROOT))


if __name__ == "__main__":
    main()
