"""The ``tvmopt`` command: parses arguments and calls the library; nothing else.

A user's mistake (``UserError``) is one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings

from .errors import UserError

#: `tvmopt tune`'s budget; benchmarks/e2e.py --budget-check times it on the bundled CNN
DEFAULT_TRIALS = 200

TUNE_EPILOG = """\
workloads:
  gemm:MxNxK     C[M,N] = A[M,K] . B[K,N]
  dense:MxNxK    C[M,N] = A[M,K] . W[K,N]  (linear layers: the weight laid out [K,N] at build)
  bgemm:BxMxNxK  batched A . B

examples:
  tvmopt tune gemm:1024x1024x1024 --target llvm --tuner random --trials 200
  tvmopt tune dense:64x1024x1024 --records ./records      # resumes where it stopped
  tvmopt tune model.onnx --trials 300 --records ./records  # every task of a model

Every measurement is appended to <records>/<target key>.jsonl as it arrives; re-running the
same command skips configs already measured and measures only what the budget has left.
"""


COMPARE_EPILOG = """\
examples:
  tvmopt compare --replay logs/replay/gemm_256x256x256_llvm-znver5-2c.json --repeats 25
  tvmopt compare gemm:1024x1024x1024 --tuners gbfs,xgb,random --trials 100 --repeats 3

