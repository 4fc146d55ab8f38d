"""Tune one task: wire a tuner, the measurer and the record cache together, resumably."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tvmopt.records.store import REMEASURE, Record, RecordCache
from tvmopt.errors import UserError
from tvmopt.measure.base import Measurer
from tvmopt.measure.local import LocalMeasurer
from tvmopt.schedules import isa
from tvmopt.schedules.space import Config
from tvmopt.target import TargetSpec
from tvmopt.ops.task import Task, task_for
from tvmopt.tuners import make_tuner


@dataclass
class TuneResult:
    task: Task
    target: TargetSpec
    best_config: Config | None
    best_cost: float
    measured: int  # new measurements made by this call
    reused: int  # earlier records learned from instead of re-measured
    failed: int  # new measurements that failed (any error kind)
    spread: float | None = None  # the best config's re-measured (max - min) / median; None: not re-measured
    in_run_cost: float | None = None  # the best config's cost in the run, before re-measuring

    @property
    def best_gflops(self) -> float:
        return self.task.flops / self.best_cost / 1e9 if math.isfinite(self.best_cost) else 0.0


#: after a run, its fastest configs are re-measured in interleaved rounds
REMEASURE_TOP, REMEASURE_ROUNDS = 3, 5


def history_for(cache: RecordCache, task: Task, target: TargetSpec) -> tuple[list[tuple[Config, float]], list[Record]]:
    """Earlier results of this task's current space: one (config, cost) per config."""
    records = [r for r in cache.load(target.key, task.key) if r.space == task.space.fingerprint()]
    seen: dict[Config, float] = {}
    for r in records:
        if task.space.contains(r.config):
            seen[r.config] = min(seen.get(r.config, math.inf), r.cost)
    return list(seen.items()), records


def check_measurable(target: TargetSpec, measurer: Measurer | None = None, remote: bool = False) -> None:
    """Refuse to tune where candidates cannot run, rather than measure the wrong device: a CUDA
    target without a GPU, or an LLVM target naming another CPU (or more cores than this machine
    has) measured locally, whose timings would be filed under the other machine's name. Remote
    measurers (RPC) measure on the machine the target names."""
    remote = remote or bool(getattr(measurer, "remote", False))
    if target.kind == "llvm" and not remote:
        from tvmopt.target import host_cores, host_llvm_config

        here = host_llvm_config()
        wanted, cpu = target.config.get("mcpu"), here.get("mcpu")
        cores = int(target.config.get("num-cores", 1))
        if wanted != cpu or cores > host_cores():
            what = (f"CPU '{wanted}' but this machine is '{cpu}'" if wanted != cpu
                    else f"{cores} cores but this machine has {host_cores()}")
            raise UserError(f"target {target.key} names {what}: timings measured here would be filed under "
                            f"that machine's name. Measure there (run 'tvmopt rpc server' on it and pass "
                            f"--rpc-tracker here), or tune for this machine with --target llvm")
    if target.kind == "cuda":
        from tvmopt.build.compile import device_present

        if not remote and not device_present("cuda"):
            raise UserError("target cuda: no CUDA GPU on this machine; CUDA candidates can be compiled here but "
                            "not measured, so tuning stops (measure on a GPU host: --rpc-tracker, or 'tvmopt cuda "
                            "export' and 'tvmopt cuda ingest')")


