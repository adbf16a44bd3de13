"""The copy-move detector: finds real repeats, leaves untouched images alone, is reproducible."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from focal.evaluation.metrics import pixel_scores
from focal.runtime.copymove import CopyMoveConfig, detect_copy_move, ring_descriptors


def _texture(seed: int, size: int = 256) -> np.ndarray:
    """A natural-looking RGB texture with no repeats: noise smoothed at several scales."""
    rng = np.random.default_rng(seed)
    grey = np.zeros((size, size), np.float32)
    for sigma, weight in ((1.0, 40.0), (3.0, 60.0), (8.0, 80.0)):
        grey += weight * cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), sigma)
    grey = np.clip(128 + grey, 0, 255).astype(np.uint8)
    return np.dstack([grey, np.roll(grey, 3, axis=1), grey // 2 + 60])


def _disk(size: int, cy: int, cx: int, r: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def test_a_translated_copy_is_found_at_its_source_and_target() -> None:
    image = _texture(1)
    image[150:210, 140:200] = image[30:90, 20:80]
    truth = np.zeros(image.shape[:2], bool)
    truth[150:210, 140:200] = truth[30:90, 20:80] = True
    mask = detect_copy_move(image)
    assert mask.shape == truth.shape and mask.dtype == np.uint8
    assert pixel_scores(mask > 0, truth).iou > 0.7


def test_a_rotated_copy_is_found() -> None:
    image = _texture(2)
    source = _disk(256, 70, 70, 30)
    # The disk around (70, 70) turned by 25 degrees and put at (180, 170).
    matrix = cv2.getRotationMatrix2D((70.0, 70.0), 25.0, 1.0)
    matrix[:, 2] += (170 - 70, 180 - 70)
    moved = cv2.warpAffine(image, matrix, (256, 256), flags=cv2.INTER_LINEAR)
    target = _disk(256, 180, 170, 30)
    image[target] = moved[target]
    mask = detect_copy_move(image) > 0
    # Found in part at the default 6 rounds (a quarter of each side here; 12 rounds: 40%), and
    # what is flagged is the copy.
    assert mask[target].mean() > 0.15 and mask[source].mean() > 0.15
    assert mask[source | target].sum() > 0.95 * mask.sum()
    more = detect_copy_move(image, CopyMoveConfig(iterations=12)) > 0
    assert more[source | target].sum() > mask[source | target].sum()


def test_an_image_without_repeats_gives_an_empty_mask() -> None:
    for seed in (3, 4, 5):
        assert not detect_copy_move(_texture(seed)).any()


def test_photos_are_left_alone() -> None:
    datasets = pytest.importorskip("sklearn.datasets", reason="scikit-learn's sample photos (the test extra)")
    for photo in datasets.load_sample_images().images:  # two untouched photos, 427 x 640
        assert not detect_copy_move(np.ascontiguousarray(photo)).any()


def test_the_mask_is_reproducible_and_follows_the_seed() -> None:
    image = _texture(6)
    image[140:200, 150:210] = image[20:80, 30:90]
    first, second = detect_copy_move(image), detect_copy_move(image)
    assert np.array_equal(first, second)
    assert detect_copy_move(image, CopyMoveConfig(seed=1)).any()


def test_a_large_image_is_searched_shrunk_and_answered_at_its_size() -> None:
    image = cv2.resize(_texture(7), (768, 640), interpolation=cv2.INTER_CUBIC)
    image[400:560, 420:580] = image[60:220, 50:210]
    truth = np.zeros(image.shape[:2], bool)
    truth[400:560, 420:580] = truth[60:220, 50:210] = True
    mask = detect_copy_move(image)
    assert mask.shape == (640, 768)
    assert pixel_scores(mask > 0, truth).iou > 0.6


def test_descriptors_do_not_change_under_rotation() -> None:
    image = cv2.cvtColor(_texture(8), cv2.COLOR_RGB2GRAY).astype(np.float32)
    turned = np.ascontiguousarray(np.rot90(image))
    a = ring_descriptors(image)[128, 100]
    b = ring_descriptors(turned)[255 - 100, 128]  # the same pixel after a quarter turn
    assert a.shape == (13,)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize(
    "kwargs",
    [dict(stride=0), dict(max_side=32), dict(min_area=0.0), dict(min_area=0.5), dict(tolerance=-1.0),
     dict(iterations=0)],
)
def test_bad_settings_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="CopyMoveConfig"):
        CopyMoveConfig(**kwargs)


def test_bad_images_are_refused() -> None:
    with pytest.raises(ValueError, match="uint8"):
        detect_copy_move(np.zeros((64, 64), np.uint8))
    with pytest.raises(ValueError, match="too small"):
        detect_copy_move(np.zeros((20, 30, 3), np.uint8))
