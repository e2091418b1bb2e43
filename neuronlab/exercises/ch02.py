r"""Checks for the code exercises of Chapter 2, *Neuron Campaign initialization*.

* :func:`check_elect` -- ``elect(candidates, scores, k)``, the greedy orthogonal election (exercise
  ``ex-ch02-elect``), compared with :func:`neuronlab.campaign.select_neurons`;
* :func:`check_target_information` -- ``target_information(z, labels)``, one neuron's between-class minus
  within-class variance (exercise ``ex-ch02-target``), compared with
  :func:`neuronlab.campaign.information_scores`.

Usage in the notebook: ``exercises.ch02.check_elect(elect)``.

>>> def target_information(z, labels):
...     classes = labels.unique()
...     means = torch.stack([z[labels == c].mean() for c in classes])
...     variances = torch.stack([z[labels == c].var(unbiased=False)
...                              for c in classes])
...     return (means.var(unbiased=False) - variances.mean()).item()
>>> check_target_information(target_information)
target_information: all checks passed
"""

from __future__ import annotations

import math
from typing import Callable, List

import torch

from ..campaign import information_scores, select_neurons
from ._checks import as_number, expect, run_check

__all__ = ["check_elect", "check_target_information"]


# ---------------------------------------------------------------------------------------------- elect
def _indices(result, call: str, n_candidates: int, k: int) -> List[int]:
    try:
        picks = [int(i) for i in result]
    except (TypeError, ValueError):
        picks = None
    expect(picks is not None, f"{call} returned {result!r}; it should return the indices of the elected "
                              "candidates, in the order of election (a list of ints)")
    expect(len(picks) == k, f"{call} returned {len(picks)} indices; it should elect k = {k}")
    expect(len(set(picks)) == k, f"{call} elected {picks}: a candidate can be elected only once")
    expect(all(0 <= i < n_candidates for i in picks),
           f"{call} returned {picks}: indices are rows of candidates, 0 to {n_candidates - 1}")
    return picks


def _greedy(w: torch.Tensor, s: torch.Tensor, k: int, *, relative: bool = True, cumulative: bool = True
            ) -> List[int]:
    """Variants of the election, to recognize a typical mistake: ``relative=False`` multiplies the score
    by the residual's norm itself (not the fraction of the candidate), ``cumulative=False`` projects out
    only the latest elected direction from the candidates."""
    w = w.double()
    residual, norms, picked, directions = w.clone(), w.norm(dim=1), [], []
    for _ in range(k):
        value = s.double() * residual.norm(dim=1) / (norms if relative else 1.0)
        value[picked] = -math.inf
        i = int(value.argmax())
        picked.append(i)
        directions.append(residual[i] / residual[i].norm())
        a = directions[-1]
        residual = residual - torch.outer(residual @ a, a) if cumulative else w - torch.outer(w @ a, a)
    return picked


def _election_diagnosis(picks: List[int], w: torch.Tensor, s: torch.Tensor) -> str:
    k = len(picks)
    if picks == s.topk(k).indices.tolist():
        return (" You elected the k highest scores: after each pick, multiply every score by the fraction "
                "‖p_i‖/‖w_i‖ of the candidate that is still new (its residual).")
    if picks == _greedy(w, s, k, relative=False):
        return (" You multiplied the scores by the residual norm ‖p_i‖ itself: divide it by the candidate's "
                "norm ‖w_i‖, so that long candidates are not favoured.")
    if picks == _greedy(w, s, k, cumulative=False):
        return (" You projected out only the latest elected direction: the residuals must stay orthogonal to "
                "every direction elected so far (update the residuals, not the candidates).")
    return (" After each pick, normalize its residual to a_t = p_i/‖p_i‖ and subtract (p_j·a_t)·a_t from "
            "every residual p_j.")


def _compare_election(fn: Callable, w: torch.Tensor, s: torch.Tensor, k: int, call: str) -> None:
    picks = _indices(fn(w.clone(), s.clone(), k), call, w.shape[0], k)
    expected = select_neurons(w, s, k).indices.tolist()
    if picks != expected:
        seat = next(t for t, (a, b) in enumerate(zip(picks, expected)) if a != b)
        expect(False, f"{call} elected {picks}, but the greedy orthogonal election elects {expected} (the "
                      f"first difference is at seat {seat + 1})." + _election_diagnosis(picks, w, s))


