"""Errors a loss request can raise, before or while it is computed.

The hierarchy, drawn once::

    LossdError                  base of every error lossd raises on purpose
    ├── UnknownLossError        the name matches no registered loss (gRPC NOT_FOUND)
    ├── InvalidRequestError     one or more fields are wrong (gRPC INVALID_ARGUMENT)
    └── ResourceLimitError      the request is larger than the server allows (gRPC RESOURCE_EXHAUSTED)

Each error carries :class:`FieldViolation` entries naming the offending field in the wire
contract's terms (``inputs[target]``, ``params[delta]``, ``reduction``, ``wrt[0]``), so the server
can report them as ``google.rpc.BadRequest`` details without knowing anything about losses.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One wrong field: where it is (``inputs[target]``) and what was expected instead."""

    field: str
    description: str

    def __str__(self) -> str:
        return f"{self.field}: {self.description}"


class LossdError(Exception):
    """Base class of the errors lossd raises deliberately; ``violations`` may be empty."""

    def __init__(self, message: str, violations: Sequence[FieldViolation] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.violations: tuple[FieldViolation, ...] = tuple(violations)


class UnknownLossError(LossdError):
    """No registered loss answers to ``name``; ``suggestions`` holds the closest canonical names."""

    def __init__(self, name: str, suggestions: Sequence[str]) -> None:
        hint = f"; did you mean {', '.join(repr(s) for s in suggestions)}?" if suggestions else ""
        super().__init__(
            f"unknown loss {name!r}{hint} (ListLosses lists every loss)",
            [FieldViolation("loss", f"no loss named {name!r}{hint}")],
        )
        self.name = name
        self.suggestions = tuple(suggestions)


class InvalidRequestError(LossdError):
    """The request does not fit the loss's spec; every violation found is listed."""

    def __init__(self, violations: Iterable[FieldViolation]) -> None:
        found = tuple(violations)
        if not found:
            raise ValueError("InvalidRequestError needs at least one violation")
        summary = "; ".join(str(v) for v in found)
        super().__init__(f"invalid request: {summary}", found)


class ResourceLimitError(LossdError):
    """The request asks for more than the server's configured limits allow."""


def invalid(field: str, description: str) -> InvalidRequestError:
    """Shorthand for an :class:`InvalidRequestError` with a single violation."""
    return InvalidRequestError([FieldViolation(field, description)])
