"""FOCAL forgery localization: training, export and a torch-free runtime.

Subpackages: :mod:`focal.training` (PyTorch), :mod:`focal.export` (ONNX,
TensorRT), :mod:`focal.calibration` (INT8 data), :mod:`focal.runtime`
(torch-free runner). Importing :mod:`focal` itself imports none of them.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("focal")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0+unknown"

__all__ = ["__version__"]
