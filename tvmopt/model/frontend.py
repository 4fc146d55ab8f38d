"""Import a model into Relax: ONNX files (standard ops and the ``ai.tvmopt`` domain) and
``torch.export`` programs (with the ``torch.ops.tvmopt`` ops of :mod:`tvmopt.nn`).

Compressed layers are imported *faithfully*, not lowered: each becomes a placeholder call

    R.call_dps_packed("tvmopt.<OnnxOp>", (x, *compact tensors, *attributes), out_ty)

whose tensors are the layer's compact initializers (an empty tensor stands for a missing
optional input) and whose attributes are ``R.prim_value`` (ints) or ``R.shape`` (int lists), in
the order of :data:`tvmopt.model.opset.SPECS`. The pass in :mod:`tvmopt.passes` rewrites every
placeholder to a scheduled kernel; a module that still holds one cannot be built.
"""

from __future__ import annotations

import contextlib
import io
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tvmopt.errors import ModelError, model_stage
from tvmopt.model.fold import fold_constants

PLACEHOLDER_PREFIX = "tvmopt."


@dataclass(frozen=True)
class Input:
    """One graph input: its name, static shape and element type."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"


@dataclass
class Imported:
    mod: Any                      # tvm.IRModule with "main"
    inputs: list[Input]           # every input, in the model's order
    source: str

    @property
    def input_name(self) -> str:
        """The first input's name (most models have one input)."""
        return self.inputs[0].name

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.inputs[0].shape


#: input element types tvmopt compiles (ONNX TensorProto codes)
_INPUT_TYPES = {1: "float32", 6: "int32", 7: "int64", 9: "bool"}


def load(source, batch: int | None = None, shapes: dict[str, tuple[int, ...]] | None = None) -> Imported:
    """Import ``source`` (a path to an .onnx file, or a ``torch.export.ExportedProgram``).

    ``batch`` sets the first axis of the input: a symbolic one (a dynamic batch, ONNX or
    ``torch.export`` with ``Dim``) is specialised to it (default 1); a static one of another
    size is rebatched when the graph does not fix the batch elsewhere (a ModelError says so
    when it does). None keeps a static batch as exported. ``shapes`` (input name -> shape, as
    tvmc's ``--input-shapes``; :func:`parse_input_shapes`) gives named inputs their whole shape:
    every symbolic axis (a dynamic sequence length) is set, static ones must agree but the
    first (the batch, rebatched as ``batch`` is).
    """
    torch = sys.modules.get("torch")        # an ExportedProgram means torch is loaded: not imported for a path
    if torch is not None and isinstance(source, torch.export.ExportedProgram):
        return _load_exported_program(source, batch, shapes)
    return _load_onnx(Path(source), batch, shapes)   # TVM's C++ noise: captured by model_stage


def parse_input_shapes(text: str) -> dict[str, tuple[int, ...]]:
    """tvmc's ``--input-shapes`` syntax: ``"input_ids:[1,128] attention_mask:[1,128]"`` (names
    separated by spaces or commas outside the brackets). A ValueError names what is wrong."""
    import re

    shapes: dict[str, tuple[int, ...]] = {}
    rest = text.strip()
    pattern = re.compile(r"\s*([^\s:,\[\]]+)\s*:\s*\[([^\]]*)\]\s*,?")
    while rest:
        match = pattern.match(rest)
        if match is None:
            raise ValueError(f"expected NAME:[D1,D2,...] at {rest[:40]!r} (as in \"input_ids:[1,128] mask:[1,128]\")")
        name, dims = match.group(1), match.group(2)
        try:
            shape = tuple(int(d) for d in dims.split(",") if d.strip())
        except ValueError:
            raise ValueError(f"input '{name}': sizes must be whole numbers, got [{dims}]") from None
        if not shape or any(d <= 0 for d in shape):
            raise ValueError(f"input '{name}': every size must be positive, got [{dims}]")
        if name in shapes:
            raise ValueError(f"input '{name}' is given twice")
        shapes[name] = shape
        rest = rest[match.end():].strip()
    if not shapes:
        raise ValueError("no input shape given")
    return shapes


def _check_shape_names(name: str, shapes: dict | None, inputs: list[str]) -> None:
    unknown = sorted(set(shapes or ()) - set(inputs))
    if unknown:
        raise ModelError(f"{name}: --input-shapes names {', '.join(repr(u) for u in unknown)}, which the model does "
                         f"not take (its inputs: {', '.join(inputs)})")


