"""PyTorch weights recovered from an exported graph compute the graph's function, and fine-tune like the original."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from runtime_artifacts import export_artifact  # noqa: E402

from focal.evaluation.bench import reference_checkpoint  # noqa: E402
from focal.runtime.manifest import MANIFEST_NAME, load_manifest  # noqa: E402
from focal.training import build_extractor  # noqa: E402
from focal.training.from_onnx import checkpoint_from_artifact, load_folded_onnx  # noqa: E402


@pytest.fixture(scope="module")
def trained_like(tmp_path_factory):
    """A tiny extractor whose BatchNorms hold non-trivial statistics and affine terms, and its artifact."""
    torch.manual_seed(3)
    model = build_extractor("tiny")
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.2, 3.0)
            bn.weight.uniform_(0.5, 2.0)
            bn.bias.uniform_(-0.3, 0.3)
    model.eval()
    out = export_artifact(model, tmp_path_factory.mktemp("folded"), size=128, dynamic_batch=True)
    return model, out


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).uniform(0, 1, (n, 3, 128, 128)).astype(np.float32))


def test_the_recovered_module_computes_the_graphs_features(trained_like):
    original, artifact = trained_like
    fresh = build_extractor("tiny")  # other random weights
    stats = load_folded_onnx(fresh, artifact / "model.onnx", [_images(8)])
    assert stats == {"convs": 3, "batchnorms": 2, "images": 8}
    x = _images(2, seed=1)
    graph = ort.InferenceSession(str(artifact / "model.onnx")).run(None, {"image": x.numpy()})[0]
    with torch.no_grad():
        got = fresh(x).numpy()
        want = original(x).numpy()
    assert np.abs(got - graph).max() < 1e-4 * np.abs(graph).max()
    assert np.abs(got - want).max() < 1e-4 * np.abs(want).max()


def test_the_batchnorm_statistics_are_those_of_the_measuring_images(trained_like):
    _, artifact = trained_like
    fresh = build_extractor("tiny")
    x = _images(6)
    load_folded_onnx(fresh, artifact / "model.onnx", [x[:3], x[3:]])
    with torch.no_grad():
        evaluated = fresh(x)
        fresh.train()  # batch statistics of the same six images: the running ones, up to the unbiased variance
        trained = fresh(x)
    fresh.eval()
    cos = torch.nn.functional.cosine_similarity(evaluated, trained, dim=1)
    assert float(cos.min()) > 0.999


def test_another_architecture_is_refused(trained_like):
    _, artifact = trained_like
    other = build_extractor("tiny", width=8)
    with pytest.raises(ValueError, match="Conv"):
        load_folded_onnx(other, artifact / "model.onnx", [_images(2)])


def test_the_artifact_carries_the_checkpoint_and_bench_finds_it(trained_like, tmp_path: Path, photos: Path):
    _, src = trained_like
    artifact = Path(shutil.copytree(src, tmp_path / "artifact"))
    with pytest.raises(ValueError, match="carries no checkpoint"):
        reference_checkpoint(artifact, load_manifest(artifact))
    path = checkpoint_from_artifact(artifact, sorted(photos.glob("*.jpg"))[:4])
    manifest = load_manifest(artifact)
    assert manifest.checkpoint.file == path.name and "recovered from model.onnx" in manifest.checkpoint.origin
    assert reference_checkpoint(artifact, manifest) == path
    x = _images(1, seed=2)
    graph = ort.InferenceSession(str(artifact / "model.onnx")).run(None, {"image": x.numpy()})[0]
    with torch.no_grad():
        got = build_extractor(weights=path)(x).numpy()
    assert np.abs(got - graph).max() < 1e-4 * np.abs(graph).max()
    path.write_bytes(path.read_bytes()[:-8] + b"tampered")
    with pytest.raises(ValueError, match="sha256|not the one"):
        reference_checkpoint(artifact, manifest)
    assert json.loads((artifact / MANIFEST_NAME).read_text())["checkpoint"]["sha256"] == manifest.checkpoint.sha256


def test_the_defaults_checkpoint_computes_the_defaults_graph(shared_data: Path) -> None:
    from focal.runtime.default import DEFAULT_DIR
    from focal.runtime.imageio import read_image
    from focal.runtime.preprocess import network_input

    image = read_image(shared_data / "real-samples/images/misc_korus_DSC06083.png")
    x = network_input(image, 512)[None]
    graph = ort.InferenceSession(str(DEFAULT_DIR / "model.onnx")).run(None, {"image": x})[0]
    with torch.no_grad():
        got = build_extractor(weights=DEFAULT_DIR / "checkpoint.safetensors")(torch.from_numpy(x)).numpy()
    assert np.abs(got - graph).max() < 1e-4 * np.abs(graph).max()


def test_weights_other_than_convolutions_and_their_batchnorms_are_refused(tmp_path: Path) -> None:
    class WithLinearHead(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.head = torch.nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.conv(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    model = WithLinearHead().eval()
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (_images(1)[:, :, :16, :16],), str(path), dynamo=False)
    with pytest.raises(ValueError, match="other weights .*head"):
        load_folded_onnx(WithLinearHead(), path, [_images(1)[:, :, :16, :16]])
