"""The schedule space of the row-table kernels (``binary_rowlut_dense``, ``ternary_rowlut_dense``:
tvmopt/ops/row_tables.py) and the function that applies a config.

The kernel's product is ``C[r, n, i] = sum_(b, h) Table[r, group(b, h), code(b, h, n), i]``
for the row ``r * block + i``: for each weight byte b (h: the group of 4 weights within it), one
vector load of the table row the code selects adds that group's partial sums to a block of rows
of X (8 or 16, the tables' row block). Rows sit in the vector lanes, so a lookup is a contiguous
load, not a gather. ``Out`` then transposes C to [M, N], with the epilogue inlined.

Loop nest: row blocks and the outer output strips (``tile_n[0]``) form the one parallel loop;
inside it, blocks of weight bytes (``tile_k[0]``): the tables of a block's groups are built there,
so they stay in the caches while the strip's outputs read them (all of a row block's tables at
once were 4 MiB for ternary weights at K = 3072: 3x slower); then the output tiles, each adding
the block's lookups to its accumulators in C. Each strip builds its tables itself: parallel
loops inside the byte blocks forked and joined three times per block (ternary at 128 x 768 x
3072: 4 of its 6.5 ms, whatever N).

Knobs:

- ``tile_n``: N split in three: strips of outputs (parallel with the row blocks; each strip
  builds its own tables), tiles per strip, and outputs per register tile (a tile holds
  ``tile_n[2] x block / lanes`` vector accumulators).
- ``tile_k``: the weight bytes split in three: table blocks, steps per block, and bytes per
  step (unrolled with the outputs and the groups of each byte).
"""

from __future__ import annotations

from .space import Config, Space, Split

#: table groups per block and unrolled step of the start (32 lookups for a tile of 4 outputs)
UNROLL_GROUPS = 8


def row_table_space(m: int, block: int, n: int, code_bytes: int, groups_per_byte: int, name: str,
                    lanes: int = 8, cores: int = 2) -> Space:
    """``m`` rows in blocks of ``block`` (the tables' row block, a multiple of the vector width),
    ``n`` outputs, ``code_bytes`` weight bytes per output.

    Start: 8 vector accumulators: on AVX2 (8 lanes) 16 rows by 4 outputs (2 x 4 ymm registers;
    in the kernel's first form, binary at 128 x 3072 x 768 on a Zen 4 with AVX2 code, that ran
    2.2x the dense start, where 8 rows by 4 outputs ran 1.3x, 8 by 8 1.7x, and output tiles not
    dividing N (3, 6) spilled or fell to scalar tails, 0.5x). On AVX-512 (16 lanes, unmeasured)
    16 rows by 8 outputs keeps 8 zmm accumulators. Tables in blocks of ``UNROLL_GROUPS`` groups,
    one unrolled step each (8 KiB binary, 41 KiB ternary at 16 rows): against blocks of 256 KiB
    (L2), 1.0 to 1.4x faster in the same runs, and the 256 KiB blocks unrolled 96 bytes of
    lookups. Output strips: one where the row blocks alone give each of the ``cores`` two, else
    one per core (the starts assume this project's 2 cores)."""
    want_n = max(1, 8 * lanes // block)
    inner_n = max(d for d in (1, 2, 4, 8, 16) if n % d == 0 and d <= want_n)
    unrolled = max(d for d in range(1, min(UNROLL_GROUPS // groups_per_byte, code_bytes) + 1) if code_bytes % d == 0)
    strips = 1 if m // block >= 2 * cores else cores
    if (n // inner_n) % strips:
        strips = 1
    space = Space(name, (Split("tile_n", n, 3), Split("tile_k", code_bytes, 3)))
    return Space(name, space.knobs, start=((strips, n // (strips * inner_n), inner_n),
                                           (code_bytes // unrolled, 1, unrolled)))


def apply_row_tables(sch, space: Space, config: Config, epilogue=()) -> list:
    """Schedule the block ``C`` of ``sch`` (loops r, n, i, b, h), its ``Pairs``/``Table``
    prologue and its ``Out`` transpose (to [M, N], or a convolution's NCHW); ``epilogue``: elementwise blocks after Out, inlined into
    it where they can be; returns those left over."""
    from tvmopt.errors import ConfigError
    from .gemm import inline_epilogue

    if not space.contains(config):
        raise ConfigError(f"config {config} is not in the space {space.name}")
    knob = space.as_dict(config)
    block = sch.get_sblock("C")
    r, n, i, b, h = sch.get_loops(block)
    strip, no, ni = sch.split(n, list(knob["tile_n"]))
    bo, bm, bi = sch.split(b, list(knob["tile_k"]))
    sch.reorder(r, strip, bo, no, bm, bi, h, ni, i)
    sch.parallel(sch.fuse(r, strip))
    sch.vectorize(i)
    sch.unroll(ni)
    sch.unroll(h)
    for name in ("Table", "Pairs"):
        stage = sch.get_sblock(name)
        sch.compute_at(stage, bo)
        sch.vectorize(sch.get_loops(stage)[-1])
    sch.decompose_reduction(block, bo)
    xt = sch.get_sblock("XT")
    loops = sch.get_loops(xt)
    sch.parallel(sch.fuse(loops[0], loops[1]))
    sch.vectorize(loops[2])
    out = sch.get_sblock("Out")
    leftover = inline_epilogue(sch, [b_ for b_ in epilogue if sch.get(b_).name_hint != "Out"])
    *outer, last = sch.get_loops(out)
    sch.parallel(sch.fuse(*outer) if len(outer) > 1 else outer[0])
    extent = sch.get(last).extent.value
    if extent % 8 == 0:
        sch.vectorize(sch.split(last, [None, 8])[1])
    elif extent <= 64:      # a row of a convolution's output (7, 14, 28, 56 pixels)
        sch.vectorize(last)
    return leftover
