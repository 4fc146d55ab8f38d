"""The vector instruction set a space's *start* config is shaped for (the heuristic starts of
the GEMM and conv2d spaces: their register tiles).

The spaces themselves do not depend on it (every config stays valid on every CPU); only the
untuned default does, with one exception: the dense conv's task reads it when it is made, and
built for AVX2 computes 1x1 convolutions on 7x7 and 14x14 maps as one row of pixels
(``conv2d.ConvShape.narrow_flat``), a space of its own. AVX2 has 16 registers of 8 floats, AVX-512 32 of 16: a register tile
sized for AVX2 leaves half of an AVX-512 core idle. Measured on Zen 5 with the AVX2-sized
starts: the direct conv ran at about half of onnxruntime's speed on ResNet-18's 3x3 layers (4
zmm accumulators cannot hide the FMA latency) and 2.1 to 4.1x faster with 2 weight vectors by
7 or 8 pixels; ``dense:16x4096x4096`` 3.4x and ``dense:2048x3072x768`` 1.9x faster with an 8 x 32
tile than with 4 x 16 (``benchmarks/heuristics.py``).

AMD Zen 4 (``ZEN4``) has AVX-512 with VNNI and VPOPCNTDQ but runs each 512-bit instruction as
two 256-bit halves, and a zmm store takes two cycles: starts that spill registers, which a
full-width core absorbs, cost it 3x (``schedules/perm_tables.py``). Its records still stand in
for the other AVX-512 VNNI CPUs' first (``build.compile._nearest_targets``).

Which one: the innermost :func:`use` context (``compile_model`` and the tuning loop set it from
the target: ``for_target``), else this host's CPU.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class VectorISA:
    name: str
    lanes: int            # fp32 lanes per vector register
    registers: int        # vector registers
    vnni: bool = False    # AVX-512 VNNI (vpdpbusd): the int8 products of ops/int8_dense.py
    #: each 512-bit instruction runs as two 256-bit halves (AMD Zen 4): a zmm store takes two
    #: cycles, so a register tile that spills costs far more than on a full-width core
    double_pumped: bool = False

    @property
    def full_width(self) -> bool:
        """AVX-512 run at full width (the Intel Xeons; Zen 5 by its name, unmeasured)"""
        return self.lanes >= 16 and not self.double_pumped


AVX2 = VectorISA("avx2", 8, 16)
AVX512 = VectorISA("avx512", 16, 32)
AVX512_VNNI = VectorISA("avx512-vnni", 16, 32, vnni=True)
#: AMD Zen 4 (LLVM's ``znver4``; ``cpu family`` 25 with AVX-512 in /proc/cpuinfo)
ZEN4 = VectorISA("avx512-vnni-zen4", 16, 32, vnni=True, double_pumped=True)
#: the LLVM CPU names whose AVX-512 is double-pumped
DOUBLE_PUMPED_CPUS = ("znver4",)

_CURRENT: contextvars.ContextVar[VectorISA | None] = contextvars.ContextVar("tvmopt_isa", default=None)


@lru_cache(maxsize=1)
def host() -> VectorISA:
    """This machine's: AVX-512 when the kernel reports ``avx512f``."""
    family = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("cpu family"):
                    family = line.split(":")[1].strip()
                if line.startswith("flags"):
                    flags = line.split()
                    if "avx512f" not in flags:
                        return AVX2
                    if family == "25":         # AMD family 19h with AVX-512: Zen 4 (Zen 3 has none)
                        return ZEN4
                    return AVX512_VNNI if "avx512_vnni" in flags else AVX512
    except OSError:
        pass
    return AVX2


def current() -> VectorISA:
    return _CURRENT.get() or host()


@contextlib.contextmanager
def use(isa: VectorISA | None):
    """Shape start configs for ``isa`` inside the block (None: leave as is)."""
    token = _CURRENT.set(isa) if isa is not None else None
    try:
        yield
    finally:
        if token is not None:
            _CURRENT.reset(token)


def for_target(spec) -> VectorISA | None:
    """The ISA of a tvmopt TargetSpec (LLVM targets: from its CPU's features as LLVM knows them,
    minus a ``-avx512f`` attribute); None for other kinds."""
    if getattr(spec, "kind", None) != "llvm":
        return None
    if "-avx512f" in spec.config.get("mattr", ()):
        return AVX2
    try:
        found = _of_llvm_target(spec.tvm_target())
    except Exception:  # noqa: BLE001 - a CPU LLVM cannot describe: the host's
        return None
    return AVX512 if found.vnni and "-avx512vnni" in spec.config.get("mattr", ()) else found


def _of_llvm_target(target) -> VectorISA:
    """The ISA of an LLVM ``tvm.target.Target`` from the features LLVM knows its CPU has."""
    from tvm.target import codegen

    if not codegen.llvm_cpu_has_features(["avx512f"], target):
        return AVX2
    if str(target.attrs.get("mcpu", "")) in DOUBLE_PUMPED_CPUS:
        return ZEN4
    return AVX512_VNNI if codegen.llvm_cpu_has_features(["avx512vnni"], target) else AVX512


def for_target_key(key: str) -> VectorISA | None:
    """The ISA of a records file's target key (``llvm-znver3-2c``; ``llvm-znver4-avx2-2c``: that
    CPU with AVX-512 hidden); None when it is not an LLVM key or LLVM does not know its CPU."""
    parts = key.split("-")
    if len(parts) < 2 or parts[0] != "llvm":
        return None
    if len(parts) > 3 and parts[-2] == "avx2":
        return AVX2
    try:
        from tvm.target import Target, codegen

        cpu = "-".join(parts[1:-1]) if len(parts) > 2 else parts[1]
        if not codegen.llvm_is_valid_cpu(cpu, codegen.llvm_get_system_triple()):
            return None
        return _of_llvm_target(Target({"kind": "llvm", "mcpu": cpu}))
    except Exception:  # noqa: BLE001 - LLVM cannot describe it
        return None
