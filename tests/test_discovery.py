"""Health checking, server reflection and ListLosses: a client can find and call lossd knowing nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import grpc
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from grpc_health.v1 import health_pb2, health_pb2_grpc
from helpers import raw_tensor

from lossd.losses import REGISTRY
from lossd.v1 import loss_service_pb2 as pb


def test_health_reports_serving_for_the_server(channel: grpc.Channel) -> None:
    """The standard health service answers SERVING for the whole server."""
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_health_reports_serving_for_the_loss_service(channel: grpc.Channel) -> None:
    """The health service knows lossd.v1.LossService by name."""
    request = health_pb2.HealthCheckRequest(service="lossd.v1.LossService")
    reply = health_pb2_grpc.HealthStub(channel).Check(request, timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_health_unknown_service_is_not_found(channel: grpc.Channel) -> None:
    """Asking about a service the server does not run gives NOT_FOUND."""
    with pytest.raises(grpc.RpcError) as err:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="nope.v1.X"), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


# Runs in a fresh interpreter that never imports lossd: everything it knows comes from reflection,
# as it would for grpcurl or a client in another language.
_REFLECTION_CLIENT = textwrap.dedent("""
    import json, struct, sys
    import grpc
    from google.protobuf.descriptor_pool import DescriptorPool
    from google.protobuf.message_factory import GetMessageClass
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    channel = grpc.insecure_channel(sys.argv[1])
    db = ProtoReflectionDescriptorDatabase(channel)
    services = sorted(db.get_services())
    pool = DescriptorPool(db)
    service = pool.FindServiceByName("lossd.v1.LossService")
    method = service.methods_by_name["Compute"]
    Request = GetMessageClass(method.input_type)
    Response = GetMessageClass(method.output_type)
    f32 = pool.FindEnumTypeByName("lossd.v1.DType").values_by_name["DTYPE_FLOAT32"].number
    req = Request(loss="MSELoss")
    req.inputs["input"].dtype = f32
    req.inputs["input"].shape.append(3)
    req.inputs["input"].raw_data = struct.pack("<3f", 1.0, 2.0, 3.0)
    req.inputs["target"].dtype = f32
    req.inputs["target"].shape.append(3)
    req.inputs["target"].float_val.extend([1.0, 2.0, 5.0])
    call = channel.unary_unary("/lossd.v1.LossService/Compute", request_serializer=Request.SerializeToString,
                               response_deserializer=Response.FromString)
    reply = call(req, timeout=10)
    value = struct.unpack("<f", reply.loss.raw_data)[0]
    print(json.dumps({"services": services, "methods": sorted(service.methods_by_name),
                      "value": value, "loss_name": reply.loss_name, "lossd_imported": "lossd" in sys.modules}))
""")


@pytest.fixture(scope="module")
def reflected(server) -> dict:  # type: ignore[no-untyped-def]
    """What a generic client that only uses reflection found and computed."""
    out = subprocess.run([sys.executable, "-c", _REFLECTION_CLIENT, server.address], capture_output=True,
                         text=True, timeout=60, check=True)
    return json.loads(out.stdout)


def test_reflection_lists_the_services(reflected: dict) -> None:
    """Reflection advertises the loss service, health and reflection itself."""
    assert {"lossd.v1.LossService", "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection"} <= set(reflected["services"])


def test_reflection_describes_the_methods(reflected: dict) -> None:
    """The service's methods are discoverable without the .proto."""
    assert reflected["methods"] == ["Compute", "ComputeStream", "Gradient", "GradientStream", "ListLosses",
                                   "Pipeline"]


def test_reflection_alone_is_enough_to_compute_a_loss(reflected: dict) -> None:
    """A client built only from reflected descriptors gets MSE([1,2,3],[1,2,5]) = 4/3."""
    assert not reflected["lossd_imported"]
    assert reflected["loss_name"] == "mse"
    assert reflected["value"] == pytest.approx(4 / 3, rel=1e-6)


