"""Ternary weights in {-1, 0, +1} (times a scale the pass applies), 2-bit codes decoded with two
integer ops: ``w = (c & 1) - (c >> 1)`` for c in {0: 0, 1: +1, 2: -1}.

Kernel layout: ``codes`` uint8 [ceil(K/4), N], field ``k % 4`` of byte ``k // 4``.
"""

from __future__ import annotations

from .decoded import (DecodedDenseTask, LookupTableMixin, WeightSpec, bitfield, pack_fields, register_family,
                      unpack_fields)


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
    per_byte = 4

    def byte_term(self, b, j, value):
        c = (b >> (2 * j)) & 3
        return value * ((c & 1) - (c >> 1)).astype("float32")


register_family(TernaryDenseTask)
register_family(TernaryLutDenseTask)
