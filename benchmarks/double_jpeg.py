"""The double-JPEG cue (`focal.runtime.doublejpeg`) on any `focal-eval` dataset, and the fit of its threshold.

For each dataset: the JPEGs among its images, the forged-class IoU over the
forged images (an empty mask, or a file without evidence, scores 0), the
share of forged images whose mask overlaps the truth (IoU > 0.1), the share
of authentic images flagged, and the median milliseconds per image. With
``--eval DIR`` (a `focal-eval --out` folder of the same datasets) it adds
the union of the cue's mask with that run's mask (its first
``--clustering``) per image: what a detector reporting both would score.

``--calibrate LIST`` fits ``DoubleJpegConfig.threshold`` instead: the
``1 - alpha`` quantile (NumPy's ``"higher"``, so at most ``alpha`` of them
pass the strict test) of the evidence over untouched photos that show a
double compression: each photo as it is, and ``--resaves`` copies saved as
JPEG twice more at qualities drawn from ``RESAVE_QUALITIES`` (a download re-saved,
the case that tests the cue). Fit it on training-side photos, never on the
sets it is measured on.

Usage::

    .venv/bin/python benchmarks/double_jpeg.py --calibrate ../shared/data/natural --exclude heldout.json \
        --every 2 --false-alarm 0.01
    .venv/bin/python benchmarks/double_jpeg.py --data ../shared/data/real-dev/imd2020 \
        --data ../shared/data/real-dev/imd2020/authentic --data heldout.json [--eval eval]
    .venv/bin/python benchmarks/double_jpeg.py --kernels --data ../shared/data/real-samples

``--kernels`` times the block DCT instead (``dct_coefficients``, the cue's
largest step), the native core against its NumPy reference taking turns on
each JPEG, and checks that the two give the same coefficients.
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
from focal._files import list_images
from focal._progress import Progress
from focal.evaluation.evaluate import truth_mask
from focal.evaluation.metrics import pixel_scores
from focal.runtime.doublejpeg import DoubleJpegConfig, dct_coefficients, detect_double_jpeg, luma_quantization
from focal.runtime.imageio import read_image, read_mask
from focal.runtime.render import overlay

# The null of the fit: untouched photos as users meet them, saved as JPEG twice (a download re-saved),
# each time at a quality drawn from these inclusive ranges.
RESAVE_QUALITIES = ((50, 95), (70, 100))

sys.path.insert(0, str(Path(__file__).resolve().parent))
from copy_move import _eval_masks, _mean_text  # noqa: E402  (one home for the eval-union helpers)


def _resaved(data: bytes, rng: np.random.Generator) -> bytes:
    """The photo of ``data`` saved as JPEG twice, at qualities drawn from ``RESAVE_QUALITIES``: untouched."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    for low, high in RESAVE_QUALITIES:
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(low, high + 1))])
        image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return buf.tobytes()


def photo_list(spec: str, exclude: str | None = None, every: int = 1) -> list[Path]:
    """The photos to fit on: a dataset spec's images, or a folder's (``list_images``), without those of
    ``exclude`` (a dataset spec, e.g. the held-out list), every ``every``-th of what is left."""
    if Path(spec).is_dir():
        photos = [Path(p) for p in list_images(spec)]
    else:
        photos = [Path(p.image) for p in load_pairs(spec)]
    held = {Path(p.image).resolve() for p in load_pairs(exclude)} if exclude else set()
    return [p for p in photos if p.resolve() not in held][::every]


def _evidence(photos: list[Path], config: DoubleJpegConfig, resaves: int, seed: int = 0) -> list[float | None]:
    """The evidence of every photo and of ``resaves`` resaved copies of each; None where no frequency
    showed a double compression (the cue says nothing there)."""
    rng = np.random.default_rng(seed)
    progress = Progress(len(photos), "calibrate", stream=sys.stderr)
    values: list[float | None] = []
    for photo in photos:
        data = photo.read_bytes()
        for file in [data] + [_resaved(data, rng) for _ in range(resaves)]:
            found = detect_double_jpeg(file, config, str(photo))
            values.append(found.evidence if found.first_steps else None)
        progress.step()
    progress.close()
    return values


