"""The deployment files agree with the server: ports, probes, grace periods."""

from __future__ import annotations

import re
from pathlib import Path

from lossd.server.settings import DEFAULT_HTTP_PORT, DEFAULT_METRICS_PORT, DEFAULT_PORT

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
ROOT = DEPLOY.parent


def test_kubernetes_grace_outlasts_the_servers_own() -> None:
    """terminationGracePeriodSeconds exceeds LOSSD_GRACE_SECONDS, so in-flight calls can finish."""
    text = (DEPLOY / "k8s" / "deployment.yaml").read_text()
    pod_grace = int(re.search(r"terminationGracePeriodSeconds: (\d+)", text).group(1))  # type: ignore[union-attr]
    server_grace = int(re.search(r'LOSSD_GRACE_SECONDS, value: "(\d+)"', text).group(1))  # type: ignore[union-attr]
    assert pod_grace > server_grace


def test_kubernetes_probes_use_the_grpc_health_service_on_the_served_port() -> None:
    """Readiness and liveness are gRPC health checks on the gRPC port."""
    text = (DEPLOY / "k8s" / "deployment.yaml").read_text()
    assert text.count(f"grpc: {{port: {DEFAULT_PORT}}}") == 2
    assert f"containerPort: {DEFAULT_METRICS_PORT}" in text


def test_service_is_headless_for_client_side_balancing() -> None:
    """The Service has no cluster IP, so DNS lists every pod for round_robin clients."""
    assert "clusterIP: None" in (DEPLOY / "k8s" / "service.yaml").read_text()


def test_dockerfile_health_check_and_ports_match_the_defaults() -> None:
    """The image exposes the default ports and checks health with `lossd health`."""
    text = (ROOT / "Dockerfile").read_text()
    assert f"EXPOSE {DEFAULT_PORT} {DEFAULT_METRICS_PORT}" in text
    assert "lossd health" in text and "USER lossd" in text


def test_prometheus_scrapes_the_metrics_port() -> None:
    """The scrape config targets the default metrics port."""
    assert f"port: {DEFAULT_METRICS_PORT}" in (DEPLOY / "prometheus" / "prometheus.yml").read_text()


def test_dockerfile_copies_every_package_folder() -> None:
    """Each folder pyproject maps into the lossd namespace is copied into the build stage."""
    import tomllib

    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    folders = {path.split("/")[0] for path in mapping.values()}
    text = (ROOT / "Dockerfile").read_text()
    assert sorted(f for f in folders if f"COPY {f} {f}" not in text) == []


def _yaml(path: Path) -> list[dict]:
    import yaml

    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_compose_wires_lossd_prometheus_and_grafana_together() -> None:
    """Compose: the mounted files exist; Prometheus's config and Grafana's provisioning match their mounts."""
    compose = _yaml(ROOT / "docker-compose.yml")[0]["services"]
    assert {"lossd", "prometheus", "grafana"} <= set(compose)
    assert compose["lossd"]["deploy"]["replicas"] >= 2
    for service in ("prometheus", "grafana"):
        for volume in compose[service]["volumes"]:
            source = volume.split(":")[0]
            assert (ROOT / source).exists(), volume
    prometheus = _yaml(DEPLOY / "prometheus" / "prometheus.yml")[0]
    sd = prometheus["scrape_configs"][0]["dns_sd_configs"][0]
    assert sd["names"] == ["lossd"] and sd["port"] == DEFAULT_METRICS_PORT
    provider = _yaml(DEPLOY / "grafana" / "provisioning" / "dashboards" / "lossd.yml")[0]["providers"][0]
    mounts = dict(v.split(":")[1::-1] for v in compose["grafana"]["volumes"])  # target -> source
    assert mounts[provider["options"]["path"]] == "./deploy/grafana/dashboards"
    datasource = _yaml(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")[0]["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"


def test_kubernetes_manifests_refer_to_each_other() -> None:
    """Service, HPA and PDB select the Deployment's pods; probes and ports use its named container ports."""
    deployment = _yaml(DEPLOY / "k8s" / "deployment.yaml")[0]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": DEFAULT_PORT, "metrics": DEFAULT_METRICS_PORT, "http": DEFAULT_HTTP_PORT}
    assert container["readinessProbe"]["grpc"]["port"] == ports["grpc"]
    assert container["livenessProbe"]["grpc"]["port"] == ports["grpc"]
    assert "nvidia.com/gpu" in container["resources"]["limits"]
    service = _yaml(DEPLOY / "k8s" / "service.yaml")[0]
    assert service["spec"]["selector"] == labels
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= set(ports)
    hpa = _yaml(DEPLOY / "k8s" / "hpa.yaml")[0]
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    pdb = _yaml(DEPLOY / "k8s" / "pdb.yaml")[0]
    assert pdb["spec"]["selector"]["matchLabels"] == labels


def test_compose_and_kubernetes_turn_the_rest_front_on_at_its_port() -> None:
    """The REST front is off by default; compose and the Deployment turn it on at the port the Service and the
    image expose."""
    compose = _yaml(ROOT / "docker-compose.yml")[0]["services"]["lossd"]
    assert compose["environment"]["LOSSD_HTTP_PORT"] == str(DEFAULT_HTTP_PORT)
    container = _yaml(DEPLOY / "k8s" / "deployment.yaml")[0]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["LOSSD_HTTP_PORT"] == str(DEFAULT_HTTP_PORT)
    service = _yaml(DEPLOY / "k8s" / "service.yaml")[0]
    assert {"name": "http", "port": DEFAULT_HTTP_PORT, "targetPort": "http"} in service["spec"]["ports"]
    assert f"EXPOSE {DEFAULT_PORT} {DEFAULT_METRICS_PORT} {DEFAULT_HTTP_PORT}" in (ROOT / "Dockerfile").read_text()
