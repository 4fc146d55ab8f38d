"""Measuring through TVM's RPC tracker, on loopback: a tracker and two servers started by the
test (`tvmopt rpc ...`), a short tuning run whose configs and timings match a local run's, and
a server killed mid-run with every trial still recorded."""

import json
import subprocess
import sys
import threading

import pytest

from tvmopt.testing.reliability import cli_env, records_file, reported_configs, run_cli
from tvmopt.measure.rpc import LoopbackFleet, _free_port


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    with LoopbackFleet(servers=2, key="loop", log_dir=str(tmp_path_factory.mktemp("rpc"))) as f:
        yield f


def tune(tmp_path, name, extra, trials=8, workload="gemm:48x48x32"):
    records = tmp_path / name
    out = run_cli(["tune", workload, "--trials", str(trials), "--records", str(records), "--no-compare",
                   "--verbose", "--batch-size", "4", *extra], tmp_path, env=cli_env(records), timeout=600)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in records_file(records).read_text().splitlines()]
    return out, {json.dumps(r["config"]): r for r in rows if r["tuner"] != "remeasure"}


def test_rpc_run_matches_a_local_run(tmp_path):
    # one server: two loopback servers on a 2-core machine would time two candidates at once
    with LoopbackFleet(servers=1, key="solo", log_dir=str(tmp_path)) as solo:
        _, remote = tune(tmp_path, "remote", ["--rpc-tracker", solo.address, "--rpc-key", "solo"])
    _, local = tune(tmp_path, "local", [])
    assert set(remote) == set(local) and len(remote) == 8      # the random tuner proposes the same configs
    assert all(r["error"] == "ok" for r in remote.values())
    ratios = sorted(min(remote[c]["costs"]) / min(local[c]["costs"]) for c in remote)
    assert 0.5 < ratios[len(ratios) // 2] < 2.0, ratios        # same machine: timings within noise


def test_server_killed_mid_run_loses_no_trial(tmp_path, fleet):
    address = fleet.address
    records = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "tvmopt", "tune", "gemm:48x48x32", "--trials", "16",
                             "--records", str(records), "--no-compare", "--verbose", "--batch-size", "4",
                             "--rpc-tracker", address, "--rpc-key", "loop"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(records))
    lines = []
    first = threading.Event()

    def read():
        for line in iter(proc.stdout.readline, ""):
            lines.append(line)
            first.set()
    threading.Thread(target=read, daemon=True).start()
    assert first.wait(180)
    fleet.kill(fleet.servers[0])                               # SIGKILL the server and its sessions
    assert proc.wait(timeout=600) == 0, proc.stderr.read()
    rows = [r for r in map(json.loads, records_file(records).read_text().splitlines()) if r["tuner"] != "remeasure"]
    assert len(rows) == 16 and len({json.dumps(r["config"]) for r in rows}) == 16
    assert all(r["error"] == "ok" for r in rows), [r["message"] for r in rows if r["error"] != "ok"]
    assert set(reported_configs("".join(lines))) <= {json.dumps(r["config"], separators=(",", ":")) for r in rows}


def test_unreachable_tracker_and_missing_key_are_one_line_errors(tmp_path, fleet):
    address = fleet.address
    for extra, needle in ((["--rpc-tracker", f"127.0.0.1:{_free_port()}", "--rpc-key", "loop"], "cannot reach an RPC tracker"),
                          (["--rpc-tracker", address, "--rpc-key", "nosuch"], "no server with key 'nosuch'"),
                          (["--rpc-tracker", address], "--rpc-key is required"),
                          (["--rpc-tracker", "nohostport:x", "--rpc-key", "loop"], "is not HOST:PORT")):
        out = run_cli(["tune", "gemm:8x8x8", "--trials", "2", *extra], tmp_path, timeout=120)
        assert out.returncode == 2 and out.problem() is None and needle in out.error_line, out.stderr


def test_compare_measures_through_the_fleet(tmp_path, fleet):
    out = run_cli(["compare", "gemm:32x32x32", "--tuners", "random,gbfs", "--trials", "4", "--repeats", "1",
                   "--rpc-tracker", fleet.address, "--rpc-key", "loop", "--out", str(tmp_path / "cmp"), "--quiet"],
                  tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr
    summary = json.loads((tmp_path / "cmp" / "summary.json").read_text())
    assert "random" in json.dumps(summary) and "gbfs" in json.dumps(summary)


def test_in_flight_candidate_of_a_killed_server_is_requeued(tmp_path):
    import random

    from tvmopt.measure.rpc import RPCMeasurer
    from tvmopt.target import parse_target
    from tvmopt.ops.task import get_task

    task = get_task("gemm:64x64x64")
    rng = random.Random(0)
    configs = list({task.space.random(rng) for _ in range(3)})     # two in flight, one queued
    assert len(configs) == 3
    with LoopbackFleet(servers=2, key="requeue", log_dir=str(tmp_path)) as fleet:
        # each candidate times for >= 3 s, so a second after two runs have started at least one
        # is in flight: every server is killed then (whichever holds it: with one worker, when the
        # tracker's summary hiccuped, only one server is busy, and killing the first alone missed
        # it in all three attempts of one full run) and a fresh one takes the requeued candidates
        for _attempt in range(3):
            measurer = RPCMeasurer(parse_target("llvm"), tracker=fleet.tracker, key="requeue", min_repeat_ms=1000)
            both_busy = threading.Event()
            started = []
            run_remote = measurer._run_remote

            def spy(*args, _run=run_remote, _started=started, _busy=both_busy):
                _started.append(1)
                if len(_started) >= 2:
                    _busy.set()
                return _run(*args)
            measurer._run_remote = spy

            def kill_when_busy(_busy=both_busy):
                _busy.wait(120)
                threading.Event().wait(1.0)
                for server in list(fleet.servers):
                    fleet.kill(server)
                fleet.servers.clear()
                fleet.add_server()
            killer = threading.Thread(target=kill_when_busy)
            killer.start()
            try:
                results = measurer.measure(task.key, configs)
            finally:
                killer.join()
                measurer.close()
            assert [r.error.value for r in results] == ["ok"] * len(configs), [r.message for r in results]
            if measurer.sessions_lost:
                break
    assert measurer.sessions_lost >= 1                         # a candidate was in flight on it



def test_stopping_a_server_and_tracker_ends_every_process_they_started(tmp_path):
    """SIGTERM (and SIGINT) on 'tvmopt rpc server' and 'tvmopt rpc tracker', after measurements
    went through them: none of the processes they started survives."""
    import signal
    import time

    import psutil

    from tvmopt.measure.rpc import LoopbackFleet, RPCMeasurer
    from tvmopt.target import parse_target
    from tvmopt.tune.loop import tune_task

    target = parse_target("llvm")
    fleet = LoopbackFleet(servers=1, key="leak")
    try:
        measurer = RPCMeasurer(target, tracker=fleet.tracker, key="leak")
        with measurer:
            tune_task("gemm:32x32x32", target, tuner="random", trials=4, records=tmp_path / "r", progress=False,
                      measurer=measurer)
        procs = [fleet.servers[0], fleet._tracker]
        started = [c for p in procs for c in psutil.Process(p.pid).children(recursive=True)]
        assert started                      # TVM's server process and its session workers
        for sig, proc in zip((signal.SIGTERM, signal.SIGINT), procs):
            proc.send_signal(sig)
            assert proc.wait(timeout=60) is not None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE
                                                  for c in started):
            time.sleep(0.3)
        left = [c.pid for c in started if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
        assert left == []
    finally:
        fleet.close()
