"""``export(cfg)``: the one library call behind ``focal-export``.

The export is a table of steps (``_STEPS``, in the manner of ultralytics'
``export_formats()``), each one function; those that apply to the config
run in order, each announced as ``[k/n] ...`` (``n`` counting only the steps
that run) and closed with its wall time through ``progress``:

1. ``build``: the PyTorch extractor (our checkpoint, the authors', or random),
   unless one is passed in;
2. ``onnx``: ``model.onnx``, the FP32 graph, cleaned, checked, compared with
   PyTorch, and the first ``focal.json``, the manifest listing every file
   (rewritten after each file, so a stopped export leaves a valid artifact);
3. ``fp16`` (``--fp16``): ``model.fp16.onnx``, FP16 with the fragile ops in FP32;
4. ``int8`` (``--int8``): ``model.int8.onnx``, calibrated (or cached)
   symmetric Q/DQ (what TensorRT builds from), and ``model.int8.cpu.onnx``:
   the same nodes with uint8 asymmetric activations, what ONNX Runtime's CPU
   provider runs (``--no-int8-cpu`` skips it); under the ``native`` input
   policy calibrated on each image at its own capped, stride-padded shape;
5. ``engines`` (``--engine``): TensorRT engines for the exported precisions
   (``native``: one optimisation profile over height and width, from the
   manifest's ``max_side``: :func:`focal.runtime.geometry.input_profile`);
6. ``verify`` (``--verify``) and 7. ``report`` (``--precision-report``).

Fusions (``vit+hrnet``) are exported as ONE graph that outputs the fused map
(the ``FusedExtractor`` module: nearest resize, per-member L2 norm, concat):
one engine call per image, the resize on the accelerator, and no host
round-trip of HRNet's 32 x 256 x 256 map. The manifest says
``fusion: "concat-l2-nearest"``.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from focal import __version__
from focal.calibration import CalibrationConfig, CalibrationResult, calibrate, read_ranges
from focal.calibration.readers import CalibrationReader, FolderReader, NativeInput, SyntheticReader
from focal.export.config import SYNTHETIC, ExportConfig
from focal.export.model import _build_model, model_source
from focal.export.onnx import INPUT_NAME, OUTPUT_NAME, OnnxExport, check_onnx, export_onnx, save_onnx
from focal.export.precision import Fp16Config, Int8Config, LoweredGraph, convert_fp16, prepare_for_quantization, quantize_int8
from focal.export.tensorrt import (
    EngineBuild,
    EngineConfig,
    EngineUnavailable,
    build_engine,
    check_tensorrt,
    engine_file_name,
    profile_max_batch,
)
from focal.runtime.geometry import input_profile
from focal.runtime.manifest import (
    CheckpointFile,
    ClusteringSpec,
    InputSpec,
    Manifest,
    MemberSpec,
    ModelFile,
    OutputSpec,
    save_manifest,
    sha256_file,
)

__all__ = ["FUSION_RULE", "ExportResult", "WrittenFile", "calibration_reader", "export"]

FUSION_RULE = "concat-l2-nearest"


@dataclass(frozen=True)
class WrittenFile:
    """One file of the artifact."""

    path: Path  # where it is
    size_bytes: int  # its size
    what: str  # one-line description


@dataclass(frozen=True)
class ExportResult:
    """Everything :func:`export` produced."""

    out_dir: Path  # the artifact folder
    manifest: Manifest  # as written to focal.json
    files: list[WrittenFile]  # files written, in order
    onnx: OnnxExport  # the FP32 export and its PyTorch parity
    fp16: LoweredGraph | None = None  # the FP16 record
    int8: LoweredGraph | None = None  # the INT8 record
    calibration: CalibrationResult | None = None  # the INT8 ranges used
    engines: list[EngineBuild] = field(default_factory=list)  # TensorRT engines built
    verification: Any = None  # focal.export.verify.VerifyReport when --verify
    report: Any = None  # focal.export.sensitivity.PrecisionReport when --precision-report
    engine_error: str | None = None  # why engines were not built, when asked for
    seconds: float = 0.0  # total wall time
    step_seconds: dict[str, float] = field(default_factory=dict)  # wall time of each step run, by step name

    def summary(self) -> str:
        """A human summary: files and sizes, parity figures, what was kept in FP32."""
        lines = [f"artifact {self.out_dir} ({self.manifest.extractor}, {self.manifest.input.size} px, "
                 f"features {self.manifest.output.feature_dim} x {self.manifest.output.height} x "
                 f"{self.manifest.output.width}) in {self.seconds:.1f} s"]
        for f in self.files:
            lines.append(f"  {f.path.name:<36} {_size(f.size_bytes):>10}  {f.what}")
        lines.append(f"  ONNX FP32 vs PyTorch: max abs diff {self.onnx.max_abs_diff:.3g} "
                     f"(relative {self.onnx.max_rel_diff:.3g})")
        if self.fp16 is not None:
            lines.append(f"  FP16: {len(self.fp16.lowered_nodes)} nodes in FP16, {len(self.fp16.kept_nodes)} kept "
                         f"FP32 ({', '.join(self.fp16.kept_ops) or 'none'})")
        if self.int8 is not None:
            lines.append(f"  INT8: {len(self.int8.lowered_nodes)} nodes quantized, {len(self.int8.kept_nodes)} left in "
                         f"float ({'; '.join(sorted(set(self.int8.reasons.values()))) or 'none'})")
        if self.calibration is not None:
            c = self.calibration
            lines.append(f"  calibration: {c.config.method}, {c.description.get('images', '?')} images "
                         f"({c.description.get('kind', '?')}), {'cache hit' if c.from_cache else 'measured'}")
        if self.verification is not None:
            lines.append("parity against the PyTorch reference:")
            lines.append(self.verification.table())
        if self.report is not None:
            lines.append("precision report:")
            lines.append(self.report.table())
        if self.engine_error:
            lines.append(f"  engines: not built: {self.engine_error}")
        return "\n".join(lines)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)  # pragma: no cover


def _tool_versions(opset: int) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    tools: dict[str, Any] = {"focal": __version__, "opset": opset, "exporter": "torch.onnx TorchScript (dynamo=False)"}
    for pkg in ("torch", "timm", "onnx", "onnxscript", "onnxruntime", "onnxruntime-gpu"):
        try:
            tools[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return tools


def calibration_reader(cfg: ExportConfig, input_size: int, native: NativeInput | None = None) -> CalibrationReader:
    """The calibration set ``cfg.calib`` names.

    ``DIR``: images of that folder (at most ``calib_count``, each re-encoded at
    one of the JPEG qualities); masks in a sibling ``masks`` folder, if any,
    say which are forged. ``synthetic:DIR``: synthetic forgeries made from
    the untouched photos in ``DIR`` (``synthetic`` alone reads ``$FOCAL_PHOTOS``).
    With ``native`` (the ``native`` input policy) each image is measured at
    its own capped, stride-padded shape, as the runtime feeds it.

    Raises:
        ValueError: no such folder, or ``synthetic`` without photos.
    """
    assert cfg.calib is not None
    batch = cfg.batch
    if cfg.calib == SYNTHETIC or cfg.calib.startswith(SYNTHETIC + ":"):
        photos = cfg.calib[len(SYNTHETIC) + 1:] or os.environ.get("FOCAL_PHOTOS", "")
        if not photos:
            raise ValueError("--calib synthetic needs untouched photos: --calib synthetic:PHOTO_DIR (or $FOCAL_PHOTOS)")
        # Under native the generator keeps photos up to the cap: shrinking them to its default 768 first
        # would calibrate on coarser pixels than a capped photo the runtime sees.
        extra: dict[str, Any] = {"max_side": native.max_side} if native is not None else {}
        return SyntheticReader(photos, input_size, count=cfg.calib_count, seed=cfg.seed, batch=batch, native=native,
                               **extra)
    folder = Path(cfg.calib)
    masks = folder.parent / "masks"
    return FolderReader(folder, input_size, limit=cfg.calib_count, masks=masks if masks.is_dir() else None, batch=batch,
                        native=native)


def _native_input(manifest: Manifest) -> NativeInput | None:
    """The ``native`` policy of an artifact's manifest as calibration needs it; None under ``square``."""
    spec = manifest.input
    if spec.policy != "native":
        return None
    assert spec.max_side is not None  # the manifest refuses native without it
    return NativeInput(spec.max_side, manifest.members[0].stride)