# ---------------------------------------------------------------------------------------------
# placeholders

def placeholder(op: str, x, tensors: dict, attrs: dict, out_shape) -> Any:
    """The Relax call standing for one compressed layer (see the module docstring)."""
    from tvm import relax

    from tvmopt.model.opset import SPECS

    spec = SPECS[op]
    args = [x]
    for name, etype, _ in spec.inputs:
        t = tensors.get(name)
        if t is None:
            t = relax.const(np.zeros((0,), dtype=np.float32 if etype == "float" else etype))
        args.append(t)
    for name, kind in spec.attrs:
        v = attrs[name]
        args.append(relax.ShapeExpr([int(i) for i in v]) if kind == "ints" else relax.prim_value(int(v)))
    return relax.call_dps_packed(relax.ExternFunc(PLACEHOLDER_PREFIX + op), relax.Tuple(args),
                                 relax.TensorType([int(d) for d in out_shape], "float32"))


def checked_placeholder(spec, x, tensors: dict, attrs: dict, node_name: str = ""):
    """The placeholder of one ``ai.tvmopt`` node after checking that its input, tensors and
    attributes agree (ModelError naming the node and the problem otherwise)."""
    from tvmopt.model.opset import check_node, output_shape

    x_shape = static_shape(x)
    shapes = {name: (None if t is None else static_shape(t)) for name, t in tensors.items()}
    dtypes = {name: str(t.ty.dtype) for name, t in tensors.items() if t is not None}
    problem = check_node(spec, x_shape, shapes, attrs, dtypes)
    if problem:
        where = f" '{node_name}'" if node_name else ""
        raise ModelError(f"ai.tvmopt {spec.name} node{where}: {problem}")
    return placeholder(spec.name, x, tensors, attrs, output_shape(spec, x_shape, attrs))


def static_shape(expr) -> tuple[int, ...]:
    shape = expr.ty.shape
    try:
        return tuple(int(d) for d in shape)
    except TypeError as exc:
        raise ModelError(f"tvmopt needs static shapes; got {shape} (set the batch size)") from exc


# ---------------------------------------------------------------------------------------------
# ONNX

def _onnx_converters() -> dict:
    from tvm.relax.frontend.onnx.onnx_frontend import OnnxOpConverter

    from tvmopt.model.opset import SPECS

    converters = {}
    for spec in SPECS.values():
        def _impl_v1(cls, bb, inputs, attr, params, _spec=spec):
            x = inputs[0]
            names = [name for name, _, _ in _spec.inputs]
            tensors = {n: (inputs[i + 1] if i + 1 < len(inputs) else None) for i, n in enumerate(names)}
            attrs = {}
            for name, kind in _spec.attrs:
                if name not in attr:
                    raise ModelError(f"{_spec.name} node lacks attribute '{name}'")
                attrs[name] = list(attr[name]) if kind == "ints" else int(attr[name])
            return checked_placeholder(_spec, x, tensors, attrs, attr.get("tvm_custom", {}).get("name", ""))

        converters[spec.name] = type(spec.name + "Converter", (OnnxOpConverter,),
                                     {"_impl_v1": classmethod(_impl_v1)})

    def _sum(cls, bb, inputs, attr, params):
        """ONNX Sum as a chain of adds (TVM imports it as broadcast_to + stack + sum, which no
        kernel can fuse: a ResNet's residual adds would run as separate reductions)."""
        from tvm import relax

        out = inputs[0]
        for x in inputs[1:]:
            out = relax.op.add(out, x)
        return out

    converters["Sum"] = type("SumConverter", (OnnxOpConverter,), {"_impl_v1": classmethod(_sum)})
    converters["Pad"] = _zero_pad_converter()
    converters["Clip"] = _clip_converter()
    return converters


