"""The CUDA schedule space of the GEMM family (and of the compressed dense ops that share its
loop nest), and the one function that applies a config.

Loop nest (outermost first) for C[b, i, j] = sum_k A[b, i, k] * B'[b, k, j]:

    b   m0  n0  | m1  n1     | k0 | k1 | m2 n2
    blockIdx.zyx  threadIdx.yx  K steps (tiles of A and B staged in shared memory per k0)
                                     k1 m2 n2: each thread's (m2 x n2) register tile

Each axis is an exact factorization of its extent (``Split``, the same prime-factor moves as
the LLVM space), so every config computes the right result; configs whose block needs more
threads or shared memory than the GPU has are valid points of the space that fail to launch:
``tvmopt.cuda.check_launch_bounds`` rejects them before they are exported. Other knobs:

- ``shared``: copy the (m1*m2) x k1 tile of A and the k1 x (n1*n2) tile of B into shared memory
  once per k0 step, every thread of the block loading a part (a cooperative fetch).
- ``vector``: width of those loads (float2/float4) wherever the tile and the array rows allow
  it (the innermost tile extent and the array's row length divisible by it), else scalar.
- ``unroll``: ``pragma_auto_unroll_max_step`` on the k0 body.
- ``decode`` (compressed ops whose weight is a separate stage): ``inline`` decodes each weight
  inside the product; ``shared`` decodes the k1 x (n1*n2) weight tile once per k0 step into
  shared memory, where every row of the block reads it.

Nothing here imports TVM at module level.
"""

from __future__ import annotations

from .gemm import GemmShape, largest_divisor, split_gemm_loops
from .space import Choice, Config, Space, Split, restrict

UNROLL = (0, 16, 64, 512)
VECTOR = (1, 2, 4)
#: what every CUDA generation since Kepler allows (checked again per arch in tvmopt.cuda)
MAX_THREADS = 1024


def cuda_gemm_space(shape: GemmShape, name: str = "gemm-cuda", decode: bool = False) -> Space:
    """The CUDA GEMM space; ``decode`` adds the ``decode`` knob (compressed ops with a W stage).
    Its start is :func:`heuristic_cuda_config`."""
    knobs = (
        Split("tile_m", shape.m, 3),
        Split("tile_n", shape.n, 3),
        Split("tile_k", shape.k, 2),
        Choice("shared", (False, True), default=1),
        Choice("vector", VECTOR, default=2),
        Choice("unroll", UNROLL, default=2),
    ) + ((Choice("decode", ("inline", "shared"), default=1),) if decode else ())
    space = Space(name, knobs)
    return Space(name, knobs, start=heuristic_cuda_config(shape, space))


