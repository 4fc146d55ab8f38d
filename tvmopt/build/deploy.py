"""Deployable modules: ``build`` writes a normal TVM module library (``.so``) plus a small JSON
description next to it; ``load`` gives back a callable.

The ``.so`` needs only TVM's runtime (no tvmopt) to run::

    import numpy as np, tvm
    from tvm import relax
    lib = tvm.runtime.load_module("model.so")
    vm = relax.VirtualMachine(lib, tvm.cpu())
    y = vm["main"](tvm.runtime.tensor(x)).numpy()
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tvmopt import __version__
from tvmopt.build.compile import Compiled, StagedCall, compile_model, device_present, run_main
from tvmopt.errors import UserError
from tvmopt.native import quiet_native_logs


@dataclass
class BuildResult:
    path: Path
    compiled: Compiled
    untuned: list[str]


def meta_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def build(source, output, target="llvm", records=None, batch: int | None = None, options=None,
          shapes: dict | None = None) -> BuildResult:
    """Compile ``source`` with the best records and export it to ``output``."""
    output = Path(output)
    if output.suffix != ".so":
        raise UserError(f"output must be a .so file, got {output}")
    compiled = compile_model(source, target, records=records, batch=batch, options=options, shapes=shapes)
    untuned = sorted(k for k, used in compiled.tuned.items() if not used)
    if untuned:
        warnings.warn(f"{len(untuned)} task(s) have no tuning record and use a default schedule: "
                      + ", ".join(untuned))
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the output directory '{output.parent}': {e.strerror}") from None
    inputs = compiled.imported.inputs
    if compiled.target.kind == "llvm":     # a trial run: the module works before it is written
        outputs = compiled(*[np.zeros(i.shape, i.dtype) for i in inputs])
        shapes = [list(y.shape) for y in (outputs if isinstance(outputs, tuple) else (outputs,))]
    else:                                  # a GPU module may be built where there is no GPU
        shapes = compiled.output_shapes()
    meta = {"tvmopt": __version__, "source": str(compiled.imported.source), "target": compiled.target.key,
            "input_name": compiled.imported.input_name, "input_shape": list(compiled.imported.input_shape),
            "inputs": [{"name": i.name, "shape": list(i.shape), "dtype": i.dtype} for i in inputs],
            "output_shape": shapes[0], "output_shapes": shapes, "tuned": {k: u for k, u in sorted(compiled.tuned.items()) if u},
            "untuned": untuned, "layers": [layer.__dict__ for layer in compiled.lowered.layers],
            "built": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "device": "cpu" if compiled.target.kind == "llvm" else compiled.target.kind,
            "notes": list(compiled.notes or [])}
    if compiled.kernels:
        meta["kernels"] = compiled.kernels
    if compiled.target.kind != "llvm":
        meta["compiled_without_device"] = not device_present(compiled.target.kind)
        meta["gpu_rules"] = dict(sorted((compiled.gpu_rules or {}).items()))
    # both files appear complete or not at all: written beside their place, then renamed
    with quiet_native_logs():
        write_atomically(output, compiled.executable.export_library, by_name=True)
    meta["library"] = {"bytes": output.stat().st_size, "sha256": _sha256(output)}    # checked by load
    write_atomically(meta_path(output), lambda f: f.write((json.dumps(meta, indent=2) + "\n").encode()))
    return BuildResult(output, compiled, untuned)


def write_atomically(path, write, by_name: bool = False) -> None:
    """Write a file so that it appears whole or not at all: ``write`` fills a temporary file
    next to ``path`` (given it open in binary mode, or with ``by_name`` its path), which then replaces
    ``path``. A failure leaves neither a partial file nor the temporary one behind."""
    import os
    import tempfile

    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent or ".")
    except OSError as e:
        raise UserError(f"cannot write '{path}': {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            if not by_name:
                write(f)
        if by_name:
            write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, (0o777 if path.suffix == ".so" else 0o666) & ~umask)   # as a plain open() would
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise UserError(f"cannot write '{path}': {e.strerror or e}") from None
        raise


class Module:
    """A built model: ``module(x)`` runs it on a numpy array."""

    def __init__(self, path):
        import tvm
        from tvm import relax

        self.path = Path(path)
        if not self.path.exists():
            raise UserError(f"module not found: {self.path}")
        if self.path.is_dir():
            raise UserError(f"module path is a directory, not a .so file: {self.path}")
        self.meta = read_meta(self.path)
        check_library(self.path, self.meta.get("library"))     # before dlopen: a damaged .so can kill it
        kind = self.meta.get("device", "cpu")
        if not device_present(kind):
            raise UserError(f"{self.path.name} was built for {self.meta.get('target', kind)}: this machine has no "
                            f"{kind.upper()} device to run it on")
        self.device = tvm.cpu() if kind == "cpu" else tvm.device(kind, 0)
        try:
            with quiet_native_logs():
                lib = tvm.runtime.load_module(str(self.path))
        except Exception as exc:  # noqa: BLE001 - any loader failure is the file's fault
            raise UserError(f"cannot load {self.path} as a TVM module ({type(exc).__name__})") from None
        self._lib = lib
        try:
            with quiet_native_logs():
                self.vm = relax.VirtualMachine(lib, self.device)
                self._main = self.vm["main"]
                self._call = StagedCall(self._main, self.device, self.inputs)
        except Exception:  # noqa: BLE001 - a shared library that holds no Relax executable
            raise UserError(f"cannot load {self.path}: a shared library, but not a module written by 'tvmopt build' "
                            f"(it holds no Relax VM executable with a 'main' function)") from None

    @property
    def input_shape(self):
        return tuple(self.meta.get("input_shape", ())) or None

    @property
    def inputs(self) -> list:
        """The module's inputs (name, shape, dtype) as its build recorded them; [] without a .json."""
        from tvmopt.model.frontend import Input

        if "inputs" in self.meta:
            return [Input(i["name"], tuple(i["shape"]), i.get("dtype", "float32")) for i in self.meta["inputs"]]
        if self.input_shape:        # written by an earlier tvmopt: one float32 input
            return [Input(self.meta.get("input_name", "input"), self.input_shape)]
        return []

    def __call__(self, *args, **named) -> np.ndarray | tuple[np.ndarray, ...]:
        """The output for the inputs (positional, or by name); a tuple of every output, in
        order, when the model has several."""
        if not self._call.inputs:          # no .json: trust the caller
            return run_main(self._main, [np.asarray(a) for a in args], self.device)
        return self._call.call(args, named, UserError)

    def time(self, *args, repeat: int = 20, **named) -> float:
        """Median seconds per call."""
        import statistics

        self(*args, **named)
        samples = []
        for _ in range(repeat):
            start = time.perf_counter()
            self(*args, **named)
            samples.append(time.perf_counter() - start)
        return statistics.median(samples)


    def profile(self, *args, runs: int = 10, **named):
        """Per-kernel times (:class:`tvmopt.build.profile.Profile`) over ``runs`` calls on these
        inputs, on an instrumented VM of its own."""
        from tvmopt.build.compile import bind_inputs
        from tvmopt.build.profile import profiler

        specs = self.inputs
        if not specs:
            raise UserError("profiling needs the module's input description (.json written by 'tvmopt build')")
        arrays = bind_inputs(specs, args, named, UserError)
        alone = {name: k["record_s"] for name, k in self.meta.get("kernels", {}).items()
                 if isinstance(k, dict) and isinstance(k.get("record_s"), (int, float))}
        return profiler(self._lib, self.device)(arrays, runs=runs, alone=alone)