def _clip_converter():
    """ONNX Clip with constant bounds (ReLU6, hard sigmoid's) as Relax's ``maximum`` and
    ``minimum`` ops, which the channels-last conversion carries through (passes/layout.py): TVM
    imports Clip as TE functions, opaque to it, so each ReLU6 of a MobileNet ran between two
    transposes back to NCHW. A NaN bound is no bound, as in onnxruntime; bounds computed in the
    graph keep TVM's conversion."""
    import numpy as np
    import tvm
    from tvm import relax
    from tvm.relax.frontend.onnx.onnx_frontend import Clip

    def constant(bound):
        if bound is None:
            return None, True
        if isinstance(bound, tvm.ir.expr.Constant) and bound.value.numpy().size == 1:
            return float(bound.value.numpy().reshape(-1)[0]), True
        return None, False

    class ConstantClip(Clip):
        @classmethod
        def _impl_v13(cls, bb, inputs, attr, params):
            x = inputs[0]
            (lo, lo_ok), (hi, hi_ok) = constant(inputs[1] if len(inputs) > 1 else None), \
                constant(inputs[2] if len(inputs) > 2 else None)
            dtype = str(x.ty.dtype) if hasattr(x.ty, "dtype") else ""
            if not (lo_ok and hi_ok) or dtype != "float32":
                return super()._impl_v13(bb, inputs, attr, params)
            out = x
            if lo is not None and not np.isnan(lo) and lo != -np.inf:      # -inf: no bound (Clip-1's default)
                out = bb.emit(relax.op.maximum(out, relax.const(lo, "float32")))
            if hi is not None and not np.isnan(hi) and hi != np.inf:
                out = bb.emit(relax.op.minimum(out, relax.const(hi, "float32")))
            return out

        @classmethod
        def _impl_v11(cls, bb, inputs, attr, params):
            return cls._impl_v13(bb, inputs, attr, params)

        @classmethod
        def _impl_v1(cls, bb, inputs, attr, params):
            lo, hi = float(attr.get("min", -np.inf)), float(attr.get("max", np.inf))
            return cls._impl_v13(bb, [inputs[0], relax.const(lo, "float32"), relax.const(hi, "float32")], attr, params)

    return ConstantClip


def _zero_pad_converter():
    """ONNX Pad (opset 11 on): a constant zero padding of a 4-d tensor's channels, rows and
    columns as Relax's ``nn.pad`` (TVM imports every Pad as a TE function, opaque to the passes):
    the channels-last conversion folds a pad of rows and columns into the convolution after it,
    and carries a pad of channels (ResNet-20's option-A shortcuts) through (passes/layout.py)."""
    from tvm import relax
    from tvm.relax.frontend.onnx.onnx_frontend import Pad

    class ZeroPad(Pad):
        @classmethod
        def _lower_pad(cls, bb, inputs, attr, params, allowed_modes):
            before, after, value = cls._parse_pads_and_axes(inputs, params)
            if attr.get("mode", b"constant").decode("utf-8") == "constant" and value == 0 and len(before) == 4 \
                    and min(before + after) >= 0 and before[0] == after[0] == 0:
                return relax.op.nn.pad(inputs[0], [int(v) for pair in zip(before, after) for v in pair])
            return super()._lower_pad(bb, inputs, attr, params, allowed_modes)

    return ZeroPad


@contextlib.contextmanager
def _tvmopt_onnx_ops():
    """Make TVM's ONNX importer know the ai.tvmopt ops (it has no hook for custom domains)."""
    from tvm.relax.frontend.onnx import onnx_frontend

    original = onnx_frontend._get_convert_map
    extra = _onnx_converters()

    def patched():
        table = dict(original())
        table.update(extra)
        return table

    onnx_frontend._get_convert_map = patched
    try:
        yield patched
    finally:
        onnx_frontend._get_convert_map = original


def read_onnx(path: Path):
    """onnx.load with one clear error per way a file can be bad."""
    import onnx

    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    if path.is_dir():
        raise ModelError(f"model path is a directory, not an ONNX file: {path}")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf DecodeError, truncated file...
        raise ModelError(f"cannot read {path} as ONNX ({type(exc).__name__}: {str(exc)[:120]})") from None
    if not model.graph.node:
        raise ModelError(f"{path} holds no graph nodes (corrupt or not an ONNX model)")
    newest = onnx.defs.onnx_opset_version()
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx") and opset.version > newest:
            raise ModelError(f"{path.name} declares ONNX opset {opset.version}, newer than any this onnx package "
                             f"knows (up to {newest}); re-export it with opset {newest} or lower")
    return model


