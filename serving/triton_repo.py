"""A standard Triton model repository from a focal artifact, for users who run their own ``tritonserver``.

:func:`write_repository` lays out four models (``PREFIX`` is
:attr:`TritonRepoConfig.prefix`, ``focal`` by default)::

    OUT/
      PREFIX_preprocess/   Python backend: BYTES ``image`` (one encoded file per element)
                           -> FP32 ``input`` [3, S, S], INT32 ``size`` [2] (H, W), FP32 ``pre_ms`` [2]
      PREFIX_features/     the network: ONNX (platform onnxruntime_onnx), a TensorRT plan
                           (tensorrt_plan), or a Python-backend model running the ONNX graph with
                           focal.runtime's ONNX Runtime engine ("python": for servers with only that backend)
      PREFIX_postprocess/  Python backend: FP32 ``features`` [D, h, w] + ``size`` (+ BYTES ``image`` [1]
                           under ``copy_move`` or ``double_jpeg``) -> UINT8 ``mask`` [H, W] (255 = forged),
                           FP32 ``score`` [1], ``forged_fraction`` [1], ``post_ms`` [2], INT8 ``copy_move`` [1],
                           INT8 ``double_jpeg`` [1] (+ UINT8 ``heatmap`` [H, W] under ``heatmap``)
      PREFIX/              the ensemble: BYTES ``image`` [1] -> ``mask`` [1, H, W], ``score`` [1, 1], ...

The Python models' code lives in :mod:`focal.serving.triton_models` and is
copied in as ``1/model.py``; each version folder also holds ``focal.json``,
a copy of the artifact's manifest (reduced to the model file used), which is
where the preprocessing and the clustering parameters are read from. They
import :mod:`focal.runtime`, so the server's Python must have focal
installed (docs/triton.md).

Copy-moves (:attr:`TritonRepoConfig.copy_move`): the ensemble also routes
its encoded ``image`` to the postprocess model, which decodes it again
(same decoder, pixel limit and EXIF rotation as the preprocess model, so
the same pixels) and joins :func:`focal.runtime.copymove.detect_copy_move`'s
mask to the clustering's, as ``Detector(copy_move=True)`` does; its INT8
``copy_move`` output is 1 (found), 0 (none found) or -1 (not searched: the
option off). The encoded file is routed rather than the decoded pixels:
between Python models a tensor crosses the backend's shared memory, and a
decoded image (3 bytes a pixel, 300 MB at the 100 MP limit) would not fit a
container's default 64 MB ``/dev/shm``; the price is a second decode per image.

Double JPEG (:attr:`TritonRepoConfig.double_jpeg`): the same route, for the
cue that reads the file itself. The postprocess model runs
:func:`focal.runtime.doublejpeg.detect_double_jpeg` on the encoded bytes
(the preprocess model's pixel limit), turns its mask with the file's EXIF
orientation where the preprocess model decodes with it, and joins it after
the clustering's and the copy-move masks, as ``Detector(double_jpeg=True)``
does. Its INT8 ``double_jpeg`` output is 1 (a region found), 0 (the file
gives evidence, a double compression or a grid of its own, but no region)
or -1 (not searched, or no evidence: a picture that never was a JPEG, or
the option off).

Heatmaps (:attr:`TritonRepoConfig.heatmap`): the postprocess model and the
ensemble also output ``heatmap``, UINT8 ``[1, H, W]``: the features' forgery
map (:func:`focal.runtime.postprocess.soft_map`, as ``Detector(heatmap=True)``)
as the 8-bit levels of :func:`focal.runtime.render.heatmap_levels`, what
``focal-serve --heatmap`` returns. Without it the output does not exist.

Batching: a graph with a fixed batch axis of 1 cannot take Triton's
batching, whose batch dimension is a free first axis (``[-1] + dims``), so
its features model has ``max_batch_size: 0`` and full dims ``[1, 3, S, S]``;
the dynamic batcher then only bounds the queue. A dynamic batch axis gets
``max_batch_size`` from the graph (the TensorRT profile's largest batch) or
:attr:`TritonRepoConfig.max_batch`. The ensemble takes one image per request
(``max_batch_size: 0``, dims ``[1]``) and the composing models batch across
requests. Writing needs neither torch nor tritonclient.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from focal.runtime.default import default_artifact
from focal.runtime.imageio import DEFAULT_MAX_PIXELS
from focal.runtime.manifest import PRECISIONS, Manifest, ModelFile, load_manifest, save_manifest

__all__ = ["FEATURES_BACKENDS", "INSTANCE_KINDS", "TritonRepoConfig", "features_max_batch", "model_names",
           "write_repository"]

FEATURES_BACKENDS: tuple[str, ...] = ("onnxruntime", "tensorrt", "python")
INSTANCE_KINDS: tuple[str, ...] = ("auto", "gpu", "cpu")

# Triton's default model file names per platform (model_repository.md), so no default_model_filename is needed.
_PLATFORM = {"onnxruntime": ("onnxruntime_onnx", "model.onnx"), "tensorrt": ("tensorrt_plan", "model.plan")}
_MODEL_SOURCES = {"preprocess": "preprocess.py", "features": "features.py", "postprocess": "postprocess.py"}


@dataclass(frozen=True)
class TritonRepoConfig:
    """What goes into the repository; the model's own facts come from the artifact's manifest."""

    prefix: str = "focal"  # model names: PREFIX (ensemble), PREFIX_preprocess, PREFIX_features, PREFIX_postprocess
    features: str = "onnxruntime"  # features model: "onnxruntime", "tensorrt" or "python" (focal.runtime's ORT engine)
    precision: str = "fp32"  # which of the artifact's models: "fp32", "fp16", "int8"
    model_file: str | None = None  # an artifact entry by file name; None: the precision's model for the backend
    instance_kind: str = "auto"  # features instances: "gpu", "cpu", or "auto" (GPU for onnxruntime/tensorrt, CPU for python)
    instance_count: int = 1  # features model instances (per GPU with KIND_GPU)
    pre_post_count: int = 1  # CPU instances of each Python pre/postprocess model
    max_batch: int | None = None  # dynamic graphs: Triton max_batch_size (None: the engine profile's, else 8)
    queue_delay_us: int = 100  # dynamic batcher: longest wait for more requests to join a batch (microseconds)
    max_queue_size: int = 64  # requests queued per model before new ones are rejected (0: unbounded)
    max_pixels: int = DEFAULT_MAX_PIXELS  # decode limit (width x height), checked on the header before decoding
    exif_orientation: bool = True  # rotate as EXIF says, as focal-detect does, so masks match the picture shown
    cluster_backend: str = "auto"  # clustering and copy-move kernels in the postprocess model (as DetectorConfig)
    # Also search each image for copy-moves in the postprocess model (focal.runtime.copymove, as
    # DetectorConfig.copy_move): the mask is the union; the ``copy_move`` output says whether one was found.
    # None: as the artifact's manifest says (its "cues"), as the Detector does
    copy_move: bool | None = None
    # Also look in each JPEG file for regions that missed its first compression (focal.runtime.doublejpeg,
    # as DetectorConfig.double_jpeg) in the postprocess model: the mask is the union; the ``double_jpeg``
    # output says 1 found / 0 evidence without a region / -1 no evidence. None: the manifest's
    double_jpeg: bool | None = None
    # Also output each image's heatmap (UINT8 levels of the features' forgery map, as focal-serve --heatmap)
    heatmap: bool = False
    # EXECUTION_ENV_PATH of the Python models: a conda-pack tarball or an unpacked environment (with
    # bin/activate) holding focal; "$$TRITON_MODEL_DIRECTORY" expands to each model's folder. None: the
    # server's own Python, which then needs focal installed
    python_env: str | None = None
    overwrite: bool = False  # replace OUT if it holds a repository already

    def __post_init__(self) -> None:
        if self.features not in FEATURES_BACKENDS:
            raise ValueError(f"unknown features backend {self.features!r}; choose one of {FEATURES_BACKENDS}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; choose one of {PRECISIONS}")
        if self.instance_kind not in INSTANCE_KINDS:
            raise ValueError(f"unknown instance kind {self.instance_kind!r}; choose one of {INSTANCE_KINDS}")
        if not self.prefix or not all(c.isalnum() or c in "_-" for c in self.prefix):
            raise ValueError(f"model name prefix must be letters, digits, '_' or '-', got {self.prefix!r}")
        for name in ("instance_count", "pre_post_count"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_batch is not None and self.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {self.max_batch}")
        if self.queue_delay_us < 0 or self.max_queue_size < 0:
            raise ValueError(f"queue_delay_us and max_queue_size must be >= 0, got {self.queue_delay_us}, "
                             f"{self.max_queue_size}")
        if self.max_pixels < 1:
            raise ValueError(f"max_pixels must be >= 1, got {self.max_pixels}")

    @property
    def kind(self) -> str:
        """The features instances' Triton kind, ``"KIND_GPU"`` or ``"KIND_CPU"``."""
        if self.instance_kind == "auto":
            return "KIND_CPU" if self.features == "python" else "KIND_GPU"
        return f"KIND_{self.instance_kind.upper()}"


