"""Counters and histograms for the per-call path: plain numbers under a lock, made into samples only when scraped.

prometheus_client's Counter and Histogram cost, per observation, a locked value object per number touched and
a Python loop over the buckets; with five of them per call, a small call's server CPU measured about 60 µs
(~10%) lower without them. These families keep the numbers in slots and expose the same samples as
prometheus_client's own (``_total`` and ``_created``; ``_bucket``, ``_count``, ``_sum`` and ``_created``).
Several families may share one lock, so that a call's numbers change together.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString


class CounterCell:
    """One counter series: add to ``value`` while holding its family's lock."""

    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()


class HistogramCell:
    """One histogram series: per-bucket counts (the last one past every bound) and the sum of observations."""

    __slots__ = ("bounds", "counts", "created", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, value: float) -> None:
        """Count ``value`` (hold the family's lock): in the first bucket whose bound is >= it, as Prometheus's
        inclusive ``le``."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value


class _Family(Collector):
    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry,
                 lock: threading.Lock | None) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.lock = lock or threading.Lock()
        # Copied on write (series are few and made once): a scrape iterates a dict nobody changes, and
        # making a series never takes ``lock``, so it may be done while holding it.
        self._cells: dict[tuple[str, ...], object] = {}
        self._making = threading.Lock()
        registry.register(self)

    def _cell(self, labels: tuple[str, ...], make: type, *args: object) -> object:
        cell = self._cells.get(labels)
        if cell is not None:
            return cell
        if len(labels) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {labels}")
        with self._making:
            cell = self._cells.get(labels)
            if cell is None:
                cell = make(*args)
                self._cells = {**self._cells, labels: cell}
        return cell


class CounterFamily(_Family):
    """A labelled counter: ``cell(*labels)`` once per series, then ``cell.value += n`` under ``lock``."""

    def cell(self, *labels: str) -> CounterCell:
        """The series for ``labels`` (created at first use)."""
        return self._cell(labels, CounterCell)  # type: ignore[return-value]

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self.lock:
            values = [(labels, cell.value, cell.created) for labels, cell in self._cells.items()]
        for labels, value, created in values:
            family.add_metric(labels, value, created=created)
        yield family


class HistogramFamily(_Family):
    """A labelled histogram: ``cell(*labels)`` once per series, then ``cell.observe(v)`` under ``lock``."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float],
                 registry: CollectorRegistry, lock: threading.Lock | None = None) -> None:
        self.bounds = tuple(sorted(float(b) for b in buckets if b != float("inf")))
        super().__init__(name, documentation, labelnames, registry, lock)

    def cell(self, *labels: str) -> HistogramCell:
        """The series for ``labels`` (created at first use)."""
        return self._cell(labels, HistogramCell, self.bounds)  # type: ignore[return-value]

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self.lock:
            values = [(labels, list(cell.counts), cell.sum, cell.created) for labels, cell in self._cells.items()]
        names = [floatToGoString(b) for b in self.bounds]
        for labels, counts, total, created in values:
            cumulative, buckets = 0, []
            for name, count in zip(names, counts, strict=False):
                cumulative += count
                buckets.append((name, float(cumulative)))
            buckets.append(("+Inf", float(cumulative + counts[-1])))
            family.add_metric(labels, buckets, total)
            family.samples.append(Sample(f"{self.name}_created", dict(zip(self.labelnames, labels, strict=True)),
                                         created))
        yield family


__all__ = ["CounterCell", "CounterFamily", "HistogramCell", "HistogramFamily"]
