r"""Comparing layers: how similar are two sets of neuron responses to the same inputs?

Every function takes two layers' responses to the **same** :math:`N` inputs, in the same order, as
``[samples, neurons]`` tensors (rows are inputs, as :func:`neuronlab.probe.collect_responses` returns
them; any float dtype, converted to float64) and returns a similarity (1 = the same representation, up
to the measure's invariances), never a distance. The measures:

* **CCA** (:func:`canonical_correlations`, :func:`cca_similarity`): the canonical correlations
  :math:`\rho_1 \ge \rho_2 \ge \dots` between the column spaces of the centred responses; invariant to any
  invertible linear map of either layer.
* **SVCCA** (Raghu, Gilmer, Yosinski & Sohl-Dickstein, NIPS 2017; :func:`svd_reduce`,
  :func:`svcca_correlations`, :func:`svcca_similarity`): first keep the top singular directions that
  explain 99 % of each layer's variance, then CCA; the mean canonical correlation.
* **PWCCA** (Morcos, Raghu & Bengio, NeurIPS 2018; :func:`pwcca`, :func:`pwcca_similarity`): a weighted
  mean of the canonical correlations, each weighted by how much of the layer's neurons its canonical
  variate accounts for.
* **CKA** (Kornblith, Norouzi, Lee & Hinton, ICML 2019; :func:`linear_cka`, :func:`rbf_cka`, :func:`cka`
  on Gram matrices from :func:`gram_linear` / :func:`gram_rbf`, :func:`center_gram`, :func:`hsic`):
  the normalised Hilbert-Schmidt independence criterion; invariant to orthogonal maps, isotropic scaling
  and translation, not to general invertible maps. ``debiased=True`` uses the unbiased HSIC estimator
  (Song, Smola, Gretton, Borgwardt & Bedo, ICML 2007), computed in the U-centring form of Székely & Rizzo
  (Annals of Statistics 2014), which removes the small-sample inflation of the biased CKA (independent
  layers of width :math:`d` give :math:`\approx d/(N+d)`, not 0).
* **Streaming**: :class:`LinearCKA` accumulates exact sufficient statistics batch by batch (the result
  equals :func:`linear_cka` of all the data); :class:`MinibatchCKA` is the minibatch estimator of
  Nguyen, Raghu & Kornblith (ICLR 2021), sums of per-batch unbiased HSICs.
* :func:`similarity_matrix` compares every layer of one recording with every layer of another (or with
  itself), by any measure of :data:`MEASURES`.

**Convolutional layers** give ``[N, C, H, W]`` responses; the measures need a matrix, and the choice of
matrix changes the results. ``x.flatten(1)`` (``reduce="flatten"`` of
:func:`neuronlab.probe.collect_responses`) makes every (channel, position) a neuron, ``[N, C*H*W]``: many
neurons, so CCA needs many samples. ``reduce="channel_positions"`` makes every position of every input a
sample of its channel, ``[N*H*W, C]`` (both layers then need the same spatial size, so that the rows
match). ``reduce="channel_mean"`` averages each channel over positions, ``[N, C]``, and discards where a
channel responds.

**How we differ from the official code** (``google/svcca``; the Kornblith et al. demo notebook in
``google-research/representation_similarity``; ``efficient_CKA.py`` of Nguyen et al.):

* CCA from orthonormal bases (an SVD of each centred layer with a rank tolerance, then the singular values
  of :math:`Q_x^\top Q_y`, Björck & Golub), never from an inverted covariance matrix, in float64 and
  clamped to :math:`[0, 1]`: covariance inversion breaks down on ill-conditioned layers (correlations
  above 1, or garbage in float32), the QR/SVD route does not.
* The SVCCA variance threshold is on the **squared** singular values (variance), as the paper says; the
  Google tutorial and some re-implementations threshold the cumulative singular values themselves.
* PWCCA works whichever argument has more neurons (the official ``compute_pwcca`` raises an
  ``IndexError`` when the first layer is wider, google/svcca PR #9); its weights come from the centred
  neurons (the official code adds the means back to the canonical variates and uses raw activations).
* Too few samples is an error, not a silent 1: with :math:`N - 1 < d_x + d_y` at least
  :math:`d_x + d_y - (N - 1)` canonical correlations are 1 whatever the data (``ValueError``), and a
  ``UserWarning`` asks for a random baseline below :math:`5 \max(d_x, d_y)` samples.
* Everything returns a *similarity*; some libraries (e.g. anatome) return :math:`1 - \text{similarity}`.
* The RBF bandwidth uses the median over pairs of distinct samples (the demo's median includes the
  :math:`N` zero self-distances), and a debiased CKA whose self-HSIC is not positive raises a
  ``ValueError`` instead of returning NaN.
"""

from __future__ import annotations

import difflib
import math
import numbers
import sys
import warnings
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

__all__ = [
    "canonical_correlations",
    "cca_similarity",
    "svd_reduce",
    "svcca_correlations",
    "svcca_similarity",
    "pwcca",
    "pwcca_similarity",
    "gram_linear",
    "gram_rbf",
    "center_gram",
    "hsic",
    "cka",
    "linear_cka",
    "rbf_cka",
    "LinearCKA",
    "MinibatchCKA",
    "similarity_matrix",
    "MEASURES",
]

Responses = Union[torch.Tensor, np.ndarray]
_EPS = torch.finfo(torch.float64).eps


