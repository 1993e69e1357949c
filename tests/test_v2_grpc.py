"""The Open Inference Protocol's gRPC service (inference.GRPCInferenceService) on lossd's port, called with the
stubs generated from lossd's own grpc_predict_v2.proto: its answers equal lossd.v1's, its refusals too."""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import torch
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from helpers import raw_tensor
from test_metrics import sample, scrape

from lossd.client import LossClient
from lossd.oip import grpc_predict_v2_pb2 as v2
from lossd.oip import grpc_predict_v2_pb2_grpc as v2_grpc
from lossd.server import BackgroundServer
from lossd.server.errors import MAX_MESSAGE_CHARS, MAX_VIOLATIONS
from lossd.server.metrics import lossd_version
from lossd.v1 import loss_service_pb2 as pb

LIMIT = 16 * 1024


@pytest.fixture(scope="module")
def v2stub(channel: grpc.Channel) -> v2_grpc.GRPCInferenceServiceStub:
    return v2_grpc.GRPCInferenceServiceStub(channel)


def _input(name: str, array: np.ndarray, datatype: str) -> v2.ModelInferRequest.InferInputTensor:
    return v2.ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=list(array.shape))


def _request(model: str, inputs: dict[str, tuple[np.ndarray, str]], outputs: tuple[str, ...] = (),
             **parameters: object) -> v2.ModelInferRequest:
    """A request with raw contents, built by hand."""
    request = v2.ModelInferRequest(model_name=model)
    for name, (array, datatype) in inputs.items():
        request.inputs.append(_input(name, array, datatype))
        request.raw_input_contents.append(np.ascontiguousarray(array).tobytes())
    for name in outputs:
        request.outputs.add(name=name)
    for key, value in parameters.items():
        _set(request.parameters[key], value)
    return request


def _set(param: v2.InferParameter, value: object) -> None:
    if isinstance(value, bool):
        param.bool_param = value
    elif isinstance(value, int):
        param.int64_param = value
    elif isinstance(value, float):
        param.double_param = value
    else:
        param.string_param = str(value)


def _outputs(reply: v2.ModelInferResponse) -> dict[str, np.ndarray]:
    dtypes = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16, "INT64": np.int64}
    return {o.name: np.frombuffer(raw, dtypes[o.datatype]).reshape(o.shape)
            for o, raw in zip(reply.outputs, reply.raw_output_contents, strict=True)}


def _status(error: grpc.RpcError) -> tuple[grpc.StatusCode, str, list[tuple[str, str]]]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    violations: list[tuple[str, str]] = []
    if status is not None and status.details:
        bad = error_details_pb2.BadRequest()
        assert status.details[0].Unpack(bad)
        violations = [(v.field, v.description) for v in bad.field_violations]
    return error.code(), error.details() or "", violations


def _refusal(call: object, request: object) -> tuple[grpc.StatusCode, str, list[tuple[str, str]]]:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=30)  # type: ignore[operator]
    return _status(info.value)


@pytest.fixture(scope="module")
def mse_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {role: rng.standard_normal(1000).astype(np.float32) for role in ("input", "target")}


def test_server_is_live_and_ready(v2stub) -> None:  # type: ignore[no-untyped-def]
    """ServerLive and ServerReady answer true on a serving server."""
    assert v2stub.ServerLive(v2.ServerLiveRequest(), timeout=10).live
    assert v2stub.ServerReady(v2.ServerReadyRequest(), timeout=10).ready


@pytest.mark.parametrize(("name", "ready"), [("mse", True), ("MSELoss", True), ("mse_but_not", False)])
def test_model_ready_is_true_for_losses_and_aliases_only(v2stub, name: str, ready: bool) -> None:  # type: ignore[no-untyped-def]
    """A loss and an alias are ready; a name that is no loss is not (false, as Triton answers)."""
    assert v2stub.ModelReady(v2.ModelReadyRequest(name=name), timeout=10).ready is ready


def test_server_metadata_names_lossd_its_version_and_extensions(v2stub) -> None:  # type: ignore[no-untyped-def]
    reply = v2stub.ServerMetadata(v2.ServerMetadataRequest(), timeout=10)
    assert (reply.name, reply.version) == ("lossd", lossd_version())
    assert list(reply.extensions) == ["binary_tensor_data", "parameters"]


