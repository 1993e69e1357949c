"""The batch-scoring scenarios: ``lossd score`` over seeded Parquet datasets against a floor, a remote ceiling
and the pipeline a user writes by hand, measured side by side in one run.

- (a) regression: 8M rows, two float32 columns (64 MiB), mse;
- (b) classification: 200k rows of 1,000 float32 logits in a fixed-size list (800 MB) and int64 labels,
  cross_entropy (also with gradients).

Paths, each reading the same files with the same batches and writing the loss column (and gradients) as
Parquet parts: lossd in process; lossd on a server; the floor (pyarrow row groups, torch on the same batches,
pyarrow writes — no validation, no per-row reduction); the remote ceiling (the same reads and writes, the
batch bytes through the raw-bytes echo, as many batches in flight as lossd); the naive pipeline (pandas
``read_parquet``, ``.tolist()`` into ``float_val``, one request at a time, on a prefix of the data).
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F

from lossd.scoring import score
from lossd.scoring.job import BATCH_BYTES, MAX_BATCH_ROWS
from lossd.v1 import loss_service_pb2 as pb

MB = 1e6
IN_FLIGHT = 4  # lossd's default for remote runs, given to the ceiling too


FULL_ROWS = (8_000_000, 200_000)
QUICK_ROWS = (1_000_000, 20_000)


def _datasets(folder: str, rows_a: int, rows_b: int) -> dict[str, dict[str, Any]]:
    """Write the seeded datasets (and prefixes for the naive pipeline); describe how to score each."""
    rng = np.random.default_rng(2026)
    a = pa.table({"pred": rng.standard_normal(rows_a, np.float32), "label": rng.standard_normal(rows_a, np.float32)})
    logits = rng.standard_normal((rows_b, 1000), np.float32)
    b = pa.table({"logits": pa.FixedSizeListArray.from_arrays(pa.array(logits.reshape(-1)), 1000),
                  "label": rng.integers(0, 1000, rows_b)})
    del logits
    out = {}
    for name, table, loss, roles, naive_rows, group in (
            ("a", a, "mse", {"input": "pred", "target": "label"}, min(rows_a, 200_000), 1 << 20),
            ("b", b, "cross_entropy", {"input": "logits", "target": "label"}, min(rows_b, 4_000), 16_384)):
        path = os.path.join(folder, f"{name}.parquet")
        pq.write_table(table, path, row_group_size=group, compression="none")
        prefix = os.path.join(folder, f"{name}-prefix.parquet")
        pq.write_table(table.slice(0, naive_rows), prefix, compression="none")
        mapped_bytes = sum(table.column(c).nbytes for c in roles.values())
        out[name] = {"path": path, "prefix": prefix, "rows": table.num_rows, "naive_rows": naive_rows,
                     "loss": loss, "roles": roles, "bytes": mapped_bytes}
    return out


def _batches(path: str, roles: dict[str, str]) -> Any:
    """The floor's and ceiling's reads: row group by row group, re-cut to lossd's default batch size."""
    f = pq.ParquetFile(path)
    columns = list(roles.values())
    width = sum(f.schema_arrow.field(c).type.list_size * 4 if pa.types.is_fixed_size_list(f.schema_arrow.field(c).type)
                else 8 for c in columns)
    rows = max(1, min(MAX_BATCH_ROWS, BATCH_BYTES // width))
    # One row group at a time and without pyarrow's threads, which on 2 cores fight the compute for them:
    # the fastest way to read found here (4x faster than with threads; a whole-file iter_batches is slower).
    for group in range(f.num_row_groups):
        for batch in f.iter_batches(batch_size=rows, row_groups=[group], columns=columns, use_threads=False):
            yield {role: _numpy(batch.column(col)) for role, col in roles.items()}


def _numpy(column: pa.Array) -> np.ndarray:
    if pa.types.is_fixed_size_list(column.type):
        return column.flatten().to_numpy().reshape(len(column), column.type.list_size)
    return column.to_numpy()


def _writer(folder: str) -> Callable[[int, dict[str, np.ndarray]], None]:
    def write(index: int, columns: dict[str, np.ndarray]) -> None:
        arrays = {k: pa.array(v) if v.ndim == 1 else pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)),
                                                                                       v.shape[1])
                  for k, v in columns.items()}
        pq.write_table(pa.table(arrays), os.path.join(folder, f"part-{index:06d}.parquet"), use_dictionary=False)
    return write


