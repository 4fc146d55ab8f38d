"""Quantized activations times ±1/0 weights as integer products (issue 18, item 4): the
``int8_dense`` kernel under every config of its space (VNNI and the AVX2 path), and a QDQ model
(QuantizeLinear, DequantizeLinear, MatMul with ternary and binary weights, bias, ReLU) built by
tvmopt against onnxruntime on the same file."""

from pathlib import Path

import numpy as np
import pytest

from tvmopt.ops.task import get_task
from tvmopt.passes import DetectOptions
from tvmopt.schedules import isa, lowering
from tvmopt.schedules.gemm import padded_rows
from tests_support import avx512_cpu


def _host_has_vnni() -> bool:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return {"avx512f", "avx512_vnni"} <= set(line.split())
    return False


VNNI = _host_has_vnni()


@pytest.mark.parametrize("chosen", ["vnni", "avx2"])
@pytest.mark.parametrize("key", ["int8_dense:16x64x36", "int8_dense:1x32x8", "int8_dense:6x48x128", "int8_dense:4x32x20x2"])
def test_int8_kernel_is_exact_under_every_config(key, chosen):
    import tvm

    if chosen == "vnni" and not VNNI:
        pytest.skip("this CPU has no AVX-512 VNNI")
    with isa.use(isa.AVX512_VNNI if chosen == "vnni" else isa.AVX2):
        task = get_task(key)
        inputs = task.make_inputs(np.random.default_rng(3))
        expected = task.reference(inputs)
        target = tvm.target.Target({"kind": "llvm", "mcpu": avx512_cpu() if chosen == "vnni" else "znver3"})
        for config in task.space.all():
            mod = task.schedule(config, None)
            lib = lowering.compile(mod, target)
            # VNNI's 4-byte dot products; AVX2's pairs summed in int16, then by ones into int32; wide
            # (x2: int16 weights up to 255 in magnitude) vpmaddwd on pairs of int16 on either
            asm = lib.mod.inspect_source("asm")
            assert ("vpmaddwd" if key.endswith("x2") else "vpdpbusd" if chosen == "vnni" else "vpmaddubsw") in asm
            assert key.endswith("x2") or "vpmaddubsw" not in asm or chosen == "avx2"
            out = tvm.runtime.tensor(np.zeros(expected.shape, np.float32))
            lib["main"](*[tvm.runtime.tensor(a) for a in inputs], out)
            np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-5)


def _qdq_model(path: Path, m: int, k: int, n: int, zero_point: int, binary: bool, zp_type=np.uint8) -> Path:
    from tvmopt.testing.qdq import qdq_matmul_model

    return qdq_matmul_model(path, m, k, n, zero_point, binary, zp_type)


@pytest.mark.parametrize("binary", [False, True])
def test_quantized_input_layer_runs_integer_products_and_matches_onnxruntime(tmp_path, binary):
    import onnxruntime as ort

    from tvmopt.build.compile import compile_model

    path = _qdq_model(tmp_path / "qdq.onnx", 8, 96, 64, zero_point=128, binary=binary)
    x = np.random.default_rng(1).uniform(-6, 6, (8, 96)).astype(np.float32)   # some clip at 0 and 255
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    built = compile_model(path, records=tmp_path / "none", shipped=False)
    np.testing.assert_allclose(built(x), want, rtol=1e-5, atol=1e-4)
    kernels = [layer.kernel for layer in built.lowered.layers]
    assert kernels == ["int8_dense:8x64x96"]        # on every CPU: ±1/0 weights fit AVX2's pairs too
    # forced dense: the fp32 product of the dequantized input, same result
    dense = compile_model(path, records=tmp_path / "none", shipped=False, options=DetectOptions(kernels="dense"))
    assert [layer.kernel for layer in dense.lowered.layers] == ["dense:8x64x96"]
    np.testing.assert_allclose(dense(x), want, rtol=1e-5, atol=1e-4)


