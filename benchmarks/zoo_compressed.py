"""Real CNNs given compressed weights, as issue 18 first measured them: the ONNX model zoo graphs
(``tvmopt.testing.zoo``, random weights), every convolution but the first and the last given a
compressed structure, exported as plain ONNX; tvmopt's build (as a new user gets it: shipped
records, no tuning) against onnxruntime on the same file, and against tvmopt's build of the
dense network, batch 1.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/zoo_compressed.py

(unset both variables together, and only here.) Structures, per output channel of each weight
``[O, C, KH, KW]``: *shift* sign(w) 2^round(log2 |w|) (DeepShift-PS's powers of two); *binary*
alpha sign(w), alpha the channel's mean |w| (XNOR-Net); *ternary* alpha sign(w) where
|w| > 0.7 mean |w| (TWN), else 0; *2:4* the two largest of every 4 consecutive weights along
C x KH x KW (layers whose reduction is not a multiple of 4 stay dense). Interleaved rounds, each
figure the median of the rounds' ratios (> 1: tvmopt faster). Writes
benchmarks/results/zoo_compressed_<cpu>.json and BENCHMARKS.md's ``zoo_compressed_<cpu>`` section.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import (ROOT, kernels_cell, machine, paired, per_cpu, ratio_cell, spread, timed_rounds,  # noqa: E402
                    update_section, write_json)

WORK = ROOT / ".bench" / "zoo_compressed"
NETWORKS = ("squeezenet", "resnet50", "alexnet")
VARIANTS = ("shift", "binary", "ternary", "nm")


def compress(w: np.ndarray, variant: str) -> np.ndarray | None:
    """``w`` [O, ...] with the variant's structure per output channel, or None (left dense)."""
    o = w.shape[0]
    flat = w.reshape(o, -1).astype(np.float64)
    mag = np.abs(flat)
    if variant == "shift":
        out = np.sign(flat) * np.exp2(np.round(np.log2(np.maximum(mag, 1e-30))))
    elif variant == "binary":
        out = np.sign(flat) * mag.mean(axis=1, keepdims=True)
    elif variant == "ternary":
        keep = mag > 0.7 * mag.mean(axis=1, keepdims=True)
        alpha = (mag * keep).sum(axis=1, keepdims=True) / np.maximum(keep.sum(axis=1, keepdims=True), 1)
        out = np.sign(flat) * keep * alpha
    elif variant == "nm":
        if flat.shape[1] % 4:
            return None
        groups = flat.reshape(o, -1, 4)
        order = np.argsort(np.abs(groups), axis=2)
        mask = np.ones_like(groups, dtype=bool)
        np.put_along_axis(mask, order[:, :, :2], False, axis=2)
        out = (groups * mask).reshape(o, -1)
    else:
        raise ValueError(variant)
    return out.reshape(w.shape).astype(np.float32)


