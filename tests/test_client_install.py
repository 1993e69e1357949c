"""The client alone: lossd's wheel installed into a fresh virtual environment without the server's
dependencies brings no torch, and calls a running server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lossd.server import BackgroundServer

ROOT = Path(__file__).resolve().parent.parent

CLIENT_SCRIPT = """
import asyncio, importlib.util, sys
import numpy as np
import google.protobuf, grpc
from lossd.client import AsyncLossClient, LossClient
with LossClient(sys.argv[1], timeout=30) as c:
    value = c.compute("mse", input=np.array([1.0, 2.0], np.float32), target=np.zeros(2, np.float32))
    loss, grads = c.gradient("cross_entropy", input=np.array([[2.0, 0.0]]), target=np.array([0]))
async def main():
    async with AsyncLossClient(sys.argv[1], timeout=30) as c:
        return await c.compute("mae", input=np.ones(3), target=np.zeros(3))
assert asyncio.run(main()) == 1.0
print(google.protobuf.__version__, grpc.__version__, file=sys.stderr)
print(importlib.util.find_spec("torch") is None, value, round(loss, 6), grads["input"].round(6).tolist())
"""
# The oldest versions the client supports (pyproject.toml): the stubs' protobuf 5.29 gencode and grpcio 1.71.
OLDEST = ["protobuf==5.29.1", "grpcio==1.71.0", "grpcio-status==1.71.0", "grpcio-health-checking==1.71.0"]


@pytest.mark.slow
@pytest.mark.parametrize("versions", ["newest", "oldest", "beside-tritonclient"])
def test_client_only_install_has_no_torch_and_calls_a_server(tmp_path: Path, server: BackgroundServer,
                                                            versions: str) -> None:
    """pip install of the wheel alone, with the newest dependencies, the oldest supported ones (protobuf
    5.29, grpcio 1.71), or beside tritonclient[grpc] (which holds protobuf below 7): torch is not importable,
    and compute and gradient work, sync and async."""
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)],
                   check=True, capture_output=True, timeout=600)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    [wheel] = wheels.glob("lossd-*.whl")
    pins: list[str] = []
    if versions == "oldest":
        (tmp_path / "oldest.txt").write_text("\n".join(OLDEST) + "\n")
        pins = ["-c", str(tmp_path / "oldest.txt")]
    beside = ["tritonclient[grpc]"] if versions == "beside-tritonclient" else []
    installed = subprocess.run([str(python), "-m", "pip", "install", "-q", *pins, *beside, str(wheel)],
                               capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-2000:]
    done = subprocess.run([str(python), "-c", CLIENT_SCRIPT, server.address], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    if versions == "oldest":
        assert done.stderr.split() == ["5.29.1", "1.71.0"]
    if beside:
        triton = subprocess.run([str(python), "-c", "import tritonclient.grpc, google.protobuf as p; "
                                 "print(p.__version__)"], capture_output=True, text=True, timeout=120)
        assert triton.returncode == 0 and int(triton.stdout.split(".")[0]) < 7, triton.stderr[-2000:]
    no_torch, value, loss, grad = done.stdout.split(maxsplit=3)
    assert no_torch == "True" and float(value) == 2.5
    assert float(loss) == pytest.approx(0.126928, abs=1e-6)
    assert grad.strip() == "[[-0.119203, 0.119203]]"
