from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[DType]
    DTYPE_FLOAT32: _ClassVar[DType]
    DTYPE_FLOAT64: _ClassVar[DType]
    DTYPE_FLOAT16: _ClassVar[DType]
    DTYPE_BFLOAT16: _ClassVar[DType]
    DTYPE_INT64: _ClassVar[DType]
    DTYPE_INT32: _ClassVar[DType]
    DTYPE_BOOL: _ClassVar[DType]
    DTYPE_UINT8: _ClassVar[DType]

class Encoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENCODING_UNSPECIFIED: _ClassVar[Encoding]
    ENCODING_RAW: _ClassVar[Encoding]
    ENCODING_VALUES: _ClassVar[Encoding]

class ParamType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PARAM_TYPE_UNSPECIFIED: _ClassVar[ParamType]
    PARAM_TYPE_FLOAT: _ClassVar[ParamType]
    PARAM_TYPE_INT: _ClassVar[ParamType]
    PARAM_TYPE_BOOL: _ClassVar[ParamType]
    PARAM_TYPE_STRING: _ClassVar[ParamType]
    PARAM_TYPE_FLOAT_LIST: _ClassVar[ParamType]
    PARAM_TYPE_STRING_LIST: _ClassVar[ParamType]
DTYPE_UNSPECIFIED: DType
DTYPE_FLOAT32: DType
DTYPE_FLOAT64: DType
DTYPE_FLOAT16: DType
DTYPE_BFLOAT16: DType
DTYPE_INT64: DType
DTYPE_INT32: DType
DTYPE_BOOL: DType
DTYPE_UINT8: DType
ENCODING_UNSPECIFIED: Encoding
ENCODING_RAW: Encoding
ENCODING_VALUES: Encoding
PARAM_TYPE_UNSPECIFIED: ParamType
PARAM_TYPE_FLOAT: ParamType
PARAM_TYPE_INT: ParamType
PARAM_TYPE_BOOL: ParamType
PARAM_TYPE_STRING: ParamType
PARAM_TYPE_FLOAT_LIST: ParamType
PARAM_TYPE_STRING_LIST: ParamType

class Tensor(_message.Message):
    __slots__ = ("dtype", "shape", "raw_data", "float_val", "double_val", "int64_val", "bool_val", "shm")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    RAW_DATA_FIELD_NUMBER: _ClassVar[int]
    FLOAT_VAL_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_VAL_FIELD_NUMBER: _ClassVar[int]
    INT64_VAL_FIELD_NUMBER: _ClassVar[int]
    BOOL_VAL_FIELD_NUMBER: _ClassVar[int]
    SHM_FIELD_NUMBER: _ClassVar[int]
    dtype: DType
    shape: _containers.RepeatedScalarFieldContainer[int]
    raw_data: bytes
    float_val: _containers.RepeatedScalarFieldContainer[float]
    double_val: _containers.RepeatedScalarFieldContainer[float]
    int64_val: _containers.RepeatedScalarFieldContainer[int]
    bool_val: _containers.RepeatedScalarFieldContainer[bool]
    shm: SharedRegion
    def __init__(self, dtype: _Optional[_Union[DType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., raw_data: _Optional[bytes] = ..., float_val: _Optional[_Iterable[float]] = ..., double_val: _Optional[_Iterable[float]] = ..., int64_val: _Optional[_Iterable[int]] = ..., bool_val: _Optional[_Iterable[bool]] = ..., shm: _Optional[_Union[SharedRegion, _Mapping]] = ...) -> None: ...

class SharedRegion(_message.Message):
    __slots__ = ("name", "offset", "size")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    name: str
    offset: int
    size: int
    def __init__(self, name: _Optional[str] = ..., offset: _Optional[int] = ..., size: _Optional[int] = ...) -> None: ...

class DoubleList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class StringList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, values: _Optional[_Iterable[str]] = ...) -> None: ...

class ParamValue(_message.Message):
    __slots__ = ("number", "integer", "text", "flag", "numbers", "none", "texts")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    INTEGER_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FLAG_FIELD_NUMBER: _ClassVar[int]
    NUMBERS_FIELD_NUMBER: _ClassVar[int]
    NONE_FIELD_NUMBER: _ClassVar[int]
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    number: float
    integer: int
    text: str
    flag: bool
    numbers: DoubleList
    none: _struct_pb2.NullValue
    texts: StringList
    def __init__(self, number: _Optional[float] = ..., integer: _Optional[int] = ..., text: _Optional[str] = ..., flag: bool = ..., numbers: _Optional[_Union[DoubleList, _Mapping]] = ..., none: _Optional[_Union[_struct_pb2.NullValue, str]] = ..., texts: _Optional[_Union[StringList, _Mapping]] = ...) -> None: ...

class ComputeRequest(_message.Message):
    __slots__ = ("loss", "inputs", "params", "reduction", "response_encoding", "output_shm")
    class InputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Tensor
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ParamValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ParamValue, _Mapping]] = ...) -> None: ...
    class OutputShmEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: SharedRegion
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[SharedRegion, _Mapping]] = ...) -> None: ...
    LOSS_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    REDUCTION_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_ENCODING_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_SHM_FIELD_NUMBER: _ClassVar[int]
    loss: str
    inputs: _containers.MessageMap[str, Tensor]
    params: _containers.MessageMap[str, ParamValue]
    reduction: str
    response_encoding: Encoding
    output_shm: _containers.MessageMap[str, SharedRegion]
    def __init__(self, loss: _Optional[str] = ..., inputs: _Optional[_Mapping[str, Tensor]] = ..., params: _Optional[_Mapping[str, ParamValue]] = ..., reduction: _Optional[str] = ..., response_encoding: _Optional[_Union[Encoding, str]] = ..., output_shm: _Optional[_Mapping[str, SharedRegion]] = ...) -> None: ...

