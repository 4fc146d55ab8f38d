"""Probes of how tvmopt fails, shared by ``tests/reliability`` and ``benchmarks/reliability.py``.

Everything here drives the real command line in subprocesses, as a user would:

* :data:`BAD_INPUTS`: mistakes a user makes (missing or corrupt files, bad targets, bad
  budgets, unusable records, inconsistent ``ai.tvmopt`` nodes, wrong inputs for ``run``);
  each must end in one ``tvmopt: error:`` line, exit 2, and no output file left behind.
* :func:`mutate`: seeded mutations of an ONNX model (byte flips, truncations, protobuf-level
  edits) for fuzzing ``inspect`` and ``build``: every run must exit 0 or 2, cleanly.
* :func:`kill_and_resume`: ``kill -9`` a ``tvmopt tune`` at a random moment, then resume it:
  no reported measurement may be lost, none measured twice, every line valid JSON.
* :func:`concurrent_tunes`: two ``tvmopt tune`` processes appending to one records file.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[2]     # the repository (tests, benchmarks)
MODELS = ROOT / "examples" / "models"
#: the bundled models the fuzzer mutates: one per kind of graph (ai.tvmopt MLP and CNN,
#: plain export with Sign/Mul on weights, plain Fastfood butterflies, fp32)
FUZZ_MODELS = ("digits_mlp_binary.onnx", "digits_cnn_shift.onnx", "digits_mlp_ternary.plain.onnx",
               "digits_mlp_fastfood.plain.onnx", "digits_cnn_nm24.onnx", "digits_mlp_fp32.onnx")


# --------------------------------------------------------------------------- running the CLI

@dataclass
class Outcome:
    argv: list[str]
    returncode: int | None          # None: killed at the timeout
    stdout: str
    stderr: str
    seconds: float

    @property
    def timed_out(self) -> bool:
        return self.returncode is None

    @property
    def traceback(self) -> bool:
        text = self.stdout + self.stderr
        return "Traceback (most recent call last)" in text or "File \"/project/src" in text

    def problem(self) -> str | None:
        """Why this run is not a clean success or a clean one-line user error, or None."""
        if self.timed_out:
            return "hung (killed at the timeout)"
        if self.returncode < 0:
            return f"died of signal {-self.returncode}"
        if self.traceback:
            return "printed a traceback"
        if self.returncode == 2:
            lines = [ln for ln in self.stderr.splitlines() if ln.strip() and not ln.startswith("tvmopt: warning:")]
            if len(lines) != 1 or not lines[0].startswith("tvmopt: error: "):
                return f"exit 2 without exactly one error line: {self.stderr.strip()[-300:]!r}"
            return None
        if self.returncode != 0:
            return f"exit {self.returncode}: {self.stderr.strip()[-300:]!r}"
        return None

    @property
    def error_line(self) -> str:
        lines = [ln for ln in self.stderr.splitlines() if ln.startswith("tvmopt: error: ")]
        return lines[0] if lines else ""


def cli_env(records: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("TVMOPT_DEBUG", None)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["TVMOPT_PLUGINS"] = "tvmopt.testing.faults"        # the fault:N workload
    if records is not None:
        env["TVMOPT_RECORDS"] = str(records)
    return env


def run_cli(argv: list[str], cwd: Path, timeout: float = 300, env: dict | None = None) -> Outcome:
    """``python -m tvmopt ARGV`` in ``cwd``; a run past ``timeout`` is killed with its workers."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "tvmopt", *argv], cwd=cwd, env=env or cli_env(cwd / "records"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        code = None
    return Outcome(list(argv), code, out, err, time.perf_counter() - start)


# --------------------------------------------------------------------------- the bad-input catalogue

@dataclass
class BadInput:
    """One mistake: ``make(dir)`` prepares files in ``dir`` and returns the argv; the run must
    exit 2 with one error line containing ``needle``, and leave none of ``must_not_exist``."""

    name: str
    make: Callable[[Path], list[str]]
    needle: str
    must_not_exist: tuple[str, ...] = ()


def _model(name: str = "digits_mlp_binary.onnx") -> str:
    return str(MODELS / name)


def _write(path: Path, data: bytes | str) -> str:
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return str(path)


def _onnx_with(d: Path, name: str, edit) -> str:
    import onnx

    model = onnx.load(_model())
    edit(model)
    path = d / name
    onnx.save(model, str(path))
    return str(path)


