"""Tunable tasks: a workload key, its schedule space, a numpy reference and its FLOPs.

A task is rebuilt from its key alone, so worker processes receive plain strings and configs,
never pickled IR. Each op family (:mod:`tvmopt.ops.registry`) registers the factories of its
key prefixes (``gemm:``, ``dense:``, ``binary_dense:``...); :func:`task_for` gives the task
with the space of a target kind (its CUDA view for ``cuda``).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod

import numpy as np

from tvmopt.errors import CudaError, WorkloadError
from tvmopt.schedules.space import Config, Space

class Task(ABC):
    """One tunable workload. Subclasses know their compute, space and reference.

    Everything the pass, the measurer and the CUDA code call on a task is declared here; the
    defaults fit a task whose kernel takes its constants as given and has no parameters.
    """

    key: str
    space: Space
    flops: float
    #: values that do not change the loop nest (``shift_min``, hash seeds): data, not key
    params: dict = {}
    #: an optional second reference (``torch``) timed beside numpy by ``tvmopt tune``
    torch_reference = None

    @property
    def family(self) -> str:
        """The workload key's prefix (``gemm``, ``binary_dense``...)."""
        return self.key.split(":", 1)[0]

    @abstractmethod
    def make_inputs(self, rng: np.random.Generator) -> list[np.ndarray]:
        """Random inputs for checking and timing."""

    @abstractmethod
    def reference(self, inputs: list[np.ndarray]) -> np.ndarray:
        """The expected output, computed with numpy."""

    @abstractmethod
    def schedule(self, config: Config, target):
        """An IRModule holding the scheduled PrimFunc for ``config`` (imports TVM)."""

    def compute(self):
        """The TE tensors of the kernel (inputs first, output last)."""
        raise NotImplementedError(f"{type(self).__name__} has no TE compute")

    def primfunc(self, config: Config | None = None):
        """The scheduled PrimFunc for ``config`` (None: the space's start)."""
        return self.schedule(self.space.initial() if config is None else config, None)["main"]

    def to_kernel(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Constant arrays in the logical layout -> the layout the kernel reads (default: as is)."""
        return arrays

    def with_params(self, params: dict) -> "Task":
        """The same task with other parameters (a layer's ``shift_min``, hash seeds...)."""
        return self

    #: the pass emits this task unscheduled so that Relax fuses its elementwise epilogue (scale,
    #: bias, ReLU, residual add) into it; :meth:`apply` then schedules the fused function
    fuses_epilogue: bool = False
    #: :meth:`apply` tensorizes with an intrinsic written for int32 indices: the pass narrows the
    #: fused function's int64 indices before scheduling it
    tensorized: bool = False

    def apply(self, sch, block, config: Config | None, epilogue=()) -> list:
        """Schedule this task's ``block`` inside ``sch`` (possibly a fused function) with
        ``config`` (None: the space's start), inlining what it can of the ``epilogue`` blocks
        into the write-back; returns the epilogue blocks left for the default schedule."""
        raise NotImplementedError(f"{type(self).__name__} is scheduled whole (see schedule)")

    def tolerance(self) -> tuple[float, float]:
        """(rtol, atol) for comparing against the reference."""
        return 1e-4, 1e-4

    def numpy_product(self, inputs: list[np.ndarray]):
        """What numpy runs for the same result, timed beside the kernel by ``tvmopt tune`` (a
        callable): the reference by default; compressed ops give their dense fp32 product with the
        weight decoded beforehand, so the figure compares with what a user would run, not with
        the reference's decode."""
        return lambda: self.reference(inputs)

    def mismatch(self, got: np.ndarray, expected: np.ndarray) -> str | None:
        """Why ``got`` is not the reference output, or None when it matches within tolerance.

        atol is scaled by the largest reference magnitude, so sums of many terms are judged
        relative to their size.
        """
        rtol, atol = self.tolerance()
        if np.allclose(got, expected, rtol=rtol, atol=atol * max(1.0, float(np.abs(expected).max()))):
            return None
        return f"max abs error {float(np.nanmax(np.abs(got - expected))):.3g} against the numpy reference"


#: block annotation naming the task whose loop nest a block is: the pass emits such kernels
#: unscheduled, Relax fuses their elementwise epilogue into them, and the scheduler finds the
#: block by it inside the fused function (passes/fuse_schedule.py)
TASK_ANNOTATION = "tvmopt_task"

_KEY = re.compile(r"^([a-z][a-z0-9_]*):(\d+(?:x\d+)*)$")


def get_task(key: str) -> Task:
    """Parse a workload key such as ``gemm:1024x1024x1024`` into its Task (LLVM space)."""
    from tvmopt.ops.registry import family_of_prefix, workload_prefixes

    m = _KEY.match(key.strip()) if isinstance(key, str) else None
    if not m:
        raise WorkloadError(
            f"cannot read workload '{key}'; expected FAMILY:DIMS, e.g. gemm:1024x1024x1024 "
            f"(M x N x K), dense:64x1024x1024 or bgemm:8x64x64x64; families: {workload_prefixes()}"
        )
    prefix, dims = m.group(1), tuple(int(d) for d in m.group(2).split("x"))
    family = family_of_prefix(prefix)
    if family is None:
        raise WorkloadError(f"unknown workload family '{prefix}' in '{key}'; known: {workload_prefixes()}")
    kind = family.tasks[prefix]
    if any(d < 1 for i, d in enumerate(dims) if i not in kind.zero_ok or d < 0):
        raise WorkloadError(f"workload '{key}' has a zero extent; every dimension must be >= 1")
    return kind.factory(key.strip(), dims)


def check_sizes(key: str, buffers: dict[str, int]) -> None:
    """Refuse, before anything is built, a workload whose buffers (name -> elements, float32)
    TVM's int32 indexing or this machine's memory cannot hold (inputs, output and the numpy
    reference must all fit in a quarter of it)."""
    import os

    from tvmopt.model.frontend import MAX_ELEMENTS

    name, largest = max(buffers.items(), key=lambda kv: kv[1])
    if largest > MAX_ELEMENTS:
        raise WorkloadError(f"workload '{key}': {name} would hold {largest:,} elements, more than TVM's int32 "
                            f"indexing allows ({MAX_ELEMENTS:,})")
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return
    need = 4 * 2 * sum(buffers.values())
    if need > memory // 4:
        raise WorkloadError(f"workload '{key}' needs about {need / 2**30:.1f} GiB for its buffers and reference, "
                            f"more than a quarter of this machine's {memory / 2**30:.0f} GiB")


#: CPU-only kernels of a family and the kernel the same layer runs on a GPU (same compact weights)
CUDA_FAMILY_OF = {"binary_lut_dense": "binary_dense", "binary_rowlut_dense": "binary_dense",
                  "binary_perm_dense": "binary_dense", "ternary_lut_dense": "ternary_dense",
                  "ternary_rowlut_dense": "ternary_dense", "ternary_perm_dense": "ternary_dense",
                  "nm_perm_dense": "nm_decode_dense", "nm_token_dense": "nm_decode_dense"}


def cuda_family(family: str) -> str | None:
    """The task family a layer of ``family`` runs on a GPU: itself where its family registers a
    CUDA view, the GPU kernel of the same weights for CPU-only variants (byte tables, row
    tables, register tables), None where there is none (the layer then runs dense)."""
    from tvmopt.ops.registry import family_of_prefix

    family = CUDA_FAMILY_OF.get(family, family)
    registered = family_of_prefix(family)
    return family if registered is not None and registered.cuda is not None else None


def task_for(key: str, target_kind: str = "llvm") -> Task:
    """The task with the schedule space of a target kind (``cuda``: its CUDA view)."""
    if target_kind == "cuda":
        return cuda_task(key)
    return get_task(key)


class CudaTask(Task):
    """A task seen through its CUDA schedule space (same key, inputs, reference and FLOPs)."""

    def __init__(self, base: Task, space: Space, apply, compute=None, fuses_epilogue: bool = False):
        """``apply(sch, config)`` schedules the task's function; with ``fuses_epilogue`` it also
        takes ``epilogue`` (names of the elementwise blocks Relax fused after the product) and
        returns the names of those it could not fold into the product's write-back."""
        self.base, self.space, self._apply = base, space, apply
        self._compute = compute or (lambda config: base.compute())     # config -> TE tensors
        self.key, self.flops = base.key, base.flops
        self.fuses_epilogue = fuses_epilogue

    def compute(self, config: Config | None = None):
        """The TE tensors of ``config`` (some CUDA computes depend on it: warp shuffles)."""
        return self._compute(self.space.initial() if config is None else config)

    def apply_fused(self, sch, config: Config, epilogue: list[str]) -> list[str]:
        """Schedule the task's blocks in a function Relax fused them into, folding the
        ``epilogue`` blocks into the product's write-back; returns those left over."""
        return list(self._apply(sch, config, epilogue) or ())

    def make_inputs(self, rng):
        return self.base.make_inputs(rng)

    def reference(self, inputs):
        return self.base.reference(inputs)

    def tolerance(self):
        return self.base.tolerance()

    def schedule(self, config: Config, target=None):
        import tvm
        from tvm import te

        func = te.create_prim_func(list(self._compute(config))).with_attr("global_symbol", "main")
        sch = tvm.s_tir.Schedule(tvm.IRModule({"main": func}))
        self._apply(sch, config)
        return sch.mod


def cuda_task(task: Task | str) -> CudaTask:
    """The CUDA view of a task (or workload key), from its family's registration; a family
    without a CUDA space is a CudaError."""
    from tvmopt.ops.registry import family_of_prefix

    task = get_task(task) if isinstance(task, str) else task
    if isinstance(task, CudaTask):
        return task
    family = family_of_prefix(task.family)
    if family is None or family.cuda is None:
        raise CudaError(f"workload '{task.key}': the {task.family} family has no CUDA schedule space")
    return family.cuda(task)
