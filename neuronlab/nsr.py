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
from typing import Dict, Iterable, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from .probe import ResponseRecorder, collect_responses, resolve_layers

__all__ = [
    "NeuronSteadiness",
    "IntraClassVariance",
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
    "mlp_grid",
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


class NeuronSteadiness:
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

    def __enter__(self) -> "NeuronSteadiness":
        self._recorder.__enter__()
        return self

    def __exit__(self, *exc) -> bool:
        self._recorder.remove()
        return False

    def remove(self) -> None:
        """Remove the hooks (``__exit__`` does this)."""
        self._recorder.remove()

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
        distributed = self._is_distributed()
        world = torch.distributed.get_world_size() if distributed else 1
        if targets.dim() != 1 or targets.dtype.is_floating_point or targets.dtype == torch.bool:
            raise ValueError(f"targets must be a 1-D tensor of class indices, got shape {tuple(targets.shape)} "
                             f"and dtype {targets.dtype}")
        total = None
        slot = self._slot
        for name in self.layers:
            response = self._recorder[name]
            if response.shape[0] != targets.shape[0]:
                raise ValueError(f"layer {name!r} saw {response.shape[0]} samples but {targets.shape[0]} targets "
                                 "were given: call loss() right after the forward pass of this batch")
            y = targets
            if mask is not None:
                response, y = response[mask], y[mask]
            if self.conv == "mean" and response.dim() > 2:
                response = response.flatten(2).mean(2)
            x, y = _flatten_with_labels(response, y)
            try:  # bincount also validates the labels: negative ones raise, too large ones lengthen it
                batch_counts = torch.bincount(y, minlength=self.num_classes)
            except RuntimeError as err:
                raise ValueError(f"labels must be non-negative class indices below {self.num_classes}: {err}") from None
            if batch_counts.shape[0] != self.num_classes:
                raise ValueError(f"labels must lie in 0..{self.num_classes - 1}, got a label "
                                 f"{batch_counts.shape[0] - 1}: check num_classes")
            batch_counts = batch_counts.to(x.dtype)
            batch_sums = torch.zeros(self.num_classes, x.shape[1], dtype=x.dtype, device=x.device)
            batch_sums.index_add_(0, y, x.detach())
            if not torch.isfinite(batch_sums).all():  # NaN anywhere in the responses reaches the sums
                raise ValueError(f"the responses of layer {name!r} contain NaN or inf: lower the learning rate "
                                 "or lambda, or check the data")
            if distributed:
                stacked = torch.cat([batch_sums, batch_counts[:, None]], dim=1)
                torch.distributed.all_reduce(stacked)
                batch_sums, batch_counts = stacked[:, :-1], stacked[:, -1]
            if self._sums[name] is None:
                self._sums[name] = torch.zeros(self.memory, *batch_sums.shape, dtype=x.dtype, device=x.device)
                self._counts[name] = torch.zeros(self.memory, self.num_classes, dtype=x.dtype, device=x.device)
            self._sums[name][slot] = batch_sums
            self._counts[name][slot] = batch_counts
            means = self._sums[name].sum(0) / self._counts[name].sum(0).clamp_min(1)[:, None]  # detached

            squared = (x - means[y]) ** 2
            lam = self.lam[name]
            # sigma_n = sum_j alpha_j / |B_j| * sum_{i in B_j} (x_in - mu_jn)^2, as one weight per sample.
            # With frequency weights alpha_j / |B_j| = 1 / |B| for every sample: no per-class weights needed.
            if isinstance(self.class_weights, str) and self.class_weights == "frequency":
                n_total = batch_counts.sum() if distributed else x.shape[0]
                per_neuron = squared.sum(0) if isinstance(lam, torch.Tensor) else None
                penalty = ((per_neuron * lam.to(x)).sum() if per_neuron is not None else lam * squared.sum()) / n_total
            else:
                if isinstance(self.class_weights, torch.Tensor):
                    alpha = self.class_weights.to(x)
                else:
                    present = batch_counts > 0
                    alpha = present.to(x.dtype) / present.sum().clamp_min(1)
                per_sample = (alpha / batch_counts.clamp_min(1))[y]
                per_neuron = per_sample @ squared
                penalty = (per_neuron * lam.to(x)).sum() if isinstance(lam, torch.Tensor) else lam * per_neuron.sum()
            if self.neuron_reduction == "mean":
                penalty = penalty / x.shape[1]
            total = penalty if total is None else total + penalty
        self._slot = (slot + 1) % self.memory
        value = total.detach()
        if distributed:
            value = value.clone()
            torch.distributed.all_reduce(value)
        self._last = value
        return total * world if world > 1 else total

    @property
    def last_value(self) -> Optional[float]:
        """The global penalty of the last step (all ranks together), as a number; ``None`` before any step.

        Raises ``ValueError`` if it is NaN or infinite (the responses diverged: lower the learning rate or
        lambda, or check the data)."""
        if self._last is None:
            return None
        value = self._last.item()
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("the NSR penalty is not finite: the responses contain NaN or inf")
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
    16), ``"GCN-2"`` ... / ``"GraphSAGE-3"`` ... (PyG, 64 hidden channels, the number of layers last)."""
    from .init import xavier_
    from .models import GCN, MLP, PAPER_MLP_WIDTHS, GraphSAGE, SmallCNN, resnet18_cifar

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
    if name.startswith(("GCN-", "GRAPHSAGE-")):
        kind, layers = name.rsplit("-", 1)
        cls = GCN if kind == "GCN" else GraphSAGE
        return cls(data.num_features, 64, data.num_classes, num_layers=int(layers), dropout=dropout or 0.5)
    raise ValueError(f"unknown architecture {arch!r}: use MLP-3..MLP-10, SmallCNN, ResNet-18[-wN], GCN-L or GraphSAGE-L")


def logits_layer(model: nn.Module) -> str:
    """The name of the model's output layer (the last ``nn.Linear``, or ``convL`` for graph networks)."""
    if hasattr(model, "num_layers") and hasattr(model, f"conv{model.num_layers}"):
        return f"conv{model.num_layers}"
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]