def test_model_metadata_lists_roles_as_inputs_and_loss_and_gradients_as_outputs(v2stub) -> None:  # type: ignore[no-untyped-def]
    """cross_entropy: its three roles (preferred datatype, -1 for free dimensions), a scalar loss, and a
    gradient output for each differentiable role."""
    meta = v2stub.ModelMetadata(v2.ModelMetadataRequest(name="CrossEntropyLoss"), timeout=10)
    assert (meta.name, list(meta.versions), meta.platform) == ("cross_entropy", ["1"], "lossd_torch")
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
        ("input", "FP32", [-1, -1]), ("target", "INT64", [-1]), ("weight", "FP32", [-1])]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.outputs] == [
        ("loss", "FP32", []), ("grad_input", "FP32", [-1, -1]), ("grad_target", "INT64", [-1]),
        ("hess_input", "FP32", [-1, -1]), ("hess_target", "INT64", [-1])]


def test_model_metadata_of_an_unknown_model_is_not_found(v2stub) -> None:  # type: ignore[no-untyped-def]
    code, message, violations = _refusal(v2stub.ModelMetadata, v2.ModelMetadataRequest(name="nope"))
    assert code == grpc.StatusCode.NOT_FOUND and "unknown loss 'nope'" in message
    assert [f for f, _ in violations] == ["loss"]


def test_infer_with_raw_contents_equals_lossd_compute(v2stub, client: LossClient, mse_inputs) -> None:  # type: ignore[no-untyped-def]
    """The loss of ModelInfer (no outputs asked for) is the bit-identical loss of lossd.v1's Compute."""
    reply = v2stub.ModelInfer(_request("mse", {k: (a, "FP32") for k, a in mse_inputs.items()}), timeout=30)
    expected = np.float32(client.compute("mse", **mse_inputs))
    assert [o.name for o in reply.outputs] == ["loss"] and list(reply.outputs[0].shape) == []
    assert _outputs(reply)["loss"].tobytes() == expected.tobytes()


def test_infer_with_typed_contents_equals_raw_contents(v2stub, client: LossClient) -> None:  # type: ignore[no-untyped-def]
    """fp32_contents and int64_contents are read like raw bytes."""
    logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]], np.float32)
    target = np.array([0, 2], np.int64)
    request = v2.ModelInferRequest(model_name="cross_entropy")
    request.inputs.append(_input("input", logits, "FP32"))
    request.inputs[0].contents.fp32_contents.extend(logits.reshape(-1).tolist())
    request.inputs.append(_input("target", target, "INT64"))
    request.inputs[1].contents.int64_contents.extend(target.tolist())
    loss = _outputs(v2stub.ModelInfer(request, timeout=30))["loss"]
    assert loss.tobytes() == np.float32(client.compute("cross_entropy", input=logits, target=target)).tobytes()


def test_gradient_outputs_run_a_gradient_and_exactly_they_come_back(v2stub, client: LossClient) -> None:  # type: ignore[no-untyped-def]
    """outputs [grad_input] alone: one output, lossd.v1's gradient to the bit."""
    logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]], np.float32)
    target = np.array([0, 2], np.int64)
    reply = v2stub.ModelInfer(_request("cross_entropy", {"input": (logits, "FP32"), "target": (target, "INT64")},
                                       ("grad_input",), label_smoothing=0.1), timeout=30)
    _, grads = client.gradient("cross_entropy", input=logits, target=target, label_smoothing=0.1)
    got = _outputs(reply)
    assert list(got) == ["grad_input"] and got["grad_input"].tobytes() == grads["input"].tobytes()


def test_loss_and_gradient_outputs_come_back_in_the_order_asked(v2stub) -> None:  # type: ignore[no-untyped-def]
    x, y = np.ones(3, np.float32), np.zeros(3, np.float32)
    reply = v2stub.ModelInfer(_request("mse", {"input": (x, "FP32"), "target": (y, "FP32")},
                                       ("grad_input", "loss")), timeout=30)
    assert [o.name for o in reply.outputs] == ["grad_input", "loss"]
    assert _outputs(reply)["grad_input"].tolist() == pytest.approx([2 / 3] * 3)


def test_wrt_travels_as_a_json_string(v2stub, client: LossClient) -> None:  # type: ignore[no-untyped-def]
    """wrt '["input", "target"]' computes both gradients; only the requested grad_target comes back."""
    x, y = np.array([1.0, 2.0], np.float32), np.array([0.5, 0.0], np.float32)
    reply = v2stub.ModelInfer(_request("mse", {"input": (x, "FP32"), "target": (y, "FP32")}, ("grad_target",),
                                       wrt=json.dumps(["input", "target"])), timeout=30)
    _, grads = client.gradient("mse", input=x, target=y, wrt=["input", "target"])
    got = _outputs(reply)
    assert list(got) == ["grad_target"] and got["grad_target"].tobytes() == grads["target"].tobytes()


