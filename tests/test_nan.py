"""NaN in data flows through as torch lets it: for every loss torch.nn.functional also has, one NaN in each float
data role (weights aside) gives what torch gives (NaN where it reaches, the same values elsewhere), and where torch
raises on it (binary_cross_entropy's probabilities), lossd refuses it, naming the role."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from cases import CASES, Case

from lossd.losses import REGISTRY, InvalidRequestError, evaluate, validate

TORCH = {
    "mse": F.mse_loss, "mae": F.l1_loss, "huber": F.huber_loss, "smooth_l1": F.smooth_l1_loss,
    "bce": F.binary_cross_entropy, "bce_with_logits": F.binary_cross_entropy_with_logits,
    "cross_entropy": F.cross_entropy, "nll": F.nll_loss, "kl_div": F.kl_div, "poisson_nll": F.poisson_nll_loss,
    "gaussian_nll": F.gaussian_nll_loss, "margin_ranking": F.margin_ranking_loss,
    "hinge_embedding": F.hinge_embedding_loss, "cosine_embedding": F.cosine_embedding_loss,
    "soft_margin": F.soft_margin_loss, "multilabel_margin": F.multilabel_margin_loss,
    "multilabel_soft_margin": F.multilabel_soft_margin_loss, "multi_margin": F.multi_margin_loss,
    "triplet_margin": F.triplet_margin_loss, "triplet_margin_with_distance": F.triplet_margin_with_distance_loss,
}
WEIGHTS = ("weight", "pos_weight")  # configuration, not data: non-finite weights stay refused


def _first_case(name: str) -> Case:
    return next(c for c in CASES if REGISTRY.resolve(c.loss)[0].name == name and not c.params)


def _cells() -> list[Any]:
    out = []
    for name in TORCH:
        case = _first_case(name)
        arrays = case.make(np.random.default_rng(0), np.dtype(np.float64))
        for role, array in arrays.items():
            if array.dtype.kind == "f" and role not in WEIGHTS:
                out.append(pytest.param(name, case, role, id=f"{name}-{role}"))
    return out


def _torch(name: str, tensors: dict[str, torch.Tensor], params: dict[str, Any], reduction: str) -> torch.Tensor:
    fn = TORCH[name]
    accepted = inspect.signature(fn).parameters
    kwargs = {k: v for k, v in {**tensors, **params}.items() if k in accepted}
    return fn(**kwargs, reduction=reduction)


@pytest.mark.parametrize(("name", "case", "role"), _cells())
def test_a_nan_in_a_data_role_gives_what_torch_gives(name: str, case: Case, role: str) -> None:
    spec, preset = REGISTRY.resolve(case.loss)
    arrays = case.make(np.random.default_rng(0), np.dtype(np.float64))
    tensors = {k: torch.from_numpy(np.asarray(v).copy()) for k, v in arrays.items()}
    tensors[role].reshape(-1)[0] = float("nan")
    reduction = "none" if "none" in spec.reductions else spec.default_reduction
    try:
        prepared = validate(spec, tensors, dict(case.params), reduction, preset=preset)
    except InvalidRequestError as refused:
        with pytest.raises((RuntimeError, ValueError)):
            _torch(name, tensors, {}, reduction)
        assert [v.field for v in refused.violations] == [f"inputs[{role}]"]
        return
    ours = evaluate(prepared).loss
    theirs = _torch(name, prepared.tensors, prepared.params, reduction)
    torch.testing.assert_close(ours, theirs.to(ours.dtype), equal_nan=True)


def _oracle_cells() -> list[Any]:
    """The first plain case of every loss torch lacks, and each float data role (weights aside)."""
    out, seen = [], set()
    for case in CASES:
        name = REGISTRY.resolve(case.loss)[0].name
        if name in TORCH or name in seen or case.params:
            continue
        seen.add(name)
        arrays = case.make(np.random.default_rng(0), np.dtype(np.float64))
        out += [pytest.param(case, role, id=f"{name}-{role}") for role, a in arrays.items()
                if a.dtype.kind == "f" and "weight" not in role]
    return out


@pytest.mark.parametrize(("case", "role"), _oracle_cells())
def test_a_nan_in_a_data_role_gives_what_the_oracle_gives(case: Case, role: str) -> None:
    """Where torch lacks the loss, its oracle (optax, kornia, monai, pml, numpy) is the reference: NaN where it
    reaches, the same values elsewhere."""
    spec, preset = REGISTRY.resolve(case.loss)
    arrays = {k: np.asarray(v).copy() for k, v in case.make(np.random.default_rng(0), np.dtype(np.float64)).items()}
    arrays[role].reshape(-1)[0] = np.nan
    offered = case.reductions or spec.reductions
    reduction = "none" if "none" in offered else offered[0]
    prepared = validate(spec, {k: torch.from_numpy(v) for k, v in arrays.items()}, dict(case.params), reduction,
                        preset=preset)
    ours = evaluate(prepared).loss.numpy()
    with np.errstate(invalid="ignore"):  # numpy's notice that the NaN reached its answer, which is the point
        theirs = np.asarray(case.oracle(arrays, prepared.params, reduction), dtype=np.float64)
    assert np.shape(ours) == np.shape(theirs)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-9, equal_nan=True)
