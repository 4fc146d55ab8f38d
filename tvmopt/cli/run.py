"""``tvmopt run``: run a built module on an input and time it."""

from __future__ import annotations

from tvmopt.cli.common import positive_int
from tvmopt.errors import UserError


def add_parser(sub) -> None:
    run = sub.add_parser(
        "run", help="run a built .so on an input array and time it",
        description="Load a module written by 'tvmopt build', run it on the array in --input (.npy) or on zeros, "
                    "print the output's shape and checksum and the median latency of --repeat calls; "
                    "--profile adds each kernel's time.")
    run.add_argument("module", help="path to a .so written by 'tvmopt build'")
    run.add_argument("--input", "--inputs", dest="input", metavar="X.npy", default=None,
                     help="input array (.npy), or an .npz with one array per model input, by name (--inputs as in "
                          "tvmc) (default: zeros)")
    run.add_argument("--repeat", type=positive_int, default=20, help="timed calls (default: 20)")
    run.add_argument("--profile", action="store_true",
                     help="also time each kernel (fused layer) over --repeat runs and print them slowest first, "
                          "as tvmc run --profile does")
    run.add_argument("--output", "--outputs", dest="output", metavar="Y.npy", default=None,
                     help="save the output here (.npy); a model with several outputs writes an .npz holding "
                          "output_0, output_1, ... in the model's order")
    run.set_defaults(func=cmd_run)


def cmd_run(args) -> int:
    import numpy as np

    from tvmopt.build.deploy import load

    module = load(args.module)
    specs = module.inputs
    if args.input:
        arrays = _read_inputs(args.input, specs)
    elif specs:
        arrays = [np.zeros(i.shape, i.dtype) for i in specs]
    else:
        raise UserError("no --input given and the module has no shape description (.json)")
    y = module(*arrays)
    outputs = y if isinstance(y, tuple) else (y,)
    seconds = module.time(*arrays, repeat=args.repeat)
    for i, out in enumerate(outputs):
        label = "output" if len(outputs) == 1 else f"output {i}:"
        print(f"{label} shape {out.shape}, sum {float(out.sum()):.6g}, "
              f"first {np.round(out.reshape(-1)[:4], 5).tolist()}")
    print(f"latency: {seconds * 1e3:.3f} ms (median of {args.repeat})")
    if args.profile:
        print()
        print(module.profile(*arrays, runs=args.repeat).table())
    if args.output:
        from tvmopt.build.deploy import write_atomically

        if len(outputs) == 1:
            write_atomically(args.output, lambda f: np.save(f, y))
        else:
            path = args.output if args.output.endswith(".npz") else args.output.removesuffix(".npy") + ".npz"
            write_atomically(path, lambda f: np.savez(f, **{f"output_{i}": o for i, o in enumerate(outputs)}))
            if path != args.output:
                print(f"{len(outputs)} outputs: wrote {path}")
    return 0


def _read_inputs(path: str, specs) -> list:
    """The arrays of ``--input``: one .npy, or an .npz holding one array per input (by the
    model's input names, or in order), each of the element type the model declares."""
    import numpy as np

    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise UserError(f"cannot read input {path} as a .npy array ({type(exc).__name__}: {str(exc)[:120]})") from None
    if isinstance(data, np.ndarray):
        arrays = [data]
    else:
        names = list(data.files)
        if specs and set(names) == {s.name for s in specs}:
            arrays = [data[s.name] for s in specs]
        elif specs and len(names) != len(specs):
            raise UserError(f"input {path} holds {len(names)} array(s) ({', '.join(names)}); the module takes "
                            f"{len(specs)}: {', '.join(s.name for s in specs)}")
        else:
            arrays = [data[n] for n in names]
    if specs and len(arrays) != len(specs):
        raise UserError(f"input {path} holds one array; the module takes {len(specs)} inputs "
                        f"({', '.join(s.name for s in specs)}): pass an .npz with one array per name")
    for spec, a in zip(specs, arrays):
        if a.dtype != np.dtype(spec.dtype):
            where = path if len(specs) == 1 else f"'{spec.name}' in {path}"
            raise UserError(f"input {where} holds {a.dtype}; the module takes {spec.dtype} "
                            f"(convert it with x.astype(np.{spec.dtype}))")
    return arrays
