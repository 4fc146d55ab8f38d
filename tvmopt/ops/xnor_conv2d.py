"""Binarized convolutions (XNOR-Net, BNN): ±1 weights on binarized activations, as XNOR +
popcount over 32 input channels at a time, directly (NCHW in and out, no im2col).

Key: ``xnor_conv2d:NxCxHxWxOxKHxKWxSxP`` (the ``conv2d:`` dimensions). The input is the
activation *before* binarization: the kernel packs ``x >= 0`` of 32 channels into one word
(``XBits[N, ceil(C/32), H, W]``, a prologue stage), then for each output

    acc[n, o, y, x] = sum over in-image (r, q) and words cw of popcount(XBits[..] ^ Wb[o, cw, r, q])
    Y = C * (in-image taps) - 2 * acc

(mismatching signs, counted in int32; padded channel bits are 0 in both words and never
mismatch). Zero padding is what the exported graph does (it binarizes, *then* pads with 0): a tap
outside the image contributes 0, so it is left out of the sum and of the tap count. The result
is exact: integers, converted to float once. The per-channel α (XNOR-Net's scale, a folded batch
norm), bias and activation run in the write-back like the dense conv's epilogue.

The weight is ``Wb[O/ob, ceil(C/32), KH, KW, ob]`` uint32 (bit ``c % 32`` of word ``c // 32`` is
``w > 0``), so a block of ``ob`` output channels is one vector of words: with AVX-512 VPOPCNTDQ
one ``vpopcntd`` counts 16 x 32 products; on AVX2 LLVM counts bits with byte shuffles. The
schedule space is the dense conv's (``schedules/conv2d.py``) with input *words* in place of
input channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import WorkloadError
from ..schedules.conv2d import ConvShape, apply_conv2d, conv2d_space
from ..schedules.space import Config
from .conv2d import conv2d_reference
from .registry import OpFamily, TaskKind, register_family
from .task import TASK_ANNOTATION, Task, check_sizes

WORD = 32


def pack_weight(signs: np.ndarray, ob: int) -> np.ndarray:
    """±1 (or any sign) weight [O, C, KH, KW] -> uint32 words [O/ob, ceil(C/32), KH, KW, ob]."""
    o, c, kh, kw = signs.shape
    words = -(-c // WORD)
    bits = np.zeros((o, words * WORD, kh, kw), np.uint64)
    bits[:, :c] = signs > 0
    shifts = (np.arange(WORD, dtype=np.uint64) % WORD)[None, None, :, None, None]
    packed = (bits.reshape(o, words, WORD, kh, kw) << shifts).sum(axis=2).astype(np.uint32)   # [O, words, KH, KW]
    return np.ascontiguousarray(packed.reshape(o // ob, ob, words, kh, kw).transpose(0, 2, 3, 4, 1))


def unpack_weight(packed: np.ndarray, c: int) -> np.ndarray:
    """The inverse of :func:`pack_weight`: ±1 float32 [O, C, KH, KW]."""
    oo, words, kh, kw, ob = packed.shape
    w = packed.transpose(0, 4, 1, 2, 3).reshape(oo * ob, words, 1, kh, kw).astype(np.uint64)
    bits = (w >> np.arange(WORD, dtype=np.uint64)[None, None, :, None, None]) & 1
    return np.where(bits.reshape(oo * ob, words * WORD, kh, kw)[:, :c] == 1, 1.0, -1.0).astype(np.float32)


@dataclass
class XnorConv2dTask(Task):
    key: str
    shape: ConvShape

    def __post_init__(self):
        s = self.shape
        if s.oh < 1 or s.ow < 1:
            raise WorkloadError(f"{self.key}: the kernel is larger than the padded input")
        self.words = -(-s.c // WORD)
        # the space tiles input *words*: the conv's loop nest with C/32 reduction steps
        self.loop_shape = ConvShape(s.n, self.words, s.h, s.w, s.o, s.kh, s.kw, s.stride, s.pad)
        self.space = conv2d_space(self.loop_shape, name="xnor_conv2d-llvm")
        self.flops = 2.0 * s.n * s.o * s.oh * s.ow * s.c * s.kh * s.kw      # dense-equivalent

    def to_kernel(self, arrays):
        """The layer's [O, C, KH, KW] weight (its signs count) -> packed words."""
        return [pack_weight(arrays[0], self.shape.ob)]

    def make_inputs(self, rng):
        s = self.shape
        x = rng.uniform(-1, 1, size=(s.n, s.c, s.h, s.w)).astype(np.float32)
        return [x, pack_weight(rng.choice([-1.0, 1.0], size=(s.o, s.c, s.kh, s.kw)), s.ob)]

    def reference(self, inputs):
        x, packed = inputs
        s = self.shape
        return conv2d_reference(np.where(x >= 0, 1.0, -1.0).astype(np.float32), unpack_weight(packed, s.c),
                                s.stride, s.pad)

    def tolerance(self):
        return 0.0, 0.0            # integers: exact

    def compute(self, x=None):
        """TE: (X, Wb, Y); stages ``XBits`` (packing), ``conv`` (int32 mismatches), ``xnor_out``."""
        import tvm
        from tvm import te

        s, words = self.shape, self.words
        c, h, w, p, st = s.c, s.h, s.w, s.pad, s.stride
        X = x if x is not None else te.placeholder((s.n, c, h, w), "float32", name="X")
        Wb = te.placeholder((s.o // s.ob, words, s.kh, s.kw, s.ob), "uint32", name="wwords")

        def pack(i, cw, y, xx):
            """One word: bit j is x[channel 32 cw + j] >= 0 (an expression of 32 terms, so the
            stage is elementwise and vectorizes along the row)."""
            word = tvm.tirx.const(0, "uint32")
            for j in range(WORD):
                ch = cw * WORD + j
                on = tvm.tirx.all(ch < c, X[i, tvm.tirx.min(ch, c - 1), y, xx] >= 0.0)
                word = word | tvm.tirx.Select(on, tvm.tirx.const(1 << j, "uint32"), tvm.tirx.const(0, "uint32"))
            return word

        bits = te.compute((s.n, words, h, w), pack, name="XBits")
        cw = te.reduce_axis((0, words), name="cw")
        r = te.reduce_axis((0, s.kh), name="r")
        q = te.reduce_axis((0, s.kw), name="q")

        def mismatches(i, o, y, xx):
            hy, wx = y * st + r - p, xx * st + q - p
            inside = tvm.tirx.all(hy >= 0, hy < h, wx >= 0, wx < w)
            word = bits[i, cw, tvm.tirx.max(tvm.tirx.min(hy, h - 1), 0), tvm.tirx.max(tvm.tirx.min(wx, w - 1), 0)]
            count = tvm.tirx.popcount(word ^ Wb[o // s.ob, cw, r, q, o % s.ob]).astype("int32")
            return te.sum(tvm.tirx.Select(inside, count, tvm.tirx.const(0, "int32")), axis=[cw, r, q])

        # over the padded width of the space (schedules/conv2d.py, ConvShape.owp): xnor_out crops it
        acc = te.compute((s.n, s.o, s.oh, s.owp), mismatches, name="conv", attrs={TASK_ANNOTATION: self.key})

        def taps(pos, k, extent):
            """In-image taps of a window starting at pos * stride - pad."""
            start = pos * st - p
            return tvm.tirx.min(k, extent - start) - tvm.tirx.max(0, -start)

        Y = te.compute((s.n, s.o, s.oh, s.ow),
                       lambda i, o, y, xx: (c * taps(y, s.kh, h) * taps(xx, s.kw, w) - 2 * acc[i, o, y, xx]).astype("float32"),
                       name="xnor_out")
        return X, Wb, Y

    def schedule(self, config: Config, target):
        import tvm
        from tvm import te

        func = te.create_prim_func(list(self.compute())).with_attr("global_symbol", "main")
        sch = tvm.s_tir.Schedule(tvm.IRModule({"main": func}))
        self.apply(sch, sch.get_sblock("conv"), config, [sch.get_sblock("xnor_out")])
        return sch.mod

    fuses_epilogue = True

    def apply(self, sch, block, config: Config | None, epilogue=()) -> list:
        """The dense conv's schedule over words, ``xnor_out`` (first of the epilogue) inlined into
        the write-back with the rest; the packing stage in parallel over (n, word, row), its row
        vectorized."""
        config = self.space.initial() if config is None else config
        pack = next(b for b in sch.get_producers(block) if sch.get(b).name_hint.startswith("XBits"))
        leftover = apply_conv2d(sch, block, self.loop_shape, self.space, config, epilogue)
        n, cw, y, x = sch.get_loops(pack)
        sch.parallel(sch.fuse(n, cw, y))
        sch.vectorize(x)
        return leftover


def _factory(key: str, dims: tuple[int, ...]) -> XnorConv2dTask:
    if len(dims) != 9:
        raise WorkloadError(f"workload '{key}' needs 9 dimensions (xnor_conv2d:NxCxHxWxOxKHxKWxSxP)")
    n, c, h, w, o = dims[:5]
    check_sizes(key, {"X": n * c * h * w, "Y": n * o * h * w})
    return XnorConv2dTask(key, ConvShape(*dims))


FAMILY = register_family(OpFamily(
    "xnor_conv2d", "binarized convolutions: XNOR + popcount over 32 channels per word, direct",
    tasks={"xnor_conv2d": TaskKind(_factory, "NxCxHxWxOxKHxKWxSxP", zero_ok=(8,),
                                   summary="direct conv2d of binarized inputs and ±1 weights (XNOR + popcount)")},
    schedules="tvmopt.schedules.conv2d"))
