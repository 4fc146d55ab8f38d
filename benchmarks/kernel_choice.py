"""Never slower than dense (issue 18): every bundled digits model built three ways, timed in one run.

    python benchmarks/kernel_choice.py [--batches 1,16] [--rounds 7] [--models mlp_binary,cnn_shift]
    python benchmarks/kernel_choice.py --sweep      # the per-layer table the prediction is read from

For each model (compact ``ai.tvmopt`` export and plain export) and batch, three builds of the same
file with the same records (the shipped ones): ``--kernels compressed`` (every structured layer on
its compressed kernel, as before this policy), ``--kernels dense`` (compression detection off:
every layer on the dense kernels) and ``--kernels auto`` (the default: the compressed kernel only
where the records or the prediction of ``tvmopt.passes.choose`` say it is at least as fast), and
onnxruntime on the same file's plain export. Timed interleaved, numpy in and out: the median of
the rounds' own ratios, ``--rounds`` rounds and more while auto vs dense straddles 0.95
(``report.timed_rounds``). The goal: auto is never slower than dense (ratio >= 0.95, the noise band).
Writes benchmarks/results/kernel_choice_<cpu>.json and the ``kernel_choice_<cpu>`` section of BENCHMARKS.md (one per CPU kind).

``--sweep`` instead measures single layers (N = K in 256, 1024, 4096; 1, 16 and 128 rows): each
compressed kernel on its default config against the dense kernel of the same layer, through the
measurer (best of its repeats), and writes the ``kernel_choice_sweep_<width>`` section (one per
vector width, ``avx2`` or ``avx512``): the numbers ``tvmopt.passes.choose`` predicts from.
Run it alone on the machine: another process on the two cores skews the ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import warnings
from collections import Counter

import numpy as np
from report import RESULTS, ROOT, machine, paired, timed_rounds, update_section, cpu_kind, write_json

MODELS = ROOT / "examples" / "models"
POLICIES = ("compressed", "dense", "auto")


def _models(selected):
    names = sorted(p.name.removeprefix("digits_").removesuffix(".onnx") for p in MODELS.glob("digits_*.onnx")
                   if not p.name.endswith(".plain.onnx"))
    return [n for n in names if not selected or n in selected]


#: rows of X: a vector, a small batch, the encoder's 128 tokens
SWEEP_ROWS = (1, 16, 128)
SWEEP_FAMILIES = ("binary_dense", "ternary_dense", "shift_dense", "nm_decode_dense", "hashed_dense", "hashed_block_dense",
                  "codebook_dense",
                  "binary_rowlut_dense", "ternary_rowlut_dense")


def _sweep_key(family: str, m: int, n: int) -> str:
    extra = {"nm_decode_dense": "x2x4", "hashed_dense": f"x{n * n // 8}x1",
             "hashed_block_dense": f"x{n * n // 8}x1x16", "codebook_dense": "x256"}.get(family, "")
    return f"{family}:{m}x{n}x{n}{extra}"


def sweep(target_text: str = "llvm") -> int:
    from tvmopt.measure.local import LocalMeasurer
    from tvmopt.ops.row_tables import takes_rows
    from tvmopt.ops.task import get_task
    from tvmopt.schedules import isa
    from tvmopt.target import parse_target

    target = parse_target(target_text)
    name = f"kernel_choice_sweep_{cpu_kind(target)}"
    rows = []
    with LocalMeasurer(target) as measurer:
        for n in (256, 1024, 4096):
            for m in SWEEP_ROWS:
                # row tables need 8 rows or more (one vector of rows)
                families = [f for f in SWEEP_FAMILIES if "rowlut" not in f or takes_rows(m)]
                keys = {"dense": f"dense:{m}x{n}x{n}", **{f: _sweep_key(f, m, n) for f in families}}
                seconds = {}
                for family, key in keys.items():
                    with isa.use(isa.for_target(target)):        # the target's start, not the host's
                        task = get_task(key)
                    (result,) = measurer.measure(key, [task.space.initial()])
                    seconds[family] = min(result.costs) if result.costs else float("inf")
                rows.append({"n": n, "m": m, "seconds": seconds})
                print(f"n={n} m={m}: " + ", ".join(f"{f.removesuffix('_dense')} {seconds['dense'] / seconds[f]:.2f}x"
                                                 for f in families), flush=True)
    info = machine()
    info["target"] = target.key
    write_json(name, {"machine": info, "rows": rows})
    head = "| N = K | rows | dense µs | " + " | ".join(f.removesuffix("_dense") for f in SWEEP_FAMILIES) + " |"
    table = [head, "|---:|---:|---:|" + "---:|" * len(SWEEP_FAMILIES)]
    for r in rows:
        s = r["seconds"]
        table.append(f"| {r['n']} | {r['m']} | {s['dense'] * 1e6:.1f} | "
                     + " | ".join(f"{s['dense'] / s[f]:.2f}x" if f in s else "—" for f in SWEEP_FAMILIES) + " |")
    update_section(name, (
        f"## Compressed vs dense, one layer at a time (`benchmarks/kernel_choice.py --sweep`)\n\n"
        f"{info['cpu']} ({target.key}), {info['date']}, commit {info['commit']}. Each kernel on its default config "
        f"(what an untuned build runs), the dense kernel of the same layer likewise; best of the measurer's repeats; "
        f"ratio = dense time / compressed time (> 1: compressed is faster). `tvmopt.passes.choose` predicts from "
        f"this table where no records decide.\n\n" + "\n".join(table)))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--models", default="", help="comma-separated (default: every bundled model)")
    parser.add_argument("--sweep", action="store_true", help="the per-layer table instead (see above)")
    parser.add_argument("--target", default="llvm",
                        help="LLVM target of the builds (default: this host); 'llvm -mcpu=znver3 -num-cores=2' "
                             "measures AVX2 code on an AVX-512 machine (its section is the avx2 one)")
    parser.add_argument("--update", action="store_true",
                        help="keep the earlier rows (same target) of the models this run does not measure")
    args = parser.parse_args()
    if args.sweep:
        return sweep(args.target)
    import onnxruntime as ort

    from tvmopt.build.compile import compile_model
    from tvmopt.passes import DetectOptions
    from tvmopt.target import parse_target

    target = parse_target(args.target)
    batches = [int(b) for b in args.batches.split(",")]
    commit = machine()["commit"]
    rows = []
    for name in _models([m for m in args.models.split(",") if m]):
        for form in ("compact", "plain"):
            path = MODELS / f"digits_{name}{'.plain' if form == 'plain' else ''}.onnx"
            plain = MODELS / f"digits_{name}.plain.onnx"
            if not path.exists() or (form == "plain" and not plain.exists()):
                continue
            plain = plain if plain.exists() else path          # fp32 models: the file is plain already
            for batch in batches:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    builds = {p: compile_model(path, target, batch=batch, options=DetectOptions(kernels=p))
                              for p in POLICIES}
                x = np.random.default_rng(0).standard_normal(builds["auto"].imported.input_shape).astype(np.float32)
                sess = ort.InferenceSession(str(plain), providers=["CPUExecutionProvider"])
                feed = {sess.get_inputs()[0].name: x}
                ref = sess.run(None, feed)[0]
                for p, c in builds.items():
                    err = float(np.abs(c(x) - ref).max() / max(1.0, np.abs(ref).max()))
                    assert err < 1e-3, (name, form, p, err)
                runs = {p: (lambda c=c: c(x)) for p, c in builds.items()}
                runs["onnxruntime"] = lambda: sess.run(None, feed)
                # a fresh order each round, each contender after the others' spinning threads went
                # quiet (onnxruntime's, timed before a build, made it read up to 600x slower on these
                # microsecond-sized models); rounds go on while auto vs dense straddles 0.95
                samples = timed_rounds(runs, args.rounds, 0.03, settle=("dense", "auto"),
                                       max_rounds=3 * args.rounds, clear_of=0.95)
                t = {k: statistics.median(v) for k, v in samples.items()}
                spread = {k: (max(v) - min(v)) / statistics.median(v) for k, v in samples.items()}
                layers = builds["auto"].lowered.layers
                rows.append({"model": name, "form": form, "batch": batch, "seconds": t, "spread": spread,
                             "rounds": len(samples["auto"]), "paired": True,
                             "auto_vs_dense": paired(samples, "dense", "auto"),
                             "auto_vs_compressed": paired(samples, "compressed", "auto"),
                             "compressed_vs_dense": paired(samples, "dense", "compressed"),
                             "auto_vs_ort": paired(samples, "onnxruntime", "auto"),
                             "auto_layers": [f"{l.kernel.split(':')[0]}" for l in layers if l.choice],
                             "commit": commit})
                r = rows[-1]
                print(f"{name:<14} {form:<8} b{batch:<3} auto/dense {r['auto_vs_dense']:.2f}x  "
                      f"auto/compressed {r['auto_vs_compressed']:.2f}x  compressed/dense {r['compressed_vs_dense']:.2f}x  "
                      f"auto/ort {r['auto_vs_ort']:.2f}x", flush=True)
    info = machine()
    info["target"] = target.key
    name = f"kernel_choice_{cpu_kind(target)}"
    earlier = RESULTS / f"{name}.json"
    if args.update and earlier.exists():
        old = json.loads(earlier.read_text())
        if old["machine"].get("target") == target.key:
            measured = {r["model"] for r in rows}
            kept = [dict(r, commit=r.get("commit", old["machine"]["commit"])) for r in old["rows"]
                    if r["model"] not in measured]
            rows = sorted(kept + rows, key=lambda r: (r["model"], r["form"], r["batch"]))
    write_json(name, {"machine": info, "rounds": args.rounds, "rows": rows})
    never_slower = sum(r["auto_vs_dense"] >= 0.95 for r in rows)
    table = ["| model | export | batch | auto vs dense | auto vs compressed | compressed vs dense | auto vs onnxruntime "
             "| kernels auto chose |", "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        mark = "" if r["auto_vs_dense"] >= 0.95 else " **slower**"
        table.append(f"| {r['model']} | {r['form']} | {r['batch']} | {r['auto_vs_dense']:.2f}x{mark} | "
                     f"{r['auto_vs_compressed']:.2f}x | {r['compressed_vs_dense']:.2f}x | {r['auto_vs_ort']:.2f}x | "
                     f"{', '.join(r['auto_layers']) or '-'} |")
    worst = max((max(r["spread"].values()) for r in rows), default=0.0)
    text = (f"## Never slower than dense: the kernel choice, {target.key} (`benchmarks/kernel_choice.py`)\n\n"
            f"{info['cpu']} ({target.key}), {info['date']}, commit {_commits(rows, info['commit'])}. Each bundled "
            f"model built three "
            f"ways from the same file and the shipped records: `--kernels compressed` (every structured layer on its "
            f"compressed kernel), `--kernels dense` (detection off) and `--kernels auto` (the default). Ratios: the "
            f"other build's time over auto's (> 1: auto is faster), the median of the rounds' own ratios, each round in "
            f"a fresh order after the other runtimes' threads went quiet; {args.rounds} rounds, more (up to "
            f"{3 * args.rounds}) while auto vs dense straddled 0.95 ({max(r['rounds'] for r in rows) if rows else 0} "
            f"at most); the largest round-to-round spread of any timing was {worst:.0%}. Goal: auto >= 0.95x dense everywhere.\n\n"
            f"auto was at least as fast as dense (within 5%) on {never_slower} of {len(rows)} rows.\n\n"
            + "\n".join(table))
    update_section(name, text)
    return 0 if never_slower == len(rows) else 1


def _commits(rows, current: str) -> str:
    """The commit of the run, or of each set of rows where earlier rows were kept (``--update``)."""
    counts = Counter(r.get("commit", current) for r in rows)
    if len(counts) <= 1:
        return current
    return ", ".join(f"{c} ({n} rows)" for c, n in counts.items())


if __name__ == "__main__":
    sys.exit(main())
