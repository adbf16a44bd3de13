"""Triton Python model ``PREFIX_postprocess``: feature maps -> masks and scores, as the Detector makes them.

Inputs per request: ``features`` FP32 ``[B, D, h, w]`` (the network's raw
output), ``size`` INT32 ``[B, 2]`` (each image's H, W) and, when the
``copy_move`` or the ``double_jpeg`` parameter is ``"true"``, ``image`` BYTES
``[B, 1]`` (the encoded files the preprocess model decoded). Outputs: ``mask`` UINT8
``[B, H, W]`` (255 = forged, at the image's resolution; the images of one
request must share a size), ``score`` FP32 ``[B, 1]`` in ``[0, 1]``,
``forged_fraction`` FP32 ``[B, 1]``, ``post_ms`` FP32 ``[B, 2]`` (cluster,
postprocess milliseconds), ``copy_move`` INT8 ``[B, 1]`` (1 a copy-move was
found, 0 none, -1 not searched), ``double_jpeg`` INT8 ``[B, 1]`` (1 a region
that missed the file's first JPEG compression was found, 0 the file shows
double compression but no such region, -1 not searched or no evidence) and,
when the ``heatmap`` parameter is ``"true"``, ``heatmap`` UINT8 ``[B, H, W]``
(the features' forgery map as 8-bit levels, as ``Detector(heatmap=True)``'s
map through :func:`focal.runtime.render.heatmap_levels`).

Every image goes through :func:`focal.runtime.postprocess.localize` with the
clustering method and minimum cluster size of ``1/focal.json`` (the
artifact's defaults, as ``Detector``) and, under the native input policy,
the geometry the preprocess model used, recomputed from the size. Under
``copy_move`` the file is decoded again with the preprocess model's
decoder settings (``max_pixels``, ``exif_orientation``: the same pixels),
searched by :func:`focal.runtime.copymove.detect_copy_move` on the
clustering's kernels, and its mask joined to the clustering's, as
``Detector(copy_move=True)`` joins them.
Under ``double_jpeg`` the file's bytes go to
:func:`focal.runtime.doublejpeg.detect_double_jpeg` (``max_pixels``), its
mask is turned by the file's EXIF orientation where the preprocess model
decodes with it (``exif_orientation``), and joined after the copy-move mask,
as ``Detector(double_jpeg=True)`` joins it: a mask whose shape is not the
image's (an orientation OpenCV read and the header parse did not) is
dropped with a warning, and the element answers -1, as in the Detector. A
copy or region either cue found lifts ``score`` as the Detector's does
(:func:`focal.runtime.score.joined_score`).
"""

from __future__ import annotations

import numpy as np
import triton_python_backend_utils as pb_utils

from focal.runtime.cluster import resolve_backend
from focal.runtime.copymove import CopyMoveConfig, detect_copy_move
from focal.runtime.doublejpeg import DoubleJpegConfig, double_jpeg_mask
from focal.runtime.score import joined_score
from focal.runtime.geometry import image_geometry
from focal.runtime.imageio import DEFAULT_MAX_PIXELS, decode_image
from focal.runtime.postprocess import localize, soft_map
from focal.runtime.render import heatmap_levels
from focal.serving.triton_models._common import manifest, parameters, request_name

# The ``copy_move`` / ``double_jpeg`` output without the cue (or, double-JPEG, without evidence in the
# file): not "none found" (0), which only a search over evidence can say.
NOT_SEARCHED = -1


