"""Direct compressed convolutions (issue 18, item 2): a direct conv that decodes its weight in
blocks inside its loops, for every compressed weight format; each knob value against the numpy
reference; the pass emits them with the epilogue (folded batch norm, ReLU, residual add) fused
into the write-back and no im2col."""

import random
import re

import numpy as np
import pytest
import torch
from torch import nn

import tvmopt.nn as tn
from tvmopt.build.compile import compile_model
from tvmopt.ops.compressed_conv2d import FORMATS
from tvmopt.ops.conv2d import conv2d_reference
from tvmopt.ops.task import TASK_ANNOTATION, get_task
from tvmopt.passes import DetectOptions
from tvmopt.schedules import isa

from tests_support import knob_configs, run_config, xnor_nhwc

KEYS = {"binary_conv2d": "binary_conv2d:1x16x10x9x32x3x3x1x1",          # ob 16, odd widths
        "ternary_conv2d": "ternary_conv2d:2x8x8x8x16x3x3x2x1",          # batch 2, stride 2
        "shift_conv2d": "shift_conv2d:1x16x8x7x24x3x3x1x1",             # ob 8
        "nm_conv2d": "nm_conv2d:1x16x8x8x16x3x3x1x1x2x4",
        "hashed_conv2d": "hashed_conv2d:2x8x6x6x16x3x3x1x0x100x2",     # two hashes, no padding
        "codebook_conv2d": "codebook_conv2d:1x8x8x8x16x1x1x1x0x16"}    # 1x1


def test_every_format_has_a_case():
    assert set(KEYS) == set(FORMATS)


@pytest.mark.parametrize("prefix", sorted(KEYS))
def test_every_knob_value_matches_the_numpy_reference(prefix):
    task = get_task(KEYS[prefix])
    inputs = task.make_inputs(np.random.default_rng(0))
    expected = task.reference(inputs)
    for config in knob_configs(task.space, 3, 2):          # each value of each choice knob once
        assert task.mismatch(run_config(task, config, inputs), expected) is None, config


@pytest.mark.parametrize("prefix", sorted(KEYS))
def test_channels_last_kernels_match_the_numpy_reference(prefix):
    """``<format>_conv2d_nhwc``: NHWC in and out, the same space; the start config, each
    decode placement and a random config."""
    key = KEYS[prefix].replace(":", "_nhwc:", 1)
    task = get_task(key)
    s = task.shape
    inputs = task.make_inputs(np.random.default_rng(0))
    assert inputs[0].shape == (s.n, s.h, s.w, s.c)
    expected = task.reference(inputs)
    assert expected.shape == (s.n, s.oh, s.ow, s.o)
    _check_start_decodes_and_a_random_config(task, inputs, expected, seed=5)


def _check_start_decodes_and_a_random_config(task, inputs, expected, seed):
    """The start config, it with each decode placement, and a random config match ``expected``."""
    space = task.space
    decode = [k.name for k in space.knobs].index("decode")
    configs = [space.initial()] + [space.initial()[:decode] + (v,) for v in space.knobs[decode].values]
    configs.append(space.random(random.Random(seed)))
    for config in dict.fromkeys(configs):
        assert task.mismatch(run_config(task, config, inputs), expected) is None, config


@pytest.mark.parametrize("key", ["shift_conv2d_nhwc:4x128x4x4x256x3x3x1x1", "ternary_conv2d:3x128x2x2x256x3x3x1x1",
                                 "conv2d_nhwc:4x64x4x4x64x3x3x1x1"])
