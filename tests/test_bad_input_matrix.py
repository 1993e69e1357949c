"""The bad-input matrix: for every loss, every way its spec says a request can be wrong, each refused by field.

Generated from the registry's specs and the catalog cases' valid inputs, so a new loss is covered by
adding it. Each case asserts the status code and the field named in the rich error details; at the
end the same server answers a good request, and its metrics counted every refusal.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
import pytest
from cases import CASES
from helpers import bad_request_fields, raw_tensor

from lossd.client._codec import encode_param
from lossd.losses import REGISTRY, Kind, ParamType
from lossd.v1 import loss_service_pb2 as pb

INVALID, NOT_FOUND, EXHAUSTED = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                                 grpc.StatusCode.RESOURCE_EXHAUSTED)


@dataclass(frozen=True)
class BadCase:
    """A request that must be refused with ``code``, naming a field that starts with ``field``."""

    id: str
    request: pb.ComputeRequest
    code: grpc.StatusCode
    field: str


def _valid(loss: str) -> tuple[pb.ComputeRequest, dict[str, np.ndarray]]:
    case = next(c for c in CASES if REGISTRY.resolve(c.loss)[0].name == loss)
    arrays = case.make(np.random.default_rng(0), np.dtype(np.float32))
    request = pb.ComputeRequest(loss=case.loss, inputs={k: raw_tensor(v) for k, v in arrays.items()})
    for name, value in case.params.items():
        request.params[name].CopyFrom(encode_param(name, value))
    return request, arrays


def _variant(base: pb.ComputeRequest) -> pb.ComputeRequest:
    out = pb.ComputeRequest()
    out.CopyFrom(base)
    return out


_WRONG_TYPE = {
    ParamType.FLOAT: pb.ParamValue(text="x"), ParamType.INT: pb.ParamValue(text="x"),
    ParamType.BOOL: pb.ParamValue(number=1.5), ParamType.STRING: pb.ParamValue(number=1.0),
    ParamType.FLOAT_LIST: pb.ParamValue(flag=True), ParamType.STRING_LIST: pb.ParamValue(number=2.0),
}


def _outside(param: Any) -> pb.ParamValue | None:
    if param.choices:
        if param.type is ParamType.STRING_LIST:
            return pb.ParamValue(texts=pb.StringList(values=["no-such-choice"]))
        return pb.ParamValue(text="no-such-choice")
    if param.minimum is not None:
        value = param.minimum if param.exclusive_minimum else param.minimum - 1
    elif param.maximum is not None:
        value = param.maximum if param.exclusive_maximum else param.maximum + 1
    else:
        return None
    if param.type is ParamType.FLOAT_LIST:
        return pb.ParamValue(numbers=pb.DoubleList(values=[value]))
    return pb.ParamValue(number=float(value))


def _cases_for(name: str) -> Iterator[BadCase]:
    spec = REGISTRY.get(name)
    base, arrays = _valid(name)
    for role in spec.roles:
        if role.name in arrays:
            r = _variant(base)
            wrong = np.bool_ if Kind.BOOL not in role.kinds else np.complex64
            if wrong is np.complex64:
                r.inputs[role.name].dtype = 99
                yield BadCase(f"{name}:dtype-unknown:{role.name}", r, INVALID, f"inputs[{role.name}].dtype")
            else:
                r.inputs[role.name].CopyFrom(raw_tensor(arrays[role.name].astype(wrong)))
                yield BadCase(f"{name}:wrong-dtype:{role.name}", r, INVALID, f"inputs[{role.name}]")
            r = _variant(base)
            r.inputs[role.name].raw_data = r.inputs[role.name].raw_data[:-1] + b""
            if len(base.inputs[role.name].raw_data):
                yield BadCase(f"{name}:short-bytes:{role.name}", r, INVALID, f"inputs[{role.name}].raw_data")
            r = _variant(base)
            r.inputs[role.name].shape[:] = [-1, *list(r.inputs[role.name].shape)[1:]]
            yield BadCase(f"{name}:negative-dim:{role.name}", r, INVALID, f"inputs[{role.name}].shape")
            r = _variant(base)
            r.inputs[role.name].shape[:] = [2**40, 2**40]
            yield BadCase(f"{name}:absurd-shape:{role.name}", r, EXHAUSTED, f"inputs[{role.name}].shape")
        if role.required:
            r = _variant(base)
            del r.inputs[role.name]
            yield BadCase(f"{name}:missing:{role.name}", r, INVALID, f"inputs[{role.name}]")
            r = _variant(base)
            r.params[role.name].CopyFrom(pb.ParamValue(number=1.0))
            yield BadCase(f"{name}:role-as-param:{role.name}", r, INVALID, f"params[{role.name}]")
    r = _variant(base)
    r.inputs["zz_unknown"].CopyFrom(raw_tensor(np.zeros(2, np.float32)))
    yield BadCase(f"{name}:unknown-role", r, INVALID, "inputs[zz_unknown]")
    r = _variant(base)
    r.params["zz_unknown"].CopyFrom(pb.ParamValue(number=1.0))
    yield BadCase(f"{name}:unknown-param", r, INVALID, "params[zz_unknown]")
    r = _variant(base)
    r.reduction = "zz_unknown"
    yield BadCase(f"{name}:unknown-reduction", r, INVALID, "reduction")
    for param in spec.params:
        r = _variant(base)
        r.params[param.name].CopyFrom(_WRONG_TYPE[param.type])
        yield BadCase(f"{name}:wrong-type:{param.name}", r, INVALID, f"params[{param.name}]")
        value = _outside(param)
        if value is not None:
            r = _variant(base)
            r.params[param.name].CopyFrom(value)
            yield BadCase(f"{name}:out-of-range:{param.name}", r, INVALID, f"params[{param.name}]")


def _all_cases() -> list[BadCase]:
    cases = [c for spec in REGISTRY for c in _cases_for(spec.name)]
    cases.append(BadCase("unknown-loss", pb.ComputeRequest(loss="zz_no_such_loss"), NOT_FOUND, "loss"))
    cases.append(BadCase("empty-request", pb.ComputeRequest(), INVALID, "loss"))
    return cases


MATRIX = _all_cases()


@pytest.mark.parametrize("case", MATRIX, ids=[c.id for c in MATRIX])
def test_bad_input_is_refused_naming_its_field(stub: Any, case: BadCase) -> None:
    """The refusal has the documented code and a BadRequest violation for the field at fault."""
    with pytest.raises(grpc.RpcError) as err:
        stub.Compute(case.request, timeout=20)
    assert err.value.code() == case.code, err.value.details()
    fields = bad_request_fields(err.value)
    assert any(f.startswith(case.field) for f in fields), (fields, err.value.details())


def test_matrix_size_and_the_server_afterwards(stub: Any, server: Any) -> None:
    """The matrix holds hundreds of distinct cases; afterwards the same server computes a good request."""
    print(f"\nbad-input matrix: {len(MATRIX)} distinct cases over {len(REGISTRY)} losses")
    assert len(MATRIX) >= 20 * len(REGISTRY) // 2
    assert len({c.id for c in MATRIX}) == len(MATRIX)
    x = np.array([1.0, 3.0], np.float32)
    reply = stub.Compute(pb.ComputeRequest(loss="mse", inputs={"input": raw_tensor(x),
                                                              "target": raw_tensor(np.ones(2, np.float32))}),
                         timeout=10)
    assert np.frombuffer(reply.loss.raw_data, "<f4")[0] == 2.0
    refused = sum(s.value for family in server.server.metrics.requests.collect() for s in family.samples
                  if s.name.endswith("_total") and s.labels["code"] in ("INVALID_ARGUMENT", "NOT_FOUND",
                                                                        "RESOURCE_EXHAUSTED"))
    assert refused >= len(MATRIX)
