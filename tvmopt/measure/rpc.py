"""Measuring on remote devices through TVM's RPC tracker and servers (the AutoTVM/tvmc fleet).

    tvmopt rpc tracker --port 9190                         # once, anywhere reachable
    tvmopt rpc server --tracker HOST:9190 --key zen3       # on each measuring device
    tvmopt tune gemm:1024x1024x1024 --rpc-tracker HOST:9190 --rpc-key zen3

Candidates are built here, in parallel, exactly as for local measurement; each built library
is uploaded to a server the tracker hands out, checked against the numpy reference and timed
there with TVM's time evaluator. As many candidates are in flight as the tracker lists servers
for the key. A session that breaks (the server vanished, or the candidate killed the server's
session process) is retried on a fresh session, usually another server; after ``retries``
breaks the candidate is recorded as ``device_error``. A candidate still running after
``run_timeout`` is killed by its server (the session's timeout) and recorded as
``run_timeout``. Results go through the same ``MeasureResult`` → records path as local ones.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Sequence

from tvmopt.errors import UserError, one_line
from tvmopt.measure.base import ErrorKind, MeasureResult
from tvmopt.measure.local import LocalMeasurer, _inputs_and_reference, _remove, check_and_time
from tvmopt.schedules.space import Config

#: seconds a session may take beyond the run timeout (upload, load, allocation)
SESSION_SLACK_S = 20.0


def parse_address(text: str, default_port: int = 9190) -> tuple[str, int]:
    """'HOST:PORT' (or 'HOST') -> (host, port), with a UserError for anything else."""
    host, _, port = text.rpartition(":") if ":" in text else (text, "", str(default_port))
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not host or not 0 < number < 65536:
        raise UserError(f"RPC address '{text}' is not HOST:PORT")
    return host, number


def connect_tracker(host: str, port: int, timeout: float = 10.0):
    """A TrackerSession, or a UserError saying the tracker cannot be reached."""
    import socket

    from tvm import rpc

    try:   # TVM's own connect retries for a minute, logging each try: probe the port first
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        raise UserError(f"cannot reach an RPC tracker at {host}:{port} ({e.strerror or e}); "
                        f"start one with 'tvmopt rpc tracker --port {port}'") from None
    try:
        session = rpc.connect_tracker(host, port)
        session._sock.settimeout(timeout)            # noqa: SLF001 - TVM offers no other way
        session.summary()
    except Exception as e:  # noqa: BLE001 - refused, unreachable, not a tracker...
        raise UserError(f"cannot reach an RPC tracker at {host}:{port} ({one_line(e)}); "
                        f"start one with 'tvmopt rpc tracker --port {port}'") from None
    return session


def servers_for(summary: dict, key: str) -> int:
    """How many servers the tracker lists for ``key``."""
    return sum(1 for s in summary.get("server_info", []) if s.get("key", "").split(":")[-1] == key)


@dataclass
class RPCMeasurer(LocalMeasurer):
    """Local parallel builds, remote checking and timing on the tracker's servers for ``key``."""

    remote = True

    tracker: tuple[str, int] = ("127.0.0.1", 9190)
    key: str = ""
    retries: int = 2                 # fresh sessions tried after one breaks
    request_timeout: float = 120.0   # waiting for a free server
    _local: threading.local = field(default_factory=threading.local, init=False, repr=False)

    def __post_init__(self):
        if not self.key:
            raise UserError("--rpc-key is required with --rpc-tracker (the key the servers registered with)")
        session = connect_tracker(*self.tracker)
        if servers_for(session.summary(), self.key) == 0:
            raise UserError(f"the RPC tracker at {self.tracker[0]}:{self.tracker[1]} has no server with key "
                            f"'{self.key}'; start one with 'tvmopt rpc server --tracker "
                            f"{self.tracker[0]}:{self.tracker[1]} --key {self.key}'")
        session.close()
        super().__post_init__()
        self.sessions_lost = 0       # broken sessions over this measurer's life (for benchmarks)

    # ---- remote side
    def _tracker_session(self):
        """One TrackerSession per thread: TVM's holds one socket and is not thread safe."""
        session = getattr(self._local, "tracker", None)
        if session is None:
            session = connect_tracker(*self.tracker, timeout=self.request_timeout)
            self._local.tracker = session
        return session

    def _run_remote(self, lib_path: str, task, inputs, expected, clock: list):
        """Run one candidate on a fresh session; ``clock[0]`` is set when the session is had
        (waiting for a free server is not the candidate's run time)."""
        session = self._tracker_session().request(self.key, priority=1, max_retry=2,
                                                  session_timeout=self.run_timeout + SESSION_SLACK_S)
        clock[0] = time.perf_counter()
        name = os.path.basename(lib_path)
        session.upload(lib_path)
        lib = session.load_module(name)
        dev = session.cuda(0) if self.target.kind == "cuda" else session.cpu(0)
        try:
            return check_and_time(lib, "main", dev, task, inputs, expected, self.repeat, self.min_repeat_ms,
                                  self.slow_s)
        finally:
            try:
                session.remove(name)
            except Exception:  # noqa: BLE001 - the session may be gone; its temp dir goes with it
                pass

    def _measure_one(self, lib_path: str, build_s: float, task, inputs, expected) -> MeasureResult:
        errors = []
        for _ in range(self.retries + 1):
            clock = [None]
            try:
                status, value = self._run_remote(lib_path, task, inputs, expected, clock)
            except Exception as e:  # noqa: BLE001 - classified below
                elapsed = time.perf_counter() - clock[0] if clock[0] is not None else 0.0
                if elapsed >= self.run_timeout:
                    return MeasureResult((), ErrorKind.RUN_TIMEOUT, build_s, elapsed,
                                         f"no answer from the server in {self.run_timeout:g} s")
                errors.append(one_line(e))
                self.sessions_lost += 1
                self._local.tracker = None       # its socket may be the broken part
                continue
            run_s = time.perf_counter() - clock[0]
            if status == "ok":
                return MeasureResult(tuple(value), ErrorKind.OK, build_s, run_s)
            return MeasureResult((), ErrorKind.WRONG_RESULT, build_s, run_s, value)
        return MeasureResult((), ErrorKind.DEVICE_ERROR, build_s, 0.0,
                             f"remote session broke {len(errors)} times; last: {errors[-1]}"[:300])

    # ---- the Measurer interface
    def measure(self, task_key: str, configs: Sequence[Config]) -> list[MeasureResult]:
        task, inputs, expected = _inputs_and_reference(task_key, self.seed)
        built = self.build(task_key, configs)
        results: list[MeasureResult | None] = [None] * len(built)
        jobs: queue.Queue = queue.Queue()
        for i, (path, failure, build_s) in enumerate(built):
            if failure is not None:
                results[i] = failure
            else:
                jobs.put((i, path, build_s))
        try:
            width = max(1, servers_for(self._tracker_session().summary(), self.key))
        except Exception:  # noqa: BLE001 - the tracker hiccuped: measure one at a time
            self._local.tracker = None
            width = 1

        def worker():
            while True:
                try:
                    i, path, build_s = jobs.get_nowait()
                except queue.Empty:
                    return
                try:
                    results[i] = self._measure_one(path, build_s, task, inputs, expected)
                finally:
                    _remove(path)

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(min(width, jobs.qsize()))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return [r if r is not None else MeasureResult((), ErrorKind.DEVICE_ERROR, 0.0, 0.0, "not measured")
                for r in results]

    def compare_with_references(self, task_key: str, config: Config, rounds: int = 7) -> dict[str, float]:
        raise UserError("the same-run comparison with numpy needs local measurement (the candidates ran on "
                        "RPC servers); pass --no-compare")


