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

AVX-512 only (``vpermps`` on zmm registers): the pass gives binary layers this kernel where the
target has AVX-512 and the row-table kernel elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tvmopt.errors import WorkloadError
from tvmopt.ops.registry import OpFamily, register_family
from tvmopt.ops.task import TASK_ANNOTATION
from tvmopt.schedules.perm_tables import LANES, apply_perm, perm_space
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
        from tvmopt.schedules.isa import current

        self.params = {**self.default_params(), **self.params}
        if current().lanes < LANES:
            raise WorkloadError(f"workload '{self.key}' needs AVX-512 (vpermps on 16-lane registers); the target "
                                f"has {current().name}: binary layers run binary_rowlut_dense there")
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
            sign = (((e >> j) & 1) * 2 - 1).astype("float32")
            if self.words * WORD == k:
                return x[row, kk] * sign
            return tvm.tirx.Select(kk < k, x[row, tvm.tirx.min(kk, k - 1)], tvm.tirx.const(0.0, "float32")) * sign

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


FAMILY = register_family(OpFamily(
    "perm_tables", "binary weights through tables of partial sums held in vector registers (vpermps, AVX-512)",
    tasks={"binary_perm_dense": decoded_task(BinaryPermDenseTask,
                                             summary="binary weights, real inputs: 16 outputs per vpermps")},
    schedules="tvmopt.schedules.perm_tables"))
