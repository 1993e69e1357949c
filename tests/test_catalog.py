"""Catalog-wide contract, one parametrized suite for every loss (cases in tests/cases/).

Through the real gRPC path: values equal an independent oracle in float32 and float64 for every
reduction; gradients equal autograd and pass gradcheck; every spec-derived mistake is refused with
INVALID_ARGUMENT naming the field; float16/bfloat16 are computed in float32 and answered in kind.
"""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
import pytest
import torch
from cases import CASES, Case
from helpers import bad_request_fields, raw_tensor

from lossd.client import InvalidArgumentError, LossClient
from lossd.client._codec import encode_param
from lossd.losses import REGISTRY, Kind, LossSpec, ParamType
from lossd.v1 import loss_service_pb2 as pb

FLOATS = (np.float32, np.float64)


def spec_of(case: Case) -> tuple[LossSpec, dict[str, Any]]:
    """The case's spec and its full parameters (defaults, alias preset, case overrides)."""
    spec, preset = REGISTRY.resolve(case.loss)
    return spec, {**{p.name: p.default for p in spec.params}, **preset, **case.params}


def inputs_of(case: Case, dtype: Any = np.float64, seed: int = 0) -> dict[str, np.ndarray]:
    """The case's inputs, reproducibly."""
    return case.make(np.random.default_rng(seed), np.dtype(dtype))


def as_float64(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Float arrays upcast to float64 (the oracle's precision); others unchanged."""
    return {k: v.astype(np.float64) if v.dtype.kind == "f" else v for k, v in arrays.items()}


def value_params() -> list[Any]:
    out = []
    for case in CASES:
        spec, _ = spec_of(case)
        for reduction in case.reductions or spec.reductions:
            for dtype in FLOATS:
                out.append(pytest.param(case, dtype, reduction, id=f"{case.id}-{np.dtype(dtype).name}-{reduction}"))
    return out


def by_case() -> list[Any]:
    return [pytest.param(c, id=c.id) for c in CASES]


def differentiable_present(case: Case, arrays: dict[str, np.ndarray]) -> list[str]:
    spec, _ = spec_of(case)
    return [r for r in spec.differentiable_roles if r in arrays and arrays[r].dtype.kind == "f"]


SEED = ("mse mae huber log_cosh bce_with_logits hinge squared_hinge exponential cross_entropy kl_div distillation "
        "multi_margin focal dice combo quantile multi_quantile label_smoothing_cross_entropy adaptive_label_smoothing "
        "info_nce nll hinge_embedding triplet_margin circle nt_xent moco_info_nce pairwise_hinge lambda_rank "
        "uncertainty_weighting weighted_sum").split()
TORCH_NN = ("bce smooth_l1 ctc poisson_nll gaussian_nll margin_ranking multilabel_margin soft_margin "
            "multilabel_soft_margin cosine_embedding triplet_margin_with_distance linear_cross_entropy").split()
# The catalog's extended tier (§6), as far as it has landed.
EXTENDED = ("msle mape charbonnier cauchy geman_mcclure welsch js_div cosine_similarity cosine_distance perceptron "
            "multiclass_perceptron crammer_singer_hinge sparsemax categorical_focal generalized_cross_entropy "
            "poly1_cross_entropy tversky focal_tversky jaccard ranknet listnet listmle lovasz_hinge lovasz_softmax "
            "generalized_dice contrastive batch_triplet multi_similarity supcon npairs arcface cosface "
            "proxy_anchor").split()


def test_registry_is_the_seed_torch_nn_and_extended_catalog() -> None:
    """The registry holds exactly the 30 seed losses, the 12 other torch.nn criteria and the extended ones."""
    assert (len(SEED), len(TORCH_NN)) == (30, 12)
    assert sorted(s.name for s in REGISTRY) == sorted(SEED + TORCH_NN + EXTENDED)


def test_list_losses_serves_every_loss(stub: Any) -> None:
    """ListLosses over the wire describes every registered loss, each with roles and reductions."""
    losses = stub.ListLosses(pb.ListLossesRequest(), timeout=10).losses
    assert len(losses) == len(SEED + TORCH_NN + EXTENDED) == 75
    assert all(info.inputs and info.reductions and info.default_wrt for info in losses)


def test_every_registered_loss_has_a_case() -> None:
    """No loss escapes the catalog suite."""
    covered = {spec_of(c)[0].name for c in CASES}
    assert sorted(s.name for s in REGISTRY if s.name not in covered) == []


@pytest.mark.parametrize(("case", "dtype", "reduction"), value_params())
def test_value_matches_oracle(client: LossClient, case: Case, dtype: Any, reduction: str) -> None:
    """The served value equals the independent oracle for this dtype and reduction."""
    arrays = inputs_of(case, dtype)
    got = client.compute(case.loss, inputs=arrays, params=dict(case.params), reduction=reduction)
    expected = np.asarray(case.oracle(as_float64(arrays), spec_of(case)[1], reduction), dtype=np.float64)
    rtol, atol = (1e-7, 1e-7) if dtype is np.float64 else (case.rtol32, case.atol32)
    if reduction == "none":
        assert isinstance(got, np.ndarray) and got.dtype == np.dtype(dtype)
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), expected, rtol=rtol, atol=atol)


