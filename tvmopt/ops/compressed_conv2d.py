"""Direct compressed convolutions: the dense direct conv2d loop nest (``conv2d:``, NCHW in and
out, epilogue fused) reading a weight that is *decoded* from the compressed arrays in blocks,
inside the convolution's loops; no im2col, and the dense fp32 weight never exists in memory.

One task kind per weight format, named after it: ``binary_conv2d``, ``ternary_conv2d``,
``shift_conv2d``, ``nm_conv2d``, ``hashed_conv2d``, ``codebook_conv2d``, and each with ``_nhwc``
(``shift_conv2d_nhwc``: channels last in and out, as ``conv2d_nhwc``). Key: the ``conv2d:``
key's nine dimensions (``NxCxHxWxOxKHxKWxSxP``) followed by the format's own (N:M, buckets and
hashes, codebook entries), e.g. ``nm_conv2d:1x64x56x56x64x3x3x1x1x2x4``.

The arrays are the compressed dense op's (``tvmopt.ops.<format>_dense``) for the weight seen as
``[K = C*KH*KW, N = O]``, in its panel layout (panels of ``ob`` output channels: the conv's
channel block), so the decode of one (c, kh, kw) row of a block reads one contiguous vector of
codes. The decode stage ``decode[O/ob, C, KH, KW, ob]`` is placed by the ``decode`` knob:

- ``chunk``: inside the parallel loop, for the channel blocks that iteration computes: each
  weight is decoded once per (image, channel chunk) into a buffer that stays in L2 and is read
  by every spatial tile of the chunk (memory traffic: the compressed arrays only);
- ``global``: once per call, in parallel, into a whole decoded weight (what the start config
  uses when the parallel loop holds too few chunks, e.g. the first stage of a ResNet at batch 1,
  where the weight is small);
- ``thread``: inside the parallel loop split into one iteration per thread: each thread decodes
  the whole weight, then computes its share (one image with a small weight: no parallel pass of
  the decode's own; on a map of ``ROWS_MIN_PIXELS`` and more with the cores splitting the rows
  of pixels, ``parallel = rows``, each thread's rows read every channel).

The rest of the space is the dense conv's (``schedules/conv2d.py``): the same knobs, tuned by
every tuner; a record of ``conv2d:`` shape does not apply (the key differs), so each is tuned on
its own. N:M weights are decoded to their dense block (zeros included): on a CPU the fp32 FMAs
of the dense block are cheaper than gathering inputs per kept weight, which is what made the
im2col + ``nm_dense`` path 20x slower than onnxruntime on SqueezeNet.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import WorkloadError
from ..schedules.conv2d import PARALLEL_ROWS, ConvShape, apply_conv2d, conv2d_space
from ..schedules.space import Choice, Config, Space
from ..target import host_cores
from .binary_dense import BinaryDenseTask
from .codebook_dense import CodebookDenseTask
from .conv2d import conv_compute, conv_epilogue, input_shape, reference_in_layout
from .decoded import _PanelView
from .hashed_dense import HashedDenseTask
from .nm_dense import NMDenseTask
from .registry import OpFamily, TaskKind, register_family
from .shift_dense import ShiftDenseTask
from .task import Task, check_sizes
from .ternary_dense import TernaryDenseTask

#: conv task prefix -> (the dense op whose arrays and decode it uses, the key's extra dimensions,
#: extra dimensions -> params)
FORMATS = {
    "binary_conv2d": (BinaryDenseTask, "", None),
    "ternary_conv2d": (TernaryDenseTask, "", None),
    "shift_conv2d": (ShiftDenseTask, "", None),
    "nm_conv2d": (NMDenseTask, "xNNxMM", lambda d: {"n": d[0], "m": d[1]}),
    "hashed_conv2d": (HashedDenseTask, "xBUCKETSxHASHES", lambda d: {"buckets": d[0], "hashes": d[1]}),
    "codebook_conv2d": (CodebookDenseTask, "xC", lambda d: {"entries": d[0]}),
}

#: the compressed dense families (kernel recipes of tvmopt.ops.kernel) -> their conv task
CONV_OF = {"binary_dense": "binary_conv2d", "binary_lut_dense": "binary_conv2d",
           "ternary_dense": "ternary_conv2d", "ternary_lut_dense": "ternary_conv2d",
           "shift_dense": "shift_conv2d", "nm_dense": "nm_conv2d", "nm_decode_dense": "nm_conv2d", "hashed_dense": "hashed_conv2d",
           "codebook_dense": "codebook_conv2d"}

DECODE = ("chunk", "global", "thread")

#: formats whose decode costs many instructions per weight (a hash, a table lookup): decoded
#: once per call as soon as there is more than one image
COSTLY_DECODE = ("hashed_conv2d", "codebook_conv2d")

#: a batch decodes per chunk (and per image) once the decoded weight is larger than this (L2)
CHUNK_MIN_BYTES = 1 << 20

#: a batch whose images have at most this many output pixels, and whose decoded weight outgrows
#: L2 (``CHUNK_MIN_BYTES``), decodes each channel chunk once for all its images (``batch_at =
#: inner``); on larger maps the image's own tiles reuse a chunk enough (16x256x14x14: 0.91 to
#: 0.94x the per-image chunk's speed), and a weight that fits L2 is cheap to decode per image
#: (16x64x8x8x64: 0.81 to 0.82x, against 0.87 to 0.96x)
DECODE_ONCE_MAX_PIXELS = 64

#: the parallel loop needs this many (image, channel chunk) iterations for ``decode=chunk`` to
#: start: fewer would leave cores idle (the weight is then small and decoded once per call)
CHUNK_MIN_PARALLEL = 4

#: one image whose decoded weight fits L2 (``CHUNK_MIN_BYTES``) and which has at least this
#: many output pixels: the cores split the rows of pixels (``parallel = rows``, as the dense
#: conv's start where its maps are large), each decoding the whole small weight first (``decode
#: = thread``). On the Intel Xeon (channels last, paired rounds against the dense conv's start)
#: ternary and shift went from 0.87 to 0.91x to 1.00 to 1.02x at 1x64x56x56x64, from 0.82 to
#: 0.96x (chunk or global by channels) to 0.99 to 1.00x at 1x128x28x28x128, from 0.82 to 0.86x
#: to 0.99 to 1.01x at 1x64x56x56x128 stride 2. Past L2 each thread would decode a weight it
#: cannot keep (1x512x7x7x512 decoded once by rows: 0.58x; by channel chunks 0.85 to 0.94x)
ROWS_MIN_PIXELS = 256
#: ... and one image of fewer pixels with a decoded weight this small decodes it per thread too,
#: keeping the channel split: no parallel pass of the decode's own before a short conv (ResNet-20's
#: 1x64x8x8x64: 0.84 to 0.91x -> 0.92 to 0.96x, its 1x32x16x16x32: 0.75 to 0.81x -> 0.94x,
#: ResNet-18's 1x1 shortcuts 1x128x28x28x256 stride 2: 0.93 to 0.97x -> 0.96 to 0.98x); a larger
#: weight decoded twice for few pixels loses (1x256x14x14x512 1x1, 49 pixels: 0.80 to 0.87x, per
#: chunk 0.88 to 0.93x)
THREAD_MAX_BYTES = 256 * 1024


def conv_key(prefix: str, dims: tuple[int, ...], key_dims: tuple[int, ...] = ()) -> str:
    return f"{prefix}:" + "x".join(str(d) for d in tuple(dims) + tuple(key_dims))


class DenseArraysConv:
    """A convolution whose weight arrays are a compressed dense op's (``self.weights``: that op's
    task, for the weight seen as ``[K = C*KH*KW, N = O]``) on the conv's ``self.shape``: the
    arrays, inputs, numpy reference and tolerance every such conv kernel shares (the direct
    compressed convs here, the row-table convs of ops/row_table_conv2d.py)."""

    def to_kernel(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """The dense op's logical arrays ([K, O] for the weight [O, C*KH*KW].T) -> its kernel layout."""
        return self.weights.to_kernel(arrays)

    def dense_weight(self, kernel_arrays: list[np.ndarray]) -> np.ndarray:
        """numpy: the [O, C, KH, KW] float32 weight the kernel arrays encode."""
        s = self.shape
        w = self.weights.dense_weight(self.weights.logical(kernel_arrays))       # [K, O]
        return np.ascontiguousarray(w.T.reshape(s.o, s.c, s.kh, s.kw))

    def make_inputs(self, rng):
        x = rng.uniform(-1, 1, size=input_shape(self.shape)).astype(np.float32)
        return [x] + self.to_kernel(self.weights.random_weights(rng))

    def reference(self, inputs):
        x, *arrays = inputs
        return reference_in_layout(self.shape, x, self.dense_weight(arrays))

    def tolerance(self):
        return 1e-4, 1e-5 * max(1.0, (self.shape.c * self.shape.kh * self.shape.kw) ** 0.5)


