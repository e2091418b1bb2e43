"""The checks of Chapter 3's code exercises pass on the notebook's reference solutions and fail on the
student's skeletons and on typical wrong answers, each with a message that names the mistake."""

import json
import re
from pathlib import Path

import pytest
import torch

from neuronlab.exercises import ExerciseFailed, ch03

CHAPTER = 3
NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "03_neuron_steadiness.ipynb"
CHECKS = {"class_means": ch03.check_class_means, "nsr_penalty": ch03.check_nsr_penalty}


def test_every_code_exercise_of_the_notebook_has_its_check_cell(solutions):
    assert set(solutions(CHAPTER)) == set(CHECKS)
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    calls = [re.sub(r"\s+", "", "".join(c["source"])) for c in cells
             if "exercise-check" in c.get("metadata", {}).get("tags", [])]
    assert calls == [f"exercises.ch03.check_{name}({name})" for name in CHECKS]


def test_a_value_instead_of_a_function_is_refused():
    with pytest.raises(ExerciseFailed, match="pass your function itself"):
        ch03.check_class_means(torch.zeros(3))


# ------------------------------------------------------------------------------------- wrong class means
def _global_mean(x, y, num_classes):
    return x.mean(0).expand(num_classes, -1)


def _divided_by_all(x, y, num_classes):
    return torch.stack([x[y == c].sum(0) / len(x) for c in range(num_classes)])


def _wrong_axis(x, y, num_classes):
    return torch.stack([x[y == c].mean(1).mean() * torch.ones(x.shape[1]) for c in range(num_classes)])


@pytest.mark.parametrize("wrong, message", [
    (_global_mean, "its mean is that sample"),
    (_divided_by_all, "its mean is that sample"),
    (_wrong_axis, "its mean is that sample"),
], ids=["global mean", "divided by N", "wrong axis"])
def test_class_means_fails_on_a_wrong_answer(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        ch03.check_class_means(wrong)


def test_class_means_fails_on_the_wrong_shape():
    with pytest.raises(ExerciseFailed, match=r"shape \(3, 6\)"):
        ch03.check_class_means(lambda x, y, k: torch.stack([x[y == c].mean(0) for c in range(k)]).T)


# ------------------------------------------------------------------------------------ wrong NSR penalties
def _global(x, y, means, lam):
    return lam * ((x - x.mean(0)) ** 2).mean()


def _no_square(x, y, means, lam):
    return lam * (x - means.detach()[y]).abs().mean()


def _sum(x, y, means, lam):
    return lam * ((x - means.detach()[y]) ** 2).sum()


def _sum_over_neurons(x, y, means, lam):
    return lam * ((x - means.detach()[y]) ** 2).sum(1).mean()


def _not_detached(x, y, means, lam):
    return lam * ((x - means[y]) ** 2).mean()


def _batch_means(x, y, means, lam):
    own = torch.stack([x[y == c].mean(0) for c in range(means.shape[0])]).detach()
    return lam * ((x - own[y]) ** 2).mean()


def _a_float(x, y, means, lam):
    return lam * ((x - means.detach()[y]) ** 2).mean().item()


def _lam_squared(x, y, means, lam):
    return lam ** 2 * ((x - means.detach()[y]) ** 2).mean()


@pytest.mark.parametrize("wrong, message", [
    (_global, "mean of its \\*own\\* class"),
    (_no_square, "Square the distances"),
    (_sum, "take the mean over all N samples and n neurons"),
    (_sum_over_neurons, "take the mean over all N samples and n neurons"),
    (_not_detached, "detach them"),
    (_batch_means, "use the means you are given"),
    (_a_float, "return a torch tensor"),
    (_lam_squared, "lam"),
], ids=["global mean", "no square", "sum", "sum over neurons", "not detached", "batch means", "float",
        "lam squared"])
def test_nsr_penalty_fails_on_a_wrong_answer(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        ch03.check_nsr_penalty(wrong)


def test_the_checks_leave_the_global_random_state_alone(solutions):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    for name, check in CHECKS.items():
        check(solutions(CHAPTER)[name])
    assert torch.equal(torch.rand(3), expected)


def test_each_code_exercise_is_followed_by_its_solution_check_and_solution_text():
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    for i, cell in enumerate(cells):
        if "exercise-solution" not in cell.get("metadata", {}).get("tags", []):
            continue
        exercise, check, solution = ("".join(cells[j]["source"]) for j in (i - 1, i + 1, i + 2))
        label = re.search(r":label: (ex-ch03-[\w-]+)", exercise).group(1)
        assert exercise.startswith(":::{exercise}") and "**Type** code" in exercise
        assert "exercise-check" in cells[i + 1]["metadata"]["tags"] and check.startswith("exercises.ch03.")
        assert solution.startswith(f":::{{solution}} {label}\n")
