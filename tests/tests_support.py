"""Helpers shared by test modules (a synthetic replay table over a real GEMM sub-space)."""

import json
import math
import zlib

from tvmopt.schedules import lowering
from tvmopt.schedules.gemm import GemmShape, replay_subspace
from tvmopt.schedules.space import config_to_json

WORKLOAD = "gemm:64x64x64"


def synthetic_cost(config):
    """Seconds: a smooth landscape (register tile, vector width, K block, parallel rows) plus
    deterministic per-config noise and a few failures, like a real table."""
    (m0, m1, _, m3), (n0, n1, _, n3), (k0, k1) = config[:3]
    h = zlib.crc32(json.dumps(config_to_json(config)).encode())
    if h % 37 == 0:
        return None
    penalty = abs(math.log2(m3) - 3) + 0.7 * abs(math.log2(n3) - 5) + 0.4 * abs(math.log2(k1) - 5)
    penalty += 0.8 * (m0 == 1) + 0.2 * abs(math.log2(m1 * n1) - 3)
    return 1e-4 * (1 + penalty) * (1 + 0.05 * ((h >> 8) % 100) / 100)


def write_synthetic_table(path):
    entries = []
    for c in replay_subspace(GemmShape(64, 64, 64)).all():
        cost = synthetic_cost(c)
        entries.append([config_to_json(c), cost, "ok" if cost else "runtime_error", 0.5])
    path.write_text(json.dumps({"header": {"workload": WORKLOAD, "target": "synthetic"}, "entries": entries}))
    return path


def avx2_host():
    """This host's LLVM target with AVX-512 masked: AVX2 code, and the pass's AVX2 rules, on
    every CPU CI may run on (an AVX-512 host builds for the same CPU with ``-avx512f``)."""
    from tvmopt.target import TargetSpec, host_llvm_config

    return TargetSpec("llvm", {**host_llvm_config(), "mattr": ["-avx512f"]}, None)


def avx512_cpu() -> str:
    """The LLVM CPU to compile AVX-512 code for in a test: this host's own where it has AVX-512
    (its code can run here: Zen 5 code holds instructions a Zen 4 lacks, an illegal instruction
    there), else Zen 5 (compiled only)."""
    from tvmopt.schedules import isa
    from tvmopt.target import host_llvm_config

    return host_llvm_config().get("mcpu", "znver5") if isa.host().lanes >= 16 else "znver5"


def xnor_nhwc() -> str:
    """The binarized conv a build for this host runs channels last on a layer of 32 output
    channels: 64-bit words counted with VPOPCNTDQ on AVX-512, byte counts on AVX2
    (``passes/choose.py``, ``xnor_conv_prefix``)."""
    from tvmopt.schedules import isa

    return "xnor_conv2d_nhwc" if isa.host().lanes >= 16 else "xnor8_conv2d_nhwc"


def xnor_linear() -> str:
    """The binarized linear layer's kernel on this host for outputs in blocks of 32:
    ``xnor_dense`` on AVX-512, ``xnor8_dense`` (byte counts) on AVX2."""
    from tvmopt.schedules import isa

    return "xnor_dense" if isa.host().lanes >= 16 else "xnor8_dense"


def knob_configs(space, seed: int, randoms: int) -> list:
    """The start, the start with each value of each choice knob in turn, and ``randoms`` random
    configs (a ``random.Random(seed)``), without repeats: what the every-knob tests run."""
    import random

    configs = [space.initial()]
    for i, knob in enumerate(space.knobs):
        for value in getattr(knob, "values", ()):
            config = list(space.initial())
            config[i] = value
            configs.append(tuple(config))
    pick = random.Random(seed)
    configs += [space.random(pick) for _ in range(randoms)]
    return list(dict.fromkeys(configs))


def run_config(task, config, inputs, target=None):
    """The output of ``task``'s kernel for ``config`` on ``inputs`` (numpy), compiled for
    ``target`` (a TVM target; default: plain LLVM for this host)."""
    import numpy as np
    import tvm

    target = target or tvm.target.Target({"kind": "llvm"})
    lib = lowering.compile(task.schedule(config, None), target)
    out = tvm.runtime.tensor(np.zeros(task.reference(inputs).shape, np.float32))
    lib["main"](*[tvm.runtime.tensor(a) for a in inputs], out)
    return out.numpy()


def check_every_avx512_config(key: str, seed: int, least: int = 2, wide: bool = True) -> None:
    """Every config of an AVX-512 kernel's space (``key``) against its numpy reference, compiled
    for an AVX-512 CPU; on a host without AVX-512 each config is only compiled. ``wide=False``:
    the AVX2 space and starts, compiled for Haswell (AVX2 code, which every CI machine runs)."""
    import numpy as np
    import tvm

    from tvmopt.ops.task import get_task
    from tvmopt.schedules import isa

    with isa.use(isa.AVX512 if wide else isa.AVX2):
        task = get_task(key)
        inputs = task.make_inputs(np.random.default_rng(seed))
        expected = task.reference(inputs)
        target = tvm.target.Target({"kind": "llvm", "mcpu": avx512_cpu() if wide else "haswell"})
        configs = list(task.space.all())
        assert len(configs) >= least
        for config in configs:
            lib = lowering.compile(task.schedule(config, None), target)
            if wide and isa.host().lanes < 16:
                continue               # compiled for AVX-512; this CPU cannot run it
            out = tvm.runtime.tensor(np.zeros(expected.shape, np.float32))
            lib["main"](*[tvm.runtime.tensor(a) for a in inputs], out)
            assert task.mismatch(out.numpy(), expected) is None, config


def two_four_mlp(tmp_path, widths, rows: int, target):
    """An MLP of 2:4 layers (``widths``: in, hidden..., each hidden layer followed by a ReLU, then
    a dense 10-output layer), its weights' 2 smallest of every 4 dropped, exported to ONNX and
    built for ``target`` with no records: (the build, the input, PyTorch's output)."""
    import torch
    from torch import nn

    from tvmopt.build.compile import compile_model

    torch.manual_seed(0)
    layers = []
    for a, b in zip(widths, widths[1:]):
        linear = nn.Linear(a, b)
        w = linear.weight.data.view(b, -1, 4)
        w.scatter_(2, w.abs().argsort(dim=2)[:, :, :2], 0.0)
        layers += [linear, nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(widths[-1], 10)).eval()
    x = torch.randn(rows, widths[0])
    with torch.no_grad():
        ref = model(x).numpy()
    path = tmp_path / "nm.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["x"])
    return compile_model(path, target, shipped=False, records=tmp_path), x.numpy(), ref
