"""Every compressed kernel, under random configs of its schedule space, matches its numpy
reference; the compact kernel layouts round-trip."""

import random

import numpy as np
import pytest

from tvmopt.ops.decoded import pack_fields, unpack_fields
from tvmopt.ops.task import get_task
from tvmopt.schedules import lowering

KEYS = ["binary_dense:5x24x20", "binary_lut_dense:3x24x21", "ternary_lut_dense:2x16x30", "xnor_dense:3x40x70", "shift_dense:4x24x21", "ternary_dense:3x16x30",
        "nm_dense:4x24x32x2x4", "nm_dense:2x8x16x1x8", "nm_decode_dense:4x24x32x2x4", "nm_decode_dense:12x16x16x1x8", "hashed_dense:3x16x20x37x2", "codebook_dense:3x16x20x300",
        "fastfood:3x24x40", "hadamard:2x24x10", "dense:3x16x20", "shift_dense:12x24x21",
        "hashed_dense:8x16x20x37x2", "hashed_block_dense:3x32x20x64x1x16", "hashed_block_dense:9x48x20x96x2x16",
        "hashed_block_dense:1x40x12x40x1x8", "binary_rowlut_dense:24x32x40", "binary_rowlut_dense:13x16x20",
        "ternary_rowlut_dense:16x24x36", "ternary_rowlut_dense:9x8x30", "ternary_rowlut_dense:64x16x20", "binary_rowlut_dense:32x64x72",
        "binary_rowlut_conv2d:2x5x7x7x16x3x3x1x1", "binary_rowlut_conv2d:1x16x9x9x8x3x3x2x0",
        "ternary_rowlut_conv2d:2x3x8x8x8x5x5x2x2",
        # the dense grouped and depthwise convolutions' spaces (a 5x5 window, stride 2, multiplier 2)
        "conv2d:1x12x9x9x24x3x3x1x1x3", "depthwise_conv2d:2x6x12x12x12x3x3x2x1", "depthwise_conv2d:1x4x7x7x4x5x5x1x2",
        # channels last: 24 channels (8-lane vectors), 40 with a 5x5 window, 19 (no vector divides it)
        "depthwise_conv2d_nhwc:2x24x12x12x24x3x3x2x1", "depthwise_conv2d_nhwc:1x40x7x7x40x5x5x1x2",
        "depthwise_conv2d_nhwc:1x19x9x9x19x3x3x1x1"]


def _run(task, config, inputs):
    import tvm

    mod = task.schedule(config, None)
    lib = lowering.compile(mod, tvm.target.Target({"kind": "llvm"}))
    expected = task.reference(inputs)
    args = [tvm.runtime.tensor(a) for a in inputs] + [tvm.runtime.tensor(np.zeros(expected.shape, np.float32))]
    lib["main"](*args)
    return args[-1].numpy(), expected


@pytest.mark.parametrize("key", KEYS)
def test_kernel_matches_reference_under_random_configs(key):
    task = get_task(key)
    rng = np.random.default_rng(0)
    inputs = task.make_inputs(rng)
    pick = random.Random(0)
    configs = [task.space.initial()] + [task.space.random(pick) for _ in range(4)]
    for config in configs:
        got, expected = _run(task, config, inputs)
        assert task.mismatch(got, expected) is None, (config, np.abs(got - expected).max())


def test_xnor_kernel_is_exact():
    task = get_task("xnor_dense:4x8x100")
    inputs = task.make_inputs(np.random.default_rng(1))
    got, expected = _run(task, task.space.initial(), inputs)
    np.testing.assert_array_equal(got, expected)
    # the reference really is sign(x) @ W with W = ±1
    x, words = inputs
    assert set(np.unique(task.dense_weight(task.logical([words])))) == {-1.0, 1.0}


def test_ternary_row_table_layout_round_trips_and_holds_the_same_weights():
    """The row-table kernel recodes ternary_dense's 2-bit codes into base-3 nibbles (one byte per
    4 weights, as before); the logical arrays come back unchanged."""
    rows = get_task("ternary_rowlut_dense:8x32x30")
    plain = get_task("ternary_dense:8x32x30")
    assert get_task("ternary_rowlut_dense:64x16x20").row_block == 32 and rows.row_block == 8
    codes = plain.random_weights(np.random.default_rng(3))
    kernel = rows.to_kernel(codes)
    assert kernel[0].nbytes == codes[0].nbytes
    np.testing.assert_array_equal(rows.logical(kernel)[0], codes[0])
    np.testing.assert_array_equal(rows.dense_weight(rows.logical(kernel)), plain.dense_weight(codes))


@pytest.mark.parametrize("width", [1, 2, 4, 8])
def test_pack_fields_round_trip(width):
    rng = np.random.default_rng(width)
    codes = rng.integers(0, 1 << width, size=(13, 5))
    np.testing.assert_array_equal(unpack_fields(pack_fields(codes, width), width, 13), codes)


def test_compressed_spaces_have_no_packing_knob_and_count_dense_flops():
    task = get_task("shift_dense:64x256x512")
    start = task.space.as_dict(task.space.initial())
    assert start["pack_b"] is False and start["decode"] == "tile"   # batches decode a tile once
    assert task.flops == 2 * 64 * 256 * 512
    # one row has nothing to share a decoded tile with: no decode knob
    assert "decode" not in get_task("shift_dense:1x256x512").space.as_dict(get_task("shift_dense:1x256x512")
                                                                             .space.initial())
    # the dense layer of 64 rows stores its weight in panels: no packing choice left (1 <-> decode's 2)
    dense = get_task("dense:64x256x512")
    assert dense.shape.panel == 64 and 2 * dense.space.size() == task.space.size()


