"""Image manipulations behind the synthetic forgeries.

Splicing and copy-move share one operation: a region of a source image
(another photo, or the host itself) is mapped into the host by a similarity
transform (scale, rotation, optional mirror, translation), resampled with
bilinear interpolation, optionally colour-matched to what it covers, and
blended through a feathered alpha matte. Inpainting fills a region from its
surroundings with ``cv2.inpaint``.

Mask convention: ``bool`` [H, W], True = forged. For blended regions a pixel
is forged when at least half of its value comes from the pasted content
(feathered alpha > 0.5); the feather's thin outer fringe, less than half
pasted, stays pristine.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["Forgery", "Placement", "composite", "inpaint_region", "place_region", "similarity_matrix"]


@dataclass(frozen=True)
class Placement:
    """Where a source region lands in the host."""

    matrix: np.ndarray  # [2, 3] float64 affine map, source (x, y) -> host (x, y)
    mask: np.ndarray  # [H, W] bool, the region's footprint in the host


@dataclass(frozen=True)
class Forgery:
    """A manipulated image with its ground truth."""

    image: np.ndarray  # [H, W, 3] uint8 RGB
    mask: np.ndarray  # [H, W] bool, True = forged


def similarity_matrix(
    center_src: tuple[float, float],
    center_dst: tuple[float, float],
    scale: float,
    angle_deg: float,
    mirror: bool = False,
) -> np.ndarray:
    """Builds the affine map taking ``center_src`` to ``center_dst``.

    Args:
        center_src: (x, y) in the source image.
        center_dst: (x, y) in the host image.
        scale: Isotropic scale factor, > 0.
        angle_deg: Counter-clockwise rotation in degrees (as seen on screen).
        mirror: Flip left-right before rotating.

    Returns:
        [2, 3] float64 matrix for ``cv2.warpAffine`` (source -> host).
    """
    theta = np.deg2rad(angle_deg)
    # y points down in images, so a visually counter-clockwise turn has a
    # positive sine on the upper-right entry.
    linear = scale * np.array([[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]])
    if mirror:
        linear = linear @ np.diag([-1.0, 1.0])
    offset = np.asarray(center_dst, dtype=np.float64) - linear @ np.asarray(center_src, dtype=np.float64)
    return np.hstack([linear, offset[:, None]])


def _warp_region(region: np.ndarray, matrix: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Maps a boolean region into a canvas of ``shape``; True where over half covered."""
    warped = cv2.warpAffine(
        region.astype(np.float32), matrix, (shape[1], shape[0]), flags=cv2.INTER_LINEAR, borderValue=0.0
    )
    return warped > 0.5


def place_region(
    region: np.ndarray,
    host_shape: tuple[int, int],
    scale: float,
    angle_deg: float,
    mirror: bool,
    rng: np.random.Generator,
    avoid: np.ndarray | None = None,
    max_overlap: float = 1.0,
    tries: int = 10,
) -> Placement | None:
    """Places a transformed source region fully inside the host.

    The region's centroid goes to a uniformly random point among those that
    keep its transformed bounding box inside the host.

    Args:
        region: [h, w] ``bool`` region in source coordinates, not empty.
        host_shape: Host (H, W).
        scale: Scale factor source -> host.
        angle_deg: Rotation in degrees.
        mirror: Flip the region left-right.
        rng: Source of randomness.
        avoid: Optional [H, W] ``bool`` host area the placement should not
            cover (copy-move: the source region itself).
        max_overlap: Largest accepted share of the placed region lying on
            ``avoid``, in [0, 1].
        tries: Random positions tried before giving up on ``max_overlap``.

    Returns:
        The placement with the least overlap among the tries, or ``None``
        when the transformed region does not fit in the host, lands on no
        pixel, or always overlaps ``avoid`` more than ``max_overlap``.
    """
    ys, xs = np.nonzero(region)
    if xs.size == 0:
        return None
    center = (float(xs.mean()), float(ys.mean()))
    corners = np.array(
        [[xs.min() - 0.5, ys.min() - 0.5], [xs.max() + 0.5, ys.min() - 0.5],
         [xs.min() - 0.5, ys.max() + 0.5], [xs.max() + 0.5, ys.max() + 0.5]]
    )
    linear = similarity_matrix(center, (0.0, 0.0), scale, angle_deg, mirror)
    offsets = corners @ linear[:, :2].T + linear[:, 2]
    # Pixel centres are integers, so the host spans [-0.5, size - 0.5].
    low = -0.5 - offsets.min(axis=0)
    high = np.array([host_shape[1], host_shape[0]]) - 0.5 - offsets.max(axis=0)
    if np.any(low > high):
        return None
    best: Placement | None = None
    best_overlap = np.inf
    for _ in range(max(1, tries)):
        target = rng.uniform(low, high)
        matrix = similarity_matrix(center, (float(target[0]), float(target[1])), scale, angle_deg, mirror)
        mask = _warp_region(region, matrix, host_shape)
        area = int(mask.sum())
        if area == 0:
            continue
        overlap = float((mask & avoid).sum()) / area if avoid is not None else 0.0
        if overlap < best_overlap:
            best, best_overlap = Placement(matrix=matrix, mask=mask), overlap
        if overlap <= max_overlap:
            break
    return best if best is not None and best_overlap <= max_overlap else None


