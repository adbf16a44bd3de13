"""Small real artifacts for runtime tests, made by ``focal.export`` (torch is allowed in tests, not in the runtime)."""

from __future__ import annotations

from pathlib import Path

# (H, W) of the images the native-policy parity tests run: landscape and portrait, 16:9, one prime-sized,
# one smaller than the cap.
PARITY_SHAPES = [(256, 384), (768, 1024), (1024, 768), (1080, 1920), (667, 1001)]


def export_artifact(extractor, out: Path, size: int, dynamic_batch: bool = False, clustering: str = "kmeans",
                    min_cluster_size: int = 50) -> Path:
    """An FP32 artifact (ONNX + focal.json) of an already-built extractor, through the real exporter."""
    from focal.export import ExportConfig, export

    cfg = ExportConfig(backbone=extractor.name, input_size=size, dynamic_batch=dynamic_batch, out=str(out),
                       clustering=clustering, min_cluster_size=min_cluster_size)
    export(cfg, extractor=extractor)
    return out
