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
#: kernels storing fewer elements than this (:func:`work`) run their parallel loops serially: waking
#: the thread pool's workers costs more than they save. On the 2-core Zen 4 VM, the digits CNNs at
#: batch 1 (kernels of 1,000 to 300,000 elements) ran 1.11 to 1.27x faster serial, and at batch 64
#: (kernels of 0.05 to 19 million) 0.98 to 1.07x; a threshold of 200,000 or more made batch-64
#: models up to 5% slower (their 64 x 10 classifiers, 165,000 elements, lost their second core)
SERIAL_WORK = 100_000


def _constant_bytes(buffer) -> int | None:
    import tvm

    count = 1
    for extent in buffer.shape:
        if not isinstance(extent, tvm.tirx.IntImm):
            return None
        count *= int(extent)
    return count * buffer.dtype.bits * buffer.dtype.lanes // 8


def _map(stmt, leaf):
    """``stmt`` with ``leaf`` applied to every statement, innermost first (``leaf`` returns the
    statement or its replacement); containers are rebuilt only where something below changed."""
    import tvm

    T = tvm.tirx
    if isinstance(stmt, T.SeqStmt):
        seq = [_map(s, leaf) for s in stmt.seq]
        stmt = stmt if all(a.same_as(b) for a, b in zip(seq, stmt.seq)) else T.SeqStmt(seq)
    elif isinstance(stmt, T.IfThenElse):
        then = _map(stmt.then_case, leaf)
        other = None if stmt.else_case is None else _map(stmt.else_case, leaf)
        if not (then.same_as(stmt.then_case) and (other is None or other.same_as(stmt.else_case))):
            stmt = T.IfThenElse(stmt.condition, then, other)
    elif isinstance(stmt, (T.For, T.AttrStmt, T.While)):
        body = _map(stmt.body, leaf)
        if not body.same_as(stmt.body):
            if isinstance(stmt, T.For):
                stmt = T.For(stmt.loop_var, stmt.min, stmt.extent, stmt.kind, body, stmt.thread_binding,
                             stmt.annotations, stmt.step)
            elif isinstance(stmt, T.AttrStmt):
                stmt = T.AttrStmt(stmt.node, stmt.attr_key, stmt.value, body)
            else:
                stmt = T.While(stmt.condition, body)
    return leaf(stmt)


def _mark(stmt):
    """``stmt`` with its small constant allocations marked to stay on the stack."""
    import tvm

    T = tvm.tirx

    def leaf(node):
        if not isinstance(node, T.AllocBuffer):
            return node
        size = _constant_bytes(node.buffer)
        if size is None or size > STACK_MAX_BYTES or "disable_lower_builtin" in node.annotations:
            return node
        return T.AllocBuffer(node.buffer, annotations={**node.annotations,
                                                       "disable_lower_builtin": T.const(True, "bool")})

    return _map(stmt, leaf)


def work(stmt, outer: int = 1) -> float:
    """The elements ``stmt`` stores: over every store, the product of its enclosing loops'
    extents times its vector lanes (infinite where an extent is not constant). Lanes count, as
    the schedule's scalar loops are often vectorized by LLVM afterwards (a GEMM tile with
    ``vectorize`` off), so a count of store instructions would rank the same product 16 times
    apart depending on the config."""
    import tvm

    T = tvm.tirx
    if isinstance(stmt, T.For):
        extent = stmt.extent
        return work(stmt.body, outer * int(extent.value)) if isinstance(extent, T.IntImm) else float("inf")
    if isinstance(stmt, T.BufferStore):
        return outer * tvm.DataType(str(stmt.value.ty)).lanes
    if isinstance(stmt, T.SeqStmt):
        return sum(work(s, outer) for s in stmt.seq)
    if isinstance(stmt, T.IfThenElse):
        return work(stmt.then_case, outer) + (0 if stmt.else_case is None else work(stmt.else_case, outer))
    if isinstance(stmt, (T.AttrStmt, T.While)):
        return work(stmt.body, outer)
    if isinstance(stmt, T.Evaluate):
        return outer
    return 0


def serial_below(func, threshold: float):
    """``func`` with its parallel loops made serial when it does fewer than ``threshold``
    element operations (:func:`work`); as it is otherwise."""
    import tvm

    T = tvm.tirx
    if work(func.body) >= threshold:
        return func

    def leaf(node):
        if isinstance(node, T.For) and node.kind == T.ForKind.PARALLEL:
            return T.For(node.loop_var, node.min, node.extent, T.ForKind.SERIAL, node.body,
                         node.thread_binding, node.annotations, node.step)
        return node

    body = _map(func.body, leaf)
    return func if body.same_as(func.body) else func.with_body(body)


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
def serial_small():
    """The pass making small kernels serial (:func:`serial_below` at :func:`serial_work`; a
    PrimFunc pass on host code, beside :func:`stack_tiles`)."""
    import tvm

    @tvm.tirx.transform.prim_func_pass(opt_level=0, name="tvmopt.SerialSmall")
    def _pass(func, _mod, _ctx):
        return serial_below(func, serial_work())

    return _pass


def serial_work() -> float:
    """Kernels doing fewer element operations than this run on one thread (``TVMOPT_SERIAL_WORK``
    overrides it; 0 keeps every parallel loop)."""
    import os

    return float(os.environ.get("TVMOPT_SERIAL_WORK", SERIAL_WORK))


@functools.cache
def register() -> str:
    """Register the pipeline with TVM (once); returns its name."""
    import tvm
    from tvm.tirx import compilation_pipeline

    base = compilation_pipeline.PIPELINE_MAP["s_tir"]

    def factory():
        main, finalize_host, finalize_device = base()
        return main, (lambda: tvm.ir.transform.Sequential([stack_tiles(), serial_small(), finalize_host()])), finalize_device

    compilation_pipeline.register_tir_pipeline(PIPELINE, factory)
    return PIPELINE


def compile(mod, target, **kwargs):  # noqa: A001  (tvm.compile's name, with tvmopt's TIR pipeline)
    """``tvm.compile`` with the tvmopt TIR pipeline (a scheduled TIR or Relax module)."""
    import tvm

    return tvm.compile(mod, target=target, tir_pipeline=register(), **kwargs)
