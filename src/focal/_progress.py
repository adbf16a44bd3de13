"""A dependency-free progress line for long runs (the runtime has no tqdm)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``[12/100] 3.1 it/s  eta 28s  name`` on stderr.

    On a terminal the line is redrawn in place; in logs (CI, files) a line is
    printed every ``log_every`` steps and at the end, so logs stay short.

    Args:
        total: number of steps expected.
        label: what is counted.
        stream: where to write (stderr).
        log_every: print period when not on a terminal.
    """

    def __init__(self, total: int, label: str, stream: TextIO | None = None, log_every: int = 25) -> None:
        self.total = total
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.log_every = max(1, log_every)
        self.done = 0
        self.start = time.perf_counter()

    def _line(self, note: str) -> str:
        elapsed = time.perf_counter() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        eta_txt = f"{eta:.0f}s" if eta == eta else "?"
        return f"{self.label} [{self.done}/{self.total}] {rate:.2f} it/s eta {eta_txt} {note}"

    def step(self, note: str = "") -> None:
        """Count one step; ``note`` names it (e.g. the file)."""
        self.done += 1
        if self.tty:
            self.stream.write("\r\033[K" + self._line(note[:60]))
            self.stream.flush()
        elif self.done % self.log_every == 0 or self.done == self.total:
            self.stream.write(self._line(note) + "\n")

    def close(self) -> None:
        """Finish the line with the total time."""
        elapsed = time.perf_counter() - self.start
        end = f"{self.label}: {self.done} in {elapsed:.1f}s\n"
        self.stream.write(("\r\033[K" if self.tty else "") + end)
        self.stream.flush()
