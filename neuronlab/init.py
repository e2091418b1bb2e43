r"""Initialization schemes, applied to whole models in place (``torch.nn.init`` style: ``name_``).

Each function walks the model's weight layers (``nn.Linear`` and ``nn.Conv1d/2d/3d``), re-draws their
weights and, unless told otherwise, sets their biases to zero. All functions return the model so they
can be chained.

Variance-scaling in one line each (``n_in``/``n_out``: fan-in and fan-out of the layer, for convolutions
channels times kernel size):

* :func:`gaussian_` -- :math:`W \sim \mathcal N(0, \sigma^2)` with a fixed :math:`\sigma` (0.01 in the
  early literature). The signal shrinks or grows by :math:`\sqrt{n_\text{in}}\,\sigma` per layer.
* :func:`xavier_` -- Glorot & Bengio (2010): :math:`\operatorname{Var}[W] = 2/(n_\text{in}+n_\text{out})`,
  the compromise between the forward condition :math:`n_\text{in}\operatorname{Var}[W]=1` and the
  backward condition :math:`n_\text{out}\operatorname{Var}[W]=1` for linear (or tanh near 0) units.
* :func:`he_` -- He et al. (2015): :math:`\operatorname{Var}[W] = 2/n_\text{in}`; the factor 2 undoes the
  halving of the second moment by ReLU.
* :func:`orthogonal_` -- Saxe et al. (2014): a (semi-)orthogonal matrix, all singular values equal.
* :func:`lsuv_` -- Mishkin & Matas (2016), *All you need is a good init*: orthogonal, then rescale each
  layer on a batch of data until its output variance is 1.
* :func:`neuronlab.campaign.campaign_` -- Mao et al. (2021), Neuron Campaign (IBCI): elect each layer's
  neurons among many Xavier/He candidates by an information-bottleneck score, keeping them orthogonal.
  It needs data and labels and builds on this module, so it lives one floor up, in
  :mod:`neuronlab.campaign`.
"""

from __future__ import annotations

import math
from typing import Dict, Iterable, List, Optional, Tuple, Union

import torch
from torch import nn

from .probe import forward_call_order

WEIGHT_LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
SCHEMES = ("gaussian", "xavier", "he", "orthogonal", "lsuv")

__all__ = [
    "SCHEMES",
    "weight_layers",
    "fan_in_out",
    "gaussian_",
    "xavier_",
    "he_",
    "orthogonal_",
    "lsuv_",
    "initialize_",
]


def weight_layers(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """Return ``(name, module)`` for every ``nn.Linear``/``nn.Conv*`` in ``model``, in definition order.

    A bare ``nn.Linear`` or ``nn.Conv*`` is its own single weight layer (name ``""``).
    """
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, WEIGHT_LAYER_TYPES)]
    if not layers:
        raise ValueError(
            f"{type(model).__name__} has no nn.Linear or nn.Conv layer to initialize; "
            "neuronlab.init works on models built from these layers."
        )
    return layers


def fan_in_out(weight: torch.Tensor) -> Tuple[int, int]:
    """Fan-in and fan-out of a weight tensor ``[out, in, *kernel]``: ``in * prod(kernel)``, ``out * prod(kernel)``."""
    if weight.dim() < 2:
        raise ValueError(f"fan-in/out need a weight with at least 2 dimensions, got shape {tuple(weight.shape)}")
    receptive = math.prod(weight.shape[2:]) if weight.dim() > 2 else 1
    return weight.shape[1] * receptive, weight.shape[0] * receptive


def _zero_bias(module: nn.Module) -> None:
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)


def _variance_scaling_(model: nn.Module, std_of, distribution: str, zero_bias: bool,
                       generator: Optional[torch.Generator]) -> nn.Module:
    """Draw every weight with mean 0 and std ``std_of(fan_in, fan_out)``, normal or uniform
    (``U[-a, a]`` with ``a = sqrt(3) * std`` has that std)."""
    if distribution not in ("normal", "uniform"):
        raise ValueError(f"distribution must be 'normal' or 'uniform', got {distribution!r}")
    for _, layer in weight_layers(model):
        std = std_of(*fan_in_out(layer.weight))
        if distribution == "normal":
            layer.weight.normal_(0.0, std, generator=generator)
        else:
            layer.weight.uniform_(-math.sqrt(3.0) * std, math.sqrt(3.0) * std, generator=generator)
        if zero_bias:
            _zero_bias(layer)
    return model


