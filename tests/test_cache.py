import json
import multiprocessing as mp

import pytest

from tvmopt.records.store import Record, RecordCache
from tvmopt.errors import RecordsError


def rec(i, workload="gemm:8x8x8", target="llvm-test-1c", cost=None, **kw):
    return Record(workload, target, ((8, 1, 1, 1), i), (cost if cost is not None else 1.0 + i,), **kw)


def test_append_and_load_round_trip(tmp_path):
    cache = RecordCache(tmp_path)
    cache.append([rec(i) for i in range(5)])
    cache.append([rec(9, workload="gemm:4x4x4")])
    loaded = cache.load("llvm-test-1c", "gemm:8x8x8")
    assert [r.config for r in loaded] == [((8, 1, 1, 1), i) for i in range(5)]
    assert loaded[0].costs == (1.0,)
    assert len(cache.load("llvm-test-1c")) == 6
    line = json.loads(cache.path("llvm-test-1c").read_text().splitlines()[0])
    for field in ("workload", "target", "config", "costs", "error", "timestamp", "tvmopt", "tvm"):
        assert field in line


def test_best_ignores_errors_and_other_spaces(tmp_path):
    cache = RecordCache(tmp_path)
    cache.append([rec(1, cost=5.0, space="a"), rec(2, cost=0.1, error="wrong_result", space="a"),
                  rec(3, cost=0.5, space="b"), rec(4, cost=2.0, space="a")])
    assert cache.best("gemm:8x8x8", "llvm-test-1c", space="a").config[1] == 4
    assert cache.best("gemm:8x8x8", "llvm-test-1c").config[1] == 3
    assert cache.best("gemm:1x1x1", "llvm-test-1c") is None


def test_corrupt_lines_refuse_the_file_and_set_aside_keeps_everything(tmp_path):
    cache = RecordCache(tmp_path)
    cache.append([rec(1)])
    with open(cache.path("llvm-test-1c"), "a") as f:
        f.write('{not json\n[1, 2]\n\x00\x01garbage\n{"costs": [-1]}\n')
    cache.append([rec(2)])
    with pytest.raises(RecordsError, match=r"4 unreadable .* first at line 2.*--fix"):
        cache.load("llvm-test-1c")
    assert cache.set_aside("llvm-test-1c") == 4
    assert [r.config[1] for r in cache.load("llvm-test-1c")] == [1, 2]
    rejected = (tmp_path / "llvm-test-1c.jsonl.rejected").read_text().splitlines()
    assert rejected[0] == "{not json" and len(rejected) == 4
    assert cache.set_aside("llvm-test-1c") == 0


def test_truncated_last_line_does_not_swallow_next_record(tmp_path):
    cache = RecordCache(tmp_path)
    cache.append([rec(1)])
    with open(cache.path("llvm-test-1c"), "a") as f:
        f.write(rec(2).to_line()[:40])  # a writer killed mid-line
    cache.append([rec(3)])
    records, unusable = cache.scan("llvm-test-1c")
    assert [r.config[1] for r in records] == [1, 3]
    assert [(u.line_number, u.reason) for u in unusable] == [(2, "unreadable")]


def test_other_tvm_version_or_target_is_refused_by_name(tmp_path):
    cache = RecordCache(tmp_path)
    cache.append([rec(1), rec(2, tvm="0.19.0")])
    with pytest.raises(RecordsError, match=r"1 measured with TVM 0.19.0 .* line 2"):
        cache.load("llvm-test-1c")
    cache.set_aside("llvm-test-1c")
    with open(cache.path("llvm-test-1c"), "a") as f:
        f.write(rec(3, target="cuda-sm90").to_line() + "\n")
    with pytest.raises(RecordsError, match="of target 'cuda-sm90'"):
        cache.best_all("llvm-test-1c")


def test_unwritable_records_directory_is_a_user_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RecordsError, match="cannot create records directory"):
        RecordCache(blocker / "sub").append([rec(1)])


def _writer(directory, worker, n):
    cache = RecordCache(directory)
    for i in range(n):
        cache.append([rec(worker * 1000 + i, message="x" * 2000) for _ in range(3)])


