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
:math:`m \times K \times (n + 1)` numbers whatever the batch size, and its cost per step does not grow
with :math:`m`.

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
import numbers
import operator
from typing import Dict, Iterable, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
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


def _count(name: str, value, minimum: int, what: str = "") -> int:
    """``value`` as an ``int`` of at least ``minimum`` (Python or NumPy integers, 0-d integer tensors)."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got the bool {value}")
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__}): pass e.g. "
                        f"{name}={max(minimum, 1)}") from None
    if number < minimum:
        raise ValueError(f"{name} must be at least {minimum}{what}, got {number}")
    return number


def _layer_width(module: nn.Module) -> Optional[int]:
    """The number of neurons of a weight layer's response (``None`` when only a forward pass can tell)."""
    if isinstance(module, nn.Linear):
        return module.out_features
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return module.out_channels
    return None


def _check_lam(lam, where: str, width: Optional[int]) -> None:
    """One layer's lambda: a finite number >= 0, or a tensor of them of shape [], [1] or [neurons]."""
    if isinstance(lam, torch.Tensor):
        if lam.dtype == torch.bool or lam.dtype.is_complex:
            raise TypeError(f"lam{where} must hold real numbers, got a tensor of dtype {lam.dtype}")
        shapes = {(), (1,)} | ({(width,)} if width is not None else set())
        if lam.dim() > 1 or (width is not None and tuple(lam.shape) not in shapes):
            expected = f"[{width}] (one per neuron), [1] or []" if width is not None else "[neurons] or []"
            raise ValueError(f"lam{where} must have shape {expected}, got {tuple(lam.shape)}")
        values = lam.detach()
        if not torch.isfinite(values).all():
            raise ValueError(f"lam{where} contains NaN or inf: give every neuron a finite lambda >= 0")
        if (values < 0).any():
            raise ValueError(f"lam{where} is negative for some neuron (min {values.min().item():g}): a negative "
                             "lambda rewards variance instead of penalizing it; use lambda >= 0 (0 switches "
                             "the term off)")
        return
    if isinstance(lam, bool) or not isinstance(lam, numbers.Real):
        raise TypeError(f"lam{where} must be a number, a tensor with one lambda per neuron, or a dict "
                        f"{{layer: lambda}}; got {type(lam).__name__}")
    if not math.isfinite(lam):
        raise ValueError(f"lam{where} must be a finite number >= 0, got {lam}: NSR's penalty would be NaN or "
                         "inf at every step")
    if lam < 0:
        raise ValueError(f"lam{where} must be >= 0, got {lam}: a negative lambda rewards variance instead of "
                         "penalizing it (0 switches the term off)")


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
        num_classes: :math:`K`, an integer of at least 2.
        lam: :math:`\lambda \ge 0`: a number, a ``[n]`` tensor (one per neuron), or ``{layer: number or
            tensor}`` with an entry for every regularized layer. ``0`` switches the term off; a negative,
            NaN or infinite lambda is rejected (a negative one would reward variance).
        memory: :math:`m`, the number of recent mini-batches whose class means are used (official: 5 for
            MLPs, 1 for CNNs), an integer of at least 1.
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

    **What is checked.** The constructor checks every argument before it records anything: the counts
    (``num_classes``, ``memory``) are integers in range, lambda and fixed class weights are finite and
    non-negative, a ``lam`` dict names exactly the regularized layers, a per-neuron ``lam`` matches the
    layer's width (for ``nn.Linear``/``nn.Conv*``; other layers at the first step), and unknown layer
    names raise :class:`neuronlab.probe.LayerNotFoundError` listing the model's layers. :meth:`loss`
    takes 1-D integer targets of any integer dtype (``int32``, ``uint8``: converted to ``long``) in
    ``0..K-1``, checked before any running statistic changes (on a GPU the first batch's only: a check
    there waits for the device). It reads the penalty back to check it for NaN/inf on the first step
    and then every :attr:`check_every` steps (and whenever :attr:`last_value` is read), and says whether
    a NaN/inf penalty comes from the responses or from an overflow; :func:`neuronlab.train.fit` checks
    the whole loss after every step anyway.

    **Cost.** On a small network a step of this term costs its number of tensor operations, not
    arithmetic: a one-hot gather (which also checks the labels), one matrix product into the ring slot,
    one sum over the window, one division, one gather of each sample's class mean and one fused squared
    distance. ``python scripts/bench.py nsr`` times it beside the official code's scheme
    (:class:`neuronlab.experiments.bench.FifoSteadiness`).

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
        num_classes = _count("num_classes", num_classes, 2)
        memory = _count("memory", memory, 1, " mini-batch (the number of recent batches whose class means are used)")
        if not isinstance(lam, Mapping):
            _check_lam(lam, "", None)
        if neuron_reduction not in ("mean", "sum"):
            raise ValueError(f"neuron_reduction must be 'mean' or 'sum', got {neuron_reduction!r}")
        if conv not in ("positions", "mean"):
            raise ValueError(f"conv must be 'positions' or 'mean', got {conv!r}")
        if isinstance(class_weights, str) and class_weights not in ("frequency", "uniform"):
            raise ValueError(f"class_weights must be 'frequency', 'uniform' or a tensor, got {class_weights!r}")
        if isinstance(class_weights, torch.Tensor):
            if class_weights.shape != (num_classes,):
                raise ValueError(f"class_weights must have shape [{num_classes}], got {tuple(class_weights.shape)}")
            if class_weights.dtype == torch.bool or class_weights.dtype.is_complex:
                raise TypeError(f"class_weights must hold real numbers, got dtype {class_weights.dtype}")
            if not torch.isfinite(class_weights).all() or (class_weights < 0).any():
                raise ValueError(f"class_weights must be finite and >= 0, got {class_weights.tolist()}")
        elif not isinstance(class_weights, str):
            raise TypeError(f"class_weights must be 'frequency', 'uniform' or a [{num_classes}] tensor, got "
                            f"{type(class_weights).__name__}")
        if isinstance(layers, str) and layers == "auto":
            if warmup is None:
                raise ValueError("layers='auto' needs warmup=(x, y) to measure the intra-class variance")
            if not isinstance(warmup, (tuple, list)) or len(warmup) != 2:
                raise ValueError("warmup must be a pair (x, y) of inputs and labels for layers='auto'")
            candidates = auto_candidates or [n for n, m in model.named_modules()
                                             if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))]
            layers = pick_layer_by_variance(model, warmup[0], warmup[1], num_classes, candidates)
        self.model = model
        self.layers = resolve_layers(model, layers)
        self.num_classes = num_classes
        self.memory = memory
        self.class_weights = class_weights
        self._frequency_weights = isinstance(class_weights, str) and class_weights == "frequency"
        self.neuron_reduction = neuron_reduction
        self.conv = conv
        self.distributed = distributed
        if isinstance(lam, Mapping):
            unknown = [key for key in lam if key not in self.layers]
            if unknown:
                raise ValueError(f"lam has entries for layers that are not regularized: {sorted(map(str, unknown))};"
                                 f" the regularized layers are {list(self.layers)}")
            missing = [name for name in self.layers if name not in lam]
            if missing:
                raise ValueError(f"lam has no lambda for layer(s) {missing}: give one for every regularized layer "
                                 f"{list(self.layers)} (or a single number for all)")
        for name, module in self.layers.items():
            _check_lam(lam[name] if isinstance(lam, Mapping) else lam,
                       f"[{name!r}]" if isinstance(lam, Mapping) else f" (layer {name!r})", _layer_width(module))
        self.lam = {name: (lam[name] if isinstance(lam, Mapping) else lam) for name in self.layers}
        self._recorder = ResponseRecorder(model, list(self.layers), detach=False)
        self._last: Optional[torch.Tensor] = None
        self.reset()

    # -------------------------------------------------------------------------------- state and hooks
    #: Check the penalty for NaN/inf on the first step and then every this many steps (and whenever
    #: :attr:`last_value` is read). Each check reads a number back to the host, which on a GPU waits for
    #: the step to finish; :func:`neuronlab.train.fit` checks the total loss itself after every step.
    check_every = 100

    #: Above this many running numbers (memory x classes x neurons) the window's total is updated by
    #: adding the new batch and subtracting the one that leaves, and recomputed exactly once per window,
    #: so the cost per step does not grow with the memory; below it one sum over the window is cheaper.
    incremental_above = 1 << 15

    #: Up to this many numbers (observations x classes) the batch's class sums are one matrix product
    #: with the labels' one-hot matrix (fewer operations); above it they are scattered (less memory and
    #: arithmetic, e.g. for the positions of a convolutional layer).
    onehot_up_to = 1 << 16

    def reset(self) -> None:
        """Forget the running class statistics (e.g. between two training runs)."""
        self._windows: Dict[str, _ClassWindow] = {}
        self._plan = None
        self._slot = 0
        self._steps = 0
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
        plan = self._plan
        if plan is not None and mask is None and type(targets) is torch.Tensor and targets.dtype is torch.long:
            # The common case, inlined: on a small network each line here is paid at every step.
            name, window, scale, max_rows, width, dtype, device_index = plan
            x = self._recorder.latest(name)
            if (x is not None and x.dtype is dtype and x.get_device() == device_index and targets.dim() == 1
                    and x.shape == (targets.shape[0], width) and targets.shape[0] <= max_rows):
                try:
                    onehot = window.eye.index_select(0, targets)  # checks the labels on the CPU
                except (IndexError, RuntimeError):
                    onehot = None  # the general path below raises the clear error
                if onehot is not None:
                    index = self._slot
                    torch.mm(onehot.T, x.detach(), out=window.sums[index])
                    torch.sum(onehot, 0, out=window.counts[index])
                    if window.memory > 1:
                        torch.sum(window.ring, 0, out=window.total)
                    torch.div(window.total_sums, window.total_counts, out=window.means)
                    penalty = _mse_sum(x, window.means.index_select(0, targets)) * (scale / targets.shape[0])
                    self._slot = (index + 1) % window.memory
                    self._steps = steps = self._steps + 1
                    self._last = penalty.detach()  # not the graph, which would be freed inside the next step
                    if steps % self.check_every == 0:
                        self._raise_if_not_finite(penalty)
                    return penalty
        if not self._recorder.active:
            raise RuntimeError("NeuronSteadiness records nothing outside its with-block: use "
                               "`with NeuronSteadiness(...) as nsr:` around training")
        if type(targets) is not torch.Tensor or targets.dtype is not torch.long:
            targets = self._as_long_targets(targets)
        if targets.dim() != 1:
            raise ValueError(f"targets must be a 1-D tensor of class indices, got shape {tuple(targets.shape)} "
                             f"and dtype {targets.dtype} (one-hot or soft labels: pass .argmax(1))")
        if mask is not None:
            self._check_mask(mask, targets)
        distributed = self._is_distributed()
        # Read and check every layer's response and labels before any running statistic changes.
        inputs = [self._layer_input(name, targets, mask) for name in self.layers]
        total = None
        for name, (x, y, window, onehot, counts) in zip(self.layers, inputs):
            penalty = self._layer_penalty(name, x, y, window, onehot, counts, distributed)
            total = penalty if total is None else total + penalty
        self._slot = (self._slot + 1) % self.memory
        self._steps += 1
        value, world = total.detach(), 1  # not the graph, which would be freed inside the next step
        if distributed:
            world = torch.distributed.get_world_size()
            value = value.clone()
            torch.distributed.all_reduce(value)
        self._last = value
        if self._steps == 1 or self._steps % self.check_every == 0:
            self._raise_if_not_finite(value)
        self._plan = self._make_plan(inputs, mask, distributed)
        return total * world if world > 1 else total

    def _make_plan(self, inputs, mask, distributed: bool):
        """What the common case of :meth:`loss` needs, kept after a first step that went the general way:
        one dense layer, frequency weights, one lambda, one process, no mask, small batches (one-hot). On a
        small network a step of this term costs its number of operations and its Python overhead, so the
        common case skips the general path's bookkeeping; anything else goes the general way again.
        Whether training is distributed is read at that first step (a process group started later needs
        ``reset()``)."""
        if len(self.layers) != 1 or not self._frequency_weights or mask is not None or distributed:
            return None
        name = next(iter(self.layers))
        response, _, window, onehot, _ = inputs[0]
        lam = self.lam[name]
        if (onehot is None or window.incremental or isinstance(lam, torch.Tensor)
                or self._recorder[name].dim() != 2 or response.dtype != window.ring.dtype):
            return None
        per_neuron = 1.0 / response.shape[1] if self.neuron_reduction == "mean" else 1.0
        return (name, window, lam * per_neuron, self.onehot_up_to // self.num_classes, response.shape[1],
                response.dtype, response.get_device())

    def _as_long_targets(self, targets) -> torch.Tensor:
        """``targets`` as a ``long`` tensor (from any integer tensor or NumPy array), or a clear error."""
        if not isinstance(targets, torch.Tensor):
            if not (isinstance(targets, np.ndarray) and np.issubdtype(targets.dtype, np.integer)):
                raise TypeError(f"targets must be a tensor of class indices, got {type(targets).__name__}")
            targets = torch.from_numpy(np.ascontiguousarray(targets))
        dtype = targets.dtype
        if targets.dim() != 1 or dtype.is_floating_point or dtype.is_complex or dtype is torch.bool:
            raise ValueError(f"targets must be a 1-D tensor of class indices, got shape {tuple(targets.shape)} "
                             f"and dtype {targets.dtype} (one-hot or soft labels: pass .argmax(1))")
        return targets.long()  # int32, uint8, ... are valid class indices

    @staticmethod
    def _check_mask(mask, targets: torch.Tensor) -> None:
        if not isinstance(mask, torch.Tensor) or mask.dim() != 1:
            raise ValueError("mask must be a 1-D tensor: a boolean node mask or node indices")
        if mask.dtype == torch.bool and mask.shape[0] != targets.shape[0]:
            raise ValueError(f"the boolean mask has {mask.shape[0]} entries but there are {targets.shape[0]} "
                             "targets: pass one entry per node")
        if mask.dtype != torch.bool and (mask.dtype.is_floating_point or mask.dtype.is_complex):
            raise ValueError(f"mask must be boolean or integer node indices, got dtype {mask.dtype}")

    def _layer_input(self, name: str, targets: torch.Tensor, mask: Optional[torch.Tensor]):
        """Layer ``name``'s response as ``[observations, neurons]``, their labels, the layer's class
        window, and the labels as a one-hot matrix (small batches) or as class counts (large ones, on the
        CPU), both made in a way that checks the labels before anything is stored."""
        response = self._recorder[name]
        if response.shape[0] != targets.shape[0]:
            raise ValueError(f"layer {name!r} saw {response.shape[0]} samples but {targets.shape[0]} targets "
                             "were given: call loss() right after the forward pass of this batch")
        y = targets
        if mask is not None:
            response, y = response[mask], y[mask]
        if response.dim() != 2:
            if self.conv == "mean" and response.dim() > 2:
                response = response.flatten(2).mean(2)
            else:
                response, y = classwise.observations(response, y)
        lam = self.lam[name]
        if isinstance(lam, torch.Tensor) and lam.dim() == 1 and lam.shape[0] not in (1, response.shape[1]):
            raise ValueError(f"lam for layer {name!r} has {lam.shape[0]} entries but the layer has "
                             f"{response.shape[1]} neurons: give one lambda per neuron (or a single number)")
        window = self._windows.get(name)
        if window is None:
            window = self._windows[name] = _ClassWindow(self.memory, self.num_classes, response,
                                                        self.incremental_above)
        elif window.means.shape[1] != response.shape[1] or window.means.device != response.device:
            raise ValueError(f"layer {name!r} now gives {response.shape[1]} neurons on {response.device}, but its "
                             f"running class means hold {window.means.shape[1]} on {window.means.device}: call "
                             "reset() after changing the model or moving it to another device")
        on_cpu = y.device.type == "cpu"
        if not on_cpu and not self._checked:  # on a GPU a check waits for the device: check the first batch
            classwise.check_labels(y, y.shape[0], self.num_classes)
            self._checked = True
        onehot = counts = None
        try:
            if y.shape[0] * self.num_classes <= self.onehot_up_to:
                onehot = window.eye.index_select(0, y)  # checks the labels on the CPU
            elif on_cpu:
                counts = torch.bincount(y, minlength=self.num_classes)  # fails on a negative label
                if counts.shape[0] != self.num_classes:
                    raise IndexError
        except (IndexError, RuntimeError):
            raise ValueError(f"labels must be class indices in 0..{self.num_classes - 1}, got values from "
                             f"{y.min().item()} to {y.max().item()}: check num_classes") from None
        return response, y, window, onehot, counts

    def _layer_penalty(self, name: str, x: torch.Tensor, y: torch.Tensor, window: "_ClassWindow",
                       onehot: Optional[torch.Tensor], counts: Optional[torch.Tensor],
                       distributed: bool) -> torch.Tensor:
        # On a small network this is a handful of tiny tensors, where the cost is the number of
        # operations, not arithmetic: one gather of one-hot rows (it also checks the labels), one matrix
        # product into the ring slot, one sum over the window, one gather and one fused mse_loss.
        means, batch_counts = window.update(self._slot, x, y, onehot, counts, distributed)
        centre = means.index_select(0, y)
        if centre.dtype != x.dtype:
            centre = centre.to(x.dtype)
        lam = self.lam[name]
        per_neuron = 1.0 / x.shape[1] if self.neuron_reduction == "mean" else 1.0
        # sigma_n = sum_j alpha_j / |B_j| * sum_{i in B_j} (x_in - mu_jn)^2, i.e. one weight per sample;
        # with frequency weights alpha_j / |B_j| = 1 / |B| for every sample.
        if self._frequency_weights:
            if not isinstance(lam, torch.Tensor):
                squared = _mse_sum(x, centre)
                if distributed:
                    return squared * (lam * per_neuron) / batch_counts.sum()
                return squared * (lam * per_neuron / x.shape[0])
            per_sample = 1.0 / (batch_counts.sum() if distributed else x.shape[0])
        else:
            if isinstance(self.class_weights, torch.Tensor):
                class_weight = self.class_weights.to(batch_counts)
            else:
                present = (batch_counts > 0).to(batch_counts.dtype)
                class_weight = present / present.sum().clamp_min(1)
            per_sample = (class_weight / batch_counts.clamp_min(1)).index_select(0, y)[:, None].to(x.dtype)
        weights = per_sample * (lam.to(x) if isinstance(lam, torch.Tensor) else lam) * per_neuron
        return ((x - centre).square() * weights).sum()

    def _raise_if_not_finite(self, value: torch.Tensor) -> None:
        number = value.item()
        if not math.isfinite(number):
            raise NonFiniteResponseError(self._non_finite_message(number))

    @property
    def last_value(self) -> Optional[float]:
        """The global penalty of the last step (all ranks together), as a number; ``None`` before any step.

        Raises ``ValueError`` if it is NaN or infinite (the responses diverged: lower the learning rate or
        lambda, or check the data)."""
        if self._last is None:
            return None
        value = self._last.item()
        if not math.isfinite(value):
            raise NonFiniteResponseError(self._non_finite_message(value))
        return value

    def _non_finite_message(self, value: float) -> str:
        """Why the penalty is ``value`` (NaN or inf): lambda is checked at construction, so either the
        recorded responses hold NaN/inf, or they are finite and the penalty overflowed."""
        bad = []
        for name in self.layers:
            try:
                if not torch.isfinite(self._recorder[name].detach()).all():
                    bad.append(name)
            except (KeyError, RuntimeError):  # nothing recorded (any more): cannot tell
                return (f"the NSR penalty is {value}: the responses of {list(self.layers)} contain NaN or inf, or "
                        "the penalty overflowed; lower the learning rate or lambda, or check the data")
        if not bad and self._is_distributed():
            return (f"the NSR penalty is {value} but this rank's responses of {list(self.layers)} are finite: "
                    "another rank's responses hold NaN or inf (lower the learning rate or check the data), or "
                    f"lambda ({self._lam_summary()}) makes the penalty overflow")
        if bad:
            return (f"the NSR penalty is {value} because the responses of layer(s) {bad} contain NaN or inf: the "
                    "model diverged (lower the learning rate) or the data hold NaN/inf (check the inputs)")
        return (f"the NSR penalty is {value} although the responses of {list(self.layers)} are finite: the "
                f"squared deviations times lambda ({self._lam_summary()}) overflowed {self._dtype_name()}; lower "
                "lambda or the scale of the responses")

    def _lam_summary(self) -> str:
        parts = []
        for name, lam in self.lam.items():
            shown = f"max {lam.max().item():g}" if isinstance(lam, torch.Tensor) and lam.numel() else f"{lam}"
            parts.append(f"{name}: {shown}")
        return ", ".join(parts)

    def _dtype_name(self) -> str:
        for name in self.layers:
            try:
                return str(self._recorder[name].dtype).replace("torch.", "")
            except (KeyError, RuntimeError):
                continue
        return "the response dtype"

    def __repr__(self) -> str:
        return (f"NeuronSteadiness(layers={list(self.layers)}, num_classes={self.num_classes}, memory={self.memory}, "
                f"class_weights={self.class_weights if isinstance(self.class_weights, str) else 'tensor'}, "
                f"neuron_reduction={self.neuron_reduction!r}, conv={self.conv!r})")


