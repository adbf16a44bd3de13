"""Export fixtures: a small real SAM ViT (data, the tiny model and the private cache come from tests/conftest.py)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def tensorrt_gpu():
    """The ``tensorrt`` module, for tests that build engines; skips with the reason without TensorRT, pycuda or a GPU."""
    trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed (pip install 'focal[gpu]')")
    cuda = pytest.importorskip("pycuda.driver", reason="pycuda is not installed (pip install 'focal[gpu]')")
    try:
        cuda.init()
        if cuda.Device.count() < 1:
            pytest.skip("no CUDA device")
    except Exception as exc:  # no driver
        pytest.skip(f"CUDA unavailable: {exc}")
    return trt

@pytest.fixture(scope="session")
def small_vit():
    """A 2-block SAM ViT-B at 64 px (window attention + one global block): real SAM code paths, tiny cost."""
    torch = pytest.importorskip("torch")
    from focal.training import build_extractor

    torch.manual_seed(0)
    return build_extractor("vit-b", img_size=64, depth=2, global_attn_indexes=(1,))