def _match_colors(content: np.ndarray, host: np.ndarray, mask: np.ndarray, strength: float) -> np.ndarray:
    """Moves the pasted content's per-channel mean/std inside ``mask`` towards
    the host's there (what an editor does by hand to hide a splice)."""
    src = content[mask]
    dst = host[mask].astype(np.float32)
    mean_src, std_src = src.mean(axis=0), src.std(axis=0)
    mean_dst, std_dst = dst.mean(axis=0), dst.std(axis=0)
    # Clamped gain: a flat source patch would otherwise amplify its noise wildly.
    gain = np.clip(std_dst / np.maximum(std_src, 1.0), 0.5, 2.0)
    matched = (content - mean_src) * gain + mean_dst
    return content + strength * (matched - content)


def composite(
    host: np.ndarray,
    source: np.ndarray,
    placement: Placement,
    feather_sigma: float = 0.0,
    color_strength: float = 0.0,
) -> Forgery:
    """Pastes the placed region of ``source`` into ``host``.

    Args:
        host: [H, W, 3] ``uint8`` RGB receiving the content.
        source: [h, w, 3] ``uint8`` RGB the content comes from (may be
            ``host`` itself for copy-move).
        placement: From :func:`place_region`, in the host's frame.
        feather_sigma: Gaussian blur of the alpha matte in pixels; 0 = hard edge.
        color_strength: 0 = no colour matching, 1 = full mean/std transfer.

    Returns:
        The forged image and its mask (alpha > 0.5; see module notes).
    """
    height, width = host.shape[:2]
    # Reflecting the border keeps real texture under the feathered fringe
    # where the region touches the source's edge.
    content = cv2.warpAffine(
        source, placement.matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    ).astype(np.float32)
    if color_strength > 0.0:
        content = _match_colors(content, host, placement.mask, color_strength)
    alpha = placement.mask.astype(np.float32)
    if feather_sigma > 0.0:
        alpha = cv2.GaussianBlur(alpha, (0, 0), feather_sigma)
    blended = alpha[:, :, None] * content + (1.0 - alpha[:, :, None]) * host.astype(np.float32)
    image = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return Forgery(image=image, mask=alpha > 0.5)


def inpaint_region(image: np.ndarray, region: np.ndarray, radius: int, method: str = "telea") -> Forgery:
    """Removes a region by filling it from its surroundings.

    Args:
        image: [H, W, 3] ``uint8`` RGB.
        region: [H, W] ``bool``, True = to remove.
        radius: Neighbourhood radius of the inpainting, pixels (>= 1).
        method: ``"telea"`` (fast marching) or ``"ns"`` (Navier-Stokes).

    Returns:
        The filled image; its mask is ``region`` (``cv2.inpaint`` changes
        exactly those pixels).

    Raises:
        ValueError: if ``method`` is unknown or ``radius`` < 1.
    """
    flags = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}
    if method not in flags:
        raise ValueError(f"inpaint method must be one of {sorted(flags)}, got {method!r}")
    if radius < 1:
        raise ValueError(f"inpaint radius must be >= 1, got {radius}")
    filled = cv2.inpaint(image, region.astype(np.uint8) * 255, float(radius), flags[method])
    return Forgery(image=filled, mask=region.copy())
