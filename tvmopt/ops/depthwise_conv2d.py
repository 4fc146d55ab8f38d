"""Depthwise 2-D convolution (MobileNet, ShuffleNet): one input channel per group, fp32, direct
(NCHW in and out), with its own schedule space (schedules/depthwise.py).

Key: ``depthwise_conv2d:NxCxHxWxOxKHxKWxSxP`` (the ``conv2d:`` dimensions; ``O`` a multiple of
``C``: output channel o reads input channel ``o // (O / C)``). The weight is ONNX's
[O, 1, KH, KW], stored as [O, KH, KW].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import WorkloadError
from ..schedules.conv2d import ConvShape
from ..schedules.depthwise import apply_depthwise, depthwise_space
from ..schedules.space import Config
from .conv2d import Conv2dTask, conv2d_reference, pad_input
from .registry import OpFamily, TaskKind, register_family
from .task import TASK_ANNOTATION


def depthwise_compute(s: ConvShape, X, W, key: str):
    """TE: the depthwise convolution of NCHW ``X`` with ``W[O, KH, KW]``, zero padding as a
    separate stage; the conv block carries the task annotation ``key``."""
    from tvm import te

    data = pad_input(s, X)
    r = te.reduce_axis((0, s.kh), name="r")
    q = te.reduce_axis((0, s.kw), name="q")
    per = s.o // s.c
    return te.compute(
        (s.n, s.o, s.oh, s.ow),
        lambda n, o, y, xx: te.sum(data[n, o // per if per > 1 else o, y * s.stride + r, xx * s.stride + q]
                                   * W[o, r, q], axis=[r, q]),
        name="conv", attrs={TASK_ANNOTATION: key})


@dataclass
class DepthwiseConv2dTask(Conv2dTask):
    """The dense conv's task (its ``schedule``) with the depthwise weight, compute and space."""

    def __post_init__(self):
        s = self.shape
        if s.oh < 1 or s.ow < 1:
            raise WorkloadError(f"{self.key}: the kernel is larger than the padded input")
        self.space = depthwise_space(s)
        self.flops = 2.0 * s.n * s.o * s.oh * s.ow * s.kh * s.kw

    def to_kernel(self, arrays):
        """ONNX's [O, 1, KH, KW] weight -> [O, KH, KW]."""
        s = self.shape
        return [np.ascontiguousarray(arrays[0].reshape(s.o, s.kh, s.kw), np.float32)]

    def make_inputs(self, rng):
        s = self.shape
        x = rng.uniform(-1, 1, size=(s.n, s.c, s.h, s.w)).astype(np.float32)
        w = rng.uniform(-1, 1, size=(s.o, 1, s.kh, s.kw)).astype(np.float32)
        return [x] + self.to_kernel([w])

    def reference(self, inputs):
        x, w = inputs
        s = self.shape
        return conv2d_reference(x, w.reshape(s.o, 1, s.kh, s.kw), s.stride, s.pad, groups=s.c)

    def tolerance(self):
        return 1e-5, 1e-5 * max(1.0, (self.shape.kh * self.shape.kw) ** 0.5)

    def compute(self, x=None):
        """TE: (X, W, Y). ``x``: an existing tensor to read instead of a new placeholder."""
        from tvm import te

        s = self.shape
        X = x if x is not None else te.placeholder((s.n, s.c, s.h, s.w), "float32", name="X")
        W = te.placeholder((s.o, s.kh, s.kw), "float32", name="W")
        return X, W, depthwise_compute(s, X, W, self.key)

    def apply(self, sch, block, config: Config | None, epilogue=()) -> list:
        return apply_depthwise(sch, block, self.space, self.space.initial() if config is None else config, epilogue)


def _factory(key: str, dims: tuple[int, ...]) -> DepthwiseConv2dTask:
    if len(dims) != 9:
        raise WorkloadError(f"workload '{key}' needs 9 dimensions (depthwise_conv2d:NxCxHxWxOxKHxKWxSxP)")
    if dims[4] % dims[1]:
        raise WorkloadError(f"workload '{key}': {dims[4]} output channels are not a multiple of the {dims[1]} "
                            f"input channels")
    return DepthwiseConv2dTask(key, ConvShape(*dims, groups=dims[1]))


FAMILY = register_family(OpFamily(
    "depthwise_conv2d", "depthwise fp32 convolutions (one input channel per group, epilogue fused)",
    tasks={"depthwise_conv2d": TaskKind(_factory, "NxCxHxWxOxKHxKWxSxP", zero_ok=(8,),
                                        summary="depthwise conv2d: batch, channels, height, width, outputs, kernel, "
                                                "stride, pad")},
    schedules="tvmopt.schedules.depthwise"))
