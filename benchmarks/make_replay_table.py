"""Measure a sub-space of one task exhaustively, for exact and cheap tuner comparisons.

    python benchmarks/make_replay_table.py --workload dense:64x1024x1024 [--size 2000]
    python benchmarks/make_replay_table.py --all          # every table of TABLES, in turn

Which configs: ``schedules.replay.table_members`` (the untiled config, the space's heuristic
start for this CPU, a shortest path of moves between them, the tilings around both and every
combination of choice values between default and start; connected under the tuners' moves).
The legacy ``gemm:256x256x256`` table keeps its own restriction (``schedules.gemm.replay_subspace``).

Every config is built, checked against numpy and timed by the normal LocalMeasurer;
measurements go to logs/replay/records/ as they arrive, filed under the task's full space, so
a killed run resumes and a larger ``--size`` reuses what is measured. Then the fastest 1% (at
least 8) and the heuristic start are re-measured in 5 interleaved rounds: their table cost
becomes their median time relative to the rest of their round, on the sweep's scale
(:func:`on_sweep_scale`; so the start's share of the optimum, where live runs start, is not one
noisy sweep measurement: on the Ice Lake Xeon the sweep put dense:128x3072x768's start at 62%,
re-measured against the optimum it ran at 94%), and the header gets the noise band (the
fastest 1%'s spread over the rounds). ``--remeasure TABLE...`` repeats only that step on
tables of this CPU kind whose sweep records did not ship. The table goes to
logs/replay/<workload>_<target key>.json. `tvmopt compare --replay TABLE` replays it.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

from report import ROOT, machine
from tqdm import tqdm

from tvmopt.measure.local import LocalMeasurer
from tvmopt.ops.task import task_for
from tvmopt.records.store import Record, RecordCache, tvm_version
from tvmopt.schedules import isa
from tvmopt.schedules.replay import connected, table_members
from tvmopt.schedules.space import config_to_json, restrict
from tvmopt.target import parse_target

BATCH = 16
#: the tables of the tuner benchmark (issue 20), cheapest first
TABLES = ["dense:1x4096x4096", "dense:64x1024x1024", "binary_dense:16x1024x1024",
          "conv2d:1x64x56x56x64x3x3x1x1", "dense:128x3072x768", "dense:1024x1024x1024"]
LEGACY = "gemm:256x256x256"
#: the header's account of the sweep (the re-measurement's sentence follows it)
SWEEP_HOW = ("tvmopt LocalMeasurer on this machine: parallel builds, serial runs, each candidate checked against "
             "numpy (that run is the warm-up), cost = median of 3 repeats of time_evaluator(min_repeat_ms=40), "
             "in seconds; null = failed; entries are [config, cost, error kind, build+run seconds].")


def members_for(task, size: int):
    if task.key == LEGACY:
        from tvmopt.schedules.gemm import replay_subspace

        return list(replay_subspace(task.shape).all()), "schedules.gemm.replay_subspace"
    return table_members(task.space, size), f"schedules.replay.table_members(size={size})"


def make_table(workload: str, size: int, out_dir=ROOT / "logs" / "replay", top_share: float = 0.01,
               rounds: int = 5, fresh: bool = False) -> None:
    target = parse_target("llvm")
    with isa.use(isa.for_target(target)):   # the heuristic start of this CPU
        task = task_for(workload, "llvm")
    members, restriction = members_for(task, size)
    sub = restrict(task.space, members)
    if not connected(task.space, members):
        raise SystemExit(f"{workload}: the table's configs are not connected under moves")
    full_fp = task.space.fingerprint()
    cache = RecordCache(out_dir / "records")
    wanted = set(members)
    done = {r.config: r for r in cache.load(target.key, task.key)
            if r.space in (full_fp, sub.fingerprint()) and r.config in wanted and r.tuner == "exhaustive"}
    todo = [c for c in members if c not in done or fresh]
    start = time.time()
    with LocalMeasurer(target, run_timeout=10) as measurer:
        with tqdm(total=len(members), initial=len(members) - len(todo), desc=workload, unit="config") as bar:
            for i in range(0, len(todo), BATCH):
                batch = todo[i:i + BATCH]
                results = measurer.measure(task.key, batch)
                records = [Record.from_result(task.key, target.key, c, r, full_fp, "exhaustive")
                           for c, r in zip(batch, results)]
                cache.append(records)
                done.update((r.config, r) for r in records)
                bar.update(len(batch))
        sweep = {c: done[c].cost for c in members}
        cost, noise, how = remeasure_fastest(measurer, task.key, members, sweep, task.space.start, top_share, rounds)
    info = machine()
    entries = [[config_to_json(c), cost[c] if math.isfinite(cost[c]) else None, done[c].error,
                round(done[c].build_s + done[c].run_s, 4)] for c in members]
    header = {
        "workload": task.key, "target": target.key, "space": sub.fingerprint(), "configs": len(entries),
        "space_size": task.space.size(), "restriction": restriction, "measured_on": info["cpu"],
        "date": info["date"], "tvm": tvm_version(), "commit": info["commit"],
        "untiled": config_to_json(task.space.untiled()),
        "start": config_to_json(task.space.start) if task.space.start is not None else None,
        "how": SWEEP_HOW + " " + how,
        "noise": noise,
        "command": f"python benchmarks/make_replay_table.py --workload {task.key} --size {size}",
        "wall_s_this_run": round(time.time() - start, 1),
    }
    out = out_dir / f"{task.key.replace(':', '_')}_{target.key}.json"
    out.write_text(json.dumps({"header": header, "entries": entries}, separators=(",", ":")) + "\n")
    print(f"wrote {out} ({len(entries)} configs; noise band of the top {header['noise']['remeasured']}: median spread "
          f"{header['noise']['spread_median']}, max {header['noise']['spread_max']})")


def on_sweep_scale(remeasured: dict, anchors: list, sweep: dict) -> dict:
    """Costs of re-measured configs that compare with the sweep's: each round's samples divided
    by that round's median over ``anchors`` (the fastest configs), the median of those ratios per
    config, times the anchors' median sweep cost. Rounds on a busier or calmer machine then move
    no config against the others of its round, nor the re-measured configs against the ones only
    the sweep timed: on Zen 4 the rounds of dense:1x4096x4096 (weights read from a cache that other
    tenants share) ran 1.2 to 3.8x the sweep's times, which as raw medians left a config the
    rounds did not re-time as the table's optimum, at half the cost of the configs that were."""
    if not anchors:
        return {}
    rounds = min(len(remeasured[c]) for c in anchors)
    per_round = [statistics.median(remeasured[c][r] for c in anchors) for r in range(rounds)]
    scale = statistics.median(sweep[c] for c in anchors)
    return {c: scale * statistics.median(s[r] / per_round[r] for r in range(min(rounds, len(s))))
            for c, s in remeasured.items()}


