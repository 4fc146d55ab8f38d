"""Fold what an ONNX graph computes from constants and static shapes, before TVM imports it.

Exporters compute shapes and paddings in the graph (``Shape -> Gather -> Concat -> Pad``): the
TorchScript exporter writes DeepShift's option-A shortcut ``F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0,
p, p))`` as a dozen ops whose only inputs are constants, and TVM's importer then refuses the
``Pad`` ("Dynamic pads are not supported yet"). Here, once the graph input's shape is fixed:

1. ONNX shape inference gives every tensor whose shape is static its shape;
2. ``Shape`` and ``Size`` of such a tensor become constants;
3. every node of the standard domain whose inputs are all constants is evaluated by onnx's
   reference evaluator and replaced by its outputs as initializers (random ops excepted; outputs
   of at most ``MAX_FOLDED`` elements, so a layer's weight arithmetic such as ``Sign(W)`` stays
   for the compiler pass, which handles weights itself).

Nodes of other domains (``ai.tvmopt``) are never evaluated here. A node that fails to evaluate
is kept as it is; the importer then says what it cannot do.
"""

from __future__ import annotations

import numpy as np

#: the largest folded output: shape arithmetic and paddings, not weights
MAX_FOLDED = 1 << 16
_NOT_FOLDED = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial",
               "Bernoulli", "If", "Loop", "Scan"}


def fold_constants(model, input_shapes: dict[str, tuple[int, ...]]):
    """A copy of ``model`` with its constant subgraphs folded (see the module docstring), the
    graph inputs' shapes set to ``input_shapes`` (by name)."""
    from onnx import numpy_helper, shape_inference

    model = _copy(model)
    graph = model.graph
    for inp in graph.input:
        if inp.name in input_shapes:
            dims = inp.type.tensor_type.shape.dim
            for d, size in zip(dims, input_shapes[inp.name]):
                d.Clear()
                d.dim_value = int(size)
    try:
        inferred = shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # noqa: BLE001 - a graph shape inference cannot read: fold nothing by shape
        inferred = model
    shapes = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        t = vi.type.tensor_type
        if t.HasField("shape") and all(d.HasField("dim_value") for d in t.shape.dim):
            shapes[vi.name] = tuple(int(d.dim_value) for d in t.shape.dim)

    initializers = {t.name for t in graph.initializer}
    known: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in graph.initializer
                                    if int(np.prod(list(t.dims), dtype=np.float64)) <= MAX_FOLDED}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    kept, folded = [], {}
    for node in graph.node:
        values = _evaluate(node, known, shapes, opset)
        if values is None:
            kept.append(node)
            continue
        for name, value in zip(node.output, values):
            if name:
                known[name] = value
                folded[name] = value
    if len(kept) == len(graph.node):
        return model
    live = {x for n in kept for x in n.input} | {o.name for o in graph.output}
    new_inits = [numpy_helper.from_array(np.asarray(v), name) for name, v in folded.items()
                 if name in live and name not in initializers]
    del graph.node[:]
    graph.node.extend(kept)
    graph.initializer.extend(new_inits)
    dead = [t for t in graph.initializer if t.name not in live]
    for t in dead:
        graph.initializer.remove(t)
    # exports of IR version 3 also list each initializer as a graph input: a dead one left there
    # would become an input of the model (inception_v2 of the model zoo: 26 of them)
    dead_names = {t.name for t in dead}
    for inp in [i for i in graph.input if i.name in dead_names]:
        graph.input.remove(inp)
    del graph.value_info[:]
    return model


def _copy(model):
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def _evaluate(node, known, shapes, opset: int):
    """The outputs of ``node`` when it is foldable, else None."""
    from onnx import helper, numpy_helper

    if node.domain not in ("", "ai.onnx") or node.op_type in _NOT_FOLDED:
        return None
    if node.op_type == "Constant":
        attr = node.attribute[0]
        value = helper.get_attribute_value(attr)
        if attr.name == "value":
            value = numpy_helper.to_array(value)
        elif attr.name in ("value_float", "value_int"):
            value = np.array(value, np.float32 if attr.name == "value_float" else np.int64)
        elif attr.name in ("value_floats", "value_ints"):
            value = np.array(value, np.float32 if attr.name == "value_floats" else np.int64)
        else:
            return None
        return [value] if value.size <= MAX_FOLDED else None
    if node.op_type in ("Shape", "Size") and node.input[0] in shapes:
        shape = np.array(shapes[node.input[0]], np.int64)
        if node.op_type == "Size":
            return [np.array(int(np.prod(shape)), np.int64)]
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        start, end = attrs.get("start", 0), attrs.get("end", None)
        return [shape[start:end]]
    inputs = [x for x in node.input if x]
    if not inputs or not all(x in known for x in inputs):
        return None
    try:
        from onnx.reference import ReferenceEvaluator

        graph = helper.make_graph(
            [node], "fold", [helper.make_tensor_value_info(x, helper.np_dtype_to_tensor_dtype(known[x].dtype),
                                                           known[x].shape) for x in inputs],
            [helper.make_tensor_value_info(y, 0, None) for y in node.output if y])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        outputs = ReferenceEvaluator(model).run(None, {x: known[x] for x in inputs})
    except Exception:  # noqa: BLE001 - not foldable here; the importer handles (or names) it
        return None
    outputs = [np.asarray(o) for o in outputs]
    if any(o.size > MAX_FOLDED for o in outputs):
        return None
    return outputs