def _plane(fn: Callable) -> None:
    w = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    for third in (0.6, 0.65):
        s = torch.tensor([1.0, 0.9, third])
        _compare_election(fn, w, s, 2, f"elect(w, scores=[1.0, 0.9, {third}], k=2)")


def _first_seat(fn: Callable) -> None:
    generator = torch.Generator().manual_seed(115)
    w = torch.randn(8, 4, generator=generator)
    s = torch.rand(8, generator=generator)
    picks = _indices(fn(w.clone(), s.clone(), 1), "elect(w, s, k=1)", 8, 1)
    best = int(s.argmax())
    expect(picks == [best], f"elect(w, s, k=1) elected {picks}; with nothing elected yet every candidate is "
                            f"entirely new, so the highest score (candidate {best}) wins the first seat")


def _random_problems(fn: Callable) -> None:
    generator = torch.Generator().manual_seed(2021)
    for n_candidates, dim, k in [(10, 4, 4), (30, 8, 6), (50, 16, 12), (25, 5, 5), (40, 20, 8)]:
        # candidates of very different lengths, as in a real layer's draw only less so
        scale = 0.3 + 2.7 * torch.rand(n_candidates, 1, generator=generator)
        w = torch.randn(n_candidates, dim, generator=generator) * scale
        s = torch.rand(n_candidates, generator=generator)
        _compare_election(fn, w, s, k, f"elect(w, s, k={k}) with {n_candidates} random candidates in {dim}-D")


def check_elect(fn: Callable) -> None:
    r"""Check ``elect(candidates, scores, k)``: the greedy orthogonal election of ``k`` of the rows of
    ``candidates`` (``[C, d]``, ``k <= d``) with non-negative ``scores`` (``[C]``), returning the elected
    indices in the order of election.

    At step :math:`t` it elects :math:`\arg\max_i s_i \lVert p_i\rVert / \lVert w_i\rVert` among the
    candidates not yet elected, where :math:`p_i` is candidate :math:`i`'s residual after projecting out
    the directions :math:`a_1, \dots, a_{t-1}` elected so far, and appends
    :math:`a_t = p_{i_t}/\lVert p_{i_t}\rVert`. Checked: the first seat goes to the highest score; the
    plane example of ``ex-ch02-hand``; random problems (drawn inside the check, candidates of different
    lengths) compared with :func:`neuronlab.campaign.select_neurons`, an independent implementation that
    never forms the residuals. A failure says whether the answer is the plain top-``k`` by score, forgets
    to divide by the candidate's norm or projects out only the latest direction.
    """
    run_check("elect", fn, [
        ("the first seat", _first_seat),
        ("three candidates in the plane", _plane),
        ("random problems, against campaign.select_neurons", _random_problems),
    ])


# ---------------------------------------------------------------------------------- target_information


def _target_diagnosis(value: float, z: torch.Tensor, labels: torch.Tensor) -> str:
    """A hint naming the typical mistake that gives ``value``, or an empty string."""
    classes = labels.unique()
    parts = [z[labels == c] for c in classes]
    sizes = torch.tensor([len(p) for p in parts], dtype=z.dtype)
    means = torch.stack([p.mean() for p in parts])
    between = means.var(unbiased=False)
    within = torch.stack([p.var(unbiased=False) for p in parts]).mean()
    scale = float(between + within)
    close = lambda candidate: abs(value - float(candidate)) <= 1e-6 * scale  # noqa: E731
    sample_within = torch.stack([p.var(unbiased=True) for p in parts]).mean()
    if close(means.var(unbiased=True) - sample_within) or close(between - sample_within):
        return (" You used the sample variance (divided by n - 1, torch's default for .var()); the criterion "
                "uses population variances: .var(unbiased=False).")
    weighted_between = (sizes * (means - z.mean()) ** 2).sum() / sizes.sum()
    pooled_within = sum(((p - p.mean()) ** 2).sum() for p in parts) / len(z)
    if close(weighted_between - within) or close(weighted_between - pooled_within):
        return (" Your between-class term weights the classes by their sizes; the criterion weighs every class "
                "equally: the variance of the K class means around their own mean.")
    if close(between - pooled_within):
        return (" Your within-class term pools all samples, which weights the classes by their sizes; the "
                "criterion averages the K within-class variances.")
    if close(within - between):
        return " The sign is reversed: between-class minus within-class variance."
    return ""


