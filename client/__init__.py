"""The lossd client: numpy (or torch) tensors in, losses and gradients out, over gRPC.

Needs only numpy and grpcio; torch tensors are accepted when torch is installed, but torch is
never imported by this package itself.
"""

from lossd.client._async import AsyncLossClient
from lossd.client._client import LossClient
from lossd.client._errors import (
    CancelledError,
    DeadlineExceededError,
    FieldViolation,
    InvalidArgumentError,
    LossError,
    LossNotFoundError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
)

__all__ = [
    "AsyncLossClient",
    "CancelledError",
    "DeadlineExceededError",
    "FieldViolation",
    "InvalidArgumentError",
    "LossClient",
    "LossError",
    "LossNotFoundError",
    "ResourceExhaustedError",
    "UnauthenticatedError",
    "UnavailableError",
]
