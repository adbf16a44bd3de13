"""Triton Python model ``PREFIX_postprocess``: feature maps -> masks and scores, as the Detector makes them.

Inputs per request: ``features`` FP32 ``[B, D, h, w]`` (the network's raw
output), ``size`` INT32 ``[B, 2]`` (each image's H, W) and, when the
``copy_move`` parameter is ``"true"``, ``image`` BYTES ``[B, 1]`` (the
encoded files the preprocess model decoded). Outputs: ``mask`` UINT8
``[B, H, W]`` (255 = forged, at the image's resolution; the images of one
request must share a size), ``score`` FP32 ``[B, 1]`` in ``[0, 1]``,
``forged_fraction`` FP32 ``[B, 1]``, ``post_ms`` FP32 ``[B, 2]`` (cluster,
postprocess milliseconds), ``copy_move`` INT8 ``[B, 1]`` (1 a copy-move was
found, 0 none, -1 not searched).

Every image goes through :func:`focal.runtime.postprocess.localize` with the
clustering method and minimum cluster size of ``1/focal.json`` (the
artifact's defaults, as ``Detector``) and, under the native input policy,
the geometry the preprocess model used, recomputed from the size. Under
``copy_move`` the file is decoded again with the preprocess model's
decoder settings (``max_pixels``, ``exif_orientation``: the same pixels),
searched by :func:`focal.runtime.copymove.detect_copy_move` on the
clustering's kernels, and its mask joined to the clustering's, as
``Detector(copy_move=True)`` joins them; ``score`` stays the features'.
"""

from __future__ import annotations

import numpy as np
import triton_python_backend_utils as pb_utils

from focal.runtime.cluster import resolve_backend
from focal.runtime.copymove import detect_copy_move
from focal.runtime.geometry import image_geometry
from focal.runtime.imageio import DEFAULT_MAX_PIXELS, decode_image
from focal.runtime.postprocess import localize
from focal.serving.triton_models._common import manifest, parameters, request_name

NOT_SEARCHED = -1  # the ``copy_move`` output without the search: not "none found" (0)


class TritonPythonModel:
    """Cluster, mask and score (and search for copy-moves when configured), one response per request."""

    def initialize(self, args: dict[str, str]) -> None:
        self.manifest = manifest(args)
        params = parameters(args)
        # Resolved once: the clustering and the copy-move search run on the same kernels, as in the Detector.
        self.cluster_backend = resolve_backend(params.get("cluster_backend", "auto"))  # type: ignore[arg-type]
        self.copy_move = params.get("copy_move", "false") == "true"
        self.max_pixels = int(params.get("max_pixels", DEFAULT_MAX_PIXELS))
        self.orientation = params.get("exif_orientation", "true") == "true"
        self.stride = self.manifest.members[0].stride

    def _one(self, feature_map: np.ndarray, height: int, width: int):
        spec, clustering = self.manifest.input, self.manifest.clustering
        if height < 1 or width < 1:
            raise ValueError(f"size must be positive, got {height} x {width}")
        geometry = image_geometry(height, width, spec.policy, spec.size, self.stride, spec.max_side, spec.max_points)
        return localize(feature_map.astype(np.float32, copy=False), height, width, clustering.method,
                        clustering.min_cluster_size, self.cluster_backend, geometry=geometry,
                        split_threshold=clustering.split_threshold)

    def _copies(self, data: bytes, name: str, height: int, width: int) -> np.ndarray:
        """``[H, W]`` uint8 copy-move mask (255 = source or target) of one encoded file."""
        image = decode_image(data, name, self.max_pixels, self.orientation)
        if image.shape[:2] != (height, width):
            raise ValueError(f"{name}: decodes to {image.shape[0]} x {image.shape[1]}, but its size says "
                             f"{height} x {width}")
        return detect_copy_move(image, backend=self.cluster_backend)

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
                masks = np.stack([loc.mask for loc in locs])
                fractions = [loc.forged_fraction for loc in locs]
                found = [NOT_SEARCHED] * len(locs)
                if self.copy_move:
                    files = pb_utils.get_input_tensor_by_name(request, "image").as_numpy().reshape(-1)
                    if len(files) != len(locs):
                        raise ValueError(f"{len(files)} images but {len(locs)} feature maps in one request")
                    for k, ((h, w), data) in enumerate(zip(sizes, files)):
                        copies = self._copies(bytes(data), request_name(request, k), int(h), int(w))
                        # The Detector's union: the clustering's mask, then every copy's source and target.
                        masks[k] = np.maximum(masks[k], copies)
                        fractions[k] = float(np.count_nonzero(masks[k])) / masks[k].size
                        found[k] = int(copies.any())
                responses.append(pb_utils.InferenceResponse(output_tensors=[
                    pb_utils.Tensor("mask", masks),
                    pb_utils.Tensor("score", np.asarray([[loc.score] for loc in locs], np.float32)),
                    pb_utils.Tensor("forged_fraction", np.asarray([[f] for f in fractions], np.float32)),
                    pb_utils.Tensor("post_ms", np.asarray([[loc.cluster_ms, loc.post_ms] for loc in locs], np.float32)),
                    pb_utils.Tensor("copy_move", np.asarray([[f] for f in found], np.int8)),
                ]))
            except (ValueError, RuntimeError) as exc:
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(exc))))
        return responses
