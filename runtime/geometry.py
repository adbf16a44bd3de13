"""Input policies: how an image of any size becomes the network input, and back.

- ``square`` (the authors' release, and their weights' only valid choice):
  the image is stretched to ``S x S``; the feature map covers it whole.
- ``native``: the long side is capped at ``max_side`` (aspect kept, never
  enlarged), the image is padded at the bottom and right to a multiple of
  the network's stride, and only the feature cells of the image proper are
  kept. So a 1920 x 1080 photo keeps its pixel-level traces instead of being
  shrunk 3.75x and distorted.

Clustering costs O(N^2) in the feature cells N, so under ``native`` the kept
cells are average-pooled by the smallest integer factor that leaves at most
``max_points`` of them: the cost stays bounded for any photo size.

So a ``native`` network input is always a multiple of the stride between one
cell and ``max_side x max_side`` (``max_side`` itself a multiple of the
stride, :func:`check_native`): :func:`input_profile` is that range, the
optimisation profile of a native artifact's TensorRT engines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    "INPUT_POLICIES",
    "Geometry",
    "ShapeProfile",
    "check_native",
    "image_geometry",
    "input_profile",
    "labels_extent",
    "pad_input",
    "plan",
    "pool_features",
]

INPUT_POLICIES: tuple[str, ...] = ("square", "native")


@dataclass(frozen=True)
class Geometry:
    """Where one image's pixels sit in the network input and its feature map."""

    height: int  # H of the original image
    width: int  # W of the original image
    in_height: int  # the image's rows in the network input, before padding
    in_width: int  # its columns
    pad_height: int  # network input rows (a multiple of the stride under "native")
    pad_width: int  # network input columns
    cells_h: int  # feature rows that cover the image proper
    cells_w: int  # feature columns that cover it
    pool: int  # average-pooling factor of those cells before clustering (1 = none)
    stride: int  # input pixels per feature cell

    @property
    def grid(self) -> tuple[int, int]:
        """``(rows, cols)`` of the clustered grid, after pooling."""
        return math.ceil(self.cells_h / self.pool), math.ceil(self.cells_w / self.pool)


def plan(height: int, width: int, policy: str, size: int, stride: int, max_side: int | None = None,
         max_points: int | None = None) -> Geometry:
    """The geometry of an ``height x width`` image under an input policy.

    Args:
        height, width: the image's size, >= 1.
        policy: one of :data:`INPUT_POLICIES`.
        size: ``S`` of the square policy.
        stride: input pixels per feature cell of the network (>= 1).
        max_side: ``native``: cap of the longer side after resizing.
        max_points: ``native``: most feature cells clustered.

    Raises:
        ValueError: unknown policy, or sizes that cannot hold the image.
    """
    if policy == "square":
        cells = size // stride
        return Geometry(height, width, size, size, size, size, cells, cells, 1, stride)
    if policy != "native":
        raise ValueError(f"unknown input policy {policy!r}; choose one of {INPUT_POLICIES}")
    check_native(max_side, stride)
    if not max_points or max_points < 1:
        raise ValueError(f"input policy 'native' needs max_points >= 1, got {max_points}")
    assert max_side is not None  # check_native refused None
    scale = min(1.0, max_side / max(height, width))
    in_h, in_w = max(1, round(height * scale)), max(1, round(width * scale))
    pad_h, pad_w = _ceil_to(in_h, stride), _ceil_to(in_w, stride)
    cells_h, cells_w = pad_h // stride, pad_w // stride
    pool = 1
    while math.ceil(cells_h / pool) * math.ceil(cells_w / pool) > max_points:
        pool += 1
    return Geometry(height, width, in_h, in_w, pad_h, pad_w, cells_h, cells_w, pool, stride)


def check_native(max_side: int | None, stride: int) -> None:
    """Refuse a ``native`` cap the network input cannot take exactly.

    The capped long side is padded to the stride; a cap that is not a
    multiple of it would pad the long side *past* the cap, so the largest
    input (and a TensorRT profile's max shape) would not be ``max_side``.

    Raises:
        ValueError: ``max_side`` missing, below ``stride`` or not a multiple of it (one line).
    """
    if not max_side or max_side < stride:
        raise ValueError(f"input policy 'native' needs max_side >= the stride {stride}, got {max_side}")
    if max_side % stride:
        raise ValueError(f"input policy 'native' needs max_side a multiple of the stride {stride}, got {max_side} "
                         f"(nearest: {max_side // stride * stride} or {_ceil_to(max_side, stride)})")


