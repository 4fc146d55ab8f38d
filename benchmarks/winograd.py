"""Winograd F(2x2, 3x3) convolutions (tvmopt/ops/winograd_conv2d.py) against the direct conv, one
layer at a time: the dense Winograd conv and the compressed ones (codes decoded and transformed
each call), beside the kernels such layers ran before (binary and ternary register tables).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/winograd.py

(unset both variables together, and only here.) Start configs; outputs checked against numpy
first; then paired rounds in random order, each figure the median over rounds of the direct
dense conv's time over the kernel's (> 1: faster than the direct conv). *vs Winograd*: a
compressed kernel's figure over the dense Winograd conv's, the never-slower ratio
``passes/choose.py``'s ``_against_winograd`` predicts. These are the measurements behind
``schedules/winograd.py``'s start and ``WINOGRAD_COMPRESSED_*``.

Writes benchmarks/results/winograd_<cpu>.json and BENCHMARKS.md's ``winograd_<cpu>`` section.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from perm_tables import _row  # noqa: E402
from report import cpu_kind, machine, update_section, write_json  # noqa: E402

#: NxCxHxWxO of 3x3 stride-1 layers: ResNet-18's stages (batch 1 and 16), ResNet-20's, VGG's CIFAR ones,
#: and the 512-channel ones of ResNet-18 and -50 (7x7) and VGG-19 (14x14), whose U is 16 MiB
LAYERS = ("1x64x56x56x64", "1x128x28x28x128", "1x256x14x14x256", "16x64x56x56x64", "16x256x14x14x256",
          "1x16x32x32x16", "1x32x16x16x32", "1x64x8x8x64", "16x32x16x16x32", "1x128x16x16x128", "1x256x8x8x256",
          "1x512x7x7x512", "16x512x7x7x512", "1x512x14x14x512")
#: label -> task prefix, after the direct dense conv (the reference)
KERNELS = {"winograd": "winograd_conv2d_nhwc", "shift winograd": "shift_winograd_conv2d_nhwc",
           "ternary winograd": "ternary_winograd_conv2d_nhwc", "2:4 winograd": "nm_winograd_conv2d_nhwc",
           "ternary registers": "ternary_perm_conv2d_nhwc", "binary registers": "binary_perm_conv2d_nhwc"}
COMPRESSED = ("shift winograd", "ternary winograd", "2:4 winograd", "ternary registers", "binary registers")


def _keys(dims: str) -> dict[str, str]:
    keys = {"dense": f"conv2d_nhwc:{dims}x3x3x1x1"}
    for label, prefix in KERNELS.items():
        keys[label] = f"{prefix}:{dims}x3x3x1x1" + ("x2x4" if prefix.startswith("nm_") else "")
    return keys


def table(rows: list[dict], meta: dict) -> str:
    lines = ["## Winograd convolutions vs the direct conv, one layer at a time (`benchmarks/winograd.py`)", "",
             f"Measured on {meta['cpu']} ({meta['target']}), commit {meta['commit']}, {meta['date']}. Start configs, "
             "channels last, 3x3 stride 1; each figure is the median over paired rounds (random order) of the direct "
             "dense conv's time over the kernel's (> 1: faster). *Winograd*: `winograd_conv2d_nhwc` (U laid out at "
             "build); *shift / ternary / 2:4 Winograd*: `<format>_winograd_conv2d_nhwc` (the codes decoded and "
             "transformed each call); *registers*: the register-table convs such layers ran before. In brackets: "
             "over the dense Winograd conv's figure (the never-slower ratio).", "",
             "| layer (NxCxHxWxO) | direct ms | Winograd | shift Winograd | ternary Winograd | 2:4 Winograd "
             "| ternary registers | binary registers |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        q = r["ratios"]
        cells = [f"{q[c]:.2f}x ({q[c] / q['winograd']:.2f})" for c in COMPRESSED]
        lines.append(f"| {r['layer']} | {r['dense_ms']:.3f} | {q['winograd']:.2f}x | " + " | ".join(cells) + " |")
    dense = [r["ratios"]["winograd"] for r in rows]
    lines += ["", f"Dense Winograd: {min(dense):.2f}x to {max(dense):.2f}x the direct conv over {len(dense)} layers "
                  f"(geometric mean {float(np.exp(np.mean(np.log(dense)))):.2f}x)."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--layers", default=",".join(LAYERS), help="comma-separated NxCxHxWxO")
    args = parser.parse_args()

    from tvmopt.schedules import isa
    from tvmopt.target import parse_target

    if isa.host().lanes < 16:
        raise SystemExit("the register-table columns need AVX-512; this CPU has AVX2 only")
    spec = parse_target("llvm")
    target = spec.tvm_target()
    rows = [_row(dims, _keys(dims), target, args.rounds) for dims in args.layers.split(",")]
    meta = {**machine(), "target": spec.key}
    name = f"winograd_{cpu_kind(spec)}"
    write_json(name, {"meta": meta, "layers": rows})
    update_section(name, table(rows, meta))


if __name__ == "__main__":
    main()
