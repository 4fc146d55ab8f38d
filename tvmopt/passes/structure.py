"""Compressed-weight structure, in numpy: recognize it in a plain constant weight, or read it
from an ``ai.tvmopt`` node's compact form, and describe the kernel that exploits it.

A :class:`Kernel` is a recipe: the task family and key (so tuning records apply), the constant
arrays in the kernel's layout, and the affine epilogue (per-output scale, bias) plus the input
transform that the pass emits around the kernel call.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..nn import formats

DENSE = "dense"
# byte lookup tables (binary_lut_dense, ternary_lut_dense) cost 256 entries per input group and
# row of X whatever N is; they pay off once each group is looked up by this many outputs. Measured
# (ops_llvm, Zen 3, batch 1, both cores): binary 0.66x vs the decode kernel's 1.39x at N = 1024,
# 3.70x vs 2.86x at N = 4096; ternary loses at both sizes (1.25x vs 2.49x at 4096), so the pass
# never picks its table kernel (it stays available to `tvmopt tune`).
LUT_MIN_OUTPUTS = {"binary": 4096, "ternary": None}
# ... and while X has few rows: each row of X rebuilds them (ops_llvm: at batch 64 the decode
# kernels are 2-3x faster than the tables)
LUT_MAX_ROWS = 8


@dataclass
class Kernel:
    family: str                        # task family (binary_dense, shift_dense, ..., dense)
    structure: str                     # what was found, for `tvmopt inspect`
    out_features: int
    reduction: int
    arrays: list[np.ndarray]           # kernel-layout constants after X
    params: dict = field(default_factory=dict)
    scale: np.ndarray | None = None    # per-output (or scalar) multiplier after the kernel
    bias: np.ndarray | None = None
    input_transform: tuple | None = None   # ("fixed", int_bits, frac_bits)
    compact_bytes: int = 0             # bytes of the weights as the kernel stores them

    @property
    def dense_bytes(self) -> int:
        return 4 * self.out_features * self.reduction

    def key(self, m: int) -> str:
        dims = {
            "nm_dense": lambda: [self.params["n"], self.params["m"]],
            "hashed_dense": lambda: [self.params["buckets"], self.params["hashes"]],
            "codebook_dense": lambda: [self.params["entries"]],
        }.get(self.family, lambda: [])()
        if self.family in ("fastfood", "hadamard"):
            base = [m, self.reduction, self.out_features]
        else:
            base = [m, self.out_features, self.reduction]
        return f"{self.family}:" + "x".join(str(d) for d in base + list(dims))


@dataclass
class DetectOptions:
    rtol: float = 1e-6            # relative tolerance when comparing magnitudes
    min_weights: int = 256        # smaller layers stay dense
    max_codebook: int = 65536     # distinct values for a codebook (8-bit index up to 256)
    direct_conv: bool = True      # dense convolutions: the direct conv2d kernel (False: im2col + dense)


# ---------------------------------------------------------------------------------------------
# kernel constructors (weights given as [N, K], the PyTorch / ONNX-Gemm layout)

def _bytes(arrays) -> int:
    return int(sum(a.nbytes for a in arrays))


def _use_lut(kind: str, n: int) -> bool:
    least = LUT_MIN_OUTPUTS.get(kind)
    return least is not None and n >= least


def binary_kernel(signs_pm1: np.ndarray, scale, binarize_input: bool, structure="binary") -> Kernel:
    from ..ops.binary_dense import pack_signs

    n, k = signs_pm1.shape
    if binarize_input:
        arrays = [pack_signs(signs_pm1.T, 32)]
        return Kernel("xnor_dense", "binary, XNOR-popcount", n, k, arrays, scale=scale,
                      compact_bytes=_bytes(arrays) + _scale_bytes(scale))
    arrays = [pack_signs(signs_pm1.T, 8)]
    family = "binary_lut_dense" if _use_lut("binary", n) else "binary_dense"
    return Kernel(family, structure, n, k, arrays, scale=scale, compact_bytes=_bytes(arrays) + _scale_bytes(scale))


def ternary_kernel(t: np.ndarray, scale) -> Kernel:
    from ..ops.decoded import pack_fields

    n, k = t.shape
    arrays = [pack_fields(formats.encode_ternary(t).T, 2)]
    family = "ternary_lut_dense" if _use_lut("ternary", n) else "ternary_dense"
    return Kernel(family, "ternary", n, k, arrays, scale=scale,
                  compact_bytes=_bytes(arrays) + _scale_bytes(scale))


def shift_kernel(sign: np.ndarray, shift: np.ndarray, scale, structure="shift") -> Kernel | None:
    """sign in {-1, 0, 1} and integer shifts [N, K]; None when the shifts span more than the
    kernel's 15 values."""
    from ..ops.shift_dense import ShiftDenseTask

    n, k = sign.shape
    live = sign != 0
    lo = int(shift[live].min()) if live.any() else 0
    hi = int(shift[live].max()) if live.any() else 0
    if hi - lo > 14:
        return None
    mag = np.where(live, shift - lo + 1, 0)
    arrays = ShiftDenseTask.encode(mag.T, (sign < 0).T)
    return Kernel("shift_dense", structure + f" (2^{lo}..2^{hi})", n, k, arrays, params={"shift_min": lo},
                  scale=scale, compact_bytes=_bytes(arrays) + _scale_bytes(scale))