def test_signed_activations_run_shifted_and_unstructured_weights_keep_fp32(tmp_path):
    """int8 activations (a zero point of type int8, ONNX Runtime's QDQ default) are the uint8
    quantization shifted by 128 and run integer products; weights that
    are not a scale times integers per row stay on the fp32 path: the model's semantics, not a
    silent change."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    from tvmopt.build.compile import compile_model

    signed = _qdq_model(tmp_path / "signed.onnx", 4, 32, 16, zero_point=3, binary=True, zp_type=np.int8)
    plain = _qdq_model(tmp_path / "plain.onnx", 4, 32, 16, zero_point=128, binary=False)
    model = onnx.load(plain)
    w = next(t for t in model.graph.initializer if t.name == "W")
    w.CopyFrom(numpy_helper.from_array(np.random.default_rng(2).standard_normal((32, 16)).astype(np.float32), "W"))
    onnx.save(model, plain)
    x = np.random.default_rng(4).uniform(-3, 3, (4, 32)).astype(np.float32)
    for path, integer in ((signed, True), (plain, False)):
        want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        built = compile_model(path, records=tmp_path / "none", shipped=False)
        assert [layer.kernel.split(":")[0] for layer in built.lowered.layers] == ["int8_dense" if integer else "dense"]
        np.testing.assert_allclose(built(x), want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("plain", [True, False])
def test_tvmopt_nn_layers_with_quantized_inputs_build_to_integer_products(tmp_path, plain):
    """``compress(..., input_quant=(scale, zero_point))``: the PyTorch model fake-quantizes each
    compressed layer's input; both exports (QDQ + MatMul, QDQ + ai.tvmopt node) build to
    int8_dense and agree with the PyTorch model."""
    import torch
    from torch import nn

    import tvmopt.nn as tn
    from tvmopt.build.compile import compile_model

    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 32), nn.ReLU(), nn.Linear(32, 10))
    model = tn.compress(base, "ternary", skip=("4",), input_quant=(0.04, 128)).eval()
    x = torch.randn(16, 64) * 2
    with torch.no_grad():
        want = model(x).numpy()
        unquantized = tn.compress(base, "ternary", skip=("4",)).eval()(x).numpy()
    assert np.abs(want - unquantized).max() > 1e-4             # the quantization is really there
    path = tn.export_onnx(model, x[:1], tmp_path / "q.onnx", plain=plain)
    built = compile_model(path, batch=16, records=tmp_path / "none", shipped=False)
    np.testing.assert_allclose(built(x.numpy()), want, rtol=1e-4, atol=1e-4)
    families = [layer.kernel.split(":")[0] for layer in built.lowered.layers]
    assert families[:2] == ["int8_dense"] * 2 and families[2] == "dense"
    with pytest.raises(ValueError, match="zero point"):
        tn.compress(base, "ternary", input_quant=(0.1, 300))


def test_integer_rows_recovers_scales_of_binary_ternary_shift_and_int8_rows():
    """Each row's scale is found where its weights are a scale times integers of a byte, and
    a weight of any other form (powers of two over 8 exponents, plain floats) has none."""
    from tvmopt.ops.int8_dense import integer_rows, int8_kernel

    rng = np.random.default_rng(5)
    signs = rng.choice([-1, 1], (4, 64))
    rows = np.stack([
        signs[0] * 0.37,                                              # binary
        rng.integers(-1, 2, 64) * 1.5,                                # ternary
        signs[2] * 2.0 ** rng.integers(-9, -2, 64),                   # 7 powers of two: t up to 64
        np.zeros(64),
    ]).astype(np.float32)
    q = rng.integers(-127, 128, 64).astype(np.float32)
    q[0] = 127
    rows[3] = q * np.float32(0.0123)                                  # per-channel int8, as DequantizeLinear
    rows[2, :7] = signs[2, :7] * 2.0 ** np.arange(-9, -2)             # every exponent present
    t, alpha = integer_rows(rows)
    np.testing.assert_array_equal((t.astype(np.float32) * alpha[:, None]), rows)
    assert np.abs(t[2]).max() == 64 and np.abs(t[0]).max() == 1
    kern = int8_kernel(np.tile(rows, (4, 1)), 0.05, 128)
    assert kern is not None and kern.structure.startswith("int8")
    assert int8_kernel(np.tile(rows[2:3], (16, 1)), 0.05, 128).structure.startswith("powers-of-two")
    # one scale for the whole tensor (ONNX Runtime's per-tensor int8): a row whose largest
    # |q| is 90 and whose smallest is 2 has neither scale of its own
    s = np.float32(0.0071)
    whole = rng.integers(-127, 128, (16, 64))
    whole[0] = rng.choice([-90, -2, 2, 4, 90], 64)
    whole[1, 0] = 127
    t, alpha = integer_rows(whole.astype(np.float32) * s)
    np.testing.assert_array_equal(t.astype(np.float32) * alpha[:, None], whole.astype(np.float32) * s)
    wide = rows.copy()
    wide[2, 0] = 2.0 ** -10                                           # 8 exponents: 128 does not fit
    assert integer_rows(wide) is None
    assert integer_rows(rng.standard_normal((16, 64)).astype(np.float32)) is None


def test_weights_take_the_form_each_instruction_multiplies_exactly():
    """VNNI multiplies bytes: weights beyond int8 (uint8 weights whose zero point is 0 or 255)
    are parts that sum to them over a larger K. AVX2's ``vpmaddubsw`` sums pairs of u8 x s8
    products in int16, saturating: weights whose pairs (k = 2j, 2j+1) reach 128 in magnitude
    (255 * 129 > 2^15 - 1) run wide instead, as int16 weights."""
    from tvmopt.ops.int8_dense import byte_parts, pairs_fit

    rng = np.random.default_rng(11)
    int8 = rng.integers(-128, 128, (16, 64))
    skewed = rng.integers(-255, 255, (16, 64))
    skewed[0, :2] = -255, 254
    for t, count in ((int8, 1), (skewed, 2)):
        parts = byte_parts(t)
        assert len(parts) == count and all(p.dtype == np.int8 and p.shape == t.shape for p in parts)
        np.testing.assert_array_equal(sum(p.astype(np.int64) for p in parts), t)
    assert byte_parts(np.full((1, 4), 600)) is None                 # beyond 4 parts
    ternary = rng.integers(-1, 2, (16, 64))
    shift = rng.choice([-1, 1], (16, 64)) * 2 ** rng.integers(0, 7, (16, 64))
    assert pairs_fit(ternary) and pairs_fit(shift) and not pairs_fit(int8)
    assert pairs_fit(np.array([[64, 64, -64, -64], [65, 63, 0, 0]]))
    assert pairs_fit(np.array([[-128, 0, 0, 0]]))                  # 255 * -128 = -32640 fits int16
    assert not pairs_fit(np.array([[65, 64, 0, 0]])) and not pairs_fit(np.array([[-128, -1, 0, 0]]))


def test_avx2_integer_convolutions_of_int8_weights_run_wide_and_match_onnxruntime(tmp_path):
    """An AVX2 build (Zen 3) of a QDQ convolution with int8 weights on ``int8_dense``: int16
    weights (``vpmaddwd``) over the uint8 im2col, exact against onnxruntime without graph
    optimizations; forced dense, the fp32 convolution of the dequantized input."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    from tvmopt.build.compile import compile_model
    from tvmopt.testing.qdq import qdq_conv_model

    path = qdq_conv_model(tmp_path / "conv.onnx", shape=(1, 16, 9, 9), out_channels=32, zero_point=100, layers=1)
    model = onnx.load(path)
    for init in model.graph.initializer:        # the ternary weight as int8 values of one scale
        w = numpy_helper.to_array(init)
        if w.ndim == 4:
            t = np.random.default_rng(8).integers(-127, 128, w.shape)
            init.CopyFrom(numpy_helper.from_array((t * 2.0 ** -7).astype(np.float32), init.name))
    onnx.save(model, path)
    x = np.random.default_rng(6).uniform(-4, 6, (1, 16, 9, 9)).astype(np.float32)
    plain = ort.SessionOptions()
    plain.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    want = ort.InferenceSession(str(path), plain, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    built = compile_model(path, "llvm -mcpu=znver3", records=tmp_path / "none", shipped=False)
    layer = built.lowered.layers[0]
    assert layer.kernel == f"int8_dense:{padded_rows(81)}x32x144x2" and "as int16" in layer.structure
    np.testing.assert_allclose(built(x), want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    dense = compile_model(path, "llvm -mcpu=znver3", records=tmp_path / "none", shipped=False,
                          options=DetectOptions(kernels="dense"))
    assert dense.lowered.layers[0].kernel.split(":")[0] != "int8_dense"
    np.testing.assert_allclose(dense(x), want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_shift_weights_with_quantized_input_run_integer_products_and_match_onnxruntime(tmp_path):
    import onnxruntime as ort

    from tvmopt.build.compile import compile_model
    from tvmopt.testing.qdq import qdq_matmul_model

    path = qdq_matmul_model(tmp_path / "shift.onnx", 4, 256, 32, zero_point=100, powers=7)
    x = np.random.default_rng(2).uniform(-5, 8, (4, 256)).astype(np.float32)
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    built = compile_model(path, records=tmp_path / "none", shipped=False)
    # onnxruntime's fp32 sums round where the integer product is exact: judged on the output's scale
    np.testing.assert_allclose(built(x), want, rtol=1e-5, atol=1e-6 * np.abs(want).max())
    layer = built.lowered.layers[0]
    # 7 powers of two (up to 64): whole bytes with VNNI, and pairs within AVX2's int16 sums
    assert layer.kernel == "int8_dense:4x32x256"
    assert layer.structure.startswith("powers-of-two") and "K x" not in layer.structure


@pytest.mark.parametrize("plain", [True, False])
def test_deepshift_fixed_point_activations_of_a_byte_run_integer_products(tmp_path, plain):
    """DeepShift's layers with 4-bit weights and fixed-point activations of 8 bits
    (``activation_bits=(3, 4)``): integer products, equal to the PyTorch model; with 9
    bits (``(4, 4)``) the fp32 shift kernel runs the same layers."""
    import torch
    from torch import nn

    import tvmopt.nn as tn
    from tvmopt.build.compile import compile_model

    torch.manual_seed(1)
    base = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))
    x = torch.randn(8, 64) * 3
    for bits, integer in (((3, 4), True), ((4, 4), False)):
        model = tn.compress(base, "shift", skip=("4",), weight_bits=4, activation_bits=bits).eval()
        with torch.no_grad():
            want = model(x).numpy()
        path = tn.export_onnx(model, x[:1], tmp_path / f"shift{bits[0]}.onnx", plain=plain)
        built = compile_model(path, batch=8, records=tmp_path / "none", shipped=False)
        np.testing.assert_allclose(built(x.numpy()), want, rtol=1e-4, atol=1e-4)
        families = [layer.kernel.split(":")[0] for layer in built.lowered.layers]
        assert families[2] == "dense"
        if integer:
            assert families[:2] == ["int8_dense"] * 2
        else:
            assert "int8_dense" not in families


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("stride,powers", [(1, 0), (2, 6)])
def test_quantized_convolutions_run_uint8_im2col_and_integer_products(tmp_path, layout, stride, powers):
    """Two QDQ convolutions (ternary or power-of-two weights, zero point 100: the padding is
    the zero point, a dequantized 0), either layout: ``int8_dense`` over a uint8 im2col where
    the CPU has VNNI, against onnxruntime without graph optimizations (with them it rewrites
    QDQ + Conv to its own quantized conv); forced dense gives the same values."""
    import onnxruntime as ort

    from tvmopt.build.compile import compile_model
    from tvmopt.testing.qdq import qdq_conv_model

    path = qdq_conv_model(tmp_path / "conv.onnx", shape=(2, 16, 11, 11), out_channels=32, stride=stride,
                          zero_point=100, powers=powers, layers=2)
    x = np.random.default_rng(6).uniform(-4, 6, (2, 16, 11, 11)).astype(np.float32)
    plain = ort.SessionOptions()
    plain.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    want = ort.InferenceSession(str(path), plain, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    built = compile_model(path, batch=2, records=tmp_path / "none", shipped=False, options=DetectOptions(layout=layout))
    np.testing.assert_allclose(built(x), want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    side = (11 + 2 - 3) // stride + 1
    families = [layer.kernel.split(":")[0] for layer in built.lowered.layers]
    assert families == ["int8_dense"] * 2
    # the im2col's rows (242 for 11 x 11 maps) computed padded to whole register tiles of rows
    assert built.lowered.layers[0].kernel == f"int8_dense:{padded_rows(2 * side * side)}x32x144"
    text = built.lowered.mod["main"].script(show_meta=False)
    assert "im2col" in text
    # the scheduled im2col is never re-fused with the quantize before it (that pair crashed on 2 threads)
    assert not [gv.name_hint for gv, _ in built.mod.functions_items()
                if "im2col" in gv.name_hint and "quantize" in gv.name_hint]
    if layout == "nhwc":        # one transpose in (of the bytes), one out: the quantizers moved to NHWC
        assert text.count("R.permute_dims") == 2
    dense = compile_model(path, batch=2, records=tmp_path / "none", shipped=False,
                          options=DetectOptions(layout=layout, kernels="dense"))
    assert "int8_dense" not in [layer.kernel.split(":")[0] for layer in dense.lowered.layers]
    np.testing.assert_allclose(dense(x), want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def _ort_quantized_mlp(tmp_path, how: str, shape=(8, 64), activation=None, weights: str = "QInt8") -> Path:
    """A PyTorch MLP (64 -> 48, ReLU or ``activation``, 48 -> 32) on inputs of ``shape``, exported
    to ONNX and quantized by ONNX Runtime's own tool: ``dynamic`` (``quantize_dynamic``:
    DynamicQuantizeLinear + MatMulInteger per layer) or ``qdq`` (``quantize_static``, QDQ, its
    default int8 activations)."""
    import torch
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 48), activation or torch.nn.ReLU(), torch.nn.Linear(48, 32)).eval()
    if weights == "QUInt8":
        with torch.no_grad():   # a skewed range: uint8 weights with a zero point far from 128
            model[2].weight.add_(0.9 * model[2].weight.abs().max())
    fp32 = tmp_path / "mlp.onnx"
    torch.onnx.export(model, (torch.randn(*shape),), str(fp32), dynamo=False, opset_version=17, input_names=["x"])
    out = tmp_path / f"mlp_{how}.onnx"
    if how == "dynamic":
        quantize_dynamic(str(fp32), str(out), weight_type=getattr(QuantType, weights))
        return out

    class Batches(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(0)
            self.batches = iter([{"x": rng.standard_normal(shape).astype(np.float32)} for _ in range(4)])

        def get_next(self):
            return next(self.batches, None)

    quantize_static(str(fp32), str(out), Batches(), quant_format=QuantFormat.QOperator if how == "qop" else QuantFormat.QDQ)
    return out


#: AVX2 code (Zen 3) builds and runs on every x86-64 machine this project meets, AVX-512 VNNI
#: code only on some: the host's target, and AVX2 wherever the host has more
ISAS = ["host", "avx2"] if VNNI else ["host"]


def _target(which: str) -> str:
    return "llvm -mcpu=znver3" if which == "avx2" else "llvm"


def _exact(path, feeds: dict) -> list:
    """The model's outputs with exact integer products: onnxruntime's on a VNNI host, onnx's
    reference evaluator elsewhere. Without VNNI, onnxruntime's u8 x s8 products run through
    ``vpmaddubsw``, whose int16 pair sums saturate: on a Zen 3 its MatMulInteger output was off
    by 0.08 of a 0.98 range, where tvmopt's int8 kernel matched the reference to 6e-8."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if not VNNI:
        from onnx.reference import ReferenceEvaluator

        try:
            return ReferenceEvaluator(str(path)).run(None, feeds)
        except (NotImplementedError, RuntimeError):    # QDQ of opset 17, com.microsoft's QGemm
            # QDQ pairs left unfused: fp32 products of the dequantized values, exact here
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).run(None, feeds)


@pytest.mark.parametrize("which", ISAS)
@pytest.mark.parametrize("weights", ["QInt8", "QUInt8"])
def test_onnxruntime_dynamic_quantization_runs_matmul_integer_on_the_int8_kernel(tmp_path, weights, which):
    """ONNX Runtime's ``quantize_dynamic`` output (each MatMul as DynamicQuantizeLinear, then
    MatMulInteger with the input's zero point, a data value, then Cast and the scales' Mul):
    every MatMulInteger runs the ``int8_dense`` kernel on any CPU, its zero point's term
    computed at run time, and the model matches onnxruntime (the int32 sums are exact). Before,
    the int32 product ran unscheduled: a BERT-base MLP took 1.6 s against onnxruntime's 2 ms.
    uint8 weights too: with zero point 128 (integers down to -128) as they are, with a skewed
    range (integers up to 254) as the sum of two bytes each over a doubled K. On AVX2, whose
    ``vpmaddubsw`` sums pairs of products in int16, both run wide (int16 weights); the same
    int32 sums."""
    import onnx

    from tvmopt.build.compile import compile_model

    path = _ort_quantized_mlp(tmp_path, "dynamic", weights=weights)
    assert [n.op_type for n in onnx.load(path).graph.node].count("MatMulInteger") == 2
    x = np.random.default_rng(1).standard_normal((8, 64)).astype(np.float32)
    want = _exact(path, {"x": x})[0]
    built = compile_model(path, _target(which), records=tmp_path / "none", shipped=False)
    # the skewed layer's integers run -255 to 254: two bytes each with VNNI, K doubled
    if which == "host" and VNNI:
        keys = ["int8_dense:8x48x64", "int8_dense:8x32x96" if weights == "QUInt8" else "int8_dense:8x32x48"]
    else:
        keys = ["int8_dense:8x48x64x2", "int8_dense:8x32x48x2"]
    assert [layer.kernel for layer in built.lowered.layers] == keys
    np.testing.assert_allclose(built(x), want, rtol=1e-5, atol=1e-5 * float(np.abs(want).max()))
    # a second input of another range: new scales and zero points, computed in the model
    x2 = (np.random.default_rng(2).standard_normal((8, 64)) * 7 + 3).astype(np.float32)
    want2 = _exact(path, {"x": x2})[0]
    np.testing.assert_allclose(built(x2), want2, rtol=1e-5, atol=1e-5 * float(np.abs(want2).max()))


@pytest.mark.parametrize("which", ISAS)
@pytest.mark.parametrize("how", ["qdq", "qop"])
def test_onnxruntime_static_quantization_runs_integer_products(tmp_path, how, which):
    """ONNX Runtime's ``quantize_static`` output (int8 activations, per-tensor int8 weights), QDQ
    or QOperator (QGemm, ONNX Runtime's own operator, which tvmopt reads as its QDQ form): both
    layers on ``int8_dense`` (on AVX2 wide: int16 weights), matching onnxruntime on
    the same file (QOperator: its integer kernels requantize each output in their own arithmetic,
    so a value can land a quantum apart)."""
    import onnx

    from tvmopt.build.compile import compile_model

    path = _ort_quantized_mlp(tmp_path, how)
    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert ("QGemm" in ops) == (how == "qop")
    x = np.random.default_rng(1).standard_normal((8, 64)).astype(np.float32)
    want = _exact(path, {"x": x})[0]
    built = compile_model(path, _target(which), records=tmp_path / "none", shipped=False)
    wide = "" if which == "host" and VNNI else "x2"
    assert [layer.kernel for layer in built.lowered.layers] == [f"int8_dense:8x48x64{wide}", f"int8_dense:8x32x48{wide}"]
    assert all(("int16" in layer.structure) == bool(wide) for layer in built.lowered.layers)
    quantum = 1e-4 if how == "qdq" else 0.02
    np.testing.assert_allclose(built(x), want, rtol=1e-5, atol=quantum * float(np.abs(want).max()))


def test_quantizers_of_a_3d_qdq_mlp_run_in_the_integer_kernels_write_back(tmp_path):
    """A transformer-shaped QDQ file ([1, tokens, features] input, tanh GELU, ONNX Runtime's
    quantize_static: a quantizer pair after the product and after every op of the GELU): the
    per-tensor quantizers and the GELU move past the reshape after the 2-D kernel and fuse into
    its write-back, so no function of their own is left (ONNX Runtime's BERT MLP ran them as one,
    1.7 ms beside its 0.8 ms product). Outputs match onnxruntime."""
    import onnxruntime as ort
    import torch

    from tvmopt.build.compile import compile_model
    from tvmopt.ops.task import TASK_ANNOTATION

    path = _ort_quantized_mlp(tmp_path, "qdq", shape=(1, 8, 64), activation=torch.nn.GELU(approximate="tanh"))
    x = np.random.default_rng(1).standard_normal((1, 8, 64)).astype(np.float32)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    want = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    built = compile_model(path, records=tmp_path / "none", shipped=False)
    wide = "" if VNNI else "x2"             # AVX2: int8 weights as int16
    assert [layer.kernel for layer in built.lowered.layers] == [f"int8_dense:8x48x64{wide}", f"int8_dense:8x32x48{wide}"]
    functions = {gv.name_hint: f.script() for gv, f in built.mod.functions_items() if type(f).__name__ == "PrimFunc"}
    kernels = [n for n, text in functions.items() if TASK_ANNOTATION in text]
    first = next(n for n in kernels if f"int8_dense_8_48_64{wide.replace('x', '_')}" in n)
    assert "tanh" in first and first.count("quantize") >= 8, first
    # what is left outside the kernels: the input's quantizer and the output's last dequantize
    others = [n for n in functions if n not in kernels and "quantize" in n]
    assert all("tanh" not in n and n.count("quantize") <= 2 for n in others), others
    # a quantizer that a 1-ulp difference moves across a rounding boundary gives one quantum
    np.testing.assert_allclose(built(x), want, rtol=0, atol=0.02 * float(np.abs(want).max()))


@pytest.mark.parametrize("how", ["qdq", "qop"])
def test_onnxruntime_qdq_cnn_runs_channels_last_between_its_quantizers(tmp_path, how):
    """ONNX Runtime's QDQ CNN (``quantize_static``: a quantizer pair after every convolution,
    the max pool and the residual add): the layout conversion carries channels last through the
    quantizers (written as the elementwise ops they are while it runs, restored after), so the
    graph keeps one transpose at its entry and the one before its classifier, where it ran NCHW
    between every two convolutions (ResNet-18: 0.75x onnxruntime, 0.9 ms of transposes and NCHW
    pooling); the convolutions still see their QDQ pairs (integer products where the CPU has
    VNNI; a stem of 3 channels too, its 27 patch columns padded to 28). The QOperator file of the
    same model (QLinearConv, QLinearAdd, QGemm...) is read as its QDQ form and builds the same.
    Outputs match onnxruntime to a quantum."""
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    from tvmopt.build.compile import compile_model

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = torch.nn.Conv2d(3, 16, 3, padding=1)
            self.pool = torch.nn.MaxPool2d(3, 2, 1)
            self.conv = torch.nn.Conv2d(16, 16, 3, padding=1)
            self.head = torch.nn.Linear(16 * 8 * 8, 10)

        def forward(self, x):
            y = self.pool(torch.relu(self.stem(x)))
            y = torch.relu(self.conv(y) + y)
            return self.head(torch.flatten(y, 1))

    torch.manual_seed(0)
    fp32, path = tmp_path / "cnn.onnx", tmp_path / "cnn_qdq.onnx"
    torch.onnx.export(Net().eval(), (torch.randn(1, 3, 16, 16),), str(fp32), dynamo=False, opset_version=17,
                      input_names=["x"])
    rng = np.random.default_rng(0)

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"x": rng.standard_normal((1, 3, 16, 16)).astype(np.float32)} for _ in range(4)])

        def get_next(self):
            return next(self.batches, None)

    quantize_static(str(fp32), str(path), Batches(), quant_format=QuantFormat.QOperator if how == "qop" else QuantFormat.QDQ)
    x = rng.standard_normal((1, 3, 16, 16)).astype(np.float32)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    want = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    built = compile_model(path, records=tmp_path / "none", shipped=False)
    main = built.lowered.mod["main"].script(show_meta=False)
    assert main.count("R.permute_dims") <= 2, main
    assert "R.nn.max_pool2d" in main and 'layout="NHWC"' in main
    # the stem's 3 x 3 x 3 = 27 columns computed as 28 (a zero weight: VNNI sums 4 bytes a lane)
    kernels = [layer.kernel for layer in built.lowered.layers][:2]
    wide = "" if VNNI else "x2"             # AVX2: int8 weights as int16
    assert kernels == [f"int8_dense:256x16x28{wide}", f"int8_dense:64x16x144{wide}"]
    np.testing.assert_allclose(built(x), want, rtol=0, atol=0.02 * float(np.abs(want).max()))


def test_qoperator_contrib_operators_read_as_qdq_match_onnxruntime(tmp_path):
    """ONNX Runtime's quantized operators that ``model/qoperator.py`` reads as DequantizeLinear,
    the float op, QuantizeLinear: QLinearConcat, QLinearGlobalAveragePool, QLinearLeakyRelu,
    QLinearSigmoid, QLinearSoftmax (last axis), QLinearMul, QLinearAdd on a hand-built graph,
    against onnxruntime's own kernels for them on the same file (a quantum apart at most)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from tvmopt.build.compile import compile_model

    def scalar(name, value, dtype):
        return numpy_helper.from_array(np.array(value, dtype), name)

    inits = [scalar("s", 0.05, np.float32), scalar("z", 128, np.uint8), scalar("s2", 0.02, np.float32),
             scalar("z2", 100, np.uint8), scalar("sp", 1 / 256, np.float32), scalar("zp", 0, np.uint8)]
    ms = "com.microsoft"
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
        helper.make_node("QLinearLeakyRelu", ["xq", "s", "z", "s2", "z2"], ["lr"], domain=ms, alpha=0.1),
        helper.make_node("QLinearSigmoid", ["xq", "s", "z", "sp", "zp"], ["sg"], domain=ms),
        helper.make_node("QLinearConcat", ["s2", "z2", "lr", "s2", "z2", "xq", "s", "z"], ["cat"], domain=ms, axis=1),
        helper.make_node("QLinearGlobalAveragePool", ["cat", "s2", "z2", "s2", "z2"], ["gap"], domain=ms),
        helper.make_node("QLinearMul", ["sg", "sp", "zp", "xq", "s", "z", "s2", "z2"], ["mul"], domain=ms),
        helper.make_node("QLinearAdd", ["mul", "s2", "z2", "xq", "s", "z", "s2", "z2"], ["add"], domain=ms),
        helper.make_node("QLinearSoftmax", ["add", "s2", "z2", "sp", "zp"], ["sm"], domain=ms, axis=-1, opset=13),
        helper.make_node("DequantizeLinear", ["sm", "sp", "zp"], ["y"]),
        helper.make_node("DequantizeLinear", ["gap", "s2", "z2"], ["g"]),
    ]
    graph = helper.make_graph(nodes, "qop", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 8]),
                               helper.make_tensor_value_info("g", TensorProto.FLOAT, [1, 8, 1, 1])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(ms, 1)])
    path = tmp_path / "qop.onnx"
    onnx.save(model, path)
    x = np.random.default_rng(3).uniform(-4, 4, (1, 4, 6, 8)).astype(np.float32)
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    built = compile_model(path, records=tmp_path / "none", shipped=False)
    got = built(x)
    np.testing.assert_allclose(got[0], want[0], rtol=0, atol=1.01 / 256)      # softmax: one quantum of 1/256
    np.testing.assert_allclose(got[1], want[1], rtol=0, atol=1.01 * 0.02)     # the pool: one quantum of 0.02


