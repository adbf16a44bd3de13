"""Copy-move detection: a region of an image repeated elsewhere in the same image.

FOCAL's features tell regions apart by their traces (camera pipeline,
compression, resampling). A copy-move carries the traces of its own image,
and its source is untouched in every sense, so FOCAL cannot mark the source
and marks the target only where resampling left a trace. This module finds
copy-moves by what they are, a repeat: the dense-field approach of
Cozzolino, Poggi and Verdoliva (2015), torch-free. Steps 1 and 2 run in the
native core where it is built; their NumPy references here give the same
bits (``backend="reference"``, the oracle of the parity tests):

1. every pixel gets a rotation-invariant descriptor: the means of the grey
   level on rings of radius 0..R around it and of the gradient magnitude on
   rings 1..R (``2R + 1`` values, padded with zeros to 16-lane blocks),
   stored as int16 in eighths of a grey level. The search reads targets
   anywhere in the image, so its time follows the descriptor image's size
   in cache; int16 halves float32's at the same masks;
2. a PatchMatch search gives each cell of a grid (step ``stride``) the
   offset to its most similar pixel at least ``min_offset`` away. The
   search is seeded by a counter-based stream (each draw a hash of seed,
   round and cell), so the same image gives the same mask on any thread
   count. Propagation jumps 8, 4, 2 and 1 cells ("jump flooding"), so one
   lucky cell fills its region in a few rounds;
3. a copy shows up as a patch of cells whose offsets agree with their
   neighbours' (a rigid copy moves every pixel by the same or a smoothly
   varying offset). Random matches on natural texture do not agree. Cells
   within ``tolerance`` pixels of their 5 x 5 median offset are kept, flat
   cells are dropped (they match anything), so are cells whose match is
   not close (``max_cost``: propagation makes PatchMatch fields agree by
   construction, so agreement alone keeps poor matches on self-similar
   texture), and so is any connected patch under ``min_area`` of the image;
4. the mask is the kept cells and the cells their offsets point at: the
   source and the target, which a copy-move's ground truth marks alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from focal.runtime import _native_api
from focal.runtime._native_api import resolve_backend

__all__ = [
    "CopyMoveConfig",
    "descriptor_width",
    "detect_copy_move",
    "patchmatch_reference",
    "ring_descriptors",
    "ring_descriptors_reference",
]


@dataclass(frozen=True)
class CopyMoveConfig:
    """How copy-moves are searched for. Defaults: ``benchmarks/copy_move.py``'s figures."""

    max_side: int = 512  # longer side the image is shrunk to first (speed); copies span many pixels
    # Grid step of the cells that are matched, pixels (every pixel can be a match). 4: CoMoFoD's
    # IoU is 0.186 at 4, 0.185 at 3 and 0.211 at 2, at about half the search time of 2; 2 flags 3 of
    # the 56 held-out photos against 1, and finds turned copies that 3 and 4 miss (docs/evaluation.md).
    stride: int = 4
    radius: int = 6  # descriptor: rings 0..radius of grey level, 1..radius of gradient magnitude
    min_offset: int = 24  # matches closer than this, pixels, are the region's own neighbourhood
    min_std: float = 4.0  # cells whose 9 x 9 grey-level std is below this are flat: never flagged
    tolerance: float = 3.0  # pixels a kept cell's offset may differ from its 5 x 5 median offset
    # Largest mean squared descriptor difference (per value) of a kept cell's match. PatchMatch
    # hands offsets on to neighbours, so its fields agree by construction: agreement alone also
    # keeps poor matches on self-similar texture; a copy matches closely.
    # 4.0: the largest of 0.5-16 at which none of 82 training-side natural photos is flagged at 3 rounds
    # (docs/evaluation.md, "Copy-moves"); None: no limit.
    max_cost: float | None = 4.0
    min_area: float = 0.003  # smallest flagged patch, share of the image (one side of the copy)
    # PatchMatch rounds (each: jump-flooding propagation, then random search). 3: at max_cost 4 and
    # step 4 CoMoFoD's IoU is 0.116 at 2 rounds, 0.186 at 3, 0.201 at 4 for a quarter more time
    # (docs/evaluation.md).
    iterations: int = 3
    seed: int = 0  # seeds the PatchMatch search: the same image and seed give the same mask
    # The rate at which the search flags an untouched photo, what a found copy is worth as an
    # image score (focal.runtime.score.joined_score): max_cost was fitted so that none of 82
    # training-side photos is flagged; 0.01, the double-JPEG cue's rate, stays within that.
    false_alarm: float = 0.01

    def __post_init__(self) -> None:
        if self.max_side < 64 or self.stride < 1 or not 1 <= self.radius <= MAX_RADIUS or self.iterations < 1:
            raise ValueError(
                f"CopyMoveConfig: max_side >= 64, stride >= 1, 1 <= radius <= {MAX_RADIUS} and iterations >= 1 "
                "needed; got "
                f"{self.max_side}, {self.stride}, {self.radius}, {self.iterations}"
            )
        if self.min_offset < 1 or self.min_std < 0.0 or self.tolerance < 0.0:
            raise ValueError("CopyMoveConfig: min_offset >= 1, min_std >= 0 and tolerance >= 0 needed")
        if self.max_cost is not None and self.max_cost < 0.0:
            raise ValueError(f"CopyMoveConfig.max_cost must be None or >= 0, got {self.max_cost}")
        if not 0.0 < self.false_alarm < 1.0:
            raise ValueError(f"CopyMoveConfig.false_alarm must lie in (0, 1), got {self.false_alarm}")
        if not 0.0 < self.min_area < 0.5:
            raise ValueError(f"CopyMoveConfig.min_area must be in (0, 0.5), got {self.min_area}")


