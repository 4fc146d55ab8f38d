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
