"""Real networks nobody here designed: the ONNX model zoo graphs that ship with the ``onnx``
package's backend test data (``onnx/backend/test/data/light/``).

Those graphs carry *filler* weights: every weight is a ``ConstantOfShape`` node filling its
shape with one value. :func:`realize` turns one into an ordinary model with random weights
drawn by role (He-normal convolution and Gemm weights, batch-norm statistics around 1, small
biases), so activations stay in a sane range through 50+ layers and speed and accuracy
comparisons mean something.

    path = realize("resnet50", "/tmp/resnet50.onnx")     # or realize(path_to_light_model, ...)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tvmopt.errors import ModelError

#: the networks and their file names in onnx/backend/test/data/light/
NETWORKS = {
    "resnet50": "light_resnet50.onnx",
    "squeezenet": "light_squeezenet.onnx",
    "alexnet": "light_bvlc_alexnet.onnx",
    "vgg19": "light_vgg19.onnx",
    "inception_v1": "light_inception_v1.onnx",
    "inception_v2": "light_inception_v2.onnx",
    "densenet121": "light_densenet121.onnx",
    "shufflenet": "light_shufflenet.onnx",
    "zfnet512": "light_zfnet512.onnx",
}


def light_dir() -> Path:
    import onnx

    return Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def source_path(name: str) -> Path:
    """The filler-weight graph of ``name`` (a key of :data:`NETWORKS` or a path)."""
    if name in NETWORKS:
        return light_dir() / NETWORKS[name]
    path = Path(name)
    if not path.exists():
        raise ModelError(f"unknown network '{name}'; known: {', '.join(NETWORKS)} (or a path to a light_*.onnx)")
    return path


def _role_value(op: str, index: int, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A random tensor for input ``index`` of an ``op`` node."""
    size = int(np.prod(shape)) if shape else 1
    if index == 1 and op in ("Conv", "Gemm", "MatMul"):
        fan_in = size // shape[0] if op == "Conv" else (shape[0] if op == "MatMul" else shape[-1])
        return rng.normal(0.0, np.sqrt(2.0 / max(1, fan_in)), size=shape)
    if op == "BatchNormalization":
        if index in (1, 4):                       # scale, variance
            return rng.uniform(0.5, 1.5, size=shape)
        return rng.normal(0.0, 0.1, size=shape)   # bias, mean
    if op == "Mul":
        return rng.uniform(0.5, 1.5, size=shape)
    return rng.normal(0.0, 0.1, size=shape)       # biases, Add terms, anything else


