"""The ``ai.tvmopt`` operator set: one spec per op, its reference semantics, and its three
registrations (ONNX schema, ``torch.library`` custom op, onnxscript translation for the exporter).

The spec table is the single source of truth; docs/onnx-ops.md explains the same ops in prose.
``reference(op, x, inputs, attrs)`` is the executable definition of each op: it decodes the
compact initializers with :mod:`tvmopt.model.formats` and computes in float32.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

import numpy as np

from tvmopt.model import formats
from tvmopt.model.formats import fwht_np, next_pow2

DOMAIN = "ai.tvmopt"
VERSION = 1

_LINEAR = (("in_features", "int"), ("out_features", "int"))
_CONV = (("in_channels", "int"), ("out_channels", "int"), ("kernel_shape", "ints"), ("strides", "ints"),
         ("pads", "ints"), ("dilations", "ints"))


# ---------------------------------------------------------------------------------------------
# the compact weight formats: for each kind, its decoder (compact inputs -> dense [out, red]
# weight, the executable definition) and its check (input shapes the attributes imply, or why
# the node is inconsistent). One entry per kind; the Gemm and Conv ops of a kind share it.

@dataclass(frozen=True)
class WeightFormat:
    decode: Callable      # (op, inputs, attrs, out, red) -> [out, red] float32
    check: Callable       # (shapes, attrs, out, red, expected) -> problem or None; fills `expected`


def _decode_shift(op, inputs, attrs, out, red):
    return formats.decode_shift(formats.unpack_rows(inputs["codes"], attrs["bits"], red), attrs["bits"],
                                attrs["shift_min"])


def _check_shift(shapes, attrs, out, red, expected):
    if not 2 <= attrs["bits"] <= 8:
        return f"attribute bits={attrs['bits']} must be 2..8"
    expected["codes"] = (out, formats.packed_nbytes(red, attrs["bits"]))
    return None


def _scaled(w, inputs, out):
    alpha = inputs.get("alpha")
    return w if alpha is None else w * np.broadcast_to(alpha.reshape(-1), (out,)).reshape(-1, 1)


def _decode_binary(op, inputs, attrs, out, red):
    bits = np.unpackbits(inputs["signs"], axis=1, bitorder="little")[:, :red]
    return _scaled(bits.astype(np.float32) * 2 - 1, inputs, out)


def _decode_ternary(op, inputs, attrs, out, red):
    return _scaled(formats.decode_ternary(formats.unpack_rows(inputs["codes"], 2, red)), inputs, out)


def _check_packed(name, bits):
    def check(shapes, attrs, out, red, expected):
        expected[name] = (out, formats.packed_nbytes(red, bits))
        if shapes.get("alpha") is not None and int(np.prod(shapes["alpha"])) not in (1, out):
            return f"alpha has shape {list(shapes['alpha'])}; it needs 1 or {out} values"
        return None
    return check


def _decode_nm(op, inputs, attrs, out, red):
    n, m = attrs["n"], attrs["m"]
    pos = formats.unpack_rows(inputs["indices"], formats.index_bits(m), red // m * n)
    return formats.expand_nm(inputs["values"], pos, n, m, red)


def _check_nm(shapes, attrs, out, red, expected):
    n, m = attrs["n"], attrs["m"]
    if not 1 <= n <= m or m < 2 or red % m:
        return f"N:M = {n}:{m} does not fit a reduction of {red} (need 1 <= N <= M, M >= 2, M divides it)"
    kept = red // m * n
    expected["values"] = (out, kept)
    expected["indices"] = (out, formats.packed_nbytes(kept, formats.index_bits(m)))
    return None


def _decode_hashed(op, inputs, attrs, out, red):
    w = np.zeros((out, red), np.float32)
    mix = inputs.get("mix")
    for k in range(attrs["num_hashes"]):
        bucket, sign = formats.hash_indices(out, red, len(inputs["values"]), attrs["seed"], k, attrs.get("block", 1))
        w += (1.0 if mix is None else mix[k]) * sign * inputs["values"][bucket]
    return w


def _check_hashed(shapes, attrs, out, red, expected):
    if attrs["num_hashes"] < 1 or not shapes.get("values") or len(shapes["values"]) != 1:
        return "a hashed layer needs num_hashes >= 1 and a 1-D values vector"
    block = attrs.get("block", 1)
    if not 1 <= block <= formats.MAX_HASH_BLOCK:
        return f"attribute block={block} must be 1..{formats.MAX_HASH_BLOCK}"
    if shapes["values"][0] % block:
        return f"{shapes['values'][0]} values are not a whole number of blocks of {block}"
    if shapes.get("mix") is not None:
        expected["mix"] = (attrs["num_hashes"],)
    return None


def _decode_transform(op, inputs, attrs, out, red):
    """Fastfood and Hadamard heads: the transform applied to the identity."""
    eye = np.eye(attrs["in_features"], dtype=np.float32)
    return reference(op, eye, {**inputs, "bias": None}, attrs).T


def _check_fastfood(shapes, attrs, out, red, expected):
    b = shapes.get("diag_b")
    if b is None or len(b) != 2 or b[1] < attrs["in_features"] or b[1] & (b[1] - 1) or b[0] * b[1] < out:
        return (f"diag_b has shape {list(b or [])}; Fastfood needs [blocks, n] with n a power of two >= "
                f"in_features and blocks * n >= out_features")
    for name in ("diag_g", "diag_s", "perm"):
        expected[name] = tuple(b)
    return None


def _check_hadamard(shapes, attrs, out, red, expected):
    if attrs["first_row"] < 0:
        return f"attribute first_row={attrs['first_row']} must be >= 0"
    expected["scale"] = (1,)
    return None


SHIFT = WeightFormat(_decode_shift, _check_shift)
BINARY = WeightFormat(_decode_binary, _check_packed("signs", 1))
TERNARY = WeightFormat(_decode_ternary, _check_packed("codes", 2))
NM = WeightFormat(_decode_nm, _check_nm)
HASHED = WeightFormat(_decode_hashed, _check_hashed)
FASTFOOD = WeightFormat(_decode_transform, _check_fastfood)
HADAMARD = WeightFormat(_decode_transform, _check_hadamard)


@dataclass(frozen=True)
class OpSpec:
    name: str                                   # ONNX op type
    inputs: tuple[tuple[str, str, bool], ...]   # after X: (name, element type, optional)
    attrs: tuple[tuple[str, str], ...]          # (name, "int" | "ints")
    doc: str
    format: WeightFormat                        # decoder and shape check of the compact weight

    def split_args(self, args) -> tuple[dict, dict]:
        """Positional arguments after X (as the torch op takes them) -> (inputs by name, attributes
        by name, ints or int lists)."""
        n_in = len(self.inputs)
        tensors = dict(zip((name for name, _, _ in self.inputs), args[:n_in]))
        attrs = {name: (list(v) if kind == "ints" else int(v)) for (name, kind), v in zip(self.attrs, args[n_in:])}
        return tensors, attrs

    @property
    def conv(self) -> bool:
        return self.name.endswith("Conv")

    @property
    def torch_name(self) -> str:
        out = "".join("_" + c.lower() if c.isupper() else c for c in self.name).lstrip("_")
        return out.replace("n_m_sparse", "nm_sparse")


def _spec(name, fmt, inputs, attrs, doc, geometry=_LINEAR):
    return OpSpec(name, tuple(inputs), tuple(geometry) + tuple(attrs), doc, fmt)


def _both(base, fmt, inputs, attrs, doc):
    return [_spec(base + "Gemm", fmt, inputs, attrs, doc), _spec(base + "Conv", fmt, inputs, attrs, doc, _CONV)]


_BIAS = ("bias", "float", True)
SPECS: dict[str, OpSpec] = {s.name: s for s in [
    *_both("Shift", SHIFT, [("codes", "uint8", False), _BIAS],
           [("bits", "int"), ("shift_min", "int"), ("act_int_bits", "int"), ("act_frac_bits", "int")],
           "weights sign * 2^shift as packed sign+shift codes"),
    *_both("Binary", BINARY, [("signs", "uint8", False), ("alpha", "float", True), _BIAS], [("binarize_input", "int")],
           "±1 weights, one bit each, optional per-output scale and binarized input"),
    *_both("Ternary", TERNARY, [("codes", "uint8", False), ("alpha", "float", False), _BIAS], [],
           "weights in {-alpha, 0, +alpha} as 2-bit codes"),
    *_both("NMSparse", NM, [("values", "float", False), ("indices", "uint8", False), _BIAS],
           [("n", "int"), ("m", "int"), ("transposable", "int")],
           "N:M sparse weights: kept values and their packed positions in each group"),
    _spec("HashedGemm", HASHED, [("values", "float", False), ("mix", "float", True), _BIAS],
          [("seed", "int"), ("num_hashes", "int")], "virtual weights hashed into a K-vector"),
    _spec("HashedBlockGemm", HASHED, [("values", "float", False), ("mix", "float", True), _BIAS],
          [("seed", "int"), ("num_hashes", "int"), ("block", "int")],
          "blocks of consecutive outputs hashed into a K-vector"),
    _spec("Fastfood", FASTFOOD, [("diag_b", "float", False), ("diag_g", "float", False), ("diag_s", "float", False),
                       ("perm", "int32", False), _BIAS], [], "stacked S H G Pi H B blocks"),
    _spec("HadamardGemm", HADAMARD, [("scale", "float", False), _BIAS], [("first_row", "int")],
          "fixed Hadamard rows times a learned scale"),
]}


# ---------------------------------------------------------------------------------------------
# reference semantics (numpy decode, float32 compute)

def _rows(attrs) -> tuple[int, int, tuple[int, ...]]:
    """(out, reduction length, dense weight shape)."""
    if "kernel_shape" in attrs:
        kh, kw = attrs["kernel_shape"]
        shape = (attrs["out_channels"], attrs["in_channels"], kh, kw)
    else:
        shape = (attrs["out_features"], attrs["in_features"])
    return shape[0], int(np.prod(shape[1:])), shape


def decode_weight(op: str, inputs: dict[str, np.ndarray | None], attrs: dict) -> np.ndarray:
    """The dense float32 weight (Gemm: [out, in]; Conv: [out, in, kh, kw]) an op multiplies by."""
    if op not in SPECS:
        raise KeyError(f"unknown ai.tvmopt op {op!r}")
    out, red, shape = _rows(attrs)
    w = SPECS[op].format.decode(op, inputs, attrs, out, red)
    return np.ascontiguousarray(w, dtype=np.float32).reshape(shape)


def reference(op: str, x: np.ndarray, inputs: dict[str, np.ndarray | None], attrs: dict) -> np.ndarray:
    """Run one ``ai.tvmopt`` op on numpy input ``x``."""
    x = np.asarray(x, dtype=np.float32)
    bias = inputs.get("bias")
    if op == "Fastfood":
        b, g, s, perm = inputs["diag_b"], inputs["diag_g"], inputs["diag_s"], inputs["perm"]
        blocks, n = b.shape
        xp = np.zeros(x.shape[:-1] + (n,), np.float32)
        xp[..., : x.shape[-1]] = x
        h = fwht_np(xp[..., None, :] * b)
        h = np.take_along_axis(h, np.broadcast_to(perm.astype(np.int64), h.shape), axis=-1) * g
        y = (fwht_np(h) * s).reshape(x.shape[:-1] + (blocks * n,))[..., : attrs["out_features"]]
    elif op == "HadamardGemm":
        n = next_pow2(max(attrs["in_features"], attrs["out_features"] + attrs["first_row"]))
        xp = np.zeros(x.shape[:-1] + (n,), np.float32)
        xp[..., : x.shape[-1]] = x
        lo = attrs["first_row"]
        y = fwht_np(xp)[..., lo: lo + attrs["out_features"]] * inputs["scale"].reshape(())
    else:
        import torch          # here, not at import: reading an ONNX model needs no torch
        import torch.nn.functional as F

        x = _transform_input(op, x, attrs)
        w = torch.from_numpy(decode_weight(op, inputs, attrs))
        if op.endswith("Conv"):
            ph, pw = attrs["pads"][0], attrs["pads"][1]
            if list(attrs["pads"][2:]) != [ph, pw]:
                raise ValueError("asymmetric pads are not supported")
            y = F.conv2d(torch.from_numpy(x), w, None, tuple(attrs["strides"]), (ph, pw),
                         tuple(attrs["dilations"])).numpy()
            if bias is not None:
                return (y + bias.reshape(1, -1, 1, 1)).astype(np.float32)
            return y
        y = (torch.from_numpy(x) @ w.T).numpy()
    if bias is not None:
        y = y + bias
    return y.astype(np.float32)


def _transform_input(op: str, x: np.ndarray, attrs: dict) -> np.ndarray:
    if attrs.get("binarize_input"):
        return np.where(x >= 0, 1.0, -1.0).astype(np.float32)
    if attrs.get("act_frac_bits") or attrs.get("act_int_bits"):
        step = 2.0 ** -attrs["act_frac_bits"]
        bound = 2.0 ** attrs["act_int_bits"] - step
        return np.clip(np.round(x / step) * step, -bound, bound).astype(np.float32)
    return x


_FLAGS = ("binarize_input", "transposable")


def check_node(spec: OpSpec, x_shape, shapes: dict, attrs: dict, dtypes: dict | None = None) -> str | None:
    """What is inconsistent in one node (its input's shape, its tensors' ``shapes`` and
    ``dtypes`` by name, a missing one as None, and its attributes), or None. The importer
    refuses such a node with this message instead of failing deep inside the compiler."""
    for name, etype, _ in spec.inputs:
        got = (dtypes or {}).get(name)
        want = "float32" if etype == "float" else etype
        if got is not None and got != want:
            return f"input '{name}' is {got}, the op stores it as {want}"
    for flag in _FLAGS:
        if flag in attrs and attrs[flag] not in (0, 1):
            return f"attribute {flag}={attrs[flag]} must be 0 or 1"
    def ints(name, n, low):
        v = attrs[name]
        if len(v) != n or any(int(i) < low for i in v):
            return f"attribute {name}={list(v)} must be {n} integers >= {low}"
        return None

    for name, _, optional in spec.inputs:
        if not optional and shapes.get(name) is None:
            return f"required input '{name}' is missing"
    for name, kind in spec.attrs:
        if kind == "int" and name in ("in_features", "out_features", "in_channels", "out_channels") \
                and attrs[name] < 1:
            return f"attribute {name}={attrs[name]} must be positive"
    if spec.conv:
        for name, n, low in (("kernel_shape", 2, 1), ("strides", 2, 1), ("pads", 4, 0), ("dilations", 2, 1)):
            problem = ints(name, n, low)
            if problem:
                return problem
        if len(x_shape) != 4 or x_shape[1] != attrs["in_channels"]:
            return f"in_channels={attrs['in_channels']} but the input has shape {list(x_shape)}"
        if min(output_shape(spec, x_shape, attrs)[2:]) < 1:
            return f"kernel {attrs['kernel_shape']} does not fit the input {list(x_shape)}"
    elif not x_shape or x_shape[-1] != attrs["in_features"]:
        return f"in_features={attrs['in_features']} but the input has shape {list(x_shape)}"
    out, red, _ = _rows(attrs)
    expected: dict[str, tuple] = {"bias": (out,)}
    problem = spec.format.check(shapes, attrs, out, red, expected)
    if problem:
        return problem
    for name, want in expected.items():
        got = shapes.get(name)
        if got is None:
            continue
        if name in ("scale", "mix", "bias") and int(np.prod(got)) == int(np.prod(want)):
            continue
        if tuple(got) != tuple(want):
            return f"input '{name}' has shape {list(got)}, the attributes imply {list(want)}"
    return None


def output_shape(spec: OpSpec, x_shape, attrs) -> tuple[int, ...]:
    if spec.conv:
        n, _, h, w = x_shape
        kh, kw = attrs["kernel_shape"]
        (sh, sw), (dh, dw) = attrs["strides"], attrs["dilations"]
        ph, pw = attrs["pads"][0], attrs["pads"][1]
        oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        ow = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        return (n, attrs["out_channels"], oh, ow)
    return tuple(x_shape[:-1]) + (attrs["out_features"],)


# ---------------------------------------------------------------------------------------------
# registrations

_TORCH_TYPES = {"int": "int", "ints": "int[]"}
_LIB = None


def register_torch_ops() -> None:
    """Define ``torch.ops.tvmopt.<op>`` for every spec (idempotent). Their CPU kernels are
    :func:`reference`; ``torch.export`` keeps them as single nodes."""
    import torch

    global _LIB
    if _LIB is not None:
        return
    lib = torch.library.Library("tvmopt", "DEF")
    for spec in SPECS.values():
        args = ["Tensor x"] + [f"Tensor{'?' if opt else ''} {name}" for name, _, opt in spec.inputs]
        args += [f"{_TORCH_TYPES[kind]} {name}" for name, kind in spec.attrs]
        lib.define(f"{spec.torch_name}({', '.join(args)}) -> Tensor")
        lib.impl(spec.torch_name, _make_kernel(spec), "CPU")
        torch.library.register_fake(f"tvmopt::{spec.torch_name}", _make_fake(spec), lib=lib)
    _LIB = lib


def _make_kernel(spec: OpSpec):
    import torch

    def kernel(x, *args):
        tensors, attrs = spec.split_args(args)
        arrays = {k: None if v is None else v.detach().cpu().numpy() for k, v in tensors.items()}
        return torch.from_numpy(reference(spec.name, x.detach().cpu().numpy(), arrays, attrs))
    return kernel


def _make_fake(spec: OpSpec):
    def fake(x, *args):
        _, attrs = spec.split_args(args)
        return x.new_empty(output_shape(spec, x.shape, attrs))
    return fake


_ONNX_TYPES = {"float": "tensor(float)", "uint8": "tensor(uint8)", "int32": "tensor(int32)"}
_SCHEMAS_DONE = False


def register_onnx_schemas() -> None:
    """Register every op's schema with onnx, so onnx.checker validates ``ai.tvmopt`` nodes and
    onnxscript can emit them (idempotent)."""
    global _SCHEMAS_DONE
    if _SCHEMAS_DONE:
        return
    import onnx
    from onnx.defs import OpSchema

    for spec in SPECS.values():
        if onnx.defs.has(spec.name, DOMAIN):
            continue
        params = [OpSchema.FormalParameter("X", "tensor(float)")]
        for name, etype, optional in spec.inputs:
            opt = OpSchema.FormalParameterOption.Optional if optional else OpSchema.FormalParameterOption.Single
            params.append(OpSchema.FormalParameter(name, _ONNX_TYPES[etype], param_option=opt))
        attrs = [OpSchema.Attribute(name, OpSchema.AttrType.INTS if kind == "ints" else OpSchema.AttrType.INT,
                                    description=name, required=True) for name, kind in spec.attrs]
        onnx.defs.register_schema(OpSchema(spec.name, DOMAIN, VERSION, doc=spec.doc, inputs=params,
                                           outputs=[OpSchema.FormalParameter("Y", "tensor(float)")],
                                           attributes=attrs))
    _SCHEMAS_DONE = True


def onnx_translation_table() -> dict:
    """``custom_translation_table`` for ``torch.onnx.export``: each torch op -> one ai.tvmopt node."""
    import onnxscript
    import torch

    register_torch_ops()
    register_onnx_schemas()
    opset = onnxscript.values.Opset(DOMAIN, VERSION)
    return {getattr(torch.ops.tvmopt, spec.torch_name).default: _make_translation(spec, opset)
            for spec in SPECS.values()}


def _make_translation(spec: OpSpec, opset):
    onnx_op = getattr(opset, spec.name)

    def translate(x, *args):
        tensors, attrs = spec.split_args(args)
        return onnx_op(x, *tensors.values(), **attrs)

    params = [inspect.Parameter("x", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    params += [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name, _, _ in spec.inputs]
    params += [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                 annotation=list[int] if kind == "ints" else int) for name, kind in spec.attrs]
    translate.__signature__ = inspect.Signature(params)
    translate.__name__ = f"tvmopt_{spec.torch_name}"
    return translate


# ---------------------------------------------------------------------------------------------
# running a whole ai.tvmopt model without TVM (onnx's reference evaluator + these kernels)

def _evaluator_ops():
    from onnx.reference.op_run import OpRun

    ops = []
    for spec in SPECS.values():
        def _run(self, x, *tensors, _spec=spec, **attrs):
            names = [name for name, _, _ in _spec.inputs]
            inputs = dict(zip(names, list(tensors) + [None] * (len(names) - len(tensors))))
            attrs = {k: ([int(i) for i in v] if isinstance(v, (list, tuple, np.ndarray)) else int(v))
                     for k, v in attrs.items()}
            return (reference(_spec.name, x, inputs, attrs),)
        ops.append(type(spec.name, (OpRun,), {"op_domain": DOMAIN, "_run": _run}))
    return ops


def run_onnx(model, x: np.ndarray) -> np.ndarray:
    """Run an ONNX model (path or ModelProto) that may hold ``ai.tvmopt`` nodes, in pure Python
    with :func:`reference` as their kernels. Slow; meant for checking exports."""
    from onnx.reference import ReferenceEvaluator

    sess = ReferenceEvaluator(str(model) if not hasattr(model, "graph") else model, new_ops=_evaluator_ops())
    return sess.run(None, {sess.input_names[0]: np.asarray(x, dtype=np.float32)})[0]
