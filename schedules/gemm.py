"""The LLVM schedule space of the GEMM family and the one function that applies a config.

Loop nest (outermost first) for C[b, i, j] = sum_k A[b, i, k] * B'[b, k, j]:

    b  m0 n0 | m1 n1 | k0 | m2 n2 | k1 | m3 n3
    ^ parallel  ^ cache block  ^ micro-tile ^ register micro-kernel (m3 unrolled, n3 vector)

Every axis is split into an exact factorization of its extent (4 levels for M and N, 2 for
K), so every config is correct for every shape, primes included. Other knobs:

- ``pack_b``: copy B into panels [N/n3, K, n3] so the micro-kernel streams contiguous memory.
- ``accumulate``: ``local`` accumulates the (m2*m3) x (n2*n3) block of C in a local buffer
  (cache_write) that is written back once after the whole K loop; ``global`` updates C.
- ``unroll``: auto-unroll limit on the micro-kernel loops (0 = none).
- ``vectorize``: vectorize the innermost n3 loop.
- ``parallel``: how many of the outer loops (b, m0, n0) are fused and run in parallel.
"""

from __future__ import annotations

from dataclasses import dataclass

from .space import Choice, Config, Space, Split


@dataclass(frozen=True)
class GemmShape:
    m: int
    n: int
    k: int
    batch: int = 1
    batched: bool = False
    transposed_b: bool = False  # B given as W[N, K] (dense layers)


UNROLL = (0, 16, 64, 256)


def gemm_space(shape: GemmShape, packable: bool = True, name: str = "gemm-llvm", heuristic_start: bool = False) -> Space:
    """The GEMM space; ``packable=False`` drops the B-packing knob (for kernels whose weights
    are already stored in a [K, N] layout, such as the compressed ops). ``heuristic_start``
    makes :func:`heuristic_config` the space's start instead of the trivial config."""
    knobs = (
        Split("tile_m", shape.m, 4),
        Split("tile_n", shape.n, 4),
        Split("tile_k", shape.k, 2),
        # defaults (the starting point of G-BFS and N-A2C) are what every fast config does
        Choice("pack_b", (False, True), default=1) if packable else Choice("pack_b", (False,)),
        Choice("accumulate", ("global", "local"), default=1),
        Choice("unroll", UNROLL),
        Choice("vectorize", (False, True), default=1),
        Choice("parallel", (0, 1, 2, 3) if shape.batched else (0, 1, 2), default=1),
    )
    space = Space(name, knobs)
    return Space(name, knobs, start=heuristic_config(shape, space)) if heuristic_start else space


def largest_divisor(n: int, options, default: int | None = 1) -> int | None:
    """The first of ``options`` (largest first) that divides ``n``, else ``default``."""
    return next((d for d in options if n % d == 0), default)


