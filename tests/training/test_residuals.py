"""Noise-residual channels: high-pass only, Bayar's constraint holds, sensor noise shows."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from focal.training.residuals import RESIDUAL_KINDS, BayarConv, NoiseResiduals, srm_kernels  # noqa: E402


def test_srm_kernels_remove_flat_and_linear_content() -> None:
    k = srm_kernels()
    assert k.shape == (3, 1, 5, 5)
    assert torch.allclose(k.flatten(1).sum(1), torch.zeros(3), atol=1e-6)
    ramp = torch.linspace(0, 1, 32).view(1, 1, 1, 32).expand(1, 1, 32, 32)
    out = torch.nn.functional.conv2d(ramp, k)
    assert out.abs().max() < 1e-5  # a linear ramp is content, not noise


def test_bayar_constraint_holds_after_training_steps() -> None:
    conv = BayarConv(3)
    opt = torch.optim.SGD(conv.parameters(), lr=0.5)
    for _ in range(5):
        opt.zero_grad()
        conv(torch.rand(2, 1, 16, 16)).pow(2).mean().backward()
        opt.step()
    k = conv.constrained().flatten(1)
    assert torch.allclose(k[:, 12], torch.full((3,), -1.0))
    assert torch.allclose(k.sum(1), torch.zeros(3), atol=1e-5)


@pytest.mark.parametrize("kind", RESIDUAL_KINDS)
def test_residuals_see_noise_not_flat_regions(kind: str) -> None:
    m = NoiseResiduals(kind)
    flat = torch.full((1, 3, 24, 24), 0.4)
    noisy = flat + 0.004 * torch.randn_like(flat)
    assert m(flat).shape == (1, m.channels, 24, 24)
    assert m(flat).abs().max() < 1e-3  # no false edge at the border either
    # Noise of 1 grey level (0.004) comes out near unit spread: the scale is right for the next conv.
    assert 0.05 < float(m(noisy).detach().std()) < 10.0


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown residual kind"):
        NoiseResiduals("dct")
