"""A loss as an Open Inference Protocol model: its inputs (roles) and outputs, with V2 datatypes and shapes."""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from lossd.losses import LossSpec, Role

PLATFORM = "lossd_torch"
VERSION = "1"  # every loss is served at one version
LOSS_OUTPUT = "loss"
GRAD_PREFIX = "grad_"
HESS_PREFIX = "hess_"  # as long as GRAD_PREFIX: the role follows either at the same offset
TORCH_DATATYPES: dict[torch.dtype, str] = {
    torch.bool: "BOOL", torch.uint8: "UINT8", torch.int32: "INT32", torch.int64: "INT64",
    torch.float16: "FP16", torch.bfloat16: "BF16", torch.float32: "FP32", torch.float64: "FP64",
}


@dataclass(frozen=True)
class TensorMetadata:
    """A model input or output as ModelMetadata lists it; ``datatypes`` and ``rule`` say all a role takes."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    datatypes: tuple[str, ...] = ()
    rule: str = ""
    optional: bool = False


@dataclass(frozen=True)
class ModelMetadata:
    """A loss as a V2 model."""

    name: str
    inputs: tuple[TensorMetadata, ...]
    outputs: tuple[TensorMetadata, ...]
    spec: LossSpec

    @property
    def versions(self) -> tuple[str, ...]:
        """Every version served (one)."""
        return (VERSION,)

    @property
    def platform(self) -> str:
        """The V2 platform name."""
        return PLATFORM


def model_metadata(spec: LossSpec) -> ModelMetadata:
    """``spec`` as a model: a tensor per role, and ``loss`` and ``grad_<role>`` for each differentiable role."""
    inputs = tuple(TensorMetadata(r.name, _preferred(r), role_shape(spec, r), _datatypes(r), r.shape,
                                  not r.required) for r in spec.roles)
    loss_shape = () if spec.default_reduction != "none" else role_shape(spec, spec.roles[0])
    outputs = [TensorMetadata(LOSS_OUTPUT, "FP32", loss_shape, ("FP16", "BF16", "FP32", "FP64"),
                              "() when reduced; under reduction none, the unreduced shape; "
                              "the inputs' floating dtype")]
    outputs += [TensorMetadata(GRAD_PREFIX + r.name, _preferred(r), role_shape(spec, r), _datatypes(r),
                               f"the shape and dtype of {r.name}", True)
                for r in spec.roles if r.differentiable]
    offered = spec.hessian_roles_offered
    outputs += [TensorMetadata(HESS_PREFIX + r.name, _preferred(r), role_shape(spec, r), _datatypes(r),
                               f"the Hessian diagonal: the shape and dtype of {r.name}", True)
                for r in spec.roles if r.name in offered]
    return ModelMetadata(spec.name, inputs, tuple(outputs), spec)


def _preferred(role: Role) -> str:
    """A role's first datatype: FP32 for floating roles, INT64 for class indices (lossd lists them first)."""
    return _datatypes(role)[0]


def _datatypes(role: Role) -> tuple[str, ...]:
    return tuple(TORCH_DATATYPES[d] for d in role.dtypes if d in TORCH_DATATYPES)


_SAME_AS = re.compile(r"(?:same shape as|same as|broadcastable to|as)\s+([a-z_0-9]+)|([a-z_0-9]+)'s shape")


def role_shape(spec: LossSpec, role: Role, seen: frozenset[str] = frozenset()) -> tuple[int, ...]:
    """A role's shape for ModelMetadata: its first form, -1 for each free dimension (a number where the rule
    fixes one); where it takes several ranks, the lowest of the first form ("(N, C, d1, ..., dk)" → 3 dims);
    "same shape as X" takes X's; any shape is ``(-1,)``. The rule in words is in ListLosses and REST metadata."""
    rule = role.shape.strip()
    if rule.startswith("("):
        dims = []
        for part in rule[1:rule.find(")")].split(","):
            part = part.strip()
            if not part:
                continue
            if "..." in part:  # "d1, ..., dk": none of them unless the rule asks for k >= 1
                if "k >= 1" not in rule:
                    dims.pop()
                break
            dims.append(int(part) if part.isdigit() else -1)
        return tuple(dims)
    match = _SAME_AS.search(rule)
    if match:
        other = match.group(1) or match.group(2)
        peer = next((r for r in spec.roles if r.name == other), None)
        if peer is not None and peer.name not in seen and peer.name != role.name:
            return role_shape(spec, peer, seen | {role.name})
    return (-1,)
