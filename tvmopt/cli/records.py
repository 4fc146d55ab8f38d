"""``tvmopt records``: check a records directory; ``--fix`` moves unusable lines aside."""

from __future__ import annotations

from tvmopt.cli.common import records_option
from tvmopt.errors import UserError


def add_parser(sub) -> None:
    recs = sub.add_parser(
        "records", help="check a records directory; --fix moves unusable lines aside",
        description="List each records file of a directory (one per target): its records, workloads and "
                    "failed measurements, and the lines that cannot be used: unreadable, another target's, "
                    "or measured with another TVM version. tune and build refuse a file with such lines; "
                    "--fix moves them to <file>.rejected (appended, nothing is deleted) and keeps the rest.")
    records_option(recs)
    recs.add_argument("--fix", action="store_true", help="move unusable lines to <file>.rejected")
    recs.set_defaults(func=cmd_records)


def cmd_records(args) -> int:
    from tvmopt.records.check import check_records
    from tvmopt.records.store import RecordCache, describe_unusable

    cache = RecordCache(args.records)
    if cache.directory.exists() and not cache.directory.is_dir():
        raise UserError(f"records path '{cache.directory}' is a file; --records takes the directory that holds "
                        f"<target>.jsonl files (here: --records {cache.directory.parent})")
    if not cache.directory.is_dir():
        raise UserError(f"records directory '{cache.directory}' does not exist")
    keys = cache.target_keys()
    if not keys:
        print(f"{cache.directory}: no records files")
        return 0
    print(f"{'target':<28} {'records':>8} {'workloads':>9} {'failed':>7} {'invalid':>8} {'unusable':>8}")
    for key in keys:
        records, unusable = cache.scan(key)
        failed = sum(r.error != "ok" for r in records)
        invalid, stale = check_records(records, key.split("-")[0])
        print(f"{key:<28} {len(records):>8} {len({r.workload for r in records}):>9} {failed:>7} {len(invalid):>8} "
              f"{len(unusable):>8}")
        if invalid:
            record, why = invalid[0]
            print(f"  {len(invalid)} invalid record(s), never built; first: {record.workload}: {why}")
        if stale:
            print(f"  {len(stale)} record(s) made before their schedule space changed (not built; re-tune "
                  f"to replace them), first: {stale[0].workload}")
        if unusable and args.fix:
            moved = cache.set_aside(key)
            print(f"  moved {moved} line(s) to {cache.path(key).name}.rejected")
        elif unusable:
            print("  " + describe_unusable(cache.path(key), unusable, cache._tvm))
    return 0
