"""The end-of-run summary: rows, mean and sum of the per-row loss, its p50/p90/p99/max, time and rate —
overall and per slice — in bounded memory.

Mean, sum and max are exact (accumulated in float64). Percentiles are exact while a slice has up to
``SAMPLE_ROWS`` rows; past that they come from an evenly spaced sample of between half that and that many
rows (every 2nd, then every 4th row, ...), so memory stays bounded and no per-row work is added: a per-value
sketch (KLL, t-digest) costs more per row than scoring an elementwise loss does.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SAMPLE_ROWS = 1 << 18  # overall
SLICE_SAMPLE_ROWS = 1 << 16  # per slice value
QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))


@dataclass
class Stats:
    """Running totals of one set of per-row losses (refused rows counted apart)."""

    rows: int = 0
    refused: int = 0
    total: float = 0.0
    maximum: float = -math.inf
    nan: int = 0
    budget: int = SAMPLE_ROWS
    stride: int = 1  # the sample keeps every stride-th scored row
    seen: int = 0  # scored, non-NaN rows so far (the sample's position)
    sample: list[np.ndarray] = field(default_factory=list)
    kept: int = 0

    def add(self, loss: np.ndarray, refused: np.ndarray | None) -> None:
        """Count a batch: ``loss`` per row, ``refused`` (None: none) true where the row got no score."""
        good = loss[~refused] if refused is not None and refused.any() else loss
        self.rows += len(loss)
        self.refused += len(loss) - len(good)
        total = good.sum(dtype=np.float64)
        if np.isnan(total):  # only then look for the NaN rows (NaN propagates through the sum)
            nan = np.isnan(good)
            self.nan += int(nan.sum())
            good = good[~nan]
            total = good.sum(dtype=np.float64)
        if not len(good):
            return
        self.total += float(total)
        self.maximum = max(self.maximum, float(good.max()))
        first = (-self.seen) % self.stride  # keep rows seen + first, + stride, ... (global positions)
        picked = good[first:: self.stride]
        self.seen += len(good)
        self.sample.append(np.array(picked, dtype=np.float64))
        self.kept += len(picked)
        while self.kept > self.budget:  # thin to every other kept row; positions stay evenly spaced
            merged = np.concatenate(self.sample)
            self.sample = [merged[::2]]
            self.kept = len(self.sample[0])
            self.stride *= 2

    def as_dict(self) -> dict[str, Any]:
        """rows, scored, refused, mean, sum, p50, p90, p99, max (None where nothing was scored)."""
        scored = self.rows - self.refused
        counted = scored - self.nan
        out: dict[str, Any] = {"rows": self.rows, "scored": scored, "refused": self.refused}
        if self.nan:
            out["nan"] = self.nan
        out["mean"] = self.total / counted if counted else None
        out["sum"] = self.total if counted else None
        quantiles = np.quantile(np.concatenate(self.sample), [q for _, q in QUANTILES]) if counted else None
        for i, (name, _) in enumerate(QUANTILES):
            out[name] = float(quantiles[i]) if quantiles is not None else None
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

    def add(self, loss: np.ndarray, refused: np.ndarray | None, slice_values: Any = None) -> None:
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
            self.slices.setdefault(_plain(keys[at]), Stats(budget=SLICE_SAMPLE_ROWS)).add(
                loss[rows], refused[rows] if refused is not None else None)

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
    if abs(value) >= 1e5:
        return f"{value:>14,.0f}"
    return f"{value:>14.6g}"


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
