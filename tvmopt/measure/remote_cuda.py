"""Measure a batch of exported CUDA candidates on a GPU host that has no TVM.

    python3 -m tvmopt.measure.remote_cuda DIR        (or, as a copied file: python3 remote_cuda.py DIR)

DIR holds ``batch.json`` (written by ``tvmopt cuda export``), one ``.cu`` file per candidate and
the inputs and numpy reference outputs as ``.npy`` files. Each candidate is compiled (CuPy's
``RawModule``, NVRTC first, nvcc if NVRTC fails), its kernels are launched in order on the
inputs, the output is compared with the reference, and the whole call sequence is timed with
CUDA events (``repeat`` samples; each sample's launches repeated until it lasts about
``min_sample_ms``). ``DIR/results.json`` is written atomically at the end (and each result is
appended to ``DIR/results.jsonl.part`` as it arrives). A failing candidate is recorded with its
error kind (``build_error``, ``runtime_error``, ``wrong_result``, ``run_timeout``,
``worker_crashed``) and the batch goes on.

Candidates run in a worker process that the parent watches: a kernel that hangs past
``--timeout`` seconds, or an error that leaves the CUDA context unusable, costs the worker,
which is restarted for the rest of the batch.

Standalone on purpose: only the standard library, numpy, and CuPy (or, without CuPy, torch for
memory and events plus nvcc and the CUDA driver through ctypes). It imports nothing else of
tvmopt and no TVM.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

FORMAT = "tvmopt-cuda-batch/1"
RESULTS_FORMAT = "tvmopt-cuda-results/1"
EXIT_NO_GPU = 3


class NoGPU(RuntimeError):
    """Neither CuPy nor torch can reach a CUDA device here."""


def read_batch(directory: str) -> dict:
    path = os.path.join(directory, "batch.json")
    with open(path, encoding="utf-8") as f:
        batch = json.load(f)
    if batch.get("format") != FORMAT:
        raise ValueError(f"{path}: format {batch.get('format')!r}, expected {FORMAT!r}")
    return batch


def mismatch(got: np.ndarray, expected: np.ndarray, rtol: float, atol: float) -> str | None:
    """The rule of tvmopt.tasks.Task.mismatch: atol scaled by the largest reference magnitude."""
    if got.shape != expected.shape:
        return f"output shape {got.shape}, expected {expected.shape}"
    scale = max(1.0, float(np.abs(expected).max())) if expected.size else 1.0
    if np.allclose(got, expected, rtol=rtol, atol=atol * scale):
        return None
    return f"max abs error {float(np.nanmax(np.abs(got.astype(np.float64) - expected))):.3g} against the numpy reference"


def write_json_atomically(path: str, data: dict) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".results-", dir=directory)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# --------------------------------------------------------------------------- backends


class CupyBackend:
    name = "cupy"

    def __init__(self):
        import cupy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise NoGPU("CuPy sees no CUDA device")
        self.cp = cupy
        props = cupy.cuda.runtime.getDeviceProperties(0)
        self.device = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])

    def compile(self, source: str, names: list[str], arch: str):
        options = ("-std=c++17",)
        try:
            module = self.cp.RawModule(code=source, options=options)
            return {n: module.get_function(n) for n in names}
        except Exception:  # noqa: BLE001 - NVRTC may lack headers nvcc has; try nvcc
            module = self.cp.RawModule(code=source, options=options, backend="nvcc")
            return {n: module.get_function(n) for n in names}

    def array(self, host: np.ndarray):
        return self.cp.asarray(host)

    def empty(self, dtype: str, count: int):
        return self.cp.empty(count, dtype=dtype)

    def to_host(self, arr) -> np.ndarray:
        return self.cp.asnumpy(arr)

    def launch(self, fn, kernel: dict, args: list) -> None:
        fn(tuple(kernel["grid"]), tuple(kernel["block"]), tuple(args))

    def event(self):
        return self.cp.cuda.Event()

    def record(self, event):
        event.record()

    def elapsed_s(self, start, end) -> float:
        end.synchronize()
        return self.cp.cuda.get_elapsed_time(start, end) / 1e3

    def sync(self):
        self.cp.cuda.Device().synchronize()


class TorchBackend:
    """torch for memory and CUDA events, nvcc for the cubin, the driver API through ctypes."""

    name = "torch"

    def __init__(self):
        import ctypes
        import shutil

        import torch

        if not torch.cuda.is_available():
            raise NoGPU("torch.cuda.is_available() is False")
        self.nvcc = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if os.path.exists("/usr/local/cuda/bin/nvcc") else None)
        if self.nvcc is None:
            raise NoGPU("without CuPy, nvcc is needed to compile the candidates and none was found")
        self.torch = torch
        torch.zeros(1, device="cuda")           # makes the primary context current
        self.cuda = ctypes.CDLL("libcuda.so.1")
        self.ctypes = ctypes
        self.device = torch.cuda.get_device_name(0)

    def _check(self, status, what):
        if status != 0:
            raise RuntimeError(f"{what} failed with CUDA driver error {status}")

    def compile(self, source: str, names: list[str], arch: str):
        ct = self.ctypes
        with tempfile.TemporaryDirectory() as tmp:
            src, out = os.path.join(tmp, "k.cu"), os.path.join(tmp, "k.cubin")
            with open(src, "w") as f:
                f.write(source)
            proc = subprocess.run([self.nvcc, f"-arch={arch}", "-cubin", "-o", out, src], capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError("nvcc: " + " ".join((proc.stderr or proc.stdout).split())[:300])
            with open(out, "rb") as f:
                image = f.read()
        module = ct.c_void_p()
        self._check(self.cuda.cuModuleLoadData(ct.byref(module), ct.c_char_p(image)), "cuModuleLoadData")
        functions = {}
        for n in names:
            fn = ct.c_void_p()
            self._check(self.cuda.cuModuleGetFunction(ct.byref(fn), module, n.encode()), f"cuModuleGetFunction({n})")
            functions[n] = fn
        return functions

    def array(self, host: np.ndarray):
        return self.torch.from_numpy(np.ascontiguousarray(host)).cuda()

    def empty(self, dtype: str, count: int):
        return self.torch.empty(count, dtype=getattr(self.torch, dtype), device="cuda")

    def to_host(self, arr) -> np.ndarray:
        return arr.cpu().numpy()

    def launch(self, fn, kernel: dict, args: list) -> None:
        ct = self.ctypes
        pointers = [ct.c_void_p(a.data_ptr()) for a in args]
        params = (ct.c_void_p * len(pointers))(*[ct.cast(ct.byref(p), ct.c_void_p) for p in pointers])
        stream = ct.c_void_p(self.torch.cuda.current_stream().cuda_stream)
        g, b = kernel["grid"], kernel["block"]
        self._check(self.cuda.cuLaunchKernel(fn, g[0], g[1], g[2], b[0], b[1], b[2], 0, stream, params, None),
                    "cuLaunchKernel")

    def event(self):
        return self.torch.cuda.Event(enable_timing=True)

    def record(self, event):
        event.record()

    def elapsed_s(self, start, end) -> float:
        end.synchronize()
        return start.elapsed_time(end) / 1e3

    def sync(self):
        self.torch.cuda.synchronize()


def make_backend(preferred: str = "auto"):
    """CuPy if it can reach a GPU, else torch; NoGPU says why neither can. ``module:Class``
    names a backend of one's own with the same methods (another GPU library, or a fake one in
    tests), importable from the working directory or PYTHONPATH."""
    if ":" in preferred:
        import importlib

        module, cls = preferred.split(":", 1)
        return getattr(importlib.import_module(module), cls)()
    reasons = []
    for cls in (CupyBackend, TorchBackend):
        if preferred not in ("auto", cls.name):
            continue
        try:
            return cls()
        except ImportError as e:
            reasons.append(f"{cls.name} is not installed ({e.name or e})")
        except NoGPU as e:
            reasons.append(f"{cls.name}: {e}")
        except Exception as e:  # noqa: BLE001 - a broken driver is also "no usable GPU"
            reasons.append(f"{cls.name}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    raise NoGPU("; ".join(reasons) or f"unknown backend {preferred!r}")


# --------------------------------------------------------------------------- one candidate


def measure_candidate(backend, batch: dict, directory: str, cand: dict, inputs_cache: dict) -> dict:
    """Compile, check and time one candidate; every failure is a result, not an exception."""
    task = batch["tasks"][cand["task"]]
    result = {"id": cand["id"], "task": cand["task"], "config": cand["config"], "costs": [], "error": "ok",
              "message": "", "compile_s": 0.0, "run_s": 0.0}
    start = time.perf_counter()
    try:
        with open(os.path.join(directory, cand["source"]), encoding="utf-8") as f:
            source = f.read()
        functions = backend.compile(source, [k["name"] for k in cand["kernels"]], batch["arch"])
    except Exception as e:  # noqa: BLE001
        result.update(error="build_error", message=_line(e), compile_s=time.perf_counter() - start)
        return result
    result["compile_s"] = time.perf_counter() - start
    start = time.perf_counter()
    try:
        if cand["task"] not in inputs_cache:
            inputs_cache.clear()
            host = {i["name"]: np.load(os.path.join(directory, i["file"])) for i in task["inputs"]}
            expected = np.load(os.path.join(directory, task["output"]["file"]))
            inputs_cache[cand["task"]] = ({n: backend.array(a) for n, a in host.items()}, expected)
        device_inputs, expected = inputs_cache[cand["task"]]
        out = backend.array(np.full(expected.shape, np.nan, dtype=expected.dtype))
        buffers = dict(device_inputs)
        buffers[task["output"]["name"]] = out
        for name, (dtype, count) in cand.get("workspaces", {}).items():
            buffers[name] = backend.empty(dtype, count)
        calls = [(functions[k["name"]], k, [buffers[p] for p in k["params"]]) for k in cand["kernels"]]

        def run_once():
            for fn, kernel, args in calls:
                backend.launch(fn, kernel, args)

        run_once()
        backend.sync()
    except Exception as e:  # noqa: BLE001 - launch errors usually leave the context unusable
        result.update(error="runtime_error", message=_line(e), run_s=time.perf_counter() - start)
        result["fatal"] = True
        return result
    wrong = mismatch(backend.to_host(out), expected, *task["tolerance"])
    if wrong:
        result.update(error="wrong_result", message=wrong, run_s=time.perf_counter() - start)
        return result
    result["costs"] = time_calls(backend, run_once, batch.get("repeat", 5), batch.get("min_sample_ms", 1.0))
    result["run_s"] = time.perf_counter() - start
    return result


def time_calls(backend, run_once, repeat: int, min_sample_ms: float) -> list[float]:
    """Seconds per call, one value per sample; a sample repeats the call ``number`` times, with
    ``number`` chosen so that a sample lasts at least ``min_sample_ms``."""
    begin, end = backend.event(), backend.event()
    backend.record(begin)
    run_once()
    backend.record(end)
    first = max(backend.elapsed_s(begin, end), 1e-7)
    number = max(1, min(1000, math.ceil(min_sample_ms / 1e3 / first)))
    costs = []
    for _ in range(repeat):
        backend.record(begin)
        for _ in range(number):
            run_once()
        backend.record(end)
        costs.append(backend.elapsed_s(begin, end) / number)
    return costs


def _line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:300]


# --------------------------------------------------------------------------- worker and parent


def worker_main(directory: str, backend_name: str) -> int:
    """Read candidate indices from stdin, answer one JSON line each on stdout."""
    batch = read_batch(directory)
    try:
        backend = make_backend(backend_name)
    except NoGPU as e:
        print(json.dumps({"no_gpu": str(e)}), flush=True)
        return EXIT_NO_GPU
    except Exception as e:  # noqa: BLE001 - a backend of one's own that does not load
        print(json.dumps({"no_gpu": f"backend {backend_name}: {_line(e)}"}), flush=True)
        return EXIT_NO_GPU
    print(json.dumps({"ready": backend.name, "device": backend.device}), flush=True)
    cache: dict = {}
    for line in sys.stdin:
        cand = batch["candidates"][int(line)]
        result = measure_candidate(backend, batch, directory, cand, cache)
        fatal = result.pop("fatal", False)
        print(json.dumps(result), flush=True)
        if fatal:
            return 1
    return 0


class _Worker:
    def __init__(self, directory: str, backend: str, start_timeout: float):
        here = os.path.abspath(__file__)
        self.proc = subprocess.Popen([sys.executable, here, "--worker", "--backend", backend, directory],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        hello = self.read(start_timeout)
        if hello is None:
            self.kill()
            raise NoGPU(f"the measuring worker did not start within {start_timeout:g} s")
        if "no_gpu" in hello or "crashed" in hello:
            self.kill()
            raise NoGPU(hello.get("no_gpu") or f"the measuring worker exited with status {hello['crashed']}")
        self.backend, self.device = hello["ready"], hello["device"]

    def read(self, timeout: float):
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return None
        line = self.proc.stdout.readline()
        return json.loads(line) if line else {"crashed": self.proc.wait()}

    def ask(self, index: int, timeout: float):
        try:
            self.proc.stdin.write(f"{index}\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            return {"crashed": self.proc.wait()}
        return self.read(timeout)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def run_batch(directory: str, backend: str = "auto", timeout: float | None = None, log=print) -> dict:
    """Measure every candidate of DIR/batch.json; writes and returns the results."""
    batch = read_batch(directory)
    timeout = timeout or float(batch.get("timeout_s", 10.0))
    partial = os.path.join(directory, "results.jsonl.part")
    started = time.time()
    results, worker = [], _Worker(directory, backend, start_timeout=120.0)   # NoGPU before any file
    device = (worker.device, worker.backend)
    with open(partial, "w", encoding="utf-8") as progress:
        for index, cand in enumerate(batch["candidates"]):
            if worker is None:
                worker = _Worker(directory, backend, start_timeout=120.0)
            t0 = time.perf_counter()
            answer = worker.ask(index, timeout)
            base = {"id": cand["id"], "task": cand["task"], "config": cand["config"], "costs": [],
                    "compile_s": 0.0, "run_s": time.perf_counter() - t0}
            if answer is None:
                worker.kill()
                worker = None
                answer = {**base, "error": "run_timeout", "message": f"no answer within {timeout:g} s (hang?)"}
            elif "crashed" in answer:
                worker = None
                answer = {**base, "error": "worker_crashed", "message": f"worker exited with status {answer['crashed']}"}
            elif worker.proc.poll() is not None or answer.get("error") == "runtime_error":
                worker.kill()
                worker = None
            results.append(answer)
            progress.write(json.dumps(answer) + "\n")
            progress.flush()
            log(f"[{index + 1}/{len(batch['candidates'])}] {cand['id']} {answer['error']}"
                + (f" {statistics.median(answer['costs']) * 1e6:.1f} us" if answer["costs"] else f" {answer['message']}"))
    if worker is not None:
        worker.proc.stdin.close()
        worker.kill()
    out = results_document(batch, results, device[0], device[1], time.time() - started)
    write_json_atomically(os.path.join(directory, "results.json"), out)
    os.remove(partial)
    return out


def results_document(batch: dict, results: list[dict], device: str, backend: str, wall_s: float) -> dict:
    """What results.json holds: the results in batch order and how they were measured."""
    return {"format": RESULTS_FORMAT, "batch": batch.get("id", ""), "target": batch["target"], "device": device,
            "backend": backend, "date": time.strftime("%Y-%m-%d %H:%M:%S"), "wall_s": round(wall_s, 2),
            "how": f"CUDA events, {batch.get('repeat', 5)} samples per candidate, each >= "
                   f"{batch.get('min_sample_ms', 1.0)} ms; costs in seconds per call of all the candidate's kernels",
            "results": results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="remote_cuda", description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", help="a batch directory written by 'tvmopt cuda export'")
    parser.add_argument("--backend", default="auto",
                        help="auto (CuPy, else torch), cupy, torch, or module:Class of your own (default: auto)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per candidate (default: the batch's)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker_main(args.directory, args.backend)
    try:
        read_batch(args.directory)
    except (OSError, ValueError, KeyError) as e:
        print(f"remote_cuda: error: cannot read the batch in '{args.directory}': {_line(e)}", file=sys.stderr)
        return 2
    try:
        out = run_batch(args.directory, args.backend, args.timeout)
    except NoGPU as e:
        print(f"remote_cuda: error: no usable CUDA GPU here ({e}); nothing was measured", file=sys.stderr)
        return EXIT_NO_GPU
    ok = sum(r["error"] == "ok" for r in out["results"])
    print(f"wrote {os.path.join(args.directory, 'results.json')}: {ok} of {len(out['results'])} candidates ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