def realize(name: str, out: str | Path, seed: int = 0, logits: bool = True) -> Path:
    """Write ``name``'s graph with random weights (see the module docstring) to ``out``.
    ``logits``: drop a final Softmax, so outputs compare as logits (with random weights the
    softmax saturates to one-hot, and any two implementations would agree on it)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(source_path(name)))
    graph = model.graph
    rng = np.random.default_rng(seed)
    inits = {t.name: t for t in graph.initializer}
    consumers: dict[str, list[tuple[str, int, object]]] = {}
    for node in graph.node:
        for i, x in enumerate(node.input):
            consumers.setdefault(x, []).append((node.op_type, i, node))

    def role(tensor: str) -> tuple[str, int]:
        """The first consumer that is not a pure reshaping op (Unsqueeze, Reshape...)."""
        for op, i, node in consumers.get(tensor, ()):
            if op in ("Unsqueeze", "Reshape", "Squeeze", "Flatten") and i == 0:
                return role(node.output[0])
            return op, i
        return "", 0

    kept = []
    for node in graph.node:
        if node.op_type != "ConstantOfShape" or node.input[0] not in inits:
            kept.append(node)
            continue
        shape = tuple(int(d) for d in numpy_helper.to_array(inits[node.input[0]]))
        value = _role_value(*role(node.output[0]), shape, rng).astype(np.float32)
        graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
    if logits and kept and kept[-1].op_type == "Softmax" and kept[-1].output[0] == graph.output[0].name:
        graph.output[0].name = kept.pop().input[0]
    del graph.node[:]
    graph.node.extend(kept)
    still_used = {x for n in kept for x in n.input}
    remaining = [t for t in graph.initializer if t.name in still_used]       # unused ones dropped
    del graph.initializer[:]
    graph.initializer.extend(remaining)
    names = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name in still_used]
    del graph.input[:]
    graph.input.extend(inputs)
    # graph inputs that are initializers (old exporters list both) stay; onnxruntime and TVM
    # treat them as constants
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    return out


class TorchRunner:
    """Run an ONNX graph of the zoo's op set eagerly with PyTorch (``torch.nn.functional``, one
    call per node): the torch reference for networks that exist only as ONNX here.

        y = TorchRunner(path)(x)          # numpy in, numpy out
    """

    def __init__(self, path: str | Path):
        import onnx
        import torch
        from onnx import helper, numpy_helper

        model = onnx.load(str(path))
        self.graph = model.graph
        self.consts = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in model.graph.initializer}
        self.input = next(i.name for i in model.graph.input if i.name not in self.consts)
        self.nodes = [(n.op_type, list(n.input), list(n.output),
                       {a.name: helper.get_attribute_value(a) for a in n.attribute}) for n in model.graph.node]
        unknown = sorted({op for op, *_ in self.nodes} - set(self._OPS))
        if unknown:
            raise ModelError(f"{Path(path).name}: the torch runner lacks {', '.join(unknown)}")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import torch

        env = dict(self.consts)
        env[self.input] = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        with torch.no_grad():
            for op, ins, outs, attrs in self.nodes:
                env[outs[0]] = getattr(self, self._OPS[op])([env[i] if i else None for i in ins], attrs)
        return env[self.graph.output[0].name].numpy()

    _OPS = {"Conv": "_conv", "BatchNormalization": "_bn", "Relu": "_relu", "MaxPool": "_maxpool",
            "AveragePool": "_avgpool", "GlobalAveragePool": "_gap", "Sum": "_sum", "Add": "_sum", "Mul": "_mul",
            "Concat": "_concat", "Gemm": "_gemm", "Reshape": "_reshape", "Dropout": "_identity",
            "Softmax": "_softmax", "Transpose": "_transpose", "Unsqueeze": "_unsqueeze", "LRN": "_lrn",
            "Flatten": "_flatten"}

    @staticmethod
    def _pad(x, pads, value=0.0):
        """ONNX pads [t, l, b, r] -> (x padded asymmetrically or None, symmetric padding)."""
        import torch.nn.functional as F

        t, l, b, r = (list(pads) + [0, 0, 0, 0])[:4]
        if t == b and l == r:
            return x, (t, l)
        return F.pad(x, (l, r, t, b), value=value), (0, 0)

    def _conv(self, a, at):
        import torch.nn.functional as F

        x, (ph, pw) = self._pad(a[0], at.get("pads", [0, 0, 0, 0]))
        return F.conv2d(x, a[1], a[2] if len(a) > 2 else None, at.get("strides", [1, 1]), (ph, pw),
                        at.get("dilations", [1, 1]), at.get("group", 1))

    def _bn(self, a, at):
        import torch.nn.functional as F

        return F.batch_norm(a[0], a[3], a[4], a[1], a[2], False, 0.0, at.get("epsilon", 1e-5))

    def _relu(self, a, at):
        return a[0].relu()

    def _maxpool(self, a, at):
        import torch.nn.functional as F

        x, pad = self._pad(a[0], at.get("pads", [0, 0, 0, 0]), value=float("-inf"))
        return F.max_pool2d(x, at["kernel_shape"], at.get("strides", [1, 1]), pad, ceil_mode=bool(at.get("ceil_mode", 0)))

    def _avgpool(self, a, at):
        import torch.nn.functional as F

        import torch

        x, pad = self._pad(a[0], at.get("pads", [0, 0, 0, 0]))
        include = bool(at.get("count_include_pad", 0))

        def pool(t):
            return F.avg_pool2d(t, at["kernel_shape"], at.get("strides", [1, 1]), pad,
                                ceil_mode=bool(at.get("ceil_mode", 0)), count_include_pad=include)

        if x is a[0] or include:
            return pool(x)
        # asymmetric padding, padded cells not counted: divide by the pooled mask of real cells
        mask, _ = self._pad(torch.ones_like(a[0][:1, :1]), at["pads"])
        return pool(x) / pool(mask)

    def _gap(self, a, at):
        return a[0].mean(dim=(2, 3), keepdim=True)

    def _sum(self, a, at):
        out = a[0]
        for x in a[1:]:
            out = out + x
        return out

    def _mul(self, a, at):
        return a[0] * a[1]

    def _concat(self, a, at):
        import torch

        return torch.cat(a, dim=at["axis"])

    def _gemm(self, a, at):
        x = a[0].t() if at.get("transA", 0) else a[0]
        w = a[1].t() if at.get("transB", 0) else a[1]
        y = at.get("alpha", 1.0) * (x @ w)
        return y + at.get("beta", 1.0) * a[2] if len(a) > 2 and a[2] is not None else y

    def _reshape(self, a, at):
        shape = [int(d) for d in (a[1].tolist() if len(a) > 1 else at["shape"])]
        shape = [a[0].shape[i] if d == 0 else d for i, d in enumerate(shape)]
        return a[0].reshape(shape)

    def _identity(self, a, at):
        return a[0]

    def _softmax(self, a, at):
        x = a[0]
        axis = at.get("axis", 1)
        flat = x.reshape(int(np.prod(x.shape[:axis])), -1)       # opset < 13: 2-D coercion
        return flat.softmax(dim=1).reshape(x.shape)

    def _transpose(self, a, at):
        return a[0].permute(*at["perm"])

    def _unsqueeze(self, a, at):
        x = a[0]
        for axis in sorted(at["axes"]):
            x = x.unsqueeze(axis)
        return x

    def _lrn(self, a, at):
        import torch.nn.functional as F

        return F.local_response_norm(a[0], at["size"], at.get("alpha", 1e-4), at.get("beta", 0.75), at.get("bias", 1.0))

    def _flatten(self, a, at):
        axis = at.get("axis", 1)
        return a[0].reshape(int(np.prod(a[0].shape[:axis])), -1)
