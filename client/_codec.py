"""numpy arrays (and torch tensors, when the caller has torch) ↔ wire ``Tensor`` messages.

torch is never imported here: a torch tensor is recognised by its type's module and converted
through its own ``.numpy()``, so the client runs where torch is not installed.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from lossd.v1 import loss_service_pb2 as pb
from lossd.v1 import wire

_NUMPY_TO_WIRE: dict[np.dtype[Any], int] = {
    np.dtype(np.float32): pb.DTYPE_FLOAT32,
    np.dtype(np.float64): pb.DTYPE_FLOAT64,
    np.dtype(np.float16): pb.DTYPE_FLOAT16,
    np.dtype(np.int64): pb.DTYPE_INT64,
    np.dtype(np.int32): pb.DTYPE_INT32,
    np.dtype(np.bool_): pb.DTYPE_BOOL,
    np.dtype(np.uint8): pb.DTYPE_UINT8,
}
_WIRE_TO_NUMPY = {v: k for k, v in _NUMPY_TO_WIRE.items()}
_NATIVE_IS_LITTLE = sys.byteorder == "little"


def is_tensor_like(value: Any) -> bool:
    """True for numpy arrays and torch tensors (which become inputs); False for parameter values."""
    return isinstance(value, np.ndarray) or _is_torch_tensor(value)


def _is_torch_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def tensor_parts(value: Any) -> tuple[pb.Tensor, np.ndarray]:
    """(a ``Tensor`` message without its bytes, the little-endian C-order array holding them).

    No copy is made when the array is already little-endian and contiguous.
    """
    if type(value) is np.ndarray and _NATIVE_IS_LITTLE and value.dtype.isnative and value.flags.c_contiguous:
        wire = _NUMPY_TO_WIRE.get(value.dtype)  # the common case, without conversions
        if wire is not None:
            return pb.Tensor(dtype=wire, shape=value.shape), value
    if _is_torch_tensor(value):
        t = value.detach().cpu().contiguous()
        if str(t.dtype) == "torch.bfloat16":
            import torch  # the caller handed us a torch tensor, so torch is importable

            # numpy has no bfloat16: send its 16-bit patterns as they are.
            bits = t.view(torch.int16).numpy()
            return pb.Tensor(dtype=pb.DTYPE_BFLOAT16, shape=list(t.shape)), bits.astype("<i2", copy=False)
        value = t.numpy()
    array = np.asarray(value)
    wire = _NUMPY_TO_WIRE.get(array.dtype.newbyteorder("="))
    if wire is None:
        supported = ", ".join(str(d) for d in _NUMPY_TO_WIRE)
        raise TypeError(f"cannot send an array of dtype {array.dtype}; supported: {supported}, torch.bfloat16")
    little = np.ascontiguousarray(array.astype(array.dtype.newbyteorder("<"), copy=False))
    return pb.Tensor(dtype=wire, shape=list(array.shape)), little.reshape(array.shape)


def wire_dtype(array: np.ndarray) -> int:
    """The wire dtype of a plain numpy array (one :func:`append_plain` accepted)."""
    return _NUMPY_TO_WIRE[array.dtype]


def append_plain(parts: list[Any], field: int, arrays: Mapping[str | None, Any]) -> int:
    """Append each array of ``arrays`` (map key → array; key None for a singular field) to ``parts`` as
    field ``field`` of a message, framing and buffer, and return their bytes; or -1, appending nothing
    more, as soon as one is not a plain little-endian C-ordered numpy array of a wire dtype (those take
    :func:`tensor_parts`' path)."""
    total = 0
    for key, a in arrays.items():
        wire_dtype = _NUMPY_TO_WIRE.get(a.dtype) if type(a) is np.ndarray and _NATIVE_IS_LITTLE else None
        if wire_dtype is None or not a.flags.c_contiguous:
            return -1
        parts += (wire.tensor_head(field, key, wire_dtype, a.shape, a.nbytes), a)  # the bytes join copies once
        total += a.nbytes
    return total


_FLOAT_WIRE = {pb.DTYPE_FLOAT32: 4, pb.DTYPE_FLOAT64: 8, pb.DTYPE_FLOAT16: 2, pb.DTYPE_BFLOAT16: 2}


def reply_bound(tensors: Iterable[tuple[int, tuple[int, ...]]], gradient: bool, reduction: str,
                hessian: bool = False) -> int:
    """An upper bound on the tensor bytes of the reply to a request whose tensors are ``tensors``
    ((wire dtype, shape) pairs): gradients (and Hessian diagonals) are shaped like their float inputs, and an
    unreduced loss has at most as many elements as the largest input (in the widest float dtype sent,
    float32 at least). Used to send over the streaming RPCs a request whose reply would not fit one message."""
    largest = gradients = 0
    width = 4
    for dtype, shape in tensors:
        numel = math.prod(shape)
        largest = max(largest, numel)
        size = _FLOAT_WIRE.get(dtype)
        if size is not None:
            width = max(width, size)
            gradients += numel * size
    return (largest * width if reduction == "none" else 8) + (gradients * (2 if hessian else 1) if gradient else 0)


def encode_array(value: Any) -> pb.Tensor:
    """A complete ``Tensor`` message (raw little-endian bytes) for a numpy array or torch tensor."""
    meta, data = tensor_parts(value)
    meta.raw_data = data.tobytes()
    return meta


def dtype_size(wire_dtype: int) -> int:
    """Bytes per element of a wire dtype."""
    return 2 if wire_dtype == pb.DTYPE_BFLOAT16 else _WIRE_TO_NUMPY[wire_dtype].itemsize


def decode_array(msg: pb.Tensor, raw: memoryview | None = None) -> np.ndarray:
    """A read-only numpy view of a ``Tensor`` message (bfloat16 comes back as float32).

    ``raw`` holds the bytes when the wire codec left them in the received buffer.
    """
    shape = tuple(msg.shape)
    data = raw if raw else msg.raw_data
    if msg.dtype == pb.DTYPE_BFLOAT16:
        if data:
            bits = np.frombuffer(data, dtype="<u2").astype(np.uint32) << 16
            return bits.view(np.float32).reshape(shape)
        return np.asarray(msg.float_val, dtype=np.float32).reshape(shape)
    dtype = _WIRE_TO_NUMPY[msg.dtype]
    if data:
        return np.frombuffer(data, dtype=dtype.newbyteorder("<")).reshape(shape)
    for values in (msg.float_val, msg.double_val, msg.int64_val, msg.bool_val):
        if len(values):
            return np.asarray(values, dtype=dtype).reshape(shape)
    return np.zeros(shape, dtype=dtype)


def encode_param(name: str, value: Any) -> pb.ParamValue:
    """A Python scalar, string, bool, None, or list of numbers or strings as a ``ParamValue``."""
    if value is None:
        return pb.ParamValue(none=0)
    if isinstance(value, (bool, np.bool_)):
        return pb.ParamValue(flag=bool(value))
    if isinstance(value, (int, np.integer)):
        return pb.ParamValue(integer=int(value))
    if isinstance(value, (float, np.floating)):
        return pb.ParamValue(number=float(value))
    if isinstance(value, str):
        return pb.ParamValue(text=value)
    if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float, np.number)) for v in value):
        return pb.ParamValue(numbers=pb.DoubleList(values=[float(v) for v in value]))
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return pb.ParamValue(texts=pb.StringList(values=list(value)))
    raise TypeError(f"parameter {name!r}: cannot send {type(value).__name__}; use a number, bool, string, None "
                    "or a list of numbers or strings (arrays and tensors are inputs)")


def split_arguments(kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Keyword arguments split into tensor inputs (arrays, tensors) and parameters (everything else)."""
    inputs = {k: v for k, v in kwargs.items() if is_tensor_like(v)}
    params = {k: v for k, v in kwargs.items() if k not in inputs}
    return inputs, params
