"""Register tables (``binary_perm_dense``, ``ternary_perm_dense``, ``binary_perm_conv2d_nhwc``:
tvmopt/ops/perm_tables.py) against the dense kernel and the compressed kernels they replace,
one layer at a time, on an AVX-512 machine.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/perm_tables.py

(unset both variables together, and only here.) For each shape: the dense kernel's start
(``dense:`` / ``conv2d_nhwc:``), the register-table kernel's start, and the kernel the pass gave
such a layer before (binary: ``binary_lut_dense`` at one row, ``binary_rowlut_dense`` from 8;
ternary: ``ternary_dense``, ``ternary_rowlut_dense`` from 64; convolutions: the direct decode
conv ``<format>_conv2d_nhwc``). Outputs are checked against numpy first; then paired rounds in
random order, each figure the median over rounds of the dense kernel's time over the kernel's
(> 1: faster than dense). These are the measurements behind ``passes/choose.py``'s
``PERM_MIN_WEIGHTS`` and ``conv_register_tables``.

Writes benchmarks/results/perm_tables_<cpu>.json and BENCHMARKS.md's ``perm_tables_<cpu>`` section.

``--nm``: 2:4 layers instead (``nm_perm_dense``, tvmopt/ops/nm_perm_dense.py: kept inputs picked
in registers) against the dense kernel and the decode kernel (``nm_decode_dense``), at 1 to 128
rows: the measurements behind ``passes/choose.py``'s ``NM_PERM_MAX_ROWS`` and
``NM_PERM_MIN_WEIGHTS``. Writes ``nm_perm_<cpu>``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import cpu_kind, machine, update_section, write_json, wait_quiet  # noqa: E402

#: (M, N, K) of dense layers: BERT-base's MLP at 128 tokens, a 4096-wide MLP at 1 to 32 rows, small layers
DENSE = ((128, 3072, 768), (128, 768, 3072), (64, 1024, 1024), (32, 4096, 4096), (16, 4096, 4096),
         (1, 4096, 4096), (1, 1024, 1024), (16, 256, 256), (1, 256, 256))
#: convolutions (NxCxHxWxOxKHxKWxSxP): ResNet-18's 3x3 and downsampling layers, CIFAR-size layers
CONVS = ("1x64x56x56x64x3x3x1x1", "1x128x28x28x128x3x3x1x1", "1x256x14x14x256x3x3x1x1", "1x512x7x7x512x3x3x1x1",
         "1x64x56x56x128x3x3x2x1", "1x64x56x56x128x1x1x2x0", "16x128x28x28x128x3x3x1x1", "16x512x7x7x512x3x3x1x1",
         "1x32x32x32x32x3x3x1x1", "1x64x8x8x64x3x3x1x1", "1x16x32x32x16x3x3x1x1", "16x64x56x56x64x3x3x1x1",
         "1x32x16x16x32x3x3x1x1")


#: (M, N, K) of 2:4 layers: the 4096-wide MLP at 1 to 32 rows, smaller layers, the crossover
NM_DENSE = ((1, 4096, 4096), (4, 4096, 4096), (16, 4096, 4096), (32, 4096, 4096), (1, 1024, 1024),
            (16, 1024, 1024), (1, 256, 256), (64, 1024, 1024), (128, 3072, 768), (128, 768, 3072),
            (512, 768, 3072))


def _before(fmt: str, m: int) -> str:
    """The kernel the pass gave a binary or ternary dense layer of ``m`` rows before register tables."""
    if fmt == "binary":
        return "binary_lut_dense" if m == 1 else "binary_rowlut_dense"
    return "ternary_rowlut_dense" if m >= 64 else "ternary_dense"


def _timer(key: str, target):
    import tvm

    from tvmopt.ops.task import get_task
    from tvmopt.schedules import lowering

    task = get_task(key)
    lib = lowering.compile(task.schedule(task.space.initial(), target), target)
    inputs = task.make_inputs(np.random.default_rng(0))
    expected = task.reference(inputs)
    args = [tvm.runtime.tensor(a) for a in inputs] + [tvm.runtime.tensor(np.zeros(expected.shape, np.float32))]
    lib["main"](*args)
    wrong = task.mismatch(args[-1].numpy(), expected)
    if wrong:
        raise SystemExit(f"{key}: {wrong}")
    evaluator = lib.mod.time_evaluator("main", tvm.cpu(), number=1, repeat=1, min_repeat_ms=30)
    return lambda: evaluator(*args).mean


def _row(name: str, keys: dict[str, str], target, rounds: int) -> dict:
    """Paired rounds of the kernels ``keys`` (label -> task key; ``dense`` the reference)."""
    timers = {label: _timer(key, target) for label, key in keys.items()}
    samples = {label: [] for label in timers}
    order = list(timers)
    for _ in range(rounds):
        random.shuffle(order)
        for label in order:
            wait_quiet()
            samples[label].append(timers[label]())
    ratios = {label: statistics.median(d / t for d, t in zip(samples["dense"], samples[label]))
              for label in timers if label != "dense"}
    row = {"layer": name, "keys": keys, "dense_ms": statistics.median(samples["dense"]) * 1e3, "ratios": ratios}
    print(name, {k: round(v, 2) for k, v in ratios.items()}, flush=True)
    return row


def table(dense_rows: list[dict], conv_rows: list[dict], meta: dict) -> str:
    lines = ["## Register tables vs dense, one layer at a time (`benchmarks/perm_tables.py`)", "",
             f"Measured on {meta['cpu']} ({meta['target']}), commit {meta['commit']}, {meta['date']}. Start configs; "
             "each figure is the median over paired rounds (random order) of the dense kernel's time over the "
             "kernel's, same round (> 1: faster than dense). *registers*: `binary_perm_dense` / `ternary_perm_dense` "
             "/ `binary_perm_conv2d_nhwc`; *before*: the kernel the pass gave the layer without them "
             "(`binary_lut_dense` at one row, `binary_rowlut_dense` from 8 rows; `ternary_dense`, "
             "`ternary_rowlut_dense` from 64 rows; the direct decode convs `<format>_conv2d_nhwc`).", "",
             "| layer (M x N x K) | dense ms | binary registers | binary before | ternary registers | ternary before |",
             "|---|---|---|---|---|---|"]
    for r in dense_rows:
        q = r["ratios"]
        lines.append(f"| {r['layer']} | {r['dense_ms']:.3f} | {q['binary registers']:.2f}x | {q['binary before']:.2f}x "
                     f"({r['keys']['binary before'].split(':')[0]}) | {q['ternary registers']:.2f}x | "
                     f"{q['ternary before']:.2f}x ({r['keys']['ternary before'].split(':')[0]}) |")
    lines += ["", "| convolution (NxCxHxWxOxKHxKWxSxP, NHWC) | dense ms | binary registers | binary decode "
                  "| ternary registers | ternary decode |", "|---|---|---|---|---|---|"]
    for r in conv_rows:
        q = r["ratios"]
        lines.append(f"| {r['layer']} | {r['dense_ms']:.3f} | {q['binary registers']:.2f}x | {q['binary decode']:.2f}x "
                     f"| {q['ternary registers']:.2f}x | {q['ternary decode']:.2f}x |")
    binary = [r["ratios"]["binary registers"] for r in dense_rows + conv_rows]
    lines += ["", f"Binary register tables: {min(binary):.2f}x to {max(binary):.2f}x the dense kernel over "
                  f"{len(binary)} layers (geometric mean {float(np.exp(np.mean(np.log(binary)))):.2f}x)."]
    return "\n".join(lines)


def nm_table(rows: list[dict], meta: dict) -> str:
    lines = ["## 2:4 weights picking their inputs in registers, one layer at a time (`benchmarks/perm_tables.py --nm`)",
             "", f"Measured on {meta['cpu']} ({meta['target']}), commit {meta['commit']}, {meta['date']}. Start "
             "configs; each figure is the median over paired rounds (random order) of the dense kernel's time over "
             "the kernel's, same round (> 1: faster than dense). *registers*: `nm_perm_dense` (each kept input "
             "picked out of a register of 16 by `vpermps`, 9 bytes read per group of 4 weights); *decode*: "
             "`nm_decode_dense` (the weight decoded to dense tiles, the kernel the pass gave such layers before).",
             "", "| layer (M x N x K) | dense ms | registers | decode |", "|---|---|---|---|"]
    for r in rows:
        q = r["ratios"]
        lines.append(f"| {r['layer']} | {r['dense_ms']:.3f} | {q['registers']:.2f}x | {q['decode']:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--quick", action="store_true", help="three dense shapes and three convolutions")
    parser.add_argument("--nm", action="store_true", help="2:4 layers (nm_perm_dense) instead")
    args = parser.parse_args()

    from tvmopt.schedules import isa
    from tvmopt.target import parse_target

    if isa.host().lanes < 16:
        raise SystemExit("register tables need AVX-512; this CPU has AVX2 only")
    spec = parse_target("llvm")
    target = spec.tvm_target()
    if args.nm:
        rows = []
        for m, n, k in NM_DENSE:
            dims = f"{m}x{n}x{k}"
            rows.append(_row(dims, {"dense": f"dense:{dims}", "registers": f"nm_perm_dense:{dims}x2x4",
                                    "decode": f"nm_decode_dense:{dims}x2x4"}, target, args.rounds))
        meta = {**machine(), "target": spec.key}
        name = f"nm_perm_{cpu_kind(spec)}"
        write_json(name, {"meta": meta, "dense": rows})
        update_section(name, nm_table(rows, meta))
        return
    dense = DENSE[:2] + DENSE[5:6] if args.quick else DENSE
    convs = CONVS[:1] + CONVS[5:6] + CONVS[-1:] if args.quick else CONVS
    dense_rows, conv_rows = [], []
    for m, n, k in dense:
        dims = f"{m}x{n}x{k}"
        dense_rows.append(_row(dims, {"dense": f"dense:{dims}", "binary registers": f"binary_perm_dense:{dims}",
                                      "binary before": f"{_before('binary', m)}:{dims}",
                                      "ternary registers": f"ternary_perm_dense:{dims}",
                                      "ternary before": f"{_before('ternary', m)}:{dims}"}, target, args.rounds))
    for dims in convs:
        conv_rows.append(_row(dims, {"dense": f"conv2d_nhwc:{dims}", "binary registers": f"binary_perm_conv2d_nhwc:{dims}",
                                     "binary decode": f"binary_conv2d_nhwc:{dims}",
                                     "ternary registers": f"ternary_perm_conv2d_nhwc:{dims}",
                                     "ternary decode": f"ternary_conv2d_nhwc:{dims}"}, target, args.rounds))
    meta = {**machine(), "target": spec.key}
    name = f"perm_tables_{cpu_kind(spec)}"
    write_json(name, {"meta": meta, "dense": dense_rows, "convs": conv_rows})
    update_section(name, table(dense_rows, conv_rows, meta))


if __name__ == "__main__":
    main()
