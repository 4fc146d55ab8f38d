"""The LLVM schedule space of direct 2-D convolution (NCHW or NHWC in and out, the same space)
and ``apply_conv2d``.

Why direct and not im2col + the GEMM space: on ResNet-50's 3x3 layers the im2col stage
writes 9x the input and reads it back as a separate, memory-bound pass, and its epilogue
cannot fuse through the reshape back to NCHW. Measured on whole networks with default schedules
(benchmarks/conv_choice.py, BENCHMARKS.md "conv2d: direct vs im2col"), direct was 1.41x faster
than im2col + the dense GEMM on ResNet-50 and 2.28x on SqueezeNet. The compressed convolutions
(tvmopt/ops/compressed_conv2d.py, xnor_conv2d.py) use this loop nest and space too.

The weight is stored (at compile time, it is a constant) as ``W'[O/ob, C, KH, KW, ob]``: a
block of ``ob`` output channels is one contiguous vector per (c, kh, kw). The loop nest
(outermost first), a register micro-kernel of ``h1 x w1`` output pixels by ``ob`` channels:

    [n c0 h0 w0]p | rest of n c0 h0 w0 | c1 | i0 | kh kw i1 | h1 w1 ob      (ic_at = inside)
    [n c0 h0 w0]p | i0 | rest of n c0 h0 w0 | c1 | kh kw i1 | h1 w1 ob      (ic_at = outside)
    ^ the first p fused and parallel      ^ or after i0 (c1_at = outer) or in the register tile
                                             (c1_at = inner); kh kw i1 or i1 kh kw

Prime output widths above 7 (and 7 in a batch) are computed padded (``ConvShape.owp``: 13 as 14 or 15), so the
register tile can hold more than one pixel; the write-back drops the extra columns.

Knobs: ``tile_c`` (O/ob into c0 x c1), ``tile_h``, ``tile_w`` (of the padded width), ``tile_ic`` (2-level splits,
prime-factor moves like the GEMM), ``c1_at`` (channel blocks in the register tile or
outside it: the way out for prime widths such as 13 or 7; ``halves``: outside it, and each block
computed as two tiles of ob/2 lanes one after the other, for rows of pixels that two vectors per
pixel would spill), ``reduce_order`` (the input-channel block inside or
outside the kernel window), ``unroll``, ``parallel`` (how many of n, c0, h0, w0 are fused and
run in parallel; for one image of one group also ``rows``: n, h0, c0 fused in that order, so each
core computes whole rows of pixels, every channel, see ``PARALLEL_ROWS``), and for a batch
``batch_at`` (``inner``: the order c0 n h0 w0, so a chunk of weights serves every image while it
is in cache). Accumulation is always in a local buffer written back once (with any fused
epilogue: bias, ReLU, residual add), since every fast GEMM config did that.
"""

from __future__ import annotations

from dataclasses import dataclass

from .gemm import UNROLL, inline_epilogue, largest_divisor, unroll_tile
from .space import Choice, Config, Space, Split