def test_a_batch_of_small_maps_starts_with_its_images_inside_the_channel_chunks(key):
    """``batch_at = inner``: each chunk of output channels (and, compressed, its decode, once
    per call) serves every image; the start picks it for small maps and stays exact."""
    task = get_task(key)
    start = task.space.as_dict(task.space.initial())
    assert start["batch_at"] == "inner", start
    if "decode" in start:
        assert start["decode"] == "chunk" and start["parallel"] == 1, start
    inputs = task.make_inputs(np.random.default_rng(2))
    expected = task.reference(inputs)
    for parallel in (1, 2, 3):                 # the chunks alone, or fused with the images
        config = task.space.replaced(task.space.initial(), {"parallel": parallel})
        assert task.mismatch(run_config(task, config, inputs), expected) is None, config
    # larger maps keep each image's tiles together; one image has no such knob
    big = get_task(key.replace("x4x4x", "x16x16x").replace("x2x2x", "x16x16x"))
    assert big.space.as_dict(big.space.initial())["batch_at"] == "outer"
    one = get_task(key.replace(":4x", ":1x").replace(":3x", ":1x"))
    assert "batch_at" not in one.space.as_dict(one.space.initial())
    if "decode" in start:       # a weight that fits L2 is decoded per image, in parallel over images
        small = get_task(key.replace("x128x", "x64x").replace("x256x", "x64x"))
        knobs = small.space.as_dict(small.space.initial())
        assert knobs["parallel"] > 1 or knobs["batch_at"] == "outer", knobs



@pytest.mark.parametrize("key", ["ternary_conv2d_nhwc:1x16x16x16x32x3x3x1x1", "shift_conv2d:1x16x16x16x32x3x3x1x1"])
def test_one_image_with_a_small_weight_decodes_it_in_each_thread(key):
    """One image, a decoded weight within L2 and a map of ``ROWS_MIN_PIXELS``: the start splits
    the cores by rows of pixels, each thread decoding the whole weight first; a smaller map keeps
    the channel split, still decoding per thread; a batch does not. Every placement is exact."""
    from tvmopt.ops.compressed_conv2d import ROWS_MIN_PIXELS

    task = get_task(key)
    start = task.space.as_dict(task.space.initial())
    assert (start["parallel"], start["decode"]) == ("rows", "thread"), start
    assert task.shape.oh * task.shape.ow >= ROWS_MIN_PIXELS
    inputs = task.make_inputs(np.random.default_rng(4))
    expected = task.reference(inputs)
    for decode, parallel in (("thread", "rows"), ("thread", 1), ("thread", 2), ("global", "rows"), ("chunk", 2)):
        config = task.space.replaced(task.space.initial(), {"decode": decode, "parallel": parallel})
        assert task.mismatch(run_config(task, config, inputs), expected) is None, config
    small = get_task(key.replace("x16x16x16x", "x16x8x8x"))
    knobs = small.space.as_dict(small.space.initial())
    assert knobs["parallel"] != "rows" and knobs["decode"] == "thread", knobs
    batch = get_task(key.replace(":1x", ":2x"))
    assert batch.space.as_dict(batch.space.initial())["decode"] != "thread"

@pytest.mark.parametrize("key", ["shift_conv2d_nhwc:2x32x7x7x16x3x3x1x1", "ternary_conv2d:2x32x7x7x16x3x3x1x1"])
def test_a_batch_of_seven_wide_maps_is_computed_eight_wide_and_cropped(key):
    task = get_task(key)
    assert (task.shape.ow, task.shape.owp) == (7, 8)
    inputs = task.make_inputs(np.random.default_rng(4))
    expected = task.reference(inputs)
    for config in (task.space.initial(), task.space.random(random.Random(7))):
        assert task.mismatch(run_config(task, config, inputs), expected) is None, config


@pytest.mark.parametrize("prefix", sorted(KEYS))
def test_the_reference_decodes_the_weight_that_pytorch_convolves(prefix):
    """The kernel arrays' numpy decode, convolved by PyTorch, is the task's reference."""
    task = get_task(KEYS[prefix])
    x, *arrays = task.make_inputs(np.random.default_rng(1))
    w = task.dense_weight(arrays)
    s = task.shape
    want = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), stride=s.stride, padding=s.pad)
    np.testing.assert_allclose(task.reference([x, *arrays]), want.numpy(), rtol=1e-4, atol=1e-4)
    assert np.allclose(conv2d_reference(x, w, s.stride, s.pad), want.numpy(), rtol=1e-4, atol=1e-4)


