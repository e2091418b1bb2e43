r"""Per-class statistics of neuron responses, shared by every method of the book.

Most neuron-level methods ask one question of a layer: how does each neuron respond to each class? The
neuron campaign scores candidates by between- and within-class variance, NSR penalizes the within-class
variance, the cooperating-classifier view groups samples by class, and chapter 5 ranks neurons by class
selectivity. The arithmetic is the same every time, so it lives here, once:

* :func:`check_labels` -- the one label check: a 1-D integer tensor (or array) of class indices, one per
  sample, inside ``0 .. K-1`` (optionally: every class present);
* :func:`class_counts`, :func:`class_sums`, :func:`class_means`, :func:`class_moments` -- per-class
  counts, sums, means and (population) variances of ``[N, n]`` responses, by one matrix product with the
  one-hot labels :math:`Y \in \{0,1\}^{N \times K}`: sums :math:`S = Y^\top X`, means
  :math:`\mu_{jn} = S_{jn} / N_j`;
* :func:`observations` -- convolutional responses ``[N, C, *positions]`` as observations of channels;
* :func:`intra_class_variance` and :class:`IntraClassVariance` -- the intra-class variance of a layer,
  as a one-shot function and as a streaming metric (``update`` / ``compute`` / ``reset``, in the style of
  torchmetrics) over the same two private helpers, so both give the same number.

Nothing here trains, hooks or plots: the functions take response tensors and labels.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "check_labels",
    "class_counts",
    "class_sums",
    "class_means",
    "class_moments",
    "observations",
    "intra_class_variance",
    "IntraClassVariance",
]

Labels = Union[torch.Tensor, np.ndarray]


#: Unsigned integer dtypes wider than uint8, which torch stores but cannot reduce (min/max).
_WIDE_UNSIGNED = tuple(getattr(torch, name) for name in ("uint16", "uint32", "uint64") if hasattr(torch, name))


def check_labels(labels: Labels, n: int, num_classes: Optional[int] = None, *, every_class: bool = False
                 ) -> Tuple[torch.Tensor, int]:
    """Check class labels and return them as a ``long`` tensor with the number of classes.

    Args:
        labels: ``[n]`` class indices, a tensor or a NumPy array of integers (any integer dtype, also
            unsigned ones, which are converted).
        n: the number of samples the labels belong to.
        num_classes: :math:`K`; ``None`` takes ``labels.max() + 1`` (then the labels must not be empty).
        every_class: every class ``0 .. K-1`` must occur (methods that divide by class counts need it).

    Returns:
        ``(labels, K)``: the labels as ``torch.long`` on their device, and :math:`K`.

    Raises:
        TypeError: not a tensor or an array.
        ValueError: wrong shape, a non-integer dtype, a label outside ``0 .. K-1``, no samples where
            :math:`K` must be inferred, or (``every_class``) a class without samples. Each message says
            what to change.

    Example:
        >>> import torch
        >>> check_labels(torch.tensor([0, 2, 1, 2]), 4)
        (tensor([0, 2, 1, 2]), 3)
        >>> check_labels(torch.tensor([0, 3]), 2, num_classes=3)
        Traceback (most recent call last):
        ...
        ValueError: labels must lie in 0..2, got values from 0 to 3: check num_classes
    """
    if isinstance(labels, np.ndarray):
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
        labels = torch.from_numpy(np.ascontiguousarray(labels))
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"labels must be a tensor of class indices, got {type(labels).__name__}")
    if labels.dim() != 1 or labels.shape[0] != n:
        raise ValueError(f"labels must have shape [{n}] (one class index per sample), got {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if labels.dtype in _WIDE_UNSIGNED:  # valid indices, but torch has no min/max for them: take them as int64
        wide = labels.dtype
        labels = labels.long()
        if wide == torch.uint64 and labels.numel() and bool((labels < 0).any()):  # wrapped around
            raise ValueError("labels hold values of 2**63 or more (uint64): they cannot be class indices")
    if n == 0 and (num_classes is None or every_class):
        raise ValueError("no samples: the statistics need at least one labelled sample")
    if num_classes is not None and num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    if n:
        low, high = int(labels.min()), int(labels.max())
        k = high + 1 if num_classes is None else int(num_classes)
        if low < 0 or high >= k:
            raise ValueError(f"labels must lie in 0..{k - 1}, got values from {low} to {high}: check num_classes")
    else:
        k = int(num_classes)
    labels = labels.long()
    if every_class:
        missing = torch.nonzero(torch.bincount(labels.cpu(), minlength=k) == 0).flatten().tolist()
        if missing:
            raise ValueError(f"class(es) {missing} have no sample in the data: every class is needed here; pass a "
                             "stratified sample (or num_classes= matching the labels present)")
    return labels, k


def _onehot(labels: torch.Tensor, num_classes: int, like: torch.Tensor) -> torch.Tensor:
    return F.one_hot(labels.to(like.device), num_classes).to(like.dtype)


def class_counts(labels: Labels, num_classes: Optional[int] = None) -> torch.Tensor:
    """``[K]`` number of samples of each class (``int64``).

    Example:
        >>> import torch
        >>> class_counts(torch.tensor([0, 2, 2]), 4)
        tensor([1, 0, 2, 0])
    """
    labels, k = check_labels(labels, len(labels), num_classes)
    return torch.bincount(labels, minlength=k)


def class_sums(responses: torch.Tensor, labels: Labels, num_classes: Optional[int] = None) -> torch.Tensor:
    r"""``[K, n]`` per-class sums :math:`S = Y^\top X` of responses ``[N, n]``, in the responses' dtype.

    Example:
        >>> import torch
        >>> class_sums(torch.tensor([[1.0], [2.0], [4.0]]), torch.tensor([0, 1, 1]))
        tensor([[1.],
                [6.]])
    """
    _check_responses(responses)
    labels, k = check_labels(labels, responses.shape[0], num_classes)
    return _onehot(labels, k, responses).T @ responses


def class_means(responses: torch.Tensor, labels: Labels, num_classes: Optional[int] = None) -> torch.Tensor:
    r"""``[K, n]`` per-class means :math:`\mu_{jn} = \frac{1}{N_j}\sum_{i: y_i = j} x_{in}`; a class without
    samples gets NaN.

    Example:
        >>> import torch
        >>> class_means(torch.tensor([[1.0], [2.0], [4.0]]), torch.tensor([0, 1, 1]), 3)
        tensor([[1.],
                [3.],
                [nan]])
    """
    _check_responses(responses)
    labels, k = check_labels(labels, responses.shape[0], num_classes)
    onehot = _onehot(labels, k, responses)
    return onehot.T @ responses / onehot.sum(0)[:, None]


def class_moments(responses: torch.Tensor, labels: Labels, num_classes: Optional[int] = None
                  ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Per-class counts ``[K]``, means ``[K, n]`` and population variances ``[K, n]`` of ``[N, n]`` responses.

    .. math::
        \mu_{jn} = \frac{1}{N_j}\sum_{i: y_i=j} x_{in}, \qquad
        \sigma^2_{jn} = \frac{1}{N_j}\sum_{i: y_i=j} x_{in}^2 - \mu_{jn}^2 ,

    both from two matrix products with the one-hot labels (the variance clamped at 0 against rounding).
    Computed in the responses' dtype: pass float64 where cancellation matters. Classes without samples
    get NaN.

    Example:
        >>> import torch
        >>> responses = torch.tensor([[1.0], [3.0], [5.0]])
        >>> labels = torch.tensor([0, 0, 1])
        >>> counts, means, variances = class_moments(responses, labels)
        >>> counts.tolist(), means.flatten().tolist(), variances.flatten().tolist()
        ([2.0, 1.0], [2.0, 5.0], [1.0, 0.0])
    """
    _check_responses(responses)
    labels, k = check_labels(labels, responses.shape[0], num_classes)
    onehot = _onehot(labels, k, responses)
    counts = onehot.sum(0)
    means = onehot.T @ responses / counts[:, None]
    second = onehot.T @ (responses * responses) / counts[:, None]
    return counts, means, (second - means**2).clamp_min(0.0)


