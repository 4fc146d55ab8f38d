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

from .errors import ModelError

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
    if op == "Conv" and index == 1 or op == "Gemm" and index == 1 or op == "MatMul" and index == 1:
        fan_in = size // shape[0] if op == "Conv" else (shape[0] if op == "MatMul" else shape[-1])
        return rng.normal(0.0, np.sqrt(2.0 / max(1, fan_in)), size=shape)
    if op == "BatchNormalization":
        if index in (1, 4):                       # scale, variance
            return rng.uniform(0.5, 1.5, size=shape)
        return rng.normal(0.0, 0.1, size=shape)   # bias, mean
    if op == "Mul":
        return rng.uniform(0.5, 1.5, size=shape)
    return rng.normal(0.0, 0.1, size=shape)       # biases, Add terms, anything else


def realize(name: str, out: str | Path, seed: int = 0) -> Path:
    """Write ``name``'s graph with random weights (see the module docstring) to ``out``."""
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

    kept, used_shapes = [], set()
    for node in graph.node:
        if node.op_type != "ConstantOfShape" or node.input[0] not in inits:
            kept.append(node)
            continue
        shape = tuple(int(d) for d in numpy_helper.to_array(inits[node.input[0]]))
        used_shapes.add(node.input[0])
        value = _role_value(*role(node.output[0]), shape, rng).astype(np.float32)
        graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
    del graph.node[:]
    graph.node.extend(kept)
    still_used = {x for n in kept for x in n.input}
    remaining = [t for t in graph.initializer if t.name not in used_shapes or t.name in still_used]
    del graph.initializer[:]
    graph.initializer.extend(remaining)
    names = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in used_shapes or i.name in still_used]
    del graph.input[:]
    graph.input.extend(inputs)
    # graph inputs that are initializers (old exporters list both) stay; onnxruntime and TVM
    # treat them as constants
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    return out
