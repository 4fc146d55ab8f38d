"""Export compressed models so the structure survives.

* :func:`export_onnx` writes each compressed layer as one ``ai.tvmopt`` node holding the compact
  form (docs/onnx-ops.md); with ``plain=True`` it writes standard ONNX instead (Gemm/MatMul/Conv
  with the structured constant weights, Fastfood's FWHT as butterfly stages) that onnxruntime
  and other tools run as is.
* :func:`freeze` returns a copy of the model whose compressed layers call the ``torch.library``
  ops ``torch.ops.tvmopt.*``, so ``torch.export.export(freeze(model), args)`` names them
  (:func:`export_program` does both).
"""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .base import CompressedLayer
from tvmopt.model.opset import SPECS, onnx_translation_table, register_torch_ops

OPSET = 18


class OpModule(nn.Module):
    """A frozen compressed layer: its compact tensors as buffers and one custom-op call."""

    def __init__(self, op: str, inputs: dict[str, np.ndarray | None], attrs: dict):
        super().__init__()
        register_torch_ops()
        self.spec = SPECS[op]
        self.attrs = attrs
        for name, _, _ in self.spec.inputs:
            value = inputs.get(name)
            self.register_buffer(name, None if value is None else torch.from_numpy(np.ascontiguousarray(value)))

    def forward(self, x):
        fn = getattr(torch.ops.tvmopt, self.spec.torch_name)
        tensors = [getattr(self, name) for name, _, _ in self.spec.inputs]
        return fn(x, *tensors, *(self.attrs[name] for name, _ in self.spec.attrs))

    def extra_repr(self):
        return f"{self.spec.name}, {self.attrs}"


def _replace(model: nn.Module, fn) -> nn.Module:
    """A deep copy of ``model`` in eval mode with every CompressedLayer ``c`` replaced by ``fn(c)``."""
    model = copy.deepcopy(model).eval()
    if isinstance(model, CompressedLayer):
        return fn(model)
    for name, child in list(model.named_modules()):
        if isinstance(child, CompressedLayer):
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, attr, fn(child))
    return model


def freeze(model: nn.Module) -> nn.Module:
    """Compressed layers -> custom-op modules holding their compact form."""
    from .base import QuantizeUint8

    def frozen(c):
        op = OpModule(c.onnx_op, *c.compact())
        return nn.Sequential(QuantizeUint8(*c.input_quant), op) if c.input_quant else op

    return _replace(model, frozen)


def to_plain(model: nn.Module) -> nn.Module:
    """Compressed layers -> standard modules computing the same function."""
    return _replace(model, lambda c: c.to_plain())


def export_program(model: nn.Module, example_input: torch.Tensor) -> torch.export.ExportedProgram:
    """``torch.export`` of the frozen model: each compressed layer is one ``tvmopt.*`` call."""
    with torch.no_grad():
        return torch.export.export(freeze(model), (example_input,))


def export_onnx(model: nn.Module, example_input: torch.Tensor, path: str | os.PathLike, *,
                plain: bool = False, dynamic_batch: bool = True, opset: int = OPSET) -> Path:
    """Write ``model`` to ``path`` as ONNX and return the path.

    The graph input is ``input``, the output ``output``; with ``dynamic_batch`` the first axis
    is symbolic. ``plain=False`` keeps each compressed layer as one ``ai.tvmopt`` node;
    ``plain=True`` writes standard ops only.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frozen = to_plain(model) if plain else freeze(model)
    if dynamic_batch and example_input.shape[0] == 1:
        # torch.export specializes a dimension whose example size is 1
        example_input = example_input.expand(2, *example_input.shape[1:]).contiguous()
    table = None if plain else onnx_translation_table()
    dynamic = {"x": {0: torch.export.Dim("batch")}} if dynamic_batch else None
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        _export(frozen, example_input, path, table, dynamic, opset)
    return path


class _Named(nn.Module):
    """Names the graph input ``x`` for dynamic shapes regardless of the model's signature."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)


def _export(model, example_input, path, table, dynamic, opset):
    import contextlib
    import io
    import logging

    from .base import quantize_ops

    quantize_ops()        # input_quant's QuantizeLinear/DequantizeLinear, known to the exporter

    # the exporter logs a warning per missing torchvision op and prints its progress
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        program = torch.onnx.export(_Named(model), (example_input,), dynamo=True, opset_version=opset,
                                    custom_translation_table=table, dynamic_shapes=dynamic,
                                    input_names=["input"], output_names=["output"], external_data=False)
    program.save(str(path), external_data=False)
    _strip_metadata(path)


def _strip_metadata(path: Path) -> None:
    """Drop the exporter's per-node stack traces and names (most of a small model's bytes)."""
    import onnx

    model = onnx.load(str(path))
    for node in model.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    for value in list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info):
        del value.metadata_props[:]
    for init in model.graph.initializer:
        del init.metadata_props[:]
    del model.graph.metadata_props[:]
    onnx.save(model, str(path))