# ------------------------------------------------------------------------------------------ input checks
def _matrix(x: Responses, name: str, min_samples: int = 2) -> torch.Tensor:
    """``x`` as a float64 ``[samples, neurons]`` tensor, after the checks every measure shares."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a [samples, neurons] tensor, got {type(x).__name__}")
    if x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
    if x.dim() != 2:
        raise ValueError(f"{name} must be a [samples, neurons] matrix, got shape {tuple(x.shape)}: flatten "
                         f"a conv response with {name}.flatten(1), or record it with "
                         "neuronlab.probe.collect_responses(..., reduce='flatten' | 'channel_mean' | "
                         "'channel_positions')")
    if x.shape[0] < min_samples:
        raise ValueError(f"{name} has {x.shape[0]} sample(s): a similarity needs at least {min_samples} (in "
                         "practice many more)")
    if x.shape[1] < 1:
        raise ValueError(f"{name} has no neurons (shape {tuple(x.shape)})")
    x = x.detach()
    if x.device.type == "mps":  # no float64 there
        x = x.cpu()
    x = x.to(torch.float64)
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or inf: check the model and the data "
                         f"(torch.isfinite({name}).all(1) finds the samples)")
    return x


def _pair(x: Responses, y: Responses, min_samples: int = 2) -> Tuple[torch.Tensor, torch.Tensor]:
    x, y = _matrix(x, "x", min_samples), _matrix(y, "y", min_samples)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} samples and y has {y.shape[0]}: both must be the responses to "
                         "the same inputs, in the same order")
    return x, y.to(x.device)


def _is_constant(x: torch.Tensor) -> bool:
    return bool((x == x[0]).all())


def _constant_layer_error(name: str) -> ValueError:
    return ValueError(f"{name} is constant (every sample gives the same response): its similarity to anything "
                      "is undefined; check the layer (dead units?) and the inputs")


def _check_not_constant(x: torch.Tensor, name: str) -> None:
    if _is_constant(x):
        raise _constant_layer_error(name)


def _check_no_constant_neurons(x: torch.Tensor, name: str) -> None:
    constant = torch.nonzero((x == x[0]).all(0)).flatten().tolist()
    if constant:
        shown = ", ".join(map(str, constant[:5])) + (", ..." if len(constant) > 5 else "")
        raise ValueError(f"{name} has {len(constant)} constant neuron(s) (indices {shown}): CCA is undefined "
                         f"for them; drop them, e.g. {name}[:, {name}.std(0) > 0], or use svcca_similarity "
                         "whose SVD step drops them")


def _check_enough_samples(n: int, d_x: int, d_y: int, after: str = "") -> None:
    """CCA of ``d_x`` and ``d_y`` centred neurons needs ``n - 1 >= d_x + d_y`` (else forced ones) and
    should have several samples per neuron."""
    if n - 1 < d_x + d_y:
        forced = d_x + d_y - (n - 1)
        raise ValueError(f"{n} samples for {d_x} + {d_y} neurons{after}: with n - 1 < d_x + d_y at least "
                         f"{forced} canonical correlation(s) are 1 whatever the data; use at least "
                         f"{d_x + d_y + 1} samples (better {5 * max(d_x, d_y)} or more), or fewer neurons "
                         "(svcca_similarity with a smaller keep_variance)")
    if n < 5 * max(d_x, d_y):
        _warn_at_caller(f"{n} samples for up to {max(d_x, d_y)} neurons{after}: CCA needs at least a few "
                        "times more samples than neurons, or its correlations come out high for any data; "
                        "compare with a random baseline")


def _warn_at_caller(message: str) -> None:
    """A ``UserWarning`` attributed to the first caller outside this module."""
    frame, level = sys._getframe(0), 1
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame, level = frame.f_back, level + 1
    warnings.warn(message, UserWarning, stacklevel=level)


def _check_keep_variance(keep_variance) -> float:
    if isinstance(keep_variance, bool) or not isinstance(keep_variance, numbers.Real) \
            or not 0 < keep_variance <= 1:
        raise ValueError(f"keep_variance must be a fraction in (0, 1], e.g. 0.99, got {keep_variance!r}")
    return float(keep_variance)


def _check_positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


# ------------------------------------------------------------------------------------------------ CCA
def _centre(x: torch.Tensor) -> torch.Tensor:
    return x - x.mean(0)


def _orthonormal_basis(centred: torch.Tensor) -> torch.Tensor:
    """Orthonormal basis of the column space of ``centred``: left singular vectors above a rank
    tolerance, so rank-deficient and ill-conditioned layers are handled without any inversion."""
    u, s, _ = torch.linalg.svd(centred, full_matrices=False)
    rank = int((s > s[0] * max(centred.shape) * _EPS).sum()) if s.numel() and s[0] > 0 else 0
    return u[:, :rank]


def _cca(x_centred: torch.Tensor, y_centred: torch.Tensor):
    """Canonical correlations (descending, in [0, 1]) with the bases and singular vectors behind them:
    ``(rho, q_x, q_y, u, v)``, the canonical variates being ``q_x @ u`` and ``q_y @ v``."""
    q_x, q_y = _orthonormal_basis(x_centred), _orthonormal_basis(y_centred)
    u, rho, vh = torch.linalg.svd(q_x.T @ q_y, full_matrices=False)
    return rho.clamp(0.0, 1.0), q_x, q_y, u, vh.T


def canonical_correlations(x: Responses, y: Responses) -> torch.Tensor:
    r"""Canonical correlation analysis (CCA): the canonical correlations of two layers.

    With the columns of :math:`X` and :math:`Y` centred and :math:`Q_x`, :math:`Q_y` orthonormal bases of
    their column spaces (from an SVD, with a rank tolerance),

    .. math::
        \rho_i = \sigma_i\big(Q_x^\top Q_y\big) = \max_{a, b}
        \operatorname{corr}(X a, Y b) \text{ over directions uncorrelated with the first } i - 1,

    the cosines of the principal angles between the two column spaces. No covariance matrix is inverted.

    Args:
        x: ``[N, d_x]`` responses of one layer.
        y: ``[N, d_y]`` responses of the other layer to the same inputs.

    Returns:
        torch.Tensor: float64, descending, clamped to :math:`[0, 1]`, of length
        :math:`\min(\operatorname{rank} X, \operatorname{rank} Y)`.

    Raises:
        ValueError: not 2-D, different sample counts, NaN/inf, constant neurons, or too few samples
            (:math:`N - 1 < d_x + d_y`). A ``UserWarning`` below :math:`5 \max(d_x, d_y)` samples.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.randn(200, 3, generator=g)
        >>> mix = torch.tensor([[2.0, 1, 0], [0, 1, 0], [1, 0, 3]])
        >>> canonical_correlations(x, x @ mix + 5).round(decimals=6)
        tensor([1., 1., 1.], dtype=torch.float64)
    """
    x, y = _pair(x, y)
    _check_no_constant_neurons(x, "x")
    _check_no_constant_neurons(y, "y")
    _check_enough_samples(x.shape[0], x.shape[1], y.shape[1])
    return _cca(_centre(x), _centre(y))[0]


def cca_similarity(x: Responses, y: Responses) -> float:
    r"""CCA similarity: the mean canonical correlation :math:`\bar\rho = \frac1k \sum_{i=1}^k \rho_i`.

    Args:
        x: ``[N, d_x]`` responses.
        y: ``[N, d_y]`` responses to the same inputs.

    Returns:
        float: in :math:`[0, 1]`; 1 when one layer is an invertible linear map of the other.

    Raises:
        ValueError: as :func:`canonical_correlations`.

    Example:
        >>> import torch
        >>> x = torch.randn(500, 4, generator=torch.Generator().manual_seed(0))
        >>> round(cca_similarity(x, 3 * x[:, [2, 0, 3, 1]] - 1), 6)
        1.0
    """
    return float(canonical_correlations(x, y).mean())


# ---------------------------------------------------------------------------------------------- SVCCA
def _svd_reduce(x: torch.Tensor, keep_variance: float, name: str = "x") -> torch.Tensor:
    u, s, _ = torch.linalg.svd(_centre(x), full_matrices=False)
    variance = torch.cumsum(s * s, 0)
    if variance[-1] <= 0:
        raise ValueError(f"{name} is constant (every sample gives the same response): nothing to keep")
    explained = variance / variance[-1]
    # the smallest k with explained[k-1] >= keep_variance, up to the rounding of the cumulative sum
    k = int((explained < keep_variance - len(s) * _EPS).sum()) + 1
    rank = int((s > s[0] * max(x.shape) * _EPS).sum())
    k = min(k, rank)
    return u[:, :k] * s[:k]


def svd_reduce(x: Responses, keep_variance: float = 0.99) -> torch.Tensor:
    r"""SVD reduction (the first step of SVCCA): the centred responses on their top-:math:`k` directions.

    With :math:`X - \bar X = U S V^\top` (singular values :math:`s_1 \ge s_2 \ge \dots`),

    .. math::
        k = \min \Big\{ k : \frac{\sum_{i \le k} s_i^2}{\sum_i s_i^2} \ge v \Big\},
        \qquad X_k = (X - \bar X) V_{:, :k} = U_{:, :k} S_{:k},

    with :math:`v` = ``keep_variance``: the fraction of *variance* (squared singular values) explained,
    as in Raghu et al. (2017), not of the singular values themselves. Directions of zero variance are never kept.

    Args:
        x: ``[N, d]`` responses.
        keep_variance: the fraction of variance to keep, in :math:`(0, 1]`.

    Returns:
        torch.Tensor: ``[N, k]`` float64, centred; column :math:`i` has norm :math:`s_i`.

    Raises:
        ValueError: bad input (as :func:`canonical_correlations`), a constant ``x``, or
            ``keep_variance`` outside :math:`(0, 1]`.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.randn(1000, 5, generator=g)
        >>> x = x * torch.tensor([10.0, 5.0, 1.0, 0.1, 0.01])
        >>> svd_reduce(x, keep_variance=0.99).shape   # 100 + 25 of 126
        torch.Size([1000, 2])
        >>> svd_reduce(x, keep_variance=0.999).shape
        torch.Size([1000, 3])
    """
    return _svd_reduce(_matrix(x, "x"), _check_keep_variance(keep_variance))


def svcca_correlations(x: Responses, y: Responses, keep_variance: float = 0.99) -> torch.Tensor:
    r"""SVCCA (Raghu et al., 2017): canonical correlations of the SVD-reduced layers.

    Each layer is reduced by :func:`svd_reduce` to the directions that explain ``keep_variance`` of its
    variance (:math:`k_x`, :math:`k_y` of them), then :func:`canonical_correlations` of the two.

    Args:
        x: ``[N, d_x]`` responses.
        y: ``[N, d_y]`` responses to the same inputs.
        keep_variance: fraction of each layer's variance kept, in :math:`(0, 1]` (1 keeps every direction of
            non-zero variance, giving plain CCA without the constant-neuron check).

    Returns:
        torch.Tensor: float64, descending, in :math:`[0, 1]`, of length :math:`\min(k_x, k_y)`.

    Raises:
        ValueError: bad input, constant ``x`` or ``y``, or :math:`N - 1 < k_x + k_y`. A ``UserWarning``
            below :math:`5 \max(k_x, k_y)` samples.

    Example:
        >>> import torch
        >>> x = torch.randn(500, 6, generator=torch.Generator().manual_seed(0))
        >>> rho = svcca_correlations(x, x[:, :2] * 2, keep_variance=1.0)
        >>> rho.round(decimals=6)
        tensor([1., 1.], dtype=torch.float64)
    """
    x, y = _pair(x, y)
    keep_variance = _check_keep_variance(keep_variance)
    x_reduced, y_reduced = _svd_reduce(x, keep_variance, "x"), _svd_reduce(y, keep_variance, "y")
    _check_enough_samples(x.shape[0], x_reduced.shape[1], y_reduced.shape[1], " (after the SVD step)")
    return _cca(x_reduced, y_reduced)[0]


def svcca_similarity(x: Responses, y: Responses, keep_variance: float = 0.99) -> float:
    r"""SVCCA similarity (Raghu et al., 2017): the mean of :func:`svcca_correlations`.

    Args:
        x: ``[N, d_x]`` responses.
        y: ``[N, d_y]`` responses to the same inputs.
        keep_variance: fraction of each layer's variance kept by the SVD step.

    Returns:
        float: in :math:`[0, 1]`.

    Raises:
        ValueError: as :func:`svcca_correlations`.

    Example:
        >>> import torch
        >>> x = torch.randn(500, 3, generator=torch.Generator().manual_seed(0))
        >>> round(svcca_similarity(x, x.flip(1) * 7), 6)
        1.0
    """
    return float(svcca_correlations(x, y, keep_variance).mean())


# ---------------------------------------------------------------------------------------------- PWCCA
def pwcca(x: Responses, y: Responses, keep_variance: Optional[float] = None
          ) -> Tuple[float, torch.Tensor, torch.Tensor]:
    r"""Projection-weighted CCA (PWCCA; Morcos, Raghu & Bengio, 2018), with its weights and correlations.

    The canonical variates :math:`h_i` (unit norm) of the layer with fewer neurons (after the SVD step
    when ``keep_variance`` is given; ``x`` on a tie) are weighted by how much of that layer's centred
    neurons :math:`z_j` they account for:

    .. math::
        \text{PWCCA} = \sum_i \alpha_i \rho_i, \qquad
        \alpha_i = \frac{\sum_j |\langle h_i, z_j \rangle|}{\sum_{i'} \sum_j |\langle h_{i'}, z_j \rangle|}.

    Directions that many neurons use weigh more than noise directions that happen to correlate. The
    measure is asymmetric when both layers have the same number of neurons (the weights then come from
    ``x``); otherwise ``pwcca(x, y)`` and ``pwcca(y, x)`` are equal.

    Args:
        x: ``[N, d_x]`` responses.
        y: ``[N, d_y]`` responses to the same inputs; either may be the wider.
        keep_variance: ``None`` (CCA of the neurons themselves) or a fraction in :math:`(0, 1]` for an
            SVD step first (then the :math:`z_j` are the kept SVD coordinates).

    Returns:
        tuple: ``(similarity, weights, correlations)``: the PWCCA value (a float in :math:`[0, 1]`), the
        weights :math:`\alpha` (float64, non-negative, summing to 1) and the canonical correlations
        :math:`\rho` (float64, descending), of the same length.

    Raises:
        ValueError: as :func:`canonical_correlations` (constant neurons only when ``keep_variance`` is
            ``None``).

    Example:
        >>> import torch
        >>> x = torch.randn(500, 4, generator=torch.Generator().manual_seed(0))
        >>> value, weights, rho = pwcca(x, x @ torch.randn(4, 6) + 1)
        >>> round(value, 6), round(weights.sum().item(), 6), len(rho)
        (1.0, 1.0, 4)
    """
    x, y = _pair(x, y)
    if keep_variance is None:
        _check_no_constant_neurons(x, "x")
        _check_no_constant_neurons(y, "y")
        z_x, z_y = _centre(x), _centre(y)
        after = ""
    else:
        keep_variance = _check_keep_variance(keep_variance)
        z_x, z_y = _svd_reduce(x, keep_variance, "x"), _svd_reduce(y, keep_variance, "y")
        after = " (after the SVD step)"
    _check_enough_samples(x.shape[0], z_x.shape[1], z_y.shape[1], after)
    rho, q_x, q_y, u, v = _cca(z_x, z_y)
    k = rho.numel()
    variates, neurons = (q_x @ u[:, :k], z_x) if z_x.shape[1] <= z_y.shape[1] else (q_y @ v[:, :k], z_y)
    weights = (variates.T @ neurons).abs().sum(1)
    weights = weights / weights.sum()
    return float(weights @ rho), weights, rho


def pwcca_similarity(x: Responses, y: Responses, keep_variance: Optional[float] = None) -> float:
    r"""PWCCA similarity (Morcos, Raghu & Bengio, 2018): :math:`\sum_i \alpha_i \rho_i`, see :func:`pwcca`.

    Args:
        x: ``[N, d_x]`` responses.
        y: ``[N, d_y]`` responses to the same inputs.
        keep_variance: ``None`` or the fraction of variance kept by an SVD step first.

    Returns:
        float: in :math:`[0, 1]`.

    Raises:
        ValueError: as :func:`pwcca`.

    Example:
        >>> import torch
        >>> x = torch.randn(500, 5, generator=torch.Generator().manual_seed(0))
        >>> round(pwcca_similarity(x, x[:, :3]), 6)   # x is wider: fine
        1.0
    """
    return pwcca(x, y, keep_variance)[0]


# ------------------------------------------------------------------------------------- Gram matrices
def _gram(gram, name: str, min_samples: int = 2) -> torch.Tensor:
    if isinstance(gram, np.ndarray):
        gram = torch.from_numpy(np.ascontiguousarray(gram))
    if not isinstance(gram, torch.Tensor):
        raise TypeError(f"{name} must be an [N, N] Gram matrix tensor, got {type(gram).__name__}")
    if gram.dim() != 2 or gram.shape[0] != gram.shape[1]:
        raise ValueError(f"{name} must be a square [N, N] Gram matrix, got shape {tuple(gram.shape)}: for "
                         "[samples, neurons] responses use gram_linear(x) or gram_rbf(x) first")
    gram = _matrix(gram, name, min_samples)
    scale = float(gram.abs().max())
    if float((gram - gram.T).abs().max()) > 1e-6 * scale:
        raise ValueError(f"{name} is not symmetric, so it is not a Gram matrix: for [samples, neurons] "
                         "responses use gram_linear(x) or gram_rbf(x) first")
    return gram


def _median(values: torch.Tensor) -> torch.Tensor:
    """Median that averages the two middle values (as numpy), without torch.quantile's size limit."""
    m = values.numel()
    low = torch.kthvalue(values, (m + 1) // 2).values
    high = torch.kthvalue(values, m // 2 + 1).values
    return (low + high) / 2


def gram_linear(x: Responses) -> torch.Tensor:
    r"""Linear kernel Gram matrix :math:`K = X X^\top` of ``[N, d]`` responses.

    Args:
        x: ``[N, d]`` responses.

    Returns:
        torch.Tensor: ``[N, N]`` float64.

    Raises:
        ValueError: not 2-D, NaN/inf, fewer than 2 samples.

    Example:
        >>> import torch
        >>> gram_linear(torch.tensor([[1.0, 2.0], [0.0, 1.0]]))
        tensor([[5., 2.],
                [2., 1.]], dtype=torch.float64)
    """
    x = _matrix(x, "x")
    return x @ x.T


def gram_rbf(x: Responses, bandwidth: float = 0.5) -> torch.Tensor:
    r"""RBF (Gaussian) kernel Gram matrix, with the bandwidth a multiple of the median distance.

    .. math::
        K_{ij} = \exp\Big(-\frac{\lVert x_i - x_j \rVert^2}{2\sigma^2}\Big), \qquad
        \sigma^2 = \text{bandwidth}^2 \cdot \operatorname{median}_{i < j} \lVert x_i - x_j \rVert^2,

    i.e. :math:`\sigma` is ``bandwidth`` times the median distance between two samples (``threshold`` in
    Kornblith et al.'s demo, where 0.5 is the value of their experiments).

    Args:
        x: ``[N, d]`` responses.
        bandwidth: :math:`\sigma` as a fraction of the median pairwise distance.

    Returns:
        torch.Tensor: ``[N, N]`` float64, ones on the diagonal.

    Raises:
        ValueError: bad input, ``bandwidth <= 0``, or a median distance of 0 (more than half of the pairs
            of samples are identical, e.g. a constant layer).

    Example:
        >>> import torch
        >>> x = torch.tensor([[0.0], [1.0], [3.0]])   # median distance 2
        >>> k = gram_rbf(x, bandwidth=0.5)             # sigma = 1
        >>> round(k[0, 1].log().item(), 6), round(k[0, 2].log().item(), 6)
        (-0.5, -4.5)
    """
    x = _matrix(x, "x")
    bandwidth = _check_positive(bandwidth, "bandwidth")
    return _gram_rbf(x, bandwidth, "x")


def _gram_rbf(x: torch.Tensor, bandwidth: float, name: str) -> torch.Tensor:
    x = _centre(x)  # distances do not change; the expansion below loses less to rounding
    sq_norms = (x * x).sum(1)
    sq_distances = (sq_norms[:, None] + sq_norms[None, :] - 2 * (x @ x.T)).clamp_min(0.0)
    sq_distances.fill_diagonal_(0.0)
    n = x.shape[0]
    rows, cols = torch.triu_indices(n, n, offset=1, device=x.device)
    sq_median = _median(sq_distances[rows, cols])
    if sq_median <= 0:
        raise ValueError(f"the median distance between samples of {name} is 0 (more than half of the pairs "
                         "are identical, e.g. a constant layer), so the RBF bandwidth would be 0; use "
                         "linear CKA or more varied inputs")
    return torch.exp(-sq_distances / (2 * bandwidth**2 * sq_median))


def center_gram(gram: torch.Tensor, unbiased: bool = False) -> torch.Tensor:
    r"""Centre a Gram matrix: :math:`HKH` (biased) or the U-centring of Székely & Rizzo (2014) (unbiased).

    Biased, with :math:`H = I - \frac1N \mathbf 1 \mathbf 1^\top`: :math:`\tilde K = HKH`. Unbiased, for
    :math:`i \ne j` (the diagonal is set to 0, before and after):

    .. math::
        \tilde K_{ij} = K_{ij} - \frac{1}{N-2}\sum_{l \ne i} K_{il} - \frac{1}{N-2}\sum_{l \ne j} K_{lj}
        + \frac{1}{(N-1)(N-2)} \sum_{k \ne l} K_{kl},

    so that :math:`\langle \tilde K, \tilde L \rangle / (N(N-3))` is the unbiased HSIC estimator of Song
    et al. (2007).

    Args:
        gram: ``[N, N]`` symmetric Gram matrix.
        unbiased: U-centring instead of :math:`HKH`.

    Returns:
        torch.Tensor: ``[N, N]`` float64, a new tensor.

    Raises:
        ValueError: not square, not symmetric, NaN/inf, or too few samples (2; 3 for ``unbiased``).

    Example:
        >>> import torch
        >>> k = center_gram(torch.tensor([[2.0, 1.0], [1.0, 2.0]]))
        >>> k
        tensor([[ 0.5000, -0.5000],
                [-0.5000,  0.5000]], dtype=torch.float64)
    """
    return _center_gram(_gram(gram, "gram", 3 if unbiased else 2), unbiased)


def _center_gram(gram: torch.Tensor, unbiased: bool) -> torch.Tensor:
    gram = gram.clone()
    n = gram.shape[0]
    if unbiased:
        gram.fill_diagonal_(0.0)
        means = gram.sum(0) / (n - 2)
        means = means - means.sum() / (2 * (n - 1))
        gram = gram - means[:, None] - means[None, :]
        gram.fill_diagonal_(0.0)
    else:
        means = gram.mean(0)
        means = means - means.mean() / 2
        gram = gram - means[:, None] - means[None, :]
    return gram


def _gram_pair(gram_x, gram_y, unbiased: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    minimum = 4 if unbiased else 2
    gram_x, gram_y = _gram(gram_x, "gram_x", minimum), _gram(gram_y, "gram_y", minimum)
    if gram_x.shape != gram_y.shape:
        raise ValueError(f"gram_x is {tuple(gram_x.shape)} and gram_y is {tuple(gram_y.shape)}: both must come "
                         "from the responses to the same inputs")
    return gram_x, gram_y.to(gram_x.device)


def _hsic_scale(n: int, unbiased: bool) -> float:
    return n * (n - 3) if unbiased else (n - 1) ** 2


def hsic(gram_x: torch.Tensor, gram_y: torch.Tensor, unbiased: bool = False) -> float:
    r"""Hilbert-Schmidt independence criterion (HSIC) of two Gram matrices over the same samples.

    .. math::
        \text{HSIC}_0 = \frac{\operatorname{tr}(K H L H)}{(N-1)^2}, \qquad
        \text{HSIC}_1 = \frac{\langle \tilde K, \tilde L \rangle}{N(N-3)}

    the biased estimator (Gretton et al., 2005) and the unbiased one (Song et al., 2007; :math:`\tilde K`,
    :math:`\tilde L` U-centred by :func:`center_gram`), which can be negative.

    Args:
        gram_x: ``[N, N]`` Gram matrix of one layer.
        gram_y: ``[N, N]`` Gram matrix of the other, same samples.
        unbiased: the unbiased estimator (needs :math:`N \ge 4`).

    Returns:
        float: the estimate.

    Raises:
        ValueError: not square/symmetric, different sizes, NaN/inf, too few samples.

    Example:
        >>> import torch
        >>> k = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> hsic(k, k)      # tr(H H) / (N - 1)^2 with N = 2
        1.0
    """
    gram_x, gram_y = _gram_pair(gram_x, gram_y, unbiased)
    centred_x, centred_y = _center_gram(gram_x, unbiased), _center_gram(gram_y, unbiased)
    return float((centred_x * centred_y).sum()) / _hsic_scale(gram_x.shape[0], unbiased)


# ------------------------------------------------------------------------------------------------ CKA
def _normalise(cross: float, self_x: float, self_y: float, debiased: bool, names=("x", "y"),
               scales: Tuple[float, float] = (0.0, 0.0)) -> float:
    """``cross / sqrt(self_x * self_y)``, with an explanation instead of a NaN. A self-HSIC within rounding
    (``1e-9 * scale``, the size of the terms it was computed from) of 0 counts as 0."""
    for value, scale, name in ((self_x, scales[0], names[0]), (self_y, scales[1], names[1])):
        if value <= 1e-9 * scale or value <= 0:
            if debiased:
                raise ValueError(f"the unbiased self-HSIC of {name} is {value:.3g} <= 0 (up to rounding), so "
                                 "debiased CKA (its square root in the denominator) is undefined: too few "
                                 "samples for the unbiased estimator, samples with orthogonal responses, or a "
                                 "(nearly) constant layer; use more samples or debiased=False")
            raise ValueError(f"{name} is constant (its centred Gram matrix is 0): CKA is undefined")
    return cross / math.sqrt(self_x * self_y)


def cka(gram_x: torch.Tensor, gram_y: torch.Tensor, debiased: bool = False) -> float:
    r"""Centred kernel alignment (CKA; Kornblith et al., 2019) of two Gram matrices.

    .. math::
        \text{CKA}(K, L) = \frac{\text{HSIC}(K, L)}{\sqrt{\text{HSIC}(K, K)\, \text{HSIC}(L, L)}},

    with the biased HSIC (:math:`HKH` centring), or with ``debiased=True`` the unbiased one (U-centring),
    which removes the inflation of CKA for few samples; the debiased value can be slightly negative.

    Args:
        gram_x: ``[N, N]`` Gram matrix of one layer (:func:`gram_linear`, :func:`gram_rbf`, ...).
        gram_y: ``[N, N]`` Gram matrix of the other, same samples.
        debiased: use the unbiased HSIC (needs :math:`N \ge 4`).

    Returns:
        float: at most 1; in :math:`[0, 1]` for positive semi-definite kernels and ``debiased=False``.

    Raises:
        ValueError: bad Gram matrices, a constant layer, or (debiased) a self-HSIC :math:`\le 0`.

    Example:
        >>> import torch
        >>> x = torch.randn(100, 5, generator=torch.Generator().manual_seed(0))
        >>> round(cka(gram_linear(x), gram_linear(2 * x + 1)), 6)
        1.0
    """
    gram_x, gram_y = _gram_pair(gram_x, gram_y, debiased)
    centred_x, centred_y = _center_gram(gram_x, debiased), _center_gram(gram_y, debiased)
    return _normalise(float((centred_x * centred_y).sum()), float((centred_x * centred_x).sum()),
                      float((centred_y * centred_y).sum()), debiased, ("gram_x", "gram_y"))


# Linear CKA in feature space, from float64 sums around a shift (the first batch's column means, against
# cancellation). ``p_i = |x_i - shift_x|^2`` and ``q_i = |y_i - shift_y|^2`` are the per-sample squared
# norms that the debiased estimator needs after centring; all sums are moved to a new shift exactly by
# ``_linear_rebase`` (centring = moving them to the mean).
_LinearState = Dict[str, Union[int, torch.Tensor, None, bool]]
_DEBIASED_SUMS = ("px", "py", "qx", "qy", "pp", "qq", "pq")


def _linear_state() -> _LinearState:
    return {"n": 0, "shift_x": None, "shift_y": None, "first_x": None, "first_y": None,
            "varies_x": False, "varies_y": False}


def _linear_update(state: _LinearState, x: torch.Tensor, y: torch.Tensor, debiased: bool) -> None:
    if state["shift_x"] is None:
        state["shift_x"], state["shift_y"] = x.mean(0), y.mean(0)
        state["first_x"], state["first_y"] = x[0].clone(), y[0].clone()
        d_x, d_y = x.shape[1], y.shape[1]
        zeros = lambda *shape: torch.zeros(*shape, dtype=torch.float64, device=x.device)  # noqa: E731
        state.update(sx=zeros(d_x), sy=zeros(d_y), sxx=zeros(d_x, d_x), syy=zeros(d_y, d_y), sxy=zeros(d_x, d_y))
        if debiased:
            state.update(px=zeros(d_x), py=zeros(d_y), qx=zeros(d_x), qy=zeros(d_y), pp=zeros(()), qq=zeros(()),
                         pq=zeros(()))
    elif x.shape[1] != state["sx"].shape[0] or y.shape[1] != state["sy"].shape[0]:
        raise ValueError(f"this batch has {x.shape[1]} and {y.shape[1]} neurons, earlier batches had "
                         f"{state['sx'].shape[0]} and {state['sy'].shape[0]}")
    x, y = x.to(state["sx"].device), y.to(state["sx"].device)
    state["varies_x"] = state["varies_x"] or not bool((x == state["first_x"]).all())
    state["varies_y"] = state["varies_y"] or not bool((y == state["first_y"]).all())
    x, y = x - state["shift_x"], y - state["shift_y"]
    state["n"] += x.shape[0]
    state["sx"] += x.sum(0)
    state["sy"] += y.sum(0)
    state["sxx"] += x.T @ x
    state["syy"] += y.T @ y
    state["sxy"] += x.T @ y
    if debiased:
        p, q = (x * x).sum(1), (y * y).sum(1)
        state["px"] += p @ x
        state["py"] += p @ y
        state["qx"] += q @ x
        state["qy"] += q @ y
        state["pp"] += p @ p
        state["qq"] += q @ q
        state["pq"] += p @ q


def _linear_rebase(state: _LinearState, delta_x: torch.Tensor, delta_y: torch.Tensor) -> Dict[str, torch.Tensor]:
    """The sums of ``state`` around ``shift + delta`` instead of ``shift`` (exact polynomial identities:
    with ``x' = x - delta``, ``p' = p - 2 x.delta + |delta|^2``, expanded)."""
    n, sx, sy, sxx, syy, sxy = (state[k] for k in ("n", "sx", "sy", "sxx", "syy", "sxy"))
    outer = torch.outer
    out = {"sx": sx - n * delta_x, "sy": sy - n * delta_y,
           "sxx": sxx - outer(sx, delta_x) - outer(delta_x, sx) + n * outer(delta_x, delta_x),
           "syy": syy - outer(sy, delta_y) - outer(delta_y, sy) + n * outer(delta_y, delta_y),
           "sxy": sxy - outer(sx, delta_y) - outer(delta_x, sy) + n * outer(delta_x, delta_y)}
    if "pp" in state:
        m_x, m_y = delta_x @ delta_x, delta_y @ delta_y
        sum_p, sum_q = torch.trace(sxx), torch.trace(syy)
        sx_dx, sy_dy = sx @ delta_x, sy @ delta_y
        sxx_dx, syy_dy = sxx @ delta_x, syy @ delta_y
        px, py, qx, qy = state["px"], state["py"], state["qx"], state["qy"]
        out["px"] = px - delta_x * sum_p - 2 * sxx_dx + 2 * delta_x * sx_dx + m_x * sx - n * m_x * delta_x
        out["py"] = py - delta_y * sum_p - 2 * (sxy.T @ delta_x) + 2 * delta_y * sx_dx + m_x * sy - n * m_x * delta_y
        out["qx"] = qx - delta_x * sum_q - 2 * (sxy @ delta_y) + 2 * delta_x * sy_dy + m_y * sx - n * m_y * delta_x
        out["qy"] = qy - delta_y * sum_q - 2 * syy_dy + 2 * delta_y * sy_dy + m_y * sy - n * m_y * delta_y
        out["pp"] = (state["pp"] - 4 * (delta_x @ px) + 4 * (delta_x @ sxx_dx) + 2 * m_x * sum_p
                     - 4 * m_x * sx_dx + n * m_x**2)
        out["qq"] = (state["qq"] - 4 * (delta_y @ qy) + 4 * (delta_y @ syy_dy) + 2 * m_y * sum_q
                     - 4 * m_y * sy_dy + n * m_y**2)
        out["pq"] = (state["pq"] - 2 * (delta_y @ py) - 2 * (delta_x @ qx) + 4 * (delta_x @ sxy @ delta_y)
                     + m_y * sum_p + m_x * sum_q - 2 * m_y * sx_dx - 2 * m_x * sy_dy + n * m_x * m_y)
    return out


def _debiased_dot(cross: torch.Tensor, rows: torch.Tensor, trace_x: torch.Tensor, trace_y: torch.Tensor,
                  n: int) -> Tuple[float, float]:
    r""":math:`N(N-3)\,\text{HSIC}_1` in feature space (Kornblith et al.'s demo): the centred
    :math:`\lVert X^\top Y\rVert_F^2` corrected with the centred per-sample squared norms; and the size of
    its terms (to tell a rounding-level value from a real one)."""
    terms = (cross, n / (n - 2) * rows, trace_x * trace_y / ((n - 1) * (n - 2)))
    return float(terms[0] - terms[1] + terms[2]), float(sum(abs(t) for t in terms))


def _linear_compute(state: _LinearState, debiased: bool) -> float:
    n = state["n"]
    if n < (4 if debiased else 2):
        raise ValueError(f"{n} sample(s) seen: linear CKA needs at least 2 (debiased: 4)")
    for side in ("x", "y"):
        if not state[f"varies_{side}"]:
            raise _constant_layer_error(side)
    c = _linear_rebase(state, state["sx"] / n, state["sy"] / n)
    cross, self_x, self_y = (c["sxy"] ** 2).sum(), (c["sxx"] ** 2).sum(), (c["syy"] ** 2).sum()
    if not debiased:
        return _normalise(float(cross), float(self_x), float(self_y), False)
    trace_x, trace_y = torch.trace(c["sxx"]), torch.trace(c["syy"])
    cross, _ = _debiased_dot(cross, c["pq"], trace_x, trace_y, n)
    self_x, scale_x = _debiased_dot(self_x, c["pp"], trace_x, trace_x, n)
    self_y, scale_y = _debiased_dot(self_y, c["qq"], trace_y, trace_y, n)
    return _normalise(cross, self_x, self_y, True, scales=(scale_x, scale_y))


def linear_cka(x: Responses, y: Responses, debiased: bool = False) -> float:
    r"""Linear CKA (Kornblith et al., 2019), computed in feature space.

    With the columns of :math:`X` (``[N, d_x]``) and :math:`Y` (``[N, d_y]``) centred,

    .. math::
        \text{CKA}(X, Y) = \frac{\lVert Y^\top X \rVert_F^2}{\lVert X^\top X \rVert_F\,
        \lVert Y^\top Y \rVert_F},

    equal to :func:`cka` of the linear Gram matrices but costing :math:`O(N d^2)` instead of
    :math:`O(N^2 d)`. ``debiased=True`` replaces the three HSICs by the unbiased estimator, written in
    feature space with the centred per-sample squared norms. Same code as :class:`LinearCKA` (one batch).

    Args:
        x: ``[N, d_x]`` responses.
        y: ``[N, d_y]`` responses to the same inputs.
        debiased: unbiased HSIC (needs :math:`N \ge 4`; the value may be slightly negative).

    Returns:
        float: 1 for ``y`` an orthogonal map, isotropic scaling and/or translation of ``x``.

    Raises:
        ValueError: bad input, a constant ``x`` or ``y``, or (debiased) a self-HSIC :math:`\le 0`.

    Example:
        >>> import torch
        >>> x = torch.randn(300, 4, generator=torch.Generator().manual_seed(0))
        >>> rotation, _ = torch.linalg.qr(torch.randn(4, 4))
        >>> round(linear_cka(x, 3 * x @ rotation + 2), 6)
        1.0
    """
    x, y = _pair(x, y)
    _check_not_constant(x, "x")
    _check_not_constant(y, "y")
    if debiased and x.shape[0] < 4:
        raise ValueError(f"{x.shape[0]} samples: debiased CKA needs at least 4")
    state = _linear_state()
    _linear_update(state, x, y, debiased)
    return _linear_compute(state, debiased)


def rbf_cka(x: Responses, y: Responses, bandwidth: float = 0.5, debiased: bool = False) -> float:
    r"""RBF-kernel CKA (Kornblith et al., 2019): :func:`cka` of :func:`gram_rbf` of both layers.

    Args:
        x: ``[N, d_x]`` responses.
        y: ``[N, d_y]`` responses to the same inputs.
        bandwidth: :math:`\sigma` as a fraction of each layer's median pairwise distance.
        debiased: unbiased HSIC (needs :math:`N \ge 4`).

    Returns:
        float: the similarity; :math:`O(N^2)` memory.

    Raises:
        ValueError: bad input, constant layers, ``bandwidth <= 0``.

    Example:
        >>> import torch
        >>> x = torch.randn(100, 4, generator=torch.Generator().manual_seed(0))
        >>> round(rbf_cka(x, 5 * x.flip(1) - 1), 6)
        1.0
    """
    x, y = _pair(x, y)
    bandwidth = _check_positive(bandwidth, "bandwidth")
    _check_not_constant(x, "x")
    _check_not_constant(y, "y")
    if debiased and x.shape[0] < 4:
        raise ValueError(f"{x.shape[0]} samples: debiased CKA needs at least 4")
    return cka(_gram_rbf(x, bandwidth, "x"), _gram_rbf(y, bandwidth, "y"), debiased)


# ------------------------------------------------------------------------------------------ streaming
class LinearCKA:
    r"""Streaming linear CKA: ``update(x, y)`` per batch, ``compute()`` equals :func:`linear_cka` of all.

    The state is exact sufficient statistics in float64, summed over batches: the sample count, the column
    sums, :math:`X^\top X`, :math:`Y^\top Y`, :math:`X^\top Y` and, for ``debiased=True``, the sums built
    from the per-sample squared norms :math:`p_i = \lVert x_i \rVert^2`, :math:`q_i = \lVert y_i \rVert^2`
    (:math:`\sum p_i^2, \sum q_i^2, \sum p_i q_i, \sum p_i x_i, \sum p_i y_i, \sum q_i x_i,
    \sum q_i y_i`) that the debiased estimator needs after centring. All of them are taken around a shift
    (the first batch's column means) so that responses far from zero lose no precision; the shift is
    removed exactly in :meth:`compute`. Memory is :math:`O((d_x + d_y)^2)` whatever the number of samples,
    and batches may have any size, 1 included.

    Because the state is sums, it reduces by summing: :meth:`merge` adds another instance's sums (moved
    onto this instance's shift), e.g. to combine processes.

    Args:
        debiased: the debiased estimator (as :func:`linear_cka`).

    Example:
        >>> import torch
        >>> x = torch.randn(100, 4, generator=torch.Generator().manual_seed(0))
        >>> y = x @ torch.randn(4, 3) + 0.1 * torch.randn(100, 3)
        >>> stream = LinearCKA()
        >>> for start in range(0, 100, 30):
        ...     stream.update(x[start:start + 30], y[start:start + 30])
        >>> abs(stream.compute() - linear_cka(x, y)) < 1e-12
        True
    """

    def __init__(self, debiased: bool = False):
        self.debiased = bool(debiased)
        self.reset()

    def reset(self) -> None:
        """Forget every batch seen."""
        self._state = _linear_state()

    def update(self, x: Responses, y: Responses) -> None:
        """Add a batch: ``x`` ``[B, d_x]`` and ``y`` ``[B, d_y]``, the responses to the same ``B`` inputs."""
        x, y = _pair(x, y, min_samples=1)
        _linear_update(self._state, x, y, self.debiased)

    def merge(self, other: "LinearCKA") -> None:
        """Add the batches that ``other`` has seen (same ``debiased``, same widths), as if updated here."""
        if not isinstance(other, LinearCKA) or other.debiased != self.debiased:
            raise ValueError("merge needs another LinearCKA with the same debiased setting")
        theirs = other._state
        if theirs["n"] == 0:
            return
        if self._state["n"] == 0:
            self._state = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in theirs.items()}
            return
        ours = self._state
        if theirs["sx"].shape != ours["sx"].shape or theirs["sy"].shape != ours["sy"].shape:
            raise ValueError("merge needs states of layers with the same numbers of neurons")
        moved = _linear_rebase(theirs, ours["shift_x"] - theirs["shift_x"].to(ours["sx"].device),
                               ours["shift_y"] - theirs["shift_y"].to(ours["sx"].device))
        for key, value in moved.items():
            ours[key] = ours[key] + value.to(ours[key].device)
        ours["n"] += theirs["n"]
        for side in ("x", "y"):
            ours[f"varies_{side}"] = (ours[f"varies_{side}"] or theirs[f"varies_{side}"]
                                      or not bool((theirs[f"first_{side}"] == ours[f"first_{side}"]).all()))

    def compute(self) -> float:
        """Linear CKA of every sample since the last :meth:`reset`.

        Raises:
            RuntimeError: no batch seen.
            ValueError: as :func:`linear_cka` (too few samples, a constant layer, a self-HSIC :math:`\\le 0`).
        """
        if self._state["n"] == 0:
            raise RuntimeError("LinearCKA.compute() called before any update()")
        return _linear_compute(self._state, self.debiased)


class MinibatchCKA:
    r"""Minibatch CKA (Nguyen, Raghu & Kornblith, 2021): unbiased HSICs summed over minibatches.

    Per minibatch :math:`b` with Gram matrices :math:`K_b`, :math:`L_b` (linear or RBF), the unbiased
    :math:`\text{HSIC}_1` of :math:`(K_b, L_b)`, :math:`(K_b, K_b)` and :math:`(L_b, L_b)` is added up;

    .. math::
        \text{CKA}_\text{minibatch} = \frac{\sum_b \text{HSIC}_1(K_b, L_b)}
        {\sqrt{\sum_b \text{HSIC}_1(K_b, K_b) \sum_b \text{HSIC}_1(L_b, L_b)}},

    a ratio of sums, not a mean of per-batch CKAs. It **estimates** the debiased CKA with memory
    :math:`O(B^2)` for batches of :math:`B`; with one batch it equals :func:`cka` with ``debiased=True``,
    with several it is not the full-data value (for that, use :class:`LinearCKA`). Every batch needs more
    than 3 samples, and the two layers' responses must come from the same inputs in the same order. The
    state is three sums and a batch count, so it reduces by summing (:meth:`merge`).

    Args:
        kernel: ``"linear"`` or ``"rbf"`` (bandwidth from each batch's median distance).
        bandwidth: for ``"rbf"``, :math:`\sigma` as a fraction of the median pairwise distance.

    Example:
        >>> import torch
        >>> x = torch.randn(64, 5, generator=torch.Generator().manual_seed(0))
        >>> stream = MinibatchCKA()
        >>> stream.update(x, 2 * x)
        >>> stream.update(x.flip(0), 2 * x.flip(0))
        >>> round(stream.compute(), 6)
        1.0
    """

    KERNELS = ("linear", "rbf")

    def __init__(self, kernel: str = "linear", bandwidth: float = 0.5):
        if kernel not in self.KERNELS:
            raise ValueError(f"kernel must be one of {self.KERNELS}, got {kernel!r}")
        self.kernel = kernel
        self.bandwidth = _check_positive(bandwidth, "bandwidth")
        self.reset()

    def reset(self) -> None:
        """Forget every batch seen."""
        self.hsic_xy = 0.0
        self.hsic_xx = 0.0
        self.hsic_yy = 0.0
        self.batches = 0

    def _gram(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return x @ x.T if self.kernel == "linear" else _gram_rbf(x, self.bandwidth, name)

    def update(self, x: Responses, y: Responses) -> None:
        """Add a minibatch: ``x`` ``[B, d_x]`` and ``y`` ``[B, d_y]``, the responses to the same ``B > 3`` inputs."""
        x, y = _pair(x, y, min_samples=1)
        n = x.shape[0]
        if n <= 3:
            raise ValueError(f"a batch of {n} sample(s): minibatch CKA needs more than 3 per batch (the unbiased "
                             "HSIC divides by n(n - 3)); use larger batches, and drop_last=True in the "
                             "DataLoader so that the last batch is not tiny")
        gram_x, gram_y = _center_gram(self._gram(x, "x"), True), _center_gram(self._gram(y, "y"), True)
        scale = _hsic_scale(n, True)
        self.hsic_xy += float((gram_x * gram_y).sum()) / scale
        self.hsic_xx += float((gram_x * gram_x).sum()) / scale
        self.hsic_yy += float((gram_y * gram_y).sum()) / scale
        self.batches += 1

    def merge(self, other: "MinibatchCKA") -> None:
        """Add the sums of ``other`` (same kernel and bandwidth)."""
        if not isinstance(other, MinibatchCKA) or (other.kernel, other.bandwidth) != (self.kernel, self.bandwidth):
            raise ValueError("merge needs another MinibatchCKA with the same kernel and bandwidth")
        self.hsic_xy += other.hsic_xy
        self.hsic_xx += other.hsic_xx
        self.hsic_yy += other.hsic_yy
        self.batches += other.batches

    def compute(self) -> float:
        """The minibatch CKA of every batch since the last :meth:`reset`.

        Raises:
            RuntimeError: no batch seen.
            ValueError: a summed self-HSIC :math:`\\le 0` (a constant layer, or too few samples).
        """
        if self.batches == 0:
            raise RuntimeError("MinibatchCKA.compute() called before any update()")
        return _normalise(self.hsic_xy, self.hsic_xx, self.hsic_yy, True)


# ----------------------------------------------------------------------------------- layer x layer
def _debiased_linear_cka(x: Responses, y: Responses) -> float:
    """Debiased linear CKA: :func:`linear_cka` with ``debiased=True``."""
    return linear_cka(x, y, debiased=True)


#: Measures by name for :func:`similarity_matrix`: each takes ``(x, y, **options)`` and returns a float.
MEASURES: Dict[str, Callable[..., float]] = {
    "cca": cca_similarity,
    "svcca": svcca_similarity,
    "pwcca": pwcca_similarity,
    "linear_cka": linear_cka,
    "debiased_cka": _debiased_linear_cka,
    "rbf_cka": rbf_cka,
}


def _measure(measure: str) -> Callable[..., float]:
    if measure in MEASURES:
        return MEASURES[measure]
    close = difflib.get_close_matches(str(measure), list(MEASURES), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"unknown measure {measure!r}{hint}; choose one of {sorted(MEASURES)}")


def _layers(responses, argument: str) -> List[torch.Tensor]:
    if isinstance(responses, (torch.Tensor, np.ndarray)):
        raise TypeError(f"{argument} must be a mapping name -> [N, D] tensor or a sequence of tensors, got one "
                        f"tensor: pass [{argument}] to compare a single layer")
    if isinstance(responses, Mapping):
        named = [(str(name), r) for name, r in responses.items()]
    elif isinstance(responses, Sequence):
        named = [(f"{argument}[{i}]", r) for i, r in enumerate(responses)]
    else:
        raise TypeError(f"{argument} must be a mapping name -> [N, D] tensor or a sequence of tensors, got "
                        f"{type(responses).__name__}")
    if not named:
        raise ValueError(f"{argument} holds no layers")
    return [_matrix(r, name) for name, r in named]


def similarity_matrix(responses_a, responses_b=None, measure: str = "linear_cka", **options) -> torch.Tensor:
    r"""Layer-by-layer similarity: the measure for every pair of layers of two recordings.

    Args:
        responses_a: ``{layer name: [N, D] tensor}`` (e.g. from :func:`neuronlab.probe.collect_responses`)
            or a sequence of ``[N, D]`` tensors, all over the same :math:`N` inputs.
        responses_b: the same for the other network (same inputs, same order), or ``None`` to compare
            ``responses_a`` with itself: the result is then symmetric and each pair is computed once (for
            PWCCA, whose value depends on the order when two layers are equally wide, as
            ``pwcca(a[i], a[j])`` with :math:`i \le j`).
        measure: a name of :data:`MEASURES`: ``"cca"``, ``"svcca"``, ``"pwcca"``, ``"linear_cka"``,
            ``"debiased_cka"`` or ``"rbf_cka"``.
        **options: passed to the measure, e.g. ``keep_variance=0.99`` or ``bandwidth=0.5``.

    Returns:
        torch.Tensor: ``[L_a, L_b]`` float64, entry :math:`(i, j)` the similarity of layer :math:`i` of
        ``responses_a`` and layer :math:`j` of ``responses_b`` (in the mappings' order).

    Raises:
        ValueError: an unknown measure (with the known ones), no layers, a response that is not
            ``[N, D]``, different sample counts; then any error of the measure.

    Example:
        >>> import torch
        >>> x = torch.randn(200, 6, generator=torch.Generator().manual_seed(0))
        >>> layers = {"a": x, "b": x[:, :3], "c": x.tanh()}
        >>> similarity_matrix(layers).diagonal().round(decimals=6)
        tensor([1., 1., 1.], dtype=torch.float64)
    """
    function = _measure(measure)
    layers_a = _layers(responses_a, "responses_a")
    layers_b = layers_a if responses_b is None else _layers(responses_b, "responses_b")
    counts = {r.shape[0] for r in layers_a + layers_b}
    if len(counts) > 1:
        raise ValueError(f"the layers have different numbers of samples {sorted(counts)}: every response must "
                         "come from the same inputs")
    result = torch.empty(len(layers_a), len(layers_b), dtype=torch.float64)
    for i, x in enumerate(layers_a):
        for j, y in enumerate(layers_b):
            if responses_b is None and j < i:
                result[i, j] = result[j, i]
            else:
                result[i, j] = function(x, y, **options)
    return result