def calibrate(photos: list[Path], config: DoubleJpegConfig, alpha: float, resaves: int = 3) -> str:
    """The fitted threshold and the evidence's spread over untouched ``photos``, as text.

    The quantile is taken over the files that show a double compression: the
    cue is silent on the others, so counting them would set the rate among
    photos it cannot flag anyway and leave the threshold too low for those
    it can.
    """
    values = _evidence(photos, config, resaves)
    shown = np.array([v for v in values if v is not None])
    if not len(shown):
        return "no file shows a double compression: nothing to fit"
    tau = float(np.quantile(shown, 1.0 - alpha, method="higher"))
    what = f"{len(photos)} photos and {resaves} resaved copies of each"
    return (f"{what}, {len(shown)} of {len(values)} files showing a double compression; "
            f"their evidence median {np.median(shown):.3f}, max {shown.max():.3f}; threshold at {alpha:.0%} false "
            f"alarms among them: {tau:.3f} (flags {np.mean(shown > tau):.1%} of them, "
            f"{np.count_nonzero(shown > tau) / len(values):.1%} of all)")


def _kernel_row(spec: str, frequencies: int, repeat: int = 3) -> str:
    """One dataset's row of ``--kernels``: median ms per JPEG of the block DCT, native and
    reference (taking turns, best of ``repeat`` each), the largest photo's (and its grey-plane
    decode, the cue's other large step), and whether they agree."""
    times: dict[str, list[float]] = {"native": [], "reference": []}
    largest: tuple[int, str, dict[str, float]] = (0, "", {})
    same = True
    for pair in load_pairs(spec):
        data = Path(pair.image).read_bytes()
        table = luma_quantization(data)
        if table is None:
            continue
        decodes = []
        for _ in range(repeat):
            start = time.perf_counter()
            gray = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION)
            decodes.append((time.perf_counter() - start) * 1e3)
        best, out = {"decode": min(decodes)}, {}
        for backend in ("native", "reference"):
            runs = []
            for _ in range(repeat):
                start = time.perf_counter()
                out[backend] = dct_coefficients(gray, table, frequencies, backend=backend)
                runs.append((time.perf_counter() - start) * 1e3)
            best[backend] = min(runs)
            times[backend].append(best[backend])
        same &= bool(np.array_equal(out["native"], out["reference"]))
        if gray.size > largest[0]:
            largest = (gray.size, Path(pair.image).name, best)
    if not times["native"]:
        return f"| {Path(spec).name} | 0 | - | - | - | - |"
    n, r = np.median(times["native"]), np.median(times["reference"])
    big = largest[2]
    return (f"| {Path(spec).name} | {len(times['native'])} | {n:.2f} | {r:.2f} | "
            f"{largest[1]} ({largest[0] / 1e6:.1f} MP): {big['native']:.1f} / {big['reference']:.1f} "
            f"(grey decode {big['decode']:.1f}) | "
            f"{'yes' if same else 'NO'} |")


def _row(spec: str, config: DoubleJpegConfig, other: dict[str, Path], cases: list[tuple[float, Path, np.ndarray, np.ndarray]]) -> str:
    """One dataset's table row; each image the cue flagged goes to ``cases`` as (IoU or -1 if
    untouched, image, truth, mask) for the picture."""
    pairs = load_pairs(spec)
    ious, flags, union_ious, union_flags, seconds, jpegs = [], [], [], [], [], 0
    progress = Progress(len(pairs), Path(spec).name, stream=sys.stderr)
    for pair in pairs:
        data = Path(pair.image).read_bytes()
        start = time.perf_counter()
        found = detect_double_jpeg(data, config, str(pair.image))
        seconds.append(time.perf_counter() - start)
        jpegs += data[:2] == b"\xff\xd8"
        mask = found.mask > 0 if found.mask is not None else None
        truth = truth_mask(pair, mask.shape) if (pair.mask is not None and mask is not None) else None
        if pair.mask is None:
            flags.append(found.found)
            if found.found:
                cases.append((-1.0, Path(pair.image), np.zeros_like(mask), mask))
        else:
            if truth is None:  # no evidence: score an empty mask against the truth's own size
                truth = read_mask(pair.mask) > 0
                mask = np.zeros_like(truth)
            ious.append(pixel_scores(mask, truth).iou)
            if found.found:
                cases.append((ious[-1], Path(pair.image), truth, mask))
        theirs = other.get(str(Path(pair.image).resolve()))
        if theirs is not None:
            joint = read_mask(theirs) > 0
            if found.found and found.mask.shape == joint.shape:
                joint = joint | (found.mask > 0)
            if pair.mask is None:
                union_flags.append(joint.any())
            else:
                union_ious.append(pixel_scores(joint, truth_mask(pair, joint.shape)).iou)
        progress.step()
    progress.close()
    overlap = f"{np.mean(np.array(ious) > 0.1):.2f}" if ious else "-"
    row = (f"| {Path(spec).name} | {len(ious)} / {len(flags)} | {jpegs} | {_mean_text(ious)} | {overlap} | "
           f"{_mean_text(flags)} | {1e3 * np.median(seconds):.0f} |")
    if other:
        row += f" {_mean_text(union_ious)} | {_mean_text(union_flags)} |"
    return row


