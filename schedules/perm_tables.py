"""The schedule spaces of the register-table kernels (``binary_perm_dense``, ``ternary_perm_dense``
and their ``*_perm_conv2d_nhwc`` convolutions: tvmopt/ops/perm_tables.py), the functions that
apply a config, and the tensor intrinsic of a register tile.

The kernel's product is ``C[m, n] = sum_g Tab[m, g, code(g, n)]``: for each row m and group g
of weights along K, the 16 (or 32) partial sums of the group's inputs sit in one (two) zmm
registers, and one ``vpermps`` (``vpermt2ps``) looks up 16 outputs' codes in them at once (the
codes of 16 outputs in the lanes of one index vector). Per 16 outputs and group of 4 weights
that is one permute (port 5) and one add (port 0), where the dense product does 4 FMAs over the
same two ports: about 2x the dense product's peak on binary weights.

Loop nest (rows mode): row tiles (parallel; each builds the tables of its rows, all of K, in
L2) > output tiles > 32-bit code words along K > one register tile of ``rows`` x ``vectors``
16-wide accumulators, tensorized: for each group of the word, for each row, one table load and
``vectors`` permutes and adds. Outputs mode: the tables of all rows are built first (parallel
over rows), then output tiles run in parallel (few rows: one row tile).

Knobs:

- ``rows``: rows per register tile (divisors of M).
- ``vectors``: 16-output vectors per register tile (``rows x vectors`` accumulators of the 32
  zmm registers; the tile also holds ``vectors`` shifted code vectors and one table).
- ``parallel``: ``rows`` (row tiles in parallel, tables built inside) or ``outputs``.

Convolutions (``perm_conv_space``): the tables are per input pixel; (image, output row) pairs
run in parallel, then tiles of ``rows`` output pixels along the row by ``vectors`` x 16
channels, then the taps and code words. ``table_rows``: 0 builds every input pixel's tables
first (in parallel over image rows); b > 0 builds, inside the parallel loop over blocks of b
output rows, the tables of the input rows that block reads (kept in L2 at the cost of building
the rows shared by two blocks twice).
"""

from __future__ import annotations

import dataclasses
import functools

from .gemm import unroll_tile
from .space import Choice, Config, Space

#: fp32 lanes of a zmm register: outputs per index vector
LANES = 16
#: accumulators the start keeps (of AVX-512's 32 registers: the rest hold codes and a table), by
#: table entries: a 32-entry table takes two registers and each ``vpermt2ps`` overwrites one
#: operand, so a copy: ternary at 128 x 3072 x 768 ran 0.65x the dense start with 4 x 6
#: accumulators (spilled) and 1.50x with 4 x 4. Binary 4 x 6 tiles (24 accumulators, 6 code
#: vectors and a table: 31 of 32 registers) spill about 145 zmm loads and stores in the loop; on
#: an Emerald Rapids Xeon they still ran 2.40x the dense start at 128 x 3072 x 768
#: (``perm_tables_xeon``), but on Zen 4, whose zmm stores take two cycles, 1.00x against 2.85x with
#: 4 x 4, and on an Ice Lake Xeon 0.63x against 2.86x (128 x 768 x 3072: 0.55x against 2.54x; the
#: encoder's binary suite row ran 0.71x its dense build): 16 everywhere
START_ACCUMULATORS = {16: 16, 32: 16}
#: vectors per tile the start takes: powers of two. On the Ice Lake Xeon tiles of 3 and 6
#: vectors ran far below their neighbours whether they spilled or not (128 x 3072 x 768: 4 x 3
#: 0.89x, 8 x 3 0.81x the dense start against 2.86x for 4 x 4; the binary conv 1x96x28x28x192:
#: 2 x 6 0.46x, 4 x 4 1.78x the dense conv); they stay in the spaces for ``tvmopt tune``
START_VECTORS = (1, 2, 4, 8)
#: rows mode only while the codes (N x K bits) fit in L2 with room for the tables
ROWS_MODE_MAX_CODE_BYTES = 1 << 20


