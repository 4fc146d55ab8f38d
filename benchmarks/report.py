"""Shared by the benchmark scripts: JSON results and their sections of BENCHMARKS.md."""

from __future__ import annotations

import json
import math
import platform
import random
import re
import statistics
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"


def cpu_name() -> str:
    """This machine's CPU model name (``/proc/cpuinfo``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def machine() -> dict:
    """Where a result was measured (written into every JSON and table)."""
    cpu = cpu_name()
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip()
        # code changed since that commit (not results or docs, which benchmarks write): the figures
        # are not that commit's, and the label says so
        changed = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "tvmopt", "schedules", "tuners",
                                  "benchmarks/*.py"], cwd=ROOT, capture_output=True).returncode == 1
        commit += "+dirty" if commit and changed else ""
    except OSError:
        commit = ""
    return {"cpu": cpu, "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "commit": commit}


def cpu_kind(spec) -> str:
    """The kind of CPU an LLVM target (the host's for others) is: ``avx2`` (AVX2 only, or
    AVX-512 hidden), ``avx512`` (AMD Zen 5 with AVX-512), ``zen4`` (AMD Zen 4: AVX-512 and VNNI
    and VPOPCNTDQ, but each 512-bit instruction runs as two 256-bit halves, so its best kernels
    and its ratios are not Zen 5's) or ``xeon`` (Intel with AVX-512: VNNI,
    VPOPCNTDQ, AMX on this project's machines, where numpy's OpenBLAS runs its SkylakeX kernel
    and torch runs MKL). The benchmarks whose figures depend on the CPU keep one JSON and one
    BENCHMARKS.md section per kind, so the CPUs this project runs on stand side by side."""
    from tvmopt.schedules import isa

    found = isa.for_target(spec) or isa.host()
    if found.lanes < 16:
        return "avx2"
    if found.double_pumped:           # Zen 4 (isa.ZEN4): the ISA module knows which CPUs these are
        return "zen4"
    mcpu = str(getattr(spec, "config", {}).get("mcpu", "")) if getattr(spec, "kind", None) == "llvm" else ""
    if not mcpu:
        mcpu = "znver" if "AMD" in cpu_name() else "intel"
    return "avx512" if mcpu.startswith("znver") else "xeon"


def per_cpu(name: str, spec) -> str:
    """``name`` suffixed with the CPU kind of ``spec`` (:func:`cpu_kind`)."""
    return f"{name}_{cpu_kind(spec)}"


def narrower_than_host(target) -> str | None:
    """The host's vector ISA where the target's is narrower (AVX2 code for a Zen 3, built and run
    on an AVX-512 machine, whose onnxruntime and PyTorch use AVX-512), else None."""
    from tvmopt.schedules import isa

    built = isa.for_target(target)
    return isa.host().name if built is not None and built.lanes < isa.host().lanes else None


def section_for(name: str, target) -> tuple[str, str | None]:
    """A per-CPU section's name (:func:`per_cpu`) and the host's ISA where the target is narrower
    than the host: such a run gets a section of its own, ``<name>_<kind>-on-<host kind>``, so the
    host's kind keeps its same-ISA comparison."""
    from tvmopt.target import parse_target

    narrower = narrower_than_host(target)
    name = per_cpu(name, target)
    return (name + f"-on-{cpu_kind(parse_target('llvm'))}" if narrower else name), narrower


def narrower_caveat(target_key: str, host_isa: str | None) -> str:
    """The sentence a table measured with code narrower than the host carries ('' otherwise)."""
    if not host_isa:
        return ""
    return (f" tvmopt's code is compiled for {target_key} ({target_key.split('-')[1]}: AVX2, 16 ymm) and run "
            f"on this {host_isa} CPU, where onnxruntime and PyTorch pick their AVX-512 kernels: the ratios against "
            "them are lower bounds of what an AVX2-only machine shows, where both sides run AVX2.")


CPU_LABELS = {"avx2": "AVX2", "avx512": "AVX-512 (AMD Zen 5)", "zen4": "AVX-512 (AMD Zen 4)", "xeon": "AVX-512 (Intel Xeon)"}


def blas() -> str:
    """Which kernels the references run: every BLAS/OpenMP library threadpoolctl sees loaded (numpy's
    OpenBLAS names the kernel it picked for this CPU), and torch's MKL and its instruction set."""
    parts = []
    try:
        from threadpoolctl import threadpool_info

        parts += [f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')}, {i.get('num_threads')} threads)"
                  for i in threadpool_info() if i.get("internal_api") != "openmp"]
    except Exception:  # noqa: BLE001 - threadpoolctl missing: say so
        parts.append("numpy: unknown (threadpoolctl not installed)")
    try:
        import torch

        if torch.backends.mkl.is_available():
            parts.append(f"torch: MKL ({torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads)")
        else:
            parts.append(f"torch: no MKL ({torch.backends.cpu.get_cpu_capability()})")
    except Exception:  # noqa: BLE001 - torch missing
        pass
    return "; ".join(parts)