_MASK64 = 2**64 - 1
# The lane width the descriptors are padded to (half a 64-byte line per pixel up to radius 7).
_LANES = 16
# Descriptor units per grey level, the largest stored value and the largest radius: the native
# core's int32 distances of up to 32 values of 0..8191 stay below 2**31 (copymove.hpp).
_SCALE = 8
_MAX_VALUE = 8191
MAX_RADIUS = 15
# The cost of a candidate that is not allowed (outside the image, or too near).
_NO_MATCH = 2**31 - 1


def descriptor_width(radius: int) -> int:
    """Values per pixel of :func:`ring_descriptors`: ``2 * radius + 1`` padded to a multiple of 16."""
    return -(-(2 * radius + 1) // _LANES) * _LANES


def _half_width(r: int, dy: int) -> int:
    """Largest dx >= 0 with dx^2 + dy^2 < (r + 0.5)^2, in integers (the disk's row run)."""
    limit = (2 * r + 1) ** 2 - (2 * dy) ** 2
    dx = 0
    while (2 * (dx + 1)) ** 2 < limit:
        dx += 1
    return dx


def _planes(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two planes the rings average: smoothed grey levels and their gradient magnitude."""
    smooth = cv2.GaussianBlur(gray, (0, 0), 0.8)  # damps noise and recompression, keeps structure
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1)
    return smooth, np.sqrt(gx * gx + gy * gy)


def ring_descriptors_reference(smooth: np.ndarray, magnitude: np.ndarray, radius: int) -> np.ndarray:
    """Ring means, the NumPy reference of the native core's kernel (bit-identical).

    A ring of radius r holds the pixels at a distance in [r - 0.5, r + 0.5)
    (the disk of radius r + 0.5 minus that of r - 0.5), the planes mirrored
    at their border (OpenCV's BORDER_REFLECT). A disk sum is a sum of row runs
    of a float64 row prefix sum, added in row order; ring means, in eighths
    of a grey level (the ring sum times one float64 factor per ring, scale /
    pixel count), are rounded half to even and clipped to [0, 8191] last.

    Args:
        smooth: ``[H, W]`` float32 smoothed grey levels in [0, 255].
        magnitude: ``[H, W]`` float32 gradient magnitudes of ``smooth``.
        radius: outermost ring, ``1 <= radius < min(H, W)``, at most 15.

    Returns:
        ``[H, W, descriptor_width(radius)]`` int16, eighths of a grey level:
        ring means of ``smooth`` (radius 0..R), half the ring means of
        ``magnitude`` (1..R), which puts both on a similar scale, then zeros.
    """
    h, w = smooth.shape
    if not 1 <= radius < min(h, w) or radius > MAX_RADIUS:
        raise ValueError(
            f"ring_descriptors: need 1 <= radius < min(H, W) and radius <= {MAX_RADIUS}, got {radius} for {h} x {w}"
        )
    out = np.zeros((h, w, descriptor_width(radius)), np.int16)
    runs = [[_half_width(r, dy) for dy in range(-r, r + 1)] for r in range(radius + 1)]
    disk_sizes = [sum(2 * hw + 1 for hw in run) for run in runs]
    counts = [float(disk_sizes[0])] + [float(disk_sizes[r] - disk_sizes[r - 1]) for r in range(1, radius + 1)]
    for channel, (plane, scale) in enumerate(((smooth, float(_SCALE)), (magnitude, 0.5 * _SCALE))):
        padded = np.pad(plane, radius, mode="symmetric").astype(np.float64)
        prefix = np.zeros((h + 2 * radius, w + 2 * radius + 1))
        prefix[:, 1:] = np.cumsum(padded, axis=1)
        previous = np.zeros((h, w))
        for r in range(radius + 1):
            disk = np.zeros((h, w))
            for dy, hw in zip(range(-r, r + 1), runs[r]):
                rows = prefix[radius + dy : radius + dy + h]
                disk = disk + (rows[:, radius + hw + 1 : radius + hw + 1 + w] - rows[:, radius - hw : radius - hw + w])
            if channel == 0 or r > 0:
                means = np.rint((disk - previous) * (scale / counts[r]))  # half to even, as the native core
                out[:, :, r if channel == 0 else radius + r] = np.clip(means, 0, _MAX_VALUE).astype(np.int16)
            previous = disk
    return out


def ring_descriptors(gray: np.ndarray, radius: int = 6, *, backend: str = "auto") -> np.ndarray:
    """Rotation-invariant per-pixel descriptors.

    Args:
        gray: ``[H, W]`` float32 grey levels in [0, 255], ``min(H, W) > radius``.
        radius: outermost ring, pixels.
        backend: ``"native"`` (compiled core), ``"reference"`` (NumPy) or
            ``"auto"``; both give the same bits.

    Returns:
        ``[H, W, descriptor_width(radius)]`` int16 in eighths of a grey level
        (0..8191): ring means of the grey level (radius 0..R), then half the
        ring means of the gradient magnitude (1..R), which puts both on a
        similar scale, then zeros.
    """
    smooth, magnitude = _planes(np.asarray(gray, np.float32))
    if resolve_backend(backend) == "native":
        return _native_api.ring_descriptors(smooth, magnitude, radius)
    return ring_descriptors_reference(smooth, magnitude, radius)


def _mix(z: int) -> int:
    """splitmix64's finaliser on a Python int (mod 2**64)."""
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _mix_array(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on a uint64 array (NumPy's uint64 products wrap mod 2**64)."""
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _draw(seed: int, stream: int, cells: np.ndarray, low: int, count: int) -> np.ndarray:
    """Per cell a uniform integer in [low, low + count): a counter-based draw, so any cell order
    or thread split gives the same numbers (the native core draws the same)."""
    key = _mix((_mix(seed & _MASK64) + stream) & _MASK64)
    return low + (_mix_array(np.uint64(key) ^ cells) % np.uint64(count)).astype(np.int64)


def _shifted(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``a`` moved by (dy, dx) cells, edges repeated: each cell sees its neighbour's value."""
    gh, gw = a.shape
    rows = np.clip(np.arange(gh) - dy, 0, gh - 1)
    cols = np.clip(np.arange(gw) - dx, 0, gw - 1)
    return a[rows][:, cols]


def patchmatch_reference(
    desc: np.ndarray, stride: int, min_offset: int, iterations: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The PatchMatch field, the NumPy reference of the native core's kernel (bit-identical).

    Cells are the pixels ``(i * stride, j * stride)``. A random start, then
    per round: jump-flooding propagation (jumps 8, 4, 2, 1; at each jump a
    cell tries its neighbour's offset below, above, right and left in turn,
    each on the field the previous direction left)
    and a random search, each candidate drawn around the best offset so far,
    at radii halving from ``max(H, W)``. A candidate counts only if its target lies inside the image
    at least ``min_offset`` pixels away; it is taken only when strictly
    closer. Distances are exact integer sums of squared differences.

    Args:
        desc: ``[H, W, P]`` int16 descriptors of :func:`ring_descriptors`, P 16 or 32.
        stride: grid step, pixels. min_offset: pixels. iterations: rounds.
        seed: any int (mod 2**64).

    Returns:
        ``(oy, ox, cost)``: ``[ceil(H / stride), ceil(W / stride)]`` int32
        offsets and float32 squared distances in grey levels squared, +inf
        where no valid match was ever offered.
    """
    h, w, p = desc.shape
    if p % _LANES or p == 0 or p > descriptor_width(MAX_RADIUS):
        raise ValueError(f"patchmatch: the descriptor width must be 16 or 32 (a multiple of 16), got {p}")
    if desc.dtype != np.int16:
        raise TypeError(f"patchmatch needs the int16 descriptors of ring_descriptors, got {desc.dtype}")
    ys, xs = np.mgrid[0:h:stride, 0:w:stride]
    shape = ys.shape
    ys, xs = ys.ravel().astype(np.int64), xs.ravel().astype(np.int64)
    cells = np.arange(ys.size, dtype=np.uint64)
    flat_desc = desc.reshape(-1, p).astype(np.int64)
    query = flat_desc[ys * w + xs]
    min_offset2 = int(min_offset) ** 2
    oy = np.zeros(ys.size, np.int64)
    ox = np.zeros(ys.size, np.int64)
    cost = np.full(ys.size, _NO_MATCH, np.int64)  # descriptor units squared

    def offer(cy: np.ndarray, cx: np.ndarray) -> None:
        ty, tx = ys + cy, xs + cx
        valid = (ty >= 0) & (ty < h) & (tx >= 0) & (tx < w) & (cy * cy + cx * cx >= min_offset2)
        diff = flat_desc[np.clip(ty, 0, h - 1) * w + np.clip(tx, 0, w - 1)] - query
        c = (diff * diff).sum(axis=1)  # exact: any order gives the native core's value
        c[~valid] = _NO_MATCH
        better = c < cost
        oy[better], ox[better], cost[better] = cy[better], cx[better], c[better]

    offer(_draw(seed, 0, cells, 0, h) - ys, _draw(seed, 1, cells, 0, w) - xs)
    for it in range(iterations):
        for jump in (8, 4, 2, 1):
            for dy, dx in ((jump, 0), (-jump, 0), (0, jump), (0, -jump)):  # each on the field the last left
                offer(_shifted(oy.reshape(shape), dy, dx).ravel(), _shifted(ox.reshape(shape), dy, dx).ravel())
        radius, step = max(h, w), 0
        while radius >= 1:  # each draw around the best offset so far (offer updates oy, ox)
            stream = 2 + 64 * it + 2 * step
            offer(oy + _draw(seed, stream, cells, -radius, 2 * radius + 1),
                  ox + _draw(seed, stream + 1, cells, -radius, 2 * radius + 1))
            radius, step = radius // 2, step + 1
    # Grey levels squared: rounded to float32, then an exact division by a power of two.
    grey2 = np.where(cost == _NO_MATCH, np.float32(np.inf), cost.astype(np.float32) / np.float32(_SCALE * _SCALE))
    return oy.reshape(shape).astype(np.int32), ox.reshape(shape).astype(np.int32), grey2.reshape(shape)


def detect_copy_move(
    image: np.ndarray, config: CopyMoveConfig = CopyMoveConfig(), *, backend: str = "auto"
) -> np.ndarray:
    """Copy-move mask of one image.

    Args:
        image: ``[H, W, 3]`` uint8 RGB.
        config: search settings.
        backend: ``"native"`` (compiled core), ``"reference"`` (NumPy) or
            ``"auto"`` (native where built); both give the same mask.

    Returns:
        ``[H, W]`` uint8 mask, 255 on both the source and the target of every
        copy found, 0 elsewhere (all 0: no copy-move).

    Raises:
        ValueError: ``image`` is not ``[H, W, 3]`` uint8. An image under
            ``2 * min_offset`` on its longer side, or at most ``radius`` on
            its shorter side (after shrinking), has no room for a copy: its
            mask is empty.
        RuntimeError: ``backend="native"`` where the native core is not built.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"detect_copy_move needs an [H, W, 3] uint8 image, got {image.shape} {image.dtype}")
    h0, w0 = image.shape[:2]
    # Grey first, then shrunk: the search reads grey levels only, and shrinking one plane costs
    # a third of shrinking three (a 9 MP photo: 4 against 13 ms).
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    factor = min(1.0, config.max_side / max(h0, w0))
    if factor < 1.0:
        size = (max(1, round(w0 * factor)), max(1, round(h0 * factor)))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    # No room for a copy that far from its source, or for the descriptors' rings.
    if max(gray.shape) < 2 * config.min_offset or min(gray.shape) <= config.radius:
        return np.zeros((h0, w0), np.uint8)
    gray = gray.astype(np.float32)
    desc = ring_descriptors(gray, config.radius, backend=backend)
    args = (config.stride, config.min_offset, config.iterations, config.seed)
    if resolve_backend(backend) == "native":
        oy, ox, cost = _native_api.patchmatch(desc, *args)
    else:
        oy, ox, cost = patchmatch_reference(desc, *args)
    h, w = gray.shape
    ys, xs = np.mgrid[0:h : config.stride, 0:w : config.stride]

    mean = cv2.blur(gray, (9, 9))
    std = np.sqrt(np.maximum(cv2.blur(gray * gray, (9, 9)) - mean * mean, 0.0))
    textured = std[ys, xs] >= config.min_std
    oyf, oxf = oy.astype(np.float32), ox.astype(np.float32)
    # A 5 x 5 median is the local offset of a rigid copy (translation exactly, a rotation or
    # scaling to first order); a random match on texture lies far from its neighbours' median.
    spread = np.hypot(oyf - cv2.medianBlur(oyf, 5), oxf - cv2.medianBlur(oxf, 5))
    limit = np.inf if config.max_cost is None else config.max_cost * (2 * config.radius + 1)
    matched = np.isfinite(cost) & (cost <= limit)  # inf: no valid match was ever offered
    agree = (textured & matched & (spread <= config.tolerance)).astype(np.uint8)
    agree = cv2.morphologyEx(agree, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))

    _, labels, stats, _ = cv2.connectedComponentsWithStats(agree, connectivity=8)
    big = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] >= config.min_area * agree.size)
    big = big[big > 0]  # label 0 is the background
    kept = np.isin(labels, big)
    mask = kept.astype(np.uint8)
    rows, cols = np.nonzero(kept)
    gh, gw = kept.shape
    stride = config.stride
    target_rows = np.clip(np.rint((ys[rows, cols] + oy[rows, cols]) / stride).astype(int), 0, gh - 1)
    target_cols = np.clip(np.rint((xs[rows, cols] + ox[rows, cols]) / stride).astype(int), 0, gw - 1)
    mask[target_rows, target_cols] = 1
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    return cv2.resize(mask * 255, (w0, h0), interpolation=cv2.INTER_NEAREST)
