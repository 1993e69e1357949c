"""Losses built from other losses: Kendall's uncertainty weighting and a weighted sum of registered losses."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch

from lossd.losses import checks
from lossd.losses.errors import FieldViolation, InvalidRequestError, invalid
from lossd.losses.reduction import reduce_loss
from lossd.losses.registry import Registry
from lossd.losses.spec import Kind, LossSpec, Param, Params, ParamType, Role, Tensors
from lossd.losses.validate import validate


def uncertainty_weighting(
    losses: torch.Tensor,
    log_vars: torch.Tensor,
    reduction: str = "sum",
    variant: str = "kendall",
    task_types: list[str] | None = None,
) -> torch.Tensor:
    """Multi-task loss weighted by learned homoscedastic uncertainty (Kendall, Gal & Cipolla 2018).

    With per-task losses L_t and s_t = log(sigma_t^2)::

        kendall:     l_t = 0.5 * exp(-s_t) * L_t + 0.5 * s_t    (regression tasks)
                     l_t =       exp(-s_t) * L_t + 0.5 * s_t    (tasks marked "classification")
        simplified:  l_t =       exp(-s_t) * L_t + s_t          (the common code form)

    "sum" (default) adds the tasks' terms: the total loss to minimise over both L and s.
    Shapes: losses (T,), log_vars (T,); output () or (T,) with reduction "none".
    """
    precision = torch.exp(-log_vars)
    if variant == "simplified":
        terms = precision * losses + log_vars
    else:
        scale = torch.full_like(losses, 0.5)
        if task_types is not None:
            classification = torch.tensor([t == "classification" for t in task_types], device=losses.device)
            scale = torch.where(classification, torch.ones_like(scale), scale)
        terms = scale * precision * losses + 0.5 * log_vars
    return reduce_loss(terms, reduction)


def _check_uncertainty(tensors: Tensors, params: Params) -> None:
    losses = tensors["losses"]
    if losses.dim() != 1:
        raise invalid("inputs[losses]", f"shape {checks.shape_text(losses.shape)}; expected (T,), one loss per task")
    checks.same_shape(tensors, "log_vars", "losses")
    types = params["task_types"]
    if types is not None:
        if len(types) != losses.shape[0]:
            raise invalid("params[task_types]", f"{len(types)} entries for {losses.shape[0]} tasks")
        if params["variant"] != "kendall":
            raise invalid("params[task_types]", "only the 'kendall' variant distinguishes task types")


UNCERTAINTY_WEIGHTING = LossSpec(
    name="uncertainty_weighting",
    row_wise=False,
    summary="Multi-task total loss weighted by learned task uncertainty (Kendall et al. 2018).",
    formula="sum_t 0.5*exp(-s_t)*L_t + 0.5*s_t (kendall; exp(-s_t)*L_t for classification tasks); "
    "simplified: sum_t exp(-s_t)*L_t + s_t",
    fn=uncertainty_weighting,
    roles=(
        Role("losses", (Kind.FLOAT,), "(T,)", "per-task scalar losses", differentiable=True),
        Role("log_vars", (Kind.FLOAT,), "(T,), same as losses", "s_t = log(sigma_t^2), learned", differentiable=True),
    ),
    check=_check_uncertainty,
    unreduced_shape=lambda tensors, params: tuple(tensors["losses"].shape),
    params=(
        Param("variant", ParamType.STRING, "kendall", "kendall (the paper's 1/2 factors) or simplified",
              choices=("kendall", "simplified")),
        Param("task_types", ParamType.STRING_LIST, None, "per task: regression (default) or classification; "
              "kendall variant only", choices=("regression", "classification"), nullable=True),
    ),
    aliases=("kendall", "homoscedastic_uncertainty", "UncertaintyWeightedLoss"),
    reductions=("sum", "mean", "none"),
    default_reduction="sum",
    default_wrt=("log_vars",),
    notes="Reduces with a sum over tasks by default (the paper's total), not a mean.",
    category="multi-task",
)

SPECS = (UNCERTAINTY_WEIGHTING,)

_SHARED_ROLES = ("input", "target", "weight")


def _split_param(name: str) -> tuple[str, str] | None:
    term, dot, param = name.rpartition(".")
    return (term, param) if dot and term and param else None


def weighted_sum_spec(registry: Registry) -> LossSpec:
    """The ``weighted_sum`` loss, whose terms are looked up in ``registry`` when a request arrives."""

    def resolve_param(name: str) -> Param | None:
        parts = _split_param(name)
        if parts is None or parts[0] not in registry:
            return None
        found = registry.get(parts[0]).param(parts[1])
        return dataclasses.replace(found, name=name) if found is not None else None

    def terms(params: Params) -> list[tuple[str, LossSpec, dict[str, Any]]]:
        """(name as listed, spec, that term's parameters: its alias preset, then "name.param" overrides)."""
        out = []
        for listed in params["losses"]:
            spec, preset = registry.resolve(listed)
            own = {key.rpartition(".")[2]: value for key, value in params.items()
                   if key.rpartition(".")[0] == listed}
            out.append((listed, spec, {**preset, **own}))
        return out

    def check(tensors: Tensors, params: Params) -> None:
        listed = params["losses"]
        if not listed:
            raise invalid("params[losses]", "empty; name at least one registered loss")
        problems = []
        for i, name in enumerate(listed):
            if name not in registry:
                problems.append(FieldViolation(f"params[losses][{i}]", f"no loss named {name!r}"))
            elif registry.get(name).name == "weighted_sum":
                problems.append(FieldViolation(f"params[losses][{i}]", "weighted_sum cannot contain itself"))
            elif listed.count(name) > 1:
                problems.append(FieldViolation(f"params[losses][{i}]", f"{name!r} is listed twice"))
        weights = params["weights"]
        if weights is not None and len(weights) != len(listed):
            problems.append(FieldViolation("params[weights]", f"{len(weights)} weights for {len(listed)} losses"))
        for key in params:
            parts = _split_param(key)
            if parts is not None and parts[0] not in listed:
                problems.append(FieldViolation(f"params[{key}]", f"{parts[0]!r} is not among the losses"))
        if problems:
            raise InvalidRequestError(problems)
        for name, spec, own in terms(params):
            foreign = [r.name for r in spec.roles if r.required and r.name not in _SHARED_ROLES]
            if foreign:
                raise invalid("params[losses]", f"{name!r} needs inputs {foreign}; weighted_sum passes only "
                              f"{', '.join(_SHARED_ROLES)}")
            subset = {k: v for k, v in tensors.items() if spec.role(k) is not None}
            try:
                validate(spec, subset, own)
            except InvalidRequestError as exc:
                raise InvalidRequestError(
                    [dataclasses.replace(v, description=f"for {name}: {v.description}") for v in exc.violations]
                ) from None

    def unreduced(tensors: Tensors, params: Params) -> tuple[int, ...]:
        shapes = {spec.unreduced_shape({k: v for k, v in tensors.items() if spec.role(k)}, _full(spec, own))
                  for _, spec, own in terms(params)}
        if len(shapes) != 1:
            raise invalid("reduction", f"'none' needs every term's unreduced loss in one shape; got {sorted(shapes)}")
        return shapes.pop()

    def weighted_sum(input: torch.Tensor, target: torch.Tensor | None = None, weight: torch.Tensor | None = None,
                     reduction: str = "mean", losses: list[str] | None = None, weights: list[float] | None = None,
                     **term_params: Any) -> torch.Tensor:
        """Weighted sum of registered losses over shared inputs: ``sum_k w_k * L_k(input, target, ...)``.

        Each term is reduced with ``reduction`` before weighting; its parameters are passed as
        ``"<loss>.<param>"`` (e.g. ``"huber.delta"``). The gradient is ``sum_k w_k * grad L_k``.
        Shapes: those of the terms; output () or, with "none", the terms' common unreduced shape.
        """
        shared = {"input": input, "target": target, "weight": weight}
        total: torch.Tensor | None = None
        listed = terms({"losses": losses or [], **term_params})
        for k, (_, spec, own) in enumerate(listed):
            subset = {name: t for name, t in shared.items() if t is not None and spec.role(name) is not None}
            value = spec.fn(**subset, **_full(spec, own), reduction=reduction)
            if total is not None and value.shape != total.shape:
                # Only "none" can get here: terms reduced to scalars always agree.
                raise invalid("reduction", f"'none' needs every term's unreduced loss in one shape; got "
                              f"{checks.shape_text(total.shape)} and {checks.shape_text(value.shape)}")
            scaled = value * (1.0 if weights is None else weights[k])
            total = scaled if total is None else total + scaled
        assert total is not None  # check() refused an empty list
        return total

    return LossSpec(
        name="weighted_sum",
        hessian="rows",
        summary="A weighted sum of registered losses over shared inputs (e.g. dice + bce).",
        formula="sum_k w_k * L_k(inputs; params_k), each L_k reduced before weighting",
        fn=weighted_sum,
        roles=(
            Role("input", (Kind.FLOAT,), "as the terms require", "prediction, shared by every term",
                 differentiable=True),
            Role("target", (Kind.FLOAT, Kind.INDEX), "as the terms require", "target, shared by every term",
                 required=False, differentiable=True),
            Role("weight", (Kind.FLOAT,), "as the terms require", "weight, passed to terms that take one",
                 required=False),
        ),
        check=check,
        unreduced_shape=unreduced,
        params=(
            Param("losses", ParamType.STRING_LIST, [], "the terms: registered loss names or aliases, each once"),
            Param("weights", ParamType.FLOAT_LIST, None, "one weight >= 0 per term; none means all 1",
                  minimum=0.0, nullable=True),
        ),
        aliases=("composite", "combined", "multi_loss"),
        notes="Term parameters travel as '<loss>.<param>' (e.g. 'huber.delta'); terms may use input, target "
        "and weight only.",
        category="multi-task",
        param_resolver=resolve_param,
    )


def _full(spec: LossSpec, own: Mapping[str, Any]) -> dict[str, Any]:
    return {**{p.name: p.default for p in spec.params}, **own}
