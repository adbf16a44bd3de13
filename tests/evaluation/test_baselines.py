"""benchmarks/baselines.py, scoring half: fake method maps in its format, scored against hand counts.

The detection half needs the PhotoHolmes venv and is not tested here.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

_SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "baselines.py"


@pytest.fixture()
def baselines(monkeypatch):
    spec = importlib.util.spec_from_file_location("baselines", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "baselines", module)
    spec.loader.exec_module(module)
    return module


H, W = 24, 32


def _box(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def _hand_iou(pred: np.ndarray, truth: np.ndarray) -> float:
    tp = int(sum(1 for p, t in zip(pred.ravel(), truth.ravel()) if p and t))
    fp = int(sum(1 for p, t in zip(pred.ravel(), truth.ravel()) if p and not t))
    fn = int(sum(1 for p, t in zip(pred.ravel(), truth.ravel()) if t and not p))
    return tp / (tp + fp + fn)


def _dataset(tmp_path: Path) -> tuple[str, list[Path], list[np.ndarray | None]]:
    """Two forged images with box masks and one authentic image, as a focal-eval folder spec."""
    root = tmp_path / "toy"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    truths = [_box(4, 12, 4, 20), _box(10, 20, 16, 30), None]
    images = []
    for i, truth in enumerate(truths):
        image = root / "images" / f"img{i}.png"
        cv2.imwrite(str(image), np.full((H, W, 3), 40 * i, np.uint8))
        images.append(image)
        if truth is not None:
            cv2.imwrite(str(root / "masks" / f"img{i}.png"), truth.astype(np.uint8) * 255)
    return str(root), images, truths


def _write_method(baselines, out: Path, method: str, spec: str, images: list[Path], truths,
                  heatmaps=None, masks=None, detections=None, failed: int | None = None) -> None:
    """A detect output folder written by hand in the script's map format."""
    folder = out / method / baselines.dataset_name(spec)
    (folder / "maps").mkdir(parents=True)
    (folder / baselines.META).write_text(json.dumps({"method": method, "data": spec,
                                                      "dataset": baselines.dataset_name(spec)}))
    lines = []
    for i, (image, truth) in enumerate(zip(images, truths)):
        gt = None if truth is None else str(Path(spec) / "masks" / image.name)
        rec = {"index": i, "path": str(image), "mask": gt}
        if i == failed:
            rec.update(error="RuntimeError: boom", seconds=0.5)
            lines.append(json.dumps(rec))
            continue
        key = baselines.map_key(i, image)
        rec.update(shape=[H, W], seconds=float(i + 1), heatmap=None, pred_mask=None,
                   detection=None if detections is None else detections[i])
        if heatmaps is not None:
            np.save(folder / "maps" / f"{key}.npy", heatmaps[i].astype(np.float32))
            rec["heatmap"] = f"{key}.npy"
        if masks is not None:
            cv2.imwrite(str(folder / "maps" / f"{key}_mask.png"), masks[i].astype(np.uint8) * 255)
            rec["pred_mask"] = f"{key}_mask.png"
        lines.append(json.dumps(rec))
    (folder / baselines.RECORDS).write_text("\n".join(lines) + "\n")


def _row(table: str, method: str) -> list[str]:
    (line,) = [ln for ln in table.splitlines() if ln.startswith(f"| {method} |")]
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_mask_method_iou_is_the_mean_over_forged_images_of_the_hand_count(baselines, tmp_path: Path) -> None:
    spec, images, truths = _dataset(tmp_path)
    preds = [_box(6, 12, 2, 18), _box(10, 24, 20, 32), _box(0, 2, 0, 2)]  # the authentic one: a false alarm
    _write_method(baselines, tmp_path / "out", "zero", spec, images, truths, masks=preds,
                  detections=[1.0, 1.0, 1.0])
    table, (entry,) = baselines.score(tmp_path / "out")
    expected = (_hand_iou(preds[0], truths[0]) + _hand_iou(preds[1], truths[1])) / 2
    assert entry["iou"] == pytest.approx(expected)
    assert entry["decision"] == "mask" and entry["image_score"] == "detection"
    assert entry["images_forged"] == 2 and entry["images_authentic"] == 1
    assert entry["false_alarm_images"] == 1.0
    assert entry["seconds_per_image"] == pytest.approx(2.0)
    row = _row(table, "zero")
    assert row[:4] == ["zero", "toy", "2 / 1 / 0", "mask"]
    assert row[4] == f"{expected:.3f}"
    assert row[8] == "0.500"  # image AUC: every image flagged alike


def test_heatmap_method_thresholds_at_half_and_failures_are_counted(baselines, tmp_path: Path) -> None:
    spec, images, truths = _dataset(tmp_path)
    rng = np.random.default_rng(0)
    heats = []
    for truth in truths:
        noise = rng.uniform(0.0, 0.45, (H, W))
        heat = noise if truth is None else np.where(truth, 0.55 + noise, noise)
        heats.append(heat)
    heats[0][0:3, 0:5] = 0.7  # a false positive block on the first forged image
    heats[1][10:12, 16:30] = 0.2  # missed rows on the second
    _write_method(baselines, tmp_path / "out", "dq", spec, images, truths, heatmaps=heats)
    # a mask method on the same data whose second image failed
    _write_method(baselines, tmp_path / "out", "noisesniffer", spec, images, truths,
                  masks=[t if t is not None else np.zeros((H, W), bool) for t in truths], failed=1)
    table, entries = baselines.score(tmp_path / "out", data=[spec])
    by_method = {e["method"]: e for e in entries}

    dq = by_method["dq"]
    ious = [_hand_iou(heats[i] >= 0.5, truths[i]) for i in (0, 1)]
    assert ious[0] < 1 and ious[1] < 1
    assert dq["iou"] == pytest.approx(np.mean(ious))
    assert dq["decision"] == "heatmap>=0.5" and dq["image_score"] == "heatmap max"
    assert dq["image"]["auc"] == 1.0  # forged maxima (>= 0.55) above the authentic one (< 0.45)
    assert 0.9 < dq["auc"] <= 1.0 and dq["f1_best"] >= dq["f1"]
    assert _row(table, "dq")[4] == f"{np.mean(ious):.3f}"

    ns = by_method["noisesniffer"]
    assert ns["iou"] == 1.0 and ns["images_forged"] == 1 and ns["images_authentic"] == 1
    assert [Path(e["path"]).name for e in ns["errors"]] == ["img1.png"]
    assert _row(table, "noisesniffer")[2] == "1 / 1 / 1"


def test_maps_of_another_size_are_resized_to_the_image(baselines, tmp_path: Path) -> None:
    spec, images, truths = _dataset(tmp_path)
    half = [cv2.resize(t.astype(np.uint8) if t is not None else np.zeros((H, W), np.uint8), (W // 2, H // 2),
                       interpolation=cv2.INTER_NEAREST) > 0 for t in truths]
    _write_method(baselines, tmp_path / "out", "zero", spec, images, truths, masks=half,
                  detections=[1.0, 1.0, 0.0])
    _, (entry,) = baselines.score(tmp_path / "out")
    assert entry["iou"] == 1.0  # even boxes survive a 2x round trip exactly
    assert entry["image"]["auc"] == 1.0
