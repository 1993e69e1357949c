"""Wire ``Tensor``/``ParamValue`` messages ↔ torch tensors and Python values, on the server side.

Raw bytes are wrapped without a copy (``torch.frombuffer``); the declared shape is checked against
the byte count before any memory is allocated for it, so a request cannot make the server reserve
more than it actually sent.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Mapping
from typing import Any

import torch

from lossd.losses import FieldViolation, InvalidRequestError, ResourceLimitError
from lossd.losses.errors import invalid
from lossd.server.shm import SharedMemoryAccess
from lossd.v1 import loss_service_pb2 as pb
from lossd.v1 import wire

if sys.byteorder != "little":  # raw_data is little-endian on the wire; we wrap it without swapping
    raise ImportError("lossd's server needs a little-endian host")

# Request bytes are immutable; the tensors we wrap around them are only ever read (casts and
# autograd make new tensors), so torch's warning about non-writable buffers does not apply.
warnings.filterwarnings("ignore", message="The given buffer is not writable", category=UserWarning)

WIRE_TO_TORCH: dict[int, torch.dtype] = {
    pb.DTYPE_FLOAT32: torch.float32,
    pb.DTYPE_FLOAT64: torch.float64,
    pb.DTYPE_FLOAT16: torch.float16,
    pb.DTYPE_BFLOAT16: torch.bfloat16,
    pb.DTYPE_INT64: torch.int64,
    pb.DTYPE_INT32: torch.int32,
    pb.DTYPE_BOOL: torch.bool,
    pb.DTYPE_UINT8: torch.uint8,
}
TORCH_TO_WIRE: dict[torch.dtype, int] = {v: k for k, v in WIRE_TO_TORCH.items()}
_ITEMSIZE = {d: torch.empty((), dtype=d).element_size() for d in TORCH_TO_WIRE}


def itemsize(dtype: torch.dtype) -> int:
    """Bytes per element."""
    return _ITEMSIZE[dtype]

# Which typed list may carry which dtypes (see the Tensor message in the .proto).
_LIST_DTYPES: dict[str, tuple[torch.dtype, ...]] = {
    "float_val": (torch.float32, torch.float16, torch.bfloat16),
    "double_val": (torch.float64, torch.float32, torch.float16, torch.bfloat16),
    "int64_val": (torch.int64, torch.int32, torch.uint8),
    "bool_val": (torch.bool,),
}
_LIST_SOURCE = {"float_val": torch.float32, "double_val": torch.float64, "int64_val": torch.int64,
                "bool_val": torch.bool}
_MAX_DIMS = 16


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def wire_dtype_name(value: int) -> str:
    """``DTYPE_FLOAT32`` → ``float32`` (for messages)."""
    return pb.DType.Name(value).removeprefix("DTYPE_").lower() if value in pb.DType.values() else str(value)


def decode_tensor(msg: pb.Tensor, where: str, max_elements: int, raw: memoryview | None = None,
                  shm: SharedMemoryAccess | None = None) -> torch.Tensor:
    """The CPU tensor a ``Tensor`` message describes; ``where`` names it in errors (``inputs[target]``).

    ``raw`` is the tensor's raw_data when the wire codec left it in the received bytes (zero-copy);
    ``shm`` maps shared-memory regions (the same-host path), when the server enables it.
    """
    dtype = WIRE_TO_TORCH.get(msg.dtype)
    if dtype is None:
        accepted = ", ".join(_dtype_name(d) for d in TORCH_TO_WIRE)
        message = f"{wire_dtype_name(msg.dtype)} is not a tensor dtype; expected one of: {accepted}"
        raise invalid(f"{where}.dtype", message)
    shape = tuple(msg.shape)
    # One cheap test for the common case; the refusals are worked out only when it fails.
    if shape and (len(shape) > _MAX_DIMS or min(shape) < 0 or max(shape) > max_elements):
        _refuse_shape(shape, where, max_elements)
    numel = math.prod(shape)  # Python ints: no overflow, however absurd the claim
    _check_numel(numel, where, max_elements)
    data = raw if raw else msg.raw_data  # (reading raw_data copies it: read it once)
    lists = msg.float_val or msg.double_val or msg.int64_val or msg.bool_val
    if data and not lists and not msg.HasField("shm"):  # the common case: raw bytes only
        return _from_raw(data, dtype, shape, numel, where)
    present = [name for name, found in (("raw_data", len(data)), ("float_val", len(msg.float_val)),
                                        ("double_val", len(msg.double_val)), ("int64_val", len(msg.int64_val)),
                                        ("bool_val", len(msg.bool_val)), ("shm", msg.HasField("shm"))) if found]
    if len(present) > 1:
        raise invalid(where, f"carries both {present[0]} and {present[1]}; send exactly one content field")
    if not present:
        if numel == 0:
            return torch.empty(shape, dtype=dtype)
        raise invalid(where, f"has shape {list(shape)} ({numel} elements) but no content; "
                      "set raw_data or one typed list")
    content = present[0]
    if content == "shm":
        access = shm or SharedMemoryAccess("")
        view = access.read(msg.shm, f"{where}.shm", numel * _ITEMSIZE[dtype])
        return _from_raw(view, dtype, shape, numel, where)
    return _from_list(getattr(msg, content), content, dtype, shape, numel, where)


def _check_numel(numel: int, where: str, max_elements: int) -> None:
    if numel > max_elements:
        raise ResourceLimitError(
            f"{where} claims {numel} elements; this server accepts at most {max_elements} per tensor",
            [FieldViolation(f"{where}.shape", f"{numel} elements exceeds the limit of {max_elements}")],
        )


def _refuse_shape(shape: tuple[int, ...], where: str, max_elements: int) -> None:
    """Raise the refusal for a shape with too many dimensions, a negative one, or one too long."""
    if len(shape) > _MAX_DIMS:
        raise invalid(f"{where}.shape", f"{len(shape)} dimensions; at most {_MAX_DIMS} are supported")
    for i, d in enumerate(shape):
        if d < 0:
            raise invalid(f"{where}.shape[{i}]", f"{d} is negative; dimensions are >= 0")
    numel = math.prod(shape)
    _check_numel(numel, where, max_elements)
    # Per dimension too: an empty tensor with a 2**40 x 2**40 tail has 0 elements, yet torch
    # would overflow computing its strides.
    for i, d in enumerate(shape):
        if d > max_elements:
            raise ResourceLimitError(
                f"{where}.shape[{i}] is {d}; this server accepts at most {max_elements} elements per tensor",
                [FieldViolation(f"{where}.shape[{i}]", f"{d} exceeds the limit of {max_elements} elements")],
            )


def _from_raw(raw: bytes | memoryview, dtype: torch.dtype, shape: tuple[int, ...], numel: int,
              where: str) -> torch.Tensor:
    itemsize = _ITEMSIZE[dtype]
    if len(raw) != numel * itemsize:
        raise invalid(f"{where}.raw_data", f"{len(raw)} bytes, but shape {list(shape)} of {_dtype_name(dtype)} "
                      f"needs {numel} x {itemsize} = {numel * itemsize} bytes")
    if numel == 0:
        return torch.empty(shape, dtype=dtype)
    flat = torch.frombuffer(raw, dtype=dtype)
    return flat if len(shape) == 1 else flat.reshape(shape)


def _from_list(values: Any, content: str, dtype: torch.dtype, shape: tuple[int, ...], numel: int,
               where: str) -> torch.Tensor:
    if dtype not in _LIST_DTYPES[content]:
        accepted = ", ".join(_dtype_name(d) for d in _LIST_DTYPES[content])
        raise invalid(f"{where}.{content}", f"cannot carry dtype {_dtype_name(dtype)}; it carries: {accepted}")
    if len(values) != numel:
        raise invalid(f"{where}.{content}", f"{len(values)} values, but shape {list(shape)} needs {numel}")
    tensor = torch.tensor(list(values), dtype=_LIST_SOURCE[content])
    if dtype == torch.uint8 and bool(((tensor < 0) | (tensor > 255)).any()):
        raise invalid(f"{where}.{content}", "uint8 values must lie in [0, 255]")
    if dtype == torch.int32 and bool(((tensor < -(2**31)) | (tensor >= 2**31)).any()):
        raise invalid(f"{where}.{content}", "int32 values must lie in [-2^31, 2^31)")
    return tensor.to(dtype).reshape(shape)


def encode_tensor(tensor: torch.Tensor, encoding: int = pb.ENCODING_RAW) -> pb.Tensor:
    """A ``Tensor`` message holding a CPU tensor, as raw bytes or as a typed list."""
    msg = pb.Tensor()
    fill_tensor(msg, tensor, encoding)
    return msg


def fill_tensor(msg: pb.Tensor, tensor: torch.Tensor, encoding: int = pb.ENCODING_RAW) -> None:
    """Write a CPU tensor into ``msg`` (a reply's own field: no message is built and copied in)."""
    t = tensor.detach() if tensor.requires_grad else tensor
    t = t if t.is_contiguous() else t.contiguous()
    msg.dtype = TORCH_TO_WIRE[t.dtype]
    if encoding != pb.ENCODING_VALUES and t.dim() == 0 and t.dtype is not torch.bfloat16:
        msg.raw_data = t.numpy().tobytes()  # a reduced loss, in nearly every reply: four or eight bytes
        return
    msg.shape.extend(t.shape)
    if t.numel() == 0:
        return
    if encoding == pb.ENCODING_VALUES:
        if t.dtype == torch.float64:
            msg.double_val.extend(t.reshape(-1).tolist())
        elif t.is_floating_point():
            msg.float_val.extend(t.to(torch.float32).reshape(-1).tolist())
        elif t.dtype == torch.bool:
            msg.bool_val.extend(t.reshape(-1).tolist())
        else:
            msg.int64_val.extend(t.reshape(-1).tolist())
    else:
        # One copy into the message; numpy lacks bfloat16, whose bits travel through a uint8 view.
        data = t.reshape(-1).view(torch.uint8) if t.dtype == torch.bfloat16 else t
        msg.raw_data = data.numpy().tobytes()


def detached_tensor(tensor: torch.Tensor, encoding: int, field: int, key: str | None) -> wire.Detached | None:
    """A large raw reply tensor, to be appended to the reply without a copy; None when it belongs in the
    reply message itself (small, or sent as a typed list: fill it with :func:`fill_tensor`).

    A detached tensor is the only occurrence of its field on the wire: its ``meta`` carries dtype and shape,
    and the reply message must leave that field unset. (Protobuf merges two occurrences of a singular
    message field and concatenates their repeated ``shape``.)
    """
    if encoding == pb.ENCODING_VALUES or tensor.numel() * tensor.element_size() < wire.DETACH_BYTES:
        return None
    t = tensor.detach().contiguous()
    meta = pb.Tensor(dtype=TORCH_TO_WIRE[t.dtype], shape=t.shape)
    return wire.Detached(field, key, meta, t.reshape(-1).view(torch.uint8).numpy())


def decode_params(params: Mapping[str, pb.ParamValue]) -> dict[str, Any]:
    """``ParamValue`` messages as Python values: float, int, str, bool or list of floats."""
    out: dict[str, Any] = {}
    problems = []
    for name, value in params.items():
        kind = value.WhichOneof("kind")
        if kind is None:
            problems.append(FieldViolation(f"params[{name}]", "no value set; set one of number, integer, text, "
                                                              "flag, numbers, texts, none"))
        elif kind == "numbers":
            out[name] = list(value.numbers.values)
        elif kind == "texts":
            out[name] = list(value.texts.values)
        elif kind == "none":
            out[name] = None
        else:
            out[name] = getattr(value, kind)
    if problems:
        raise InvalidRequestError(problems)
    return out
