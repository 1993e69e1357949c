"""Refusals on the wire: every bad request gets the right gRPC code, BadRequest field and message."""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import bad_request_fields, raw_tensor

from lossd.client import InvalidArgumentError, LossClient, LossNotFoundError, UnavailableError
from lossd.v1 import loss_service_pb2 as pb

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NAN = float("nan")


def tensor(values: Any, dtype: Any = np.float32) -> pb.Tensor:
    """A raw wire tensor holding ``values`` as ``dtype``."""
    return raw_tensor(np.asarray(values, dtype=dtype))


def num(x: float) -> pb.ParamValue:
    return pb.ParamValue(number=x)


def request(loss: str, roles: dict[str, Any], params: dict[str, pb.ParamValue] | None = None,
            reduction: str = "", **overrides: Any) -> pb.ComputeRequest:
    """A Compute request: ``roles`` (None drops a role) updated by ``overrides`` tensors."""
    inputs = {k: v for k, v in {**roles, **overrides}.items() if v is not None}
    return pb.ComputeRequest(loss=loss, inputs=inputs, params=params or {}, reduction=reduction)


def mse_request(loss: str = "mse", **kw: Any) -> pb.ComputeRequest:
    """A valid mse request on (2, 3) float32 tensors, with any part overridden."""
    return request(loss, {"input": tensor(np.ones((2, 3))), "target": tensor(np.zeros((2, 3)))}, **kw)


def huber_request(**kw: Any) -> pb.ComputeRequest:
    return mse_request("huber", **kw)


LOGITS = np.arange(12, dtype=np.float32).reshape(4, 3) / 10


def ce_request(target: Any = (0, 2, 1, 0), **kw: Any) -> pb.ComputeRequest:
    """A valid cross_entropy request: (4, 3) logits and int64 class indices."""
    return request("cross_entropy", {"input": tensor(LOGITS), "target": tensor(target, np.int64)}, **kw)


def bce_request(target: Any = (0.0, 1.0, 0.5), **kw: Any) -> pb.ComputeRequest:
    """A valid bce_with_logits request on three logits."""
    return request("bce_with_logits", {"input": tensor([0.1, -0.2, 0.3]), "target": tensor(target)}, **kw)


def gradient(req: pb.ComputeRequest, **extra: Any) -> pb.GradientRequest:
    """The Gradient request with the same loss, inputs, params and reduction, plus ``extra``."""
    return pb.GradientRequest(loss=req.loss, inputs=dict(req.inputs), params=dict(req.params),
                              reduction=req.reduction, **extra)


def refused(stub: Any, req: Any) -> grpc.RpcError:
    """The error a request fails with (Compute or Gradient, by the request's type)."""
    call = stub.Gradient if isinstance(req, pb.GradientRequest) else stub.Compute
    with pytest.raises(grpc.RpcError) as e:
        call(req, timeout=30)
    return e.value


F32_23 = {"dtype": pb.DTYPE_FLOAT32, "shape": [2, 3]}
SIX_FLOATS = np.zeros(6, np.float32).tobytes()

