"""Ternary weights in {-alpha, 0, +alpha} (Ternary Weight Networks' threshold rule).

Delta = ``threshold`` * mean |w| (0.7 in TWN); a weight with |w| > Delta keeps its sign, the rest
become 0; alpha is the mean |w| of the kept weights, per layer or per output channel
(``per_channel=True``). Straight-through gradient to the latent weight.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from tvmopt.model import formats
from .base import CompressedLayer, tensor_np


class _Ternary(CompressedLayer):
    kind = "ternary"
    op_base = "Ternary"

    def _init_ternary(self, threshold: float, per_channel: bool) -> None:
        if not 0.0 < threshold < 2.0:
            raise ValueError(f"threshold must be in (0, 2), got {threshold}")
        self.threshold = float(threshold)
        self.per_channel = bool(per_channel)
        w = torch.empty(self.weight_shape)
        nn.init.kaiming_uniform_(w, a=math.sqrt(5))
        self.weight = nn.Parameter(w)

    def _ternarize(self):
        """(t in {-1, 0, 1} [out, R], alpha [out]) from the latent weight, without gradient."""
        with torch.no_grad():
            w = self.weight.reshape(self.out_features, -1)
            mean = w.abs().mean(dim=1, keepdim=True) if self.per_channel else w.abs().mean().expand(w.shape[0], 1)
            keep = w.abs() > self.threshold * mean
            t = torch.sign(w) * keep
            if self.per_channel:
                alpha = (w.abs() * keep).sum(dim=1) / keep.sum(dim=1).clamp_min(1)
            else:
                alpha = ((w.abs() * keep).sum() / keep.sum().clamp_min(1)).expand(w.shape[0])
        return t, alpha.contiguous()

    def effective_weight(self) -> torch.Tensor:
        t, alpha = self._ternarize()
        wq = (t * alpha[:, None]).reshape(self.weight_shape)
        return self.weight + (wq - self.weight).detach()

    def compact(self):
        t, alpha = self._ternarize()
        codes = formats.pack_rows(formats.encode_ternary(tensor_np(t)), 2)
        alpha_np = tensor_np(alpha if self.per_channel else alpha[:1])
        return {"codes": codes, "alpha": alpha_np, "bias": tensor_np(self.bias)}, self.geometry_attrs()

    def extra_repr(self):
        return f"{super().extra_repr()}, threshold={self.threshold}, per_channel={self.per_channel}"


class TernaryLinear(_Ternary):
    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 threshold: float = 0.7, per_channel: bool = False):
        super().__init__()
        self._init_geometry(in_features, out_features, bias)
        self._init_ternary(threshold, per_channel)


class TernaryConv2d(_Ternary):
    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, bias: bool = True, *, threshold: float = 0.7, per_channel: bool = False):
        super().__init__()
        self._init_geometry(in_channels, out_channels, bias, kernel_size, stride, padding, dilation)
        self._init_ternary(threshold, per_channel)