def remeasure_fastest(measurer, key: str, members, sweep: dict, start_cfg, top_share: float, rounds: int):
    """Re-measure the fastest ``top_share`` of ``members`` (at least 8) by their ``sweep`` costs,
    and the heuristic start ``start_cfg``, in ``rounds`` interleaved rounds: the start's share of
    the optimum (where live runs start) then comes from the same rounds as the optimum, not from
    one noisy sweep measurement. Returns (costs, the re-measured ones by :func:`on_sweep_scale`;
    the header's noise band: the fastest share's spread over the rounds; the header's sentence on it)."""
    ok = sorted((c for c in members if math.isfinite(sweep[c])), key=lambda c: sweep[c])
    top = ok[:max(8, int(top_share * len(members)))]
    extra = [start_cfg] if start_cfg in sweep and math.isfinite(sweep[start_cfg]) and start_cfg not in top else []
    samples = measurer.remeasure(key, top + extra, rounds)
    remeasured = {c: s for c, s in zip(top + extra, samples) if s}
    top_samples = [remeasured[c] for c in top if c in remeasured]     # the noise band: the fastest 1% only
    spreads = [(max(s) - min(s)) / statistics.median(s) for s in top_samples]
    start_remeasured = any(c in remeasured for c in extra)
    cost = dict(sweep)
    cost.update(on_sweep_scale(remeasured, [c for c in top if c in remeasured], sweep))
    best_sweep, best_after = ok[0], min(remeasured, key=lambda c: cost[c]) if remeasured else ok[0]
    noise = {"remeasured": len(top_samples), "rounds": rounds,
             "spread_median": statistics.median(spreads) if spreads else None,
             "spread_max": max(spreads) if spreads else None,
             "sweep_best_still_best": best_sweep == best_after,
             "samples": [[config_to_json(c), sweep[c], list(s)] for c, s in remeasured.items()]}
    how = (f"The fastest {len(top)}{' and the heuristic start' if start_remeasured else ''} were re-measured in "
           f"{rounds} interleaved rounds; each carries its median time relative to the others in the same round, "
           f"put on the sweep's scale (the fastest re-measured configs' median sweep cost).")
    return cost, noise, how


