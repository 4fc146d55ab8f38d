"""Winograd F(2x2, 3x3) convolutions (ops/winograd_conv2d.py): every knob value of the dense and
the compressed kernels against the numpy reference (odd maps, batches, tails of tiles); the pass
runs 3x3 stride-1 channels-last layers on them with the epilogue fused, matching onnxruntime;
the choice between a compressed and the dense Winograd conv; and ``winograd=False`` keeps the
direct conv."""

import numpy as np
import pytest
import torch
from torch import nn

import tvmopt.nn as tn
from tvmopt.build.compile import compile_model
from tvmopt.errors import WorkloadError
from tvmopt.ops.task import get_task
from tvmopt.ops.winograd_conv2d import G, from_panels, to_panels, transform_weight
from tvmopt.passes import DetectOptions
from tvmopt.passes.choose import choose
from tests_support import avx2_host, run_config


def test_weight_transform_is_g_g_gt():
    """U[a, b] = G g G^T for each (c, o); the reference inverts it back to g."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((16, 3, 3, 3)).astype(np.float32)
    u = transform_weight(w)
    assert u.shape == (4, 4, 3, 16)
    np.testing.assert_allclose(u[:, :, 1, 5], G @ w[5, 1].astype(np.float64) @ G.T, rtol=1e-6, atol=1e-6)
    panels = to_panels(u)                      # the dense kernel's layout: 16 output channels a panel
    assert panels.shape == (1, 4, 4, 3, 16)
    np.testing.assert_array_equal(panels[0, :, :, 1, 5], u[:, :, 1, 5])
    np.testing.assert_array_equal(from_panels(panels), u)


@pytest.mark.parametrize("key", ["winograd_conv2d_nhwc:1x16x9x11x32x3x3x1x1",       # odd map: tails of tiles
                                 "winograd_conv2d_nhwc:2x24x8x8x16x3x3x1x1"])        # batch, channels not /16
def test_every_knob_value_matches_the_numpy_reference(key):
    task = get_task(key)
    configs = list(task.space.all())
    assert len(configs) >= 2 and task.space.initial() in configs
    _check(task, configs, seed=1)


def _check(task, configs, seed: int) -> None:
    """The task's output for each config against its numpy reference."""
    inputs = task.make_inputs(np.random.default_rng(seed))
    want = task.reference(inputs)
    rtol, atol = task.tolerance()
    for config in dict.fromkeys(configs):
        np.testing.assert_allclose(run_config(task, config, inputs), want, rtol=rtol, atol=atol, err_msg=str(config))


@pytest.mark.parametrize("key", ["shift_winograd_conv2d_nhwc:1x16x10x10x32x3x3x1x1",
                                 "ternary_winograd_conv2d_nhwc:2x32x8x9x16x3x3x1x1",
                                 "binary_winograd_conv2d_nhwc:1x16x8x8x16x3x3x1x1",
                                 "nm_winograd_conv2d_nhwc:1x16x8x10x32x3x3x1x1x2x4"])
def test_compressed_kernels_match_their_decoded_weights(key):
    """The compressed arrays decoded and transformed inside the kernel give the direct conv of
    the decoded weight, for the start and a second config."""
    task = get_task(key)
    configs = list(task.space.all())
    _check(task, [task.space.initial(), configs[0], configs[-1]], seed=2)


