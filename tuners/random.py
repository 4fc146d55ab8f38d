"""Random search without repeats: the baseline every other tuner must beat."""

from __future__ import annotations

from tvmopt.schedules.space import Config

from .base import Tuner

ENUMERATE_LIMIT = 100_000  # below this, shuffle the whole space instead of rejection sampling


class RandomTuner(Tuner):
    name = "random"

    def __init__(self, space, seed: int = 0):
        super().__init__(space, seed)
        self._order: list[Config] | None = None

    def next_batch(self, n: int) -> list[Config]:
        if self.space.size() <= ENUMERATE_LIMIT:
            if self._order is None:
                self._order = list(self.space.all())
                self.rng.shuffle(self._order)
            batch = self.seed_batch([])
            while self._order and len(batch) < n:
                config = self._order.pop()
                if config not in self.visited and config not in batch:
                    batch.append(config)
            return batch
        return self.random_fill(self.seed_batch([]), n)
