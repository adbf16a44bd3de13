"""The JPEG-grid test: zero counts of the native core equal the NumPy oracle's, a paste off its
host's grid is found and outlined, and untouched photos (as stored, re-saved, cropped off their grid)
and pictures never saved as JPEG are left alone."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy.stats import binom

from focal.evaluation.metrics import pixel_scores
from focal.runtime import _native_api
from focal.runtime import jpeggrid as jg
from focal.runtime.jpeggrid import JpegGridConfig, detect_jpeg_grid, zero_counts, zero_counts_reference
from make_fixtures import sample_photos  # tests/ is on sys.path (conftest.py)

needs_native = pytest.mark.skipif(not _native_api.available(), reason="the native core is not built")


@pytest.fixture(scope="module")
def grays() -> list[np.ndarray]:
    return [cv2.cvtColor(p, cv2.COLOR_RGB2GRAY) for p in sample_photos()]  # 2 photos, 427 x 640


def _jpeg(gray: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)


def _paste(grays: list[np.ndarray], shift: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Photo 1's JPEG (q 75) pasted into photo 0's JPEG (q 85) at 160 x 200 px, moved by ``shift``
    against the host's grid; the host's grid is kept by saving losslessly."""
    host, donor = _jpeg(grays[0], 85), _jpeg(grays[1], 75)
    out = host.copy()
    y, x = 120 + shift[0], 200 + shift[1]
    out[y : y + 160, x : x + 200] = donor[120:280, 200:400]
    truth = np.zeros(host.shape, bool)
    truth[y : y + 160, x : x + 200] = True
    return out, truth


@needs_native
@pytest.mark.parametrize("shape", [(8, 8), (9, 31), (77, 130)])
def test_the_native_zero_counts_are_the_references(shape) -> None:
    rng = np.random.default_rng(sum(shape))
    gray = rng.integers(0, 256, shape, dtype=np.uint8)
    ours = zero_counts(gray, backend="native")
    assert ours.shape == (shape[0] - 7, shape[1] - 7) and ours.dtype == np.uint8
    assert np.array_equal(ours, zero_counts_reference(gray))


def test_the_reference_counts_are_the_8x8_dct_s() -> None:
    """The butterfly form (four products a coefficient) is the DCT: against a float64 8 x 8 DCT of
    each window, the counts lie between those with the rounding edge moved by 1e-3 either way."""
    rng = np.random.default_rng(5)
    gray = np.clip(128 + rng.normal(0, 3, (40, 45)), 0, 255).astype(np.uint8)  # many coefficients near 0
    ours = zero_counts_reference(gray)
    c = jg.dct_basis()
    d = gray.astype(np.float64) - 128
    windows = np.lib.stride_tricks.sliding_window_view(d, (8, 8))  # [33, 38, 8, 8]
    coef = np.abs(np.einsum("un,yxnm,vm->yxuv", c, windows, c)).reshape(*windows.shape[:2], 64)[..., 1:]
    low, high = (coef <= 0.5 - 1e-3).sum(-1), (coef <= 0.5 + 1e-3).sum(-1)
    assert np.all(low <= ours) and np.all(ours <= high)
    assert 5 < ours.mean() < 58  # the check is not vacuous: counts span the range