def test_concurrent_writers_never_interleave(tmp_path):
    procs = [mp.get_context("spawn").Process(target=_writer, args=(str(tmp_path), w, 40)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    lines = RecordCache(tmp_path).path("llvm-test-1c").read_text().splitlines()
    assert len(lines) == 4 * 40 * 3
    ids = [json.loads(line)["config"][1] for line in lines]  # every line is whole JSON
    for w in range(4):
        assert sorted(set(i for i in ids if i // 1000 == w)) == [w * 1000 + i for i in range(40)]


def test_lock_is_held_while_writing(tmp_path):
    from filelock import FileLock

    import tvmopt.records.store as cache_mod

    cache = RecordCache(tmp_path)
    cache.append([rec(0)])
    lock = FileLock(str(cache.path("llvm-test-1c")) + ".lock")
    old = cache_mod.LOCK_TIMEOUT_S
    cache_mod.LOCK_TIMEOUT_S = 0.2
    try:
        with lock:
            with pytest.raises(RecordsError, match="stayed locked"):
                cache.append([rec(1)])
    finally:
        cache_mod.LOCK_TIMEOUT_S = old
    assert len(cache.load("llvm-test-1c")) == 1


def test_pick_best_writes_one_record_per_workload_after_a_header(tmp_path):
    from tvmopt.records.store import pick_best

    src = RecordCache(tmp_path / "all")
    src.append([rec(1, cost=3.0), rec(2, cost=0.5), rec(3, cost=0.1, error="wrong_result"),
                rec(4, workload="gemm:4x4x4", cost=2.0), rec(5, workload="gemm:2x2x2", cost=1.0)])
    out = tmp_path / "ship" / "llvm-test-1c.jsonl"
    n = pick_best(src.directory, out, "llvm-test-1c", header="measured here\non a test", workloads=["gemm:8x8x8",
                                                                                                   "gemm:4x4x4"])
    assert n == 2
    lines = out.read_text().splitlines()
    assert lines[:2] == ["# measured here", "# on a test"]
    shipped = RecordCache(out.parent)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")             # header comments are not corrupt lines
        best = shipped.best_all("llvm-test-1c")
    assert {w: r.config[1] for w, r in best.items()} == {"gemm:8x8x8": 2, "gemm:4x4x4": 4}
    assert shipped.target_keys() == ["llvm-test-1c"]
    # a later source (a fresh tuning run) replaces an earlier one's records of the same workloads
    # whatever their costs, with later_replaces; by default the cheaper record wins
    fresh = RecordCache(tmp_path / "fresh")
    fresh.append([rec(6, cost=0.9), rec(7, workload="gemm:16x16x16", cost=1.0)])
    both = [out.parent, fresh.directory]
    assert pick_best(both, tmp_path / "min" / "llvm-test-1c.jsonl", "llvm-test-1c") == 3
    cheaper = RecordCache(tmp_path / "min").best_all("llvm-test-1c")
    assert {w: r.config[1] for w, r in cheaper.items()} == {"gemm:8x8x8": 2, "gemm:4x4x4": 4, "gemm:16x16x16": 7}
    assert pick_best(both, tmp_path / "new" / "llvm-test-1c.jsonl", "llvm-test-1c", later_replaces=True) == 3
    replaced = RecordCache(tmp_path / "new").best_all("llvm-test-1c")
    assert {w: r.config[1] for w, r in replaced.items()} == {"gemm:8x8x8": 6, "gemm:4x4x4": 4, "gemm:16x16x16": 7}


def test_the_latest_in_network_check_ranks_first_until_a_later_remeasurement(tmp_path):
    from tvmopt.records.store import NETWORK, REMEASURE

    cache = RecordCache(tmp_path)
    # the search and its re-measurement: config 2 timed alone beats the start (config 0)
    cache.append([rec(0, cost=1.0, timestamp=10.0), rec(2, cost=0.8, timestamp=10.0),
                  rec(0, cost=1.0, tuner=REMEASURE, timestamp=11.0), rec(2, cost=0.9, tuner=REMEASURE, timestamp=11.0)])
    assert cache.best("gemm:8x8x8", "llvm-test-1c").config[1] == 2
    # an earlier check that config 2 won, then the latest: in the model the start is faster
    cache.append([rec(0, cost=2.0, tuner=NETWORK, timestamp=12.0), rec(2, cost=1.5, tuner=NETWORK, timestamp=12.0)])
    cache.append([rec(0, cost=1.6, tuner=NETWORK, timestamp=13.0), rec(2, cost=1.7, tuner=NETWORK, timestamp=13.0)])
    ranked = cache.ranked("llvm-test-1c")["gemm:8x8x8"]
    assert [(r.config[1], r.tuner, r.timestamp) for r in ranked[:2]] == [(0, NETWORK, 13.0), (2, NETWORK, 13.0)]
    assert all(r.timestamp != 12.0 for r in ranked)            # the earlier check is superseded
    # shipping takes the checked config with its time alone (what the kernel choice compares)
    from tvmopt.records.store import pick_best

    pick_best(tmp_path, tmp_path / "ship" / "llvm-test-1c.jsonl", "llvm-test-1c")
    (shipped,) = RecordCache(tmp_path / "ship").load("llvm-test-1c")
    assert (shipped.config[1], shipped.tuner, shipped.cost) == (0, REMEASURE, 1.0)
    # a later tuning run's re-measurement supersedes the check: its own ranking decides again
    cache.append([rec(2, cost=0.85, tuner=REMEASURE, timestamp=14.0), rec(0, cost=0.95, tuner=REMEASURE, timestamp=14.0)])
    best = cache.best("gemm:8x8x8", "llvm-test-1c")
    assert (best.config[1], best.tuner) == (2, REMEASURE)
