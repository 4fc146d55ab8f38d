"""Untuned starts shaped for the target's vector registers (``schedules/isa.py``): the start
config of each conv2d and dense workload as the AVX2-shaped rule picks it and as the AVX-512
rule does, both compiled for this machine, against onnxruntime (one Conv node) or the faster of
numpy and torch (the same product) in the same run.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/heuristics.py

(unset both variables together, and only here: they hold numpy to an old kernel.) Interleaved
rounds, medians; each figure is the reference's time over the kernel's (> 1: faster than the
reference). Writes benchmarks/results/heuristics_<isa>.json and BENCHMARKS.md's ``heuristics_<isa>`` section,
one per CPU kind of the machine it ran on (``avx2``, ``avx512`` (Zen 5), ``zen4``, ``xeon``: ``report.cpu_kind``), so the CPUs' tables stand
side by side.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import CPU_LABELS, blas, cpu_kind, machine, median_seconds, update_section, write_json, wait_quiet  # noqa: E402

CONVS = ("1x3x224x224x64x7x7x2x3", "1x64x56x56x64x3x3x1x1", "1x64x56x56x128x3x3x2x1", "1x64x56x56x128x1x1x2x0",
         "1x128x28x28x128x3x3x1x1", "1x256x14x14x256x3x3x1x1", "1x512x7x7x512x3x3x1x1", "1x16x32x32x16x3x3x1x1",
         "16x128x28x28x128x3x3x1x1")
DENSES = ("1x4096x4096", "16x4096x4096", "64x1024x1024", "128x768x3072", "128x3072x768", "2048x3072x768")


def _ort_conv(dims):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    n, c, h, w, o, kh, kw, s, p = dims
    weight = np.random.default_rng(0).standard_normal((o, c, kh, kw)).astype(np.float32)
    node = helper.make_node("Conv", ["x", "W"], ["y"], pads=[p] * 4, strides=[s, s], kernel_shape=[kh, kw])
    graph = helper.make_graph([node], "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, c, h, w])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(weight, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).standard_normal((n, c, h, w)).astype(np.float32)
    return lambda: sess.run(None, {"x": x})


def _kernel(key: str, isa, target):
    import tvm

    from tvmopt.ops.task import get_task
    from tvmopt.schedules import isa as isas
    from tvmopt.schedules import lowering

    with isas.use(isa):                                # the start and its schedule, as a build for it
        task = get_task(key)
        config = task.space.initial()
        lib = lowering.compile(task.schedule(config, target), target)
    inputs = task.make_inputs(np.random.default_rng(0))
    expected = task.reference(inputs)
    args = [tvm.runtime.tensor(a) for a in inputs] + [tvm.runtime.tensor(np.zeros(expected.shape, np.float32))]
    lib["main"](*args)
    if task.mismatch(args[-1].numpy(), expected):
        raise SystemExit(f"{key}: wrong result with {config}")
    timer = lib.mod.time_evaluator("main", tvm.cpu(), number=1, repeat=1, min_repeat_ms=100)
    if key.startswith("dense:"):                       # the weight as [K, N] for numpy and torch
        from tvmopt.ops.gemm import from_panels

        inputs = [inputs[0], from_panels(inputs[1], task.shape.panel)]
    return config, (lambda: timer(*args).mean), inputs


def row(key: str, target, rounds: int) -> dict:
    import torch

    from tvmopt.schedules.isa import AVX2, AVX512, host

    wide = host() if host().lanes >= 16 else AVX512    # this CPU's own AVX-512 rule (Zen 4's tiles differ)
    avx2_config, avx2, inputs = _kernel(key, AVX2, target)
    avx512_config, avx512, _ = _kernel(key, wide, target)
    dims = tuple(int(d) for d in key.split(":")[1].split("x"))
    if key.startswith("conv2d:"):
        refs = {"onnxruntime": _ort_conv(dims)}
    else:
        a, b = inputs                                  # b: the weight as [K, N]
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        refs = {"numpy": lambda: a @ b, "torch": lambda: torch.matmul(ta, tb)}
    timers = {"avx2 start": avx2, "avx512 start": avx512,
              **{k: (lambda f=f: median_seconds(f, 0.1)) for k, f in refs.items()}}
    samples = {k: [] for k in timers}
    for _ in range(rounds):
        for k, fn in timers.items():
            wait_quiet()
            samples[k].append(fn())
    med = {k: statistics.median(v) for k, v in samples.items()}
    ref_name = min(refs, key=lambda k: med[k])
    out = {"workload": key, "reference": ref_name, "reference_ms": med[ref_name] * 1e3,
           "avx2_start": list(map(str, avx2_config)), "avx512_start": list(map(str, avx512_config)),
           "avx2_vs_ref": med[ref_name] / med["avx2 start"], "avx512_vs_ref": med[ref_name] / med["avx512 start"],
           "times_ms": {k: v * 1e3 for k, v in med.items()}}
    print(f"{key:32s} vs {ref_name}: avx2-shaped {out['avx2_vs_ref']:.2f}x  avx512-shaped {out['avx512_vs_ref']:.2f}x",
          flush=True)
    return out


def table(rows: list[dict], meta: dict) -> str:
    lines = [f"## Untuned starts shaped for the vector registers, {meta['isa']} machine (`benchmarks/heuristics.py`)",
             "",
             f"Measured on {meta['cpu']} ({meta['target']}), commit {meta['commit']}, {meta['date']}; BLAS: "
             f"{meta['blas']}. The start config of each workload as the AVX2-shaped rule picks it and as the "
             "AVX-512 rule of this CPU does (`schedules/isa.py`; a build uses the target's; Zen 4's, for its "
             "double-pumped vectors, differs in the conv tiles), both compiled for this machine; "
             "each figure is the reference's time over the kernel's in the same run (> 1: faster). Convolutions "
             "against onnxruntime (one Conv node), dense products against the faster of numpy and torch."
             " A one-Conv file makes onnxruntime convert the input to its blocked NCHWc layout and the output"
             " back on every call (11% of its Conv time at 1x64x56x56, 20% at 16x64x56x56 stride 2); inside a network"
             " it converts once, so these ratios flatter tvmopt: whole networks are in the networks and suite"
             " sections.", "",
             "| workload | reference | AVX2-shaped start | AVX-512-shaped start |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| `{r['workload']}` | {r['reference']} ({r['reference_ms']:.3f} ms) | {r['avx2_vs_ref']:.2f}x "
                     f"| {r['avx512_vs_ref']:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="+", metavar="KEY",
                        help="time only these workloads (e.g. dense:128x768x3072); prints, writes nothing")
    args = parser.parse_args()

    import torch

    from tvmopt.target import parse_target

    spec = parse_target("llvm")
    width = cpu_kind(spec)
    torch.set_num_threads(int(spec.config.get("num-cores", 2)))
    meta = {**machine(), "target": spec.key, "blas": blas(), "isa": CPU_LABELS[width]}
    keys = [f"conv2d:{d}" for d in CONVS] + [f"dense:{d}" for d in DENSES]
    rows = [row(k, spec.tvm_target(), args.rounds) for k in (args.only or keys)]
    if args.only:
        return
    write_json(f"heuristics_{width}", {"meta": meta, "rows": rows})
    update_section(f"heuristics_{width}", table(rows, meta))


if __name__ == "__main__":
    main()