@needs_native
@pytest.mark.parametrize("shape", [(47, 55), (64, 72), (203, 317)])
def test_the_native_votes_and_windows_are_the_references(grays, shape) -> None:
    gray = _jpeg(grays[1][: shape[0], : shape[1]], 70)
    z = zero_counts(gray)
    cfg = JpegGridConfig()
    ours = jg.cell_votes(z, gray, cfg, backend="native")
    want = jg.cell_votes(z, gray, cfg, backend="reference")
    assert ours.dtype == np.int8 and np.array_equal(ours, want) and (ours >= 0).any() and (ours < 0).any()
    assert np.array_equal(_native_api.grid_cell_votes(z, cfg.zmax, cfg.margin, num_threads=1),
                          _native_api.grid_cell_votes(z, cfg.zmax, cfg.margin, num_threads=2))
    rng = np.random.default_rng(shape[0])
    votes = rng.integers(-1, 64, (shape[0] // 4, shape[1] // 3)).astype(np.int8)
    votes[rng.random(votes.shape) < 0.6] = 9  # one grid dense, the rest spread
    grids = np.array([0, 9, 17, 63], np.int64)
    for window in (1, 2, 5, 8):
        bounds = rng.uniform(0, window * window / 2, grids.size)
        native = jg.window_hits(votes, grids, bounds, window, backend="native")
        reference = jg.window_hits(votes, grids, bounds, window, backend="reference")
        assert all(np.array_equal(a, b) for a, b in zip(native, reference))
        assert native[0].size > 0
    with pytest.raises(ValueError, match="0..63"):
        _native_api.grid_window_hits(votes, np.array([64], np.int64), np.zeros(1), 8)


@needs_native
def test_the_counts_do_not_depend_on_threads_and_peak_on_the_files_grid(grays) -> None:
    gray = _jpeg(grays[0][:203, :317], 80)
    one = _native_api.grid_zero_counts(gray, jg._DCT32, num_threads=1)
    two = _native_api.grid_zero_counts(gray, jg._DCT32, num_threads=2)
    assert np.array_equal(one, two) and np.array_equal(one, zero_counts_reference(gray))
    # the windows of the file's own grid hold many more zeros than any other's
    means = np.array([[one[a::8, b::8].mean() for b in range(8)] for a in range(8)])
    assert np.unravel_index(means.argmax(), means.shape) == (0, 0)
    assert means[0, 0] > 1.2 * np.sort(means.ravel())[-2]  # smooth windows hold zeros on any grid
    with pytest.raises(ValueError, match="at least 8 x 8"):
        _native_api.grid_zero_counts(np.zeros((7, 20), np.uint8), jg._DCT32)


def test_the_binomial_tails_are_scipys() -> None:
    counts = np.array([[[0, 3, 10], [64, 5, 1]], [[2, 3, 4], [5, 6, 7]]])
    n = np.array([[10, 64, 64], [64, 20, 1]])
    p = np.array([0.03, 0.2])
    g, nn = np.broadcast_arrays(np.arange(2)[:, None, None], n[None])
    assert np.allclose(jg._log10_tails(g, nn, counts, p), binom.logsf(counts - 1, n, p[:, None, None]) / np.log(10))
    assert np.isclose(jg._log10_tail(500, 20000, 1 / 64), binom.logsf(499, 20000, 1 / 64) / np.log(10))


@pytest.mark.parametrize("shift", [(3, 5), (0, 1), (7, 0)])
def test_a_paste_off_the_hosts_grid_is_found_and_outlined(grays, shift) -> None:
    plane, truth = _paste(grays, shift)
    found = detect_jpeg_grid(plane)
    assert found.grid == (0, 0) and found.score > JpegGridConfig.threshold
    # the region's grid: the donor's origin moved by the shift
    assert found.other == (shift[0] % 8, shift[1] % 8)
    assert pixel_scores(found.mask > 0, truth).iou > 0.6


def test_a_paste_on_the_hosts_grid_shows_nothing(grays) -> None:
    # The same paste moved by whole blocks: the region's grid is the host's, so there is no trace.
    plane, _ = _paste(grays, (8, -16))
    found = detect_jpeg_grid(plane)
    assert found.grid == (0, 0) and found.score < JpegGridConfig.threshold and not found.mask.any()


@pytest.mark.parametrize("case", ["stored", "resaved", "cropped"])
def test_untouched_photos_are_left_alone(grays, case) -> None:
    for gray in grays:
        plane = _jpeg(gray, 90)
        if case == "resaved":
            plane = _jpeg(plane, 75)
        elif case == "cropped":  # the old grid runs faintly through the whole picture
            plane = _jpeg(plane[3:, 5:], 85)
        found = detect_jpeg_grid(plane)
        assert found.mask is not None and not found.mask.any() and found.score < JpegGridConfig.threshold


def test_a_picture_never_saved_as_jpeg_gives_no_evidence(grays) -> None:
    # A photo shrunk from its JPEG (its grid lost) votes no grid of its own: nothing to stand out from.
    small = cv2.resize(grays[0], (400, 267), interpolation=cv2.INTER_AREA)
    found = detect_jpeg_grid(small)
    assert found.mask is None and found.score == 0.0 and found.grid is None
    assert detect_jpeg_grid(grays[0][:40, :300]).mask is None  # too small for the test's windows


def test_bad_settings_and_planes_are_refused() -> None:
    with pytest.raises(ValueError, match="zmax"):
        JpegGridConfig(zmax=64)
    with pytest.raises(ValueError, match="min_share"):
        JpegGridConfig(min_share=1.5)
    with pytest.raises(ValueError, match="uint8 grey plane"):
        detect_jpeg_grid(np.zeros((100, 100, 3), np.uint8))
