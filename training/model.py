"""Extractors: backbones with their contract, single or fused.

An extractor maps ``image [B, 3, S, S]`` float32 RGB in ``[0, 1]`` to
``features [B, D, h, w]``. A single extractor returns its backbone's raw
features (the pipeline L2-normalises them); a fused one returns the
concatenation of its members' per-pixel L2-normalised maps (the paper's
fusion rule, method.md section 1), so its output is normalised per member.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from focal.training.backbones import backbone_info, create_backbone

FUSION_SEPARATOR = "+"


class Extractor(nn.Module):
    """One registered backbone with the metadata the pipeline needs.

    Attributes:
        name: registry name (``"vit"``, ``"lite"``...).
        kwargs: the factory overrides it was built with (kept for checkpoints).
        input_size: side S of the square input.
        feature_dim: D.
        stride: S / h.
    """

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__()
        self.name = name
        self.kwargs = dict(kwargs)
        self.backbone = create_backbone(name, **kwargs)
        self.input_size = int(getattr(self.backbone, "input_size", backbone_info(name).input_size))
        self.feature_dim = int(self.backbone.feature_dim)
        self.stride = int(self.backbone.stride)

    @property
    def members(self) -> list["Extractor"]:
        """The single extractors this one is made of (itself)."""
        return [self]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``[B, 3, S, S]`` float32 in [0, 1] -> ``[B, D, S/stride, S/stride]`` raw features."""
        return self.backbone(image)


class FusedExtractor(nn.Module):
    """Several extractors whose features are concatenated, without retraining.

    Each member's map is resized to the first member's ``h x w`` with nearest
    interpolation (``F.interpolate``'s default, as the authors' release),
    L2-normalised per pixel, and the maps are concatenated along D. All
    members see the same input image of the first member's size.
    """

    def __init__(self, members: list[Extractor]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"fusion needs at least two extractors, got {len(members)}")
        self.parts = nn.ModuleList(members)
        self.name = FUSION_SEPARATOR.join(m.name for m in members)
        self.input_size = members[0].input_size
        self.feature_dim = sum(m.feature_dim for m in members)
        self.stride = members[0].stride

    @property
    def members(self) -> list[Extractor]:
        """The member extractors, first one setting the map size."""
        return list(self.parts)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``[B, 3, S, S]`` -> ``[B, sum(D_i), h_0, w_0]``, each member's part unit-norm per pixel."""
        maps = []
        size = None
        for part in self.parts:
            feats = part(image)
            if size is None:
                size = feats.shape[-2:]
            elif feats.shape[-2:] != size:
                feats = F.interpolate(feats, size=size, mode="nearest")
            maps.append(F.normalize(feats, dim=1))
        return torch.cat(maps, dim=1)


def parse_extractor_name(name: str) -> list[str]:
    """Split ``"vit+hrnet"`` into member names, each checked against the registry.

    Raises:
        ValueError: empty member or unknown backbone.
    """
    parts = [p.strip() for p in name.split(FUSION_SEPARATOR)]
    if not all(parts):
        raise ValueError(f"bad extractor name {name!r}: empty member")
    for part in parts:
        backbone_info(part)  # raises with the list of known names
    return parts

