"""``lossd bench``: run the scenarios, print the table, write JSON and a PNG."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from lossd.bench import report
from lossd.bench.gpu import run_gpu
from lossd.bench.scenarios import run_cpu


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The bench flags (shared by ``lossd bench`` and ``python -m lossd.bench``)."""
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run, noisier figures)")
    parser.add_argument("--out", type=Path, default=Path("bench-results"),
                        help="folder for results.json, sweep.png and table.md (default: bench-results)")
    parser.add_argument("--readme", type=Path, help="also write the table and picture into this README")
    parser.add_argument("--gpu", action="store_true", help="add the heavy end-to-end scenarios on CUDA "
                        "(CE 4096x32000, InfoNCE 8192x512, MSE 128M); needs a CUDA device")
    parser.add_argument("--no-scoring", action="store_true", help="leave out the batch-scoring datasets "
                        "(they write about 1 GB of Parquet to the temporary folder)")
    parser.add_argument("--gpu-device", default="cuda:0", help=argparse.SUPPRESS)  # "cpu": smoke-test the code


def run(args: argparse.Namespace) -> int:
    """Run the benchmark; exit 0 when every target holds, 1 otherwise."""
    args.out.mkdir(parents=True, exist_ok=True)
    host = report.machine()
    if args.gpu and args.gpu_device.startswith("cuda") and not torch.cuda.is_available():
        print("lossd bench --gpu needs a CUDA device; none is available here", file=sys.stderr)
        return 2
    rows, sweep, scored = run_cpu(args.quick, scoring=not args.no_scoring)
    gpu_rows = run_gpu(args.quick, args.gpu_device) if args.gpu else []
    table = report.markdown(rows, host)
    if gpu_rows:
        table += "\n" + report.markdown(gpu_rows, host, gpu=True)
    sys.stdout.write(table)
    (args.out / "table.md").write_text(table)
    report.write_json(args.out / "results.json", rows, sweep, host, gpu_rows, scored)
    drawn = report.write_png(args.out / "sweep.png", sweep, host, scored)
    if drawn:
        print(f"wrote {args.out / 'sweep.png'}")
    if args.readme:
        picture = os.path.relpath(args.out / "sweep.png", args.readme.parent) if drawn else None
        report.update_readme(args.readme, table, picture)
    failed = [r.scenario for r in rows if r.ok is False]
    print("every target met" if not failed else f"targets missed: {', '.join(failed)}")
    return 0 if not failed else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m lossd.bench``."""
    parser = argparse.ArgumentParser(prog="lossd bench", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))
