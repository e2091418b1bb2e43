"""Chapter 1's code exercises: every check passes on the notebook's reference solution, fails on the
student edition's skeleton and fails on the typical wrong answers, with a message that names the slip."""

import math

import pytest
import torch

from neuronlab.exercises import ExerciseFailed, ch01


# ------------------------------------------------------------------------------------------- init_std


def _he_or_xavier(he_variance):
    def init_std(fan_in, fan_out, scheme, negative_slope=0.0):
        if scheme == "xavier":
            return math.sqrt(2 / (fan_in + fan_out))
        return he_variance(fan_in, fan_out, negative_slope)
    return init_std


@pytest.mark.parametrize("wrong, slip", [
    (_he_or_xavier(lambda fi, fo, a: 2 / ((1 + a**2) * fi)), "variance"),
    (_he_or_xavier(lambda fi, fo, a: math.sqrt(2 / ((1 + a**2) * fo))), "fan-out"),
    (_he_or_xavier(lambda fi, fo, a: math.sqrt(2 / fi)), "negative slope"),
    (_he_or_xavier(lambda fi, fo, a: math.sqrt(2 / ((1 + a) * fi))), "square the slope"),
], ids=["variance", "fan_out", "no_slope", "slope_not_squared"])
def test_init_std_fails_on_a_wrong_he(wrong, slip):
    with pytest.raises(ExerciseFailed, match=slip):
        ch01.check_init_std(wrong)


def test_init_std_fails_on_a_wrong_xavier():
    def init_std(fan_in, fan_out, scheme, negative_slope=0.0):
        if scheme == "xavier":
            return math.sqrt(1 / (fan_in + fan_out))  # the factor 2 forgotten
        return math.sqrt(2 / ((1 + negative_slope**2) * fan_in))
    with pytest.raises(ExerciseFailed, match="Xavier"):
        ch01.check_init_std(init_std)


def test_init_std_says_what_a_non_number_is():
    with pytest.raises(ExerciseFailed, match="one number"):
        ch01.check_init_std(lambda fan_in, fan_out, scheme, negative_slope=0.0: [0.1])


# ---------------------------------------------------------------------------------------- forward_stds


PHI = {"relu": torch.relu, "tanh": torch.tanh, "linear": lambda z: z}


def _before_activation(weights, x, activation="relu"):
    stds, a = [], x
    for w in weights:
        z = a @ w.T
        stds.append(z.std().item())  # the linear output, not the signal after the activation
        a = PHI[activation](z)
    return stds


def _activation_after_the_logits(weights, x, activation="relu"):
    stds, a = [], x
    for w in weights:
        a = PHI[activation](a @ w.T)  # also after the last layer
        stds.append(a.std().item())
    return stds


def _one_number_short(weights, x, activation="relu"):
    stds, a = [], x
    for w in weights[:-1]:
        a = PHI[activation](a @ w.T)
        stds.append(a.std().item())
    return stds


@pytest.mark.parametrize("wrong, message", [
    (_before_activation, "before the activation"),
    (_activation_after_the_logits, "no activation after the last layer"),
    (_one_number_short, "one per layer"),
], ids=["preactivation", "activated_logits", "missing_layer"])
def test_forward_stds_fails_on_a_wrong_answer(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        ch01.check_forward_stds(wrong)


def test_forward_stds_names_a_last_layer_slip_on_deep_networks():
    """Past the one-layer case, an activation after the logits is named as such."""
    def activated_logits_beyond_one_layer(weights, x, activation="relu"):
        if len(weights) == 1:
            return [x.std().item()]
        return _activation_after_the_logits(weights, x, activation)
    with pytest.raises(ExerciseFailed, match="apply no activation after it"):
        ch01.check_forward_stds(activated_logits_beyond_one_layer)
