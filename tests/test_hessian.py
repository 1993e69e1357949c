"""Hessian diagonals: for every loss that offers one, equal to the diagonal of torch.autograd.functional.hessian
and to finite differences of the gradient; closed forms equal to autograd; refusals where rows are coupled;
the client's hessian() over a real server, unary and streamed."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import grpc
import numpy as np
import pytest
import torch
from cases import CASES, Case
from helpers import bad_request_fields, raw_tensor

from lossd.client import AsyncLossClient, InvalidArgumentError, LossClient, ResourceExhaustedError
from lossd.losses import REGISTRY, InvalidRequestError, evaluate, validate
from lossd.losses.hessian import MAX_PRODUCTS, autograd_diagonals
from lossd.server import BackgroundServer
from lossd.v1 import loss_service_pb2 as pb

OFFERED = [c for c in CASES if REGISTRY.resolve(c.loss)[0].hessian is not None]
# Zero almost everywhere: piecewise-linear losses (their notes say so).
ZERO = ("mae", "hinge", "quantile", "multi_quantile", "hinge_embedding", "margin_ranking", "multilabel_margin",
        "pairwise_hinge")


def _prepared(case: Case, reduction: str, seed: int = 0) -> Any:
    """The case's inputs in float64, validated for a Hessian over every role that offers one, with a random
    upstream gradient (shaped like the loss)."""
    spec, preset = REGISTRY.resolve(case.loss)
    rng = np.random.default_rng(seed)
    tensors = {k: torch.from_numpy(np.asarray(v)) for k, v in case.make(rng, np.dtype(np.float64)).items()}
    roles = [r for r in spec.hessian_roles_offered if r in tensors and tensors[r].is_floating_point()]
    plain = validate(spec, tensors, dict(case.params), reduction, preset=preset)
    shape = () if reduction != "none" else spec.unreduced_shape(plain.tensors, plain.params)
    upstream = torch.from_numpy(rng.uniform(0.5, 1.5, shape))
    return validate(spec, tensors, dict(case.params), reduction, wrt=roles, grad_output=upstream, preset=preset,
                    hessian=True)


def _objective(prepared: Any, role: str) -> Any:
    spec = prepared.spec

    def f(x: torch.Tensor) -> torch.Tensor:
        tensors = {**prepared.tensors, role: x}
        tensors = {k: v.long() if not v.is_floating_point() and v.dtype != torch.bool else v
                   for k, v in tensors.items()}
        return (prepared.grad_output * spec.fn(**tensors, **prepared.params, reduction=prepared.reduction)).sum()
    return f


def _reductions(case: Case) -> tuple[str, ...]:
    return case.reductions or REGISTRY.resolve(case.loss)[0].reductions


@pytest.mark.parametrize("case", OFFERED, ids=lambda c: c.id)
def test_every_offered_diagonal_equals_autograds_full_hessian(case: Case) -> None:
    """For each reduction and role: the diagonal of torch.autograd.functional.hessian of sum(upstream * loss)
    (where torch has no second derivative of the loss, the finite-difference test covers it)."""
    for reduction in _reductions(case):
        prepared = _prepared(case, reduction)
        result = evaluate(prepared)
        assert set(result.hessians) == set(prepared.wrt)
        for role in prepared.wrt:
            x = prepared.tensors[role]
            try:
                full = torch.autograd.functional.hessian(_objective(prepared, role), x)
            except RuntimeError as exc:
                assert "not implemented" in str(exc)
                continue
            expected = full.reshape(x.numel(), x.numel()).diagonal().reshape(x.shape)
            torch.testing.assert_close(result.hessians[role], expected, rtol=1e-7, atol=1e-10,
                                       msg=lambda m, r=role, red=reduction: f"{case.id} {red} {r}: {m}")


@pytest.mark.parametrize("case", [c for c in OFFERED if c.gradcheck], ids=lambda c: c.id)
def test_diagonals_equal_finite_differences_of_the_gradient(case: Case) -> None:
    """Central differences of the gradient (float64, a step of 1e-4 times the element, or 1e-6 near zero) at up
    to six positions of each role."""
    prepared = _prepared(case, "sum" if "sum" in _reductions(case) else _reductions(case)[0])
    result = evaluate(prepared)
    rng = np.random.default_rng(1)
    for role in prepared.wrt:
        x = prepared.tensors[role]
        for flat in rng.choice(x.numel(), size=min(6, x.numel()), replace=False):
            shifted = []
            # Relative to the element: a probability of 3e-4 has curvature ~1/p, which a fixed 1e-5 would miss.
            step = 1e-4 * max(abs(float(x.reshape(-1)[flat])), 1e-2)
            for sign in (1, -1):
                moved = x.clone().reshape(-1)
                moved[flat] += sign * step
                # Past validation: a shifted target may leave its range by h, which the formula does not mind.
                again = replace(prepared, tensors={**prepared.tensors, role: moved.reshape(x.shape)}, wrt=(role,),
                                hessian=False)
                shifted.append(evaluate(again).gradients[role].reshape(-1)[flat])
            numeric = (shifted[0] - shifted[1]) / (2 * step)
            assert float(result.hessians[role].reshape(-1)[flat]) == pytest.approx(float(numeric), rel=1e-4,
                                                                                   abs=1e-6), (case.id, role)


@pytest.mark.parametrize(("loss", "make", "params"), [
    ("mse", lambda r: {"input": r.normal(size=(5, 3)), "target": r.normal(size=(5, 3))}, {}),
    ("bce_with_logits", lambda r: {"input": r.normal(size=(6, 3)), "target": r.uniform(size=(6, 3)),
                                   "weight": r.uniform(0.5, 2, (1, 3)), "pos_weight": r.uniform(0.5, 2, 3)}, {}),
    ("cross_entropy", lambda r: {"input": r.normal(size=(7, 4)), "target": r.integers(0, 4, 7)},
     {"label_smoothing": 0.1}),
    ("cross_entropy", lambda r: {"input": r.normal(size=(7, 4)), "target": np.array([0, 1, -100, 3, 2, -100, 1]),
                                 "weight": r.uniform(0.5, 2, 4)}, {"label_smoothing": 0.2}),
    ("cross_entropy", lambda r: {"input": r.normal(size=(3, 4, 5)), "target": r.integers(0, 4, (3, 5))}, {}),
    ("cross_entropy", lambda r: {"input": r.normal(size=(6, 4)), "target": r.dirichlet(np.ones(4), 6),
                                 "weight": r.uniform(0.5, 2, 4)}, {"label_smoothing": 0.3}),
    ("cross_entropy", lambda r: {"input": r.normal(size=4), "target": np.array(2)}, {}),
], ids=["mse", "bce_with_logits weight pos_weight", "ce smoothing", "ce weight ignore_index smoothing",
        "ce (N, C, d)", "ce probabilities weight smoothing", "ce unbatched"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_closed_forms_equal_autograd(loss: str, make: Any, params: dict[str, Any], reduction: str) -> None:
    """The closed-form diagonals (mse, bce_with_logits, cross_entropy) against the generic double backward."""
    spec = REGISTRY.get(loss)
    rng = np.random.default_rng(4)
    tensors = {k: torch.from_numpy(np.asarray(v)) for k, v in make(rng).items()}
    roles = [r for r in spec.differentiable_roles if r in tensors and tensors[r].is_floating_point()]
    plain = validate(spec, tensors, params, reduction)
    shape = () if reduction != "none" else spec.unreduced_shape(plain.tensors, plain.params)
    upstream = torch.from_numpy(rng.uniform(0.5, 1.5, shape))
    prepared = validate(spec, tensors, params, reduction, wrt=roles, grad_output=upstream, hessian=True)
    work = {k: v.long() if not v.is_floating_point() else v for k, v in prepared.tensors.items()}
    closed = spec.hessian_fn(work, prepared.params, reduction, prepared.wrt, upstream)
    assert closed is not None
    _, _, generic = autograd_diagonals(spec, work, prepared.params, reduction, prepared.wrt, upstream)
    for role in roles:
        torch.testing.assert_close(closed[role], generic[role], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("loss", ZERO)
def test_piecewise_linear_losses_answer_zeros_and_say_so(loss: str) -> None:
    [case] = [c for c in OFFERED if REGISTRY.resolve(c.loss)[0].name == loss][:1]
    result = evaluate(_prepared(case, "mean"))
    assert all(bool((h == 0).all()) for h in result.hessians.values())
    assert "Hessian diagonal: zero almost everywhere" in REGISTRY.get(loss).notes


def test_rows_that_are_coupled_are_refused_naming_the_field() -> None:
    spec = REGISTRY.get("info_nce")
    with pytest.raises(InvalidRequestError) as info:
        validate(spec, {"features": torch.rand(4, 3)}, {}, wrt=["features"], hessian=True)
    assert [v.field for v in info.value.violations] == ["hessian"]
    assert "rows are coupled" in info.value.violations[0].description


def test_a_role_without_a_diagonal_is_refused_naming_it() -> None:
    """linear_cross_entropy offers the diagonal for its input, not for the weight shared by every row."""
    tensors = {"input": torch.rand(3, 4), "linear_weight": torch.rand(5, 4), "target": torch.tensor([0, 1, 4])}
    with pytest.raises(InvalidRequestError) as info:
        validate(REGISTRY.get("linear_cross_entropy"), tensors, {}, wrt=["input", "linear_weight"], hessian=True)
    assert [v.field for v in info.value.violations] == ["wrt[1]"]


def test_a_hessian_needs_a_gradient_call() -> None:
    with pytest.raises(InvalidRequestError) as info:
        validate(REGISTRY.get("mse"), {"input": torch.rand(3), "target": torch.rand(3)}, {}, hessian=True)
    assert [v.field for v in info.value.violations] == ["hessian"]


def test_list_losses_says_which_losses_offer_a_diagonal(client: LossClient) -> None:
    infos = {i.name: i for i in client.list_losses()}
    assert (infos["mse"].hessian, list(infos["mse"].hessian_roles)) == (True, ["input", "target"])
    assert (infos["linear_cross_entropy"].hessian, list(infos["linear_cross_entropy"].hessian_roles)) == (
        True, ["input"])
    assert [n for n, i in infos.items() if not i.hessian] == [
        "batch_triplet", "circle", "contrastive", "ctc", "info_nce", "moco_info_nce", "multi_similarity", "npairs",
        "nt_xent", "proxy_anchor", "supcon", "uncertainty_weighting"]


def test_client_hessian_returns_value_gradients_and_diagonals(client: LossClient) -> None:
    """cross_entropy over a real server: p(1 - p)/N in the logits, and the same value and gradient as
    gradient()."""
    x = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
    y = np.array([0, 2])
    value, grads, diagonals = client.hessian("cross_entropy", input=x, target=y)
    p = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    assert (value, grads["input"].tolist()) == (lambda v, g: (v, g["input"].tolist()))(
        *client.gradient("cross_entropy", input=x, target=y))
    np.testing.assert_allclose(diagonals["input"], p * (1 - p) / 2, rtol=1e-12)


def test_a_large_hessian_reply_is_streamed(server: BackgroundServer) -> None:
    """400,000 float32 elements per role with stream_mb 1: loss, two gradients and two diagonals in chunks."""
    x = np.random.default_rng(2).random(400_000).astype(np.float32)
    with LossClient(server.address, stream_mb=1, timeout=60) as c:
        value, grads, diagonals = c.hessian("mse", input=x, target=np.zeros_like(x), wrt=["input", "target"],
                                            reduction="sum")
    assert value == pytest.approx(float((x.astype(np.float64) ** 2).sum()), rel=1e-5)
    assert diagonals["input"].dtype == np.float32 and bool((diagonals["input"] == 2).all())
    assert bool((diagonals["target"] == 2).all()) and np.array_equal(grads["target"], -2 * x)


def test_async_client_hessian_equals_the_sync_one(server: BackgroundServer, client: LossClient) -> None:
    x, y = np.array([0.3, -1.2, 2.0]), np.array([1.0, 0.0, 1.0])

    async def main() -> Any:
        async with AsyncLossClient(server.address) as c:
            return await c.hessian("bce_with_logits", input=x, target=y, reduction="none")
    value, _, diagonals = asyncio.run(main())
    expected = client.hessian("bce_with_logits", input=x, target=y, reduction="none")
    assert np.array_equal(value, expected[0]) and np.array_equal(diagonals["input"], expected[2]["input"])


def test_the_server_refuses_a_coupled_loss_with_invalid_argument(client: LossClient, stub: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="offers no Hessian diagonal"):
        client.hessian("info_nce", features=np.random.default_rng(0).random((4, 3)))
    request = pb.GradientRequest(loss="nt_xent", hessian=True,
                                 inputs={"embeddings": raw_tensor(np.ones((4, 2))), "labels": raw_tensor(
                                     np.array([0, 0, 1, 1]))})
    with pytest.raises(grpc.RpcError) as info:
        stub.Gradient(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and bad_request_fields(info.value) == ["hessian"]


def test_too_many_products_per_row_are_refused(client: LossClient) -> None:
    """dice over (2, 2, 48, 48): 4,608 elements a row, one Hessian-vector product each, over the cap."""
    x = np.random.default_rng(0).random((2, 2, 48, 48))
    assert MAX_PRODUCTS < 2 * 48 * 48
    with pytest.raises(ResourceExhaustedError, match="Hessian-vector products"):
        client.hessian("dice", input=x, target=(x > 0.5).astype(np.float64))
