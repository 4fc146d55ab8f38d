"""Never slower than dense (issue 18): a layer runs its compressed kernel only where the records,
a measurement or the prediction say it is at least as fast as the dense kernel of the same layer;
``inspect`` shows the choice and why; a user can force either."""

import json
import re

import numpy as np
import pytest
import torch
from torch import nn

import tvmopt.nn as tn
from tvmopt.build.compile import compile_model
from tvmopt.cli.main import main
from tvmopt.passes import DetectOptions
from tests_support import avx2_host
from tvmopt.passes.choose import choose, conv_row_tables
from tvmopt.schedules import isa
from tvmopt.records.store import Record, RecordCache
from tvmopt.target import parse_target


def test_the_policy_in_each_case():
    """The predictions of the AVX-512 sweep (Zen 5); the AVX2 exceptions in the next test."""
    from tvmopt.schedules import isa

    with isa.use(isa.AVX512):
        _policy_cases()


def test_2_4_is_predicted_dense_where_the_streaming_dense_start_wins():
    from tvmopt.schedules import isa

    for chosen in (isa.AVX2, isa.AVX512):
        with isa.use(chosen):
            picked = choose("auto", "nm_decode_dense", "k", "d", 16, 4096 * 4096, False)
            assert not picked.compressed and "streams the weight" in picked.why, (chosen.name, picked.why)
            # one row: the weight is streamed either way and 2:4 halves it
            assert choose("auto", "nm_decode_dense", "k", "d", 1, 4096 * 4096, False).compressed
            assert choose("auto", "binary_dense", "k", "d", 16, 4096 * 4096, False).compressed


def test_2_4_layers_pick_inputs_in_registers_at_any_row_count_where_avx512_is_double_pumped():
    """Full-width AVX-512 keeps ``nm_perm_dense`` to 32 rows (dense is as fast beyond); Zen 4's
    double-pumped FMAs make the halved FMA count pay at every row count; AVX2 has no permute kernel."""
    from tvmopt.passes.choose import nm_register_select

    two_four = {"n": 2, "m": 4}
    for rows, want in [(1, {"avx512": True, "zen4": True}), (32, {"avx512": True, "zen4": True}),
                       (128, {"avx512": False, "zen4": True}), (2048, {"avx512": False, "zen4": True})]:
        for name, chosen in (("avx512", isa.AVX512_VNNI), ("zen4", isa.ZEN4)):
            with isa.use(chosen):
                got = nm_register_select("nm_decode_dense", rows, 3072, 768, two_four)
            assert (got == "nm_perm_dense") == want[name], (rows, name, got)
    with isa.use(isa.ZEN4):
        assert nm_register_select("nm_decode_dense", 128, 3072, 768, {"n": 1, "m": 4}) is None   # 1:4
        assert nm_register_select("binary_dense", 128, 3072, 768, two_four) is None
    with isa.use(isa.AVX2):
        assert nm_register_select("nm_decode_dense", 1, 3072, 768, two_four) is None


def test_shift_convs_of_a_batch_run_decoded_at_many_pixels_on_avx512():
    """Zen 4: a shift conv of a batch from 1024 output pixels ties the dense one (ResNet-18's
    strided 1x1 shortcuts and ResNet-20's strided 3x3 layers at batch 16), not at 784 nor for one
    image; full-width AVX-512 (Ice Lake) takes a batch's layers from 2^24 multiply-adds (the
    shortcuts: 0.97 to 1.03x the dense conv; ResNet-20's 19M layers 0.96 to 1.03x), not one
    image's; a tuned dense conv without a record for the decoded one stays dense."""
    def pick(key, rows, weights, cost=None):
        dense = "conv2d_nhwc:" + key.split(":")[1]
        return choose("auto", "shift_conv2d", key, dense, rows, weights, conv=True, cost=cost).compressed

    one = "shift_conv2d_nhwc:16x128x28x28x256x1x1x2x0"
    with isa.use(isa.ZEN4):
        assert pick(one, 3136, 32768)
        assert pick("shift_conv2d_nhwc:16x32x16x16x64x3x3x2x1", 1024, 18432)
        assert not pick("shift_conv2d_nhwc:16x256x14x14x512x1x1x2x0", 784, 131072)
        assert not pick("shift_conv2d_nhwc:1x64x55x55x16x1x1x1x0", 3025, 1024)        # one image (SqueezeNet)
        assert not pick(one, 3136, 32768, cost={"conv2d_nhwc:16x128x28x28x256x1x1x2x0": 1.0}.get)
    with isa.use(isa.AVX512_VNNI):
        assert pick(one, 3136, 32768) and pick("shift_conv2d_nhwc:16x256x14x14x512x1x1x2x0", 784, 131072)
        assert pick("shift_conv2d_nhwc:16x32x16x16x64x3x3x2x1", 1024, 18432)            # ResNet-20: 19M
        assert not pick("shift_conv2d_nhwc:4x32x16x16x64x3x3x2x1", 256, 18432)          # 4.7M
        assert not pick("shift_conv2d_nhwc:1x256x14x14x512x1x1x2x0", 49, 131072)        # one image
        assert not pick(one, 3136, 32768, cost={"conv2d_nhwc:16x128x28x28x256x1x1x2x0": 1.0}.get)


