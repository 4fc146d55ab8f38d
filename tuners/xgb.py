"""XGBoost cost-model search: the AutoTVM XGBTuner baseline.

A gradient-boosted ranking model (``rank:pairwise``) learns relative speed from config
features (``Space.features``: log2 factors, knob indices, derived tile volumes). After every
batch it is refit, and simulated annealing over the model (persistent walkers, one random
move per step, temperature 1 to 0) collects a plan of the ``plan_size`` best-predicted
unmeasured configs. Batches are drawn from the plan, with an ``epsilon`` share of random picks.
Until ``min_train`` successful measurements exist, picks are random.
"""

from __future__ import annotations

import heapq
import math

import numpy as np

from tvmopt.schedules.space import Config

from .base import Tuner


class XGBTuner(Tuner):
    name = "xgb"

    def __init__(self, space, seed: int = 0, plan_size: int = 64, epsilon: float = 0.05,
                 sa_iters: int = 80, walkers: int = 128, min_train: int = 8, boost_rounds: int = 60):
        super().__init__(space, seed)
        self.plan_size, self.epsilon = plan_size, epsilon
        self.sa_iters, self.n_walkers, self.min_train, self.boost_rounds = sa_iters, walkers, min_train, boost_rounds
        self._xs: list[list[float]] = []
        self._costs: list[float] = []
        self._plan: list[Config] = []
        self._walkers: list[Config] = []
        self._model = None
        self._feature_cache: dict[Config, list[float]] = {}

    # ---- proposing
    def next_batch(self, n: int) -> list[Config]:
        batch: list[Config] = self.seed_batch([])
        attempts = 0
        while len(batch) < n and attempts < 100 * n:
            attempts += 1
            use_plan = self._model is not None and self._plan and self.rng.random() >= self.epsilon
            config = self._plan.pop(0) if use_plan else self.space.random(self.rng)
            if config not in self.visited and config not in batch:
                batch.append(config)
        return batch

    # ---- learning
    def update(self, configs, costs) -> None:
        for config, cost in zip(configs, costs):
            self._xs.append(self._features(config))
            self._costs.append(cost)
        if sum(math.isfinite(c) for c in self._costs) < self.min_train:
            return
        self._fit()
        self._plan = self._anneal(self.plan_size)

    def _fit(self) -> None:
        import xgboost as xgb

        costs = np.array(self._costs)
        finite = np.isfinite(costs)
        y = np.zeros(len(costs))
        y[finite] = costs[finite].min() / costs[finite]  # relative speed in (0, 1]; failures 0
        data = xgb.DMatrix(np.array(self._xs), label=y, nthread=1)
        data.set_group([len(y)])
        params = {"objective": "rank:pairwise", "max_depth": 3, "eta": 0.3, "gamma": 1e-4, "min_child_weight": 1,
                  "subsample": 1.0, "lambda": 1.0, "nthread": 1, "seed": self.seed, "verbosity": 0}
        self._model = xgb.train(params, data, num_boost_round=self.boost_rounds)

    def _features(self, config: Config) -> list[float]:
        cached = self._feature_cache.get(config)
        if cached is None:
            cached = self._feature_cache[config] = self.space.features(config)
        return cached

    def _predict(self, configs: list[Config]) -> np.ndarray:
        return self._model.inplace_predict(np.array([self._features(c) for c in configs]))

    def _anneal(self, k: int) -> list[Config]:
        """Simulated annealing over the model; the k best-predicted unvisited configs seen."""
        while len(self._walkers) < min(self.n_walkers, self.space.size()):
            self._walkers.append(self.space.random(self.rng))
        walkers = self._walkers
        scores = self._predict(walkers)
        top: list[tuple[float, int, Config]] = []  # min-heap of (score, tiebreak, config)
        in_top: set[Config] = set()
        counter = 0

        def offer(config, score):
            nonlocal counter
            if config in self.visited or config in in_top:
                return
            counter += 1
            if len(top) < k:
                heapq.heappush(top, (score, counter, config))
                in_top.add(config)
            elif score > top[0][0]:
                _, _, dropped = heapq.heapreplace(top, (score, counter, config))
                in_top.discard(dropped)
                in_top.add(config)

        for w, s in zip(walkers, scores):
            offer(w, float(s))
        for step in range(self.sa_iters):
            temperature = 1.0 - step / self.sa_iters
            proposals = [self.space.random_neighbour(w, self.rng) or self.space.random(self.rng) for w in walkers]
            new_scores = self._predict(proposals)
            for i, (p, s) in enumerate(zip(proposals, new_scores)):
                offer(p, float(s))
                delta = float(s - scores[i])
                if delta >= 0 or self.rng.random() < math.exp(delta / max(temperature, 1e-5)):
                    walkers[i], scores[i] = p, s
        return [c for _, _, c in sorted(top, reverse=True)]
