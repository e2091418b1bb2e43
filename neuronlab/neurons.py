r"""Identifying and controlling neurons: rank them, attribute to them, intervene on them.

Three verbs, each on neurons of one layer:

* **rank** -- order a layer's neurons by importance, as a :class:`NeuronRanking` (scores, order, ties):

  - :class:`MaxCorr`, :class:`MinCorr`, :class:`LinReg`: neurons that *other* models trained on the same
    task also have (Bau, Belinkov, Sajjad, Durrani, Dalvi & Glass, ICLR 2019,
    "Identifying and controlling important neurons in neural machine translation");
  - :class:`ProbeRanking`: the weights of an elastic-net linear probe (Dalvi, Durrani, Sajjad, Belinkov,
    Bau & Glass, AAAI 2019, "What is one grain of sand in the desert?", the NeuroX toolkit);
  - :class:`ClassSelectivity`: how much a neuron prefers one class (Morcos, Barrett, Rabinowitz &
    Botvinick, ICLR 2018, "On the importance of single directions for generalization");
  - :class:`Conductance`: the mean conductance of a neuron for a target logit (Dhamdhere, Sundararajan &
    Yan, ICLR 2019, "How important is a neuron?"), computed by Captum's ``LayerConductance``;

* **attribute** -- :func:`layer_conductance` (with its completeness gap) and :meth:`Conductance.attribute`;
* **intervene** -- :func:`ablate` and :func:`control` edit a layer's output through a forward hook inside
  a ``with`` block; :func:`ablation_curve` measures accuracy as more and more neurons are ablated;
  :class:`UnrolledLSTM` / :class:`UnrolledGRU` run a trained recurrent layer step by step so that a
  :class:`StateIntervention` edits the state *inside* the recurrence.

Every ranking also has a functional form on response tensors (:func:`max_correlation_scores`,
:func:`min_correlation_scores`, :func:`linreg_errors`, :func:`correlation_with`,
:func:`class_selectivity`, :func:`train_linear_probe`, :func:`top_neurons_by_mass`,
:func:`probe_neuron_ordering`).

**The input convention.** Responses are ``[samples, neurons]`` tensors, samples in the same order for
every model. The classes record them with :func:`neuronlab.probe.collect_responses`; for a convolution
pass ``reduce="channel_mean"`` (a channel is a neuron, its response to a sample is its mean over
positions). Hooks read the neuron dimension of a layer's raw output by its shape: the last dimension of
``[N, D]`` and ``[N, T, D]`` (sequences) outputs, dimension 1 (channels) of ``[N, C, H, W]`` outputs;
pass ``neuron_dim=`` where a layer differs (a ``Conv1d``'s ``[N, C, L]``).

**How we differ from the official code.**

* Bau et al.'s scripts (``dabbler0/nmt-shared-info-2``) read stored activation matrices of 500-neuron
  NMT encoders; we record responses from live models. MaxCorr and MinCorr are theirs (population
  standard deviations, :math:`|\rho|`, max or min over the other models). Their LinReg inverts
  :math:`X^\top X`, which fails with dead units or fewer samples than neurons; we solve the least-squares
  problem with ``torch.linalg.lstsq`` (rank-revealing QR) and add an intercept. A constant (dead) neuron
  gets :math:`\rho = 0` and LinReg error 1 (the error of the intercept alone), not NaN, so it ranks last.
* NeuroX trains the probe on the activation matrix it is given, from ``nn.Linear``'s random start, in
  minibatches of 32; we standardise each neuron first (so weight magnitudes compare neurons measured on
  different scales), start from zero weights (so no neuron keeps a random leftover weight) and train
  full-batch by default. NeuroX orders the neurons that enter in one search step arbitrarily (a set); we
  order them by total :math:`|w|`, then by index. NeuroX ablates the *stored activation matrix* and re-evaluates the
  probe, which measures the probe; we intervene in the *live model* and measure the network.
* Conductance is Captum's (the efficient formulation of Shrikumar, Su & Kundaje 2018, as Captum's
  maintainers explain in captum#773); we pass ``method=`` explicitly (Captum's defaults differ between
  ``NeuronConductance`` and ``LayerConductance``) and return the completeness gap. Captum is imported
  only when conductance is computed (``captum.attr`` imports matplotlib).
* Morcos et al.'s replication ablates a ReLU unit by zeroing its incoming weights and bias; we clamp the
  unit's output in a forward hook, so the model's parameters are never changed.
* A forward hook on ``nn.LSTM`` edits only the sequence it returns (the read-out), never the state that
  the next step reads; :class:`UnrolledLSTM` re-runs the trained layer's equations, with the *same*
  parameter objects, and edits the state inside the loop.
"""

from __future__ import annotations

import contextlib
import numbers
from dataclasses import dataclass
from typing import Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .classwise import check_labels
from .probe import collect_responses, resolve_layers

__all__ = [
    "NeuronRanking",
    "ranking_from_scores",
    "max_correlation_scores",
    "min_correlation_scores",
    "linreg_errors",
    "correlation_with",
    "class_selectivity",
    "LinearProbe",
    "train_linear_probe",
    "top_neurons_by_mass",
    "probe_neuron_ordering",
    "MaxCorr",
    "MinCorr",
    "LinReg",
    "ProbeRanking",
    "ClassSelectivity",
    "Conductance",
    "layer_conductance",
    "ablate",
    "control",
    "neuron_means",
    "ablation_curve",
    "random_orders",
    "LSTMTrace",
    "GRUTrace",
    "StateIntervention",
    "UnrolledLSTM",
    "UnrolledGRU",
]

#: Two scores closer than this, relative to the larger magnitude, count as a tie.
TIE_TOLERANCE = 1e-12

Neurons = Union[Sequence[int], torch.Tensor, np.ndarray]


# ------------------------------------------------------------------------------------------- rankings
@dataclass(frozen=True)
class NeuronRanking:
    """The neurons of one layer ordered by importance.

    Attributes:
        method: the ranking's name (``"maxcorr"``, ``"linreg"``, ``"probe"``, ...).
        scores: ``[D]`` float64, one score per neuron, in neuron-index order.
        order: ``[D]`` int64, the neuron indices, most important first.
        higher_is_better: whether a higher score means more important (LinReg errors: ``False``).
        ties: the number of neurons whose score equals another neuron's score (exactly or within
            ``1e-12`` relative). Tied neurons are ordered by index, so the order is deterministic; a
            large count says the order among them carries no information.

    Example:
        >>> import torch
        >>> ranking = ranking_from_scores(torch.tensor([0.1, 0.9, 0.5]))
        >>> ranking.order.tolist(), ranking.top(2).tolist()
        ([1, 2, 0], [1, 2])
        >>> ranking.bottom(1).tolist(), ranking.rank_of().tolist()
        ([0], [2, 0, 1])
    """

    method: str
    scores: torch.Tensor
    order: torch.Tensor
    higher_is_better: bool
    ties: int

    def __post_init__(self):
        if self.scores.dim() != 1 or self.order.shape != self.scores.shape:
            raise ValueError(f"scores and order must be 1-D tensors of one length, got shapes "
                             f"{tuple(self.scores.shape)} and {tuple(self.order.shape)}")

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def _check_k(self, k: int) -> int:
        if not isinstance(k, numbers.Integral) or not 0 <= int(k) <= len(self):
            raise ValueError(f"k must be an integer in 0..{len(self)} (the number of neurons), got {k!r}")
        return int(k)

    def top(self, k: int) -> torch.Tensor:
        """The ``k`` most important neurons, most important first."""
        return self.order[: self._check_k(k)]

    def bottom(self, k: int) -> torch.Tensor:
        """The ``k`` least important neurons, least important first."""
        return self.order.flip(0)[: self._check_k(k)]

    def rank_of(self) -> torch.Tensor:
        """``[D]`` each neuron's position in :attr:`order` (0 = most important)."""
        positions = torch.empty_like(self.order)
        positions[self.order] = torch.arange(len(self), dtype=self.order.dtype)
        return positions


def _close_neighbours(sorted_scores: torch.Tensor) -> torch.Tensor:
    """``[D - 1]`` whether each sorted score equals the next one, exactly or within the relative tolerance."""
    a, b = sorted_scores[:-1], sorted_scores[1:]
    return (a == b) | ((a - b).abs() <= TIE_TOLERANCE * torch.maximum(a.abs(), b.abs()))


def ranking_from_scores(scores: Union[torch.Tensor, Sequence[float]], *, higher_is_better: bool = True,
                        method: str = "") -> NeuronRanking:
    r"""Rank neurons by a score, ties broken by neuron index.

    Neurons whose scores are equal, exactly or within ``1e-12`` relative, form a tie; they are counted
    in :attr:`NeuronRanking.ties` and ordered by index among themselves.

    Args:
        scores: ``[D]`` one score per neuron (a tensor or a sequence of numbers).
        higher_is_better: a higher score means more important (``False`` for errors).
        method: the name stored in the ranking.

    Returns:
        A :class:`NeuronRanking` with float64 scores.

    Raises:
        ValueError: not a non-empty 1-D sequence of numbers, or a NaN score.

    Example:
        >>> ranking = ranking_from_scores([1.0, 2.0, 2.0, 3.0])
        >>> ranking.order.tolist(), ranking.ties
        ([3, 1, 2, 0], 2)
        >>> ranking_from_scores([0.3, 0.1], higher_is_better=False).order.tolist()
        [1, 0]
    """
    scores = _as_float64(scores)
    if scores.dim() != 1 or scores.numel() == 0:
        raise ValueError(f"scores must be a non-empty 1-D sequence (one score per neuron), got shape "
                         f"{tuple(scores.shape)}")
    if torch.isnan(scores).any():
        bad = torch.nonzero(torch.isnan(scores)).flatten()[:5].tolist()
        raise ValueError(f"scores of neurons {bad} are NaN: a ranking needs a number for every neuron; check "
                         "the responses (constant neurons, NaN or inf)")
    key = scores if higher_is_better else -scores
    order = torch.sort(key, descending=True, stable=True).indices
    close = _close_neighbours(key[order])
    tied = torch.zeros(len(scores), dtype=torch.bool)
    tied[:-1] |= close
    tied[1:] |= close
    # Near-equal neighbours form one group, ordered by index inside it (stable sorting only orders exact ties).
    group = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum((~close).long(), 0)])
    order = order[torch.argsort(group * len(scores) + order)]
    return NeuronRanking(method=method, scores=scores, order=order, higher_is_better=higher_is_better,
                         ties=int(tied.sum()))


