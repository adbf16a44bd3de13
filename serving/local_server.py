"""``focal-serve`` as a child process on loopback: start it, wait until its model is ready, stop it.

For tests, benchmarks and scripts that need a real server next to them;
a deployment runs ``focal-serve`` under its own supervisor instead.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from focal.serving._ports import free_port_block
from focal.serving.triton_client import FocalClient

__all__ = ["LocalServer", "free_port_block", "process_tree_rss_mb"]


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(c) for c in text.split()]


def process_tree_rss_mb(pid: int) -> tuple[float, float]:
    """(current RSS, sum of each process's peak RSS) in MB of ``pid`` and its descendants (Linux /proc).

    The server is this process plus ``tritonserver`` plus one Python
    backend stub per model instance; a figure for the server is their sum.
    """
    now = peak = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                now += int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                peak += int(line.split()[1]) / 1024
        todo.extend(_children(p))
    return now, peak


class LocalServer:
    """One ``focal-serve`` child process.

    Args:
        log: file that gets the server's stdout and stderr (appended).
        port: HTTP port (gRPC and metrics on the next two); see :func:`free_port_block`.
        args: more ``focal-serve`` arguments (the artifact, ``--max-queue``, ...).
        start_timeout_s: how long :meth:`start` waits for the model to be ready.
    """

    def __init__(self, log: Path, port: int, *args: str, start_timeout_s: float = 120.0) -> None:
        self.log, self.port, self.args, self.start_timeout_s = Path(log), port, args, start_timeout_s
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def http(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.port + 1}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.port + 2}/metrics"

    def start(self) -> "LocalServer":
        """Starts the server and returns once its model answers ready.

        Raises:
            RuntimeError: it exited or was not ready in time (the message ends with its log).
        """
        self._log = open(self.log, "ab")
        cmd = [sys.executable, "-m", "focal.serving.serve_cli", "--port", str(self.port), *self.args]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.start_timeout_s
        with FocalClient(self.http) as client:
            while not client.ready():
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"focal-serve did not start:\n{self.log.read_text()[-3000:]}")
                time.sleep(0.25)
        return self

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout_s``; returns the exit status."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
