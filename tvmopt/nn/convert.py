"""Turn the dense layers of a model into compressed ones, and account for weight memory."""

from __future__ import annotations

import copy

import torch
from torch import nn

from .base import CompressedLayer
from .binary import BinaryConv2d, BinaryLinear
from .fastfood import Fastfood, HadamardClassifier
from .hashed import HashedLinear
from .nm import NMSparseConv2d, NMSparseLinear
from .shift import ShiftConv2d, ShiftLinear
from .ternary import TernaryConv2d, TernaryLinear

# method -> (class for nn.Linear, class for nn.Conv2d or None when the paper has no conv form)
METHODS: dict[str, tuple[type, type | None]] = {
    "shift": (ShiftLinear, ShiftConv2d),
    "binary": (BinaryLinear, BinaryConv2d),
    "ternary": (TernaryLinear, TernaryConv2d),
    "nm": (NMSparseLinear, NMSparseConv2d),
    "hashed": (HashedLinear, None),
    "fastfood": (Fastfood, None),
    "hadamard": (HadamardClassifier, None),
}


def _convert(layer: nn.Module, method: str, kwargs: dict) -> nn.Module:
    linear_cls, conv_cls = METHODS[method]
    if isinstance(layer, nn.Linear):
        cls = linear_cls
    elif isinstance(layer, nn.Conv2d) and conv_cls is not None:
        cls = conv_cls
    else:
        return layer
    return cls.from_dense(layer, **kwargs)


def compress(model: nn.Module, method: str, *, skip: tuple[str, ...] = (), only: tuple[str, ...] | None = None,
             strict: bool = False, **kwargs) -> nn.Module:
    """A copy of ``model`` with its ``nn.Linear`` (and, where the method has one, ``nn.Conv2d``)
    layers replaced by ``method``'s compressed layer, built with ``from_dense`` (``kwargs`` go
    to it). ``skip`` names layers to keep dense (e.g. the first and last), ``only`` restricts
    the conversion to the named layers. ``input_quant=(scale, zero_point)`` quantizes each
    converted layer's input to uint8 (exported as QuantizeLinear/DequantizeLinear; ternary,
    binary and shift layers whose rows span at most 7 powers of two, ``weight_bits=4``, then run
    integer products where the CPU has VNNI).

    A layer the method cannot take (a reduction of 27 for 2:4 sparsity, say) stays dense, and
    one warning names every such layer and why; ``strict=True`` raises a ValueError naming the
    first one instead."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    input_quant = kwargs.pop("input_quant", None)
    if input_quant is not None:
        from .base import QuantizeUint8

        QuantizeUint8(*input_quant)            # checks the values
        input_quant = (float(input_quant[0]), int(input_quant[1]))
    model = copy.deepcopy(model)
    kept = []
    for name, child in list(model.named_modules()):
        if not name or name in skip or (only is not None and name not in only):
            continue
        if type(child) in (nn.Linear, nn.Conv2d):
            parent, _, attr = name.rpartition(".")
            try:
                converted = _convert(child, method, kwargs)
            except ValueError as e:
                if strict:
                    raise ValueError(f"layer '{name}' cannot be made {method}: {e} (keep it dense with "
                                     f"skip=({name!r},))") from None
                kept.append(f"{name} ({e})")
                continue
            if input_quant is not None:
                converted.input_quant = input_quant
            setattr(model.get_submodule(parent) if parent else model, attr, converted)
    if kept:
        import warnings

        warnings.warn(f"compress({method!r}): kept {len(kept)} layer(s) dense that it cannot take: "
                      f"{'; '.join(kept)}; pass skip=(...) to name them, or strict=True to make this an error")
    return model


def compressed_layers(model: nn.Module) -> list[tuple[str, CompressedLayer]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, CompressedLayer)]


def weight_bytes(model: nn.Module) -> dict[str, int]:
    """Weight memory of a model: ``compressed`` (compact form of its compressed layers),
    ``compressed_dense`` (the same layers in fp32), ``dense`` (other Linear/Conv weights in
    fp32), and ``total`` (compressed + dense). Biases and normalization parameters excluded."""
    comp = comp_dense = dense = 0
    for _, m in model.named_modules():
        if isinstance(m, CompressedLayer):
            comp += m.weight_bytes()
            comp_dense += m.dense_weight_bytes()
        elif isinstance(m, (nn.Linear, nn.Conv2d)):
            dense += m.weight.numel() * m.weight.element_size()
    return {"compressed": comp, "compressed_dense": comp_dense, "dense": dense, "total": comp + dense}


@torch.no_grad()
def clip_latent_(model: nn.Module) -> None:
    """Clip the latent weights of binary layers to [-1, 1] (call after each optimizer step)."""
    for m in model.modules():
        if hasattr(m, "clip_"):
            m.clip_()
