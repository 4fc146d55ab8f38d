"""Records checked against the schedule spaces they claim to belong to.

A line can parse and still hold a config that no space of its workload contains (a value that
is not a knob's, a negative or absurd factor, a hand-edited line). Such records are *invalid*:
``build`` never uses them, and ``tvmopt records`` counts them apart from records that merely
predate a change of their space (those fit the space's shape but not its current values).
"""

from __future__ import annotations

from tvmopt.errors import UserError


def invalid_records(records, target_kind: str = "llvm") -> list[tuple[object, str]]:
    """(record, why) for each record whose config no space could hold (values that are not
    knob values: strings where factors belong, negative or absurd factors) or whose workload
    is unknown. Configs of the right kind that the current space lacks are *stale* instead
    (:func:`stale_records`)."""
    from tvmopt.ops.task import task_for

    spaces, out = {}, []
    for r in records:
        if r.workload not in spaces:
            try:
                spaces[r.workload] = task_for(r.workload, target_kind).space
            except UserError as e:
                spaces[r.workload] = e
        space = spaces[r.workload]
        if isinstance(space, UserError):
            out.append((r, f"workload: {space}"))
        elif not space_contains(space, r.config) and not _plausible(r.config):
            out.append((r, f"config {str(r.config)[:80]} holds values no schedule knob takes"))
    return out


def stale_records(records, target_kind: str = "llvm") -> list:
    """Records of plausible configs that the current space of their workload does not contain
    (made before the space changed, or on another tvmopt version)."""
    from tvmopt.ops.task import task_for

    spaces, out = {}, []
    for r in records:
        if r.workload not in spaces:
            try:
                spaces[r.workload] = task_for(r.workload, target_kind).space
            except UserError:
                spaces[r.workload] = None
        space = spaces[r.workload]
        if space is not None and _plausible(r.config) and not space_contains(space, r.config):
            out.append(r)
    return out


#: no tile factor of a workload tvmopt accepts exceeds this (TVM indexes with int32)
_MAX_FACTOR = 2**31 - 1


def _plausible(value) -> bool:
    """Knob values: booleans, short strings, factors in 1..2^31-1, and tuples of those."""
    if isinstance(value, tuple):
        return all(_plausible(v) for v in value)
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return 0 <= value <= _MAX_FACTOR
    if isinstance(value, str):
        return value.isidentifier() and len(value) <= 32
    return False


def space_contains(space, config) -> bool:
    try:
        return bool(space.contains(config))
    except Exception:  # noqa: BLE001 - a config of the wrong shape can break the check itself
        return False
