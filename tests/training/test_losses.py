"""Tests of focal.training.losses: SCL (method.md section 3) and the release's NCE.

Every tensor is tiny (a few dozen pixels): these run on a shared 2-core CPU.
The NumPy references below re-derive the formulas independently of the
module (literal ratio form of (5), explicit loops over images and pixels).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from focal.training.losses import SoftAssignment, nce_loss, scl_loss, soft_assign

# --------------------------------------------------------------------------
# helpers


def _two_cluster_image(
    separation: float,
    n_per_class: int = 12,
    dim: int = 4,
    noise: float = 0.3,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One image: pristine pixels around +s*e0, forged around -s*e0, plus e1.

    Returns features ``[1, dim, 1, 2n]`` and mask ``[1, 1, 1, 2n]``; the
    noise draw is the same for every ``separation`` so only the separation
    changes between calls.
    """
    gen = torch.Generator().manual_seed(seed)
    noise_t = noise * torch.randn(2 * n_per_class, dim, generator=gen, dtype=dtype)
    base = torch.zeros(2 * n_per_class, dim, dtype=dtype)
    base[:, 1] = 1.0  # a shared direction so s = 0 means "same cluster"
    base[:n_per_class, 0] = separation
    base[n_per_class:, 0] = -separation
    feats = (base + noise_t).T.reshape(1, dim, 1, 2 * n_per_class)
    mask = torch.zeros(1, 1, 1, 2 * n_per_class, dtype=dtype)
    mask[..., n_per_class:] = 1
    return feats, mask


