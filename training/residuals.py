"""Noise-residual channels beside RGB: what forensic networks look at first.

A camera's traces (sensor noise, demosaicing, JPEG blocks) live in the
highest frequencies, which an ImageNet stem mostly discards. Two standard
ways to hand them to the network, both from the [0, 1] RGB input:

- **SRM** (Fridrich & Kodovsky's spatial rich model, as RGB-N uses it):
  three fixed 5 x 5 high-pass kernels on the gray image;
- **Bayar** (Bayar & Stamm's constrained convolution): learned 5 x 5
  kernels forced to predict each pixel from its neighbours and subtract
  it, so they can only learn residuals, never content.

Both are plain convolutions, so the exported ONNX graph needs nothing new.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["RESIDUAL_KINDS", "BayarConv", "NoiseResiduals", "srm_kernels"]

RESIDUAL_KINDS: tuple[str, ...] = ("srm", "bayar", "srm+bayar")

# BT.601 luma weights: residuals are taken on gray, where sensor noise is
# not split by the colour filter.
_LUMA = (0.299, 0.587, 0.114)


def srm_kernels() -> torch.Tensor:
    """The three SRM filters RGB-N uses, ``[3, 1, 5, 5]`` float32, each summing to 0."""
    kb = torch.tensor([[0, 0, 0, 0, 0], [0, -1, 2, -1, 0], [0, 2, -4, 2, 0], [0, -1, 2, -1, 0], [0, 0, 0, 0, 0]]) / 4.0
    kv = torch.tensor([[-1, 2, -2, 2, -1], [2, -6, 8, -6, 2], [-2, 8, -12, 8, -2], [2, -6, 8, -6, 2],
                       [-1, 2, -2, 2, -1]]) / 12.0
    first = torch.tensor([[0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 1, -2, 1, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]) / 2.0
    return torch.stack([kb, kv, first]).unsqueeze(1).float()


def _pad(x: torch.Tensor, p: int) -> torch.Tensor:
    # Replicated edges: zero padding would draw a false edge, a strong
    # residual, around every image.
    return F.pad(x, (p, p, p, p), mode="replicate")


class BayarConv(nn.Module):
    """Constrained 5 x 5 convolution: centre weight -1, the others summing to 1.

    The constraint is applied in every forward pass (not by clipping after
    the optimiser step), so the exported graph holds the constrained weights
    as constants and training needs no hook.

    Args:
        channels: output residual channels.
    """

    def __init__(self, channels: int = 3, size: int = 5) -> None:
        super().__init__()
        self.size = size
        self.weight = nn.Parameter(torch.randn(channels, 1, size, size) * 0.1)

    def constrained(self) -> torch.Tensor:
        """The effective kernels, ``[C, 1, k, k]``."""
        centre = self.size * self.size // 2
        flat = self.weight.flatten(1)
        mask = torch.ones_like(flat)
        mask[:, centre] = 0.0
        neighbours = flat * mask
        total = neighbours.sum(dim=1, keepdim=True)
        # Keep the sum away from 0 with its sign, so the division stays finite.
        total = torch.where(total.abs() < 1e-3, torch.full_like(total, 1e-3), total)
        kernel = neighbours / total - (1.0 - mask)  # neighbours sum to 1, centre = -1
        return kernel.view_as(self.weight)

    def forward(self, gray: torch.Tensor) -> torch.Tensor:
        """``[B, 1, H, W]`` -> ``[B, C, H, W]``."""
        return F.conv2d(_pad(gray, self.size // 2), self.constrained())


class NoiseResiduals(nn.Module):
    """Residual channels of an RGB image, scaled to about unit spread.

    Args:
        kind: one of :data:`RESIDUAL_KINDS`.
        scale: multiplies the residuals; camera noise in [0, 1] units has a
            spread of a few 1e-3, so the default brings it near 1 for the
            convolution that follows.

    Shapes: ``[B, 3, H, W]`` float in [0, 1] -> ``[B, C, H, W]`` with C = 3
    (srm), 3 (bayar) or 6 (srm+bayar).
    """

    def __init__(self, kind: str = "srm", scale: float = 32.0) -> None:
        super().__init__()
        if kind not in RESIDUAL_KINDS:
            raise ValueError(f"unknown residual kind {kind!r}; choose one of {RESIDUAL_KINDS}")
        self.kind = kind
        self.scale = scale
        self.register_buffer("luma", torch.tensor(_LUMA).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("srm", srm_kernels(), persistent=False)
        self.bayar = BayarConv(3) if "bayar" in kind else None

    @property
    def channels(self) -> int:
        """Residual channels produced."""
        return 3 * len(self.kind.split("+"))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        gray = (image * self.luma).sum(dim=1, keepdim=True)
        parts = []
        if "srm" in self.kind:
            parts.append(F.conv2d(_pad(gray, 2), self.srm))
        if self.bayar is not None:
            parts.append(self.bayar(gray))
        return torch.cat(parts, dim=1) * self.scale