def _picture(cases: list[tuple[float, Path, np.ndarray, np.ndarray]], path: Path, height: int = 220) -> None:
    """Rows of image | truth | mask (stored pixel grid): the best found forgeries, then false alarms."""
    found = sorted((c for c in cases if c[0] >= 0), key=lambda c: -c[0])[:3]
    alarms = [c for c in cases if c[0] < 0][:2]
    rows = []
    for _, image_path, truth, mask in found + alarms:
        image = read_image(image_path)
        size = (max(1, round(image.shape[1] * height / image.shape[0])), height)
        tiles = [image, overlay(image, truth.astype(np.uint8) * 255), overlay(image, mask.astype(np.uint8) * 255)]
        rows.append(np.hstack([cv2.resize(t, size, interpolation=cv2.INTER_AREA) for t in tiles]))
    if not rows:
        return
    width = max(r.shape[1] for r in rows)
    grid = np.vstack([np.pad(r, ((0, 6), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows])
    cv2.imwrite(str(path), grid[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])
    print(f"wrote {path}: {len(found)} found, {len(alarms)} false alarms", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", action="append", default=[], help="a focal-eval dataset spec (repeatable)")
    parser.add_argument("--eval", type=Path, help="a focal-eval --out folder of the same datasets: adds the union")
    parser.add_argument("--calibrate", metavar="PHOTOS",
                        help="untouched training-side photos (a folder or a dataset spec): fit the threshold")
    parser.add_argument("--exclude", metavar="LIST", help="with --calibrate: leave out these photos (the held-out list)")
    parser.add_argument("--every", type=int, default=1, metavar="N", help="with --calibrate: every N-th photo")
    parser.add_argument("--false-alarm", type=float, default=0.01, help="the rate the threshold is fitted to")
    parser.add_argument("--resaves", type=int, default=3, metavar="N",
                        help="with --calibrate: resaved copies of each photo in the fit (each at its own qualities)")
    parser.add_argument("--picture", type=Path, metavar="JPG",
                        help="write the 3 forged images the cue found best and up to 2 untouched ones it flagged: "
                             "image | truth | the cue's mask")
    parser.add_argument("--kernels", action="store_true",
                        help="with --data: time the block DCT, native core against NumPy reference, instead")
    parser.add_argument("--threshold", type=float, default=DoubleJpegConfig.threshold,
                        help=f"DoubleJpegConfig.threshold (default: {DoubleJpegConfig.threshold})")
    args = parser.parse_args()
    if not (args.data or args.calibrate):
        parser.error("give --data or --calibrate")
    config = dataclasses.replace(DoubleJpegConfig(), threshold=args.threshold)
    if args.calibrate:
        photos = photo_list(args.calibrate, args.exclude, args.every)
        print(calibrate(photos, config, args.false_alarm, args.resaves), flush=True)
    if args.data and args.kernels:
        print("| dataset | JPEGs | native ms (median) | reference ms (median) | largest photo: native / reference ms "
              "| same coefficients |")
        print("|---|---|---|---|---|---|")
        for spec in args.data:
            print(_kernel_row(spec, config.frequencies), flush=True)
        return 0
    if args.data:
        other = _eval_masks(args.eval) if args.eval else {}
        print("| dataset | images (forged / authentic) | JPEGs | IoU | overlapping (IoU > 0.1) | authentic flagged | "
              f"ms / image |{' IoU, union | authentic flagged, union |' if other else ''}")
        print(f"|---|---|---|---|---|---|---|{'---|---|' if other else ''}")
        cases: list[tuple[float, Path, np.ndarray, np.ndarray]] = []
        for spec in args.data:
            print(_row(spec, config, other, cases), flush=True)
        if args.picture:
            _picture(cases, args.picture)
    return 0


if __name__ == "__main__":
    sys.exit(main())
