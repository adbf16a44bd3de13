"""Loading the authors' released checkpoint layouts and our own safetensors checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from focal.training import FusedExtractor, build_extractor, read_checkpoint_config, save_checkpoint

# A small SAM encoder config that both segment-anything and timm can build.
SMALL_SAM = dict(img_size=256, embed_dim=96, depth=2, num_heads=2, global_attn_indexes=(1,))


class _Net(nn.Module):
    """Stand-in for the release's wrapper module: the backbone lives in `.net`."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net


def _randomise(module: nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.05)


def _dataparallel_state(net: nn.Module) -> dict[str, torch.Tensor]:
    return {f"module.{k}": v for k, v in _Net(net).state_dict().items()}


def _small_sam():
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    encoder = ImageEncoderViT(
        img_size=256, embed_dim=96, depth=2, num_heads=2, out_chans=256, qkv_bias=True,
        use_rel_pos=True, window_size=14, global_attn_indexes=(1,),
    )
    prompt = PromptEncoder(embed_dim=256, image_embedding_size=(16, 16), input_image_size=(256, 256), mask_in_chans=16)
    decoder = MaskDecoder(
        transformer_dim=256,
        transformer=TwoWayTransformer(depth=1, embedding_dim=256, mlp_dim=512, num_heads=2),
    )
    return Sam(image_encoder=encoder, prompt_encoder=prompt, mask_decoder=decoder).eval()


def test_authors_vit_checkpoint_reproduces_sam_encoder(tmp_path: Path) -> None:
    """A whole-SAM, DataParallel-wrapped checkpoint gives SAM's own encoder features, bit for bit in intent."""
    sam = _small_sam()
    _randomise(sam, seed=1)
    path = tmp_path / "FOCAL_ViT_weights.pth"
    torch.save(_dataparallel_state(sam), path)

    ours = build_extractor("vit-b", weights=path, **SMALL_SAM)
    x = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = sam.image_encoder(x)  # the release calls the encoder on [0, 1] RGB directly
        got = ours(x)
    assert got.shape == expected.shape == (2, 256, 16, 16)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_authors_hrnet_checkpoint_loads_strictly(tmp_path: Path) -> None:
    """The pose-HRNet layout (module.net. keys + unused final_layer) loads with nothing left over."""
    source = build_extractor("hrnet")
    _randomise(source, seed=2)
    state = {f"module.net.{k.removeprefix('backbone.body.')}": v for k, v in source.state_dict().items()}
    state["module.net.final_layer.weight"] = torch.randn(17, 32, 1, 1)
    state["module.net.final_layer.bias"] = torch.randn(17)
    assert len(state) == 1754  # the pose HRNet-W32's tensor count
    path = tmp_path / "FOCAL_HRNet_weights.pth"
    torch.save(state, path)

    loaded = build_extractor("hrnet", weights=path)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), source(x), rtol=0, atol=0)


def test_mismatched_checkpoint_lists_missing_and_unexpected(tmp_path: Path) -> None:
    sam = _small_sam()
    path = tmp_path / "vit.pth"
    torch.save(_dataparallel_state(sam), path)
    with pytest.raises(ValueError, match=r"vit\.pth: checkpoint does not match the model: \d+ missing \[.*\]; \d+ unexpected"):
        build_extractor("hrnet", weights=path)
    # Same architecture family but another size: wrong shapes are named too.
    with pytest.raises(ValueError, match="wrong shape"):
        build_extractor("vit-b", weights=path, img_size=256, embed_dim=128, depth=2, num_heads=2, global_attn_indexes=(1,))


def test_non_official_keys_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="not an authors' FOCAL checkpoint"):
        build_extractor("hrnet", weights=path)


def test_pickled_code_is_not_executed(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"module.net.x": torch.zeros(1), "payload": _Net(nn.Identity())}, path)
    with pytest.raises(ValueError, match="evil.pth: cannot read checkpoint"):
        build_extractor("hrnet", weights=path)


@pytest.mark.parametrize("name", ["tiny", "lite", "tiny+hrnet"])
def test_own_checkpoint_round_trip(tmp_path: Path, name: str) -> None:
    torch.manual_seed(3)
    kwargs = [{"out_dim": 8}] + [{}] * name.count("+") if name.startswith("tiny") else [{"pretrained": False}]
    members = [build_extractor(part, **kw) for part, kw in zip(name.split("+"), kwargs)]
    model = members[0] if len(members) == 1 else FusedExtractor(members)
    _randomise(model, seed=4)
    path = save_checkpoint(model, tmp_path / "run" / "best.safetensors", extra={"epoch": 7})
    cfg = read_checkpoint_config(path)
    assert cfg.extractor == name and cfg.extra == {"epoch": 7} and cfg.member_kwargs == kwargs
    loaded = build_extractor(weights=path)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert not list(path.parent.glob("*.tmp"))


def test_own_checkpoint_errors(tmp_path: Path) -> None:
    path = save_checkpoint(build_extractor("tiny"), tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match="is for 'tiny', not 'lite'"):
        build_extractor("lite", weights=path)
    path.with_suffix(".json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not a focal checkpoint config"):
        build_extractor(weights=path)
    path.with_suffix(".json").unlink()
    with pytest.raises(FileNotFoundError, match="m.json is missing"):
        build_extractor(weights=path)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00" * 20)
    broken.with_suffix(".json").write_text(
        json.dumps({"format": "focal-checkpoint", "version": 1, "extractor": "tiny", "member_kwargs": [{}]})
    )
    with pytest.raises(ValueError, match="broken.safetensors: cannot read checkpoint"):
        build_extractor(weights=broken)
    with pytest.raises(FileNotFoundError, match="nope.pth: checkpoint not found"):
        build_extractor("hrnet", weights=tmp_path / "nope.pth")


def test_fusion_from_per_member_authors_checkpoints(tmp_path: Path) -> None:
    sam = _small_sam()
    _randomise(sam, seed=5)
    vit_path = tmp_path / "vit.pth"
    torch.save(_dataparallel_state(sam), vit_path)
    tiny_path = save_checkpoint(build_extractor("tiny"), tmp_path / "tiny.safetensors")
    with pytest.raises(ValueError, match="one per member"):
        build_extractor("vit-b+tiny", weights=vit_path)
    fused = build_extractor("tiny+tiny", weights=[tiny_path, tiny_path])
    assert fused.feature_dim == 32