def realize(name: str, variant: str) -> Path:
    """The zoo network with random weights, its inner convolutions compressed (``variant``)."""
    import onnx
    from onnx import numpy_helper

    from tvmopt.testing import zoo

    dense = zoo.realize(name, WORK / f"{name}_dense.onnx")
    if variant == "dense":
        return dense
    model = onnx.load(str(dense))
    inits = {t.name: t for t in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv" and len(n.input) > 1 and n.input[1] in inits]
    for node in convs[1:-1]:                         # first and last layers fp32, as the papers keep them
        tensor = inits[node.input[1]]
        w = compress(numpy_helper.to_array(tensor), variant)
        if w is not None:
            tensor.CopyFrom(numpy_helper.from_array(w, tensor.name))
    path = WORK / f"{name}_{variant}.onnx"
    onnx.save(model, str(path))
    return path


def evaluate(name: str, variants: list[str], target, rounds: int) -> list[dict]:
    import onnxruntime as ort

    from tvmopt.build.compile import compile_model

    builds, sessions, paths = {}, {}, {}
    for variant in ["dense"] + variants:
        paths[variant] = realize(name, variant)
        builds[variant] = compile_model(paths[variant], target)
        sessions[variant] = ort.InferenceSession(str(paths[variant]), providers=["CPUExecutionProvider"])
    inp = sessions["dense"].get_inputs()[0]
    x = np.random.default_rng(1).standard_normal(inp.shape).astype(np.float32)
    fns = {"tvmopt dense": lambda: builds["dense"](x)}
    for v in variants:
        fns[f"tvmopt {v}"] = (lambda b: lambda: b(x))(builds[v])
        fns[f"ort {v}"] = (lambda s: lambda: s.run(None, {inp.name: x}))(sessions[v])
    samples = timed_rounds(fns, rounds, 0.2)
    rows = []
    for v in variants:
        expected = sessions[v].run(None, {inp.name: x})[0]
        got = builds[v](x)
        layers = builds[v].lowered.layers
        touched = [la for la in layers if la.choice]
        row = {"network": name, "variant": v, "vs_ort": paired(samples, f"ort {v}", f"tvmopt {v}"),
               "vs_ort_quartiles": spread(samples, f"ort {v}", f"tvmopt {v}"),
               "vs_tvmopt_dense": paired(samples, "tvmopt dense", f"tvmopt {v}"),
               "ms": float(np.median(samples[f"tvmopt {v}"]) * 1e3),
               "compressed_layers": sum(1 for la in touched if la.choice.startswith("compressed")),
               "structured_layers": len(touched),
               "kernels": dict(Counter(la.kernel.split(":")[0] for la in layers)),
               "max_rel_err": float(np.abs(got - expected).max() / max(np.abs(expected).max(), 1e-12))}
        rows.append(row)
        print(name, v, f"{row['vs_ort']:.2f}x onnxruntime, {row['vs_tvmopt_dense']:.2f}x dense,",
              f"{row['compressed_layers']}/{row['structured_layers']} compressed", row["kernels"], flush=True)
    return rows


def table(rows: list[dict], meta: dict) -> str:
    lines = ["## Real networks with compressed weights (`benchmarks/zoo_compressed.py`, issue 18's first table)", "",
             f"Measured on {meta['cpu']} ({meta['target']}), commit {meta['commit']}, {meta['date']}. ONNX model zoo "
             "graphs with random weights, every convolution but the first and the last compressed per output channel "
             "(see the script), plain ONNX, batch 1; tvmopt as a new user builds it (shipped records, no tuning). "
             "*vs ORT*: onnxruntime on the same file, the median of interleaved rounds' ratios (quartiles in "
             "brackets); *vs tvmopt dense*: tvmopt's build of the dense network (never slower: >= 0.95); "
             "*compressed*: layers that run a compressed kernel, of those found structured.", "",
             "| network | weights | tvmopt ms | vs ORT | vs tvmopt dense | compressed | kernels | max rel err |",
             "|---|---|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        lines.append(f"| {r['network']} | {r['variant']} | {r['ms']:.2f} | {ratio_cell(r['vs_ort'], r['vs_ort_quartiles'])} | "
                     f"{r['vs_tvmopt_dense']:.2f}x | {r['compressed_layers']}/{r['structured_layers']} | "
                     f"{kernels_cell(r['kernels'])} | {r['max_rel_err']:.1e} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--networks", default=",".join(NETWORKS))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    from tvmopt.target import parse_target

    spec = parse_target("llvm")
    WORK.mkdir(parents=True, exist_ok=True)
    rows = [r for name in args.networks.split(",")
            for r in evaluate(name, args.variants.split(","), spec, args.rounds)]
    meta = {**machine(), "target": spec.key}
    name = per_cpu("zoo_compressed", spec)
    write_json(name, {"meta": meta, "rows": rows})
    update_section(name, table(rows, meta))


if __name__ == "__main__":
    main()
