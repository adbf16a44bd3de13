"""FOCAL export: ONNX graphs (FP32, FP16, INT8 Q/DQ), TensorRT engines, and proof of parity.

Needs the ``export`` and ``train`` extras and ONNX Runtime (``cpu`` or
``gpu`` extra); TensorRT engines also need the ``gpu`` extra on a CUDA
machine. ``tensorrt`` and ``pycuda`` are imported only by the functions
that build or run engines.
"""

from focal.export.config import SYNTHETIC, ExportConfig
from focal.export.model import model_from_manifest, model_source
from focal.export.onnx import INPUT_NAME, MIN_OPSET, OUTPUT_NAME, OnnxExport, check_onnx, clean_graph, export_onnx, save_onnx
from focal.export.pipeline import FUSION_RULE, ExportResult, WrittenFile, calibration_reader, export
from focal.export.precision import (
    FP16_KEPT_OPS,
    FP16_MAX,
    Fp16Config,
    Int8Config,
    LoweredGraph,
    convert_fp16,
    emulate_fp16_storage,
    prepare_for_quantization,
    quantize_int8,
)
from focal.export.sensitivity import BlockSensitivity, PrecisionReport, ReportConfig, Variant, precision_report
from focal.export.tensorrt import (
    EngineBuild,
    EngineConfig,
    EngineUnavailable,
    build_engine,
    check_tensorrt,
    engine_file_name,
    gpu_info,
)
from focal.export.verify import PARITY_THRESHOLDS, Parity, Thresholds, VerifyConfig, VerifyReport, load_images, verify

__all__ = [
    "FP16_KEPT_OPS",
    "FP16_MAX",
    "FUSION_RULE",
    "INPUT_NAME",
    "MIN_OPSET",
    "OUTPUT_NAME",
    "PARITY_THRESHOLDS",
    "SYNTHETIC",
    "BlockSensitivity",
    "EngineBuild",
    "EngineConfig",
    "EngineUnavailable",
    "ExportConfig",
    "ExportResult",
    "Fp16Config",
    "Int8Config",
    "LoweredGraph",
    "OnnxExport",
    "Parity",
    "PrecisionReport",
    "ReportConfig",
    "Thresholds",
    "Variant",
    "VerifyConfig",
    "VerifyReport",
    "WrittenFile",
    "build_engine",
    "calibration_reader",
    "check_onnx",
    "check_tensorrt",
    "clean_graph",
    "convert_fp16",
    "emulate_fp16_storage",
    "engine_file_name",
    "export",
    "export_onnx",
    "gpu_info",
    "load_images",
    "model_from_manifest",
    "model_source",
    "precision_report",
    "prepare_for_quantization",
    "quantize_int8",
    "save_onnx",
    "verify",
]