def _load_onnx(path: Path, batch: int, given: dict | None) -> Imported:
    from tvmopt.model.qoperator import as_qdq

    model = as_qdq(read_onnx(path))      # QLinearConv, QLinearMatMul, QGemm...: their QDQ form
    with _tvmopt_onnx_ops() as table:
        known = table()
        unsupported = sorted({n.op_type for n in model.graph.node if n.op_type not in known
                              and n.op_type not in ("Constant", "If")})
        if unsupported:
            raise ModelError(f"{path.name}: unsupported operator(s): {', '.join(unsupported)}")
        inits = {i.name for i in model.graph.initializer}
        graph_inputs = [i for i in model.graph.input if i.name not in inits]
        if not graph_inputs:
            raise ModelError(f"{path.name}: the graph has no input (every graph input is an initializer)")
        _check_shape_names(path.name, given, [i.name for i in graph_inputs])
        named = _named_sizes(graph_inputs, given)
        inputs, exported = [], None
        for i, inp in enumerate(graph_inputs):
            if not inp.name:
                raise ModelError(f"{path.name}: graph input {i} has an empty name")
            code = inp.type.tensor_type.elem_type
            if code not in _INPUT_TYPES:
                from onnx import helper

                kind = helper.tensor_dtype_to_np_dtype(code) if code else "no type"
                raise ModelError(f"{path.name}: input '{inp.name}' is {kind}; tvmopt compiles float32 models "
                                 f"(with int32/int64/bool inputs such as token ids): convert the model to float32")
            shape = _input_shape(path.name, inp, batch, (given or {}).get(inp.name), named)
            exported = exported if exported is not None else _static_first_axis(inp)
            inputs.append(Input(inp.name, shape, _INPUT_TYPES[code]))
        rebatched = exported is not None and inputs[0].shape[0] != exported
        _check_graph(path.name, model, {i.name for i in inputs})
        shapes = {i.name: i.shape for i in inputs}
        # exporters compute shapes and paddings in the graph; TVM's importer wants them constant
        with model_stage(f"{path.name}: folding constants"):
            model = fold_constants(model, shapes)
        from tvm.relax.frontend.onnx import from_onnx

        # the importer prints each failing node with its inputs to stdout; the error we raise says it
        with warnings.catch_warnings(), model_stage(f"{path.name}: import"), \
                contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            mod = from_onnx(model, shape_dict={k: list(v) for k, v in shapes.items()},
                            dtype_dict={i.name: i.dtype for i in inputs}, sanitize_input_names=False)
    check_sizes(path.name, mod)
    if rebatched:
        _check_rebatched(path.name, mod, model, exported, inputs[0].shape[0])
    return Imported(mod, inputs, str(path))


def _static_first_axis(inp) -> int | None:
    dims = inp.type.tensor_type.shape.dim
    return int(dims[0].dim_value) if dims and dims[0].HasField("dim_value") and dims[0].dim_value > 0 else None


def _check_rebatched(name: str, mod, model, exported: int, batch: int) -> None:
    """A static batch-``exported`` graph imported at ``batch``: every output whose first axis
    was the batch must now have ``batch`` rows, or the graph fixes the batch somewhere (a
    Reshape to [1, -1], say) and its results would mix samples."""
    outputs = _output_types(mod)
    for out, ty in zip(model.graph.output, outputs):
        dims = out.type.tensor_type.shape.dim
        was = int(dims[0].dim_value) if dims and dims[0].HasField("dim_value") else None
        now = _first_dim(ty)
        if was == exported and now != batch:
            raise ModelError(f"{name} was exported with a static batch of {exported} and its graph fixes it "
                             f"(output '{out.name}' keeps {now} rows at batch {batch}); re-export it with a dynamic "
                             f"batch axis (torch.onnx.export(..., dynamic_axes={{'input': {{0: 'batch'}}}}) or "
                             f"dynamo=True with dynamic_shapes) or build it with --batch {exported}")


def _output_types(mod) -> list:
    ty = mod["main"].ret_ty
    fields = getattr(ty, "fields", None)
    return list(fields) if fields is not None else [ty]


def _first_dim(ty) -> int | None:
    shape = getattr(ty, "shape", None)
    try:
        return int(shape[0]) if shape is not None and len(shape) else None
    except TypeError:
        return None


#: the largest tensor tvmopt compiles: TVM indexes with int32
MAX_ELEMENTS = 2**31 - 1


def _named_sizes(graph_inputs, given: dict | None) -> dict[str, int]:
    """Symbolic axis name -> the size ``--input-shapes`` gives it on some input, so that the
    inputs sharing it (``attention_mask`` beside ``input_ids``) get it too."""
    named: dict[str, int] = {}
    for inp in graph_inputs:
        sizes = (given or {}).get(inp.name)
        dims = inp.type.tensor_type.shape.dim
        if sizes is None or len(sizes) != len(dims):
            continue
        for d, size in zip(dims, sizes):
            if not d.HasField("dim_value") and d.dim_param:
                named.setdefault(d.dim_param, size)
    return named


