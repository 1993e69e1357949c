"""A whole scoring run: read batch by batch, score several batches at once, write them in input order, sum up.

Memory is bounded by the batch size times the batches in flight: a batch is read only when a slot frees up,
and its answer is written (and dropped) as soon as every batch before it has been.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from lossd.scoring import batch as batches
from lossd.scoring import sources
from lossd.scoring.columns import DataError
from lossd.scoring.engines import InProcessEngine, RemoteEngine, UsageError
from lossd.scoring.output import DatasetWriter
from lossd.scoring.progress import Progress
from lossd.scoring.summary import Summary

BATCH_BYTES = 16 << 20  # default batch: about this much of the mapped columns
MAX_BATCH_ROWS = 1 << 20


class DataRefused(Exception):
    """A row the loss refused, in the data's terms (exit code 1): ``file, row R, column C: why``."""


class Interrupted(Exception):
    """The run was asked to stop; every part before the one in progress was written."""


@dataclass(frozen=True)
class Options:
    """How to run: batching, concurrency, output and resume."""

    batch_rows: int | None = None
    in_flight: int | None = None
    out: str | None = None
    fmt: str = "parquet"
    resume: bool = False
    slice_by: str | None = None
    progress: str = "off"


def _batch_rows(plan: batches.Plan, schema: pa.Schema, wanted: int | None) -> int:
    """The rows per batch: as asked, or about BATCH_BYTES of the mapped columns."""
    if wanted:
        return wanted
    width = 0
    for cols in plan.roles.values():
        for c in cols:
            width += _row_bytes(schema.field(c).type)
    return max(1, min(MAX_BATCH_ROWS, BATCH_BYTES // max(width, 1)))


def _row_bytes(kind: pa.DataType) -> int:
    count = 1
    while pa.types.is_fixed_size_list(kind):
        count *= kind.list_size
        kind = kind.value_type
    if isinstance(kind, pa.FixedShapeTensorType):
        count *= int(np.prod(kind.shape))
        kind = kind.value_type
    try:
        return count * max(1, kind.bit_width // 8)
    except ValueError:  # variable-width (lists from JSON): a guess
        return count * 64


def check_plan(plan: batches.Plan, schema: pa.Schema, options: Options) -> None:
    """Refuse, before reading a row, a job that cannot work: a loss without per-row values, a role or column
    missing, a gradient of a role that has none, a list column in CSV output."""
    meta = plan.loss
    if not meta.row_wise:
        raise UsageError(f"{meta.name} does not give each row a loss of its own (its unreduced value couples the "
                         "rows of a batch, or is not indexed by row): per-row scores would depend on how the data is "
                         "batched. Score it with one Compute call over the whole set instead")
    for role in plan.roles:
        if role not in meta.roles:
            raise UsageError(f"--map {role}=...: {meta.name} has no role {role!r}; its roles: {', '.join(meta.roles)}")
    missing = [r for r in meta.required if r not in plan.roles]
    if missing:
        raise UsageError(f"{meta.name} needs {', '.join(missing)}: add --map " +
                         " ".join(f"{r}=COLUMN" for r in missing))
    names = set(schema.names)
    for c in [*plan.columns(), *([options.slice_by] if options.slice_by else [])]:
        if c not in names:
            raise UsageError(f"no column {c!r} in the input; its columns: {', '.join(schema.names)}")
    for role in plan.grad_roles:
        if role not in meta.differentiable:
            raise UsageError(f"--wrt {role}: not differentiable in {meta.name}; "
                             f"differentiable: {', '.join(meta.differentiable)}")
        if role not in plan.roles:
            raise UsageError(f"--wrt {role}: the role is not mapped to a column")
    if options.fmt == "csv":
        nested = [c for c in plan.keep if not _flat(schema.field(c).type)]
        nested += [f"grad_{r}" for r in plan.grad_roles if len(plan.roles[r]) > 1
                   or not _flat(schema.field(plan.roles[r][0]).type)]
        if nested:
            verb = "holds" if len(nested) == 1 else "hold"
            raise UsageError(f"CSV holds one value per cell; {', '.join(nested)} {verb} several per row: "
                             "use --format parquet, arrow or jsonl")


def _flat(kind: pa.DataType) -> bool:
    return not (pa.types.is_nested(kind) or isinstance(kind, pa.ExtensionType))


def _job_record(inputs: Sequence[Any], plan: batches.Plan, options: Options, rows: int) -> dict[str, Any]:
    """What a resumed run must repeat exactly (same batches, same columns)."""
    return {"inputs": [str(i) for i in inputs], "loss": plan.loss.name, "roles": {k: list(v) for k, v in
            plan.roles.items()}, "params": dict(plan.params), "gradients": plan.gradients, "wrt": list(plan.wrt),
            "row_reduction": plan.row_reduction, "keep": list(plan.keep), "slice_by": options.slice_by,
            "on_error": plan.on_error, "batch_rows": rows}


def run(inputs: Sequence[Any], plan: batches.Plan, engine: Any, options: Options,
        stop: threading.Event | None = None) -> tuple[pa.Table | None, Summary]:
    """Score ``inputs`` (see :func:`lossd.scoring.score`); the output table (None when written to
    ``options.out``) and the summary."""
    resolved = sources.resolve(inputs)
    schema = sources.schema_of(resolved[0])
    check_plan(plan, schema, options)
    rows = _batch_rows(plan, schema, options.batch_rows)
    # In process, two batches at once let reading and writing overlap the computing (torch and pyarrow release
    # the GIL); on servers, four keep the connection and the server's compute threads busy.
    in_flight = options.in_flight or (4 if isinstance(engine, RemoteEngine) else 2)
    columns = list(dict.fromkeys([*plan.columns(), *([options.slice_by] if options.slice_by else [])]))
    writer = None
    summary = Summary(options.slice_by)
    if options.out is not None:
        writer = DatasetWriter(options.out, options.fmt, _job_record(inputs, plan, options, rows),
                               resume=options.resume)
        _count_done(writer, summary, options.slice_by)
    total = sum(s.rows for s in resolved) if all(s.rows is not None for s in resolved) else None
    progress = Progress(total, options.progress)
    started = time.perf_counter()
    kept: list[pa.Table] = []
    try:
        units = _batches(resolved, columns, rows)
        pool = ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="lossd-score")
        window: deque[tuple[int, sources.Unit, Future[Any]]] = deque()
        try:
            for index, unit in enumerate(units):
                if writer is not None and index < writer.done:
                    progress.advance(unit.data.num_rows, unit.data.nbytes)
                    continue  # written by an earlier run (its rows are in the summary already)
                window.append((index, unit, pool.submit(_score_unit, plan, engine, unit)))
                if len(window) >= in_flight:
                    _finish(window.popleft(), plan, writer, summary, progress, kept, options.slice_by)
                    if stop is not None and stop.is_set():
                        raise Interrupted()
            while window:
                _finish(window.popleft(), plan, writer, summary, progress, kept, options.slice_by)
                if stop is not None and stop.is_set() and window:
                    raise Interrupted()
        finally:
            for _, _, future in window:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
    finally:
        progress.close()
        summary.seconds = time.perf_counter() - started
    if writer is not None:
        writer.finish()
        return None, summary
    return (pa.concat_tables(kept) if kept else pa.table({"loss": pa.array([], pa.float32())})), summary


def _batches(resolved: list[sources.Source], columns: list[str], rows: int) -> Iterator[sources.Unit]:
    for source in resolved:
        yield from sources.rebatch(sources.read(source, columns, rows), rows)


def _score_unit(plan: batches.Plan, engine: Any, unit: sources.Unit) -> pa.Table:
    try:
        scored = batches.score(plan, engine, unit.data)
    except DataError as exc:
        raise DataRefused(f"{unit.source}, row {unit.first_row + exc.row:,}, column {exc.column}: "
                          f"{exc.message}") from None
    return batches.output_table(plan, unit.data, scored)


def _finish(entry: tuple[int, sources.Unit, Future[Any]], plan: batches.Plan, writer: DatasetWriter | None,
            summary: Summary, progress: Progress, kept: list[pa.Table], slice_by: str | None) -> None:
    index, unit, future = entry
    table = future.result()
    add_to_summary(summary, table, unit.data.column(slice_by) if slice_by else None)
    if slice_by and slice_by not in table.column_names:
        table = table.append_column(slice_by, unit.data.column(slice_by))
    if writer is not None:
        writer.write(index, table, source=unit.source, first_row=unit.first_row)
    else:
        kept.append(table)
    progress.advance(unit.data.num_rows, unit.data.nbytes)


def _count_done(writer: DatasetWriter, summary: Summary, slice_by: str | None) -> None:
    """A resumed run's summary counts the parts written before, read back from disk."""
    for table in writer.read_done(["loss", *([slice_by] if slice_by else [])]):
        add_to_summary(summary, table, table.column(slice_by) if slice_by else None)


def add_to_summary(summary: Summary, table: pa.Table, slices: Any) -> None:
    """Count an output table's ``loss`` column (null: refused) in ``summary``."""
    column = table.column("loss")
    if not column.null_count:  # the common case: a view of the column, no masks
        summary.add(column.to_numpy(), None, slices)
        return
    refused = column.is_null().to_numpy(zero_copy_only=False)
    summary.add(column.fill_null(0).to_numpy(zero_copy_only=False), refused, slices)


def make_engine(client: Any = None, servers: Sequence[str] = (), device: str = "auto",
                retry_seconds: float | None = None) -> Any:
    """The remote engine when a client or servers are given, else the in-process one. A remote run retries
    UNAVAILABLE for ``retry_seconds`` (default: LOSSD_SCORE_RETRY_SECONDS, else 30)."""
    if client is not None or servers:
        if retry_seconds is None:
            retry_seconds = float(os.environ.get("LOSSD_SCORE_RETRY_SECONDS", "30"))
        return RemoteEngine(client, servers, retry_seconds=retry_seconds)
    return InProcessEngine(device)


def plan_for(engine: Any, loss: str, roles: Mapping[str, Any], params: Mapping[str, Any] | None, *,
             gradients: bool, wrt: Sequence[str] | None, row_reduction: str, keep: Sequence[str],
             on_error: str) -> batches.Plan:
    """Resolve the loss (its canonical name and roles) and normalize the options into a :class:`Plan`."""
    if row_reduction not in ("mean", "sum"):
        raise UsageError(f"--row-reduction {row_reduction}: expected mean or sum")
    if on_error not in ("stop", "skip"):
        raise UsageError(f"--on-error {on_error}: expected stop or skip")
    if not roles:
        raise UsageError("map at least one role to a column (--map ROLE=COLUMN)")
    meta = engine.describe(loss)
    mapped = {role: (cols,) if isinstance(cols, str) else tuple(cols) for role, cols in roles.items()}
    return batches.Plan(meta, mapped, dict(params or {}), gradients or bool(wrt), tuple(wrt or ()), row_reduction,
                        tuple(keep), on_error)