def model_names(prefix: str = "focal") -> dict[str, str]:
    """``{"ensemble", "preprocess", "features", "postprocess"}`` -> the Triton model names for ``prefix``."""
    return {"ensemble": prefix, **{k: f"{prefix}_{k}" for k in ("preprocess", "features", "postprocess")}}


# -- config.pbtxt -----------------------------------------------------------------------------------------------


class _Enum(str):
    """A protobuf enum value: written bare, not quoted."""


def _pbtxt_value(value: Any, indent: int) -> str:
    pad = "  " * indent
    if isinstance(value, dict):
        inner = "".join(_pbtxt_field(k, v, indent + 1) for k, v in value.items())
        return "{\n" + inner + pad + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, _Enum):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid protobuf text string
    return str(value)


def _pbtxt_field(key: str, value: Any, indent: int) -> str:
    pad = "  " * indent
    if isinstance(value, list):
        if value and all(isinstance(v, dict) for v in value):
            return "".join(f"{pad}{key} {_pbtxt_value(v, indent)}\n" for v in value)
        return f"{pad}{key}: [ {', '.join(_pbtxt_value(v, indent) for v in value)} ]\n"
    sep = " " if isinstance(value, dict) else ": "
    return f"{pad}{key}{sep}{_pbtxt_value(value, indent)}\n"