def _unsupported_op(model) -> None:
    from onnx import helper

    graph = model.graph
    last = graph.output[0].name
    graph.node.append(helper.make_node("FancyNewOp", [last], [last + "_fancy"]))
    graph.output[0].name = last + "_fancy"


def _bad_attribute(model) -> None:
    node = next(n for n in model.graph.node if n.domain == "ai.tvmopt")
    attr = next(a for a in node.attribute if a.name == "in_features")
    attr.i += 3


def _records_with(d: Path, lines: list[str]) -> str:
    from tvmopt.target import parse_target

    records = d / "recs"
    records.mkdir(exist_ok=True)
    (records / f"{parse_target('llvm').key}.jsonl").write_text("".join(ln + "\n" for ln in lines))
    return str(records)


def _record_line(**changes) -> str:
    from tvmopt.records.store import Record
    from tvmopt.target import parse_target

    base = Record("gemm:8x8x8", parse_target("llvm").key, ((8, 1, 1, 1), (8, 1, 1, 1), (8, 1), 0, 0, 0), (1e-5,))
    line = json.loads(base.to_line())
    line.update(changes)
    return json.dumps(line)


def _npy(d: Path, name: str, array) -> str:
    path = d / name
    np.save(path, array)
    return str(path)


def _built_module(d: Path) -> str:
    """A small built module, made once for all the cases that share ``d``'s parent."""
    so = d.parent / "shared-module" / "mlp.so"
    if not so.exists():
        so.parent.mkdir(parents=True, exist_ok=True)
        outcome = run_cli(["build", _model(), "-o", str(so)], so.parent)
        if outcome.returncode != 0:
            raise RuntimeError(f"could not build the module the run cases need: {outcome.stderr[-300:]}")
    return str(so)


def _unwritable_records(d: Path) -> str:
    blocker = d / "a-file"
    blocker.write_text("x")
    return str(blocker / "records")


_TUNE = ["tune", "gemm:8x8x8", "--trials", "2", "--no-compare", "--quiet"]

