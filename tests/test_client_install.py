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
import importlib.util, sys
import numpy as np
from lossd.client import LossClient
with LossClient(sys.argv[1], timeout=30) as c:
    value = c.compute("mse", input=np.array([1.0, 2.0], np.float32), target=np.zeros(2, np.float32))
    loss, grads = c.gradient("cross_entropy", input=np.array([[2.0, 0.0]]), target=np.array([0]))
print(importlib.util.find_spec("torch") is None, value, round(loss, 6), grads["input"].round(6).tolist())
"""


@pytest.mark.slow
def test_client_only_install_has_no_torch_and_calls_a_server(tmp_path: Path, server: BackgroundServer) -> None:
    """pip install of the wheel alone: torch is not importable, and compute and gradient work."""
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)],
                   check=True, capture_output=True, timeout=600)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    [wheel] = wheels.glob("lossd-*.whl")
    installed = subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], capture_output=True,
                               text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-2000:]
    done = subprocess.run([str(python), "-c", CLIENT_SCRIPT, server.address], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    no_torch, value, loss, grad = done.stdout.split(maxsplit=3)
    assert no_torch == "True" and float(value) == 2.5
    assert float(loss) == pytest.approx(0.126928, abs=1e-6)
    assert grad.strip() == "[[-0.119203, 0.119203]]"
