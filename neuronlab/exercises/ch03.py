r"""Checks for the code exercises of Chapter 3 (Neuron Steadiness Regularization).

* :func:`check_class_means`: a student's ``class_means(x, y, num_classes)``, compared with
  :func:`neuronlab.classwise.class_means` on random problems;
* :func:`check_nsr_penalty`: a student's ``nsr_penalty(x, y, means, lam)``, the official NSR loss
  :math:`\lambda \cdot \operatorname{mean}_{s,i} (x_{si} - \mu_{y_s i})^2`, checked by the formula's
  invariants: zero when every response equals its class mean, :math:`\lambda` times the frequency-weighted
  intra-class variance (:func:`neuronlab.classwise.intra_class_variance`) with the batch's own class means,
  that variance plus the means' offset with other (running) means, linear in :math:`\lambda`, and the
  gradient :math:`2 \lambda (x - \mu_y) / (N n)` with no gradient into the means.

Every problem is drawn inside the check from a seeded generator, in float64.
"""

from __future__ import annotations

from typing import Callable, Tuple

import torch

from neuronlab.classwise import class_counts, class_means, intra_class_variance

from ._checks import expect, run_check

__all__ = ["check_class_means", "check_nsr_penalty"]


def _problem(seed: int, n: int = 48, width: int = 5, num_classes: int = 4
             ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Responses ``[n, width]`` (float64) and labels in which every class occurs, with unequal class sizes."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.cat([torch.arange(num_classes),
                        torch.randint(0, num_classes, (n - num_classes,), generator=generator)])
    labels = labels[torch.randperm(n, generator=generator)]
    shift = 3 * torch.randn(num_classes, width, generator=generator, dtype=torch.float64)
    x = shift[labels] + torch.randn(n, width, generator=generator, dtype=torch.float64)
    return x, labels


def _as_tensor(value, what: str) -> torch.Tensor:
    expect(isinstance(value, torch.Tensor), f"{what} must be a torch tensor, got {type(value).__name__}")
    return value


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool(torch.allclose(a.double(), b.double(), rtol=1e-6, atol=1e-9))


# --------------------------------------------------------------------------------------------- class means
def check_class_means(fn: Callable) -> None:
    r"""Check ``class_means(x, y, num_classes)``: the ``[num_classes, n]`` per-class means of responses ``x``
    (``[N, n]``) with labels ``y``, :math:`\mu_{jn} = \frac{1}{N_j} \sum_{s: y_s = j} x_{sn}`.

    On random problems with unequal class sizes it must agree with :func:`neuronlab.classwise.class_means`;
    a class with a single sample has that sample as its mean. Prints one line when everything passes and
    raises :class:`~neuronlab.exercises.ExerciseFailed` otherwise.

    Example:
        >>> import torch
        >>> def class_means(x, y, num_classes):
        ...     return torch.stack([x[y == c].mean(0) for c in range(num_classes)])
        >>> check_class_means(class_means)
        class_means: all checks passed
    """

    def shape(fn):
        x, y = _problem(0, n=30, width=6, num_classes=3)
        out = _as_tensor(fn(x, y, 3), "the result")
        expect(tuple(out.shape) == (3, 6),
               f"30 responses of 6 neurons in 3 classes need means of shape (3, 6), one row per class; "
               f"got shape {tuple(out.shape)}")

    def single(fn):
        x = torch.tensor([[1.0, -2.0], [3.0, 4.0], [5.0, 0.0]], dtype=torch.float64)
        y = torch.tensor([0, 1, 1])
        out = _as_tensor(fn(x, y, 2), "the result")
        expect(_close(out[0], x[0]),
               f"class 0 has one sample, [1, -2], so its mean is that sample; got {out[0].tolist()}")
        expect(_close(out[1], torch.tensor([4.0, 2.0])),
               f"class 1 has the samples [3, 4] and [5, 0], so its mean is [4, 2]; got {out[1].tolist()}")

    def random(fn):
        for seed, (n, width, k) in enumerate([(40, 5, 4), (25, 3, 5), (60, 8, 2)], start=1):
            x, y = _problem(seed, n, width, k)
            expected = class_means(x, y, k)
            out = _as_tensor(fn(x, y, k), "the result")
            expect(tuple(out.shape) == (k, width), f"expected shape {(k, width)}, got {tuple(out.shape)}")
            worst = (out.double() - expected).abs().max().item()
            expect(_close(out, expected),
                   f"on random responses ({n} samples, {k} classes of unequal size) your means differ from "
                   f"neuronlab.classwise.class_means by up to {worst:.3g}: average each class over its own "
                   "samples only (divide by the class's count, not by all N)")

    run_check("class_means", fn, [("shape", shape), ("a hand case", single),
                                  ("random problems", random)])


# --------------------------------------------------------------------------------------------- NSR penalty
def _mean_offset(x: torch.Tensor, y: torch.Tensor, means: torch.Tensor, k: int) -> torch.Tensor:
    r""":math:`\sum_j \alpha_j \lVert \bar x_j - m_j \rVert^2 / n`: how far the given means sit from the batch's
    own class means, averaged over the samples and neurons (the bias term of the decomposition)."""
    alpha = class_counts(y, k).double() / len(y)
    return (alpha[:, None] * (class_means(x, y, k) - means) ** 2).sum(0).mean()


