"""Tuning records: one JSON-lines file per target key, appended under a file lock.

Every measurement is a line, appended under a lock with one write and an fsync, so a killed
run loses at most the candidates it had not yet reported and two writers never interleave.
A file with a line that cannot be used (corrupt, another target's, or measured with another
TVM version, whose timings may no longer hold) is refused with one message naming it and the
fix, never half-read; ``RecordCache.set_aside`` (``tvmopt records --fix``) moves such lines to
``<file>.rejected`` so that nothing is lost.
"""

from __future__ import annotations

import functools
import json
import math
import os
import statistics
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Iterable

from filelock import FileLock, Timeout

from tvmopt import __version__
from tvmopt.errors import RecordsError
from tvmopt.schedules.space import Config, config_from_json, config_to_json

DEFAULT_DIR = Path(os.environ.get("TVMOPT_RECORDS", Path.home() / ".cache" / "tvmopt"))
LOCK_TIMEOUT_S = 60.0


@functools.lru_cache(maxsize=1)
def tvm_version() -> str:
    try:
        from importlib.metadata import version

        return version("apache-tvm")
    except Exception:  # noqa: BLE001 - metadata missing in odd installs
        return "unknown"


#: the tuner name of records that re-time a run's best configs in interleaved rounds
REMEASURE = "remeasure"
#: the tuner name of records that time a task's candidate configs inside the whole model (the
#: in-network check of ``tvmopt tune model.onnx``, :mod:`tvmopt.tune.network`): seconds per call
NETWORK = "network"