def _pbtxt(config: dict[str, Any], comments: list[str]) -> str:
    """A ``config.pbtxt``: ``#`` comments, then the fields in order."""
    head = "".join(f"# {line}\n" for line in comments)
    return head + "".join(_pbtxt_field(k, v, 0) for k, v in config.items())


def _tensor(name: str, dtype: str, dims: list[int]) -> dict[str, Any]:
    return {"name": name, "data_type": _Enum(dtype), "dims": dims}


def _batcher(cfg: TritonRepoConfig) -> dict[str, Any]:
    batcher: dict[str, Any] = {"max_queue_delay_microseconds": cfg.queue_delay_us}
    if cfg.max_queue_size:
        # A bounded queue: past it new requests fail at once ("Exceeds maximum queue size") instead of
        # piling up behind a slow model.
        batcher["default_queue_policy"] = {"timeout_action": _Enum("REJECT"), "max_queue_size": cfg.max_queue_size}
    return batcher


def _parameters(values: dict[str, str]) -> list[dict[str, Any]]:
    return [{"key": k, "value": {"string_value": v}} for k, v in values.items()]


# -- the repository -----------------------------------------------------------------------------------------------


def _check_artifact(manifest: Manifest, where: Path) -> None:
    """Refuses what the runtime's preprocessing cannot reproduce (the Detector refuses the same)."""
    spec = manifest.input
    if spec.color != "RGB" or abs(spec.scale - 1 / 255) > 1e-9 or spec.resize != "bilinear" or spec.keep_aspect:
        raise ValueError(f"{where}: preprocessing {spec.color}/scale {spec.scale}/{spec.resize}/keep_aspect "
                         f"{spec.keep_aspect} is not one focal.runtime implements (RGB, 1/255, bilinear, stretched)")
    if manifest.fusion is None and len(manifest.members) != 1:
        raise ValueError(f"{where}: {len(manifest.members)} members without a fused graph")


