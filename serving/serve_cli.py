"""``focal-serve``: serve an artifact behind NVIDIA Triton Inference Server.

    focal-serve [ARTIFACT | default] [--host 127.0.0.1] [--port 8000] [options]

HTTP on ``--port``, gRPC and Prometheus metrics on the next two ports
unless set. Runs until SIGINT or SIGTERM; in-flight requests get
``--drain`` seconds to finish. See :mod:`focal.serving.triton_server` for
the model's tensors.

Exit status: 0 stopped by a signal; 1 the server died while serving;
2 a usage, artifact, port or installation problem, found before serving.
"""

from __future__ import annotations

import ipaddress
import sys
from dataclasses import replace
from pathlib import Path

from focal._cli import (
    add_artifact, add_backend, add_batch_size, add_clustering, add_copy_move, add_double_jpeg, add_min_cluster_size,
    add_precision, make_parser, positive_int,
)
from focal.runtime.default import default_artifact
from focal.runtime.detector import DetectorConfig
from focal.runtime.manifest import load_manifest
from focal.serving._triton_env import ServeUnavailable
from focal.serving.triton_server import ServeConfig, ServeError, serve

EXIT_OK, EXIT_DIED, EXIT_USAGE = 0, 1, 2


def build_parser():
    """The ``focal-serve`` argument parser."""
    parser = make_parser("focal-serve", "Serve a FOCAL artifact behind NVIDIA Triton Inference Server "
                         "(KServe v2 over HTTP and gRPC, Prometheus metrics).",
                         epilog="exit status: 0 stopped by a signal, 1 the server died, 2 usage, artifact, port "
                                "or installation error (before serving)")
    add_artifact(parser, optional=True, help="artifact folder (with focal.json) or 'default' (the embedded model)")
    net = parser.add_argument_group("network")
    net.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0: every interface)")
    net.add_argument("--port", type=positive_int, default=8000, help="HTTP port")
    net.add_argument("--grpc-port", type=positive_int, default=None, metavar="N", help="gRPC port (default: --port + 1)")
    net.add_argument("--metrics-port", type=positive_int, default=None, metavar="N",
                     help="Prometheus metrics port (default: --port + 2)")
    model = parser.add_argument_group("model")
    model.add_argument("--model-name", default="focal", help="the model's name in the KServe v2 API")
    add_backend(model)
    add_precision(model)
    add_clustering(model, default=None, help="clustering method (default: the artifact's)")
    add_min_cluster_size(model, help="HDBSCAN's smallest cluster, >= 2 (default: the artifact's)")
    add_batch_size(model, help="images per engine call (more than 1 needs a dynamic-batch model)")
    add_copy_move(model, "the mask is the union; the copy_move output says per image whether one was found")
    add_double_jpeg(model, "the mask is the union; the double_jpeg output says per image 1 found, 0 double "
                           "compression without a region, -1 no evidence")
    model.add_argument("--heatmap", action="store_true",
                       help="also return each image's heatmap (a heatmap output: the features' forgery map as "
                            "0-255 levels on one fixed scale)")
    model.add_argument("--threads", type=positive_int, metavar="N", help="ONNX Runtime CPU threads (default: all cores)")
    model.add_argument("--no-verify", action="store_true",
                       help="run model files even if their sha256 differs from the manifest's (logged)")
    sched = parser.add_argument_group("scheduling (Triton's dynamic batcher)")
    sched.add_argument("--max-batch-size", type=positive_int, default=8, metavar="N",
                       help="Triton's max_batch_size: the most images its dynamic batcher gathers into one model call")
    sched.add_argument("--max-queue", type=positive_int, default=64, metavar="N",
                       help="requests waiting for the model; one more is rejected at once")
    sched.add_argument("--queue-delay-us", type=int, default=2000, metavar="US",
                       help="how long a batch waits for more requests")
    sched.add_argument("--queue-timeout-ms", type=int, default=0, metavar="MS",
                       help="reject a request that waited this long (0: no limit)")
    sched.add_argument("--instances", type=positive_int, default=2, metavar="N",
                       help="model instances sharing the detector: one clusters while another infers")
    sched.add_argument("--drain", type=int, default=5, metavar="S", help="seconds in-flight requests get on stop")
    parser.add_argument("--verbose", action="store_true", help="Triton's own log on stdout")
    return parser


def config_from_args(args) -> ServeConfig:
    """The :class:`ServeConfig` the parsed arguments ask for (the artifact resolved)."""
    if args.min_cluster_size is not None and args.min_cluster_size < 2:
        raise ServeError(f"--min-cluster-size must be >= 2, got {args.min_cluster_size}")
    artifact = default_artifact() if args.artifact in (None, "default") else Path(args.artifact)
    detector = DetectorConfig(backend=args.backend, precision=args.precision, clustering=args.clustering,
                              min_cluster_size=args.min_cluster_size, threads=args.threads,
                              batch_size=args.batch_size, verify=not args.no_verify, copy_move=args.copy_move,
                              double_jpeg=args.double_jpeg, heatmap=args.heatmap)
    return ServeConfig(artifact=artifact, detector=detector, host=args.host, http_port=args.port,
                       grpc_port=args.grpc_port, metrics_port=args.metrics_port, model_name=args.model_name,
                       max_batch=args.max_batch_size, max_queue=args.max_queue, queue_delay_us=args.queue_delay_us,
                       queue_timeout_ms=args.queue_timeout_ms, instances=args.instances, drain_s=args.drain,
                       verbose=args.verbose)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def main(argv: list[str] | None = None) -> int:
    """Console entry point of ``focal-serve``; returns the exit status (see the module notes)."""
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
        if not (cfg.artifact / "focal.json").is_file():
            raise ServeError(f"{cfg.artifact}: not an artifact (no focal.json; an artifact is a folder written "
                             "by focal-export)")
        if not _is_loopback(cfg.host):
            print(f"focal-serve: listening on {cfg.host}: reachable from other machines, and Triton's inference "
                  "endpoints have no authentication", file=sys.stderr)
        try:  # the cues the artifact's manifest turns on, where no flag said (the ready line names them)
            cfg = replace(cfg, detector=load_manifest(cfg.artifact).settle_cues(cfg.detector))
        except ValueError as exc:
            raise ServeError(str(exc)) from None
        http, grpc, metrics = cfg.ports

        def ready(url: str) -> None:
            search = ((" + copy-move search" if cfg.detector.copy_move else "")
                      + (" + double-JPEG cue" if cfg.detector.double_jpeg else ""))
            print(f"focal-serve: model '{cfg.model_name}' ({cfg.artifact}{search}) ready on {url} "
                  f"(gRPC {cfg.host}:{grpc}, metrics http://{cfg.host}:{metrics}/metrics)", file=sys.stderr, flush=True)

        code = serve(cfg, on_ready=ready)
    except (ServeError, ServeUnavailable) as exc:
        print(f"focal-serve: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK
    if code != EXIT_OK:
        print("focal-serve: Triton stopped unexpectedly (its log is above)", file=sys.stderr)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
