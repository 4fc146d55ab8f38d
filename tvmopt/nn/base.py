"""What every compressed layer shares: its geometry (linear or 2-D convolution), the dense
forward through its effective weight, and the hooks the exporters and reports use.

A compressed layer is trained through its *effective weight*: a dense tensor computed from the
layer's parameters with straight-through estimators where rounding happens. Export asks each
layer for its *compact form* (the ``ai.tvmopt`` initializers and attributes, see
docs/onnx-ops.md) or for a *plain* standard module that computes the same function.
"""

from __future__ import annotations

import functools
import importlib
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """round() forward, identity gradient."""
    return x + (torch.round(x) - x).detach()


def sign_ste(x: torch.Tensor) -> torch.Tensor:
    """±1 forward (x >= 0 -> +1), gradient of hardtanh: passed where |x| <= 1, zero elsewhere."""
    hard = torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))
    soft = torch.clamp(x, -1.0, 1.0)
    return soft + (hard - soft).detach()


def binarize(x: torch.Tensor) -> torch.Tensor:
    """The ±1 map used everywhere (x >= 0 -> +1), without gradient tricks."""
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


def fixed_point(x: torch.Tensor, int_bits: int, frac_bits: int) -> torch.Tensor:
    """DeepShift's activation rounding: round to multiples of 2^-frac_bits and saturate at
    ±(2^int_bits - 2^-frac_bits); identity gradient."""
    step = 2.0 ** -frac_bits
    bound = 2.0 ** int_bits - step
    q = torch.clamp(torch.round(x / step) * step, -bound, bound)
    return x + (q - x).detach()


