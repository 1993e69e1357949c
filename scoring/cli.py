"""``lossd score``: the loss of every row of a dataset, on the command line (a thin layer over lossd.scoring).

Exit codes: 0 done; 1 data refused (``--on-error stop``); 2 usage error; 3 no server reachable;
130 / 143 interrupted by Ctrl-C / SIGTERM after finishing the part in progress (``--resume`` carries on).
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

EXIT_OK, EXIT_DATA, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``lossd score``."""
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="Parquet/Arrow/Feather/CSV/JSON-lines/.npz files, directories or globs, read in order")
    parser.add_argument("--loss", required=True, help="a loss name or alias (lossd losses lists them)")
    parser.add_argument("--map", action="append", default=[], metavar="ROLE=COLUMN", dest="maps",
                        help="feed COLUMN to the loss's ROLE (COL1,COL2,... stacks numeric columns into (N, k))")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", dest="params",
                        help="a loss parameter; VALUE parses as JSON where it can (0.5, [1,2], true), else a string")
    parser.add_argument("--out", required=True, help="output dataset: a directory of part files and a manifest")
    parser.add_argument("--format", default="parquet", choices=["parquet", "arrow", "csv", "jsonl"])
    parser.add_argument("--keep", action="append", default=[], metavar="COL[,COL...]",
                        help="input columns copied to the output (ids, keys)")
    parser.add_argument("--slice-by", metavar="COL", help="summarise the loss per value of COL too")
    parser.add_argument("--gradients", action="store_true", help="write grad_<role> columns (default wrt roles)")
    parser.add_argument("--wrt", action="append", default=[], metavar="ROLE",
                        help="differentiate ROLE (implies --gradients; repeatable)")
    parser.add_argument("--row-reduction", default="mean", choices=["mean", "sum"],
                        help="how a row's unreduced loss becomes one number (default mean)")
    parser.add_argument("--server", action="append", default=[], metavar="HOST:PORT", dest="servers",
                        help="score on lossd servers (repeatable, or a dns:/// name); default: in this process")
    parser.add_argument("--batch-rows", type=int, metavar="N", help="rows per request (default: about 16 MiB)")
    parser.add_argument("--in-flight", type=int, metavar="K", help="batches scored at once (default 4 remote, "
                                                                   "2 in process)")
    parser.add_argument("--resume", action="store_true", help="finish an interrupted run into the same --out")
    parser.add_argument("--on-error", default="stop", choices=["stop", "skip"],
                        help="refused rows: stop (exit 1) or skip (null loss and an error column)")
    parser.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                        help="run on a Ray cluster (without ADDRESS: RAY_ADDRESS or a new local Ray)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def parse_param(text: str) -> tuple[str, Any]:
    """``NAME=VALUE`` with VALUE as JSON where it parses (``delta=0.5``, ``weights=[1,2]``), else a string."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise ValueError(f"--param {text}: expected NAME=VALUE")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def parse_map(text: str) -> tuple[str, list[str]]:
    """``ROLE=COLUMN`` or ``ROLE=COL1,COL2,...``."""
    role, sep, columns = text.partition("=")
    if not sep or not role or not columns:
        raise ValueError(f"--map {text}: expected ROLE=COLUMN")
    return role, columns.split(",")


def main(argv: Sequence[str] | None = None) -> int:
    """``lossd score ...``; returns the exit code."""
    parser = argparse.ArgumentParser(prog="lossd score", description="the loss of every row of a dataset")
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run(args, list(sys.argv[1:] if argv is None else argv))


def run(args: argparse.Namespace, argv: list[str]) -> int:
    """Run a parsed ``lossd score``."""
    from lossd.scoring import DataRefused, Interrupted, Unreachable, UsageError
    from lossd.scoring.sources import SourceError

    try:
        roles = dict(parse_map(m) for m in args.maps)
        params = dict(parse_param(p) for p in args.params)
    except ValueError as exc:
        return _fail(str(exc), EXIT_USAGE)
    keep = [c for item in args.keep for c in item.split(",") if c]
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        received.append(signum)
        stop.set()
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if args.ray is not None:
            from lossd.integrations.ray import score_on_ray

            summary = score_on_ray(args.inputs, args.loss, roles, params, address=args.ray or None,
                                   servers=args.servers, out=args.out, fmt=args.format, keep=keep,
                                   slice_by=args.slice_by, gradients=args.gradients, wrt=args.wrt,
                                   row_reduction=args.row_reduction, batch_rows=args.batch_rows,
                                   on_error=args.on_error)
        else:
            summary = _score_here(args, roles, params, keep, stop)
    except (UsageError, SourceError) as exc:
        return _fail(str(exc), EXIT_USAGE)
    except DataRefused as exc:
        return _fail(f"{exc}\nthe rows before it were written to {args.out}", EXIT_DATA)
    except Unreachable as exc:
        return _fail(str(exc), EXIT_UNREACHABLE)
    except Interrupted:
        command = shlex.join(["lossd", *argv, *([] if "--resume" in argv else ["--resume"])])
        print(f"lossd score: stopped after the part in progress; to carry on:\n  {command}", file=sys.stderr)
        return 128 + (received[0] if received else signal.SIGINT)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    print(summary.render())
    return EXIT_OK


def _score_here(args: argparse.Namespace, roles: dict, params: dict, keep: list[str],
                stop: threading.Event) -> Any:
    from lossd.scoring.job import Options, make_engine, plan_for
    from lossd.scoring.job import run as run_job

    engine = make_engine(servers=args.servers)
    try:
        plan = plan_for(engine, args.loss, roles, params, gradients=args.gradients, wrt=args.wrt,
                        row_reduction=args.row_reduction, keep=keep, on_error=args.on_error)
        options = Options(args.batch_rows, args.in_flight, args.out, args.format, args.resume, args.slice_by,
                          "off" if args.quiet else "auto")
        _, summary = run_job(args.inputs, plan, engine, options, stop)
    finally:
        engine.close()
    summary.write(f"{args.out.rstrip('/')}.summary.json")
    return summary


def _fail(message: str, code: int) -> int:
    print(f"lossd score: {message}", file=sys.stderr)
    return code
