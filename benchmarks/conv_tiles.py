"""Zen 4's conv start tiles (64 channels by 4 pixels, ``schedules/conv2d.py``, ``_quad_tile``)
against the AVX-512 rule they replace (32 channels by up to 8 pixels), whole networks untuned.

    python benchmarks/conv_tiles.py                   # the networks below, batch 1 and 16
    python benchmarks/conv_tiles.py --only resnet18-dense-16 --rounds 5

Each network is built twice from the same file (default schedules, no records, channels last as
``tvmopt build`` picks), with the tiles on and with ``QUAD_TILES`` off; both builds run the same
inputs (outputs compared) and are timed in interleaved rounds in a fresh order each
(``report.timed_rounds``); the figure is the median of the rounds' ratios (> 1: the Zen 4 tiles
are faster). Only a double-pumped AVX-512 CPU (AMD Zen 4) has the tiles; elsewhere the two builds
are the same and the script says so. Writes benchmarks/results/conv_tiles_<cpu>.json and
BENCHMARKS.md's ``conv_tiles_<cpu>`` section.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import ROOT, cpu_kind, machine, paired, spread, timed_rounds, update_section, write_json  # noqa: E402

WORK = ROOT / ".bench" / "conv_tiles"
#: (suite model, variant, batch): benchmarks/suite.py's networks; zoo networks at batch 1
SUITE = [("resnet18", "dense", 1), ("resnet18", "dense", 16), ("resnet18", "shift-q", 16),
         ("resnet20", "dense", 16), ("vgg", "dense", 1), ("vgg", "dense", 16), ("vgg", "ternary", 16)]
ZOO = ["resnet50", "squeezenet", "inception_v1", "inception_v2", "densenet121", "alexnet"]
SHAPES = {"resnet18": (3, 224, 224), "resnet20": (3, 32, 32), "vgg": (3, 32, 32)}


def onnx_file(name: str, variant: str | None) -> Path:
    if variant is None:
        from tvmopt.testing import zoo

        return zoo.realize(name, ROOT / ".bench" / "networks" / f"{name}.onnx")
    from suite import build_model, compressed, export

    model = build_model(name)
    if variant != "dense":
        model = compressed(name, model, variant)
    return export(model, SHAPES[name], WORK / f"{name}_{variant}.onnx")


def evaluate(label: str, path: Path, batch: int | None, target, rounds: int) -> dict:
    from tvmopt.build.compile import compile_model
    from tvmopt.schedules import conv2d

    builds = {}
    for on in (False, True):
        conv2d.QUAD_TILES = on
        try:
            builds["zen4 tiles" if on else "avx-512 tiles"] = compile_model(path, target, records=WORK / "no-records",
                                                                            shipped=False, batch=batch)
        finally:
            conv2d.QUAD_TILES = True
    old, new = builds["avx-512 tiles"], builds["zen4 tiles"]
    x = np.random.default_rng(1).standard_normal(old.imported.input_shape).astype(np.float32)
    a, b = old(x), new(x)
    err = float(np.abs(a - b).max() / (np.abs(a).max() or 1.0))
    samples = timed_rounds({k: (lambda m=m: m(x)) for k, m in builds.items()}, rounds, 0.2)
    low, high = spread(samples, "avx-512 tiles", "zen4 tiles")
    row = {"network": label, "ms": statistics.median(samples["zen4 tiles"]) * 1e3,
           "speedup": paired(samples, "avx-512 tiles", "zen4 tiles"), "quartiles": [low, high],
           "rounds": len(samples["zen4 tiles"]), "rel_diff": err}
    print(f"{label:24s} {row['ms']:9.2f} ms  zen4 tiles {row['speedup']:.3f}x ({low:.3f}-{high:.3f})  "
          f"outputs differ by {err:.1e}", flush=True)
    return row


def table(rows: list[dict], meta: dict) -> str:
    lines = ["## Zen 4's conv start tiles, whole networks (`benchmarks/conv_tiles.py`)", "",
             f"Measured on {meta['cpu']} ({meta['target']}), commit {meta['commit']}, {meta['date']}. Untuned builds "
             "(default schedules, no records, channels last) of each network with the Zen 4 start tiles (64 channels "
             "by 2 x 2 or 1 x 4 pixels where the channels fill groups of 4 blocks of 16) and with the AVX-512 rule "
             "they replace (32 channels by up to 8 pixels), same file, same inputs, interleaved rounds in a fresh "
             "order each; *speed-up*: the median of the rounds' ratios (> 1: the Zen 4 tiles faster), in brackets "
             "the quartiles. Suite networks as `benchmarks/suite.py` makes them; zoo networks at batch 1.", "",
             "| network | ms (Zen 4 tiles) | speed-up | rounds | outputs differ by |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['network']} | {r['ms']:.2f} | {r['speedup']:.3f}x ({r['quartiles'][0]:.3f}-"
                     f"{r['quartiles'][1]:.3f}) | {r['rounds']} | {r['rel_diff']:.1e} |")
    speedups = [r["speedup"] for r in rows]
    lines += ["", f"Geometric mean {float(np.exp(np.mean(np.log(speedups)))):.3f}x, slowest {min(speedups):.3f}x, "
              f"fastest {max(speedups):.3f}x."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--only", nargs="+", metavar="NETWORK",
                        help="only these (e.g. resnet18-dense-16, resnet50); prints, writes nothing")
    args = parser.parse_args()

    from tvmopt.schedules import isa
    from tvmopt.target import parse_target

    spec = parse_target("llvm")
    if not (isa.for_target(spec) or isa.host()).double_pumped:
        raise SystemExit(f"{spec.key}: no double-pumped AVX-512 here, so both builds would be the same")
    WORK.mkdir(parents=True, exist_ok=True)
    jobs = [(f"{m}-{v}-{b}", m, v, b) for m, v, b in SUITE] + [(f"{z}-1", z, None, None) for z in ZOO]
    rows = []
    for label, name, variant, batch in jobs:
        if args.only and label not in args.only and name not in args.only:
            continue
        rows.append(evaluate(label, onnx_file(name, variant), batch, spec, args.rounds))
    if args.only:
        return
    kind = cpu_kind(spec)
    meta = {**machine(), "target": spec.key}
    write_json(f"conv_tiles_{kind}", {"meta": meta, "rows": rows})
    update_section(f"conv_tiles_{kind}", table(rows, meta))


if __name__ == "__main__":
    main()
