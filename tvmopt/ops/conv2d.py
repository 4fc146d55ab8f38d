"""Dense fp32 2-D convolution, direct (NCHW in and out, or NHWC for ``conv2d_nhwc``), with the
weight in output-channel blocks ``W'[O/ob, C, KH, KW, ob]`` (laid out at compile time: it is a
constant). ``conv2d_nhwc:`` (same dimensions) is what a channels-last graph runs
(passes/layout.py): its accumulator tile of pixels by channels is the output's own layout.

Key: ``conv2d:NxCxHxWxOxKHxKWxSxP`` (batch, in channels, height, width, out channels, kernel
height and width, stride, symmetric zero padding), and ``xG`` for G groups (the weight is then
[O, C/G, KH, KW]; a vector block of output channels stays within one group). Asymmetric padding is an explicit pad before
the kernel (``P`` = 0); dilated or unevenly strided convolutions keep the im2col path.
The space and ``apply_conv2d`` are in schedules/conv2d.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import WorkloadError
from ..schedules.conv2d import ConvShape, apply_conv2d, conv2d_space
from ..schedules.space import Config
from tvmopt.ops.registry import OpFamily, TaskKind, register_family
from tvmopt.ops.task import TASK_ANNOTATION, Task  # noqa: F401  (re-exported)

#: the block annotation that names a kernel's task inside a fused function


def block_weight(w: np.ndarray, ob: int) -> np.ndarray:
    """[O, C, KH, KW] -> [O/ob, C, KH, KW, ob]."""
    o, c, kh, kw = w.shape
    return np.ascontiguousarray(w.reshape(o // ob, ob, c, kh, kw).transpose(0, 2, 3, 4, 1))


def pad_groups(w: np.ndarray, s: ConvShape) -> np.ndarray:
    """[O, C/G, KH, KW] -> [G * ogp, C/G, KH, KW]: each group's outputs padded with zero
    weights to ``s.ogp`` (the channels the kernel computes)."""
    if s.op == s.o:
        return w
    og = s.o // s.groups
    padded = np.zeros((s.groups, s.ogp) + w.shape[1:], w.dtype)
    padded[:, :og] = w.reshape((s.groups, og) + w.shape[1:])
    return padded.reshape((s.op,) + w.shape[1:])


def unpad_groups(w: np.ndarray, s: ConvShape) -> np.ndarray:
    """The inverse of :func:`pad_groups`."""
    if s.op == s.o:
        return w
    return np.ascontiguousarray(w.reshape((s.groups, s.ogp) + w.shape[1:])[:, : s.o // s.groups]
                                .reshape((s.o,) + w.shape[1:]))


def unblock_weight(wb: np.ndarray) -> np.ndarray:
    """[O/ob, C, KH, KW, ob] -> [O, C, KH, KW]."""
    oo, c, kh, kw, ob = wb.shape
    return np.ascontiguousarray(wb.transpose(0, 4, 1, 2, 3).reshape(oo * ob, c, kh, kw))


def conv2d_reference(x: np.ndarray, w: np.ndarray, stride: int, pad: int, groups: int = 1) -> np.ndarray:
    """numpy NCHW convolution (cross-correlation, as ONNX and PyTorch define it); ``groups``:
    ``w`` is [O, C / groups, KH, KW] and group g's outputs read its slice of the channels."""
    from numpy.lib.stride_tricks import sliding_window_view

    o, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    win = sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]   # n c oh ow kh kw
    og = o // groups
    return np.concatenate([np.einsum("nchwij,ocij->nohw", win[:, g * cg:(g + 1) * cg], w[g * og:(g + 1) * og],
                                     optimize=True) for g in range(groups)], axis=1).astype(np.float32)


def input_shape(s: ConvShape) -> tuple[int, int, int, int]:
    return (s.n, s.h, s.w, s.c) if s.nhwc else (s.n, s.c, s.h, s.w)


def output_shape(s: ConvShape) -> tuple[int, int, int, int]:
    return (s.n, s.oh, s.ow, s.o) if s.nhwc else (s.n, s.o, s.oh, s.ow)


def reference_in_layout(s: ConvShape, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """:func:`conv2d_reference` of ``x`` in ``s``'s layout (``w`` [O, C/G, KH, KW])."""
    if not s.nhwc:
        return conv2d_reference(x, w, s.stride, s.pad, s.groups)
    y = conv2d_reference(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), w, s.stride, s.pad, s.groups)
    return np.ascontiguousarray(y.transpose(0, 2, 3, 1))