def _features_entry(manifest: Manifest, cfg: TritonRepoConfig, where: Path) -> ModelFile:
    """The artifact's model file the features model serves."""
    try:
        return _pick_entry(manifest, cfg, where)
    except ValueError as exc:
        text = str(exc)
        raise ValueError(text if text.startswith(str(where)) else f"{where}: {text}") from None


def _pick_entry(manifest: Manifest, cfg: TritonRepoConfig, where: Path) -> ModelFile:
    if cfg.model_file is not None:
        entry = manifest.entry(cfg.model_file)
        want = "tensorrt" if cfg.features == "tensorrt" else "onnx"
        if entry.kind != want or entry.precision != cfg.precision:
            raise ValueError(f"{where}: {entry.file} is a {entry.kind} {entry.precision} model; features backend "
                             f"{cfg.features!r} at {cfg.precision} needs a {want} {cfg.precision} one")
        return entry
    if cfg.features == "tensorrt":
        return manifest.model("tensorrt", cfg.precision)
    # The CPU-tuned variant where the instances run on the CPU, as the Detector's CPU backend picks it.
    return manifest.model_for("cpu" if cfg.kind == "KIND_CPU" else "cuda", cfg.precision)


def features_max_batch(manifest: Manifest, cfg: TritonRepoConfig, where: str | Path = "artifact") -> int:
    """The features model's ``max_batch_size`` for this artifact and config (0: no Triton batching).

    Raises:
        ValueError: a fixed batch axis above 1, or ``cfg.max_batch`` above the TensorRT profile's maximum.
    """
    spec = manifest.input
    if spec.policy == "native":
        return 0  # each image has its own shape: one per call, dims -1
    if not spec.dynamic_batch:
        if spec.batch != 1:
            raise ValueError(f"{where}: the graph has a fixed batch of {spec.batch}; Triton can feed a fixed batch "
                             "of 1 or a dynamic batch axis: re-export with --graph-batch 1 or --dynamic-graph-batch")
        return 0
    limit = spec.max_batch if cfg.features == "tensorrt" else None
    if cfg.max_batch is not None:
        if limit is not None and cfg.max_batch > limit:
            raise ValueError(f"{where}: max_batch {cfg.max_batch} is above the TensorRT engine's profile maximum "
                             f"{limit} (re-export with a larger --max-graph-batch)")
        return cfg.max_batch
    return int(limit or spec.max_batch or 8)


def _manifest_copy(manifest: Manifest, entries: list[ModelFile]) -> Manifest:
    """The manifest reduced to the model files copied beside it (a valid artifact of its own)."""
    return replace(manifest, models=list(entries))


def _copy_model_source(role: str, version_dir: Path) -> None:
    source = resources.files("focal.serving.triton_models").joinpath(_MODEL_SOURCES[role])
    (version_dir / "model.py").write_text(source.read_text())


def _copy_model_file(artifact: Path, entry: ModelFile, dest: Path) -> None:
    """The model file (and its external weights, under their own name, as the graph names them) into ``dest``."""
    src = artifact / entry.file
    if not src.is_file():
        raise FileNotFoundError(f"{src}: listed in the manifest but missing")
    shutil.copy2(src, dest)
    if entry.external_data:
        shutil.copy2(artifact / entry.external_data, dest.parent / Path(entry.external_data).name)


