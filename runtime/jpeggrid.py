"""The JPEG-grid test: a region whose 8 x 8 block grid is not its photo's.

A JPEG's pixels keep its block grid: in the 8 x 8 windows aligned with it
many DCT coefficients round to zero (the quantiser zeroed them), in every
other window few do. A region pasted from another JPEG, or a copy moved by a
step that is not a multiple of 8, keeps the grid it came with, which is the
non-aligned double compression of Bianchi and Piva (2012). This module finds
such regions after ZERO (Nikoukhah, Anger, Ehret, Colom, Morel and Grompone
von Gioi, 2019, "JPEG grid detection based on the number of DCT zeros and its
application to automatic and localized forgery detection"), with one
change that keeps its statistical test honest:

- **Zero counts.** ``Z[y, x]``: AC coefficients (of 63) of the 8 x 8 DCT of
  the window whose top-left pixel is ``(y, x)`` that round to 0, at every
  origin (the native core's dense kernel, :func:`zero_counts`).
- **One vote per 8 x 8 cell.** Each cell votes the grid origin
  ``(y mod 8, x mod 8)`` of the window with the most zeros among the 64 whose
  origins lie in the cell (they all hold the cell's last pixel). ZERO votes
  per pixel; neighbouring pixels share almost all their windows, so their
  votes are not independent and a binomial test on them flags untouched
  photos (13 of IMD2020's 100 at NFA ~ 0). No vote where the best window
  ties the second (``margin``), holds no zero, is smooth (more than ``zmax``
  zeros: a flat sky's windows are all nearly zero and vote stray grids), or
  lies near a clipped grey level (within ``clip_margin`` of 0 or 255: the
  first decode's clipping moved it off its grid).
- **The test.** The photo's grid is the most voted. For every other grid
  ``t``, over windows of ``window`` x ``window`` cells, ``score = -log10 NFA``
  with ``NFA = tests * P[Binomial(valid votes, p_t) >= votes for t]``, where
  ``p_t`` is ``t``'s share of all the photo's votes (ZERO uses 1/64; a photo
  cropped then saved again carries its old grid faintly everywhere, which a
  uniform ``p`` mistakes for a region) and ``tests`` counts windows times
  the 63 grids. The image's score is the largest.
- **The mask,** where the score passes ``threshold``: the pixels that vote
  ``t`` (of the 64 windows holding the pixel, ``t``'s holds the most zeros; ties count) inside the
  windows past the threshold, closed over ``close`` pixels and grown by half
  a block: the votes mark window corners, the region is the windows.

The grey plane is the luminance as stored for a JPEG (its grid is the file's
own), else the picture's grey level. torch-free; the zero counts are the
native core's (one pass over the pixels; :func:`zero_counts_reference` is the
NumPy oracle it matches count for count).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from focal.runtime import _native_api
from focal.runtime._dct import dct_basis
from focal.runtime._native_api import resolve_backend

__all__ = ["JpegGridConfig", "JpegGridResult", "cell_votes", "cell_votes_reference", "detect_jpeg_grid",
           "grid_evidence", "window_hits", "window_hits_reference", "zero_counts", "zero_counts_reference"]


@dataclass(frozen=True)
class JpegGridConfig:
    """Settings of the JPEG-grid test (see the module notes for each step)."""

    zmax: int = 56  # a window with more zeros than this (of 63) is smooth: its cell does not vote
    margin: int = 1  # the best window must hold this many zeros more than the second
    clip_margin: int = 8  # cells within 7 px of a grey level this close to 0 or 255 do not vote
    window: int = 8  # cells per side of the test's windows (8 cells = 64 px)
    # -log10 NFA an image's score must pass: the 99% quantile of the score over untouched
    # training-side photos (the 656 of ../shared/data/natural outside the held-out list, each as
    # stored, re-saved twice, and cropped off its grid then saved; benchmarks/jpeg_grid.py --calibrate).
    threshold: float = 3.86
    false_alarm: float = 0.01  # the rate ``threshold`` was fitted to
    close: int = 17  # pixels: the mask's votes are closed over this square
    min_pixels: int = 64 * 64  # smaller images give no evidence: too few cells for the test
    # The photo's grid must win this share of the votes, else the picture shows no grid of its own.
    # On the training-side photos the share is under 0.1 or over 0.5 (every JPEG, and 80 of the 183
    # PNGs: JPEGs once), one PNG between.
    min_share: float = 0.3

    def __post_init__(self) -> None:
        if not 0 <= self.zmax <= 63:
            raise ValueError(f"JpegGridConfig.zmax must lie in 0..63, got {self.zmax}")
        if self.margin < 1 or self.window < 2 or self.close < 1:
            raise ValueError("JpegGridConfig needs margin >= 1, window >= 2 cells and close >= 1 px")
        if not 0.0 < self.false_alarm < 1.0:
            raise ValueError(f"JpegGridConfig.false_alarm must lie in (0, 1), got {self.false_alarm}")
        if not 0.0 <= self.min_share <= 1.0:
            raise ValueError(f"JpegGridConfig.min_share must lie in [0, 1], got {self.min_share}")


@dataclass
class JpegGridResult:
    """What the test found in one grey plane.

    Attributes:
        mask: ``[H, W]`` uint8, 255 = a region on another grid; all zero when the score does not
            pass the threshold. ``None`` when the plane gives no evidence (too small, too few votes).
        score: the largest ``-log10 NFA`` of a window (>= 0; 0 without evidence).
        grid: the photo's grid origin ``(gy, gx)`` (None without evidence).
        other: the other grid's origin where the score peaks (None where no window counted).
    """

    mask: np.ndarray | None
    score: float
    grid: tuple[int, int] | None
    other: tuple[int, int] | None


_DCT32 = dct_basis().astype(np.float32)  # [8, 8] float32 C[k, n], orthonormal DCT-II


def zero_counts_reference(gray: np.ndarray) -> np.ndarray:
    """NumPy oracle of :func:`zero_counts`: the same float32 operations in the same order.

    Both passes use the basis' symmetry, ``C[k, 7 - n] = (-1)^k C[k, n]``: a coefficient is four
    products of ``C[k, 0..3]`` with the sums (even ``k``) or differences (odd ``k``) of mirrored
    taps, half the products of the plain eight-tap sum.

    Args:
        gray: ``[H, W]`` uint8, ``H, W >= 8``.

    Returns:
        ``[H - 7, W - 7]`` uint8 zero counts (0..63).
    """
    d = gray.astype(np.float32) - np.float32(128)
    h, w = d.shape

    def fold(taps: list[np.ndarray], odd: bool) -> list[np.ndarray]:
        return [taps[n] - taps[7 - n] if odd else taps[n] + taps[7 - n] for n in range(4)]

    def coefficient(k: int, folded: list[np.ndarray]) -> np.ndarray:
        acc = _DCT32[k, 0] * folded[0]
        for n in range(1, 4):
            acc = acc + _DCT32[k, n] * folded[n]
        return acc

    taps = [d[:, k : k + w - 7] for k in range(8)]
    rows = np.empty((8, h, w - 7), np.float32)  # R[v][y][x] = sum_k C[v, k] d[y, x + k]
    for v in range(8):
        rows[v] = coefficient(v, fold(taps, v % 2 == 1))
    count = np.zeros((h - 7, w - 7), np.uint8)
    for v in range(8):
        column = [rows[v, j : j + h - 7] for j in range(8)]
        even, odd = fold(column, False), fold(column, True)
        for u in range(1 if v == 0 else 0, 8):
            count += np.abs(coefficient(u, odd if u % 2 else even)) <= np.float32(0.5)
    return count


def zero_counts(gray: np.ndarray, *, backend: str = "auto") -> np.ndarray:
    """``[H - 7, W - 7]`` uint8: AC coefficients (of 63) of the 8 x 8 window at ``(y, x)`` that round to 0.

    Args:
        gray: ``[H, W]`` uint8 grey plane, ``H, W >= 8``.
        backend: ``"native"``, ``"reference"`` (:func:`zero_counts_reference`) or ``"auto"``
            (native where built); both give the same counts.
    """
    if resolve_backend(backend) == "native":
        # ~290 multiplies and ~350 adds a pixel in float32 vector lanes; NumPy's passes take ~10x as long.
        return _native_api.grid_zero_counts(np.ascontiguousarray(gray), _DCT32)
    return zero_counts_reference(gray)


def _clipped_cells(gray: np.ndarray, ch: int, cw: int, margin: int) -> np.ndarray:
    """``[ch, cw]`` bool: a grey level within ``margin`` of 0 or 255 within 7 px of the cell's last pixel."""
    near = ((gray < margin) | (gray > 255 - margin)).astype(np.uint8)
    near = cv2.dilate(near, np.ones((15, 15), np.uint8))
    return near[7 : 7 + 8 * ch : 8, 7 : 7 + 8 * cw : 8] > 0