def _floor(spec: dict[str, Any], gradients: bool, out: str) -> None:
    write = _writer(out)
    for i, batch in enumerate(_batches(spec["path"], spec["roles"])):
        x = torch.from_numpy(batch["input"]).requires_grad_(gradients)
        y = torch.from_numpy(batch["target"])
        fn = F.mse_loss if spec["loss"] == "mse" else F.cross_entropy
        with torch.set_grad_enabled(gradients):
            loss = fn(x, y, reduction="none")
            columns = {"loss": loss.detach().numpy()}
            if gradients:
                loss.backward(torch.ones_like(loss))
                columns["grad_input"] = x.grad.numpy()
        write(i, columns)


def _ceiling(spec: dict[str, Any], gradients: bool, out: str, echo_call: Any) -> None:
    write = _writer(out)

    def send(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = batch["input"]
        reply = x.shape[0] * 4 + (x.nbytes if gradients else 0)
        echo_call(b"".join([b"\0" * 64, *batch.values()]), metadata=(("reply-bytes", str(reply)),), timeout=300)
        # Written like real answers: the request's own floats stand in for the loss and the gradient, since
        # zeros would compress to nothing and flatter the ceiling's writes.
        columns = {"loss": np.ascontiguousarray(x.reshape(len(x), -1)[:, 0])}
        if gradients:
            columns["grad_input"] = x
        return columns

    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        pending = []
        for i, batch in enumerate(_batches(spec["path"], spec["roles"])):
            pending.append((i, pool.submit(send, batch)))
            if len(pending) >= IN_FLIGHT:
                index, future = pending.pop(0)
                write(index, future.result())
        for index, future in pending:
            write(index, future.result())


def _naive(spec: dict[str, Any], stub: Any) -> None:
    """pandas, .tolist() into typed lists, one request at a time: the pipeline most users write first."""
    import pandas as pd

    frame = pd.read_parquet(spec["prefix"])
    losses = []
    step = 65_536 if spec["loss"] == "mse" else 512
    for start in range(0, len(frame), step):
        part = frame.iloc[start: start + step]
        request = pb.ComputeRequest(loss=spec["loss"], reduction="none", response_encoding=pb.ENCODING_VALUES)
        if spec["loss"] == "mse":
            x, y = part["pred"].tolist(), part["label"].tolist()
            request.inputs["input"].CopyFrom(pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=[len(x)], float_val=x))
            request.inputs["target"].CopyFrom(pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=[len(y)], float_val=y))
        else:
            rows = [v for row in part["logits"].tolist() for v in row]
            request.inputs["input"].CopyFrom(pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=[len(part), 1000],
                                                       float_val=rows))
            request.inputs["target"].CopyFrom(pb.Tensor(dtype=pb.DTYPE_INT64, shape=[len(part)],
                                                        int64_val=part["label"].tolist()))
        losses += list(stub.Compute(request, timeout=300).loss.float_val)
    pd.DataFrame({"loss": losses}).to_parquet(os.path.join(tempfile.gettempdir(), "lossd-bench-naive.parquet"))


def _timed(work: Callable[[str], None], scratch: str) -> float:
    out = tempfile.mkdtemp(dir=scratch)
    started = time.perf_counter()
    work(out)
    seconds = time.perf_counter() - started
    shutil.rmtree(out)
    return seconds