BAD_INPUTS: list[BadInput] = [
    BadInput("missing model file", lambda d: ["build", str(d / "missing.onnx"), "-o", str(d / "o.so")],
             "model file not found", ("o.so", "o.so.json")),
    BadInput("directory instead of a file", lambda d: ["inspect", str(d)], "is a directory"),
    BadInput("empty file", lambda d: ["build", _write(d / "empty.onnx", b""), "-o", str(d / "o.so")],
             "holds no graph nodes", ("o.so",)),
    BadInput("random bytes", lambda d: ["build", _write(d / "r.onnx", random.Random(1).randbytes(4096)),
                                        "-o", str(d / "o.so")], "cannot read", ("o.so",)),
    BadInput("truncated ONNX", lambda d: ["build", _write(d / "t.onnx", Path(_model()).read_bytes()[:3000]),
                                          "-o", str(d / "o.so")], "cannot read", ("o.so",)),
    BadInput("valid ONNX with an unsupported op", lambda d: ["build", _onnx_with(d, "u.onnx", _unsupported_op),
                                                             "-o", str(d / "o.so")],
             "unsupported operator(s): FancyNewOp", ("o.so", "o.so.json")),
    BadInput("ai.tvmopt node with inconsistent attributes",
             lambda d: ["build", _onnx_with(d, "a.onnx", _bad_attribute), "-o", str(d / "o.so")],
             "in_features=67 but the input has shape", ("o.so", "o.so.json")),
    BadInput("output that is not a .so", lambda d: ["build", _model(), "-o", str(d / "o.bin")], "must be a .so",
             ("o.bin",)),
    BadInput("unwritable output directory", lambda d: ["build", _model(), "-o", _unwritable_records(d) + "/o.so"],
             "cannot create the output directory"),
    BadInput("run: input of the wrong shape",
             lambda d: ["run", _built_module(d), "--input", _npy(d, "x.npy", np.zeros((1, 64), np.float32)),
                        "--output", str(d / "y.npy")], "differs from the module's", ("y.npy",)),
    BadInput("run: input of the wrong dtype",
             lambda d: ["run", _built_module(d), "--input", _npy(d, "x.npy", np.zeros((1, 1, 8, 8), np.int64))],
             "holds int64; the module takes float32"),
    BadInput("run: input that is not .npy",
             lambda d: ["run", _built_module(d), "--input", _write(d / "x.npy", b"not numpy")], "cannot read input"),
    BadInput("run: module that is not a TVM library",
             lambda d: ["run", _write(d / "fake.so", b"\x7fELF garbage")], "cannot load"),
    BadInput("unknown target", lambda d: [*_TUNE, "--target", "vulkan"], "unknown target kind 'vulkan'"),
    BadInput("malformed target (JSON)", lambda d: [*_TUNE, "--target", "{bad"], "is not valid JSON"),
    BadInput("malformed target (CPU)", lambda d: [*_TUNE, "--target", "llvm -mcpu=nope"], "unknown LLVM CPU"),
    BadInput("CUDA build with a CPU-only kernel policy",
             lambda d: ["build", _model(), "-o", str(d / "o.so"), "--target", "cuda", "--kernels", "measure"],
             "times kernels on this machine's CPU", ("o.so",)),
    BadInput("zero --trials", lambda d: ["tune", "gemm:8x8x8", "--trials", "0"], "must be at least 1"),
    BadInput("negative --trials", lambda d: ["tune", "gemm:8x8x8", "--trials", "-4"], "must be at least 1"),
    BadInput("huge --trials", lambda d: ["tune", "gemm:8x8x8", "--trials", str(10**15)], "more than 1,000,000"),
    BadInput("unwritable records directory", lambda d: [*_TUNE, "--records", _unwritable_records(d)],
             "cannot create records directory"),
    BadInput("records file with corrupt lines",
             lambda d: [*_TUNE, "--records", _records_with(d, [_record_line(), "{torn", "\x00\x01"])],
             "2 unreadable"),
    BadInput("records from another TVM version",
             lambda d: ["build", _model(), "-o", str(d / "o.so"), "--records",
                        _records_with(d, [_record_line(tvm="0.18.0")])], "measured with TVM 0.18.0", ("o.so",)),
    BadInput("records of another target in the file",
             lambda d: [*_TUNE, "--records", _records_with(d, [_record_line(target="cuda-sm_80")])],
             "of target 'cuda-sm_80'"),
    BadInput("unknown workload", lambda d: [*_TUNE[:1], "matmul:8x8x8"], "unknown workload family"),
    # real exports and deployments (issue 23)
    BadInput("run: truncated module (1,000 bytes)", lambda d: ["run", _truncated_module(d, 1000)], "it is damaged"),
    BadInput("run: truncated module (20,000 bytes)", lambda d: ["run", _truncated_module(d, 20000)], "it is damaged"),
    BadInput("run: truncated module without its .json",
             lambda d: ["run", _truncated_module(d, 20000, meta=False)], "it is damaged"),
    BadInput("run: corrupt .so.json", lambda d: ["run", _module_with_meta(d, b"{not json")], ".so.json is damaged"),
    BadInput("run: a shared library that is not a tvmopt module",
             lambda d: ["run", _copy(_a_system_library(), d / "libm.so")], "not a module written by 'tvmopt build'"),
    BadInput("build --records that does not exist",
             lambda d: ["build", _model(), "-o", str(d / "o.so"), "--records", str(d / "typo_dir")],
             "does not exist", ("o.so",)),
    BadInput("records --records naming a file", lambda d: ["records", "--records", _write(d / "f.txt", "x")],
             "is a file"),
    BadInput("tune for another CPU, measured here", lambda d: [*_TUNE, "--target", f"llvm -mcpu={_other_cpu()}"],
             "would be filed under"),
    BadInput("tune for more cores than this machine has",
             lambda d: [*_TUNE, "--target", "llvm -num-cores=4096"], "would be filed under"),
    BadInput("workload over int32 indexing", lambda d: [*_TUNE[:1], "gemm:99999x99999x99999"], "int32 indexing"),
    BadInput("ONNX opset that does not exist", lambda d: ["inspect", _onnx_with(d, "o30.onnx", _opset(30))],
             "newer than any"),
    BadInput("JSON target with a number as mcpu", lambda d: [*_TUNE, "--target", '{"kind": "llvm", "mcpu": 5}'],
             "mcpu must be a CPU name"),
    BadInput("records line whose config is a string",
             lambda d: [*_TUNE, "--records", _records_with(d, [_record_line(config="hello")])], "1 unreadable"),
]


