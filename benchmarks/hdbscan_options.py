"""Why HDBSCAN finds no second cluster on real forgeries, and whether its own options change that.

    .venv/bin/python benchmarks/hdbscan_options.py [ARTIFACT] --data SPEC [--data SPEC ...] [--limit N]

For every image of every ``--data`` set (focal-eval's dataset specs; a set
whose images have no mask counts as authentic), the artifact's features are
computed once (``Detector(keep_features=True)``: the exact rows the runtime
clusters). Their mutual-reachability spanning tree is built once per
``min_samples`` by the native core, and the ``hdbscan`` package's own
condensed-tree code selects the clusters of each variant (``min_cluster_size``,
``min_samples``, excess of mass or leaf), so every variant's labels are the
package's for those settings. Labels become a mask by the method's rule
(largest cluster pristine, noise joins the nearest cluster) and the runtime's
own mask mapping. Two more rows run the paper's variant on the features
smoothed over the grid first (a 3 x 3 and a 5 x 5 box mean of each channel,
rows L2-normalised again): forged cells lie side by side, so smoothing could
make a region dense enough to form a cluster. Cosine k-means (always two
clusters) is the last row. The paper's variant is checked against the
runtime's own HDBSCAN labels on every image.

Per set and variant it prints: the share of images with two or more
clusters, the mean share of points HDBSCAN calls noise, the mean
forged-class IoU over forged images, and the share of forged and of
authentic images flagged (any forged pixel).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import cv2
import numpy as np

from focal._datasets import load_pairs
from focal.evaluation.metrics import pixel_scores
from focal.runtime import Detector
from focal.runtime._native_api import mst
from focal.runtime.cluster import cluster_features, kmeans_cosine, labels_from_clusters
from focal.runtime.imageio import read_image, read_mask
from focal.runtime.postprocess import mask_from_labels


@dataclass(frozen=True)
class Variant:
    """One HDBSCAN setting."""

    min_cluster_size: int
    min_samples: int
    method: str  # "eom" (the package's default, the paper's) or "leaf"

    @property
    def name(self) -> str:
        return f"mcs {self.min_cluster_size}, min_samples {self.min_samples}, {self.method}"


VARIANTS = (
    Variant(200, 200, "eom"),  # the paper's
    Variant(200, 50, "eom"),
    Variant(200, 10, "eom"),
    Variant(200, 200, "leaf"),
    Variant(200, 10, "leaf"),
    Variant(100, 100, "eom"),
    Variant(50, 10, "leaf"),
)


SMOOTHING = (3, 5)  # box sizes, in feature cells


def _smoothed(feats: np.ndarray, grid: tuple[int, int], size: int) -> np.ndarray:
    """``[N, D]`` float32 rows after a ``size x size`` box mean of each channel over the ``grid``, L2-normalised."""
    planes = feats.reshape(*grid, -1)
    out = np.stack([cv2.blur(np.ascontiguousarray(planes[..., c]), (size, size)) for c in range(planes.shape[2])],
                   axis=-1).reshape(feats.shape)
    return (out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def _raw_labels(tree: tuple[np.ndarray, np.ndarray, np.ndarray], n: int, v: Variant) -> np.ndarray:
    """The package's cluster ids for spanning tree ``tree`` under ``v`` (its own condensing and selection)."""
    from hdbscan._hdbscan_linkage import label
    from hdbscan._hdbscan_tree import compute_stability, condense_tree, get_clusters

    src, dst, weight = tree
    edges = np.stack([src.astype(np.float64), dst.astype(np.float64), weight], axis=1)
    single = label(edges[np.argsort(edges.T[2])])
    condensed = condense_tree(single, v.min_cluster_size)
    labels, _, _ = get_clusters(condensed, compute_stability(condensed), v.method, False, False, 0.0, 0)
    return np.asarray(labels, dtype=np.int64)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", nargs="?", default=None, help="artifact folder (default: the embedded model)")
    parser.add_argument("--data", action="append", required=True, help="dataset spec, repeatable")
    parser.add_argument("--limit", type=int, default=None, help="at most this many images per set")
    args = parser.parse_args(argv)
    rows = []
    same = total = 0  # the paper's variant against the runtime's own HDBSCAN labels
    # Only the features are read: the cues the artifact's manifest may list would only cost time.
    with Detector(args.artifact, backend="cpu", clustering="kmeans", keep_features=True, copy_move=False,
                  double_jpeg=False, exif_orientation=False) as det:
        for spec in args.data:
            pairs = load_pairs(spec)[: args.limit]
            stats = {v.name: dict(split=[], noise=[], iou=[], flag_f=[], flag_a=[]) for v in VARIANTS}
            for size in SMOOTHING:
                stats[f"{VARIANTS[0].name}, features smoothed {size} x {size}"] = dict(
                    split=[], noise=[], iou=[], flag_f=[], flag_a=[])
            stats["k-means (k = 2)"] = dict(split=[], noise=[], iou=[], flag_f=[], flag_a=[])
            for i, pair in enumerate(pairs):
                image = read_image(pair.image, apply_orientation=False)
                h, w = image.shape[:2]
                res = det(image)
                feats = res.features
                grid = res.labels.shape
                geometry = det.geometry(h, w)
                truth = read_mask(pair.mask) > 0 if pair.mask is not None else None
                forged = truth is not None and truth.any()
                trees = {ms: mst(feats, ms)[:3] for ms in sorted({v.min_samples for v in VARIANTS})}
                outcomes = {v.name: _raw_labels(trees[v.min_samples], feats.shape[0], v) for v in VARIANTS}
                rows_of = {name: feats for name in outcomes}
                for size in SMOOTHING:
                    smooth = _smoothed(feats, grid, size)
                    name = f"{VARIANTS[0].name}, features smoothed {size} x {size}"
                    tree = mst(smooth, VARIANTS[0].min_samples)[:3]
                    outcomes[name], rows_of[name] = _raw_labels(tree, smooth.shape[0], VARIANTS[0]), smooth
                outcomes["k-means (k = 2)"] = kmeans_cosine(feats)
                rows_of["k-means (k = 2)"] = feats
                runtime = cluster_features(feats, "hdbscan", 200, normalized=True)
                same += int(np.array_equal(labels_from_clusters(outcomes[VARIANTS[0].name], feats), runtime))
                total += 1
                for name, raw in outcomes.items():
                    labels = labels_from_clusters(raw, rows_of[name])  # noise joins its nearest cluster
                    mask = mask_from_labels(labels.reshape(grid), h, w, geometry) > 0
                    s = stats[name]
                    s["split"].append(len(np.unique(raw[raw >= 0])) >= 2)
                    s["noise"].append(float((raw < 0).mean()))
                    (s["flag_f"] if forged else s["flag_a"]).append(bool(mask.any()))
                    if forged:
                        if mask.shape != truth.shape:
                            mask = cv2.resize(mask.astype(np.uint8), truth.shape[::-1],
                                              interpolation=cv2.INTER_NEAREST) > 0
                        s["iou"].append(pixel_scores(mask, truth).iou)
                print(f"{spec}: {i + 1}/{len(pairs)}", end="\r", file=sys.stderr, flush=True)
            print(file=sys.stderr)
            rows.append((spec, len(pairs), stats))

    print(f"the paper's variant ({VARIANTS[0].name}) gives the runtime's HDBSCAN labels on {same} of {total} images")

    def m(values: list) -> str:
        return f"{np.mean(values):.3f}" if values else "-"

    print("| set | images | clustering | >= 2 clusters | noise share | IoU (forged) | forged flagged "
          "| authentic flagged |")
    print("|---|---|---|---|---|---|---|---|")
    for spec, n, stats in rows:
        for name, s in stats.items():
            print(f"| {spec} | {n} | {name} | {m(s['split'])} | {m(s['noise'])} | {m(s['iou'])} | "
                  f"{m(s['flag_f'])} | {m(s['flag_a'])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