def tune_task(
    task_key: str,
    target: TargetSpec,
    tuner: str = "random",
    trials: int = 200,
    records: str | Path | None = None,
    batch_size: int = 8,
    seed: int = 0,
    early_stopping: int | None = None,
    measurer: Measurer | None = None,
    progress: bool = True,
    resume: bool = True,
    report: Callable[[Record], None] | None = None,
    remeasure: int = REMEASURE_TOP,
) -> TuneResult:
    """Tune ``task_key`` until this tuner has ``trials`` measurements of it in the records.

    With ``resume`` (the default), configs already in the records (from any tuner) are never
    measured again and a killed run continues where it stopped; without it the tuner starts
    afresh. ``report`` is called with each record once it is written and flushed.
    When the run measured anything on this machine (not through RPC servers), its
    ``remeasure`` fastest configs (the records' and this run's) are timed again in interleaved
    rounds and recorded (tuner ``remeasure``): the returned best is the fastest re-measured
    median, and builds rank those configs by it.
    """
    if trials < 1:
        raise UserError(f"--trials must be a positive number, got {trials}")
    if batch_size < 1:
        raise UserError(f"--batch-size must be a positive number, got {batch_size}")
    with isa.use(isa.for_target(target)):         # the space's start: shaped for the target's registers
        task = task_for(task_key, target.kind)   # the target picks the space (LLVM or CUDA)
    check_measurable(target, measurer)
    cache = RecordCache(records)
    cache.ensure_writable()
    history, records_so_far = history_for(cache, task, target) if resume else ([], [])
    done_before = sum(1 for r in records_so_far if r.tuner == tuner)
    remaining = max(0, trials - done_before)
    strategy = make_tuner(tuner, task.space, seed=seed)
    fingerprint = task.space.fingerprint()
    failed = 0

    def on_results(configs, results):
        nonlocal failed
        failed += sum(1 for r in results if r.cost == math.inf)
        rows = [Record.from_result(task.key, target.key, c, r, fingerprint, tuner) for c, r in zip(configs, results)]
        cache.append(rows)
        if report is not None:
            for row in rows:
                report(row)

    own_measurer = measurer is None
    measurer = measurer or LocalMeasurer(target)
    bar = _ProgressBar(task, remaining, progress)
    try:
        best_config, best_cost = strategy.tune(
            lambda configs: measurer.measure(task.key, configs),
            n_trial=remaining,
            batch_size=batch_size,
            early_stopping=early_stopping,
            on_results=on_results,
            history=history,
            progress=bar.step,
        )
        bar.close()
        measured = len(strategy.visited) - len(history)
        result = TuneResult(task, target, best_config, best_cost, measured, len(history), failed)
        # not through an RPC fleet yet: the base remeasure rebuilds every config each round
        if remeasure and measured and math.isfinite(best_cost) and not getattr(measurer, "remote", False):
            _remeasure_best(result, cache, fingerprint, remeasure, measurer, report)
    finally:
        bar.close()
        if own_measurer:
            measurer.close()
    return result


def _remeasure_best(result: TuneResult, cache: RecordCache, fingerprint: str, top: int, measurer: Measurer,
                    report) -> None:
    """Time the ``top`` fastest configs of the task (all records of its space) and the space's
    start (what an untuned build runs) again, interleaved, append one ``remeasure`` record each
    (costs = one median per round), and make the result's best the fastest re-measured median.
    With the start among them a tuned record never replaces it on the strength of one lucky
    timing: the search measures the start first, when a fresh runner times up to 1.9x slow, and
    a config that then looked faster ran 0.88x the start when the two were timed side by side."""
    task, target = result.task, result.target
    ranked = sorted(((r.cost, r.config) for r in cache.load(target.key, task.key)
                     if r.space == fingerprint and r.error == "ok" and r.tuner != REMEASURE), key=lambda x: x[0])
    configs = list(dict.fromkeys(c for _, c in ranked))[:top]
    if not configs:
        return
    start = task.space.initial()
    if start not in configs:
        configs.append(start)
    samples = measurer.remeasure(task.key, configs, REMEASURE_ROUNDS)
    rows = [Record(task.key, target.key, c, tuple(s), "ok", fingerprint, REMEASURE) for c, s in zip(configs, samples) if s]
    if not rows:
        return
    cache.append(rows)
    if report is not None:
        for row in rows:
            report(row)
    best = min(rows, key=lambda r: r.cost)
    result.in_run_cost = result.best_cost
    result.best_config, result.best_cost = best.config, best.cost
    result.spread = (max(best.costs) - min(best.costs)) / best.cost


class _ProgressBar:
    """tqdm bar: trials done, best GFLOPS so far, ETA."""

    def __init__(self, task: Task, total: int, enabled: bool):
        from tqdm import tqdm

        self.task = task
        self.bar = tqdm(total=total, desc=task.key, unit="trial", disable=not enabled or total == 0 or not interactive(),
                        dynamic_ncols=True)

    def step(self, n: int, tuner) -> None:
        if math.isfinite(tuner.best_cost):
            self.bar.set_postfix_str(f"best {self.task.flops / tuner.best_cost / 1e9:.1f} GFLOPS", refresh=False)
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


@dataclass
class ModelTuneResult:
    """Per task: its key, how many layers use it, its trial budget and the task's result."""

    tasks: list[tuple[str, int, int, TuneResult]]
    verdicts: list = None       # the in-network check's (tvmopt.tune.network.Verdict), when it ran


