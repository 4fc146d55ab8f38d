"""What every measurer shares: the ``Measurer`` interface, ``MeasureResult`` and ``ErrorKind``.

Tuners never see a measurer; the tuning loop (``tvmopt.tune.loop``) hands configs to one and
records what comes back. Implementations: ``local`` (worker processes on this machine),
``replay`` (lookup in a pre-measured table), ``rpc`` (TVM RPC servers), and the CUDA batch
round trip (``cuda_batch`` + ``remote_cuda``).
"""

from __future__ import annotations

import enum
import math
import statistics
from dataclasses import dataclass
from typing import Sequence

from tvmopt.schedules.space import Config


class ErrorKind(str, enum.Enum):
    OK = "ok"
    BUILD_ERROR = "build_error"
    BUILD_TIMEOUT = "build_timeout"
    RUNTIME_ERROR = "runtime_error"
    RUN_TIMEOUT = "run_timeout"
    WRONG_RESULT = "wrong_result"
    WORKER_CRASHED = "worker_crashed"
    DEVICE_ERROR = "device_error"       # an RPC session broke on every try (server gone or unusable)


@dataclass(frozen=True)
class MeasureResult:
    """Costs in seconds (one per repeat) or an error kind with a short message."""

    costs: tuple[float, ...]
    error: ErrorKind = ErrorKind.OK
    build_s: float = 0.0
    run_s: float = 0.0
    message: str = ""

    @property
    def cost(self) -> float:
        """Median cost in seconds; infinite for a failed candidate."""
        if self.error != ErrorKind.OK or not self.costs:
            return math.inf
        return statistics.median(self.costs)


class Measurer:
    """Interface shared by every way of measuring (local pool, replay table, RPC)."""

    #: candidates run on other machines (RPC servers): the target need not match this one
    remote: bool = False

    def measure(self, task_key: str, configs: Sequence[Config]) -> list[MeasureResult]:
        raise NotImplementedError

    def remeasure(self, task_key: str, configs: Sequence[Config], rounds: int = 5) -> list[tuple[float, ...]]:
        """Time ``configs`` again in ``rounds`` interleaved rounds: one sample (seconds) per round
        and config, () for a config that failed. Measurers that can keep builds between rounds
        (the local one) override this."""
        samples: list[list[float]] = [[] for _ in configs]
        for _ in range(rounds):
            for i, result in enumerate(self.measure(task_key, configs)):
                samples[i].append(result.cost)
        return [tuple(s) if all(math.isfinite(x) for x in s) else () for s in samples]

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
