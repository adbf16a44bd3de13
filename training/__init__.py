"""FOCAL training side (PyTorch): backbones, extractors, checkpoints, the reference pipeline.

Needs the ``train`` extra (torch, timm, safetensors).
"""

from focal.training.backbones import (
    BackboneInfo,
    backbone_info,
    list_backbones,
    register_backbone,
)
from focal.training.checkpoints import (
    CheckpointConfig,
    build_extractor,
    convert_official_state_dict,
    load_official_weights,
    read_checkpoint_config,
    read_state_dict,
    save_checkpoint,
)
from focal.training.model import Extractor, FusedExtractor, parse_extractor_name
from focal.training.reference import Detection, ReferenceConfig, ReferenceDetector

__all__ = [
    "BackboneInfo",
    "CheckpointConfig",
    "Detection",
    "Extractor",
    "FusedExtractor",
    "ReferenceConfig",
    "ReferenceDetector",
    "backbone_info",
    "build_extractor",
    "convert_official_state_dict",
    "list_backbones",
    "load_official_weights",
    "parse_extractor_name",
    "read_checkpoint_config",
    "read_state_dict",
    "register_backbone",
    "save_checkpoint",
]