@dataclass
class _Run:
    """One export in progress: what its steps have made so far, filled in step order."""

    cfg: ExportConfig  # what is asked
    out: Path  # the artifact folder
    say: Callable[[str], None]  # one-line progress messages
    model: Any = None  # the PyTorch extractor (built by the first step, or given)
    source: dict[str, Any] = field(default_factory=dict)  # the manifest's `source` entry
    manifest: Manifest | None = None  # as last written to focal.json
    onnx: OnnxExport | None = None  # the FP32 export
    reader: CalibrationReader | None = None  # the calibration set, once the input size is known
    fp16: LoweredGraph | None = None  # the FP16 record
    int8: LoweredGraph | None = None  # the INT8 (TensorRT) record
    calibration: CalibrationResult | None = None  # the INT8 ranges
    engines: list[EngineBuild] = field(default_factory=list)  # TensorRT engines built
    engine_error: str | None = None  # why engines were not built
    verification: Any = None  # VerifyReport
    report: Any = None  # PrecisionReport
    files: list[WrittenFile] = field(default_factory=list)  # model files, in the order written
    checks: list[WrittenFile] = field(default_factory=list)  # parity / report files, listed after the manifest
    step_seconds: dict[str, float] = field(default_factory=dict)  # wall time per step run

    @property
    def size(self) -> int:
        """The export side S: the config's, else the model's own."""
        return int(self.cfg.input_size or self.model.input_size)

    def add_model(self, entry: ModelFile, written: WrittenFile) -> None:
        """List a model file in the manifest and the files, and rewrite focal.json (a stopped export stays valid)."""
        assert self.manifest is not None  # the ONNX step writes the first manifest
        self.manifest = self.manifest.with_model(entry)
        self.files.append(written)
        save_manifest(self.manifest, self.out)