def _truncated_module(d: Path, size: int, meta: bool = True) -> str:
    built = Path(_built_module(d))
    path = d / "cut.so"
    path.write_bytes(built.read_bytes()[:size])
    if meta:
        (d / "cut.so.json").write_text(Path(str(built) + ".json").read_text())
    return str(path)


def _module_with_meta(d: Path, meta: bytes) -> str:
    path = d / "m.so"
    path.write_bytes(Path(_built_module(d)).read_bytes())
    (d / "m.so.json").write_bytes(meta)
    return str(path)


def _copy(source: Path, dest: Path) -> str:
    dest.write_bytes(source.read_bytes())
    return str(dest)


def _a_system_library() -> Path:
    """A real shared library that is no TVM module (libm, found through ctypes)."""
    import ctypes.util

    name = ctypes.util.find_library("m") or "libm.so.6"
    for folder in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"):
        if (Path(folder) / name).exists():
            return Path(folder) / name
    raise RuntimeError("no libm found")


def _other_cpu() -> str:
    """An LLVM CPU name that is not this machine's."""
    from tvmopt.target import host_llvm_config

    here = host_llvm_config()["mcpu"]
    return next(cpu for cpu in ("znver3", "skylake-avx512", "haswell") if cpu != here)


def _opset(version: int):
    def edit(model) -> None:
        for opset in model.opset_import:
            if opset.domain in ("", "ai.onnx"):
                opset.version = version
    return edit


def check_bad_input(case: BadInput, directory: Path) -> str | None:
    """Run one case in an empty ``directory``; why it failed the contract, or None."""
    directory.mkdir(parents=True, exist_ok=True)
    argv = case.make(directory)
    before = set(os.listdir(directory))
    outcome = run_cli(argv, directory, timeout=300)
    if outcome.returncode != 2:
        return f"exit {outcome.returncode} (expected 2): {outcome.stderr.strip()[-300:]!r}"
    problem = outcome.problem()
    if problem:
        return problem
    if case.needle not in outcome.error_line:
        return f"error line lacks {case.needle!r}: {outcome.error_line!r}"
    left = [name for name in case.must_not_exist if (directory / name).exists()]
    stray = [name for name in set(os.listdir(directory)) - before if name.startswith(".")]
    if left or stray:
        return f"left files behind: {left + stray}"
    return None


# --------------------------------------------------------------------------- fuzzing ONNX models

MUTATIONS = ("flip", "truncate", "shuffle_nodes", "swap_inputs", "change_op", "drop_initializer",
             "reshape_initializer", "input_dims", "int_attribute", "initializer_dtype", "drop_node",
             "duplicate_output")


def mutate(data: bytes, seed: int) -> tuple[str, bytes]:
    """A seeded mutation of a serialized ONNX model: (kind, new bytes). Byte-level kinds make
    unreadable files; protobuf-level kinds make readable models that break some invariant."""
    rng = random.Random(seed)
    kind = MUTATIONS[seed % len(MUTATIONS)]
    if kind == "flip":
        out = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        return kind, bytes(out)
    if kind == "truncate":
        return kind, data[: rng.randrange(1, len(data))]
    import onnx

    model = onnx.load_from_string(data)
    graph = model.graph
    nodes = list(graph.node)
    inits = list(graph.initializer)
    if kind == "shuffle_nodes":
        rng.shuffle(nodes)
        _set(graph.node, nodes)
    elif kind == "swap_inputs":
        a, b = rng.sample(range(len(nodes)), 2) if len(nodes) > 1 else (0, 0)
        if nodes[a].input and nodes[b].input:
            i, j = rng.randrange(len(nodes[a].input)), rng.randrange(len(nodes[b].input))
            nodes[a].input[i], nodes[b].input[j] = nodes[b].input[j], nodes[a].input[i]
    elif kind == "change_op":
        node = rng.choice(nodes)
        node.op_type = rng.choice(sorted(({n.op_type for n in nodes} | {"Relu", "MatMul", "Conv", "Sign"})
                                         - {node.op_type}))
    elif kind == "drop_initializer" and inits:
        victim = rng.randrange(len(inits))
        _set(graph.initializer, inits[:victim] + inits[victim + 1:])
    elif kind == "reshape_initializer" and inits:
        t = rng.choice([t for t in inits if t.dims] or inits)
        dims = list(t.dims) or [1]
        i = rng.randrange(len(dims))
        dims[i] = rng.choice([dims[i] * 2, 0, max(1, dims[i] - 1), 10**9])
        rng.shuffle(dims)
        del t.dims[:]
        t.dims.extend(dims)
    elif kind == "input_dims":
        dims = graph.input[0].type.tensor_type.shape.dim
        if dims:
            d = dims[rng.randrange(len(dims))]
            d.dim_value = rng.choice([0, 7, 3, 10**9])
    elif kind == "int_attribute":
        attrs = [a for n in nodes for a in n.attribute if a.type in (onnx.AttributeProto.INT, onnx.AttributeProto.INTS)]
        if attrs:
            a = rng.choice(attrs)
            value = rng.choice([0, -1, 3, 2**31 - 1, -(2**31)])
            if a.type == onnx.AttributeProto.INT:
                a.i = value
            elif a.ints:
                a.ints[rng.randrange(len(a.ints))] = value
    elif kind == "initializer_dtype" and inits:
        t = rng.choice(inits)
        t.data_type = rng.choice([d for d in (onnx.TensorProto.INT8, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
                                              onnx.TensorProto.INT64) if d != t.data_type])
    elif kind == "drop_node" and len(nodes) > 1:
        del graph.node[rng.randrange(len(nodes))]
    elif kind == "duplicate_output" and len(nodes) > 1:
        a, b = rng.sample(range(len(nodes)), 2)
        if nodes[a].output and nodes[b].output:
            nodes[a].output[0] = nodes[b].output[0]
    return kind, model.SerializeToString()


