"""Tiny generated photos and forgeries for tests that do not need real content.

Deterministic from a seed, numpy + OpenCV only. A photo is a smooth colour
gradient, low-frequency "lighting" and "texture" noise at several scales, a
few filled shapes (ellipses, polygons, rectangles) each with its own colour
and grain, fine sensor noise and a light blur, saved as JPEG: it has edges,
flat areas and texture, so clustering, JPEG and calibration code see
something photo-like rather than white noise. A forgery is a host photo with
an object-shaped region pasted from another generated photo (a smoothed
random blob, 5-25 % of the image, lightly feathered); its mask is an 8-bit
PNG, 255 = forged, with the image's stem (the layout of the shared data).

``write_sample_data`` mirrors the shared data's layout (``natural/bsds500``,
``real-samples/images`` + ``masks``) and its file-name prefixes (``test_*``
photos, ``casia2_*`` forgeries), so a test written against ``shared_data``
can run unchanged on generated data when its point does not depend on real
content. Run as a script to write a set somewhere and look at it:

    python tests/make_fixtures.py /tmp/focal-fixtures
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import cv2
import numpy as np

SEED = 20240607
# (height, width): BSDS500's two orientations, scaled down, plus a square and an odd size.
SIZES = ((214, 320), (320, 214), (240, 240), (181, 263))


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int, channels: int = 1) -> np.ndarray:
    """Noise with features about ``cell`` pixels wide, in [-1, 1]."""
    gh, gw = max(2, h // cell + 2), max(2, w // cell + 2)
    coarse = rng.uniform(-1.0, 1.0, size=(gh, gw, channels)).astype(np.float32)
    out = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(out.reshape(h, w, channels), -1.0, 1.0)


def synthetic_photo(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """One natural-looking ``[height, width, 3]`` uint8 RGB photo."""
    h, w = height, width
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # A sky-to-ground style gradient between two random colours, at a random angle.
    angle = rng.uniform(0, np.pi)
    t = (np.cos(angle) * xx / w + np.sin(angle) * yy / h)
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    c0, c1 = rng.uniform(30, 225, size=(2, 3)).astype(np.float32)
    img = c0 + t[..., None] * (c1 - c0)
    # Lighting and texture at several scales.
    img += 35.0 * _smooth_noise(rng, h, w, max(h, w) // 3)
    img += 18.0 * _smooth_noise(rng, h, w, 24, 3)
    img += 10.0 * _smooth_noise(rng, h, w, 6, 3)
    # A few objects, each with its own colour and grain.
    for _ in range(int(rng.integers(3, 7))):
        layer = np.zeros((h, w), np.uint8)
        kind = rng.integers(3)
        cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
        if kind == 0:
            axes = (int(rng.integers(8, max(9, w // 3))), int(rng.integers(8, max(9, h // 3))))
            cv2.ellipse(layer, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
        elif kind == 1:
            r = rng.uniform(10, max(h, w) / 4)
            angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 8))))
            pts = np.stack([cx + r * rng.uniform(0.5, 1.0, angles.size) * np.cos(angles),
                            cy + r * rng.uniform(0.5, 1.0, angles.size) * np.sin(angles)], 1)
            cv2.fillPoly(layer, [pts.astype(np.int32)], 255)
        else:
            x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
            x1, y1 = x0 + int(rng.integers(10, w // 2)), y0 + int(rng.integers(10, h // 2))
            cv2.rectangle(layer, (x0, y0), (x1, y1), 255, -1)
        alpha = cv2.GaussianBlur(layer.astype(np.float32) / 255.0, (0, 0), float(rng.uniform(0.6, 2.0)))[..., None]
        colour = rng.uniform(0, 255, size=3).astype(np.float32)
        grain = float(rng.uniform(5, 30)) * _smooth_noise(rng, h, w, int(rng.integers(3, 12)), 3)
        img = img * (1 - alpha) + (colour + grain) * alpha
    img += rng.normal(0.0, 3.0, size=img.shape).astype(np.float32)  # sensor noise
    img = cv2.GaussianBlur(img, (0, 0), 0.7)
    return np.clip(img, 0, 255).astype(np.uint8)


def blob_mask(rng: np.random.Generator, height: int, width: int,
              area: tuple[float, float] = (0.05, 0.25)) -> np.ndarray:
    """An object-shaped ``[height, width]`` bool region covering ``area`` of the image."""
    for _ in range(50):
        field = _smooth_noise(rng, height, width, max(8, min(height, width) // 4))[..., 0]
        cy, cx = rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width
        yy, xx = np.mgrid[0:height, 0:width]
        r = np.hypot((yy - cy) / height, (xx - cx) / width)
        score = field - 4.0 * r  # a lump around the centre with a wavy outline
        share = rng.uniform(*area)
        mask = score > np.quantile(score, 1.0 - share)
        n, lab = cv2.connectedComponents(mask.astype(np.uint8))
        if n > 2:  # keep the largest piece
            sizes = np.bincount(lab.ravel())[1:]
            mask = lab == 1 + int(np.argmax(sizes))
        if area[0] <= mask.mean() <= area[1]:
            return mask
    raise RuntimeError("no blob in the area range")  # pragma: no cover


def synthetic_forgery(rng: np.random.Generator, host: np.ndarray, donor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``host`` with a blob of ``donor`` pasted in: (image uint8 RGB, mask uint8 255 = forged)."""
    h, w = host.shape[:2]
    donor = cv2.resize(donor, (w, h), interpolation=cv2.INTER_AREA)
    mask = blob_mask(rng, h, w)
    # Paste from elsewhere in the donor: a shifted copy, so the region is not aligned with its source.
    shift = (int(rng.integers(-w // 4, w // 4 + 1)), int(rng.integers(-h // 4, h // 4 + 1)))
    donor = np.roll(donor, shift, axis=(1, 0))
    alpha = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 0.8)[..., None]
    alpha = np.where(mask[..., None], np.maximum(alpha, 0.5), alpha)
    out = host.astype(np.float32) * (1 - alpha) + donor.astype(np.float32) * alpha
    return np.clip(out, 0, 255).astype(np.uint8), (mask * 255).astype(np.uint8)


def _write_jpeg(path: Path, rgb: np.ndarray, quality: int = 90) -> Path:
    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality]):
        raise OSError(f"could not write {path}")
    return path


