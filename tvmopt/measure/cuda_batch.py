"""Measuring CUDA candidates on a GPU host without TVM: export a batch, ingest its results.

``export_batch`` compiles configs of a task's CUDA space here, drops those that break the
launch bounds (kept in the batch as ``rejected``), and writes a directory that
``python3 -m tvmopt.measure.remote_cuda DIR`` measures on the GPU host (see that module for the
format). ``ingest`` turns ``DIR/results.json`` into ordinary records (``<records>/cuda-sm_XX.jsonl``,
the same format as local measurements; rejected configs become ``build_error`` records).
``write_replay_table`` makes a replay table of the CUDA GEMM sub-space from those records, in
the format ``ReplayMeasurer`` reads, so every tuner can be compared on it without a GPU.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Iterable

import numpy as np

from tvmopt.records.store import Record, RecordCache, tvm_version
from tvmopt.measure.cuda import CudaError, check_launch_bounds, compile_candidate, cuda_task
from tvmopt.measure.remote_cuda import FORMAT, RESULTS_FORMAT
from tvmopt.schedules.space import Config, config_from_json, config_to_json
from tvmopt.target import TargetSpec, parse_target

#: limits of what one batch may hold (a GPU host call carries at most 64 MiB)
MAX_BATCH_BYTES = 60 * 2 ** 20


def export_batch(task_key: str, configs: Iterable[Config], target: TargetSpec | str, directory: str | Path,
                 seed: int = 0, repeat: int = 5, timeout_s: float = 10.0, tuner: str = "export",
                 progress=None) -> dict:
    """Compile ``configs`` of ``task_key``'s CUDA space and write a batch to ``directory``
    (created; it must be empty or absent). Returns the batch description (``batch.json``)."""
    spec = parse_target(target) if isinstance(target, str) else target
    if spec.kind != "cuda":
        raise CudaError(f"target '{spec.key}' is not a CUDA target; use e.g. 'cuda -arch=sm_90'")
    task = cuda_task(task_key)
    configs = list(dict.fromkeys(configs))
    for c in configs:
        if not task.space.contains(c):
            raise CudaError(f"config {c} is not in the space {task.space.name}")
    out = Path(directory)
    if out.exists() and any(out.iterdir()):
        raise CudaError(f"batch directory '{out}' is not empty; give a new directory")
    out.mkdir(parents=True, exist_ok=True)
    inputs = task.make_inputs(np.random.default_rng(seed))
    expected = task.reference(inputs)
    candidates, rejected, names = [], [], None
    for index, config in enumerate(configs):
        start = time.perf_counter()
        try:
            cand = compile_candidate(task.key, config, spec)
        except CudaError:
            raise                          # the user's mistake, not the candidate's
        except Exception as e:  # noqa: BLE001 - a config TVM cannot lower is a failed candidate
            from tvmopt.errors import one_line

            rejected.append({"config": config_to_json(config), "error": "build_error", "message": one_line(e),
                             "build_s": time.perf_counter() - start})
            continue
        names = names or (cand.inputs, cand.output)
        problems = check_launch_bounds(cand)
        if problems:
            rejected.append({"config": config_to_json(config), "error": "build_error",
                             "message": "launch bounds: " + "; ".join(problems), "build_s": time.perf_counter() - start})
            continue
        cid = f"c{index:05d}"
        (out / f"{cid}.cu").write_text(cand.source)
        candidates.append({"id": cid, "task": task.key, "config": config_to_json(config), "source": f"{cid}.cu",
                           "kernels": [{"name": k.name, "params": k.params, "grid": list(k.grid),
                                        "block": list(k.block), "shared_bytes": k.shared_bytes} for k in cand.kernels],
                           "workspaces": {n: list(v) for n, v in cand.workspaces.items()},
                           "build_s": round(time.perf_counter() - start, 4)})
        if progress is not None:
            progress(index + 1, len(configs))
    input_names, output_name = names or ([f"in{i}" for i in range(len(inputs))], "out")
    files = []
    for name, array in zip(input_names, inputs):
        np.save(out / f"input_{name}.npy", array)
        files.append({"name": name, "file": f"input_{name}.npy", "dtype": str(array.dtype), "shape": list(array.shape)})
    np.save(out / "reference.npy", expected)
    batch = {
        "format": FORMAT, "id": f"{task.key}@{spec.key}@{time.strftime('%Y%m%d-%H%M%S')}", "target": spec.key,
        "arch": spec.config["arch"], "space": task.space.fingerprint(), "space_name": task.space.name, "tuner": tuner,
        "repeat": repeat, "min_sample_ms": 1.0, "timeout_s": timeout_s, "seed": seed, "tvm": tvm_version(),
        "tasks": {task.key: {"inputs": files, "tolerance": list(task.tolerance()),
                             "output": {"name": output_name, "file": "reference.npy", "dtype": str(expected.dtype),
                                        "shape": list(expected.shape)}}},
        "candidates": candidates, "rejected": rejected,
    }
    (out / "batch.json").write_text(json.dumps(batch, indent=1))
    size = sum(p.stat().st_size for p in out.iterdir())
    if size > MAX_BATCH_BYTES:
        shutil.rmtree(out)
        raise CudaError(f"the batch would take {size / 2 ** 20:.0f} MiB (> {MAX_BATCH_BYTES / 2 ** 20:.0f} MiB a GPU "
                        f"host call carries); export fewer configs or a smaller workload")
    return batch


def ingest(directory: str | Path, records: str | Path | None = None) -> list[Record]:
    """Append the results of a measured batch (and its rejected configs) to the records."""
    out = Path(directory)
    if not (out / "batch.json").is_file():
        raise CudaError(f"'{out}' is not a batch directory (no batch.json)")
    try:
        batch = json.loads((out / "batch.json").read_text())
        results = json.loads((out / "results.json").read_text())
    except FileNotFoundError as e:
        raise CudaError(f"'{e.filename}' does not exist: run 'python3 -m tvmopt.measure.remote_cuda {out}' on the GPU "
                        f"host and copy the directory back") from None
    except (OSError, ValueError) as e:
        raise CudaError(f"cannot read the batch in '{out}' ({type(e).__name__}: {e})") from None
    if batch.get("format") != FORMAT or results.get("format") != RESULTS_FORMAT:
        raise CudaError(f"'{out}' is not a tvmopt CUDA batch with results (formats {batch.get('format')}, "
                        f"{results.get('format')})")
    built = {c["id"]: c for c in batch["candidates"]}
    rows = []
    for r in results["results"]:
        if r["id"] not in built:
            raise CudaError(f"results.json in '{out}' has candidate '{r['id']}', which is not in its batch.json")
        costs = tuple(float(c) for c in r["costs"]) if r["error"] == "ok" else ()
        if r["error"] == "ok" and (not costs or not all(math.isfinite(c) and c > 0 for c in costs)):
            raise CudaError(f"results.json in '{out}': candidate '{r['id']}' is ok but has no positive costs")
        rows.append(Record(r["task"], batch["target"], config_from_json(r["config"]), costs, r["error"],
                           batch["space"], batch["tuner"], float(built[r["id"]]["build_s"]) + float(r["compile_s"]),
                           float(r["run_s"]), r.get("message", "")))
    for task_key in batch["tasks"]:
        for rej in batch["rejected"]:
            rows.append(Record(task_key, batch["target"], config_from_json(rej["config"]), (), rej["error"],
                               batch["space"], batch["tuner"], float(rej["build_s"]), 0.0, rej["message"]))
    current = {t: cuda_task(t).space.fingerprint() for t in batch["tasks"]}
    if any(fp != batch["space"] for fp in current.values()):
        raise CudaError(f"the batch in '{out}' was exported from another version of the CUDA space "
                        f"({batch['space']}, now {sorted(set(current.values()))}); its results would not be used")
    cache = RecordCache(records)
    cache.ensure_writable()
    cache.append(rows)
    return rows


def write_replay_table(task_key: str, target: TargetSpec | str, path: str | Path, records: str | Path | None = None,
                       measured_on: str = "", command: str = "") -> dict:
    """A replay table of the CUDA GEMM sub-space (``schedules.gemm.cuda_replay_subspace``)
    from the records: every config of the sub-space must have a record (measured or rejected)."""
    from tvmopt.schedules.gemm import cuda_replay_subspace

    spec = parse_target(target) if isinstance(target, str) else target
    task = cuda_task(task_key)
    if not hasattr(task.base, "shape"):
        raise CudaError(f"workload '{task_key}': replay tables are made for the GEMM family only")
    space = cuda_replay_subspace(task.base.shape)
    done: dict = {}
    for r in RecordCache(records).load(spec.key, task.key):
        if r.space == task.space.fingerprint() and space.contains(r.config):
            best = done.get(r.config)
            done[r.config] = r if best is None or r.cost < best.cost else best
    missing = [c for c in space.all() if c not in done]
    if missing:
        raise CudaError(f"{len(missing)} of {space.size()} configs of the replay sub-space have no record for "
                        f"{task.key} on {spec.key} (first: {missing[0]}); export and measure them first")
    entries = [[config_to_json(c), done[c].cost if math.isfinite(done[c].cost) else None, done[c].error,
                round(done[c].build_s + done[c].run_s, 4)] for c in space.all()]
    header = {"workload": task.key, "target": spec.key, "space": space.fingerprint(), "configs": len(entries),
              "restriction": "schedules.gemm.cuda_replay_subspace", "measured_on": measured_on,
              "date": time.strftime("%Y-%m-%d"), "tvm": tvm_version(),
              "how": "tvmopt cuda export + python3 -m tvmopt.measure.remote_cuda (CUDA events, median of the samples, "
                     "each candidate checked against numpy) + tvmopt cuda ingest; cost in seconds; null = failed; "
                     "entries are [config, cost, error kind, build+run seconds]",
              "command": command}
    table = {"header": header, "entries": entries}
    Path(path).write_text(json.dumps(table, separators=(",", ":")) + "\n")
    return table
