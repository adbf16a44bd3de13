"""Training augmentations of the paper (method.md, section 3).

Random down-scaling, flips and 90-degree rotations, colour jitter, Gaussian
blur, Gaussian noise and JPEG re-compression, on a numpy ``uint8`` image and
its boolean mask. Geometric operations move both; photometric ones touch the
image only, so the mask stays aligned with the forged pixels.

Randomness is drawn once, up front, by :func:`sample_augment_params`, always
the same number of draws in the same order whatever the probabilities: two
configurations that differ only in their photometric probabilities apply
exactly the same geometry for the same generator state (a test relies on
this), and a logged :class:`AugmentParams` replays a sample exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import cv2
import numpy as np

__all__ = [
    "AugmentConfig",
    "AugmentParams",
    "Augmented",
    "apply_augment",
    "augment",
    "jpeg_compress",
    "sample_augment_params",
]


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and strengths of the training augmentations."""

    p_downscale: float = 0.3  # chance to shrink the image (resampling traces, lost detail)
    downscale_range: tuple[float, float] = (0.5, 1.0)  # per-side scale factor, within (0, 1]
    p_hflip: float = 0.5  # chance of a left-right flip
    p_vflip: float = 0.5  # chance of an up-down flip
    p_rot90: float = 0.5  # chance of a rotation by 90, 180 or 270 degrees (equally likely)
    p_color: float = 0.5  # chance of brightness/contrast/saturation jitter
    brightness: float = 0.2  # brightness factor drawn from [1 - b, 1 + b]
    contrast: float = 0.2  # contrast factor drawn from [1 - c, 1 + c]
    saturation: float = 0.2  # saturation factor drawn from [1 - s, 1 + s]
    p_blur: float = 0.2  # chance of a Gaussian blur
    blur_sigma_range: tuple[float, float] = (0.3, 1.5)  # blur sigma in pixels
    p_noise: float = 0.2  # chance of additive Gaussian noise
    noise_sigma_range: tuple[float, float] = (1.0, 8.0)  # noise sigma in [0, 255] units
    p_jpeg: float = 0.5  # chance of JPEG re-compression, applied last (as a camera/editor would)
    jpeg_quality_range: tuple[int, int] = (50, 95)  # JPEG quality, inclusive bounds

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name.startswith("p_") and not 0.0 <= value <= 1.0:
                raise ValueError(f"AugmentConfig.{field.name} must be in [0, 1], got {value}")
            if field.name.endswith("_range") and (len(value) != 2 or value[0] > value[1]):
                raise ValueError(
                    f"AugmentConfig.{field.name} must be (low, high) with low <= high, got {value}"
                )
        if not 0.0 < self.downscale_range[0] <= self.downscale_range[1] <= 1.0:
            raise ValueError(f"AugmentConfig.downscale_range must lie in (0, 1], got {self.downscale_range}")
        for name in ("brightness", "contrast", "saturation"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"AugmentConfig.{name} must be in [0, 1), got {getattr(self, name)}")
        if self.blur_sigma_range[0] <= 0.0 or self.noise_sigma_range[0] < 0.0:
            raise ValueError(
                f"AugmentConfig sigmas must be positive, got blur {self.blur_sigma_range}, "
                f"noise {self.noise_sigma_range}"
            )
        if not 1 <= self.jpeg_quality_range[0] <= self.jpeg_quality_range[1] <= 100:
            raise ValueError(
                f"AugmentConfig.jpeg_quality_range must lie in [1, 100], got {self.jpeg_quality_range}"
            )


@dataclass(frozen=True)
class AugmentParams:
    """One concrete draw of augmentation parameters; ``None`` = operation off."""

    downscale: float | None  # per-side scale factor
    hflip: bool  # flip left-right
    vflip: bool  # flip up-down
    rot90: int  # quarter turns counter-clockwise, 0..3
    color: tuple[float, float, float] | None  # brightness, contrast, saturation factors
    blur_sigma: float | None  # Gaussian blur sigma in pixels
    noise_sigma: float | None  # noise sigma in [0, 255] units
    noise_seed: int  # seeds the noise field, so the params alone replay it
    jpeg_quality: int | None  # JPEG quality 1..100


@dataclass(frozen=True)
class Augmented:
    """An augmented image with its aligned mask."""

    image: np.ndarray  # [H', W', 3] uint8 RGB
    mask: np.ndarray  # [H', W'] bool, True = forged


