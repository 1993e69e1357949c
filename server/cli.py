"""The server's commands: ``serve`` a server, list the ``losses``, check a server's ``health``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from lossd.losses import REGISTRY
from lossd.losses.table import markdown_table
from lossd.server import loops
from lossd.server.app import serve
from lossd.server.logs import configure as configure_logs
from lossd.server.settings import DEFAULT_PORT, ServerSettings, load_settings
from lossd.server.workers import run_workers


def _serve_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    _add_settings_flags(sub.add_parser("serve", help="run the gRPC server (flags override LOSSD_* environment "
                                       "variables)"), _cmd_serve)
    _add_settings_flags(sub.add_parser("config", help="show the effective settings and their sources"), _cmd_config)


def _add_settings_flags(p: argparse.ArgumentParser, handler: Any) -> None:
    p.add_argument("--host", help="bind address (default 127.0.0.1; LOSSD_HOST)")
    p.add_argument("--port", type=int, help=f"gRPC port (default {DEFAULT_PORT}; 0 = any free; LOSSD_PORT)")
    p.add_argument("--http-port", type=int, help="Open Inference Protocol REST port (default off; 0 = any free; "
                   "LOSSD_HTTP_PORT)")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N (default auto; LOSSD_DEVICE)")
    p.add_argument("--metrics-host", help="Prometheus endpoint address (default 127.0.0.1; LOSSD_METRICS_HOST)")
    p.add_argument("--metrics-port", type=int, help="Prometheus endpoint port (default 8909; 0 disables; "
                   "LOSSD_METRICS_PORT)")
    p.add_argument("--max-message-mb", type=float, help="largest message in MiB (default 64; LOSSD_MAX_MESSAGE_MB)")
    p.add_argument("--grace-seconds", type=float, help="shutdown grace for in-flight calls (default 10)")
    p.add_argument("--tls-cert", help="PEM certificate chain: serve TLS (LOSSD_TLS_CERT)")
    p.add_argument("--tls-key", help="PEM private key of --tls-cert (LOSSD_TLS_KEY)")
    p.add_argument("--tls-client-ca", help="PEM CA: require client certificates it signed (LOSSD_TLS_CLIENT_CA)")
    p.add_argument("--auth-tokens-file", help="bearer tokens, one a line or sha256:<hex> (LOSSD_AUTH_TOKENS_FILE)")
    p.add_argument("--auth-exempt-health", action="store_true", default=None,
                   help="leave the health service open without a token")
    p.add_argument("--max-in-flight", type=int, help="calls at once; beyond: RESOURCE_EXHAUSTED (0: no limit)")
    p.add_argument("--max-deadline-seconds", type=float, help="longest computation before DEADLINE_EXCEEDED")
    p.add_argument("--shm-prefix", help="enable the same-host shared-memory path for region names with this "
                   "prefix, e.g. lossd- (default off; LOSSD_SHM_PREFIX)")
    p.add_argument("--workers", type=int, help="server processes sharing the port (default 1; LOSSD_WORKERS); "
                   "worker i serves metrics on metrics-port + i")
    p.add_argument("--event-loop", help="auto | uvloop | asyncio (default auto: uvloop when installed; "
                   "LOSSD_EVENT_LOOP)")
    p.add_argument("--log-level", help="DEBUG | INFO | WARNING | ERROR (default INFO; LOSSD_LOG_LEVEL)")
    p.add_argument("--log-format", help="plain | json (default plain; LOSSD_LOG_FORMAT)")
    p.add_argument("--access-log", action="store_true", default=None, help="log one line per call")
    p.add_argument("--tracing", action="store_true", default=None,
                   help="OpenTelemetry spans per call (LOSSD_TRACING; OTEL_TRACES_EXPORTER=otlp also turns it on)")
    p.add_argument("--config", help="TOML settings file (LOSSD_CONFIG); flags > environment > file > defaults")
    p.set_defaults(handler=handler)


def _settings_from(args: argparse.Namespace) -> ServerSettings:
    return _settings_and_sources(args)[0]


def _settings_and_sources(args: argparse.Namespace) -> tuple[ServerSettings, dict[str, str]]:
    fields = ("host", "port", "http_port", "device", "metrics_host", "metrics_port", "max_message_mb", "grace_seconds",
              "log_level", "workers", "shm_prefix", "tls_cert", "tls_key", "tls_client_ca", "auth_tokens_file",
              "auth_exempt_health", "max_in_flight", "max_deadline_seconds", "log_format", "access_log",
              "tracing", "event_loop")
    given = {f: getattr(args, f) for f in fields if getattr(args, f, None) is not None}
    return load_settings(given, Path(args.config) if getattr(args, "config", None) else None)


def _cmd_serve(args: argparse.Namespace) -> int:
    settings = _checked_settings(args)
    if settings is None:
        return 2
    configure_logs(settings.log_level, settings.log_format)
    if settings.workers > 1:
        return run_workers(settings)
    try:
        loops.run(serve(settings), settings.event_loop)
    except ValueError as exc:  # e.g. a CUDA device this host does not have
        print(f"lossd: {exc}", file=sys.stderr)
        return 2
    return 0


def _checked_settings(args: argparse.Namespace) -> ServerSettings | None:
    """The settings, or None after printing why they are invalid."""
    try:
        return _settings_from(args)
    except ValidationError as exc:
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            print(f"lossd: invalid setting {where}: {err['msg']}", file=sys.stderr)
    except (OSError, ValueError) as exc:  # an unreadable or malformed config file
        print(f"lossd: {exc}", file=sys.stderr)
    return None


def _cmd_config(args: argparse.Namespace) -> int:
    """Print the effective settings and where each came from."""
    if _checked_settings(args) is None:
        return 2
    settings, sources = _settings_and_sources(args)
    for name, value in settings.model_dump().items():
        shown = "***" if any(word in name for word in ("secret", "password")) else value
        print(f"{name} = {shown!r}  # {sources[name]}")
    return 0


def _cmd_losses(args: argparse.Namespace) -> int:
    if args.markdown:
        sys.stdout.write(markdown_table(REGISTRY))
    else:
        for spec in REGISTRY:
            print(f"{spec.name:<18} {spec.summary}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add serve, config and losses to a ``lossd`` argument parser (``lossd health`` is lossd.cli.health)."""
    _serve_parser(sub)
    lp = sub.add_parser("losses", help="list the registered losses")
    lp.add_argument("--markdown", action="store_true", help="print the README's loss table")
    lp.set_defaults(handler=_cmd_losses)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lossd.server``'s entry point: serve, losses and health (the bench lives in ``lossd``)."""
    parser = argparse.ArgumentParser(prog="lossd", description="lossd: machine-learning losses over gRPC")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
