"""kill -9 at a random moment, then resume: no reported measurement lost, none measured twice,
every line valid JSON, no worker left behind. Two tuners writing one file at once: every line
valid, both runs' measurements present."""

import pytest

from tvmopt.reliability import concurrent_tunes, kill_and_resume


@pytest.mark.parametrize("seed", [1])   # benchmarks/reliability.py runs 5 seeds
def test_kill_9_then_resume_loses_and_repeats_nothing(tmp_path, seed):
    r = kill_and_resume(tmp_path, seed, trials=40)
    assert 1 <= r.reported_before_kill < 40                   # killed mid-run
    assert r.lost == 0 and r.invalid_lines == 0 and r.duplicates == 0
    assert r.resume_ok and r.final_trials == 40
    assert r.orphans == 0


def test_two_tuners_append_to_one_file(tmp_path):
    r = concurrent_tunes(tmp_path, trials=8)
    assert r.processes_ok == 2
    assert r.reported == 16 and r.lost == 0 and r.invalid_lines == 0
    assert r.records == 16
