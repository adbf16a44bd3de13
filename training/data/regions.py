"""Region shapes for synthetic forgeries: human segments and random polygons.

BSDS500 ground truth (``bsds500_groundTruth_mat/<stem>.mat``, one per photo
``bsds500/<stem>.jpg``) is a MATLAB file whose variable ``groundTruth`` is a
1 x K cell array (K = 4..9 annotators), each cell a struct with fields
``Segmentation`` (uint16 label map, labels 1..n, 0 unused, same H x W as the
photo, portrait photos included) and ``Boundaries`` (uint8 edge map). One
label of one annotator is an object-shaped region: splicing or copy-moving it
moves a real object, inpainting over it removes one.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import scipy.io

__all__ = ["load_segmentations", "pick_segment", "random_polygon_mask", "resize_region"]


def load_segmentations(path: str | Path) -> list[np.ndarray]:
    """Loads every human segmentation of a BSDS500 ground-truth file.

    Args:
        path: A BSDS500 ``.mat`` file.

    Returns:
        One label map per annotator: [H, W] ``uint16``, labels from 1.

    Raises:
        ValueError: if the file cannot be read or does not hold a
            ``groundTruth`` cell of structs with a 2-D ``Segmentation``.
    """
    try:
        content = scipy.io.loadmat(str(path))
    except (OSError, ValueError, TypeError) as err:  # scipy raises all three for bad files
        raise ValueError(f"{path}: cannot read MATLAB file ({err})") from err
    cells = content.get("groundTruth")
    if not isinstance(cells, np.ndarray) or cells.dtype != object or cells.size == 0:
        raise ValueError(f"{path}: no 'groundTruth' cell array (not a BSDS500 ground-truth file)")
    maps = []
    for i, cell in enumerate(cells.ravel()):
        try:
            labels = np.asarray(cell["Segmentation"].ravel()[0])
        except (ValueError, IndexError, KeyError, TypeError) as err:
            raise ValueError(f"{path}: groundTruth cell {i} has no 'Segmentation' field") from err
        if labels.ndim != 2:
            raise ValueError(
                f"{path}: groundTruth cell {i} Segmentation has shape {labels.shape}, expected 2-D"
            )
        maps.append(labels.astype(np.uint16, copy=False))
    return maps


def resize_region(region: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resizes a boolean region or label map to ``shape`` with nearest neighbour.

    Args:
        region: [h, w] ``bool`` or integer label map.
        shape: Target (H, W).

    Returns:
        [H, W] array of the input's dtype (returned as-is when already that size).
    """
    if region.shape == tuple(shape):
        return region
    resized = cv2.resize(region.astype(np.uint16), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return resized.astype(region.dtype)


def _largest_component(region: np.ndarray) -> np.ndarray:
    """Keeps the largest 8-connected component: a label can cover scattered
    fragments, and one piece looks like an object where fragments do not."""
    count, components, stats, _ = cv2.connectedComponentsWithStats(region.astype(np.uint8), connectivity=8)
    if count <= 2:  # background plus at most one component
        return region
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return components == largest


def pick_segment(
    label_maps: list[np.ndarray],
    rng: np.random.Generator,
    fraction_range: tuple[float, float],
    target_fraction: float | None = None,
    nearest: int = 3,
    max_border_sides: int = 1,
) -> np.ndarray | None:
    """Picks one object-shaped region from human segmentations.

    Candidates are the labels (of any annotator) whose area, as a fraction of
    the image, lies in ``fraction_range`` and which touch at most
    ``max_border_sides`` image sides (sky, ground and walls touch several;
    an object cut by two borders leaves straight edges when moved). The
    chosen label is reduced to its largest connected component, so the
    returned area can be smaller than the label's.

    Args:
        label_maps: [H, W] integer label maps of one image (same shape).
        rng: Source of randomness.
        fraction_range: (low, high) accepted label area / image area.
        target_fraction: If given, choose uniformly among the ``nearest``
            candidates closest to it in log-area; otherwise among all.
        nearest: How many closest candidates to choose from.
        max_border_sides: Most image sides (0..4) a candidate may touch.

    Returns:
        [H, W] ``bool`` region (True inside), or ``None`` when no label fits.
    """
    candidates: list[tuple[int, int, float]] = []
    for index, labels in enumerate(label_maps):
        count = int(labels.max()) + 1
        fractions = np.bincount(labels.ravel(), minlength=count) / labels.size
        sides = sum(
            np.bincount(edge, minlength=count) > 0
            for edge in (labels[0], labels[-1], labels[:, 0], labels[:, -1])
        )
        fits = (fractions >= fraction_range[0]) & (fractions <= fraction_range[1]) & (sides <= max_border_sides)
        for label in np.flatnonzero(fits):
            candidates.append((index, int(label), float(fractions[label])))
    if not candidates:
        return None
    if target_fraction is not None:
        candidates.sort(key=lambda c: abs(np.log(c[2] / target_fraction)))
        candidates = candidates[: max(1, nearest)]
    index, label, _ = candidates[int(rng.integers(len(candidates)))]
    return _largest_component(label_maps[index] == label)


def random_polygon_mask(
    shape: tuple[int, int],
    area_fraction: float,
    rng: np.random.Generator,
    vertex_range: tuple[int, int] = (5, 12),
) -> np.ndarray:
    """Draws a random star-shaped polygon of roughly a given area.

    Vertices sit at random angles around a centre with random radii (so the
    outline is irregular but never self-intersecting) and a random aspect
    ratio; the polygon is scaled to the requested area, shrunk if it would
    not fit, and placed at a random position fully inside the canvas.

    Args:
        shape: Canvas (H, W), each at least 4.
        area_fraction: Wanted polygon area / canvas area, in (0, 1).
        rng: Source of randomness.
        vertex_range: Inclusive (min, max) vertex count, min >= 3.

    Returns:
        [H, W] ``bool``, True inside the polygon. Its area is near
        ``area_fraction`` unless the shape had to shrink to fit.

    Raises:
        ValueError: if ``shape``, ``area_fraction`` or ``vertex_range`` is
            out of range.
    """
    height, width = shape
    if height < 4 or width < 4:
        raise ValueError(f"canvas must be at least 4 x 4, got {shape}")
    if not 0.0 < area_fraction < 1.0:
        raise ValueError(f"area_fraction must be in (0, 1), got {area_fraction}")
    if not 3 <= vertex_range[0] <= vertex_range[1]:
        raise ValueError(f"vertex_range must be (min, max) with 3 <= min <= max, got {vertex_range}")
    count = int(rng.integers(vertex_range[0], vertex_range[1] + 1))
    # Random positive angle steps normalised to a full turn: irregular but
    # never two vertices on top of each other.
    steps = rng.uniform(0.5, 1.5, count)
    angles = rng.uniform(0.0, 2 * np.pi) + 2 * np.pi * np.cumsum(steps) / steps.sum()
    radii = rng.uniform(0.45, 1.0, count)
    aspect = float(np.exp(rng.uniform(np.log(0.6), np.log(1.6))))
    unit = np.stack([radii * np.cos(angles) * aspect, radii * np.sin(angles) / aspect], axis=1)
    x, y = unit[:, 0], unit[:, 1]
    unit_area = 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))
    scale = np.sqrt(area_fraction * height * width / unit_area)
    span = unit.max(axis=0) - unit.min(axis=0)
    scale = min(scale, (width - 2) / span[0], (height - 2) / span[1])
    points = unit * scale
    low = -points.min(axis=0)
    high = np.array([width - 1, height - 1]) - points.max(axis=0)
    points = points + rng.uniform(low, np.maximum(low, high))
    canvas = np.zeros(shape, dtype=np.uint8)
    cv2.fillPoly(canvas, [np.rint(points).astype(np.int32)], 1)
    return canvas.astype(bool)
