"""Models quantized by ONNX Runtime's own tool, the way users quantize for CPU deployment:
tvmopt against onnxruntime on the same file.

    python benchmarks/ort_quantized.py [--models encoder,bert,resnet18] [--rounds 7] [--target llvm]

Each fp32 model (``benchmarks/suite.py``'s: the BERT-base encoder MLP and two BERT-base encoder
layers on 128 tokens, ResNet-18 at 224 x 224; random weights, batch 1) is exported to plain ONNX
and quantized by ``onnxruntime.quantization``:

- ``dynamic``: ``quantize_dynamic`` (int8 weights; each MatMul's and convolution's input
  quantized at run time: ``DynamicQuantizeLinear``, ``MatMulInteger`` or ``ConvInteger``,
  ``Cast``, the scales' ``Mul``);
- ``qdq-s8``: ``quantize_static`` in QDQ format with its defaults (int8 activations, per-tensor
  int8 weights), calibrated on 4 random inputs;
- ``qdq-u8``: the same with uint8 activations (``activation_type=QUInt8``);
- ``qop-u8``: ``quantize_static`` in QOperator format (QLinearConv, QLinearMatMul, QGemm,
  QLinearAdd...: one operator per quantized layer, the form of the ONNX model zoo's int8 models),
  uint8 activations as ONNX Runtime advises for it; tvmopt reads it as its QDQ form.

tvmopt builds each file untuned (no records) and runs ``int8_dense`` (VNNI where the CPU has it,
``vpmaddubsw`` on AVX2) for every quantized layer it recognizes (``tvmopt inspect`` lists them);
``--target "llvm -mcpu=znver3"`` on an AVX-512 machine measures the AVX2 code in a section of its
own (``ort_quantized_avx2-on-<host>``), where only *vs tvmopt fp32* compares like with like. Timed in interleaved
rounds, each round in a fresh order (``report.timed_rounds``); ratios are the median of the rounds'
own ratios (> 1: tvmopt faster). *vs ORT*: onnxruntime on the same quantized file; *vs ORT fp32*:
on the fp32 export; *vs tvmopt fp32*: tvmopt's build of the fp32 export. *max rel err*: against
onnxruntime on the same file, graph optimizations off (a value that a 1-ulp difference moves across
a rounding boundary of a quantizer comes out a quantum apart). Writes
results/ort_quantized_<cpu>.json and the ``ort_quantized_<cpu>`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import (RESULTS, ROOT, kernels_cell, machine, medians, narrower_caveat, paired, ratio_cell, section_for,  # noqa: E402
                    spread, timed_rounds, update_section, write_json)

WORK = ROOT / ".bench" / "ort_quantized"
MODELS = ("encoder", "bert", "resnet18")
VARIANTS = ("dynamic", "qdq-s8", "qdq-u8", "qop-u8")
#: calibration inputs for quantize_static
CALIBRATION = 4


def applies(model: str, variant: str) -> bool:
    """Every model in every form (dynamic quantization of a CNN writes ConvInteger, which tvmopt
    runs as the float convolution of the zero-point differences: ``model/qoperator.py``)."""
    return True


def quantize(fp32: Path, variant: str, shape: tuple) -> Path:
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)

    out = fp32.with_name(fp32.stem.replace("_fp32", "") + f"_{variant}.onnx")
    if out.exists():
        return out
    if variant == "dynamic":
        quantize_dynamic(str(fp32), str(out))
        return out

    import onnx

    name = onnx.load(fp32, load_external_data=False).graph.input[0].name

    class Inputs(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(0)
            self.items = iter([{name: rng.standard_normal((1,) + shape).astype(np.float32)} for _ in range(CALIBRATION)])

        def get_next(self):
            return next(self.items, None)

    activation = QuantType.QUInt8 if variant.endswith("-u8") else QuantType.QInt8
    form = QuantFormat.QOperator if variant.startswith("qop") else QuantFormat.QDQ
    quantize_static(str(fp32), str(out), Inputs(), quant_format=form, activation_type=activation)
    return out


def evaluate(model_name: str, variants: list[str], target, rounds: int) -> list[dict]:
    import onnxruntime as ort

    import suite
    from tvmopt.build.compile import compile_model

    base = suite.build_model(model_name)
    shape = tuple(base.input_shape)
    WORK.mkdir(parents=True, exist_ok=True)
    fp32 = suite.export(base, shape, WORK / f"{model_name}_fp32.onnx")
    x = np.random.default_rng(1).standard_normal((1,) + shape).astype(np.float32)
    empty = WORK / "no-records"

    def session(path, optimize=True):
        options = ort.SessionOptions()
        if not optimize:
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        return lambda: sess.run(None, {name: x})[0]

    fp32_build = compile_model(fp32, target, records=empty, shipped=False)
    ort_fp32 = session(fp32)
    rows = []
    for variant in [v for v in variants if applies(model_name, v)]:
        path = quantize(fp32, variant, shape)
        start = time.perf_counter()
        build = compile_model(path, target, records=empty, shipped=False)
        compile_s = time.perf_counter() - start
        ort_q = session(path)
        err = suite.relative_error(build(x), session(path, optimize=False)())
        samples = timed_rounds({"tvmopt": lambda: build(x), "tvmopt fp32": lambda: fp32_build(x), "ort": ort_q,
                                "ort fp32": ort_fp32}, rounds, min_seconds=0.2)
        med = medians(samples)
        layers = build.lowered.layers
        integer = sum(1 for la in layers if la.kernel.startswith("int8_dense"))
        row = {"model": model_name, "variant": variant, "max_rel_err": err, "compile_s": compile_s,
               **{f"{k.replace(' ', '_')}_ms": v * 1e3 for k, v in med.items()},
               "vs_ort": paired(samples, "ort", "tvmopt"), "vs_ort_quartiles": spread(samples, "ort", "tvmopt"),
               "vs_ort_fp32": paired(samples, "ort fp32", "tvmopt"),
               "vs_tvmopt_fp32": paired(samples, "tvmopt fp32", "tvmopt"), "rounds": len(samples["tvmopt"]),
               "layers": len(layers), "integer_layers": integer, "kernels": suite.kernel_families(layers)}
        rows.append(row)
        print(f"{model_name:9s} {variant:8s} tvmopt {med['tvmopt'] * 1e3:8.2f} ms  vs ort {row['vs_ort']:5.2f}x "
              f"({row['vs_ort_quartiles'][0]:.2f}-{row['vs_ort_quartiles'][1]:.2f})  vs ort fp32 "
              f"{row['vs_ort_fp32']:5.2f}x  vs tvmopt fp32 {row['vs_tvmopt_fp32']:5.2f}x  "
              f"integer layers {integer}/{len(layers)}  err {err:.1e}", flush=True)
        build = ort_q = samples = None
        gc.collect()
    return rows


def table(rows: list[dict], info: dict) -> str:
    lines = [f"## Models quantized by ONNX Runtime's tool, {info['target']} (`benchmarks/ort_quantized.py`)", "",
             f"{info['cpu']} ({info['target']}), {_commits(rows, info)}, {info['date']}; untuned builds, batch 1, "
             f"random weights.{narrower_caveat(info['target'], info.get('narrower_than_host'))} "
             "Each fp32 model exported to plain ONNX and quantized by `onnxruntime.quantization`: "
             "*dynamic* `quantize_dynamic` (DynamicQuantizeLinear + MatMulInteger per MatMul, ConvInteger per convolution: "
             "tvmopt runs those as fp32 convolutions of the zero-point differences), *qdq-s8* "
             "`quantize_static` QDQ with its defaults (int8 activations, per-tensor int8 weights), *qdq-u8* the same with "
             "uint8 activations, *qop-u8* `quantize_static` in QOperator form (QLinearConv, QLinearMatMul, QGemm, QLinearAdd..., "
             "which tvmopt reads as its QDQ form) with uint8 activations. Ratios: the median of interleaved rounds' own ratios (> 1: tvmopt faster); *vs ORT*: "
             "onnxruntime on the same file (quartiles in brackets); *vs ORT fp32* / *vs tvmopt fp32*: the fp32 export. "
             "*integer layers*: layers on `int8_dense` of those tvmopt lists. *max rel err*: against onnxruntime on "
             "the same file, graph optimizations off.", "",
             "| model | variant | tvmopt ms | vs ORT | vs ORT fp32 | vs tvmopt fp32 | integer layers | max rel err | kernels |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['variant']} | {r['tvmopt_ms']:.2f} | {ratio_cell(r['vs_ort'], r['vs_ort_quartiles'])} | "
                     f"{r['vs_ort_fp32']:.2f}x | {r['vs_tvmopt_fp32']:.2f}x | {r['integer_layers']} of {r['layers']} | "
                     f"{r['max_rel_err']:.1e} | {kernels_cell(r['kernels'])} |")
    slower = [r for r in rows if r["vs_ort"] < 1.0]
    lines += ["", f"Faster than onnxruntime on the same file: {len(rows) - len(slower)} of {len(rows)} rows; faster than "
              f"tvmopt's own fp32 build: {sum(r['vs_tvmopt_fp32'] > 1 for r in rows)} of {len(rows)}."]
    if info.get("narrower_than_host"):
        lines.append(f"- The {len(slower)} rows slower than onnxruntime ran against its AVX-512 VNNI kernels on this CPU "
                     "(see above); tvmopt's AVX2 integer products are `vpmaddwd` on int16 weights (int8 weights "
                     "would saturate `vpmaddubsw`'s int16 pair sums).")
        slower = []
    for r in slower:
        why = LIMITS.get((r["model"], r["variant"])) or LIMITS.get(r["model"], "not analysed")
        lines.append(f"- {r['model']} {r['variant']} ({r['vs_ort']:.2f}x): {why}")
    if any(r["max_rel_err"] > 1e-4 for r in rows):
        lines.append("- Errors above 1e-4 are quantizers' roundings: a value that a 1-ulp difference before a quantizer "
                     "(tvmopt's summation order, its tanh or erf) moves across a rounding boundary comes out one quantum "
                     "(scale / 255 of the range) apart, and later layers carry it; the dynamic rows' first products are exact "
                     "(the encoder's: 0).")
    return "\n".join(lines)


def _commits(rows: list[dict], info: dict) -> str:
    """'commit X', or 'commit X (n rows), Y (m rows)' where rows were measured at several."""
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.get("commit", info["commit"])] = counts.get(r.get("commit", info["commit"]), 0) + 1
    if len(counts) == 1:
        return f"commit {next(iter(counts))}"
    return "commit " + ", ".join(f"{c} ({n} rows)" for c, n in counts.items())


#: what limits a model's rows that run slower than onnxruntime, read from per-kernel profiles
LIMITS = {
    ("resnet18", "dynamic"): "ConvInteger runs as the fp32 convolution of the zero-point differences (its zero point "
                             "is data, which the uint8 im2col's padding would need at run time), after a "
                             "DynamicQuantizeLinear per layer: two reductions and a quantize of every input.",
    "resnet18": "the convolutions run a uint8 im2col (about 5% of the time on one thread) and the integer GEMM "
                "(at vpdpbusd's peak on Zen 4), where onnxruntime's MLAS runs direct u8 x s8 convolutions in its "
                "blocked layout; with int8 activations (qdq-s8) onnxruntime has no such kernel and tvmopt is the "
                "faster. On the shared 2-core VM one vCPU slows down for seconds at a time: the same build then "
                "runs 1.25x slower (a four-layer QDQ model: 1.63 against 1.32 ms, the other thread's system time "
                "doubling as it yields at each parallel loop's end), because TVM splits every parallel loop "
                "statically in halves, where onnxruntime's thread pool hands out chunks as threads free up. "
                "Measured in a steady stretch the same two files ran 1.01x (qdq-u8) and 1.05x (qop-u8) "
                "onnxruntime.",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds")
    ap.add_argument("--target", default="llvm", help='tvmopt\'s target (default: this CPU; "llvm -mcpu=znver3": AVX2)')
    ap.add_argument("--update", action="store_true",
                    help="keep the other rows of this CPU's earlier results (each row names its commit); measure the selected ones again")
    args = ap.parse_args()

    from tvmopt.schedules import isa
    from tvmopt.target import parse_target

    target = parse_target(args.target)
    name, narrower = section_for("ort_quantized", target)
    info = {**machine(), "target": target.key, "isa": (isa.for_target(target) or isa.current()).name,
            "narrower_than_host": narrower}
    models = [m.strip() for m in args.models.split(",")]
    variants = [v.strip() for v in args.variants.split(",")]
    kept = []
    previous = RESULTS / f"{name}.json"
    if args.update and previous.exists():
        old = json.loads(previous.read_text())
        kept = [{"commit": old["machine"]["commit"], **r} for r in old["rows"]
                if not (r["model"] in models and r["variant"] in variants)]
    rows = []
    for model in models:
        rows += [{"commit": info["commit"], **r} for r in evaluate(model, variants, target, args.rounds)]
    order = {m: i for i, m in enumerate(MODELS)}
    rows = sorted(kept + rows, key=lambda r: (order.get(r["model"], len(order)), VARIANTS.index(r["variant"])))
    write_json(name, {"machine": info, "rows": rows})
    update_section(name, table(rows, info))


if __name__ == "__main__":
    main()
