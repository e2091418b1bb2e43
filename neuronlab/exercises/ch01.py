r"""Checks for the code exercises of Chapter 1, *Vanishing and exploding signals*.

* :func:`check_init_std` -- ``init_std(fan_in, fan_out, scheme, negative_slope=0.0)``, the standard
  deviation that Xavier or He give a layer's weights (exercise ``ex-ch01-init-std``);
* :func:`check_forward_stds` -- ``forward_stds(weights, x, activation)``, the standard deviation of the
  forward signal after every layer of a bias-free MLP (exercise ``ex-ch01-forward``).

Usage in the notebook: ``exercises.ch01.check_init_std(init_std)``.

>>> import math
>>> def init_std(fan_in, fan_out, scheme, negative_slope=0.0):
...     if scheme == "xavier":
...         return math.sqrt(2 / (fan_in + fan_out))
...     return math.sqrt(2 / ((1 + negative_slope ** 2) * fan_in))
>>> check_init_std(init_std)
init_std: all checks passed
"""

from __future__ import annotations

import math
from typing import Callable, List

import torch
from torch import nn

from ..init import he_, xavier_
from ..models import MLP
from ..signal import signal_profile
from ._checks import as_number, expect, run_check

__all__ = ["check_init_std", "check_forward_stds"]


# ------------------------------------------------------------------------------------------- init_std


def _init_diagnosis(std: float, fan_in: int, fan_out: int, scheme: str, slope: float) -> str:
    """A hint naming the typical mistake that gives ``std``, or an empty string."""
    gain = 1.0 if scheme == "xavier" else 2.0 / (1.0 + slope**2)
    fan = (fan_in + fan_out) / 2.0 if scheme == "xavier" else fan_in
    variance = gain / fan
    close = lambda a, b: math.isclose(a, b, rel_tol=1e-6)  # noqa: E731
    if close(std, variance):
        return " That is the variance Var[W]: the standard deviation is its square root."
    if scheme == "he" and close(std, math.sqrt(gain / fan_out)):
        return (" You used the fan-out: the forward signal sums over the layer's inputs, so He's condition "
                "n_in·Var[W]·(1+a²)/2 = 1 uses the fan-in.")
    if scheme == "he" and slope and close(std, math.sqrt(2.0 / fan_in)):
        return (" You left out the negative slope a: a leaky ReLU keeps (1+a²)/2 of the second moment, not "
                "one half.")
    if scheme == "he" and slope and close(std, math.sqrt(2.0 / ((1.0 + slope) * fan_in))):
        return " The negative part keeps a²·E[z²]/2 of the second moment: square the slope."
    if scheme == "xavier" and close(std, math.sqrt(1.0 / (fan_in + fan_out))):
        return " Xavier's variance is 2/(n_in + n_out), one over the mean of the two fans."
    if scheme == "xavier" and close(std, math.sqrt(1.0 / fan_in)):
        return " That is the forward condition alone; Xavier compromises between n_in and n_out."
    return ""


def _he_condition(fn: Callable) -> None:
    for fan_in, fan_out in [(784, 256), (100, 10), (32, 300)]:
        call = f"init_std({fan_in}, {fan_out}, 'he')"
        std = as_number(fn(fan_in, fan_out, "he"), call)
        kept = fan_in * std**2 / 2.0
        expect(math.isclose(kept, 1.0, rel_tol=1e-6),
               f"{call} = {std:.6g}, so a ReLU layer multiplies the second moment by n_in·std²/2 = {kept:.4g} "
               "instead of keeping it (factor 1)." + _init_diagnosis(std, fan_in, fan_out, "he", 0.0))


def _leaky_condition(fn: Callable) -> None:
    for fan_in, fan_out, slope in [(784, 256, 0.01), (100, 50, 0.2), (256, 64, 0.5), (64, 256, 1.0)]:
        call = f"init_std({fan_in}, {fan_out}, 'he', negative_slope={slope})"
        std = as_number(fn(fan_in, fan_out, "he", negative_slope=slope), call)
        kept = fan_in * std**2 * (1.0 + slope**2) / 2.0
        expect(math.isclose(kept, 1.0, rel_tol=1e-6),
               f"{call} = {std:.6g}, so a leaky-ReLU layer multiplies the second moment by "
               f"n_in·std²·(1+a²)/2 = {kept:.6g} instead of keeping it (factor 1)."
               + _init_diagnosis(std, fan_in, fan_out, "he", slope))


