"""The LLVM schedule spaces of depthwise 2-D convolution (one input channel per group): NCHW in
and out (``depthwise_space``, ``apply_depthwise``, below) and channels last
(``depthwise_nhwc_space``, ``apply_depthwise_nhwc``, at the end).

Each output channel reads one input plane, so there is no channel reduction to block: the
kernel is a stencil. The vector runs along the output row (contiguous in NCHW; a stride-2 layer
reads every other input), each weight tap is one broadcast, and a register tile of ``h1`` rows
by ``w1`` pixels accumulates the ``KH x KW`` taps unrolled. Loop nest (outermost first):

    [n o h0]p | w0 | ic (extent 1) kh kw (unrolled) | h1 w1 (w1 vectorized)

Knobs: ``tile_h`` and ``tile_w`` (2-level splits), ``unroll`` (the taps), ``parallel`` (how
many of n, o, h0 are fused and run in parallel). The accumulator is a local buffer written
back once, with the fused epilogue (folded batch norm, bias, ReLU, a residual add) inlined.
Before this space ShuffleNet's depthwise layers got the default schedule of a Relax
convolution (parallel outer loops, the reduction innermost).
"""

from __future__ import annotations

from .conv2d import _divisors, _schedule_pad
from .gemm import UNROLL, inline_epilogue, unroll_tile
from .space import Choice, Config, Space, Split


def depthwise_space(shape, name: str = "depthwise_conv2d-llvm") -> Space:
    """``shape``: a ``ConvShape`` (``o`` output channels, ``o / c`` per input channel)."""
    knobs = (
        Split("tile_h", shape.oh, 2),
        Split("tile_w", shape.ow, 2),
        Choice("unroll", UNROLL, default=1),
        Choice("parallel", (1, 2, 3), default=2),
    )
    space = Space(name, knobs)
    return Space(name, knobs, start=heuristic_config(shape, space))


