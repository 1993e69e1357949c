"""examples/node: a Node.js program on @grpc/grpc-js and lossd's .proto computes what the Python client does."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from lossd.client import LossClient
from lossd.server import BackgroundServer

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "node"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("node") is None or shutil.which("npm") is None,
                       reason="the Node.js example needs node and npm on PATH (CI has both)"),
]


def test_node_example_prints_the_python_clients_numbers(tmp_path: Path, server: BackgroundServer,
                                                        client: LossClient) -> None:
    """npm installs grpc-js and proto-loader; the example's mse, cross-entropy and gradient equal the client's."""
    for name in ("package.json", "index.js"):
        shutil.copy(EXAMPLE / name, tmp_path / name)
    installed = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=tmp_path,
                               capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-2000:]
    env = {**os.environ, "LOSSD_ADDRESS": server.address, "LOSSD_PROTOS": str(ROOT / "protos")}
    done = subprocess.run(["node", "index.js"], cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    printed = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    pred, truth = np.array([2.5, 0.0, 2.0, 8.0], np.float32), np.array([3.0, -0.5, 2.0, 7.0], np.float32)
    logits = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, 0.3]], np.float32)
    value, grads = client.gradient("cross_entropy", input=logits, target=np.array([0, 1]))
    assert float(printed["mse"]) == pytest.approx(client.compute("mse", input=pred, target=truth), abs=1e-6)
    assert float(printed["cross_entropy"]) == pytest.approx(value, abs=1e-6)
    np.testing.assert_allclose([float(g) for g in printed["grad_input"].split()], grads["input"].ravel(), atol=1e-6)
