"""`tvmopt records` lists what a records directory holds and what cannot be used; `--fix` moves
the unusable lines to <file>.rejected, after which tuning resumes from the good ones."""

import json

from tvmopt.records.store import Record, RecordCache
from tvmopt.cli.main import main
from tvmopt.target import parse_target


def test_records_check_and_fix_then_tune_resumes(tmp_path, capsys):
    key = parse_target("llvm").key
    cache = RecordCache(tmp_path)
    assert main(["tune", "gemm:16x16x16", "--trials", "3", "--records", str(tmp_path), "--no-compare", "--quiet"]) == 0
    good = cache.path(key).read_text().splitlines()
    foreign = json.loads(good[0])
    foreign["tvm"] = "0.18.0"
    with open(cache.path(key), "a") as f:
        f.write("{torn line\n" + json.dumps(foreign) + "\n")
    capsys.readouterr()

    assert main(["tune", "gemm:16x16x16", "--trials", "4", "--records", str(tmp_path), "--no-compare"]) == 2
    err = capsys.readouterr().err
    assert "1 unreadable" in err and "measured with TVM 0.18.0" in err and "--fix" in err

    assert main(["records", "--records", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert key in out and f"first at line {len(good) + 1}" in out   # after 3 trials and 3 re-measurements
    assert main(["records", "--records", str(tmp_path), "--fix"]) == 0
    assert "moved 2 line(s)" in capsys.readouterr().out
    assert cache.path(key).read_text().splitlines() == good
    assert len((tmp_path / f"{key}.jsonl.rejected").read_text().splitlines()) == 2

    assert main(["tune", "gemm:16x16x16", "--trials", "4", "--records", str(tmp_path), "--no-compare", "--quiet"]) == 0
    assert "measured 1 new config(s)" in capsys.readouterr().out
    assert len([r for r in cache.load(key, "gemm:16x16x16") if r.tuner != "remeasure"]) == 4
    assert isinstance(cache.load(key)[0], Record)
