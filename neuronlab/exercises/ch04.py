r"""Checks for the code exercises of Chapter 4 (DNNs as layers of cooperating classifiers).

* :func:`check_perplexity`: a student's ``perplexity(patterns, labels, num_classes)``, the per-class layer
  perplexity :math:`P(c) = e^{H(c)}` of activation patterns, checked on cases with known answers (one
  shared pattern: 1; :math:`k` equally frequent patterns: :math:`k`; all distinct: :math:`N_c`) and against
  :func:`neuronlab.cooperating.layer_perplexity` on random binary patterns;
* :func:`check_discrete_node_classifier`: a student's ``discrete_node_classifier(activations, labels,
  num_classes)``, each node's :math:`P(c \mid \text{on})` with add-one smoothing, checked by its properties
  (a distribution over the classes, uniform for a node that is never on) and against the discrete reading
  of :class:`neuronlab.cooperating.NodeClassifiers` on random activations.

Every problem is drawn inside the check from a seeded generator.
"""

from __future__ import annotations

from typing import Callable, Tuple

import numpy as np
import torch

from neuronlab.cooperating import ActivationPatterns, NodeClassifiers, layer_perplexity

from ._checks import as_array, expect, run_check

_PER_CLASS = ("the perplexity of each class", "one number per class")

__all__ = ["check_perplexity", "check_discrete_node_classifier"]


def _labels(sizes) -> torch.Tensor:
    return torch.cat([torch.full((size,), c, dtype=torch.long) for c, size in enumerate(sizes)])


