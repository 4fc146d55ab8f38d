"""Integer products for quantized activations: ``int8_dense:MxNxK``.

A layer whose input the model quantizes (ONNX ``QuantizeLinear`` then ``DequantizeLinear``, one
scale and zero point for the tensor; or DeepShift's fixed-point rounding of 8 bits or fewer)
and whose weight rows are each a scale times small integers, ``W[n, k] = a_n * t[n, k]`` with
``|t| <= 127`` exactly in fp32 (binary ±a, ternary ±a/0, powers of two ±2^p spanning at most 7
exponents per row as DeepShift's 4-bit weights do, or per-channel int8 weights), computes exactly

    y[m, n] = s * a_n * (sum_k q[m, k] * t[n, k]  -  zp * sum_k t[n, k])

with ``q`` the uint8 activations: an integer product with int32 accumulation, the zero point's
term subtracted in int32, one rounding to fp32 at the end. On CPUs with AVX-512 VNNI the inner
product is ``vpdpbusd`` (16 outputs x 4 bytes of K per instruction, tensorized from
:data:`VNNI_INTRIN`). Only where the model says the activations are quantized: fp32 semantics are
never changed.

On AVX2 the same 16 x 4 step is two ``vpmaddubsw`` (pairs of u8 x s8 products summed in int16,
saturating) and two ``vpmaddwd`` by ones (:data:`AVX2_INTRIN`): exact where each pair of weights
has ``|t0| + |t1| <= 128`` (:func:`pairs_fit`), as binary, ternary and DeepShift's powers of two
up to 64 have. Other weights (ONNX Runtime's int8) run *wide*, ``int8_dense:MxNxKx2``: int16
weights in panels ``[N/16, K/2, 16, 2]`` and the input widened to int16 by the pass, each step
two ``vpmaddwd`` of a broadcast pair of inputs (:data:`WIDE_INTRIN`), exact for weights up to 255
in magnitude: as many products per multiply as ``vpmaddubsw`` gives (ONNX Runtime's own AVX2
kernel runs ``vpmaddubsw`` on whole int8 weights and accepts the saturation). With VNNI, uint8 weights whose
zero point is 0 or 255 (integers up to 255) are two bytes each over a doubled K
(:func:`byte_parts`).

Kernel arrays: the weight as int8 in VNNI panels ``[N/16, K/4, 16, 4]``, the per-output
``Scale = s * a_n`` (fp32) and ``Offset = -zp * sum_k t[n, k]`` (int32; bias and activation
follow as a fused epilogue). Knobs: ``tile_m`` rows and ``tile_n`` 16-output vectors per register
tile, ``parallel`` over the tiles, ``rows_first`` (the row tiles outermost, else the weight's
panels: :data:`ROWS_FIRST_MAX_BYTES`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from tvmopt.ops.kernel import Kernel
from tvmopt.ops.registry import OpFamily, TaskKind, register_family
from tvmopt.ops.task import TASK_ANNOTATION, Task
from tvmopt.schedules.space import Choice, Config, Space

#: outputs and reduction bytes per vpdpbusd
LANES, GROUP = 16, 4
#: outputs per ymm half on AVX2
HALF = 8
#: the largest integer weight (int8, and vpdpbusd's 16-bit products of 255 * 127 do not saturate)
T_MAX = 127
#: the int32 accumulator's bound: 255 * sum_k |t[n, k]| + zp * |sum_k t[n, k]| stays below it
ACC_MAX = 2 ** 31 - 1
VNNI_INTRIN = "tvmopt_u8s8i32_16x4_vnni"
AVX2_INTRIN = "tvmopt_u8s8i32_16x4_avx2"
WIDE_INTRIN = "tvmopt_u8s16i32_16x2_avx2"
#: AVX2 (no VNNI): ``vpmaddubsw`` sums two u8 x s8 products in int16 and saturates, so each pair
#: of weights it pairs (k = 2j, 2j+1) must have ``|t0| + |t1| <= PAIR_MAX`` (255 * 128 < 2^15):
#: binary, ternary and DeepShift's powers of two up to 64 always do; other weights run *wide*
PAIR_MAX = 128
#: wide tasks (``int8_dense:MxNxKx2``): int16 weights, 2 of K per int32 lane (``vpmaddwd``)
WIDE_GROUP = 2
#: the largest integer weight of a wide task (uint8 weights whose zero point is 0 or 255)
WIDE_MAX = 255
#: weights up to this many bytes start with the row tiles outermost (``rows_first``): each thread
#: then owns whole output rows, where with the weight's panels outermost two threads split every
#: row, and a uint8 output of 64 channels (one cache line a pixel) was written half by each. The
#: weight, re-read per row tile, stays in L2. ResNet-18's QDQ u8 build ran 1.08x faster (1.02x
#: onnxruntime, was 0.93x; its 64 x 576 layers' in-place im2col stopped costing more on 2 threads
#: than on 1); BERT-base's layers (2.4 MB weights) kept the panels first (rows first: 0.99x)
ROWS_FIRST_MAX_BYTES = 256 << 10


@dataclass
class Int8DenseTask(Task):
    key: str
    m: int
    n: int
    k: int
    #: bytes per weight: 1 (int8) or 2 (int16, "wide": ``vpmaddwd`` on AVX2, exact for any weight)
    width: int = 1
    params: dict = field(default_factory=dict)

    def __post_init__(self):
        from tvmopt.errors import WorkloadError
        from tvmopt.schedules.isa import current

        if self.width not in (1, 2):
            raise WorkloadError(f"workload '{self.key}': the 4th dimension is bytes per weight, 1 or 2")
        if self.n % LANES or self.k % GROUP:
            raise WorkloadError(f"workload '{self.key}' needs N a multiple of {LANES} and K of {GROUP}")
        #: the instruction set the task was made for (inputs for AVX2 respect ``PAIR_MAX``)
        self.vnni = current().vnni
        rows = tuple(t for t in (1, 2, 4, 8) if self.m % t == 0)
        vectors = tuple(t for t in (1, 2, 4) if (self.n // LANES) % t == 0)
        # AVX-512: 8 rows x 2 vectors, 16 of its 32 registers accumulate; AVX2: 4 rows x 1 vector
        # of 16 outputs (two ymm each), 8 of 16 (4 x 2 spilled: 1.50 against 1.38 ms on
        # int8_dense:128x3072x768, Zen 4 running AVX2 code)
        avx512 = current().lanes >= 16
        start_rows = max(t for t in rows if t <= (8 if avx512 else 4))
        start_vectors = max(t for t in vectors if t <= (2 if avx512 else 1))
        small = self.n * self.k * self.width <= ROWS_FIRST_MAX_BYTES
        self.space = Space("int8_dense-llvm", (
            Choice("tile_m", rows, default=rows.index(start_rows)),
            Choice("tile_n", vectors, default=vectors.index(start_vectors)),
            Choice("parallel", (False, True), default=1),
            Choice("rows_first", (False, True), default=int(small))))
        self.flops = 2.0 * self.m * self.n * self.k

    # ---- inputs and reference ----
    def make_inputs(self, rng):
        _, x_dtype, w_dtype = _layout(self.width)
        q = rng.integers(0, 256, (self.m, self.k)).astype(x_dtype)
        top = WIDE_MAX if self.width == 2 else T_MAX if self.vnni else PAIR_MAX // 2   # what the pass gives each
        t = rng.integers(-top, top + 1, (self.n, self.k)).astype(w_dtype)
        scale = rng.uniform(1e-5, 1e-4, self.n).astype(np.float32)
        offset = -rng.integers(0, 256) * t.sum(axis=1, dtype=np.int32)
        return [q] + self.to_kernel([t, scale, offset])

    def reference(self, inputs):
        q, packed, scale, offset = inputs
        t = unpack(packed)
        acc = q.astype(np.int64) @ t.astype(np.int64).T + offset
        return (acc.astype(np.float32) * scale).astype(np.float32)

    def tolerance(self):
        return 1e-5, 1e-6

    def to_kernel(self, arrays):
        """[t int8 [N, K], Scale, Offset] -> [panels (VNNI's; int16 pairs when wide), Scale, Offset]."""
        t, scale, offset = arrays
        return [pack(t, self.width), scale.astype(np.float32), offset.astype(np.int32)]

    # ---- compute and schedule ----
    def compute(self):
        from tvm import te

        m, n, k = self.m, self.n, self.k
        group, x_dtype, w_dtype = _layout(self.width)
        q = te.placeholder((m, k), x_dtype, name="Q")           # wide: widened by the pass
        w = te.placeholder((n // LANES, k // group, LANES, group), w_dtype, name="W")
        scale = te.placeholder((n,), "float32", name="Scale")
        offset = te.placeholder((n,), "int32", name="Offset")
        r = te.reduce_axis((0, k), name="k")
        acc = te.compute((m, n), lambda i, j: te.sum(
            q[i, r].astype("int32") * w[j // LANES, r // group, j % LANES, r % group].astype("int32"), axis=r),
            name="C", attrs={TASK_ANNOTATION: self.key})
        y = te.compute((m, n), lambda i, j: (acc[i, j] + offset[j]).astype("float32") * scale[j], name="Y")
        return [q, w, scale, offset, y]

    fuses_epilogue = True

    def apply(self, sch, block, config: Config | None, epilogue=()) -> list:
        return apply_int8(sch, block, self.space, self.space.initial() if config is None else config, epilogue,
                          self.width)

    def primfunc(self, config: Config | None = None):
        import tvm
        from tvm import te

        func = te.create_prim_func(self.compute()).with_attr("global_symbol", "main")
        sch = tvm.s_tir.Schedule(tvm.IRModule({"main": func}))
        self.apply(sch, sch.get_sblock("C"), config, [sch.get_sblock("Y")])
        return sch.mod["main"]

    def schedule(self, config, target):
        import tvm

        return tvm.IRModule({"main": self.primfunc(config)})


def _layout(width: int) -> tuple[int, str, str]:
    """``(K per lane, input dtype, weight dtype)`` of a task with ``width``-byte weights."""
    return (WIDE_GROUP, "int16", "int16") if width == 2 else (GROUP, "uint8", "int8")


def pack(t: np.ndarray, width: int = 1) -> np.ndarray:
    """int8 [N, K] -> [N/16, K/4, 16, 4]: one vpdpbusd operand per (panel, k group); ``width``
    2: int16 [N/16, K/2, 16, 2], two vpmaddwd operands per (panel, k pair)."""
    n, k = t.shape
    group, _, w_dtype = _layout(width)
    return np.ascontiguousarray(t.astype(w_dtype)
                                .reshape(n // LANES, LANES, k // group, group).transpose(0, 2, 1, 3))


def unpack(packed: np.ndarray) -> np.ndarray:
    p, g, lanes, group = packed.shape
    return np.ascontiguousarray(packed.transpose(0, 2, 1, 3).reshape(p * lanes, g * group))


def apply_int8(sch, block, space: Space, config: Config, epilogue=(), width: int = 1) -> list:
    """Schedule the int32 product ``block`` (and inline ``epilogue``, starting with the
    dequantizing stage, into its write-back); returns the epilogue blocks left over."""
    from tvmopt.errors import ConfigError
    from tvmopt.schedules.gemm import inline_epilogue, unroll_tile
    from tvmopt.schedules.isa import current

    if not space.contains(config):
        raise ConfigError(f"config {config} is not in the space {space.name}")
    knob = space.as_dict(config)
    local = sch.cache_write(block, 0, "local")
    leftover = inline_epilogue(sch, epilogue)
    i, j, r = sch.get_loops(block)[-3:]
    i0, i1 = sch.split(i, [None, knob["tile_m"]])
    j0, j1, j2 = sch.split(j, [None, knob["tile_n"], LANES])
    r0, r1 = sch.split(r, [None, _layout(width)[0]])
    outer, inner = (i0, j0) if knob["rows_first"] else (j0, i0)
    sch.reorder(outer, inner, r0, i1, j1, j2, r1)
    sch.reverse_compute_at(local, inner)
    tile = sch.fuse(outer, inner)
    if knob["parallel"]:
        sch.parallel(tile)
    wb = sch.get_loops(local)[-1]
    sch.vectorize(sch.split(wb, [None, LANES])[1])
    init = sch.decompose_reduction(block, r0)
    sch.vectorize(sch.get_loops(init)[-1])
    register_intrinsics()
    sch.tensorize(j2, WIDE_INTRIN if width == 2 else VNNI_INTRIN if current().vnni else AVX2_INTRIN)
    sch.unroll(i1)
    sch.unroll(j1)
    unroll_tile(sch, init, local)
    return leftover


def _dot_desc(x_dtype: str, w_dtype: str, group: int):
    """The description every intrinsic here tensorizes: 16 int32 sums, each plus ``group``
    products of the input's ``group`` values and one output's weights."""
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def desc(a: T.Buffer((group,), x_dtype, offset_factor=1), b: T.Buffer((LANES, group), w_dtype, offset_factor=1),
             c: T.Buffer((LANES,), "int32", offset_factor=1, scope="local")) -> None:
        with T.sblock("root"):
            T.reads(c[0:LANES], a[0:group], b[0:LANES, 0:group])
            T.writes(c[0:LANES])
            for lane in T.serial(0, LANES):
                for g in T.serial(0, group):
                    with T.sblock("update"):
                        vl, vg = T.axis.remap("SR", [lane, g])
                        c[vl] = c[vl] + T.cast(a[vg], "int32") * T.cast(b[vl, vg], "int32")

    return desc


@functools.cache
def register_intrinsics() -> None:
    """The 16 x 4 u8 x s8 -> i32 dot product as ``llvm.x86.avx512.vpdpbusd.512`` and, for AVX2,
    as two halves of ``vpmaddubsw`` (pairs to int16) then ``vpmaddwd`` by ones (to int32); the
    wide 16 x 2 i16 x i16 -> i32 one as two ``vpmaddwd`` (once)."""
    import tvm
    from tvm.script import tirx as T

    desc = _dot_desc("uint8", "int8", GROUP)

    @T.prim_func(s_tir=True)
    def impl(a: T.Buffer((GROUP,), "uint8", offset_factor=1), b: T.Buffer((LANES, GROUP), "int8", offset_factor=1),
             c: T.Buffer((LANES,), "int32", offset_factor=1, scope="local")) -> None:
        with T.sblock("root"):
            T.reads(c[0:LANES], a[0:GROUP], b[0:LANES, 0:GROUP])
            T.writes(c[0:LANES])
            four = T.reinterpret(a.vload([0], "uint8x4"), dtype="int32")           # one K group of x
            c[T.ramp(T.int32(0), 1, LANES)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"), c.vload([0], dtype="int32x16"),
                T.reinterpret(T.broadcast(four, LANES), dtype="int8x64"), b.vload([0, 0], dtype="int8x64"),
                dtype="int32x16")

    @T.prim_func(s_tir=True)
    def avx2(a: T.Buffer((GROUP,), "uint8", offset_factor=1), b: T.Buffer((LANES, GROUP), "int8", offset_factor=1),
             c: T.Buffer((LANES,), "int32", offset_factor=1, scope="local")) -> None:
        with T.sblock("root"):
            T.reads(c[0:LANES], a[0:GROUP], b[0:LANES, 0:GROUP])
            T.writes(c[0:LANES])
            four = T.reinterpret(a.vload([0], "uint8x4"), dtype="int32")
            x = T.reinterpret(T.broadcast(four, HALF), dtype="int8x32")
            for h in T.unroll(2):
                pairs = T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.ub.sw"), x,
                    b.vload([h * HALF, 0], dtype="int8x32"), dtype="int16x16")
                c[T.ramp(h * HALF, 1, HALF)] = c.vload([h * HALF], dtype="int32x8") + T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"), pairs, T.broadcast(T.int16(1), 16),
                    dtype="int32x8")

    wide_desc = _dot_desc("int16", "int16", WIDE_GROUP)

    @T.prim_func(s_tir=True)
    def wide(a: T.Buffer((WIDE_GROUP,), "int16", offset_factor=1),
             b: T.Buffer((LANES, WIDE_GROUP), "int16", offset_factor=1),
             c: T.Buffer((LANES,), "int32", offset_factor=1, scope="local")) -> None:
        with T.sblock("root"):
            T.reads(c[0:LANES], a[0:WIDE_GROUP], b[0:LANES, 0:WIDE_GROUP])
            T.writes(c[0:LANES])
            pair = T.reinterpret(a.vload([0], "int16x2"), dtype="int32")      # two of x: one vpbroadcastd
            x = T.reinterpret(T.broadcast(pair, HALF), dtype="int16x16")
            for h in T.unroll(2):
                c[T.ramp(h * HALF, 1, HALF)] = c.vload([h * HALF], dtype="int32x8") + T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"), x,
                    b.vload([h * HALF, 0], dtype="int16x16"), dtype="int32x8")

    tvm.s_tir.TensorIntrin.register(VNNI_INTRIN, desc, impl)
    tvm.s_tir.TensorIntrin.register(AVX2_INTRIN, desc, avx2)
    tvm.s_tir.TensorIntrin.register(WIDE_INTRIN, wide_desc, wide)


def integer_rows(weight: np.ndarray):
    """``(t, alpha)``: int8 ``t`` [N, K] and fp32 ``alpha`` [N] with ``alpha[n] * t[n, k]``
    equal to ``weight[n, k]`` in fp32 for every weight, ``|t| <= 127``; or None. Each row tries
    scales: its largest magnitude (±1/0 rows), its smallest nonzero one (powers of two, small
    multiples) and its largest over 127 (per-channel int8 weights, ``float32(q) * s``; the
    float32 quotient and its two neighbours)."""
    w = np.asarray(weight, np.float32)
    mag = np.abs(w)
    top = mag.max(axis=1)
    least = np.where(mag > 0, mag, np.inf).min(axis=1)
    t = np.zeros(w.shape, np.int8)
    alpha = np.ones(w.shape[0], np.float32)
    found = np.zeros(w.shape[0], bool)
    int8 = (top / np.float32(T_MAX)).astype(np.float32)          # DequantizeLinear's s, to an ulp
    # one scale for the whole tensor (ONNX Runtime's per-tensor int8 weights): a row whose
    # largest |q| is below 127 and whose smallest is above 1 has neither of its own scales
    whole = np.full_like(top, least.min()) if np.isfinite(least).any() else least
    whole_int8 = np.full_like(top, top.max() / np.float32(T_MAX))
    guesses = (top, least, int8, np.nextafter(int8, np.float32(np.inf)), np.nextafter(int8, np.float32(0)),
               whole, whole_int8)
    for guess in guesses:
        rows = ~found & np.isfinite(guess) & (guess > 0)
        if not rows.any():
            continue
        a = guess[rows].astype(np.float32)[:, None]
        q = np.rint(w[rows] / a)
        exact = (np.abs(q) <= T_MAX).all(axis=1) & ((q.astype(np.float32) * a) == w[rows]).all(axis=1)
        idx = np.flatnonzero(rows)[exact]
        t[idx], alpha[idx] = q[exact], a[exact, 0]
        found[idx] = True
    found |= top == 0                                       # an all-zero row: t = 0
    return (t, alpha) if found.all() else None


def byte_parts(t: np.ndarray) -> list[np.ndarray] | None:
    """Integers ``t`` [N, K] as int8 parts of the same shape that sum to ``t``, for VNNI's
    bytes: one part where ``t`` fits int8; else the fewest ``p`` parts ``floor((t + i) / p)``,
    ``i < p``, which sum to ``t`` and keep its signs (uint8 weights whose zero point is 0 or 255:
    2). None beyond 4 parts."""
    wide = np.asarray(t, np.int64)
    for p in range(1, 5):
        parts = [(wide + i) // p for i in range(p)]
        if all(_in_int8(part) for part in parts):
            return [part.astype(np.int8) for part in parts]
    return None


def _in_int8(t: np.ndarray) -> bool:
    return t.min(initial=0) >= -128 and t.max(initial=0) <= T_MAX


def pairs_fit(t: np.ndarray) -> bool:
    """Whether AVX2's ``vpmaddubsw`` multiplies int8 weights ``t`` [N, K] exactly: each pair it
    sums (k = 2j, 2j+1) within ``PAIR_MAX`` in magnitude."""
    t = np.asarray(t, np.int64)
    return _in_int8(t) and bool((np.abs(t[:, 0::2]) + np.abs(t[:, 1::2]) <= PAIR_MAX).all())


def _split(kernel: Kernel) -> Kernel | None:
    """``kernel`` with its integer weight ``t`` [N, K] (``arrays[0]``) as the CPU multiplies it
    exactly: with VNNI in :func:`byte_parts` along K (the input read once per part); on AVX2 as
    int8 where its pairs fit ``vpmaddubsw``, else wide (int16 weights read with an int16 input,
    ``vpmaddwd``: as many products per multiply as the bytes' pairs give, where two parts of a
    byte over a doubled K took twice the instructions). None where neither fits."""
    from tvmopt.schedules.isa import current

    t = np.asarray(kernel.arrays[0], np.int64)
    if not current().vnni:
        if pairs_fit(t):
            kernel.arrays[0] = t.astype(np.int8)
            return kernel
        if np.abs(t).max(initial=0) > WIDE_MAX:
            return None
        _, x_dtype, w_dtype = _layout(2)
        kernel.arrays[0] = t.astype(w_dtype)
        kernel.key_dims = (2,)
        kernel.input_dtype = x_dtype
        kernel.structure += ", as int16 (vpmaddwd)"
        kernel.compact_bytes += t.size
        return kernel
    parts = byte_parts(t)
    if parts is None:
        return None
    if len(parts) > 1:
        kernel.input_copies = len(parts)
        kernel.reduction *= len(parts)
        kernel.structure += f", each weight {len(parts)} bytes (K x{len(parts)})"
        kernel.compact_bytes += t.size * (len(parts) - 1)
    kernel.arrays[0] = np.concatenate(parts, axis=1)
    return kernel


def int8_kernel(weight: np.ndarray, scale: float, zero_point: int) -> Kernel | None:
    """The int8 kernel of a [N, K] fp32 weight whose rows are ``a_n * t`` with integers ``t``
    (:func:`integer_rows`), applied to activations quantized with ``scale`` and ``zero_point``
    (uint8); None when the weight has no such form, its int32 sums could overflow or the shape
    does not fit the panels. Its input is read ``input_copies`` times (:func:`byte_parts`)."""
    n, k = weight.shape
    if n % LANES or k % GROUP:
        return None
    rows = integer_rows(weight)
    if rows is None:
        return None
    t, alpha = rows
    wide = t.astype(np.int64)
    total = wide.sum(axis=1)
    if (255 * np.abs(wide).sum(axis=1) + zero_point * np.abs(total)).max() > ACC_MAX:
        return None
    s = (np.float32(scale) * alpha).astype(np.float32)
    offset = (-zero_point * total).astype(np.int32)
    return _split(Kernel("int8_dense", f"{_kind(t)} weights, uint8 activations (integer product)", n, k,
                            [t, s, offset], compact_bytes=t.size + s.nbytes + offset.nbytes))


def _kind(t: np.ndarray) -> str:
    mags = np.unique(np.abs(t)).tolist()
    if max(mags, default=0) > T_MAX:
        return "uint8"
    return ("binary" if mags == [1] else "ternary" if set(mags) <= {0, 1}
            else "powers-of-two" if all(v & (v - 1) == 0 for v in mags) else "int8")


def integer_matmul_kernel(t: np.ndarray) -> Kernel | None:
    """The kernel of ONNX's ``MatMulInteger`` with a constant weight: ``t`` the integers
    ``B - b_zero_point`` [K, N] (-255 to 255: uint8 weights whose zero point is not 128 too),
    uint8 activations whose zero point is data (ONNX Runtime's ``DynamicQuantizeLinear`` computes
    it from each input): unit scales, and an ``Offset`` of zeros that the caller replaces by
    ``-zp * column_sums(t)`` at run time. The output is float32 of the int32 sums, which is what
    the ``Cast`` after ``MatMulInteger`` computes. Its input is read ``input_copies`` times
    (:func:`byte_parts`). None where the shape does not fit the panels or the int32 sums could
    overflow for some zero point (0 to 255)."""
    k, n = t.shape
    if n % LANES or k % GROUP or t.min(initial=0) < -255 or t.max(initial=0) > 255:
        return None
    wide = t.astype(np.int64)
    if (255 * np.abs(wide).sum(axis=0) + 255 * np.abs(wide.sum(axis=0))).max(initial=0) > ACC_MAX:
        return None
    rows = np.ascontiguousarray(wide.T)
    scale, offset = np.ones(n, np.float32), np.zeros(n, np.int32)
    return _split(Kernel("int8_dense", f"{_kind(rows)} weights, uint8 activations (MatMulInteger)", n, k,
                               [rows, scale, offset], compact_bytes=rows.size + scale.nbytes + offset.nbytes))


def column_sums(kern: Kernel) -> np.ndarray:
    """int32 [N]: the sums over K of each output's integer weights (the zero point's term)."""
    return kern.arrays[0].astype(np.int64).sum(axis=1).astype(np.int32)


def _make(key, dims):
    from tvmopt.errors import WorkloadError

    if len(dims) not in (3, 4):
        raise WorkloadError(f"workload '{key}' needs 3 dimensions (int8_dense:MxNxK, or MxNxKx2 for int16 weights)")
    return Int8DenseTask(key, *dims)


FAMILY = register_family(OpFamily(
    "int8_dense", "quantized activations times integer weights (±1/0, powers of two, int8): int8 products with int32 accumulation (VNNI)",
    tasks={"int8_dense": TaskKind(_make, "MxNxK[x2]", summary="uint8 activations x int8 weights (x2: int16), per-output scale")}))
