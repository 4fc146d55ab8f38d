"""A workload whose candidates misbehave on purpose, to test that tuning survives them.

``fault:N`` is an N x N x N GEMM whose space has one knob, ``behaviour``: ``ok`` computes
the right answer; the others build a kernel that computes a wrong answer, fails to build,
raises SIGSEGV or SIGABRT, or sleeps far past any build or run timeout. Tests and the reliability benchmark use
it through the ordinary workload registry, exactly as a real task: an internal op family that a process
loads once ``$TVMOPT_PLUGINS`` names this module (so measuring workers, which inherit the environment,
find it too). Production code never imports it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from tvmopt.errors import WorkloadError
from tvmopt.ops.gemm import GemmTask
from tvmopt.schedules.gemm import GemmShape
from tvmopt.schedules.space import Choice, Config, Space
from tvmopt.ops.registry import OpFamily, TaskKind, register_family

BEHAVIOURS = ("ok", "wrong", "build_error", "build_hang", "segfault", "hang", "abort")


@dataclass
class FaultTask(GemmTask):
    def __post_init__(self):
        super().__post_init__()
        self.space = Space("fault", (Choice("behaviour", BEHAVIOURS),))

    def schedule(self, config: Config, target):
        import tvm

        behaviour = config[0]
        if behaviour == "build_hang":
            time.sleep(3600)
        if behaviour in ("ok", "build_error"):
            plain = GemmTask(self.key, self.shape)
            mod = plain.schedule(plain.space.initial(), target)
            if behaviour == "ok":
                return mod
            sch = tvm.s_tir.Schedule(mod)
            sch.vectorize(sch.get_loops(sch.get_sblock("C_update"))[-1])  # a reduction loop: illegal
            return sch.mod
        return tvm.IRModule({"main": _faulty_funcs(self.shape.m)[behaviour]})


def _faulty_funcs(n: int):
    from tvm.script import tirx as T

    @T.prim_func
    def wrong(A: T.Buffer((n, n), "float32"), B: T.Buffer((n, n), "float32"), C: T.Buffer((n, n), "float32")):
        T.func_attr({"global_symbol": "main", "tir.noalias": True})
        for i, j in T.grid(n, n):
            C[i, j] = A[i, j] + B[i, j]

    @T.prim_func
    def segfault(A: T.Buffer((n, n), "float32"), B: T.Buffer((n, n), "float32"), C: T.Buffer((n, n), "float32")):
        T.func_attr({"global_symbol": "main"})
        T.evaluate(T.call_extern("int32", "raise", 11))

    @T.prim_func
    def abort(A: T.Buffer((n, n), "float32"), B: T.Buffer((n, n), "float32"), C: T.Buffer((n, n), "float32")):
        T.func_attr({"global_symbol": "main"})
        T.evaluate(T.call_extern("int32", "abort"))

    @T.prim_func
    def hang(A: T.Buffer((n, n), "float32"), B: T.Buffer((n, n), "float32"), C: T.Buffer((n, n), "float32")):
        T.func_attr({"global_symbol": "main"})
        T.evaluate(T.call_extern("int32", "sleep", 3600))

    return {"wrong": wrong, "segfault": segfault, "abort": abort, "hang": hang}


def _make(key: str, dims: tuple[int, ...]) -> FaultTask:
    if len(dims) != 1:
        raise WorkloadError(f"workload '{key}' needs one dimension (fault:N)")
    return FaultTask(key, GemmShape(dims[0], dims[0], dims[0]))


FAMILY = register_family(OpFamily(
    "fault", "test workload: candidates that crash, hang or compute garbage on purpose",
    tasks={"fault": TaskKind(_make, "N")}, internal=True))
