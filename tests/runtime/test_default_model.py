"""The embedded default model: loads with no argument, runs torch-free, FP32 and INT8 agree."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from focal.runtime import Detector
from focal.runtime.default import DEFAULT_DIR

# Floors well below what the shipped model measures on these 16 + 16 images
# (docs/evaluation.md, "The embedded default model, measured"), so only a broken model trips them.
MIN_SYNTHETIC_IOU = 0.4  # measured 0.63 (13 forgeries)
MAX_FALSE_ALARMS = 0.3  # measured 0.125 (2 of 16)


@pytest.fixture
def default_present() -> None:
    if not (DEFAULT_DIR / "focal.json").is_file():
        pytest.skip(f"this build bundles no default model ({DEFAULT_DIR} is empty)")


def test_default_detector_runs_on_a_real_forgery(default_present: None, shared_data: Path) -> None:
    from focal.runtime.score import forgery_score

    image = shared_data / "real-samples/images/misc_casia1_Sp_S_NNN_A_ani0041_ani0041_0199.jpg"
    untouched = shared_data / "natural/bsds500/test_100007.jpg"
    with Detector(backend="cpu", keep_features=True, copy_move=False, double_jpeg=False) as det:  # features alone
        assert det.manifest.extractor == "lite" and det.manifest.input.size == 512
        r, u = det(image), det(untouched)
    assert r.mask.shape == (256, 384) and r.labels.shape == (64, 64)
    # The score is the correlation ratio of the labels it reports (recomputed here) ...
    for res in (r, u):
        assert res.score == pytest.approx(forgery_score(res.features, res.labels.ravel()), abs=1e-6)
        assert res.forged_fraction == pytest.approx(np.count_nonzero(res.mask) / res.mask.size)
    # ... and tells the forgery from an untouched photo (measured 0.50 and 0.0).
    assert 0.0 < r.forged_fraction < 0.5 and r.score > 0.25
    assert u.score < r.score - 0.2
    # The default's rule joins its cues: this splice from the same photo (CASIA's Sp_S) repeats a
    # region, the copy-move search finds it, and the found copy lifts the score.
    with Detector(backend="cpu") as det:
        assert det.config.copy_move and det.config.double_jpeg
        joint, clean = det(image), det(untouched)
    assert joint.copy_move.any() and joint.score == max(r.score, 0.99)
    cues = [m for m in (joint.copy_move, joint.double_jpeg) if m is not None]  # None: no JPEG evidence
    assert np.array_equal(joint.mask, np.maximum.reduce([r.mask, *cues]))
    assert not clean.mask.any() and clean.score == u.score


def test_default_int8_agrees_with_fp32(default_present: None, shared_data: Path) -> None:
    images = sorted((shared_data / "real-samples/images").glob("*.jpg"))[:3]
    with Detector(backend="cpu", clustering="kmeans", keep_features=True) as fp32, \
            Detector(backend="cpu", precision="int8", clustering="kmeans", keep_features=True) as int8:
        for path in images:
            a, b = fp32(path), int8(path)
            assert float(np.median((a.features * b.features).sum(axis=1))) > 0.98


def test_default_finds_held_out_synthetic_forgeries_and_spares_untouched_photos(
    default_present: None, shared_data: Path, tmp_path: Path
) -> None:
    # A regression guard on the shipped weights, not a benchmark: 16 forgeries
    # and the untouched photos training never saw (focal-synth's held-out set).
    pytest.importorskip("torch")  # focal-synth lives in focal.training
    from focal.evaluation.metrics import pixel_scores
    from focal.runtime.imageio import read_mask
    from focal.training.data.export import SynthExportConfig, export_synthetic

    cfg = SynthExportConfig(out=str(tmp_path / "syn"), photos=str(shared_data / "natural"),
                            segmentations=str(shared_data / "natural/bsds500_groundTruth_mat"), count=16,
                            authentic_list=str(tmp_path / "heldout.json"))
    export_synthetic(cfg, progress=False)
    ious, alarms = [], []
    with Detector(backend="cpu") as det:
        for image in sorted((tmp_path / "syn/images").glob("*.png")):
            mask = tmp_path / "syn/masks" / image.name
            r = det(image)
            if mask.is_file():
                ious.append(pixel_scores(r.mask > 0, read_mask(mask)).iou)
        for path, _ in json.loads((tmp_path / "heldout.json").read_text())[:16]:
            alarms.append(bool(det(path).mask.any()))
    assert np.mean(ious) >= MIN_SYNTHETIC_IOU, ious
    assert np.mean(alarms) <= MAX_FALSE_ALARMS, alarms


def test_the_default_carries_its_checkpoint_and_a_fitted_split_decision(default_present: None) -> None:
    from focal.runtime.integrity import verify_file
    from focal.runtime.manifest import load_manifest

    manifest = load_manifest(DEFAULT_DIR)
    assert manifest.checkpoint is not None and (DEFAULT_DIR / "checkpoint.json").is_file()
    verify_file(DEFAULT_DIR / manifest.checkpoint.file, manifest.checkpoint.sha256, use_cache=False)
    spec = manifest.clustering
    assert spec.method == "hdbscan"  # the paper's rule stays the default
    assert 0.0 < spec.split_threshold < 1.0 and spec.split_calibration["false_alarm"] == 0.1
    assert spec.split_calibration["flagged"] <= 0.1 and spec.split_calibration["photos"] >= 10


def test_split_on_the_default_flags_what_passes_its_threshold(default_present: None, shared_data: Path) -> None:
    images = sorted((shared_data / "real-samples/images").iterdir())[:4] + \
        sorted((shared_data / "natural/bsds500").glob("test_*.jpg"))[:4]
    with Detector(backend="cpu", clustering="split") as det:
        tau = det.split_threshold
        for r in det.detect_many(images):
            assert r.mask.any() == (r.score > tau), (r.path, r.score, tau)


def test_the_heatmap_shows_a_splice_the_decision_leaves_out(default_present: None, shared_data: Path) -> None:
    # NIST16's pasted glider: the features rank its pixels far above the rest (pixel AUC 0.99
    # measured), but they form no dense cluster, so the mask alone says nothing there.
    from focal.evaluation.metrics import pixel_auc
    from focal.runtime.imageio import read_mask

    name = "misc_nist16_NC2016_2564"
    with Detector(backend="cpu", heatmap=True) as det:
        r = det(shared_data / f"real-samples/images/{name}.jpg")
    truth = read_mask(shared_data / f"real-samples/masks/{name}.png")
    assert r.heatmap.shape == truth.shape
    assert pixel_auc(r.heatmap, truth) > 0.9
