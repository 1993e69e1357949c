"""tritonclient's gRPC and HTTP clients, from PyPI and unchanged, compute lossd's losses and gradients.

tritonclient runs in a virtual environment of its own (tests/triton_driver.py): its generated ``inference``
messages and lossd's server's cannot be loaded into one Python process (protobuf's pool refuses a symbol
defined twice), and it holds protobuf below 7. The test builds that environment once per session.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lossd.client import LossClient
from lossd.server import BackgroundServer

HERE = Path(__file__).resolve().parent
LOGITS = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]], np.float32)
CLASSES = np.array([0, 2], np.int64)
X = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def triton_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Python of a fresh virtual environment holding tritonclient[grpc,http] from the registry."""
    venv = tmp_path_factory.mktemp("triton") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    installed = subprocess.run([str(python), "-m", "pip", "install", "-q", "tritonclient[grpc,http]"],
                               capture_output=True, text=True, timeout=900)
    if installed.returncode != 0:
        pytest.skip(f"tritonclient[grpc,http] could not be installed from the registry: {installed.stderr[-500:]}")
    return python


@pytest.fixture(scope="module")
def answers(triton_python: Path, server: BackgroundServer) -> dict[str, Any]:
    done = subprocess.run([str(triton_python), str(HERE / "triton_driver.py"), server.address,
                           server.http_address or ""],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_liveness_readiness_and_metadata(answers: dict[str, Any], protocol: str) -> None:
    got = answers[protocol]
    assert (got["live"], got["ready"], got["model_ready"], got["alias_ready"]) == (True, True, True, True)
    assert got["unknown_ready"] is False and got["server"] == "lossd"
    assert got["metadata"]["inputs"] == [["input", "FP32", [-1, -1]], ["target", "INT64", [-1]],
                                         ["weight", "FP32", [-1]]]
    assert [o[0] for o in got["metadata"]["outputs"]] == ["loss", "grad_input", "grad_target", "hess_input",
                                                          "hess_target"]


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_infer_mse_equals_lossd_client(answers: dict[str, Any], protocol: str, client: LossClient) -> None:
    expected = client.compute("mse", input=X, target=X * 0)
    assert answers[protocol]["mse"] == expected
    half = client.compute("mse", input=X.astype(np.float16), target=X.astype(np.float16) * 0)
    assert answers[protocol]["mse_fp16"] == ["float16", pytest.approx(half, rel=1e-3)]


def test_http_json_tensors_equal_the_binary_ones(answers: dict[str, Any]) -> None:
    assert answers["http"]["mse_json"] == answers["http"]["mse"]


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_infer_cross_entropy_loss_and_gradient_equal_lossd_client(answers: dict[str, Any], protocol: str,
                                                                  client: LossClient) -> None:
    loss, grads = client.gradient("cross_entropy", input=LOGITS, target=CLASSES, label_smoothing=0.1)
    got_loss, got_grad = answers[protocol]["cross_entropy"]
    assert np.float32(got_loss) == np.float32(loss)
    assert np.array(got_grad, np.float32).tobytes() == grads["input"].tobytes()


@pytest.mark.parametrize(("protocol", "status"), [("grpc", "StatusCode.INVALID_ARGUMENT"), ("http", "400")])
def test_a_refusal_raises_tritonclients_exception_naming_the_field(answers: dict[str, Any], protocol: str,
                                                                   status: str) -> None:
    assert answers[protocol]["refused"] == [status, "invalid request: inputs[target]: shape (3,) must equal the "
                                                    "shape of input (4,)"]


@pytest.mark.parametrize(("protocol", "status"), [("grpc", "StatusCode.NOT_FOUND"), ("http", "404")])
def test_an_unknown_model_is_not_found(answers: dict[str, Any], protocol: str, status: str) -> None:
    got_status, message = answers[protocol]["unknown"]
    assert got_status == status and "unknown loss 'no_such_loss'" in message


def test_readme_triton_example_prints_what_the_readme_says(triton_python: Path, server: BackgroundServer,
                                                          tmp_path: Path) -> None:
    """The README's tritonclient example, pasted into Python, prints the output the README shows."""
    section = (HERE.parent / "README.md").read_text().split("### Over gRPC, with Triton's client", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    printed = re.search(r"It prints:\n\n```text\n(.*?)```", section, re.S)
    assert code and printed
    script = tmp_path / "triton_example.py"
    script.write_text(code.group(1).replace("localhost:50051", server.address))
    done = subprocess.run([str(triton_python), str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == printed.group(1)
