"""Records checked against the schedule spaces they claim to belong to.

A line can parse and still hold a config that no space of its workload contains (a value that
is not a knob's, a negative or absurd factor, a hand-edited line). Such records are *invalid*:
``build`` never uses them, and ``tvmopt records`` counts them apart from records that merely
predate a change of their space (those fit the space's shape but not its current values).
"""

from __future__ import annotations

from tvmopt.errors import UserError
from tvmopt.model.frontend import MAX_ELEMENTS


def check_records(records, target_kind: str = "llvm") -> tuple[list[tuple[object, str]], list]:
    """``(invalid, stale)`` in one pass, each workload's space built once.

    *invalid*: (record, why) for each record whose config no space could hold (values that are
    not knob values: strings where factors belong, negative or absurd factors) or whose
    workload is unknown. *stale*: records of plausible configs that the current space of their
    workload does not contain (made before the space changed, or on another tvmopt version)."""
    from tvmopt.ops.task import task_for

    spaces, invalid, stale = {}, [], []
    for r in records:
        if r.workload not in spaces:
            try:
                spaces[r.workload] = task_for(r.workload, target_kind).space
            except UserError as e:
                spaces[r.workload] = e
        space = spaces[r.workload]
        if isinstance(space, UserError):
            invalid.append((r, f"workload: {space}"))
        elif not space_contains(space, r.config):
            if _plausible(r.config):
                stale.append(r)
            else:
                invalid.append((r, f"config {str(r.config)[:80]} holds values no schedule knob takes"))
    return invalid, stale


def invalid_records(records, target_kind: str = "llvm") -> list[tuple[object, str]]:
    """The invalid part of :func:`check_records`."""
    return check_records(records, target_kind)[0]


def stale_records(records, target_kind: str = "llvm") -> list:
    """The stale part of :func:`check_records`."""
    return check_records(records, target_kind)[1]


def _plausible(value) -> bool:
    """Knob values: booleans, short strings, factors in 1..2^31-1, and tuples of those."""
    if isinstance(value, tuple):
        return all(_plausible(v) for v in value)
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return 0 <= value <= MAX_ELEMENTS        # no factor of a workload tvmopt accepts exceeds it
    if isinstance(value, str):
        return value.isidentifier() and len(value) <= 32
    return False


def space_contains(space, config) -> bool:
    try:
        return bool(space.contains(config))
    except Exception:  # noqa: BLE001 - a config of the wrong shape can break the check itself
        return False
