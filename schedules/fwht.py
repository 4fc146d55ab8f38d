"""The schedule spaces of the fast Walsh-Hadamard ops (``fastfood``, ``hadamard``), LLVM and CUDA,
and the function that applies a CUDA config (the LLVM one is ``FWHTTask.schedule``).

LLVM (:func:`fwht_space`): ``parallel`` over rows, the ``vector`` width of the innermost loop,
``row_local`` (every stage of a row computed inside the output's row loop, so the row stays in L1),
``rows`` (a tile of rows transformed together, one row per vector lane).

CUDA (:func:`cuda_fwht_space`):

The stages (``InB``, the butterflies ``H1_*``, ``PermG``, ``H2_*``, then ``Y``) are those of
tvmopt/ops/fastfood.py. Knobs:

- ``storage``: ``shared`` runs one thread block per row: every stage of the row is computed
  into shared memory by all the block's threads (``__syncthreads`` between stages, inserted by
  TVM), and only X, the diagonals and Y touch global memory. ``global`` launches one kernel per
  stage, each stage streaming through global memory (the baseline the shared form beats).
- ``threads``: threads per block (each thread takes row_len / threads butterflies per stage).

- ``shuffle``: butterflies of span < 32 exchange values between the lanes of a warp
  (``__shfl_sync``) instead of through memory: each thread holds one element in a register
  from the input through the span-16 stage, and only the span-16 stage writes shared (or global)
  memory. Offered when a row's length is a multiple of 32, so whole warps run every shuffle.
"""

from __future__ import annotations

from .space import Choice, Config, Space


#: row tiles whose rows share the vector lanes (``rows`` knob)
ROW_TILES = (8, 16)


def fwht_space(n: int, name: str, m: int = 1) -> Space:
    """``m`` rows of transforms of length ``n``. ``rows`` > 1 (offered where it divides ``m``)
    transforms a tile of that many rows together with the rows in the vector lanes: every
    butterfly stage is then a contiguous vector add or subtract whatever its span, where along
    a row the spans below the vector width become gathers. With it, ``vector`` only shapes the
    input and output stages."""
    vectors = tuple(v for v in (1, 4, 8, 16) if v <= n)
    rows = (1,) + tuple(r for r in ROW_TILES if m % r == 0)
    return Space(name, (Choice("parallel", (False, True), default=1),
                        Choice("vector", vectors, default=min(len(vectors) - 1, 2)),
                        Choice("row_local", (False, True), default=1),
                        Choice("rows", rows, default=len(rows) - 1)))


THREADS = (32, 64, 128, 256, 512, 1024)


#: butterflies below this span can be warp shuffles
WARP = 32


def cuda_fwht_space(row_len: int, name: str) -> Space:
    """``row_len``: elements of one row's transform (blocks x n)."""
    threads = tuple(t for t in THREADS if t <= max(32, row_len))
    default = threads.index(min(256, threads[-1]))
    shuffle = (False, True) if row_len % WARP == 0 else (False,)
    return Space(name, (Choice("storage", ("global", "shared"), default=1),
                        Choice("threads", threads, default=default),
                        Choice("shuffle", shuffle, default=len(shuffle) - 1)))


def shuffle_below(space: Space, config: Config) -> int:
    """The span below which the config's butterflies are warp shuffles (the compute's
    ``shuffle_below``; 0: none)."""
    return WARP if space.as_dict(config)["shuffle"] else 0


def apply_cuda_fwht(sch, space: Space, config: Config) -> None:
    """Schedule every stage of a fastfood/hadamard PrimFunc for CUDA."""
    from tvmopt.errors import ConfigError

    if not space.contains(config):
        raise ConfigError(f"config {config} is not in the space {space.name}")
    knob = space.as_dict(config)
    threads = knob["threads"]
    out = sch.get_sblock("Y")
    stages = [b for b in sch.get_child_blocks(sch.get_sblock("root")) if sch.get(b).name_hint != "Y"]
    if knob["storage"] == "shared":
        row, col = sch.get_loops(out)
        sch.bind(row, "blockIdx.x")
        for block in reversed(stages):
            sch.compute_at(block, row)
        names = [sch.get(b).name_hint for b in stages]
        # a stage read only by a shuffle stage stays in its thread's register
        register = [k + 1 < len(names) and _shuffles(names[k + 1], knob["shuffle"]) for k in range(len(names))]
        for block, in_register in zip(stages, register):
            if not in_register:
                sch.set_scope(block, 0, "shared")
                loops = sch.get_loops(block)[1:]
                fused = sch.fuse(*loops) if len(loops) > 1 else loops[0]
                _, tx = sch.split(fused, factors=[None, threads])
                sch.bind(tx, "threadIdx.x")
        for k in reversed(range(len(stages))):
            if register[k]:
                host = next(stages[h] for h in range(k + 1, len(stages)) if not register[h])
                sch.set_scope(stages[k], 0, "local")
                sch.compute_at(stages[k], sch.get_loops(host)[-1])
        _, tx = sch.split(col, factors=[None, threads])
        sch.bind(tx, "threadIdx.x")
        return
    for block in stages + [out]:
        loops = sch.get_loops(block)
        fused = sch.fuse(*loops) if len(loops) > 1 else loops[0]
        bx, tx = sch.split(fused, factors=[None, threads])
        sch.bind(bx, "blockIdx.x")
        sch.bind(tx, "threadIdx.x")


def _shuffles(name: str, shuffle: bool) -> bool:
    """Whether stage ``name`` (``H1_s`` / ``H2_s``: span 2^s) is a warp-shuffle stage."""
    return shuffle and name[:3] in ("H1_", "H2_") and 2 ** int(name[3:]) < WARP
