"""The tvmopt TIR pipeline (schedules/lowering.py): register tiles stay on the stack and in
registers, and the kernels still agree with numpy."""

import numpy as np
import pytest
import tvm

from tvmopt.ops.task import get_task
from tvmopt.schedules import lowering
from tvmopt.target import parse_target

# a pointwise and a depthwise conv without padding (no pad stage: nothing else to allocate)
KEYS = ["conv2d_nhwc:1x64x16x16x64x1x1x1x0", "depthwise_conv2d:1x32x14x14x32x3x3x1x0"]


def _asm(lib) -> str:
    return lib.mod.inspect_source("asm")


def _agrees_with_numpy(task, lib) -> None:
    inputs = task.make_inputs(np.random.default_rng(0))
    expected = task.reference(inputs)
    args = [tvm.runtime.tensor(a) for a in inputs] + [tvm.runtime.tensor(np.zeros(expected.shape, np.float32))]
    lib["main"](*args)
    assert task.mismatch(args[-1].numpy(), expected) is None


@pytest.mark.parametrize("key", KEYS)
def test_register_tiles_leave_no_workspace_and_no_memset(key):
    # the AVX-512 rules' starts, whose accumulators are register tiles, compiled for this host
    # (the AVX2 start of the pointwise conv, ``ic_at='outside'``, reduces over the input channels
    # outside its width tile: its accumulator outgrows STACK_MAX_BYTES and goes to the workspace,
    # which failed this test on a Zen 3 host)
    from tvmopt.schedules import isa

    target = parse_target("llvm").tvm_target()
    with isa.use(isa.AVX512):
        task = get_task(key)
        mod = task.schedule(task.space.initial(), target)
    plain = _asm(tvm.compile(mod, target=target))
    ours = lowering.compile(mod, target)
    # TVM's own lowering puts the accumulator tile in a heap workspace (the test can fail)
    assert "TVMBackendAllocWorkspace@" in plain or "memset@" in plain
    asm = _asm(ours)
    assert "TVMBackendAllocWorkspace@" not in asm and "memset@" not in asm
    _agrees_with_numpy(task, ours)


def test_large_buffers_still_go_to_the_workspace():
    """Only small constant allocations are kept on the stack: the marked size stops at
    STACK_MAX_BYTES."""
    import tvm.tirx as T

    small = T.decl_buffer((16,), "float32", scope="local")
    large = T.decl_buffer((lowering.STACK_MAX_BYTES,), "float32", scope="local")
    body = T.SeqStmt([T.AllocBuffer(small), T.AllocBuffer(large), T.Evaluate(0)])
    marked = lowering._mark(body)
    assert "disable_lower_builtin" in marked.seq[0].annotations
    assert "disable_lower_builtin" not in marked.seq[1].annotations


def test_a_scalar_tile_with_a_fused_relu_is_unrolled_whole(tmp_path):
    """A config that leaves the tile to LLVM's vectorizer (``vectorize`` off, 4 x 16 = 64 serial
    iterations) must still have its initialization and write-back unrolled when a ReLU is fused
    into that write-back: with one loop left rolled, LLVM kept the tile in memory and the digits
    MLP's 64x256x256 layer ran at half its record's speed. The model must agree with onnxruntime."""
    import re
    from pathlib import Path

    import onnxruntime as ort

    from tvmopt.build.compile import compile_model
    from tvmopt.records.store import Record, RecordCache
    from tvmopt.schedules.space import config_from_json

    models = Path(__file__).resolve().parent.parent / "examples" / "models"
    key = "dense:64x256x256"
    config = config_from_json([[16, 1, 4, 1], [2, 8, 4, 4], [256, 1], False, "local", 256, False, 2])
    assert get_task(key).space.contains(config)
    spec = parse_target("llvm")
    RecordCache(tmp_path).append([Record(key, spec.key, config, (1e-6,))])
    compiled = compile_model(models / "digits_mlp_fp32.onnx", spec, batch=64, shipped=False, records=tmp_path)
    assert compiled.tuned[key] == "records"
    text = compiled.mod["fused_dense_64_256_256_add_relu"].script()
    assert "T.Select" in text or "T.max" in text                 # the ReLU is in the kernel
    rolled = [(name, int(n)) for name, n in re.findall(r"for (ax\d+|\w+_init) in range\((\d+)\)", text) if int(n) > 1]
    assert rolled == []
    x = np.load(models / "digits_test.npz")["x"][:64]
    sess = ort.InferenceSession(str(models / "digits_mlp_fp32.onnx"), providers=["CPUExecutionProvider"])
    want = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(compiled(x), want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))


@pytest.mark.parametrize("key,parallel", [("dense:16x64x64", False), ("dense:64x256x256", True)])
def test_small_kernels_run_serially(key, parallel):
    """A kernel storing fewer than SERIAL_WORK elements does not launch the thread pool (its
    parallel loops run serially); a large one still does. Both agree with numpy."""
    target = parse_target("llvm").tvm_target()
    task = get_task(key)
    mod = task.schedule(task.space.initial(), target)
    assert "T.parallel" in mod["main"].script()               # the schedule asks for threads...
    lib = lowering.compile(mod, target)
    assert ("TVMBackendParallelLaunch" in _asm(lib)) == parallel  # ...which only the large one gets
    _agrees_with_numpy(task, lib)


def test_work_counts_stored_elements():
    """work(): each store counts its vector lanes, times its loops' extents."""
    import tvm.tirx as T

    buf = T.decl_buffer((64,), "float32")
    i = T.Var("i", "int32")
    scalar = T.For(i, 0, 64, T.ForKind.SERIAL, T.BufferStore(buf, T.FloatImm("float32", 0.0), [i]))
    vector = T.For(i, 0, 4, T.ForKind.PARALLEL,
                   T.BufferStore(buf, T.Broadcast(T.FloatImm("float32", 0.0), 16), [T.Ramp(i * 16, 1, 16)]))
    assert lowering.work(scalar) == 64 and lowering.work(vector) == 64
    assert lowering.work(T.SeqStmt([scalar, vector])) == 128
    assert lowering.serial_below(T.PrimFunc([], vector), 100).body.kind == T.ForKind.SERIAL
    assert lowering.serial_below(T.PrimFunc([], vector), 64).body.kind == T.ForKind.PARALLEL