def _start_tile(rows, vectors, entries: int, prefer_rows: bool = False) -> tuple[int, int]:
    """The largest register tile (rows x vectors) within the accumulator budget, balanced first
    (``prefer_rows``: the most rows first)."""
    budget = START_ACCUMULATORS[entries]
    best = None
    for r in rows:
        for v in (v for v in vectors if v in START_VECTORS):
            if r * v <= budget and r <= 8:
                score = (r * v, r if prefer_rows else min(r, v))
                if best is None or score > best[0]:
                    best = (score, r, v)
    return best[1], best[2]


def perm_space(m: int, n: int, k: int, name: str, entries: int = 16, cores: int = 2) -> Space:
    """``m`` rows, ``n`` outputs (a multiple of 16), ``k`` inputs.

    Start: the largest register tile of at most ``START_ACCUMULATORS`` accumulators, rows first
    up to 8, balanced (per group, each row's table is loaded once and read by ``vectors``
    permutes; each vector's codes are shifted once and read by ``rows`` permutes). Rows mode
    when the row tiles give each core two and the codes fit in L2 (each row tile reads them
    all). Measured on the Intel Xeon (start configs, paired rounds): rows mode 1.05x outputs
    mode at 64 x 1024 x 1024 and 1.16x at 128 x 768 x 3072, but 0.85x at 16 x 4096 x 4096 (4
    row tiles) and 0.90x at 32 x 4096 x 4096 (2 MiB of codes). Ternary tables (two registers
    per row and group) favour rows mode wherever each core gets a row tile: 1.34x outputs mode
    at 16 x 4096 x 4096, 1.77x at 32."""
    vectors_n = n // LANES
    rows = tuple(r for r in (1, 2, 3, 4, 6, 8, 12, 16) if m % r == 0)
    vectors = tuple(v for v in (1, 2, 3, 4, 6, 8) if vectors_n % v == 0)
    r0, v0 = _start_tile(rows, vectors, entries)
    if entries > LANES:       # two-register tables: re-reading them per output tile costs more
        mode = "rows" if m // r0 >= cores else "outputs"
    else:
        mode = "rows" if m // r0 >= 2 * cores and n * k // 8 <= ROWS_MODE_MAX_CODE_BYTES else "outputs"
    return Space(name, (Choice("rows", rows, default=rows.index(r0)),
                        Choice("vectors", vectors, default=vectors.index(v0)),
                        Choice("parallel", ("rows", "outputs"), default=("rows", "outputs").index(mode))))


def begin_register_tile(sch, space: Space, config: Config, epilogue=()):
    """What every register-tile kernel's schedule starts with: the config checked, block ``C``
    accumulating into a local buffer, the epilogue inlined into its write-back. Returns (the
    knobs as a dict, the block, the local write-back block, the epilogue blocks left over)."""
    from tvmopt.errors import ConfigError

    from .gemm import inline_epilogue

    if not space.contains(config):
        raise ConfigError(f"config {config} is not in the space {space.name}")
    block = sch.get_sblock("C")
    local = sch.cache_write(block, 0, "local")
    return space.as_dict(config), block, local, inline_epilogue(sch, epilogue)