def heuristic_cuda_config(shape: GemmShape, space: Space) -> Config:
    """A config without search, as TVM's GPU rules pick one: a 4x4 register tile per thread
    (smaller where M or N do not divide), 8 x 16 threads, K staged 8 (or 16) at a time."""
    m2 = largest_divisor(shape.m, (4, 2))
    n2 = largest_divisor(shape.n, (4, 2))
    m1 = largest_divisor(shape.m // m2, (8, 4, 2))
    n1 = largest_divisor(shape.n // n2, (16, 8, 4, 2))
    k1 = largest_divisor(shape.k, (8, 16, 4, 2))
    config = ((shape.m // (m1 * m2), m1, m2), (shape.n // (n1 * n2), n1, n2), (shape.k // k1, k1), True, 4, 64)
    config += tuple(k.trivial() for k in space.knobs[len(config):])
    return config if space.contains(config) else space.initial()


def threads_per_block(space: Space, config: Config) -> int:
    knob = space.as_dict(config)
    return knob["tile_m"][1] * knob["tile_n"][1]


def cuda_replay_subspace(shape: GemmShape):
    """The CUDA GEMM sub-space measured whole (one exported batch) for replay comparisons:
    register tiles m2, n2 in {1, 2, 4, 8}, 64 to 256 threads per block, k1 in {4, 8, 16, 32},
    shared staging, float4 loads and unroll 64 fixed. 1024^3 gives 1,504 configs (about 15 min
    to export on 2 cores, 5 MiB of CUDA C plus 12 MiB of inputs and reference)."""
    full = cuda_gemm_space(shape)
    tm, tn, tk = (k.all() for k in full.knobs[:3])
    ms = [f for f in tm if f[2] in (1, 2, 4, 8)]
    ns = [f for f in tn if f[2] in (1, 2, 4, 8)]
    ks = [f for f in tk if f[1] in (4, 8, 16, 32)]
    return restrict(full, ((m, n, k, True, 4, 64) for m in ms for n in ns if 64 <= m[1] * n[1] <= 256 for k in ks))


def apply_cuda_gemm(sch, shape: GemmShape, space: Space, config: Config, block: str = "C",
                    unstaged: tuple[str, ...] = ()) -> None:
    """Schedule block ``block`` of ``sch`` (the GEMM-shaped reduction) for CUDA in place.

    ``unstaged``: names of read buffers never copied to shared memory (read with a
    data-dependent index, such as N:M's gathered inputs, whose tile bound inference cannot
    know). A ``W`` stage (decoded weights) is inlined or decoded into shared memory per
    ``decode``.
    """
    from tvmopt.errors import ConfigError

    if not space.contains(config):
        raise ConfigError(f"config {config} is not in the space {space.name}")
    knob = space.as_dict(config)
    tm, tn, tk = knob["tile_m"], knob["tile_n"], knob["tile_k"]
    c = sch.get_sblock(block)
    has_w = _has_block(sch, "W")
    if has_w and knob.get("decode", "inline") == "inline":
        sch.compute_inline(sch.get_sblock("W"))
        has_w = False

    lead, m, n, kk = split_gemm_loops(sch, c, shape, tm, tn, tk)
    sch.reorder(*lead, m[0], n[0], m[1], n[1], kk[0], kk[1], m[2], n[2])
    if lead:
        sch.bind(lead[0], "blockIdx.z")
    sch.bind(m[0], "blockIdx.y")
    sch.bind(n[0], "blockIdx.x")
    sch.bind(m[1], "threadIdx.y")
    sch.bind(n[1], "threadIdx.x")
    threads = (tm[1], tn[1])
    depth = len(lead) + 5                 # loops down to k0, shared by the staged copies

    local = sch.cache_write(c, 0, "local")
    sch.reverse_compute_at(local, n[1])
    if has_w:
        w = sch.get_sblock("W")
        sch.set_scope(w, 0, "shared")
        sch.compute_at(w, kk[0])
        _cooperative(sch, w, depth, threads, 1)
    if knob["shared"]:
        reads = [r.source.name for r in sch.get(c).reads]
        for index, name in enumerate(reads):
            if name in unstaged or name.endswith(("_shared", "_local")) or (has_w and name == "W"):
                continue
            staged = sch.cache_read(c, index, "shared")
            sch.compute_at(staged, kk[0])
            _cooperative(sch, staged, depth, threads, knob["vector"])
    if knob["unroll"]:
        sch.annotate(kk[0], "pragma_auto_unroll_max_step", knob["unroll"])
        sch.annotate(kk[0], "pragma_unroll_explicit", 1)
    sch.decompose_reduction(c, kk[0])


def _has_block(sch, name: str) -> bool:
    try:
        sch.get_sblock(name)
        return True
    except Exception:  # noqa: BLE001 - TVM raises its own error kind for a missing block
        return False


def _cooperative(sch, block, depth: int, threads: tuple[int, int], vector: int) -> None:
    """Every thread of the block copies part of the tile: the tile's own loops (below the
    first ``depth``) fused and split over (threadIdx.y, threadIdx.x), innermost ``vector``
    lanes at a time where the tile's and the source array's rows allow it."""
    own = sch.get_loops(block)[depth:] or [sch.add_unit_loop(block)]   # a one-element tile
    extents = [int(sch.get(lp).extent) for lp in own]
    reads = sch.get(block).reads
    row = int(reads[0].source.shape[-1]) if reads else 0
    total = 1
    for e in extents:
        total *= e
    if vector > 1 and not (extents[-1] % vector == 0 and row % vector == 0 and total % vector == 0):
        vector = 1
    fused = sch.fuse(*own)
    factors = [None, threads[0], threads[1]] + ([vector] if vector > 1 else [])
    parts = sch.split(fused, factors=factors)
    sch.bind(parts[1], "threadIdx.y")
    sch.bind(parts[2], "threadIdx.x")
    if vector > 1:
        sch.vectorize(parts[3])
