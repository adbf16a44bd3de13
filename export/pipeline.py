"""``export(cfg)``: the one library call behind ``focal-export``.

Steps, each reported through ``progress``:

1. build the PyTorch extractor (our checkpoint, the authors', or random);
2. ``model.onnx``: FP32 graph, cleaned, checked, compared with PyTorch;
3. ``model.fp16.onnx`` (``--fp16``): FP16 with the fragile ops in FP32;
4. ``model.int8.onnx`` (``--int8``): calibrated (or cached) symmetric Q/DQ
   (what TensorRT builds from), and ``model.int8.cpu.onnx``: the same nodes
   with uint8 asymmetric activations, what ONNX Runtime's CPU provider runs
   (``--no-int8-cpu`` skips it);
5. ``focal.json``: the manifest listing every file (rewritten after each step);
6. TensorRT engines (``--engine``) for the exported precisions;
7. verification (``--verify``) and the precision report (``--precision-report``).

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
from focal.calibration.readers import CalibrationReader, FolderReader, SyntheticReader
from focal.export.config import SYNTHETIC, ExportConfig
from focal.export.model import build_model, model_source
from focal.export.onnx import INPUT_NAME, OUTPUT_NAME, OnnxExport, check_onnx, export_onnx, save_onnx
from focal.export.precision import Fp16Config, Int8Config, LoweredGraph, convert_fp16, prepare_for_quantization, quantize_int8
from focal.export.tensorrt import EngineBuild, EngineConfig, EngineUnavailable, build_engine, check_tensorrt, engine_file_name
from focal.runtime.manifest import (
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


def calibration_reader(cfg: ExportConfig, input_size: int) -> CalibrationReader:
    """The calibration set ``cfg.calib`` names.

    ``DIR``: images of that folder (at most ``calib_count``, each re-encoded at
    one of the JPEG qualities); masks in a sibling ``masks`` folder, if any,
    say which are forged. ``synthetic:DIR``: synthetic forgeries made from
    the untouched photos in ``DIR`` (``synthetic`` alone reads ``$FOCAL_PHOTOS``).

    Raises:
        ValueError: no such folder, or ``synthetic`` without photos.
    """
    assert cfg.calib is not None
    batch = cfg.batch
    if cfg.calib == SYNTHETIC or cfg.calib.startswith(SYNTHETIC + ":"):
        photos = cfg.calib[len(SYNTHETIC) + 1:] or os.environ.get("FOCAL_PHOTOS", "")
        if not photos:
            raise ValueError("--calib synthetic needs untouched photos: --calib synthetic:PHOTO_DIR (or $FOCAL_PHOTOS)")
        return SyntheticReader(photos, input_size, count=cfg.calib_count, seed=cfg.seed, batch=batch)
    folder = Path(cfg.calib)
    masks = folder.parent / "masks"
    return FolderReader(folder, input_size, limit=cfg.calib_count, masks=masks if masks.is_dir() else None, batch=batch)


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
    say = progress or (lambda _msg: None)
    start = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)

    # 1. the PyTorch model
    if extractor is None:
        say(f"[1/6] building {cfg.backbone}" + (f" from {', '.join(cfg.weights)}" if cfg.weights else " (random/packaged weights, seed %d)" % cfg.seed))
        model = build_model(cfg.backbone, cfg.weights, cfg.input_size, cfg.seed)
        source = model_source(model, cfg.weights, cfg.seed)
    else:
        if extractor.name != cfg.backbone:
            raise ValueError(f"extractor is {extractor.name!r} but the config says {cfg.backbone!r}")
        model = extractor.eval()
        source = model_source(model, (), None)
    size = int(cfg.input_size or model.input_size)

    # 2. FP32 ONNX
    say(f"[2/6] exporting ONNX (opset {cfg.opset}, {size} px, batch {cfg.batch}{' dynamic' if cfg.dynamic_batch else ''})")
    fp32_path = out / "model.onnx"
    onnx_export = export_onnx(model, fp32_path, size, cfg.batch, cfg.dynamic_batch, cfg.opset, cfg.seed)
    say(f"      {fp32_path.name}: {onnx_export.nodes} nodes, {_size(onnx_export.size_bytes)}, "
        f"max |ORT - torch| = {onnx_export.max_abs_diff:.3g} in {onnx_export.seconds:.1f} s")
    files = [WrittenFile(fp32_path, onnx_export.size_bytes, f"ONNX FP32, opset {onnx_export.opset}")]
    _, dim, height, width = onnx_export.output_shape
    manifest = Manifest(
        extractor=model.name,
        members=[MemberSpec(m.name, m.feature_dim, m.stride) for m in model.members],
        input=InputSpec(name=INPUT_NAME, size=size, dynamic_batch=cfg.dynamic_batch, batch=cfg.batch),
        output=OutputSpec(name=OUTPUT_NAME, feature_dim=dim, height=height, width=width),
        models=[ModelFile("model.onnx", "onnx", "fp32", onnx_export.sha256,
                          external_data=onnx_export.external_data.name if onnx_export.external_data else None)],
        fusion=FUSION_RULE if len(model.members) > 1 else None,
        clustering=ClusteringSpec(cfg.clustering, cfg.min_cluster_size),
        tools=_tool_versions(onnx_export.opset),
        source=source,
    )
    save_manifest(manifest, out)

    reader: CalibrationReader | None = calibration_reader(cfg, size) if cfg.calib else None
    fp16_rec: LoweredGraph | None = None
    int8_rec: LoweredGraph | None = None
    calib: CalibrationResult | None = None
    import onnx

    # 3. FP16
    if cfg.fp16:
        say("[3/6] FP16 graph (normalisations, softmax logits, reductions and the output tail kept FP32)")
        ranges = None
        if reader is not None:
            # Ranges of every tensor (min-max, cached) let nodes that near FP16's limit stay FP32.
            full = calibrate(fp32_path, reader, CalibrationConfig(method="minmax", op_types=None), cfg.calib_cache, say)
            ranges = read_ranges(full)
        fp16_rec = convert_fp16(onnx.load(str(fp32_path)), Fp16Config(keep_nodes=tuple(cfg.fp16_keep)), ranges)
        path = out / "model.fp16.onnx"
        save_onnx(fp16_rec.model, path)
        check_onnx(path)
        manifest = manifest.with_model(ModelFile(
            "model.fp16.onnx", "onnx", "fp16", sha256_file(path),
            fp32_ops=list(fp16_rec.kept_ops), excluded_nodes=list(fp16_rec.kept_nodes),
        ))
        files.append(WrittenFile(path, path.stat().st_size,
                                 f"ONNX FP16, {len(fp16_rec.kept_nodes)} nodes kept FP32"))
        save_manifest(manifest, out)
        say(f"      {path.name}: {len(fp16_rec.lowered_nodes)} nodes FP16, {len(fp16_rec.kept_nodes)} FP32 "
            f"({', '.join(fp16_rec.kept_ops) or 'none'})")

    # 4. INT8
    if cfg.int8:
        assert reader is not None  # ExportConfig refuses int8 without calib
        say(f"[4/6] INT8 graph: {cfg.calib_method} calibration on {len(reader)} images")
        with tempfile.TemporaryDirectory(prefix="focal-int8-") as tmp:
            prepared = prepare_for_quantization(fp32_path, Path(tmp) / "prepared.onnx")
            calib = calibrate(prepared, reader, CalibrationConfig(method=cfg.calib_method), cfg.calib_cache, say)
            path = out / "model.int8.onnx"
            int8_cfg = Int8Config(
                exclude=tuple(cfg.int8_exclude), keep_stem=cfg.int8_keep_stem, keep_head=cfg.int8_keep_head,
            )
            int8_rec = quantize_int8(prepared, path, calib, int8_cfg)
            cpu_path = out / "model.int8.cpu.onnx"
            cpu_rec = (
                quantize_int8(prepared, cpu_path, calib, replace(int8_cfg, activations="uint8-asymmetric"))
                if cfg.int8_cpu else None
            )
        check_onnx(path)
        calibration_entry = {
            **calib.description,
            "method": calib.config.key(),
            "cache_key": calib.key,
            "quantization": {"format": "QDQ", "activations": "int8 symmetric per-tensor",
                             "weights": "int8 symmetric per-channel", "ops": list(Int8Config().op_types)},
        }
        manifest = manifest.with_model(ModelFile(
            "model.int8.onnx", "onnx", "int8", sha256_file(path),
            fp32_ops=list(int8_rec.kept_ops), excluded_nodes=list(int8_rec.kept_nodes), calibration=calibration_entry,
        ))
        files.append(WrittenFile(path, path.stat().st_size,
                                 f"ONNX INT8 Q/DQ, {len(int8_rec.lowered_nodes)} nodes quantized"))
        save_manifest(manifest, out)
        say(f"      {path.name}: {len(int8_rec.lowered_nodes)} nodes quantized, {len(int8_rec.kept_nodes)} left in float")
        if cpu_rec is not None:
            check_onnx(cpu_path)
            cpu_quant = {**calibration_entry["quantization"], "activations": "uint8 asymmetric per-tensor"}
            manifest = manifest.with_model(ModelFile(
                cpu_path.name, "onnx", "int8", sha256_file(cpu_path), fp32_ops=list(cpu_rec.kept_ops),
                excluded_nodes=list(cpu_rec.kept_nodes), calibration={**calibration_entry, "quantization": cpu_quant},
                target="cpu",
            ))
            files.append(WrittenFile(cpu_path, cpu_path.stat().st_size,
                                     "ONNX INT8 Q/DQ, uint8 activations, for ONNX Runtime's CPU provider"))
            save_manifest(manifest, out)
            say(f"      {cpu_path.name}: the same with uint8 asymmetric activations (ONNX Runtime CPU)")

    # 5. engines
    engines: list[EngineBuild] = []
    engine_error = None
    if cfg.engine:
        wanted = [p for p, on in (("fp16", cfg.fp16), ("int8", cfg.int8)) if on] or ["fp32"]
        try:
            trt_version, gpu, cap = check_tensorrt()
            say(f"[5/6] TensorRT {trt_version} engines on {gpu} (sm {cap}): {', '.join(wanted)}")
            engine_cfg = EngineConfig(workspace_gb=cfg.workspace_gb, timing_cache=cfg.timing_cache,
                                      opt_batch=cfg.batch, max_batch=cfg.max_batch)
            for precision in wanted:
                source_entry = manifest.model("onnx", precision)
                build = build_engine(out / source_entry.file, out / engine_file_name(precision, trt_version), precision,
                                     engine_cfg, fp32_nodes=source_entry.excluded_nodes, batch=cfg.batch, progress=say)
                engines.append(build)
                manifest = manifest.with_model(replace(
                    source_entry, file=build.path.name, kind="tensorrt", sha256=build.sha256,
                    onnx_sha256=source_entry.sha256, tensorrt=build.tensorrt, gpu=build.gpu,
                    compute_capability=build.compute_capability, external_data=None,
                ))
                files.append(WrittenFile(build.path, build.size_bytes,
                                         f"TensorRT {build.tensorrt} {precision} engine, {build.gpu}, "
                                         f"{'strongly typed' if build.strongly_typed else 'precision flags'}, "
                                         f"{build.seconds:.0f} s"))
                save_manifest(manifest, out)
        except EngineUnavailable as exc:
            engine_error = str(exc)
            say(f"[5/6] engines: {engine_error}")

    files.append(WrittenFile(out / "focal.json", (out / "focal.json").stat().st_size, "manifest"))

    # 6. verification and the precision report
    verification = None
    if cfg.verify:
        from focal.export.verify import VerifyConfig, verify

        say(f"[6/6] verifying on {cfg.verify}")
        verification = verify(out, cfg.verify, reference=model, config=VerifyConfig(
            clustering=cfg.clustering, min_cluster_size=cfg.min_cluster_size, limit=cfg.verify_limit,
        ), progress=say)
        parity = out / "parity.json"
        parity.write_text(json.dumps(verification.to_dict(), indent=2) + "\n")
        files.append(WrittenFile(parity, parity.stat().st_size, "parity figures (verify)"))
    report = None
    if cfg.precision_report:
        from focal.export.sensitivity import ReportConfig, precision_report

        images: Any = cfg.verify if cfg.verify else reader
        say("precision report: per-block sensitivity")
        report = precision_report(
            fp32_path, images, ReportConfig(
                clustering=cfg.clustering, min_cluster_size=cfg.min_cluster_size, images=cfg.report_images,
                fp16_keep=tuple(cfg.fp16_keep), int8_exclude=tuple(cfg.int8_exclude),
                int8_keep_stem=cfg.int8_keep_stem, int8_keep_head=cfg.int8_keep_head,
                fp16=True, int8=reader is not None, calib_method=cfg.calib_method, calib_cache=cfg.calib_cache,
            ),
            reader=reader, progress=say,
        )
        path = out / "precision_report.json"
        path.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        files.append(WrittenFile(path, path.stat().st_size, "precision report"))

    result = ExportResult(
        out_dir=out, manifest=manifest, files=files, onnx=onnx_export, fp16=fp16_rec, int8=int8_rec,
        calibration=calib, engines=engines, verification=verification, report=report, engine_error=engine_error,
        seconds=time.perf_counter() - start,
    )
    if engine_error:
        exc = EngineUnavailable(engine_error)
        exc.result = result  # type: ignore[attr-defined]
        raise exc
    return result