def test_a_list_parameter_travels_as_a_json_string(v2stub, client: LossClient) -> None:  # type: ignore[no-untyped-def]
    """multi_quantile's quantiles '[0.2, 0.8]' gives lossd.v1's loss for quantiles=[0.2, 0.8]."""
    x, y = np.array([[1.0, 2.0], [0.0, 1.0]], np.float32), np.array([1.5, 0.5], np.float32)
    reply = v2stub.ModelInfer(_request("multi_quantile", {"input": (x, "FP32"), "target": (y, "FP32")},
                                       quantiles="[0.2, 0.8]"), timeout=30)
    expected = np.float32(client.compute("multi_quantile", input=x, target=y, quantiles=[0.2, 0.8]))
    assert _outputs(reply)["loss"].tobytes() == expected.tobytes()


def test_tritons_own_request_parameters_are_accepted_and_ignored(v2stub) -> None:  # type: ignore[no-untyped-def]
    x, y = np.ones(2, np.float32), np.zeros(2, np.float32)
    request = _request("mse", {"input": (x, "FP32"), "target": (y, "FP32")}, binary_data_output=True,
                       priority=1, timeout=1000, sequence_id=5, sequence_start=True, sequence_end=False)
    assert _outputs(v2stub.ModelInfer(request, timeout=30))["loss"].tolist() == 1.0


def test_id_is_echoed_and_an_alias_answers_as_its_loss(v2stub) -> None:  # type: ignore[no-untyped-def]
    x, y = np.ones(2, np.float32), np.zeros(2, np.float32)
    request = _request("MSELoss", {"input": (x, "FP32"), "target": (y, "FP32")}, reduction="sum")
    request.id = "call-17"
    reply = v2stub.ModelInfer(request, timeout=30)
    assert (reply.model_name, reply.model_version, reply.id) == ("mse", "1", "call-17")
    assert {k: v.string_param for k, v in reply.parameters.items()} == {
        "loss_name": "mse", "reduction": "sum", "device": reply.parameters["device"].string_param}


@pytest.mark.parametrize(("datatype", "dtype"), [("FP16", torch.float16), ("BF16", torch.bfloat16)])
def test_half_precision_travels_raw_both_ways(v2stub, client: LossClient, datatype: str, dtype: torch.dtype) -> None:  # type: ignore[no-untyped-def]
    """FP16 and BF16 inputs are read raw, and the loss comes back raw in the same datatype, equal to lossd.v1's."""
    x = torch.tensor([1.0, 2.5, -3.0], dtype=dtype)
    y = torch.zeros(3, dtype=dtype)
    request = v2.ModelInferRequest(model_name="mse")
    for name, t in (("input", x), ("target", y)):
        request.inputs.add(name=name, datatype=datatype, shape=[3])
        request.raw_input_contents.append(t.view(torch.uint8).numpy().tobytes())
    reply = v2stub.ModelInfer(request, timeout=30)
    expected = client.compute("mse", input=x, target=y)
    assert reply.outputs[0].datatype == datatype
    got = torch.frombuffer(bytearray(reply.raw_output_contents[0]), dtype=dtype)
    assert got.item() == pytest.approx(float(expected), rel=1e-2)


def test_large_tensors_round_trip_without_change(v2stub, client: LossClient) -> None:  # type: ignore[no-untyped-def]
    """200,000 elements each way (the zero-copy paths): reduction none equals lossd.v1's, bit for bit."""
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal(200_000).astype(np.float32), rng.standard_normal(200_000).astype(np.float32)
    reply = v2stub.ModelInfer(_request("huber", {"input": (x, "FP32"), "target": (y, "FP32")}, ("loss", "grad_input"),
                                       reduction="none", delta=0.5), timeout=60)
    loss, grads = client.gradient("huber", input=x, target=y, reduction="none", delta=0.5)
    got = _outputs(reply)
    assert got["loss"].tobytes() == np.asarray(loss).tobytes()
    assert got["grad_input"].tobytes() == grads["input"].tobytes()


