"""Every sampled config of the GEMM space builds and matches numpy, odd shapes included."""

import random

import numpy as np
import pytest
import tvm

from tvmopt.errors import ConfigError
from tvmopt.ops.task import get_task

SHAPES = ["gemm:96x80x48", "gemm:127x64x33", "dense:127x64x33", "dense:40x24x36", "bgemm:3x16x20x12",
          "gemm:1x7x5"]


def run(task, config, target, inputs):
    exe = tvm.compile(task.schedule(config, target), target=target)
    out = tvm.runtime.tensor(np.zeros(task.reference(inputs).shape, "float32"))
    exe.mod["main"](*[tvm.runtime.tensor(x) for x in inputs], out)
    return out.numpy()


@pytest.mark.parametrize("key", SHAPES)
def test_sampled_configs_match_numpy(key, llvm_target):
    task = get_task(key)
    target = llvm_target.tvm_target()
    inputs = task.make_inputs(np.random.default_rng(0))
    expected = task.reference(inputs)
    rng = random.Random(key)
    configs = [task.space.initial()] + [task.space.random(rng) for _ in range(7)]
    for config in configs:
        got = run(task, config, target, inputs)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4, err_msg=str(config))


def test_every_knob_value_is_exercised(llvm_target):
    """Each choice of each non-split knob, on top of a random tiling, stays correct."""
    task = get_task("dense:24x32x16")
    space = task.space
    target = llvm_target.tvm_target()
    inputs = task.make_inputs(np.random.default_rng(1))
    expected = task.reference(inputs)
    rng = random.Random(5)
    for i, knob in enumerate(space.knobs):
        if not hasattr(knob, "values"):
            continue
        for value in knob.values:
            config = list(space.random(rng))
            config[i] = value
            np.testing.assert_allclose(run(task, tuple(config), target, inputs), expected, rtol=1e-4, atol=1e-4,
                                       err_msg=str(config))


@pytest.mark.parametrize("n3,split", [(24, True), (16, False), (8, False)])
def test_register_tiles_of_odd_vector_counts_are_split_into_whole_vectors(n3, split, llvm_target):
    """4 x 24 on AVX2 is three 8-lane vectors unrolled, not one 24-lane vector (which LLVM keeps
    in no register); power-of-two widths stay one vector. Both match numpy."""
    from tvmopt.schedules import isa

    task = get_task("dense:8x96x32")
    config = ((1, 1, 2, 4), (2, 96 // (2 * n3), 1, n3), (1, 32), False, "local", 16, True, 2)
    assert task.space.contains(config)
    with isa.use(isa.AVX2):
        mod = task.schedule(config, llvm_target.tvm_target())
        script = mod.script()
        update = script[:script.index('T.sblock("C_update")')]
        lanes = int(update[update.rindex("T.vectorized(") + len("T.vectorized("):].split(")")[0])
        assert lanes == (8 if split else n3), script
        assert ("T.unroll(3)" in update) == split, script
        inputs = task.make_inputs(np.random.default_rng(1))
        got = run(task, config, llvm_target.tvm_target(), inputs)
    np.testing.assert_allclose(got, task.reference(inputs), rtol=1e-4, atol=1e-4)


def test_config_outside_space_is_rejected(llvm_target):
    task = get_task("gemm:16x16x16")
    bad = ((16, 1, 1, 2),) + task.space.initial()[1:]
    with pytest.raises(ConfigError):
        task.schedule(bad, llvm_target.tvm_target())


@pytest.mark.parametrize("key,msg", [("gemm:16x16", "needs 3 dimensions"), ("conv:3x3x3", "unknown workload family"),
                                     ("gemm 16x16x16", "cannot read workload"), ("gemm:0x4x4", "zero extent"),
                                     ("bgemm:4x4x4", "needs 4 dimensions")])
def test_bad_workload_keys(key, msg):
    from tvmopt.errors import WorkloadError

    with pytest.raises(WorkloadError) as info:
        get_task(key)
    assert msg in str(info.value)
