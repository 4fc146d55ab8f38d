"""What fuzzing found: corrupt models are refused at import with a message naming the node,
tensor or axis, instead of failing deep in TVM (or, worse, being built with wrong semantics)."""

import onnx
import pytest

from tvmopt.errors import ModelError
from tvmopt.model.frontend import load
from tvmopt.testing.reliability import MODELS


def edited(tmp_path, name, edit):
    model = onnx.load(str(MODELS / name))
    edit(model)
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    return path


def _reverse_nodes(m):
    nodes = [onnx.NodeProto() for _ in m.graph.node]
    for new, old in zip(nodes, reversed(m.graph.node)):
        new.CopyFrom(old)
    del m.graph.node[:]
    m.graph.node.extend(nodes)


def _attr(op_type, name, value):
    def edit(m):
        node = next(n for n in m.graph.node if n.op_type == op_type)
        next(a for a in node.attribute if a.name == name).i = value
    return edit


def _dim(axis, value):
    def edit(m):
        d = m.graph.input[0].type.tensor_type.shape.dim[axis]
        d.dim_value = value
    return edit


def _shrink_initializer(m):
    t = next(t for t in m.graph.initializer if t.name.endswith("signs"))
    t.dims[1] *= 2


def _initializer_type(m):
    next(t for t in m.graph.initializer if t.name.endswith("signs")).data_type = onnx.TensorProto.BOOL


def _second_definition(m):
    m.graph.node[1].output[0] = m.graph.node[0].output[0]


@pytest.mark.parametrize("edit,needle", [
    (_reverse_nodes, "which no earlier node, initializer or input defines"),
    (_second_definition, "a second time"),
    (_shrink_initializer, "holds 2048 bytes, but its shape [256, 16] of uint8 needs 4096"),
    (_initializer_type, "input 'signs' is bool, the op stores it as uint8"),
    (_attr("BinaryGemm", "binarize_input", -1), "binarize_input=-1 must be 0 or 1"),
    (_attr("BinaryGemm", "out_features", 0), "out_features=0 must be positive"),
    (_dim(1, 0), "axis 1 is dim_value 0"),
    (_dim(0, 0), "has a batch axis (axis 0) of size 0"),
    (_dim(0, 10**9), "larger than 2^31 elements"),
], ids=["order", "ssa", "initializer-size", "dtype", "flag", "out-features", "zero-axis", "zero-batch", "huge-batch"])
def test_corrupt_model_is_refused_by_name(tmp_path, edit, needle):
    with pytest.raises(ModelError) as info:
        load(edited(tmp_path, "digits_mlp_binary.onnx", edit))
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_batch_axis_stays_free_and_the_bundled_models_still_import():
    for name in ("digits_mlp_binary.onnx", "digits_cnn_nm24.onnx", "digits_mlp_fastfood.plain.onnx"):
        assert load(MODELS / name, batch=3).input_shape[0] == 3
