r"""Neuron Steadiness Regularization (NSR; Fu, Du, Mao et al., NeurIPS 2022) and the statistics behind it.

Under cross-entropy training the *intra-class* variance of a neuron's response keeps growing, and
misclassified samples sit further from their class's mean response than correct ones. NSR adds to the
loss, for the neurons :math:`n` of one (or a few) layers,

.. math::
    \mathcal L = \mathcal L_\text{CE} + \sum_n \lambda_n \sigma_n, \qquad
    \sigma_n = \sum_j \alpha_j \operatorname{Var}(X_{nj})
            = \sum_j \alpha_j \big(\mathbb E[X_{nj}^2] - \mathbb E^2[X_{nj}]\big),

with :math:`X_{nj}` the response of neuron :math:`n` to samples of class :math:`j`. As in the paper, the
first term comes from the current mini-batch (it carries the gradient) and the class means from the most
recent :math:`m` mini-batches (detached). :class:`NeuronSteadiness` keeps those means as running
per-class sums and counts of the last :math:`m` batches, not as raw activations, so its memory is
:math:`m \times K \times n` numbers whatever the batch size.

This module holds the method: the regularizer (:class:`NeuronSteadiness`, usable as an ``extra_losses``
term of :func:`neuronlab.train.fit` or in any training loop), the per-epoch metric
:func:`variance_metrics`, the layer choice :func:`pick_layer_by_variance`, :func:`variance_by_correctness`
and the complexity measure :func:`consistency_of_representations`. The intra-class variance itself is
:func:`neuronlab.classwise.intra_class_variance` (streaming: :class:`neuronlab.classwise.IntraClassVariance`).
The paper's tables, the run protocol and the chapter's experiments are in
:mod:`neuronlab.experiments.ch03_nsr`.
"""

from __future__ import annotations

import math
from typing import Dict, Iterable, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from . import classwise
from .probe import RecordingTerm, ResponseRecorder, collect_responses, resolve_layers

__all__ = [
    "NeuronSteadiness",
    "NonFiniteResponseError",
    "variance_metrics",
    "pick_layer_by_variance",
    "variance_by_correctness",
    "consistency_of_representations",
]


def variance_metrics(layers: Sequence[str], split: str = "train", num_classes: Optional[int] = None) -> Dict:
    """Per-epoch metrics for :func:`neuronlab.train.fit` (``metrics=...``): the mean intra-class variance
    of each layer's responses on a split of the data (``x_<split>``/``y_<split>``), as
    ``{"icv_<layer>": fn(model, data)}``. ``fit`` calls them in eval mode after every epoch; the layers
    share one forward pass, redone only when the model's parameters or buffers have changed."""
    layers = list(layers)
    cache: Dict[str, object] = {}

    def responses(model, data):
        version = (id(model), tuple(t._version for t in [*model.parameters(), *model.buffers()]))
        if cache.get("version") != version:
            cache["version"] = version
            cache["responses"] = collect_responses(model, getattr(data, f"x_{split}"), layers)
        return cache["responses"]

    def metric(layer):
        def fn(model, data):
            stat = classwise.IntraClassVariance(num_classes or data.num_classes)
            stat.update(responses(model, data)[layer], getattr(data, f"y_{split}"))
            return stat.compute()["layer"].item()
        return fn

    return {f"icv_{layer}": metric(layer) for layer in layers}


def pick_layer_by_variance(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int,
                           candidates: Iterable[Union[str, nn.Module]], batch_size: int = 1000) -> str:
    """The candidate layer with the largest mean intra-class variance on ``(x, y)`` (one warm-up pass).

    The paper regularizes a single layer and recommends the one whose neurons vary most within classes.
    """
    names = list(resolve_layers(model, list(candidates)))
    responses = collect_responses(model, x, names, batch_size=batch_size)
    scores = {}
    for name in names:
        stat = classwise.IntraClassVariance(num_classes)
        stat.update(responses[name], y)
        scores[name] = stat.compute()["layer"].item()
    return max(scores, key=scores.get)


