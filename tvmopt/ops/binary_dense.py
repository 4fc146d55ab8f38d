"""Binary weights: ``binary_dense`` (real activations, add/subtract form) and ``xnor_dense``
(binarized activations: XNOR + popcount over 32-bit words).

Kernel layouts (vectorized along the N outputs):
- binary_dense: ``wbits`` uint8 [ceil(K/8), N], bit ``k % 8`` of ``wbits[k // 8, n]`` is 1 for +1.
- xnor_dense: ``wwords`` uint32 [ceil(K/32), N], bit ``k % 32`` of word ``k // 32``; X is
  binarized (x >= 0 -> 1) and packed into words inside the kernel; each word contributes
  ``valid_bits - 2 * popcount(x XOR w)``, so the output equals sign(X) @ W exactly.
"""

from __future__ import annotations

import numpy as np

from .decoded import DecodedDenseTask, WeightSpec, bitfield, register_family


def pack_signs(w_pm1: np.ndarray, word_bits: int) -> np.ndarray:
    """±1 weight [K, N] -> packed [ceil(K/word_bits), N] (uint8 or uint32), bit = (w > 0)."""
    k, n = w_pm1.shape
    words = -(-k // word_bits)
    bits = np.zeros((words * word_bits, n), dtype=np.uint64)
    bits[:k] = w_pm1 > 0
    shifts = np.arange(word_bits, dtype=np.uint64)[None, :, None]
    packed = (bits.reshape(words, word_bits, n) << shifts).sum(axis=1)
    return packed.astype(np.uint8 if word_bits == 8 else np.uint32)


def unpack_signs(packed: np.ndarray, word_bits: int, k: int) -> np.ndarray:
    shifts = np.arange(word_bits, dtype=np.uint64)[None, :, None]
    bits = (packed.astype(np.uint64)[:, None, :] >> shifts) & 1
    return np.where(bits.reshape(-1, packed.shape[1])[:k] == 1, 1.0, -1.0).astype(np.float32)


class BinaryDenseTask(DecodedDenseTask):
    family = "binary_dense"

    def weight_specs(self):
        return [WeightSpec("wbits", (-(-self.k // 8), self.n), "uint8")]

    def random_weights(self, rng):
        return [pack_signs(rng.choice([-1.0, 1.0], size=(self.k, self.n)), 8)]

    def dense_weight(self, arrays):
        return unpack_signs(arrays[0], 8, self.k)

    def te_weight(self, tensors, kk, j):
        (wbits,) = tensors
        return bitfield(wbits[kk // 8, j], kk % 8, 1).astype("float32") * 2.0 - 1.0


class XnorDenseTask(DecodedDenseTask):
    family = "xnor_dense"

    @property
    def k_eff(self):
        return -(-self.k // 32)

    def weight_specs(self):
        return [WeightSpec("wwords", (self.k_eff, self.n), "uint32")]

    def random_weights(self, rng):
        return [pack_signs(rng.choice([-1.0, 1.0], size=(self.k, self.n)), 32)]

    def dense_weight(self, arrays):
        return unpack_signs(arrays[0], 32, self.k)

    def reference(self, inputs):
        x, *arrays = inputs
        return (np.where(x >= 0, 1.0, -1.0) @ self.dense_weight(arrays)).astype(np.float32)

    def tolerance(self):
        return 0.0, 0.0            # integers: exact

    def te_prologue(self, x):
        import tvm
        from tvm import te

        k = self.k
        b = te.reduce_axis((0, 32), name="b")

        def word(i, w):
            idx = w * 32 + b
            one = tvm.tirx.const(1, "uint32") << b.astype("uint32")
            ok = tvm.tirx.all(idx < k, x[i, tvm.tirx.min(idx, k - 1)] >= 0.0)
            return te.sum(tvm.tirx.Select(ok, one, tvm.tirx.const(0, "uint32")), axis=b)

        return te.compute((self.m, self.k_eff), word, name="XBits")

    def te_term(self, xbits, tensors, i, kk, j):
        import tvm

        (wwords,) = tensors
        valid = tvm.tirx.min(32, self.k - kk * 32)
        mismatches = tvm.tirx.popcount(xbits[i, kk] ^ wwords[kk, j]).astype("int32")
        return (valid - 2 * mismatches).astype("float32")

    def _schedule_prologue(self, sch):
        block = sch.get_sblock("XBits")
        loops = sch.get_loops(block)
        sch.parallel(loops[0])


register_family(BinaryDenseTask)
register_family(XnorDenseTask)


class BinaryLutDenseTask(BinaryDenseTask):
    """Binary weights with real activations through per-byte lookup tables (as in LUT-GEMM /
    BiQGEMM): for every group g of 8 inputs, ``T[i, g, b] = sum_j (bit j of b ? x : -x)[8g+j]``
    for all 256 byte values b, then ``Y[i, n] = sum_g T[i, g, wbits[g, n]]``. Eight weights cost
    one table load and one add instead of eight decodes and FMAs; building the table costs
    256 x 8 per group of 8 inputs, shared by all N outputs.

    Same weight layout as ``binary_dense`` (``wbits`` uint8 [ceil(K/8), N]).
    """

    family = "binary_lut_dense"

    @property
    def k_eff(self):
        return -(-self.k // 8)

    def te_prologue(self, x):
        import tvm
        from tvm import te

        k = self.k
        j = te.reduce_axis((0, 8), name="j")

        def entry(i, g, b):
            idx = g * 8 + j
            value = tvm.tirx.Select(idx < k, x[i, tvm.tirx.min(idx, k - 1)], tvm.tirx.const(0.0, "float32"))
            return te.sum(tvm.tirx.Select(((b >> j) & 1) == 1, value, -value), axis=j)

        return te.compute((self.m, self.k_eff, 256), entry, name="Table")

    def te_term(self, table, tensors, i, kk, j):
        (wbits,) = tensors
        return table[i, kk, wbits[kk, j].astype("int32")]

    def start_overrides(self):
        return lut_start(self.n, self.k_eff)

    def _schedule_prologue(self, sch):
        schedule_table(sch)


def lut_start(n: int, groups: int) -> dict:
    """Start config of the lookup-table kernels. Table lookups are gathers, so scalar code with
    a deep unroll beats vectorized gathers: on Zen 3, binary_lut_dense:1x4096x4096 ran 3x faster
    with 2 parallel strips of N, 4 x 64 outputs per strip step and 4 groups per inner step."""
    def divisor(total, options):
        return next((d for d in options if total % d == 0), 1)

    n0 = 2 if n % 2 == 0 else 1
    n3 = divisor(n // n0, (64, 32, 16, 8, 4, 2))
    n2 = divisor(n // (n0 * n3), (4, 2))
    k1 = divisor(groups, (4, 2))
    return {"tile_n": (n0, n // (n0 * n2 * n3), n2, n3), "tile_k": (groups // k1, k1),
            "vectorize": False, "unroll": 64}


def schedule_table(sch) -> None:
    """Parallel over (row, group), vectorized over the 256 byte values."""
    block = sch.get_sblock("Table")
    loops = sch.get_loops(block)
    sch.parallel(sch.fuse(loops[0], loops[1]))
    sch.vectorize(loops[2])


register_family(BinaryLutDenseTask)
