"""``ExportConfig``: everything ``focal-export`` / :func:`focal.export.export` is asked to do."""

from __future__ import annotations

from dataclasses import dataclass

from focal.calibration.methods import CALIBRATION_METHODS
from focal.runtime.manifest import CUES

__all__ = ["MIN_OPSET", "ExportConfig", "SYNTHETIC"]

# Lowest ONNX opset the exporter writes (LayerNormalization as one op). Here, not in
# focal.export.onnx, so that the CLI's argument parsing imports no onnx.
MIN_OPSET = 17

# `calib` value selecting the synthetic forgery generator (optionally "synthetic:PHOTO_DIR").
SYNTHETIC = "synthetic"


@dataclass(frozen=True)
class ExportConfig:
    """One export: which model, which precisions, which checks."""

    backbone: str  # registry name, or members joined by '+' for a fusion (one graph, fused map)
    weights: tuple[str, ...] = ()  # our .safetensors, an authors' .pth, or one file per fusion member; () = random/packaged
    input_size: int | None = None  # square side S; None = the extractor's own (1024 vit/hrnet, 512 lite)
    batch: int = 1  # batch of the graph (static), or the optimum of a dynamic one
    dynamic_batch: bool = False  # symbolic batch axis (TensorRT gets an optimisation profile)
    # "square" (stretched to S x S, the release's) or "native" (aspect kept, long side capped at
    # max_side, padded to the stride; the graph takes any height and width)
    input_policy: str = "square"
    max_side: int | None = None  # native: cap of the longer side (default 2 x S)
    max_points: int = 4096  # native: most feature cells clustered (pooled down to it)
    out: str = "focal-export"  # artifact folder (focal.json + model files)
    opset: int = MIN_OPSET  # ONNX opset, >= 17
    seed: int = 0  # seeds random weights (no --weights) and the parity input
    fp16: bool = False  # also write model.fp16.onnx
    fp16_keep: tuple[str, ...] = ()  # node names / globs kept FP32 in the FP16 graph, beyond the default policy
    int8: bool = False  # also write model.int8.onnx (needs calib)
    calib: str | None = None  # INT8 calibration: a folder of images, "synthetic" or "synthetic:PHOTO_DIR"
    calib_count: int = 64  # calibration images used
    calib_method: str = "minmax"  # one of CALIBRATION_METHODS
    calib_cache: str | None = None  # calibration cache folder; None = ~/.cache/focal/calibration
    int8_exclude: tuple[str, ...] = ()  # node names / globs left unquantized
    int8_keep_stem: bool = True  # leave the first Conv (sees pixels) unquantized
    int8_keep_head: bool = True  # leave the last Conv/MatMul (the feature head) unquantized
    # with int8: also model.int8.cpu.onnx, the same nodes with uint8 asymmetric activations, which
    # ONNX Runtime's CPU provider runs instead (its S8S8 path is slower than FP32 on x86)
    int8_cpu: bool = True
    engine: bool = False  # also build TensorRT engines for the exported precisions (GPU + TensorRT only)
    workspace_gb: float = 4.0  # TensorRT builder workspace limit
    timing_cache: str | None = None  # TensorRT timing cache file; None = ~/.cache/focal/tensorrt/
    max_batch: int | None = None  # TensorRT profile maximum for a dynamic batch
    verify: str | None = None  # folder or file of images to verify parity on
    verify_limit: int = 16  # at most this many verification images
    clustering: str = "hdbscan"  # clustering used in the manifest default and by verification
    min_cluster_size: int = 200  # HDBSCAN's smallest cluster (manifest default, verification)
    # training-free cues (focal.runtime.manifest.CUES) the artifact's decision joins by default; ()
    # keeps the paper's rule. A run still turns each on or off (--double-jpeg / --no-double-jpeg)
    cues: tuple[str, ...] = ()
    precision_report: bool = False  # per-block sensitivity of FP16/INT8 (needs verify images or calib)
    # also write the exported weights as checkpoint.safetensors (+ .json) into the artifact, listed in
    # the manifest: fine-tuning from the artifact, `focal-bench --reference` without a path
    checkpoint: bool = False
    report_images: int = 4  # images the precision report runs on

    def __post_init__(self) -> None:
        if not self.backbone:
            raise ValueError("backbone must be given (a registry name or 'a+b')")
        if self.input_size is not None and self.input_size < 8:
            raise ValueError(f"input_size must be >= 8, got {self.input_size}")
        if self.batch < 1:
            raise ValueError(f"batch must be >= 1, got {self.batch}")
        if self.opset < MIN_OPSET:
            raise ValueError(f"opset must be >= {MIN_OPSET}, got {self.opset}")
        if self.int8 and not self.calib:
            raise ValueError("--int8 needs calibration data: --calib DIR (images) or --calib synthetic")
        if any(c not in CUES for c in self.cues) or len(set(self.cues)) != len(self.cues):
            raise ValueError(f"cues must be distinct names from {CUES}, got {list(self.cues)}")
        if self.calib_method not in CALIBRATION_METHODS:
            raise ValueError(f"unknown calibration method {self.calib_method!r}; choose one of {CALIBRATION_METHODS}")
        if self.calib_count < 1:
            raise ValueError(f"calib_count must be >= 1, got {self.calib_count}")
        if self.verify_limit < 1 or self.report_images < 1:
            raise ValueError("verify_limit and report_images must be >= 1")
        if self.max_batch is not None and self.max_batch < self.batch:
            raise ValueError(f"max_batch {self.max_batch} is below batch {self.batch}")
        if self.input_policy not in ("square", "native"):
            raise ValueError(f"unknown input policy {self.input_policy!r}; choose 'square' or 'native'")
        if self.input_policy == "native":
            if "+" in self.backbone:
                raise ValueError("--input-policy native exports one backbone; a fusion needs 'square'")
            from focal.runtime.geometry import check_native
            from focal.training.backbones import backbone_info

            info = backbone_info(self.backbone)
            if info.fixed_input_size:
                raise ValueError(f"{self.backbone}: its weights hold one input size (position embeddings), so it "
                                 "needs --input-policy square")
            if self.max_side is not None:
                check_native(self.max_side, info.stride)  # the cap must be the largest input exactly (TensorRT max)
            if self.batch != 1:
                # A static batch > 1 would make every call pad to that many images of one shape; a dynamic
                # batch axis lets the runtime stack the images of one shape, any number of them.
                raise ValueError("--input-policy native takes a graph batch of 1, or a dynamic one "
                                 "(--dynamic-graph-batch), never a static --graph-batch above 1")
            if self.max_side is not None and self.max_side < 8:
                raise ValueError(f"max_side must be >= 8, got {self.max_side}")
            if self.max_points < self.min_cluster_size:
                raise ValueError(f"max_points {self.max_points} is below min_cluster_size {self.min_cluster_size}")
        if self.precision_report and not (self.verify or self.calib):
            raise ValueError("--precision-report needs images: give --verify IMAGES or --calib")
