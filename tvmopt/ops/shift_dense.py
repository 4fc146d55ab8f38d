"""Power-of-two weights (DeepShift): each weight is decoded by exponent arithmetic, building
the float ``±2^p`` from its bits, so the product is one FMA and no table or ``ldexp`` call.

Kernel layout (5 bits per weight, vectorized along N):
- ``mags`` uint8 [ceil(K/2), N]: 4-bit magnitude index m (0 = weight 0, else 2^(shift_min+m-1)),
  field ``k % 2`` of byte ``k // 2``;
- ``signs`` uint8 [ceil(K/8), N]: bit ``k % 8`` of byte ``k // 8`` is 1 for a negative weight.
"""

from __future__ import annotations

import numpy as np

from tvmopt.model import formats
from tvmopt.ops.kernel import Kernel, array_bytes, dense_kernel, scale_bytes
from tvmopt.ops.registry import OpFamily, register_family

from .decoded import DecodedDenseTask, WeightSpec, bitfield, cuda_view, decoded_task, pack_fields, unpack_fields


class ShiftDenseTask(DecodedDenseTask):
    family = "shift_dense"

    def default_params(self):
        return {"shift_min": -14}

    def weight_specs(self):
        return [WeightSpec("mags", (-(-self.k // 2), self.n), "uint8"),
                WeightSpec("signs", (-(-self.k // 8), self.n), "uint8")]

    @staticmethod
    def encode(mag: np.ndarray, negative: np.ndarray) -> list[np.ndarray]:
        """[K, N] magnitude indices (0..15) and negative flags -> kernel arrays."""
        return [pack_fields(mag, 4), pack_fields(negative.astype(np.int64), 1)]

    def random_weights(self, rng):
        mag = rng.integers(0, 16, size=(self.k, self.n))
        return self.encode(mag, rng.integers(0, 2, size=(self.k, self.n)))

    def dense_weight(self, arrays):
        mag = unpack_fields(arrays[0], 4, self.k)
        neg = unpack_fields(arrays[1], 1, self.k)
        value = np.where(mag == 0, 0.0, np.ldexp(1.0, (mag + self.params["shift_min"] - 1).astype(np.int32)))
        return np.where(neg == 1, -value, value).astype(np.float32)

    def te_weight(self, tensors, kk, j):
        """``±2^p`` built from its float bits in 32-bit integer lanes: the sign bit moved to bit
        31 by one shift, the exponent ``m + bias`` shifted to bits 23..30."""
        import tvm

        u32 = lambda v: tvm.tirx.const(v, "uint32")  # noqa: E731
        mags, signs = tensors
        m = bitfield(mags[kk // 2, j], kk % 2, 4).astype("uint32")
        sign = (signs[kk // 8, j].astype("uint32") << (31 - kk % 8).astype("uint32")) & u32(0x80000000)
        bits = sign | ((m + u32(self.params["shift_min"] - 1 + 127)) << u32(23))
        return tvm.tirx.Select(m == u32(0), tvm.tirx.const(0.0, "float32"), tvm.tirx.reinterpret("float32", bits))



def shift_kernel(sign: np.ndarray, shift: np.ndarray, scale, structure="shift") -> Kernel | None:
    """sign in {-1, 0, 1} and integer shifts [N, K]; None when the shifts span more than the
    kernel's 15 values."""
    n, k = sign.shape
    live = sign != 0
    lo = int(shift[live].min()) if live.any() else 0
    hi = int(shift[live].max()) if live.any() else 0
    if hi - lo > 14:
        return None
    mag = np.where(live, shift - lo + 1, 0)
    arrays = ShiftDenseTask.encode(mag.T, (sign < 0).T)
    return Kernel("shift_dense", structure + f" (2^{lo}..2^{hi})", n, k, arrays, params={"shift_min": lo},
                  scale=scale, compact_bytes=array_bytes(arrays) + scale_bytes(scale))


def from_compact(op: str, inputs: dict, attrs: dict) -> Kernel:
    """``ai.tvmopt`` ShiftGemm: packed sign + shift codes, optional fixed-point activations."""
    from tvmopt.model.opset import decode_weight

    codes = formats.unpack_rows(inputs["codes"], attrs["bits"], attrs["in_features"])
    half = 1 << (attrs["bits"] - 1)
    mag = codes & (half - 1)
    sign = np.where(mag == 0, 0, np.where(codes & half, -1, 1))
    kern = shift_kernel(sign, mag + attrs["shift_min"] - 1, None)
    if kern is None:
        kern = dense_kernel(decode_weight(op, inputs, attrs), "shift (range too wide: dense)")
    if attrs["act_int_bits"] or attrs["act_frac_bits"]:
        kern.input_transform = ("fixed", attrs["act_int_bits"], attrs["act_frac_bits"])
    return kern


FAMILY = register_family(OpFamily(
    "shift", "powers of two (DeepShift): sign and exponent fields turned into float bits",
    tasks={"shift_dense": decoded_task(ShiftDenseTask, summary="weights ±2^p, 4-bit exponents and sign bits")},
    schedules="tvmopt.schedules.gemm", onnx_ops=("ShiftGemm", "ShiftConv"), from_compact=from_compact,
    cuda=cuda_view, layer="ShiftConv"))
