"""Binarized convolutions (XNOR-Net, BNN): ±1 weights on binarized activations, as XNOR +
popcount over 64 input channels at a time (8, 16 or 32 in layers of up to that many
channels), directly (no im2col).

Key: ``xnor_conv2d:NxCxHxWxOxKHxKWxSxP`` (the ``conv2d:`` dimensions), NCHW in and out, and
``xnor_conv2d_nhwc:`` channels last (the graph's layout where every conv has an NHWC kernel:
:mod:`tvmopt.passes.layout`; its write-back stores whole vectors of channels, where NCHW's
scatters each vector across channel planes). The input is the
activation *before* binarization: the kernel packs ``x >= 0`` of 64 channels into one word, a
prologue stage that also pads: ``XBits[N, ceil(C/64), HP, WP]``, zero words around the image.
Then for each output

    acc[n, o, y, x] = sum over (r, q) and words cw of popcount(XBits[..] ^ Wb[o, cw, r, q])
    Y = C * (in-image taps) - 2 * (acc - Wc[border class of y, of x, o])

(mismatching signs, counted in int32; padded channel bits are 0 in both words and never
mismatch). Zero padding is what the exported graph does (it binarizes, *then* pads with 0): a tap
outside the image contributes 0. The kernel's loop reads the zero words there without a bounds
check, which counts the weight's set bits of each such tap as mismatches; the write-back takes
them back out with one vector load per pixel from ``Wc``, a constant of a few rows: for each
border class of rows and of columns (the first rows whose window starts above the image, the
last ones whose window ends below it, one class for all rows between, and the same for
columns), the set bits of the taps outside the image (0 for the interior). Only the in-image
taps count in ``C * taps``. The result is exact: integers, converted to float once.
The per-channel α (XNOR-Net's scale, a folded batch norm), bias and activation run in the
write-back like the dense conv's epilogue.

The weight is ``Wb[O/ob, ceil(C/64), KH, KW, ob]`` uint64 (bit ``c % 64`` of word ``c // 64`` is
``w > 0``), so a block of ``ob`` output channels is one run of vectors of words: with AVX-512
VPOPCNTDQ one ``vpopcntq`` counts 8 x 64 products; on AVX2 LLVM counts bits with byte shuffles
and one ``vpsadbw`` per 4 words (32-bit words needed five more shuffles per vector to widen the
byte counts). Builds for AVX2 run channels-last layers on :mod:`.xnor8_conv2d` instead,
which sums the byte counts over taps before widening them. The schedule space is the dense
conv's (``schedules/conv2d.py``) with input *words* in place of input channels.

Measured on a Zen 4 with AVX-512 hidden (AVX2 code), start configs against the previous
kernel's (32-bit words, a bounds check on every tap, the border counted with it) in the same
run, medians of 5 rounds: ResNet-18's 3x3 layers 1.24x (1x64x56x56) to 1.95x (1x512x7x7) faster
at batch 1, 1.0 to 1.56x at batch 16; its strided 1x1 layers about the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import WorkloadError
from ..schedules.conv2d import ConvShape, apply_conv2d, conv2d_space
from ..schedules.space import Config, Space
from .conv2d import input_shape, output_shape, reference_in_layout
from .registry import OpFamily, TaskKind, register_family
from .task import TASK_ANNOTATION, Task, check_sizes

WORD = 64
#: words the packing stage computes per vector (one row of ``XBits`` is a whole number of them)
PACK_LANES = 8


def word_bits(channels: int) -> int:
    """Bits per word for a layer of ``channels`` input channels: 64, or the smallest of 8, 16
    and 32 that holds them (a wider word would count its padding bits: ResNet-20's 16- and
    32-channel layers). 16-bit words ran ResNet-20's 16-channel layers 1.28 to 1.35x faster
    than 32-bit ones (AVX2: 16 counts per popcount of one vector instead of 8)."""
    return next((bits for bits in (8, 16, 32) if channels <= bits), WORD)


def pack_weight(signs: np.ndarray, ob: int, word: int = WORD) -> np.ndarray:
    """±1 (or any sign) weight [O, C, KH, KW] -> words [O/ob, ceil(C/word), KH, KW, ob], unsigned
    integers of ``word`` bits (8, 16, 32 or 64)."""
    o, c, kh, kw = signs.shape
    dtype = np.dtype(f"uint{word}").type
    words = -(-c // word)
    bits = np.zeros((o, words * word, kh, kw), dtype)
    bits[:, :c] = signs > 0
    shifts = np.arange(word, dtype=dtype)[None, None, :, None, None]
    packed = np.bitwise_or.reduce(bits.reshape(o, words, word, kh, kw) << shifts, axis=2)   # [O, words, KH, KW]
    return np.ascontiguousarray(packed.reshape(o // ob, ob, words, kh, kw).transpose(0, 2, 3, 4, 1))


def unpack_weight(packed: np.ndarray, c: int) -> np.ndarray:
    """The inverse of :func:`pack_weight`: ±1 float32 [O, C, KH, KW]."""
    oo, words, kh, kw, ob = packed.shape
    word = packed.dtype.itemsize * 8
    w = packed.transpose(0, 4, 1, 2, 3).reshape(oo * ob, words, 1, kh, kw)
    bits = (w >> np.arange(word, dtype=packed.dtype)[None, None, :, None, None]) & packed.dtype.type(1)
    return np.where(bits.reshape(oo * ob, words * word, kh, kw)[:, :c] == 1, 1.0, -1.0).astype(np.float32)


def tap_counts(packed: np.ndarray) -> np.ndarray:
    """Set bits of each output channel's tap over all its words: int32 [KH, KW, O] (what a zero
    word of padding mismatches; :class:`XnorConv2dTask` subtracts it at the border; channels
    last, so a vector of channels in the write-back is one load)."""
    oo, words, kh, kw, ob = packed.shape
    as_bytes = np.ascontiguousarray(packed.transpose(2, 3, 0, 4, 1)).view(np.uint8)   # [KH, KW, O/ob, ob, words*8]
    return np.unpackbits(as_bytes, axis=-1).sum(axis=-1, dtype=np.int32).reshape(kh, kw, oo * ob)


def border_classes(out: int, k: int, extent: int, stride: int, pad: int) -> tuple[int, int, int]:
    """(first, last, classes) along one axis of the output: positions below ``first`` and from
    ``last`` on have taps outside the image, each a class of its own; the positions between are
    one class (index ``first``). With no such interior every position is its own class."""
    first = next((y for y in range(out) if y * stride - pad >= 0), out)
    last = next((y for y in range(out) if y * stride - pad + k > extent), out)
    if first >= last:                            # no interior: one class per position
        return out, out, out
    return first, last, first + 1 + out - last


def _positions(out: int, k: int, extent: int, stride: int, pad: int) -> list[int]:
    """A representative output position of each class of :func:`border_classes`."""
    first, last, _ = border_classes(out, k, extent, stride, pad)
    return list(range(out)) if first == out else list(range(first)) + [first] + list(range(last, out))


def border_table(counts: np.ndarray, shape: ConvShape) -> np.ndarray:
    """int32 [classes of rows, classes of columns, O]: for each border class of output
    positions, the set bits of the taps that fall outside the image (``counts``: the
    [KH, KW, O] of :func:`tap_counts`). The kernel reads zero words there and counts these as
    mismatches; the write-back subtracts them, one vector load per pixel (0 inside)."""
    s = shape
    rows = _positions(s.oh, s.kh, s.h, s.stride, s.pad)
    cols = _positions(s.ow, s.kw, s.w, s.stride, s.pad)
    table = np.zeros((len(rows), len(cols), counts.shape[-1]), np.int32)
    for a, y in enumerate(rows):
        out_r = [(y * s.stride + r - s.pad) not in range(s.h) for r in range(s.kh)]
        for b, x in enumerate(cols):
            out_q = [(x * s.stride + q - s.pad) not in range(s.w) for q in range(s.kw)]
            mask = np.logical_or.outer(out_r, out_q)                  # [KH, KW]: tap outside the image
            table[a, b] = counts[mask].sum(axis=0)
    return table


def border_placeholder(s: ConvShape):
    """The ``Wc`` input: int32 [classes of rows, classes of columns, O] (:func:`border_table`)."""
    from tvm import te

    rows = border_classes(s.oh, s.kh, s.h, s.stride, s.pad)[2]
    cols = border_classes(s.ow, s.kw, s.w, s.stride, s.pad)[2]
    return te.placeholder((rows, cols, s.o), "int32", name="wborder")


def pack_stage(X, s: ConvShape, word: int, extent: tuple[int, int], read=None):
    """``XBits[N, ceil(C/word), HP, WP]``: bit j of a word is x[channel word * cw + j] >= 0
    (``read(n, channel, y, x)``: X's element, by default in the shape's layout),
    zero outside the image (an expression of ``word`` terms, so the stage is elementwise and
    vectorizes along the row). A 64-bit word is built as two 32-bit halves: 32-bit lanes match
    the float compares' (as 64-bit selects, each compare's mask was widened first: 1.2x slower on
    1x64x56x56)."""
    import tvm
    from tvm import te

    tir = tvm.tirx
    c, h, w, p = s.c, s.h, s.w, s.pad
    dtype = f"uint{word}"
    if read is None:
        read = (lambda i, ch, y, xi: X[i, y, xi, ch]) if s.nhwc else (lambda i, ch, y, xi: X[i, ch, y, xi])

    def pack(i, cw, yy, xx):
        y, xi = yy - p, xx - p
        inside = tir.all(y >= 0, y < h, xi >= 0, xi < w)
        y, xi = tir.max(tir.min(y, h - 1), 0), tir.max(tir.min(xi, w - 1), 0)
        piece = min(word, 32)
        pieces = []
        for part in range(word // piece):
            bits = tir.const(0, f"uint{piece}")
            for j in range(piece):
                ch = cw * word + part * piece + j
                on = tir.all(inside, ch < c, read(i, tir.min(ch, c - 1), y, xi) >= 0.0)
                bits = bits | tir.Select(on, tir.const(1 << j, f"uint{piece}"), tir.const(0, f"uint{piece}"))
            pieces.append(bits.astype(dtype))
        return pieces[0] if len(pieces) == 1 else pieces[0] | (pieces[1] << tir.const(32, dtype))

    return te.compute((s.n, -(-c // word)) + tuple(extent), pack, name="XBits")


def whole_sign_words(s: ConvShape, word: int) -> bool:
    """Whether :func:`signs_pack_stage` packs ``s``'s input with the tensor intrinsic: channels
    last, in whole words."""
    return s.nhwc and s.c % word == 0


def signs_pack_stage(X, s: ConvShape, word: int, extent: tuple[int, int], read=None):
    """``XBits[N, ceil(C/word), HP, WP]`` as :func:`pack_stage` makes it; where the channels fill
    whole words of a channels-last input, in two stages: ``XB0[N, H, W, C/word]``, each word a sum
    over its ``word`` channels that a schedule runs as a tensor intrinsic of ``vcmpps`` +
    ``vmovmskps``, 8 channels at a time (``schedules/xnor8_conv2d.py``, :func:`pack_signs_intrinsic`),
    then the zero padding around it. Channels-first inputs keep :func:`pack_stage` (vectorized
    along the row). The packing stage of 1x64x56x56 (bytes) took 0.076 ms as one expression of 8
    selects (30% of the kernel), 0.024 ms so (Zen 3). With 64-bit words on an Ice Lake Xeon
    (AVX-512; channels last, where the old stage was not vectorized at all) the whole kernel
    ``xnor_conv2d_nhwc:1x64x8x8x64x3x3x1x1`` went from 24 to 5.1 us (the dense conv: 24.7 us), and
    ResNet-20 with binarized activations from 3.05x to 9.4x onnxruntime."""
    import tvm
    from tvm import te

    if not whole_sign_words(s, word):
        return pack_stage(X, s, word, extent, read)
    tir = tvm.tirx
    dtype = f"uint{word}"
    if read is None:
        read = lambda i, ch, y, xi: X[i, y, xi, ch]  # noqa: E731
    j = te.reduce_axis((0, word), name="j")
    one, zero = tir.const(1, dtype), tir.const(0, dtype)
    signs = te.compute((s.n, s.h, s.w, s.c // word), lambda i, y, xi, cw: te.sum(
        tir.Select(read(i, cw * word + j, y, xi) >= 0.0, one << j.astype(dtype), zero), axis=j), name="XB0")

    def pad(i, cw, yy, xx):
        y, xi = yy - s.pad, xx - s.pad
        inside = tir.all(y >= 0, y < s.h, xi >= 0, xi < s.w)
        return tir.Select(inside, signs[i, tir.max(tir.min(y, s.h - 1), 0), tir.max(tir.min(xi, s.w - 1), 0), cw], zero)

    return te.compute((s.n, s.c // word) + tuple(extent), pad, name="XBits")


def output_stage(s: ConvShape, at, Wc):
    """``xnor_out``: ``C * (in-image taps) - 2 * (mismatches - Wc[border class])`` as float32,
    ``at(i, o, y, x)`` reading the mismatch counts (any integer type)."""
    import tvm
    from tvm import te

    tir = tvm.tirx
    c, h, w, p, st = s.c, s.h, s.w, s.pad, s.stride
    row_cls = border_classes(s.oh, s.kh, h, st, p)
    col_cls = border_classes(s.ow, s.kw, w, st, p)

    def taps(pos, k, extent):
        """In-image taps of a window starting at pos * stride - pad."""
        start = pos * st - p
        return tir.min(k, extent - start) - tir.max(0, -start)

    def cls(pos, classes):
        """The border class of an output position (:func:`border_classes`)."""
        first, last, count = classes
        if first == count:                       # no interior: one class per position
            return pos
        return tir.Select(pos < first, pos, tir.Select(pos >= last, pos - last + first + 1, first))

    def out(i, o, y, xx):
        return (c * taps(y, s.kh, h) * taps(xx, s.kw, w)
                - 2 * (at(i, o, y, xx).astype("int32") - Wc[cls(y, row_cls), cls(xx, col_cls), o])).astype("float32")

    return te.compute(output_shape(s), (lambda i, y, xx, o: out(i, o, y, xx)) if s.nhwc else out, name="xnor_out")


@dataclass
class XnorConv2dTask(Task):
    key: str
    shape: ConvShape

    def __post_init__(self):
        s = self.shape
        if s.oh < 1 or s.ow < 1:
            raise WorkloadError(f"{self.key}: the kernel is larger than the padded input")
        self.word = word_bits(s.c)
        self.words = -(-s.c // self.word)
        # the space tiles input *words*: the conv's loop nest with C/word reduction steps
        self.loop_shape = ConvShape(s.n, self.words, s.h, s.w, s.o, s.kh, s.kw, s.stride, s.pad, layout=s.layout)
        space = conv2d_space(self.loop_shape, name="xnor_conv2d-llvm")
        self.space = Space(space.name, space.knobs, start=self._start(space))
        self.flops = 2.0 * s.n * s.o * s.oh * s.ow * s.c * s.kh * s.kw      # dense-equivalent

    def _start(self, space: Space) -> Config:
        """The dense conv's start with another register tile: one pixel by two blocks of
        output channels (32 lanes of counts). The dense conv's tile of up to 12 fp32 vectors is
        up to 24 vectors of words here, plus the popcount's temporaries: on ResNet-18's 3x3
        layers (Zen 4, AVX2) one pixel by 32 channels ran 1.1 to 1.3x faster than it, and was
        the fastest tile or within 5% of it on every layer. A layer of one block (16 output
        channels) keeps the dense conv's tile of several pixels: one pixel by 16 channels ran
        0.72x it on 1x16x32x32x16 NCHW (each pixel's write-back scatters across 16 planes)."""
        s = self.loop_shape
        blocks = s.op // s.ob
        if blocks % 2:
            return space.initial()
        config = space.replaced(space.initial(), {"tile_c": (blocks // 2, 2), "tile_h": (s.oh, 1),
                                                  "tile_w": (s.owp, 1), "c1_at": "inner"})
        return config if space.contains(config) else space.initial()

    def to_kernel(self, arrays):
        """The layer's [O, C, KH, KW] weight (its signs count) -> packed words, border table."""
        packed = pack_weight(arrays[0], self.shape.ob, self.word)
        return [packed, border_table(tap_counts(packed), self.shape)]

    def make_inputs(self, rng):
        s = self.shape
        x = rng.uniform(-1, 1, size=input_shape(s)).astype(np.float32)
        return [x] + self.to_kernel([rng.choice([-1.0, 1.0], size=(s.o, s.c, s.kh, s.kw))])

    def reference(self, inputs):
        x, packed = inputs[:2]
        s = self.shape
        return reference_in_layout(s, np.where(x >= 0, 1.0, -1.0).astype(np.float32), unpack_weight(packed, s.c))

    def tolerance(self):
        return 0.0, 0.0            # integers: exact

    @property
    def padded_extent(self) -> tuple[int, int]:
        """(HP, WP) of ``XBits``: the image with its padding, and what the padded output width
        (``ConvShape.owp``) reads beyond it, the width rounded up to whole vectors of the
        packing stage (a 58-wide row vectorized as one 58-lane vector made the stage of
        1x64x56x56 about a third of the kernel's time)."""
        s = self.loop_shape
        wp = max(s.w + 2 * s.pad, (s.owp - 1) * s.stride + s.kw)
        return max(s.h + 2 * s.pad, (s.oh - 1) * s.stride + s.kh), -(-wp // PACK_LANES) * PACK_LANES

    def compute(self, x=None):
        """TE: (X, Wb, Wc, Y); stages ``XBits`` (packing and padding), ``conv`` (int32
        mismatches), ``xnor_out``."""
        import tvm
        from tvm import te

        s, words = self.shape, self.words
        st = s.stride
        X = x if x is not None else te.placeholder(input_shape(s), "float32", name="X")
        Wb = te.placeholder((s.o // s.ob, words, s.kh, s.kw, s.ob), f"uint{self.word}", name="wwords")
        Wc = border_placeholder(s)
        bits = signs_pack_stage(X, s, self.word, self.padded_extent)
        cw = te.reduce_axis((0, words), name="cw")
        r = te.reduce_axis((0, s.kh), name="r")
        q = te.reduce_axis((0, s.kw), name="q")

        def mismatches(i, o, y, xx):
            word = bits[i, cw, y * st + r, xx * st + q]
            return te.sum(tvm.tirx.popcount(word ^ Wb[o // s.ob, cw, r, q, o % s.ob]).astype("int32"), axis=[cw, r, q])

        # over the padded width of the space (schedules/conv2d.py, ConvShape.owp): xnor_out crops
        # it; the space's shape is the loop shape over words, whose width is the one scheduled
        owp = self.loop_shape.owp
        if s.nhwc:
            acc = te.compute((s.n, s.oh, owp, s.o), lambda i, y, xx, o: mismatches(i, o, y, xx), name="conv",
                             attrs={TASK_ANNOTATION: self.key})
            at = lambda i, o, y, xx: acc[i, y, xx, o]  # noqa: E731
        else:
            acc = te.compute((s.n, s.o, s.oh, owp), mismatches, name="conv", attrs={TASK_ANNOTATION: self.key})
            at = lambda i, o, y, xx: acc[i, o, y, xx]  # noqa: E731
        return X, Wb, Wc, output_stage(s, at, Wc)

    def schedule(self, config: Config, target):
        import tvm
        from tvm import te

        func = te.create_prim_func(list(self.compute())).with_attr("global_symbol", "main")
        sch = tvm.s_tir.Schedule(tvm.IRModule({"main": func}))
        self.apply(sch, sch.get_sblock("conv"), config, [sch.get_sblock("xnor_out")])
        return sch.mod

    fuses_epilogue = True

    @property
    def tensorized(self) -> bool:
        """Whether the packing stage runs a tensor intrinsic (:func:`signs_pack_stage`: channels
        last, whole words), written with int32 indices: the pass narrows a fused function first."""
        return whole_sign_words(self.shape, self.word)

    def apply(self, sch, block, config: Config | None, epilogue=()) -> list:
        """The dense conv's schedule over words, ``xnor_out`` (first of the epilogue) inlined into
        the write-back with the rest; the packing stage in parallel over (n, word, row), its row
        vectorized."""
        config = self.space.initial() if config is None else config
        pack = next(b for b in sch.get_producers(block) if sch.get(b).name_hint.startswith("XBits"))
        leftover = apply_conv2d(sch, block, self.loop_shape, self.space, config, epilogue)
        n, cw, y, x = sch.get_loops(pack)
        sch.parallel(sch.fuse(n, cw, y))
        if not self.shape.nhwc:
            sch.vectorize(sch.split(x, factors=[None, PACK_LANES])[1])
        from ..schedules.xnor8_conv2d import schedule_signs

        schedule_signs(sch, pack)
        return leftover


def _kind(layout: str = "NCHW") -> TaskKind:
    nhwc = layout == "NHWC"
    prefix = "xnor_conv2d" + ("_nhwc" if nhwc else "")

    def factory(key: str, dims: tuple[int, ...]) -> XnorConv2dTask:
        if len(dims) != 9:
            raise WorkloadError(f"workload '{key}' needs 9 dimensions ({prefix}:NxCxHxWxOxKHxKWxSxP)")
        n, c, h, w, o = dims[:5]
        check_sizes(key, {"X": n * c * h * w, "Y": n * o * h * w})
        return XnorConv2dTask(key, ConvShape(*dims, layout=layout))

    return TaskKind(factory, "NxCxHxWxOxKHxKWxSxP", zero_ok=(8,),
                    summary="direct conv2d of binarized inputs and ±1 weights (XNOR + popcount)"
                            + (", NHWC in and out" if nhwc else ""))


FAMILY = register_family(OpFamily(
    "xnor_conv2d", "binarized convolutions: XNOR + popcount over 64 channels per word, direct",
    tasks={"xnor_conv2d": _kind(), "xnor_conv2d_nhwc": _kind("NHWC")},
    schedules="tvmopt.schedules.conv2d"))
