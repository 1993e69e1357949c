"""Progress on stderr: a rich progress bar on a terminal (rows, rows/s, MB/s, ETA when the row count is known),
one log line every few seconds otherwise, nothing when quiet."""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO

LOG_EVERY_S = float(os.environ.get("LOSSD_SCORE_LOG_EVERY_S", "5"))  # without a terminal: one line this often


class Progress:
    """Reports rows scored so far; ``mode`` is "auto" (bar on a terminal, else log lines), "log" or "off"."""

    def __init__(self, total_rows: int | None, mode: str = "auto", stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        if mode == "auto":
            mode = "bar" if self._stream.isatty() else "log"
        self._mode = mode
        self._total = total_rows
        self._rows = 0
        self._bytes = 0
        self._started = time.perf_counter()
        self._last_log = self._started
        self._bar: Any = None
        if mode == "bar":
            from rich.console import Console
            from rich.progress import BarColumn, TaskProgressColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as Bar

            self._bar = Bar(TextColumn("scoring"), BarColumn(), TaskProgressColumn(),
                            TextColumn("{task.completed:,} rows · {task.fields[rate]} · {task.fields[mbs]}"),
                            TimeRemainingColumn(), console=Console(file=self._stream), transient=False)
            self._task = self._bar.add_task("score", total=total_rows, rate="", mbs="")
            self._bar.start()

    def advance(self, rows: int, nbytes: int) -> None:
        """``rows`` more rows (``nbytes`` of input) scored."""
        self._rows += rows
        self._bytes += nbytes
        now = time.perf_counter()
        elapsed = max(now - self._started, 1e-9)
        if self._bar is not None:
            self._bar.update(self._task, completed=self._rows, rate=f"{self._rows / elapsed:,.0f} rows/s",
                             mbs=f"{self._bytes / elapsed / 1e6:,.1f} MB/s")
        elif self._mode == "log" and now - self._last_log >= LOG_EVERY_S:
            self._last_log = now
            self._stream.write(self.line() + "\n")
            self._stream.flush()

    def line(self) -> str:
        """Where the run stands, in one line."""
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        rate = self._rows / elapsed
        known = f" of {self._total:,}" if self._total else ""
        eta = ""
        if self._total and rate > 0:
            eta = f", about {max(0.0, (self._total - self._rows) / rate):.0f} s left"
        return (f"lossd score: {self._rows:,}{known} rows, {rate:,.0f} rows/s, "
                f"{self._bytes / elapsed / 1e6:,.1f} MB/s{eta}")

    def close(self) -> None:
        """Stop the bar (its last state stays on screen)."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
