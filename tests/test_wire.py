"""The zero-copy wire codec (lossd.v1.wire) against the protobuf runtime: same messages, both ways."""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf.message import DecodeError
from hypothesis import given, settings
from hypothesis import strategies as st

from lossd.v1 import loss_service_pb2 as pb
from lossd.v1 import wire

INPUTS = pb.GradientRequest.DESCRIPTOR.fields_by_name["inputs"].number
GRAD_OUTPUT = pb.GradientRequest.DESCRIPTOR.fields_by_name["grad_output"].number

names = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FFF), min_size=0, max_size=8)
payloads = st.binary(min_size=0, max_size=300)
shapes = st.lists(st.integers(0, 2**40), max_size=4)


def _meta(shape: list[int]) -> pb.Tensor:
    return pb.Tensor(dtype=pb.DTYPE_UINT8, shape=shape)


@settings(max_examples=200, deadline=None)
@given(tensors=st.dictionaries(names, st.tuples(shapes, payloads), max_size=4),
       grad=st.none() | st.tuples(shapes, payloads), loss=names, wrt=st.lists(names, max_size=3))
def test_serialize_is_decoded_identically_by_protobuf(tensors: dict, grad: tuple | None, loss: str,
                                                      wrt: list[str]) -> None:
    """Appending detached tensors yields bytes the protobuf runtime decodes to the intended message."""
    message = pb.GradientRequest(loss=loss, wrt=wrt)
    message.params["delta"].number = 0.5
    detached = [wire.Detached(INPUTS, k, _meta(s), p) for k, (s, p) in tensors.items()]
    if grad is not None:
        detached.append(wire.Detached(GRAD_OUTPUT, None, _meta(grad[0]), grad[1]))
    expected = pb.GradientRequest(loss=loss, wrt=wrt)
    expected.params["delta"].number = 0.5
    for k, (s, p) in tensors.items():
        expected.inputs[k].CopyFrom(pb.Tensor(dtype=pb.DTYPE_UINT8, shape=s, raw_data=p))
    if grad is not None:
        expected.grad_output.CopyFrom(pb.Tensor(dtype=pb.DTYPE_UINT8, shape=grad[0], raw_data=grad[1]))
    assert pb.GradientRequest.FromString(wire.serialize(message, detached)) == expected


def _reassembled(parsed: wire.Parsed) -> pb.GradientRequest:
    out = pb.GradientRequest()
    out.CopyFrom(parsed.message)
    for (number, key), view in parsed.raw.items():
        target = out.inputs[key] if number == INPUTS else out.grad_output
        target.raw_data = bytes(view)
    return out


@settings(max_examples=200, deadline=None)
@given(tensors=st.dictionaries(names, st.tuples(shapes, payloads), max_size=4),
       grad=st.none() | st.tuples(shapes, payloads), loss=names)
def test_parse_of_a_standard_encoding_matches_protobuf(tensors: dict, grad: tuple | None, loss: str) -> None:
    """Parsing protobuf's own encoding gives the same message once the raw views are put back."""
    message = pb.GradientRequest(loss=loss, reduction="sum")
    for k, (s, p) in tensors.items():
        message.inputs[k].CopyFrom(pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=s, raw_data=p))
    if grad is not None:
        message.grad_output.CopyFrom(pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=grad[0], raw_data=grad[1]))
    data = message.SerializeToString()
    parsed = wire.parse(pb.GradientRequest, data, (INPUTS,), (GRAD_OUTPUT,))
    assert _reassembled(parsed) == message
    assert all(len(t.raw_data) == 0 for t in parsed.message.inputs.values())


def test_raw_data_is_a_view_of_the_received_bytes() -> None:
    """The parsed tensor bytes are a read-only view into the received buffer, not a copy."""
    data = np.arange(100_000, dtype=np.float32)
    encoded = wire.serialize(pb.ComputeRequest(loss="mse"), [wire.Detached(INPUTS, "input", _meta([4]), data)])
    parsed = wire.parse(pb.ComputeRequest, encoded, (INPUTS,))
    view = parsed.raw[(INPUTS, "input")]
    assert view.readonly and view.obj is encoded
    np.testing.assert_array_equal(np.frombuffer(view, np.float32), data)


