"""Binarized convolutions counted in bytes (AVX2): ``xnor8_conv2d_nhwc:NxCxHxWxOxKHxKWxSxP``.

The same layer as ``xnor_conv2d_nhwc:`` (:mod:`.xnor_conv2d`: binarized inputs, ±1 weights,
channels last, the border taken back out by ``Wc``), with the mismatches counted for a CPU
without a vector popcount. AVX2 counts the bits of a vector with two byte shuffles into a
16-entry table (``vpshufb``), which leave a count per *byte*; the word kernel then sums each
word's 8 byte counts (``vpsadbw``) and narrows them to its int32 lanes, about 2.4 vector
operations a word, every tap. Here a vector lane is one output channel's byte: the weight is
``Wb[O/ob, ceil(C/8), KH, KW, ob]`` uint8 (32 channels per ymm), an input byte is broadcast,
and the byte counts of one chunk of taps and input bytes add up in uint8 (``vpaddb``; at most
31 steps of at most 8) before one widening into a uint16 sum (int32 for more than 65,535
products per output): 7 vector operations per 256 products where the word kernel spends about
10. Measured on a Zen 3, start configs against the word kernel's start (medians of 7 paired
rounds): ResNet-18's 3x3 layers 1.18 to 1.29x (1x64x56x56x64 to 1x512x7x7x512), the strided
1x64x56x56x128 1.29x.

With AVX-512 VPOPCNTDQ one ``vpopcntq`` counts 8 words, and the word kernel is the one to run:
the pass picks this kernel for AVX2 targets only (``passes/lower.py``). Its space:
``schedules/xnor8_conv2d.py``.
"""

from __future__ import annotations

from ..errors import WorkloadError
from ..schedules import xnor8_conv2d as schedule
from ..schedules.conv2d import ConvShape
from ..schedules.space import Config
from .conv2d import input_shape
from .registry import OpFamily, TaskKind, register_family
from .task import TASK_ANNOTATION, check_sizes
from .xnor_conv2d import (XnorConv2dTask, border_placeholder, border_table, output_stage, pack_weight,
                          signs_pack_stage, tap_counts)

PREFIX = "xnor8_conv2d_nhwc"


class Xnor8Conv2dTask(XnorConv2dTask):
    """``xnor_conv2d_nhwc:`` with byte-lane counts: inputs, reference and exactness are the
    word kernel's; the weight's words are bytes and the space is its own."""

    def __post_init__(self):
        s = self.shape
        if s.oh < 1 or s.ow < 1:
            raise WorkloadError(f"{self.key}: the kernel is larger than the padded input")
        if not (s.o % 16 == 0 and s.kh * s.kw <= schedule.MAX_STEPS):
            raise WorkloadError(f"{self.key}: the byte-count XNOR conv needs output channels in multiples of 16 "
                                f"and a window of at most {schedule.MAX_STEPS} taps")
        self.word, self.words = 8, -(-s.c // 8)
        self.loop_shape = s
        self.space = schedule.xnor8_space(s)
        self.flops = 2.0 * s.n * s.o * s.oh * s.ow * s.c * s.kh * s.kw      # dense-equivalent

    #: the packing stage runs a tensor intrinsic (``schedules/xnor8_conv2d.py``, ``pack_signs_intrinsic``)
    tensorized = True

    def to_kernel(self, arrays):
        """The layer's [O, C, KH, KW] weight (its signs count) -> packed bytes, border table."""
        packed = pack_weight(arrays[0], schedule.block(self.shape), 8)
        return [packed, border_table(tap_counts(packed), self.shape)]

    @property
    def padded_extent(self) -> tuple[int, int]:
        s = self.shape
        return (max(s.h + 2 * s.pad, (s.oh - 1) * s.stride + s.kh), max(s.w + 2 * s.pad, (s.ow - 1) * s.stride + s.kw))

    def compute(self, x=None):
        """TE: (X, Wb, Wc, Y); stages ``XBits`` (bytes, padded), ``part`` (uint8 counts per
        chunk), ``conv`` (their sum), ``xnor_out``."""
        from tvm import te

        s = self.shape
        X = x if x is not None else te.placeholder(input_shape(s), "float32", name="X")
        Wb = self.weight_placeholder()
        Wc = border_placeholder(s)
        acc = self.count_stages(signs_pack_stage(X, s, 8, self.padded_extent), Wb)
        return X, Wb, Wc, output_stage(s, lambda i, o, y, xx: acc[i, y, xx, o], Wc)

    def weight_placeholder(self):
        """``Wb[O/ob, ceil(C/8), KH, KW, ob]`` uint8 (:meth:`to_kernel`'s layout)."""
        from tvm import te

        s, ob = self.shape, schedule.block(self.shape)
        return te.placeholder((s.o // ob, self.words, s.kh, s.kw, ob), "uint8", name="wbytes")

    def count_stages(self, bits, Wb):
        """``part`` (the uint8 counts of each chunk of input bytes over the window) and ``conv``
        (their sum, ``[N, OH, OW, O]``, the task's annotated block) over the packed input ``bits``."""
        import tvm
        from tvm import te

        s, st = self.shape, self.shape.stride
        ob, step = schedule.block(s), schedule.chunk(s)
        j = te.reduce_axis((0, step), name="j")
        r = te.reduce_axis((0, s.kh), name="r")
        q = te.reduce_axis((0, s.kw), name="q")
        part = te.compute(
            (s.n, s.oh, s.ow, s.o, self.words // step),
            lambda i, y, xx, o, ch: te.sum(tvm.tirx.popcount(
                bits[i, ch * step + j, y * st + r, xx * st + q] ^ Wb[o // ob, ch * step + j, r, q, o % ob]), axis=[j, r, q]),
            name="part")
        ch = te.reduce_axis((0, self.words // step), name="ch")
        return te.compute((s.n, s.oh, s.ow, s.o),
                          lambda i, y, xx, o: te.sum(part[i, y, xx, o, ch].astype(schedule.count_dtype(s)), axis=ch),
                          name="conv", attrs={TASK_ANNOTATION: self.key})

    def apply(self, sch, block, config: Config | None, epilogue=()) -> list:
        config = self.space.initial() if config is None else config
        return schedule.apply_xnor8_conv2d(sch, block, self.shape, self.space, config, epilogue)


def _factory(key: str, dims: tuple[int, ...]) -> Xnor8Conv2dTask:
    if len(dims) != 9:
        raise WorkloadError(f"workload '{key}' needs 9 dimensions ({PREFIX}:NxCxHxWxOxKHxKWxSxP)")
    n, c, h, w, o = dims[:5]
    check_sizes(key, {"X": n * c * h * w, "Y": n * o * h * w})
    return Xnor8Conv2dTask(key, ConvShape(*dims, layout="NHWC"))


FAMILY = register_family(OpFamily(
    "xnor8_conv2d", "binarized convolutions counted in bytes (AVX2): XNOR + byte popcounts summed over taps",
    tasks={PREFIX: TaskKind(_factory, "NxCxHxWxOxKHxKWxSxP", zero_ok=(8,),
                            summary="direct conv2d of binarized inputs and ±1 weights, NHWC, counts in bytes "
                                    "(AVX2: no vector popcount)")},
    schedules="tvmopt.schedules.xnor8_conv2d"))
