"""G-BFS: guided best-first search over move neighbours (Zhang et al. 2019).

Every measured state waits in a priority queue ordered by cost. Each expansion pops the
fastest state and measures up to ``rho`` of its unmeasured neighbours; the popped state is
done with, as in the paper. A state whose picked neighbours did not all fit in the batch goes
back on the queue, and when the queue runs dry the search restarts from random unmeasured
configs instead of stopping (both for budgets larger than the paper's).

Options (``tvmopt.tuners.VARIANTS`` names the tested combinations):

* ``pick``: which ``rho`` neighbours an expansion measures. ``"random"`` (the paper) draws them
  uniformly. ``"credit"`` ranks them by the credit of their *kind of move* (the knob, and for a
  split the levels a factor leaves and joins; for a choice the direction): the mean log speed-up
  that moves of that kind have brought between measured configs so far. An untried kind
  scores 0, between the kinds that paid and those that cost; ties are broken at random. Tilings repeat their lessons across the space (moving a factor of N
  into the vector level pays almost everywhere), and credit carries them from one state to the
  next.
* ``reach``: 1 moves one prime factor (the paper); 2 also moves a product of two (4, 6, ...) in
  one step, so a state sees further for the same expansion.
* ``rho``: neighbours per expansion (5 in the paper).
* ``start``: ``"heuristic"`` (the space's start where it has one, as live runs) or ``"untiled"``.
* ``swap``: 1 adds, for every split, the moves that exchange the factors of two of its levels
  ((8, 128) -> (128, 8)): a step across a valley that prime moves would climb out of.
* ``pair``: compound neighbours per expansion, drawn at random besides the ``rho`` single moves:
  one prime moved in each of two splits, both toward the outer levels or both toward the inner
  ones (a cache block shrunk or grown in two dimensions at once keeps its shape, where either
  move alone distorts it and runs slower: a valley that single moves do not cross).

* ``keep``: 1 puts an expanded state back on the queue while it has unmeasured neighbours, so
  the fastest state goes on being expanded (its next ``rho`` neighbours by credit) until a
  neighbour beats it; 0 (the paper) is done with a state after one expansion, and the search
  moves on to the runner-up even where the best still had untried moves.

``swap`` and ``pair`` are off by default: on the tuning tables neither lowered the trials to 95%
of XGBoost's without raising the worst table's (BENCHMARKS.md, "choosing the defaults").
"""

from __future__ import annotations

import heapq
import itertools
import math

from tvmopt.schedules.space import Config, Split

from .base import Tuner

PICKS = ("random", "credit")


def move_kind(space, a: Config, b: Config) -> tuple:
    """What kind of move leads from a to b: (knob, level the factor leaves, level it joins) for a
    split, (knob, +1/-1) for a choice; () when they differ in more than one knob."""
    diff = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
    if len(diff) != 1:
        return ()
    i = diff[0]
    x, y = a[i], b[i]
    if isinstance(x, tuple):
        return (i,) + _levels(x, y)
    values = space.knobs[i].values
    return (i, 1 if values.index(y) > values.index(x) else -1)


def _levels(x: tuple, y: tuple) -> tuple[int, int]:
    """(level a factor leaves, level it joins) between two values of one split; -1 where none."""
    src = next((j for j in range(len(x)) if y[j] < x[j]), -1)
    dst = next((j for j in range(len(x)) if y[j] > x[j]), -1)
    return src, dst


