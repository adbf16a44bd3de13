"""Double-JPEG evidence: regions that missed a JPEG compression the rest went through.

Most real edits are saved as JPEG twice: the photo was a JPEG (the camera's,
or a download's), the editor pasted something into it and saved a JPEG
again. Where the pixels went through both compressions, each 8 x 8 block's
DCT coefficients, counted in steps of the file's own table, land on a comb:
``round(m * q1 / q2)`` for the first step ``q1`` and the last ``q2``, with
gaps between the teeth when ``q1 > q2``. A pasted region did not go through
the first compression (or went through another one, on another grid), so
its values fall in the gaps as often as anywhere. This is the double-
quantisation (DQ) cue of Lin, He, Tang and Tang (2009), with the comb
modelled as Bianchi and Piva (2012) do, rebuilt from the decoded pixels and
torch-free:

1. the file's luminance quantisation table is read from its header (DQT);
2. the grey level is decoded as stored (no EXIF rotation, so blocks sit on
   the file's grid); every aligned 8 x 8 block's DCT is divided by the table
   and rounded: the coefficients the file holds, up to the decoder's
   rounding. Blocks with a colour within ``clip_margin`` of 0 or 255 are left
   out: clipping when the first compression was decoded moved them off its
   lattice;
3. for each of the first ``frequencies`` AC positions, the first step is the
   one whose comb explains the values off zero best (:func:`first_step`:
   mean log-likelihood ratio against a single compression, at least
   ``min_gain``); positions without one say nothing. A block's value ``k``
   then scores ``-log comb(k)``: positive in a gap, ``-log(q1 / q2)`` on a
   tooth; zero and the values nearest it carry no evidence (every block's
   small coefficients sit on the zero tooth, the first compression's dead
   zone, and its rounding spill into the next values is no sign of a paste);
4. the scores add up over positions, and their mean over ``window`` x
   ``window`` blocks is the evidence. An image is flagged when its largest
   evidence passes ``threshold``: the 99% quantile of that maximum over
   untouched training-side photos that show a double compression, each as
   it is and saved twice more at random qualities (a false-alarm rate fitted
   on photos, as ``max_cost`` of the copy-move search is). The mask grows
   from those blocks over the connected blocks whose ``grow_window`` mean
   passes ``grow_llr``.

A second, non-aligned test joins its mask (``DoubleJpegConfig.grid``,
:mod:`focal.runtime.jpeggrid`): a region whose 8 x 8 grid is not the
photo's, pasted from another JPEG or moved by a step that is not a multiple
of 8. It reads the grey plane of any format (a JPEG saved again as PNG keeps
its grid), and is blind where the comb is not: it needs no first table
coarser than the last, only a grid the region does not share.

Files whose coefficients show no comb (a single compression, or a first one
finer than the last) give no evidence of the aligned kind; pictures with no
grid of their own (never a JPEG, or shrunk since) none of the other. The cue
is blind to a region that went through the same grid and no coarser table,
and to an edit of a picture that never was a JPEG.
"""

from __future__ import annotations

import functools
import logging
import struct
from dataclasses import dataclass

import cv2
import numpy as np

from focal.runtime import _native_api
from focal.runtime._dct import dct_basis
from focal.runtime._headers import JPEG_SOF_MARKERS, HeaderError, declared_size, image_format, jpeg_segments
from focal.runtime._native_api import resolve_backend
from focal.runtime.jpeggrid import JpegGridConfig, JpegGridResult, detect_jpeg_grid

__all__ = [
    "DoubleJpegConfig",
    "DoubleJpegResult",
    "SPREADS",
    "block_dct_reference",
    "block_evidence",
    "clipped_blocks",
    "comb",
    "dct_coefficients",
    "detect_double_jpeg",
    "double_jpeg_mask",
    "exif_orientation",
    "first_step",
    "luma_quantization",
    "orient",
    "stored_gray",
]

# JPEG's zigzag scan: position k of a DQT table is natural index ZIGZAG[k].
ZIGZAG = np.array([
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21,
    28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54,
    47, 55, 62, 63,
])


