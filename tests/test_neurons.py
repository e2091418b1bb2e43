"""neuronlab.neurons against independent facts: numpy/scikit-learn references, NeuroX's hand cases, hand-built
models whose answer is known, Captum's completeness, and nn.LSTM / nn.GRU themselves."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from neuronlab import neurons as nr
from neuronlab.probe import record

ROOT = Path(__file__).resolve().parents[1]


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def no_hooks(model):
    return all(not m._forward_hooks for m in model.modules())


# -------------------------------------------------------------------------------------------- rankings
def test_ties_are_counted_and_broken_by_index():
    ranking = nr.ranking_from_scores(torch.tensor([1.0, 2.0, 2.0, 3.0]), method="x")
    assert ranking.ties == 2
    assert ranking.order.tolist() == [3, 1, 2, 0]
    assert ranking.scores.dtype == torch.float64 and ranking.order.dtype == torch.int64
    assert ranking.method == "x" and len(ranking) == 4


def test_near_ties_within_1e12_relative_count_and_order_by_index():
    ranking = nr.ranking_from_scores([1.0, 5.0, 5.0 * (1 + 1e-13), 5.0 * (1 - 1e-13)])
    assert ranking.ties == 3 and ranking.order.tolist() == [1, 2, 3, 0]
    assert nr.ranking_from_scores([1.0, 1.0 + 1e-9]).ties == 0


def test_lower_is_better_reverses_the_order():
    ranking = nr.ranking_from_scores([0.3, 0.1, 0.2], higher_is_better=False)
    assert ranking.order.tolist() == [1, 2, 0]
    assert ranking.top(1).tolist() == [1] and ranking.bottom(2).tolist() == [0, 2]


def test_nan_scores_and_bad_k_are_rejected():
    with pytest.raises(ValueError, match="NaN"):
        nr.ranking_from_scores([1.0, float("nan")])
    with pytest.raises(ValueError, match="1-D"):
        nr.ranking_from_scores(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="0..3"):
        nr.ranking_from_scores([1.0, 2.0, 3.0]).top(4)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([-2.0, -1.0, 0.0, 0.5, 1.0, 3.0]) | st.floats(-1e6, 1e6), min_size=1, max_size=30),
       st.booleans())
def test_order_is_a_permutation_sorted_by_score_and_rank_of_inverts_it(scores, higher):
    ranking = nr.ranking_from_scores(scores, higher_is_better=higher)
    n = len(scores)
    assert sorted(ranking.order.tolist()) == list(range(n))
    key = ranking.scores[ranking.order] * (1 if higher else -1)
    assert bool((key[:-1] >= key[1:]).all())
    assert torch.equal(ranking.order[ranking.rank_of()], torch.arange(n))
    # exact ties: the lower index comes first
    for a, b in zip(ranking.order[:-1].tolist(), ranking.order[1:].tolist()):
        if scores[a] == scores[b]:
            assert a < b
    # the tie count: neurons whose score another neuron shares exactly (no near ties in this sample space)
    values = np.array(scores)
    exact = sum(int((values == v).sum() > 1) for v in values)
    close = [abs(x - y) <= 1e-12 * max(abs(x), abs(y)) and x != y for x in values for y in values]
    if not any(close):
        assert ranking.ties == exact


# ----------------------------------------------------------------------------------------- correlations
def test_pearson_matches_numpy_corrcoef():
    x = torch.randn(40, 5, generator=gen(1), dtype=torch.float64)
    t = x[:, 0] * 2 + torch.randn(40, generator=gen(2), dtype=torch.float64)
    expected = [np.corrcoef(x[:, j].numpy(), t.numpy())[0, 1] for j in range(5)]
    assert np.allclose(nr.correlation_with(x, t).numpy(), expected, atol=1e-12)


def _best_corr_loop(responses):
    """For each model, a [M-1, D] table of best |corr| with each other model, by np.corrcoef in loops."""
    out = []
    for m, a in enumerate(responses):
        rows = []
        for o, b in enumerate(responses):
            if o == m:
                continue
            rows.append([max(abs(np.corrcoef(a[:, i], b[:, j])[0, 1]) for j in range(b.shape[1]))
                         for i in range(a.shape[1])])
        out.append(np.array(rows))
    return out


def test_max_and_min_correlation_match_a_corrcoef_loop_over_three_models():
    responses = [torch.randn(30, d, generator=gen(d), dtype=torch.float64) for d in (3, 4, 2)]
    responses[1][:, 2] = responses[0][:, 1] * 0.5 + 0.1 * responses[1][:, 2]
    table = _best_corr_loop([r.numpy() for r in responses])
    for got, want in zip(nr.max_correlation_scores(responses), table):
        assert np.allclose(got.numpy(), want.max(0), atol=1e-12)
    for got, want in zip(nr.min_correlation_scores(responses), table):
        assert np.allclose(got.numpy(), want.min(0), atol=1e-12)


def test_permuted_scaled_copies_score_one_and_the_noise_neuron_lower():
    a = torch.randn(200, 4, generator=gen(3))
    noise = torch.randn(200, 1, generator=gen(4))
    b = torch.cat([a[:, [2, 0, 3, 1]] * torch.tensor([3.0, -0.5, 2.0, 7.0]) + 1.0, noise], dim=1)
    score_a, score_b = nr.max_correlation_scores([a, b])
    assert torch.allclose(score_a, torch.ones(4, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(score_b[:4], torch.ones(4, dtype=torch.float64), atol=1e-9)
    assert score_b[4] < 0.3
    ranking = nr.ranking_from_scores(score_b)
    assert ranking.order[-1].item() == 4


def test_mincorr_is_at_most_maxcorr_with_three_models_and_equal_with_two():
    responses = [torch.randn(50, d, generator=gen(10 + d)) for d in (5, 6, 4)]
    for lo, hi in zip(nr.min_correlation_scores(responses), nr.max_correlation_scores(responses)):
        assert bool((lo <= hi).all()) and bool((lo < hi).any())
    for lo, hi in zip(nr.min_correlation_scores(responses[:2]), nr.max_correlation_scores(responses[:2])):
        assert torch.equal(lo, hi)


def test_constant_neurons_get_zero_correlation_not_nan():
    a = torch.randn(20, 3, generator=gen(5))
    a[:, 1] = 4.0
    b = torch.randn(20, 2, generator=gen(6))
    score_a, score_b = nr.max_correlation_scores([a, b])
    assert score_a[1] == 0 and torch.isfinite(score_b).all()
    assert nr.correlation_with(a, torch.arange(20.0))[1] == 0
    with pytest.raises(ValueError, match="constant"):
        nr.correlation_with(a, torch.ones(20))


def test_cross_model_functions_reject_bad_input():
    a = torch.randn(10, 3)
    with pytest.raises(ValueError, match="at least 2 models"):
        nr.max_correlation_scores([a])
    with pytest.raises(ValueError, match="same samples"):
        nr.linreg_errors([a, torch.randn(9, 3)])
    with pytest.raises(ValueError, match="NaN"):
        nr.min_correlation_scores([a, torch.full((10, 2), float("nan"))])
    with pytest.raises(ValueError, match="channel_mean"):
        nr.max_correlation_scores([a, torch.randn(10, 2, 3, 3)])


# ----------------------------------------------------------------------------------------------- LinReg
def test_linreg_error_is_zero_for_an_exact_linear_combination_and_matches_sklearn():
    from sklearn.linear_model import LinearRegression

    a = torch.randn(80, 3, generator=gen(7), dtype=torch.float64)
    b = torch.randn(80, 3, generator=gen(8), dtype=torch.float64)
    b[:, 0] = 2 * a[:, 0] - a[:, 2] + 5
    c = torch.randn(80, 2, generator=gen(9), dtype=torch.float64)
    errors_ab = nr.linreg_errors([a, b])
    assert errors_ab[1][0] < 1e-20

    def zscore(x):
        return (x - x.mean(0)) / x.std(0)  # ddof=0 as in the module

    def sklearn_mse(target, predictors):
        zt, zp = zscore(target.numpy()), zscore(predictors.numpy())
        fit = LinearRegression().fit(zp, zt)
        return ((zt - fit.predict(zp)) ** 2).mean(0)

    assert np.allclose(errors_ab[1].numpy(), sklearn_mse(b, a), atol=1e-10)
    assert np.allclose(errors_ab[0].numpy(), sklearn_mse(a, b), atol=1e-10)
    errors_abc = nr.linreg_errors([a, b, c])  # the worst other model
    assert np.allclose(errors_abc[0].numpy(), np.maximum(sklearn_mse(a, b), sklearn_mse(a, c)), atol=1e-10)


def test_linreg_survives_dead_units_and_more_neurons_than_samples():
    a = torch.randn(6, 10, generator=gen(11))
    a[:, 3] = 0.0  # a dead unit: X^T X would be singular
    b = torch.randn(6, 4, generator=gen(12))
    errors_a, errors_b = nr.linreg_errors([a, b])
    assert torch.isfinite(errors_a).all() and torch.isfinite(errors_b).all()
    assert errors_b.max() < 1e-10  # 6 samples, 10 predictors: an exact fit
    assert errors_a[3] == 1.0  # a dead unit says nothing: the worst error, so it ranks last
    assert nr.ranking_from_scores(errors_a, higher_is_better=False).order[-1] == 3


# -------------------------------------------------------------------------------------- class selectivity
def test_class_selectivity_hand_cases():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    responses = torch.tensor([[4.0, 2.0, 0.0, 3.0],
                              [2.0, 2.0, 0.0, 3.0],
                              [0.0, 2.0, 0.0, 1.0],
                              [0.0, 2.0, 0.0, 1.0],
                              [0.0, 2.0, 0.0, 0.0],
                              [0.0, 2.0, 0.0, 0.0]])
    si = nr.class_selectivity(responses, labels)
    # one class only -> 1; equal means -> 0; dead -> 0; means (3, 1, 0): (3 - 0.5) / (3 + 0.5)
    assert si.tolist() == pytest.approx([1.0, 0.0, 0.0, 2.5 / 3.5])


def test_class_selectivity_rejects_negative_responses_and_missing_classes():
    with pytest.raises(ValueError, match="post-ReLU"):
        nr.class_selectivity(torch.tensor([[1.0], [-0.5]]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="no sample"):
        nr.class_selectivity(torch.ones(3, 2), torch.tensor([0, 0, 2]))
    with pytest.raises(ValueError, match="2 classes"):
        nr.class_selectivity(torch.ones(3, 2), torch.tensor([0, 0, 0]))


def test_class_selectivity_ranking_averages_conv_channels_over_positions():
    conv = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False), nn.ReLU())
    with torch.no_grad():
        conv[0].weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
    x = torch.cat([torch.ones(3, 1, 2, 2), torch.zeros(3, 1, 2, 2)])  # channel 0 fires for class 0 only
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    ranking = nr.ClassSelectivity(conv, "1").rank(x, labels)
    assert ranking.scores.tolist() == [1.0, 0.0] and ranking.order.tolist() == [0, 1]


# ------------------------------------------------------------------------------------------- the probe
def _reference_top(weight, fraction):
    """NeuroX's get_top_neurons by its definition, with Python lists."""
    per_class = []
    for row in np.abs(np.asarray(weight, dtype=float)):
        if fraction >= 1:
            per_class.append(sorted(range(len(row)), key=lambda j: (-row[j], j)))
            continue
        chosen, mass = [], 0.0
        for j in sorted(range(len(row)), key=lambda j: (-row[j], j)):
            if mass >= fraction * row.sum():
                break
            chosen.append(j)
            mass += row[j]
        per_class.append(chosen)
    return sorted({j for c in per_class for j in c}), per_class


