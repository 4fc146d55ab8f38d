"""kill -9 at a random moment, then resume: no reported measurement lost, none measured twice,
every line valid JSON, no worker left behind. Two tuners writing one file at once: every line
valid, both runs' measurements present."""

import pytest

from tvmopt.testing.reliability import concurrent_tunes, kill_and_resume


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


def test_candidate_directories_of_a_killed_measurer_are_removed(llvm_target):
    import os
    import subprocess
    import tempfile

    from tvmopt.measure.local import LocalMeasurer

    dead = subprocess.Popen(["true"])
    dead.wait()                                                # a pid that no longer runs
    orphan = tempfile.mkdtemp(prefix=f"tvmopt-measure-{dead.pid}-")
    live = tempfile.mkdtemp(prefix=f"tvmopt-measure-{os.getpid()}-")
    with LocalMeasurer(llvm_target):
        assert not os.path.exists(orphan)
        assert os.path.exists(live)
    os.rmdir(live)
