"""The TIR lowering every tvmopt kernel is compiled with: TVM's own (``s_tir``) pipeline, plus
one pass that keeps register tiles on the stack.

Every kernel accumulates its register tile in a ``cache_write`` buffer and writes it back once.
TVM's ``LowerTVMBuiltin`` turns each CPU allocation into a heap workspace
(``TVMBackendAllocWorkspace``) unless it is in ``global`` scope *and* smaller than 1024 bytes,
so a tile of 16 AVX-512 accumulators (exactly 1024 bytes) or any ``local`` one went to the heap.
LLVM then cannot promote the tile to registers: each tile began with a ``memset`` call and
ended by storing every accumulator to the workspace and loading it back for the write-back.
On ResNet-50's 1x1 convolutions, whose reduction is short (64 to 512 channels), that was 5 to
9% of the kernel (measured before/after, same run).

:func:`stack_tiles` marks every allocation of constant size up to ``STACK_MAX_BYTES`` with TVM's
``disable_lower_builtin`` annotation, so it stays an ``alloca``; once the schedule unrolls the
tile's initialization and write-back (``unroll_tile`` in ``schedules/gemm.py``), LLVM keeps it in
registers.
"""

from __future__ import annotations

import functools

#: the name the pipeline is registered under (``tvm.compile(..., tir_pipeline=PIPELINE)``)
PIPELINE = "tvmopt"
#: allocations up to this size stay on the stack (a thread's stack holds far more; register tiles
#: are at most 32 vectors of 64 bytes)
STACK_MAX_BYTES = 8192


def _constant_bytes(buffer) -> int | None:
    import tvm

    count = 1
    for extent in buffer.shape:
        if not isinstance(extent, tvm.tirx.IntImm):
            return None
        count *= int(extent)
    return count * buffer.dtype.bits * buffer.dtype.lanes // 8


def _mark(stmt):
    """``stmt`` with its small constant allocations marked to stay on the stack (containers
    rebuilt only where something below them changed)."""
    import tvm

    T = tvm.tirx
    if isinstance(stmt, T.AllocBuffer):
        size = _constant_bytes(stmt.buffer)
        if size is None or size > STACK_MAX_BYTES or "disable_lower_builtin" in stmt.annotations:
            return stmt
        return T.AllocBuffer(stmt.buffer, annotations={**stmt.annotations,
                                                       "disable_lower_builtin": T.const(True, "bool")})
    if isinstance(stmt, T.SeqStmt):
        seq = [_mark(s) for s in stmt.seq]
        return stmt if all(a.same_as(b) for a, b in zip(seq, stmt.seq)) else T.SeqStmt(seq)
    if isinstance(stmt, T.IfThenElse):
        then = _mark(stmt.then_case)
        other = None if stmt.else_case is None else _mark(stmt.else_case)
        if then.same_as(stmt.then_case) and (other is None or other.same_as(stmt.else_case)):
            return stmt
        return T.IfThenElse(stmt.condition, then, other)
    if isinstance(stmt, (T.For, T.AttrStmt, T.While)):
        body = _mark(stmt.body)
        if body.same_as(stmt.body):
            return stmt
        if isinstance(stmt, T.For):
            return T.For(stmt.loop_var, stmt.min, stmt.extent, stmt.kind, body, stmt.thread_binding,
                         stmt.annotations, stmt.step)
        if isinstance(stmt, T.AttrStmt):
            return T.AttrStmt(stmt.node, stmt.attr_key, stmt.value, body)
        return T.While(stmt.condition, body)
    return stmt


@functools.cache
def stack_tiles():
    """The pass (a PrimFunc pass, run on host code right before ``LowerTVMBuiltin``)."""
    import tvm

    @tvm.tirx.transform.prim_func_pass(opt_level=0, name="tvmopt.StackTiles")
    def _pass(func, _mod, _ctx):
        body = _mark(func.body)
        return func if body.same_as(func.body) else func.with_body(body)

    return _pass


@functools.cache
def register() -> str:
    """Register the pipeline with TVM (once); returns its name."""
    import tvm
    from tvm.tirx import compilation_pipeline

    base = compilation_pipeline.PIPELINE_MAP["s_tir"]

    def factory():
        main, finalize_host, finalize_device = base()
        return main, (lambda: tvm.ir.transform.Sequential([stack_tiles(), finalize_host()])), finalize_device

    compilation_pipeline.register_tir_pipeline(PIPELINE, factory)
    return PIPELINE


def compile(mod, target, **kwargs):  # noqa: A001  (tvm.compile's name, with tvmopt's TIR pipeline)
    """``tvm.compile`` with the tvmopt TIR pipeline (a scheduled TIR or Relax module)."""
    import tvm

    return tvm.compile(mod, target=target, tir_pipeline=register(), **kwargs)
