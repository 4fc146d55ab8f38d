"""Compare tuners' search cost: same space, same budget, same measurer, repeated seeds.

Every trial of every run is logged (JSON lines, one file per tuner and repeat). The summary
per tuner: best GFLOPS at the budget (median and IQR over repeats), trials and measurement
time to reach 90/95/99% of the reference (the replay table's optimum, or the best config seen
by any run when measuring live), the fraction of the space explored, and the methodology score
of Willemsen et al.: the area between the tuner's median best-so-far curve and random search's
expected curve, normalised so 0 = random and 1 = the optimum from the first trial on.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tvmopt.records.store import Record
from tvmopt.errors import UserError
from tvmopt.measure.base import Measurer
from tvmopt.measure.replay import ReplayMeasurer
from tvmopt.schedules.space import Space
from tvmopt.ops.task import Task
from tvmopt.tune.loop import REMEASURE_ROUNDS, REMEASURE_TOP, interactive
from tvmopt.tuners import check_tuner, make_tuner, tuner_identity

THRESHOLDS = (0.90, 0.95, 0.99)


@dataclass
class Run:
    """One tuner, one seed: per trial, its cost and the measurement seconds spent so far."""

    tuner: str
    seed: int
    costs: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    configs: list = field(default_factory=list)
    remeasured: float | None = None  # live: the best of its top configs re-measured interleaved (seconds)

    def top(self, k: int) -> list:
        """Its k fastest configs by in-run cost."""
        ranked = sorted(((c, cfg) for c, cfg in zip(self.costs, self.configs) if math.isfinite(c)), key=lambda x: x[0])
        return [cfg for _, cfg in ranked[:k]]

    def best_so_far(self, flops: float) -> np.ndarray:
        perf = np.array([flops / c / 1e9 if math.isfinite(c) else 0.0 for c in self.costs])
        return np.maximum.accumulate(perf) if len(perf) else perf


def expected_random_curve(perfs: list[float], budget: int) -> np.ndarray:
    """E[best of M distinct uniform draws] for M = 1..budget, exactly (order statistics).

    With values sorted in descending order, P(best is the i-th) = C(N-i, M-1) / C(N, M).
    """
    values = np.sort(np.asarray(perfs, dtype=float))[::-1]
    n = len(values)
    out = np.empty(budget)
    ranks = np.arange(1, n + 1)
    for m in range(1, budget + 1):
        if m >= n:
            out[m - 1] = values[0]
            continue
        log_p = _log_comb(n - ranks, m - 1) - _log_comb(n, m)
        out[m - 1] = float(np.sum(np.exp(log_p) * values))
    return out


def _log_comb(n, k):
    from scipy.special import gammaln

    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore"):
        res = gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)
    return np.where(n >= k, res, -np.inf)


def methodology_score(curve: np.ndarray, random_curve: np.ndarray, optimum: float) -> float:
    """Mean over the budget of (S(t) - R(t)) / (opt - R(t)): 0 = random, 1 = optimum throughout."""
    t = min(len(curve), len(random_curve))
    s, r = curve[:t], random_curve[:t]
    gap = optimum - r
    valid = gap > 1e-12 * optimum
    if not valid.any():
        return float("nan")
    return float(np.mean((s[valid] - r[valid]) / gap[valid]))


def _first_reaching(curve: np.ndarray, level: float) -> int | None:
    hits = np.nonzero(curve >= level)[0]
    return int(hits[0]) + 1 if len(hits) else None


@dataclass
class TunerSummary:
    tuner: str
    best_gflops: tuple[float, float, float]  # q25, median, q75
    trials_to: dict[float, float | None]  # threshold -> median trials (None: most runs never got there)
    seconds_to: dict[float, float | None]  # measurement seconds (build + run) spent until then
    explored: float | None  # fraction of the space measured to reach 95% (median trials / size)
    score: float
    in_run_best: float | None = None  # live: median in-run best GFLOPS, before re-measurement


@dataclass
class Comparison:
    task: Task
    space: Space
    runs: list[Run]
    reference: float  # GFLOPS that the thresholds refer to
    random_curve: np.ndarray | None
    budget: int
    mode: str  # "replay" or "live"
    summaries: list[TunerSummary] = field(default_factory=list)
    references: list[dict] = field(default_factory=list)  # other tuners run once, e.g. MetaSchedule

    def add_reference(self, name: str, gflops: float, wall_s: float, trials: int) -> None:
        self.references.append({"name": name, "gflops": gflops, "wall_s": wall_s, "trials": trials})

    def curves(self, tuner: str) -> np.ndarray:
        rows = [_pad(r.best_so_far(self.task.flops), self.budget) for r in self.runs if r.tuner == tuner]
        return np.array(rows)

    def summarize(self) -> list[TunerSummary]:
        self.summaries = []
        for tuner in dict.fromkeys(r.tuner for r in self.runs):
            runs = [r for r in self.runs if r.tuner == tuner]
            curves = self.curves(tuner)
            finals = curves[:, -1]
            trials_to, seconds_to = {}, {}
            for th in THRESHOLDS:
                hits = [_first_reaching(c, th * self.reference) for c in curves]
                reached = [h for h in hits if h is not None]
                trials_to[th] = float(np.median([h if h is not None else math.inf for h in hits])) \
                    if len(reached) * 2 > len(hits) else None
                secs = [r.seconds[h - 1] if h is not None else math.inf for r, h in zip(runs, hits)]
                seconds_to[th] = float(np.median(secs)) if trials_to[th] is not None else None
            # expected value against expected value: the median of skewed best-so-far curves
            # would put random search itself well above 0
            score = (methodology_score(np.mean(curves, axis=0), self.random_curve, self.reference)
                     if self.random_curve is not None else float("nan"))
            explored = None if trials_to[0.95] is None else trials_to[0.95] / self.space.size()
            in_run = None
            if runs and all(r.remeasured for r in runs):  # live: the re-measured bests decide
                in_run = float(np.median(finals))
                finals = np.array([self.task.flops / r.remeasured / 1e9 for r in runs])
            q25, med, q75 = np.percentile(finals, [25, 50, 75])
            self.summaries.append(TunerSummary(tuner, (q25, med, q75), trials_to, seconds_to, explored, score,
                                               in_run))
        return self.summaries

    def markdown(self) -> str:
        summaries = self.summaries or self.summarize()
        ref_name = "table optimum" if self.mode == "replay" else "best seen by any run"
        lines = [
            f"`{self.task.key}`, {self.mode}, budget {self.budget} trials, "
            f"{len(self.runs) // max(1, len(summaries))} repeats, space of {self.space.size():,} configs; "
            f"reference = {ref_name} = {self.reference:.1f} GFLOPS.",
            "",
            f"| tuner | best GFLOPS{' re-measured' if any(s.in_run_best for s in summaries) else ''} (median [IQR]) "
            "| trials to 90% | to 95% | to 99% | measuring time to 95% "
            "| space explored to 95% | score |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for s in summaries:
            q25, med, q75 = s.best_gflops
            cells = [_fmt_trials(s.trials_to[th], self.budget) for th in THRESHOLDS]
            secs = s.seconds_to[0.95]
            before = f" (in run {s.in_run_best:.1f})" if s.in_run_best else ""
            lines.append(f"| {s.tuner} | {med:.1f} [{q25:.1f}, {q75:.1f}]{before} | " + " | ".join(cells) +
                         f" | {'-' if secs is None else f'{secs:.0f} s'} | "
                         f"{'-' if s.explored is None else f'{100 * s.explored:.2g}%'} | "
                         f"{'n/a (live)' if math.isnan(s.score) else f'{s.score:.3f}'} |")
        for ref in self.references:
            lines.append(f"| {ref['name']} (1 run, {ref['trials']} trials) | {ref['gflops']:.1f} | | | | "
                         f"total {ref['wall_s']:.0f} s | | |")
        return "\n".join(lines)

    def save(self, log_dir: Path) -> None:
        """summary.md, summary.json and convergence.png in ``log_dir``."""
        (log_dir / "summary.md").write_text(self.markdown() + "\n")
        (log_dir / "summary.json").write_text(json.dumps(_summary_json(self), indent=2) + "\n")
        self.plot(log_dir / "convergence.png")

    def plot(self, path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
        x = np.arange(1, self.budget + 1)
        for tuner in dict.fromkeys(r.tuner for r in self.runs):
            curves = self.curves(tuner)
            q25, med, q75 = np.percentile(curves, [25, 50, 75], axis=0)
            (line,) = ax.plot(x, med, label=tuner, lw=1.6)
            ax.fill_between(x, q25, q75, color=line.get_color(), alpha=0.18, lw=0)
        if self.random_curve is not None:
            ax.plot(x, self.random_curve[: self.budget], "k--", lw=1, label="random (expected)")
        ax.axhline(self.reference, color="grey", lw=0.8, ls=":")
        ax.set_xlabel("trials")
        ax.set_ylabel("best GFLOPS so far")
        ax.set_title(f"{self.task.key} ({self.mode}): median and IQR over repeats")
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)


def _pad(curve: np.ndarray, budget: int) -> np.ndarray:
    """A run that stopped early (space exhausted) keeps its last best for the rest."""
    if len(curve) >= budget:
        return curve[:budget]
    last = curve[-1] if len(curve) else 0.0
    return np.concatenate([curve, np.full(budget - len(curve), last)])


def _fmt_trials(value: float | None, budget: int) -> str:
    return f"> {budget}" if value is None else f"{value:.0f}"


def compare(
    task: Task,
    measurer: Measurer,
    target_key: str,
    tuners: list[str],
    trials: int,
    repeats: int,
    log_dir: Path,
    space: Space | None = None,
    batch_size: int = 8,
    progress: bool = True,
    resume: bool = False,
) -> Comparison:
    """Run every tuner ``repeats`` times (seeds 0..repeats-1) with the same budget and measurer.

    With ``resume``, a run whose log in ``log_dir`` is complete (``trials`` records of this
    space) is read back instead of run again, so a killed comparison goes on where it stopped;
    an incomplete log is run again from its start (a tuner's state is not saved mid-run)."""
    for name in tuners:
        check_tuner(name)
    if trials < 1 or repeats < 1:
        raise UserError("--trials and --repeats must be positive")
    space = space or task.space
    log_dir.mkdir(parents=True, exist_ok=True)
    fingerprint = space.fingerprint()
    from tqdm import tqdm

    runs: list[Run] = []
    bar = tqdm(total=len(tuners) * repeats * trials, unit="trial", disable=not progress or not interactive(),
               dynamic_ncols=True)
    for name in tuners:
        for seed in range(repeats):
            log = log_dir / log_name(name, seed)
            done = _finished_run(log, name, seed, trials, fingerprint) if resume else None
            if done is not None:
                runs.append(done)
                bar.update(trials)
                continue
            run, identity = Run(name, seed), tuner_identity(name)
            bar.set_description(f"{name} seed {seed}")

            def measure(configs, run=run, log=log, identity=identity):
                results = measurer.measure(task.key, configs)
                for result in results:
                    spent = (run.seconds[-1] if run.seconds else 0.0) + result.build_s + result.run_s
                    run.costs.append(result.cost)
                    run.seconds.append(spent)
                run.configs.extend(configs)
                with open(log, "a", encoding="utf-8") as f:
                    for config, result in zip(configs, results):
                        f.write(Record.from_result(task.key, target_key, config, result, fingerprint,
                                                   identity).to_line() + "\n")
                bar.update(len(configs))
                return results

            log.unlink(missing_ok=True)
            make_tuner(name, space, seed=seed).tune(measure, n_trial=trials, batch_size=batch_size)
            bar.update(trials - len(run.costs))  # a run that exhausted the space early
            runs.append(run)
    bar.close()
    if not isinstance(measurer, ReplayMeasurer):
        remeasure_bests(task, measurer, runs, progress)
        save_remeasured(log_dir, runs)
    return summarize_runs(task, space, runs, trials, measurer, log_dir)


def _finished_run(log: Path, tuner: str, seed: int, trials: int, fingerprint: str) -> Run | None:
    """The run a complete log holds (``trials`` readable records of this space, written by a tuner
    with the settings ``tuner`` resolves to today), else None."""
    if not log.exists():
        return None
    try:
        records = [Record.from_line(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (ValueError, KeyError, TypeError):
        return None                       # a torn or foreign log: run again
    identity = tuner_identity(tuner)
    if len(records) != trials or any(r.space != fingerprint or r.tuner != identity for r in records):
        return None
    return _run_of(tuner, seed, records)


def _run_of(tuner: str, seed: int, records) -> Run:
    """A run from its records in trial order (seconds: the cumulative build + run time)."""
    run, spent = Run(tuner, seed), 0.0
    for record in records:
        spent += record.build_s + record.run_s
        run.costs.append(record.cost)
        run.seconds.append(spent)
        run.configs.append(record.config)
    return run


#: a live comparison's re-measured bests (seconds per run, by log name), next to its logs, so a
#: summary made again from the logs (``runs_from_logs``) reports the same figures
REMEASURED_FILE = "remeasured.json"


def save_remeasured(log_dir: Path, runs: list[Run]) -> None:
    data = {log_name(r.tuner, r.seed): r.remeasured for r in runs if r.remeasured}
    if data:
        (Path(log_dir) / REMEASURED_FILE).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def remeasure_bests(task: Task, measurer: Measurer, runs: list[Run], progress: bool = True) -> None:
    """Re-measure every run's REMEASURE_TOP fastest configs in REMEASURE_ROUNDS interleaved rounds
    (one pool for all runs, so all see the same machine) and give each run the best re-measured
    median: a config that looked fast in one noisy moment no longer decides a comparison."""
    pool = list(dict.fromkeys(cfg for r in runs for cfg in r.top(REMEASURE_TOP)))
    if not pool:
        return
    if progress and interactive():
        import sys

        print(f"re-measuring the {len(pool)} best configs of {len(runs)} runs, {REMEASURE_ROUNDS} rounds",
              file=sys.stderr)
    samples = dict(zip(pool, measurer.remeasure(task.key, pool, REMEASURE_ROUNDS)))
    for run in runs:
        medians = [float(np.median(samples[c])) for c in run.top(REMEASURE_TOP) if samples.get(c)]
        run.remeasured = min(medians) if medians else None


def log_name(tuner: str, seed: int) -> str:
    """A run's log file: the tuner's name with its settings made file-name safe."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in tuner)
    return f"{safe}_seed{seed}.jsonl"


def summarize_runs(task: Task, space: Space, runs: list[Run], trials: int, measurer: Measurer,
                   log_dir: Path) -> Comparison:
    """Statistics, summary files and plot for finished runs."""
    replay = isinstance(measurer, ReplayMeasurer)
    if replay:
        perfs = [task.flops / c / 1e9 if c is not None else 0.0 for c, _, _ in measurer.table.values()]
        reference = task.flops / measurer.optimum / 1e9
        random_curve = expected_random_curve(perfs, trials)
    else:
        # no table, so no exact expected curve of random search: the score is left out (an
        # estimate from a few random runs makes the normaliser opt - R(t) collapse to noise)
        reference = max(float(r.best_so_far(task.flops)[-1]) for r in runs if r.costs)
        random_curve = None
    comparison = Comparison(task, space, runs, reference, random_curve, trials, "replay" if replay else "live")
    comparison.summarize()
    comparison.save(log_dir)
    return comparison


def add_metaschedule_reference(comparison: Comparison, target, log_dir: Path) -> None:
    """Run MetaSchedule once with the comparison's budget and add it as a reference row. Its
    database starts empty: an earlier run's records would give it a head start on the budget."""
    import shutil

    from tvmopt.tune.metaschedule import run_metaschedule

    shutil.rmtree(log_dir / "metaschedule", ignore_errors=True)
    ms = run_metaschedule(comparison.task, target, comparison.budget, work_dir=str(log_dir / "metaschedule"))
    comparison.add_reference("metaschedule", ms["gflops"], ms["wall_s"], comparison.budget)
    comparison.save(log_dir)


def runs_from_logs(log_dir: Path, tuners: list[str], repeats: int) -> list[Run]:
    """Runs read back from a comparison's logs, to summarize them again."""
    saved = Path(log_dir) / REMEASURED_FILE
    remeasured = json.loads(saved.read_text()) if saved.exists() else {}
    runs = []
    for name in tuners:
        for seed in range(repeats):
            with open(log_dir / log_name(name, seed), encoding="utf-8") as f:
                run = _run_of(name, seed, [Record.from_line(line) for line in f])
            run.remeasured = remeasured.get(log_name(name, seed))
            runs.append(run)
    return runs


def _summary_json(c: Comparison) -> dict:
    return {
        "workload": c.task.key, "mode": c.mode, "budget": c.budget, "reference_gflops": c.reference,
        "space_size": c.space.size(), "references": c.references,
        "tuners": [{"tuner": s.tuner, "best_gflops_q25_median_q75": list(s.best_gflops),
                    "trials_to": {str(k): v for k, v in s.trials_to.items()},
                    "seconds_to": {str(k): v for k, v in s.seconds_to.items()},
                    "explored": s.explored, "score": None if math.isnan(s.score) else s.score,
                    "in_run_best_gflops": s.in_run_best}
                   for s in c.summaries],
    }


# ---------------------------------------------------------------- many replay tables at once


def _compare_table(job) -> dict:
    """Every tuner on one replay table; one worker process (one core) per table."""
    import os

    path, tuners, trials, repeats, log_dir, held_out, extra_budget, use_start, resume = job
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    measurer = ReplayMeasurer(path, use_start)
    result = compare(measurer.task, measurer, measurer.header.get("target", "replay"), tuners, trials, repeats,
                     Path(log_dir), space=measurer.space, progress=False, resume=resume)
    by = {s.tuner: s for s in result.summaries}
    budget = min(extra_budget or trials, trials)
    noise = (measurer.header.get("noise") or {}).get("spread_median")
    costs = [c for c, _, _ in measurer.table.values() if c is not None]
    start_cost = measurer.table.get(measurer.space.initial(), (None,))[0]
    return {
        "table": Path(path).name, "workload": measurer.task.key, "held_out": held_out,
        "configs": measurer.space.size(), "optimum_gflops": result.reference,
        "noise": noise,
        # configs the noise band cannot tell from the optimum: where there are many, "95%" is a coin toss
        "within_noise": None if noise is None else sum(c <= measurer.optimum * (1 + noise) for c in costs),
        "start": "heuristic" if measurer.space.start is not None else "untiled",
        # the start's share of the optimum: at 95% or more every tuner "reaches 95%" at trial 1
        "start_fraction": measurer.optimum / start_cost if start_cost else 0.0,
        "budget": budget,
        "tuners": {t: {"to95": by[t].trials_to[0.95], "to99": by[t].trials_to[0.99], "score": by[t].score,
                       "gflops_at_budget": float(np.median(result.curves(t)[:, budget - 1]))} for t in tuners},
    }


def compare_tables(paths, tuners: list[str], trials: int, repeats: int, log_dir: Path, jobs: int = 1,
                   held_out=lambda path: True, extra_budget: int | None = None, use_start: bool = True,
                   resume: bool = False) -> list[dict]:
    """:func:`compare` on every replay table of ``paths``, ``jobs`` tables at a time (logs in
    ``log_dir/<table>``). One row per table: per tuner, median trials to 95% and 99% of the
    optimum, score, and median best GFLOPS after ``extra_budget`` trials. ``use_start``: see
    :class:`ReplayMeasurer`; ``resume``: see :func:`compare`."""
    from concurrent.futures import ProcessPoolExecutor

    for name in tuners:
        check_tuner(name)
    work = [(str(p), tuners, trials, repeats, str(Path(log_dir) / Path(p).stem), held_out(Path(p)), extra_budget,
             use_start, resume)
            for p in paths]
    if jobs <= 1:
        return [_compare_table(w) for w in work]
    with ProcessPoolExecutor(jobs) as pool:
        return list(pool.map(_compare_table, work))


def aggregate_tables(rows: list[dict], tuners: list[str], baseline: str = "xgb") -> dict:
    """Per tuner over the held-out rows: the median and the worst per-table ratio of trials to
    95% to the baseline's, the median ratio to random's, the median score, and the median ratio
    of best GFLOPS at the rows' small budget to the baseline's (``inf``: never reached 95%).
    ``vs_<baseline>_median_open`` is the median ratio over the held-out rows whose start is below
    95% of the optimum: where the start is already there, every tuner takes 1 trial and the
    ratio 1.0 says nothing about the search (``open_tables`` counts the others)."""
    held = [r for r in rows if r["held_out"]]

    def ratio(a, b):
        """a's trials over b's; 0 where only b never got there, inf where a never did."""
        if a is None:
            return math.inf
        return 0.0 if b is None else a / b

    out = {}
    for t in tuners:
        per_row = [(r, ratio(r["tuners"][t]["to95"], r["tuners"][baseline]["to95"])) for r in held
                   if baseline in r["tuners"]]
        vs_base = [x for _, x in per_row]
        vs_open = [x for r, x in per_row if r.get("start_fraction", 0.0) < 0.95]
        vs_rnd = [ratio(r["tuners"][t]["to95"], r["tuners"]["random"]["to95"]) for r in held if "random" in r["tuners"]]
        at_budget = [r["tuners"][t]["gflops_at_budget"] / r["tuners"][baseline]["gflops_at_budget"]
                     for r in held if baseline in r["tuners"]]
        vs_base_99 = [ratio(r["tuners"][t]["to99"], r["tuners"][baseline]["to99"]) for r in held
                      if baseline in r["tuners"]]
        out[t] = {f"vs_{baseline}_median": float(np.median(vs_base)) if vs_base else None,
                  f"vs_{baseline}_median_open": float(np.median(vs_open)) if vs_open else None,
                  "open_tables": len(vs_open),
                  f"vs_{baseline}_median_99": float(np.median(vs_base_99)) if vs_base_99 else None,
                  f"vs_{baseline}_worst": max(vs_base) if vs_base else None,
                  "vs_random_median": float(np.median(vs_rnd)) if vs_rnd else None,
                  "score_median": float(np.median([r["tuners"][t]["score"] for r in held])) if held else None,
                  f"vs_{baseline}_at_budget": float(np.median(at_budget)) if at_budget else None}
    return out


def tables_markdown(rows: list[dict], tuners: list[str], agg: dict | None = None, baseline: str = "xgb",
                    over: str = "held-out") -> str:
    """One line per table (median trials to 95% and score per tuner), then the aggregate (of
    the tables ``over`` names)."""
    def cell(x):
        return "-" if x is None else f"{x:.0f}"

    lines = ["| table | configs | start | noise | " + " | ".join(f"{t}: to 95% / 99% (score)" for t in tuners) + " |",
             "|" + " --- |" * 4 + " ---: |" * len(tuners)]
    for r in rows:
        name = r["workload"] + ("" if r["held_out"] else " (tuning)")
        noise = "-" if r["noise"] is None else f"{100 * r['noise']:.1f}%"
        if r.get("within_noise") is not None:
            noise += f" ({r['within_noise']})"
        cells = [f"{cell(r['tuners'][t]['to95'])} / {cell(r['tuners'][t]['to99'])} ({r['tuners'][t]['score']:.2f})"
                 for t in tuners]
        start = r["start"] + (f" ({100 * r['start_fraction']:.0f}%)" if "start_fraction" in r else "")
        lines.append(f"| {name} | {r['configs']:,} | {start} | {noise} | " + " | ".join(cells) + " |")
    if agg:
        def fmt(a):
            med, worst = a[f"vs_{baseline}_median"], a[f"vs_{baseline}_worst"]
            if med is None:
                return "-"
            return f"{med:.2f}x [{worst:.2f}x] / {a[f'vs_{baseline}_median_99']:.2f}x, {a['score_median']:.2f}"

        lines.append(f"| **aggregate** ({over}): median ratio of trials to 95% to {baseline}'s [worst table] / "
                     "the same at 99%, median score "
                     "| | | | " + " | ".join(fmt(agg[t]) for t in tuners) + " |")
    return "\n".join(lines)

