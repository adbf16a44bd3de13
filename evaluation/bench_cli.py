"""``focal-bench``: latency per stage, throughput and memory of an artifact vs. the PyTorch reference."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from focal._cli import make_parser
from focal.evaluation.bench import BenchConfig, bench, format_table, write_report
from focal.runtime.engines import BACKENDS
from focal.runtime.manifest import PRECISIONS


def main(argv: list[str] | None = None) -> int:
    """Console entry point of ``focal-bench``."""
    p = make_parser("focal-bench", "Benchmark the FOCAL runtime stage by stage against the PyTorch reference.")
    p.add_argument("artifact", help="artifact folder (focal.json)")
    p.add_argument("--reference", help="checkpoint of the same model, run in eager PyTorch on the same images")
    p.add_argument("--images", action="append", default=[], help="image files or folders (default: 4 synthetic 640x480)")
    p.add_argument("--backend", action="append", choices=[b for b in BACKENDS if b != "auto"],
                   help="repeatable; default: every backend available here")
    p.add_argument("--precision", action="append", choices=PRECISIONS, help="repeatable; default: all in the artifact")
    p.add_argument("--clustering", default="hdbscan", choices=["hdbscan", "kmeans"])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--threads", type=int)
    p.add_argument("--json", type=Path, default=Path("bench.json"), help="where to write the JSON report")
    args = p.parse_args(argv)
    cfg = BenchConfig(
        artifact=args.artifact, images=args.images, reference=args.reference, backends=args.backend,
        precisions=args.precision, clustering=args.clustering, batch=args.batch, warmup=args.warmup,
        repeat=args.repeat, threads=args.threads,
    )
    try:
        with tempfile.TemporaryDirectory(prefix="focal-bench-") as tmp:
            report = bench(cfg, Path(tmp))
    except (FileNotFoundError, ValueError) as exc:
        print(f"focal-bench: {exc}", file=sys.stderr)
        return 2
    write_report(report, args.json)
    print(format_table(report))
    print(f"focal-bench: wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
