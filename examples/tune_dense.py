"""Tune a linear layer's GEMM (batch 64, 1024 -> 1024) from Python and inspect the records.

    .venv/bin/python examples/tune_dense.py [--trials 32] [--records records]
"""

import argparse

from tvmopt.records.store import RecordCache
from tvmopt.target import parse_target
from tvmopt.tune.loop import tune_task

parser = argparse.ArgumentParser()
parser.add_argument("--trials", type=int, default=32)
parser.add_argument("--records", default="records")
args = parser.parse_args()

target = parse_target("llvm")  # this CPU: model and core count detected
result = tune_task("dense:64x1024x1024", target, tuner="random", trials=args.trials, records=args.records)
print(f"best of {result.measured} new trials: {result.best_gflops:.1f} GFLOPS")
print(result.task.space.as_dict(result.best_config))

best = RecordCache(args.records).best("dense:64x1024x1024", target.key, result.task.space.fingerprint())
print(f"best record: {best.cost * 1e3:.3f} ms, measured with TVM {best.tvm} at {best.timestamp:.0f}")
