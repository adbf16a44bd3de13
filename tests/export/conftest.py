"""Export fixtures: a small real SAM ViT (data, the tiny model and the private cache come from tests/conftest.py)."""

from __future__ import annotations

import numpy as np
import pytest

@pytest.fixture(scope="session")
def small_vit():
    """A 2-block SAM ViT-B at 64 px (window attention + one global block): real SAM code paths, tiny cost."""
    torch = pytest.importorskip("torch")
    from focal.training import build_extractor

    torch.manual_seed(0)
    return build_extractor("vit-b", img_size=64, depth=2, global_attn_indexes=(1,))

