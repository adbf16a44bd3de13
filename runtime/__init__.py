"""FOCAL runtime: torch-free clustering, pre- and post-processing.

Imports only NumPy, OpenCV and (lazily) ``hdbscan``; never torch.
"""

from focal.runtime.cluster import CLUSTER_METHODS, cluster_features, normalize_rows
from focal.runtime.postprocess import labels_to_mask
from focal.runtime.preprocess import to_input

__all__ = ["CLUSTER_METHODS", "cluster_features", "labels_to_mask", "normalize_rows", "to_input"]
