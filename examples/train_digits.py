"""Train the bundled digits MLP and CNN in fp32 and in every compressed variant, check their
ONNX exports, save them under examples/models/ and write the table in BENCHMARKS.md.

    .venv/bin/python examples/train_digits.py [--epochs 60] [--finetune-epochs 40] [--out examples/models]

For each model it writes ``digits_<arch>_<variant>.onnx`` (compressed layers as ``ai.tvmopt``
nodes; fp32 models are standard ONNX) and ``digits_<arch>_<variant>.plain.onnx`` (standard ops
only), ``digits_<arch>_<variant>.pt`` (the PyTorch state dict, for
:func:`tvmopt.nn.digits.load_model`), plus ``digits_test.npz`` (the held-out split) and ``digits.json`` (accuracies, bytes).
Takes about two minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from report import machine, update_section, write_json  # noqa: E402

from tvmopt.nn import export_onnx  # noqa: E402
from tvmopt.nn import digits  # noqa: E402
from tvmopt.testing.digits import load_split, train_all  # noqa: E402

# weight-memory goals of the compressed-layers issue, on the layers each variant compresses
RATIO_GOAL = {"shift": 6.0, "binary": 32.0, "ternary": 16.0, "nm2:4": 1.7, "nm2:4-T": 1.7, "hashed": 8.0}
ACCURACY_SLACK = {"binary": 6.0}   # points below fp32 allowed; 3 for the others


def ort_predict(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=60, help="fp32 training epochs")
    ap.add_argument("--finetune-epochs", type=int, default=40, help="epochs of training after compression")
    ap.add_argument("--out", type=Path, default=ROOT / "examples" / "models")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-report", action="store_true", help="do not touch BENCHMARKS.md / benchmarks/results")
    args = ap.parse_args()
    torch.set_num_threads(2)
    args.out.mkdir(parents=True, exist_ok=True)

    split = load_split(args.seed)
    x_test, y_test = split.x_test.numpy(), split.y_test.numpy()
    np.savez_compressed(args.out / "digits_test.npz", x=x_test, y=y_test)

    t0 = time.perf_counter()
    results = train_all(epochs=args.epochs, finetune_epochs=args.finetune_epochs, seed=args.seed)
    rows = []
    fp32 = {r.arch: r.accuracy for r in results if r.variant == "fp32"}
    for r in results:
        stem = digits.stem(r.arch, r.variant)
        torch.save(r.model.state_dict(), args.out / f"{stem}.pt")
        example = split.x_test[:1]
        with torch.no_grad():
            logits = r.model(split.x_test).numpy()
        compact = export_onnx(r.model, example, args.out / f"{stem}.onnx", plain=r.variant == "fp32")
        plain = compact
        if r.variant != "fp32":
            plain = export_onnx(r.model, example, args.out / f"{stem}.plain.onnx", plain=True)
        ort_logits = ort_predict(plain, x_test)
        ort_err = float(np.abs(ort_logits - logits).max() / np.abs(logits).max())
        ort_acc = float((ort_logits.argmax(1) == y_test).mean())
        wb = r.weight_bytes
        ratio = wb["compressed_dense"] / wb["compressed"] if wb["compressed"] else None
        drop = (fp32[r.arch] - r.accuracy) * 100
        ok_acc = drop <= ACCURACY_SLACK.get(r.variant, 3.0)
        goal = RATIO_GOAL.get(r.variant)
        ok_mem = None if goal is None or ratio is None else ratio >= goal
        rows.append({"arch": r.arch, "variant": r.variant, "accuracy": r.accuracy, "drop_points": drop,
                     "accuracy_ok": ok_acc, "weight_bytes": wb, "ratio": ratio, "ratio_goal": goal,
                     "ratio_ok": ok_mem, "onnx": compact.name, "onnx_bytes": compact.stat().st_size,
                     "plain_onnx": plain.name, "ort_accuracy": ort_acc, "ort_max_rel_err": ort_err,
                     "train_seconds": r.seconds, "note": r.note})
        print(f"  {stem}: onnxruntime accuracy {ort_acc * 100:.1f}% (max rel err {ort_err:.1e})")

    summary = {"machine": machine(), "epochs": args.epochs, "finetune_epochs": args.finetune_epochs,
               "seed": args.seed, "test_samples": int(len(y_test)), "seconds": time.perf_counter() - t0,
               "models": rows}
    (args.out / "digits.json").write_text(json.dumps(summary, indent=2) + "\n")
    if not args.no_report:
        write_json("digits", summary)
        update_section("digits", table(summary))
    print(table(summary))


def _kb(n: int) -> str:
    return f"{n / 1024:.1f}"


def table(summary: dict) -> str:
    m = summary["machine"]
    lines = [
        "## Compressed layers on digits (`examples/train_digits.py`)",
        "",
        f"scikit-learn digits, {summary['test_samples']} held-out images; fp32 trained {summary['epochs']} epochs,"
        f" each variant converted from it and fine-tuned {summary['finetune_epochs']} epochs (Adam, cosine)."
        f" {m['cpu']}, {m['date']}, commit {m['commit']}; {summary['seconds']:.0f} s in all.",
        "Weights: bytes of the compact form of the compressed layers (index metadata and scales included,"
        " biases excluded) against the same layers in fp32; *model* counts every Linear/Conv weight.",
        "",
        "| model | variant | accuracy | vs fp32 | compressed layers KiB (fp32 KiB) | ratio | goal | model KiB | ORT plain acc | notes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summary["models"]:
        wb = r["weight_bytes"]
        acc_mark = "" if r["accuracy_ok"] else " **(miss)**"
        if r["ratio"] is None:
            ratio, goal, comp = "", "", ""
        else:
            ratio = f"{r['ratio']:.2f}x"
            goal = "" if r["ratio_goal"] is None else f"≥{r['ratio_goal']:g}x" + ("" if r["ratio_ok"] else " **(miss)**")
            if r["variant"] == "fastfood":
                goal = "O(n) params"
            comp = f"{_kb(wb['compressed'])} ({_kb(wb['compressed_dense'])})"
        delta = "" if r["variant"] == "fp32" else f"{-r['drop_points']:+.1f}{acc_mark}"
        lines.append(f"| {r['arch']} | {r['variant']} | {r['accuracy'] * 100:.1f}% | {delta} | {comp} | {ratio} | "
                     f"{goal} | {_kb(wb['total'])} | {r['ort_accuracy'] * 100:.1f}% | {r['note']} |")
    lines += [
        "",
        "Binary and ternary miss their 32x and 16x goals by a hair, and this is by design. Their weights"
        " take exactly 1 and 2 bits, but each layer also keeps one fp32 scale (alpha). With `scale=None`,"
        " binary storage is exactly 32x smaller; a test asserts this. Fastfood's goal is O(n)"
        " parameters: per block, three length-n diagonals and a length-n permutation.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
