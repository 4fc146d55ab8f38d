"""Shared by the benchmark scripts: JSON results and their sections of BENCHMARKS.md."""

from __future__ import annotations

import json
import platform
import re
import statistics
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"


def machine() -> dict:
    """Where a result was measured (written into every JSON and table)."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        commit = ""
    return {"cpu": cpu, "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "commit": commit}


def vector_width(spec) -> str:
    """``avx2`` or ``avx512``: the vector width of an LLVM target (the host's for others). The
    benchmarks whose figures depend on it keep one JSON and one BENCHMARKS.md section per width,
    so the CPUs this project runs on stand side by side."""
    from tvmopt.schedules import isa

    return "avx512" if (isa.for_target(spec) or isa.host()).lanes >= 16 else "avx2"


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
