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

from tvmopt.model import formats
from tvmopt.ops.kernel import Kernel, array_bytes, scale_bytes
from tvmopt.ops.registry import OpFamily, register_family

from .decoded import DecodedDenseTask, LookupTableMixin, WeightSpec, bitfield, cuda_view, decoded_task
from .row_tables import RowTableDenseTask


def pack_signs(w_pm1: np.ndarray, word_bits: int) -> np.ndarray:
    """±1 weight [K, N] -> packed [ceil(K/word_bits), N] (uint8 or little-endian uint32 words),
    bit ``k % word_bits`` of word ``k // word_bits`` = (w > 0)."""
    k, n = w_pm1.shape
    bits = np.zeros((-(-k // word_bits) * word_bits, n), dtype=np.int64)
    bits[:k] = w_pm1 > 0
    stream = formats.pack_rows(bits.T, 1)                        # [N, bytes], little-endian bits
    words = stream if word_bits == 8 else np.ascontiguousarray(stream).view("<u4")
    return np.ascontiguousarray(words.T)


def unpack_signs(packed: np.ndarray, word_bits: int, k: int) -> np.ndarray:
    stream = np.ascontiguousarray(np.asarray(packed).T).view(np.uint8)
    bits = formats.unpack_rows(stream, 1, k).T
    return np.where(bits == 1, 1.0, -1.0).astype(np.float32)


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
        return (np.where(x >= 0, 1.0, -1.0) @ self.dense_weight(self.logical(arrays))).astype(np.float32)

    def tolerance(self):
        return 0.0, 0.0            # integers: exact

    @property
    def whole_words(self) -> bool:
        """Whether the inputs fill whole 32-bit words (the packing stage then runs a tensor
        intrinsic, ``_schedule_prologue``, and every word counts 32 valid bits)."""
        return self.k % 32 == 0

    @property
    def tensorized(self) -> bool:
        return self.whole_words

    def numpy_product(self, inputs):
        x, *arrays = inputs
        w = np.ascontiguousarray(self.dense_weight(self.logical(arrays)), dtype=np.float32)
        return lambda: np.where(x >= 0, np.float32(1), np.float32(-1)) @ w

    def te_prologue(self, x):
        import tvm
        from tvm import te

        k = self.k
        b = te.reduce_axis((0, 32), name="b")

        def word(i, w):
            idx = w * 32 + b
            one = tvm.tirx.const(1, "uint32") << b.astype("uint32")
            if self.whole_words:       # the form the packing intrinsic matches
                ok = x[i, idx] >= 0.0
            else:
                ok = tvm.tirx.all(idx < k, x[i, tvm.tirx.min(idx, k - 1)] >= 0.0)
            return te.sum(tvm.tirx.Select(ok, one, tvm.tirx.const(0, "uint32")), axis=b)

        return te.compute((self.m, self.k_eff), word, name="XBits")

    def te_term(self, xbits, tensors, i, kk, j):
        import tvm

        (wwords,) = tensors
        # whole words: the valid bits are the constant 32. As min(32, K - 32k), a Relax-fused
        # function's int64 loop variable made the term int64 (vectors of 16 int64 lanes, converted)
        # and the kernel ran at half speed: 128x768x3072 in a model 1.1 to 1.6 ms against 0.56 to
        # 0.80 ms as a task, 0.47 ms both once constant (Ice Lake Xeon)
        valid = tvm.tirx.const(32, "int32") if self.whole_words else tvm.tirx.min(32, self.k - kk * 32).astype("int32")
        mismatches = tvm.tirx.popcount(xbits[i, kk] ^ wwords[kk, j]).astype("int32")
        return (valid - 2 * mismatches).astype("float32")

    def _schedule_prologue(self, sch):
        """Rows in parallel; inputs in whole words: each word one tensor intrinsic (8 inputs per
        ``vcmpps`` + ``vmovmskps``, :func:`tvmopt.schedules.xnor8_conv2d.pack_signs_intrinsic`)
        instead of 32 selects. On an Ice Lake Xeon, start configs: 128 x 768 x 3072 0.76 -> 0.51 ms,
        128 x 3072 x 768 0.53 -> 0.45 ms, 1 x 4096 x 4096 0.041 -> 0.037 ms."""
        block = sch.get_sblock("XBits")
        loops = sch.get_loops(block)
        sch.parallel(loops[0])
        if self.whole_words:
            from ..schedules.xnor8_conv2d import pack_signs_intrinsic

            sch.decompose_reduction(block, loops[-1])
            sch.tensorize(loops[-1], pack_signs_intrinsic(32))



class BinaryLutDenseTask(LookupTableMixin, BinaryDenseTask):
    """Binary weights with real activations through per-byte lookup tables: for every group g of
    8 inputs, ``T[i, g, b] = sum_j (bit j of b ? x : -x)[8g+j]``, then
    ``Y[i, n] = sum_g T[i, g, wbits[g, n]]``: one load and one add per 8 weights instead of eight
    decodes and FMAs. Same layout as ``binary_dense``."""

    family = "binary_lut_dense"
    cuda_unstaged = ("Table",)
    per_byte = 8

    def byte_term(self, b, j, value):
        import tvm

        return tvm.tirx.Select(((b >> j) & 1) == 1, value, -value)



class BinaryRowLutDenseTask(RowTableDenseTask, BinaryDenseTask):
    """Binary weights with real activations through lookup tables shared by a tile of rows
    (ops/row_tables.py): each nibble of a ``binary_dense`` weight byte selects one of 16 partial
    sums of 4 inputs for 8 to 32 rows at once. Same layout as ``binary_dense``."""

    family = "binary_rowlut_dense"
    base = 2
    groups_per_byte = 2

    def coef(self, digit):
        return (digit * 2 - 1).astype("float32")

    def te_code(self, byte, h):
        nibble = byte.astype("int32") >> (h * 4)
        return (nibble >> 2) & 3, nibble & 3


# byte lookup tables cost 256 entries per input group and row of X whatever N is; they pay off
# once each group is looked up by this many outputs. Measured (ops_llvm, Zen 3, batch 1, both
# cores): 0.66x vs the decode kernel's 1.39x at N = 1024, 3.70x vs 2.86x at N = 4096.
LUT_MIN_OUTPUTS = 4096


def binary_kernel(signs_pm1: np.ndarray, scale, binarize_input: bool, structure="binary") -> Kernel:
    """±1 weights [N, K] (times ``scale``, per output or scalar): XNOR-popcount when the input is
    binarized, else the decode kernel (or its lookup tables for wide layers)."""
    n, k = signs_pm1.shape
    if binarize_input:
        arrays = [pack_signs(signs_pm1.T, 32)]
        return Kernel("xnor_dense", "binary, XNOR-popcount", n, k, arrays, scale=scale,
                      compact_bytes=array_bytes(arrays) + scale_bytes(scale))
    arrays = [pack_signs(signs_pm1.T, 8)]
    family = "binary_lut_dense" if n >= LUT_MIN_OUTPUTS else "binary_dense"
    return Kernel(family, structure, n, k, arrays, scale=scale, compact_bytes=array_bytes(arrays) + scale_bytes(scale))


def from_compact(op: str, inputs: dict, attrs: dict) -> Kernel:
    """``ai.tvmopt`` BinaryGemm: packed sign bits, optional per-output alpha."""
    k = attrs["in_features"]
    bits = np.unpackbits(inputs["signs"], axis=1, bitorder="little")[:, :k]
    signs = np.where(bits == 1, 1.0, -1.0).astype(np.float32)
    alpha = inputs.get("alpha")
    return binary_kernel(signs, None if alpha is None else alpha.astype(np.float32), bool(attrs["binarize_input"]))


FAMILY = register_family(OpFamily(
    "binary", "±1 weights (BinaryConnect, XNOR-Net): decoded bits, XNOR-popcount, byte lookup tables",
    tasks={"binary_dense": decoded_task(BinaryDenseTask, summary="binary weights, real inputs (add/subtract)"),
           "xnor_dense": decoded_task(XnorDenseTask, summary="binary weights and inputs (XNOR + popcount)"),
           "binary_lut_dense": decoded_task(BinaryLutDenseTask, summary="binary weights through byte lookup tables"),
           "binary_rowlut_dense": decoded_task(BinaryRowLutDenseTask,
                                               summary="binary weights through tables shared by 8 to 32 rows")},
    schedules="tvmopt.schedules.gemm", onnx_ops=("BinaryGemm", "BinaryConv"), from_compact=from_compact,
    cuda=cuda_view, layer="BinaryConv"))
