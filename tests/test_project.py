"""The project's promises about itself: import boundaries, packaging, and a README that tells the truth."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from readme_table import README, split_readme

import lossd.client
import lossd.losses
import lossd.server
from lossd.losses import REGISTRY
from lossd.losses.table import markdown_table


def _modules_after_import(module: str, cwd: Path) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True,
                         cwd=cwd)
    return set(out.stdout.split())


def test_losses_package_imports_no_grpc_protobuf_or_other_parts(tmp_path: Path) -> None:
    """lossd.losses is pure torch: importing it loads no grpc, protobuf, server or client module."""
    loaded = _modules_after_import("lossd.losses", tmp_path)
    forbidden = [m for m in loaded if m.split(".")[0] == "grpc" or m.startswith(("google.protobuf", "lossd.server",
                                                                                   "lossd.client", "lossd.v1"))]
    assert forbidden == []


def test_client_package_imports_no_torch_losses_or_server(tmp_path: Path) -> None:
    """lossd.client needs only numpy and grpcio."""
    loaded = _modules_after_import("lossd.client", tmp_path)
    assert [m for m in loaded if m.split(".")[0] == "torch" or m.startswith(("lossd.losses", "lossd.server"))] == []


@pytest.mark.parametrize("module", ["lossd.integrations.xgboost", "lossd.integrations.lightgbm"])
def test_boosting_integrations_import_neither_their_library_nor_torch(module: str, tmp_path: Path) -> None:
    """They depend on the client alone: XGBoost and LightGBM are whatever calls them; no torch, no server."""
    loaded = _modules_after_import(module, tmp_path)
    assert [m for m in loaded if m.split(".")[0] in ("torch", "xgboost", "lightgbm")
            or m.startswith(("lossd.losses", "lossd.server"))] == []


@pytest.mark.parametrize("module", ["lossd.integrations.torch", "lossd.integrations.jax"])
def test_the_framework_integrations_use_the_client_not_the_server(module: str, tmp_path: Path) -> None:
    loaded = _modules_after_import(module, tmp_path)
    assert [m for m in loaded if m.startswith(("lossd.losses", "lossd.server"))] == []


@pytest.mark.parametrize("bare", ["server", "client", "losses", "protos"])
def test_no_bare_top_level_package_is_installed(bare: str, tmp_path: Path) -> None:
    """Outside the source tree, `import server` (etc.) fails: everything lives under lossd."""
    out = subprocess.run([sys.executable, "-c", f"import {bare}"], capture_output=True, text=True, timeout=60,
                         cwd=tmp_path)
    assert out.returncode != 0 and "ModuleNotFoundError" in out.stderr


@pytest.mark.parametrize("package", [lossd.client, lossd.losses, lossd.server])
def test_public_all_names_exist_once(package: object) -> None:
    """Each package's __all__ lists every name once, and each exists (ruff's RUF022 keeps it sorted)."""
    names = package.__all__  # type: ignore[attr-defined]
    assert len(names) == len(set(names))
    assert [n for n in names if not hasattr(package, n)] == []


def test_every_loss_has_a_docstring_with_shapes() -> None:
    """Every registered loss function documents its formula and shapes."""
    missing = [s.name for s in REGISTRY if not s.fn.__doc__ or "Shapes" not in s.fn.__doc__]
    assert missing == []


def test_readme_loss_table_matches_the_registry() -> None:
    """The README's loss table is exactly what `make readme` generates."""
    _, table, _ = split_readme(README.read_text())
    assert table == markdown_table(REGISTRY)


def _readme_block(heading: str, lang: str) -> str:
    text = README.read_text()
    section = text.split(heading, 1)[1]
    found = re.search(rf"```{lang}\n(.*?)```", section, re.S)
    assert found, f"no {lang} block under {heading}"
    return found.group(1)


def _printed(code: str, address: str, script: Path, timeout: float = 120) -> str:
    """What a README snippet prints, run as a script against the server at ``address``."""
    script.write_text(code.replace("localhost:50051", address))
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=timeout,
                          check=True).stdout


def test_readme_client_example_prints_what_the_readme_says(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The README's client example, pasted into Python, prints the output the README shows."""
    code = _readme_block("## Client example", "python")
    expected = _readme_block("It prints:", "text")
    assert _printed(code, server.address, tmp_path / "example.py") == expected


def test_readme_hessian_example_prints_what_the_readme_says(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The README's Hessian example, pasted into Python, prints the output the README shows."""
    code = _readme_block("### Hessian diagonals", "python")
    expected = _readme_block("### Hessian diagonals", "text")
    assert _printed(code, server.address, tmp_path / "hessian.py") == expected


@pytest.mark.parametrize(("heading", "library"), [("### XGBoost and LightGBM objectives", "xgboost"),
                                                  ("### torch: `RemoteLoss`", "torch"),
                                                  ("### JAX: `remote_loss`", "jax")])
def test_readme_training_examples_print_what_the_readme_says(server, tmp_path: Path, heading: str,  # type: ignore[no-untyped-def]
                                                             library: str) -> None:
    """The README's training snippets (XGBoost, LightGBM, RemoteLoss), pasted into Python, print what it shows."""
    pytest.importorskip(library)
    section = README.read_text().split(heading, 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
    codes = re.findall(r"```python\n(.*?)```", section, re.S)
    printed = re.findall(r"```text\n(.*?)```", section, re.S)
    assert codes and len(codes) == len(printed)
    for i, (code, expected) in enumerate(zip(codes, printed, strict=True)):
        assert _printed(code, server.address, tmp_path / f"training_{i}.py", timeout=300) == expected


def test_readme_names_the_two_setup_commands() -> None:
    """The set-up section gives exactly `make serve` and `make test`."""
    block = _readme_block("## Set up", "sh")
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ["make serve", "make test"]


def test_readme_grpcurl_compute_body_is_valid_json_for_the_contract(stub) -> None:  # type: ignore[no-untyped-def]
    """The README's grpcurl Compute body parses as a ComputeRequest and yields MSE([1,2,3],[1,2,5]) = 4/3."""
    from google.protobuf import json_format

    from lossd.v1 import loss_service_pb2 as pb

    block = _readme_block("## From other languages", "text")
    body = re.search(r"-d '(\{\"loss\".*?\})' localhost", block, re.S)
    assert body, "no Compute body in the README"
    request = json_format.Parse(body.group(1), pb.ComputeRequest())
    reply = stub.Compute(request, timeout=10)
    assert list(reply.loss.double_val) == pytest.approx([4 / 3], rel=1e-12)


def test_readme_pipeline_example_prints_what_the_readme_says(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The README's pipeline example, pasted into Python, prints the output the README shows."""
    code = _readme_block("### Many small requests: `pipeline`", "python")
    expected = _readme_block("### Many small requests: `pipeline`", "text")
    assert _printed(code, server.address, tmp_path / "pipeline.py") == expected
