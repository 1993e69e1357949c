"""The one place where lossd's errors become gRPC statuses.

Domain errors (``lossd.losses.errors``) map to codes through ``_CODES``; their field violations
travel as a ``google.rpc.BadRequest`` inside a ``google.rpc.Status`` in the trailing metadata
(``grpc-status-details-bin``), which grpc-status libraries in every language can read. Anything
unexpected is logged with its traceback and answered as INTERNAL with a generic message: a stack
trace or an exception's text never reaches a client.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from lossd.losses import FieldViolation, InvalidRequestError, LossdError, ResourceLimitError, UnknownLossError

log = logging.getLogger("lossd.server")

class ComputeDeadlineError(LossdError):
    """The computation ran past the server's max_deadline_seconds."""


class ShuttingDownError(LossdError):
    """The server is draining before it stops: the call should go to another server (retry)."""


class ServerBusyError(ResourceLimitError):
    """Past max_in_flight: the call may succeed if retried later (HTTP 429, where other limits are 413)."""


_CODES: dict[type[LossdError], grpc.StatusCode] = {
    UnknownLossError: grpc.StatusCode.NOT_FOUND,
    InvalidRequestError: grpc.StatusCode.INVALID_ARGUMENT,
    ResourceLimitError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ComputeDeadlineError: grpc.StatusCode.DEADLINE_EXCEEDED,
    ShuttingDownError: grpc.StatusCode.UNAVAILABLE,
}

@dataclass(frozen=True)
class RpcFailure:
    """What a failed call answers: code, message and trailing metadata holding the rich status."""

    code: grpc.StatusCode
    message: str
    trailing_metadata: tuple[tuple[str, bytes], ...]
    http_status: int = 500  # the REST front's status for it (HTTP_STATUS)
    violations: tuple[tuple[str, str], ...] = ()  # the (field, description) pairs the details carry


# The REST front's HTTP status for each gRPC code (the README's error table). RESOURCE_EXHAUSTED is 413 (the
# request is too large for a limit) except for a busy server, 429 (retry later).
HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 413,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
}


def status_code_for(error: BaseException) -> grpc.StatusCode:
    """The gRPC code for an exception: from the table for lossd's errors, INTERNAL otherwise."""
    for cls in type(error).__mro__:
        if cls in _CODES:
            return _CODES[cls]
    return grpc.StatusCode.INTERNAL


# A status travels in HTTP/2 headers, which grpc caps at 16 KiB in all (received metadata past it is answered
# with RESOURCE_EXHAUSTED in place of the real status). The message is percent-encoded (up to 3x) and the
# details base64-encoded (4/3x): these bounds keep the whole status under 8 KiB on the wire, whatever a
# request echoes back (a 100,000-character loss name, a thousand unknown roles).
MAX_MESSAGE_CHARS = 1000
MAX_VIOLATIONS = 100
MAX_FIELD_CHARS = 120
MAX_DESCRIPTION_CHARS = 240
MAX_DETAILS_BYTES = 4000
MESSAGE_VIOLATIONS = 10  # violations spelled out in the message itself


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    note = f"... ({len(text) - limit} more characters)"
    return text[: max(0, limit - len(note))] + note


def bounded_violations(violations: Sequence[FieldViolation]) -> list[tuple[str, str]]:
    """At most MAX_VIOLATIONS (field, description) pairs, each clipped, within MAX_DETAILS_BYTES; when any are
    left out, a last pair says how many ("and K more")."""
    out: list[tuple[str, str]] = []
    size = 0
    for v in violations:
        pair = (clip(v.field, MAX_FIELD_CHARS), clip(v.description, MAX_DESCRIPTION_CHARS))
        cost = len(pair[0].encode()) + len(pair[1].encode()) + 8
        if len(out) == MAX_VIOLATIONS or size + cost > MAX_DETAILS_BYTES:
            break
        out.append(pair)
        size += cost
    if len(out) < len(violations):
        if len(out) == MAX_VIOLATIONS:
            out.pop()  # room for the line that counts the rest
        left = len(violations) - len(out)
        out.append(("...", f"and {left} more violation{'s' if left > 1 else ''}"))
    return out


def bounded_message(error: LossdError) -> str:
    """The error's message, its violations listed only up to MESSAGE_VIOLATIONS, clipped to MAX_MESSAGE_CHARS."""
    message = error.message
    if isinstance(error, InvalidRequestError) and len(error.violations) > MESSAGE_VIOLATIONS:
        shown = "; ".join(f"{clip(v.field, MAX_FIELD_CHARS)}: {clip(v.description, MAX_DESCRIPTION_CHARS)}"
                          for v in error.violations[:MESSAGE_VIOLATIONS])
        message = f"invalid request: {shown}; and {len(error.violations) - MESSAGE_VIOLATIONS} more"
    return clip(message, MAX_MESSAGE_CHARS)


def to_failure(error: BaseException, request_id: str = "") -> RpcFailure:
    """The answer for ``error``, with BadRequest field violations when it names fields; message and details
    are bounded (see MAX_MESSAGE_CHARS) so that the status always reaches the caller."""
    code = status_code_for(error)
    pairs: list[tuple[str, str]] = []
    if isinstance(error, LossdError):
        message = bounded_message(error)
        details = []
        if error.violations:
            pairs = bounded_violations(error.violations)
            bad = error_details_pb2.BadRequest(field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=f, description=d) for f, d in pairs
            ])
            packed = any_pb2.Any()
            packed.Pack(bad)
            details.append(packed)
    else:
        log.error("internal error while serving a call", exc_info=error, extra={"request_id": request_id})
        message = "internal error; the server logged the details"
        details = []
    status = rpc_status.to_status(status_pb2.Status(code=getattr(code_pb2, code.name), message=message,
                                                    details=details))
    http = 429 if isinstance(error, ServerBusyError) else HTTP_STATUS.get(code, 500)
    return RpcFailure(status.code, status.details, tuple(status.trailing_metadata), http, tuple(pairs))
