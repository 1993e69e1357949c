"""Faults: expired deadlines, memory caps and OOM, SIGTERM under load, a killed worker."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch
from helpers import one_loss_registry

from lossd.client import DeadlineExceededError, LossClient, LossError, ResourceExhaustedError
from lossd.losses import Registry
from lossd.server import BackgroundServer, ServerSettings

X, Y = np.array([3.0]), np.array([1.0])
_STARTED = re.compile(r"serving on 127\.0\.0\.1:(\d+)")


class _Counting:
    """A loss that counts its invocations and waits until released."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = threading.Event()

    def fn(self, input: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        self.calls += 1
        self.release.wait(timeout=20)
        return torch.nn.functional.mse_loss(input, target, reduction=reduction)

    def registry(self) -> Registry:
        return one_loss_registry("counting", self.fn)


def _rejected(srv: BackgroundServer, reason: str) -> float:
    for family in srv.server.metrics.rejected.collect():
        return sum(s.value for s in family.samples if s.name.endswith("_total") and s.labels["reason"] == reason)
    return 0.0


def _dropped(srv: BackgroundServer) -> float:
    """Calls given up unrun: cancelled while waiting (the client's deadline), or found expired when their turn came."""
    cancelled = 0.0
    for family in srv.server.metrics.requests.collect():
        cancelled = sum(s.value for s in family.samples
                        if s.name.endswith("_total") and s.labels["code"] == "CANCELLED")
    return cancelled + _rejected(srv, "expired")


def test_call_whose_deadline_passes_in_the_queue_is_never_computed() -> None:
    """Behind a busy compute thread, a call that times out is dropped unrun, and counted as expired."""
    loss = _Counting()
    settings = ServerSettings(port=0, metrics_port=0, device="cpu", inline_bytes=0, compute_threads=1)
    with BackgroundServer(settings, registry=loss.registry()) as srv, LossClient(srv.address, timeout=30) as c:
        busy = threading.Thread(target=c.compute, args=("counting",), kwargs={"input": X, "target": Y})
        busy.start()
        deadline = time.monotonic() + 10
        while loss.calls == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(DeadlineExceededError):
            c.compute("counting", input=X, target=Y, timeout=1.0)
        time.sleep(0.3)  # the server's copy of the deadline trails the client's by the transit time
        loss.release.set()
        busy.join(timeout=30)
        deadline = time.monotonic() + 10
        while _dropped(srv) == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # had the dropped call run after all, it would have by now
        assert loss.calls == 1
        assert _dropped(srv) == 1


def test_request_over_the_memory_cap_is_refused_and_the_next_one_served() -> None:
    """Working memory past the per-request cap: RESOURCE_EXHAUSTED before allocation; then service goes on."""
    settings = ServerSettings(port=0, metrics_port=0, device="cpu", max_request_memory_mb=1)
    with BackgroundServer(settings) as srv, LossClient(srv.address, timeout=10) as c:
        big = np.ones(100_000, np.float32)
        with pytest.raises(ResourceExhaustedError) as err:
            c.gradient("mse", input=big, target=big)
        assert err.value.fields == ["inputs"]
        assert c.compute("mse", input=X, target=Y) == 4.0
        assert _rejected(srv, "memory_cap") == 1


def test_sigterm_under_load_loses_nothing_accepted() -> None:
    """While 8 clients call, SIGTERM: every call either succeeds or is refused UNAVAILABLE; exit code 0."""
    proc = subprocess.Popen([sys.executable, "-m", "lossd.server", "--port", "0", "--metrics-port", "0",
                             "--device", "cpu"], stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    port = next(int(m.group(1)) for line in proc.stderr if (m := _STARTED.search(line)))
    codes: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + 4

    def load() -> None:
        x = np.random.default_rng(0).random(200_000).astype(np.float32)
        with LossClient(f"127.0.0.1:{port}", timeout=10) as c:
            while time.monotonic() < stop_at:
                try:
                    c.gradient("mse", input=x, target=x)
                    code = "OK"
                except LossError as exc:
                    code = exc.code.name
                with lock:
                    codes.append(code)
                if code != "OK":
                    return

    threads = [threading.Thread(target=load) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(timeout=30)
    assert proc.wait(timeout=30) == 0
    assert codes.count("OK") > 0
    assert set(codes) <= {"OK", "UNAVAILABLE"}, sorted(set(codes))


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        kids.append(int(entry))
            except OSError:
                continue
    return kids


def test_killed_worker_does_not_fail_calls() -> None:
    """--workers 2, one worker SIGKILLed: the client's retries land on the other; every call succeeds."""
    proc = subprocess.Popen([sys.executable, "-m", "lossd.server", "--port", "0", "--metrics-port", "0",
                             "--device", "cpu", "--workers", "2"], stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    ports = []
    for line in proc.stderr:  # bounded: two start lines, or the process exits
        if m := _STARTED.search(line):
            ports.append(int(m.group(1)))
            if len(ports) == 2:
                break
    try:
        with LossClient(f"127.0.0.1:{ports[0]}", channels=4, timeout=20) as c:
            assert [c.compute("mse", input=X, target=Y) for _ in range(8)] == [4.0] * 8
            os.kill(_children(proc.pid)[0], signal.SIGKILL)
            assert [c.compute("mse", input=X, target=Y) for _ in range(30)] == [4.0] * 30
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


@pytest.mark.cuda
def test_cuda_out_of_memory_is_resource_exhausted_and_released() -> None:
    """A real CUDA OOM (memory fraction capped low) is RESOURCE_EXHAUSTED; the next request succeeds."""
    torch.cuda.set_per_process_memory_fraction(0.002)  # ~160-280 MiB on an H100/H200
    try:
        settings = ServerSettings(port=0, metrics_port=0, device="cuda:0", gpu_min_elements=0)
        with BackgroundServer(settings) as srv, LossClient(srv.address, timeout=60, max_message_mb=1024) as c:
            big = np.ones(64 << 20, np.float32)  # 256 MiB per tensor on the device
            with pytest.raises(ResourceExhaustedError):
                c.gradient("mse", input=big, target=big)
            assert c.compute("mse", input=X, target=Y) == 4.0
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