def test_later_map_entry_replaces_an_earlier_one() -> None:
    """As in protobuf, the last entry for a map key wins, raw bytes included."""
    first = pb.ComputeRequest()
    first.inputs["x"].CopyFrom(pb.Tensor(shape=[1], raw_data=b"old!"))
    second = pb.ComputeRequest()
    second.inputs["x"].CopyFrom(pb.Tensor(shape=[2]))
    data = first.SerializeToString() + second.SerializeToString()
    parsed = wire.parse(pb.ComputeRequest, data, (INPUTS,))
    assert list(parsed.message.inputs["x"].shape) == [2]
    assert (INPUTS, "x") not in parsed.raw
    assert parsed.message == pb.ComputeRequest.FromString(data)


def test_singular_tensor_split_in_two_is_merged_like_protobuf() -> None:
    """A grad_output sent as two occurrences is merged (protobuf's rule), via the runtime itself."""
    a = pb.GradientRequest(grad_output=pb.Tensor(shape=[3], raw_data=b"abc"))
    b = pb.GradientRequest(grad_output=pb.Tensor(dtype=pb.DTYPE_UINT8))
    data = a.SerializeToString() + b.SerializeToString()
    parsed = wire.parse(pb.GradientRequest, data, (INPUTS,), (GRAD_OUTPUT,))
    assert _reassembled(parsed) == pb.GradientRequest.FromString(data)


@pytest.mark.parametrize("data", [b"\x12\x05ab", b"\x12", b"\x80" * 11, b"\x0f"], ids=["short", "no-length",
                                                                                        "long-varint", "wire-7"])
def test_malformed_bytes_raise_decode_error(data: bytes) -> None:
    """Truncated or malformed framing raises DecodeError (gRPC answers it as a bad request)."""
    with pytest.raises(DecodeError):
        wire.parse(pb.ComputeRequest, data, (INPUTS,))


@pytest.mark.parametrize("size", [2, 200_000], ids=["small", "large"])
@pytest.mark.parametrize("method", ["Compute", "Gradient", "ListLosses"])
def test_server_refuses_malformed_bytes_as_invalid_argument(channel, method: str, size: int) -> None:  # type: ignore[no-untyped-def]
    """Bytes that are not a valid encoding are a bad request (field "request"), not an INTERNAL error."""
    import grpc
    from helpers import bad_request_fields

    garbage = b"\x0f" + b"\xff" * (size - 1)
    with pytest.raises(grpc.RpcError) as err:
        channel.unary_unary(f"/lossd.v1.LossService/{method}")(garbage, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(err.value) == ["request"]


@settings(max_examples=200, deadline=None)
@given(key=st.none() | names, shape=shapes, payload=payloads)
def test_tensor_head_framing_matches_protobuf(key: str | None, shape: list[int], payload: bytes) -> None:
    """tensor_head + raw bytes decode to the same message as protobuf's encoding of that tensor."""
    field = GRAD_OUTPUT if key is None else INPUTS
    encoded = wire.tensor_head(field, key, pb.DTYPE_UINT8, tuple(shape), len(payload)) + payload
    expected = pb.GradientRequest()
    target = expected.grad_output if key is None else expected.inputs[key]
    target.CopyFrom(pb.Tensor(dtype=pb.DTYPE_UINT8, shape=shape, raw_data=payload))
    assert pb.GradientRequest.FromString(encoded) == expected


@pytest.mark.parametrize("field, key", [(pb.GradientResponse.DESCRIPTOR.fields_by_name["loss"].number, None),
                                        (pb.GradientResponse.DESCRIPTOR.fields_by_name["gradients"].number, "input")],
                         ids=["singular", "map"])
def test_serialize_refuses_a_detached_tensor_also_held_by_the_message(field: int, key: str | None) -> None:
    """A tensor both in the message and detached would reach decoders twice (a singular one with its shape
    doubled by protobuf's merge): serialize raises instead of sending it."""
    message = pb.GradientResponse(loss=pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=[2]))
    message.gradients["input"].CopyFrom(pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=[2]))
    with pytest.raises(ValueError, match="both in the message and detached"):
        wire.serialize(message, [wire.Detached(field, key, pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=[2]), b"\0" * 8)])
