"""Triton Python model ``PREFIX_preprocess``: encoded images -> the network input and each image's size.

Input ``image``: BYTES ``[B, 1]``, one encoded file (JPEG, PNG, ...) per
element. Outputs per request: ``input`` FP32 ``[B, 3, S, S]`` (``[B, 3, h,
w]`` under the native policy, one image per request), ``size`` INT32 ``[B,
2]`` (H, W of the decoded image), ``pre_ms`` FP32 ``[B, 2]`` (decode,
preprocess milliseconds).

Decoding is :func:`focal.runtime.imageio.decode_image` (the pixel limit is
checked on the header, before any pixel is decoded) and preprocessing
:func:`focal.runtime.preprocess.network_input`, as the Detector does. A file
that cannot be decoded fails its own request, with the decoder's message;
the other requests of the batch are answered.
"""

from __future__ import annotations

import time

import numpy as np
import triton_python_backend_utils as pb_utils

from focal.runtime.geometry import image_geometry
from focal.runtime.imageio import DEFAULT_MAX_PIXELS, decode_image
from focal.runtime.preprocess import network_input
from focal.serving.triton_models._common import manifest, parameters, request_name


class TritonPythonModel:
    """Decode and preprocess, one response per request."""

    def initialize(self, args: dict[str, str]) -> None:
        self.manifest = manifest(args)
        params = parameters(args)
        self.max_pixels = int(params.get("max_pixels", DEFAULT_MAX_PIXELS))
        self.orientation = params.get("exif_orientation", "true") == "true"
        self.stride = self.manifest.members[0].stride

    def _one(self, data: bytes, name: str) -> tuple[np.ndarray, tuple[int, int], list[float]]:
        spec = self.manifest.input
        t0 = time.perf_counter()
        image = decode_image(data, name, self.max_pixels, self.orientation)
        t1 = time.perf_counter()
        height, width = image.shape[:2]
        geometry = image_geometry(height, width, spec.policy, spec.size, self.stride, spec.max_side, spec.max_points)
        tensor = network_input(image, spec.size, geometry, spec.mean, spec.std)
        return tensor, (height, width), [(t1 - t0) * 1e3, (time.perf_counter() - t1) * 1e3]

    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:
            try:
                items = pb_utils.get_input_tensor_by_name(request, "image").as_numpy().reshape(-1)
                done = [self._one(bytes(item), request_name(request, k)) for k, item in enumerate(items)]
                if len({t.shape for t, _, _ in done}) > 1:
                    raise ValueError(f"{len(done)} images of different network shapes in one request: send one "
                                     "image per request under the native input policy")
                responses.append(pb_utils.InferenceResponse(output_tensors=[
                    pb_utils.Tensor("input", np.stack([t for t, _, _ in done])),
                    pb_utils.Tensor("size", np.asarray([s for _, s, _ in done], np.int32)),
                    pb_utils.Tensor("pre_ms", np.asarray([m for _, _, m in done], np.float32)),
                ]))
            except (ValueError, OSError) as exc:
                # This request alone fails; the others of the batch are answered.
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(exc))))
        return responses
