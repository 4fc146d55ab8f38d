"""Build, check and time candidate configs in worker processes.

Builds run in parallel in persistent workers; runs go one at a time through a single runner
worker so that timings do not fight over cores. Every deadline is enforced by the parent: a
candidate that hangs (even inside native code holding the GIL) or kills its worker is
recorded with its error kind and the worker is restarted; tuning goes on.
"""

from __future__ import annotations

import functools
import math
import os
import select
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Sequence

from tvmopt.errors import one_line
from tvmopt.schedules.space import Config, config_from_json, config_to_json
from tvmopt.target import TargetSpec
from tvmopt.measure.base import ErrorKind, MeasureResult, Measurer  # noqa: F401  (re-exported)
from tvmopt.measure.settle import quiesce


# --------------------------------------------------------------------------- worker side


def _warm_up(env: dict[str, str]) -> None:
    """Runs once per worker: set its environment, pay TVM's import cost up front, and make
    sure the worker dies with its parent."""
    os.environ.update(env)  # before TVM's thread pool starts, which reads TVM_NUM_THREADS
    _die_with_parent()
    import tvm  # noqa: F401

    from tvmopt.ops.registry import families

    families(internal=True)            # every op family (and plugin) imported once, here


def _die_with_parent() -> None:
    """A worker must not outlive a ``tvmopt`` killed with SIGKILL: its pipe never reaches EOF,
    since sibling workers inherited the other end. On Linux the kernel kills it with the parent
    (PR_SET_PDEATHSIG); elsewhere, and as a second guard, a thread watches the parent's pid."""
    import threading

    parent = os.getppid()
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=watch, daemon=True, name="tvmopt-parent-watch").start()


def _in_worker(fn):
    """Re-raise a worker-side failure as one short line (the parent shows nothing else)."""

    @functools.wraps(fn)
    def wrapper(*args):
        try:
            return fn(*args)
        except Exception as e:  # noqa: BLE001 - every failure of a candidate is data
            raise RuntimeError(one_line(e)) from None

    return wrapper


@_in_worker
def _build(task_key: str, config_json: list, target_json: str, out_path: str) -> float:
    """Schedule and compile one config into a shared library; returns build seconds. A CUDA
    target builds the task's CUDA view (its CUDA space) with ``tvm.compile``'s own pipeline,
    as ``tvmopt cuda check`` and model builds do."""
    import tvm

    from tvmopt.ops.task import task_for
    from tvmopt.schedules import isa, lowering

    start = time.perf_counter()
    spec = TargetSpec.from_json(target_json)
    target = spec.tvm_target()
    # the schedule's vector choices for the target's registers, as a model build makes them (AVX2
    # code tuned on an AVX-512 host was scheduled for the host's zmm)
    with isa.use(isa.for_target(spec)):
        task = task_for(task_key, spec.kind)
        mod = task.schedule(config_from_json(config_json), target)
    exe = tvm.compile(mod, target=target) if spec.kind == "cuda" else lowering.compile(mod, target)
    exe.export_library(out_path)
    return time.perf_counter() - start


_INPUTS_CACHE: dict[str, tuple] = {}


def _inputs_and_reference(task_key: str, seed: int):
    """Inputs and the numpy reference, computed once per task in this worker."""
    import numpy as np

    from tvmopt.ops.task import get_task

    cache_key = f"{task_key}#{seed}"
    if cache_key not in _INPUTS_CACHE:
        _INPUTS_CACHE.clear()
        task = get_task(task_key)
        inputs = task.make_inputs(np.random.default_rng(seed))
        _INPUTS_CACHE[cache_key] = (task, inputs, task.reference(inputs))
    return _INPUTS_CACHE[cache_key]


def _load(lib_path: str, target_json: str):
    import tvm

    spec = TargetSpec.from_json(target_json)
    dev = tvm.cuda(0) if spec.kind == "cuda" else tvm.cpu(0)
    lib = tvm.runtime.load_module(lib_path)
    return lib, lib[_entry_name(lib)], dev


def _entry_name(lib) -> str:
    for name in ("main", "default_function"):
        if lib.implements_function(name, query_imports=True):
            return name
    raise RuntimeError("compiled module has no 'main' function")


@_in_worker
def _run(task_key: str, lib_path: str, target_json: str, repeat: int, min_repeat_ms: int, seed: int,
         slow_s: float, flush: bool = False):
    """Check one compiled candidate against the reference, then time it (see check_and_time)."""
    task, inputs, expected = _inputs_and_reference(task_key, seed)
    lib, _, dev = _load(lib_path, target_json)
    key = f"{task_key}#{seed}"
    buffers = _BUFFERS.get(key)
    if buffers is None:
        _BUFFERS.clear()
        buffers = _BUFFERS[key] = _device_buffers(dev, inputs, expected)
    return check_and_time(lib, _entry_name(lib), dev, task, inputs, expected, repeat, min_repeat_ms, slow_s,
                          buffers, flush)