INVALID_CASES = [
    pytest.param(mse_request(loss=""), "loss", "empty", id="empty_loss_name"),
    pytest.param(mse_request(target=None), "inputs[target]", "missing; required by mse",
                 id="missing_required_role"),
    pytest.param(mse_request(bias=tensor([1.0])), "inputs[bias]", "unknown input role", id="unknown_role"),
    pytest.param(huber_request(delta=tensor(1.0)), "inputs[delta]", "'delta' is a parameter of huber",
                 id="parameter_sent_as_role"),
    pytest.param(mse_request(params={"target": num(1)}), "params[target]", "'target' is an input role of mse",
                 id="role_sent_as_parameter"),
    pytest.param(huber_request(params={"alpha": num(1)}), "params[alpha]", "unknown parameter for huber",
                 id="unknown_parameter"),
    pytest.param(huber_request(params={"delta": pb.ParamValue(text="1")}), "params[delta]",
                 "expected a number, got str", id="string_for_float_parameter"),
    pytest.param(huber_request(params={"delta": pb.ParamValue()}), "params[delta]", "no value set",
                 id="unset_parameter_value"),
    pytest.param(huber_request(params={"delta": num(0)}), "params[delta]", "0 is outside the valid range > 0",
                 id="delta_zero_out_of_range"),
    pytest.param(huber_request(params={"delta": num(-1)}), "params[delta]",
                 "-1 is outside the valid range > 0", id="delta_negative_out_of_range"),
    pytest.param(ce_request(params={"label_smoothing": num(1.5)}), "params[label_smoothing]",
                 "1.5 is outside the valid range [0, 1]", id="label_smoothing_above_one"),
    pytest.param(ce_request(params={"ignore_index": num(1.5)}), "params[ignore_index]",
                 "expected an integer, got 1.5", id="non_integral_number_for_int_parameter"),
    pytest.param(mse_request(input=tensor(np.ones((2, 3)), np.int64)), "inputs[input]",
                 "dtype int64 not accepted", id="int64_input_for_mse"),
    pytest.param(mse_request(target=tensor(np.zeros((2, 3)), np.float16)), "inputs[target]",
                 "dtype float16 differs from input's float32", id="mixed_float_dtypes"),
    pytest.param(mse_request(input=pb.Tensor(shape=[2, 3], raw_data=SIX_FLOATS)), "inputs[input].dtype",
                 "unspecified is not a tensor dtype", id="dtype_unspecified"),
    pytest.param(mse_request(input=pb.Tensor(**F32_23, raw_data=SIX_FLOATS[:-1])), "inputs[input].raw_data",
                 "23 bytes, but shape [2, 3] of float32 needs 6 x 4 = 24 bytes", id="raw_length_mismatch"),
    pytest.param(mse_request(input=pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=[-2, 3])),
                 "inputs[input].shape[0]", "-2 is negative", id="negative_shape_dim"),
    pytest.param(mse_request(input=pb.Tensor(**F32_23, raw_data=SIX_FLOATS, float_val=[0.0] * 6)),
                 "inputs[input]", "carries both raw_data and float_val", id="raw_and_typed_list"),
    pytest.param(mse_request(input=pb.Tensor(**F32_23)), "inputs[input]", "(6 elements) but no content",
                 id="shape_without_content"),
    pytest.param(mse_request(input=pb.Tensor(**F32_23, int64_val=[1] * 6)), "inputs[input].int64_val",
                 "cannot carry dtype float32", id="typed_list_of_wrong_kind"),
    pytest.param(mse_request(input=pb.Tensor(**F32_23, float_val=[1.0] * 5)), "inputs[input].float_val",
                 "5 values, but shape [2, 3] needs 6", id="typed_list_length_mismatch"),
    pytest.param(mse_request(target=tensor(np.zeros((3, 2)))), "inputs[target]",
                 "shape (3, 2) must equal the shape of input (2, 3)", id="mse_target_shape_differs"),
    pytest.param(ce_request(target=(0, 1, 2, 0, 1)), "inputs[target]", "shape (5,) does not fit input (4, 3)",
                 id="ce_target_batch_too_long"),
    pytest.param(ce_request(weight=tensor([1.0, 1.0])), "inputs[weight]",
                 "expected (3,), one weight per class", id="ce_weight_wrong_length"),
    pytest.param(ce_request(target=(0, 3, 1, 0)), "inputs[target]", "class index 3 at flat index 1",
                 id="class_index_equal_to_C"),
    pytest.param(ce_request(target=(0, 1, -1, 0)), "inputs[target]", "class index -1 at flat index 2",
                 id="class_index_minus_one_not_ignored"),
    pytest.param(ce_request(weight=tensor([1.0, -1.0, 1.0])), "inputs[weight]",
                 "value -1 at flat index 1 is negative", id="negative_class_weight"),
    pytest.param(ce_request(weight=tensor([1.0, 1.0, NAN])), "inputs[weight]", "non-finite value",
                 id="nan_class_weight"),
    pytest.param(request("cross_entropy", {"input": tensor(LOGITS), "target": tensor(np.full((4, 3), 1 / 3))},
                         params={"ignore_index": pb.ParamValue(integer=0)}),
                 "params[ignore_index]", "applies only to class-index targets",
                 id="ignore_index_with_prob_targets"),
    pytest.param(bce_request(target=(0.0, 1.5, 1.0)), "inputs[target]",
                 "value 1.5 at flat index 1 is outside [0, 1]", id="bce_target_above_one"),
    # NaN flows through bce_with_logits as in torch; bce (probabilities) refuses it, as torch raises on it.
    pytest.param(request("bce", {"input": tensor([0.1, 0.2, 0.3]), "target": tensor([0.0, 1.0, NAN])}),
                 "inputs[target]", "value nan at flat index 2", id="bce_probabilities_target_nan"),
    pytest.param(mse_request(reduction="average"), "reduction", "'average' is not offered by mse",
                 id="unknown_reduction"),
    pytest.param(gradient(ce_request(weight=tensor([1.0, 2.0, 3.0])), wrt=["weight"]), "wrt[0]",
                 "not differentiable with respect to 'weight'", id="wrt_non_differentiable_role"),
    pytest.param(gradient(mse_request(), wrt=["bias"]), "wrt[0]", "'bias' is not an input role of mse",
                 id="wrt_unknown_role"),
    pytest.param(gradient(ce_request(), wrt=["input", "target"]), "wrt[1]",
                 "'target' holds int64; only float tensors have gradients", id="wrt_int_targets"),
    pytest.param(gradient(mse_request(), grad_output=tensor(np.ones((2, 3)))), "grad_output",
                 "shape (2, 3) must equal the loss's shape ()", id="grad_output_wrong_shape"),
]