@dataclass(frozen=True)
class Record:
    """One measured candidate."""

    workload: str
    target: str
    config: Config
    costs: tuple[float, ...]
    error: str = "ok"
    space: str = ""  # fingerprint of the space the config belongs to
    tuner: str = ""
    build_s: float = 0.0
    run_s: float = 0.0
    message: str = ""
    timestamp: float = field(default_factory=time.time)
    tvmopt: str = __version__
    tvm: str = field(default_factory=tvm_version)

    @property
    def cost(self) -> float:
        if self.error != "ok" or not self.costs:
            return math.inf
        return statistics.median(self.costs)

    @classmethod
    def from_result(cls, workload: str, target: str, config: Config, result, space: str, tuner: str) -> "Record":
        """The record of one measurement (a MeasureResult: costs, error kind, seconds, message)."""
        return cls(workload, target, config, tuple(result.costs), result.error.value, space, tuner,
                   result.build_s, result.run_s, result.message)

    def to_line(self) -> str:
        d = asdict(self)
        d["config"] = config_to_json(self.config)
        d["costs"] = list(self.costs)
        return json.dumps(d, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_line(cls, line: str) -> "Record":
        d = json.loads(line)
        if not isinstance(d, dict):
            raise ValueError("not a JSON object")
        # fields a newer tvmopt added are ignored, so its records stay usable here
        d = {k: v for k, v in d.items() if k in _FIELDS}
        if not isinstance(d.get("config"), list):
            raise TypeError("field 'config' is not a list of knob values")
        d["config"] = config_from_json(d["config"])
        d["costs"] = tuple(float(c) for c in d["costs"])
        record = cls(**d)
        for name in ("workload", "target", "error", "space", "tuner", "tvm"):
            if not isinstance(getattr(record, name), str):
                raise TypeError(f"field '{name}' is not a string")
        if not all(math.isfinite(c) and c > 0 for c in record.costs):
            raise ValueError("a cost is not a positive number")
        return record


_FIELDS = {f.name for f in fields(Record)}


class RecordCache:
    """The records of one directory: ``<dir>/<target key>.jsonl``."""

    def __init__(self, directory: str | Path | None = None):
        self.directory = Path(directory) if directory is not None else DEFAULT_DIR
        self._tvm = tvm_version()

    @classmethod
    def single_file(cls, path: str | Path) -> "RecordCache":
        """A cache reading one records file whatever its name (tvmc's ``--tuning-records FILE``);
        its lines of another target are reported as unusable, as in any records file."""
        cache = cls(Path(path).parent)
        cache._file = Path(path)
        return cache

    def path(self, target_key: str) -> Path:
        if getattr(self, "_file", None) is not None:
            return self._file
        return self.directory / f"{target_key}.jsonl"

    def _lock(self, target_key: str) -> FileLock:
        return FileLock(str(self.path(target_key)) + ".lock", timeout=LOCK_TIMEOUT_S)

    def ensure_writable(self) -> None:
        """Create the directory or raise a RecordsError that says why it cannot be used."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RecordsError(f"cannot create records directory '{self.directory}': {e.strerror}") from None
        if not self.directory.is_dir() or not os.access(self.directory, os.W_OK):
            raise RecordsError(f"records directory '{self.directory}' is not a writable directory")

    def append(self, records: Iterable[Record]) -> None:
        """Append records atomically with respect to other writers (lock, flush, fsync)."""
        records = list(records)
        if not records:
            return
        self.ensure_writable()
        by_target: dict[str, list[Record]] = {}
        for r in records:
            by_target.setdefault(r.target, []).append(r)
        for target_key, group in by_target.items():
            text = "".join(r.to_line() + "\n" for r in group)
            try:
                with self._lock(target_key):
                    with open(self.path(target_key), "ab+") as f:
                        # a writer killed mid-line leaves no newline: end that line first
                        if f.seek(0, os.SEEK_END) > 0:
                            f.seek(-1, os.SEEK_END)
                            if f.read(1) != b"\n":
                                text = "\n" + text
                        f.write(text.encode("utf-8"))
                        f.flush()
                        os.fsync(f.fileno())
            except Timeout:
                raise RecordsError(f"records file '{self.path(target_key)}' stayed locked for "
                                   f"{LOCK_TIMEOUT_S:g} s; is another tvmopt stuck?") from None
            except OSError as e:
                raise RecordsError(f"cannot write records file '{self.path(target_key)}': {e.strerror}") from None

    def scan(self, target_key: str) -> tuple[list[Record], list["Unusable"]]:
        """Every line of a target's file: the usable records, and the lines that cannot be
        used (unreadable, another target's, or measured with another TVM version)."""
        path = self.path(target_key)
        if not path.exists():
            return [], []
        if path.is_dir():
            raise RecordsError(f"records path '{path}' is a directory, expected a file")
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise RecordsError(f"cannot read records file '{path}': {e.strerror}") from None
        records, unusable = [], []
        for number, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), 1):
            if not line.strip() or line.startswith("#"):   # blank, or a header comment
                continue
            try:
                r = Record.from_line(line)
            except (ValueError, TypeError, KeyError, AttributeError) as e:
                unusable.append(Unusable(number, line, "unreadable", type(e).__name__))
                continue
            if r.target != target_key:
                unusable.append(Unusable(number, line, "other target", r.target))
            elif r.tvm != self._tvm:
                unusable.append(Unusable(number, line, "other TVM", r.tvm))
            else:
                records.append(r)
        return records, unusable

    def load(self, target_key: str, workload: str | None = None) -> list[Record]:
        """All records for a target (optionally one workload), oldest first.

        A file with any line that cannot be used is refused (RecordsError naming the file, the
        first bad line and the fix), never half-read: a corrupt line, a record of another target
        or one measured with another TVM (whose timings may not hold) would silently change
        what gets built. ``tvmopt records --fix`` moves such lines aside."""
        records, unusable = self.scan(target_key)
        if unusable:
            raise RecordsError(describe_unusable(self.path(target_key), unusable, self._tvm))
        return [r for r in records if workload is None or r.workload == workload]

    def ranked(self, target_key: str) -> dict[str, list[Record]]:
        """Every workload's successful records, fastest first, reading the file once.

        A config that was re-measured after its run (tuner ``remeasure``: interleaved rounds,
        the reported best of a tuning run) is ranked by its latest re-measurement alone, and the
        re-measured configs of a space rank before the ones never re-measured: one lucky timing
        during the search no longer decides what gets built (the search's fastest configs and
        the space's start were compared side by side; a config that only looked faster in a
        noisy moment was not). On a shared 2-core Zen 3, ResNet-50's records tuned before the
        start joined the re-measurement ran 0.94x the untuned build (paired rounds): the
        1x64x56x56x64 Winograd conv's record ran 0.88x its start, alone and in the model.

        The rows of a workload's latest in-network check (tuner ``network``: its candidates
        timed inside the whole model) rank before all others unless a tuning run re-measured the
        workload after it: timed alone, ResNet-50's tuned kernels looked up to 1.18x faster than
        their starts and ran 5 to 20% slower in the model (Zen 3)."""
        out: dict[str, list[Record]] = {}
        latest: dict[tuple, Record] = {}
        remeasured_at: dict[tuple, float] = {}
        checked_at: dict[tuple, float] = {}
        ok = [r for r in self.load(target_key) if r.error == "ok"]
        for r in ok:
            if r.tuner == REMEASURE:
                latest[(r.workload, r.space, r.config)] = r
                remeasured_at[(r.workload, r.space)] = max(remeasured_at.get((r.workload, r.space), 0.0), r.timestamp)
            elif r.tuner == NETWORK:
                checked_at[(r.workload, r.space)] = max(checked_at.get((r.workload, r.space), 0.0), r.timestamp)
        remeasured = set(remeasured_at)

        def verdict(r: Record) -> bool:
            """A row of the workload's latest in-network check, made after its latest re-measurement."""
            at = checked_at.get((r.workload, r.space))
            return r.tuner == NETWORK and r.timestamp == at and at >= remeasured_at.get((r.workload, r.space), 0.0)

        for r in ok:
            if r.tuner == NETWORK:
                if verdict(r):      # else an earlier check, or one that a later tuning run superseded
                    out.setdefault(r.workload, []).append(r)
                continue
            again = latest.get((r.workload, r.space, r.config))
            if again is None or r is again:
                out.setdefault(r.workload, []).append(r)
        for rows in out.values():
            rows.sort(key=lambda r: (not verdict(r), (r.workload, r.space) in remeasured and r.tuner != REMEASURE,
                                     r.cost))
        return out

    def best_all(self, target_key: str) -> dict[str, Record]:
        """The fastest successful record of every workload of a target."""
        return {w: rows[0] for w, rows in self.ranked(target_key).items()}

    def target_keys(self) -> list[str]:
        """The target keys this directory holds records for."""
        if not self.directory.is_dir():
            return []
        return sorted(p.stem for p in self.directory.glob("*.jsonl"))

    def best(self, workload: str, target_key: str, space: str | None = None) -> Record | None:
        """The fastest successful record for a workload (of a given space fingerprint)."""
        rows = self.ranked(target_key).get(workload, [])
        return next((r for r in rows if space is None or r.space == space), None)

    def set_aside(self, target_key: str) -> int:
        """Move the lines that cannot be used to ``<file>.rejected`` (appended, so nothing is
        lost) and keep the rest, under the writers' lock. Returns the number of lines moved."""
        path = self.path(target_key)
        try:
            with self._lock(target_key):
                _, unusable = self.scan(target_key)
                if not unusable:
                    return 0
                bad = {u.line_number for u in unusable}
                lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()
                keep = [ln for i, ln in enumerate(lines, 1) if i not in bad and ln.strip()]
                with open(path.with_name(path.name + ".rejected"), "a", encoding="utf-8") as f:
                    f.write("".join(u.text + "\n" for u in unusable))
                    f.flush()
                    os.fsync(f.fileno())
                tmp = path.with_name(path.name + ".tmp")
                with open(tmp, "w", encoding="utf-8") as f:
                    f.write("".join(ln + "\n" for ln in keep))
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
                return len(unusable)
        except Timeout:
            raise RecordsError(f"records file '{path}' stayed locked for {LOCK_TIMEOUT_S:g} s") from None
        except OSError as e:
            raise RecordsError(f"cannot rewrite records file '{path}': {e.strerror}") from None


