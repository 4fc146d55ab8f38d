"""Shared weights (a codebook): each weight is an index into a small table of distinct values,
8 bits when there are at most 256 of them, 16 bits otherwise. This is what a plainly exported
hashed or weight-shared layer looks like once its hash is gone.

Kernel layout: ``index`` uint8 or uint16 [K, N], ``table`` float32 [C].
Key: ``codebook_dense:MxNxKxC``.
"""

from __future__ import annotations

import numpy as np

from tvmopt.ops.kernel import Kernel, array_bytes
from tvmopt.ops.registry import OpFamily, register_family

from .decoded import DecodedDenseTask, WeightSpec, cuda_view, decoded_task


class CodebookDenseTask(DecodedDenseTask):
    family = "codebook_dense"
    cuda_unstaged = ("table",)

    def default_params(self):
        return {"entries": 16}

    @property
    def index_dtype(self):
        return "uint8" if self.params["entries"] <= 256 else "uint16"

    def weight_specs(self):
        return [WeightSpec("index", (self.k, self.n), self.index_dtype),
                WeightSpec("table", (self.params["entries"],), "float32")]

    def random_weights(self, rng):
        c = self.params["entries"]
        return [rng.integers(0, c, size=(self.k, self.n)).astype(self.index_dtype),
                rng.uniform(-1, 1, size=c).astype(np.float32)]

    def dense_weight(self, arrays):
        index, table = arrays
        return table[index.astype(np.int64)]

    def te_weight(self, tensors, kk, j):
        index, table = tensors
        return table[index[kk, j].astype("int32")]



def codebook_kernel(w: np.ndarray, table: np.ndarray, index: np.ndarray) -> Kernel:
    """A weight [N, K] of few distinct values: ``table[index]``."""
    n, k = w.shape
    dtype = np.uint8 if len(table) <= 256 else np.uint16
    arrays = [np.ascontiguousarray(index.T.astype(dtype)), table.astype(np.float32)]
    return Kernel("codebook_dense", f"shared weights ({len(table)} values)", n, k, arrays,
                  params={"entries": len(table)}, compact_bytes=array_bytes(arrays), key_dims=(len(table),))


FAMILY = register_family(OpFamily(
    "codebook", "shared weights (weight sharing, k-means quantization): an index into a table of values",
    tasks={"codebook_dense": decoded_task(CodebookDenseTask, "MxNxKxC", extra=lambda d: {"entries": d[0]},
                                          summary="weights from a codebook of C values")},
    schedules="tvmopt.schedules.gemm", cuda=cuda_view))