@pytest.mark.parametrize(("req", "field", "phrase"), INVALID_CASES)
def test_malformed_request_is_invalid_argument_naming_the_field(stub: Any, req: Any, field: str,
                                                                phrase: str) -> None:
    """Each malformed request is refused with INVALID_ARGUMENT, its field in BadRequest, and why."""
    err = refused(stub, req)
    assert err.code() == INVALID
    assert field in bad_request_fields(err)
    assert phrase in err.details()


@pytest.mark.parametrize(("name", "suggestion"), [("msee", "'mse'"), ("cross_entropi", "'cross_entropy'"),
                                                  ("Huberr", "'huber'")])
def test_unknown_loss_is_not_found_and_suggests_the_close_name(stub: Any, name: str, suggestion: str) -> None:
    """A misspelt loss name is NOT_FOUND on field "loss", with a did-you-mean of the close name."""
    err = refused(stub, mse_request(loss=name))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert bad_request_fields(err) == ["loss"]
    assert f"unknown loss {name!r}" in err.details()
    assert f"did you mean {suggestion}" in err.details()


def test_unknown_loss_in_gradient_is_not_found(stub: Any) -> None:
    """Gradient resolves names like Compute: an unknown one is NOT_FOUND on field "loss"."""
    err = refused(stub, gradient(mse_request(loss="msee")))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert bad_request_fields(err) == ["loss"]
    assert "'mse'" in err.details()


def test_several_violations_are_all_reported(stub: Any) -> None:
    """An unknown role, an unknown parameter and a bad reduction are reported together, in one error."""
    err = refused(stub, mse_request(bias=tensor([1.0]), params={"alpha": num(1)}, reduction="avg"))
    assert err.code() == INVALID
    assert sorted(bad_request_fields(err)) == ["inputs[bias]", "params[alpha]", "reduction"]
    for phrase in ("unknown input role", "unknown parameter", "'avg' is not offered"):
        assert phrase in err.details()


