"""``tvmopt tune``: search a workload's schedule space, or every task of a model."""

from __future__ import annotations

import argparse
import math

from tvmopt.cli.common import input_shapes_option, kernels_option, make_measurer, positive_float, positive_int, records_option, report_line, rpc_options, trials, tuner_spec

#: `tvmopt tune`'s budget; benchmarks/e2e.py --budget-check times it on the bundled CNN
DEFAULT_TRIALS = 200


TUNE_EPILOG = """\
workloads (every op family registered in tvmopt.ops):
{workloads}

examples:
  tvmopt tune gemm:1024x1024x1024 --target llvm --tuner random --trials 200
  tvmopt tune dense:64x1024x1024 --records ./records      # resumes where it stopped
  tvmopt tune model.onnx --trials 300 --records ./records  # every task of a model

Every measurement is appended to <records>/<target key>.jsonl as it arrives; re-running the
same command skips configs already measured and measures only what the budget has left.
"""


def _workloads() -> str:
    from tvmopt.ops.registry import describe_workloads

    rows = describe_workloads()
    width = max(len(form) for form, _ in rows) + 2
    return "\n".join(f"  {form:<{width}}{summary}" for form, summary in rows)


def add_parser(sub) -> None:
    from tvmopt.tuners import TUNERS
    from tvmopt.tune.loop import MODEL_MIN_TRIALS, MODEL_TRIALS_PER_TASK

    tune = sub.add_parser(
        "tune", help="search a workload's schedule space and record every measurement",
        description="Search the schedule space of a workload on a target; prints the best config, "
                    "its GFLOPS and its speed relative to numpy measured in the same run.",
        epilog=TUNE_EPILOG.format(workloads=_workloads()), formatter_class=argparse.RawDescriptionHelpFormatter)
    tune.add_argument("workload", help="workload key (e.g. gemm:1024x1024x1024) or a model file (.onnx): "
                                       "then every task of the model is tuned, the budget split by FLOPs")
    tune.add_argument("--batch", type=positive_int, default=None,
                      help="model mode: batch size (default: the model's, or 1 for a dynamic batch axis)")
    input_shapes_option(tune, "model mode: ")
    tune.add_argument("--target", default="llvm",
                      help="'llvm' (this CPU, detected), 'llvm -mcpu=NAME -num-cores=N', 'cuda -arch=sm_90' "
                           "or a JSON dict (default: llvm)")
    tune.add_argument("--tuner", default=None, type=tuner_spec, metavar="NAME[:KEY=VALUE...]",
                      help=f"search strategy: one of {', '.join(TUNERS)}, optionally with settings "
                           f"(gbfs:rho=8, na2c:learning_rate=0.003); default: random for a workload, gbfs for "
                           f"a model, whose tasks start from heuristic configs that a local search improves")
    tune.add_argument("--trials", type=trials, default=None,
                      help=f"measurement budget: for a workload, this tuner's trials on it (default: "
                           f"{DEFAULT_TRIALS}); for a model, the total, split over its tasks by FLOPs (default: "
                           f"{MODEL_TRIALS_PER_TASK} per task, at least {MODEL_MIN_TRIALS}: the bundled digits CNN "
                           f"in a few minutes, ResNet-50 in about 20 on 2 cores)")
    records_option(tune)
    kernels_option(tune)
    tune.add_argument("--batch-size", type=positive_int, default=8, help="candidates built in parallel per step")
    tune.add_argument("--early-stopping", type=positive_int, default=None, metavar="N",
                      help="stop after N trials without improvement")
    tune.add_argument("--seed", type=int, default=0, help="tuner seed (default: 0)")
    tune.add_argument("--build-timeout", type=positive_float, default=60.0, metavar="S")
    tune.add_argument("--run-timeout", type=positive_float, default=20.0, metavar="S")
    tune.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                      help="continue from the records: configs measured before are learned from, not "
                           "measured again, and this tuner's earlier trials count against --trials "
                           "(default); --no-resume starts the tuner afresh (new measurements are still appended)")
    rpc_options(tune)
    tune.add_argument("--no-compare", action="store_true", help="skip the final timing against numpy/torch")
    tune.add_argument("--flush-cache", action=argparse.BooleanOptionalAction, default=None,
                      help="time each candidate in single calls with its weights and output flushed from the CPU "
                           "caches first, as a layer meets them in a model (AutoTVM's enable_cpu_cache_flush); "
                           "default: on for a model, off for a workload")
    tune.add_argument("--no-network-check", action="store_true",
                      help="model mode: skip the final check that times each tuned config against its start "
                           "inside the model (builds then follow the kernels' own timings)")
    tune.add_argument("--quiet", action="store_true", help="no progress bar")
    tune.add_argument("--verbose", action="store_true",
                      help="print one line per measurement once it is safely in the records file")
    tune.set_defaults(func=cmd_tune)


