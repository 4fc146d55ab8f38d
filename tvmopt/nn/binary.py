"""Binary weights (BinaryConnect / BNN / XNOR-Net).

The latent float weight is binarized in the forward pass (``w >= 0 -> +1``, else -1) with the
hardtanh straight-through estimator (gradient passed where |w| <= 1); call
:func:`tvmopt.nn.clip_latent_` after each optimizer step to keep latent weights in [-1, 1] as BNN
does. ``scale="channel"`` multiplies each output channel by alpha = mean |w| of that channel
(XNOR-Net), ``scale="layer"`` uses one alpha for the whole layer; ``binarize_input=True`` binarizes activations too, turning the product into
XNOR + popcount.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .base import Binarize, CompressedLayer, sign_ste, tensor_np


class _Binary(CompressedLayer):
    kind = "binary"
    op_base = "Binary"

    def _init_binary(self, scale: str | None, binarize_input: bool) -> None:
        if scale not in (None, "none", "channel", "layer"):
            raise ValueError(f"scale must be None, 'channel' or 'layer', got {scale!r}")
        self.scale = None if scale in (None, "none") else scale
        self.binarize_input = bool(binarize_input)
        w = torch.empty(self.weight_shape)
        nn.init.kaiming_uniform_(w, a=math.sqrt(5))
        self.weight = nn.Parameter(w)

    def alpha(self) -> torch.Tensor | None:
        """The scale: [out] for "channel", [1] for "layer", None without one."""
        if self.scale is None:
            return None
        if self.scale == "layer":
            return self.weight.abs().mean().reshape(1)
        return self.weight.abs().reshape(self.out_features, -1).mean(dim=1)

    def effective_weight(self) -> torch.Tensor:
        w = sign_ste(self.weight)
        a = self.alpha()
        if a is not None:
            w = w * a.reshape((-1,) + (1,) * (w.dim() - 1))
        return w

    def transform_input(self, x):
        return sign_ste(x) if self.binarize_input else x

    def plain_input_transform(self):
        return Binarize() if self.binarize_input else None

    def compact(self):
        signs = tensor_np(self.weight).reshape(self.out_features, -1) >= 0
        packed = np.packbits(signs, axis=1, bitorder="little")
        alpha = self.alpha()
        return ({"signs": packed, "alpha": None if alpha is None else tensor_np(alpha).astype(np.float32),
                 "bias": tensor_np(self.bias)},
                {**self.geometry_attrs(), "binarize_input": int(self.binarize_input)})

    @torch.no_grad()
    def clip_(self) -> None:
        self.weight.clamp_(-1.0, 1.0)

    def extra_repr(self):
        return f"{super().extra_repr()}, scale={self.scale}, binarize_input={self.binarize_input}"


class BinaryLinear(_Binary):
    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 scale: str | None = "channel", binarize_input: bool = False):
        super().__init__()
        self._init_geometry(in_features, out_features, bias)
        self._init_binary(scale, binarize_input)


class BinaryConv2d(_Binary):
    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, bias: bool = True, *, scale: str | None = "channel",
                 binarize_input: bool = False):
        super().__init__()
        self._init_geometry(in_channels, out_channels, bias, kernel_size, stride, padding, dilation)
        self._init_binary(scale, binarize_input)
