"""Triton Python model ``PREFIX_features`` (features backend ``python``): the ONNX graph on focal.runtime's engine.

For a server with only the Python backend (such as the one in the
nvidia-pytriton wheel); a full Triton build serves the same graph with its
onnxruntime backend. ``1/`` is an artifact of its own: ``focal.json`` and
the model file, checked against its sha256 when the model loads.

Input ``input``-named tensor (the manifest's ``input.name``) FP32, output
the manifest's ``output.name`` FP32 ``[.., D, h, w]``. With Triton batching
(a dynamic batch axis) the requests of a batch are stacked into one engine
call and split again; with ``max_batch_size: 0`` each request is one call.
Instances of kind GPU run ONNX Runtime's CUDA provider, CPU ones its CPU
provider; a provider that cannot run fails the load, never falls back.
"""

from __future__ import annotations

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from focal.runtime.engines import open_engine
from focal.serving.triton_models._common import manifest, parameters, version_dir


class TritonPythonModel:
    """One engine per model instance."""

    def initialize(self, args: dict[str, str]) -> None:
        self.manifest = manifest(args)
        params = parameters(args)
        backend = "cuda" if args.get("model_instance_kind") == "GPU" else "cpu"
        self.engine = open_engine(version_dir(args), self.manifest, backend, params["precision"],
                                  model_file=params["model_file"])
        self.batching = int(json.loads(args["model_config"]).get("max_batch_size", 0)) > 0
        self.input_name = self.manifest.input.name
        self.output_name = self.manifest.output.name

    def _respond(self, tensor: np.ndarray):
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(self.output_name, tensor)])

    def execute(self, requests: list) -> list:
        tensors = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        if self.batching and len(tensors) > 1:
            try:
                # One engine call for the whole batch: what Triton's dynamic batcher is for.
                out = self.engine.infer({self.input_name: np.concatenate(tensors)})[self.output_name]
                bounds = np.cumsum([0] + [len(t) for t in tensors])
                return [self._respond(out[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
            except Exception:  # noqa: BLE001 - retried one by one below, so only the failing request fails
                pass
        responses = []
        for tensor in tensors:
            try:
                responses.append(self._respond(self.engine.infer({self.input_name: tensor})[self.output_name]))
            except Exception as exc:  # noqa: BLE001 - an engine error becomes this request's error response
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(
                    f"features: {type(exc).__name__}: {exc}")))
        return responses

    def finalize(self) -> None:
        self.engine.close()
