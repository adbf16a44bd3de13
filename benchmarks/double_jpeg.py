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
pass the strict test) of the evidence over untouched photos. Fit it on
training-side photos, never on the sets it is measured on.

Usage::

    .venv/bin/python benchmarks/double_jpeg.py --calibrate trainside.json [--false-alarm 0.05]
    .venv/bin/python benchmarks/double_jpeg.py --data ../shared/data/real-dev/imd2020 \
        --data ../shared/data/real-dev/imd2020/authentic --data heldout.json [--eval eval]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from focal._datasets import load_pairs
from focal._progress import Progress
from focal.evaluation.evaluate import truth_mask
from focal.evaluation.metrics import pixel_scores
from focal.runtime.doublejpeg import DoubleJpegConfig, detect_double_jpeg
from focal.runtime.imageio import read_mask

sys.path.insert(0, str(Path(__file__).resolve().parent))
from copy_move import _eval_masks, _mean_text  # noqa: E402  (one home for the eval-union helpers)


def _evidence(spec: str, config: DoubleJpegConfig) -> list[float]:
    """The evidence of every image of a dataset (0.0 for files without any)."""
    pairs = load_pairs(spec)
    progress = Progress(len(pairs), Path(spec).name, stream=sys.stderr)
    values = []
    for pair in pairs:
        values.append(detect_double_jpeg(Path(pair.image).read_bytes(), config, str(pair.image)).evidence)
        progress.step()
    progress.close()
    return values


def calibrate(spec: str, config: DoubleJpegConfig, alpha: float) -> str:
    """The fitted threshold and the evidence's spread over the untouched photos of ``spec``, as text."""
    values = np.array(_evidence(spec, config))
    tau = float(np.quantile(values, 1.0 - alpha, method="higher"))
    with_evidence = int(np.count_nonzero(values > 0))
    return (f"{Path(spec).name}: {len(values)} photos, {with_evidence} with a period; evidence median "
            f"{np.median(values):.3f}, max {values.max():.3f}; threshold at {alpha:.0%} false alarms: {tau:.3f} "
            f"(flags {np.mean(values > tau):.1%})")


def _row(spec: str, config: DoubleJpegConfig, other: dict[str, Path]) -> str:
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
        else:
            if truth is None:  # no evidence: score an empty mask against the truth's own size
                truth = read_mask(pair.mask) > 0
                mask = np.zeros_like(truth)
            ious.append(pixel_scores(mask, truth).iou)
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", action="append", default=[], help="a focal-eval dataset spec (repeatable)")
    parser.add_argument("--eval", type=Path, help="a focal-eval --out folder of the same datasets: adds the union")
    parser.add_argument("--calibrate", metavar="LIST", help="untouched training-side photos: fit the threshold")
    parser.add_argument("--false-alarm", type=float, default=0.05, help="the rate the threshold is fitted to")
    parser.add_argument("--threshold", type=float, default=DoubleJpegConfig.threshold,
                        help=f"DoubleJpegConfig.threshold (default: {DoubleJpegConfig.threshold})")
    args = parser.parse_args()
    if not (args.data or args.calibrate):
        parser.error("give --data or --calibrate")
    config = dataclasses.replace(DoubleJpegConfig(), threshold=args.threshold)
    if args.calibrate:
        print(calibrate(args.calibrate, config, args.false_alarm), flush=True)
    if args.data:
        other = _eval_masks(args.eval) if args.eval else {}
        print("| dataset | images (forged / authentic) | JPEGs | IoU | overlapping (IoU > 0.1) | authentic flagged | "
              f"ms / image |{' IoU, union | authentic flagged, union |' if other else ''}")
        print(f"|---|---|---|---|---|---|---|{'---|---|' if other else ''}")
        for spec in args.data:
            print(_row(spec, config, other), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
