"""Backbone registry, output contracts, fusion, and the packaged Lite0 weights."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from focal.training import (
    Extractor,
    FusedExtractor,
    backbone_info,
    build_extractor,
    list_backbones,
    register_backbone,
)
from focal.training.backbones import create_backbone

# A cheap configuration of each registered backbone: (factory overrides, input side S).
# The SAM ViTs keep their real code paths (windowed and global attention) at two
# blocks and a small side; full size they are 90M / 300M parameters.
_SMALL: dict[str, tuple[dict, int]] = {
    "tiny": ({}, 128),
    "lite": ({"pretrained": False}, 256),
    "hrnet": ({}, 128),
    "vit-b": ({"img_size": 256, "depth": 2, "global_attn_indexes": (1,)}, 256),
    "vit": ({"img_size": 64, "depth": 2, "global_attn_indexes": (1,)}, 64),
}


def _every_backbone() -> list:
    """Every registered name; one without a small configuration runs at full size, marked slow."""
    return [pytest.param(n, id=n, marks=() if n in _SMALL else pytest.mark.slow) for n in list_backbones()]


def _small(name: str) -> tuple[dict, int]:
    return _SMALL.get(name, ({}, backbone_info(name).input_size))


def test_registry_lists_the_design_backbones() -> None:
    assert {"vit", "vit-b", "hrnet", "lite", "tiny"} <= set(list_backbones())


def test_duplicate_and_unknown_names_raise() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_backbone("tiny", input_size=8, feature_dim=1, stride=1, description="x")(lambda: None)
    with pytest.raises(ValueError, match="known: .*lite.*tiny"):
        create_backbone("resnet-9000")


@pytest.mark.parametrize("name", _every_backbone())
def test_output_contract(name: str) -> None:
    """``[B, 3, S, S]`` float32 -> ``[B, D, S / stride, S / stride]`` float32, D and stride as registered."""
    kwargs, size = _small(name)
    info = backbone_info(name)
    model = create_backbone(name, **kwargs)
    with torch.no_grad():
        out = model(torch.rand(2, 3, size, size))
    assert tuple(out.shape) == (2, info.feature_dim, size // info.stride, size // info.stride)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert model.feature_dim == info.feature_dim and model.stride == info.stride


@pytest.mark.parametrize("name", list_backbones())
def test_registry_facts_match_the_built_module(name: str) -> None:
    """The registry's static facts (default size, D, stride) are those of the module at its defaults."""
    info = backbone_info(name)
    with torch.device("meta"):  # full size, no memory and no forward
        model = create_backbone(name, **({"pretrained": False} if info.packaged_weights else {}))
    assert (model.input_size, model.feature_dim, model.stride) == (info.input_size, info.feature_dim, info.stride)


@pytest.mark.parametrize("name", _every_backbone())
def test_extractor_carries_the_registry_contract(name: str) -> None:
    """``build_extractor`` wraps each backbone; a fixed-size one is built for the side it is given."""
    kwargs, size = _small(name)
    info = backbone_info(name)
    ext = build_extractor(name, **kwargs)
    assert isinstance(ext, Extractor) and ext.members == [ext] and ext.kwargs == kwargs
    assert (ext.feature_dim, ext.stride) == (info.feature_dim, info.stride)
    assert ext.input_size == (kwargs["img_size"] if info.fixed_input_size else info.input_size)


@pytest.mark.parametrize("name", [n for n in list_backbones() if backbone_info(n).packaged_weights])
def test_packaged_weights_load_unless_asked_not_to(name: str) -> None:
    def build(**kwargs: object) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)  # the parts the package does not ship are random
        return create_backbone(name, **kwargs).state_dict()

    a, b, c = build(), build(), build(pretrained=False)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_vit_large_is_the_sam_vit_l_encoder() -> None:
    """`vit` has exactly the tensors of SAM's ViT-L image encoder (built on the meta device, no forward)."""
    from segment_anything.modeling import ImageEncoderViT

    with torch.device("meta"):
        ours = create_backbone("vit")
        sam = ImageEncoderViT(
            img_size=1024, embed_dim=1024, depth=24, num_heads=16, out_chans=256, qkv_bias=True,
            use_rel_pos=True, window_size=14, global_attn_indexes=(5, 11, 17, 23),
        )
    ours_shapes = {k: tuple(v.shape) for k, v in ours.encoder.state_dict().items()}
    sam_shapes = {k.replace("mlp.lin", "mlp.fc"): tuple(v.shape) for k, v in sam.state_dict().items()}
    assert ours_shapes == sam_shapes
    assert sum(int(np.prod(s)) for s in ours_shapes.values()) > 300_000_000


def test_hrnet_branch_equals_timm_full_network() -> None:
    """Dropping the unused heads and fusions leaves branch 0 of timm's HRNet-W32 unchanged."""
    import timm

    torch.manual_seed(0)
    ours = create_backbone("hrnet")
    full = timm.create_model("hrnet_w32", pretrained=False).eval()
    missing, unexpected = full.load_state_dict(ours.body.state_dict(), strict=False)
    assert not unexpected and missing  # timm's extra heads stay random; unused by branch 0
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        n = full
        stem = n.act2(n.bn2(n.conv2(n.act1(n.bn1(n.conv1(x))))))
        expected = n.stages(stem)[0]
        got = ours(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert len(ours.state_dict()) == 1752  # the pose HRNet-W32's 1754 tensors less its final_layer


def test_lite_imagenet_weights_load_and_classify(shared_data) -> None:
    """The packaged Lite0 weights, renamed onto timm, recognise a cat (ImageNet 281-285)."""
    import timm

    from focal.training.backbones import load_efficientnet_lite0_imagenet

    model = timm.create_model("efficientnet_lite0", pretrained=False).eval()
    load_efficientnet_lite0_imagenet(model)
    img = cv2.imread(str(shared_data / "natural/pypi/scikit-image__chelsea.png"))[:, :, ::-1]
    x = torch.from_numpy(cv2.resize(img, (224, 224)).astype(np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        top = model((x - 127 / 255) / (128 / 255)).argmax(1).item()
    assert 281 <= top <= 285


def test_fusion_resizes_normalises_and_concatenates() -> None:
    torch.manual_seed(0)
    fused = build_extractor("tiny+hrnet")
    assert isinstance(fused, FusedExtractor) and fused.feature_dim == 16 + 32 and fused.stride == 8
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        out = fused(x)
        a, b = (m(x) for m in fused.members)
    assert out.shape == (1, 48, 8, 8)
    torch.testing.assert_close(out[:, :16], F.normalize(a, dim=1))
    # HRNet's stride-4 map (16 x 16) is taken every other pixel: nearest down-sampling.
    torch.testing.assert_close(out[:, 16:], F.normalize(b[:, :, ::2, ::2], dim=1))
    assert torch.allclose(out.norm(dim=1), torch.full((1, 8, 8), 2.0**0.5))


def test_single_extractor_metadata() -> None:
    ext = build_extractor("tiny")
    assert isinstance(ext, Extractor) and ext.input_size == 128 and ext.members == [ext]
    with pytest.raises(ValueError, match="empty member"):
        build_extractor("tiny+")
