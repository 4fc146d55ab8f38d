"""The compiler pass: structure detection (``structure``) and the Relax rewrite (``lower``)."""

from .lower import LayerReport, Lowered, lower
from .structure import DetectOptions, Kernel, detect

__all__ = ["lower", "Lowered", "LayerReport", "detect", "DetectOptions", "Kernel"]
