"""Checks a whole request against a :class:`LossSpec` before anything runs.

Order matters: names, dtypes and parameter types are checked first and reported together (a client
fixing its request wants every such mistake at once); shapes and values are checked next by the
loss's own ``check``, which may assume well-typed inputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from lossd.losses.checks import field, shape_text
from lossd.losses.errors import FieldViolation, InvalidRequestError
from lossd.losses.spec import Kind, LossSpec, Param, ParamType


@dataclass(frozen=True)
class Prepared:
    """A request that passed validation: tensors (still on the CPU), full params, reduction, wrt."""

    spec: LossSpec
    tensors: dict[str, torch.Tensor]
    params: dict[str, Any]
    reduction: str
    wrt: tuple[str, ...] = ()
    grad_output: torch.Tensor | None = None
    hessian: bool = False  # also the Hessian diagonal for each role in wrt

    @property
    def output_dtype(self) -> torch.dtype:
        """The dtype answers are given in: that of the first floating-point role sent."""
        for role in self.spec.roles:
            t = self.tensors.get(role.name)
            if t is not None and t.is_floating_point():
                return t.dtype
        return torch.float32


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _check_roles(spec: LossSpec, tensors: Mapping[str, torch.Tensor], out: list[FieldViolation]) -> None:
    for name in tensors:
        if spec.role(name) is not None:
            continue
        if spec.param(name) is not None:
            out.append(FieldViolation(field(name), f"{name!r} is a parameter of {spec.name}; send it in params"))
        else:
            expected = ", ".join(r.name for r in spec.roles)
            out.append(FieldViolation(field(name), f"unknown input role for {spec.name}; expected one of: {expected}"))
    float_dtype: tuple[str, torch.dtype] | None = None
    for role in spec.roles:
        t = tensors.get(role.name)
        if t is None:
            if role.required:
                out.append(FieldViolation(field(role.name), f"missing; required by {spec.name}: {role.shape}"))
            continue
        if t.dtype not in role.dtypes:
            accepted = ", ".join(_dtype_name(d) for d in role.dtypes)
            message = f"dtype {_dtype_name(t.dtype)} not accepted; expected one of: {accepted}"
            out.append(FieldViolation(field(role.name), message))
            continue
        if t.is_floating_point():
            # Mixed float dtypes would be promoted silently by torch; make the client choose.
            if float_dtype is None:
                float_dtype = (role.name, t.dtype)
            elif t.dtype != float_dtype[1]:
                out.append(FieldViolation(
                    field(role.name),
                    f"dtype {_dtype_name(t.dtype)} differs from {float_dtype[0]}'s {_dtype_name(float_dtype[1])}; "
                    "send every float tensor of a request in one dtype",
                ))


_INVALID = object()  # _coerce_param's answer after recording a violation (None is a valid value)


def _coerce_param(param: Param, value: Any, where: str, out: list[FieldViolation]) -> Any:
    """The value converted to the parameter's type, or _INVALID after recording a violation."""
    kind = param.type
    if value is None:
        if param.nullable:
            return None
        out.append(FieldViolation(where, f"none is not accepted; expected a {kind.value} in {param.range_text}"))
        return _INVALID
    if kind is ParamType.STRING_LIST:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            out.append(FieldViolation(where, f"expected a list of strings, got {type(value).__name__}"))
            return _INVALID
        bad = [v for v in value if param.choices and v not in param.choices]
        if bad:
            out.append(FieldViolation(where, f"{bad[0]!r} is not one of: {', '.join(param.choices)}"))
            return _INVALID
        return list(value)
    if kind is ParamType.BOOL:
        if isinstance(value, bool):
            return value
        out.append(FieldViolation(where, f"expected a bool, got {type(value).__name__}"))
        return _INVALID
    if kind is ParamType.STRING:
        if not isinstance(value, str):
            out.append(FieldViolation(where, f"expected a string, got {type(value).__name__}"))
            return _INVALID
        if param.choices and value not in param.choices:
            out.append(FieldViolation(where, f"{value!r} is not one of: {', '.join(param.choices)}"))
            return _INVALID
        return value
    if kind is ParamType.FLOAT_LIST:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]  # one number is a list of one (categorical_focal's alpha for every class)
        if not isinstance(value, (list, tuple)) or isinstance(value, str):
            out.append(FieldViolation(where, f"expected a list of numbers, got {type(value).__name__}"))
            return _INVALID
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            out.append(FieldViolation(where, "expected a list of numbers"))
            return _INVALID
        items = [float(v) for v in value]
        for i, v in enumerate(items):
            if not param.admits(v):
                out.append(FieldViolation(f"{where}[{i}]", f"{v:g} is outside the valid range {param.range_text}"))
                return _INVALID
        return items
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        out.append(FieldViolation(where, f"expected a number, got {type(value).__name__}"))
        return _INVALID
    if kind is ParamType.INT:
        if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
            out.append(FieldViolation(where, f"expected an integer, got {value!r}"))
            return _INVALID
        value = int(value)
    else:
        value = float(value)
    if not param.admits(float(value)):
        out.append(FieldViolation(where, f"{value:g} is outside the valid range {param.range_text}"))
        return _INVALID
    return value