def _xavier_condition(fn: Callable) -> None:
    for fan_in, fan_out in [(784, 256), (100, 10), (32, 300), (128, 128)]:
        call = f"init_std({fan_in}, {fan_out}, 'xavier')"
        std = as_number(fn(fan_in, fan_out, "xavier"), call)
        harmonic = std**2 * (fan_in + fan_out) / 2.0
        expect(math.isclose(harmonic, 1.0, rel_tol=1e-6),
               f"{call} = {std:.6g}, so Var[W]·(n_in + n_out)/2 = {harmonic:.4g}; Glorot and Bengio's "
               "compromise makes it 1." + _init_diagnosis(std, fan_in, fan_out, "xavier", 0.0))


def _against_init(fn: Callable) -> None:
    generator = torch.Generator().manual_seed(2010)
    for trial in range(6):
        fan_in, fan_out = (int(v) for v in torch.randint(100, 800, (2,), generator=generator))
        scheme = ("he", "xavier")[trial % 2]
        slope = 0.0 if trial < 2 else round(float(torch.rand(1, generator=generator)), 2)
        layer = nn.Linear(fan_in, fan_out)
        if scheme == "he":
            he_(layer, negative_slope=slope, generator=generator)
            call = f"init_std({fan_in}, {fan_out}, 'he', negative_slope={slope})"
            std = as_number(fn(fan_in, fan_out, "he", negative_slope=slope), call)
            drawn = f"init.he_(nn.Linear({fan_in}, {fan_out}), negative_slope={slope})"
        else:
            xavier_(layer, generator=generator)
            call = f"init_std({fan_in}, {fan_out}, 'xavier')"
            std = as_number(fn(fan_in, fan_out, "xavier"), call)
            drawn = f"init.xavier_(nn.Linear({fan_in}, {fan_out}))"
        measured = layer.weight.std().item()
        # fan_in * fan_out >= 10,000 weights: the sample std is within about 1 % of the true one
        expect(abs(std / measured - 1.0) < 0.05,
               f"{call} = {std:.4g}, but the {fan_in * fan_out} weights that {drawn} draws have a standard "
               f"deviation of {measured:.4g}." + _init_diagnosis(std, fan_in, fan_out, scheme, slope))


def check_init_std(fn: Callable) -> None:
    r"""Check ``init_std(fan_in, fan_out, scheme, negative_slope=0.0)``: the weight standard deviation of
    Xavier (``scheme="xavier"``) or He (``scheme="he"``, for a (leaky) ReLU with negative slope ``a``).

    Properties checked, each for several layer sizes:

    * He keeps the second moment through a ReLU, :math:`n_\text{in}\,\sigma^2 / 2 = 1`, and through a
      leaky ReLU, :math:`n_\text{in}\,\sigma^2 (1 + a^2)/2 = 1`;
    * Xavier's compromise, :math:`\sigma^2 (n_\text{in} + n_\text{out}) / 2 = 1`;
    * on random ``nn.Linear`` layers (drawn inside the check), the answer matches the measured standard
      deviation of the weights :func:`neuronlab.init.he_` and :func:`neuronlab.init.xavier_` draw, within
      5 %.

    A failure names the typical mistake when it recognizes one (the variance instead of the standard
    deviation, the fan-out instead of the fan-in, a forgotten slope).
    """
    run_check("init_std", fn, [
        ("He for a ReLU layer", _he_condition),
        ("He for a leaky ReLU", _leaky_condition),
        ("Xavier", _xavier_condition),
        ("against the weights neuronlab.init draws", _against_init),
    ])


# ---------------------------------------------------------------------------------------- forward_stds
def _stds(result, call: str, depth: int) -> List[float]:
    try:
        values = [float(v) for v in result]
    except (TypeError, ValueError):
        values = None
    expect(values is not None, f"{call} returned {result!r}; it should return one number per layer (a list "
                               "of floats)")
    expect(len(values) == depth, f"{call} returned {len(values)} numbers for a network of {depth} layers; "
                                 "return one per layer, the last one for the logits")
    return values


