"""Logs: JSON lines with the call's request id, an access log, and the id echoed to the caller."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import grpc
import numpy as np
import pytest
from helpers import raw_tensor

from lossd.client import LossClient, LossNotFoundError
from lossd.v1 import loss_service_pb2 as pb
from lossd.v1 import loss_service_pb2_grpc as pb_grpc


@pytest.fixture
def json_server():  # type: ignore[no-untyped-def]
    """`lossd serve --log-format json --access-log` on a free port; yields (process, address)."""
    proc = subprocess.Popen([sys.executable, "-m", "lossd.server", "--port", "0", "--metrics-port", "0",
                             "--device", "cpu", "--log-format", "json", "--access-log"],
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:  # bounded: the start line, or the process exits
        found = re.search(r"serving on 127\.0\.0\.1:(\d+)", json.loads(line)["message"])
        if found:
            yield proc, f"127.0.0.1:{found.group(1)}"
            break
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_access_log_is_json_with_the_callers_request_id(json_server) -> None:  # type: ignore[no-untyped-def]
    """A call with x-request-id is logged as one JSON line carrying it, and the id comes back to the caller."""
    proc, address = json_server
    x = np.ones(3, np.float32)
    with grpc.insecure_channel(address) as ch:
        _, call = pb_grpc.LossServiceStub(ch).Compute.with_call(
            pb.ComputeRequest(loss="mse", inputs={"input": raw_tensor(x), "target": raw_tensor(x)}),
            metadata=(("x-request-id", "trace-abc-123"),), timeout=10)
    assert dict(call.trailing_metadata())["x-request-id"] == "trace-abc-123"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    calls = [r for r in records if r.get("request_id") == "trace-abc-123"]
    assert len(calls) == 1
    assert (calls[0]["method"], calls[0]["loss"], calls[0]["code"], calls[0]["elements"]) == ("Compute", "mse", "OK", 6)
    assert calls[0]["duration_ms"] >= 0


def test_refusals_carry_a_generated_request_id(client: LossClient) -> None:
    """Without x-request-id the server makes one; a refusal hands it to the client's LossError."""
    with pytest.raises(LossNotFoundError) as err:
        client.compute("no-such-loss", input=np.ones(1))
    assert re.fullmatch(r"[0-9a-f]{24}", err.value.request_id)


def test_access_log_gives_a_call_without_an_id_a_new_one(json_server) -> None:  # type: ignore[no-untyped-def]
    """With the access log on, a call without x-request-id gets one, in its reply and in its log line."""
    proc, address = json_server
    x = np.ones(3, np.float32)
    with grpc.insecure_channel(address) as ch:
        _, call = pb_grpc.LossServiceStub(ch).Compute.with_call(
            pb.ComputeRequest(loss="mse", inputs={"input": raw_tensor(x), "target": raw_tensor(x)}), timeout=10)
    made = dict(call.trailing_metadata())["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{24}", made)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert [r["method"] for r in records if r.get("request_id") == made] == ["Compute"]


def test_success_without_an_id_or_access_log_sends_no_id(channel: grpc.Channel) -> None:
    """No caller id and no access log: nobody could correlate a new id, so a successful reply has none."""
    x = np.ones(3, np.float32)
    _, call = pb_grpc.LossServiceStub(channel).Compute.with_call(
        pb.ComputeRequest(loss="mse", inputs={"input": raw_tensor(x), "target": raw_tensor(x)}), timeout=10)
    assert "x-request-id" not in dict(call.trailing_metadata())


def test_callers_request_id_is_echoed_without_the_access_log(channel: grpc.Channel) -> None:
    """A caller's x-request-id comes back in the trailing metadata whether or not calls are logged."""
    x = np.ones(3, np.float32)
    _, call = pb_grpc.LossServiceStub(channel).Compute.with_call(
        pb.ComputeRequest(loss="mse", inputs={"input": raw_tensor(x), "target": raw_tensor(x)}),
        metadata=(("x-request-id", "abc-1"),), timeout=10)
    assert dict(call.trailing_metadata())["x-request-id"] == "abc-1"
