"""The per-call metric families (lossd.server.series) expose what prometheus_client's own would."""

from __future__ import annotations

import re
import threading

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from lossd.server.series import CounterFamily, HistogramFamily

_BUCKETS = (0.001, 0.01, 0.1, 1.0)


def _exposition(registry: CollectorRegistry) -> str:
    """The text exposition with the _created timestamps blanked (they differ by construction)."""
    return re.sub(r"(_created\{[^}]*\}) \S+", r"\1 T", generate_latest(registry).decode())


def test_histogram_exposition_matches_prometheus_client() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    family = HistogramFamily("lossd_t_seconds", "A test histogram.", ["method"], _BUCKETS, ours)
    native = Histogram("lossd_t_seconds", "A test histogram.", ["method"], buckets=_BUCKETS, registry=theirs)
    for method, value in [("A", 0.0005), ("A", 0.001), ("A", 0.05), ("B", 3.0), ("A", 1.0), ("B", 0.0)]:
        with family.lock:
            family.cell(method).observe(value)
        native.labels(method).observe(value)
    assert _exposition(ours) == _exposition(theirs)


def test_counter_exposition_matches_prometheus_client() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    family = CounterFamily("lossd_t", "A test counter.", ["method", "code"], ours, None)
    native = Counter("lossd_t", "A test counter.", ["method", "code"], registry=theirs)
    for labels, amount in [(("A", "OK"), 1), (("A", "OK"), 2048), (("B", "INTERNAL"), 1)]:
        with family.lock:
            family.cell(*labels).value += amount
        native.labels(*labels).inc(amount)
    assert _exposition(ours) == _exposition(theirs)


def test_a_value_on_a_bound_is_counted_in_that_bucket() -> None:
    family = HistogramFamily("lossd_t_seconds", "t", [], _BUCKETS, CollectorRegistry())
    cell = family.cell()
    cell.observe(0.01)
    assert cell.counts == [0, 1, 0, 0, 0]


def test_a_value_past_every_bound_is_counted_only_in_inf() -> None:
    family = HistogramFamily("lossd_t_seconds", "t", [], _BUCKETS, CollectorRegistry())
    family.cell().observe(5.0)
    (metric,) = family.collect()
    buckets = {s.labels["le"]: s.value for s in metric.samples if s.name.endswith("_bucket")}
    assert (buckets["1.0"], buckets["+Inf"]) == (0.0, 1.0)


def test_the_same_labels_give_the_same_series() -> None:
    family = CounterFamily("lossd_t", "t", ["method"], CollectorRegistry(), None)
    assert family.cell("A") is family.cell("A")


def test_wrong_label_count_is_refused() -> None:
    family = CounterFamily("lossd_t", "t", ["method", "code"], CollectorRegistry(), None)
    with pytest.raises(ValueError, match="takes labels"):
        family.cell("A")


def test_concurrent_observations_under_the_lock_are_all_counted() -> None:
    family = HistogramFamily("lossd_t_seconds", "t", ["device"], _BUCKETS, CollectorRegistry())
    per_thread, threads = 20_000, 4

    def work() -> None:
        cell = family.cell("cpu")
        for _ in range(per_thread):
            with family.lock:
                cell.observe(0.005)

    started = [threading.Thread(target=work) for _ in range(threads)]
    for t in started:
        t.start()
    for t in started:
        t.join()
    cell = family.cell("cpu")
    assert (sum(cell.counts), cell.counts[1]) == (per_thread * threads, per_thread * threads)