def remeasure_table(path: Path, top_share: float = 0.01, rounds: int = 5) -> None:
    """Re-time the fastest share and the heuristic start of a table measured on this CPU kind
    (the tables of CPU kinds whose sweep records did not ship: a re-sweep would take each table
    20 minutes, this takes one or two). The sweep costs of the rest stay; the header's start is
    the one re-measured (what the replay starts from), and the header says when."""
    from tvmopt.schedules.space import config_from_json

    target = parse_target("llvm")
    data = json.loads(path.read_text())
    header = data["header"]
    if header.get("target") != target.key:
        raise SystemExit(f"{path.name} was measured on {header.get('target')}, this machine is {target.key}: "
                         "re-measure it there")
    with isa.use(isa.for_target(target)):
        task = task_for(header["workload"], "llvm")
    members = [config_from_json(e[0]) for e in data["entries"]]
    sweep = {c: (e[1] if e[1] is not None else math.inf) for c, e in zip(members, data["entries"])}
    start_cfg = config_from_json(header["start"]) if header.get("start") is not None else None
    begun = time.time()
    with LocalMeasurer(target, run_timeout=10) as measurer:
        cost, noise, how = remeasure_fastest(measurer, task.key, members, sweep, start_cfg, top_share, rounds)
    for c, e in zip(members, data["entries"]):
        e[1] = cost[c] if math.isfinite(cost[c]) else None
    info = machine()
    header["noise"] = noise
    header["how"] = SWEEP_HOW + " " + how
    header["remeasured"] = {"date": info["date"], "commit": info["commit"], "wall_s": round(time.time() - begun, 1),
                            "command": f"python benchmarks/make_replay_table.py --remeasure {path.name}"}
    path.write_text(json.dumps(data, separators=(",", ":")) + "\n")
    print(f"re-measured {path} (noise band of the top {noise['remeasured']}: median spread {noise['spread_median']}, "
          f"max {noise['spread_max']})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", default=LEGACY)
    parser.add_argument("--all", action="store_true", help="every table of TABLES in turn")
    parser.add_argument("--size", type=int, default=2000, help="about this many configs per table")
    parser.add_argument("--out", default=str(ROOT / "logs" / "replay"), help="tables here, records in its records/")
    parser.add_argument("--fresh", action="store_true",
                        help="measure every config again (e.g. after a run that shared the machine); the newest "
                             "measurement of a config is the one used")
    parser.add_argument("--remeasure", nargs="+", metavar="TABLE",
                        help="re-time only the fastest 1%% and the heuristic start of these existing tables "
                             "(file names under --out, measured on this CPU kind), keeping the other costs")
    args = parser.parse_args()
    if args.remeasure:
        for name in args.remeasure:
            remeasure_table(Path(args.out) / Path(name).name)
        return
    for workload in (TABLES if args.all else [args.workload]):
        make_table(workload, args.size, Path(args.out), fresh=args.fresh)


if __name__ == "__main__":
    main()
