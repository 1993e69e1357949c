"""TLS, mutual TLS and bearer tokens, with real handshakes on loopback; and the limits that shed load."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from certs import Authority, make_authority

from lossd.client import LossClient, ResourceExhaustedError, UnauthenticatedError, UnavailableError
from lossd.server import BackgroundServer, ServerSettings
from lossd.server.security import load_token_digests, token_matches

X = np.array([3.0])
Y = np.array([1.0])


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    """A CA, and the server and client certificates it signed."""
    return make_authority(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_server(authority: Authority) -> Iterator[BackgroundServer]:
    """A server on TLS (no client certificates required)."""
    settings = ServerSettings(port=0, metrics_port=0, device="cpu", tls_cert=authority.path("server.pem"),
                              tls_key=authority.path("server.key"))
    with BackgroundServer(settings) as srv:
        yield srv


@pytest.fixture(scope="module")
def mtls_server(authority: Authority) -> Iterator[BackgroundServer]:
    """A server on mutual TLS: clients need a certificate signed by the test CA."""
    settings = ServerSettings(port=0, metrics_port=0, device="cpu", tls_cert=authority.path("server.pem"),
                              tls_key=authority.path("server.key"), tls_client_ca=authority.path("ca.pem"))
    with BackgroundServer(settings) as srv:
        yield srv


def test_tls_client_trusting_the_ca_computes(tls_server: BackgroundServer, authority: Authority) -> None:
    """A client that trusts the CA completes the handshake and gets the loss."""
    with LossClient(tls_server.address, root_certificates=authority.ca.cert, timeout=10) as c:
        assert c.compute("mse", input=X, target=Y) == 4.0


def test_tls_client_trusting_another_ca_is_refused(tls_server: BackgroundServer, tmp_path: Path) -> None:
    """A client trusting a different CA fails the handshake (UNAVAILABLE), no answer leaks."""
    other = make_authority(tmp_path / "other", "another CA")
    with LossClient(tls_server.address, root_certificates=other.ca.cert, timeout=5) as c, \
            pytest.raises(UnavailableError):
        c.compute("mse", input=X, target=Y)


def test_plaintext_client_cannot_talk_to_a_tls_server(tls_server: BackgroundServer) -> None:
    """Without TLS the connection fails."""
    with LossClient(tls_server.address, timeout=5) as c, pytest.raises(UnavailableError):
        c.compute("mse", input=X, target=Y)


def test_mtls_client_with_a_certificate_computes(mtls_server: BackgroundServer, authority: Authority) -> None:
    """With a client certificate signed by the CA, mutual TLS succeeds."""
    with LossClient(mtls_server.address, root_certificates=authority.ca.cert, client_certificate=authority.client.cert,
                    client_key=authority.client.key, timeout=10) as c:
        assert c.compute("mse", input=X, target=Y) == 4.0


def test_mtls_client_without_a_certificate_is_refused(mtls_server: BackgroundServer, authority: Authority) -> None:
    """Mutual TLS refuses a client that shows no certificate."""
    with LossClient(mtls_server.address, root_certificates=authority.ca.cert, timeout=5) as c, \
            pytest.raises(UnavailableError):
        c.compute("mse", input=X, target=Y)


def test_mtls_client_with_a_certificate_from_another_ca_is_refused(mtls_server: BackgroundServer,
                                                                    authority: Authority, tmp_path: Path) -> None:
    """A client certificate signed by another CA is refused."""
    other = make_authority(tmp_path / "rogue", "rogue CA")
    with LossClient(mtls_server.address, root_certificates=authority.ca.cert, client_certificate=other.client.cert,
                    client_key=other.client.key, timeout=5) as c, pytest.raises(UnavailableError):
        c.compute("mse", input=X, target=Y)


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    """A server with two tokens: one written plainly, one as its SHA-256; health left open."""
    folder = tmp_path_factory.mktemp("tokens")
    tokens = folder / "tokens"
    tokens.write_text("# lossd tokens\nplain-token-1\nsha256:" + hashlib.sha256(b"hashed-token-2").hexdigest() + "\n")
    settings = ServerSettings(port=0, metrics_port=0, device="cpu", auth_tokens_file=tokens, auth_exempt_health=True)
    with BackgroundServer(settings) as srv:
        srv.server.serve_metrics("127.0.0.1", 0)
        yield srv


@pytest.mark.parametrize("token", ["plain-token-1", "hashed-token-2"])
def test_valid_tokens_are_accepted(auth_server: BackgroundServer, token: str) -> None:
    """Both a plainly listed token and a hashed one authenticate."""
    with LossClient(auth_server.address, token=token, timeout=10) as c:
        assert c.compute("mse", input=X, target=Y) == 4.0


@pytest.mark.parametrize("token", [None, "wrong", "plain-token-1x"])
def test_missing_or_wrong_tokens_are_unauthenticated(auth_server: BackgroundServer, token: str | None) -> None:
    """No token, or an unknown one, gets UNAUTHENTICATED; the streaming RPCs are guarded too."""
    with LossClient(auth_server.address, token=token, timeout=10, stream_mb=0) as c:
        with pytest.raises(UnauthenticatedError):
            c.compute("mse", input=X, target=Y)
        with pytest.raises(UnauthenticatedError):
            c.gradient("mse", input=np.ones(200_000), target=np.zeros(200_000))


def test_health_is_exempt_when_configured(auth_server: BackgroundServer) -> None:
    """With auth_exempt_health, a probe without a token still reads SERVING."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(auth_server.address) as ch:
        reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_tokens_never_appear_in_metrics(auth_server: BackgroundServer) -> None:
    """Refusals are counted by reason, and no token text reaches the metrics page."""
    import urllib.request

    with LossClient(auth_server.address, token="secret-guess-42", timeout=10) as c, \
            pytest.raises(UnauthenticatedError):
        c.compute("mse", input=X, target=Y)
    port = auth_server.server.metrics_port
    page = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'lossd_rejected_total{reason="unauthenticated"}' in page
    assert "secret-guess-42" not in page and "plain-token-1" not in page


