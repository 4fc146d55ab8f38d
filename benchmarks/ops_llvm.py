"""Each compressed kernel against the dense fp32 product of the same shape, in the same run.

    python benchmarks/ops_llvm.py [--sizes 1024,4096] [--batches 1,64] [--trials 10] [--tuner random]

For every size S (N = K = S) and batch M, each op is tuned (``--trials`` measurements, records
kept in benchmarks/results/ops_records so a rerun resumes) and so is the dense GEMM
``dense:MxSxS``. Then the op's best kernel, the tuned dense GEMM and numpy's ``x @ W.T``
(OpenBLAS) are timed interleaved, medians of ``--rounds`` rounds, and the speed-up is reported
against the *faster* of the two dense references. Writes benchmarks/results/ops_llvm.json and
its section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from report import ROOT, machine, update_section, write_json, wait_quiet

from tvmopt.target import parse_target
from tvmopt.ops.task import get_task
from tvmopt.schedules import lowering
from tvmopt.tune.loop import tune_task

RECORDS = ROOT / "benchmarks" / "results" / "ops_records"

# op -> (workload key for M, S; goal as a speed-up over dense; what the goal applies to)
OPS = {
    "xnor": (lambda m, s: f"xnor_dense:{m}x{s}x{s}", 8.0, "all"),
    "binary (real x)": (lambda m, s: f"binary_dense:{m}x{s}x{s}", 2.0, "batch 1"),
    "binary LUT (real x)": (lambda m, s: f"binary_lut_dense:{m}x{s}x{s}", 2.0, "batch 1"),
    "shift": (lambda m, s: f"shift_dense:{m}x{s}x{s}", 1.5, "batch 1"),
    "ternary": (lambda m, s: f"ternary_dense:{m}x{s}x{s}", 3.0, "all"),
    "ternary LUT": (lambda m, s: f"ternary_lut_dense:{m}x{s}x{s}", 3.0, "all"),
    "2:4 sparse": (lambda m, s: f"nm_dense:{m}x{s}x{s}x2x4", 1.3, "batch 1"),
    "hashed (1/8)": (lambda m, s: f"hashed_dense:{m}x{s}x{s}x{s * s // 8}x1", 1.0, "all"),
    "Fastfood": (lambda m, s: f"fastfood:{m}x{s}x{s}", 20.0, "size 4096"),
    "FWHT": (lambda m, s: f"hadamard:{m}x{s}x{s - 1}", 100.0, "size 4096"),
}


def _time_tvm(lib, args, number_ms=100):
    timer = lib.mod.time_evaluator("main", _dev(), number=1,
                               repeat=1, min_repeat_ms=number_ms)
    return lambda: timer(*args).mean


def _dev():
    import tvm

    return tvm.cpu()


def _python_timer(fn, min_seconds=0.1):
    def run():
        fn()
        n, start = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            if time.perf_counter() - start >= min_seconds:
                return (time.perf_counter() - start) / n
    return run


def _build(task, config, target):
    lib = lowering.compile(task.schedule(config, target), target.tvm_target())
    return lib


def _best(key, target, tuner, trials):
    result = tune_task(key, target, tuner=tuner, trials=trials, records=RECORDS, progress=True)
    return result.best_config


def measure(size: int, batch: int, target, tuner: str, trials: int, rounds: int, only=None) -> list[dict]:
    import tvm

    rng = np.random.default_rng(0)
    dense_key = f"dense:{batch}x{size}x{size}"
    dense_task = get_task(dense_key)
    dense_cfg = _best(dense_key, target, tuner, trials)
    x = rng.uniform(-1, 1, size=(batch, size)).astype(np.float32)
    w = rng.uniform(-1, 1, size=(size, size)).astype(np.float32)
    dense_lib = _build(dense_task, dense_cfg, target)
    dense_args = [tvm.runtime.tensor(a) for a in (x, *dense_task.to_kernel([w]), np.zeros((batch, size), np.float32))]
    rows = []
    for name, (make_key, goal, scope) in OPS.items():
        if only and name not in only:
            continue
        key = make_key(batch, size)
        task = get_task(key)
        config = _best(key, target, tuner, trials)
        if config is None:
            rows.append({"op": name, "key": key, "size": size, "batch": batch, "error": "no working config"})
            continue
        inputs = task.make_inputs(rng)
        expected = task.reference(inputs) if task.flops < 5e10 else None
        lib = _build(task, config, target)
        out = np.zeros((batch, getattr(task, "out_features", getattr(task, "n", size))), np.float32)
        args = [tvm.runtime.tensor(a) for a in inputs] + [tvm.runtime.tensor(out)]
        lib["main"](*args)
        if expected is not None:
            assert task.mismatch(args[-1].numpy(), expected) is None, f"{key}: wrong result"
        contenders = {"op": _time_tvm(lib, args), "tvm_dense": _time_tvm(dense_lib, dense_args),
                      "numpy": _python_timer(lambda: x @ w.T)}
        samples = {k: [] for k in contenders}
        for _ in range(rounds):
            for k, fn in contenders.items():
                wait_quiet()
                samples[k].append(fn())
        med = {k: statistics.median(v) for k, v in samples.items()}
        dense_best = min(med["tvm_dense"], med["numpy"])
        speedup = dense_best / med["op"]
        applies = scope == "all" or (scope == "batch 1" and batch == 1) or (scope == "size 4096" and size == 4096)
        row = {"op": name, "key": key, "size": size, "batch": batch, "config": task.space.as_dict(config),
               "seconds": med, "speedup": float(speedup), "goal": goal, "goal_applies": applies,
               "met": bool(speedup >= goal) if applies else None,
               "per_vector_us": med["op"] / batch * 1e6}
        rows.append(row)
        print(f"  {name:16s} S={size} M={batch}: {speedup:6.2f}x dense "
              f"(op {med['op'] * 1e3:.3f} ms, tvm dense {med['tvm_dense'] * 1e3:.3f} ms, "
              f"numpy {med['numpy'] * 1e3:.3f} ms)", flush=True)
    return rows


def table(summary: dict) -> str:
    m = summary["machine"]
    lines = [
        f"## Compressed kernels vs dense fp32, {summary['tuner']} (`benchmarks/ops_llvm.py --tuner {summary['tuner']}`)",
        "",
        f"{m['cpu']}, {m['date']}, commit {m['commit']}. Each op tuned with {summary['tuner']} for"
        f" {summary['trials']} trials, likewise the dense GEMM; then the op, the tuned dense GEMM and numpy"
        f" `x @ W.T` timed interleaved (median of {summary['rounds']} rounds). Speed-up = the faster dense"
        " reference / the op. N = K = size.",
        "",
        "| op | size | batch | speed-up vs best dense | goal | µs per vector | op ms | TVM dense ms | numpy ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summary["rows"]:
        if "error" in r:
            lines.append(f"| {r['op']} | {r['size']} | {r['batch']} | {r['error']} | | | | | |")
            continue
        s = r["seconds"]
        goal = f"≥{r['goal']:g}x" + ("" if r["met"] is None else (" met" if r["met"] else " **not met**")) \
            if r["goal_applies"] else ""
        lines.append(f"| {r['op']} | {r['size']} | {r['batch']} | {r['speedup']:.2f}x | {goal} | "
                     f"{r['per_vector_us']:.1f} | {s['op'] * 1e3:.3f} | {s['tvm_dense'] * 1e3:.3f} | "
                     f"{s['numpy'] * 1e3:.3f} |")
    lines += ["", LIMITS]
    return "\n".join(lines)


LIMITS = """What limits the rows that miss (read from the schedules and the generated assembly):
- **Decode per weight at batch 1.** binary (real x), shift, ternary and hashed build each weight
  from its code in the innermost loop: about 10 AVX2 instructions per 8 weights for binary, shift
  and ternary (widen the byte, shift, mask, convert or assemble the float bits, FMA), about 30 for
  hashed (fmix32 and a gather from the 1/8-size table). numpy's GEMV needs one FMA per 8 weights
  and is bound by memory bandwidth; at size 1024 the 4 MiB dense weight sits in the 32 MiB L3, so
  it is not even that, and no decode can keep up.