# -------------------------------------------------------------------------------- response statistics
def _as_float64(values) -> torch.Tensor:
    """A float64 CPU tensor; Python numbers go straight to float64 (``torch.as_tensor`` would round to float32)."""
    if isinstance(values, torch.Tensor):
        return values.detach().to("cpu", torch.float64)
    return torch.as_tensor(np.asarray(values, dtype=np.float64))


def _as_responses(responses: torch.Tensor, name: str = "responses", min_samples: int = 2) -> torch.Tensor:
    if not isinstance(responses, torch.Tensor):
        raise TypeError(f"{name} must be a [samples, neurons] tensor, got {type(responses).__name__}")
    if responses.dim() != 2 or responses.shape[1] == 0:
        hint = (" (reduce a convolution's output with reduce='channel_mean'; reshape a sequence's [N, T, D] "
                "output to [N * T, D])" if responses.dim() > 2 else "")
        raise ValueError(f"{name} must be a [samples, neurons] tensor with at least one neuron, got shape "
                         f"{tuple(responses.shape)}{hint}")
    if responses.shape[0] < min_samples:
        raise ValueError(f"{name} has {responses.shape[0]} samples; at least {min_samples} are needed")
    responses = responses.detach().to("cpu", torch.float64)
    if not torch.isfinite(responses).all():
        raise ValueError(f"{name} contain NaN or inf: check the model and the inputs")
    return responses


