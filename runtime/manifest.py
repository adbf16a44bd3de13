"""The artifact manifest (``focal.json``): everything the runtime needs to know.

An artifact is a folder holding one or more model files (ONNX graphs in
several precisions, TensorRT engines built from them) and ``focal.json``.
The export side writes it (``focal.export``), the runtime only reads it:
input size, preprocessing, output shape and the clustering defaults are
stated here once and never hard-coded a second time.

Layout of ``focal.json`` (version 4; versions 1-3, without ``target``,
``checkpoint``, the split threshold or ``cues``, are read too)::

    {
      "format": "focal-artifact", "version": 4,
      "extractor": "vit+hrnet",                 # registry name(s), '+' = fusion
      "members": [{"name": "vit", "feature_dim": 256, "stride": 16}, ...],
      "fusion": "concat-l2-nearest" | null,      # fused inside the graph
      "input": {"name": "image", "size": 1024, "color": "RGB", "scale": 1/255,
                "mean": null, "std": null, "resize": "bilinear", "keep_aspect": false,
                "dynamic_batch": false, "batch": 1},
      "output": {"name": "features", "feature_dim": 288, "height": 64, "width": 64},
      "models": [{"file": "model.onnx", "kind": "onnx", "precision": "fp32",
                  "sha256": "...", "onnx_sha256": null, "fp32_ops": [], "excluded_nodes": [],
                  "tensorrt": null, "gpu": null, "compute_capability": null, "calibration": null,
                  "external_data": null, "external_sha256": null, "target": null}],
      "clustering": {"method": "hdbscan", "min_cluster_size": 200,
                     "split_threshold": 0.41 | null, "split_calibration": {...} | null},
      "cues": ["double-jpeg"],                   # joined to the mask by default (CUES); [] = the paper's
      "checkpoint": {"file": "checkpoint.safetensors", "sha256": "...", "origin": "..."} | null,
      "tools": {"focal": "0.1.0", "torch": "...", "onnx": "...", "opset": 17},
      "source": {"weights": "...", "weights_sha256": "..."}
    }
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from focal._files import write_atomic
from focal.runtime.geometry import INPUT_POLICIES, check_native

_Options = TypeVar("_Options")
MANIFEST_NAME = "focal.json"
ARTIFACT_FORMAT = "focal-artifact"
ARTIFACT_VERSION = 4  # 2: ModelFile.target; 3: checkpoint, clustering.split_*; 4: cues
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")
MODEL_KINDS: tuple[str, ...] = ("onnx", "tensorrt")
TARGETS: tuple[str, ...] = ("cpu",)  # ModelFile.target values besides None
# Training-free cues an artifact's decision may join to its clustering's mask by default
# (focal.runtime.copymove, focal.runtime.doublejpeg); a run can still turn each on or off.
CUES: tuple[str, ...] = ("copy-move", "double-jpeg")


@dataclass(frozen=True)
class MemberSpec:
    """One backbone inside the artifact."""

    name: str  # registry name of the backbone
    feature_dim: int  # D of its own map
    stride: int  # input side / its map side


@dataclass(frozen=True)
class InputSpec:
    """How an image becomes the network input (the release's preprocessing by default)."""

    name: str = "image"  # graph input name
    size: int = 1024  # square side S
    color: str = "RGB"  # channel order fed to the network
    scale: float = 1.0 / 255.0  # uint8 -> float multiplier
    mean: list[float] | None = None  # per-channel mean subtracted after scaling (None: none)
    std: list[float] | None = None  # per-channel std divided after (None: none)
    resize: str = "bilinear"  # OpenCV interpolation used to reach S x S
    keep_aspect: bool = False  # the release stretches to a square
    # "square" (stretched to size x size, the release's) or "native" (long side capped at
    # max_side, aspect kept, padded to the stride; see focal.runtime.geometry)
    policy: str = "square"
    max_side: int | None = None  # native: cap of the longer side, pixels
    max_points: int = 4096  # native: most feature cells clustered (pooled down to it)
    dynamic_batch: bool = False  # whether the batch axis is symbolic
    batch: int = 1  # static batch size (or the optimum one when dynamic)
    max_batch: int | None = None  # dynamic: the TensorRT profile's largest batch (None: no engine limit)


@dataclass(frozen=True)
class OutputSpec:
    """The feature map the graph returns, ``[B, feature_dim, height, width]`` float32."""

    name: str = "features"  # graph output name
    feature_dim: int = 0  # D (the sum of the members' for a fusion)
    height: int = 0  # h (at the nominal input size under "native", whose graph takes any size)
    width: int = 0  # w


@dataclass(frozen=True)
class ModelFile:
    """One runnable file of the artifact."""

    file: str  # path relative to the artifact folder
    kind: str  # "onnx" or "tensorrt"
    precision: str  # "fp32", "fp16" or "int8"
    sha256: str  # of the file itself
    onnx_sha256: str | None = None  # engines: the ONNX graph they were built from
    fp32_ops: list[str] = field(default_factory=list)  # op types kept in FP32 in a lower-precision graph
    excluded_nodes: list[str] = field(default_factory=list)  # node names left unquantized / in FP32
    tensorrt: str | None = None  # engines: TensorRT version that built them
    gpu: str | None = None  # engines: GPU name
    compute_capability: str | None = None  # engines: "8.7" etc.
    calibration: dict[str, Any] | None = None  # int8: what the calibration set was
    external_data: str | None = None  # ONNX saved with external data (past 2 GB): its weights file, relative
    external_sha256: str | None = None  # of that weights file (checked on open, as ``sha256``)
    # None: for every backend (the TensorRT-ready graph); "cpu": a variant tuned for ONNX Runtime's CPU
    # provider, which that backend prefers (INT8 with uint8 asymmetric activations: VNNI-friendly)
    target: str | None = None


@dataclass(frozen=True)
class ClusteringSpec:
    """Defaults of the clustering step (overridable at run time)."""

    method: str = "hdbscan"  # "hdbscan", "kmeans" or "split"
    min_cluster_size: int = 200  # HDBSCAN's smallest cluster
    # "split": flag an image when its k-means split's score exceeds this, the (1 - alpha) quantile of
    # the score over untouched photos (focal.calibration.decision); None: not fitted, "split" refused
    split_threshold: float | None = None
    split_calibration: dict[str, Any] | None = None  # what it was fitted on: photos, alpha, quantile


@dataclass(frozen=True)
class CheckpointFile:
    """The PyTorch checkpoint an artifact carries (fine-tuning, ``focal-bench --reference``)."""

    file: str  # relative to the artifact folder; its ``.json`` config lies beside it
    sha256: str  # of the ``.safetensors`` file, checked before it loads
    origin: str  # how it was made, e.g. "training" or "recovered from model.onnx"


@dataclass(frozen=True)
class Manifest:
    """The parsed ``focal.json``."""

    extractor: str
    members: list[MemberSpec]
    input: InputSpec
    output: OutputSpec
    models: list[ModelFile]
    fusion: str | None = None
    clustering: ClusteringSpec = ClusteringSpec()
    # the cues (CUES) joined to the mask unless a run says otherwise; [] (the paper's rule) when absent
    cues: list[str] = field(default_factory=list)
    checkpoint: CheckpointFile | None = None
    tools: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    format: str = ARTIFACT_FORMAT
    version: int = ARTIFACT_VERSION

    def cue(self, name: str, asked: bool | None = None) -> bool:
        """Whether a run joins the cue ``name`` (one of CUES): ``asked`` where
        the run said (True / False), else whether the artifact lists it."""
        if name not in CUES:
            raise ValueError(f"unknown cue {name!r}; choose one of {CUES}")
        return name in self.cues if asked is None else asked

    def settle_cues(self, options: _Options) -> _Options:
        """``options`` (any config dataclass with ``copy_move`` and
        ``double_jpeg`` fields: ``DetectorConfig``, ``TritonRepoConfig``,
        ``EvalConfig``) with each cue left ``None`` decided by :meth:`cue`."""
        return replace(options, copy_move=self.cue("copy-move", options.copy_move),  # type: ignore[type-var]
                       double_jpeg=self.cue("double-jpeg", options.double_jpeg))

    def model(self, kind: str = "onnx", precision: str = "fp32", target: str | None = None) -> ModelFile:
        """The model file of that kind, precision and target (None: the
        general one, e.g. the graph TensorRT engines are built from).

        Raises:
            ValueError: none such; the message lists what the artifact has.
        """
        for m in self.models:
            if m.kind == kind and m.precision == precision and m.target == target:
                return m
        have = ", ".join(f"{m.kind}/{m.precision}" + (f"/{m.target}" if m.target else "") for m in self.models)
        raise ValueError(f"artifact has no {kind} model in {precision}"
                         + (f" for {target}" if target else "") + f" (it has: {have or 'nothing'})")

    def model_for(self, backend: str, precision: str) -> ModelFile:
        """The ONNX model a backend runs: ONNX Runtime's CPU provider takes
        the ``target="cpu"`` variant where the artifact has one, every other
        backend (and the CPU without one) the general graph.

        Raises:
            ValueError: the artifact has no ONNX model in that precision.
        """
        if backend == "cpu":
            for m in self.models:
                if m.kind == "onnx" and m.precision == precision and m.target == "cpu":
                    return m
        return self.model("onnx", precision)

    def entry(self, file: str) -> ModelFile:
        """The model entry of that file name.

        Raises:
            ValueError: no such entry; the message lists the artifact's files.
        """
        for m in self.models:
            if m.file == file:
                return m
        raise ValueError(f"artifact has no model file {file!r} (it has: {', '.join(m.file for m in self.models)})")

    def with_model(self, entry: ModelFile) -> "Manifest":
        """A copy with ``entry`` added, replacing one of the same file name."""
        models = [m for m in self.models if m.file != entry.file] + [entry]
        return replace(self, models=models)

    def to_json(self) -> str:
        """The manifest as pretty JSON text."""
        return json.dumps(asdict(self), indent=2) + "\n"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _build(cls: type, raw: dict[str, Any], where: str) -> Any:
    known = set(cls.__dataclass_fields__)
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"{where}: unknown fields {sorted(unknown)}")
    try:
        return cls(**raw)
    except TypeError as exc:
        raise ValueError(f"{where}: {exc}") from exc


