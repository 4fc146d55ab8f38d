"""CUDA without a GPU: every CUDA space compiles for sm_80 and sm_90, nvcc accepts the source,
launches respect the hardware limits, and the export -> remote runner -> ingest -> replay path
works on its pure-Python parts."""

import json
import os
import random
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tvmopt.measure import remote_cuda
from tvmopt.records.store import RecordCache
from tvmopt.measure.cuda import (CudaCandidate, CudaError, Kernel, check_launch_bounds, compile_candidate, cuda_task,
                         nvcc_check)
from tvmopt.schedules.space import config_from_json

needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed: CUDA C not checked")

#: small workloads of every family with a CUDA space, and what their source must show
FAMILIES = {
    "gemm:64x128x64": ("__shared__", "float4"),
    "dense:32x64x128": ("__shared__",),
    "bgemm:2x32x32x64": ("blockIdx.z",),
    "xnor_dense:8x64x256": ("__popc",),
    "binary_dense:8x64x128": ("W_shared",),
    "shift_dense:8x64x128": ("W_shared",),
    "nm_dense:4x64x128x2x4": ("positions_shared", "values_shared"),
    "fastfood:2x128x256": ("__syncthreads", "__shfl_sync"),
    "hadamard:2x100x60": ("__syncthreads", "__shfl_sync"),
}


def _launchable_random(task, rng, arch, n):
    """n random configs of the task's space that pass the launch-bounds check."""
    out = []
    for _ in range(40):
        if len(out) == n:
            break
        config = task.space.random(rng)
        cand = compile_candidate(task.key, config, f"cuda -arch={arch}")
        if not check_launch_bounds(cand):
            out.append(cand)
    return out


def _check_candidate(cand):
    task = cuda_task(cand.task_key)
    known = set(cand.inputs) | {cand.output} | set(cand.workspaces)
    assert cand.kernels
    for k in cand.kernels:
        # TVM writes the block size into the kernel's launch bounds (none for a one-thread block)
        bounds = re.search(rf"void (?:__launch_bounds__\((\d+)\) )?{k.name}\(", cand.source)
        assert bounds and int(bounds.group(1) or 1) == k.threads, (k, bounds)
        assert set(k.params) <= known, (k.params, known)
        assert all(g >= 1 for g in k.grid)
    assert cand.output in cand.kernels[-1].params
    assert len(cand.inputs) == len(task.make_inputs(np.random.default_rng(0)))


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_every_space_compiles_within_launch_bounds_and_nvcc_accepts_it(arch):
    rng = random.Random(arch)
    for key, marks in FAMILIES.items():
        task = cuda_task(key)
        assert task.space.name == f"{key.split(':')[0]}-cuda"
        start = compile_candidate(key, task.space.initial(), f"cuda -arch={arch}")
        assert start.arch == arch and not check_launch_bounds(start), key
        for mark in marks:
            assert mark in start.source, (key, mark)
        _check_candidate(start)
        if shutil.which("nvcc"):
            result = nvcc_check(start.source, arch)
            assert result.ok, (key, result.message)
            assert all(0 < r <= 255 for r in result.registers.values()) and result.registers, key
        for cand in _launchable_random(task, rng, arch, 1 if arch == "sm_80" else 2):
            _check_candidate(cand)


@needs_nvcc
def test_launch_bounds_check_agrees_with_ptxas_on_shared_memory():
    # the whole K (256) per step: an X tile of 8 x 256 floats and a decoded W tile of 256 x 128
    config = ((1, 1, 8), (1, 16, 8), (1, 256), True, 4, 0, "shared")
    cand = compile_candidate("shift_dense:8x128x256", config, "cuda -arch=sm_90")
    assert check_launch_bounds(cand) == ["main_kernel: 139264 bytes of static shared memory > 49152"]
    result = nvcc_check(cand.source, "sm_90")
    assert not result.ok and f"too much shared data ({139264:#x} bytes, {49152:#x} max)" in result.message


