"""A :class:`LossSpec` as the ``LossInfo`` message that ListLosses returns."""

from __future__ import annotations

from typing import Any

from lossd.losses import LossSpec, Param, ParamType
from lossd.server.codec import TORCH_TO_WIRE
from lossd.v1 import loss_service_pb2 as pb

_PARAM_TYPES = {
    ParamType.FLOAT: pb.PARAM_TYPE_FLOAT,
    ParamType.INT: pb.PARAM_TYPE_INT,
    ParamType.BOOL: pb.PARAM_TYPE_BOOL,
    ParamType.STRING: pb.PARAM_TYPE_STRING,
    ParamType.FLOAT_LIST: pb.PARAM_TYPE_FLOAT_LIST,
    ParamType.STRING_LIST: pb.PARAM_TYPE_STRING_LIST,
}


def param_value(value: Any) -> pb.ParamValue:
    """A Python parameter value as a ``ParamValue``."""
    if value is None:
        return pb.ParamValue(none=0)
    if isinstance(value, bool):
        return pb.ParamValue(flag=value)
    if isinstance(value, int):
        return pb.ParamValue(integer=value)
    if isinstance(value, float):
        return pb.ParamValue(number=value)
    if isinstance(value, str):
        return pb.ParamValue(text=value)
    if all(isinstance(v, str) for v in value):
        return pb.ParamValue(texts=pb.StringList(values=list(value)))
    return pb.ParamValue(numbers=pb.DoubleList(values=[float(v) for v in value]))


def _param_info(p: Param) -> pb.ParamInfo:
    info = pb.ParamInfo(
        name=p.name, type=_PARAM_TYPES[p.type], default=param_value(p.default),
        exclusive_minimum=p.exclusive_minimum, exclusive_maximum=p.exclusive_maximum,
        choices=list(p.choices), range=p.range_text, description=p.description, nullable=p.nullable,
    )
    if p.minimum is not None:
        info.minimum = p.minimum
    if p.maximum is not None:
        info.maximum = p.maximum
    return info


def loss_info(spec: LossSpec) -> pb.LossInfo:
    """Everything a client needs to build a valid request for ``spec``."""
    return pb.LossInfo(
        name=spec.name,
        aliases=list(spec.aliases),
        summary=spec.summary,
        formula=spec.formula,
        inputs=[
            pb.RoleInfo(name=r.name, dtypes=[TORCH_TO_WIRE[d] for d in r.dtypes], shape=r.shape,
                        required=r.required, differentiable=r.differentiable, description=r.description)
            for r in spec.roles
        ],
        params=[_param_info(p) for p in spec.params],
        reductions=list(spec.reductions),
        default_reduction=spec.default_reduction,
        default_wrt=list(spec.default_wrt),
        notes=spec.notes,
        row_wise=spec.row_wise,
        hessian=spec.hessian is not None,
        hessian_roles=list(spec.hessian_roles_offered),
        hessian_vanishes=spec.hessian_vanishes,
        presets=[
            pb.AliasPreset(alias=alias, params={k: param_value(v) for k, v in preset.items()})
            for alias, preset in spec.presets.items()
        ],
    )
