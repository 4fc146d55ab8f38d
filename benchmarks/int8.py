"""Quantized activations times ternary and binary weights: ``int8_dense`` (VNNI) against the same
layer in fp32.

    python benchmarks/int8.py [--rounds 5]

Each shape is one ONNX layer ``relu(dequant(quant(x)) @ W + b)`` (``tvmopt.testing.qdq``) with
ternary weights, built untuned three ways from the same file: ``auto`` (the int8 product where
the CPU has VNNI), ``--kernels dense`` (the fp32 product of the dequantized input), and the
same weights without the quantize/dequantize pair (fp32 activations, where the ternary decode
kernel or dense runs, whichever the never-slower policy picks); onnxruntime runs the QDQ file.
Ratios of medians over interleaved rounds in one run. Writes results/int8_<cpu>.json and the ``int8_<cpu>``
section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import ROOT, machine, median_seconds, per_cpu, update_section, write_json  # noqa: E402

SHAPES = ((1, 1024, 1024), (16, 1024, 1024), (1, 4096, 4096), (16, 4096, 4096), (128, 768, 3072))
WORK = ROOT / ".bench" / "int8"


def _without_qdq(src: Path, dst: Path) -> Path:
    import onnx

    model = onnx.load(src)
    nodes = [n for n in model.graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")]
    for n in nodes:
        n.input[:] = ["x" if i == "dq" else i for i in n.input]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.save(model, dst)
    return dst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    import onnxruntime as ort

    from tvmopt.build.compile import compile_model
    from tvmopt.passes import DetectOptions
    from tvmopt.schedules import isa
    from tvmopt.target import parse_target
    from tvmopt.testing.qdq import qdq_matmul_model

    WORK.mkdir(parents=True, exist_ok=True)
    target = parse_target("llvm")
    none = WORK / "no-records"
    rows = []
    for m, k, n in SHAPES:
        qdq = qdq_matmul_model(WORK / f"qdq_{m}x{k}x{n}.onnx", m, k, n)
        fp32 = _without_qdq(qdq, WORK / f"fp32_{m}x{k}x{n}.onnx")
        x = np.random.default_rng(0).uniform(-6, 6, (m, k)).astype(np.float32)
        auto = compile_model(qdq, target, records=none, shipped=False)
        dense = compile_model(qdq, target, records=none, shipped=False, options=DetectOptions(kernels="dense"))
        fp32_act = compile_model(fp32, target, records=none, shipped=False)
        sess = ort.InferenceSession(str(qdq), providers=["CPUExecutionProvider"])
        want = sess.run(None, {"x": x})[0]
        err = float(np.abs(auto(x) - want).max() / max(float(np.abs(want).max()), 1e-30))
        fns = {"auto": lambda: auto(x), "dense": lambda: dense(x), "fp32 act": lambda: fp32_act(x),
               "ort": lambda: sess.run(None, {"x": x})}
        samples = {key: [] for key in fns}
        for _ in range(args.rounds):
            for key, fn in fns.items():
                time.sleep(0.1)
                samples[key].append(median_seconds(fn, 0.2))
        med = {key: statistics.median(v) for key, v in samples.items()}
        row = {"m": m, "k": k, "n": n, "kernel": auto.lowered.layers[0].kernel,
               "fp32_act_kernel": fp32_act.lowered.layers[0].kernel, "max_rel_err": err,
               **{f"{key.replace(' ', '_')}_us": v * 1e6 for key, v in med.items()},
               "vs_dense": med["dense"] / med["auto"], "vs_fp32_act": med["fp32 act"] / med["auto"],
               "vs_ort": med["ort"] / med["auto"]}
        rows.append(row)
        print(f"{m}x{k}x{n}: {row['kernel']}  vs fp32 dense {row['vs_dense']:.2f}x  vs fp32 activations "
              f"({row['fp32_act_kernel'].split(':')[0]}) {row['vs_fp32_act']:.2f}x  vs ort {row['vs_ort']:.2f}x  "
              f"err {err:.1e}", flush=True)
    info = {**machine(), "target": target.key, "isa": isa.current().name}
    name = per_cpu("int8", target)
    write_json(name, {"machine": info, "rows": rows})
    lines = [f"## Quantized activations: integer products, {target.key} (`benchmarks/int8.py`)", "",
             f"{info['cpu']} ({target.key}, ISA {info['isa']}), commit {info['commit']}, {info['date']}; untuned. "
             "One layer `relu(dequant(quant(x)) @ W + b)` with ternary weights per shape (M x K x N), each build "
             "from the same file; ratios of medians over interleaved rounds (> 1: the int8 build is faster). "
             "*fp32 dense*: `--kernels dense` (the fp32 product of the dequantized input); *fp32 activations*: "
             "the same weights without the quantize/dequantize pair (the kernel the never-slower policy picks); "
             "*onnxruntime*: the QDQ file.", "",
             "| M x K x N | kernel | vs fp32 dense | vs fp32 activations (kernel) | vs onnxruntime | max rel err |",
             "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['m']} x {r['k']} x {r['n']} | {r['kernel'].split(':')[0]} | {r['vs_dense']:.2f}x "
                     f"| {r['vs_fp32_act']:.2f}x ({r['fp32_act_kernel'].split(':')[0]}) | {r['vs_ort']:.2f}x "
                     f"| {r['max_rel_err']:.1e} |")
    update_section(name, "\n".join(lines))


if __name__ == "__main__":
    main()