def test_neurox_hand_cases():
    overall, per_class = nr.top_neurons_by_mass([[5, 1, 1], [1, 10, 1]], 0.5)
    assert overall.tolist() == [0, 1] and [c.tolist() for c in per_class] == [[0], [1]]
    overall, _ = nr.top_neurons_by_mass(torch.tensor([[10.0, 9, 8], [10, 2, 1]]), 1.1)
    assert overall.tolist() == [0, 1, 2]
    overall, per_class = nr.top_neurons_by_mass([[5, 1, 1], [1, 10, 1]], 0.0)
    assert overall.tolist() == [] and all(len(c) == 0 for c in per_class)


def test_probe_ordering_by_hand():
    # class 0 masses (5, 1, 1): neuron 1 enters above 5/7, neuron 2 above 6/7; class 1 (1, 10, 1): neuron 1 at
    # once, neuron 0 above 10/12. Step 1 brings {0, 1}: by total mass 11 > 6, neuron 1 first.
    assert nr.probe_neuron_ordering([[5, 1, 1], [1, 10, 1]]).tolist() == [1, 0, 2]


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(1, 7), st.integers(0, 10_000), st.sampled_from([0.0, 0.13, 0.5, 0.9, 1.0]))
def test_top_neurons_and_ordering_match_the_definition(k, d, seed, fraction):
    signs = torch.sign(torch.randn(k, d, generator=gen(seed)))
    weight = torch.randint(0, 4, (k, d), generator=gen(seed)).double() * signs
    overall, per_class = nr.top_neurons_by_mass(weight, fraction)
    want_overall, want_per_class = _reference_top(weight.numpy(), fraction)
    assert overall.tolist() == want_overall and [c.tolist() for c in per_class] == want_per_class
    stride = 10
    ordering = nr.probe_neuron_ordering(weight, search_stride=stride)
    expected, seen = [], set()
    total = weight.abs().sum(0)
    for s in range(stride + 1):
        new = [j for j in _reference_top(weight.numpy(), s / stride)[0] if j not in seen]
        expected += sorted(new, key=lambda j: (-total[j].item(), j))
        seen |= set(new)
    assert ordering.tolist() == expected


