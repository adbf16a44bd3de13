"""Starting the ``tritonserver`` bundled in the PyTriton wheel on a model repository, and waiting for it.

A shared helper for anything that runs a plain Triton model repository here
(the tests of :mod:`focal.serving.triton_repo`, a user trying a repository
on a CPU box). PyTriton itself does the same preparation in its workspace:

- the wheel ships one Python-backend stub per CPython minor version, beside
  the backend rather than in it; the backend looks for
  ``triton_python_backend_stub`` in its own folder, so a private backends
  folder is assembled with the stub of the running interpreter;
- the backend library finds its dependencies through an ``RPATH`` relative
  to the wheel, which a copy loses: the wheel's library folder goes on
  ``LD_LIBRARY_PATH`` (after the interpreter's, :func:`triton_env`);
- HTTP, gRPC and metrics bind 127.0.0.1 on free ports, and the Python
  backend's shared-memory regions get a unique prefix, so several servers
  (other tests, PyTriton's ``focal-serve``) can run side by side.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from focal.serving._ports import free_port
from focal.serving._triton_env import ServeUnavailable, bundled_tritonserver, triton_env

__all__ = ["BundledServer", "LaunchConfig"]

_PYTHON_BACKEND_FILES = ("libtriton_python.so", "triton_python_backend_utils.py")


@dataclass(frozen=True)
class LaunchConfig:
    """How to start the bundled server."""

    repositories: tuple[Path, ...]  # --model-repository folders (model names must be unique across them)
    load: tuple[str, ...] = ()  # models loaded at start (explicit control mode; others load on request)
    startup_timeout_s: float = 180.0  # until every model in `load` is ready
    log_verbose: int = 0  # tritonserver --log-verbose
    shm_default_mb: int = 8  # Python backend's first shared-memory region per model instance (MiB)
    exit_timeout_s: int = 5  # on stop, how long in-flight requests and open connections may hold the server
    extra_args: tuple[str, ...] = ()  # more tritonserver flags, passed unchanged


def _backends_dir(root: Path) -> Path:
    """``root/backends`` with the Python backend and this interpreter's stub (see the module notes)."""
    server = bundled_tritonserver()
    wheel = server.parent.parent  # .../pytriton/tritonserver
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = wheel / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise ServeUnavailable(f"{stub}: not found; this nvidia-pytriton wheel has no Python-backend stub for "
                               f"Python {version}")
    python = root / "backends" / "python"
    python.mkdir(parents=True)
    for name in _PYTHON_BACKEND_FILES:
        shutil.copy2(wheel / "backends" / "python" / name, python / name)
    shutil.copy2(stub, python / stub.name)
    return root / "backends"


def _wheel_libs() -> Path:
    """``nvidia_pytriton.libs``: the server's bundled shared libraries (auditwheel's folder)."""
    return bundled_tritonserver().parents[3] / "nvidia_pytriton.libs"


class BundledServer:
    """The bundled ``tritonserver`` on loopback, as a context manager.

    Args:
        config: what to serve (:class:`LaunchConfig`).

    Attributes (after start):
        http_url: ``"127.0.0.1:PORT"`` (tritonclient.http's ``url``).
        grpc_url: ``"127.0.0.1:PORT"`` (tritonclient.grpc's ``url``).
        metrics_port: Prometheus metrics port on 127.0.0.1.
        log_path: the server's stdout and stderr.

    Raises (from :meth:`start`):
        ServeUnavailable: no bundled server or stub here.
        RuntimeError: the server exited or was not ready in time; the
            message ends with the last lines of its log.
    """

    def __init__(self, config: LaunchConfig) -> None:
        if not config.repositories:
            raise ValueError("LaunchConfig.repositories is empty: give at least one model repository")
        self.config = config
        self.proc: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self.http_url = self.grpc_url = ""
        self.metrics_port = 0
        self.log_path = Path()
        self._log_cache = ""

    def command(self, backends: Path, http: int, grpc: int, metrics: int) -> list[str]:
        """The ``tritonserver`` command line for these ports."""
        cfg = self.config
        prefix = f"focal{os.getpid()}_{os.urandom(3).hex()}"
        args = [str(bundled_tritonserver())]
        args += [f"--model-repository={r}" for r in cfg.repositories]
        args += ["--model-control-mode=explicit", *(f"--load-model={m}" for m in cfg.load)]
        args += [f"--backend-directory={backends}",
                 f"--backend-config=python,shm-region-prefix-name={prefix}",
                 f"--backend-config=python,shm-default-byte-size={cfg.shm_default_mb << 20}",
                 "--http-address=127.0.0.1", f"--http-port={http}",
                 "--grpc-address=127.0.0.1", f"--grpc-port={grpc}",
                 "--metrics-address=127.0.0.1", f"--metrics-port={metrics}",
                 "--allow-gpu-metrics=false", f"--log-verbose={cfg.log_verbose}",
                 f"--exit-timeout-secs={cfg.exit_timeout_s}",
                 *cfg.extra_args]
        return args

    def start(self) -> "BundledServer":
        """Start the server and wait until it is ready (every model in ``config.load`` loaded)."""
        self._workdir = Path(tempfile.mkdtemp(prefix="focal-tritonserver-"))
        backends = _backends_dir(self._workdir)
        http, grpc, metrics = free_port(), free_port(), free_port()
        self.http_url, self.grpc_url, self.metrics_port = f"127.0.0.1:{http}", f"127.0.0.1:{grpc}", metrics
        env = triton_env()
        env["LD_LIBRARY_PATH"] = ":".join(p for p in (env.get("LD_LIBRARY_PATH", ""), str(_wheel_libs())) if p)
        self.log_path = self._workdir / "tritonserver.log"
        with open(self.log_path, "wb") as log:
            # Its own session: stop() signals the server and every stub process it started.
            self.proc = subprocess.Popen(self.command(backends, http, grpc, metrics), stdout=log,
                                         stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.config.startup_timeout_s
        url = f"http://{self.http_url}/v2/health/ready"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"tritonserver exited with code {self.proc.returncode} while starting:\n"
                                   f"{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.25)
        tail = self.log_tail()
        self.stop()
        raise RuntimeError(f"tritonserver not ready after {self.config.startup_timeout_s:.0f} s:\n{tail}")

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the server's log."""
        text = self.log_text()
        return "\n".join(text.splitlines()[-lines:]) if text else "(no log)"

    def log_text(self) -> str:
        """The server's whole log so far (after :meth:`stop`, as it was when it stopped)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return self._log_cache

    def stop(self, timeout_s: float = 60.0) -> None:
        """SIGTERM the server (it unloads models and stops its stubs), SIGKILL its group after ``timeout_s``.

        The temporary folder goes with it; the log stays readable through
        :meth:`log_text` until then, and is kept only if the server had to be killed.
        """
        proc = self.proc
        killed = False
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                killed = True
        if self._workdir is not None:
            self._log_cache = self.log_text()
            shutil.rmtree(self._workdir / "backends", ignore_errors=True)
            if not killed:
                shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> "BundledServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
