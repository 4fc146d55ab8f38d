"""CUDA candidates: compiling one config to CUDA C with its launch configuration, the
launch-bounds check and an ``nvcc`` check. No GPU is needed here.

A task's CUDA view (:func:`tvmopt.ops.task.cuda_task`, from its op family's registration) has
the same key, inputs, reference and FLOPs as the task and a CUDA space, so every tuner works on
it unchanged. :func:`compile_candidate` lowers one
config with ``tvm.compile``'s own pipeline and returns the CUDA source with what a runner needs
to launch it without TVM: the kernels in call order, each with its parameters (buffer names),
grid and block dimensions and static shared memory, and the global scratch buffers the host
would have allocated between kernels.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tvmopt.errors import CudaError
from tvmopt.schedules.space import Config
from tvmopt.target import TargetSpec
from tvmopt.ops.task import CudaTask, cuda_task  # noqa: F401  (re-exported)

# --------------------------------------------------------------------------- compiling


@dataclass
class Kernel:
    """One ``__global__`` function and how the host launches it."""

    name: str
    params: list[str]               # buffer names, in the kernel's parameter order
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    shared_bytes: int               # static __shared__ memory

    @property
    def threads(self) -> int:
        return self.block[0] * self.block[1] * self.block[2]


@dataclass
class CudaCandidate:
    """A compiled config: CUDA C, the kernels in call order and the scratch buffers."""

    task_key: str
    config: Config
    arch: str
    source: str
    kernels: list[Kernel]
    inputs: list[str]                # parameter buffer names of the PrimFunc, inputs first
    output: str
    workspaces: dict[str, tuple[str, int]] = field(default_factory=dict)  # name -> (dtype, elements)

    def to_json(self) -> dict:
        d = asdict(self)
        d["kernels"] = [asdict(k) for k in self.kernels]
        return d


_CALL = re.compile(r'T\.call_ffi_kernel\("(?P<name>[\w.]+)", (?P<args>.*?), launch_params=\[(?P<tags>[^\]]*)\]')
_DATA = re.compile(r"^(?P<buf>\w+)\.data$")
_ALLOC = re.compile(r'(?P<name>\w+) = T\.alloc_buffer\(\((?P<shape>[\d, ]+),?\)(?:, "(?P<dtype>\w+)")?')


def compile_candidate(task_key: str, config: Config, target: TargetSpec | str = "cuda") -> CudaCandidate:
    """Lower and compile one config of ``task_key``'s CUDA space for ``target`` (a CUDA
    TargetSpec or target string) with TVM's own pipeline; no GPU is needed."""
    import tvm
    from tvm.tirx.build import codegen_build, split_host_device_mods

    from tvmopt.target import parse_target

    spec = parse_target(target) if isinstance(target, str) else target
    if spec.kind != "cuda":
        raise CudaError(f"target '{spec.key}' is not a CUDA target; use e.g. 'cuda -arch=sm_90'")
    task = cuda_task(task_key)
    if not task.space.contains(config):
        raise CudaError(f"config {config} is not in the space {task.space.name}")
    mod = task.schedule(config)
    params = [p.name for p in mod["main"].params]
    tvm_target = spec.tvm_target()
    mod = tvm.tirx.transform.BindTarget(tvm_target.with_host(tvm_target.host))(mod)
    pipeline, _, finalize_device = tvm.tirx.get_default_tir_pipeline(tvm_target)
    with tvm.transform.PassContext():
        host, devices = split_host_device_mods(pipeline(mod))
    (device_target, device_mod), = devices.items()
    device_mod = finalize_device()(device_mod)
    source = codegen_build(device_mod, device_target).inspect_source()
    shared = {gv.name_hint: _shared_bytes(f) for gv, f in device_mod.functions.items()}
    kernel_params = {gv.name_hint: [p.name.removesuffix("_ptr") for p in f.params]
                     for gv, f in device_mod.functions.items()}
    kernels, scratch = _launches(host["main"].script(), shared, kernel_params)
    return CudaCandidate(task_key, config, spec.config["arch"], source, kernels, params[:-1], params[-1], scratch)


def _shared_bytes(func) -> int:
    from tvm.s_tir.analysis import calculate_allocated_bytes

    sizes = calculate_allocated_bytes(func)
    sizes = sizes.get("main", sizes) if hasattr(sizes, "get") else sizes
    return int(sum(int(v) for k, v in dict(sizes).items() if str(k).startswith("shared")))


