"""The prepared GPU check (issue 21, item 4): build here, run on a GPU machine that has no TVM
and no network, bring the results back.

    python benchmarks/cuda_device.py prepare .bench/cuda_device [--arch sm_90]   # here (no GPU)
    python3 cuda_device.py run DIR --out RESULTS_DIR                                # there: DIR carried
    python benchmarks/cuda_device.py ingest RESULTS_DIR/cuda_device.json          # here again
    python benchmarks/cuda_device.py prepare DIR --cpu && python3 DIR/cuda_device.py run DIR --device cpu
                                                                      # the whole path checked on a CPU

On this project's device machine (the ``device`` tool's ``run``)::

    run(command="python3 .bench/cuda_device/cuda_device.py run .bench/cuda_device --out $OUT",
        carry=[".bench/cuda_device"])

``prepare`` writes a directory of at most 64 MiB: TVM's runtime alone (``libtvm_runtime.so``,
``libtvm_runtime_cuda.so``, the ``tvm_ffi`` package, CUDA's ``libcudart``; not TVM's compiler
or Python package), this script, and ``cases/``:

- each bundled digits model built for CUDA (``tvmopt build --target cuda``: the build's own
  kernel choice) and, for the compressed ones, built again with ``--kernels compressed`` (every
  layer with a CUDA kernel on it), with its input, onnxruntime's output on the CPU and the
  PyTorch model as TorchScript;
- a one-node MatMul model of 4096^3 (DLight's Matmul rule), whose inputs the run draws on the GPU;
- single kernels through tvmopt's CUDA spaces (``KERNELS``; the space's start, or the best CUDA
  record where ``logs/records`` has one), each a Relax module of one ``call_tir``: GEMM, XNOR,
  binary decode, Hadamard (FWHT) and Fastfood, Fastfood and FWHT with and without warp
  shuffles. ``check`` cases carry their inputs and numpy's output; the large ``time`` cases
  carry their small inputs only (a Fastfood permutation) and the run draws the rest on the GPU
  (random bits are valid packed weights), checked by the ``check`` case of the same kernel.
  Each kernel is timed against the dense product of its shape in cuBLAS (``torch.matmul``).

``run`` uses numpy, torch (CUDA) and the carried runtime only: it loads each module through
``tvm_ffi`` and the Relax VM's own functions (``vm_load_executable``, ``vm_initialization``),
checks every output against its reference (the carried one; the GEMM against ``torch.matmul``
on the same inputs) and times the module against PyTorch on the same GPU (CUDA events, median
of rounds). It writes ``cuda_device.json``.

``ingest`` (here, with tvmopt) turns that JSON into the ``cuda_device`` section of BENCHMARKS.md
and the kernels' timings into CUDA records (``logs/records/cuda-<arch>.jsonl``, appended), so
builds for that GPU use the measured configs and the kernel choice reads them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

#: what a GPU run may carry
CARRY_LIMIT = 64 << 20
#: the GEMM case's size on a GPU, and in a check on a CPU (``--cpu``)
GEMM, CPU_GEMM = 4096, 256
ROUNDS = 7
#: single kernels: (task key, CUDA config overrides, "check" | "time"); ``--cpu`` shrinks 4096 to
#: 512 and 128 rows to 16, and builds each task's LLVM start instead
KERNELS = (("gemm:256x256x256", {}, "check"), ("gemm:4096x4096x4096", {}, "time"),
           ("xnor_dense:128x4096x4096", {}, "check"), ("xnor_dense:4096x4096x4096", {}, "time"),
           ("binary_dense:1x4096x4096", {}, "check"), ("binary_dense:16x4096x4096", {}, "check"),
           ("binary_dense:4096x4096x4096", {}, "time"),
           ("hadamard:128x4096x4096", {}, "check"), ("hadamard:128x4096x4096", {"shuffle": False}, "check"),
           ("hadamard:4096x4096x4096", {}, "time"),
           ("fastfood:128x4096x4096", {}, "check"), ("fastfood:128x4096x4096", {"shuffle": False}, "check"),
           ("fastfood:4096x4096x4096", {}, "time"))
#: inputs of ``time`` cases up to this size are carried (a permutation must be one); larger are drawn
CARRY_INPUT = 1 << 16


# ---------------------------------------------------------------- prepare (here, with tvmopt)
def prepare(out: Path, arch: str, cpu: bool, only: list[str] | None = None) -> dict:
    import numpy as np
    import onnxruntime as ort
    import torch

    import tvm
    import tvm_ffi

    from tvmopt.build.compile import best_configs
    from tvmopt.build.deploy import build
    from tvmopt.passes import DetectOptions
    from tvmopt.target import parse_target
    from tvmopt.testing.digits import load_model

    root = Path(__file__).resolve().parent.parent
    if out.exists():
        shutil.rmtree(out)
    (out / "runtime" / "lib").mkdir(parents=True)
    lib = Path(tvm.__file__).parent / "lib"
    for name in ("libtvm_runtime.so", "libtvm_runtime_cuda.so"):
        shutil.copy2(lib / name, out / "runtime" / "lib" / name)
    cudart = next((p for p in sorted(Path("/usr/local").glob("cuda*/lib64/libcudart.so.*")) if p.suffix != ".a"), None)
    if cudart is not None:
        shutil.copy2(cudart, out / "runtime" / "lib" / cudart.name)
    shutil.copytree(Path(tvm_ffi.__file__).parent, out / "runtime" / "tvm_ffi",
                    ignore=shutil.ignore_patterns("__pycache__", "*.a", "include", "cmake"))
    import typing_extensions
    shutil.copy2(typing_extensions.__file__, out / "runtime" / "typing_extensions.py")
    shutil.copy2(__file__, out / "cuda_device.py")

    target = "llvm" if cpu else f"cuda -arch={arch}"
    cases = []
    models = root / "examples" / "models"
    meta = json.loads((models / "digits.json").read_text())
    bundled = [p for p in sorted(models.glob("digits_*.onnx")) if not p.name.endswith(".plain.onnx")]
    unknown = sorted(set(only or ()) - {p.stem for p in bundled})
    if unknown:
        raise SystemExit(f"--only: no bundled model named {', '.join(unknown)} in {models}")
    for path in bundled:
        if only and path.stem not in only:
            continue
        name = path.stem
        case = out / "cases" / name
        case.mkdir(parents=True)
        plain = path.with_name(f"{name}.plain.onnx")
        sess = ort.InferenceSession(str(plain if plain.exists() else path), providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        shape = [d if isinstance(d, int) else 1 for d in inp.shape]
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        np.save(case / "input.npy", x)
        np.save(case / "expected.npy", sess.run(None, {inp.name: x})[0])
        build(path, case / "model.so", target=target, records=case / "no-records")
        if "fp32" not in name:             # the same model with every layer on its compressed kernel
            build(path, case / "compressed.so", target=target, records=case / "no-records",
                  options=DetectOptions(kernels="compressed"))
        _, arch_name, variant = name.split("_", 2)
        variant = variant.replace("nm24", "nm2:4")       # file names spell N:M without the colon
        pt = models / f"{name}.pt"
        if pt.exists():
            with torch.no_grad():
                traced = torch.jit.trace(load_model(arch_name, variant, pt), torch.from_numpy(x))
            traced.save(str(case / "torch.pt"))
        cases.append({"name": name, "kind": "model", "dir": f"cases/{name}"})
        if (case / "compressed.so").exists():
            cases.append({"name": f"{name} --kernels compressed", "kind": "model", "dir": f"cases/{name}",
                          "module": "compressed.so"})
    # one MatMul of n^3: inputs drawn on the device by the run
    n = CPU_GEMM if cpu else GEMM
    gemm = out / "cases" / f"gemm_{n}"
    gemm.mkdir(parents=True)
    onnx_path = gemm / "gemm.onnx"
    _matmul_onnx(onnx_path, n)
    build(onnx_path, gemm / "model.so", target=target, records=gemm / "no-records")
    onnx_path.unlink()
    cases.append({"name": f"gemm_{n}x{n}x{n}", "kind": "gemm", "dir": f"cases/gemm_{n}", "n": n})
    carried: dict[str, str] = {}           # key -> the case directory holding its inputs
    configs = best_configs(parse_target(target), None)      # the records, read once for every kernel
    for key, overrides, mode in KERNELS:
        if cpu and overrides:              # CUDA knobs (warp shuffles): nothing to vary on a CPU
            continue
        cases.append(_kernel_case(out, _shrunk(key) if cpu else key, overrides, mode, target, cpu, carried,
                                  configs))
    for leftover in out.glob("cases/*/no-records"):
        shutil.rmtree(leftover, ignore_errors=True)
    manifest = {"device": "cpu" if cpu else "cuda", "target": target, "cases": cases,
                "prepared": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "digits_models_trained": meta.get("machine")}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    if size > CARRY_LIMIT:
        raise SystemExit(f"{out}: {size / 2**20:.1f} MiB is more than the {CARRY_LIMIT >> 20} MiB a GPU run may carry")
    print(f"prepared {out}: {len(cases)} cases, {size / 2**20:.1f} MiB")
    return manifest


def _shrunk(key: str) -> str:
    """A kernel case's key for the ``--cpu`` check: 4096 -> 512, 128 rows -> 16."""
    family, dims = key.split(":")
    dims = [512 if d == "4096" else 16 if d == "128" else int(d) for d in dims.split("x")]
    return f"{family}:" + "x".join(str(d) for d in dims)


