r"""Chapter 1: vanishing and exploding signals, measured layer by layer.

Two views of the same effect:

* :func:`propagate_random_product` -- the talk's demo: multiply a vector by ``n_layers`` random
  ``width x width`` Gaussian matrices. Each product scales the signal's standard deviation by about
  :math:`\sqrt{\text{width}}\,\sigma_W`: 0.23 for :math:`\sigma_W = 0.01` (the signal dies, then
  underflows to exact zeros) and 22.6 for :math:`\sigma_W = 1` (it overflows to ``inf``/``nan``).
  :func:`predicted_nonfinite_layer` gives the overflow layer in closed form.
* :func:`signal_profile` -- a deep MLP at initialization, one forward and one backward pass on real data:
  per layer the spread of activations (forward signal), of the gradient with respect to the layer's
  output (backward signal) and the norm of the weight gradient.

The chapter's training runs (each initialization scheme trained with plain SGD) are in
:mod:`neuronlab.experiments.ch01_signals`; the profile plot is :func:`neuronlab.plots.plot_signal_profile`
and the interactive explorer :func:`neuronlab.widgets.signal_explorer`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .models import MLP
from .probe import record

__all__ = [
    "SignalTrace",
    "propagate_random_product",
    "predicted_nonfinite_layer",
    "predicted_std_ratio",
    "signal_profile",
]


@dataclass
class SignalTrace:
    """Per-layer mean and standard deviation of a signal pushed through random matrices.

    ``means[l]`` and ``stds[l]`` describe the vector after layer ``l + 1``. ``first_nonfinite`` is the
    1-based index of the first layer whose output holds ``inf`` or ``nan`` (``None`` if none did);
    ``first_all_zero`` the first layer whose output underflowed to exact zeros.
    """

    means: np.ndarray
    stds: np.ndarray
    first_nonfinite: Optional[int]
    first_all_zero: Optional[int]
    width: int
    weight_std: float
    dtype: torch.dtype

    @property
    def n_layers(self) -> int:
        return len(self.stds)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"layer": np.arange(1, self.n_layers + 1), "mean": self.means, "std": self.stds})


def propagate_random_product(n_layers: int = 100, width: int = 512, weight_std: float = 0.01, *, seed: int = 0,
                             dtype: torch.dtype = torch.float32) -> SignalTrace:
    r"""Push ``x ~ N(0, I)`` through ``n_layers`` matrices ``A_l ~ N(0, weight_std^2)``: ``x <- A_l x``.

    This is the talk's demo with a seeded ``torch.Generator``, so the layer where the signal overflows is
    the same on every run. The loop stops at the first non-finite layer (later layers stay NaN in
    ``stds``), exactly as the slide's ``break`` does.
    """
    if n_layers < 1 or width < 1:
        raise ValueError(f"n_layers and width must be positive, got n_layers={n_layers}, width={width}")
    if not weight_std > 0:
        raise ValueError(f"weight_std must be positive, got {weight_std}")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(width, generator=gen, dtype=dtype)
    means = np.full(n_layers, np.nan)
    stds = np.full(n_layers, np.nan)
    first_nonfinite = first_zero = None
    for layer in range(n_layers):  # sequential by nature: layer l needs layer l-1
        a = torch.randn(width, width, generator=gen, dtype=dtype) * weight_std
        x = a @ x
        # statistics in float64: the float32 std of a still-finite x overflows one layer early
        means[layer], stds[layer] = x.double().mean().item(), x.double().std().item()
        if first_zero is None and bool((x == 0).all()):
            first_zero = layer + 1
        if not bool(torch.isfinite(x).all()):
            first_nonfinite = layer + 1
            break
    return SignalTrace(means, stds, first_nonfinite, first_zero, width, weight_std, dtype)


def predicted_std_ratio(fan_in: int, weight_var: float, activation: str = "linear") -> float:
    r"""Expected factor by which one layer multiplies the second moment of the signal.

    For :math:`y = Wx` with i.i.d. zero-mean weights of variance :math:`v` independent of :math:`x`,
    :math:`\mathbb E[y_i^2] = n_\text{in} v\, \mathbb E[x_j^2]`. A ReLU keeps half of a symmetric
    pre-activation's second moment, :math:`\mathbb E[\mathrm{relu}(y)^2] = \tfrac12 \mathbb E[y^2]`.
    Returns the factor for the second moment; its square root is the factor for the standard deviation.
    """
    factor = fan_in * weight_var
    if activation == "relu":
        return factor / 2.0
    if activation == "linear":
        return factor
    raise ValueError(f"closed form known for 'linear' and 'relu', got {activation!r}")


def predicted_nonfinite_layer(width: int, weight_std: float, dtype: torch.dtype = torch.float32) -> float:
    r"""Closed-form estimate of the layer at which :func:`propagate_random_product` overflows.

    After :math:`l` layers the entries have standard deviation :math:`(\sqrt{n}\,\sigma_W)^l`; the largest
    of :math:`n` Gaussian entries is about :math:`\sqrt{2 \ln n}` standard deviations. Overflow happens when
    that reaches the largest float, so
    :math:`l^\ast = \ln(\text{max} / \sqrt{2\ln n}) / \ln(\sqrt n\, \sigma_W)`. Returns ``inf`` when the
    signal shrinks (:math:`\sqrt n\,\sigma_W \le 1`).
    """
    growth = math.sqrt(width) * weight_std
    if growth <= 1.0:
        return math.inf
    largest = torch.finfo(dtype).max
    return math.log(largest / math.sqrt(2.0 * math.log(width))) / math.log(growth)


def signal_profile(model: MLP, x: torch.Tensor, y: torch.Tensor) -> pd.DataFrame:
    r"""Forward and backward signal of an MLP at one batch, layer by layer.

    Columns, one row per linear layer ``fc1 .. fcL``:

    * ``activation_std`` -- std of the layer's activation (after the nonlinearity; the logits for the
      last layer): the forward signal.
    * ``preactivation_std`` -- std of the linear output :math:`z = Wa + b`.
    * ``gradient_std`` -- std of :math:`\partial L / \partial z` (cross-entropy, mean over the batch):
      the backward signal that reaches this layer.
    * ``weight_grad_norm`` -- Frobenius norm :math:`\|\partial L/\partial W\|_F`.
    * ``dead_fraction`` -- fraction of activations that are exactly zero (ReLU units off).
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} samples but y has {y.shape[0]} labels")
    linear = model.linear_names
    activations = model.activation_names
    model.zero_grad(set_to_none=True)
    with record(model, linear + activations, detach=False) as rec:
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        pre = [rec.responses[name] for name in linear]
        post = [rec.responses[name] for name in activations] + [logits]
        grads = torch.autograd.grad(loss, pre, retain_graph=True)
    loss.backward()
    rows = []
    for i, name in enumerate(linear):
        weight = getattr(model, name).weight
        rows.append({
            "layer": i + 1,
            "name": name,
            "activation_std": post[i].detach().std().item(),
            "preactivation_std": pre[i].detach().std().item(),
            "gradient_std": grads[i].std().item(),
            "weight_grad_norm": weight.grad.norm().item(),
            "dead_fraction": (post[i].detach() == 0).float().mean().item(),
        })
    model.zero_grad(set_to_none=True)
    return pd.DataFrame(rows)
