r"""Checks for the code exercises of Chapter 5, *Identifying and controlling neurons*.

* :func:`check_linear_cka` -- ``linear_cka(x, y)``, linear CKA between two layers' responses (exercise
  ``ex-ch05-linear-cka``), checked by its invariances and against :func:`neuronlab.similarity.linear_cka`;
* :func:`check_ablation_accuracy` -- ``ablation_accuracy(model, layer, neurons, x, y)``, a classifier's
  accuracy with some units of a layer set to 0 by a forward hook (exercise ``ex-ch05-ablation``), checked
  against :func:`neuronlab.neurons.ablation_curve` and by what it must leave behind.

Usage in the notebook: ``exercises.ch05.check_linear_cka(linear_cka)``.

>>> def linear_cka(x, y):
...     x, y = x - x.mean(0), y - y.mean(0)
...     cross = torch.linalg.matrix_norm(y.T @ x) ** 2
...     norm_x = torch.linalg.matrix_norm(x.T @ x)
...     norm_y = torch.linalg.matrix_norm(y.T @ y)
...     return float(cross / (norm_x * norm_y))
>>> check_linear_cka(linear_cka)
linear_cka: all checks passed
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Callable

import torch
from torch import nn

from ..neurons import ablation_curve
from ..similarity import linear_cka as reference_cka
from ._checks import as_number, expect, run_check

__all__ = ["check_linear_cka", "check_ablation_accuracy"]




# ------------------------------------------------------------------------------------------ linear_cka
def _layers(generator: torch.Generator, n: int, p: int, q: int, shared: float = 0.7):
    """Two random layers of ``n`` samples that share part of their signal, with columns far from centred."""
    base = torch.randn(n, min(p, q), generator=generator, dtype=torch.float64)
    x = base @ torch.randn(min(p, q), p, generator=generator, dtype=torch.float64)
    x = x + 0.5 * torch.randn(n, p, generator=generator, dtype=torch.float64)
    y = shared * base @ torch.randn(min(p, q), q, generator=generator, dtype=torch.float64)
    y = y + torch.randn(n, q, generator=generator, dtype=torch.float64)
    x = x + 3 * torch.rand(p, generator=generator, dtype=torch.float64)  # a different mean per column
    y = y - 2 * torch.rand(q, generator=generator, dtype=torch.float64)
    return x, y


def _orthogonal(generator: torch.Generator, d: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=torch.float64))
    return q


def _cka(fn: Callable, x: torch.Tensor, y: torch.Tensor, call: str) -> float:
    return as_number(fn(x.clone(), y.clone()), call)


def _self_similarity(fn: Callable) -> None:
    x, _ = _layers(torch.Generator().manual_seed(50), 300, 12, 7)
    value = _cka(fn, x, x, "linear_cka(x, x)")
    centred = x - x.mean(0)
    gram = float(torch.linalg.matrix_norm(centred.T @ centred))
    if math.isclose(value, 1 / gram, rel_tol=1e-4):
        hint = ("you took the Frobenius norm of Y^T X without squaring it: the numerator is ||Y^T X||_F^2")
    elif math.isclose(value, 1 / gram ** 2, rel_tol=1e-4):
        hint = ("you squared the norms in the denominator: it is ||X^T X||_F ||Y^T Y||_F, each norm "
                "unsquared, while the numerator ||Y^T X||_F^2 is squared")
    else:
        hint = "check the formula: ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F) on centred columns"
    expect(abs(value - 1) < 1e-6,
           f"linear_cka(x, x) = {value:.6g}, but a layer compared with itself has CKA 1; {hint}")


def _symmetry(fn: Callable) -> None:
    x, y = _layers(torch.Generator().manual_seed(51), 300, 12, 7)
    forward, backward = _cka(fn, x, y, "linear_cka(x, y)"), _cka(fn, y, x, "linear_cka(y, x)")
    expect(abs(forward - backward) < 1e-6,
           f"linear_cka(x, y) = {forward:.6g} but linear_cka(y, x) = {backward:.6g}; the formula is "
           "symmetric in the two layers (x has 12 neurons, y 7)")


def _range(fn: Callable) -> None:
    x, y = _layers(torch.Generator().manual_seed(52), 200, 10, 15)
    value = _cka(fn, x, y, "linear_cka(x, y)")
    expect(-1e-9 <= value <= 1 + 1e-9, f"linear_cka(x, y) = {value:.6g}; linear CKA lies between 0 and 1")


def _invariances(fn: Callable) -> None:
    generator = torch.Generator().manual_seed(53)
    x, y = _layers(generator, 400, 10, 6)
    plain = _cka(fn, x, y, "linear_cka(x, y)")
    shift = torch.linspace(-4.0, 6.0, 10, dtype=torch.float64)  # a different constant for every neuron
    shifted = _cka(fn, x + shift, y, "linear_cka(x + b, y)")
    expect(abs(shifted - plain) < 1e-6,
           f"linear_cka(x, y) = {plain:.6g} but linear_cka(x + b, y) = {shifted:.6g}, b a constant per neuron: "
           "adding a constant to each neuron's responses must not change CKA. Centre each column first: "
           "x = x - x.mean(0) (the mean over the samples, dim 0), and the same for y")
    scaled = _cka(fn, 3.0 * x, y, "linear_cka(3 * x, y)")
    expect(abs(scaled - plain) < 1e-6,
           f"linear_cka(x, y) = {plain:.6g} but linear_cka(3 * x, y) = {scaled:.6g}: scaling a layer by a "
           "number must not change CKA (check the powers of the norms: the numerator is squared, each "
           "norm in the denominator is not)")
    rotation = _orthogonal(generator, 10)
    rotated = _cka(fn, x @ rotation, y, "linear_cka(x @ Q, y)")
    expect(abs(rotated - plain) < 1e-6,
           f"linear_cka(x, y) = {plain:.6g} but linear_cka(x @ Q, y) = {rotated:.6g} for an orthogonal Q: "
           "rotating a layer's neurons must not change CKA")
    both = _cka(fn, x, 0.5 * y @ _orthogonal(generator, 6) - 2.0, "linear_cka(x, 0.5 * y @ Q - 2)")
    expect(abs(both - plain) < 1e-6,
           f"linear_cka(x, y) = {plain:.6g} but linear_cka(x, 0.5 * y @ Q - 2) = {both:.6g}: a rotation, "
           "a scale and a shift of the second layer must not change CKA either")


def _not_invariant(fn: Callable) -> None:
    generator = torch.Generator().manual_seed(54)
    x = torch.randn(500, 16, generator=generator, dtype=torch.float64)
    mixing = torch.randn(16, 16, generator=generator, dtype=torch.float64)
    mixing[:, :4] *= 20  # invertible, but stretches some directions far more than others
    value = _cka(fn, x, x @ mixing, "linear_cka(x, x @ M)")
    expected = reference_cka(x, x @ mixing)
    expect(value < 0.95,
           f"linear_cka(x, x @ M) = {value:.6g} for an invertible M that stretches some directions, but "
           f"linear CKA is not blind to such maps (expected about {expected:.2f}). CKA compares X^T X and "
           "Y^T Y through ||Y^T X||_F^2; a measure that stays at 1 here is CCA-like")


def _against_similarity(fn: Callable) -> None:
    generator = torch.Generator().manual_seed(55)
    for n, p, q, shared in [(200, 8, 8, 0.7), (500, 20, 5, 0.3), (60, 80, 30, 1.0), (1000, 3, 40, 0.1)]:
        x, y = _layers(generator, n, p, q, shared)
        call = f"linear_cka(x, y) with x [{n}, {p}] and y [{n}, {q}]"
        value, expected = _cka(fn, x, y, call), reference_cka(x, y)
        expect(abs(value - expected) < 1e-6 * max(1.0, abs(expected)),
               f"{call} = {value:.6g}, but neuronlab.similarity.linear_cka gives {expected:.6g}. Centre the "
               "columns (x - x.mean(0)), then compute ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)")


def check_linear_cka(fn: Callable) -> None:
    r"""Check ``linear_cka(x, y)``: linear CKA between two layers' responses ``x`` (``[n, p]``) and ``y``
    (``[n, q]``, float64 tensors, the same ``n`` samples), returning one number.

    .. math::
        \mathrm{CKA}(X, Y) = \frac{\lVert Y^\top X \rVert_F^2}{\lVert X^\top X \rVert_F\,
        \lVert Y^\top Y \rVert_F}\quad\text{with the columns of } X, Y \text{ centred.}

    Checked by its properties: :math:`\mathrm{CKA}(X, X) = 1`; symmetry; a value in :math:`[0, 1]`;
    invariance to translation, isotropic scaling and orthogonal maps of either layer; *no* invariance to
    a general invertible map (the value drops well below 1); and on random layers of several shapes
    (drawn inside the check, columns with non-zero means, also more neurons than samples) against
    :func:`neuronlab.similarity.linear_cka`, which accumulates the same sums batch-wise. A failure names
    the broken property: a translation that changes the value means the columns were not centred, a
    self-similarity below 1 an unsquared numerator.
    """
    run_check("linear_cka", fn, [
        ("a layer against itself", _self_similarity),
        ("swapping the layers", _symmetry),
        ("the range of the value", _range),
        ("invariance to a shift, a scale and a rotation", _invariances),
        ("a general invertible map", _not_invariant),
        ("random layers, against similarity.linear_cka", _against_similarity),
    ])


# ----------------------------------------------------------------------------------- ablation_accuracy
def _network(seed: int, dropout: float = 0.0) -> nn.Sequential:
    """A small ReLU MLP whose layers are named as the chapter's: ``fc1, act1, fc2, act2, [drop], fc3``."""
    with torch.random.fork_rng():  # the student's random state stays as it was
        torch.manual_seed(seed)
        layers = [("fc1", nn.Linear(6, 16)), ("act1", nn.ReLU()), ("fc2", nn.Linear(16, 12)),
                  ("act2", nn.ReLU())]
        if dropout:
            layers.append(("drop", nn.Dropout(dropout)))
        layers.append(("fc3", nn.Linear(12, 4)))
        model = nn.Sequential(OrderedDict(layers))
    with torch.no_grad():
        model.fc3.bias.copy_(torch.tensor([0.3, -0.1, 0.2, 0.0]))
    return model.eval()


