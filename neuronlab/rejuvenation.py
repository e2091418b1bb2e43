r"""Neural Rejuvenation: find the dead neurons of a network with BatchNorm and bring them back to life.

Qiao, Lin, Zhang & Yuille, *Neural Rejuvenation: Improving Deep Network Training by Enhancing
Computational Resource Utilization*, CVPR 2019. The idea: a trained network wastes part of its capacity on
**dead neurons**, channels whose BatchNorm scale :math:`\gamma` has shrunk to (almost) nothing, so that
their output is (almost) a constant and every weight into and out of them is spent for nothing. Neural
Rejuvenation watches the share of parameters that still do work (the *utilization*) while training with a
sparsity pressure on :math:`\gamma`, and once it falls to a target it re-initialises the dead neurons and
trains on, so the freed capacity is used again.

* :func:`batchnorm_pairs` -- the (weight layer, BatchNorm) pairs of a model, in order;
* :func:`dead_neurons` -- the criterion :math:`|\gamma_k| < \tau \max_j |\gamma_j|` (:data:`DEAD_THRESHOLD`);
* :func:`live_fraction` and :func:`utilization` -- the share of live neurons and of live parameters;
* :class:`GammaL1` -- the sparsity pressure :math:`\lambda \sum |\gamma|` as an extra loss term for
  :func:`neuronlab.train.fit`;
* :func:`rejuvenate_` -- re-initialise the dead neurons in place;
* :class:`Rejuvenator` -- rejuvenate once, when the utilization first reaches a target.

**The protocol** (the official ``cifar.py``): train with the penalty (:class:`GammaL1`; the official
default :math:`\lambda = 10^{-4}`, README runs :math:`1.5 \cdot 10^{-4}`) and measure :func:`utilization`
after every epoch; when it is :math:`\le` the target (``--nr-target``, 0.25 for CIFAR, 0.5 for ImageNet)
call :func:`rejuvenate_` once, then continue training with a *fresh optimizer* and *without* the penalty
(the official code builds a new ``nr.SGD(..., sparsity=0)``). With :func:`neuronlab.train.fit`, pass a
:class:`Rejuvenator` as a callback: it stops the first run on the epoch it rejuvenates, and a second
``fit`` without ``extra_losses`` continues from the rejuvenated weights.

**The one model shape supported.** The model is read as a *chain* of weight layers (``nn.Conv2d`` or
``nn.Linear``) in module registration order (``model.named_modules()``). A ``BatchNorm1d``/``BatchNorm2d``
belongs to the weight layer registered last before it (it must have that layer's number of output
channels); other modules between them (activations, pooling, dropout, ``Flatten``) are ignored. The next
weight layer consumes the channels: a convolution reads channel :math:`c` as its input channel :math:`c`, a
``Linear`` after ``Flatten`` reads channel :math:`c` of :math:`C` as the contiguous block of
``in_features / C`` features :math:`c \cdot b, \dots, (c+1) b - 1` (the channel-major order of flattening
``[N, C, H, W]``). Weight layers without a BatchNorm (e.g. ``fc1`` and ``fc2`` of
:class:`neuronlab.models.SmallCNN`) have only live outputs. :class:`neuronlab.models.SmallCNN` and
:class:`neuronlab.models.MLP` with ``batchnorm=True`` and :func:`neuronlab.models.vgg19_cifar` are such
chains. Residual and branching networks are *not*: their registration order is not their data flow, and
the functions here cannot tell (a channel count that does not fit raises ``ValueError``; one that happens
to fit does not).

**How we differ from the official code** (``joe-siyuan-qiao/NeuralRejuvenation-CVPR19``; PyTorch 0.4.1,
CUDA-only: ``torch.cuda.ByteTensor`` masks, 0.4-era optimizer calls; it needs its own ``nr.Conv2d``
layers):

* *Where the neurons go.* The official ``rejuvenate`` removes the dead neurons and rebuilds every layer at
  a new width ``int(live_out * expand_rate)`` with one network-wide ``expand_rate = all_params /
  live_params``. That restores the *parameter count*, not the widths: if every layer kept a fraction
  :math:`f` of its neurons, the live parameters are about :math:`f^2` of all, ``expand_rate`` is about
  :math:`1/f^2`, and each layer grows to :math:`w/f` neurons, wider than before (layers that kept more
  neurons get more). We re-initialise the dead neurons *in place*: every layer gets back exactly its
  original width and the architecture does not change. The two are the same step only where the
  official new width happens to equal the original width.
* *Initialisation* is the official one: incoming weights :math:`\mathcal N(0, 2/n)` with
  :math:`n = k_h k_w C_\text{out}`, :math:`C_\text{out}` the layer's output channels (``out_features`` for a
  ``Linear``). This is He initialisation in *fan-out* mode, the official ``n = k*k*out_channels``, which is
  also how the official models initialise every convolution at the start (:func:`neuronlab.init.he_` uses
  fan-in). We keep the official fan because a BatchNorm follows every re-initialised neuron: the scale of
  its incoming weights is normalised away in the forward pass and sets only the effective step size, so
  the revived neurons start as the official ones do. BatchNorm :math:`\gamma = 0.5` (the official start
  value too), :math:`\beta = 0`, running mean 0 and variance 1, bias 0.
* *Cross connections* start at zero as in the official ``shadow_zero`` masks: surviving inputs to revived
  neurons (S→R) and revived inputs to surviving neurons (R→S). Revived neurons read revived neurons of the
  layer before, or the network input. One exception, which the official code (where nearly every layer
  grows) rarely meets: if the layer before revived nothing, a revived neuron would have no input at all,
  output the constant :math:`\beta = 0`, and never get a gradient through the ReLU; it then reads every
  input channel (S→R drawn like the rest). R→S stays zero everywhere, also into layers without BatchNorm
  (the official classifier draws its new input weights from :math:`\mathcal N(0, 0.01^2)`); so right after
  :func:`rejuvenate_` the network computes exactly what it computed with the outputs of its dead
  neurons (after their activation) set to 0 (tested).
* *Utilization* counts the weights and biases of every weight layer, those without BatchNorm included;
  the official ``inspect`` counts only its ``nr.Conv2d`` weights (the classifier counts 0). It has no
  FLOPs variant here, and a layer whose :math:`\max|\gamma|` is below the official ``all_dead_thres``
  (:math:`10^{-3}`) is not removed: its neurons are dead by the criterion only if they are small relative
  to their layer's largest (all of them when every :math:`\gamma` is exactly 0), and they are revived.
* No "cross attention" (``nr_conv_ca_mode``; the official ``cifar.py`` turns it off) and no neural
  rescaling (``bn_restore``).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple, Union

import torch
from torch import nn

__all__ = [
    "DEAD_THRESHOLD",
    "batchnorm_pairs",
    "dead_neurons",
    "live_fraction",
    "utilization",
    "GammaL1",
    "rejuvenate_",
    "Rejuvenator",
]

#: A neuron is dead when :math:`|\gamma| <` ``DEAD_THRESHOLD`` :math:`\cdot \max|\gamma|` over its layer
#: (``live_thres`` of the official code).
DEAD_THRESHOLD = 0.01

#: The weight layers of a chain.
_WEIGHT_LAYERS = (nn.Conv2d, nn.Linear)
#: The normalisation layers whose scale decides which neurons live.
_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


@dataclass
class _Link:
    """One weight layer of the chain, its BatchNorm (if any) and how it reads the layer before."""

    name: str
    layer: nn.Module
    bn_name: Optional[str] = None
    bn: Optional[nn.Module] = None
    #: input features per output channel of the previous weight layer (1 for a convolution)
    block: int = 1


def _out_channels(layer: nn.Module) -> int:
    return layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features


def _in_channels(layer: nn.Module) -> int:
    return layer.in_channels if isinstance(layer, nn.Conv2d) else layer.in_features


def _chain(model: nn.Module) -> List[_Link]:
    """The weight layers of ``model`` in registration order, each with its BatchNorm; checked."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(model).__name__}")
    links: List[_Link] = []
    for name, module in model.named_modules():
        if isinstance(module, _WEIGHT_LAYERS):
            if isinstance(module, nn.Conv2d) and module.groups != 1:
                raise ValueError(f"convolution {name!r} has groups={module.groups}; rejuvenation supports only "
                                 "ordinary convolutions (groups=1), whose every output reads every input channel")
            links.append(_Link(name, module))
        elif isinstance(module, _BATCHNORMS):
            if not links:
                raise ValueError(f"BatchNorm {name!r} comes before any Conv2d/Linear layer: rejuvenation reads the "
                                 "model as a chain of weight layers, each followed by its BatchNorm")
            owner = links[-1]
            if owner.bn is not None:
                raise ValueError(f"weight layer {owner.name!r} is followed by two BatchNorms, {owner.bn_name!r} "
                                 f"and {name!r}; rejuvenation needs one BatchNorm per weight layer")
            if module.weight is None:
                raise ValueError(f"BatchNorm {name!r} has no scale gamma (affine=False); the dead-neuron criterion "
                                 "reads gamma: build it with affine=True")
            if module.num_features != _out_channels(owner.layer):
                raise ValueError(f"BatchNorm {name!r} has {module.num_features} channels but the weight layer "
                                 f"before it, {owner.name!r}, has {_out_channels(owner.layer)} outputs: rejuvenation "
                                 "needs each BatchNorm right after its weight layer in registration order (a chain, "
                                 "not a residual or branching network)")
            owner.bn_name, owner.bn = name, module
        elif not list(module.children()) and isinstance(getattr(module, "weight", None), torch.Tensor) \
                and module.weight.dim() >= 2:
            raise ValueError(f"layer {name!r} ({type(module).__name__}) has a weight, but rejuvenation supports "
                             "only chains of Conv2d and Linear layers with BatchNorm1d/BatchNorm2d")
    if not any(link.bn is not None for link in links):
        raise ValueError(f"{type(model).__name__} has no BatchNorm after a Conv2d/Linear layer: the dead-neuron "
                         "criterion reads the BatchNorm scales (build the model with batchnorm=True)")
    for before, link in zip(links, links[1:]):
        if before.bn is None:  # every output of a layer without BatchNorm lives: how they are read is moot
            continue
        channels, inputs = _out_channels(before.layer), _in_channels(link.layer)
        if isinstance(link.layer, nn.Conv2d) and inputs != channels:
            raise ValueError(f"convolution {link.name!r} takes {inputs} input channels but {before.name!r} before "
                             f"it gives {channels}: not a chain in registration order (a residual or branching "
                             "network?)")
        if isinstance(link.layer, nn.Linear):
            if inputs % channels:
                raise ValueError(f"Linear {link.name!r} takes {inputs} features, not a multiple of the {channels} "
                                 f"channels of {before.name!r} before it: not a chain in registration order (a "
                                 "residual or branching network?)")
            link.block = inputs // channels
    return links


