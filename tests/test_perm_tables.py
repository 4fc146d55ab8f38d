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
from tests_support import avx2_host, check_every_avx512_config

AVX512 = isa.host().lanes >= 16


@pytest.mark.parametrize("key", ["binary_perm_dense:8x48x64", "binary_perm_dense:1x32x100",
                                 "binary_perm_dense:6x16x40", "binary_perm_dense:12x64x32",
                                 # convolutions: padded, strided, channels not a whole word, 1x1
                                 "binary_perm_conv2d_nhwc:1x40x6x6x32x3x3x1x1",
                                 "binary_perm_conv2d_nhwc:2x32x7x7x16x3x3x2x1",
                                 "binary_perm_conv2d_nhwc:1x64x5x5x48x1x1x1x0",
                                 "binary_perm_conv2d_nhwc:2x32x9x9x16x1x1x2x0",      # 1x1 strided: subsampled tables
                                 "binary_perm_conv2d_nhwc:1x16x6x6x16x3x3x1x1",      # 16 channels: half words
                                 # ternary: 3 weights per 5-bit code, 32-entry tables (vpermt2ps)
                                 "ternary_perm_dense:8x32x50", "ternary_perm_dense:1x48x36",
                                 "ternary_perm_conv2d_nhwc:1x20x5x5x16x3x3x1x1",
                                 "ternary_perm_conv2d_nhwc:2x36x9x9x32x3x3x1x1"])   # tables per block of rows
def test_every_config_matches_numpy(key):
    check_every_avx512_config(key, seed=5)


def test_start_tiles_keep_sixteen_accumulators_in_power_of_two_vectors():
    """A binary 4 x 6 tile (24 accumulators, 6 code vectors, one table) spills on every target:
    on Zen 4 (``isa.ZEN4``), whose zmm stores take two cycles, it ran 1.00x the dense start where
    4 x 4 ran 2.85x, on an Ice Lake Xeon 0.63x against 2.86x; tiles of 3 and 6 vectors ran far
    below 4 x 4 there even without spills. The start is what the build runs untuned."""
    from tvmopt.target import parse_target

    assert isa.for_target(parse_target("llvm -mcpu=znver4 -num-cores=2")) is isa.ZEN4
    assert isa.for_target_key("llvm-znver4-avx2-2c") is isa.AVX2          # AVX-512 hidden: AVX2's tiles
    tiles = {}
    for chosen in (isa.AVX512_VNNI, isa.ZEN4):
        with isa.use(chosen):
            for key in ("binary_perm_dense:128x3072x768", "ternary_perm_dense:128x3072x768",
                        "binary_perm_conv2d_nhwc:1x64x8x8x192x3x3x1x1"):
                space = get_task(key).space
                start = space.as_dict(space.initial())
                tiles[chosen.name, key.split(":")[0]] = (start["rows"], start["vectors"])
    assert tiles["avx512-vnni", "binary_perm_dense"] == tiles["avx512-vnni-zen4", "binary_perm_dense"] == (4, 4)
    assert tiles["avx512-vnni", "binary_perm_conv2d_nhwc"] == (4, 4)
    assert tiles["avx512-vnni-zen4", "binary_perm_conv2d_nhwc"] == (8, 2)     # the tallest first on Zen 4
    # two-register ternary tables keep 16 accumulators everywhere
    assert tiles["avx512-vnni", "ternary_perm_dense"] == tiles["avx512-vnni-zen4", "ternary_perm_dense"] == (4, 4)


def test_conv_starts_build_tables_per_block_of_rows_and_keep_four_code_vectors():
    """Ternary tables (128 bytes per group of 3 channels and input pixel) built for a whole batch
    or a 56x56 image outgrow the caches before they are read: the start builds them per block of
    up to 14 output rows (maps taller than 7) and keeps at most 4 code vectors (2 x 8 ran 0.62x the
    dense conv at 1x256x14x14x256, 2 x 4 with blocks of 7 rows 1.36x; Zen 4)."""
    starts = {}
    for key in ("ternary_perm_conv2d_nhwc:16x64x56x56x64x3x3x1x1", "ternary_perm_conv2d_nhwc:1x256x14x14x256x3x3x1x1",
                "ternary_perm_conv2d_nhwc:1x512x7x7x512x3x3x1x1", "binary_perm_conv2d_nhwc:16x64x56x56x64x3x3x1x1"):
        with isa.use(isa.ZEN4):
            space = get_task(key).space
        start = space.as_dict(space.initial())
        starts[key.split(":")[1].split("x3x3")[0], key.split("_")[0]] = (start["rows"], start["vectors"],
                                                                          start["table_rows"])
    assert starts["16x64x56x56x64", "ternary"] == (4, 4, 14)
    assert starts["1x256x14x14x256", "ternary"] == (7, 2, 7)
    assert starts["1x512x7x7x512", "ternary"] == (7, 2, 0)      # a 7-row map: its tables at once
    assert starts["16x64x56x56x64", "binary"] == (8, 2, 14)    # binary on Zen 4: blocks too, tallest tile
    with isa.use(isa.AVX512_VNNI):                              # full-width cores: binary starts as before
        space = get_task("binary_perm_conv2d_nhwc:16x64x56x56x64x3x3x1x1").space
    assert space.as_dict(space.initial())["table_rows"] == 0


