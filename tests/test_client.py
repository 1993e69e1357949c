"""The Python client library: what it sends, what it returns, and what it raises."""

from __future__ import annotations

import subprocess
import sys

import grpc
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lossd.client import DeadlineExceededError, InvalidArgumentError, LossClient, UnavailableError
from lossd.v1 import loss_service_pb2 as pb


def test_compute_mean_returns_a_python_float(client: LossClient) -> None:
    """A reduction to a scalar comes back as a float equal to torch's."""
    x, y = np.array([1.0, 2.0, 4.0]), np.array([1.0, 0.0, 0.0])
    value = client.compute("mse", input=x, target=y)
    assert type(value) is float
    assert value == pytest.approx(20 / 3, rel=1e-12)


def test_compute_none_returns_an_array_of_the_input_dtype(client: LossClient) -> None:
    """reduction="none" gives an ndarray shaped and typed like the input."""
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = client.compute("mae", input=x, target=np.zeros_like(x), reduction="none")
    assert isinstance(out, np.ndarray)
    assert out.dtype == np.float32 and out.shape == (2, 3)
    np.testing.assert_array_equal(out, x)


def test_keyword_scalars_are_sent_as_parameters(client: LossClient) -> None:
    """delta=0.5 reaches the server as a parameter and changes the result as torch's does."""
    x, y = np.array([0.0, 3.0]), np.array([0.0, 0.0])
    value = client.compute("huber", input=x, target=y, delta=0.5)
    assert value == pytest.approx(float(F.huber_loss(torch.tensor(x), torch.tensor(y), delta=0.5)), rel=1e-12)


def test_explicit_inputs_and_params_dicts_work_like_keywords(client: LossClient) -> None:
    """inputs= and params= give the same answer as keyword arguments."""
    x, y = np.array([0.0, 3.0]), np.array([1.0, 0.0])
    by_dict = client.compute("huber", inputs={"input": x, "target": y}, params={"delta": 2.0})
    by_kw = client.compute("huber", input=x, target=y, delta=2.0)
    assert by_dict == by_kw


def test_torch_tensors_are_accepted_as_inputs(client: LossClient) -> None:
    """torch tensors (even ones requiring grad) are sent like arrays."""
    x = torch.tensor([0.5, -1.0], requires_grad=True)
    y = torch.tensor([0.0, 0.0])
    assert client.compute("mse", input=x, target=y) == pytest.approx(0.625, rel=1e-7)


def test_gradient_returns_value_and_named_gradients(client: LossClient) -> None:
    """gradient() gives (value, {"input": d/dx}) equal to autograd's."""
    logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
    labels = np.array([0, 2])
    value, grads = client.gradient("cross_entropy", input=logits, target=labels)
    x = torch.tensor(logits, requires_grad=True)
    expected = F.cross_entropy(x, torch.tensor(labels))
    expected.backward()
    assert value == pytest.approx(expected.item(), rel=1e-12)
    assert list(grads) == ["input"]
    np.testing.assert_allclose(grads["input"], x.grad.numpy(), rtol=1e-12)


def test_gradient_wrt_several_roles(client: LossClient) -> None:
    """wrt=["input", "target"] returns both gradients (opposite signs for mse)."""
    x, y = np.array([1.0, 2.0]), np.array([0.0, 4.0])
    _, grads = client.gradient("mse", input=x, target=y, wrt=["input", "target"])
    np.testing.assert_allclose(grads["input"], [1.0, -2.0])
    np.testing.assert_allclose(grads["target"], [-1.0, 2.0])


def test_returned_arrays_are_read_only_views(client: LossClient) -> None:
    """Arrays come back as read-only views of the reply (no hidden copy)."""
    out = client.compute("mse", input=np.ones(4), target=np.zeros(4), reduction="none")
    assert not out.flags.writeable


def test_refusal_raises_invalid_argument_with_fields(client: LossClient) -> None:
    """A bad request raises InvalidArgumentError carrying the code and the field."""
    with pytest.raises(InvalidArgumentError) as err:
        client.compute("huber", input=np.ones(2), target=np.ones(2), delta=-1.0)
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.fields == ["params[delta]"]