def _features_config(manifest: Manifest, entry: ModelFile, cfg: TritonRepoConfig, max_batch: int,
                     name: str) -> tuple[dict[str, Any], list[str]]:
    spec, out = manifest.input, manifest.output
    native = spec.policy == "native"
    in_dims = [3, -1, -1] if native else [3, spec.size, spec.size]
    out_dims = [out.feature_dim, -1, -1] if native else [out.feature_dim, out.height, out.width]
    if max_batch == 0:  # full shapes: the graph's own batch axis of 1
        in_dims, out_dims = [1, *in_dims], [1, *out_dims]
    comments = [f"focal features model: {entry.file} ({entry.kind}, {entry.precision}) of {manifest.extractor}"]
    if max_batch == 0:
        comments.append("max_batch_size 0: the graph's batch axis is fixed at 1 (or its shape varies per image), "
                        "so Triton cannot batch it; the dynamic batcher only bounds the queue")
    config: dict[str, Any] = {"name": name}
    if cfg.features == "python":
        config["backend"] = "python"
    else:
        config["platform"] = _PLATFORM[cfg.features][0]
    config["max_batch_size"] = max_batch
    config["input"] = [_tensor(spec.name, "TYPE_FP32", in_dims)]
    config["output"] = [_tensor(out.name, "TYPE_FP32", out_dims)]
    config["dynamic_batching"] = _batcher(cfg)
    group: dict[str, Any] = {"count": cfg.instance_count, "kind": _Enum(cfg.kind)}
    if cfg.features == "tensorrt":
        # The engine has one optimisation profile (focal.export.tensorrt): fixed shapes, or batch 1 ..
        # input.max_batch, which max_batch_size stays within.
        group["profile"] = ["0"]
        comments.append(f"TensorRT plan built with TensorRT {entry.tensorrt or '?'} for compute capability "
                        f"{entry.compute_capability or '?'} ({entry.gpu or 'GPU unknown'}): it loads only on a "
                        "tritonserver with the same TensorRT and GPU architecture")
    config["instance_group"] = [group]
    if cfg.features == "python":
        params = {"model_file": Path(entry.file).name, "precision": entry.precision}
        if cfg.python_env:
            params["EXECUTION_ENV_PATH"] = cfg.python_env
        config["parameters"] = _parameters(params)
    return config, comments


def _python_config(name: str, cfg: TritonRepoConfig, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]],
                   parameters: dict[str, str], comment: str) -> tuple[dict[str, Any], list[str]]:
    if cfg.python_env:
        parameters = {**parameters, "EXECUTION_ENV_PATH": cfg.python_env}
    config: dict[str, Any] = {
        "name": name, "backend": "python", "max_batch_size": max(cfg.max_batch or 8, 1),
        "input": inputs, "output": outputs, "dynamic_batching": _batcher(cfg),
        "instance_group": [{"count": cfg.pre_post_count, "kind": _Enum("KIND_CPU")}],
        "parameters": _parameters(parameters),
    }
    return config, [comment, "Python backend: the server's Python needs focal installed (docs/triton.md)"]


