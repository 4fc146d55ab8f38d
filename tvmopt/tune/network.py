"""The in-network check that ends ``tvmopt tune model.onnx``: each tuned task's candidate configs
(its space's start, what an untuned build runs, and its fastest re-measured configs) are timed
inside the whole model, and the records keep the verdict (tuner ``network``), which builds follow.

Why: a kernel timed alone runs on its own data over and over (weights and input in the caches,
the cores on that one loop), while in the model each layer reads its weights once, after other
layers. The two rank configs differently. ResNet-50 on a 2-core Zen 3: the configs that its
tuning run re-measured up to 1.18x faster than their starts ran 5 to 20% slower than those
starts in the model (per-kernel profiles, alternating builds; the same build against itself
differed by 4% at most), and the tuned build ran 0.93x the untuned one.

How: one build per candidate rank (build ``j`` gives every task its ``j``-th candidate, the start
where it has fewer; the records still choose each layer's kernel, so every build has the same
layers), profiled in alternating rounds on one input. A task's time is the sum of its kernels'
calls per run. The verdict rows are appended to the records, one per candidate, seconds per call
in each round; :meth:`RecordCache.ranked` ranks the latest check's rows first.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from tvmopt.records.store import NETWORK, REMEASURE, Record, RecordCache
from tvmopt.schedules import isa
from tvmopt.target import TargetSpec

#: candidates per task besides its start (the fastest re-measured configs)
CANDIDATES = 2
#: alternating profiling rounds, and model runs per profile (the rounds are cheap next to the
#: builds: ResNet-50's 15 rounds of 3 builds take about 10 s of the check's minute)
ROUNDS, RUNS = 15, 3
#: other processes' share of the machine during the rounds above which the check warns: a busy
#: core makes a parallel kernel wait for its second thread (``measure.settle.OtherLoad``)
BUSY_SHARE = 0.2


@dataclass
class Verdict:
    task: str
    seconds: list[float]        # per candidate: median seconds per run of the task's kernels in the model
    configs: list               # the candidates; [0] is the start
    chosen: int                 # index of the one builds use (:func:`_choose`)
    ratios: list = None         # per candidate: (median, lower quartile) of the rounds' start / candidate times

    @property
    def gain(self) -> float:
        """The chosen candidate's speed over the start's in the model."""
        return self.seconds[0] / self.seconds[self.chosen]


def candidates(cache: RecordCache, target: TargetSpec, keys, extra: int = CANDIDATES) -> dict[str, list]:
    """Task key -> [start, up to ``extra`` other configs]: those of its latest re-measurement,
    fastest first (else its fastest records). Tasks whose records hold nothing but the start
    are left out: there is nothing to decide."""
    from tvmopt.ops.task import get_task

    ranked = cache.ranked(target.key)
    out = {}
    for key in keys:
        space = get_task(key).space
        fingerprint = space.fingerprint()
        rows = [r for r in ranked.get(key, ()) if r.space == fingerprint and r.tuner != NETWORK
                and space.contains(r.config)]
        if any(r.tuner == REMEASURE for r in rows):
            rows = [r for r in rows if r.tuner == REMEASURE]
        start = space.initial()
        others = list(dict.fromkeys(r.config for r in rows if r.config != start))[:extra]
        if others:
            out[key] = [start] + others
    return out


def check_in_network(source, target: TargetSpec, records=None, batch: int | None = None, options=None,
                     shapes: dict | None = None, keys=None, extra: int = CANDIDATES, rounds: int = ROUNDS,
                     log=print) -> list[Verdict]:
    """Time each task's candidates in the model (``keys``: the tasks to check, default all with
    records), append the verdicts to ``records`` and return them, largest model time first.
    CPU targets only (the profile runs here)."""
    import numpy as np
    import tvm

    from tvmopt.build.compile import compile_model
    from tvmopt.build.profile import profiler
    from tvmopt.measure.settle import OtherLoad
    from tvmopt.ops.task import get_task
    from tvmopt.records.store import DEFAULT_DIR

    cache = RecordCache(records if records is not None else DEFAULT_DIR)
    if keys is None:
        keys = list(cache.ranked(target.key))
    with isa.use(isa.for_target(target)):      # the target's spaces: their starts and fingerprints
        cands = candidates(cache, target, keys, extra)
        fingerprints = {key: get_task(key).space.fingerprint() for key in cands}
    if not cands:
        log("in-network check: no task has a tuned config besides its start; nothing to check")
        return []
    ranks = max(len(c) for c in cands.values())
    name = Path(str(source)).name
    builds = []
    for j in range(ranks):
        configs = {key: c[j] if j < len(c) else c[0] for key, c in cands.items()}
        log(f"in-network check of {name}: build {j + 1}/{ranks} ({'the starts' if j == 0 else f'candidates {j}'})")
        try:
            builds.append(compile_model(source, target, records=records, batch=batch, options=options,
                                        shapes=shapes, configs=configs))
        except Exception as e:  # noqa: BLE001 - the tuning's records stay; only the check is cut short
            log(f"in-network check of {name}: build {j + 1} failed ({type(e).__name__}: {str(e)[:200]}); "
                + ("nothing checked" if j == 0 else f"only the first {j} candidate(s) of each task checked"))
            break
    cands = {key: c[:len(builds)] for key, c in cands.items() if len(c[:len(builds)]) > 1}
    if not cands:
        return []
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(i.shape).astype(i.dtype) if np.dtype(i.dtype).kind == "f"
              else np.zeros(i.shape, i.dtype) for i in builds[0].imported.inputs]
    runners = [(profiler(compiled.executable, tvm.cpu()), {fn: k["task"] for fn, k in (compiled.kernels or {}).items()})
               for compiled in builds]
    # samples[j][key]: per round, seconds per run of the task's kernels in build j; calls[key]: per run
    samples = [defaultdict(list) for _ in builds]
    calls: dict[str, int] = {}
    with OtherLoad() as load:
        for r in range(rounds):
            order = list(range(len(builds)))
            order = order[r % len(order):] + order[:r % len(order)]       # each build leads in turn
            for j in order:
                profile, tasks = runners[j]
                totals, counts = defaultdict(float), defaultdict(int)
                for k in profile(arrays, RUNS).kernels:
                    key = tasks.get(k.name)
                    if key in cands:
                        totals[key] += k.seconds
                        counts[key] += k.calls
                for key, seconds in totals.items():
                    samples[j][key].append(seconds)
                    calls[key] = counts[key]
    verdicts, rows = [], []
    stamp = time.time()
    for key, configs in cands.items():
        if any(len(samples[j][key]) < rounds for j in range(len(configs))):
            continue                        # a task the builds did not all run (a kernel choice moved)
        seconds = [statistics.median(samples[j][key]) for j in range(len(configs))]
        ratios = [_paired(samples[0][key], samples[j][key]) for j in range(len(configs))]
        chosen = _choose(ratios)
        verdicts.append(Verdict(key, seconds, configs, chosen, ratios))
        fingerprint = fingerprints[key]
        per_call = max(1, calls.get(key, 1))
        for j, config in enumerate(configs):
            rows.append(Record(key, target.key, config, tuple(s / per_call for s in samples[j][key]), "ok",
                               fingerprint, NETWORK, timestamp=stamp))
    if rows:
        cache.append(rows)
    if load.share is not None and load.share > BUSY_SHARE:
        log(f"in-network check of {name}: other processes used {load.share:.0%} of the machine's CPU time while it "
            "ran; a busy core slows parallel kernels most, so its verdicts may favour serial configs. Run the "
            "tuning again on a quiet machine: it resumes, checks again, and the latest check decides")
    verdicts.sort(key=lambda v: -v.seconds[0])
    return verdicts


#: a candidate replaces the start only where, round by round, it ran at least this much faster
#: (the median of the rounds' ratios) and faster in three rounds of four (the lower quartile):
#: with three candidates, picking the fastest median alone kept noise (ResNet-50, Zen 3: a
#: "kept 1.03x" by the check's own medians was 0.99x the untuned build when the two were timed)
MARGIN = 1.03


def _paired(start: list, candidate: list) -> tuple[float, float]:
    """The median and lower quartile of the rounds' ratios start time / candidate time."""
    ratios = sorted(a / b for a, b in zip(start, candidate))
    return statistics.median(ratios), ratios[len(ratios) // 4]


def _choose(ratios: list) -> int:
    """The index of the candidate builds should use: the start (0) unless another beats it
    clearly, round by round (``ratios``: per candidate, :func:`_paired`)."""
    best, best_ratio = 0, MARGIN
    for j, (median, low) in enumerate(ratios[1:], 1):
        if median >= best_ratio and low > 1.0:
            best, best_ratio = j, median
    return best


def verdict_table(verdicts: list[Verdict]) -> str:
    """One line per checked task: its start's and its kept (else fastest) candidate's time in
    the model, the median (lower quartile) of the rounds' paired ratios start / candidate, and
    which one builds use now."""
    lines = [f"{'task':<44} {'start ms':>9} {'tuned ms':>9} {'paired':>13} {'kept':>11}"]
    for v in verdicts:
        j = v.chosen or min(range(1, len(v.seconds)), key=lambda i: v.seconds[i])
        median, low = v.ratios[j]
        kept = "start" if v.chosen == 0 else f"tuned {v.gain:.2f}x"
        lines.append(f"{v.task:<44} {v.seconds[0] * 1e3:>9.3f} {v.seconds[j] * 1e3:>9.3f} "
                     f"{median:>6.2f} ({low:.2f}) {kept:>11}")
    start = sum(v.seconds[0] for v in verdicts)
    chosen = sum(v.seconds[v.chosen] for v in verdicts)
    tuned = sum(v.seconds[1] for v in verdicts)
    lines.append(f"checked tasks in the model: starts {start * 1e3:.2f} ms, fastest re-measured configs "
                 f"{tuned * 1e3:.2f} ms, kept {chosen * 1e3:.2f} ms")
    return "\n".join(lines)