def test_ternary_words_hold_base3_codes_of_three_weights():
    """ternary_perm_dense packs ternary_dense's 2-bit codes as 5-bit codes (w0+1) + 3 (w1+1) +
    9 (w2+1), six per word; logical() gives the 2-bit codes back."""
    with isa.use(isa.AVX512):
        task = get_task("ternary_perm_dense:2x16x20")
        (codes,) = task.random_weights(np.random.default_rng(4))
        (words,) = task.to_kernel([codes])
    assert words.shape == (2, 16)
    np.testing.assert_array_equal(task.logical([words])[0], codes)
    w = task.dense_weight([codes])                                          # [K, N] in {-1, 0, 1}
    first = words.view(np.uint32)[0] & 31
    np.testing.assert_array_equal(first, (w[0] + 1) + 3 * (w[1] + 1) + 9 * (w[2] + 1))


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


def test_conv_code_words_are_the_weight_by_tap_and_channel():
    """The conv's words [KH, KW, ceil(C/32), O] hold bit c % 32 of channel c's sign at each tap,
    from the same binary_dense sign bytes as every binary kernel; zero bits past C."""
    with isa.use(isa.AVX512):
        task = get_task("binary_perm_conv2d_nhwc:1x40x5x5x16x3x3x1x1")
        (wbits,) = task.weights.random_weights(np.random.default_rng(1))
        (words,) = task.to_kernel([wbits])
    assert words.shape == (3, 3, 2, 16)
    w = task.weights.dense_weight([wbits]).T.reshape(16, 40, 3, 3)             # [O, C, KH, KW]
    np.testing.assert_array_equal(task.dense_weight([words]), w)
    assert not (words.view(np.uint32)[:, :, 1] >> 8).any()                       # channels 40..63


def test_sixteen_channel_convs_store_one_bit_a_weight_in_half_words():
    """A conv of 16 input channels (a CIFAR ResNet's first stage) keeps each tap's 16 signs in a
    16-bit word: 1 bit stored per weight (32-bit words held 2), decoding to the same weight."""
    with isa.use(isa.AVX512):
        task = get_task("binary_perm_conv2d_nhwc:1x16x6x6x32x3x3x1x1")
        (wbits,) = task.weights.random_weights(np.random.default_rng(2))
        (words,) = task.to_kernel([wbits])
    assert words.dtype == np.uint16 and words.shape == (3, 3, 1, 32)
    assert words.nbytes * 8 == 16 * 3 * 3 * 32
    w = task.weights.dense_weight([wbits]).T.reshape(32, 16, 3, 3)
    np.testing.assert_array_equal(task.dense_weight([words]), w)


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
                          tn.TernaryLinear(256, 512, per_channel=True), nn.ReLU(), nn.Linear(512, 10)).eval()
    x = torch.randn(24, 256)
    with torch.no_grad():
        ref = model(x).numpy()
    path = tn.export_onnx(model, x, tmp_path / "binary.onnx", plain=True)
    compiled = compile_model(path, "llvm" if wide else avx2_host(), batch=24, shipped=False, records=tmp_path,
                             options=DetectOptions(kernels="compressed", winograd=False))
    tables = "binary_perm_dense" if wide else "binary_rowlut_dense"
    ternary = "ternary_perm_dense" if wide else "ternary_dense"        # ternary row tables from 64 rows
    assert _families(compiled) == [tables, tables, ternary, "dense"]
    np.testing.assert_allclose(compiled(x.numpy()), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    if wide:      # the per-output scale, the bias and the ReLU run in the kernels' write-back
        kernels = [f.script() for _, f in compiled.mod.functions_items()
                   if type(f).__name__ == "PrimFunc" and TASK_ANNOTATION in f.script() and "_perm_dense" in f.script()]
        assert len(kernels) == 3
        for text in kernels:
            assert "permvar" in text or "vpermi2var" in text
            assert not re.findall(r'T\.sblock\("(T_multiply|T_add|relu)\w*"', text)


def _cnn(tmp_path, layers, features: int, size: int):
    """A CNN of a fp32 first conv, ``layers()`` (made after the seed; a batch norm third, given
    non-trivial statistics) and a classifier over ``features``, exported plain and built with
    every compressed layer forced compressed: (the module, the layers' kernels, the input,
    onnxruntime's output, the torch model)."""
    import onnxruntime as ort

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), *layers(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(features, 10)).eval()
    with torch.no_grad():
        model[3].running_mean.uniform_(-1, 1)
        model[3].running_var.uniform_(0.5, 2)
    x = torch.randn(2, 3, size, size)
    path = tn.export_onnx(model, x, tmp_path / "cnn.onnx", plain=True)
    compiled = compile_model(path, "llvm", batch=2, shipped=False, records=tmp_path,
                             options=DetectOptions(kernels="compressed", winograd=False))
    convs = [la.kernel.split(":")[0] for la in compiled.lowered.layers if "conv2d" in la.kernel]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return compiled, convs, x, sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0], model


