"""Winograd F(2x2, 3x3) convolutions, channels last: 3x3, stride 1, pad 1, 2.25x fewer
multiply-adds than the direct conv (the transforms and the space: ``schedules/winograd.py``).

- ``winograd_conv2d_nhwc:NxCxHxWxOx3x3x1x1``: a dense fp32 weight, transformed when the model is
  built (``U[4, 4, C, O] = G g G^T``, a constant 16/9 the size of the weight, stored in panels of
  16 output channels, ``to_panels``);
- ``<format>_winograd_conv2d_nhwc:...`` (``shift_``, ``ternary_``, ``binary_``, ``nm_``...,
  with the format's extra dimensions as ``<format>_conv2d``): the compressed arrays are what the
  model stores; at the start of each call every thread decodes them and transforms the weight
  it reads into a workspace: all of it where the cores share the rows of tiles, its share of the
  output channels with ``parallel = outputs`` (``schedules/winograd.py``).

Inputs and the numpy reference are the direct conv's (``conv2d_nhwc``, ``<format>_conv2d_nhwc``);
the epilogue (scale, bias, ReLU, residual add) is fused into the output transform.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import WorkloadError
from ..schedules.conv2d import ConvShape
from ..schedules.space import Config
from ..schedules.winograd import (LANES, MAX_TRANSFORMED_BYTES, MIN_CHANNELS, MIN_TILES_PER_ROW, applies,
                                  apply_winograd, tiles, winograd_space)
from .compressed_conv2d import FORMATS, DenseArraysConv
from .conv2d import reference_in_layout
from .decoded import _PanelView
from .registry import OpFamily, TaskKind, register_family
from .task import TASK_ANNOTATION, Task, check_sizes
from ..target import host_cores

PREFIX = "winograd_conv2d_nhwc"
#: G of F(2x2, 3x3): the filter transform U = G g G^T
G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])


def transform_weight(w: np.ndarray) -> np.ndarray:
    """numpy: [O, C, 3, 3] -> U [4, 4, C, O] (in float64, rounded once)."""
    return np.einsum("ar,ocrs,bs->abco", G, w.astype(np.float64), G).astype(np.float32)


def to_panels(u: np.ndarray) -> np.ndarray:
    """numpy: U [4, 4, C, O] -> the dense kernel's layout [O / 16, 4, 4, C, 16]: each vector of 16
    output channels is one contiguous panel, which a register tile (and a block of ``parallel =
    blocks``) streams in order. Read in place [4, 4, C, O], a vector was 64 bytes every 4 O bytes:
    1x512x7x7x512 by blocks ran 2.1 ms, in panels 0.67 to 0.83 ms."""
    a, b, c, o = u.shape
    return np.ascontiguousarray(u.reshape(a, b, c, o // LANES, LANES).transpose(3, 0, 1, 2, 4))


def from_panels(p: np.ndarray) -> np.ndarray:
    """numpy: the inverse of :func:`to_panels`."""
    v, a, b, c, lanes = p.shape
    return np.ascontiguousarray(p.transpose(1, 2, 3, 0, 4).reshape(a, b, c, v * lanes))


def _select(i, values):
    import tvm

    e = values[-1]
    for k in range(len(values) - 2, -1, -1):
        e = tvm.tirx.Select(i == k, values[k], e)
    return e


def _bt(d, a):
    """Row ``a`` of B^T applied to d(0..3)."""
    return _select(a, [d(0) - d(2), d(1) + d(2), d(2) - d(1), d(1) - d(3)])


def _g(g, a):
    """Row ``a`` of G applied to g(0..2)."""
    half = 0.5
    return _select(a, [g(0), (g(0) + g(1) + g(2)) * half, (g(0) - g(1) + g(2)) * half, g(2)])


def _at(m, i):
    """Row ``i`` of A^T applied to m(0..3)."""
    return _select(i, [m(0) + m(1) + m(2), m(1) - m(2) - m(3)])


def winograd_compute(s: ConvShape, X, U, key: str):
    """TE: the F(2x2, 3x3) conv of NHWC ``X`` with transformed weights ``U(a, b, c, o)`` (a
    function reading a placeholder or a stage); the output transform ``wt_out`` carries the task
    annotation."""
    import tvm
    from tvm import te

    th_n, tw_n = tiles(s)
    zero = tvm.tirx.const(0.0, "float32")
    # zero padding: 1 on the top and left, as far as the last tile reads on the bottom and right
    Xp = te.compute((s.n, 2 * th_n + 2, 2 * tw_n + 2, s.c), lambda n, y, x, c: tvm.tirx.if_then_else(
        tvm.tirx.all(y >= 1, y < s.h + 1, x >= 1, x < s.w + 1), X[n, y - 1, x - 1, c], zero), name="pad")
    rows = te.compute((s.n, th_n, tw_n, 4, 4, s.c), lambda n, th, tw, a, b, c: _bt(
        lambda r: Xp[n, 2 * th + r, 2 * tw + b, c], a), name="wt_rows")
    V = te.compute((s.n, th_n, tw_n, 4, 4, s.c), lambda n, th, tw, a, b, c: _bt(
        lambda q: rows[n, th, tw, a, q, c], b), name="wt_in")
    ci = te.reduce_axis((0, s.c), name="ci")
    M = te.compute((s.n, th_n, tw_n, 4, 4, s.o), lambda n, th, tw, a, b, k: te.sum(
        V[n, th, tw, a, b, ci] * U(a, b, ci, k), axis=ci), name="wt_gemm")

    def out(n, y, x, k):
        def column(b):
            return _at(lambda a: M[n, y // 2, x // 2, a, b, k], y % 2)
        return _at(column, x % 2)

    return te.compute((s.n, s.oh, s.ow, s.o), out, name="wt_out", attrs={TASK_ANNOTATION: key})


def transformed_stage(s: ConvShape, weight):
    """TE: U in the dense kernel's panels [O / 16, 4, 4, C, 16] (:func:`to_panels`) from
    ``weight(o, c, r, q)`` (a decode), as two stages (rows, then columns of G g G^T).

    In panels, not [4, 4, C, O]: the GEMM's register tile then streams its 16 output channels'
    U in order, where in place it read 64 bytes every 4 O bytes, once per block of tiles. Zen 4
    with AVX2 code, start configs, against the dense Winograd conv: ternary 16x256x8x8x256 0.68x
    in place, 16x128x8x8x256 0.75x, 16x64x16x16x128 0.84x (the transform itself, one image,
    1x256x8x8x256: about 0.3 ms of 0.49)."""
    from tvm import te

    rows = te.compute((4, 3, s.c, s.o), lambda a, q, c, o: _g(lambda r: weight(o, c, r, q), a), name="wt_wrows")
    return te.compute((s.o // LANES, 4, 4, s.c, LANES),
                      lambda v, a, b, c, i: _g(lambda q: rows[a, q, c, v * LANES + i], b), name="wt_weight")


def _schedule_transformed(sch, shape: ConvShape, at) -> None:
    """The per-call weight transform of a compressed layer, computed by each thread at ``at``
    (the per-thread loop: all of U where the threads share the rows of tiles, the thread's share
    of the output channels with ``parallel = outputs``), output channels in vectors; each input
    channel's 9 x O decoded weights and 12 x O row sums first (inlined, each weight would be
    decoded 12 times).

    Per thread, not in a parallel pass of its own: a thread sharing the rows of tiles reads all
    of U, and half of it written by the other core cost more than computing it again (1x64x8x8x64
    shift: 106 us with U computed in parallel, 29 us on one thread, against 15 us for the dense
    layer)."""
    weight = sch.get_sblock("wt_weight")
    rows = sch.get_sblock("wt_wrows")
    sch.compute_at(weight, at)
    loops = list(sch.get_loops(weight))
    own = loops[[sch.get(loop).same_as(sch.get(at)) for loop in loops].index(True) + 1:]
    *v, a, b, c, i = own                  # v: the panels, gone where the thread's share is one
    sch.reorder(c, a, b, *v, i)
    sch.compute_at(rows, c)
    decode = [p for p in sch.get_producers(rows) if sch.get(p).name_hint.startswith("decode")]
    for producer in decode:
        sch.compute_at(producer, c)
    sch.unroll(a)                                         # unrolled, so each Select is one of
    sch.unroll(b)                                         # its branches
    sch.vectorize(i)
    for stage in [rows] + decode:
        *_, first, second, o = sch.get_loops(stage)      # (a, q) or (r, q)
        sch.unroll(first)
        sch.unroll(second)
        if shape.o % LANES == 0:
            sch.vectorize(sch.split(o, [None, LANES])[1])


@dataclass
class WinogradConv2dTask(Task):
    """The dense layer's Winograd conv: inputs X (NHWC) and U."""

    key: str
    shape: ConvShape

    def __post_init__(self):
        s = self.shape
        if not applies(s):
            raise WorkloadError(f"{self.key}: the Winograd conv computes 3x3, stride-1, pad-1 convolutions of one "
                                f"group with {MIN_CHANNELS} input channels or more, outputs in multiples of {LANES}, "
                                f"maps of {MIN_TILES_PER_ROW} tiles of 2 or more per row and a transformed weight of "
                                f"{MAX_TRANSFORMED_BYTES >> 20} MiB at most")
        self.space = winograd_space(s, name=f"{self.family}-llvm", per_call=self.transforms_per_call)
        self.flops = 2.0 * s.n * s.o * s.oh * s.ow * s.c * 9          # the direct conv's (effective)

    def to_kernel(self, arrays):
        """The pass's [O, C, 3, 3] weight -> U in panels [O / 16, 4, 4, C, 16]."""
        return [to_panels(transform_weight(arrays[0]))]

    def make_inputs(self, rng):
        s = self.shape
        x = rng.uniform(-1, 1, size=(s.n, s.h, s.w, s.c)).astype(np.float32)
        w = rng.uniform(-1, 1, size=(s.o, s.c, 3, 3)).astype(np.float32)
        return [x, to_panels(transform_weight(w))]

    def reference(self, inputs):
        x, u = inputs
        # U -> the 3x3 weight it came from: g = G^+ U G^+T (G has full column rank)
        gp = np.linalg.pinv(G)
        w = np.einsum("ra,abco,sb->ocrs", gp, from_panels(u).astype(np.float64), gp).astype(np.float32)
        return reference_in_layout(self.shape, x, w)

    def tolerance(self):
        return 1e-4, 1e-5 * max(1.0, (self.shape.c * 9) ** 0.5)

    def compute(self, x=None):
        from tvm import te

        s = self.shape
        X = x if x is not None else te.placeholder((s.n, s.h, s.w, s.c), "float32", name="X")
        U = te.placeholder((s.o // LANES, 4, 4, s.c, LANES), "float32", name="U")
        return X, U, winograd_compute(s, X, lambda a, b, c, o: U[o // LANES, a, b, c, o % LANES], self.key)

    def schedule(self, config: Config, target):
        import tvm
        from tvm import te

        func = te.create_prim_func(list(self.compute())).with_attr("global_symbol", "main")
        sch = tvm.s_tir.Schedule(tvm.IRModule({"main": func}))
        self.apply(sch, sch.get_sblock("wt_out"), config, list(sch.get_consumers(sch.get_sblock("wt_out"))))
        return sch.mod

    fuses_epilogue = True
    #: whether the kernel decodes and transforms its weight at the start of each call (per thread)
    transforms_per_call = False

    def apply(self, sch, block, config: Config | None, epilogue=()) -> list:
        config = self.space.initial() if config is None else config
        leftover = apply_winograd(sch, block, self.shape, self.space, config, epilogue, threads=host_cores(),
                                  per_thread=self.transforms_per_call)
        if self.transforms_per_call:
            _schedule_transformed(sch, self.shape, sch.get_loops(block)[0])
        return leftover


@dataclass
class CompressedWinogradTask(DenseArraysConv, WinogradConv2dTask):
    """A compressed layer's Winograd conv: inputs X and the format's arrays (as
    ``<format>_conv2d_nhwc``'s), decoded and transformed at the start of each call."""

    params: dict = field(default_factory=dict)
    transforms_per_call = True

    def __post_init__(self):
        WinogradConv2dTask.__post_init__(self)
        s = self.shape
        fmt_cls = FORMATS[self.format][0]
        self.weights = fmt_cls(self.key, 1, s.o, s.c * 9, params=dict(self.params))
        self.params = self.weights.params

    @property
    def format(self) -> str:
        """The weight format's conv prefix (``shift_conv2d``)."""
        return self.family.removesuffix("_winograd_conv2d_nhwc") + "_conv2d"

    def with_params(self, params: dict) -> "CompressedWinogradTask":
        return type(self)(self.key, self.shape, {**self.params, **params})

    to_kernel = DenseArraysConv.to_kernel
    make_inputs = DenseArraysConv.make_inputs
    reference = DenseArraysConv.reference

    def compute(self, x=None):
        from tvm import te

        s, fmt = self.shape, self.weights
        X = x if x is not None else te.placeholder((s.n, s.h, s.w, s.c), "float32", name="X")
        specs = fmt.weight_specs()
        raw = [te.placeholder(fmt.kernel_shape(spec), spec.dtype, name=spec.name) for spec in specs]
        tensors = [_PanelView(t, fmt.panel) if fmt._paneled(spec) else t for t, spec in zip(raw, specs)]
        decode = te.compute((s.c, 3, 3, s.o), lambda c, r, q, o: fmt.te_weight(tensors, (c * 3 + r) * 3 + q, o),
                            name="decode")
        U = transformed_stage(s, lambda o, c, r, q: decode[c, r, q, o])
        return (X, *raw, winograd_compute(s, X, lambda a, b, c, o: U[o // LANES, a, b, c, o % LANES], self.key))


#: direct compressed conv prefixes -> the format whose Winograd kernel a 3x3 stride-1 layer runs
#: instead. Binary register tables (``binary_perm_conv2d``) are not here: they beat the dense
#: Winograd conv on every layer measured (Zen 4, start configs: 1x256x14x14x256 0.41 against
#: 0.58 ms, ResNet-20's layers 10 to 13 against 13 to 16 us). Hashed and codebook weights cost
#: too much to decode per call.
WINOGRAD_FORMATS = {"shift_conv2d": "shift", "ternary_conv2d": "ternary", "ternary_perm_conv2d": "ternary",
                    "nm_conv2d": "nm", "binary_conv2d": "binary"}


def winograd_prefix(conv_prefix: str | None) -> str | None:
    """The Winograd conv prefix (without ``_nhwc``: ``shift_winograd_conv2d``) a layer whose
    direct compressed conv is ``conv_prefix`` runs instead, or ``conv_prefix`` itself."""
    fmt = WINOGRAD_FORMATS.get(conv_prefix)
    return f"{fmt}_winograd_conv2d" if fmt else conv_prefix


def _factory(key: str, dims: tuple[int, ...]) -> WinogradConv2dTask:
    prefix = key.split(":")[0]
    if prefix == PREFIX:
        fmt_extra, extra = "", None
    else:
        _, fmt_extra, extra = FORMATS[prefix.removesuffix("_winograd_conv2d_nhwc") + "_conv2d"]
    want = 9 + fmt_extra.count("x")
    if len(dims) != want:
        raise WorkloadError(f"workload '{key}' needs {want} dimensions ({prefix}:NxCxHxWxOx3x3x1x1{fmt_extra})")
    n, c, h, w, o = dims[:5]
    check_sizes(key, {"X": n * c * h * w, "U": 16 * o * c, "Y": n * o * h * w})
    shape = ConvShape(*dims[:9], layout="NHWC")
    if prefix == PREFIX:
        return WinogradConv2dTask(key, shape)
    return CompressedWinogradTask(key, shape, extra(dims[9:]) if extra else {})


def _kinds() -> dict[str, TaskKind]:
    kinds = {PREFIX: TaskKind(_factory, "NxCxHxWxOx3x3x1x1", summary="Winograd F(2x2,3x3) conv2d, NHWC in and out, "
                                                                        "dense weight transformed at build time")}
    for conv_prefix, (fmt_cls, extra_form, _) in FORMATS.items():
        what = fmt_cls.family.replace("_dense", "")
        kinds[conv_prefix.removesuffix("_conv2d") + "_" + PREFIX] = TaskKind(
            _factory, "NxCxHxWxOx3x3x1x1" + extra_form,
            summary=f"Winograd F(2x2,3x3) conv2d with {what} weights decoded and transformed each call, NHWC")
    return kinds


FAMILY = register_family(OpFamily(
    "winograd_conv2d", "Winograd F(2x2,3x3) convolutions (3x3, stride 1), channels last, epilogue fused",
    tasks=_kinds(), schedules="tvmopt.schedules.winograd"))