# --------------------------------------------------------------------------- tracker and server

def run_tracker(host: str = "0.0.0.0", port: int = 9190, port_end: int | None = None) -> None:
    """Start TVM's tracker and serve until interrupted."""
    try:
        import tvm.rpc.tracker
    except ImportError as e:
        raise UserError(f"TVM's RPC tracker cannot start: {e}") from None
    from tvmopt.measure.popen_worker import worker_class

    tvm.rpc.tracker.PopenWorker = worker_class()     # its process imports TVM without torch
    Tracker = tvm.rpc.tracker.Tracker
    with _stopped_with_everything_it_started():
        tracker = Tracker(host, port=port, port_end=port_end or port + 10, silent=True)
        print(f"RPC tracker listening on {host}:{tracker.port} (Ctrl-C stops it)", flush=True)
        try:
            tracker.proc.join()
        finally:
            tracker.terminate()


def run_server(tracker: tuple[str, int], key: str, host: str = "0.0.0.0", port: int = 9090,
               port_end: int | None = None) -> None:
    """Start TVM's RPC server, registered with ``tracker`` under ``key``, until interrupted.
    Sessions run in the server's child processes with TVM_NUM_THREADS set by tvmopt."""
    import tvm.rpc.server

    from tvmopt.measure.popen_worker import worker_class

    tvm.rpc.server.PopenWorker = worker_class()      # its process imports TVM without torch
    Server = tvm.rpc.server.Server
    session = connect_tracker(*tracker)                    # a clear error if it is not there
    with _stopped_with_everything_it_started():
        server = Server(host, port=port, port_end=port_end or port + 100, key=key, tracker_addr=tracker, silent=True)
        deadline = time.monotonic() + 60                   # TVM's server retries its first connection
        while time.monotonic() < deadline and not any(
                s.get("addr", [None, None])[1] == server.port for s in session.summary().get("server_info", [])):
            time.sleep(0.5)
        session.close()
        print(f"RPC server on {host}:{server.port}, key '{key}', registered with {tracker[0]}:{tracker[1]} "
              f"(Ctrl-C stops it)", flush=True)
        try:
            server.proc.join()
        finally:
            server.terminate()


