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

This module holds the regularizer (:class:`NeuronSteadiness`, usable as an ``extra_losses`` term of
:func:`neuronlab.train.fit` or in any training loop), the streaming statistic
:class:`IntraClassVariance`, :func:`variance_by_correctness` and the complexity measure
:func:`consistency_of_representations`.
"""

from __future__ import annotations

import contextlib
import math
from typing import Dict, Iterable, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from .probe import ResponseRecorder, collect_responses, resolve_layers
from .regularizers import _RecordingTerm

__all__ = [
    "NeuronSteadiness",
    "NonFiniteResponseError",
    "IntraClassVariance",
    "variance_metrics",
    "steadiness_history",
    "plot_steadiness",
    "lambda_explorer",
    "variance_by_correctness",
    "consistency_of_representations",
    "pick_layer_by_variance",
    "PAPER_TABLE",
    "OFFICIAL_LAMBDAS",
    "METHODS",
    "FAMILY_DEFAULTS",
    "build_model",
    "logits_layer",
    "train_nsr_run",
    "PROFILE_SETTINGS",
    "MLP_ARCHS",
    "GNN_ARCHS",
    "PAPER_GNN_TABLE",
    "PAPER_BASELINES",
    "PAPER_NORMALIZATION",
    "PAPER_LAYERS",
    "CSBM_SETTINGS",
    "LAMBDA_CHOICES",
    "LAMBDA_CURVE",
    "CNN_LAMBDAS",
    "EXPERIMENTS",
    "mlp_grid",
    "experiment_grid",
    "experiment_data",
    "run_experiment",
    "select_lambda",
    "summary_table",
    "tidy",
    "comparison_table",
]


def _check_labels(labels: torch.Tensor, n: int, num_classes: int) -> torch.Tensor:
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.shape[0] != n:
        raise ValueError(f"labels must be a 1-D tensor with one class index per sample ({n}), got "
                         f"{tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}, got values from {labels.min().item()} to "
                         f"{labels.max().item()}: check num_classes")
    return labels.long()


def _as_samples(response: torch.Tensor) -> torch.Tensor:
    """``[N, n]`` from a dense ``[N, n]`` response; conv outputs ``[N, C, *positions]`` give ``[N, P, C]``."""
    if response.dim() == 2:
        return response
    if response.dim() < 2:
        raise ValueError(f"a layer response needs a sample and a neuron dimension, got shape {tuple(response.shape)}")
    return response.flatten(2).transpose(1, 2)  # [N, positions, channels]


def _flatten_with_labels(response: torch.Tensor, labels: torch.Tensor):
    """Conv layers: every position of a sample is an observation of each channel, with the sample's label."""
    x = _as_samples(response)
    if x.dim() == 3:
        positions = x.shape[1]
        return x.reshape(-1, x.shape[2]), labels.repeat_interleave(positions)
    return x, labels


class IntraClassVariance:
    r"""Per-class, per-neuron variance of a layer's responses over a dataset, streamed (torchmetrics style).

    ``update(responses, labels)`` adds a batch (``[N, n]``; conv responses ``[N, C, H, W]`` count every
    position as an observation of its channel), ``compute()`` returns a dict with

    * ``"per_class"``: ``[K, n]`` population variance :math:`\operatorname{Var}(X_{nj})` (NaN for a class
      with no sample);
    * ``"per_neuron"``: ``[n]`` :math:`\sigma_n = \sum_j \alpha_j \operatorname{Var}(X_{nj})` with
      :math:`\alpha_j` the class frequencies (the classes seen);
    * ``"layer"``: the mean of ``per_neuron`` over the layer's neurons;
    * ``"counts"``: ``[K]`` observations per class.

    Sums are kept in float64 around a per-neuron shift (the first batch's mean), so streaming over many
    batches does not lose precision.
    """

    def __init__(self, num_classes: int):
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.num_classes = num_classes
        self.reset()

    def reset(self) -> None:
        self._sum = self._sq = self._shift = None
        self._count = torch.zeros(self.num_classes, dtype=torch.float64)

    def update(self, responses: torch.Tensor, labels: torch.Tensor) -> None:
        labels = _check_labels(labels, responses.shape[0], self.num_classes)
        x, y = _flatten_with_labels(responses.detach(), labels)
        x = x.double().cpu()
        if not torch.isfinite(x).all():
            raise ValueError("responses contain NaN or inf: check the model and the data")
        if self._sum is None:
            self._shift = x.mean(0)
            self._sum = torch.zeros(self.num_classes, x.shape[1], dtype=torch.float64)
            self._sq = torch.zeros_like(self._sum)
        elif x.shape[1] != self._sum.shape[1]:
            raise ValueError(f"responses have {x.shape[1]} neurons, earlier batches had {self._sum.shape[1]}")
        x = x - self._shift
        onehot = F.one_hot(y.cpu(), self.num_classes).double()
        self._sum += onehot.T @ x
        self._sq += onehot.T @ (x * x)
        self._count += onehot.sum(0)

    def compute(self) -> Dict[str, torch.Tensor]:
        if self._sum is None:
            raise RuntimeError("IntraClassVariance.compute() called before any update()")
        counts = self._count[:, None]
        mean = self._sum / counts
        per_class = (self._sq / counts - mean**2).clamp_min(0.0)
        seen = self._count > 0
        alpha = self._count[seen] / self._count[seen].sum()
        per_neuron = (alpha[:, None] * per_class[seen]).sum(0)
        return {"per_class": per_class, "per_neuron": per_neuron, "layer": per_neuron.mean(), "counts": self._count}


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
            stat = IntraClassVariance(num_classes or data.num_classes)
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
        stat = IntraClassVariance(num_classes)
        stat.update(responses[name], y)
        scores[name] = stat.compute()["layer"].item()
    return max(scores, key=scores.get)


