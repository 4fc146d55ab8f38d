"""Issue 20: named tuner variants and their settings, G-BFS's move credit and two-prime moves,
replay-table sub-spaces (connected, holding the untiled and heuristic configs), and
re-measurement of a run's best configs (records, builds and comparisons use it)."""

import math

import pytest

from tvmopt.errors import UserError
from tvmopt.measure.base import ErrorKind, MeasureResult, Measurer
from tvmopt.measure.replay import ReplayMeasurer
from tvmopt.ops.task import get_task
from tvmopt.records.store import REMEASURE, Record, RecordCache
from tvmopt.schedules.replay import connected, table_members
from tvmopt.schedules.space import Choice, Space, Split
from tvmopt.tuners import VARIANTS, check_tuner, make_tuner, parse_tuner
from tvmopt.tuners.gbfs import move_kind

from tests_support import WORKLOAD, write_synthetic_table


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return write_synthetic_table(tmp_path_factory.mktemp("replay") / "table.json")


def test_variants_and_settings_parse_and_reach_the_strategy():
    assert parse_tuner("gbfs-paper") == ("gbfs", {"rho": 5, "pick": "random", "reach": 1})
    strategy, settings = parse_tuner("gbfs:rho=8:pick=random")
    assert strategy == "gbfs" and settings["rho"] == 8 and settings["pick"] == "random"
    space = get_task("gemm:16x16x16").space
    tuner = make_tuner("gbfs:rho=3:reach=1", space)
    assert (tuner.rho, tuner.pick, tuner.reach, tuner.name) == (3, "credit", 1, "gbfs:rho=3:reach=1")
    assert make_tuner("na2c-paper:learning_rate=0.003", space).model.learning_rate == pytest.approx(0.003)
    assert make_tuner("na2c", space).grad_steps == VARIANTS["na2c"][1]["grad_steps"]
    for bad, message in [("nope", "unknown tuner"), ("gbfs:rho", "not key=value"),
                         ("gbfs:depth=3", "no setting depth"), ("xgb:rho=2", "no setting rho")]:
        with pytest.raises(UserError, match=message):
            check_tuner(bad)
    with pytest.raises(UserError, match="pick must be one of"):
        make_tuner("gbfs:pick=best", space)


