"""NSR: the loss against the intra-class variance formula and the official FIFO, DDP equivalence, statistics."""

import os
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from neuronlab import models, train
from neuronlab.nsr import (IntraClassVariance, NeuronSteadiness, consistency_of_representations,
                           pick_layer_by_variance, variance_by_correctness)
from neuronlab.probe import LayerNotFoundError


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def intra_class_variance(x, y, weights="frequency"):
    """Independent reference: a loop over classes with torch.var."""
    classes = torch.unique(y)
    total = torch.zeros(x.shape[1], dtype=x.dtype)
    for c in classes:
        xc = x[y == c]
        alpha = len(xc) / len(x) if weights == "frequency" else 1 / len(classes)
        total += alpha * xc.var(dim=0, unbiased=False)
    return total


def run_nsr(model, x, y, **kwargs):
    with NeuronSteadiness(model, kwargs.pop("layer", "fc2"), num_classes=3, **kwargs) as nsr:
        model(x)
        return nsr.loss(y), nsr


@pytest.mark.parametrize("weights", ["frequency", "uniform"])
def test_loss_equals_the_intra_class_variance_formula(weights):
    model = models.MLP([5, 8, 4])
    x = torch.randn(30, 5, generator=gen())
    y = torch.tensor([0] * 12 + [1] * 10 + [2] * 8)
    loss, _ = run_nsr(model, x, y, layer="fc1", memory=1, neuron_reduction="sum", class_weights=weights)
    expected = intra_class_variance(model.fc1(x).detach(), y, weights).sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_lambda_per_neuron_and_mean_reduction():
    model = models.MLP([5, 8, 4])
    x, y = torch.randn(20, 5, generator=gen(1)), torch.arange(3).repeat(7)[:20]
    lam = torch.linspace(0.5, 2.0, 8)
    loss, _ = run_nsr(model, x, y, layer="fc1", memory=1, lam=lam, neuron_reduction="mean")
    expected = (lam * intra_class_variance(model.fc1(x).detach(), y)).sum() / 8
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_running_means_equal_the_official_fifo_of_raw_activations():
    torch.manual_seed(0)
    model = models.MLP([6, 7, 3])
    lam, memory = 0.7, 3
    fifo_x, fifo_y = [], []
    with NeuronSteadiness(model, "fc2", num_classes=3, lam=lam, memory=memory) as nsr:
        for step in range(6):
            x = torch.randn(10, 6, generator=gen(step))
            y = torch.randint(0, 3, (10,), generator=gen(100 + step))
            out = model(x)
            ours = nsr.loss(y)
            # the official code: keep the last m batches of detached outputs, class means by scatter-mean
            fifo_x, fifo_y = ([out.detach()] + fifo_x)[:memory], ([y] + fifo_y)[:memory]
            all_x, all_y = torch.cat(fifo_x), torch.cat(fifo_y)
            mu = torch.stack([all_x[all_y == c].mean(0) if (all_y == c).any() else torch.zeros(3) for c in range(3)])
            official = lam * ((out - mu[y]) ** 2).mean()
            assert ours.item() == pytest.approx(official.item(), rel=1e-5)
            torch.testing.assert_close(torch.autograd.grad(ours, out, retain_graph=True)[0],
                                       torch.autograd.grad(official, out)[0])


def test_absent_classes_and_first_sight():
    model = models.MLP([4, 5, 3])
    x = torch.randn(8, 4, generator=gen(2))
    y = torch.tensor([0, 0, 0, 1, 1, 1, 1, 0])  # class 2 absent
    loss, nsr = run_nsr(model, x, y, layer="fc1", memory=2, neuron_reduction="sum")
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(intra_class_variance(model.fc1(x).detach(), y).sum().item(), rel=1e-5)
    assert nsr.last_value == pytest.approx(loss.item())


def test_conv_positions_and_mean_modes():
    conv = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1))
    x = torch.randn(6, 2, 5, 5, generator=gen(3))
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    out = conv(x).detach()
    with NeuronSteadiness(conv, "0", num_classes=3, memory=1, neuron_reduction="sum") as nsr:
        conv(x)
        positions = nsr.loss(y)
    flat = out.flatten(2).transpose(1, 2).reshape(-1, 3)
    assert positions.item() == pytest.approx(intra_class_variance(flat, y.repeat_interleave(25)).sum().item(), rel=1e-5)
    with NeuronSteadiness(conv, "0", num_classes=3, memory=1, neuron_reduction="sum", conv="mean") as nsr:
        conv(x)
        pooled = nsr.loss(y)
    assert pooled.item() == pytest.approx(intra_class_variance(out.mean((2, 3)), y).sum().item(), rel=1e-5)