def nm_kernel(w: np.ndarray, n_keep: int, m: int, structure=None) -> Kernel:
    from ..ops.decoded import pack_fields
    from ..ops.nm_dense import position_width

    n, k = w.shape
    values, positions = formats.compress_nm(w, n_keep, m)
    arrays = [np.ascontiguousarray(values.T), pack_fields(positions.T, position_width(m))]
    return Kernel("nm_dense", structure or f"{n_keep}:{m} sparse", n, k, arrays, params={"n": n_keep, "m": m},
                  compact_bytes=_bytes(arrays))


def codebook_kernel(w: np.ndarray, table: np.ndarray, index: np.ndarray) -> Kernel:
    n, k = w.shape
    dtype = np.uint8 if len(table) <= 256 else np.uint16
    arrays = [np.ascontiguousarray(index.T.astype(dtype)), table.astype(np.float32)]
    return Kernel("codebook_dense", f"shared weights ({len(table)} values)", n, k, arrays,
                  params={"entries": len(table)}, compact_bytes=_bytes(arrays))


def hadamard_kernel(n_out: int, k: int, scale: float, first_row: int) -> Kernel:
    arrays = [np.array([scale], np.float32)]
    return Kernel("hadamard", "Hadamard rows", n_out, k, arrays, params={"first_row": first_row},
                  compact_bytes=4)


def dense_kernel(w: np.ndarray, why: str = "dense") -> Kernel:
    n, k = w.shape
    return Kernel(DENSE, why, n, k, [np.ascontiguousarray(w, dtype=np.float32)], compact_bytes=w.size * 4)


def _scale_bytes(scale) -> int:
    return 0 if scale is None else int(np.asarray(scale).nbytes)


# ---------------------------------------------------------------------------------------------
# detection in plain weights

