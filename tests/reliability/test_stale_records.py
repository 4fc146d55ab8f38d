"""A build never uses a record whose config does not fit the task's current space: it takes
the fastest record that fits (or the default) and warns."""

import numpy as np
import onnxruntime as ort
import pytest

from tvmopt.records.store import Record, RecordCache
from tvmopt.build.deploy import build
from tvmopt.testing.reliability import MODELS
from tvmopt.target import parse_target
from tvmopt.tune.loop import extract_tasks

MODEL = MODELS / "digits_mlp_binary.onnx"


def test_records_that_do_not_fit_the_space_are_never_built(tmp_path):
    target = parse_target("llvm")
    (key1, task1, _), (key2, task2, _) = extract_tasks(MODEL)[:2]
    stale1 = task1.space.initial() + ("extra-knob",)          # a config from a space that changed
    stale2 = tuple(reversed(task2.space.initial()))
    assert not task1.space.contains(stale1) and not task2.space.contains(stale2)
    RecordCache(tmp_path / "recs").append([
        Record(key1, target.key, stale1, (1e-7,)),                     # fastest, but stale
        Record(key1, target.key, task1.space.initial(), (1e-3,)),      # slower, fits
        Record(key2, target.key, stale2, (1e-7,)),
    ])
    with pytest.warns(UserWarning, match="do not fit the current schedule space") as caught:
        result = build(MODEL, tmp_path / "m.so", records=tmp_path / "recs")
    text = " ".join(str(w.message) for w in caught)
    assert key1 in text and key2 in text
    assert result.compiled.tuned[key1] == "records"                    # the record that fits
    assert result.compiled.tuned[key2] != "records"                    # shipped or default, never stale
    x = np.random.default_rng(0).standard_normal((1, 1, 8, 8)).astype(np.float32)
    # onnxruntime runs the plain export of the same weights (it has no ai.tvmopt ops)
    session = ort.InferenceSession(str(MODELS / "digits_mlp_binary.plain.onnx"), providers=["CPUExecutionProvider"])
    expected = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(result.compiled(x), expected, rtol=1e-4, atol=1e-4)