def _check_threshold(threshold: float) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise TypeError(f"threshold must be a number, got {threshold!r}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must lie in (0, 1) (a fraction of the largest |gamma|), got {threshold}")
    return float(threshold)


def _dead_masks(links: List[_Link], threshold: float) -> List[torch.Tensor]:
    """Dead output channels of every weight layer (none for a layer without BatchNorm)."""
    return [dead_neurons(link.bn, threshold) if link.bn is not None
            else torch.zeros(_out_channels(link.layer), dtype=torch.bool, device=link.layer.weight.device)
            for link in links]


def _input_mask(links: List[_Link], masks: List[torch.Tensor], i: int) -> Optional[torch.Tensor]:
    """Which input features of weight layer ``i`` come from the masked channels of the layer before
    (``None`` for the first layer, which reads the network input)."""
    if i == 0:
        return None
    return masks[i - 1].to(links[i].layer.weight.device).repeat_interleave(links[i].block)


# ------------------------------------------------------------------------------------------ criterion
def batchnorm_pairs(model: nn.Module) -> List[Tuple[str, nn.Module, str, nn.Module]]:
    """The weight layers that have a BatchNorm, with it: ``(layer name, layer, BatchNorm name, BatchNorm)``.

    The model is read as a chain in registration order (see the module docstring): each
    ``BatchNorm1d``/``BatchNorm2d`` belongs to the ``Conv2d``/``Linear`` registered last before it.

    Args:
        model: a chain network, e.g. :class:`neuronlab.models.SmallCNN` with ``batchnorm=True``.

    Returns:
        A list of 4-tuples, in registration order.

    Raises:
        ValueError: the model has no BatchNorm after a weight layer; a BatchNorm's channel count differs
            from its weight layer's outputs; a BatchNorm without a weight layer before it or without
            ``gamma``; two BatchNorms on one layer; a convolution with ``groups > 1``; another kind of
            weight layer; a layer whose inputs do not fit the channels of the layer before.
        TypeError: ``model`` is not an ``nn.Module``.

    Example:
        >>> from neuronlab.models import SmallCNN
        >>> model = SmallCNN(channels=(4, 8), hidden=16, batchnorm=True)
        >>> [(name, bn_name) for name, _, bn_name, _ in batchnorm_pairs(model)]
        [('conv1', 'bn1'), ('conv2', 'bn2')]
    """
    return [(link.name, link.layer, link.bn_name, link.bn) for link in _chain(model) if link.bn is not None]


