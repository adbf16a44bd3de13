"""FOCAL export: ONNX graphs and TensorRT engines (the export issue fills this in)."""

__all__: list[str] = []
