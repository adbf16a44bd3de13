"""The ``split`` decision: its threshold's fit, the manifest it lives in, and the runtime that applies it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from focal.calibration.cli import main as calibrate_main
from focal.calibration.decision import SplitFitConfig, fit_split, split_threshold
from focal.runtime import Detector
from focal.runtime.manifest import MANIFEST_NAME, load_manifest, parse_manifest


@pytest.fixture
def artifact(tmp_path: Path, tiny_artifact: Path) -> Path:
    """A private copy of the tiny artifact (the fit writes its manifest)."""
    return Path(shutil.copytree(tiny_artifact, tmp_path / "artifact"))


def test_the_threshold_lets_at_most_alpha_of_the_fitting_scores_pass(rng):
    for n, alpha in ((10, 0.1), (56, 0.1), (200, 0.05), (33, 0.2)):
        scores = rng.uniform(0, 1, n)
        tau = split_threshold(scores, alpha)
        assert tau in scores
        assert (scores > tau).sum() <= np.floor(alpha * n)
        assert (scores >= tau).sum() >= 1  # not past the maximum: a real quantile


def test_too_few_photos_for_the_rate_are_refused():
    with pytest.raises(ValueError, match="at least 20 photos"):
        split_threshold(np.linspace(0, 1, 19), 0.05)


def test_the_fit_writes_the_threshold_and_the_runtime_applies_it(artifact: Path, twelve_photos: Path):
    record = fit_split(SplitFitConfig(artifact=str(artifact), photos=(str(twelve_photos),), false_alarm=0.25,
                                      backend="cpu"))
    spec = load_manifest(artifact).clustering
    assert spec.split_threshold == record["threshold"]
    assert spec.method == "kmeans"  # the default stays the artifact's own without --default
    assert spec.split_calibration["photos"] == 12 and spec.split_calibration["flagged"] <= 0.25
    images = sorted(twelve_photos.glob("*.jpg"))
    with Detector(artifact, backend="cpu", clustering="kmeans") as km, \
            Detector(artifact, backend="cpu", clustering="split") as sp:
        kept = 0
        for path in images:
            a, b = km(path), sp(path)
            assert b.score == pytest.approx(a.score)  # the statistic of the split, passed or not
            if a.score > record["threshold"]:
                kept += 1
                assert np.array_equal(a.mask, b.mask)
            else:
                assert not b.mask.any()
        assert kept == round(record["flagged"] * len(images))


def test_split_without_a_fitted_threshold_is_refused_with_the_way_to_fit_one(artifact: Path):
    with pytest.raises(ValueError, match="focal-calibrate"):
        Detector(artifact, backend="cpu", clustering="split")


def test_a_fusion_of_artifacts_has_no_split_threshold(artifact: Path, twelve_photos: Path):
    fit_split(SplitFitConfig(artifact=str(artifact), photos=(str(twelve_photos),), false_alarm=0.25, backend="cpu"))
    with pytest.raises(ValueError, match="fusion"):
        Detector([artifact, artifact], backend="cpu", clustering="split")


def test_the_manifest_refuses_a_threshold_outside_the_scores_range(artifact: Path):
    raw = json.loads((artifact / MANIFEST_NAME).read_text())
    raw["clustering"]["split_threshold"] = 1.5
    with pytest.raises(ValueError, match="split_threshold"):
        parse_manifest(raw)
    raw["clustering"].update(split_threshold=None, method="split")
    with pytest.raises(ValueError, match="needs a split_threshold"):
        parse_manifest(raw)


def test_cli_fits_and_makes_split_the_default(artifact: Path, twelve_photos: Path, capsys):
    assert calibrate_main([str(artifact), "--photos", str(twelve_photos), "--false-alarm", "0.25", "--default",
                           "--backend", "cpu"]) == 0
    assert "split threshold" in capsys.readouterr().out
    assert load_manifest(artifact).clustering.method == "split"
    with Detector(artifact, backend="cpu") as det:
        assert det.clustering == "split"


def test_cli_refuses_forged_photos_in_one_line_and_leaves_the_manifest(artifact: Path, forgeries: Path, capsys):
    before = (artifact / MANIFEST_NAME).read_bytes()
    assert calibrate_main([str(artifact), "--photos", str(forgeries.parent), "--backend", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert "has a mask" in err and "\n" not in err and "Traceback" not in err
    assert (artifact / MANIFEST_NAME).read_bytes() == before


def test_cli_refuses_too_few_photos(artifact: Path, twelve_photos: Path, capsys):
    before = (artifact / MANIFEST_NAME).read_bytes()
    assert calibrate_main([str(artifact), "--photos", str(twelve_photos), "--false-alarm", "0.01",
                           "--backend", "cpu"]) == 2
    assert "at least 100 photos" in capsys.readouterr().err
    assert (artifact / MANIFEST_NAME).read_bytes() == before


def test_focal_detect_refuses_split_on_an_unfitted_artifact_before_any_work(artifact: Path, twelve_photos: Path,
                                                                         tmp_path: Path, capsys):
    from focal.serving.detect_cli import main as detect_main

    out = tmp_path / "out"
    assert detect_main([str(artifact), str(twelve_photos), "--clustering", "split", "--out", str(out),
                        "--backend", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert "focal-calibrate" in err and len(err.splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())


def test_cli_reports_a_manifest_it_cannot_write_in_one_line(artifact: Path, twelve_photos: Path, capsys,
                                                           monkeypatch):
    import focal.calibration.decision as decision

    def read_only(*_args):  # as an installed package's folder is for a user
        raise PermissionError(13, "Permission denied", str(artifact / MANIFEST_NAME))

    monkeypatch.setattr(decision, "save_manifest", read_only)
    assert calibrate_main([str(artifact), "--photos", str(twelve_photos), "--false-alarm", "0.25",
                           "--backend", "cpu"]) == 2
    *progress, last = capsys.readouterr().err.strip().splitlines()
    assert last.startswith("focal-calibrate: ") and "Permission denied" in last and "focal.json" in last
    assert all("photos" in line for line in progress)  # nothing but progress before it: no traceback