if hasattr(torch._C._nn, "mse_loss"):
    _SUM = 2  # the ATen reduction code of "sum" (torch.nn._reduction.get_enum("sum"))

    def _mse_sum(x: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
        """``((x - centre)**2).sum()`` in one fused operation, differentiable in ``x``. ``F.mse_loss``
        spends more time on its Python-side checks than on a 100 x 10 tensor; the shapes are equal by
        construction here, so the ATen operation is called directly."""
        return torch._C._nn.mse_loss(x, centre, _SUM)
else:  # pragma: no cover - every PyTorch this package supports has it
    def _mse_sum(x: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(x, centre, reduction="sum")


class _ClassWindow:
    """One layer's class sums and counts over the last ``memory`` mini-batches.

    A ring ``[memory, K, n + 1]`` holds each batch's class sums with its class counts as an extra
    column; a slot is one contiguous block, so a distributed step all-reduces it in one call. The
    window's total is the sum over the ring, or for large layers (more than ``incremental_above`` numbers
    in the ring, ``memory > 2``) a running total that adds the new batch and subtracts the one that
    leaves, recomputed exactly once per window so rounding does not accumulate. Every view and buffer is
    made once: on a small network the cost of a step is the number of operations, not arithmetic."""

    __slots__ = ("ring", "slots", "sums", "counts", "total", "total_sums", "total_counts", "means",
                 "incremental", "memory", "eye")

    def __init__(self, memory: int, num_classes: int, like: torch.Tensor, incremental_above: int):
        width = like.shape[1]
        dtype = torch.promote_types(like.dtype, torch.float32)  # class counts stay exact for float16
        self.memory = memory
        self.ring = like.new_zeros(memory, num_classes, width + 1, dtype=dtype)
        self.slots = list(self.ring.unbind(0))
        self.sums = [slot[:, :width] for slot in self.slots]
        self.counts = [slot[:, width] for slot in self.slots]
        self.total = self.slots[0] if memory == 1 else self.ring.new_zeros(num_classes, width + 1)
        self.total_sums, self.total_counts = self.total[:, :width], self.total[:, width:]
        self.means = self.ring.new_empty(num_classes, width)
        self.incremental = memory > 2 and self.ring.numel() > incremental_above
        self.eye = torch.eye(num_classes, dtype=dtype, device=like.device)

    def update(self, index: int, x: torch.Tensor, y: torch.Tensor, onehot: Optional[torch.Tensor],
               counts: Optional[torch.Tensor], distributed: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        """Put batch ``(x, y)`` in slot ``index``, by a product with the labels' ``onehot`` matrix when
        given, else by scattering (with the class ``counts`` when given); return the class means over the
        window (``[K, n]``; a class absent from the whole window gets 0/0, a row that is never read) and
        the batch's class counts (all ranks together when distributed)."""
        slot, batch_counts = self.slots[index], self.counts[index]
        if self.incremental:
            self.total.sub_(slot)  # the batch that leaves the window
        observed = x.detach()
        if observed.dtype != self.ring.dtype:
            observed = observed.to(self.ring.dtype)
        if onehot is not None:
            torch.mm(onehot.T, observed, out=self.sums[index])
            torch.sum(onehot, 0, out=batch_counts)
        else:
            self.sums[index].zero_().index_add_(0, y, observed)
            if counts is None:
                batch_counts.zero_().index_add_(0, y, observed.new_ones(()).expand(y.shape[0]))
            else:
                batch_counts.copy_(counts)
        if distributed:
            torch.distributed.all_reduce(slot)
        if self.memory > 1:
            if self.incremental and index != 0:
                self.total.add_(slot)
            else:
                torch.sum(self.ring, 0, out=self.total)
        torch.div(self.total_sums, self.total_counts, out=self.means)
        return self.means, batch_counts


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
