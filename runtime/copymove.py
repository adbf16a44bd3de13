"""Copy-move detection: a region of an image repeated elsewhere in the same image.

FOCAL's features tell regions apart by their traces (camera pipeline,
compression, resampling). A copy-move carries the traces of its own image,
and its source is untouched in every sense, so FOCAL cannot mark the source
and marks the target only where resampling left a trace. This module finds
copy-moves by what they are, a repeat: the dense-field approach of
Cozzolino, Poggi and Verdoliva (2015), in NumPy and OpenCV, torch-free:

1. every pixel gets a rotation-invariant descriptor: the means of the grey
   level on rings of radius 0..R around it and of the gradient magnitude on
   rings 1..R (``2R + 1`` values);
2. a PatchMatch search gives each cell of a grid (step ``stride``) the
   offset to its most similar pixel at least ``min_offset`` away. The
   search is seeded, so the same image gives the same mask. Propagation
   jumps 8, 4, 2 and 1 cells ("jump flooding"), so one lucky cell fills its
   region in a few rounds;
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

__all__ = ["CopyMoveConfig", "detect_copy_move", "ring_descriptors"]


@dataclass(frozen=True)
class CopyMoveConfig:
    """How copy-moves are searched for. Defaults: ``benchmarks/copy_move.py``'s figures."""

    max_side: int = 512  # longer side the image is shrunk to first (speed); copies span many pixels
    stride: int = 2  # grid step of the cells that are matched, pixels (every pixel can be a match)
    radius: int = 6  # descriptor: rings 0..radius of grey level, 1..radius of gradient magnitude
    min_offset: int = 24  # matches closer than this, pixels, are the region's own neighbourhood
    min_std: float = 4.0  # cells whose 9 x 9 grey-level std is below this are flat: never flagged
    tolerance: float = 3.0  # pixels a kept cell's offset may differ from its 5 x 5 median offset
    # Largest mean squared descriptor difference (per value) of a kept cell's match. PatchMatch
    # hands offsets on to neighbours, so its fields agree by construction: agreement alone also
    # keeps poor matches on self-similar texture; a copy matches closely.
    # 4.0: the largest of 0.5-16 at which none of 82 training-side natural photos is flagged
    # (docs/evaluation.md, "Copy-moves"); None: no limit.
    max_cost: float | None = 4.0
    min_area: float = 0.003  # smallest flagged patch, share of the image (one side of the copy)
    iterations: int = 6  # PatchMatch rounds (each: jump-flooding propagation, then random search)
    seed: int = 0  # seeds the PatchMatch search: the same image and seed give the same mask

    def __post_init__(self) -> None:
        if self.max_side < 64 or self.stride < 1 or self.radius < 1 or self.iterations < 1:
            raise ValueError(
                "CopyMoveConfig: max_side >= 64, stride >= 1, radius >= 1 and iterations >= 1 needed; got "
                f"{self.max_side}, {self.stride}, {self.radius}, {self.iterations}"
            )
        if self.min_offset < 1 or self.min_std < 0.0 or self.tolerance < 0.0:
            raise ValueError("CopyMoveConfig: min_offset >= 1, min_std >= 0 and tolerance >= 0 needed")
        if self.max_cost is not None and self.max_cost < 0.0:
            raise ValueError(f"CopyMoveConfig.max_cost must be None or >= 0, got {self.max_cost}")
        if not 0.0 < self.min_area < 0.5:
            raise ValueError(f"CopyMoveConfig.min_area must be in (0, 0.5), got {self.min_area}")


def _ring_kernels(radius: int) -> list[np.ndarray]:
    """Normalised ring kernels of radius 0..radius (pixels at distance in [r - 0.5, r + 0.5))."""
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    dist = np.sqrt(yy**2 + xx**2)
    kernels = []
    for r in range(radius + 1):
        ring = ((dist >= r - 0.5) & (dist < r + 0.5)).astype(np.float32)
        kernels.append(ring / ring.sum())
    return kernels


def ring_descriptors(gray: np.ndarray, radius: int = 6) -> np.ndarray:
    """Rotation-invariant per-pixel descriptors.

    Args:
        gray: ``[H, W]`` float32 grey levels in [0, 255].
        radius: outermost ring, pixels.

    Returns:
        ``[H, W, 2 * radius + 1]`` float32: ring means of the grey level
        (radius 0..R), then half the ring means of the gradient magnitude
        (1..R), which puts both on a similar scale.
    """
    smooth = cv2.GaussianBlur(gray, (0, 0), 0.8)  # damps noise and recompression, keeps structure
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1)
    magnitude = np.sqrt(gx * gx + gy * gy)
    kernels = _ring_kernels(radius)
    planes = [cv2.filter2D(smooth, cv2.CV_32F, k, borderType=cv2.BORDER_REFLECT) for k in kernels]
    planes += [0.5 * cv2.filter2D(magnitude, cv2.CV_32F, k, borderType=cv2.BORDER_REFLECT) for k in kernels[1:]]
    return np.stack(planes, axis=-1)