def test_list_losses_returns_every_registered_loss(stub) -> None:  # type: ignore[no-untyped-def]
    """ListLosses lists exactly the registry's canonical names."""
    reply = stub.ListLosses(pb.ListLossesRequest(), timeout=10)
    assert sorted(info.name for info in reply.losses) == sorted(spec.name for spec in REGISTRY)


def test_list_losses_by_alias_describes_one_loss(stub) -> None:  # type: ignore[no-untyped-def]
    """Asking for an alias returns that loss's description only."""
    reply = stub.ListLosses(pb.ListLossesRequest(name="CrossEntropyLoss"), timeout=10)
    assert [info.name for info in reply.losses] == ["cross_entropy"]


def test_list_losses_describes_roles_params_and_reductions(stub) -> None:  # type: ignore[no-untyped-def]
    """cross_entropy's description carries its roles, parameter ranges, reductions and defaults."""
    info = stub.ListLosses(pb.ListLossesRequest(name="cross_entropy"), timeout=10).losses[0]
    roles = {r.name: r for r in info.inputs}
    assert list(roles) == ["input", "target", "weight"]
    assert roles["input"].required and roles["input"].differentiable
    assert not roles["weight"].required and not roles["weight"].differentiable
    assert pb.DTYPE_INT64 in roles["target"].dtypes and pb.DTYPE_FLOAT32 in roles["target"].dtypes
    params = {p.name: p for p in info.params}
    smoothing = params["label_smoothing"]
    assert (smoothing.type, smoothing.minimum, smoothing.maximum) == (pb.PARAM_TYPE_FLOAT, 0.0, 1.0)
    assert params["ignore_index"].default.integer == -100
    assert list(info.reductions) == ["mean", "sum", "none"]
    assert info.default_reduction == "mean"
    assert list(info.default_wrt) == ["input"]
    assert "MSELoss" not in info.aliases and "CrossEntropyLoss" in info.aliases


def test_list_losses_unknown_name_is_not_found(stub) -> None:  # type: ignore[no-untyped-def]
    """Describing a loss that does not exist gives NOT_FOUND."""
    with pytest.raises(grpc.RpcError) as err:
        stub.ListLosses(pb.ListLossesRequest(name="no_such_loss"), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def _example_array(role: pb.RoleInfo, rng: np.random.Generator) -> np.ndarray:
    """Inputs a generic client would build from the role's description: float (4, 3), or int (4,)."""
    if pb.DTYPE_FLOAT32 in role.dtypes:
        return rng.random((4, 3)).astype(np.float32)
    return rng.integers(0, 3, size=4)


@pytest.mark.parametrize("name", ["bce_with_logits", "cross_entropy", "huber", "mae", "mse"])
def test_request_built_from_list_losses_alone_succeeds(stub, name: str) -> None:  # type: ignore[no-untyped-def]
    """Filling every required role of (4, 3) floats from ListLosses gives the torch value for each loss."""
    rng = np.random.default_rng(7)
    info = stub.ListLosses(pb.ListLossesRequest(name=name), timeout=10).losses[0]
    arrays = {r.name: _example_array(r, rng) for r in info.inputs if r.required}
    request = pb.ComputeRequest(loss=name, inputs={k: raw_tensor(v) for k, v in arrays.items()})
    reply = stub.Compute(request, timeout=10)
    got = np.frombuffer(reply.loss.raw_data, dtype="<f4")[0]
    t = {k: torch.from_numpy(v) for k, v in arrays.items()}
    expected = {
        "mse": F.mse_loss, "mae": F.l1_loss, "huber": F.huber_loss,
        "cross_entropy": F.cross_entropy, "bce_with_logits": F.binary_cross_entropy_with_logits,
    }[name](t["input"], t["target"])
    assert got == pytest.approx(float(expected), rel=1e-6)
