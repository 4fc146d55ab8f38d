"""The LLVM schedule space of the Winograd F(2x2, 3x3) convolution (channels last, 3x3, stride 1,
pad 1) and ``apply_winograd``.

The transform (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016):
each 2 x 2 block of output pixels (a *tile*) is ``A^T [ (G g G^T) . (B^T d B) ] A`` for the 4 x 4
input patch ``d`` around it and the 3 x 3 filter ``g``: 16 multiplies per tile and channel pair
where the direct conv does 36, so 2.25x fewer multiply-adds; the transforms of ``d`` and of the
result are additions only (every coefficient of B and A is 0 or +-1), so the fp32 results stay
within a few ulps of the direct conv's.

The loop nest, per block of ``tile_p`` tiles along one row of tiles (outermost first):

    [n th]p | tw0 | input transform of the block's patches (V[16, tile_p, C], in L1/L2)
                  | 16 GEMMs  M[e] = V[e] (tile_p x C) @ U[e] (C x K): a register tile of
                  |           tile_p tiles by tile_k vectors of 16 output channels
                  | output transform + epilogue (bias, ReLU, residual add) into Y

The transformed weight ``U[4, 4, C, K]`` is a constant for a dense layer (laid out when the
model is built, in panels of 16 output channels) and computed from the codes at the start of each
call for a compressed one. Knobs: ``tile_p`` (tiles per block: the GEMM's register rows),
``tile_k`` (vectors of output channels per register tile) and ``parallel`` (``PARALLEL``; with
``blocks`` the output channels come outermost in blocks of ``block_vectors`` and every patch is
transformed once, before them).

Measured one layer at a time on Zen 4 (2 cores, start configs, ``benchmarks/winograd.py``): 1.7
to 2.1x the direct conv's start on ResNet-18's 56x56, 28x28 and 14x14 layers at batch 1 and 16,
and 1.4 to 1.8x on ResNet-20's. A 512-channel layer's U (16 MiB) streamed once per row of tiles
ran 0.5x the direct conv on 7x7 maps; in panels and split by outputs (one image) or blocks (a
batch, or a compressed layer) 1.5 to 2x (``BLOCKS_FROM_BYTES``).
"""

from __future__ import annotations

import math

from .conv2d import ConvShape, _schedule_pad
from .gemm import inline_epilogue, largest_divisor, unroll_tile
from .space import Choice, Config, Space