class NonFiniteResponseError(FloatingPointError, ValueError):
    """The NSR penalty became NaN or infinite: the responses diverged (a too large learning rate or lambda)
    or the data hold NaN. A ``FloatingPointError`` like :func:`neuronlab.train.fit`'s divergence error,
    and a ``ValueError`` for bad input."""


class NeuronSteadiness(RecordingTerm):
    r"""The NSR loss term on one or more layers of any model, through forward hooks.

    Use it as a context manager around training; it records the chosen layers' responses (with their
    autograd graph) at every forward pass, and calling it after the forward pass returns the penalty::

        with NeuronSteadiness(model, "fc3", num_classes=10, lam=7.4865, memory=5) as nsr:
            # fit calls nsr(ctx) at each step:
            history = fit(model, data, epochs=100, extra_losses={"nsr": nsr})
        # or in a hand-written loop: loss = F.cross_entropy(model(x), y) + nsr.loss(y)

    The hooks are removed when the block exits, also on error.

    **Estimator.** For each regularized layer, with :math:`B_j` the samples of class :math:`j` in the
    current mini-batch and :math:`\mu_{nj}` the mean response of neuron :math:`n` to class :math:`j` over
    the last ``memory`` mini-batches (this one included, detached):

    .. math::
        \sigma_n = \sum_j \alpha_j \frac{1}{|B_j|} \sum_{i \in B_j} (x_{in} - \mu_{nj})^2 ,
        \qquad \text{penalty} = \frac{1}{D} \sum_n \lambda_n \sigma_n ,

    with :math:`D` the number of neurons of the layer for ``neuron_reduction="mean"`` (the default) and
    :math:`D = 1` for ``neuron_reduction="sum"``. With ``class_weights="frequency"``
    (:math:`\alpha_j = |B_j|/|B|`, the default) and
    ``neuron_reduction="mean"`` this is exactly the official code's ``lam * mean((x - mu[y])**2)``, so its
    published lambdas carry over; the paper writes the sum over neurons (``neuron_reduction="sum"``).
    Classes absent from the batch contribute nothing; a class seen for the first time gets its mean from
    the current batch alone.

    Args:
        model: the network (or its ``DistributedDataParallel`` wrapper's ``module``).
        layers: a layer name or module, a list of them, or ``"auto"``: the layer with the largest
            intra-class variance on ``warmup`` among ``auto_candidates`` (default: every ``nn.Linear`` and
            ``nn.Conv*`` layer).
        num_classes: :math:`K`.
        lam: :math:`\lambda`: a number, a ``[n]`` tensor (one per neuron), or ``{layer: number or tensor}``.
        memory: :math:`m`, the number of recent mini-batches whose class means are used (official: 5 for
            MLPs, 1 for CNNs).
        class_weights: ``"frequency"``, ``"uniform"`` (:math:`1/K_\text{batch}` over the classes in the
            batch) or a ``[K]`` tensor of fixed :math:`\alpha_j`.
        neuron_reduction: ``"mean"`` (official code) or ``"sum"`` (the paper's formula) over neurons.
        conv: how a convolutional response ``[N, C, H, W]`` is read: ``"positions"`` (every position is an
            observation of its channel: a channel should respond steadily at every place of every sample
            of a class) or ``"mean"`` (a channel's response is its mean over positions).
        distributed: all-reduce the per-class sums and counts over the default process group, so that
            loss and gradients equal single-process training on the global batch (default: when
            ``torch.distributed`` is initialized). Each rank's returned loss is its share times the world
            size, which makes ``DistributedDataParallel``'s gradient averaging exact; ``last_value`` holds
            the global penalty on every rank.
        warmup: ``(x, y)`` for ``layers="auto"``.

    For graph networks pass the training mask (:func:`neuronlab.train.fit` does, through
    ``StepContext.mask``): only training nodes enter the statistics.

    Example:
        An identity layer, so that its responses are the inputs: neuron 0 answers class 0 with 0 and 2
        (mean 1) and class 1 with 5 and 5; neuron 1 answers class 0 with 1 and 1 and class 1 with 0 and 4
        (mean 2). Its intra-class variances are :math:`\sigma = (\tfrac12 \cdot 1 + \tfrac12 \cdot 0,\;
        \tfrac12 \cdot 0 + \tfrac12 \cdot 4) = (0.5, 2)`, and with :math:`\lambda = 2` and the mean over
        the two neurons the penalty is :math:`2 \cdot 1.25 = 2.5`, the official ``lam * mean((x - mu[y])**2)``:

        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(2, 2))
        >>> with torch.no_grad():
        ...     _ = model[0].weight.copy_(torch.eye(2))
        ...     _ = model[0].bias.zero_()
        >>> x = torch.tensor([[0.0, 1.0], [2.0, 1.0], [5.0, 0.0], [5.0, 4.0]])
        >>> y = torch.tensor([0, 0, 1, 1])
        >>> with NeuronSteadiness(model, "0", num_classes=2, lam=2.0, memory=1) as nsr:
        ...     logits = model(x)
        ...     penalty = nsr.loss(y)
        >>> penalty.item()
        2.5
        >>> mu = torch.tensor([[1.0, 1.0], [5.0, 2.0]])  # class means, a row each
        >>> (2.0 * ((x - mu[y]) ** 2).mean()).item()
        2.5
    """

    def __init__(self, model: nn.Module, layers, num_classes: int, *, lam=1.0, memory: int = 5,
                 class_weights: Union[str, torch.Tensor] = "frequency", neuron_reduction: str = "mean",
                 conv: str = "positions", distributed: Optional[bool] = None, warmup=None,
                 auto_candidates: Optional[Sequence[str]] = None):
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        if memory < 1:
            raise ValueError(f"memory must be at least 1 mini-batch, got {memory}")
        if neuron_reduction not in ("mean", "sum"):
            raise ValueError(f"neuron_reduction must be 'mean' or 'sum', got {neuron_reduction!r}")
        if conv not in ("positions", "mean"):
            raise ValueError(f"conv must be 'positions' or 'mean', got {conv!r}")
        if isinstance(class_weights, str) and class_weights not in ("frequency", "uniform"):
            raise ValueError(f"class_weights must be 'frequency', 'uniform' or a tensor, got {class_weights!r}")
        if isinstance(class_weights, torch.Tensor) and class_weights.shape != (num_classes,):
            raise ValueError(f"class_weights must have shape [{num_classes}], got {tuple(class_weights.shape)}")
        if isinstance(layers, str) and layers == "auto":
            if warmup is None:
                raise ValueError("layers='auto' needs warmup=(x, y) to measure the intra-class variance")
            candidates = auto_candidates or [n for n, m in model.named_modules()
                                             if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))]
            layers = pick_layer_by_variance(model, warmup[0], warmup[1], num_classes, candidates)
        self.model = model
        self.layers = resolve_layers(model, layers)
        self.num_classes = num_classes
        self.memory = memory
        self.class_weights = class_weights
        self.neuron_reduction = neuron_reduction
        self.conv = conv
        self.distributed = distributed
        self.lam = {name: (lam[name] if isinstance(lam, Mapping) else lam) for name in self.layers}
        if isinstance(lam, Mapping):
            unknown = set(lam) - set(self.layers)
            if unknown:
                raise ValueError(f"lam has entries for layers that are not regularized: {sorted(unknown)}")
        self._recorder = ResponseRecorder(model, list(self.layers), detach=False)
        self._last: Optional[torch.Tensor] = None
        self.reset()

    # -------------------------------------------------------------------------------- state and hooks
    def reset(self) -> None:
        """Forget the running class statistics (e.g. between two training runs)."""
        self._sums: Dict[str, Optional[torch.Tensor]] = {name: None for name in self.layers}
        self._counts: Dict[str, Optional[torch.Tensor]] = {name: None for name in self.layers}
        self._slot = 0
        self._checked = False

    def _is_distributed(self) -> bool:
        if self.distributed is not None:
            return self.distributed
        return torch.distributed.is_available() and torch.distributed.is_initialized()

    # ------------------------------------------------------------------------------------------ loss
    def __call__(self, ctx) -> torch.Tensor:
        """The penalty for the forward pass just made; ``ctx`` is a :class:`neuronlab.train.StepContext`."""
        return self.loss(ctx.targets, mask=ctx.mask)

    def loss(self, targets: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The penalty for the last forward pass of the model, given its ``targets`` (and a node ``mask``)."""
        if not self._recorder.active:
            raise RuntimeError("NeuronSteadiness records nothing outside its with-block: use "
                               "`with NeuronSteadiness(...) as nsr:` around training")
        if targets.dim() != 1 or targets.dtype.is_floating_point or targets.dtype == torch.bool:
            raise ValueError(f"targets must be a 1-D tensor of class indices, got shape {tuple(targets.shape)} "
                             f"and dtype {targets.dtype}")
        distributed = self._is_distributed()
        world = torch.distributed.get_world_size() if distributed else 1
        total = None
        for name in self.layers:
            penalty = self._layer_penalty(name, self._recorder[name], targets, mask, distributed)
            total = penalty if total is None else total + penalty
        self._slot = (self._slot + 1) % self.memory
        value = total.detach()
        if distributed:
            value = value.clone()
            torch.distributed.all_reduce(value)
        if value.device.type == "cpu" and not math.isfinite(value.item()):  # NaN in a response reaches the penalty
            raise NonFiniteResponseError(f"the NSR penalty is not finite: the responses of {list(self.layers)} "
                                         "contain NaN or inf; lower the learning rate or lambda, or check the data")
        self._last = value
        return total * world if world > 1 else total

    def _layer_penalty(self, name: str, response: torch.Tensor, targets: torch.Tensor,
                       mask: Optional[torch.Tensor], distributed: bool) -> torch.Tensor:
        # Small networks make this a handful of tiny tensors, where the cost is the number of operations,
        # not arithmetic: hence one_hot (it also validates), fused sums, and one mse_loss for the penalty.
        if response.shape[0] != targets.shape[0]:
            raise ValueError(f"layer {name!r} saw {response.shape[0]} samples but {targets.shape[0]} targets "
                             "were given: call loss() right after the forward pass of this batch")
        y = targets
        if mask is not None:
            response, y = response[mask], y[mask]
        if response.dim() > 2:
            if self.conv == "mean":
                response = response.flatten(2).mean(2)
            else:
                response, y = classwise.observations(response, y)
        x = response
        if x.device.type != "cpu" and not self._checked:  # one_hot checks labels on the CPU only: check once
            classwise.check_labels(y, y.shape[0], self.num_classes)
            self._checked = True
        try:
            onehot = F.one_hot(y, self.num_classes).to(x.dtype)
        except RuntimeError as err:
            raise ValueError(f"labels must be class indices in 0..{self.num_classes - 1} ({err}): check "
                             "num_classes") from None
        if self._sums[name] is None:
            self._sums[name] = x.new_zeros(self.memory, self.num_classes, x.shape[1])
            self._counts[name] = x.new_zeros(self.memory, self.num_classes)
        sums, counts = self._sums[name][self._slot], self._counts[name][self._slot]
        torch.mm(onehot.T, x.detach(), out=sums)
        torch.sum(onehot, 0, out=counts)
        if distributed:
            stacked = torch.cat([sums, counts[:, None]], dim=1)
            torch.distributed.all_reduce(stacked)
            sums.copy_(stacked[:, :-1])
            counts.copy_(stacked[:, -1])
        means = self._sums[name].sum(0) / self._counts[name].sum(0).clamp_min(1)[:, None]  # no graph: detached
        centre = means[y]
        lam = self.lam[name]
        per_neuron = 1.0 / x.shape[1] if self.neuron_reduction == "mean" else 1.0
        # sigma_n = sum_j alpha_j / |B_j| * sum_{i in B_j} (x_in - mu_jn)^2, i.e. one weight per sample;
        # with frequency weights alpha_j / |B_j| = 1 / |B| for every sample.
        if isinstance(self.class_weights, str) and self.class_weights == "frequency":
            if not isinstance(lam, torch.Tensor):
                squared = F.mse_loss(x, centre, reduction="sum")
                if distributed:
                    return squared * (lam * per_neuron) / counts.sum()
                return squared * (lam * per_neuron / x.shape[0])
            per_sample = 1.0 / (counts.sum() if distributed else x.shape[0])
        elif isinstance(self.class_weights, torch.Tensor):
            per_sample = (onehot @ (self.class_weights.to(x) / counts.clamp_min(1)))[:, None]
        else:
            present = (counts > 0).to(x.dtype)
            per_sample = (onehot @ (present / present.sum().clamp_min(1) / counts.clamp_min(1)))[:, None]
        weights = per_sample * (lam.to(x) if isinstance(lam, torch.Tensor) else lam) * per_neuron
        return ((x - centre).square() * weights).sum()

    @property
    def last_value(self) -> Optional[float]:
        """The global penalty of the last step (all ranks together), as a number; ``None`` before any step.

        Raises ``ValueError`` if it is NaN or infinite (the responses diverged: lower the learning rate or
        lambda, or check the data)."""
        if self._last is None:
            return None
        value = self._last.item()
        if not math.isfinite(value):
            raise NonFiniteResponseError("the NSR penalty is not finite: the responses contain NaN or inf")
        return value

    def __repr__(self) -> str:
        return (f"NeuronSteadiness(layers={list(self.layers)}, num_classes={self.num_classes}, memory={self.memory}, "
                f"class_weights={self.class_weights if isinstance(self.class_weights, str) else 'tensor'}, "
                f"neuron_reduction={self.neuron_reduction!r}, conv={self.conv!r})")


def variance_by_correctness(responses: torch.Tensor, labels: torch.Tensor, predictions: torch.Tensor,
                            num_classes: int) -> Dict[str, torch.Tensor]:
    """Per class, the mean squared distance of correctly and of wrongly classified samples' responses to
    the class's mean response (over all its samples), averaged over neurons: ``{"correct": [K],
    "wrong": [K]}`` (NaN where a group is empty). The paper's observation: wrong ones lie further out."""
    labels, num_classes = classwise.check_labels(labels, responses.shape[0], num_classes)
    x = responses.detach().flatten(1).double().cpu()
    y = labels.cpu()
    distance = ((x - classwise.class_means(x, y, num_classes)[y]) ** 2).mean(1)
    right = (predictions.cpu() == y).double()
    out = {}
    for key, weight in (("correct", right), ("wrong", 1 - right)):
        num = classwise.class_sums((distance * weight)[:, None], y, num_classes)[:, 0]
        den = classwise.class_sums(weight[:, None], y, num_classes)[:, 0]
        out[key] = torch.where(den > 0, num / den.clamp_min(1), torch.full_like(num, float("nan")))
    return out


