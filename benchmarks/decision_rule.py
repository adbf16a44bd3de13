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

A second table measures the image-level statistics of the paper's hint (a
homogeneity measure of the features) beside the split score, as the image
AUC each gives on every set that holds forged and authentic images:

- ``split score``: the correlation ratio above;
- ``minority share``: the smaller k-means cluster's share of the cells;
- ``spatial NMI``: normalised mutual information between the split and a
  4 x 4 partition of the image (a split that follows where, not what);
- ``largest component``: the share of the minority in its largest
  4-connected component (a pasted region is one blob);
- ``neighbour cosine``: the mean cosine of each cell with its right and
  lower neighbours (local homogeneity);
- ``resultant length``: the norm of the mean unit feature (global
  homogeneity: 1 when every cell is the same);
- ``outlier peak``: how far the most unusual cells lie from their likes,
  with no split: each cell's outlier score is 1 minus its mean cosine to the
  20 most similar of 1024 cells drawn at random (seed 0; the most similar
  left out, the cell itself where drawn), smoothed 3 x 3 over the grid, and
  the statistic is the mean of the top 5% of cells.

An AUC below 0.5 means the statistic is *lower* on forged images.
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


def _nmi(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised mutual information of two labelings (arithmetic-mean normalisation), in [0, 1]."""
    joint = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(joint, (a, b), 1.0)
    joint /= joint.sum()
    pa, pb = joint.sum(1), joint.sum(0)
    nz = joint > 0
    mi = float((joint[nz] * np.log(joint[nz] / np.outer(pa, pb)[nz])).sum())
    ha = -float((pa[pa > 0] * np.log(pa[pa > 0])).sum())
    hb = -float((pb[pb > 0] * np.log(pb[pb > 0])).sum())
    return 0.0 if ha + hb == 0 else 2.0 * mi / (ha + hb)


def outlier_peak(feats: np.ndarray, grid: tuple[int, int], refs: int = 1024, near: int = 20,
                 top: float = 0.05) -> float:
    """The ``outlier peak`` statistic of ``[N, D]`` unit rows on a ``grid`` (module notes), in [0, 2]."""
    n = feats.shape[0]
    sample = feats[np.random.default_rng(0).choice(n, min(refs, n), replace=False)]
    sims = np.sort(feats @ sample.T, axis=1)
    score = 1.0 - sims[:, -(near + 1):-1].mean(axis=1)
    smooth = cv2.blur(score.reshape(grid).astype(np.float32), (3, 3)).ravel()
    return float(np.sort(smooth)[-max(1, round(top * n)):].mean())


def homogeneity(result) -> dict[str, float]:
    """The second table's image statistics of one ``Result`` (``keep_features``, k-means labels)."""
    feats, labels = result.features, result.labels.astype(np.int64)
    gh, gw = labels.shape
    minority = labels == (1 if 2 * labels.sum() <= labels.size else 0)
    rows, cols = np.meshgrid(np.arange(gh) * 4 // gh, np.arange(gw) * 4 // gw, indexing="ij")
    n, _, stats, _ = cv2.connectedComponentsWithStats(minority.astype(np.uint8), connectivity=4)
    grid = feats.reshape(gh, gw, -1)
    neighbours = (grid[1:] * grid[:-1]).sum(-1).mean() + (grid[:, 1:] * grid[:, :-1]).sum(-1).mean()
    return {
        "split score": result.score,
        "minority share": float(minority.mean()),
        "spatial NMI": _nmi((rows * 4 + cols).ravel(), labels.ravel()),
        "largest component": float(stats[1:, cv2.CC_STAT_AREA].max() / minority.sum()) if n > 1 else 0.0,
        "neighbour cosine": 0.5 * float(neighbours),
        "resultant length": float(np.linalg.norm(feats.mean(axis=0))),
        "outlier peak": outlier_peak(feats, (gh, gw)),
    }


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
    homogeneity_rows = []
    # The features' own split and score: the cues the artifact's manifest may list would lift both.
    with Detector(args.artifact, backend="cpu", clustering="kmeans", exif_orientation=False,
                  keep_features=True, copy_move=False, double_jpeg=False) as det:
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
            if forged.any() and not forged.all():
                values = [homogeneity(r) for r in results]
                homogeneity_rows.append((spec, {k: image_level(np.array([v[k] for v in values]), flagged, forged)["auc"]
                                                for k in values[0]}))
            med_a = f"{np.median(score[~forged]):.3f}" if (~forged).any() else "-"
            rate_a = f"{flagged[~forged].mean():.2f}" if (~forged).any() else "-"
            print(f"| {spec} | {forged.sum()} | {(~forged).sum()} | {flagged[forged].mean():.2f} | {rate_a} "
                  f"| {np.median(score[forged]):.3f} / {med_a} | {auc:.3f} | {np.mean(ious_split):.3f} "
                  f"| {np.mean(ious_rule):.3f} |")
    if homogeneity_rows:
        names = list(homogeneity_rows[0][1])
        print("\nimage AUC of each statistic (forged vs authentic):\n")
        print("| set | " + " | ".join(names) + " |")
        print("|---|" + "---|" * len(names))
        for spec, aucs in homogeneity_rows:
            print(f"| {spec} | " + " | ".join(f"{aucs[k]:.3f}" for k in names) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
