"""Image-level forgery score from a labelled feature map.

FOCAL localises; it has no image classifier. Its image-level evidence is how
*inhomogeneous* an image's features are (paper, Section IV): an untouched
photo's features form one cloud, a forged one's split into two. The score
measures that split for the partition the clustering chose:

    score = eta^2 = (between-class variance) / (total variance)
          = p_f * p_p * |mu_f - mu_p|^2 / (1 - |mu|^2)

with ``p_f``/``p_p`` the forged/pristine pixel fractions, ``mu_f``/``mu_p``
the means of their unit feature vectors and ``mu`` the mean of all (for unit
vectors the total variance is ``1 - |mu|^2``). This is the correlation
ratio of the partition: in ``[0, 1]``; exactly 0 when nothing is flagged
(the "no forged cluster" decision is never a false alarm); near 1 when the
flagged region's features are far from the rest and each side is tight.
A tiny flagged region weighs in proportion to its size (``p_f * p_p``), so a
few stray pixels cannot give a high score.
"""

from __future__ import annotations

import numpy as np


def forgery_score(features: np.ndarray, labels: np.ndarray) -> float:
    """Correlation ratio of the forged/pristine partition of the features.

    Args:
        features: ``[N, D]`` float32, rows L2-normalised.
        labels: ``[N]`` uint8 or bool, 1 = forged.

    Returns:
        A float in ``[0, 1]``; 0 when no pixel (or every pixel) is forged.
    """
    if features.ndim != 2 or labels.shape != (features.shape[0],):
        raise ValueError(f"features [N, D] and labels [N] expected, got {features.shape} and {labels.shape}")
    forged = labels.astype(bool)
    n = forged.size
    n_f = int(forged.sum())
    if n_f == 0 or n_f == n:
        return 0.0
    feats = features.astype(np.float64, copy=False)
    mu_f = feats[forged].mean(axis=0)
    mu_p = feats[~forged].mean(axis=0)
    p_f = n_f / n
    mu = p_f * mu_f + (1.0 - p_f) * mu_p
    # Mean squared distance to the mean; equals 1 - |mu|^2 for unit rows, but
    # computed from the rows so zero rows (no direction) are counted right.
    total = float((feats * feats).sum(axis=1).mean() - mu @ mu)
    if total <= 1e-12:
        return 0.0
    between = p_f * (1.0 - p_f) * float(((mu_f - mu_p) ** 2).sum())
    return float(np.clip(between / total, 0.0, 1.0))


def joined_score(score: float, mask: np.ndarray | None, false_alarm: float) -> float:
    """The image score once a training-free cue has looked: at least ``1 - false_alarm`` where it found a region.

    The features' score (:func:`forgery_score`) says how far apart the clustering's two sides
    lie; a cue (the copy-move search, the double-JPEG cue) says something else, a repeated
    region or one that missed a compression, and flags an untouched photo with probability
    ``false_alarm`` at most (its threshold was fitted to that rate on training-side photos).
    Its finding is therefore worth ``1 - false_alarm`` as a score: an image a cue found ranks
    above every image only the features suspect, and an image whose mask a cue filled is never
    scored as clean. Applied once per cue; the order does not matter (a max).

    Args:
        score: the score so far, float in ``[0, 1]``.
        mask: the cue's ``[H, W]`` mask (uint8 or bool), or None where it had no evidence.
        false_alarm: the cue's false-alarm rate, in ``(0, 1)``.

    Returns:
        A float in ``[0, 1]``: ``score``, or ``max(score, 1 - false_alarm)`` where ``mask`` marks a region.
    """
    if mask is None or not mask.any():
        return score
    return max(score, 1.0 - false_alarm)