def extract_tasks(source, batch: int | None = None, options=None, target: TargetSpec | None = None,
                  records=None, shapes: dict | None = None) -> list[tuple[str, Task, int]]:
    """The tunable tasks of a model after the pass: (key, task, layers using it), deduplicated,
    most FLOPs first. With ``target``, each layer's kernel (compressed or dense) is chosen as
    ``build`` will choose it (``options.kernels``, the records in ``records``)."""
    from collections import Counter

    from tvmopt.build.compile import load_and_lower, plan_kernels

    if target is None:
        _, lowered = load_and_lower(source, batch, options=options, shapes=shapes)
    elif target.kind == "cuda":
        from tvmopt.build.compile import lower_for_gpu

        _, lowered, _ = lower_for_gpu(source, target, batch, options, records, shapes=shapes)
        # the build schedules its compressed kernels through their CUDA spaces (choose_cuda picks
        # only kernels that have one), and its dense layers too once a CUDA record tunes them
        # (DLight's rules until then); DLight the rest
        tunable = {layer.kernel for layer in lowered.layers if layer.choice.startswith("compressed")
                   or layer.kernel.startswith("dense:")}
        lowered.tasks = {key: task for key, task in lowered.tasks.items() if key in tunable}
    else:
        with isa.use(isa.for_target(target)), plan_kernels(target, records, options) as (lookup, _, costs):
            _, lowered = load_and_lower(source, batch, configs=lookup, options=options, costs=costs, shapes=shapes)
    counts = Counter(layer.kernel for layer in lowered.layers if layer.kernel in lowered.tasks)
    counts.update(lowered.products)              # attention's products: tasks without a layer
    rows = [(key, lowered.tasks[key], counts[key]) for key in lowered.tasks]
    return sorted(rows, key=lambda r: -r[1].flops * r[2])


def split_budget(weights: list[float], total: int) -> list[int]:
    """``total`` trials split in proportion to ``weights``, at least one each (largest remainder)."""
    n = len(weights)
    if n == 0:
        return []
    total = max(total, n)
    spare = total - n
    s = sum(weights) or 1.0
    exact = [spare * w / s for w in weights]
    base = [int(e) for e in exact]
    order = sorted(range(n), key=lambda i: exact[i] - base[i], reverse=True)
    for i in order[: spare - sum(base)]:
        base[i] += 1
    return [b + 1 for b in base]


#: a model's default budget: this many trials per task, and at least MODEL_MIN_TRIALS
MODEL_TRIALS_PER_TASK = 20
MODEL_MIN_TRIALS = 200
#: a model's tasks start from heuristic configs: a local search from there beats random
#: sampling at a few trials per task (ResNet-50, 200 trials: gbfs won on 15 of 24 tasks)
MODEL_TUNER = "gbfs"


def model_budget(tasks: int) -> int:
    return max(MODEL_MIN_TRIALS, MODEL_TRIALS_PER_TASK * tasks)


def tune_model(source, target: TargetSpec, tuner: str = MODEL_TUNER, trials: int | None = None,
               records: str | Path | None = None, batch: int | None = None, batch_size: int = 8, seed: int = 0,
               progress: bool = True, log=print, resume: bool = True,
               report: Callable[[Record], None] | None = None, measurer: Measurer | None = None,
               options=None, shapes: dict | None = None, network_check: bool = True) -> ModelTuneResult:
    """Tune every task of a model; the budget (default: :func:`model_budget`) is split by each
    task's share of the model's FLOPs. Rerunning with the same records resumes (configs already
    measured are not measured again). With ``network_check`` (CPU targets measured on this
    machine), the tuned configs then face their starts inside the model and builds keep the
    faster (:mod:`tvmopt.tune.network`)."""
    check_measurable(target, measurer)
    with isa.use(isa.for_target(target)):
        tasks = extract_tasks(source, batch, options, target, records, shapes)
    if not tasks and target.kind == "cuda":
        log(f"{Path(str(source)).name}: no layer runs a tvmopt CUDA kernel on {target.key} (DLight's rules schedule "
            f"every function), so there is nothing to tune; --kernels compressed tunes the compressed ones")
    trials = model_budget(len(tasks)) if trials is None else trials
    budgets = split_budget([t.flops * count for _, t, count in tasks], trials)
    out = []
    own = measurer is None
    measurer = measurer or LocalMeasurer(target, flush=target.kind == "llvm")     # weights cold, as in the model
    try:
        for i, ((key, task, count), budget) in enumerate(zip(tasks, budgets), 1):
            log(f"[{i}/{len(tasks)}] {key}: {count} layer(s), {budget} trial(s)")
            result = tune_task(key, target, tuner=tuner, trials=budget, records=records, batch_size=batch_size,
                               seed=seed, measurer=measurer, progress=progress, resume=resume, report=report)
            out.append((key, count, budget, result))
    finally:
        if own:
            measurer.close()
    verdicts = None
    if network_check and target.kind == "llvm" and not getattr(measurer, "remote", False) and out:
        from tvmopt.tune.network import check_in_network, verdict_table

        verdicts = check_in_network(source, target, records, batch, options, shapes, keys=[k for k, *_ in out],
                                    log=log)
        if verdicts:
            log(verdict_table(verdicts))
    return ModelTuneResult(out, verdicts)


def interactive() -> bool:
    """Progress bars only on a terminal: in a log or a pipe tqdm's frames are noise."""
    import sys

    return sys.stderr.isatty()
