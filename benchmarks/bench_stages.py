"""Where the native HDBSCAN spends its time on real feature maps.

Runs an artifact (the embedded default when none is given) on images, takes
each image's feature map, and times the native mutual-reachability MST
(distance products, core distances, Prim's loop, from ``mst()``'s own
counters) and the whole labelling (``cluster_features``), best of ``--repeat``
per map; prints one line per map and the medians over maps.

Usage::

    .venv/bin/python benchmarks/bench_stages.py [--artifact DIR] [--images PATH ...] [--repeat 5]

Default images: ``../shared/data/real-samples/images`` and the first 10
BSDS500 test photos.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", default=None, help="artifact folder (default: the embedded model)")
    parser.add_argument("--images", nargs="*", default=None, help="image files or folders")
    parser.add_argument("--repeat", type=int, default=5, help="runs per map (best is kept)")
    parser.add_argument("--min-cluster-size", type=int, default=200)
    args = parser.parse_args()

    from focal.runtime import Detector
    from focal.runtime import _native_api as na
    from focal.runtime.cluster import cluster_features
    from focal.runtime.cluster import normalize_rows
    from focal.runtime.inputs import collect_inputs
    from focal.runtime.imageio import read_image

    if not na.available():
        raise SystemExit("focal.runtime._native is not built (pip install . with a C++17 compiler)")
    photos = sorted(map(str, (SHARED / "natural/bsds500").glob("test_*.jpg")))[:10]
    jobs, _ = collect_inputs(args.images or [str(SHARED / "real-samples/images"), *photos])
    paths = [job.source for job in jobs]
    print(f"native core: {na.build_info()}; {len(paths)} images, best of {args.repeat}")
    rows = []
    with Detector(args.artifact, backend="cpu") as det:
        for path in paths:
            fmap = det.feature_map(read_image(path))
            x = normalize_rows(fmap.reshape(fmap.shape[0], -1).T.copy()).astype(np.float32)
            best, stats = float("inf"), {}
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                *_, st = na.mst(x, args.min_cluster_size)
                el = time.perf_counter() - t0
                if el < best:
                    best, stats = el, st
            full = float("inf")
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                cluster_features(x, "hdbscan", args.min_cluster_size, backend="native")
                full = min(full, time.perf_counter() - t0)
            row = (best, stats["seconds_gram"], stats["seconds_core"], stats["seconds_prim"], full)
            rows.append(row)
            print(f"{Path(path).name[:40]:40s} N={x.shape[0]} D={x.shape[1]} mst {best * 1e3:6.1f} ms (products "
                  f"{row[1] * 1e3:5.1f}, core {row[2] * 1e3:5.1f}, Prim's {row[3] * 1e3:5.1f}), labels {full * 1e3:6.1f} ms")
    med = [statistics.median(col) * 1e3 for col in zip(*rows)]
    print(f"median over {len(rows)} maps: mst {med[0]:.1f} ms = products {med[1]:.1f} + core {med[2]:.1f} + "
          f"Prim's {med[3]:.1f} (+ setup); full labels {med[4]:.1f} ms")


if __name__ == "__main__":
    main()
