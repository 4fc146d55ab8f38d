"""Real CNNs (the ONNX model zoo graphs of onnx's backend test data, with random weights):
tvmopt untuned and tuned against onnxruntime and PyTorch in the same run, batch 1.

    python benchmarks/networks.py                       # all networks; tune resnet50 and squeezenet
    python benchmarks/networks.py --networks squeezenet --tune squeezenet --rounds 3
    python benchmarks/networks.py --reuse               # reuse earlier tuning records, only time
    python benchmarks/networks.py --ship                # also ship the best records in logs/records

Per network: the untuned build (default schedules only: no user or shipped records) with its
compile time; for the networks in ``--tune``, ``tvmopt tune`` with the CLI's default budget
from empty records, then the tuned build. Timings are interleaved rounds (median of calls per
round, median over rounds); each figure is a ratio to onnxruntime measured in that round
(> 1: tvmopt is faster). Writes benchmarks/results/networks_<cpu>.json (one per CPU kind: ``report.cpu_kind``) and BENCHMARKS.md's
``networks_<cpu>`` section.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import ROOT, machine, narrower_caveat, section_for, timed_rounds, update_section, write_json  # noqa: E402

WORK = ROOT / ".bench" / "networks"
SHIPPED = ROOT / "logs" / "records"
GOAL_UNTUNED = 0.8        # issue 19: every network, default schedules
GOAL_TUNED = 1.1          # issue 19: ResNet-50, SqueezeNet, Inception v1 with the default budget
GOAL_COMPILE_S = 180.0    # ResNet-50


def evaluate(name: str, target, tune: bool, trials: int, tuner: str, rounds: int, reuse: bool) -> dict:
    import onnxruntime as ort
    import torch

    from tvmopt.testing import zoo
    from tvmopt.build.compile import compile_model
    from tvmopt.tune.loop import tune_model

    path = zoo.realize(name, WORK / f"{name}.onnx")
    records = WORK / f"records-{name}"
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    x = np.random.default_rng(1).standard_normal(inp.shape).astype(np.float32)
    expected = sess.run(None, {inp.name: x})[0]
    runner = zoo.TorchRunner(path)
    torch.set_num_threads(target.config.get("num-cores", 2))

    start = time.perf_counter()
    untuned = compile_model(path, target, records=WORK / "no-records", shipped=False)
    compile_s = time.perf_counter() - start
    fns = {"onnxruntime": lambda: sess.run(None, {inp.name: x}), "torch": lambda: runner(x),
           "untuned": lambda: untuned(x)}
    row = {"network": name, "convs": sum(1 for la in untuned.lowered.layers if la.kernel.startswith(("conv2d:", "conv2d_nhwc:", "winograd_conv2d_nhwc:"))),
           "tasks": len(untuned.tuned), "defaulted_functions": len(untuned.defaulted or []),
           "compile_s": compile_s, "serial": untuned.serial,
           "err_untuned": _rel(untuned(x), expected), "err_torch": _rel(runner(x), expected)}
    if tune:
        if not (reuse and records.exists()):
            start = time.perf_counter()
            result = tune_model(path, target, tuner=tuner, trials=trials, records=records, progress=False,
                                log=lambda *_: None)
            row["tune_s"] = time.perf_counter() - start
            row["measured"] = sum(r.measured for _, _, _, r in result.tasks)
            row["trials"] = sum(budget for _, _, budget, _ in result.tasks)
            verdicts = result.verdicts or []
        else:       # an earlier run's records: the check that ends `tvmopt tune` now, on them
            from tvmopt.tune.network import check_in_network

            verdicts = check_in_network(path, target, records, log=lambda *_: None)
        row["checked"] = len(verdicts)
        row["kept_tuned"] = sum(1 for v in verdicts if v.chosen)
        tuned = compile_model(path, target, records=records, shipped=False)
        row["err_tuned"] = _rel(tuned(x), expected)
        fns["tuned"] = lambda: tuned(x)
    # each round in a fresh order, each contender after the previous runtime's threads went quiet
    # (report.timed_rounds, as benchmarks/suite.py): in the fixed order onnxruntime, torch,
    # untuned, tuned, the untuned ResNet-50 read 0.71x onnxruntime on a Zen 3; shuffled, on the
    # same machine and build the next day, 0.97x (15 rounds) and 0.97x (41 rounds, paired.py)
    samples = timed_rounds(fns, rounds, 0.3)
    ratios = {k: statistics.median(o / t for o, t in zip(samples["onnxruntime"], samples[k])) for k in fns}
    row.update({f"{k}_ms": statistics.median(v) * 1e3 for k, v in samples.items()})
    row.update({f"{k}_vs_onnxruntime": r for k, r in ratios.items() if k != "onnxruntime"})
    return row


def _earlier_rows(name: str, target_key: str, replaced: list[str]) -> list[dict]:
    """The rows of this CPU's earlier results for the networks not measured again (``--update``),
    each with the commit and date it was measured at (from the old header where the row has none)."""
    import json

    from report import RESULTS

    path = RESULTS / f"{name}.json"
    if not path.exists():
        return []
    old = json.loads(path.read_text())
    if old.get("target") != target_key:
        return []
    when = {"commit": old["machine"]["commit"], "date": old["machine"]["date"]}
    return [{**when, **r} for r in old["rows"] if r["network"] not in replaced]


def _rel(got, expected) -> float:
    return float(np.abs(got - expected).max() / max(np.abs(expected).max(), 1e-30))


def _when(rows: list[dict], meta: dict) -> str:
    """'<date>, commit <c>' for one run, or per commit which networks it measured (``--update``)."""
    by_commit: dict[str, list[str]] = {}
    for r in rows:
        by_commit.setdefault(r.get("commit", meta["machine"]["commit"]), []).append(r["network"])
    if len(by_commit) <= 1:
        return f"{meta['machine']['date']}, commit {meta['machine']['commit']}"
    parts = [f"commit {c} ({', '.join(nets)})" for c, nets in by_commit.items()]
    return "; ".join(parts) + f"; last {meta['machine']['date']}"


def table(rows: list[dict], meta: dict) -> str:
    caveat = narrower_caveat(meta["target"], meta.get("narrower_than_host"))
    lines = [
        f"## Real networks, {meta['target']} (issues 11 and 19)",
        "",
        f"`benchmarks/networks.py`, {meta['machine']['cpu']} ({meta['target']}), {_when(rows, meta)}. ONNX model zoo graphs from onnx's backend test data with random "
        f"weights (`tvmopt.testing.zoo.realize`), batch 1. Ratios are onnxruntime's time over each system's (> 1: faster "
        f"than onnxruntime), medians of {meta['rounds']} interleaved rounds. *untuned*: default schedules only "
        f"(no user or shipped records); *tuned*: after `tvmopt tune` from empty records with "
        f"{'the default budget (20 trials per task, at least 200)' if meta['trials'] is None else str(meta['trials']) + ' trials'}"
        f" and the {meta['tuner']} tuner (trials in the table; '(N new)' where `tvmopt tune` resumed from the records "
        f"of an earlier run in the same folder and measured only N of them; '-' with a tuned figure: the records of an "
        f"earlier run's tuning, reused); *kept*: of the tasks whose tuned configs the in-network check that ends `tvmopt tune` "
        f"timed against their starts inside the model (`tvmopt/tune/network.py`), those where a tuned config won and "
        f"builds run it (the others run their start). Goals (issue 19): untuned >= "
        f"{GOAL_UNTUNED}x everywhere, tuned >= {GOAL_TUNED}x on ResNet-50, SqueezeNet and Inception v1, "
        f"ResNet-50 compiled in <= {GOAL_COMPILE_S:.0f} s, outputs within 1e-4 of onnxruntime.{caveat}",
        "",
        "| network | convs | tasks | compile s | onnxruntime ms | torch | untuned | tuned | kept | trials | tune s | max rel err |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        tuned = f"{r['tuned_vs_onnxruntime']:.2f}x" if "tuned_vs_onnxruntime" in r else "-"
        tune_s = f"{r['tune_s']:.0f}" if "tune_s" in r else "-"
        kept = f"{r['kept_tuned']}/{r['checked']}" if "checked" in r else "-"
        trials = r.get("trials", "-")
        if "measured" in r and r["measured"] < r.get("trials", 0):     # a resumed run: records already held the rest
            trials = f"{trials} ({r['measured']} new)"
        err = max(r["err_untuned"], r.get("err_tuned", 0.0))
        lines.append(f"| {r['network']} | {r['convs']} | {r['tasks']} | {r['compile_s']:.1f} | "
                     f"{r['onnxruntime_ms']:.1f} | {r['torch_vs_onnxruntime']:.2f}x | "
                     f"{r['untuned_vs_onnxruntime']:.2f}x | {tuned} | {kept} | {trials} | {tune_s} | {err:.1e} |")
    met_untuned = [r["network"] for r in rows if r["untuned_vs_onnxruntime"] < GOAL_UNTUNED]
    met_tuned = [r["network"] for r in rows if r.get("tuned_vs_onnxruntime", GOAL_TUNED) < GOAL_TUNED]
    tuned_any = any("tuned_vs_onnxruntime" in r for r in rows)
    tuned_goal = ("none tuned in this run" if not tuned_any else
                  "all tuned" if not met_tuned else "not " + ", ".join(met_tuned))
    lines += ["", f"Untuned >= {GOAL_UNTUNED}x onnxruntime: {'all' if not met_untuned else 'not ' + ', '.join(met_untuned)}. "
                  f"Tuned >= {GOAL_TUNED}x: {tuned_goal}."]
    return "\n".join(lines)


def main() -> None:
    from tvmopt.testing import zoo
    from tvmopt.tune.loop import MODEL_TUNER
    from tvmopt.target import parse_target

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--networks", default=",".join(zoo.NETWORKS), help="comma-separated (default: all)")
    ap.add_argument("--tune", default="resnet50,squeezenet", help="networks to tune (default: resnet50,squeezenet)")
    ap.add_argument("--trials", type=int, default=None, help="tuning budget per network (default: tvmopt tune's)")
    ap.add_argument("--tuner", default=MODEL_TUNER)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--target", default="llvm")
    ap.add_argument("--reuse", action="store_true", help="reuse earlier tuning records instead of tuning again")
    ap.add_argument("--ship", action="store_true", help="merge the tuned networks' best records into logs/records")
    ap.add_argument("--update", action="store_true",
                    help="keep the other networks' rows of this CPU's earlier results (same target) in the table")
    args = ap.parse_args()
    target = parse_target(args.target)
    WORK.mkdir(parents=True, exist_ok=True)
    tune = set(filter(None, args.tune.split(",")))
    name, narrower = section_for("networks", target)
    chosen = args.networks.split(",")
    meta = {"machine": machine(), "target": target.key, "rounds": args.rounds, "trials": args.trials,
            "tuner": args.tuner, "narrower_than_host": narrower}
    kept = _earlier_rows(name, target.key, chosen) if args.update else []
    rows = []
    for net in chosen:
        row = evaluate(net, target, net in tune, args.trials, args.tuner, args.rounds, args.reuse)
        gc.collect()        # the network's builds and sessions, before the next network is timed
        row.update(commit=meta["machine"]["commit"], date=meta["machine"]["date"])
        print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
        rows.append(row)
    order = {n: i for i, n in enumerate(zoo.NETWORKS)}
    rows = sorted(kept + rows, key=lambda r: order.get(r["network"], len(order)))
    write_json(name, {**meta, "rows": rows})
    update_section(name, table(rows, meta))
    if args.ship:
        from tvmopt.records.store import pick_best

        sources = [SHIPPED] + [WORK / f"records-{n}" for n in tune if (WORK / f"records-{n}").exists()]
        header = (f"tvmopt shipped records on {target.key}: those this file held (e.g. the bundled digits models', "
                  f"benchmarks/e2e.py --ship) and the zoo networks {', '.join(sorted(tune))} (benchmarks/networks.py --ship, "
                  f"default budget, {args.tuner}, {meta['machine']['date']}); one record per task")
        shipped = SHIPPED / f"{target.key}.jsonl"
        if shipped.exists():      # the file's history (earlier ships, records dropped or replaced, and why) stays
            history = [line[2:] for line in shipped.read_text().splitlines() if line.startswith("# ")]
            header = "\n".join([header] + history)
        # this run's tuning replaces the shipped records of its tasks (costs from different days
        # do not compare: the machine's speed swings 1.5x within minutes)
        print("shipped", pick_best(sources, shipped, target.key, header, later_replaces=True), "records")


if __name__ == "__main__":
    main()
