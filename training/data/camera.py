"""A camera-pipeline simulator: the traces that tell two sources apart.

Real splices are found by the traces a camera leaves in every pixel: the
colour filter array and its demosaicing, sensor noise, the tone curve,
sharpening, resampling and the JPEG 8 x 8 grid. A photo shrunk for training
has lost its own; this module renders a clean *scene* (a photo shrunk
enough to erase them) through a randomly drawn pipeline, so that a region
rendered through another pipeline carries traces its host does not.

Every draw comes from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import cv2
import numpy as np

__all__ = ["CFA_PATTERNS", "DEMOSAIC_METHODS", "CameraConfig", "Pipeline", "draw_pipeline", "jpeg_at_offset", "render"]

# The four Bayer phases, named by the top-left 2 x 2 block.
CFA_PATTERNS: tuple[str, ...] = ("RGGB", "BGGR", "GRBG", "GBRG")
DEMOSAIC_METHODS: tuple[str, ...] = ("bilinear", "edge", "vng")

# OpenCV names a Bayer pattern by the 2 x 2 block starting at the second row
# and second column, so its code for an "RGGB" sensor is BayerBG.
_OPENCV_BAYER = {"RGGB": "BG", "BGGR": "RG", "GRBG": "GB", "GBRG": "GR"}
_DEMOSAIC_SUFFIX = {"bilinear": "", "edge": "_EA", "vng": "_VNG"}
# Channel (R=0, G=1, B=2) sampled at each position of the 2 x 2 block.
_CFA_CHANNELS = {"RGGB": (0, 1, 1, 2), "BGGR": (2, 1, 1, 0), "GRBG": (1, 0, 2, 1), "GBRG": (1, 2, 0, 1)}


@dataclass(frozen=True)
class CameraConfig:
    """The ranges pipelines are drawn from."""

    shot_noise_range: tuple[float, float] = (1e-4, 4e-3)  # Poisson-like variance per unit of signal (log-uniform)
    read_noise_range: tuple[float, float] = (5e-4, 6e-3)  # Gaussian read-noise sigma in [0, 1] units (log-uniform)
    gamma_range: tuple[float, float] = (1.8, 2.6)  # display gamma of the tone curve
    contrast_range: tuple[float, float] = (0.0, 0.6)  # strength of an S-curve on top of the gamma
    sharpen_range: tuple[float, float] = (0.0, 1.2)  # unsharp-mask amount (0 = none)
    p_resample: float = 0.3  # chance the camera resizes its output (digital zoom, downsized JPEG)
    resample_range: tuple[float, float] = (0.6, 1.5)  # its scale factor
    p_jpeg: float = 0.85  # chance the camera saves a JPEG
    jpeg_quality_range: tuple[int, int] = (65, 98)  # inclusive camera JPEG quality range

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name.startswith("p_") and not 0.0 <= value <= 1.0:
                raise ValueError(f"CameraConfig.{field.name} must be in [0, 1], got {value}")
            if field.name.endswith("_range") and (len(value) != 2 or value[0] > value[1] or value[0] < 0):
                raise ValueError(f"CameraConfig.{field.name} must be (low, high) with 0 <= low <= high, got {value}")
        if not 1 <= self.jpeg_quality_range[0] <= self.jpeg_quality_range[1] <= 100:
            raise ValueError(f"CameraConfig.jpeg_quality_range must lie in 1..100, got {self.jpeg_quality_range}")


@dataclass(frozen=True)
class Pipeline:
    """One drawn camera: every setting that shapes its traces."""

    cfa: str  # one of CFA_PATTERNS
    demosaic: str  # one of DEMOSAIC_METHODS
    shot_noise: float  # variance per unit of linear signal
    read_noise: float  # sigma of additive noise, [0, 1] units
    gamma: float  # display gamma
    contrast: float  # S-curve strength in [0, 1]
    sharpen: float  # unsharp-mask amount
    resample: float | None  # output scale factor, None = none
    jpeg_quality: int | None  # camera JPEG quality, None = saved losslessly
    jpeg_offset: tuple[int, int]  # (dy, dx) in [0, 8): where its 8 x 8 grid starts

    def differs_from(self, other: Pipeline) -> bool:
        """True when the two leave distinguishable traces (another CFA phase,
        demosaicing, JPEG grid or quality, or noise level off by 1.5x)."""
        noise_ratio = max(self.read_noise, other.read_noise) / max(min(self.read_noise, other.read_noise), 1e-12)
        return (
            self.cfa != other.cfa
            or self.demosaic != other.demosaic
            or self.jpeg_offset != other.jpeg_offset
            or self.jpeg_quality != other.jpeg_quality
            or noise_ratio > 1.5
        )


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(np.exp(rng.uniform(np.log(bounds[0]), np.log(bounds[1]))))


def draw_pipeline(rng: np.random.Generator, cfg: CameraConfig = CameraConfig()) -> Pipeline:
    """Draws a random camera pipeline from ``cfg``'s ranges."""
    resample = float(rng.uniform(*cfg.resample_range)) if rng.random() < cfg.p_resample else None
    quality = None
    if rng.random() < cfg.p_jpeg:
        quality = int(rng.integers(cfg.jpeg_quality_range[0], cfg.jpeg_quality_range[1] + 1))
    return Pipeline(
        cfa=CFA_PATTERNS[int(rng.integers(len(CFA_PATTERNS)))],
        demosaic=DEMOSAIC_METHODS[int(rng.integers(len(DEMOSAIC_METHODS)))],
        shot_noise=_log_uniform(rng, cfg.shot_noise_range),
        read_noise=_log_uniform(rng, cfg.read_noise_range),
        gamma=float(rng.uniform(*cfg.gamma_range)),
        contrast=float(rng.uniform(*cfg.contrast_range)),
        sharpen=float(rng.uniform(*cfg.sharpen_range)),
        resample=resample,
        jpeg_quality=quality,
        jpeg_offset=(int(rng.integers(8)), int(rng.integers(8))),
    )