def _separable(n=300, seed=0):
    g = gen(seed)
    labels = torch.arange(n) % 2
    informative = (labels.float() * 2 - 1) * (1 + torch.rand(n, generator=g))  # |x| >= 1, sign = class
    noise = torch.randn(n, 4, generator=g) * torch.tensor([100.0, 0.01, 1.0, 30.0])  # wild scales
    return torch.cat([noise[:, :2], informative[:, None] * 0.01, noise[:, 2:]], dim=1), labels


def test_probe_separates_separable_data_and_ranks_the_informative_neuron_first():
    x, labels = _separable()
    probe = nr.train_linear_probe(x, labels)
    assert probe.accuracy >= 0.95
    assert (probe.predict(x) == labels).double().mean().item() == pytest.approx(probe.accuracy)
    assert probe.weight.abs().sum(0).argmax().item() == 2  # despite its tiny scale (standardisation)
    model = nn.Sequential(nn.Identity())
    ranker = nr.ProbeRanking(model, "0")
    ranking = ranker.rank(x, labels)
    assert ranking.order[0].item() == 2 and ranker.probe is not None
    assert ranking.order.tolist() == nr.probe_neuron_ordering(ranker.probe.weight).tolist()


def test_probe_is_deterministic_for_a_seed():
    x, labels = _separable(seed=1)
    a = nr.train_linear_probe(x, labels, batch_size=64, epochs=2, seed=5)
    b = nr.train_linear_probe(x, labels, batch_size=64, epochs=2, seed=5)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    with pytest.raises(ValueError, match="non-negative"):
        nr.train_linear_probe(x, labels, l1=-1)