def _launches(host_script: str, shared: dict[str, int], kernel_params: dict[str, list[str]]):
    """The kernel launches of the host function, in order, read from its TVMScript (the
    extents of static shapes are integer literals there), and its global scratch buffers."""
    kernels = []
    for call in _CALL.finditer(host_script):
        tags = [t.strip().strip('"') for t in call["tags"].split(",") if t.strip()]
        args = [a.strip() for a in call["args"].split(",")]
        values = args[len(args) - len(tags):]
        names = kernel_params[call["name"]]
        if len(names) != len(args) - len(tags) or not all(_DATA.match(a) for a in args[:len(names)]):
            raise CudaError(f"kernel {call['name']}: cannot read its arguments {args} (only static shapes "
                            f"and buffer arguments are supported)")
        dims = {"blockIdx.x": 1, "blockIdx.y": 1, "blockIdx.z": 1,
                "threadIdx.x": 1, "threadIdx.y": 1, "threadIdx.z": 1}
        for tag, value in zip(tags, values):
            if tag not in dims or not value.isdigit():
                raise CudaError(f"kernel {call['name']}: unsupported launch parameter {tag}={value}")
            dims[tag] = int(value)
        kernels.append(Kernel(call["name"], names,
                              (dims["blockIdx.x"], dims["blockIdx.y"], dims["blockIdx.z"]),
                              (dims["threadIdx.x"], dims["threadIdx.y"], dims["threadIdx.z"]),
                              shared.get(call["name"], 0)))
    scratch = {}
    for m in _ALLOC.finditer(host_script):
        count = 1
        for d in m["shape"].replace(" ", "").split(","):
            if d:
                count *= int(d)
        scratch[m["name"]] = (m["dtype"] or "float32", count)     # TVMScript omits the default dtype
    return kernels, scratch


# --------------------------------------------------------------------------- checks

#: per-arch limits: threads per block, block dims, grid dims, static shared memory per block
LIMITS = {
    "max_threads": 1024,
    "max_block": (1024, 1024, 64),
    "max_grid": (2 ** 31 - 1, 65535, 65535),
    "max_static_shared": 48 * 1024,
}


def check_launch_bounds(candidate: CudaCandidate) -> list[str]:
    """Why the candidate cannot launch on its arch (empty: it can, as far as can be checked
    here). Registers per thread are not checked: only ptxas knows them (``nvcc_check`` with
    ``resource_usage``) and the limit they break depends on the block size."""
    problems = []
    for k in candidate.kernels:
        if k.threads > LIMITS["max_threads"]:
            problems.append(f"{k.name}: {k.threads} threads per block > {LIMITS['max_threads']}")
        for axis, (got, limit) in enumerate(zip(k.block, LIMITS["max_block"])):
            if got > limit:
                problems.append(f"{k.name}: blockDim.{'xyz'[axis]} = {got} > {limit}")
        for axis, (got, limit) in enumerate(zip(k.grid, LIMITS["max_grid"])):
            if got > limit:
                problems.append(f"{k.name}: gridDim.{'xyz'[axis]} = {got} > {limit}")
        if k.shared_bytes > LIMITS["max_static_shared"]:
            problems.append(f"{k.name}: {k.shared_bytes} bytes of static shared memory > "
                            f"{LIMITS['max_static_shared']}")
    return problems


def nvcc_available() -> str | None:
    """Path of nvcc (PATH, then /usr/local/cuda/bin), or None."""
    return shutil.which("nvcc") or next((str(p) for p in [Path("/usr/local/cuda/bin/nvcc")] if p.exists()), None)


@dataclass
class NvccResult:
    ok: bool
    message: str                      # nvcc's diagnostics (empty when clean), or why it was skipped
    skipped: bool = False
    registers: dict[str, int] = field(default_factory=dict)  # kernel -> registers per thread (ptxas -v)


def nvcc_check(source: str, arch: str = "sm_90", timeout: float = 120.0) -> NvccResult:
    """Compile CUDA C to a cubin with ``nvcc -arch=<arch> -cubin -Xptxas -v`` (no GPU needed);
    registers per thread come from ptxas. Skipped, with the reason, where nvcc is absent."""
    nvcc = nvcc_available()
    if nvcc is None:
        return NvccResult(False, "nvcc not found on PATH or in /usr/local/cuda/bin: CUDA source not checked",
                          skipped=True)
    with tempfile.TemporaryDirectory(prefix="tvmopt-nvcc-") as tmp:
        src = Path(tmp) / "kernel.cu"
        src.write_text(source)
        try:
            proc = subprocess.run([nvcc, f"-arch={arch}", "-cubin", "-Xptxas", "-v", "-o", str(Path(tmp) / "k.cubin"),
                                   str(src)], capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return NvccResult(False, f"nvcc took longer than {timeout:g} s")
    log = proc.stdout + proc.stderr
    registers, current = {}, None
    for line in log.splitlines():
        m = re.search(r"Compiling entry function '(\w+)'", line)
        if m:
            current = m.group(1)
        m = re.search(r"Used (\d+) registers", line)
        if m and current:
            registers[current] = int(m.group(1))
    if proc.returncode != 0:
        errors = [ln for ln in log.splitlines() if "error" in ln]
        return NvccResult(False, "\n".join(errors[:5]) or log[-2000:], registers=registers)
    return NvccResult(True, "", registers=registers)
