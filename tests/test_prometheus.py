"""A real Prometheus scrapes lossd with the repository's own config, and the dashboard's queries make sense."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from lossd.client import LossClient

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def _free_port() -> int:
    # Prometheus needs its web port up front; the window between closing and its bind is tiny on loopback.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _query(port: int, expr: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as reply:
        body = json.loads(reply.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="Debian's prometheus is not installed "
                    "(make test installs it when it can)")
def test_prometheus_scrapes_lossd_requests_total(server, client: LossClient, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Prometheus, run with deploy/prometheus/prometheus.yml pointed at this server, reads the calls made."""
    for _ in range(5):
        client.compute("mse", input=np.ones(3), target=np.zeros(3))
    client.gradient("mse", input=np.ones(300_000), target=np.zeros(300_000))  # large: queued for a thread
    # The repository's config, with its DNS discovery (compose's replicas; no DNS server here) swapped for
    # this server's address and its intervals shortened.
    config = (DEPLOY / "prometheus" / "prometheus.yml").read_text()
    config = re.sub(r"dns_sd_configs:\n(?:\s{6,}.*\n)+",
                    f'static_configs:\n      - targets: ["127.0.0.1:{server.server.metrics_port}"]\n', config)
    config = re.sub(r"(scrape_interval|evaluation_interval): \d+s", r"\1: 1s", config)
    assert "static_configs" in config and "job_name: lossd" in config
    (tmp_path / "prometheus.yml").write_text(config)
    port = _free_port()
    proc = subprocess.Popen(["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        seen = 0.0
        while time.monotonic() < deadline:
            try:
                result = _query(port, 'sum(lossd_requests_total{method="Compute",loss="mse",code="OK"})')
            except OSError:  # not listening yet
                result = []
            if result:
                seen = float(result[0]["value"][1])
                if seen >= 5:
                    break
            time.sleep(0.5)
        assert seen >= 5
        for name in ("lossd_request_duration_seconds_bucket", "lossd_elements_total", "lossd_tensor_bytes_total",
                     "lossd_queue_duration_seconds_count", "lossd_compute_duration_seconds_count",
                     "lossd_requests_in_flight", "lossd_build_info", "process_resident_memory_bytes"):
            assert _query(port, name), f"{name} not in Prometheus"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _exposed_names(port: int) -> set[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(f"{family.name}{suffix}" for suffix in ("_total", "_bucket", "_sum", "_count"))
        names.update(sample.name for sample in family.samples)
    return names


def test_every_dashboard_query_names_an_exported_metric(server, client: LossClient) -> None:  # type: ignore[no-untyped-def]
    """Each metric the Grafana dashboard queries is one this server exports."""
    client.compute("mse", input=np.ones(3), target=np.zeros(3))
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "lossd.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    wanted = {name for e in exprs for name in re.findall(r"\b((?:lossd|process)_[a-z_]+)\b", e)}
    assert len(exprs) >= 6 and wanted
    assert sorted(wanted - _exposed_names(server.server.metrics_port)) == []
