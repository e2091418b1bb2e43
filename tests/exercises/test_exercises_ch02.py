"""Chapter 2's code exercises: every check passes on the notebook's reference solution, fails on the
student edition's skeleton and fails on the typical wrong answers, with a message that names the slip."""

import pytest
import torch

from neuronlab.exercises import ExerciseFailed, ch02


# ---------------------------------------------------------------------------------------------- elect


def _top_k(candidates, scores, k):
    return scores.topk(k).indices.tolist()  # no orthogonalization at all


def _greedy(candidates, scores, k, *, fraction=True, from_residuals=True):
    w = candidates.double()
    residuals, norms, elected = w.clone(), w.norm(dim=1), []
    for _ in range(k):
        value = scores.double() * residuals.norm(dim=1) / (norms if fraction else 1.0)
        value[elected] = -float("inf")
        i = int(value.argmax())
        elected.append(i)
        a = residuals[i] / residuals[i].norm()
        source = residuals if from_residuals else w
        residuals = source - torch.outer(source @ a, a)
    return elected


def _residual_norm_not_fraction(candidates, scores, k):
    return _greedy(candidates, scores, k, fraction=False)


def _only_the_latest_direction(candidates, scores, k):
    return _greedy(candidates, scores, k, from_residuals=False)


def _elected_twice(candidates, scores, k):
    return [int(scores.argmax())] * k


@pytest.mark.parametrize("wrong, message", [
    (_top_k, "k highest scores"),
    (_residual_norm_not_fraction, "divide it by the candidate's norm"),
    (_only_the_latest_direction, "only the latest elected direction"),
    (_elected_twice, "only once"),
], ids=["top_k", "no_norm_fraction", "latest_direction_only", "repeats"])
def test_elect_fails_on_a_wrong_answer(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        ch02.check_elect(wrong)


def test_elect_accepts_a_tensor_of_indices(solutions):
    reference = solutions(2)["elect"]
    ch02.check_elect(lambda w, s, k: torch.tensor(reference(w, s, k)))  # raises if it is refused


# ---------------------------------------------------------------------------------- target_information


def _parts(z, labels):
    return [z[labels == c] for c in labels.unique()]


def _sample_variances(z, labels):
    parts = _parts(z, labels)
    means = torch.stack([p.mean() for p in parts])
    return (means.var() - torch.stack([p.var() for p in parts]).mean()).item()  # torch's default: n - 1


def _means_around_the_overall_mean(z, labels):
    parts = _parts(z, labels)
    between = sum(len(p) * (p.mean() - z.mean()) ** 2 for p in parts) / len(z)
    return (between - torch.stack([p.var(unbiased=False) for p in parts]).mean()).item()


def _pooled_within(z, labels):
    parts = _parts(z, labels)
    means = torch.stack([p.mean() for p in parts])
    pooled = sum(((p - p.mean()) ** 2).sum() for p in parts) / len(z)
    return (means.var(unbiased=False) - pooled).item()


def _within_minus_between(z, labels):
    parts = _parts(z, labels)
    means = torch.stack([p.mean() for p in parts])
    return (torch.stack([p.var(unbiased=False) for p in parts]).mean() - means.var(unbiased=False)).item()


@pytest.mark.parametrize("wrong, message", [
    (_sample_variances, "unbiased=False"),
    (_means_around_the_overall_mean, "weights the classes by their sizes"),
    (_pooled_within, "pools all samples"),
    (_within_minus_between, "sign is reversed"),
], ids=["ddof_1", "weighted_between", "pooled_within", "sign"])
def test_target_information_fails_on_a_wrong_answer(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        ch02.check_target_information(wrong)