# ------------------------------------------------------------------------------------------ conductance
def _mlp64_with_dead_unit(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3)).double()
    with torch.no_grad():  # unit 4 of the last hidden layer never fires
        model[2].weight[4] = 0.0
        model[2].bias[4] = -1.0
    return model


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_layer_conductance_is_complete_and_the_gap_is_that_difference(seed):
    model = _mlp64_with_dead_unit(seed)
    x = torch.randn(7, 5, generator=gen(seed + 1), dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    cond, gap = nr.layer_conductance(model, "3", x, labels, n_steps=200)
    with torch.no_grad():
        difference = model(x)[torch.arange(7), labels] - model(torch.zeros_like(x))[torch.arange(7), labels]
    assert cond.shape == (7, 6)
    assert torch.allclose(cond.sum(1), difference, atol=1e-4)
    assert torch.allclose(gap, cond.sum(1) - difference, atol=1e-12)
    assert torch.all(cond[:, 4] == 0)  # the dead unit: exactly 0
    cond2, gap2 = nr.layer_conductance(model, model[3], x, 2, baselines=0.5, n_steps=200)  # int target, a baseline
    with torch.no_grad():
        difference2 = model(x)[:, 2] - model(torch.full_like(x, 0.5))[:, 2]
    assert torch.allclose(cond2.sum(1), difference2, atol=1e-4)
    assert torch.allclose(gap2, cond2.sum(1) - difference2, atol=1e-12)


def test_the_completeness_gap_shrinks_with_more_steps():
    # Behind a ReLU layer the integrand has kinks, so the quadrature converges slowly (about 1/n_steps).
    model = _mlp64_with_dead_unit(3)
    x = torch.randn(7, 5, generator=gen(4), dtype=torch.float64)
    gaps = [nr.layer_conductance(model, "1", x, 1, n_steps=n)[1].abs().max().item() for n in (20, 400)]
    assert gaps[1] < gaps[0] / 4


def test_conductance_ranks_by_the_signed_mean_and_keeps_the_model_mode():
    model = _mlp64_with_dead_unit(1).train()
    x = torch.randn(6, 5, generator=gen(2), dtype=torch.float64)
    method = nr.Conductance(model, "3", n_steps=64)
    per_sample = method.attribute(x, 1)
    ranking = method.rank(x, 1)
    assert torch.allclose(ranking.scores, per_sample.mean(0))
    assert ranking.order[0].item() == per_sample.mean(0).argmax().item()
    assert model.training and no_hooks(model)


def test_conductance_of_conv_channels_sums_positions():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 16, 2)).double()
    x = torch.randn(4, 1, 4, 4, generator=gen(3), dtype=torch.float64)
    per_channel = nr.Conductance(model, "1", n_steps=100).attribute(x, 0)
    with torch.no_grad():
        difference = model(x)[:, 0] - model(torch.zeros_like(x))[:, 0]
    assert per_channel.shape == (4, 3) and torch.allclose(per_channel.sum(1), difference, atol=1e-4)


