"""Batch scoring: the loss of every row of a dataset (Parquet, Arrow IPC / Feather, CSV, JSON lines, ``.npz``,
in-memory tables and data frames), with gradients, slices and a summary — in this process or on lossd servers.

    >>> from lossd.scoring import score                                       # doctest: +SKIP
    >>> table = score("preds.parquet", "cross_entropy", roles={"input": "logits", "target": "label"})
    >>> table.column("loss")                                                  # one per input row, in order

``lossd score`` is the same engine on the command line. This package imports no torch until it scores in
this process, and none at all when it scores on servers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lossd.scoring.columns import DataError
from lossd.scoring.engines import Refused, Unreachable, UsageError
from lossd.scoring.job import DataRefused, Interrupted, Options, make_engine, plan_for, run
from lossd.scoring.summary import Summary

__all__ = ["DataError", "DataRefused", "Interrupted", "Refused", "Summary", "Unreachable", "UsageError", "score"]


def score(
    source: Any,
    loss: str,
    roles: Mapping[str, str | Sequence[str]],
    params: Mapping[str, Any] | None = None,
    *,
    client: Any = None,
    servers: Sequence[str] = (),
    out: str | None = None,
    format: str = "parquet",
    keep: Sequence[str] = (),
    slice_by: str | None = None,
    gradients: bool = False,
    wrt: Sequence[str] | None = None,
    row_reduction: str = "mean",
    batch_rows: int | None = None,
    in_flight: int | None = None,
    resume: bool = False,
    on_error: str = "stop",
    progress: str = "off",
    device: str = "auto",
) -> Any:
    """Score every row of ``source`` with ``loss``; returns a pyarrow Table, or the :class:`Summary` of what
    was written when ``out`` is given.

    ``source``: a path (file, directory of files — hive partitions become columns — or glob), a list of them,
    a pyarrow Table or RecordBatchReader, or a pandas or polars DataFrame. ``roles`` maps each role of the
    loss to its column (or to several numeric columns, stacked side by side into (N, k)).

    The output has one row per input row, in input order: ``loss`` (the unreduced loss reduced over every
    dimension but the first by ``row_reduction``, "mean" or "sum"), the ``keep`` columns, and with
    ``gradients`` (or ``wrt``) a ``grad_<role>`` column per differentiated role, shaped like its input: the
    gradient of that row's own loss. Without ``client`` or ``servers`` rows are scored in this process by
    lossd's registry; otherwise on lossd servers, ``in_flight`` batches at a time (default 4).

    ``out`` writes a dataset instead (a directory of numbered parts and a manifest, ``format`` parquet, arrow,
    csv or jsonl) that ``resume`` can finish after an interruption. Refused data raises :class:`DataRefused`
    naming the file, row and column (``on_error="stop"``), or (``"skip"``) gets a null loss and an ``error``.
    """
    engine = make_engine(client, servers, device)
    try:
        plan = plan_for(engine, loss, roles, params, gradients=gradients, wrt=wrt, row_reduction=row_reduction,
                        keep=keep, on_error=on_error)
        inputs = list(source) if isinstance(source, (list, tuple)) else [source]
        options = Options(batch_rows, in_flight, out, format, resume, slice_by, progress)
        table, summary = run(inputs, plan, engine, options)
        if out is not None:
            summary.write(f"{out.rstrip('/')}.summary.json")
            return summary
        return table
    finally:
        engine.close()
