"""Every tuner: valid, unrepeated proposals, budget, reproducibility, and better than random
on a replay table; the N-A2C environment passes gymnasium's checker; compare's statistics."""

import json
import math
import random

import numpy as np
import pytest

from tvmopt.tune.compare import compare, expected_random_curve, methodology_score
from tvmopt.measure.replay import ReplayMeasurer
from tvmopt.tuners import TUNERS, make_tuner, tuner_identity

from tests_support import WORKLOAD, write_synthetic_table



@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return write_synthetic_table(tmp_path_factory.mktemp("replay") / "table.json")


def run_tuner(name, space, measurer, seed, trials, batch=8):
    seen = []

    def measure(configs):
        seen.extend(configs)
        return measurer.measure(WORKLOAD, configs)

    best, cost = make_tuner(name, space, seed=seed).tune(measure, n_trial=trials, batch_size=batch)
    return seen, best, cost


@pytest.mark.parametrize("name", sorted(TUNERS))
def test_proposals_valid_unique_within_budget_and_reproducible(name, table):
    m = ReplayMeasurer(table)
    a, best, cost = run_tuner(name, m.space, m, seed=3, trials=45, batch=7)
    assert len(a) == 45 and len(set(a)) == 45
    assert all(m.space.contains(c) for c in a)
    assert cost == min(m.table[c][0] or math.inf for c in a)
    b, _, _ = run_tuner(name, m.space, m, seed=3, trials=45, batch=7)
    assert a == b
    c, _, _ = run_tuner(name, m.space, m, seed=4, trials=45, batch=7)
    assert c != a


@pytest.mark.parametrize("name", ["gbfs", "na2c", "xgb"])
def test_finds_optimum_more_often_than_random(name, table):
    m = ReplayMeasurer(table)
    budget, seeds = 100, range(8)
    hits = {}
    for tuner in (name, "random"):
        hits[tuner] = sum(run_tuner(tuner, m.space, m, seed, budget)[2] == m.optimum for seed in seeds)
    assert hits[name] > hits["random"], hits


@pytest.mark.parametrize("name", ["gbfs", "gbfs-paper"])
def test_gbfs_starts_from_trivial_tiling_and_moves_one_step(name, table):
    m = ReplayMeasurer(table)
    tuner = make_tuner(name, m.space, seed=0)
    first = tuner.next_batch(8)
    assert first == [m.space.initial()]
    tuner.observe(first, [c.cost for c in m.measure(WORKLOAD, first)])
    second = tuner.next_batch(8)
    assert 0 < len(second) <= tuner.rho
    assert all(c in m.space.neighbours(first[0], tuner.reach) for c in second)
    if tuner.reach == 1:
        assert all(c in m.space.neighbours(first[0]) for c in second)


def test_tiling_env_passes_gymnasium_checker(table):
    from gymnasium.utils.env_checker import check_env

    from tvmopt.tuners.na2c import TilingEnv, apply_move, moves_of

    m = ReplayMeasurer(table)
    costs = {c: (v[0] if v[0] is not None else math.inf) for c, v in m.table.items()}
    env = TilingEnv(m.space, costs.get, horizon=3)
    check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    rng = random.Random(0)
    for _ in range(30):
        obs, reward, terminated, truncated, info = env.step(rng.randrange(env.action_space.n))
        assert m.space.contains(info["config"]) and -1.0 <= reward <= 4.0
        if truncated:
            env.reset()
    # every action of the list is a one-move neighbour when possible
    start = m.space.initial()
    for move in moves_of(m.space):
        new = apply_move(m.space, start, move)
        assert new is None or new in m.space.neighbours(start)


def test_expected_random_curve_matches_simulation():
    rng = np.random.default_rng(0)
    perfs = list(rng.gamma(2.0, size=300))
    exact = expected_random_curve(perfs, 40)
    sims = np.array([np.maximum.accumulate(rng.permutation(perfs)[:40]) for _ in range(4000)]).mean(axis=0)
    np.testing.assert_allclose(exact, sims, rtol=0.02)
    assert exact[0] == pytest.approx(np.mean(perfs))
    assert methodology_score(exact, exact, max(perfs)) == pytest.approx(0.0)
    assert methodology_score(np.full(40, max(perfs)), exact, max(perfs)) == pytest.approx(1.0)


def test_compare_on_replay_writes_logs_summary_and_plot(table, tmp_path):
    m = ReplayMeasurer(table)
    result = compare(m.task, m, "synthetic", ["gbfs", "random"], trials=30, repeats=3, log_dir=tmp_path,
                     space=m.space, progress=False)
    for name in ("gbfs_seed0.jsonl", "random_seed2.jsonl", "summary.md", "summary.json", "convergence.png"):
        assert (tmp_path / name).stat().st_size > 0
    lines = (tmp_path / "gbfs_seed1.jsonl").read_text().splitlines()
    assert len(lines) == 30 and all(json.loads(line)["tuner"] == tuner_identity("gbfs") for line in lines)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [t["tuner"] for t in summary["tuners"]] == ["gbfs", "random"]
    assert summary["reference_gflops"] == pytest.approx(m.task.flops / m.optimum / 1e9)
    rnd = next(s for s in result.summaries if s.tuner == "random")
    assert -0.6 < rnd.score < 0.6  # random search scores near 0 by construction
    assert "| gbfs |" in result.markdown()


