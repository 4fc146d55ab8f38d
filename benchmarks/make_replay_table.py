"""Measure a restricted GEMM space exhaustively once, for exact and cheap tuner comparisons.

    python benchmarks/make_replay_table.py [--workload gemm:256x256x256]

Every config of ``schedules.gemm.replay_subspace`` is built, checked and timed by the normal
LocalMeasurer; measurements go to logs/replay/records/ as they arrive (a killed run resumes),
and the finished table is written to logs/replay/<workload>_<target key>.json with a header
saying where, when and how it was measured. `tvmopt compare --replay TABLE` replays it.
"""

from __future__ import annotations

import argparse
import json
import math
import time

from report import ROOT, machine
from tqdm import tqdm

from tvmopt.records.store import Record, RecordCache, tvm_version
from tvmopt.measure.local import LocalMeasurer
from tvmopt.schedules.gemm import replay_subspace
from tvmopt.schedules.space import config_to_json
from tvmopt.target import parse_target
from tvmopt.ops.task import get_task

BATCH = 16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", default="gemm:256x256x256")
    args = parser.parse_args()

    target = parse_target("llvm")
    task = get_task(args.workload)
    space = replay_subspace(task.shape)
    cache = RecordCache(ROOT / "logs" / "replay" / "records")
    done = {r.config: r for r in cache.load(target.key, task.key) if r.space == space.fingerprint()}
    todo = [c for c in space.all() if c not in done]
    start = time.time()
    with LocalMeasurer(target, run_timeout=10) as measurer, tqdm(total=space.size(), initial=len(done),
                                                                 desc="replay table", unit="config") as bar:
        for i in range(0, len(todo), BATCH):
            batch = todo[i:i + BATCH]
            results = measurer.measure(task.key, batch)
            records = [Record.from_result(task.key, target.key, c, r, space.fingerprint(), "exhaustive")
                       for c, r in zip(batch, results)]
            cache.append(records)
            done.update((r.config, r) for r in records)
            bar.update(len(batch))
    info = machine()
    entries = [[config_to_json(c), done[c].cost if math.isfinite(done[c].cost) else None, done[c].error,
                round(done[c].build_s + done[c].run_s, 4)] for c in space.all()]
    header = {
        "workload": task.key, "target": target.key, "space": space.fingerprint(), "configs": len(entries),
        "restriction": "schedules.gemm.replay_subspace", "measured_on": info["cpu"], "date": info["date"],
        "tvm": tvm_version(), "commit": info["commit"],
        "how": "tvmopt LocalMeasurer on this machine: parallel builds, serial runs, each candidate checked against "
               "numpy, cost = median of 3 repeats of time_evaluator(min_repeat_ms=40), in seconds; null = failed; entries are [config, cost, error kind, build+run seconds]",
        "command": f"python benchmarks/make_replay_table.py --workload {task.key}",
        "wall_s_this_run": round(time.time() - start, 1),
    }
    out = ROOT / "logs" / "replay" / f"{task.key.replace(':', '_')}_{target.key}.json"
    out.write_text(json.dumps({"header": header, "entries": entries}, separators=(",", ":")) + "\n")
    print(f"wrote {out} ({len(entries)} configs)")


if __name__ == "__main__":
    main()
