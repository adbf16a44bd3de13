"""``focal-eval``: metrics of an artifact or checkpoint on datasets (a thin layer over :func:`evaluate`)."""

from __future__ import annotations

import sys

from focal._cli import make_parser
from focal.runtime.engines import BACKENDS
from focal.evaluation.evaluate import EvalConfig, evaluate
from focal.runtime.manifest import PRECISIONS


def main(argv: list[str] | None = None) -> int:
    """Console entry point of ``focal-eval``."""
    p = make_parser("focal-eval", "Evaluate FOCAL localisation (pixel F1/IoU/AUC, image AUC, false alarms).")
    p.add_argument("model", help="artifact folder (focal.json) or checkpoint (.safetensors, or the authors' .pth)")
    p.add_argument("--data", action="append", required=True,
                   help="dataset: folder with images/ (+ masks/), .npy or .json list; repeatable")
    p.add_argument("--out", required=True, help="output folder (resumable)")
    p.add_argument("--clustering", default="hdbscan",
                   help="comma-separated methods, the first is the headline (hdbscan,kmeans)")
    p.add_argument("--min-cluster-size", type=int)
    p.add_argument("--backend", default="auto", choices=BACKENDS)
    p.add_argument("--precision", default="fp32", choices=PRECISIONS)
    p.add_argument("--backbone", help="backbone of an authors' .pth checkpoint (vit, hrnet)")
    p.add_argument("--input-size", type=int, help="checkpoint input size (default: the backbone's)")
    p.add_argument("--robustness", action="store_true", help="also under JPEG, blur, noise and down-scaling")
    p.add_argument("--compare", help="a second model (checkpoint or artifact) compared on the same images")
    p.add_argument("--limit", type=int, help="at most N images per dataset")
    args = p.parse_args(argv)
    methods = [m.strip() for m in args.clustering.split(",") if m.strip()]
    bad = [m for m in methods if m not in ("hdbscan", "kmeans")]
    if bad or not methods:
        p.error(f"--clustering: unknown method(s) {bad}; use hdbscan and/or kmeans")
    cfg = EvalConfig(
        model=args.model, data=args.data, out=args.out, clustering=methods, min_cluster_size=args.min_cluster_size,
        backend=args.backend, precision=args.precision, backbone=args.backbone, robustness=args.robustness,
        compare=args.compare, limit=args.limit, input_size=args.input_size,
    )
    try:
        summary = evaluate(cfg)
    except (FileNotFoundError, ValueError, ImportError) as exc:
        print(f"focal-eval: {exc}", file=sys.stderr)
        return 2
    from pathlib import Path

    print(Path(args.out, "table.md").read_text())
    print(f"focal-eval: wrote {args.out}/metrics.json, metrics.csv, table.md, grid_*.png"
          + (", robustness.png" if "robustness" in summary else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