def dead_neurons(bn_or_gamma: Union[nn.Module, torch.Tensor], threshold: float = DEAD_THRESHOLD) -> torch.Tensor:
    r"""The dead-neuron criterion of Neural Rejuvenation: a tiny BatchNorm scale relative to the layer's.

    .. math:: \text{dead}_k = |\gamma_k| < \tau \cdot \max_j |\gamma_j|

    With :math:`\tau = 0.01` (:data:`DEAD_THRESHOLD`) a neuron is dead when its scale is below 1 % of its
    layer's largest. If every :math:`\gamma` is 0, every neuron is dead.

    Args:
        bn_or_gamma: a ``BatchNorm1d``/``BatchNorm2d`` (its ``weight`` is read) or a 1-D tensor of scales.
        threshold: :math:`\tau`, in (0, 1).

    Returns:
        A boolean tensor, one entry per neuron, on the device of :math:`\gamma`.

    Raises:
        ValueError: :math:`\gamma` is not 1-D, is empty or holds NaN/inf; ``threshold`` is outside (0, 1).
        TypeError: ``bn_or_gamma`` is neither a BatchNorm nor a tensor.

    Example:
        >>> import torch
        >>> dead_neurons(torch.tensor([1.0, 0.005, -0.02, 0.0]))
        tensor([False,  True, False,  True])
    """
    threshold = _check_threshold(threshold)
    if isinstance(bn_or_gamma, _BATCHNORMS):
        if bn_or_gamma.weight is None:
            raise ValueError("this BatchNorm has no scale gamma (affine=False): nothing to read")
        gamma = bn_or_gamma.weight
    elif isinstance(bn_or_gamma, torch.Tensor):
        gamma = bn_or_gamma
    else:
        raise TypeError(f"expected a BatchNorm1d/BatchNorm2d or a 1-D tensor of scales, got "
                        f"{type(bn_or_gamma).__name__}")
    gamma = gamma.detach()
    if gamma.dim() != 1 or gamma.numel() == 0:
        raise ValueError(f"gamma must be a non-empty 1-D tensor (one scale per neuron), got shape "
                         f"{tuple(gamma.shape)}")
    if gamma.is_complex() or not gamma.is_floating_point():
        raise ValueError(f"gamma must be a real floating tensor, got dtype {gamma.dtype}")
    if not torch.isfinite(gamma).all():
        raise ValueError("gamma holds NaN or inf (did training diverge?): no neuron can be judged")
    magnitude = gamma.abs()
    largest = magnitude.max()
    return (magnitude < threshold * largest) | (largest == 0)  # all zero: all dead (the official all_dead)


