"""The Prometheus endpoint: scraped over HTTP, its counters move with the calls made."""

from __future__ import annotations

import urllib.request

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from lossd.client import LossClient, LossNotFoundError


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the endpoint, keyed by (name, sorted labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(samples: dict, name: str, **labels: str) -> float:
    """One sample's value, 0 when absent."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def port(server) -> int:  # type: ignore[no-untyped-def]
    """The session server's metrics port."""
    assert server.server.metrics_port
    return server.server.metrics_port


def test_successful_call_increments_requests_total(client: LossClient, port: int) -> None:
    """One OK Compute of mse adds exactly 1 to lossd_requests_total{Compute,mse,OK}."""
    before = sample(scrape(port), "lossd_requests_total", method="Compute", loss="mse", code="OK")
    client.compute("MSELoss", input=np.ones(3, np.float32), target=np.zeros(3, np.float32))
    after = sample(scrape(port), "lossd_requests_total", method="Compute", loss="mse", code="OK")
    assert after - before == 1


def test_refused_call_is_counted_by_code(client: LossClient, port: int) -> None:
    """An INVALID_ARGUMENT answer is counted under its code."""
    labels = {"method": "Compute", "loss": "mse", "code": "INVALID_ARGUMENT"}
    before = sample(scrape(port), "lossd_requests_total", **labels)
    with pytest.raises(Exception):  # noqa: B017 - the code is what this test checks, via metrics
        client.compute("mse", input=np.ones(3, np.float32), target=np.zeros(4, np.float32))
    assert sample(scrape(port), "lossd_requests_total", **labels) - before == 1


def test_unknown_loss_name_is_labelled_unknown(client: LossClient, port: int) -> None:
    """A made-up loss name is counted as loss="unknown", never as the raw string."""
    before = sample(scrape(port), "lossd_requests_total", method="Compute", loss="unknown", code="NOT_FOUND")
    with pytest.raises(LossNotFoundError):
        client.compute("x-made-up-name-123", input=np.ones(1, np.float32))
    samples = scrape(port)
    assert sample(samples, "lossd_requests_total", method="Compute", loss="unknown", code="NOT_FOUND") - before == 1
    assert not any("x-made-up-name-123" in str(key) for key in samples)


def test_latency_histogram_counts_each_call(client: LossClient, port: int) -> None:
    """lossd_request_duration_seconds gains one observation per Gradient call, with +Inf bucket equal to count."""
    before = sample(scrape(port), "lossd_request_duration_seconds_count", method="Gradient", loss="huber")
    for _ in range(3):
        client.gradient("huber", input=np.ones(5, np.float64), target=np.zeros(5, np.float64))
    samples = scrape(port)
    count = sample(samples, "lossd_request_duration_seconds_count", method="Gradient", loss="huber")
    assert count - before == 3
    inf = sample(samples, "lossd_request_duration_seconds_bucket", method="Gradient", loss="huber", le="+Inf")
    assert inf == count


def test_elements_counter_adds_the_tensor_elements(client: LossClient, port: int) -> None:
    """A call with two 10-element tensors adds 20 to lossd_elements_total."""
    before = sample(scrape(port), "lossd_elements_total", method="Compute", loss="mae")
    client.compute("mae", input=np.ones(10, np.float32), target=np.zeros(10, np.float32))
    assert sample(scrape(port), "lossd_elements_total", method="Compute", loss="mae") - before == 20


def test_in_flight_gauge_is_zero_when_idle(client: LossClient, port: int) -> None:
    """After calls complete, lossd_requests_in_flight is back to 0."""
    client.compute("mse", input=np.ones(2, np.float32), target=np.zeros(2, np.float32))
    assert sample(scrape(port), "lossd_requests_in_flight", method="Compute") == 0


def test_build_info_names_versions_and_device(port: int, server) -> None:  # type: ignore[no-untyped-def]
    """lossd_build_info is 1, labelled with the torch version and the serving device."""
    import torch

    found = [(dict(labels), v) for (name, labels), v in scrape(port).items() if name == "lossd_build_info"]
    assert len(found) == 1
    labels, value = found[0]
    assert value == 1
    assert labels["torch"] == torch.__version__
    assert labels["device"] == str(server.server.device)
