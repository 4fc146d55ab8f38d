"""DeepShift: weights that are signed powers of two, so a product is a sign flip and a shift.

Two ways to train, as in the paper:

* ``mode="q"`` (DeepShift-Q): a float latent weight, rounded in the forward pass to
  ``sign(w) * 2^round(log2|w|)`` with the shift clamped to the range; straight-through gradient.
* ``mode="ps"`` (DeepShift-PS): trainable ``shift`` and ``sign`` tensors; the forward pass rounds
  both (sign to {-1, 0, +1}, so weights may be zero) with straight-through gradients.

``weight_bits`` (default 5: a sign bit and 4 bits of shift) fixes the shifts to
``shift_max - (2^(bits-1) - 2) .. shift_max``; ``activation_bits=(int, frac)`` rounds the input
to fixed point, as DeepShift does for shift-only inference.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from tvmopt.model import formats
from .base import CompressedLayer, FixedPoint, fixed_point, round_ste, tensor_np


class _Shift(CompressedLayer):
    kind = "shift"
    op_base = "Shift"

    def _init_shift(self, mode: str, weight_bits: int, shift_max: int, activation_bits) -> None:
        if mode not in ("q", "ps"):
            raise ValueError(f"mode must be 'q' or 'ps', got {mode!r}")
        if not 2 <= weight_bits <= 8:
            raise ValueError(f"weight_bits must be in 2..8, got {weight_bits}")
        self.mode = mode
        self.weight_bits_per_weight = int(weight_bits)
        self.shift_min, self.shift_max = formats.shift_range(weight_bits, shift_max)
        self.activation_bits = tuple(activation_bits) if activation_bits else None
        dense = torch.empty(self.weight_shape)
        nn.init.kaiming_uniform_(dense, a=math.sqrt(5))
        if mode == "q":
            self.weight = nn.Parameter(dense)
        else:
            sign, shift = self._split(dense)
            self.sign = nn.Parameter(sign)
            self.shift = nn.Parameter(shift)

    def _split(self, w: torch.Tensor):
        """(sign, continuous shift) of a dense weight, shift clamped to the range."""
        shift = torch.log2(w.abs().clamp_min(2.0 ** (self.shift_min - 1)))
        return torch.sign(w), shift.clamp(self.shift_min, self.shift_max)

    def load_dense_(self, w: torch.Tensor) -> None:
        if self.mode == "q":
            self.weight.copy_(w)
        else:
            sign, shift = self._split(w)
            self.sign.copy_(sign)
            self.shift.copy_(shift)

    def _sign_and_shift(self):
        """Integer-valued (sign, shift) tensors, with straight-through gradients."""
        if self.mode == "q":
            w = self.weight
            with torch.no_grad():
                shift = torch.round(torch.log2(w.abs().clamp_min(1e-30))).clamp(self.shift_min, self.shift_max)
                sign = torch.sign(w)
            return sign, shift
        sign = round_ste(torch.clamp(self.sign, -1.0, 1.0))
        shift = round_ste(torch.clamp(self.shift, self.shift_min, self.shift_max))
        return sign, shift

    def effective_weight(self) -> torch.Tensor:
        sign, shift = self._sign_and_shift()
        wq = sign * torch.pow(2.0, shift)
        if self.mode == "q":
            return self.weight + (wq - self.weight).detach()
        return wq

    def transform_input(self, x):
        if self.activation_bits:
            return fixed_point(x, *self.activation_bits)
        return x

    def plain_input_transform(self):
        return FixedPoint(*self.activation_bits) if self.activation_bits else None

    def codes(self) -> np.ndarray:
        """Integer codes [out, reduction] (see formats.encode_shift)."""
        with torch.no_grad():
            sign, shift = self._sign_and_shift()
        return formats.encode_shift(tensor_np(sign).reshape(self.out_features, -1),
                                    tensor_np(shift).reshape(self.out_features, -1),
                                    self.weight_bits_per_weight, self.shift_min)

    def compact(self):
        packed = formats.pack_rows(self.codes(), self.weight_bits_per_weight)
        ib, fb = self.activation_bits or (0, 0)
        attrs = {**self.geometry_attrs(), "bits": self.weight_bits_per_weight, "shift_min": self.shift_min,
                 "act_int_bits": ib, "act_frac_bits": fb}
        return {"codes": packed, "bias": tensor_np(self.bias)}, attrs

    def extra_repr(self):
        return (f"{super().extra_repr()}, mode={self.mode}, weight_bits={self.weight_bits_per_weight}, "
                f"shifts={self.shift_min}..{self.shift_max}")


class ShiftLinear(_Shift):
    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, mode: str = "ps",
                 weight_bits: int = 5, shift_max: int = 0, activation_bits=None):
        super().__init__()
        self._init_geometry(in_features, out_features, bias)
        self._init_shift(mode, weight_bits, shift_max, activation_bits)


class ShiftConv2d(_Shift):
    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, bias: bool = True, *, mode: str = "ps", weight_bits: int = 5,
                 shift_max: int = 0, activation_bits=None):
        super().__init__()
        self._init_geometry(in_channels, out_channels, bias, kernel_size, stride, padding, dilation)
        self._init_shift(mode, weight_bits, shift_max, activation_bits)
