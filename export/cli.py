"""``focal-export``: parse arguments into an :class:`ExportConfig` and call :func:`export`.

Examples::

    focal-export --backbone vit --fp16
    focal-export --backbone lite --input-size 512 --fp16 --int8 --calib photos/ --verify samples/
    focal-export --backbone vit+hrnet --weights FOCAL_ViT_weights.pth FOCAL_HRNet_weights.pth --fp16 --engine
    focal-export --backbone lite --weights best.safetensors --out lite --triton lite-triton
    focal-export --from-artifact lite --triton lite-triton --triton-features python   # no export, no torch

``--triton DIR`` also writes a Triton model repository from the artifact
(:func:`focal.serving.triton_repo.write_repository`, docs/triton.md);
``--from-artifact ARTIFACT`` skips the export and writes it from an
existing artifact: that path builds its own parser and never imports torch.

Exit codes: 0 done; 1 verification below the parity thresholds; 2 bad
arguments or inputs; 3 ``--engine`` on a machine without TensorRT or a GPU
(the ONNX files and the manifest are written all the same).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from focal._cli import add_clustering, add_min_cluster_size, make_parser, positive_int
from focal.calibration.methods import CALIBRATION_METHODS
from focal.export.config import MIN_OPSET, ExportConfig
from focal.runtime.manifest import CUES

if TYPE_CHECKING:
    from focal.serving.triton_repo import TritonRepoConfig

__all__ = ["build_parser", "build_triton_parser", "config_from_args", "main", "triton_config_from_args"]

FROM_ARTIFACT = "--from-artifact"


def build_parser() -> argparse.ArgumentParser:
    """The ``focal-export`` argument parser (backbone choices from the registry)."""
    from focal.training.backbones import backbone_info, list_backbones

    known = ", ".join(f"{n} ({backbone_info(n).description})" for n in list_backbones())
    parser = make_parser("focal-export", "Export a FOCAL extractor to ONNX (FP32/FP16/INT8) and TensorRT engines.")
    model = parser.add_argument_group("model")
    model.add_argument("--backbone", required=True, metavar="NAME",
                       help=f"registry name, or names joined by '+' for a fusion (one graph, fused map). Known: {known}")
    model.add_argument("--weights", nargs="+", default=[], metavar="PATH",
                       help="our .safetensors checkpoint, an authors' .pth, or one file per fusion member "
                            "(required unless --random-weights)")
    model.add_argument("--random-weights", action="store_true",
                       help="export seeded random weights (lite keeps its ImageNet encoder): for tests and "
                            "benchmarks only, its masks mean nothing; the manifest records it")
    model.add_argument("--input-size", type=int, default=None, metavar="N", help="square input side (default: the backbone's)")
    model.add_argument("--graph-batch", type=positive_int, default=1, metavar="N",
                       help="the graph's batch axis: its size, or the optimum of a dynamic one")
    model.add_argument("--dynamic-graph-batch", action="store_true",
                       help="symbolic batch axis in the graph (height/width stay static)")
    model.add_argument("--opset", type=int, default=MIN_OPSET, metavar="N", help=f"ONNX opset (>= {MIN_OPSET})")
    model.add_argument("--seed", type=int, default=0, metavar="N", help="seed of random weights and of the parity input")
    model.add_argument("--checkpoint", action="store_true",
                       help="also write the weights into the artifact as checkpoint.safetensors (+ .json): "
                            "fine-tune from the artifact, focal-bench --reference without a path")
    model.add_argument("--input-policy", choices=("square", "native"), default="square",
                       help="'square': stretch to --input-size (the release's); 'native': keep the aspect, cap the "
                            "long side at --max-side, pad to the stride (graphs with dynamic height and width; "
                            "TensorRT profile stride x stride .. N x N)")
    model.add_argument("--max-side", type=int, default=None, metavar="N",
                       help="native: cap of the longer side, a multiple of the stride (default: 2 x --input-size)")
    model.add_argument("--max-points", type=int, default=4096, metavar="N",
                       help="native: most feature cells clustered; larger maps are average-pooled down to it")
    model.add_argument("--out", default=None, metavar="DIR", help="artifact folder (default: focal-BACKBONE-SIZE)")

    prec = parser.add_argument_group("precision")
    prec.add_argument("--fp16", action="store_true", help="also write model.fp16.onnx (fragile ops kept FP32)")
    prec.add_argument("--fp16-keep", action="append", default=[], metavar="NODE",
                      help="node name or glob also kept FP32 in the FP16 graph (repeatable)")
    prec.add_argument("--int8", action="store_true", help="also write model.int8.onnx (explicit symmetric Q/DQ)")
    prec.add_argument("--calib", default=None, metavar="DIR|synthetic[:DIR]",
                      help="INT8 calibration images: a folder, or synthetic forgeries made from the photos in DIR "
                           "('synthetic' alone: $FOCAL_PHOTOS)")
    prec.add_argument("--calib-count", type=positive_int, default=64, metavar="N", help="calibration images")
    prec.add_argument("--calib-method", choices=CALIBRATION_METHODS, default="minmax", help="activation range rule")
    prec.add_argument("--calib-cache", default=None, metavar="DIR",
                      help="calibration cache (default: $FOCAL_CACHE/calibration, else ~/.cache/focal/calibration)")
    prec.add_argument("--int8-exclude", action="append", default=[], metavar="NODE",
                      help="node name or glob left unquantized (repeatable)")
    prec.add_argument("--int8-quantize-stem", action="store_true", help="also quantize the first Conv (sees pixels)")
    prec.add_argument("--int8-quantize-head", action="store_true", help="also quantize the last Conv/MatMul (feature head)")
    prec.add_argument("--no-int8-cpu", action="store_true",
                      help="skip model.int8.cpu.onnx (uint8 activations, what ONNX Runtime's CPU provider runs fastest)")

    eng = parser.add_argument_group("TensorRT")
    eng.add_argument("--engine", action="store_true", help="build TensorRT engines for the exported precisions")
    eng.add_argument("--workspace", type=float, default=4.0, metavar="GB", help="builder workspace limit")
    eng.add_argument("--timing-cache", default=None, metavar="FILE",
                     help="timing cache reused across builds (default: one per GPU and TensorRT version, cached)")
    eng.add_argument("--max-graph-batch", type=positive_int, default=None, metavar="N",
                     help="largest batch of a --dynamic-graph-batch engine profile (default: 2 x --graph-batch, >= 4)")

    chk = parser.add_argument_group("checks")
    chk.add_argument("--verify", default=None, metavar="IMAGES", help="folder or file of images: parity of every artifact")
    chk.add_argument("--verify-limit", type=positive_int, default=16, metavar="N", help="at most N verification images")
    add_clustering(chk, default=ExportConfig.clustering, decisions=False,
                   help="clustering method: the artifact's default, and the one verification uses")
    add_min_cluster_size(chk, default=ExportConfig.min_cluster_size,
                         help="HDBSCAN's smallest cluster: the artifact's default, and verification's")
    chk.add_argument("--cue", dest="cues", action="append", choices=CUES, default=[], metavar="NAME",
                     help=f"a training-free cue ({', '.join(CUES)}) the artifact's decision joins to its mask by "
                          "default, as the embedded default does double-jpeg (repeat for several; default: none, "
                          "the paper's rule); focal-detect --no-NAME still turns it off")
    chk.add_argument("--precision-report", action="store_true",
                     help="per-block sensitivity: which blocks, kept FP32 / unquantized, recover most parity")
    chk.add_argument("--report-images", type=positive_int, default=4, metavar="N", help="images per precision-report variant")
    _add_triton_options(parser, standalone=False)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines, only the summary")
    return parser


def _add_triton_options(parser: argparse.ArgumentParser, standalone: bool) -> None:
    """The Triton model repository group; ``standalone``: the ``--from-artifact`` parser, where both are required."""
    from focal.runtime.manifest import PRECISIONS
    from focal.serving.triton_repo import FEATURES_BACKENDS, INSTANCE_KINDS  # torch-free, like the runtime

    tri = parser.add_argument_group("Triton model repository (docs/triton.md)")
    tri.add_argument("--triton", required=standalone, default=None, metavar="DIR",
                     help="also write a Triton model repository (preprocess, features, postprocess, ensemble) "
                          "from the artifact to DIR")
    tri.add_argument(FROM_ARTIFACT, required=standalone, default=None, metavar="ARTIFACT",
                     help="skip the export: write --triton from this existing artifact ('default': the embedded "
                          "model); imports no torch")
    tri.add_argument("--triton-features", choices=FEATURES_BACKENDS, default="onnxruntime",
                     help="the features model: Triton's onnxruntime or tensorrt backend, or a Python-backend model "
                          "on focal.runtime's ONNX Runtime engine (servers with only the Python backend)")
    tri.add_argument("--triton-precision", choices=PRECISIONS, default="fp32",
                     help="which of the artifact's models the features model serves")
    tri.add_argument("--triton-name", default="focal", metavar="PREFIX",
                     help="model names: PREFIX (the ensemble), PREFIX_preprocess, PREFIX_features, PREFIX_postprocess")
    tri.add_argument("--triton-instance-kind", choices=INSTANCE_KINDS, default="auto",
                     help="features model instances: KIND_GPU or KIND_CPU ('auto': GPU for onnxruntime/tensorrt, "
                          "CPU for python)")
    tri.add_argument("--triton-instances", type=positive_int, default=1, metavar="N",
                     help="features model instances (per GPU with KIND_GPU)")
    tri.add_argument("--triton-queue-delay-us", type=int, default=100, metavar="US",
                     help="dynamic batcher: longest wait for more requests to join a batch, microseconds")
    tri.add_argument("--triton-max-queue", type=int, default=64, metavar="N",
                     help="requests queued per model before new ones are rejected (0: unbounded)")
    tri.add_argument("--triton-python-env", default=None, metavar="PATH",
                     help="EXECUTION_ENV_PATH of the Python models: a conda-pack tarball or unpacked environment "
                          "with focal installed (default: the server's own Python, which needs focal)")
    # Spelled --triton-* as the group's other options: it configures the written repository, while the
    # shared --copy-move (focal._cli) means a search this run does.
    tri.add_argument("--triton-copy-move", action=argparse.BooleanOptionalAction, default=None,
                     help="the postprocess model also searches each image for copy-moves (as focal-detect "
                          "--copy-move): the mask is the union, the ensemble's copy_move output says whether one "
                          "was found")
    # Spelled --triton-* for the same reason as --triton-copy-move.
    tri.add_argument("--triton-double-jpeg", action=argparse.BooleanOptionalAction, default=None,
                     help="the postprocess model also looks in each JPEG file for regions that missed its first "
                          "compression (as focal-detect --double-jpeg): the mask is the union, the ensemble's "
                          "double_jpeg output says 1 found, 0 double compression without a region, -1 no evidence (default for "
                          "both: as the artifact's manifest lists its cues)")
    tri.add_argument("--triton-heatmap", action="store_true",
                     help="the postprocess model and the ensemble also output each image's heatmap (uint8 levels of "
                          "the features' forgery map, as focal-serve --heatmap)")
    tri.add_argument("--triton-overwrite", action="store_true", help="replace DIR if it is not empty")


def build_triton_parser() -> argparse.ArgumentParser:
    """The ``focal-export --from-artifact`` parser: the Triton options only (no backbone registry, no torch)."""
    parser = make_parser("focal-export", "Write a Triton model repository from an existing FOCAL artifact "
                                         "(no export; the full tool is focal-export --backbone ...).")
    _add_triton_options(parser, standalone=True)
    parser.add_argument("-q", "--quiet", action="store_true", help="no summary line")
    return parser


def triton_config_from_args(args: argparse.Namespace) -> TritonRepoConfig:
    """Turn parsed ``--triton-*`` arguments into a ``TritonRepoConfig`` (its validation applies)."""
    from focal.serving.triton_repo import TritonRepoConfig

    return TritonRepoConfig(
        prefix=args.triton_name, features=args.triton_features, precision=args.triton_precision,
        instance_kind=args.triton_instance_kind, instance_count=args.triton_instances,
        queue_delay_us=args.triton_queue_delay_us, max_queue_size=args.triton_max_queue,
        python_env=args.triton_python_env, copy_move=args.triton_copy_move,
        double_jpeg=args.triton_double_jpeg, heatmap=args.triton_heatmap, overwrite=args.triton_overwrite,
    )


def _write_triton(artifact: str, args: argparse.Namespace) -> int:
    """Write ``args.triton`` from ``artifact``; one summary line, or one error line and exit code 2."""
    from focal.serving.triton_repo import model_names, repository_config, write_repository

    try:
        cfg = repository_config(artifact, triton_config_from_args(args))  # the summary names the cues it runs
        out = write_repository(artifact, args.triton, cfg)
    except (ValueError, FileNotFoundError, OSError) as exc:
        print(f"focal-export: error: --triton: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        names = model_names(cfg.prefix)
        print(f"Triton repository {out}: {names['ensemble']} (ensemble: image -> mask, score), "
              f"{names['preprocess']}, {names['features']} ({cfg.features}, {cfg.precision}), {names['postprocess']}"
              + (" (+ copy-move search)" if cfg.copy_move else "")
              + (" (+ double-JPEG cue)" if cfg.double_jpeg else ""))
    return 0


def _from_artifact_requested(argv: list[str]) -> bool:
    # Spelled in full only: the decision is taken before any parser (and its torch imports) exists.
    return any(a == FROM_ARTIFACT or a.startswith(FROM_ARTIFACT + "=") for a in argv)


def config_from_args(args: argparse.Namespace) -> ExportConfig:
    """Turn parsed arguments into an :class:`ExportConfig` (its validation applies)."""
    out = args.out or f"focal-{args.backbone.replace('+', '-')}-{args.input_size or 'default'}"
    return ExportConfig(
        backbone=args.backbone, weights=tuple(args.weights), input_size=args.input_size, batch=args.graph_batch,
        dynamic_batch=args.dynamic_graph_batch, out=out, opset=args.opset, seed=args.seed,
        input_policy=args.input_policy, max_side=args.max_side, max_points=args.max_points,
        fp16=args.fp16, fp16_keep=tuple(args.fp16_keep), int8=args.int8, calib=args.calib,
        calib_count=args.calib_count, calib_method=args.calib_method, calib_cache=args.calib_cache,
        int8_exclude=tuple(args.int8_exclude), int8_keep_stem=not args.int8_quantize_stem,
        int8_keep_head=not args.int8_quantize_head, int8_cpu=not args.no_int8_cpu, engine=args.engine,
        workspace_gb=args.workspace,
        timing_cache=args.timing_cache, max_batch=args.max_graph_batch, verify=args.verify, verify_limit=args.verify_limit,
        clustering=args.clustering, min_cluster_size=args.min_cluster_size, precision_report=args.precision_report,
        report_images=args.report_images, checkpoint=args.checkpoint, cues=tuple(args.cues),
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``focal-export``; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if _from_artifact_requested(argv):
        args = build_triton_parser().parse_args(argv)
        return _write_triton(args.from_artifact, args)

    from focal.export.pipeline import export
    from focal.export.tensorrt import EngineUnavailable

    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.weights and not args.random_weights:
        parser.error("no --weights: the exported model would have a random head and find nothing; "
                     "pass --weights CHECKPOINT, or --random-weights for tests and benchmarks")
    if args.weights and args.random_weights:
        parser.error("--weights and --random-weights exclude each other")
    if args.from_artifact:  # reached only through an abbreviation of the option
        parser.error(f"{FROM_ARTIFACT} skips the export: spell it in full, without --backbone")
    try:
        cfg = config_from_args(args)
        if args.triton:
            triton_config_from_args(args)  # a bad Triton option fails now, not after the export
    except ValueError as exc:
        parser.error(str(exc))  # exits 2 with the usage line

    def progress(msg: str) -> None:
        if not args.quiet:
            print(f"focal-export: {msg}", file=sys.stderr, flush=True)

    try:
        result = export(cfg, progress=progress)
    except EngineUnavailable as exc:
        partial = getattr(exc, "result", None)
        if partial is not None:
            print(partial.summary())
        print(f"focal-export: error: {exc} (the ONNX files and focal.json in {cfg.out} were written"
              + (f"; no Triton repository: run focal-export {FROM_ARTIFACT} {cfg.out} --triton {args.triton}"
                 if args.triton else "") + ")", file=sys.stderr)
        return 3
    except (ValueError, FileNotFoundError, ImportError) as exc:
        print(f"focal-export: error: {exc}", file=sys.stderr)
        return 2
    print(result.summary())
    if args.triton and _write_triton(cfg.out, args) != 0:
        return 2
    if result.verification is not None and not result.verification.passed:
        print("focal-export: verification: some artifacts are below the parity thresholds", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
