"""The benchmark's own code: its GPU scenarios run (here on the CPU, scaled down) and its report writes."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lossd.bench import report
from lossd.bench.gpu import run_gpu
from lossd.bench.measure import PairedThroughput, paired_throughput, process_cpu_seconds
from lossd.bench.scenarios import Row


def test_gpu_scenarios_run_end_to_end_when_pointed_at_the_cpu() -> None:
    """The --gpu code path (servers, clients, floors) runs; scaled down on the CPU it yields three timed rows."""
    rows = run_gpu(quick=True, device="cpu")
    assert [r.scenario.split()[0] for r in rows] == ["CE", "InfoNCE", "MSE"]
    assert all(r.lossd > 0 and r.floor is not None and r.floor > 0 for r in rows)


def test_readme_table_is_replaced_between_the_markers(tmp_path: Path) -> None:
    """update_readme puts the table and picture between the markers and leaves the rest alone."""
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.BENCH_START}\nold\n{report.BENCH_END}\noutro\n")
    host = {"date": "d", "cpu": "c", "cores": 2, "python": "3", "torch": "t", "grpcio": "g", "cuda": None}
    table = report.markdown([Row("s", "ms", 2.0, 1.0, 0.5, 2.0, "<= 3x echo", True)], host)
    report.update_readme(readme, table, "docs/bench/sweep.png")
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old" not in text
    assert "| s | ms | 2 | 1 | 0.5 | 2.00 | <= 3x echo | yes |" in text
    assert "![lossd vs the gRPC ceiling](docs/bench/sweep.png)" in text


def test_paired_ratio_is_the_median_of_ratios_within_rounds() -> None:
    """A slow spell that hits both calls of one round leaves the paired ratio unchanged."""
    paired = PairedThroughput([[100.0, 50.0, 100.0], [200.0, 100.0, 180.0]])
    assert paired.medians == [100.0, 180.0]
    assert paired.ratio() == 0.5  # rounds: 0.5, 0.5, 0.556


def _busy(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


@pytest.mark.skipif(process_cpu_seconds(os.getpid()) is None, reason="needs Linux's /proc")
def test_process_cpu_seconds_counts_the_work_a_process_does() -> None:
    """Half a second of busy work in this process shows in its CPU seconds (/proc counts in 10 ms ticks)."""
    before = process_cpu_seconds(os.getpid())
    _busy(0.5)
    after = process_cpu_seconds(os.getpid())
    assert before is not None and after is not None and 0.45 <= after - before <= 1.0


def test_process_cpu_seconds_is_none_for_a_process_that_is_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert process_cpu_seconds(child.pid) is None


@pytest.mark.skipif(process_cpu_seconds(os.getpid()) is None, reason="needs Linux's /proc")
def test_paired_throughput_charges_each_call_the_cpu_its_server_spent() -> None:
    """A call that burns 2 ms of its server's CPU shows about 2,000 µs per call; one that only waits, far less;
    a call given no pid is not measured."""
    me = os.getpid()
    paired = paired_throughput([lambda: _busy(0.002), lambda: time.sleep(0.002), lambda: None], 1, 240, 30.0,
                               rounds=3, pids=[me, me, None])
    burning, waiting, unmeasured = paired.cpu_medians
    assert burning is not None and 1800 <= burning <= 4000
    assert waiting is not None and waiting < burning / 4
    assert unmeasured is None


def test_markdown_states_the_server_cpu_per_call_of_each_target() -> None:
    host = {"date": "d", "cpu": "c", "cores": 2, "python": "3", "torch": "t", "grpcio": "g", "cuda": None}
    row = Row("MSE 1K floats, c=16", "req/s", 1600.0, 2600.0, None, 0.62, ">= 0.8x faster echo", False,
              {"echo_aio": 2500.0, "echo_sync": 2600.0, "server_cpu_us": {"lossd": 587.4, "echo_sync": 300.2}})
    table = report.markdown([row], host)
    assert ('Server CPU per call in the rounds of "MSE 1K floats, c=16" (user and system, all threads, median): '
            "lossd 587 µs; the echo on grpc's thread-pool server 300 µs.") in table


@pytest.mark.slow
def test_scoring_scenarios_measure_every_path_on_small_datasets() -> None:
    """The batch-scoring section runs every path (in process, remote, floor, ceiling, naive) and reports
    positive rates; its rows carry the targets."""
    import grpc

    from lossd.bench.echo import METHOD
    from lossd.bench.processes import echo_server, lossd_server
    from lossd.bench.scoring import rows_of, run_scoring
    from lossd.v1 import loss_service_pb2_grpc as pb_grpc

    with lossd_server("--device", "cpu") as server, echo_server() as echo, \
            grpc.insecure_channel(server.address) as lossd_channel, grpc.insecure_channel(echo.address) as ch:
        results = run_scoring(server.address, pb_grpc.LossServiceStub(lossd_channel), ch.unary_unary(METHOD),
                              quick=True, sizes=(50_000, 500))
    assert [(r["dataset"], r["gradients"]) for r in results] == [("a", False), ("b", False), ("b", True)]
    for r in results:
        wanted = {"in-process", "floor", "remote", "ceiling"} | ({"naive"} if not r["gradients"] else set())
        assert set(r["rows_per_s"]) == wanted and all(v > 0 for v in r["rows_per_s"].values())
        assert set(r["ratios"]) == {"in-process/floor", "remote/ceiling"}
    rows = rows_of(results, 1.05, {}, Row)
    assert len(rows) == 7 and rows[-1].ok is True
    assert rows[0].target.startswith(">= 0.7x floor, >= 10x naive")


@pytest.mark.slow
def test_v2_scenarios_time_both_fronts_against_their_ceilings() -> None:
    """The Open Inference Protocol's section times V2 gRPC and REST against their echoes (quick sizes): four
    rows, each with a positive time, a ceiling and a target."""
    import grpc

    from lossd.bench.echo import METHOD
    from lossd.bench.processes import echo_server, http_echo_server, lossd_server
    from lossd.bench.v2 import run_v2

    with lossd_server("--device", "cpu", "--http-port", "0") as server, echo_server() as echo, \
            http_echo_server() as http_echo, grpc.insecure_channel(echo.address, options=[
                ("grpc.max_receive_message_length", 1 << 30), ("grpc.max_send_message_length", 1 << 30)]) as ch:
        assert server.http_port > 0
        rows = run_v2(server, ch.unary_unary(METHOD), http_echo, True, Row)
    assert [r.scenario for r in rows] == ["V2 gRPC MSE 1K floats, c=1", "V2 gRPC MSE 4M floats value+grad",
                                          "REST binary MSE 4M floats value+grad", "REST JSON MSE 1K floats, c=1"]
    assert all(r.lossd > 0 and r.ceiling and r.ceiling > 0 and r.target for r in rows)


def test_minimal_service_answers_the_mse_of_its_request() -> None:
    """The same-work reference (lossd.bench.minimal) answers a real Compute call with the inputs' MSE, read by
    lossd's own client."""
    import numpy as np

    from lossd.bench.processes import minimal_server
    from lossd.client import LossClient

    rng = np.random.default_rng(3)
    x, y = rng.random(1024, np.float32), rng.random(1024, np.float32)
    with minimal_server() as server, LossClient(server.address, timeout=30) as client:
        value = client.compute("mse", input=x, target=y)
    assert value == pytest.approx(float(np.mean((x.astype(np.float64) - y) ** 2)), rel=1e-5)