def test_onnxruntime_dynamic_quantization_of_a_cnn_runs_conv_integer(tmp_path):
    """``quantize_dynamic`` of a CNN writes ConvInteger (uint8 input and its zero point from
    DynamicQuantizeLinear, int8 weights), which TVM's importer does not know: tvmopt reads it as
    the float convolution of the zero-point differences (the padding then pads with the zero
    point, as onnxruntime does) and builds the model, channels last through the quantizers whose
    scale is data; outputs match onnxruntime's to a quantum."""
    import onnx
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import quantize_dynamic

    from tvmopt.build.compile import compile_model

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.Conv2d(16, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
                                torch.nn.Flatten(), torch.nn.Linear(16 * 8 * 8, 10)).eval()
    fp32, path = tmp_path / "cnn.onnx", tmp_path / "cnn_dyn.onnx"
    torch.onnx.export(model, (torch.randn(1, 3, 16, 16),), str(fp32), dynamo=False, opset_version=17, input_names=["x"])
    quantize_dynamic(str(fp32), str(path))
    assert [n.op_type for n in onnx.load(path).graph.node].count("ConvInteger") == 2
    x = np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if VNNI:
        want = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    else:
        want = _exact(path, {"x": x})[0]
    built = compile_model(path, records=tmp_path / "none", shipped=False)
    kernels = [layer.kernel.split(":")[0] for layer in built.lowered.layers]
    # the classifier's 10 outputs computed as a whole vector of 16 and cropped
    assert kernels == ["conv2d_nhwc", "conv2d_nhwc", "int8_dense"], kernels
    # channels last through each DynamicQuantizeLinear (its quantize's scale is data): one
    # transpose in, one before the flatten
    assert built.lowered.mod["main"].script(show_meta=False).count("R.permute_dims") <= 2
    # int16 weights (``x2``) where there is no VNNI: vpmaddubsw's int16 pair sums would saturate
    assert built.lowered.layers[-1].kernel == "int8_dense:1x16x1024" + ("" if VNNI else "x2")
    np.testing.assert_allclose(built(x), want, rtol=0, atol=0.02 * float(np.abs(want).max()))