def wait_quiet() -> float:
    """Wait until the other threads of this process (the previous runtime's spinning workers) are
    idle before the next contender is timed (``tvmopt.measure.settle.quiesce``: TVM's worker spins
    about 150 ms after each call on Zen 4, longer than the fixed pauses this replaced)."""
    import sys

    from tvmopt.measure.settle import quiesce

    waited = quiesce()
    if waited < 0 and not getattr(wait_quiet, "warned", False):
        wait_quiet.warned = True
        print(f"warning: another thread of this process kept running for {-waited:.1f} s (a runtime that "
              "spins for good, e.g. OMP_WAIT_POLICY=active?): timings share the cores with it", file=sys.stderr)
    return waited


def median_seconds(fn, min_seconds: float = 0.05, least: int = 5) -> float:
    """Median seconds per call of ``fn`` (after one warm-up call) over at least ``min_seconds``
    and ``least`` calls."""
    fn()
    samples, start = [], time.perf_counter()
    while time.perf_counter() - start < min_seconds or len(samples) < least:
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def timed_rounds(fns: dict, rounds: int, min_seconds: float, seed: int = 0, settle: tuple | None = None,
                 max_rounds: int = 0, tolerance: float = 0.02, clear_of: float | None = None) -> dict:
    """Per function, its :func:`median_seconds` in each round ({name: [seconds per round]}).
    Each round runs the functions in a fresh order (seeded), each after the previous runtime's
    spinning worker threads went to sleep (:func:`wait_quiet`): in a fixed order a function
    always ran right after the same other one, and ResNet-20's ternary build, which runs the very kernels of its
    dense build, read 0.87 to 0.93x it in two sessions (``benchmarks/suite.py``).

    ``settle=(a, b)``: after ``rounds`` rounds, go on (up to ``max_rounds``) until the paired
    ratio a / b is known to ``tolerance`` (:func:`ratio_uncertainty`), or until the quartiles of
    the rounds' ratios both lie on one side of ``clear_of`` (the threshold the ratio is judged by:
    a 3x speed-up needs no more rounds to be known as >= 0.95). On a shared VM (AMD Zen 4,
    session 43) two builds of ResNet-20 running the very same kernels read 1.31x each other's
    speed from 5 rounds."""
    rng = random.Random(seed)
    samples = {k: [] for k in fns}
    done = 0
    while done < max(rounds, 1):
        for k in rng.sample(list(fns), len(fns)):
            wait_quiet()
            samples[k].append(median_seconds(fns[k], min_seconds, least=3))
        done += 1
        if done == rounds and settle and done < max_rounds and ratio_uncertainty(samples, *settle) > tolerance:
            low, high = spread(samples, *settle)
            if clear_of is None or low <= clear_of <= high:
                rounds += 1
    return samples


def _ratios(samples: dict, a: str, b: str) -> list[float]:
    """a's time / b's in each round."""
    return [x / y for x, y in zip(samples[a], samples[b])]


def ratio_uncertainty(samples: dict, a: str, b: str) -> float:
    """How far the median of the rounds' ratios a / b may be off, relative: the interquartile
    range of the ratios over the square root of the rounds (about the median's standard error)."""
    rounds = len(samples[a])
    if rounds < 4:
        return float("inf")
    q1, q3 = spread(samples, a, b)
    return (q3 - q1) / paired(samples, a, b) / math.sqrt(rounds)


def spread(samples: dict, a: str, b: str) -> tuple[float, float]:
    """The first and third quartiles of the rounds' ratios a / b (the band :func:`paired` sits in)."""
    ratios = _ratios(samples, a, b)
    if len(ratios) < 2:
        return (ratios[0], ratios[0]) if ratios else (float("nan"), float("nan"))
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    return q1, q3


def medians(samples: dict) -> dict:
    """{name: median seconds} of :func:`timed_rounds`' samples."""
    return {k: statistics.median(v) for k, v in samples.items()}


def ratio_cell(ratio: float, quartiles) -> str:
    """A table cell of a paired ratio and the quartiles of its rounds: ``1.23x (1.10-1.31)``."""
    q1, q3 = quartiles
    return f"{ratio:.2f}x ({q1:.2f}-{q3:.2f})"


def kernels_cell(counts: dict) -> str:
    """A table cell of how many layers run each kernel family: ``conv2d_nhwc 2, dense 1``."""
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def paired(samples: dict, a: str, b: str) -> float:
    """The median over rounds of a's time / b's (> 1: b faster), each ratio from one round."""
    return statistics.median(_ratios(samples, a, b))


def write_json(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def update_section(name: str, markdown: str) -> None:
    """Replace (or append) the block between BEGIN/END markers for ``name``."""
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{markdown.strip()}\n{end}"
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    BENCHMARKS_MD.write_text(text)