def live_fraction(model: nn.Module, threshold: float = DEAD_THRESHOLD) -> float:
    """Live neurons of all BatchNorm layers over all their neurons (see :func:`dead_neurons`).

    Args:
        model: a chain network (see :func:`batchnorm_pairs`).
        threshold: the relative threshold of :func:`dead_neurons`.

    Returns:
        The utilization, a float between 0 and 1.

    Raises:
        ValueError: as :func:`batchnorm_pairs` and :func:`dead_neurons`.

    Example:
        >>> import torch
        >>> from neuronlab.models import MLP
        >>> model = MLP([6, 4, 3], batchnorm=True)
        >>> with torch.no_grad():
        ...     _ = model.bn1.weight.copy_(torch.tensor([1.0, 0.0, 0.5, 0.001]))
        >>> live_fraction(model)  # 2 of 4
        0.5
    """
    threshold = _check_threshold(threshold)
    masks = [dead_neurons(bn, threshold) for _, _, _, bn in batchnorm_pairs(model)]
    return float(sum(int((~m).sum()) for m in masks)) / float(sum(m.numel() for m in masks))


def utilization(model: nn.Module, threshold: float = DEAD_THRESHOLD) -> float:
    r"""Parameter utilization: the share of the weight layers' parameters that connect live neurons.

    .. math:: U = \frac{\sum_{\text{layers}} \#\{\text{weights with live input and live output}\}
              + \#\{\text{biases of live outputs}\}}{\sum_{\text{layers}} \#\text{weights} + \#\text{biases}}

    A weight is live iff its input channel and its output channel are live (the official
    ``one_mask = live_prev_mask * live_mask``; a convolution weight has :math:`k_h k_w` entries per
    pair). The inputs of the first weight layer and the outputs of a layer without BatchNorm are always
    live; a ``Linear`` after ``Flatten`` reads each channel as a block of features (module docstring).
    BatchNorm parameters are not counted.

    Args:
        model: a chain network (see :func:`batchnorm_pairs`).
        threshold: the relative threshold of :func:`dead_neurons`.

    Returns:
        The live fraction, a float between 0 and 1 (1 when no neuron is dead).

    Raises:
        ValueError: as :func:`batchnorm_pairs` and :func:`dead_neurons`.

    Example:
        >>> import torch
        >>> from neuronlab.models import MLP
        >>> model = MLP([6, 4, 3], batchnorm=True)  # 6*4+4 and 4*3+3 parameters
        >>> with torch.no_grad():
        ...     _ = model.bn1.weight.copy_(torch.tensor([1.0, 0.0, 0.5, 0.001]))
        >>> live = (6 * 2 + 2) + (2 * 3 + 3)  # 2 of 4 hidden neurons live
        >>> utilization(model) == live / (28 + 15)
        True
    """
    threshold = _check_threshold(threshold)
    links = _chain(model)
    dead = _dead_masks(links, threshold)
    live_params, all_params = 0, 0
    for i, link in enumerate(links):
        weight, bias = link.layer.weight, link.layer.bias
        per_pair = weight[0, 0].numel()  # kh * kw for a convolution, 1 for a Linear
        live_out = int((~dead[i]).sum())
        from_dead = _input_mask(links, dead, i)
        live_in = weight.shape[1] if from_dead is None else int((~from_dead).sum())
        live_params += live_out * live_in * per_pair + (live_out if bias is not None else 0)
        all_params += weight.numel() + (bias.numel() if bias is not None else 0)
    return live_params / all_params