def load(path) -> Module:
    return Module(path)


def read_meta(path: Path) -> dict:
    """The ``.so.json`` written beside a module ({} when there is none); a damaged one is a UserError."""
    meta = meta_path(path)
    if not meta.exists():
        return {}
    try:
        data = json.loads(meta.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UserError(f"{meta} is damaged ({type(e).__name__}); rebuild the module with 'tvmopt build' "
                        f"or delete {meta.name}") from None
    if not isinstance(data, dict):
        raise UserError(f"{meta} is damaged (not a JSON object); rebuild the module or delete {meta.name}")
    return data


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_library(path: Path, recorded: dict | None = None) -> None:
    """Refuse a damaged shared library before the dynamic loader maps it (a truncated ``.so``
    kills the process with a bus error): its size and SHA-256 against what ``build`` recorded,
    and in any case its ELF header against its length."""
    size = path.stat().st_size
    if recorded:
        if size != recorded.get("bytes"):
            raise UserError(f"cannot load {path}: it is damaged: {size:,} bytes where its build wrote {recorded.get('bytes'):,} "
                            f"(truncated or overwritten); rebuild it with 'tvmopt build'")
        if recorded.get("sha256") and _sha256(path) != recorded["sha256"]:
            raise UserError(f"cannot load {path}: it is damaged: its checksum differs from the one its build recorded; "
                            f"rebuild it with 'tvmopt build'")
    with open(path, "rb") as f:
        head = f.read(64)
    if head[:4] != b"\x7fELF":
        raise UserError(f"cannot load {path}: it is not a shared library (no ELF header)")
    if len(head) < 64 or head[4] != 2 or head[5] != 1:
        raise UserError(f"cannot load {path}: it is damaged or not a 64-bit little-endian shared library")
    import struct

    phoff, shoff = struct.unpack_from("<QQ", head, 0x20)
    phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", head, 0x36)
    need = max(phoff + phentsize * phnum, shoff + shentsize * shnum)
    if need > size:
        raise UserError(f"cannot load {path}: it is damaged: {size:,} bytes, but its ELF header describes {need:,} "
                        f"(truncated); rebuild it with 'tvmopt build'")
    with open(path, "rb") as f:
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    for i in range(phnum):
        p_type, _, p_offset = struct.unpack_from("<IIQ", table, i * phentsize)
        (p_filesz,) = struct.unpack_from("<Q", table, i * phentsize + 32)
        if p_type == 1 and p_offset + p_filesz > size:        # PT_LOAD past the end of the file
            raise UserError(f"cannot load {path}: it is damaged: a segment ends at byte {p_offset + p_filesz:,} of "
                            f"{size:,} (truncated); rebuild it with 'tvmopt build'")
