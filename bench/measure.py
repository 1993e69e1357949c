"""Timing loops, bounded in count and in time, and their summaries."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Latency:
    """Per-call wall times of one scenario, in seconds."""

    samples: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def p90(self) -> float:
        ordered = sorted(self.samples)
        return ordered[int(0.9 * (len(ordered) - 1))]


def latency(call: Callable[[], object], count: int, max_seconds: float, warmup: int = 3) -> Latency:
    """Time ``call`` up to ``count`` times or until ``max_seconds`` have passed (at least 3 samples)."""
    for _ in range(warmup):
        call()
    samples: list[float] = []
    deadline = time.perf_counter() + max_seconds
    while len(samples) < count and (len(samples) < 3 or time.perf_counter() < deadline):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return Latency(samples)


def throughput(call: Callable[[], object], concurrency: int, count: int, max_seconds: float) -> float:
    """Calls per second with ``concurrency`` threads sharing ``count`` calls (or stopping at ``max_seconds``)."""
    for _ in range(concurrency):
        call()
    lock = threading.Lock()
    remaining = [count]
    deadline = time.perf_counter() + max_seconds
    done = [0]

    def worker() -> None:
        while time.perf_counter() < deadline:
            with lock:
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
            call()
            with lock:
                done[0] += 1

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done[0] / (time.perf_counter() - start)
