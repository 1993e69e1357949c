"""Timing loops, bounded in count and in time, and their summaries."""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable, Sequence
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


def paired_latency(calls: list[Callable[[], object]], count: int, max_seconds: float,
                   warmup: int = 3) -> list[Latency]:
    """Latencies of several calls measured in turn (a, b, c, a, b, c, ...), so that a noisy
    machine's slow moments fall on each of them alike; bounded by ``count`` rounds and ``max_seconds``."""
    for call in calls:
        for _ in range(warmup):
            call()
    samples: list[list[float]] = [[] for _ in calls]
    deadline = time.perf_counter() + max_seconds
    rounds = 0
    while rounds < count and (rounds < 3 or time.perf_counter() < deadline):
        for call, out in zip(calls, samples, strict=True):
            start = time.perf_counter()
            call()
            out.append(time.perf_counter() - start)
        rounds += 1
    return [Latency(s) for s in samples]


@dataclass(frozen=True)
class PairedThroughput:
    """Calls per second of several calls, one list per call, measured in alternating rounds; and, where the
    serving process was known, its CPU microseconds per call in the same rounds."""

    rounds: list[list[float]]
    cpu_us: list[list[float]] | None = None  # per call, per round; an empty list where no pid was given

    @property
    def medians(self) -> list[float]:
        return [statistics.median(r) for r in self.rounds]

    @property
    def cpu_medians(self) -> list[float | None]:
        """Each call's median server CPU per call in microseconds (None where it was not measured)."""
        cpu = self.cpu_us or [[] for _ in self.rounds]
        return [statistics.median(c) if c else None for c in cpu]

    def ratio(self, a: int = 0, b: int = 1) -> float:
        """Median over rounds of call ``a``'s throughput over call ``b``'s in the same round: each pair ran
        back to back, so a slow spell of the machine cancels out instead of landing on one side."""
        return statistics.median(x / y for x, y in zip(self.rounds[a], self.rounds[b], strict=True))


def paired_throughput(calls: list[Callable[[], object]], concurrency: int, count: int, max_seconds: float,
                      rounds: int = 7, pids: Sequence[int | None] = ()) -> PairedThroughput:
    """Throughput of each call over ``rounds`` alternating runs (a, b, a, b, ...) sharing ``count`` calls
    and ``max_seconds`` between them. ``pids`` (one per call, None to skip one) names the process serving each
    call: the CPU it spends per call is recorded too.

    A rate swings with whatever else the machine runs; CPU per call is what serving costs, and it swings less.
    """
    cpu: list[list[float]] = [[] for _ in calls]
    servers = list(pids) or [None] * len(calls)
    runs = [charged(lambda call=call: counted_throughput(call, concurrency, count // rounds, max_seconds / rounds),
                    pid, spent) for call, pid, spent in zip(calls, servers, cpu, strict=True)]
    return PairedThroughput(paired_rates(runs, rounds), cpu if pids else None)


def charged(run: Callable[[], tuple[float, int]], pid: int | None, spent: list[float]) -> Callable[[], float]:
    """``run`` (it measures itself: its rate and the calls it made) as a rate, appending to ``spent`` the CPU
    microseconds process ``pid`` spent per call (nothing when the pid is None or /proc cannot say)."""
    def go() -> float:
        before = process_cpu_seconds(pid) if pid is not None else None
        rate, calls = run()
        after = process_cpu_seconds(pid) if pid is not None else None
        if before is not None and after is not None and calls:
            spent.append(1e6 * (after - before) / calls)
        return rate
    return go


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user and system, all threads) process ``pid`` has used so far; None where Linux's /proc
    does not say (another system, or the process is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            after_name = f.read().rsplit(")", 1)[1].split()  # the name, in parentheses, may hold spaces
    except OSError:
        return None
    return (int(after_name[11]) + int(after_name[12])) / _CLOCK_TICKS  # utime, stime: fields 14 and 15


def throughput(call: Callable[[], object], concurrency: int, count: int, max_seconds: float) -> float:
    """Calls per second with ``concurrency`` threads sharing ``count`` calls (or stopping at ``max_seconds``)."""
    return counted_throughput(call, concurrency, count, max_seconds)[0]


def counted_throughput(call: Callable[[], object], concurrency: int, count: int,
                       max_seconds: float) -> tuple[float, int]:
    """:func:`throughput`'s rate, and the calls made in all (the warm-up's included: a server spends CPU on those
    too)."""
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
    return done[0] / (time.perf_counter() - start), done[0] + concurrency


def paired_rates(runs: list[Callable[[], float]], rounds: int = 7) -> list[list[float]]:
    """Each run's rate (it measures itself: calls per second) over ``rounds`` alternating rounds (a, b, c, a,
    ...); one list per run, for medians and per-round ratios."""
    results: list[list[float]] = [[] for _ in runs]
    for _ in range(rounds):
        for run, out in zip(runs, results, strict=True):
            out.append(run())
    return results
