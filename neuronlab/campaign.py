r"""Neuron Campaign initialization (IBCI, Mao et al., CIKM 2021), for dense and convolutional layers.

A layer of :math:`k` neurons is initialized by an *election* among :math:`C > k` candidate neurons:

1. **Candidates.** Draw :math:`C` candidate weight vectors :math:`w_1, \dots, w_C` from a layer-wise
   scheme (Xavier or He), with the layer's *true* fan-in and fan-out.
2. **Scores.** Push the training data through the layers already initialized and compute every
   candidate's response :math:`z_i = w_i^\top x` on every sample (a filter's response is its mean over
   positions). Score each candidate by the information-bottleneck criterion
   :math:`\alpha\, I(X; Z_i) + (1 - \alpha)\, I(Z_i; Y)`, approximated as

   * input information :math:`I(X;Z_i) = H(Z_i)` (the net is deterministic), taken as the response's
     standard deviation :math:`\operatorname{std}(z_i)`;
   * target information :math:`I(Z_i;Y) \approx` between-class variance minus within-class variance of
     :math:`z_i`, :math:`\frac1K\sum_j(\mu_{ij} - \bar\mu_i)^2 - \frac1K\sum_j \sigma^2_{ij}` over the
     :math:`K` classes (the paper's trace formula for one neuron).

   Each term is min-max normalized to :math:`[0, 1]` over the candidates before mixing.
3. **Election.** Greedy and orthogonal (:func:`select_neurons`): keep the residual :math:`p_i` of every
   candidate after projecting out the directions elected so far; elect
   :math:`\arg\max_i s_i \lVert p_i \rVert / \lVert w_i \rVert`; append :math:`a = p_i / \lVert p_i\rVert`.
4. **Combination.** The layer's weight rows are the elected directions :math:`a_t`, each scaled to the
   norm of its candidate (so the layer keeps the variance scale of the base scheme): the elected neurons
   are orthogonal.

Layers are processed in the order the forward pass calls them, each scored on the responses of the
layers already initialized. ``alpha`` weighs the *input* term, as in the paper's text and the talk;
the official code's ``alpha`` weighs the *target* term (its default ``[0, 1]`` for 784-100-10 is our
``[1, 0]``). Our default schedule goes linearly from 1 at the first layer to 0 at the last: front
layers keep input information, rear layers gain target information (:func:`default_alphas`).

Differences from the official code (``huanhuqueyue/CIKM-IBCI``), each chosen on purpose:

* candidates are drawn with the layer's true fan-in; the official code draws He-normal candidates on a
  ``[in, candidates]`` tensor, so PyTorch takes the candidate count as the fan-in;
* the score terms are min-max normalized (the official code divides by the L2 norm across candidates,
  which leaves the target term negative for most candidates and makes the product in the election
  prefer *small* residuals for those);
* the official election groups candidates by the class of their largest class mean, splits the slots
  evenly across groups and elects within each group only; this is available as ``grouped=True``.

Beyond the paper: convolutional layers (a filter is a neuron), ablation modes (``"tie"``: target
information only; ``"iim"``: input information only; ``"random"``: the same candidates and election
with random scores, a control), and LSUV on top (``lsuv_(model, x, orthogonal=False)`` rescales the
elected weights without changing their directions).

The paper's experiments (Tables 1 and 2, Fashion-MNIST, a small CNN) are in
:mod:`neuronlab.experiments.ch02_campaign` (``python -m neuronlab.experiments ch02``).
"""

from __future__ import annotations

import math
import numbers
import operator
import time
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .classwise import check_labels, class_means
from .init import fan_in_out, weight_layers
from .models import weights_restored_on_error
from .probe import forward_call_order

__all__ = [
    "MODES",
    "BASES",
    "Election",
    "LayerCampaign",
    "information_scores",
    "campaign_scores",
    "default_alphas",
    "select_neurons",
    "best_class_groups",
    "campaign_",
]

#: Scoring modes of :func:`campaign_`, the full criterion and the three ablations.
MODES = ("ibci", "tie", "iim", "random")
#: Candidate distributions, Xavier-normal and He-normal.
BASES = ("xavier", "he")


