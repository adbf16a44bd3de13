"""Where the bundled Triton server lives, and the environment it needs to load Python models.

PyTriton's wheel ships ``tritonserver``, its Python backend and one Python
backend stub per CPython minor version. The stub is linked against
``libpython3.X.so.1.0`` by soname, so the dynamic loader takes the first
one on its path: on a machine whose running interpreter is not the system
one (pyenv, conda, a venv over a custom build), that is the system's
library, of another patch release, and models fail to load with errors
such as ``'RLock' object has no attribute '_recursion_count'``. Putting the
running interpreter's own library folder first on ``LD_LIBRARY_PATH`` makes
the stub load the interpreter that installed focal and its packages.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import sysconfig
from pathlib import Path

__all__ = ["ServeUnavailable", "bundled_tritonserver", "interpreter_libdir", "require_pytriton", "triton_env"]


class ServeUnavailable(RuntimeError):
    """The serving extra is missing or unusable here; the message is one line saying what to install."""


def require_pytriton() -> None:
    """Checks that PyTriton can be imported beside this interpreter's NumPy.

    Raises:
        ServeUnavailable: ``nvidia-pytriton`` is not installed, or NumPy 2
            is (PyTriton 0.7.0 requires ``numpy<2``).
    """
    if importlib.util.find_spec("pytriton") is None:
        raise ServeUnavailable("Triton serving needs the 'serve' extra: pip install 'focal[cpu,serve]' "
                               "(nvidia-pytriton; Linux x86-64 or aarch64 only)")
    import numpy

    if int(numpy.__version__.split(".")[0]) >= 2:
        raise ServeUnavailable(f"nvidia-pytriton 0.7.0 needs numpy<2, this environment has numpy {numpy.__version__}: "
                               "pip install 'focal[cpu,serve]' resolves a compatible set")


def bundled_tritonserver() -> Path:
    """The ``tritonserver`` binary inside the PyTriton wheel.

    Raises:
        ServeUnavailable: PyTriton is missing, or its wheel has no server binary.
    """
    require_pytriton()
    spec = importlib.util.find_spec("pytriton")
    assert spec is not None and spec.origin is not None
    binary = Path(spec.origin).parent / "tritonserver" / "bin" / "tritonserver"
    if not binary.is_file():
        raise ServeUnavailable(f"{binary}: not found; this nvidia-pytriton wheel has no bundled tritonserver")
    return binary


def interpreter_libdir() -> Path | None:
    """The folder holding the running interpreter's ``libpython``, or ``None`` for a static build."""
    libdir = sysconfig.get_config_var("LIBDIR")
    name = sysconfig.get_config_var("LDLIBRARY")  # "libpython3.11.so" for shared builds, ".a" for static ones
    if not libdir or not name or not str(name).endswith(".so"):
        return None
    return Path(libdir) if (Path(libdir) / name).exists() else None


def triton_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of ``env`` (default ``os.environ``) for starting ``tritonserver``.

    The running interpreter's library folder goes first on
    ``LD_LIBRARY_PATH`` (see the module notes), and its ``bin`` folder first
    on ``PATH`` (the backend finds ``python3`` there for its stubs).
    """
    out = dict(os.environ if env is None else env)
    libdir = interpreter_libdir()
    if libdir is not None:
        parts = [p for p in out.get("LD_LIBRARY_PATH", "").split(":") if p and p != str(libdir)]
        out["LD_LIBRARY_PATH"] = ":".join([str(libdir), *parts])
    bindir = str(Path(sys.executable).parent)
    paths = [p for p in out.get("PATH", "").split(":") if p and p != bindir]
    out["PATH"] = ":".join([bindir, *paths])
    return out