class CompressedLayer(nn.Module):
    """Base class. Subclasses set ``kind`` ("shift", "binary", ...), call ``_init_geometry`` and
    implement ``effective_weight`` and ``compact``."""

    kind: str = ""
    is_conv: bool = False

    # ---- geometry ----
    def _init_geometry(self, in_features: int, out_features: int, bias: bool,
                       kernel_size=None, stride=1, padding=0, dilation=1) -> None:
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        if kernel_size is not None:
            self.is_conv = True
            self.kernel_size = _pair(kernel_size)
            self.stride = _pair(stride)
            self.padding = _pair(padding)
            self.dilation = _pair(dilation)
        if bias:
            bound = 1.0 / math.sqrt(max(1, self.reduction))
            self.bias = nn.Parameter(torch.empty(self.out_features).uniform_(-bound, bound))
        else:
            self.register_parameter("bias", None)

    @property
    def weight_shape(self) -> tuple[int, ...]:
        if self.is_conv:
            return (self.out_features, self.in_features, *self.kernel_size)
        return (self.out_features, self.in_features)

    @property
    def reduction(self) -> int:
        """Length of the reduction axis: in_features, or in_channels * kh * kw."""
        return int(np.prod(self.weight_shape[1:]))

    def _dense(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        if self.is_conv:
            return F.conv2d(x, weight, self.bias, self.stride, self.padding, self.dilation)
        return F.linear(x, weight, self.bias)

    def geometry_attrs(self) -> dict[str, Any]:
        """ONNX attributes describing the geometry."""
        if self.is_conv:
            ph, pw = self.padding
            return {"in_channels": self.in_features, "out_channels": self.out_features,
                    "kernel_shape": list(self.kernel_size), "strides": list(self.stride),
                    "pads": [ph, pw, ph, pw], "dilations": list(self.dilation)}
        return {"in_features": self.in_features, "out_features": self.out_features}

    @staticmethod
    def geometry_of(layer: nn.Module) -> dict[str, Any]:
        """Constructor arguments that reproduce an ``nn.Linear`` / ``nn.Conv2d``'s geometry."""
        if isinstance(layer, nn.Linear):
            return {"in_features": layer.in_features, "out_features": layer.out_features,
                    "bias": layer.bias is not None}
        if isinstance(layer, nn.Conv2d):
            if layer.groups != 1:
                raise ValueError("grouped convolutions are not supported")
            if isinstance(layer.padding, str) or layer.padding_mode != "zeros":
                raise ValueError("only explicit zero padding is supported")
            return {"in_channels": layer.in_channels, "out_channels": layer.out_channels,
                    "kernel_size": layer.kernel_size, "stride": layer.stride,
                    "padding": layer.padding, "dilation": layer.dilation,
                    "bias": layer.bias is not None}
        raise TypeError(f"expected nn.Linear or nn.Conv2d, got {type(layer).__name__}")

    @classmethod
    def from_dense(cls, layer: nn.Module, **kwargs):
        """A layer of this kind with ``layer``'s geometry and bias, its weights initialized from
        ``layer.weight`` by :meth:`load_dense_`; ``kwargs`` go to the constructor."""
        new = cls(**cls.geometry_of(layer), **kwargs)
        with torch.no_grad():
            new.load_dense_(layer.weight.detach())
        new._copy_bias(layer)
        return new

    def load_dense_(self, weight: torch.Tensor) -> None:
        """Initialize from a dense weight (default: it becomes the latent weight)."""
        self.weight.copy_(weight)

    def _copy_bias(self, layer: nn.Module) -> None:
        if layer.bias is not None:
            with torch.no_grad():
                self.bias.copy_(layer.bias)

    # ---- the layer's function ----
    def effective_weight(self) -> torch.Tensor:
        """The dense weight this layer multiplies by (differentiable)."""
        raise NotImplementedError

    def transform_input(self, x: torch.Tensor) -> torch.Tensor:
        """What happens to activations before the product (binarization, fixed point)."""
        return x

    #: (scale, zero point): the input quantized to uint8 (affine, per tensor) before the layer,
    #: as a QDQ export writes it; where the weight's rows are a scale times integers of a byte
    #: (±a/0, powers of two spanning 7 exponents), tvmopt runs the product in integers
    #: (ops/int8_dense.py). None: fp32 activations
    input_quant: tuple[float, int] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_quant is not None:
            x = quantize_uint8(x, *self.input_quant)
        return self._dense(self.transform_input(x), self.effective_weight())

    # ---- export and reports ----
    @property
    def onnx_op(self) -> str:
        return self.op_base + ("Conv" if self.is_conv else "Gemm")

    op_base: str = ""

    def compact(self) -> tuple[dict[str, np.ndarray | None], dict[str, Any]]:
        """(inputs after X in ONNX order, attributes) of the layer's ``ai.tvmopt`` node."""
        raise NotImplementedError

    def weight_bytes(self) -> int:
        """Bytes of the compact weight initializers (index metadata included, bias excluded)."""
        inputs, _ = self.compact()
        return int(sum(a.nbytes for name, a in inputs.items() if name != "bias" and a is not None))

    def dense_weight_bytes(self) -> int:
        return 4 * int(np.prod(self.weight_shape))

    def plain_input_transform(self) -> nn.Module | None:
        """A standard-op module computing ``transform_input`` (None when it is the identity)."""
        return None

    def to_plain(self) -> nn.Module:
        """An ``nn.Linear``/``nn.Conv2d`` (after the input transform, if any) with the effective
        weight as a constant: the same function in standard ops."""
        with torch.no_grad():
            w = self.effective_weight().detach().clone()
            if self.is_conv:
                dense = nn.Conv2d(self.in_features, self.out_features, self.kernel_size, self.stride,
                                  self.padding, self.dilation, bias=self.bias is not None)
            else:
                dense = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
            dense.weight.copy_(w)
            if self.bias is not None:
                dense.bias.copy_(self.bias.detach())
        pre = [m for m in (QuantizeUint8(*self.input_quant) if self.input_quant else None,
                           self.plain_input_transform()) if m is not None]
        return nn.Sequential(*pre, dense) if pre else dense

    def extra_repr(self) -> str:
        geo = (f"{self.in_features}, {self.out_features}, kernel_size={self.kernel_size}, "
               f"stride={self.stride}, padding={self.padding}" if self.is_conv
               else f"in_features={self.in_features}, out_features={self.out_features}")
        return f"{geo}, bias={self.bias is not None}"


def _pair(v) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return int(v[0]), int(v[1])
    return int(v), int(v)


def tensor_np(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().numpy().copy()


class Binarize(nn.Module):
    """x >= 0 -> +1 else -1, in standard ops (Where, GreaterOrEqual)."""

    def forward(self, x):
        return binarize(x)


@functools.cache
def quantize_ops():
    """``torch.ops.quantized_decomposed``, registered (about 0.9 s, once): the ONNX exporter's
    op table must also see it before a process's first export."""
    importlib.import_module("torch.ao.quantization.fx._decomposed")
    return torch.ops.quantized_decomposed


def quantize_uint8(x: torch.Tensor, scale: float, zero_point: int) -> torch.Tensor:
    """Affine uint8 fake quantization, round half to even (ONNX QuantizeLinear then
    DequantizeLinear when exported). With gradients: ``fake_quantize_per_tensor_affine``
    (straight-through inside the range); without (inference, export): the same values through
    the decomposed quantize/dequantize ops, which ``torch.export`` traces and the ONNX exporter
    writes as QuantizeLinear and DequantizeLinear."""
    if torch.is_grad_enabled() and x.requires_grad:
        return torch.fake_quantize_per_tensor_affine(x, float(scale), int(zero_point), 0, 255)
    ops = quantize_ops()
    q = ops.quantize_per_tensor(x, float(scale), int(zero_point), 0, 255, torch.uint8)
    return ops.dequantize_per_tensor(q, float(scale), int(zero_point), 0, 255, torch.uint8)


class QuantizeUint8(nn.Module):
    """:func:`quantize_uint8` as a module (exported as QuantizeLinear, DequantizeLinear)."""

    def __init__(self, scale: float, zero_point: int):
        super().__init__()
        if not scale > 0 or not 0 <= int(zero_point) <= 255:
            raise ValueError(f"input_quant needs a scale > 0 and a zero point in 0..255, got ({scale}, {zero_point})")
        self.scale, self.zero_point = float(scale), int(zero_point)

    def forward(self, x):
        return quantize_uint8(x, self.scale, self.zero_point)

    def extra_repr(self):
        return f"scale={self.scale}, zero_point={self.zero_point}"


class FixedPoint(nn.Module):
    """DeepShift's activation rounding in standard ops (Div, Round, Mul, Clip)."""

    def __init__(self, int_bits: int, frac_bits: int):
        super().__init__()
        self.int_bits, self.frac_bits = int_bits, frac_bits

    def forward(self, x):
        step = 2.0 ** -self.frac_bits
        bound = 2.0 ** self.int_bits - step
        return torch.clamp(torch.round(x / step) * step, -bound, bound)