class NonFiniteResponseError(FloatingPointError, ValueError):
    """The NSR penalty became NaN or infinite: the responses diverged (a too large learning rate or lambda)
    or the data hold NaN. A ``FloatingPointError`` like :func:`neuronlab.train.fit`'s divergence error,
    and a ``ValueError`` for bad input."""


class NeuronSteadiness(_RecordingTerm):
    r"""The NSR loss term on one or more layers of any model, through forward hooks.

    Use it as a context manager around training; it records the chosen layers' responses (with their
    autograd graph) at every forward pass, and calling it after the forward pass returns the penalty::

        with NeuronSteadiness(model, "fc3", num_classes=10, lam=7.4865, memory=5) as nsr:
            history = fit(model, data, epochs=100, extra_losses={"nsr": nsr})   # nsr(ctx) each step
        # or in a hand-written loop: loss = F.cross_entropy(model(x), y) + nsr.loss(y)

    The hooks are removed when the block exits, also on error.

    **Estimator.** For each regularized layer, with :math:`B_j` the samples of class :math:`j` in the
    current mini-batch and :math:`\mu_{nj}` the mean response of neuron :math:`n` to class :math:`j` over
    the last ``memory`` mini-batches (this one included, detached):

    .. math::
        \sigma_n = \sum_j \alpha_j \frac{1}{|B_j|} \sum_{i \in B_j} (x_{in} - \mu_{nj})^2 ,
        \qquad \text{penalty} = \sum_n \lambda_n \sigma_n \;\big/\; n_\text{neurons} \text{ if } \texttt{neuron\_reduction="mean"}.

    With ``class_weights="frequency"`` (:math:`\alpha_j = |B_j|/|B|`, the default) and
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
                response, y = _flatten_with_labels(response, y)
        x = response
        if x.device.type != "cpu" and not self._checked:  # one_hot checks labels on the CPU only: check once
            _check_labels(y, y.shape[0], self.num_classes)
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
    labels = _check_labels(labels, responses.shape[0], num_classes)
    x = responses.detach().flatten(1).double().cpu()
    y = labels.cpu()
    onehot = F.one_hot(y, num_classes).double()
    means = onehot.T @ x / onehot.sum(0).clamp_min(1)[:, None]
    distance = ((x - means[y]) ** 2).mean(1)
    right = (predictions.cpu() == y).double()
    out = {}
    for key, weight in (("correct", right), ("wrong", 1 - right)):
        num = onehot.T @ (distance * weight)
        den = onehot.T @ weight
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


# ------------------------------------------------------------------------------------------ reproduction
#: The paper's MLP and CNN results as test error in percent (mean and std), in the form
#: ``{model: {"vanilla": (m, s), "nsr": (m, s)}}``. MLPs on MNIST (NSR's names count the input layer, so
#: MLP-4 is 784-256-100-10), CNNs on CIFAR-10.
PAPER_TABLE = {
    "MLP-3": {"vanilla": (3.09, 0.10), "nsr": (2.80, 0.08)},
    "MLP-4": {"vanilla": (2.29, 0.07), "nsr": (1.64, 0.04)},
    "MLP-6": {"vanilla": (2.44, 0.09), "nsr": (1.76, 0.06)},
    "MLP-8": {"vanilla": (2.87, 0.09), "nsr": (1.98, 0.09)},
    "MLP-10": {"vanilla": (3.06, 0.06), "nsr": (1.72, 0.14)},
    "ResNet-18": {"vanilla": (7.96, 0.12), "nsr": (7.20, 0.09)},
    "VGG-19": {"vanilla": (10.57, 0.17), "nsr": (8.77, 0.10)},
}
#: The lambdas of the official README (tuned with NNI), for the official ``mean`` neuron reduction.
OFFICIAL_LAMBDAS = {"MLP-3": 0.02475, "MLP-4": 7.4865, "MLP-6": 0.0538, "MLP-8": 0.2542, "MLP-10": 0.4158,
                    "ResNet-18": 0.5, "VGG-19": 0.11}


METHODS = ("vanilla", "nsr", "l1", "l2", "jacobian", "orthogonality")


def build_model(arch: str, data, *, batchnorm: bool = False, dropout: float = 0.0) -> nn.Module:
    """A model by name, sized for ``data``: ``"MLP-3"`` ... ``"MLP-10"`` (Xavier-normal weights, zero biases,
    as the official MLP code), ``"SmallCNN"``, ``"ResNet-18"`` or ``"ResNet-18-w16"`` (CIFAR-style, width
    16), ``"VGG-19"`` (with BatchNorm; ``-wN`` also works), ``"GCN-2"`` ... / ``"GraphSAGE-3"`` ... (PyG, 64
    hidden channels, the number of layers last)."""
    from .init import xavier_
    from .models import GCN, MLP, PAPER_MLP_WIDTHS, GraphSAGE, SmallCNN, resnet18_cifar, vgg19_cifar

    name = arch.upper()
    if name in PAPER_MLP_WIDTHS and name.startswith("MLP"):
        widths = PAPER_MLP_WIDTHS[name]
        return xavier_(MLP(widths, batchnorm=batchnorm, dropout=dropout))
    if name == "SMALLCNN":
        return SmallCNN(in_channels=data.x_train.shape[1], num_classes=data.num_classes,
                        image_size=data.x_train.shape[-1], batchnorm=batchnorm, dropout=dropout)
    if name.startswith("RESNET-18"):
        width = int(name.split("-W")[1]) if "-W" in name else 64
        return resnet18_cifar(data.num_classes, in_channels=data.x_train.shape[1], width=width)
    if name.startswith("VGG-19"):
        width = int(name.split("-W")[1]) if "-W" in name else 64
        return vgg19_cifar(data.num_classes, in_channels=data.x_train.shape[1], width=width)
    if name.startswith(("GCN-", "GRAPHSAGE-")):
        kind, layers = name.rsplit("-", 1)
        cls = GCN if kind == "GCN" else GraphSAGE
        return cls(data.num_features, 64, data.num_classes, num_layers=int(layers), dropout=dropout or 0.5)
    raise ValueError(f"unknown architecture {arch!r}: use MLP-3..MLP-10, SmallCNN, ResNet-18[-wN], VGG-19[-wN], GCN-L or "
                     "GraphSAGE-L")


def logits_layer(model: nn.Module) -> str:
    """The name of the model's output layer (the last ``nn.Linear``, or ``convL`` for graph networks)."""
    if hasattr(model, "num_layers") and hasattr(model, f"conv{model.num_layers}"):
        return f"conv{model.num_layers}"
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]