@pytest.mark.skipif(not AVX512, reason="this CPU has no AVX-512")
def test_binary_cnn_runs_its_convolutions_through_register_tables(tmp_path):
    """A binary CNN (tvmopt.nn, per-channel scale, batch norm, ReLU, a strided layer): on AVX-512
    its binary convolutions run channels last through register tables and match PyTorch."""
    compiled, convs, x, want, model = _cnn(
        tmp_path, lambda: (tn.BinaryConv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
                           tn.BinaryConv2d(64, 64, 3, stride=2, padding=1), nn.ReLU()), 64, 12)
    assert convs == ["conv2d_nhwc", "binary_perm_conv2d_nhwc", "binary_perm_conv2d_nhwc"], convs
    with torch.no_grad():
        np.testing.assert_allclose(model(x).numpy(), want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(compiled(x.numpy()), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


@pytest.mark.skipif(not AVX512, reason="this CPU has no AVX-512")
def test_ternary_cnn_runs_register_tables_where_avx512_is_double_pumped(tmp_path):
    """A ternary CNN (per-channel scale, batch norm, ReLU, a strided layer and a 1x1 shortcut-like
    strided layer): on Zen 4 its convolutions of 32 channels and more run ternary register tables
    channels last, elsewhere the decoded ternary conv; either way they match onnxruntime."""
    compiled, convs, x, want, _ = _cnn(
        tmp_path, lambda: (tn.TernaryConv2d(32, 48, 3, padding=1), nn.BatchNorm2d(48), nn.ReLU(),
                           tn.TernaryConv2d(48, 64, 3, stride=2, padding=1), nn.ReLU(),
                           tn.TernaryConv2d(64, 64, 1, stride=2), nn.ReLU()), 64, 16)
    kind = "ternary_perm_conv2d_nhwc" if isa.host().double_pumped else "ternary_conv2d_nhwc"
    assert convs == ["conv2d_nhwc", kind, kind, kind], convs
    # the bytes the kernels store: 2 bits per weight (48 and 64 channels: 3 and 4 words of 18 per
    # tap and output) and the layer's scale (one alpha; with the batch norm folded, one per channel)
    assert [la.compact_bytes for la in compiled.lowered.layers[1:4]] == \
        [9 * 48 * 32 // 4 + 48 * 4, 9 * 64 * 48 // 4 + 4, 64 * 64 // 4 + 4]
    np.testing.assert_allclose(compiled(x.numpy()), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize("key", ["binary_perm_dense:4x32x64", "ternary_dense:3x16x40", "xnor_dense:2x16x64",
                                 "nm_decode_dense:4x16x32x2x4", "hashed_dense:2x16x20x37x2"])
def test_tune_times_numpys_dense_product_not_the_reference_decode(key):
    """``tvmopt tune``'s same-run figure against numpy times numpy's fp32 product with the weight
    decoded beforehand (what a user would run), which computes the reference's result."""
    with isa.use(isa.AVX512):
        task = get_task(key)
    inputs = task.make_inputs(np.random.default_rng(2))
    product = task.numpy_product(inputs)
    assert task.mismatch(product(), task.reference(inputs)) is None


def test_the_prediction_keeps_small_layers_and_unfit_convolutions_off_register_tables():
    """Never slower (perm_tables_xeon): below 8 rows a binary layer needs 256K weights (1x256x256
    ran 0.94x dense), from 8 rows 64K (16x256x256: 2.06x); convolutions from 2K weights, with 16
    or a multiple of 32 input channels and no input pixel built a table for and never read; none
    on AVX2 targets."""
    from tvmopt.passes.choose import choose, conv_register_tables, register_tables

    with isa.use(isa.AVX512):
        assert not choose("auto", "binary_perm_dense", "k", "d", 1, 256 * 256, False).compressed
        assert choose("auto", "binary_perm_dense", "k", "d", 1, 1024 * 1024, False).compressed
        assert choose("auto", "binary_perm_dense", "k", "d", 16, 256 * 256, False).compressed
        assert not choose("auto", "ternary_perm_dense", "k", "d", 16, 128 * 128, False).compressed
        assert choose("auto", "binary_perm_conv2d", "k", "d", 1024, 16 * 16 * 9, True).compressed
        assert not choose("auto", "binary_perm_conv2d", "k", "d", 1024, 16 * 8 * 9, True).compressed
        assert register_tables("binary_rowlut_dense", 16, 4096) == "binary_perm_dense"
        assert register_tables("ternary_dense", 1, 48) == "ternary_perm_dense"
        assert register_tables("binary_dense", 16, 40) is None                   # not 16 outputs a vector
        assert register_tables("shift_dense", 16, 4096) is None
        assert conv_register_tables("binary_conv2d", 16, 16, 3, 1) == "binary_perm_conv2d"
        assert conv_register_tables("binary_conv2d", 64, 128, 1, 2) == "binary_perm_conv2d"   # subsampled tables
        assert conv_register_tables("binary_conv2d", 24, 16, 3, 1) is None       # neither 16 nor whole words
        assert conv_register_tables("binary_conv2d", 64, 64, 2, 3) is None       # input pixels skipped
        assert conv_register_tables("ternary_conv2d", 64, 64, 3, 1) is None      # full width: left to tune
    with isa.use(isa.ZEN4):            # double-pumped FMAs: ternary convolutions from 32 channels
        assert conv_register_tables("ternary_conv2d", 64, 64, 3, 1) == "ternary_perm_conv2d"
        assert conv_register_tables("ternary_conv2d", 36, 16, 1, 2) == "ternary_perm_conv2d"
        assert conv_register_tables("ternary_conv2d", 16, 16, 3, 1) is None      # a padded word: 0.91x
        assert conv_register_tables("ternary_conv2d", 64, 40, 3, 1) is None      # not 16 outputs a vector
        assert choose("auto", "ternary_perm_conv2d", "k", "d", 64, 64 * 64 * 9, True).compressed
        assert not choose("auto", "ternary_perm_conv2d", "k", "d", 1024, 32 * 16 * 9, True).compressed
        # narrower ternary layers: the decoded conv ties with dense from 256 output pixels (0.97-0.99x)
        assert choose("auto", "ternary_conv2d", "k", "d", 1024, 16 * 16 * 9, True).compressed
        assert not choose("auto", "ternary_conv2d", "k", "d", 64, 16 * 16 * 9, True).compressed
        tuned_dense = {"d": 1e-3}.get          # a record for the dense conv only: the tie was start vs start
        assert not choose("auto", "ternary_conv2d", "k", "d", 1024, 16 * 16 * 9, True, cost=tuned_dense).compressed
        # shift convs of a batch from 1024 output pixels (test_kernel_choice.py), not below
        assert choose("auto", "shift_conv2d", "shift_conv2d_nhwc:16x16x8x8x16x3x3x1x1", "d", 1024, 16 * 16 * 9,
                      True).compressed
        assert not choose("auto", "shift_conv2d", "k", "d", 784, 16 * 16 * 9, True).compressed
        assert not choose("auto", "shift_conv2d", "k", "d", 1024, 16 * 16 * 9, True).compressed      # one image
    with isa.use(isa.AVX512_VNNI):
        assert not choose("auto", "ternary_conv2d", "k", "d", 1024, 16 * 16 * 9, True).compressed
    with isa.use(isa.AVX2):
        assert register_tables("binary_dense", 16, 4096) is None
        assert conv_register_tables("binary_conv2d", 64, 64, 3, 1) is None
