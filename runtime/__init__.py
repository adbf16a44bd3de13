"""FOCAL runtime: the torch-free runner for exported FOCAL models.

Imports only NumPy, OpenCV, ONNX Runtime and (lazily) ``hdbscan``, TensorRT
and pycuda; never torch.
"""

from focal.runtime.cluster import CLUSTER_METHODS, cluster_features, normalize_rows
from focal.runtime.detector import STAGES, Detector, DetectorConfig, EncodedImage, Result
from focal.runtime.manifest import Manifest, load_manifest
from focal.runtime.postprocess import Localization, labels_to_mask, localize
from focal.runtime.preprocess import to_input
from focal.runtime.score import forgery_score

__all__ = [
    "CLUSTER_METHODS",
    "STAGES",
    "Detector",
    "EncodedImage",
    "DetectorConfig",
    "Localization",
    "Manifest",
    "Result",
    "cluster_features",
    "forgery_score",
    "labels_to_mask",
    "load_manifest",
    "localize",
    "normalize_rows",
    "to_input",
]
