"""Shared weights (a codebook): each weight is an index into a small table of distinct values,
8 bits when there are at most 256 of them, 16 bits otherwise. This is what a plainly exported
hashed or weight-shared layer looks like once its hash is gone.

Kernel layout: ``index`` uint8 or uint16 [K, N], ``table`` float32 [C].
Key: ``codebook_dense:MxNxKxC``.
"""

from __future__ import annotations

import numpy as np

from .decoded import DecodedDenseTask, WeightSpec, register_family


class CodebookDenseTask(DecodedDenseTask):
    family = "codebook_dense"

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


register_family(CodebookDenseTask, "MxNxKxC", extra=lambda d: {"entries": d[0]})
