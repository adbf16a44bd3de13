"""Triton Python model ``PREFIX_postprocess``: feature maps -> masks and scores, as the Detector makes them.

Inputs per request: ``features`` FP32 ``[B, D, h, w]`` (the network's raw
output), ``size`` INT32 ``[B, 2]`` (each image's H, W). Outputs: ``mask``
UINT8 ``[B, H, W]`` (255 = forged, at the image's resolution; the images of
one request must share a size), ``score`` FP32 ``[B, 1]`` in ``[0, 1]``,
``forged_fraction`` FP32 ``[B, 1]``, ``post_ms`` FP32 ``[B, 2]`` (cluster,
postprocess milliseconds).

Every image goes through :func:`focal.runtime.postprocess.localize` with the
clustering method and minimum cluster size of ``1/focal.json`` (the
artifact's defaults, as ``Detector``) and, under the native input policy,
the geometry the preprocess model used, recomputed from the size.
"""

from __future__ import annotations

import numpy as np
import triton_python_backend_utils as pb_utils

from focal.runtime.cluster import resolve_backend
from focal.runtime.geometry import image_geometry
from focal.runtime.postprocess import localize
from focal.serving.triton_models._common import manifest, parameters


class TritonPythonModel:
    """Cluster, mask and score, one response per request."""

    def initialize(self, args: dict[str, str]) -> None:
        self.manifest = manifest(args)
        self.cluster_backend = resolve_backend(parameters(args).get("cluster_backend", "auto"))  # type: ignore[arg-type]
        self.stride = self.manifest.members[0].stride

    def _one(self, feature_map: np.ndarray, height: int, width: int):
        spec, clustering = self.manifest.input, self.manifest.clustering
        if height < 1 or width < 1:
            raise ValueError(f"size must be positive, got {height} x {width}")
        geometry = image_geometry(height, width, spec.policy, spec.size, self.stride, spec.max_side, spec.max_points)
        return localize(feature_map.astype(np.float32, copy=False), height, width, clustering.method,
                        clustering.min_cluster_size, self.cluster_backend, geometry=geometry,
                        split_threshold=clustering.split_threshold)

    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:
            try:
                feats = pb_utils.get_input_tensor_by_name(request, "features").as_numpy()
                sizes = pb_utils.get_input_tensor_by_name(request, "size").as_numpy().reshape(-1, 2)
                if len(feats) != len(sizes):
                    raise ValueError(f"{len(feats)} feature maps but {len(sizes)} sizes in one request")
                locs = [self._one(f, int(h), int(w)) for f, (h, w) in zip(feats, sizes)]
                if len({loc.mask.shape for loc in locs}) > 1:
                    raise ValueError("images of different sizes in one request: send one image per request")
                responses.append(pb_utils.InferenceResponse(output_tensors=[
                    pb_utils.Tensor("mask", np.stack([loc.mask for loc in locs])),
                    pb_utils.Tensor("score", np.asarray([[loc.score] for loc in locs], np.float32)),
                    pb_utils.Tensor("forged_fraction", np.asarray([[loc.forged_fraction] for loc in locs], np.float32)),
                    pb_utils.Tensor("post_ms", np.asarray([[loc.cluster_ms, loc.post_ms] for loc in locs], np.float32)),
                ]))
            except (ValueError, RuntimeError) as exc:
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(exc))))
        return responses
