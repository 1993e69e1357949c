"""Plans for small value-only requests (lossd.server.plans): a request shaped like one already validated is answered
without decoding or validating again, with the same bytes, and refused as it always was."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from lossd.client import AsyncLossClient, InvalidArgumentError, LossClient
from lossd.client._codec import encode_array
from lossd.server import BackgroundServer, ServerSettings
from lossd.server.plans import Plans
from lossd.v1 import loss_service_pb2 as pb
from lossd.v1 import wire


@pytest.fixture(scope="module")
def cpu_server() -> Iterator[BackgroundServer]:
    """A server of its own on the CPU, so that its plans count this module's calls alone."""
    with BackgroundServer(ServerSettings(host="127.0.0.1", port=0, metrics_port=0, device="cpu")) as srv:
        yield srv


@pytest.fixture
def plans(cpu_server: BackgroundServer) -> Plans:
    """The server's plans, emptied (each test starts with none learned)."""
    found = cpu_server.server.pipeline.plans
    assert found is not None
    found.clear()
    return found


@pytest.fixture(scope="module")
def compute(cpu_server: BackgroundServer) -> Iterator[grpc.UnaryUnaryMultiCallable]:
    """Compute with raw bytes both ways: replies compared byte for byte."""
    with grpc.insecure_channel(cpu_server.address) as channel:
        yield channel.unary_unary("/lossd.v1.LossService/Compute")


def _request(loss: str, x: np.ndarray, y: np.ndarray, reduction: str = "", **params: float) -> pb.ComputeRequest:
    request = pb.ComputeRequest(loss=loss, reduction=reduction)
    request.inputs["input"].CopyFrom(encode_array(x))
    request.inputs["target"].CopyFrom(encode_array(y))
    for name, value in params.items():
        request.params[name].number = value
    return request


def _pair(rng: np.random.Generator, shape: tuple[int, ...] = (64,), dtype: type = np.float32) -> tuple[np.ndarray, ...]:
    return np.asarray(rng.standard_normal(shape), dtype), np.asarray(rng.standard_normal(shape), dtype)


def test_the_second_request_of_a_structure_is_answered_from_its_plan(cpu_server: BackgroundServer, plans: Plans,
                                                                   rng: np.random.Generator) -> None:
    """Other values, the same loss, dtypes and shapes: one plan learned, then used; the answers are right."""
    with LossClient(cpu_server.address) as client:
        first, second = _pair(rng), _pair(rng)
        values = [client.compute("mse", input=x, target=y) for x, y in (first, second)]
    assert (len(plans), plans.templates, plans.hits) == (1, 1, 1)
    for value, (x, y) in zip(values, (first, second), strict=True):
        assert value == pytest.approx(float(np.mean((x.astype(np.float64) - y) ** 2)), rel=1e-6)