#: Per-family training defaults of :func:`train_nsr_run`. MLPs follow the official code (SGD lr 0.01, no
#: momentum, batch 100, m = 5), CNNs a standard CIFAR-style recipe (SGD momentum 0.9, weight decay 5e-4,
#: m = 1), GNNs full-batch Adam (lr 0.01, weight decay 5e-4, m = 1).
FAMILY_DEFAULTS = {
    "mlp": dict(optimizer="sgd", lr=0.01, momentum=0.0, weight_decay=0.0, memory=5),
    "cnn": dict(optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=5e-4, memory=1),
    "gnn": dict(optimizer="adam", lr=0.01, momentum=0.0, weight_decay=5e-4, memory=1),
}


def _family(arch: str) -> str:
    name = arch.upper()
    if name.startswith("MLP"):
        return "mlp"
    if name.startswith(("GCN", "GRAPHSAGE")):
        return "gnn"
    return "cnn"


def train_nsr_run(data, *, arch: str, method: str, seed: int, epochs: int, layer: str = "logits",
                  lam: Optional[float] = None, memory: Optional[int] = None, batchnorm: bool = False,
                  dropout: float = 0.0, batch_size: int = 100, dataset: Optional[str] = None, **_: object) -> Dict:
    """One run of the NSR reproduction: build ``arch``, train it with ``method`` and summarize.

    Args:
        arch: see :func:`build_model`; the family sets the optimizer (:data:`FAMILY_DEFAULTS`).
        method: ``"vanilla"``, ``"nsr"``, or a baseline of :mod:`neuronlab.regularizers`: ``"l1"`` (on the
            same layer's responses), ``"l2"``, ``"jacobian"`` (dense inputs only), ``"orthogonality"``.
        layer: the regularized layer: ``"logits"`` (the output layer, as the official code), ``"auto"``
            (the largest intra-class variance at initialization, as the paper recommends) or a name.
        lam: the strength; default :data:`OFFICIAL_LAMBDAS` for NSR on the paper's models, else 0.1.
        memory: NSR's ``m`` (default from the family).

    Returns a JSON-ready dict: the test error at the best validation epoch (%) and the epoch, per-epoch test
    error and training loss, the regularized layer, lambda, and the mean intra-class variance of that layer's
    responses on the training data (training nodes for graphs) after training.
    """
    from . import regularizers
    from .train import fit

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    if dataset is not None and dataset != getattr(data, "name", None):
        raise ValueError(f"the configuration says dataset={dataset!r} but the data passed is {data.name!r}")
    family = _family(arch)
    defaults = FAMILY_DEFAULTS[family]
    torch.manual_seed(seed)
    model = build_model(arch, data, batchnorm=batchnorm, dropout=dropout)
    is_graph = family == "gnn"
    if is_graph:
        warm_x, warm_y = (data.x, data.edge_index), data.y
    else:
        warm_x, warm_y = data.x_train[:1000], data.y_train[:1000]
    if layer == "logits":
        target = logits_layer(model)
    elif layer == "auto":
        if is_graph:
            raise ValueError("layer='auto' is for dense inputs; name a graph layer (conv1, ...) instead")
        candidates = [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
        target = pick_layer_by_variance(model, warm_x, warm_y, data.num_classes, candidates)
    else:
        target = layer
    if lam is None:
        lam = OFFICIAL_LAMBDAS.get(arch, 0.1) if method == "nsr" else 0.1
    memory = memory or defaults["memory"]
    build = {"vanilla": lambda: None,
             "nsr": lambda: NeuronSteadiness(model, target, data.num_classes, lam=lam, memory=memory),
             "l1": lambda: regularizers.ActivationL1(model, target, lam),
             "l2": lambda: regularizers.WeightL2(model, lam),
             "jacobian": lambda: regularizers.JacobianNorm(lam, generator=torch.Generator().manual_seed(seed)),
             "orthogonality": lambda: regularizers.WeightOrthogonality(model, lam)}
    term = build[method]()
    extra = None if term is None else {method: term}
    hooks = term if isinstance(term, (NeuronSteadiness, regularizers.ActivationL1)) else contextlib.nullcontext()
    with hooks:  # only the terms that record responses register hooks, and only for this run
        history = fit(model, data, epochs=epochs, lr=defaults["lr"], optimizer=defaults["optimizer"],
                      momentum=defaults["momentum"], weight_decay=defaults["weight_decay"], batch_size=batch_size,
                      seed=seed, progress=False, extra_losses=extra)
    stat = IntraClassVariance(data.num_classes)
    if is_graph:
        response = collect_responses(model, data, [target])[target][data.train_mask]
        stat.update(response, data.y[data.train_mask])
    else:
        stat.update(collect_responses(model, data.x_train, [target])[target], data.y_train)
    table = history.table
    return {"test_error": float(history.test_error_at_best), "best_epoch": int(history.best_epoch),
            "layer": target, "lam": lam if method != "vanilla" else 0.0,
            "test_error_curve": (100 * (1 - table["test_acc"])).round(3).tolist(),
            "train_loss_curve": table["train_loss"].astype(float).round(5).tolist(),
            "intra_class_variance": stat.compute()["layer"].item()}


#: Settings of the MLP reproduction per profile (dataset, epochs and seeds); the official code trains 100 epochs.
PROFILE_SETTINGS = {
    "quick": dict(dataset="mnist-5k", epochs=60, seeds=[0, 1, 2]),
    "full": dict(dataset="mnist", epochs=100, seeds=[0, 1, 2, 3, 4]),
}
MLP_ARCHS = ("MLP-3", "MLP-4", "MLP-6", "MLP-8", "MLP-10")


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
            row[f"gain, {variant} (ours)"] = f"{100 * (vanilla.mean() - runs_['test_error'].mean()) / vanilla.mean():.1f} %"
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv: Optional[Sequence[str]] = None):
    """Command line: ``python -m neuronlab.nsr [--profile full] [--archs MLP-4 ...]`` runs (or resumes) the MLP
    table and prints it beside the paper's."""
    import argparse

    from .config import get_profile
    from .data import load_dataset
    from .runs import RunStore

    parser = argparse.ArgumentParser(prog="python -m neuronlab.nsr", description="Reproduce the NSR MLP table.")
    parser.add_argument("--profile", default=None)
    parser.add_argument("--runs", default="runs/ch03")
    parser.add_argument("--archs", nargs="*", default=list(MLP_ARCHS), choices=MLP_ARCHS)
    parser.add_argument("--seeds", type=int, nargs="*", default=None)
    parser.add_argument("--epochs", type=int, default=None)
    args = parser.parse_args(argv)
    profile = get_profile(args.profile)
    grid = mlp_grid(profile, args.archs, seeds=args.seeds, epochs=args.epochs)
    data = load_dataset(grid[0]["dataset"], seed=0, flatten=True)
    table = RunStore(f"{args.runs}_{profile}").sweep(grid, lambda cfg: train_nsr_run(data, **cfg))
    print(comparison_table(table).to_string(index=False))
    return table


if __name__ == "__main__":  # pragma: no cover
    main()
