"""Direct compressed convolutions against the dense direct convolution, one layer at a time.

    python benchmarks/conv_kernels.py                      # ResNet-18's 3x3 layers, batch 1 and 16
    python benchmarks/conv_kernels.py --batches 1 --rounds 3 --formats binary,shift
    python benchmarks/conv_kernels.py --layout nhwc         # the *_conv2d_nhwc kernels (auto's layout)

For each layer shape: ``conv2d:`` (dense fp32 weight, the start config) and each format's
``<format>_conv2d:`` with both values of its ``decode`` knob (``chunk``: inside the parallel
loop; ``global``: once per call) and the start config's choice, plus ``xnor_conv2d:``
(binarized inputs), and the row-table kernels (``binary_rowlut_conv2d:``,
``ternary_rowlut_conv2d:``: tables of partial sums shared by 16 output pixels). Each kernel is
compiled for this machine and timed with TVM's time evaluator, in interleaved rounds (median
over rounds); every figure is a ratio to the dense conv of the same layer in the same round (> 1: faster than dense). Outputs are checked against
the numpy reference first. These are the measurements behind ``passes/choose.py``'s prediction
for convolutions. ``--layout nhwc``: every kernel channels last (``conv2d_nhwc:``,
``<format>_conv2d_nhwc:``, ``xnor_conv2d_nhwc:``), what a build runs where the whole graph is
NHWC (:mod:`tvmopt.passes.layout`); the row tables are NCHW only and are left out.

Writes benchmarks/results/conv_kernels_<width>[_nhwc].json and BENCHMARKS.md's
``conv_kernels_<cpu>[_nhwc]`` section (one per CPU kind: ``avx2``, ``avx512`` (Zen 5), ``zen4``, ``xeon``, and layout).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, update_section, cpu_kind, write_json, wait_quiet  # noqa: E402

from tvmopt.ops.compressed_conv2d import DECODE  # noqa: E402

#: ResNet-18's 3x3 convolutions at 224x224 (C x H x W -> O, stride)
LAYERS = ("64x56x56x64x3x3x1x1", "64x56x56x128x3x3x2x1", "128x28x28x128x3x3x1x1", "128x28x28x256x3x3x2x1",
          "256x14x14x256x3x3x1x1", "256x14x14x512x3x3x2x1", "512x7x7x512x3x3x1x1")
FORMATS = ("binary", "ternary", "shift", "nm", "hashed", "codebook")
#: formats with a row-table conv kernel
TABLES = ("binary", "ternary")
EXTRA = {"nm": "x2x4", "hashed": "x4096x1", "codebook": "x16"}


def _kernel(key: str, config, target):
    import tvm

    from tvmopt.ops.task import get_task
    from tvmopt.schedules import lowering

    task = get_task(key)
    config = task.space.initial() if config is None else config
    lib = lowering.compile(task.schedule(config, target), target)
    inputs = task.make_inputs(np.random.default_rng(0))
    expected = task.reference(inputs)
    dev = tvm.cpu()
    args = [tvm.runtime.tensor(a, dev) for a in inputs] + [tvm.runtime.tensor(np.zeros(expected.shape, np.float32), dev)]
    lib["main"](*args)
    wrong = task.mismatch(args[-1].numpy(), expected)
    if wrong:
        raise SystemExit(f"{key} {config}: {wrong}")
    timer = lib.mod.time_evaluator("main", dev, number=1, repeat=1, min_repeat_ms=100)
    return lambda: timer(*args).mean


def _registers() -> bool:
    """Whether this machine runs the register-table conv (AVX-512: ops/perm_tables.py)."""
    from tvmopt.schedules import isa

    return isa.current().lanes >= 16


def layer(shape: str, batch: int, formats: list[str], target, rounds: int, nhwc: bool = False) -> dict:
    from tvmopt.ops.task import get_task

    dims = f"{batch}x{shape}"
    suffix = "_nhwc" if nhwc else ""
    contenders = {"dense": _kernel(f"conv2d{suffix}:{dims}", None, target)}
    starts = {}
    for fmt in formats:
        key = f"{fmt}_conv2d{suffix}:{dims}{EXTRA.get(fmt, '')}"
        space = get_task(key).space
        starts[fmt] = space.as_dict(space.initial())["decode"]
        for decode in DECODE:
            config = space.initial()[:-1] + (decode,)
            contenders[f"{fmt} {decode}"] = _kernel(key, config, target)
    for fmt in () if nhwc else TABLES:
        contenders[f"{fmt} tables"] = _kernel(f"{fmt}_rowlut_conv2d:{dims}", None, target)
    if nhwc and "binary" in formats and _registers():
        contenders["binary registers"] = _kernel(f"binary_perm_conv2d_nhwc:{dims}", None, target)
    contenders["xnor"] = _kernel(f"xnor_conv2d{suffix}:{dims}", None, target)
    samples = {k: [] for k in contenders}
    for _ in range(rounds):
        for name, timed in contenders.items():
            wait_quiet()
            samples[name].append(timed())
    med = {k: statistics.median(v) for k, v in samples.items()}
    row = {"layer": dims, "batch": batch, "dense_ms": med["dense"] * 1e3,
           "ratios": {k: med["dense"] / v for k, v in med.items() if k != "dense"}, "start_decode": starts}
    row["start"] = {fmt: row["ratios"][f"{fmt} {starts[fmt]}"] for fmt in formats}
    print(dims, {k: round(v, 2) for k, v in row["ratios"].items()}, flush=True)
    return row


def table(rows: list[dict], formats: list[str], meta: dict, nhwc: bool = False) -> str:
    tables = () if nhwc else TABLES
    registers = all("binary registers" in r["ratios"] for r in rows)
    title = ", channels last (`benchmarks/conv_kernels.py --layout nhwc`)" if nhwc else " (`benchmarks/conv_kernels.py`)"
    lines = ["## Direct compressed convolutions vs the dense conv" + title, "",
             f"Measured on {meta['cpu']} ({meta['target']}), commit {meta['commit']}, {meta['date']}. One layer "
             "at a time (ResNet-18's 3x3 convolutions), default (start) configs, interleaved rounds; each figure "
             "is the dense direct conv's time over the kernel's, same round (> 1: faster than dense). For the "
             "decoded formats: the start config's decode placement (in brackets: the other placements' ratios, the "
             "rest of the start config kept). "
             + ("Every kernel NHWC in and out (`conv2d_nhwc:`, `<format>_conv2d_nhwc:`, `xnor_conv2d_nhwc:`), "
                "as a channels-last build runs them. " if nhwc else
                "*tables*: the row-table kernels (`<format>_rowlut_conv2d`, start config). ")
             + ("*binary registers*: `binary_perm_conv2d_nhwc` (tables per input pixel held in zmm registers, "
                "16 channels per vpermps; start config). " if registers else "")
             + "*xnor*: binarized inputs and weights (XNOR + popcount).", "",
             "| layer | dense ms | " + " | ".join(formats) + "".join(f" | {f} tables" for f in tables)
             + (" | binary registers" if registers else "") + " | xnor |",
             "|---|---|" + "---|" * (len(formats) + len(tables) + registers + 1)]
    for r in rows:
        cells = []
        for fmt in formats:
            start = r["start_decode"][fmt]
            others = ", ".join(f"{d} {r['ratios'][f'{fmt} {d}']:.2f}x" for d in DECODE if d != start)
            cells.append(f"{r['ratios'][f'{fmt} {start}']:.2f}x {start} ({others})")
        cells += [f"{r['ratios'][f'{fmt} tables']:.2f}x" for fmt in tables]
        cells += [f"{r['ratios']['binary registers']:.2f}x"] if registers else []
        lines.append(f"| {r['layer']} | {r['dense_ms']:.3f} | " + " | ".join(cells) + f" | {r['ratios']['xnor']:.1f}x |")
    starts = [v for r in rows for v in r["start"].values()]
    lines += ["", f"Start configs over all formats and layers: {min(starts):.2f}x to {max(starts):.2f}x the dense "
              f"conv (geometric mean {float(np.exp(np.mean(np.log(starts)))):.2f}x); "
              + "".join(f"{fmt} tables {min(r['ratios'][f'{fmt} tables'] for r in rows):.2f}x to "
                        f"{max(r['ratios'][f'{fmt} tables'] for r in rows):.2f}x; " for fmt in tables)
              + (f"binary registers {min(r['ratios']['binary registers'] for r in rows):.2f}x to "
                 f"{max(r['ratios']['binary registers'] for r in rows):.2f}x; " if registers else "")
              + "xnor "
              f"{min(r['ratios']['xnor'] for r in rows):.1f}x to {max(r['ratios']['xnor'] for r in rows):.1f}x."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", default=",".join(LAYERS))
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--layout", choices=("nchw", "nhwc"), default="nchw",
                        help="the kernels' layout: nchw (default) or nhwc (the *_conv2d_nhwc tasks)")
    args = parser.parse_args()
    nhwc = args.layout == "nhwc"

    import tvm

    from tvmopt.target import parse_target

    spec = parse_target("llvm")
    target = spec.tvm_target()
    formats = args.formats.split(",")
    meta = {**machine(), "target": spec.key}
    rows = [layer(shape, int(b), formats, target, args.rounds, nhwc)
            for b in args.batches.split(",") for shape in args.layers.split(",")]
    name = f"conv_kernels_{cpu_kind(spec)}" + ("_nhwc" if nhwc else "")    # one table per CPU kind and layout
    write_json(name, {"meta": meta, "rows": rows})
    update_section(name, table(rows, formats, meta, nhwc))
    del tvm


if __name__ == "__main__":
    main()
