"""``lossd serve --workers N``: N server processes sharing one port (SO_REUSEPORT), so every core works.

The kernel spreads incoming connections over the workers' listening sockets; one connection stays
with one worker, so clients open several channels (``LossClient(..., channels=N)``) to spread calls.
The supervisor holds the port (a bound, non-listening socket: it receives no connections), starts
the workers, restarts one that dies, and on SIGTERM/SIGINT passes the signal on and waits for them.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from lossd.server.settings import ServerSettings

log = logging.getLogger("lossd.server")

_RESTART_DELAY_S = 1.0
_STARTUP_S = 10.0
_MAX_QUICK_FAILURES = 3


def _reserve_port(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host.strip("[]"), port))
    return sock


def _worker_env(settings: ServerSettings, port: int, index: int) -> dict[str, str]:
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        if value is None:
            env.pop(f"LOSSD_{name.upper()}", None)
        else:
            env[f"LOSSD_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    env["LOSSD_PORT"] = str(port)
    env["LOSSD_WORKERS"] = "1"
    # Each worker has its own registry of metrics, hence its own endpoint: metrics_port + index.
    if settings.metrics_port:
        env["LOSSD_METRICS_PORT"] = str(settings.metrics_port + index)
    return env


def run_workers(settings: ServerSettings) -> int:
    """Supervise ``settings.workers`` server processes until SIGTERM/SIGINT; returns the exit code."""
    holder = _reserve_port(settings.host, settings.port)
    port = holder.getsockname()[1]
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    procs: dict[int, subprocess.Popen[bytes]] = {}
    started_at: dict[int, float] = {}
    quick_failures = 0

    def start(index: int) -> None:
        started_at[index] = time.monotonic()
        procs[index] = subprocess.Popen([sys.executable, "-m", "lossd.server"], env=_worker_env(settings, port, index))

    for i in range(settings.workers):
        start(i)
    log.info("lossd supervisor: %d workers on %s:%d", settings.workers, settings.host, port)
    while not stopping.wait(0.2):
        for i, proc in list(procs.items()):
            if proc.poll() is not None and not stopping.is_set():
                # A worker that dies right after starting will do so again: give up rather than loop.
                quick_failures = quick_failures + 1 if time.monotonic() - started_at[i] < _STARTUP_S else 0
                if quick_failures >= _MAX_QUICK_FAILURES:
                    log.error("workers keep exiting at start-up (last: %s); stopping", proc.returncode)
                    stopping.set()
                    break
                log.warning("worker %d (pid %d) exited with %s; restarting it", i, proc.pid, proc.returncode)
                time.sleep(_RESTART_DELAY_S)
                start(i)
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + settings.grace_seconds + 10
    codes = []
    for proc in procs.values():
        try:
            codes.append(proc.wait(timeout=max(0.1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            proc.kill()
            codes.append(proc.wait())
    holder.close()
    log.info("lossd supervisor stopped")
    return 0 if all(c == 0 for c in codes) else 1