@torch.no_grad()
def gaussian_(model: nn.Module, std: float = 0.01, *, zero_bias: bool = True,
              generator: Optional[torch.Generator] = None) -> nn.Module:
    r"""Fill every weight with :math:`\mathcal N(0, \text{std}^2)`, independent of the layer's size.

    This is the "small random numbers" initialization of the early literature. A linear layer of fan-in
    :math:`n` multiplies the variance of its input by :math:`n\,\text{std}^2`; with ``std=0.01`` and
    :math:`n = 512` that is 0.05 per layer, so the signal vanishes in a deep network.
    """
    if not std > 0:
        raise ValueError(f"std must be positive, got {std}")
    for _, layer in weight_layers(model):
        layer.weight.normal_(0.0, std, generator=generator)
        if zero_bias:
            _zero_bias(layer)
    return model


@torch.no_grad()
def xavier_(model: nn.Module, distribution: str = "normal", gain: float = 1.0, *, zero_bias: bool = True,
            generator: Optional[torch.Generator] = None) -> nn.Module:
    r"""Glorot/Xavier initialization (Glorot & Bengio, AISTATS 2010).

    .. math:: \operatorname{Var}[W] = \text{gain}^2 \, \frac{2}{n_\text{in} + n_\text{out}}

    ``distribution="normal"`` draws :math:`\mathcal N(0, \operatorname{Var}[W])`; ``"uniform"`` draws
    :math:`U[-a, a]` with :math:`a = \text{gain}\sqrt{6/(n_\text{in}+n_\text{out})}` (a uniform on
    :math:`[-a, a]` has variance :math:`a^2/3`).
    """
    return _variance_scaling_(model, lambda fan_in, fan_out: gain * math.sqrt(2.0 / (fan_in + fan_out)),
                              distribution, zero_bias, generator)


@torch.no_grad()
def he_(model: nn.Module, distribution: str = "normal", *, negative_slope: float = 0.0, zero_bias: bool = True,
        generator: Optional[torch.Generator] = None) -> nn.Module:
    r"""He/Kaiming initialization for ReLU networks (He et al., ICCV 2015), fan-in mode.

    .. math:: \operatorname{Var}[W] = \frac{2}{(1 + a^2)\, n_\text{in}}

    with :math:`a` the negative slope of a leaky ReLU (0 for ReLU). Note that the standard deviation is
    :math:`\sqrt{2/n_\text{in}}`; some slides write :math:`2/n_\text{in}` where the variance is meant.
    """
    return _variance_scaling_(model, lambda fan_in, _: math.sqrt(2.0 / ((1.0 + negative_slope**2) * fan_in)),
                              distribution, zero_bias, generator)


@torch.no_grad()
def orthogonal_(model: nn.Module, gain: float = 1.0, *, zero_bias: bool = True,
                generator: Optional[torch.Generator] = None) -> nn.Module:
    """(Semi-)orthogonal weights (Saxe et al., ICLR 2014): the weight, reshaped to ``[out, in*kernel]``,
    has orthonormal rows (if ``out <= in``) or columns, times ``gain``."""
    for _, layer in weight_layers(model):
        nn.init.orthogonal_(layer.weight, gain=gain, generator=generator)
        if zero_bias:
            _zero_bias(layer)
    return model