class _TinyLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(2, 4, batch_first=True)
        self.tap = nn.Identity()
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(self.tap(out)[:, -1])


def test_conductance_on_an_lstm_asks_for_a_tap_and_works_on_it():
    model = _TinyLSTM().double()
    x = torch.randn(3, 5, 2, generator=gen(4), dtype=torch.float64)
    with pytest.raises(ValueError, match="nn.Identity"):
        nr.layer_conductance(model, "lstm", x, 0)
    assert no_hooks(model)
    cond, gap = nr.layer_conductance(model, "tap", x, 0, n_steps=100)
    assert cond.shape == (3, 5, 4) and gap.abs().max() < 1e-3


def test_conductance_rejects_bad_targets():
    model = _mlp64_with_dead_unit()
    x = torch.randn(3, 5, dtype=torch.float64)
    with pytest.raises(ValueError, match="0..2"):
        nr.layer_conductance(model, "1", x, 3)
    with pytest.raises(ValueError, match=r"shape \[3\]"):
        nr.layer_conductance(model, "1", x, torch.tensor([0, 1]))


# ---------------------------------------------------------------------------------------- interventions
def _classifier(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))


def test_ablating_the_whole_last_hidden_layer_leaves_the_output_bias():
    model = _classifier()
    x, y = torch.randn(100, 4, generator=gen(1)), torch.randint(0, 3, (100,), generator=gen(2))
    with torch.no_grad():
        plain = (model(x).argmax(1) == y).double().mean().item()
    bias_only = (y == model[4].bias.argmax()).double().mean().item()
    curve = nr.ablation_curve(model, "3", torch.arange(5), x, y, counts=[0, 5], batch_size=30)
    assert curve.dtype == torch.float64 and curve.tolist() == pytest.approx([plain, bias_only])
    ranking = nr.ranking_from_scores(torch.randn(5, generator=gen(3)))
    assert nr.ablation_curve(model, "3", ranking, x, y, counts=[5]).item() == pytest.approx(bias_only)