def cell_votes_reference(z: np.ndarray, config: JpegGridConfig) -> np.ndarray:
    """NumPy oracle of the native cell votes: :func:`cell_votes` before its clip rule.

    Args:
        z: ``[H - 7, W - 7]`` uint8 zero counts (:func:`zero_counts`).
        config: the test's settings (``zmax``, ``margin``).

    Returns:
        ``[(H - 7) // 8, (W - 7) // 8]`` int8: the grid ``8 * gy + gx`` of the cell's first window
        with the most zeros, -1 where it ties a second (within ``margin``), holds none, or more than ``zmax``.
    """
    ch, cw = z.shape[0] // 8, z.shape[1] // 8
    blocks = z[: ch * 8, : cw * 8].reshape(ch, 8, cw, 8).transpose(0, 2, 1, 3).reshape(ch, cw, 64)
    votes = blocks.argmax(-1).astype(np.int8)
    best = blocks.max(-1).astype(np.int16)
    # best - second < margin  <=>  a second window holds at least best - margin + 1 zeros
    close = (blocks >= (best - config.margin + 1).clip(0)[..., None].astype(np.uint8)).sum(-1) > 1
    votes[close | (best == 0) | (best > config.zmax)] = -1
    return votes


def cell_votes(z: np.ndarray, gray: np.ndarray, config: JpegGridConfig, *, backend: str = "auto") -> np.ndarray:
    """``[H', W']`` int8 grid votes ``8 * gy + gx`` of the 8 x 8 cells, -1 for none.

    Cell ``(i, j)``'s 64 windows have their origins in rows ``8i..8i+7`` and columns ``8j..8j+7``;
    a window's place in that block is its grid origin.

    Args:
        z: ``[H - 7, W - 7]`` zero counts (:func:`zero_counts`).
        gray: ``[H, W]`` uint8, the plane they were counted on (for the clip rule).
        config: the test's settings.
        backend: ``"native"``, ``"reference"`` (:func:`cell_votes_reference`) or ``"auto"``; the same votes.
    """
    if resolve_backend(backend) == "native":  # an eighth of the reference's time on a 9 MP photo (4 ms)
        votes = _native_api.grid_cell_votes(z, config.zmax, config.margin)
    else:
        votes = cell_votes_reference(z, config)
    ch, cw = votes.shape
    votes[_clipped_cells(gray, ch, cw, config.clip_margin)] = -1
    return votes


