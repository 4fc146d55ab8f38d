"""Candidates that segfault, abort, hang, compute wrong numbers or fail to build: each is
recorded with its error kind, tuning goes on, and the best config is a correct one.
(tests/test_measure.py checks each kind's message at the measurer's level.)"""

import json

from tvmopt.testing.reliability import cli_env, records_file, run_cli
from tvmopt.testing.faults import BEHAVIOURS


def test_tune_survives_every_fault_and_keeps_the_correct_best(tmp_path):
    records = tmp_path / "records"
    outcome = run_cli(["tune", "fault:16", "--trials", str(len(BEHAVIOURS)), "--records", str(records),
                       "--build-timeout", "6", "--run-timeout", "6", "--no-compare", "--verbose"],
                      tmp_path, env=cli_env(records), timeout=300)
    assert outcome.returncode == 0, outcome.stderr
    assert outcome.problem() is None
    rows = [json.loads(line) for line in records_file(records).read_text().splitlines()]
    kinds = {row["config"][0]: row["error"] for row in rows}
    assert kinds == {"ok": "ok", "wrong": "wrong_result", "build_error": "build_error",
                     "build_hang": "build_timeout", "segfault": "worker_crashed", "abort": "worker_crashed",
                     "hang": "run_timeout"}
    assert all(row["message"] for row in rows if row["error"] != "ok")
    assert "behaviour   ok" in outcome.stdout        # the best config printed is the correct one
    assert len([ln for ln in outcome.stdout.splitlines() if ln.startswith("recorded ")]) == len(BEHAVIOURS)
