"""The LLVM schedule space of the byte-counting XNOR conv (``xnor8_conv2d_nhwc:``,
tvmopt/ops/xnor8_conv2d.py) and ``apply_xnor8_conv2d``.

The kernel's stages: ``part[n, y, x, o, chunk]``, uint8 mismatch counts of one chunk of input
bytes over the kernel window (at most ``MAX_STEPS`` byte steps, so a count cannot pass 255),
and ``conv[n, y, x, o]``, their sum over the chunks in uint16 (int32 where the layer could
count past 65,535). The loop nest, outermost first, a register tile of ``h1 x w1`` pixels by
``c1`` blocks of ``ob`` output channels (one vector of bytes each):

    [n h0 c0]p | w0 | chunk | (part: j | r s unrolled | h1 w1 c1 ob) | h1 w1 c1 ob (widen and add)

    ^ the first ``parallel`` loops fused and run in parallel; the write-back (with the fused
      epilogue) after the chunk loop, once per tile

Knobs: ``tile_c`` (blocks of output channels: c0 x c1), ``tile_h``, ``tile_w`` (h0 x h1,
w0 x w1), ``parallel`` (2: n and h0 fused, each core a band of rows, c0 inside; 3: n, h0 and c0
fused).
"""

from __future__ import annotations

import functools
import operator

from .conv2d import ConvShape, _divisors
from .gemm import inline_epilogue, unroll_tile
from .space import Choice, Config, Space, Split

#: byte steps one uint8 count may take: each adds at most 8 mismatches, 31 x 8 = 248 <= 255
MAX_STEPS = 255 // 8


def applies(shape: ConvShape) -> bool:
    """Whether the pass gives the layer this kernel: channels last, output channels in whole
    ymm blocks of 32, and a kernel window of at most ``MAX_STEPS`` taps. (The task also takes
    blocks of 16, half a register: on ResNet-20's 16-channel layers those ran 0.80x the word
    kernel, Zen 3, batch 1 and 16.)"""
    return shape.nhwc and shape.groups == 1 and shape.o % 32 == 0 and shape.kh * shape.kw <= MAX_STEPS


def block(shape: ConvShape) -> int:
    """Output channels per vector of bytes: 32 (a ymm register) where they come in 32s, else 16."""
    return 32 if shape.o % 32 == 0 else 16


