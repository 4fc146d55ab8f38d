"""Parse user target strings into TVM Targets and stable target keys.

A target key (``llvm-znver5-2c``, ``cuda-sm_90``) names the records measured on that kind of
machine, so records taken on one CPU are never silently used on another. A CPU whose AVX-512 the
hypervisor hides gets its own key (``llvm-znver4-avx2-2c``): LLVM calls it by the same name as the
full CPU, but its best register tiles are AVX2's.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

from .errors import TargetError

ACCEPTED = (
    "accepted targets: 'llvm' (this host), 'llvm -mcpu=NAME [-num-cores=N]', "
    "'cuda' or 'cuda -arch=sm_XX', or a JSON dict such as "
    '\'{"kind": "llvm", "mcpu": "znver3", "num-cores": 2}\''
)
DEFAULT_CUDA_ARCH = "sm_90"


@dataclass(frozen=True)
class TargetSpec:
    """What tvmopt needs to know about a target: its kind, TVM config dict and key."""

    kind: str  # "llvm" or "cuda"
    config: dict  # the dict given to tvm.target.Target (host excluded)
    host: dict | None  # llvm host config for cuda

    @property
    def key(self) -> str:
        if self.kind == "llvm":
            cpu = self.config.get("mcpu", "generic")
            cores = self.config.get("num-cores", 1)
            masked = "-avx2" if "-avx512f" in self.config.get("mattr", ()) else ""
            return f"llvm-{cpu}{masked}-{cores}c"
        return f"cuda-{self.config.get('arch', DEFAULT_CUDA_ARCH)}"

    def tvm_target(self):
        """The tvm.target.Target object (imports TVM)."""
        from tvm.target import Target

        if self.host is not None:
            return Target(self.config, host=Target(self.host))
        return Target(self.config)

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "config": self.config, "host": self.host}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TargetSpec":
        d = json.loads(text)
        return cls(d["kind"], d["config"], d["host"])


def host_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def host_llvm_config(mcpu: str | None = None, cores: int | None = None) -> dict:
    """LLVM target config for this host: detected CPU and core count.

    LLVM names the CPU from its family and model; a hypervisor may still hide AVX-512 from the
    guest, so features the kernel does not report are switched off explicitly (otherwise the
    generated code would die of SIGILL).
    """
    from tvm.target import Target, codegen

    detected = mcpu is None
    mcpu = mcpu or codegen.llvm_get_system_cpu()
    if not codegen.llvm_is_valid_cpu(mcpu, codegen.llvm_get_system_triple()):
        raise TargetError(f"unknown LLVM CPU '{mcpu}'; {ACCEPTED}")
    config = {"kind": "llvm", "mcpu": mcpu, "num-cores": int(cores or host_cores())}
    if detected:
        flags = _cpu_flags()
        if flags and "avx512f" not in flags:
            if codegen.llvm_cpu_has_features(["avx512f"], Target(config)):
                config["mattr"] = ["-avx512f"]
    return config


_FLAG = re.compile(r"^-{1,2}([a-z_-]+)=(\S+)$")


def parse_target(text: str) -> TargetSpec:
    """Parse ``llvm``, ``llvm -mcpu=X -num-cores=N``, ``cuda -arch=sm_XX`` or a JSON dict."""
    if not isinstance(text, str) or not text.strip():
        raise TargetError(f"empty target; {ACCEPTED}")
    text = text.strip()
    if text.startswith("{"):
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise TargetError(f"target '{text}' is not valid JSON ({e.msg}); {ACCEPTED}") from None
        if not isinstance(d, dict) or "kind" not in d:
            raise TargetError(f"target '{text}' needs a \"kind\"; {ACCEPTED}")
        kind, opts = d.pop("kind"), d
    else:
        kind, *rest = text.split()
        opts = {}
        for tok in rest:
            m = _FLAG.match(tok)
            if not m:
                raise TargetError(f"cannot read '{tok}' in target '{text}'; {ACCEPTED}")
            opts[m.group(1)] = m.group(2)
    if kind == "llvm":
        return _llvm_spec(text, opts)
    if kind == "cuda":
        return _cuda_spec(text, opts)
    raise TargetError(f"unknown target kind '{kind}' in '{text}'; {ACCEPTED}")


def _llvm_spec(text: str, opts: dict) -> TargetSpec:
    if "mcpu" in opts and not isinstance(opts["mcpu"], str):
        raise TargetError(f"mcpu must be a CPU name (a string) in '{text}', got {opts['mcpu']!r}")
    unknown = set(opts) - {"mcpu", "num-cores", "num_cores"}
    if unknown:
        raise TargetError(f"unknown llvm option(s) {sorted(unknown)} in '{text}'; {ACCEPTED}")
    cores = opts.get("num-cores", opts.get("num_cores"))
    if cores is not None:
        try:
            cores = int(cores)
        except (TypeError, ValueError):
            cores = -1
        if cores < 1:
            raise TargetError(f"num-cores must be a positive integer in '{text}'")
    return TargetSpec("llvm", host_llvm_config(opts.get("mcpu"), cores), None)


def _cuda_spec(text: str, opts: dict) -> TargetSpec:
    unknown = set(opts) - {"arch", "host"}
    if unknown:
        raise TargetError(f"unknown cuda option(s) {sorted(unknown)} in '{text}'; {ACCEPTED}")
    arch = str(opts.get("arch", DEFAULT_CUDA_ARCH))
    if not re.fullmatch(r"sm_\d{2,3}[a-z]?", arch):
        raise TargetError(f"bad CUDA arch '{arch}' in '{text}' (expected e.g. sm_80, sm_90)")
    host = opts.get("host")
    host_cfg = host if isinstance(host, dict) else host_llvm_config()
    return TargetSpec("cuda", {"kind": "cuda", "arch": arch}, host_cfg)
