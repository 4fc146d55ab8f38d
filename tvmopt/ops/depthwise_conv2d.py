"""Depthwise 2-D convolution (MobileNet, ShuffleNet): one input channel per group, fp32, direct
(NCHW in and out), with its own schedule space (schedules/depthwise.py).

Key: ``depthwise_conv2d:NxCxHxWxOxKHxKWxSxP`` (the ``conv2d:`` dimensions; ``O`` a multiple of
``C``: output channel o reads input channel ``o // (O / C)``). It is the dense conv's task with
C groups: the same compute, weight layout (ONNX's [O, 1, KH, KW] in blocks of the ``O / C``
outputs of an input channel), inputs and reference; only the space and its schedule differ.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import WorkloadError
from ..schedules.conv2d import ConvShape
from ..schedules.depthwise import apply_depthwise, depthwise_space
from ..schedules.space import Config
from .conv2d import Conv2dTask
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