#: output channels per vector (fp32 lanes of AVX-512; on AVX2 LLVM splits each in two)
LANES = 16
#: how the cores share the work: ``rows`` of tiles (each core reads all of U), ``outputs``: each
#: core computes one share of the output channels for every tile (reading only its share of U,
#: and transforming every input patch itself), or ``blocks`` of output channels (``BLOCK_BYTES``)
PARALLEL = ("rows", "outputs", "blocks")
#: ``outputs`` is the start for one image whose U is larger than L2: at 1x256x14x14x256 (4 MiB)
#: the dense conv ran 572 against 604 us by rows, and a compressed one, each core transforming
#: its share of the codes, 569 (shift) and 637 us (ternary) against 1131 and 1251 us by rows
#: (each core then transforms all of U). A batch of 16 shares one transform: by rows (8.2 ms
#: against 8.5). Where U fits L2, rows: 1x128x28x28x128 570 against 799 us
L2_BYTES = 1 << 20
#: ``blocks``: the output channels in blocks (``block_vectors``), the blocks shared by the cores; each
#: block reads its share of U (at most half of L2) for every tile, and the input transform is done
#: once for all tiles before (not per block of tiles). A compressed layer's U is then decoded and
#: transformed once in all, each block's share by the core that runs it
BLOCK_BYTES = L2_BYTES // 2
#: register tiles of tile_p x tile_k vectors up to this many accumulators
MAX_ACCUMULATORS = 16
#: fewer input channels stay direct: the input transform (32 adds per patch and channel) then
#: costs as much as the GEMMs it saves (a first layer of 1 or 3 channels)
MIN_CHANNELS = 8
#: maps narrower than this many tiles per row stay direct
MIN_TILES_PER_ROW = 4
#: ... and layers whose transformed weight (16 x C x O floats) is larger than this (unmeasured:
#: 512 channels, 16 MiB, is the largest a ResNet or VGG has; builds of one image stop at
#: ``ONE_IMAGE_MAX_TRANSFORMED_BYTES`` but on Zen 4, :func:`preferred`)
MAX_TRANSFORMED_BYTES = 16 << 20
#: from this size of U up, the start splits the output channels in ``blocks`` where U is computed
#: each call (a compressed layer) or shared by a batch (on Zen 4 also one image's dense layer:
#: ``ZEN4_DENSE_BLOCKS``). Zen 4, shift, against the dense Winograd
#: conv's start: 1x512x7x7x512 913 us by blocks, 1165 by outputs, 4175 by rows (dense 686, direct
#: 1028); 16x512x7x7x512 10.5 ms by blocks, 19.7 by outputs (dense by blocks 10.5, by rows 12.0,
#: direct 19.0); 1x512x14x14x512 2289 against 2860 us (dense by outputs 2052). At 4 MiB and less
#: the rows or the outputs stay the start (1x128x28x28x128: 512 us by rows, 925 by blocks)
BLOCKS_FROM_BYTES = 4 << 20
#: ... and on AVX2 from this size where a batch runs a compressed layer (U computed each call):
#: Zen 4 with AVX2 code, ternary against the dense Winograd conv's start, U in panels:
#: 16x128x8x8x256 (2 MiB) 1.02x by blocks, 0.93x by rows; 16x128x14x14x256 1.00x against 0.93x;
#: 16x256x8x8x256 (4 MiB) 0.92 to 0.98x by blocks, 0.87 to 0.93x by rows (runs minutes apart);
#: 16x64x16x16x128 (0.5 MiB) 0.50x by blocks, 0.94x by rows
AVX2_PER_CALL_BLOCKS_FROM_BYTES = 2 << 20
#: ... and on a full-width AVX-512 core (Ice Lake Xeon) from this size for every layer, dense or
#: compressed, one image or a batch: against the start before (outputs for one image, rows for a
#: batch), alternating rounds, by blocks 1x256x14x14x256 dense 1.24x, ternary 1.54x (0.81 against
#: 1.24 ms; the dense start 0.93); 1x512x14x14x512 dense 1.27x, ternary 2.06x; 16x256x14x14x256
#: dense 1.23x, ternary 1.28x. At 1 MiB (1x128x28x28x128) the three splits ran within 5%, and
#: by blocks 16x128x28x28x128 0.97x, 16x64x16x16x128 (0.5 MiB) 0.94x the rows; at 2 MiB, where
#: each core's half of U fits its L2 and all of it does not, by blocks 16x128x8x8x256 1.49x the
#: rows (the compressed layer by blocks 0.95x the dense one, by rows 0.49x), 16x128x16x16x256
#: 1.27x, one image 1x128x8x8x256 1.08x the outputs (rows 0.72x): so from 2 MiB. Whole networks
#: untuned against the 4 MiB rule, interleaved: Inception v2 1.065x (its one-image 14x14 and 7x7
#: layers of 2 to 4 MiB), Inception v1 1.02x
WIDE_BLOCKS_FROM_BYTES = 2 << 20
#: Zen 4 (double-pumped AVX-512) splits one image's dense layer on a small map
#: (``SMALL_MAP_MAX_PIXELS``) in blocks past ``BLOCKS_FROM_BYTES`` too: its U is cold in a
#: network, and split by outputs each core streams its half of U from memory once per block of
#: tiles (ResNet's 7x7x512 layers: 4 passes over 8 MiB a core), where a block of U stays in L2
#: for every tile. Alone and warm the outputs had won (``BLOCKS_FROM_BYTES``' note). Interleaved
#: builds, per-kernel profiles in the network: 1x512x7x7x512 1.18 to 1.62x in ResNet-50 (six
#: runs; the whole network 1.013 to 1.041x) and 1.39 to 1.47x in ResNet-18 (the whole network
#: 1.084x), AlexNet's 6 MiB 1.16 to 1.24x, ZFNet's 8 MiB 1.29x and 16 MiB 0.98x; flushed caches,
#: one layer: 7x7x512 1.42x, 12x12 8 and 16 MiB 1.14 and 1.13x, 6 MiB 1.07x. VGG-19's 14x14x512
#: (16 MiB) read 1.14 and 1.02x in two runs, 0.90x flushed. At 4 MiB and below no gain held
#: (1x256x14x14x256 1.15, 1.10 and 0.90x in three ResNet-50 runs, 0.99x flushed; Inception v1's 2
#: to 3.3 MiB layers 0.93 to 1.13x), nor on larger maps, where more tiles share each pass over U
#: (VGG-19's 28x28x512 1.19x in one run, 0.97x in the next)
ZEN4_DENSE_BLOCKS = True
#: (below it, one image's compressed layer whose U fills L2 (``L2_BYTES``) splits the outputs: by
#: rows each core transforms all of U. 1x128x28x28x128 against the dense start, alternating
#: rounds: shift 0.94x by outputs, 0.80x by rows; 2:4 0.96x, 0.75x; ternary 0.96x, 0.88x)
#: ... and so does one whose U is from this size on a small map (``SMALL_MAP_MAX_PIXELS``), where the
#: transform weighs most against the few tiles: Ice Lake Xeon, one layer, warm, against the dense
#: start, by outputs / by rows: 1x64x16x16x128 (512 KiB) shift 0.94 to 0.96x / 0.81 to 0.83x,
#: ternary 1.00x / 0.86x; 1x64x8x8x64 (256 KiB) shift 0.76x / 0.56x. Not below it (1x32x16x16x32,
#: 64 KiB, two vectors of outputs: 0.56x / 0.94x) nor on larger maps (1x64x56x56x64 0.96x / 1.06x,
#: 1x64x32x32x64 ternary 1.04x / 1.13x)
SMALL_MAP_SHARE_FROM_BYTES = 256 << 10
SMALL_MAP_MAX_PIXELS = 256


