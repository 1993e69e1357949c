"""The tensor and parameter codecs on both sides of the wire, tested without a server."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from lossd.client._codec import decode_array, encode_array, encode_param
from lossd.losses import InvalidRequestError, ResourceLimitError
from lossd.server.codec import decode_params, decode_tensor, encode_tensor
from lossd.v1 import loss_service_pb2 as pb

LIMIT = 10**6

NUMPY_TO_TORCH = {
    np.float32: torch.float32,
    np.float64: torch.float64,
    np.float16: torch.float16,
    np.int64: torch.int64,
    np.int32: torch.int32,
    np.bool_: torch.bool,
    np.uint8: torch.uint8,
}
SHAPES = [(), (0,), (3,), (2, 3, 4)]


def sample(dtype: Any, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Random values of ``dtype``: signed floats and ints, 0..255 for uint8, coin flips for bool."""
    if dtype is np.bool_:
        return rng.random(shape) > 0.5
    if dtype is np.uint8:
        return rng.integers(0, 256, shape).astype(np.uint8)
    if np.issubdtype(dtype, np.integer):
        return rng.integers(-(2**30), 2**30, shape).astype(dtype)
    return (rng.standard_normal(shape) * 100).astype(dtype)


def server_decode(msg: pb.Tensor, max_elements: int = LIMIT) -> torch.Tensor:
    return decode_tensor(msg, "inputs[x]", max_elements)


def violation_fields(error: pytest.ExceptionInfo[Any]) -> list[str]:
    return [v.field for v in error.value.violations]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", list(NUMPY_TO_TORCH), ids=lambda d: np.dtype(d).name)
def test_client_encode_server_decode_round_trip_keeps_values_and_dtype(dtype: Any, shape: tuple[int, ...],
                                                                       rng: np.random.Generator) -> None:
    """Every wire dtype and shape survives client encode_array → server decode_tensor exactly."""
    array = sample(dtype, shape, rng)
    msg = encode_array(array)
    assert len(msg.raw_data) == array.nbytes
    decoded = server_decode(msg)
    assert decoded.dtype == NUMPY_TO_TORCH[dtype]
    assert tuple(decoded.shape) == shape
    np.testing.assert_array_equal(decoded.numpy(), array)


@pytest.mark.parametrize("dtype", [">f4", ">f8", ">i8", ">i4", ">f2"])
def test_big_endian_input_is_sent_little_endian(dtype: str, rng: np.random.Generator) -> None:
    """A big-endian numpy array goes on the wire as little-endian bytes and decodes to the same values."""
    array = sample(np.dtype(dtype).newbyteorder("=").type, (2, 3), rng).astype(dtype)
    msg = encode_array(array)
    assert msg.raw_data == array.astype(np.dtype(dtype).newbyteorder("<")).tobytes()
    decoded = server_decode(msg)
    assert decoded.dtype == NUMPY_TO_TORCH[np.dtype(dtype).newbyteorder("=").type]
    np.testing.assert_array_equal(decoded.numpy(), array)


def test_non_contiguous_array_is_sent_in_row_major_order() -> None:
    """A transposed (Fortran-ordered) view is sent as its C-order elements, not its memory order."""
    array = np.arange(6, dtype=np.float32).reshape(2, 3).T
    decoded = server_decode(encode_array(array))
    np.testing.assert_array_equal(decoded.numpy(), [[0, 3], [1, 4], [2, 5]])


BF16_VALUES = [0.0, -0.0, 1.0, -2.5, 3.140625, 1.5e-30, 3.3895313892515355e38, float("inf")]


def test_bfloat16_torch_tensor_round_trips_exactly_to_the_server() -> None:
    """A torch bfloat16 tensor sent by the client decodes on the server to the identical bfloat16 values."""
    t = torch.tensor(BF16_VALUES, dtype=torch.bfloat16).reshape(2, 4)
    msg = encode_array(t)
    assert msg.dtype == pb.DTYPE_BFLOAT16
    assert list(msg.shape) == [2, 4]
    assert len(msg.raw_data) == 16
    decoded = server_decode(msg)
    assert decoded.dtype == torch.bfloat16
    assert torch.equal(decoded.view(torch.int16), t.view(torch.int16))


