"""Waiting until the other threads of this process are idle before a timing starts.

Every runtime a benchmark or the measurer's reference timing loads keeps worker threads that spin
a while after each call before they sleep: TVM's thread pool yields in a loop 300,000 times
(``TVM_THREAD_POOL_SPIN_COUNT``), which on Zen 4 kept its pinned worker at 100% of a core for
about 150 ms after every parallel call; onnxruntime's and the BLAS libraries' pools spin too. A
contender timed while another's worker still spins shares the two cores with it: with 50 ms
pauses, onnxruntime's 1 x 1024 x 1024 product read 42 to 75 us and tvmopt's 28 to 61 us in the
same process (each 31 to 36 us in a process of its own), and fixed pauses shorter than the spin
(0.02 to 0.1 s in several benchmarks) let the next contender start on a shared core.

The threads' placement is the other trap at these sizes: a runtime's floating worker that the
scheduler leaves on its caller's core for a few milliseconds runs the call at half speed (read
from each thread's CPU in ``/proc``: onnxruntime 62 us with its worker beside the caller, 34 us
apart). ``benchmarks/report.median_seconds`` (the median per call over a window of 30 ms or
more) rides that out: after :func:`quiesce`, 1 x 1024 x 1024 read 25 us for tvmopt and 29 to
30 us for onnxruntime in each of 9 interleaved rounds.

:func:`quiesce` polls the threads' run time (``/proc/self/task/*/schedstat``, nanoseconds) and
returns once the others have run less than :data:`QUIET_NS` in a window; where ``/proc`` has no
schedstat it falls back to a fixed pause longer than TVM's spin.

:class:`OtherLoad` says afterwards how much of the machine other processes took while a timing
ran (``/proc/stat`` less this process's own CPU time), so a result measured on a busy machine
can say so.
"""

from __future__ import annotations

import os
import threading
import time

#: the pause used where the threads' run time cannot be read (longer than TVM's ~150 ms spin)
FALLBACK_S = 0.3
#: a window in which the other threads ran less than this is quiet (a spinning thread runs the
#: whole window, 20 ms)
QUIET_NS = 1_000_000
WINDOW_S = 0.02


def _run_ns() -> dict[str, int] | None:
    """{thread id: nanoseconds it has run}, or None where the kernel does not say."""
    out = {}
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return None
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                out[tid] = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue            # a thread that ended, or no schedstat
    return out or None


def quiesce(max_wait: float = 3.0) -> float:
    """Block until no other thread of this process runs (less than :data:`QUIET_NS` in a
    :data:`WINDOW_S` window), at most ``max_wait`` seconds. Returns the seconds waited, negative
    where the threads never went quiet (a runtime that spins for good, e.g. ``OMP_WAIT_POLICY=active``)."""
    start = time.perf_counter()
    me = str(threading.get_native_id())
    before = _run_ns()
    if before is None:
        time.sleep(FALLBACK_S)
        return FALLBACK_S
    while True:
        time.sleep(WINDOW_S)
        after = _run_ns() or {}
        busy = sum(ns - before.get(tid, 0) for tid, ns in after.items() if tid != me)
        waited = time.perf_counter() - start
        if busy < QUIET_NS:
            return waited
        if waited > max_wait:
            return -waited
        before = after


def _machine_busy_s() -> float | None:
    """Seconds of CPU time the whole machine has spent busy since boot, over all its CPUs
    (``/proc/stat``: user, nice, system, irq, softirq and steal, the time a virtual machine's
    host gave its CPUs to someone else); None where the kernel does not say."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    except (OSError, ValueError):
        return None
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_s() -> float:
    """Seconds of CPU time this process's threads have used (its children's not counted)."""
    times = os.times()
    return times.user + times.system


class OtherLoad:
    """The share of the machine's CPU time that *other* processes (and a virtual machine's host)
    used while the block ran: ``with OtherLoad() as load: ...`` then ``load.share`` (0: nothing
    else ran; 0.5 on 2 cores: another process kept one core busy; None where ``/proc/stat`` is
    missing). This process's own threads are not counted (``os.times``: every thread, no
    children), so a timing loop measured in process can tell a quiet machine from a busy one:
    a busy core slows a parallel kernel most, which waits at each parallel region for the
    thread that shares it (on CI's 2 shared cores a 44 us kernel ran 4 ms, one time slice)."""

    def __enter__(self) -> "OtherLoad":
        self.share = None
        self._busy, self._own, self._wall = _machine_busy_s(), _own_s(), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        busy = _machine_busy_s()
        wall = time.perf_counter() - self._wall
        if busy is None or self._busy is None or wall <= 0:
            return
        others = (busy - self._busy) - (_own_s() - self._own)
        self.share = min(1.0, max(0.0, others / (wall * (os.cpu_count() or 1))))