def _set(repeated, items) -> None:
    copies = [type(x)() for x in items]
    for c, x in zip(copies, items):
        c.CopyFrom(x)
    del repeated[:]
    repeated.extend(copies)


@dataclass
class FuzzCase:
    seed: int
    model: str
    kind: str
    command: str
    outcome: Outcome

    @property
    def problem(self) -> str | None:
        return self.outcome.problem()


def fuzz(directory: Path, seeds, commands=("inspect", "build"), timeout: float = 180,
         models=FUZZ_MODELS, on_case=None, jobs: int = 1) -> list[FuzzCase]:
    """Mutate the bundled models (seed i mutates ``models[i % len]``) and run each command on
    each mutant, ``jobs`` mutants at a time. ``build`` is skipped for a mutant ``inspect``
    refused (it would stop at the same import error)."""
    from concurrent.futures import ThreadPoolExecutor

    directory.mkdir(parents=True, exist_ok=True)
    lock = threading.Lock()

    def one(seed) -> list[FuzzCase]:
        model = models[seed % len(models)]
        kind, data = mutate((MODELS / model).read_bytes(), seed)
        path = directory / f"m{seed}.onnx"
        path.write_bytes(data)
        refused, out = False, []
        for command in commands:
            if command == "build" and refused:
                continue
            argv = [command, str(path)] + (["-o", str(directory / f"m{seed}.so")] if command == "build" else [])
            outcome = run_cli(argv, directory, timeout=timeout)
            refused = refused or outcome.returncode == 2
            out.append(FuzzCase(seed, model, kind, command, outcome))
            if on_case is not None:
                with lock:
                    on_case(out[-1])
        return out

    with ThreadPoolExecutor(max(1, jobs)) as pool:
        return [case for cases in pool.map(one, list(seeds)) for case in cases]


# --------------------------------------------------------------------------- killed and concurrent runs

def records_file(records: Path) -> Path:
    from tvmopt.target import parse_target

    return records / f"{parse_target('llvm').key}.jsonl"


def reported_configs(stdout: str) -> list[str]:
    """The configs a ``tune --verbose`` run reported as recorded, as compact JSON strings."""
    return [line.split("config=", 1)[1].strip() for line in stdout.splitlines()
            if line.startswith("recorded ") and "config=" in line]


@dataclass
class FileCheck:
    lines: int = 0
    invalid: int = 0
    configs: list[str] = field(default_factory=list)      # compact JSON, in file order

    @property
    def duplicates(self) -> int:
        return len(self.configs) - len(set(self.configs))


