"""The embedded default model: loads with no argument, runs torch-free, FP32 and INT8 agree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from focal.runtime import Detector
from focal.runtime.default import DEFAULT_DIR


@pytest.fixture
def default_present() -> None:
    if not (DEFAULT_DIR / "focal.json").is_file():
        pytest.skip(f"this build bundles no default model ({DEFAULT_DIR} is empty)")


def test_default_detector_runs_on_a_real_forgery(default_present: None, shared_data: Path) -> None:
    image = shared_data / "real-samples/images/misc_casia1_Sp_S_NNN_A_ani0041_ani0041_0199.jpg"
    with Detector(backend="cpu") as det:
        assert det.manifest.extractor == "lite" and det.manifest.input.size == 512
        r = det(image)
    assert r.mask.shape == (256, 384) and r.labels.shape == (64, 64)
    assert 0.0 <= r.score <= 1.0


def test_default_int8_agrees_with_fp32(default_present: None, shared_data: Path) -> None:
    images = sorted((shared_data / "real-samples/images").glob("*.jpg"))[:3]
    with Detector(backend="cpu", clustering="kmeans", keep_features=True) as fp32, \
            Detector(backend="cpu", precision="int8", clustering="kmeans", keep_features=True) as int8:
        for path in images:
            a, b = fp32(path), int8(path)
            assert float(np.median((a.features * b.features).sum(axis=1))) > 0.98