def write_photos(folder: Path, count: int = 8, seed: int = SEED, prefix: str = "test_") -> list[Path]:
    """``count`` JPEG photos ``{prefix}NNN.jpg`` in ``folder``, cycling through ``SIZES``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    return [_write_jpeg(folder / f"{prefix}{i:03d}.jpg", synthetic_photo(rng, *SIZES[i % len(SIZES)]))
            for i in range(count)]


def write_forgeries(folder: Path, count: int = 6, seed: int = SEED + 1, prefix: str = "casia2_") -> list[Path]:
    """``count`` forgeries in ``folder/images`` (JPEG, and PNG for every third) with masks in ``folder/masks``."""
    images, masks = folder / "images", folder / "masks"
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        size = SIZES[(i + 1) % len(SIZES)]
        host, donor = synthetic_photo(rng, *size), synthetic_photo(rng, *SIZES[i % len(SIZES)])
        image, mask = synthetic_forgery(rng, host, donor)
        stem = f"{prefix}{i:03d}"
        if i % 3 == 2:
            path = images / f"{stem}.png"
            cv2.imwrite(str(path), image[:, :, ::-1])
        else:
            path = _write_jpeg(images / f"{stem}.jpg", image, quality=int(rng.integers(80, 96)))
        cv2.imwrite(str(masks / f"{stem}.png"), mask)
        out.append(path)
    return out


def texture(seed: int, size: int = 256) -> np.ndarray:
    """A ``[size, size, 3]`` uint8 RGB texture with no repeats: noise smoothed at several scales.

    The copy-move search's test image (as ``tests/runtime/test_copymove.py`` builds it): textured
    everywhere, so every cell has a descriptor worth matching and only a pasted copy matches closely.
    """
    rng = np.random.default_rng(seed)
    grey = np.zeros((size, size), np.float32)
    for sigma, weight in ((1.0, 40.0), (3.0, 60.0), (8.0, 80.0)):
        grey += weight * cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), sigma)
    grey = np.clip(128 + grey, 0, 255).astype(np.uint8)
    return np.dstack([grey, np.roll(grey, 3, axis=1), grey // 2 + 60])


def copy_moved_texture(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A 256 x 256 :func:`texture` with a 60 x 60 block copied 130 px away, and the truth.

    Returns:
        ``(image, truth)``: ``[256, 256, 3]`` uint8 RGB, and ``[256, 256]`` bool, True on the source
        and the target.
    """
    image = texture(seed)
    image[150:210, 140:200] = image[30:90, 20:80]
    truth = np.zeros(image.shape[:2], bool)
    truth[150:210, 140:200] = truth[30:90, 20:80] = True
    return image, truth


