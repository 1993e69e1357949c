"""TLS credentials and bearer-token authentication.

Tokens come from a file, one a line: either the token itself or ``sha256:<hex digest>`` of it (so the
file need not hold secrets). Only SHA-256 digests are kept in memory, and a presented token is
compared with every one of them in constant time. Tokens never reach logs or metrics.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

# The calls a load balancer's probes make: gRPC health, and the Open Inference Protocol's liveness and readiness.
_HEALTH_PREFIXES = ("/grpc.health.v1.Health/", "/inference.GRPCInferenceService/ServerLive",
                    "/inference.GRPCInferenceService/ServerReady")


def server_credentials(cert: Path, key: Path, client_ca: Path | None) -> grpc.ServerCredentials:
    """TLS with this certificate chain and key; with ``client_ca``, mutual TLS (client certificates required)."""
    pair = [(key.read_bytes(), cert.read_bytes())]
    if client_ca is None:
        return grpc.ssl_server_credentials(pair)
    return grpc.ssl_server_credentials(pair, root_certificates=client_ca.read_bytes(), require_client_auth=True)


def load_token_digests(path: Path) -> tuple[bytes, ...]:
    """SHA-256 digests of the tokens in ``path`` (blank lines and lines starting with # are skipped)."""
    digests = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        if entry.startswith("sha256:"):
            try:
                digest = bytes.fromhex(entry.removeprefix("sha256:"))
            except ValueError:
                digest = b""
            if len(digest) != 32:
                raise ValueError(f"{path}:{number}: sha256: needs 64 hex digits")
            digests.append(digest)
        else:
            digests.append(hashlib.sha256(entry.encode()).digest())
    if not digests:
        raise ValueError(f"{path}: no tokens")
    return tuple(digests)


def token_matches(presented: str, digests: tuple[bytes, ...]) -> bool:
    """Whether ``presented`` is one of the tokens; every digest is compared, in constant time."""
    digest = hashlib.sha256(presented.encode()).digest()
    found = False
    for known in digests:
        found |= hmac.compare_digest(digest, known)
    return found


class TokenAuthInterceptor(grpc.ServerInterceptor):
    """Refuses calls without ``authorization: Bearer <token>`` naming a known token (UNAUTHENTICATED)."""

    def __init__(self, digests: tuple[bytes, ...], exempt_health: bool,
                 on_reject: Callable[[str], None] = lambda reason: None) -> None:
        self._digests = digests
        self._exempt_health = exempt_health
        self._on_reject = on_reject

    def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], Any],
                          details: grpc.HandlerCallDetails) -> Any:
        method = details.method or ""
        if self._exempt_health and method.startswith(_HEALTH_PREFIXES):
            return continuation(details)
        header = dict(details.invocation_metadata or ()).get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token and token_matches(token.strip(), self._digests):
            return continuation(details)
        self._on_reject("unauthenticated")
        return _refusal(continuation(details), "missing or unknown bearer token (send 'authorization: Bearer <token>')")


def _refusal(handler: Any, message: str) -> Any:
    """A handler of the same kind as ``handler`` that answers UNAUTHENTICATED without running it."""
    def refuse_unary(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    def refuse_stream(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield  # pragma: no cover - makes this a generator, as stream handlers are

    if handler is None:
        return None
    streaming_reply = handler.response_streaming
    behaviour = refuse_stream if streaming_reply else refuse_unary
    factory = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[(handler.request_streaming, streaming_reply)]
    return factory(behaviour, request_deserializer=handler.request_deserializer,
                   response_serializer=handler.response_serializer)