def consistency_of_representations(responses: torch.Tensor, labels: torch.Tensor) -> float:
    r"""The complexity measure of the NSR paper's theory: :math:`C = \frac1J \sum_i \max_{j \ne i}
    \frac{S_i + S_j}{M_{ij}}`, with :math:`S_i` the mean Euclidean distance of class :math:`i`'s responses to
    their centre and :math:`M_{ij}` the distance between the centres of classes :math:`i` and :math:`j`
    (a Davies-Bouldin index over the classes present). Lower means tighter, better separated classes."""
    x = responses.detach().flatten(1).double().cpu()
    if labels.shape[0] != x.shape[0]:
        raise ValueError(f"labels must have one entry per sample ({x.shape[0]}), got {labels.shape[0]}")
    classes = torch.unique(labels.cpu())
    if len(classes) < 2:
        raise ValueError("the consistency measure needs at least two classes in the data")
    y = labels.cpu()
    centres = torch.stack([x[y == c].mean(0) for c in classes])
    spread = torch.stack([(x[y == c] - centres[i]).norm(dim=1).mean() for i, c in enumerate(classes)])
    distance = torch.cdist(centres, centres)
    if (distance + torch.eye(len(classes)) == 0).any():
        raise ValueError("two classes have identical centres: the measure is undefined")
    ratio = (spread[:, None] + spread[None, :]) / distance.masked_fill(torch.eye(len(classes), dtype=torch.bool), float("inf"))
    return ratio.max(dim=1).values.mean().item()