@dataclass(frozen=True)
class DoubleJpegConfig:
    """Settings of the double-JPEG cue (see the module notes for each step)."""

    frequencies: int = 10  # AC positions used, in zigzag order from the first
    max_ratio: int = 16  # first steps looked for: last + 1 .. max_ratio * last
    min_gain: float = 0.25  # a frequency counts when its comb explains its values by this much (nats per value)
    clip_margin: int = 8  # blocks with a pixel within this of 0 or 255 carry no evidence
    max_value: int = 60  # coefficients beyond +-max_value are clipped and carry no evidence
    clip_llr: float = 3.0  # one position's say on one block, in nats
    window: int = 9  # blocks averaged for the decision (9 blocks = 72 px)
    # 99% quantile of the largest window mean over the untouched training-side photos that show a
    # double compression: the photos of ../shared/data/natural outside the held-out list, each as it
    # is and 3 copies each saved twice more at random qualities (benchmarks/double_jpeg.py --calibrate).
    threshold: float = 0.430
    false_alarm: float = 0.01  # the rate ``threshold`` was fitted to (its quantile is 1 - false_alarm)
    grow_window: int = 5  # blocks averaged for the mask's extent
    grow_llr: float = 0.5  # mean evidence a block needs to join a flagged region
    min_pixels: int = 64 * 64  # smaller images give no evidence: too few blocks for a histogram
    # The non-aligned test (focal.runtime.jpeggrid): a region on another 8 x 8 grid than the photo's.
    # It reads the grey plane of any format (a JPEG saved as PNG keeps its grid); None turns it off.
    grid: JpegGridConfig | None = JpegGridConfig()

    def __post_init__(self) -> None:
        if not 1 <= self.frequencies <= 63:
            raise ValueError(f"DoubleJpegConfig.frequencies must lie in 1..63, got {self.frequencies}")
        if self.max_ratio < 2:
            raise ValueError(f"DoubleJpegConfig.max_ratio must be >= 2, got {self.max_ratio}")
        if self.window < 1 or self.grow_window < 1:
            raise ValueError("DoubleJpegConfig windows must be >= 1 block")
        if not 0.0 < self.false_alarm < 1.0:
            raise ValueError(f"DoubleJpegConfig.false_alarm must lie in (0, 1), got {self.false_alarm}")
        if self.min_gain <= 0 or self.clip_llr <= 0 or self.max_value < 2:
            raise ValueError("DoubleJpegConfig needs min_gain > 0, clip_llr > 0 and max_value >= 2")


@dataclass
class DoubleJpegResult:
    """What the cue found in one file.

    Attributes:
        mask: ``[H, W]`` uint8 (255 = a block that missed the first
            compression, or a region on another grid), on the pixel grid as
            stored; all zero when nothing was found. ``None`` when the file
            gives no evidence: neither a JPEG with a comb nor a picture the
            grid test can read (too small, too few cells with a vote, or a
            format the header reader does not know).
        evidence: the aligned test's largest ``window`` mean of the block log-likelihood
            ratios (nats; > ``threshold`` flags the image), 0.0 without evidence.
        first_steps: ``{zigzag position: first quantisation step}`` of the
            frequencies that showed a double compression.
        grid: the non-aligned test's finding (its score and grids), None when it is off.
    """

    mask: np.ndarray | None
    evidence: float
    first_steps: dict[int, int]
    grid: JpegGridResult | None = None

    @property
    def found(self) -> bool:
        """True when a region was flagged."""
        return self.mask is not None and bool(self.mask.any())


