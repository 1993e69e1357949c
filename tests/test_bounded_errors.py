"""Refusals that echo what the caller sent stay small enough to reach the caller: a status travels in HTTP/2
headers, which grpc caps at 16 KiB, and past that the caller would only see grpc's own RESOURCE_EXHAUSTED."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from helpers import raw_tensor

from lossd.losses import FieldViolation, InvalidRequestError
from lossd.server.errors import MAX_MESSAGE_CHARS, MAX_VIOLATIONS, bounded_violations, to_failure
from lossd.v1 import loss_service_pb2 as pb

LIMIT = 16 * 1024


def _violations(error: grpc.RpcError) -> list[error_details_pb2.BadRequest.FieldViolation]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    return list(bad.field_violations)


def _status_bytes(error: grpc.RpcError) -> int:
    return len(error.details() or "") + sum(len(v) for _, v in error.trailing_metadata() or ())


def test_a_100000_character_loss_name_is_not_found_with_the_name_clipped(stub) -> None:  # type: ignore[no-untyped-def]
    """NOT_FOUND naming the loss field, its message clipped, the whole status far below the header limit."""
    name = "x" * 100_000
    request = pb.ComputeRequest(loss=name, inputs={"input": raw_tensor(np.ones(2, np.float32))})
    with pytest.raises(grpc.RpcError) as info:
        stub.Compute(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert len(info.value.details()) <= MAX_MESSAGE_CHARS and "more characters" in info.value.details()
    assert [v.field for v in _violations(info.value)] == ["loss"]
    assert _status_bytes(info.value) < LIMIT // 2


def test_a_thousand_unknown_roles_list_at_most_100_violations_and_the_rest_counted(stub) -> None:  # type: ignore[no-untyped-def]
    """INVALID_ARGUMENT with at most 100 violations, the last saying how many more there were."""
    inputs = {f"role_{i:04d}": raw_tensor(np.ones(1, np.float32)) for i in range(1000)}
    inputs["input"] = inputs["target"] = raw_tensor(np.ones(1, np.float32))
    with pytest.raises(grpc.RpcError) as info:
        stub.Compute(pb.ComputeRequest(loss="mse", inputs=inputs), timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    found = _violations(info.value)
    assert len(found) <= MAX_VIOLATIONS
    assert found[0].field.startswith("inputs[role_") and found[-1].field == "..."
    assert found[-1].description == f"and {1000 - (len(found) - 1)} more violations"
    assert info.value.details().endswith(f"and {1000 - 10} more")
    assert _status_bytes(info.value) < LIMIT // 2


def test_a_long_role_name_is_clipped_in_its_field() -> None:
    """A field that echoes a 50,000-character role name is clipped, saying so."""
    error = InvalidRequestError([FieldViolation(f"inputs[{'r' * 50_000}]", "unknown input role")])
    failure = to_failure(error)
    assert sum(len(v) for _, v in failure.trailing_metadata) < 4096
    [(field, _)] = bounded_violations(error.violations)
    assert field.startswith("inputs[rrr") and field.endswith("more characters)")


def test_few_violations_are_kept_whole() -> None:
    """Up to the limit, every violation comes back as it was."""
    violations = [FieldViolation(f"params[p{i}]", "unknown parameter") for i in range(MAX_VIOLATIONS)]
    assert bounded_violations(violations) == [(v.field, v.description) for v in violations]