def _random_patterns(seed: int, n: int, width: int, num_classes: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Binary patterns ``[n, width]`` (few nodes, so patterns repeat unevenly) and labels with every class."""
    generator = torch.Generator().manual_seed(seed)
    on_rate = torch.rand(num_classes, width, generator=generator)  # each class favours its own patterns
    labels = torch.cat([torch.arange(num_classes),
                        torch.randint(0, num_classes, (n - num_classes,), generator=generator)])
    labels = labels[torch.randperm(n, generator=generator)]
    patterns = torch.rand(n, width, generator=generator) < on_rate[labels]
    return patterns, labels


# ---------------------------------------------------------------------------------------------- perplexity
def check_perplexity(fn: Callable) -> None:
    r"""Check ``perplexity(patterns, labels, num_classes)``: for boolean activation patterns ``[N, nodes]``
    and labels ``[N]``, the perplexity of each class,

    .. math::
        H(c) = -\sum_k \frac{n_k}{N_c} \ln \frac{n_k}{N_c}, \qquad P(c) = e^{H(c)},

    over the distinct patterns :math:`k` of the class's :math:`N_c` samples (natural logarithm). Known cases:
    a class whose samples share one pattern has :math:`P = 1`, one with :math:`k` equally frequent patterns
    :math:`P = k`, one whose samples all differ :math:`P = N_c`; on random patterns the values must equal
    :func:`neuronlab.cooperating.layer_perplexity`. Prints one line when everything passes and raises
    :class:`~neuronlab.exercises.ExerciseFailed` otherwise.

    Example:
        >>> import math
        >>> from collections import Counter
        >>> def perplexity(patterns, labels, num_classes):
        ...     result = []
        ...     for c in range(num_classes):
        ...         rows = [tuple(row) for row in patterns[labels == c].tolist()]
        ...         counts = Counter(rows).values()
        ...         shares = [n / len(rows) for n in counts]
        ...         entropy = -sum(p * math.log(p) for p in shares)
        ...         result.append(math.exp(entropy))
        ...     return result
        >>> check_perplexity(perplexity)
        perplexity: all checks passed
    """

    def one_pattern(fn):
        # class 0: 12 samples, one pattern; class 1: 4 samples with another pattern each
        patterns = torch.zeros(16, 6, dtype=torch.bool)
        patterns[:12, [0, 2]] = True
        patterns[12:, 3] = True
        patterns[12:, 4] = torch.tensor([True, True, False, False])
        values = as_array(fn(patterns, _labels([12, 4]), 2), (2,), *_PER_CLASS)
        hint = ("you returned the entropy: the perplexity is its exponential, exp(H)" if abs(values[0]) < 1e-9
                else "compute it per class, from that class's samples only")
        expect(abs(values[0] - 1) < 1e-9,
               f"a class whose 12 samples all share one pattern has perplexity 1 (entropy 0), got "
               f"{values[0]:.4g}: {hint}")

    def equal(fn):
        # class 0: 5 patterns, 3 samples each; class 1: 2 patterns, 4 samples each
        patterns = torch.cat([torch.eye(5, dtype=torch.bool).repeat_interleave(3, dim=0),
                              torch.zeros(8, 5, dtype=torch.bool)])
        patterns[15:19, 0] = True
        values = as_array(fn(patterns, _labels([15, 8]), 2), (2,), *_PER_CLASS)
        expect(abs(values[0] - 5) < 1e-9 and abs(values[1] - 2) < 1e-9,
               f"5 equally frequent patterns give perplexity 5 and 2 give 2; got {values[0]:.4g} and "
               f"{values[1]:.4g}. The perplexity is exp of the entropy, with the natural logarithm")

    def distinct(fn):
        patterns = torch.tensor([[(i >> b) & 1 for b in range(3)] for i in range(7)], dtype=torch.bool)
        patterns = torch.cat([patterns, torch.ones(3, 3, dtype=torch.bool)])
        values = as_array(fn(patterns, _labels([7, 3]), 2), (2,), *_PER_CLASS)
        expect(abs(values[0] - 7) < 1e-9,
               f"7 samples with 7 different patterns give perplexity 7 (the class size), got {values[0]:.4g}")

    def random(fn):
        for seed, (n, width, k) in enumerate([(60, 3, 3), (90, 4, 4), (40, 2, 2)], start=1):
            patterns, labels = _random_patterns(seed, n, width, k)
            expected = layer_perplexity(ActivationPatterns.from_responses(patterns), labels, k)
            values = as_array(fn(patterns, labels, k), (k,), *_PER_CLASS)
            expect(np.allclose(values, expected, rtol=1e-9, atol=1e-9),
                   f"on random patterns ({n} samples, {width} nodes, {k} classes) cooperating.layer_perplexity "
                   f"gives {np.round(expected, 3).tolist()}, yours {np.round(values, 3).tolist()}: weigh each "
                   "pattern by its frequency n_k / N_c (counting the distinct patterns is not enough when "
                   "they are not equally frequent)")

    run_check("perplexity", fn, [("one shared pattern", one_pattern), ("equally frequent patterns", equal),
                                 ("all patterns distinct", distinct), ("random patterns", random)])


# ------------------------------------------------------------------------------ discrete node classifiers
def _random_activations(seed: int, n: int, nodes: int, num_classes: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Post-ReLU activations ``[n, nodes]`` (float32, many exact zeros) and labels with every class."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.cat([torch.arange(num_classes),
                        torch.randint(0, num_classes, (n - num_classes,), generator=generator)])
    labels = labels[torch.randperm(n, generator=generator)]
    bias = torch.randn(num_classes, nodes, generator=generator)
    return torch.relu(bias[labels] + torch.randn(n, nodes, generator=generator)), labels




def check_discrete_node_classifier(fn: Callable) -> None:
    r"""Check ``discrete_node_classifier(activations, labels, num_classes)``: for post-ReLU activations
    ``[N, nodes]`` and labels ``[N]``, a ``[nodes, num_classes]`` matrix whose row ``i`` is node ``i``'s
    discrete classifier for the samples that switch it on,

    .. math::
        P(c \mid \text{on}) = \frac{n_{c,\text{on}} + 1}{n_\text{on} + K},

    with :math:`n_{c,\text{on}}` the samples of class :math:`c` for which the node is on (activation
    :math:`> 0`) and :math:`n_\text{on}` all of them (add-one smoothing). Checked: every row is a distribution
    over the classes; a node that is never on gets the uniform :math:`1/K`; a hand case; and on random
    activations the discrete reading of :class:`neuronlab.cooperating.NodeClassifiers`. Prints one line when
    everything passes and raises :class:`~neuronlab.exercises.ExerciseFailed` otherwise.

    Example:
        >>> import torch
        >>> def discrete_node_classifier(activations, labels, num_classes):
        ...     onehot = torch.nn.functional.one_hot(labels, num_classes).double()
        ...     count_on = (activations > 0).double().T @ onehot
        ...     total = count_on.sum(1, keepdim=True)
        ...     return (count_on + 1) / (total + num_classes)
        >>> check_discrete_node_classifier(discrete_node_classifier)
        discrete_node_classifier: all checks passed
    """

    def rows(fn):
        a, y = _random_activations(0, 50, 4, 3)
        p = as_array(fn(a, y, 3), (4, 3), "P(class | node on)", "one row per node, one column per class")
        expect(np.allclose(p.sum(1), 1, atol=1e-9),
               f"each node's P(c | on) is a distribution over the classes, so each row sums to 1; your rows "
               f"sum to {np.round(p.sum(1), 3).tolist()}. Divide by the number of samples that switch the node "
               "on, not by the size of the class")

    def never_on(fn):
        a, y = _random_activations(1, 30, 3, 4)
        a[:, 1] = 0.0  # node 1 is off for every sample
        p = as_array(fn(a, y, 4), (3, 4), "P(class | node on)", "one row per node, one column per class")
        expect(np.allclose(p[1], 0.25, atol=1e-9),
               f"a node that is never on has no evidence: add-one smoothing gives every one of the 4 classes "
               f"1/4; got {np.round(p[1], 3).tolist()}")

    def hand(fn):
        # node 0 is on for 3 samples of class 0 and 1 of class 1; node 1 for the 2 samples of class 2
        a = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.5, 0.0], [0.0, 0.0], [3.0, 0.0], [0.0, 1.0], [0.0, 2.0]])
        y = torch.tensor([0, 0, 0, 1, 1, 2, 2])
        p = as_array(fn(a, y, 3), (2, 3), "P(class | node on)", "one row per node, one column per class")
        expected = np.array([[4 / 7, 2 / 7, 1 / 7], [1 / 5, 1 / 5, 3 / 5]])
        expect(np.allclose(p, expected, atol=1e-9),
               f"node 0 is on for three samples of class 0 and one of class 1, so P(c | on) = "
               f"(3 + 1, 1 + 1, 0 + 1) / (4 + 3); got {np.round(p[0], 4).tolist()} for it (and "
               f"{np.round(p[1], 4).tolist()} for node 1, expected (1, 1, 3) / 5). A node is on when its "
               "activation is > 0 (exactly 0 is off)")

    def random(fn):
        for seed, (n, nodes, k) in enumerate([(80, 6, 4), (120, 10, 10), (40, 3, 2)], start=2):
            a, y = _random_activations(seed, n, nodes, k)
            reference = NodeClassifiers(k).fit(a, y).node_proba(torch.ones(1, nodes), "discrete")[0]
            p = as_array(fn(a, y, k), (nodes, k), "P(class | node on)", "one row per node, one column per class")
            worst = float(np.abs(p - reference.numpy()).max())
            expect(worst < 1e-9,
                   f"on random activations ({n} samples, {nodes} nodes, {k} classes) your P(c | on) differs from "
                   f"the discrete reading of cooperating.NodeClassifiers by up to {worst:.3g}")

    run_check("discrete_node_classifier", fn, [
        ("rows are distributions", rows), ("a hand case", hand), ("a node that is never on", never_on),
        ("random activations", random)])
