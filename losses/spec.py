"""The self-description of a loss: its input roles, parameters and reductions.

One frozen :class:`LossSpec` per loss drives validation, ``ListLosses``, error messages, the
README's loss table and the catalog-wide tests; the loss function itself is plain torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from typing import Any

import torch

Tensors = Mapping[str, torch.Tensor]
Params = Mapping[str, Any]


class Kind(str, Enum):
    """Families of element types a role accepts."""

    FLOAT = "float"  # float16, bfloat16, float32, float64; halves are computed in float32
    INDEX = "index"  # integer class indices: int64, int32, uint8; computed as int64
    BOOL = "bool"


KIND_DTYPES: dict[Kind, tuple[torch.dtype, ...]] = {
    Kind.FLOAT: (torch.float32, torch.float64, torch.float16, torch.bfloat16),
    Kind.INDEX: (torch.int64, torch.int32, torch.uint8),
    Kind.BOOL: (torch.bool,),
}


class ParamType(str, Enum):
    """The Python type a parameter takes."""

    FLOAT = "float"
    INT = "int"
    BOOL = "bool"
    STRING = "string"
    FLOAT_LIST = "float_list"
    STRING_LIST = "string_list"


@dataclass(frozen=True)
class Role:
    """A named input tensor of a loss.

    ``shape`` is the rule in words, as shown to users; the loss's ``check`` function enforces it.
    """

    name: str
    kinds: tuple[Kind, ...]
    shape: str
    description: str
    required: bool = True
    differentiable: bool = False

    @cached_property  # read for every tensor of every request
    def dtypes(self) -> tuple[torch.dtype, ...]:
        """Every torch dtype this role accepts."""
        return tuple(d for k in self.kinds for d in KIND_DTYPES[k])


@dataclass(frozen=True)
class Param:
    """A scalar (or list) parameter with its default and valid range (bounds inclusive unless said).

    ``nullable`` parameters also accept None (sent as ``ParamValue.none``); the default may be None.
    """

    name: str
    type: ParamType
    default: Any
    description: str
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    choices: tuple[str, ...] = ()
    nullable: bool = False

    @property
    def range_text(self) -> str:
        """The valid range in words: ``> 0``, ``[0, 1]``, ``any``, or the choices."""
        if self.choices:
            return " | ".join(self.choices)
        lo, hi = self.minimum, self.maximum
        if lo is not None and hi is not None:
            left = "(" if self.exclusive_minimum else "["
            right = ")" if self.exclusive_maximum else "]"
            return f"{left}{lo:g}, {hi:g}{right}"
        if lo is not None:
            return f"{'>' if self.exclusive_minimum else '>='} {lo:g}"
        if hi is not None:
            return f"{'<' if self.exclusive_maximum else '<='} {hi:g}"
        return "any"

    def admits(self, value: float) -> bool:
        """Whether a number lies inside the range (NaN never does)."""
        if value != value:  # NaN compares false with everything
            return False
        if self.minimum is not None and (
            value < self.minimum or (self.exclusive_minimum and value == self.minimum)
        ):
            return False
        return not (
            self.maximum is not None
            and (value > self.maximum or (self.exclusive_maximum and value == self.maximum))
        )


# fn(**tensors, **params, reduction=...) -> loss tensor
LossFn = Callable[..., torch.Tensor]
# check(tensors, params) raises InvalidRequestError when shapes or values do not fit
CheckFn = Callable[[Tensors, Params], None]
# unreduced_shape(tensors, params) -> the loss's shape under reduction "none"
ShapeFn = Callable[[Tensors, Params], tuple[int, ...]]
# value_and_grad(tensors, params, reduction, wrt, upstream) -> (loss, {role: gradient}): a closed form that
# replaces autograd where it is faster and leaner; it must equal autograd (tests/test_closed_form.py). With an
# empty wrt it returns the value alone, and serves Compute calls too; None leaves the call to autograd (a closed
# form may cover only some settings).
ValueAndGradFn = Callable[[Tensors, Params, str, tuple[str, ...], "torch.Tensor | None"],
                          "tuple[torch.Tensor, dict[str, torch.Tensor]] | None"]
# hessian_fn(tensors, params, reduction, wrt, upstream) -> {role: Hessian diagonal}, or None to leave it to
# autograd (a closed form may cover only some parameters): it must equal autograd (tests/test_hessian.py).
HessianFn = Callable[[Tensors, Params, str, tuple[str, ...], "torch.Tensor | None"],
                     "dict[str, torch.Tensor] | None"]
# small_value(arrays, params, reduction) -> the loss as a numpy array, for value-only CPU requests small enough that
# torch's per-operator dispatch would cost more than the arithmetic (lossd.losses.small). It must equal ``fn``
# (tests/test_small.py), and the spec's ``check`` must then read shapes and dtypes only, never values.
SmallValueFn = Callable[[Mapping[str, Any], Params, str], Any]
HESSIAN_KINDS = ("elementwise", "rows")
# param_resolver(name) -> a Param for a name outside ``params`` (e.g. weighted_sum's "huber.delta"), or None
ParamResolver = Callable[[str], "Param | None"]


@dataclass(frozen=True)
class LossSpec:
    """Everything lossd knows about one loss: the function, its roles, parameters and reductions."""

    name: str
    summary: str
    formula: str
    fn: LossFn
    roles: tuple[Role, ...]
    check: CheckFn
    unreduced_shape: ShapeFn
    params: tuple[Param, ...] = ()
    aliases: tuple[str, ...] = ()
    reductions: tuple[str, ...] = ("mean", "sum", "none")
    default_reduction: str = "mean"
    default_wrt: tuple[str, ...] = ("input",)
    notes: str = ""
    category: str = ""
    # alias -> parameter values it presets, so a borrowed name reproduces its library's defaults
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    param_resolver: ParamResolver | None = None
    value_and_grad: ValueAndGradFn | None = None
    small_value: SmallValueFn | None = None
    # Whether requests may be batched (lossd.losses.batching): the unreduced loss lines up with dim 0
    # of input and target, and "mean" is its plain mean.
    batchable: bool = False
    # Whether, under reduction "none", dim 0 of the loss indexes the rows (samples) of the inputs' dim 0 and each
    # row's value depends on that row alone, so that a dataset scored in batches gives every row its own loss.
    # False where rows are coupled (contrastive batches, multi-task weights) or not on dim 0 (time-major CTC).
    row_wise: bool = True
    # The Hessian diagonal a Gradient call may ask for too (lossd.losses.hessian): "elementwise" where each element
    # of the loss depends on one element of each role (one Hessian-vector product gives the diagonal), "rows"
    # where the loss decomposes over dim 0 but couples the elements of a row (one product per element of a row);
    # None where rows are coupled, and the diagonal is no per-row quantity (none is offered).
    hessian: str | None = None
    hessian_roles: tuple[str, ...] | None = None  # the roles it is offered for; None: every differentiable role
    hessian_fn: HessianFn | None = None
    # Whether the second derivative is zero on whole regions of the inputs (piecewise-linear parts: mae, quantile,
    # huber beyond delta), where a boosting library would divide by zero: its adapters use a constant Hessian.
    hessian_vanishes: bool = False
    _roles_by_name: dict[str, Role] = field(init=False, repr=False, compare=False)
    _params_by_name: dict[str, Param] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_roles_by_name", {r.name: r for r in self.roles})
        object.__setattr__(self, "_params_by_name", {p.name: p for p in self.params})
        if self.default_reduction not in self.reductions:
            raise ValueError(f"{self.name}: default reduction {self.default_reduction!r} not offered")
        for name in self.default_wrt:
            role = self._roles_by_name.get(name)
            if role is None or not role.differentiable:
                raise ValueError(f"{self.name}: default wrt {name!r} is not a differentiable role")
        if self.hessian not in (None, *HESSIAN_KINDS):
            raise ValueError(f"{self.name}: hessian {self.hessian!r} is none of {HESSIAN_KINDS}")
        for name in self.hessian_roles or ():
            if name not in self.differentiable_roles:
                raise ValueError(f"{self.name}: hessian role {name!r} is not a differentiable role")
        clash = set(self._roles_by_name) & set(self._params_by_name)
        if clash:
            raise ValueError(f"{self.name}: names used both as role and parameter: {sorted(clash)}")
        for alias, preset in self.presets.items():
            if alias not in self.aliases:
                raise ValueError(f"{self.name}: preset for {alias!r}, which is not an alias")
            unknown = [p for p in preset if p not in self._params_by_name]
            if unknown:
                raise ValueError(f"{self.name}: preset {alias!r} sets unknown parameters {unknown}")

    def role(self, name: str) -> Role | None:
        """The role called ``name``, or None."""
        return self._roles_by_name.get(name)

    def param(self, name: str) -> Param | None:
        """The parameter called ``name`` (or one the spec's resolver accepts), or None."""
        found = self._params_by_name.get(name)
        if found is None and self.param_resolver is not None:
            found = self.param_resolver(name)
        return found

    @property
    def differentiable_roles(self) -> tuple[str, ...]:
        """Names of the roles Gradient may differentiate."""
        return tuple(r.name for r in self.roles if r.differentiable)

    @property
    def hessian_roles_offered(self) -> tuple[str, ...]:
        """The roles whose Hessian diagonal a Gradient call may ask for (none when no diagonal is offered)."""
        if self.hessian is None:
            return ()
        return self.hessian_roles if self.hessian_roles is not None else self.differentiable_roles