def _build(run: _Run) -> None:
    """The PyTorch extractor from the config, and how to rebuild it."""
    cfg = run.cfg
    run.model = _build_model(cfg.backbone, cfg.weights, cfg.input_size, cfg.seed)
    run.source = model_source(run.model, cfg.weights, cfg.seed)


def _first_manifest(run: _Run, onnx_export: OnnxExport) -> Manifest:
    """The manifest of an artifact holding only ``model.onnx``."""
    cfg, model = run.cfg, run.model
    _, dim, height, width = onnx_export.output_shape
    return Manifest(
        extractor=model.name,
        members=[MemberSpec(m.name, m.feature_dim, m.stride) for m in model.members],
        input=InputSpec(name=INPUT_NAME, size=run.size, dynamic_batch=cfg.dynamic_batch, batch=cfg.batch,
                        max_batch=profile_max_batch(cfg.max_batch, cfg.batch) if cfg.dynamic_batch else None,
                        **_policy_fields(cfg, run.size)),
        output=OutputSpec(name=OUTPUT_NAME, feature_dim=dim, height=height, width=width),
        models=[ModelFile("model.onnx", "onnx", "fp32", onnx_export.sha256,
                          external_data=onnx_export.external_data.name if onnx_export.external_data else None,
                          external_sha256=sha256_file(onnx_export.external_data) if onnx_export.external_data else None)],
        fusion=FUSION_RULE if len(model.members) > 1 else None,
        clustering=ClusteringSpec(cfg.clustering, cfg.min_cluster_size),
        cues=list(cfg.cues),
        tools=_tool_versions(onnx_export.opset),
        source=run.source,
    )


