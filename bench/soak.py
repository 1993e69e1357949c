"""``lossd soak``: many concurrent clients for a while, mixed losses, sizes, methods and a few bad requests.

It reports what was served, the errors by code (only the deliberate ones are allowed), p50/p99
latency, and the server's RSS and open file descriptors after warm-up and at the end (growth under
10%, no descriptor leak). Bounded in time and in requests; the server runs on loopback in its own
process and is stopped by its pid.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import grpc
import numpy as np

from lossd.bench.processes import ServerProcess, lossd_server
from lossd.client import LossClient, LossError

# (weight, size in elements): mostly small calls, now and then a large one (4M floats = 16 MiB).
_SIZES = ((60, 1_000), (25, 16_000), (10, 256_000), (4, 1_000_000), (1, 4_000_000))
# At most this many large (>= 1M element) calls at once: the server's heap high-water mark is set by the
# largest concurrent working set, which is then reached during warm-up instead of whenever 64 clients
# happen to line up their 16 MiB calls, so the growth measured after warm-up means a leak, not bad luck.
_LARGE_AT_ONCE = threading.BoundedSemaphore(2)
_BAD = {"unknown loss": grpc.StatusCode.NOT_FOUND, "class index out of range": grpc.StatusCode.INVALID_ARGUMENT}


@dataclass
class SoakReport:
    """What a soak run found."""

    seconds: float
    clients: int
    served: int
    errors: dict[str, int]
    unexpected: dict[str, int]
    p50_ms: float
    p99_ms: float
    rss_warm_mib: float
    rss_end_mib: float
    fds_warm: int
    fds_end: int

    @property
    def ok(self) -> bool:
        """Only deliberate errors, RSS grown under 10% after warm-up, no descriptor leak."""
        return (not self.unexpected and self.rss_end_mib <= 1.10 * self.rss_warm_mib
                and self.fds_end <= self.fds_warm + 4 and self.served > 0)


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _at_rest(server: ServerProcess, lock: threading.Lock, busy: list[int]) -> tuple[int, int]:
    """RSS and open descriptors once no call is in flight (bounded wait), after a short settle."""
    limit = time.monotonic() + 60
    while time.monotonic() < limit:
        with lock:
            if busy[0] == 0:
                break
        time.sleep(0.01)
    time.sleep(2.5)  # the server trims its retained heap after a second idle
    return server.rss_bytes(), _fds(server.pid)


def _one_call(client: LossClient, rng: random.Random, arrays: dict[int, tuple[np.ndarray, np.ndarray]]) -> None:
    """One random call: 2% unknown losses and 2% bad class indices (the deliberate errors), else real work."""
    roll = rng.random()
    if roll < 0.02:
        client.compute("no_such_loss", input=arrays[1_000][0])
        return
    if roll < 0.04:
        client.compute("cross_entropy", input=np.zeros((4, 3), np.float32), target=np.array([0, 1, 2, 3]))
        return
    size = rng.choices([s for _, s in _SIZES], weights=[w for w, _ in _SIZES])[0]
    x, y = arrays[size]
    loss = rng.choice(["mse", "huber", "bce_with_logits", "cross_entropy"])
    if loss == "cross_entropy":
        rows = max(1, size // 100)
        x2 = x[: rows * 100].reshape(rows, 100)
        target = (y[:rows] * 99).astype(np.int64)
        inputs = {"input": x2, "target": target}
    else:
        inputs = {"input": x, "target": y}
    call = client.compute if rng.random() < 0.5 else client.gradient
    if size >= 1_000_000:
        with _LARGE_AT_ONCE:
            call(loss, inputs=inputs)
    else:
        call(loss, inputs=inputs)


def run_soak(seconds: float, clients: int, max_requests: int = 10_000_000) -> SoakReport:
    """Soak a fresh server; bounded by ``seconds`` and ``max_requests``."""
    rng = np.random.default_rng(0)
    arrays = {s: (rng.random(s, np.float32), rng.random(s, np.float32)) for _, s in _SIZES}
    with lossd_server("--device", "cpu") as server:
        return _soak(server, arrays, seconds, clients, max_requests)


def _soak(server: ServerProcess, arrays: dict[int, tuple[np.ndarray, np.ndarray]], seconds: float,
          clients: int, max_requests: int) -> SoakReport:
    lock = threading.Lock()
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    unexpected: Counter[str] = Counter()
    budget = [max_requests]
    start = time.monotonic()
    deadline = start + seconds
    running = threading.Event()
    running.set()
    busy = [0]

    def worker(index: int) -> None:
        pick = random.Random(index)
        with LossClient(server.address, timeout=60, max_message_mb=256) as client:
            while time.monotonic() < deadline:
                running.wait(timeout=30)
                with lock:
                    if budget[0] <= 0:
                        return
                    budget[0] -= 1
                    busy[0] += 1
                began = time.perf_counter()
                try:
                    _one_call(client, pick, arrays)
                    with lock:
                        latencies.append(time.perf_counter() - began)
                except LossError as exc:
                    with lock:
                        errors[exc.code.name] += 1
                        if exc.code not in _BAD.values():
                            unexpected[exc.code.name] += 1
                finally:
                    with lock:
                        busy[0] -= 1

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    # Warm-up: the first 40% of the run (allocator pools, threads, caches, the heap's high-water mark).
    # Then a pause with no call in flight, so the baseline is the server at rest, as the end is: the
    # buffers of 64 calls in flight would otherwise swing RSS by a hundred MiB either way.
    time.sleep(max(1.0, seconds * 0.4))
    running.clear()
    rss_warm, fds_warm = _at_rest(server, lock, busy)
    running.set()
    for t in threads:
        t.join(timeout=seconds + 120)
    rss_end, fds_end = _at_rest(server, lock, busy)
    ordered = sorted(latencies) or [0.0]
    return SoakReport(
        seconds=round(time.monotonic() - start, 1), clients=clients, served=len(latencies), errors=dict(errors),
        unexpected=dict(unexpected), p50_ms=round(statistics.median(ordered) * 1e3, 2),
        p99_ms=round(ordered[int(0.99 * (len(ordered) - 1))] * 1e3, 2), rss_warm_mib=round(rss_warm / 2**20, 1),
        rss_end_mib=round(rss_end / 2**20, 1), fds_warm=fds_warm, fds_end=fds_end)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lossd.bench.soak``: print the report as JSON; exit 1 when it is not clean."""
    parser = argparse.ArgumentParser(prog="lossd soak", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=64)
    args = parser.parse_args(argv)
    report = run_soak(args.seconds, args.clients)
    print(json.dumps({**asdict(report), "ok": report.ok}, indent=2))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