def test_unreachable_server_raises_unavailable() -> None:
    """A call to a port where nothing listens raises UnavailableError."""
    with LossClient("127.0.0.1:1", timeout=5) as c, pytest.raises(UnavailableError) as err:
        c.compute("mse", input=np.ones(1), target=np.ones(1))
    assert err.value.code == grpc.StatusCode.UNAVAILABLE


def test_expired_deadline_raises_deadline_exceeded(client: LossClient) -> None:
    """A timeout too short for the call raises DeadlineExceededError."""
    big = np.zeros(4_000_000, np.float32)
    with pytest.raises(DeadlineExceededError) as err:
        client.compute("mse", input=big, target=big, timeout=1e-6)
    assert err.value.code == grpc.StatusCode.DEADLINE_EXCEEDED


def test_parameter_of_unsupported_type_is_refused_before_sending(client: LossClient) -> None:
    """A dict as a parameter raises TypeError naming the parameter."""
    with pytest.raises(TypeError, match="'delta'"):
        client.compute("huber", input=np.ones(1), target=np.ones(1), delta={"a": 1})


def test_list_losses_and_describe(client: LossClient) -> None:
    """list_losses() names every loss; describe() resolves an alias to its canonical entry."""
    names = {info.name for info in client.list_losses()}
    assert {"mse", "mae", "huber", "cross_entropy", "bce_with_logits"} <= names
    assert client.describe("HuberLoss").name == "huber"


def test_client_package_does_not_import_torch() -> None:
    """Importing and using lossd.client's encoding leaves torch unimported."""
    code = ("import sys, numpy as np; import lossd.client; from lossd.client._codec import encode_array;"
            "encode_array(np.ones(2)); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"


def _sent(client: LossClient, method: str, **kwargs: object) -> bytes:
    """The request bytes the client sends for ``method(**kwargs)`` (the RPC itself is not made)."""
    seen: list[bytes] = []

    def fake(request: bytes, **_: object) -> object:
        seen.append(request)
        raise RuntimeError("not sent")

    original = client._call
    client._call = lambda m, request, timeout: fake(request)  # type: ignore[method-assign]
    try:
        with pytest.raises(RuntimeError):
            getattr(client, method)("huber", **kwargs)
    finally:
        client._call = original  # type: ignore[method-assign]
    return seen[0]


@pytest.mark.parametrize("method", ["compute", "gradient"])
def test_plain_arrays_are_encoded_as_protobuf_would(method: str) -> None:
    """The cached-framing path for numpy arrays sends exactly the message protobuf would build."""
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    y = np.ones((2, 3), np.float32)
    with LossClient("127.0.0.1:1") as client:
        sent = _sent(client, method, input=x, target=y, delta=0.5, reduction="sum")
    cls = pb.GradientRequest if method == "gradient" else pb.ComputeRequest
    expected = cls(loss="huber", reduction="sum")
    expected.params["delta"].number = 0.5
    for role, a in (("input", x), ("target", y)):
        expected.inputs[role].CopyFrom(pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=a.shape, raw_data=a.tobytes()))
    assert cls.FromString(sent) == expected


@pytest.mark.parametrize("make", [
    lambda a: a.astype(">f4"),  # big-endian: swapped on the general path
    lambda a: np.asfortranarray(a),  # not C-ordered: made contiguous there
    lambda a: torch.from_numpy(a),  # torch tensors take the general path too
], ids=["big_endian", "fortran_order", "torch"])
def test_arrays_off_the_plain_path_give_the_same_answer(client: LossClient, make) -> None:  # type: ignore[no-untyped-def]
    """Inputs the cached-framing path does not take are converted, and answered the same."""
    x = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
    y = np.ones((2, 3), np.float32)
    expected = client.compute("mse", input=x, target=y)
    assert client.compute("mse", input=make(x), target=make(y)) == expected
    value, grads = client.gradient("mse", input=make(x), target=make(y))
    assert value == expected  # Compute and Gradient share mse's closed form: the same float32 value
    np.testing.assert_allclose(grads["input"], 2 * (x - y) / 6, rtol=1e-6)
