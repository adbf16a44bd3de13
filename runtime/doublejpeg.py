"""Double-JPEG evidence: regions that missed a JPEG compression the rest went through.

Most real edits are saved as JPEG twice: the photo was a JPEG (the camera's,
or a download's), the editor pasted something into it and saved a JPEG
again. Where the pixels went through both compressions, each 8 x 8 block's
DCT coefficients carry the first quantisation inside the second: their
histogram, counted in steps of the file's own table, is periodic (every p-th
value populated, the gaps empty). A pasted region did not go through the
first compression (or went through another one on another grid), so its
coefficients land in the gaps. This is the double-quantisation (DQ) cue of
Lin, He, Tang and Tang (2009), rebuilt from the decoded pixels, torch-free:

1. the file's luminance quantisation table is read from its header (DQT);
2. the grey level is decoded as stored (no EXIF rotation, so blocks sit on
   the file's grid), every aligned 8 x 8 block's DCT is divided by the table
   and rounded: the coefficients the file holds, up to the decoder's
   rounding;
3. for each of the first ``frequencies`` AC positions, the period ``p`` is
   the step whose multiples hold the most mass off zero, relative to their
   share ``1 / p``; positions without a period of at least ``min_ratio`` say
   nothing. Each block gets the log-likelihood ratio ``log(Pt / Pu)``: a
   pasted block's value is uniform over the period (``Pt = 1 / p``), a
   double-compressed one's follows the histogram (``Pu``: its bin's share of
   the period around it). Zeros carry no evidence (every block has them);
4. the ratios add up over positions, and their mean over ``window`` x
   ``window`` blocks is the evidence. An image is flagged when its largest
   evidence passes ``threshold``, which is the 95% quantile of that maximum
   over untouched training-side photos (a false-alarm rate fitted on photos,
   as ``max_cost`` of the copy-move search is). The mask grows from those
   blocks over the connected blocks whose ``grow_window`` mean passes
   ``grow_llr``.

Files that are not JPEG, or whose coefficients show no period (a single
compression), give no evidence and no mask. The cue is blind to an edit
saved losslessly, to one whose first compression was at the same table as
the last, and to a pasted region that went through the same grid and table.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    "DoubleJpegConfig",
    "DoubleJpegResult",
    "block_evidence",
    "dct_coefficients",
    "detect_double_jpeg",
    "exif_orientation",
    "luma_quantization",
    "orient",
]

# JPEG's zigzag scan: position k of a DQT table is natural index ZIGZAG[k].
ZIGZAG = np.array([
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21,
    28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54,
    47, 55, 62, 63,
])
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


@dataclass(frozen=True)
class DoubleJpegConfig:
    """Settings of the double-JPEG cue (see the module notes for each step)."""

    frequencies: int = 10  # AC positions used, in zigzag order from the first
    max_period: int = 12  # longest period looked for (first step / last step)
    min_ratio: float = 1.8  # a period must hold this many times its share of the mass off zero
    max_value: int = 60  # coefficients beyond +-max_value are clipped and carry no evidence
    clip_llr: float = 3.0  # one position's say on one block, in nats
    window: int = 9  # blocks averaged for the decision (9 blocks = 72 px)
    # 95% quantile of the largest window mean over 236 untouched training-side
    # JPEGs (every other JPEG of ../shared/data/natural outside the held-out
    # list): benchmarks/double_jpeg.py --calibrate.
    threshold: float = 1.05
    grow_window: int = 5  # blocks averaged for the mask's extent
    grow_llr: float = 0.5  # mean evidence a block needs to join a flagged region
    min_pixels: int = 64 * 64  # smaller images give no evidence: too few blocks for a histogram

    def __post_init__(self) -> None:
        if not 1 <= self.frequencies <= 63:
            raise ValueError(f"DoubleJpegConfig.frequencies must lie in 1..63, got {self.frequencies}")
        if self.max_period < 2:
            raise ValueError(f"DoubleJpegConfig.max_period must be >= 2, got {self.max_period}")
        if self.window < 1 or self.grow_window < 1:
            raise ValueError("DoubleJpegConfig windows must be >= 1 block")
        if self.min_ratio <= 1.0 or self.clip_llr <= 0 or self.max_value < 2:
            raise ValueError("DoubleJpegConfig needs min_ratio > 1, clip_llr > 0 and max_value >= 2")


@dataclass
class DoubleJpegResult:
    """What the cue found in one file.

    Attributes:
        mask: ``[H, W]`` uint8 (255 = a block that missed the first
            compression), on the pixel grid as stored; all zero when nothing
            was found. ``None`` when the file gives no evidence (not a JPEG,
            too small, or no period).
        evidence: the largest ``window`` mean of the block log-likelihood
            ratios (nats; > ``threshold`` flags the image), 0.0 without evidence.
        periods: ``{zigzag position: period}`` of the positions that showed one.
    """

    mask: np.ndarray | None
    evidence: float
    periods: dict[int, int]

    @property
    def found(self) -> bool:
        """True when a region was flagged."""
        return self.mask is not None and bool(self.mask.any())


def _segments(data: bytes):
    """``(marker, payload)`` of a JPEG's header segments up to the first scan; stops at anything malformed."""
    if data[:2] != b"\xff\xd8":
        return
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            pos += 2
            continue
        if marker == 0xD9:
            return
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if length < 2 or pos + 2 + length > len(data):
            return
        yield marker, data[pos + 4 : pos + 2 + length]
        if marker == 0xDA:
            return
        pos += 2 + length


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
    for marker, seg in _segments(data):
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
        elif marker in _SOF:
            # frame header: precision(1) height(2) width(2) components(1), then 3 bytes per component
            if len(seg) < 9:
                return None
            table = tables.get(seg[8])
            return None if table is None or table.min() < 1 else table
    return None


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation tag (1-8) of a JPEG, 1 when absent or unreadable."""
    for marker, seg in _segments(data):
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


def _dct_matrix() -> np.ndarray:
    k = np.arange(8)
    c = np.cos((2 * k[None, :] + 1) * k[:, None] * np.pi / 16) * np.sqrt(2 / 8)
    c[0] /= np.sqrt(2)
    return c  # orthonormal DCT-II: JPEG's forward transform


_DCT = _dct_matrix()


def dct_coefficients(gray: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Quantised DCT coefficients of every whole 8 x 8 block of a decoded grey plane.

    Args:
        gray: ``[H, W]`` uint8, the luminance as stored (block grid at 0, 0).
        table: ``[8, 8]`` int64 quantisation steps.

    Returns:
        ``[H // 8, W // 8, 8, 8]`` int64: ``round(DCT(block - 128) / table)``.
    """
    h, w = (gray.shape[0] // 8) * 8, (gray.shape[1] // 8) * 8
    blocks = gray[:h, :w].astype(np.float64).reshape(h // 8, 8, w // 8, 8).transpose(0, 2, 1, 3) - 128.0
    return np.rint(_DCT @ blocks @ _DCT.T / table).astype(np.int64)


def _period(hist: np.ndarray, zero: int, max_period: int) -> tuple[int, float]:
    """The step ``p`` whose multiples hold the most mass off zero, as ``p * share``; ``(1, 1.0)`` if none."""
    k = np.arange(len(hist)) - zero
    off = k != 0
    total = hist[off].sum()
    best, ratio = 1, 1.0
    if total <= 0:
        return best, ratio
    for p in range(2, max_period + 1):
        r = p * hist[off & (k % p == 0)].sum() / total
        if r > ratio:
            best, ratio = p, r
    return best, float(ratio)


def block_evidence(coef: np.ndarray, cfg: DoubleJpegConfig = DoubleJpegConfig()) -> tuple[np.ndarray, dict[int, int]]:
    """Per-block log-likelihood ratio "missed the first compression" vs "went through it".

    Args:
        coef: ``[bh, bw, 8, 8]`` int64 quantised coefficients (:func:`dct_coefficients`).

    Returns:
        ``[bh, bw]`` float64 sums of the clipped ratios over the positions
        with a period (nats; positive favours a pasted block), and the
        ``{zigzag position: period}`` of those positions.
    """
    lim = cfg.max_value
    llr = np.zeros(coef.shape[:2])
    periods: dict[int, int] = {}
    if min(coef.shape[:2]) == 0:
        return llr, periods
    values = np.arange(-lim, lim + 1)
    for z in range(1, cfg.frequencies + 1):
        u, v = divmod(int(ZIGZAG[z]), 8)
        c = coef[:, :, u, v]
        cc = np.clip(c, -lim, lim)
        hist = np.bincount((cc + lim).ravel(), minlength=2 * lim + 1).astype(np.float64)
        p, ratio = _period(hist, lim, cfg.max_period)
        if p == 1 or ratio < cfg.min_ratio:
            continue
        periods[z] = p
        # each value's period window: the p values around the nearest multiple's cell
        start = (np.floor((values + p // 2) / p) * p - p // 2).astype(np.int64) + lim
        cum = np.concatenate([[0.0], np.cumsum(hist)])
        window = cum[np.clip(start + p, 0, len(hist))] - cum[np.clip(start, 0, len(hist))]
        pu = (hist + 0.5) / (window + 0.5 * p)  # +0.5: an empty bin is rare, not impossible
        ratio_of_value = np.clip(np.log((1.0 / p) / pu), -cfg.clip_llr, cfg.clip_llr)
        block = ratio_of_value[cc + lim]
        block[(c == 0) | (np.abs(c) >= lim)] = 0.0  # zeros and clipped values say nothing
        llr += block
    return llr, periods


def _mean(plane: np.ndarray, size: int) -> np.ndarray:
    return cv2.blur(plane, (size, size), borderType=cv2.BORDER_REFLECT) if size > 1 else plane


def detect_double_jpeg(data: bytes, cfg: DoubleJpegConfig = DoubleJpegConfig(), name: str = "<bytes>",
                       max_pixels: int = 100_000_000) -> DoubleJpegResult:
    """Regions of a JPEG file that missed the compression the rest of it went through.

    Args:
        data: the file's bytes (any format; only JPEG gives evidence).
        cfg: the cue's settings.
        name: the file's name, for errors.
        max_pixels: largest ``width * height`` decoded (checked on the header first).

    Returns:
        The mask on the stored pixel grid (apply :func:`orient` with
        :func:`exif_orientation` to match a picture decoded with its EXIF
        rotation), the image's evidence and the periods found.

    Raises:
        ValueError: naming ``name``, when a JPEG declares more than ``max_pixels``
        or does not decode.
    """
    table = luma_quantization(data)
    if table is None:
        return DoubleJpegResult(None, 0.0, {})
    from focal.runtime._headers import HeaderError, declared_size

    try:
        width, height = declared_size(data)
    except HeaderError as err:
        raise ValueError(f"{name}: {err}") from err
    if width * height > max_pixels:
        raise ValueError(f"{name}: {width} x {height} pixels is over the limit of {max_pixels}")
    gray = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION)
    if gray is None:
        raise ValueError(f"{name}: not a decodable JPEG")
    if gray.size < cfg.min_pixels:
        return DoubleJpegResult(None, 0.0, {})
    llr, periods = block_evidence(dct_coefficients(gray, table), cfg)
    if not periods:
        return DoubleJpegResult(None, 0.0, periods)
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
    return DoubleJpegResult(mask, evidence, periods)