@pytest.mark.parametrize("case", by_case())
def test_gradient_rpc_matches_autograd(client: LossClient, case: Case) -> None:
    """Gradient w.r.t. every differentiable role equals autograd of the same function in float64."""
    arrays = inputs_of(case)
    roles = differentiable_present(case, arrays)
    spec, params = spec_of(case)
    value, grads = client.gradient(case.loss, inputs=arrays, params=dict(case.params), wrt=roles)
    tensors = {k: torch.from_numpy(v.copy()).requires_grad_(k in roles) for k, v in arrays.items()}
    loss = spec.fn(**tensors, **params, reduction=spec.default_reduction)
    expected = torch.autograd.grad(loss, [tensors[r] for r in roles], allow_unused=True)
    assert value == pytest.approx(loss.item(), rel=1e-12, abs=1e-12)
    assert sorted(grads) == sorted(roles)
    for role, g in zip(roles, expected, strict=True):
        want = np.zeros_like(arrays[role]) if g is None else g.numpy()
        np.testing.assert_allclose(grads[role], want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", by_case())
def test_gradcheck_passes_in_float64(case: Case) -> None:
    """torch.autograd.gradcheck agrees with finite differences for every differentiable role."""
    if not case.gradcheck:
        pytest.skip("piecewise loss: finite differences cross a kink for this case")
    arrays = inputs_of(case)
    roles = differentiable_present(case, arrays)
    spec, params = spec_of(case)
    names = list(arrays)

    def fn(*leaves: torch.Tensor) -> torch.Tensor:
        return spec.fn(**dict(zip(names, leaves, strict=True)), **params, reduction=spec.default_reduction)

    leaves = tuple(torch.from_numpy(arrays[n].copy()).requires_grad_(n in roles) for n in names)
    assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("case", by_case())
def test_unreduced_gradient_takes_grad_output(client: LossClient, case: Case) -> None:
    """With reduction "none", grad_output makes the gradient a vector-Jacobian product."""
    spec, params = spec_of(case)
    if "none" not in spec.reductions:
        pytest.skip(f"{spec.name} offers no 'none' reduction")
    arrays = inputs_of(case)
    role = spec.default_wrt[0]
    tensors = {k: torch.from_numpy(v.copy()).requires_grad_(k == role) for k, v in arrays.items()}
    loss = spec.fn(**tensors, **params, reduction="none")
    upstream = np.random.default_rng(5).uniform(-1, 1, tuple(loss.shape))
    (expected,) = torch.autograd.grad(loss, [tensors[role]], grad_outputs=torch.from_numpy(upstream))
    _, grads = client.gradient(case.loss, inputs=arrays, params=dict(case.params), reduction="none",
                               wrt=[role], grad_output=upstream)
    np.testing.assert_allclose(grads[role], expected.numpy(), rtol=1e-10, atol=1e-12)


def _refused(client: LossClient, case: Case, **changes: Any) -> InvalidArgumentError:
    arrays = changes.pop("inputs") if "inputs" in changes else inputs_of(case)
    params = changes.pop("params") if "params" in changes else dict(case.params)
    with pytest.raises(InvalidArgumentError) as err:
        if "wrt" in changes:
            client.gradient(case.loss, inputs=arrays, params=params, **changes)
        else:
            client.compute(case.loss, inputs=arrays, params=params, **changes)
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    return err.value


@pytest.mark.parametrize("case", by_case())
def test_non_differentiable_roles_are_refused_in_wrt(client: LossClient, case: Case) -> None:
    """Every role sent but not differentiable (indices, weights) is refused in wrt, by position."""
    spec, _ = spec_of(case)
    arrays = inputs_of(case)
    fixed = [r.name for r in spec.roles if r.name in arrays and not r.differentiable]
    if not fixed:
        pytest.skip("every role of this case is differentiable")
    for name in fixed:
        err = _refused(client, case, inputs=arrays, wrt=[spec.default_wrt[0], name])
        assert err.fields == ["wrt[1]"], name


@pytest.mark.parametrize("case", by_case())
def test_missing_required_role_is_refused(client: LossClient, case: Case) -> None:
    """Leaving out each required role is refused on inputs[role]."""
    spec, _ = spec_of(case)
    for role in (r for r in spec.roles if r.required):
        arrays = {k: v for k, v in inputs_of(case).items() if k != role.name}
        assert _refused(client, case, inputs=arrays).fields == [f"inputs[{role.name}]"]


@pytest.mark.parametrize("case", by_case())
def test_wrong_dtype_is_refused(client: LossClient, case: Case) -> None:
    """A role sent in a dtype it does not accept is refused on inputs[role]."""
    spec, _ = spec_of(case)
    arrays = inputs_of(case)
    role = next(r for r in spec.roles if r.name in arrays)
    wrong = np.bool_ if Kind.BOOL not in role.kinds else np.float64
    arrays[role.name] = arrays[role.name].astype(wrong)
    assert f"inputs[{role.name}]" in _refused(client, case, inputs=arrays).fields


@pytest.mark.parametrize("case", by_case())
def test_unknown_parameter_is_refused(client: LossClient, case: Case) -> None:
    """A parameter the loss does not have is refused on params[name]."""
    err = _refused(client, case, params={**case.params, "no_such_parameter": 1.0})
    assert err.fields == ["params[no_such_parameter]"]


def _outside(param: Any) -> Any:
    if param.choices:
        return ["no-such-choice"] if param.type is ParamType.STRING_LIST else "no-such-choice"
    if param.minimum is not None:
        return param.minimum if param.exclusive_minimum else param.minimum - 1
    return param.maximum if param.exclusive_maximum else param.maximum + 1


@pytest.mark.parametrize("case", by_case())
def test_out_of_range_parameters_are_refused(client: LossClient, case: Case) -> None:
    """Each bounded parameter, set just outside its range, is refused on params[name]."""
    spec, _ = spec_of(case)
    bounded = [p for p in spec.params if p.choices or p.minimum is not None or p.maximum is not None]
    if not bounded:
        pytest.skip(f"{spec.name} has no bounded parameter")
    for param in bounded:
        value = _outside(param)
        if param.type is ParamType.FLOAT_LIST:
            value = [value]
        err = _refused(client, case, params={**case.params, param.name: value})
        assert any(f.startswith(f"params[{param.name}]") for f in err.fields), param.name


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES if c.bad_shape])
def test_bad_shape_is_refused(client: LossClient, case: Case) -> None:
    """A shape that does not fit the loss is refused on inputs[role]."""
    role, shape = case.bad_shape  # type: ignore[misc]
    arrays = inputs_of(case)
    arrays[role] = np.resize(arrays[role], shape).astype(arrays[role].dtype)
    assert f"inputs[{role}]" in _refused(client, case, inputs=arrays).fields


