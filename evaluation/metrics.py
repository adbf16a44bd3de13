"""Pixel-level localisation metrics of method.md section 5 (NumPy, torch-free).

Per image, at the ground truth's resolution, both maps binarised:

* forged-class F1 = 2 TP / (2 TP + FP + FN), what most papers report;
* macro F1 = mean of the forged-class and the pristine-class F1, what the
  FOCAL paper reports (scikit-learn's ``f1_score(average="macro")``);
* forged-class IoU = TP / (TP + FP + FN).

Empty-mask conventions (an authentic image, or a prediction with nothing
flagged): a class absent from both maps scores 1 for that class (nothing to
find, nothing wrongly found), so an authentic image predicted clean scores
1 everywhere, and any false alarm on it scores 0 forged-class F1 and IoU.
Dataset scores are means over images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PixelScores:
    """Scores of one image, each in ``[0, 1]``."""

    f1: float  # forged-class F1
    f1_macro: float  # mean of forged- and pristine-class F1 (the paper's "F1")
    iou: float  # forged-class IoU
    flagged: float  # share of pixels predicted forged


def _f1(tp: int, fp: int, fn: int) -> float:
    denom = 2 * tp + fp + fn
    return 1.0 if denom == 0 else 2 * tp / denom


def pixel_scores(pred: np.ndarray, truth: np.ndarray) -> PixelScores:
    """Compare a predicted mask with the ground truth.

    Args:
        pred: ``[H, W]`` bool or uint8 (non-zero = forged).
        truth: ``[H, W]`` bool or uint8 (non-zero = forged), same shape.

    Returns:
        :class:`PixelScores` for this image.

    Raises:
        ValueError: shapes differ.
    """
    if pred.shape != truth.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {truth.shape} differ in shape")
    p = np.asarray(pred).astype(bool)
    t = np.asarray(truth).astype(bool)
    tp = int(np.count_nonzero(p & t))
    fp = int(np.count_nonzero(p & ~t))
    fn = int(np.count_nonzero(~p & t))
    tn = p.size - tp - fp - fn
    union = tp + fp + fn
    forged_f1 = _f1(tp, fp, fn)
    pristine_f1 = _f1(tn, fn, fp)
    return PixelScores(
        f1=forged_f1,
        f1_macro=(forged_f1 + pristine_f1) / 2,
        iou=1.0 if union == 0 else tp / union,
        flagged=(tp + fp) / p.size,
    )


def mean_scores(scores: list[PixelScores]) -> dict[str, float]:
    """Dataset means of every field (``nan`` for an empty list)."""
    if not scores:
        return {k: float("nan") for k in PixelScores.__dataclass_fields__}
    return {k: float(np.mean([getattr(s, k) for s in scores])) for k in PixelScores.__dataclass_fields__}


def pixel_auc(soft: np.ndarray, truth: np.ndarray) -> float:
    """Area under the ROC curve of a continuous map against the ground truth.

    The Mann-Whitney statistic with average ranks for ties; ``nan`` when the
    ground truth has a single class (authentic images), which dataset means
    then skip.

    Args:
        soft: ``[H, W]`` float, higher = more likely forged.
        truth: ``[H, W]`` bool or uint8, non-zero = forged.
    """
    from scipy.stats import rankdata  # scipy comes with hdbscan

    t = np.asarray(truth).astype(bool).ravel()
    n_pos = int(t.sum())
    n_neg = t.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(np.asarray(soft, np.float64).ravel())
    return float((ranks[t].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def best_threshold_scores(soft: np.ndarray, truth: np.ndarray, steps: int = 64) -> tuple[float, float]:
    """Forged-class F1 and IoU at the per-image best threshold of ``soft``.

    The oracle-threshold protocol some benchmarks report; it flatters every
    method, so it is reported apart from the fixed 0.5 threshold.

    Returns:
        ``(best F1, best IoU)`` over ``steps`` thresholds spanning the map's range.
    """
    t = np.asarray(truth).astype(bool)
    values = np.asarray(soft, np.float32)
    lo, hi = float(values.min()), float(values.max())
    best_f1 = best_iou = 0.0
    for thr in np.linspace(lo, hi, steps):
        s = pixel_scores(values >= thr, t)
        best_f1, best_iou = max(best_f1, s.f1), max(best_iou, s.iou)
    if not t.any():  # authentic: the best threshold flags nothing
        return 1.0, 1.0
    return best_f1, best_iou


def image_level(scores: np.ndarray, flagged: np.ndarray, forged: np.ndarray) -> dict[str, float]:
    """Image-level detection from the runtime's score and its "any region flagged" decision.

    Args:
        scores: ``[N]`` image scores in [0, 1].
        flagged: ``[N]`` bool, the mask has any forged pixel (FOCAL's decision).
        forged: ``[N]`` bool, the image is forged (ground truth).

    Returns:
        ``auc`` (of the score), ``accuracy`` and ``balanced_accuracy`` (of the
        decision); ``nan`` where one class is missing.
    """
    forged = forged.astype(bool)
    flagged = flagged.astype(bool)
    out = {"auc": pixel_auc(scores, forged), "accuracy": float((flagged == forged).mean()) if forged.size else float("nan")}
    if forged.all() or not forged.any():
        out["balanced_accuracy"] = float("nan")
    else:
        out["balanced_accuracy"] = float((flagged[forged].mean() + (~flagged[~forged]).mean()) / 2)
    return out
