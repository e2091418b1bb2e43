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
import numbers
import warnings
from typing import Dict, Iterable, List, Optional, Tuple, Union

import torch
from torch import nn

from .models import weights_restored_on_error
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


def _real(name: str, value, *, positive: bool = False, nonzero: bool = False) -> None:
    """Check that ``value`` is a finite real number (a Python or NumPy number, a one-element tensor), and
    ``> 0`` or ``!= 0`` when asked; the value itself is passed on unchanged."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, torch.Tensor)):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.dtype == torch.bool or value.dtype.is_complex:
            raise TypeError(f"{name} must be a number, got a tensor of shape {tuple(value.shape)} and dtype "
                            f"{value.dtype}")
        value = value.item()
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}: every weight would be NaN or inf")
    if positive and not value > 0:
        raise ValueError(f"{name} must be positive, got {value}")
    if nonzero and value == 0:
        raise ValueError(f"{name} must not be 0: every weight would be 0")


def _zero_bias(module: nn.Module) -> None:
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)


def _variance_scaling_(model: nn.Module, std_of, distribution: str, zero_bias: bool,
                       generator: Optional[torch.Generator]) -> nn.Module:
    """Draw every weight with mean 0 and std ``std_of(fan_in, fan_out)``, normal or uniform
    (``U[-a, a]`` with ``a = sqrt(3) * std`` has that std)."""
    if distribution not in ("normal", "uniform"):
        raise ValueError(f"distribution must be 'normal' or 'uniform', got {distribution!r}")
    layers = weight_layers(model)
    stds = []
    for name, layer in layers:  # every layer is checked before the first weight is drawn
        fan_in, fan_out = fan_in_out(layer.weight)
        if fan_in == 0 or fan_out == 0:
            raise ValueError(f"layer {name!r} has fan-in {fan_in} and fan-out {fan_out}: a layer without inputs "
                             "or outputs has no variance to scale; remove it or give it a size")
        stds.append(std_of(fan_in, fan_out))
    for (_, layer), std in zip(layers, stds):
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

    ``std`` must be a finite positive number (``TypeError``/``ValueError`` otherwise, before any weight
    changes).
    """
    _real("std", std, positive=True)
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

    ``gain`` must be a finite positive number; a layer with fan-in or fan-out 0 is rejected. Everything
    is checked before the first weight changes.
    """
    _real("gain", gain, positive=True)
    return _variance_scaling_(model, lambda fan_in, fan_out: gain * math.sqrt(2.0 / (fan_in + fan_out)),
                              distribution, zero_bias, generator)


@torch.no_grad()
def he_(model: nn.Module, distribution: str = "normal", *, negative_slope: float = 0.0, zero_bias: bool = True,
        generator: Optional[torch.Generator] = None) -> nn.Module:
    r"""He/Kaiming initialization for ReLU networks (He et al., ICCV 2015), fan-in mode.

    .. math:: \operatorname{Var}[W] = \frac{2}{(1 + a^2)\, n_\text{in}}

    with :math:`a` the negative slope of a leaky ReLU (0 for ReLU). Note that the standard deviation is
    :math:`\sqrt{2/n_\text{in}}`; some slides write :math:`2/n_\text{in}` where the variance is meant.
    ``negative_slope`` must be a finite number; checked, with the layers' sizes, before any weight changes.
    """
    _real("negative_slope", negative_slope)
    return _variance_scaling_(model, lambda fan_in, _: math.sqrt(2.0 / ((1.0 + negative_slope**2) * fan_in)),
                              distribution, zero_bias, generator)


@torch.no_grad()
def orthogonal_(model: nn.Module, gain: float = 1.0, *, zero_bias: bool = True,
                generator: Optional[torch.Generator] = None) -> nn.Module:
    """(Semi-)orthogonal weights (Saxe et al., ICLR 2014): the weight, reshaped to ``[out, in*kernel]``,
    has orthonormal rows (if ``out <= in``) or columns, times ``gain`` (a finite, non-zero number)."""
    _real("gain", gain, nonzero=True)
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
    batch normalization uses its running statistics, which are left untouched) and restored afterwards.
    Unlike the PyPI ``lsuv`` package, no state is kept in module globals and the forward hook is removed
    on every exit path.

    Args:
        model: the network; its ``nn.Linear``/``nn.Conv*`` layers are initialized in place.
        x: a batch of inputs, large enough for a stable variance estimate (a few hundred samples).
        tol: accepted distance of the output variance from 1.
        max_iter: rescaling attempts per layer.
        orthogonal: start from an orthonormal initialization as in the paper.
        layers: names of the layers to rescale (default: all weight layers).
        return_report: also return ``{layer: {"variance": v, "iterations": k}}``.

    **Checks and failures.** Everything is checked before a weight changes: ``x`` (a tensor of at least
    2 samples, finite), ``tol`` (finite, > 0), ``max_iter`` (an integer >= 1), the layer names, and one
    dry forward pass of ``x`` (a batch that does not fit the model, e.g. the wrong number of features for
    the first layer or the wrong dtype, raises ``ValueError`` naming the first layer's fan-in). Then:

    * a layer whose output variance is 0 or not finite cannot be rescaled: ``RuntimeError``, and the
      model's weights are restored to what they were before the call (any failure restores them);
    * a layer that does not reach :math:`|v - 1| < \text{tol}` within ``max_iter`` rescalings (e.g. a
      dead layer whose variance comes from its bias only) gets a ``RuntimeWarning`` naming the layer and
      the variance reached; its weights are kept as rescaled and the report shows the variance (turn the
      warning into an error with ``warnings.simplefilter("error", RuntimeWarning)``).

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
    if x.dim() == 0:
        raise ValueError("lsuv_ needs a batch of inputs [N, ...], got a 0-d tensor (a single number)")
    if x.shape[0] < 2:
        raise ValueError(f"lsuv_ needs at least 2 samples to estimate a variance, got a batch of {x.shape[0]}")
    if not torch.isfinite(x).all():
        raise ValueError("lsuv_ got NaN or inf in the input batch: clean or standardize the data first.")
    _real("tol", tol, positive=True)
    if isinstance(max_iter, bool) or not isinstance(max_iter, numbers.Integral):
        raise TypeError(f"max_iter must be an integer number of rescalings, got {max_iter!r}")
    if tol <= 0 or max_iter < 1:
        raise ValueError(f"tol must be > 0 and max_iter >= 1, got tol={tol}, max_iter={max_iter}")

    all_layers = dict(weight_layers(model))
    if layers is None:
        chosen = list(all_layers)
    else:
        chosen = [layers] if isinstance(layers, str) else list(layers)
        unknown = [name for name in chosen if name not in all_layers]
        if unknown:
            raise ValueError(f"lsuv_: unknown layer(s) {unknown}; weight layers are {list(all_layers)}")

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    x = x.to(device)
    try:  # a dry run, before any weight changes: does the batch fit the model?
        order = forward_call_order(model, x, [(n, all_layers[n]) for n in chosen])
    except (RuntimeError, TypeError, ValueError) as err:
        model.train(was_training)
        first_name, first = next(iter(all_layers.items()))
        expects = (f"{first.in_features} input features" if isinstance(first, nn.Linear)
                   else f"{first.in_channels} input channels")
        raise ValueError(f"lsuv_: model(x) fails on the batch x of shape {tuple(x.shape)} and dtype {x.dtype} "
                         f"({err}). Its first weight layer {first_name!r} takes {expects} "
                         f"(of dtype {first.weight.dtype}): pass x as the model takes it. No weight was "
                         "changed.") from err
    report: Dict[str, Dict[str, float]] = {}
    try:
        # a failure half-way leaves every weight as it was
        with weights_restored_on_error({name: all_layers[name] for name in chosen}):
            if orthogonal:
                for name in chosen:
                    nn.init.orthogonal_(all_layers[name].weight, generator=generator)
                    _zero_bias(all_layers[name])
            for name in order:
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
                                "rescaled to 1. Check the input batch and the layers before it (dead ReLUs?). "
                                "The model's weights are left as they were before the call."
                            )
                        if abs(variance - 1.0) < tol or iterations >= max_iter:
                            break
                        layer.weight.div_(math.sqrt(variance))
                        iterations += 1
                finally:
                    handle.remove()
                report[name] = {"variance": variance, "iterations": iterations}
                if not abs(variance - 1.0) < tol:
                    warnings.warn(
                        f"lsuv_: layer {name!r} did not reach unit variance: {variance:.6g} after {iterations} "
                        f"rescaling(s) (tol={tol}, max_iter={max_iter}). If the variance does not move, the "
                        "layer's output does not depend on its weight (a dead layer: zero weights, or all-zero "
                        "inputs from dead ReLUs before it, the variance coming from the bias); otherwise raise "
                        "max_iter or tol. The weights are kept as rescaled.", RuntimeWarning, stacklevel=3)
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