def sample_augment_params(rng: np.random.Generator, config: AugmentConfig) -> AugmentParams:
    """Draws one set of augmentation parameters.

    Args:
        rng: Source of randomness; advanced by a fixed number of draws.
        config: Probabilities and ranges.

    Returns:
        The parameters to pass to :func:`apply_augment`.
    """
    u = rng.random(8)
    scale = float(rng.uniform(*config.downscale_range))
    turns = int(rng.integers(1, 4))
    strengths = np.array([config.brightness, config.contrast, config.saturation])
    jitter = 1.0 + rng.uniform(-1.0, 1.0, size=3) * strengths
    blur_sigma = float(rng.uniform(*config.blur_sigma_range))
    noise_sigma = float(rng.uniform(*config.noise_sigma_range))
    noise_seed = int(rng.integers(0, 2**63 - 1))
    quality = int(rng.integers(config.jpeg_quality_range[0], config.jpeg_quality_range[1] + 1))
    return AugmentParams(
        downscale=scale if u[0] < config.p_downscale and scale < 1.0 else None,
        hflip=bool(u[1] < config.p_hflip),
        vflip=bool(u[2] < config.p_vflip),
        rot90=turns if u[3] < config.p_rot90 else 0,
        color=(float(jitter[0]), float(jitter[1]), float(jitter[2])) if u[4] < config.p_color else None,
        blur_sigma=blur_sigma if u[5] < config.p_blur else None,
        noise_sigma=noise_sigma if u[6] < config.p_noise else None,
        noise_seed=noise_seed,
        jpeg_quality=quality if u[7] < config.p_jpeg else None,
    )


def jpeg_compress(image: np.ndarray, quality: int) -> np.ndarray:
    """JPEG-encodes and decodes an image in memory.

    Args:
        image: [H, W, 3] ``uint8`` RGB.
        quality: JPEG quality, 1..100.

    Returns:
        [H, W, 3] ``uint8`` RGB carrying the compression artefacts.

    Raises:
        ValueError: if ``quality`` is outside 1..100.
    """
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    ok, encoded = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # only on an encoder failure, which valid uint8 input never causes
        raise RuntimeError("OpenCV failed to JPEG-encode an image")
    return np.ascontiguousarray(cv2.imdecode(encoded, cv2.IMREAD_COLOR)[:, :, ::-1])


def _color_jitter(image: np.ndarray, brightness: float, contrast: float, saturation: float) -> np.ndarray:
    """Scales brightness, contrast around the mean luma, and saturation around the pixel's gray."""
    img = image.astype(np.float32) * brightness
    luma = img @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    img = (img - luma.mean()) * contrast + luma.mean()
    gray = (img @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[:, :, None]
    img = gray + (img - gray) * saturation
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def apply_augment(image: np.ndarray, mask: np.ndarray, params: AugmentParams) -> Augmented:
    """Applies drawn augmentation parameters to an image and its mask.

    Order: down-scale, flips, rotation (geometric, image and mask), then
    colour, blur, noise, JPEG (image only). JPEG comes last because a forged
    image is saved after any other processing.

    Args:
        image: [H, W, 3] ``uint8`` RGB.
        mask: [H, W] ``bool``, True = forged.
        params: From :func:`sample_augment_params`.

    Returns:
        The augmented pair; the shape changes under down-scaling and swaps
        H/W under odd quarter turns.

    Raises:
        ValueError: if the image is not [H, W, 3] ``uint8`` or the mask is
            not a ``bool`` array of shape [H, W].
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be [H, W, 3] uint8, got {image.shape} {image.dtype}")
    if mask.dtype != np.bool_ or mask.shape != image.shape[:2]:
        raise ValueError(f"mask must be bool of shape {image.shape[:2]}, got {mask.shape} {mask.dtype}")

    if params.downscale is not None:
        height, width = image.shape[:2]
        dsize = (max(1, round(width * params.downscale)), max(1, round(height * params.downscale)))
        image = cv2.resize(image, dsize, interpolation=cv2.INTER_AREA)
        # Area-averaging the mask too makes a pixel forged when most of its
        # footprint was, matching the area-averaged image pixel.
        mask = cv2.resize(mask.astype(np.float32), dsize, interpolation=cv2.INTER_AREA) > 0.5
    if params.hflip:
        image, mask = image[:, ::-1], mask[:, ::-1]
    if params.vflip:
        image, mask = image[::-1], mask[::-1]
    if params.rot90:
        image, mask = np.rot90(image, params.rot90), np.rot90(mask, params.rot90)
    image = np.ascontiguousarray(image)
    mask = np.ascontiguousarray(mask)

    if params.color is not None:
        image = _color_jitter(image, *params.color)
    if params.blur_sigma is not None:
        image = cv2.GaussianBlur(image, (0, 0), params.blur_sigma)
    if params.noise_sigma is not None:
        noise = np.random.default_rng(params.noise_seed).normal(0.0, params.noise_sigma, image.shape)
        image = np.clip(np.rint(image + noise), 0, 255).astype(np.uint8)
    if params.jpeg_quality is not None:
        image = jpeg_compress(image, params.jpeg_quality)
    return Augmented(image=image, mask=mask)


def augment(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> Augmented:
    """Draws parameters from ``rng`` and applies them (see :func:`apply_augment`).

    Args:
        image: [H, W, 3] ``uint8`` RGB.
        mask: [H, W] ``bool``, True = forged.
        rng: Source of randomness; the result is a function of its state.
        config: Probabilities and ranges.

    Returns:
        The augmented pair.
    """
    return apply_augment(image, mask, sample_augment_params(rng, config))
