"""Datasets as a stream of record batches: Parquet (files, directories with hive partitions, globs), Arrow
IPC / Feather, CSV, JSON lines, NumPy ``.npz``, and in-memory tables and data frames.

Nothing reads a whole file: Parquet is read one row group at a time (pyarrow's whole-file readers buffer
about the whole file), IPC one record batch, CSV and JSON one block. Batches never span two files, so every
row keeps a (file, row) address for error messages.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.dataset as ds
import pyarrow.ipc as ipc
import pyarrow.json as pjson
import pyarrow.parquet as pq

from lossd.scoring.columns import tensor_column

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".parq": "parquet", ".arrow": "ipc", ".feather": "ipc",
           ".ipc": "ipc", ".csv": "csv", ".tsv": "csv", ".jsonl": "json", ".ndjson": "json", ".json": "json",
           ".npz": "npz"}
_BLOCK_BYTES = 8 << 20  # CSV and JSON read blocks


class SourceError(Exception):
    """An input that cannot be read: missing, of an unknown format, or without a needed column."""


@dataclass(frozen=True)
class Unit:
    """A piece of one source as read: ``first_row`` is where it starts in that source."""

    source: str
    first_row: int
    data: pa.Table


@dataclass(frozen=True)
class Source:
    """One file (or in-memory table) to read, with its row count when metadata gives it cheaply."""

    label: str
    kind: str
    path: str = ""
    rows: int | None = None
    table: Any = None  # an in-memory pyarrow Table / RecordBatchReader
    dataset: Any = None  # the pyarrow dataset a directory's file belongs to (for partition columns)
    fragment: Any = None


def _format_of(path: str) -> str:
    name = path.lower().removesuffix(".gz")
    for ext, kind in FORMATS.items():
        if name.endswith(ext):
            return kind
    raise SourceError(f"{path}: unknown format; expected one of {', '.join(sorted(FORMATS))}")


def resolve(inputs: Sequence[Any]) -> list[Source]:
    """Every source of ``inputs`` in order: files as given, directories and globs in sorted path order."""
    sources: list[Source] = []
    for item in inputs:
        if not isinstance(item, (str, os.PathLike)):
            sources.append(_in_memory(item))
            continue
        path = os.fspath(item)
        if os.path.isdir(path):
            sources += _directory(path)
        elif any(c in path for c in "*?["):
            matches = sorted(glob.glob(path, recursive=True))
            if not matches:
                raise SourceError(f"{path}: no file matches")
            sources += [_file(p) for p in matches if os.path.isfile(p)]
        elif os.path.isfile(path):
            sources.append(_file(path))
        else:
            raise SourceError(f"{path}: no such file or directory")
    return sources


def _in_memory(item: Any) -> Source:
    if isinstance(item, pa.RecordBatchReader):
        return Source("<reader>", "reader", table=item)
    if isinstance(item, pa.RecordBatch):
        item = pa.Table.from_batches([item])
    if isinstance(item, pa.Table):
        return Source("<table>", "table", rows=item.num_rows, table=item)
    module = type(item).__module__.split(".")[0]
    if module == "pandas":
        return Source("<DataFrame>", "table", rows=len(item), table=pa.Table.from_pandas(item, preserve_index=False))
    if module == "polars":
        table = item.to_arrow()
        return Source("<DataFrame>", "table", rows=table.num_rows, table=table)
    raise SourceError(f"cannot read a {type(item).__name__}: give a path, a pyarrow Table or RecordBatchReader, "
                      "or a pandas or polars DataFrame")


def _file(path: str) -> Source:
    kind = _format_of(path)
    rows = None
    if kind == "parquet":
        rows = pq.ParquetFile(path).metadata.num_rows
    elif kind == "ipc":
        try:  # the file format's footer lists the batches: counting them reads no data (memory-mapped)
            reader = ipc.open_file(pa.memory_map(path))
            rows = sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
        except pa.ArrowInvalid:
            rows = None  # the streaming format has no footer
    return Source(path, kind, path=path, rows=rows)


def _directory(path: str) -> list[Source]:
    files = sorted(p for p in glob.glob(os.path.join(path, "**", "*"), recursive=True)
                   if os.path.isfile(p) and not os.path.basename(p).startswith(("_", ".")))
    kinds = {_format_of(p) for p in files}
    if not files:
        raise SourceError(f"{path}: an empty directory")
    if len(kinds) != 1 or kinds <= {"npz"}:
        raise SourceError(f"{path}: a directory must hold files of one format (Parquet, IPC, CSV or JSON lines); "
                          f"found {', '.join(sorted(kinds))}")
    kind = kinds.pop()
    dataset = ds.dataset(files, format={"ipc": "arrow"}.get(kind, kind), partitioning="hive",
                         partition_base_dir=path)
    by_path = {f.path: f for f in dataset.get_fragments()}
    return [Source(p, kind, path=p, rows=_rows_of(p, kind), dataset=dataset, fragment=by_path[p]) for p in files]


def _rows_of(path: str, kind: str) -> int | None:
    return pq.ParquetFile(path).metadata.num_rows if kind == "parquet" else None


def schema_of(source: Source) -> pa.Schema:
    """The columns a source offers (partition columns included)."""
    if source.dataset is not None:
        return source.dataset.schema
    if source.kind in ("table", "reader"):
        return source.table.schema
    if source.kind == "parquet":  # from the footer: no data read
        return pq.ParquetFile(source.path).schema_arrow
    if source.kind == "ipc":
        try:
            return ipc.open_file(pa.memory_map(source.path)).schema
        except pa.ArrowInvalid:
            return ipc.open_stream(pa.memory_map(source.path)).schema
    first = next(iter(_units(source, None)), None)  # CSV, JSON, npz: the first block says
    return first.data.schema if first is not None else pa.schema([])


def read(source: Source, columns: Sequence[str] | None, rows: int = 1 << 16) -> Iterator[Unit]:
    """The units of ``source``, holding only ``columns`` (all when None), of about ``rows`` rows where the
    format lets the reader cut them so (Parquet)."""
    return _units(source, columns, rows)


def _units(source: Source, columns: Sequence[str] | None, rows: int = 1 << 16) -> Iterator[Unit]:
    row = 0
    for table in _tables(source, columns, rows):
        if columns is not None:
            table = table.select(list(columns))
        yield Unit(source.label, row, table)
        row += table.num_rows


def _tables(source: Source, columns: Sequence[str] | None, rows: int) -> Iterable[pa.Table]:
    # pyarrow's reader threads are off throughout: on a small machine they fight the scoring threads for the
    # cores (reading a row group measured 4x slower with them on 2 cores).
    kind = source.kind
    if source.fragment is not None:  # a file of a directory: partition columns come from its path
        for piece in source.fragment.split_by_row_group() if kind == "parquet" else [source.fragment]:
            yield piece.to_table(schema=source.dataset.schema, columns=columns, use_threads=False)
    elif kind == "table":
        yield from (pa.Table.from_batches([b]) for b in source.table.to_batches(max_chunksize=1 << 20))
    elif kind == "reader":
        yield from (pa.Table.from_batches([b]) for b in source.table)
    elif kind == "parquet":
        f = pq.ParquetFile(source.path)
        for i in range(f.num_row_groups):  # one row group at a time: the whole-file readers buffer the file
            for batch in f.iter_batches(batch_size=rows, row_groups=[i], columns=columns, use_threads=False):
                yield pa.Table.from_batches([batch])
    elif kind == "ipc":
        yield from _ipc(source.path)
    elif kind == "csv":
        delimiter = "\t" if source.path.lower().removesuffix(".gz").endswith(".tsv") else ","
        reader = pcsv.open_csv(source.path, read_options=pcsv.ReadOptions(block_size=_BLOCK_BYTES,
                                                                          use_threads=False),
                               parse_options=pcsv.ParseOptions(delimiter=delimiter))
        yield from (pa.Table.from_batches([b]) for b in reader)
    elif kind == "json":
        reader = pjson.open_json(source.path, read_options=pjson.ReadOptions(block_size=_BLOCK_BYTES,
                                                                             use_threads=False))
        yield from (pa.Table.from_batches([b]) for b in reader)
    elif kind == "npz":
        yield from _npz(source.path)


def _ipc(path: str) -> Iterator[pa.Table]:
    source = pa.memory_map(path)
    try:
        reader: Any = ipc.open_file(source)
        batches: Iterable[pa.RecordBatch] = (reader.get_batch(i) for i in range(reader.num_record_batches))
    except pa.ArrowInvalid:  # the streaming format
        source = pa.memory_map(path)
        batches = ipc.open_stream(source)
    yield from (pa.Table.from_batches([b]) for b in batches)


def _npz(path: str, rows: int = 1 << 20) -> Iterator[pa.Table]:
    """Each array of an .npz a column (N-D arrays as fixed-size lists). Zip members cannot be read in pieces,
    so the arrays are loaded whole (memory-mapped when the archive stores them uncompressed)."""
    with np.load(path, mmap_mode="r") as archive:
        arrays = {name: archive[name] for name in archive.files}
    lengths = {name: a.shape[0] if a.ndim else 1 for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise SourceError(f"{path}: its arrays differ in length ({lengths}); every array is a column of one table")
    total = next(iter(lengths.values()), 0)
    for start in range(0, max(total, 1), rows):
        yield pa.table({name: tensor_column(np.asarray(a[start: start + rows])) for name, a in arrays.items()})


def rebatch(units: Iterable[Unit], rows: int) -> Iterator[Unit]:
    """Units regrouped into batches of ``rows`` rows (fewer at the end of a source); a batch never spans two
    sources, and is copied only when it joins pieces of several units."""
    pending: list[pa.Table] = []
    count = 0
    start = 0
    label = None
    for unit in units:
        if label is not None and unit.source != label and pending:
            yield Unit(label, start, _join(pending))
            pending, count = [], 0
        if not pending:
            start = unit.first_row
        label = unit.source
        offset = 0
        while offset < unit.data.num_rows:
            take = min(rows - count, unit.data.num_rows - offset)
            pending.append(unit.data.slice(offset, take))
            count += take
            offset += take
            if count == rows:
                yield Unit(label, start, _join(pending))
                pending, count = [], 0
                start = unit.first_row + offset
    if pending and label is not None:
        yield Unit(label, start, _join(pending))


def _join(pieces: list[pa.Table]) -> pa.Table:
    return pieces[0] if len(pieces) == 1 else pa.concat_tables(pieces).combine_chunks()
