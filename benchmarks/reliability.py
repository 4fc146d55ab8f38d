"""How tvmopt fails: the long variant of tests/reliability, written to RELIABILITY.md.

    python benchmarks/reliability.py                  # everything: ~30 minutes on 2 cores
    python benchmarks/reliability.py --fuzz 40 --kills 2   # a quicker pass

Runs, through the real command line:
  * every case of the bad-input catalogue (tvmopt/testing/reliability.py: BAD_INPUTS);
  * ``--fuzz N`` seeded mutations of the bundled ONNX models through ``inspect`` and ``build``;
  * the fault workload (segfault, abort, hang, wrong result, build error, build hang);
  * ``--kills K`` runs of ``tvmopt tune`` killed with SIGKILL at a random moment, then resumed;
  * two ``tvmopt tune`` processes writing one records file at once.
Writes benchmarks/results/reliability.json and RELIABILITY.md (tables of what was tried and
what went wrong; the goal for every "problems" and "lost" column is 0).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tvmopt.testing.reliability import (BAD_INPUTS, MUTATIONS, check_bad_input, cli_env, concurrent_tunes,  # noqa: E402
                                fuzz, kill_and_resume, records_file, run_cli)
from tvmopt.testing.faults import BEHAVIOURS  # noqa: E402


def bad_inputs(work: Path) -> list[dict]:
    rows = []
    for i, case in enumerate(BAD_INPUTS):
        problem = check_bad_input(case, work / "bad" / str(i))
        rows.append({"case": case.name, "expected": case.needle, "problem": problem})
        print(f"  {case.name:<48} {'ok' if problem is None else 'PROBLEM: ' + problem}", flush=True)
    return rows


def fuzzing(work: Path, n: int, jobs: int) -> dict:
    def show(case):
        status = case.problem or f"exit {case.outcome.returncode}"
        print(f"  seed {case.seed:>3} {case.kind:<20} {case.model:<32} {case.command:<8} "
              f"{case.outcome.seconds:5.1f}s {status}", flush=True)

    cases = fuzz(work / "fuzz", range(n), on_case=show, jobs=jobs)
    by_kind: dict[str, Counter] = defaultdict(Counter)
    for c in cases:
        by_kind[c.kind]["runs"] += 1
        by_kind[c.kind]["exit 0"] += c.outcome.returncode == 0
        by_kind[c.kind]["exit 2"] += c.outcome.returncode == 2
        by_kind[c.kind]["problems"] += c.problem is not None
    problems = [{"seed": c.seed, "model": c.model, "kind": c.kind, "command": c.command, "problem": c.problem}
                for c in cases if c.problem]
    seconds = sorted(c.outcome.seconds for c in cases)
    return {"mutants": n, "runs": len(cases), "by_kind": {k: dict(v) for k, v in by_kind.items()},
            "problems": problems, "median_s": seconds[len(seconds) // 2] if seconds else 0,
            "max_s": seconds[-1] if seconds else 0}


def faults(work: Path) -> dict:
    records = work / "faults"
    outcome = run_cli(["tune", "fault:16", "--trials", str(len(BEHAVIOURS)), "--records", str(records),
                       "--build-timeout", "10", "--run-timeout", "10", "--no-compare", "--verbose"],
                      work, env=cli_env(records), timeout=600)
    rows = [json.loads(line) for line in records_file(records).read_text().splitlines()] if outcome.returncode == 0 else []
    recorded = {row["config"][0]: row["error"] for row in rows}
    best = next((ln.split()[-1] for ln in outcome.stdout.splitlines() if ln.strip().startswith("behaviour")), None)
    return {"exit": outcome.returncode, "problem": outcome.problem(), "recorded": recorded, "best": best,
            "seconds": round(outcome.seconds, 1)}


def kills(work: Path, n: int) -> list[dict]:
    out = []
    for seed in range(n):
        r = kill_and_resume(work / "kills", seed)
        print(f"  seed {seed}: {r}", flush=True)
        out.append(asdict(r))
    return out


def markdown(result: dict) -> str:
    lines = ["# Reliability", "",
             f"Produced by `python benchmarks/reliability.py --fuzz {result['fuzz']['mutants']} --kills "
             f"{len(result['kills'])}` on {result['machine']} ({result['date']}); "
             "rerun it to check. Each probe drives the real command line in a subprocess "
             "(`tvmopt/testing/reliability.py`); `tests/reliability/` runs a short variant of each in CI.", "",
             "| probe | tried | problems | records lost |", "|---|---:|---:|---:|"]
    bad = result["bad_inputs"]
    fz = result["fuzz"]
    f = result["faults"]
    ks = result["kills"]
    cc = result["concurrent"]
    kill_problems = sum(k["invalid_lines"] + k["duplicates"] + k["orphans"] + (not k["resume_ok"])
                        + (k["final_trials"] != k["trials"]) for k in ks)
    fault_ok = f["exit"] == 0 and f["best"] == "ok" and len(f["recorded"]) == len(BEHAVIOURS)
    lines += [
        f"| bad inputs (one `tvmopt: error:` line, exit 2, no output left) | {len(bad)} | "
        f"{sum(r['problem'] is not None for r in bad)} | - |",
        f"| fuzzed ONNX models through `inspect` and `build` (exit 0 or 2, no crash, hang or traceback) | "
        f"{fz['mutants']} mutants, {fz['runs']} runs | {len(fz['problems'])} | - |",
        f"| faulty candidates (each recorded with its kind, tuning goes on, best is correct) | {len(BEHAVIOURS)} | "
        f"{0 if fault_ok else 1} | - |",
        f"| `kill -9` of `tvmopt tune`, then resume | {len(ks)} | "
        f"{kill_problems} | "
        f"{sum(k['lost'] for k in ks)} |",
        f"| two `tvmopt tune` writing one records file | 2 processes, {cc['reported']} measurements | "
        f"{cc['invalid_lines'] + (2 - cc['processes_ok'])} | {cc['lost']} |",
        "", "## Bad inputs", "", "| input | the error line contains | result |", "|---|---|---|"]
    lines += [f"| {r['case']} | `{r['expected']}` | {'ok' if r['problem'] is None else r['problem']} |" for r in bad]
    lines += ["", "## Fuzzing", "",
              f"Seed *i* mutates bundled model *i* mod 6 with mutation *i* mod {len(MUTATIONS)}; `build` runs only on "
              "mutants `inspect` accepted. Median run {:.1f} s, slowest {:.1f} s.".format(fz["median_s"], fz["max_s"]),
              "", "| mutation | runs | exit 0 | exit 2 | problems |", "|---|---:|---:|---:|---:|"]
    for kind in MUTATIONS:
        c = fz["by_kind"].get(kind, {})
        lines.append(f"| {kind} | {c.get('runs', 0)} | {c.get('exit 0', 0)} | {c.get('exit 2', 0)} | "
                     f"{c.get('problems', 0)} |")
    for p in fz["problems"]:
        lines.append(f"\n- problem: seed {p['seed']} ({p['kind']}, {p['model']}, {p['command']}): {p['problem']}")
    lines += ["", "## Faulty candidates", "",
              f"`tvmopt tune fault:16 --trials {len(BEHAVIOURS)} --build-timeout 10 --run-timeout 10`: exit {f['exit']} "
              f"in {f['seconds']} s, best config `{f['best']}`.", "", "| candidate | recorded as |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(f["recorded"].items())]
    lines += ["", "## Killed runs", "",
              "Each run tunes `gemm:48x48x32` (40 trials, batches of 4, `--verbose`); once it has reported a "
              "measurement it is killed with SIGKILL after a seeded random delay (0 to 5 s), mid-run, then the same "
              "command resumes it. *Reported* = measurements the killed run printed as recorded; *lost* = reported "
              "but not in the file; *workers left* = its build and run workers still alive a second after the kill.",
              "", "| seed | killed after (s) | reported | lost | invalid lines | measured twice | trials after resume "
              "| workers left |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {k['seed']} | {k['killed_after_s']} | {k['reported_before_kill']} | {k['lost']} | "
              f"{k['invalid_lines']} | {k['duplicates']} | {k['final_trials']}/{k['trials']} | {k['orphans']} |" for k in ks]
    lines += ["", "## Concurrent writers", "",
              f"`random` (seed 1) and `gbfs` (seed 2) tuning `gemm:32x32x32` into one records directory at once: "
              f"{cc['processes_ok']}/2 exited 0, {cc['reported']} measurements reported, {cc['records']} in the file, "
              f"{cc['lost']} lost, {cc['invalid_lines']} invalid lines.", ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fuzz", type=int, default=200, help="mutants (default: 200)")
    ap.add_argument("--kills", type=int, default=5, help="killed runs (default: 5)")
    ap.add_argument("--jobs", type=int, default=2, help="fuzzed models run at a time (default: 2)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "reliability.json"))
    ap.add_argument("--markdown", default=str(ROOT / "RELIABILITY.md"))
    ap.add_argument("--reuse", action="store_true", help="keep the sections already in --out (after an interruption)")
    args = ap.parse_args()
    out = Path(args.out)
    result = json.loads(out.read_text()) if args.reuse and out.exists() else {}
    from tvmopt.target import parse_target

    result.update({"machine": f"`{parse_target('llvm').key}` ({platform.machine()})", "date": time.strftime("%Y-%m-%d")})
    sections = [("bad_inputs", "bad inputs", bad_inputs), ("fuzz", "fuzzing", lambda w: fuzzing(w, args.fuzz, args.jobs)),
                ("faults", "faulty candidates", faults), ("kills", "killed runs", lambda w: kills(w, args.kills)),
                ("concurrent", "concurrent writers", lambda w: asdict(concurrent_tunes(w / "concurrent")))]
    with tempfile.TemporaryDirectory(prefix="tvmopt-reliability-") as tmp:
        for key, title, run in sections:
            if key in result:
                print(f"{title}: reused from {out}", flush=True)
                continue
            print(f"{title}:", flush=True)
            result[key] = run(Path(tmp))
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=2) + "\n")       # each section saved as it ends
    print(f"  faults: {result['faults']}\n  concurrent: {result['concurrent']}", flush=True)
    Path(args.markdown).write_text(markdown(result))
    print(f"wrote {args.out} and {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
