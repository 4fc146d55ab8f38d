"""The benchmarks' timing helpers (benchmarks/report.py): rounds that go on until a paired ratio
is known, and the band it is reported with."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import report  # noqa: E402


def test_uncertainty_and_quartiles_of_paired_ratios():
    samples = {"a": [1.0, 1.1, 0.9, 1.2, 1.0], "b": [1.0] * 5}
    q1, q3 = report.spread(samples, "a", "b")
    assert q1 == pytest.approx(0.95) and q3 == pytest.approx(1.15)      # statistics.quantiles' default method
    assert report.ratio_uncertainty(samples, "a", "b") == pytest.approx(0.2 / 1.0 / 5 ** 0.5)
    assert report.ratio_uncertainty({"a": [1.0] * 3, "b": [1.0] * 3}, "a", "b") == float("inf")
    assert report.paired(samples, "a", "b") == pytest.approx(1.0)


@pytest.mark.parametrize("noisy, rounds", [(True, 9), (False, 4)])
def test_rounds_go_on_until_the_ratio_is_known(monkeypatch, noisy, rounds):
    """Fake clocks: 'a' alternates 0.8x / 1.25x of 'b' when noisy, so its ratio never settles and
    the rounds stop at ``max_rounds``; equal times settle as soon as there are 4 ratios."""
    calls = {"a": 0}
    monkeypatch.setattr(report.time, "sleep", lambda s: None)

    def fake_median(fn, min_seconds, least):
        return fn()

    def a():
        calls["a"] += 1
        return (0.8 if calls["a"] % 2 else 1.25) if noisy else 1.0

    monkeypatch.setattr(report, "median_seconds", fake_median)
    samples = report.timed_rounds({"a": a, "b": lambda: 1.0}, 3, 0.0, settle=("a", "b"), max_rounds=9)
    assert len(samples["a"]) == len(samples["b"]) == rounds
    plain = report.timed_rounds({"a": a, "b": lambda: 1.0}, 3, 0.0)
    assert len(plain["a"]) == 3


def test_rounds_stop_once_the_ratio_is_clear_of_the_threshold(monkeypatch):
    """A ratio whose quartiles all lie above the threshold it is judged by (here 0.95) needs no
    more rounds, however noisy: 'a' alternates 2x and 3x of 'b'."""
    calls = {"a": 0}
    monkeypatch.setattr(report.time, "sleep", lambda s: None)
    monkeypatch.setattr(report, "median_seconds", lambda fn, min_seconds, least: fn())

    def a():
        calls["a"] += 1
        return 2.0 if calls["a"] % 2 else 3.0

    samples = report.timed_rounds({"a": a, "b": lambda: 1.0}, 4, 0.0, settle=("a", "b"), max_rounds=12,
                                  clear_of=0.95)
    assert len(samples["a"]) == 4
    noisy = report.timed_rounds({"a": a, "b": lambda: 1.0}, 4, 0.0, settle=("a", "b"), max_rounds=12)
    assert len(noisy["a"]) == 12



def test_suite_memory_goals_are_bit_widths_judged_on_the_codes():
    """benchmarks/suite.py: a layer's scale (a vector per output channel, like the bias) is left out
    of the codes' count; the memory goal (binary /32 = 1 bit a weight) is judged on the codes; a row
    measured before the count falls back on the bytes with scales."""
    import suite
    from tvmopt.passes.lower import LayerReport

    binary = LayerReport(1, "conv2d", "", "binary", "binary_perm_conv2d_nhwc:...", 4096 * 4, 4096 // 8 + 64 * 4,
                         "compressed", 64 * 4)
    first = LayerReport(0, "conv2d", "", "dense", "conv2d_nhwc:...", 1000, 1000)          # fp32, not touched
    counted = suite.code_bits([first, binary])
    assert counted["compressed_layers_code_reduction"] == pytest.approx(32.0)
    row = {"model": "resnet18", "variant": "binary", "batch": 1, "vs_ort": 1.5, "vs_tvmopt_dense": 1.5,
           "max_rel_err": 1e-7, "memory_reduction": 13.0,
           "compressed_layers_memory_reduction": 4096 * 4 / (4096 // 8 + 64 * 4)}
    assert suite.goals(row)["met"] is False                      # /21 with the scales
    assert suite.goals({**row, **counted})["met"] is True       # 1 bit a weight
    assert suite.goals({**row, **counted, "vs_ort": 0.9})["met"] is False


def test_suite_names_what_limits_each_missed_row():
    """benchmarks/suite.py: every row that misses its goal is listed under one cause: the memory
    goal missed at speed (layers kept dense), hashed weights (run dense), the compute-bound
    encoder at batch 1 (shift or hashed weights on the dense kernel); met rows are not listed."""
    import suite

    base = {"batch": 1, "vs_tvmopt_dense": 1.0, "max_rel_err": 1e-7, "memory_reduction": 1.0}
    rows = [{**base, "model": "resnet20", "variant": "ternary", "vs_ort": 1.5, "kernels": {"winograd_conv2d_nhwc": 10},
             "compressed_layers_code_reduction": 0.6},
            {**base, "model": "mlp4096", "variant": "hashed", "vs_ort": 0.9, "kernels": {"dense": 3}},
            {**base, "model": "encoder", "variant": "shift-q", "vs_ort": 1.1, "kernels": {"dense": 2}},
            {**base, "model": "encoder", "variant": "hashed", "vs_ort": 1.1, "kernels": {"dense": 2}},
            {**base, "model": "resnet20", "variant": "binary", "vs_ort": 2.0, "kernels": {"binary_perm_conv2d_nhwc": 18},
             "compressed_layers_code_reduction": 32.0}]
    rows = [{**r, **suite.goals(r)} for r in rows]
    assert [r["met"] for r in rows] == [False, False, False, False, True]
    assert [suite.limit_of(r) for r in rows[:4]] == ["dense layers", "hashed", "compute-bound", "compute-bound"]
    text = "\n".join(suite.limits(rows))
    assert "resnet20 ternary b1" in text and "mlp4096 hashed b1" in text
    assert "encoder shift-q b1, encoder hashed b1" in text
    assert "resnet20 binary" not in text
    assert suite.limits(rows[4:]) == []


def test_replay_table_remeasures_compare_with_the_sweep():
    """benchmarks/make_replay_table.py: re-measured configs keep their ratios within each round and
    land on the sweep's scale, whatever the machine did during the rounds: a round on a busy
    machine (all 3x) and a burst on one config move nothing, and the start's share of the optimum
    is the ratio the rounds saw."""
    import make_replay_table as mrt

    sweep = {"a": 1.0, "b": 1.1, "c": 1.2, "start": 2.0, "rest": 1.05}
    # rounds: a is 1, b 1.1, c 1.2, start 1.25 times the same unit; round 2 ran 3x slower everywhere,
    # round 3 had a burst on c alone
    unit = [1.0, 3.0, 1.0]
    samples = {k: [u * f for u in unit] for k, f in (("a", 1.0), ("b", 1.1), ("c", 1.2), ("start", 1.25))}
    samples["c"][2] *= 4
    got = mrt.on_sweep_scale(samples, ["a", "b", "c"], sweep)
    assert set(got) == {"a", "b", "c", "start"}
    # the anchors' median ratio is b's (1.1 of the unit), put at their median sweep cost (1.1)
    assert got["a"] == pytest.approx(1.0)
    assert got["b"] == pytest.approx(1.1)
    assert got["c"] == pytest.approx(1.2)
    assert got["start"] == pytest.approx(1.25)
    assert got["a"] / got["start"] == pytest.approx(0.8)
    assert mrt.on_sweep_scale(samples, [], sweep) == {}
