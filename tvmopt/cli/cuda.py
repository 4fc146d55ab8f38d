"""``tvmopt cuda export|ingest|replay-table|check``: the CUDA batch path on the command line.

Only argument parsing and calls into tvmopt.measure.cuda / tvmopt.measure.cuda_batch.
"""

from __future__ import annotations

import argparse
import json

from tvmopt.cli.common import Parser, positive_int
from tvmopt.errors import UserError

EPILOG = """\
measuring on a GPU host without TVM (python3 with numpy and CuPy, or torch + nvcc):
  tvmopt cuda export gemm:1024x1024x1024 --target 'cuda -arch=sm_90' --sample 64 --out batch1
  # copy batch1/ to the GPU host (tvmopt/measure/remote_cuda.py alone is enough there):
  python3 -m tvmopt.measure.remote_cuda batch1        # or: python3 remote_cuda.py batch1
  # copy batch1/ back (it now holds results.json):
  tvmopt cuda ingest batch1 --records ./records
  # replay table of the CUDA GEMM sub-space (export it whole with --replay-subspace first):
  tvmopt cuda replay-table gemm:1024x1024x1024 --target 'cuda -arch=sm_90' --records ./records --out t.json
  tvmopt compare --replay t.json
"""


def add_parser(sub) -> None:
    """Register ``tvmopt cuda ...`` on the subparsers ``sub`` of the main parser."""

    cuda = sub.add_parser("cuda", help="CUDA: export candidates for a GPU host, ingest its results, check a config",
                          description="CUDA candidates are compiled here (no GPU needed) and measured on a GPU "
                                      "host by the standalone script tvmopt/measure/remote_cuda.py.",
                          epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = cuda.add_subparsers(dest="action", metavar="ACTION", parser_class=Parser, required=True)

    exp = actions.add_parser("export", help="compile configs of a workload's CUDA space into a batch directory")
    exp.add_argument("workload", help="workload key, e.g. gemm:1024x1024x1024, xnor_dense:64x1024x1024")
    exp.add_argument("--target", default="cuda -arch=sm_90", help="'cuda -arch=sm_80' or sm_90 (default: sm_90)")
    exp.add_argument("--out", required=True, metavar="DIR", help="new (or empty) batch directory")
    which = exp.add_mutually_exclusive_group()
    which.add_argument("--sample", type=positive_int, default=16, metavar="N",
                       help="the space's start config plus N-1 random ones (default: 16)")
    which.add_argument("--replay-subspace", action="store_true",
                       help="every config of the CUDA GEMM replay sub-space (GEMM family only)")
    which.add_argument("--config", metavar="JSON", help="one config as a JSON list")
    exp.add_argument("--seed", type=int, default=0, help="seed of the random configs and of the inputs")
    exp.add_argument("--repeat", type=positive_int, default=5, help="timing samples per candidate (default: 5)")
    exp.add_argument("--timeout", type=float, default=10.0, metavar="S", help="seconds per candidate on the GPU host")
    exp.set_defaults(func=cmd_export)

    ing = actions.add_parser("ingest", help="append a measured batch's results to the records")
    ing.add_argument("directory", metavar="DIR", help="a batch directory holding results.json")
    ing.add_argument("--records", metavar="DIR", default=None,
                     help="records directory (default: ~/.cache/tvmopt or $TVMOPT_RECORDS)")
    ing.set_defaults(func=cmd_ingest)

    rep = actions.add_parser("replay-table", help="write a replay table of the CUDA GEMM sub-space from the records")
    rep.add_argument("workload", help="GEMM-family workload key")
    rep.add_argument("--target", default="cuda -arch=sm_90")
    rep.add_argument("--records", metavar="DIR", default=None)
    rep.add_argument("--out", required=True, metavar="TABLE.json")
    rep.add_argument("--measured-on", default="", help="the GPU, for the table's header")
    rep.set_defaults(func=cmd_replay_table)

    chk = actions.add_parser("check", help="compile one config, print its launches, check bounds and nvcc")
    chk.add_argument("workload")
    chk.add_argument("--target", default="cuda -arch=sm_90")
    chk.add_argument("--config", metavar="JSON", help="config as a JSON list (default: the space's start config)")
    chk.add_argument("--source", metavar="FILE.cu", help="also write the CUDA C here")
    chk.set_defaults(func=cmd_check)


def _config(text: str):
    from tvmopt.schedules.space import config_from_json

    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"--config '{text}' is not valid JSON ({e.msg})") from None
    if not isinstance(data, list):
        raise UserError(f"--config '{text}' must be a JSON list, one entry per knob")
    return config_from_json(data)


