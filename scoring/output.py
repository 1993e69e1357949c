"""The scored dataset on disk: a directory of numbered part files and a manifest, each written atomically.

``OUT/part-000000.parquet, part-000001.parquet, ...`` in input order, and ``OUT/_lossd_manifest.json`` (a name
Arrow and Spark readers skip, so the directory reads as one dataset) recording the job and the finished parts.
A part is written to a temporary name and renamed; the manifest likewise, after the part. An interrupted run —
Ctrl-C, SIGTERM or SIGKILL — therefore leaves only whole parts, and ``resume`` carries on after the last one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from lossd.scoring.engines import UsageError

MANIFEST = "_lossd_manifest.json"
EXTENSIONS = {"parquet": "parquet", "arrow": "arrow", "csv": "csv", "jsonl": "jsonl"}


def _atomic(path: str, write: Any) -> None:
    """Write to a temporary name, then rename: a reader (or a resumed run) sees the whole file or none.
    No fsync: this guards against the process being stopped, which is what resume is for; after a crash of
    the machine itself a resumed run checks each part's row count and rewrites from the first bad one."""
    tmp = f"{os.path.dirname(path)}/.{os.path.basename(path)}.tmp"
    write(tmp)
    os.replace(tmp, path)


def write_table(table: pa.Table, path: str, fmt: str) -> None:
    """``table`` as one file of format ``fmt`` (parquet, arrow, csv or jsonl)."""
    if fmt == "parquet":
        # Dictionary-encoding floats (losses, gradients) costs 3-4x the write and saves nothing: only the other
        # (kept) columns get it.
        wordy = [f.name for f in table.schema if not _floats(f.type)]
        pq.write_table(table, path, use_dictionary=wordy or False)
    elif fmt == "arrow":
        with ipc.new_file(path, table.schema) as writer:
            writer.write_table(table)
    elif fmt == "csv":
        pcsv.write_csv(table, path)
    elif fmt == "jsonl":
        with open(path, "w", encoding="utf-8") as f:
            for row in table.to_pylist():
                f.write(json.dumps(row, default=_json_default) + "\n")
    else:
        raise UsageError(f"--format {fmt}: expected one of {', '.join(EXTENSIONS)}")


def _floats(kind: pa.DataType) -> bool:
    while pa.types.is_fixed_size_list(kind) or isinstance(kind, pa.ExtensionType):
        kind = kind.storage_type if isinstance(kind, pa.ExtensionType) else kind.value_type
    return pa.types.is_floating(kind)


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


class DatasetWriter:
    """Writes parts in order and keeps the manifest; ``done`` is how many parts an earlier run finished."""

    def __init__(self, path: str, fmt: str, job: Mapping[str, Any], *, resume: bool) -> None:
        if fmt not in EXTENSIONS:
            raise UsageError(f"--format {fmt}: expected one of {', '.join(EXTENSIONS)}")
        self.path = path
        self.fmt = fmt
        self._job = dict(job)
        self.parts: list[dict[str, Any]] = []
        manifest = os.path.join(path, MANIFEST)
        if os.path.exists(manifest):
            if not resume:
                raise UsageError(f"{path} holds an earlier run's output: add --resume to finish it, or remove it")
            with open(manifest, encoding="utf-8") as f:
                earlier = json.load(f)
            if earlier.get("job") != self._job:
                raise UsageError(f"{path} was written by a different job; --resume needs the same inputs and "
                                 "options (remove it to start again)")
            # Only parts that are both in the manifest and on disk count (a part is renamed before the manifest).
            for part in earlier.get("parts", []):
                if len(self.parts) != part["part"] or _rows_in(os.path.join(path, part["file"]), fmt) \
                        not in (part["rows"], None):
                    break
                self.parts.append(part)
        elif os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
            raise UsageError(f"{path} exists and is not a lossd output directory; choose another --out")
        os.makedirs(path, exist_ok=True)

    @property
    def done(self) -> int:
        """Parts already written (by this run or an earlier one)."""
        return len(self.parts)

    def write(self, index: int, table: pa.Table, **info: Any) -> None:
        """Write part ``index`` (the next one) and record it in the manifest."""
        if index != len(self.parts):
            raise RuntimeError(f"part {index} written out of order (expected {len(self.parts)})")
        name = f"part-{index:06d}.{EXTENSIONS[self.fmt]}"
        _atomic(os.path.join(self.path, name), lambda tmp: write_table(table, tmp, self.fmt))
        self.parts.append({"part": index, "file": name, "rows": table.num_rows, **info})
        self._save(complete=False)

    def finish(self) -> None:
        """Mark the dataset complete."""
        self._save(complete=True)

    def _save(self, complete: bool) -> None:
        manifest = {"format": self.fmt, "complete": complete, "job": self._job, "parts": self.parts}
        target = os.path.join(self.path, MANIFEST)

        def dump(tmp: str) -> None:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(manifest, f, indent=1)
        _atomic(target, dump)

    def read_done(self, columns: list[str]) -> Iterator[pa.Table]:
        """The finished parts, read back (only ``columns``): what a resumed run's summary needs."""
        for part in self.parts:
            yield read_part(os.path.join(self.path, part["file"]), self.fmt, columns)


def _rows_in(path: str, fmt: str) -> int | None:
    """A part's row count from its footer (-1 when missing or unreadable; None where the format has none)."""
    try:
        if fmt == "parquet":
            return int(pq.ParquetFile(path).metadata.num_rows)
        if fmt == "arrow":
            with pa.memory_map(path) as source:
                reader = ipc.open_file(source)
                return sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
        return None if os.path.getsize(path) else -1
    except (OSError, pa.ArrowInvalid):
        return -1


def read_part(path: str, fmt: str, columns: list[str]) -> pa.Table:
    """One part file, ``columns`` only."""
    if fmt == "parquet":
        return pq.read_table(path, columns=columns)
    if fmt == "arrow":
        with pa.memory_map(path) as source:
            return ipc.open_file(source).read_all().select(columns)
    if fmt == "csv":
        return pcsv.read_csv(path).select(columns)
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    return pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows])
