"""Depthwise 2-D convolution (MobileNet, ShuffleNet, EfficientNet): one input channel per group,
fp32, direct, with its own schedule spaces (schedules/depthwise.py): NCHW in and out, or channels
last (``depthwise_conv2d_nhwc``), which keeps such networks NHWC end to end (passes/layout.py).

Key: ``depthwise_conv2d:NxCxHxWxOxKHxKWxSxP`` (the ``conv2d:`` dimensions; ``O`` a multiple of
``C``: output channel o reads input channel ``o // (O / C)``). It is the dense conv's task with
C groups: the same compute, weight layout (ONNX's [O, 1, KH, KW] in blocks of the ``O / C``
outputs of an input channel), inputs and reference; only the space and its schedule differ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import WorkloadError
from ..schedules.conv2d import ConvShape
from ..schedules.depthwise import apply_depthwise, apply_depthwise_nhwc, depthwise_nhwc_space, depthwise_space
from ..schedules.space import Config
from .conv2d import Conv2dTask, pad_input, reference_in_layout
from .task import TASK_ANNOTATION
from .registry import OpFamily, TaskKind, register_family


@dataclass
class DepthwiseConv2dTask(Conv2dTask):
    """The dense conv's task with C groups, scheduled as a stencil."""

    def make_space(self):
        return depthwise_space(self.shape)

    def tolerance(self):
        return 1e-5, 1e-5 * max(1.0, (self.shape.kh * self.shape.kw) ** 0.5)

    def apply(self, sch, block, config: Config | None, epilogue=()) -> list:
        return apply_depthwise(sch, block, self.space, self.space.initial() if config is None else config, epilogue)


@dataclass
class DepthwiseNHWCTask(DepthwiseConv2dTask):
    """Channels last, one output channel per input channel (``O == C``): ``X[N, H, W, C]``, the
    weight as ``W[KH, KW, C]`` (laid out at build from ONNX's [C, 1, KH, KW]), so a tap of a
    pixel is one vector of channels, and a tap's weights one vector shared by the tile's pixels.

    Key: ``depthwise_conv2d_nhwc:NxCxHxWxCxKHxKWxSxP``."""

    def make_space(self):
        return depthwise_nhwc_space(self.shape)

    def to_kernel(self, arrays):
        """The pass's [C, 1, KH, KW] weight as [KH, KW, C]."""
        return [np.ascontiguousarray(arrays[0][:, 0].transpose(1, 2, 0))]

    def make_inputs(self, rng):
        s = self.shape
        x = rng.uniform(-1, 1, size=(s.n, s.h, s.w, s.c)).astype(np.float32)
        w = rng.uniform(-1, 1, size=(s.c, 1, s.kh, s.kw)).astype(np.float32)
        return [x] + self.to_kernel([w])

    def reference(self, inputs):
        x, w = inputs
        return reference_in_layout(self.shape, x, np.ascontiguousarray(w.transpose(2, 0, 1))[:, None])

    def compute(self, x=None):
        from tvm import te

        s = self.shape
        X = x if x is not None else te.placeholder((s.n, s.h, s.w, s.c), "float32", name="X")
        W = te.placeholder((s.kh, s.kw, s.c), "float32", name="W")
        data = pad_input(s, X)
        r = te.reduce_axis((0, s.kh), name="r")
        q = te.reduce_axis((0, s.kw), name="q")
        conv = te.compute((s.n, s.oh, s.ow, s.c), lambda n, y, xx, c: te.sum(
            data[n, y * s.stride + r, xx * s.stride + q, c] * W[r, q, c], axis=[r, q]),
            name="conv", attrs={TASK_ANNOTATION: self.key})
        return X, W, conv

    def apply(self, sch, block, config: Config | None, epilogue=()) -> list:
        return apply_depthwise_nhwc(sch, block, self.space, self.space.initial() if config is None else config,
                                    epilogue)


def _factory(key: str, dims: tuple[int, ...]) -> DepthwiseConv2dTask:
    if len(dims) != 9:
        raise WorkloadError(f"workload '{key}' needs 9 dimensions (depthwise_conv2d:NxCxHxWxOxKHxKWxSxP)")
    if dims[4] % dims[1]:
        raise WorkloadError(f"workload '{key}': {dims[4]} output channels are not a multiple of the {dims[1]} "
                            f"input channels")
    return DepthwiseConv2dTask(key, ConvShape(*dims, groups=dims[1]))


def _nhwc_factory(key: str, dims: tuple[int, ...]) -> DepthwiseNHWCTask:
    if len(dims) != 9:
        raise WorkloadError(f"workload '{key}' needs 9 dimensions (depthwise_conv2d_nhwc:NxCxHxWxCxKHxKWxSxP)")
    if dims[4] != dims[1]:
        raise WorkloadError(f"workload '{key}': channels last, a depthwise conv has one output per input channel "
                            f"({dims[4]} outputs for {dims[1]} channels)")
    return DepthwiseNHWCTask(key, ConvShape(*dims, groups=dims[1], layout="NHWC"))


FAMILY = register_family(OpFamily(
    "depthwise_conv2d", "depthwise fp32 convolutions (one input channel per group, epilogue fused)",
    tasks={"depthwise_conv2d": TaskKind(_factory, "NxCxHxWxOxKHxKWxSxP", zero_ok=(8,),
                                        summary="depthwise conv2d: batch, channels, height, width, outputs, kernel, "
                                                "stride, pad"),
           "depthwise_conv2d_nhwc": TaskKind(_nhwc_factory, "NxCxHxWxCxKHxKWxSxP", zero_ok=(8,),
                                             summary="depthwise conv2d, channels last (one output per channel)")},
    schedules="tvmopt.schedules.depthwise"))
