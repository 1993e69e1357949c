"""lossd's losses: pure torch functions, each described by a :class:`LossSpec` in one registry.

This package knows nothing of gRPC or protobuf. A caller resolves a name with ``REGISTRY.get``,
checks a request with :func:`validate` (on the CPU, before any device sees the data) and runs it
with :func:`evaluate`::

    spec = REGISTRY.get("MSELoss")
    prepared = validate(spec, {"input": x, "target": y}, {}, "mean", wrt=["input"])
    result = evaluate(prepared, "cpu")        # result.loss, result.gradients["input"]

Adding a loss means one function and one spec in one module, listed in ``_MODULES`` below.
"""

from lossd.losses import (
    binary,
    classification,
    composite,
    contrastive,
    distribution,
    embedding,
    infonce,
    likelihood,
    listwise,
    lovasz,
    margin,
    metric,
    multiclass,
    overlap,
    quantile,
    ranking,
    regression,
    robust,
    scores,
    segmentation,
    sequence,
    similarity,
    smoothing,
    softmax,
    triplet,
)
from lossd.losses.engine import Result, evaluate
from lossd.losses.errors import (
    FieldViolation,
    InvalidRequestError,
    LossdError,
    ResourceLimitError,
    UnknownLossError,
)
from lossd.losses.registry import Registry, normalize_name
from lossd.losses.spec import KIND_DTYPES, Kind, LossSpec, Param, ParamType, Role
from lossd.losses.validate import Prepared, validate

_MODULES = (regression, robust, quantile, likelihood, binary, margin, scores, classification, multiclass, softmax,
            smoothing, distribution, similarity, sequence, segmentation, overlap, lovasz, embedding, triplet,
            contrastive, metric, infonce, ranking, listwise, composite)

REGISTRY = Registry(spec for module in _MODULES for spec in module.SPECS)
"""Every loss lossd serves, by canonical name and alias."""
REGISTRY.register(composite.weighted_sum_spec(REGISTRY))

__all__ = [
    "KIND_DTYPES",
    "REGISTRY",
    "FieldViolation",
    "InvalidRequestError",
    "Kind",
    "LossSpec",
    "LossdError",
    "Param",
    "ParamType",
    "Prepared",
    "Registry",
    "ResourceLimitError",
    "Result",
    "Role",
    "UnknownLossError",
    "evaluate",
    "normalize_name",
    "validate",
]
