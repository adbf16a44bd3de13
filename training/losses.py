"""Training losses of FOCAL: soft contrastive learning (SCL) and the release's NCE.

Both losses supervise a feature map with the ground-truth forgery mask *image
by image*: the pristine and forged categories are only defined relative to
one image (a spliced-in region is pristine in its source image), so no loss
term ever mixes pixels of two images. Batched tensor operations below carry
the image index as a separate axis (``b`` in every einsum) and reduce only
over pixels or channels, never over ``b``, before the per-image losses are
formed.

Conventions shared by every function here:

- ``features`` is ``[B, D, h, w]`` floating point; each pixel's ``D``-vector is
  L2-normalised before use. An all-zero vector (norm <= 1e-12) has no
  direction: it stays the zero vector, has cosine similarity 0 to everything
  and receives zero gradient (rather than dividing by zero). ``float16`` / ``bfloat16`` inputs are computed in ``float32``;
  ``float32`` and ``float64`` keep their dtype.
- ``masks`` is ``[B, 1, h, w]`` at feature resolution, values exactly 0
  (pristine) or 1 (forged), as ``bool``, an integer dtype or a floating dtype.
  Resize and threshold the ground truth before calling.
- Pixels are flattened row-major, so pixel ``i`` of an image is
  ``(i // w, i % w)``; category index 0 is pristine (``k = 1`` in
  ``method.md``), 1 is forged (``k = 2``).

The SCL reconstruction follows ``design/method.md`` section 3, equations
(1)-(10). Choices the prose leaves open are stated in :func:`soft_assign` and
:func:`scl_loss`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

__all__ = ["SoftAssignment", "compactness_loss", "nce_loss", "scl_loss", "soft_assign"]

Reduction = Literal["mean", "sum", "none"]
_REDUCTIONS: tuple[str, ...] = ("mean", "sum", "none")

# Vectors of norm at most this are treated as zero when normalising: they have
# no direction, so they map to the zero vector with zero gradient (the
# derivative of x / |x| would be ~1 / |x|, i.e. infinite or huge, there).
_NORM_EPS: float = 1e-12


@dataclass(frozen=True)
class SoftAssignment:
    """Fuzzy memberships of every pixel to the pristine and forged categories.

    All tensors are computed without gradient (``requires_grad`` is False):
    the weights are a target for the loss, not something it optimises.

    Attributes:
        weights: ``[B, N, 2]`` float, ``N = h * w`` pixels in row-major order;
            ``weights[b, i, 0]`` is pixel ``i``'s membership of the pristine
            category, ``[..., 1]`` of the forged one. Values in ``[0, 1]``,
            summing to 1 over the last axis. For an image lacking one class
            the weights are the hard mask (every pixel fully in the present
            category) and no fuzzy update is run.
        centres: ``[B, 2, D]`` float, the category centres of equation (7)
            computed from ``weights`` and the L2-normalised features (so their
            norm is at most 1). The centre of a category with no pixels is the
            zero vector.
        iterations: ``[B]`` int64, number of alternating rounds (one update
            (5) of the weights followed by one update (7) of the centres)
            run for each image; 0 for an image lacking one class.
        has_both: ``[B]`` bool, whether the image has at least one pristine
            and at least one forged pixel, i.e. whether SCL defines a term
            for it.
    """

    weights: torch.Tensor
    centres: torch.Tensor
    iterations: torch.Tensor
    has_both: torch.Tensor


def soft_assign(
    features: torch.Tensor,
    masks: torch.Tensor,
    m: float = 2.0,
    max_iter: int = 10,
    tol: float = 1e-4,
) -> SoftAssignment:
    """Fuzzy c-means refinement of the hard mask labels (method.md eq. (1)-(7)).

    Per image: start from hard weights taken from the mask, compute the
    centres with (7), then alternate the weight update (5)
    ``w_ik = 1 / sum_j (||f_i - c_k|| / ||f_i - c_j||)^(2/(m-1))`` and the
    centre update (7) ``c_k = sum_i w_ik^m f_i / sum_i w_ik^m``. Each image
    stops on its own, when the largest absolute change of any of its weights
    in a round is below ``tol``, or after ``max_iter`` rounds. Everything runs
    without gradient.

    Choices where method.md leaves freedom:

    - Convergence is measured on ``W`` by the max-norm of its change, per
      image (another image's convergence never changes this one's result).
    - A pixel at distance exactly 0 from one or more centres gets weight 1
      split equally among those centres (1 to a single such centre), the
      limit of (5); (5) itself is evaluated as a softmax over
      ``-log(d_ik^2) / (m - 1)``, which is algebraically identical and does not
      overflow for pixels very close to a centre.
    - A category whose total weight ``sum_i w_ik^m`` is 0 gets the zero
      vector as centre instead of dividing by zero.

    Args:
        features: ``[B, D, h, w]`` floating point feature map, any range; each
            pixel's vector is L2-normalised here.
        masks: ``[B, 1, h, w]`` bool, integer or floating tensor with values
            exactly 0 (pristine) or 1 (forged), at the features' resolution.
        m: fuzzifier, ``> 1`` (2 in the paper).
        max_iter: cap on alternating rounds, ``>= 0``; 0 keeps the hard mask
            weights.
        tol: convergence threshold on the max absolute weight change, ``>= 0``.

    Returns:
        A :class:`SoftAssignment` with detached tensors on the features'
        device, in the computation dtype (see the module docstring).

    Raises:
        TypeError: if ``features`` is not a floating point tensor or ``masks``
            is not a tensor.
        ValueError: if shapes disagree, mask values are not in {0, 1},
            ``m <= 1``, ``max_iter < 0`` or ``tol < 0``.
    """
    _check_inputs(features, masks)
    _check_fuzzy_params(m, max_iter, tol)
    feats, forged = _flatten(features, masks)
    with torch.no_grad():
        return _soft_assign_flat(feats.detach(), forged, m, max_iter, tol)


def scl_loss(
    features: torch.Tensor,
    masks: torch.Tensor,
    tau: float = 0.1,
    m: float = 2.0,
    max_iter: int = 10,
    tol: float = 1e-4,
    reduction: Reduction = "mean",
    per_pixel: bool = False,
) -> torch.Tensor:
    """Soft contrastive loss of FOCAL (method.md eq. (8)-(10)), image by image.

    For each image the weights ``W`` come from :func:`soft_assign` (no
    gradient). The centres are then recomputed by (7) from the grad-carrying
    normalised features with ``W`` held fixed, so gradient reaches the
    features through the centres only. With cosine similarity ``s`` and
    ``p_k = sum_i w_ik^m s(c_k, f_i) / sum_i w_ik^m``::

        L_p = -log( e^(p_1/tau) / (e^(p_1/tau) + e^(s(c_1, c_2)/tau)) )
        L_f = -log( e^(p_2/tau) / (e^(p_2/tau) + e^(s(c_1, c_2)/tau)) )
        L_image = L_p + L_f

    ``per_pixel=True`` (the ``scl-pixel`` training loss, this project's
    variant) makes every pixel a query against both centres, weighted by its
    membership; see :func:`_scl_sides` for the formula and why. Where
    method.md leaves freedom (the weighted mean in ``p_k``, the sum
    ``L_p + L_f``, images lacking a class) the choices are documented in
    :func:`_scl_sides` and :func:`_reduce_images`.

    Note:
        The fuzzy rounds minimise (1), which sees the mask only through the
        initial ``W``: features forming two tight clusters that disagree with
        the mask move ``W`` to the clusters (a test records this);
        ``max_iter`` is what keeps ``W`` close to the labels.

    Args:
        features: ``[B, D, h, w]`` floating point feature map, any range; each
            pixel's vector is L2-normalised here.
        masks: ``[B, 1, h, w]`` bool, integer or floating tensor with values
            exactly 0 (pristine) or 1 (forged), at the features' resolution.
        tau: temperature, ``> 0`` (0.1 in the release).
        m: fuzzifier, ``> 1`` (2 in the paper).
        max_iter: cap on alternating fuzzy rounds, ``>= 0``.
        tol: convergence threshold on the max absolute weight change, ``>= 0``.
        reduction: ``"mean"`` over the images with both classes, ``"sum"``
            (the paper's (10)) or ``"none"`` (``[B]``, 0 for an image lacking
            a class); see :func:`_reduce_images`.
        per_pixel: the per-pixel variant described above.

    Returns:
        A scalar (``"mean"``, ``"sum"``) or ``[B]`` (``"none"``) tensor in the
        computation dtype, non-negative, differentiable w.r.t. ``features``.

    Raises:
        TypeError: if ``features`` is not a floating point tensor or ``masks``
            is not a tensor.
        ValueError: if shapes disagree, mask values are not in {0, 1},
            ``tau <= 0``, ``m <= 1``, ``max_iter < 0``, ``tol < 0`` or
            ``reduction`` is unknown.
    """
    _check_inputs(features, masks)
    _check_tau(tau)
    _check_fuzzy_params(m, max_iter, tol)
    _check_reduction(reduction)

    feats, forged = _flatten(features, masks)  # [B, N, D], [B, N]
    with torch.no_grad():
        assignment = _soft_assign_flat(feats.detach(), forged, m, max_iter, tol)
    powered = assignment.weights.pow(m)  # [B, N, 2], constant for autograd
    per_image = _scl_sides(feats, powered, tau, per_pixel).sum(dim=-1)  # [B]
    return _reduce_images(per_image, assignment.has_both, reduction, features)


def _scl_sides(feats: torch.Tensor, powered: torch.Tensor, tau: float, per_pixel: bool) -> torch.Tensor:
    """The pristine and forged terms ``L_p``, ``L_f`` of :func:`scl_loss`, per image.

    The positive term ``p_k`` is normalised by the weights (``sum_i w_ik^m``,
    the same ``w^m`` weighting as (7)), i.e. a weighted mean, not a sum, of
    similarities; so ``p_k`` equals ``|c_k|``, the norm of the centre of unit
    vectors, 1 exactly when the category's weighted features coincide. The
    caller sums the two sides (not their mean) into the image's loss.

    The per-pixel form moves the expectation outside the log::

        L_p = sum_i w_i1^m softplus((s(c_2, f_i) - s(c_1, f_i)) / tau) / sum_i w_i1^m

    and ``L_f`` symmetrically. Why: the centre-level loss saturates. On the
    ``lite`` backbone after 7 epochs on synthetic forgeries it was below
    0.001 on most training images while 10-30% of their pristine pixels lay
    nearer the forged centre than the pristine one: once the *mean*
    similarity beats the centre-to-centre similarity by ~0.5 (at tau 0.1) no
    gradient is left for the pixels the clustering then gets wrong. The
    per-pixel form keeps a gradient exactly on those pixels (docs/training.md,
    "The losses compared").

    Args:
        feats: ``[B, N, D]`` unit-norm (or zero) features, attached to the graph.
        powered: ``[B, N, 2]`` weights raised to the power ``m``, no grad.
        tau: temperature ``> 0``.
        per_pixel: the per-pixel form above instead of the centre-level one.

    Returns:
        ``[B, 2]`` non-negative terms, pristine then forged.
    """
    mass = powered.sum(dim=1)  # [B, 2]
    # (7) again, from the grad-carrying features: gradient flows through the
    # features only, W stays a fixed target.
    centres = _weighted_centres(feats, powered)  # [B, 2, D]
    unit_centres = _safe_normalize(centres)
    # feats is already unit-norm (or zero), so this dot product is the cosine.
    sims = torch.einsum("bkd,bnd->bnk", unit_centres, feats)  # [B, N, 2]
    denom = mass.clamp_min(torch.finfo(mass.dtype).tiny)
    if per_pixel:
        # Pixel i as the query of category k: its own centre against the other one.
        margins = sims.flip(-1) - sims  # [B, N, 2]: s(c_other, f_i) - s(c_k, f_i)
        return (powered * F.softplus(margins / tau)).sum(dim=1) / denom
    positives = (powered * sims).sum(dim=1) / denom
    negative = (unit_centres[:, 0] * unit_centres[:, 1]).sum(dim=-1)  # [B]
    # -log(e^(p/t) / (e^(p/t) + e^(n/t))) == softplus((n - p) / t), stable for small t.
    return F.softplus((negative.unsqueeze(-1) - positives) / tau)


def _reduce_images(
    per_image: torch.Tensor, valid: torch.Tensor, reduction: Reduction, features: torch.Tensor
) -> torch.Tensor:
    """Per-image SCL terms to the requested reduction.

    An image without a forged pixel, or without a pristine one, contributes
    no term (no compactness-only variant). ``"mean"`` averages over the
    images that have both classes (not over ``B``); ``"sum"`` sums them. If
    no image has both classes, both return a zero still connected to the
    graph (``features.sum() * 0``), so ``backward()`` works and gives zero
    gradients. ``"none"`` returns the ``[B]`` losses with 0 for images
    lacking a class.

    Args:
        per_image: ``[B]`` losses, meaningless where ``valid`` is False.
        valid: ``[B]`` bool, whether the image has both classes.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        features: the loss's input, for the connected zero.

    Returns:
        A scalar or ``[B]`` tensor in ``per_image``'s dtype.
    """
    # torch.where rather than a multiply: an undefined term must not leak a
    # NaN gradient into the batch.
    per_image = torch.where(valid, per_image, torch.zeros_like(per_image))
    if reduction == "none":
        return per_image
    if not bool(valid.any()):
        return (features.sum() * 0).to(per_image.dtype)
    total = per_image.sum()
    if reduction == "sum":
        return total
    return total / valid.sum().to(total.dtype)


def nce_loss(
    features: torch.Tensor,
    masks: torch.Tensor,
    tau: float = 0.1,
    max_samples: int = 1000,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The authors' release loss (the ``nce`` ablation of method.md section 3).

    Per image: up to ``max_samples`` pristine pixels are drawn as queries and
    up to ``max_samples`` forged pixels as negatives (see :func:`_nce_sample`
    for the draw and its order). For query ``q``, the positive logit is the
    mean cosine similarity of ``q`` to the *other* sampled queries; the
    negative logits are its similarities to every sampled forged feature. The
    image's loss is the cross-entropy with the positive at index 0, logits
    divided by ``tau``, averaged over its queries; the batch loss is the mean
    over images.

    An image needs at least 2 pristine pixels (a query needs another query as
    positive) and at least 1 forged pixel; other images contribute no term
    and the mean runs over the images that qualify. If none does, the result
    is ``features.sum() * 0`` (zero, still connected to the graph). The same
    generator state and inputs give the same loss.

    Args:
        features: ``[B, D, h, w]`` floating point feature map, any range; each
            pixel's vector is L2-normalised here.
        masks: ``[B, 1, h, w]`` bool, integer or floating tensor with values
            exactly 0 (pristine) or 1 (forged), at the features' resolution.
        tau: temperature, ``> 0`` (0.1 in the release).
        max_samples: cap on sampled pixels per class and image, ``>= 1``
            (1000 in the release).
        generator: random source for the subsampling; ``None`` uses torch's
            global CPU generator. Indices are drawn on the generator's device
            and moved to the features' device.

    Returns:
        A scalar tensor in the computation dtype, non-negative,
        differentiable w.r.t. ``features``.

    Raises:
        TypeError: if ``features`` is not a floating point tensor, ``masks``
            is not a tensor or ``generator`` is not a ``torch.Generator``.
        ValueError: if shapes disagree, mask values are not in {0, 1},
            ``tau <= 0`` or ``max_samples < 1``.
    """
    _check_inputs(features, masks)
    _check_tau(tau)
    _check_sampling(max_samples, generator)

    feats, forged = _flatten(features, masks)  # [B, N, D], [B, N]
    index_device = generator.device if generator is not None else torch.device("cpu")
    losses: list[torch.Tensor] = []
    # A loop over images: sample sizes differ per image, and the loop makes
    # the per-image separation explicit.
    for b in range(feats.shape[0]):
        picked = _nce_sample(forged[b], max_samples, generator, index_device)
        if picked is not None:
            pristine_idx, forged_idx = picked
            losses.append(_nce_image(feats[b, pristine_idx], feats[b, forged_idx], tau))
    if not losses:
        return (features.sum() * 0).to(feats.dtype)
    return torch.stack(losses).mean()


