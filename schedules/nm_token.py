"""The schedule space of ``nm_token_dense`` (N:M weights at tens to hundreds of rows:
tvmopt/ops/nm_token_dense.py) and the function that applies a config.

The product runs transposed, vectorized along the rows (tokens) instead of the outputs:
``CT[j, i] = sum_s V[j, s] * XT[row(j, s), i]``. Each kept weight is one broadcast scalar, and
the inputs it multiplies are a contiguous run of one transposed input row, so a kept weight costs
one FMA per vector of tokens and nothing else: no gather, no permute, no decoded zero. Per vector
of outputs the dense kernel does M/2 more FMAs on a 2:4 layer; this kernel does half the FMAs,
each with its own load (the inputs of a row are not shared between outputs), so it is bound by
loads, about 1 + 1/v loads per FMA for ``v`` token vectors.

Stages: ``XT`` (the input transposed into tiles of ``token_tile(M)`` rows, ``[M / T, K, T]``:
each tile's rows contiguous, since 64 rows of a wider XT at a 2 KiB stride fought over 8 of
L1's 64 sets: 512 x 768 x 3072 ran 0.99x the dense start, 1.24x tiled), ``CT`` (the product,
``[N, M]``) and ``C`` (``CT`` transposed back, the epilogue inlined into it).

Loop nest of CT: the cores' chunks of outputs (x token tiles, parallel) > k-steps of ``kblock``
kept weights > the chunk's outputs, ``outputs`` at a time > the step's kept weights (unrolled) >
the outputs of the step > ``tokens`` rows (vectors, unrolled). One k-step's inputs (``kblock``
kept weights cover ``kblock * M / N`` input rows; 64 rows of 128 tokens: 32 KiB) stay in L1
while the chunk's outputs run over them; each output's accumulators stay in registers through
the step and go back to ``CT`` after it. The weight is stored in k-steps of 32 kept values
(``BLOCK``), so the outputs of one step read one contiguous stream.

Measured on an Intel Xeon (Ice Lake server, 2 cores, AVX-512), one layer, 2:4, against the dense
GEMM's start in the same run: 128 x 3072 x 768 1.35 to 1.49x, 128 x 768 x 3072 1.35 to 1.42x,
64 x 1024 x 1024 1.15x, 256 x 1024 x 1024 1.12x, 512 x 768 x 3072 1.24x, but 2048 x 3072 x 768
0.99x (``MAX_ROWS``). With its chunks one per core (2): 12 chunks 1.31x, 48 1.18x (each chunk
brings the step's inputs into L1 again). AVX2 code on the same machine (``-mcpu=znver3``, ymm):
1.72 to 1.94x the AVX2 dense start at 128 x 3072 x 768.

Knobs: ``tokens`` (rows per tile: 2 to 16 vectors), ``outputs`` (outputs whose accumulators
are live together), ``kblock`` (kept weights per k-step).
"""

from __future__ import annotations

from .space import Choice, Config, Space

#: kept weights per block of the weight layout: the k-step the start reads
BLOCK = 32
#: rows from which (and to which) the kernel is offered: at 64 rows 1.15x the dense start, at
#: 2048 0.99x (Ice Lake server)
MIN_ROWS, MAX_ROWS = 64, 512
#: rows of a tile of the transposed input (the largest that divides M)
TOKEN_TILES = (128, 64)
#: accumulators of the start: token vectors per output
START_VECTORS = 8


def token_tile(m: int) -> int | None:
    """Rows per tile of the transposed input: the largest of ``TOKEN_TILES`` that divides ``m``."""
    return next((t for t in TOKEN_TILES if m % t == 0), None)


