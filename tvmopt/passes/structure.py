"""Compressed-weight structure, in numpy: recognize it in a plain constant weight, or read it
from an ``ai.tvmopt`` node's compact form, and describe the kernel that exploits it.

Both produce a :class:`~tvmopt.ops.kernel.Kernel` recipe. The kernels themselves are built by
their op families (``tvmopt.ops.<family>``: ``binary_kernel``, ``shift_kernel``...); a compact
form is read by the family that registered its ``ai.tvmopt`` op (:mod:`tvmopt.ops.registry`).
What stays here is the order in which :func:`detect` tries the structures on a plain weight:
that order is a policy across families (the cheapest exact kernel first).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tvmopt.ops.binary_dense import binary_kernel
from tvmopt.ops.codebook_dense import codebook_kernel
from tvmopt.ops.fastfood import hadamard_kernel
from tvmopt.ops.hashed_dense import detect_hashed
from tvmopt.ops.kernel import DENSE, LUT_MAX_ROWS, Kernel, dense_kernel  # noqa: F401  (re-exported)
from tvmopt.ops.nm_dense import nm_kernel
from tvmopt.ops.shift_dense import shift_kernel
from tvmopt.ops.ternary_dense import ternary_kernel


@dataclass
class DetectOptions:
    rtol: float = 1e-6            # relative tolerance when comparing magnitudes
    min_weights: int = 256        # smaller layers stay dense
    max_codebook: int = 65536     # distinct values for a codebook (8-bit index up to 256)
    direct_conv: bool = True      # dense convolutions: the direct conv2d kernel (False: im2col + dense)
    kernels: str = "auto"         # compressed or dense kernel per layer: auto, measure, compressed, dense (choose.py)
    layout: str = "auto"          # the graph's layout: auto, nchw, nhwc (passes/layout.py)
    winograd: bool = True         # 3x3 stride-1 channels-last convolutions: the Winograd kernels where they apply


def conv_geometry(attrs) -> dict:
    """A Relax conv2d's strides, pads (top, left, bottom, right) and dilations, as lists of ints."""
    return {"strides": [int(v) for v in attrs.strides], "pads": [int(p) for p in attrs.padding],
            "dilations": [int(v) for v in attrs.dilation]}


def direct_conv(geometry: dict, options: DetectOptions) -> bool:
    """Whether a convolution of this geometry can run a direct conv task: equal strides, no dilation."""
    (sh, sw), (dh, dw) = geometry["strides"], geometry["dilations"]
    return sh == sw and dh == dw == 1 and options.direct_conv


def detector(options: DetectOptions):
    """:func:`detect` for one lowering: ``detect_once(w, binarized_input=False)``. A weight seen
    again (the layout choice reads every convolution's weight before the pass does) gets a copy
    of its first result instead of a second detection, which cost ResNet-50's build 3.4 s.
    Copies, since the pass reassigns a kernel's fields (its bias, its family)."""
    import copy
    import hashlib

    seen: dict = {}

    def detect_once(w: np.ndarray, binarized_input: bool = False) -> Kernel:
        w = np.ascontiguousarray(w, dtype=np.float32)
        key = (w.shape, binarized_input, hashlib.blake2b(w.view(np.uint8), digest_size=16).digest())
        if key not in seen:
            seen[key] = detect(w, binarized_input, options)
        return copy.copy(seen[key])

    return detect_once


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
    if not np.isfinite(w).all():
        # NaN or Inf: no compressed form computes what the dense product does with them
        _warn_non_finite(w)
        return dense_kernel(w, "dense (non-finite weights)")
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

    # hashed weights (HashedNets): the bucket values behind the hash, else a codebook
    table, index = np.unique(w, return_inverse=True)
    if len(table) <= w.size // 2:
        hashed = detect_hashed(w)
        if hashed is not None:
            return hashed
    # few distinct values
    if len(table) <= min(opt.max_codebook, w.size // 4):
        return codebook_kernel(w, table, index.reshape(w.shape))
    return dense_kernel(w)


def _warn_non_finite(w: np.ndarray) -> None:
    import warnings

    bad = int((~np.isfinite(w)).sum())
    warnings.warn(f"a weight of shape {list(w.shape)} holds {bad} NaN or Inf value(s); that layer stays dense "
                  f"(never compressed), and its outputs carry them as onnxruntime's would")


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
    """The kernel for one ``ai.tvmopt`` Gemm-style node, read by the op family that registered
    ``op`` (conv nodes are decoded by the caller and detected again)."""
    from tvmopt.ops.registry import family_of_onnx_op

    family = family_of_onnx_op(op)
    if family is None or family.from_compact is None:
        raise KeyError(op)
    kern = family.from_compact(op, inputs, attrs)
    bias = inputs.get("bias")
    kern.bias = None if bias is None else bias.astype(np.float32)
    return kern
