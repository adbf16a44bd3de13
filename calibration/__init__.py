"""FOCAL INT8 calibration: calibration sets, methods, cached activation ranges.

Needs the ``export`` extra and ONNX Runtime (``cpu`` or ``gpu`` extra); the
synthetic set also needs the ``train`` extra.
"""

from focal.calibration.cache import CalibrationCache, cache_key, default_cache_dir
from focal.calibration.calibrate import CalibrationResult, calibrate, read_ranges
from focal.calibration.methods import CALIBRATION_METHODS, DEFAULT_QUANTIZED_OPS, CalibrationConfig
from focal.calibration.readers import (
    DEFAULT_JPEG_QUALITIES,
    ArrayReader,
    CalibrationReader,
    DatasetReader,
    FolderReader,
    NativeInput,
    SyntheticReader,
    jpeg_roundtrip,
    list_image_files,
)

__all__ = [
    "CALIBRATION_METHODS",
    "DEFAULT_JPEG_QUALITIES",
    "DEFAULT_QUANTIZED_OPS",
    "ArrayReader",
    "CalibrationCache",
    "CalibrationConfig",
    "CalibrationReader",
    "CalibrationResult",
    "DatasetReader",
    "FolderReader",
    "NativeInput",
    "SyntheticReader",
    "cache_key",
    "calibrate",
    "default_cache_dir",
    "jpeg_roundtrip",
    "list_image_files",
    "read_ranges",
]