def nm_token_space(m: int, n: int, kept: int, lanes: int, name: str) -> Space:
    """Start: ``START_VECTORS`` vectors of tokens (8 zmm on AVX-512, 8 ymm on AVX2), one output
    at a time, one weight block per k-step: on the Xeon at 128 x 3072 x 768, 4 vectors by 2
    outputs ran 1.32x the dense start, 8 by 2 1.38x, 8 by 1 1.41x; 64 kept weights per step
    1.30x, 16 about 1.2x."""
    tile = token_tile(m)
    tokens = tuple(t for t in (16, 32, 64, 128) if tile % t == 0 and t >= 2 * lanes and t <= 16 * lanes)
    outputs = tuple(o for o in (1, 2, 4) if n % o == 0)
    kblocks = tuple(b for b in (BLOCK // 2, BLOCK, 2 * BLOCK) if kept % b == 0)
    want = START_VECTORS * lanes
    t0 = max([t for t in tokens if t <= want] or tokens[:1])
    return Space(name, (Choice("tokens", tokens, default=tokens.index(t0)),
                        Choice("outputs", outputs, default=0),
                        Choice("kblock", kblocks, default=kblocks.index(BLOCK))))


def apply_nm_token(sch, space: Space, config: Config, m: int, n: int, cores: int, epilogue=()) -> list:
    """Schedule the stages ``XT``, ``CT`` and ``C`` (see the module's text); ``epilogue``:
    elementwise blocks after ``C``, inlined into it where they can be; returns those left over."""
    from tvmopt.errors import ConfigError

    from .gemm import inline_epilogue, largest_divisor
    from .isa import current

    if not space.contains(config):
        raise ConfigError(f"config {config} is not in the space {space.name}")
    knob = space.as_dict(config)
    tokens, outputs, kblock = knob["tokens"], knob["outputs"], knob["kblock"]
    lanes = current().lanes
    leftover = inline_epilogue(sch, epilogue)

    # the product: cores' chunks of outputs x token tiles (parallel) > k-steps > outputs > kept > tokens
    block = sch.get_sblock("CT")
    j, i, s = sch.get_loops(block)[-3:]
    tiles = m // tokens
    chunks = largest_divisor(n // outputs, [c for c in range(max(1, -(-cores // tiles)), 0, -1)], default=1)
    jp, j0, j1 = sch.split(j, [chunks, None, outputs])
    i0, i1, i2 = sch.split(i, [None, tokens // lanes, lanes])
    s0, s1 = sch.split(s, [None, kblock])
    sch.reorder(jp, i0, s0, j0, j1, s1, i1, i2)
    fused = sch.fuse(jp, i0)
    sch.parallel(fused)
    sch.unroll(s1)
    sch.unroll(i1)
    sch.vectorize(i2)
    sch.decompose_reduction(block, s0)

    # the input transposed: tiles of rows, parallel over (tile, block of inputs), in square blocks
    # as the result below
    xt = sch.get_sblock("XT")
    t, k, r = sch.get_loops(xt)[-3:]
    _transpose_tiles(sch, k, r, lanes, parallel=t)

    # the result transposed back, each chunk's right after its product (still in L2), in
    # blocks of 16 x 16, the epilogue inlined
    out = sch.get_sblock("C")
    sch.reverse_compute_at(out, fused)
    ri, rj = sch.get_loops(out)[-2:]
    _transpose_tiles(sch, ri, rj, lanes)
    return leftover


def _transpose_tiles(sch, rows, cols, lanes: int, parallel=None) -> None:
    """A transposing copy ``out[rows, cols] = in[cols, rows]`` in square blocks of ``lanes``:
    the block's rows unrolled, its columns vectorized (``parallel``: a loop to fuse with the
    blocks of columns into the parallel loop). On the Xeon, 128 x 3072 took 0.12 ms in blocks,
    0.47 ms as a gather per vector of columns."""
    r0, r1 = sch.split(rows, [None, lanes])
    c0, c1 = sch.split(cols, [None, lanes])
    sch.reorder(c0, r0, r1, c1)
    if parallel is not None:
        sch.parallel(sch.fuse(parallel, c0))
    sch.unroll(r1)
    sch.vectorize(c1)