def test_huge_claimed_shape_is_resource_exhausted_without_allocating(stub: Any) -> None:
    """A shape claiming 2**80 elements is RESOURCE_EXHAUSTED on inputs[input].shape, not allocated."""
    huge = pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=[2**40, 2**40], raw_data=b"\0" * 4)
    err = refused(stub, mse_request(input=huge))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert bad_request_fields(err) == ["inputs[input].shape"]
    assert f"claims {2**80} elements" in err.details()


def test_empty_shape_with_overflowing_dims_is_refused_not_internal(stub: Any) -> None:
    """A 0-element shape whose other dims overflow int64 strides is refused on inputs[input].shape[1]."""
    empty = pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=[0, 2**40, 2**40])
    err = refused(stub, mse_request(input=empty))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "inputs[input].shape[1]" in bad_request_fields(err)


def test_server_answers_correctly_after_bad_requests(stub: Any, rng: np.random.Generator) -> None:
    """After a burst of refused requests the same server still computes a good request like torch."""
    for case in INVALID_CASES[::4]:
        assert refused(stub, case.values[0]).code() == INVALID
    assert refused(stub, mse_request(input=pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=[2**40]))).code() == (
        grpc.StatusCode.RESOURCE_EXHAUSTED)
    x, y = rng.standard_normal((5, 7)), rng.standard_normal((5, 7))
    reply = stub.Compute(mse_request(input=tensor(x, np.float64), target=tensor(y, np.float64)), timeout=30)
    got = np.frombuffer(reply.loss.raw_data, "<f8").reshape(tuple(reply.loss.shape))
    assert (reply.loss_name, reply.reduction, got.shape) == ("mse", "mean", ())
    np.testing.assert_allclose(got, F.mse_loss(torch.from_numpy(x), torch.from_numpy(y)).numpy(), rtol=1e-12)
    logits, labels = rng.standard_normal((4, 3)), np.array([2, 0, 1, 1])
    reply = stub.Compute(ce_request(target=labels, input=tensor(logits, np.float64)), timeout=30)
    expected = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels))
    np.testing.assert_allclose(np.frombuffer(reply.loss.raw_data, "<f8"), [expected.item()], rtol=1e-12)


def test_client_raises_invalid_argument_error_with_fields(client: LossClient) -> None:
    """LossClient maps INVALID_ARGUMENT to InvalidArgumentError carrying .code and .fields."""
    x = np.ones((2, 3), np.float32)
    with pytest.raises(InvalidArgumentError) as e:
        client.compute("huber", input=x, target=x, delta=0.0)
    assert e.value.code == INVALID
    assert e.value.fields == ["params[delta]"]
    assert "outside the valid range > 0" in e.value.message
    assert e.value.violations[0].description == "0 is outside the valid range > 0"


def test_client_raises_loss_not_found_error(client: LossClient) -> None:
    """LossClient maps NOT_FOUND to LossNotFoundError, whose message suggests the close name."""
    x = np.ones(3, np.float32)
    with pytest.raises(LossNotFoundError) as e:
        client.compute("msee", input=x, target=x)
    assert e.value.code == grpc.StatusCode.NOT_FOUND
    assert e.value.fields == ["loss"]
    assert "did you mean 'mse'" in e.value.message


def test_client_raises_unavailable_error_for_closed_port() -> None:
    """A call to a port nobody listens on raises UnavailableError (code UNAVAILABLE)."""
    x = np.ones(3, np.float32)
    with LossClient("127.0.0.1:1", timeout=2) as c, pytest.raises(UnavailableError) as e:
        c.compute("mse", input=x, target=x)
    assert e.value.code == grpc.StatusCode.UNAVAILABLE
    assert e.value.fields == []
