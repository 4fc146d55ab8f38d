"""``tvmopt rpc tracker|server``: thin wrappers over tvm.rpc for ``--rpc-tracker``."""

from __future__ import annotations

import argparse

from tvmopt.cli.common import Parser, positive_int


def add_parser(sub) -> None:
    rpc = sub.add_parser(
        "rpc", help="run TVM's RPC tracker or a measurement server (for --rpc-tracker)",
        description="Thin wrappers over tvm.rpc. Start one tracker, then a server on each measuring device "
                    "with a key naming the device kind; 'tune' and 'compare' with --rpc-tracker HOST:PORT "
                    "--rpc-key KEY build locally and measure on those servers.",
        epilog="example:\n  tvmopt rpc tracker --port 9190 &\n  tvmopt rpc server --tracker 127.0.0.1:9190 "
               "--key zen3 &\n  tvmopt tune gemm:512x512x512 --rpc-tracker 127.0.0.1:9190 --rpc-key zen3",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    rpc_sub = rpc.add_subparsers(dest="role", metavar="ROLE", parser_class=Parser, required=True)
    trk = rpc_sub.add_parser("tracker", help="start a tracker (serves until Ctrl-C)")
    trk.add_argument("--host", default="0.0.0.0", help="address to bind (default: 0.0.0.0)")
    trk.add_argument("--port", type=positive_int, default=9190, help="first port to try (default: 9190)")
    trk.set_defaults(func=cmd_rpc)
    srv = rpc_sub.add_parser("server", help="start a measurement server registered with a tracker")
    srv.add_argument("--tracker", required=True, metavar="HOST:PORT", help="the tracker to register with")
    srv.add_argument("--key", required=True, help="device key that tune's --rpc-key asks for")
    srv.add_argument("--host", default="0.0.0.0", help="address to bind (default: 0.0.0.0)")
    srv.add_argument("--port", type=positive_int, default=9090, help="first port to try (default: 9090)")
    srv.set_defaults(func=cmd_rpc)


def cmd_rpc(args) -> int:
    from tvmopt.measure.rpc import parse_address, run_server, run_tracker

    if args.role == "tracker":
        run_tracker(args.host, args.port)
    else:
        run_server(parse_address(args.tracker), args.key, args.host, args.port)
    return 0
