"""lossd on a Ray cluster: :class:`LossScorer` for ``Dataset.map_batches``, and ``lossd score --ray``.

    import ray
    from lossd.integrations.ray import LossScorer

    ds = ray.data.read_parquet("s3://bucket/preds/")
    scored = ds.map_batches(
        LossScorer,
        fn_constructor_kwargs={"loss": "cross_entropy", "roles": {"input": "logits", "target": "label"},
                               "servers": ["lossd.internal:50051"]},
        compute=ray.data.ActorPoolStrategy(size=4), batch_format="pyarrow")

Each actor holds one connection to the lossd fleet (or, without servers, scores in its own process). Importing
this module loads neither torch nor Ray.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from lossd.scoring import batch as batches
from lossd.scoring.columns import DataError
from lossd.scoring.engines import UsageError
from lossd.scoring.job import DataRefused, add_to_summary, make_engine, plan_for
from lossd.scoring.sources import FORMATS, resolve
from lossd.scoring.summary import Summary


class LossScorer:
    """A callable class for ``map_batches``: each batch comes back with ``lossd score``'s columns added
    (``loss``, ``grad_<role>`` with gradients, ``error`` with ``on_error="skip"``). The arguments are those of
    :func:`lossd.scoring.score` less the source and the output options."""

    def __init__(self, loss: str, roles: Mapping[str, str | Sequence[str]], params: Mapping[str, Any] | None = None,
                 *, servers: Sequence[str] = (), client: Any = None, gradients: bool = False,
                 wrt: Sequence[str] | None = None, row_reduction: str = "mean", on_error: str = "stop",
                 device: str = "auto") -> None:
        self._engine = make_engine(client, servers, device)
        self._plan = plan_for(self._engine, loss, roles, params, gradients=gradients, wrt=wrt,
                              row_reduction=row_reduction, keep=(), on_error=on_error)
        if not self._plan.loss.row_wise:
            raise UsageError(f"{self._plan.loss.name} does not give each row a loss of its own")

    def __call__(self, batch: Any) -> pa.Table:
        """``batch`` (a pyarrow Table, a dict of numpy arrays or a pandas DataFrame) with the scores added."""
        table = _as_table(batch)
        try:
            scored = batches.score(self._plan, self._engine, table)
        except DataError as exc:
            raise DataRefused(f"row {exc.row:,} of a Ray batch, column {exc.column}: {exc.message}") from None
        added = batches.output_table(self._plan, table, scored)
        for name in added.column_names:
            if name in table.column_names:
                table = table.drop_columns([name])
            table = table.append_column(name, added.column(name))
        return table

    def __del__(self) -> None:
        engine = getattr(self, "_engine", None)
        if engine is not None:
            engine.close()


def _as_table(batch: Any) -> pa.Table:
    if isinstance(batch, pa.Table):
        return batch
    if isinstance(batch, dict):
        from lossd.scoring.columns import tensor_column

        return pa.table({k: tensor_column(v) if getattr(v, "ndim", 1) > 1 else v for k, v in batch.items()})
    return pa.Table.from_pandas(batch, preserve_index=False)


def score_on_ray(inputs: Sequence[str], loss: str, roles: Mapping[str, Sequence[str]], params: Mapping[str, Any],
                 *, address: str | None, servers: Sequence[str], out: str, fmt: str, keep: Sequence[str],
                 slice_by: str | None, gradients: bool, wrt: Sequence[str], row_reduction: str,
                 batch_rows: int | None, on_error: str, actors: int | None = None) -> Summary:
    """``lossd score --ray``: read → map_batches(LossScorer) on an actor pool → write, on the cluster at
    ``address`` (None: Ray's default, RAY_ADDRESS or a new local Ray); the summary is read back from ``out``."""
    import time

    import ray

    started = time.perf_counter()
    paths = [s.path for s in resolve(list(inputs))]
    kinds = {FORMATS[os.path.splitext(p.lower().removesuffix(".gz"))[1]] for p in paths}
    if len(kinds) != 1:
        raise UsageError(f"--ray reads inputs of one format; found {', '.join(sorted(kinds))}")
    ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    readers = {"parquet": ray.data.read_parquet, "csv": ray.data.read_csv, "json": ray.data.read_json}
    kind = kinds.pop()
    if kind not in readers:
        raise UsageError(f"--ray reads Parquet, CSV and JSON lines; {kind} inputs need lossd score without --ray")
    dataset = readers[kind](paths)
    size = actors or max(1, min(8, int(ray.available_resources().get("CPU", 2)) - 1))
    wanted = [*dict.fromkeys([*keep, *([slice_by] if slice_by else [])])]
    scored = dataset.map_batches(
        LossScorer, batch_format="pyarrow", batch_size=batch_rows or 65536,
        compute=ray.data.ActorPoolStrategy(size=size),
        fn_constructor_kwargs={"loss": loss, "roles": dict(roles), "params": dict(params), "servers": list(servers),
                               "gradients": gradients, "wrt": list(wrt) or None, "row_reduction": row_reduction,
                               "on_error": on_error})
    writer = {"parquet": "write_parquet", "csv": "write_csv", "jsonl": "write_json"}.get(fmt)
    if writer is None:
        raise UsageError(f"--ray writes parquet, csv or jsonl; not {fmt}")
    # The output holds what lossd score writes: loss, the kept columns, gradients and errors.
    outputs = {"loss", *wanted}
    selected = scored.map_batches(lambda t: t.select([c for c in t.column_names if c in outputs
                                                      or c.startswith("grad_") or c == "error"]),
                                  batch_format="pyarrow")
    getattr(selected, writer)(out)
    summary = Summary(slice_by)
    import pyarrow.dataset as pds

    written = pds.dataset(out, format={"jsonl": "json"}.get(fmt, fmt))
    for part in written.to_batches(columns=["loss", *([slice_by] if slice_by else [])]):
        add_to_summary(summary, pa.Table.from_batches([part]), part.column(slice_by) if slice_by else None)
    summary.seconds = time.perf_counter() - started
    summary.write(f"{out.rstrip('/')}.summary.json")
    return summary
