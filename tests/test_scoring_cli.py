"""``lossd score`` as a user runs it: exit codes, the printed summary, progress, Ctrl-C, SIGKILL and --resume,
and memory that does not grow with the dataset."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import scoring_data as data

from lossd.scoring.cli import parse_param
from lossd.server import BackgroundServer

LOSSD = [sys.executable, "-m", "lossd.cli"]


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LOSSD, "score", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def regression_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("score") / "preds.parquet")
    pq.write_table(data.regression(), path, row_group_size=500)
    return path


def _big_classification(path: Path, rows: int) -> str:
    rng = np.random.default_rng(9)
    logits = rng.standard_normal((rows, data.CLASSES)).astype(np.float32)
    table = pa.table({"id": np.arange(rows), "logits": data.fixed_list(logits),
                      "label": rng.integers(0, data.CLASSES, rows)})
    pq.write_table(table, path, row_group_size=20_000)
    return str(path)


@pytest.mark.parametrize("text, expected", [("delta=0.5", ("delta", 0.5)), ("weights=[1,2]", ("weights", [1, 2])),
                                            ("flag=true", ("flag", True)), ("mode=mean", ("mode", "mean"))])
def test_param_values_parse_as_json_else_as_strings(text: str, expected: tuple) -> None:
    """--param NAME=VALUE: JSON where it parses, a string otherwise."""
    assert parse_param(text) == expected


def test_prints_the_summary_and_exits_0(regression_file: str, tmp_path: Path) -> None:
    """A finished run prints rows, mean, percentiles and rate, writes PATH.summary.json, and exits 0."""
    out = tmp_path / "out"
    done = _run(regression_file, "--loss", "huber", "--map", "input=pred", "--map", "target=label",
                "--param", "delta=0.5", "--out", str(out), "--slice-by", "country", "--quiet")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].split() == ["rows", "mean", "sum", "p50", "p90", "p99", "max"]
    assert done.stdout.splitlines()[1].split()[:2] == ["all", f"{data.ROWS:,}"]
    assert {line.split()[0] for line in done.stdout.splitlines()[2:6]} == {"de", "fr", "jp", "us"}
    summary = json.loads((tmp_path / "out.summary.json").read_text())
    assert summary["rows"] == data.ROWS and summary["slice_by"] == "country"


def test_refused_data_exits_1_naming_file_row_and_column(tmp_path: Path) -> None:
    """Exit 1, and the message says file, row and column."""
    source = data.classification()
    labels = source.column("label").to_numpy().copy()
    labels[1500] = -3
    path = tmp_path / "scores.parquet"
    pq.write_table(source.set_column(2, "label", pa.array(labels)), path)
    done = _run(str(path), "--loss", "cross_entropy", "--map", "input=logits", "--map", "target=label",
                "--out", str(tmp_path / "out"), "--quiet")
    assert done.returncode == 1
    assert f"{path}, row 1,500, column label: class index -3 is outside [0, 5)" in done.stderr


@pytest.mark.parametrize("args, message", [
    (["--loss", "info_nce", "--map", "features=vec"], "does not give each row a loss of its own"),
    (["--loss", "no_such_loss", "--map", "input=pred"], "no_such_loss"),
    (["--loss", "mse", "--map", "input=pred", "--map", "target=missing"], "no column 'missing'"),
    (["--loss", "mse", "--map", "input"], "expected ROLE=COLUMN"),
], ids=["row-coupled-loss", "unknown-loss", "unknown-column", "bad-map"])
def test_usage_errors_exit_2(regression_file: str, tmp_path: Path, args: list[str], message: str) -> None:
    """A job that cannot work exits 2 before scoring anything, saying why."""
    done = _run(regression_file, *args, "--out", str(tmp_path / "out"), "--quiet")
    assert done.returncode == 2
    assert message in done.stderr


def test_no_server_reachable_exits_3(regression_file: str, tmp_path: Path) -> None:
    """--server pointing at nothing: exit 3 once the retries are spent."""
    stopped = BackgroundServer().start()
    address = stopped.address
    stopped.stop()
    env = {**os.environ, "LOSSD_SCORE_RETRY_SECONDS": "1"}
    done = subprocess.run([*LOSSD, "score", regression_file, "--loss", "mse", "--map", "input=pred", "--map",
                           "target=label", "--out", str(tmp_path / "out"), "--server", address, "--quiet"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 3
    assert "no lossd server answered" in done.stderr


def test_progress_is_logged_when_stderr_is_not_a_terminal(regression_file: str, tmp_path: Path) -> None:
    """Without a terminal, progress is a log line (here forced every 0 s); --quiet prints none."""
    env = {**os.environ, "LOSSD_SCORE_LOG_EVERY_S": "0"}
    args = [regression_file, "--loss", "mse", "--map", "input=pred", "--map", "target=label", "--batch-rows", "500"]
    loud = subprocess.run([*LOSSD, "score", *args, "--out", str(tmp_path / "a")], capture_output=True, text=True,
                          timeout=120, env=env)
    assert f"lossd score: 2,000 of {data.ROWS:,} rows" in loud.stderr
    quiet = subprocess.run([*LOSSD, "score", *args, "--out", str(tmp_path / "b"), "--quiet"], capture_output=True,
                           text=True, timeout=120, env=env)
    assert quiet.stderr == ""


def _start(path: str, out: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*LOSSD, "score", path, "--loss", "cross_entropy", "--map", "input=logits", "--map",
                             "target=label", "--keep", "id", "--gradients", "--out", str(out), "--batch-rows", "10000",
                             "--in-flight", "1", "--quiet", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _wait_for_parts(out: Path, parts: int, proc: subprocess.Popen[str], limit_s: float = 60) -> None:
    manifest = out / "_lossd_manifest.json"
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if len(json.loads(manifest.read_text())["parts"]) >= parts:
                return
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.02)
    raise AssertionError("the run did not reach the parts to interrupt at")


@pytest.mark.slow
def test_sigkill_midway_then_resume_gives_the_uninterrupted_rows(tmp_path: Path) -> None:
    """Killed with SIGKILL midway, a --resume run ends with exactly the rows of an uninterrupted run."""
    path = _big_classification(tmp_path / "big.parquet", 400_000)
    out = tmp_path / "out"
    proc = _start(path, out)
    _wait_for_parts(out, 3, proc)
    proc.kill()
    proc.wait(timeout=30)
    manifest = json.loads((out / "_lossd_manifest.json").read_text())
    assert not manifest["complete"] and len(manifest["parts"]) < 40
    resumed = _start(path, out, "--resume")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read() if resumed.stderr else ""
    whole = _start(path, tmp_path / "whole")
    assert whole.wait(timeout=300) == 0
    got, want = ds.dataset(out).to_table(), ds.dataset(tmp_path / "whole").to_table()
    assert got.num_rows == 400_000 and got.equals(want)


@pytest.mark.slow
def test_ctrl_c_stops_after_the_part_and_prints_the_resume_command(tmp_path: Path) -> None:
    """SIGINT: the run stops cleanly after the part in progress, exits 130 and prints how to carry on."""
    path = _big_classification(tmp_path / "big.parquet", 400_000)
    out = tmp_path / "out"
    proc = _start(path, out)
    _wait_for_parts(out, 2, proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "to carry on:" in stderr and "--resume" in stderr.splitlines()[-1]
    manifest = json.loads((out / "_lossd_manifest.json").read_text())
    assert not manifest["complete"]
    assert sorted(os.listdir(out)) == ["_lossd_manifest.json", *[p["file"] for p in manifest["parts"]]]


# The child's own peak: VmHWM belongs to its address space, made anew by exec (ru_maxrss is carried over
# from the parent across fork and exec, so it would report the parent's size).
MEMORY_SCRIPT = """
import sys
from lossd.scoring.cli import main
code = main(sys.argv[1:])
print(next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")))
sys.exit(code)
"""


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_dataset(tmp_path: Path) -> None:
    """Scoring a file 10x larger (10M rows, 80 MB, against 1M rows; two float32 columns, mse, 200,000-row
    batches, row groups of 262,144) with the same settings raises peak RSS by less than 20%: memory follows the
    batch size and the batches in flight, not the dataset."""
    peaks = []
    for rows in (1_000_000, 10_000_000):
        rng = np.random.default_rng(rows)
        path = tmp_path / f"r{rows}.parquet"
        pq.write_table(pa.table({"pred": rng.standard_normal(rows, np.float32),
                                 "label": rng.standard_normal(rows, np.float32)}), path, row_group_size=1 << 18)
        done = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(path), "--loss", "mse", "--map", "input=pred",
                               "--map", "target=label", "--out", str(tmp_path / f"out{rows}"), "--batch-rows", "200000",
                               "--quiet"],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        peaks.append(int(done.stdout.split()[-1]))
    assert peaks[1] < 1.2 * peaks[0], f"peak RSS {peaks[0] >> 10} MiB for 1M rows, {peaks[1] >> 10} MiB for 10M"