def _check_clustering(clustering: ClusteringSpec, where: str) -> None:
    """A split threshold is a score (in [0, 1]); "split" as the default needs one."""
    t = clustering.split_threshold
    if t is not None and not (isinstance(t, (int, float)) and 0.0 <= t <= 1.0):
        raise ValueError(f"{where}: clustering split_threshold must be a number in [0, 1], got {t!r}")
    if clustering.method == "split" and t is None:
        raise ValueError(f"{where}: clustering method 'split' needs a split_threshold")


def _check_policy(inp: InputSpec, members: list[MemberSpec], clustering: ClusteringSpec, where: str) -> None:
    """Refuses input policies this runtime cannot run, before any model is opened."""
    if inp.policy not in INPUT_POLICIES:
        raise ValueError(f"{where}: unknown input policy {inp.policy!r}; this runtime knows {INPUT_POLICIES}")
    if inp.policy != "native":
        return
    if len(members) != 1:
        raise ValueError(f"{where}: input policy 'native' runs one extractor; a fusion needs 'square'")
    try:  # one rule for the cap, geometry's: at least the stride and a multiple of it
        check_native(inp.max_side, members[0].stride)
    except ValueError as exc:
        raise ValueError(f"{where}: input.max_side: {exc}") from None
    if inp.max_points < clustering.min_cluster_size:
        raise ValueError(f"{where}: input.max_points {inp.max_points} is below the minimum cluster size "
                         f"{clustering.min_cluster_size}: no forged cluster could ever form")


