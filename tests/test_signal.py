"""neuronlab.signal against the closed-form variance propagation of Chapter 1."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neuronlab.init import initialize_
from neuronlab.models import build_model
from neuronlab.signal import predicted_nonfinite_layer, predicted_std_ratio, propagate_random_product, signal_profile


def build_init_mlp(depth, width, *, activation="relu", scheme="he", in_features=784, num_classes=10, x=None, seed=0):
    torch.manual_seed(seed)
    model = build_model(f"MLP-{depth - 1}x{width}", activation=activation, in_features=in_features,
                        num_classes=num_classes)
    return initialize_(model, scheme, x=x, generator=torch.Generator().manual_seed(seed))


def test_unscaled_product_overflows_where_the_closed_form_says_and_deterministically():
    first = propagate_random_product(100, 512, 1.0, seed=0)
    again = propagate_random_product(100, 512, 1.0, seed=0)
    assert first.first_nonfinite is not None
    assert first.first_nonfinite == again.first_nonfinite
    assert abs(first.first_nonfinite - predicted_nonfinite_layer(512, 1.0)) <= 2
    # each layer multiplies the std by ~sqrt(512): compare the fitted slope of log std
    layers = np.arange(1, first.first_nonfinite)
    slope = np.polyfit(layers, np.log(first.stds[: first.first_nonfinite - 1]), 1)[0]
    assert abs(slope - 0.5 * math.log(512)) < 0.05


def test_float64_survives_a_hundred_layers():
    assert predicted_nonfinite_layer(512, 1.0, torch.float64) > 200
    trace = propagate_random_product(100, 512, 1.0, seed=0, dtype=torch.float64)
    assert trace.first_nonfinite is None and np.isfinite(trace.stds).all()


def test_small_weights_shrink_signal_at_the_predicted_rate_then_underflow():
    trace = propagate_random_product(100, 512, 0.01, seed=3)
    assert trace.first_nonfinite is None
    assert trace.first_all_zero is not None and trace.stds[-1] == 0 and trace.means[-1] == 0
    layers = np.arange(1, 31)
    slope = np.polyfit(layers, np.log(trace.stds[:30]), 1)[0]
    assert abs(slope - 0.5 * math.log(512 * 0.01**2)) < 0.05
    assert math.isinf(predicted_nonfinite_layer(512, 0.01))


def test_predicted_std_ratio_closed_forms():
    assert predicted_std_ratio(100, 0.02) == pytest.approx(2.0)
    assert predicted_std_ratio(100, 0.02, "relu") == pytest.approx(1.0)
    with pytest.raises(ValueError):
        predicted_std_ratio(100, 0.02, "tanh")


def _square_profile(scheme, activation, depth=30, width=384, n=512, seed=0):
    torch.manual_seed(seed)
    x = torch.randn(n, width)
    y = torch.randint(0, width, (n,))
    model = build_init_mlp(depth, width, activation=activation, scheme=scheme, in_features=width,
                           num_classes=width, x=x, seed=seed)
    return signal_profile(model, x, y), model


def _log_slope(values):
    values = np.asarray(values)
    return np.polyfit(np.arange(len(values)), np.log(values), 1)[0]


def test_he_keeps_relu_signal_while_xavier_halves_its_second_moment_per_layer():
    he, _ = _square_profile("he", "relu")
    xavier, _ = _square_profile("xavier", "relu")
    hidden = slice(1, 29)  # skip the input layer and the logits
    # He: factor 1 per layer; Xavier on square layers: factor 1/2 on the second moment
    assert abs(_log_slope(he["activation_std"][hidden])) < 0.03
    assert abs(_log_slope(xavier["activation_std"][hidden]) - 0.5 * math.log(0.5)) < 0.03
    # backward signal: constant under He, shrinking by the same factor towards the input under Xavier
    assert abs(_log_slope(he["gradient_std"][hidden])) < 0.03
    assert abs(_log_slope(xavier["gradient_std"][hidden]) + 0.5 * math.log(0.5)) < 0.03


def test_gaussian_001_vanishes_forward_and_backward():
    frame, _ = _square_profile("gaussian", "tanh", depth=10)
    per_layer = 0.5 * math.log(384 * 0.01**2)  # tanh is linear near 0
    assert abs(_log_slope(frame["activation_std"][:9]) - per_layer) < 0.05
    assert frame["gradient_std"].iloc[0] < 1e-6 * frame["gradient_std"].iloc[-1]


def test_weight_gradient_norm_matches_autograd_and_hooks_are_removed():
    frame, model = _square_profile("xavier", "tanh", depth=4, width=32, n=64)
    torch.manual_seed(0)
    x = torch.randn(64, 32)
    y = torch.randint(0, 32, (64,))
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    assert frame["weight_grad_norm"].tolist() == pytest.approx(
        [getattr(model, n).weight.grad.norm().item() for n in model.linear_names], rel=1e-5)
    assert all(len(m._forward_hooks) == 0 for m in model.modules())


def test_relu_dead_fraction_is_about_half_at_init():
    frame, _ = _square_profile("he", "relu", depth=5)
    assert np.allclose(frame["dead_fraction"][:4], 0.5, atol=0.05)
    assert frame["dead_fraction"].iloc[-1] < 0.01  # the logits have no ReLU


def test_bad_inputs():
    with pytest.raises(ValueError):
        propagate_random_product(0, 512, 1.0)
    with pytest.raises(ValueError):
        propagate_random_product(10, 512, -1.0)
    model = build_init_mlp(3, 16, in_features=8, num_classes=4)
    with pytest.raises(ValueError, match="labels"):
        signal_profile(model, torch.randn(10, 8), torch.zeros(9, dtype=torch.long))
