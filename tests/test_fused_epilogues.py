"""Fused epilogues for the GEMM-family kernels (issue 18, item 3): the pass emits dense and
compressed linear kernels unscheduled; Relax fuses the per-output scale, the bias and the
activation after them, and the scheduler inlines those into the accumulator's write-back. The
IR then holds no elementwise function between a kernel and the next."""

import re
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from tvmopt.build.compile import compile_model
from tvmopt.ops.task import TASK_ANNOTATION
from tvmopt.passes import DetectOptions
from tests_support import avx2_host

MODELS = Path(__file__).resolve().parent.parent / "examples" / "models"
COMPRESSED = DetectOptions(kernels="compressed")


def _functions(compiled):
    return {gv.name_hint: f.script() for gv, f in compiled.mod.functions_items() if type(f).__name__ == "PrimFunc"}


@pytest.mark.parametrize("name,family,batch", [
    ("mlp_ternary", "ternary_dense", 4), ("mlp_binary.plain", "binary_dense", 4), ("mlp_shift", "shift_dense", 4),
    ("mlp_nm24", "nm_decode_dense", 4), ("mlp_hashed", "hashed_dense", 4), ("mlp_fp32", "dense", 4),
    ("mlp_ternary", "ternary_rowlut_dense", 64), ("mlp_binary.plain", "binary_rowlut_dense", 16)])
def test_scale_bias_and_relu_run_in_the_kernels_write_back(name, family, batch, tmp_path):
    path = MODELS / f"digits_{name}.onnx"
    # binary, ternary and 2:4 layers: the decode and row-table kernels of AVX2 targets (AVX-512
    # gives the 16-wide ones register kernels: tests/test_perm_tables.py and test_nm_perm.py
    # check their write-back)
    target = avx2_host() if family.startswith(("binary", "ternary", "nm")) else "llvm"
    compiled = compile_model(path, target, batch=batch, options=COMPRESSED, shipped=False, records=tmp_path)
    functions = _functions(compiled)
    kernels = {n: s for n, s in functions.items() if TASK_ANNOTATION in s}
    assert len(kernels) == 3 and all(n.startswith(f"fused_{family}_") for n in kernels), sorted(kernels)
    # every kernel carries its epilogue (bias, and the scale where the layer has one, the ReLU)...
    assert sum("relu" in n for n in kernels) == 2 and all("add" in n for n in kernels)
    # ...inlined into the write-back: no elementwise block is left inside the fused function
    for text in kernels.values():
        assert not re.findall(r'T\.sblock\("(T_multiply|T_add|relu)\w*"', text)
    # and no function between the kernels but the input's reshape
    assert set(functions) - set(kernels) <= {"reshape"}
    x = np.load(MODELS / "digits_test.npz")["x"][:batch]
    plain = MODELS / f"digits_{name.split('.')[0]}.plain.onnx"
    plain = plain if plain.exists() else path
    sess = ort.InferenceSession(str(plain), providers=["CPUExecutionProvider"])
    want = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(compiled(x), want, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(want).max())))


@pytest.mark.parametrize("name", ["mlp_fastfood", "mlp_fastfood.plain"])
def test_the_walsh_hadamard_kernels_carry_their_epilogue_too(name, tmp_path):
    """Fastfood and Hadamard kernels are emitted unscheduled and fusable like the GEMMs: the
    bias and ReLU after each run in its output stage; no elementwise function is left."""
    path = MODELS / f"digits_{name}.onnx"
    compiled = compile_model(path, batch=8, shipped=False, records=tmp_path)     # fewer rows: predicted dense
    assert [la.kernel.split(":")[0] for la in compiled.lowered.layers] == ["fastfood", "fastfood", "hadamard"]
    functions = _functions(compiled)
    kernels = {n: s for n, s in functions.items() if TASK_ANNOTATION in s}
    assert len(kernels) == 3 and sum("relu" in n for n in kernels) == 2, sorted(kernels)
    for text in kernels.values():
        assert not re.findall(r'T\.sblock\("(T_multiply|T_add|relu)\w*"', text)
    assert set(functions) - set(kernels) <= {"reshape"}, sorted(set(functions) - set(kernels))
    x = np.load(MODELS / "digits_test.npz")["x"][:8]
    sess = ort.InferenceSession(str(MODELS / "digits_mlp_fastfood.plain.onnx"), providers=["CPUExecutionProvider"])
    want = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(compiled(x), want, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(want).max())))