def test_graph_mask_uses_training_nodes_only():
    model = models.MLP([4, 6, 3])
    x = torch.randn(12, 4, generator=gen(4))
    y = torch.arange(3).repeat(4)
    mask = torch.tensor([True] * 6 + [False] * 6)
    with NeuronSteadiness(model, "fc1", num_classes=3, memory=1, neuron_reduction="sum") as nsr:
        model(x)
        loss = nsr.loss(y, mask=mask)
    expected = intra_class_variance(model.fc1(x).detach()[mask], y[mask]).sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_fit_integration_and_hooks_removed():
    g = gen(5)
    data = {"train": (torch.randn(60, 6, generator=g), torch.arange(3).repeat(20)),
            "val": (torch.randn(30, 6, generator=g), torch.arange(3).repeat(10))}
    model = models.MLP([6, 8, 3])
    with NeuronSteadiness(model, "fc2", num_classes=3, lam=0.5) as nsr:
        history = train.fit(model, data, epochs=2, batch_size=20, progress=False, extra_losses={"nsr": nsr})
    assert "loss_nsr" in history.table.columns and (history.table["loss_nsr"] > 0).all()
    assert all(not m._forward_hooks for m in model.modules())
    with pytest.raises(RuntimeError, match="with-block"):
        nsr.loss(torch.zeros(3, dtype=torch.long))


def test_auto_layer_picks_the_largest_intra_class_variance():
    model = models.MLP([5, 8, 6, 3])
    with torch.no_grad():
        model.fc2.weight.mul_(20.0)
    x, y = torch.randn(90, 5, generator=gen(6)), torch.arange(3).repeat(30)
    nsr = NeuronSteadiness(model, "auto", num_classes=3, warmup=(x, y))
    assert list(nsr.layers) == ["fc2"]
    assert pick_layer_by_variance(model, x, y, 3, ["fc1", "fc3"]) in ("fc1", "fc3")


def test_bad_input():
    model = models.MLP([4, 5, 3])
    x = torch.randn(6, 4)
    with pytest.raises(LayerNotFoundError, match="fc9"):
        NeuronSteadiness(model, "fc9", num_classes=3)
    with pytest.raises(ValueError, match="warmup"):
        NeuronSteadiness(model, "auto", num_classes=3)
    with pytest.raises(ValueError, match="class_weights"):
        NeuronSteadiness(model, "fc1", num_classes=3, class_weights=torch.ones(2))
    with NeuronSteadiness(model, "fc1", num_classes=3) as nsr:
        model(x)
        with pytest.raises(ValueError, match=r"0\.\.2"):
            nsr.loss(torch.tensor([0, 1, 2, 3, 0, 1]))
        with pytest.raises(ValueError, match="targets"):
            nsr.loss(torch.tensor([0, 1, 2]))
        model(torch.full((6, 4), float("nan")))
        with pytest.raises(ValueError, match="NaN"):
            nsr.loss(torch.tensor([0, 1, 2, 0, 1, 2]))


# -------------------------------------------------------------------------------------- distributed
def _ddp_worker(rank, world, init_file, x, y, steps, result_file):
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = models.MLP([5, 6, 3])
        ddp = nn.parallel.DistributedDataParallel(model)
        optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1)
        with NeuronSteadiness(model, "fc1", num_classes=3, lam=2.0, memory=2) as nsr:
            for step in range(steps):
                xs, ys = x[step].chunk(world)[rank], y[step].chunk(world)[rank]
                optimizer.zero_grad()
                logits = ddp(xs)
                (F.cross_entropy(logits, ys) + nsr.loss(ys)).backward()  # DDP averages the gradients
                optimizer.step()
        if rank == 0:
            torch.save({"weight": model.fc1.weight.detach(), "value": nsr.last_value}, result_file)
    finally:
        torch.distributed.destroy_process_group()