# ------------------------------------------------------------------------------------------ pressure
class GammaL1:
    r"""The sparsity pressure of Neural Rejuvenation: an L1 penalty on every BatchNorm scale.

    .. math:: \Omega = \lambda \sum_{\text{BatchNorm layers}} \sum_k |\gamma_k|

    Its gradient is :math:`\lambda\,\mathrm{sign}(\gamma)`, what the official optimizer adds to every
    BatchNorm weight gradient (``update_bn``; as in Network Slimming). Use it as an extra loss term of
    :func:`neuronlab.train.fit` (``extra_losses={"gamma_l1": GammaL1(model)}``): the call takes the step's
    :class:`neuronlab.train.StepContext` and ignores it. Every ``BatchNorm1d``/``2d``/``3d`` with a scale
    counts, whether or not the model is a chain. With plain SGD the penalty moves each :math:`\gamma`
    towards 0 by ``lr * lam`` per step.

    Args:
        model: a network with BatchNorm layers (their ``weight`` parameters are collected once, here).
        lam: :math:`\lambda \ge 0` (official default :math:`10^{-4}`; README runs on CIFAR-10
            :math:`1.5 \cdot 10^{-4}`).

    Raises:
        ValueError: ``lam`` negative or not finite; the model has no BatchNorm with a scale.
        TypeError: ``lam`` is not a number.

    Example:
        >>> import torch
        >>> from neuronlab.models import MLP
        >>> model = MLP([6, 4, 3], batchnorm=True)  # gamma starts at 1
        >>> GammaL1(model, lam=0.5)(None)  # 0.5 * (1 + 1 + 1 + 1)
        tensor(2., grad_fn=<MulBackward0>)
    """

    def __init__(self, model: nn.Module, lam: float = 1e-4):
        if isinstance(lam, bool) or not isinstance(lam, numbers.Real):
            raise TypeError(f"lam must be a number, got {lam!r}")
        if not (math.isfinite(lam) and lam >= 0):
            raise ValueError(f"lam must be a finite number >= 0, got {lam}")
        self.lam = float(lam)
        self.gammas = [m.weight for m in model.modules()
                       if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)) and m.weight is not None]
        if not self.gammas:
            raise ValueError(f"{type(model).__name__} has no BatchNorm with a scale gamma: nothing to penalise "
                             "(build the model with batchnorm=True)")

    def __call__(self, ctx=None) -> torch.Tensor:
        return self.lam * torch.stack([gamma.abs().sum() for gamma in self.gammas]).sum()


