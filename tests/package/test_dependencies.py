"""The package's layering, proved by importing each module in a bare interpreter.

``focal.runtime`` is the torch-free runner: none of its modules may load
torch or the packages built on it, serving included. The private shared
helpers (``focal._*``) sit below every package and may load none of them.
``focal.serving`` builds on the runtime only, and loads its engines (Ray,
PyTriton) when a function needs them, not at import.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest

import focal
import focal.runtime
import focal.serving

# What the runner must never load, at import time or through its imports.
RUNTIME_FORBIDDEN = ("torch", "timm", "onnx", "focal.training", "focal.export", "focal.calibration", "focal.evaluation",
                     "focal.serving", "ray", "pytriton", "tritonclient")
SHARED_FORBIDDEN = ("torch", "focal.runtime", *RUNTIME_FORBIDDEN[2:])
SERVING_FORBIDDEN = ("torch", "timm", "focal.training", "focal.export", "focal.calibration", "focal.evaluation",
                     "ray", "pytriton")


def _modules(package) -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
                  if not m.name.endswith("._native"))


RUNTIME_MODULES = _modules(focal.runtime)
# The Python-backend models import triton_python_backend_utils, which exists only inside Triton.
SERVING_MODULES = [m for m in _modules(focal.serving) if not m.startswith("focal.serving.triton_models")]
SHARED_MODULES = sorted(f"focal.{m.name}" for m in pkgutil.iter_modules(focal.__path__)
                        if m.name.startswith("_"))


def _loaded_after_import(module: str) -> list[str]:
    """The ``sys.modules`` names after importing ``module`` in a fresh interpreter."""
    code = f"import json, sys, importlib; importlib.import_module({module!r}); print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def _offenders(loaded: list[str], forbidden: tuple[str, ...]) -> list[str]:
    return [name for name in loaded if any(name == f or name.startswith(f + ".") for f in forbidden)]


def test_the_lists_are_complete() -> None:
    # A walk that found nothing would make the tests below vacuous.
    assert {"focal.runtime.detector", "focal.runtime.cli", "focal.runtime.cluster"} <= set(RUNTIME_MODULES)
    assert {"focal._files", "focal._datasets", "focal._cli"} <= set(SHARED_MODULES)
    assert {"focal.serving.triton_server", "focal.serving.ray_job", "focal.serving.triton_repo"} <= set(SERVING_MODULES)


@pytest.mark.parametrize("module", RUNTIME_MODULES)
def test_runtime_module_loads_no_training_stack(module: str) -> None:
    assert _offenders(_loaded_after_import(module), RUNTIME_FORBIDDEN) == []


@pytest.mark.parametrize("module", SERVING_MODULES)
def test_serving_module_loads_no_training_stack_and_no_engine(module: str) -> None:
    assert _offenders(_loaded_after_import(module), SERVING_FORBIDDEN) == []


@pytest.mark.parametrize("module", SHARED_MODULES)
def test_shared_module_loads_no_package(module: str) -> None:
    assert _offenders(_loaded_after_import(module), SHARED_FORBIDDEN) == []


def test_the_check_catches_an_offender() -> None:
    # The same check on a module that does load torch must report it.
    pytest.importorskip("torch")
    assert "torch" in _offenders(_loaded_after_import("focal.training"), RUNTIME_FORBIDDEN)


def test_the_export_package_loads_its_heavy_modules_only_when_a_name_is_used() -> None:
    # focal.export's names resolve on first use: the package itself (and its CLI's parser for
    # --from-artifact) must not load onnx or torch; every public name still resolves.
    assert _offenders(_loaded_after_import("focal.export"), ("torch", "timm", "onnx")) == []
    import focal.export

    assert all(getattr(focal.export, name) is not None for name in focal.export.__all__)
    assert focal.export.verify.__module__ == "focal.export.verify" and callable(focal.export.verify)