def apply_perm(sch, space: Space, config: Config, fmt, epilogue=()) -> list:
    """Schedule the block ``C`` (loops m, n, g, e) and its ``Tab`` prologue; ``fmt``: the
    task's code format (:class:`tvmopt.ops.perm_tables.CodeFormat`); ``epilogue``: elementwise
    blocks after C, inlined into its write-back where they can be; returns those left over."""
    knob, block, local, leftover = begin_register_tile(sch, space, config, epilogue)
    rows, vectors = knob["rows"], knob["vectors"]
    i, j, g, e = sch.get_loops(block)[-4:]
    i0, i1 = sch.split(i, [None, rows])
    j0, j1 = sch.split(j, [None, vectors * LANES])
    g0, g1 = sch.split(g, [None, fmt.per_word])
    by_rows = knob["parallel"] == "rows"
    sch.reorder(*((i0, j0) if by_rows else (j0, i0)), g0, i1, j1, g1, e)
    sch.reverse_compute_at(local, j0 if by_rows else i0)
    tab = sch.get_sblock("Tab")
    if by_rows:
        sch.parallel(i0)
        sch.compute_at(tab, i0)
    else:
        sch.parallel(j0)
        outer = sch.get_loops(tab)
        sch.parallel(outer[0])
    sch.vectorize(sch.get_loops(tab)[-1])
    wb = sch.get_loops(local)[-1]
    sch.vectorize(sch.split(wb, [None, LANES])[1])
    init = sch.decompose_reduction(block, g0)
    sch.vectorize(sch.get_loops(init)[-1])
    unroll_tile(sch, init, local)
    sch.tensorize(i1 if rows > 1 else j1, intrinsic(fmt, rows, vectors))
    _widen_words(sch, fmt)
    return leftover


#: ternary (two-register) tables, and binary ones where AVX-512 is double-pumped: the conv start's
#: code vectors at most this many, and its tables built per block of at most ``TABLE_BLOCK_ROWS``
#: output rows on maps taller than ``TABLE_BLOCK_MIN_OH`` (:func:`perm_conv_space`)
WIDE_TABLE_MAX_VECTORS = 4
TABLE_BLOCK_ROWS, TABLE_BLOCK_MIN_OH = 14, 7