def test_output_channels_in_blocks_match_the_reference():
    """``parallel = blocks``: the output channels outermost in blocks (each block's share of U
    transformed by the core that runs it), every patch transformed once before; the start of a
    large compressed layer and of a large layer's batch, and an explicit config of a small one
    (a register tile wider than the block is narrowed to it)."""
    from tvmopt.schedules.winograd import block_vectors

    from tvmopt.schedules import isa

    def split(key):
        return get_task(key).space.initial()[2]

    big = get_task("shift_winograd_conv2d_nhwc:1x512x4x8x512x3x3x1x1")
    assert big.space.initial()[2] == "blocks" and block_vectors(big.shape, 2) == 1
    with isa.use(isa.ZEN4):
        assert split("winograd_conv2d_nhwc:2x512x4x8x512x3x3x1x1") == "blocks"
        # one image's dense layer past 4 MiB on a small map by blocks (its U is cold in a network),
        # at 4 MiB or on a larger map by outputs
        assert split("winograd_conv2d_nhwc:1x512x4x8x512x3x3x1x1") == "blocks"
        assert split("winograd_conv2d_nhwc:1x512x7x7x512x3x3x1x1") == "blocks"
        assert split("winograd_conv2d_nhwc:1x256x14x14x256x3x3x1x1") == "outputs"
        assert split("winograd_conv2d_nhwc:1x512x28x28x512x3x3x1x1") == "outputs"
        assert split("shift_winograd_conv2d_nhwc:1x64x8x8x64x3x3x1x1") == "rows"
        assert split("winograd_conv2d_nhwc:16x256x14x14x256x3x3x1x1") == "rows"
        assert split("ternary_winograd_conv2d_nhwc:1x128x28x28x128x3x3x1x1") == "rows"
    # a full-width AVX-512 core (Ice Lake): every U from 2 MiB by blocks, and one image's
    # compressed layer whose U fills L2 by outputs (each core transforms its share)
    with isa.use(isa.AVX512_VNNI):
        assert split("winograd_conv2d_nhwc:1x512x4x8x512x3x3x1x1") == "blocks"
        assert split("winograd_conv2d_nhwc:16x256x14x14x256x3x3x1x1") == "blocks"
        assert split("winograd_conv2d_nhwc:16x128x8x8x256x3x3x1x1") == "blocks"          # 2 MiB
        assert split("winograd_conv2d_nhwc:16x128x28x28x128x3x3x1x1") == "rows"          # 1 MiB
        assert split("ternary_winograd_conv2d_nhwc:1x128x28x28x128x3x3x1x1") == "outputs"
        assert split("winograd_conv2d_nhwc:1x128x28x28x128x3x3x1x1") == "rows"
        # ... and on a small map from 256 KiB (0.76x against 0.56x by rows), not below it nor on larger maps
        assert split("shift_winograd_conv2d_nhwc:1x64x8x8x64x3x3x1x1") == "outputs"
        assert split("ternary_winograd_conv2d_nhwc:1x64x16x16x128x3x3x1x1") == "outputs"
        assert split("shift_winograd_conv2d_nhwc:1x32x16x16x32x3x3x1x1") == "rows"
        assert split("shift_winograd_conv2d_nhwc:1x64x32x32x64x3x3x1x1") == "rows"
        assert split("winograd_conv2d_nhwc:1x64x8x8x64x3x3x1x1") == "rows"
    _check(big, [big.space.initial()], seed=4)
    for key in ("winograd_conv2d_nhwc:2x16x6x10x48x3x3x1x1", "ternary_winograd_conv2d_nhwc:1x32x8x8x64x3x3x1x1"):
        task = get_task(key)
        _check(task, [c for c in task.space.all() if c[2] == "blocks"][:3], seed=5)
    # AVX2: a batch's compressed layer (U computed each call) by blocks from 2 MiB of U
    with isa.use(isa.AVX2):
        assert get_task("ternary_winograd_conv2d_nhwc:16x128x8x8x256x3x3x1x1").space.initial()[2] == "blocks"
        assert get_task("ternary_winograd_conv2d_nhwc:16x64x16x16x128x3x3x1x1").space.initial()[2] == "rows"
        assert get_task("ternary_winograd_conv2d_nhwc:1x128x8x8x256x3x3x1x1").space.initial()[2] != "blocks"
        assert get_task("winograd_conv2d_nhwc:16x128x8x8x256x3x3x1x1").space.initial()[2] == "rows"
    # AVX2 code (AVX-512 masked) of a block: each vector of 16 outputs two ymm registers
    inputs = big.make_inputs(np.random.default_rng(6))
    np.testing.assert_allclose(run_config(big, big.space.initial(), inputs, avx2_host().tvm_target()), big.reference(inputs),
                               rtol=big.tolerance()[0], atol=big.tolerance()[1])


def test_a_compressed_layer_transforms_its_weight_into_the_dense_kernels_panels():
    """The per-call U is laid out as the dense kernel's constant, [O / 16, 4, 4, C, 16], so a
    register tile streams its output channels' U in order (read in place, [4, 4, C, O], a batch
    of 16 on AVX2 ran 0.68 to 0.84x the dense Winograd conv, in panels 0.87 to 0.96x)."""
    import tvm
    from tvm import te

    task = get_task("ternary_winograd_conv2d_nhwc:1x32x8x8x64x3x3x1x1")
    sch = tvm.s_tir.Schedule(tvm.IRModule({"main": te.create_prim_func(list(task.compute()))}))
    written = sch.get(sch.get_sblock("wt_weight")).writes[0]
    assert [int(d) for d in written.source.shape] == [4, 4, 4, 32, 16]


