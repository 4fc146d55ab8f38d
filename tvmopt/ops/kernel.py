"""The kernel recipe that structure detection and the ``ai.tvmopt`` compact forms produce, and
the lowering pass consumes: which task family computes a layer, with which constants.

A :class:`Kernel` holds the task family and what goes into its key (so tuning records apply),
the constant arrays in the logical layout (the task's ``to_kernel`` turns them into the layout
its loops read), and the affine epilogue (per-output scale, bias) plus the input transform that
the pass emits around the kernel call. Each op family's module builds its own kernels
(``binary_kernel``, ``shift_kernel``...); the dense fallback is here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DENSE = "dense"

# byte lookup tables (binary_lut_dense, ternary_lut_dense) are rebuilt for every row of X: with
# more rows than this, the decode kernels (same weight layout) are cheaper (ops_llvm: at batch
# 64 the decode kernels are 2-3x faster than the tables)
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
    key_dims: tuple[int, ...] = ()     # dimensions of the key after the shape (N:M, buckets...)
    reduction_first: bool = False      # key shape M x K x N (the transforms) instead of M x N x K
    #: the kernel reads its input this many times along K (int8_dense: a weight split into
    #: parts that its instruction multiplies exactly, ``reduction`` counts them all)
    input_copies: int = 1
    #: the dtype the kernel reads its input as, where not the producer's (int8_dense's int16
    #: weights: the uint8 input widened to int16)
    input_dtype: str | None = None

    @property
    def dense_bytes(self) -> int:
        return 4 * self.out_features * self.reduction

    def key(self, m: int) -> str:
        base = [m, self.reduction, self.out_features] if self.reduction_first else [m, self.out_features, self.reduction]
        return f"{self.family}:" + "x".join(str(d) for d in base + list(self.key_dims))


def array_bytes(arrays) -> int:
    return int(sum(a.nbytes for a in arrays))


def scale_bytes(scale) -> int:
    return 0 if scale is None else int(np.asarray(scale).nbytes)


def dense_kernel(w: np.ndarray, why: str = "dense") -> Kernel:
    n, k = w.shape
    return Kernel(DENSE, why, n, k, [np.ascontiguousarray(w, dtype=np.float32)], compact_bytes=w.size * 4)
