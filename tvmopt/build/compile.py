"""Import, lower and compile a model; run it with the Relax VM.

    compiled = compile_model("model.onnx", "llvm", records="records")
    y = compiled(x)                       # numpy in, numpy out

Each kernel uses the best record of its task for this target (user records first, then the
records shipped inside the package, ``tvmopt.records.shipped``), or its space's initial config when there is none. After the
pass, Relax fuses epilogues into the convolutions and every function is scheduled
(:mod:`tvmopt.passes.fuse_schedule`); the build warns if any heavy function is left serial.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tvmopt.records import shipped as shipped_data
from tvmopt.records.store import DEFAULT_DIR, NETWORK, RecordCache
from tvmopt.errors import RecordsError, TargetError, model_stage
from tvmopt.model.frontend import Imported, load
from tvmopt.passes import DetectOptions, Lowered, lower
from tvmopt.passes.concat import concat_in_place
from tvmopt.passes.fuse_schedule import fuse, kernel_tasks, schedule_module, unscheduled_heavy
from tvmopt.schedules import isa, lowering
from tvmopt.target import TargetSpec, parse_target



@dataclass
class Compiled:
    imported: Imported
    lowered: Lowered
    target: TargetSpec
    executable: object
    tuned: dict[str, str]             # task key -> where its config came from ('' = default)
    mod: object = None                # the scheduled Relax module that was compiled
    defaulted: list = None            # functions scheduled by the default rule
    serial: list = None               # heavy functions left serial and scalar (should be empty)
    notes: list = None                # what the build did differently from a CPU build (CUDA)
    gpu_rules: dict = None            # GPU builds: function -> the DLight rule that scheduled it
    kernels: dict = None              # CPU builds: function -> {"task": key, "record_s": its record's seconds or None}

    def __post_init__(self):
        self._call = None
        if self.target.kind == "llvm":          # a CUDA module runs only where there is a GPU
            self._start()

    def _start(self) -> None:
        import tvm
        from tvm import relax

        if not device_present(self.target.kind):
            raise TargetError(f"target {self.target.key}: this machine has no {self.target.kind.upper()} device; "
                              f"the module is compiled (export it with 'tvmopt build') and runs where there is one")
        self._device = tvm.cpu() if self.target.kind == "llvm" else tvm.device(self.target.kind, 0)
        self._vm = relax.VirtualMachine(self.executable, self._device)
        self._main = self._vm["main"]           # looked up once: each lookup costs ~3 us
        self._call = StagedCall(self._main, self._device, self.imported.inputs)

    def __call__(self, *args, **named) -> np.ndarray | tuple[np.ndarray, ...]:
        """The model's output for its inputs (positional, or by name); a tuple of every output,
        in order, when it has several."""
        if self._call is None:
            bind_inputs(self.imported.inputs, args, named, ValueError)     # bad inputs first
            self._start()
        return self._call.call(args, named, ValueError)

    def output_shapes(self) -> list[list[int]]:
        """The shapes of the model's outputs, from the compiled module's signature (no run)."""
        def shapes(ty) -> list[list[int]]:
            fields = getattr(ty, "fields", None)
            if fields is not None:
                return [s for field in fields for s in shapes(field)]
            return [[int(d) for d in ty.shape]]

        return shapes(self.mod["main"].ret_ty)


def device_present(kind: str) -> bool:
    """Whether this machine has a device of a target kind (``llvm``: the CPU, always)."""
    import tvm

    if kind in ("llvm", "cpu"):
        return True
    try:
        return bool(tvm.device(kind, 0).exist)
    except Exception:  # noqa: BLE001 - a runtime built without that device kind
        return False


class StagedCall:
    """A Relax VM function called on numpy inputs through input buffers kept between calls.

    On the CPU each input is copied into a persistent 64-byte-aligned numpy buffer whose TVM
    tensor (a DLPack view) was made once: wrapping a new array costs about 3 us per call, as
    much as the digits MLP's largest kernel. Calls are serialized by a lock, since the buffers
    and the VM's output storage are reused. Elsewhere it is :func:`run_main`.

    :meth:`call` binds the caller's arguments to ``inputs`` (specs) first, skipping the binding's
    conversions and the buffers' shape check for positional arrays that already have the inputs'
    exact shapes and types. The Python around a call is about 2.6 us (the digits MLP at batch 1:
    5.1 us in the VM, 7.7 us a call; 9.2 us with generator checks and the output's walk), of
    which the copy in, the output's copy out and the lock take 1 us and a bare wrapper 1.8 us."""

    def __init__(self, func, device, inputs=None):
        self.func, self.device = func, device
        self.on_cpu = device.dlpack_device_type() == 1          # kDLCPU
        self._staged: list = []                                  # numpy buffers, in input order
        self._tensors: list = []                                 # their TVM tensors
        self._sig: tuple = ()                                    # their (shape, dtype)
        self._lock = threading.Lock()
        self.inputs = list(inputs or [])
        self._exact = tuple((tuple(i.shape), np.dtype(i.dtype)) for i in self.inputs)

    def call(self, args, named, error=ValueError):
        """The outputs for the caller's positional and named arguments (bound to ``inputs``).
        Arrays that already have the inputs' exact shapes and types skip the binding and the
        staged buffers' shape check."""
        exact = self._exact
        if named or len(args) != len(exact):
            return self(bind_inputs(self.inputs, args, named, error))
        for a, (shape, dtype) in zip(args, exact):
            if type(a) is not np.ndarray or a.shape != shape or a.dtype != dtype:
                return self(bind_inputs(self.inputs, args, named, error))
        return self._run(args, exact)

    def __call__(self, arrays) -> np.ndarray | tuple[np.ndarray, ...]:
        return self._run(arrays, tuple((a.shape, a.dtype) for a in arrays))

    def _run(self, arrays, sig: tuple):
        """Run on ``arrays`` (numpy, in input order) whose shapes and types are ``sig``."""
        if not self.on_cpu:
            return run_main(self.func, list(arrays), self.device)
        with self._lock:
            if self._sig is not sig and self._sig != sig:
                self._stage(arrays)
            self._sig = sig
            for buffer, a in zip(self._staged, arrays):
                np.copyto(buffer, a)
            out = self.func(*self._tensors)
            if hasattr(out, "__dlpack__"):    # one output: the common case, without _to_numpy's walk
                return np.from_dlpack(out).copy()
            return _to_numpy(out, True)

    def _stage(self, arrays: list[np.ndarray]) -> None:
        """(Re)make the staged buffers and their tensors for inputs of these shapes and types."""
        import tvm_ffi

        self._staged = [_aligned(np.empty(a.shape, a.dtype)) for a in arrays]
        self._tensors = [tvm_ffi.from_dlpack(b) for b in self._staged]


def bind_inputs(inputs, args, named, error=ValueError) -> list[np.ndarray]:
    """The arrays for ``inputs`` (``Input`` specs) from positional ``args`` and ``named``
    arrays, each checked against its shape and cast to its element type."""
    if len(args) + len(named) != len(inputs):
        raise error(f"the model takes {len(inputs)} input(s) ({', '.join(i.name for i in inputs)}), "
                    f"got {len(args) + len(named)}")
    unknown = set(named) - {i.name for i in inputs}
    if unknown:
        raise error(f"unknown input name(s) {sorted(unknown)}; the model's inputs: {', '.join(i.name for i in inputs)}")
    arrays = []
    positional = list(args)
    for spec in inputs:
        value = named[spec.name] if spec.name in named else positional.pop(0)
        x = np.asarray(value)
        if tuple(x.shape) != tuple(spec.shape):
            raise error(f"input '{spec.name}' shape {tuple(x.shape)} differs from the module's {tuple(spec.shape)}")
        arrays.append(x.astype(spec.dtype, copy=False))
    return arrays


def _aligned(x: np.ndarray, alignment: int = 64) -> np.ndarray:
    """``x`` as a C-contiguous array whose data starts on an ``alignment`` boundary."""
    x = np.ascontiguousarray(x)
    if x.ctypes.data % alignment == 0:
        return x
    raw = np.empty(x.nbytes + alignment, np.uint8)
    start = (-raw.ctypes.data) % alignment
    out = raw[start:start + x.nbytes].view(x.dtype).reshape(x.shape)
    out[...] = x
    return out


def run_main(func, x: np.ndarray | list[np.ndarray], device) -> np.ndarray | tuple[np.ndarray, ...]:
    """Call a Relax VM function on numpy inputs (one float32 array, or a list of arrays of their
    own types in the function's order) and return its output as numpy: one array, or a tuple of
    every output, in the model's order, when it returns several.

    On the CPU, input and output cross by DLPack without a copy: ``tvm.runtime.tensor(x)`` and
    ``.numpy()`` cost about 55 and 20 us, more than the whole digits MLP (about 20 us). The
    output is copied once, since the VM may reuse its storage on the next call."""
    import tvm
    import tvm_ffi

    on_cpu = device.dlpack_device_type() == 1          # kDLCPU
    xs = [_aligned(a) for a in x] if isinstance(x, list) else [_aligned(np.asarray(x, dtype=np.float32))]
    out = func(*[tvm_ffi.from_dlpack(a) if on_cpu else tvm.runtime.tensor(a, device) for a in xs])
    return _to_numpy(out, on_cpu)


def _to_numpy(out, on_cpu: bool) -> np.ndarray | tuple[np.ndarray, ...]:
    """A VM result as numpy: one array, or a tuple of every output in order (copied: the VM
    may reuse the storage on its next call)."""
    def to_numpy(t):
        return np.from_dlpack(t).copy() if on_cpu else t.numpy()

    if hasattr(out, "__dlpack__"):
        return to_numpy(out)
    outputs = _flatten(out)
    return to_numpy(outputs[0]) if len(outputs) == 1 else tuple(to_numpy(o) for o in outputs)


def _flatten(value) -> list:
    """The tensors of a (possibly nested) VM tuple, in order."""
    if hasattr(value, "__dlpack__"):
        return [value]
    return [t for item in value for t in _flatten(item)]


def _nearest_targets(target: TargetSpec, keys) -> list[str]:
    """Other target keys of the same kind whose records may stand in for ``target``'s: CPUs with
    the same vector ISA first (AVX2, AVX-512, AVX-512 with VNNI), then those of a width LLVM
    cannot tell; never a known different width, whose register tiles (4 x 16 for AVX2) ran at
    0.25 to 0.54x the AVX-512 start on Zen 5's ResNet-18 layers."""
    kind = target.key.split("-")[0]
    others = [k for k in keys if k != target.key and k.split("-")[0] == kind]
    if kind != "llvm":
        return others
    mine = isa.for_target(target)
    if mine is None:
        return others
    exact, width, unknown = [], [], []
    for key in others:
        theirs = isa.for_target_key(key)
        if theirs is None:
            unknown.append(key)
        elif (theirs.lanes, theirs.vnni) == (mine.lanes, mine.vnni):     # Zen 4's double-pumped AVX-512 too
            exact.append(key)
        elif theirs.lanes == mine.lanes:
            width.append(key)
    return exact + width + unknown


def best_configs(target: TargetSpec, records: str | Path | None, shipped: bool = True, overrides: dict | None = None):
    """``lookup(key, space) -> config or None`` from the user's records (``records``, or the
    default records directory ``tvmopt tune`` writes to), then the shipped ones (unless
    ``shipped`` is False).

    Each records file is read once. A task gets the fastest record whose config fits its
    current space: a record made before the space changed is passed over with one warning,
    never built. When the shipped records hold nothing for this exact target key (another
    CPU model, say), those of another target of the same kind and vector width are used: a
    config tuned on such a CPU is valid everywhere and usually far better than the untuned
    default.
    ``used[key]`` says where a task's config came from: ``"records"``, ``"shipped"``,
    ``"shipped:<other key>"`` or ``""`` (none). A user's records file that cannot be used
    stops the build (RecordsError); shipped records that cannot be used are skipped with a
    warning, since the user cannot fix them. Another CPU's records stand in only where its
    vector width is this one's (:func:`_nearest_targets`). ``overrides``: task key -> the config
    to build instead (the in-network check's candidates, :mod:`tvmopt.tune.network`); the
    records still give the costs that choose each layer's kernel, so every candidate build makes
    the same choices."""
    tables: list[tuple[str, dict]] = []
    if records is None and DEFAULT_DIR.is_dir():       # where `tvmopt tune` writes by default
        records = DEFAULT_DIR
    if records:
        cache = RecordCache.single_file(records) if Path(records).is_file() else RecordCache(records)
        tables.append(("records", cache.ranked(target.key)))
    shipped_dir = shipped_data.records_dir() if shipped else None
    if shipped_dir is not None:
        bundled = RecordCache(shipped_dir)
        keys = [target.key] + _nearest_targets(target, bundled.target_keys())
        for key in keys:
            try:
                tables.append(("shipped" if key == target.key else f"shipped:{key}", bundled.ranked(key)))
            except RecordsError as e:
                warnings.warn(f"shipped records skipped: {e}")
    used: dict[str, str] = {}

    def cost(key: str) -> float | None:
        """Seconds of the task's fastest record measured on this very target, or None."""
        for source, table in tables:
            alone = [r.cost for r in table.get(key, ()) if r.tuner != NETWORK]   # in-model times differ
            if source in ("records", "shipped") and alone:
                return min(alone)
        return None

    def lookup(key: str, space=None):
        if overrides and key in overrides and (space is None or space.contains(overrides[key])):
            used[key] = "override"
            return overrides[key]
        stale, found, source = 0, None, ""
        for source, table in tables:
            for rec in table.get(key, ()):
                if space is None or space.contains(rec.config):
                    found = rec.config
                    break
                stale += 1
            if found is not None:
                break
        used[key] = source if found is not None else ""
        if stale:
            instead = f"the best that fits ({source})" if found is not None else "the default schedule"
            warnings.warn(f"{key}: passed over {stale} faster record(s) whose configs do not fit the current "
                          f"schedule space (made before it changed?); using {instead}")
        return found

    lookup.cost = cost                 # what decides between a layer's compressed and dense kernels
    return lookup, used


def measuring_costs(target: TargetSpec, records, lookup):
    """``cost(key)`` for ``--kernels measure``: a task's record on this target, or else a
    measurement made now (its best record's config, or its space's start), appended to the
    records (``records``, or the default directory) so the next build reads it."""
    from tvmopt.measure.local import LocalMeasurer
    from tvmopt.ops.task import get_task
    from tvmopt.records.store import Record

    cache = RecordCache(records if records and not Path(records).is_file() else DEFAULT_DIR)
    measured: dict[str, float | None] = {}
    state = {"measurer": None}

    def cost(key: str) -> float | None:
        known = lookup.cost(key)
        if known is not None:
            return known
        if key not in measured:
            task = get_task(key)
            config = lookup(key, task.space) or task.space.initial()
            if state["measurer"] is None:
                state["measurer"] = LocalMeasurer(target)
            (result,) = state["measurer"].measure(key, [config])
            record = Record.from_result(key, target.key, config, result, task.space.fingerprint(), "kernel-choice")
            cache.append([record])
            measured[key] = record.cost if record.error == "ok" else None
        return measured[key]

    def close() -> None:
        if state["measurer"] is not None:
            state["measurer"].close()

    cost.close = close
    return cost


def load_and_lower(source, batch: int | None = None, configs=None, options: DetectOptions | None = None,
                   costs=None, target_kind: str = "llvm", shapes: dict | None = None) -> tuple[Imported, Lowered]:
    """Import ``source`` and run the pass on it; any failure of the pass is one ModelError line.
    Shared by ``compile_model``, ``inspect`` and the task extraction of ``tune``. ``configs``
    and ``costs`` are what :func:`plan_kernels` gives (``lookup`` and ``costs``); ``shapes``: input
    name -> shape (:func:`tvmopt.model.frontend.load`)."""
    imported = load(source, batch=batch, shapes=shapes)
    with model_stage(f"{Path(imported.source).name}: lowering"):
        return imported, lower(imported.mod, configs=configs, options=options, costs=costs, target_kind=target_kind)


@contextlib.contextmanager
def plan_kernels(target: TargetSpec, records, options: DetectOptions | None, shipped: bool = True,
                 overrides: dict | None = None):
    """``with plan_kernels(...) as (lookup, used, costs)``: the best configs and what decides
    each layer's kernel (records, or measurements made now for ``options.kernels == "measure"``,
    whose measurer is closed on the way out)."""
    lookup, used = best_configs(target, records, shipped, overrides)
    if options is None or options.kernels != "measure":
        yield lookup, used, lookup.cost
        return
    costs = measuring_costs(target, records, lookup)
    try:
        yield lookup, used, costs
    finally:
        costs.close()


def compile_model(source, target: str | TargetSpec = "llvm", records: str | Path | None = None, batch: int | None = None,
                  options: DetectOptions | None = None, shipped: bool = True, shapes: dict | None = None,
                  configs: dict | None = None) -> Compiled:
    """``shipped=False``: ignore the records shipped in ``logs/records`` (the untuned baseline).
    ``configs``: task key -> config, built instead of the records' (CPU builds; the records still
    decide each layer's kernel).
    ``shapes``: input name -> shape, for inputs with symbolic axes besides the batch (a dynamic
    sequence length; :func:`tvmopt.model.frontend.parse_input_shapes` reads tvmc's syntax)."""
    import tvm

    spec = parse_target(target) if isinstance(target, str) else target
    if spec.kind == "cuda":
        return _compile_gpu(source, spec, batch, options, records, shipped, shapes)
    if spec.kind != "llvm":
        raise TargetError(f"target {spec.key}: tvmopt builds whole models for CPUs (llvm) and CUDA GPUs")
    # untuned kernels start from register tiles shaped for the target's vector registers
    with isa.use(isa.for_target(spec)):
        with plan_kernels(spec, records, options, shipped, configs) as (lookup, used, costs):
            imported, lowered = load_and_lower(source, batch, configs=lookup, options=options, costs=costs,
                                               shapes=shapes)
        name = Path(imported.source).name
        with model_stage(f"{name}: scheduling"), tvm.transform.PassContext(opt_level=3):
            mod, defaulted = schedule_module(concat_in_place(fuse(lowered.mod)), lookup)
        # each kernel's task and its record's time on this very target (measured alone)
        kernels = {fn: {"task": key, "record_s": lookup.cost(key) if used.get(key) in ("records", "shipped") else None}
                   for fn, key in sorted(kernel_tasks(mod).items())}
    serial = unscheduled_heavy(mod)
    if serial:
        warnings.warn(f"{name}: {len(serial)} heavy kernel(s) left without a parallel or vector loop: "
                      f"{', '.join(serial[:5])}")
    with model_stage(f"{name}: compiling"), tvm.transform.PassContext(opt_level=3):
        exe = lowering.compile(mod, spec.tvm_target(), relax_pipeline=_after_scheduling(spec))
    return Compiled(imported, lowered, spec, exe, used, mod, defaulted, serial, kernels=kernels)


def lower_for_gpu(source, spec: TargetSpec, batch: int | None, options: DetectOptions | None,
                  records=None, shipped: bool = True, shapes: dict | None = None):
    """Import and lower ``source`` as a CUDA build does (:mod:`tvmopt.build.gpu`: compressed
    layers on their CUDA kernels where :mod:`tvmopt.passes.choose_cuda` picks them, with the
    best CUDA record's config; NCHW). Returns (imported, lowered, used: task key -> where its
    config came from). CPU-only options are one-line TargetErrors."""
    import dataclasses

    options = options or DetectOptions()
    if options.kernels == "measure":
        raise TargetError(f"target {spec.key}: --kernels measure times kernels on this machine's CPU; on CUDA "
                          f"use auto (CUDA records decide, else the prediction), compressed or dense")
    if options.layout == "nhwc":
        raise TargetError(f"target {spec.key}: --layout nhwc is for CPU kernels; CUDA builds keep the model's NCHW")
    options = dataclasses.replace(options, layout="nchw")
    lookup, used = best_configs(spec, records, shipped)
    # the pass's CPU-shaped choices stay plain (no AVX-512 tensor intrinsics in the lowered functions)
    with isa.use(isa.AVX2):
        imported, lowered = load_and_lower(source, batch, configs=lookup, options=options, costs=lookup.cost,
                                           target_kind="cuda", shapes=shapes)
    return imported, lowered, used


def schedule_for_gpu(lowered: Lowered, spec: TargetSpec, name: str):
    """(the fused module scheduled for the GPU, function -> DLight rule)."""
    from tvmopt.build.gpu import schedule_gpu

    with model_stage(f"{name}: scheduling for {spec.key}"):
        return schedule_gpu(fuse(lowered.mod, cpu=False), spec.tvm_target(), kernels=lowered.cuda_kernels)


def _compile_gpu(source, spec: TargetSpec, batch: int | None, options: DetectOptions | None, records=None,
                 shipped: bool = True, shapes: dict | None = None) -> Compiled:
    """A whole-model CUDA build (:mod:`tvmopt.build.gpu`): compressed layers on their CUDA
    kernels where chosen, DLight's GPU rules for every other function; compiles without a GPU."""
    import tvm

    from tvmopt.build.gpu import build_notes, relax_pipeline

    imported, lowered, used = lower_for_gpu(source, spec, batch, options, records, shipped, shapes)
    name = Path(imported.source).name
    mod, rules = schedule_for_gpu(lowered, spec, name)
    target = spec.tvm_target()
    with model_stage(f"{name}: compiling for {spec.key}"), tvm.transform.PassContext(opt_level=3):
        exe = tvm.compile(mod, target, relax_pipeline=relax_pipeline(target))
    return Compiled(imported, lowered, spec, exe, used, mod, [], [], notes=build_notes(lowered), gpu_rules=rules)


def _after_scheduling(spec: TargetSpec):
    """The CPU Relax pipeline minus legalization and fusion, which :func:`fuse` already did
    (running them again would re-fuse scheduled functions)."""
    from tvm.relax.backend.cpu_generic import pipeline as cpu

    return scheduled_pipeline(cpu, spec.tvm_target())


def scheduled_pipeline(backend, target):
    """``backend``'s Relax pipeline (a ``tvm.relax.backend.<kind>.pipeline`` module) minus its
    legalization, fusion and default schedules, which the build did itself: library dispatch,
    dataflow lowering and finalization."""
    import tvm

    @tvm.transform.module_pass(opt_level=0)
    def _pipeline(mod, _ctx):
        with target:
            return tvm.transform.Sequential(backend.library_dispatch_passes(target)
                                            + backend.dataflow_lower_passes(target)
                                            + backend.finalize_passes(target))(mod)

    return _pipeline
