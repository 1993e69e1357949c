"""Settings: defaults < TOML file < LOSSD_* environment < flags, unknown keys refused, `lossd config`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lossd.server.settings import load_settings


def test_precedence_is_flags_then_environment_then_file_then_defaults(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Each setting comes from the strongest source that sets it, and says so."""
    config = tmp_path / "lossd.toml"
    config.write_text('port = 7000\ndevice = "cpu"\nmax_in_flight = 5\n')
    monkeypatch.setenv("LOSSD_DEVICE", "cpu")
    monkeypatch.setenv("LOSSD_MAX_IN_FLIGHT", "9")
    settings, sources = load_settings({"max_in_flight": 3}, config)
    assert (settings.port, sources["port"]) == (7000, "file")
    assert (settings.max_in_flight, sources["max_in_flight"]) == (3, "flag")
    assert sources["device"] == "env"
    assert (settings.host, sources["host"]) == ("127.0.0.1", "default")
    monkeypatch.delenv("LOSSD_MAX_IN_FLIGHT")
    assert load_settings({}, config)[0].max_in_flight == 5


def test_settings_may_sit_under_a_lossd_table(tmp_path: Path) -> None:
    """A [lossd] table works as well as top-level keys."""
    config = tmp_path / "lossd.toml"
    config.write_text("[lossd]\nworkers = 3\n")
    assert load_settings({}, config)[0].workers == 3


def test_unknown_key_in_the_file_is_an_error(tmp_path: Path) -> None:
    """A misspelt setting is refused by name, not ignored."""
    config = tmp_path / "lossd.toml"
    config.write_text("prot = 1\n")
    with pytest.raises(ValueError, match=r"unknown setting.*prot"):
        load_settings({}, config)


def test_config_command_shows_values_and_sources(tmp_path: Path) -> None:
    """`lossd config` prints every setting with where it came from."""
    config = tmp_path / "lossd.toml"
    config.write_text("port = 7001\n")
    out = subprocess.run([sys.executable, "-m", "lossd.cli", "config", "--config", str(config), "--workers", "2"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert "port = 7001  # file" in out and "workers = 2  # flag" in out and "host = '127.0.0.1'  # default" in out


def test_serve_refuses_a_bad_config_file(tmp_path: Path) -> None:
    """A config file with an unknown key stops `lossd serve` with exit code 2 and the key's name."""
    config = tmp_path / "lossd.toml"
    config.write_text("colour = 'blue'\n")
    out = subprocess.run([sys.executable, "-m", "lossd.server", "--config", str(config)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and "colour" in out.stderr
