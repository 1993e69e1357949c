"""Protobuf wire encoding of tensor-carrying messages without copying the tensor bytes (hand-written).

Python protobuf copies a ``bytes`` field at every step (setting it, serializing, parsing, reading
it back); for a 16 MiB tensor each copy costs milliseconds. Here the large ``Tensor.raw_data``
payloads bypass the protobuf runtime:

- :func:`serialize` encodes the message without those tensors, then appends each tensor as one more
  field occurrence whose ``raw_data`` is the caller's buffer. Protobuf's own merge rules (the last map
  entry for a key wins; a repeated singular message field merges) make the result a standard encoding
  that any protobuf library decodes. The tensor bytes are copied once, into the output.
- :func:`parse` walks the top level of the encoding, hands everything but the tensors' ``raw_data``
  to the protobuf runtime, and returns ``raw_data`` as zero-copy ``memoryview`` slices of the input.

Only the tag/length framing is interpreted here; every other byte is decoded by protobuf itself.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from google.protobuf.message import DecodeError, Message

from lossd.v1 import loss_service_pb2 as pb

_LEN = 2  # wire type of length-delimited fields
_RAW_DATA = 3  # Tensor.raw_data
M = TypeVar("M", bound=Message)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise DecodeError("truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview) -> Iterator[tuple[int, int, int, int, int]]:
    """(field number, wire type, start of the field, start of its payload, end) for each field."""
    pos = 0
    while pos < len(buf):
        start = pos
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, end = _read_varint(buf, pos)
        elif wire == 1:
            end = pos + 8
        elif wire == 5:
            end = pos + 4
        elif wire == _LEN:
            length, pos = _read_varint(buf, pos)
            end = pos + length
        else:
            raise DecodeError(f"unsupported wire type {wire}")
        if end > len(buf) or number == 0:
            raise DecodeError("truncated message")
        yield number, wire, start, pos, end
        pos = end


# Public names for the other hand-written codecs (the Open Inference Protocol's, in lossd.server.v2_grpc; the
# server's request templates, in lossd.server.plans).
varint = _varint
fields = _fields
LEN = _LEN
RAW_DATA = _RAW_DATA


@dataclass(frozen=True)
class Detached:
    """A tensor to append to a message: ``field`` number, map ``key`` (None for a singular field),
    its ``meta`` (a Tensor message holding everything but raw_data) and the ``raw`` buffer."""

    field: int
    key: str | None
    meta: Message
    raw: Any  # any object supporting the buffer protocol (bytes, memoryview, numpy array)


def serialize(message: Message, detached: Sequence[Detached] = ()) -> bytes:
    """``message`` serialized, then each detached tensor appended with its raw bytes copied once.

    A detached tensor must be the only occurrence of its field (or map key): were ``message`` to hold it
    too, a decoder would merge the two and concatenate their ``shape``. Such a call raises ValueError.
    """
    if not detached:
        return message.SerializeToString()
    for d in detached:
        _check_absent(message, d)
    parts: list[Any] = [message.SerializeToString()]
    for d in detached:
        view = memoryview(d.raw)
        raw = view.cast("B") if view.nbytes else b""  # (an empty view has no byte layout to cast)
        parts += [_framing(d.field, d.key, d.meta.SerializeToString(), len(raw)), raw]
    return b"".join(parts)


def _check_absent(message: Message, d: Detached) -> None:
    name = message.DESCRIPTOR.fields_by_number[d.field].name
    held = d.key in getattr(message, name) if d.key is not None else message.HasField(name)
    if held:
        where = name if d.key is None else f"{name}[{d.key}]"
        raise ValueError(f"{where} is both in the message and detached; a detached tensor must be its only copy")


@functools.lru_cache(maxsize=1024)
def tensor_head(field: int, key: str | None, dtype: int, shape: tuple[int, ...], nbytes: int) -> bytes:
    """The bytes that precede a tensor's ``nbytes`` raw bytes appended as field ``field`` (map key ``key``,
    or None for a singular field) of a message, for a Tensor of ``dtype`` and ``shape``.

    Cached: a client sending tensors of the same shapes again and again frames them once.
    """
    return _framing(field, key, pb.Tensor(dtype=dtype, shape=shape).SerializeToString(), nbytes)


def _framing(field: int, key: str | None, meta: bytes, nbytes: int) -> bytes:
    """Field tag, lengths and the Tensor's own fields (``meta``), up to where its raw_data bytes begin."""
    tensor_head = meta + _varint(_RAW_DATA << 3 | _LEN) + _varint(nbytes)
    tensor_len = len(tensor_head) + nbytes
    if key is None:
        return _varint(field << 3 | _LEN) + _varint(tensor_len) + tensor_head
    k = key.encode()
    entry_head = (_varint(1 << 3 | _LEN) + _varint(len(k)) + k
                  + _varint(2 << 3 | _LEN) + _varint(tensor_len) + tensor_head)
    return _varint(field << 3 | _LEN) + _varint(len(entry_head) + nbytes) + entry_head


