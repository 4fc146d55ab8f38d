"""Binary and ternary weights through tables held in vector registers: ``binary_perm_dense:MxNxK``,
``ternary_perm_dense:MxNxK`` and their channels-last convolutions (AVX-512).

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

Ternary weights (``ternary_perm_dense``) group 3 weights: 27 patterns, a table of 32 entries in
two registers looked up by ``vpermt2ps`` (5-bit codes, 6 per word: 18 weights, 1.8 bits per
weight); one permute and add per 16 outputs and 3 weights, 1.5x the dense peak on paper.

``binary_perm_conv2d_nhwc:NxCxHxWxOxKHxKWxSxP`` (and ``ternary_perm_conv2d_nhwc``) is the same product as a direct convolution,
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
from .compressed_conv2d import DenseArraysConv
from .decoded import decoded_task
from .ternary_dense import TernaryDenseTask


@dataclass(frozen=True)
class CodeFormat:
    """How a code word holds its groups: ``per_word`` groups of ``group`` weights, each a
    ``bits``-bit index into a table of ``entries`` partial sums (16: one register, ``vpermps``;
    32: two, ``vpermt2ps``). A weight is a digit below ``base`` (standing for ``digit * 2 - 1``
    in binary, ``digit - 1`` in ternary); a group's code is its digits as a base-``base``
    number, weight j of the group the j-th digit."""

    name: str
    group: int
    bits: int
    per_word: int
    entries: int
    base: int
    #: the stored word's dtype: ``int32``, or ``uint16`` for half words (``BINARY16``), widened
    #: to int32 once per call (``widened``)
    word: str = "int32"

    @property
    def weights_per_word(self) -> int:
        return self.group * self.per_word

    def widened(self, codes):
        """TE: the stored words as the int32 words the kernel's shifts and permutes read: the
        placeholder itself, or half words widened once per call in a stage of their own (a few
        hundred words; widening them where the register tile loads them cost 9% at
        1x16x32x32x16)."""
        from tvm import te

        if self.word == "int32":
            return codes
        return te.compute(codes.shape, lambda *i: codes(*i).astype("int32"), name="Words32")

    def coef(self, e, j):
        """TIR: the weight (a float) that digit ``j`` of table entry ``e`` stands for."""
        digit = (e >> j) & 1 if self.base == 2 else (e // self.base ** j) % self.base
        return (digit * 2 - 1 if self.base == 2 else digit - 1).astype("float32")

    def pack(self, digits: np.ndarray) -> np.ndarray:
        """Digits [L, ...] (L a whole number of words' weights) -> code words [L / weights_per_word, ...]
        (``word``: int32, or uint16 half words, holding the little-endian ``bits``-bit codes)."""
        d = digits.astype(np.uint64).reshape(-1, self.per_word, self.group, *digits.shape[1:])
        places = (self.base ** np.arange(self.group, dtype=np.uint64)).reshape((1, 1, -1) + (1,) * (digits.ndim - 1))
        codes = (d * places).sum(axis=2)                                  # [words, per_word, ...]
        shifts = (self.bits * np.arange(self.per_word, dtype=np.uint64)).reshape((1, -1) + (1,) * (digits.ndim - 1))
        words = (codes << shifts).sum(axis=1)
        if self.word == "uint16":
            return np.ascontiguousarray(words.astype(np.uint16))
        return np.ascontiguousarray(words.astype(np.uint32).view(np.int32))

    def unpack(self, words: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`pack`: digits [words * weights_per_word, ...]."""
        w = words.view(np.uint16 if self.word == "uint16" else np.uint32).astype(np.uint64)[:, None]
        shifts = (self.bits * np.arange(self.per_word, dtype=np.uint64)).reshape((1, -1) + (1,) * (words.ndim - 1))
        codes = (w >> shifts) & ((1 << self.bits) - 1)                   # [words, per_word, ...]
        places = (self.base ** np.arange(self.group, dtype=np.uint64)).reshape((1, 1, -1) + (1,) * (words.ndim - 1))
        digits = (codes[:, :, None] // places) % self.base
        return digits.reshape(-1, *words.shape[1:]).astype(np.int64)


BINARY = CodeFormat("binary", group=4, bits=4, per_word=8, entries=16, base=2)
#: binary convolutions of 16 input channels (a CIFAR ResNet's first stage): one tap's 16
#: channels per 16-bit word (1 bit stored per weight), so no permute is spent on padding channels
BINARY16 = CodeFormat("binary16", group=4, bits=4, per_word=4, entries=16, base=2, word="uint16")
#: 27 patterns of 3 ternary weights in two registers (``vpermt2ps``): 18 weights per word, 1.8
#: bits per weight
TERNARY = CodeFormat("ternary", group=3, bits=5, per_word=6, entries=32, base=3)


def _digits(task, arrays) -> np.ndarray:
    """The [K, N] digits of a binary or ternary dense task's logical arrays."""
    w = task.dense_weight(arrays)
    return (w > 0).astype(np.int64) if task.fmt.base == 2 else np.rint(w).astype(np.int64) + 1


def _from_digits(task, digits: np.ndarray) -> list[np.ndarray]:
    """The inverse of :func:`_digits`: the task's logical arrays."""
    from .binary_dense import pack_signs
    from .decoded import pack_fields

    if task.fmt.base == 2:
        return [pack_signs(digits * 2 - 1, 8)]
    w = digits - 1
    return [pack_fields(np.where(w < 0, 2, w), 2)]


def takes(m: int, n: int) -> bool:
    """Whether the kernel can compute a layer of ``m`` rows and ``n`` outputs."""
    return m >= 1 and n % LANES == 0


def _need_avx512(key: str) -> None:
    from tvmopt.schedules.isa import current

    if current().lanes < LANES:
        raise WorkloadError(f"workload '{key}' needs AVX-512 (vpermps on 16-lane registers); the target has "
                            f"{current().name}: binary layers run binary_rowlut_dense or binary_conv2d there")


class PermDenseTask:
    """Register tables for a dense layer; mixed in before the format's decode task (its
    logical arrays, random weights and dense weight), with ``fmt`` its code format."""

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
        self.space = perm_space(self.m, self.n, self.k, f"{self.family}-llvm", self.fmt.entries)
        self.flops = 2.0 * self.m * self.n * self.k       # dense-equivalent

    @property
    def decodes_tiles(self) -> bool:
        return False

    @property
    def words(self) -> int:
        return -(-self.k // self.fmt.weights_per_word)

    # ---- layout: the format's logical arrays <-> code words [ceil(K / weights per word), N] ----
    def kernel_shape(self, spec):
        return (self.words, self.n)

    def to_kernel(self, arrays):
        digits = np.zeros((self.words * self.fmt.weights_per_word, self.n), np.int64)
        digits[: self.k] = _digits(self, arrays)
        return [self.fmt.pack(digits)]

    def logical(self, arrays):
        (words,) = arrays
        return _from_digits(self, self.fmt.unpack(words)[: self.k])

    # ---- compute and schedule ----
    def compute(self):
        import tvm
        from tvm import te

        m, k, fmt = self.m, self.k, self.fmt
        x = te.placeholder((m, k), "float32", name="X")
        codes = te.placeholder((self.words, self.n), fmt.word, name="Words")
        words = fmt.widened(codes)
        groups = self.words * fmt.per_word

        def term(row, kk, e, j):           # input kk times the weight digit j of entry e stands for
            if self.words * fmt.weights_per_word == k:
                return x[row, kk] * fmt.coef(e, j)
            return tvm.tirx.Select(kk < k, x[row, tvm.tirx.min(kk, k - 1)],
                                   tvm.tirx.const(0.0, "float32")) * fmt.coef(e, j)

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
            code = (words[g // fmt.per_word, j] >> ((g % fmt.per_word) * fmt.bits)) & mask
            return te.sum(tvm.tirx.Select(code == e, tab[row, g, e], tvm.tirx.const(0.0, "float32")), axis=[g, e])

        out = te.compute((m, self.n), product, name="C", attrs={TASK_ANNOTATION: self.key})
        return [x, codes, out]

    def apply(self, sch, block, config: Config | None, epilogue=()) -> list:
        config = self.space.initial() if config is None else config
        return apply_perm(sch, self.space, config, self.fmt, epilogue)


class BinaryPermDenseTask(PermDenseTask, BinaryDenseTask):
    """Binary weights (``binary_dense``'s arrays) through register tables and ``vpermps``."""

    family = "binary_perm_dense"
    fmt = BINARY


class TernaryPermDenseTask(PermDenseTask, TernaryDenseTask):
    """Ternary weights (``ternary_dense``'s arrays) through register tables and ``vpermt2ps``."""

    family = "ternary_perm_dense"
    fmt = TERNARY


#: the conv tasks' formats: prefix -> (code format, the dense task of its logical arrays)
CONV_FORMATS = {"binary_perm_conv2d_nhwc": (BINARY, BinaryDenseTask),
                "ternary_perm_conv2d_nhwc": (TERNARY, TernaryDenseTask)}


@dataclass
class PermConv2dTask(DenseArraysConv, Task):
    """``binary_perm_conv2d_nhwc`` and ``ternary_perm_conv2d_nhwc``: convolutions through
    register tables (module doc). Inputs, reference and tolerance are those of every conv over a
    dense op's arrays (``DenseArraysConv``); the code words are this kernel's own layout."""

    key: str
    shape: ConvShape
    params: dict = field(default_factory=dict)

    fuses_epilogue = True
    tensorized = True

    def __post_init__(self):
        s = self.shape
        _need_avx512(self.key)
        if s.oh < 1 or s.ow < 1:
            raise WorkloadError(f"{self.key}: the kernel is larger than the padded input")
        if s.o % LANES:
            raise WorkloadError(f"workload '{self.key}': the output channels (O = {s.o}) must be a multiple of {LANES}")
        # the arrays as the format's dense op holds them, for the weight seen as [K = C*KH*KW, N = O]
        self.fmt, dense = CONV_FORMATS[self.family]
        if self.fmt is BINARY and s.c % BINARY.weights_per_word and s.c <= BINARY16.weights_per_word:
            self.fmt = BINARY16
        self.weights = dense(self.key, 1, s.o, s.c * s.kh * s.kw)
        self.weights.fmt = self.fmt
        self.space = perm_conv_space(s, f"{self.family}-llvm", self.fmt.entries)
        self.flops = 2.0 * s.n * s.o * s.oh * s.ow * s.c * s.kh * s.kw      # dense-equivalent

    @property
    def subsampled(self) -> bool:
        """A 1x1 kernel with a stride (a ResNet's downsampling shortcut): tables are built for the
        input pixels it reads only (for every input pixel, 3 in 4 unread at stride 2: 0.66x the
        dense conv at 1x64x56x56x128)."""
        s = self.shape
        return s.kh == s.kw == 1 and s.stride > 1

    @property
    def words(self) -> int:
        """Code words per tap: the channels in groups of a word's weights."""
        return -(-self.shape.c // self.fmt.weights_per_word)

    # ---- arrays ----
    def to_kernel(self, arrays):
        """The dense op's logical arrays (weight [C*KH*KW, O]) -> code words [KH, KW, words, O]."""
        s = self.shape
        digits = np.zeros((self.words * self.fmt.weights_per_word, s.kh, s.kw, s.o), np.int64)
        digits[: s.c] = _digits(self.weights, arrays).reshape(s.c, s.kh, s.kw, s.o)
        return [np.ascontiguousarray(self.fmt.pack(digits).transpose(1, 2, 0, 3))]

    def dense_weight(self, kernel_arrays) -> np.ndarray:
        """numpy: the [O, C, KH, KW] weight the code words encode."""
        s = self.shape
        (words,) = kernel_arrays
        digits = self.fmt.unpack(np.ascontiguousarray(words.transpose(2, 0, 1, 3)))[: s.c]   # [C, KH, KW, O]
        w = digits * 2 - 1 if self.fmt.base == 2 else digits - 1
        return np.ascontiguousarray(w.astype(np.float32).transpose(3, 0, 1, 2))

    def with_params(self, params: dict) -> "PermConv2dTask":
        return self

    # ---- TE ----
    def compute(self, x=None):
        import tvm
        from tvm import te

        s, fmt, p = self.shape, self.fmt, self.shape.pad
        X = x if x is not None else te.placeholder((s.n, s.h, s.w, s.c), "float32", name="X")
        codes = te.placeholder((s.kh, s.kw, self.words, s.o), fmt.word, name="Words")
        words = fmt.widened(codes)
        groups = self.words * fmt.per_word
        zero = tvm.tirx.const(0.0, "float32")

        def pixel(n, y, xx, cc):       # the zero-padded image
            inside = ([y >= p, y < s.h + p, xx >= p, xx < s.w + p] if p else []) + \
                     ([cc < s.c] if self.words * fmt.weights_per_word != s.c else [])
            value = X[n, tvm.tirx.max(tvm.tirx.min(y - p, s.h - 1), 0) if p else y,
                      tvm.tirx.max(tvm.tirx.min(xx - p, s.w - 1), 0) if p else xx, tvm.tirx.min(cc, s.c - 1)]
            return tvm.tirx.Select(tvm.tirx.all(*inside), value, zero) if inside else value

        def table(n, y, xx, g, e):
            total = pixel(n, y, xx, g * fmt.group) * fmt.coef(e, 0)
            for j in range(1, fmt.group):
                total = total + pixel(n, y, xx, g * fmt.group + j) * fmt.coef(e, j)
            return total

        if self.subsampled:     # only the input pixels a 1x1 strided conv reads get tables
            tab = te.compute((s.n, s.oh, s.ow, groups, fmt.entries),
                             lambda n, y, xx, g, e: table(n, y * s.stride, xx * s.stride, g, e), name="Tab")
        else:
            tab = te.compute((s.n, s.h + 2 * p, s.w + 2 * p, groups, fmt.entries), table, name="Tab")
        step = 1 if self.subsampled else s.stride
        r = te.reduce_axis((0, s.kh), name="r")
        q = te.reduce_axis((0, s.kw), name="q")
        g = te.reduce_axis((0, groups), name="g")
        e = te.reduce_axis((0, fmt.entries), name="e")
        mask = (1 << fmt.bits) - 1

        def product(n, y, xx, o):
            code = (words[r, q, g // fmt.per_word, o] >> ((g % fmt.per_word) * fmt.bits)) & mask
            return te.sum(tvm.tirx.Select(code == e, tab[n, y * step + r, xx * step + q, g, e], zero),
                          axis=[r, q, g, e])

        out = te.compute((s.n, s.oh, s.ow, s.o), product, name="C", attrs={TASK_ANNOTATION: self.key})
        return (X, codes, out)

    def apply(self, sch, block, config: Config | None, epilogue=()) -> list:
        config = self.space.initial() if config is None else config
        return apply_perm_conv(sch, self.space, config, self.fmt, 1 if self.subsampled else self.shape.stride,
                               epilogue)

    def schedule(self, config: Config, target):
        import tvm
        from tvm import te

        func = te.create_prim_func(list(self.compute())).with_attr("global_symbol", "main")
        sch = tvm.s_tir.Schedule(tvm.IRModule({"main": func}))
        self.apply(sch, sch.get_sblock("C"), config)
        return sch.mod


def _conv_kind(prefix: str) -> TaskKind:
    def factory(key: str, dims: tuple[int, ...]) -> PermConv2dTask:
        if len(dims) != 9:
            raise WorkloadError(f"workload '{key}' needs 9 dimensions ({prefix}:NxCxHxWxOxKHxKWxSxP)")
        n, c, h, w, o = dims[:5]
        check_sizes(key, {"X": n * c * h * w, "the tables": 11 * n * (h + 2 * dims[8]) * (w + 2 * dims[8]) * c,
                          "Y": n * o * h * w})
        return PermConv2dTask(key, ConvShape(*dims, layout="NHWC"))

    what = prefix.split("_")[0]
    return TaskKind(factory, "NxCxHxWxOxKHxKWxSxP", zero_ok=(8,),
                    summary=f"conv2d with {what} weights, NHWC: tables per input pixel, 16 channels per permute")


FAMILY = register_family(OpFamily(
    "perm_tables", "binary and ternary weights through tables of partial sums held in vector registers "
                   "(vpermps / vpermt2ps, AVX-512)",
    tasks={"binary_perm_dense": decoded_task(BinaryPermDenseTask,
                                             summary="binary weights, real inputs: 16 outputs per vpermps"),
           "ternary_perm_dense": decoded_task(TernaryPermDenseTask,
                                              summary="ternary weights, real inputs: 16 outputs per vpermt2ps"),
           **{prefix: _conv_kind(prefix) for prefix in CONV_FORMATS}},
    schedules="tvmopt.schedules.perm_tables"))