def test_a_refusal_has_lossd_v1s_code_message_and_details(v2stub, stub) -> None:  # type: ignore[no-untyped-def]
    """A shape mismatch: the same INVALID_ARGUMENT, message and BadRequest violations as lossd.v1's Compute."""
    x, y = np.ones(4, np.float32), np.zeros(3, np.float32)
    over_v2 = _refusal(v2stub.ModelInfer, _request("mse", {"input": (x, "FP32"), "target": (y, "FP32")}))
    over_v1 = _refusal(stub.Compute, pb.ComputeRequest(loss="mse", inputs={"input": raw_tensor(x),
                                                                           "target": raw_tensor(y)}))
    assert over_v2 == over_v1
    assert over_v2[0] == grpc.StatusCode.INVALID_ARGUMENT and over_v2[2][0][0] == "inputs[target]"


def test_an_unknown_parameter_is_refused_as_on_lossd_v1(v2stub, stub) -> None:  # type: ignore[no-untyped-def]
    x, y = np.ones(2, np.float32), np.zeros(2, np.float32)
    over_v2 = _refusal(v2stub.ModelInfer, _request("huber", {"input": (x, "FP32"), "target": (y, "FP32")}, dleta=1.0))
    v1 = pb.ComputeRequest(loss="huber", inputs={"input": raw_tensor(x), "target": raw_tensor(y)})
    v1.params["dleta"].number = 1.0
    assert over_v2 == _refusal(stub.Compute, v1)
    assert [f for f, _ in over_v2[2]] == ["params[dleta]"]


def test_an_unknown_model_is_not_found(v2stub) -> None:  # type: ignore[no-untyped-def]
    x = np.ones(2, np.float32)
    code, message, violations = _refusal(v2stub.ModelInfer, _request("msee", {"input": (x, "FP32")}))
    assert code == grpc.StatusCode.NOT_FOUND and "did you mean 'mse'" in message
    assert [f for f, _ in violations] == ["loss"]