def _nce_sample(
    forged: torch.Tensor, max_samples: int, generator: torch.Generator | None, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """One image's query (pristine) and negative (forged) pixel indices for :func:`nce_loss`.

    Each class is drawn uniformly without replacement, all of its pixels when
    it has at most ``max_samples``. Order of the draws: the pristine one,
    then the forged one, each a ``torch.randperm`` over that class's pixels
    (in row-major order) made with ``generator``; no random numbers are
    drawn for a class with at most ``max_samples`` pixels, nor for an image
    that does not qualify.

    Args:
        forged: ``[N]`` bool, True for forged pixels.
        max_samples: cap ``>= 1`` per class.
        generator: random source, or None for the global CPU generator.
        device: device on which ``torch.randperm`` draws (the generator's).

    Returns:
        ``[Q]`` and ``[K]`` int64 indices, or None when the image has fewer
        than 2 pristine or no forged pixels.
    """
    pristine_idx = torch.nonzero(~forged).squeeze(1)
    forged_idx = torch.nonzero(forged).squeeze(1)
    if pristine_idx.numel() < 2 or forged_idx.numel() < 1:
        return None
    pristine_idx = _subsample(pristine_idx, max_samples, generator, device)
    forged_idx = _subsample(forged_idx, max_samples, generator, device)
    return pristine_idx, forged_idx


def _nce_image(queries: torch.Tensor, negatives: torch.Tensor, tau: float) -> torch.Tensor:
    """One image's NCE: cross-entropy of each query's positive against its negatives.

    Args:
        queries: ``[Q, D]`` unit-norm (or zero) pristine features, ``Q >= 2``.
        negatives: ``[K, D]`` unit-norm (or zero) forged features, ``K >= 1``.
        tau: temperature ``> 0``.

    Returns:
        A scalar, the mean over the ``Q`` queries.
    """
    n_q = queries.shape[0]
    query_sims = queries @ queries.T  # [Q, Q]
    # Exclude each query's similarity to itself from its positive.
    off_diag = query_sims.sum(dim=1) - query_sims.diagonal()
    positive = off_diag / (n_q - 1)  # [Q]
    logits = torch.cat([positive.unsqueeze(1), queries @ negatives.T], dim=1) / tau
    target = torch.zeros(n_q, dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, target)


def _soft_assign_flat(
    feats: torch.Tensor, forged: torch.Tensor, m: float, max_iter: int, tol: float
) -> SoftAssignment:
    """:func:`soft_assign` on flattened, normalised, detached inputs.

    Args:
        feats: ``[B, N, D]`` unit-norm (or zero) features, no grad.
        forged: ``[B, N]`` bool, True for forged pixels.
        m: fuzzifier ``> 1``.
        max_iter: round cap ``>= 0``.
        tol: max-norm convergence threshold ``>= 0``.

    Returns:
        The :class:`SoftAssignment` for the batch.
    """
    weights = torch.stack([~forged, forged], dim=-1).to(feats.dtype)  # [B, N, 2]
    n_forged = forged.sum(dim=1)
    has_both = (n_forged > 0) & (n_forged < forged.shape[1])
    centres = _weighted_centres(feats, weights.pow(m))
    iterations = torch.zeros(feats.shape[0], dtype=torch.int64, device=feats.device)
    # Images lacking a class keep the hard weights: (5) would pull every
    # pixel towards the zero "centre" of the empty category.
    active = has_both.clone()
    for _ in range(max_iter):
        if not bool(active.any()):
            break
        new_weights = _fuzzy_weights(feats, centres, m)
        new_centres = _weighted_centres(feats, new_weights.pow(m))
        change = (new_weights - weights).abs().amax(dim=(1, 2))  # [B]
        # Only still-active images are updated, so each image's result is
        # the one it would get alone in the batch.
        weights = torch.where(active[:, None, None], new_weights, weights)
        centres = torch.where(active[:, None, None], new_centres, centres)
        iterations += active.to(torch.int64)
        active = active & (change >= tol)
    return SoftAssignment(weights=weights, centres=centres, iterations=iterations, has_both=has_both)


def _fuzzy_weights(feats: torch.Tensor, centres: torch.Tensor, m: float) -> torch.Tensor:
    """Weight update (5) for every pixel of every image.

    Args:
        feats: ``[B, N, D]`` features.
        centres: ``[B, 2, D]`` centres.
        m: fuzzifier ``> 1``.

    Returns:
        ``[B, N, 2]`` weights in ``[0, 1]`` summing to 1 per pixel.
    """
    # Explicit differences (not |f|^2 + |c|^2 - 2<f, c>) so that a pixel that
    # equals a centre gets a distance of exactly 0 rather than rounding noise.
    # One category at a time keeps the peak memory at [B, N, D].
    dist2 = torch.stack(
        [(feats - centres[:, k].unsqueeze(1)).pow(2).sum(dim=-1) for k in range(centres.shape[1])],
        dim=-1,
    )  # [B, N, 2]
    tiny = torch.finfo(dist2.dtype).tiny
    # (5) rewritten as w_ik = d_ik^(-2/(m-1)) / sum_j d_ij^(-2/(m-1)): a
    # softmax of -log(d^2)/(m-1), which cannot overflow however close a pixel
    # is to a centre.
    soft = torch.softmax(-torch.log(dist2.clamp_min(tiny)) / (m - 1.0), dim=-1)
    # The limit of (5) at distance 0: all the weight on the centre(s) the
    # pixel sits on.
    on_centre = dist2 <= tiny
    hard = on_centre.to(soft.dtype) / on_centre.sum(dim=-1, keepdim=True).clamp_min(1).to(soft.dtype)
    return torch.where(on_centre.any(dim=-1, keepdim=True), hard, soft)


def _weighted_centres(feats: torch.Tensor, powered: torch.Tensor) -> torch.Tensor:
    """Centre update (7): ``c_k = sum_i w_ik^m f_i / sum_i w_ik^m``, per image.

    Args:
        feats: ``[B, N, D]`` features.
        powered: ``[B, N, 2]`` weights already raised to the power ``m``.

    Returns:
        ``[B, 2, D]`` centres; the zero vector for a category of zero mass.
    """
    mass = powered.sum(dim=1)  # [B, 2]
    sums = torch.einsum("bnk,bnd->bkd", powered, feats)  # per image: b on both sides
    # A category of zero mass has a zero numerator too: 0 / tiny = 0.
    return sums / mass.clamp_min(torch.finfo(mass.dtype).tiny).unsqueeze(-1)


def compactness_loss(features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The "compactness term" method.md allows for images without a forged pixel.

    SCL and NCE define nothing for an untouched image, yet such an image is
    where the test-time clustering raises false alarms: any split of its
    features into two dense groups of 200+ pixels is reported as a forgery.
    This term pulls an untouched image's features to one direction::

        L_image = 1 - |mean_i f_i|        (unit f_i; 0 when all coincide)

    which is exactly the mean cosine distance of the pixels to their mean
    direction (``mean_i cos(f_i, m / |m|) = |m|`` for unit ``f_i``); in
    ``[0, 1]``. Images with any forged pixel give no term; the result is
    the mean over the images that qualify (a connected zero if none does).

    Args:
        features: ``[B, D, h, w]`` floating point, any range (normalised here).
        masks: ``[B, 1, h, w]`` values exactly 0 or 1, at feature resolution.

    Returns:
        A scalar tensor in ``[0, 1]``, differentiable w.r.t. ``features``.
    """
    _check_inputs(features, masks)
    feats, forged = _flatten(features, masks)  # [B, N, D], [B, N]
    authentic = ~forged.any(dim=1)  # [B]
    if not bool(authentic.any()):
        return features.sum() * 0
    per_image = 1.0 - feats.mean(dim=1).norm(dim=-1)  # [B]
    return per_image[authentic].mean()


def _safe_normalize(x: torch.Tensor) -> torch.Tensor:
    """L2-normalise along the last axis; (near-)zero vectors become exact zeros.

    Args:
        x: ``[..., D]`` floating point tensor.

    Returns:
        Tensor of the same shape, each vector of norm 1, or 0 (with zero
        gradient) where ``|x| <= _NORM_EPS``.
    """
    sq_norm = x.pow(2).sum(dim=-1, keepdim=True)
    threshold = _NORM_EPS * _NORM_EPS
    # Working on the squared norm avoids sqrt's infinite derivative at 0; the
    # clamp keeps the unselected branch of torch.where finite, so its zero
    # gradient cannot turn into 0 * inf = NaN.
    unit = x * torch.rsqrt(sq_norm.clamp_min(threshold))
    return torch.where(sq_norm > threshold, unit, torch.zeros_like(unit))


def _flatten(features: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Validated inputs to per-pixel rows.

    Args:
        features: ``[B, D, h, w]`` floating point.
        masks: ``[B, 1, h, w]`` with values in {0, 1}.

    Returns:
        ``[B, N, D]`` L2-normalised features in the computation dtype (still
        attached to the graph) and the ``[B, N]`` bool forged mask.
    """
    if features.dtype in (torch.float16, torch.bfloat16):
        # Half precision underflows _NORM_EPS**2 and the log-domain weights.
        features = features.float()
    b, d, h, w = features.shape
    feats = features.reshape(b, d, h * w).transpose(1, 2)  # [B, N, D]
    forged = masks.reshape(b, h * w) != 0
    return _safe_normalize(feats), forged.to(feats.device)


def _subsample(
    idx: torch.Tensor, max_samples: int, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """Up to ``max_samples`` entries of ``idx``, uniformly without replacement.

    Args:
        idx: ``[n]`` int64 pixel indices.
        max_samples: cap ``>= 1``.
        generator: random source, or None for the global CPU generator.
        device: device on which ``torch.randperm`` draws (the generator's).

    Returns:
        ``[min(n, max_samples)]`` int64 indices on ``idx``'s device.
    """
    if idx.numel() <= max_samples:
        return idx
    pick = torch.randperm(idx.numel(), generator=generator, device=device)[:max_samples]
    return idx[pick.to(idx.device)]


def _check_inputs(features: torch.Tensor, masks: torch.Tensor) -> None:
    """Raise on malformed ``features`` / ``masks`` (see the public docstrings)."""
    if not isinstance(features, torch.Tensor) or not features.is_floating_point():
        kind = features.dtype if isinstance(features, torch.Tensor) else type(features).__name__
        raise TypeError(f"features must be a floating point torch.Tensor, got {kind}")
    if not isinstance(masks, torch.Tensor):
        raise TypeError(f"masks must be a torch.Tensor, got {type(masks).__name__}")
    if features.ndim != 4:
        raise ValueError(f"features must be [B, D, h, w], got shape {tuple(features.shape)}")
    b, d, h, w = features.shape
    if b < 1 or d < 1 or h < 1 or w < 1:
        raise ValueError(f"features must have no empty dimension, got shape {tuple(features.shape)}")
    if masks.ndim != 4 or masks.shape[1] != 1:
        raise ValueError(f"masks must be [B, 1, h, w], got shape {tuple(masks.shape)}")
    if masks.shape[0] != b:
        raise ValueError(f"masks batch size {masks.shape[0]} differs from features batch size {b}")
    if tuple(masks.shape[2:]) != (h, w):
        raise ValueError(
            f"masks spatial size {tuple(masks.shape[2:])} differs from features spatial size {(h, w)}; "
            "resize the mask to the feature resolution first"
        )
    if masks.is_complex():
        raise ValueError(f"masks must hold 0/1 values, got dtype {masks.dtype}")
    if masks.dtype != torch.bool:
        bad = (masks != 0) & (masks != 1)
        if bool(bad.any()):
            raise ValueError(
                f"masks must contain only 0 (pristine) and 1 (forged), got e.g. {masks[bad][0].item()!r}; "
                "threshold the mask first"
            )


def _check_tau(tau: float) -> None:
    """Raise unless ``tau`` is a finite number > 0."""
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not math.isfinite(tau) or tau <= 0:
        raise ValueError(f"tau must be a finite number > 0, got {tau!r}")


def _check_fuzzy_params(m: float, max_iter: int, tol: float) -> None:
    """Raise unless ``m > 1`` (finite), ``max_iter >= 0`` (int) and ``tol >= 0`` (finite)."""
    if isinstance(m, bool) or not isinstance(m, (int, float)) or not math.isfinite(m) or m <= 1:
        raise ValueError(f"m (fuzzifier) must be a finite number > 1, got {m!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 0:
        raise ValueError(f"max_iter must be an int >= 0, got {max_iter!r}")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not math.isfinite(tol) or tol < 0:
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")


def _check_sampling(max_samples: int, generator: torch.Generator | None) -> None:
    """Raise unless ``max_samples`` is an int >= 1 and ``generator`` a ``torch.Generator`` or None."""
    if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1:
        raise ValueError(f"max_samples must be an int >= 1, got {max_samples!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")


def _check_reduction(reduction: str) -> None:
    """Raise unless ``reduction`` is one of ``_REDUCTIONS``."""
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
