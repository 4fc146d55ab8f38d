"""Compressed dense kernels through lookup tables shared by a tile of rows (LUT-GEMM and BiQGEMM,
with the rows of X in the vector lanes): for weights with few values per weight (binary: ±1,
ternary: -1/0/+1), each group of 4 weights along K has few possible patterns, 16 or 81. For every
group g and pattern e the prologue computes the partial sums of all M rows,
``Table[g, e, m] = sum_j coef(digit j of e) * X[m, 4g + j]``, and the product becomes
``C[m, n] = sum_g Table[g, code[g, n], m]``: one vector load and add per group of 4 weights for a
vector of rows, where the dense product does 4 FMAs (plus their broadcasts).

Costs: the table holds ``E`` entries per group and row (built from tables of pairs, ``E +
2 sqrt(E)`` adds), the product N lookups per group and row, so the tables pay for themselves
from a few hundred outputs. X needs 8 rows or more (one AVX2 vector; M is padded to the row
block); one row at a time, ``*_lut_dense`` (per-byte tables, scalar lookups) is the form that
pays.

A group's code names two table indices, its pairs of weights as base-``base`` numbers (binary:
4 sign bits, two groups per byte, the ``binary_dense`` byte layout unchanged; ternary: one group
per byte, each nibble ``(w_0 + 1) + 3 (w_1 + 1)`` of a pair, so a byte holds 4 ternary weights as
in ``ternary_dense``, recoded). Weights are stored in
``binary_dense``'s panels [N/16, bytes, 16].
"""

from __future__ import annotations

from ..schedules.row_tables import apply_row_tables, row_table_space
from ..schedules.space import Config
from tvmopt.ops.task import TASK_ANNOTATION

from .decoded import DecodedDenseTask, _PanelView

#: weights per table group
GROUP = 4
#: the fewest rows the kernels take (one AVX2 vector)
ROW_TABLE_MIN_ROWS = 8


def takes_rows(m: int) -> bool:
    """Whether a row-table kernel can compute ``m`` rows (fewer than a vector: the per-byte tables
    of ``*_lut_dense`` or the decode kernels)."""
    return m >= ROW_TABLE_MIN_ROWS


class RowTableDenseTask(DecodedDenseTask):
    """The shared kernel; a format sets ``base`` (digits per weight value), ``groups_per_byte``,
    ``coef(digit)`` (TIR: the weight a digit stands for) and its code layout."""

    base = 2
    groups_per_byte = 2
    #: rows per table block where M is a multiple of it, in two blocks or more (a dense layer's
    #: own kernel, not a convolution's product, whose pixel blocks are 16)
    wide_block = 16
    #: no CUDA view: on a GPU the layer runs the format's decode kernel
    cpu_only = True

    def __post_init__(self):
        from ..schedules.isa import current

        self.params = {**self.default_params(), **self.params}
        if not takes_rows(self.m):
            from ..errors import WorkloadError

            raise WorkloadError(f"workload '{self.key}': row tables need at least {ROW_TABLE_MIN_ROWS} rows")
        self.shape = None
        self.space = row_table_space(self.padded_rows, self.row_block, self.n, self.code_bytes, self.groups_per_byte,
                                     f"{self.family}-llvm", current().lanes)
        self.flops = 2.0 * self.m * self.n * self.k

    @property
    def decodes_tiles(self) -> bool:
        return False

    @property
    def code_bytes(self) -> int:
        return -(-self.k // (GROUP * self.groups_per_byte))

    @property
    def row_block(self) -> int:
        """Rows per table block: the tables are [M / block, groups, entries, block], so a tile of
        rows reads one contiguous slice (with the rows of all M in one line per entry, each tile's
        slice spread over every page of the table: at 128 x 768 x 3072, 1.5x slower)."""
        m = self.m
        wide = self.wide_block
        if wide > 16 and m % wide == 0 and m >= 2 * wide and self.key.startswith(self.family + ":"):
            return wide
        return 8 if m % 16 and (m % 8 == 0 or m < 16) else 16

    @property
    def padded_rows(self) -> int:
        """M rounded up to the row block (the rows past M are zeros, never written out)."""
        return -(-self.m // self.row_block) * self.row_block

    def coef(self, digit):
        raise NotImplementedError

    def te_code(self, byte, h):
        """TIR: the table entry of group ``h`` of a weight byte: (high pair, low pair), each a
        number below ``base ** 2`` (int32)."""
        raise NotImplementedError

    def compute(self):
        from tvm import te

        x = te.placeholder((self.m, self.k), "float32", name="X")
        raw, acc = self.te_lookup(lambda row, kk: x[row, kk], self.key)
        rb = self.row_block
        out = te.compute((self.m, self.n), lambda i, j: acc[i // rb, j, i % rb], name="Out")
        return [x, raw, out]

    def te_lookup(self, element, key: str):
        """TE: the weight placeholder and ``C[r, n, i]``, the product for row ``r * block + i``
        (rows past M: zeros). ``element(row, kk)``: TIR, X's value at a row below M and a
        reduction index below K (the operand: a matrix, or a convolution's image)."""
        import tvm
        from tvm import te

        m, k, base, rb = self.m, self.k, self.base, self.row_block
        groups = self.code_bytes * self.groups_per_byte
        (spec,) = self.weight_specs()
        raw = te.placeholder(self.kernel_shape(spec), spec.dtype, name=spec.name)
        codes = _PanelView(raw, self.panel) if self._paneled(spec) else raw
        blocks = self.padded_rows // rb

        # X transposed in blocks of rows, zero past K: the pairs read whole vectors of rows
        # (reading X itself gathers a column of the block for every pair entry)
        def transposed(r, kk, i):
            row = r * rb + i
            inside = tvm.tirx.all(kk < k, row < m) if self.padded_rows > m else kk < k
            return tvm.tirx.Select(inside, element(tvm.tirx.min(row, m - 1), tvm.tirx.min(kk, k - 1)),
                                   tvm.tirx.const(0.0, "float32"))

        xt = te.compute((blocks, groups * GROUP, rb), transposed, name="XT")

        def pair(r, p, e, i):      # pairs of weights: base^2 patterns
            return self.coef(e % base) * xt[r, 2 * p, i] + self.coef(e // base) * xt[r, 2 * p + 1, i]

        pairs = te.compute((blocks, 2 * groups, base * base, rb), pair, name="Pairs")
        half = base * base
        # entries as (high pair, low pair): affine in the loops, so the tables can be built inside
        # the product's loops (a flat entry index split by % and // of 9 defeats bound inference)
        table = te.compute((blocks, groups, half, half, rb),
                           lambda r, g, eh, el, i: pairs[r, 2 * g, el, i] + pairs[r, 2 * g + 1, eh, i],
                           name="Table")
        b = te.reduce_axis((0, self.code_bytes), name="b")
        h = te.reduce_axis((0, self.groups_per_byte), name="h")

        def entry(j, which):    # clamped, so bound inference can place the tables inside the loops
            return tvm.tirx.min(self.te_code(codes[b, j], h)[which], half - 1)

        acc = te.compute((blocks, self.n, rb),
                         lambda r, j, i: te.sum(table[r, b * self.groups_per_byte + h, entry(j, 0), entry(j, 1), i],
                                                axis=[b, h]),
                         name="C", attrs={TASK_ANNOTATION: key})
        return raw, acc

    def apply(self, sch, block, config: Config | None, epilogue=()) -> list:
        config = self.space.initial() if config is None else config
        return apply_row_tables(sch, self.space, config, epilogue)
