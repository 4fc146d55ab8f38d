"""The measurer survives candidates that crash, hang, fail to build or compute garbage."""

import math

import pytest

from tvmopt.measure.base import ErrorKind
from tvmopt.measure.local import LocalMeasurer
from tvmopt.testing.faults import BEHAVIOURS
from tvmopt.ops.task import get_task

EXPECTED = {
    "ok": ErrorKind.OK,
    "wrong": ErrorKind.WRONG_RESULT,
    "build_error": ErrorKind.BUILD_ERROR,
    "build_hang": ErrorKind.BUILD_TIMEOUT,
    "segfault": ErrorKind.WORKER_CRASHED,
    "abort": ErrorKind.WORKER_CRASHED,
    "hang": ErrorKind.RUN_TIMEOUT,
}


@pytest.fixture(scope="module")
def measurer(llvm_target):
    m = LocalMeasurer(llvm_target, n_build=2, build_timeout=8, run_timeout=4)
    yield m
    m.close()


def test_each_fault_gets_its_error_kind(measurer):
    assert set(EXPECTED) == set(BEHAVIOURS)
    order = ["segfault", "ok", "hang", "wrong", "build_hang", "abort", "build_error", "ok"]
    results = measurer.measure("fault:16", [(b,) for b in order])
    for behaviour, result in zip(order, results):
        assert result.error == EXPECTED[behaviour], (behaviour, result)
        if behaviour == "ok":
            assert len(result.costs) == measurer.repeat and 0 < result.cost < 0.01
        else:
            assert result.cost == math.inf and result.message
    assert "SIGSEGV" in results[0].message
    assert "max abs error" in results[3].message


def test_real_gemm_candidates_are_timed(measurer):
    task = get_task("gemm:64x48x32")
    configs = [task.space.initial(), ((2, 2, 4, 4), (1, 3, 1, 16), (4, 8), True, "local", 16, True, 2)]
    results = measurer.measure(task.key, configs)
    for r in results:
        assert r.error == ErrorKind.OK, r.message
        assert r.build_s > 0 and r.run_s > 0 and 0 < r.cost < 0.05


def test_slow_candidate_gets_its_checking_run_as_only_timing(measurer):
    task = get_task("gemm:64x48x32")
    old = measurer.slow_s
    measurer.slow_s = 0.0  # every candidate counts as slow
    try:
        (result,) = measurer.measure(task.key, [task.space.initial()])
    finally:
        measurer.slow_s = old
    assert result.error == ErrorKind.OK and len(result.costs) == 1 and result.cost > 0


def test_flushed_timing_gives_one_cost_per_repeat_and_still_checks_results(llvm_target):
    """--flush-cache: single calls after the weights and output were flushed (TVM's
    cache_flush_cpu_non_first_arg), their medians one cost per repeat; a wrong candidate is
    still caught before any timing."""
    m = LocalMeasurer(llvm_target, n_build=1, build_timeout=8, run_timeout=8, flush=True)
    try:
        task = get_task("gemm:64x48x32")
        (ok,) = m.measure(task.key, [task.space.initial()])
        wrong, good = m.measure("fault:16", [("wrong",), ("ok",)])
        (again,) = m.remeasure(task.key, [task.space.initial()], rounds=2)
    finally:
        m.close()
    assert ok.error == ErrorKind.OK, ok.message
    assert len(ok.costs) == m.repeat and all(0 < c < 0.05 for c in ok.costs)
    assert wrong.error == ErrorKind.WRONG_RESULT and good.error == ErrorKind.OK
    assert len(again) == 2 and all(0 < c < 0.05 for c in again)


def _spinner(seconds: float, stop):
    """A thread that keeps a core busy for ``seconds`` (or until ``stop`` is set), as a runtime's
    worker does after a call."""
    import threading
    import time

    def spin():
        end = time.perf_counter() + seconds
        while time.perf_counter() < end and not stop.is_set():
            pass

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    return thread


def test_quiesce_waits_for_a_spinning_thread_and_gives_up_on_one_that_never_stops():
    import threading

    from tvmopt.measure import settle

    if settle._run_ns() is None:
        pytest.skip("no /proc/self/task/*/schedstat here: quiesce falls back to a fixed pause")
    settle.quiesce()                     # whatever earlier tests left spinning
    stop = threading.Event()
    thread = _spinner(0.4, stop)
    waited = settle.quiesce()
    thread.join()
    assert 0.3 <= waited < 2.0           # it waited for the spinner, which ran 0.4 s from its start
    thread = _spinner(60.0, stop)
    try:
        assert settle.quiesce(max_wait=0.3) < 0     # a spinner that never stops: it says so
    finally:
        stop.set()
        thread.join()
    assert 0 <= settle.quiesce() < 1.0   # nothing spins now: it returns within a few windows


def test_other_load_counts_other_processes_and_not_this_one(monkeypatch):
    import os
    import subprocess
    import sys
    import time

    from tvmopt.measure import settle

    if settle._machine_busy_s() is None:
        pytest.skip("no /proc/stat here: OtherLoad says None")
    # a process of its own that keeps one core busy for the whole block: at least most of a core
    # is someone else's (more where other work shares the machine, as on CI)
    busy = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 1.5\nwhile time.time() < end: pass"])
    try:
        time.sleep(0.2)
        with settle.OtherLoad() as load:
            time.sleep(1.0)
    finally:
        busy.wait()
    assert load.share * (os.cpu_count() or 1) > 0.7, load.share

    # the arithmetic, on counters that move as told: 3 s of the machine's busy time in a 1 s
    # block on 4 CPUs, 1 s of it this process's own: others used 2 of 4 CPU-seconds
    clock = iter([10.0, 11.0])
    machine, own = iter([100.0, 103.0]), iter([5.0, 6.0])
    monkeypatch.setattr(settle, "_machine_busy_s", lambda: next(machine))
    monkeypatch.setattr(settle, "_own_s", lambda: next(own))
    monkeypatch.setattr(settle.time, "perf_counter", lambda: next(clock, 11.0))   # (the same after the block)
    monkeypatch.setattr(settle.os, "cpu_count", lambda: 4)
    with settle.OtherLoad() as load:
        pass
    assert load.share == pytest.approx(0.5)