@pytest.mark.parametrize("key", ["winograd_conv2d_nhwc:1x16x8x8x16x3x3x2x1",      # stride 2
                                 "winograd_conv2d_nhwc:1x16x8x8x16x1x1x1x0",      # 1x1
                                 "winograd_conv2d_nhwc:1x16x8x8x24x3x3x1x1",      # outputs not in vectors
                                 "winograd_conv2d_nhwc:1x3x8x8x16x3x3x1x1",       # 3 input channels
                                 "winograd_conv2d_nhwc:1x1024x7x7x512x3x3x1x1"])  # 32 MiB transformed weight
def test_layers_it_does_not_compute_are_refused(key):
    with pytest.raises(WorkloadError):
        get_task(key)


def test_choice_against_the_dense_winograd_conv():
    """A compressed Winograd conv is predicted at the dense one's speed from 784 output pixels
    (Zen 4; AVX2 and full-width AVX-512: 3136, but 784 for a batch transforming U by blocks, and
    196 on a full-width AVX-512 core whose start shares the transform out by blocks or outputs),
    whatever the size of its transformed weight, else the dense Winograd conv; binary register
    tables win; the other direct compressed convs lose to it."""
    from tvmopt.schedules import isa

    with isa.use(isa.ZEN4):
        _choices_against_winograd()
        assert choose("auto", "ternary_winograd_conv2d", "ternary_winograd_conv2d_nhwc:1x128x28x28x128x3x3x1x1",
                      "winograd_conv2d_nhwc:1x128x28x28x128x3x3x1x1", 784, 128 * 128 * 9, conv=True).compressed
    for other in (isa.AVX2, isa.AVX512_VNNI):
        with isa.use(other):
            _choices_against_winograd()
            _choices_from_3136_pixels()


def _choices_from_3136_pixels():
    from tvmopt.schedules import isa

    def ternary(dims, rows, weights):
        return choose("auto", "ternary_winograd_conv2d", f"ternary_winograd_conv2d_nhwc:{dims}",
                      f"winograd_conv2d_nhwc:{dims}", rows, weights, conv=True).compressed

    assert ternary("1x64x56x56x64x3x3x1x1", 3136, 64 * 64 * 9)
    assert ternary("16x64x16x16x128x3x3x1x1", 4096, 64 * 128 * 9)
    # AVX2 0.92 to 0.93x; a full-width core from 1,024 pixels where U is at most 256 KiB (1.10x)
    assert ternary("16x64x8x8x64x3x3x1x1", 1024, 64 * 64 * 9) == (isa.current() == isa.AVX512_VNNI)
    assert not ternary("1x32x16x16x32x3x3x1x1", 256, 32 * 32 * 9)           # 0.90x on the Ice Lake Xeon
    # AVX2 0.90 to 0.91x; a full-width core splits one image's U of 1 MiB by outputs (0.96x)
    assert ternary("1x128x28x28x128x3x3x1x1", 784, 128 * 128 * 9) == (isa.current() == isa.AVX512_VNNI)
    # a batch whose U is transformed once in all, by blocks: from 784 (0.98 to 0.99x)
    assert ternary("16x512x7x7x512x3x3x1x1", 784, 512 * 512 * 9)
    # ... by blocks from a U of 2 MiB on AVX2 and full-width AVX-512 (Zen 4: 4 MiB); full width
    # then runs it compressed from 196 pixels (0.95x the dense conv by blocks)
    assert ternary("16x128x8x8x256x3x3x1x1", 1024, 128 * 256 * 9) == (not isa.current().double_pumped)