def _policy_fields(cfg: ExportConfig, size: int) -> dict[str, Any]:
    """The manifest's input-policy fields (none for the square policy, so its manifests stay as they were)."""
    if cfg.input_policy == "square":
        return {}
    return {"policy": "native", "max_side": int(cfg.max_side or 2 * size), "max_points": int(cfg.max_points)}


def _export_fp32(run: _Run) -> None:
    """``model.onnx``, the first ``focal.json``, and the calibration set now that the side is known."""
    cfg = run.cfg
    path = run.out / "model.onnx"
    run.onnx = export_onnx(run.model, path, run.size, cfg.batch, cfg.dynamic_batch, cfg.opset, cfg.seed,
                           dynamic_size=cfg.input_policy == "native")
    run.say(f"      {path.name}: {run.onnx.nodes} nodes, {_size(run.onnx.size_bytes)}, "
            f"max |ORT - torch| = {run.onnx.max_abs_diff:.3g} in {run.onnx.seconds:.1f} s")
    run.files.append(WrittenFile(path, run.onnx.size_bytes, f"ONNX FP32, opset {run.onnx.opset}"))
    run.manifest = _first_manifest(run, run.onnx)
    if cfg.checkpoint:
        run.manifest = replace(run.manifest, checkpoint=_write_checkpoint(run))
    save_manifest(run.manifest, run.out)
    run.reader = calibration_reader(cfg, run.size, _native_input(run.manifest)) if cfg.calib else None


def _write_checkpoint(run: _Run) -> CheckpointFile:
    """The exported weights, in this project's format, beside the graphs (whatever format they came in)."""
    from focal.training import save_checkpoint

    path = save_checkpoint(run.model, run.out / "checkpoint.safetensors", extra={"source": run.source})
    run.files.append(WrittenFile(path, path.stat().st_size, "PyTorch checkpoint (safetensors + json)"))
    return CheckpointFile(file=path.name, sha256=sha256_file(path), origin="the exported weights")


def _lower_fp16(run: _Run) -> None:
    """``model.fp16.onnx``, with activation ranges when calibration images are given."""
    import onnx

    cfg = run.cfg
    ranges = None
    if run.reader is not None:
        # Ranges of every tensor (min-max, cached) let nodes that near FP16's limit stay FP32.
        full = calibrate(run.out / "model.onnx", run.reader, CalibrationConfig(method="minmax", op_types=None),
                         cfg.calib_cache, run.say)
        ranges = read_ranges(full)
    rec = convert_fp16(onnx.load(str(run.out / "model.onnx")), Fp16Config(keep_nodes=tuple(cfg.fp16_keep)), ranges)
    path = run.out / "model.fp16.onnx"
    save_onnx(rec.model, path)
    check_onnx(path)
    run.fp16 = rec
    run.add_model(
        ModelFile("model.fp16.onnx", "onnx", "fp16", sha256_file(path),
                  fp32_ops=list(rec.kept_ops), excluded_nodes=list(rec.kept_nodes)),
        WrittenFile(path, path.stat().st_size, f"ONNX FP16, {len(rec.kept_nodes)} nodes kept FP32"),
    )
    run.say(f"      {path.name}: {len(rec.lowered_nodes)} nodes FP16, {len(rec.kept_nodes)} FP32 "
            f"({', '.join(rec.kept_ops) or 'none'})")


def _calibration_entry(calib: CalibrationResult) -> dict[str, Any]:
    """The manifest's record of the ranges an INT8 graph was quantized with."""
    return {
        **calib.description,
        "method": calib.config.key(),
        "cache_key": calib.key,
        "quantization": {"format": "QDQ", "activations": "int8 symmetric per-tensor",
                         "weights": "int8 symmetric per-channel", "ops": list(Int8Config().op_types)},
    }