class _Block(nn.Module):
    """conv-BN-ReLU, conv-BN, + the block's input, ReLU: a ResNet basic block."""

    def __init__(self, c):
        super().__init__()
        self.a, self.bn_a = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.b, self.bn_b = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        y = torch.relu(self.bn_a(self.a(x)))
        return torch.relu(self.bn_b(self.b(y)) + x)


def _net(width: int = 16):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), _Block(width), _Block(width)).eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
    return net


#: binary convolutions channels last: register tables on AVX-512 (ops/perm_tables.py), else the decode conv
BINARY_NHWC = "binary_perm_conv2d" if isa.host().lanes >= 16 else "binary_conv2d"


@pytest.mark.parametrize("kind,prefix,layout", [("shift", "shift_conv2d", "auto"), ("binary", BINARY_NHWC, "auto"),
                                                ("ternary", "ternary_conv2d", "auto"), ("nm", "nm_conv2d", "auto"),
                                                ("shift", "shift_conv2d", "nchw"), ("binary", "binary_conv2d", "nchw")])
def test_batch_norm_relu_and_residual_run_in_the_compressed_kernels_write_back(kind, prefix, layout, tmp_path):
    """Folded batch norm (a per-channel scale on the structured weight), ReLU and the residual
    add: inlined into the compressed kernel; the IR holds no elementwise function and no
    im2col between the kernels."""
    net = tn.compress(_net(), kind, skip=("0",))
    x = torch.randn(2, 3, 12, 12)
    with torch.no_grad():
        want = net(x).numpy()
    path = tn.export_onnx(tn.to_plain(net).eval(), x, tmp_path / "net.onnx", plain=True)
    compiled = compile_model(path, batch=2, options=DetectOptions(kernels="compressed", layout=layout, winograd=False),
                             records=tmp_path / "none", shipped=False)
    suffix = "_nhwc" if layout == "auto" else ""      # auto: channels last (passes/layout.py)
    assert [layer.kernel.split(":")[0] for layer in compiled.lowered.layers] == [f"conv2d{suffix}"] + \
        [prefix + suffix] * 4
    functions = {gv.name_hint: f.script() for gv, f in compiled.mod.functions_items()
                 if type(f).__name__ == "PrimFunc"}
    kernels = {n: s for n, s in functions.items() if TASK_ANNOTATION in s}
    # channels last: one transpose of the image in, one of the result out
    transposes = {n for n in functions if n.startswith("transpose")}
    assert len(transposes) == (2 if suffix else 0)
    assert set(kernels) == set(functions) - transposes, sorted(set(functions) - set(kernels))
    compressed = [n for n in kernels if n.startswith(f"fused_{prefix}")]
    # (identical blocks share their functions) the first conv of a block: BN scale, shift, ReLU;
    # the second: BN scale, shift, the residual add, ReLU (2:4 keeps the scale in its values)
    assert sorted(len(re.findall(r"_add", n)) for n in compressed) == [1, 2]
    assert all(("_multiply_" in n) == (kind != "nm") and n.endswith("_relu") for n in compressed), compressed
    for name, text in kernels.items():
        assert not re.findall(r'T\.sblock\("(T_multiply|T_add|relu)\w*"', text), name
    np.testing.assert_allclose(compiled(x.numpy()), want, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(want).max())))


# ---- binarized activations: the XNOR conv ----

XNOR_KEYS = ["xnor_conv2d:1x40x9x10x16x3x3x1x1",       # a partial word (40 channels), padding at every border
             "xnor_conv2d:2x96x8x8x24x3x3x2x1",        # batch 2, two words (one partial), stride 2, ob 8
             "xnor_conv2d:1x32x6x6x16x1x1x1x0",        # 1x1, one word
             "xnor_conv2d:1x64x4x5x16x5x5x1x2",        # no interior: every position its own border class
             "xnor_conv2d_nhwc:1x40x9x10x16x3x3x1x1",  # channels last in and out
             "xnor_conv2d_nhwc:2x96x8x8x24x3x3x2x1",
             "xnor_conv2d_nhwc:1x12x7x9x16x3x3x1x1",   # 16-bit words (up to 16 channels)
             "xnor_conv2d_nhwc:2x64x7x7x32x3x3x1x1",   # a batch of 7-wide maps: the dense conv's shape pads it, words do not
             "xnor_conv2d:1x64x13x13x16x3x3x1x1"]      # a prime width: the same