def _compare_target(fn: Callable, z: torch.Tensor, labels: torch.Tensor, call: str) -> None:
    value = as_number(fn(z.clone(), labels.clone()), call)
    info = information_scores(z[:, None], labels)
    between, within = info["between"].item(), info["within"].item()
    expected = between - within
    expect(abs(value - expected) <= 1e-6 * (between + within) + 1e-12,
           f"{call} = {value:.6g}, but its between-class variance is {between:.6g} and its within-class "
           f"variance {within:.6g}, a target information of {expected:.6g}."
           + _target_diagnosis(value, z, labels))


def _hand_case(fn: Callable) -> None:
    z = torch.tensor([0.0, 2.0, 4.0, 6.0], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1])
    _compare_target(fn, z, labels, "target_information([0, 2, 4, 6], labels=[0, 0, 1, 1])")


def _random_neurons(fn: Callable) -> None:
    generator = torch.Generator().manual_seed(2000)
    for n_classes in (2, 3, 5, 10):
        # classes of unequal sizes (every class occurs), each with its own mean and spread
        sizes = torch.randint(4, 25, (n_classes,), generator=generator)
        labels = torch.repeat_interleave(torch.arange(n_classes), sizes)
        labels = labels[torch.randperm(len(labels), generator=generator)]
        offsets = 2.0 * torch.randn(n_classes, generator=generator, dtype=torch.float64)
        spreads = 0.5 + torch.rand(n_classes, generator=generator, dtype=torch.float64)
        z = offsets[labels] + spreads[labels] * torch.randn(len(labels), generator=generator, dtype=torch.float64)
        z = z + 3.0
        _compare_target(fn, z, labels, f"target_information(z, labels) for {n_classes} classes of "
                                       f"{sizes.min().item()} to {sizes.max().item()} samples")


def _invariances(fn: Callable) -> None:
    generator = torch.Generator().manual_seed(3)
    labels = torch.arange(4).repeat_interleave(torch.tensor([5, 9, 6, 12]))
    z = torch.randn(len(labels), generator=generator, dtype=torch.float64) + labels
    base = as_number(fn(z.clone(), labels.clone()), "target_information(z, labels)")
    shifted = as_number(fn(z + 10.0, labels.clone()), "target_information(z + 10, labels)")
    expect(math.isclose(shifted, base, rel_tol=1e-6, abs_tol=1e-9),
           f"target_information(z + 10, labels) = {shifted:.6g} but target_information(z, labels) = {base:.6g}: "
           "adding a constant to every response moves every class mean by it and changes no variance")
    scaled = as_number(fn(3.0 * z, labels.clone()), "target_information(3 z, labels)")
    expect(math.isclose(scaled, 9.0 * base, rel_tol=1e-6, abs_tol=1e-9),
           f"target_information(3 z, labels) = {scaled:.6g}, not 9 times target_information(z, labels) = "
           f"{base:.6g}: both terms are variances, so they scale with the square of the response")


def check_target_information(fn: Callable) -> None:
    r"""Check ``target_information(z, labels)``: the target-information score of one neuron with responses
    ``z`` (``[N]``) to samples of classes ``labels`` (``[N]``, integers ``0..K-1``, every class present),

    .. math:: \frac1K \sum_{j=1}^K (\mu_j - \bar\mu)^2 \;-\; \frac1K \sum_{j=1}^K \sigma_j^2,
       \qquad \bar\mu = \frac1K \sum_j \mu_j,

    with population (divide by :math:`n_j`) class variances :math:`\sigma_j^2`; every class weighs the
    same, whatever its size. Checked: a hand case with two classes; the invariances (a constant added to
    ``z`` changes nothing, a factor :math:`c` multiplies the score by :math:`c^2`); random neurons with
    classes of unequal sizes (drawn inside the check) compared with the ``"target"`` entry of
    :func:`neuronlab.campaign.information_scores`, to a relative ``1e-6`` of the response variance. A
    failure says whether the answer uses sample variances (``n - 1``), weights the classes by their sizes
    or reverses the sign.
    """
    run_check("target_information", fn, [
        ("two classes by hand", _hand_case),
        ("shifting and scaling the responses", _invariances),
        ("random neurons, against campaign.information_scores", _random_neurons),
    ])