def image_geometry(height: int, width: int, policy: str, size: int, stride: int, max_side: int | None = None,
                   max_points: int | None = None) -> Geometry | None:
    """:func:`plan` under ``native``; None under ``square``, whose path needs no plan."""
    if policy == "square":
        return None
    return plan(height, width, policy, size, stride, max_side, max_points)


def _ceil_to(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


@dataclass(frozen=True)
class ShapeProfile:
    """The network-input shapes a dynamic-shape engine accepts, ``(height, width)`` pixels, multiples of the stride."""

    min: tuple[int, int]  # smallest input (the smallest image, padded to the stride: one cell)
    opt: tuple[int, int]  # the shape kernels are tuned for (a landscape photo at the cap)
    max: tuple[int, int]  # largest input (any image after the cap fits in it)

    def holds(self, height: int, width: int) -> bool:
        """Whether an input of ``height x width`` pixels is within ``min .. max`` on both axes."""
        return self.min[0] <= height <= self.max[0] and self.min[1] <= width <= self.max[1]


def input_profile(max_side: int, stride: int) -> ShapeProfile:
    """The optimisation profile of a ``native`` artifact, from its manifest's ``max_side`` and stride.

    ``min`` is one cell (``stride x stride``: :func:`plan` accepts any image
    down to one pixel and pads it to the stride); ``opt`` is
    ``3/4 max_side x max_side`` (a 4:3 landscape photo at the cap, rounded down
    to the stride); ``max`` is ``max_side x max_side``, which holds every
    capped image in either orientation.

    Raises:
        ValueError: ``max_side`` not a positive multiple of ``stride`` (:func:`check_native`).
    """
    check_native(max_side, stride)
    opt_h = max(stride, (max_side * 3 // 4) // stride * stride)
    return ShapeProfile((stride, stride), (opt_h, max_side), (max_side, max_side))


def pad_input(image: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Resize (bilinear, as the square policy) and edge-pad an image to the network input.

    Args:
        image: ``[H, W, 3]`` uint8 RGB.

    Returns:
        ``[pad_height, pad_width, 3]`` uint8 RGB; rows and columns past the
        image repeat its last ones, so the pad draws no false edge.
    """
    g = geometry
    if (g.in_height, g.in_width) != image.shape[:2]:
        image = cv2.resize(image, (g.in_width, g.in_height), interpolation=cv2.INTER_LINEAR)
    bottom, right = g.pad_height - g.in_height, g.pad_width - g.in_width
    if bottom or right:
        image = cv2.copyMakeBorder(image, 0, bottom, 0, right, cv2.BORDER_REPLICATE)
    return image


def pool_features(feature_map: np.ndarray, geometry: Geometry) -> np.ndarray:
    """The feature cells of the image proper, average-pooled to the clustering grid.

    Args:
        feature_map: ``[D, h, w]`` float32 network output for this image.

    Returns:
        ``[D, rows, cols]`` float32 (``geometry.grid``). A pooled cell at the
        edge averages the cells it covers, not padding.

    Raises:
        ValueError: the map is smaller than the geometry says it holds.
    """
    g = geometry
    d, h, w = feature_map.shape
    if h < g.cells_h or w < g.cells_w:
        raise ValueError(f"feature map {h} x {w} is smaller than the {g.cells_h} x {g.cells_w} cells of the image")
    cells = feature_map[:, : g.cells_h, : g.cells_w]
    if g.pool == 1:
        return np.ascontiguousarray(cells, dtype=np.float32)
    rows, cols = g.grid
    if (rows * g.pool, cols * g.pool) == (g.cells_h, g.cells_w):
        full = np.asarray(cells, np.float32)
    else:
        full = np.zeros((d, rows * g.pool, cols * g.pool), np.float32)
        full[:, : g.cells_h, : g.cells_w] = cells
    count = np.zeros((rows * g.pool, cols * g.pool), np.float32)
    count[: g.cells_h, : g.cells_w] = 1.0
    # One strided add per offset in the pooling window: NumPy's reduction over two inner axes of a
    # 5-D view (sum(axis=(2, 4))) is ~4x slower (7 vs 1.7 ms for 64 x 96 x 128 at pool 2).
    blocks = full.reshape(d, rows, g.pool, cols, g.pool)
    sums = blocks[:, :, 0, :, 0].copy()
    for i in range(g.pool):
        for j in range(g.pool):
            if i or j:
                sums += blocks[:, :, i, :, j]
    counts = count.reshape(rows, g.pool, cols, g.pool).sum(axis=(1, 3))
    return sums / counts[None]


def labels_extent(geometry: Geometry) -> tuple[int, int]:
    """Input pixels covered by the clustered grid: ``(rows * pool * stride, cols * pool * stride)``."""
    rows, cols = geometry.grid
    step = geometry.pool * geometry.stride
    return rows * step, cols * step