class _Field:
    """The PatchMatch state: for each grid cell, an offset (pixels) and its descriptor distance."""

    def __init__(self, desc: np.ndarray, stride: int, min_offset: int) -> None:
        self.h, self.w = desc.shape[:2]
        ys, xs = np.mgrid[0 : self.h : stride, 0 : self.w : stride]
        self.ys, self.xs = ys.astype(np.int32), xs.astype(np.int32)
        self.flat_desc = np.ascontiguousarray(desc.reshape(-1, desc.shape[-1]))  # [H * W, D]
        self.flat_query = desc[self.ys, self.xs].reshape(-1, desc.shape[-1])  # [gh * gw, D]
        self.min_offset2 = min_offset * min_offset
        self.oy = np.zeros(self.ys.shape, np.int32)
        self.ox = np.zeros(self.ys.shape, np.int32)
        self.cost = np.full(self.ys.shape, np.inf, np.float32)

    def _costs(self, oy: np.ndarray, ox: np.ndarray) -> np.ndarray:
        ty, tx = self.ys + oy, self.xs + ox
        valid = (ty >= 0) & (ty < self.h) & (tx >= 0) & (tx < self.w) & (oy * oy + ox * ox >= self.min_offset2)
        # Gather every cell's target (clipped into the image) in one flat take, then void the
        # invalid ones: cheaper than a masked gather.
        flat = np.clip(ty, 0, self.h - 1) * self.w + np.clip(tx, 0, self.w - 1)
        diff = np.take(self.flat_desc, flat.ravel(), axis=0) - self.flat_query
        cost = np.einsum("nd,nd->n", diff, diff).reshape(oy.shape)
        cost[~valid] = np.inf
        return cost

    def offer(self, oy: np.ndarray, ox: np.ndarray) -> None:
        """Takes the candidate offsets wherever they match better."""
        cost = self._costs(oy, ox)
        better = cost < self.cost
        self.oy[better], self.ox[better], self.cost[better] = oy[better], ox[better], cost[better]


def _shifted(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``a`` moved by (dy, dx) cells, edges repeated: each cell sees its neighbour's value."""
    gh, gw = a.shape
    rows = np.clip(np.arange(gh) - dy, 0, gh - 1)
    cols = np.clip(np.arange(gw) - dx, 0, gw - 1)
    return a[rows][:, cols]


def _match(desc: np.ndarray, config: CopyMoveConfig) -> _Field:
    """PatchMatch over the grid: random start, jump-flooding propagation, random search."""
    rng = np.random.default_rng(config.seed)
    field = _Field(desc, config.stride, config.min_offset)
    h, w = field.h, field.w
    shape = field.ys.shape
    field.offer(rng.integers(0, h, shape) - field.ys, rng.integers(0, w, shape) - field.xs)
    for _ in range(config.iterations):
        for jump in (8, 4, 2, 1):
            for dy, dx in ((jump, 0), (-jump, 0), (0, jump), (0, -jump)):
                field.offer(_shifted(field.oy, dy, dx), _shifted(field.ox, dy, dx))
        radius = max(h, w)
        while radius >= 1:
            field.offer(
                field.oy + rng.integers(-radius, radius + 1, shape), field.ox + rng.integers(-radius, radius + 1, shape)
            )
            radius //= 2
    return field


def detect_copy_move(image: np.ndarray, config: CopyMoveConfig = CopyMoveConfig()) -> np.ndarray:
    """Copy-move mask of one image.

    Args:
        image: ``[H, W, 3]`` uint8 RGB.
        config: search settings.

    Returns:
        ``[H, W]`` uint8 mask, 255 on both the source and the target of every
        copy found, 0 elsewhere (all 0: no copy-move).

    Raises:
        ValueError: ``image`` is not ``[H, W, 3]`` uint8. An image under
            ``2 * min_offset`` on its longer side (after shrinking) has no
            room for a copy: its mask is empty.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"detect_copy_move needs an [H, W, 3] uint8 image, got {image.shape} {image.dtype}")
    h0, w0 = image.shape[:2]
    factor = min(1.0, config.max_side / max(h0, w0))
    if factor < 1.0:
        size = (max(1, round(w0 * factor)), max(1, round(h0 * factor)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    if max(image.shape[:2]) < 2 * config.min_offset:  # no room for a copy that far from its source
        return np.zeros((h0, w0), np.uint8)
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    desc = ring_descriptors(gray, config.radius)
    desc_size = desc.shape[-1]
    field = _match(desc, config)

    mean = cv2.blur(gray, (9, 9))
    std = np.sqrt(np.maximum(cv2.blur(gray * gray, (9, 9)) - mean * mean, 0.0))
    textured = std[field.ys, field.xs] >= config.min_std
    oy, ox = field.oy.astype(np.float32), field.ox.astype(np.float32)
    # A 5 x 5 median is the local offset of a rigid copy (translation exactly, a rotation or
    # scaling to first order); a random match on texture lies far from its neighbours' median.
    spread = np.hypot(oy - cv2.medianBlur(oy, 5), ox - cv2.medianBlur(ox, 5))
    limit = np.inf if config.max_cost is None else config.max_cost * desc_size
    matched = np.isfinite(field.cost) & (field.cost <= limit)  # inf: no valid match was ever offered
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
    target_rows = np.clip(np.rint((field.ys[rows, cols] + field.oy[rows, cols]) / stride).astype(int), 0, gh - 1)
    target_cols = np.clip(np.rint((field.xs[rows, cols] + field.ox[rows, cols]) / stride).astype(int), 0, gw - 1)
    mask[target_rows, target_cols] = 1
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    return cv2.resize(mask * 255, (w0, h0), interpolation=cv2.INTER_NEAREST)
