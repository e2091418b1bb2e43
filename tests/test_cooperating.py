"""Cooperating classifiers: perplexity against hand counts, node classifiers, the path-sum update vs autograd.

The chapter's experiments (grids, label noise, the command line) are tested in tests/experiments/test_ch04.py."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from neuronlab import cooperating as co
from neuronlab import models
from neuronlab.probe import collect_responses


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def patterns_from_rows(rows):
    return co.ActivationPatterns.from_responses(torch.tensor(rows, dtype=torch.float32))


# ---------------------------------------------------------------------------------------------- patterns
def test_packing_round_trip_for_widths_not_multiple_of_eight():
    r = torch.randn(50, 13, generator=gen())
    p = co.ActivationPatterns.from_responses(r)
    assert p.bits.shape == (50, 2) and p.width == 13
    assert torch.equal(p.unpack(), r > 0)
    assert torch.equal(p[torch.tensor([3, 7])].unpack(), r[[3, 7]] > 0)


def test_activation_patterns_match_a_manual_forward_and_hooks_are_removed():
    model = models.MLP([6, 5, 4, 3])
    x = torch.randn(40, 6, generator=gen(1))
    pats = co.activation_patterns(model, x, batch_size=15)
    assert list(pats) == ["act1", "act2"]
    h1 = torch.relu(model.fc1(x))
    h2 = torch.relu(model.fc2(h1))
    assert torch.equal(pats["act1"].unpack(), h1 > 0)
    assert torch.equal(pats["act2"].unpack(), h2 > 0)
    assert all(not m._forward_hooks for m in model.modules())


def test_relu_layers_rejects_layers_without_patterns():
    with pytest.raises(ValueError, match="no nn.ReLU"):
        co.relu_layers(models.MLP([4, 3, 2], activation="tanh"))
    with pytest.raises(ValueError, match="not nn.ReLU"):
        co.relu_layers(models.MLP([4, 3, 2]), ["fc1"])


# -------------------------------------------------------------------------------------------- perplexity
def test_k_equally_likely_patterns_have_perplexity_k():
    rows, labels = [], []
    for k in range(4):  # class 0: four patterns, three samples each
        rows += [[1 if b == k else -1 for b in range(5)]] * 3
        labels += [0] * 3
    rows += [[1, 1, -1, -1, -1]] * 7  # class 1: one pattern
    labels += [1] * 7
    rows += [[1 if b & (1 << i) else -1 for i in range(5)] for b in range(6)]  # class 2: all distinct
    labels += [2] * 6
    perplexity = co.layer_perplexity(patterns_from_rows(rows), torch.tensor(labels))
    np.testing.assert_allclose(perplexity, [4.0, 1.0, 6.0])


def test_perplexity_by_hand_for_unequal_counts_and_missing_class():
    # counts 2, 1, 1 of 4: H = -(1/2 ln 1/2 + 2 * 1/4 ln 1/4) = 1.5 ln 2
    rows = [[1, -1], [1, -1], [-1, 1], [1, 1]]
    perplexity = co.layer_perplexity(patterns_from_rows(rows), torch.tensor([0, 0, 0, 0]), num_classes=2)
    assert perplexity[0] == pytest.approx(math.exp(1.5 * math.log(2)))
    assert np.isnan(perplexity[1])


def test_same_pattern_in_different_classes_counts_per_class():
    rows = [[1, -1]] * 4
    perplexity = co.layer_perplexity(patterns_from_rows(rows), torch.tensor([0, 0, 1, 1]))
    np.testing.assert_allclose(perplexity, [1.0, 1.0])


def test_streaming_perplexity_equals_one_shot():
    r = (torch.rand(300, 6, generator=gen(2)) > 0.6).float() * 2 - 1  # few nodes: patterns repeat across batches
    labels = torch.randint(0, 3, (300,), generator=gen(3))
    whole = co.layer_perplexity(co.ActivationPatterns.from_responses(r), labels)
    meter = co.LayerPerplexity(3)
    for chunk in range(0, 300, 70):
        meter.update(co.ActivationPatterns.from_responses(r[chunk:chunk + 70]), labels[chunk:chunk + 70])
    np.testing.assert_allclose(meter.compute(), whole)
    meter.reset()
    with pytest.raises(RuntimeError):
        meter.compute()


def test_perplexity_bad_input():
    p = patterns_from_rows([[1, -1], [-1, 1]])
    with pytest.raises(ValueError, match="shape"):
        co.layer_perplexity(p, torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="0..1"):
        co.layer_perplexity(p, torch.tensor([0, 2]), num_classes=2)
    with pytest.raises(ValueError, match="integer"):
        co.layer_perplexity(p, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="integer"):
        co.layer_perplexity(p, np.array([0.0, 1.0]))


def test_perplexity_takes_numpy_labels_and_is_nan_without_samples():
    p = patterns_from_rows([[1, -1], [-1, 1], [1, -1]])
    np.testing.assert_allclose(co.layer_perplexity(p, np.array([0, 0, 1], dtype=np.uint8)),
                               co.layer_perplexity(p, torch.tensor([0, 0, 1])))
    empty = co.ActivationPatterns(np.zeros((0, 1), dtype=np.uint8), 2)
    assert np.isnan(co.layer_perplexity(empty, torch.zeros(0, dtype=torch.long), num_classes=3)).all()


# ------------------------------------------------------------------------------------- node classifiers
def test_discrete_node_probabilities_by_hand():
    # one node; class 0: on, on, off; class 1: off, off, off, on
    a = torch.tensor([[1.0], [2.0], [0.0], [0.0], [0.0], [0.0], [3.0]])
    y = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    nc = co.NodeClassifiers(num_classes=2).fit(a, y)
    p = nc.node_proba(torch.tensor([[5.0], [0.0]]), "discrete")
    # on: counts (2, 1) + 1 each -> (3/5, 2/5); off: counts (1, 3) + 1 each -> (2/6, 4/6)
    torch.testing.assert_close(p[0, 0], torch.tensor([0.6, 0.4], dtype=torch.float64))
    torch.testing.assert_close(p[1, 0], torch.tensor([2 / 6, 4 / 6], dtype=torch.float64))
    # one node: the layer classifier is the node classifier
    torch.testing.assert_close(nc.layer_proba(torch.tensor([[5.0], [0.0]]), "discrete"), p[:, 0])


def test_naive_bayes_layer_rule():
    a = torch.tensor([[1.0, 0.0], [2.0, 1.0], [0.0, 0.0], [0.0, 3.0], [0.0, 2.0], [1.5, 0.0]])
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    nc = co.NodeClassifiers(num_classes=2).fit(a, y)
    probe = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    node = nc.node_proba(probe, "discrete")
    expected = node.prod(1) / nc.prior ** (2 - 1)
    expected = expected / expected.sum(1, keepdim=True)
    torch.testing.assert_close(nc.layer_proba(probe, "discrete"), expected)


def test_continuous_node_separates_classes_by_value_where_counting_cannot():
    g = gen(4)
    # a node that is always on: class 0 around 1, class 1 around 4 -> counting sees nothing, the KDE does
    y = torch.arange(2).repeat_interleave(200)
    a = torch.where(y == 0, 1.0, 4.0)[:, None] + 0.3 * torch.randn(400, 1, generator=g)
    a = a.clamp_min(0.01)
    nc = co.NodeClassifiers(num_classes=2).fit(a, y)
    assert nc.accuracy(a, y, "discrete") == pytest.approx(0.5)
    assert nc.accuracy(a, y, "continuous") > 0.99
    assert nc.accuracy(a, y, "combined") > 0.99
    proba = nc.node_proba(a, "continuous")
    torch.testing.assert_close(proba.sum(-1), torch.ones(400, 1, dtype=torch.float64))


def test_combined_uses_counts_when_off():
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    a = torch.tensor([[0.0], [0.0], [2.0], [0.0], [1.0], [1.2]])
    nc = co.NodeClassifiers(num_classes=2).fit(a, y)
    off = torch.tensor([[0.0]])
    torch.testing.assert_close(nc.node_proba(off, "combined"), nc.node_proba(off, "discrete"))


def test_node_classifier_bad_input():
    nc = co.NodeClassifiers(num_classes=3)
    with pytest.raises(RuntimeError, match="fit"):
        nc.node_proba(torch.ones(2, 2))
    with pytest.raises(ValueError, match=r"class\(es\) \[2\]"):
        nc.fit(torch.ones(4, 2), torch.tensor([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="negative"):
        nc.fit(-torch.ones(3, 2), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="NaN"):
        nc.fit(torch.full((3, 2), float("nan")), torch.tensor([0, 1, 2]))
    nc.fit(torch.rand(6, 2), torch.tensor([0, 1, 2, 0, 1, 2]))
    with pytest.raises(ValueError, match="2 nodes"):
        nc.node_proba(torch.rand(3, 5))
    with pytest.raises(ValueError, match="mode"):
        nc.node_proba(torch.rand(3, 2), "bayes")


def test_layer_accuracies_rows_match_node_classifiers_fitted_by_hand():
    g = gen(5)
    x = torch.randn(120, 8, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    model = models.MLP([8, 16, 16, 3])
    rows = co.layer_accuracies(model, x, y, x[:60], y[:60], num_classes=3)
    assert [(r["layer"], r["depth"], r["mode"]) for r in rows] == [
        (layer, depth, mode) for depth, layer in enumerate(["act1", "act2"], start=1) for mode in co.MODES]
    h2 = torch.relu(model.fc2(torch.relu(model.fc1(x)))).detach()
    by_hand = co.NodeClassifiers(3).fit(h2, y)
    for row in rows[3:]:
        assert row["accuracy"] == pytest.approx(by_hand.accuracy(h2[:60], y[:60], row["mode"]))
        node_pred = by_hand.node_proba(h2[:60], row["mode"]).argmax(-1)
        assert row["node_accuracy"] == pytest.approx((node_pred == y[:60, None]).double().mean().item())


def test_layer_accuracies_from_responses_reuses_one_recording():
    g = gen(11)
    x = torch.randn(90, 6, generator=g)
    y = (x[:, 0] > 0).long()
    model = models.MLP([6, 10, 10, 2])
    acts = collect_responses(model, x, ["act1", "act2"], reduce="flatten")
    model.fc1.weight.data.zero_()  # the rows come from the recording, not from the (now changed) model
    rows = co.layer_accuracies_from_responses(acts, y, acts, y, 2, modes=["discrete"])
    assert [r["accuracy"] for r in rows] == [co.NodeClassifiers(2).fit(a, y).accuracy(a, y, "discrete")
                                             for a in acts.values()]


def test_the_method_module_imports_no_pandas_plotting_or_experiments():
    import subprocess
    import sys

    code = ("import sys, neuronlab.cooperating; "
            "print(sorted(m for m in ('pandas', 'matplotlib', 'seaborn', 'ipywidgets', 'neuronlab.experiments') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------------------------------------- paths
def tiny_net(bias=True):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4, bias=bias), nn.ReLU(), nn.Linear(4, 3, bias=bias), nn.ReLU(),
                         nn.Linear(3, 2, bias=bias))


@pytest.mark.parametrize("bias", [True, False])
def test_path_sum_update_equals_autograd(bias):
    net = tiny_net(bias)
    x = torch.randn(5, 3, generator=gen(6))
    y = torch.tensor([0, 1, 1, 0, 1])
    updates = co.path_sum_gradients(net, x, y, lr=0.1)
    net = net.double()  # autograd in float64, so the comparison can be tight
    loss = nn.functional.cross_entropy(net(x.double()), y)
    loss.backward()
    linears = [m for m in net if isinstance(m, nn.Linear)]
    assert len(updates) == 3
    for (d_weight, d_bias), layer in zip(updates, linears):
        torch.testing.assert_close(d_weight, -0.1 * layer.weight.grad, atol=1e-12, rtol=1e-9)
        if bias:
            torch.testing.assert_close(d_bias, -0.1 * layer.bias.grad, atol=1e-12, rtol=1e-9)
        else:
            assert d_bias is None


def test_count_active_paths_by_enumeration():
    net = tiny_net()
    x = torch.randn(4, 3, generator=gen(7))
    counts = co.count_active_paths(net, x)
    z1 = net[0](x)
    z2 = net[2](torch.relu(z1))
    for n in range(4):  # brute force: paths j -> m -> output
        for j in range(4):
            expected = sum(int(z1[n, j] > 0 and z2[n, m] > 0) for m in range(3) for _ in range(2))
            assert counts[0][n, j].item() == expected
    assert counts[2].eq(1).all()


def test_path_view_needs_a_plain_relu_mlp():
    with pytest.raises(ValueError, match="plain ReLU MLP"):
        co.path_sum_gradients(models.MLP([3, 4, 2], batchnorm=True), torch.randn(2, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="plain ReLU MLP"):
        co.path_sum_gradients(models.MLP([3, 4, 2], activation="tanh"), torch.randn(2, 3), torch.tensor([0, 1]))