def check_records_file(path: Path, workload: str, tuner: str | None = None) -> FileCheck:
    """Every line parsed as JSON: how many are invalid, and the configs of ``workload`` that
    tuning measured (``remeasure`` lines re-time configs already there and are left out)."""
    check = FileCheck()
    if not path.exists():
        return check
    for line in path.read_text(errors="replace").splitlines():
        check.lines += 1
        try:
            d = json.loads(line)
        except ValueError:
            check.invalid += 1
            continue
        if d.get("tuner") == "remeasure":
            continue
        if d.get("workload") == workload and (tuner is None or d.get("tuner") == tuner):
            check.configs.append(json.dumps(d["config"], separators=(",", ":")))
    return check


def _tune_argv(workload: str, trials: int, records: Path, seed: int = 0, tuner: str = "random") -> list[str]:
    return ["tune", workload, "--trials", str(trials), "--records", str(records), "--tuner", tuner,
            "--seed", str(seed), "--batch-size", "4", "--no-compare", "--verbose"]


@dataclass
class KillResult:
    seed: int
    trials: int
    killed_after_s: float     # after the first reported measurement
    reported_before_kill: int
    lost: int                 # reported by the killed run, missing from the file
    invalid_lines: int
    duplicates: int           # configs measured twice after the resume
    final_trials: int         # this tuner's records after the resume
    resume_ok: bool
    orphans: int              # worker processes of the killed run still alive a moment later


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:   # a zombie is dead for our purpose
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def kill_and_resume(directory: Path, seed: int, workload: str = "gemm:48x48x32", trials: int = 40,
                    window: float = 5.0) -> KillResult:
    """Start ``tvmopt tune --verbose``; once it has reported its first measurement, wait a
    seeded random time in [0, ``window``] seconds and ``kill -9`` it (mid-build, mid-run or
    mid-write); check the file, resume to the full budget and check again."""
    directory.mkdir(parents=True, exist_ok=True)
    records = directory / f"kill{seed}"
    env = cli_env(records)
    delay = random.Random(seed).uniform(0.0, window)
    proc = subprocess.Popen([sys.executable, "-m", "tvmopt", *_tune_argv(workload, trials, records)], cwd=directory,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines: list[str] = []
    first = threading.Event()

    def read():
        for line in iter(proc.stdout.readline, ""):
            lines.append(line)
            if line.startswith("recorded "):
                first.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    first.wait(timeout=300)
    time.sleep(delay)
    children = _children(proc.pid)
    proc.kill()                                      # SIGKILL: no handler, no cleanup
    proc.wait()
    reader.join(timeout=5)
    time.sleep(1.0)
    orphans = [c for c in children if _alive(c)]
    for c in orphans:
        os.kill(c, signal.SIGKILL)
    reported = reported_configs("".join(lines))
    after_kill = check_records_file(records_file(records), workload)
    lost = len(set(reported) - set(after_kill.configs))
    resumed = run_cli(_tune_argv(workload, trials, records), directory, env=env, timeout=600)
    final = check_records_file(records_file(records), workload, "random")
    return KillResult(seed, trials, round(delay, 2), len(reported), lost, after_kill.invalid + final.invalid,
                      final.duplicates, len(final.configs), resumed.returncode == 0, len(orphans))


@dataclass
class ConcurrentResult:
    processes_ok: int
    reported: int
    lost: int
    invalid_lines: int
    records: int


def concurrent_tunes(directory: Path, workload: str = "gemm:32x32x32", trials: int = 8) -> ConcurrentResult:
    """Two ``tvmopt tune`` processes (different tuners and seeds) appending to one records file
    at the same time; every measurement either reports must be in the file, every line valid."""
    directory.mkdir(parents=True, exist_ok=True)
    records = directory / "shared"
    env = cli_env(records)
    procs = [subprocess.Popen([sys.executable, "-m", "tvmopt", *_tune_argv(workload, trials, records, seed, tuner)],
                              cwd=directory, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for seed, tuner in ((1, "random"), (2, "gbfs"))]
    outs = [p.communicate(timeout=600) for p in procs]
    reported = [c for out, _ in outs for c in reported_configs(out)]
    check = check_records_file(records_file(records), workload)
    # a config both tuners happened to measure is reported twice and in the file twice
    lost = sum(max(0, reported.count(c) - check.configs.count(c)) for c in set(reported))
    return ConcurrentResult(sum(p.returncode == 0 for p in procs), len(reported), lost, check.invalid,
                            len(check.configs))