#: the keys whose every knob value is checked (one layout each, a 1x1, a batch with ``batch_at``);
#: the other shapes check their start and random configs (their own code paths are in the shape:
#: partial and 16-bit words, border classes, padded widths), which keeps this test's share of
#: ``make test`` to a minute on a 2-core AVX2 machine
XNOR_EVERY_KNOB = {"xnor_conv2d:1x40x9x10x16x3x3x1x1", "xnor_conv2d_nhwc:1x40x9x10x16x3x3x1x1",
                   "xnor_conv2d:1x32x6x6x16x1x1x1x0", "xnor_conv2d_nhwc:2x64x7x7x32x3x3x1x1"}


#: the byte-count kernel (AVX2): 32- and 16-lane blocks, chunks of 2 and 3 bytes (3x3), of 8 (1x1),
#: of 1 (40 channels: 5 bytes, a prime), a batch, stride 2, a 5x5 window with no interior
XNOR8_KEYS = ["xnor8_conv2d_nhwc:1x40x9x10x16x3x3x1x1", "xnor8_conv2d_nhwc:2x48x8x8x32x3x3x2x1",
              "xnor8_conv2d_nhwc:1x64x6x6x64x1x1x1x0", "xnor8_conv2d_nhwc:1x64x4x5x16x5x5x1x2",
              "xnor8_conv2d_nhwc:1x128x7x7x32x3x3x1x1",
              "xnor8_conv2d_nhwc:1x7296x3x3x16x3x3x1x1",     # 65,664 products per output: int32 sums
              "xnor8_dense:6x64x100", "xnor8_dense:1x32x64"]  # the dense view: rows as a column (a partial byte)
XNOR_EVERY_KNOB |= {"xnor8_conv2d_nhwc:1x40x9x10x16x3x3x1x1", "xnor8_conv2d_nhwc:1x128x7x7x32x3x3x1x1"}


@pytest.mark.parametrize("key", XNOR_KEYS + XNOR8_KEYS)
def test_xnor_conv_is_exact_for_every_knob_value(key):
    task = get_task(key)
    space = task.space
    configs = [space.initial()]
    for i, knob in enumerate(space.knobs if key in XNOR_EVERY_KNOB else ()):
        for value in getattr(knob, "values", ()):
            config = list(space.initial())
            config[i] = value
            configs.append(tuple(config))
    rng = random.Random(5)
    configs += [space.random(rng) for _ in range(2)]
    inputs = task.make_inputs(np.random.default_rng(0))
    expected = task.reference(inputs)
    for config in dict.fromkeys(configs):
        np.testing.assert_array_equal(run_config(task, config, inputs), expected, err_msg=str(config))


def test_xnor_weight_words_round_trip_and_match_pytorch():
    from tvmopt.ops.xnor_conv2d import pack_weight, unpack_weight

    rng = np.random.default_rng(2)
    signs = rng.choice([-1.0, 1.0], size=(16, 40, 3, 3)).astype(np.float32)
    packed = pack_weight(signs, 8)
    assert packed.shape == (2, 1, 3, 3, 8) and packed.dtype == np.uint64
    np.testing.assert_array_equal(unpack_weight(packed, 40), signs)
    narrow = pack_weight(signs[:, :24], 8, word=32)              # layers of up to 32 channels: 32-bit words
    assert narrow.shape == (2, 1, 3, 3, 8) and narrow.dtype == np.uint32
    np.testing.assert_array_equal(unpack_weight(narrow, 24), signs[:, :24])
    for word, channels in ((16, 12), (8, 5)):
        small = pack_weight(signs[:, :channels], 8, word=word)
        assert small.dtype == np.dtype(f"uint{word}")
        np.testing.assert_array_equal(unpack_weight(small, channels), signs[:, :channels])
    task = get_task("xnor_conv2d:1x40x9x10x16x3x3x1x1")
    x = rng.uniform(-1, 1, size=(1, 40, 9, 10)).astype(np.float32)
    sign_x = torch.from_numpy(np.where(x >= 0, 1.0, -1.0).astype(np.float32))
    want = torch.nn.functional.conv2d(sign_x, torch.from_numpy(signs), padding=1).numpy()     # pads with 0
    np.testing.assert_array_equal(task.reference([x, pack_weight(signs, task.shape.ob)]), want)