def transformed_bytes(channels: int, outputs: int) -> int:
    """Bytes of the transformed weight U[4, 4, C, O] (fp32)."""
    return 64 * channels * outputs


def block_vectors(shape: ConvShape, threads: int) -> int:
    """Vectors of 16 output channels per block (``parallel = blocks``): the most whose share of U
    fits ``BLOCK_BYTES`` while every core gets a block."""
    vectors = shape.o // LANES
    fits = [b for b in range(vectors, 0, -1) if vectors % b == 0 and vectors // b >= min(threads, vectors)
            and transformed_bytes(shape.c, b * LANES) <= BLOCK_BYTES]
    return fits[0] if fits else 1


def tiles(shape: ConvShape) -> tuple[int, int]:
    """(rows, columns) of 2 x 2 output tiles per image."""
    return (shape.oh + 1) // 2, (shape.ow + 1) // 2


def applies(shape: ConvShape) -> bool:
    """Whether the Winograd kernel computes this convolution: 3x3, stride 1, pad 1, one group,
    ``MIN_CHANNELS`` input channels or more, output channels in whole vectors, a map of
    ``MIN_TILES_PER_ROW`` tiles per row and a transformed weight of ``MAX_TRANSFORMED_BYTES`` at most."""
    return (shape.kh == shape.kw == 3 and shape.stride == 1 and shape.pad == 1 and shape.groups == 1
            and shape.c >= MIN_CHANNELS
            and shape.o % LANES == 0 and tiles(shape)[1] >= MIN_TILES_PER_ROW
            and transformed_bytes(shape.c, shape.o) <= MAX_TRANSFORMED_BYTES)


#: one image's conv stays direct where U is larger than this: ResNet's 512-channel 7x7 layers (U
#: 16 MiB, the direct conv's weight 9 MiB), whose weights are cold in a network (the model
#: outgrows L3). Zen 3, 1x512x7x7x512 alone, U warm 1.42 ms and flushed 2.01 ms (the direct conv
#: warm 1.58 ms); in the networks, the same layers profiled in alternating rounds, the direct conv
#: ran 1.18x the Winograd conv in ResNet-50 (1.016x the whole network) and 1.09x in ResNet-18
#: (1.043x). Ice Lake Xeon (AVX-512): alone and warm, every Winograd config ran 0.38 to 0.56x the
#: direct conv (U streams from its mesh L3 at about 7 GB/s), and ResNet-18 ran 1.23 to 1.31x faster
#: whole with these three layers direct (interleaved builds, 15 and 21 rounds; keeping Winograd only
#: from 28x28 or 56x56 maps, or dropping it, gained no more). A batch shares the transform
#: (16x512x7x7x512: 10.5 against 19.0 ms direct, Zen 4). Zen 4 (double-pumped AVX-512) keeps the
#: Winograd conv: ResNet-18 ran 5.6% faster with it (interleaved builds)
ONE_IMAGE_MAX_TRANSFORMED_BYTES = 8 << 20
#: ... on maps of at most this many 2x2 tiles (7x7 and 8x8): larger maps read U once for more
#: tiles, and VGG-19's 512-channel layers ran 0.74x (14x14, 49 tiles) and 0.62x (28x28) direct
#: (in-network, alternating rounds, Zen 3; the whole network 0.79x)
ONE_IMAGE_MAX_TILES = 16