def _random_batch(
    b: int = 3, d: int = 5, h: int = 3, w: int = 4, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(b, d, h, w, generator=gen, dtype=torch.float64)
    masks = (torch.rand(b, 1, h, w, generator=gen) < 0.4).to(torch.float64)
    # Make sure every image has both classes.
    masks[:, :, 0, 0] = 0
    masks[:, :, -1, -1] = 1
    # Give forged pixels a shift so the loss is not at some degenerate point.
    feats = feats + 1.5 * masks
    return feats, masks


def _permute_pixels(
    feats: torch.Tensor, mask: torch.Tensor, perm: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Same permutation of the pixels of a ``[D, h, w]`` / ``[1, h, w]`` pair."""
    d, h, w = feats.shape
    f = feats.reshape(d, h * w)[:, perm].reshape(d, h, w)
    mk = mask.reshape(1, h * w)[:, perm].reshape(1, h, w)
    return f, mk


def _np_scl_image(
    feats: np.ndarray, mask: np.ndarray, tau: float, m: float, max_iter: int, tol: float
) -> tuple[float, np.ndarray]:
    """Reference SCL of one image, from the formulas of method.md, in float64.

    Args:
        feats: ``[N, D]`` raw features.
        mask: ``[N]`` 0/1.

    Returns:
        ``(L_p + L_f, W)`` with ``W`` of shape ``[N, 2]``.
    """
    f = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    n = f.shape[0]
    w = np.zeros((n, 2))
    w[mask == 0, 0] = 1.0
    w[mask == 1, 1] = 1.0

    def centres(wt: np.ndarray) -> np.ndarray:
        return np.stack([(wt[:, k] ** m) @ f / np.sum(wt[:, k] ** m) for k in range(2)])

    c = centres(w)
    for _ in range(max_iter):
        new = np.zeros_like(w)
        for i in range(n):
            dist = [np.linalg.norm(f[i] - c[k]) for k in range(2)]
            for k in range(2):
                new[i, k] = 1.0 / sum((dist[k] / dist[j]) ** (2.0 / (m - 1.0)) for j in range(2))
        change = np.abs(new - w).max()
        w = new
        c = centres(w)
        if change < tol:
            break

    def cos(a: np.ndarray, b: np.ndarray) -> float:
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))

    neg = cos(c[0], c[1])
    total = 0.0
    for k in range(2):
        wm = w[:, k] ** m
        pos = sum(wm[i] * cos(c[k], f[i]) for i in range(n)) / wm.sum()
        total += -math.log(math.exp(pos / tau) / (math.exp(pos / tau) + math.exp(neg / tau)))
    return total, w


def _np_nce_image(feats: np.ndarray, mask: np.ndarray, tau: float) -> float:
    """Reference release NCE of one image with every pixel sampled (``[N, D]``, ``[N]``)."""
    f = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    q = f[mask == 0]
    k = f[mask == 1]
    losses = []
    for a in range(len(q)):
        pos = np.mean([q[a] @ q[b] for b in range(len(q)) if b != a])
        logits = np.concatenate([[pos], k @ q[a]]) / tau
        losses.append(-logits[0] + np.log(np.sum(np.exp(logits))))
    return float(np.mean(losses))


# --------------------------------------------------------------------------
# SCL: hand-computed values


def test_scl_closed_form_hard_weights() -> None:
    # f = e0, e1 pristine; -e0, -e1 forged. With max_iter=0 the weights stay
    # hard: c1 = (.5, .5), c2 = -c1, pos_k = cos(c_k, f_i) = 1/sqrt(2),
    # s(c1, c2) = -1, so each side is log(1 + exp((-1 - 1/sqrt(2)) / tau)).
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]], dtype=torch.float64)
    feats = feats.T.reshape(1, 2, 2, 2)
    mask = torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64).reshape(1, 1, 2, 2)
    tau = 1.0
    expected = 2.0 * math.log1p(math.exp((-1.0 - 1.0 / math.sqrt(2.0)) / tau))
    got = scl_loss(feats, mask, tau=tau, max_iter=0)
    assert got.item() == pytest.approx(expected, rel=1e-12)

    # One fuzzy round by hand: each pixel is at squared distance 0.5 from its
    # own centre and 2.5 from the other, so (5) gives w = 1 / (1 + 0.5/2.5).
    sa = soft_assign(feats, mask, max_iter=1, tol=0.0)
    own = 1.0 / (1.0 + 0.5 / 2.5)
    expected_w = torch.tensor(
        [[own, 1 - own], [own, 1 - own], [1 - own, own], [1 - own, own]], dtype=torch.float64
    )
    torch.testing.assert_close(sa.weights[0], expected_w, rtol=1e-12, atol=1e-12)
    assert sa.iterations.tolist() == [1]


@pytest.mark.parametrize(("m", "tau", "max_iter"), [(2.0, 0.1, 10), (3.0, 0.5, 10), (1.5, 0.2, 3)])
def test_scl_matches_numpy_reference_tiny(m: float, tau: float, max_iter: int) -> None:
    # 4 pixels, D = 2, deliberately overlapping classes so W becomes soft.
    raw = np.array([[1.0, 0.2], [0.8, 0.9], [0.1, 1.0], [-0.3, 1.0]])
    mask = np.array([0, 0, 1, 1])
    tol = 1e-6
    expected, expected_w = _np_scl_image(raw, mask, tau, m, max_iter, tol)

    feats = torch.tensor(raw.T.reshape(1, 2, 2, 2))
    masks = torch.tensor(mask.reshape(1, 1, 2, 2), dtype=torch.float64)
    got = scl_loss(feats, masks, tau=tau, m=m, max_iter=max_iter, tol=tol)
    assert got.item() == pytest.approx(expected, rel=1e-9)
    sa = soft_assign(feats, masks, m=m, max_iter=max_iter, tol=tol)
    np.testing.assert_allclose(sa.weights[0].numpy(), expected_w, rtol=1e-9, atol=1e-12)
    # The weights really are soft here, not the hard init.
    assert ((sa.weights > 0.01) & (sa.weights < 0.99)).any()


def test_scl_matches_numpy_reference_random_batch() -> None:
    feats, masks = _random_batch(b=2, d=3, h=2, w=3, seed=5)
    per_image = scl_loss(feats, masks, tau=0.3, reduction="none")
    for b in range(2):
        raw = feats[b].reshape(3, -1).T.numpy()
        mk = masks[b].reshape(-1).numpy().astype(int)
        expected, _ = _np_scl_image(raw, mk, tau=0.3, m=2.0, max_iter=10, tol=1e-4)
        assert per_image[b].item() == pytest.approx(expected, rel=1e-8)


# --------------------------------------------------------------------------
# SCL: image-by-image


def test_scl_batch_reduction_combines_single_image_losses() -> None:
    feats, masks = _random_batch(b=3, seed=1)
    # Image 2 has no forged pixel: it must not count in the mean.
    masks[2] = 0
    singles = [scl_loss(feats[b : b + 1], masks[b : b + 1]) for b in range(2)]
    per_image = scl_loss(feats, masks, reduction="none")
    torch.testing.assert_close(per_image[:2], torch.stack(singles), rtol=1e-10, atol=1e-12)
    assert per_image[2].item() == 0.0
    torch.testing.assert_close(scl_loss(feats, masks), (singles[0] + singles[1]) / 2)
    torch.testing.assert_close(scl_loss(feats, masks, reduction="sum"), singles[0] + singles[1])


def test_scl_other_image_is_unaffected_and_own_permutation_invariant() -> None:
    feats, masks = _random_batch(b=2, seed=2)
    base = scl_loss(feats, masks, reduction="none")

    perm = torch.randperm(12, generator=torch.Generator().manual_seed(3))
    f1, m1 = _permute_pixels(feats[1], masks[1], perm)
    shuffled_feats = torch.stack([feats[0], f1])
    shuffled_masks = torch.stack([masks[0], m1])
    shuffled = scl_loss(shuffled_feats, shuffled_masks, reduction="none")
    # Image 0 did not change, so its term must be bit-for-bit the same; the
    # permuted image's own term is unchanged up to summation order.
    assert shuffled[0].item() == base[0].item()
    torch.testing.assert_close(shuffled[1], base[1], rtol=1e-10, atol=1e-12)

    # Replacing the other image entirely still leaves image 0 alone.
    other = torch.randn(1, 5, 3, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    replaced = scl_loss(
        torch.cat([feats[:1], 10 * other]), torch.cat([masks[:1], 1 - masks[1:]]), reduction="none"
    )
    assert replaced[0].item() == base[0].item()


def test_soft_assign_batch_equals_single_images() -> None:
    feats, masks = _random_batch(b=3, seed=6)
    # Image 1: two tight, opposite clusters, which converge after one round
    # while the random images run to the cap; each must still match its
    # single-image result.
    noise = 1e-3 * torch.randn(5, 3, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    feats[1] = noise + torch.where(masks[1] > 0, 1.0, -1.0)
    batch = soft_assign(feats, masks, max_iter=10, tol=1e-6)
    for b in range(3):
        single = soft_assign(feats[b : b + 1], masks[b : b + 1], max_iter=10, tol=1e-6)
        torch.testing.assert_close(batch.weights[b], single.weights[0], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(batch.centres[b], single.centres[0], rtol=1e-10, atol=1e-12)
        assert batch.iterations[b].item() == single.iterations[0].item()
    assert batch.iterations.tolist() == [10, 1, 10]


# --------------------------------------------------------------------------
# SCL: it measures separation


def test_scl_decreases_with_separation() -> None:
    separations = [0.0, 0.5, 1.0, 2.0, 4.0]
    losses = []
    for s in separations:
        f, mk = _two_cluster_image(s)
        losses.append(scl_loss(f, mk).item())
    assert all(a > b for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.1 * losses[0]


def test_scl_separated_much_lower_than_mixed() -> None:
    f, mk = _two_cluster_image(4.0, noise=0.05)
    separated = scl_loss(f, mk).item()
    # Mixed: the same labels on one tight blob, both classes drawn alike.
    blob, _ = _two_cluster_image(0.0, noise=0.05)
    mixed = scl_loss(blob, mk).item()
    assert mixed > 0.5
    assert separated < 1e-3 * mixed


def test_scl_fuzzy_rounds_follow_feature_clusters_not_labels() -> None:
    # Documents a property of the method as specified: the fuzzy rounds
    # minimise (1), which only sees the labels through the initial W. Two
    # tight clusters with labels shuffled across them are re-assigned to the
    # clusters, so the loss is as low as for the true labels; with the hard
    # mask weights (max_iter=0) the wrong labels are penalised.
    f, mk = _two_cluster_image(4.0, noise=0.05)
    shuffled = mk[..., torch.randperm(mk.shape[-1], generator=torch.Generator().manual_seed(0))]
    true_loss = scl_loss(f, mk).item()
    assert scl_loss(f, shuffled).item() == pytest.approx(true_loss, rel=1e-3)
    assert scl_loss(f, shuffled, max_iter=0).item() > 1e3 * scl_loss(f, mk, max_iter=0).item()


# --------------------------------------------------------------------------
# SCL: gradients


def test_scl_gradient_reaches_features_only() -> None:
    feats, masks = _random_batch(b=2, seed=7)
    feats.requires_grad_(True)
    loss = scl_loss(feats, masks)
    assert loss.requires_grad
    loss.backward()
    assert feats.grad is not None
    assert torch.isfinite(feats.grad).all()
    assert feats.grad.abs().sum() > 0

    sa = soft_assign(feats, masks)
    assert isinstance(sa, SoftAssignment)
    for t in (sa.weights, sa.centres, sa.iterations, sa.has_both):
        assert not t.requires_grad
        assert t.grad_fn is None


def test_scl_gradient_treats_weights_as_constants() -> None:
    # Rebuild the loss by hand from soft_assign's (constant) weights; if
    # scl_loss let gradient run through the fuzzy iterations its gradient
    # would differ from this one.
    feats, masks = _random_batch(b=1, d=3, h=2, w=3, seed=8)
    tau, m = 0.2, 2.0
    x = feats.clone().requires_grad_(True)
    scl_loss(x, masks, tau=tau, m=m).backward()

    y = feats.clone().requires_grad_(True)
    w = soft_assign(feats, masks, m=m).weights[0] ** m  # [N, 2]
    f = y[0].reshape(3, -1).T
    f = f / f.norm(dim=1, keepdim=True)
    c = (w.T @ f) / w.sum(dim=0)[:, None]
    cu = c / c.norm(dim=1, keepdim=True)
    pos = (w * (f @ cu.T)).sum(dim=0) / w.sum(dim=0)
    neg = cu[0] @ cu[1]
    sides = [
        -torch.log(torch.exp(pos[k] / tau) / (torch.exp(pos[k] / tau) + torch.exp(neg / tau))) for k in range(2)
    ]
    (sides[0] + sides[1]).backward()
    torch.testing.assert_close(x.grad, y.grad, rtol=1e-8, atol=1e-10)


# --------------------------------------------------------------------------
# SCL: numerical safety


def _assert_finite_loss_and_grad(feats: torch.Tensor, masks: torch.Tensor, **kw: object) -> torch.Tensor:
    x = feats.clone().requires_grad_(True)
    loss = scl_loss(x, masks, **kw)
    loss.backward()
    assert torch.isfinite(loss).all()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    return loss


def test_scl_pixels_exactly_on_centres() -> None:
    # Identical features per class: every pixel sits exactly on its centre
    # (distance 0), so (5) must give weight exactly 1 to that centre.
    a = [1.0, 0.0, 0.0]
    b = [0.0, 1.0, 0.0]
    feats = torch.tensor([a, a, a, b, b, b], dtype=torch.float32).T.reshape(1, 3, 2, 3)
    masks = torch.tensor([0, 0, 0, 1, 1, 1], dtype=torch.uint8).reshape(1, 1, 2, 3)
    sa = soft_assign(feats, masks, max_iter=5, tol=0.0)
    hard = torch.tensor([[1.0, 0.0]] * 3 + [[0.0, 1.0]] * 3)
    assert torch.equal(sa.weights[0], hard)
    loss = _assert_finite_loss_and_grad(feats, masks)
    # pos = 1, s(c1, c2) = 0: each side is log(1 + e^(-1/tau)).
    assert loss.item() == pytest.approx(2 * math.log1p(math.exp(-10.0)), rel=1e-5)


def test_scl_all_features_identical() -> None:
    # Both centres coincide with every pixel: each pixel is on both centres
    # and is split 1/2 - 1/2.
    feats = torch.ones(1, 3, 2, 2)
    masks = torch.tensor([[[[0, 1], [0, 1]]]], dtype=torch.bool)
    sa = soft_assign(feats, masks, max_iter=3)
    torch.testing.assert_close(sa.weights, torch.full((1, 4, 2), 0.5))
    _assert_finite_loss_and_grad(feats, masks)


def test_scl_images_with_one_class_and_zero_features() -> None:
    feats, masks = _random_batch(b=4, seed=9)
    masks[1] = 0  # no forged pixel
    masks[2] = 1  # all forged
    feats[0, :, 1, 1] = 0.0  # an all-zero feature vector in a valid image
    feats[3] = 0.0  # an image of zero features (still both classes)
    x = feats.clone().requires_grad_(True)
    loss = scl_loss(x, masks)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
    # A zero vector has no direction: documented to get zero gradient, not
    # the ~1/|x| blow-up of x / |x|; the rest of its image still learns.
    assert torch.equal(x.grad[0, :, 1, 1], torch.zeros(5, dtype=torch.float64))
    assert torch.equal(x.grad[3], torch.zeros_like(x.grad[3]))
    assert x.grad[0].abs().sum() > 0
    per_image = scl_loss(feats, masks, reduction="none")
    assert per_image[1].item() == 0.0 and per_image[2].item() == 0.0
    torch.testing.assert_close(loss, (per_image[0] + per_image[3]) / 2)

    sa = soft_assign(feats, masks)
    assert sa.has_both.tolist() == [True, False, False, True]
    assert sa.iterations[1].item() == 0 and sa.iterations[2].item() == 0
    assert torch.isfinite(sa.weights).all() and torch.isfinite(sa.centres).all()
    # The hard mask is kept for one-class images; the empty centre is zero.
    assert torch.equal(sa.weights[1, :, 0], torch.ones(12, dtype=torch.float64))
    assert torch.equal(sa.centres[1, 1], torch.zeros(5, dtype=torch.float64))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_scl_no_image_with_both_classes_gives_connected_zero(reduction: str) -> None:
    feats, masks = _random_batch(b=2, seed=10)
    masks[0] = 0
    masks[1] = 1
    x = feats.clone().requires_grad_(True)
    loss = scl_loss(x, masks, reduction=reduction)
    assert loss.item() == 0.0
    assert loss.requires_grad
    loss.backward()
    assert torch.equal(x.grad, torch.zeros_like(x.grad))


def test_scl_half_precision_input() -> None:
    feats, masks = _random_batch(b=1, seed=11)
    loss16 = scl_loss(feats.to(torch.float16), masks)
    assert loss16.dtype == torch.float32 and torch.isfinite(loss16)
    assert loss16.item() == pytest.approx(scl_loss(feats, masks).item(), rel=1e-2)


# --------------------------------------------------------------------------
# soft assignment


def test_soft_weights_partition_unity_hard_core_soft_boundary() -> None:
    gen = torch.Generator().manual_seed(12)
    n = 10
    core_a = torch.tensor([1.0, 0.0, 0.0]) + 1e-3 * torch.randn(n, 3, generator=gen)
    core_b = torch.tensor([0.0, 1.0, 0.0]) + 1e-3 * torch.randn(n, 3, generator=gen)
    # Halfway between the two clusters on the sphere; labelled pristine.
    middle = torch.tensor([[1.0, 1.0, 0.0]])
    pixels = torch.cat([core_a, middle, core_b])  # [2n + 1, 3]
    feats = pixels.T.reshape(1, 3, 1, 2 * n + 1)
    masks = torch.zeros(1, 1, 1, 2 * n + 1)
    masks[..., n + 1 :] = 1

    sa = soft_assign(feats, masks, m=2.0, max_iter=10, tol=1e-6)
    w = sa.weights[0]
    torch.testing.assert_close(w.sum(dim=-1), torch.ones(2 * n + 1))
    assert ((w >= 0) & (w <= 1)).all()
    # Core points: hard up to the small pull of the boundary pixel on the centres.
    assert (w[:n, 0] > 0.999).all() and (w[n + 1 :, 1] > 0.999).all()
    # The boundary pixel's label is ambiguous: genuinely soft, near 1/2.
    assert 0.3 < w[n, 0].item() < 0.7
    # It started hard (pristine), so fuzzy rounds did run, and converged early.
    assert 1 <= sa.iterations[0].item() < 10
    assert sa.centres.shape == (1, 2, 3) and sa.weights.shape == (1, 2 * n + 1, 2)


def test_soft_assign_max_iter_zero_is_hard_mask() -> None:
    feats, masks = _random_batch(b=2, seed=13)
    sa = soft_assign(feats, masks, max_iter=0)
    forged = masks.reshape(2, -1)
    torch.testing.assert_close(sa.weights[..., 1], forged)
    torch.testing.assert_close(sa.weights[..., 0], 1 - forged)
    assert sa.iterations.tolist() == [0, 0]


# --------------------------------------------------------------------------
# NCE (release loss)


def test_nce_matches_numpy_reference() -> None:
    feats, masks = _random_batch(b=2, d=3, h=2, w=4, seed=14)
    got = nce_loss(feats, masks, tau=0.1)
    per_image = [
        _np_nce_image(feats[b].reshape(3, -1).T.numpy(), masks[b].reshape(-1).numpy().astype(int), 0.1)
        for b in range(2)
    ]
    expected = np.mean(per_image)
    assert got.item() == pytest.approx(expected, rel=1e-9)


def test_nce_deterministic_with_seeded_generator_and_subsamples() -> None:
    feats, masks = _random_batch(b=2, d=4, h=6, w=6, seed=15)
    a = nce_loss(feats, masks, max_samples=5, generator=torch.Generator().manual_seed(0))
    b = nce_loss(feats, masks, max_samples=5, generator=torch.Generator().manual_seed(0))
    c = nce_loss(feats, masks, max_samples=5, generator=torch.Generator().manual_seed(1))
    assert torch.isfinite(a)
    assert a.item() == b.item()
    assert a.item() != c.item()  # sampling really happens
    # A cap above the pixel count uses every pixel: no randomness at all.
    full1 = nce_loss(feats, masks, max_samples=1000, generator=torch.Generator().manual_seed(0))
    full2 = nce_loss(feats, masks, max_samples=1000, generator=torch.Generator().manual_seed(1))
    assert full1.item() == full2.item()


def test_nce_lower_for_separated_classes() -> None:
    f, mk = _two_cluster_image(4.0, noise=0.05)
    mixed_mask = mk[..., torch.randperm(mk.shape[-1], generator=torch.Generator().manual_seed(0))]
    separated = nce_loss(f, mk).item()
    mixed = nce_loss(f, mixed_mask).item()
    assert separated < 0.1 * mixed


def test_nce_skips_images_without_a_class_and_has_gradient() -> None:
    feats, masks = _random_batch(b=3, seed=16)
    masks[1] = 0  # no forged pixel: no negatives
    masks[2] = 1  # no pristine pixel: no queries
    x = feats.clone().requires_grad_(True)
    loss = nce_loss(x, masks)
    torch.testing.assert_close(loss, nce_loss(feats[:1], masks[:1]))
    loss.backward()
    assert torch.isfinite(x.grad).all() and x.grad[0].abs().sum() > 0
    assert torch.equal(x.grad[1:], torch.zeros_like(x.grad[1:]))

    y = feats[1:].clone().requires_grad_(True)
    none_valid = nce_loss(y, masks[1:])
    assert none_valid.item() == 0.0 and none_valid.requires_grad
    none_valid.backward()


# --------------------------------------------------------------------------
# validation


@pytest.mark.parametrize(
    ("feats_shape", "masks_shape", "match"),
    [
        ((2, 3, 4, 4), (2, 4, 4), r"masks must be \[B, 1, h, w\]"),
        ((2, 3, 4, 4), (2, 2, 4, 4), r"masks must be \[B, 1, h, w\]"),
        ((2, 3, 4, 4), (3, 1, 4, 4), r"batch size 3 differs"),
        ((2, 3, 4, 4), (2, 1, 8, 8), r"spatial size"),
        ((3, 4, 4), (3, 1, 4, 4), r"features must be \[B, D, h, w\]"),
    ],
)
def test_shape_validation(feats_shape: tuple[int, ...], masks_shape: tuple[int, ...], match: str) -> None:
    feats = torch.zeros(feats_shape)
    masks = torch.zeros(masks_shape)
    for fn in (scl_loss, nce_loss, soft_assign):
        with pytest.raises(ValueError, match=match):
            fn(feats, masks)


def test_value_validation() -> None:
    feats, masks = _random_batch(b=1, seed=17)
    bad_mask = masks.clone()
    bad_mask[0, 0, 0, 1] = 0.5
    with pytest.raises(ValueError, match=r"only 0 \(pristine\) and 1 \(forged\), got e\.g\. 0\.5"):
        scl_loss(feats, bad_mask)
    with pytest.raises(ValueError, match="masks must contain only"):
        nce_loss(feats, (masks * 2).to(torch.uint8))
    with pytest.raises(ValueError, match="tau must be"):
        scl_loss(feats, masks, tau=0.0)
    with pytest.raises(ValueError, match="tau must be"):
        nce_loss(feats, masks, tau=-1.0)
    with pytest.raises(ValueError, match=r"m \(fuzzifier\) must be .* got 1\.0"):
        scl_loss(feats, masks, m=1.0)
    with pytest.raises(ValueError, match="max_iter"):
        soft_assign(feats, masks, max_iter=-1)
    with pytest.raises(ValueError, match="tol"):
        soft_assign(feats, masks, tol=-1e-3)
    with pytest.raises(ValueError, match="reduction must be one of"):
        scl_loss(feats, masks, reduction="avg")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_samples"):
        nce_loss(feats, masks, max_samples=0)
    with pytest.raises(TypeError, match="floating point"):
        scl_loss(feats.to(torch.int64), masks)
    with pytest.raises(TypeError, match="generator"):
        nce_loss(feats, masks, generator=0)  # type: ignore[arg-type]


# ---------------------------------------------------------------- scl-pixel


def test_scl_pixel_closed_form_hard_weights() -> None:
    # Same 4 pixels as the closed-form SCL case: c1 = (.5, .5) -> unit (1, 1)/sqrt2,
    # c2 = -c1. Each pixel is at cosine 1/sqrt2 to its own centre and -1/sqrt2 to
    # the other, so every pixel's term is softplus(-sqrt2 / tau); both sides equal it.
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]], dtype=torch.float64)
    feats = feats.T.reshape(1, 2, 2, 2)
    mask = torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64).reshape(1, 1, 2, 2)
    tau = 0.5
    expected = 2.0 * math.log1p(math.exp(-math.sqrt(2.0) / tau))
    got = scl_loss(feats, mask, tau=tau, max_iter=0, per_pixel=True)
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_scl_pixel_keeps_a_gradient_where_the_centre_loss_has_saturated() -> None:
    # Two tight clusters far apart, plus a few pristine pixels sitting on the
    # forged cluster: the centre-level loss barely notices them, the per-pixel
    # loss is dominated by them and pushes exactly them.
    g = torch.Generator().manual_seed(0)
    d, n = 8, 40
    a = torch.zeros(d, dtype=torch.float64)
    a[0] = 1
    b = torch.zeros(d, dtype=torch.float64)
    b[1] = 1
    pristine = a + 0.05 * torch.randn(n, d, generator=g, dtype=torch.float64)
    forged = b + 0.05 * torch.randn(n // 2, d, generator=g, dtype=torch.float64)
    strays = b + 0.05 * torch.randn(4, d, generator=g, dtype=torch.float64)  # labelled pristine
    feats = torch.cat([pristine, strays, forged]).T.reshape(1, d, 1, -1).clone().requires_grad_(True)
    mask = torch.cat([torch.zeros(n + 4), torch.ones(n // 2)]).to(torch.float64).reshape(1, 1, 1, -1)
    centre = scl_loss(feats, mask, tau=0.1, max_iter=0)
    pixel = scl_loss(feats, mask, tau=0.1, max_iter=0, per_pixel=True)
    assert centre.item() < 1e-3 < pixel.item()
    (grad,) = torch.autograd.grad(pixel, feats)
    norms = grad.reshape(d, -1).norm(dim=0)
    assert norms[n : n + 4].min() > 5 * norms[:n].max()  # the strays get most of the gradient


def test_scl_pixel_images_stay_apart() -> None:
    feats, masks = _random_batch(b=2, seed=2)
    base = scl_loss(feats, masks, reduction="none", per_pixel=True)
    other = torch.randn(1, 5, 3, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    replaced = scl_loss(torch.cat([feats[:1], 10 * other]), torch.cat([masks[:1], 1 - masks[1:]]),
                        reduction="none", per_pixel=True)
    assert replaced[0].item() == base[0].item()
    single = scl_loss(feats[1:], masks[1:], reduction="none", per_pixel=True)
    torch.testing.assert_close(single[0], base[1], rtol=1e-12, atol=1e-12)


# -------------------------------------------------------------- compactness


def test_compactness_is_zero_for_one_direction_and_ignores_forged_images() -> None:
    from focal.training.losses import compactness_loss

    same = torch.zeros(1, 4, 3, 3, dtype=torch.float64)
    same[:, 0] = 2.0
    none = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    assert compactness_loss(same, none).item() == pytest.approx(0.0, abs=1e-12)
    # Two opposite halves: mean direction 0 -> loss 1.
    split = same.clone()
    split[0, 0, :, :1] = -2.0
    split[0, 0, :, 1:2] = 0.0
    split[0, 1, :, 1:2] = 2.0  # a third of the pixels orthogonal
    loss = compactness_loss(split, none).item()
    assert 0.0 < loss < 1.0
    # A forged image alongside changes nothing; alone it gives a connected zero.
    forged_mask = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    forged_mask[0, 0, 0, 0] = 1
    noise = torch.randn(1, 4, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    both = compactness_loss(torch.cat([split, noise]), torch.cat([none, forged_mask]))
    assert both.item() == pytest.approx(loss, rel=1e-12)
    x = noise.clone().requires_grad_(True)
    zero = compactness_loss(x, forged_mask)
    zero.backward()
    assert zero.item() == 0.0 and torch.count_nonzero(x.grad) == 0


def test_compactness_gradient_pulls_towards_the_mean_direction() -> None:
    from focal.training.losses import compactness_loss

    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 6, 4, 4, dtype=torch.float64, generator=g).requires_grad_(True)
    masks = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    before = compactness_loss(x, masks)
    before.backward()
    with torch.no_grad():
        after = compactness_loss(x - 0.1 * x.grad, masks)
    assert after.item() < before.item()


def test_nce_sym_also_asks_the_forged_pixels_to_be_compact() -> None:
    # Pristine tight around e0; forged either tight around e1 or scattered over
    # directions orthogonal to e0. The release's NCE (pristine queries) barely
    # tells the two apart; the symmetric form prefers the compact forged group.
    from focal.training.config import TrainConfig
    from focal.training.train import _loss

    g = torch.Generator().manual_seed(0)
    d, h, w = 16, 8, 8
    n = h * w
    mask = torch.zeros(1, 1, h, w)
    mask[..., :, :3] = 1  # 24 forged pixels
    forged = mask.reshape(-1) > 0
    pristine_rows = torch.zeros(n, d)
    pristine_rows[:, 0] = 1
    pristine_rows += 0.05 * torch.randn(n, d, generator=g)
    tight = pristine_rows.clone()
    tight[forged] = 0
    tight[forged, 1] = 1
    tight[forged] += 0.05 * torch.randn(int(forged.sum()), d, generator=g)
    scattered = tight.clone()
    spread = torch.randn(int(forged.sum()), d - 1, generator=g)
    scattered[forged] = torch.cat([torch.zeros(int(forged.sum()), 1), spread], dim=1)

    def loss(rows: torch.Tensor, kind: str) -> float:
        feats = rows.T.reshape(1, d, h, w)
        cfg = TrainConfig(loss=kind)
        # Full-resolution masks: _loss downsamples them to the feature map (same size here).
        return float(_loss(cfg, feats, mask, torch.Generator().manual_seed(1)))

    nce_gap = loss(scattered, "nce") - loss(tight, "nce")
    sym_gap = loss(scattered, "nce-sym") - loss(tight, "nce-sym")
    assert sym_gap > 0.5 and sym_gap > 5 * abs(nce_gap)


# --------------------------------------------------------------------------
# pinned values


def test_losses_keep_their_recorded_values() -> None:
    # Recorded float64 results (full repr) of scl_loss / nce_loss: the NumPy
    # references above agree only to ~1e-9, so these catch a restructuring that
    # changes the arithmetic. Not ==: another CPU's BLAS may order the einsum /
    # matmul sums differently in the last bits.
    g = torch.Generator().manual_seed(2024)
    x = torch.randn(3, 8, 6, 7, generator=g, dtype=torch.float64)
    m = (torch.rand(3, 1, 6, 7, generator=g) < 0.3).to(torch.float64)
    m[2] = 0  # no forged pixel: no term
    recorded = {
        False: ([17.43961021710129, 17.313450230395034, 0.0], 17.376530223748162),
        True: ([1.4242008187870232, 1.4579207238791825, 0.0], 1.441060771333103),
    }
    for per_pixel, (per_image, mean) in recorded.items():
        assert scl_loss(x, m, reduction="none", per_pixel=per_pixel).tolist() == pytest.approx(per_image, rel=1e-12)
        assert scl_loss(x, m, per_pixel=per_pixel).item() == pytest.approx(mean, rel=1e-12)
    xg = x.clone().requires_grad_(True)
    scl_loss(xg, m).backward()
    assert xg.grad.abs().sum().item() == pytest.approx(14.622321961421727, rel=1e-12)
    assert xg.grad[0, 0, 0, 0].item() == pytest.approx(-0.009385473937883394, rel=1e-10)
    assert nce_loss(x, m).item() == pytest.approx(6.101048520962128, rel=1e-12)
    sub = nce_loss(x, m, max_samples=5, generator=torch.Generator().manual_seed(3))
    assert sub.item() == pytest.approx(4.458216021499485, rel=1e-12)
