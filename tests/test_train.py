"""neuronlab.train: checked against facts computed independently (autograd by hand, numpy, known answers).

Everything runs on the CPU with tiny synthetic data, so the whole file takes a few seconds.
"""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from neuronlab.train import History, StepContext, evaluate, fit, predict

CPU = "cpu"


def _separable(n=200, seed=0, margin=0.2):
    """2-D points labelled by the sign of w.x, with no point closer than ``margin`` to the boundary."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3 * n, 2, generator=g)
    score = x[:, 0] + 0.5 * x[:, 1]
    keep = score.abs() > margin
    x, score = x[keep][:n], score[keep][:n]
    return x, (score > 0).long()


def _splits(seed=0):
    x, y = _separable(300, seed)
    return {"train": (x[:200], y[:200]), "val": (x[200:250], y[200:250]), "test": (x[250:], y[250:])}


def _mlp(dropout=0.0):
    return nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Dropout(dropout), nn.Linear(8, 2))


def _params(model):
    return [p.detach().clone() for p in model.parameters()]


# ------------------------------------------------------------------------------------ learning
def test_learns_a_separable_problem_and_logs_every_epoch():
    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    data = _splits()
    history = fit(model, data, epochs=15, lr=0.5, batch_size=20, progress=False, device=CPU)
    table = history.table
    assert list(table["epoch"]) == list(range(1, 16)) and len(history) == 15
    assert list(table.columns[:7]) == ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss",
                                       "test_acc"]
    assert {"lr", "time_s"} <= set(table.columns)
    assert table["train_loss"].iloc[-1] < 0.3 * table["train_loss"].iloc[0]
    assert table["train_acc"].iloc[-1] == 1.0                              # separable with a margin
    assert evaluate(model, *data["train"])[1] == 1.0                       # also in an eval pass
    assert ((table[["train_acc", "val_acc", "test_acc"]] >= 0) & (table[["train_acc", "val_acc", "test_acc"]] <= 1)).all().all()
    assert (table["lr"] == 0.5).all() and (table["time_s"] > 0).all()


def test_one_full_batch_sgd_step_equals_minus_lr_times_the_autograd_gradient():
    torch.manual_seed(0)
    x, y = _separable(64)
    model = nn.Linear(2, 3)
    reference = nn.Linear(2, 3)
    reference.load_state_dict(model.state_dict())
    F.cross_entropy(reference(x), y).backward()
    history = fit(model, {"train": (x, y)}, epochs=1, lr=0.3, batch_size=64, progress=False, device=CPU)
    assert torch.allclose(model.weight, reference.weight - 0.3 * reference.weight.grad, atol=1e-6)
    assert torch.allclose(model.bias, reference.bias - 0.3 * reference.bias.grad, atol=1e-6)
    # one batch: the logged training loss is the loss before the step; no val/test split -> NaN columns
    assert history.table["train_loss"].iloc[0] == pytest.approx(F.cross_entropy(reference(x), y).item(), rel=1e-6)
    assert math.isnan(history.table["val_acc"].iloc[0]) and history.best_epoch == 1


def test_zero_learning_rate_leaves_weights_unchanged():
    model = _mlp(dropout=0.3)
    before = _params(model)
    fit(model, _splits(), epochs=2, lr=0.0, momentum=0.9, batch_size=32, progress=False, device=CPU)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_extra_loss_term_enters_the_gradient_and_is_logged():
    torch.manual_seed(0)
    x, y = _separable(32)
    lam, lr = 0.7, 0.1
    model = nn.Linear(2, 2, bias=False)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    reference = nn.Linear(2, 2, bias=False)
    reference.load_state_dict(start)
    (F.cross_entropy(reference(x), y) + lam * reference.weight.pow(2).sum()).backward()
    seen = []

    def l2(ctx):
        seen.append(ctx)
        return lam * ctx.model.weight.pow(2).sum()

    history = fit(model, {"train": (x, y)}, epochs=1, lr=lr, batch_size=32, progress=False, device=CPU,
                  extra_losses={"l2": l2})
    assert torch.allclose(model.weight, reference.weight - lr * reference.weight.grad, atol=1e-6)
    assert history.table["loss_l2"].iloc[0] == pytest.approx(lam * start["weight"].pow(2).sum().item(), rel=1e-6)
    # the same step as SGD's weight decay 2 * lambda (d/dW lambda ||W||^2 = 2 lambda W)
    decayed = nn.Linear(2, 2, bias=False)
    decayed.load_state_dict(start)
    fit(decayed, {"train": (x, y)}, epochs=1, lr=lr, weight_decay=2 * lam, batch_size=32, progress=False, device=CPU)
    assert torch.allclose(model.weight, decayed.weight, atol=1e-6)
    ctx = seen[0]
    assert isinstance(ctx, StepContext) and ctx.epoch == 1 and ctx.step == 0 and ctx.mask is None
    assert ctx.logits.shape == (32, 2) and torch.equal(ctx.targets.sort().values, y.sort().values)


def test_extra_term_mean_is_over_steps_and_metrics_are_columns():
    x, y = _separable(40)
    calls = []
    history = fit(nn.Linear(2, 2), {"train": (x, y), "test": (x, y)}, epochs=2, batch_size=10, progress=False,
                  device=CPU, extra_losses={"step": lambda ctx: torch.tensor(float(ctx.step))},
                  metrics={"train_mode_seen": lambda m, d: calls.append(d) or float(m.training)})
    assert list(history.table["loss_step"]) == [1.5, 1.5]  # mean of 0, 1, 2, 3 over the 4 steps
    assert list(history.table["train_mode_seen"]) == [0.0, 0.0] and calls[0]["train"][0] is x


# ------------------------------------------------------------------------------------ best epoch
def test_best_epoch_and_errors_from_a_given_history():
    rows = [{"epoch": e, "val_acc": v, "val_loss": l, "test_acc": t} for e, v, l, t in
            [(1, 0.80, 0.9, 0.79), (2, 0.90, 0.5, 0.88), (3, 0.90, 0.4, 0.91), (4, 0.85, 0.6, 0.93)]]
    history = History(rows)
    assert history.best_epoch == 2  # ties go to the earliest epoch
    assert history.best["test_acc"] == 0.88
    assert history.test_error_at_best == pytest.approx(12.0)
    assert history.min_test_error == pytest.approx(7.0)
    assert history.epoch_of_min_test_error == 4
    assert History(rows, select_by="val_loss").best_epoch == 3
    no_val = History([{"epoch": 1, "val_acc": float("nan"), "test_acc": 0.5}, {"epoch": 2, "test_acc": 0.6}])
    assert no_val.best_epoch == 2  # no validation split: the final epoch
    with pytest.raises(ValueError, match="select_by"):
        History(rows, select_by="test_acc")
    with pytest.raises(ValueError, match="no test"):
        History([{"epoch": 1, "val_acc": 0.5}]).test_error_at_best


def test_best_epoch_of_a_run_whose_validation_accuracy_peaks_early(tmp_path):
    """The model turns from the rule w0 = (-0.5, 1) towards the training rule w = (1, 0.5); the validation
    labels follow the rule (1, -0.5) that lies in between, so validation accuracy rises, then falls while
    test accuracy (labelled by the training rule) keeps rising."""
    x, y = _separable(300, seed=1)
    y_val = (x[200:250] @ torch.tensor([1.0, -0.5]) > 0).long()
    data = {"train": (x[:200], y[:200]), "val": (x[200:250], y_val), "test": (x[250:], y[250:])}

    def run(epochs):
        model = nn.Linear(2, 2)
        with torch.no_grad():
            model.weight.copy_(torch.tensor([[-0.5, 1.0], [0.5, -1.0]]))
            model.bias.zero_()
        return model, fit(model, data, epochs=epochs, lr=0.1, batch_size=50, seed=1, keep_best=True,
                          progress=False, device=CPU)

    model, history = run(8)
    table = history.table
    val, test = table["val_acc"].to_numpy(), table["test_acc"].to_numpy()
    best = history.best_epoch
    assert 1 < best < 8 and val[best - 1] == val.max() and val[-1] < val.max()  # an early, interior peak
    assert (val[: best - 1] < val.max()).all()                                   # the first maximum
    assert history.best["epoch"] == best and history.best["val_acc"] == val.max()
    assert history.test_error_at_best == pytest.approx(100 * (1 - test[best - 1]))
    assert history.min_test_error == pytest.approx(100 * (1 - test.max()))
    assert history.min_test_error < history.test_error_at_best
    assert history.epoch_of_min_test_error == 1 + int(np.argmax(test)) and history.epoch_of_min_test_error > best
    # the kept best state is the weights after epoch `best` of the same run
    after_best, _ = run(best)
    assert all(torch.equal(history.best_state[k], v) for k, v in after_best.state_dict().items())
    restored = history.restore_best(nn.Linear(2, 2))
    assert torch.equal(restored.weight, after_best.weight)
    # the table survives a CSV round trip, and the history prints as a compact table
    history.to_csv(tmp_path / "h.csv")
    back = History.from_csv(tmp_path / "h.csv")
    assert back.best_epoch == best and np.allclose(back.table["val_acc"], val)
    assert f"best epoch {best}" in repr(history) and "train_loss" in repr(history)
    with pytest.raises(RuntimeError, match="keep_best"):
        History(history.rows).restore_best(model)


def test_plot_has_labelled_axes():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.1 / e, "train_acc": 0.5, "val_acc": 0.5 + e / 10}
            for e in (1, 2, 3)]
    fig = History(rows).plot()
    axes = fig.get_axes()
    assert [a.get_xlabel() for a in axes] == ["epoch", "epoch"]
    assert axes[0].get_ylabel() == "loss" and axes[1].get_ylabel() == "accuracy"
    assert [line.get_label() for line in axes[0].get_lines()][:2] == ["train", "val"]
    plt.close(fig)


# ------------------------------------------------------------------------------------ resume
class _Crash(Exception):
    pass


def _augment(x, generator):
    return x + 0.05 * torch.randn(x.shape, generator=generator).to(x.device)


def _resumable_run(checkpoint=None, *, epochs=4, lr=0.1, crash_after=None, seen=None, **extra):
    torch.manual_seed(123)
    model = _mlp(dropout=0.2)

    def crash(history, model):
        if seen is not None:
            seen.append(len(history))
        if crash_after is not None and len(history) > crash_after:
            raise _Crash  # dies before epoch crash_after + 1 is checkpointed

    history = fit(model, _splits(), epochs=epochs, lr=lr, momentum=0.9, batch_size=16, seed=5, checkpoint=checkpoint,
                  callbacks=[crash], progress=False, device=CPU, **extra)
    return model, history


LOGGED = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "lr"]


def _same_run(a, b):
    (model_a, history_a), (model_b, history_b) = a, b
    assert all(torch.equal(p, q) for p, q in zip(model_a.parameters(), model_b.parameters()))
    assert history_a.table[LOGGED].equals(history_b.table[LOGGED])


def test_extended_run_equals_an_uninterrupted_one(tmp_path):
    straight = _resumable_run(epochs=4)
    ckpt = tmp_path / "run.pt"
    _resumable_run(ckpt, epochs=2)
    _same_run(straight, _resumable_run(ckpt, epochs=4))
    # a finished run returns at once, without training, with the final weights
    seen = []
    _same_run(straight, _resumable_run(ckpt, epochs=4, seen=seen))
    assert seen == []
    # other settings refuse the checkpoint and say which setting differs
    with pytest.raises(ValueError, match=r"lr.*resume=False"):
        _resumable_run(ckpt, epochs=4, lr=0.2)
    # resume=False starts afresh (and overwrites the file)
    seen = []
    _resumable_run(ckpt, epochs=1, resume=False, seen=seen)
    assert seen == [1] and len(torch.load(ckpt, weights_only=True)["history"]) == 1


def test_crashed_run_resumes_exactly_with_scheduler_augment_dropout_and_best_state(tmp_path):
    extra = dict(scheduler="cosine", augment=_augment, keep_best=True)
    straight = _resumable_run(**extra)
    ckpt = tmp_path / "sub" / "run.pt"
    with pytest.raises(_Crash):
        _resumable_run(ckpt, crash_after=2, **extra)
    assert torch.load(ckpt, weights_only=True)["epoch"] == 2 and not list(ckpt.parent.glob("*.tmp"))
    resumed = _resumable_run(ckpt, **extra)
    _same_run(straight, resumed)
    assert straight[1].best_epoch == resumed[1].best_epoch
    assert all(torch.equal(straight[1].best_state[k], v) for k, v in resumed[1].best_state.items())
    lrs = resumed[1].table["lr"].to_numpy()  # cosine annealing over 4 epochs
    assert np.allclose(lrs, [0.1 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)])
    with pytest.raises(ValueError, match="cosine"):  # the cosine schedule depends on the number of epochs
        _resumable_run(ckpt, epochs=6, **extra)


def test_callback_can_stop_training(tmp_path):
    history = fit(nn.Linear(2, 2), _splits(), epochs=10, progress=False, device=CPU, checkpoint=tmp_path / "c.pt",
                  callbacks=[lambda h, m: h.rows[-1].update(flag=7) or len(h) == 3])
    assert len(history) == 3 and list(history.table["flag"]) == [7, 7, 7]
    again = fit(nn.Linear(2, 2), _splits(), epochs=10, progress=False, device=CPU, checkpoint=tmp_path / "c.pt",
                callbacks=[lambda h, m: h.rows[-1].update(flag=7) or len(h) == 3])
    assert len(again) == 3


# ------------------------------------------------------------------------------------ graphs
def test_graph_training_is_full_batch_over_the_train_mask():
    from torch_geometric.data import Data

    x, y = _separable(120, seed=2)
    train = torch.zeros(120, dtype=torch.bool)
    train[:60] = True
    y_seen = torch.where(train, y, 1 - y)  # every node outside the training mask has the wrong label
    edge_index = torch.stack([torch.arange(119), torch.arange(1, 120)])
    data = Data(x=x, y=y_seen, edge_index=edge_index, train_mask=train, val_mask=~train, test_mask=~train)

    class NodeLinear(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2)

        def forward(self, x, edge_index):
            assert edge_index.shape == (2, 119)
            return self.lin(x)

    # one epoch = one step whose gradient is that of the cross-entropy over the training nodes only
    torch.manual_seed(0)
    model, reference = NodeLinear(), NodeLinear()
    reference.load_state_dict(model.state_dict())
    F.cross_entropy(reference.lin(x[train]), y[train]).backward()
    masks = []
    fit(model, data, epochs=1, lr=0.5, progress=False, device=CPU,
        extra_losses={"zero": lambda ctx: masks.append(ctx.mask) or ctx.logits.sum() * 0})
    assert torch.allclose(model.lin.weight, reference.lin.weight - 0.5 * reference.lin.weight.grad, atol=1e-6)
    assert len(masks) == 1 and torch.equal(masks[0], train)
    # half the labels contradict the other half: only a loss restricted to train nodes can fit them all
    history = fit(model, data, epochs=60, lr=1.0, progress=False, device=CPU)
    assert history.table["train_acc"].iloc[-1] == 1.0
    assert history.table["val_acc"].iloc[-1] == 0.0
    assert torch.equal(data.y, y_seen) and data.x.device.type == "cpu"  # the data object is untouched


# ------------------------------------------------------------------------------------ data forms, options
def test_dataset_object_with_empty_validation_split_and_numpy_arrays():
    x, y = _separable(60)
    empty = torch.empty(0, 2)
    splits = SimpleNamespace(x_train=x.numpy(), y_train=y.numpy(), x_val=empty, y_val=empty[:, 0].long(),
                             x_test=x[:10], y_test=y[:10])
    history = fit(nn.Linear(2, 2), splits, epochs=2, batch_size=25, progress=False, device=CPU)
    assert history.table["val_acc"].isna().all() and history.table["test_acc"].notna().all()
    assert history.best_epoch == 2


@pytest.mark.parametrize("optimizer", ["adam", "AdamW", lambda params: torch.optim.RMSprop(params, lr=0.01)])
def test_other_optimizers_train(optimizer):
    torch.manual_seed(0)
    history = fit(nn.Linear(2, 2), _splits(), epochs=3, lr=0.05, optimizer=optimizer, batch_size=50,
                  progress=False, device=CPU)
    assert history.table["train_loss"].iloc[-1] < history.table["train_loss"].iloc[0]


def test_shuffling_depends_on_seed_and_epoch_and_augment_sees_training_batches_only():
    x = torch.arange(12, dtype=torch.float32).unsqueeze(1)
    y = torch.zeros(12, dtype=torch.long)
    orders = []

    def record(xb, generator):
        assert isinstance(generator, torch.Generator)
        orders.append(xb[:, 0].long().tolist())
        return xb

    def run(seed, metrics=None):
        orders.clear()
        fit(nn.Linear(1, 2), {"train": (x, y), "val": (x, y)}, epochs=2, lr=0.0, batch_size=12, seed=seed,
            augment=record, metrics=metrics, progress=False, device=CPU)
        return [list(o) for o in orders]

    first = run(0)
    assert len(first) == 2 and all(sorted(o) == list(range(12)) for o in first)  # one batch per epoch, a permutation
    assert first[0] != first[1] and run(0) == first and run(1) != first
    # the order of epoch 2 does not depend on how many random numbers were drawn before it
    assert run(0, metrics={"draw": lambda m, d: float(torch.rand(7).sum() + np.random.rand())}) == first


def test_predict_and_evaluate_match_a_hand_computation_and_restore_the_mode():
    torch.manual_seed(0)
    x, y = _separable(50)
    model = _mlp(dropout=0.5).train()
    with torch.no_grad():
        logits = model.eval()(x)
    model.train()
    out = predict(model, x, batch_size=7)
    assert model.training and not out.requires_grad and torch.allclose(out, logits, atol=1e-6)
    loss, acc = evaluate(model, x, y, batch_size=7)
    assert model.training
    assert loss == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    assert acc == pytest.approx((logits.argmax(1) == y).float().mean().item())


def test_end_of_epoch_evaluation_gives_the_numbers_of_evaluate_and_evaluate_graph():
    from torch_geometric.data import Data

    from neuronlab.train import _evaluate_held_out, _FitData, evaluate_graph

    torch.manual_seed(0)
    model = _mlp(dropout=0.5).train()  # dropout would change the numbers if the pass were not in eval mode
    data = _splits()
    row = _evaluate_held_out(model, _FitData.read(data, None), F.cross_entropy, eval_batch_size=7)
    assert list(row) == ["val_loss", "val_acc", "test_loss", "test_acc"] and model.training
    for split in ("val", "test"):
        assert (row[f"{split}_loss"], row[f"{split}_acc"]) == evaluate(model, *data[split], batch_size=7)
    no_val = _evaluate_held_out(model, _FitData.read({"train": data["train"], "test": data["test"]}, None),
                                F.cross_entropy, eval_batch_size=7)
    assert math.isnan(no_val["val_loss"]) and math.isnan(no_val["val_acc"]) and no_val["test_acc"] == row["test_acc"]

    class NodeMLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.mlp = _mlp(dropout=0.5)

        def forward(self, x, edge_index):
            return self.mlp(x)

    x, y = _separable(40, seed=3)
    val = torch.arange(40) % 2 == 0
    graph = Data(x=x, y=y, edge_index=torch.stack([torch.arange(39), torch.arange(1, 40)]), train_mask=~val,
                 val_mask=val)
    node_model = NodeMLP().train()
    row = _evaluate_held_out(node_model, _FitData.read(graph, None), F.cross_entropy, eval_batch_size=7)
    assert (row["val_loss"], row["val_acc"]) == evaluate_graph(node_model, graph, val) and node_model.training
    assert math.isnan(row["test_loss"]) and math.isnan(row["test_acc"])  # no test mask


def test_epoch_batches_are_a_shuffle_drawn_from_the_epoch_generator_only():
    from neuronlab.train import _epoch_generator, _FitData

    x = torch.arange(10, dtype=torch.float32).unsqueeze(1)
    fit_data = _FitData.read({"train": (x, torch.arange(10) % 2)}, None)
    batches = list(fit_data.batches(_epoch_generator(0, 1), 4, torch.device(CPU)))
    assert [len(b[0]) for b in batches] == [4, 4, 2] and all(b[2] is None for b in batches)  # last one smaller
    seen = torch.cat([b[0][:, 0] for b in batches]).long()
    assert sorted(seen.tolist()) == list(range(10)) and torch.equal(torch.cat([b[1] for b in batches]), seen % 2)
    torch.manual_seed(1)  # the global RNG plays no part: the same (seed, epoch) gives the same order
    again = torch.cat([b[0][:, 0] for b in fit_data.batches(_epoch_generator(0, 1), 4, torch.device(CPU))]).long()
    assert torch.equal(again, seen)


def test_progress_false_prints_nothing(capsys):
    fit(nn.Linear(2, 2), _splits(), epochs=2, progress=False, device=CPU)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


# ------------------------------------------------------------------------------------ errors
def test_bad_input_errors():
    x, y = _separable(20)
    with pytest.raises(ValueError, match=r"labels 5, 6 are out of range: the model has 2 outputs"):
        fit(nn.Linear(2, 2), {"train": (x, y + 5)}, epochs=1, progress=False, device=CPU)
    with pytest.raises(ValueError, match="NaN"):
        fit(nn.Linear(2, 2), {"train": (torch.where(x > 1, math.nan, x), y)}, epochs=1, progress=False)
    with pytest.raises(ValueError, match="20 inputs but 10 labels"):
        fit(nn.Linear(2, 2), {"train": (x, y[:10])}, epochs=1, progress=False)
    with pytest.raises(ValueError, match="epochs"):
        fit(nn.Linear(2, 2), {"train": (x, y)}, epochs=0, progress=False)
    with pytest.raises(ValueError, match=r"Unknown optimizer 'lbfgs'.*'sgd', 'adam', 'adamw'"):
        fit(nn.Linear(2, 2), {"train": (x, y)}, epochs=1, optimizer="lbfgs", progress=False)
    with pytest.raises(ValueError, match="Unknown scheduler"):
        fit(nn.Linear(2, 2), {"train": (x, y)}, epochs=1, scheduler="step", progress=False)
    with pytest.raises(TypeError, match="cannot read data.*x_train.*dict.*Data"):
        fit(nn.Linear(2, 2), [x, y], epochs=1, progress=False)
    with pytest.raises(TypeError, match="unknown keys"):
        fit(nn.Linear(2, 2), {"train": (x, y), "valid": (x, y)}, epochs=1, progress=False)
    with pytest.raises(ValueError, match="out of range"):
        evaluate(nn.Linear(2, 2), x, y + 3)


def test_non_finite_loss_names_the_epoch_step_and_term():
    x, y = _separable(20)
    calls = []

    def explode(ctx):
        calls.append(ctx.step)
        return ctx.logits.sum() * (math.inf if ctx.epoch == 2 and ctx.step == 1 else 0.0)

    model = nn.Linear(2, 2)
    with pytest.raises(FloatingPointError, match=r"epoch 2, step 1: extra loss term 'explode'.*smaller learning rate"
                                                  r".*'explode'"):
        fit(model, {"train": (x, y)}, epochs=3, batch_size=5, progress=False, device=CPU,
            extra_losses={"ok": lambda ctx: ctx.logits.sum() * 0, "explode": explode})
    assert torch.isfinite(model.weight).all()  # the bad step was not taken
    with pytest.raises(FloatingPointError, match="the data loss"):
        fit(nn.Linear(2, 2), {"train": (x, y)}, epochs=1, progress=False, device=CPU,
            loss_fn=lambda logits, target: F.cross_entropy(logits, target) / 0.0)