def _integer(name: str, value, minimum: Optional[int] = None) -> int:
    """``value`` as an ``int`` >= ``minimum`` (Python/NumPy integers, 0-d integer tensors; not bools)."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got the bool {value}")
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})") from None
    if minimum is not None and number < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {number}")
    return number


def _finite(name: str, value) -> float:
    """``value`` as a finite ``float`` (a Python or NumPy real number or a one-element real tensor; not a
    bool)."""
    if (isinstance(value, torch.Tensor) and value.numel() == 1 and value.dtype != torch.bool
            and not value.dtype.is_complex):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    return float(value)


def _all_finite(t: torch.Tensor) -> bool:
    """Whether ``t`` holds no NaN or inf. A NaN or inf anywhere makes the sum NaN or inf, so a finite sum
    settles it in one cheap reduction; only a sum that overflowed needs the element-wise check."""
    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


# ----------------------------------------------------------------------------------------------- scores
def information_scores(responses: torch.Tensor, labels: torch.Tensor, num_classes: Optional[int] = None
                       ) -> Dict[str, torch.Tensor]:
    r"""Per-neuron information terms of the IBCI criterion, from responses ``[N, C]`` and labels ``[N]``.

    Returns a dict of ``[C]`` tensors:

    * ``"input"``: :math:`\operatorname{std}(z_i)` over all samples (population std), the proxy of
      :math:`I(X; Z_i) = H(Z_i)`;
    * ``"between"``: :math:`\frac1K \sum_j (\mu_{ij} - \bar\mu_i)^2`, the variance of the class means
      (:math:`\bar\mu_i = \frac1K\sum_j \mu_{ij}`);
    * ``"within"``: :math:`\frac1K \sum_j \sigma^2_{ij}`, the mean within-class (population) variance;
    * ``"target"``: ``between - within``, the proxy of :math:`I(Z_i; Y)`.

    Classes are weighted equally. With balanced classes the law of total variance gives
    ``input**2 == between + within``. Everything comes from the per-class sums and sums of squares (the
    moments of :func:`neuronlab.classwise.class_moments`): two matrix products with the one-hot labels,
    accumulated in float64 over blocks of samples, so that no float64 copy of the responses is made.
    Every class ``0..K-1`` must occur.
    """
    if responses.dim() != 2:
        raise ValueError(f"responses must be [samples, neurons], got shape {tuple(responses.shape)}")
    labels, num_classes = check_labels(labels, responses.shape[0], num_classes, every_class=True)
    counts, sums, squares = _class_sums(responses, labels, num_classes)
    # a NaN or inf response makes its column's sums NaN or inf (NaN * 0 is NaN in the product with the
    # one-hot labels), and finite float32 responses cannot overflow the float64 sums of squares
    if not (torch.isfinite(sums).all() and torch.isfinite(squares).all()):
        raise ValueError("responses contain NaN or inf: check the input data and the layers before this one")
    means = sums / counts[:, None]  # offset by a constant per neuron, which no variance sees
    within_each = (squares / counts[:, None] - means**2).clamp_min(0.0)
    between = means.var(dim=0, unbiased=False)
    within = within_each.mean(dim=0)
    overall = sums.sum(dim=0) / counts.sum()
    spread = (squares.sum(dim=0) / counts.sum() - overall**2).clamp_min(0.0).sqrt()
    return {"input": spread, "between": between, "within": within, "target": between - within}


def _class_sums(responses: torch.Tensor, labels: torch.Tensor, num_classes: int
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-class counts ``[K]``, and sums and sums of squares ``[K, n]`` of ``[N, n]`` responses minus an
    offset per neuron (the mean of the first block), in float64.

    The offset keeps :math:`E[z^2] - E[z]^2` from cancelling when the responses sit far from zero. The
    blocks hold about 2 MB of float64 numbers: each is converted, shifted, squared and multiplied while it
    is in the cache, which costs a fraction of converting the whole ``[N, n]`` matrix first.
    """
    n_samples, width = responses.shape
    onehot = F.one_hot(labels.to(responses.device), num_classes).T.to(torch.float64)  # [K, N]
    sums = torch.zeros((num_classes, width), dtype=torch.float64, device=responses.device)
    squares = torch.zeros_like(sums)
    block = max(64, (1 << 18) // max(width, 1))
    offset = responses[:block].to(torch.float64).mean(dim=0)
    for start in range(0, n_samples, block):
        z = responses[start:start + block].to(torch.float64, copy=True).sub_(offset)
        hot = onehot[:, start:start + block]
        sums.addmm_(hot, z)
        squares.addmm_(hot, z.mul_(z))
    return onehot.sum(dim=1), sums, squares


def _minmax(v: torch.Tensor) -> torch.Tensor:
    span = v.max() - v.min()
    return torch.zeros_like(v) if span <= 0 else (v - v.min()) / span


def campaign_scores(info: Mapping[str, torch.Tensor], alpha: float, mode: str = "ibci",
                    generator: Optional[torch.Generator] = None) -> torch.Tensor:
    r"""Mix the two information terms into one score in :math:`[0, 1]` per candidate.

    ``"ibci"``: :math:`\alpha\,\hat I_\text{input} + (1-\alpha)\,\hat I_\text{target}` with
    :math:`\hat{\cdot}` min-max normalization over candidates; ``"tie"``: :math:`\hat I_\text{target}`
    (``alpha = 0``); ``"iim"``: :math:`\hat I_\text{input}` (``alpha = 1``); ``"random"``: i.i.d.
    uniform numbers from ``generator`` (the control: same candidates and election, no information).
    """
    if mode not in MODES:
        raise ValueError(f"unknown campaign mode {mode!r}; choose one of {MODES}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    if mode == "random":
        n = info["input"].shape[0]
        return torch.rand(n, generator=generator, dtype=torch.float64)
    alpha = {"ibci": alpha, "tie": 0.0, "iim": 1.0}[mode]
    return alpha * _minmax(info["input"]) + (1.0 - alpha) * _minmax(info["target"])


def default_alphas(n_layers: int) -> List[float]:
    """The default weight of the input term per layer: linear from 1 (first layer) to 0 (last layer).

    ``default_alphas(2) == [1.0, 0.0]`` (the official code's default for 784-100-10, in our convention),
    ``default_alphas(3) == [1.0, 0.5, 0.0]``; a single layer gets 0.5.
    """
    if n_layers < 1:
        raise ValueError(f"n_layers must be at least 1, got {n_layers}")
    if n_layers == 1:
        return [0.5]
    return [1.0 - i / (n_layers - 1) for i in range(n_layers)]


# --------------------------------------------------------------------------------------------- election
@dataclass
class Election:
    """The outcome of :func:`select_neurons`.

    Attributes:
        indices: ``[k]`` indices of the elected candidates, in the order they were elected.
        directions: ``[k, d]`` unit vectors :math:`a_t = p_t / \\lVert p_t \\rVert` (orthonormal within a
            round and a group).
        residual_ratio: ``[k]`` :math:`\\lVert p_i \\rVert / \\lVert w_i \\rVert` of each elected candidate
            when it was elected (1: orthogonal to everything elected before it).
        rounds: ``[k]`` the round of each election: a new round starts, with the residuals reset to the
            candidates, when the elected directions span the whole input space.
        groups: ``[k]`` the group of each elected candidate (all 0 without groups).
    """

    indices: torch.Tensor
    directions: torch.Tensor
    residual_ratio: torch.Tensor
    rounds: torch.Tensor
    groups: torch.Tensor


#: Candidates whose residuals the election keeps exact between two full updates of all residuals.
_SHORTLIST = 64


def _elect(w: torch.Tensor, scores: np.ndarray, k: int, tol: float):
    r"""Greedy orthogonal election of ``k`` rows of ``w`` (float64), restarting rounds when no residual is left.

    The residuals are never formed: with orthonormal directions :math:`a_s`, the squared residual norm of
    candidate :math:`i` is :math:`\lVert w_i\rVert^2 - \sum_s (w_i^\top a_s)^2`. The products
    :math:`w_i^\top a_s` are kept; the elected vector's Gram-Schmidt step reads its coefficients from
    them, and a second pass runs when the first removed more than half of its squared norm (then rounding
    may have left a trace of the earlier directions), which keeps the directions orthonormal to machine
    precision.

    Residuals only shrink, so a residual computed a few picks ago bounds a candidate's criterion from
    above. The election updates every candidate's residual in blocks, with one matrix product
    :math:`W A_\text{block}^\top` per block; between two such updates it keeps exact residuals only for a
    shortlist of the ``_SHORTLIST`` candidates with the highest criterion at the last update. A
    shortlisted candidate whose exact criterion beats the best bound outside the shortlist is the one
    the plain greedy rule elects; when none does, every residual is brought up to date and the pick is
    made among all candidates. The picks are those of the step-by-step greedy rule.

    The bookkeeping over the candidates runs in NumPy, whose calls cost about a microsecond (the loop
    runs ``k`` times over small vectors); the products run in torch on the same memory, so that they
    share torch's threads instead of starting a second pool of BLAS threads next to it.
    """
    w = w.detach().to("cpu", torch.float64).contiguous()
    n, dim = w.shape
    directions_t = torch.empty((k, dim), dtype=torch.float64)
    products_t = torch.empty((k, n), dtype=torch.float64)  # products[t, i] = w_i . a_t
    directions, products = directions_t.numpy(), products_t.numpy()
    norms2 = torch.linalg.vector_norm(w, dim=1).square_().numpy()
    residual2 = norms2.copy()  # exact for every candidate up to direction `updated`
    available = np.ones(n, dtype=bool)
    picked, ratios, rounds = [], [], []
    round_, round_start, updated = 0, 0, 0
    # the shortlist: its members, their exact squared residuals, 1 / squared norms, scores, which are still
    # open and their rows; and the best criterion outside it at the last full update
    members = member2 = member_inv2 = member_scores = member_open = member_rows = None
    bound = -np.inf
    for t in range(k):
        i = -1
        if members is not None:
            ratio = np.sqrt(np.maximum(member2, 0.0) * member_inv2)
            value = np.where(member_open & (ratio > tol), member_scores * ratio, -np.inf)
            j = int(np.argmax(value))
            if value[j] > bound:
                i, ratio_i = int(members[j]), float(ratio[j])
                member_open[j] = False
        if i < 0:  # bring every residual up to date and pick among all candidates
            if t > updated:
                block = torch.mm(w, directions_t[updated:t].T)  # [n, picks since the last update]
                products_t[updated:t] = block.T
                residual2 -= np.square(block.numpy()).sum(axis=1)
                updated = t
            ratio = np.sqrt(np.maximum(residual2, 0.0) / norms2)
            usable = available & (ratio > tol)
            if not usable.any():  # the elected directions span the space: start a new round
                round_, round_start = round_ + 1, t
                residual2 = norms2.copy()
                ratio = np.ones_like(norms2)
                usable = available
            value = np.where(usable, scores * ratio, -np.inf)
            i = int(np.argmax(value))
            ratio_i = float(ratio[i])
            available[i] = False
            if n > 2 * _SHORTLIST:
                top = np.argpartition(-value, _SHORTLIST)
                members, bound = np.sort(top[:_SHORTLIST]), value[top[_SHORTLIST:]].max()
            else:
                members, bound = np.arange(n), -np.inf
            member2, member_inv2 = residual2[members], 1.0 / norms2[members]
            member_scores, member_open = scores[members], available[members]
            member_rows = w[torch.from_numpy(members)]
        available[i] = False
        basis = directions_t[round_start:t]
        p_t = torch.addmv(w[i], basis.T, products_t[round_start:t, i], alpha=-1.0)
        p = p_t.numpy()
        p2 = float(p @ p)
        if p2 < 0.5 * norms2[i]:
            p_t.addmv_(basis.T, basis @ p_t, alpha=-1.0)
            p2 = float(p @ p)
        np.multiply(p, 1.0 / math.sqrt(p2), out=directions[t])
        c = torch.mv(member_rows, directions_t[t]).numpy()
        products[t, members] = c
        member2 -= c * c
        picked.append(i)
        ratios.append(ratio_i)
        rounds.append(round_)
    return picked, directions, ratios, rounds


def _split_slots(sizes: Sequence[int], k: int) -> List[int]:
    """Split ``k`` slots evenly across groups of the given sizes; a group never gets more than its size."""
    slots = [0] * len(sizes)
    remaining = k
    open_groups = [g for g, s in enumerate(sizes) if s > 0]
    while remaining > 0 and open_groups:
        share, extra = divmod(remaining, len(open_groups))
        # larger groups take the remainder first (ties: lower group id)
        order = sorted(open_groups, key=lambda g: (-(sizes[g] - slots[g]), g))
        for rank, g in enumerate(order):
            give = min(share + (1 if rank < extra else 0), sizes[g] - slots[g])
            slots[g] += give
            remaining -= give
        open_groups = [g for g in open_groups if slots[g] < sizes[g]]
    return slots


@torch.no_grad()
def select_neurons(candidates: torch.Tensor, scores: torch.Tensor, k: int, *,
                   groups: Optional[torch.Tensor] = None, tol: float = 1e-6) -> Election:
    r"""Greedy orthogonal election of ``k`` of the ``C`` candidate neurons (IBCI, Algorithm 1).

    With :math:`P_0 = W` (the candidates as rows) and :math:`A` the elected directions, step :math:`t`

    .. math::
        i_t = \arg\max_{i \notin \text{elected}} \; s_i\, \frac{\lVert p^{(t)}_i \rVert}{\lVert w_i \rVert},
        \qquad a_t = \frac{p^{(t)}_{i_t}}{\lVert p^{(t)}_{i_t} \rVert},
        \qquad P^{(t+1)} = P^{(t)} - (P^{(t)} a_t)\, a_t^\top,

    so a candidate is worth its score times the fraction of it that is new. The first pick is the
    highest score; the directions :math:`a_t` are orthonormal.

    **More picks than dimensions.** After :math:`d` picks (``d`` = input dimension) the directions span
    :math:`\mathbb R^d` and every residual is 0 (below ``tol`` times the candidate's norm). The election
    then starts a new *round*: residuals are reset to the remaining candidates and the next picks are
    again orthonormal among themselves (``Election.rounds`` says which round each pick belongs to). This
    matters for convolutions, whose first layer often has more filters than inputs (32 filters of
    :math:`1 \times 3 \times 3`).

    Args:
        candidates: ``[C, d]`` candidate weight vectors (a filter flattened).
        scores: ``[C]`` non-negative scores (e.g. :func:`campaign_scores`, in :math:`[0, 1]`). A tiny
            constant is added so that a zero score still prefers new directions.
        k: how many to elect, at most ``C``.
        groups: optional ``[C]`` integer group per candidate (the official code's variant, see
            :func:`best_class_groups`): the ``k`` slots are split evenly across the groups (a group too
            small to fill its share passes the rest on), and the election runs within each group only.
            Directions are orthonormal within a group, not across groups.
        tol: relative residual below which a candidate counts as spanned.

    Integer candidates are accepted (the arithmetic is in float64): their directions come back in the
    default floating dtype; floating candidates keep their dtype.

    Raises:
        TypeError: candidates or scores that are not tensors, boolean or complex candidates, complex
            scores, a ``k`` that is not an integer.
        ValueError: ``k`` larger than the number of candidates or below 1, mismatched shapes, negative or
            non-finite scores or candidates, a zero candidate, ``tol`` outside ``[0, 1)``, non-integer
            groups.

    Example:
        Three candidates in the plane; the best score is elected first, then the candidate whose score
        times new fraction is largest (:math:`0.9 \cdot 0.707 > 0.6 \cdot 1`):

        >>> import torch
        >>> w = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
        >>> select_neurons(w, torch.tensor([1.0, 0.9, 0.6]), 2).indices
        tensor([0, 1])
        >>> select_neurons(w, torch.tensor([1.0, 0.9, 0.65]), 2).indices
        tensor([0, 2])
        >>> select_neurons(w, torch.ones(3), 3).rounds  # 3 picks in 2-D: a second round
        tensor([0, 0, 1])
    """
    if not isinstance(candidates, torch.Tensor) or not isinstance(scores, torch.Tensor):
        wrong = type(candidates if not isinstance(candidates, torch.Tensor) else scores).__name__
        raise TypeError(f"candidates and scores must be tensors, got a {wrong}: wrap it in torch.tensor(...)")
    if candidates.dtype == torch.bool or candidates.dtype.is_complex:
        raise TypeError(f"candidates must be real weight vectors, got dtype {candidates.dtype}")
    if scores.dtype.is_complex:
        raise TypeError(f"scores must be real numbers, got dtype {scores.dtype}")
    if candidates.dim() != 2:
        raise ValueError(f"candidates must be [C, d] (one row per neuron), got shape {tuple(candidates.shape)}")
    n_candidates = candidates.shape[0]
    if scores.shape != (n_candidates,):
        raise ValueError(f"scores must have shape [{n_candidates}] (one per candidate), got {tuple(scores.shape)}")
    k = _integer("k (the number of neurons to elect)", k)
    tol = _finite("tol", tol)
    if not 0.0 <= tol < 1.0:
        raise ValueError(f"tol must lie in [0, 1) (a fraction of a candidate's norm), got {tol}")
    if not 1 <= k <= n_candidates:
        raise ValueError(f"cannot elect k={k} neurons from {n_candidates} candidates: k must lie in 1..{n_candidates}"
                         " (draw more candidates: raise the candidate ratio)")
    if not torch.isfinite(scores).all() or (scores < 0).any():
        raise ValueError("scores must be finite and non-negative (min-max normalize them, e.g. campaign_scores)")
    w = candidates.detach().double()
    if not _all_finite(w):
        raise ValueError("candidates contain NaN or inf")
    if (w.norm(dim=1) == 0).any():
        raise ValueError("a candidate is the zero vector: it has no direction to elect")
    s = scores.detach().double().cpu().numpy() + 1e-12

    if groups is None:
        group_ids = torch.zeros(n_candidates, dtype=torch.long)
    else:
        if not isinstance(groups, torch.Tensor):
            raise TypeError(f"groups must be a tensor of integer group ids, got {type(groups).__name__}")
        if groups.shape != (n_candidates,):
            raise ValueError(f"groups must have shape [{n_candidates}], got {tuple(groups.shape)}")
        if groups.dtype.is_floating_point or groups.dtype.is_complex:
            raise ValueError(f"groups must be integer group ids, got dtype {groups.dtype} (a float would be "
                             "truncated): pass e.g. best_class_groups(...) or groups.long()")
        group_ids = groups.detach().long().cpu()
    labels = torch.unique(group_ids).tolist()
    members = [torch.nonzero(group_ids == g).flatten() for g in labels]
    slots = _split_slots([len(m) for m in members], k)

    # unit vectors need a floating dtype: integer candidates give directions of the default dtype
    out_dtype = candidates.dtype if candidates.dtype.is_floating_point else torch.get_default_dtype()
    w_cpu = w.cpu()
    indices, directions, ratios, rounds, gids = [], [], [], [], []
    for g, idx, n_slots in zip(labels, members, slots):
        if n_slots == 0:
            continue
        picked, dirs, rat, rnd = _elect(w_cpu[idx] if groups is not None else w_cpu, s[idx.numpy()], n_slots, tol)
        indices += idx[picked].tolist()
        directions.append(dirs)
        ratios += rat
        rounds += rnd
        gids += [g] * n_slots
    return Election(indices=torch.tensor(indices, dtype=torch.long),
                    directions=torch.from_numpy(np.concatenate(directions)).to(device=w.device, dtype=out_dtype),
                    residual_ratio=torch.tensor(ratios, dtype=torch.float64),
                    rounds=torch.tensor(rounds, dtype=torch.long), groups=torch.tensor(gids, dtype=torch.long))


def best_class_groups(responses: torch.Tensor, labels: torch.Tensor, num_classes: Optional[int] = None
                      ) -> torch.Tensor:
    """The official code's grouping: each candidate's group is the class with its largest mean response."""
    labels, num_classes = check_labels(labels, responses.shape[0], num_classes, every_class=True)
    return class_means(responses, labels, num_classes).argmax(dim=0).cpu()



# ------------------------------------------------------------------------------------------- campaign
@dataclass
class LayerCampaign:
    """What :func:`campaign_` did to one layer (``return_report=True``).

    Attributes:
        name: the layer's name in the model.
        alpha: the weight of the input term used.
        candidates: ``[C, *weight.shape[1:]]`` the candidate weights drawn.
        info: :func:`information_scores` of the candidates (``[C]`` each).
        scores: ``[C]`` the mixed scores used in the election.
        election: the :class:`Election`.
        seconds: wall time spent on this layer (responses, scores, election).
    """

    name: str
    alpha: float
    candidates: torch.Tensor
    info: Dict[str, torch.Tensor]
    scores: torch.Tensor
    election: Election
    seconds: float

    @property
    def elected(self) -> torch.Tensor:
        """``[C]`` boolean mask of the elected candidates."""
        mask = torch.zeros(self.candidates.shape[0], dtype=torch.bool)
        mask[self.election.indices] = True
        return mask

    def table(self) -> Dict[str, np.ndarray]:
        """One array per column, one entry per candidate: ``layer``, ``input_info``, ``target_info``,
        ``score`` and ``elected`` (e.g. ``pandas.DataFrame(report["fc1"].table())``)."""
        n = self.candidates.shape[0]
        return {"layer": np.full(n, self.name), "input_info": self.info["input"].numpy(),
                "target_info": self.info["target"].numpy(), "score": self.scores.numpy(),
                "elected": self.elected.numpy()}


class _StopForward(Exception):
    """Raised by the input hook once the layer's input is captured: the rest of the forward is not needed."""


def _layer_inputs(model: nn.Module, layer: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    chunks: List[torch.Tensor] = []

    def hook(module, inputs):
        chunks.append(inputs[0].detach())
        raise _StopForward

    handle = layer.register_forward_pre_hook(hook)
    try:
        for start in range(0, x.shape[0], batch_size):
            try:
                model(x[start:start + batch_size])
            except _StopForward:
                continue
            except RuntimeError as err:
                raise ValueError(f"campaign_: the data (shape {tuple(x.shape)}) does not fit the model: {err}") from err
            raise RuntimeError("campaign_: the forward pass never reached the layer being initialized; "
                               "the campaign needs every weight layer to be used by model(x)")
    finally:
        handle.remove()
    return torch.cat(chunks)


_CONV = {nn.Conv1d: F.conv1d, nn.Conv2d: F.conv2d, nn.Conv3d: F.conv3d}


def _candidate_responses(layer: nn.Module, inputs: torch.Tensor, candidates: torch.Tensor,
                         response_fn: Optional[Callable[[torch.Tensor], torch.Tensor]], batch_size: int
                         ) -> torch.Tensor:
    """``[N, C]`` responses of the candidate neurons (filters: mean over positions), biases zero."""
    if isinstance(layer, nn.Linear):
        if inputs.dim() != 2:
            raise ValueError(f"campaign_ handles nn.Linear layers fed [N, features]; got input {tuple(inputs.shape)}")
        out = inputs @ candidates.T
        return response_fn(out) if response_fn else out
    conv = _CONV[type(layer)]
    if layer.groups != 1 or layer.padding_mode != "zeros":
        raise ValueError("campaign_ handles convolutions with groups=1 and zero padding only")
    if response_fn is None:
        # a convolution is linear in its filter, so a filter's mean response is the dot product of the
        # filter with the mean patch: [N, in * kernel] numbers instead of C full output maps
        return _mean_patches(layer, inputs) @ candidates.flatten(1).T
    parts = []
    for start in range(0, inputs.shape[0], batch_size):
        out = conv(inputs[start:start + batch_size], candidates, None, layer.stride, layer.padding,
                   layer.dilation)
        parts.append(response_fn(out).flatten(2).mean(dim=2))
    return torch.cat(parts)


def _mean_patches(layer: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    r"""``[N, in_channels * prod(kernel)]``: each entry of the convolution's input patch averaged over the
    output positions, so that ``_mean_patches(layer, x) @ w.flatten()`` is the mean over positions of
    ``conv(x, w)`` for any filter ``w`` (zero padding, no bias).

    Along each spatial axis a 0/1 matrix ``[L, k]`` marks which input index kernel tap ``j`` reads at some
    output position (stride, dilation and padding included; taps that fall on the padding read zeros).
    The axes are contracted one at a time, so the cost is one pass over the inputs per axis.
    """
    spatial = inputs.shape[2:]
    kernel = layer.kernel_size
    if inputs.dim() != len(kernel) + 2:
        raise ValueError(f"campaign_ handles {type(layer).__name__} layers fed [N, channels, *positions]; got "
                         f"input {tuple(inputs.shape)}")
    taps, positions = [], 1
    for axis, (size, k) in enumerate(zip(spatial, kernel)):
        stride, dilation = layer.stride[axis], layer.dilation[axis]
        if isinstance(layer.padding, str):  # "valid" or "same" (extra padding on the far side, as torch does)
            before = dilation * (k - 1) // 2 if layer.padding == "same" else 0
            after = dilation * (k - 1) - before if layer.padding == "same" else 0
        else:
            before = after = layer.padding[axis]
        n_out = (size + before + after - dilation * (k - 1) - 1) // stride + 1
        index = (torch.arange(n_out)[:, None] * stride - before + torch.arange(k)[None, :] * dilation)
        inside = (index >= 0) & (index < size)
        tap = torch.zeros(size, k, dtype=inputs.dtype)
        tap[index[inside], torch.arange(k).expand_as(index)[inside]] = 1.0
        taps.append(tap.to(inputs.device))
        positions *= n_out
    n, channels = inputs.shape[:2]
    out = inputs @ taps[-1]  # [N, C, L_0, ..., L_{m-2}, k_{m-1}]
    for axis in range(len(taps) - 2, -1, -1):
        out = taps[axis].T @ out.reshape(n, channels, *spatial[:axis], spatial[axis], -1)
    return out.reshape(n, -1) / positions


def _sequential_path(model: nn.Module, layers: Sequence[nn.Module]) -> Optional[List[int]]:
    """Positions of ``layers`` among the children of a plain ``nn.Sequential`` (increasing), or ``None``
    when the model is anything else: then each layer's inputs come from a forward pass with a hook."""
    if (not isinstance(model, nn.Sequential) or type(model).forward is not nn.Sequential.forward
            or model._forward_hooks or model._forward_pre_hooks):
        return None
    children = list(model)
    positions = []
    for layer in layers:
        where = [i for i, child in enumerate(children) if child is layer]
        if not where or (positions and where[0] <= positions[-1]):
            return None
        positions.append(where[0])
    return positions


#: Bytes of the largest activation of one forward chunk when a plain ``nn.Sequential`` is walked.
_CHUNK_BYTES = 1 << 22


def _run_children(children: Sequence[nn.Module], h: torch.Tensor, x_shape, batch_size: int) -> torch.Tensor:
    """``h`` through ``children`` in turn, at most ``batch_size`` samples at a time.

    The first chunk of 16 samples measures the largest activation per sample; the later chunks hold
    about ``_CHUNK_BYTES`` of it, so that the activations stay in the cache (a convolution's output
    maps are large: 1,000 samples of 16 maps of 28 x 28 take 50 MB and run at less than half the speed).
    """
    if not children:
        return h
    parts, start, size = [], 0, min(batch_size, 16)
    while start < h.shape[0]:
        chunk, widest = h[start:start + size], 0
        try:
            for child in children:
                chunk = child(chunk)
                if isinstance(chunk, torch.Tensor) and chunk.dim():
                    widest = max(widest, chunk[:1].numel() * chunk.element_size())
        except RuntimeError as err:
            raise ValueError(f"campaign_: the data (shape {tuple(x_shape)}) does not fit the model: {err}") from err
        parts.append(chunk)
        start += size
        size = max(1, min(batch_size, _CHUNK_BYTES // max(widest, 1)))
    return torch.cat(parts)


@torch.no_grad()
def campaign_(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, base: str = "xavier",
              mode: str = "ibci", alphas: Optional[Union[float, Sequence[float]]] = None,
              candidate_ratio: float = 5.0, max_candidates: int = 1000, grouped: bool = False,
              combine: str = "orthogonal", response_fn: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
              layers: Optional[Iterable[str]] = None, num_classes: Optional[int] = None, batch_size: int = 1000,
              generator: Optional[torch.Generator] = None, return_report: bool = False
              ) -> Union[nn.Module, Tuple[nn.Module, Dict[str, LayerCampaign]]]:
    r"""Neuron Campaign initialization (Mao et al., CIKM 2021) of every weight layer, in place.

    For each layer (``nn.Linear`` or ``nn.Conv*``, in forward order), on the responses of the layers
    already initialized: draw :math:`C = \min(\lceil r\,k \rceil, C_\max)` candidates (at least ``k``)
    from ``base`` with the layer's true fan-in and fan-out; score them with
    :math:`\alpha\,\hat I(X;Z) + (1-\alpha)\,\hat I(Z;Y)` (see the module docstring and
    :func:`information_scores`); elect ``k`` with :func:`select_neurons`; write the weight; zero the bias.

    Args:
        model: the network, initialized in place (its train/eval mode is restored afterwards; the passes
            run in eval mode, so dropout is off and BatchNorm uses its running statistics).
        x: the data to score on, ``[N, ...]`` as the model takes it (the official code uses the whole
            training set; a few thousand samples are enough).
        y: ``[N]`` class labels; every class ``0..K-1`` must occur.
        base: ``"xavier"`` or ``"he"`` (normal distribution) for the candidates.
        mode: ``"ibci"`` (the criterion), ``"tie"`` (target information only), ``"iim"`` (input
            information only) or ``"random"`` (random scores: the control).
        alphas: weight of the input term, one per layer or one for all (default :func:`default_alphas`).
        candidate_ratio, max_candidates: :math:`r` and :math:`C_\max` (official: 5 and 1000).
        grouped: use the official code's grouped election (:func:`best_class_groups`).
        combine: ``"orthogonal"``: the rows are the elected directions :math:`a_t` scaled to their
            candidate's norm (orthogonal neurons); ``"candidates"``: the elected candidates as drawn.
        response_fn: applied to candidate responses before scoring (e.g. ``torch.relu`` to score
            post-activation responses); default: the layer's own output (pre-activation).
        layers: names of the layers to initialize (default all weight layers); the others keep their
            weights but are still run to compute the responses.
        num_classes: number of classes (default ``y.max() + 1``).
        batch_size: at most this many samples per forward chunk (a plain ``nn.Sequential`` takes fewer
            when they would hold more than 4 MB of activations, which then stay in the cache).
        generator: for the candidates (and the random scores); pass a seeded one for reproducibility.
        return_report: also return ``{layer name: LayerCampaign}``.

    **Checks.** Before any weight changes: the options (finite ``candidate_ratio`` >= 1, integer
    ``max_candidates`` and ``batch_size`` >= 1, ``alphas`` finite in ``[0, 1]``, one per layer), ``x``
    (a tensor without NaN/inf), ``y`` (:func:`neuronlab.classwise.check_labels`: one integer label per
    sample, any integer dtype, in ``0..K-1``, every class present, at least 2 classes for ``"ibci"``
    and ``"tie"``), the layer names and kinds, and one dry forward pass of two samples (data that does
    not fit the model raises ``ValueError``). Whatever fails after that (e.g. a ``response_fn`` that
    returns NaN, a layer fed inputs it cannot score) restores every weight to what it was before the
    call; the train/eval mode is restored too.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> g = torch.Generator().manual_seed(0)
        >>> x, y = torch.randn(60, 8, generator=g), torch.arange(3).repeat(20)
        >>> model = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 3))
        >>> model, report = campaign_(model, x, y, generator=g, return_report=True)
        >>> [(name, r.alpha, r.candidates.shape[0]) for name, r in report.items()]
        [('0', 1.0, 20), ('2', 0.0, 15)]
        >>> w = model[0].weight  # the elected neurons are orthogonal: W W^T is diagonal
        >>> torch.allclose(w @ w.T, torch.diag((w * w).sum(dim=1)), atol=1e-6)
        True
    """
    if base not in BASES:
        raise ValueError(f"unknown base scheme {base!r}; choose one of {BASES}")
    if mode not in MODES:
        raise ValueError(f"unknown campaign mode {mode!r}; choose one of {MODES}")
    if combine not in ("orthogonal", "candidates"):
        raise ValueError(f"combine must be 'orthogonal' or 'candidates', got {combine!r}")
    _finite("candidate_ratio", candidate_ratio)
    _integer("max_candidates", max_candidates)
    if candidate_ratio < 1 or max_candidates < 1:
        raise ValueError(f"candidate_ratio must be >= 1 and max_candidates >= 1, got {candidate_ratio}, {max_candidates}")
    _integer("batch_size", batch_size, 1)
    if response_fn is not None and not callable(response_fn):
        raise TypeError(f"response_fn must be a function of the responses (e.g. torch.relu), got "
                        f"{type(response_fn).__name__}")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a tensor of inputs, got {type(x).__name__}")
    if x.dim() == 0:
        raise ValueError("x must be a batch of inputs [N, ...], got a 0-d tensor (a single number)")
    if not _all_finite(x):
        raise ValueError("x contains NaN or inf: clean or standardize the data first")
    if num_classes is not None and not (isinstance(num_classes, numbers.Real) and not isinstance(num_classes, bool)
                                        and float(num_classes).is_integer()):
        raise TypeError(f"num_classes must be an integer, got {num_classes!r}")
    y, num_classes = check_labels(y, x.shape[0], num_classes, every_class=True)

    all_layers = dict(weight_layers(model))
    chosen = list(all_layers) if layers is None else ([layers] if isinstance(layers, str) else list(layers))
    unknown = [n for n in chosen if n not in all_layers]
    if unknown:
        raise ValueError(f"campaign_: unknown layer(s) {unknown}; weight layers are {list(all_layers)}")
    for name in chosen:
        layer = all_layers[name]
        if not isinstance(layer, nn.Linear) and (layer.groups != 1 or layer.padding_mode != "zeros"):
            raise ValueError(f"campaign_ handles convolutions with groups=1 and zero padding only; layer {name!r} "
                             f"has groups={layer.groups}, padding_mode={layer.padding_mode!r}: leave it out "
                             "with layers=[...]")
    if getattr(alphas, "ndim", None) == 0:  # a 0-d tensor or array: one number
        alphas = alphas.item()
    if alphas is not None:
        if isinstance(alphas, numbers.Real) and not isinstance(alphas, bool):
            checked = [alphas]
        elif isinstance(alphas, (str, bytes, bool)) or not isinstance(alphas, Iterable):
            raise TypeError(f"alphas must be a number in [0, 1] or one per layer, got {alphas!r}")
        else:
            alphas = list(alphas)
            checked = alphas
        for a in checked:
            if not 0.0 <= _finite("each alpha", a) <= 1.0:
                raise ValueError(f"alphas must lie in [0, 1] (the weight of the input term), got {a}")
    param = next(model.parameters())
    device = param.device
    x = x.to(device)
    was_training = model.training
    model.eval()
    try:
        order = forward_call_order(model, x[:2], [(n, all_layers[n]) for n in chosen])
    except (RuntimeError, TypeError, ValueError) as err:
        model.train(was_training)
        raise ValueError(f"campaign_: the data (shape {tuple(x.shape)}, dtype {x.dtype}) does not fit the model: "
                         f"{err}. Pass x as the model takes it; no weight was changed.") from err
    if num_classes < 2 and mode in ("ibci", "tie"):
        model.train(was_training)
        raise ValueError("the labels hold a single class, so the target information I(Z;Y) is undefined: pass "
                         "labels of at least 2 classes, or use mode='iim' or 'random', which do not score "
                         "against the classes")
    if alphas is None:
        alpha_list = default_alphas(len(order))
    elif isinstance(alphas, numbers.Real):
        alpha_list = [float(alphas)] * len(order)
    else:
        alpha_list = [float(a) for a in alphas]
        if len(alpha_list) != len(order):
            model.train(was_training)
            raise ValueError(f"alphas has {len(alpha_list)} entries but {len(order)} layers are initialized "
                             f"({order}); give one alpha per layer or a single number")

    report: Dict[str, LayerCampaign] = {}
    # a plain nn.Sequential is walked child by child: each layer's inputs are the previous layer's inputs
    # pushed through the children between the two, instead of a forward pass from the start per layer
    path = _sequential_path(model, [all_layers[name] for name in order])
    children = list(model) if path is not None else []
    h, at = x, 0  # h: the inputs of children[at]
    try:
        # a failure half-way leaves every weight as it was
        with weights_restored_on_error({name: all_layers[name] for name in order}):
            for step, (name, alpha) in enumerate(zip(order, alpha_list)):
                start = time.perf_counter()
                layer = all_layers[name]
                weight = layer.weight
                k = weight.shape[0]
                fan_in, fan_out = fan_in_out(weight)
                std = math.sqrt(2.0 / (fan_in + fan_out)) if base == "xavier" else math.sqrt(2.0 / fan_in)
                n_candidates = max(k, min(math.ceil(candidate_ratio * k), max_candidates))
                candidates = torch.randn((n_candidates, *weight.shape[1:]), generator=generator) * std
                candidates = candidates.to(device=device, dtype=weight.dtype)

                if path is None:
                    inputs = _layer_inputs(model, layer, x, batch_size)
                else:
                    inputs = h = _run_children(children[at:path[step]], h, x.shape, batch_size)
                    at = path[step]
                responses = _candidate_responses(layer, inputs, candidates, response_fn, batch_size)
                info = {key: v.cpu() for key, v in information_scores(responses, y, num_classes).items()}
                scores = campaign_scores(info, alpha, mode, generator=generator)
                groups = best_class_groups(responses, y, num_classes) if grouped else None
                flat = candidates.flatten(1)
                election = select_neurons(flat, scores.to(device), k, groups=groups)
                if combine == "orthogonal":
                    rows = election.directions.to(device) * flat[election.indices.to(device)].norm(dim=1, keepdim=True)
                else:
                    rows = flat[election.indices.to(device)]
                weight.copy_(rows.reshape(weight.shape))
                if getattr(layer, "bias", None) is not None:
                    layer.bias.zero_()
                if return_report:
                    report[name] = LayerCampaign(name=name, alpha=alpha if mode == "ibci" else
                                                 {"tie": 0.0, "iim": 1.0, "random": float("nan")}[mode],
                                                 candidates=candidates.cpu(), info=info, scores=scores.float(),
                                                 election=election, seconds=time.perf_counter() - start)
    finally:
        model.train(was_training)
    return (model, report) if return_report else model