def _input_shape(name: str, inp, batch: int | None, given: tuple[int, ...] | None = None,
                 named: dict[str, int] | None = None) -> tuple[int, ...]:
    """The graph input's static shape: the first axis, when symbolic or unset, is the batch
    (default 1); a static first axis is replaced by ``batch`` when one is given. ``given``
    (``--input-shapes``): the whole shape, which static axes but the first must agree with;
    ``named``: sizes of symbolic axes, by name, that another input's given shape set."""
    dims = inp.type.tensor_type.shape.dim
    if given is not None:
        if len(given) != len(dims):
            raise ModelError(f"{name}: --input-shapes gives input '{inp.name}' {len(given)} axes, the model "
                             f"{len(dims)}")
        for axis, (d, size) in enumerate(zip(dims, given)):
            if axis and d.HasField("dim_value") and d.dim_value > 0 and d.dim_value != size:
                raise ModelError(f"{name}: --input-shapes gives input '{inp.name}' size {size} on axis {axis}, which "
                                 f"the model fixes at {d.dim_value}")
        return _within_limit(name, inp, given)
    shape = []
    for axis, d in enumerate(dims):
        if not d.HasField("dim_value") and d.dim_param and d.dim_param in (named or {}):
            shape.append(named[d.dim_param])
        elif axis == 0 and batch is not None and d.HasField("dim_value") and d.dim_value > 0:
            shape.append(batch)
        elif d.HasField("dim_value") and d.dim_value > 0:
            shape.append(d.dim_value)
        elif axis == 0 and not d.HasField("dim_value"):
            shape.append(batch or 1)
        elif axis == 0:               # a batch axis of size 0 (or negative): nothing to run
            raise ModelError(f"{name}: input '{inp.name}' has a batch axis (axis 0) of size {d.dim_value}; "
                             f"export it with a positive or a symbolic (dynamic) batch size")
        else:
            what = f"dim_value {d.dim_value}" if d.HasField("dim_value") else f"symbolic '{d.dim_param}'"
            sizes = ",".join(str(dd.dim_value) if dd.HasField("dim_value") and dd.dim_value > 0
                             else dd.dim_param or "N" for dd in dims)
            raise ModelError(f"{name}: input '{inp.name}' axis {axis} is {what}; tvmopt needs a positive static "
                             f"size on every axis but the first (the batch): give its shape with --input-shapes "
                             f"\"{inp.name}:[{sizes}]\", names replaced by sizes")
    return _within_limit(name, inp, shape)


def _within_limit(name: str, inp, shape) -> tuple[int, ...]:
    """``shape`` as a tuple; a ModelError where it holds more elements than TVM indexes."""
    if int(np.prod(shape, dtype=np.float64)) > MAX_ELEMENTS:
        raise ModelError(f"{name}: input '{inp.name}' of shape {list(shape)} is larger than 2^31 elements")
    return tuple(shape)


def _check_graph(name: str, model, input_names: set[str]) -> None:
    """Each node reads only tensors defined before it and defines each tensor once: the two
    invariants whose breach makes TVM's importer fail with a bare KeyError."""
    from onnx import helper

    for t in model.graph.initializer:
        if not t.HasField("raw_data"):
            continue
        try:
            itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
        except (KeyError, TypeError, ValueError):
            raise ModelError(f"{name}: initializer '{t.name}' has unknown data type {t.data_type}") from None
        need = int(np.prod(list(t.dims), dtype=np.float64)) * itemsize
        if t.data_type != 0 and need != len(t.raw_data):
            raise ModelError(f"{name}: initializer '{t.name}' holds {len(t.raw_data)} bytes, but its shape "
                             f"{list(t.dims)} of {helper.tensor_dtype_to_np_dtype(t.data_type)} needs {need}")
    defined = set(input_names) | {""} | {t.name for t in model.graph.initializer}
    for i, node in enumerate(model.graph.node):
        label = f"node {i} ({node.op_type}{', ' + repr(node.name) if node.name else ''})"
        for x in node.input:
            if x not in defined:
                raise ModelError(f"{name}: {label} reads '{x}', which no earlier node, initializer or input "
                                 f"defines (nodes out of order, or a missing initializer)")
        for y in node.output:
            if y and y in defined:
                raise ModelError(f"{name}: {label} defines '{y}' a second time")
            defined.add(y)
    for out in model.graph.output:
        if out.name not in defined:
            raise ModelError(f"{name}: graph output '{out.name}' is not defined by any node")


