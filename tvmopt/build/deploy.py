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
from tvmopt.build.compile import Compiled, compile_model, run_main
from tvmopt.errors import UserError
from tvmopt.native import quiet_native_logs


@dataclass
class BuildResult:
    path: Path
    compiled: Compiled
    untuned: list[str]


def meta_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def build(source, output, target="llvm", records=None, batch: int = 1) -> BuildResult:
    """Compile ``source`` with the best records and export it to ``output``."""
    output = Path(output)
    if output.suffix != ".so":
        raise UserError(f"output must be a .so file, got {output}")
    compiled = compile_model(source, target, records=records, batch=batch)
    untuned = sorted(k for k, used in compiled.tuned.items() if not used)
    if untuned:
        warnings.warn(f"{len(untuned)} task(s) have no tuning record and use a default schedule: "
                      + ", ".join(untuned))
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the output directory '{output.parent}': {e.strerror}") from None
    x = np.zeros(compiled.imported.input_shape, np.float32)
    out_shape = list(compiled(x).shape)
    meta = {"tvmopt": __version__, "source": str(compiled.imported.source), "target": compiled.target.key,
            "input_name": compiled.imported.input_name, "input_shape": list(compiled.imported.input_shape),
            "output_shape": out_shape, "tuned": {k: u for k, u in sorted(compiled.tuned.items()) if u},
            "untuned": untuned, "layers": [layer.__dict__ for layer in compiled.lowered.layers],
            "built": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    # both files appear complete or not at all: written beside their place, then renamed
    with quiet_native_logs():
        write_atomically(output, compiled.executable.export_library, by_name=True)
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
        try:
            with quiet_native_logs():
                lib = tvm.runtime.load_module(str(self.path))
        except Exception as exc:  # noqa: BLE001 - any loader failure is the file's fault
            raise UserError(f"cannot load {self.path} as a TVM module ({type(exc).__name__})") from None
        self.device = tvm.cpu()
        self.vm = relax.VirtualMachine(lib, self.device)
        self._main = self.vm["main"]
        meta = meta_path(self.path)
        self.meta = json.loads(meta.read_text()) if meta.exists() else {}

    @property
    def input_shape(self):
        return tuple(self.meta.get("input_shape", ())) or None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if self.input_shape and tuple(x.shape) != self.input_shape:
            raise UserError(f"input shape {tuple(x.shape)} differs from the module's {self.input_shape}")
        return run_main(self._main, x, self.device)

    def time(self, x: np.ndarray, repeat: int = 20) -> float:
        """Median seconds per call."""
        import statistics

        self(x)
        samples = []
        for _ in range(repeat):
            start = time.perf_counter()
            self(x)
            samples.append(time.perf_counter() - start)
        return statistics.median(samples)


def load(path) -> Module:
    return Module(path)