def _quantize(run: _Run) -> LoweredGraph | None:
    """Calibrate (or reuse the cache) and write the INT8 graphs; returns the CPU variant's record."""
    cfg = run.cfg
    assert run.reader is not None  # ExportConfig refuses int8 without calib
    int8_cfg = Int8Config(exclude=tuple(cfg.int8_exclude), keep_stem=cfg.int8_keep_stem, keep_head=cfg.int8_keep_head)
    with tempfile.TemporaryDirectory(prefix="focal-int8-") as tmp:
        prepared = prepare_for_quantization(run.out / "model.onnx", Path(tmp) / "prepared.onnx")
        run.calibration = calibrate(prepared, run.reader, CalibrationConfig(method=cfg.calib_method),
                                    cfg.calib_cache, run.say)
        run.int8 = quantize_int8(prepared, run.out / "model.int8.onnx", run.calibration, int8_cfg)
        cpu_cfg = replace(int8_cfg, activations="uint8-asymmetric")
        return (quantize_int8(prepared, run.out / "model.int8.cpu.onnx", run.calibration, cpu_cfg)
                if cfg.int8_cpu else None)


def _lower_int8(run: _Run) -> None:
    """``model.int8.onnx`` (TensorRT) and, unless skipped, ``model.int8.cpu.onnx``, checked and listed."""
    cpu_rec = _quantize(run)
    assert run.int8 is not None and run.calibration is not None
    rec, path = run.int8, run.out / "model.int8.onnx"
    check_onnx(path)
    entry = _calibration_entry(run.calibration)
    run.add_model(
        ModelFile("model.int8.onnx", "onnx", "int8", sha256_file(path), fp32_ops=list(rec.kept_ops),
                  excluded_nodes=list(rec.kept_nodes), calibration=entry),
        WrittenFile(path, path.stat().st_size, f"ONNX INT8 Q/DQ, {len(rec.lowered_nodes)} nodes quantized"),
    )
    run.say(f"      {path.name}: {len(rec.lowered_nodes)} nodes quantized, {len(rec.kept_nodes)} left in float")
    if cpu_rec is None:
        return
    cpu_path = run.out / "model.int8.cpu.onnx"
    check_onnx(cpu_path)
    seven_bit = replace(Int8Config(), activations="uint8-asymmetric").seven_bit_weights  # the config _quantize uses
    weights = entry["quantization"]["weights"] + (", 7-bit range" if seven_bit else "")
    cpu_quant = {**entry["quantization"], "activations": "uint8 asymmetric per-tensor", "weights": weights}
    run.add_model(
        ModelFile(cpu_path.name, "onnx", "int8", sha256_file(cpu_path), fp32_ops=list(cpu_rec.kept_ops),
                  excluded_nodes=list(cpu_rec.kept_nodes), calibration={**entry, "quantization": cpu_quant},
                  target="cpu"),
        WrittenFile(cpu_path, cpu_path.stat().st_size,
                    "ONNX INT8 Q/DQ, uint8 activations, for ONNX Runtime's CPU provider"),
    )
    run.say(f"      {cpu_path.name}: the same with uint8 asymmetric activations (ONNX Runtime CPU)")


def _engine_precisions(cfg: ExportConfig) -> list[str]:
    """The precisions exported as ONNX beyond FP32, or FP32 alone."""
    return [p for p, on in (("fp16", cfg.fp16), ("int8", cfg.int8)) if on] or ["fp32"]


def _build_engines(run: _Run) -> None:
    """One engine per exported precision; without TensorRT or a GPU, the reason is kept and raised at the end."""
    cfg = run.cfg
    try:
        trt_version, gpu, cap = check_tensorrt()
    except EngineUnavailable as exc:
        run.engine_error = str(exc)
        run.say(f"      engines: {run.engine_error}")
        return
    run.say(f"      TensorRT {trt_version} on {gpu} (sm {cap})")
    assert run.manifest is not None
    spec = run.manifest.input
    # Native artifacts take any height and width: the engine's profile spans every capped image.
    shapes = input_profile(spec.max_side, run.manifest.members[0].stride) if spec.policy == "native" else None
    engine_cfg = EngineConfig(workspace_gb=cfg.workspace_gb, timing_cache=cfg.timing_cache,
                              opt_batch=cfg.batch, max_batch=cfg.max_batch, shapes=shapes)
    for precision in _engine_precisions(cfg):
        assert run.manifest is not None
        source = run.manifest.model("onnx", precision)
        build = build_engine(run.out / source.file, run.out / engine_file_name(precision, trt_version), precision,
                             engine_cfg, fp32_nodes=source.excluded_nodes, batch=cfg.batch, progress=run.say)
        run.engines.append(build)
        run.add_model(
            replace(source, file=build.path.name, kind="tensorrt", sha256=build.sha256, onnx_sha256=source.sha256,
                    tensorrt=build.tensorrt, gpu=build.gpu, compute_capability=build.compute_capability,
                    external_data=None),
            WrittenFile(build.path, build.size_bytes,
                        f"TensorRT {build.tensorrt} {precision} engine, {build.gpu}, "
                        f"{'strongly typed' if build.strongly_typed else 'precision flags'}, {build.seconds:.0f} s"),
        )


