"""The end-of-run summary: rows, mean and sum of the per-row loss, its p50/p90/p99/max, time and rate —
overall and per slice — in bounded memory.

Mean, sum and max are exact (accumulated in float64). Percentiles are exact (numpy's linear interpolation)
for up to EXACT_ROWS rows of a slice; past that they come from Apache DataSketches' KLL sketch (k = 2048: a
normalized rank error of about 0.1%), whose memory does not grow with the rows.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from datasketches import kll_doubles_sketch

SKETCH_K = 2048
EXACT_ROWS = 1 << 18
QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))


@dataclass
class Stats:
    """Running totals of one set of per-row losses (refused rows counted apart)."""

    rows: int = 0
    refused: int = 0
    total: float = 0.0
    maximum: float = -math.inf
    nan: int = 0
    exact: list[np.ndarray] | None = field(default_factory=list)  # the values, until EXACT_ROWS; then None
    kept: int = 0
    sketch: Any = None

    def add(self, loss: np.ndarray, refused: np.ndarray) -> None:
        """Count a batch: ``loss`` per row, ``refused`` true where the row got no score."""
        good = np.asarray(loss, dtype=np.float64)[~refused]
        self.rows += len(loss)
        self.refused += int(refused.sum())
        finite = good[~np.isnan(good)]
        self.nan += len(good) - len(finite)
        self.total += float(finite.sum(dtype=np.float64))
        if not len(finite):
            return
        self.maximum = max(self.maximum, float(finite.max()))
        if self.exact is not None and self.kept + len(finite) <= EXACT_ROWS:
            self.exact.append(finite)
            self.kept += len(finite)
            return
        if self.sketch is None:
            self.sketch = kll_doubles_sketch(SKETCH_K)
            for values in self.exact or ():
                self.sketch.update(values)
            self.exact = None
        self.sketch.update(finite)

    def quantile(self, q: float) -> float:
        """The q-quantile of the scored rows' losses (NaN excluded)."""
        if self.exact is not None:
            return float(np.quantile(np.concatenate(self.exact), q))
        return float(self.sketch.get_quantile(q))

    def as_dict(self) -> dict[str, Any]:
        """rows, scored, refused, mean, sum, p50, p90, p99, max (None where nothing was scored)."""
        scored = self.rows - self.refused
        counted = scored - self.nan
        out: dict[str, Any] = {"rows": self.rows, "scored": scored, "refused": self.refused}
        if self.nan:
            out["nan"] = self.nan
        out["mean"] = self.total / counted if counted else None
        out["sum"] = self.total if counted else None
        for name, q in QUANTILES:
            out[name] = self.quantile(q) if counted else None
        out["max"] = self.maximum if counted else None
        return out


class Summary:
    """Totals overall and, with a slice column, per value of it."""

    def __init__(self, slice_by: str | None = None) -> None:
        self.slice_by = slice_by
        self.overall = Stats()
        self.slices: dict[Any, Stats] = {}
        self.seconds = 0.0
        self.bytes_read = 0

    def add(self, loss: np.ndarray, refused: np.ndarray, slice_values: Any = None) -> None:
        """Count a batch; ``slice_values`` (a pyarrow array) gives each row's slice."""
        self.overall.add(loss, refused)
        if self.slice_by is None or slice_values is None:
            return
        keys = slice_values.to_numpy(zero_copy_only=False)
        comparable = keys.astype(str) if keys.dtype == object else keys  # (None and mixed types sort as text)
        _, first, inverse = np.unique(comparable, return_index=True, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(len(first) + 1))
        for i, at in enumerate(first):
            rows = order[bounds[i]: bounds[i + 1]]
            self.slices.setdefault(_plain(keys[at]), Stats()).add(loss[rows], refused[rows])

    def as_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready data: overall figures, time, rate and the slices sorted by mean loss."""
        out = self.overall.as_dict()
        out["seconds"] = round(self.seconds, 3)
        out["rows_per_second"] = round(self.overall.rows / self.seconds, 1) if self.seconds > 0 else None
        if self.slice_by is not None:
            slices = [{"value": key, **stats.as_dict()} for key, stats in self.slices.items()]
            slices.sort(key=lambda s: -math.inf if s["mean"] is None else s["mean"], reverse=True)
            out["slice_by"] = self.slice_by
            out["slices"] = slices
        return out

    def write(self, path: str) -> None:
        """The summary as JSON, at ``path``."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.as_dict(), f, indent=1, default=str)
            f.write("\n")

    def render(self) -> str:
        """The summary as a text table (the CLI prints it)."""
        data = self.as_dict()
        head = ["rows", "mean", "sum", "p50", "p90", "p99", "max"]
        lines = [f"{'':<16}" + "".join(f"{h:>14}" for h in head)]
        lines.append(f"{'all':<16}" + "".join(_cell(data[h]) for h in head))
        for s in data.get("slices", []):
            lines.append(f"{str(s['value'])[:15]:<16}" + "".join(_cell(s[h]) for h in head))
        extra = f", {data['refused']:,} refused" if data["refused"] else ""
        rate = f"{data['rows_per_second']:,.0f} rows/s" if data["rows_per_second"] else "-"
        lines.append(f"{data['rows']:,} rows{extra} in {data['seconds']:.2f} s ({rate})")
        return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return f"{'-':>14}"
    if isinstance(value, int):
        return f"{value:>14,}"
    return f"{value:>14.6g}"


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
