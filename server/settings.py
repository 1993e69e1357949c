"""Server settings: defaults, overridden by ``LOSSD_*`` environment variables, overridden by CLI flags."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from lossd.server import loops

DEFAULT_PORT = 50051
# Outside Prometheus' exporter range (9100-9999, fully allocated) and below Linux's ephemeral ports.
DEFAULT_METRICS_PORT = 8909
# The REST front's port where compose and the manifests turn it on: the Open Inference Protocol's usual one.
DEFAULT_HTTP_PORT = 8000


class ServerSettings(BaseSettings):
    """How a lossd server runs. Every field can be set as ``LOSSD_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="LOSSD_", extra="forbid", frozen=True, use_attribute_docstrings=True)

    host: str = "127.0.0.1"
    """Address the gRPC server binds; 127.0.0.1 keeps it private, 0.0.0.0 or [::] exposes it."""

    port: int = Field(DEFAULT_PORT, ge=0, le=65535)
    """gRPC port; 0 picks a free one (the server reports which)."""

    http_port: int | None = Field(None, ge=0, le=65535)
    """Port of the Open Inference Protocol's REST front (on ``host``); unset (the default) leaves it off, so
    that several servers on one host never collide; 0 picks a free one."""

    device: str = "auto"
    """Where losses run: auto (CUDA when available, else CPU), cpu, cuda or cuda:N."""

    metrics_host: str = "127.0.0.1"
    """Address of the Prometheus endpoint; separate from ``host`` so metrics are not exposed by accident."""

    metrics_port: int = Field(DEFAULT_METRICS_PORT, ge=0, le=65535)
    """Port of the Prometheus endpoint; 0 disables it."""

    gpu_min_elements: int = Field(-1, ge=-1)
    """On a CUDA device, requests with fewer tensor elements run on the CPU (a GPU round trip costs more than
    it saves); -1 measures the crossover at start-up, 0 sends everything to the GPU."""

    max_message_mb: float = Field(64.0, gt=0, le=2047)
    """Largest request or reply message, in MiB (gRPC's own limit is 2 GiB)."""

    max_stream_mb: int = Field(2048, ge=1)
    """Largest total of tensor bytes one ComputeStream/GradientStream request may declare, in MiB."""

    grace_seconds: float = Field(10.0, ge=0)
    """On SIGTERM/SIGINT: how long in-flight calls may take to finish before they are cancelled."""

    compute_threads: int = Field(0, ge=0)
    """Threads that run large computations (and the streams' requests); 0 means one per CPU core."""

    inline_bytes: int = Field(256 * 1024, ge=0)
    """Requests with at most this many tensor bytes are computed on the thread that received them (a thread hop
    costs more); larger ones on the compute threads."""

    unary_threads: int = Field(0, ge=0)
    """Threads serving the unary calls that carry tensors (Compute, Gradient, ModelInfer); 0 means 2 (more only
    contend for the GIL), or max_in_flight + 1 when that is set, so that excess calls are shed, not queued."""

    heap_reuse_mb: int = Field(512, ge=0, le=2047)
    """Blocks up to this size are kept in the heap when freed and reused (no page faults on the next large
    request); RSS then stays near its peak. 0 keeps the C library's defaults."""

    shm_prefix: str = ""
    """Turns on the same-host shared-memory path for region names starting with this prefix (e.g. 'lossd-');
    empty (the default) turns it off."""

    batching: str = "auto"
    """Dynamic batching of concurrent small requests for the same loss: on, off, or auto (on for CUDA)."""

    batch_max: int = Field(64, ge=1)
    """Most requests in one batch."""

    batch_delay_us: int = Field(200, ge=0)
    """Longest a batchable request waits for companions, in microseconds."""

    event_loop: str = "auto"
    """The asyncio event loop: auto (uvloop when installed, as the server extra does on Linux and macOS),
    uvloop, or asyncio."""

    workers: int = Field(1, ge=1, le=256)
    """Server processes sharing the port (SO_REUSEPORT); more than 1 spreads protobuf work over cores."""

    tls_cert: Path | None = None
    """PEM certificate chain: serve TLS (with tls_key)."""

    tls_key: Path | None = None
    """PEM private key of tls_cert."""

    tls_client_ca: Path | None = None
    """PEM CA bundle: require client certificates signed by it (mutual TLS)."""

    auth_tokens_file: Path | None = None
    """File of bearer tokens, one a line (or sha256:<hex> of one); calls without a valid one get UNAUTHENTICATED."""

    auth_exempt_health: bool = False
    """Leave the health service open without a token (for load balancers and probes)."""

    max_in_flight: int = Field(0, ge=0)
    """Calls processed at once; beyond it, RESOURCE_EXHAUSTED at once instead of an unbounded queue. 0: no limit."""

    max_request_elements: int = Field(0, ge=0)
    """Most tensor elements in one request, all tensors together; 0: only the message size limits it."""

    max_request_memory_mb: int = Field(0, ge=0)
    """Working memory one request may need (estimated as 4x its tensors); beyond it, RESOURCE_EXHAUSTED
    before anything is allocated. 0: no cap."""

    max_deadline_seconds: float = Field(0, ge=0)
    """Longest a call may compute before it is cut off with DEADLINE_EXCEEDED; 0: no limit."""

    log_format: str = "plain"
    """Log lines as plain text or one JSON object each: plain, json."""

    access_log: bool = False
    """Log one line per call: method, loss, code, duration, elements, request id."""

    tracing: bool = False
    """OpenTelemetry spans for every call, to the program's tracer provider (OTEL_TRACES_EXPORTER=otlp turns
    tracing on too, exporting over OTLP/gRPC to OTEL_EXPORTER_OTLP_ENDPOINT)."""

    log_level: str = "INFO"
    """Python logging level: DEBUG, INFO, WARNING, ERROR."""

    @field_validator("device")
    @classmethod
    def _device_form(cls, value: str) -> str:
        v = value.strip().lower()
        head, _, index = v.partition(":")
        if v in ("auto", "cpu", "cuda") or (head == "cuda" and index.isdigit()):
            return v
        raise ValueError("expected auto, cpu, cuda or cuda:N")

    @field_validator("batching")
    @classmethod
    def _batching_mode(cls, value: str) -> str:
        v = value.lower()
        if v not in ("auto", "on", "off"):
            raise ValueError("expected auto, on or off")
        return v

    @field_validator("event_loop")
    @classmethod
    def _event_loop(cls, value: str) -> str:
        v = value.lower()
        if v not in loops.KINDS:
            raise ValueError(f"expected one of: {', '.join(loops.KINDS)}")
        return v

    @field_validator("log_format")
    @classmethod
    def _log_format(cls, value: str) -> str:
        if value not in ("plain", "json"):
            raise ValueError("expected plain or json")
        return value

    @field_validator("log_level")
    @classmethod
    def _level_name(cls, value: str) -> str:
        v = value.upper()
        if v not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("expected DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return v

    @model_validator(mode="after")
    def _tls_pair(self) -> ServerSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("tls_client_ca (mutual TLS) needs tls_cert and tls_key")
        return self

    @property
    def max_message_bytes(self) -> int:
        """``max_message_mb`` in bytes."""
        return int(self.max_message_mb * 1024 * 1024)


SOURCES = ("flag", "env", "file", "default")


def _read_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    with path.open("rb") as f:
        data = tomllib.load(f)
    table = data.get("lossd", data)  # keys at the top, or under [lossd]
    unknown = sorted(set(table) - set(ServerSettings.model_fields))
    if unknown:
        known = ", ".join(ServerSettings.model_fields)
        raise ValueError(f"{path}: unknown setting(s) {', '.join(unknown)}; known: {known}")
    return dict(table)


def load_settings(flags: Mapping[str, Any], config: Path | None = None) -> tuple[ServerSettings, dict[str, str]]:
    """The settings, flags over LOSSD_* environment over the TOML file over defaults, and each one's source.

    ``config`` defaults to the LOSSD_CONFIG environment variable; unknown keys in the file are an error.
    """
    path = config or (Path(os.environ["LOSSD_CONFIG"]) if os.environ.get("LOSSD_CONFIG") else None)
    from_file = _read_toml(path) if path else {}
    environment = {key.upper() for key in os.environ}
    from_env = {name for name in ServerSettings.model_fields if f"LOSSD_{name.upper()}" in environment}
    chosen = {k: v for k, v in from_file.items() if k not in from_env}
    chosen.update(flags)
    settings = ServerSettings(**chosen)
    sources = {name: "flag" if name in flags else "env" if name in from_env else "file" if name in from_file
               else "default" for name in ServerSettings.model_fields}
    return settings, sources
