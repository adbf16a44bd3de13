"""The camera-pipeline simulator leaves the traces it claims, and the trace generator uses them."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")  # focal.training imports torch

from focal.training.data.camera import CameraConfig, Pipeline, draw_pipeline, jpeg_at_offset, render  # noqa: E402
from focal.training.data.forensic import TraceConfig, TraceForgeryGenerator  # noqa: E402
from focal.training.data.synthetic import SyntheticConfig  # noqa: E402

FLAT = Pipeline(cfa="RGGB", demosaic="bilinear", shot_noise=0.0, read_noise=0.02, gamma=2.2, contrast=0.0,
                sharpen=0.0, resample=None, jpeg_quality=None, jpeg_offset=(0, 0))


def _gray(side: int = 128, level: int = 128) -> np.ndarray:
    return np.full((side, side, 3), level, np.uint8)


def _site_variance(image: np.ndarray, channel: int) -> np.ndarray:
    """Noise variance of one channel at each of the four 2 x 2 positions, ``[2, 2]``."""
    values = image[:, :, channel].astype(np.float64)
    return np.array([[values[dy::2, dx::2].var() for dx in range(2)] for dy in range(2)])


@pytest.mark.parametrize("cfa, green_sites", [("RGGB", {(0, 1), (1, 0)}), ("GRBG", {(0, 0), (1, 1)})])
def test_green_is_noisiest_where_the_sensor_sampled_it(cfa: str, green_sites: set) -> None:
    # Where the CFA sampled green the pixel keeps its full noise; elsewhere
    # green is interpolated from neighbours, which averages noise away.
    image = render(_gray(), replace(FLAT, cfa=cfa), np.random.default_rng(0))
    var = _site_variance(image, 1)
    sampled = [var[s] for s in green_sites]
    interpolated = [var[s] for s in {(0, 0), (0, 1), (1, 0), (1, 1)} - green_sites]
    assert min(sampled) > 1.5 * max(interpolated), var


def test_render_is_a_pure_function_of_the_generator_state() -> None:
    scene = cv2.GaussianBlur(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8), (0, 0), 2)
    camera = draw_pipeline(np.random.default_rng(2))
    a = render(scene, camera, np.random.default_rng(3))
    b = render(scene, camera, np.random.default_rng(3))
    c = render(scene, camera, np.random.default_rng(4))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("offset", [(0, 0), (3, 5), (7, 2)])
def test_jpeg_grid_starts_at_the_offset(offset: tuple[int, int]) -> None:
    # Block edges are where neighbouring columns jump most: at x with (x + dx) % 8 == 0.
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8), (0, 0), 3)
    out = jpeg_at_offset(image, 30, offset).astype(np.float64)
    jumps = np.abs(np.diff(out[:, :, 1], axis=1)).mean(axis=0)  # jump between column x and x + 1
    by_phase = [jumps[p::8].mean() for p in range(8)]
    dx = offset[1]
    assert int(np.argmax(by_phase)) == (7 - dx) % 8, by_phase
    assert out.shape == image.shape


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="offset"):
        jpeg_at_offset(_gray(16), 90, (8, 0))
    with pytest.raises(ValueError, match="p_jpeg"):
        CameraConfig(p_jpeg=1.5)
    with pytest.raises(ValueError, match="crop"):
        TraceConfig(crop=8)


def test_differs_from() -> None:
    assert not FLAT.differs_from(FLAT)
    assert FLAT.differs_from(replace(FLAT, cfa="BGGR"))
    assert FLAT.differs_from(replace(FLAT, read_noise=FLAT.read_noise * 2))
    assert not FLAT.differs_from(replace(FLAT, read_noise=FLAT.read_noise * 1.2))


@pytest.fixture(scope="module")
def generator(request) -> TraceForgeryGenerator:
    photos_dir = request.getfixturevalue("photos")
    photos = sorted(photos_dir.glob("*.jpg"))[:12]
    return TraceForgeryGenerator(photos, SyntheticConfig(), trace=TraceConfig(crop=128))


def test_samples_are_native_crops_with_masks_in_range(generator: TraceForgeryGenerator) -> None:
    kinds = set()
    low, high = generator.config.area_range
    for i in range(16):
        s = generator.generate(i, np.random.default_rng(i))
        kinds.add(s.kind)
        assert s.image.shape == (128, 128, 3) and s.image.dtype == np.uint8 and s.mask.shape == (128, 128)
        if s.authentic:
            assert not s.mask.any()
        else:
            assert low <= s.mask.mean() <= high
    assert {"authentic", "splice", "copy_move"} <= kinds


def test_samples_are_reproducible(generator: TraceForgeryGenerator) -> None:
    a = generator.generate(5, np.random.default_rng(9))
    b = generator.generate(5, np.random.default_rng(9))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)


def test_a_reprocessed_region_is_the_same_scene_through_another_camera(photos) -> None:
    paths = sorted(photos.glob("*.jpg"))[:6]
    gen = TraceForgeryGenerator(paths, SyntheticConfig(p_authentic=0.0, p_final_jpeg=0.0),
                                trace=TraceConfig(crop=128, p_reprocess=1.0))
    low, high = gen.config.area_range
    for i in range(6):
        s = gen.generate(i, np.random.default_rng(i))
        assert s.kind == "reprocess" and s.donor is None and low <= s.mask.mean() <= high
        # Same content on both sides of the edge: the region's mean colour stays near the
        # surrounding scene's (cameras differ in noise, tone and sharpening, not in what they see).
        host, _, _, again = gen._rendered(s.host, np.random.default_rng(100 + i))
        other = again(np.random.default_rng(200 + i))
        assert other.shape == host.shape
        assert np.abs(cv2.blur(other, (31, 31)).astype(float) - cv2.blur(host, (31, 31))).mean() < 25


def test_a_splice_donor_camera_differs_from_the_host(generator: TraceForgeryGenerator) -> None:
    rng = np.random.default_rng(0)
    host = generator._camera(rng)
    for _ in range(20):
        assert generator._camera(rng, unlike=host).differs_from(host)


def test_every_photo_of_the_pool_renders_at_the_smallest_shrink(photos) -> None:
    # BSDS photos (321 px short side) hold a 256 crop only at the 1.25x
    # minimum shrink: cameras that downsize must then keep the size.
    gen = TraceForgeryGenerator(sorted(photos.glob("*.jpg"))[:6], SyntheticConfig(), trace=TraceConfig(crop=256))
    for resample in (0.999, 0.9, 0.6):  # 0.999: a scene one pixel larger than the crop no longer fits
        gen._camera = lambda rng, unlike=None, r=resample: replace(FLAT, resample=r)
        for i in range(6):
            image, _, camera, _ = gen._rendered(gen.photos[i], np.random.default_rng(i))
            assert image.shape == (256, 256, 3) and camera.resample is None


def test_a_photo_barely_larger_than_the_crop_still_yields_samples(tmp_path) -> None:
    # 282 x 512 (an Urban100 photo) cannot be shrunk 2x and still hold a 256 crop.
    rng = np.random.default_rng(0)
    paths = []
    for i, shape in enumerate([(282, 512), (300, 400)]):
        path = tmp_path / f"p{i}.png"
        cv2.imwrite(str(path), cv2.GaussianBlur(rng.integers(0, 256, (*shape, 3), dtype=np.uint8), (0, 0), 2))
        paths.append(path)
    gen = TraceForgeryGenerator(paths, SyntheticConfig(), trace=TraceConfig(crop=256))
    for i in range(8):
        assert gen.generate(i, np.random.default_rng(i)).image.shape == (256, 256, 3)
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), np.zeros((200, 300, 3), np.uint8))
    with pytest.raises(ValueError, match="small.png: 300 x 200 is smaller than a 256-pixel scene"):
        TraceForgeryGenerator([small, paths[0]], SyntheticConfig(), trace=TraceConfig(crop=256)).generate(
            0, np.random.default_rng(0))


def test_photos_too_small_for_the_crop_are_told_apart_from_their_headers(tmp_path) -> None:
    from focal.training.data.forensic import photos_for_crop

    big, small = tmp_path / "big.jpg", tmp_path / "small.png"
    cv2.imwrite(str(big), np.zeros((300, 400, 3), np.uint8))
    cv2.imwrite(str(small), np.zeros((200, 500, 3), np.uint8))
    assert photos_for_crop([small, big], 256) == ([big], [small])


def test_a_mixture_draws_each_sample_from_one_generator_deterministically(photos) -> None:
    from focal.training.data.mixed import MixedForgeryGenerator
    from focal.training.data.synthetic import SyntheticForgeryGenerator

    pool = sorted(photos.glob("*.jpg"))[:12]
    classic = SyntheticForgeryGenerator(pool, SyntheticConfig(max_side=200))
    traces = TraceForgeryGenerator(pool, SyntheticConfig(), trace=TraceConfig(crop=128))
    mixed = MixedForgeryGenerator([classic, traces], [0.5, 0.5])
    assert len(mixed) == len(pool) and mixed.photos == classic.photos
    shapes = [mixed.generate(i, np.random.default_rng(i)).image.shape for i in range(16)]
    from_traces = sum(s == (128, 128, 3) for s in shapes)  # a trace sample is one crop; a classic one is photo-sized
    assert 3 <= from_traces <= 13
    again = mixed.generate(5, np.random.default_rng(5))
    assert np.array_equal(again.image, mixed.generate(5, np.random.default_rng(5)).image)
    with pytest.raises(ValueError, match="share one photo list"):
        MixedForgeryGenerator([classic, TraceForgeryGenerator(pool[:6], SyntheticConfig())], [1, 1])
    with pytest.raises(ValueError, match="positive"):
        MixedForgeryGenerator([classic, traces], [1, 0])
