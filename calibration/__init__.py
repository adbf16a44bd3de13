"""FOCAL INT8 calibration data and quantization (the export issue fills this in)."""

__all__: list[str] = []
