"""Pixel metrics against hand-computed cases, including the empty-mask conventions."""

from __future__ import annotations

import numpy as np
import pytest

from focal.evaluation.metrics import mean_scores, pixel_scores


def test_hand_computed_case() -> None:
    truth = np.zeros((4, 4), bool)
    truth[:2, :2] = True  # 4 forged pixels
    pred = np.zeros((4, 4), bool)
    pred[:2, 1:3] = True  # TP 2, FP 2, FN 2, TN 10
    s = pixel_scores(pred, truth)
    assert s.f1 == pytest.approx(2 * 2 / (2 * 2 + 2 + 2))  # 0.5
    assert s.iou == pytest.approx(2 / 6)
    pristine_f1 = 2 * 10 / (2 * 10 + 2 + 2)
    assert s.f1_macro == pytest.approx((0.5 + pristine_f1) / 2)
    assert s.flagged == pytest.approx(4 / 16)


def test_macro_f1_matches_scikit_learn(rng: np.random.Generator) -> None:
    from sklearn.metrics import f1_score

    truth = rng.random((30, 40)) < 0.2
    pred = rng.random((30, 40)) < 0.3
    assert pixel_scores(pred, truth).f1_macro == pytest.approx(f1_score(truth.ravel(), pred.ravel(), average="macro"))


def test_empty_mask_conventions() -> None:
    empty = np.zeros((5, 5), bool)
    some = empty.copy()
    some[0, 0] = True
    clean = pixel_scores(empty, empty)  # authentic image, nothing flagged
    assert clean.f1 == clean.iou == clean.f1_macro == 1.0
    alarm = pixel_scores(some, empty)  # authentic image with a false alarm
    assert alarm.f1 == alarm.iou == 0.0
    missed = pixel_scores(empty, some)  # forged image, nothing found
    assert missed.f1 == missed.iou == 0.0
    with pytest.raises(ValueError, match="differ in shape"):
        pixel_scores(empty, np.zeros((4, 5), bool))


def test_dataset_mean() -> None:
    a = pixel_scores(np.ones((2, 2), bool), np.ones((2, 2), bool))
    b = pixel_scores(np.zeros((2, 2), bool), np.ones((2, 2), bool))
    assert mean_scores([a, b])["iou"] == pytest.approx(0.5)
    assert np.isnan(mean_scores([])["f1"])