def test_direct_compressed_convs_where_they_amortize_the_decode_or_the_dense_weight_outgrows_l2():
    """conv_kernels (NHWC on AVX2, NCHW on Zen 5): binary lost at 8x8 (ResNet-20's last stage),
    tied from 16x16, and won at 7x7 on a 2.4M-weight layer; hashed lost there."""
    def compressed(family, rows, weights):
        with isa.use(isa.AVX2):                 # the AVX2 rules (AVX-512's: test_the_policy_in_each_case)
            return choose("auto", family, "k", "d", rows, weights, conv=True).compressed

    assert not compressed("binary_conv2d", 64, 64 * 64 * 9)                 # 1x64x8x8x64
    assert compressed("binary_conv2d", 1024, 64 * 64 * 9)                   # the same layer at batch 16
    assert compressed("ternary_conv2d", 256, 32 * 32 * 9)                   # 1x32x16x16x32
    assert compressed("binary_conv2d", 49, 512 * 512 * 9)                   # 1x512x7x7x512
    assert compressed("nm_conv2d", 49, 512 * 512 * 9)
    assert not compressed("nm_conv2d", 4, 512 * 512 * 9)                   # VGG's 1x512x2x2x512
    assert not compressed("nm_conv2d", 64, 256 * 256 * 9)                  # 1x256x8x8x256
    assert compressed("shift_conv2d", 4, 512 * 512 * 9)                    # 6.4x smaller: won in VGG
    assert not compressed("hashed_conv2d", 49, 512 * 512 * 9)
    assert not compressed("shift_conv2d", 64, 64 * 64 * 9)


def test_on_avx2_a_tuned_dense_conv_stays_dense_unless_its_weight_outgrows_l2():
    """The AVX2 pixel rule was measured start against start: against a dense conv that a record
    tuned (a Zen 3's shipped SqueezeNet records: the 1x64x55x55x16 squeeze conv 2.5x its start,
    the shift export 0.78x its dense build) the layer stays dense; the weight rule (a dense
    weight larger than L2) holds either way."""
    def compressed(rows, weights, cost=None):
        with isa.use(isa.AVX2):
            return choose("auto", "shift_conv2d", "k", "d", rows, weights, conv=True, cost=cost).compressed

    assert compressed(3025, 64 * 16)
    tuned = {"d": 4e-5}.get
    assert not compressed(3025, 64 * 16, tuned)
    assert compressed(49, 512 * 512 * 9, tuned)
    assert compressed(3025, 64 * 16, {"d": 4e-5, "k": 3e-5}.get)        # both recorded: the faster


