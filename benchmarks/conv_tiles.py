"""The AVX-512 conv start tiles of 64 channels by 4 pixels (``schedules/conv2d.py``, ``_quad_tile``;
first Zen 4's, now every AVX-512 core's) against the rule they replace (32 channels by up to 8
pixels), whole networks untuned.

    python benchmarks/conv_tiles.py                   # the networks below, batch 1 and 16
    python benchmarks/conv_tiles.py --only resnet18-dense-16 --rounds 5

Each network is built twice from the same file (default schedules, no records, channels last as
``tvmopt build`` picks), with the tiles on and with ``QUAD_TILES`` off; both builds run the same
inputs (outputs compared) and are timed in interleaved rounds in a fresh order each
(``report.timed_rounds``); the figure is the median of the rounds' ratios (> 1: the quad tiles
are faster). Only AVX-512 CPUs have the tiles; on an AVX2 one the two builds would be the same and
the script says so. Writes benchmarks/results/conv_tiles_<cpu>.json and
BENCHMARKS.md's ``conv_tiles_<cpu>`` section.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import ROOT, cpu_kind, machine, paired, spread, timed_rounds, update_section, write_json  # noqa: E402

WORK = ROOT / ".bench" / "conv_tiles"
#: (suite model, variant, batch): benchmarks/suite.py's networks; zoo networks at batch 1
SUITE = [("resnet18", "dense", 1), ("resnet18", "dense", 16), ("resnet18", "shift-q", 16), ("resnet18", "ternary", 1),
         ("resnet20", "dense", 16), ("vgg", "dense", 1), ("vgg", "dense", 16), ("vgg", "ternary", 16)]
ZOO = ["resnet50", "squeezenet", "inception_v1", "inception_v2", "densenet121", "alexnet", "shufflenet"]
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


@contextlib.contextmanager
def quad_tiles(on: bool):
    """Starts made inside have the quad tiles on or off (``conv2d.QUAD_TILES``, on again after)."""
    from tvmopt.schedules import conv2d

    conv2d.QUAD_TILES = on
    try:
        yield
    finally:
        conv2d.QUAD_TILES = True


def evaluate(label: str, path: Path, batch: int | None, target, rounds: int) -> dict:
    from tvmopt.build.compile import compile_model

    def build(on: bool):
        with quad_tiles(on):
            return compile_model(path, target, records=WORK / "no-records", shipped=False, batch=batch)

    old = build(False)
    changed = tiled_tasks(old, target)
    if not changed:     # no layer's start differs (a batch on a full-width core): nothing to build again or time
        print(f"{label:24s} the same start configs with and without the tiles", flush=True)
        return {"network": label, "changed": 0}
    new = build(True)
    builds = {"32-channel tiles": old, "quad tiles": new}
    x = np.random.default_rng(1).standard_normal(old.imported.input_shape).astype(np.float32)
    a, b = old(x), new(x)
    err = float(np.abs(a - b).max() / (np.abs(a).max() or 1.0))
    samples = timed_rounds({k: (lambda m=m: m(x)) for k, m in builds.items()}, rounds, 0.2)
    low, high = spread(samples, "32-channel tiles", "quad tiles")
    row = {"network": label, "ms": statistics.median(samples["quad tiles"]) * 1e3,
           "speedup": paired(samples, "32-channel tiles", "quad tiles"), "quartiles": [low, high],
           "rounds": len(samples["quad tiles"]), "rel_diff": err, "changed": len(changed)}
    print(f"{label:24s} {row['ms']:9.2f} ms  quad tiles {row['speedup']:.3f}x ({low:.3f}-{high:.3f})  "
          f"outputs differ by {err:.1e}", flush=True)
    return row


def tiled_tasks(compiled, target) -> list[str]:
    """The build's task keys whose start config the quad tiles change."""
    from tvmopt.ops.task import get_task
    from tvmopt.schedules import isa

    def start(key: str, on: bool):
        with quad_tiles(on):
            return get_task(key).space.initial()

    keys = sorted({la.kernel for la in compiled.lowered.layers if la.kernel != "relax"})
    with isa.use(isa.for_target(target)):
        return [key for key in keys if start(key, False) != start(key, True)]


def table(rows: list[dict], meta: dict) -> str:
    lines = [f"## The quad conv start tiles, {meta['target']}, whole networks (`benchmarks/conv_tiles.py`)", "",
             f"Measured on {meta['cpu']} ({meta['target']}), commit {meta['commit']}, {meta['date']}. Untuned builds "
             "(default schedules, no records, channels last) of each network with the quad start tiles (64 channels "
             "by 2 x 2, 1 x 4 or 4 x 1 pixels where the channels fill groups of 4 blocks of 16) and with the AVX-512 rule "
             "they replace (32 channels by up to 8 pixels), same file, same inputs, interleaved rounds in a fresh "
             "order each; *speed-up*: the median of the rounds' ratios (> 1: the quad tiles faster), in brackets "
             "the quartiles. Suite networks as `benchmarks/suite.py` makes them; zoo networks at batch 1.", "",
             "*tasks*: the network's tasks whose start the tiles change (a network with none is not timed).", "",
             "| network | tasks | ms (quad tiles) | speed-up | rounds | outputs differ by |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        if not r.get("changed", 1):
            lines.append(f"| {r['network']} | 0 | | the same build | | |")
            continue
        lines.append(f"| {r['network']} | {r.get('changed', '')} | {r['ms']:.2f} | {r['speedup']:.3f}x "
                     f"({r['quartiles'][0]:.3f}-{r['quartiles'][1]:.3f}) | {r['rounds']} | {r['rel_diff']:.1e} |")
    speedups = [r["speedup"] for r in rows if "speedup" in r]
    if speedups:
        lines += ["", f"Geometric mean {float(np.exp(np.mean(np.log(speedups)))):.3f}x, slowest {min(speedups):.3f}x, "
                  f"fastest {max(speedups):.3f}x."]
    else:
        lines += ["", "No network's start changes on this CPU."]
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
    if (isa.for_target(spec) or isa.host()).lanes < 16:
        raise SystemExit(f"{spec.key}: no AVX-512 here, so both builds would be the same")
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