def test_launch_bounds_checker_names_each_broken_limit():
    ok = Kernel("k0", ["A", "C"], (70000, 1, 1), (32, 32, 1), 48 * 1024)
    bad = Kernel("k1", ["A", "C"], (1, 70000, 1), (64, 32, 1), 48 * 1024 + 4)
    cand = CudaCandidate("gemm:64x64x64", (), "sm_90", "", [ok, bad], ["A"], "C")
    problems = check_launch_bounds(cand)
    assert problems == ["k1: 2048 threads per block > 1024", "k1: gridDim.y = 70000 > 65535",
                        "k1: 49156 bytes of static shared memory > 49152"]
    assert check_launch_bounds(CudaCandidate("gemm:64x64x64", (), "sm_90", "", [ok], ["A"], "C")) == []


def test_nvcc_reports_a_broken_source():
    if shutil.which("nvcc") is None:
        result = nvcc_check("__global__ void k() {}", "sm_90")
        assert result.skipped and "nvcc not found" in result.message
        return
    result = nvcc_check('extern "C" __global__ void k(float* a) { a[0] = undefined_name; }', "sm_80")
    assert not result.ok and "undefined_name" in result.message


def test_llvm_tasks_are_unchanged_and_cuda_spaces_are_data():
    from tvmopt.ops.task import get_task, task_for

    assert task_for("gemm:64x64x64").space == get_task("gemm:64x64x64").space
    assert task_for("gemm:64x64x64", "cuda").space.name == "gemm-cuda"
    with pytest.raises(CudaError, match="no CUDA schedule space"):
        cuda_task("fault:1")
    code = ("import sys; import tvmopt.schedules.gemm, tvmopt.schedules.fwht, tvmopt.measure.remote_cuda; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tvm', 'torch', 'cupy') or "
            "m in ('tvmopt.measure.cuda', 'tvmopt.ops.task', 'tvmopt.records.store')); print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --------------------------------------------------------------------------- batches


class FakeBackend:
    """remote_cuda's backend interface on numpy: each 'kernel' computes the product in float64
    (or garbage, for the wrong-result path), so the runner's wiring is tested without a GPU."""

    name, device = "fake", "numpy"

    def __init__(self, wrong=False):
        self.wrong, self.clock = wrong, 0.0

    def compile(self, source, names, arch):
        if "BROKEN" in source:
            raise RuntimeError("nvrtc: error: BROKEN")
        return {n: n for n in names}

    def array(self, host):
        return np.array(host)

    def empty(self, dtype, count):
        return np.zeros(count, dtype)

    def to_host(self, arr):
        return arr

    def launch(self, fn, kernel, args):
        a, b, c = args
        c[...] = -1.0 if self.wrong else a @ b
        self.clock += 1e-5

    def event(self):
        return [0.0]

    def record(self, event):
        event[0] = self.clock

    def elapsed_s(self, start, end):
        return end[0] - start[0]

    def sync(self):
        pass


@pytest.fixture(scope="module")
def batch_dir(tmp_path_factory):
    from tvmopt.measure.cuda_batch import export_batch

    task = cuda_task("gemm:64x64x64")
    too_many_threads = ((1, 64, 1), (1, 64, 1), (8, 8), True, 4, 0)
    configs = [task.space.initial(), ((2, 8, 4), (4, 8, 2), (16, 4), True, 4, 0), too_many_threads]
    out = tmp_path_factory.mktemp("cuda") / "batch"
    export_batch(task.key, configs, "cuda -arch=sm_80", out, repeat=3)
    return out


def test_export_writes_a_batch_the_runner_can_read(batch_dir):
    batch = remote_cuda.read_batch(str(batch_dir))
    assert batch["target"] == "cuda-sm_80" and batch["arch"] == "sm_80"
    assert batch["space"] == cuda_task("gemm:64x64x64").space.fingerprint()
    assert [c["id"] for c in batch["candidates"]] == ["c00000", "c00001"]
    (rejected,) = batch["rejected"]
    assert config_from_json(rejected["config"])[:2] == ((1, 64, 1), (1, 64, 1))
    assert "4096 threads per block > 1024" in rejected["message"]
    cand = batch["candidates"][1]
    assert cand["kernels"][0]["grid"] == [4, 2, 1] and cand["kernels"][0]["block"] == [8, 8, 1]
    assert (batch_dir / cand["source"]).read_text().count("__global__") == 2   # declaration + definition
    task = batch["tasks"]["gemm:64x64x64"]
    a, b = (np.load(batch_dir / i["file"]) for i in task["inputs"])
    np.testing.assert_allclose(np.load(batch_dir / task["output"]["file"]), a @ b, rtol=1e-5, atol=1e-5)


def test_runner_checks_times_and_reports_each_failure(batch_dir, tmp_path):
    work = tmp_path / "b"
    shutil.copytree(batch_dir, work)
    batch = remote_cuda.read_batch(str(work))
    good, other = batch["candidates"]
    (work / other["source"]).write_text("BROKEN")
    results = [remote_cuda.measure_candidate(FakeBackend(), batch, str(work), good, {}),
               remote_cuda.measure_candidate(FakeBackend(), batch, str(work), other, {}),
               remote_cuda.measure_candidate(FakeBackend(wrong=True), batch, str(work), good, {})]
    assert results[0]["error"] == "ok" and len(results[0]["costs"]) == 3
    # 1e-5 s per fake launch; a sample repeats the call until it lasts 1 ms
    assert results[0]["costs"] == pytest.approx([1e-5] * 3)
    assert results[1]["error"] == "build_error" and "BROKEN" in results[1]["message"]
    assert results[2]["error"] == "wrong_result" and "max abs error" in results[2]["message"]


def test_ingest_appends_records_like_local_measurements(batch_dir, tmp_path):
    from tvmopt.measure.cuda_batch import ingest

    work = tmp_path / "b"
    shutil.copytree(batch_dir, work)
    batch = remote_cuda.read_batch(str(work))
    results = [remote_cuda.measure_candidate(FakeBackend(), batch, str(work), c, {}) for c in batch["candidates"]]
    results[1].update(error="run_timeout", costs=[], message="no answer within 10 s (hang?)")
    remote_cuda.write_json_atomically(str(work / "results.json"),
                                      remote_cuda.results_document(batch, results, "fake", "fake", 0.1))
    rows = ingest(work, tmp_path / "records")
    loaded = RecordCache(tmp_path / "records").load("cuda-sm_80", "gemm:64x64x64")
    assert [r.error for r in loaded] == ["ok", "run_timeout", "build_error"]
    assert loaded == rows
    assert loaded[0].cost == pytest.approx(1e-5) and loaded[0].space == batch["space"]
    assert loaded[0].config == config_from_json(batch["candidates"][0]["config"])
    assert "launch bounds" in loaded[2].message


def test_runner_without_gpu_exits_with_one_clear_line(batch_dir, tmp_path):
    import importlib.util

    import torch

    if importlib.util.find_spec("cupy") is not None or torch.cuda.is_available():
        pytest.skip("CuPy or a CUDA GPU is here: the runner would measure")
    work = tmp_path / "b"
    shutil.copytree(batch_dir, work)
    proc = subprocess.run([sys.executable, "-m", "tvmopt.remote_cuda", str(work)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == remote_cuda.EXIT_NO_GPU
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("remote_cuda: error: no usable CUDA GPU here (")
    assert "cupy" in lines[0] and "torch" in lines[0]
    assert not (work / "results.json").exists() and not (work / "results.jsonl.part").exists()


FAKE_BACKEND = """
import os, time
import numpy as np

class Backend:
    name, device = "fake", "numpy"
    def compile(self, source, names, arch):
        self.mode = source.strip()
        return {n: n for n in names}
    def array(self, host): return np.array(host)
    def empty(self, dtype, count): return np.zeros(count, dtype)
    def to_host(self, arr): return arr
    def launch(self, fn, kernel, args):
        if self.mode == "HANG": time.sleep(60)
        if self.mode == "CRASH": os._exit(7)
        if self.mode == "FAULT": raise RuntimeError("an illegal memory access was encountered")
        a, b, c = args
        c[...] = a @ b
    def event(self): return [time.perf_counter()]
    def record(self, event): event[0] = time.perf_counter()
    def elapsed_s(self, start, end): return end[0] - start[0]
    def sync(self): pass
"""


def test_runner_survives_hangs_crashes_and_launch_errors(batch_dir, tmp_path):
    # one batch: a good candidate after each failure, so every failure must restart the worker
    work = tmp_path / "b"
    shutil.copytree(batch_dir, work)
    batch = json.loads((work / "batch.json").read_text())
    good = batch["candidates"][0]
    modes = ["HANG", "ok", "CRASH", "ok", "FAULT", "ok"]
    batch["candidates"] = []
    for i, mode in enumerate(modes):
        (work / f"m{i}.cu").write_text(mode)
        batch["candidates"].append({**good, "id": f"m{i}", "source": f"m{i}.cu"})
    (work / "batch.json").write_text(json.dumps(batch))
    (tmp_path / "fake_gpu.py").write_text(FAKE_BACKEND)
    proc = subprocess.run([sys.executable, "-m", "tvmopt.remote_cuda", str(work), "--backend", "fake_gpu:Backend",
                           "--timeout", "2"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
    assert proc.returncode == 0, proc.stderr
    results = json.loads((work / "results.json").read_text())
    assert [r["error"] for r in results["results"]] == ["run_timeout", "ok", "worker_crashed", "ok",
                                                         "runtime_error", "ok"]
    assert "status 7" in results["results"][2]["message"] and "illegal memory" in results["results"][4]["message"]
    assert all(len(r["costs"]) == 3 and min(r["costs"]) > 0 for r in results["results"][1::2])
    assert results["device"] == "numpy" and not (work / "results.jsonl.part").exists()


def test_runner_runs_as_a_copied_file_and_refuses_a_bad_directory(tmp_path):
    script = tmp_path / "remote_cuda.py"
    shutil.copy(remote_cuda.__file__, script)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "nothing")], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("remote_cuda: error: cannot read the batch in ") and "batch.json" in proc.stderr


def test_cuda_replay_table_replays_the_cuda_space_for_every_tuner(tmp_path):
    from tvmopt.records.store import Record
    from tvmopt.measure.cuda_batch import write_replay_table
    from tvmopt.measure.replay import ReplayMeasurer
    from tvmopt.schedules.gemm import cuda_replay_subspace
    from tvmopt.tuners import make_tuner

    task = cuda_task("gemm:64x64x64")
    sub = cuda_replay_subspace(task.base.shape)
    assert 50 < sub.size() < 2000
    rows = [Record(task.key, "cuda-sm_90", c, (1e-5 * (1 + i % 7),), "ok", task.space.fingerprint(), "export")
            for i, c in enumerate(sub.all())]
    RecordCache(tmp_path / "records").append(rows)
    table = write_replay_table(task.key, "cuda -arch=sm_90", tmp_path / "t.json", tmp_path / "records", "fake GPU")
    assert table["header"]["configs"] == sub.size()
    measurer = ReplayMeasurer(tmp_path / "t.json")
    assert measurer.space.name == "gemm-cuda" and measurer.space.size() == sub.size()
    assert measurer.optimum == pytest.approx(1e-5)
    for name in ("random", "gbfs", "xgb"):
        tuner = make_tuner(name, measurer.space, seed=0)
        best, cost = tuner.tune(lambda cs: measurer.measure(task.key, cs), n_trial=16, batch_size=8)
        assert measurer.space.contains(best) and cost >= 1e-5


def test_cli_errors_are_one_line(tmp_path, capsys):
    from tvmopt.cli.main import main

    assert main(["cuda", "export", "gemm:64x64x64", "--out", str(tmp_path / "b"), "--config", "[1, 2]"]) == 2
    assert capsys.readouterr().err == "tvmopt: error: config (1, 2) is not in the space gemm-cuda\n"
    assert main(["cuda", "ingest", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"tvmopt: error: '{tmp_path}' is not a batch directory (no batch.json)\n"
    (tmp_path / "batch.json").write_text("{}")
    assert main(["cuda", "ingest", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tvmopt: error: '{tmp_path / 'results.json'}' does not exist: run 'python3 -m "
                          f"tvmopt.measure.remote_cuda {tmp_path}' on the GPU host") and err.count("\n") == 1
    assert main(["cuda", "export", "fault:1", "--out", str(tmp_path / "c")]) == 2
    assert "no CUDA schedule space" in capsys.readouterr().err