def jpeg_bytes(rgb: np.ndarray, quality: int) -> bytes:
    """``[H, W, 3]`` uint8 RGB encoded as a JPEG file by OpenCV's libjpeg at ``quality`` (IJG scale)."""
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"could not encode a {rgb.shape} image as JPEG")
    return buf.tobytes()


def decode_rgb(data: bytes) -> np.ndarray:
    """An encoded file's ``[H, W, 3]`` uint8 RGB pixels, as OpenCV decodes it (EXIF orientation applied)."""
    return np.ascontiguousarray(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1])


def sample_photos() -> list[np.ndarray]:
    """scikit-learn's two sample photos (``china.jpg``, ``flower.jpg``), ``[427, 640, 3]`` uint8 RGB each.

    Real photos shipped inside the scikit-learn wheel (a test dependency; nothing is downloaded): the
    double-JPEG cue needs a real photo's DCT statistics, which the generated photos above do not have.
    """
    from sklearn import datasets  # the test extra; imported here so the generators above need only OpenCV

    return [np.ascontiguousarray(p) for p in datasets.load_sample_images().images]


def double_jpeg_splice(photos: list[np.ndarray], q1: int = 60, q2: int = 90) -> tuple[bytes, np.ndarray]:
    """A splice that missed the first JPEG compression: the double-JPEG cue's test file.

    The host ``photos[0]`` saved at quality ``q1``, a disk (radius 90 px at x 420, y 200) of
    ``photos[1]`` (never compressed) pasted in, the whole saved again at ``q2``.

    Returns:
        ``(data, truth)``: the JPEG file's bytes, and ``[H, W]`` bool, True on the pasted disk.
    """
    host = decode_rgb(jpeg_bytes(photos[0], q1))
    truth = np.zeros(host.shape[:2], np.uint8)
    cv2.circle(truth, (420, 200), 90, 1, -1)
    host[truth > 0] = photos[1][truth > 0]
    return jpeg_bytes(host, q2), truth > 0


def with_exif_orientation(data: bytes, orientation: int) -> bytes:
    """``data`` (a JPEG file) with an EXIF APP1 segment after SOI: little-endian TIFF, one IFD0 entry, Orientation."""
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1)
    tiff += struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    payload = b"Exif\x00\x00" + tiff
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + data[2:]


def write_double_jpeg_cases(folder: Path) -> dict[str, Path]:
    """The double-JPEG cue's four answers as files in ``folder``, built from :func:`sample_photos`.

    Returns:
        ``{"splice": splice.jpg`` (:func:`double_jpeg_splice`: a region found), ``"turned": turned.jpg``
        (the same file with EXIF orientation 6: found, on the turned picture), ``"twice": twice.jpg``
        (an untouched photo saved at 50 and again at 90: double compression, no region), ``"plain":
        plain.png`` (a photo shrunk to 3/4, which wipes the block grid its JPEG left, saved as PNG: no JPEG
        header and no grid of its own, so no evidence)``}``.
    """
    photos = sample_photos()
    folder.mkdir(parents=True, exist_ok=True)
    splice, _ = double_jpeg_splice(photos)
    blobs = {"splice.jpg": splice, "turned.jpg": with_exif_orientation(splice, 6),
             "twice.jpg": jpeg_bytes(decode_rgb(jpeg_bytes(photos[0], 50)), 90),
             "plain.png": cv2.imencode(".png", cv2.resize(photos[1][:, :, ::-1], (480, 320),
                                                          interpolation=cv2.INTER_AREA))[1].tobytes()}
    out = {}
    for name, data in blobs.items():
        (folder / name).write_bytes(data)
        out[name.split(".")[0]] = folder / name
    return out


def write_sample_data(root: Path, seed: int = SEED) -> Path:
    """A generated stand-in for the shared data folder: ``natural/bsds500`` photos and ``real-samples`` forgeries."""
    write_photos(root / "natural" / "bsds500", count=8, seed=seed)
    write_forgeries(root / "real-samples", count=6, seed=seed + 1)
    return root


if __name__ == "__main__":  # pragma: no cover
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "focal-fixtures")
    write_sample_data(target)
    print(f"wrote {target}")
