"""``ReplayMeasurer``: measurement by lookup in a table of pre-measured configs (``logs/replay``)."""

from __future__ import annotations

import json
from typing import Sequence

from tvmopt.measure.base import ErrorKind, MeasureResult, Measurer
from tvmopt.schedules.space import Config, config_from_json


class ReplayMeasurer(Measurer):
    """Measure by lookup in a table of pre-measured configs: exact, instant, no TVM.

    The table (written by benchmarks/make_replay_table.py) is JSON: a ``header`` saying what,
    where and how it was measured, and ``entries`` of [config, cost or null, error kind,
    seconds the measurement took]. ``space`` is the table's sub-space, for the tuners; it starts
    at the header's heuristic ``start`` unless ``use_start`` is false (then local searches
    start untiled and global ones do not measure the start first, as in the paper). Its choice
    knobs keep the values the table was measured with where the space has since dropped some
    (:func:`~tvmopt.schedules.space.widened`).
    """

    def __init__(self, path, use_start: bool = True):
        from tvmopt.errors import UserError
        from tvmopt.schedules.space import restrict, widened
        from tvmopt.ops.task import task_for

        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            self.header = data["header"]
            entries = [(config_from_json(e[0]), e[1], e[2], float(e[3])) for e in data["entries"]]
            self.task = task_for(self.header["workload"], str(self.header.get("target", "")).split("-")[0])
            start = self.header.get("start")  # the heuristic start live runs use, where the table has it
            start = config_from_json(start) if start is not None and use_start else None
            members = [e[0] for e in entries]
            self.space = restrict(widened(self.task.space, members), members, start if start in set(members) else None)
        except FileNotFoundError:
            raise UserError(f"replay table '{path}' does not exist") from None
        except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
            raise UserError(f"replay table '{path}' is not a valid table ({type(e).__name__}: {e})") from None
        self.table = {c: (cost, error, seconds) for c, cost, error, seconds in entries}
        ok = [cost for cost, _, _ in self.table.values() if cost is not None]
        if not ok:
            raise UserError(f"replay table '{path}' has no successful measurement")
        self.optimum = min(ok)

    def measure(self, task_key: str, configs: Sequence[Config]) -> list[MeasureResult]:
        out = []
        for config in configs:
            if config not in self.table:
                raise KeyError(f"config {config} is not in the replay table")
            cost, error, seconds = self.table[config]  # seconds: what measuring it took
            if cost is None:
                out.append(MeasureResult((), ErrorKind(error), 0.0, seconds, "failed when the table was measured"))
            else:
                out.append(MeasureResult((cost,), ErrorKind.OK, 0.0, seconds))
        return out