def test_distributed_matches_single_process(tmp_path):
    import torch.multiprocessing as mp

    steps = 3
    x = torch.randn(steps, 16, 5, generator=gen(7))
    y = torch.randint(0, 3, (steps, 16), generator=gen(8))
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), x, y, steps, str(tmp_path / "out.pt")), nprocs=2)
    result = torch.load(tmp_path / "out.pt")

    torch.manual_seed(0)
    model = models.MLP([5, 6, 3])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with NeuronSteadiness(model, "fc1", num_classes=3, lam=2.0, memory=2, distributed=False) as nsr:
        for step in range(steps):
            optimizer.zero_grad()
            logits = model(x[step])
            (F.cross_entropy(logits, y[step]) + nsr.loss(y[step])).backward()
            optimizer.step()
    torch.testing.assert_close(result["weight"], model.fc1.weight.detach(), atol=1e-6, rtol=1e-5)
    assert result["value"] == pytest.approx(nsr.last_value, rel=1e-5)


# --------------------------------------------------------------------------------------- statistics
def test_intra_class_variance_streaming_equals_one_shot():
    x = torch.randn(200, 7, generator=gen(9)) * 3 + 100  # a large offset: the shift keeps precision
    y = torch.randint(0, 4, (200,), generator=gen(10))
    stat = IntraClassVariance(4)
    for chunk in range(0, 200, 45):
        stat.update(x[chunk:chunk + 45], y[chunk:chunk + 45])
    out = stat.compute()
    for c in range(4):
        torch.testing.assert_close(out["per_class"][c], x[y == c].double().var(0, unbiased=False), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(out["per_neuron"], intra_class_variance(x.double(), y))
    stat.reset()
    with pytest.raises(RuntimeError):
        stat.compute()


def test_variance_by_correctness_by_hand():
    x = torch.tensor([[0.0], [2.0], [10.0], [4.0], [6.0]])
    y = torch.tensor([0, 0, 0, 1, 1])
    pred = torch.tensor([0, 0, 1, 1, 0])
    out = variance_by_correctness(x, y, pred, 2)
    # class 0 mean 4: correct distances 16, 4 -> 10; wrong 36. Class 1 mean 5: correct 1, wrong 1
    torch.testing.assert_close(out["correct"], torch.tensor([10.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(out["wrong"], torch.tensor([36.0, 1.0], dtype=torch.float64))


def test_consistency_equals_davies_bouldin():
    from sklearn.metrics import davies_bouldin_score

    x = torch.randn(150, 6, generator=gen(11)) + torch.arange(3).repeat_interleave(50)[:, None] * 2.0
    y = torch.arange(3).repeat_interleave(50)
    assert consistency_of_representations(x, y) == pytest.approx(davies_bouldin_score(x.numpy(), y.numpy()), rel=1e-6)
    with pytest.raises(ValueError, match="two classes"):
        consistency_of_representations(x, torch.zeros(150, dtype=torch.long))


def test_reproduction_runs_for_each_family_and_method(tiny_mnist_like):
    from neuronlab.data import make_csbm
    from neuronlab.nsr import OFFICIAL_LAMBDAS, PAPER_TABLE, train_nsr_run

    Tiny = tiny_mnist_like
    vanilla = train_nsr_run(Tiny, arch="MLP-4", method="vanilla", seed=0, epochs=2)
    nsr = train_nsr_run(Tiny, arch="MLP-4", method="nsr", seed=0, epochs=2)
    assert vanilla["layer"] == nsr["layer"] == "fc3" and nsr["lam"] == OFFICIAL_LAMBDAS["MLP-4"]
    assert nsr["intra_class_variance"] < vanilla["intra_class_variance"]  # the regularized layer steadies
    assert train_nsr_run(Tiny, arch="MLP-3", method="nsr", seed=0, epochs=1, layer="auto")["layer"] in ("fc1", "fc2")
    for method in ["l1", "l2", "jacobian", "orthogonality"]:
        out = train_nsr_run(Tiny, arch="MLP-3", method=method, seed=0, epochs=1, lam=0.01)
        assert 0 <= out["test_error"] <= 100
    assert set(PAPER_TABLE["MLP-4"]) == {"vanilla", "nsr"}
    with pytest.raises(ValueError, match="method"):
        train_nsr_run(Tiny, arch="MLP-4", method="dropout", seed=0, epochs=1)
    with pytest.raises(ValueError, match="architecture"):
        train_nsr_run(Tiny, arch="Transformer", method="nsr", seed=0, epochs=1)

    images = SimpleNamespace(**{k: (v.reshape(-1, 1, 28, 28) if k.startswith("x_") else v)
                                for k, v in vars(Tiny).items()})
    out = train_nsr_run(images, arch="SmallCNN", method="nsr", seed=0, epochs=1)
    assert out["layer"] == "fc2"
    graph = make_csbm(num_nodes=120, num_classes=3, num_features=8, seed=0)
    out = train_nsr_run(graph, arch="GraphSAGE-2", method="nsr", seed=0, epochs=3, lam=0.5)
    assert out["layer"] == "conv2" and len(out["test_error_curve"]) == 3


def test_mlp_grid_and_comparison_table():
    import pandas as pd

    from neuronlab.nsr import comparison_table, mlp_grid

    grid = mlp_grid("quick", archs=["MLP-4"], seeds=[0, 1], epochs=3)
    assert len(grid) == 6 and {g["method"] for g in grid} == {"vanilla", "nsr"}
    rows = [dict(arch="MLP-4", seed=s, method=m, layer=l, test_error=e)
            for s, m, l, e in [(0, "vanilla", "logits", 8.0), (1, "vanilla", "logits", 10.0),
                               (0, "nsr", "logits", 6.0), (1, "nsr", "logits", 6.0)]]
    row = comparison_table(pd.DataFrame(rows)).iloc[0]
    assert row["vanilla (paper)"] == "2.29 ± 0.07" and row["NSR (paper)"] == "1.64 ± 0.04"
    assert row["gain (paper)"] == "28.4 %"  # the paper prints 28.38 %
    assert row["vanilla (ours)"] == "9.00 ± 1.41" and row["NSR, logits (ours)"] == "6.00 ± 0.00"
    assert row["gain, logits (ours)"] == "33.3 %"


def test_fixed_class_weights_equal_the_weighted_variances():
    model = models.MLP([5, 8, 4])
    x = torch.randn(30, 5, generator=gen(2))
    y = torch.tensor([0] * 12 + [1] * 10 + [2] * 8)
    alpha = torch.tensor([0.5, 0.3, 0.2])
    loss, _ = run_nsr(model, x, y, layer="fc1", memory=1, neuron_reduction="sum", class_weights=alpha)
    h = model.fc1(x).detach()
    expected = sum(alpha[c] * h[y == c].var(0, unbiased=False) for c in range(3)).sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_experiment_grids_share_runs_and_cover_the_paper():
    from neuronlab.nsr import EXPERIMENTS, LAMBDA_CHOICES, MLP_ARCHS, experiment_grid
    from neuronlab.runs import config_key

    grids = {name: experiment_grid(name, "quick") for name in EXPERIMENTS}
    for name, grid in grids.items():
        assert len({config_key(c) for c in grid}) == len(grid), f"{name} repeats a configuration"
    mlp = grids["mlp"]
    assert len(mlp) == len(MLP_ARCHS) * 3 * 3 and {c["layer"] for c in mlp if c["method"] == "nsr"} == {"logits", "auto"}
    # vanilla and NSR of the baselines table are the very runs of the MLP table (one store: trained once)
    shared = [c for c in grids["baselines"] if c["method"] in ("vanilla", "nsr")]
    assert len(shared) == 6 and {config_key(c) for c in shared} <= {config_key(c) for c in mlp}
    for method in ("l1", "l2", "jacobian", "orthogonality"):
        lams = sorted({c["lam"] for c in grids["baselines"] if c["method"] == method})
        assert lams == sorted(LAMBDA_CHOICES[method])
    assert {c["layer"] for c in grids["layers"]} == {"fc1", "fc2", "fc3", "fc2+fc3"}
    assert {c["arch"] for c in grids["gnn"]} >= {"GCN-2", "GCN-4", "GraphSAGE-2", "GraphSAGE-4"}
    full_cnn = experiment_grid("cnn", "full")
    assert {(c["dataset"], c["lr"], c["batch_size"]) for c in full_cnn} == {("cifar10", 0.1, 128)}
    assert {c["arch"] for c in full_cnn} == {"ResNet-18", "VGG-19"}
    with pytest.raises(ValueError, match="experiment"):
        experiment_grid("resnet", "quick")


def test_select_lambda_looks_at_validation_not_test():
    import pandas as pd

    from neuronlab.nsr import select_lambda, summary_table

    rows = []
    for seed in (0, 1):
        rows.append(dict(arch="MLP-4", method="l1", layer="logits", seed=seed, lam=0.1, val_error=5.0 + seed,
                         test_error=9.0 + seed))
        rows.append(dict(arch="MLP-4", method="l1", layer="logits", seed=seed, lam=1.0, val_error=7.0,
                         test_error=4.0))  # better on test, worse on validation: must not be chosen
        rows.append(dict(arch="MLP-4", method="vanilla", layer="logits", seed=seed, lam=0.0, val_error=8.0,
                         test_error=8.0 + 2 * seed))
    chosen = select_lambda(pd.DataFrame(rows))
    assert sorted(chosen.loc[chosen.method == "l1", "lam"]) == [0.1, 0.1]
    summary = summary_table(chosen, ["method"], paper={"l1": (2.27, 0.05)}, paper_key=lambda r: r["method"])
    l1 = summary.set_index("method").loc["l1"]
    assert l1["ours"] == "9.50 ± 0.71" and l1["paper"] == "2.27 ± 0.05" and l1["lambda"] == "0.1" and l1["seeds"] == 2
    assert summary.set_index("method").loc["vanilla", "paper"] == "–"


def test_several_layers_history_metrics_and_resumed_experiment(tiny_mnist_like, tmp_path, monkeypatch):
    from neuronlab import nsr as nsr_module
    from neuronlab.nsr import IntraClassVariance, run_experiment, steadiness_history, train_nsr_run

    out = train_nsr_run(tiny_mnist_like, arch="MLP-4", method="nsr", seed=0, epochs=1, layer="fc2+fc3", lam=1.0)
    assert out["layer"] == "fc2+fc3" and 0 <= out["val_error"] <= 100 and out["diverged"] is False
    exploded = train_nsr_run(tiny_mnist_like, arch="MLP-4", method="nsr", seed=0, epochs=2, lam=1e8)
    assert exploded["diverged"] is True and exploded["test_error"] != exploded["test_error"]  # NaN, kept as a result
    assert "lower the learning rate" in exploded["message"]
    model, history = steadiness_history(tiny_mnist_like, arch="MLP-4", lam=1.0, epochs=2, watch=["fc2"])
    stat = IntraClassVariance(10)
    stat.update(model.fc2(torch.relu(model.fc1(tiny_mnist_like.x_train))).detach(), tiny_mnist_like.y_train)
    assert history.table["icv_fc2"].iloc[-1] == pytest.approx(stat.compute()["layer"].item(), rel=1e-5)

    calls = []
    monkeypatch.setattr(nsr_module, "experiment_data", lambda cfg: None)
    monkeypatch.setattr(nsr_module, "train_nsr_run",
                        lambda data, **cfg: calls.append(cfg) or dict(test_error=1.0, val_error=1.0, lam=0.0))
    first = run_experiment("normalization", "quick", runs_dir=str(tmp_path))
    again = run_experiment("normalization", "quick", runs_dir=str(tmp_path))
    assert len(first) == len(again) == 12 and len(calls) == 12  # the second call reads the stored runs back
    assert (tmp_path / "ch03_quick").is_dir()


def test_cifar_style_cnn_run_and_command_line(tmp_path, monkeypatch, capsys):
    from neuronlab import nsr as nsr_module
    from neuronlab.nsr import main, train_nsr_run

    g = gen(3)
    cifar_like = SimpleNamespace(name="cifar10", num_classes=10,  # name "cifar10": crop-and-flip augmentation
                                 x_train=torch.randn(40, 3, 32, 32, generator=g), y_train=torch.arange(10).repeat(4),
                                 x_val=torch.randn(20, 3, 32, 32, generator=g), y_val=torch.arange(10).repeat(2),
                                 x_test=torch.randn(20, 3, 32, 32, generator=g), y_test=torch.arange(10).repeat(2))
    out = train_nsr_run(cifar_like, arch="VGG-19-w4", method="nsr", seed=0, epochs=1, batch_size=20, lam=0.1)
    assert out["layer"] == "fc"
    assert len(out["test_error_curve"]) == 1 and out["diverged"] is False

    monkeypatch.setattr(nsr_module, "experiment_data", lambda cfg: None)
    monkeypatch.setattr(nsr_module, "train_nsr_run", lambda data, **cfg: dict(
        test_error=5.0 + cfg["seed"] + (cfg["method"] == "vanilla"), val_error=5.0, lam=cfg.get("lam", 7.4865)))
    main(["--experiments", "normalization", "--runs", str(tmp_path)])
    printed = capsys.readouterr().out
    assert "== normalization (quick) ==" in printed and "6.00 ± 1.00" in printed and "7.00 ± 1.00" in printed