def cmd_tune_model(args) -> int:
    from tvmopt.passes import DetectOptions
    from tvmopt.target import parse_target
    from tvmopt.tune.loop import MODEL_TUNER, tune_model

    target = parse_target(args.target)
    if args.flush_cache is None:          # a layer in a model reads its weights cold
        args.flush_cache = not args.rpc_tracker and target.kind == "llvm"
    with make_measurer(args, target, build_timeout=args.build_timeout, run_timeout=args.run_timeout) as measurer:
        result = tune_model(args.workload, target, tuner=args.tuner or MODEL_TUNER, trials=args.trials,
                            records=args.records,
                            batch=args.batch, batch_size=args.batch_size, seed=args.seed,
                            progress=not args.quiet and not args.verbose, resume=args.resume,
                            report=report_line if args.verbose else None, measurer=measurer,
                            options=DetectOptions(kernels=args.kernels, layout=args.layout, winograd=args.winograd),
                            shapes=args.input_shapes, network_check=not args.no_network_check)
    # what builds now run: the in-network check's verdict where it ran
    built = {v.task: "tuned" if v.chosen else "start" for v in result.verdicts or ()}
    print(f"\n{'task':<36} {'layers':>6} {'trials':>6} {'new':>4} {'best GFLOPS':>12}"
          + (f" {'builds run':>10}" if built else ""))
    for key, count, budget, r in result.tasks:
        best = f"{r.best_gflops:.1f}" if r.best_config is not None and math.isfinite(r.best_cost) else "-"
        print(f"{key:<36} {count:>6} {budget:>6} {r.measured:>4} {best:>12}"
              + (f" {built.get(key, '-'):>10}" if built else ""))
    return 0


def cmd_tune(args) -> int:
    from pathlib import Path

    from tvmopt.target import parse_target
    from tvmopt.ops.task import get_task
    from tvmopt.tune.loop import tune_task

    if args.workload.endswith(".onnx") or Path(args.workload).is_file():
        return cmd_tune_model(args)
    target = parse_target(args.target)
    task = get_task(args.workload)
    args.tuner, args.trials = args.tuner or "random", args.trials or DEFAULT_TRIALS
    print(f"tuning {task.key} on {target.key} with {args.tuner}: space of {task.space.size():,} configs")
    with make_measurer(args, target, build_timeout=args.build_timeout, run_timeout=args.run_timeout) as measurer:
        result = tune_task(task.key, target, tuner=args.tuner, trials=args.trials, records=args.records,
                           batch_size=args.batch_size, seed=args.seed, early_stopping=args.early_stopping,
                           measurer=measurer, progress=not args.quiet and not args.verbose,
                           resume=args.resume, report=report_line if args.verbose else None)
        print(f"measured {result.measured} new config(s) ({result.failed} failed), "
              f"reused {result.reused} from the records")
        if result.best_config is None or not math.isfinite(result.best_cost):
            print("no working config was found")
            return 1
        print("best config:")
        for name, value in task.space.as_dict(result.best_config).items():
            print(f"  {name:<11} {value}")
        print(f"best: {result.best_cost * 1e3:.3f} ms, {result.best_gflops:.1f} GFLOPS")
        if result.spread is not None:
            print(f"  (re-measured with the runners-up in 5 interleaved rounds: spread {100 * result.spread:.1f}% "
                  f"of the median; {result.in_run_cost * 1e3:.3f} ms during the search)")
        if args.rpc_tracker and not args.no_compare:
            print("(no same-run comparison with numpy: the candidates ran on the RPC servers)")
        elif not args.no_compare:
            times = measurer.compare_with_references(task.key, result.best_config)
            parts = [f"{times['tvm'] * 1e3:.3f} ms"]
            for ref in ("numpy", "torch"):
                if ref in times:
                    parts.append(f"{times[ref] / times['tvm']:.2f}x {ref} ({times[ref] * 1e3:.3f} ms)")
            print("same run, medians: tvmopt " + ", ".join(parts))
    return 0