def _problem(model: nn.Module, seed: int, n: int = 300):
    """Inputs, and labels that the plain model gets mostly (not entirely) right."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=generator)
    with torch.no_grad():
        y = model(x).argmax(1)
    flip = torch.rand(n, generator=generator) < 0.15
    y[flip] = torch.randint(0, 4, (int(flip.sum()),), generator=generator)
    return x, y


def _accuracy(fn: Callable, model, layer, neurons, x, y, call: str) -> float:
    with torch.random.fork_rng():  # a dropout layer left in train mode draws the same masks every time
        torch.manual_seed(0)
        value = as_number(fn(model, layer, neurons, x, y), call)
    expect(0 <= value <= 1,
           f"{call} returned {value:.6g}; return the accuracy as a fraction between 0 and 1"
           + (", not as a percentage" if 1 < value <= 100 else ""))
    return value


def _outputs_unchanged(model: nn.Module, x: torch.Tensor, before: torch.Tensor, call: str) -> None:
    with torch.no_grad():
        after = model(x)
    expect(torch.allclose(after, before),
           f"after {call} the model computes different outputs than before: remove the hook when you are "
           "done (keep the handle of register_forward_hook and call handle.remove(), best in a finally "
           "block), and do not change the weights")


def _against_ablation_curve(fn: Callable) -> None:
    for seed, layer, neurons in [(60, "act2", [0, 3, 7]), (61, "act2", torch.tensor([11, 2, 5, 6, 9])),
                                 (62, "act1", [4, 5, 6, 7, 8, 9, 10, 11]), (63, "fc2", [1])]:
        model = _network(seed)
        x, y = _problem(model, seed)
        call = f"ablation_accuracy(model, {layer!r}, {list(map(int, neurons))}, x, y)"
        value = _accuracy(fn, model, layer, neurons, x, y, call)
        expected = float(ablation_curve(model, layer, list(map(int, neurons)), x, y, [len(neurons)])[0])
        plain, rows = _plain_and_rows(model, layer, neurons, x, y)
        columns = "output[:, neurons] = 0: units are the columns, rows are samples"
        if abs(value - plain) < 1e-9:
            hint = (" That is the accuracy without ablation: register the hook on the layer's module, "
                    "dict(model.named_modules())[layer], before the forward pass, and in it set " + columns)
        elif abs(value - rows) < 1e-9:
            hint = f" You zeroed samples, not units: set {columns}"
        else:
            hint = (" The hook must return the layer's output with the chosen units set to 0, "
                    + columns)
        expect(abs(value - expected) < 1e-9,
               f"{call} = {value:.6g}, but neurons.ablation_curve gives {expected:.6g} "
               f"(without ablation: {plain:.6g}).{hint}")


def _plain_and_rows(model: nn.Module, layer: str, neurons, x: torch.Tensor, y: torch.Tensor):
    """The accuracy without ablation, and with the *samples* ``neurons`` zeroed (a typical mistake)."""
    index = torch.as_tensor(neurons, dtype=torch.long)
    with torch.no_grad():
        plain = float((model(x).argmax(1) == y).double().mean())
        handle = dict(model.named_modules())[layer].register_forward_hook(
            lambda _module, _inputs, output: output.index_fill(0, index, 0.0))
        try:
            rows = float((model(x).argmax(1) == y).double().mean())
        finally:
            handle.remove()
    return plain, rows


def _everything_ablated(fn: Callable) -> None:
    model = _network(64)
    x, y = _problem(model, 64)
    value = _accuracy(fn, model, "act2", list(range(12)), x, y, "ablation_accuracy(model, 'act2', all 12, x, y)")
    bias_only = float((y == int(model.fc3.bias.argmax())).double().mean())
    expect(abs(value - bias_only) < 1e-9,
           f"with every unit of act2 ablated the read-out sees only zeros and always predicts the class of "
           f"its largest bias, which is right on a share {bias_only:.6g} of the labels; your function "
           f"returned {value:.6g}")


def _leaves_no_trace(fn: Callable) -> None:
    model = _network(65)
    x, y = _problem(model, 65)
    with torch.no_grad():
        before = model(x)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    call = "ablation_accuracy(model, 'act2', [1, 2], x, y)"
    _accuracy(fn, model, "act2", [1, 2], x, y, call)
    expect(all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items()),
           f"{call} changed the model's weights: ablate through a forward hook on the layer's output, "
           "never by editing parameters")
    _outputs_unchanged(model, x, before, call)
    _accuracy(fn, model, "act2", [3], x, y, "a second call, ablation_accuracy(model, 'act2', [3], x, y)")
    _outputs_unchanged(model, x, before, "two calls")


def _eval_mode(fn: Callable) -> None:
    model = _network(66, dropout=0.5)
    x, y = _problem(model, 66)
    model.train()
    call = "ablation_accuracy(model, 'act2', [0, 1, 2], x, y) on a model with dropout, in train mode"
    value = _accuracy(fn, model, "act2", [0, 1, 2], x, y, call)
    expect(model.training,
           f"{call} left the model in eval mode: remember model.training and restore it at the end "
           "(model.train(was_training))")
    expected = float(ablation_curve(model, "act2", [0, 1, 2], x, y, [3])[0])
    expect(abs(value - expected) < 1e-9,
           f"{call} = {value:.6g}, but the model evaluated in eval mode (dropout off) gives "
           f"{expected:.6g}: call model.eval() before the forward pass")


def check_ablation_accuracy(fn: Callable) -> None:
    r"""Check ``ablation_accuracy(model, layer, neurons, x, y)``: the share of the inputs ``x`` that the
    classifier ``model`` assigns to their labels ``y`` (a number in :math:`[0, 1]`) when the units
    ``neurons`` (a list or tensor of indices) of the layer named ``layer`` (``[N, D]`` outputs) are set to
    0 by a forward hook.

    Checked on small random ReLU MLPs built inside the check (layers named ``fc1, act1, fc2, act2, fc3``
    as in the chapter): the value against :func:`neuronlab.neurons.ablation_curve` for several layers and
    sets of units; with every unit of the last hidden layer ablated, the accuracy of always predicting the
    read-out's largest bias (an independent closed form); the weights unchanged and the outputs after the
    call (also after a second call) the same as before, so the hook was removed; and on a model with
    dropout left in train mode, the value of the model in eval mode, with the mode restored afterwards.
    """
    run_check("ablation_accuracy", fn, [
        ("small MLPs, against neurons.ablation_curve", _against_ablation_curve),
        ("every unit of the last hidden layer ablated", _everything_ablated),
        ("the model after the call", _leaves_no_trace),
        ("a model with dropout, in train mode", _eval_mode),
    ])