def heuristic_config(shape, space: Space) -> Config:
    """A whole output row per vector tile where it is at most 64 pixels (else the longest
    divisor that is), up to 4 rows of it (at most 8 vectors of accumulators); parallel over
    images and channels, and over row tiles too when there are few planes. Strided windows:
    one pixel at a time, the taps unrolled."""
    from .isa import current

    parallel = 2 if shape.n * shape.o >= 16 else 3
    if shape.stride > 1:
        # a strided window's row vector gathers every other input: one output pixel at a time
        # with the taps unrolled instead (no gathers; AVX2 not measured). ShuffleNet's
        # 1x112x56x56 3x3/2 ran 2.3x faster (0.19 -> 0.08 ms), 1x136x28x28 1.1x; start against
        # start, paired rounds, on the Xeon (Emerald Rapids)
        config = ((shape.oh, 1), (shape.ow, 1), 64, parallel)
        if space.contains(config):
            return config
    lanes = current().lanes
    w1 = max(_divisors(shape.ow, 64))
    vectors = -(-w1 // lanes)
    h1 = max(d for d in _divisors(shape.oh, 4) if d * vectors <= 8) if vectors <= 8 else 1
    config = ((shape.oh // h1, h1), (shape.ow // w1, w1), 0, parallel)
    return config if space.contains(config) else space.initial()


def apply_depthwise(sch, block, space: Space, config: Config, epilogue=()) -> list:
    """Schedule the depthwise ``block`` of ``sch`` in place; ``epilogue``: the elementwise
    blocks after it, inlined into the write-back where they can be. Returns those left over."""
    from tvmopt.errors import ConfigError

    if not space.contains(config):
        raise ConfigError(f"config {config} is not in the space {space.name}")
    knob = space.as_dict(config)
    (h0, h1), (w0, w1) = knob["tile_h"], knob["tile_w"]
    local = sch.cache_write(block, 0, "local")
    leftover = inline_epilogue(sch, epilogue)
    n, o, y, x, ic, r, q = sch.get_loops(block)        # ic: the group's one input channel
    hh = sch.split(y, factors=[h0, h1])
    ww = sch.split(x, factors=[w0, w1])
    spatial = [n, o, hh[0]]
    parallel, rest = spatial[: knob["parallel"]], spatial[knob["parallel"]:]
    sch.reorder(*parallel, *rest, ww[0], ic, r, q, hh[1], ww[1])
    fused = sch.fuse(*parallel) if len(parallel) > 1 else parallel[0]
    sch.parallel(fused)
    sch.reverse_compute_at(local, ww[0])
    if w1 > 1:          # the write-back's own row loop (with w1 = 1 the last loop is ww[0], shared)
        sch.vectorize(sch.get_loops(local)[-1])
    _unroll_window(sch, ww[0], knob["unroll"], (r, q, hh[1]))
    sch.vectorize(ww[1])
    init = sch.decompose_reduction(block, ic)
    unroll_tile(sch, init, local)
    _schedule_pad(sch, block)
    return leftover


def _unroll_window(sch, at, unroll: int, loops) -> None:
    """The ``unroll`` knob: TVM's auto-unroll of up to that many steps under ``at``, or (0) each
    of ``loops`` (the window's taps and the register tile's own loop) unrolled whole."""
    if unroll:
        sch.annotate(at, "pragma_auto_unroll_max_step", unroll)
        sch.annotate(at, "pragma_unroll_explicit", 1)
    else:
        for loop in loops:
            sch.unroll(loop)


#: the vector accumulators of the channels-last start's register tile (pixels x channel vectors),
#: by vector registers: the rest hold a weight vector per channel vector and an input
NHWC_START_ACCUMULATORS = {16: 8, 32: 16}


def depthwise_nhwc_space(shape, name: str = "depthwise_conv2d_nhwc-llvm") -> Space:
    """Channels last (``depthwise_conv2d_nhwc``): each tap of the window is one vector load of
    channels per pixel (contiguous in NHWC, whatever the stride) and one of weights, shared by
    the pixels of the tile. Loop nest (outermost first):

        [n oh]p | c0 | w0 | kh kw (unrolled) | w1 (unrolled) c1 (vectorized)

    Knobs: ``tile_c`` (channels per register tile, c1, in vectors), ``tile_w`` (pixels per
    tile, w1), ``unroll`` (the taps and the tile's pixels), ``parallel`` (rows of output, 2:
    with the images; 3: with the channel chunks too), ``pad`` (``PAD_PLACES``)."""
    knobs = (
        Split("tile_c", shape.c, 2),
        Split("tile_w", shape.ow, 2),
        Choice("unroll", UNROLL, default=1),
        Choice("parallel", (2, 3), default=0),
        Choice("pad", PAD_PLACES, default=0),
    )
    space = Space(name, knobs)
    return Space(name, knobs, start=heuristic_nhwc_config(shape, space))


#: where the zero padding happens: ``copy`` writes a padded copy of the input first (in
#: parallel rows, channels as vectors); ``inline`` reads the input in place, each tap checking
#: its pixel against the border
PAD_PLACES = ("copy", "inline")


def heuristic_nhwc_config(shape, space: Space) -> Config:
    """The most channels per tile of 1, 2 or 4 vectors (8 lanes where the ISA's vector does not
    divide C), the padding read in place (``inline``); then the most pixels (a divisor of the
    output width) within ``NHWC_START_ACCUMULATORS``; taps unrolled; rows in parallel, the
    channel chunks too where there are fewer rows than 8 per core. Channels that no vector
    divides: up to 16 a tile, the padding copied.

    Start against start, Zen 4, interleaved: reading the padding in place ran MobileNet-style
    layers 1.3 to 2.1x faster than the padded copy (1x64x112x112 stride 2: 0.074 against 0.036 ms;
    1x160x28x28: 1.8x; 1x960x7x7: 1.3x), but 7x slower on tiles of 3 vectors (48 channels),
    which LLVM left scalar; 32 channels (2 vectors) by 4 pixels, in place, ran 1x96x56x56 in
    0.029 ms against 0.061 with 48 channels copied, 1x480x14x14 0.021 against 0.040 ms."""
    from .isa import current

    isa = current()
    lanes = isa.lanes if shape.c % isa.lanes == 0 else 8 if shape.c % 8 == 0 else 1
    budget = NHWC_START_ACCUMULATORS[32 if isa.registers >= 32 else 16]
    if lanes > 1:
        c1 = max(v * lanes for v in (1, 2, 4) if shape.c % (v * lanes) == 0)
        pad = "inline"
    else:
        c1, pad = max(_divisors(shape.c, 16)), "copy"
    vectors = c1 // lanes
    w1 = max(d for d in _divisors(shape.ow, 8) if d * vectors <= max(budget, vectors))
    parallel = 3 if shape.n * shape.oh < 16 else 2
    config = ((shape.c // c1, c1), (shape.ow // w1, w1), 0, parallel, pad)
    return config if space.contains(config) else space.initial()


def apply_depthwise_nhwc(sch, block, space: Space, config: Config, epilogue=()) -> list:
    """Schedule the channels-last depthwise ``block`` (loops n, y, x, c, kh, kw) in place;
    ``epilogue``: the elementwise blocks after it, inlined into the write-back where they can
    be. Returns those left over."""
    from tvmopt.errors import ConfigError

    if not space.contains(config):
        raise ConfigError(f"config {config} is not in the space {space.name}")
    knob = space.as_dict(config)
    (c0, c1), (w0, w1) = knob["tile_c"], knob["tile_w"]
    pads = [p for p in sch.get_producers(block) if sch.get(p).name_hint.startswith("pad")]
    if knob["pad"] == "inline":
        for pad in pads:
            sch.compute_inline(pad)
    local = sch.cache_write(block, 0, "local")
    leftover = inline_epilogue(sch, epilogue)
    n, y, x, c, r, q = sch.get_loops(block)
    cc = sch.split(c, factors=[c0, c1])
    ww = sch.split(x, factors=[w0, w1])
    spatial = [n, y, cc[0]]
    parallel, rest = spatial[: knob["parallel"]], spatial[knob["parallel"]:]
    sch.reorder(*parallel, *rest, ww[0], r, q, ww[1], cc[1])
    sch.parallel(sch.fuse(*parallel))
    sch.reverse_compute_at(local, ww[0])
    _unroll_window(sch, ww[0], knob["unroll"], (r, q, ww[1]))
    sch.vectorize(cc[1])
    loops = sch.get_loops(local)
    if c1 > 1:
        sch.vectorize(loops[-1])
    init = sch.decompose_reduction(block, r)
    unroll_tile(sch, init, local)
    if knob["pad"] == "copy":
        _schedule_pad(sch, block, vector_widths=(16, 8))
    return leftover
