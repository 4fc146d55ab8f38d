"""The schedule space of ``nm_perm_dense`` (2:4 weights, few rows, AVX-512: tvmopt/ops/nm_perm_dense.py),
the function that applies a config, and the tensor intrinsic of a register tile.

The product is ``C[m, n] = sum_s V[s, n] * X[m, 16 * (s // 8) + pos(s, n)]``: each code word
covers the 8 kept slots of 16 inputs (4 groups of 4, 2 kept in each), the 16 inputs sit in one
zmm register, and one ``vpermps`` picks each output's input for a slot (the 4-bit positions of
16 outputs in the lanes of one index vector), then one FMA with the slot's 16 kept values. Per
16 outputs and group of 4 weights: two permutes and two FMAs on 9 bytes of weights (8 of
values, 1 of positions), where the dense product does 4 FMAs on 16 bytes. A layer of few rows
is bound by reading its weight, so the kernel reads 1.78x less.

Loop nest: chunks of output tiles (parallel) > row tiles > code words (K / 16) > the chunk's
tiles > one register tile of ``rows`` x ``vectors`` accumulators, tensorized: for each of the
word's 8 slots, each row's inputs (loaded once per word) permuted by each vector's shifted
positions.

Weight layout: panels of ``panel_width(N)`` outputs (128 where N allows), each panel's kept
values and code words stored whole, one after the other (``[N / P, K / 2, P]``), so a tile as
wide as the panel reads its weight as one contiguous stream. On AMD Zen 4 (2 cores, 4 KiB
pages) a thread streaming one contiguous array read 36 to 49 GB/s, the same bytes as 4 KiB
runs of 16 KiB rows (the row-major ``[K / 2, N]`` a chunk of 1024 outputs reads) 17 to 21 GB/s,
and 8 interleaved panels 20 to 22 GB/s (a C loop over 3 x 34 MB: the memory a 1 x 4096 x 4096
2:4 layer reads per call).

Knobs: ``rows`` (divisors of M up to 8), ``vectors`` (16-output vectors per tile, at most a
panel), ``order`` (``panel``: one tile at a time over all of K, its accumulators in
registers, reading its panel front to back; ``stream``: one panel per parallel chunk, word by
word across the panel's tiles, accumulators in L1: the panel read front to back by narrower tiles).
"""

from __future__ import annotations

import functools

from .space import Choice, Config, Space

#: fp32 lanes of a zmm register: outputs per index vector, inputs per word
LANES = 16
#: kept slots per code word (2:4 over 16 inputs), bits per position
SLOTS, BITS = 8, 4
#: accumulators of the start: rows x vectors (the tile also holds each row's inputs, each
#: vector's positions and a values vector)
START_ACCUMULATORS = 16


#: outputs per panel of the weight layout, where N allows
PANEL = 128


def panel_width(n: int) -> int:
    """Outputs per panel of the weight layout: ``PANEL``, or the widest power of two from 16
    (a multiple of 16 is required) that divides ``n``."""
    return next(w for w in (PANEL, 64, 32, LANES) if n % w == 0)


#: from this many rows the start is the tallest tile (``nm_perm_space``)
MANY_ROWS_START = 64
#: the start's tile leaves at least this many column chunks (the parallel loop) where the layer
#: has them: a layer of one 128-wide panel ran its 8-vector tile on one core, Zen 4, against the
#: dense start: 16 x 128 x 512 0.80x (4 x 4 tiles: 1.49x, 8 x 2: 1.50x), 32 x 128 x 512 0.73x (the
#: bundled 2:4 CNN's hidden layer: the model at batch 16 ran 0.92x its dense build)
MIN_PARALLEL_CHUNKS = 2


