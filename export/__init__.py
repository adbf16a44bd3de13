"""FOCAL export: ONNX graphs (FP32, FP16, INT8 Q/DQ), TensorRT engines, and proof of parity.

Needs the ``export`` and ``train`` extras and ONNX Runtime (``cpu`` or
``gpu`` extra); TensorRT engines also need the ``gpu`` extra on a CUDA
machine. ``tensorrt`` and ``pycuda`` are imported only by the functions
that build or run engines.
"""

import importlib
from typing import Any

# Names resolve on first use (PEP 562): `import focal.export.cli` or `focal.export.config` must not
# import onnx and torch, so `focal-export --from-artifact` runs on a runtime-only install.
# focal.export.verify is imported at once: it is light (NumPy and the runtime), and importing the
# submodule later would bind the package's `verify` to the module instead of the function.
from focal.export.verify import PARITY_THRESHOLDS, Parity, Thresholds, VerifyConfig, VerifyReport, load_images, verify

_HOMES: dict[str, str] = {
    "ExportConfig": "focal.export.config",
    "MIN_OPSET": "focal.export.config",
    "SYNTHETIC": "focal.export.config",
    "model_from_manifest": "focal.export.model",
    "model_source": "focal.export.model",
    "INPUT_NAME": "focal.export.onnx",
    "OUTPUT_NAME": "focal.export.onnx",
    "OnnxExport": "focal.export.onnx",
    "check_onnx": "focal.export.onnx",
    "clean_graph": "focal.export.onnx",
    "export_onnx": "focal.export.onnx",
    "save_onnx": "focal.export.onnx",
    "ExportResult": "focal.export.pipeline",
    "FUSION_RULE": "focal.export.pipeline",
    "WrittenFile": "focal.export.pipeline",
    "calibration_reader": "focal.export.pipeline",
    "export": "focal.export.pipeline",
    "FP16_KEPT_OPS": "focal.export.precision",
    "FP16_MAX": "focal.export.precision",
    "Fp16Config": "focal.export.precision",
    "Int8Config": "focal.export.precision",
    "LoweredGraph": "focal.export.precision",
    "convert_fp16": "focal.export.precision",
    "emulate_fp16_storage": "focal.export.precision",
    "prepare_for_quantization": "focal.export.precision",
    "quantize_int8": "focal.export.precision",
    "BlockSensitivity": "focal.export.sensitivity",
    "PrecisionReport": "focal.export.sensitivity",
    "ReportConfig": "focal.export.sensitivity",
    "Variant": "focal.export.sensitivity",
    "precision_report": "focal.export.sensitivity",
    "EngineBuild": "focal.export.tensorrt",
    "EngineConfig": "focal.export.tensorrt",
    "EngineUnavailable": "focal.export.tensorrt",
    "build_engine": "focal.export.tensorrt",
    "check_tensorrt": "focal.export.tensorrt",
    "engine_file_name": "focal.export.tensorrt",
    "gpu_info": "focal.export.tensorrt",
}

def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'focal.export' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # resolved once
    return value


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
