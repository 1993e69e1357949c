"""Small helpers shared by the tests: building wire messages and reading rich error details."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import numpy as np
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from lossd.losses import LossSpec, Registry, Role
from lossd.losses.spec import Kind
from lossd.v1 import loss_service_pb2 as pb

NUMPY_TO_WIRE = {
    np.dtype(np.float32): pb.DTYPE_FLOAT32,
    np.dtype(np.float64): pb.DTYPE_FLOAT64,
    np.dtype(np.float16): pb.DTYPE_FLOAT16,
    np.dtype(np.int64): pb.DTYPE_INT64,
    np.dtype(np.int32): pb.DTYPE_INT32,
    np.dtype(np.bool_): pb.DTYPE_BOOL,
    np.dtype(np.uint8): pb.DTYPE_UINT8,
}


def raw_tensor(array: Any) -> pb.Tensor:
    """A wire tensor with raw little-endian bytes, built by hand (not through the client library)."""
    a = np.asarray(array, order="C")  # (ascontiguousarray would turn a 0-d array into 1-d)
    raw = a.astype(a.dtype.newbyteorder("<")).tobytes()
    return pb.Tensor(dtype=NUMPY_TO_WIRE[a.dtype], shape=list(a.shape), raw_data=raw)


def bad_request_fields(error: grpc.RpcError) -> list[str]:
    """The field names in the BadRequest details of a failed call."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "the error carried no google.rpc.Status"
    fields: list[str] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields.extend(v.field for v in bad.field_violations)
    return fields


def one_loss_registry(name: str, fn: Callable[..., Any]) -> Registry:
    """A registry of one loss ``name``: ``fn(input, target, reduction)`` over float tensors of any shape, with
    no checks (for tests whose loss holds, counts or gates its computations)."""
    roles = (Role("input", (Kind.FLOAT,), "(*)", "x", differentiable=True), Role("target", (Kind.FLOAT,), "(*)", "y"))
    return Registry([LossSpec(name=name, summary="-", formula="-", fn=fn, roles=roles, check=lambda t, p: None,
                              unreduced_shape=lambda t, p: ())])