class ComputeResponse(_message.Message):
    __slots__ = ("loss", "loss_name", "reduction", "device")
    LOSS_FIELD_NUMBER: _ClassVar[int]
    LOSS_NAME_FIELD_NUMBER: _ClassVar[int]
    REDUCTION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    loss: Tensor
    loss_name: str
    reduction: str
    device: str
    def __init__(self, loss: _Optional[_Union[Tensor, _Mapping]] = ..., loss_name: _Optional[str] = ..., reduction: _Optional[str] = ..., device: _Optional[str] = ...) -> None: ...

class GradientRequest(_message.Message):
    __slots__ = ("loss", "inputs", "params", "reduction", "response_encoding", "wrt", "grad_output", "output_shm", "hessian")
    class InputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Tensor
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ParamValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ParamValue, _Mapping]] = ...) -> None: ...
    class OutputShmEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: SharedRegion
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[SharedRegion, _Mapping]] = ...) -> None: ...
    LOSS_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    REDUCTION_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_ENCODING_FIELD_NUMBER: _ClassVar[int]
    WRT_FIELD_NUMBER: _ClassVar[int]
    GRAD_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_SHM_FIELD_NUMBER: _ClassVar[int]
    HESSIAN_FIELD_NUMBER: _ClassVar[int]
    loss: str
    inputs: _containers.MessageMap[str, Tensor]
    params: _containers.MessageMap[str, ParamValue]
    reduction: str
    response_encoding: Encoding
    wrt: _containers.RepeatedScalarFieldContainer[str]
    grad_output: Tensor
    output_shm: _containers.MessageMap[str, SharedRegion]
    hessian: bool
    def __init__(self, loss: _Optional[str] = ..., inputs: _Optional[_Mapping[str, Tensor]] = ..., params: _Optional[_Mapping[str, ParamValue]] = ..., reduction: _Optional[str] = ..., response_encoding: _Optional[_Union[Encoding, str]] = ..., wrt: _Optional[_Iterable[str]] = ..., grad_output: _Optional[_Union[Tensor, _Mapping]] = ..., output_shm: _Optional[_Mapping[str, SharedRegion]] = ..., hessian: bool = ...) -> None: ...

class GradientResponse(_message.Message):
    __slots__ = ("loss", "gradients", "loss_name", "reduction", "device", "hessians")
    class GradientsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Tensor
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...
    class HessiansEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Tensor
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...
    LOSS_FIELD_NUMBER: _ClassVar[int]
    GRADIENTS_FIELD_NUMBER: _ClassVar[int]
    LOSS_NAME_FIELD_NUMBER: _ClassVar[int]
    REDUCTION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    HESSIANS_FIELD_NUMBER: _ClassVar[int]
    loss: Tensor
    gradients: _containers.MessageMap[str, Tensor]
    loss_name: str
    reduction: str
    device: str
    hessians: _containers.MessageMap[str, Tensor]
    def __init__(self, loss: _Optional[_Union[Tensor, _Mapping]] = ..., gradients: _Optional[_Mapping[str, Tensor]] = ..., loss_name: _Optional[str] = ..., reduction: _Optional[str] = ..., device: _Optional[str] = ..., hessians: _Optional[_Mapping[str, Tensor]] = ...) -> None: ...