def parse_manifest(raw: dict[str, Any], where: str = MANIFEST_NAME) -> Manifest:
    """Validate and convert a decoded ``focal.json``.

    Raises:
        ValueError: wrong format marker, newer version, unknown or missing
            fields, unknown precisions or kinds.
    """
    if raw.get("format") != ARTIFACT_FORMAT:
        raise ValueError(f"{where}: not a focal artifact manifest (format={raw.get('format')!r})")
    if int(raw.get("version", 0)) > ARTIFACT_VERSION:
        raise ValueError(f"{where}: manifest version {raw.get('version')} is newer than this focal reads")
    raw = dict(raw)
    try:
        members = [_build(MemberSpec, m, f"{where} members") for m in raw.pop("members")]
        inp = _build(InputSpec, raw.pop("input"), f"{where} input")
        out = _build(OutputSpec, raw.pop("output"), f"{where} output")
        models = [_build(ModelFile, m, f"{where} models") for m in raw.pop("models")]
        clustering = _build(ClusteringSpec, raw.pop("clustering", {}), f"{where} clustering")
        checkpoint = raw.pop("checkpoint", None)
        if checkpoint is not None:
            checkpoint = _build(CheckpointFile, checkpoint, f"{where} checkpoint")
    except KeyError as exc:
        raise ValueError(f"{where}: missing field {exc}") from None
    _check_policy(inp, members, clustering, where)
    _check_clustering(clustering, where)
    cues = raw.get("cues", [])
    if (not isinstance(cues, list) or not all(isinstance(c, str) and c in CUES for c in cues)
            or len(set(cues)) != len(cues)):
        raise ValueError(f"{where}: cues must be a list of distinct names from {CUES}, got {cues!r}")
    for m in models:
        if m.precision not in PRECISIONS:
            raise ValueError(f"{where}: {m.file}: unknown precision {m.precision!r}; allowed {PRECISIONS}")
        if m.kind not in MODEL_KINDS:
            raise ValueError(f"{where}: {m.file}: unknown kind {m.kind!r}; allowed {MODEL_KINDS}")
        if m.target is not None and m.target not in TARGETS:
            raise ValueError(f"{where}: {m.file}: unknown target {m.target!r}; allowed {TARGETS} or null")
    return _build(
        Manifest,
        dict(raw, members=members, input=inp, output=out, models=models, clustering=clustering,
             checkpoint=checkpoint),
        where,
    )


def load_manifest(artifact_dir: str | Path) -> Manifest:
    """Read ``ARTIFACT_DIR/focal.json``.

    Raises:
        FileNotFoundError: no such folder or no manifest in it.
        ValueError: unreadable JSON or an invalid manifest (message names the file).
    """
    path = Path(artifact_dir) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{artifact_dir}: no {MANIFEST_NAME} (not a focal artifact folder)")
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: unreadable manifest ({exc})") from exc
    return parse_manifest(raw, str(path))


def save_manifest(manifest: Manifest, artifact_dir: str | Path) -> Path:
    """Write ``focal.json`` atomically (temporary file, then rename), in this version's layout."""
    path = Path(artifact_dir) / MANIFEST_NAME
    write_atomic(path, replace(manifest, version=ARTIFACT_VERSION).to_json().encode())
    return path
