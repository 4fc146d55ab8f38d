"""Run a CUDA build's schedules on the CPU, to check them where no GPU is.

A scheduled TIR function means the same thing with its thread-bound loops run one after another
(that is TIR's semantics: a binding says which thread runs an iteration, not what it computes),
and with its shared and local buffers in ordinary memory. :func:`serialize` rewrites a CUDA
build's scheduled functions that way and :func:`emulate` compiles the whole Relax module for
the CPU, so a test can run the very index arithmetic, weight layouts, staging and epilogues of
the CUDA kernels against onnxruntime. What it cannot check: races between threads, launch limits,
the speed, and warp shuffles (``tvm_warp_shuffle`` reads another lane's register; the Fastfood
configs with ``shuffle`` have no serial meaning and are refused by LLVM).
"""

from __future__ import annotations

import re

_THREAD = re.compile(r'T\.thread_binding\(((?:[^(),]|\([^()]*\))+(?:, (?:[^(),]|\([^()]*\))+)?), thread="[^"]+"')
_GPU_SCOPE = re.compile(r',\s*scope="(?:shared|shared\.dyn|local|warp)"')


def serialize(func):
    """``func`` (a scheduled PrimFunc) with serial loops for thread-bound ones and global
    buffers for shared and local ones."""
    import tvm

    text = _GPU_SCOPE.sub("", _THREAD.sub(r"T.serial(\1", tvm.IRModule({"main": func}).script()))
    return tvm.script.from_source(text)["main"]


def emulate(mod, target: str = "llvm"):
    """The CUDA-scheduled Relax module ``mod`` (:func:`tvmopt.build.compile.schedule_for_gpu`'s)
    compiled for the CPU with every function serialized: a ``tvm.relax.VirtualMachine``
    executable."""
    import tvm

    from tvmopt.build.compile import _after_scheduling
    from tvmopt.target import parse_target

    mod = tvm.IRModule(dict(mod.functions_items()))
    for gv, func in list(mod.functions_items()):
        if isinstance(func, tvm.tirx.PrimFunc):
            mod[gv] = serialize(func)
    spec = parse_target(target)
    with tvm.transform.PassContext(opt_level=3):
        return tvm.compile(mod, spec.tvm_target(), relax_pipeline=_after_scheduling(spec))