@contextlib.contextmanager
def _stopped_with_everything_it_started():
    """SIGTERM and SIGINT stop the process like Ctrl-C does, and on the way out every process it
    started (TVM's server or tracker process, their session workers, ``popen_worker``s) is
    ended: nothing is left running, re-parented to init. SIGINT is handled explicitly because a
    command started in the background by a script (``tvmopt rpc tracker &``) inherits SIGINT
    ignored, and Python then never raises KeyboardInterrupt: such a tracker outlived
    ``kill -INT``."""
    import signal

    def stop(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        end_descendants()


def end_descendants(grace: float = 3.0) -> None:
    """Terminate every descendant of this process, then kill those still alive after ``grace``."""
    import psutil

    children = psutil.Process().children(recursive=True)
    for child in children:
        try:
            child.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(children, timeout=grace)
    for child in alive:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass


# --------------------------------------------------------------------------- a loopback fleet

class LoopbackFleet:
    """A tracker and ``servers`` servers on 127.0.0.1, each a ``tvmopt rpc`` process: what the
    tests and ``benchmarks/rpc.py`` measure on, and a way to try the fleet path on one machine.

        with LoopbackFleet(servers=2, key="loop") as fleet:
            tune_task(..., measurer=RPCMeasurer(target, tracker=fleet.tracker, key="loop"))
    """

    def __init__(self, servers: int = 1, key: str = "loop", log_dir: str | None = None):
        import tempfile

        self.key = key
        self.log_dir = log_dir or tempfile.mkdtemp(prefix="tvmopt-fleet-")
        self.tracker = ("127.0.0.1", _free_port())
        self.servers: list = []
        self._tracker = self._wait(*self._spawn(["tracker", "--host", "127.0.0.1", "--port", str(self.tracker[1])],
                                                "tracker"))
        started = [self._spawn(self._server_args(), f"server{i}") for i in range(servers)]   # in parallel
        self.servers = [self._wait(*s) for s in started]
        self._wait_registered()

    def add_server(self):
        proc = self._wait(*self._spawn(self._server_args(), f"server{len(self.servers)}"))
        self.servers.append(proc)
        self._wait_registered()
        return proc

    def _wait_registered(self, timeout: float = 60.0) -> None:
        """Until the tracker lists every server: a server logs that it listens before it has
        registered, and a measurer started in between sees fewer servers than there are."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if servers_for(connect_tracker(*self.tracker).summary(), self.key) >= len(self.servers):
                    return
            except Exception:  # noqa: BLE001 - the tracker is still starting
                pass
            time.sleep(0.3)
        raise RuntimeError(f"the tracker lists fewer than {len(self.servers)} servers after {timeout:g} s")

    def _server_args(self) -> list[str]:
        return ["server", "--tracker", f"127.0.0.1:{self.tracker[1]}", "--key", self.key, "--host", "127.0.0.1",
                "--port", str(_free_port())]

    def _spawn(self, args: list[str], name: str):
        import subprocess
        import sys

        log = os.path.join(self.log_dir, f"{name}.log")
        with open(log, "w") as out:
            proc = subprocess.Popen([sys.executable, "-m", "tvmopt", "rpc", *args], stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        return proc, args, log

    def _wait(self, proc, args: list[str], log: str, timeout: float = 120.0):
        text = ""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(log) as f:
                text = f.read()
            if "listening" in text or "registered" in text:
                return proc
            if proc.poll() is not None:
                break
            time.sleep(0.3)
        self.kill(proc)
        raise RuntimeError(f"'tvmopt rpc {' '.join(args)}' did not start: {text[-500:]}")

    @staticmethod
    def kill(proc) -> None:
        """SIGKILL a server or tracker with its session processes."""
        import signal

        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()

    @property
    def address(self) -> str:
        return f"{self.tracker[0]}:{self.tracker[1]}"

    def close(self) -> None:
        for proc in self.servers + [self._tracker]:
            self.kill(proc)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
