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
    run.add_argument("--input", metavar="X.npy", default=None, help="input array (default: zeros)")
    run.add_argument("--repeat", type=positive_int, default=20, help="timed calls (default: 20)")
    run.add_argument("--output", metavar="Y.npy", default=None, help="save the output here")
    run.set_defaults(func=cmd_run)


def cmd_run(args) -> int:
    import numpy as np

    from tvmopt.build.deploy import load

    module = load(args.module)
    if args.input:
        try:
            x = np.load(args.input, allow_pickle=False)
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
    seconds = module.time(x, args.repeat)
    print(f"output shape {y.shape}, sum {float(y.sum()):.6g}, first {np.round(y.reshape(-1)[:4], 5).tolist()}")
    print(f"latency: {seconds * 1e3:.3f} ms (median of {args.repeat})")
    if args.output:
        from tvmopt.build.deploy import write_atomically

        write_atomically(args.output, lambda f: np.save(f, y))
    return 0