class GBFSTuner(Tuner):
    name = "gbfs"

    def __init__(self, space, seed: int = 0, rho: int = 5, pick: str = "random", reach: int = 1,
                 start: str = "heuristic", swap: int = 0, pair: int = 0, keep: int = 0):
        super().__init__(space, seed)
        self._start = self.start_config(start)
        if rho < 1:
            raise ValueError("rho must be at least 1")
        if pick not in PICKS:
            raise ValueError(f"pick must be one of {PICKS}")
        if reach not in (1, 2):
            raise ValueError("reach must be 1 or 2")
        if swap not in (0, 1) or pair < 0 or keep not in (0, 1):
            raise ValueError("swap and keep must be 0 or 1, pair at least 0")
        self.rho, self.pick, self.reach, self.keep = rho, pick, reach, keep
        self.swap, self.pair = swap, pair
        self._queue: list[tuple[float, int, Config]] = []
        self._order = itertools.count()
        self._costs: dict[Config, float] = {}
        self._parent: dict[Config, Config] = {}
        self._credit: dict[tuple, list[float]] = {}  # move kind -> [sum of log speed-ups, count]

    def next_batch(self, n: int) -> list[Config]:
        if not self.visited:
            return [self._start]
        batch: list[Config] = []
        while len(batch) < n and self._queue:
            cost, _, state = heapq.heappop(self._queue)
            fresh = [c for c in self._neighbours(state) if c not in self.visited and c not in batch]
            picked = self._choose(state, fresh, min(self.rho, len(fresh)))
            if self.pair:
                twos = [c for c in self._pairs(state) if c not in self.visited and c not in batch and c not in picked]
                picked += self.rng.sample(twos, min(self.pair, len(twos)))
            room = n - len(batch)
            if len(picked) > room or (self.keep and len(fresh) > len(picked)):
                heapq.heappush(self._queue, (cost, next(self._order), state))
            for config in picked[:room]:
                self._parent[config] = state
            batch.extend(picked[:room])
        if not batch:  # every frontier is used up: restart from random configs
            self.random_fill(batch, n)
        return batch

    def _pairs(self, state: Config) -> list[Config]:
        """Compound neighbours: one prime move in each of two splits, in the same direction."""
        by_knob = []
        for i, value in enumerate(state):
            if isinstance(value, tuple):
                ups, downs = [], []
                for new in self.space.knobs[i].moves(value, 1):
                    src, dst = _levels(value, new)
                    (ups if dst < src else downs).append(new)
                by_knob.append((i, ups, downs))
        out = []
        for (i, ui, di), (j, uj, dj) in itertools.combinations(by_knob, 2):
            for a, b in itertools.chain(itertools.product(ui, uj), itertools.product(di, dj)):
                config = list(state)
                config[i], config[j] = a, b
                config = tuple(config)
                if self.space.contains(config):
                    out.append(config)
        return out

    def _neighbours(self, state: Config) -> list[Config]:
        out = self.space.neighbours(state, self.reach)
        if self.swap:
            seen = set(out)
            for i, knob in enumerate(self.space.knobs):
                if not isinstance(knob, Split):
                    continue
                for value in knob.swaps(state[i]):
                    config = state[:i] + (value,) + state[i + 1:]
                    if config not in seen and self.space.contains(config):
                        seen.add(config)
                        out.append(config)
        return out

    def _choose(self, state: Config, fresh: list[Config], k: int) -> list[Config]:
        if self.pick == "random" or not fresh:
            return self.rng.sample(fresh, k)

        def score(config):
            total, count = self._credit.get(move_kind(self.space, state, config), (0.0, 0))
            return (total / count if count else 0.0, self.rng.random())

        return sorted(fresh, key=score, reverse=True)[:k]

    def update(self, configs, costs) -> None:
        for config, cost in zip(configs, costs):
            cost = cost if not math.isnan(cost) else math.inf
            self._costs[config] = cost
            heapq.heappush(self._queue, (cost, next(self._order), config))
            parent = self._parent.get(config)
            if parent is not None and parent in self._costs:
                gain = _log_speedup(self._costs[parent], cost)
                entry = self._credit.setdefault(move_kind(self.space, parent, config), [0.0, 0])
                entry[0] += gain
                entry[1] += 1


def _log_speedup(old: float, new: float) -> float:
    """log(old / new), bounded: a failure counts as a 4x slow-down, a recovery as a 4x gain."""
    if not math.isfinite(new):
        return -math.log(4.0)
    if not math.isfinite(old):
        return math.log(4.0)
    return max(-math.log(4.0), min(math.log(4.0), math.log(old / new)))
