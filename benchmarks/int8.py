"""Quantized activations times ternary and binary weights: ``int8_dense`` (VNNI) against the same
layer in fp32, for MatMuls and for convolutions (uint8 im2col).

    python benchmarks/int8.py [--rounds 5] [--target llvm]

Each shape is one ONNX layer ``relu(dequant(quant(x)) @ W + b)`` (``tvmopt.testing.qdq``) with
ternary weights, built untuned three ways from the same file: ``auto`` (the int8 product:
``vpdpbusd`` where the CPU has VNNI, ``vpmaddubsw`` on AVX2), ``--kernels dense`` (the fp32 product of the dequantized input), and the
same weights without the quantize/dequantize pair (fp32 activations, where the ternary decode
kernel or dense runs, whichever the never-slower policy picks); onnxruntime runs the QDQ file.
Ratios of medians over interleaved rounds in one run. Writes results/int8_<cpu>.json and the ``int8_<cpu>``
section of BENCHMARKS.md; ``--target "llvm -mcpu=znver3"`` on an AVX-512 machine measures AVX2 code in
a section of its own (``int8_avx2-on-<host>``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import ROOT, machine, median_seconds, narrower_caveat, section_for, update_section, write_json, wait_quiet  # noqa: E402

SHAPES = ((1, 1024, 1024), (16, 1024, 1024), (1, 4096, 4096), (16, 4096, 4096), (128, 768, 3072))
#: one-layer QDQ convolutions (batch, channels in, map side, channels out, stride): ResNet-18's and
#: ResNet-20's 3x3 layers
CONVS = ((1, 64, 56, 64, 1), (1, 64, 56, 128, 2), (1, 128, 28, 128, 1), (1, 256, 14, 256, 1), (1, 512, 7, 512, 1),
         (16, 64, 56, 64, 1), (1, 16, 32, 16, 1), (1, 32, 32, 32, 1), (1, 32, 16, 32, 1), (1, 64, 8, 64, 1),
         (16, 16, 32, 16, 1), (16, 64, 8, 64, 1))
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


def _medians(fns: dict, rounds: int) -> dict:
    """Each function's median over ``rounds`` interleaved rounds (seconds per call)."""
    samples = {key: [] for key in fns}
    for _ in range(rounds):
        for key, fn in fns.items():
            wait_quiet()
            samples[key].append(median_seconds(fn, 0.2))
    return {key: statistics.median(v) for key, v in samples.items()}


def _rel_err(got, want) -> float:
    return float(np.abs(got - want).max() / max(float(np.abs(want).max()), 1e-30))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-convs", dest="convs", action="store_false", help="the MatMul shapes only")
    ap.add_argument("--target", default="llvm", help='tvmopt\'s target (default: this CPU; "llvm -mcpu=znver3": AVX2)')
    args = ap.parse_args()

    import onnxruntime as ort

    from tvmopt.build.compile import compile_model
    from tvmopt.passes import DetectOptions
    from tvmopt.schedules import isa
    from tvmopt.target import parse_target
    from tvmopt.testing.qdq import qdq_conv_model, qdq_matmul_model

    WORK.mkdir(parents=True, exist_ok=True)
    target = parse_target(args.target)
    name, narrower = section_for("int8", target)
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
        err = _rel_err(auto(x), want)
        fns = {"auto": lambda: auto(x), "dense": lambda: dense(x), "fp32 act": lambda: fp32_act(x),
               "ort": lambda: sess.run(None, {"x": x})}
        med = _medians(fns, args.rounds)
        row = {"m": m, "k": k, "n": n, "kernel": auto.lowered.layers[0].kernel,
               "fp32_act_kernel": fp32_act.lowered.layers[0].kernel, "max_rel_err": err,
               **{f"{key.replace(' ', '_')}_us": v * 1e6 for key, v in med.items()},
               "vs_dense": med["dense"] / med["auto"], "vs_fp32_act": med["fp32 act"] / med["auto"],
               "vs_ort": med["ort"] / med["auto"]}
        rows.append(row)
        print(f"{m}x{k}x{n}: {row['kernel']}  vs fp32 dense {row['vs_dense']:.2f}x  vs fp32 activations "
              f"({row['fp32_act_kernel'].split(':')[0]}) {row['vs_fp32_act']:.2f}x  vs ort {row['vs_ort']:.2f}x  "
              f"err {err:.1e}", flush=True)
    convs = []
    for b, c, side, o, stride in CONVS if args.convs else ():
        path = qdq_conv_model(WORK / f"qdq_conv_{b}x{c}x{side}x{o}s{stride}.onnx", shape=(b, c, side, side),
                              out_channels=o, stride=stride)
        x = np.random.default_rng(0).uniform(-3, 6, (b, c, side, side)).astype(np.float32)
        auto = compile_model(path, target, records=none, shipped=False, batch=b)
        dense = compile_model(path, target, records=none, shipped=False, batch=b, options=DetectOptions(kernels="dense"))
        exact = ort.SessionOptions()
        exact.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        want = ort.InferenceSession(str(path), exact, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        err = _rel_err(auto(x), want)
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        fns = {"auto": lambda: auto(x), "dense": lambda: dense(x), "ort": lambda: sess.run(None, {"x": x})}
        med = _medians(fns, args.rounds)
        row = {"batch": b, "channels": c, "side": side, "out": o, "stride": stride,
               "kernel": auto.lowered.layers[0].kernel, "max_rel_err": err,
               **{f"{key}_us": v * 1e6 for key, v in med.items()},
               "vs_dense": med["dense"] / med["auto"], "vs_ort": med["ort"] / med["auto"]}
        convs.append(row)
        print(f"conv {b}x{c}x{side}x{side} -> {o}/{stride}: {row['kernel']}  vs fp32 dense {row['vs_dense']:.2f}x  "
              f"vs ort {row['vs_ort']:.2f}x  err {err:.1e}", flush=True)
    info = {**machine(), "target": target.key, "isa": (isa.for_target(target) or isa.current()).name,
            "narrower_than_host": narrower}
    write_json(name, {"machine": info, "rows": rows, "convs": convs})
    lines = [f"## Quantized activations: integer products, {target.key} (`benchmarks/int8.py`)", "",
             f"{info['cpu']} ({target.key}, ISA {info['isa']}), commit {info['commit']}, {info['date']}; untuned."
             f"{narrower_caveat(target.key, narrower)} "
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
    if convs:
        lines += ["", "Convolutions: one layer `relu(conv(dequant(quant(x)), W) + b)` (ternary weights, 3x3, pad 1) per "
                  "shape, the model's entry quantize and layout transposes included; *int8*: the uint8 im2col and "
                  "`int8_dense`; *fp32 dense*: `--kernels dense` (the direct fp32 conv of the "
                  "dequantized input); *onnxruntime*: the QDQ file with its default optimizations (its own quantized "
                  "conv where it fuses one); error against onnxruntime without optimizations.", "",
                  "| batch x C x H x W -> O / stride | kernel | vs fp32 dense | vs onnxruntime | max rel err |",
                  "|---|---|---:|---:|---:|"]
        for r in convs:
            lines.append(f"| {r['batch']} x {r['channels']} x {r['side']} x {r['side']} -> {r['out']} / {r['stride']} "
                         f"| {r['kernel'].split(':')[0]} | {r['vs_dense']:.2f}x | {r['vs_ort']:.2f}x "
                         f"| {r['max_rel_err']:.1e} |")
    update_section(name, "\n".join(lines))


if __name__ == "__main__":
    main()
