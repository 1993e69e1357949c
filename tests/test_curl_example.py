"""The REST front from the shell: the README's curl lines, run as written (against the test server's address),
print what the README says; examples/curl.sh runs against a live server."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lossd.server import BackgroundServer

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed on this machine")


def _same_device(text: str) -> str:
    return re.sub(r'"device":"[^"]*"', '"device":"cpu"', text)  # the server may place a call on a GPU


def test_readme_curl_lines_print_what_the_readme_says(server: BackgroundServer) -> None:
    section = README.split("### REST, with curl", 1)[1]
    commands = re.search(r"```sh\n(.*?)```", section, re.S)
    printed = re.search(r"They print.*?```text\n(.*?)```", section, re.S)
    assert commands and printed and server.http_address
    done = subprocess.run(["bash", "-c", commands.group(1).replace("localhost:8000", server.http_address)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert _same_device(done.stdout) == printed.group(1)


def test_examples_curl_sh_computes_against_a_live_server(server: BackgroundServer) -> None:
    """The script reads LOSSD_HTTP; it prints readiness, mse, cross_entropy with its gradient, an unreduced
    huber, and a refusal with its HTTP status."""
    assert server.http_address
    done = subprocess.run(["sh", str(ROOT / "examples" / "curl.sh")], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "LOSSD_HTTP": server.http_address})
    assert done.returncode == 0, done.stderr
    replies = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert replies[0] == {"ready": True}
    assert replies[1]["outputs"][0]["data"] == [7.5]
    assert [o["name"] for o in replies[2]["outputs"]] == ["loss", "grad_input"]
    assert replies[2]["outputs"][0]["data"] == [pytest.approx(0.70162714, rel=1e-6)]
    assert replies[3]["outputs"][0]["data"] == pytest.approx([0.005, 0.375, 1.375])
    assert replies[4]["details"][0]["field"] == "inputs[target]" and done.stdout.rstrip().endswith("HTTP 400")
