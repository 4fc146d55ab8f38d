"""Measuring through TVM's RPC tracker, on loopback: a tracker and two servers started by the
test (`tvmopt rpc ...`), a short tuning run whose configs and timings match a local run's, and
a server killed mid-run with every trial still recorded."""

import json
import subprocess
import sys
import threading

import pytest

from tvmopt.reliability import cli_env, records_file, reported_configs, run_cli
from tvmopt.rpc import LoopbackFleet, _free_port


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
    return out, {json.dumps(r["config"]): r for r in rows}


def test_rpc_run_matches_a_local_run(tmp_path, fleet):
    address = fleet.address
    _, remote = tune(tmp_path, "remote", ["--rpc-tracker", address, "--rpc-key", "loop"])
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
    rows = [json.loads(line) for line in records_file(records).read_text().splitlines()]
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
