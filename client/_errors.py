"""Errors the client raises: one :class:`LossError` subclass per gRPC code a caller may handle.

    LossError                    any failed call; .code, .message, .violations
    ├── InvalidArgumentError     INVALID_ARGUMENT: a field of the request is wrong (see .violations)
    ├── LossNotFoundError        NOT_FOUND: no such loss (the message suggests close names)
    ├── ResourceExhaustedError   RESOURCE_EXHAUSTED: over a server limit
    ├── DeadlineExceededError    DEADLINE_EXCEEDED: the call's timeout passed
    ├── UnavailableError         UNAVAILABLE: the server cannot be reached or is shutting down
    ├── UnauthenticatedError     UNAUTHENTICATED: missing or wrong credentials
    └── CancelledError           CANCELLED: a pipelined request its caller withdrew
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status


@dataclass(frozen=True)
class FieldViolation:
    """A field the server refused (``inputs[target]``, ``params[delta]``, ...) and why."""

    field: str
    description: str


class LossError(Exception):
    """A call to lossd failed; ``code`` is the gRPC status code, ``violations`` the fields at fault."""

    def __init__(self, code: grpc.StatusCode, message: str, violations: tuple[FieldViolation, ...] = (),
                 request_id: str = "") -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.violations = violations
        self.request_id = request_id  # the server's id of the call, as in its logs

    @property
    def fields(self) -> list[str]:
        """The names of the refused fields, in the server's order."""
        return [v.field for v in self.violations]


class InvalidArgumentError(LossError):
    """The request does not fit the loss (wrong role, dtype, shape, parameter, value)."""


class LossNotFoundError(LossError):
    """The server has no loss by that name."""


class ResourceExhaustedError(LossError):
    """The request is larger than the server's limits allow, or the server is overloaded."""


class DeadlineExceededError(LossError):
    """The call did not finish within its timeout."""


class UnavailableError(LossError):
    """The server could not be reached, or is shutting down."""


class UnauthenticatedError(LossError):
    """The server wants credentials this call did not carry."""


class CancelledError(LossError):
    """The request was withdrawn before the server computed it (a cancelled pipeline item)."""


_BY_CODE: dict[grpc.StatusCode, type[LossError]] = {
    grpc.StatusCode.CANCELLED: CancelledError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: LossNotFoundError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
}


def from_rpc_error(error: grpc.RpcError) -> LossError:
    """The :class:`LossError` for a failed call, with the BadRequest field violations it carried."""
    call: grpc.Call = error  # type: ignore[assignment]  # sync-stub errors are also Call objects
    code = call.code()
    message = call.details() or ""
    status = rpc_status.from_call(call)
    violations = _violations(status) if status is not None else ()
    trailing = dict(call.trailing_metadata() or ())
    request_id = trailing.get("x-request-id", "")
    return _BY_CODE.get(code, LossError)(code, message, violations, request_id)


def from_status(encoded: bytes, request_id: str = "") -> LossError:
    """The :class:`LossError` for a serialized ``google.rpc.Status`` (a refused Pipeline item's ``error``)."""
    status = status_pb2.Status.FromString(encoded)
    code = _CODE_BY_VALUE.get(status.code, grpc.StatusCode.UNKNOWN)
    return _BY_CODE.get(code, LossError)(code, status.message, _violations(status), request_id)


def _violations(status: status_pb2.Status) -> tuple[FieldViolation, ...]:
    """The BadRequest field violations among a status's details."""
    found: list[FieldViolation] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found.extend(FieldViolation(v.field, v.description) for v in bad.field_violations)
    return tuple(found)


_CODE_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}
