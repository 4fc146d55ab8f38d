"""A MetaSchedule reference run (TVM's own evolutionary search with an XGBoost model).

Used by ``tvmopt compare --metaschedule`` and the tuner benchmark to put TVM's tuner on the
same workload and trial budget. MetaSchedule's default builder imports
``tvm.s_tir.tensor_intrin`` in every worker (about 90 s here, longer than its build timeout),
so the builder gets a build function that skips that import: plain CPU GEMM schedules never
tensorize.
"""

from __future__ import annotations

import statistics
import tempfile
import time

import numpy as np

from tvmopt.ops.task import Task
from tvmopt.target import TargetSpec


def build_without_intrinsics(mod, target, _params):
    """MetaSchedule's default build, minus the tensor-intrinsic registration import."""
    from tvm.driver import build as tvm_build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    return tvm_build(RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod), target=target)


def run_metaschedule(task: Task, target: TargetSpec, trials: int, work_dir: str | None = None,
                     seed: int = 0) -> dict:
    """Tune ``task`` with MetaSchedule for ``trials`` trials; time its best like our runner does."""
    import tvm
    from tvm import te
    from tvm.s_tir import meta_schedule as ms

    tvm_target = target.tvm_target()
    func = te.create_prim_func(list(task.compute())).with_attr("global_symbol", "main")
    mod = tvm.IRModule({"main": func})
    work_dir = work_dir or tempfile.mkdtemp(prefix="tvmopt-ms-")
    cores = int(target.config.get("num-cores", 1))
    start = time.perf_counter()
    database = ms.tune_tir(
        mod, tvm_target, work_dir, max_trials_global=trials, num_trials_per_iter=min(64, trials),
        builder=ms.builder.LocalBuilder(f_build=build_without_intrinsics, max_workers=cores, timeout_sec=60),
        runner=ms.runner.LocalRunner(timeout_sec=30), num_tuning_cores=cores, seed=seed)
    wall_s = time.perf_counter() - start
    sch = ms.tir_integration.compile_tir(database, mod, tvm_target)
    if sch is None:
        return {"trials": trials, "wall_s": wall_s, "seconds": float("inf"), "gflops": 0.0}
    exe = tvm.compile(sch.mod, target=tvm_target)
    inputs = task.make_inputs(np.random.default_rng(0))
    expected = task.reference(inputs)
    args = [tvm.runtime.tensor(x) for x in inputs]
    out = tvm.runtime.tensor(np.zeros(expected.shape, expected.dtype))
    exe.mod["main"](*args, out)
    correct = task.mismatch(out.numpy(), expected) is None
    timer = exe.mod.time_evaluator("main", tvm.cpu(), number=1, repeat=3, min_repeat_ms=40)
    seconds = statistics.median(timer(*args, out).results)
    return {"trials": trials, "wall_s": wall_s, "seconds": seconds, "gflops": task.flops / seconds / 1e9,
            "correct": correct}