def test_ablation_curve_restores_the_mode_and_never_changes_parameters():
    model = _classifier().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.randn(20, 4), torch.randint(0, 3, (20,))
    nr.ablation_curve(model, "1", [3, 1, 0], x, y, counts=[1, 2, 3], value=0.7)
    with nr.ablate(model, "1", [0, 2]), nr.control(model, "3", [1], 2.0, mode="add"):
        model(x).sum().backward()
    assert model.training and no_hooks(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_hooks_are_removed_even_when_the_body_raises():
    model = _classifier()
    with pytest.raises(RuntimeError, match="boom"):
        with nr.ablate(model, "1", [0]):
            assert not no_hooks(model)
            raise RuntimeError("boom")
    assert no_hooks(model)
    with pytest.raises(RuntimeError, match="boom"):
        with nr.control(model, "1", [0, 1], torch.tensor([1.0, 2.0])):
            raise RuntimeError("boom")
    assert no_hooks(model)


def test_zero_mean_and_constant_ablation_set_the_recorded_units():
    model = _classifier()
    x = torch.randn(50, 4, generator=gen(5))
    means = nr.neuron_means(model, "1", x)
    with torch.no_grad():
        assert torch.allclose(means, torch.relu(model[0](x)).mean(0), atol=1e-6)
    for value, expected in [("zero", torch.zeros(2)), ("mean", means[[1, 4]]), (-1.5, torch.full((2,), -1.5))]:
        with record(model, "1") as rec, nr.ablate(model, "1", [1, 4], value, means=means):  # edit runs first
            model(x)
        assert torch.allclose(rec["1"][:, [1, 4]], expected.expand(50, 2))
    with torch.no_grad():
        untouched = torch.relu(model[0](x))
    assert torch.equal(rec["1"][:, [0, 2, 3, 5]], untouched[:, [0, 2, 3, 5]])  # the other units unchanged


def test_control_sets_or_shifts_the_unit():
    model = _classifier()
    x = torch.randn(10, 4, generator=gen(6))
    with torch.no_grad():
        plain = model[0](x)
    with record(model, "0") as rec, nr.control(model, "0", [2, 0], torch.tensor([3.0, -1.0])):
        model(x)
    assert torch.all(rec["0"][:, 2] == 3.0) and torch.all(rec["0"][:, 0] == -1.0)
    with record(model, "0") as rec, nr.control(model, "0", [5], 0.25, mode="add"):
        model(x)
    assert torch.allclose(rec["0"][:, 5], plain[:, 5] + 0.25)


def test_conv_channels_and_sequence_units_are_read_from_the_right_dimension():
    conv = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1))
    with record(conv, "0") as rec, nr.ablate(conv, "0", [1]):
        conv(torch.randn(2, 1, 4, 4))
    assert torch.all(rec["0"][:, 1] == 0) and torch.all(rec["0"][:, 0] != 0)
    seq = nn.Sequential(nn.Linear(3, 4))  # [N, T, D]: the last dimension
    with record(seq, "0") as rec, nr.ablate(seq, "0", [3]):
        seq(torch.randn(2, 5, 3))
    assert torch.all(rec["0"][..., 3] == 0) and rec["0"].shape == (2, 5, 4)
    conv1d = nn.Sequential(nn.Conv1d(2, 3, 1), nn.Identity())  # [N, C, L]: say neuron_dim=1
    with record(conv1d, "1") as rec, nr.ablate(conv1d, "1", [2], neuron_dim=1):
        conv1d(torch.randn(2, 2, 5))
    assert torch.all(rec["1"][:, 2] == 0) and torch.all(rec["1"][:, 0] != 0)


def test_bad_neuron_indices_fail_before_a_hook_is_registered():
    model = _classifier()
    for neurons, message in [([6], "out of range"), ([1, 1], "duplicate"), ([], "no neuron"), ([-1], ">= 0")]:
        with pytest.raises(ValueError, match=message):
            with nr.ablate(model, "0", neurons):
                pass
        assert no_hooks(model)
    with pytest.raises(TypeError, match="integer"):
        nr.ablate(model, "0", [0.5])
    with pytest.raises(ValueError, match="neuron_means"):
        nr.ablate(model, "0", [0], "mean")
    with pytest.raises(ValueError, match="out of range"):  # a ReLU has no static width: the hook checks
        with nr.ablate(model, "1", [9]):
            model(torch.randn(2, 4))
    assert no_hooks(model)
    with pytest.raises(ValueError, match=r"shape \[2\]"):
        nr.control(model, "0", [0, 1], torch.ones(3))