@dataclass
class Parsed:
    """A parsed message plus the ``raw_data`` of its tensors, left in the wire buffer.

    ``raw`` maps (field number, map key or None) to a read-only memoryview; the tensors in
    ``message`` then carry an empty ``raw_data``.
    """

    message: Any
    raw: dict[tuple[int, str | None], memoryview] = field(default_factory=dict)
    # Set (and ``message`` left empty) when the bytes were not a valid encoding: a gRPC deserializer
    # must not raise, or the call fails as INTERNAL instead of being refused as a bad request.
    error: str | None = None
    size: int = 0  # bytes received
    data: bytes | None = None  # the bytes received, when the parser was asked to keep them

    def raw_data(self, field_number: int, key: str | None, tensor: Any) -> bytes | memoryview:
        """The tensor's raw bytes, wherever they were left."""
        return self.raw.get((field_number, key), tensor.raw_data)


def _split_tensor(buf: memoryview) -> tuple[bytes, memoryview | None]:
    """A Tensor encoding split into (everything but raw_data, raw_data view); the last raw_data wins."""
    rest: list[memoryview] = []
    raw = None
    for number, _, start, payload, end in _fields(buf):
        if number == _RAW_DATA:
            raw = buf[payload:end]
        else:
            rest.append(buf[start:end])
    return b"".join(rest), raw


def parse(cls: type[M], data: bytes, tensor_maps: Sequence[int] = (), tensor_fields: Sequence[int] = ()) -> Parsed:
    """Decode ``data`` as ``cls``; tensors in the map fields ``tensor_maps`` (string key → Tensor) and the
    singular fields ``tensor_fields`` keep their ``raw_data`` in ``data`` (see :class:`Parsed`)."""
    buf = memoryview(data).toreadonly()
    rest: list[memoryview | bytes] = []
    raw: dict[tuple[int, str | None], memoryview] = {}
    singular_seen: set[int] = set()
    for number, wire, start, payload, end in _fields(buf):
        if wire == _LEN and number in tensor_maps:
            key: str | None = ""
            value: memoryview | None = None
            entry = buf[payload:end]
            other: list[memoryview] = []
            for n, _, s, p, e in _fields(entry):
                if n == 1:
                    key = bytes(entry[p:e]).decode("utf-8")
                elif n == 2:
                    value = entry[p:e]
                else:
                    other.append(entry[s:e])
            meta, view = _split_tensor(value) if value is not None else (b"", None)
            entry_bytes = _entry(key or "", meta)
            rest.append(_varint(number << 3 | _LEN) + _varint(len(entry_bytes)) + entry_bytes)
            if view is not None:
                raw[(number, key)] = view
            else:
                raw.pop((number, key), None)  # a later entry without raw_data replaces an earlier one
        elif wire == _LEN and number in tensor_fields and number not in singular_seen:
            singular_seen.add(number)
            meta, view = _split_tensor(buf[payload:end])
            rest.append(_varint(number << 3 | _LEN) + _varint(len(meta)) + meta)
            if view is not None:
                raw[(number, None)] = view
        elif wire == _LEN and number in tensor_fields:
            # A singular message split over several occurrences must be merged: leave it to protobuf.
            return Parsed(cls.FromString(data))
        else:
            rest.append(buf[start:end])
    return Parsed(cls.FromString(b"".join(rest)), raw)


def _entry(key: str, tensor: bytes) -> bytes:
    k = key.encode()
    return _varint(1 << 3 | _LEN) + _varint(len(k)) + k + _varint(2 << 3 | _LEN) + _varint(len(tensor)) + tensor



# Below this many bytes the protobuf runtime (C) is faster than walking the framing in Python.
DETACH_BYTES = 64 * 1024


@dataclass(frozen=True)
class Outgoing:
    """A message to send plus tensors to append to it without copying them first."""

    message: Message
    detached: Sequence[Detached] = ()


@dataclass(frozen=True)
class Encoded:
    """A message already encoded, sent as it is (a reply assembled from cached parts): it stands in for an
    :class:`Outgoing` with nothing detached, and ``message`` decodes it for whoever needs its fields."""

    data: bytes
    cls: type[Message]
    detached: Sequence[Detached] = ()

    @property
    def message(self) -> Any:
        """The message, decoded."""
        return self.cls.FromString(self.data)

    @property
    def reply_bytes(self) -> int:
        """Its encoded size."""
        return len(self.data)


def serialize_message(outgoing: Outgoing | Encoded | Message) -> bytes:
    """A gRPC serializer for plain messages, :class:`Outgoing` and :class:`Encoded` ones."""
    if isinstance(outgoing, Outgoing):
        return serialize(outgoing.message, outgoing.detached)
    if isinstance(outgoing, Encoded):
        return outgoing.data
    return outgoing.SerializeToString()


def _number(cls: type[Message], name: str) -> int:
    return int(cls.DESCRIPTOR.fields_by_name[name].number)