Replay mode measures by lookup in a table of pre-measured configs: exact, instant, and the
expected curve of random search is computed from the table, so the methodology score is exact.
Live mode measures on this machine; its reference is the best config any run found.
"""


#: more trials than any space here needs measuring; a larger number is a typo
MAX_TRIALS = 1_000_000


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _trials(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_TRIALS:
        raise argparse.ArgumentTypeError(f"{value} is more than {MAX_TRIALS:,} trials (days of measuring); "
                                         f"a budget of 100-2000 is typical")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and exit 2 like every other user error."""

    def error(self, message):
        self.exit(2, f"tvmopt: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .tuners import TUNERS
    from .tuning import MODEL_MIN_TRIALS, MODEL_TRIALS_PER_TASK

    parser = _Parser(prog="tvmopt", description="Compile and autotune compressed neural networks with Apache TVM.")
    parser.add_argument("--version", action="version", version=f"tvmopt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    tune = sub.add_parser(
        "tune", help="search a workload's schedule space and record every measurement",
        description="Search the schedule space of a workload on a target; prints the best config, "
                    "its GFLOPS and its speed relative to numpy measured in the same run.",
        epilog=TUNE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    tune.add_argument("workload", help="workload key (e.g. gemm:1024x1024x1024) or a model file (.onnx): "
                                       "then every task of the model is tuned, the budget split by FLOPs")
    tune.add_argument("--batch", type=_positive_int, default=1, help="model mode: batch size (default: 1)")
    tune.add_argument("--target", default="llvm",
                      help="'llvm' (this CPU, detected), 'llvm -mcpu=NAME -num-cores=N', 'cuda -arch=sm_90' "
                           "or a JSON dict (default: llvm)")
    tune.add_argument("--tuner", default=None, choices=sorted(TUNERS),
                      help="search strategy (default: random for a workload; gbfs for a model, whose tasks "
                           "start from heuristic configs that a local search improves)")
    tune.add_argument("--trials", type=_trials, default=None,
                      help=f"measurement budget: for a workload, this tuner's trials on it (default: "
                           f"{DEFAULT_TRIALS}); for a model, the total, split over its tasks by FLOPs (default: "
                           f"{MODEL_TRIALS_PER_TASK} per task, at least {MODEL_MIN_TRIALS}: the bundled digits CNN "
                           f"in a few minutes, ResNet-50 in about 20 on 2 cores)")
    _records_option(tune)
    tune.add_argument("--batch-size", type=_positive_int, default=8, help="candidates built in parallel per step")
    tune.add_argument("--early-stopping", type=_positive_int, default=None, metavar="N",
                      help="stop after N trials without improvement")
    tune.add_argument("--seed", type=int, default=0, help="tuner seed (default: 0)")
    tune.add_argument("--build-timeout", type=_positive_float, default=60.0, metavar="S")
    tune.add_argument("--run-timeout", type=_positive_float, default=20.0, metavar="S")
    tune.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                      help="continue from the records: configs measured before are learned from, not "
                           "measured again, and this tuner's earlier trials count against --trials "
                           "(default); --no-resume starts the tuner afresh (new measurements are still appended)")
    _rpc_options(tune)
    tune.add_argument("--no-compare", action="store_true", help="skip the final timing against numpy/torch")
    tune.add_argument("--quiet", action="store_true", help="no progress bar")
    tune.add_argument("--verbose", action="store_true",
                      help="print one line per measurement once it is safely in the records file")
    tune.set_defaults(func=cmd_tune)

    comp = sub.add_parser(
        "compare", help="run several tuners with the same budget and compare their search cost",
        description="Run each tuner --repeats times (seeds 0..R-1) with the same budget, space and measurer. "
                    "Writes every trial, a markdown summary, summary.json and a convergence plot to --out.",
        epilog=COMPARE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    comp.add_argument("workload", nargs="?", help="workload key (live mode; taken from the table with --replay)")
    comp.add_argument("--target", default="llvm", help="target for live measurement (default: llvm)")
    comp.add_argument("--tuners", default="gbfs,na2c,xgb,random",
                      help="comma-separated tuners (default: gbfs,na2c,xgb,random)")
    comp.add_argument("--trials", type=_trials, default=300, help="budget per run (default: 300)")
    comp.add_argument("--repeats", type=_positive_int, default=5, help="runs per tuner (default: 5)")
    comp.add_argument("--replay", metavar="TABLE", help="measure by lookup in a pre-measured table (logs/replay/)")
    comp.add_argument("--batch-size", type=_positive_int, default=8)
    comp.add_argument("--out", metavar="DIR", help="output directory (default: logs/compare/<workload>-<mode>-<time>)")
    _rpc_options(comp)
    comp.add_argument("--metaschedule", action="store_true",
                      help="live mode: add one MetaSchedule run with the same trial budget as a reference row")
    comp.add_argument("--quiet", action="store_true", help="no progress bar")
    comp.set_defaults(func=cmd_compare)

    bld = sub.add_parser(
        "build", help="compile a model with its best records into a deployable .so",
        description="Import, lower and compile a model; each kernel uses its best record (your --records "
                    "first, then the records shipped in logs/records), tasks without one get a default schedule "
                    "and are listed in one warning. Writes OUT (a TVM module library, loadable with TVM's "
                    "runtime alone) and OUT.json (input/output shapes, tuned and untuned tasks).")
    bld.add_argument("model", help="path to an .onnx file")
    bld.add_argument("-o", "--output", required=True, help="output .so path")
    bld.add_argument("--target", default="llvm", help="target (default: llvm)")
    _records_option(bld)
    bld.add_argument("--batch", type=_positive_int, default=1, help="batch size (default: 1)")
    bld.set_defaults(func=cmd_build)

    run = sub.add_parser(
        "run", help="run a built .so on an input array and time it",
        description="Load a module written by 'tvmopt build', run it on the array in --input (.npy) or on zeros, "
                    "print the output's shape and checksum and the median latency of --repeat calls.")
    run.add_argument("module", help="path to a .so written by 'tvmopt build'")
    run.add_argument("--input", metavar="X.npy", default=None, help="input array (default: zeros)")
    run.add_argument("--repeat", type=_positive_int, default=20, help="timed calls (default: 20)")
    run.add_argument("--output", metavar="Y.npy", default=None, help="save the output here")
    run.set_defaults(func=cmd_run)

    insp = sub.add_parser(
        "inspect", help="show each layer of a model, the structure found in it and the kernel it lowers to",
        description="Import a model (.onnx, standard or with ai.tvmopt ops), run the compressed-layer pass "
                    "and print one row per weighted layer: its shape, the structure detected in its weights "
                    "(binary, ternary, shift, N:M, hashed, Fastfood...), the kernel it lowers to and its weight "
                    "memory before and after. Nothing is compiled or measured.")
    insp.add_argument("model", help="path to an .onnx file")
    insp.add_argument("--batch", type=_positive_int, default=1, help="batch size for a dynamic batch axis (default: 1)")
    insp.add_argument("--min-weights", type=_positive_int, default=256,
                      help="layers with fewer weights stay dense (default: 256)")
    insp.set_defaults(func=cmd_inspect)

    recs = sub.add_parser(
        "records", help="check a records directory; --fix moves unusable lines aside",
        description="List each records file of a directory (one per target): its records, workloads and "
                    "failed measurements, and the lines that cannot be used: unreadable, another target's, "
                    "or measured with another TVM version. tune and build refuse a file with such lines; "
                    "--fix moves them to <file>.rejected (appended, nothing is deleted) and keeps the rest.")
    _records_option(recs)
    recs.add_argument("--fix", action="store_true", help="move unusable lines to <file>.rejected")
    recs.set_defaults(func=cmd_records)

    rpc = sub.add_parser(
        "rpc", help="run TVM's RPC tracker or a measurement server (for --rpc-tracker)",
        description="Thin wrappers over tvm.rpc. Start one tracker, then a server on each measuring device "
                    "with a key naming the device kind; 'tune' and 'compare' with --rpc-tracker HOST:PORT "
                    "--rpc-key KEY build locally and measure on those servers.",
        epilog="example:\n  tvmopt rpc tracker --port 9190 &\n  tvmopt rpc server --tracker 127.0.0.1:9190 "
               "--key zen3 &\n  tvmopt tune gemm:512x512x512 --rpc-tracker 127.0.0.1:9190 --rpc-key zen3",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    rpc_sub = rpc.add_subparsers(dest="role", metavar="ROLE", parser_class=_Parser, required=True)
    trk = rpc_sub.add_parser("tracker", help="start a tracker (serves until Ctrl-C)")
    trk.add_argument("--host", default="0.0.0.0", help="address to bind (default: 0.0.0.0)")
    trk.add_argument("--port", type=_positive_int, default=9190, help="first port to try (default: 9190)")
    trk.set_defaults(func=cmd_rpc)
    srv = rpc_sub.add_parser("server", help="start a measurement server registered with a tracker")
    srv.add_argument("--tracker", required=True, metavar="HOST:PORT", help="the tracker to register with")
    srv.add_argument("--key", required=True, help="device key that tune's --rpc-key asks for")
    srv.add_argument("--host", default="0.0.0.0", help="address to bind (default: 0.0.0.0)")
    srv.add_argument("--port", type=_positive_int, default=9090, help="first port to try (default: 9090)")
    srv.set_defaults(func=cmd_rpc)
    from .cuda_cli import add_cuda_parser
    add_cuda_parser(sub, _Parser)
    return parser


def _records_option(parser) -> None:
    parser.add_argument("--records", metavar="DIR", default=None,
                        help="records directory (default: ~/.cache/tvmopt or $TVMOPT_RECORDS)")


def _rpc_options(parser) -> None:
    parser.add_argument("--rpc-tracker", metavar="HOST:PORT", default=None,
                        help="measure on the RPC servers of this tracker (builds stay local and parallel)")
    parser.add_argument("--rpc-key", metavar="KEY", default=None, help="device key of the RPC servers to use")


def make_measurer(args, target, **kw):
    """The measurer the command line asked for: RPC servers or this machine."""
    from .measure import LocalMeasurer

    if getattr(args, "rpc_tracker", None):
        from .rpc import RPCMeasurer, parse_address

        return RPCMeasurer(target, tracker=parse_address(args.rpc_tracker), key=args.rpc_key or "", **kw)
    if getattr(args, "rpc_key", None):
        raise UserError("--rpc-key needs --rpc-tracker HOST:PORT")
    return LocalMeasurer(target, **kw)


def cmd_rpc(args) -> int:
    from .rpc import parse_address, run_server, run_tracker

    if args.role == "tracker":
        run_tracker(args.host, args.port)
    else:
        run_server(parse_address(args.tracker), args.key, args.host, args.port)
    return 0


def cmd_records(args) -> int:
    from .cache import RecordCache, describe_unusable

    cache = RecordCache(args.records)
    if not cache.directory.is_dir():
        raise UserError(f"records directory '{cache.directory}' does not exist")
    keys = cache.target_keys()
    if not keys:
        print(f"{cache.directory}: no records files")
        return 0
    print(f"{'target':<28} {'records':>8} {'workloads':>9} {'failed':>7} {'unusable':>8}")
    for key in keys:
        records, unusable = cache.scan(key)
        failed = sum(r.error != "ok" for r in records)
        print(f"{key:<28} {len(records):>8} {len({r.workload for r in records}):>9} {failed:>7} {len(unusable):>8}")
        if unusable and args.fix:
            moved = cache.set_aside(key)
            print(f"  moved {moved} line(s) to {cache.path(key).name}.rejected")
        elif unusable:
            print("  " + describe_unusable(cache.path(key), unusable, cache._tvm))
    return 0


def cmd_build(args) -> int:
    from .deploy import build

    result = build(args.model, args.output, target=args.target, records=args.records, batch=args.batch)
    tuned = len(result.compiled.tuned) - len(result.untuned)
    print(f"wrote {result.path} ({len(result.compiled.lowered.layers)} layers, {tuned}/{len(result.compiled.tuned)} "
          f"tasks tuned) and {result.path.name}.json")
    return 0


def cmd_run(args) -> int:
    import numpy as np

    from .deploy import load

    module = load(args.module)
    if args.input:
        try:
            x = np.load(args.input, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise UserError(f"cannot read input {args.input} as a .npy array ({type(exc).__name__}: "
                            f"{str(exc)[:120]})") from None
        if not isinstance(x, np.ndarray) or x.dtype != np.float32:
            kind = x.dtype if isinstance(x, np.ndarray) else type(x).__name__
            raise UserError(f"input {args.input} holds {kind}; the module takes float32 "
                            f"(convert it with x.astype(np.float32))")
    elif module.input_shape:
        x = np.zeros(module.input_shape, np.float32)
    else:
        raise UserError("no --input given and the module has no shape description (.json)")
    y = module(x)
    seconds = module.time(x, args.repeat)
    print(f"output shape {y.shape}, sum {float(y.sum()):.6g}, first {np.round(y.reshape(-1)[:4], 5).tolist()}")
    print(f"latency: {seconds * 1e3:.3f} ms (median of {args.repeat})")
    if args.output:
        from .deploy import write_atomically

        write_atomically(args.output, lambda f: np.save(f, y))
    return 0


def cmd_inspect(args) -> int:
    from .passes import DetectOptions
    from .report import format_layers, inspect_model

    layers = inspect_model(args.model, batch=args.batch, options=DetectOptions(min_weights=args.min_weights))
    print(f"{args.model}: {len(layers)} weighted layer(s)")
    print(format_layers(layers))
    return 0


def cmd_compare(args) -> int:
    import time
    from pathlib import Path

    from .compare import add_metaschedule_reference, compare
    from .measure import ReplayMeasurer
    from .target import parse_target
    from .tasks import get_task

    tuners = [t.strip() for t in args.tuners.split(",") if t.strip()]
    if args.replay:
        measurer = ReplayMeasurer(args.replay)
        task, space, target_key = measurer.task, measurer.space, measurer.header.get("target", "replay")
        if args.workload and get_task(args.workload).key != task.key:
            raise UserError(f"workload {args.workload} does not match the replay table's {task.key}")
    else:
        if not args.workload:
            raise UserError("compare needs a WORKLOAD, or --replay TABLE")
        target = parse_target(args.target)
        task = get_task(args.workload)
        from .tuning import check_measurable

        check_measurable(target)
        measurer, space, target_key = make_measurer(args, target), task.space, target.key
    mode = "replay" if args.replay else "live"
    out = Path(args.out or f"logs/compare/{task.key.replace(':', '_')}-{mode}-{time.strftime('%Y%m%d-%H%M%S')}")
    if args.metaschedule and args.replay:
        raise UserError("--metaschedule needs live measurement; it cannot replay a table")
    with measurer:
        result = compare(task, measurer, target_key, tuners, args.trials, args.repeats, out, space=space,
                         batch_size=args.batch_size, progress=not args.quiet)
    if args.metaschedule:
        add_metaschedule_reference(result, target, out)
    print(result.markdown())
    print(f"\nlogs, summary.md, summary.json and convergence.png in {out}")
    return 0


def cmd_tune_model(args) -> int:
    from .target import parse_target
    from .tuning import MODEL_TUNER, tune_model

    target = parse_target(args.target)
    with make_measurer(args, target, build_timeout=args.build_timeout, run_timeout=args.run_timeout) as measurer:
        result = tune_model(args.workload, target, tuner=args.tuner or MODEL_TUNER, trials=args.trials,
                            records=args.records,
                            batch=args.batch, batch_size=args.batch_size, seed=args.seed,
                            progress=not args.quiet and not args.verbose, resume=args.resume,
                            report=_report_line if args.verbose else None, measurer=measurer)
    print(f"\n{'task':<36} {'layers':>6} {'trials':>6} {'new':>4} {'best GFLOPS':>12}")
    for key, count, budget, r in result.tasks:
        best = f"{r.best_gflops:.1f}" if r.best_config is not None and math.isfinite(r.best_cost) else "-"
        print(f"{key:<36} {count:>6} {budget:>6} {r.measured:>4} {best:>12}")
    return 0


def _report_line(record) -> None:
    """--verbose: one line per measurement, printed after its record was written and flushed."""
    import json

    from .schedules.space import config_to_json

    cost = f"{record.cost * 1e3:.4f} ms" if record.error == "ok" else record.error
    print(f"recorded {record.workload} {cost} config={json.dumps(config_to_json(record.config), separators=(',', ':'))}",
          flush=True)


def cmd_tune(args) -> int:
    from pathlib import Path

    from .target import parse_target
    from .tasks import get_task
    from .tuning import tune_task

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
                           resume=args.resume, report=_report_line if args.verbose else None)
        print(f"measured {result.measured} new config(s) ({result.failed} failed), "
              f"reused {result.reused} from the records")
        if result.best_config is None or not math.isfinite(result.best_cost):
            print("no working config was found")
            return 1
        print("best config:")
        for name, value in task.space.as_dict(result.best_config).items():
            print(f"  {name:<11} {value}")
        print(f"best: {result.best_cost * 1e3:.3f} ms, {result.best_gflops:.1f} GFLOPS")
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    warnings.formatwarning = lambda msg, cat, *a, **k: f"tvmopt: warning: {msg}\n"
    try:
        return args.func(args)
    except UserError as e:
        print(f"tvmopt: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tvmopt: interrupted; measurements so far are in the records", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - a bug of ours: one line, the traceback on request
        from .errors import debugging, one_line

        if debugging():
            raise
        print(f"tvmopt: internal error: {one_line(e)} (please report it; TVMOPT_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
