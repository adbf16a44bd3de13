"""``focal-detect``: forgery masks, overlays and scores for files, folders and globs.

    focal-detect [ARTIFACT | default] INPUT... --out DIR [options]

For each image it writes ``NAME.mask.png`` (255 = forged), ``NAME.overlay.png``
(the mask tinted over the image) and one line of ``results.jsonl``. A file
that cannot be read is reported on its line and on stderr and the run goes
on; the exit status is 1 if any input failed. Outputs are written
atomically; a re-run skips images already done unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from focal._cli import (
    add_artifact, add_backend, add_batch_size, add_clustering, add_json, add_min_cluster_size, add_precision,
    make_parser, positive_int,
)
from focal._files import list_images, write_atomic
from focal.runtime.default import default_artifact
from focal.runtime.detector import Detector, DetectorConfig, Result
from focal.runtime.imageio import read_image
from focal.runtime.manifest import MANIFEST_NAME
from focal._progress import Progress
from focal.runtime.render import overlay

RESULTS_NAME = "results.jsonl"


@dataclass(frozen=True)
class DetectJob:
    """One image to process and where its outputs go."""

    source: Path  # input file
    key: str  # output name stem, unique within the run (may contain '/')


def collect_inputs(inputs: list[str]) -> tuple[list[DetectJob], list[str]]:
    """Expand files, folders (recursively) and globs into jobs with unique output names.

    Returns:
        The jobs in a stable order, and the inputs that matched nothing.
    """
    jobs: list[DetectJob] = []
    unmatched: list[str] = []
    seen_keys: set[str] = set()
    seen_paths: set[Path] = set()

    def add(path: Path, key: str) -> None:
        resolved = path.resolve()
        if resolved in seen_paths:
            return
        seen_paths.add(resolved)
        unique, n = key, 2
        while unique in seen_keys:
            unique, n = f"{key}-{n}", n + 1
        seen_keys.add(unique)
        jobs.append(DetectJob(path, unique))

    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = list_images(path)
            for f in files:
                add(f, f.relative_to(path).with_suffix("").as_posix())
            if not files:
                unmatched.append(item)
        elif path.is_file():
            add(path, path.stem)  # named explicitly: kept whatever its extension
        else:
            matches = sorted(Path(m) for m in glob.glob(item, recursive=True) if Path(m).is_file())
            for f in matches:
                add(f, f.stem)
            if not matches:
                unmatched.append(item)
    return jobs, unmatched


def _png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def _load_previous(path: Path) -> dict[str, dict]:
    """Records of an earlier run, by source path (last one wins)."""
    records: dict[str, dict] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
                records[rec["path"]] = rec
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line cut by an interrupted run
    return records


def _record(job: DetectJob, result: Result | Exception) -> dict:
    if isinstance(result, Exception):
        return {"path": str(job.source), "error": str(result)}
    return {
        "path": str(job.source),
        "mask": f"{job.key}.mask.png",
        "overlay": f"{job.key}.overlay.png",
        "score": round(result.score, 6),
        "forged_fraction": round(result.forged_fraction, 6),
        "height": int(result.mask.shape[0]),
        "width": int(result.mask.shape[1]),
        "timings_ms": {k: round(v, 3) for k, v in result.timings.items()},
        "error": None,
    }


@dataclass(frozen=True)
class DetectConfig:
    """Everything ``focal-detect`` was asked to do."""

    artifact: Path  # artifact folder
    out: Path  # output folder
    detector: DetectorConfig  # engine, precision, clustering, batch
    overwrite: bool = False  # redo images whose outputs exist
    json_stdout: bool = False  # print each record as JSON on stdout


def detect(inputs: list[str], cfg: DetectConfig) -> int:
    """Run detection over ``inputs`` and write masks, overlays and ``results.jsonl``.

    Returns:
        The number of inputs that failed (unreadable files, globs matching nothing).
    """
    jobs, unmatched = collect_inputs(inputs)
    for item in unmatched:
        print(f"focal-detect: {item}: no such file, folder or matching image", file=sys.stderr)
    cfg.out.mkdir(parents=True, exist_ok=True)
    results_path = cfg.out / RESULTS_NAME
    previous = _load_previous(results_path)
    todo = []
    for job in jobs:
        rec = previous.get(str(job.source))
        done = (
            rec is not None and rec.get("error") is None
            and (cfg.out / f"{job.key}.mask.png").is_file() and (cfg.out / f"{job.key}.overlay.png").is_file()
        )
        if cfg.overwrite or not done:
            todo.append(job)
    skipped = len(jobs) - len(todo)
    failures = len(unmatched)
    records = dict(previous)
    progress = Progress(len(todo), "detect")
    if skipped:
        print(f"focal-detect: {skipped} image(s) already done in {cfg.out} (use --overwrite to redo)", file=sys.stderr)
    with Detector(cfg.artifact, cfg.detector) as det, results_path.open("a") as log:
        print(f"focal-detect: {det.manifest.extractor} {cfg.detector.precision} on {det.engine.name}, "
              f"clustering {det.clustering} ({det.cluster_backend})", file=sys.stderr)
        for job, result in zip(todo, det.detect_many(j.source for j in todo)):
            if isinstance(result, Result):
                try:
                    # Re-decoding for the overlay keeps the detector's memory flat on long runs.
                    image = read_image(
                        job.source, max_pixels=cfg.detector.max_pixels,
                        apply_orientation=cfg.detector.exif_orientation,
                    )
                    write_atomic(cfg.out / f"{job.key}.mask.png", _png(result.mask))
                    write_atomic(cfg.out / f"{job.key}.overlay.png", _png(overlay(image, result.mask)[:, :, ::-1]))
                except (OSError, ValueError) as exc:
                    result = exc
            rec = _record(job, result)
            if rec["error"] is not None:
                failures += 1
                print(f"focal-detect: {job.source}: {rec['error']}", file=sys.stderr)
            records[rec["path"]] = rec
            log.write(json.dumps(rec) + "\n")
            log.flush()
            if cfg.json_stdout:
                print(json.dumps(rec), flush=True)
            progress.step(job.source.name)
    progress.close()
    # Compact the log: one line per image, last result wins, written atomically.
    write_atomic(results_path, "".join(json.dumps(r) + "\n" for r in records.values()).encode())
    return failures


def _is_artifact(arg: str) -> bool:
    return arg == "default" or (Path(arg).is_dir() and (Path(arg) / MANIFEST_NAME).is_file())


def build_parser() -> argparse.ArgumentParser:
    """The ``focal-detect`` argument parser (choices from the runtime's registries)."""
    parser = make_parser("focal-detect", "FOCAL forgery localization on images (torch-free runtime).")
    add_artifact(parser, optional=True,
                 help="artifact folder (with focal.json) or 'default'; omitted, or not an artifact "
                      "(then it is the first INPUT): the embedded default model")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (recursive) or globs")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="output folder: NAME.mask.png, NAME.overlay.png, results.jsonl")
    add_backend(parser)
    add_precision(parser)
    add_clustering(parser, default=None, help="clustering method (default: the artifact's)")
    add_min_cluster_size(parser, help="HDBSCAN's smallest cluster (default: the artifact's)")
    add_batch_size(parser, help="images per engine call (more than 1 needs a dynamic-batch model)")
    parser.add_argument("--threads", type=positive_int, metavar="N",
                        help="ONNX Runtime CPU threads (default: all cores)")
    parser.add_argument("--low-memory", action="store_true",
                        help="turn ONNX Runtime's CPU memory arena off: about half the peak memory on big models, slower")
    parser.add_argument("--overwrite", action="store_true", help="redo images whose outputs exist")
    add_json(parser, "one record per image, as written to results.jsonl")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Console entry point of ``focal-detect``."""
    # Intermixed: `focal-detect ARTIFACT --out DIR a.jpg b.jpg` keeps every positional.
    args = build_parser().parse_intermixed_args(argv)
    inputs = list(args.inputs)
    artifact_arg = args.artifact or "default"
    if not _is_artifact(artifact_arg):
        inputs.insert(0, artifact_arg)  # an image path in the artifact's place: run the default model on it
        artifact_arg = "default"
    try:
        artifact = default_artifact() if artifact_arg == "default" else Path(artifact_arg)
        cfg = DetectConfig(
            artifact=artifact,
            out=args.out,
            detector=DetectorConfig(
                backend=args.backend, precision=args.precision, clustering=args.clustering,
                min_cluster_size=args.min_cluster_size, threads=args.threads, batch_size=args.batch_size,
                mem_arena=not args.low_memory,
            ),
            overwrite=args.overwrite,
            json_stdout=args.json,
        )
        failures = detect(inputs, cfg)
    except (FileNotFoundError, ValueError, ImportError) as exc:
        print(f"focal-detect: {exc}", file=sys.stderr)
        return 2
    return 1 if failures else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
