"""``focal-detect --ray`` against the local ``focal-detect``: images/s on the same images, and Ray's cost per image.

Makes a temporary folder of ``--count`` images (the real samples repeated,
as hard links or copies: distinct files, so none is folded into another),
runs the local CLI's :func:`focal.runtime.cli.detect` on it, then
:func:`focal.serving.ray_job.detect_on_ray` with each ``--actors`` count on a
local Ray instance started once (its start-up is not counted; each job's
actor start-up and model loading are). Every run writes a fresh out folder
and is checked to have done every image. Prints, per run, the wall time,
images/s, and the overhead per image against the local run
(``(t_ray - t_local) / count``; negative when the pool is faster).

Usage::

    .venv/bin/python benchmarks/bench_ray.py                   # 32 images, 1 and 2 actors
    .venv/bin/python benchmarks/bench_ray.py --count 4         # a quick check that it runs
    .venv/bin/python benchmarks/bench_ray.py --actors 1 2 4 --cpus-per-actor 2

On a shared or small machine the figures say little (the local run uses
every core, each actor ``--cpus-per-actor``); compare on an idle one.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from focal.runtime.cli import DetectConfig, detect, quiet_opencv
from focal.runtime.default import default_artifact
from focal.runtime.detector import DetectorConfig

REPO = Path(__file__).resolve().parents[1]
SAMPLES = Path(os.environ.get("FOCAL_SHARED", REPO.parent / "shared")) / "data" / "real-samples" / "images"


def log(msg: str) -> None:
    print(msg, flush=True)


def make_inputs(source: Path, count: int, folder: Path) -> list[Path]:
    """``count`` distinct files in ``folder``, cycling over the images of ``source``."""
    images = sorted(p for p in source.iterdir() if p.is_file() and not p.name.startswith("."))
    if not images:
        raise SystemExit(f"bench_ray: {source}: no images")
    made = []
    for i in range(count):
        src = images[i % len(images)]
        dst = folder / f"{i:04d}-{src.name}"
        try:
            os.link(src, dst)
        except OSError:  # another file system, or no hard links here
            shutil.copy(src, dst)
        made.append(dst)
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=SAMPLES, help="folder of images to repeat")
    parser.add_argument("--count", type=int, default=32, help="images per run")
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2], help="actor pool sizes to run")
    parser.add_argument("--cpus-per-actor", type=float, default=1.0, help="Ray CPUs (and ORT threads) per actor")
    parser.add_argument("--address", default=None, help="an existing Ray cluster instead of a local instance")
    args = parser.parse_args(argv)
    if args.count < 1 or any(n < 1 for n in args.actors):
        parser.error("--count and --actors must be >= 1")
    try:
        from focal.serving.ray_job import RayConfig, detect_on_ray, require_ray, start_local_ray

        ray = require_ray()
    except Exception as exc:  # RayUnavailable
        log(f"bench_ray: {exc}")
        return 2
    quiet_opencv()
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        work = Path(tmp)
        (work / "in").mkdir()
        inputs = [str(p) for p in make_inputs(args.images, args.count, work / "in")]
        base = DetectConfig(artifact=default_artifact(), out=work / "out-local",
                            detector=DetectorConfig(backend="cpu"), default_model=True)
        log(f"bench_ray: {args.count} images from {args.images}, default model, ONNX Runtime CPU, "
            f"{os.cpu_count()} cores")
        local = detect(inputs, base)
        if local.done != args.count:
            log(f"bench_ray: the local run did {local.done} of {args.count}: {local.line()}")
            return 1
        rows = [("local CLI", local.seconds)]
        if args.address is None:
            start_local_ray()
        else:
            ray.init(address=args.address)
        try:
            for n in args.actors:
                cfg = DetectConfig(artifact=base.artifact, out=work / f"out-ray-{n}", detector=base.detector,
                                   default_model=True)
                summary = detect_on_ray(inputs, cfg, RayConfig(actors=n, cpus_per_actor=args.cpus_per_actor))
                if summary.done != args.count:
                    log(f"bench_ray: {n} actor(s) did {summary.done} of {args.count}: {summary.line()}")
                    return 1
                rows.append((f"Ray, {n} actor(s) x {args.cpus_per_actor:g} CPU", summary.seconds))
        finally:
            ray.shutdown()
    log("")
    log(f"{'run':<28} {'seconds':>8} {'images/s':>9} {'overhead ms/image vs local':>27}")
    for name, seconds in rows:
        overhead = (seconds - local.seconds) / args.count * 1e3
        log(f"{name:<28} {seconds:8.2f} {args.count / seconds:9.2f} {overhead:27.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