@pytest.mark.parametrize("key", ["binary_dense:9x24x20", "shift_dense:8x24x21", "ternary_dense:16x16x30",
                                 "hashed_dense:8x16x20x37x2", "codebook_dense:10x16x20x300"])
def test_weight_decoded_inline_or_once_per_tile_gives_the_same_result(key):
    task = get_task(key)
    inputs = task.make_inputs(np.random.default_rng(2))
    start = task.space.initial()
    assert task.space.as_dict(start)["decode"] == "tile"
    for decode in ("inline", "tile"):
        got, expected = _run(task, start[:-1] + (decode,), inputs)
        assert task.mismatch(got, expected) is None, (decode, np.abs(got - expected).max())
    assert "W" in task.primfunc(start).script() and "W" not in task.primfunc(start[:-1] + ("inline",)).script()


def test_every_kernel_space_is_tuned_by_a_tuner_and_recorded(tmp_path):
    """Small shapes, two trials each, real measurements: every compressed space works with the
    tuner loop, the measurer (which checks results against the reference) and the records."""
    from tvmopt.records.store import RecordCache
    from tvmopt.measure.local import LocalMeasurer
    from tvmopt.target import parse_target
    from tvmopt.tune.loop import tune_task

    target = parse_target("llvm")
    with LocalMeasurer(target) as measurer:
        for key, tuner in zip(KEYS[:-1], ["random", "gbfs", "random", "xgb", "random", "gbfs", "random", "random",
                                          "random", "gbfs", "random", "random"]):
            result = tune_task(key, target, tuner=tuner, trials=2, records=tmp_path, measurer=measurer,
                               progress=False, remeasure=0)     # re-measurement: tests/test_cli.py
            assert result.measured == 2 and result.best_config is not None, key
            assert RecordCache(tmp_path).best(key, target.key) is not None


@pytest.mark.parametrize("shape", [(1, 1024, 1024), (64, 4096, 4096), (7, 13, 17), (3, 48, 20)])
def test_compressed_spaces_start_from_a_valid_heuristic_config(shape):
    m, n, k = shape
    task = get_task(f"ternary_dense:{m}x{n}x{k}")
    start = task.space.initial()
    assert task.space.contains(start)
    knobs = task.space.as_dict(start)
    assert knobs["vectorize"] and knobs["accumulate"] == "local"
    # decoding kernels: batches decode a tile once for all rows; one row takes 16 lanes (a
    # panel), an inner K block of 8 (constant bit offsets)
    if m >= 8 and n % 16 == 0:
        assert knobs["decode"] == "tile" and knobs["tile_m"][:2] == (1, 1) and knobs["tile_n"][3] == 16
    elif n % 16 == 0:
        assert knobs["tile_n"][3] == 16 and knobs["tile_k"][1] == (8 if k % 8 == 0 else 4)
    # the tuner-comparison GEMM space keeps the trivial start
    assert get_task(f"gemm:{m}x{n}x{k}").space.initial()[0] == (m, 1, 1, 1)


@pytest.mark.parametrize("key,panel", [("ternary_dense:2x64x24", 16), ("shift_dense:1x48x16", 16),
                                       ("binary_dense:1x40x16", 8), ("ternary_dense:1x13x8", None)])
def test_weight_arrays_are_stored_as_panels_of_outputs(key, panel):
    """[rows, N] arrays are stored [N / P, rows, P] (P = 32, 16 or 8 dividing N): each strip of
    P outputs is one contiguous block; to_kernel and logical are inverses."""
    task = get_task(key)
    assert task.panel == panel
    arrays = task.random_weights(np.random.default_rng(0))
    kernel = task.to_kernel(arrays)
    first = arrays[0]
    if panel:
        assert kernel[0].shape == (task.n // panel, first.shape[0], panel)
        np.testing.assert_array_equal(kernel[0][1, :, 3], first[:, panel + 3])
    else:
        assert kernel[0].shape == first.shape
    for a, b in zip(task.logical(kernel), arrays):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("key", ["fastfood:16x24x40", "fastfood:8x64x64", "hadamard:16x24x10"])
def test_fwht_rows_in_vector_lanes(key):
    """Row tiles transformed with one row per vector lane (the ``rows`` knob, the start where
    the rows divide) agree with the reference for every tile and vector width, with several
    Fastfood blocks, with one (its block loop gone), and for the Hadamard head."""
    task = get_task(key)
    rows = task.space.knobs[task.space.index("rows")].values
    assert rows == (1, 8, 16) if key.startswith(("fastfood:16", "hadamard:16")) else rows == (1, 8)
    assert task.space.as_dict(task.space.initial())["rows"] == rows[-1]
    inputs = task.make_inputs(np.random.default_rng(2))
    for config in task.space.all():
        knob = task.space.as_dict(config)
        if knob["rows"] == 1 or knob["row_local"]:      # row_local means nothing with rows > 1
            continue
        got, expected = _run(task, config, inputs)
        assert task.mismatch(got, expected) is None, (knob, np.abs(got - expected).max())