def detect(w: np.ndarray, binarized_input: bool = False, options: DetectOptions | None = None) -> Kernel:
    """The cheapest kernel that computes ``X @ w.T`` exactly (to ``rtol``) for a weight [N, K].

    Tried in order: Hadamard rows, binary (±alpha per row or layer), ternary, powers of two
    (optionally times a per-row scale, as left by folded batch norm), N:M sparsity along K, a
    codebook of few distinct values; otherwise dense. ``binarized_input`` means the input is
    known to be ±1, so a binary weight becomes XNOR-popcount.
    """
    opt = options or DetectOptions()
    w = np.asarray(w, dtype=np.float32)
    n, k = w.shape
    if w.size < opt.min_weights:
        return dense_kernel(w, f"dense (under {opt.min_weights} weights)")
    a = np.abs(w)
    row_max = a.max(axis=1)

    def close(x, y):
        return np.abs(x - y) <= opt.rtol * np.maximum(np.abs(y), 1e-30)

    # binary: every weight of a row has the same nonzero magnitude
    if (row_max > 0).all() and close(a, row_max[:, None]).all():
        signs = np.where(w >= 0, 1.0, -1.0).astype(np.float32)
        scale = _compact_scale(row_max, opt)
        had = _hadamard_rows(signs)
        if had is not None and (scale.size == 1):
            return hadamard_kernel(n, k, float(scale[0]), had)
        return binary_kernel(signs, scale, binarized_input)

    # ternary: {0, ±alpha_row}, with zeros
    nz = a > 0
    if nz.any() and (~nz).any():
        alpha = row_max
        if close(np.where(nz, a, alpha[:, None]), alpha[:, None]).all():
            return ternary_kernel(np.sign(w), _compact_scale(np.where(alpha > 0, alpha, 1.0), opt))

    # powers of two, globally or per row
    shift = _power_of_two_shifts(w)
    if shift is not None:
        kern = shift_kernel(np.sign(w), shift, None)
        if kern is not None:
            return kern
    safe_max = np.where(row_max > 0, row_max, 1.0)
    shift = _power_of_two_shifts(w / safe_max[:, None], rtol=max(opt.rtol, 1e-6))
    if shift is not None and not np.allclose(safe_max, 2.0 ** np.round(np.log2(safe_max))):
        kern = shift_kernel(np.sign(w), shift, safe_max.astype(np.float32), "shift x row scale")
        if kern is not None:
            return kern

    # N:M along K
    for n_keep, m in ((1, 4), (2, 8), (2, 4), (4, 8), (1, 2)):
        if k % m == 0 and (nz.reshape(n, k // m, m).sum(axis=2) <= n_keep).all():
            return nm_kernel(w, n_keep, m)

    # few distinct values
    table, index = np.unique(w, return_inverse=True)
    if len(table) <= min(opt.max_codebook, w.size // 4):
        return codebook_kernel(w, table, index.reshape(w.shape))
    return dense_kernel(w)


def _compact_scale(scale: np.ndarray, opt: DetectOptions) -> np.ndarray:
    scale = scale.astype(np.float32)
    if np.all(np.abs(scale - scale[0]) <= opt.rtol * abs(scale[0])):
        return scale[:1]
    return scale


def _power_of_two_shifts(w: np.ndarray, rtol: float = 0.0) -> np.ndarray | None:
    """Integer exponents p with w = ±2^p (0 allowed), or None."""
    a = np.abs(w)
    live = a > 0
    if not live.any():
        return None
    p = np.round(np.log2(np.where(live, a, 1.0)))
    if rtol == 0.0:
        mant, _ = np.frexp(a[live])
        if not (mant == 0.5).all():
            return None
    elif not (np.abs(a - np.where(live, 2.0 ** p, 0.0)) <= rtol * np.maximum(a, 1e-30)).all():
        return None
    return p.astype(np.int64)


def _hadamard_rows(signs: np.ndarray) -> int | None:
    """first_row when ``signs`` are consecutive rows of the Sylvester-Hadamard matrix,
    ``H[i, j] = (-1)^popcount(i & j)``."""
    n_out, k = signs.shape
    cols = np.arange(k, dtype=np.uint32)
    for first_row in (0, 1):
        rows = np.arange(first_row, first_row + n_out, dtype=np.uint32)
        h = 1.0 - 2.0 * (np.bitwise_count(rows[:, None] & cols[None, :]) & 1)
        if np.array_equal(h, signs):
            return first_row
    return None


# ---------------------------------------------------------------------------------------------
# ai.tvmopt compact forms (docs/onnx-ops.md) -> kernels

def from_compact(op: str, inputs: dict, attrs: dict) -> Kernel:
    """The kernel for one ``ai.tvmopt`` Gemm-style node (conv nodes are handled by the caller)."""
    from ..nn.ops import decode_weight

    out, k = attrs["out_features"], attrs["in_features"]
    bias = inputs.get("bias")
    if op == "ShiftGemm":
        codes = formats.unpack_rows(inputs["codes"], attrs["bits"], k)
        half = 1 << (attrs["bits"] - 1)
        mag = codes & (half - 1)
        sign = np.where(mag == 0, 0, np.where(codes & half, -1, 1))
        kern = shift_kernel(sign, mag + attrs["shift_min"] - 1, None)
        if kern is None:
            kern = dense_kernel(decode_weight(op, inputs, attrs), "shift (range too wide: dense)")
        if attrs["act_int_bits"] or attrs["act_frac_bits"]:
            kern.input_transform = ("fixed", attrs["act_int_bits"], attrs["act_frac_bits"])
    elif op == "BinaryGemm":
        bits = np.unpackbits(inputs["signs"], axis=1, bitorder="little")[:, :k]
        signs = np.where(bits == 1, 1.0, -1.0).astype(np.float32)
        alpha = inputs.get("alpha")
        kern = binary_kernel(signs, None if alpha is None else alpha.astype(np.float32), bool(attrs["binarize_input"]))
    elif op == "TernaryGemm":
        t = formats.decode_ternary(formats.unpack_rows(inputs["codes"], 2, k))
        kern = ternary_kernel(t, inputs["alpha"].astype(np.float32))
    elif op == "NMSparseGemm":
        w = decode_weight(op, inputs, attrs)
        kern = nm_kernel(w, attrs["n"], attrs["m"],
                         f"{attrs['n']}:{attrs['m']} sparse" + (" (transposable)" if attrs["transposable"] else ""))
    elif op == "HashedGemm":
        values = inputs["values"].astype(np.float32)
        mix = inputs.get("mix")
        mix = np.ones(attrs["num_hashes"], np.float32) if mix is None else mix.astype(np.float32)
        from ..ops.hashed_dense import HashedDenseTask

        seeds = HashedDenseTask.seeds(attrs["seed"], attrs["num_hashes"])
        kern = Kernel("hashed_dense", f"hashed ({len(values)} values, {attrs['num_hashes']} hash)", out, k,
                      [values, mix, seeds], params={"buckets": len(values), "hashes": attrs["num_hashes"]},
                      compact_bytes=values.nbytes + mix.nbytes)
    elif op == "Fastfood":
        arrays = [inputs[n].astype(np.float32) for n in ("diag_b", "diag_g", "diag_s")]
        arrays.append(inputs["perm"].astype(np.int32))
        kern = Kernel("fastfood", f"Fastfood ({arrays[0].shape[0]} x {arrays[0].shape[1]})", out, k, arrays,
                      compact_bytes=_bytes(arrays))
    elif op == "HadamardGemm":
        kern = hadamard_kernel(out, k, float(inputs["scale"].reshape(-1)[0]), attrs["first_row"])
    else:
        raise KeyError(op)
    kern.bias = None if bias is None else bias.astype(np.float32)
    return kern