def window_hits_reference(votes: np.ndarray, grids: np.ndarray, bounds: np.ndarray,
                          window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """NumPy oracle of :func:`window_hits`: a box filter of each grid's votes, then ``np.nonzero``."""
    box = dict(ksize=(window, window), normalize=False, borderType=cv2.BORDER_CONSTANT)
    counts = np.stack([cv2.boxFilter((votes == g).astype(np.float32), -1, **box) for g in grids])
    gi, yi, xi = np.nonzero(counts > np.asarray(bounds, np.float64)[:, None, None])
    return gi, yi, xi, np.rint(counts[gi, yi, xi]).astype(np.int64)


def window_hits(votes: np.ndarray, grids: np.ndarray, bounds: np.ndarray, window: int, *,
                backend: str = "auto") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The test's windows whose votes for a grid pass that grid's bound.

    Window ``(i, j)`` holds the ``window x window`` cells ``i - window // 2 .. i + window - 1 -
    window // 2`` (and the same columns), cut at the plane's edge (OpenCV's centred box filter).

    Args:
        votes: ``[H', W']`` int8 cell votes (:func:`cell_votes`).
        grids: ``[G]`` int64 grids ``0..63`` to count.
        bounds: ``[G]`` float64; a window is kept where its count for ``grids[g]`` exceeds ``bounds[g]``.
        window: cells a side, ``>= 1``.
        backend: ``"native"``, ``"reference"`` (:func:`window_hits_reference`) or ``"auto"``; the same hits.

    Returns:
        ``(g, y, x, count)``, each ``[K]`` int64: the index into ``grids``, the window and its
        count, in ``np.nonzero``'s order over ``[G, H', W']``.
    """
    if resolve_backend(backend) == "native":  # one pass per grid, no [G, H', W'] planes
        gi, yi, xi, count = _native_api.grid_window_hits(votes, grids, bounds, window)
        return gi.astype(np.int64), yi.astype(np.int64), xi.astype(np.int64), count.astype(np.int64)
    return window_hits_reference(votes, grids, bounds, window)


def _log10_tail(count: int, n: int, p: float) -> float:
    """``log10 P[Binomial(n, p) >= count]``, ``0 <= count <= n``."""
    one = np.zeros(1, np.int64)
    return float(_log10_tails(one, one + n, one + count, np.array([p]))[0])


def _log10_tails(g: np.ndarray, n: np.ndarray, counts: np.ndarray, p: np.ndarray) -> np.ndarray:
    """``log10 P[Binomial(n, p[g]) >= counts]``: ``g``, ``n``, ``counts`` int, one shape; ``p`` ``[G]``.

    The pmf is summed in log space once per distinct ``(g, n, count)``: a test's windows hold few
    distinct pairs (``n <= window ** 2``), so one pass serves every grid.
    """
    g_count = p.shape[0]
    top = int(n.max())
    key = (g * (top + 1) + n) * (top + 1) + counts
    # the keys are small: a count of each, not a sort
    present = np.flatnonzero(np.bincount(key.ravel(), minlength=g_count * (top + 1) ** 2))
    gg, rest = np.divmod(present, (top + 1) ** 2)
    nn, kk = (rest // (top + 1))[:, None], (rest % (top + 1))[:, None]
    lf = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, top + 1)))])  # log k!
    j = np.arange(top + 1)[None, :]
    with np.errstate(divide="ignore"):
        logpmf = (lf[nn] - lf[np.minimum(j, nn)] - lf[np.maximum(nn - j, 0)]
                  + j * np.log(p[gg])[:, None] + (nn - j) * np.log1p(-p[gg])[:, None])
    logpmf = np.where((j >= kk) & (j <= nn), logpmf, -np.inf)
    peak = logpmf.max(axis=1, keepdims=True)
    finite = np.where(np.isfinite(peak), peak, 0.0)
    with np.errstate(divide="ignore"):
        tail = finite[:, 0] + np.log(np.exp(logpmf - finite).sum(axis=1))
    tail = np.where(kk[:, 0] <= 0, 0.0, tail) / np.log(10)  # P[X >= 0] = 1
    table = np.zeros(g_count * (top + 1) ** 2)
    table[present] = tail
    return table[key]


def _on_grid(z: np.ndarray, grid: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """``[y1 - y0, x1 - x0]`` bool: the pixels that vote ``grid`` (``8 * gy + gx``).

    Pixel ``(y, x)`` lies in the 64 windows with origins ``(y - a, x - b)``, ``a, b = 0..7``, one
    on each grid; it votes ``grid`` when that grid's window holds the most zeros of the 64 (ties
    count for it) and at least one. Pixels whose 64 windows are not all inside the plane vote none.
    """
    oh, ow = z.shape
    gy, gx = divmod(grid, 8)
    yy, xx = np.arange(y0, y1), np.arange(x0, x1)
    # The one window on ``grid`` holding each pixel: the nearest origin at or above / left of it.
    oy, ox = yy - (yy - gy) % 8, xx - (xx - gx) % 8
    full_y, full_x = (yy >= 7) & (yy < oh), (xx >= 7) & (xx < ow)  # all 64 windows exist
    on = z[np.ix_(oy.clip(0, oh - 1), ox.clip(0, ow - 1))]
    # The most zeros over the 64 windows: a max over the 8 x 8 origins up and left of the pixel
    # (one dilation instead of 64 shifted compares), over the part of the plane those windows use.
    cy0, cx0, cy1, cx1 = max(0, y0 - 7), max(0, x0 - 7), max(1, min(oh, y1)), max(1, min(ow, x1))
    most = cv2.dilate(z[cy0:cy1, cx0:cx1], np.ones((8, 8), np.uint8), anchor=(7, 7))
    most = most[np.ix_(yy.clip(cy0, cy1 - 1) - cy0, xx.clip(cx0, cx1 - 1) - cx0)]
    return (on == most) & (most > 0) & full_y[:, None] & full_x[None, :]


def detect_jpeg_grid(gray: np.ndarray, config: JpegGridConfig | None = None, *,
                     backend: str = "auto") -> JpegGridResult:
    """Find a region on another 8 x 8 grid than its photo's.

    Args:
        gray: ``[H, W]`` uint8 grey plane (for a JPEG, the luminance as stored).
        config: the test's settings (default: :class:`JpegGridConfig`).
        backend: the zero counts' and votes' implementation (:func:`zero_counts`, :func:`cell_votes`).

    Returns:
        The mask (``[H, W]`` uint8, 255 = on another grid), the score and the grids.
    """
    cfg = config or JpegGridConfig()
    gray = np.asarray(gray)
    if gray.dtype != np.uint8 or gray.ndim != 2:
        raise ValueError(f"the JPEG-grid test needs an [H, W] uint8 grey plane, got {gray.dtype} {gray.shape}")
    h, w = gray.shape
    if h * w < cfg.min_pixels or min(h, w) < 8 * (cfg.window + 1):
        return JpegGridResult(None, 0.0, None, None)
    return grid_evidence(zero_counts(gray, backend=backend), gray, cfg, backend=backend)


def grid_evidence(z: np.ndarray, gray: np.ndarray, cfg: JpegGridConfig, *, backend: str = "auto") -> JpegGridResult:
    """The test on zero counts already made (:func:`detect_jpeg_grid` after :func:`zero_counts`).

    Args:
        z: ``[H - 7, W - 7]`` uint8 zero counts of ``gray``.
        gray: ``[H, W]`` uint8, at least ``8 * (window + 1)`` pixels a side.
        cfg: the test's settings.
        backend: the votes' and windows' implementation (:func:`cell_votes`, :func:`window_hits`).
    """
    h, w = gray.shape
    votes = cell_votes(z, gray, cfg, backend=backend)
    valid = votes >= 0
    n_valid = int(valid.sum())
    k = cfg.window
    if n_valid < k * k:
        return JpegGridResult(None, 0.0, None, None)
    hist = np.bincount(votes[valid].astype(np.int64), minlength=64)
    main = int(hist.argmax())
    # No grid of its own (a picture never saved as JPEG, or one whose grid is lost): nothing to stand
    # out from, and the spread votes of texture would. A chance test is no guide: with thousands of
    # votes a 2.5% share is "significant" against 1/64.
    if hist[main] < cfg.min_share * n_valid:
        return JpegGridResult(None, 0.0, None, None)
    box = dict(ksize=(k, k), normalize=False, borderType=cv2.BORDER_CONSTANT)
    n = np.rint(cv2.boxFilter(valid.astype(np.float32), -1, **box)).astype(np.int64)
    tests = np.log10(votes.size * 63.0)
    grids = np.array([g for g in np.nonzero(hist)[0] if g != main], np.int64)
    if not grids.size:
        return JpegGridResult(np.zeros((h, w), np.uint8), 0.0, divmod(main, 8), None)
    shares = hist[grids] / n_valid
    # A window of c votes for a grid scores at most -c log10(share) - tests (P[X >= c] >= share^c):
    # only windows past that bound need tail sums, a few of a photo's stray grids' windows.
    gi, yi, xi, c = window_hits(votes, grids, tests / -np.log10(shares), k, backend=backend)
    if gi.size == 0:
        return JpegGridResult(np.zeros((h, w), np.uint8), 0.0, divmod(main, 8), None)
    if gi.size == 0:
        return JpegGridResult(np.zeros((h, w), np.uint8), 0.0, divmod(main, 8), None)
    scores = -_log10_tails(gi, n[yi, xi], c, shares) - tests
    peaks = np.full(len(grids), -np.inf)
    np.maximum.at(peaks, gi, scores)
    pick = int(peaks.argmax())
    best, other = float(peaks[pick]), int(grids[pick])
    if best <= 0:  # no window stands out: the photo is on one grid
        return JpegGridResult(np.zeros((h, w), np.uint8), 0.0, divmod(main, 8), None)
    mask = np.zeros((h, w), np.uint8)
    if best > cfg.threshold:
        # The box filter's window (i, j) covers cells i - k//2 .. i + k - 1 - k//2 (its anchor is the
        # centre): a cell lies in a window past the threshold when one of those windows is.
        back = k - 1 - k // 2
        passed = np.zeros(votes.shape, np.uint8)
        hit = (gi == pick) & (scores > cfg.threshold)
        passed[yi[hit], xi[hit]] = 1
        cells = cv2.dilate(passed, np.ones((k, k), np.uint8), anchor=(back, back))
        ci, cj = np.nonzero(cells)
        i0, i1, j0, j1 = int(ci.min()), int(ci.max()) + 1, int(cj.min()), int(cj.max()) + 1
        # cell (i, j) = window origins 8i..8i+7, 8j..8j+7; their windows reach 7 px further
        y0, y1, x0, x1 = 8 * i0, min(h, 8 * i1 + 15), 8 * j0, min(w, 8 * j1 + 15)
        sub = np.kron(cells[i0:i1, j0:j1], np.ones((8, 8), np.uint8))[: y1 - y0, : x1 - x0]
        inside = np.zeros((y1 - y0, x1 - x0), np.uint8)
        inside[: sub.shape[0], : sub.shape[1]] = sub
        inside = cv2.dilate(inside, np.ones((8, 8), np.uint8), anchor=(7, 7))  # the windows' pixels
        region = (_on_grid(z, other, y0, y1, x0, x1) & (inside > 0)).astype(np.uint8)
        region = cv2.morphologyEx(region, cv2.MORPH_CLOSE, np.ones((cfg.close, cfg.close), np.uint8))
        mask[y0:y1, x0:x1] = cv2.dilate(region, np.ones((8, 8), np.uint8)) * np.uint8(255)
    return JpegGridResult(mask, best, divmod(main, 8), divmod(other, 8))
