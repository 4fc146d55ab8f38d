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
becomes the re-measured median (so the start's share of the optimum, where live runs start,
is not one noisy sweep measurement: on the Ice Lake Xeon the sweep put dense:128x3072x768's
start at 62%, re-measured against the optimum it ran at 94%), and the header gets the noise
band (the fastest 1%'s spread over the rounds). The table goes to
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
        ok = sorted((c for c in members if math.isfinite(done[c].cost)), key=lambda c: done[c].cost)
        top = ok[:max(8, int(top_share * len(members)))]
        # the heuristic start too: its share of the optimum (where live runs start) then comes from
        # the same interleaved rounds as the optimum, not from one noisy sweep measurement
        start_cfg = task.space.start
        extra = [start_cfg] if start_cfg in done and math.isfinite(done[start_cfg].cost) and start_cfg not in top else []
        samples = measurer.remeasure(task.key, top + extra, rounds)
    remeasured = {c: s for c, s in zip(top + extra, samples) if s}
    top_samples = [remeasured[c] for c in top if c in remeasured]     # the noise band: the fastest 1% only
    spreads = [(max(s) - min(s)) / statistics.median(s) for s in top_samples]
    start_remeasured = any(c in remeasured for c in extra)
    cost = {c: (statistics.median(remeasured[c]) if c in remeasured else done[c].cost) for c in members}
    info = machine()
    entries = [[config_to_json(c), cost[c] if math.isfinite(cost[c]) else None, done[c].error,
                round(done[c].build_s + done[c].run_s, 4)] for c in members]
    best_sweep, best_after = ok[0], min(remeasured, key=lambda c: cost[c]) if remeasured else ok[0]
    header = {
        "workload": task.key, "target": target.key, "space": sub.fingerprint(), "configs": len(entries),
        "space_size": task.space.size(), "restriction": restriction, "measured_on": info["cpu"],
        "date": info["date"], "tvm": tvm_version(), "commit": info["commit"],
        "untiled": config_to_json(task.space.untiled()),
        "start": config_to_json(task.space.start) if task.space.start is not None else None,
        "how": "tvmopt LocalMeasurer on this machine: parallel builds, serial runs, each candidate checked against "
               "numpy (that run is the warm-up), cost = median of 3 repeats of time_evaluator(min_repeat_ms=40), "
               "in seconds; null = failed; entries are [config, cost, error kind, build+run seconds]. The fastest "
               f"{len(top)}{' and the heuristic start' if start_remeasured else ''} were re-measured in {rounds} interleaved "
               "rounds and carry the rounds' median.",
        "noise": {"remeasured": len(top_samples), "rounds": rounds,
                  "spread_median": statistics.median(spreads) if spreads else None,
                  "spread_max": max(spreads) if spreads else None,
                  "sweep_best_still_best": best_sweep == best_after,
                  "samples": [[config_to_json(c), done[c].cost, list(s)] for c, s in remeasured.items()]},
        "command": f"python benchmarks/make_replay_table.py --workload {task.key} --size {size}",
        "wall_s_this_run": round(time.time() - start, 1),
    }
    out = out_dir / f"{task.key.replace(':', '_')}_{target.key}.json"
    out.write_text(json.dumps({"header": header, "entries": entries}, separators=(",", ":")) + "\n")
    print(f"wrote {out} ({len(entries)} configs; noise band of the top {header['noise']['remeasured']}: median spread "
          f"{header['noise']['spread_median']}, max {header['noise']['spread_max']})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", default=LEGACY)
    parser.add_argument("--all", action="store_true", help="every table of TABLES in turn")
    parser.add_argument("--size", type=int, default=2000, help="about this many configs per table")
    parser.add_argument("--out", default=str(ROOT / "logs" / "replay"), help="tables here, records in its records/")
    parser.add_argument("--fresh", action="store_true",
                        help="measure every config again (e.g. after a run that shared the machine); the newest "
                             "measurement of a config is the one used")
    args = parser.parse_args()
    for workload in (TABLES if args.all else [args.workload]):
        make_table(workload, args.size, Path(args.out), fresh=args.fresh)


if __name__ == "__main__":
    main()
