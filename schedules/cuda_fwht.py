"""The CUDA schedule space of the fast Walsh-Hadamard ops (``fastfood``, ``hadamard``), and the
function that applies a config.

The stages (``InB``, the butterflies ``H1_*``, ``PermG``, ``H2_*``, then ``Y``) are those of
tvmopt/ops/fastfood.py. Knobs:

- ``storage``: ``shared`` runs one thread block per row: every stage of the row is computed
  into shared memory by all the block's threads (``__syncthreads`` between stages, inserted by
  TVM), and only X, the diagonals and Y touch global memory. ``global`` launches one kernel per
  stage, each stage streaming through global memory (the baseline the shared form beats).
- ``threads``: threads per block (each thread takes row_len / threads butterflies per stage).

Warp shuffles for the butterflies of span < 32 are not in this space (not attempted): TVM
emits ``__shfl_sync`` only from its own lowering of cross-thread reductions, and a TE stage reads
a buffer at ``t ^ h``; a shuffle stage needs each element held by one lane in a register and the
shuffle executed by all lanes unconditionally, which would take a hand-written TIR stage. The
shared-memory butterflies are what this space offers.
"""

from __future__ import annotations

from .space import Choice, Config, Space

THREADS = (32, 64, 128, 256, 512, 1024)


def cuda_fwht_space(row_len: int, name: str) -> Space:
    """``row_len``: elements of one row's transform (blocks x n)."""
    threads = tuple(t for t in THREADS if t <= max(32, row_len))
    default = threads.index(min(256, threads[-1]))
    return Space(name, (Choice("storage", ("global", "shared"), default=1),
                        Choice("threads", threads, default=default)))


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
        for block in stages:
            sch.set_scope(block, 0, "shared")
            loops = sch.get_loops(block)[1:]
            fused = sch.fuse(*loops) if len(loops) > 1 else loops[0]
            _, tx = sch.split(fused, factors=[None, threads])
            sch.bind(tx, "threadIdx.x")
        _, tx = sch.split(col, factors=[None, threads])
        sch.bind(tx, "threadIdx.x")
        return
    for block in stages + [out]:
        loops = sch.get_loops(block)
        fused = sch.fuse(*loops) if len(loops) > 1 else loops[0]
        bx, tx = sch.split(fused, factors=[None, threads])
        sch.bind(bx, "blockIdx.x")
        sch.bind(tx, "threadIdx.x")