@pytest.mark.parametrize("dims", [(9, 10, 1, 1), (8, 8, 2, 1), (4, 5, 1, 2), (11, 11, 2, 0), (13, 13, 3, 3)])
def test_xnor_border_table_counts_the_weight_bits_of_taps_outside_the_image(dims):
    """What the kernel subtracts at each output position (it reads zero words outside the
    image): the set bits of the taps that fall outside, from the table of border classes,
    checked position by position against a direct count."""
    from tvmopt.ops.xnor_conv2d import border_classes, border_table, pack_weight, tap_counts

    h, w, stride, pad = dims
    k = 5 if pad >= 2 else 3
    rng = np.random.default_rng(4)
    signs = rng.choice([-1.0, 1.0], size=(16, 70, k, k)).astype(np.float32)
    counts = tap_counts(pack_weight(signs, 8))
    np.testing.assert_array_equal(counts, (signs > 0).sum(axis=1).transpose(1, 2, 0))
    shape = get_task(f"xnor_conv2d:1x70x{h}x{w}x16x{k}x{k}x{stride}x{pad}").shape
    table = border_table(counts, shape)

    def cls(pos, classes):
        first, last, count = classes
        return pos if count == first else pos if pos < first else pos - last + first + 1 if pos >= last else first

    rows, cols = (border_classes(shape.oh, k, h, stride, pad), border_classes(shape.ow, k, w, stride, pad))
    for y in range(shape.oh):
        for x in range(shape.ow):
            outside = np.array([[not (0 <= y * stride + r - pad < h and 0 <= x * stride + q - pad < w)
                                 for q in range(k)] for r in range(k)])
            want = (signs > 0)[:, :, outside].sum(axis=(1, 2))
            np.testing.assert_array_equal(table[cls(y, rows), cls(x, cols)], want, err_msg=f"{(y, x)}")


def test_binarized_resnet_blocks_run_xnor_convs_with_fused_epilogues(tmp_path):
    """XNOR-Net style: binarized inputs and weights in the blocks (first conv fp32); the plain
    export's ``where(x >= 0, 1, -1)`` is taken into the kernel, α and batch norm into its write-back."""
    net = tn.compress(_net(32), "binary", skip=("0",), binarize_input=True)     # 32 channels: AVX2's byte kernel takes them
    x = torch.randn(2, 3, 12, 12)
    with torch.no_grad():
        want = net(x).numpy()
    for plain in (True, False):
        path = tn.export_onnx(net if not plain else tn.to_plain(net).eval(), x, tmp_path / f"b{plain}.onnx",
                              plain=plain)
        compiled = compile_model(path, batch=2, records=tmp_path / "none", shipped=False)
        # both exports run channels last (xnor_nhwc(), the binarizing where carried through
        # the layout: one transpose in, one out, none between layers); tvmopt.nn's nodes are
        # decoded to the same plain ops first (passes/placeholders.py)
        assert [layer.kernel.split(":")[0] for layer in compiled.lowered.layers] == \
            ["conv2d_nhwc"] + [xnor_nhwc()] * 4
        assert compiled.lowered.mod.script(show_meta=False).count("R.permute_dims(") == 2
        assert all("less arithmetic" in layer.choice for layer in compiled.lowered.layers[1:])
        functions = [gv.name_hint for gv, f in compiled.mod.functions_items() if type(f).__name__ == "PrimFunc"]
        assert not [n for n in functions if "where" in n], functions       # no binarizing pass left
        np.testing.assert_allclose(compiled(x.numpy()), want, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(want).max())))


