"""Ternary weights in {-1, 0, +1} (times a scale the pass applies), 2-bit codes decoded with two
integer ops: ``w = (c & 1) - (c >> 1)`` for c in {0: 0, 1: +1, 2: -1}.

Kernel layout: ``codes`` uint8 [ceil(K/4), N], field ``k % 4`` of byte ``k // 4``.
"""

from __future__ import annotations

import numpy as np

from tvmopt.model import formats
from tvmopt.ops.kernel import Kernel, array_bytes, scale_bytes
from tvmopt.ops.registry import OpFamily, register_family

from .decoded import (DecodedDenseTask, LookupTableMixin, WeightSpec, bitfield, cuda_view, decoded_task, pack_fields,
                      unpack_fields)
from .row_tables import RowTableDenseTask


class TernaryDenseTask(DecodedDenseTask):
    family = "ternary_dense"

    def weight_specs(self):
        return [WeightSpec("codes", (-(-self.k // 4), self.n), "uint8")]

    def random_weights(self, rng):
        return [pack_fields(rng.integers(0, 3, size=(self.k, self.n)), 2)]

    def dense_weight(self, arrays):
        c = unpack_fields(arrays[0], 2, self.k)
        return ((c & 1) - (c >> 1)).astype("float32")

    def te_weight(self, tensors, kk, j):
        (codes,) = tensors
        c = bitfield(codes[kk // 4, j], kk % 4, 2)
        return ((c & 1) - (c >> 1)).astype("float32")


class TernaryLutDenseTask(LookupTableMixin, TernaryDenseTask):
    """Ternary weights through per-byte lookup tables: a byte holds 4 codes, so for every group g
    of 4 inputs ``T[i, g, b] = sum_j w(code j of b) * x[4g+j]`` over the 256 byte values, and
    ``Y[i, n] = sum_g T[i, g, codes[g, n]]``: one load and one add per 4 weights. Same layout as
    ``ternary_dense``."""

    family = "ternary_lut_dense"
    cuda_unstaged = ("Table",)
    per_byte = 4

    def byte_term(self, b, j, value):
        c = (b >> (2 * j)) & 3
        return value * ((c & 1) - (c >> 1)).astype("float32")



class TernaryRowLutDenseTask(RowTableDenseTask, TernaryDenseTask):
    """Ternary weights through lookup tables shared by a tile of rows (ops/row_tables.py): a byte
    holds 4 weights, each nibble a pair as the base-3 number ``(w_0 + 1) + 3 (w_1 + 1)``; the
    byte selects one of 81 partial sums of 4 inputs for 8 or 16 rows at once. Logical arrays are ``ternary_dense``'s 2-bit codes;
    the kernel layout recodes them."""

    family = "ternary_rowlut_dense"
    base = 3
    groups_per_byte = 1
    #: 32 rows per block where M allows: 4 vectors per lookup for one code's extraction. Same
    #: runs, start configs, Zen 4 with AVX2 code: 128 x 3072 x 768 and 128 x 768 x 3072 ran
    #: 1.15 and 1.16x faster than with 16 rows, 64 x 4096 x 4096 1.09x; binary weights did not
    #: gain (0.83 to 1.03x: a binary code is half the bytes of lookups) and keep 16
    wide_block = 32

    def coef(self, digit):
        return (digit - 1).astype("float32")

    def te_code(self, byte, h):
        byte = byte.astype("int32")
        return byte >> 4, byte & 15

    #: weight j of a group: digit (w + 1) times this, in the byte
    PLACES = np.array([1, 3, 16, 48])

    def to_kernel(self, arrays):
        (codes,) = arrays
        c = unpack_fields(codes, 2, codes.shape[0] * 4).astype(np.int64)
        digits = ((c & 1) - (c >> 1) + 1).reshape(codes.shape[0], 4, -1)
        recoded = (digits * self.PLACES.reshape(1, 4, 1)).sum(axis=1).astype(np.uint8)
        return super().to_kernel([recoded])

    def logical(self, arrays):
        (recoded,) = super().logical(arrays)
        nibbles = np.stack([recoded & 15, recoded >> 4], axis=1).astype(np.int64)     # [bytes, 2, N]
        digits = np.stack([nibbles % 3, nibbles // 3], axis=2)                         # [bytes, 2, 2, N]
        w = (digits - 1).reshape(-1, recoded.shape[1])
        return [pack_fields(np.where(w < 0, 2, w), 2)]


# the lookup-table kernel loses at every size measured (ops_llvm, Zen 3: 1.25x vs 2.49x at
# N = 4096), so the pass never picks it (None); it stays available to `tvmopt tune`
LUT_MIN_OUTPUTS = None


def ternary_kernel(t: np.ndarray, scale) -> Kernel:
    """Weights in {-1, 0, +1} [N, K] times ``scale`` (per output or scalar)."""
    n, k = t.shape
    arrays = [pack_fields(formats.encode_ternary(t).T, 2)]
    family = "ternary_lut_dense" if LUT_MIN_OUTPUTS is not None and n >= LUT_MIN_OUTPUTS else "ternary_dense"
    return Kernel(family, "ternary", n, k, arrays, scale=scale, compact_bytes=array_bytes(arrays) + scale_bytes(scale))


def from_compact(op: str, inputs: dict, attrs: dict) -> Kernel:
    """``ai.tvmopt`` TernaryGemm: 2-bit codes and a per-output alpha."""
    t = formats.decode_ternary(formats.unpack_rows(inputs["codes"], 2, attrs["in_features"]))
    return ternary_kernel(t, inputs["alpha"].astype(np.float32))


FAMILY = register_family(OpFamily(
    "ternary", "weights in {-a, 0, +a} (TTQ, TWN): 2-bit codes decoded in the product",
    tasks={"ternary_dense": decoded_task(TernaryDenseTask, summary="ternary weights, 2-bit codes"),
           "ternary_lut_dense": decoded_task(TernaryLutDenseTask, summary="ternary weights through byte lookup tables"),
           "ternary_rowlut_dense": decoded_task(TernaryRowLutDenseTask,
                                                summary="ternary weights through tables shared by 8 to 32 rows")},
    schedules="tvmopt.schedules.gemm", onnx_ops=("TernaryGemm", "TernaryConv"), from_compact=from_compact,
    cuda=cuda_view, layer="TernaryConv"))