def run_scoring(lossd_address: str, stub: Any, echo_call: Any, quick: bool,
                sizes: tuple[int, int] | None = None) -> list[dict[str, Any]]:
    """rows/s and MB/s of every path for each dataset (and with gradients for (b)), paired over rounds;
    ``sizes`` overrides the datasets' row counts. The remote path gets a client whose connection is already
    open and warm, as the ceiling's is (a fresh connection's flow-control window starts small)."""
    from lossd.client import LossClient

    folder = tempfile.mkdtemp(prefix="lossd-bench-score-")
    results = []
    client = LossClient(lossd_address, timeout=300)
    try:
        x = np.ones(1 << 20, np.float32)
        client.compute("mse", input=x, target=x, reduction="none")
        specs = _datasets(folder, *(sizes or (QUICK_ROWS if quick else FULL_ROWS)))
        for name, gradients in (("a", False), ("b", False), ("b", True)):
            spec = specs[name]
            common = {"loss": spec["loss"], "roles": spec["roles"], "gradients": gradients}
            paths: dict[str, Callable[[str], None]] = {
                "in-process": lambda out, c=common, s=spec: score(s["path"], out=f"{out}/o", **c),
                "floor": lambda out, s=spec, g=gradients: _floor(s, g, out),
                "remote": lambda out, c=common, s=spec: score(s["path"], out=f"{out}/o", client=client, **c),
                "ceiling": lambda out, s=spec, g=gradients: _ceiling(s, g, out, echo_call),
            }
            rounds = 1 if quick else (5 if name == "a" else 3)
            times: dict[str, list[float]] = {k: [] for k in paths}
            for index in range(rounds + 1):  # alternated, so that a slow moment of the machine falls on each alike
                for key, work in paths.items():
                    seconds = _timed(work, folder)
                    if index:  # round 0 warms each path up (the server's heap, the page cache), untimed
                        times[key].append(seconds)
            rates = {k: spec["rows"] / statistics.median(v) for k, v in times.items()}
            # Ratios within each round, then their median: a slow spell of the machine hits both sides of a pair.
            ratios = {f"{a}/{b}": statistics.median(tb / ta for ta, tb in zip(times[a], times[b], strict=True))
                      for a, b in (("in-process", "floor"), ("remote", "ceiling"))}
            if not gradients:
                naive = _timed(lambda out, s=spec: _naive(s, stub), folder)
                rates["naive"] = spec["naive_rows"] / naive
            results.append({"dataset": name, "loss": spec["loss"], "gradients": gradients, "rows": spec["rows"],
                            "mb": spec["bytes"] / MB, "rows_per_s": rates, "ratios": ratios,
                            "mb_per_s": {k: v * spec["bytes"] / spec["rows"] / MB for k, v in rates.items()}})
    finally:
        client.close()
        shutil.rmtree(folder, ignore_errors=True)
    return results



# The child's own peak: VmHWM belongs to its address space, made anew by exec (ru_maxrss is carried over
# from the parent across fork and exec, so it would report the parent's size).
MEMORY_SCRIPT = """
import sys
from lossd.scoring.cli import main
code = main(sys.argv[1:])
print(next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")))
sys.exit(code)
"""


def memory_growth(quick: bool) -> tuple[float, dict[str, float]]:
    """Peak RSS of ``lossd score`` (in its own process) over a file 10x larger than another, as a ratio."""
    import subprocess
    import sys

    folder = tempfile.mkdtemp(prefix="lossd-bench-mem-")
    peaks = {}
    try:
        for rows in ((400_000, 4_000_000) if quick else (1_000_000, 10_000_000)):
            rng = np.random.default_rng(rows)
            path = os.path.join(folder, f"r{rows}.parquet")
            pq.write_table(pa.table({"pred": rng.standard_normal(rows, np.float32),
                                     "label": rng.standard_normal(rows, np.float32)}), path, row_group_size=1 << 18)
            done = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, path, "--loss", "mse", "--map", "input=pred",
                                   "--map", "target=label", "--out", os.path.join(folder, f"o{rows}"),
                                   "--batch-rows", "200000", "--quiet"], capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                raise RuntimeError(done.stderr)
            peaks[f"peak_mib_{rows}"] = int(done.stdout.split()[-1]) / 1024
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    small, large = peaks.values()
    return large / small, peaks


def rows_of(results: list[dict[str, Any]], growth: float, peaks: dict[str, float], row: Any) -> list[Any]:
    """The table's rows (``row`` is the Row class): in process against the floor, remote against the ceiling,
    both against the naive pipeline, and the memory growth."""
    out = []
    naive = {r["dataset"]: r["rows_per_s"]["naive"] for r in results if "naive" in r["rows_per_s"]}
    for r in results:
        rate = r["rows_per_s"]
        what = f"Score ({r['dataset']}) {r['rows']:,} rows {r['loss']}" + (" +grad" if r["gradients"] else "")
        slow = naive[r["dataset"]]
        for path, reference, key in (("in-process", "floor", "floor"), ("remote", "ceiling", "ceiling")):
            ratio = r["ratios"][f"{path}/{reference}"]
            vs_naive = rate[path] / slow
            ok = ratio >= 0.7 and vs_naive >= 10
            out.append(row(f"{what}, {path}", "rows/s", rate[path], rate["ceiling"] if key == "ceiling" else None,
                           rate["floor"] if key == "floor" else None, ratio,
                           f">= 0.7x {reference}, >= 10x naive ({vs_naive:,.0f}x)", ok,
                           {"mb_per_s": r["mb_per_s"][path], "naive_rows_per_s": slow}))
    out.append(row("lossd score peak RSS, 10x the rows", "x", growth, None, None, growth, "< 1.2x", growth < 1.2,
                   peaks))
    return out
