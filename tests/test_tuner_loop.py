"""The tuner loop and random search, measured by a pure-Python cost function (no TVM)."""

import math
from dataclasses import dataclass

import pytest

from tvmopt.schedules.space import Choice, Space, Split
from tvmopt.tuners import RandomTuner, make_tuner
from tvmopt.errors import UserError


@dataclass
class FakeResult:
    cost: float


def toy_space():
    return Space("toy", (Split("m", 64, 3), Split("n", 12, 2), Choice("v", (False, True))))


def toy_cost(config):
    (m0, m1, m2), (n0, n1), v = config
    return 1.0 + abs(math.log2(m2) - 3) + abs(n1 - 4) / 4 + (0 if v else 0.5)


def measure(configs):
    return [FakeResult(toy_cost(c)) for c in configs]


def test_random_never_repeats_and_respects_budget():
    space = toy_space()
    tuner = RandomTuner(space, seed=3)
    proposed = []
    tuner.tune(lambda cs: (proposed.extend(cs), measure(cs))[1], n_trial=50, batch_size=7)
    assert len(proposed) == 50
    assert len(set(proposed)) == 50
    assert all(space.contains(c) for c in proposed)


def test_random_is_reproducible_for_a_seed():
    runs = []
    for _ in range(2):
        seen = []
        RandomTuner(toy_space(), seed=11).tune(lambda cs: (seen.extend(cs), measure(cs))[1], n_trial=30)
        runs.append(seen)
    assert runs[0] == runs[1]
    other = []
    RandomTuner(toy_space(), seed=12).tune(lambda cs: (other.extend(cs), measure(cs))[1], n_trial=30)
    assert other != runs[0]


def test_random_exhausts_small_space_and_finds_optimum():
    space = toy_space()
    best_config, best_cost = RandomTuner(space, seed=0).tune(measure, n_trial=10_000)
    assert best_cost == min(toy_cost(c) for c in space.all())


def test_history_is_not_remeasured_and_counts_for_best():
    space = toy_space()
    everything = list(space.all())
    optimum = min(everything, key=toy_cost)
    history = [(c, toy_cost(c)) for c in everything[:100]] + [(optimum, toy_cost(optimum))]
    seen = []
    tuner = RandomTuner(space, seed=0)
    best, cost = tuner.tune(lambda cs: (seen.extend(cs), measure(cs))[1], n_trial=40, history=history)
    assert not set(seen) & {c for c, _ in history}
    assert best == optimum


def test_early_stopping_stops():
    calls = []
    RandomTuner(toy_space(), seed=0).tune(lambda cs: (calls.append(len(cs)), [FakeResult(1.0)] * len(cs))[1],
                                          n_trial=500, batch_size=4, early_stopping=8)
    assert sum(calls) <= 12  # first batch improves on inf, then two batches of no improvement


def test_failed_candidates_are_not_best():
    results = iter([math.inf] * 5 + [2.0] * 100)
    tuner = RandomTuner(toy_space(), seed=0)
    best, cost = tuner.tune(lambda cs: [FakeResult(next(results)) for _ in cs], n_trial=10, batch_size=5)
    assert cost == 2.0 and best is not None


def test_loop_rejects_a_tuner_that_repeats():
    class Bad(RandomTuner):
        def next_batch(self, n):
            return [self.space.initial()]

    with pytest.raises(RuntimeError, match="already measured"):
        Bad(toy_space()).tune(measure, n_trial=5, batch_size=1)


def test_unknown_tuner_is_a_user_error():
    with pytest.raises(UserError, match="unknown tuner 'nope'"):
        make_tuner("nope", toy_space())