@torch.no_grad()
def lsuv_(model: nn.Module, x: torch.Tensor, *, tol: float = 0.05, max_iter: int = 10, orthogonal: bool = True,
          layers: Optional[Iterable[str]] = None, generator: Optional[torch.Generator] = None,
          return_report: bool = False) -> Union[nn.Module, Tuple[nn.Module, Dict[str, Dict[str, float]]]]:
    r"""Layer-sequential unit-variance initialization (Mishkin & Matas, ICLR 2016).

    1. Initialize every weight layer with an orthonormal matrix (skip with ``orthogonal=False`` to
       rescale whatever initialization the model already has, e.g. after a campaign initialization).
    2. For each layer, in the order the forward pass calls it: run the batch ``x`` through the model,
       measure the variance :math:`v` of the layer's output (over samples, neurons and positions) and
       set :math:`W \leftarrow W / \sqrt{v}`; repeat until :math:`|v - 1| < \text{tol}` or ``max_iter``.

    With zero biases a layer's output is linear in its weight, so one rescaling already gives
    :math:`v = 1` up to floating-point error; biases and normalization layers are why the loop exists.
    The model is put in ``eval`` mode during the passes (so dropout does not disturb the estimate and
    batch normalization uses its running statistics, which are left untouched) and restored afterwards. Unlike the PyPI ``lsuv`` package, no state is kept in module globals and the
    forward hook is removed on every exit path.

    Args:
        model: the network; its ``nn.Linear``/``nn.Conv*`` layers are initialized in place.
        x: a batch of inputs, large enough for a stable variance estimate (a few hundred samples).
        tol: accepted distance of the output variance from 1.
        max_iter: rescaling attempts per layer.
        orthogonal: start from an orthonormal initialization as in the paper.
        layers: names of the layers to rescale (default: all weight layers).
        return_report: also return ``{layer: {"variance": v, "iterations": k}}``.

    Example:
        >>> import torch
        >>> from neuronlab.models import MLP
        >>> model = MLP([20, 64, 64, 5])
        >>> x = torch.randn(500, 20, generator=torch.Generator().manual_seed(0))
        >>> g = torch.Generator().manual_seed(0)
        >>> _, report = lsuv_(model, x, generator=g, return_report=True)
        >>> [round(r["variance"], 3) for r in report.values()]  # every layer's is 1
        [1.0, 1.0, 1.0]
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"lsuv_ needs a batch of inputs as a tensor, got {type(x).__name__}")
    if x.shape[0] < 2:
        raise ValueError(f"lsuv_ needs at least 2 samples to estimate a variance, got a batch of {x.shape[0]}")
    if not torch.isfinite(x).all():
        raise ValueError("lsuv_ got NaN or inf in the input batch: clean or standardize the data first.")
    if tol <= 0 or max_iter < 1:
        raise ValueError(f"tol must be > 0 and max_iter >= 1, got tol={tol}, max_iter={max_iter}")

    all_layers = dict(weight_layers(model))
    if layers is None:
        chosen = list(all_layers)
    else:
        chosen = list(layers)
        unknown = [name for name in chosen if name not in all_layers]
        if unknown:
            raise ValueError(f"lsuv_: unknown layer(s) {unknown}; weight layers are {list(all_layers)}")
    if orthogonal:
        for name in chosen:
            nn.init.orthogonal_(all_layers[name].weight, generator=generator)
            _zero_bias(all_layers[name])

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    x = x.to(device)
    report: Dict[str, Dict[str, float]] = {}
    try:
        for name in forward_call_order(model, x, [(n, all_layers[n]) for n in chosen]):
            layer = all_layers[name]
            captured: List[torch.Tensor] = []
            handle = layer.register_forward_hook(lambda m, i, o: captured.append(o))
            try:
                iterations = 0
                while True:
                    captured.clear()
                    model(x)
                    variance = captured[-1].float().var().item()
                    if not math.isfinite(variance) or variance == 0.0:
                        raise RuntimeError(
                            f"lsuv_: the output of layer {name!r} has variance {variance}; it cannot be "
                            "rescaled to 1. Check the input batch and the layers before it (dead ReLUs?)."
                        )
                    if abs(variance - 1.0) < tol or iterations >= max_iter:
                        break
                    layer.weight.div_(math.sqrt(variance))
                    iterations += 1
            finally:
                handle.remove()
            report[name] = {"variance": variance, "iterations": iterations}
    finally:
        model.train(was_training)
    return (model, report) if return_report else model


def initialize_(model: nn.Module, scheme: str, x: Optional[torch.Tensor] = None, *,
                generator: Optional[torch.Generator] = None, **kwargs) -> nn.Module:
    """Apply a scheme by name: ``"gaussian"`` (std 0.01 unless ``std=`` is given), ``"xavier"``, ``"he"``,
    ``"orthogonal"`` or ``"lsuv"`` (which needs a data batch ``x``). Extra keyword arguments go to the
    scheme's function."""
    scheme = scheme.lower()
    if scheme == "gaussian":
        return gaussian_(model, generator=generator, **kwargs)
    if scheme == "xavier":
        return xavier_(model, generator=generator, **kwargs)
    if scheme == "he":
        return he_(model, generator=generator, **kwargs)
    if scheme == "orthogonal":
        return orthogonal_(model, generator=generator, **kwargs)
    if scheme == "lsuv":
        if x is None:
            raise ValueError("initialize_(model, 'lsuv') needs a batch of data: pass x=...")
        return lsuv_(model, x, generator=generator, **kwargs)
    raise ValueError(f"Unknown initialization scheme {scheme!r}; choose one of {SCHEMES}.")
