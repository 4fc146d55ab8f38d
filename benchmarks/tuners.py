"""Search cost of the tuners, against the issue's goals.

    python benchmarks/tuners.py replay [--table T] [--repeats 25] [--trials 300]
    python benchmarks/tuners.py live [--workload gemm:1024x1024x1024] [--repeats 5] [--trials 300]

replay: every tuner on the shipped pre-measured table (exact; random's expected curve from
the table). Goal: median trials to 95% of the optimum for G-BFS and N-A2C each <= 0.6x
XGBoost's and <= 0.3x random's, each exploring <= 1% of the space.
live: the same tuners measured on this machine, plus one MetaSchedule run with the same
budget. Goal: G-BFS and N-A2C median best >= XGBoost's (within noise) and >= MetaSchedule's.
Writes benchmarks/results/tuners_<mode>.{json,png}, logs under logs/compare/, and the
section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import shutil

from report import ROOT, machine, update_section, write_json

from tvmopt.tune.compare import add_metaschedule_reference, compare, runs_from_logs, summarize_runs
from tvmopt.measure.local import LocalMeasurer
from tvmopt.measure.replay import ReplayMeasurer
from tvmopt.target import parse_target
from tvmopt.ops.task import get_task

TUNERS = ["gbfs", "na2c", "xgb", "random"]
DEFAULT_TABLE = ROOT / "logs" / "replay" / "gemm_256x256x256_llvm-znver5-2c.json"


def verdict_replay(summaries) -> list[str]:
    by = {s.tuner: s for s in summaries}
    out = []
    for name in ("gbfs", "na2c"):
        t = by[name].trials_to[0.95]
        xgb, rnd = by["xgb"].trials_to[0.95], by["random"].trials_to[0.95]
        if t is None:
            out.append(f"- {name}: did not reach 95% of the optimum in most runs: **not met**.")
            continue
        vs_xgb = "n/a (XGBoost never reached 95%)" if xgb is None else f"{t / xgb:.2f}x"
        vs_rnd = "n/a (random never reached 95%)" if rnd is None else f"{t / rnd:.2f}x"
        ok = (xgb is None or t / xgb <= 0.6) and (rnd is None or t / rnd <= 0.3) and by[name].explored <= 0.01
        out.append(f"- {name}: {t:.0f} trials to 95% = {vs_xgb} XGBoost's (goal <= 0.6x), {vs_rnd} random's "
                   f"(goal <= 0.3x), {100 * by[name].explored:.2f}% of the space (goal <= 1%): "
                   f"**{'met' if ok else 'not met'}**.")
    return out


def verdict_live(summaries, references) -> list[str]:
    by = {s.tuner: s for s in summaries}
    out = []
    ms = next((r["gflops"] for r in references if r["name"] == "metaschedule"), None)
    for name in ("gbfs", "na2c"):
        q25, med, q75 = by[name].best_gflops
        xq25, xmed, xq75 = by["xgb"].best_gflops
        vs_xgb = med >= xmed or q75 >= xq25  # within noise: IQRs overlap
        line = f"- {name}: median best {med:.1f} GFLOPS vs XGBoost {xmed:.1f} ({'met' if vs_xgb else 'not met'})"
        if ms is not None:
            line += f", vs MetaSchedule {ms:.1f} ({'met' if med >= ms else 'not met'})"
        out.append(line + ".")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["replay", "live"])
    parser.add_argument("--table", default=str(DEFAULT_TABLE))
    parser.add_argument("--workload", default="gemm:1024x1024x1024")
    parser.add_argument("--repeats", type=int, default=None, help="default: 25 replay, 5 live")
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--no-metaschedule", action="store_true")
    parser.add_argument("--from-logs", action="store_true",
                        help="summarize the logs of the last run again (and its MetaSchedule row) instead of running")
    args = parser.parse_args()
    repeats = args.repeats or (25 if args.mode == "replay" else 5)
    info = machine()
    out = ROOT / "logs" / "compare" / f"bench-{args.mode}"
    if not args.from_logs:
        shutil.rmtree(out, ignore_errors=True)

    if args.mode == "replay":
        measurer = ReplayMeasurer(args.table)
        task, space, target_key = measurer.task, measurer.space, measurer.header["target"]
        how = (f"replay of `{DEFAULT_TABLE.relative_to(ROOT) if args.table == str(DEFAULT_TABLE) else args.table}` "
               f"({space.size():,} configs measured exhaustively on {measurer.header.get('measured_on', '?')}, "
               f"{measurer.header.get('date', '?')})")
    else:
        target = parse_target("llvm")
        task, space, target_key = get_task(args.workload), None, target.key
        measurer = LocalMeasurer(target, run_timeout=10)
        how = f"live on {info['cpu']} ({target.key})"
    if args.from_logs:
        previous = json.loads((out / "summary.json").read_text()).get("references", [])
        result = summarize_runs(task, space or task.space, runs_from_logs(out, TUNERS, repeats), args.trials,
                                measurer, out)
        for ref in previous:
            result.add_reference(ref["name"], ref["gflops"], ref["wall_s"], ref["trials"])
        result.save(out)
        measurer.close()
    else:
        with measurer:
            result = compare(task, measurer, target_key, TUNERS, args.trials, repeats, out, space=space)
    if args.mode == "live" and not args.no_metaschedule and not args.from_logs:
        add_metaschedule_reference(result, target, out)
    summary = json.loads((out / "summary.json").read_text())
    write_json(f"tuners_{args.mode}", {"machine": info, "how": how, **summary})
    shutil.copy(out / "convergence.png", ROOT / "benchmarks" / "results" / f"tuners_{args.mode}.png")
    verdict = verdict_replay(result.summaries) if args.mode == "replay" else \
        verdict_live(result.summaries, result.references)
    text = "\n".join([
        f"## Tuners' search cost: {args.mode}",
        "",
        f"`python benchmarks/tuners.py {args.mode} --repeats {repeats} --trials {args.trials}`: {how}; "
        f"{info['date']}, commit {info['commit']}. Seeds 0..{repeats - 1} for every tuner, same budget, space "
        f"and measurer. Score: methodology score of Willemsen et al. (0 = random search's expected curve, "
        f"1 = the optimum from the first trial), in GFLOPS, averaged over the budget; it needs the exact curve "
        f"of random search, so only replay has it. Measuring time = build + run seconds of the candidates. "
        f"Logs: `logs/compare/bench-{args.mode}/`.",
        "",
        result.markdown(),
        "",
        f"![convergence](benchmarks/results/tuners_{args.mode}.png)",
        "",
        "Against the goals:",
        *verdict,
    ])
    update_section(f"tuners_{args.mode}", text)
    print(text)


if __name__ == "__main__":
    main()
