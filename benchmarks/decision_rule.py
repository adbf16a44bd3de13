"""Does the image score separate forged from authentic images? A false-alarm-calibrated split rule.

    .venv/bin/python benchmarks/decision_rule.py [ARTIFACT] --calibrate PHOTOS --data SPEC [--data SPEC ...]
        [--quantile 0.9]

Every image is split in two by cosine k-means and scored by the split's
correlation ratio (:func:`focal.runtime.score.forgery_score`). The threshold
is the ``--quantile`` of that score over the untouched ``--calibrate``
photos (training-side photos, never the evaluated sets), i.e. a stated
false-alarm rate. For each dataset it prints how often forged and authentic
images are flagged, the score's medians and image AUC, and the forged-class
IoU when always splitting (the ceiling of any decision over these features)
and under the rule.
"""

from __future__ import annotations

import argparse
import sys

import cv2
import numpy as np

from focal._datasets import load_pairs
from focal.evaluation.metrics import image_level, pixel_scores
from focal.runtime import Detector
from focal.runtime.imageio import read_mask


def _scores(det: Detector, images: list) -> list:
    return [det(p) for p in images]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", nargs="?", default=None, help="artifact folder (default: the embedded model)")
    parser.add_argument("--calibrate", required=True,
                        help="untouched photos that fix the threshold: a dataset spec, e.g. focal-synth's "
                             "--authentic-list JSON of the photos training held out")
    parser.add_argument("--calibrate-limit", type=int, default=None, help="at most this many calibration photos")
    parser.add_argument("--data", action="append", required=True, help="dataset spec (focal-eval's), repeatable; 'A+B' pools two (forged + authentic)")
    parser.add_argument("--quantile", type=float, default=0.9, help="1 - the false-alarm rate on --calibrate")
    args = parser.parse_args(argv)
    with Detector(args.artifact, backend="cpu", clustering="kmeans", exif_orientation=False) as det:
        photos = [p.image for p in load_pairs(args.calibrate)][: args.calibrate_limit]
        calib = np.array([r.score for r in _scores(det, photos)])
        tau = float(np.quantile(calib, args.quantile))
        print(f"threshold {tau:.3f}: the {args.quantile:.2f} quantile of the split score over {len(photos)} photos "
              f"of {args.calibrate}")
        print("| set | forged | authentic | flagged forged | flagged authentic | median score forged / authentic "
              "| image AUC | IoU always split | IoU under the rule |")
        print("|---|---|---|---|---|---|---|---|---|")
        for spec in args.data:
            pairs = [pair for part in spec.split("+") for pair in load_pairs(part)]
            results = _scores(det, [p.image for p in pairs])
            forged = np.array([p.mask is not None and read_mask(p.mask).any() for p in pairs])
            score = np.array([r.score for r in results])
            flagged = score > tau
            ious_split, ious_rule = [], []
            for pair, res, flag in zip(pairs, results, flagged):
                if pair.mask is None:
                    continue
                truth = read_mask(pair.mask) > 0
                pred = cv2.resize(res.mask, truth.shape[::-1], interpolation=cv2.INTER_NEAREST) > 0
                ious_split.append(pixel_scores(pred, truth).iou)
                ious_rule.append(pixel_scores(pred & flag, truth).iou)
            auc = image_level(score, flagged, forged)["auc"]
            med_a = f"{np.median(score[~forged]):.3f}" if (~forged).any() else "-"
            rate_a = f"{flagged[~forged].mean():.2f}" if (~forged).any() else "-"
            print(f"| {spec} | {forged.sum()} | {(~forged).sum()} | {flagged[forged].mean():.2f} | {rate_a} "
                  f"| {np.median(score[forged]):.3f} / {med_a} | {auc:.3f} | {np.mean(ious_split):.3f} "
                  f"| {np.mean(ious_rule):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