def _check_params(spec: LossSpec, params: Mapping[str, Any], preset: Mapping[str, Any],
                  out: list[FieldViolation]) -> dict[str, Any]:
    full = {p.name: p.default for p in spec.params}
    full.update(preset)
    for name, value in params.items():
        where = f"params[{name}]"
        param = spec.param(name)
        if param is None:
            if spec.role(name) is not None:
                message = f"{name!r} is an input role of {spec.name}; send it as a tensor in inputs"
                out.append(FieldViolation(where, message))
            else:
                expected = ", ".join(p.name for p in spec.params) or "none"
                out.append(FieldViolation(where, f"unknown parameter for {spec.name}; expected: {expected}"))
            continue
        coerced = _coerce_param(param, value, where, out)
        if coerced is not _INVALID:
            full[name] = coerced
    return full


def _check_wrt(spec: LossSpec, tensors: Mapping[str, torch.Tensor], wrt: Sequence[str],
               out: list[FieldViolation]) -> tuple[str, ...]:
    chosen = tuple(wrt) or spec.default_wrt
    for i, name in enumerate(wrt):
        role = spec.role(name)
        where = f"wrt[{i}]"
        if role is None:
            out.append(FieldViolation(where, f"{name!r} is not an input role of {spec.name}"))
        elif not role.differentiable:
            allowed = ", ".join(spec.differentiable_roles)
            out.append(FieldViolation(where, f"{spec.name} is not differentiable with respect to {name!r}; "
                                             f"differentiable roles: {allowed}"))
        elif name not in tensors:
            out.append(FieldViolation(where, f"{name!r} was not sent in inputs"))
        elif not tensors[name].is_floating_point():
            out.append(FieldViolation(where, f"{name!r} holds {_dtype_name(tensors[name].dtype)}; "
                                             "only float tensors have gradients"))
        elif name in wrt[:i]:
            out.append(FieldViolation(where, f"{name!r} is listed twice"))
    return chosen


def _check_hessian(spec: LossSpec, wrt: Sequence[str] | None, chosen: tuple[str, ...],
                   out: list[FieldViolation]) -> None:
    if wrt is None:
        out.append(FieldViolation("hessian", "only a Gradient request returns Hessian diagonals"))
    elif spec.hessian is None:
        out.append(FieldViolation("hessian", f"{spec.name} offers no Hessian diagonal: its rows are coupled (a "
                                             f"row's loss depends on the others), so the diagonal is no per-row "
                                             f"quantity; ListLosses says which losses offer one"))
    else:
        offered = spec.hessian_roles_offered
        for i, name in enumerate(chosen):
            if name not in offered:
                out.append(FieldViolation(f"wrt[{i}]" if wrt else "wrt", f"{spec.name} offers a Hessian diagonal "
                                                                         f"only for {', '.join(offered)}"))


def validate(
    spec: LossSpec,
    tensors: Mapping[str, torch.Tensor],
    params: Mapping[str, Any],
    reduction: str = "",
    *,
    wrt: Sequence[str] | None = None,
    grad_output: torch.Tensor | None = None,
    preset: Mapping[str, Any] | None = None,
    hessian: bool = False,
) -> Prepared:
    """Check a request against ``spec``; ``wrt=None`` means a Compute call (no gradient). ``hessian`` asks for
    the Hessian diagonals too (a Gradient call, on a loss and roles that offer them).

    ``preset`` holds the parameters the requested alias presets; the request's own ones override it.

    Raises :class:`InvalidRequestError` listing every violation found.
    """
    out: list[FieldViolation] = []
    _check_roles(spec, tensors, out)
    full = _check_params(spec, params, preset or {}, out)
    chosen = reduction or spec.default_reduction
    if chosen not in spec.reductions:
        out.append(FieldViolation("reduction", f"{chosen!r} is not offered by {spec.name}; "
                                               f"expected one of: {', '.join(spec.reductions)}"))
    chosen_wrt = _check_wrt(spec, tensors, wrt, out) if wrt is not None else ()
    if grad_output is not None and wrt is None:
        out.append(FieldViolation("grad_output", "only a Gradient request takes grad_output"))
    if hessian:
        _check_hessian(spec, wrt, chosen_wrt, out)
    if out:
        raise InvalidRequestError(out)
    spec.check(tensors, full)
    prepared = Prepared(spec, dict(tensors), full, chosen, chosen_wrt, grad_output, hessian)
    if grad_output is not None:
        _check_grad_output(prepared, grad_output)
    return prepared


def _check_grad_output(prepared: Prepared, grad_output: torch.Tensor) -> None:
    spec = prepared.spec
    expected = () if prepared.reduction != "none" else spec.unreduced_shape(prepared.tensors, prepared.params)
    problems: list[FieldViolation] = []
    if tuple(grad_output.shape) != tuple(expected):
        problems.append(FieldViolation("grad_output", f"shape {shape_text(grad_output.shape)} must equal the "
                                                      f"loss's shape {shape_text(expected)}"))
    if not grad_output.is_floating_point():
        message = f"dtype {_dtype_name(grad_output.dtype)}; expected a float dtype"
        problems.append(FieldViolation("grad_output", message))
    elif grad_output.dtype != prepared.output_dtype:
        problems.append(FieldViolation("grad_output", f"dtype {_dtype_name(grad_output.dtype)} differs from the "
                                                      f"inputs' {_dtype_name(prepared.output_dtype)}"))
    if problems:
        raise InvalidRequestError(problems)


__all__ = ["Kind", "Prepared", "validate"]
