"""FOCAL behind existing serving and scale-out engines, built on :mod:`focal.runtime`.

- :mod:`focal.serving.triton_server`: ``focal-serve``, the detector behind
  NVIDIA Triton Inference Server (through PyTriton), KServe v2 over HTTP/gRPC;
- :mod:`focal.serving.triton_repo`: a standard Triton model repository for
  users who run their own ``tritonserver``;
- :mod:`focal.serving.ray_job`: ``focal-detect --ray``, batch detection on Ray Data.

Nothing here is imported by the runtime; the engines (``nvidia-pytriton``,
``ray``) are imported only by the module that needs them, with a one-line
error naming the extra to install when they are missing.
"""