@dataclass
class CompressedConv2dTask(DenseArraysConv, Task):
    key: str
    shape: ConvShape
    params: dict = field(default_factory=dict)

    def __post_init__(self):
        s = self.shape
        if s.oh < 1 or s.ow < 1:
            raise WorkloadError(f"{self.key}: the kernel is larger than the padded input")
        fmt_cls = FORMATS[self.format][0]
        # the weight as the dense op sees it: [K = C*KH*KW, N = O] (one row of X: unused)
        self.weights = fmt_cls(self.key, 1, s.o, s.c * s.kh * s.kw, params=dict(self.params))
        self.params = self.weights.params
        base = conv2d_space(s, name=f"{self.family}-llvm")
        knobs = base.knobs + (Choice("decode", DECODE),)
        self.space = Space(base.name, knobs, start=self._start(base))
        self.flops = 2.0 * s.n * s.o * s.oh * s.ow * s.c * s.kh * s.kw      # dense-equivalent

    @property
    def format(self) -> str:
        """The weight format's conv prefix (``shift_conv2d``), whatever the layout."""
        return self.family.removesuffix("_nhwc")

    def _start(self, base: Space) -> Config:
        """The dense conv's start with the decode placed (benchmarks/conv_kernels.py, ResNet-18's
        3x3 layers on Zen 5): per chunk (parallel = 2) where the (image, channel chunk) loop has
        enough parallel work and either there is one image or the format decodes cheaply and its
        decoded weight outgrows L2 (``CHUNK_MIN_BYTES``); otherwise once per call. At batch 16,
        512x7x7: binary chunk 1.03x the dense conv, global 0.89x (the 9 MiB decoded weight is
        written and read back through memory); 64x56x56: chunk 0.95x, global 1.00x; hashed
        chunk 0.56 to 0.58x (decoded again for every image), global 0.93 to 1.01x.

        A batch of small maps (``DECODE_ONCE_MAX_PIXELS``) with a decoded weight larger than L2
        and enough channel chunks (``CHUNK_MIN_PARALLEL``) runs its images inside the chunks
        (``batch_at = inner``, only the chunks in parallel), so each chunk is decoded once per
        call and read from L2 by every image: on VGG's layers at batch 16 (Zen 4,
        AVX2, channels last) shift 512x2x2 went from 0.36x to 0.92x the dense conv, 512x4x4
        from 0.71x to 1.09x, ternary 512x4x4 from 0.90x to 1.11x, ResNet-18's 512x7x7 from
        0.91x to 0.99x.

        One image whose decoded weight fits L2, on a map of ``ROWS_MIN_PIXELS`` or more: the
        cores split the rows of pixels (``parallel = rows``), each decoding the whole weight first
        (``decode = thread``); one image of a smaller map with a weight of ``THREAD_MAX_BYTES``
        decodes per thread too, keeping the channel split."""
        s, start = self.shape, base.initial()
        if s.flat:
            # a pointwise layer on a starved map computes one flat row of pixels, as the dense
            # conv does (``ConvShape.flat``), its weight decoded once per call: SqueezeNet's 1x1
            # layers (Ice Lake Xeon, one layer, warm) 0.94 to 1.08x the dense conv, where the 2-D
            # tiles by rows with a decode per thread ran 0.51 to 0.55x at 27x27 and 55x55
            return start + ("global",)
        c0, _ = base.as_dict(start)["tile_c"]
        decoded = 4 * s.o * s.c * s.kh * s.kw
        if s.n == 1 and decoded <= CHUNK_MIN_BYTES and s.oh * s.ow >= ROWS_MIN_PIXELS:
            rows = base.replaced(start, {"parallel": PARALLEL_ROWS}) + ("thread",)
            if base.contains(rows[:-1]):
                return rows
        if s.n == 1 and decoded <= THREAD_MAX_BYTES:
            return start + ("thread",)
        if s.n > 1 and c0 >= CHUNK_MIN_PARALLEL and s.oh * s.owp <= DECODE_ONCE_MAX_PIXELS and decoded > CHUNK_MIN_BYTES:
            # the images inside the channel chunks, only the chunks in parallel: each chunk's
            # weights decoded once per call into L2 and read there by every image
            batched = base.replaced(start, {"parallel": 1, "batch_at": "inner"})
            if base.contains(batched):
                return batched + ("chunk",)
        if s.n * c0 >= CHUNK_MIN_PARALLEL and (
                s.n == 1 or (self.format not in COSTLY_DECODE and decoded > CHUNK_MIN_BYTES)):
            chunked = base.replaced(start, {"parallel": 2}) + ("chunk",)
            if base.contains(chunked[:-1]):
                return chunked
        return start + ("global",)

    def with_params(self, params: dict) -> "CompressedConv2dTask":
        return type(self)(self.key, self.shape, {**self.params, **params})

    # ---- TE ----
    def compute(self, x=None):
        """TE: (X, *compressed arrays, Y); the decode stage is ``decode``."""
        from tvm import te

        s, fmt = self.shape, self.weights
        X = x if x is not None else te.placeholder(input_shape(s), "float32", name="X")
        specs = fmt.weight_specs()
        raw = [te.placeholder(fmt.kernel_shape(spec), spec.dtype, name=spec.name) for spec in specs]
        tensors = [_PanelView(t, fmt.panel) if fmt._paneled(spec) else t for t, spec in zip(raw, specs)]
        ob, kh, kw = s.ob, s.kh, s.kw
        W = te.compute((s.o // ob, s.c, kh, kw, ob),
                       lambda oo, c, r, q, b: fmt.te_weight(tensors, (c * kh + r) * kw + q, oo * ob + b),
                       name="decode")
        return (X, *raw, conv_compute(s, X, W, self.key))

    def schedule(self, config: Config, target):
        import tvm
        from tvm import te

        func = te.create_prim_func(list(self.compute())).with_attr("global_symbol", "main")
        sch = tvm.s_tir.Schedule(tvm.IRModule({"main": func}))
        self.apply(sch, sch.get_sblock("conv"), config, conv_epilogue(sch))
        return sch.mod

    fuses_epilogue = True

    def apply(self, sch, block, config: Config | None, epilogue=()) -> list:
        """The dense conv's schedule, then the decode stage placed and vectorized along ``ob``."""
        config = self.space.initial() if config is None else config
        decode = next(b for b in sch.get_producers(block) if sch.get(b).name_hint.startswith("decode"))
        placement = self.space.as_dict(config)["decode"]
        # thread: the parallel loop as one iteration per thread, each decoding the whole weight
        # before its share of the work (no parallel pass of its own for the decode); the build
        # host's core count (any thread pool runs it correctly, a larger one leaves cores idle)
        threads = host_cores() if placement == "thread" else 0
        leftover = apply_conv2d(sch, block, self.shape, self.space, config, epilogue, threads=threads)
        if placement in ("chunk", "thread"):
            sch.compute_at(decode, sch.get_loops(block)[0], preserve_unit_loops=True)
        else:
            sch.parallel(sch.get_loops(decode)[0])
        loops = sch.get_loops(decode)
        if self.shape.ob > 1:
            sch.vectorize(loops[-1])
        return leftover


def _kind(prefix: str, layout: str = "NCHW") -> TaskKind:
    fmt_cls, extra_form, extra = FORMATS[prefix]
    nhwc = layout == "NHWC"
    prefix += "_nhwc" if nhwc else ""

    def factory(key: str, dims: tuple[int, ...]) -> CompressedConv2dTask:
        want = 9 + extra_form.count("x")
        if len(dims) != want:
            raise WorkloadError(f"workload '{key}' needs {want} dimensions ({prefix}:NxCxHxWxOxKHxKWxSxP{extra_form})")
        n, c, h, w, o, kh, kw = dims[:7]
        check_sizes(key, {"X": n * c * h * w, "the decoded weight": o * c * kh * kw,
                          "Y": n * o * max(h, 1) * max(w, 1)})
        return CompressedConv2dTask(key, ConvShape(*dims[:9], layout=layout, flatten=True), extra(dims[9:]) if extra else {})

    what = fmt_cls.family.replace("_dense", "")
    return TaskKind(factory, "NxCxHxWxOxKHxKWxSxP" + extra_form, zero_ok=(8,),
                    summary=f"direct conv2d with {what} weights decoded in blocks (no im2col)"
                            + (", NHWC in and out" if nhwc else ""))


FAMILY = register_family(OpFamily(
    "compressed_conv2d", "direct convolutions over compressed weights, decoded in blocks inside the loops",
    tasks={**{prefix: _kind(prefix) for prefix in FORMATS},
           **{prefix + "_nhwc": _kind(prefix, "NHWC") for prefix in FORMATS}},
    schedules="tvmopt.schedules.conv2d"))