def test_compare_resumes_complete_runs_and_reruns_torn_ones(table, tmp_path):
    m = ReplayMeasurer(table)
    first = compare(m.task, m, "synthetic", ["gbfs", "random"], trials=20, repeats=2, log_dir=tmp_path,
                    space=m.space, progress=False)
    kept = (tmp_path / "gbfs_seed0.jsonl").read_text()
    torn = tmp_path / "random_seed1.jsonl"
    torn.write_text("".join(torn.read_text().splitlines(keepends=True)[:7]) + '{"task": "gemm')  # killed mid-write

    class Counting(ReplayMeasurer):
        calls = 0

        def measure(self, key, configs):
            Counting.calls += len(configs)
            return super().measure(key, configs)

    again = compare(m.task, Counting(table), "synthetic", ["gbfs", "random"], trials=20, repeats=2,
                    log_dir=tmp_path, space=m.space, progress=False, resume=True)
    assert Counting.calls == 20                     # only the torn run was measured again
    assert (tmp_path / "gbfs_seed0.jsonl").read_text() == kept
    assert len(torn.read_text().splitlines()) == 20
    for a, b in zip(first.runs, again.runs):      # same seeds, same table: the same runs
        assert (a.tuner, a.seed, a.configs, a.costs) == (b.tuner, b.seed, b.configs, b.costs)
    assert [s.best_gflops for s in again.summaries] == [s.best_gflops for s in first.summaries]


def test_compare_reruns_a_log_whose_variant_settings_have_changed(table, tmp_path, monkeypatch):
    import tvmopt.tuners as strategies

    m = ReplayMeasurer(table)
    compare(m.task, m, "synthetic", ["gbfs"], trials=12, repeats=1, log_dir=tmp_path, space=m.space, progress=False)
    first = [json.loads(line)["tuner"] for line in (tmp_path / "gbfs_seed0.jsonl").read_text().splitlines()]
    assert set(first) == {"gbfs:rho=5:pick=credit:reach=2:start=heuristic:swap=0:pair=0:keep=0"}

    class Counting(ReplayMeasurer):
        calls = 0

        def measure(self, key, configs):
            Counting.calls += len(configs)
            return super().measure(key, configs)

    compare(m.task, Counting(table), "synthetic", ["gbfs"], trials=12, repeats=1, log_dir=tmp_path, space=m.space,
            progress=False, resume=True)
    assert Counting.calls == 0                      # same settings: read back
    changed = dict(strategies.VARIANTS)
    changed["gbfs"] = ("gbfs", {**changed["gbfs"][1], "rho": 3}, "gbfs with another default")
    monkeypatch.setattr(strategies, "VARIANTS", changed)
    compare(m.task, Counting(table), "synthetic", ["gbfs"], trials=12, repeats=1, log_dir=tmp_path, space=m.space,
            progress=False, resume=True)
    assert Counting.calls == 12                     # the name's default changed: the old log is not this tuner
    again = {json.loads(line)["tuner"] for line in (tmp_path / "gbfs_seed0.jsonl").read_text().splitlines()}
    assert again == {"gbfs:rho=3:pick=credit:reach=2:start=heuristic:swap=0:pair=0:keep=0"}


def test_bad_replay_table_is_a_user_error(tmp_path):
    from tvmopt.errors import UserError

    bad = tmp_path / "t.json"
    bad.write_text("{not json")
    with pytest.raises(UserError, match="not a valid table"):
        ReplayMeasurer(bad)
    with pytest.raises(UserError, match="does not exist"):
        ReplayMeasurer(tmp_path / "missing.json")


@pytest.mark.parametrize("name", ["random", "xgb"])
def test_global_tuners_measure_an_explicit_start_config_first(name):
    """A space's heuristic start (compressed kernels) is the first candidate of every tuner;
    a space without one (the tuner-comparison GEMM space) is sampled as before."""
    from tvmopt.schedules.space import Space
    from tvmopt.ops.task import get_task
    from tvmopt.tuners import make_tuner

    space = get_task("ternary_dense:16x64x64").space
    assert space.start is not None
    first = make_tuner(name, space, seed=1).next_batch(4)
    assert first[0] == space.start and len(set(first)) == 4
    plain = Space(space.name, space.knobs)          # same knobs, no explicit start
    assert plain.start is None
    seeded = make_tuner(name, space, seed=1)
    seeded.observe([space.start], [1.0])             # with the start visited, both sample alike
    assert make_tuner(name, plain, seed=1).next_batch(3) == seeded.next_batch(3)
    tuner = make_tuner(name, space, seed=1)
    tuner.observe([space.start], [1.0])              # resumed from records: nothing to re-seed
    assert space.start not in tuner.next_batch(4)
