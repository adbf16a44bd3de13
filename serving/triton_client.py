"""A client for ``focal-serve``'s model over KServe v2 (HTTP or gRPC), on Triton's own client library.

    with FocalClient("127.0.0.1:8000") as client:
        [result] = client.detect([Path("a.jpg").read_bytes()])
        result.mask  # [H, W] uint8, 255 = forged

Any KServe v2 client works as well; this one crops each mask to its
``size`` (masks of a multi-image request come zero-padded to the largest)
and turns an element's ``error`` into :attr:`RemoteResult.error`, its
``copy_move`` (1 / 0 / -1) into :attr:`RemoteResult.copy_move` and its
``double_jpeg`` (1 / 0 / -1) into :attr:`RemoteResult.double_jpeg` (True / False / None).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

__all__ = ["FocalClient", "RemoteResult"]


@dataclass(frozen=True)
class RemoteResult:
    """One image's answer from the server.

    ``mask``: ``[H, W]`` uint8 in {0, 255} at the image's resolution (``[0, 0]``
    when ``error`` is set); ``score`` and ``forged_fraction`` in [0, 1] (NaN
    on error); ``timings``: milliseconds per stage; ``error``: one line, or None;
    ``copy_move``: whether a copy-move was found (its mask is then part of
    ``mask``), None where none was searched for (a server without
    ``--copy-move``, one older than the ``copy_move`` output, or an error);
    ``double_jpeg``: whether a region that missed the file's first JPEG
    compression, or sits on another block grid, was found (its mask is then
    part of ``mask``), False where the file gives evidence (a double
    compression, or a grid of its own) but no such region, None where the cue
    did not run or the file gave no evidence (a server without
    ``--double-jpeg`` or older than the output, a picture that never was a
    JPEG, or an error);
    ``heatmap``: ``[H, W]`` uint8 levels of the features' forgery map (255 at a
    cosine distance of 0.5 to the pristine direction) from a server run with
    ``--heatmap``, else None.
    """

    mask: np.ndarray
    score: float
    forged_fraction: float
    timings: dict[str, float]
    error: str | None
    copy_move: bool | None = None
    double_jpeg: bool | None = None
    heatmap: np.ndarray | None = None


def _flag(column: np.ndarray | None, k: int) -> bool | None:
    """Element ``k`` of an INT8 ``[n, 1]`` cue output: 1 True, 0 False, -1 (not searched) or no output None."""
    return None if column is None or int(column[k, 0]) < 0 else bool(column[k, 0])


class FocalClient:
    """Sends encoded image files to the ``focal`` model and returns one :class:`RemoteResult` per file.

    Args:
        url: ``host:port`` of the HTTP endpoint (``protocol="http"``) or the gRPC one (``"grpc"``).
        protocol: ``"http"`` or ``"grpc"``.
        model_name: the served model's name.
        timeout_s: per-request network timeout.

    Raises (from :meth:`detect`): ``tritonclient.utils.InferenceServerException`` for a request the
    server refused as a whole (full queue, unknown model, server down); per-image problems are not
    raised, they are in the results.
    """

    def __init__(self, url: str, protocol: str = "http", model_name: str = "focal", timeout_s: float = 60.0) -> None:
        if protocol == "http":
            import tritonclient.http as api

            self._client = api.InferenceServerClient(url, connection_timeout=timeout_s, network_timeout=timeout_s)
        elif protocol == "grpc":
            import tritonclient.grpc as api

            self._client = api.InferenceServerClient(url)
        else:
            raise ValueError(f"protocol must be 'http' or 'grpc', got {protocol!r}")
        self._api, self.protocol, self.model_name, self.timeout_s = api, protocol, model_name, timeout_s

    def __enter__(self) -> "FocalClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def ready(self) -> bool:
        """Whether the server is up and the model loaded (False while starting or after it stopped)."""
        try:
            return bool(self._client.is_server_ready() and self._client.is_model_ready(self.model_name))
        except Exception:  # connection refused, reset, timeout: not ready
            return False

    def detect(self, files: list[bytes]) -> list[RemoteResult]:
        """One request holding ``files`` (encoded images), answered in order."""
        data = np.array([[f] for f in files], dtype=object)
        inp = self._api.InferInput("image", list(data.shape), "BYTES")
        inp.set_data_from_numpy(data)
        kwargs = {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}
        response = self._client.infer(self.model_name, [inp], **kwargs)
        masks, sizes = response.as_numpy("mask"), response.as_numpy("size")
        scores, forged = response.as_numpy("score"), response.as_numpy("forged")
        timings, errors = response.as_numpy("timings"), response.as_numpy("error")
        copies = response.as_numpy("copy_move")  # None from a server without that output
        spliced = response.as_numpy("double_jpeg")  # likewise
        heat = response.as_numpy("heatmap")  # None from a server without --heatmap
        out = []
        for k in range(len(files)):
            error = errors[k, 0].decode() if isinstance(errors[k, 0], bytes) else str(errors[k, 0])
            h, w = (int(v) for v in sizes[k])
            out.append(RemoteResult(
                mask=np.ascontiguousarray(masks[k, :h, :w]), score=float(scores[k, 0]),
                forged_fraction=float(forged[k, 0]), timings=json.loads(timings[k, 0] or b"{}"),
                error=error or None, copy_move=_flag(copies, k),
                double_jpeg=_flag(spliced, k),
                heatmap=None if heat is None or error else np.ascontiguousarray(heat[k, :h, :w]),
            ))
        return out
