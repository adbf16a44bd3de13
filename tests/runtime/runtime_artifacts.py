"""Building small real artifacts for runtime tests (torch is allowed in tests, not in the runtime)."""

from __future__ import annotations

from pathlib import Path


def export_artifact(extractor, out: Path, size: int, dynamic_batch: bool = False, clustering: str = "kmeans",
                    min_cluster_size: int = 50) -> Path:
    """A minimal FP32 artifact of ``extractor`` (ONNX + focal.json)."""
    import torch

    from focal.runtime.manifest import (
        ClusteringSpec, InputSpec, Manifest, MemberSpec, ModelFile, OutputSpec, save_manifest, sha256_file,
    )

    out.mkdir(parents=True, exist_ok=True)
    x = torch.rand(1, 3, size, size)
    with torch.no_grad():
        y = extractor(x)
    model_path = out / "model.onnx"
    torch.onnx.export(
        extractor, (x,), str(model_path), input_names=["image"], output_names=["features"], opset_version=17,
        dynamo=False, dynamic_axes={"image": {0: "batch"}, "features": {0: "batch"}} if dynamic_batch else None,
    )
    manifest = Manifest(
        extractor=extractor.name,
        members=[MemberSpec(m.name, m.feature_dim, m.stride) for m in extractor.members],
        input=InputSpec(size=size, dynamic_batch=dynamic_batch),
        output=OutputSpec(feature_dim=int(y.shape[1]), height=int(y.shape[2]), width=int(y.shape[3])),
        models=[ModelFile("model.onnx", "onnx", "fp32", sha256_file(model_path))],
        clustering=ClusteringSpec(method=clustering, min_cluster_size=min_cluster_size),
    )
    save_manifest(manifest, out)
    return out
