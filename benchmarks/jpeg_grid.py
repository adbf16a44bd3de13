"""The JPEG-grid test (`focal.runtime.jpeggrid`) on `focal-eval` datasets, and the fit of its settings.

``--data SPEC`` (repeatable): per dataset, the score's median / 90% / max over
authentic and over forged images, how many pass the threshold, the forged-class
IoU of the mask (0 where nothing passes) and how many masks overlap the truth
(IoU > 0.1), the median milliseconds per image, and the rows of the images
flagged. The grey plane is the file's as stored (``stored_gray``), as the
double-JPEG cue reads it.

``--calibrate PHOTOS`` fits the threshold, one per ``--zmax`` asked, on
untouched photos (use training-side photos: ``--exclude`` the held-out list):
the ``1 - alpha`` quantile (NumPy's ``"higher"``) of the score over each photo
as stored, a copy saved as JPEG twice (``double_jpeg.RESAVE_QUALITIES``) and a
copy cropped by a step that is not a multiple of 8, then saved as JPEG (its
old grid runs faintly through the whole picture: what the test must not
flag). Beside each fit, what it buys: the share of synthetic non-aligned
pastes flagged and their mean IoU, each a rectangle of another photo's JPEG
(quality 60-95, on its own grid) pasted off the host JPEG's grid (quality
60-95), saved as PNG or as JPEG at 85-100.

``--kernels`` (with ``--data``) times the zero counts and the per-cell test
(votes, windows, mask) instead: native against the NumPy reference, one
after the other on each picture (best of 3 each), the results checked equal.

Usage::

    .venv/bin/python benchmarks/jpeg_grid.py --calibrate ../shared/data/natural --exclude heldout.json --every 8 \
        --zmax 48 --zmax 52 --zmax 56 --zmax 63
    .venv/bin/python benchmarks/jpeg_grid.py --data ../shared/data/real-samples --data imd2020-all.json \
        --data heldout.json
    .venv/bin/python benchmarks/jpeg_grid.py --kernels --data ../shared/data/real-samples --data imd2020-all.json
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from focal._datasets import load_pairs
from focal._progress import Progress
from focal.evaluation.evaluate import truth_mask
from focal.evaluation.metrics import pixel_scores
from focal.runtime.doublejpeg import stored_gray
from focal.runtime.jpeggrid import JpegGridConfig, detect_jpeg_grid, grid_evidence, zero_counts

sys.path.insert(0, str(Path(__file__).resolve().parent))
from double_jpeg import _resaved, photo_list  # noqa: E402  (one home for the fit's photos and resaves)


def _jpeg(gray: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)


def null_planes(data: bytes, rng: np.random.Generator) -> list[np.ndarray]:
    """An untouched photo's grey planes as the test meets them: as stored, re-saved twice, and
    cropped off its grid then saved as JPEG."""
    photo = stored_gray(data)  # the plane the cue reads
    dy, dx = (int(v) for v in rng.integers(1, 8, 2))
    cropped = _jpeg(photo[dy:, dx:], int(rng.integers(70, 101)))
    return [photo, stored_gray(_resaved(data, rng)), cropped]


def synthetic_paste(host: np.ndarray, donor: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A non-aligned paste: ``donor``'s JPEG (on its own grid) into ``host``'s JPEG off the host's grid.

    Returns:
        ``[H, W]`` uint8 grey plane as saved (PNG, or JPEG at 85-100) and its ``[H, W]`` bool truth.
    """
    host = _jpeg(host, int(rng.integers(60, 96)))
    donor = _jpeg(donor, int(rng.integers(60, 96)))
    h, w = host.shape
    size = [int(rng.integers(64, max(65, min(h, w) // 2))) for _ in range(2)]
    size = [min(size[0], donor.shape[0] - 8), min(size[1], donor.shape[1] - 8)]
    sy, sx = (int(rng.integers(0, donor.shape[k] - size[k] + 1)) for k in (0, 1))
    while True:  # the paste's grid must not be the host's
        py, px = int(rng.integers(0, h - size[0] + 1)), int(rng.integers(0, w - size[1] + 1))
        if (py - sy) % 8 or (px - sx) % 8:
            break
    out = host.copy()
    out[py : py + size[0], px : px + size[1]] = donor[sy : sy + size[0], sx : sx + size[1]]
    truth = np.zeros((h, w), bool)
    truth[py : py + size[0], px : px + size[1]] = True
    if rng.random() < 0.5:
        out = _jpeg(out, int(rng.integers(85, 101)))
    return out, truth


def calibrate(photos: list[Path], zmaxes: list[int], alpha: float, seed: int = 0) -> list[str]:
    """One line per ``zmax``: the fitted threshold, the null's spread and the synthetic pastes found."""
    rng = np.random.default_rng(seed)
    progress = Progress(len(photos), "calibrate", stream=sys.stderr)
    null: dict[int, list[float]] = {z: [] for z in zmaxes}
    pasted: dict[int, list[tuple[float, np.ndarray, np.ndarray]]] = {z: [] for z in zmaxes}
    configs = {z: JpegGridConfig(zmax=z, threshold=np.inf) for z in zmaxes}
    for i, photo in enumerate(photos):
        data = photo.read_bytes()
        planes = null_planes(data, rng)
        donor = stored_gray(photos[(i + len(photos) // 2) % len(photos)].read_bytes())
        paste, truth = synthetic_paste(planes[0], donor, rng)
        for plane, sink in [(p, None) for p in planes] + [(paste, truth)]:
            if min(plane.shape) < 8 * (JpegGridConfig.window + 1):
                continue
            z = zero_counts(plane)
            for zmax, cfg in configs.items():
                found = grid_evidence(z, plane, cfg)
                if sink is None:
                    null[zmax].append(found.score)
                else:
                    pasted[zmax].append((found.score, plane, sink))
        progress.step()
    progress.close()
    lines = []
    for zmax in zmaxes:
        scores = np.array(null[zmax])
        tau = float(np.quantile(scores, 1.0 - alpha, method="higher"))
        cfg = dataclasses.replace(configs[zmax], threshold=tau)
        ious, flagged = [], 0
        for score, plane, truth in pasted[zmax]:
            if score > tau:
                flagged += 1
                mask = detect_jpeg_grid(plane, cfg).mask
                ious.append(pixel_scores(mask > 0, truth).iou)
            else:
                ious.append(0.0)
        lines.append(
            f"zmax {zmax}: {len(scores)} untouched planes, score median / 99% / max {np.median(scores):.2f} / "
            f"{np.quantile(scores, 0.99):.2f} / {scores.max():.2f}; threshold at {alpha:.0%}: {tau:.2f} "
            f"(flags {np.mean(scores > tau):.1%}); synthetic pastes flagged {flagged} of {len(ious)}, "
            f"IoU {np.mean(ious):.3f}")
    return lines


def dataset_report(spec: str, cfg: JpegGridConfig) -> list[str]:
    """The lines of ``--data`` for one dataset."""
    rows = []
    for pair in load_pairs(spec):
        gray = stored_gray(Path(pair.image).read_bytes(), str(pair.image))
        t0 = time.perf_counter()
        found = detect_jpeg_grid(gray, cfg)
        ms = 1e3 * (time.perf_counter() - t0)
        mask = found.mask if found.mask is not None else np.zeros(gray.shape, np.uint8)
        iou = pixel_scores(mask > 0, truth_mask(pair, mask.shape)).iou if pair.mask is not None else None
        rows.append((Path(pair.image).name, pair.mask is not None, found, bool(mask.any()), iou, ms))
    lines = [f"## {spec}: {len(rows)} images, median {np.median([r[5] for r in rows]):.1f} ms"]
    for forged in (False, True):
        part = [r for r in rows if r[1] == forged]
        if not part:
            continue
        scores = np.array([min(r[2].score, 1e6) for r in part])
        line = (f"{'forged' if forged else 'authentic'} ({len(part)}): score median / 90% / max "
                f"{np.median(scores):.1f} / {np.percentile(scores, 90):.1f} / {scores.max():.1f}; "
                f"flagged {sum(r[3] for r in part)}")
        if forged:
            line += f"; IoU {np.mean([r[4] for r in part]):.3f}, overlapping {sum(r[4] > 0.1 for r in part)}"
        lines.append(line)
    for name, forged, found, flagged, iou, _ in rows:
        if flagged:
            lines.append(f"  {name}: score {min(found.score, 1e6):.1f}, grid {found.grid}, other {found.other}"
                         + (f", IoU {iou:.3f}" if forged else " (authentic)"))
    return lines


def _best_ms(fn, gray: np.ndarray, repeat: int = 3) -> tuple[float, np.ndarray]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(gray)
        times.append(1e3 * (time.perf_counter() - t0))
    return min(times), out


def kernel_report(spec: str) -> str:
    """One dataset's line of ``--kernels``: median ms of the zero counts and of the per-cell test
    (votes, windows, mask: :func:`grid_evidence`), native and reference, each checked identical."""
    cfg = JpegGridConfig()
    times: dict[str, list[float]] = {"zn": [], "zr": [], "en": [], "er": []}
    largest = (0, 0.0, 0.0, 0.0, 0.0)
    for pair in load_pairs(spec):
        gray = stored_gray(Path(pair.image).read_bytes(), str(pair.image))
        if min(gray.shape) < 8 * (cfg.window + 1):
            continue
        ms_zn, z_n = _best_ms(lambda g: zero_counts(g, backend="native"), gray)
        ms_zr, z_r = _best_ms(lambda g: zero_counts(g, backend="reference"), gray)
        if not np.array_equal(z_n, z_r):
            raise SystemExit(f"{pair.image}: the native zero counts differ from the reference's")
        ms_en, e_n = _best_ms(lambda g: grid_evidence(z_n, g, cfg, backend="native"), gray)
        ms_er, e_r = _best_ms(lambda g: grid_evidence(z_n, g, cfg, backend="reference"), gray)
        same_mask = (e_n.mask is None) == (e_r.mask is None) and (
            e_n.mask is None or np.array_equal(e_n.mask, e_r.mask))
        if e_n.score != e_r.score or not same_mask:
            raise SystemExit(f"{pair.image}: the native votes and windows give another result than the reference's")
        for key, ms in zip(times, (ms_zn, ms_zr, ms_en, ms_er)):
            times[key].append(ms)
        if gray.size > largest[0]:
            largest = (gray.size, ms_zn, ms_zr, ms_en, ms_er)
    med = {k: float(np.median(v)) for k, v in times.items()}
    return (f"{spec}: {len(times['zn'])} pictures (median ms, native / reference): zero counts {med['zn']:.2f} / "
            f"{med['zr']:.2f}, per-cell test {med['en']:.2f} / {med['er']:.2f}; largest ({largest[0] / 1e6:.1f} MP) "
            f"{largest[1]:.1f} / {largest[2]:.1f} and {largest[3]:.1f} / {largest[4]:.1f}; results identical")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", action="append", default=[], help="a focal-eval dataset spec (repeatable)")
    ap.add_argument("--calibrate", metavar="PHOTOS", help="fit the threshold on these untouched photos instead")
    ap.add_argument("--exclude", help="a dataset spec whose photos the fit leaves out (the held-out list)")
    ap.add_argument("--every", type=int, default=1, help="fit on every N-th photo")
    ap.add_argument("--false-alarm", type=float, default=JpegGridConfig.false_alarm)
    ap.add_argument("--zmax", type=int, action="append", help="--calibrate: the texture rules to fit (repeatable)")
    ap.add_argument("--threshold", type=float, default=JpegGridConfig.threshold, help="--data: the threshold")
    ap.add_argument("--kernels", action="store_true",
                    help="--data: time the zero counts and the per-cell test, native and reference")
    args = ap.parse_args()
    if args.calibrate:
        photos = photo_list(args.calibrate, args.exclude, args.every)
        for line in calibrate(photos, args.zmax or [JpegGridConfig.zmax], args.false_alarm):
            print(line)
        return
    if not args.data:
        ap.error("give --data or --calibrate")
    if args.kernels:
        for spec in args.data:
            print(kernel_report(spec))
        return
    cfg = JpegGridConfig(threshold=args.threshold, zmax=(args.zmax or [JpegGridConfig.zmax])[0])
    print(cfg)
    for spec in args.data:
        print("\n".join(dataset_report(spec, cfg)))


if __name__ == "__main__":
    main()
