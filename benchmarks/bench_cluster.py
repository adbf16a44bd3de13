"""Clustering latency: the native core against the NumPy/hdbscan reference, in one run.

Prints, for each benchmarked size (N = 4096 at D = 256 and 288, 16384 at
D = 32, 65536 at D = 32), the time of

* the ``hdbscan`` package's default ``HDBSCAN(min_cluster_size=200)``,
* the reference path (``focal.runtime.cluster``: the package's ``generic``
  algorithm up to 16384 points, exact ``prims_balltree`` above),
* the native core (``focal.runtime._native_api``),

the ratios between them, whether the final forged/pristine labels agree
(adjusted Rand index), and each configuration's peak memory. Every
configuration runs in its own subprocess (its own max RSS; a slow reference
is stopped at ``--limit`` seconds and reported as such, never extrapolated
silently). Then the end-to-end share of clustering for the ``lite`` backbone
at 512 on ONNX Runtime CPU (exported here from the ``train`` extra's weights;
skipped with the reason where torch or onnxruntime is missing).

Usage::

    .venv/bin/python benchmarks/bench_cluster.py            # everything (~15-25 min on 2 cores)
    .venv/bin/python benchmarks/bench_cluster.py --quick    # N = 4096 only, package default skipped
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from typing import Any

import numpy as np

MIN_CLUSTER_SIZE = 200


def log(msg: str) -> None:
    print(msg, flush=True)


# -------------------------------------------------------------------- data


def feature_map(n_side: int, dim: int, seed: int) -> np.ndarray:
    """A seeded n_side x n_side map shaped like a forgery's features: a smooth
    pristine source and two forged rectangles from other sources, each with
    its own noise level; rows L2-normalised, row-major pixels."""
    rng = np.random.default_rng(seed)
    h = w = n_side
    src = np.zeros((h, w), dtype=np.int64)
    src[h // 8 : h // 8 + h // 3, w // 6 : w // 6 + w // 3] = 1
    src[h // 2 : h // 2 + h // 4, w // 2 : w // 2 + w // 3] = 2
    centres = rng.normal(size=(3, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    freq = rng.uniform(0, 2, size=(dim, 3))
    smooth = np.stack([np.sin(2 * np.pi * (a * yy + b * xx) + c) for a, b, c in freq], -1)
    spreads = np.array([0.7, 0.9, 1.1])[src][..., None]
    feats = centres[src] + 0.15 * smooth / np.sqrt(dim) + spreads * rng.normal(size=(h, w, dim)) / np.sqrt(dim)
    feats = feats.reshape(h * w, dim).astype(np.float32)
    return feats / np.linalg.norm(feats, axis=1, keepdims=True)


# ---------------------------------------------------------------- workers


def _work(kind: str, feats: np.ndarray, repeat: int, threads: int) -> dict[str, Any]:
    """Runs one configuration; returns seconds (per repeat), labels, max RSS."""
    import warnings

    warnings.simplefilter("ignore")
    out: dict[str, Any] = {"seconds": []}
    for _ in range(repeat):
        start = time.perf_counter()
        if kind == "package_default":
            import hdbscan

            raw = hdbscan.HDBSCAN(min_cluster_size=MIN_CLUSTER_SIZE).fit(feats.astype(np.float64)).labels_
            from focal.runtime.cluster import labels_from_clusters, normalize_rows

            labels = labels_from_clusters(raw, normalize_rows(feats))
        elif kind == "reference":
            from focal.runtime.cluster import cluster_features

            labels = cluster_features(feats, "hdbscan", MIN_CLUSTER_SIZE, backend="reference")
        elif kind == "native":
            from focal.runtime.cluster import cluster_features

            labels = cluster_features(feats, "hdbscan", MIN_CLUSTER_SIZE, backend="native", num_threads=threads)
        elif kind == "reference_kmeans":
            from focal.runtime.cluster import cluster_features

            labels = cluster_features(feats, "kmeans", backend="reference")
        elif kind == "native_kmeans":
            from focal.runtime.cluster import cluster_features

            labels = cluster_features(feats, "kmeans", backend="native")
        else:
            raise ValueError(kind)
        out["seconds"].append(time.perf_counter() - start)
    out["labels"] = labels
    if kind == "native":
        from focal.runtime import _native_api as na

        out["stats"] = na.mst(feats, MIN_CLUSTER_SIZE, num_threads=threads)[4]
    out["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _child(conn: Any, kind: str, feats: np.ndarray, repeat: int, threads: int) -> None:
    try:
        conn.send(("ok", _work(kind, feats, repeat, threads)))
    except BaseException:  # report, do not hang the parent
        conn.send(("error", traceback.format_exc()))


@dataclass
class Run:
    kind: str
    status: str  # "ok", "timeout", "error", "skipped"
    seconds: float | None = None  # best of the repeats
    median: float | None = None
    labels: np.ndarray | None = None
    max_rss_mb: float | None = None
    stats: dict[str, Any] | None = None
    note: str = ""


def run(kind: str, feats: np.ndarray, repeat: int, limit: float, threads: int) -> Run:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, kind, feats, repeat, threads))
    start = time.perf_counter()
    proc.start()
    child.close()
    if not parent.poll(limit):
        proc.terminate()
        proc.join()
        return Run(kind, "timeout", note=f"stopped after {time.perf_counter() - start:.0f} s")
    status, payload = parent.recv()
    proc.join()
    if status != "ok":
        return Run(kind, "error", note=payload.strip().splitlines()[-1])
    secs = payload["seconds"]
    return Run(kind, "ok", min(secs), statistics.median(secs), payload["labels"], payload["max_rss_mb"],
               payload.get("stats"))


def fmt_time(r: Run) -> str:
    if r.status == "ok":
        return f"{r.seconds * 1e3:10.1f} ms" if r.seconds < 10 else f"{r.seconds:10.1f} s "
    if r.status == "timeout":
        return f"{'> limit':>13}"
    return f"{r.status:>13}"


# ------------------------------------------------------------ end to end


def end_to_end(threads: int, repeat: int) -> None:
    log("\n== end-to-end share of clustering: `lite` at 512, ONNX Runtime CPU ==")
    try:
        import onnxruntime as ort
        import torch  # noqa: F401 - only to export the graph here

        from focal.export.onnx import export_onnx
        from focal.training import build_extractor
    except ImportError as exc:
        log(f"skipped: {exc} (needs the `train` and `cpu` extras)")
        return
    import cv2

    from focal.runtime import _native_api as na
    from focal.runtime.cluster import cluster_features, normalize_rows
    from focal.runtime.postprocess import labels_to_mask
    from focal.runtime.preprocess import to_input

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "lite512.onnx")
        log("exporting lite (ImageNet weights + neck) to ONNX at 512 ...")
        export_onnx(build_extractor("lite"), path, 512)
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        # ONNX Runtime's pool spins after each run by default, holding the cores
        # the clustering that follows needs; the runtime should not spin either.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        # A photo-like 640 x 480 image with a pasted patch.
        rng = np.random.default_rng(0)
        base = cv2.GaussianBlur(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), (0, 0), 6)
        other = cv2.GaussianBlur(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), (0, 0), 2)
        image = base.copy()
        image[120:300, 200:420] = other[120:300, 200:420]
        times: dict[str, list[float]] = {k: [] for k in ("preprocess", "infer", "normalise", "cluster_native",
                                                          "cluster_reference", "kmeans_native",
                                                          "kmeans_reference", "postprocess")}
        for i in range(repeat + 1):
            t0 = time.perf_counter()
            x = to_input(image, 512)[None]
            t1 = time.perf_counter()
            feats = session.run(None, {name: x})[0][0]
            t2 = time.perf_counter()
            d, h, w = feats.shape
            flat = normalize_rows(feats.reshape(d, h * w).T)
            t3 = time.perf_counter()
            lab_n = cluster_features(flat, "hdbscan", MIN_CLUSTER_SIZE, backend="native", num_threads=threads)
            t4 = time.perf_counter()
            lab_r = cluster_features(flat, "hdbscan", MIN_CLUSTER_SIZE, backend="reference")
            t5 = time.perf_counter()
            km_n = cluster_features(flat, "kmeans", backend="native")
            t6 = time.perf_counter()
            km_r = cluster_features(flat, "kmeans", backend="reference")
            t7 = time.perf_counter()
            labels_to_mask(lab_n.reshape(h, w), image.shape[0], image.shape[1])
            t8 = time.perf_counter()
            if i == 0:
                if not (np.array_equal(lab_n, lab_r) and np.array_equal(km_n, km_r)):
                    log("WARNING: native and reference labels differ on the lite features")
                continue  # warm-up
            for key, a, b in (("preprocess", t0, t1), ("infer", t1, t2), ("normalise", t2, t3),
                              ("cluster_native", t3, t4), ("cluster_reference", t4, t5),
                              ("kmeans_native", t5, t6), ("kmeans_reference", t6, t7), ("postprocess", t7, t8)):
                times[key].append(b - a)
        med = {k: statistics.median(v) for k, v in times.items()}
        log(f"feature map {d} x {h} x {w} (N = {h * w}, D = {d}); medians of {repeat} runs; labels identical: "
            f"{np.array_equal(lab_n, lab_r) and np.array_equal(km_n, km_r)}")
        for k, v in med.items():
            log(f"  {k:18s} {v * 1e3:9.1f} ms")
        rest = med["preprocess"] + med["infer"] + med["normalise"] + med["postprocess"]
        for label, key in (("HDBSCAN native", "cluster_native"), ("HDBSCAN reference", "cluster_reference"),
                           ("k-means native", "kmeans_native"), ("k-means reference", "kmeans_reference")):
            total = rest + med[key]
            log(f"  share of clustering, {label:18s}: {100 * med[key] / total:5.1f} % of {total * 1e3:.1f} ms end to end")


# ------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 4096 only; no package default")
    parser.add_argument("--limit", type=float, default=600.0, help="seconds before a reference run is stopped")
    parser.add_argument("--threads", type=int, default=0, help="native threads (0 = default)")
    parser.add_argument("--repeat", type=int, default=5, help="native repeats (best and median shown)")
    parser.add_argument("--no-e2e", action="store_true", help="skip the end-to-end lite measurement")
    args = parser.parse_args()

    from sklearn.metrics import adjusted_rand_score

    from focal.runtime import _native_api as na

    if not na.available():
        sys.exit("focal.runtime._native is not built: nothing to compare (pip install . with a C++17 compiler)")
    info = na.build_info()
    log(f"native core: {info}; cpus {os.cpu_count()}; load average {os.getloadavg()}")
    log(f"min_cluster_size = {MIN_CLUSTER_SIZE}; reference runs stop after {args.limit:.0f} s")

    cases = [(64, 256), (64, 288)] if args.quick else [(64, 256), (64, 288), (128, 32), (256, 32)]
    rows = []
    for side, dim in cases:
        n = side * side
        feats = feature_map(side, dim, seed=n + dim)
        log(f"\n== N = {n} ({side} x {side}), D = {dim} ==")
        log("native ...")
        nat = run("native", feats, args.repeat, args.limit, args.threads)
        log(f"  native: best {fmt_time(nat)}, median {nat.median * 1e3 if nat.median else float('nan'):.1f} ms, "
            f"max RSS {nat.max_rss_mb or 0:.0f} MB, stats {nat.stats}")
        log("reference (focal.runtime.cluster) ...")
        ref = run("reference", feats, 1, args.limit, args.threads)
        log(f"  reference: {fmt_time(ref)} {ref.note} max RSS {ref.max_rss_mb or 0:.0f} MB")
        if args.quick:
            pkg = Run("package_default", "skipped", note="skipped (--quick)")
        else:
            log("package default HDBSCAN(min_cluster_size=200) ...")
            pkg = run("package_default", feats, 1, args.limit, args.threads)
        log(f"  package default: {fmt_time(pkg)} {pkg.note}")
        ari = None
        if ref.status == "ok" and nat.status == "ok":
            ari = adjusted_rand_score(ref.labels, nat.labels)
            same = np.array_equal(ref.labels, nat.labels)
            log(f"  final labels identical: {same} (ARI {ari:.4f}); forged fraction {nat.labels.mean():.3f}")
        rows.append((n, dim, pkg, ref, nat, ari))

    log("\n== summary (native: best of repeats; ratios measured in this run) ==")
    log(f"{'N':>6} {'D':>4} | {'package default':>15} | {'reference':>13} | {'native':>13} | "
        f"{'x vs default':>12} | {'x vs reference':>14} | {'ARI':>5} | native max RSS")
    for n, dim, pkg, ref, nat, ari in rows:
        def ratio(r: Run) -> str:
            if r.status == "ok" and nat.status == "ok":
                return f"{r.seconds / nat.seconds:10.0f}x"
            if r.status == "timeout" and nat.status == "ok":
                return f"> {args.limit / nat.seconds:.0f}x"
            return "-"
        log(f"{n:>6} {dim:>4} | {fmt_time(pkg):>15} | {fmt_time(ref):>13} | {fmt_time(nat):>13} | "
            f"{ratio(pkg):>12} | {ratio(ref):>14} | {ari if ari is None else round(ari, 3)!s:>5} | "
            f"{nat.max_rss_mb or 0:.0f} MB")
    for n, dim, pkg, ref, _, _ in rows:
        for r in (pkg, ref):
            if r.status != "ok":
                log(f"note: N = {n}, D = {dim}, {r.kind}: {r.status} {r.note}")

    if not args.no_e2e:
        end_to_end(args.threads, args.repeat)


if __name__ == "__main__":
    main()