def observations(responses: torch.Tensor, labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Responses as ``[observations, neurons]`` with one label per observation.

    A dense response ``[N, n]`` is returned as it is. A convolutional response ``[N, C, *positions]``
    becomes ``[N * positions, C]``: every position of a sample is an observation of each channel, with
    the sample's label (a channel should respond steadily at every place of every sample of a class).
    """
    if responses.dim() < 2:
        raise ValueError(f"a layer response needs a sample and a neuron dimension, got shape {tuple(responses.shape)}")
    if responses.dim() == 2:
        return responses, labels
    if labels.shape[0] != responses.shape[0]:
        raise ValueError(f"labels must have one entry per sample ({responses.shape[0]}), got {labels.shape[0]}")
    x = responses.flatten(2).transpose(1, 2)  # [N, positions, channels]
    return x.reshape(-1, x.shape[2]), labels.repeat_interleave(x.shape[1])


def _check_responses(responses: torch.Tensor) -> None:
    if not isinstance(responses, torch.Tensor) or responses.dim() != 2:
        shape = tuple(responses.shape) if isinstance(responses, torch.Tensor) else type(responses).__name__
        raise ValueError(f"responses must be a [samples, neurons] tensor, got {shape}")


# -------------------------------------------------------------------- intra-class variance: the helpers
# State: shifted per-class sums and sums of squares in float64 plus counts. The shift (the first batch's
# mean) keeps the subtraction E[x^2] - E[x]^2 accurate when responses sit far from zero.
_State = Dict[str, Optional[torch.Tensor]]


def _icv_update(state: _State, responses: torch.Tensor, labels: Labels, num_classes: int) -> None:
    labels, _ = check_labels(labels, responses.shape[0], num_classes)
    x, y = observations(responses.detach(), labels)
    x = x.double().cpu()
    if not torch.isfinite(x).all():
        raise ValueError("responses contain NaN or inf: check the model and the data")
    if state["sum"] is None:
        state["shift"] = x.mean(0)
        state["sum"] = torch.zeros(num_classes, x.shape[1], dtype=torch.float64)
        state["sq"] = torch.zeros_like(state["sum"])
    elif x.shape[1] != state["sum"].shape[1]:
        raise ValueError(f"responses have {x.shape[1]} neurons, earlier batches had {state['sum'].shape[1]}")
    x = x - state["shift"]
    onehot = F.one_hot(y.cpu(), num_classes).double()
    state["sum"] += onehot.T @ x
    state["sq"] += onehot.T @ (x * x)
    state["count"] += onehot.sum(0)


def _icv_compute(state: _State) -> Dict[str, torch.Tensor]:
    counts = state["count"][:, None]
    mean = state["sum"] / counts
    per_class = (state["sq"] / counts - mean**2).clamp_min(0.0)
    seen = state["count"] > 0
    alpha = state["count"][seen] / state["count"][seen].sum()
    per_neuron = (alpha[:, None] * per_class[seen]).sum(0)
    return {"per_class": per_class, "per_neuron": per_neuron, "layer": per_neuron.mean(), "counts": state["count"]}


def _icv_state(num_classes: int) -> _State:
    return {"sum": None, "sq": None, "shift": None, "count": torch.zeros(num_classes, dtype=torch.float64)}


def intra_class_variance(responses: torch.Tensor, labels: Labels, num_classes: Optional[int] = None
                         ) -> Dict[str, torch.Tensor]:
    r"""Per-class, per-neuron variance of a layer's responses: the quantity NSR makes small.

    For neuron :math:`n` and class :math:`j` with responses :math:`X_{nj}`,

    .. math::
        \operatorname{Var}(X_{nj}) = \mathbb E[X_{nj}^2] - \mathbb E^2[X_{nj}], \qquad
        \sigma_n = \sum_j \alpha_j \operatorname{Var}(X_{nj}),

    with :math:`\alpha_j` the class frequencies (Fu, Du, Mao et al., NeurIPS 2022, eq. 2).

    Args:
        responses: ``[N, n]``, or conv responses ``[N, C, H, W]`` (every position counts as an
            observation of its channel, :func:`observations`).
        labels: ``[N]`` class indices.
        num_classes: :math:`K` (default ``labels.max() + 1``).

    Returns:
        dict: float64 tensors under four keys, ``"per_class"`` (``[K, n]`` population variances, NaN for a
        class with no sample), ``"per_neuron"`` (``[n]``, :math:`\sigma_n`), ``"layer"`` (the mean of
        ``per_neuron``) and ``"counts"`` (``[K]`` observations per class). :class:`IntraClassVariance`
        gives the same over batches.

    Example:
        >>> import torch
        >>> x = torch.tensor([[0.0], [2.0], [5.0], [5.0]])
        >>> y = torch.tensor([0, 0, 1, 1])
        >>> intra_class_variance(x, y)["per_neuron"]      # (1/2) * 1 + (1/2) * 0
        tensor([0.5000], dtype=torch.float64)
    """
    labels, k = check_labels(labels, responses.shape[0], num_classes)
    state = _icv_state(k)
    _icv_update(state, responses, labels, k)
    return _icv_compute(state)


class IntraClassVariance:
    r"""Streaming :func:`intra_class_variance`: ``update(responses, labels)`` per batch, then ``compute()``.

    The state is per-class sums, sums of squares (in float64, around a per-neuron shift: the first batch's
    mean) and counts, so any number of batches costs :math:`2Kn + K` numbers and the result equals the
    one-shot function on the concatenated batches.

    Example:
        >>> import torch
        >>> stat = IntraClassVariance(num_classes=2)
        >>> stat.update(torch.tensor([[0.0], [5.0]]), torch.tensor([0, 1]))
        >>> stat.update(torch.tensor([[2.0], [5.0]]), torch.tensor([0, 1]))
        >>> stat.compute()["layer"].item()
        0.5
    """

    def __init__(self, num_classes: int):
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.num_classes = num_classes
        self.reset()

    def reset(self) -> None:
        """Forget every batch seen."""
        self._state = _icv_state(self.num_classes)

    def update(self, responses: torch.Tensor, labels: Labels) -> None:
        """Add a batch: responses ``[N, n]`` (or ``[N, C, *positions]``) and labels ``[N]``."""
        _icv_update(self._state, responses, labels, self.num_classes)

    def compute(self) -> Dict[str, torch.Tensor]:
        """The statistics of every batch since the last :meth:`reset` (see :func:`intra_class_variance`)."""
        if self._state["sum"] is None:
            raise RuntimeError("IntraClassVariance.compute() called before any update()")
        return _icv_compute(self._state)