class TensorChunk(_message.Message):
    __slots__ = ("tensor", "offset", "data")
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    tensor: str
    offset: int
    data: bytes
    def __init__(self, tensor: _Optional[str] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class StreamRequest(_message.Message):
    __slots__ = ("compute", "gradient", "chunk")
    COMPUTE_FIELD_NUMBER: _ClassVar[int]
    GRADIENT_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    compute: ComputeRequest
    gradient: GradientRequest
    chunk: TensorChunk
    def __init__(self, compute: _Optional[_Union[ComputeRequest, _Mapping]] = ..., gradient: _Optional[_Union[GradientRequest, _Mapping]] = ..., chunk: _Optional[_Union[TensorChunk, _Mapping]] = ...) -> None: ...

class StreamResponse(_message.Message):
    __slots__ = ("compute", "gradient", "chunk")
    COMPUTE_FIELD_NUMBER: _ClassVar[int]
    GRADIENT_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    compute: ComputeResponse
    gradient: GradientResponse
    chunk: TensorChunk
    def __init__(self, compute: _Optional[_Union[ComputeResponse, _Mapping]] = ..., gradient: _Optional[_Union[GradientResponse, _Mapping]] = ..., chunk: _Optional[_Union[TensorChunk, _Mapping]] = ...) -> None: ...

class PipelineRequest(_message.Message):
    __slots__ = ("items", "cancel")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[PipelineItem]
    cancel: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, items: _Optional[_Iterable[_Union[PipelineItem, _Mapping]]] = ..., cancel: _Optional[_Iterable[int]] = ...) -> None: ...

