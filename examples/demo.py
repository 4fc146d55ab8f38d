"""`make demo`: a bundled compressed model through the whole product, as a user runs it.

    .venv/bin/python examples/demo.py [--model digits_mlp_fastfood] [--trials 16] [--batch 1]

1. ``tvmopt inspect``: which layers the pass found compressed and the kernel each lowers to;
2. ``tvmopt tune``: a short tuning run (the shipped records in logs/records cover what it
   does not reach; a second run resumes and measures nothing);
3. ``tvmopt build``: the model as a TVM module library (.so);
4. ``tvmopt run``: the library on one held-out batch;
5. the library loaded with ``tvmopt.load``: its accuracy on the 360 held-out digits against
   PyTorch's (they must be equal), and its latency against onnxruntime and PyTorch measured
   in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "examples" / "models"
WORK = ROOT / ".tvmopt-demo"


def step(title: str, *argv: str) -> None:
    print(f"\n$ tvmopt {' '.join(argv)}    # {title}", flush=True)
    tvmopt = Path(sys.executable).with_name("tvmopt")
    code = subprocess.call([str(tvmopt), *argv], cwd=ROOT)
    if code:
        sys.exit(code)


def median_time(fn, rounds: int = 7, min_s: float = 0.05) -> list[float]:
    """Per round, the median seconds of calls made for ``min_s``."""
    fn()
    out = []
    for _ in range(rounds):
        samples, start = [], time.perf_counter()
        while time.perf_counter() - start < min_s or len(samples) < 5:
            t = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t)
        out.append(statistics.median(samples))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="digits_mlp_fastfood",
                    help="a bundled model, examples/models/<name>.onnx (default: the Fastfood MLP; try digits_cnn_binary)")
    ap.add_argument("--trials", default="16", help="tuning budget of step 2")
    ap.add_argument("--batch", type=int, default=1)
    args = ap.parse_args()
    WORK.mkdir(exist_ok=True)
    model = MODELS / f"{args.model}.onnx"
    lib = WORK / f"{args.model}.so"
    data = np.load(MODELS / "digits_test.npz")
    x_all, y_all = data["x"].astype(np.float32), data["y"]
    np.save(WORK / "x.npy", x_all[:args.batch])
    rel = lambda p: str(p.relative_to(ROOT))  # noqa: E731

    step("what the pass finds", "inspect", rel(model))
    step("tune (resumes from earlier runs)", "tune", rel(model), "--trials", args.trials, "--records",
         rel(WORK / "records"), "--batch", str(args.batch))
    step("build a deployable library", "build", rel(model), "--records", rel(WORK / "records"), "--batch",
         str(args.batch), "-o", rel(lib))
    step("run it", "run", rel(lib), "--input", rel(WORK / "x.npy"))

    print("\n# the library against onnxruntime and PyTorch, same inputs, same run", flush=True)
    import onnxruntime as ort
    import torch

    import tvmopt
    from tvmopt.testing.digits import load_model

    module = tvmopt.load(lib)
    _, arch, variant = args.model.split("_", 2)
    variant = {"nm24": "nm2:4", "nm24-T": "nm2:4-T"}.get(variant, variant)
    net = load_model(arch, variant, MODELS / f"{args.model}.pt")
    plain = MODELS / f"{args.model}.plain.onnx"
    sess = ort.InferenceSession(str(plain if plain.exists() else model), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    def torch_run(a):
        with torch.inference_mode():
            return net(torch.from_numpy(a)).numpy()

    def batches(fn):
        out = []
        for s in range(0, len(x_all), args.batch):
            chunk = x_all[s:s + args.batch]
            pad = np.concatenate([chunk, np.zeros((args.batch - len(chunk),) + chunk.shape[1:], np.float32)])
            out.append(fn(pad)[:len(chunk)])
        return np.concatenate(out).argmax(1)

    acc_tvm = float((batches(module) == y_all).mean())
    acc_torch = float((batches(torch_run) == y_all).mean())
    same = "equal" if acc_tvm == acc_torch else "DIFFERENT"
    print(f"accuracy on {len(y_all)} held-out digits: tvmopt {acc_tvm * 100:.2f}%, PyTorch {acc_torch * 100:.2f}% "
          f"({same})")
    x = x_all[:args.batch]
    runs = {"tvmopt": lambda: module(x), "onnxruntime": lambda: sess.run(None, {name: x}),
            "PyTorch": lambda: torch_run(x)}
    times = {k: [] for k in runs}
    for _ in range(5):                       # interleaved, so load changes hit everyone alike
        for k, fn in runs.items():
            time.sleep(0.2)                  # let the previous runtime's spinning threads sleep
            times[k] += median_time(fn, rounds=1)
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in med.items():
        print(f"  {k:12s} {v * 1e6:8.1f} us per batch of {args.batch}   ({med['tvmopt'] and v / med['tvmopt']:.2f}x "
              f"tvmopt's time)")
    best = min(med["onnxruntime"], med["PyTorch"])
    print(f"tvmopt is {best / med['tvmopt']:.2f}x faster than the faster of onnxruntime and PyTorch")
    if acc_tvm != acc_torch:
        sys.exit(1)


if __name__ == "__main__":
    main()
