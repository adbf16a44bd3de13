"""``focal-calibrate``: fit an artifact's ``split`` decision on untouched photos (a thin layer over :func:`fit_split`).

    focal-calibrate ARTIFACT --photos heldout.json [--photos more/] [--false-alarm 0.1] [--default]

Writes ``clustering.split_threshold`` (and what it was fitted on) into
``ARTIFACT/focal.json``; ``--default`` also makes ``split`` the artifact's
default clustering. Exit codes: 0 fitted; 2 bad arguments or inputs, or a
manifest that cannot be written (one line naming the file; the manifest is
left as it was).
"""

from __future__ import annotations

import argparse
import json
import sys

from focal._cli import add_artifact, add_backend, add_json, add_precision, make_parser, positive_int
from focal._progress import Progress
from focal.calibration.decision import SplitFitConfig, fit_split

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``focal-calibrate`` argument parser."""
    p = make_parser("focal-calibrate", "Fit the 'split' decision's threshold of a FOCAL artifact to a false-alarm "
                                       "rate on untouched photos (docs/evaluation.md, 'The split decision').")
    add_artifact(p, help="artifact folder (focal.json); its manifest is updated in place")
    p.add_argument("--photos", action="append", required=True, metavar="DATASET",
                   help="untouched photos: a folder, or a .json/.npy list (e.g. focal-synth --authentic-list); "
                        "training-side photos, never the sets you measure on; repeatable")
    p.add_argument("--false-alarm", type=float, default=0.1, metavar="ALPHA",
                   help="share of untouched photos the rule may flag")
    p.add_argument("--default", action="store_true", help="also make 'split' the artifact's default clustering")
    p.add_argument("--limit", type=positive_int, metavar="N", help="at most N photos")
    add_backend(p, help="engine backend that computes the scores")
    add_precision(p, help="which of the artifact's models scores the photos")
    add_json(p, "the calibration record written")
    return p


def main(argv: list[str] | None = None) -> int:
    """Console entry point of ``focal-calibrate``."""
    args = build_parser().parse_args(argv)
    bar: Progress | None = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        bar = bar or Progress(total, "focal-calibrate: photos")
        bar.step()

    try:
        cfg = SplitFitConfig(artifact=args.artifact, photos=tuple(args.photos), false_alarm=args.false_alarm,
                             make_default=args.default, backend=args.backend, precision=args.precision,
                             limit=args.limit)
        record = fit_split(cfg, progress=progress)
    except (OSError, ValueError, ImportError) as exc:  # OSError: also a manifest that cannot be rewritten
        if bar is not None:
            bar.close()
        print(f"focal-calibrate: {exc}", file=sys.stderr)  # the last line, after the progress
        return 2
    if bar is not None:
        bar.close()
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        print(f"{args.artifact}: split threshold {record['threshold']:.4f}, the {1 - record['false_alarm']:g} "
              f"quantile of the split score over {record['photos']} photos ({record['flagged']:.1%} of them flagged)"
              + ("; 'split' is now the default" if args.default else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