def test_cli_rejects_a_bad_tuner_setting_before_measuring(capsys):
    from tvmopt.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(["tune", "gemm:16x16x16", "--tuner", "gbfs:rho=2:width=3", "--trials", "2"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "no setting width" in err and len(err.strip().splitlines()) == 1


def test_two_prime_moves_and_move_kinds():
    knob = Split("n", 24, 3)
    one = set(knob.moves((24, 1, 1)))
    two = set(knob.moves((24, 1, 1), reach=2))
    assert one < two
    assert (6, 4, 1) in two and (6, 4, 1) not in one and (4, 6, 1) in two and (24 // 9, 1, 1) not in two
    assert all(math.prod(v) == 24 for v in two)
    space = Space("s", (knob, Choice("unroll", (0, 16, 64))))
    assert move_kind(space, ((24, 1, 1), 0), ((12, 1, 2), 0)) == (0, 0, 2)
    assert move_kind(space, ((24, 1, 1), 16), ((24, 1, 1), 0)) == (1, -1)
    assert move_kind(space, ((24, 1, 1), 16), ((12, 2, 1), 0)) == ()


def test_move_credit_prefers_the_kinds_of_move_that_paid():
    """Cost falls with the factor of n at the innermost level: after one expansion, credit
    ranks moves into level 2 first, where random picking would not."""
    space = Space("s", (Split("m", 16, 3), Split("n", 64, 3)))

    def cost(config):
        return 1.0 / config[1][2] + 0.01 * config[0][0]

    tuner = make_tuner("gbfs:rho=3:reach=1", space, seed=0)
    first = tuner.next_batch(1)
    tuner.observe(first, [cost(c) for c in first])
    while tuner._queue and len(tuner.visited) < 40:
        batch = tuner.next_batch(3)
        tuner.observe(batch, [cost(c) for c in batch])
    best_kind = max(tuner._credit, key=lambda k: tuner._credit[k][0] / tuner._credit[k][1])
    assert best_kind[0] == 1 and best_kind[2] == 2       # n: a factor moved into the innermost level
    assert space.initial()[1][2] < tuner.best_config[1][2]


def test_swap_and_pair_moves_cross_a_valley_single_moves_do_not():
    """Cost is low only where m and n both move one prime inward (a block shrunk in both
    dimensions at once) or where n's levels are exchanged: every single prime move from the
    untiled start is slower, so only the compound and swap neighbours reach the fast configs."""
    space = Space("s", (Split("m", 8, 2), Split("n", 8, 2)))
    start = ((8, 1), (8, 1))

    def cost(config):
        (_, m1), n = config
        return 0.5 if (m1, n[1]) == (2, 2) or n == (1, 8) else 1.0 + 0.1 * (m1 + n[1])

    gbfs = make_tuner("gbfs", space)
    assert all(cost(c) > cost(start) for c in gbfs._neighbours(start))
    swapped = make_tuner("gbfs:swap=1", space)._neighbours(start)
    assert ((8, 1), (1, 8)) in swapped and ((1, 8), (8, 1)) in swapped
    assert set(gbfs._neighbours(start)) < set(swapped)
    pairs = make_tuner("gbfs:pair=2", space)._pairs(start)
    assert pairs == [((4, 2), (4, 2))]                     # one prime each, both inward
    tuner = make_tuner("gbfs:pair=2:rho=2:start=untiled", space, seed=0)
    first = tuner.next_batch(4)
    assert first == [start]
    tuner.observe(first, [cost(c) for c in first])
    second = tuner.next_batch(4)
    assert len(second) == 3 and pairs[0] in second          # rho single moves, then the pair
    tuner.observe(second, [cost(c) for c in second])
    assert tuner.best_cost == 0.5
    with pytest.raises(UserError, match="swap and keep must be 0 or 1"):
        make_tuner("gbfs:swap=2", space)


@pytest.mark.parametrize("roots", [1, 3])
def test_na2c_rollouts_start_at_one_of_the_fastest_configs(roots):
    space = Space("s", (Split("m", 16, 3), Split("n", 64, 3)))

    def cost(config):
        return 1.0 / config[1][2] + 0.01 * config[0][0]

    tuner = make_tuner(f"na2c:roots={roots}", space, seed=1)
    first = tuner.next_batch(4)                 # the start alone
    tuner.observe(first, [cost(c) for c in first])
    starts = []
    for _ in range(6):
        ranked = sorted(tuner.costs, key=tuner.costs.get)[:roots]
        seen = len(tuner._transitions)
        batch = tuner.next_batch(4)
        starts.append(({t[0] for t in tuner._transitions[seen:] if t[3]}, set(ranked)))
        tuner.observe(batch, [cost(c) for c in batch])
    assert all(used and used <= allowed for used, allowed in starts)
    if roots > 1:   # the runners-up get rollouts too, not only the best
        assert any(len(used) > 1 for used, _ in starts[1:])
    with pytest.raises(UserError, match="roots must be at least 1"):
        make_tuner("na2c:roots=0", space)


def _steps(a, b):
    """Prime moves between two configs of 2-level power-of-two splits."""
    return sum(abs(x[0].bit_length() - y[0].bit_length()) for x, y in zip(a, b))


@pytest.mark.parametrize("stale", [0, 3])
def test_na2c_gives_up_a_used_up_root_for_the_next_fastest(stale):
    """Every config within the horizon of the best is measured: with ``stale`` the rollouts move
    on to the runner-up's neighbourhood; without (the paper) they stay at the best and the
    batch is filled at random."""
    space = Space("s", (Split("m", 256, 2), Split("n", 256, 2)))
    best, runner_up = ((256, 1), (256, 1)), ((1, 256), (1, 256))
    tuner = make_tuner(f"na2c:stale={stale}", space, seed=0)
    near = [c for c in space.all() if 0 < _steps(best, c) <= tuner.horizon]
    tuner.observe([best, runner_up] + near, [1.0, 2.0] + [3.0] * len(near))
    seen = len(tuner._transitions)
    batch = tuner.next_batch(4)
    roots = {t[0] for t in tuner._transitions[seen:] if t[3]}
    assert len(batch) == 4 and not set(batch) & tuner.visited
    if stale:
        assert roots == {best, runner_up}
        assert all(_steps(runner_up, c) <= tuner.horizon for c in batch)
    else:
        assert roots == {best}
    with pytest.raises(UserError, match="stale must be at least 0"):
        make_tuner("na2c:stale=-1", space)


@pytest.mark.parametrize("keep", [0, 1])
def test_gbfs_keep_expands_the_best_state_until_a_neighbour_beats_it(keep):
    space = Space("s", (Split("m", 64, 3), Split("n", 64, 3)))
    tuner = make_tuner(f"gbfs:keep={keep}:rho=2:reach=1:pick=random:start=untiled", space, seed=0)
    start = tuner.next_batch(2)[0]
    tuner.observe([start], [1.0])
    around = set(space.neighbours(start, 1))
    first = tuner.next_batch(2)
    assert set(first) <= around
    tuner.observe(first, [2.0, 3.0])           # both worse than the start
    second = tuner.next_batch(2)
    assert set(second).isdisjoint(first)
    if keep:   # the start still leads, so its next neighbours are measured
        assert set(second) <= around
    else:      # the paper's G-BFS is done with the start and expands its best neighbour
        assert set(second) <= set(space.neighbours(first[0], 1)) and not set(second) <= around
    with pytest.raises(UserError, match="keep must be 0 or 1"):
        make_tuner("gbfs:keep=2", space)


@pytest.mark.parametrize("workload", ["dense:64x1024x1024", "conv2d:1x64x56x56x64x3x3x1x1",
                                      "binary_dense:16x1024x1024"])
def test_table_members_are_connected_and_hold_untiled_and_start(workload):
    space = get_task(workload).space
    members = table_members(space, 2000)
    assert 1000 <= len(members) <= 2600 and len(set(members)) == len(members)
    assert members[0] == space.untiled() and members[1] == space.start
    assert all(space.contains(c) for c in members)
    assert connected(space, members)
    for i, knob in enumerate(space.knobs):
        if isinstance(knob, Choice) and len(knob.values) > 1:
            assert len({c[i] for c in members}) >= 2, knob.name


def test_replay_starts_local_search_at_the_tables_start(table, tmp_path):
    import json

    data = json.loads(table.read_text())
    start = data["entries"][len(data["entries"]) // 2][0]
    data["header"]["start"] = start
    path = tmp_path / "with_start.json"
    path.write_text(json.dumps(data))
    m = ReplayMeasurer(path)
    assert m.space.initial() == tuple(tuple(v) if isinstance(v, list) else v for v in start)
    assert make_tuner("gbfs", m.space).next_batch(4) == [m.space.initial()]
    untiled_config = m.space.untiled()
    if m.space.contains(untiled_config):
        for name in ("gbfs:start=untiled", "na2c:start=untiled"):
            assert make_tuner(name, m.space).next_batch(4) == [untiled_config]
    with pytest.raises(UserError, match="start must be one of"):
        make_tuner("gbfs:start=best", m.space)


class NoisyMeasurer(Measurer):
    """In the search, config `lucky` looks fastest; re-measured, its true cost shows."""

    def __init__(self, true, lucky):
        self.true, self.lucky, self.remeasured = true, lucky, []

    def measure(self, task_key, configs):
        return [MeasureResult((self.true(c) / (4 if c == self.lucky else 1),), ErrorKind.OK) for c in configs]

    def remeasure(self, task_key, configs, rounds=5):
        self.remeasured.append(list(configs))
        return [tuple(self.true(c) * (1 + 0.01 * r) for r in range(rounds)) for c in configs]


def test_tuning_reports_and_builds_the_remeasured_best(tmp_path):
    from tvmopt.target import parse_target
    from tvmopt.tune.loop import tune_task

    target = parse_target("llvm")
    task = get_task("gemm:16x16x16")
    true = {}

    def cost(c):
        return true.setdefault(c, 1e-4 * (1 + (hash(c) % 97) / 97))

    measured = []
    probe_tuner = make_tuner("random", task.space, seed=5)
    picks = probe_tuner.next_batch(8)
    lucky = picks[3]
    for c in picks:
        cost(c)
    measurer = NoisyMeasurer(cost, lucky)
    result = tune_task(task.key, target, tuner="random", trials=8, records=tmp_path, seed=5, measurer=measurer,
                       progress=False, report=measured.append)
    # the 3 fastest of the search and the space's start (not among them here) are timed again
    start = task.space.initial()
    assert start not in picks
    assert lucky in measurer.remeasured[0] and measurer.remeasured[0][-1] == start
    assert len(measurer.remeasured[0]) == 4
    honest = min(measurer.remeasured[0], key=cost)
    assert result.best_config == honest and result.in_run_cost == pytest.approx(cost(lucky) / 4)
    assert result.best_cost == pytest.approx(cost(honest) * 1.02)
    assert result.spread == pytest.approx(0.04 / 1.02)
    again = [r for r in measured if r.tuner == REMEASURE]
    assert len(again) == 4 and all(len(r.costs) == 5 for r in again)
    best = RecordCache(tmp_path).best(task.key, target.key)
    assert best.config == honest and best.tuner == REMEASURE
    # a start slower than every search pick is still timed, and loses: the best is the fastest of
    # the re-measured search picks (``honest`` itself, unless the start was the fastest above, which
    # the costs' string hashes make so under some PYTHONHASHSEED values)
    true[start] = 10 * max(cost(c) for c in picks)
    fastest_pick = min((c for c in measurer.remeasured[0] if c != start), key=cost)
    assert honest in (start, fastest_pick)
    assert tune_task(task.key, target, tuner="random", trials=8, records=tmp_path / "again", seed=5,
                     measurer=NoisyMeasurer(cost, lucky), progress=False).best_config == fastest_pick


def test_remeasured_cost_replaces_in_run_costs_in_ranking(tmp_path):
    cache = RecordCache(tmp_path)
    a, b = ((16, 1, 1, 1),), ((8, 2, 1, 1),)
    rows = [Record("w:1", "t", a, (1.0,), tuner="gbfs"), Record("w:1", "t", b, (1.5,), tuner="gbfs"),
            Record("w:1", "t", a, (2.0, 2.1, 1.9), tuner=REMEASURE)]
    cache.append(rows)
    ranked = cache.ranked("t")["w:1"]
    # a re-measured config ranks by its re-measurement alone, and before the configs of its space
    # never re-measured (b's one timing in the search is no better evidence than a's was)
    assert [r.config for r in ranked] == [a, b] and ranked[0].tuner == REMEASURE and ranked[0].cost == 2.0
    cache.append([Record("w:1", "t", b, (1.8, 1.9, 1.7), tuner=REMEASURE)])   # both timed side by side
    assert [r.config for r in cache.ranked("t")["w:1"]] == [b, a]
    cache.append([Record("w:1", "t", a, (1.2,), tuner=REMEASURE)])   # the latest re-measurement counts
    assert cache.best("w:1", "t").config == a
    # another space's records rank as before
    cache.append([Record("w:2", "t", a, (1.0,), tuner="gbfs"), Record("w:2", "t", b, (0.5,), tuner="gbfs")])
    assert cache.best("w:2", "t").config == b


def test_live_comparison_ranks_runs_by_remeasured_bests(tmp_path):
    from tvmopt.tune.compare import compare

    task = get_task(WORKLOAD)
    true = {}

    def cost(c):
        return true.setdefault(c, 1e-4 * (1 + (hash(c) % 89) / 89))

    measurer = NoisyMeasurer(cost, None)
    result = compare(task, measurer, "fake", ["random", "gbfs-paper"], trials=12, repeats=2, log_dir=tmp_path,
                     progress=False)
    assert len(measurer.remeasured) == 1 and len(measurer.remeasured[0]) <= 12
    for s in result.summaries:
        runs = [r for r in result.runs if r.tuner == s.tuner]
        assert all(r.remeasured for r in runs) and s.in_run_best is not None
        assert s.best_gflops[1] == pytest.approx(
            sorted(task.flops / r.remeasured / 1e9 for r in runs)[0] * 0.5 +
            sorted(task.flops / r.remeasured / 1e9 for r in runs)[1] * 0.5)
    assert "re-measured" in result.markdown()
    # summarized again from the logs (benchmarks/tuners.py --from-logs): the same re-measured bests
    from tvmopt.tune.compare import runs_from_logs

    again = runs_from_logs(tmp_path, ["random", "gbfs-paper"], 2)
    assert [(r.tuner, r.seed, r.remeasured) for r in again] == \
        [(r.tuner, r.seed, pytest.approx(r.remeasured)) for r in result.runs]


def test_compare_tables_and_aggregate(table, tmp_path):
    """Two tables (one marked tuning): one row each, the aggregate only over the held-out one,
    ratios to XGBoost computed from the rows' medians."""
    import json

    from tvmopt.tune.compare import aggregate_tables, compare_tables, tables_markdown

    second = tmp_path / "second.json"
    data = json.loads(table.read_text())
    data["header"]["noise"] = {"spread_median": 0.03}
    second.write_text(json.dumps(data))
    rows = compare_tables([table, second], ["gbfs", "xgb", "random"], trials=40, repeats=2, log_dir=tmp_path / "logs",
                          held_out=lambda p: p.name == "second.json", extra_budget=8)
    assert [r["held_out"] for r in rows] == [False, True] and rows[1]["noise"] == 0.03
    costs = [e[1] for e in data["entries"] if e[1] is not None]
    within = sum(c <= min(costs) * 1.03 for c in costs)
    assert rows[0]["within_noise"] is None and rows[1]["within_noise"] == within >= 1
    assert (tmp_path / "logs" / "second" / "gbfs_seed1.jsonl").exists()
    agg = aggregate_tables(rows, ["gbfs", "xgb", "random"])
    held = rows[1]["tuners"]
    expected = held["gbfs"]["to95"] / held["xgb"]["to95"] if held["gbfs"]["to95"] and held["xgb"]["to95"] else None
    if expected is not None:
        assert agg["gbfs"]["vs_xgb_median"] == pytest.approx(expected)
    assert agg["xgb"]["vs_xgb_at_budget"] == pytest.approx(1.0)
    md = tables_markdown(rows, ["gbfs", "xgb", "random"], agg)
    assert "(tuning)" in md and f"3.0% ({within})" in md and "aggregate" in md


def test_every_shipped_replay_table_loads_and_replays():
    """The shipped tables outlive the spaces they were measured in (the dense GEMM's pack_b
    knob lost its True value when weights went into panels): each still loads, with and
    without its start, its optimum is a member, and a tuner's batch is looked up in it."""
    from pathlib import Path

    tables = sorted((Path(__file__).resolve().parents[1] / "logs" / "replay").glob("*.json"))
    assert len(tables) >= 6
    for path in tables:
        for use_start in (True, False):
            m = ReplayMeasurer(path, use_start)
            best = min((c for c, (cost, _, _) in m.table.items() if cost is not None), key=lambda c: m.table[c][0])
            assert m.space.contains(best) and m.space.size() == len(m.table), path.name
            batch = make_tuner("gbfs", m.space, seed=0).next_batch(4)
            results = m.measure(m.task.key, batch)
            assert [r.costs[0] if r.costs else None for r in results] == [m.table[c][0] for c in batch]


def test_widened_space_holds_a_dropped_choice_value():
    from tvmopt.schedules.space import restrict, widened

    now = Space("s", (Split("t", 8, 2), Choice("pack", (False,))))
    members = [((8, 1), True), ((4, 2), True), ((2, 4), False)]
    with pytest.raises(ValueError, match="not in space"):
        restrict(now, members)
    wide = widened(now, members)
    assert wide.knobs[1].values == (False, True) and wide.knobs[0] == now.knobs[0]
    sub = restrict(wide, members)
    assert sub.contains(((8, 1), True)) and not sub.contains(((8, 1), False))
    assert widened(now, [((8, 1), False)]) is now


def test_aggregate_counts_a_baseline_that_never_got_there_as_a_win():
    """A tuner that reached 95% where random search never did is infinitely cheaper (ratio 0),
    and one that never did is infinitely dearer, whatever the other did."""
    from tvmopt.tune.compare import aggregate_tables

    def row(gbfs, xgb, random):
        cell = lambda to95: {"to95": to95, "to99": to95, "score": 0.5, "gflops_at_budget": 1.0}  # noqa: E731
        return {"held_out": True, "tuners": {"gbfs": cell(gbfs), "xgb": cell(xgb), "random": cell(random)}}

    agg = aggregate_tables([row(10, 20, None), row(30, 30, None), row(None, 15, 40)], ["gbfs", "xgb", "random"])
    assert agg["gbfs"]["vs_random_median"] == 0.0
    assert agg["gbfs"]["vs_xgb_median"] == 1.0 and agg["gbfs"]["vs_xgb_worst"] == float("inf")