# ------------------------------------------------------------------------------------------ rejuvenation
def _fan_out_std(layer: nn.Module) -> float:
    weight = layer.weight
    return math.sqrt(2.0 / (weight.shape[0] * weight[0, 0].numel()))


def _he_block(layer: nn.Module, rows: torch.Tensor, cols: torch.Tensor,
              generator: Optional[torch.Generator]) -> torch.Tensor:
    """:math:`\\mathcal N(0, 2/\\text{fan-out})` draws for ``weight[rows][:, cols]``, drawn on the CPU."""
    weight = layer.weight
    shape = (len(rows), len(cols)) + tuple(weight.shape[2:])
    draws = torch.randn(shape, generator=generator, dtype=torch.float64) * _fan_out_std(layer)
    return draws.to(dtype=weight.dtype, device=weight.device)


@torch.no_grad()
def rejuvenate_(model: nn.Module, threshold: float = DEAD_THRESHOLD, gamma: float = 0.5,
                generator: Optional[torch.Generator] = None) -> Dict[str, int]:
    r"""Neural Rejuvenation, in place: re-initialise every dead neuron (:func:`dead_neurons`).

    For each dead output channel :math:`k` of a weight layer with BatchNorm (a *revived* neuron, R; the
    others *survive*, S):

    * its incoming weights from revived channels of the layer before (or from the network input, for the
      first layer) are drawn from :math:`\mathcal N(0, 2/n)`, :math:`n = k_h k_w C_\text{out}`
      (fan-out, :math:`C_\text{out}` output channels, as the official code; ``out_features`` for a ``Linear``); from
      surviving channels they are 0 (S→R). If the layer before revived nothing, :math:`k` reads every
      input channel instead (else it would have no input and never learn; module docstring);
    * its bias is 0; its BatchNorm :math:`\gamma =` ``gamma``, :math:`\beta = 0`, running mean 0, running
      variance 1;
    * in the next weight layer, its weights to surviving outputs (every output of a layer without
      BatchNorm) are 0 (R→S), to revived outputs drawn as above.

    Everything between surviving neurons (weights, biases, BatchNorm parameters and statistics) is left
    bit for bit. Hence, in eval mode, the rejuvenated network computes what the old one computed with the
    dead neurons' outputs set to 0 (exactly the old function if those outputs were already 0, e.g.
    :math:`\gamma = \beta = 0` before a ReLU). Build a fresh optimizer afterwards: momentum buffers still
    hold the old neurons' history. Nothing is dead afterwards when every surviving :math:`|\gamma|` is at
    least ``threshold * gamma``; a surviving neuron below that counts as dead by the relative criterion,
    though untouched.

    Args:
        model: a chain network (see :func:`batchnorm_pairs`).
        threshold: the relative threshold of :func:`dead_neurons`.
        gamma: the BatchNorm scale of revived neurons (official 0.5), > 0.
        generator: a CPU ``torch.Generator`` for the draws (they are moved to the weights' device).

    Returns:
        ``{BatchNorm name: number of neurons revived}`` for every BatchNorm of the chain.

    Raises:
        ValueError: as :func:`batchnorm_pairs` and :func:`dead_neurons`; ``gamma`` not a positive finite
            number, or so small that revived neurons would be dead at once (``gamma < threshold *`` the
            largest surviving :math:`|\gamma|`). Checked before anything changes.

    Example:
        >>> import torch
        >>> from neuronlab.models import MLP
        >>> model = MLP([6, 4, 3], batchnorm=True)
        >>> with torch.no_grad():
        ...     _ = model.bn1.weight.copy_(torch.tensor([1.0, 0.0, 0.5, 0.001]))
        >>> g = torch.Generator().manual_seed(0)
        >>> rejuvenate_(model, generator=g)
        {'bn1': 2}
        >>> model.bn1.weight.detach()
        tensor([1.0000, 0.5000, 0.5000, 0.5000])
        >>> bool((model.fc2.weight[:, [1, 3]] == 0).all())  # R->S start at 0
        True
    """
    threshold = _check_threshold(threshold)
    if isinstance(gamma, bool) or not isinstance(gamma, numbers.Real):
        raise TypeError(f"gamma must be a number, got {gamma!r}")
    if not (math.isfinite(gamma) and gamma > 0):
        raise ValueError(f"gamma (the scale of revived neurons) must be a positive finite number, got {gamma}")
    links = _chain(model)
    dead = _dead_masks(links, threshold)
    for link, mask in zip(links, dead):
        if link.bn is None or not mask.any() or mask.all():
            continue
        largest = float(link.bn.weight.detach().abs()[~mask].max())
        if gamma < threshold * largest:
            raise ValueError(f"gamma={gamma} is below {threshold} x the largest surviving |gamma| of "
                             f"{link.bn_name!r} ({largest:.4g}): the revived neurons would be dead at once; "
                             f"pass gamma >= {threshold * largest:.4g}. Nothing was changed.")
    for i, link in enumerate(links):
        weight, device = link.layer.weight, link.layer.weight.device
        revived_out = dead[i].to(device)
        revived_in = _input_mask(links, dead, i)
        if revived_in is not None and revived_in.any():  # R->S: surviving outputs ignore revived inputs
            surviving_rows = (~revived_out).nonzero().squeeze(1)
            weight[surviving_rows[:, None], revived_in.nonzero().squeeze(1)[None, :]] = 0
        if not revived_out.any():
            continue
        rows = revived_out.nonzero().squeeze(1)
        reads_all = revived_in is None or not revived_in.any()
        cols = (torch.arange(weight.shape[1], device=device) if reads_all else revived_in.nonzero().squeeze(1))
        weight[rows] = 0  # S->R
        weight[rows[:, None], cols[None, :]] = _he_block(link.layer, rows, cols, generator)
        if link.layer.bias is not None:
            link.layer.bias[rows] = 0
        bn = link.bn
        bn.weight[rows] = gamma
        bn.bias[rows] = 0
        if bn.running_mean is not None:
            bn.running_mean[rows] = 0
            bn.running_var[rows] = 1
    return {link.bn_name: int(mask.sum()) for link, mask in zip(links, dead) if link.bn is not None}


