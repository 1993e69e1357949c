"""Starting and stopping: the CLI, settings from the environment, and graceful shutdown."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lossd.client import LossClient, LossError, UnavailableError
from lossd.losses import LossSpec, Registry, Role
from lossd.losses.spec import Kind
from lossd.server import BackgroundServer, ServerSettings

_STARTED = re.compile(r"serving on 127\.0\.0\.1:(\d+) device=(\S+) torch=(\S+) losses=(\d+)")


def _start_cli(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], re.Match[str]]:
    """Run `python -m lossd.server` and wait for its start line."""
    proc = subprocess.Popen([sys.executable, "-m", "lossd.server", *args], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:  # bounded: the process either logs its start line or exits
        lines.append(line)
        found = _STARTED.search(line)
        if found:
            return proc, found
    proc.wait(timeout=30)
    raise AssertionError("server exited before serving:\n" + "".join(lines))


@pytest.fixture
def cli_server() -> Iterator[tuple[subprocess.Popen[str], re.Match[str]]]:
    """A `lossd serve` process on a free port, stopped by its pid afterwards."""
    proc, started = _start_cli("--port", "0", "--metrics-port", "0", "--device", "cpu")
    yield proc, started
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=30)


def test_cli_logs_address_device_torch_and_loss_count(cli_server) -> None:  # type: ignore[no-untyped-def]
    """The start line names the bound port, the device, torch's version and the number of losses."""
    _, started = cli_server
    assert int(started.group(1)) > 0
    assert started.group(2) == "cpu"
    assert started.group(3) == torch.__version__
    assert int(started.group(4)) >= 5


def test_cli_server_answers_and_exits_zero_on_sigterm(cli_server) -> None:  # type: ignore[no-untyped-def]
    """The served process computes a loss, then SIGTERM makes it exit with code 0."""
    proc, started = cli_server
    with LossClient(f"127.0.0.1:{started.group(1)}", timeout=10) as c:
        assert c.compute("mse", input=np.array([3.0]), target=np.array([1.0])) == 4.0
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


def test_cli_exits_zero_on_sigint(cli_server) -> None:  # type: ignore[no-untyped-def]
    """Ctrl-C (SIGINT) is a graceful stop too."""
    proc, _ = cli_server
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0


