"""Parity and latency of FP32 / FP16 / INT8 exports against eager PyTorch.

For the ``lite`` and ``hrnet`` backbones at 512 px (by default): export the
three ONNX graphs with ``focal.export.export``, then verify each on real
forgeries with ONNX Runtime's CPU provider, clustering with cosine k-means
(k = 2, every mask non-empty) and with HDBSCAN (the paper's default), and
print one table.

Weights: ``lite`` has its real ImageNet encoder and a random (seeded) neck.
A randomly initialised HRNet's activations reach ~1e9 (no normalisation
statistics), which no FP16 or INT8 graph can represent, so its BatchNorm
statistics are first re-estimated on natural photos (``--bn-images``) and
the result is exported as one of our checkpoints; its convolutions stay
random. Neither model is trained for forensics: the masks compare the
artifacts with the reference, not with the ground truth.

Usage::

    .venv/bin/python benchmarks/export_parity.py [--size 512] [--backbones lite hrnet] [--images N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FOCAL_SHARED", REPO.parent / "shared"))


def recalibrated_hrnet(photos: Path, size: int, count: int, out: Path) -> Path:
    """A seeded random HRNet whose BatchNorm statistics come from ``count`` photos; saved as our checkpoint."""
    import torch
    from torch import nn

    from focal.calibration import FolderReader
    from focal.training import build_extractor, save_checkpoint

    torch.manual_seed(0)
    model = build_extractor("hrnet")
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over every batch seen
    model.train()
    with torch.no_grad():
        for batch in FolderReader(photos, size, limit=count, batch=4, jpeg_qualities=(None,)):
            model(torch.from_numpy(batch["image"]))
    model.eval()
    return save_checkpoint(model, out / "hrnet-bn-recalibrated.safetensors", extra={"note": "random convs, BN stats from photos"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--backbones", nargs="+", default=["lite", "hrnet"])
    parser.add_argument("--images", type=int, default=11, help="verification images (real forgeries)")
    parser.add_argument("--calib-count", type=int, default=32, help="calibration photos (BSDS500, cycled JPEG qualities)")
    parser.add_argument("--bn-images", type=int, default=32, help="photos for HRNet's BatchNorm statistics")
    parser.add_argument("--out", default=None, help="keep the artifacts here (default: a temporary folder)")
    parser.add_argument("--reuse", action="store_true", help="verify artifacts already in --out instead of exporting")
    parser.add_argument("--hdbscan-points", type=int, default=4096,
                        help="HDBSCAN column only for feature maps up to this many points (its cost grows as N^2)")
    args = parser.parse_args(argv)

    from focal.export import ExportConfig, VerifyConfig, export, verify
    from focal.runtime.manifest import load_manifest

    photos = SHARED / "data/natural/bsds500"
    forgeries = SHARED / "data/real-samples/images"
    tmp = tempfile.TemporaryDirectory(prefix="focal-bench-")
    root = Path(args.out or tmp.name)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for backbone in args.backbones:
        t0 = time.perf_counter()
        out = root / backbone
        if not (args.reuse and (out / "focal.json").is_file()):
            weights: tuple[str, ...] = ()
            if backbone == "hrnet":
                ckpt = root / "hrnet-bn-recalibrated.safetensors"
                reuse = args.reuse and ckpt.is_file()
                weights = (str(ckpt if reuse else recalibrated_hrnet(photos, args.size, args.bn_images, root)),)
            export(ExportConfig(
                backbone=backbone, weights=weights, input_size=args.size, fp16=True, int8=True, calib=str(photos),
                calib_count=args.calib_count, out=str(out), calib_cache=str(root / "calib-cache"),
            ), progress=lambda m: print(f"  {backbone}: {m}", file=sys.stderr, flush=True))
        manifest = load_manifest(out)
        sizes = {m.file: (out / m.file).stat().st_size for m in manifest.models}
        say = lambda m: print(f"  {backbone}: {m}", file=sys.stderr, flush=True)  # noqa: E731
        kmeans = verify(out, forgeries, config=VerifyConfig(clustering="kmeans", limit=args.images), progress=say)
        hd: dict = {}
        if manifest.output.height * manifest.output.width <= args.hdbscan_points:
            hdb = verify(out, forgeries, config=VerifyConfig(clustering="hdbscan", limit=args.images), progress=say)
            hd = {(r.artifact, r.backend): r for r in hdb.rows}
        for r in kmeans.rows:
            rows.append((backbone, r, hd.get((r.artifact, r.backend)), sizes.get(r.artifact, 0)))
        int8 = manifest.model("onnx", "int8")
        print(f"  {backbone}: done in {time.perf_counter() - t0:.0f} s; INT8 kept in float: "
              f"{', '.join(int8.excluded_nodes)}; FP16 kept FP32: {len(manifest.model('onnx', 'fp16').excluded_nodes)} "
              f"nodes ({', '.join(manifest.model('onnx', 'fp16').fp32_ops)})", file=sys.stderr)

    print(f"\nFOCAL export parity and latency, {args.size} px, ONNX Runtime CPU ({os.cpu_count()} cores) vs eager PyTorch, "
          f"{args.images} real forgeries; masks vs the PyTorch reference's")
    head = (f"{'backbone':<8} {'precision':<9} {'run':<18} {'MB':>6} {'cos mean':>9} {'cos min':>8} "
            f"{'IoU kmeans':>10} {'IoU min':>8} {'labels':>7} {'score Δ':>8} {'IoU hdbscan':>11} "
            f"{'ORT ms':>7} {'torch ms':>8} {'speed-up':>8}")
    print(head)
    print("-" * len(head))
    for backbone, r, h, size in rows:
        run = "fp16 storage emu" if "emu" in r.backend else "ORT CPU"
        lat = f"{r.latency_ms:7.1f}" if r.latency_ms else f"{'-':>7}"
        speed = f"{r.reference_ms / r.latency_ms:7.2f}x" if r.latency_ms else f"{'-':>8}"
        print(f"{backbone:<8} {r.precision:<9} {run:<18} {size / 1e6:6.1f} {r.cosine_mean:9.6f} {r.cosine_min:8.4f} "
              f"{r.iou_mean:10.4f} {r.iou_min:8.4f} {r.labels_same:7.4f} {r.score_diff_max:8.4f} "
              f"{(f'{h.iou_mean:11.4f}' if h else f'{chr(45):>11}')} "
              f"{lat} {r.reference_ms:8.1f} {speed}")
    print("\nWhat each run checked:")
    seen = set()
    for backbone, r, _, _ in rows:
        if (backbone, r.artifact, r.backend) not in seen:
            seen.add((backbone, r.artifact, r.backend))
            print(f"  {backbone} {r.artifact} [{r.backend}]: {r.checked}")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