def test_an_unknown_output_is_refused_naming_it(v2stub) -> None:  # type: ignore[no-untyped-def]
    x, y = np.ones(2, np.float32), np.zeros(2, np.float32)
    code, _, violations = _refusal(v2stub.ModelInfer, _request("mse", {"input": (x, "FP32"), "target": (y, "FP32")},
                                                               ("loss", "grad_weight")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert violations == [("outputs[1].name", "'grad_weight' is not an output of mse; expected one of: loss, "
                                              "grad_input, grad_target, hess_input, hess_target")]


def test_a_datatype_lossd_lacks_is_refused_naming_the_field(v2stub) -> None:  # type: ignore[no-untyped-def]
    x, y = np.ones(2, np.int8), np.zeros(2, np.float32)
    code, _, violations = _refusal(v2stub.ModelInfer, _request("mse", {"input": (x, "INT8"), "target": (y, "FP32")}))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in violations] == ["inputs[input].datatype"] and "FP32" in violations[0][1]


def test_fp16_without_raw_contents_is_refused_naming_the_input(v2stub) -> None:  # type: ignore[no-untyped-def]
    """FP16 has no typed contents: an FP16 input sent as fp32_contents has no data lossd can read."""
    request = v2.ModelInferRequest(model_name="mse")
    for name in ("input", "target"):
        request.inputs.add(name=name, datatype="FP16", shape=[2]).contents.fp32_contents.extend([1.0, 2.0])
    code, _, violations = _refusal(v2stub.ModelInfer, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in violations] == ["inputs[input]", "inputs[target]"]


def test_raw_contents_must_cover_every_input(v2stub) -> None:  # type: ignore[no-untyped-def]
    request = _request("mse", {"input": (np.ones(2, np.float32), "FP32")})
    request.inputs.add(name="target", datatype="FP32", shape=[2])
    code, message, violations = _refusal(v2stub.ModelInfer, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and [f for f, _ in violations] == ["raw_input_contents"]
    assert "1 entries for 2 inputs" in message


def test_a_100000_character_model_name_is_not_found_with_the_name_clipped(v2stub) -> None:  # type: ignore[no-untyped-def]
    """Bounded errors: NOT_FOUND reaches the caller, its message clipped, the status far below 16 KiB."""
    code, message, violations = _refusal(v2stub.ModelInfer, _request("x" * 100_000,
                                                                     {"input": (np.ones(2, np.float32), "FP32")}))
    assert code == grpc.StatusCode.NOT_FOUND and len(message) <= MAX_MESSAGE_CHARS and "more characters" in message
    assert len(message) + sum(len(f) + len(d) for f, d in violations) < LIMIT // 2


def test_a_thousand_unknown_roles_list_at_most_100_violations(v2stub) -> None:  # type: ignore[no-untyped-def]
    inputs = {f"role_{i:04d}": (np.ones(1, np.float32), "FP32") for i in range(1000)}
    inputs["input"] = inputs["target"] = (np.ones(1, np.float32), "FP32")
    code, message, violations = _refusal(v2stub.ModelInfer, _request("mse", inputs))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and len(violations) <= MAX_VIOLATIONS
    assert violations[-1] == ("...", f"and {1000 - (len(violations) - 1)} more violations")
    assert message.endswith(f"and {1000 - 10} more")


def test_model_infer_is_counted_under_its_own_method_label(v2stub, server: BackgroundServer) -> None:  # type: ignore[no-untyped-def]
    port = server.server.metrics_port
    labels = {"method": "ModelInfer", "loss": "mae", "code": "OK"}
    before = sample(scrape(port), "lossd_requests_total", **labels)
    v2stub.ModelInfer(_request("mae", {"input": (np.ones(2, np.float32), "FP32"),
                                       "target": (np.zeros(2, np.float32), "FP32")}), timeout=30)
    assert sample(scrape(port), "lossd_requests_total", **labels) - before == 1


def test_the_request_id_is_echoed_in_trailing_metadata(v2stub) -> None:  # type: ignore[no-untyped-def]
    request = _request("mae", {"input": (np.ones(2, np.float32), "FP32"), "target": (np.zeros(2, np.float32), "FP32")})
    _, call = v2stub.ModelInfer.with_call(request, timeout=30, metadata=(("x-request-id", "v2-abc"),))
    assert dict(call.trailing_metadata())["x-request-id"] == "v2-abc"


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    from lossd.server import ServerSettings

    tokens = tmp_path_factory.mktemp("tokens") / "tokens"
    tokens.write_text("s3cret\n")
    settings = ServerSettings(port=0, metrics_port=0, device="cpu", auth_tokens_file=tokens, auth_exempt_health=True)
    with BackgroundServer(settings) as srv:
        yield srv


def test_infer_needs_a_bearer_token_and_liveness_does_not(token_server: BackgroundServer) -> None:
    """On a server with tokens (health exempt): ModelInfer without one is UNAUTHENTICATED, with one it answers;
    ServerLive needs none."""
    request = _request("mae", {"input": (np.ones(2, np.float32), "FP32"), "target": (np.zeros(2, np.float32), "FP32")})
    with grpc.insecure_channel(token_server.address) as channel:
        stub = v2_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ServerLive(v2.ServerLiveRequest(), timeout=10).live
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(request, timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        reply = stub.ModelInfer(request, timeout=10, metadata=(("authorization", "Bearer s3cret"),))
        assert _outputs(reply)["loss"].tolist() == 1.0


def test_typed_contents_come_back_when_the_outputs_ask_for_them(v2stub, client: LossClient) -> None:  # type: ignore[no-untyped-def]
    """binary_data false on the outputs: the values in fp32_contents, no raw_output_contents."""
    x, y = np.array([1.0, 2.0], np.float32), np.array([0.5, 0.0], np.float32)
    request = _request("mse", {"input": (x, "FP32"), "target": (y, "FP32")}, ("loss", "grad_input"))
    for output in request.outputs:
        output.parameters["binary_data"].bool_param = False
    reply = v2stub.ModelInfer(request, timeout=30)
    loss, grads = client.gradient("mse", input=x, target=y)
    assert len(reply.raw_output_contents) == 0
    assert list(reply.outputs[0].contents.fp32_contents) == [loss]
    assert list(reply.outputs[1].contents.fp32_contents) == grads["input"].tolist()


def test_hessian_outputs_return_lossd_v1s_diagonals(v2stub, client: LossClient) -> None:  # type: ignore[no-untyped-def]
    """outputs [grad_input, hess_input]: the gradient and the Hessian diagonal of LossClient.hessian."""
    logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]], np.float32)
    target = np.array([0, 2], np.int64)
    reply = v2stub.ModelInfer(_request("cross_entropy", {"input": (logits, "FP32"), "target": (target, "INT64")},
                                       ("grad_input", "hess_input")), timeout=30)
    _, grads, diagonals = client.hessian("cross_entropy", input=logits, target=target)
    got = _outputs(reply)
    assert got["grad_input"].tobytes() == grads["input"].tobytes()
    assert got["hess_input"].tobytes() == diagonals["input"].tobytes()


def test_a_hessian_output_of_a_coupled_loss_is_no_output(v2stub) -> None:  # type: ignore[no-untyped-def]
    features = np.ones((4, 3), np.float32)
    code, _, violations = _refusal(v2stub.ModelInfer, _request("info_nce", {"features": (features, "FP32")},
                                                               ("hess_features",)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and violations[0][0] == "outputs[0].name"