def nm_perm_space(m: int, n: int, name: str) -> Space:
    """Start: the widest tile, then the most rows within ``START_ACCUMULATORS``, in ``panel``
    order: a tile as wide as its panel reads the weight as one stream, once per row tile. On
    Zen 4 at 16x4096x4096 (paired rounds against the dense start) 2 rows by 8 vectors ran 1.55x
    the dense kernel, 8 by 2 (each tile a strided quarter of its panel) 1.04 to 1.17x, and 8 by 2
    in ``stream`` order 0.81x. From ``MANY_ROWS_START`` rows, where the weight is read from cache
    by many row tiles, the tallest tile instead: on Zen 4 (every config against the dense start)
    8 by 2 ran 1.43x at 64x1024x1024 and 1.42x at 128x768x3072, where 2 by 8 ran 1.28x and 1.25x
    (at 32x4096x4096 8 by 2 1.36x, 2 by 8 1.23x; at 512x3072x768 4 by 4 1.45x, 2 by 8 1.31x).
    The tile is narrowed where it would leave the cores fewer column chunks than
    ``MIN_PARALLEL_CHUNKS``."""
    rows = tuple(r for r in (1, 2, 3, 4, 6, 8) if m % r == 0)
    vectors = tuple(v for v in (1, 2, 4, 8) if panel_width(n) % (v * LANES) == 0)
    if m >= MANY_ROWS_START:
        r0 = max(r for r in rows if r <= 8)
        v0 = max(v for v in vectors if r0 * v <= START_ACCUMULATORS)
    else:
        fits = [v for v in vectors if v <= START_ACCUMULATORS]
        v0 = max([v for v in fits if n // (v * LANES) >= MIN_PARALLEL_CHUNKS] or fits)
        r0 = max(r for r in rows if r * v0 <= START_ACCUMULATORS)
    return Space(name, (Choice("rows", rows, default=rows.index(r0)),
                        Choice("vectors", vectors, default=vectors.index(v0)),
                        Choice("order", ORDERS, default=ORDERS.index(START_ORDER))))


#: ``panel``: each output tile runs all of K with its accumulators in registers (a tile as wide
#: as its panel reads it front to back); ``stream``: each parallel chunk (one panel) reads its
#: code words in order across its tiles, accumulators in L1
ORDERS = ("panel", "stream")
START_ORDER = "panel"

def apply_nm_perm(sch, space: Space, config: Config, epilogue=()) -> list:
    """Schedule the block ``C`` (loops m, n, s, e); ``epilogue``: elementwise blocks after it,
    inlined into its write-back where they can be; returns those left over."""
    from .perm_tables import begin_register_tile

    knob, block, local, leftover = begin_register_tile(sch, space, config, epilogue)
    rows, vectors = knob["rows"], knob["vectors"]
    i, j, s, e = sch.get_loops(block)[-4:]
    i0, i1 = sch.split(i, [None, rows])
    n = int(sch.get(j).extent)
    # stream: a parallel chunk is one panel, so each word's slots of the panel (8 x P values) are
    # read front to back across its tiles
    per_chunk = panel_width(n) // (vectors * LANES) if knob["order"] == "stream" else 1
    j0, jm, j1 = sch.split(j, [None, per_chunk, vectors * LANES])
    s0, s1 = sch.split(s, [None, SLOTS])
    sch.reorder(j0, i0, s0, jm, i1, j1, s1, e)
    sch.reverse_compute_at(local, i0)
    sch.parallel(j0)
    wb = sch.get_loops(local)[-1]
    sch.vectorize(sch.split(wb, [None, LANES])[1])
    init = sch.decompose_reduction(block, s0)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.tensorize(i1 if rows > 1 else j1, intrinsic(rows, vectors))
    return leftover


@functools.cache
def intrinsic(rows: int, vectors: int) -> str:
    """Register (once) and name the tensor intrinsic of one ``rows`` x ``vectors * 16`` tile over
    one code word. Its description is a one-hot sum over the 16 inputs (every index affine, so
    tensorize matches it); one row has its own (a unit row loop does not match a block without)."""
    import tvm
    from tvm.script import tirx as T

    width, mask = vectors * LANES, (1 << BITS) - 1
    name = f"tvmopt_nm_perm_{rows}x{vectors}"

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, v: T.handle, d: T.handle) -> None:
        codes = T.match_buffer(a, (width,), "int32", offset_factor=1)
        x = T.match_buffer(b, (rows, LANES), "float32", offset_factor=1, strides=[T.int32(), 1])
        vals = T.match_buffer(v, (SLOTS, width), "float32", offset_factor=1, strides=[T.int32(), 1])
        c = T.match_buffer(d, (rows, width), "float32", offset_factor=1, scope="local", strides=[T.int32(), 1])
        with T.sblock("root"):
            T.reads(c[0:rows, 0:width], vals[0:SLOTS, 0:width], codes[0:width], x[0:rows, 0:LANES])
            T.writes(c[0:rows, 0:width])
            for r, n, t, e in T.grid(rows, width, SLOTS, LANES):
                with T.sblock("update"):
                    vr, vn, vt, ve = T.axis.remap("SSRR", [r, n, t, e])
                    c[vr, vn] = c[vr, vn] + vals[vt, vn] * T.Select(
                        T.bitwise_and(T.shift_right(codes[vn], vt * BITS), mask) == ve, x[vr, ve], T.float32(0))

    @T.prim_func(s_tir=True)
    def desc_row(a: T.handle, b: T.handle, v: T.handle, d: T.handle) -> None:
        codes = T.match_buffer(a, (width,), "int32", offset_factor=1)
        x = T.match_buffer(b, (1, LANES), "float32", offset_factor=1, strides=[T.int32(), 1])
        vals = T.match_buffer(v, (SLOTS, width), "float32", offset_factor=1, strides=[T.int32(), 1])
        c = T.match_buffer(d, (1, width), "float32", offset_factor=1, scope="local", strides=[T.int32(), 1])
        with T.sblock("root"):
            T.reads(c[0, 0:width], vals[0:SLOTS, 0:width], codes[0:width], x[0, 0:LANES])
            T.writes(c[0, 0:width])
            for n, t, e in T.grid(width, SLOTS, LANES):
                with T.sblock("update"):
                    vn, vt, ve = T.axis.remap("SRR", [n, t, e])
                    c[0, vn] = c[0, vn] + vals[vt, vn] * T.Select(
                        T.bitwise_and(T.shift_right(codes[vn], vt * BITS), mask) == ve, x[0, ve], T.float32(0))

    def pick(inputs, index):
        """16 lanes of ``index`` (low 4 bits) looked up in a row's 16 inputs: one vpermps."""
        return T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.x86.avx512.permvar.sf.512"),
                                       inputs, index, dtype="float32x16")

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, v: T.handle, d: T.handle) -> None:
        codes = T.match_buffer(a, (width,), "int32", offset_factor=1)
        x = T.match_buffer(b, (rows, LANES), "float32", offset_factor=1, strides=[T.int32(), 1])
        vals = T.match_buffer(v, (SLOTS, width), "float32", offset_factor=1, strides=[T.int32(), 1])
        c = T.match_buffer(d, (rows, width), "float32", offset_factor=1, scope="local", strides=[T.int32(), 1])
        with T.sblock("root"):
            T.reads(c[0:rows, 0:width], vals[0:SLOTS, 0:width], codes[0:width], x[0:rows, 0:LANES])
            T.writes(c[0:rows, 0:width])
            for t in T.unroll(SLOTS):
                for r in T.unroll(rows):
                    for u in T.unroll(vectors):
                        c[r, T.ramp(u * LANES, 1, LANES)] = c.vload([r, u * LANES], dtype="float32x16") + \
                            vals.vload([t, u * LANES], dtype="float32x16") * pick(
                                x.vload([r, 0], dtype="float32x16"),
                                T.shift_right(codes.vload([u * LANES], dtype="int32x16"), T.broadcast(t * BITS, LANES)))

    tvm.s_tir.TensorIntrin.register(name, desc if rows > 1 else desc_row, impl)
    return name
