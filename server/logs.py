"""Logging: one line per event, plain text or JSON, with the request id of the call it is about."""

from __future__ import annotations

import itertools
import json
import logging
import time
import uuid
from typing import Any

REQUEST_ID = "x-request-id"
_PROCESS_TAG = uuid.uuid4().hex[:16]
_SEQUENCE = itertools.count(1)
_REQUEST_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")


def given_request_id(context: Any) -> str | None:
    """The caller's x-request-id when it sent a sane one (<= 128 plain characters), else None."""
    given = ""
    for key, value in context.invocation_metadata() or ():  # a handful of entries: no dict built for them
        if key == REQUEST_ID:
            given = value  # the last one, as a dict of them would keep
    if isinstance(given, str) and 0 < len(given) <= 128 and set(given) <= _REQUEST_ID_CHARS:
        return given
    return None


def new_request_id() -> str:
    """A request id unique within this process run (cheaper than a uuid per call)."""
    return f"{_PROCESS_TAG}{next(_SEQUENCE):08x}"


# Fields a record may carry (through ``extra=``) that both formats print.
_FIELDS = ("request_id", "method", "loss", "code", "duration_ms", "elements", "peer")


class JsonFormatter(logging.Formatter):
    """A JSON object per line: time, level, logger, message, the call's fields, the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update({k: getattr(record, k) for k in _FIELDS if hasattr(record, k)})
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        return json.dumps(out)


class PlainFormatter(logging.Formatter):
    """``time level logger message key=value ...``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = " ".join(f"{k}={getattr(record, k)}" for k in _FIELDS if hasattr(record, k))
        if not fields:
            return line
        head, newline, rest = line.partition("\n")  # keep a traceback below the fields
        return f"{head} {fields}{newline}{rest}"


def configure(level: str, fmt: str) -> None:
    """Send lossd's logs to stderr in ``fmt`` ("plain" or "json")."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else PlainFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
