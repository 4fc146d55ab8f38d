"""What the commands share: the one-line argparse errors, argument types, the records and RPC
options and the measurer they ask for."""

from __future__ import annotations

import argparse
import math

from tvmopt.errors import UserError

#: more trials than any space here needs measuring; a larger number is a typo
MAX_TRIALS = 1_000_000


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def input_shapes(text: str) -> dict:
    from tvmopt.model.frontend import parse_input_shapes

    try:
        return parse_input_shapes(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def input_shapes_option(parser, mode: str = "") -> None:
    """``--input-shapes``, as tvmc's: whole shapes of named inputs (symbolic axes besides the batch)."""
    parser.add_argument("--input-shapes", type=input_shapes, default=None, metavar='"NAME:[D1,D2,...] ..."',
                        help=f"{mode}shapes of named inputs, as in tvmc (\"input_ids:[1,128] attention_mask:[1,128]\"): "
                             "sets their symbolic axes (a dynamic sequence length; an axis of the same name on "
                             "another input follows) and their batch; static axes must agree")


def trials(text: str) -> int:
    value = positive_int(text)
    if value > MAX_TRIALS:
        raise argparse.ArgumentTypeError(f"{value} is more than {MAX_TRIALS:,} trials (days of measuring); "
                                         f"a budget of 100-2000 is typical")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def tuner_spec(text: str) -> str:
    """A tuner variant with optional settings (``gbfs:rho=8``), checked before anything runs."""
    from tvmopt.tuners import check_tuner

    try:
        return check_tuner(text)
    except UserError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


class Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and exit 2 like every other user error."""

    def error(self, message):
        self.exit(2, f"tvmopt: error: {message} (see '{self.prog} --help')\n")


def records_option(parser) -> None:
    parser.add_argument("--records", "--tuning-records", dest="records", metavar="DIR", default=None,
                        help="records directory (default: ~/.cache/tvmopt or $TVMOPT_RECORDS; build also takes one "
                             ".jsonl file, like tvmc's --tuning-records)")


def rpc_options(parser) -> None:
    parser.add_argument("--rpc-tracker", metavar="HOST:PORT", default=None,
                        help="measure on the RPC servers of this tracker (builds stay local and parallel)")
    parser.add_argument("--rpc-key", metavar="KEY", default=None, help="device key of the RPC servers to use")


def make_measurer(args, target, **kw):
    """The measurer the command line asked for: RPC servers or this machine."""
    from tvmopt.measure.local import LocalMeasurer

    if getattr(args, "flush_cache", False):
        if getattr(args, "rpc_tracker", None):
            raise UserError("--flush-cache times candidates on this machine; it does not work with --rpc-tracker yet")
        kw["flush"] = True
    if getattr(args, "rpc_tracker", None):
        from tvmopt.measure.rpc import RPCMeasurer, parse_address

        return RPCMeasurer(target, tracker=parse_address(args.rpc_tracker), key=args.rpc_key or "", **kw)
    if getattr(args, "rpc_key", None):
        raise UserError("--rpc-key needs --rpc-tracker HOST:PORT")
    return LocalMeasurer(target, **kw)


def report_line(record) -> None:
    """--verbose: one line per measurement, printed after its record was written and flushed."""
    import json

    from tvmopt.schedules.space import config_to_json

    cost = f"{record.cost * 1e3:.4f} ms" if record.error == "ok" else record.error
    what = "re-measured" if record.tuner == "remeasure" else "recorded"
    print(f"{what} {record.workload} {cost} config={json.dumps(config_to_json(record.config), separators=(',', ':'))}",
          flush=True)


def kernels_option(parser) -> None:
    """``--kernels`` and ``--layout``: the pass's choices, which build, inspect and tune share (so
    that tune measures the tasks build will run)."""
    from tvmopt.passes.choose import POLICIES
    from tvmopt.passes.layout import LAYOUTS

    parser.add_argument("--layout", choices=LAYOUTS, default="auto",
                        help="the graph's layout: auto (default) runs channels last (NHWC, conv2d_nhwc tasks) where "
                             "every convolution has a channels-last kernel (dense, a direct compressed format or XNOR; "
                             "not depthwise, dilated or row tables), else NCHW; nhwc "
                             "forces channels last (other convolutions between two transposes); nchw keeps the import's")
    parser.add_argument("--kernels", choices=POLICIES, default="auto",
                        help="per layer, the compressed or the dense kernel: auto (default) takes the faster by "
                             "the records when both kernels have one, else the prediction of tvmopt.passes.choose; "
                             "measure times both now (and records the timings); compressed or dense force one. "
                             "On a CUDA target: auto (CUDA records, else tvmopt.passes.choose_cuda's prediction), "
                             "compressed or dense")
    parser.add_argument("--no-winograd", dest="winograd", action="store_false",
                        help="run channels-last 3x3 stride-1 convolutions on the direct conv kernels instead of the "
                             "Winograd F(2x2,3x3) ones (winograd_conv2d_nhwc and <format>_winograd_conv2d_nhwc tasks)")