def _policy_cases():
    ternary, dense = "ternary_dense:1x4096x4096", "dense:1x4096x4096"
    costs = {ternary: 1e-3, dense: 2e-3}
    assert choose("compressed", "nm_dense", "k", "d", 64, 100, conv=True).compressed
    assert not choose("dense", "xnor_dense", "k", "d", 1, 1 << 24, conv=False).compressed
    assert choose("auto", "xnor_dense", "k", "d", 64, 100, conv=True).compressed            # less arithmetic
    assert choose("auto", "fastfood", "k", "d", 64, 100, conv=False).compressed
    # a small transform at few rows: dense (its product stays in L2); records decide where both have one
    assert not choose("auto", "fastfood", "k", "d", 4, 256 * 256, conv=False).compressed
    assert choose("auto", "hadamard", "k", "d", 1, 1024 * 1024, conv=False).compressed
    assert choose("auto", "fastfood", "f", "d", 1, 256 * 256, False, {"f": 1e-6, "d": 2e-6}.get).compressed
    picked = choose("auto", "ternary_dense", ternary, dense, 1, 4096 * 4096, False, costs.get)
    assert picked.compressed and "records: 2.00x faster" in picked.why
    picked = choose("auto", "ternary_dense", ternary, dense, 1, 4096 * 4096, False, {ternary: 3e-3, dense: 1e-3}.get)
    assert not picked.compressed and "dense 3.00x faster" in picked.why
    # no records: the prediction (weights past the caches win; convolutions and 2:4 go dense)
    assert choose("auto", "ternary_dense", ternary, dense, 1, 4096 * 4096, False, {}.get).compressed
    assert not choose("auto", "ternary_dense", "k", "d", 1, 256 * 256, False).compressed
    assert choose("auto", "ternary_dense", "k", "dense:64x4096x4096", 64, 4096 * 4096, False).compressed
    assert not choose("auto", "ternary_dense", "k", "d", 256, 4096 * 4096, False).compressed
    assert not choose("auto", "nm_dense", "k", "d", 1, 4096 * 4096, False).compressed         # gathers: never
    assert choose("auto", "nm_decode_dense", "k", "d", 4, 4096 * 4096, False).compressed
    assert not choose("auto", "nm_decode_dense", "k", "d", 4, 1024 * 1024, False).compressed
    # from 8 rows a weight tile is decoded once for all rows: smaller weights win
    assert choose("auto", "ternary_dense", "k", "d", 16, 1024 * 1024, False).compressed
    assert not choose("auto", "ternary_dense", "k", "d", 1, 1024 * 1024, False).compressed
    assert not choose("auto", "shift_dense", "k", "d", 16, 256 * 256, False).compressed
    assert choose("auto", "codebook_dense", "k", "d", 16, 4096 * 4096, False).compressed
    assert not choose("auto", "codebook_dense", "k", "d", 16, 1024 * 1024, False).compressed
    assert not choose("auto", "hashed_dense", "k", "d", 16, 4096 * 4096, False).compressed
    # block hashing: one hash per 16 weights wins while the weight outgrows the caches and the
    # table of values does not, at few rows
    big, small = 4096 * 4096, 768 * 3072
    def hb(rows, weights, rate):
        return choose("auto", "hashed_block_dense", f"hashed_block_dense:{rows}x4096x4096x{weights // rate}x1x16",
                      "d", rows, weights, False).compressed
    assert hb(1, big, 64) and hb(4, big, 32) and hb(2, big, 32)
    assert not hb(1, big, 8)                    # 8 MiB of values: read from memory like the dense weight
    assert not hb(1, small, 64) and not hb(8, big, 64) and not hb(128, big, 64)
    with isa.use(isa.AVX2):           # AVX2 code decodes 16 lanes in two registers: fewer rows
        assert hb(2, big, 64)
        assert not hb(4, big, 64)
    # from 32 rows the dense kernel reads its weight in panels: the decoded kernels only win on
    # weights far past the caches at few rows (the encoder's 128 tokens go dense)
    picked = choose("auto", "binary_dense", "k", "dense:128x3072x768", 128, 768 * 3072, False)
    assert not picked.compressed and "panels" in picked.why
    assert choose("auto", "binary_dense", "k", "dense:32x4096x4096", 32, 4096 * 4096, False).compressed
    assert not choose("auto", "shift_dense", "k", "dense:128x4096x4096", 128, 4096 * 4096, False).compressed
    assert choose("auto", "binary_dense", "k", "dense:128x1000x3072", 128, 1000 * 3072, False).compressed  # no panels
    assert not choose("auto", "binary_dense", "k", "d", 2048, 768 * 3072, False).compressed
    # AVX2: from 8 rows the dense kernel streams its panels, and shift's decode loses to it (a
    # real Zen 3 at 16 rows too); ternary's does not, and shift keeps its kernel below 8 rows
    with isa.use(isa.AVX2):
        for rows in (8, 16):
            picked = choose("auto", "shift_dense", "k", f"dense:{rows}x4096x4096", rows, 4096 * 4096, False)
            assert not picked.compressed and "streams its panels" in picked.why
        assert choose("auto", "ternary_dense", "k", "dense:8x4096x4096", 8, 4096 * 4096, False).compressed
        assert choose("auto", "shift_dense", "k", "dense:4x4096x4096", 4, 4096 * 4096, False).compressed
    with isa.use(isa.AVX512):
        assert choose("auto", "shift_dense", "k", "dense:8x4096x4096", 8, 4096 * 4096, False).compressed
    assert not choose("auto", "nm_decode_dense", "k", "d", 128, 768 * 3072, False).compressed
    # direct compressed convolutions on AVX2: at the dense conv's speed (hashed only while small)
    with isa.use(isa.AVX2):
        assert choose("auto", "shift_conv2d", "k", "d", 3136, 64 * 64 * 9, True).compressed
        assert choose("auto", "hashed_conv2d", "k", "d", 3136, 64 * 64 * 9, True).compressed
        assert not choose("auto", "hashed_conv2d", "k", "d", 49, 512 * 512 * 9, True).compressed
    # on AVX-512: at any pixel count from 2M binary weights; from 1M ternary or shift weights and
    # 49 output pixels; from 256K weights shared by 196 output pixels; and where the compressed
    # conv's start decodes its small weight in each thread (one image), from 4M multiply-adds;
    # in a batch from 4096 output pixels on 32K weights: never ResNet-20's layers
    with isa.use(isa.AVX512):
        def by_thread(family, dims, rows, weights):
            return choose("auto", family, f"{family}_nhwc:{dims}", f"conv2d_nhwc:{dims}", rows, weights, True)

        picked = by_thread("shift_conv2d", "1x64x56x56x64x3x3x1x1", 3136, 64 * 64 * 9)       # ResNet-18's first stage
        assert picked.compressed and "each thread decodes" in picked.why
        assert by_thread("shift_conv2d", "1x128x28x28x256x1x1x2x0", 196, 128 * 256).compressed   # a 1x1 shortcut
        assert by_thread("ternary_conv2d", "1x128x28x28x128x3x3x1x1", 784, 128 * 128 * 9).compressed
        assert not by_thread("ternary_conv2d", "1x32x16x16x32x3x3x1x1", 256, 32 * 32 * 9).compressed   # ResNet-20
        # a batch: from 4096 output pixels per decoded weight of 32K weights and more
        picked = by_thread("ternary_conv2d", "16x64x56x56x64x3x3x1x1", 16 * 3136, 64 * 64 * 9)
        assert picked.compressed and "share each decoded weight" in picked.why
        # ... or from 2^24 multiply-adds (ResNet-20's layers at batch 16: 0.96 to 1.03x on the Ice Lake Xeon)
        picked = by_thread("ternary_conv2d", "16x32x16x16x32x3x3x1x1", 16 * 256, 32 * 32 * 9)
        assert picked.compressed and "a batch decodes once" in picked.why
        assert by_thread("shift_conv2d", "16x64x8x8x64x3x3x1x1", 16 * 64, 64 * 64 * 9).compressed
        assert not by_thread("shift_conv2d", "4x64x8x8x64x3x3x1x1", 4 * 64, 64 * 64 * 9).compressed      # 9.4M
        assert not choose("auto", "hashed_conv2d", "k", "d", 3136, 64 * 64 * 9, True).compressed
        assert not choose("auto", "binary_conv2d", "k", "d", 16 * 1024, 16 * 16 * 9, True).compressed
        assert choose("auto", "binary_conv2d", "k", "d", 4, 512 * 512 * 9, True).compressed
        assert not choose("auto", "ternary_conv2d", "k", "d", 4, 512 * 512 * 9, True).compressed  # VGG's 2x2
        assert choose("auto", "shift_conv2d", "k", "d", 49, 512 * 512 * 9, True).compressed       # 1x512x7x7x512
        # VGG's 4x4 on a full-width core (its dense conv reads 9 MiB cold for 16 pixels); not fewer
        # pixels (the 2x2 layers run im2col + the linear kernel: test_few_pixel_convs...)
        assert choose("auto", "shift_conv2d", "k", "d", 16, 512 * 512 * 9, True).compressed
        assert not choose("auto", "shift_conv2d", "k", "d", 9, 512 * 512 * 9, True).compressed
        assert choose("auto", "shift_conv2d", "k", "d", 784, 512 * 512 * 9, True).compressed
        assert choose("auto", "ternary_conv2d", "k", "d", 196, 256 * 256 * 9, True).compressed    # 1x256x14x14x256
        assert not choose("auto", "binary_conv2d", "k", "d", 196, 256 * 256 * 9, True).compressed  # (NCHW: 0.86x)
        assert not choose("auto", "ternary_conv2d", "k", "d", 64, 256 * 256 * 9, True).compressed  # VGG's 8x8
        assert choose("auto", "ternary_conv2d", "k", "d", 1024, 128 * 256 * 9, True).compressed
        assert conv_row_tables("binary_conv2d", 64, 256 * 256 * 9) is None       # no conv row tables on AVX-512
    with isa.use(isa.AVX2):
        assert conv_row_tables("binary_conv2d", 64, 256 * 256 * 9) == "binary_rowlut_conv2d"
    assert not choose("auto", "shift_dense", "k", "d", 3136, 4096 * 4096, True).compressed
    with pytest.raises(ValueError, match="kernel policy"):
        choose("fastest", "nm_dense", "k", "d", 1, 1, False)