def _ensemble_config(names: dict[str, str], manifest: Manifest, copy_move: bool = False,
                     double_jpeg: bool = False, heatmap: bool = False) -> tuple[dict[str, Any], list[str]]:
    post_inputs = [{"key": "features", "value": "feature_map"}, {"key": "size", "value": "image_size"}]
    if copy_move or double_jpeg:
        post_inputs.append({"key": "image", "value": "image"})  # the ensemble's own input, for the cues
    post_outputs = ["mask", "score", "forged_fraction", "post_ms", "copy_move", "double_jpeg"]
    if heatmap:
        post_outputs.append("heatmap")
    steps = [
        {"model_name": names["preprocess"], "model_version": -1,
         "input_map": {"key": "image", "value": "image"},
         "output_map": [{"key": "input", "value": "network_input"}, {"key": "size", "value": "image_size"},
                        {"key": "pre_ms", "value": "pre_ms"}]},
        {"model_name": names["features"], "model_version": -1,
         "input_map": {"key": manifest.input.name, "value": "network_input"},
         "output_map": {"key": manifest.output.name, "value": "feature_map"}},
        {"model_name": names["postprocess"], "model_version": -1,
         "input_map": post_inputs,
         "output_map": [{"key": k, "value": k} for k in post_outputs]},
    ]
    # Single map entries are written as one message, lists as repeated ones.
    for step in steps:
        for key in ("input_map", "output_map"):
            if isinstance(step[key], dict):
                step[key] = [step[key]]
    config: dict[str, Any] = {
        "name": names["ensemble"], "platform": "ensemble", "max_batch_size": 0,
        "input": [_tensor("image", "TYPE_STRING", [1])],
        "output": [_tensor("mask", "TYPE_UINT8", [1, -1, -1]), _tensor("score", "TYPE_FP32", [1, 1]),
                   _tensor("forged_fraction", "TYPE_FP32", [1, 1]),
                   _tensor("pre_ms", "TYPE_FP32", [1, 2]), _tensor("post_ms", "TYPE_FP32", [1, 2]),
                   _tensor("copy_move", "TYPE_INT8", [1, 1]), _tensor("double_jpeg", "TYPE_INT8", [1, 1])],
        "ensemble_scheduling": {"step": steps},
    }
    if heatmap:
        config["output"].append(_tensor("heatmap", "TYPE_UINT8", [1, -1, -1]))
    comments = ["focal ensemble: one encoded image per request -> mask (uint8 [1, H, W], 255 = forged), "
                "score, forged_fraction, pre_ms (decode, preprocess), post_ms (cluster, postprocess), "
                "copy_move (int8: 1 found, 0 none found, -1 not searched), double_jpeg (int8: 1 a region found, "
                "0 evidence (a comb or a grid of its own) but no region, -1 not searched or no evidence)",
                "the composing models batch across requests; the features model's time is in Triton's statistics"]
    if copy_move:
        comments.append("copy-move search on: the mask is the union of the clustering's and the copy-move search's")
    if double_jpeg:
        comments.append("double-JPEG cue on: the mask is the union with the regions that missed the file's first "
                        "JPEG compression")
    if heatmap:
        comments.append("heatmap (uint8 [1, H, W]): the features' forgery map, 255 at a cosine distance of 0.5 to "
                        "the pristine direction")
    return config, comments


def _write_model(root: Path, name: str, config: dict[str, Any], comments: list[str]) -> Path:
    version = root / name / "1"
    version.mkdir(parents=True)
    (root / name / "config.pbtxt").write_text(_pbtxt(config, comments))
    return version


def _artifact_dir(artifact: str | Path | None) -> Path:
    return default_artifact() if artifact is None or str(artifact) == "default" else Path(artifact)


def repository_config(artifact: str | Path | None, cfg: TritonRepoConfig) -> TritonRepoConfig:
    """What :func:`write_repository` writes for ``artifact``: ``cfg`` with its cues settled.

    Raises:
        FileNotFoundError / ValueError: no artifact there, or an invalid manifest.
    """
    return load_manifest(_artifact_dir(artifact)).settle_cues(cfg)


