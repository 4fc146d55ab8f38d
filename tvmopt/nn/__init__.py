"""Compressed layers for PyTorch and their structure-preserving export.

Each layer is a drop-in for ``nn.Linear`` (and ``nn.Conv2d`` where the paper has one):

=============================  =====================================================
``ShiftLinear/ShiftConv2d``    DeepShift-Q / -PS: weights ±2^p (default 5 bits)
``BinaryLinear/BinaryConv2d``  BinaryConnect / BNN / XNOR-Net: ±1 (·alpha per channel)
``TernaryLinear/...Conv2d``    {-alpha, 0, +alpha} with TWN's threshold rule
``Fastfood``                   adaptive Fastfood S·H·G·Π·H·B (Deep Fried Convnets)
``HadamardClassifier``         fixed Hadamard head with a learned scale
``NMSparseLinear/...Conv2d``   N:M (optionally transposable) magnitude-pruned masks
``HashedLinear``               HashedNets / FunHashNN (linear reconstruction)
=============================  =====================================================

``compress(model, method)`` converts a trained dense model; ``export_onnx`` and
``export_program`` write it with the structure kept (docs/onnx-ops.md).
"""

from .base import CompressedLayer
from .binary import BinaryConv2d, BinaryLinear
from .convert import METHODS, clip_latent_, compress, compressed_layers, weight_bytes
from .export import export_onnx, export_program, freeze, to_plain
from .fastfood import Fastfood, HadamardClassifier, fwht
from .hashed import HashedLinear
from .nm import NMSparseConv2d, NMSparseLinear, nm_mask, transposable_mask
from .shift import ShiftConv2d, ShiftLinear
from .ternary import TernaryConv2d, TernaryLinear

__all__ = [
    "CompressedLayer", "ShiftLinear", "ShiftConv2d", "BinaryLinear", "BinaryConv2d", "TernaryLinear",
    "TernaryConv2d", "Fastfood", "HadamardClassifier", "fwht", "NMSparseLinear", "NMSparseConv2d",
    "nm_mask", "transposable_mask", "HashedLinear", "METHODS", "compress", "compressed_layers",
    "weight_bytes", "clip_latent_", "export_onnx", "export_program", "freeze", "to_plain",
]
