"""``lossd <command>``: one entry point over the server's commands and the benchmark."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lossd`` console script; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["health"]:  # probes run often: answer them without loading torch
        from lossd.cli.health import main as health_main

        return health_main(args_list[1:])
    if args_list[:1] == ["score"]:  # scoring on servers needs no torch: load none until it scores here
        from lossd.scoring.cli import main as score_main

        return score_main(args_list[1:])
    from lossd.cli.health import add_health_command
    from lossd.server import cli as server_cli

    parser = argparse.ArgumentParser(prog="lossd", description="lossd: machine-learning losses over gRPC")
    sub = parser.add_subparsers(dest="command", required=True)
    server_cli.add_commands(sub)
    add_health_command(sub)
    bench = sub.add_parser("bench", help="measure lossd against the gRPC ceiling and torch in-process")
    from lossd.bench.cli import add_arguments, run  # the benchmark pulls in the client: load it here only
    from lossd.bench.soak import main as soak_main

    add_arguments(bench)
    bench.set_defaults(handler=run)
    from lossd.scoring.cli import add_arguments as add_score_arguments

    add_score_arguments(sub.add_parser("score", help="the loss of every row of a dataset (Parquet, CSV, ...)"))
    soak = sub.add_parser("soak", help="many concurrent clients for a while; reports errors, latency, RSS, fds")
    soak.add_argument("--seconds", type=float, default=60.0)
    soak.add_argument("--clients", type=int, default=64)
    soak.set_defaults(handler=lambda a: soak_main(["--seconds", str(a.seconds), "--clients", str(a.clients)]))
    args = parser.parse_args(args_list)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