def heuristic_config(shape: GemmShape, space: Space):
    """A reasonable config without search (what a DLight rule would pick): a vector of up to 16
    outputs per register (n3), up to 4 rows (m3) of register tile, two (or the fewest > 1) parallel strips of N
    fused with the outer M loop, K blocked by up to 256, a local accumulator, unroll 16."""
    n3 = largest_divisor(shape.n, (16, 8, 4, 2))
    m3 = largest_divisor(shape.m, (4, 2))
    # two parallel strips (else the fewest > 1), unless the product is too small to share
    n0 = next((d for d in range(2, 17) if (shape.n // n3) % d == 0), 1) if shape.m * shape.n * shape.k >= 1 << 16 else 1
    k1 = max(d for d in range(1, min(shape.k, 256) + 1) if shape.k % d == 0)
    knob = {k.name: k for k in space.knobs}
    config = ((1, shape.m // m3, 1, m3), (n0, shape.n // (n0 * n3), 1, n3), (shape.k // k1, k1),
              knob["pack_b"].values[knob["pack_b"].default], "local", 16, True, 2)
    return config if space.contains(config) else space.initial()


def replay_subspace(shape: GemmShape):
    """The restricted GEMM space measured exhaustively for replay comparisons of tuners.

    Three free tiling levels for M (m2 = 1) and N (n2 = 1, n3 >= 8), K's inner block at least
    16, and the best-practice choices fixed (packed B, local accumulator, vectorized, outer M
    loop parallel). 256^3 gives 4,725 configs spanning two orders of magnitude of speed.
    """
    from .space import restrict

    full = gemm_space(shape)
    tm, tn, tk = (k.all() for k in full.knobs[:3])
    ms = [f for f in tm if f[2] == 1]
    ns = [f for f in tn if f[2] == 1 and f[3] >= 8]
    ks = [f for f in tk if f[1] >= 16]
    fixed = (True, "local", 0, True, 1)
    return restrict(full, ((m, n, k) + fixed for m in ms for n in ns for k in ks))


def apply_gemm(sch, shape: GemmShape, space: Space, config: Config) -> None:
    """Schedule the block ``C`` of ``sch`` (built from ops/gemm.py's compute) in place."""
    from tvmopt.errors import ConfigError

    if not space.contains(config):
        raise ConfigError(f"config {config} is not in the space {space.name}")
    knob = space.as_dict(config)
    tm, tn, tk = knob["tile_m"], knob["tile_n"], knob["tile_k"]
    block = sch.get_sblock("C")

    if knob["pack_b"]:
        _pack_b(sch, block, shape, tn[3])

    lead, m, n, kk = split_gemm_loops(sch, block, shape, tm, tn, tk)
    sch.reorder(*lead, m[0], n[0], m[1], n[1], kk[0], m[2], n[2], kk[1], m[3], n[3])

    outer = lead + [m[0], n[0]]
    if knob["parallel"]:
        fused = sch.fuse(*outer[: knob["parallel"]]) if knob["parallel"] > 1 else outer[0]
        sch.parallel(fused)

    if knob["accumulate"] == "local":
        local = sch.cache_write(block, 0, "local")
        sch.reverse_compute_at(local, n[1])
        wb_loops = sch.get_loops(local)
        depth = [sch.get(lp).same_as(sch.get(n[1])) for lp in wb_loops].index(True) + 1
        own_loops = wb_loops[depth:]
        # extent-1 loops vanish; never vectorize n1 itself, which holds the reduction
        if knob["vectorize"] and own_loops:
            sch.vectorize(own_loops[-1])
    if knob["unroll"]:
        sch.annotate(kk[1], "pragma_auto_unroll_max_step", knob["unroll"])
        sch.annotate(kk[1], "pragma_unroll_explicit", 1)
    if knob["vectorize"] and tn[3] > 1:
        sch.vectorize(n[3])
    sch.decompose_reduction(block, kk[0])


def split_gemm_loops(sch, block, shape: GemmShape, tm, tn, tk):
    """The (i, j, k) loops of a GEMM block split by the factors of its config: returns the
    batch loops and the split loops of M, N and K (shared by the LLVM and CUDA spaces)."""
    loops = sch.get_loops(block)
    lead = list(loops[:-3]) if shape.batched else []
    i, j, k = loops[-3:]
    return lead, sch.split(i, factors=list(tm)), sch.split(j, factors=list(tn)), sch.split(k, factors=list(tk))


def _pack_b(sch, block, shape: GemmShape, width: int) -> None:
    """Copy B into [.., N/width, K, width] panels, in parallel over panels."""
    packed = sch.cache_read(block, 1, "global")
    if shape.transposed_b:
        index_map = lambda *idx: (*idx[:-2], idx[-2] // width, idx[-1], idx[-2] % width)  # noqa: E731
    else:
        index_map = lambda *idx: (*idx[:-2], idx[-1] // width, idx[-2], idx[-1] % width)  # noqa: E731
    sch.transform_layout(packed, ("write", 0), index_map)
    loops = sch.get_loops(packed)
    sch.parallel(loops[0])
