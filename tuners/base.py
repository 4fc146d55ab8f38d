"""The tuning loop shared by every tuner (AutoTVM's split: the loop owns budget, batches,
early stopping, progress and records; a tuner only proposes configs and learns costs)."""

from __future__ import annotations

import math
import random
from typing import Callable, Container, Iterable, Sequence

from tvmopt.schedules.space import Config, Space


STARTS = ("heuristic", "untiled")


class Tuner:
    """Subclasses implement :meth:`next_batch` and may implement :meth:`update`."""

    name = "base"

    def __init__(self, space: Space, seed: int = 0):
        self.space = space
        self.seed = seed
        self.rng = random.Random(seed)
        self.visited: set[Config] = set()
        self.best_config: Config | None = None
        self.best_cost = math.inf

    # ---- what a strategy implements
    def next_batch(self, n: int) -> list[Config]:
        """Up to n configs that are valid and not yet visited; [] when nothing is left."""
        raise NotImplementedError

    def update(self, configs: Sequence[Config], costs: Sequence[float]) -> None:
        """Learn from measured costs in seconds (inf for a failed candidate)."""

    # ---- shared machinery
    def observe(self, configs: Sequence[Config], costs: Sequence[float]) -> None:
        """Record results (new or loaded from earlier runs) and pass them to the strategy."""
        for config, cost in zip(configs, costs):
            self.visited.add(config)
            if cost < self.best_cost:
                self.best_cost, self.best_config = cost, config
        self.update(configs, costs)

    def seed_batch(self, batch: list[Config]) -> list[Config]:
        """Put the space's explicit start config (a heuristic such as the compressed kernels'
        DLight-style rule) first in the very first batch: global strategies would otherwise
        never measure it, and with a few trials per task their best random config is often
        far worse. Spaces without an explicit start (the tuner-comparison GEMM space) are left
        alone, so comparisons stay as they were."""
        start = self.space.start
        if start is not None and not self.visited and start not in batch:
            batch.insert(0, start)
        return batch

    def random_fill(self, batch: list[Config], n: int, exclude: Container[Config] = ()) -> list[Config]:
        """Append random configs, unvisited and not in ``exclude`` or ``batch``, up to n in all."""
        for _ in range(100 * n):
            if len(batch) >= n:
                break
            config = self.space.random(self.rng)
            if config not in self.visited and config not in exclude and config not in batch:
                batch.append(config)
        return batch

    def start_config(self, start: str = "heuristic") -> Config:
        """Where a local search begins: ``"heuristic"`` is the space's start where it has one
        (else the untiled config); ``"untiled"`` is every axis whole, every choice at its default
        (falling back to the heuristic start where the untiled config is not in the space)."""
        if start not in STARTS:
            raise ValueError(f"start must be one of {STARTS}")
        if start == "untiled":
            untiled = self.space.untiled()
            if self.space.contains(untiled):
                return untiled
        return self.space.initial()

    def exhausted(self) -> bool:
        return len(self.visited) >= self.space.size()

    def tune(
        self,
        measure: Callable[[list[Config]], Sequence],
        n_trial: int,
        batch_size: int = 8,
        early_stopping: int | None = None,
        on_results: Callable[[list[Config], Sequence], None] | None = None,
        history: Iterable[tuple[Config, float]] = (),
        progress: Callable[[int, "Tuner"], None] | None = None,
    ) -> tuple[Config | None, float]:
        """Measure up to ``n_trial`` new configs; returns the best (config, cost) seen.

        ``measure`` returns one result per config with a ``cost`` attribute (seconds).
        ``history`` holds results of earlier runs: they are learned from, never re-measured.
        ``early_stopping`` stops after that many trials without improvement.
        """
        history = list(history)
        if history:
            self.observe([c for c, _ in history], [cost for _, cost in history])
        done, last_improvement = 0, 0
        while done < n_trial and not self.exhausted():
            batch = self.next_batch(min(batch_size, n_trial - done))
            if not batch:
                break
            self._check_batch(batch)
            results = measure(batch)
            before = self.best_cost
            self.observe(batch, [r.cost for r in results])
            if on_results is not None:
                on_results(batch, results)
            done += len(batch)
            if self.best_cost < before:
                last_improvement = done
            if progress is not None:
                progress(len(batch), self)
            if early_stopping is not None and done - last_improvement >= early_stopping:
                break
        return self.best_config, self.best_cost

    def _check_batch(self, batch: list[Config]) -> None:
        if len(set(batch)) != len(batch):
            raise RuntimeError(f"{self.name} proposed the same config twice in one batch")
        for config in batch:
            if config in self.visited:
                raise RuntimeError(f"{self.name} proposed an already measured config {config}")
            if not self.space.contains(config):
                raise RuntimeError(f"{self.name} proposed a config outside the space: {config}")
