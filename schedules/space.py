"""Schedule spaces as plain data: knobs, their choices, configs and one-move neighbours.

Nothing here knows TVM. A config is a tuple with one entry per knob: a tuple of ints for a
:class:`Split` (the factors of an axis, outermost level first) and a scalar for a
:class:`Choice`. A *move* shifts one prime factor of one axis from one level to another (the
state/action representation of Zhang et al. 2019) or steps one choice knob to an adjacent
value.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import random as _random
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Iterator, Sequence

Config = tuple


def prime_factors(n: int) -> tuple[int, ...]:
    """Prime factors of n with multiplicity, ascending (1 has none)."""
    out, p = [], 2
    while p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    if n > 1:
        out.append(n)
    return tuple(out)


@dataclass(frozen=True)
class Split:
    """Factor ``extent`` into ``levels`` ordered factors whose product is the extent."""

    name: str
    extent: int
    levels: int

    def __post_init__(self):
        if self.extent < 1 or self.levels < 1:
            raise ValueError(f"bad split {self}")

    @cached_property
    def _exponents(self) -> dict[int, int]:
        exps: dict[int, int] = {}
        for p in prime_factors(self.extent):
            exps[p] = exps.get(p, 0) + 1
        return exps

    def count(self) -> int:
        return math.prod(math.comb(e + self.levels - 1, self.levels - 1) for e in self._exponents.values())

    def all(self) -> Iterator[tuple[int, ...]]:
        """Every factorization, outermost factor varying slowest."""

        def rec(extent: int, levels: int):
            if levels == 1:
                yield (extent,)
                return
            for d in range(1, extent + 1):
                if extent % d == 0:
                    for rest in rec(extent // d, levels - 1):
                        yield (d,) + rest

        return rec(self.extent, self.levels)

    def trivial(self) -> tuple[int, ...]:
        """The whole extent at the outermost level, 1 elsewhere."""
        return (self.extent,) + (1,) * (self.levels - 1)

    def contains(self, value: Any) -> bool:
        return (
            isinstance(value, tuple)
            and len(value) == self.levels
            and all(isinstance(f, int) and f >= 1 for f in value)
            and math.prod(value) == self.extent
        )

    def random(self, rng: _random.Random) -> tuple[int, ...]:
        """A uniformly random factorization: each prime's exponent split by stars and bars."""
        factors = [1] * self.levels
        for p, e in self._exponents.items():
            bars = sorted(rng.sample(range(e + self.levels - 1), self.levels - 1))
            edges = [-1] + bars + [e + self.levels - 1]
            for level in range(self.levels):
                factors[level] *= p ** (edges[level + 1] - edges[level] - 1)
        return tuple(factors)

    def moves(self, value: tuple[int, ...], reach: int = 1) -> Iterator[tuple[int, ...]]:
        """Every factorization reached by moving one prime factor between two levels (with
        ``reach`` 2, also a product of two of them in one step: 4 or 6 at once)."""
        for src in range(self.levels):
            parts = set(prime_factors(value[src]))
            if reach >= 2:
                primes = prime_factors(value[src])
                parts |= {primes[i] * primes[j] for i in range(len(primes)) for j in range(i + 1, len(primes))}
            for p in sorted(parts):
                for dst in range(self.levels):
                    if dst != src:
                        new = list(value)
                        new[src] //= p
                        new[dst] *= p
                        yield tuple(new)

    def swaps(self, value: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
        """Every factorization with the factors of two levels exchanged ((8, 128) -> (128, 8))."""
        for a, b in itertools.combinations(range(self.levels), 2):
            if value[a] != value[b]:
                new = list(value)
                new[a], new[b] = new[b], new[a]
                yield tuple(new)

    def random_move(self, value: tuple[int, ...], rng: _random.Random) -> tuple[int, ...] | None:
        """One random move (a prime factor from one level to another); None if there is none."""
        sources = [i for i, f in enumerate(value) if f > 1]
        if not sources or self.levels < 2:
            return None
        src = rng.choice(sources)
        p = rng.choice(sorted(set(prime_factors(value[src]))))
        dst = rng.choice([i for i in range(self.levels) if i != src])
        new = list(value)
        new[src] //= p
        new[dst] *= p
        return tuple(new)

    def encode(self, value: tuple[int, ...]) -> list[float]:
        """log2 of each factor normalised by log2 of the extent (0 when the extent is 1)."""
        scale = math.log2(self.extent) if self.extent > 1 else 1.0
        return [math.log2(f) / scale for f in value]


@dataclass(frozen=True)
class Choice:
    """One of a fixed, ordered list of values; neighbours are the adjacent values."""

    name: str
    values: tuple
    default: int = 0

    def count(self) -> int:
        return len(self.values)

    def all(self) -> Iterator:
        return iter(self.values)

    def trivial(self):
        return self.values[self.default]

    def contains(self, value: Any) -> bool:
        return any(value == v and type(value) is type(v) for v in self.values)

    def random(self, rng: _random.Random):
        return rng.choice(self.values)

    def moves(self, value, reach: int = 1) -> Iterator:
        i = self.values.index(value)
        if i > 0:
            yield self.values[i - 1]
        if i + 1 < len(self.values):
            yield self.values[i + 1]

    def random_move(self, value, rng: _random.Random):
        moves = list(self.moves(value))
        return rng.choice(moves) if moves else None

    def encode(self, value) -> list[float]:
        n = len(self.values)
        return [self.values.index(value) / (n - 1) if n > 1 else 0.0]


Knob = Split | Choice


@dataclass(frozen=True)
class Space:
    """An ordered set of knobs. The space is the product of the knobs' choices."""

    name: str
    knobs: tuple[Knob, ...]
    # where local searches start (G-BFS, N-A2C, and kernels built without records); None: the
    # trivial config. Not part of the space's identity (fingerprint, equality).
    start: tuple | None = dataclasses.field(default=None, compare=False)

    def __post_init__(self):
        names = [k.name for k in self.knobs]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate knob names in {names}")
        if self.start is not None and not self.contains(self.start):
            raise ValueError(f"start config {self.start} is not in the space {self.name}")

    def size(self) -> int:
        return math.prod(k.count() for k in self.knobs)

    def index(self, name: str) -> int:
        for i, k in enumerate(self.knobs):
            if k.name == name:
                return i
        raise KeyError(name)

    def as_dict(self, config: Config) -> dict[str, Any]:
        return {k.name: v for k, v in zip(self.knobs, config)}

    def replaced(self, config: Config, values: dict[str, Any]) -> Config:
        """``config`` with each knob named in ``values`` set to its value; names the space
        lacks are ignored (an op's start overrides may name a knob only some of its spaces have)."""
        return tuple(values.get(k.name, v) for k, v in zip(self.knobs, config))

    def untiled(self) -> Config:
        """Every axis unsplit (whole at its outermost level), every choice at its default."""
        return tuple(k.trivial() for k in self.knobs)

    def initial(self) -> Config:
        """The start config if the space has one, else the untiled config."""
        if self.start is not None:
            return self.start
        return self.untiled()

    def random(self, rng: _random.Random) -> Config:
        return tuple(k.random(rng) for k in self.knobs)

    def all(self) -> Iterator[Config]:
        """Every config (only sensible for small spaces)."""
        return itertools.product(*(list(k.all()) for k in self.knobs))

    def contains(self, config: Any) -> bool:
        return (
            isinstance(config, tuple)
            and len(config) == len(self.knobs)
            and all(k.contains(v) for k, v in zip(self.knobs, config))
        )

    def neighbours(self, config: Config, reach: int = 1) -> list[Config]:
        """Configs one move away, in a deterministic order without duplicates (``reach`` 2: a
        move may carry the product of two primes)."""
        seen, out = {config}, []
        for i, knob in enumerate(self.knobs):
            for value in knob.moves(config[i], reach):
                new = config[:i] + (value,) + config[i + 1 :]
                if new not in seen:
                    seen.add(new)
                    out.append(new)
        return out

    def encode(self, config: Config) -> list[float]:
        """A fixed-length feature vector in [0, 1] (tuners' observations and models)."""
        out: list[float] = []
        for knob, value in zip(self.knobs, config):
            out.extend(knob.encode(value))
        return out

    def features(self, config: Config) -> list[float]:
        """``encode`` plus derived tile sizes, for cost models.

        For every depth d counted from the innermost level: log2 of each split's product of its
        d innermost factors, and log2 of the tile volume (their product over all splits). The
        innermost of these is the register tile and vector length; outer ones are cache blocks.
        """
        splits = [(k, v) for k, v in zip(self.knobs, config) if isinstance(k, Split)]
        depth = max((k.levels for k, _ in splits), default=0)
        derived = []
        for d in range(1, depth + 1):
            inner = [math.log2(math.prod(v[-d:])) for _, v in splits]
            derived.extend(inner)
            derived.append(sum(inner))
        return self.encode(config) + derived

    def random_neighbour(self, config: Config, rng: _random.Random) -> Config | None:
        """A random one-move neighbour (cheaper than listing them all); None if none found."""
        for _ in range(16):
            i = rng.randrange(len(self.knobs))
            value = self.knobs[i].random_move(config[i], rng)
            if value is not None:
                new = config[:i] + (value,) + config[i + 1 :]
                if self.contains(new):
                    return new
        return None

    def fingerprint(self) -> str:
        """Changes whenever the knobs or their choices change: stale records are detected.

        A choice's default only moves the starting point, not the set of configs, so it is
        left out (written as 0, as when defaults were introduced).
        """
        desc = json.dumps([repr(dataclasses.replace(k, default=0) if isinstance(k, Choice) else k)
                           for k in self.knobs])
        return hashlib.sha1(desc.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class SubSpace(Space):
    """A finite subset of a space (e.g. a pre-measured replay table), with the same knobs.

    Moves and random picks stay inside the subset; ``initial`` is the start when the subset has
    one (a replay table of a space with a heuristic start), else the member with the fewest
    tiling levels in use (the closest to the base space's trivial config).
    """

    members: tuple[Config, ...] = ()

    @cached_property
    def _member_set(self) -> frozenset:
        return frozenset(self.members)

    def size(self) -> int:
        return len(self.members)

    def initial(self) -> Config:
        trivial = Space.initial(self)  # the start, if any
        if trivial in self._member_set:
            return trivial
        return min(self.members, key=lambda c: (_distance(trivial, c), self.members.index(c)))

    def random(self, rng: _random.Random) -> Config:
        return rng.choice(self.members)

    def all(self) -> Iterator[Config]:
        return iter(self.members)

    def contains(self, config: Any) -> bool:
        return config in self._member_set

    @cached_property
    def _neighbour_cache(self) -> dict[tuple[Config, int], tuple[Config, ...]]:
        return {}

    def _neighbours(self, config: Config, reach: int = 1) -> tuple[Config, ...]:
        cached = self._neighbour_cache.get((config, reach))
        if cached is None:
            cached = tuple(c for c in Space.neighbours(self, config, reach) if c in self._member_set)
            self._neighbour_cache[(config, reach)] = cached
        return cached

    def neighbours(self, config: Config, reach: int = 1) -> list[Config]:
        return list(self._neighbours(config, reach))

    def random_neighbour(self, config: Config, rng: _random.Random) -> Config | None:
        options = self._neighbours(config)
        return rng.choice(options) if options else None

    @cached_property
    def _fingerprint(self) -> str:
        desc = Space.fingerprint(self) + json.dumps([config_to_json(c) for c in self.members])
        return hashlib.sha1(desc.encode()).hexdigest()[:12]

    def fingerprint(self) -> str:
        return self._fingerprint


def _distance(a: Config, b: Config) -> int:
    """How many prime-factor moves or choice steps separate two configs."""
    total = 0
    for x, y in zip(a, b):
        if isinstance(x, tuple):
            total += sum(len(prime_factors(p // math.gcd(p, q))) for p, q in zip(x, y))
        else:
            total += x != y
    return total


def restrict(space: Space, members, start: Config | None = None) -> SubSpace:
    """The subset ``members`` of ``space`` (each member must belong to it), starting local
    searches at ``start`` (a member) when given."""
    members = tuple(members)
    for c in members:
        if not space.contains(c):
            raise ValueError(f"{c} is not in space {space.name}")
    return SubSpace(space.name, space.knobs, start=start, members=members)


def widened(space: Space, members) -> Space:
    """``space`` with each choice knob also holding the values ``members`` use that it lacks
    (after its own, in the order first used): a replay table outlives the space it was measured
    in, and a value the space has since dropped (the dense GEMM's ``pack_b = True``, before its
    weights were stored in panels) is still a lookup in the table. Splits are left as they are."""
    knobs = list(space.knobs)
    for i, knob in enumerate(knobs):
        if isinstance(knob, Choice):
            for c in members:
                if not knobs[i].contains(c[i]):
                    knobs[i] = Choice(knob.name, knobs[i].values + (c[i],), knob.default)
    return space if knobs == list(space.knobs) else Space(space.name, tuple(knobs), start=space.start)


def config_to_json(config: Config) -> list:
    """A config as JSON-ready lists."""
    return [list(v) if isinstance(v, tuple) else v for v in config]


def config_from_json(data: Sequence) -> Config:
    """Inverse of :func:`config_to_json` (lists back to tuples)."""
    return tuple(tuple(v) if isinstance(v, list) else v for v in data)