def test_token_file_parsing(tmp_path: Path) -> None:
    """Comments and blanks are skipped; a malformed sha256 line is an error naming the line."""
    good = tmp_path / "good"
    good.write_text("\n# c\nabc\n")
    assert token_matches("abc", load_token_digests(good)) and not token_matches("abd", load_token_digests(good))
    bad = tmp_path / "bad"
    bad.write_text("sha256:1234\n")
    with pytest.raises(ValueError, match=":1: sha256"):
        load_token_digests(bad)


def test_request_over_the_element_limit_is_refused(tmp_path: Path) -> None:
    """max_request_elements counts every tensor together; over it: RESOURCE_EXHAUSTED on "inputs"."""
    settings = ServerSettings(port=0, metrics_port=0, device="cpu", max_request_elements=100)
    with BackgroundServer(settings) as srv, LossClient(srv.address, timeout=10) as c:
        assert c.compute("mse", input=np.ones(50), target=np.ones(50)) == 0.0
        with pytest.raises(ResourceExhaustedError) as err:
            c.compute("mse", input=np.ones(51), target=np.ones(51))
    assert err.value.fields == ["inputs"]


def _slow_registry(release: object, entered: object = None) -> object:
    import threading

    import torch

    from lossd.losses import LossSpec, Registry, Role
    from lossd.losses.spec import Kind

    assert isinstance(release, threading.Event)

    def slow(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        if entered is not None:
            entered.set()  # type: ignore[attr-defined]
        release.wait(timeout=10)
        return torch.nn.functional.mse_loss(input, target, reduction=reduction)

    roles = (Role("input", (Kind.FLOAT,), "(*)", "x", differentiable=True), Role("target", (Kind.FLOAT,), "(*)", "y"))
    return Registry([LossSpec(name="slow", summary="waits", formula="-", fn=slow, roles=roles,
                              check=lambda t, p: None, unreduced_shape=lambda t, p: ())])


def test_calls_beyond_max_in_flight_are_shed_at_once() -> None:
    """With max_in_flight=1 and one call running, the next gets RESOURCE_EXHAUSTED immediately."""
    import threading
    import time

    release, entered = threading.Event(), threading.Event()
    settings = ServerSettings(port=0, metrics_port=0, device="cpu", inline_bytes=0, max_in_flight=1)
    with BackgroundServer(settings, registry=_slow_registry(release, entered)) as srv, \
            LossClient(srv.address, timeout=20) as c:
        first = threading.Thread(target=c.compute, args=("slow",), kwargs={"input": X, "target": Y})
        first.start()
        assert entered.wait(timeout=20)  # the first call is computing (it waits on `release`)
        started = time.perf_counter()
        with pytest.raises(ResourceExhaustedError, match="busy"):
            c.compute("slow", input=X, target=Y)
        assert time.perf_counter() - started < 2.0
        release.set()
        first.join(timeout=20)


def test_computation_past_max_deadline_is_cut_off() -> None:
    """max_deadline_seconds bounds a call's computation: DEADLINE_EXCEEDED, and the server keeps serving."""
    import threading

    from lossd.client import DeadlineExceededError

    release = threading.Event()
    settings = ServerSettings(port=0, metrics_port=0, device="cpu", inline_bytes=0, max_deadline_seconds=0.2)
    with BackgroundServer(settings, registry=_slow_registry(release)) as srv, \
            LossClient(srv.address, timeout=20) as c:
        with pytest.raises(DeadlineExceededError):
            c.compute("slow", input=X, target=Y)
        release.set()
        assert c.compute("slow", input=X, target=Y) == 4.0


def test_health_command_checks_a_tls_server(tls_server: BackgroundServer, authority: Authority) -> None:
    """`lossd health --tls-ca` exits 0 and prints SERVING for a TLS server."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "lossd.cli", "health", "--address", tls_server.address,
                          "--tls-ca", str(authority.path("ca.pem"))], capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stdout.strip()) == (0, "SERVING")