def luma_quantization(data: bytes) -> np.ndarray | None:
    """The quantisation table of a JPEG's first component (luminance), in natural order.

    Args:
        data: the file's bytes. Only the header is read; lengths are checked
            against the buffer, so a truncated or hostile header gives None.

    Returns:
        ``[8, 8]`` int64 steps (>= 1), or None when ``data`` is not a JPEG,
        has no frame header, or names a table it does not define.
    """
    tables: dict[int, np.ndarray] = {}
    for marker, seg in jpeg_segments(data):
        if marker == 0xDB:
            j = 0
            while j < len(seg):
                precision, index = seg[j] >> 4, seg[j] & 15
                n = 128 if precision else 64
                if precision > 1 or j + 1 + n > len(seg):
                    return None
                values = np.frombuffer(seg[j + 1 : j + 1 + n], ">u2" if precision else "u1").astype(np.int64)
                table = np.zeros(64, np.int64)
                table[ZIGZAG] = values
                tables[index] = table.reshape(8, 8)
                j += 1 + n
        elif marker in JPEG_SOF_MARKERS:
            # frame header: precision(1) height(2) width(2) components(1), then 3 bytes per component
            if len(seg) < 9:
                return None
            table = tables.get(seg[8])
            return None if table is None or table.min() < 1 else table
    return None


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation tag (1-8) of a JPEG, 1 when absent or unreadable."""
    for marker, seg in jpeg_segments(data):
        if marker != 0xE1 or not seg.startswith(b"Exif\x00\x00"):
            continue
        tiff = seg[6:]
        if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
            return 1
        end = "<" if tiff[:2] == b"II" else ">"
        (ifd,) = struct.unpack(end + "I", tiff[4:8])
        if ifd + 2 > len(tiff):
            return 1
        (count,) = struct.unpack(end + "H", tiff[ifd : ifd + 2])
        for k in range(count):
            at = ifd + 2 + 12 * k
            if at + 12 > len(tiff):
                return 1
            tag, kind = struct.unpack(end + "HH", tiff[at : at + 4])
            if tag == 0x0112 and kind == 3:  # SHORT
                (value,) = struct.unpack(end + "H", tiff[at + 8 : at + 10])
                return value if 1 <= value <= 8 else 1
        return 1
    return 1


def orient(plane: np.ndarray, orientation: int) -> np.ndarray:
    """``plane`` (``[H, W]``) as a viewer shows a file with this EXIF orientation (as OpenCV applies it)."""
    ops = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.T,
        6: lambda a: a.T[:, ::-1],  # 90 degrees clockwise
        7: lambda a: a.T[::-1, ::-1],
        8: lambda a: a.T[::-1],  # 90 degrees counter-clockwise
    }
    return np.ascontiguousarray(ops.get(orientation, ops[1])(plane))


_DCT = dct_basis()  # [8, 8] float64 C[k, n]: a block's coefficients are C B C^T


def block_dct_reference(gray: np.ndarray, positions: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """The NumPy reference of the native block DCT (``focal.runtime._native_api.block_dct``).

    Per block ``d = pixel - 128`` (float64), a row pass ``T[y, v] = sum_x d[y, x] * C[v, x]``
    and a column pass ``raw = sum_y C[u, y] * T[y, v]``, each summed in index order from its
    first product, then ``rint(raw / step)``: the kernel's operations in the kernel's order, so
    the two agree bit for bit.

    Args:
        gray: ``[H, W]`` uint8 (block grid at 0, 0; partial edge blocks are left out).
        positions: ``[K]`` int indices ``8 * u + v`` in 0..63.
        steps: ``[K]`` int quantisation steps, >= 1.

    Returns:
        ``[H // 8, W // 8, K]`` int32.
    """
    bh, bw = gray.shape[0] // 8, gray.shape[1] // 8
    u, v = np.divmod(np.asarray(positions, np.int64), 8)
    cols = int(v.max()) + 1
    steps = np.asarray(steps, np.float64)
    out = np.empty((bh, bw, len(u)), np.int32)
    band = max(1, (1 << 14) // max(bw, 1))  # block rows per band: ~16k blocks, ~8 MiB of float64
    for r0 in range(0, bh, band):
        r1 = min(bh, r0 + band)
        d = gray[r0 * 8 : r1 * 8, : bw * 8].reshape(r1 - r0, 8, bw, 8).transpose(0, 2, 1, 3).reshape(-1, 8, 8)
        d = d.astype(np.float64) - 128.0  # [N, y, x]
        t = d[:, :, 0, None] * _DCT[:cols, 0]
        for x in range(1, 8):
            t = t + d[:, :, x, None] * _DCT[:cols, x]
        raw = _DCT[u, 0] * t[:, 0, v]
        for y in range(1, 8):
            raw = raw + _DCT[u, y] * t[:, y, v]
        out[r0:r1] = np.rint(raw / steps).reshape(r1 - r0, bw, len(u))
    return out


def dct_coefficients(gray: np.ndarray, table: np.ndarray, zigzag: int | None = None, *,
                     backend: str = "auto") -> np.ndarray:
    """Quantised DCT coefficients of every whole 8 x 8 block of a decoded grey plane.

    Args:
        gray: ``[H, W]`` uint8, the luminance as stored (block grid at 0, 0).
        table: ``[8, 8]`` int64 quantisation steps.
        zigzag: only the AC positions ``1..zigzag`` in zigzag order (what the cue reads).
        backend: ``"native"`` (the compiled core), ``"reference"`` (:func:`block_dct_reference`)
            or ``"auto"`` (native where built); both give the same bits.

    Returns:
        ``round(DCT(block - 128) / table)``: ``[H // 8, W // 8, 8, 8]`` int64, or with ``zigzag``
        ``[H // 8, W // 8, zigzag]`` int32.
    """
    index = np.arange(64) if zigzag is None else ZIGZAG[1 : zigzag + 1]
    steps = np.asarray(table, np.int64).reshape(64)[index]
    if resolve_backend(backend) == "native":
        # One pass over the pixels, no float64 copy of the plane: a 9 MP photo's 142k blocks take
        # 5-7 ms here, the reference's 16 NumPy passes ~100 ms (docs/native.md, "Block DCT").
        out = _native_api.block_dct(np.ascontiguousarray(gray), _DCT, index, steps)
    else:
        out = block_dct_reference(gray, index, steps)
    bh, bw = out.shape[:2]
    return out.astype(np.int64).reshape(bh, bw, 8, 8) if zigzag is None else out


def _erf(x: np.ndarray) -> np.ndarray:
    """The error function, Abramowitz and Stegun 7.1.26 (absolute error < 1.5e-7): NumPy has none."""
    t = 1.0 / (1.0 + 0.3275911 * np.abs(x))
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return np.sign(x) * (1.0 - poly * np.exp(-x * x))


# Spread of a coefficient around its lattice point, in steps of the last table times the step:
# two roundings of the pixels to integers (the first decode's, which the second compression saw,
# and the decode this module reads) each add a uniform error of variance 1/12 per pixel, which the
# orthonormal DCT keeps per coefficient.
_ROUNDING_SD = float(np.sqrt(2.0 / 12.0))
# Measured spreads are larger (0.4-0.8 on photos saved twice: the encoder's colour conversion and
# its own roundings, ringing near clipped pixels), so each comb is also tried wider and the data
# picks its spread with its first step.
SPREADS = (_ROUNDING_SD, 0.6, 0.8, 1.1)


def comb(first: int, last: int, values: np.ndarray, spread: float = _ROUNDING_SD) -> np.ndarray:
    """How much more often than a smooth law a double compression hits each value.

    A coefficient first quantised with step ``first`` and then with ``last``
    lands on ``round(m * first / last)`` for integers ``m`` (plus the pixel
    roundings' spread); a single compression hits every value alike. The
    ratio of the two laws, for a law that is smooth over a period, is
    ``rho * sum_m P(round(m * rho + e) = k)`` with ``rho = first / last``:
    about ``rho`` on the comb's teeth, near 0 in its gaps, 1 on average.

    Args:
        first: the first quantisation step (> ``last`` for a comb with gaps).
        last: the file's step of the same frequency.
        values: ``[K]`` int64 coefficient values ``k``.
        spread: standard deviation of a coefficient around its tooth, in DCT units.

    Returns:
        ``[K]`` float64 ratios ``>= 0``.
    """
    rho = first / last
    sd = spread / last
    m = np.arange(np.floor((values.min() - 2) / rho), np.ceil((values.max() + 2) / rho) + 1)
    teeth = m * rho
    z = (values[:, None] + 0.5 - teeth[None, :]) / (np.sqrt(2.0) * sd)
    w = (values[:, None] - 0.5 - teeth[None, :]) / (np.sqrt(2.0) * sd)
    return rho * 0.5 * (_erf(z) - _erf(w)).sum(axis=1)


@functools.lru_cache(maxsize=4096)
def _comb_over(first: int, last: int, lim: int, spread: float) -> np.ndarray:
    """:func:`comb` over ``-lim..lim``, kept: the same step pairs recur on every image of a camera."""
    table = comb(first, last, np.arange(-lim, lim + 1), spread)
    table.setflags(write=False)
    return table


def _off_zero(lim: int) -> np.ndarray:
    """``[2 * lim + 1]`` bool over the values ``-lim..lim``: those that tell combs apart (not 0, not clipped)."""
    values = np.arange(-lim, lim + 1)
    return (values != 0) & (np.abs(values) < lim)


@functools.lru_cache(maxsize=512)
def _log_combs(last: int, top: int, lim: int, clip_llr: float) -> np.ndarray:
    """Every candidate's ``log max(comb, exp(-clip_llr))`` over the off-zero values, kept.

    Returns:
        ``[(top - last) * len(SPREADS), n]`` float64, read-only: row ``k`` is the first step
        ``last + 1 + k // len(SPREADS)`` at spread ``SPREADS[k % len(SPREADS)]``, so one
        product with the histogram and a row sum score them all (a table's steps recur on
        every image of a camera).
    """
    off, floor = _off_zero(lim), np.exp(-clip_llr)
    rows = [np.log(np.maximum(_comb_over(first, last, lim, sd)[off], floor))
            for first in range(last + 1, top + 1) for sd in SPREADS]
    table = np.array(rows, np.float64).reshape(len(rows), int(off.sum()))
    table.setflags(write=False)
    return table


def first_step(hist: np.ndarray, last: int, cfg: DoubleJpegConfig) -> tuple[int, float, float]:
    """The first quantisation step that best explains a histogram, and by how much.

    Each candidate's comb (at each of ``SPREADS``) is scored by the mean log-ratio it gives the
    values off zero (zero is every law's most common value, so it tells none
    apart), ``mean(log max(comb(k), exp(-clip_llr))``: the log-likelihood
    per value of "double compression with this first step" against "single
    compression" when the law is smooth over a period. A comb whose gaps hold
    values loses ``clip_llr`` on each, so a comb of every other tooth (twice
    the true step) loses to the true one, and every comb loses to a single
    compression's values.

    Args:
        hist: ``[2 * max_value + 1]`` counts of the values ``-max_value..max_value``.
        last: the file's step of this frequency.

    Returns:
        ``(step, gain, spread)``: the best first step, its mean log-ratio
        (nats per value) and the spread (one of ``SPREADS``) it was scored
        with; ``(0, 0.0, 0.0)`` when no step gains over a single compression.
    """
    lim = cfg.max_value
    off = _off_zero(lim)
    total = hist[off].sum()
    if total <= 0:
        return 0, 0.0, 0.0
    top = min(last * cfg.max_ratio, 255)
    if top <= last:  # a last step of 255: no larger first step to look for
        return 0, 0.0, 0.0
    # A product and a row sum, not BLAS's matrix-vector product: BLAS splits a large table over
    # every core and leaves its workers spinning against the native core's and ONNX Runtime's
    # threads in the stages after the cue (docs/evaluation.md, "Double JPEG"); the table is at
    # most a few hundred rows of 117 values.
    gains = (_log_combs(last, top, lim, cfg.clip_llr) * hist[off].astype(np.float64)).sum(axis=1) / total
    k = int(np.argmax(gains))  # the first of equal gains: the smallest step, then the narrowest spread
    if gains[k] <= 0.0:
        return 0, 0.0, 0.0
    best, gain, spread = last + 1 + k // len(SPREADS), float(gains[k]), SPREADS[k % len(SPREADS)]
    if best == top:  # the best step is the last one tried: the true one may lie beyond, and its comb is not this
        return 0, 0.0, 0.0
    return best, gain, spread


def block_evidence(coef: np.ndarray, table: np.ndarray, cfg: DoubleJpegConfig = DoubleJpegConfig(),
                   skip: np.ndarray | None = None) -> tuple[np.ndarray, dict[int, int]]:
    """Per-block log-likelihood ratio "missed the first compression" vs "went through it".

    For each frequency with a first step (:func:`first_step` ratio at least
    ``min_ratio``), a block's value ``k`` scores ``-log comb(k)``: positive in
    the comb's gaps, ``-log rho`` on its teeth, clipped to ``+-clip_llr``.

    Args:
        coef: ``[bh, bw, K]`` integer quantised coefficients of the AC positions 1..K in zigzag
            order, ``K >= frequencies`` (:func:`dct_coefficients` with ``zigzag``).
        table: ``[8, 8]`` int64 the file's steps.
        skip: ``[bh, bw]`` bool blocks that carry no evidence (clipped pixels).

    Returns:
        ``[bh, bw]`` float64 sums of the ratios over those frequencies (nats;
        positive favours a pasted block), and ``{zigzag position: first step}``.
    """
    lim = cfg.max_value
    llr = np.zeros(coef.shape[:2])
    steps: dict[int, int] = {}
    if min(coef.shape[:2]) == 0:
        return llr, steps
    keep = np.ones(coef.shape[:2], bool) if skip is None else ~skip
    for z in range(1, cfg.frequencies + 1):
        u, v = divmod(int(ZIGZAG[z]), 8)
        c = coef[:, :, z - 1].astype(np.int64)
        cc = np.clip(c, -lim, lim)
        hist = np.bincount((cc[keep] + lim).ravel(), minlength=2 * lim + 1).astype(np.float64)
        first, gain, spread = first_step(hist, int(table[u, v]), cfg)
        if first == 0 or gain < cfg.min_gain:
            continue
        steps[z] = first
        score = np.clip(-np.log(np.maximum(_comb_over(first, int(table[u, v]), lim, spread), 1e-12)), -cfg.clip_llr,
                        cfg.clip_llr)
        block = score[cc + lim]
        # Zeros, the values nearest the zero tooth, clipped values and skipped blocks say nothing: the
        # zero tooth holds every block's small coefficients (the first compression's dead zone), so
        # its spill into the next values is no evidence of a paste.
        near_zero = np.abs(c) < (first / int(table[u, v])) / 2
        block[near_zero | (np.abs(c) >= lim) | ~keep] = 0.0
        llr += block
    return llr, steps


def clipped_blocks(image: np.ndarray, margin: int) -> np.ndarray:
    """``[H // 8, W // 8]`` bool: blocks holding a value within ``margin`` of 0 or 255.

    Decoding a JPEG clips each of R, G and B to 0..255. Where a channel was
    clipped when the first compression was decoded, the second compression
    saw a luminance off the first one's lattice, so the block looks pasted:
    such blocks are left out (on a photo of saturated flowers, most of them).

    Args:
        image: ``[H, W]`` or ``[H, W, C]`` uint8, decoded as stored.
    """
    h, w = (image.shape[0] // 8) * 8, (image.shape[1] // 8) * 8
    if h == 0 or w == 0:  # no whole block
        return np.zeros((h // 8, w // 8), bool)
    lo, hi = (margin + 1,) * 4, (254 - margin,) * 4
    inside = cv2.inRange(np.ascontiguousarray(image[:h, :w]), lo[: _channels(image)], hi[: _channels(image)])
    # Each block's minimum: an 8 x 8 erosion anchored at its top-left pixel, read at the block
    # corners (the same as any() over the blocks, at a tenth of its time on a 9 MP photo).
    corner_min = cv2.erode(inside, np.ones((8, 8), np.uint8), anchor=(0, 0))
    return corner_min[::8, ::8] == 0


def _channels(image: np.ndarray) -> int:
    return 1 if image.ndim == 2 else image.shape[2]


def _mean(plane: np.ndarray, size: int) -> np.ndarray:
    return cv2.blur(plane, (size, size), borderType=cv2.BORDER_REFLECT) if size > 1 else plane


def stored_gray(data: bytes, name: str = "<bytes>", max_pixels: int = 100_000_000) -> np.ndarray:
    """The grey plane as the file stores it: no EXIF turn, so a JPEG's blocks sit on its grid.

    A JPEG's grey is its luminance as coded (libjpeg hands the Y plane over); other formats
    give the decoder's grey level of their colours.

    Args:
        data: the file's bytes.
        name: the file's name, for errors.
        max_pixels: largest ``width * height`` decoded (checked on the header first).

    Returns:
        ``[H, W]`` uint8.

    Raises:
        ValueError: naming ``name``, when the header declares more than ``max_pixels``, says no
        size, or the file does not decode.
    """
    _check_size(data, name, max_pixels)
    gray = _decode_gray(data)
    if gray is None:
        raise ValueError(f"{name}: not a decodable image")
    return gray


def _check_size(data: bytes, name: str, max_pixels: int) -> None:
    """Raises ValueError naming ``name`` when the header says no size or more than ``max_pixels``."""
    try:
        width, height = declared_size(data)
    except HeaderError as err:
        raise ValueError(f"{name}: {err}") from err
    _check_pixels(width, height, name, max_pixels)


def _check_pixels(width: int, height: int, name: str, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ValueError(f"{name}: {width} x {height} pixels is over the limit of {max_pixels}")


def _decode_gray(data: bytes) -> np.ndarray | None:
    """``[H, W]`` uint8 grey as stored (no EXIF turn), or None where the file holds no 8-bit picture."""
    buffer = np.frombuffer(data, np.uint8)
    if image_format(data) == "JPEG":  # libjpeg hands the coded Y plane over
        return cv2.imdecode(buffer, cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION)
    # Others as they are: a 16-bit or float picture never went through JPEG's 8-bit blocks (and
    # asking OpenCV for its grey level makes it log warnings about the samples).
    image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None or image.dtype != np.uint8 or image.ndim not in (2, 3):
        return None
    if image.ndim == 2:
        return image
    code = {3: cv2.COLOR_BGR2GRAY, 4: cv2.COLOR_BGRA2GRAY}.get(image.shape[2])
    return None if code is None else cv2.cvtColor(image, code)


def detect_double_jpeg(data: bytes, cfg: DoubleJpegConfig = DoubleJpegConfig(), name: str = "<bytes>",
                       max_pixels: int = 100_000_000, colour: np.ndarray | None = None) -> DoubleJpegResult:
    """Regions of a file that missed the JPEG compression the rest of it went through.

    Two tests, their masks joined: the aligned one (the comb, JPEG files only) and the
    non-aligned one (``cfg.grid``: a region on another grid, any format).

    Args:
        data: the file's bytes (any format; the aligned test reads JPEGs only).
        cfg: the cue's settings.
        name: the file's name, for errors.
        max_pixels: largest ``width * height`` decoded (checked on the header first).
        colour: ``[H, W, 3]`` uint8 the caller already decoded from ``data`` as stored (RGB or
            BGR: only 0 and 255 matter), to spare a decode; ignored unless its size is the file's.

    Returns:
        The mask on the stored pixel grid (apply :func:`orient` with
        :func:`exif_orientation` to match a picture decoded with its EXIF
        rotation), the image's evidence and the first steps found.

    Raises:
        ValueError: naming ``name``, when a JPEG declares more than ``max_pixels``
        or does not decode.
    """
    table = luma_quantization(data)
    if table is None and cfg.grid is None:
        return DoubleJpegResult(None, 0.0, {})
    if table is None:
        # Other formats: one the header reader does not know, or whose grey level OpenCV does not
        # decode (a float TIFF), gives no evidence; the picture itself was decoded elsewhere.
        try:
            width, height = declared_size(data)
        except HeaderError:
            return DoubleJpegResult(None, 0.0, {})
        _check_pixels(width, height, name, max_pixels)
        gray = _decode_gray(data)
        if gray is None:
            return DoubleJpegResult(None, 0.0, {})
    else:
        gray = stored_gray(data, name, max_pixels)
    if gray.size < cfg.min_pixels:
        return DoubleJpegResult(None, 0.0, {})
    aligned, evidence, steps = (None, 0.0, {}) if table is None else _aligned(data, gray, table, cfg, name, colour)
    grid = detect_jpeg_grid(gray, cfg.grid) if cfg.grid is not None else None
    masks = [m for m in (aligned, None if grid is None else grid.mask) if m is not None]
    mask = None if not masks else masks[0] if len(masks) == 1 else np.maximum(masks[0], masks[1])
    return DoubleJpegResult(mask, evidence, steps, grid)


def _aligned(data: bytes, gray: np.ndarray, table: np.ndarray, cfg: DoubleJpegConfig, name: str,
             colour: np.ndarray | None) -> tuple[np.ndarray | None, float, dict[int, int]]:
    """The aligned test on a JPEG's stored luminance: its mask (None without a comb), evidence and first steps."""
    if colour is None or colour.shape != (*gray.shape, 3):  # the colours the first decode would have clipped
        colour = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        if colour is None:
            raise ValueError(f"{name}: not a decodable JPEG")
    coef = dct_coefficients(gray, table, cfg.frequencies)
    llr, steps = block_evidence(coef, table, cfg, clipped_blocks(colour, cfg.clip_margin))
    if not steps:
        return None, 0.0, steps
    decision = _mean(llr, cfg.window)
    evidence = float(decision.max())
    mask = np.zeros(gray.shape, np.uint8)
    if evidence > cfg.threshold:
        grow = (_mean(llr, cfg.grow_window) > cfg.grow_llr).astype(np.uint8)
        _, regions = cv2.connectedComponents(grow, connectivity=8)
        seeds = np.unique(regions[(decision > cfg.threshold) & (grow > 0)])
        blocks = np.isin(regions, seeds[seeds > 0])
        bh, bw = blocks.shape
        mask[: bh * 8, : bw * 8] = np.repeat(np.repeat(blocks, 8, axis=0), 8, axis=1) * np.uint8(255)
    return mask, evidence, steps


def double_jpeg_mask(data: bytes, shape: tuple[int, int], apply_orientation: bool = True, name: str = "<bytes>",
                     max_pixels: int = 100_000_000, colour: np.ndarray | None = None) -> np.ndarray | None:
    """The cue's mask on the picture a decoder made of ``data``: turned by EXIF as it was, checked against it.

    The one home for what ``Detector(double_jpeg=True)`` and the Triton postprocess model do.

    Args:
        data: the file's bytes.
        shape: ``(H, W)`` of the decoded picture.
        apply_orientation: the picture was decoded with its EXIF orientation applied.
        name, max_pixels: as :func:`detect_double_jpeg`.
        colour: ``[H, W, 3]`` uint8, the decoded picture; used for the clip check when no turn applies.

    Returns:
        ``[H, W]`` uint8 mask, or None without evidence, or (with a warning) when the mask's size is
        not the picture's: an orientation OpenCV read and this header parse did not.
    """
    turn = exif_orientation(data) if apply_orientation else 1
    # Unturned, the decoded picture is the file's stored grid: the clip check can use it.
    found = detect_double_jpeg(data, name=name, max_pixels=max_pixels, colour=colour if turn == 1 else None)
    if found.mask is None:
        return None
    mask = orient(found.mask, turn)
    if mask.shape != tuple(shape):
        logging.getLogger("focal").warning("%s: double-JPEG mask %s does not match the decoded image %s; cue skipped",
                                           name, mask.shape, tuple(shape))
        return None
    return mask