#: a ternary layer of 48 outputs runs register tables on AVX-512 (ops/perm_tables.py), else the decode kernel
TERNARY = "ternary_perm_dense" if isa.host().lanes >= 16 else "ternary_dense"


def _ternary_mlp(tmp_path, plain):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), tn.TernaryLinear(64, 48), nn.ReLU(),
                          tn.TernaryLinear(48, 10)).eval()
    x = torch.randn(2, 32)
    return model, x, tn.export_onnx(model, x, tmp_path / f"t{int(plain)}.onnx", plain=plain)


@pytest.mark.parametrize("plain", [False, True], ids=["ai.tvmopt", "plain"])
def test_a_layer_where_dense_wins_stays_dense_and_the_records_can_say_otherwise(tmp_path, plain):
    model, x, path = _ternary_mlp(tmp_path, plain)
    with torch.no_grad():
        ref = model(x).numpy()
    auto = compile_model(path, batch=2, records=tmp_path / "empty", shipped=False)
    kernels = [layer.kernel.split(":")[0] for layer in auto.lowered.layers]
    assert kernels == ["dense", "dense", "dense"]            # small ternary layers: predicted dense
    chosen = [layer for layer in auto.lowered.layers if layer.choice]
    assert [layer.structure for layer in chosen] == ["ternary", "ternary"]
    assert all(layer.choice.startswith("dense (predicted") for layer in chosen)
    np.testing.assert_allclose(auto(x.numpy()), ref, rtol=1e-4, atol=1e-5)

    # records where the compressed kernel of the first ternary layer is faster: it is chosen
    records = tmp_path / "records"
    target = parse_target("llvm")
    from tvmopt.ops.task import get_task

    fast, slow = f"{TERNARY}:2x48x64", "dense:2x48x64"
    RecordCache(records).append([Record(fast, target.key, get_task(fast).space.initial(), (1e-6,)),
                                 Record(slow, target.key, get_task(slow).space.initial(), (4e-6,))])
    compiled = compile_model(path, batch=2, records=records, shipped=False)
    assert [layer.kernel for layer in compiled.lowered.layers][1] == fast
    assert "records: 4.00x faster than dense" in compiled.lowered.layers[1].choice
    np.testing.assert_allclose(compiled(x.numpy()), ref, rtol=1e-4, atol=1e-5)

    forced = compile_model(path, batch=2, records=records, shipped=False, options=DetectOptions(kernels="compressed", winograd=False))
    assert [layer.kernel.split(":")[0] for layer in forced.lowered.layers] == ["dense", TERNARY, "ternary_dense"]
    np.testing.assert_allclose(forced(x.numpy()), ref, rtol=1e-4, atol=1e-5)


