"""The one place where lossd's errors become gRPC statuses.

Domain errors (``lossd.losses.errors``) map to codes through ``_CODES``; their field violations
travel as a ``google.rpc.BadRequest`` inside a ``google.rpc.Status`` in the trailing metadata
(``grpc-status-details-bin``), which grpc-status libraries in every language can read. Anything
unexpected is logged with its traceback and answered as INTERNAL with a generic message: a stack
trace or an exception's text never reaches a client.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from lossd.losses import InvalidRequestError, LossdError, ResourceLimitError, UnknownLossError

log = logging.getLogger("lossd.server")

class ComputeDeadlineError(LossdError):
    """The computation ran past the server's max_deadline_seconds."""


class ShuttingDownError(LossdError):
    """The server is draining before it stops: the call should go to another server (retry)."""


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


def status_code_for(error: BaseException) -> grpc.StatusCode:
    """The gRPC code for an exception: from the table for lossd's errors, INTERNAL otherwise."""
    for cls in type(error).__mro__:
        if cls in _CODES:
            return _CODES[cls]
    return grpc.StatusCode.INTERNAL


def to_failure(error: BaseException, request_id: str = "") -> RpcFailure:
    """The answer for ``error``, with BadRequest field violations when it names fields."""
    code = status_code_for(error)
    if isinstance(error, LossdError):
        message = error.message
        details = []
        if error.violations:
            bad = error_details_pb2.BadRequest(field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                for v in error.violations
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
    return RpcFailure(status.code, status.details, tuple(status.trailing_metadata))
