"""G-BFS: guided best-first search over one-move neighbours (Zhang et al. 2019).

Every measured state waits in a priority queue ordered by cost. Each expansion pops the
fastest state and measures up to ``rho`` of its unmeasured neighbours, chosen at random; the
popped state is done with, as in the paper. Two departures, both for budgets larger than the
paper's: a state whose sampled neighbours did not all fit in the batch goes back on the queue,
and when the queue runs dry the search restarts from a random unmeasured config instead of
stopping.
"""

from __future__ import annotations

import heapq
import itertools
import math

from tvmopt.schedules.space import Config

from .base import Tuner


class GBFSTuner(Tuner):
    name = "gbfs"

    def __init__(self, space, seed: int = 0, rho: int = 5):
        super().__init__(space, seed)
        if rho < 1:
            raise ValueError("rho must be at least 1")
        self.rho = rho
        self._queue: list[tuple[float, int, Config]] = []
        self._order = itertools.count()

    def next_batch(self, n: int) -> list[Config]:
        if not self.visited:
            return [self.space.initial()]
        batch: list[Config] = []
        while len(batch) < n and self._queue:
            cost, _, state = heapq.heappop(self._queue)
            fresh = [c for c in self.space.neighbours(state) if c not in self.visited and c not in batch]
            picked = self.rng.sample(fresh, min(self.rho, len(fresh)))
            room = n - len(batch)
            if len(picked) > room:
                heapq.heappush(self._queue, (cost, next(self._order), state))
            batch.extend(picked[:room])
        if not batch:  # every frontier is used up: restart from random configs
            self.random_fill(batch, n)
        return batch

    def update(self, configs, costs) -> None:
        for config, cost in zip(configs, costs):
            heapq.heappush(self._queue, (cost if not math.isnan(cost) else math.inf, next(self._order), config))