#: Per-family training defaults of :func:`train_nsr_run`. MLPs follow the official code (SGD lr 0.01, no
#: momentum, batch 100, m = 5), CNNs a standard CIFAR-style recipe (SGD momentum 0.9, weight decay 5e-4,
#: cosine schedule, crop and flip on CIFAR-10, m = 1), GNNs full-batch Adam (lr 0.01, weight decay 5e-4,
#: m = 1).
FAMILY_DEFAULTS = {
    "mlp": dict(optimizer="sgd", lr=0.01, momentum=0.0, weight_decay=0.0, scheduler=None, memory=5),
    "cnn": dict(optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=5e-4, scheduler="cosine", memory=1),
    "gnn": dict(optimizer="adam", lr=0.01, momentum=0.0, weight_decay=5e-4, scheduler=None, memory=1),
}


def _family(arch: str) -> str:
    name = arch.upper()
    if name.startswith("MLP"):
        return "mlp"
    if name.startswith(("GCN", "GRAPHSAGE")):
        return "gnn"
    return "cnn"


def _fit_family(model: nn.Module, data, family: str, *, epochs: int, seed: int, lr: Optional[float] = None,
                **kwargs):
    """:func:`neuronlab.train.fit` with the protocol of :data:`FAMILY_DEFAULTS` (``lr`` may override)."""
    from .train import fit

    defaults = FAMILY_DEFAULTS[family]
    return fit(model, data, epochs=epochs, lr=lr or defaults["lr"], optimizer=defaults["optimizer"],
               momentum=defaults["momentum"], weight_decay=defaults["weight_decay"],
               scheduler=defaults["scheduler"], seed=seed, progress=False, **kwargs)