def check_sizes(name: str, mod) -> None:
    """Refuse a model with a tensor TVM cannot index (more than 2^31 elements): such a shape
    comes from a corrupt attribute or dimension, and would fail deep in the compiler."""
    from tvm import relax

    def visit(expr):
        shape = getattr(getattr(expr, "ty", None), "shape", None)
        try:
            dims = [int(d) for d in shape] if shape is not None else []
        except TypeError:
            return
        if dims and (min(dims) < 0 or int(np.prod(dims, dtype=np.float64)) > MAX_ELEMENTS):
            raise ModelError(f"{name}: a tensor of shape {dims} is out of range (over 2^31 elements or "
                             f"negative); a dimension or attribute of the model is corrupt")

    for _, func in mod.functions_items():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)


# ---------------------------------------------------------------------------------------------
# torch.export

def _torch_converters() -> dict:
    from tvmopt.model.opset import SPECS, register_torch_ops

    register_torch_ops()
    table = {}
    for spec in SPECS.values():
        def convert(node, importer, _spec=spec):
            x = importer.env[node.args[0]]
            nodes, attrs = _spec.split_args(list(node.args[1:]))
            tensors = {name: (None if a is None else importer.env[a]) for name, a in nodes.items()}
            return importer.block_builder.emit(checked_placeholder(_spec, x, tensors, attrs, node.name))
        table[f"{spec.torch_name}.default"] = convert
    return table


def _load_exported_program(program, batch: int | None = None, given: dict | None = None) -> Imported:
    from tvm.relax.frontend.torch import from_exported_program

    users = [s for s in program.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    if not users:
        raise ModelError("the exported program takes no user input")
    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    _check_shape_names("the exported program", given, [s.arg.name for s in users])
    with model_stage("exported program: import"):
        mod = from_exported_program(program, custom_convert_map=_torch_converters(), unwrap_unit_return_tuple=True)
        mod = _specialise(mod, batch, {param.name: (given or {}).get(spec.arg.name)
                                       for spec, param in zip(users, mod["main"].params)})
    inputs = []
    for spec, param in zip(users, mod["main"].params):
        val = placeholders[spec.arg.name].meta["val"]
        shape = tuple(int(d) for d in param.ty.shape)
        inputs.append(Input(spec.arg.name, shape, str(val.dtype).removeprefix("torch.")))
    if batch is not None and inputs[0].shape[0] != batch:
        raise ModelError(f"the exported program has a static batch of {inputs[0].shape[0]}, not {batch}; export it "
                         f"with dynamic_shapes={{'x': {{0: torch.export.Dim('batch')}}}} to build other batch sizes")
    return Imported(mod, inputs, "torch.export")


def _specialise(mod, batch: int | None, given: dict | None = None):
    """Bind the symbolic first axis of the inputs (``torch.export`` with ``Dim``) to ``batch``
    (default 1), and every symbolic axis of an input ``given`` a shape (parameter name ->
    shape or None) to its size there; any other symbolic axis is a ModelError (tvmopt
    compiles static shapes)."""
    from tvm import relax

    binding = {}
    given = given or {}
    # inputs given a shape first: a symbolic size they set (a sequence length) holds for the rest
    for param in sorted(mod["main"].params, key=lambda p: given.get(p.name) is None):
        shape = getattr(param.ty, "shape", None) or ()
        sizes = given.get(param.name)
        if sizes is not None and len(sizes) != len(shape):
            raise ModelError(f"--input-shapes gives input '{param.name}' {len(sizes)} axes, the program "
                             f"{len(shape)}")
        for axis, d in enumerate(shape):
            if isinstance(d, int) or hasattr(d, "value"):
                if sizes is not None and axis and int(d) != sizes[axis]:
                    raise ModelError(f"--input-shapes gives input '{param.name}' size {sizes[axis]} on axis "
                                     f"{axis}, which the program fixes at {int(d)}")
                continue
            if sizes is not None:
                if d in binding and binding[d] != sizes[axis]:
                    raise ModelError(f"--input-shapes gives the symbolic size {d} two values: {binding[d]} and "
                                     f"{sizes[axis]}")
                binding[d] = sizes[axis]
                continue
            if d in binding:
                continue
            if axis != 0:
                raise ModelError(f"the exported program's input '{param.name}' axis {axis} is symbolic ({d}); "
                                 f"tvmopt needs a static size on every axis but the first (the batch): set it with "
                                 f"shapes={{'{param.name}': (...)}} (--input-shapes)")
            binding[d] = batch or 1
    return relax.transform.BindSymbolicVars(binding)(mod) if binding else mod