def test_random_orders_are_permutations_and_reproducible():
    orders = nr.random_orders(7, 4, torch.Generator().manual_seed(3))
    assert orders.shape == (4, 7) and all(sorted(o.tolist()) == list(range(7)) for o in orders)
    assert torch.equal(orders, nr.random_orders(7, 4, torch.Generator().manual_seed(3)))


# --------------------------------------------------------------------------------------- ranking classes
def test_maxcorr_and_linreg_on_models_whose_layer_copies_another():
    a = nn.Sequential(nn.Linear(3, 4), nn.Tanh())
    b = nn.Sequential(nn.Linear(3, 5), nn.Tanh())
    with torch.no_grad():
        b[0].weight[:4] = a[0].weight[[3, 1, 0, 2]]
        b[0].bias[:4] = a[0].bias[[3, 1, 0, 2]]
    x = torch.randn(300, 3, generator=gen(7))
    rank_a, rank_b = nr.MaxCorr([a, b], "1").rank(x)
    assert torch.allclose(rank_a.scores, torch.ones(4, dtype=torch.float64), atol=1e-6)
    assert rank_b.order[-1].item() == 4 and rank_b.scores[4] < 1 - 1e-3
    err_a, err_b = nr.LinReg([a, b], ["1", "1"]).rank(x)
    assert err_b.higher_is_better is False and err_b.order[-1].item() == 4
    assert err_a.scores.max() < 1e-10
    min_a, _ = nr.MinCorr([a, b], "1").rank(x)
    assert torch.equal(min_a.scores, rank_a.scores)
    with pytest.raises(ValueError, match="at least 2 models"):
        nr.MaxCorr([a], "1")
    with pytest.raises(ValueError, match="one per model"):
        nr.LinReg([a, b], ["1"])


# ------------------------------------------------------------------------------------ recurrent models
@pytest.mark.parametrize("batch_first", [True, False])
def test_unrolled_lstm_equals_nn_lstm_and_shares_its_parameters(batch_first):
    torch.manual_seed(0)
    lstm = nn.LSTM(3, 5, batch_first=batch_first)
    unrolled = nr.UnrolledLSTM(lstm)
    assert unrolled.weight_ih is lstm.weight_ih_l0 and unrolled.weight_hh is lstm.weight_hh_l0
    assert unrolled.bias_ih is lstm.bias_ih_l0 and unrolled.bias_hh is lstm.bias_hh_l0
    x = torch.randn(4, 9, 3) if batch_first else torch.randn(9, 4, 3)
    h0, c0 = torch.randn(1, 4, 5), torch.randn(1, 4, 5)
    out, (h_n, c_n) = lstm(x, (h0, c0))
    trace = unrolled(x, (h0, c0))
    assert trace.output.shape == out.shape
    assert torch.allclose(trace.output, out, atol=1e-6) and torch.allclose(trace.hidden, out, atol=1e-6)
    last = (lambda t: t[:, -1]) if batch_first else (lambda t: t[-1])
    assert torch.allclose(last(trace.cell), c_n[0], atol=1e-6) and torch.allclose(last(trace.hidden), h_n[0], atol=1e-6)


@pytest.mark.parametrize("batch_first", [True, False])
def test_unrolled_gru_equals_nn_gru(batch_first):
    torch.manual_seed(1)
    gru = nn.GRU(3, 4, batch_first=batch_first)
    unrolled = nr.UnrolledGRU(gru)
    assert unrolled.weight_hh is gru.weight_hh_l0
    x = torch.randn(2, 7, 3) if batch_first else torch.randn(7, 2, 3)
    assert torch.allclose(unrolled(x).output, gru(x)[0], atol=1e-6)
    with pytest.raises(ValueError, match="no 'cell'"):
        unrolled(x, intervention=nr.StateIntervention(units=[0], state="cell"))


