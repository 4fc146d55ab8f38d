"""Ternary weights in {-1, 0, +1} (times a scale the pass applies), 2-bit codes decoded with two
integer ops: ``w = (c & 1) - (c >> 1)`` for c in {0: 0, 1: +1, 2: -1}.

Kernel layout: ``codes`` uint8 [ceil(K/4), N], field ``k % 4`` of byte ``k // 4``.
"""

from __future__ import annotations

from .decoded import DecodedDenseTask, WeightSpec, bitfield, pack_fields, register_family, unpack_fields


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


register_family(TernaryDenseTask)
