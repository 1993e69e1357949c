"""``lossd health``: exit 0 when a server reports SERVING. It needs only grpcio, not torch, so a
container's HEALTHCHECK stays cheap (importing the server would load torch on every probe)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

DEFAULT_ADDRESS = "127.0.0.1:50051"


def add_health_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``health`` to a ``lossd`` argument parser."""
    hp = sub.add_parser("health", help="exit 0 when a server reports SERVING")
    hp.add_argument("--address", default=DEFAULT_ADDRESS, help="host:port of the server")
    hp.add_argument("--service", default="", help="service name to check (default: the whole server)")
    hp.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the answer")
    hp.add_argument("--tls-ca", help="PEM CA to trust: check a TLS server")
    hp.add_argument("--tls-cert", help="PEM client certificate (mutual TLS)")
    hp.add_argument("--tls-key", help="PEM key of --tls-cert")
    hp.add_argument("--token", help="bearer token, when the server guards health too")
    hp.set_defaults(handler=_cmd_health)


def main(argv: Sequence[str]) -> int:
    """``lossd health [flags]`` without the rest of the CLI."""
    parser = argparse.ArgumentParser(prog="lossd")
    add_health_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["health", *argv])
    return int(args.handler(args))


def _cmd_health(args: argparse.Namespace) -> int:
    def read(path: str | None) -> bytes | None:
        return Path(path).read_bytes() if path else None

    metadata = (("authorization", f"Bearer {args.token}"),) if args.token else ()
    try:
        if args.tls_ca or args.tls_cert:
            credentials = grpc.ssl_channel_credentials(read(args.tls_ca), read(args.tls_key), read(args.tls_cert))
            channel = grpc.secure_channel(args.address, credentials)
        else:
            channel = grpc.insecure_channel(args.address)
        with channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout, metadata=metadata)
    except grpc.RpcError as exc:
        print(f"lossd health: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(status)
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1
