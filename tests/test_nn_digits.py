"""The bundled digits models: their ONNX files reproduce the recorded PyTorch accuracy, the
compressed variants stay close to fp32, and the training pipeline itself runs."""

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from tvmopt.model.opset import run_onnx

MODELS = Path(__file__).resolve().parent.parent / "examples" / "models"
SUMMARY = json.loads((MODELS / "digits.json").read_text())
TEST = np.load(MODELS / "digits_test.npz")


@pytest.mark.parametrize("row", SUMMARY["models"], ids=lambda r: f"{r['arch']}-{r['variant']}")
def test_bundled_model_files_reproduce_the_recorded_accuracy(row):
    x, y = TEST["x"], TEST["y"]
    fp32 = next(r for r in SUMMARY["models"] if r["arch"] == row["arch"] and r["variant"] == "fp32")
    sess = ort.InferenceSession(str(MODELS / row["plain_onnx"]), providers=["CPUExecutionProvider"])
    plain = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    assert float((plain.argmax(1) == y).mean()) == pytest.approx(row["accuracy"])
    if row["variant"] != "fp32":
        compact = run_onnx(MODELS / row["onnx"], x)
        np.testing.assert_allclose(compact, plain, rtol=1e-4, atol=1e-4 * np.abs(plain).max())
        slack = 0.06 if row["variant"] == "binary" else 0.03
        assert row["accuracy"] >= fp32["accuracy"] - slack


def test_training_pipeline_runs_and_learns():
    from tvmopt.testing.digits import train_all

    results = train_all(archs=("mlp",), epochs=4, finetune_epochs=1, only=("shift", "nm2:4"), log=lambda s: None)
    assert [r.variant for r in results] == ["fp32", "shift", "nm2:4"]
    assert all(r.accuracy > 0.8 for r in results)           # chance is 0.1
    assert results[1].weight_bytes["compressed"] * 6 < results[1].weight_bytes["compressed_dense"]


@pytest.mark.parametrize("row", SUMMARY["models"], ids=lambda r: f"{r['arch']}-{r['variant']}")
def test_bundled_pytorch_state_dicts_are_the_exported_models(row):
    """The .pt files (the PyTorch baseline of benchmarks/e2e.py and the demo) compute what the
    ONNX exports compute."""
    import torch

    from tvmopt.testing.digits import load_model, stem

    x = TEST["x"][:64]
    model = load_model(row["arch"], row["variant"], MODELS / f"{stem(row['arch'], row['variant'])}.pt")
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).numpy()
    sess = ort.InferenceSession(str(MODELS / row["plain_onnx"]), providers=["CPUExecutionProvider"])
    plain = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(logits, plain, rtol=1e-4, atol=1e-4 * np.abs(plain).max())