class PipelineItem(_message.Message):
    __slots__ = ("id", "compute", "gradient", "timeout_ms")
    ID_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_FIELD_NUMBER: _ClassVar[int]
    GRADIENT_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    id: int
    compute: ComputeRequest
    gradient: GradientRequest
    timeout_ms: int
    def __init__(self, id: _Optional[int] = ..., compute: _Optional[_Union[ComputeRequest, _Mapping]] = ..., gradient: _Optional[_Union[GradientRequest, _Mapping]] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class PipelineResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[PipelineResult]
    def __init__(self, results: _Optional[_Iterable[_Union[PipelineResult, _Mapping]]] = ...) -> None: ...

class PipelineResult(_message.Message):
    __slots__ = ("id", "compute", "gradient", "error", "request_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_FIELD_NUMBER: _ClassVar[int]
    GRADIENT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    compute: ComputeResponse
    gradient: GradientResponse
    error: bytes
    request_id: str
    def __init__(self, id: _Optional[int] = ..., compute: _Optional[_Union[ComputeResponse, _Mapping]] = ..., gradient: _Optional[_Union[GradientResponse, _Mapping]] = ..., error: _Optional[bytes] = ..., request_id: _Optional[str] = ...) -> None: ...

class ListLossesRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListLossesResponse(_message.Message):
    __slots__ = ("losses", "server")
    LOSSES_FIELD_NUMBER: _ClassVar[int]
    SERVER_FIELD_NUMBER: _ClassVar[int]
    losses: _containers.RepeatedCompositeFieldContainer[LossInfo]
    server: ServerInfo
    def __init__(self, losses: _Optional[_Iterable[_Union[LossInfo, _Mapping]]] = ..., server: _Optional[_Union[ServerInfo, _Mapping]] = ...) -> None: ...

class ServerInfo(_message.Message):
    __slots__ = ("version", "device", "gpu_min_elements", "max_message_bytes", "shm_prefix")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    GPU_MIN_ELEMENTS_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHM_PREFIX_FIELD_NUMBER: _ClassVar[int]
    version: str
    device: str
    gpu_min_elements: int
    max_message_bytes: int
    shm_prefix: str
    def __init__(self, version: _Optional[str] = ..., device: _Optional[str] = ..., gpu_min_elements: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., shm_prefix: _Optional[str] = ...) -> None: ...

class LossInfo(_message.Message):
    __slots__ = ("name", "aliases", "summary", "formula", "inputs", "params", "reductions", "default_reduction", "default_wrt", "notes", "presets", "row_wise", "hessian", "hessian_roles", "hessian_vanishes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    FORMULA_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    REDUCTIONS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_REDUCTION_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_WRT_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    PRESETS_FIELD_NUMBER: _ClassVar[int]
    ROW_WISE_FIELD_NUMBER: _ClassVar[int]
    HESSIAN_FIELD_NUMBER: _ClassVar[int]
    HESSIAN_ROLES_FIELD_NUMBER: _ClassVar[int]
    HESSIAN_VANISHES_FIELD_NUMBER: _ClassVar[int]
    name: str
    aliases: _containers.RepeatedScalarFieldContainer[str]
    summary: str
    formula: str
    inputs: _containers.RepeatedCompositeFieldContainer[RoleInfo]
    params: _containers.RepeatedCompositeFieldContainer[ParamInfo]
    reductions: _containers.RepeatedScalarFieldContainer[str]
    default_reduction: str
    default_wrt: _containers.RepeatedScalarFieldContainer[str]
    notes: str
    presets: _containers.RepeatedCompositeFieldContainer[AliasPreset]
    row_wise: bool
    hessian: bool
    hessian_roles: _containers.RepeatedScalarFieldContainer[str]
    hessian_vanishes: bool
    def __init__(self, name: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ..., summary: _Optional[str] = ..., formula: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[RoleInfo, _Mapping]]] = ..., params: _Optional[_Iterable[_Union[ParamInfo, _Mapping]]] = ..., reductions: _Optional[_Iterable[str]] = ..., default_reduction: _Optional[str] = ..., default_wrt: _Optional[_Iterable[str]] = ..., notes: _Optional[str] = ..., presets: _Optional[_Iterable[_Union[AliasPreset, _Mapping]]] = ..., row_wise: bool = ..., hessian: bool = ..., hessian_roles: _Optional[_Iterable[str]] = ..., hessian_vanishes: bool = ...) -> None: ...

class AliasPreset(_message.Message):
    __slots__ = ("alias", "params")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ParamValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ParamValue, _Mapping]] = ...) -> None: ...
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    alias: str
    params: _containers.MessageMap[str, ParamValue]
    def __init__(self, alias: _Optional[str] = ..., params: _Optional[_Mapping[str, ParamValue]] = ...) -> None: ...

class RoleInfo(_message.Message):
    __slots__ = ("name", "dtypes", "shape", "required", "differentiable", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DTYPES_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    DIFFERENTIABLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    dtypes: _containers.RepeatedScalarFieldContainer[DType]
    shape: str
    required: bool
    differentiable: bool
    description: str
    def __init__(self, name: _Optional[str] = ..., dtypes: _Optional[_Iterable[_Union[DType, str]]] = ..., shape: _Optional[str] = ..., required: bool = ..., differentiable: bool = ..., description: _Optional[str] = ...) -> None: ...

class ParamInfo(_message.Message):
    __slots__ = ("name", "type", "default", "minimum", "maximum", "exclusive_minimum", "exclusive_maximum", "choices", "range", "description", "nullable")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_FIELD_NUMBER: _ClassVar[int]
    MINIMUM_FIELD_NUMBER: _ClassVar[int]
    MAXIMUM_FIELD_NUMBER: _ClassVar[int]
    EXCLUSIVE_MINIMUM_FIELD_NUMBER: _ClassVar[int]
    EXCLUSIVE_MAXIMUM_FIELD_NUMBER: _ClassVar[int]
    CHOICES_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    NULLABLE_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: ParamType
    default: ParamValue
    minimum: float
    maximum: float
    exclusive_minimum: bool
    exclusive_maximum: bool
    choices: _containers.RepeatedScalarFieldContainer[str]
    range: str
    description: str
    nullable: bool
    def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[ParamType, str]] = ..., default: _Optional[_Union[ParamValue, _Mapping]] = ..., minimum: _Optional[float] = ..., maximum: _Optional[float] = ..., exclusive_minimum: bool = ..., exclusive_maximum: bool = ..., choices: _Optional[_Iterable[str]] = ..., range: _Optional[str] = ..., description: _Optional[str] = ..., nullable: bool = ...) -> None: ...
