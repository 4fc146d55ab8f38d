"""Per-kernel times of a compiled model (``tvmopt run --profile``, as tvmc's ``run --profile``).

TVM 0.27's Relax VM has no profiler; it calls an *instrument* before and after each call
instruction, so each kernel's wall time is taken around its call, on a VM of its own (the
module's own VM stays uninstrumented). Each call also pays the Python instrument (a few
microseconds), so the sum of the rows exceeds the plain latency a little on models of many small
kernels; the ``instrumented run`` line says by how much. Rows: one per function symbol
(a fused kernel such as ``fused_conv2d_1_64_56_56_64_3_3_1_1_add1_relu1``, named after the
layers fused into it), the VM's builtins (allocation, shape checks) together in one row. A kernel
whose task has a record on this target shows it beside (``record ms``, measured alone, data in
cache), and one running 1.5x or more slower in the model is flagged: that is how a write-back
that LLVM left in memory was found (the digits MLP's tuned 64x256x256 layer, 72 us in the model
against its record's 40).
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from dataclasses import dataclass

BUILTINS = "vm builtins (allocation, shape checks)"


@dataclass
class KernelTime:
    name: str
    calls: int                  # calls per run
    seconds: float              # per run: the median over runs of this kernel's summed calls


#: a kernel running this many times slower in the model than its record is flagged in the table...
SLOWER_IN_MODEL = 1.5
#: ...if it takes this long per call (below, the instrument's own microseconds decide)
FLAG_MIN_SECONDS = 20e-6


@dataclass
class Profile:
    kernels: list[KernelTime]   # slowest first
    run_seconds: float          # median instrumented run, end to end
    runs: int
    alone: dict = None          # kernel -> its task's record on this target (seconds, measured alone)

    @property
    def kernel_seconds(self) -> float:
        return sum(k.seconds for k in self.kernels)

    def table(self, top: int | None = None) -> str:
        rows = self.kernels if top is None else self.kernels[:top]
        width = max([len("kernel")] + [len(k.name) for k in rows])
        total = self.kernel_seconds or 1.0
        alone = self.alone or {}
        lines = [f"{'kernel':<{width}}  calls  ms per run      %" + ("  record ms" if alone else ""),
                 f"{'-' * width}  -----  ----------  -----" + ("  ---------" if alone else "")]
        flagged = 0
        for k in rows:
            line = f"{k.name:<{width}}  {k.calls:>5}  {k.seconds * 1e3:>10.3f}  {100 * k.seconds / total:>5.1f}"
            if k.name in alone and k.calls:
                slower = k.seconds / k.calls / alone[k.name]
                line += f"  {alone[k.name] * 1e3:>9.3f}"
                if slower >= SLOWER_IN_MODEL and k.seconds / k.calls >= FLAG_MIN_SECONDS:
                    line += f"  {slower:.1f}x slower in the model"
                    flagged += 1
            lines.append(line)
        if top is not None and len(self.kernels) > top:
            rest = self.kernels[top:]
            seconds = sum(k.seconds for k in rest)
            lines.append(f"{f'({len(rest)} more)':<{width}}  {sum(k.calls for k in rest):>5}  "
                         f"{seconds * 1e3:>10.3f}  {100 * seconds / total:>5.1f}")
        lines.append(f"kernels: {self.kernel_seconds * 1e3:.3f} ms; instrumented run: {self.run_seconds * 1e3:.3f} ms "
                     f"(median of {self.runs})")
        if alone:
            lines.append("record ms: the kernel's tuning record on this target, measured alone (per call, its data "
                         "in cache)" + (f"; {flagged} kernel(s) ran {SLOWER_IN_MODEL:g}x or more slower in the model: "
                                        f"data read cold from memory, a schedule that the fused epilogue slows, or "
                                        f"cores busy with other work (if every kernel is flagged, run again)"
                                        if flagged else ""))
        return "\n".join(lines)


def profiler(executable, device):
    """``profile(arrays, runs, alone=None) -> Profile`` on a VM of its own for ``executable`` (a
    loaded module or a Relax executable), its inputs staged as a model call stages them; the VM
    is kept between profiles."""
    from tvm import relax

    from tvmopt.build.compile import StagedCall

    vm = relax.VirtualMachine(executable, device)
    call = StagedCall(vm["main"], device)

    def profile(arrays, runs: int = 10, alone: dict | None = None) -> Profile:
        return profile_vm(vm, lambda: call(arrays), runs=runs, alone=alone)

    return profile


def profile_vm(vm, call, runs: int = 10, warm: int = 2, alone: dict | None = None) -> Profile:
    """Time each call instruction of ``vm``'s main function over ``runs`` runs of ``call()``
    (after ``warm`` untimed ones); ``vm`` is instrumented for good, so pass one of its own."""
    per_run: list[dict[str, float]] = []
    counts: dict[str, int] = defaultdict(int)
    started: dict[str, list[float]] = defaultdict(list)
    current: dict[str, float] = defaultdict(float)

    def instrument(_func, symbol, before, _ret, *_args):
        name = BUILTINS if symbol.startswith("vm.builtin.") else symbol
        if before:
            started[name].append(time.perf_counter())
        else:
            current[name] += time.perf_counter() - started[name].pop()
            counts[name] += 1
        return 0                    # VMInstrumentReturnKind.NO_OP: run the call as usual

    vm.set_instrument(instrument)
    for _ in range(warm):
        call()
    current.clear()
    counts.clear()
    totals = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        totals.append(time.perf_counter() - start)
        per_run.append(dict(current))
        current.clear()
    names = {name for run in per_run for name in run}
    kernels = [KernelTime(name, counts[name] // runs, statistics.median(run.get(name, 0.0) for run in per_run))
               for name in names]
    kernels.sort(key=lambda k: -k.seconds)
    return Profile(kernels, statistics.median(totals), runs, alone or None)
