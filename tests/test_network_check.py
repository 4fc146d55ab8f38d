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
from tvmopt.tune.network import check_in_network, verdict_table

MODEL = Path(__file__).resolve().parent.parent / "examples" / "models" / "digits_mlp_fp32.onnx"
BATCH = 64


def test_a_record_that_only_looked_fast_alone_loses_to_the_start_in_the_model(tmp_path):
    target = parse_target("llvm")
    records = tmp_path / "records"
    (key, task, _), *_ = extract_tasks(MODEL, BATCH, target=target, records=records)
    space = task.space
    # scalar, unsplit and on one core: many times the start's time, whatever this CPU is
    slow = space.replaced(space.untiled(), {"vectorize": False, "parallel": 0})
    assert slow != space.initial() and space.contains(slow)
    cache = RecordCache(records)
    fingerprint = space.fingerprint()
    # its record says it ran 100x faster than the start (a lucky timing, a warm cache)
    cache.append([Record(key, target.key, space.initial(), (1e-3,), "ok", fingerprint, "gbfs"),
                  Record(key, target.key, slow, (1e-5,), "ok", fingerprint, "gbfs")])
    assert cache.best(key, target.key).config == slow

    lines = []
    verdicts = check_in_network(MODEL, target, records, batch=BATCH, keys=[key], rounds=3, log=lines.append)
    (verdict,) = verdicts
    assert verdict.task == key and verdict.configs == [space.initial(), slow]
    assert verdict.chosen == 0 and verdict.seconds[1] > 2 * verdict.seconds[0], verdict
    assert "build 2/2" in lines[-1]
    table = verdict_table(verdicts)
    assert key in table and "start" in table.splitlines()[1]

    rows = [r for r in cache.load(target.key, key) if r.tuner == NETWORK]
    assert {r.config for r in rows} == {space.initial(), slow} and len({r.timestamp for r in rows}) == 1
    assert all(len(r.costs) == 3 for r in rows)
    assert cache.best(key, target.key).config == space.initial()

    # a build now runs the start: as fast as an untuned build, and right
    built = build(MODEL, tmp_path / "m.so", records=records, batch=BATCH)
    assert built.compiled.tuned[key] == "records"
    x = np.load(MODEL.parent / "digits_test.npz")["x"][:BATCH]
    sess = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    expected = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(tvmopt.load(tmp_path / "m.so")(x), expected, rtol=1e-4, atol=1e-4)
