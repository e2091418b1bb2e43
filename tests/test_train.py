"""neuronlab.train: the update equals -lr * autograd gradient, resume is exact, errors are clear."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from neuronlab.train import History, evaluate, fit


def _separable(n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    return x, y


def _splits(seed=0):
    x, y = _separable(300, seed)
    return {"train": (x[:200], y[:200]), "val": (x[200:250], y[200:250]), "test": (x[250:], y[250:])}


def test_learns_a_separable_problem_and_logs_every_epoch():
    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    history = fit(model, _splits(), epochs=30, lr=0.5, batch_size=20, progress=False)
    table = history.table
    assert list(table["epoch"]) == list(range(1, 31))
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "lr", "time_s"} <= set(table)
    assert table["train_loss"].iloc[-1] < 0.5 * table["train_loss"].iloc[0]
    assert table["val_acc"].max() >= 0.94  # 50 validation points: at most 3 near the boundary missed


def test_one_full_batch_sgd_step_equals_minus_lr_times_the_autograd_gradient():
    torch.manual_seed(0)
    x, y = _separable(64)
    model = nn.Linear(2, 3)
    reference = nn.Linear(2, 3)
    reference.load_state_dict(model.state_dict())
    F.cross_entropy(reference(x), y).backward()
    fit(model, {"train": (x, y)}, epochs=1, lr=0.3, batch_size=64, progress=False)
    assert torch.allclose(model.weight, reference.weight - 0.3 * reference.weight.grad, atol=1e-6)
    assert torch.allclose(model.bias, reference.bias - 0.3 * reference.bias.grad, atol=1e-6)


def test_zero_learning_rate_leaves_weights_unchanged():
    model = nn.Linear(2, 2)
    before = [p.clone() for p in model.parameters()]
    fit(model, _splits(), epochs=2, lr=0.0, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_extra_loss_term_enters_the_gradient_and_is_logged():
    torch.manual_seed(0)
    x, y = _separable(32)
    model = nn.Linear(2, 2)
    reference = nn.Linear(2, 2)
    reference.load_state_dict(model.state_dict())
    lam = 0.7
    (F.cross_entropy(reference(x), y) + lam * reference.weight.pow(2).sum()).backward()
    expected_term = lam * model.weight.detach().pow(2).sum().item()
    history = fit(model, {"train": (x, y)}, epochs=1, lr=0.1, batch_size=32, progress=False,
                  extra_losses={"l2": lambda ctx: lam * ctx.model.weight.pow(2).sum()})
    assert torch.allclose(model.weight, reference.weight - 0.1 * reference.weight.grad, atol=1e-6)
    assert history.table["loss_l2"].iloc[0] == pytest.approx(expected_term, rel=1e-6)


def test_best_epoch_and_errors_from_a_given_history():
    rows = [{"epoch": e, "val_acc": v, "test_acc": t} for e, v, t in
            [(1, 0.80, 0.79), (2, 0.90, 0.88), (3, 0.90, 0.91), (4, 0.85, 0.93)]]
    history = History(rows)
    assert history.best_epoch == 2  # ties go to the earliest epoch
    assert history.test_error_at_best == pytest.approx(12.0)
    assert history.min_test_error == pytest.approx(7.0)
    assert history.epoch_of_min_test_error == 4
    by_loss = History([{"epoch": 1, "val_loss": 0.5, "test_acc": 0.8}, {"epoch": 2, "val_loss": 0.4, "test_acc": 0.7}],
                      select_by="val_loss")
    assert by_loss.best_epoch == 2


def test_resumed_run_equals_an_uninterrupted_one(tmp_path):
    def run(epochs, ckpt=None):
        torch.manual_seed(123)
        model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 2))
        history = fit(model, _splits(), epochs=epochs, lr=0.1, momentum=0.9, batch_size=16, seed=5,
                      checkpoint=ckpt, progress=False)
        return model, history

    straight, h_straight = run(4)
    ckpt = tmp_path / "run.pt"
    run(2, ckpt)
    resumed, h_resumed = run(4, ckpt)
    assert all(torch.equal(a, b) for a, b in zip(straight.parameters(), resumed.parameters()))
    cols = ["train_loss", "val_acc", "test_loss"]
    assert h_straight.table[cols].equals(h_resumed.table[cols])
    # a finished run returns at once; other settings refuse the checkpoint
    again, h_again = run(4, ckpt)
    assert len(h_again) == 4
    with pytest.raises(ValueError, match="other settings"):
        fit(nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 2)), _splits(), epochs=4,
            lr=0.2, momentum=0.9, batch_size=16, seed=5, checkpoint=ckpt, progress=False)


def test_graph_training_uses_only_train_nodes():
    from torch_geometric.data import Data

    torch.manual_seed(0)
    x, y = _separable(120)
    y_seen = y.clone()
    val = torch.zeros(120, dtype=torch.bool)
    val[80:] = True
    y_seen[80:] = 1 - y[80:]  # garbage labels outside the training mask
    data = Data(x=x, y=y_seen, edge_index=torch.empty(2, 0, dtype=torch.long), train_mask=~val, val_mask=val,
                test_mask=val)

    class NodeLinear(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2)

        def forward(self, x, edge_index):
            return self.lin(x)

    history = fit(NodeLinear(), data, epochs=200, lr=1.0, progress=False)
    assert history.table["train_acc"].iloc[-1] >= 0.97  # fits the true rule on train nodes...
    assert history.table["val_acc"].iloc[-1] <= 0.1    # ...which contradicts the flipped labels elsewhere


def test_bad_input_errors():
    x, y = _separable(20)
    with pytest.raises(ValueError, match="2 outputs"):
        fit(nn.Linear(2, 2), {"train": (x, y + 5)}, epochs=1, progress=False)
    with pytest.raises(ValueError, match="NaN"):
        fit(nn.Linear(2, 2), {"train": (torch.full_like(x, math.nan), y)}, epochs=1, progress=False)
    with pytest.raises(ValueError, match="labels"):
        fit(nn.Linear(2, 2), {"train": (x, y[:10])}, epochs=1, progress=False)
    with pytest.raises(ValueError, match="epochs"):
        fit(nn.Linear(2, 2), {"train": (x, y)}, epochs=0, progress=False)
    with pytest.raises(ValueError, match="Unknown optimizer"):
        fit(nn.Linear(2, 2), {"train": (x, y)}, epochs=1, optimizer="lbfgs-ish", progress=False)
    with pytest.raises(TypeError, match="cannot read data"):
        fit(nn.Linear(2, 2), [x, y], epochs=1, progress=False)
    with pytest.raises(FloatingPointError, match="explode"):
        fit(nn.Linear(2, 2), {"train": (x, y)}, epochs=1, progress=False,
            extra_losses={"explode": lambda ctx: ctx.logits.sum() * math.inf})
    with pytest.raises(ValueError, match="outputs"):
        evaluate(nn.Linear(2, 2), x, y + 3)
