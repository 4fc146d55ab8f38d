import json
import math
import random
from collections import Counter

import pytest

from tvmopt.schedules.gemm import GemmShape, gemm_space
from tvmopt.schedules.space import Choice, Space, Split, config_from_json, config_to_json, prime_factors


def test_prime_factors():
    assert prime_factors(1) == ()
    assert prime_factors(127) == (127,)
    assert prime_factors(96) == (2, 2, 2, 2, 2, 3)
    assert math.prod(prime_factors(1000)) == 1000


@pytest.mark.parametrize("extent,levels", [(1, 4), (12, 3), (96, 4), (127, 4), (1024, 2), (360, 4)])
def test_split_count_matches_enumeration(extent, levels):
    split = Split("s", extent, levels)
    everything = list(split.all())
    assert len(everything) == len(set(everything)) == split.count()
    assert all(split.contains(v) for v in everything)


def test_split_random_is_uniform():
    split = Split("s", 12, 2)  # 6 factorizations
    rng = random.Random(0)
    counts = Counter(split.random(rng) for _ in range(6000))
    assert set(counts) == set(split.all())
    assert max(counts.values()) / min(counts.values()) < 1.3


def test_gemm_space_is_large_enough_for_1024():
    assert gemm_space(GemmShape(1024, 1024, 1024)).size() >= 10**6


def test_json_round_trip():
    space = gemm_space(GemmShape(96, 80, 48))
    rng = random.Random(1)
    for _ in range(50):
        config = space.random(rng)
        assert space.contains(config)
        back = config_from_json(json.loads(json.dumps(config_to_json(config))))
        assert back == config and space.contains(back)


def _moves_between(space, a, b):
    """Number of knobs that differ, and whether a split differs by one prime factor moved."""
    diffs = [(k, x, y) for k, x, y in zip(space.knobs, a, b) if x != y]
    assert len(diffs) == 1
    knob, x, y = diffs[0]
    if isinstance(knob, Split):
        changed = [(p, q) for p, q in zip(x, y) if p != q]
        assert len(changed) == 2
        (p1, q1), (p2, q2) = changed
        ratio = q1 / p1 if q1 > p1 else q2 / p2
        assert ratio in prime_factors(knob.extent)
        assert sorted([q1 / p1, q2 / p2]) == [1 / ratio, ratio]
    else:
        assert abs(knob.values.index(x) - knob.values.index(y)) == 1


def test_neighbours_are_valid_and_one_move_away():
    space = gemm_space(GemmShape(96, 80, 48))
    rng = random.Random(2)
    for _ in range(20):
        config = space.random(rng)
        nbrs = space.neighbours(config)
        assert nbrs and len(nbrs) == len(set(nbrs)) and config not in nbrs
        for n in nbrs:
            assert space.contains(n)
            _moves_between(space, config, n)


def test_neighbours_reach_whole_small_space():
    space = Space("t", (Split("a", 12, 3), Choice("c", (0, 1, 2))))
    start = space.initial()
    seen, frontier = {start}, [start]
    while frontier:
        for n in space.neighbours(frontier.pop()):
            if n not in seen:
                seen.add(n)
                frontier.append(n)
    assert len(seen) == space.size()


def test_contains_rejects_bad_configs():
    space = gemm_space(GemmShape(16, 16, 16))
    good = space.initial()
    assert space.contains(good)
    assert not space.contains(good[:-1])
    assert not space.contains(((16, 1, 1, 2),) + good[1:])  # product != extent
    assert not space.contains(good[:3] + ("yes",) + good[4:])
    assert not space.contains(list(good))


def test_fingerprint_changes_with_knobs():
    a = gemm_space(GemmShape(16, 16, 16))
    b = gemm_space(GemmShape(16, 16, 32))
    assert a.fingerprint() == gemm_space(GemmShape(16, 16, 16)).fingerprint()
    assert a.fingerprint() != b.fingerprint()