@contextlib.contextmanager
def _scenario_context() -> Iterator[Any]:
    """The servers and clients lossd.bench's small-call scenarios share (lossd, both echoes, the minimal
    service), quick, with every server's pid for the CPU figures."""
    import grpc

    from lossd.bench.echo import METHOD
    from lossd.bench.processes import echo_server, lossd_server, minimal_server
    from lossd.bench.scenarios import Context
    from lossd.client import LossClient
    from lossd.v1 import loss_service_pb2_grpc as pb_grpc

    with lossd_server("--device", "cpu") as server, echo_server() as echo, echo_server(sync=True) as sync_echo, \
            minimal_server() as minimal, LossClient(server.address, timeout=60) as client, \
            LossClient(minimal.address, timeout=60) as minimal_client, \
            grpc.insecure_channel(server.address) as lossd_channel, grpc.insecure_channel(echo.address) as aio_ch, \
            grpc.insecure_channel(sync_echo.address) as sync_ch:
        yield Context(server, echo, client, pb_grpc.LossServiceStub(lossd_channel), aio_ch.unary_unary(METHOD),
                      True, sync_ch.unary_unary(METHOD), minimal_client,
                      {"lossd": server.pid, "echo_aio": echo.pid, "echo_sync": sync_echo.pid, "minimal": minimal.pid})


@pytest.mark.slow
def test_small_throughput_rows_hold_lossd_to_the_echoes_and_to_the_same_work() -> None:
    """The c=16 scenario (quick) measures lossd, both echoes and the minimal service in the same rounds: the
    target row against the faster echo, then an informational row against the minimal service."""
    from lossd.bench.scenarios import mse_small_throughput

    with _scenario_context() as ctx:
        target, same_work = mse_small_throughput(ctx)
    assert (target.scenario, target.target) == ("MSE 1K floats, c=16", ">= 0.8x faster echo")
    assert target.ceiling == max(target.extra["echo_aio"], target.extra["echo_sync"])
    assert same_work.scenario == "MSE 1K floats, c=16, against the same work without lossd's features"
    assert same_work.lossd == target.lossd and same_work.ceiling > 0 and same_work.ratio > 0
    assert same_work.ok is None
    assert set(target.extra["server_cpu_us"]) == {"lossd", "echo_aio", "echo_sync", "minimal"}
    assert all(us > 0 for us in target.extra["server_cpu_us"].values())


@pytest.mark.slow
def test_pipeline_row_holds_the_stream_to_both_unary_echoes_and_states_cpu_per_request() -> None:
    """The pipeline scenario (quick) rates one caller's pipeline against both echoes at c=16, and gives the CPU
    each server spent per request."""
    from lossd.bench.scenarios import mse_pipeline_throughput

    with _scenario_context() as ctx:
        row = mse_pipeline_throughput(ctx)
    assert (row.scenario, row.target) == ("MSE 1K floats, pipeline (depth 16), one caller",
                                          ">= 2x faster unary echo c=16")
    assert row.ceiling == max(row.extra["echo_aio"], row.extra["echo_sync"]) and row.lossd > 0
    assert set(row.extra["server_cpu_us"]) == {"lossd", "echo_aio", "echo_sync"}
    assert all(us > 0 for us in row.extra["server_cpu_us"].values())