def _choices_against_winograd():
    from tvmopt.schedules import isa

    dense = "winograd_conv2d_nhwc:1x64x56x56x64x3x3x1x1"
    assert choose("auto", "shift_winograd_conv2d", "shift_winograd_conv2d_nhwc:1x64x56x56x64x3x3x1x1", dense,
                  3136, 64 * 64 * 9, conv=True).compressed
    small = "winograd_conv2d_nhwc:1x64x8x8x64x3x3x1x1"
    assert not choose("auto", "shift_winograd_conv2d", "shift_winograd_conv2d_nhwc:1x64x8x8x64x3x3x1x1", small,
                      64, 64 * 64 * 9, conv=True).compressed
    large = "winograd_conv2d_nhwc:1x256x14x14x256x3x3x1x1"
    # Zen 4 and AVX2: 0.88 to 0.90x the dense conv; a full-width AVX-512 core shares the transform
    # out by blocks: 0.93x alone, at the dense build's speed in ResNet-18
    full_width = isa.current() == isa.AVX512_VNNI
    assert choose("auto", "ternary_winograd_conv2d", "ternary_winograd_conv2d_nhwc:1x256x14x14x256x3x3x1x1",
                  large, 196, 256 * 256 * 9, conv=True).compressed == full_width
    assert choose("auto", "ternary_winograd_conv2d", "ternary_winograd_conv2d_nhwc:16x256x14x14x256x3x3x1x1",
                  large.replace("1x", "16x", 1), 16 * 196, 256 * 256 * 9, conv=True).compressed
    # one image's U of 2 MiB and more by blocks on a full-width core from 64 pixels (VGG's 8x8
    # layers: the dense U read cold for 16 tiles)
    for dims, weights in (("1x128x8x8x256x3x3x1x1", 128 * 256 * 9), ("1x256x8x8x256x3x3x1x1", 256 * 256 * 9)):
        assert choose("auto", "shift_winograd_conv2d", f"shift_winograd_conv2d_nhwc:{dims}",
                      f"winograd_conv2d_nhwc:{dims}", 64, weights, conv=True).compressed == full_width
    assert not choose("auto", "shift_winograd_conv2d", "shift_winograd_conv2d_nhwc:1x256x4x4x256x3x3x1x1",
                      "winograd_conv2d_nhwc:1x256x4x4x256x3x3x1x1", 16, 256 * 256 * 9, conv=True).compressed
    huge = "winograd_conv2d_nhwc:1x512x14x14x512x3x3x1x1"       # 16 MiB, by blocks
    assert choose("auto", "shift_winograd_conv2d", "shift_winograd_conv2d_nhwc:1x512x14x14x512x3x3x1x1",
                  huge, 196, 512 * 512 * 9, conv=True).compressed == full_width
    assert choose("auto", "shift_winograd_conv2d", "shift_winograd_conv2d_nhwc:16x512x7x7x512x3x3x1x1",
                  "winograd_conv2d_nhwc:16x512x7x7x512x3x3x1x1", 784, 512 * 512 * 9, conv=True).compressed
    assert choose("auto", "binary_perm_conv2d", "binary_perm_conv2d_nhwc:1x64x8x8x64x3x3x1x1", small, 64,
                  64 * 64 * 9, conv=True).compressed
    assert not choose("auto", "hashed_conv2d", "hashed_conv2d_nhwc:1x64x56x56x64x3x3x1x1x100x1", dense, 3136,
                      64 * 64 * 9, conv=True).compressed
    # records decide where both kernels have one
    cost = {"shift_winograd_conv2d_nhwc:1x64x8x8x64x3x3x1x1": 1.0, small: 2.0}.get
    assert choose("auto", "shift_winograd_conv2d", "shift_winograd_conv2d_nhwc:1x64x8x8x64x3x3x1x1", small, 64,
                  64 * 64 * 9, conv=True, cost=cost).compressed


def _build(tmp_path, layers, options):
    import onnxruntime as ort

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), *layers,
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10)).eval()
    with torch.no_grad():
        for m in model:
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 3, 30, 30)
    path = tn.export_onnx(model, x, tmp_path / "cnn.onnx", plain=True)
    compiled = compile_model(path, "llvm", batch=2, shipped=False, records=tmp_path, options=options)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    convs = [la.kernel.split(":")[0] for la in compiled.lowered.layers if "conv2d" in la.kernel]
    return compiled, convs, x.numpy(), want


