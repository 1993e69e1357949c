"""Servers in their own processes (so they do not share the benchmark's GIL), and their memory."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from types import TracebackType

_LOSSD_STARTED = re.compile(r"serving on [\d.]+:(\d+)")
_ECHO_STARTED = re.compile(r"port=(\d+)")
_HTTP_AT = re.compile(r"http=[\d.]+:(\d+)")


class ServerProcess:
    """A server started as a child process on loopback; stopped (SIGTERM, then SIGKILL) by its pid."""

    def __init__(self, argv: Sequence[str], started: re.Pattern[str], env: dict[str, str] | None = None,
                 starts: int = 1) -> None:
        self._argv = list(argv)
        self._started = started
        self._starts = starts  # start lines to wait for: one per worker of a --workers server
        self._env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.http_port = 0  # lossd's REST front, when its start line names one

    def __enter__(self) -> ServerProcess:
        self.proc = subprocess.Popen(self._argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=self._env)
        assert self.proc.stdout is not None
        seen = []
        started = 0
        for line in self.proc.stdout:  # bounded: the child prints its start lines or exits
            seen.append(line)
            found = self._started.search(line)
            if found:
                self.port = int(found.group(1))
                started += 1
                http = _HTTP_AT.search(line)
                self.http_port = int(http.group(1)) if http else self.http_port
            if started == self._starts:
                # Keep draining its output so a chatty child never blocks on a full pipe.
                threading.Thread(target=self._drain, daemon=True).start()
                return self
        raise RuntimeError("server exited before serving:\n" + "".join(seen))

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for _ in self.proc.stdout:
            pass

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)

    @property
    def address(self) -> str:
        """``127.0.0.1:port``."""
        return f"127.0.0.1:{self.port}"

    def rss_bytes(self) -> int:
        """Resident memory now."""
        return _status_kib(self.pid, "VmRSS") * 1024

    def peak_rss_bytes(self) -> int:
        """Peak resident memory since start or since :meth:`reset_peak`."""
        return _status_kib(self.pid, "VmHWM") * 1024

    def reset_peak(self) -> None:
        """Restart the peak-RSS watermark at the current RSS (Linux: clear_refs 5)."""
        with open(f"/proc/{self.pid}/clear_refs", "w") as f:
            f.write("5")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


def _status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def lossd_server(*flags: str, env: dict[str, str] | None = None, workers: int = 1) -> ServerProcess:
    """``python -m lossd.server --port 0 --metrics-port 0 <flags>`` (``--workers N`` too when more than one;
    it is ready once every worker is serving)."""
    argv = [sys.executable, "-m", "lossd.server", "--port", "0", "--metrics-port", "0", *flags]
    if workers > 1:
        argv += ["--workers", str(workers)]
    return ServerProcess(argv, _LOSSD_STARTED, env, starts=workers)


# The echo gets the same allocator tuning that lossd applies to itself (see lossd.server.memory), so the
# ceiling does not pay page faults that lossd avoids.
_ECHO_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(512 << 20), "MALLOC_TRIM_THRESHOLD_": str(2**31 - 1),
                "MALLOC_ARENA_MAX": "1"}


def echo_server(sync: bool = False) -> ServerProcess:
    """The raw-bytes echo ceiling, on grpc.aio or (``sync``) on grpc's thread-pool server."""
    return ServerProcess([sys.executable, "-m", "lossd.bench.echo", "--port", "0", *(["--sync"] if sync else [])],
                         _ECHO_STARTED, _ECHO_MALLOC)


def minimal_server() -> ServerProcess:
    """The same work without lossd's features (lossd.bench.minimal): a reference for small calls."""
    return ServerProcess([sys.executable, "-m", "lossd.bench.minimal", "--port", "0"], _ECHO_STARTED, _ECHO_MALLOC)


def http_echo_server() -> ServerProcess:
    """The raw-bytes HTTP echo, the REST front's ceiling."""
    return ServerProcess([sys.executable, "-m", "lossd.bench.http_echo", "--port", "0"], _ECHO_STARTED,
                         _ECHO_MALLOC)
