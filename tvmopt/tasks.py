"""Tunable tasks: a workload key, its schedule space, a numpy reference and its FLOPs.

A task is rebuilt from its key alone, so worker processes receive plain strings and configs,
never pickled IR. Families register a parser for their key prefix (``gemm:``, ``dense:``...).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from typing import Callable

import numpy as np

from .errors import WorkloadError
from .schedules.space import Config, Space

_FAMILIES: dict[str, Callable[[str, tuple[int, ...]], "Task"]] = {}
_LAZY_FAMILIES = {"gemm": "tvmopt.ops.gemm", "dense": "tvmopt.ops.gemm", "bgemm": "tvmopt.ops.gemm",
                  "fault": "tvmopt.testing",
                  "binary_dense": "tvmopt.ops.binary_dense", "xnor_dense": "tvmopt.ops.binary_dense",
                  "binary_lut_dense": "tvmopt.ops.binary_dense",
                  "shift_dense": "tvmopt.ops.shift_dense", "ternary_dense": "tvmopt.ops.ternary_dense",
                  "ternary_lut_dense": "tvmopt.ops.ternary_dense",
                  "nm_dense": "tvmopt.ops.nm_dense", "hashed_dense": "tvmopt.ops.hashed_dense",
                  "codebook_dense": "tvmopt.ops.codebook_dense", "fastfood": "tvmopt.ops.fastfood",
                  "hadamard": "tvmopt.ops.fastfood", "conv2d": "tvmopt.ops.conv2d"}


class Task(ABC):
    """One tunable workload. Subclasses know their compute, space and reference."""

    key: str
    space: Space
    flops: float

    @abstractmethod
    def make_inputs(self, rng: np.random.Generator) -> list[np.ndarray]:
        """Random inputs for checking and timing."""

    @abstractmethod
    def reference(self, inputs: list[np.ndarray]) -> np.ndarray:
        """The expected output, computed with numpy."""

    @abstractmethod
    def schedule(self, config: Config, target):
        """An IRModule holding the scheduled PrimFunc for ``config`` (imports TVM)."""

    def tolerance(self) -> tuple[float, float]:
        """(rtol, atol) for comparing against the reference."""
        return 1e-4, 1e-4

    def mismatch(self, got: np.ndarray, expected: np.ndarray) -> str | None:
        """Why ``got`` is not the reference output, or None when it matches within tolerance.

        atol is scaled by the largest reference magnitude, so sums of many terms are judged
        relative to their size.
        """
        rtol, atol = self.tolerance()
        if np.allclose(got, expected, rtol=rtol, atol=atol * max(1.0, float(np.abs(expected).max()))):
            return None
        return f"max abs error {float(np.nanmax(np.abs(got - expected))):.3g} against the numpy reference"


_ZERO_OK: dict[str, set[int]] = {}


def register(prefix: str, zero_ok: tuple[int, ...] = ()):
    """Decorator: ``factory(key, dims) -> Task`` handles keys ``prefix:AxBx...``; ``zero_ok``:
    positions of dimensions that may be 0 (a padding, say)."""

    def wrap(factory):
        _FAMILIES[prefix] = factory
        _ZERO_OK[prefix] = set(zero_ok)
        return factory

    return wrap


_KEY = re.compile(r"^([a-z][a-z0-9_]*):(\d+(?:x\d+)*)$")


def get_task(key: str) -> Task:
    """Parse a workload key such as ``gemm:1024x1024x1024`` into its Task."""
    m = _KEY.match(key.strip()) if isinstance(key, str) else None
    if not m:
        raise WorkloadError(
            f"cannot read workload '{key}'; expected FAMILY:DIMS, e.g. gemm:1024x1024x1024 "
            f"(M x N x K), dense:64x1024x1024 or bgemm:8x64x64x64; families: {sorted(_LAZY_FAMILIES)}"
        )
    family, dims = m.group(1), tuple(int(d) for d in m.group(2).split("x"))
    if family not in _FAMILIES and family in _LAZY_FAMILIES:
        __import__(_LAZY_FAMILIES[family])
    if family not in _FAMILIES:
        raise WorkloadError(f"unknown workload family '{family}' in '{key}'; known: {sorted(_LAZY_FAMILIES)}")
    if any(d < 1 for i, d in enumerate(dims) if i not in _ZERO_OK[family] or d < 0):
        raise WorkloadError(f"workload '{key}' has a zero extent; every dimension must be >= 1")
    return _FAMILIES[family](key.strip(), dims)


def task_for(key: str, target_kind: str = "llvm") -> Task:
    """The task with the schedule space of a target kind (``cuda``: its CUDA view)."""
    if target_kind == "cuda":
        from .cuda import cuda_task

        return cuda_task(key)
    return get_task(key)