- **Batches share a decoded tile** (`decode=tile`): the weight is decoded once per [k1, n2*n3]
  tile and every row reuses it, so at batch 64 the decode is amortized and these kernels run at
  about dense GEMM speed, never much faster: the multiplies remain.
- **N:M** gathers one X element per kept weight (`x[i, g*M + pos]`), an AVX2 gather per 8 weights,
  and stores fp32 values, so it reads half of the dense bytes at best.
- **Lookup tables** (binary and ternary LUT) beat the decode only when N is large enough to pay for
  building the 256-entry table of every input group; at batch 64 the pass uses the decode kernels.
- **FWHT** makes log2(n) passes over each vector (one TE stage per butterfly level). FFHT-style
  radix-8 in-register blocks would take about 4 passes.
- **XNOR** at batch 64: Zen 3 has no AVX2 vector popcount, so LLVM emulates it with shuffles.
- **Dense TVM GEMM** after this few trials is slower than OpenBLAS; the reference used is the faster
  of the two, so this does not inflate the ratios."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1024,4096")
    ap.add_argument("--batches", default="1,64")
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--tuner", default="random")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", default=None, help="comma-separated op names")
    ap.add_argument("--name", default="ops_llvm", help="JSON file and BENCHMARKS.md section name")
    args = ap.parse_args()
    target = parse_target("llvm")
    only = set(args.only.split(",")) if args.only else None
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        for batch in (int(b) for b in args.batches.split(",")):
            rows += measure(size, batch, target, args.tuner, args.trials, args.rounds, only)
            summary = {"machine": machine(), "tuner": args.tuner, "trials": args.trials, "rounds": args.rounds,
                       "rows": rows}
            write_json(args.name, summary)
    update_section(args.name, table(summary))
    print(table(summary))


if __name__ == "__main__":
    main()