def preferred(shape: ConvShape) -> bool:
    """Whether a build computes this dense convolution with the Winograd kernel: where it
    :func:`applies`, except one image of at most ``ONE_IMAGE_MAX_TILES`` tiles past
    ``ONE_IMAGE_MAX_TRANSFORMED_BYTES`` but on Zen 4 (the ISA a build targets: :mod:`.isa`)."""
    from .isa import current

    if not applies(shape):
        return False
    rows, columns = tiles(shape)
    return not (shape.n == 1 and not current().double_pumped
                and rows * columns <= ONE_IMAGE_MAX_TILES
                and transformed_bytes(shape.c, shape.o) > ONE_IMAGE_MAX_TRANSFORMED_BYTES)


def winograd_space(shape: ConvShape, name: str = "winograd-llvm", per_call: bool = False) -> Space:
    """The knobs and the start; ``per_call``: U is computed at the start of each call (a compressed
    layer), which moves the start of large layers to ``blocks``."""
    tw = tiles(shape)[1]
    vectors = shape.o // LANES
    tile_p = tuple(p for p in (2, 4, 7, 8, 14) if p <= tw)
    tile_k = tuple(k for k in (1, 2, 4) if vectors % k == 0)
    knobs = (Choice("tile_p", tile_p), Choice("tile_k", tile_k), Choice("parallel", PARALLEL))
    space = Space(name, knobs)
    return Space(name, knobs, start=heuristic_config(shape, space, per_call))


def heuristic_config(shape: ConvShape, space: Space, per_call: bool = False) -> Config:
    """The start (AVX-512): 7 or 8 tiles by 2 vectors (14 to 16 accumulators; Zen 4's sweep of 4 to 14
    tiles by 1 to 4 vectors had these within 3% of the best on every ResNet-18 and ResNet-20
    layer), 7 where it divides the row of tiles and 8 does not; 1 vector where 2 do not divide.
    One image whose transformed weight outgrows L2 splits the output channels between the cores
    (``L2_BYTES``' note); a U over ``BLOCKS_FROM_BYTES`` computed each call or shared by a batch
    (on Zen 4 also one image's on a small map: ``ZEN4_DENSE_BLOCKS``) runs by ``blocks`` (on AVX2,
    a batch's per-call U from ``AVX2_PER_CALL_BLOCKS_FROM_BYTES``; on
    a full-width AVX-512 core every U from ``WIDE_BLOCKS_FROM_BYTES``, and one image's per-call U
    from ``L2_BYTES``, on a small map from ``SMALL_MAP_SHARE_FROM_BYTES``, by outputs); otherwise the
    rows of tiles."""
    from .isa import current

    knobs = {k.name: k for k in space.knobs}
    tw = tiles(shape)[1]
    ps = knobs["tile_p"].values
    p = 7 if 7 in ps and tw % 7 == 0 and tw % 8 else max(v for v in ps if v <= 8)
    k = 2 if 2 in knobs["tile_k"].values and p * 2 <= MAX_ACCUMULATORS else 1
    if current().lanes < LANES:
        # AVX2: a vector of 16 outputs is two ymm registers of 16, so 4 tiles by 1 vector (8
        # accumulators). Zen 4 with AVX-512 masked, against the direct conv's AVX2 start: 1.29 to
        # 2.17x on ResNet-18's and ResNet-20's layers, where 7 x 2 (28 ymm: spilled) ran 0.87 to 1.58x
        p, k = (4 if 4 in ps else max(ps)), 1
    u = transformed_bytes(shape.c, shape.o)
    avx2_batch = current().lanes < LANES and per_call and shape.n > 1
    full_width = current().full_width
    few_pixels = shape.oh * shape.ow <= SMALL_MAP_MAX_PIXELS
    zen4_small_map = ZEN4_DENSE_BLOCKS and current().double_pumped and few_pixels
    if ((u > BLOCKS_FROM_BYTES and (per_call or shape.n > 1 or zen4_small_map))
            or (avx2_batch and u >= AVX2_PER_CALL_BLOCKS_FROM_BYTES) or (full_width and u >= WIDE_BLOCKS_FROM_BYTES)):
        split = "blocks"
    else:
        small_map = u >= SMALL_MAP_SHARE_FROM_BYTES and few_pixels
        own_share = full_width and per_call and (u >= L2_BYTES or small_map)
        split = "outputs" if shape.n == 1 and (u > L2_BYTES or own_share) else "rows"
    return (p, k, split)


