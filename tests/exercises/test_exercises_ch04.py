"""The checks of Chapter 4's code exercises pass on the notebook's reference solutions and fail on the
student's skeletons and on typical wrong answers, each with a message that names the mistake."""

import json
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from neuronlab.exercises import ExerciseFailed, ch04

CHAPTER = 4
NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "04_cooperating_classifiers.ipynb"
CHECKS = {"perplexity": ch04.check_perplexity,
          "discrete_node_classifier": ch04.check_discrete_node_classifier}


def _cells():
    return json.loads(NOTEBOOK.read_text())["cells"]


def test_every_code_exercise_of_the_notebook_has_its_check_cell(solutions):
    assert set(solutions(CHAPTER)) == set(CHECKS)
    calls = [re.sub(r"\s+", "", "".join(c["source"])) for c in _cells()
             if "exercise-check" in c.get("metadata", {}).get("tags", [])]
    assert calls == [f"exercises.ch04.check_{name}({name})" for name in CHECKS]


def test_each_code_exercise_is_followed_by_its_solution_check_and_solution_text():
    cells = _cells()
    for i, cell in enumerate(cells):
        if "exercise-solution" not in cell.get("metadata", {}).get("tags", []):
            continue
        exercise, check, solution = ("".join(cells[j]["source"]) for j in (i - 1, i + 1, i + 2))
        label = re.search(r":label: (ex-ch04-[\w-]+)", exercise).group(1)
        assert exercise.startswith(":::{exercise}") and "**Type** code" in exercise
        assert "exercise-check" in cells[i + 1]["metadata"]["tags"] and check.startswith("exercises.ch04.")
        assert solution.startswith(f":::{{solution}} {label}\n")


# -------------------------------------------------------------------------------------- wrong perplexities
def _perplexity(entropy_log=math.log, power=math.exp, pooled=False, distinct=False):
    """A per-class perplexity built from Python counters, with one of the typical slips switched on."""
    def perplexity(patterns, labels, num_classes):
        values = []
        for c in range(num_classes):
            rows = patterns if pooled else patterns[labels == c]
            counts = list(Counter(tuple(row) for row in rows.tolist()).values())
            if distinct:
                values.append(float(len(counts)))
                continue
            total = sum(counts)
            entropy = -sum(n / total * entropy_log(n / total) for n in counts)
            values.append(power(entropy))
        return values
    return perplexity


def test_the_python_perplexity_helper_is_right_when_no_slip_is_switched_on(capsys):
    ch04.check_perplexity(_perplexity())
    assert "all checks passed" in capsys.readouterr().out


def test_base_two_perplexity_is_right_too(capsys):
    ch04.check_perplexity(_perplexity(entropy_log=math.log2, power=lambda h: 2 ** h))
    assert "all checks passed" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, message", [
    (_perplexity(entropy_log=math.log2), "natural logarithm"),
    (_perplexity(power=lambda h: h), "you returned the entropy"),
    (_perplexity(pooled=True), "per class"),
    (_perplexity(distinct=True), "counting the distinct patterns is not enough"),
], ids=["log base 2 under exp", "entropy without exp", "all samples pooled", "distinct patterns counted"])
def test_perplexity_fails_on_a_wrong_answer(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        ch04.check_perplexity(wrong)


def test_perplexity_fails_on_one_value_for_all_classes():
    with pytest.raises(ExerciseFailed, match="one number per class"):
        ch04.check_perplexity(lambda patterns, labels, k: 1.0)


# ---------------------------------------------------------------------------- wrong node classifiers
def _node_classifier(on=lambda a: a > 0, by_class=False, smoothing=1.0):
    def discrete_node_classifier(activations, labels, num_classes):
        onehot = torch.nn.functional.one_hot(labels, num_classes).double()
        count_on = on(activations).double().T @ onehot
        if by_class:  # P(on | c): divided by the class sizes
            return (count_on + smoothing) / (onehot.sum(0)[None, :] + 2 * smoothing)
        return (count_on + smoothing) / (count_on.sum(1, keepdim=True) + smoothing * num_classes)
    return discrete_node_classifier


@pytest.mark.parametrize("wrong, message", [
    (_node_classifier(by_class=True), "each row sums to 1"),
    (_node_classifier(on=lambda a: a >= 0), "exactly 0 is off"),
    (_node_classifier(smoothing=0.0), r"\(3 \+ 1, 1 \+ 1, 0 \+ 1\) / \(4 \+ 3\)"),
    (_node_classifier(smoothing=0.5), r"\(3 \+ 1, 1 \+ 1, 0 \+ 1\) / \(4 \+ 3\)"),
], ids=["P(on | c)", "on where >= 0", "no smoothing", "half smoothing"])
def test_discrete_node_classifier_fails_on_a_wrong_answer(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        ch04.check_discrete_node_classifier(wrong)


def test_discrete_node_classifier_accepts_numpy(capsys):
    reference = _node_classifier()
    ch04.check_discrete_node_classifier(lambda a, y, k: reference(a, y, k).numpy())
    assert "all checks passed" in capsys.readouterr().out


def test_the_checks_leave_the_global_random_state_alone(solutions):
    torch.manual_seed(123)
    np.random.seed(123)
    expected = torch.rand(3), np.random.rand(3)
    torch.manual_seed(123)
    np.random.seed(123)
    for name, check in CHECKS.items():
        check(solutions(CHAPTER)[name])
    assert torch.equal(torch.rand(3), expected[0]) and np.array_equal(np.random.rand(3), expected[1])