def _verify(run: _Run) -> None:
    """Parity of every artifact file against the PyTorch model, written to ``parity.json``."""
    from focal.export.verify import VerifyConfig, verify

    cfg = run.cfg
    assert cfg.verify is not None
    run.verification = verify(run.out, cfg.verify, reference=run.model, config=VerifyConfig(
        clustering=cfg.clustering, min_cluster_size=cfg.min_cluster_size, limit=cfg.verify_limit,
    ), progress=run.say)
    parity = run.out / "parity.json"
    parity.write_text(json.dumps(run.verification.to_dict(), indent=2) + "\n")
    run.checks.append(WrittenFile(parity, parity.stat().st_size, "parity figures (verify)"))


def _report_policy(manifest: Manifest) -> dict[str, Any]:
    """The manifest's input policy as :class:`ReportConfig` fields (the report runs images as the runtime does)."""
    spec = manifest.input
    if spec.policy != "native":
        return {}
    return dict(policy="native", size=spec.size, stride=manifest.members[0].stride, max_side=spec.max_side,
                max_points=spec.max_points)


def _precision_report(run: _Run) -> None:
    """Per-block FP16/INT8 sensitivity, written to ``precision_report.json``."""
    from focal.export.sensitivity import ReportConfig, precision_report

    cfg = run.cfg
    images: Any = cfg.verify if cfg.verify else run.reader
    run.report = precision_report(
        run.out / "model.onnx", images, ReportConfig(
            clustering=cfg.clustering, min_cluster_size=cfg.min_cluster_size, images=cfg.report_images,
            fp16_keep=tuple(cfg.fp16_keep), int8_exclude=tuple(cfg.int8_exclude),
            int8_keep_stem=cfg.int8_keep_stem, int8_keep_head=cfg.int8_keep_head,
            fp16=True, int8=run.reader is not None, calib_method=cfg.calib_method, calib_cache=cfg.calib_cache,
            **_report_policy(run.manifest),
        ),
        reader=run.reader, progress=run.say,
    )
    path = run.out / "precision_report.json"
    path.write_text(json.dumps(run.report.to_dict(), indent=2) + "\n")
    run.checks.append(WrittenFile(path, path.stat().st_size, "precision report"))


@dataclass(frozen=True)
class _Step:
    """One row of the export table."""

    name: str  # short name: the timing line, ExportResult.step_seconds
    title: Callable[[_Run], str]  # the progress line opening the step (it may use what earlier steps made)
    applies: Callable[[_Run], bool]  # whether this export runs it; decided before the first step runs
    run: Callable[[_Run], None]  # does the step, recording what it made in the _Run


def _build_title(run: _Run) -> str:
    cfg = run.cfg
    return f"building {cfg.backbone}" + (
        f" from {', '.join(cfg.weights)}" if cfg.weights else f" (random/packaged weights, seed {cfg.seed})")


def _onnx_title(run: _Run) -> str:
    cfg = run.cfg
    return (f"exporting ONNX (opset {cfg.opset}, {run.size} px, batch {cfg.batch}"
            f"{' dynamic' if cfg.dynamic_batch else ''})")