def _mosaic(linear: np.ndarray, cfa: str) -> np.ndarray:
    """``[H, W, 3]`` float -> ``[H, W]`` float: one colour sample per pixel."""
    raw = np.empty(linear.shape[:2], dtype=np.float32)
    for k, channel in enumerate(_CFA_CHANNELS[cfa]):
        dy, dx = divmod(k, 2)
        raw[dy::2, dx::2] = linear[dy::2, dx::2, channel]
    return raw


def _demosaic(raw: np.ndarray, cfa: str, method: str) -> np.ndarray:
    """``[H, W]`` float in [0, 1] -> ``[H, W, 3]`` float RGB, through OpenCV's demosaicing.

    OpenCV demosaics 8- or 16-bit data (VNG only 8-bit); 16 bits keep the
    noise that the sensor added, so 8-bit VNG is the only lossy case.
    """
    depth16 = method != "vng"
    scale = 65535.0 if depth16 else 255.0
    data = np.clip(np.rint(raw * scale), 0, scale).astype(np.uint16 if depth16 else np.uint8)
    code = getattr(cv2, f"COLOR_Bayer{_OPENCV_BAYER[cfa]}2RGB{_DEMOSAIC_SUFFIX[method]}")
    return cv2.cvtColor(data, code).astype(np.float32) / scale


def _tone(linear: np.ndarray, gamma: float, contrast: float) -> np.ndarray:
    """Linear [0, 1] -> display [0, 1]: gamma, then a smooth S-curve."""
    display = np.power(np.clip(linear, 0.0, 1.0), 1.0 / gamma)
    s_curve = display * display * (3.0 - 2.0 * display)
    return (1.0 - contrast) * display + contrast * s_curve


def _sharpen(image: np.ndarray, amount: float) -> np.ndarray:
    if amount <= 0.0:
        return image
    blurred = cv2.GaussianBlur(image, (0, 0), 1.0)
    return image + amount * (image - blurred)


def jpeg_at_offset(image: np.ndarray, quality: int, offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """JPEG round trip whose 8 x 8 grid starts at ``offset`` instead of (0, 0).

    The image is padded by ``offset`` rows/columns (edge-replicated) before
    encoding and cropped back after decoding: what a crop of a JPEG looks like.

    Args:
        image: ``[H, W, 3]`` uint8 RGB.
        quality: JPEG quality in 1..100.
        offset: ``(dy, dx)``, each in [0, 8).

    Returns:
        ``[H, W, 3]`` uint8 RGB.
    """
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    dy, dx = offset
    if not (0 <= dy < 8 and 0 <= dx < 8):
        raise ValueError(f"JPEG grid offset must be in [0, 8) x [0, 8), got {offset}")
    padded = cv2.copyMakeBorder(image, dy, 0, dx, 0, cv2.BORDER_REPLICATE) if dy or dx else image
    ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(padded[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # only on an encoder failure, which valid uint8 input never causes
        raise RuntimeError("OpenCV failed to JPEG-encode an image")
    decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR)[:, :, ::-1]
    return np.ascontiguousarray(decoded[dy:, dx:])


def render(scene: np.ndarray, pipeline: Pipeline, rng: np.random.Generator) -> np.ndarray:
    """Renders a clean scene through a camera pipeline.

    Args:
        scene: ``[H, W, 3]`` uint8 RGB, free of camera traces (a photo shrunk
            by 2x or more with area averaging), taken as display-referred.
        pipeline: The camera.
        rng: Source of the sensor noise.

    Returns:
        ``[H', W', 3]`` uint8 RGB; ``H' x W'`` is ``H x W`` unless the
        pipeline resamples.
    """
    # Undo a nominal display gamma so noise and mosaic act on linear light.
    linear = np.power(scene.astype(np.float32) / 255.0, 2.2)
    raw = _mosaic(linear, pipeline.cfa)
    variance = pipeline.shot_noise * raw + pipeline.read_noise**2
    raw = raw + rng.standard_normal(raw.shape, dtype=np.float32) * np.sqrt(variance).astype(np.float32)
    rgb = _demosaic(np.clip(raw, 0.0, 1.0), pipeline.cfa, pipeline.demosaic)
    display = _sharpen(_tone(rgb, pipeline.gamma, pipeline.contrast), pipeline.sharpen)
    image = np.clip(np.rint(display * 255.0), 0, 255).astype(np.uint8)
    if pipeline.resample is not None:
        h, w = image.shape[:2]
        size = (max(8, round(w * pipeline.resample)), max(8, round(h * pipeline.resample)))
        interpolation = cv2.INTER_AREA if pipeline.resample < 1.0 else cv2.INTER_CUBIC
        image = cv2.resize(image, size, interpolation=interpolation)
    if pipeline.jpeg_quality is not None:
        image = jpeg_at_offset(image, pipeline.jpeg_quality, pipeline.jpeg_offset)
    return image
