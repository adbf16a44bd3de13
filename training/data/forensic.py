"""Forgeries that carry camera traces: host and pasted region from different pipelines.

:class:`TraceForgeryGenerator` makes the same manipulations as
:class:`~.synthetic.SyntheticForgeryGenerator` (splice, copy-move,
inpainting), on samples whose pixels went through simulated cameras
(:mod:`.camera`):

- every photo is first shrunk by ``scene_downscale_range`` (area averaging),
  which erases its own sensor, demosaicing and JPEG traces, and a square
  crop of ``crop`` pixels is cut from it: samples keep their native
  resolution, so training needs no resize;
- the host is rendered through one drawn pipeline; a splice's donor
  through another that :meth:`~.camera.Pipeline.differs_from` it;
- copy-moves, their rotation and scaling, and inpainting act on the rendered
  pixels, so interpolation traces survive;
- authentic samples go through the same rendering and final save, so "was
  processed" is never the cue; only a difference inside the image is;
- the final save is a JPEG on the host's grid with ``p_final_jpeg``: a
  splice's region then holds a double JPEG whose first grid is misaligned;
- with ``p_reprocess``, a forgery is instead a region of the *same* scene
  rendered through another camera and put back in place: the content runs
  on across the edge and only the traces change, so "another object" (what
  an untouched photo's objects also are) cannot be the cue.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from focal.runtime._headers import declared_size

from .camera import CameraConfig, Pipeline, draw_pipeline, jpeg_at_offset, render
from .io import DEFAULT_MAX_PIXELS
from .manipulations import Placement, composite
from .regions import pick_segment, random_polygon_mask
from .synthetic import SyntheticConfig, SyntheticForgeryGenerator, SyntheticSample

__all__ = ["TraceConfig", "TraceForgeryGenerator", "photos_for_crop"]


@dataclass(frozen=True)
class TraceConfig:
    """Scene preparation and cameras of trace-carrying forgeries."""

    crop: int = 256  # side of the square samples, pixels (native resolution: no resize afterwards)
    scene_downscale_range: tuple[float, float] = (2.0, 4.0)  # how much a photo is shrunk to erase its traces
    min_scene_downscale: float = 1.25  # a camera that downsizes keeps the size where the scene would shrink less
    camera: CameraConfig = CameraConfig()  # ranges the cameras are drawn from
    max_pipeline_draws: int = 10  # draws of a donor camera until one differs from the host's
    # Share of forgeries that are a region of the host's own scene through another camera, put back in
    # place (kind "reprocess"): the content is continuous, only the traces differ.
    p_reprocess: float = 0.0

    def __post_init__(self) -> None:
        if self.crop < 32:
            raise ValueError(f"TraceConfig.crop must be >= 32, got {self.crop}")
        if not 0.0 <= self.p_reprocess <= 1.0:
            raise ValueError(f"TraceConfig.p_reprocess must lie in [0, 1], got {self.p_reprocess}")
        low, high = self.scene_downscale_range
        if not 1.0 <= self.min_scene_downscale <= low <= high:
            raise ValueError(
                "TraceConfig needs 1 <= min_scene_downscale <= scene_downscale_range[0] <= [1], "
                f"got {self.min_scene_downscale} and {self.scene_downscale_range}"
            )


class TraceForgeryGenerator(SyntheticForgeryGenerator):
    """Synthetic forgeries whose host and region differ in camera traces.

    Args:
        photos: Untouched photos (hosts and donors).
        config: Manipulations (as for :class:`SyntheticForgeryGenerator`;
            its ``max_side`` is ignored: scenes are sized by ``trace``).
        segmentation_dir: Optional BSDS500 ``.mat`` folder (object shapes).
        trace: Scene sizes and camera ranges.
        max_pixels: Decompression-bomb limit per photo.

    Raises:
        ValueError: as :class:`SyntheticForgeryGenerator`, and when a photo
            is smaller than one ``crop``.
    """

    def __init__(
        self,
        photos: Sequence[str | Path],
        config: SyntheticConfig = SyntheticConfig(),
        segmentation_dir: str | Path | None = None,
        trace: TraceConfig = TraceConfig(),
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        # Photos load at full size: the scene's own shrink replaces max_side.
        super().__init__(photos, replace(config, max_side=None), segmentation_dir, max_pixels)
        self._trace = trace
        self._shapes: dict[Path, tuple[int, int]] = {}

    @property
    def trace(self) -> TraceConfig:
        """The scene and camera settings."""
        return self._trace

    def _scene(
        self, path: Path, rng: np.random.Generator, extra: float = 1.0
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """A trace-free square crop of a photo, ``crop * extra`` pixels, with its label maps cropped alike."""
        photo, labels = self._load(path)
        side = self._side(extra)
        low, high = self._trace.scene_downscale_range
        largest = min(photo.shape[:2]) / side  # the shrink that still leaves one crop
        if largest < 1.0:
            raise ValueError(f"{path}: {photo.shape[1]} x {photo.shape[0]} is smaller than a {side}-pixel scene "
                             "(TraceConfig.crop)")
        # A photo too small for the wanted shrink is shrunk as far as it allows:
        # fewer of its own traces are erased, but it still yields a crop.
        low = min(low, largest)
        factor = float(rng.uniform(low, min(high, largest)))
        size = (max(side, round(photo.shape[1] / factor)), max(side, round(photo.shape[0] / factor)))
        scene = cv2.resize(photo, size, interpolation=cv2.INTER_AREA)
        top = int(rng.integers(0, size[1] - side + 1))
        left = int(rng.integers(0, size[0] - side + 1))
        window = (slice(top, top + side), slice(left, left + side))
        crops = [_crop_labels(m, size, window) for m in labels]
        return np.ascontiguousarray(scene[window]), crops

    def _side(self, extra: float) -> int:
        """Scene side for a camera that shrinks by ``1 / extra``."""
        return int(np.ceil(self._trace.crop * extra))

    def _photo_shape(self, path: Path) -> tuple[int, int]:
        """(H, W) of a photo, from its header where it can be read (no decode), once per path."""
        if path not in self._shapes:
            try:
                width, height = declared_size(path.read_bytes())
                self._shapes[path] = (height, width)
            except (OSError, ValueError):
                self._shapes[path] = self._load(path)[0].shape[:2]
        return self._shapes[path]

    def _camera(self, rng: np.random.Generator, unlike: Pipeline | None = None) -> Pipeline:
        """A drawn pipeline; with ``unlike``, one that leaves other traces."""
        pipeline = draw_pipeline(rng, self._trace.camera)
        for _ in range(self._trace.max_pipeline_draws):
            if unlike is None or pipeline.differs_from(unlike):
                break
            pipeline = draw_pipeline(rng, self._trace.camera)
        return pipeline

    def _rendered(
        self, path: Path, rng: np.random.Generator, unlike: Pipeline | None = None
    ) -> tuple[np.ndarray, list[np.ndarray], Pipeline, Callable[[np.random.Generator], np.ndarray]]:
        """A photo's scene through a drawn camera, cropped back to ``crop`` pixels, and a function
        that renders the same scene and crop through another camera of the same output scale."""
        camera = self._camera(rng, unlike)
        # A camera that downsizes needs a larger scene to still fill a crop;
        # on a photo too small for that it keeps its size instead.
        extra = 1.0 / camera.resample if camera.resample is not None and camera.resample < 1.0 else 1.0
        if extra > 1.0 and min(self._photo_shape(path)) / self._side(extra) < self._trace.min_scene_downscale:
            camera, extra = replace(camera, resample=None), 1.0
        scene, labels = self._scene(path, rng, extra)
        image = render(scene, camera, rng)
        crop = self._trace.crop
        top = int(rng.integers(0, image.shape[0] - crop + 1))
        left = int(rng.integers(0, image.shape[1] - crop + 1))
        window = (slice(top, top + crop), slice(left, left + crop))
        labels = [_crop_labels(m, (image.shape[1], image.shape[0]), window) for m in labels]

        def again(rng: np.random.Generator) -> np.ndarray:
            # The host's output scale, so the two renderings line up pixel for pixel.
            other = render(scene, replace(self._camera(rng, unlike=camera), resample=camera.resample), rng)
            return np.ascontiguousarray(other[window])

        return np.ascontiguousarray(image[window]), labels, camera, again

    def _reprocess(self, host: np.ndarray, other: np.ndarray, labels: list[np.ndarray],
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``other``'s pixels in one region of ``host`` (the same scene through another camera), pasted
        in place on a feathered edge as every paste is (:func:`~.manipulations.composite`, mask =
        feathered alpha > 0.5): ``(image [crop, crop, 3] uint8, mask [crop, crop] bool)``."""
        cfg = self._config
        target = float(rng.uniform(*cfg.area_range))
        region = None
        if labels and rng.random() < cfg.p_object_region:
            region = pick_segment(labels, rng, cfg.area_range, target_fraction=target)
        if region is None:
            region = random_polygon_mask(host.shape[:2], target, rng, cfg.polygon_vertices)
        in_place = Placement(matrix=np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), mask=region)
        forgery = composite(host, other, in_place, float(rng.uniform(*cfg.feather_sigma_range)))
        return forgery.image, forgery.mask

    def _save(self, image: np.ndarray, rng: np.random.Generator, camera: Pipeline) -> np.ndarray:
        """The editor's final save: a JPEG on the host's grid, or lossless."""
        quality = self._final_quality(rng, camera.jpeg_quality)
        return jpeg_at_offset(image, quality) if quality is not None else image

    def generate(self, index: int, rng: np.random.Generator) -> SyntheticSample:
        """Makes one ``crop x crop`` sample from photo ``index % len(self)``.

        Returns:
            The sample: ``image`` ``[crop, crop, 3]`` uint8 RGB, ``mask``
            ``[crop, crop]`` bool; a forgery's forged share lies in
            ``config.area_range``.
        """
        if index < 0:
            raise ValueError(f"index must be >= 0, got {index}")
        host_index = index % len(self._photos)
        host_path = self._photos[host_index]
        host, labels, camera, again = self._rendered(host_path, rng)
        if rng.random() < self._config.p_authentic:
            mask = np.zeros(host.shape[:2], bool)
            return SyntheticSample(self._save(host, rng, camera), mask, "authentic", host_path, None)
        # Drawn only where asked for, so a generator without it draws the same samples as before.
        if self._trace.p_reprocess > 0.0 and rng.random() < self._trace.p_reprocess:
            image, mask = self._reprocess(host, again(rng), labels, rng)
            return SyntheticSample(self._save(image, rng, camera), mask, "reprocess", host_path, None)
        kind = self._draw_kind(rng)
        donor_path, donor, donor_labels = None, None, []
        if kind == "splice":
            donor_index = int(rng.integers(len(self._photos) - 1))
            donor_index += donor_index >= host_index  # any photo but the host
            donor_path = self._photos[donor_index]
            donor, donor_labels, _, _ = self._rendered(donor_path, rng, unlike=camera)
        forgery = self._forge(kind, host, host_path, labels, donor, donor_labels, rng)
        return SyntheticSample(self._save(forgery.image, rng, camera), forgery.mask, kind, host_path, donor_path)


def photos_for_crop(photos: Sequence[str | Path], crop: int) -> tuple[list[Path], list[Path]]:
    """Splits photos into those that hold a ``crop``-pixel square and those that do not.

    Sizes come from the file headers (:func:`focal.runtime._headers.declared_size`),
    so nothing is decoded. A photo whose header cannot be read is kept: the
    generator reports it by name when it reads it.

    Returns:
        ``(usable, too_small)``, each in input order.
    """
    usable, small = [], []
    for path in map(Path, photos):
        try:
            width, height = declared_size(path.read_bytes())
        except (OSError, ValueError):
            usable.append(path)
            continue
        (usable if min(width, height) >= crop else small).append(path)
    return usable, small


def _crop_labels(labels: np.ndarray, size: tuple[int, int], window: tuple[slice, slice]) -> np.ndarray:
    """A label map resized (nearest) to ``size`` = (W, H), then cropped to ``window``."""
    resized = cv2.resize(labels.astype(np.uint16), size, interpolation=cv2.INTER_NEAREST)
    return resized[window].astype(labels.dtype)