@dataclass(frozen=True)
class Unusable:
    """A line of a records file that cannot be used, and why."""

    line_number: int
    text: str
    reason: str     # "unreadable" | "other target" | "other TVM"
    detail: str     # the parse error, the record's target or its TVM version


def describe_unusable(path: Path, unusable: list[Unusable], tvm: str) -> str:
    """One line: how many lines of ``path`` cannot be used, why, and how to fix it."""
    from collections import Counter

    counts = Counter(u.reason for u in unusable)
    first = {}
    for u in unusable:
        first.setdefault(u.reason, u)
    parts = []
    for reason, n in counts.items():
        u = first[reason]
        what = {"unreadable": f"unreadable ({u.detail}), first at line {u.line_number}",
                "other target": f"of target '{u.detail}', first at line {u.line_number}",
                "other TVM": f"measured with TVM {u.detail} (this is {tvm}; their timings may not hold), "
                             f"first at line {u.line_number}"}[reason]
        parts.append(f"{n} {what}")
    return (f"records file '{path}' has lines that cannot be used: {'; '.join(parts)}. "
            f"Run 'tvmopt records --records {path.parent} --fix' to move them to {path.name}.rejected")


def pick_best(source: str | Path | list, destination: str | Path, target_key: str, header: str = "",
              workloads: Iterable[str] | None = None, later_replaces: bool = False) -> int:
    """Write the best record of each workload (optionally only ``workloads``) from the records
    in ``source`` (a directory or a list of them) to ``destination`` (a new file, replaced), after ``header`` lines written as
    ``# `` comments. This is how the shipped records in ``logs/records`` are made. Returns the
    number of records written. ``later_replaces``: a source's best record of a workload replaces
    an earlier source's whatever their costs (a fresh tuning run replaces the shipped record,
    whose cost was timed on another day, in a run that may have ranked a lucky timing first)."""
    best: dict = {}
    for src in ([source] if isinstance(source, (str, Path)) else source):
        for w, rows in RecordCache(src).ranked(target_key).items():
            r = rows[0]
            if r.tuner == NETWORK:      # the config the in-network check chose, with its time alone
                r = next((x for x in rows if x.tuner != NETWORK and x.config == r.config), r)
            if w not in best or later_replaces or r.cost < best[w].cost:
                best[w] = r
    keep = set(workloads) if workloads is not None else None
    rows = [r for w, r in sorted(best.items()) if keep is None or w in keep]
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(f"# {line}\n" for line in header.splitlines()) + "".join(r.to_line() + "\n" for r in rows)
    tmp = destination.with_name(destination.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, destination)
    return len(rows)