def _resolve_target(model: nn.Module, layer: str, is_graph: bool, warm_x, warm_y, num_classes: int):
    if layer == "logits":
        return [logits_layer(model)]
    if layer == "auto":
        if is_graph:
            raise ValueError("layer='auto' is for dense inputs; name a graph layer (conv1, ...) instead")
        candidates = [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
        return [pick_layer_by_variance(model, warm_x, warm_y, num_classes, candidates)]
    return layer.split("+")


def train_nsr_run(data, *, arch: str, method: str, seed: int, epochs: int, layer: str = "logits",
                  lam: Optional[float] = None, memory: Optional[int] = None, batchnorm: bool = False,
                  dropout: float = 0.0, batch_size: int = 100, lr: Optional[float] = None,
                  dataset: Optional[str] = None, device: Optional[str] = None, **_: object) -> Dict:
    """One run of the NSR reproduction: build ``arch``, train it with ``method`` and summarize.

    Args:
        arch: see :func:`build_model`; the family sets the optimizer (:data:`FAMILY_DEFAULTS`).
        method: ``"vanilla"``, ``"nsr"``, or a baseline of :mod:`neuronlab.regularizers`: ``"l1"`` (on the
            same layer's responses), ``"l2"``, ``"jacobian"`` (dense inputs only), ``"orthogonality"``.
        layer: the regularized layer: ``"logits"`` (the output layer, as the official code), ``"auto"``
            (the largest intra-class variance at initialization, as the paper recommends), a name, or
            names joined by ``+`` (``"fc2+fc3"``).
        lam: the strength; default :data:`OFFICIAL_LAMBDAS` for NSR on the paper's models, else 0.1.
        memory: NSR's ``m`` (default from the family).
        lr: the learning rate (default from the family).
        device: where to train (default: a GPU when there is one).

    Extra keys of a sweep configuration (``dataset``, ``experiment``, ...) are accepted and ignored; a
    ``dataset`` that is not ``data``'s is an error.

    Returns a JSON-ready dict: the test and validation error at the best validation epoch (%) and the epoch,
    per-epoch test error and training loss, the regularized layer(s), lambda, and the mean intra-class
    variance of that layer's responses on the training data (training nodes for graphs) after training.
    A run whose loss diverges returns ``diverged=True``, the error message, and NaN errors.
    """
    from . import regularizers
    from .data import random_crop_flip

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    if dataset is not None and dataset != getattr(data, "name", None):
        raise ValueError(f"the configuration says dataset={dataset!r} but the data passed is "
                         f"{getattr(data, 'name', None)!r}")
    family = _family(arch)
    defaults = FAMILY_DEFAULTS[family]
    torch.manual_seed(seed)
    model = build_model(arch, data, batchnorm=batchnorm, dropout=dropout)
    is_graph = family == "gnn"
    if is_graph:
        warm_x, warm_y = (data.x, data.edge_index), data.y
    else:
        warm_x, warm_y = data.x_train[:1000], data.y_train[:1000]
    targets = _resolve_target(model, layer, is_graph, warm_x, warm_y, data.num_classes)
    if lam is None:
        lam = OFFICIAL_LAMBDAS.get(arch, 0.1) if method == "nsr" else 0.1
    memory = memory or defaults["memory"]
    build = {"vanilla": lambda: None,
             "nsr": lambda: NeuronSteadiness(model, targets, data.num_classes, lam=lam, memory=memory),
             "l1": lambda: regularizers.ActivationL1(model, targets, lam),
             "l2": lambda: regularizers.WeightL2(model, lam),
             "jacobian": lambda: regularizers.JacobianNorm(lam, generator=torch.Generator().manual_seed(seed)),
             "orthogonality": lambda: regularizers.WeightOrthogonality(model, lam)}
    term = build[method]()
    extra = None if term is None else {method: term}
    hooks = term if isinstance(term, (NeuronSteadiness, regularizers.ActivationL1)) else contextlib.nullcontext()
    augment = None
    if getattr(data, "name", None) == "cifar10":  # fit calls augment(x, generator)
        def augment(x, generator):
            return random_crop_flip(x, generator=generator)
    try:
        with hooks:  # only the terms that record responses register hooks, and only for this run
            history = _fit_family(model, data, family, epochs=epochs, seed=seed, extra_losses=extra, lr=lr,
                                  augment=augment, batch_size=batch_size, device=device)
    except FloatingPointError as err:  # a too strong penalty can make training diverge: a result, not a crash
        nan = float("nan")
        return {"test_error": nan, "val_error": nan, "best_epoch": -1, "layer": "+".join(targets),
                "lam": lam if method != "vanilla" else 0.0, "test_error_curve": [], "train_loss_curve": [],
                "intra_class_variance": nan, "diverged": True, "message": str(err)[:300]}
    model.cpu()
    if is_graph:
        responses = collect_responses(model, data, targets)
        responses, labels = {n: r[data.train_mask] for n, r in responses.items()}, data.y[data.train_mask]
    else:
        responses, labels = collect_responses(model, data.x_train, targets), data.y_train
    stat = IntraClassVariance(data.num_classes)  # several layers: one statistic over all their neurons
    observed = torch.cat([r.flatten(1) for r in responses.values()], 1) if len(targets) > 1 else responses[targets[0]]
    stat.update(observed, labels)
    table = history.table
    return {"test_error": float(history.test_error_at_best),
            "val_error": 100.0 * (1.0 - float(history.best["val_acc"])), "best_epoch": int(history.best_epoch),
            "layer": "+".join(targets), "lam": lam if method != "vanilla" else 0.0,
            "test_error_curve": (100 * (1 - table["test_acc"])).round(3).tolist(),
            "train_loss_curve": table["train_loss"].astype(float).round(5).tolist(),
            "intra_class_variance": stat.compute()["layer"].item(), "diverged": False}


def steadiness_history(data, *, arch: str = "MLP-4", lam: float = 0.0, layer: str = "logits",
                       memory: Optional[int] = None, epochs: int = 60, seed: int = 0,
                       watch: Optional[Sequence[str]] = None, device: Optional[str] = None):
    """Train ``arch`` on ``data`` (dense inputs) with NSR of strength ``lam`` on ``layer`` (``lam=0``: vanilla)
    with the family's protocol, recording after every epoch the mean intra-class variance of the training
    responses of the ``watch`` layers (default: every ``nn.Linear``) as ``icv_<layer>`` columns.

    Returns ``(model, history)``. The chapter's curves and :func:`lambda_explorer` use it."""
    family = _family(arch)
    if family == "gnn":
        raise ValueError("steadiness_history is for dense inputs; use train_nsr_run for graphs")
    torch.manual_seed(seed)
    model = build_model(arch, data)
    watch = list(watch) if watch is not None else [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    targets = _resolve_target(model, layer, False, data.x_train[:1000], data.y_train[:1000], data.num_classes)
    term = NeuronSteadiness(model, targets, data.num_classes, lam=lam,
                            memory=memory or FAMILY_DEFAULTS[family]["memory"])
    with term if lam else contextlib.nullcontext():
        history = _fit_family(model, data, family, epochs=epochs, seed=seed, device=device,
                              extra_losses={"nsr": term} if lam else None, metrics=variance_metrics(watch))
    return model.cpu(), history


def plot_steadiness(histories: Mapping[str, "object"], layer: str, axes=None):
    """The paper's three panels for several runs: test accuracy, training cross-entropy and the mean
    intra-class variance of ``layer`` on the training data, per epoch. ``histories`` maps a label to a
    :class:`neuronlab.train.History` with an ``icv_<layer>`` column (see :func:`steadiness_history`)."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(13, 3.6), constrained_layout=True)
    for label, history in histories.items():
        table = history.table
        axes[0].plot(table["epoch"], 100 * table["test_acc"], label=label)
        axes[1].plot(table["epoch"], table["train_loss"], label=label)
        axes[2].plot(table["epoch"], table[f"icv_{layer}"], label=label)
    axes[0].set(xlabel="epoch", ylabel="test accuracy (%)", title="(a) test accuracy")
    axes[1].set(xlabel="epoch", ylabel="cross-entropy (nats)", title="(b) training cross-entropy", yscale="log")
    axes[2].set(xlabel="epoch", ylabel="mean intra-class variance", title=f"(c) intra-class variance of {layer}",
                yscale="log")
    axes[0].legend()
    return axes


def lambda_explorer(data, arch: str = "MLP-4", epochs: int = 15, seed: int = 0):
    """An ipywidgets explorer (Jupyter, Colab): choose lambda, the layer and the memory m; it trains
    ``arch`` for ``epochs`` epochs (a few seconds on a CPU for MLP-4 on 3,500 digits) and draws
    :func:`plot_steadiness` against the vanilla run (trained once and kept)."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    torch.manual_seed(seed)
    layer_names = [n for n, m in build_model(arch, data).named_modules() if isinstance(m, nn.Linear)]
    cache = {}

    def history(lam, layer, memory):
        key = (lam, layer, memory) if lam else 0
        if key not in cache:
            cache[key] = steadiness_history(data, arch=arch, lam=lam, layer=layer, memory=memory, epochs=epochs,
                                            seed=seed, watch=layer_names)[1]
        return cache[key]

    def show(lam, layer, memory):
        runs = {"vanilla": history(0.0, layer, memory),
                f"NSR, lambda={lam:.3g}, m={memory}": history(lam, layer, memory)}
        plot_steadiness(runs, layer)
        plt.show()

    return widgets.interact(
        show,
        lam=widgets.FloatLogSlider(value=OFFICIAL_LAMBDAS.get(arch, 1.0), base=10, min=-3, max=2, step=0.25,
                                   description="lambda", continuous_update=False),
        layer=widgets.Dropdown(options=layer_names, value=layer_names[-1], description="layer"),
        memory=widgets.IntSlider(value=FAMILY_DEFAULTS[_family(arch)]["memory"], min=1, max=20,
                                 description="memory m", continuous_update=False))


#: The paper's GNN results as test error in percent (mean and std), in the form
#: ``{dataset: {arch: {"vanilla": (m, s), "nsr": (m, s)}}}``.
PAPER_GNN_TABLE = {
    "pubmed": {"GraphSAGE-2": {"vanilla": (10.73, 0.06), "nsr": (9.89, 0.08)},
               "GraphSAGE-3": {"vanilla": (10.20, 0.25), "nsr": (9.48, 0.12)},
               "GraphSAGE-4": {"vanilla": (10.43, 0.17), "nsr": (9.79, 0.19)},
               "GCN-2": {"vanilla": (12.02, 0.00), "nsr": (11.92, 0.00)},
               "GCN-3": {"vanilla": (12.76, 0.18), "nsr": (12.19, 0.11)},
               "GCN-4": {"vanilla": (14.01, 0.07), "nsr": (12.96, 0.08)}},
    "amazon-photo": {"GraphSAGE-2": {"vanilla": (5.82, 0.00), "nsr": (4.54, 0.10)},
                     "GraphSAGE-3": {"vanilla": (5.20, 0.14), "nsr": (4.86, 0.13)},
                     "GraphSAGE-4": {"vanilla": (6.37, 0.30), "nsr": (5.62, 0.59)},
                     "GCN-2": {"vanilla": (6.73, 0.00), "nsr": (6.27, 0.00)},
                     "GCN-3": {"vanilla": (8.00, 0.11), "nsr": (7.96, 0.10)},
                     "GCN-4": {"vanilla": (10.24, 0.14), "nsr": (9.03, 0.25)}},
    "amazon-computers": {"GraphSAGE-2": {"vanilla": (11.37, 0.55), "nsr": (10.47, 0.05)},
                         "GraphSAGE-3": {"vanilla": (11.88, 1.05), "nsr": (10.22, 0.54)},
                         "GraphSAGE-4": {"vanilla": (15.49, 0.90), "nsr": (12.86, 0.82)},
                         "GCN-2": {"vanilla": (12.17, 0.07), "nsr": (10.86, 0.03)},
                         "GCN-3": {"vanilla": (14.90, 0.25), "nsr": (13.66, 0.12)},
                         "GCN-4": {"vanilla": (18.07, 0.74), "nsr": (16.02, 0.23)}},
    "wikics": {"GraphSAGE-2": {"vanilla": (16.81, 0.21), "nsr": (16.06, 0.33)},
               "GraphSAGE-3": {"vanilla": (15.97, 0.18), "nsr": (15.27, 0.21)},
               "GraphSAGE-4": {"vanilla": (16.63, 0.31), "nsr": (15.43, 0.24)},
               "GCN-2": {"vanilla": (18.41, 0.06), "nsr": (17.99, 0.05)},
               "GCN-3": {"vanilla": (18.66, 0.23), "nsr": (18.10, 0.27)},
               "GCN-4": {"vanilla": (19.21, 0.31), "nsr": (18.84, 0.26)}},
}
#: The paper's comparison with other regularizers in test error percent, lambdas tuned with NNI. MLP-4 on
#: MNIST, ResNet-18 on CIFAR-10, GraphSAGE(-2) on Amazon-Computers.
PAPER_BASELINES = {
    "MLP-4": {"vanilla": (2.29, 0.07), "l1": (2.27, 0.05), "l2": (2.27, 0.05), "jacobian": (2.21, 0.04),
              "nsr": (1.64, 0.04)},
    "ResNet-18": {"vanilla": (7.96, 0.12), "l1": (7.83, 0.23), "l2": (7.67, 0.18), "jacobian": (7.90, 0.07),
                  "nsr": (7.20, 0.09)},
    "GraphSAGE": {"vanilla": (11.37, 0.55), "l1": (10.81, 0.13), "l2": (10.68, 0.35), "jacobian": (11.27, 0.45),
                  "nsr": (10.52, 0.22)},
}
#: The paper's MLP-4 with BatchNorm or Dropout, with and without NSR (test error %).
PAPER_NORMALIZATION = {"vanilla": (2.29, 0.07), "batchnorm": (2.22, 0.04), "batchnorm + nsr": (1.62, 0.08),
                       "dropout": (2.19, 0.04), "dropout + nsr": (1.64, 0.04)}
#: The paper's per-layer ablation (test error %). Its layers count the input as layer 1, so MLP-4's layers
#: 2, 3, 4 are our ``fc1``, ``fc2``, ``fc3`` (the logits); their intra-class variances were 409, 510, 1660.
#: For GraphSAGE-2 on Amazon-Computers the layers are ``conv1`` and ``conv2``.
PAPER_LAYERS = {
    "MLP-4": {"none": (2.29, 0.07), "fc1": (2.22, 0.08), "fc2": (1.90, 0.13), "fc3": (1.64, 0.04),
              "fc2+fc3": (1.63, 0.08)},
    "GraphSAGE-2": {"none": (11.37, 0.55), "conv1": (10.47, 0.05), "conv2": (10.52, 0.22),
                    "conv1+conv2": (10.30, 0.17)},
}

MLP_ARCHS = ("MLP-3", "MLP-4", "MLP-6", "MLP-8", "MLP-10")
GNN_ARCHS = ("GraphSAGE-2", "GraphSAGE-3", "GraphSAGE-4", "GCN-2", "GCN-3", "GCN-4")
#: The graph of the quick profile, a contextual SBM (:func:`neuronlab.data.make_csbm`) with 5 classes, weak
#: features, mild homophily and 20 % labelled nodes, so that GNNs still make 15-30 % errors on it.
CSBM_SETTINGS = dict(num_nodes=2000, num_classes=5, avg_degree=5.0, homophily=0.4, signal=0.4,
                     train_fraction=0.2, val_fraction=0.2)
#: Strengths tried where no published lambda applies; :func:`select_lambda` keeps, per setting, the one with
#: the lowest mean validation error (never the test error).
LAMBDA_CHOICES = {
    "nsr": (0.1, 1.0, 7.4865),
    "l1": (1e-4, 1e-3, 1e-2),
    "l2": (1e-5, 1e-4, 1e-3),
    "jacobian": (1e-3, 1e-2, 1e-1),
    "orthogonality": (1e-5, 1e-4, 1e-3),
    "nsr-gnn": (0.1, 1.0),
    "l1-gnn": (1e-3, 1e-2),
    "l2-gnn": (1e-4, 1e-3),
}
#: The strengths of the lambda curve (MLP-4, logits).
LAMBDA_CURVE = (0.01, 0.1, 1.0, 3.0, 7.4865, 20.0, 50.0)

#: The experiments of the chapter, each a list of run configurations built by :func:`experiment_grid`.
EXPERIMENTS = ("mlp", "lambda", "baselines", "normalization", "layers", "cnn", "gnn", "fashion")

#: Per profile, the data, epochs and seeds of each family of experiments. ``quick`` runs on a CPU in about an
#: hour for all experiments together (the chapter reads stored results); ``full`` is the paper's scale, for
#: a GPU (MNIST, CIFAR-10 and the PyG graph datasets are downloaded), with the standard CIFAR recipe's
#: learning rate 0.1 and batch 128 for the CNNs.
PROFILE_SETTINGS = {
    "quick": dict(dataset="mnist-5k", epochs=60, seeds=[0, 1, 2],
                  cnn=dict(dataset="mnist-5k", runs=[("SmallCNN", 15, ("vanilla", "nsr", "l1", "jacobian")),
                                                     ("ResNet-18-w16", 10, ("vanilla", "nsr"))]),
                  gnn=dict(datasets=["csbm"], epochs=200), fashion=dict(archs=["MLP-4", "MLP-10"], epochs=30)),
    "full": dict(dataset="mnist", epochs=100, seeds=[0, 1, 2, 3, 4],
                 cnn=dict(dataset="cifar10", runs=[("ResNet-18", 200, ("vanilla", "nsr", "l1", "l2", "jacobian")),
                                                   ("VGG-19", 200, ("vanilla", "nsr"))],
                          training=dict(lr=0.1, batch_size=128)),
                 gnn=dict(datasets=["pubmed", "amazon-photo", "amazon-computers", "wikics"], epochs=500),
                 fashion=dict(archs=list(MLP_ARCHS), epochs=100)),
}
#: Published or chosen fixed strengths of the CNN runs (the official ResNet-18 lambda for NSR).
CNN_LAMBDAS = {"nsr": 0.5, "l1": 1e-3, "l2": 1e-4, "jacobian": 1e-2}


def mlp_grid(profile: str, archs: Sequence[str] = MLP_ARCHS, layers: Sequence[str] = ("logits", "auto"),
             seeds: Optional[Sequence[int]] = None, epochs: Optional[int] = None) -> list:
    """Run configurations of the MLP table: vanilla once per architecture and seed, NSR per layer variant."""
    settings = PROFILE_SETTINGS[profile]
    seeds = settings["seeds"] if seeds is None else seeds
    epochs = epochs or settings["epochs"]
    grid = []
    for arch in archs:
        for seed in seeds:
            base = dict(dataset=settings["dataset"], arch=arch, seed=seed, epochs=epochs)
            grid.append(dict(base, method="vanilla", layer="logits"))
            grid += [dict(base, method="nsr", layer=layer) for layer in layers]
    return grid


def experiment_grid(name: str, profile: str = "quick") -> list:
    """The run configurations of one experiment of the chapter (see :data:`EXPERIMENTS`).

    * ``"mlp"``: MLP-3..10, vanilla and NSR with the official lambdas on the logits and on the ``auto`` layer;
    * ``"lambda"``: MLP-4, NSR on the logits for each strength of :data:`LAMBDA_CURVE`;
    * ``"baselines"``: MLP-4 with L1, L2, Jacobian and orthogonality regularization, each at the strengths of
      :data:`LAMBDA_CHOICES` (plus vanilla and NSR, shared with ``"mlp"``);
    * ``"normalization"``: MLP-4 with BatchNorm or Dropout (p = 0.2), without and with NSR;
    * ``"layers"``: MLP-4 with NSR on ``fc1``, ``fc2``, ``fc3`` and ``fc2+fc3``, strengths of ``nsr``;
    * ``"cnn"``: the CNNs of the profile (quick: SmallCNN and a width-16 ResNet-18 on MNIST digits);
    * ``"gnn"``: GraphSAGE and GCN with 2-4 layers, vanilla and NSR on the logits; on GraphSAGE-2 also L1,
      L2 and NSR on each layer (quick: the :data:`CSBM_SETTINGS` graph);
    * ``"fashion"``: MLPs on Fashion-MNIST, vanilla and NSR on the logits.
    """
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {EXPERIMENTS}")
    settings = PROFILE_SETTINGS[profile]
    seeds, epochs, dataset = settings["seeds"], settings["epochs"], settings["dataset"]

    def runs(base, **variants):
        return [dict(base, seed=seed, **variants) for seed in seeds]

    mlp4 = dict(experiment="mlp", dataset=dataset, arch="MLP-4", epochs=epochs)
    grid: list = []
    if name == "mlp":
        grid = [dict(config, experiment="mlp") for config in mlp_grid(profile)]
    elif name == "lambda":
        for lam in LAMBDA_CURVE:
            grid += runs(dict(mlp4, experiment="lambda"), method="nsr", layer="logits", lam=lam)
    elif name == "baselines":
        grid += runs(mlp4, method="vanilla", layer="logits") + runs(mlp4, method="nsr", layer="logits")
        for method in ("l1", "l2", "jacobian", "orthogonality"):
            for lam in LAMBDA_CHOICES[method]:
                grid += runs(dict(mlp4, experiment="baselines"), method=method, layer="logits", lam=lam)
    elif name == "normalization":
        for extra in (dict(batchnorm=True), dict(dropout=0.2)):
            base = dict(mlp4, experiment="normalization", **extra)
            grid += runs(base, method="vanilla", layer="logits") + runs(base, method="nsr", layer="logits")
    elif name == "layers":
        for layer in ("fc1", "fc2", "fc3", "fc2+fc3"):
            for lam in LAMBDA_CHOICES["nsr"]:
                grid += runs(dict(mlp4, experiment="layers"), method="nsr", layer=layer, lam=lam)
    elif name == "cnn":
        cnn = settings["cnn"]
        for arch, cnn_epochs, methods in cnn["runs"]:
            base = dict(experiment="cnn", dataset=cnn["dataset"], arch=arch, epochs=cnn_epochs,
                        **cnn.get("training", {}))
            for method in methods:
                extra = {} if method == "vanilla" else dict(lam=CNN_LAMBDAS[method])
                grid += runs(base, method=method, layer="logits", **extra)
    elif name == "gnn":
        gnn = settings["gnn"]
        for graph in gnn["datasets"]:
            for arch in GNN_ARCHS:
                base = dict(experiment="gnn", dataset=graph, arch=arch, epochs=gnn["epochs"])
                grid += runs(base, method="vanilla", layer="logits")
                for lam in LAMBDA_CHOICES["nsr-gnn"]:
                    grid += runs(base, method="nsr", layer="logits", lam=lam)
            base = dict(experiment="gnn", dataset=graph, arch="GraphSAGE-2", epochs=gnn["epochs"])
            for method in ("l1", "l2"):
                for lam in LAMBDA_CHOICES[f"{method}-gnn"]:
                    grid += runs(base, method=method, layer="logits", lam=lam)
            for layer in ("conv1", "conv1+conv2"):
                for lam in LAMBDA_CHOICES["nsr-gnn"]:
                    grid += runs(base, method="nsr", layer=layer, lam=lam)
    elif name == "fashion":
        fashion = settings["fashion"]
        for arch in fashion["archs"]:
            base = dict(experiment="fashion", dataset="fashion-mnist", arch=arch, epochs=fashion["epochs"])
            grid += runs(base, method="vanilla", layer="logits") + runs(base, method="nsr", layer="logits")
    return grid


_DATA_CACHE: Dict[tuple, object] = {}


def experiment_data(config: Mapping, root=None):
    """The data of a run configuration, loaded once per process: flattened images for MLPs, images for
    CNNs, and for ``"csbm"`` the :data:`CSBM_SETTINGS` graph (generated with seed 0: every run trains on the
    same graph)."""
    from .data import load_dataset

    family = _family(config["arch"])
    key = (config["dataset"], family == "mlp", str(root))
    if key not in _DATA_CACHE:
        extra = dict(CSBM_SETTINGS) if config["dataset"] == "csbm" else {}
        if family != "gnn":
            extra["flatten"] = family == "mlp"
        if root is not None:
            extra["root"] = root
        _DATA_CACHE[key] = load_dataset(config["dataset"], seed=0, **extra)
    return _DATA_CACHE[key]


def run_experiment(name: str, profile: str = "quick", runs_dir: str = "runs", store=None, progress: bool = False,
                   device: Optional[str] = None) -> "pd.DataFrame":
    """Run (or resume, or read back) one experiment; every finished run is saved at once in a
    :class:`neuronlab.runs.RunStore` (``<runs_dir>/ch03_<profile>`` unless ``store`` is given; experiments
    share it, so a configuration two experiments need is trained once). Returns the table of its runs."""
    import os

    from .runs import RunStore

    if store is None:  # an empty RunStore is falsy: test for None
        store = RunStore(os.path.join(runs_dir, f"ch03_{profile}"))
    extra = {} if device is None else dict(device=device)
    return store.sweep(experiment_grid(name, profile),
                       lambda cfg: train_nsr_run(experiment_data(cfg), **cfg, **extra), progress=progress)


def _setting_columns(table) -> list:
    return [c for c in ("dataset", "arch", "method", "layer", "batchnorm", "dropout") if c in table]


def tidy(table) -> "pd.DataFrame":
    """A copy of a run table with ``lam`` the strength actually used (0 for vanilla) and ``trained_layer`` the
    regularized layer's name (``layer`` stays the configuration's ``"logits"``/``"auto"``/name), whichever
    of the configuration or the result recorded them; missing BatchNorm, Dropout and divergence entries
    become ``False``, ``0`` and ``False``."""
    table = table.copy()
    for key, name in (("lam", "lam"), ("layer", "trained_layer")):
        result = f"result.{key}"
        if result in table and name in table:  # tables concatenated from several sweeps: keep what is known
            table[name] = table[result].where(table[result].notna(), table[name])
        elif result in table:
            table[name] = table[result]
        elif name != key:
            table[name] = table[key]
    for column, default in (("batchnorm", False), ("dropout", 0.0), ("diverged", False)):
        table[column] = table[column].fillna(default) if column in table else default
    return table


def select_lambda(table) -> "pd.DataFrame":
    """Keep, for every setting (dataset, architecture, method, layer, BatchNorm, Dropout), the runs of the
    strength with the lowest mean validation error over seeds. Settings with one strength are kept as
    they are."""
    import pandas as pd

    table = tidy(table)
    columns = _setting_columns(table)
    kept = []
    for _, group in table.groupby(columns, sort=False, dropna=False):
        means = group.groupby("lam")["val_error"].mean()
        kept.append(group[group["lam"] == means.idxmin()])
    return pd.concat(kept)


def summary_table(table, by: Sequence[str], paper: Optional[Mapping] = None, paper_key=None) -> "pd.DataFrame":
    """Mean ± std over seeds of the test error at the best validation epoch per group of ``by``, with the
    strength used, the number of seeds, and (when ``paper`` and ``paper_key(row) -> key`` are given) the
    paper's number beside ours."""
    import pandas as pd

    from .runs import format_mean_std

    table = tidy(table)
    rows = []
    for keys, group in table.groupby(list(by), sort=False, dropna=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        row = dict(zip(by, keys))
        if paper is not None and paper_key is not None:
            ref = paper.get(paper_key(row))
            row["paper"] = format_mean_std(*ref) if ref else "–"
        row["ours"] = format_mean_std(group["test_error"].mean(), group["test_error"].std())
        lams = sorted(set(group["lam"]))
        row["lambda"] = ", ".join(f"{v:g}" for v in lams)
        row["seeds"] = int(group["seed"].nunique())
        rows.append(row)
    return pd.DataFrame(rows)


def comparison_table(table, paper: Mapping = PAPER_TABLE) -> "pd.DataFrame":
    """Paper beside ours, one row per architecture: the paper's vanilla and NSR errors, ours (mean ± std over
    seeds, test error at the best validation epoch) for vanilla and for each NSR layer variant, and the
    relative gain of NSR as the paper computes it, ``(vanilla - nsr) / vanilla``."""
    import pandas as pd

    from .runs import format_mean_std

    rows = []
    for arch, group in table.groupby("arch", sort=False):
        row = {"model": arch, "seeds": int(group["seed"].nunique())}
        ref = paper.get(arch)
        row["vanilla (paper)"] = format_mean_std(*ref["vanilla"]) if ref else "–"
        row["NSR (paper)"] = format_mean_std(*ref["nsr"]) if ref else "–"
        row["gain (paper)"] = f"{100 * (ref['vanilla'][0] - ref['nsr'][0]) / ref['vanilla'][0]:.1f} %" if ref else "–"
        vanilla = group.loc[group["method"] == "vanilla", "test_error"]
        row["vanilla (ours)"] = format_mean_std(vanilla.mean(), vanilla.std())
        for variant, runs_ in group[group["method"] == "nsr"].groupby("layer", sort=False):
            row[f"NSR, {variant} (ours)"] = format_mean_std(runs_["test_error"].mean(), runs_["test_error"].std())
            gain = 100 * (vanilla.mean() - runs_["test_error"].mean()) / vanilla.mean()
            row[f"gain, {variant} (ours)"] = f"{gain:.1f} %"
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv: Optional[Sequence[str]] = None):
    """Command line: ``python -m neuronlab.nsr [--profile full] [--experiments mlp gnn ...] [--device cuda]``
    runs (or resumes) the experiments and prints each table."""
    import argparse

    from .config import get_profile

    parser = argparse.ArgumentParser(prog="python -m neuronlab.nsr", description="Reproduce the NSR experiments.")
    parser.add_argument("--profile", default=None)
    parser.add_argument("--runs", default="runs", help="folder of the run store (ch03_<profile>)")
    parser.add_argument("--experiments", nargs="*", default=list(EXPERIMENTS), choices=EXPERIMENTS)
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    profile = get_profile(args.profile)
    tables = {}
    for name in args.experiments:
        table = run_experiment(name, profile, args.runs, progress=True, device=args.device)
        tables[name] = table
        shown = comparison_table(table) if name == "mlp" else summary_table(
            select_lambda(table), _setting_columns(table))
        print(f"\n== {name} ({profile}) ==\n{shown.to_string(index=False)}")
    return tables


if __name__ == "__main__":  # pragma: no cover
    main()
