"""The ``tvmopt`` command: parses arguments and calls the library; nothing else.

Each command lives in its own module of this package (``tune``, ``compare``, ``build``, ``run``,
``inspect``, ``records``, ``rpc``, ``cuda``), with an ``add_parser(sub)`` that registers it.
A user's mistake (``UserError``) is one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from tvmopt.cli.common import Parser
from tvmopt.errors import UserError

#: the commands, in the order ``tvmopt --help`` lists them
COMMANDS = ("tune", "compare", "build", "run", "inspect", "records", "rpc", "cuda")


def _tvm_version() -> str:
    from tvmopt.records.store import tvm_version

    return tvm_version()


def build_parser() -> argparse.ArgumentParser:
    from tvmopt import __version__

    parser = Parser(prog="tvmopt", description="Compile and autotune compressed neural networks with Apache TVM.")
    parser.add_argument("--version", action="version", version=f"tvmopt {__version__} (Apache TVM {_tvm_version()})")
    parser.add_argument("-v", "--verbose", dest="global_verbose", action="store_true",
                        help="as tvmc's -v: tune and compare print a line per measurement; internal errors "
                             "print their traceback")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMANDS:
        importlib.import_module(f"tvmopt.cli.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    warnings.formatwarning = lambda msg, cat, *a, **k: f"tvmopt: warning: {msg}\n"
    if args.global_verbose and hasattr(args, "verbose"):
        args.verbose = True
    try:
        return args.func(args)
    except UserError as e:
        print(f"tvmopt: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        kept = "; measurements so far are in the records" if args.command in ("tune", "compare") else ""
        print(f"tvmopt: interrupted{kept}", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - a bug of ours: one line, the traceback on request
        from tvmopt.errors import debugging, one_line

        if debugging() or args.global_verbose:
            raise
        print(f"tvmopt: internal error: {one_line(e)} (please report it; TVMOPT_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
