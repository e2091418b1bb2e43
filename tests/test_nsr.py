"""NSR: the loss against the intra-class variance formula and the official FIFO, DDP equivalence, statistics."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from neuronlab import models, train
from neuronlab.classwise import IntraClassVariance
from neuronlab.nsr import (NeuronSteadiness, consistency_of_representations, pick_layer_by_variance,
                           variance_by_correctness, variance_metrics)
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


def fifo_penalty(outputs, labels, lam, num_classes):
    """The official scheme, written differently: class means over the raw detached outputs of the last
    batches (``outputs[0]`` is the current one), then ``lam * mean((x - mu[y])**2)`` on the current batch."""
    all_x, all_y = torch.cat([o.detach() for o in outputs]), torch.cat(labels)
    mu = torch.stack([all_x[all_y == c].mean(0) if (all_y == c).any() else torch.zeros(all_x.shape[1])
                      for c in range(num_classes)])
    return lam * ((outputs[0] - mu[labels[0]]) ** 2).mean()


@pytest.mark.parametrize("onehot_up_to", [0, 10 ** 9])
@pytest.mark.parametrize("incremental_above", [0, 10 ** 9])
@pytest.mark.parametrize("memory", [1, 2, 5])
def test_window_totals_equal_the_fifo_whichever_way_they_are_kept(memory, incremental_above, onehot_up_to,
                                                                   monkeypatch):
    """Above ``incremental_above`` running numbers the window's total is updated by adding the new batch and
    subtracting the leaving one (exact again once per window); below it, summed over the ring each step.
    Class sums come from a one-hot product (small batches) or a scatter (large ones). Every combination
    must equal the FIFO for more steps than two windows, gradients included."""
    monkeypatch.setattr(NeuronSteadiness, "incremental_above", incremental_above)
    monkeypatch.setattr(NeuronSteadiness, "onehot_up_to", onehot_up_to)
    model = models.MLP([6, 9, 4])
    lam, outputs, labels = 0.3, [], []
    with NeuronSteadiness(model, "fc1", num_classes=4, lam=lam, memory=memory) as nsr:
        for step in range(2 * memory + 3):
            x = torch.randn(12, 6, generator=gen(step)) * (1 + step)  # growing scale: rounding would show
            y = torch.randint(0, 4, (12,), generator=gen(50 + step))
            model(x)
            out = nsr._recorder["fc1"]
            ours = nsr.loss(y)
            outputs, labels = ([out] + outputs)[:memory], ([y] + labels)[:memory]
            official = fifo_penalty(outputs, labels, lam, 4)
            assert ours.item() == pytest.approx(official.item(), rel=1e-5)
            torch.testing.assert_close(torch.autograd.grad(ours, out, retain_graph=True)[0],
                                       torch.autograd.grad(official, out)[0])
        assert (memory > 2 and incremental_above == 0) == nsr._windows["fc1"].incremental


def test_half_precision_responses_keep_exact_class_counts():
    """Counts above 2048 are not exact in float16; the ring is kept in float32 for float16 responses."""
    layer = nn.Sequential(nn.Identity())
    x = torch.randn(3000, 2, generator=gen(9)).half()
    y = torch.zeros(3000, dtype=torch.long)
    y[-1] = 1
    with NeuronSteadiness(layer, "0", num_classes=2, memory=1, neuron_reduction="sum") as nsr:
        layer(x)
        loss = nsr.loss(y)
    assert nsr._windows["0"].ring.dtype == torch.float32
    assert nsr._windows["0"].ring[0, :, 2].tolist() == [2999.0, 1.0]
    expected = intra_class_variance(x.float(), y).sum()
    assert loss.float().item() == pytest.approx(expected.item(), rel=1e-2)


def test_finiteness_is_read_back_on_the_first_step_and_then_every_check_every_steps(monkeypatch):
    """No host read-back (``Tensor.item``) on the steps between checks; a NaN that appears between two
    checks is reported at the next check, and at once by ``last_value``."""
    monkeypatch.setattr(NeuronSteadiness, "check_every", 4)
    model = models.MLP([4, 5, 3])
    y = torch.arange(3).repeat(2)
    reads = []
    item = torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "item", lambda self: reads.append(1) or item(self))
    with NeuronSteadiness(model, "fc1", num_classes=3) as nsr:
        for step in range(1, 9):
            reads.clear()
            model(torch.randn(6, 4, generator=gen(step)))
            nsr.loss(y)
            assert len(reads) == (1 if step in (1, 4, 8) else 0), step
        model(torch.full((6, 4), float("nan")))
        nsr.loss(y)  # step 9: no check
        with pytest.raises(ValueError, match="NaN"):
            nsr.last_value
        model(torch.full((6, 4), float("nan")))
        nsr.loss(y)  # step 10
        model(torch.full((6, 4), float("nan")))
        nsr.loss(y)  # step 11
        model(torch.full((6, 4), float("nan")))
        with pytest.raises(ValueError, match=r"responses of layer\(s\) \['fc1'\] contain NaN"):
            nsr.loss(y)  # step 12


@pytest.mark.parametrize("onehot_up_to", [0, 10 ** 9])
def test_bad_labels_leave_the_running_statistics_unchanged(onehot_up_to, monkeypatch):
    monkeypatch.setattr(NeuronSteadiness, "onehot_up_to", onehot_up_to)
    model = models.MLP([4, 5, 3])
    x, y = torch.randn(6, 4, generator=gen(11)), torch.arange(3).repeat(2)
    with NeuronSteadiness(model, "fc1", num_classes=3, memory=2) as nsr:
        model(x)
        nsr.loss(y)
        ring, slot = nsr._windows["fc1"].ring.clone(), nsr._slot
        for bad in ([0, 1, 2, 0, 1, 3], [0, 1, 2, 0, 1, -1]):
            model(x)
            with pytest.raises(ValueError, match=r"class indices in 0\.\.2"):
                nsr.loss(torch.tensor(bad))
        assert torch.equal(nsr._windows["fc1"].ring, ring) and nsr._slot == slot


def test_a_layer_that_changes_width_asks_for_reset():
    layer = nn.Sequential(nn.Identity())
    y = torch.tensor([0, 1, 0, 1])
    with NeuronSteadiness(layer, "0", num_classes=2, memory=3) as nsr:
        layer(torch.randn(4, 3, generator=gen(12)))
        nsr.loss(y)
        layer(torch.randn(4, 5, generator=gen(13)))
        with pytest.raises(ValueError, match=r"gives 5 neurons.*hold 3.*call reset\(\)"):
            nsr.loss(y)
        nsr.reset()
        assert nsr.loss(y).item() >= 0


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


def test_fixed_class_weights_equal_the_weighted_variances():
    model = models.MLP([5, 8, 4])
    x = torch.randn(30, 5, generator=gen(2))
    y = torch.tensor([0] * 12 + [1] * 10 + [2] * 8)
    alpha = torch.tensor([0.5, 0.3, 0.2])
    loss, _ = run_nsr(model, x, y, layer="fc1", memory=1, neuron_reduction="sum", class_weights=alpha)
    h = model.fc1(x).detach()
    expected = sum(alpha[c] * h[y == c].var(0, unbiased=False) for c in range(3)).sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_variance_metrics_measure_each_layer_after_each_epoch(tiny_mnist_like):
    data = tiny_mnist_like
    torch.manual_seed(0)
    model = models.MLP([784, 16, 8, 10])
    history = train.fit(model, data, epochs=2, batch_size=50, progress=False, metrics=variance_metrics(["fc1", "fc2"]))
    assert {"icv_fc1", "icv_fc2"} <= set(history.table.columns)
    with torch.no_grad():
        hidden = model.fc1(data.x_train)
        fc2 = model.fc2(torch.relu(hidden))
    for name, responses in (("icv_fc1", hidden), ("icv_fc2", fc2)):
        expected = intra_class_variance(responses.double(), data.y_train).mean().item()  # the independent loop
        assert history.table[name].iloc[-1] == pytest.approx(expected, rel=1e-5)


def test_variance_by_correctness_checks_its_labels():
    x = torch.randn(4, 2)
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.1"):
        variance_by_correctness(x, torch.tensor([0, 1, 2, 0]), torch.zeros(4, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="integer class indices"):
        variance_by_correctness(x, torch.zeros(4), torch.zeros(4, dtype=torch.long), 2)


def test_the_method_module_holds_no_reproduction_and_loads_no_plotting_or_pandas():
    import subprocess
    import sys

    import neuronlab.nsr as nsr

    assert set(nsr.__all__) == {"NeuronSteadiness", "NonFiniteResponseError", "variance_metrics",
                                "pick_layer_by_variance", "variance_by_correctness", "consistency_of_representations"}
    for moved in ("PAPER_TABLE", "train_nsr_run", "experiment_grid", "build_model", "main", "IntraClassVariance",
                  "plot_steadiness", "lambda_explorer"):
        assert not hasattr(nsr, moved), f"neuronlab.nsr.{moved} should live in its own floor"
    code = ("import sys, neuronlab.nsr\n"
            "print(sorted(m for m in ('pandas', 'matplotlib', 'ipywidgets', 'neuronlab.experiments')\n"
            "             if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