class TritonPythonModel:
    """Cluster, mask and score (and the copy-move / double-JPEG cues when configured), one response per request."""

    def initialize(self, args: dict[str, str]) -> None:
        self.manifest = manifest(args)
        params = parameters(args)
        # Resolved once: the clustering and the copy-move search run on the same kernels, as in the Detector.
        self.cluster_backend = resolve_backend(params.get("cluster_backend", "auto"))  # type: ignore[arg-type]
        self.copy_move = params.get("copy_move", "false") == "true"
        self.double_jpeg = params.get("double_jpeg", "false") == "true"
        self.max_pixels = int(params.get("max_pixels", DEFAULT_MAX_PIXELS))
        self.orientation = params.get("exif_orientation", "true") == "true"
        self.heatmap = params.get("heatmap", "false") == "true"
        self.stride = self.manifest.members[0].stride

    def _one(self, feature_map: np.ndarray, height: int, width: int):
        """The image's localisation and, under ``heatmap``, its heatmap levels (else None)."""
        spec, clustering = self.manifest.input, self.manifest.clustering
        if height < 1 or width < 1:
            raise ValueError(f"size must be positive, got {height} x {width}")
        geometry = image_geometry(height, width, spec.policy, spec.size, self.stride, spec.max_side, spec.max_points)
        loc = localize(feature_map.astype(np.float32, copy=False), height, width, clustering.method,
                       clustering.min_cluster_size, self.cluster_backend, geometry=geometry,
                       split_threshold=clustering.split_threshold)
        heat = heatmap_levels(soft_map(loc.features, loc.labels, height, width, geometry)) if self.heatmap else None
        return loc, heat

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
                done = [self._one(f, int(h), int(w)) for f, (h, w) in zip(feats, sizes)]
                locs = [loc for loc, _ in done]
                if len({loc.mask.shape for loc in locs}) > 1:
                    raise ValueError("images of different sizes in one request: send one image per request")
                masks = np.stack([loc.mask for loc in locs])
                fractions = [loc.forged_fraction for loc in locs]
                scores = [loc.score for loc in locs]
                found = [NOT_SEARCHED] * len(locs)
                spliced = [NOT_SEARCHED] * len(locs)
                if self.copy_move or self.double_jpeg:
                    files = pb_utils.get_input_tensor_by_name(request, "image").as_numpy().reshape(-1)
                    if len(files) != len(locs):
                        raise ValueError(f"{len(files)} images but {len(locs)} feature maps in one request")
                    for k, ((h, w), item) in enumerate(zip(sizes, files)):
                        data, name, joined = bytes(item), request_name(request, k), False
                        # The Detector's union, in its order: the clustering's mask, every copy's source
                        # and target, then the regions that missed the first compression.
                        if self.copy_move:
                            copies = self._copies(data, name, int(h), int(w))
                            masks[k] = np.maximum(masks[k], copies)
                            found[k], joined = int(copies.any()), True
                            scores[k] = joined_score(scores[k], copies, CopyMoveConfig.false_alarm)
                        if self.double_jpeg:
                            regions = double_jpeg_mask(data, (int(h), int(w)), self.orientation, name, self.max_pixels)
                            if regions is not None:
                                masks[k] = np.maximum(masks[k], regions)
                                spliced[k], joined = int(regions.any()), True
                                scores[k] = joined_score(scores[k], regions, DoubleJpegConfig.false_alarm)
                        if joined:  # the Detector recounts only where a cue gave a mask
                            fractions[k] = float(np.count_nonzero(masks[k])) / masks[k].size
                outputs = [
                    pb_utils.Tensor("mask", masks),
                    pb_utils.Tensor("score", np.asarray([[v] for v in scores], np.float32)),
                    pb_utils.Tensor("forged_fraction", np.asarray([[f] for f in fractions], np.float32)),
                    pb_utils.Tensor("post_ms", np.asarray([[loc.cluster_ms, loc.post_ms] for loc in locs], np.float32)),
                    pb_utils.Tensor("copy_move", np.asarray([[f] for f in found], np.int8)),
                    pb_utils.Tensor("double_jpeg", np.asarray([[f] for f in spliced], np.int8)),
                ]
                if self.heatmap:
                    outputs.append(pb_utils.Tensor("heatmap", np.stack([heat for _, heat in done])))
                responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
            except (ValueError, RuntimeError) as exc:
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(exc))))
        return responses