# The export, in order (ultralytics' export_formats()): each step one function,
# numbered among the steps that apply, timed and announced by _run_step.
_STEPS: tuple[_Step, ...] = (
    _Step("build", _build_title, lambda r: r.model is None, _build),
    _Step("onnx", _onnx_title, lambda r: True, _export_fp32),
    _Step("fp16", lambda r: "FP16 graph (normalisations, softmax logits, reductions and the output tail kept FP32)",
          lambda r: r.cfg.fp16, _lower_fp16),
    _Step("int8", lambda r: f"INT8 graph: {r.cfg.calib_method} calibration on {len(r.reader)} images",
          lambda r: r.cfg.int8, _lower_int8),
    _Step("engines", lambda r: f"TensorRT engines: {', '.join(_engine_precisions(r.cfg))}",
          lambda r: r.cfg.engine, _build_engines),
    _Step("verify", lambda r: f"verifying on {r.cfg.verify}", lambda r: bool(r.cfg.verify), _verify),
    _Step("report", lambda r: "precision report: per-block sensitivity",
          lambda r: r.cfg.precision_report, _precision_report),
)


def _run_step(step: _Step, number: int, total: int, run: _Run) -> None:
    """Announce ``[number/total] title``, run the step, then report and record its wall time."""
    run.say(f"[{number}/{total}] {step.title(run)}")
    start = time.perf_counter()
    step.run(run)
    run.step_seconds[step.name] = time.perf_counter() - start
    run.say(f"[{number}/{total}] {step.name}: {run.step_seconds[step.name]:.1f} s")


def _start(cfg: ExportConfig, extractor: Any, say: Callable[[str], None]) -> _Run:
    """The artifact folder and, for a given extractor, the model the build step would make."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    run = _Run(cfg=cfg, out=out, say=say)
    if extractor is not None:
        if extractor.name != cfg.backbone:
            raise ValueError(f"extractor is {extractor.name!r} but the config says {cfg.backbone!r}")
        run.model = extractor.eval()
        run.source = model_source(run.model, (), None)
    return run


def _result(run: _Run, seconds: float) -> ExportResult:
    """The files in artifact order: model files, the manifest listing them, then the checks on them."""
    assert run.manifest is not None and run.onnx is not None
    manifest_file = WrittenFile(run.out / "focal.json", (run.out / "focal.json").stat().st_size, "manifest")
    return ExportResult(
        out_dir=run.out, manifest=run.manifest, files=[*run.files, manifest_file, *run.checks], onnx=run.onnx,
        fp16=run.fp16, int8=run.int8, calibration=run.calibration, engines=run.engines,
        verification=run.verification, report=run.report, engine_error=run.engine_error, seconds=seconds,
        step_seconds=dict(run.step_seconds),
    )


def export(
    cfg: ExportConfig,
    extractor: Any = None,
    progress: Callable[[str], None] | None = None,
) -> ExportResult:
    """Export a FOCAL extractor to an artifact folder (see the module docstring).

    Args:
        cfg: what to export.
        extractor: an already-built extractor to export instead of building
            ``cfg.backbone`` (its name must match); the manifest then records
            no way to rebuild it, so verification needs it passed in.
        progress: ``callable(str)`` for one-line progress messages.

    Returns:
        An :class:`ExportResult` (``.summary()`` prints it).

    Raises:
        ValueError / FileNotFoundError: bad configuration, weights or images.
        EngineUnavailable: ``cfg.engine`` on a machine without TensorRT or a
            GPU; raised last, after the ONNX files, the manifest and any
            verification were written; ``exc.result`` holds the result.
    """
    start = time.perf_counter()
    run = _start(cfg, extractor, progress or (lambda _msg: None))
    todo = [step for step in _STEPS if step.applies(run)]
    for number, step in enumerate(todo, 1):
        _run_step(step, number, len(todo), run)
    result = _result(run, time.perf_counter() - start)
    if run.engine_error:
        exc = EngineUnavailable(run.engine_error)
        exc.result = result  # type: ignore[attr-defined]
        raise exc
    return result