def write_repository(artifact: str | Path | None, out: str | Path, cfg: TritonRepoConfig | None = None) -> Path:
    """Write a Triton model repository serving ``artifact`` (layout in the module notes).

    Args:
        artifact: an artifact folder (``focal.json`` + model files); ``None``
            or ``"default"``: the embedded default model.
        out: the repository folder to create (it must not exist, or be empty,
            unless ``cfg.overwrite``).
        cfg: what to write (:class:`TritonRepoConfig`).

    Returns:
        ``out``, holding the four models (:func:`model_names`).

    Raises:
        FileNotFoundError: no artifact there, or a model file it lists is missing.
        ValueError: an invalid manifest, no model of that kind/precision, a
            graph Triton cannot feed (fixed batch above 1), a native-policy
            artifact with TensorRT, or ``out`` not empty. One line each,
            naming the artifact or the folder.
    """
    cfg = cfg or TritonRepoConfig()
    artifact = _artifact_dir(artifact)
    manifest = load_manifest(artifact)
    _check_artifact(manifest, artifact)
    cfg = manifest.settle_cues(cfg)
    if manifest.input.policy == "native" and cfg.features == "tensorrt":
        raise ValueError(f"{artifact}: input policy 'native' gives every image its own shape; its TensorRT plan has "
                         "no profile recorded in the manifest to serve them: use --triton-features onnxruntime or python")
    entry = _features_entry(manifest, cfg, artifact)
    max_batch = features_max_batch(manifest, cfg, artifact)
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not cfg.overwrite)):
        raise ValueError(f"{out}: exists and is not an empty folder (overwrite, --triton-overwrite, replaces it)")

    names = model_names(cfg.prefix)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Written beside OUT, then renamed: a failed write never leaves half a repository a server would load.
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        reduced = _manifest_copy(manifest, [])  # pre/post read the preprocessing and clustering, no model
        runtime_params = {"max_pixels": str(cfg.max_pixels), "exif_orientation": str(cfg.exif_orientation).lower()}

        pre_cfg = _python_config(
            names["preprocess"], cfg,
            [_tensor("image", "TYPE_STRING", [1])],
            [_tensor("input", "TYPE_FP32", [3, -1, -1] if manifest.input.policy == "native"
                     else [3, manifest.input.size, manifest.input.size]),
             _tensor("size", "TYPE_INT32", [2]), _tensor("pre_ms", "TYPE_FP32", [2])],
            runtime_params, "focal preprocess: encoded image -> network input and the image's (H, W)")
        version = _write_model(staging, names["preprocess"], *pre_cfg)
        _copy_model_source("preprocess", version)
        save_manifest(reduced, version)

        feat_cfg = _features_config(manifest, entry, cfg, max_batch, names["features"])
        version = _write_model(staging, names["features"], *feat_cfg)
        if cfg.features == "python":
            _copy_model_source("features", version)
            _copy_model_file(artifact, entry, version / Path(entry.file).name)
            save_manifest(_manifest_copy(manifest, [replace(entry, file=Path(entry.file).name,
                                                            external_data=Path(entry.external_data).name
                                                            if entry.external_data else None)]), version)
        else:
            _copy_model_file(artifact, entry, version / _PLATFORM[cfg.features][1])

        out_dims = ([manifest.output.feature_dim, -1, -1] if manifest.input.policy == "native"
                    else [manifest.output.feature_dim, manifest.output.height, manifest.output.width])
        post_inputs = [_tensor("features", "TYPE_FP32", out_dims), _tensor("size", "TYPE_INT32", [2])]
        post_params = {"cluster_backend": cfg.cluster_backend, "copy_move": str(cfg.copy_move).lower(),
                       "double_jpeg": str(cfg.double_jpeg).lower(), "heatmap": str(cfg.heatmap).lower()}
        if cfg.copy_move or cfg.double_jpeg:
            # The encoded file, read as the preprocess model reads it: decoded again for the copy-move
            # search, its header and blocks for the double-JPEG cue (module notes).
            post_inputs.append(_tensor("image", "TYPE_STRING", [1]))
            post_params.update(runtime_params)
        post_outputs = [_tensor("mask", "TYPE_UINT8", [-1, -1]), _tensor("score", "TYPE_FP32", [1]),
                        _tensor("forged_fraction", "TYPE_FP32", [1]), _tensor("post_ms", "TYPE_FP32", [2]),
                        _tensor("copy_move", "TYPE_INT8", [1]), _tensor("double_jpeg", "TYPE_INT8", [1])]
        if cfg.heatmap:
            post_outputs.append(_tensor("heatmap", "TYPE_UINT8", [-1, -1]))
        post_cfg = _python_config(
            names["postprocess"], cfg, post_inputs, post_outputs,
            post_params,
            f"focal postprocess: features -> mask and score ({manifest.clustering.method}, min cluster size "
            f"{manifest.clustering.min_cluster_size}, from 1/focal.json)"
            + ("; then the copy-move search on the decoded image, the masks joined" if cfg.copy_move else "")
            + ("; then the double-JPEG cue on the file's bytes, the masks joined" if cfg.double_jpeg else ""))
        version = _write_model(staging, names["postprocess"], *post_cfg)
        _copy_model_source("postprocess", version)
        save_manifest(reduced, version)

        _write_model(staging, names["ensemble"],
                     *_ensemble_config(names, manifest, cfg.copy_move, cfg.double_jpeg, cfg.heatmap))

        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)  # mkdtemp's 0700 would hide it from a server running as another user
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out