#: the direct convs' rules (3x3 stride-1 layers channels last otherwise run Winograd: test_winograd.py)
DIRECT = DetectOptions(winograd=False)


def test_compressed_convolutions_run_direct_unless_dense_is_faster_or_forced(tmp_path):
    """The AVX2 rules (AVX-512 needs larger weights: test_the_policy_in_each_case)."""
    torch.manual_seed(1)
    avx2 = avx2_host()
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), tn.ShiftConv2d(8, 16, 3, padding=1)).eval()
    x = torch.randn(1, 3, 16, 16)          # 256 output pixels per decode: predicted at dense speed
    path = tn.export_onnx(model, x, tmp_path / "c.onnx", plain=True)
    with torch.no_grad():
        ref = model(x).numpy()
    auto = compile_model(path, avx2, records=tmp_path / "none", shipped=False, options=DIRECT)
    # a plain export of dense and shift convs runs channels last (passes/layout.py)
    assert [layer.kernel.split(":")[0] for layer in auto.lowered.layers] == ["conv2d_nhwc", "shift_conv2d_nhwc"]
    assert auto.lowered.layers[1].structure.startswith("shift") and "dense conv's speed" in auto.lowered.layers[1].choice
    assert auto.lowered.layers[1].compact_bytes * 5 < auto.lowered.layers[1].dense_bytes
    # records where the dense conv of the layer is faster: the layer stays dense
    from tvmopt.ops.task import get_task

    target = avx2
    compressed, dense = auto.lowered.layers[1].kernel, "conv2d_nhwc:1x8x16x16x16x3x3x1x1"
    records = tmp_path / "records"
    RecordCache(records).append([Record(compressed, target.key, get_task(compressed).space.initial(), (9e-6,)),
                                   Record(dense, target.key, get_task(dense).space.initial(), (3e-6,))])
    slower = compile_model(path, avx2, records=records, shipped=False, options=DIRECT)
    assert slower.lowered.layers[1].kernel == dense and "dense 3.00x faster" in slower.lowered.layers[1].choice
    small = tn.export_onnx(model, torch.randn(1, 3, 9, 9), tmp_path / "small.onnx", plain=True)
    few = compile_model(small, avx2, records=tmp_path / "none", shipped=False, options=DIRECT)      # 81 pixels: the decode would cost
    assert few.lowered.layers[1].kernel.startswith("conv2d_nhwc:") and "81 output pixels" in few.lowered.layers[1].choice
    forced = compile_model(path, avx2, records=tmp_path / "none", shipped=False, options=DetectOptions(kernels="dense", winograd=False))
    assert [layer.kernel.split(":")[0] for layer in forced.lowered.layers] == ["conv2d_nhwc", "conv2d_nhwc"]
    for compiled in (auto, slower, forced):
        np.testing.assert_allclose(compiled(x.numpy()), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_a_layer_of_a_tiny_share_of_the_network_stays_compressed_where_dense_was_predicted(tmp_path):
    """``choose.small_layer``: a predicted dense choice flips to the compressed kernel where the
    layer holds at most 0.5% of the network's multiply-adds; not a choice that records or a
    measurement made, not a forced policy, not a larger share. In a model: a wide dense conv
    and a small shift conv after an 8x8 pooling (0.33% of the multiply-adds) that the AVX-512
    rules alone keep dense; the build stores its codes and matches PyTorch."""
    from tvmopt.passes.choose import Choice, small_layer

    predicted = Choice(False, "predicted: on AVX-512 the dense conv wins at 49 output pixels x 131,072 weights")
    flipped = small_layer(predicted, "auto", 35, 10_000)
    assert flipped.compressed and "0.35% of the network's multiply-adds" in flipped.why
    assert not small_layer(predicted, "auto", 60, 10_000).compressed                    # 0.6%
    assert small_layer(Choice(False, "records: dense 1.20x faster"), "auto", 1, 10_000).why.startswith("records")
    assert not small_layer(Choice(False, "forced"), "dense", 1, 10_000).compressed
    assert not small_layer(predicted, "measure", 1, 10_000).compressed

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.wide = nn.Conv2d(3, 64, 5, padding=2)
            self.pool = nn.MaxPool2d(8)
            self.small = tn.ShiftConv2d(64, 16, 1)

        def forward(self, x):
            return self.small(self.pool(torch.relu(self.wide(x))))

    torch.manual_seed(0)
    model = Model().eval()
    x = torch.randn(1, 3, 32, 32)
    path = tn.export_onnx(model, x, tmp_path / "tiny.onnx", plain=True)
    with torch.no_grad():
        ref = model(x).numpy()
    with isa.use(isa.AVX512):
        auto = compile_model(path, "llvm", records=tmp_path / "none", shipped=False, options=DIRECT)
    layer = auto.lowered.layers[-1]
    assert layer.kernel.startswith("shift_conv2d_nhwc:") and "of the network's multiply-adds" in layer.choice, \
        layer.choice
    assert layer.compact_bytes * 5 < layer.dense_bytes
    np.testing.assert_allclose(auto(x.numpy()), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_inspect_shows_the_choice_and_measure_records_its_timings(tmp_path, capsys):
    _, x, path = _ternary_mlp(tmp_path, plain=False)
    records = tmp_path / "records"
    records.mkdir()
    assert main(["inspect", str(path), "--batch", "2", "--records", str(records)]) == 0
    out = capsys.readouterr().out
    assert "kernel chosen" in out and "dense (predicted" in out
    assert main(["inspect", str(path), "--batch", "2", "--kernels", "compressed"]) == 0
    assert f"{TERNARY}:2x48x64" in capsys.readouterr().out

    assert main(["inspect", str(path), "--batch", "2", "--kernels", "measure", "--records", str(records)]) == 0
    out = capsys.readouterr().out
    assert out.count("(measured:") == 2
    lines = (records / f"{parse_target('llvm').key}.jsonl").read_text().splitlines()
    measured = {json.loads(line)["workload"]: json.loads(line)["tuner"] for line in lines}
    assert set(measured) >= {f"{TERNARY}:2x48x64", "dense:2x48x64", "ternary_dense:2x10x48", "dense:2x10x48"}
    assert set(measured.values()) == {"kernel-choice"}
    # the next build reads those timings as records, measuring nothing new
    compiled = compile_model(path, batch=2, records=records, shipped=False)
    assert all("records:" in layer.choice for layer in compiled.lowered.layers if layer.choice)
    assert len((records / f"{parse_target('llvm').key}.jsonl").read_text().splitlines()) == len(lines)


def test_few_rows_run_register_tables_from_small_weights_where_avx512_is_double_pumped():
    """Full-width AVX-512 keeps layers of fewer than 8 rows dense below 256K weights (the tables
    cost what they save); on Zen 4, whose dense FMAs run at half rate, binary tables win from 4K
    weights at any row count, ternary ones at one row from 16K and 2:4 input picks from 16K."""
    def tables(family, rows, n, k):
        return choose("auto", family, "k", f"dense:{rows}x{n}x{k}", rows, n * k, False).compressed

    with isa.use(isa.AVX512_VNNI):
        assert not tables("binary_perm_dense", 1, 256, 256) and not tables("ternary_perm_dense", 1, 256, 256)
        assert tables("binary_perm_dense", 1, 1024, 1024)
    with isa.use(isa.ZEN4):
        assert tables("binary_perm_dense", 1, 64, 64) and tables("binary_perm_dense", 4, 256, 256)
        assert not tables("binary_perm_dense", 1, 32, 64)
        assert tables("ternary_perm_dense", 1, 128, 128) and not tables("ternary_perm_dense", 1, 64, 64)
        assert not tables("ternary_perm_dense", 4, 256, 256)          # 0.51x there
        assert tables("binary_perm_dense", 16, 256, 64) and tables("binary_perm_dense", 64, 256, 64)
        assert tables("nm_perm_dense", 1, 256, 64) and not tables("nm_perm_dense", 1, 64, 64)
    with isa.use(isa.AVX512_VNNI):
        assert not tables("binary_perm_dense", 16, 256, 64) and not tables("nm_perm_dense", 1, 256, 64)


def test_avx2_gives_small_transforms_and_binary_row_tables_their_kernels():
    """On a Zen 3 (AVX2 only) the Fastfood and Hadamard transforms beat the dense product at batch 1
    even where it stays in L1, and binary row tables win at 16 rows from 16K weights
    (kernel_choice_avx2): the AVX-512 exceptions do not apply."""
    with isa.use(isa.AVX2):
        assert choose("auto", "fastfood", "k", "d", 1, 256 * 256, conv=False).compressed
        assert choose("auto", "hadamard", "k", "d", 1, 10 * 256, conv=False).compressed
        assert choose("auto", "binary_rowlut_dense", "k", "d", 16, 256 * 64, conv=False).compressed
        assert not choose("auto", "binary_rowlut_dense", "k", "d", 16, 10 * 256, conv=False).compressed
    with isa.use(isa.AVX512):
        assert not choose("auto", "fastfood", "k", "d", 1, 256 * 256, conv=False).compressed


def test_few_pixel_convs_run_im2col_and_the_linear_kernel_on_a_full_width_core(tmp_path):
    """``choose.few_pixels``: a channels-last conv of fewer than 8 output pixels and at least 1M
    shift or ternary weights (VGG's 2x2 maps at batch 1) runs as im2col + the compressed linear
    kernel, which decodes each weight vector in registers once for all the pixels; on a
    full-width AVX-512 core only, not for a dense policy, nor where records say the dense conv wins.
    In a model: the layer's codes are stored, its scale, bias and ReLU run in the kernel's
    write-back, and the output matches PyTorch."""
    from tvmopt.passes.choose import few_pixels
    from tvmopt.records.store import Record, RecordCache
    from tvmopt.ops.task import get_task

    big = 512 * 512 * 9
    with isa.use(isa.AVX512):
        picked = few_pixels("auto", "shift_dense", 4, big)
        assert picked.compressed and "decoded in registers" in picked.why
        assert few_pixels("compressed", "ternary_dense", 4, big).compressed
        assert few_pixels("auto", "shift_dense", 16, big) is None              # 4x4: tiles decoded, 0.49x
        assert few_pixels("auto", "shift_dense", 4, 128 * 128 * 9) is None     # a weight that stays in cache
        assert few_pixels("auto", "binary_dense", 4, big) is None              # binary: its register tables
        assert few_pixels("dense", "shift_dense", 4, big) is None
    for other in (isa.ZEN4, isa.AVX2):
        with isa.use(other):
            assert few_pixels("auto", "shift_dense", 4, big) is None
    # the model is built for a full-width AVX-512 core this host can run: its own, or on Zen 4 an
    # Ice Lake Xeon's (Zen 4 has every AVX-512 extension that code uses)
    host = isa.host()
    if host.lanes < 16:
        pytest.skip("building for a full-width AVX-512 core needs a host with AVX-512 to run the model")
    full_width = "llvm" if host.full_width else "llvm -mcpu=icelake-server -num-cores=2"

    class Model(nn.Module):
        def __init__(self, layer):
            super().__init__()
            self.first = nn.Conv2d(3, 256, 3, padding=1)
            self.layer = layer
            self.bn = nn.BatchNorm2d(512)

        def forward(self, x):
            return torch.relu(self.bn(self.layer(torch.relu(self.first(x)))))

    torch.manual_seed(0)
    x = torch.randn(1, 3, 2, 2)
    tmp = str(tmp_path)
    for name, layer in (("shift", tn.ShiftConv2d(256, 512, 3, padding=1, bias=False)),
                        ("ternary", tn.TernaryConv2d(256, 512, 3, padding=1, bias=False))):
        model = Model(layer).eval()
        with torch.no_grad():
            model.bn.running_mean.uniform_(-1, 1)
            model.bn.running_var.uniform_(0.5, 2)
            ref = model(x).numpy()
        path = tn.export_onnx(model, x, f"{tmp}/{name}.onnx", plain=True)
        built = compile_model(path, full_width, records=f"{tmp}/none", shipped=False)
        layer_report = built.lowered.layers[1]
        assert "(im2col)" in layer_report.source and layer_report.kernel.split(":")[1] == "4x512x2304", layer_report
        assert layer_report.compact_bytes * 6 < layer_report.dense_bytes
        np.testing.assert_allclose(built(x.numpy()), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
        # the folded batch norm's scale and shift and the ReLU in the write-back: no elementwise block left
        functions = {gv.name_hint: f.script() for gv, f in built.mod.functions_items()
                     if type(f).__name__ == "PrimFunc"}
        [(fn, text)] = [(n, t) for n, t in functions.items() if "_4_512_2304" in n]
        assert fn.startswith("fused_") and "relu" in fn and "add" in fn, fn
        assert not re.findall(r'T\.sblock\("(T_multiply|T_add|relu)\w*"', text)
        assert not [n for n in functions if n.startswith(("multiply", "add", "relu"))], sorted(functions)
    # records that time the dense conv faster: the layer keeps the direct kernels
    key = layer_report.kernel
    dense = "conv2d_nhwc:1x256x2x2x512x3x3x1x1"
    records = f"{tmp}/records"
    target = parse_target(full_width)
    with isa.use(isa.for_target(target)):
        RecordCache(records).append([Record(key, target.key, get_task(key).space.initial(), (9e-4,)),
                                     Record(dense, target.key, get_task(dense).space.initial(), (3e-4,))])
    slower = compile_model(path, full_width, records=records, shipped=False)
    assert "(im2col)" not in slower.lowered.layers[1].source


def test_pointwise_convs_on_a_full_width_core_by_table_uses_and_flat_grids():
    """Register-table convs need each table read at least 8 times (taps x vectors of 16 outputs):
    SqueezeNet's 1x1 squeeze layers of 16 to 48 outputs ran 0.28 to 0.99x the dense conv on them,
    its 64 -> 256 expand layers 1.88x. A pointwise layer whose dense conv runs a flat grid
    (``ConvShape.flat``) runs the shift, ternary or binary conv's flat grid (0.94 to 1.08x), other
    formats the dense conv."""
    from tvmopt.passes.choose import conv_register_tables

    with isa.use(isa.AVX512_VNNI):
        assert conv_register_tables("binary_conv2d", 128, 16, 1, 1) is None            # 1 use
        assert conv_register_tables("binary_conv2d", 384, 48, 1, 1) is None            # 3 uses
        assert conv_register_tables("binary_conv2d", 32, 128, 1, 1) == "binary_perm_conv2d"     # 8
        assert conv_register_tables("binary_conv2d", 64, 16, 3, 1) == "binary_perm_conv2d"      # 9 taps
        for family in ("ternary_conv2d", "shift_conv2d", "binary_conv2d"):
            picked = choose("auto", family, f"{family}_nhwc:1x128x55x55x16x1x1x1x0",
                            "conv2d_nhwc:1x128x55x55x16x1x1x1x0", 3025, 128 * 16, True)
            assert picked.compressed and "flat row" in picked.why, (family, picked)
        picked = choose("auto", "nm_conv2d", "nm_conv2d_nhwc:1x128x55x55x16x1x1x1x0x2x4",
                        "conv2d_nhwc:1x128x55x55x16x1x1x1x0", 3025, 128 * 16, True)
        assert not picked.compressed and "flat row" in picked.why
        # not flat: ResNet-18's 1x1 stride-2 shortcut keeps its rule (each thread decodes)
        assert choose("auto", "ternary_conv2d", "ternary_conv2d_nhwc:1x128x28x28x256x1x1x2x0",
                      "conv2d_nhwc:1x128x28x28x256x1x1x2x0", 196, 128 * 256, True).compressed
