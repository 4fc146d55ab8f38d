"""The in-network check that ends a model's tuning (tvmopt/tune/network.py): a task's candidate
configs are timed inside the whole model, and builds follow the verdict rather than the
kernels' own timings."""

from pathlib import Path

import numpy as np
import onnxruntime as ort

import tvmopt
from tvmopt.build.deploy import build
from tvmopt.records.store import NETWORK, Record, RecordCache
from tvmopt.target import parse_target
from tvmopt.tune.loop import extract_tasks
from tvmopt.tune.network import MARGIN, _choose, check_in_network, verdict_table

MODEL = Path(__file__).resolve().parent.parent / "examples" / "models" / "digits_mlp_fp32.onnx"
BATCH = 64
CHECK_BATCH = 360     # digits_test.npz, whole


def test_a_candidate_replaces_the_start_only_where_the_paired_rounds_say_so_clearly():
    # per candidate: (median, lower quartile) of the rounds' start / candidate ratios
    assert _choose([(1.0, 1.0), (1.10, 1.05), (1.20, 0.98)]) == 1         # the faster median is noisier
    assert _choose([(1.0, 1.0), (1.10, 1.05), (1.15, 1.01)]) == 2
    assert _choose([(1.0, 1.0), (MARGIN - 0.01, 1.01)]) == 0              # faster, but not by the margin
    assert _choose([(1.0, 1.0), (0.90, 0.85)]) == 0


def test_a_record_that_only_looked_fast_alone_loses_to_the_start_in_the_model(tmp_path):
    target = parse_target("llvm")
    records = tmp_path / "records"
    (key, task, _), *_ = extract_tasks(MODEL, CHECK_BATCH, target=target, records=records)
    space = task.space
    # scalar, unsplit and on one core: many times the start's time, whatever this CPU is. The whole
    # test set as one batch, so that the margin outlasts what a busy core costs the start's parallel
    # loop (on CI's shared cores a 44 us start once waited a 4 ms time slice for its second thread)
    slow = space.replaced(space.untiled(), {"vectorize": False, "parallel": 0})
    assert slow != space.initial() and space.contains(slow)
    cache = RecordCache(records)
    fingerprint = space.fingerprint()
    # its record says it ran 100x faster than the start (a lucky timing, a warm cache)
    cache.append([Record(key, target.key, space.initial(), (1e-3,), "ok", fingerprint, "gbfs"),
                  Record(key, target.key, slow, (1e-5,), "ok", fingerprint, "gbfs")])
    assert cache.best(key, target.key).config == slow

    lines = []
    verdicts = check_in_network(MODEL, target, records, batch=CHECK_BATCH, keys=[key], rounds=5, log=lines.append)
    (verdict,) = verdicts
    assert verdict.task == key and verdict.configs == [space.initial(), slow]
    assert verdict.chosen == 0 and verdict.ratios[1][0] < MARGIN, verdict     # (no timing bound: CI shares its cores)
    assert any("build 2/2" in line for line in lines)       # (then a busy-machine warning where CI's cores were busy)
    table = verdict_table(verdicts)
    assert key in table and "start" in table.splitlines()[1]

    rows = [r for r in cache.load(target.key, key) if r.tuner == NETWORK]
    assert {r.config for r in rows} == {space.initial(), slow} and len({r.timestamp for r in rows}) == 1
    assert all(len(r.costs) == 5 for r in rows)
    assert cache.best(key, target.key).config == space.initial()

    # a build now runs the start: as fast as an untuned build, and right
    built = build(MODEL, tmp_path / "m.so", records=records, batch=CHECK_BATCH)
    assert built.compiled.tuned[key] == "records"
    x = np.load(MODEL.parent / "digits_test.npz")["x"][:CHECK_BATCH]
    sess = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    expected = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(tvmopt.load(tmp_path / "m.so")(x), expected, rtol=1e-4, atol=1e-4)


def test_a_check_on_a_busy_machine_says_so_and_keeps_its_verdict(tmp_path, monkeypatch):
    from tvmopt.measure import settle

    class Busy(settle.OtherLoad):
        def __exit__(self, *exc):
            self.share = 0.5                  # another process kept one of 2 cores busy

    monkeypatch.setattr(settle, "OtherLoad", Busy)
    target = parse_target("llvm")
    records = tmp_path / "records"
    (key, task, _), *_ = extract_tasks(MODEL, BATCH, target=target, records=records)
    other = next(c for c in task.space.neighbours(task.space.initial()) if c != task.space.initial())
    RecordCache(records).append([Record(key, target.key, other, (1e-5,), "ok", task.space.fingerprint(), "gbfs")])
    lines = []
    (verdict,) = check_in_network(MODEL, target, records, batch=BATCH, keys=[key], rounds=2, log=lines.append)
    assert "other processes used 50% of the machine's CPU time" in lines[-1] and "quiet machine" in lines[-1]
    assert len([r for r in RecordCache(records).load(target.key) if r.tuner == NETWORK]) == 2


def test_a_candidate_build_that_fails_cuts_the_check_short_and_keeps_the_records(tmp_path, monkeypatch):
    import tvmopt.build.compile as compile_module

    target = parse_target("llvm")
    records = tmp_path / "records"
    (key, task, _), *_ = extract_tasks(MODEL, BATCH, target=target, records=records)
    other = next(c for c in task.space.neighbours(task.space.initial()) if c != task.space.initial())
    fingerprint = task.space.fingerprint()
    RecordCache(records).append([Record(key, target.key, other, (1e-5,), "ok", fingerprint, "gbfs")])
    real = compile_module.compile_model

    def second_fails(*args, configs=None, **kw):
        if configs and configs[key] == other:
            raise RuntimeError("candidate does not build in the model")
        return real(*args, configs=configs, **kw)

    monkeypatch.setattr(compile_module, "compile_model", second_fails)
    lines = []
    assert check_in_network(MODEL, target, records, batch=BATCH, keys=[key], rounds=2, log=lines.append) == []
    assert "build 2 failed (RuntimeError: candidate does not build in the model)" in lines[-1]
    cache = RecordCache(records)
    assert not [r for r in cache.load(target.key) if r.tuner == NETWORK]
    assert cache.best(key, target.key).config == other           # the tuning's records are as they were
