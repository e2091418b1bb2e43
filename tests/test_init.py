"""neuronlab.init against the variance formulas of the papers and against LSUV's defining property."""

import math

import pytest
import torch
from torch import nn

from neuronlab.init import fan_in_out, gaussian_, he_, initialize_, lsuv_, orthogonal_, weight_layers, xavier_
from neuronlab.models import MLP, SmallCNN


def _big_linear(n_in=800, n_out=1200):
    layer = nn.Linear(n_in, n_out)
    nn.init.constant_(layer.bias, 3.0)
    return layer


def _rel_err(a, b):
    return abs(a - b) / b


def test_fan_in_out_of_conv_counts_kernel():
    conv = nn.Conv2d(16, 32, kernel_size=3)
    assert fan_in_out(conv.weight) == (16 * 9, 32 * 9)


@pytest.mark.parametrize("distribution", ["normal", "uniform"])
def test_xavier_variance_is_two_over_fan_sum(distribution):
    layer = xavier_(_big_linear(), distribution, generator=torch.Generator().manual_seed(0))
    # ~1e6 draws: the sample variance's relative standard error is ~0.15 %, so 1 % is ~7 sigma
    assert _rel_err(layer.weight.var().item(), 2 / (800 + 1200)) < 0.01
    assert torch.all(layer.bias == 0)
    if distribution == "uniform":
        assert layer.weight.abs().max().item() <= math.sqrt(6 / 2000) + 1e-7


def test_he_variance_uses_true_fan_in_for_conv():
    conv = he_(nn.Conv2d(64, 128, 3), generator=torch.Generator().manual_seed(1))
    assert _rel_err(conv.weight.var().item(), 2 / (64 * 9)) < 0.01
    leaky = he_(_big_linear(), negative_slope=0.5, generator=torch.Generator().manual_seed(1))
    assert _rel_err(leaky.weight.var().item(), 2 / (1.25 * 800)) < 0.01


def test_gaussian_ignores_layer_size():
    layer = gaussian_(_big_linear(), std=0.01, generator=torch.Generator().manual_seed(2))
    assert _rel_err(layer.weight.std().item(), 0.01) < 0.005


def test_orthogonal_rows_are_orthonormal():
    layer = orthogonal_(nn.Linear(300, 100))
    gram = layer.weight @ layer.weight.T
    assert torch.allclose(gram, torch.eye(100), atol=1e-5)


def test_same_generator_seed_gives_same_weights():
    a = xavier_(MLP([20, 30, 5]), generator=torch.Generator().manual_seed(7))
    b = xavier_(MLP([20, 30, 5]), generator=torch.Generator().manual_seed(7))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def _layer_output_variances(model, x):
    """Variance of every weight layer's output, recomputed by an independent forward pass."""
    outputs = {}
    handles = [m.register_forward_hook(lambda m, i, o, n=n: outputs.__setitem__(n, o.var().item()))
               for n, m in weight_layers(model)]
    was_training = model.training
    model.eval()  # LSUV's promise holds for the inference-time network (dropout off, BN running stats)
    with torch.no_grad():
        model(x)
    model.train(was_training)
    for h in handles:
        h.remove()
    return outputs


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_lsuv_gives_unit_output_variance_in_every_layer(activation):
    torch.manual_seed(0)
    x = torch.rand(512, 784) * 3 + 1  # deliberately not standardized
    model = MLP([784, 256, 100, 100, 100, 10], activation=activation)
    lsuv_(model, x, tol=0.02, generator=torch.Generator().manual_seed(0))
    variances = _layer_output_variances(model, x)
    assert len(variances) == 5
    for name, v in variances.items():
        assert abs(v - 1) < 0.02, (name, v)


def test_lsuv_converges_with_biases_and_batchnorm_in_a_cnn():
    torch.manual_seed(0)
    x = torch.randn(256, 1, 28, 28)
    model = SmallCNN(batchnorm=True)
    for _, m in weight_layers(model):
        nn.init.constant_(m.bias, 0.5)
    _, report = lsuv_(model, x, tol=0.05, orthogonal=False, max_iter=20, return_report=True)
    variances = _layer_output_variances(model, x)
    for name, v in variances.items():
        assert abs(v - 1) < 0.05, (name, v)
        assert report[name]["iterations"] <= 20


def test_lsuv_keeps_directions_without_orthogonal_start():
    model = MLP([50, 40, 10])
    before = model.fc1.weight.detach().clone()
    lsuv_(model, torch.randn(300, 50), orthogonal=False)
    ratio = model.fc1.weight / before
    assert torch.allclose(ratio, ratio.flatten()[0].expand_as(ratio), rtol=1e-4)


def test_lsuv_restores_mode_and_removes_hooks():
    model = MLP([10, 20, 3], dropout=0.5)
    model.train()
    lsuv_(model, torch.randn(100, 10))
    assert model.training
    assert all(len(m._forward_hooks) == 0 for m in model.modules())


def test_lsuv_rejects_bad_input():
    model = MLP([10, 20, 3])
    with pytest.raises(ValueError, match="NaN"):
        lsuv_(model, torch.full((10, 10), float("nan")))
    with pytest.raises(ValueError, match="at least 2 samples"):
        lsuv_(model, torch.randn(1, 10))
    with pytest.raises(ValueError, match="unknown layer"):
        lsuv_(model, torch.randn(10, 10), layers=["fc9"])


def test_lsuv_reports_dead_layer():
    model = MLP([10, 20, 3])
    with torch.no_grad():
        model.fc1.weight.zero_()
        model.fc1.bias.zero_()
    with pytest.raises(RuntimeError, match="variance"):
        lsuv_(model, torch.randn(50, 10), orthogonal=False)


def test_initialize_dispatch_and_errors():
    model = MLP([10, 20, 3])
    initialize_(model, "gaussian", std=0.5)
    assert 0.3 < model.fc1.weight.std().item() < 0.7
    with pytest.raises(ValueError, match="needs a batch"):
        initialize_(model, "lsuv")
    with pytest.raises(ValueError, match="Unknown initialization"):
        initialize_(model, "glorot-ish")
    with pytest.raises(ValueError, match="no nn.Linear"):
        xavier_(nn.ReLU())