def test_binarized_vgg_layers_pack_whole_words_of_signs_in_the_kernel(tmp_path):
    """64 and 128 channels between max poolings (VGG): each 64-bit word of input signs is packed by a
    tensor intrinsic (8 compares' sign masks at a time; schedules/xnor8_conv2d.py), written with
    int32 indices, so the pass narrows the fused function first (it failed to build, int32 vs
    int64, before ``XnorConv2dTask.tensorized`` said so); the result matches PyTorch."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(128, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU()).eval()
    net = tn.compress(net, "binary", skip=("0",), binarize_input=True)
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        want = net(x).numpy()
    path = tn.export_onnx(tn.to_plain(net).eval(), x, tmp_path / "vgg.onnx", plain=True)
    compiled = compile_model(path, records=tmp_path / "none", shipped=False)
    kernels = [layer.kernel.split(":")[0] for layer in compiled.lowered.layers]
    assert kernels == ["conv2d_nhwc"] + [xnor_nhwc()] * 2, kernels
    if xnor_nhwc() == "xnor_conv2d_nhwc":
        texts = [f.script() for _, f in compiled.mod.functions_items() if type(f).__name__ == "PrimFunc"]
        assert sum("tvmopt_pack_signs_64" in t or "movmsk" in t for t in texts) >= 2
    np.testing.assert_allclose(compiled(x.numpy()), want, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(want).max())))


def test_plain_fastfood_layers_on_token_sequences_and_past_the_matrix_limit_are_recovered(tmp_path):
    """A plain export's butterflies over [batch, tokens, features] (an encoder's MLP), and a
    layer too large to measure as a matrix (2048 x 4096 > MAX_DENSE_ELEMENTS): both become the
    Fastfood kernel again, checked against its reference."""
    from tvmopt.passes.linear import MAX_DENSE_ELEMENTS

    torch.manual_seed(0)
    layer = tn.Fastfood(2048, 4096).eval()
    assert 2048 * 4096 > MAX_DENSE_ELEMENTS
    x = torch.randn(1, 3, 2048)
    with torch.no_grad():
        want = layer(x).numpy()
    path = tn.export_onnx(layer, x, tmp_path / "ff.onnx", plain=True)
    compiled = compile_model(path, records=tmp_path / "none", shipped=False)
    assert [la.kernel for la in compiled.lowered.layers] == ["fastfood:3x2048x4096"]
    np.testing.assert_allclose(compiled(x.numpy()), want, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(want).max())))


def test_byte_count_xnor_spaces_are_tuned_by_the_tuner_loop_and_recorded(tmp_path):
    """The AVX2 byte-count kernels' spaces through the tuner loop and the measurer (which checks
    every result against the numpy reference), into the records, and a build reads them back."""
    from tvmopt.measure.local import LocalMeasurer
    from tvmopt.records.store import RecordCache
    from tvmopt.target import parse_target
    from tvmopt.tune.loop import tune_task

    target = parse_target("llvm")
    with LocalMeasurer(target) as measurer:
        for key, tuner in (("xnor8_conv2d_nhwc:1x64x6x6x32x3x3x1x1", "gbfs"), ("xnor8_dense:8x64x128", "random")):
            result = tune_task(key, target, tuner=tuner, trials=3, records=tmp_path, measurer=measurer,
                               progress=False, remeasure=0)
            assert result.measured == 3 and result.best_config is not None, key
            best = RecordCache(tmp_path).best(key, target.key)
            assert best is not None and get_task(key).space.contains(tuple(best.config)), key


@pytest.mark.parametrize("key", ["ternary_conv2d_nhwc:2x64x13x13x48x1x1x1x0", "shift_conv2d_nhwc:1x128x27x27x32x1x1x1x0",
                                 "binary_conv2d_nhwc:1x64x13x13x16x1x1x1x0"])
def test_pointwise_compressed_convs_on_starved_maps_compute_one_flat_row(key):
    """A channels-last 1x1 compressed conv whose map starves the register tile (13x13, 27x27)
    computes its pixels as one row, as the dense conv does (``ConvShape.flat``): the start, each
    decode placement and a random config match the numpy reference."""
    task = get_task(key)
    assert task.shape.flat and task.shape.flatten
    inputs = task.make_inputs(np.random.default_rng(0))
    _check_start_decodes_and_a_random_config(task, inputs, task.reference(inputs), seed=3)
