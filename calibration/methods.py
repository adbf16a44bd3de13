"""Calibration methods: how activation ranges are chosen from the calibration set.

All three map onto ONNX Runtime's calibrators, which run the FP32 graph on
the set and watch each tensor that will carry a Q/DQ pair:

* ``minmax``: the largest |value| seen. Nothing is clipped, so a rare
  outlier widens the step for every other value; the safe default for small
  sets and for features whose tails matter.
* ``percentile``: the ``percentile``-th percentile of |value| over a
  histogram; clips the rarest outliers to keep a finer step.
* ``entropy``: the threshold minimising the KL divergence between the FP32
  histogram and its 8-bit version (TensorRT's classic calibrator rule).

Ranges are symmetric about zero: TensorRT only accepts symmetric INT8
(zero point 0), so an asymmetric range would be wasted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["CALIBRATION_METHODS", "DEFAULT_QUANTIZED_OPS", "CalibrationConfig"]

CALIBRATION_METHODS: tuple[str, ...] = ("minmax", "entropy", "percentile")

# Ops whose inputs carry Q/DQ by default: the ones TensorRT runs in INT8
# (convolutions and matrix products); everything else stays in float, where
# 8 bits buy little speed and cost accuracy.
DEFAULT_QUANTIZED_OPS: tuple[str, ...] = ("Conv", "ConvTranspose", "MatMul", "Gemm")


@dataclass(frozen=True)
class CalibrationConfig:
    """How activation ranges are measured."""

    method: str = "minmax"  # one of CALIBRATION_METHODS
    percentile: float = 99.999  # percentile method: share (in %) of |values| inside the range
    num_bins: int = 2048  # histogram methods: bins of the |value| histogram
    op_types: tuple[str, ...] | None = DEFAULT_QUANTIZED_OPS  # nodes whose tensors get ranges; None = every node

    def __post_init__(self) -> None:
        if self.method not in CALIBRATION_METHODS:
            raise ValueError(f"unknown calibration method {self.method!r}; choose one of {CALIBRATION_METHODS}")
        if not 50.0 < self.percentile <= 100.0:
            raise ValueError(f"percentile must be in (50, 100], got {self.percentile}")
        if self.num_bins < 128:
            raise ValueError(f"num_bins must be >= 128, got {self.num_bins}")

    def ort_method(self) -> Any:
        """The matching ``onnxruntime.quantization.CalibrationMethod``."""
        from onnxruntime.quantization import CalibrationMethod

        return {
            "minmax": CalibrationMethod.MinMax,
            "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile,
        }[self.method]

    def ort_options(self) -> dict[str, Any]:
        """``extra_options`` for ``onnxruntime.quantization.create_calibrator``."""
        if self.method == "minmax":
            return {"symmetric": True, "moving_average": False}
        if self.method == "percentile":
            return {"symmetric": True, "num_bins": self.num_bins, "percentile": self.percentile}
        return {"symmetric": True, "num_bins": self.num_bins, "num_quantized_bins": 128}

    def key(self) -> dict[str, Any]:
        """The settings that change the ranges (part of the cache key)."""
        key: dict[str, Any] = {"method": self.method, "op_types": None if self.op_types is None else sorted(self.op_types)}
        if self.method != "minmax":
            key["num_bins"] = self.num_bins
        if self.method == "percentile":
            key["percentile"] = self.percentile
        return key