def test_dense_cnn_runs_winograd_with_its_epilogue_fused(tmp_path):
    """3x3 stride-1 layers of a dense CNN (batch norm, ReLU) run the Winograd conv, its epilogue
    in the output transform (no elementwise function left), and match onnxruntime; with
    ``winograd=False`` they run the direct conv."""
    layers = [nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1),
              nn.ReLU()]
    compiled, convs, x, want = _build(tmp_path, layers, DetectOptions())
    assert convs == ["conv2d_nhwc"] + ["winograd_conv2d_nhwc"] * 2, convs      # 3 input channels: direct
    np.testing.assert_allclose(compiled(x), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    funcs = [gv.name_hint for gv, f in compiled.mod.functions_items() if "winograd" in gv.name_hint]
    assert funcs and all("relu" in name for name in funcs), funcs       # ReLU (and the bias) fused in
    _, direct, _, _ = _build(tmp_path, layers, DetectOptions(winograd=False))
    assert direct == ["conv2d_nhwc"] * 3, direct


def test_compressed_cnn_runs_the_compressed_winograd_conv(tmp_path):
    """Forced compressed, shift and ternary 3x3 layers run their Winograd kernels (codes stored,
    decoded each call) with batch norm folded into the scale, and match onnxruntime."""
    layers = [tn.ShiftConv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
              tn.TernaryConv2d(32, 32, 3, padding=1), nn.ReLU()]
    compiled, convs, x, want = _build(tmp_path, layers, DetectOptions(kernels="compressed"))
    assert convs == ["conv2d_nhwc", "shift_winograd_conv2d_nhwc", "ternary_winograd_conv2d_nhwc"], convs
    np.testing.assert_allclose(compiled(x), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    stored = [la.compact_bytes - la.scale_bytes for la in compiled.lowered.layers if "winograd" in la.kernel]
    assert stored[0] < 32 * 32 * 9 * 4 / 5 and stored[1] <= 32 * 32 * 9 * 4 / 14, stored   # codes, not U


def test_the_start_fits_the_vector_registers():
    """AVX-512: 7 or 8 tiles by 2 vectors of 16 outputs; AVX2 (two ymm per vector): 4 tiles by 1;
    both compute the same convolution."""
    from tvmopt.schedules import isa

    key = "winograd_conv2d_nhwc:1x32x16x16x32x3x3x1x1"
    with isa.use(isa.AVX512):
        wide = get_task(key)
    with isa.use(isa.AVX2):
        narrow = get_task(key)
    assert wide.space.initial()[:2] == (8, 2) and narrow.space.initial()[:2] == (4, 1)
    _check(narrow, [narrow.space.initial(), wide.space.initial()], seed=3)


def test_builds_of_one_image_keep_the_512_channel_7x7_conv_direct():
    """The Winograd kernel applies to 1x512x7x7x512 (U of 16 MiB), but a build of one image keeps
    that layer on the direct conv (its weights are cold in a network), on AVX2 and on a full-width
    AVX-512 core; a batch, a 256-channel layer, a 14x14 map and a Zen 4 build keep the Winograd
    conv. The key stays a valid task."""
    from tvmopt.schedules import isa
    from tvmopt.schedules.conv2d import ConvShape
    from tvmopt.schedules.winograd import applies, preferred

    def shape(n, c, side=7):
        return ConvShape(n, c, side, side, c, 3, 3, 1, 1, layout="NHWC")

    assert applies(shape(1, 512)) and get_task("winograd_conv2d_nhwc:1x512x7x7x512x3x3x1x1").shape.c == 512
    with isa.use(isa.AVX2):
        assert not preferred(shape(1, 512))
        # a batch, fewer channels, or a larger map (VGG's 14x14: 49 tiles) keep the Winograd conv
        assert preferred(shape(16, 512)) and preferred(shape(1, 256)) and preferred(shape(1, 512, 14))
    with isa.use(isa.AVX512_VNNI):            # Ice Lake: the same (0.38 to 0.56x the direct conv)
        assert not preferred(shape(1, 512)) and preferred(shape(16, 512)) and preferred(shape(1, 256))
    with isa.use(isa.ZEN4):                   # Zen 4 keeps the Winograd conv
        assert preferred(shape(1, 512))


def test_an_avx2_build_runs_the_512_channel_7x7_layer_direct_and_matches_onnxruntime(tmp_path):
    """In a model built for AVX2 (``-mattr=-avx512f`` where the host has AVX-512) the dense
    512-channel 7x7 layer is the direct conv, a ternary one the direct compressed conv, and the
    outputs match onnxruntime."""
    import onnxruntime as ort

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(64, 512, 3, padding=1), nn.ReLU(), nn.Conv2d(512, 512, 3, padding=1),
                          nn.ReLU(), nn.Conv2d(512, 512, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    with torch.no_grad():
        w = model[4].weight
        w.copy_(torch.sign(w) * (w.abs() > 0.5 * w.abs().mean()) * 0.01)       # ternary, one scale
    x = torch.randn(1, 64, 7, 7)
    path = tn.export_onnx(model, x, tmp_path / "deep.onnx", plain=True)
    compiled = compile_model(path, avx2_host(), shipped=False, records=tmp_path / "none")
    kernels = [la.kernel.split(":")[0] for la in compiled.lowered.layers if "x512x7x7x512x3x3" in la.kernel]
    assert kernels == ["conv2d_nhwc", "ternary_conv2d_nhwc"], compiled.lowered.layers
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(compiled(x.numpy()), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