def _as_response_list(responses: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    if isinstance(responses, torch.Tensor) or not isinstance(responses, Sequence):
        raise TypeError("responses must be a list of [samples, neurons] tensors, one per model")
    if len(responses) < 2:
        raise ValueError(f"cross-model rankings compare models: pass the responses of at least 2 models, got "
                         f"{len(responses)}")
    checked = [_as_responses(r, f"responses[{m}]") for m, r in enumerate(responses)]
    counts = {r.shape[0] for r in checked}
    if len(counts) > 1:
        raise ValueError(f"every model's responses must cover the same samples in the same order, got sample "
                         f"counts {[r.shape[0] for r in checked]}")
    return checked


def _zscore(x: torch.Tensor) -> torch.Tensor:
    """Standardise each column with the population std; a constant column becomes 0 (so its rho is 0)."""
    centred = x - x.mean(0)
    std = centred.pow(2).mean(0).sqrt()
    constant = std <= 1e-12 * x.abs().amax(0).clamp_min(1e-300)
    return torch.where(constant, torch.zeros_like(centred), centred / torch.where(constant, 1.0, std))


def _best_partner_correlations(responses: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    """For each model m: ``[M - 1, D_m]``, per other model the best |rho| of each of m's neurons."""
    z = [_zscore(r) for r in _as_response_list(responses)]
    n = z[0].shape[0]
    best: List[List[torch.Tensor]] = [[] for _ in z]
    for m in range(len(z)):
        for other in range(m + 1, len(z)):
            rho = (z[m].T @ z[other] / n).abs().clamp_max(1.0)  # [D_m, D_other]
            best[m].append(rho.amax(1))
            best[other].append(rho.amax(0))
    return [torch.stack(b) for b in best]


def max_correlation_scores(responses: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    r"""MaxCorr scores (Bau et al. 2019): a neuron's best correlation with a neuron of any other model.

    .. math::
        \operatorname{MaxCorr}(x^m_j) = \max_{m' \neq m}\ \max_{j'}\ \bigl|\rho(x^m_j, x^{m'}_{j'})\bigr|

    with :math:`\rho` the Pearson correlation over samples (population standard deviations). A constant
    neuron has :math:`\rho = 0` with everything.

    Args:
        responses: ``[N, D_m]`` per model, the same ``N`` samples in the same order.

    Returns:
        A list of ``[D_m]`` float64 tensors in ``[0, 1]``, one per model (higher is more important).

    Raises:
        ValueError: fewer than 2 models or 2 samples, different sample counts, a tensor that is not
            ``[N, D]``, NaN or inf.

    Example:
        >>> import torch
        >>> a = torch.tensor([[1., 0.], [2., 1.], [3., 0.], [5., 1.]])
        >>> b = torch.stack([-3 * a[:, 1], torch.tensor([1., 1., 0., 0.])], 1)
        >>> [s.round(decimals=3).tolist() for s in max_correlation_scores([a, b])]
        [[0.845, 1.0], [1.0, 0.845]]
    """
    return [best.amax(0) for best in _best_partner_correlations(responses)]


def min_correlation_scores(responses: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    r"""MinCorr scores (Bau et al. 2019): a neuron's best correlation in its *least* similar other model.

    .. math::
        \operatorname{MinCorr}(x^m_j) = \min_{m' \neq m}\ \max_{j'}\ \bigl|\rho(x^m_j, x^{m'}_{j'})\bigr|

    A high score needs a strong partner in *every* other model. With two models it equals MaxCorr.

    Args:
        responses: ``[N, D_m]`` per model, the same samples in the same order.

    Returns:
        A list of ``[D_m]`` float64 tensors in ``[0, 1]``, one per model.

    Raises:
        ValueError: as :func:`max_correlation_scores`.

    Example:
        >>> import torch
        >>> a = torch.tensor([[1., 0.], [2., 1.], [3., 0.], [5., 1.]])
        >>> c = torch.tensor([[0.], [1.], [0.], [1.]])     # knows only a's neuron 1
        >>> b = torch.tensor([[1.], [2.], [3.], [5.]])     # knows only a's neuron 0
        >>> min_correlation_scores([a, b, c])[0].round(decimals=3).tolist()
        [0.507, 0.507]
    """
    return [best.amin(0) for best in _best_partner_correlations(responses)]


def linreg_errors(responses: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    r"""LinReg errors (Bau et al. 2019): how badly the other models' neurons, linearly, predict a neuron.

    Every neuron is z-scored. For a neuron :math:`y = x^m_j` and another model :math:`m'` with z-scored
    responses :math:`X_{m'}`, ordinary least squares with an intercept gives

    .. math::
        e_{m'}(y) = \min_{w, b} \frac{1}{N} \lVert y - X_{m'} w - b \rVert^2 , \qquad
        \operatorname{LinReg}(y) = \max_{m' \neq m} e_{m'}(y) ,

    in ``[0, 1]`` (1 is the intercept alone; for z-scored data :math:`e = 1 - R^2`). Lower is more
    important. Solved by ``torch.linalg.lstsq`` (QR with column pivoting, LAPACK's ``gelsy``), not by
    inverting :math:`X^\top X`, so dead units and fewer samples than neurons are fine (with
    :math:`N \le D_{m'} + 1` the fit is exact: errors near 0).
    A constant neuron gets error 1.

    Args:
        responses: ``[N, D_m]`` per model, the same samples in the same order.

    Returns:
        A list of ``[D_m]`` float64 tensors, one per model (lower is more important).

    Raises:
        ValueError: as :func:`max_correlation_scores`.

    Example:
        >>> import torch
        >>> a = torch.tensor([[1., 0.], [2., 1.], [3., 0.], [5., 1.], [4., 4.]])
        >>> b = (a @ torch.tensor([[2.], [-1.]])) + 7     # a linear mix of a
        >>> errors = linreg_errors([a, b])
        >>> errors[1].item() < 1e-12
        True
    """
    checked = _as_response_list(responses)
    z = [_zscore(r) for r in checked]
    n = z[0].shape[0]
    ones = torch.ones(n, 1, dtype=torch.float64)
    worst: List[torch.Tensor] = []
    for m, target in enumerate(z):
        errors = []
        for other, predictors in enumerate(z):
            if other == m:
                continue
            design = torch.cat([predictors, ones], dim=1)
            coef = torch.linalg.lstsq(design, target, driver="gelsy").solution
            errors.append((target - design @ coef).pow(2).mean(0))
        error = torch.stack(errors).amax(0)
        constant = (target == 0).all(0)  # z-scored constants: an intercept "predicts" them, yet they say nothing
        worst.append(torch.where(constant, torch.ones_like(error), error))
    return worst


def correlation_with(responses: torch.Tensor, target: Union[torch.Tensor, Sequence[float]]) -> torch.Tensor:
    r"""Pearson correlation of every neuron with a per-sample quantity (a bracket depth, a label, ...).

    .. math::
        \rho_j = \frac{\operatorname{cov}(x_j, t)}{\sigma_{x_j} \sigma_t}

    Signed (use ``.abs()`` to rank by strength). A constant neuron gets 0.

    Args:
        responses: ``[N, D]``.
        target: ``[N]`` the quantity, one number per sample.

    Returns:
        ``[D]`` float64 correlations in ``[-1, 1]``.

    Raises:
        ValueError: bad shapes, fewer than 2 samples, NaN or inf, or a constant target.

    Example:
        >>> import torch
        >>> x = torch.tensor([[1., 5.], [2., 5.], [3., 5.]])
        >>> rho = correlation_with(x, torch.tensor([3., 2., 1.]))
        >>> rho.round(decimals=6).tolist()
        [-1.0, 0.0]
    """
    x = _as_responses(responses)
    t = _as_float64(target)
    if t.shape != (x.shape[0],):
        raise ValueError(f"target must have shape [{x.shape[0]}] (one number per sample), got {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError("target contains NaN or inf")
    zt = _zscore(t[:, None])
    if (zt == 0).all():
        raise ValueError("target is constant: its correlation with any neuron is undefined")
    return (_zscore(x).T @ zt / x.shape[0]).squeeze(1).clamp(-1.0, 1.0)


def class_selectivity(responses: torch.Tensor, labels, num_classes: Optional[int] = None) -> torch.Tensor:
    r"""Class selectivity index (Morcos et al. 2018) of every neuron.

    .. math::
        \operatorname{SI}_j = \frac{\mu_{\max} - \mu_{-\max}}{\mu_{\max} + \mu_{-\max}}

    with :math:`\mu_{\max}` the largest class-conditional mean response of neuron :math:`j` and
    :math:`\mu_{-\max}` the mean of the other classes' means: 0 when every class has the same mean, 1
    when the neuron responds to one class only. Defined for non-negative (post-ReLU) responses; a dead
    neuron (every mean 0) gets 0. For a convolution, average each channel over positions first
    (``reduce="channel_mean"``).

    Args:
        responses: ``[N, D]`` non-negative responses.
        labels: ``[N]`` class indices.
        num_classes: :math:`K \ge 2` (default ``labels.max() + 1``); every class needs a sample.

    Returns:
        ``[D]`` float64 indices in ``[0, 1]``.

    Raises:
        ValueError: a negative response, fewer than 2 classes, a class without samples, bad labels or
            shapes, NaN or inf.

    Example:
        >>> import torch
        >>> x = torch.tensor([[2., 1., 0.], [0., 1., 0.], [0., 1., 0.]])
        >>> class_selectivity(x, torch.tensor([0, 1, 2])).tolist()
        [1.0, 0.0, 0.0]
    """
    x = _as_responses(responses, min_samples=1)
    if (x < 0).any():
        raise ValueError(f"class selectivity is defined for non-negative responses, got a minimum of "
                         f"{x.min().item():.4g}: apply it to post-ReLU responses")
    labels, k = check_labels(labels, x.shape[0], num_classes, every_class=True)
    if k < 2:
        raise ValueError("class selectivity compares classes: it needs at least 2 classes")
    means = F.one_hot(labels, k).double().T @ x / torch.bincount(labels, minlength=k).double()[:, None]
    top = means.amax(0)
    rest = (means.sum(0) - top) / (k - 1)
    total = top + rest
    return torch.where(total > 0, (top - rest) / torch.where(total > 0, total, 1.0), torch.zeros_like(total))


# ------------------------------------------------------------------------------- the NeuroX-style probe
@dataclass(frozen=True)
class LinearProbe:
    """A linear classifier on standardised responses, from :func:`train_linear_probe`.

    Attributes:
        weight: ``[K, D]`` weights on the *standardised* responses (so magnitudes compare neurons).
        bias: ``[K]``.
        accuracy: the fraction of the training responses classified right.
        mean: ``[D]`` the per-neuron means used to standardise.
        std: ``[D]`` the per-neuron standard deviations used to standardise (1 for a constant neuron).
    """

    weight: torch.Tensor
    bias: torch.Tensor
    accuracy: float
    mean: torch.Tensor
    std: torch.Tensor

    def logits(self, responses: torch.Tensor) -> torch.Tensor:
        """``[N, K]`` class scores of raw (not standardised) responses ``[N, D]``."""
        x = _as_responses(responses, min_samples=1)
        if x.shape[1] != self.weight.shape[1]:
            raise ValueError(f"the probe reads {self.weight.shape[1]} neurons, responses have {x.shape[1]}")
        return ((x - self.mean) / self.std).to(self.weight.dtype) @ self.weight.T + self.bias

    def predict(self, responses: torch.Tensor) -> torch.Tensor:
        """``[N]`` predicted classes of raw responses ``[N, D]``."""
        return self.logits(responses).argmax(1)


def train_linear_probe(responses: torch.Tensor, labels, num_classes: Optional[int] = None, *, l1: float = 1e-3,
                       l2: float = 1e-3, epochs: int = 50, lr: float = 0.01, batch_size: Optional[int] = None,
                       seed: int = 0) -> LinearProbe:
    r"""An elastic-net logistic-regression probe on a layer's neurons (Dalvi et al. 2019, NeuroX).

    .. math::
        \mathcal L(W, b) = \frac{1}{N}\sum_i \operatorname{CE}(W \tilde x_i + b, y_i)
        + \lambda_1 \sum_{kj} |W_{kj}| + \lambda_2 \lVert W \rVert_2

    with :math:`\tilde x` the responses standardised per neuron (mean 0, standard deviation 1, stored in
    the probe) and :math:`\lVert W \rVert_2` the L2 *norm* (not its square), as in NeuroX. Standardising
    matters because the ranking reads :math:`|W|`: without it a neuron with a large range needs small
    weights and ranks low for its scale alone.

    Args:
        responses: ``[N, D]``.
        labels: ``[N]`` class indices.
        num_classes: :math:`K` (default ``labels.max() + 1``).
        l1: :math:`\lambda_1` (NeuroX's example uses ``0.001``).
        l2: :math:`\lambda_2`.
        epochs: passes over the data.
        lr: Adam's learning rate.
        batch_size: ``None`` trains full-batch (one Adam step per epoch); else minibatches shuffled with
            ``seed``.
        seed: seeds the minibatch shuffling (the weights start at 0), so a call is deterministic.

    Returns:
        A :class:`LinearProbe` (float32 weights).

    Raises:
        ValueError: bad shapes or labels, NaN or inf, negative penalties, non-positive epochs, lr or
            batch size.

    Example:
        >>> import torch
        >>> x = torch.tensor([[0., 1.], [0., 2.], [1., 1.5], [1., 1.]])
        >>> probe = train_linear_probe(x, torch.tensor([0, 0, 1, 1]))
        >>> probe.accuracy, probe.predict(x).tolist()
        (1.0, [0, 0, 1, 1])
    """
    x = _as_responses(responses, min_samples=1)
    labels, k = check_labels(labels, x.shape[0], num_classes)
    if l1 < 0 or l2 < 0:
        raise ValueError(f"the penalties l1 and l2 must be non-negative, got {l1} and {l2}")
    if epochs < 1 or lr <= 0 or (batch_size is not None and batch_size < 1):
        raise ValueError(f"epochs, lr and batch_size must be positive, got {epochs}, {lr} and {batch_size}")
    mean = x.mean(0)
    std = x.std(0, unbiased=False)
    std = torch.where(std > 0, std, torch.ones_like(std))
    z = ((x - mean) / std).float()
    generator = torch.Generator().manual_seed(seed)
    # Zero start (the problem is convex): a neuron the data never pushes keeps a weight near 0, where a random
    # start would leave it a leftover |w| that the ranking would read as importance.
    weight = torch.zeros(k, x.shape[1], requires_grad=True)
    bias = torch.zeros(k, requires_grad=True)
    optimizer = torch.optim.Adam([weight, bias], lr=lr)
    n = z.shape[0]
    with torch.enable_grad():
        for _ in range(epochs):
            batches = ([(z, labels)] if batch_size is None else
                       [(z[i], labels[i]) for i in torch.randperm(n, generator=generator).split(batch_size)])
            for xb, yb in batches:
                optimizer.zero_grad()
                loss = (F.cross_entropy(xb @ weight.T + bias, yb)
                        + l1 * weight.abs().sum() + l2 * torch.linalg.vector_norm(weight))
                loss.backward()
                optimizer.step()
    weight, bias = weight.detach(), bias.detach()
    accuracy = ((z @ weight.T + bias).argmax(1) == labels).double().mean().item()
    return LinearProbe(weight=weight, bias=bias, accuracy=accuracy, mean=mean, std=std)


def _as_weight(weight) -> torch.Tensor:
    w = _as_float64(weight)
    if w.dim() != 2 or 0 in w.shape:
        raise ValueError(f"weight must be a [classes, neurons] matrix, got shape {tuple(w.shape)}")
    if not torch.isfinite(w).all():
        raise ValueError("weight contains NaN or inf")
    return w.abs()


def _prefix_lengths(sorted_mass: torch.Tensor, fractions: torch.Tensor) -> torch.Tensor:
    """``[K, S]`` for each class and fraction, the shortest prefix of ``sorted_mass`` reaching it."""
    cumulative = torch.cumsum(sorted_mass, dim=1)
    thresholds = fractions[None, :] * cumulative[:, -1:]  # [K, S]
    below = torch.searchsorted(cumulative.contiguous(), thresholds.contiguous(), side="left")
    lengths = torch.where(thresholds > 0, below + 1, torch.zeros_like(below)).clamp_max(sorted_mass.shape[1])
    return torch.where(fractions[None, :] >= 1, sorted_mass.shape[1], lengths)


def top_neurons_by_mass(weight, fraction: float) -> Tuple[torch.Tensor, List[torch.Tensor]]:
    r"""The neurons carrying a fraction of each class's probe-weight mass (NeuroX's ``get_top_neurons``).

    For class :math:`k`, sort the neurons by :math:`|W_{kj}|` (descending, ties by index) and keep the
    shortest prefix whose cumulative :math:`|W_{kj}|` reaches ``fraction`` of the class's total
    :math:`\sum_j |W_{kj}|`; ``fraction >= 1`` keeps every neuron, ``0`` none.

    Args:
        weight: ``[K, D]`` probe weights (e.g. :attr:`LinearProbe.weight`).
        fraction: the share of each class's mass, ``>= 0``.

    Returns:
        The pair ``(overall, per_class)`` of the sorted union of the selected neurons and the list of each
        class's selection, ordered by descending :math:`|w|`.

    Raises:
        ValueError: a weight that is not a finite ``[K, D]`` matrix, or a negative fraction.

    Example:
        >>> overall, per_class = top_neurons_by_mass([[5, 1, 1], [1, 10, 1]], 0.5)
        >>> overall.tolist(), [c.tolist() for c in per_class]
        ([0, 1], [[0], [1]])
    """
    mass = _as_weight(weight)
    if not fraction >= 0:
        raise ValueError(f"fraction must be a number >= 0, got {fraction!r}")
    ranked = torch.sort(mass, dim=1, descending=True, stable=True)
    lengths = _prefix_lengths(ranked.values, torch.tensor([float(fraction)], dtype=torch.float64))[:, 0]
    per_class = [ranked.indices[c, : int(lengths[c])] for c in range(mass.shape[0])]
    return torch.unique(torch.cat(per_class)), per_class


def probe_neuron_ordering(weight, search_stride: int = 100) -> torch.Tensor:
    r"""All neurons in the order they enter :func:`top_neurons_by_mass` (NeuroX's ``get_neuron_ordering``).

    The fraction grows over :math:`0, 1/s, 2/s, \dots, 1` (:math:`s` = ``search_stride``); the neurons
    that enter at one step come in order of descending total mass :math:`\sum_k |W_{kj}|`, then by index.

    Args:
        weight: ``[K, D]`` probe weights.
        search_stride: :math:`s`, the number of steps.

    Returns:
        ``[D]`` int64, every neuron once, the most important first.

    Raises:
        ValueError: a bad weight matrix or a non-positive stride.

    Example:
        >>> probe_neuron_ordering([[10, 9, 8], [10, 2, 1]], search_stride=10).tolist()
        [0, 1, 2]
    """
    mass = _as_weight(weight)
    entry = _entry_steps(mass, search_stride)
    by_mass = torch.sort(mass.sum(0), descending=True, stable=True).indices
    return by_mass[torch.sort(entry[by_mass], stable=True).indices]


def _entry_steps(mass: torch.Tensor, search_stride: int) -> torch.Tensor:
    """``[D]`` the first step ``s`` (fraction ``s / search_stride``) at which each neuron enters the top set."""
    if not isinstance(search_stride, numbers.Integral) or search_stride < 1:
        raise ValueError(f"search_stride must be a positive integer, got {search_stride!r}")
    ranked = torch.sort(mass, dim=1, descending=True, stable=True)
    fractions = torch.arange(search_stride + 1, dtype=torch.float64) / search_stride
    lengths = _prefix_lengths(ranked.values, fractions)  # [K, S], non-decreasing along S
    positions = torch.arange(mass.shape[1]).expand_as(mass).contiguous()
    # the first step whose prefix covers a sorted position; a neuron enters at the earliest step over classes
    step_of_position = torch.searchsorted(lengths.contiguous(), positions, side="right")
    entry = torch.empty(mass.shape[1], dtype=torch.long)
    return entry.scatter_reduce(0, ranked.indices.flatten(), step_of_position.flatten(), reduce="amin",
                                include_self=False)


# ------------------------------------------------------------------------------------ ranking classes
def _layer_per_model(models: Sequence[nn.Module], layer) -> List[str]:
    if isinstance(models, nn.Module) or not isinstance(models, Sequence):
        raise TypeError("models must be a list of models")
    if len(models) < 2:
        raise ValueError(f"cross-model rankings compare models: pass at least 2 models, got {len(models)}")
    if isinstance(layer, (str, nn.Module)):
        layers = [layer] * len(models)
    else:
        layers = list(layer)
        if len(layers) != len(models):
            raise ValueError(f"pass one layer name for every model or one per model: got {len(layers)} names "
                             f"for {len(models)} models")
    return [_one_layer(model, name) for model, name in zip(models, layers)]


def _one_layer(model: nn.Module, layer) -> str:
    resolved = resolve_layers(model, layer)
    if len(resolved) != 1:
        raise ValueError(f"pass one layer, got {list(resolved)}")
    return next(iter(resolved))


def _responses_of(model: nn.Module, layer: str, inputs, reduce: Optional[str]) -> torch.Tensor:
    response = collect_responses(model, inputs, layer, reduce=reduce)[layer]
    if response.dim() != 2:
        raise ValueError(f"layer {layer!r} gives responses of shape {tuple(response.shape)}, not [samples, "
                         "neurons]: pass reduce='channel_mean' for a convolution, or record the responses "
                         "yourself (a sequence's [N, T, D] as [N * T, D]) and call the functional form")
    return response


class _CrossModelRanking:
    def __init__(self, models: Sequence[nn.Module], layer, reduce: Optional[str] = None):
        self.layers = _layer_per_model(models, layer)
        self.models = list(models)
        self.reduce = reduce

    def _rank(self, inputs, scores_of, higher_is_better: bool, method: str) -> List[NeuronRanking]:
        responses = [_responses_of(model, layer, inputs, self.reduce) for model, layer in zip(self.models, self.layers)]
        return [ranking_from_scores(s, higher_is_better=higher_is_better, method=method) for s in scores_of(responses)]


class MaxCorr(_CrossModelRanking):
    """Rank neurons by :func:`max_correlation_scores` (Bau et al. 2019): shared with *some* other model.

    Args:
        models: at least 2 models trained on the same task.
        layer: the layer's name in every model, or a list of names, one per model.
        reduce: as in :func:`neuronlab.probe.collect_responses` (``"channel_mean"`` for convolutions).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> a = nn.Sequential(nn.Linear(3, 4))
        >>> b = nn.Sequential(nn.Linear(3, 4))
        >>> with torch.no_grad():
        ...     _ = b[0].weight.copy_(-2 * a[0].weight.flip(0))
        ...     _ = b[0].bias.copy_(a[0].bias.flip(0))
        >>> rankings = MaxCorr([a, b], "0").rank(torch.randn(50, 3))
        >>> [r.scores.round(decimals=6).tolist() for r in rankings]
        [[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]]
    """

    def rank(self, inputs) -> List[NeuronRanking]:
        """Rank every model's neurons by MaxCorr, highest first.

        Args:
            inputs: a tensor of inputs, or anything :func:`neuronlab.probe.collect_responses` accepts;
                every model sees the same samples in the same order.

        Returns:
            One :class:`NeuronRanking` per model, in the order of ``models``.
        """
        return self._rank(inputs, max_correlation_scores, True, "maxcorr")


class MinCorr(_CrossModelRanking):
    """Rank neurons by :func:`min_correlation_scores` (Bau et al. 2019): shared with *every* other model.

    Args:
        models: at least 2 models trained on the same task.
        layer: the layer's name in every model, or a list of names, one per model.
        reduce: as in :func:`neuronlab.probe.collect_responses`.
    """

    def rank(self, inputs) -> List[NeuronRanking]:
        """Rank every model's neurons by MinCorr, highest first.

        Args:
            inputs: a tensor of inputs, or anything :func:`neuronlab.probe.collect_responses` accepts;
                every model sees the same samples in the same order.

        Returns:
            One :class:`NeuronRanking` per model, in the order of ``models``.
        """
        return self._rank(inputs, min_correlation_scores, True, "mincorr")


class LinReg(_CrossModelRanking):
    """Rank neurons by :func:`linreg_errors` (Bau et al. 2019), smallest worst-case error first.

    Args:
        models: at least 2 models trained on the same task.
        layer: the layer's name in every model, or a list of names, one per model.
        reduce: as in :func:`neuronlab.probe.collect_responses`.
    """

    def rank(self, inputs) -> List[NeuronRanking]:
        """Rank every model's neurons by LinReg error, smallest first.

        Args:
            inputs: a tensor of inputs, or anything :func:`neuronlab.probe.collect_responses` accepts;
                every model sees the same samples in the same order.

        Returns:
            One :class:`NeuronRanking` per model, in the order of ``models``.
        """
        return self._rank(inputs, linreg_errors, False, "linreg")


class ProbeRanking:
    """Rank neurons by a NeuroX-style probe (Dalvi et al. 2019): :func:`train_linear_probe`, then
    :func:`probe_neuron_ordering`.

    Args:
        model: the network.
        layer: the layer's name (or module).
        reduce: as in :func:`neuronlab.probe.collect_responses`.
        search_stride: the steps of :func:`probe_neuron_ordering`.
        **probe_options: passed to :func:`train_linear_probe` (``l1``, ``l2``, ``epochs``, ``lr``,
            ``batch_size``, ``seed``, ``num_classes``).

    After :meth:`rank`, ``self.probe`` holds the trained :class:`LinearProbe`.
    """

    def __init__(self, model: nn.Module, layer, reduce: Optional[str] = None, *, search_stride: int = 100,
                 **probe_options):
        self.model = model
        self.layer = _one_layer(model, layer)
        self.reduce = reduce
        self.search_stride = search_stride
        self.probe_options = probe_options
        self.probe: Optional[LinearProbe] = None

    def rank(self, inputs, labels) -> NeuronRanking:
        """Train the probe on the layer's responses to ``inputs`` and rank the neurons.

        Returns:
            A :class:`NeuronRanking` whose order is NeuroX's; its scores are each neuron's entry fraction
            (the share of class mass at which it enters, lower is more important), its ties the neurons
            sharing both entry fraction and total :math:`|w|` with another.
        """
        responses = _responses_of(self.model, self.layer, inputs, self.reduce)
        self.probe = train_linear_probe(responses, labels, **self.probe_options)
        order = probe_neuron_ordering(self.probe.weight, self.search_stride)
        mass = self.probe.weight.abs().double()
        scores = _entry_steps(mass, self.search_stride).double() / self.search_stride
        _, inverse, counts = torch.unique(torch.stack([scores, mass.sum(0)], 1), dim=0, return_inverse=True,
                                          return_counts=True)
        ties = int((counts[inverse] > 1).sum())
        return NeuronRanking(method="probe", scores=scores, order=order, higher_is_better=False, ties=ties)


class ClassSelectivity:
    """Rank neurons by :func:`class_selectivity` (Morcos et al. 2018), most selective first.

    Args:
        model: the network.
        layer: the layer's name (or module): a post-ReLU layer (responses must be non-negative).
        reduce: ``"channel_mean"`` (the default) averages a convolution's channels over positions, as
            Morcos et al. do; dense outputs are left as they are.
    """

    def __init__(self, model: nn.Module, layer, reduce: Optional[str] = "channel_mean"):
        self.model = model
        self.layer = _one_layer(model, layer)
        self.reduce = reduce

    def rank(self, inputs, labels, num_classes: Optional[int] = None) -> NeuronRanking:
        """Rank the neurons by their selectivity over the responses to ``inputs`` with ``labels``."""
        responses = _responses_of(self.model, self.layer, inputs, self.reduce)
        return ranking_from_scores(class_selectivity(responses, labels, num_classes), method="class_selectivity")


# -------------------------------------------------------------------------------------------- conductance
def _check_tensor_output(model: nn.Module, layer: str, module: nn.Module, probe_input: torch.Tensor) -> None:
    """Run one sample and check that ``layer`` returns a tensor, as Captum needs (hook removed on error)."""
    found = []
    handle = module.register_forward_hook(lambda m, i, o: found.append(o))
    try:
        with torch.no_grad():
            model(probe_input)
    finally:
        handle.remove()
    if not found:
        raise ValueError(f"layer {layer!r} was not called in the forward pass: attribute to a layer the model uses")
    if not isinstance(found[0], torch.Tensor):
        raise ValueError(f"layer {layer!r} ({type(module).__name__}) returns a {type(found[0]).__name__}, not a "
                         "tensor (nn.LSTM returns (output, (h, c))), and Captum's conductance needs a tensor "
                         "(captum#815, #584): add an nn.Identity() tap module after it in the model's forward, "
                         "e.g. 'out, _ = self.lstm(x); out = self.tap(out)', and attribute to 'tap'")


def _as_target(target, n: int, num_outputs: int) -> torch.Tensor:
    if isinstance(target, numbers.Integral) and not isinstance(target, bool):
        target = torch.full((n,), int(target), dtype=torch.long)
    if not isinstance(target, torch.Tensor) or target.dtype.is_floating_point or target.dtype == torch.bool:
        raise TypeError(f"target must be an int or a LongTensor [N] of output indices, got {target!r}")
    if target.shape != (n,):
        raise ValueError(f"target must have shape [{n}] (one output index per sample), got {tuple(target.shape)}")
    target = target.long()
    if n and (target.min() < 0 or target.max() >= num_outputs):
        raise ValueError(f"target indices must lie in 0..{num_outputs - 1} (the model's outputs), got "
                         f"{int(target.min())}..{int(target.max())}")
    return target


def _as_baselines(baselines, inputs: torch.Tensor) -> torch.Tensor:
    if baselines is None:
        return torch.zeros_like(inputs)
    if isinstance(baselines, numbers.Number):
        return torch.full_like(inputs, float(baselines))
    if not isinstance(baselines, torch.Tensor):
        raise TypeError(f"baselines must be None, a number or a tensor, got {type(baselines).__name__}")
    try:
        return baselines.to(inputs).expand_as(inputs).contiguous()
    except RuntimeError:
        raise ValueError(f"baselines of shape {tuple(baselines.shape)} do not broadcast to the inputs' "
                         f"{tuple(inputs.shape)}") from None


def layer_conductance(model: nn.Module, layer, inputs: torch.Tensor, target, baselines=None, n_steps: int = 50,
                      method: str = "gausslegendre", internal_batch_size: Optional[int] = None
                      ) -> Tuple[torch.Tensor, torch.Tensor]:
    r"""Layer conductance (Dhamdhere et al. 2019) of every neuron of ``layer``, by Captum, with its gap.

    For inputs :math:`x`, baselines :math:`x'` and :math:`F` the target logit, the conductance of a
    neuron :math:`y` is the part of :math:`F(x) - F(x')` that flows through it along the straight path
    from :math:`x'` to :math:`x`:

    .. math::
        \operatorname{Cond}^y(x) = \sum_i (x_i - x'_i) \int_0^1
        \frac{\partial F}{\partial y} \frac{\partial y}{\partial x_i}\bigl(x' + \alpha (x - x')\bigr)\,
        d\alpha , \qquad \sum_{y \in \text{layer}} \operatorname{Cond}^y(x) = F(x) - F(x')

    (completeness, for a layer every path from input to output crosses). The integral is a quadrature
    of ``n_steps`` points, so the sum misses :math:`F(x) - F(x')` by a *gap*, returned per sample;
    raise ``n_steps`` until it is small: behind ReLU layers the integrand has kinks and the gap shrinks
    only about as ``1 / n_steps``, more slowly for layers far from the output. The model runs in eval
    mode (its mode is restored); for an LSTM on a GPU that needs ``torch.backends.cudnn.enabled = False``
    (cuDNN's RNN backward runs only in training mode, captum#328).

    Args:
        model: the network; ``model(inputs)`` gives ``[N, outputs]``.
        layer: the layer's name (or module); its output must be a tensor (for ``nn.LSTM``: add an
            ``nn.Identity`` tap after it and attribute to the tap).
        inputs: ``[N, ...]`` a batch of inputs.
        target: the output to explain, an int or a LongTensor ``[N]`` (e.g. the labels).
        baselines: :math:`x'`: ``None`` (zeros), a number, or a tensor broadcastable to ``inputs``.
        n_steps: quadrature points.
        method: Captum's quadrature (``"gausslegendre"``, ``"riemann_trapezoid"``, ...), passed
            explicitly.
        internal_batch_size: Captum's chunking of the ``N * n_steps`` evaluations (saves memory).

    Returns:
        The pair ``(conductance, gap)`` of the ``[N, *layer output shape]`` conductances and the ``[N]``
        gap :math:`\sum_y \operatorname{Cond}^y(x) - (F(x) - F(x'))`.

    Raises:
        ValueError: a layer whose output is a tuple, not called, a bad target or baselines, a model
            output that is not ``[N, outputs]``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> _ = torch.manual_seed(0)
        >>> model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
        >>> x = torch.randn(5, 3, dtype=torch.float64)
        >>> cond, gap = layer_conductance(model, "1", x, target=1, n_steps=100)
        >>> cond.shape, bool(gap.abs().max() < 1e-4)
        (torch.Size([5, 4]), True)
    """
    from captum.attr import LayerConductance  # here, not at the top: captum.attr imports matplotlib

    name = _one_layer(model, layer)
    module = dict(model.named_modules())[name]
    if not isinstance(inputs, torch.Tensor) or inputs.dim() < 1 or inputs.shape[0] == 0:
        raise ValueError("inputs must be a non-empty [N, ...] tensor")
    if not isinstance(n_steps, numbers.Integral) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
    was_training = model.training
    model.eval()
    try:
        _check_tensor_output(model, name, module, inputs[:1])
        base = _as_baselines(baselines, inputs)
        with torch.no_grad():
            out, out_base = model(inputs), model(base)
        if out.dim() != 2:
            raise ValueError(f"model(inputs) has shape {tuple(out.shape)}; conductance explains one output per "
                             "sample: the model must return [N, outputs]")
        target = _as_target(target, inputs.shape[0], out.shape[1]).to(out.device)
        attribution = LayerConductance(model, module).attribute(
            inputs, baselines=base, target=target, n_steps=n_steps, method=method,
            internal_batch_size=internal_batch_size)
    finally:
        model.train(was_training)
    rows = torch.arange(inputs.shape[0], device=out.device)
    difference = out[rows, target] - out_base[rows, target]
    gap = attribution.detach().flatten(1).sum(1) - difference
    return attribution.detach(), gap


def _neuron_axis(ndim: int, neuron_dim: Optional[int]) -> int:
    """The neuron dimension of a layer output: last for [N, D] and [N, T, D], 1 (channels) from 4-D up."""
    if ndim < 2:
        raise ValueError(f"a layer output needs a sample and a neuron dimension, got {ndim} dimension(s)")
    if neuron_dim is not None:
        if not -ndim <= neuron_dim < ndim or neuron_dim % ndim == 0:
            raise ValueError(f"neuron_dim={neuron_dim} is not a non-sample dimension of a {ndim}-D output")
        return neuron_dim % ndim
    return ndim - 1 if ndim <= 3 else 1


def _per_neuron(t: torch.Tensor, neuron_dim: Optional[int], reduce: str = "sum") -> torch.Tensor:
    """``[N, D]``: sum (or mean) over every dimension but samples and neurons."""
    axis = _neuron_axis(t.dim(), neuron_dim)
    t = t.movedim(axis, -1).flatten(1, -2) if t.dim() > 2 else t.unsqueeze(1)
    return t.sum(1) if reduce == "sum" else t.mean(1)


class Conductance:
    """Attribute to and rank neurons by layer conductance (Dhamdhere et al. 2019), through Captum.

    A neuron's score is the **signed** mean over samples of its conductance for the target: higher means
    it pushes the target logit up more, negative means it pushes it down. (Rank by ``.abs()`` of
    :meth:`attribute` yourself for "involvement" of either sign.)

    Args:
        model: the network; ``model(inputs)`` gives ``[N, outputs]``.
        layer: the layer's name (or module), one whose output is a tensor.
        n_steps, method, internal_batch_size: as in :func:`layer_conductance`.
        neuron_dim: the neuron dimension of the layer's output (default: last for ``[N, D]`` and
            ``[N, T, D]``, 1 for ``[N, C, H, W]``); the other dimensions are summed, so a channel's
            conductance is the sum over its positions and completeness still holds.
    """

    def __init__(self, model: nn.Module, layer, n_steps: int = 50, method: str = "gausslegendre",
                 internal_batch_size: Optional[int] = None, *, neuron_dim: Optional[int] = None):
        self.model = model
        self.layer = _one_layer(model, layer)
        self.n_steps = n_steps
        self.method = method
        self.internal_batch_size = internal_batch_size
        self.neuron_dim = neuron_dim

    def attribute(self, inputs: torch.Tensor, target, baselines=None) -> torch.Tensor:
        """``[N, D]`` each sample's conductance through each neuron, for ``target`` (int or ``[N]``)."""
        conductance, _ = layer_conductance(self.model, self.layer, inputs, target, baselines, self.n_steps,
                                           self.method, self.internal_batch_size)
        return _per_neuron(conductance, self.neuron_dim)

    def rank(self, inputs: torch.Tensor, target, baselines=None) -> NeuronRanking:
        """Rank the neurons by their mean conductance over ``inputs`` (signed, higher first)."""
        return ranking_from_scores(self.attribute(inputs, target, baselines).double().mean(0), method="conductance")


# ---------------------------------------------------------------------------------------- interventions
def _as_neurons(neurons: Neurons) -> torch.Tensor:
    index = neurons if isinstance(neurons, torch.Tensor) else torch.as_tensor(np.asarray(neurons))
    if index.numel() == 0:
        raise ValueError("no neuron given: pass at least one neuron index (to leave the model alone, do not "
                         "enter the intervention)")
    if index.dtype.is_floating_point or index.dtype.is_complex or index.dtype == torch.bool:
        raise TypeError(f"neurons must be integer indices, got dtype {index.dtype}")
    index = index.long().flatten() if index.dim() <= 1 else None
    if index is None:
        raise ValueError("neurons must be a 1-D sequence of neuron indices")
    if (index < 0).any():
        raise ValueError(f"neuron indices must be >= 0, got {index.min().item()}")
    if torch.unique(index).numel() != index.numel():
        values, counts = torch.unique(index, return_counts=True)
        raise ValueError(f"duplicate neuron indices {values[counts > 1].tolist()}: pass each neuron once")
    return index


def _check_range(index: torch.Tensor, width: Optional[int], where: str) -> None:
    if width is not None and index.max().item() >= width:
        raise ValueError(f"neuron index {index.max().item()} is out of range for {where} with {width} neurons "
                         f"(valid: 0..{width - 1})")


def _static_width(module: nn.Module) -> Optional[int]:
    """The neuron count of layers whose type fixes it, so bad indices fail before any forward pass."""
    if isinstance(module, nn.Linear):
        return module.out_features
    if isinstance(module, (nn.Conv2d, nn.Conv3d)):
        return module.out_channels
    if isinstance(module, (nn.BatchNorm2d, nn.BatchNorm3d)):
        return module.num_features
    if isinstance(module, nn.RNNBase):
        return (module.proj_size or module.hidden_size) * (2 if module.bidirectional else 1)
    if isinstance(module, nn.Embedding):
        return module.embedding_dim
    return None


def _edit_hook(index: torch.Tensor, values: Optional[torch.Tensor], mode: str, neuron_dim: Optional[int], name: str):
    def edit(output: torch.Tensor) -> torch.Tensor:
        axis = _neuron_axis(output.dim(), neuron_dim)
        _check_range(index, output.shape[axis], f"layer {name!r}")
        moved = output.movedim(axis, -1).clone()  # clone: never write into a tensor autograd or the caller holds
        idx = index.to(output.device)
        new = values.to(device=output.device, dtype=output.dtype)
        moved[..., idx] = new if mode == "set" else moved[..., idx] + new
        return moved.movedim(-1, axis)

    def hook(module, inputs, output):
        if isinstance(output, tuple) and output and isinstance(output[0], torch.Tensor):
            return (edit(output[0]),) + tuple(output[1:])  # an RNN's (sequence, state): edit the sequence
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"layer {name!r} returned a {type(output).__name__}; intervene on a layer that "
                            "returns a tensor")
        return edit(output)
    return hook


@contextlib.contextmanager
def _intervention(model: nn.Module, layer, index: torch.Tensor, values: torch.Tensor, mode: str,
                  neuron_dim: Optional[int], width: Optional[int] = None) -> Iterator[None]:
    name = _one_layer(model, layer)
    module = dict(model.named_modules())[name]
    if neuron_dim is None:
        width = width if width is not None else _static_width(module)
    _check_range(index, width, f"layer {name!r}")
    # prepend: the edit runs before every other hook of the layer, so recorders and Captum see the edited output
    handle = module.register_forward_hook(_edit_hook(index, values, mode, neuron_dim, name), prepend=True)
    try:
        yield
    finally:
        handle.remove()


def ablate(model: nn.Module, layer, neurons: Neurons, value: Union[str, float] = "zero",
           means: Optional[torch.Tensor] = None, *, neuron_dim: Optional[int] = None):
    r"""Ablate neurons of a layer inside a ``with`` block, through a forward hook (removed on exit).

    The hook replaces the chosen units of the layer's output (the last dimension of ``[N, D]`` and
    ``[N, T, D]``, the channels of ``[N, C, H, W]``; a tuple output's first element) by

    * ``"zero"``: 0 (Morcos et al. 2018; Bau et al. 2019's erasure);
    * ``"mean"``: each unit's mean response, ``means[j]`` (e.g. from :func:`neuron_means`);
    * a number: that value.

    The model's parameters are never changed. The edit runs before every other forward hook of the layer,
    so a :func:`neuronlab.probe.record` recorder sees the edited output.

    Args:
        model: the network.
        layer: the layer's name (or module).
        neurons: the indices to ablate (non-empty, no duplicates, in range).
        value: ``"zero"``, ``"mean"`` or a number.
        means: ``[D]`` the layer's mean responses, needed for ``value="mean"``.
        neuron_dim: the neuron dimension of the layer's output, where the default reading is wrong
            (a ``Conv1d``'s ``[N, C, L]``: ``neuron_dim=1``).

    Raises:
        ValueError: bad indices (checked before the hook is registered when the layer type or ``means``
            fixes the width, else at the first forward pass), an unknown value, missing or bad means.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
        >>> with ablate(model, "1", [0, 2]):
        ...     y = model(torch.ones(1, 2))
        >>> y[0, [0, 2]].tolist()
        [0.0, 0.0]
    """
    index = _as_neurons(neurons)
    width = None
    if isinstance(value, str):
        if value == "zero":
            values = torch.zeros(len(index))
        elif value == "mean":
            if means is None:
                raise ValueError("value='mean' needs means=[D], the layer's mean responses: compute them with "
                                 "neuron_means(model, layer, inputs)")
            means = torch.as_tensor(means).detach()
            if means.dim() != 1 or not torch.isfinite(means).all():
                raise ValueError(f"means must be a finite [D] tensor, got shape {tuple(means.shape)}")
            width = means.shape[0]
            _check_range(index, width, "means")
            values = means[index]
        else:
            raise ValueError(f"value must be 'zero', 'mean' or a number, got {value!r}")
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        values = torch.full((len(index),), float(value))
    else:
        raise ValueError(f"value must be 'zero', 'mean' or a number, got {value!r}")
    return _intervention(model, layer, index, values, "set", neuron_dim, width)


def control(model: nn.Module, layer, neurons: Neurons, values: Union[float, torch.Tensor], mode: str = "set", *,
            neuron_dim: Optional[int] = None):
    r"""Control neurons of a layer inside a ``with`` block: set them to, or shift them by, given values.

    Bau et al. (2019) control a property of a translation (tense, number, gender) by setting the
    neurons that encode it. The forward hook is removed on exit, also when the body raises.

    Args:
        model: the network.
        layer: the layer's name (or module).
        neurons: the indices to control (non-empty, no duplicates, in range).
        values: a number for every neuron, or ``[len(neurons)]`` one per neuron.
        mode: ``"set"`` (replace the responses) or ``"add"`` (shift them).
        neuron_dim: as in :func:`ablate`.

    Raises:
        ValueError: bad indices, values of the wrong length, NaN or inf values, an unknown mode.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(2, 3))
        >>> x = torch.ones(1, 2)
        >>> with control(model, "0", [1], 5.0, mode="add"):
        ...     shifted = model(x)
        >>> torch.allclose(shifted[0, 1] - model(x)[0, 1], torch.tensor(5.0))
        True
    """
    index = _as_neurons(neurons)
    if mode not in ("set", "add"):
        raise ValueError(f"mode must be 'set' or 'add', got {mode!r}")
    if isinstance(values, numbers.Real) and not isinstance(values, bool):
        values = torch.full((len(index),), float(values))
    values = torch.as_tensor(values).detach()
    if values.shape != (len(index),):
        raise ValueError(f"values must be a number or have shape [{len(index)}] (one per neuron), got "
                         f"{tuple(values.shape)}")
    if not torch.isfinite(values).all():
        raise ValueError("values contain NaN or inf")
    return _intervention(model, layer, index, values, mode, neuron_dim)


def neuron_means(model: nn.Module, layer, inputs, reduce: Optional[str] = None, *, batch_size: int = 1000,
                 neuron_dim: Optional[int] = None) -> torch.Tensor:
    r"""``[D]`` each neuron's mean response over ``inputs`` (and over positions), for mean ablation.

    Args:
        model: the network (run in eval mode, without gradients).
        layer: the layer's name (or module).
        inputs: a tensor or anything :func:`neuronlab.probe.collect_responses` accepts.
        reduce: ``None`` averages the raw output over samples and every position, reading the neuron
            dimension as :func:`ablate` does; another value is passed to ``collect_responses`` and the
            ``[N, D]`` result averaged over rows.
        batch_size: batch size for tensors and datasets.
        neuron_dim: as in :func:`ablate`.

    Returns:
        ``[D]`` float32 means, on the CPU.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Identity())
        >>> neuron_means(model, "0", torch.tensor([[1., 4.], [3., 8.]])).tolist()
        [2.0, 6.0]
    """
    name = _one_layer(model, layer)
    response = collect_responses(model, inputs, name, reduce=reduce, batch_size=batch_size)[name]
    return _per_neuron(response, None if reduce else neuron_dim, reduce="mean").mean(0)


def random_orders(num_neurons: int, repeats: int, generator: Union[torch.Generator, int, None] = None
                  ) -> torch.Tensor:
    """``[repeats, num_neurons]`` independent random permutations of the neurons (Morcos et al.'s random
    ablation orders).

    Args:
        num_neurons: :math:`D`.
        repeats: the number of orders.
        generator: a ``torch.Generator`` or an int seed (``None``: the global generator).

    Example:
        >>> orders = random_orders(5, 3, generator=0)
        >>> orders.shape, sorted(orders[1].tolist())
        (torch.Size([3, 5]), [0, 1, 2, 3, 4])
    """
    if num_neurons < 1 or repeats < 1:
        raise ValueError(f"num_neurons and repeats must be positive, got {num_neurons} and {repeats}")
    if isinstance(generator, numbers.Integral):
        generator = torch.Generator().manual_seed(int(generator))
    return torch.argsort(torch.rand(repeats, num_neurons, generator=generator), dim=1)


@torch.no_grad()
def ablation_curve(model: nn.Module, layer, order: Union[Neurons, NeuronRanking], inputs: torch.Tensor,
                   labels: torch.Tensor, counts: Sequence[int], value: Union[str, float] = "zero",
                   means: Optional[torch.Tensor] = None, batch_size: int = 2000, *,
                   neuron_dim: Optional[int] = None) -> torch.Tensor:
    r"""Accuracy as the first ``k`` neurons of an order are ablated, for each ``k`` in ``counts``.

    Bau et al. (2019) erase the top or bottom neurons of a ranking; Morcos et al. (2018) ablate in random
    orders (:func:`random_orders`). The model runs in eval mode without gradients; its mode is restored.

    Args:
        model: a classifier; ``model(inputs)`` gives ``[N, classes]``.
        layer: the layer's name (or module).
        order: neuron indices, most important first, or a :class:`NeuronRanking` (its ``order``).
        inputs: ``[N, ...]`` inputs.
        labels: ``[N]`` class indices.
        counts: the numbers of neurons to ablate (each in ``0..len(order)``; 0 is the plain model).
        value, means, neuron_dim: as in :func:`ablate`.
        batch_size: samples per forward pass.

    Returns:
        ``[len(counts)]`` float64 accuracies in ``[0, 1]``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))
        >>> x, y = torch.randn(20, 2), torch.randint(0, 2, (20,))
        >>> bias_only = (model[2].bias.argmax() == y).double().mean()
        >>> curve = ablation_curve(model, "1", [0, 1], x, y, counts=[0, 2])
        >>> bool(curve[1] == bias_only)
        True
    """
    order_index = _as_neurons(order.order if isinstance(order, NeuronRanking) else order)
    if not isinstance(inputs, torch.Tensor) or inputs.dim() < 1:
        raise ValueError("inputs must be an [N, ...] tensor")
    labels, _ = check_labels(labels, inputs.shape[0])
    counts = [int(k) for k in counts]
    bad = [k for k in counts if not 0 <= k <= len(order_index)]
    if bad or not counts:
        raise ValueError(f"counts must be a non-empty list of integers in 0..{len(order_index)}, got {counts}")
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")

    def accuracy() -> float:
        correct = 0
        for xb, yb in zip(inputs.split(batch_size), labels.split(batch_size)):
            logits = model(xb.to(device))
            if logits.dim() != 2:
                raise ValueError(f"model outputs have shape {tuple(logits.shape)}: ablation_curve needs a "
                                 "classifier's [N, classes] logits")
            correct += int((logits.argmax(1).cpu() == yb).sum())
        return correct / inputs.shape[0]

    was_training = model.training
    model.eval()
    try:
        result = []
        for k in counts:
            if k == 0:
                result.append(accuracy())
                continue
            with ablate(model, layer, order_index[:k], value, means, neuron_dim=neuron_dim):
                result.append(accuracy())
    finally:
        model.train(was_training)
    return torch.tensor(result, dtype=torch.float64)


# ------------------------------------------------------------------------------------ recurrent models
class LSTMTrace(NamedTuple):
    """What :class:`UnrolledLSTM` returns: ``output``, ``hidden`` and ``cell``, each ``[B, T, H]``
    (``[T, B, H]`` when the LSTM is not ``batch_first``). For one layer ``output`` equals ``hidden``."""

    output: torch.Tensor
    hidden: torch.Tensor
    cell: torch.Tensor


class GRUTrace(NamedTuple):
    """What :class:`UnrolledGRU` returns: ``output`` and ``hidden``, each ``[B, T, H]`` (``[T, B, H]``
    when the GRU is not ``batch_first``)."""

    output: torch.Tensor
    hidden: torch.Tensor


@dataclass
class StateIntervention:
    """An edit of a recurrent state inside the recurrence, at chosen time steps.

    Applied to the state right after each chosen step's update, so the edited state feeds the next step.
    For ``state="cell"`` the hidden state of that step is read from the edited cell,
    :math:`h_t = o_t \\odot \\tanh(c_t)`.

    Attributes:
        units: the state units to edit (non-empty, no duplicates).
        state: ``"cell"`` or ``"hidden"`` (a GRU has only ``"hidden"``).
        mode: ``"set"`` (to ``values``), ``"add"`` (``values``) or ``"zero"``.
        values: a number or ``[len(units)]``.
        steps: which time steps: ``None`` (all), a ``slice``, or a boolean mask ``[T]`` or ``[B, T]``.

    Example:
        >>> StateIntervention(units=[3], state="cell", mode="set", values=2.0)
        StateIntervention(units=[3], state='cell', mode='set', values=2.0, steps=None)
    """

    units: Sequence[int]
    state: str = "cell"
    mode: str = "set"
    values: Union[float, torch.Tensor] = 0.0
    steps: Optional[Union[slice, torch.Tensor]] = None

    def __post_init__(self):
        if self.state not in ("cell", "hidden"):
            raise ValueError(f"state must be 'cell' or 'hidden', got {self.state!r}")
        if self.mode not in ("set", "add", "zero"):
            raise ValueError(f"mode must be 'set', 'add' or 'zero', got {self.mode!r}")
        index = _as_neurons(self.units)
        values = torch.as_tensor(self.values, dtype=torch.float64)
        if values.dim() > 1 or (values.dim() == 1 and values.shape[0] != len(index)):
            raise ValueError(f"values must be a number or have shape [{len(index)}] (one per unit), got "
                             f"{tuple(values.shape)}")
        if not torch.isfinite(values).all():
            raise ValueError("values contain NaN or inf")
        if self.steps is not None and not isinstance(self.steps, (slice, torch.Tensor)):
            raise TypeError(f"steps must be None, a slice or a boolean mask tensor, got {type(self.steps).__name__}")
        if isinstance(self.steps, torch.Tensor) and (self.steps.dtype != torch.bool or self.steps.dim() not in (1, 2)):
            raise ValueError("steps must be a boolean mask of shape [T] or [B, T]")

    def _step_mask(self, batch: int, length: int) -> torch.Tensor:
        """``[B, T]`` which (sample, step) pairs are edited."""
        if self.steps is None:
            return torch.ones(batch, length, dtype=torch.bool)
        if isinstance(self.steps, slice):
            mask = torch.zeros(length, dtype=torch.bool)
            mask[self.steps] = True
            return mask.expand(batch, length)
        expected = (length,) if self.steps.dim() == 1 else (batch, length)
        if tuple(self.steps.shape) != expected:
            raise ValueError(f"steps mask must have shape {expected} for this input, got {tuple(self.steps.shape)}")
        return self.steps.cpu().expand(batch, length)

    def _apply(self, state: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        """``state [B, H]`` with the units edited where ``active [B]``."""
        index = torch.as_tensor(self.units, dtype=torch.long, device=state.device)
        current = state[:, index]
        values = torch.as_tensor(self.values, dtype=state.dtype, device=state.device)
        edited = {"set": values.expand_as(current), "add": current + values, "zero": torch.zeros_like(current)}
        state = state.clone()
        state[:, index] = torch.where(active.to(state.device)[:, None], edited[self.mode], current)
        return state


def _as_interventions(intervention, hidden_size: int, kind: str, allowed_states: Tuple[str, ...]
                      ) -> List[StateIntervention]:
    if intervention is None:
        return []
    items = [intervention] if isinstance(intervention, StateIntervention) else list(intervention)
    for item in items:
        if not isinstance(item, StateIntervention):
            raise TypeError(f"intervention must be a StateIntervention or a list of them, got {type(item).__name__}")
        if item.state not in allowed_states:
            raise ValueError(f"a {kind} has no {item.state!r} state: use state in {allowed_states}")
        _check_range(_as_neurons(item.units), hidden_size, f"the {kind}'s state")
    return items


def _check_single_layer(rnn: nn.RNNBase, kind) -> None:
    if not isinstance(rnn, kind):
        raise ValueError(f"pass a trained nn.{kind.__name__}, got {type(rnn).__name__}")
    if rnn.num_layers != 1 or rnn.bidirectional or getattr(rnn, "proj_size", 0):
        raise ValueError(f"only a single-layer, unidirectional nn.{kind.__name__} without projections can be "
                         f"unrolled, got num_layers={rnn.num_layers}, bidirectional={rnn.bidirectional}: unroll "
                         "each layer (and direction) of a deeper network separately")


class _UnrolledRNN(nn.Module):
    kind = nn.RNNBase
    states: Tuple[str, ...] = ()

    def __init__(self, rnn: nn.RNNBase):
        super().__init__()
        _check_single_layer(rnn, self.kind)
        self.hidden_size, self.input_size, self.batch_first = rnn.hidden_size, rnn.input_size, rnn.batch_first
        # the trained layer's own Parameter objects (not copies): training either one trains both
        self.weight_ih, self.weight_hh = rnn.weight_ih_l0, rnn.weight_hh_l0
        self.bias_ih = rnn.bias_ih_l0 if rnn.bias else None
        self.bias_hh = rnn.bias_hh_l0 if rnn.bias else None

    def _prepare(self, x: torch.Tensor, intervention):
        if not isinstance(x, torch.Tensor) or x.dim() not in (2, 3) or x.shape[-1] != self.input_size:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must be [B, T, {self.input_size}] (batch_first) or [T, B, {self.input_size}], "
                             f"or unbatched [T, {self.input_size}], got {shape}")
        unbatched = x.dim() == 2
        x = x.unsqueeze(0) if unbatched else (x if self.batch_first else x.transpose(0, 1))  # -> [B, T, I]
        items = _as_interventions(intervention, self.hidden_size, type(self).__name__, self.states)
        masks = [item._step_mask(x.shape[0], x.shape[1]) for item in items]
        projected = F.linear(x, self.weight_ih, self.bias_ih)  # the input part of every step at once
        return x, unbatched, items, masks, projected

    def _initial(self, state, batch: int, x: torch.Tensor) -> torch.Tensor:
        if state is None:
            return x.new_zeros(batch, self.hidden_size)
        state = state.reshape(-1, self.hidden_size) if state.dim() == 3 else state
        if state.shape != (batch, self.hidden_size):
            raise ValueError(f"an initial state must be [1, {batch}, {self.hidden_size}] or [{batch}, "
                             f"{self.hidden_size}], got {tuple(state.shape)}")
        return state

    def _finish(self, sequences: List[List[torch.Tensor]], unbatched: bool) -> List[torch.Tensor]:
        out = [torch.stack(seq, dim=1) for seq in sequences]  # [B, T, H]
        if unbatched:
            return [t.squeeze(0) for t in out]
        return out if self.batch_first else [t.transpose(0, 1) for t in out]


class UnrolledLSTM(_UnrolledRNN):
    r"""A trained single-layer ``nn.LSTM`` run step by step, so its state can be edited inside the loop.

    It shares the LSTM's parameter objects (``self.weight_ih is lstm.weight_ih_l0``) and computes, for
    every time step (a loop over steps, not samples), with gates in PyTorch's order :math:`i, f, g, o`,

    .. math::
        c_t = f_t \odot c_{t-1} + i_t \odot g_t , \qquad h_t = o_t \odot \tanh(c_t) ,

    then applies the :class:`StateIntervention` s of that step to :math:`c_t` (before :math:`h_t` is read
    from it) or to :math:`h_t`. Without an intervention it returns what the LSTM returns. A forward hook on
    the ``nn.LSTM`` (:func:`ablate`) edits only its returned sequence; an edit here reaches every later step.

    Args:
        lstm: a single-layer, unidirectional ``nn.LSTM`` without projection (``batch_first`` either way).

    Raises:
        ValueError: another module, several layers, two directions or a projection.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> lstm = nn.LSTM(2, 3, batch_first=True)
        >>> unrolled = UnrolledLSTM(lstm)
        >>> x = torch.randn(4, 6, 2)
        >>> torch.allclose(unrolled(x).output, lstm(x)[0], atol=1e-6)
        True
        >>> zero = StateIntervention(units=[0], state="cell", mode="zero")
        >>> unrolled(x, intervention=zero).cell[..., 0].abs().max().item()
        0.0
    """

    kind = nn.LSTM
    states = ("cell", "hidden")

    def forward(self, x: torch.Tensor, state: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
                intervention: Union[StateIntervention, Sequence[StateIntervention], None] = None) -> LSTMTrace:
        """Run the LSTM over ``x`` from ``state = (h0, c0)`` (default zeros), with optional interventions."""
        x, unbatched, items, masks, projected = self._prepare(x, intervention)
        batch = x.shape[0]
        h0, c0 = (None, None) if state is None else state
        h, c = self._initial(h0, batch, x), self._initial(c0, batch, x)
        hidden, cell = [], []
        for t in range(x.shape[1]):
            gates = projected[:, t] + F.linear(h, self.weight_hh, self.bias_hh)
            i, f, g, o = gates.chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            for item, mask in zip(items, masks):
                if item.state == "cell":
                    c = item._apply(c, mask[:, t])
            h = torch.sigmoid(o) * torch.tanh(c)
            for item, mask in zip(items, masks):
                if item.state == "hidden":
                    h = item._apply(h, mask[:, t])
            hidden.append(h)
            cell.append(c)
        hidden_seq, cell_seq = self._finish([hidden, cell], unbatched)
        return LSTMTrace(output=hidden_seq, hidden=hidden_seq, cell=cell_seq)


class UnrolledGRU(_UnrolledRNN):
    r"""A trained single-layer ``nn.GRU`` run step by step (the contrast to :class:`UnrolledLSTM`).

    Shares the GRU's parameter objects and computes, with gates in PyTorch's order :math:`r, z, n`,

    .. math::
        n_t = \tanh\bigl(W_{in} x_t + b_{in} + r_t \odot (W_{hn} h_{t-1} + b_{hn})\bigr) , \qquad
        h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1} ,

    then applies the step's :class:`StateIntervention` s (``state="hidden"``: a GRU has no cell).

    Args:
        gru: a single-layer, unidirectional ``nn.GRU``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> gru = nn.GRU(2, 3)
        >>> x = torch.randn(6, 4, 2)          # [T, B, I]: not batch_first
        >>> torch.allclose(UnrolledGRU(gru)(x).output, gru(x)[0], atol=1e-6)
        True
    """

    kind = nn.GRU
    states = ("hidden",)

    def forward(self, x: torch.Tensor, state: Optional[torch.Tensor] = None,
                intervention: Union[StateIntervention, Sequence[StateIntervention], None] = None) -> GRUTrace:
        """Run the GRU over ``x`` from ``state`` (h0, default zeros), with optional interventions."""
        x, unbatched, items, masks, projected = self._prepare(x, intervention)
        h = self._initial(state, x.shape[0], x)
        hidden = []
        for t in range(x.shape[1]):
            input_r, input_z, input_n = projected[:, t].chunk(3, dim=1)
            hidden_r, hidden_z, hidden_n = F.linear(h, self.weight_hh, self.bias_hh).chunk(3, dim=1)
            r = torch.sigmoid(input_r + hidden_r)
            z = torch.sigmoid(input_z + hidden_z)
            n = torch.tanh(input_n + r * hidden_n)
            h = (1 - z) * n + z * h
            for item, mask in zip(items, masks):
                h = item._apply(h, mask[:, t])
            hidden.append(h)
        (hidden_seq,) = self._finish([hidden], unbatched)
        return GRUTrace(output=hidden_seq, hidden=hidden_seq)
