"""Fast Walsh-Hadamard transforms: ``fastfood`` (stacked S·H·G·Π·H·B blocks) and ``hadamard``
(a fixed Hadamard head: rows ``first_row ..`` of H·x times one scale).

Each FWHT stage is one TE stage, ``y[t] = x[t] + x[t^h]`` when bit h of t is clear and
``x[t^h] - x[t]`` when it is set, so a transform of length n costs n log2 n additions and no
multiplications. Schedule knobs (data, like every space): ``parallel`` over rows, the
``vector`` width of the innermost t loop, and ``row_local``, which computes every stage of a row
inside the output's row loop so the row stays in L1 instead of streaming each stage through memory.
Keys: ``fastfood:MxINxOUT`` and ``hadamard:MxINxOUT``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tvmopt.model.formats import fwht_np, next_pow2
from tvmopt.schedules.fwht import fwht_space
from tvmopt.schedules.space import Config, Space
from tvmopt.ops.kernel import Kernel, array_bytes
from tvmopt.ops.registry import OpFamily, TaskKind, register_family
from tvmopt.ops.task import TASK_ANNOTATION, CudaTask, Task



def _fwht_stages(te, tvm, h, n, prefix, shuffle_below=0):
    """log2(n) butterfly stages over the last axis of the 3-D tensor ``h``. Stages of span
    below ``shuffle_below`` (CUDA: 32) read the partner through a warp shuffle from the lane
    holding element ``(b * n + t) ^ step`` of the row (schedules/fwht.py keeps one element
    per lane in a register); the shuffle is unconditional, so every lane of the warp runs it."""
    def butterfly(prev, step):
        def stage(i, b, t):
            partner = prev[i, b, t ^ step]
            return tvm.tirx.Select((t & step) == 0, prev[i, b, t] + partner, partner - prev[i, b, t])
        return stage

    def shuffled(prev, step):
        def stage(i, b, t):
            mine = prev[i, b, t].asobject()
            partner = tvm.tirx.op.tvm_warp_shuffle(tvm.tirx.const(0xFFFFFFFF, "uint32"), mine,
                                                   ((b * n + t) ^ step) & 31, 32, 32)
            sign = 1.0 - 2.0 * ((t & step) != 0).astype("float32")     # x[t^h] +- x[t]
            return partner + sign * mine
        return stage

    step, s = 1, 0
    while step < n:
        h = te.compute(h.shape, (shuffled if step < shuffle_below else butterfly)(h, step), name=f"{prefix}{s}")
        step, s = step * 2, s + 1
    return h


@dataclass
class FWHTTask(Task):
    key: str
    m: int
    in_features: int
    out_features: int
    params: dict = field(default_factory=dict)

    family = "fastfood"

    def __post_init__(self):
        self.n = next_pow2(self.in_features)
        self.blocks = -(-self.out_features // self.n)
        self.space = fwht_space(self.n, f"{self.family}-llvm", self.m)
        log_n = max(1, int(np.log2(self.n)))
        # what the dense product of the same shape costs, so GFLOPS compare with dense
        self.flops = 2.0 * self.m * self.in_features * self.out_features
        self.real_flops = 2.0 * self.m * self.blocks * self.n * log_n

    def with_params(self, params: dict) -> "FWHTTask":
        return type(self)(self.key, self.m, self.in_features, self.out_features, params={**self.params, **params})

    # ---- inputs and reference ----
    def make_inputs(self, rng):
        shape = (self.blocks, self.n)
        return [rng.uniform(-1, 1, size=(self.m, self.in_features)).astype(np.float32),
                rng.choice([-1.0, 1.0], size=shape).astype(np.float32),
                rng.standard_normal(shape).astype(np.float32),
                rng.uniform(-1, 1, size=shape).astype(np.float32) / self.n,
                np.stack([rng.permutation(self.n) for _ in range(self.blocks)]).astype(np.int32)]

    def reference(self, inputs):
        from tvmopt.model.opset import reference

        x, b, g, s, perm = inputs
        return reference("Fastfood", x, {"diag_b": b, "diag_g": g, "diag_s": s, "perm": perm, "bias": None},
                         {"in_features": self.in_features, "out_features": self.out_features})

    def tolerance(self):
        return 1e-4, 1e-5 * max(1.0, self.n ** 0.5)

    # ---- compute ----
    def compute(self, shuffle_below: int = 0):
        import tvm
        from tvm import te

        m, n, blocks, inf = self.m, self.n, self.blocks, self.in_features
        x = te.placeholder((m, inf), "float32", name="X")
        b, g, s = (te.placeholder((blocks, n), "float32", name=nm) for nm in ("B", "G", "S"))
        perm = te.placeholder((blocks, n), "int32", name="Perm")
        h = te.compute((m, blocks, n), lambda i, k, t: tvm.tirx.Select(
            t < inf, x[i, tvm.tirx.min(t, inf - 1)], tvm.tirx.const(0.0, "float32")) * b[k, t], name="InB")
        h = _fwht_stages(te, tvm, h, n, "H1_", shuffle_below)
        # the clamp only tells bound inference the gather stays in the row (perm is a permutation)
        h = te.compute((m, blocks, n), lambda i, k, t: h[i, k, tvm.tirx.max(tvm.tirx.min(perm[k, t], n - 1), 0)]
                       * g[k, t], name="PermG")
        h = _fwht_stages(te, tvm, h, n, "H2_", shuffle_below)
        y = te.compute((m, self.out_features), lambda i, o: h[i, o // n, o % n] * s[o // n, o % n], name="Y",
                       attrs={TASK_ANNOTATION: self.key})
        return [x, b, g, s, perm, y]

    def primfunc(self, config: Config | None = None):
        import tvm
        from tvm import te

        func = te.create_prim_func(self.compute()).with_attr("global_symbol", "main")
        sch = tvm.s_tir.Schedule(tvm.IRModule({"main": func}))
        apply_fwht(sch, self.space, self.space.initial() if config is None else config)
        return sch.mod["main"]

    def schedule(self, config, target):
        import tvm

        return tvm.IRModule({"main": self.primfunc(config)})

    #: the pass emits the transform unscheduled and fusable: the bias and activation after it
    #: (and a following scale) run in the output stage's write-back
    fuses_epilogue = True

    def apply(self, sch, block, config: Config | None, epilogue=()) -> list:
        """``block``: the output stage ``Y`` (inside a fused function); the epilogue is inlined
        into it, then every stage before it is scheduled by the config."""
        from tvmopt.schedules.gemm import inline_epilogue

        leftover = inline_epilogue(sch, epilogue)
        apply_fwht(sch, self.space, self.space.initial() if config is None else config, out=block)
        return leftover


class HadamardTask(FWHTTask):
    """``Y = scale * (H · pad(X))[first_row : first_row + out]``."""

    family = "hadamard"

    def __post_init__(self):
        self.params = {"first_row": 1, **self.params}
        self.n = next_pow2(max(self.in_features, self.out_features + self.params["first_row"]))
        self.blocks = 1
        self.space = fwht_space(self.n, "hadamard-llvm", self.m)
        self.flops = 2.0 * self.m * self.in_features * self.out_features
        self.real_flops = self.m * self.n * max(1, int(np.log2(self.n)))

    def make_inputs(self, rng):
        return [rng.uniform(-1, 1, size=(self.m, self.in_features)).astype(np.float32),
                np.array([0.25], np.float32)]

    def reference(self, inputs):
        x, scale = inputs
        xp = np.zeros((self.m, self.n), np.float32)
        xp[:, : self.in_features] = x
        lo = self.params["first_row"]
        return (fwht_np(xp)[:, lo: lo + self.out_features] * scale[0]).astype(np.float32)

    def compute(self, shuffle_below: int = 0):
        import tvm
        from tvm import te

        m, n, inf, lo = self.m, self.n, self.in_features, self.params["first_row"]
        x = te.placeholder((m, inf), "float32", name="X")
        scale = te.placeholder((1,), "float32", name="Scale")
        h = te.compute((m, 1, n), lambda i, k, t: tvm.tirx.Select(
            t < inf, x[i, tvm.tirx.min(t, inf - 1)], tvm.tirx.const(0.0, "float32")), name="InB")
        h = _fwht_stages(te, tvm, h, n, "H1_", shuffle_below)
        y = te.compute((m, self.out_features), lambda i, o: h[i, 0, o + lo] * scale[0], name="Y",
                       attrs={TASK_ANNOTATION: self.key})
        return [x, scale, y]


def apply_fwht(sch, space: Space, config: Config, out=None) -> None:
    """Schedule every stage of a fastfood/hadamard PrimFunc (blocks InB, H*, PermG, Y): ``out``
    is the output stage (default: the block ``Y``), the stages are the blocks before it."""
    from tvmopt.errors import ConfigError

    if not space.contains(config):
        raise ConfigError(f"config {config} is not in the space {space.name}")
    knob = space.as_dict(config)
    out = sch.get_sblock("Y") if out is None else out
    children = list(sch.get_child_blocks(sch.get_sblock("root")))
    at = next(i for i, b in enumerate(children) if sch.get(b).same_as(sch.get(out)))
    stages = children[:at]
    rows = knob.get("rows", 1)
    if rows > 1:
        _rows_in_lanes(sch, out, stages, rows, knob)
        return
    row = sch.get_loops(out)[0]
    if knob["row_local"]:
        for block in reversed(stages):
            sch.compute_at(block, row)
    for block in stages:
        inner = sch.get_loops(block)[-1]
        if knob["vector"] > 1 and _extent(sch, inner) % knob["vector"] == 0:
            _, vec = sch.split(inner, factors=[None, knob["vector"]])
            sch.vectorize(vec)
        if knob["parallel"] and not knob["row_local"]:
            sch.parallel(sch.get_loops(block)[0])
    if knob["parallel"] and knob["row_local"]:
        sch.parallel(row)


def _rows_in_lanes(sch, out, stages, rows: int, knob: dict) -> None:
    """Every stage of a tile of ``rows`` rows computed inside the output's row-tile loop, each
    stage's buffer laid out (block, t, row) so the row is the vector lane: a butterfly of any
    span is then a contiguous vector operation. The input stage gathers its lanes from X's
    rows, and the output stage reads along t with the ``vector`` width."""
    tile, _ = sch.split(sch.get_loops(out)[0], factors=[None, rows])
    for block in reversed(stages):
        sch.compute_at(block, tile)
    for block in stages:
        sch.transform_layout(block, ("write", 0), lambda i, k, t: (k, t, i))
        own = sch.get_loops(block)[1:]           # (i, k, t); k is gone when there is one block
        sch.reorder(*own[1:], own[0])
        sch.vectorize(own[0])
    inner = sch.get_loops(out)[-1]
    if knob["vector"] > 1 and _extent(sch, inner) % knob["vector"] == 0:
        sch.vectorize(sch.split(inner, factors=[None, knob["vector"]])[1])
    if knob["parallel"]:
        sch.parallel(tile)


def _extent(sch, loop) -> int:
    return int(sch.get(loop).extent)


def _factory(cls):
    def make(key, dims):
        from ..errors import WorkloadError

        if len(dims) != 3:
            raise WorkloadError(f"workload '{key}' needs 3 dimensions ({cls.family}:MxINxOUT)")
        return cls(key, *dims)
    return make


def hadamard_kernel(n_out: int, k: int, scale: float, first_row: int) -> Kernel:
    """Rows ``first_row ..`` of the Sylvester-Hadamard matrix times one scale."""
    return Kernel("hadamard", "Hadamard rows", n_out, k, [np.array([scale], np.float32)],
                  params={"first_row": first_row}, compact_bytes=4, reduction_first=True)


def from_compact(op: str, inputs: dict, attrs: dict) -> Kernel:
    """``ai.tvmopt`` Fastfood (the diagonals and the permutation) and HadamardGemm (a scale)."""
    out, k = attrs["out_features"], attrs["in_features"]
    if op == "HadamardGemm":
        return hadamard_kernel(out, k, float(inputs["scale"].reshape(-1)[0]), attrs["first_row"])
    arrays = [inputs[n].astype(np.float32) for n in ("diag_b", "diag_g", "diag_s")]
    arrays.append(inputs["perm"].astype(np.int32))
    return Kernel("fastfood", f"Fastfood ({arrays[0].shape[0]} x {arrays[0].shape[1]})", out, k, arrays,
                  compact_bytes=array_bytes(arrays), reduction_first=True)


def cuda_view(task: FWHTTask) -> CudaTask:
    """The transforms through their CUDA space (``schedules/fwht.py``)."""
    from tvmopt.schedules.fwht import apply_cuda_fwht, cuda_fwht_space, shuffle_below

    space = cuda_fwht_space(task.n * task.blocks, f"{task.family}-cuda")
    return CudaTask(task, space, lambda sch, c: apply_cuda_fwht(sch, space, c),
                    lambda c: task.compute(shuffle_below=shuffle_below(space, c)))


FAMILY = register_family(OpFamily(
    "fastfood", "structured transforms: Fastfood (S H G Pi H B) and fixed Hadamard heads, by fast Walsh-Hadamard",
    tasks={"fastfood": TaskKind(_factory(FWHTTask), "MxINxOUT", summary="stacked Fastfood blocks"),
           "hadamard": TaskKind(_factory(HadamardTask), "MxINxOUT", summary="rows of a Hadamard matrix times a scale")},
    schedules="tvmopt.schedules.fwht", onnx_ops=("Fastfood", "HadamardGemm"), from_compact=from_compact,
    cuda=cuda_view, layer="Fastfood, HadamardClassifier"))