class Rejuvenator:
    """Rejuvenate once, the first time the utilization falls to a target (the official ``--nr-target``).

    Call :meth:`step` after each epoch of training with :class:`GammaL1`. When :func:`utilization` is
    :math:`\\le` ``target`` for the first time it calls :func:`rejuvenate_` (its generator seeded with
    ``seed``) and sets ``done``; then train on with a fresh optimizer and no penalty. As a callback of
    :func:`neuronlab.train.fit` (``callbacks=[rejuvenator]``) it writes the epoch's ``utilization`` (before
    rejuvenating) and ``rejuvenated`` (neurons revived, 0 otherwise) into the history and stops the run
    on the epoch it rejuvenates. A resumed run does not restore its state: make a new one per run.

    Args:
        model: a chain network (checked here, see :func:`batchnorm_pairs`).
        target: rejuvenate when the utilization is at most this, in (0, 1] (official 0.25 on CIFAR, 0.5 on
            ImageNet).
        threshold, gamma: as in :func:`rejuvenate_`.
        seed: seeds the draws of the revived weights.

    Attributes:
        done: whether it has rejuvenated.
        counts: what :func:`rejuvenate_` returned, ``None`` before.
        utilization: the utilization measured by the last :meth:`step` (before it rejuvenated, if it did).

    Example:
        >>> import torch
        >>> from neuronlab.models import MLP
        >>> model = MLP([6, 4, 3], batchnorm=True)
        >>> rejuvenator = Rejuvenator(model, target=0.5)
        >>> rejuvenator.step() is None  # all alive: utilization 1
        True
        >>> with torch.no_grad():
        ...     _ = model.bn1.weight.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
        >>> rejuvenator.step(), rejuvenator.done
        ({'bn1': 3}, True)
        >>> rejuvenator.step() is None  # only once
        True
    """

    def __init__(self, model: nn.Module, target: float = 0.5, threshold: float = DEAD_THRESHOLD,
                 gamma: float = 0.5, seed: int = 0):
        if isinstance(target, bool) or not isinstance(target, numbers.Real):
            raise TypeError(f"target must be a number, got {target!r}")
        if not 0.0 < target <= 1.0:
            raise ValueError(f"target must lie in (0, 1] (a share of parameters), got {target}")
        if isinstance(gamma, bool) or not isinstance(gamma, numbers.Real):
            raise TypeError(f"gamma must be a number, got {gamma!r}")
        if not (math.isfinite(gamma) and gamma > 0):
            raise ValueError(f"gamma (the scale of revived neurons) must be a positive finite number, got {gamma}")
        self.threshold = _check_threshold(threshold)
        _chain(model)
        self.model, self.target, self.gamma, self.seed = model, float(target), float(gamma), int(seed)
        self.done = False
        self.counts: Optional[Dict[str, int]] = None
        self.utilization: Optional[float] = None

    def step(self) -> Optional[Dict[str, int]]:
        """Measure the utilization; rejuvenate if it is at most ``target`` and this has not rejuvenated yet.

        Returns:
            The counts of :func:`rejuvenate_` on the call that rejuvenates, else ``None``.
        """
        self.utilization = utilization(self.model, self.threshold)
        if self.done or self.utilization > self.target:
            return None
        generator = torch.Generator().manual_seed(self.seed)
        self.counts = rejuvenate_(self.model, self.threshold, self.gamma, generator)
        self.done = True
        return self.counts

    def __call__(self, history, model=None) -> bool:
        """The :func:`neuronlab.train.fit` callback: :meth:`step`, logged; ``True`` (stop) when it rejuvenated."""
        if model is not None and model is not self.model:
            raise ValueError("this Rejuvenator watches another model than the one being trained")
        counts = self.step()
        if history.rows:
            history.rows[-1]["utilization"] = float("nan") if self.utilization is None else self.utilization
            history.rows[-1]["rejuvenated"] = sum(counts.values()) if counts else 0
        return counts is not None