def _half_tensor(array: np.ndarray, dtype: torch.dtype) -> tuple[pb.Tensor, np.ndarray]:
    """A raw wire tensor of float16/bfloat16 and the float64 values it actually holds."""
    t = torch.from_numpy(array).to(dtype)
    wire = pb.DTYPE_FLOAT16 if dtype == torch.float16 else pb.DTYPE_BFLOAT16
    raw = t.reshape(-1).view(torch.uint8).numpy().tobytes()
    return pb.Tensor(dtype=wire, shape=list(t.shape), raw_data=raw), t.to(torch.float64).numpy()


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES if c.half])
def test_half_precision_is_computed_in_float32_and_answered_in_kind(stub: Any, case: Case,
                                                                     half: torch.dtype) -> None:
    """float16/bfloat16 inputs are accepted; the answer has their dtype and the float32 value, rounded."""
    spec, params = spec_of(case)
    arrays = inputs_of(case, np.float32)
    request = pb.ComputeRequest(loss=case.loss)
    seen: dict[str, np.ndarray] = {}
    for name, array in arrays.items():
        if array.dtype.kind == "f":
            request.inputs[name].CopyFrom(_half_tensor(array, half)[0])
            seen[name] = _half_tensor(array, half)[1]
        else:
            request.inputs[name].CopyFrom(raw_tensor(array))
            seen[name] = array
    for name, value in case.params.items():
        request.params[name].CopyFrom(encode_param(name, value))
    reply = stub.Compute(request, timeout=30)
    assert reply.loss.dtype == (pb.DTYPE_FLOAT16 if half == torch.float16 else pb.DTYPE_BFLOAT16)
    got = torch.frombuffer(bytearray(reply.loss.raw_data), dtype=half).to(torch.float64).item()
    expected = float(case.oracle(seen, params, spec.default_reduction))
    tol = 1e-2 if half == torch.bfloat16 else 2e-3
    assert got == pytest.approx(expected, rel=tol, abs=tol)


def test_bad_request_fields_helper_reads_details(stub: Any) -> None:
    """Sanity check of the helper the suite relies on: a refused call carries BadRequest fields."""
    with pytest.raises(grpc.RpcError) as err:
        stub.Compute(pb.ComputeRequest(loss="mse"), timeout=10)
    assert bad_request_fields(err.value) == ["inputs[input]", "inputs[target]"]
