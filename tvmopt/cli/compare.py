"""``tvmopt compare``: several tuners, the same budget, their search cost side by side."""

from __future__ import annotations

import argparse

from tvmopt.cli.common import make_measurer, positive_int, rpc_options, trials
from tvmopt.errors import UserError

COMPARE_EPILOG = """\
examples:
  tvmopt compare --replay gemm_256x256x256_llvm-znver5-2c.json --repeats 25   # a shipped table
  tvmopt compare --replay all --repeats 10 --trials 200                        # every shipped table
  tvmopt compare gemm:1024x1024x1024 --tuners gbfs,xgb,random --trials 100 --repeats 3
  tvmopt compare --replay dense_64x1024x1024_llvm-znver5-2c --tuners gbfs,gbfs:rho=8,gbfs-paper

Tuners are named variants (gbfs, gbfs-paper, na2c, na2c-paper, xgb, random), each optionally
with settings after colons (gbfs:rho=8:pick=random, na2c:grad_steps=1); the -paper variants
keep the settings of Zhang et al. 2019.

Replay mode measures by lookup in a table of pre-measured configs: exact, instant, and the
expected curve of random search is computed from the table, so the methodology score is exact.
Live mode measures on this machine; its reference is the best config any run found, and each
run's 3 fastest configs are re-measured together at the end (5 interleaved rounds): the best
column is the re-measured figure.
"""


def add_parser(sub) -> None:
    comp = sub.add_parser(
        "compare", help="run several tuners with the same budget and compare their search cost",
        description="Run each tuner --repeats times (seeds 0..R-1) with the same budget, space and measurer. "
                    "Writes every trial, a markdown summary, summary.json and a convergence plot to --out.",
        epilog=COMPARE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    comp.add_argument("workload", nargs="?", help="workload key (live mode; taken from the table with --replay)")
    comp.add_argument("--target", default="llvm", help="target for live measurement (default: llvm)")
    comp.add_argument("--tuners", default="gbfs,na2c,xgb,random",
                      help="comma-separated tuners (default: gbfs,na2c,xgb,random)")
    comp.add_argument("--trials", type=trials, default=300, help="budget per run (default: 300)")
    comp.add_argument("--repeats", type=positive_int, default=5, help="runs per tuner (default: 5)")
    comp.add_argument("--replay", metavar="TABLE",
                      help="measure by lookup in a pre-measured table: a path, the name of a table shipped with "
                           "tvmopt, or 'all' (every shipped table, two at a time; one line per table and the "
                           "median ratios to XGBoost)")
    comp.add_argument("--batch-size", type=positive_int, default=8)
    comp.add_argument("--out", metavar="DIR",
                      help="output directory (default: ./tvmopt-compare/<workload>-<mode>-<time> under the current "
                           "directory); a DIR of an earlier comparison is resumed: its complete runs are read back, "
                           "the others run")
    rpc_options(comp)
    comp.add_argument("--metaschedule", action="store_true",
                      help="live mode: add one MetaSchedule run with the same trial budget as a reference row")
    comp.add_argument("--quiet", action="store_true", help="no progress bar")
    comp.set_defaults(func=cmd_compare)


def cmd_compare(args) -> int:
    import time
    from pathlib import Path

    from tvmopt.tune.compare import add_metaschedule_reference, compare
    from tvmopt.measure.replay import ReplayMeasurer
    from tvmopt.target import parse_target
    from tvmopt.ops.task import get_task

    tuners = [t.strip() for t in args.tuners.split(",") if t.strip()]
    if args.replay == "all":
        return _compare_all_tables(args, tuners)
    if args.replay:
        from tvmopt.records.shipped import replay_table

        measurer = ReplayMeasurer(replay_table(args.replay))
        task, space, target_key = measurer.task, measurer.space, measurer.header.get("target", "replay")
        if args.workload and get_task(args.workload).key != task.key:
            raise UserError(f"workload {args.workload} does not match the replay table's {task.key}")
    else:
        if not args.workload:
            raise UserError("compare needs a WORKLOAD, or --replay TABLE")
        target = parse_target(args.target)
        task = get_task(args.workload)
        from tvmopt.tune.loop import check_measurable

        check_measurable(target, remote=bool(args.rpc_tracker))
        measurer, space, target_key = make_measurer(args, target), task.space, target.key
    mode = "replay" if args.replay else "live"
    out = Path(args.out or f"tvmopt-compare/{task.key.replace(':', '_')}-{mode}-{time.strftime('%Y%m%d-%H%M%S')}")
    if args.metaschedule and args.replay:
        raise UserError("--metaschedule needs live measurement; it cannot replay a table")
    with measurer:
        result = compare(task, measurer, target_key, tuners, args.trials, args.repeats, out, space=space,
                         batch_size=args.batch_size, progress=not args.quiet, resume=args.out is not None)
    if args.metaschedule:
        add_metaschedule_reference(result, target, out)
    print(result.markdown())
    print(f"\nlogs, summary.md, summary.json and convergence.png in {out}")
    return 0


def _compare_all_tables(args, tuners) -> int:
    import time
    from pathlib import Path

    from tvmopt.records.shipped import replay_tables
    from tvmopt.tune.compare import aggregate_tables, compare_tables, tables_markdown

    if args.metaschedule or args.workload:
        raise UserError("--replay all compares on every shipped table: it takes no WORKLOAD or --metaschedule")
    paths = list(replay_tables().values())
    if not paths:
        raise UserError("no replay tables are shipped with this installation")
    out = Path(args.out or f"tvmopt-compare/all-tables-{time.strftime('%Y%m%d-%H%M%S')}")
    if not args.quiet:
        print(f"{len(tuners)} tuners x {args.repeats} repeats x {args.trials} trials on {len(paths)} tables, "
              f"2 at a time ...", flush=True)
    rows = compare_tables(paths, tuners, args.trials, args.repeats, out, jobs=2)
    baseline = "xgb" if "xgb" in tuners else tuners[0]
    agg = aggregate_tables(rows, tuners, baseline) if "random" in tuners else None
    print(tables_markdown(rows, tuners, agg, baseline))
    print(f"\nper-table logs, summaries and plots in {out}")
    return 0

