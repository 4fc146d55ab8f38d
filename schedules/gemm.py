"""The schedule spaces of the GEMM family, LLVM and CUDA (the CUDA part is the second half of
this file), and the functions that apply a config.

LLVM:

Loop nest (outermost first) for C[b, i, j] = sum_k A[b, i, k] * B'[b, k, j]:

    b  m0 n0 | m1 n1 | k0 | m2 n2 | k1 | m3 n3
    ^ parallel  ^ cache block  ^ micro-tile ^ register micro-kernel (m3 unrolled, n3 vector)

Every axis is split into an exact factorization of its extent (4 levels for M and N, 2 for
K), so every config is correct for every shape, primes included. Other knobs:

- ``pack_b``: copy B into panels [N/n3, K, n3] so the micro-kernel streams contiguous memory.
- ``accumulate``: ``local`` accumulates the (m2*m3) x (n2*n3) block of C in a local buffer
  (cache_write) that is written back once after the whole K loop; ``global`` updates C.
- ``unroll``: auto-unroll limit on the micro-kernel loops (0 = none).
- ``vectorize``: vectorize the innermost n3 loop.
- ``parallel``: how many of the outer loops (b, m0, n0) are fused and run in parallel.
"""

from __future__ import annotations

import math

from dataclasses import dataclass

from .space import Choice, Config, Space, Split, restrict