#: the runner's input and output tensors for its current task. Every candidate of a task runs on
#: the same allocations: fresh ones per candidate put inputs, weights and output at new relative
#: offsets each time, and on a 128x3072x768 dense that alone made one config's timings jump
#: between 1.5 and 2.5 ms from one call to the next.
_BUFFERS: dict[str, tuple] = {}


def _device_buffers(dev, inputs, expected):
    import numpy as np
    import tvm

    return [tvm.runtime.tensor(x, dev) for x in inputs], tvm.runtime.tensor(np.zeros(expected.shape, expected.dtype), dev)


def check_and_time(lib, entry: str, dev, task, inputs, expected, repeat: int, min_repeat_ms: int, slow_s: float,
                   buffers=None, flush: bool = False):
    """Run ``lib[entry]`` once on ``dev`` (local or an RPC session's), compare with the numpy
    reference, then time it with TVM's time evaluator. ``buffers`` (input tensors, output
    tensor) are reused when given, refilled first.

    A candidate whose checking run alone takes longer than ``slow_s`` is far from any good
    config: that one timing is its cost, which spares the repeats.
    ``flush``: every timed call runs after the caches were flushed of all its arguments but the
    first (weights and output cold, the input as the layer before left it: a layer in a model),
    as AutoTVM's ``enable_cpu_cache_flush``; the calls of ``repeat`` x ``min_repeat_ms`` give
    ``repeat`` costs, each the median of its share.
    Returns ("ok", costs) or ("wrong", message).
    """
    import numpy as np

    func = lib[entry]
    if buffers is None:
        buffers = _device_buffers(dev, inputs, expected)
    else:  # reused: contents restored, so no candidate sees what an earlier one left behind
        for tensor, x in zip(buffers[0], inputs):
            tensor.copyfrom(x)
        buffers[1].copyfrom(np.zeros(expected.shape, expected.dtype))
    args, out = buffers
    start = time.perf_counter()
    func(*args, out)
    dev.sync()
    first_s = time.perf_counter() - start
    wrong = task.mismatch(out.numpy(), expected)
    if wrong:
        return "wrong", wrong
    if first_s > slow_s:
        return "ok", (first_s,)
    if flush:
        calls = max(COLD_CALLS[0], min(COLD_CALLS[1], int(repeat * min_repeat_ms * 1e-3 / max(first_s, 1e-6))))
        calls = -(-calls // repeat) * repeat
        timer = lib.time_evaluator(entry, dev, number=1, repeat=calls, f_preproc="cache_flush_cpu_non_first_arg")
    else:
        timer = lib.time_evaluator(entry, dev, number=1, repeat=repeat, min_repeat_ms=min_repeat_ms)
    # warm-up, untimed: the cores come back to speed only after tens of milliseconds of work.
    # Without it the first candidate of a fresh runner timed 1.9x slow (conv2d:1x128x28x28x128,
    # the same config: repeats of 3.0, 3.0 and 1.6 ms, then 1.5 to 1.6 ms), and one measured
    # after 2 s idle 1.3x slow; a tuner then left the heuristic start on a false cost
    lib.time_evaluator(entry, dev, number=1, repeat=1, min_repeat_ms=WARM_UP_MS)(*args, out)
    costs = tuple(timer(*args, out).results)
    if flush:
        costs = tuple(statistics.median(costs[i::repeat]) for i in range(repeat))
    return "ok", costs


#: the fewest and most single calls a candidate is timed in with ``flush``
COLD_CALLS = (9, 300)


#: milliseconds each candidate runs untimed before its repeats (see check_and_time)
WARM_UP_MS = 50


def _time_against_numpy(task_key: str, lib_path: str, target_json: str, rounds: int, seed: int):
    """Interleave timing of the compiled kernel and numpy (and torch) on the same inputs."""
    import numpy as np
    import tvm

    task, inputs, expected = _inputs_and_reference(task_key, seed)
    lib, func, dev = _load(lib_path, target_json)
    args = [tvm.runtime.tensor(x, dev) for x in inputs]
    out = tvm.runtime.tensor(np.zeros(expected.shape, expected.dtype), dev)
    timer = lib.time_evaluator(_entry_name(lib), dev, number=1, repeat=1, min_repeat_ms=100)
    refs = {"numpy": task.numpy_product(inputs)}
    torch_ref = getattr(task, "torch_reference", None)
    if torch_ref is not None:
        tensors = torch_ref.prepare(inputs)
        refs["torch"] = lambda: torch_ref(tensors)
    samples: dict[str, list[float]] = {"tvm": [], **{k: [] for k in refs}}
    contenders = {"tvm": lambda: timer(*args, out).mean, **{k: _timed(fn) for k, fn in refs.items()}}
    for _ in range(rounds):
        for name, timed in contenders.items():
            # the previous library's spinning worker threads go to sleep first, so each
            # contender has the cores to itself (alternation cancels slow drifts)
            quiesce()
            samples[name].append(timed())
    return {k: statistics.median(v) for k, v in samples.items()}


def _timed(fn):
    def run():
        fn()  # warm call: thread pool wake-up and caches
        return _time_python(fn, 0.1)

    return run


def _time_python(fn, min_seconds: float) -> float:
    n, start = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return elapsed / n


# --------------------------------------------------------------------------- parent side


class _Worker:
    """One persistent worker process with a parent-enforced deadline per call."""

    def __init__(self, env: dict[str, str] | None = None):
        from tvmopt.measure.popen_worker import worker_class

        self._worker = worker_class()(initializer=_warm_up, initargs=(env or {},), stdout=_DEVNULL, stderr=_DEVNULL)

    def call(self, fn, args: tuple, timeout: float):
        """Returns ("ok", value) | ("error", message) | ("timeout", None) | ("crashed", message)."""
        self._worker.send(fn, args)
        ready, _, _ = select.select([self._worker._reader], [], [], timeout)
        if not ready:
            self._worker.kill()
            return "timeout", None
        proc = self._worker._proc
        try:
            return "ok", self._worker.recv()
        except ChildProcessError:
            self._worker.kill()  # reaps the process, so its return code is known
            return "crashed", f"worker process died{_signal_name(proc.returncode)}"
        except Exception as e:  # noqa: BLE001 - any exception raised by the candidate
            return "error", _last_line(str(e))

    def close(self) -> None:
        self._worker.kill()


_DEVNULL = open(os.devnull, "wb")  # noqa: SIM115 - lives as long as the module


def _signal_name(code) -> str:
    if isinstance(code, int) and code < 0:
        import signal

        try:
            return f" ({signal.Signals(-code).name})"
        except ValueError:
            return f" (signal {-code})"
    return ""


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    line = lines[-1] if lines else "unknown error"
    return line.removeprefix("RuntimeError: ")[:300]


@dataclass
class LocalMeasurer(Measurer):
    """Measure on this machine: parallel builds, serial runs, parent-side deadlines."""

    target: TargetSpec
    n_build: int = max(1, min(4, os.cpu_count() or 1))
    build_timeout: float = 60.0
    run_timeout: float = 20.0
    repeat: int = 3
    min_repeat_ms: int = 40
    slow_s: float = 0.5  # a checking run slower than this is the candidate's only timing
    seed: int = 0
    flush: bool = False  # time single calls with weights and output flushed from the caches (check_and_time)
    _builders: list = field(default_factory=list, init=False, repr=False)
    _runner: _Worker | None = field(default=None, init=False, repr=False)
    _tmp: str = field(default="", init=False, repr=False)

    def __post_init__(self):
        _remove_orphaned_dirs()
        self._tmp = tempfile.mkdtemp(prefix=f"tvmopt-measure-{os.getpid()}-")
        threads = str(self.target.config.get("num-cores", 1))
        # builders compile with one thread each so parallel builds do not oversubscribe
        self._builders = [_Worker({"TVM_NUM_THREADS": "1"}) for _ in range(self.n_build)]
        self._runner = _Worker({"TVM_NUM_THREADS": threads})
        self._pool = ThreadPoolExecutor(self.n_build)
        self._counter = 0

    def _lib_path(self) -> str:
        self._counter += 1
        return os.path.join(self._tmp, f"cand{self._counter}.so")

    def build(self, task_key: str, configs: Sequence[Config]) -> list[tuple[str | None, MeasureResult | None, float]]:
        """Build configs in parallel: (lib path, failure or None, build seconds) each."""
        target_json = self.target.to_json()
        jobs = [(c, self._lib_path()) for c in configs]

        def one(i_job):
            i, (config, path) = i_job
            worker = self._builders[i % len(self._builders)]
            start = time.perf_counter()
            status, value = worker.call(_build, (task_key, config_to_json(config), target_json, path),
                                        self.build_timeout)
            elapsed = time.perf_counter() - start
            if status == "ok":
                return path, None, value
            kind = {"timeout": ErrorKind.BUILD_TIMEOUT, "crashed": ErrorKind.WORKER_CRASHED}.get(
                status, ErrorKind.BUILD_ERROR)
            msg = value or f"build took longer than {self.build_timeout:g} s"
            return None, MeasureResult((), kind, elapsed, 0.0, msg), elapsed

        # worker i serves jobs i, i+n, ...: each builder thread runs its own jobs in order
        groups = [list(enumerate(jobs))[w::len(self._builders)] for w in range(len(self._builders))]
        results: dict[int, tuple] = {}

        def run_group(group):
            for item in group:
                results[item[0]] = one(item)

        list(self._pool.map(run_group, groups))
        return [results[i] for i in range(len(jobs))]

    def measure(self, task_key: str, configs: Sequence[Config]) -> list[MeasureResult]:
        out = []
        target_json = self.target.to_json()
        for path, failure, build_s in self.build(task_key, configs):
            if failure is not None:
                out.append(failure)
                continue
            start = time.perf_counter()
            status, value = self._runner.call(
                _run, (task_key, path, target_json, self.repeat, self.min_repeat_ms, self.seed, self.slow_s,
                       self.flush), self.run_timeout)
            run_s = time.perf_counter() - start
            _remove(path)
            if status == "ok" and value[0] == "ok":
                out.append(MeasureResult(tuple(value[1]), ErrorKind.OK, build_s, run_s))
            elif status == "ok":
                out.append(MeasureResult((), ErrorKind.WRONG_RESULT, build_s, run_s, value[1]))
            elif status == "timeout":
                out.append(MeasureResult((), ErrorKind.RUN_TIMEOUT, build_s, run_s,
                                         f"run took longer than {self.run_timeout:g} s"))
            elif status == "crashed":
                out.append(MeasureResult((), ErrorKind.WORKER_CRASHED, build_s, run_s, value))
            else:
                out.append(MeasureResult((), ErrorKind.RUNTIME_ERROR, build_s, run_s, value))
        return out

    def remeasure(self, task_key: str, configs: Sequence[Config], rounds: int = 5) -> list[tuple[float, ...]]:
        """Time ``configs`` again, interleaved: each is built once, then every round runs all of
        them in turn (the order rotating), so slow drifts of the machine hit every config alike.
        One sample per round and config (the median of its repeats); () for a config that failed."""
        built = self.build(task_key, configs)
        target_json = self.target.to_json()
        samples: list[list[float]] = [[] for _ in configs]
        failed = [path is None for path, _, _ in built]
        try:
            for r in range(rounds):
                order = list(range(len(configs)))
                order = order[r % max(1, len(order)):] + order[: r % max(1, len(order))]
                for i in order:
                    if failed[i]:
                        continue
                    status, value = self._runner.call(
                        _run, (task_key, built[i][0], target_json, self.repeat, self.min_repeat_ms, self.seed,
                               math.inf, self.flush), self.run_timeout)
                    if status == "ok" and value[0] == "ok":
                        samples[i].append(statistics.median(value[1]))
                    else:
                        failed[i] = True
                        samples[i] = []
        finally:
            for path, _, _ in built:
                if path is not None:
                    _remove(path)
        return [tuple(s) for s in samples]

    def compare_with_references(self, task_key: str, config: Config, rounds: int = 7) -> dict[str, float]:
        """Median seconds of ``config`` and of numpy/torch on the same inputs, interleaved."""
        path, failure, _ = self.build(task_key, [config])[0]
        if failure is not None:
            raise RuntimeError(f"cannot build config for comparison: {failure.message}")
        status, value = self._runner.call(
            _time_against_numpy, (task_key, path, self.target.to_json(), rounds, self.seed),
            self.run_timeout * rounds)
        _remove(path)
        if status != "ok":
            raise RuntimeError(f"comparison run failed: {status} {value or ''}")
        return value

    def close(self) -> None:
        for w in self._builders:
            w.close()
        if self._runner is not None:
            self._runner.close()
        self._pool.shutdown(wait=False)
        shutil.rmtree(self._tmp, ignore_errors=True)


def _remove_orphaned_dirs() -> None:
    """Delete candidate directories left by measurers whose process is gone (a ``kill -9``
    skips ``close``). The directory name holds its owner's pid; a live pid's is kept."""
    import glob

    for path in glob.glob(os.path.join(tempfile.gettempdir(), "tvmopt-measure-*-*")):
        try:
            pid = int(os.path.basename(path).split("-")[2])
            os.kill(pid, 0)
        except (ValueError, IndexError):
            continue
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:            # alive, another user's
            continue


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass
