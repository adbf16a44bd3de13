"""``focal-bench``: latency per stage, throughput and memory of an artifact vs. the PyTorch reference."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from focal._cli import (
    add_artifact, add_backend, add_batch_size, add_clustering, add_copy_move, add_double_jpeg, add_json, add_precision,
    make_parser, positive_int,
)
from focal.evaluation.bench import ARTIFACT_CHECKPOINT, BenchConfig, bench, format_table, write_report

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``focal-bench`` argument parser (choices from the runtime's registries)."""
    p = make_parser("focal-bench", "Benchmark the FOCAL runtime stage by stage against the PyTorch reference.")
    add_artifact(p, help="artifact folder (focal.json)")
    p.add_argument("--reference", metavar="CHECKPOINT", nargs="?", const=ARTIFACT_CHECKPOINT,
                   help="checkpoint of the same model, run in eager PyTorch on the same images; without a value, "
                        "the checkpoint the artifact carries (the embedded default carries one)")
    p.add_argument("--images", action="append", default=[], metavar="PATH",
                   help="image file or folder, repeatable (default: 4 synthetic 640x480)")
    add_backend(p, repeatable=True,
                help="engine backend, repeatable (auto: the fastest usable here; default: every backend usable here)")
    add_precision(p, repeatable=True, help="model precision, repeatable (default: all in the artifact)")
    add_clustering(p, help="clustering method timed")
    add_batch_size(p, help="images per engine call in the throughput pass (more than 1 needs a dynamic-batch model)")
    p.add_argument("--warmup", type=int, default=2, metavar="N", help="untimed runs before timing")
    p.add_argument("--repeat", type=positive_int, default=1, metavar="N", help="timed passes over the images")
    p.add_argument("--threads", type=positive_int, metavar="N",
                   help="ONNX Runtime and torch CPU threads (default: all cores)")
    add_copy_move(p, "every backend/precision is also timed with it on, beside the plain run (no cue)")
    add_double_jpeg(p, "every backend/precision is also timed with it on, beside the plain run (no cue)")
    p.add_argument("--report", type=Path, default=Path("bench.json"), metavar="PATH",
                   help="where to write the JSON report")
    add_json(p, "the report, instead of the Markdown table")
    return p


def main(argv: list[str] | None = None) -> int:
    """Console entry point of ``focal-bench``."""
    args = build_parser().parse_args(argv)
    cfg = BenchConfig(
        artifact=args.artifact, images=args.images, reference=args.reference, backends=args.backend,
        precisions=args.precision, clustering=args.clustering, batch=args.batch_size, warmup=args.warmup,
        repeat=args.repeat, threads=args.threads, copy_move=args.copy_move,
        double_jpeg=args.double_jpeg,
    )
    try:
        with tempfile.TemporaryDirectory(prefix="focal-bench-") as tmp:
            report = bench(cfg, Path(tmp))
    except (FileNotFoundError, ValueError) as exc:
        print(f"focal-bench: {exc}", file=sys.stderr)
        return 2
    write_report(report, args.report)
    if args.json:
        sys.stdout.write(args.report.read_text())
    else:
        print(format_table(report))
    print(f"focal-bench: wrote {args.report}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
