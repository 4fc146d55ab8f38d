"""MobileNet-style networks (``tvmopt.testing.nets.MobileNet``: MobileNet-V2, -V3 and
EfficientNet-style, random weights, batch 1): tvmopt untuned, its channels-last graph (what
``auto`` picks, depthwise convolutions on ``depthwise_conv2d_nhwc``) and the same network NCHW,
against onnxruntime and PyTorch in the same run.

    python benchmarks/mobile.py                   # all three
    python benchmarks/mobile.py --networks efficientnet --rounds 5

Each figure is a ratio from interleaved rounds (the median of the rounds' own ratios, each round
in a fresh order: ``report.timed_rounds``). Writes benchmarks/results/mobile_<cpu>.json and
BENCHMARKS.md's ``mobile_<cpu>`` section.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import (ROOT, machine, medians, paired, per_cpu, ratio_cell, spread, timed_rounds, update_section,  # noqa: E402
                    write_json)

WORK = ROOT / ".bench" / "mobile"


def evaluate(name: str, target, rounds: int) -> dict:
    import onnxruntime as ort
    import torch

    from tvmopt.build.compile import compile_model
    from tvmopt.passes import DetectOptions
    from tvmopt.testing import nets

    torch.manual_seed(0)
    model = nets.randomize_batch_norm(nets.MobileNet(name)).eval()
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / f"{name}.onnx"
    x = np.random.default_rng(1).standard_normal((1,) + model.input_shape).astype(np.float32)
    torch.onnx.export(model, (torch.from_numpy(x),), str(path), dynamo=False, opset_version=17, input_names=["x"])
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = sess.run(None, {"x": x})[0]
    torch.set_num_threads(int(target.config.get("num-cores", 2)))
    builds, row = {}, {"network": name}
    for layout in ("auto", "nchw"):
        start = time.perf_counter()
        builds[layout] = compile_model(path, target, records=WORK / "no-records", shipped=False,
                                       options=DetectOptions(layout=layout))
        row[f"{layout}_compile_s"] = time.perf_counter() - start
        got = builds[layout](x)
        row[f"{layout}_err"] = float(np.abs(got - want).max() / np.abs(want).max())
        row[f"{layout}_kernels"] = sorted({la.kernel.split(":")[0] for la in builds[layout].lowered.layers})

    def torch_fn():
        with torch.inference_mode():
            return model(torch.from_numpy(x))

    samples = timed_rounds({"onnxruntime": lambda: sess.run(None, {"x": x}), "torch": torch_fn,
                            "channels last": lambda: builds["auto"](x), "nchw": lambda: builds["nchw"](x)},
                           rounds, min_seconds=0.2)
    row.update({f"{k.replace(' ', '_')}_ms": v * 1e3 for k, v in medians(samples).items()})
    row["torch_vs_ort"] = paired(samples, "onnxruntime", "torch")
    row["auto_vs_ort"] = paired(samples, "onnxruntime", "channels last")
    row["nchw_vs_ort"] = paired(samples, "onnxruntime", "nchw")
    row["auto_vs_nchw"] = paired(samples, "nchw", "channels last")
    row["auto_vs_nchw_quartiles"] = spread(samples, "nchw", "channels last")
    row["rounds"] = rounds
    return row


def table(rows: list[dict], meta: dict) -> str:
    lines = [f"## MobileNet-style networks, {meta['target']} (`benchmarks/mobile.py`)", "",
             f"{meta['machine']['cpu']} ({meta['target']}), commit {meta['machine']['commit']}, {meta['machine']['date']}; "
             "`tvmopt.testing.nets.MobileNet` with random weights (batch norms folded by the importer), batch 1, "
             "untuned (default schedules, no records), exported by `torch.onnx.export` (opset 17). Ratios are "
             "onnxruntime's time over each system's (> 1: faster than onnxruntime), medians of the "
             f"rounds' own ratios over {meta['rounds']} interleaved rounds. *channels last*: what `auto` builds "
             "(the whole graph NHWC, depthwise convolutions on `depthwise_conv2d_nhwc`); *NCHW*: `--layout nchw`; "
             "*NHWC / NCHW*: the two builds against each other (quartiles in brackets).", "",
             "| network | onnxruntime ms | torch | channels last | NCHW | NHWC / NCHW | max rel err |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['network']} | {r['onnxruntime_ms']:.2f} | {r['torch_vs_ort']:.2f}x | {r['auto_vs_ort']:.2f}x | "
                     f"{r['nchw_vs_ort']:.2f}x | {ratio_cell(r['auto_vs_nchw'], r['auto_vs_nchw_quartiles'])} | "
                     f"{max(r['auto_err'], r['nchw_err']):.1e} |")
    return "\n".join(lines)


def main() -> None:
    from tvmopt.target import parse_target
    from tvmopt.testing.nets import MOBILE_KINDS

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--networks", default=",".join(MOBILE_KINDS), help="comma-separated (default: all)")
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    target = parse_target("llvm")
    meta = {"machine": machine(), "target": target.key, "rounds": args.rounds}
    rows = []
    for name in args.networks.split(","):
        row = evaluate(name, target, args.rounds)
        print(f"{name:13s} channels last {row['auto_vs_ort']:.2f}x onnxruntime, NCHW {row['nchw_vs_ort']:.2f}x, "
              f"NHWC/NCHW {row['auto_vs_nchw']:.2f}x, err {max(row['auto_err'], row['nchw_err']):.1e}", flush=True)
        rows.append(row)
    name = per_cpu("mobile", target)
    write_json(name, {**meta, "rows": rows})
    update_section(name, table(rows, meta))


if __name__ == "__main__":
    main()