def _configs(args, task):
    import random

    from tvmopt.schedules.gemm import cuda_replay_subspace

    if args.config:
        return [_config(args.config)]
    if args.replay_subspace:
        if not hasattr(task.base, "shape") or task.family not in ("gemm", "dense", "bgemm"):
            raise UserError(f"--replay-subspace: '{task.key}' is not a GEMM-family workload")
        return list(cuda_replay_subspace(task.base.shape).all())
    rng = random.Random(args.seed)
    configs = [task.space.initial()]
    for _ in range(50 * args.sample):
        if len(configs) >= min(args.sample, task.space.size()):
            break
        c = task.space.random(rng)
        if c not in configs:
            configs.append(c)
    return configs


def cmd_export(args) -> int:
    from tvmopt.measure.cuda import cuda_task
    from tvmopt.measure.cuda_batch import export_batch

    task = cuda_task(args.workload)
    configs = _configs(args, task)
    batch = export_batch(task.key, configs, args.target, args.out, seed=args.seed, repeat=args.repeat,
                         timeout_s=args.timeout)
    print(f"{args.out}: {len(batch['candidates'])} candidates of {task.space.name} for {batch['target']}, "
          f"{len(batch['rejected'])} rejected (launch bounds or lowering); next: python3 -m tvmopt.measure.remote_cuda {args.out}")
    return 0


def cmd_ingest(args) -> int:
    from tvmopt.measure.cuda_batch import ingest

    rows = ingest(args.directory, args.records)
    ok = [r for r in rows if r.error == "ok"]
    best = min(ok, key=lambda r: r.cost) if ok else None
    print(f"appended {len(rows)} records ({len(ok)} ok)" +
          (f"; best {best.cost * 1e6:.1f} us: {json.dumps(list(best.config))}" if best else ""))
    return 0


def cmd_replay_table(args) -> int:
    from tvmopt.measure.cuda_batch import write_replay_table

    table = write_replay_table(args.workload, args.target, args.out, args.records, args.measured_on,
                               command=f"tvmopt cuda replay-table {args.workload} --target '{args.target}'")
    print(f"wrote {args.out} ({table['header']['configs']} configs)")
    return 0


def cmd_check(args) -> int:
    from tvmopt.measure.cuda import check_launch_bounds, compile_candidate, cuda_task, nvcc_check

    task = cuda_task(args.workload)
    config = _config(args.config) if args.config else task.space.initial()
    cand = compile_candidate(task.key, config, args.target)
    for k in cand.kernels:
        print(f"{k.name}: grid {k.grid} block {k.block} ({k.threads} threads), {k.shared_bytes} B shared, "
              f"params {', '.join(k.params)}")
    problems = check_launch_bounds(cand)
    print("launch bounds: " + ("; ".join(problems) if problems else "ok"))
    result = nvcc_check(cand.source, cand.arch)
    regs = ", ".join(f"{n} {r}" for n, r in result.registers.items())
    print("nvcc: " + ("skipped: " + result.message if result.skipped else
                      ("ok" if result.ok else "FAILED: " + result.message) + (f" (registers: {regs})" if regs else "")))
    if args.source:
        with open(args.source, "w", encoding="utf-8") as f:
            f.write(cand.source)
    return 0 if not problems and (result.ok or result.skipped) else 1