@pytest.mark.parametrize("encoding", [pb.ENCODING_RAW, pb.ENCODING_VALUES], ids=["raw", "values"])
def test_server_bfloat16_reaches_client_as_float32_with_same_values(encoding: int) -> None:
    """Server encode_tensor of bfloat16 (raw or typed) → client decode_array gives float32, same values."""
    t = torch.tensor(BF16_VALUES, dtype=torch.bfloat16).reshape(4, 2)
    array = decode_array(encode_tensor(t, encoding))
    assert array.dtype == np.float32
    assert array.shape == (4, 2)
    np.testing.assert_array_equal(array, t.float().numpy())


@pytest.mark.parametrize(("dtype", "field"), [
    (torch.float32, "float_val"), (torch.float16, "float_val"), (torch.float64, "double_val"),
    (torch.int64, "int64_val"), (torch.int32, "int64_val"), (torch.uint8, "int64_val"),
    (torch.bool, "bool_val"),
], ids=str)
def test_values_encoding_fills_the_typed_list_the_client_reads_back(dtype: torch.dtype, field: str) -> None:
    """ENCODING_VALUES puts the elements in the dtype's typed list (no raw bytes); decode_array reads them."""
    t = (torch.arange(6, dtype=torch.float64) * 1.25 - 2).reshape(3, 2)
    t = (t > 0) if dtype == torch.bool else t.abs().to(dtype)
    msg = encode_tensor(t, pb.ENCODING_VALUES)
    assert msg.raw_data == b""
    assert list(msg.shape) == [3, 2]
    assert list(getattr(msg, field)) == t.reshape(-1).tolist()
    array = decode_array(msg)
    assert array.dtype == t.numpy().dtype
    np.testing.assert_array_equal(array, t.numpy())


def test_values_encoding_of_0d_and_empty_tensors() -> None:
    """A 0-d tensor becomes a one-element list with shape []; an empty one carries no content at all."""
    scalar = encode_tensor(torch.tensor(0.75, dtype=torch.float64), pb.ENCODING_VALUES)
    assert (list(scalar.shape), list(scalar.double_val)) == ([], [0.75])
    assert decode_array(scalar).shape == ()
    assert float(decode_array(scalar)) == 0.75
    empty = encode_tensor(torch.empty(0, 3), pb.ENCODING_VALUES)
    assert (list(empty.shape), empty.raw_data, len(empty.float_val)) == ([0, 3], b"", 0)
    assert decode_array(empty).shape == (0, 3)


def test_server_decodes_typed_lists_to_the_declared_dtype() -> None:
    """float_val/double_val/int64_val/bool_val decode to the tensor's declared dtype (float16 rounded)."""
    half = server_decode(pb.Tensor(dtype=pb.DTYPE_FLOAT16, shape=[2], float_val=[0.1, 2.0]))
    assert half.dtype == torch.float16
    assert half.tolist() == [float(np.float16(0.1)), 2.0]
    small = server_decode(pb.Tensor(dtype=pb.DTYPE_UINT8, shape=[3], int64_val=[0, 7, 255]))
    assert (small.dtype, small.tolist()) == (torch.uint8, [0, 7, 255])
    flags = server_decode(pb.Tensor(dtype=pb.DTYPE_BOOL, shape=[2, 1], bool_val=[True, False]))
    assert (flags.dtype, flags.tolist()) == (torch.bool, [[True], [False]])
    single = server_decode(pb.Tensor(dtype=pb.DTYPE_FLOAT32, double_val=[1.5]))
    assert (single.dtype, single.shape, single.item()) == (torch.float32, (), 1.5)


def test_server_refuses_uint8_values_outside_0_255() -> None:
    """int64_val of a uint8 tensor must lie in [0, 255]; 256 is refused, not wrapped."""
    with pytest.raises(InvalidRequestError) as e:
        server_decode(pb.Tensor(dtype=pb.DTYPE_UINT8, shape=[2], int64_val=[1, 256]))
    assert violation_fields(e) == ["inputs[x].int64_val"]
    assert "[0, 255]" in e.value.message


def test_decode_params_maps_each_kind_to_its_python_type() -> None:
    """number/integer/text/flag/numbers decode to float/int/str/bool/list of floats."""
    params = {
        "a": pb.ParamValue(number=0.5),
        "b": pb.ParamValue(integer=-100),
        "c": pb.ParamValue(text="sum"),
        "d": pb.ParamValue(flag=True),
        "e": pb.ParamValue(numbers=pb.DoubleList(values=[1.0, 2.5])),
        "f": pb.ParamValue(numbers=pb.DoubleList()),
    }
    decoded = decode_params(params)
    assert decoded == {"a": 0.5, "b": -100, "c": "sum", "d": True, "e": [1.0, 2.5], "f": []}
    assert [type(decoded[k]) for k in "abcde"] == [float, int, str, bool, list]