@dataclass(frozen=True)
class ConvShape:
    n: int
    c: int
    h: int
    w: int
    o: int
    kh: int
    kw: int
    stride: int = 1
    pad: int = 0
    groups: int = 1
    layout: str = "NCHW"       # of the input and the output: "NCHW" or "NHWC" (the weight is blocked either way)
    fill_blocks: bool = False  # the dense conv: ungrouped output channels padded to whole blocks of 16 (``ogp``)
    flatten: bool = False      # the dense conv: a pointwise NHWC conv on a starved map computes its pixels as one row (``flat``)
    narrow: bool = False       # the dense conv built for AVX2 (16 ymm): ``flat`` also takes the small maps of ``narrow_flat``
    wide_groups: bool = False  # the dense conv built for full-width AVX-512: groups padded to blocks of 16 (``ogp``)

    @property
    def nhwc(self) -> bool:
        return self.layout == "NHWC"

    @property
    def cg(self) -> int:
        """Input channels per group (the reduction's channels)."""
        return self.c // self.groups

    @property
    def oh(self) -> int:
        return (self.h + 2 * self.pad - self.kh) // self.stride + 1

    @property
    def ow(self) -> int:
        return (self.w + 2 * self.pad - self.kw) // self.stride + 1

    @property
    def owp(self) -> int:
        """The output width the kernel computes: ``ow``, or, where ``ow`` above 7 has no divisor
        from 4 to 8 (a prime: SqueezeNet's 13x13 maps; 27, 33, 111), the width up to ``ow + 3`` whose AVX2 register tile does the
        most FMAs per load, counting the padded columns as waste. A prime width leaves register
        tiles of one pixel per row (and with a prime height, as in 13x13, one pixel in all); 27
        leaves three. 27 as 28 (tiles of 7) ran SqueezeNet's and Inception v1's 27x27 3x3 and 5x5
        layers 1.14 to 1.29x faster (start against start, Intel Xeon, AVX-512, paired rounds), the
        whole networks 1.06x and 1.11x (before and after in one run).
        The extra columns read zero padding and are dropped in the write-back. It depends on
        the shape alone (not on the CPU), so a key's space is the same everywhere.
        Kept: depthwise convolutions (their vectors run along the row); convolutions of fewer
        than 256 products per output, where the padded columns and the write-back's bounds
        check cost more than the wider tile saves; 1x1 convolutions of fewer than 256 outputs.
        Measured on SqueezeNet's 13x13 layers (per-kernel profiles, same run): its 3x3 layers
        ran 1.5 to 1.6x faster padded and the 1x512x13x13x1000 1x1 1.1 to 1.3x, while the 1x1
        layers to 64 outputs ran 1.2 to 1.8x slower and 1x64x13x13x256 1x1 2.2x slower.
        A batch of 7-wide maps (ResNet-18's last stage) is computed 8 wide, in tiles of 4 pixels
        by 16 channels: 16x512x7x7x512 3x3 ran 1.07x faster (shift and ternary 1.06 to 1.09x)
        than with one pixel by 64 channels, the best tile 7 allows (Zen 4, AVX2); one image keeps
        7 and the ``halves`` tile (the same speed), and stride 2 was no faster."""
        ow = self.ow
        if (self.groups > 1 and self.cg == 1) or self.cg * self.kh * self.kw < 256 or \
                (self.kh * self.kw == 1 and self.o < 256):
            return ow
        if ow == 7 and self.n > 1 and self.stride == 1:
            return 8
        if ow <= 7 or any(ow % d == 0 for d in range(4, 9)):
            return ow
        blocks = self.op // self.ob
        return max(range(ow + 1, ow + 4), key=lambda w: (_avx2_tile(self.oh, w, blocks, self.ob)[0] * ow / w, -w))

    @property
    def ogp(self) -> int:
        """Output channels per group the kernel computes: a grouped conv's ``O / G``, rounded up
        to a multiple of 8 where it is not one (ShuffleNet's 34 and 68), so vector blocks have
        8 lanes and not 2 or 4; on full-width AVX-512 (``wide_groups``) to a multiple of 16 where
        that adds at most a quarter (68 as 80, 136 as 144; 34 stays 40), blocks of one zmm:
        ShuffleNet's channels-last 1x1 layers in 4 groups of 68 and 136 ran 1.02 to 1.09x faster,
        the whole network 1.05x (untuned, interleaved rounds, Intel Xeon); the dense conv's ungrouped ``O`` (``fill_blocks``) rounded up to
        a multiple of 32, else of 16, where that adds at most one channel in 16 (a classifier's
        1000 as 1024), so blocks fill an AVX-512 vector (and two AVX2 ones) and pair up in the
        AVX-512 start's 32-channel tile: SqueezeNet's 1x512x13x13x1000 1x1 start ran 1.5x faster
        as 1008 than as 1000 on the Intel Xeon (Rocket Lake; 0.49x -> 0.75x onnxruntime, same
        run), and 1.12x faster again as 1024 (63 blocks of 16 pair with nothing; Emerald Rapids,
        start against start, paired rounds), 1.34x the 1008 record tuned on Rocket Lake.
        The extra channels have zero weights and are dropped in the write-back. Depthwise
        convolutions and the compressed ones (whose weight formats have no padded channels)
        keep theirs."""
        og = self.o // self.groups
        if self.groups == 1:
            if self.fill_blocks:
                for unit in (32, 16):
                    padded = -(-og // unit) * unit
                    if 16 * (padded - og) <= og:
                        return padded
            return og
        if self.cg == 1 or og < 8:
            return og
        sixteen = -(-og // 16) * 16
        if self.wide_groups and og % 16 and 4 * (sixteen - og) <= og:
            return sixteen
        return og if og % 8 == 0 else -(-og // 8) * 8

    @property
    def op(self) -> int:
        """Output channels the kernel computes (``groups * ogp``)."""
        return self.groups * self.ogp

    @property
    def flat(self) -> bool:
        """A pointwise convolution channels last (1x1, stride 1, no padding, one group) whose
        map starves the register tile computes its ``oh * ow`` pixels as one row, padded to a
        multiple of 8 (``gw``): on an NHWC map the pixels are consecutive, so a tile of 8 may
        cross rows. The extra pixels read the last one again; the ``crop`` drops them, in a
        pass of its own over the output that the epilogue joins. Flat where the 2-D tile holds
        at most 3 pixels (a prime side: 13x13 gives 1, 27x27 gives 3) and each output sums at
        least 48 products, or at most 5 pixels and 128 products, so the better tile pays for
        the pass. Start against start, paired rounds (Intel Xeon, AVX-512, crop included):
        SqueezeNet's and Inception v1's 13x13 1x1 layers ran 1.2 to 4.0x faster (1 pixel
        before), 1x512x13x13x1000 1.19x and 1x528x13x13x256 1.40x (5 pixels), 27x27 layers of 128
        to 256 inputs 0.88 to 1.27x (median 1.16x), while 55x55 layers of 16 and 64 inputs ran
        0.62 to 0.97x, 1x32x27x27x128 0.53x, and 3x3 and 5x5 layers flat 0.54 to 1.05x (not
        flattened). Only where ``flatten`` is set (the dense conv). On AVX2 also the small maps of
        :attr:`narrow_flat` (stride 2 included, a grid of a multiple of 6)."""
        return self.flat_unit > 0

    @property
    def flat_unit(self) -> int:
        """The flat grid's pixels are a multiple of this: 8 by the rule of :attr:`flat` (stride
        1), else 6 where :attr:`narrow_flat`; 0 where the grid is not flat."""
        if not (self.flatten and self.nhwc and self.groups == 1 and self.kh == self.kw == 1 and self.pad == 0
                and self.oh * self.ow > 8):
            return 0
        if self.stride == 1:
            pixels = _pixel_tile(self.oh, self.owp)[0]
            if (pixels <= 3 and self.cg >= 48) or (pixels <= 5 and self.cg >= 128):
                return 8
        if self.narrow and self.oh * self.ow <= NARROW_FLAT_MAX_PIXELS and self.cg >= NARROW_FLAT_MIN_INPUTS:
            _, _, h1, w1 = _avx2_tile(self.oh, self.ow, 1, self.ob)
            if h1 * w1 < 6:
                return 6
        return 0

    @property
    def narrow_flat(self) -> bool:
        """AVX2 (``narrow``): a pointwise conv of at least ``NARROW_FLAT_MIN_INPUTS`` inputs on a map
        of at most ``NARROW_FLAT_MAX_PIXELS`` output pixels whose AVX2 tile of one block holds fewer
        than 6 pixels (ResNet-50's 7x7 maps: 1 pixel by 2 ymm, or 7 by 1 in ``halves``; 14x14: 2 x 2)
        is flat too, stride 2 included, over a grid of a multiple of 6 pixels: the 6-pixel by
        2-ymm tile (12 accumulators, 8 loads per 12 FMAs) that AVX2 GEMMs use. Paired rounds
        against the shipped Zen 3 records (tuned, 2-D), single layers, crop included:
        1x2048x7x7x512 1.45x, 1x512x7x7x2048 1.32x, 1x1024x14x14x2048 stride 2 1.28x,
        1x1024x14x14x256 1.12x, 1x512x28x28x1024 stride 2 1.07x, 1x256x14x14x1024 1.04x,
        1x1024x14x14x512 1.02x; at batch 16, start against the 2-D start, 16x256x14x14x512 stride 2
        1.16x, 16x1024x14x14x256 1.13x, 16x512x7x7x2048 1.04x; a grid of a multiple of 8 (8 pixels by 2 ymm, 16 accumulators)
        spilled, 0.3 to 0.6x; 28x28 and 56x56 maps stride 1, which tile 4 pixels without the crop's pass,
        ran 0.86 to 0.97x flat. Set by the dense conv's task for AVX2 targets only: AVX-512
        tiles 7 pixels by 2 zmm on these maps already, and keeps its spaces and records. A map
        that the rule of :attr:`flat` takes keeps its grid of a multiple of 8."""
        return self.flat_unit == 6

    @property
    def gh(self) -> int:
        """Rows of the grid of pixels the kernel computes: ``oh``, or 1 where ``flat``."""
        return 1 if self.flat else self.oh

    @property
    def gw(self) -> int:
        """Pixels per row of the computed grid: ``owp``, or where ``flat`` all ``oh * ow``
        pixels rounded up to a multiple of 8 (of 6 where ``narrow_flat``)."""
        unit = self.flat_unit
        return -(-self.oh * self.ow // unit) * unit if unit else self.owp

    @property
    def padded(self) -> bool:
        """Whether the kernel computes more than the output (``owp`` or ``ogp``), or another
        grid of pixels (``flat``), which a ``crop`` stage then drops."""
        return self.owp > self.ow or self.op > self.o or self.flat

    @property
    def ob(self) -> int:
        """Output channels per vector block (fixed by the shape: it sets the weight layout); a
        block never spans two groups, since its lanes share each broadcast input."""
        og = self.ogp
        return largest_divisor(og, (16, 8), default=None) or largest_divisor(og, range(16, 0, -1))


#: :attr:`ConvShape.narrow_flat`: the largest output map (pixels) and the fewest input channels
NARROW_FLAT_MAX_PIXELS = 196
NARROW_FLAT_MIN_INPUTS = 256

#: ``parallel = rows`` (one image, one group): the parallel loop fuses n, h0, c0 in that order, so
#: the static split of its iterations gives each core a band of rows of pixels, every output
#: channel, where the other values (n, c0, h0 fused) give each core a share of the output channels
#: over every row. Across a graph, a core then reads the rows of the maps it wrote itself (a 1x1
#: conv exactly its own, a 3x3 one row more at each edge): where the activations outweigh the
#: weights, that keeps them in the core's own L2 instead of passing them through the other
#: core's. Each core reads every weight, so the start uses it only where the input and output
#: maps hold at least ``ROWS_MIN_ACTIVATION_RATIO`` times the weight's bytes, and only where the
#: start already fuses three loops (the same parallel iterations, reordered). Start against the
#: channel-chunk order, whole networks untuned, paired rounds, Intel Xeon (AVX-512): ResNet-50
#: 1.08 to 1.10x, DenseNet-121 1.06x, SqueezeNet 1.02 to 1.08x, Inception v1 1.02x, Inception v2
#: 0.97x; ResNet-50 at other ratios: 2, 1.03 to 1.06x; 8, 1.06x. With grouped convs split by
#: rows too, ShuffleNet NCHW ran 0.76x, so NCHW grouped convs keep the channel order; channels
#: last (its shuffles one kernel each) it ran 1.07x with them (15 interleaved rounds); chains
#: of ResNet-50's 1x1 convs at 28x28 (128 <-> 512 channels) went from 0.83x to 1.03x onnxruntime
#: (56x56: 0.63x to 0.83x), while at 7x7 (512 <-> 2048, 4 MiB of weights) rows ran 0.70x
PARALLEL_ROWS = "rows"
ROWS_MIN_ACTIVATION_RATIO = 4

#: where the image loop sits (a knob of batches only): ``outer``, each image's tiles in turn;
#: ``inner``, inside the output-channel chunks, so a chunk's weights (or a compressed weight
#: decoded per chunk) serve every image of the batch while they are in cache
BATCH_AT = ("outer", "inner")

#: a batch's start puts the image loop inside the channel chunks where each image has at most
#: this many output pixels: on VGG's 512-channel 2x2 and 4x4 maps at batch 16 (Zen 4, AVX2) that
#: ran 1.08 to 1.10x faster, on 8x8 and 7x7 maps 0.92 to 0.98x
BATCH_INNER_MAX_PIXELS = 16


def conv2d_space(shape: ConvShape, name: str = "conv2d-llvm") -> Space:
    knobs = (
        Split("tile_c", shape.op // shape.ob, 2),
        Split("tile_h", shape.gh, 2),
        Split("tile_w", shape.gw, 2),
        Split("tile_ic", shape.cg, 2),
        Choice("reduce_order", ("ic_outer", "ic_inner")),
        Choice("c1_at", ("outer", "inner", "halves")),
        Choice("ic_at", ("inside", "outside")),
        Choice("unroll", UNROLL, default=1),
        Choice("parallel", (1, 2, 3, 4) + ((PARALLEL_ROWS,) if _rows_apply(shape) else ()), default=2),
    ) + ((Choice("batch_at", BATCH_AT),) if shape.n > 1 else ())
    space = Space(name, knobs)
    return Space(name, knobs, start=heuristic_config(shape, space))


def _rows_apply(shape: ConvShape) -> bool:
    """Whether the space has ``parallel = rows``: one image, of one group or channels last."""
    return shape.n == 1 and (shape.groups == 1 or shape.nhwc)


def rows_first(shape: ConvShape) -> bool:
    """Whether the dense conv's start splits the cores by rows (``PARALLEL_ROWS``): one image,
    one group, and maps of at least ``ROWS_MIN_ACTIVATION_RATIO`` times the weight's bytes."""
    maps = shape.n * (shape.c * shape.h * shape.w + shape.o * shape.oh * shape.ow)
    weight = shape.o * shape.cg * shape.kh * shape.kw
    return _rows_apply(shape) and shape.fill_blocks and maps >= ROWS_MIN_ACTIVATION_RATIO * weight


def _divisors(n: int, most: int) -> list[int]:
    return [d for d in range(1, min(n, most) + 1) if n % d == 0]


#: AVX2, channels last: one block of channels (``c1 = 1``) by a tile of pixels wherever that tile
#: holds at least ``AVX2_ONE_BLOCK_MIN_ACCUMULATORS`` vector accumulators, though more blocks
#: would load less per FMA. Several blocks inside the pixel tile (12 ymm accumulators, 2 weight
#: vectors and a broadcast: all 16 registers) made LLVM spill: SqueezeNet's flat 13x13 1x1
#: layers ran 4 to 5x slower (1x384x13x13x48: 0.195 ms with 3 blocks by 2 pixels, 0.038 ms with
#: one block by 4; 1x48x13x13x192: 0.108 against 0.021 ms; 1x32x27x27x128 1.2x). Whole networks
#: untuned, compiled for Zen 3 (``-mcpu=znver3``) and run on a Zen 4, interleaved: SqueezeNet
#: 1.09x, ShuffleNet 1.04x, ResNet-50 1.06x, Inception v1 1.43x, DenseNet-121 1.14x; ResNet-18's,
#: ResNet-20's and VGG's 3x3 layers keep their tiles
AVX2_ONE_BLOCK = True
AVX2_ONE_BLOCK_MIN_ACCUMULATORS = 6


def register_tile(shape: ConvShape) -> tuple[int, int, int]:
    """(c1, h1, w1) of the start config for the current ISA (:mod:`.isa`).

    AVX2 (16 ymm): the tile with at most 12 vector accumulators that does the most FMAs per
    load (pixels are broadcast, weights loaded as vectors); channels last, one block of channels
    where its pixel tile has enough accumulators (``AVX2_ONE_BLOCK``). AVX-512 (32 zmm): 32
    channels (two zmm of weights, c1 = 32 / ob blocks, 2 where ob is 8) by up to 8 pixels of a
    row (h1 x w1, w1 as long as the row allows): on Zen 5 this ran ResNet-18's 3x3 layers 2.1 to 4.1x faster than the AVX2
    tile, at onnxruntime's speed (benchmarks/heuristics.py). Channels last, 64 channels by 4
    pixels where the channels and the map allow (:func:`_quad_tile`): on Zen 4 (double-pumped
    AVX-512) at any batch, on a full-width AVX-512 core (Intel Xeon) for one image; there, a
    dense 1x1 conv of one image on a 7-wide map takes 64 channels by 7 pixels (:func:`_seven_row_tile`)."""
    from .isa import current

    blocks = shape.op // shape.ob
    isa = current()
    lanes = isa.lanes
    if QUAD_TILES and lanes >= 16 and (isa.double_pumped or shape.n == 1) and shape.nhwc and shape.ob == lanes \
            and blocks % 4 == 0:
        quad = _quad_tile(shape.gh, shape.gw)
        if quad is not None:
            return (4,) + quad
    if _seven_row_tile(shape, isa):
        return 4, 1, 7
    if lanes >= 16:
        # two registers of channels: a block narrower than a register (ob = 8, a grouped conv's
        # 40 or 72 channels per group) still fills one, so 32 // ob blocks would be 4 registers
        # by 8 pixels, 32 accumulators: ShuffleNet's 1x136x28x28 1x1 (4 groups) ran 1.44x
        # faster with 2 blocks than with 4 (1x272x14x14: 1.09x; start against start, paired)
        c1 = max(_divisors(blocks, max(1, 32 // max(shape.ob, lanes))))
        _, w1, h1 = _pixel_tile(shape.gh, shape.gw)
        return c1, h1, w1
    if shape.nhwc and AVX2_ONE_BLOCK:
        _, c1, h1, w1 = _avx2_tile(shape.gh, shape.gw, 1, shape.ob)
        if h1 * w1 * max(1, shape.ob // lanes) >= AVX2_ONE_BLOCK_MIN_ACCUMULATORS:
            return c1, h1, w1
    return _avx2_tile(shape.gh, shape.gw, blocks, shape.ob)[1:]


#: the AVX-512 start tiles of 64 channels by 4 pixels (:func:`_quad_tile`); benchmarks/conv_tiles.py
#: turns them off to time whole networks with and without them
QUAD_TILES = True


#: the full-width AVX-512 start tile of 64 channels by a row of 7 pixels for the dense 1x1 convs
#: of one image on 7-wide maps (:func:`_seven_row_tile`); off: their 32-channel start, to time both
SEVEN_ROW_TILES = True


def _seven_row_tile(shape: ConvShape, isa) -> bool:
    """Whether a dense pointwise conv of one image on a 7-wide map (ResNet-50's last stage,
    DenseNet-121's and the Inceptions' 7x7 blocks) starts with 4 zmm of weights (64 channels) by
    a row of 7 pixels, 28 accumulators, its input channels inside each tile (``ic_at = inside``),
    on a full-width AVX-512 core; the parallel loop is the start's (the channel chunks alone
    where there are 4 or more, as on ResNet-50's: ``parallel = 2``).
    7 has no tile of 4 pixels (:func:`_quad_tile`), and the 32-channel by 7-pixel tile loads 2
    weight vectors per 14 FMAs. Ice Lake Xeon, whole networks untuned, tiles on against off in
    alternating per-kernel profiles (11 to 15 rounds): ResNet-50's 1x2048x7x7x512 1.10 to 1.11x
    (it ran at 0.82x onnxruntime per call), its 1x512x7x7x2048 0.99x; DenseNet-121's 15 1x1
    layers of 544 to 992 inputs 1.04 to 1.09x, the one of 512 0.98x; whole networks 0.999x (ResNet-50), 0.990x
    (DenseNet-121) and 1.017x (Inception v2), within their noise (benchmarks/conv_tiles.py
    --tiles seven, 21 interleaved rounds; the kernels are a few percent of each network), so
    what it buys is per kernel. Alone, ResNet-50's two ran 1.08 to
    1.13x faster (ic blocks of 32 to 256 alike). An odd number of 64-channel chunks is left out:
    Inception v2's 1x1024x7x7x192 (3 chunks on 2 cores) ran 0.96x, and with the pixel rows in
    the parallel loop too (``parallel = 3``) 0.89x, ResNet-50's 1x2048x7x7x512 then 0.93x.
    The same tile on the 3x3 layers of those maps ran 0.49x (spills); the compressed convs
    (``fill_blocks`` unset) decode their weights in registers too, so both keep theirs. Zen 4
    (double-pumped) was not measured with it."""
    return (SEVEN_ROW_TILES and isa.lanes >= 16 and not isa.double_pumped and shape.n == 1 and shape.nhwc
            and shape.groups == 1 and shape.fill_blocks and shape.kh == shape.kw == 1 and shape.stride == 1
            and shape.gw == 7 and shape.ob == isa.lanes and (shape.op // shape.ob) % 8 == 0)


def _quad_tile(oh: int, ow: int) -> tuple[int, int] | None:
    """(h1, w1) of four pixels, 2 x 2 first, then 1 x 4 and 4 x 1; None where the sides allow none.

    Zen 4 (``VectorISA.double_pumped``) starts with 4 zmm of weights (64 channels) by these 4
    pixels where the output channels fill whole groups of 4 blocks of 16: the same 16 accumulators
    as 2 by 8, but 8 loads per 16 FMAs in place of 10. Start against start, 5 interleaved rounds
    on the Zen 4 (single layers, channels last): ResNet-18's 16x64x56x56x64 3x3 1.06x (shift 1.06x,
    ternary 1.03x), the stride-2 16x64x56x56x128 1.14x (shift 1.13x) and 1x64x56x56x128 1.07x,
    ResNet-50's 1x1 layers at 28x28 and 14x14 1.04x; 0.99 to 1.01x on the other layers of
    ResNet-18 and ResNet-50 (3x3 at 28x28 and 14x14, the 7x7 stem, 1x1 at 56x56), which were at
    95 to 98% of the FMA peak already (230 GFLOPS on both cores); 32 channels by 2 x 4 or
    4 x 2 pixels ran 0.76 to 1.05x. Channels last only (what networks run where they can): an
    NCHW output takes the tile's pixels as rows of 2, and 16x128x28x28x128 3x3 ran 0.96x there.
    Whole networks untuned, tiles on against off (benchmarks/conv_tiles.py, BENCHMARKS.md):
    1.00 to 1.06x on 12 of 13 (ResNet-18 at batch 16 1.036x, its shift build 1.061x, ResNet-50
    1.058x), VGG's ternary build at batch 16 0.989x; geometric mean 1.023x.
    On a full-width AVX-512 core (Ice Lake Xeon) they pay for one image: ResNet-50's 1x1 layers
    ran at 0.72 to 0.89x onnxruntime's per call (per-kernel profiles of both) and 1.10 to 1.28x
    faster with these tiles in the model (alternating profiles; 3x3 layers and the stem 1.00 to
    1.15x); whole networks untuned, 9 interleaved rounds: ResNet-50 1.09x, DenseNet-121 1.05x,
    ShuffleNet 1.09x, ResNet-18 1.02x, VGG 1.04x, its ternary build 1.04x, the others 1.00 to
    1.02x (AlexNet 0.97x, and 1.005x in 21 alternating profiles, no kernel below 0.99x).
    Batches keep 32 channels by 8 pixels there: at batch 16 VGG ran 0.86x, ResNet-20 0.92x and
    ResNet-18 0.98x with these tiles."""
    for h1, w1 in ((2, 2), (1, 4), (4, 1)):
        if oh % h1 == 0 and ow % w1 == 0:
            return h1, w1
    return None


def _pixel_tile(oh: int, ow: int) -> tuple[int, int, int]:
    """(pixels, w1, h1): the AVX-512 start's tile of at most 8 pixels, h1 x w1 (divisors of the
    sides), the most pixels and then the widest."""
    return max((h1 * w1, w1, h1) for h1 in _divisors(oh, 8) for w1 in _divisors(ow, 8) if h1 * w1 <= 8)


def _avx2_tile(oh: int, ow: int, blocks: int, ob: int) -> tuple[float, int, int, int]:
    """(FMAs per load, c1, h1, w1): the AVX2 register tile of :func:`register_tile` for an
    ``oh x ow`` output of ``blocks`` blocks of ``ob`` channels."""
    vectors = max(1, ob // 8)
    best = (0.0, 0, 0, 1, 1, 1)
    for c1 in _divisors(blocks, 12):
        for h1 in _divisors(oh, 12):
            for w1 in _divisors(ow, 12):
                fmas = h1 * w1 * c1 * vectors
                if fmas > 12:
                    continue
                best = max(best, (fmas / (h1 * w1 + c1 * vectors), fmas, w1, h1, c1 and -c1, c1))
    score, _, w1, h1, _, c1 = best
    return score, c1, h1, w1


#: the weight bytes an AVX2 start keeps in L1 when all of a chunk's pixels reuse them (32 KiB L1
#: on Zen 3 and Zen 4, 48 KiB on Zen 5 and recent Xeons; the rest for inputs and accumulators)
L1_WEIGHT_BYTES = 20 * 1024


def heuristic_config(shape: ConvShape, space: Space) -> Config:
    """The untuned default (what a rule would pick): the register tile of
    :func:`register_tile` (``h1 x w1`` pixels by ``c1`` blocks of ``ob`` channels); everything
    else in the parallel outer loops; input channels in blocks of up to 64.

    The kernel window inside each input channel of the block (``ic_inner``: the window's taps
    are the unrolled innermost reduction): on a Zen 4 with AVX-512 hidden (AVX2 code) it ran
    ResNet-18's layers 1.2 to 2.6x faster than ``ic_outer`` (1x256x14x14 3x3: 0.38x to 1.0x
    onnxruntime); on an Intel Xeon (rocketlake, AVX-512) ResNet-18's 3x3 layers went from 0.78-0.93x
    to 0.95-1.16x onnxruntime, 16x128x28x28 from 0.84x to 1.06x (same runs). AVX-512 starts had
    ``ic_outer`` from the first conv space on; Zen 5 has not been measured with ``ic_inner``."""
    from .isa import current

    lanes = current().lanes
    avx2 = lanes < 16
    blocks = shape.op // shape.ob
    c1, h1, w1 = register_tile(shape)
    halves = False
    if avx2 and h1 * w1 == 1 and shape.ob == 2 * lanes and shape.n == 1:
        # no pixel tile fits two vectors (a 7x7 output: 7 x 2 ymm accumulators spill); one
        # vector per half block over a row of pixels instead: 1x512x7x7 3x3 went from 0.76-0.79x
        # to 0.89-0.95x onnxruntime, same runs (the tile of one pixel by 8 vectors reads 8
        # weight vectors per input); one image only: at batch 16 it ran 0.82x the 8-vector
        # tile (each chunk's 16 channels of weights stream again for every image)
        rows = [(h * w, w, h) for h in _divisors(shape.gh, 12) for w in _divisors(shape.gw, 12) if 4 <= h * w <= 12]
        if rows:
            _, w1, h1 = max(rows)
            c1, halves = 1, True
    ic1 = max(_divisors(shape.cg, 64))
    # a small output (deep layers): accumulate a whole channel block's output in cache with the
    # input-channel blocks outermost, so each block of weights is read once, not once per tile
    small = shape.gh * shape.gw * c1 * shape.ob * 4 <= 32 * 1024 and blocks // c1 >= 4
    if small and avx2:
        # every pixel of the chunk reuses the block's weights: keep them in L1 (AVX2 cores load
        # one ymm a cycle from L2, half the FMA rate): 1x512x7x7 3x3 went from 0.46x to 0.91x
        # onnxruntime with 8 input channels (18 KiB of weights) in place of 64 (147 KiB)
        per_channel = c1 * shape.ob * shape.kh * shape.kw * 4
        ic1 = max([1] + [d for d in _divisors(shape.cg, 64) if d * per_channel <= L1_WEIGHT_BYTES])
    # a flat grid has one row: its tiles of pixels join the parallel loop too
    parallel = 4 if shape.flat else 2 if small else PARALLEL_ROWS if rows_first(shape) else 3
    config = ((blocks // c1, c1), (shape.gh // h1, h1), (shape.gw // w1, w1), (shape.cg // ic1, ic1),
              "ic_inner", "halves" if halves else "inner" if c1 > 1 else "outer",
              "outside" if small and not _seven_row_tile(shape, current()) else "inside", 16, parallel)
    if shape.n > 1:
        config += ("inner" if shape.gh * shape.gw <= BATCH_INNER_MAX_PIXELS else "outer",)
    return config if space.contains(config) else space.initial()


def apply_conv2d(sch, block, shape: ConvShape, space: Space, config: Config, epilogue=(), threads: int = 0) -> list:
    """Schedule the convolution ``block`` of ``sch`` in place. ``epilogue``: the elementwise
    blocks that consume it (fused by Relax), inlined into the write-back of the accumulator.
    ``threads``: split the parallel loop into that many iterations, one per thread (the block's
    outermost loop then), for work placed once per thread. Returns the epilogue blocks that
    could not be inlined (left for the default schedule)."""
    from tvmopt.errors import ConfigError

    if not space.contains(config):
        raise ConfigError(f"config {config} is not in the space {space.name}")
    knob = space.as_dict(config)
    (c0, c1), (h0, h1), (w0, w1), (i0, i1) = knob["tile_c"], knob["tile_h"], knob["tile_w"], knob["tile_ic"]
    halves = knob["c1_at"] == "halves" and shape.ob % 2 == 0     # an odd block: as "outer"

    local = sch.cache_write(block, 0, "local")
    # output channels innermost in the accumulator, so the ob-wide vectors stay in registers
    # (NHWC: they are already)
    if not shape.nhwc:
        sch.transform_layout(block, ("write", 0), lambda n, o, y, x: (n, y, x, o))
    # a padded shape (ConvShape.padded): the first epilogue block crops it (``crop``, XNOR's
    # ``xnor_out``); the rest goes into it, and a width crop into the write-back once that is in
    # place, where inlining can still bound the write-back by the output's width
    crop = epilogue[0] if epilogue and shape.padded else None
    leftover = inline_epilogue(sch, epilogue[1:] if crop else epilogue)   # what cannot be inlined: the caller's
    if shape.nhwc:
        n, y, x, o, ic, r, s = sch.get_loops(block)
    else:
        n, o, y, x, ic, r, s = sch.get_loops(block)
    oc = sch.split(o, factors=[c0, c1, shape.ob])
    # halves: each block of ob channels as two register tiles of ob/2 lanes, one after the other
    # over the whole window (7 pixels x 8 lanes on AVX2, where 7 x 16 would spill)
    half, lanes = sch.split(oc[2], factors=[2, shape.ob // 2]) if halves else (None, oc[2])
    hh = sch.split(y, factors=[h0, h1])
    ww = sch.split(x, factors=[w0, w1])
    ii = sch.split(ic, factors=[i0, i1])
    window = [r, s, ii[1]] if knob["reduce_order"] == "ic_outer" else [ii[1], r, s]
    inner = ([oc[1]] if knob["c1_at"] == "inner" else []) + [hh[1], ww[1], lanes]
    if knob["parallel"] == PARALLEL_ROWS:             # bands of rows per core, every channel
        spatial, fused_loops = [n, hh[0], oc[0], ww[0]], 3
    else:
        spatial = [oc[0], n, hh[0], ww[0]] if knob.get("batch_at") == "inner" else [n, oc[0], hh[0], ww[0]]
        fused_loops = knob["parallel"]
    parallel, rest = spatial[:fused_loops], spatial[fused_loops:]
    rest += [oc[1]] if knob["c1_at"] != "inner" else []
    if knob["ic_at"] == "inside":     # each tile reduces over all input channels in turn
        middle = rest + [ii[0]]
    else:                             # input-channel blocks right inside the parallel loop: one
        middle = [ii[0]] + rest       # block of weights stays in cache for all the chunk's tiles
    sch.reorder(*parallel, *middle, *([half] if halves else []), *window, *inner)
    fused = sch.fuse(*parallel) if len(parallel) > 1 else parallel[0]
    if threads:
        # an exact split (a divisor of the extent): a predicated last iteration would still place
        # the per-thread work, over a region past the end of the loop
        extent = int(sch.get(fused).extent)
        threads = largest_divisor(extent, range(min(threads, extent), 0, -1))
        per_thread, fused = sch.split(fused, [threads, extent // threads])
        sch.parallel(per_thread)
    else:
        sch.parallel(fused)
    at = fused if knob["ic_at"] == "outside" or len(middle) == 1 else middle[-2]
    sch.reverse_compute_at(local, at)
    inlined = crop is not None and shape.op == shape.o and not shape.flat
    if inlined:
        sch.reverse_compute_inline(crop)             # the write-back gets `x < ow`
    elif crop is not None:       # padded groups (the crop's channel map is not affine) or a flat
        _parallel_rows(sch, crop, shape.o // shape.groups if shape.nhwc and shape.groups > 1 else 0)
    # the write-back's x loop (NHWC: its channels, over which an inlined crop's `x < ow` is uniform)
    if shape.ob > 1 and (shape.nhwc or not inlined) and int(sch.get(sch.get_loops(local)[-1]).extent) % 4 == 0:
        sch.vectorize(sch.get_loops(local)[-1])
    if knob["unroll"]:
        sch.annotate(middle[-1], "pragma_auto_unroll_max_step", knob["unroll"])
        sch.annotate(middle[-1], "pragma_unroll_explicit", 1)
    if knob["reduce_order"] != "ic_outer" and shape.kh * shape.kw <= WINDOW_UNROLL_MAX:
        # the kernel window right above the register tile, unrolled here rather than left to
        # LLVM, which stopped unrolling the rows of a 3x3 window (48 FMAs per loop, not 144)
        # once the tile lived in registers: 0.81 to 0.95x on ResNet-18's and VGG's 3x3 layers
        # and the 7x7 stem, where unrolled they ran 1.00 to 1.29x the old code
        for loop, extent in ((r, shape.kh), (s, shape.kw)):
            if extent > 1:
                sch.unroll(loop)
    if shape.ob > 1:
        sch.vectorize(lanes)
    init = sch.decompose_reduction(block, ii[0])
    unroll_tile(sch, init, local)
    _schedule_pad(sch, block, i1 if shape.nhwc else 0)
    return leftover


#: kernel windows up to this many taps (7x7) are unrolled in the loop nest
WINDOW_UNROLL_MAX = 49


def _parallel_rows(sch, block, group: int = 0) -> None:
    """An elementwise pass over NCHW: (n, c) planes in parallel, the row vectorized (NHWC: (n, y)
    rows in parallel, the channels vectorized). ``group``: an NHWC crop of padded groups, whose
    channels are vectorized a group at a time (``group`` channels read from one place): over
    all channels the read's channel map is not affine, and each lane was a gather."""
    loops = sch.get_loops(block)
    sch.parallel(sch.fuse(*loops[:2]))
    inner = loops[-1]
    if group:
        inner = sch.split(inner, [None, group])[1]
    sch.vectorize(inner)


def _schedule_pad(sch, block, channel_block: int = 0, vector_widths: tuple[int, ...] = ()) -> None:
    """The zero-padding stage of the input, if any: in parallel over (n, c) planes (NHWC: over
    (n, y) rows). ``channel_block``: an NHWC input's padded copy is stored in blocks of that
    many channels, ``[N, C/i1, H, W, i1]``, where the kernel reads one block at a time. Read in
    place, the taps of a row of pixels lie C floats apart, a power of two that puts them all in
    one or two L1 sets: 1x512x7x7x512 3x3 ran 0.43x its NCHW self, and 1.08x with the blocks.
    ``vector_widths``: the innermost loop (NHWC: the channels) in vectors of the first of these
    widths that divides it (none: left to LLVM)."""
    for producer in sch.get_producers(block):
        if sch.get(producer).name_hint.startswith("pad"):
            if channel_block:
                sch.transform_layout(producer, ("write", 0),
                                     lambda n, y, x, c: (n, c // channel_block, y, x, c % channel_block))
            loops = sch.get_loops(producer)
            sch.parallel(sch.fuse(*loops[:2]))
            extent = int(sch.get(loops[-1]).extent)
            width = next((w for w in vector_widths if extent % w == 0), 0)
            if width:
                sch.vectorize(sch.split(loops[-1], [None, width])[1])
