"""The image-level score: 0 without a forged cluster, high for a clean split, small for stray pixels."""

from __future__ import annotations

import numpy as np

from focal.runtime.cluster import normalize_rows
from focal.runtime.score import forgery_score


def _two_sources(rng: np.random.Generator, n_forged: int, n: int = 1000, spread: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    c = normalize_rows(rng.normal(size=(2, 16)))
    labels = np.zeros(n, np.uint8)
    labels[:n_forged] = 1
    feats = normalize_rows(c[labels] + spread * rng.normal(size=(n, 16)) / 4)
    return feats, labels


def test_no_forged_pixels_scores_zero(rng: np.random.Generator) -> None:
    feats, _ = _two_sources(rng, 300)
    assert forgery_score(feats, np.zeros(1000, np.uint8)) == 0.0
    assert forgery_score(feats, np.ones(1000, np.uint8)) == 0.0


def test_clean_split_scores_high_and_tiny_region_low(rng: np.random.Generator) -> None:
    feats, labels = _two_sources(rng, 300)
    assert 0.9 < forgery_score(feats, labels) <= 1.0
    # At a realistic within-source spread the score grows with the flagged region's size.
    scores = [forgery_score(*_two_sources(rng, k, spread=0.5)) for k in (5, 20, 100, 300)]
    assert scores == sorted(scores) and scores[0] < 0.1 and scores[-1] > 0.5


def test_matches_the_correlation_ratio(rng: np.random.Generator) -> None:
    feats = normalize_rows(rng.normal(size=(200, 8)))
    labels = (rng.random(200) < 0.3).astype(np.uint8)
    total = ((feats - feats.mean(0)) ** 2).sum()
    between = sum(((feats[labels == k].mean(0) - feats.mean(0)) ** 2).sum() * (labels == k).sum() for k in (0, 1))
    np.testing.assert_allclose(forgery_score(feats, labels), between / total, rtol=1e-5)


def test_random_split_of_one_source_scores_near_zero(rng: np.random.Generator) -> None:
    feats, _ = _two_sources(rng, 0)
    labels = (rng.random(1000) < 0.3).astype(np.uint8)
    assert forgery_score(feats, labels) < 0.02
