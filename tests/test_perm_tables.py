"""Binary weights through tables held in vector registers (``binary_perm_dense``, issue 18 item 4):
the kernel under every config of its space against numpy (on an AVX-512 host; elsewhere each
config must still compile for an AVX-512 CPU), its code-word layout, the refusal on AVX2 targets,
and a binary MLP built by the pass on each ISA: register tables on AVX-512 with the scale, bias
and ReLU in the write-back, row tables on AVX2, both matching PyTorch."""

import re

import numpy as np
import pytest
import torch
from torch import nn

import tvmopt.nn as tn
from tvmopt.build.compile import compile_model
from tvmopt.errors import WorkloadError
from tvmopt.ops.task import TASK_ANNOTATION, get_task
from tvmopt.passes import DetectOptions
from tvmopt.schedules import isa
from tests_support import avx2_host

AVX512 = isa.host().lanes >= 16


@pytest.mark.parametrize("key", ["binary_perm_dense:8x48x64", "binary_perm_dense:1x32x100",
                                 "binary_perm_dense:6x16x40", "binary_perm_dense:12x64x32"])
def test_every_config_matches_numpy(key):
    import tvm

    with isa.use(isa.AVX512):
        task = get_task(key)
        inputs = task.make_inputs(np.random.default_rng(5))
        expected = task.reference(inputs)
        target = tvm.target.Target({"kind": "llvm", "mcpu": "znver5"})
        configs = list(task.space.all())
        assert len(configs) >= 4
        for config in configs:
            lib = tvm.compile(task.schedule(config, None), target=target)
            if not AVX512:
                continue               # compiled for AVX-512; this CPU cannot run it
            out = tvm.runtime.tensor(np.zeros(expected.shape, np.float32))
            lib["main"](*[tvm.runtime.tensor(a) for a in inputs], out)
            assert task.mismatch(out.numpy(), expected) is None, config


def test_code_words_hold_the_sign_bits_of_binary_dense():
    """to_kernel packs binary_dense's sign bytes [ceil(K/8), N] into words [ceil(K/32), N] whose
    nibble t is group 8w + t; logical() inverts it, and the reference decodes the same weight."""
    with isa.use(isa.AVX512):
        task = get_task("binary_perm_dense:3x32x44")
        rng = np.random.default_rng(0)
        (wbits,) = task.random_weights(rng)
        (words,) = task.to_kernel([wbits])
    assert words.shape == (2, 32) and words.dtype == np.int32
    np.testing.assert_array_equal(task.logical([words])[0], wbits)
    w = task.dense_weight([wbits])                     # [K, N] of ±1
    bits = (words.view(np.uint32)[:, :, None] >> np.arange(32, dtype=np.uint32)) & 1     # [word, n, bit]
    got = np.where(bits.transpose(0, 2, 1).reshape(64, 32)[:44] == 1, 1.0, -1.0)
    np.testing.assert_array_equal(got, w)


def test_avx2_targets_are_refused_with_the_kernel_they_run_instead():
    with isa.use(isa.AVX2):
        with pytest.raises(WorkloadError, match="needs AVX-512.*binary_rowlut_dense"):
            get_task("binary_perm_dense:16x64x64")
    with isa.use(isa.AVX512):
        with pytest.raises(WorkloadError, match="multiple of 16"):
            get_task("binary_perm_dense:16x40x64")


def _families(compiled):
    return [layer.kernel.split(":")[0] for layer in compiled.lowered.layers]


@pytest.mark.parametrize("wide", [True, False])
def test_binary_layers_run_register_tables_on_avx512_and_row_tables_on_avx2(wide, tmp_path):
    if wide and not AVX512:
        pytest.skip("this CPU has no AVX-512")
    torch.manual_seed(0)
    model = nn.Sequential(tn.BinaryLinear(256, 512), nn.ReLU(), tn.BinaryLinear(512, 256), nn.ReLU(),
                          nn.Linear(256, 10)).eval()
    x = torch.randn(24, 256)
    with torch.no_grad():
        ref = model(x).numpy()
    path = tn.export_onnx(model, x, tmp_path / "binary.onnx", plain=True)
    compiled = compile_model(path, "llvm" if wide else avx2_host(), batch=24, shipped=False, records=tmp_path,
                             options=DetectOptions(kernels="compressed"))
    tables = "binary_perm_dense" if wide else "binary_rowlut_dense"
    assert _families(compiled) == [tables, tables, "dense"]
    np.testing.assert_allclose(compiled(x.numpy()), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    if wide:      # the per-output scale, the bias and the ReLU run in the kernels' write-back
        kernels = [f.script() for _, f in compiled.mod.functions_items()
                   if type(f).__name__ == "PrimFunc" and TASK_ANNOTATION in f.script() and tables in f.script()]
        assert len(kernels) == 2
        for text in kernels:
            assert "vpermps" not in text and "permvar" in text
            assert not re.findall(r'T\.sblock\("(T_multiply|T_add|relu)\w*"', text)
