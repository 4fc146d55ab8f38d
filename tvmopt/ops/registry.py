"""The op registry: every op family is registered once, in its own module of ``tvmopt.ops``.

An :class:`OpFamily` names everything the rest of tvmopt needs to know about one kind of
kernel, so the frontend's pass, task lookup, the CUDA code, ``inspect`` and the CLI iterate over
the registry instead of chains of ``if kind == ...``:

- ``tasks``: its workload key prefixes (``binary_dense``, ``xnor_dense``...), each with the
  factory that rebuilds the Task (compute, numpy reference, LLVM space) from a key;
- ``cuda``: the task's CUDA view (``task -> CudaTask``: the same task through its CUDA space),
  or None where the family has no CUDA space;
- ``schedules``: the ``tvmopt.schedules`` module holding its LLVM and CUDA spaces;
- ``onnx_ops`` and ``from_compact``: the ``ai.tvmopt`` ops (docs/onnx-ops.md) it lowers, and the
  function that turns such a node's compact form into a kernel recipe (:class:`~.kernel.Kernel`);
- ``layer``: its PyTorch layer in ``tvmopt.nn``.

Families are found by importing every module of this package that defines one, plus the
modules named in ``$TVMOPT_PLUGINS`` (comma-separated), which is how test workloads such as
``fault:N`` reach measuring workers without being part of the product. A new family is a module
here (tasks + ``FAMILY = register_family(OpFamily(...))``), its spaces in ``schedules/``, and
its layer in ``tvmopt/nn``.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from dataclasses import dataclass
from typing import Callable

from tvmopt.errors import WorkloadError

PLUGINS_ENV = "TVMOPT_PLUGINS"


@dataclass(frozen=True)
class TaskKind:
    """One workload key prefix: ``factory(key, dims) -> Task``, the key's form for messages
    (``MxNxK``) and the positions of dimensions that may be 0 (a padding, say)."""

    factory: Callable
    form: str
    zero_ok: tuple[int, ...] = ()
    summary: str = ""


@dataclass
class OpFamily:
    name: str
    summary: str
    tasks: dict[str, TaskKind]
    schedules: str = ""
    onnx_ops: tuple[str, ...] = ()
    from_compact: Callable | None = None      # (op, inputs, attrs) -> Kernel, for onnx_ops
    cuda: Callable | None = None              # task -> CudaTask
    layer: str | None = None
    internal: bool = False                    # test workloads: never listed to users


_FAMILIES: dict[str, OpFamily] = {}
_PREFIXES: dict[str, OpFamily] = {}
_LOADED: set[str] = set()


def register_family(family: OpFamily) -> OpFamily:
    """Register ``family``; a second family claiming a key prefix or ONNX op is an error."""
    for prefix in family.tasks:
        other = _PREFIXES.get(prefix)
        if other is not None and other.name != family.name:
            raise ValueError(f"workload prefix '{prefix}' is claimed by families {other.name} and {family.name}")
    for op in family.onnx_ops:
        other = next((f for f in _FAMILIES.values() if op in f.onnx_ops and f.name != family.name), None)
        if other is not None:
            raise ValueError(f"ai.tvmopt op {op} is claimed by families {other.name} and {family.name}")
    _FAMILIES[family.name] = family
    for prefix in family.tasks:
        _PREFIXES[prefix] = family
    return family


def _load_all() -> None:
    """Import every family module of tvmopt.ops, then the plugins (once each)."""
    import tvmopt.ops as package

    names = [f"tvmopt.ops.{m.name}" for m in pkgutil.iter_modules(package.__path__)]
    names += [n.strip() for n in os.environ.get(PLUGINS_ENV, "").split(",") if n.strip()]
    for name in names:
        if name in _LOADED or name in ("tvmopt.ops.registry", "tvmopt.ops.task", "tvmopt.ops.kernel"):
            continue
        _LOADED.add(name)
        try:
            importlib.import_module(name)
        except ImportError as e:
            if name.startswith("tvmopt.ops."):
                raise
            raise WorkloadError(f"{PLUGINS_ENV} names '{name}', which cannot be imported ({e})") from None


def families(internal: bool = False) -> list[OpFamily]:
    """Every registered family (test workloads only with ``internal``), by name."""
    _load_all()
    return [f for _, f in sorted(_FAMILIES.items()) if internal or not f.internal]


def family_of_prefix(prefix: str) -> OpFamily | None:
    """The family of a workload key prefix (``binary_dense`` -> binary), or None."""
    if prefix not in _PREFIXES:
        _load_all()
    return _PREFIXES.get(prefix)


def family_of_onnx_op(op: str) -> OpFamily | None:
    """The family that lowers the ``ai.tvmopt`` op ``op`` (``BinaryGemm`` -> binary), or None."""
    _load_all()
    return next((f for f in _FAMILIES.values() if op in f.onnx_ops), None)


def workload_prefixes(internal: bool = False) -> list[str]:
    """Every workload key prefix users may tune (``conv2d``, ``dense``, ``gemm``...)."""
    return sorted(p for f in families(internal) for p in f.tasks)


def describe_workloads() -> list[tuple[str, str]]:
    """(``prefix:FORM``, summary) for each user-visible workload prefix, for ``--help``."""
    rows = []
    for f in families():
        for prefix, kind in sorted(f.tasks.items()):
            rows.append((f"{prefix}:{kind.form}", kind.summary or f.summary))
    return rows
