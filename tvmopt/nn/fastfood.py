"""Structured transforms: the fast Walsh-Hadamard transform, adaptive Fastfood (Deep Fried
Convnets) and a fixed Hadamard classifier head.

H below is the *unnormalized* Sylvester-Hadamard matrix, ``H[i, j] = (-1)^popcount(i & j)``,
applied by :func:`fwht` in log2(n) butterfly stages (O(n log n), no dense matrix). A Fastfood
block computes ``S * H(G * Pi(H(B * x)))`` with learnable diagonals B, G, S and a fixed random
permutation Pi; the input is zero-padded to n = 2^k and ``ceil(out / n)`` independent blocks
are stacked when the output is wider than n, then cut to ``out_features``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from tvmopt.model.formats import fwht_np, next_pow2  # noqa: F401  (numpy twins, re-exported)

from .base import CompressedLayer, tensor_np


def fwht(x: torch.Tensor) -> torch.Tensor:
    """Unnormalized Walsh-Hadamard transform along the last axis (length a power of two)."""
    n = x.shape[-1]
    if n & (n - 1):
        raise ValueError(f"fwht needs a power-of-two length, got {n}")
    lead = x.shape[:-1]
    h = 1
    while h < n:
        y = x.reshape(*lead, n // (2 * h), 2, h)
        a, b = y[..., 0, :], y[..., 1, :]
        x = torch.stack((a + b, a - b), dim=-2).reshape(*lead, n)
        h *= 2
    return x


def _pad(x: torch.Tensor, n: int) -> torch.Tensor:
    if x.shape[-1] == n:
        return x
    return torch.nn.functional.pad(x, (0, n - x.shape[-1]))


class Fastfood(CompressedLayer):
    """Drop-in for ``nn.Linear``: ``y = V x + bias`` with V the stacked Fastfood blocks.

    Parameters per block: three diagonals of length n and a permutation, so O(n) in all instead
    of in * out. ``seed`` fixes the permutation and the initial B (random ±1) and G (Gaussian).
    """

    kind = "fastfood"
    op_base = "Fastfood"

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, seed: int = 0):
        super().__init__()
        self._init_geometry(in_features, out_features, bias)
        self.n = next_pow2(in_features)
        self.blocks = -(-out_features // self.n)
        g = torch.Generator().manual_seed(seed)
        b = torch.randint(0, 2, (self.blocks, self.n), generator=g).float() * 2 - 1
        gauss = torch.randn(self.blocks, self.n, generator=g)
        perm = torch.stack([torch.randperm(self.n, generator=g) for _ in range(self.blocks)])
        self.diag_b = nn.Parameter(b)
        self.diag_g = nn.Parameter(gauss)
        # rows of H G Pi H B have norm ~ n; scale them to ~ 1/sqrt(3 n) like nn.Linear's init
        self.diag_s = nn.Parameter(torch.full((self.blocks, self.n), 1.0 / (self.n * math.sqrt(3.0))))
        self.register_buffer("perm", perm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fastfood_apply(x, self.out_features, self.diag_b, self.diag_g, self.diag_s, self.perm_flat(),
                              self.bias)

    def perm_flat(self) -> torch.Tensor:
        """The block permutations as one index into the concatenated blocks."""
        return (self.perm + torch.arange(self.blocks)[:, None] * self.n).reshape(-1)

    def effective_weight(self) -> torch.Tensor:
        eye = torch.eye(self.in_features, dtype=self.diag_s.dtype)
        return fastfood_apply(eye, self.out_features, self.diag_b, self.diag_g, self.diag_s, self.perm_flat(),
                              None).T.contiguous()

    def to_plain(self) -> nn.Module:
        return PlainFastfood(self)

    def load_dense_(self, weight: torch.Tensor) -> None:
        """Fastfood cannot hold an arbitrary dense matrix: ``from_dense`` keeps the geometry and
        bias, and the diagonals keep their random initialization (train them)."""

    def compact(self):
        return ({"diag_b": tensor_np(self.diag_b), "diag_g": tensor_np(self.diag_g),
                 "diag_s": tensor_np(self.diag_s), "perm": tensor_np(self.perm).astype(np.int32),
                 "bias": tensor_np(self.bias)}, self.geometry_attrs())

    @property
    def onnx_op(self) -> str:
        return "Fastfood"

    def extra_repr(self):
        return f"{super().extra_repr()}, n={self.n}, blocks={self.blocks}"


class PlainFastfood(nn.Module):
    """A frozen Fastfood layer in standard ops: the FWHT as its butterfly stages (Reshape,
    Slice, Add, Sub, Concat), the permutation as a Gather, the diagonals as Mul."""

    def __init__(self, layer: Fastfood):
        super().__init__()
        self.out_features = layer.out_features
        for name in ("diag_b", "diag_g", "diag_s"):
            self.register_buffer(name, getattr(layer, name).detach().clone())
        self.register_buffer("perm_flat", layer.perm_flat())
        self.register_buffer("bias", None if layer.bias is None else layer.bias.detach().clone())

    def forward(self, x):
        return fastfood_apply(x, self.out_features, self.diag_b, self.diag_g, self.diag_s, self.perm_flat, self.bias)


def fastfood_apply(x, out_features, diag_b, diag_g, diag_s, perm_flat, bias):
    """Stacked blocks ``S * H(G * Pi(H(B * pad(x))))`` cut to ``out_features``, plus bias. Written
    in ops that export to standard ONNX (Gather for Pi), so the trained layer and its plain
    export share it."""
    blocks, n = diag_b.shape
    lead = x.shape[:-1]
    h = fwht(_pad(x, n).unsqueeze(-2) * diag_b)                          # [..., blocks, n]
    h = torch.index_select(h.reshape(*lead, blocks * n), -1, perm_flat)
    h = fwht(h.reshape(*lead, blocks, n) * diag_g) * diag_s
    y = h.reshape(*lead, blocks * n)[..., :out_features]
    return y if bias is None else y + bias


class HadamardClassifier(CompressedLayer):
    """A fixed Hadamard classifier head ("Fix your classifier"): ``y = scale * (H x)[rows] + bias``.

    H is n x n with n = next power of two >= max(in_features, out_features + 1); the rows used are
    ``1 .. out_features`` (row 0, all ones, would only sum the input). Only ``scale`` (one
    scalar) and the optional bias are learned.
    """

    kind = "hadamard"
    op_base = "Hadamard"
    first_row = 1

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, scale: float | None = None):
        super().__init__()
        self._init_geometry(in_features, out_features, bias)
        self.n = next_pow2(max(in_features, out_features + self.first_row))
        init = scale if scale is not None else 1.0 / math.sqrt(in_features)
        self.scale = nn.Parameter(torch.tensor([float(init)]))

    def forward(self, x):
        return hadamard_apply(x, self.n, self.first_row, self.out_features, self.scale, self.bias)

    def effective_weight(self) -> torch.Tensor:
        eye = torch.eye(self.in_features, dtype=self.scale.dtype)
        return hadamard_apply(eye, self.n, self.first_row, self.out_features, self.scale, None).T.contiguous()

    def to_plain(self) -> nn.Module:
        return PlainHadamard(self)

    def compact(self):
        return ({"scale": tensor_np(self.scale), "bias": tensor_np(self.bias)},
                {**self.geometry_attrs(), "first_row": self.first_row})

    @property
    def onnx_op(self) -> str:
        return "HadamardGemm"

    def load_dense_(self, weight: torch.Tensor) -> None:
        """The head is fixed: ``from_dense`` keeps the dense layer's geometry and bias only."""


class PlainHadamard(nn.Module):
    """Frozen Hadamard head in standard ops (FWHT butterflies, Slice, Mul, Add)."""

    def __init__(self, layer: HadamardClassifier):
        super().__init__()
        self.n, self.first_row, self.out_features = layer.n, layer.first_row, layer.out_features
        self.register_buffer("scale", layer.scale.detach().clone())
        self.register_buffer("bias", None if layer.bias is None else layer.bias.detach().clone())

    def forward(self, x):
        return hadamard_apply(x, self.n, self.first_row, self.out_features, self.scale, self.bias)


def hadamard_apply(x, n, first_row, out_features, scale, bias):
    """Rows ``first_row ..`` of ``H pad(x)`` times the scale, plus bias (layer and plain export)."""
    y = fwht(_pad(x, n))[..., first_row: first_row + out_features] * scale
    return y if bias is None else y + bias
