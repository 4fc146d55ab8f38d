"""Which configs a replay table measures: a connected sub-space of any schedule space.

Tuner comparisons replay tables measured exhaustively (``benchmarks/make_replay_table.py``).
A table is only fair to every tuner if it holds the configs live runs start from and walk
through: the untiled config (every axis whole, every choice at its default) and the space's
heuristic start, a shortest path of moves between them, and enough around the start that
local search and global search both have room. :func:`table_members` builds such a set for
any :class:`~tvmopt.schedules.space.Space` from data alone:

* **tilings** (about 4/5 of the table): for each split knob, the values on a shortest path from
  its untiled to its start value plus every value within ``r`` moves of either end, with ``r``
  grown knob by knob (smallest product first) until the product reaches the size; every choice
  knob at its start value;
* **choices** (the rest): every combination of each choice knob's values between its default and
  its start value (at least two values each, a contiguous run), with each split knob at its
  untiled or its start value.

Each per-knob set is connected under one-prime moves and choice steps, and every choice
combination reaches the tiling part through choice steps, so every member reaches every other
through moves that stay in the table (a tuner's moves
never leave it; the table's neighbour graph is the space's restricted to the members).
"""

from __future__ import annotations

import itertools
import math
from collections import deque

from .space import Choice, Config, Space, Split, prime_factors

CHOICE_SHARE = 0.2  # share of the size left to the choice combinations


def _ball(knob: Split, centre: tuple, radius: int) -> set:
    seen, frontier = {centre}, [centre]
    for _ in range(radius):
        frontier = [v for f in frontier for v in knob.moves(f) if v not in seen]
        seen.update(frontier)
    return seen


def _path(knob: Split, src: tuple, dst: tuple) -> list:
    """A shortest chain of one-prime moves from src to dst (breadth-first, deterministic)."""
    parent = {src: None}
    queue = deque([src])
    while queue:
        v = queue.popleft()
        if v == dst:
            break
        for w in knob.moves(v):
            if w not in parent:
                parent[w] = v
                queue.append(w)
    out, v = [], dst
    while v is not None:
        out.append(v)
        v = parent[v]
    return out[::-1]


def _choice_values(knob: Choice, a, b) -> list:
    i, j = sorted((knob.values.index(a), knob.values.index(b)))
    if i == j:  # at least two values: the adjacent one (upwards where possible)
        j = min(i + 1, len(knob.values) - 1)
        i = j - 1 if j == i else i
    return list(knob.values[max(i, 0): j + 1])


def _split_sets(space: Space, lo: Config, hi: Config, budget: int) -> list[list]:
    """Per knob: the path lo -> hi plus the balls of radius r around both ends; the radii grow
    one knob at a time (the step that keeps the product smallest) while it stays <= budget.
    Choice knobs get [their hi value]."""
    splits = [i for i, k in enumerate(space.knobs) if isinstance(k, Split)]
    paths = {i: _path(space.knobs[i], lo[i], hi[i]) for i in splits}
    radii = {i: 0 for i in splits}

    def values(i, r):
        knob = space.knobs[i]
        return set(paths[i]) | _ball(knob, lo[i], r) | _ball(knob, hi[i], r)

    sets = {i: values(i, 0) for i in splits}
    while True:
        size = math.prod(len(s) for s in sets.values())
        best = None
        for i in splits:
            grown = values(i, radii[i] + 1)
            if len(grown) == len(sets[i]):
                continue  # this knob holds its whole split already
            new_size = size // len(sets[i]) * len(grown)
            if new_size <= budget and (best is None or new_size < best[0]):
                best = (new_size, i, grown)
        if best is None:
            break
        _, i, grown = best
        radii[i] += 1
        sets[i] = grown
    return [sorted(sets[i], key=lambda v: (_steps(v), v)) if i in sets else [hi[i]]
            for i in range(len(space.knobs))]


def _steps(value: tuple) -> int:
    """Prime factors not at the outermost level: how far a split value is from untiled."""
    return sum(len(prime_factors(f)) for f in value[1:])


def table_members(space: Space, size: int = 5000) -> list[Config]:
    """About ``size`` configs of ``space`` (see the module docstring), deterministic, the untiled
    config first and the start second."""
    lo = space.untiled()
    hi = space.start if space.start is not None else lo
    tiles = _split_sets(space, lo, hi, max(1, int(size * (1 - CHOICE_SHARE))))
    choices = [_choice_values(k, lo[i], hi[i]) if isinstance(k, Choice) else None for i, k in enumerate(space.knobs)]
    # a choice's values in its own order (they may mix types: ``parallel`` holds 3 and "rows")
    ends = [sorted({lo[i], hi[i]}, key=k.values.index if isinstance(k, Choice) else None)
            for i, k in enumerate(space.knobs)]
    members: dict[Config, None] = {lo: None, hi: None}
    for config in itertools.product(*tiles):
        members[config] = None
    axes = [choices[i] if choices[i] is not None else ends[i] for i in range(len(space.knobs))]
    for config in itertools.product(*axes):
        members[config] = None
    return [c for c in members if space.contains(c)]


def connected(space: Space, members: list[Config]) -> bool:
    """Whether every member reaches every other by one-move steps between members."""
    if not members:
        return True
    inside = set(members)
    seen, queue = {members[0]}, deque([members[0]])
    while queue:
        c = queue.popleft()
        for n in space.neighbours(c):
            if n in inside and n not in seen:
                seen.add(n)
                queue.append(n)
    return len(seen) == len(inside)