def apply_winograd(sch, block, shape: ConvShape, space: Space, config: Config, epilogue=(), threads: int = 1,
                   per_thread: bool = False) -> list:
    """Schedule the Winograd stages around ``block`` (the output transform, ``wt_out``) in place;
    ``epilogue`` is inlined into the output transform. ``threads``: the cores the kernel is
    built for (``parallel = outputs`` splits the output channels in that many shares);
    ``per_thread``: the parallel loop is one iteration per thread (the block's outermost loop),
    for work placed once per thread. Returns what could not be inlined."""
    from tvmopt.errors import ConfigError

    if not space.contains(config):
        raise ConfigError(f"config {config} is not in the space {space.name}")
    knob = space.as_dict(config)
    pb, kv = knob["tile_p"], knob["tile_k"]
    blocks = knob["parallel"] == "blocks"
    if blocks:          # a register tile of at most one block's vectors
        per_block = block_vectors(shape, threads)
        kv = math.gcd(kv, per_block)
    leftover = inline_epilogue(sch, epilogue)
    gemm = sch.get_producers(block)[0]
    v_block = sch.get_producers(gemm)[0]
    t_block = sch.get_producers(v_block)[0]
    n, yy, xx, k = sch.get_loops(block)
    th, i = sch.split(yy, [None, 2])
    tw, j = sch.split(xx, [None, 2])
    tw0, tw1 = sch.split(tw, [None, pb])
    if knob["parallel"] in ("outputs", "blocks"):     # output channels outermost, in parallel
        if blocks:
            factors = [None, per_block, LANES]
        else:           # one share per core
            vectors = shape.o // LANES
            factors = [largest_divisor(vectors, range(min(max(threads, 1), vectors), 0, -1)), None, LANES]
        kt, ko, ki = sch.split(k, factors)
        sch.reorder(kt, n, th, tw0, tw1, i, j, ko, ki)
        sch.parallel(kt)
    else:
        ko, ki = sch.split(k, [None, LANES])
        sch.reorder(n, th, tw0, tw1, i, j, ko, ki)
        fused = sch.fuse(n, th)
        if per_thread:
            extent = int(sch.get(fused).extent)
            count = largest_divisor(extent, range(min(threads, extent), 0, -1))
            fused = sch.split(fused, [count, extent // count])[0]
        sch.parallel(fused)
    sch.vectorize(ki)
    sch.unroll(i)
    sch.unroll(j)
    # the block's GEMMs, then its patches' transforms, all inside the block of tiles; with
    # ``blocks``, every patch transformed once before, in parallel over the rows of tiles
    sch.compute_at(gemm, tw0)
    if blocks:
        vn, vth, vtw = sch.get_loops(v_block)[:3]
        sch.parallel(sch.fuse(vn, vth))
        sch.compute_at(t_block, vtw)
    else:
        for stage in (v_block, t_block):
            sch.compute_at(stage, tw0)
    *_, mtw, ma, mb, mk, mc = _own_loops(sch, gemm, 5)
    mko, mkm, mki = sch.split(mk, [None, kv, LANES])
    local = sch.cache_write(gemm, 0, "local")
    sch.reorder(ma, mb, mko, mc, mtw, mkm, mki)
    sch.reverse_compute_at(local, mko)
    sch.vectorize(mki)
    sch.unroll(mtw)
    sch.unroll(mkm)
    init = sch.decompose_reduction(gemm, mc)
    unroll_tile(sch, init, local)
    for stage in (v_block, t_block):          # (.., a, b, c): channels in vectors, a and b unrolled
        *_, a, b, c = _own_loops(sch, stage, 3)
        if shape.c % LANES == 0:
            sch.vectorize(sch.split(c, [None, LANES])[1])
        sch.unroll(a)
        sch.unroll(b)
    _schedule_pad(sch, t_block, vector_widths=(LANES,))     # the zero-padded input: rows in parallel
    return leftover


def _own_loops(sch, block, count: int) -> list:
    """The innermost ``count`` loops of ``block`` (its own, below where it was computed at)."""
    return list(sch.get_loops(block))[-count:]
