"""Binary weights through tables held in vector registers: ``binary_perm_dense:MxNxK`` (AVX-512).

For each row m of X and group g of 4 inputs, the 16 partial sums
``Tab[m, g, e] = sum_j (bit j of e ? +1 : -1) * X[m, 4g + j]`` fill one zmm register, and the
4-bit codes of 16 outputs (their 4 signs in group g) fill the lanes of an index vector: one
``vpermps`` then gives all 16 outputs' sums of that group, ``C[m, n] = sum_g Tab[m, g, code(g, n)]``.
One permute (port 5) and one add (port 0) per 16 outputs and 4 weights, where the dense product
issues 4 FMAs on the same two ports: twice its arithmetic peak on paper (the dense kernel's
FMAs reach about 80% of theirs), at 1 bit per weight. The row-table kernels
(ops/row_tables.py) put rows in the lanes instead and look the tables up in memory, one scalar
code at a time; here the outputs are in the lanes and the codes are vectors, so nothing runs
in scalar code. Tables cost 4 FMAs per 16 entries, ``K/4`` per row: small against the product
once N is a few hundred.

Codes: the ``binary_dense`` sign bits (bit ``k % 8`` of byte ``k // 8``: +1) read as 32-bit
little-endian words ``[ceil(K/32), N]``, so word w's nibble t is group ``8w + t``; ``vpermps``
reads the low 4 bits of each lane, so a group's codes are its word shifted right by ``4t``
(one shift per 16 outputs and group, shared by all rows of the tile). K is padded to a whole
word with zero inputs (their sums are 0 whatever the bits). N must be a multiple of 16.

``binary_perm_conv2d_nhwc:NxCxHxWxOxKHxKWxSxP`` is the same product as a direct convolution,
channels last in and out: the tables are built once per *input* pixel (``Tab[n, y, x, g, e]``
over the zero-padded image, groups of 4 channels), and each output pixel looks up, for every
tap (kh, kw) and group, the table of the input pixel under it; no im2col. Codes
``[KH, KW, ceil(C/32), O]`` (channels padded to whole words with zero inputs). A register tile
is ``rows`` output pixels along a row of the output by ``vectors`` x 16 channels.

AVX-512 only (``vpermps`` on zmm registers): the pass gives binary layers these kernels where the
target has AVX-512 and the row-table or decode kernels elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tvmopt.errors import WorkloadError
from tvmopt.ops.registry import OpFamily, TaskKind, register_family
from tvmopt.ops.task import TASK_ANNOTATION, Task, check_sizes
from tvmopt.schedules.conv2d import ConvShape
from tvmopt.schedules.perm_tables import LANES, apply_perm, apply_perm_conv, perm_conv_space, perm_space
from tvmopt.schedules.space import Config

from .binary_dense import BinaryDenseTask
from .decoded import decoded_task

#: bits per 32-bit code word
WORD = 32


@dataclass(frozen=True)
class CodeFormat:
    """How a code word holds its groups: ``per_word`` groups of ``group`` weights, each a
    ``bits``-bit index into a table of ``entries`` partial sums (16: one register, ``vpermps``;
    32: two, ``vpermt2ps``)."""

    name: str
    group: int
    bits: int
    per_word: int
    entries: int


BINARY = CodeFormat("binary", group=4, bits=4, per_word=8, entries=16)


def takes(m: int, n: int) -> bool:
    """Whether the kernel can compute a layer of ``m`` rows and ``n`` outputs."""
    return m >= 1 and n % LANES == 0


def _need_avx512(key: str) -> None:
    from tvmopt.schedules.isa import current

    if current().lanes < LANES:
        raise WorkloadError(f"workload '{key}' needs AVX-512 (vpermps on 16-lane registers); the target has "
                            f"{current().name}: binary layers run binary_rowlut_dense or binary_conv2d there")


def _sign(e, j):
    """TIR: the sign (+1.0 / -1.0) bit ``j`` of table entry ``e`` gives its input."""
    return (((e >> j) & 1) * 2 - 1).astype("float32")


class BinaryPermDenseTask(BinaryDenseTask):
    """Binary weights (``binary_dense``'s arrays) through register tables and ``vpermps``."""

    family = "binary_perm_dense"
    fmt = BINARY
    fuses_epilogue = True
    #: the product is a tensor intrinsic (int32 indices): the pass narrows a fused function first
    tensorized = True
    #: no CUDA view: on a GPU the layer runs binary_dense
    cpu_only = True

    def __post_init__(self):
        self.params = {**self.default_params(), **self.params}
        _need_avx512(self.key)
        if not takes(self.m, self.n):
            raise WorkloadError(f"workload '{self.key}': the outputs (N = {self.n}) must be a multiple of {LANES}")
        self.shape = None
        self.space = perm_space(self.m, self.n, self.k, f"{self.family}-llvm")
        self.flops = 2.0 * self.m * self.n * self.k       # dense-equivalent

    @property
    def decodes_tiles(self) -> bool:
        return False

    @property
    def words(self) -> int:
        return -(-self.k // WORD)

    # ---- layout: sign bytes [ceil(K/8), N] <-> code words [ceil(K/32), N] ----
    def kernel_shape(self, spec):
        return (self.words, self.n)

    def to_kernel(self, arrays):
        (wbits,) = arrays
        padded = np.zeros((self.words * 4, self.n), np.uint8)
        padded[: wbits.shape[0]] = wbits
        words = np.ascontiguousarray(padded.reshape(self.words, 4, self.n).transpose(0, 2, 1)).view("<u4")
        return [np.ascontiguousarray(words[..., 0]).view(np.int32)]

    def logical(self, arrays):
        (words,) = arrays
        stream = np.ascontiguousarray(words).view(np.uint8).reshape(self.words, self.n, 4).transpose(0, 2, 1)
        return [np.ascontiguousarray(stream.reshape(self.words * 4, self.n)[: -(-self.k // 8)])]

    # ---- compute and schedule ----
    def compute(self):
        import tvm
        from tvm import te

        m, k, fmt = self.m, self.k, self.fmt
        x = te.placeholder((m, k), "float32", name="X")
        codes = te.placeholder((self.words, self.n), "int32", name="Words")
        groups = self.words * fmt.per_word

        def term(row, kk, e, j):           # input kk times the sign bit j of entry e gives it
            if self.words * WORD == k:
                return x[row, kk] * _sign(e, j)
            return tvm.tirx.Select(kk < k, x[row, tvm.tirx.min(kk, k - 1)], tvm.tirx.const(0.0, "float32")) * _sign(e, j)

        def table(row, g, e):
            total = term(row, g * fmt.group, e, 0)
            for j in range(1, fmt.group):
                total = total + term(row, g * fmt.group + j, e, j)
            return total

        tab = te.compute((m, groups, fmt.entries), table, name="Tab")
        g = te.reduce_axis((0, groups), name="g")
        e = te.reduce_axis((0, fmt.entries), name="e")
        mask = (1 << fmt.bits) - 1

        def product(row, j):
            code = (codes[g // fmt.per_word, j] >> ((g % fmt.per_word) * fmt.bits)) & mask
            return te.sum(tvm.tirx.Select(code == e, tab[row, g, e], tvm.tirx.const(0.0, "float32")), axis=[g, e])

        out = te.compute((m, self.n), product, name="C", attrs={TASK_ANNOTATION: self.key})
        return [x, codes, out]

    def apply(self, sch, block, config: Config | None, epilogue=()) -> list:
        config = self.space.initial() if config is None else config
        return apply_perm(sch, self.space, config, self.fmt, epilogue)


@dataclass
class BinaryPermConv2dTask(Task):
    """``binary_perm_conv2d_nhwc``: a binary convolution through register tables (module doc)."""

    key: str
    shape: ConvShape
    params: dict = field(default_factory=dict)

    fmt = BINARY
    fuses_epilogue = True
    tensorized = True

    def __post_init__(self):
        s = self.shape
        _need_avx512(self.key)
        if s.oh < 1 or s.ow < 1:
            raise WorkloadError(f"{self.key}: the kernel is larger than the padded input")
        if s.o % LANES:
            raise WorkloadError(f"workload '{self.key}': the output channels (O = {s.o}) must be a multiple of {LANES}")
        # the sign bits as binary_dense holds them, for the weight seen as [K = C*KH*KW, N = O]
        self.weights = BinaryDenseTask(self.key, 1, s.o, s.c * s.kh * s.kw)
        self.space = perm_conv_space(s, f"{self.family}-llvm")
        self.flops = 2.0 * s.n * s.o * s.oh * s.ow * s.c * s.kh * s.kw      # dense-equivalent

    @property
    def words(self) -> int:
        """Code words per tap: the channels in groups of 32."""
        return -(-self.shape.c // WORD)

    # ---- arrays ----
    def to_kernel(self, arrays):
        """binary_dense's sign bytes [ceil(C*KH*KW / 8), O] -> code words [KH, KW, ceil(C/32), O]."""
        s = self.shape
        signs = self.weights.dense_weight(arrays) > 0                                  # [C*KH*KW, O]
        bits = np.zeros((s.kh, s.kw, self.words * WORD, s.o), np.uint64)
        bits[:, :, : s.c] = signs.reshape(s.c, s.kh, s.kw, s.o).transpose(1, 2, 0, 3)
        bits = bits.reshape(s.kh, s.kw, self.words, WORD, s.o) << np.arange(WORD, dtype=np.uint64)[:, None]
        return [np.ascontiguousarray(bits.sum(axis=3).astype(np.uint32).view(np.int32))]

    def dense_weight(self, kernel_arrays) -> np.ndarray:
        """numpy: the [O, C, KH, KW] ±1 weight the code words encode."""
        s = self.shape
        (words,) = kernel_arrays
        bits = (words.view(np.uint32)[:, :, :, None, :] >> np.arange(WORD, dtype=np.uint32)[:, None]) & 1
        bits = bits.reshape(s.kh, s.kw, self.words * WORD, s.o)[:, :, : s.c]
        return np.ascontiguousarray(np.where(bits == 1, 1.0, -1.0).astype(np.float32).transpose(3, 2, 0, 1))

    def make_inputs(self, rng):
        from .conv2d import input_shape

        x = rng.uniform(-1, 1, size=input_shape(self.shape)).astype(np.float32)
        return [x] + self.to_kernel(self.weights.random_weights(rng))

    def reference(self, inputs):
        from .conv2d import reference_in_layout

        x, *arrays = inputs
        return reference_in_layout(self.shape, x, self.dense_weight(arrays))

    def tolerance(self):
        return 1e-4, 1e-5 * max(1.0, (self.shape.c * self.shape.kh * self.shape.kw) ** 0.5)

    def with_params(self, params: dict) -> "BinaryPermConv2dTask":
        return self

    # ---- TE ----
    def compute(self, x=None):
        import tvm
        from tvm import te

        s, fmt, p = self.shape, self.fmt, self.shape.pad
        X = x if x is not None else te.placeholder((s.n, s.h, s.w, s.c), "float32", name="X")
        codes = te.placeholder((s.kh, s.kw, self.words, s.o), "int32", name="Words")
        groups = self.words * fmt.per_word
        zero = tvm.tirx.const(0.0, "float32")

        def pixel(n, y, xx, cc):       # the zero-padded image
            inside = ([y >= p, y < s.h + p, xx >= p, xx < s.w + p] if p else []) + \
                     ([cc < s.c] if self.words * WORD != s.c else [])
            value = X[n, tvm.tirx.max(tvm.tirx.min(y - p, s.h - 1), 0) if p else y,
                      tvm.tirx.max(tvm.tirx.min(xx - p, s.w - 1), 0) if p else xx, tvm.tirx.min(cc, s.c - 1)]
            return tvm.tirx.Select(tvm.tirx.all(*inside), value, zero) if inside else value

        def table(n, y, xx, g, e):
            total = pixel(n, y, xx, g * fmt.group) * _sign(e, 0)
            for j in range(1, fmt.group):
                total = total + pixel(n, y, xx, g * fmt.group + j) * _sign(e, j)
            return total

        tab = te.compute((s.n, s.h + 2 * p, s.w + 2 * p, groups, fmt.entries), table, name="Tab")
        r = te.reduce_axis((0, s.kh), name="r")
        q = te.reduce_axis((0, s.kw), name="q")
        g = te.reduce_axis((0, groups), name="g")
        e = te.reduce_axis((0, fmt.entries), name="e")
        mask = (1 << fmt.bits) - 1

        def product(n, y, xx, o):
            code = (codes[r, q, g // fmt.per_word, o] >> ((g % fmt.per_word) * fmt.bits)) & mask
            return te.sum(tvm.tirx.Select(code == e, tab[n, y * s.stride + r, xx * s.stride + q, g, e], zero),
                          axis=[r, q, g, e])

        out = te.compute((s.n, s.oh, s.ow, s.o), product, name="C", attrs={TASK_ANNOTATION: self.key})
        return (X, codes, out)

    def apply(self, sch, block, config: Config | None, epilogue=()) -> list:
        config = self.space.initial() if config is None else config
        return apply_perm_conv(sch, self.space, config, self.fmt, self.shape.stride, epilogue)

    def schedule(self, config: Config, target):
        import tvm
        from tvm import te

        func = te.create_prim_func(list(self.compute())).with_attr("global_symbol", "main")
        sch = tvm.s_tir.Schedule(tvm.IRModule({"main": func}))
        self.apply(sch, sch.get_sblock("C"), config)
        return sch.mod


def _conv_kind() -> TaskKind:
    def factory(key: str, dims: tuple[int, ...]) -> BinaryPermConv2dTask:
        if len(dims) != 9:
            raise WorkloadError(f"workload '{key}' needs 9 dimensions (binary_perm_conv2d_nhwc:NxCxHxWxOxKHxKWxSxP)")
        n, c, h, w, o = dims[:5]
        check_sizes(key, {"X": n * c * h * w, "the tables": 4 * n * (h + 2 * dims[8]) * (w + 2 * dims[8]) * c,
                          "Y": n * o * h * w})
        return BinaryPermConv2dTask(key, ConvShape(*dims, layout="NHWC"))

    return TaskKind(factory, "NxCxHxWxOxKHxKWxSxP", zero_ok=(8,),
                    summary="conv2d with binary weights, NHWC: tables per input pixel, 16 channels per vpermps")


FAMILY = register_family(OpFamily(
    "perm_tables", "binary weights through tables of partial sums held in vector registers (vpermps, AVX-512)",
    tasks={"binary_perm_dense": decoded_task(BinaryPermDenseTask,
                                             summary="binary weights, real inputs: 16 outputs per vpermps"),
           "binary_perm_conv2d_nhwc": _conv_kind()},
    schedules="tvmopt.schedules.perm_tables"))
