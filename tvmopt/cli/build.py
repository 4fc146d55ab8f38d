"""``tvmopt build``: compile a model with its best records into a deployable .so."""

from __future__ import annotations

from tvmopt.cli.common import input_shapes_option, kernels_option, positive_int, records_option


def add_parser(sub) -> None:
    bld = sub.add_parser(
        "build", help="compile a model with its best records into a deployable .so",
        description="Import, lower and compile a model; each kernel uses its best record (your --records "
                    "first, then the records shipped with tvmopt), tasks without one get a default schedule "
                    "and are listed in one warning. Writes OUT (a TVM module library, loadable with TVM's "
                    "runtime alone) and OUT.json (input/output shapes, tuned and untuned tasks).")
    bld.add_argument("model", help="path to an .onnx file")
    bld.add_argument("-o", "--output", required=True, help="output .so path")
    bld.add_argument("--target", default="llvm", help="target (default: llvm)")
    records_option(bld)
    bld.add_argument("--batch", type=positive_int, default=None,
                     help="batch size: a dynamic batch axis is built at it, a static one rebatched when the "
                          "graph allows (default: the model's, or 1 for a dynamic axis)")
    input_shapes_option(bld)
    kernels_option(bld)
    bld.set_defaults(func=cmd_build)


def cmd_build(args) -> int:
    from pathlib import Path

    from tvmopt.build.deploy import build
    from tvmopt.errors import RecordsError

    if args.records is not None:           # given explicitly: a typo must not build untuned silently
        records = Path(args.records)
        if records.is_file() and records.suffix != ".jsonl":
            raise RecordsError(f"--records {records} is neither a records directory nor a .jsonl records file")
        if not records.exists():
            raise RecordsError(f"records directory '{records}' does not exist (omit --records to build with "
                               f"the default and shipped records)")
    from tvmopt.passes import DetectOptions

    result = build(args.model, args.output, target=args.target, records=args.records, batch=args.batch,
                   options=DetectOptions(kernels=args.kernels, layout=args.layout, winograd=args.winograd),
                   shapes=args.input_shapes)
    tuned = len(result.compiled.tuned) - len(result.untuned)
    print(f"wrote {result.path} ({len(result.compiled.lowered.layers)} layers, {tuned}/{len(result.compiled.tuned)} "
          f"tasks tuned) and {result.path.name}.json")
    return 0