def test_decode_params_refuses_an_unset_value() -> None:
    """A ParamValue with no kind set is refused as InvalidRequestError on params[<name>]."""
    with pytest.raises(InvalidRequestError) as e:
        decode_params({"delta": pb.ParamValue(), "ok": pb.ParamValue(number=1.0)})
    assert violation_fields(e) == ["params[delta]"]
    assert "no value set" in e.value.message


def test_client_encode_param_refuses_a_dict_naming_the_parameter() -> None:
    """encode_param raises TypeError naming the parameter and the offending type for a dict."""
    with pytest.raises(TypeError, match=r"parameter 'delta': cannot send dict"):
        encode_param("delta", {"value": 1.0})


@pytest.mark.parametrize(("value", "expected"), [
    (np.float32(0.5), pb.ParamValue(number=0.5)),
    (np.float64(1.25), pb.ParamValue(number=1.25)),
    (np.int64(-100), pb.ParamValue(integer=-100)),
    (np.int32(3), pb.ParamValue(integer=3)),
    (np.bool_(True), pb.ParamValue(flag=True)),
    (True, pb.ParamValue(flag=True)),
    (7, pb.ParamValue(integer=7)),
    ("sum", pb.ParamValue(text="sum")),
    ([1, np.float32(2.5)], pb.ParamValue(numbers=pb.DoubleList(values=[1.0, 2.5]))),
], ids=repr)
def test_client_encode_param_maps_python_and_numpy_scalars(value: Any, expected: pb.ParamValue) -> None:
    """Python and numpy scalars (and lists of them) become the matching ParamValue kind."""
    assert encode_param("p", value) == expected


def test_decode_tensor_refuses_raw_bytes_of_the_wrong_length() -> None:
    """Raw bytes not equal to prod(shape) x itemsize are refused on <where>.raw_data."""
    with pytest.raises(InvalidRequestError) as e:
        server_decode(pb.Tensor(dtype=pb.DTYPE_FLOAT64, shape=[2, 2], raw_data=b"\0" * 24))
    assert e.value.violations[0].field == "inputs[x].raw_data"
    assert "24 bytes, but shape [2, 2] of float64 needs 4 x 8 = 32 bytes" in e.value.message


def test_decode_tensor_refuses_claims_over_max_elements() -> None:
    """A shape over max_elements raises ResourceLimitError on <where>.shape; the limit itself is fine."""
    at_limit = server_decode(pb.Tensor(dtype=pb.DTYPE_UINT8, shape=[2, 3], raw_data=bytes(6)), max_elements=6)
    assert tuple(at_limit.shape) == (2, 3)
    with pytest.raises(ResourceLimitError) as e:
        server_decode(pb.Tensor(dtype=pb.DTYPE_UINT8, shape=[7], raw_data=bytes(7)), max_elements=6)
    assert violation_fields(e) == ["inputs[x].shape"]
    with pytest.raises(ResourceLimitError) as e:
        server_decode(pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=[2**62, 2**62, 2**62]))
    assert f"claims {2**186} elements" in e.value.message


def test_decode_tensor_without_content_is_empty_only_when_shape_has_no_elements() -> None:
    """No content field gives an empty tensor for a 0-element shape, and is refused otherwise."""
    empty = server_decode(pb.Tensor(dtype=pb.DTYPE_INT32, shape=[3, 0]))
    assert (empty.dtype, tuple(empty.shape)) == (torch.int32, (3, 0))
    with pytest.raises(InvalidRequestError) as e:
        server_decode(pb.Tensor(dtype=pb.DTYPE_INT32, shape=[]))
    assert violation_fields(e) == ["inputs[x]"]
    assert "no content" in e.value.message


def test_client_encode_array_refuses_unsupported_dtypes() -> None:
    """encode_array raises TypeError for a dtype the wire cannot carry (complex64)."""
    with pytest.raises(TypeError, match="cannot send an array of dtype complex64"):
        encode_array(np.zeros(2, np.complex64))