@dataclass(frozen=True)
class GemmShape:
    m: int
    n: int
    k: int
    batch: int = 1
    batched: bool = False
    transposed_b: bool = False  # B given as W[N, K] (dense layers)
    panel: int = 0              # B stored as [N / panel, K, panel] (a dense layer's constant weight): see dense_panel
    pad_rows: bool = False      # a dense layer or a batched product: rows computed padded (``mp``)
    pad_cols: bool = False      # a dense layer's few outputs, a batched product's columns: computed padded (``np``)

    @property
    def np(self) -> int:
        """The columns the kernel computes: ``n``, or for a dense layer (``pad_cols``) of fewer
        than :data:`PAD_COLS_BELOW` outputs that 16 does not divide (a 10-class head), ``n``
        rounded up to 16, so the register tile holds whole vectors: the weight is stored with
        zero columns appended (at build: it is a constant) and the write-back drops the extra
        outputs (``crop``). The digits MLP's dense:64x10x256 ran in 9.4 us at its start,
        dense:64x16x256 in 4.6 (3.2 tuned), on Zen 4. A batched product of two activations
        (``pad_cols``) pads any N that 16 does not divide, in a copy of B with zero columns
        (``pad_b``, folded into the packing copy when B is packed): a ViT's 197 tokens made
        bgemm:12x197x197x64 one column per register tile, 6.9 ms a call on Zen 4."""
        if not self.pad_cols or self.n % 16 == 0 or (self.n >= PAD_COLS_BELOW and not self.batched):
            return self.n
        return -(-self.n // 16) * 16

    @property
    def padded(self) -> bool:
        """Whether the kernel computes more rows or columns than the product has."""
        return self.mp > self.m or self.np > self.n

    @property
    def mp(self) -> int:
        """The rows the kernel computes: ``m``, or for a dense layer (``pad_rows``) of 8 rows or
        more that 4 does not divide (a prime such as a ViT's 197 tokens), ``m`` rounded up to a
        multiple of 8, so the register tile holds 8 rows and not 1: dense:197x768x768 ran at 0.23x
        torch (50 GFLOPS, one row per tile) and 200 rows at 0.64x on the Xeon. The input is copied
        with zero rows appended (``pad_a``) and the write-back drops the extra rows (``crop``)."""
        return padded_rows(self.m) if self.pad_rows else self.m


def padded_rows(m: int) -> int:
    """The rows a kernel computes for ``m``: ``m`` rounded up to a multiple of 8 where 4 does not
    divide it, from 8 rows (``GemmShape.mp``; the pass pads a compressed linear kernel's input
    likewise, ``passes/lower.py``: a 2:4 layer of a ViT, 197 tokens, ran 0.92x its dense kernel at
    197 rows and 1.41x at 200)."""
    return m if m < 8 or m % 4 == 0 else -(-m // 8) * 8


UNROLL = (0, 16, 64, 256)
#: dense layers with fewer outputs than this are padded to whole vectors of 16 (GemmShape.np)
PAD_COLS_BELOW = 64

#: dense layers of at least this many rows store their weight in panels (:func:`dense_panel`) ...
PANEL_MIN_M = 32
#: ... and layers of fewer rows from this many weights (4 MiB, past L2), where the product streams
#: the weight: the bundled digits MLP (16K to 64K weights a layer) ran 3.7x slower at batch 1 with
#: its layers in panels (its shipped records are for [K, N], and its microsecond layers gain nothing)
PANEL_FEW_ROWS_MIN_WEIGHTS = 1 << 20
#: panel widths, preferred first: 48 (three AVX-512 vectors, six AVX2 ones) and 64 leave the most
#: FMAs per load in the register tiles of :func:`panel_config`
PANEL_WIDTHS = (48, 64, 32, 16)


def dense_panel(m: int, n: int, k: int = 0) -> int:
    """The panel width of a dense layer's weight, 0 to keep ``[K, N]``: a function of the shape
    alone (the layout is fixed at build, whatever the CPU). Panels ``[N / P, K, P]`` let a register
    tile of P (or P/2, P/3) outputs read its weights as one contiguous stream over K, so it can keep
    its accumulators over a long K block; with ``[K, N]`` every step of K jumps a whole row. Measured
    on an Intel Xeon (AVX-512, 2 cores) against torch's MKL in the same run: 128 x 3072 x 768 0.72x ->
    0.95x (8 x 48 tile), 2048 x 3072 x 768 0.63x -> 0.80x, 64 x 1024 x 1024 0.67x -> 1.07x (4 x 64),
    32 x 4096 x 4096 0.70x -> 0.88x. Below 32 rows the product is bound by reading the weight, and
    panels read it as one stream per thread where ``[K, N]`` reads a K block of rows at once (16
    streams at the start's K block): on Zen 4, start configs, three weights cycled, ratio of the
    panel build's speed to the ``[K, N]`` build's in the same run, AVX-512 code: 1 x 4096 x 4096
    1.57 to 2.1x (onnxruntime's MLAS 0.97 to 1.16x the panels), 4 rows 2.15x, 16 rows 1.35x,
    1 x 3072 x 768 1.11x, 1 x 1024 x 1024 1.37x, 1 x 768 x 3072 13.9x (``[K, N]`` with 768
    outputs ran 1.2 ms); AVX2 code: 1.52x, 1.17x (16 rows), 7.8x. (An Intel Xeon measured 16 x 4096
    x 4096 before the panel starts of :func:`panel_config`: 1.05x torch as ``[K, N]``, 0.74 to
    0.92x in panels; not measured since.) Below 32 rows, from ``PANEL_FEW_ROWS_MIN_WEIGHTS``."""
    if m < PANEL_MIN_M and n * k < PANEL_FEW_ROWS_MIN_WEIGHTS:
        return 0
    return largest_divisor(n, PANEL_WIDTHS, default=0)


def gemm_space(shape: GemmShape, packable: bool = True, name: str = "gemm-llvm", heuristic_start: bool = False) -> Space:
    """The GEMM space; ``packable=False`` drops the B-packing knob (for kernels whose weights
    are already stored in a [K, N] layout, such as the compressed ops). ``heuristic_start``
    makes :func:`heuristic_config` the space's start instead of the trivial config."""
    packable = packable and not shape.panel          # a panelled weight is packed already
    knobs = (
        Split("tile_m", shape.mp, 4),
        Split("tile_n", shape.np, 4),
        Split("tile_k", shape.k, 2),
        # defaults (the starting point of G-BFS and N-A2C) are what every fast config does
        Choice("pack_b", (False, True), default=1) if packable else Choice("pack_b", (False,)),
        Choice("accumulate", ("global", "local"), default=1),
        Choice("unroll", UNROLL),
        Choice("vectorize", (False, True), default=1),
        Choice("parallel", (0, 1, 2, 3) if shape.batched else (0, 1, 2), default=1),
    )
    space = Space(name, knobs)
    return Space(name, knobs, start=heuristic_config(shape, space)) if heuristic_start else space


def largest_divisor(n: int, options, default: int | None = 1) -> int | None:
    """The first of ``options`` (largest first) that divides ``n``, else ``default``."""
    return next((d for d in options if n % d == 0), default)


def heuristic_config(shape: GemmShape, space: Space):
    """A reasonable config without search (what a DLight rule would pick): a register tile of
    up to 4 rows (m3) by 16 outputs (n3: two AVX2 vectors), 8 by 32 on AVX-512 (16 of its 32
    zmm registers: :mod:`.isa`), two (or the fewest > 1) parallel strips of N fused with the
    outer M loop, K blocked by up to 256, a local accumulator, unroll 16."""
    from .isa import current

    n = shape.np
    if current().lanes >= 16:
        n3 = largest_divisor(n, (32, 16, 8, 4, 2))
        m3 = largest_divisor(shape.mp, (8, 4, 2))
    else:
        n3 = largest_divisor(n, (16, 8, 4, 2))
        m3 = largest_divisor(shape.mp, (4, 2))
    # two parallel strips (else the fewest > 1), unless the product is too small to share
    n0 = next((d for d in range(2, 17) if (n // n3) % d == 0), 1) if shape.mp * n * shape.k >= 1 << 16 else 1
    k1 = max(d for d in range(1, min(shape.k, 256) + 1) if shape.k % d == 0)
    knob = {k.name: k for k in space.knobs}
    config = ((1, shape.mp // m3, 1, m3), (n0, n // (n0 * n3), 1, n3), (shape.k // k1, k1),
              knob["pack_b"].values[knob["pack_b"].default], "local", 16, True, 2)
    return config if space.contains(config) else space.initial()


#: rows and K depth of the block a panel start works on: its rows' inputs (16 KB), the panel's
#: K block (12 KB at 48 wide) and the accumulators (12 KB) fit in L1 together. Against blocks of
#: 128 rows by 128 (Xeon, torch in the same run): 128 x 768 x 3072 0.67x -> 0.97x, 64 x 1024 x 1024
#: 0.89x -> 1.14x, 2048 x 3072 x 768 0.86x -> 0.91x, 128 x 3072 x 768 1.03x (128 deep) -> 0.93x
PANEL_BLOCK_ROWS = 64
PANEL_K_BLOCK = 64
#: on AVX2, layers of fewer rows than this read each panel whole, one row at a time (a register
#: tile of 1 x P: 6 or 8 ymm accumulators), the block's rows taking turns on its K block from L1,
#: where the 4 x 16 tile read a 48- or 64-wide panel in 16-wide strips, a jump of 192 or 256 bytes
#: every K step. Zen 4 with AVX2 code, weights cycled, paired against that start: 1 x 4096 x 4096
#: 1.86x, 1 x 1024 x 1024 1.63x, 1 x 768 x 3072 1.65 to 1.83x, 4 x 4096 x 4096 2.11x (4 x 32 tiles:
#: 1.43x), 4 x 3072 x 768 1.59 to 1.75x; at 16 rows 1.42x (4096 x 4096), 1.14x (768 x 3072) but
#: 0.95x (1024 x 1024), so from 16 rows the 4 x 16 tile stays
AVX2_PANEL_STREAM_ROWS = 16


def panel_config(shape: GemmShape, space: Space) -> Config:
    """The start of a dense layer whose weight is stored in panels (:func:`dense_panel`): on
    AVX-512 a register tile of 8 rows by a 48-wide panel (24 zmm accumulators), 4 by a 64-wide
    one, else 8 by the panel; on AVX2 4 rows by 16 outputs (4 x 24 was 0.87x as fast at
    128 x 768 x 3072 with AVX-512 disabled on the Xeon), and below :data:`AVX2_PANEL_STREAM_ROWS`
    rows 1 by the whole panel. Blocks of up to :data:`PANEL_BLOCK_ROWS`
    rows (m2) share each K block of :data:`PANEL_K_BLOCK` of one panel (or the largest divisor of K
    below); two parallel strips of N (else the fewest > 1)."""
    from .isa import current

    p = shape.panel
    if current().lanes >= 16:
        n3, rows = {48: (48, (8, 4, 2)), 64: (64, (4, 2))}.get(p, (p, (8, 4, 2)))
    elif shape.mp < AVX2_PANEL_STREAM_ROWS:
        n3, rows = p, (1,)
    else:
        n3, rows = min(p, 16), (4, 2)
    m3 = largest_divisor(shape.mp, rows)
    m2 = largest_divisor(shape.mp // m3, range(PANEL_BLOCK_ROWS // m3, 0, -1))
    panels = shape.n // n3
    n0 = largest_divisor(panels, range(2, min(panels, 16) + 1), default=1)
    k1 = largest_divisor(shape.k, range(min(shape.k, PANEL_K_BLOCK), 0, -1))
    knob = {k.name: k for k in space.knobs}
    config = ((1, shape.mp // (m2 * m3), m2, m3), (n0, panels // n0, 1, n3), (shape.k // k1, k1),
              knob["pack_b"].values[0], "local", 16, True, 2)
    return config if space.contains(config) else space.initial()


def replay_subspace(shape: GemmShape):
    """The restricted GEMM space measured exhaustively for replay comparisons of tuners.

    Three free tiling levels for M (m2 = 1) and N (n2 = 1, n3 >= 8), K's inner block at least
    16, and the best-practice choices fixed (packed B, local accumulator, vectorized, outer M
    loop parallel). 256^3 gives 4,725 configs spanning two orders of magnitude of speed.
    """

    full = gemm_space(shape)
    tm, tn, tk = (k.all() for k in full.knobs[:3])
    ms = [f for f in tm if f[2] == 1]
    ns = [f for f in tn if f[2] == 1 and f[3] >= 8]
    ks = [f for f in tk if f[1] >= 16]
    fixed = (True, "local", 0, True, 1)
    return restrict(full, ((m, n, k) + fixed for m in ms for n in ns for k in ks))


def apply_gemm(sch, shape: GemmShape, space: Space, config: Config, epilogue=(), plain_weight: bool = False) -> list:
    """Schedule the block ``C`` of ``sch`` (built from ops/gemm.py's compute) in place.
    ``epilogue``: elementwise blocks fused after it (scale, bias, ReLU), inlined into the
    accumulator's write-back where the config accumulates locally; returns those left over.
    ``plain_weight``: B is read as stored (the dense and batched products), not decoded in the
    loop (ops/decoded.py), which changes how the tile's vectors are best formed
    (:func:`_vectorize_lanes`)."""
    from tvmopt.errors import ConfigError

    if not space.contains(config):
        raise ConfigError(f"config {config} is not in the space {space.name}")
    knob = space.as_dict(config)
    tm, tn, tk = knob["tile_m"], knob["tile_n"], knob["tile_k"]
    block = sch.get_sblock("C")
    # padded rows or columns (GemmShape.mp, np): the first epilogue block crops them; the rest
    # goes into it, and the crop into the accumulator's write-back (which skips the extra ones)
    crop = epilogue[0] if epilogue and shape.padded else None
    epilogue = list(epilogue[1:] if crop is not None else epilogue)
    leftover = ([crop] if crop is not None else []) + epilogue

    if knob["pack_b"]:
        _pack_b(sch, block, shape, tn[3])

    lead, m, n, kk = split_gemm_loops(sch, block, shape, tm, tn, tk)
    sch.reorder(*lead, m[0], n[0], m[1], n[1], kk[0], m[2], n[2], kk[1], m[3], n[3])

    outer = lead + [m[0], n[0]]
    if knob["parallel"]:
        fused = sch.fuse(*outer[: knob["parallel"]]) if knob["parallel"] > 1 else outer[0]
        sch.parallel(fused)

    if knob["accumulate"] == "local":
        local = sch.cache_write(block, 0, "local")
        leftover = inline_epilogue(sch, epilogue)
        sch.reverse_compute_at(local, n[1])
        if crop is not None:
            sch.reverse_compute_inline(crop)
        wb_loops = sch.get_loops(local)
        depth = [sch.get(lp).same_as(sch.get(n[1])) for lp in wb_loops].index(True) + 1
        own_loops = wb_loops[depth:]
        # extent-1 loops vanish; never vectorize n1 itself, which holds the reduction
        if knob["vectorize"] and own_loops:
            sch.vectorize(own_loops[-1])
    if knob["unroll"]:
        sch.annotate(kk[1], "pragma_auto_unroll_max_step", knob["unroll"])
        sch.annotate(kk[1], "pragma_unroll_explicit", 1)
    if knob["vectorize"] and tn[3] > 1:
        _vectorize_lanes(sch, n[3], tn[3], shape.panel, plain_weight)
    init = sch.decompose_reduction(block, kk[0])
    if knob["accumulate"] == "local":
        unroll_tile(sch, init, local)
    _schedule_row_pad(sch, block)
    return leftover


#: the most (vector) iterations :func:`unroll_tile` unrolls: a register tile's accumulators
TILE_UNROLL_MAX = 32
#: ... or the most elements it unrolls (32 AVX-512 registers of 16 floats)
TILE_UNROLL_ELEMENTS = 512


def unroll_tile(sch, *blocks) -> None:
    """Unroll the serial loops of each of a register tile's ``blocks`` (its initialization and
    write-back), from the innermost out while their iterations (vector loops not counted) stay
    within ``TILE_UNROLL_MAX``, or the tile's elements (vector lanes counted) within
    ``TILE_UNROLL_ELEMENTS``: with every access at a constant offset, LLVM keeps the
    accumulator buffer (on the stack: schedules/lowering.py) in registers, and the tile is
    zeroed and written back straight from them (no memset, no store and reload).

    The element bound covers scalar tiles (``vectorize`` off), which LLVM vectorizes itself: a
    4 x 16 tile has 64 serial iterations, and with one of its write-back loops left rolled and
    a fused ReLU in it, LLVM kept the tile in memory (masked gathers and scatters of 4 lanes):
    the digits MLP's 64x256x256 layer ran in 72 us instead of its record's 40 us."""
    for block in blocks:
        _unroll_own_loops(sch, block)


def _unroll_own_loops(sch, block) -> None:
    from tvm.tirx import ForKind

    count = elements = 1
    for loop in reversed(sch.get_loops(block)):
        node = sch.get(loop)
        if len(sch.get_child_blocks(loop)) > 1:      # shared with other blocks: not the tile's own
            return
        if not hasattr(node.extent, "value"):
            return
        if node.kind == ForKind.VECTORIZED:
            elements *= int(node.extent.value)
            continue
        if node.kind != ForKind.SERIAL:
            return
        count *= int(node.extent.value)
        elements *= int(node.extent.value)
        if count > TILE_UNROLL_MAX and elements > TILE_UNROLL_ELEMENTS:
            return
        if node.extent.value > 1:
            sch.unroll(loop)


def _schedule_row_pad(sch, block) -> None:
    """The copies of the inputs with zero rows (``pad_a``) or columns (``pad_b``, where B is not
    packed) appended, if any: the outer loops in parallel, the last one vectorized."""
    for producer in sch.get_producers(block):
        if sch.get(producer).name_hint in ("pad_a", "pad_b"):
            *outer, cols = sch.get_loops(producer)
            sch.parallel(sch.fuse(*outer) if len(outer) > 1 else outer[0])
            if int(sch.get(cols).extent) % 16 == 0:
                _, inner = sch.split(cols, factors=[None, 16])
                sch.vectorize(inner)


def _vectorize_lanes(sch, loop, extent: int, panel: int = 0, plain_weight: bool = False) -> None:
    """Vectorize the register tile's output loop. A width that is a multiple of the machine's
    vector but not a power-of-two multiple (24 or 48 lanes on AVX2) is split into whole vectors,
    unrolled: LLVM keeps a <24 x float> accumulator in no register, and shuffled it through the
    stack on every step (dense:128x768x3072, 4 x 24 tile: 11 GFLOPS as one vector, 100 GFLOPS
    as three, on a Zen 4 with AVX2). So is a tile over weight panels of another width, and on
    AVX2 (16 registers) a dense product's (``plain_weight``) tile of several vectors: a 4 x 16
    tile as two ymm per row in place of one <16 x float> ran 1.15x at 128 x 768 x 3072, 1.10x at
    128 x 3072 x 768, 1.04x at 1024^3 and 64 x 1024 x 1024, 0.97x at 16 x 4096 x 4096 (compiled
    for Zen 3, run on a Zen 4, interleaved; AVX-512 tiles of two zmm: 0.99 to 1.04x, left as one
    vector). Not where the weight is decoded in the loop: shift_dense:16x4096x4096 ran 0.53x
    split, binary_dense:16x1024x1024 0.70x, the one-row shift and ternary kernels 0.80 and 0.90x."""
    from .isa import current

    lanes = current().lanes
    if extent % lanes:          # 24 outputs on AVX-512: vectors of 8
        lanes = largest_divisor(extent, [w for w in (8, 4) if w < lanes], default=lanes)
    vectors = extent // lanes
    whole = extent % lanes == 0 and vectors > 1
    # a tile wider than a panel, or not one run of it: one vector at a time, each inside a panel
    # (as one vector it is a gather: 38 GFLOPS against 195 in vectors, 128 x 3072 x 768, Xeon)
    crosses = bool(panel) and (extent > panel or panel % extent != 0) and panel % lanes == 0
    if whole and (vectors & (vectors - 1) or crosses or (plain_weight and current().registers <= 16)):
        outer, inner = sch.split(loop, factors=[vectors, lanes])
        sch.unroll(outer)
        sch.vectorize(inner)
    else:
        sch.vectorize(loop)


def inline_epilogue(sch, epilogue) -> list:
    """Inline each elementwise block of ``epilogue`` (in order) into its producer, the
    accumulator's write-back; the first that cannot be inlined, and all after it, are returned."""
    epilogue = list(epilogue)
    if len(epilogue) > 1:
        # a chain that reads a value more than once (GELU's x * f(x)) cannot go into the
        # write-back a block at a time: the first block's result is still read after the
        # second. Its blocks but the last are inlined into their consumers first, so the last
        # computes the whole chain from the accumulator.
        kept = []
        for stage in epilogue[:-1]:
            try:
                sch.compute_inline(stage)
            except Exception:  # noqa: BLE001 - TVM's ScheduleError: read by a later non-elementwise stage
                kept.append(stage)
        epilogue = kept + epilogue[-1:]
    leftover = []
    for consumer in epilogue:
        if not leftover and not is_crop(sch, consumer):
            try:
                sch.reverse_compute_inline(consumer)
                continue
            except Exception:  # noqa: BLE001 - TVM's ScheduleError: not a plain elementwise epilogue
                pass
        leftover.append(consumer)
    return leftover


def is_crop(sch, consumer) -> bool:
    """Whether ``consumer`` writes fewer elements than a producer's buffer of its rank that it
    reads, or than a producer's buffer of another rank holds (the rows of a padded kernel
    dropped: :func:`padded_rows`; a kernel computing ``[1, M, 1, N]`` for an ``[M', N]``
    output, ``xnor8_dense``). TVM inlines such a block into the producer's write-back without a
    bound, which then writes past the end of the smaller buffer (a ViT's 197-row outputs of
    200 computed rows corrupted the heap); it stays a loop of its own."""
    stmt = sch.get(consumer)
    # what it computes (its iteration domain), not the buffer it writes: a copy into a slice of a
    # larger tensor (``passes/concat.py``) computes every element it reads
    out = [int(iv.dom.extent) for iv in stmt.iter_vars]
    produced = {w.source.name for p in sch.get_producers(consumer) for w in sch.get(p).writes}
    for region in stmt.reads:
        shape = [int(d) for d in region.source.shape]
        if region.source.name not in produced:
            continue
        if (shape != out) if len(shape) == len(out) else (math.prod(shape) > math.prod(out)):
            return True
    return False


def split_gemm_loops(sch, block, shape: GemmShape, tm, tn, tk):
    """The (i, j, k) loops of a GEMM block split by the factors of its config: returns the
    batch loops and the split loops of M, N and K (shared by the LLVM and CUDA spaces)."""
    loops = sch.get_loops(block)
    lead = list(loops[:-3]) if shape.batched else []
    i, j, k = loops[-3:]
    return lead, sch.split(i, factors=list(tm)), sch.split(j, factors=list(tn)), sch.split(k, factors=list(tk))


def _pack_b(sch, block, shape: GemmShape, width: int) -> None:
    """Copy B into [.., N/width, K, width] panels, in parallel over panels."""
    packed = sch.cache_read(block, 1, "global")
    for producer in sch.get_producers(packed):
        if sch.get(producer).name_hint == "pad_b":      # zero columns appended while packing
            sch.compute_inline(producer)
    if shape.transposed_b:
        index_map = lambda *idx: (*idx[:-2], idx[-2] // width, idx[-1], idx[-2] % width)  # noqa: E731
    else:
        index_map = lambda *idx: (*idx[:-2], idx[-1] // width, idx[-2], idx[-1] % width)  # noqa: E731
    sch.transform_layout(packed, ("write", 0), index_map)
    loops = sch.get_loops(packed)
    sch.parallel(loops[0])


# =============================================================================================
# CUDA
#
# The CUDA schedule space of the GEMM family (and of the compressed dense ops that share its
# loop nest), and the one function that applies a config.
#
# Loop nest (outermost first) for C[b, i, j] = sum_k A[b, i, k] * B'[b, k, j]:
#
#     b   m0  n0  | m1  n1     | k0 | k1 | m2 n2
#     blockIdx.zyx  threadIdx.yx  K steps (tiles of A and B staged in shared memory per k0)
#                                      k1 m2 n2: each thread's (m2 x n2) register tile
#
# Each axis is an exact factorization of its extent (``Split``, the same prime-factor moves as
# the LLVM space), so every config computes the right result; configs whose block needs more
# threads or shared memory than the GPU has are valid points of the space that fail to launch:
# ``tvmopt.cuda.check_launch_bounds`` rejects them before they are exported. Other knobs:
#
# - ``shared``: copy the (m1*m2) x k1 tile of A and the k1 x (n1*n2) tile of B into shared memory
#   once per k0 step, every thread of the block loading a part (a cooperative fetch).
# - ``vector``: width of those loads (float2/float4) wherever the tile and the array rows allow
#   it (the innermost tile extent and the array's row length divisible by it), else scalar.
# - ``unroll``: ``pragma_auto_unroll_max_step`` on the k0 body.
# - ``decode`` (compressed ops whose weight is a separate stage): ``inline`` decodes each weight
#   inside the product; ``shared`` decodes the k1 x (n1*n2) weight tile once per k0 step into
#   shared memory, where every row of the block reads it.
#
# Nothing here imports TVM at module level.
CUDA_UNROLL = (0, 16, 64, 512)
CUDA_VECTOR = (1, 2, 4)
#: what every CUDA generation since Kepler allows (checked again per arch in tvmopt.measure.cuda)
MAX_THREADS = 1024


def cuda_gemm_space(shape: GemmShape, name: str = "gemm-cuda", decode: bool = False) -> Space:
    """The CUDA GEMM space; ``decode`` adds the ``decode`` knob (compressed ops with a W stage).
    Its start is :func:`heuristic_cuda_config`."""
    knobs = (
        Split("tile_m", shape.m, 3),
        Split("tile_n", shape.n, 3),
        Split("tile_k", shape.k, 2),
        Choice("shared", (False, True), default=1),
        Choice("vector", CUDA_VECTOR, default=2),
        Choice("unroll", CUDA_UNROLL, default=2),
    ) + ((Choice("decode", ("inline", "shared"), default=1),) if decode else ())
    space = Space(name, knobs)
    return Space(name, knobs, start=heuristic_cuda_config(shape, space))


def heuristic_cuda_config(shape: GemmShape, space: Space) -> Config:
    """A config without search, as TVM's GPU rules pick one: a 4x4 register tile per thread
    (smaller where M or N do not divide), 8 x 16 threads, K staged 8 (or 16) at a time."""
    m2 = largest_divisor(shape.m, (4, 2))
    n2 = largest_divisor(shape.n, (4, 2))
    m1 = largest_divisor(shape.m // m2, (8, 4, 2))
    n1 = largest_divisor(shape.n // n2, (16, 8, 4, 2))
    k1 = largest_divisor(shape.k, (8, 16, 4, 2))
    config = ((shape.m // (m1 * m2), m1, m2), (shape.n // (n1 * n2), n1, n2), (shape.k // k1, k1), True, 4, 64)
    config += tuple(k.trivial() for k in space.knobs[len(config):])
    return config if space.contains(config) else space.initial()


def threads_per_block(space: Space, config: Config) -> int:
    knob = space.as_dict(config)
    return knob["tile_m"][1] * knob["tile_n"][1]


def cuda_replay_subspace(shape: GemmShape):
    """The CUDA GEMM sub-space measured whole (one exported batch) for replay comparisons:
    register tiles m2, n2 in {1, 2, 4, 8}, 64 to 256 threads per block, k1 in {4, 8, 16, 32},
    shared staging, float4 loads and unroll 64 fixed. 1024^3 gives 1,504 configs (about 15 min
    to export on 2 cores, 5 MiB of CUDA C plus 12 MiB of inputs and reference)."""
    full = cuda_gemm_space(shape)
    tm, tn, tk = (k.all() for k in full.knobs[:3])
    ms = [f for f in tm if f[2] in (1, 2, 4, 8)]
    ns = [f for f in tn if f[2] in (1, 2, 4, 8)]
    ks = [f for f in tk if f[1] in (4, 8, 16, 32)]
    return restrict(full, ((m, n, k, True, 4, 64) for m in ms for n in ns if 64 <= m[1] * n[1] <= 256 for k in ks))


def apply_cuda_gemm(sch, shape: GemmShape, space: Space, config: Config, block: str = "C",
                    unstaged: tuple[str, ...] = (), epilogue=()) -> list[str]:
    """Schedule block ``block`` of ``sch`` (the GEMM-shaped reduction) for CUDA in place.

    ``epilogue``: names of elementwise blocks after the product (a scale, a bias, an activation
    that Relax fused into the function), folded in order into the write-back of the product's
    register tile, so they cost no kernel of their own; returns the names of those that could
    not be (a reshape, say), which the caller schedules.

    ``unstaged``: names of read buffers never copied to shared memory (read with a
    data-dependent index, such as N:M's gathered inputs, whose tile bound inference cannot
    know). A ``W`` stage (decoded weights) is inlined or decoded into shared memory per
    ``decode``.
    """
    from tvmopt.errors import ConfigError

    if not space.contains(config):
        raise ConfigError(f"config {config} is not in the space {space.name}")
    knob = space.as_dict(config)
    tm, tn, tk = knob["tile_m"], knob["tile_n"], knob["tile_k"]
    c = sch.get_sblock(block)
    has_w = _has_block(sch, "W")
    if has_w and knob.get("decode", "inline") == "inline":
        sch.compute_inline(sch.get_sblock("W"))
        has_w = False

    lead, m, n, kk = split_gemm_loops(sch, c, shape, tm, tn, tk)
    sch.reorder(*lead, m[0], n[0], m[1], n[1], kk[0], kk[1], m[2], n[2])
    if lead:
        sch.bind(lead[0], "blockIdx.z")
    sch.bind(m[0], "blockIdx.y")
    sch.bind(n[0], "blockIdx.x")
    sch.bind(m[1], "threadIdx.y")
    sch.bind(n[1], "threadIdx.x")
    threads = (tm[1], tn[1])
    depth = len(lead) + 5                 # loops down to k0, shared by the staged copies

    local = sch.cache_write(c, 0, "local")
    leftover = list(epilogue)
    while leftover:
        try:
            sch.reverse_compute_inline(sch.get_sblock(leftover[0]))
        except Exception:  # noqa: BLE001 - TVM's ScheduleError: not elementwise on the product's tile
            break
        leftover.pop(0)
    sch.reverse_compute_at(local, n[1])
    if has_w:
        w = sch.get_sblock("W")
        sch.set_scope(w, 0, "shared")
        sch.compute_at(w, kk[0])
        _cooperative(sch, w, depth, threads, 1)
    if knob["shared"]:
        reads = [r.source.name for r in sch.get(c).reads]
        for index, name in enumerate(reads):
            if name in unstaged or name.endswith(("_shared", "_local")) or (has_w and name == "W"):
                continue
            staged = sch.cache_read(c, index, "shared")
            sch.compute_at(staged, kk[0])
            _cooperative(sch, staged, depth, threads, knob["vector"])
    if knob["unroll"]:
        sch.annotate(kk[0], "pragma_auto_unroll_max_step", knob["unroll"])
        sch.annotate(kk[0], "pragma_unroll_explicit", 1)
    sch.decompose_reduction(c, kk[0])
    return leftover


def _has_block(sch, name: str) -> bool:
    try:
        sch.get_sblock(name)
        return True
    except Exception:  # noqa: BLE001 - TVM raises its own error kind for a missing block
        return False


def _cooperative(sch, block, depth: int, threads: tuple[int, int], vector: int) -> None:
    """Every thread of the block copies part of the tile: the tile's own loops (below the
    first ``depth``) fused and split over (threadIdx.y, threadIdx.x), innermost ``vector``
    lanes at a time where the tile's and the source array's rows allow it."""
    own = sch.get_loops(block)[depth:] or [sch.add_unit_loop(block)]   # a one-element tile
    extents = [int(sch.get(lp).extent) for lp in own]
    reads = sch.get(block).reads
    row = int(reads[0].source.shape[-1]) if reads else 0
    total = 1
    for e in extents:
        total *= e
    if vector > 1 and not (extents[-1] % vector == 0 and row % vector == 0 and total % vector == 0):
        vector = 1
    fused = sch.fuse(*own)
    factors = [None, threads[0], threads[1]] + ([vector] if vector > 1 else [])
    parts = sch.split(fused, factors=factors)
    sch.bind(parts[1], "threadIdx.y")
    sch.bind(parts[2], "threadIdx.x")
    if vector > 1:
        sch.vectorize(parts[3])


#: threads of the one-dimensional kernels of prologue stages (bit packing, lookup tables)
PROLOGUE_THREADS = 256


def apply_cuda_decoded(sch, shape: GemmShape, space: Space, config: Config, unstaged=(), epilogue=()) -> list[str]:
    """A compressed dense op (a GEMM whose weight is decoded from compact arrays): the product
    by :func:`apply_cuda_gemm` with the ``epilogue`` blocks folded into its write-back, every
    prologue stage (bit packing, lookup tables) one thread per element; returns the epilogue
    blocks left over, as :func:`apply_cuda_gemm` does. ``unstaged``: buffers read with a
    data-dependent index, never staged."""
    prologues = [n for n in _block_names(sch) if n not in ("C", "W") and n not in epilogue]
    leftover = apply_cuda_gemm(sch, shape, space, config, unstaged=unstaged, epilogue=epilogue)
    for block in prologues:
        bind_flat(sch, block, PROLOGUE_THREADS)
    return leftover


def _block_names(sch) -> list[str]:
    return [sch.get(b).name_hint for b in sch.get_child_blocks(sch.get_sblock("root"))]


def bind_flat(sch, name: str, threads: int) -> None:
    """One thread per output element of block ``name`` (its spatial loops fused), reductions
    serial inside the thread."""
    block = sch.get_sblock(name)
    loops = sch.get_loops(block)
    spatial = sum(1 for iv in sch.get(block).iter_vars if int(iv.iter_type) == 0)
    fused = sch.fuse(*loops[:spatial]) if spatial > 1 else loops[0]
    extent = int(sch.get(fused).extent)
    bx, tx = sch.split(fused, factors=[None, min(threads, extent)])
    sch.bind(bx, "blockIdx.x")
    sch.bind(tx, "threadIdx.x")
