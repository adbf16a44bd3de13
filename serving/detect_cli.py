"""The ``focal-detect`` console script: the local run of :mod:`focal.runtime.cli`, or with ``--ray`` a Ray Data job.

    focal-detect [ARTIFACT | default] INPUT... --out DIR [options]
    focal-detect [ARTIFACT | default] INPUT... --out DIR --ray [ADDRESS] [--actors N] ...

Everything but the Ray options is :mod:`focal.runtime.cli`'s (same parser,
config, outputs, journal and exit status). It lives here, above the runtime,
because ``focal.runtime`` must not import ``focal.serving`` or ``ray``; ``ray``
is imported only when ``--ray`` is given (:mod:`focal.serving.ray_job`).
"""

from __future__ import annotations

import argparse
import re
import sys

from focal._cli import non_negative_float, positive_float, positive_int
from focal.runtime import cli
from focal.serving.ray_job import RayConfig  # imports no ray

# What `--ray X` takes as X: an address; anything else after a bare `--ray` is an INPUT (or the artifact).
_LOCAL = "local"
_ADDRESS = re.compile(r"auto|local|[a-z][a-z0-9+.-]*://\S+|[\w.\-]+:\d+|\[[0-9a-fA-F:]+\]:\d+")
_RAY_OPTIONS = {"actors": "--actors", "cpus_per_actor": "--cpus-per-actor", "gpus_per_actor": "--gpus-per-actor"}


def build_parser() -> argparse.ArgumentParser:
    """:func:`focal.runtime.cli.build_parser` plus the options of a Ray job."""
    parser = cli.build_parser()
    group = parser.add_argument_group("Ray Data (pip install 'focal[cpu,ray]'; docs/ray.md)")
    group.add_argument("--ray", nargs="?", const=_LOCAL, default=None, metavar="ADDRESS",
                       help="run the detection on Ray Data actors; ADDRESS 'auto', HOST:PORT or ray://HOST:10001 "
                            "is an existing cluster (the inputs on storage every node sees at the same path); without "
                            "it, a local Ray instance started for the job (loopback only, no dashboard)")
    group.add_argument("--actors", type=positive_int, default=None, metavar="N",
                       help=f"Ray actors, one model each (fixed pool; default: {RayConfig.actors})")
    group.add_argument("--cpus-per-actor", type=positive_float, default=None, metavar="C",
                       help="Ray CPUs per actor, also ONNX Runtime's threads unless --threads "
                            f"(default: {RayConfig.cpus_per_actor:g})")
    group.add_argument("--gpus-per-actor", type=non_negative_float, default=None, metavar="G",
                       help="Ray GPUs per actor; > 0 needs --backend cuda, tensorrt or tensorrt-ep "
                            f"(default: {RayConfig.gpus_per_actor:g})")
    return parser


def _bare_ray_flag(argv: list[str]) -> list[str]:
    """``--ray`` followed by something that is no address takes no value (``--ray photos/`` keeps the input)."""
    out = list(argv)
    for i, token in enumerate(out):
        if token == "--":
            break
        if token == "--ray" and (i + 1 == len(out) or not _ADDRESS.fullmatch(out[i + 1])):
            out[i] = f"--ray={_LOCAL}"
    return out


def main(argv: list[str] | None = None) -> int:
    """Console entry point of ``focal-detect``; returns the exit status (see :mod:`focal.runtime.cli`)."""
    parser = build_parser()
    try:
        args = cli.parse_args(parser, _bare_ray_flag(sys.argv[1:] if argv is None else argv))
    except KeyboardInterrupt:
        print("focal-detect: interrupted before any image was done", file=sys.stderr)
        return cli.EXIT_INTERRUPTED
    if args.ray is None:
        given = [flag for dest, flag in _RAY_OPTIONS.items() if getattr(args, dest) is not None]
        if given:
            parser.error(f"{', '.join(given)} need(s) --ray")
        return cli.run_and_report(args, cli.detect)
    try:
        from focal.serving.ray_job import detect_on_ray, require_ray

        require_ray()
    except cli.SetupError as exc:  # RayUnavailable: names the extra to install
        print(f"focal-detect: {exc}", file=sys.stderr)
        return cli.EXIT_USAGE
    options = {dest: getattr(args, dest) for dest in _RAY_OPTIONS if getattr(args, dest) is not None}
    ray_cfg = RayConfig(address=None if args.ray == _LOCAL else args.ray, **options)
    return cli.run_and_report(args, lambda inputs, cfg: detect_on_ray(inputs, cfg, ray_cfg))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