def chunk(shape: ConvShape) -> int:
    """Input bytes (8 channels each) per uint8 count: the most, dividing the layer's bytes,
    whose steps over the window stay within ``MAX_STEPS`` (3x3: 2 or 3, 1x1: up to 31)."""
    return max(_divisors(-(-shape.c // 8), MAX_STEPS // (shape.kh * shape.kw)))


def count_dtype(shape: ConvShape) -> str:
    """The chunks' sum: uint16 (half the registers of int32: 1.18x on 1x64x56x56x64, Zen 3)
    wherever ``C * KH * KW`` fits it."""
    return "uint16" if shape.c * shape.kh * shape.kw <= 0xFFFF else "int32"


def xnor8_space(shape: ConvShape, name: str = "xnor8_conv2d-llvm") -> Space:
    knobs = (
        Split("tile_c", shape.o // block(shape), 2),
        Split("tile_h", shape.oh, 2),
        Split("tile_w", shape.ow, 2),
        Choice("parallel", (2, 3), default=1),
    )
    space = Space(name, knobs)
    return Space(name, knobs, start=heuristic_config(shape, space))


def heuristic_config(shape: ConvShape, space: Space) -> Config:
    """Two pixels by two blocks (64 channels) where the row and the channels split so, else a
    row of up to 8 pixels by one block. On a Zen 3, start against the word kernel's start
    (``xnor_conv2d_nhwc:``): 1x64x56x56x64 1.18 to 1.29x, 1x128x28x28x128 1.23x,
    1x256x14x14x256 1.27x; 1x512x7x7x512 1.23x with 7 pixels by one block, 0.88x with one by two.
    A column (the dense view, 2048 rows of 768 -> 3072): 4 rows by 2 blocks 1.54x one by one,
    2 by 2 1.30x, 8 by 1 1.40x."""
    blocks = shape.o // block(shape)
    h1 = 1
    if shape.ow == 1:             # a column of pixels (``xnor8_dense``'s rows): 4 rows by 2 blocks
        c1, w1, h1 = (2 if blocks % 2 == 0 else 1), 1, max(_divisors(shape.oh, 4))
    elif blocks % 2 == 0 and shape.ow % 2 == 0:
        c1, w1 = 2, 2
    else:
        c1, w1 = 1, max(_divisors(shape.ow, 8))
    config = space.replaced(space.initial(), {"tile_c": (blocks // c1, c1), "tile_h": (shape.oh // h1, h1),
                                              "tile_w": (shape.ow // w1, w1), "parallel": 3})
    return config if space.contains(config) else space.initial()


def apply_xnor8_conv2d(sch, block_rv, shape: ConvShape, space: Space, config: Config, epilogue=()) -> list:
    """Schedule the ``conv`` block (the chunks' sum) of ``sch`` in place, with its ``part``
    producer and the packing stage; ``epilogue`` (``xnor_out`` first, then what Relax fused)
    inlined into the write-back. Returns the epilogue blocks that could not be inlined."""
    from tvmopt.errors import ConfigError

    if not space.contains(config):
        raise ConfigError(f"config {config} is not in the space {space.name}")
    knob = space.as_dict(config)
    (c0, c1), (h0, h1), (w0, w1) = knob["tile_c"], knob["tile_h"], knob["tile_w"]
    ob = block(shape)
    part = next(b for b in sch.get_producers(block_rv) if sch.get(b).name_hint.startswith("part"))
    pack = next(b for b in sch.get_producers(part) if sch.get(b).name_hint.startswith("XBits"))

    local = sch.cache_write(block_rv, 0, "local")
    leftover = inline_epilogue(sch, epilogue)
    n, y, x, o, ch = sch.get_loops(block_rv)
    hh = sch.split(y, factors=[h0, h1])
    ww = sch.split(x, factors=[w0, w1])
    oc = sch.split(o, factors=[c0, c1, ob])
    outer = [n, hh[0], oc[0], ww[0]]
    sch.reorder(*outer, ch, hh[1], ww[1], oc[1], oc[2])
    fused = sch.fuse(*outer[:knob["parallel"]])
    sch.parallel(fused)
    sch.reverse_compute_at(local, ww[0])
    sch.vectorize(sch.get_loops(local)[-1])
    sch.vectorize(oc[2])
    for loop in (hh[1], ww[1], oc[1]):
        sch.unroll(loop)
    init = sch.decompose_reduction(block_rv, ch)
    unroll_tile(sch, init, local)

    # the chunk's uint8 counts: the window's steps outside the register tile, the tile unrolled
    sch.compute_at(part, ch)
    # compute_at leaves no loop of one iteration: which of h1, w1 (the tile) and j, r, s (the
    # chunk's bytes, the window) the part's inner loops are follows from the extents
    spatial = [h1 > 1, w1 > 1, True]
    steps = [chunk(shape) > 1, shape.kh > 1, shape.kw > 1]
    loops = sch.get_loops(part)[-(sum(spatial) + sum(steps)):]
    tile, window = loops[:sum(spatial)], loops[sum(spatial):]
    lanes_c1, lanes = sch.split(tile[-1], factors=[c1, ob])
    sch.reorder(*window, *tile[:-1], lanes_c1, lanes)
    for loop in window[1:] if steps[0] else window:      # the chunk's bytes stay a loop
        sch.unroll(loop)
    for loop in (*tile[:-1], lanes_c1):
        sch.unroll(loop)
    sch.vectorize(lanes)
    if window:                  # else one step (a 1x1 conv of one byte): no loop to lift the init above
        unroll_tile(sch, sch.decompose_reduction(part, window[0]))

    n, cb, y, _ = sch.get_loops(pack)                # [N, bytes, HP, WP]: rows of bytes in parallel
    sch.parallel(sch.fuse(n, cb, y))
    schedule_signs(sch, pack)                       # whole bytes: one vmovmskps each, rows in parallel
    return leftover


def schedule_signs(sch, pack) -> None:
    """The ``XB0`` stage under ``pack`` (:func:`signs_pack_stage`), if there is one: rows in
    parallel, each word one tensor intrinsic."""
    signs = [b for b in sch.get_producers(pack) if sch.get(b).name_hint.startswith("XB0")]
    if signs:
        n, y, x, cw, j = sch.get_loops(signs[0])
        sch.parallel(sch.fuse(n, y))
        sch.decompose_reduction(signs[0], j)
        sch.tensorize(j, pack_signs_intrinsic(int(sch.get(j).extent)))


def pack_signs_intrinsic(word: int) -> str:
    """Register (once) and name the tensor intrinsic of one ``word``-bit word of signs (8, 16, 32
    or 64 channels): the description is the ``XB0`` stage's word, a sum over its channels of
    ``x >= 0 ? 1 << j : 0``; the implementation compares 8 floats at a time as one vector (to an
    all-ones mask per lane, read as -1.0 or 0.0) and takes their sign bits (``vcmpps`` +
    ``vmovmskps``: bit j is channel j >= 0, -0.0 too), each byte shifted into place."""
    import tvm
    from tvm.script import tirx as T

    name = f"tvmopt_pack_signs_{word}"
    if tvm.s_tir.TensorIntrin.get(name, allow_missing=True) is not None:
        return name
    dtype = f"uint{word}"

    @T.prim_func(s_tir=True)
    def desc(x: T.Buffer((word,), "float32", offset_factor=1), b: T.Buffer((1,), dtype, offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(b[0], x[0:word])
            T.writes(b[0])
            for j in T.serial(0, word):
                with T.sblock("update"):
                    vj = T.axis.remap("R", [j])
                    b[0] = b[0] + T.Select(T.float32(0) <= x[vj], T.shift_left(T.Cast(dtype, 1), T.Cast(dtype, vj)),
                                           T.Cast(dtype, 0))

    def byte(x, at: int):
        mask = T.Select(T.broadcast(T.float32(0), 8) <= x.vload([at], "float32x8"), T.broadcast(T.float32(-1), 8),
                        T.broadcast(T.float32(0), 8))
        bits = T.Cast(dtype, T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.x86.avx.movmsk.ps.256"), mask,
                                                     dtype="int32"))
        return bits if at == 0 else T.shift_left(bits, T.Cast(dtype, at))

    @T.prim_func(s_tir=True)
    def impl(x: T.Buffer((word,), "float32", offset_factor=1), b: T.Buffer((1,), dtype, offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(b[0], x[0:word])
            T.writes(b[0])
            b[0] = b[0] + functools.reduce(operator.or_, [byte(x, at) for at in range(0, word, 8)])

    tvm.s_tir.TensorIntrin.register(name, desc, impl)
    return name
