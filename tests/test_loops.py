"""The event loop lossd serves on (lossd.server.loops): uvloop when installed, asyncio when asked for."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys

import numpy as np
import pytest
from pydantic import ValidationError

from lossd.client import LossClient
from lossd.server import loops
from lossd.server.app import BackgroundServer
from lossd.server.settings import ServerSettings

uvloop = pytest.importorskip("uvloop")  # the server extra brings it on Linux and macOS


def test_auto_is_uvloop_when_it_is_installed() -> None:
    assert loops.chosen("auto") == "uvloop"


def test_asyncio_when_asked_for() -> None:
    loop = loops.loop_factory("asyncio")()
    try:
        assert type(loop).__module__.startswith("asyncio")
    finally:
        loop.close()


def test_run_returns_the_coroutines_value_on_uvloop() -> None:
    async def kind() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert loops.run(kind(), "uvloop").startswith("uvloop")


def test_an_unknown_loop_is_refused_by_the_settings() -> None:
    with pytest.raises(ValidationError, match="event_loop"):
        ServerSettings(event_loop="trio")


def test_an_unknown_loop_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="expected one of: auto, uvloop, asyncio"):
        loops.chosen("trio")


@pytest.mark.parametrize("kind", ["uvloop", "asyncio"])
def test_a_server_on_either_loop_computes(kind: str) -> None:
    x = np.arange(6, dtype=np.float32)
    settings = ServerSettings(port=0, metrics_port=0, device="cpu", event_loop=kind)
    with BackgroundServer(settings) as server, LossClient(server.address) as client:
        assert client.compute("mse", input=x, target=x + 2) == pytest.approx(4.0)


def test_the_start_line_names_the_loop() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "lossd.server", "--port", "0", "--metrics-port", "0",
                             "--device", "cpu", "--event-loop", "asyncio"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        line = next((line for line in proc.stdout if "serving on" in line), "")  # bounded: it starts or exits
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert re.search(r"loop=asyncio$", line.strip())