def _kernel_case(out: Path, key: str, overrides: dict, mode: str, target: str, cpu: bool,
                 carried: dict[str, str], configs) -> dict:
    """One kernel as a Relax module of one ``call_tir`` (its inputs the module's parameters), with
    what the run needs to feed, check and time it. A second case of the same key (another
    config) reads the first one's inputs (``carried``: key -> its directory). ``configs``:
    :func:`~tvmopt.build.compile.best_configs`'s (lookup, used) for the target."""
    import numpy as np

    import tvm
    from tvm import relax

    from tvmopt.ops.task import cuda_task, get_task
    from tvmopt.schedules import isa
    from tvmopt.target import parse_target

    spec = parse_target(target)
    tvm_target = spec.tvm_target()
    shape_isa = isa.for_target(spec) if cpu else isa.AVX2
    with isa.use(shape_isa):
        task = get_task(key)
        rng = np.random.default_rng(0)
        inputs = task.make_inputs(rng)
        expected = task.reference(inputs) if mode == "check" else None
        lookup, used = configs
        if cpu:
            space, config = task.space, lookup(key, task.space) or task.space.initial()
            func = task.primfunc(config)
        else:
            view = cuda_task(task)
            space = view.space
            config = lookup(key, space) or space.initial()
            config = space.replaced(config, overrides) if overrides else config
            func = view.schedule(config)["main"]
        out_shape = expected.shape if expected is not None else [int(d) for d in task.compute()[-1].shape]
    params = [relax.Var(f"in{i}", relax.TensorType(a.shape, str(a.dtype))) for i, a in enumerate(inputs)]
    bb = relax.BlockBuilder()
    with bb.function("main", params):
        kernel = bb.add_func(func.with_attr("tirx.is_scheduled", True).with_attr("global_symbol", "kernel"), "kernel")
        bb.emit_func_output(bb.emit(relax.call_tir(kernel, params, relax.TensorType(out_shape, "float32"))))
    if cpu:
        from tvmopt.build.compile import _after_scheduling

        pipeline = _after_scheduling(spec)
    else:
        from tvmopt.build.gpu import relax_pipeline

        pipeline = relax_pipeline(tvm_target)
    suffix = "".join(f"_{k}-{v}" for k, v in sorted(overrides.items()))
    name = key.replace(":", "_") + suffix
    where = out / "cases" / name
    where.mkdir(parents=True)
    with tvm.transform.PassContext(opt_level=3):
        tvm.compile(bb.get(), tvm_target, relax_pipeline=pipeline).export_library(str(where / "model.so"))
    feeds, shared = [], carried.get(key)
    data = f"../{shared}/" if shared else ""
    for i, a in enumerate(inputs):
        if mode == "check" or a.nbytes <= CARRY_INPUT:
            if not shared:
                np.save(where / f"in{i}.npy", a)
            feeds.append({"file": f"{data}in{i}.npy"})
        else:
            feeds.append({"shape": list(a.shape), "dtype": str(a.dtype)})
    if expected is not None and not shared:
        np.save(where / "expected.npy", expected.astype(np.float32))
    carried.setdefault(key, name)
    emulated = _emulate(func, inputs, expected, task) if expected is not None and not cpu else None
    rows, reduction = int(np.prod(inputs[0].shape[:-1])), int(inputs[0].shape[-1])
    return {"name": key + "".join(f" {k}={v}" for k, v in sorted(overrides.items())), "kind": "kernel",
            "mode": mode, "dir": f"cases/{name}", "expected": f"{data}expected.npy", "key": key, "config": list(config), "space": space.fingerprint(),
            "config_from": used.get(key) or "start", "emulated_on_cpu": emulated, "feeds": feeds, "flops": task.flops,
            "dense": [rows, reduction, int(np.prod(out_shape)) // rows]}


def _emulate(func, inputs, expected, task) -> str:
    """The CUDA kernel run with its thread loops serial on this CPU
    (:mod:`tvmopt.testing.cuda_emulation`) against numpy: a wrong kernel stops ``prepare``
    before a GPU is spent on it. Warp shuffles have no serial meaning and are not emulated."""
    import numpy as np

    import tvm
    from tvmopt.testing.cuda_emulation import serialize

    text = func.script()
    if "tvm_warp_shuffle" in text:
        return "not emulated (warp shuffles)"
    lib = tvm.compile(tvm.IRModule({"main": serialize(func).with_attr("global_symbol", "main")}), "llvm")
    args = [tvm.runtime.tensor(a) for a in inputs] + [tvm.runtime.tensor(np.zeros(expected.shape, np.float32))]
    lib["main"](*args)
    got = args[-1].numpy()
    rtol, atol = task.tolerance()
    if not np.allclose(got, expected, rtol=rtol, atol=atol):
        raise SystemExit(f"{task.key}: the CUDA kernel, emulated on this CPU, differs from numpy by up to "
                         f"{float(np.abs(got - expected).max()):.3g}")
    return f"matches numpy (max abs. err {float(np.abs(got - expected).max()):.1e})"


def _matmul_onnx(path: Path, n: int) -> None:
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("MatMul", ["a", "b"], ["c"])
    graph = helper.make_graph([node], "gemm", [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n]),
                                               helper.make_tensor_value_info("b", TensorProto.FLOAT, [n, n])],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


# ---------------------------------------------------------------- run (there: numpy, torch, the carried runtime)
def _runtime(directory: Path, device: str):
    """tvm_ffi with TVM's runtime loaded from ``directory/runtime`` (CUDA's device API too)."""
    import ctypes

    sys.path.insert(0, str(directory / "runtime"))
    lib = directory / "runtime" / "lib"
    import tvm_ffi

    for cudart in sorted(lib.glob("libcudart.so.*")) if device == "cuda" else ():
        ctypes.CDLL(str(cudart), ctypes.RTLD_GLOBAL)
    ctypes.CDLL(str(lib / "libtvm_runtime.so"), ctypes.RTLD_GLOBAL)
    if device == "cuda":
        ctypes.CDLL(str(lib / "libtvm_runtime_cuda.so"), ctypes.RTLD_GLOBAL)
    return tvm_ffi


class VM:
    """A Relax VM over a module written by ``tvmopt build``, through TVM's runtime functions."""

    KDL = {"cpu": 1, "cuda": 2}

    def __init__(self, ffi, path: Path, device: str):
        self.ffi = ffi
        self.module = ffi.load_module(str(path))
        self.vm = self.module["vm_load_executable"]()
        args = [self.KDL[device], 0, 2]            # the device, the pooled allocator
        if device != "cpu":
            args += [self.KDL["cpu"], 0, 2]        # the host, for shape functions
        self.vm["vm_initialization"](*args)
        self.main = self.vm["main"]

    def __call__(self, *tensors):
        return self.main(*(self.ffi.from_dlpack(_aligned(t)) for t in tensors))


def _aligned(t):
    """``t`` at a 64-byte aligned address, as TVM's kernels assume (their vector loads on a CPU
    fault otherwise; CUDA allocations are aligned already)."""
    import torch

    if t.device.type != "cpu" or t.data_ptr() % 64 == 0:
        return t
    nbytes = t.numel() * t.element_size()
    raw = torch.empty(nbytes + 64, dtype=torch.uint8)
    start = (-raw.data_ptr()) % 64
    out = raw[start:start + nbytes].view(t.dtype).view(t.shape)
    out.copy_(t)
    return out


def _timed(fn, sync, rounds: int = ROUNDS, calls: int = 20) -> list[float]:
    """Seconds per call, one figure per round (``calls`` calls, synchronized at both ends)."""
    fn()
    sync()
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        out.append((time.perf_counter() - start) / calls)
    return out


def _feed(where: Path, feed: dict, dev):
    """A kernel input: carried (``file``), or drawn on the device (``shape``, ``dtype``): normal
    floats, or random bits for packed weights (any bits are a valid packed weight)."""
    import numpy as np
    import torch

    if "file" in feed:
        return torch.from_numpy(np.load(where / feed["file"])).to(dev)
    gen = torch.Generator(device=dev).manual_seed(2)
    shape, dtype = feed["shape"], feed["dtype"]
    if dtype.startswith("float"):
        return torch.randn(*shape, device=dev, generator=gen)
    bits = {"uint8": 8, "int8": 8, "int32": 32, "uint32": 32}[dtype]
    low, high = (-(1 << 31), (1 << 31) - 1) if bits == 32 else (0, 255)
    drawn = torch.randint(low, high, shape, device=dev, generator=gen, dtype=torch.int32 if bits == 32 else torch.uint8)
    return drawn.view(getattr(torch, dtype)) if dtype in ("uint32", "int8") else drawn


def run(directory: Path, out: Path, device: str) -> dict:
    import numpy as np
    import torch

    manifest = json.loads((directory / "manifest.json").read_text())
    if manifest["device"] != device:
        raise SystemExit(f"{directory} holds {manifest['device']} modules; run it with --device {manifest['device']}")
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device visible to torch")
    ffi = _runtime(directory, device)
    dev = torch.device(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    results = []
    for case in manifest["cases"]:
        where = directory / case["dir"]
        row = {"case": case["name"], "kind": case["kind"]}
        try:
            vm = VM(ffi, where / case.get("module", "model.so"), device)
            if case["kind"] == "kernel":
                inputs = [_feed(where, f, dev) for f in case["feeds"]]
                got = torch.from_dlpack(vm(*inputs))
                expected = where / case.get("expected", "expected.npy")
                want = torch.from_numpy(np.load(expected)).to(dev) if case["mode"] == "check" else None
                ours = _timed(lambda: vm(*inputs), sync)
                m, k, n = case["dense"]
                gen = torch.Generator(device=dev).manual_seed(1)
                a = torch.randn(m, k, device=dev, generator=gen)
                b = torch.randn(k, n, device=dev, generator=gen)
                ref = _timed(lambda: torch.matmul(a, b), sync)
                row.update(key=case["key"], config=case["config"], space=case["space"], mode=case["mode"],
                           config_from=case["config_from"], flops=case["flops"], seconds=ours,
                           reference=f"dense {m}x{k} @ {k}x{n} in torch.matmul"
                                     + (" (cuBLAS)" if device == "cuda" else ""))
                if want is None:
                    row.update(ok=bool(torch.isfinite(got).all()), ms=statistics.median(ours) * 1e3,
                               reference_ms=statistics.median(ref) * 1e3,
                               speedup=statistics.median(r / o for r, o in zip(ref, ours)))
                    print(json.dumps({k: v for k, v in row.items() if k != "seconds"}), flush=True)
                    results.append(row)
                    continue
            elif case["kind"] == "gemm":
                n = case["n"]
                gen = torch.Generator(device=dev).manual_seed(0)
                a = torch.randn(n, n, device=dev, generator=gen)
                b = torch.randn(n, n, device=dev, generator=gen)
                got = torch.from_dlpack(vm(a, b))
                want = a @ b
                ours = _timed(lambda: vm(a, b), sync)
                ref = _timed(lambda: torch.matmul(a, b), sync)
                row.update(flops=2.0 * n ** 3, reference="torch.matmul (cuBLAS)" if device == "cuda" else "torch.matmul")
            else:
                x = torch.from_numpy(np.load(where / "input.npy")).to(dev)
                expected = torch.from_numpy(np.load(where / "expected.npy")).to(dev)
                got = torch.from_dlpack(vm(x))
                want = expected
                ours = _timed(lambda: vm(x), sync)
                ref = None
                if (where / "torch.pt").exists():
                    model = torch.jit.load(str(where / "torch.pt"), map_location=dev).eval()
                    with torch.inference_mode():
                        ref = _timed(lambda: model(x), sync)
                    row["reference"] = "PyTorch (TorchScript of the bundled .pt)"
            err = float((got.float() - want.float()).abs().max() / want.float().abs().max().clamp_min(1e-30))
            row.update(max_rel_err=err, ok=err <= 1e-3, ms=statistics.median(ours) * 1e3)
            if ref is not None:
                row["reference_ms"] = statistics.median(ref) * 1e3
                row["speedup"] = statistics.median(r / o for r, o in zip(ref, ours))
        except Exception as e:  # noqa: BLE001 - one case's failure is reported, the rest still run
            row.update(ok=False, error=f"{type(e).__name__}: {e}"[:300])
        print(json.dumps(row), flush=True)
        results.append(row)
    report = {"device": device, "gpu": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
              "torch": torch.__version__, "target": manifest["target"], "prepared": manifest["prepared"],
              "ran": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "results": results,
              "tvm_python_package_loaded": "tvm" in sys.modules}
    out.mkdir(parents=True, exist_ok=True)
    (out / "cuda_device.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"{sum(r['ok'] for r in results)}/{len(results)} cases ok; wrote {out / 'cuda_device.json'}")
    return report


# ---------------------------------------------------------------- ingest (here again, with tvmopt)
#: the issue's goals on a GPU, per kernel family (ratio against the dense product in cuBLAS)
GOALS = {"gemm": 0.7, "xnor_dense": 5.0, "hadamard": 20.0, "fastfood": 10.0}


def table(report: dict) -> str:
    """The ``cuda_device`` section of BENCHMARKS.md for one run's JSON."""
    lines = [f"## GPU check, {report['gpu']} (`benchmarks/cuda_device.py`, issue 21)", "",
             f"{report['gpu']}, torch {report['torch']}, target "
             f"`{report['target']}`; prepared {report['prepared']}, ran {report['ran']}. Modules loaded through TVM's "
             f"runtime alone. Ratios: the reference's median time / ours, {ROUNDS} rounds on the same device.", "",
             "| case | checked | ours (ms) | reference | ref (ms) | ratio | goal |", "|---|---|---:|---|---:|---:|---|"]
    for r in report["results"]:
        if "error" in r:
            lines.append(f"| {r['case']} | **failed**: {r['error'][:120]} | | | | | |")
            continue
        checked = f"max rel. err {r['max_rel_err']:.1e}" if "max_rel_err" in r else "timed only (random inputs)"
        goal = GOALS.get(r.get("key", "").split(":")[0]) if r["kind"] == "kernel" and r.get("mode") == "time" else None
        verdict = "" if goal is None else (f"≥ {goal}x: {'met' if r['speedup'] >= goal else '**not met**'}")
        ratio = f"{r['speedup']:.2f}x" if "speedup" in r else ""
        ref_ms = f"{r['reference_ms']:.3f}" if "reference_ms" in r else ""
        lines.append(f"| {r['case']} | {checked if r['ok'] else '**wrong**: ' + checked} | {r['ms']:.3f} | "
                     f"{r.get('reference', '')} | {ref_ms} | {ratio} | {verdict} |")
    return "\n".join(lines)


def ingest(path: Path, records_dir: Path | None = None, benchmarks: bool = True) -> int:
    """Turn a run's JSON into BENCHMARKS.md's ``cuda_device`` section and CUDA records of the
    kernels it checked or timed (appended to ``records_dir``, by default the shipped records).
    Returns the number of records written."""
    from tvmopt.records.store import Record, RecordCache
    from tvmopt.target import parse_target

    root = Path(__file__).resolve().parent.parent
    report = json.loads(path.read_text())
    if report.get("device") != "cuda":
        raise SystemExit(f"{path}: a run on {report.get('device')}; only GPU runs are ingested")
    key = parse_target(report["target"]).key
    records = [Record(r["key"], key, _config(r["config"]), tuple(r["seconds"]), space=r["space"], tuner="cuda_device")
               for r in report["results"] if r.get("kind") == "kernel" and r.get("ok") and r.get("seconds")]
    RecordCache(records_dir or root / "logs" / "records").append(records)
    if benchmarks:
        sys.path.insert(0, str(root / "benchmarks"))
        from report import update_section

        update_section("cuda_device", table(report))
    print(f"{path}: {len(records)} CUDA record(s) for {key}; BENCHMARKS.md section cuda_device "
          f"{'updated' if benchmarks else 'left alone'}")
    return len(records)


def _config(value):
    """A config read back from JSON: lists become tuples, as the spaces write them."""
    return tuple(_config(v) for v in value) if isinstance(value, list) else value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("prepare", help="build the modules and the runtime to carry (needs tvmopt)")
    p.add_argument("out", type=Path)
    p.add_argument("--arch", default="sm_90")
    p.add_argument("--cpu", action="store_true", help="build for this CPU instead, to check the path without a GPU")
    p.add_argument("--only", nargs="+", metavar="MODEL", default=None,
                   help="bundled models to carry, by file stem (default: all; the kernel cases are always carried)")
    r = sub.add_parser("run", help="run the carried cases (needs numpy and torch only)")
    r.add_argument("directory", type=Path)
    r.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")))
    r.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    i = sub.add_parser("ingest", help="BENCHMARKS.md section and CUDA records from a run's JSON (needs tvmopt)")
    i.add_argument("json", type=Path)
    i.add_argument("--records", type=Path, default=None, help="records directory (default: logs/records)")
    i.add_argument("--no-benchmarks", action="store_true", help="write the records only")
    args = ap.parse_args()
    if args.mode == "prepare":
        prepare(args.out, args.arch, args.cpu, args.only)
    elif args.mode == "ingest":
        ingest(args.json, args.records, not args.no_benchmarks)
    else:
        run(args.directory, args.out, args.device)


if __name__ == "__main__":
    main()
