"""Hashed weights (HashedNets; FunHashNN as an option).

The out x in virtual weight matrix is drawn from ``buckets`` real parameters:
``W[i, j] = sum_k mix[k] * sign_k(i, j) * values[bucket_k(i, j)]`` with the hash functions of
:func:`tvmopt.nn.formats.hash_indices`. HashedNets is ``num_hashes=1`` with ``mix = [1]``; more
hashes with a learned linear ``mix`` is FunHashNN with a linear reconstruction network (the
paper's nonlinear reconstruction network is not implemented: it would make the virtual matrix a
dense function of many values, and nothing cheap would be left for the compiler).

``block=Z`` hashes blocks of Z consecutive outputs of one input instead of single weights (as
ROBE-Z hashes blocks of an embedding table): a block reads Z contiguous values, and its Z signs
are bits of one hash (:mod:`tvmopt.model.formats`). HashedNets hashes every weight on its own, so
its kernel spends two hashes and a gather per weight and runs slower than the dense product it
replaces; with ``block=16`` the kernel hashes once per 16 weights and reads a vector, which is
what makes a hashed layer faster than its dense self (BENCHMARKS.md). The exported op is
``HashedBlockGemm``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from tvmopt.model import formats
from .base import CompressedLayer, tensor_np


class HashedLinear(CompressedLayer):
    kind = "hashed"
    op_base = "Hashed"

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 buckets: int | None = None, compression: float = 8.0, seed: int = 0, num_hashes: int = 1,
                 block: int = 1):
        super().__init__()
        self._init_geometry(in_features, out_features, bias)
        virtual = in_features * out_features
        self.block = int(block)
        if buckets:
            self.buckets = int(buckets)
        else:   # the nearest whole number of blocks
            self.buckets = max(1, int(round(virtual / compression / self.block))) * self.block
        if not 1 <= self.buckets <= virtual:
            raise ValueError(f"buckets must be in 1..{virtual}, got {self.buckets}")
        formats.check_hash_block(self.buckets, self.block)
        if num_hashes < 1:
            raise ValueError("num_hashes must be >= 1")
        self.seed, self.num_hashes = int(seed), int(num_hashes)
        idx, sgn = zip(*(formats.hash_indices(out_features, in_features, self.buckets, self.seed, k, self.block)
                         for k in range(self.num_hashes)))
        self.register_buffer("bucket", torch.from_numpy(np.stack(idx)), persistent=False)
        self.register_buffer("hash_sign", torch.from_numpy(np.stack(sgn)), persistent=False)
        bound = 1.0 / math.sqrt(in_features)
        self.values = nn.Parameter(torch.empty(self.buckets).uniform_(-bound, bound))
        if self.num_hashes > 1:
            self.mix = nn.Parameter(torch.full((self.num_hashes,), 1.0 / math.sqrt(self.num_hashes)))
        else:
            self.register_parameter("mix", None)

    def effective_weight(self) -> torch.Tensor:
        w = self.values[self.bucket] * self.hash_sign                   # [hashes, out, in]
        if self.mix is None:
            return w[0]
        return torch.einsum("k,koi->oi", self.mix, w)

    def compact(self):
        mix = None if self.mix is None else tensor_np(self.mix)
        return ({"values": tensor_np(self.values), "mix": mix, "bias": tensor_np(self.bias)},
                {**self.geometry_attrs(), "seed": self.seed, "num_hashes": self.num_hashes, "block": self.block})

    @property
    def onnx_op(self) -> str:
        return "HashedBlockGemm" if self.block > 1 else "HashedGemm"

    def load_dense_(self, weight: torch.Tensor) -> None:
        """Each bucket starts at the mean of the sign-corrected dense weights hashed into it."""
        w = weight.reshape(-1) * self.hash_sign[0].reshape(-1)
        idx = self.bucket[0].reshape(-1)
        total = torch.zeros(self.buckets).index_add_(0, idx, w)
        count = torch.zeros(self.buckets).index_add_(0, idx, torch.ones_like(w))
        values = total / count.clamp_min(1)
        if self.mix is not None:
            values = values / self.mix[0]
        self.values.copy_(values)

    def extra_repr(self):
        block = f", block={self.block}" if self.block > 1 else ""
        return f"{super().extra_repr()}, buckets={self.buckets}, seed={self.seed}, num_hashes={self.num_hashes}{block}"
