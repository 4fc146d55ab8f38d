"""The prepared GPU check (issue 21, item 4), first part: build here, run on a GPU machine that
has no TVM and no network.

    python benchmarks/cuda_device.py prepare .bench/cuda_device [--arch sm_90]   # here (no GPU)
    python3 cuda_device.py run DIR --out RESULTS_DIR                                # there: DIR carried
    python benchmarks/cuda_device.py prepare DIR --cpu && python3 DIR/cuda_device.py run DIR --device cpu
                                                                      # the whole path checked on a CPU

On this project's device machine (the ``device`` tool's ``run``)::

    run(command="python3 .bench/cuda_device/cuda_device.py run .bench/cuda_device --out $OUT",
        carry=[".bench/cuda_device"])

``prepare`` writes a directory of at most 64 MiB: TVM's runtime alone (``libtvm_runtime.so``,
``libtvm_runtime_cuda.so``, the ``tvm_ffi`` package, CUDA's ``libcudart``; not TVM's compiler
or Python package), this script, and ``cases/``: each bundled digits model built for CUDA
(``tvmopt build --target cuda``: every layer on its decoded dense weight, DLight schedules),
its input, onnxruntime's output on the CPU and the PyTorch model as TorchScript; and a one-node
MatMul model of 4096^3 (DLight's Matmul rule), whose inputs the run draws on the GPU.

``run`` uses numpy, torch (CUDA) and the carried runtime only: it loads each module through
``tvm_ffi`` and the Relax VM's own functions (``vm_load_executable``, ``vm_initialization``),
checks every output against its reference (the carried one; the GEMM against ``torch.matmul``
on the same inputs) and times the module against PyTorch on the same GPU (CUDA events, median
of rounds). It writes ``cuda_device.json``. Still to come (the issue's list): the compressed
kernels' own CUDA spaces inside models, and XNOR / FWHT / Fastfood timed against cuBLAS.
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


# ---------------------------------------------------------------- prepare (here, with tvmopt)
def prepare(out: Path, arch: str, cpu: bool) -> dict:
    import numpy as np
    import onnxruntime as ort
    import torch

    import tvm
    import tvm_ffi

    from tvmopt.build.deploy import build
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
    for path in sorted(models.glob("digits_*.onnx")):
        if path.name.endswith(".plain.onnx"):
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
        _, arch_name, variant = name.split("_", 2)
        variant = variant.replace("nm24", "nm2:4")       # file names spell N:M without the colon
        pt = models / f"{name}.pt"
        if pt.exists():
            with torch.no_grad():
                traced = torch.jit.trace(load_model(arch_name, variant, pt), torch.from_numpy(x))
            traced.save(str(case / "torch.pt"))
        cases.append({"name": name, "kind": "model", "dir": f"cases/{name}"})
    # one MatMul of n^3: inputs drawn on the device by the run
    n = CPU_GEMM if cpu else GEMM
    gemm = out / "cases" / f"gemm_{n}"
    gemm.mkdir(parents=True)
    onnx_path = gemm / "gemm.onnx"
    _matmul_onnx(onnx_path, n)
    build(onnx_path, gemm / "model.so", target=target, records=gemm / "no-records")
    onnx_path.unlink()
    cases.append({"name": f"gemm_{n}x{n}x{n}", "kind": "gemm", "dir": f"cases/gemm_{n}", "n": n})
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
        return self.main(*(self.ffi.from_dlpack(t) for t in tensors))


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
            vm = VM(ffi, where / "model.so", device)
            if case["kind"] == "gemm":
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("prepare", help="build the modules and the runtime to carry (needs tvmopt)")
    p.add_argument("out", type=Path)
    p.add_argument("--arch", default="sm_90")
    p.add_argument("--cpu", action="store_true", help="build for this CPU instead, to check the path without a GPU")
    r = sub.add_parser("run", help="run the carried cases (needs numpy and torch only)")
    r.add_argument("directory", type=Path)
    r.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")))
    r.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    args = ap.parse_args()
    if args.mode == "prepare":
        prepare(args.out, args.arch, args.cpu)
    else:
        run(args.directory, args.out, args.device)


if __name__ == "__main__":
    main()