def check_nsr_penalty(fn: Callable) -> None:
    r"""Check ``nsr_penalty(x, y, means, lam)``, the NSR loss of one batch as the official code computes it:

    .. math::
        \lambda \cdot \frac{1}{N n} \sum_{s=1}^{N} \sum_{i=1}^{n} \big(x_{si} - \mu_{y_s i}\big)^2 ,

    with responses ``x`` ``[N, n]``, labels ``y`` ``[N]``, class means ``means`` ``[K, n]`` (constants: the
    running means of the last :math:`m` batches) and strength ``lam``. The properties checked, on random
    float64 problems:

    * the result is a single number, a tensor that carries the gradient;
    * it is zero when every response equals its class mean, and zero for :math:`\lambda = 0`;
    * with the batch's own class means (:math:`m = 1`) it equals :math:`\lambda` times the mean over neurons
      of the frequency-weighted intra-class variance (:func:`neuronlab.classwise.intra_class_variance`);
    * with other means it adds :math:`\lambda \sum_j \alpha_j \lVert \bar x_j - \mu_j \rVert^2 / n` (the
      given means are used, not recomputed from the batch);
    * it is linear in :math:`\lambda`;
    * autograd gives :math:`\partial / \partial x_{si} = 2 \lambda (x_{si} - \mu_{y_s i}) / (N n)`, and no
      gradient reaches ``means``.

    Prints one line when everything passes and raises :class:`~neuronlab.exercises.ExerciseFailed`
    otherwise.

    Example:
        >>> def nsr_penalty(x, y, means, lam):
        ...     return lam * ((x - means.detach()[y]) ** 2).mean()
        >>> check_nsr_penalty(nsr_penalty)
        nsr_penalty: all checks passed
    """

    def scalar(fn):
        x, y = _problem(10)
        x.requires_grad_(True)
        out = fn(x, y, class_means(x.detach(), y, 4), 1.0)
        expect(isinstance(out, torch.Tensor),
               f"return a torch tensor (it is added to the loss and backpropagated), not "
               f"{type(out).__name__}: do not call .item() or convert to NumPy")
        expect(out.numel() == 1, f"the penalty is one number for the batch; got shape {tuple(out.shape)}")
        expect(out.requires_grad, "the result carries no gradient: compute it from x with torch operations "
                                  "(no .detach(), .item() or NumPy on x)")

    def zero(fn):
        x, y = _problem(11)
        means = class_means(x, y, 4)
        value = float(fn(means[y].clone(), y, means, 2.0))
        expect(abs(value) < 1e-10,
               f"when every response equals its class's mean the penalty must be 0, got {value:.4g}: "
               "measure each response's distance to the mean of its *own* class, means[y]")
        value = float(fn(x, y, means, 0.0))
        expect(abs(value) < 1e-12, f"with lam = 0 the penalty must be 0, got {value:.4g}")

    def variance(fn):
        for seed, (n, width, k) in enumerate([(48, 5, 4), (30, 3, 2), (70, 7, 6)], start=20):
            x, y = _problem(seed, n, width, k)
            lam = 0.5 + seed % 3
            value = float(fn(x, y, class_means(x, y, k), lam))
            expected = lam * intra_class_variance(x, y, k)["layer"].item()
            expect(abs(value - expected) <= 1e-6 * abs(expected),
                   f"with the batch's own class means the penalty must be lam times the mean over neurons "
                   f"of the class-weighted variance sum_j alpha_j Var_j; for lam = {lam} on a random batch "
                   f"that is {expected:.6g}, yours gave {value:.6g}. Square the distances, and take the mean "
                   "over all N samples and n neurons")

    def running(fn):
        x, y = _problem(30, n=40, width=4, num_classes=3)
        generator = torch.Generator().manual_seed(31)
        means = class_means(x, y, 3) + torch.randn(3, 4, generator=generator, dtype=torch.float64)
        value = float(fn(x, y, means, 1.5))
        expected = 1.5 * (intra_class_variance(x, y, 3)["layer"].item() + _mean_offset(x, y, means, 3).item())
        expect(abs(value - expected) <= 1e-6 * abs(expected),
               f"with means that are not the batch's own (running means over past batches) the penalty must "
               f"be {expected:.6g}, yours gave {value:.6g}: use the means you are given, do not recompute "
               "them from the batch")

    def linear(fn):
        x, y = _problem(40)
        means = class_means(x, y, 4)
        one, three = float(fn(x, y, means, 1.0)), float(fn(x, y, means, 3.0))
        expect(abs(three - 3 * one) <= 1e-9 * abs(three),
               f"the penalty must grow linearly with lam: lam = 1 gave {one:.6g}, lam = 3 gave {three:.6g}")

    def gradient(fn):
        x, y = _problem(50, n=36, width=5, num_classes=4)
        lam = 2.5
        means = (class_means(x, y, 4) + 0.3).requires_grad_(True)
        x = x.clone().requires_grad_(True)
        fn(x, y, means, lam).sum().backward()
        expect(x.grad is not None, "no gradient reached the responses x")
        expected = 2 * lam * (x.detach() - means.detach()[y]) / x.numel()
        expect(_close(x.grad, expected),
               "the gradient with respect to the responses must be 2 * lam * (x - means[y]) / (N * n); yours "
               f"differs by up to {(x.grad - expected).abs().max().item():.3g}")
        leaked = means.grad is not None and bool(means.grad.abs().max() > 0)
        expect(not leaked, "a gradient reached the class means: they are constants (the running means of "
                           "past batches), so detach them before use")

    run_check("nsr_penalty", fn, [
        ("a single number with a gradient", scalar), ("zero cases", zero),
        ("the batch's own class means", variance), ("running means", running),
        ("linear in lam", linear), ("the gradient", gradient)])