def _parser(cls: type[M], maps: Sequence[str] = (), singles: Sequence[str] = ()) -> Any:
    map_numbers = tuple(_number(cls, n) for n in maps)
    single_numbers = tuple(_number(cls, n) for n in singles)

    def parse_message(data: bytes, keep: bool = False) -> Parsed:
        try:
            parsed = Parsed(cls.FromString(data)) if len(data) < DETACH_BYTES else parse(
                cls, data, map_numbers, single_numbers)
        except (DecodeError, UnicodeDecodeError) as exc:
            parsed = Parsed(cls(), error=f"not a valid {cls.DESCRIPTOR.full_name} encoding ({exc})")
        parsed.size = len(data)
        if keep:
            parsed.data = data
        return parsed

    parse_message.__doc__ = (f"A gRPC deserializer for {cls.__name__} that leaves large raw_data in place (``keep``: "
                             "and keeps the bytes received, as ``Parsed.data``).")
    return parse_message


# Field numbers of the tensors this codec keeps out of the protobuf runtime: the keys of Parsed.raw
# (with a map key for inputs and gradients, None for the singular ones) and of Detached.field.
INPUTS = _number(pb.ComputeRequest, "inputs")  # the same number in GradientRequest
GRAD_OUTPUT = _number(pb.GradientRequest, "grad_output")
LOSS = _number(pb.ComputeResponse, "loss")  # the same number in GradientResponse
GRADIENTS = _number(pb.GradientResponse, "gradients")
HESSIANS = _number(pb.GradientResponse, "hessians")
if (_number(pb.GradientRequest, "inputs"), _number(pb.GradientResponse, "loss")) != (INPUTS, LOSS):
    raise ImportError("Compute and Gradient messages must number inputs and loss alike")


def has_content(tensor: Any) -> bool:
    """Whether a Tensor message carries its elements itself (raw bytes, a typed list or a shm region)."""
    return bool(tensor.raw_data or tensor.float_val or tensor.double_val or tensor.int64_val or tensor.bool_val
                or tensor.HasField("shm"))


parse_list_request = _parser(pb.ListLossesRequest)
parse_compute_request = _parser(pb.ComputeRequest, maps=("inputs",))
parse_gradient_request = _parser(pb.GradientRequest, maps=("inputs",), singles=("grad_output",))
parse_compute_response = _parser(pb.ComputeResponse, singles=("loss",))
parse_gradient_response = _parser(pb.GradientResponse, maps=("gradients", "hessians"), singles=("loss",))


# --- Streams (ComputeStream / GradientStream): a header message, then chunks of tensor bytes. ---

_PART_CHUNK = _number(pb.StreamRequest, "chunk")  # the same number in StreamResponse
if _number(pb.StreamResponse, "chunk") != _PART_CHUNK:  # one parser serves both directions
    raise ImportError("StreamRequest and StreamResponse must number their chunk field alike")


@dataclass(frozen=True)
class Chunk:
    """A received TensorChunk, its data left in the received bytes."""

    tensor: str
    offset: int
    data: memoryview


def chunk_message(tensor: str, offset: int, data: Any) -> bytes:
    """A StreamRequest/StreamResponse holding one TensorChunk; ``data`` is copied once, into the result."""
    name = tensor.encode()
    view = memoryview(data).cast("B") if memoryview(data).nbytes else b""
    body_head = (_varint(1 << 3 | _LEN) + _varint(len(name)) + name + _varint(2 << 3) + _varint(offset)
                 + _varint(3 << 3 | _LEN) + _varint(len(view)))
    length = len(body_head) + len(view)
    return b"".join([_varint(_PART_CHUNK << 3 | _LEN) + _varint(length) + body_head, view])


def _stream_parser(cls: type[M]) -> Any:
    def parse_part(data: bytes) -> Parsed | Chunk:
        try:
            buf = memoryview(data).toreadonly()
            fields = list(_fields(buf))
            if len(fields) == 1 and fields[0][0] == _PART_CHUNK and fields[0][1] == _LEN:
                _, _, _, payload, end = fields[0]
                tensor, offset, view = "", 0, buf[0:0]
                body = buf[payload:end]
                for number, wire_type, _, p, e in _fields(body):
                    if number == 1 and wire_type == _LEN:
                        tensor = bytes(body[p:e]).decode("utf-8")
                    elif number == 2 and wire_type == 0:
                        offset = _read_varint(body, p)[0]
                    elif number == 3 and wire_type == _LEN:
                        view = body[p:e]
                return Chunk(tensor, offset, view)
            return Parsed(cls.FromString(data), size=len(data))
        except (DecodeError, UnicodeDecodeError) as exc:
            return Parsed(cls(), error=f"not a valid {cls.DESCRIPTOR.full_name} encoding ({exc})")

    parse_part.__doc__ = f"A gRPC deserializer for {cls.__name__}: chunks stay in the received bytes."
    return parse_part


parse_stream_request = _stream_parser(pb.StreamRequest)
parse_stream_response = _stream_parser(pb.StreamResponse)


def serialize_stream_part(part: bytes | Message) -> bytes:
    """A gRPC serializer for stream parts: messages, or chunks already encoded by :func:`chunk_message`."""
    return part if isinstance(part, bytes) else part.SerializeToString()
