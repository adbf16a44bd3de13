"""ONNX Runtime's silent provider fallback is caught: a named GPU backend that ends on the CPU is an error."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

ort = pytest.importorskip("onnxruntime")

from focal.runtime import Detector  # noqa: E402
from focal.runtime.engines import OnnxRuntimeEngine, ProviderFallbackError  # noqa: E402


@pytest.fixture
def cuda_claimed(monkeypatch):
    """An onnxruntime that says it has CUDA but has no usable GPU: what a CUDA wheel on a GPU-less box does."""
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has a CUDA provider: the fallback cannot be staged")
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])


def test_a_session_that_lands_on_the_cpu_is_refused(cuda_claimed, tiny_artifact: Path) -> None:
    with pytest.raises(ProviderFallbackError, match="asked for CUDAExecutionProvider, but ONNX Runtime runs it on "
                                                     "CPUExecutionProvider"):
        OnnxRuntimeEngine(tiny_artifact / "model.onnx", provider="cuda")


def test_named_cuda_backend_is_an_error_and_auto_says_what_it_got(cuda_claimed, tiny_artifact: Path, caplog) -> None:
    with pytest.raises(ProviderFallbackError):
        Detector(tiny_artifact, backend="cuda")
    with caplog.at_level(logging.WARNING, logger="focal"), Detector(tiny_artifact, backend="auto") as det:
        assert det.backend == "cpu"
        assert det.engine.inner.session.get_providers()[0] == "CPUExecutionProvider"
    assert any("backend auto" in r.message and "running on the CPU provider" in r.message for r in caplog.records)