@pytest.mark.parametrize("shape", [(), (3, 5)], ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(("loss", "params"), [("mse", {}), ("mae", {}), ("huber", {"delta": 0.5}),
                                              ("smooth_l1", {"beta": 0.0}), ("SmoothL1Loss", {"beta": 2.0})],
                         ids=["mse", "mae", "huber", "smooth_l1-beta0", "alias"])
def test_a_planned_reply_is_the_whole_way_reply_byte_for_byte(compute: grpc.UnaryUnaryMultiCallable, plans: Plans,
                                                              rng: np.random.Generator, loss: str,
                                                              params: dict[str, float], reduction: str,
                                                              dtype: type, shape: tuple[int, ...]) -> None:
    """The same request twice: first decoded, validated and computed, then answered from the plan; the encoded
    replies are identical (loss name, reduction, device, dtype, shape and every byte of the loss)."""
    encoded = _request(loss, *_pair(rng, shape, dtype), reduction, **params).SerializeToString()
    whole_way = compute(encoded, timeout=30)
    planned = compute(encoded, timeout=30)
    assert plans.hits == 1
    assert planned == whole_way


def test_a_large_unreduced_planned_reply_is_detached_as_the_whole_way_does(compute: grpc.UnaryUnaryMultiCallable,
                                                                        plans: Plans,
                                                                        rng: np.random.Generator) -> None:
    """8K float64 losses (64 KiB, sent without a copy past the message): the same bytes both ways."""
    encoded = _request("mse", *_pair(rng, (8192,), np.float64), "none").SerializeToString()
    assert compute(encoded, timeout=30) == compute(encoded, timeout=30)
    assert plans.hits == 1


def test_parameters_are_part_of_the_structure(cpu_server: BackgroundServer, plans: Plans,
                                              rng: np.random.Generator) -> None:
    """Huber with delta 0.5 and with delta 2: two plans, each answering with its own delta."""
    x, y = _pair(rng)
    with LossClient(cpu_server.address) as client:
        got = [client.compute("huber", input=x, target=y, delta=d) for d in (0.5, 2.0, 0.5, 2.0)]
    assert (len(plans), plans.hits) == (2, 2)
    for value, delta in zip(got, (0.5, 2.0, 0.5, 2.0), strict=True):
        e = np.abs(x.astype(np.float64) - y)
        want = np.where(e <= delta, 0.5 * e**2, delta * (e - 0.5 * delta)).mean()
        assert value == pytest.approx(want, rel=1e-5)


def test_each_shape_of_a_loss_has_its_own_plan(cpu_server: BackgroundServer, plans: Plans,
                                               rng: np.random.Generator) -> None:
    """A caller alternating between two shapes is answered from two plans."""
    with LossClient(cpu_server.address) as client:
        for shape in [(8,), (16,), (8,), (16,), (2, 4)]:
            client.compute("mse", input=np.ones(shape, np.float32), target=np.zeros(shape, np.float32))
    assert (len(plans), plans.hits) == (3, 2)


def _refusal(compute: grpc.UnaryUnaryMultiCallable, request: pb.ComputeRequest) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        compute(request.SerializeToString(), timeout=30)
    return caught.value


def test_a_request_shaped_like_a_plan_with_too_few_bytes_is_refused(compute: grpc.UnaryUnaryMultiCallable,
                                                                    plans: Plans, rng: np.random.Generator) -> None:
    """The plan checks every input's byte count; a short one takes the whole way, which names it."""
    request = _request("mse", *_pair(rng))
    compute(request.SerializeToString(), timeout=30)
    request.inputs["target"].raw_data = request.inputs["target"].raw_data[:-4]
    error = _refusal(compute, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "inputs[target]" in error.details()
    assert plans.hits == 0


def test_a_request_shaped_like_a_plan_carrying_a_typed_list_too_is_refused(compute: grpc.UnaryUnaryMultiCallable,
                                                                           plans: Plans,
                                                                           rng: np.random.Generator) -> None:
    """Raw bytes of the right length plus a float list: one content field too many, refused as ever."""
    request = _request("mse", *_pair(rng))
    compute(request.SerializeToString(), timeout=30)
    request.inputs["input"].float_val.extend([1.0])
    error = _refusal(compute, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "carries both raw_data and float_val" in error.details()
    assert plans.hits == 0


def test_a_request_asking_for_an_output_region_takes_the_whole_way(compute: grpc.UnaryUnaryMultiCallable,
                                                                  plans: Plans, rng: np.random.Generator) -> None:
    """output_shm is not part of any plan: the whole way answers it (here: refuses it, this server has no shared
    memory)."""
    request = _request("mse", *_pair(rng))
    compute(request.SerializeToString(), timeout=30)
    request.output_shm["loss"].name = "lossd-nothing-here"
    error = _refusal(compute, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert plans.hits == 0


def test_requests_sent_as_typed_lists_are_never_planned(cpu_server: BackgroundServer, plans: Plans) -> None:
    """Typed lists are decoded by the whole way every time."""
    with grpc.insecure_channel(cpu_server.address) as channel:
        compute = channel.unary_unary("/lossd.v1.LossService/Compute",
                                      request_serializer=pb.ComputeRequest.SerializeToString,
                                      response_deserializer=pb.ComputeResponse.FromString)
        request = pb.ComputeRequest(loss="mse")
        request.inputs["input"].CopyFrom(pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=[2], float_val=[1.0, 2.0]))
        request.inputs["target"].CopyFrom(pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=[2], float_val=[0.0, 0.0]))
        replies = [compute(request, timeout=30) for _ in range(2)]
    assert np.frombuffer(replies[1].loss.raw_data, np.float32)[0] == pytest.approx(2.5)
    assert (len(plans), plans.hits) == (0, 0)


@pytest.mark.parametrize(("method", "loss"), [("gradient", "mse"), ("compute", "log_cosh")],
                         ids=["gradient", "no-small-kernel"])
def test_calls_without_a_plan_take_the_whole_way_every_time(cpu_server: BackgroundServer, plans: Plans,
                                                           rng: np.random.Generator, method: str, loss: str) -> None:
    """Plans are for values of the losses with a small kernel: a Gradient call, or a loss without a numpy kernel
    (log_cosh), neither learns nor uses one."""
    x, y = _pair(rng)
    with LossClient(cpu_server.address) as client:
        for _ in range(2):
            getattr(client, method)(loss, input=x, target=y)
    assert (len(plans), plans.hits) == (0, 0)


def test_pipelined_requests_use_the_plans(cpu_server: BackgroundServer, plans: Plans,
                                          rng: np.random.Generator) -> None:
    """Items of the Pipeline stream are Compute requests too: answered from the plan, with the unary answers."""
    requests = [dict(zip(("input", "target"), _pair(rng), strict=True)) for _ in range(4)]
    with LossClient(cpu_server.address) as client:
        got = list(client.pipeline("mse", requests))
        assert got == [client.compute("mse", **r) for r in requests]
    assert plans.hits == 7


def test_the_async_client_gets_the_planned_answers(cpu_server: BackgroundServer, plans: Plans,
                                                   rng: np.random.Generator) -> None:
    """Through AsyncLossClient, the same numbers as through the sync one."""
    x, y = _pair(rng)

    async def twice() -> list[float]:
        async with AsyncLossClient(cpu_server.address) as client:
            return [await client.compute("mae", input=x, target=y) for _ in range(2)]

    got = asyncio.run(twice())
    with LossClient(cpu_server.address) as client:
        assert got == [client.compute("mae", input=x, target=y)] * 2
    assert plans.hits == 2


def test_a_refused_request_teaches_no_plan(cpu_server: BackgroundServer, plans: Plans) -> None:
    """Mismatched shapes are refused, every time, and leave nothing learned."""
    with LossClient(cpu_server.address) as client:
        for _ in range(2):
            with pytest.raises(InvalidArgumentError, match="target"):
                client.compute("mse", input=np.ones(4, np.float32), target=np.ones(5, np.float32))
    assert (len(plans), plans.hits) == (0, 0)


def test_the_plans_start_afresh_when_full() -> None:
    """Bounded: past the capacity the cache is emptied and refilled."""
    held = Plans(capacity=2)
    with BackgroundServer(ServerSettings(host="127.0.0.1", port=0, metrics_port=0, device="cpu")) as srv:
        srv.server.pipeline.plans = held
        with LossClient(srv.address) as client:
            for n in (1, 2, 3):
                client.compute("mse", input=np.ones(n, np.float32), target=np.zeros(n, np.float32))
    assert len(held) == 1


def test_a_batching_server_keeps_no_plans() -> None:
    """With batching on, small requests are gathered for the device instead."""
    settings = ServerSettings(host="127.0.0.1", port=0, metrics_port=0, device="cpu", batching="on")
    with BackgroundServer(settings) as srv:
        assert srv.server.pipeline.plans is None


def test_the_wire_parser_leaves_large_planned_requests_in_place(compute: grpc.UnaryUnaryMultiCallable,
                                                                plans: Plans, rng: np.random.Generator) -> None:
    """A request of 64 KiB or more has its tensors left in the received buffer (lossd.v1.wire.parse); its plan reads
    them there."""
    request = _request("mae", *_pair(rng, (8192,)))
    assert request.ByteSize() >= wire.DETACH_BYTES
    encoded = request.SerializeToString()
    assert compute(encoded, timeout=30) == compute(encoded, timeout=30)
    assert plans.hits == 1


def test_a_request_encoded_another_way_is_found_by_its_message(cpu_server: BackgroundServer, plans: Plans,
                                                                compute: grpc.UnaryUnaryMultiCallable,
                                                                rng: np.random.Generator) -> None:
    """The same structure with its inputs in the other order: other bytes, so no template matches, but the parsed
    message is the plan's; answered from it, with the right value."""
    x, y = _pair(rng)
    with LossClient(cpu_server.address) as client:
        client.compute("mse", input=x, target=y)
    reordered = pb.ComputeRequest(loss="mse")
    reordered.inputs["target"].CopyFrom(encode_array(y))
    reordered.inputs["input"].CopyFrom(encode_array(x))
    reply = pb.ComputeResponse.FromString(compute(reordered.SerializeToString(), timeout=30))
    assert plans.hits == 1
    assert np.frombuffer(reply.loss.raw_data, np.float32)[0] == pytest.approx(np.mean((x - y) ** 2), rel=1e-6)


def test_a_request_of_a_templates_length_with_other_bytes_is_not_matched(cpu_server: BackgroundServer,
                                                                          plans: Plans,
                                                                          rng: np.random.Generator) -> None:
    """mse and mae requests of one layout have the same length and differ in the loss name's bytes alone: each is
    answered as itself (every byte outside the tensors is compared)."""
    x, y = _pair(rng)
    with LossClient(cpu_server.address) as client:
        got = [client.compute(loss, input=x, target=y) for loss in ("mse", "mae", "mse", "mae")]
    assert plans.hits == 2
    assert got[0] == got[2] == pytest.approx(float(np.mean((x - y) ** 2)), rel=1e-6)
    assert got[1] == got[3] == pytest.approx(float(np.mean(np.abs(x - y))), rel=1e-6)


def test_a_request_repeating_an_input_is_not_templated(cpu_server: BackgroundServer, plans: Plans,
                                                       compute: grpc.UnaryUnaryMultiCallable,
                                                       rng: np.random.Generator) -> None:
    """Two map entries for "input" (protobuf keeps the last): the plan is learned from the message, but no byte
    template is made of it; the same bytes again are parsed, and answered with the last entry's values."""
    x, y, z = *_pair(rng), rng.standard_normal(64).astype(np.float32)
    first = pb.ComputeRequest(loss="mse")
    first.inputs["input"].CopyFrom(encode_array(z))
    second = pb.ComputeRequest()
    second.inputs["input"].CopyFrom(encode_array(x))
    second.inputs["target"].CopyFrom(encode_array(y))
    encoded = first.SerializeToString() + second.SerializeToString()  # a valid encoding: entries merge by key
    replies = [pb.ComputeResponse.FromString(compute(encoded, timeout=30)) for _ in range(2)]
    want = pytest.approx(float(np.mean((x - y) ** 2)), rel=1e-6)
    assert [np.frombuffer(r.loss.raw_data, np.float32)[0] for r in replies] == [want, want]
    assert (len(plans), plans.hits) == (1, 1)  # the second found by its message, not its bytes
    assert plans.templates == 0


def test_a_plan_learned_from_a_stream_item_gets_a_template_from_its_first_unary_call(
        cpu_server: BackgroundServer, plans: Plans, rng: np.random.Generator) -> None:
    """A Pipeline item teaches a plan but has no bytes of its own to template; the first unary call of that
    structure is found by its message and leaves its encoding's template, which the next call matches."""
    x, y = _pair(rng)
    with LossClient(cpu_server.address) as client:
        list(client.pipeline("mse", [{"input": x, "target": y}]))
        assert (len(plans), plans.templates) == (1, 0)
        client.compute("mse", input=x, target=y)
        assert plans.templates == 1
        client.compute("mse", input=x, target=y)
    assert plans.hits == 2
