"""Baseline regularizers against closed forms: L1, L2, the Jacobian estimate, orthogonality."""

import pytest
import torch
from torch import nn

from neuronlab import models, train
from neuronlab.regularizers import ActivationL1, JacobianNorm, WeightL2, WeightOrthogonality
from neuronlab.train import StepContext


def ctx_for(model, x):
    return StepContext(model=model, inputs=x, targets=None, logits=model(x), mask=None, epoch=1, step=0)


def test_activation_l1_by_hand():
    model = nn.Sequential(nn.Linear(3, 2, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, -1.0, 0.0], [0.0, 2.0, 1.0]]))
    x = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 1.0]])
    with ActivationL1(model, "0", lam=0.5) as l1:
        value = l1(ctx_for(model, x))
    # responses [[-1, 7], [0, 1]]: L1 norms 8 and 1, mean 4.5, times 0.5
    assert value.item() == pytest.approx(2.25)
    assert not model[0]._forward_hooks


def test_weight_l2_skips_biases():
    model = models.MLP([3, 4, 2])
    expected = sum((m.weight ** 2).sum() for m in [model.fc1, model.fc2])
    assert WeightL2(model, 0.1)().item() == pytest.approx(0.1 * expected.item(), rel=1e-6)
    with pytest.raises(ValueError, match="unknown"):
        WeightL2(model, 0.1, layers=["fc7"])


def test_jacobian_estimate_is_unbiased_for_a_linear_map():
    torch.manual_seed(0)
    layer = nn.Linear(6, 4, bias=False)
    exact = (layer.weight ** 2).sum().item()  # the Jacobian of a linear map is its weight
    jac = JacobianNorm(lam=1.0, n_proj=2000, generator=torch.Generator().manual_seed(1))
    estimate = jac.norm_estimate(layer, torch.randn(5, 6)).item()
    assert estimate == pytest.approx(exact, rel=0.05)
    # differentiable in the weights
    value = JacobianNorm(lam=1.0, n_proj=3)(ctx_for(layer, torch.randn(5, 6)))
    value.backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


def test_orthogonality_is_zero_for_orthonormal_rows_and_columns():
    model = models.MLP([6, 4, 8])
    nn.init.orthogonal_(model.fc1.weight)
    nn.init.orthogonal_(model.fc2.weight)  # 8 x 4: orthonormal columns, the smaller Gram matrix is 4 x 4
    assert WeightOrthogonality(model, 1.0)().item() == pytest.approx(0.0, abs=1e-9)
    with torch.no_grad():
        model.fc1.weight.mul_(2.0)  # rows of norm 2: G = 4 I, ||3 I||^2 = 9 * 4
    assert WeightOrthogonality(model, 1.0, layers=["fc1"])().item() == pytest.approx(36.0, rel=1e-5)


def test_terms_plug_into_fit():
    g = torch.Generator().manual_seed(2)
    data = {"train": (torch.randn(40, 5, generator=g), torch.arange(2).repeat(20)),
            "val": (torch.randn(20, 5, generator=g), torch.arange(2).repeat(10))}
    model = models.MLP([5, 6, 2])
    with ActivationL1(model, "act1", 0.01) as l1:
        history = train.fit(model, data, epochs=1, batch_size=20, progress=False,
                            extra_losses={"l1": l1, "l2": WeightL2(model, 1e-3), "jac": JacobianNorm(0.01),
                                          "orth": WeightOrthogonality(model, 1e-3)})
    assert {"loss_l1", "loss_l2", "loss_jac", "loss_orth"} <= set(history.table.columns)
    with pytest.raises(ValueError, match="non-negative"):
        WeightL2(model, -1.0)