def perm_conv_space(shape, name: str, entries: int = 16) -> Space:
    """``*_perm_conv2d_nhwc``: ``rows`` output pixels along a row of the output (divisors of
    OW), ``vectors`` 16-channel vectors (divisors of O/16), ``table_rows`` (0, or divisors of OH
    below it). Start: as :func:`perm_space`, rows up to 8 (a 7-pixel row of a 7x7 map is one
    tile), tables built first (``table_rows`` 0: at 1x64x56x56x64 blocks of 4 or 8 output rows
    ran 0.96 to 1.01x that for binary weights, 1.09 to 1.19x for ternary).

    Ternary (32-entry) tables take 128 bytes per group of 3 channels and input pixel: a whole
    batch's (16x64x56x56: 151 MB) or a large image's (1x64x56x56: 9.5 MB) outgrow the caches
    between being built and read. Their start builds the tables of a block of the largest
    divisor of OH up to 14 output rows where it runs (OH above 7), and keeps at most 4 code
    vectors (with 8, 1x256x14x14x256's 2 x 8 tile ran 0.62x the dense conv). Zen 4, every config
    of the space against the dense conv's start: the old start 0.77x at 16x64x56x56x64, 0.65x at
    16x256x14x14x256, 1.12x at 1x64x56x56x64, the best configs 1.45x, 1.52x and 1.37x, all with
    blocks of 7 to 14 rows; 1x128x28x28x128 1.52x either way, 1x512x7x7x512 1.25x unblocked.

    Binary tables where AVX-512 is double-pumped (Zen 4) the same way, and the tallest tile first
    (8 x 2 over 4 x 4): against the dense conv's start, 16x64x56x56x64 1.66x -> 2.26x,
    16x256x14x14x256 2.01x -> 2.47x, 1x256x14x14x256 2.10x -> 2.73x, 1x64x56x56x64 2.15x -> 2.28x,
    ResNet-20's 1x32x16x16x32 1.28x -> 2.19x; new start against old, paired: 0.96x to 1.20x on
    ResNet-18's, ResNet-20's and VGG's other layers (1.00x where the tile and blocks stay)."""
    from .isa import current

    rows = tuple(r for r in range(1, 17) if shape.ow % r == 0)
    vectors = tuple(v for v in (1, 2, 3, 4, 6, 8) if (shape.o // LANES) % v == 0)
    # ternary tables everywhere; binary ones where AVX-512 is double-pumped (Zen 4)
    pumped = current().double_pumped
    blocked = entries > LANES or pumped
    r0, v0 = _start_tile(rows, tuple(v for v in vectors if v <= WIDE_TABLE_MAX_VECTORS) if blocked else vectors,
                         entries, prefer_rows=pumped and entries == LANES)
    blocks = (0,) + tuple(b for b in (1, 2, 4, 7, 8, 14, 16) if shape.oh % b == 0 and b < shape.oh)
    block0 = max((b for b in blocks if b <= TABLE_BLOCK_ROWS), default=0) \
        if blocked and shape.oh > TABLE_BLOCK_MIN_OH else 0
    return Space(name, (Choice("rows", rows, default=rows.index(r0)),
                        Choice("vectors", vectors, default=vectors.index(v0)),
                        Choice("table_rows", blocks, default=blocks.index(block0))))


def apply_perm_conv(sch, space: Space, config: Config, fmt, stride: int, epilogue=()) -> list:
    """Schedule the conv block ``C`` (loops n, y, x, o, kh, kw, g, e) and its ``Tab`` prologue
    (one table per input pixel and group, built once per call in parallel over image rows):
    (image, output row) pairs in parallel, then pixel tiles, channel tiles, taps and code words,
    with the register tile tensorized."""
    knob, block, local, leftover = begin_register_tile(sch, space, config, epilogue)
    rows, vectors = knob["rows"], knob["vectors"]
    n, y, x, o, r, q, g, e = sch.get_loops(block)[-8:]
    x0, x1 = sch.split(x, [None, rows])
    o0, o1 = sch.split(o, [None, vectors * LANES])
    g0, g1 = sch.split(g, [None, fmt.per_word])
    block_rows = knob["table_rows"]
    tab = sch.get_sblock("Tab")
    if block_rows:            # the tables of a block of output rows' inputs, built where it runs
        y0, y1 = sch.split(y, [None, block_rows])
        sch.reorder(n, y0, y1, x0, o0, r, q, g0, x1, o1, g1, e)
        sch.reverse_compute_at(local, o0)
        outer = sch.fuse(n, y0)
        sch.parallel(outer)
        sch.compute_at(tab, outer)
    else:                     # every input pixel's tables first, in parallel over image rows
        sch.reorder(n, y, x0, o0, r, q, g0, x1, o1, g1, e)
        sch.reverse_compute_at(local, o0)
        sch.parallel(sch.fuse(n, y))
        loops = sch.get_loops(tab)
        sch.parallel(sch.fuse(loops[0], loops[1]))
    sch.vectorize(sch.get_loops(tab)[-1])
    wb = sch.get_loops(local)[-1]
    sch.vectorize(sch.split(wb, [None, LANES])[1])
    init = sch.decompose_reduction(block, r)
    sch.vectorize(sch.get_loops(init)[-1])
    unroll_tile(sch, init, local)
    sch.tensorize(x1 if rows > 1 else o1, intrinsic(fmt, rows, vectors, stride))
    _widen_words(sch, fmt)
    return leftover


def _widen_words(sch, fmt) -> None:
    """Half words (``BINARY16``) widened once per call, 16 outputs a vector, into a buffer on the
    stack (``local``): a workspace allocated each call cost 8% at 1x16x32x32x32 stride 2 (7 us)."""
    if fmt.word == "int32":
        return
    block = sch.get_sblock("Words32")
    sch.vectorize(sch.split(sch.get_loops(block)[-1], [None, LANES])[1])
    sch.set_scope(block, 0, "local")


def intrinsic(fmt, rows: int, vectors: int, stride: int = 1) -> str:
    """Register (once) and name the tensor intrinsic of one register tile: ``rows`` x
    ``vectors * 16`` accumulators over one code word (``fmt.per_word`` groups); row r reads
    table row ``r * stride`` (a convolution's output pixels read every ``stride``-th input's)."""
    return _register(dataclasses.replace(fmt, word="int32"), rows, vectors, stride)   # reads widened words


@functools.cache
def _register(fmt, rows: int, vectors: int, stride: int) -> str:
    import tvm
    from tvm.script import tirx as T

    width, groups, entries, bits = vectors * LANES, fmt.per_word, fmt.entries, fmt.bits
    mask = (1 << bits) - 1
    span = (rows - 1) * stride + 1
    name = f"tvmopt_perm_{fmt.name}_{rows}x{vectors}_s{stride}"

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, d: T.handle) -> None:
        codes = T.match_buffer(a, (width,), "int32", offset_factor=1)
        tab = T.match_buffer(b, (span, groups, entries), "float32", offset_factor=1,
                             strides=[T.int32(), T.int32(), 1])
        c = T.match_buffer(d, (rows, width), "float32", offset_factor=1, scope="local", strides=[T.int32(), 1])
        with T.sblock("root"):
            T.reads(c[0:rows, 0:width], codes[0:width], tab[0:span, 0:groups, 0:entries])
            T.writes(c[0:rows, 0:width])
            for r, n, t, e in T.grid(rows, width, groups, entries):
                with T.sblock("update"):
                    vr, vn, vt, ve = T.axis.remap("SSRR", [r, n, t, e])
                    c[vr, vn] = c[vr, vn] + T.Select(
                        T.bitwise_and(T.shift_right(codes[vn], vt * bits), mask) == ve, tab[vr * stride, vt, ve],
                        T.float32(0))

    @T.prim_func(s_tir=True)
    def desc_row(a: T.handle, b: T.handle, d: T.handle) -> None:      # one row: no row loop to match
        codes = T.match_buffer(a, (width,), "int32", offset_factor=1)
        tab = T.match_buffer(b, (1, groups, entries), "float32", offset_factor=1,
                             strides=[T.int32(), T.int32(), 1])
        c = T.match_buffer(d, (1, width), "float32", offset_factor=1, scope="local", strides=[T.int32(), 1])
        with T.sblock("root"):
            T.reads(c[0, 0:width], codes[0:width], tab[0, 0:groups, 0:entries])
            T.writes(c[0, 0:width])
            for n, t, e in T.grid(width, groups, entries):
                with T.sblock("update"):
                    vn, vt, ve = T.axis.remap("SRR", [n, t, e])
                    c[0, vn] = c[0, vn] + T.Select(
                        T.bitwise_and(T.shift_right(codes[vn], vt * bits), mask) == ve, tab[0, vt, ve],
                        T.float32(0))

    high = entries - LANES       # where a 32-entry table's second register starts (16 entries: unused)

    def lookup(low, upper, index):
        """One permute: 16 lanes of ``index`` looked up in the row's table (one or two registers)."""
        if entries > LANES:
            return T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpermi2var.ps.512"),
                                           low, index, upper, dtype="float32x16")
        return T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.x86.avx512.permvar.sf.512"),
                                       low, index, dtype="float32x16")

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, d: T.handle) -> None:
        codes = T.match_buffer(a, (width,), "int32", offset_factor=1)
        tab = T.match_buffer(b, (span, groups, entries), "float32", offset_factor=1,
                             strides=[T.int32(), T.int32(), 1])
        c = T.match_buffer(d, (rows, width), "float32", offset_factor=1, scope="local", strides=[T.int32(), 1])
        with T.sblock("root"):
            T.reads(c[0:rows, 0:width], codes[0:width], tab[0:span, 0:groups, 0:entries])
            T.writes(c[0:rows, 0:width])
            # group outermost: each vector's codes shifted once per group, each row's table loaded once
            for t in T.unroll(groups):
                for r in T.unroll(rows):
                    for v in T.unroll(vectors):
                        c[r, T.ramp(v * LANES, 1, LANES)] = c.vload([r, v * LANES], dtype="float32x16") + lookup(
                            tab.vload([r * stride, t, 0], dtype="float32x16"),
                            tab.vload([r * stride, t, high], dtype="float32x16"),
                            T.shift_right(codes.vload([v * LANES], dtype="int32x16"), T.broadcast(t * bits, LANES)))

    tvm.s_tir.TensorIntrin.register(name, desc if rows > 1 else desc_row, impl)
    return name