def _random_mlp(widths, activation: str, scheme: str, generator: torch.Generator) -> MLP:
    model = MLP(widths, activation=activation, bias=False)
    if scheme == "he":
        he_(model, generator=generator)
    else:
        xavier_(model, generator=generator)
    return model


def _forward_diagnosis(values, profile, activation: str) -> str:
    """A hint naming the typical mistake that gives ``values``, or an empty string."""
    close = lambda a, b: all(math.isclose(u, v, rel_tol=1e-4) for u, v in zip(a, b))  # noqa: E731
    pre = profile["preactivation_std"].tolist()
    post = profile["activation_std"].tolist()
    if activation != "linear" and close(values, pre):
        return (" These are the standard deviations of the linear outputs z = W·a, before the activation; "
                "the forward signal is the activation φ(z) (for the last layer, the logits z).")
    if activation != "linear" and close(values[:-1], post[:-1]) and not close(values[-1:], post[-1:]):
        return " The last layer gives the logits: apply no activation after it."
    return ""


def _against_profile(fn: Callable) -> None:
    generator = torch.Generator().manual_seed(2015)
    settings = [("relu", "he"), ("tanh", "xavier"), ("relu", "xavier"), ("tanh", "he"), ("linear", "xavier")]
    for activation, scheme in settings:
        depth = int(torch.randint(3, 7, (1,), generator=generator))
        widths = [30] + [int(w) for w in torch.randint(20, 80, (depth - 1,), generator=generator)] + [10]
        model = _random_mlp(widths, activation, scheme, generator)
        x = torch.randn(200, widths[0], generator=generator)
        y = torch.randint(0, widths[-1], (200,), generator=generator)
        profile = signal_profile(model, x, y)
        weights = [getattr(model, name).weight.detach().clone() for name in model.linear_names]
        shapes = "-".join(str(w) for w in widths)
        call = f"forward_stds(weights of a {shapes} MLP, x, {activation!r})"
        values = _stds(fn(weights, x.clone(), activation), call, depth)
        expected = profile["activation_std"].tolist()
        for layer, (mine, theirs) in enumerate(zip(values, expected), start=1):
            expect(math.isclose(mine, theirs, rel_tol=1e-4),
                   f"{call}: layer {layer} gives {mine:.6g}, but the forward signal that "
                   f"signal.signal_profile measures there has a standard deviation of {theirs:.6g}."
                   + _forward_diagnosis(values, profile, activation))


def _one_layer(fn: Callable) -> None:
    x = torch.tensor([[1.0, -2.0], [3.0, -4.0], [-5.0, 6.0]])
    eye = torch.eye(2)
    for activation in ("relu", "tanh", "linear"):
        call = f"forward_stds([I], x, {activation!r})"
        (value,) = _stds(fn([eye.clone()], x.clone(), activation), call, 1)
        expect(math.isclose(value, x.std().item(), rel_tol=1e-5),
               f"{call} = {value:.6g}: a network of one layer with identity weights outputs its input as "
               f"logits (no activation after the last layer), whose std is {x.std().item():.6g}")


def check_forward_stds(fn: Callable) -> None:
    r"""Check ``forward_stds(weights, x, activation)``: the standard deviation (``torch``'s ``.std()``
    over all entries of the batch) of the forward signal after every layer of the bias-free MLP
    :math:`a_l = \phi(W_l a_{l-1})`, :math:`a_0 = x`, with the logits :math:`W_L a_{L-1}` (no activation)
    after the last layer.

    Checked on a one-layer network with identity weights (the output is the input) and on random MLPs
    of random depth and widths, with ReLU, tanh or no activation and Xavier or He weights (drawn inside
    the check), against the ``activation_std`` column of :func:`neuronlab.signal.signal_profile`, which
    records the same signal with forward hooks, to a relative ``1e-4``.
    """
    run_check("forward_stds", fn, [
        ("one layer with identity weights", _one_layer),
        ("random MLPs, against signal.signal_profile", _against_profile),
    ])