def test_environment_variables_configure_the_server() -> None:
    """LOSSD_PORT/LOSSD_DEVICE are honoured when no flag is given."""
    proc, started = _start_cli("--metrics-port", "0", env={"LOSSD_PORT": "0", "LOSSD_DEVICE": "cpu"})
    try:
        assert started.group(2) == "cpu"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_invalid_setting_is_refused_with_exit_code_2() -> None:
    """A malformed --device is reported by name and the process exits 2 without serving."""
    out = subprocess.run([sys.executable, "-m", "lossd.server", "--device", "tpu"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2
    assert "device" in out.stderr and "cuda:N" in out.stderr


def _parse_serve(*flags: str):  # type: ignore[no-untyped-def]
    import argparse

    from lossd.server.cli import add_commands

    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    return parser.parse_args(["serve", *flags])


def test_flags_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A flag beats the LOSSD_* variable of the same setting, which beats the default."""
    from lossd.server.cli import _settings_from

    monkeypatch.setenv("LOSSD_MAX_MESSAGE_MB", "8")
    assert _settings_from(_parse_serve("--max-message-mb", "16")).max_message_mb == 16.0
    assert _settings_from(_parse_serve()).max_message_mb == 8.0
    monkeypatch.delenv("LOSSD_MAX_MESSAGE_MB")
    assert _settings_from(_parse_serve()).max_message_mb == 64.0


class _Gate:
    """A loss that blocks until released, to hold a call in flight deterministically."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def fn(self, input: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        self.entered.set()
        assert self.release.wait(timeout=30)
        return torch.nn.functional.mse_loss(input, target, reduction=reduction)


def _gated_registry(gate: _Gate) -> Registry:
    roles = (Role("input", (Kind.FLOAT,), "(*)", "x", differentiable=True), Role("target", (Kind.FLOAT,), "(*)", "y"))
    return Registry([LossSpec(name="gated_mse", summary="mse that waits", formula="(x-y)^2", fn=gate.fn,
                              roles=roles, check=lambda t, p: None, unreduced_shape=lambda t, p: ())])


def test_graceful_stop_turns_health_off_first_and_finishes_in_flight_calls() -> None:
    """During stop: health says NOT_SERVING, new calls are refused, the in-flight call still succeeds."""
    gate = _Gate()
    settings = ServerSettings(port=0, metrics_port=0, device="cpu", inline_bytes=0)
    srv = BackgroundServer(settings, registry=_gated_registry(gate)).start()
    results: dict[str, object] = {}
    client = LossClient(srv.address, timeout=30)

    def in_flight() -> None:
        results["value"] = client.compute("gated_mse", input=np.array([2.0]), target=np.array([0.0]))

    caller = threading.Thread(target=in_flight)
    caller.start()
    assert gate.entered.wait(timeout=30)
    with grpc.insecure_channel(srv.address) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        stopper = threading.Thread(target=srv.stop, kwargs={"grace": 20.0})
        stopper.start()
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
    with LossClient(srv.address, timeout=5) as late, pytest.raises(UnavailableError):
        late.compute("gated_mse", input=np.array([1.0]), target=np.array([0.0]))
    gate.release.set()
    caller.join(timeout=30)
    stopper.join(timeout=30)
    client.close()
    assert results["value"] == 4.0


def _broken(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    raise RuntimeError("secret detail from deep inside")


def test_unexpected_exception_is_internal_with_a_generic_message(caplog: pytest.LogCaptureFixture) -> None:
    """A bug in a loss answers INTERNAL without its text; the traceback goes to the log; serving goes on."""
    roles = (Role("input", (Kind.FLOAT,), "(*)", "x", differentiable=True), Role("target", (Kind.FLOAT,), "(*)", "y"))
    registry = Registry([
        LossSpec(name="broken", summary="raises", formula="-", fn=_broken, roles=roles, check=lambda t, p: None,
                 unreduced_shape=lambda t, p: ()),
        LossSpec(name="fine", summary="mse", formula="-", fn=torch.nn.functional.mse_loss, roles=roles,
                 check=lambda t, p: None, unreduced_shape=lambda t, p: ()),
    ])
    settings = ServerSettings(port=0, metrics_port=0, device="cpu")
    with BackgroundServer(settings, registry=registry) as srv, LossClient(srv.address, timeout=10) as c:
        with pytest.raises(LossError) as err:
            c.compute("broken", input=np.ones(2), target=np.ones(2))
        assert err.value.code == grpc.StatusCode.INTERNAL
        assert "secret" not in err.value.message and "Traceback" not in err.value.message
        assert c.compute("fine", input=np.array([2.0]), target=np.array([0.0])) == 4.0
    assert any("secret detail" in r.exc_text for r in caplog.records if r.exc_text)


def test_workers_share_one_port_and_stop_together() -> None:
    """--workers 2 starts two servers on the same port; calls over several channels succeed; SIGTERM exits 0."""
    proc = subprocess.Popen([sys.executable, "-m", "lossd.server", "--port", "0", "--metrics-port", "0",
                             "--device", "cpu", "--workers", "2"], stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    ports = []
    try:
        for line in proc.stderr:  # bounded: two start lines, or the process exits
            found = _STARTED.search(line)
            if found:
                ports.append(int(found.group(1)))
                if len(ports) == 2:
                    break
        assert len(ports) == 2 and ports[0] == ports[1]
        with LossClient(f"127.0.0.1:{ports[0]}", channels=4, timeout=10) as c:
            assert [c.compute("mse", input=np.array([float(i)]), target=np.array([0.0])) for i in range(8)] == [
                float(i * i) for i in range(8)]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0


def test_client_refuses_zero_channels() -> None:
    """channels must be at least 1."""
    with pytest.raises(ValueError, match="channels"):
        LossClient("127.0.0.1:1", channels=0)


def test_health_command_reports_serving_without_loading_torch(server: BackgroundServer) -> None:
    """`lossd health` exits 0 printing SERVING, and (cheap enough for frequent probes) never imports torch."""
    code = ("import sys; from lossd.cli.main import main; rc = main(['health', '--address', sys.argv[1]]); "
            "print('torch loaded' if 'torch' in sys.modules else 'torch not loaded'); sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code, server.address], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    assert out.stdout.split() == ["SERVING", "torch", "not", "loaded"]
