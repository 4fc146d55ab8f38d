"""The AVX-512 conv start tiles of 64 channels (``schedules/conv2d.py``) against the rule they
replace (32 channels by up to 8 pixels), whole networks untuned: ``--tiles quad``, 64 channels by
4 pixels (``_quad_tile``; first Zen 4's, now every AVX-512 core's, for one image on full-width
ones); ``--tiles seven``, 64 channels by a row of 7 pixels for the dense 1x1 convs of one image
on 7-wide maps (``_seven_row_tile``, full-width AVX-512).

    python benchmarks/conv_tiles.py                   # the quad tiles, the networks below, batch 1 and 16
    python benchmarks/conv_tiles.py --tiles seven     # the seven-pixel rows
    python benchmarks/conv_tiles.py --only resnet18-dense-16 --rounds 5

Each network is built twice from the same file (default schedules, no records, channels last as
``tvmopt build`` picks), with the tiles on and with their flag (``QUAD_TILES``,
``SEVEN_ROW_TILES``) off; a network whose start configs the tiles do not change is built once
and not timed. Both builds run the same inputs (outputs compared) and are timed in interleaved
rounds in a fresh order each (``report.timed_rounds``); the figure is the median of the rounds'
ratios (> 1: the tiles are faster). Only AVX-512 CPUs have the tiles; on an AVX2 one the two
builds would be the same and the script says so. Writes benchmarks/results/conv_tiles_<cpu>.json
and BENCHMARKS.md's ``conv_tiles_<cpu>`` section (``conv_tiles_seven_<cpu>`` for the rows).
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


#: --tiles: the flag of ``schedules/conv2d.py`` that turns them off, and their name in the tables
TILES = {"quad": ("QUAD_TILES", "quad tiles"), "seven": ("SEVEN_ROW_TILES", "7-pixel rows")}


@contextlib.contextmanager
def tiles_on(tiles: str, on: bool):
    """Starts made inside have the ``tiles`` tiles on or off (their flag, on again after)."""
    from tvmopt.schedules import conv2d

    flag = TILES[tiles][0]
    setattr(conv2d, flag, on)
    try:
        yield
    finally:
        setattr(conv2d, flag, True)


def evaluate(label: str, path: Path, batch: int | None, target, rounds: int, tiles: str = "quad") -> dict:
    from tvmopt.build.compile import compile_model

    def build(on: bool):
        with tiles_on(tiles, on):
            return compile_model(path, target, records=WORK / "no-records", shipped=False, batch=batch)

    old = build(False)
    changed = tiled_tasks(old, target, tiles)
    if not changed:     # no layer's start differs (a batch on a full-width core): nothing to build again or time
        print(f"{label:24s} the same start configs with and without the tiles", flush=True)
        return {"network": label, "changed": 0}
    new = build(True)
    name = TILES[tiles][1]
    builds = {"32-channel tiles": old, name: new}
    x = np.random.default_rng(1).standard_normal(old.imported.input_shape).astype(np.float32)
    a, b = old(x), new(x)
    err = float(np.abs(a - b).max() / (np.abs(a).max() or 1.0))
    samples = timed_rounds({k: (lambda m=m: m(x)) for k, m in builds.items()}, rounds, 0.2)
    low, high = spread(samples, "32-channel tiles", name)
    row = {"network": label, "ms": statistics.median(samples[name]) * 1e3,
           "speedup": paired(samples, "32-channel tiles", name), "quartiles": [low, high],
           "rounds": len(samples[name]), "rel_diff": err, "changed": len(changed)}
    print(f"{label:24s} {row['ms']:9.2f} ms  {name} {row['speedup']:.3f}x ({low:.3f}-{high:.3f})  "
          f"outputs differ by {err:.1e}", flush=True)
    return row


def tiled_tasks(compiled, target, tiles: str = "quad") -> list[str]:
    """The build's task keys whose start config the ``tiles`` tiles change."""
    from tvmopt.ops.task import get_task
    from tvmopt.schedules import isa

    def start(key: str, on: bool):
        with tiles_on(tiles, on):
            return get_task(key).space.initial()

    keys = sorted({la.kernel for la in compiled.lowered.layers if la.kernel != "relax"})
    with isa.use(isa.for_target(target)):
        return [key for key in keys if start(key, False) != start(key, True)]


#: --tiles: the table's title and its description of the tiles
WHAT = {"quad": ("The quad conv start tiles", "the quad start tiles (64 channels by 2 x 2, 1 x 4 or 4 x 1 pixels "
                 "where the channels fill groups of 4 blocks of 16)"),
        "seven": ("The 7-pixel row start tiles of 1x1 convs", "the 7-pixel row start tiles (64 channels by a row "
                  "of 7 pixels for a dense 1x1 conv of one image on a 7-wide map, an even number of 64-channel "
                  "chunks, input channels inside the tile; `_seven_row_tile`)")}


def table(rows: list[dict], meta: dict, tiles: str = "quad") -> str:
    title, what = WHAT[tiles]
    name = TILES[tiles][1]
    lines = [f"## {title}, {meta['target']}, whole networks (`benchmarks/conv_tiles.py --tiles {tiles}`)", "",
             f"Measured on {meta['cpu']} ({meta['target']}), commit {meta['commit']}, {meta['date']}. Untuned builds "
             f"(default schedules, no records, channels last) of each network with {what} and with the AVX-512 rule "
             "they replace (32 channels by up to 8 pixels), same file, same inputs, interleaved rounds in a fresh "
             f"order each; *speed-up*: the median of the rounds' ratios (> 1: the {name} faster), in brackets "
             "the quartiles. Suite networks as `benchmarks/suite.py` makes them; zoo networks at batch 1.", "",
             "*tasks*: the network's tasks whose start the tiles change (a network with none is not timed).", "",
             f"| network | tasks | ms ({name}) | speed-up | rounds | outputs differ by |",
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
    parser.add_argument("--tiles", choices=sorted(TILES), default="quad",
                        help="which start tiles to time against the 32-channel rule (default: quad)")
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
        rows.append(evaluate(label, onnx_file(name, variant), batch, spec, args.rounds, args.tiles))
    if args.only:
        return
    kind = cpu_kind(spec)
    meta = {**machine(), "target": spec.key}
    section = f"conv_tiles_{kind}" if args.tiles == "quad" else f"conv_tiles_{args.tiles}_{kind}"
    write_json(section, {"meta": meta, "rows": rows})
    update_section(section, table(rows, meta, args.tiles))


if __name__ == "__main__":
    main()
