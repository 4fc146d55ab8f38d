"""``tvmopt run``: run a built module on an input and time it."""

from __future__ import annotations

from tvmopt.cli.common import positive_int
from tvmopt.errors import UserError


def add_parser(sub) -> None:
    run = sub.add_parser(
        "run", help="run a built .so on an input array and time it",
        description="Load a module written by 'tvmopt build', run it on the array in --input (.npy) or on zeros, "
                    "print the output's shape and checksum and the median latency of --repeat calls.")
    run.add_argument("module", help="path to a .so written by 'tvmopt build'")
    run.add_argument("--input", "--inputs", dest="input", metavar="X.npy", default=None,
                     help="input array, .npy (or an .npz holding one array; --inputs as in tvmc) (default: zeros)")
    run.add_argument("--repeat", type=positive_int, default=20, help="timed calls (default: 20)")
    run.add_argument("--output", "--outputs", dest="output", metavar="Y.npy", default=None,
                     help="save the output here (.npy); a model with several outputs writes an .npz holding "
                          "output_0, output_1, ... in the model's order")
    run.set_defaults(func=cmd_run)


def cmd_run(args) -> int:
    import numpy as np

    from tvmopt.build.deploy import load

    module = load(args.module)
    if args.input:
        try:
            x = np.load(args.input, allow_pickle=False)
            if isinstance(x, np.lib.npyio.NpzFile):
                arrays = [x[name] for name in x.files]
                if len(arrays) != 1:
                    raise UserError(f"input {args.input} holds {len(arrays)} arrays ({', '.join(x.files)}); "
                                    f"the module takes one input")
                x = arrays[0]
        except (OSError, ValueError, EOFError) as exc:
            raise UserError(f"cannot read input {args.input} as a .npy array ({type(exc).__name__}: "
                            f"{str(exc)[:120]})") from None
        if not isinstance(x, np.ndarray) or x.dtype != np.float32:
            kind = x.dtype if isinstance(x, np.ndarray) else type(x).__name__
            raise UserError(f"input {args.input} holds {kind}; the module takes float32 "
                            f"(convert it with x.astype(np.float32))")
    elif module.input_shape:
        x = np.zeros(module.input_shape, np.float32)
    else:
        raise UserError("no --input given and the module has no shape description (.json)")
    y = module(x)
    outputs = y if isinstance(y, tuple) else (y,)
    seconds = module.time(x, args.repeat)
    for i, out in enumerate(outputs):
        label = "output" if len(outputs) == 1 else f"output {i}:"
        print(f"{label} shape {out.shape}, sum {float(out.sum()):.6g}, "
              f"first {np.round(out.reshape(-1)[:4], 5).tolist()}")
    print(f"latency: {seconds * 1e3:.3f} ms (median of {args.repeat})")
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