def test_only_single_layer_unidirectional_rnns_unroll():
    with pytest.raises(ValueError, match="single-layer"):
        nr.UnrolledLSTM(nn.LSTM(2, 3, num_layers=2))
    with pytest.raises(ValueError, match="single-layer"):
        nr.UnrolledLSTM(nn.LSTM(2, 3, bidirectional=True))
    with pytest.raises(ValueError, match="nn.LSTM"):
        nr.UnrolledLSTM(nn.GRU(2, 3))


def test_an_edit_inside_the_recurrence_reaches_later_steps_a_readout_hook_does_not():
    torch.manual_seed(2)
    model = _TinyLSTM()
    x = torch.randn(3, 8, 2, generator=gen(8))
    unit, t = 1, 3
    plain, _ = model.lstm(x)
    with nr.ablate(model, "lstm", [unit]):  # a hook on nn.LSTM: only the returned sequence changes
        hooked, (h_n, _) = model.lstm(x)
    others = [j for j in range(4) if j != unit]
    assert torch.all(hooked[..., unit] == 0) and torch.equal(hooked[..., others], plain[..., others])
    assert torch.equal(h_n[0], plain[:, -1])  # the state the LSTM carries is untouched
    unrolled = nr.UnrolledLSTM(model.lstm)
    edit = nr.StateIntervention(units=[unit], state="hidden", mode="zero", steps=slice(t, t + 1))
    inside = unrolled(x, intervention=edit).output
    assert torch.allclose(inside[:, :t], plain[:, :t], atol=1e-6)  # before t: as before
    assert torch.all(inside[:, t, unit] == 0)
    assert torch.allclose(inside[:, t, others], plain[:, t, others], atol=1e-6)  # at t: only the unit
    assert (inside[:, t + 1:, others] - plain[:, t + 1:, others]).abs().max() > 1e-4  # later: everything moves


def test_state_interventions_set_and_add_the_cell_at_the_chosen_steps():
    torch.manual_seed(3)
    unrolled = nr.UnrolledLSTM(nn.LSTM(2, 3))
    x = torch.randn(6, 2, 2)  # [T, B, I]
    plain = unrolled(x)
    mask = torch.tensor([False, True, False, True, False, False])
    trace = unrolled(x, intervention=nr.StateIntervention(units=[0, 2], state="cell", mode="set",
                                                          values=torch.tensor([2.0, -2.0]), steps=mask))
    assert torch.all(trace.cell[mask][..., 0] == 2.0) and torch.all(trace.cell[mask][..., 2] == -2.0)
    assert torch.allclose(trace.cell[0], plain.cell[0]) and not torch.allclose(trace.cell[2], plain.cell[2])
    output_gate = torch.sigmoid(_output_gate(unrolled, x, plain, 1))
    assert torch.allclose(trace.hidden[1], output_gate * torch.tanh(trace.cell[1]), atol=1e-6)
    shifted = unrolled(x, intervention=nr.StateIntervention(units=[1], mode="add", values=0.5, steps=slice(0, 1)))
    assert torch.allclose(shifted.cell[0, :, 1], plain.cell[0, :, 1] + 0.5, atol=1e-6)
    with pytest.raises(ValueError, match="out of range"):
        unrolled(x, intervention=nr.StateIntervention(units=[3]))
    with pytest.raises(ValueError, match="mode"):
        nr.StateIntervention(units=[0], mode="scale")


def _output_gate(unrolled, x, plain, t):
    """The pre-activation of the output gate at step t (it reads h_{t-1}, the same with and without the edit
    at steps 0 and 1 of the mask above: step 0 is not edited)."""
    gates = (x[t] @ unrolled.weight_ih.T + unrolled.bias_ih
             + plain.hidden[t - 1] @ unrolled.weight_hh.T + unrolled.bias_hh)
    return gates.chunk(4, dim=1)[3]


# ------------------------------------------------------------------------------------------------ fences
def test_importing_the_module_loads_neither_captum_nor_matplotlib():
    code = "import sys, neuronlab.neurons\nprint([m for m in ('captum', 'matplotlib') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
