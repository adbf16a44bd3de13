"""Synthetic forgeries made from untouched photos.

Each sample is one of: an authentic photo (possibly JPEG re-compressed, empty
mask), a splice (a region of another photo pasted in), a copy-move (a region
of the same photo moved elsewhere) or an inpainting (a region filled from its
surroundings). Regions are human-segmented objects from BSDS500 where a
segmentation is available (see :mod:`.regions`), otherwise random polygons.

Everything random comes from the ``numpy.random.Generator`` passed in, so a
sample is a pure function of (photos, config, generator state); no global
random state is touched.

Mask convention: ``bool`` [H, W], True = forged; the forged share of the
image always lies in ``SyntheticConfig.area_range`` for a forgery, and the
mask is all False for an authentic sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import cv2
import numpy as np

from .augment import jpeg_compress
from .io import DEFAULT_MAX_PIXELS, read_image
from .manipulations import Forgery, Placement, composite, inpaint_region, place_region
from .regions import load_segmentations, pick_segment, random_polygon_mask, resize_region

__all__ = ["MANIPULATIONS", "SyntheticConfig", "SyntheticForgeryGenerator", "SyntheticSample"]

# Manipulation kinds, in the order of their weights in SyntheticConfig.
MANIPULATIONS: tuple[str, ...] = ("splice", "copy_move", "inpaint")

# Smallest photo side accepted as host or donor: below it, a region within
# the area range is a handful of pixels.
_MIN_SIDE = 16


@dataclass(frozen=True)
class SyntheticConfig:
    """How synthetic forgeries are drawn."""

    p_authentic: float = 0.2  # share of untouched samples (empty mask): teaches "no forgery here"
    weight_splice: float = 0.4  # relative weight of splicing among forgeries
    weight_copy_move: float = 0.4  # relative weight of copy-move among forgeries
    weight_inpaint: float = 0.2  # relative weight of inpainting among forgeries
    area_range: tuple[float, float] = (0.02, 0.4)  # forged share of the image, inclusive
    p_object_region: float = 0.7  # chance to use a human segment (when one exists) over a polygon
    polygon_vertices: tuple[int, int] = (5, 12)  # inclusive vertex-count range of random polygons
    scale_range: tuple[float, float] = (0.5, 2.0)  # resampling factor of moved content (source px -> host px)
    max_rotation_deg: float = 30.0  # moved content is rotated by an angle in [-x, x] degrees
    p_mirror: float = 0.1  # chance to mirror moved content left-right
    feather_sigma_range: tuple[float, float] = (0.0, 2.0)  # blur of the blending matte's edge, pixels
    p_color_match: float = 0.5  # chance to match a splice's colour statistics to the host
    color_match_strength_range: tuple[float, float] = (0.5, 1.0)  # 0 = none, 1 = full mean/std transfer
    p_donor_jpeg: float = 0.5  # chance to JPEG the donor before splicing (double-compression mismatch)
    donor_jpeg_quality_range: tuple[int, int] = (50, 100)  # inclusive donor JPEG quality range
    p_final_jpeg: float = 0.5  # chance to JPEG the result, authentic samples alike (no compression shortcut)
    final_jpeg_quality_range: tuple[int, int] = (60, 100)  # inclusive final JPEG quality range
    min_jpeg_quality_gap: int = 5  # donor and final qualities differ by at least this where the ranges allow
    max_copy_move_overlap: float = 0.2  # largest share of a copy-move destination lying on its source
    inpaint_radius_range: tuple[int, int] = (3, 9)  # inclusive cv2.inpaint radius range, pixels
    max_side: int | None = None  # photos with a longer side are shrunk to it first (speed); None = as is
    max_attempts: int = 20  # random region draws per sample before the always-fitting rectangle fallback

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name.startswith("p_") and not 0.0 <= value <= 1.0:
                raise ValueError(f"SyntheticConfig.{field.name} must be in [0, 1], got {value}")
            if field.name.startswith("weight_") and value < 0.0:
                raise ValueError(f"SyntheticConfig.{field.name} must be >= 0, got {value}")
            if field.name.endswith(("_range", "_vertices")) and (len(value) != 2 or value[0] > value[1]):
                raise ValueError(
                    f"SyntheticConfig.{field.name} must be (low, high) with low <= high, got {value}"
                )
        if self.p_authentic < 1.0 and self.weights.sum() <= 0.0:
            raise ValueError("SyntheticConfig: every manipulation weight is 0 but p_authentic < 1")
        if not 0.0 < self.area_range[0] <= self.area_range[1] <= 0.5:
            raise ValueError(f"SyntheticConfig.area_range must lie in (0, 0.5], got {self.area_range}")
        if self.scale_range[0] <= 0.0:
            raise ValueError(f"SyntheticConfig.scale_range must be positive, got {self.scale_range}")
        if self.polygon_vertices[0] < 3 or self.inpaint_radius_range[0] < 1 or self.max_attempts < 1:
            raise ValueError(
                "SyntheticConfig: polygon_vertices needs >= 3, inpaint_radius_range >= 1, "
                f"max_attempts >= 1; got {self.polygon_vertices}, {self.inpaint_radius_range}, "
                f"{self.max_attempts}"
            )
        if self.feather_sigma_range[0] < 0.0 or self.max_rotation_deg < 0.0 or self.min_jpeg_quality_gap < 0:
            raise ValueError("SyntheticConfig: feather sigma, rotation and JPEG gap must be >= 0")
        for name in ("donor_jpeg_quality_range", "final_jpeg_quality_range"):
            low, high = getattr(self, name)
            if not 1 <= low <= high <= 100:
                raise ValueError(f"SyntheticConfig.{name} must lie in [1, 100], got {(low, high)}")
        if not 0.0 <= self.max_copy_move_overlap <= 1.0:
            raise ValueError(
                f"SyntheticConfig.max_copy_move_overlap must be in [0, 1], got {self.max_copy_move_overlap}"
            )
        if self.max_side is not None and self.max_side < _MIN_SIDE:
            raise ValueError(f"SyntheticConfig.max_side must be None or >= {_MIN_SIDE}, got {self.max_side}")

    @property
    def weights(self) -> np.ndarray:
        """Manipulation weights in the order of :data:`MANIPULATIONS`."""
        return np.array([self.weight_splice, self.weight_copy_move, self.weight_inpaint], dtype=np.float64)


@dataclass(frozen=True)
class SyntheticSample:
    """One synthetic sample."""

    image: np.ndarray  # [H, W, 3] uint8 RGB
    mask: np.ndarray  # [H, W] bool, True = forged; all False when authentic
    kind: str  # "authentic", one of MANIPULATIONS, or "reprocess" (TraceConfig.p_reprocess)
    host: Path  # the photo the sample is made from
    donor: Path | None  # the photo a splice took its content from; None otherwise

    @property
    def authentic(self) -> bool:
        """True for an untouched (possibly re-compressed) photo."""
        return self.kind == "authentic"


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    """Draws from [low, high] uniformly in log scale (as likely to halve as to double)."""
    return float(np.exp(rng.uniform(np.log(bounds[0]), np.log(bounds[1]))))


class SyntheticForgeryGenerator:
    """Makes synthetic forgeries from a fixed list of untouched photos.

    Args:
        photos: Untouched photos (host and donor pool), e.g. one side of
            :func:`~.photos.split_by_file`, so validation forgeries are made
            of validation photos only.
        config: What to generate.
        segmentation_dir: Optional folder of BSDS500 ``<stem>.mat`` files.
            A photo with a same-stem file gets object regions from its own
            segmentation; other photos borrow segment shapes from random files.
        max_pixels: Decompression-bomb limit passed to :func:`~.io.read_image`.

    Raises:
        ValueError: if ``photos`` is empty, splicing is enabled with a single
            photo, or ``segmentation_dir`` is not a folder.
    """

    def __init__(
        self,
        photos: Sequence[str | Path],
        config: SyntheticConfig = SyntheticConfig(),
        segmentation_dir: str | Path | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self._photos = tuple(Path(p) for p in photos)
        if not self._photos:
            raise ValueError("SyntheticForgeryGenerator needs at least one photo, got none")
        if len(self._photos) < 2 and config.weight_splice > 0.0 and config.p_authentic < 1.0:
            raise ValueError("splicing needs at least two photos (a host and a donor); set weight_splice=0")
        self._config = config
        self._max_pixels = max_pixels
        self._segmentations: dict[str, Path] = {}
        if segmentation_dir is not None:
            seg_dir = Path(segmentation_dir)
            if not seg_dir.is_dir():
                raise ValueError(f"{seg_dir}: segmentation_dir is not a folder")
            self._segmentations = {p.stem: p for p in sorted(seg_dir.glob("*.mat"))}
        self._shape_library = tuple(self._segmentations.values())

    @property
    def photos(self) -> tuple[Path, ...]:
        """The photo pool, in the given order."""
        return self._photos

    @property
    def config(self) -> SyntheticConfig:
        """The generation settings."""
        return self._config

    def __len__(self) -> int:
        return len(self._photos)

    # -- loading ---------------------------------------------------------

    def _load(self, path: Path) -> tuple[np.ndarray, list[np.ndarray]]:
        """Reads a photo at working size, with its own label maps (maybe none)."""
        image = read_image(path, self._max_pixels)
        original = image.shape[:2]
        if min(original) < _MIN_SIDE:
            raise ValueError(
                f"{path}: photo is {original[1]} x {original[0]}, below the {_MIN_SIDE}-pixel minimum side"
            )
        max_side = self._config.max_side
        if max_side is not None and max(original) > max_side:
            factor = max_side / max(original)
            size = (max(_MIN_SIDE, round(original[1] * factor)), max(_MIN_SIDE, round(original[0] * factor)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        labels: list[np.ndarray] = []
        mat = self._segmentations.get(path.stem)
        if mat is not None:
            labels = load_segmentations(mat)
            if any(m.shape != original for m in labels):
                raise ValueError(
                    f"{mat}: segmentation shape {labels[0].shape} does not match photo {path} "
                    f"of shape {original}"
                )
            labels = [resize_region(m, image.shape[:2]) for m in labels]
        return image, labels

    def _borrowed_labels(self, shape: tuple[int, int], rng: np.random.Generator) -> list[np.ndarray]:
        """Label maps of a random segmentation file, stretched to ``shape``
        (only their object-like outlines are used, not their content)."""
        if not self._shape_library:
            return []
        mat = self._shape_library[int(rng.integers(len(self._shape_library)))]
        return [resize_region(m, shape) for m in load_segmentations(mat)]

    # -- region choice ---------------------------------------------------

    def _source_region(
        self,
        image_shape: tuple[int, int],
        own_labels: list[np.ndarray],
        fraction: float,
        rng: np.random.Generator,
    ) -> np.ndarray | None:
        """A region of about ``fraction`` of an image: an object or a polygon."""
        cfg = self._config
        fraction = float(np.clip(fraction, 0.002, 0.5))
        if rng.random() < cfg.p_object_region:
            labels = own_labels or self._borrowed_labels(image_shape, rng)
            if labels:
                return pick_segment(labels, rng, (0.002, 0.6), target_fraction=fraction)
        return random_polygon_mask(image_shape, fraction, rng, cfg.polygon_vertices)

    def _fit_scale(self, target: float, host_area: int, region: np.ndarray) -> float | None:
        """The scale giving about the wanted area, clamped to the resampling
        range; None when the clamped scale puts the area outside ``area_range``."""
        area = max(int(region.sum()), 1)
        scale = float(np.clip(np.sqrt(target * host_area / area), *self._config.scale_range))
        low, high = self._config.area_range
        return scale if low <= scale**2 * area / host_area <= high else None

    def _rectangle(
        self, shape: tuple[int, int], rng: np.random.Generator, name: Path
    ) -> tuple[int, int, int, int]:
        """A rectangle (y, x, height, width) whose exact pixel share lies in
        ``area_range``, shaped like the image; the fallback region, which
        always fits."""
        height, width = shape
        low, high = self._config.area_range
        total = height * width
        best: tuple[float, int, int] | None = None
        for rect_h in range(1, height + 1):
            min_w = int(np.ceil(low * total / rect_h))
            max_w = min(width, int(np.floor(high * total / rect_h)))
            if min_w > max_w:
                continue
            rect_w = int(np.clip(round(0.5 * (low + high) * total / rect_h), min_w, max_w))
            mismatch = abs(np.log(rect_w * height / (rect_h * width)))
            if best is None or mismatch < best[0]:
                best = (mismatch, rect_h, rect_w)
        if best is None:
            raise ValueError(
                f"{name}: at {width} x {height} pixels no rectangle has an area share within "
                f"area_range {self._config.area_range}"
            )
        _, rect_h, rect_w = best
        top = int(rng.integers(0, height - rect_h + 1))
        left = int(rng.integers(0, width - rect_w + 1))
        return top, left, rect_h, rect_w

    # -- manipulations ---------------------------------------------------

    def _donor(
        self, host_index: int, rng: np.random.Generator
    ) -> tuple[Path, np.ndarray, list[np.ndarray], int | None]:
        """A random other photo, possibly JPEG-compressed, with its label maps and JPEG quality."""
        cfg = self._config
        donor_index = int(rng.integers(len(self._photos) - 1))
        donor_index += donor_index >= host_index  # any photo but the host
        path = self._photos[donor_index]
        donor, labels = self._load(path)
        quality = None
        if rng.random() < cfg.p_donor_jpeg:
            low, high = cfg.donor_jpeg_quality_range
            quality = int(rng.integers(low, high + 1))
            donor = jpeg_compress(donor, quality)
        return path, donor, labels, quality

    def _splice(
        self, host: np.ndarray, donor: np.ndarray, donor_labels: list[np.ndarray], rng: np.random.Generator
    ) -> Forgery | None:
        """One random splice attempt; None when the drawn region does not fit."""
        cfg = self._config
        host_area = host.shape[0] * host.shape[1]
        target = float(rng.uniform(*cfg.area_range))
        preferred_scale = _log_uniform(rng, cfg.scale_range)
        fraction = target * host_area / (preferred_scale**2 * donor.shape[0] * donor.shape[1])
        region = self._source_region(donor.shape[:2], donor_labels, fraction, rng)
        if region is None or not region.any():
            return None
        scale = self._fit_scale(target, host_area, region)
        angle = float(rng.uniform(-cfg.max_rotation_deg, cfg.max_rotation_deg))
        mirror = bool(rng.random() < cfg.p_mirror)
        feather = float(rng.uniform(*cfg.feather_sigma_range))
        strength = float(rng.uniform(*cfg.color_match_strength_range))
        if rng.random() >= cfg.p_color_match:
            strength = 0.0
        if scale is None:
            return None
        placement = place_region(region, host.shape[:2], scale, angle, mirror, rng)
        if placement is None:
            return None
        return composite(host, donor, placement, feather, strength)

    def _copy_move(self, host: np.ndarray, labels: list[np.ndarray], rng: np.random.Generator) -> Forgery | None:
        """One random copy-move attempt; None when the drawn region does not fit."""
        cfg = self._config
        host_area = host.shape[0] * host.shape[1]
        target = float(rng.uniform(*cfg.area_range))
        preferred_scale = _log_uniform(rng, cfg.scale_range)
        region = self._source_region(host.shape[:2], labels, target / preferred_scale**2, rng)
        if region is None or not region.any():
            return None
        scale = self._fit_scale(target, host_area, region)
        angle = float(rng.uniform(-cfg.max_rotation_deg, cfg.max_rotation_deg))
        mirror = bool(rng.random() < cfg.p_mirror)
        feather = float(rng.uniform(*cfg.feather_sigma_range))
        if scale is None:
            return None
        placement = place_region(
            region, host.shape[:2], scale, angle, mirror, rng, avoid=region, max_overlap=cfg.max_copy_move_overlap
        )
        if placement is None:
            return None
        return composite(host, host, placement, feather, 0.0)

    def _inpaint(self, host: np.ndarray, labels: list[np.ndarray], rng: np.random.Generator) -> Forgery | None:
        """One random inpainting attempt (its area is checked by the caller)."""
        cfg = self._config
        target = float(rng.uniform(*cfg.area_range))
        region = None
        if rng.random() < cfg.p_object_region:
            # The host's own objects first (removing a real object), else a
            # borrowed outline; both restricted to the area range directly.
            candidates = labels or self._borrowed_labels(host.shape[:2], rng)
            if candidates:
                region = pick_segment(candidates, rng, cfg.area_range, target_fraction=target)
        if region is None:
            region = random_polygon_mask(host.shape[:2], target, rng, cfg.polygon_vertices)
        # Growing the region a little covers the object's own edge pixels,
        # which would otherwise leave a ghost outline.
        grow = int(rng.integers(0, 4))
        if grow:
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
            region = cv2.dilate(region.astype(np.uint8), kernel).astype(bool)
        return self._fill(host, region, rng)

    def _fill(self, host: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> Forgery:
        """Inpaints ``region`` with a random radius and method."""
        radius = int(rng.integers(self._config.inpaint_radius_range[0], self._config.inpaint_radius_range[1] + 1))
        method = "telea" if rng.random() < 0.5 else "ns"
        return inpaint_region(host, region, radius, method)

    def _fallback(
        self, kind: str, host: np.ndarray, host_path: Path, donor: np.ndarray | None, rng: np.random.Generator
    ) -> Forgery:
        """The manipulation on a rectangle, unscaled where possible, hard-edged:
        it always fits, so a sample never fails on an awkward photo (a
        panorama, a tiny image, a range no object reaches)."""
        top, left, rect_h, rect_w = self._rectangle(host.shape[:2], rng, host_path)
        region = np.zeros(host.shape[:2], dtype=bool)
        region[top : top + rect_h, left : left + rect_w] = True
        if kind == "inpaint":
            return self._fill(host, region, rng)
        if kind == "splice":
            assert donor is not None  # internal: generate() passes the donor for splices
            source = donor
            # Enlarge the donor only as far as needed to cover the rectangle.
            scale = max(1.0, rect_w / donor.shape[1], rect_h / donor.shape[0])
        else:
            source, scale = host, 1.0
        src_y = int(rng.integers(0, int(source.shape[0] - rect_h / scale) + 1))
        src_x = int(rng.integers(0, int(source.shape[1] - rect_w / scale) + 1))
        if kind == "copy_move" and (src_y, src_x) == (top, left):
            # Landed on itself: copy from the mirrored position, or from the
            # edge when the rectangle is centred (an area share <= 0.5 leaves
            # room along at least one axis).
            src_y, src_x = host.shape[0] - rect_h - top, host.shape[1] - rect_w - left
            if (src_y, src_x) == (top, left):
                src_y, src_x = (src_y, 0) if left > 0 else (0, src_x)
        matrix = np.array([[scale, 0.0, left - scale * src_x], [0.0, scale, top - scale * src_y]])
        return composite(host, source, Placement(matrix=matrix, mask=region), 0.0, 0.0)

    # -- public ----------------------------------------------------------

    def _final_quality(self, rng: np.random.Generator, donor_quality: int | None) -> int | None:
        """Final JPEG quality (or None), kept ``min_jpeg_quality_gap`` away from the donor's."""
        cfg = self._config
        if rng.random() >= cfg.p_final_jpeg:
            return None
        low, high = cfg.final_jpeg_quality_range
        quality = int(rng.integers(low, high + 1))
        gap = cfg.min_jpeg_quality_gap
        if donor_quality is not None and abs(quality - donor_quality) < gap:
            if donor_quality + gap <= high:
                quality = donor_quality + gap
            elif donor_quality - gap >= low:
                quality = donor_quality - gap
        return quality

    def _draw_kind(self, rng: np.random.Generator) -> str:
        """One of MANIPULATIONS, by the configured weights."""
        weights = self._config.weights
        return MANIPULATIONS[int(rng.choice(len(MANIPULATIONS), p=weights / weights.sum()))]

    def _forge(
        self,
        kind: str,
        host: np.ndarray,
        host_path: Path,
        labels: list[np.ndarray],
        donor: np.ndarray | None,
        donor_labels: list[np.ndarray],
        rng: np.random.Generator,
    ) -> Forgery:
        """Random attempts at ``kind`` until one lands in ``area_range``, else the rectangle fallback."""
        low, high = self._config.area_range
        for _ in range(self._config.max_attempts):
            if kind == "splice":
                forgery = self._splice(host, donor, donor_labels, rng)
            elif kind == "copy_move":
                forgery = self._copy_move(host, labels, rng)
            else:
                forgery = self._inpaint(host, labels, rng)
            if forgery is not None and forgery.mask.any() and low <= forgery.mask.mean() <= high:
                return forgery
        return self._fallback(kind, host, host_path, donor, rng)

    def generate(self, index: int, rng: np.random.Generator) -> SyntheticSample:
        """Makes one sample from photo ``index % len(self)``.

        Args:
            index: Selects the host photo (wraps around the pool), >= 0.
            rng: Source of all randomness; same state, same sample.

        Returns:
            The sample; a forgery's mask is non-empty with its forged share
            in ``config.area_range``.

        Raises:
            ValueError: if ``index`` is negative, or a photo or segmentation
                file cannot be read (the message names it).
            ValueError: also if the photo is too small for any rectangle
                within ``config.area_range``.
        """
        if index < 0:
            raise ValueError(f"index must be >= 0, got {index}")
        cfg = self._config
        host_index = index % len(self._photos)
        host_path = self._photos[host_index]
        host, labels = self._load(host_path)
        if rng.random() < cfg.p_authentic:
            quality = self._final_quality(rng, None)
            image = jpeg_compress(host, quality) if quality is not None else host
            return SyntheticSample(image, np.zeros(host.shape[:2], bool), "authentic", host_path, None)

        kind = self._draw_kind(rng)
        donor_path: Path | None = None
        donor: np.ndarray | None = None
        donor_labels: list[np.ndarray] = []
        donor_quality: int | None = None
        if kind == "splice":
            donor_path, donor, donor_labels, donor_quality = self._donor(host_index, rng)
        forgery = self._forge(kind, host, host_path, labels, donor, donor_labels, rng)
        quality = self._final_quality(rng, donor_quality)
        image = jpeg_compress(forgery.image, quality) if quality is not None else forgery.image
        return SyntheticSample(image, forgery.mask, kind, host_path, donor_path)
