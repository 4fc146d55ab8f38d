"""Compressed or dense on a GPU: the CUDA build's kernel choice per layer (the counterpart of
:mod:`.choose` for ``--target cuda``).

A layer can run its compressed kernel on a GPU where its family has a CUDA schedule space
(:func:`tvmopt.ops.task.cuda_family`: the decode kernels of binary, ternary, shift, N:M,
codebook and hashed weights through the CUDA GEMM space, XNOR-popcount, the Walsh-Hadamard
transforms); the dense alternative is the decoded fp32 weight under DLight's GPU rules. Policy
(``DetectOptions.kernels``):

- ``compressed`` / ``dense``: forced (a family without a CUDA kernel stays dense, and says so);
- ``auto``: CUDA records of both kernels for this target decide where there are some (``tvmopt
  tune --target cuda``, the ``remote_cuda`` batches); otherwise the prediction below.

**The prediction is not measured on a GPU yet** (no session has had one: issue 21), so it
follows arithmetic and bytes only, and every label says "unmeasured". XNOR-popcount and the
transforms do less arithmetic than the dense product (32 products per popcount; n log n
instead of n^2) and are chosen at every size. A decoded kernel reads 6 to 32 times fewer
weight bytes and does the same FMAs plus its decode: it can only win where the product is
bound by reading the weight, a few rows against a weight too large for the GPU's caches to
hide (``MEMORY_BOUND_ROWS``, ``MEMORY_BOUND_MIN_WEIGHTS``). Hashed weights cost one gather
per weight and stay dense. Convolutions have no direct compressed CUDA kernel: a compressed
one would be im2col plus a decode GEMM over thousands of rows, compute-bound, so it stays
dense unless forced.
"""

from __future__ import annotations

from typing import Callable

from .choose import POLICIES, Choice, from_costs

UNMEASURED = "unmeasured on a GPU"
#: families whose CUDA kernel does less arithmetic than the dense product: chosen at any size
LESS_ARITHMETIC = {"xnor_dense": "XNOR-popcount: 32 products per popcount",
                   "fastfood": "n log n butterflies instead of an n^2 product",
                   "hadamard": "n log n butterflies instead of an n^2 product"}
#: decode kernels that read fewer weight bytes than dense and win only where that is the bound
MEMORY_BOUND_FAMILIES = frozenset({"binary_dense", "ternary_dense", "shift_dense", "nm_dense", "nm_decode_dense",
                                   "codebook_dense"})
#: at most this many rows of X: a GEMV-like product, bound by the weight's bytes
MEMORY_BOUND_ROWS = 16
#: from this many weights (4 MB as fp32) the dense weight no longer sits in the L1 / shared
#: memory of the SMs that read it, and the bytes read set the speed
MEMORY_BOUND_MIN_WEIGHTS = 1 << 20


def choose_cuda(policy: str, family: str | None, compressed_key: str, dense_key: str, rows: int, weights: int,
                conv: bool, cost: Callable[[str], float | None] | None = None) -> Choice:
    """Whether a layer runs its compressed CUDA kernel (``family``, key ``compressed_key``; None
    when the weight's family has no CUDA kernel) or the dense one (``dense_key``)."""
    if policy not in POLICIES or policy == "measure":
        raise ValueError(f"kernel policy {policy!r} on CUDA: choose one of auto, compressed, dense")
    if policy == "dense":
        return Choice(False, "forced")
    if family is None:
        return Choice(False, "no CUDA kernel for this weight's format")
    if policy == "compressed":
        return Choice(True, "forced")
    timed = from_costs(cost, compressed_key, dense_key, "CUDA records")
    if timed is not None:
        return timed
    if family in LESS_ARITHMETIC:
        return Choice(True, f"predicted, {UNMEASURED}: {LESS_ARITHMETIC[family]}")
    if conv:
        return Choice(False, f"predicted, {UNMEASURED}: im2col and a decode GEMM over {rows:,} output pixels are "
                             f"compute-bound, the dense convolution does the same FMAs without the decode")
    if family in MEMORY_BOUND_FAMILIES and rows <= MEMORY_BOUND_ROWS and weights >= MEMORY_BOUND_MIN_WEIGHTS:
        return Choice(True, f"predicted, {UNMEASURED}: {rows} row(s) against {weights:,} weights: bound by "
                            f"the weight's bytes, which the compressed kernel reads fewer of")
    if family in MEMORY_BOUND_FAMILIES:
        return Choice(False, f"predicted, {UNMEASURED}: at {rows} row(s) x {weights:,} weights the product is "
                             f"not bound by the weight's bytes; the decode would cost more than it saves")
    return Choice(False, f"predicted, {UNMEASURED}: {family} gathers per weight; dense until measured")