def pad_input(s: ConvShape, X):
    """TE: ``X`` (NCHW, or NHWC for ``s.nhwc``) zero-padded by ``s.pad`` on every side, and on
    the right as far as a padded output width (``s.owp``) reads, as a stage named ``pad``
    (``X`` itself where nothing is padded)."""
    import tvm
    from tvm import te

    p = s.pad
    extra = 0 if s.flat else max(0, (s.owp - 1) * s.stride + s.kw - (s.w + 2 * p))
    if not p and not extra:
        return X

    def inside(y, xx):
        return tvm.tirx.all(y >= p, y < s.h + p, xx >= p, xx < s.w + p)

    zero = tvm.tirx.const(0.0, "float32")
    hp, wp = s.h + 2 * p, s.w + 2 * p + extra
    if s.nhwc:
        return te.compute((s.n, hp, wp, s.c), lambda n, y, xx, c: tvm.tirx.if_then_else(
            inside(y, xx), X[n, y - p, xx - p, c], zero), name="pad")
    return te.compute((s.n, s.c, hp, wp), lambda n, c, y, xx: tvm.tirx.if_then_else(
        inside(y, xx), X[n, c, y - p, xx - p], zero), name="pad")


def conv_compute(s: ConvShape, X, W, key: str):
    """TE: the direct convolution of NCHW ``X`` with the blocked weight ``W[O/ob, C, KH, KW, ob]``
    (a placeholder, or a stage that decodes it), zero padding as a separate stage; the conv
    block carries the task annotation ``key``. Where the kernel computes a padded shape
    (``s.padded``: a wider output, ``owp``, or groups of ``ogp`` outputs) the result is a
    ``crop`` stage of the conv (:func:`conv_epilogue`): the schedule inlines a width crop into
    the accumulator's write-back and runs a channel crop as a pass of its own."""
    from tvm import te

    data = pad_input(s, X)
    ic = te.reduce_axis((0, s.cg), name="ic")
    r = te.reduce_axis((0, s.kh), name="r")
    q = te.reduce_axis((0, s.kw), name="q")

    def channel(o):      # the input channel ``ic`` of (computed) output o's group
        return ic if s.groups == 1 else o // s.ogp * s.cg + ic

    def product(n, o, y, xx):
        iy, ix = y * s.stride + r, xx * s.stride + q
        value = data[n, iy, ix, channel(o)] if s.nhwc else data[n, channel(o), iy, ix]
        return te.sum(value * W[o // s.ob, ic, r, q, o % s.ob], axis=[ic, r, q])

    attrs = {TASK_ANNOTATION: key}
    if s.flat:
        # one row of oh * ow pixels (padded to gw: the extra ones read the last pixel again)
        last = s.oh * s.ow - 1

        def pixel(n, o, p):
            at = te.min(p, last)
            iy, ix = at // s.ow * s.stride + r, at % s.ow * s.stride + q
            return te.sum(data[n, iy, ix, ic] * W[o // s.ob, ic, r, q, o % s.ob], axis=[ic, r, q])

        conv = te.compute((s.n, 1, s.gw, s.op), lambda n, y, p, o: pixel(n, o, p), name="conv", attrs=attrs)
        return te.compute((s.n, s.oh, s.ow, s.o), lambda n, y, xx, o: conv[n, 0, y * s.ow + xx, o], name="crop")
    if s.nhwc:
        conv = te.compute((s.n, s.oh, s.owp, s.op), lambda n, y, xx, o: product(n, o, y, xx), name="conv",
                          attrs=attrs)
    else:
        conv = te.compute((s.n, s.op, s.oh, s.owp), product, name="conv", attrs=attrs)
    if not s.padded:
        return conv
    og = s.o // s.groups

    def computed(o):     # output o's channel among the computed ones (groups padded to ogp)
        return o if s.op == s.o else o // og * s.ogp + o % og

    if s.nhwc:
        return te.compute((s.n, s.oh, s.ow, s.o), lambda n, y, xx, o: conv[n, y, xx, computed(o)], name="crop")
    return te.compute((s.n, s.o, s.oh, s.ow), lambda n, o, y, xx: conv[n, computed(o), y, xx], name="crop")


def conv_epilogue(sch) -> list:
    """The blocks a conv task's own PrimFunc (:func:`conv_compute`) has after its ``conv``
    block: the ``crop`` of a padded shape, or nothing."""
    return list(sch.get_consumers(sch.get_sblock("conv")))


@dataclass
class Conv2dTask(Task):
    key: str
    shape: ConvShape

    def __post_init__(self):
        s = self.shape
        if s.oh < 1 or s.ow < 1:
            raise WorkloadError(f"{self.key}: the kernel is larger than the padded input")
        self.space = self.make_space()
        self.flops = 2.0 * s.n * s.o * s.oh * s.ow * s.cg * s.kh * s.kw

    def make_space(self):
        return conv2d_space(self.shape)

    def to_kernel(self, arrays):
        """The pass's [O, C, KH, KW] weight in the kernel's block layout."""
        return [block_weight(pad_groups(arrays[0], self.shape), self.shape.ob)]

    def make_inputs(self, rng):
        s = self.shape
        x = rng.uniform(-1, 1, size=input_shape(s)).astype(np.float32)
        w = rng.uniform(-1, 1, size=(s.o, s.cg, s.kh, s.kw)).astype(np.float32)
        return [x, block_weight(pad_groups(w, s), s.ob)]

    def reference(self, inputs):
        x, wb = inputs
        s = self.shape
        return reference_in_layout(s, x, unpad_groups(unblock_weight(wb), s))

    def tolerance(self):
        return 1e-4, 1e-5 * max(1.0, (self.shape.cg * self.shape.kh * self.shape.kw) ** 0.5)

    def compute(self, x=None):
        """TE: (X, W', Y). ``x``: an existing tensor to read instead of a new placeholder."""
        from tvm import te

        s = self.shape
        X = x if x is not None else te.placeholder(input_shape(s), "float32", name="X")
        W = te.placeholder((s.op // s.ob, s.cg, s.kh, s.kw, s.ob), "float32", name="W")
        return X, W, conv_compute(s, X, W, self.key)

    def schedule(self, config: Config, target):
        import tvm
        from tvm import te

        func = te.create_prim_func(list(self.compute())).with_attr("global_symbol", "main")
        sch = tvm.s_tir.Schedule(tvm.IRModule({"main": func}))
        self.apply(sch, sch.get_sblock("conv"), config, conv_epilogue(sch))
        return sch.mod

    fuses_epilogue = True

    def apply(self, sch, block, config: Config | None, epilogue=()) -> list:
        """Schedule ``block`` (this task's convolution, possibly inside a fused function);
        returns the epilogue blocks it could not inline."""
        return apply_conv2d(sch, block, self.shape, self.space, self.space.initial() if config is None else config,
                     epilogue)


def _factory(key: str, dims: tuple[int, ...]) -> Conv2dTask:
    prefix = key.split(":")[0]
    if len(dims) not in (9, 10):
        raise WorkloadError(f"workload '{key}' needs 9 dimensions, or 10 for a grouped conv "
                            f"({prefix}:NxCxHxWxOxKHxKWxSxP[xG])")
    if len(dims) == 10 and (dims[9] < 1 or dims[1] % dims[9] or dims[4] % dims[9]):
        raise WorkloadError(f"workload '{key}': {dims[9]} groups must divide the {dims[1]} input and {dims[4]} "
                            f"output channels")
    from ..schedules.isa import current

    # narrow: AVX2's flat grids (ConvShape.narrow_flat); wide_groups: full-width AVX-512's groups
    # padded to blocks of 16 (ConvShape.ogp); both set from the ISA a build or a tuning run targets
    # (schedules.isa.use), else this host's
    return Conv2dTask(key, ConvShape(*dims, layout="NHWC" if prefix.endswith("_nhwc") else "NCHW", fill_blocks=True,
                                     flatten=True, narrow=current().lanes < 16,
                                     wide_groups=current().full_width))


FAMILY = register_family(OpFamily(
    "conv2d", "direct fp32 convolutions (weight in output-channel blocks, epilogue fused)",
    tasks={"conv2d": TaskKind(_factory, "NxCxHxWxOxKHxKWxSxP[xG]", zero_ok=(8,),
                              summary="direct conv2d: batch, channels, height, width, outputs, kernel, stride, pad "
                                      "(and groups), NCHW in and out"),
           "conv2d_nhwc": TaskKind(_factory, "NxCxHxWxOxKHxKWxSxP[xG]", zero_ok=(8,),
                                   summary="direct conv2d, NHWC in and out (the graph-wide channels-last layout); "
                                           "dimensions as conv2d's")},
    schedules="tvmopt.schedules.conv2d"))
