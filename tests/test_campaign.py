"""Neuron Campaign (IBCI): scores against hand computations, the election's invariants, the whole campaign."""

import copy
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from neuronlab import init, models
from neuronlab.campaign import (best_class_groups, campaign_, campaign_scores, default_alphas, information_scores,
                                select_neurons)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def blobs(n_per_class=60, dim=12, classes=3, seed=0):
    """Gaussian classes whose means differ on the first few features."""
    g = gen(seed)
    y = torch.arange(classes).repeat_interleave(n_per_class)
    x = torch.randn(len(y), dim, generator=g)
    x[:, :classes] += 3.0 * nn.functional.one_hot(y, classes).float()
    return x, y


# ------------------------------------------------------------------------------------------------ scores
def test_information_scores_by_hand():
    # one neuron, two classes: class 0 responses {0, 2}, class 1 responses {4, 8}
    z = torch.tensor([[0.0], [2.0], [4.0], [8.0]])
    y = torch.tensor([0, 0, 1, 1])
    info = information_scores(z, y)
    # class means 1 and 6 -> between = ((1-3.5)^2 + (6-3.5)^2)/2 = 6.25; within = (1 + 4)/2 = 2.5
    assert info["between"].item() == pytest.approx(6.25)
    assert info["within"].item() == pytest.approx(2.5)
    assert info["target"].item() == pytest.approx(3.75)
    # overall mean 3.5, population variance (12.25 + 2.25 + 0.25 + 20.25)/4 = 8.75
    assert info["input"].item() == pytest.approx(math.sqrt(8.75))


def test_total_variance_splits_into_between_and_within_for_balanced_classes():
    z = torch.randn(300, 40, generator=gen(1)) * torch.linspace(0.5, 3, 40)
    y = torch.arange(3).repeat(100)
    info = information_scores(z, y)
    torch.testing.assert_close(info["input"] ** 2, info["between"] + info["within"])


def test_information_scores_do_not_see_an_offset_far_from_zero():
    # every term is a variance, blind to a constant added to a neuron's responses; responses far from
    # zero (here a million, with unit spread) must not lose the digits of E[z^2] - E[z]^2 to cancellation
    z = torch.randn(300, 20, generator=gen(21), dtype=torch.float64) * torch.linspace(0.5, 2, 20, dtype=torch.float64)
    y = torch.arange(3).repeat(100)
    near, far = information_scores(z, y), information_scores(z + 1e6, y)
    for key in ["input", "between", "within", "target"]:
        torch.testing.assert_close(far[key], near[key], rtol=1e-9, atol=1e-12)


def test_target_information_prefers_the_class_feature():
    x, y = blobs()
    w = torch.eye(12)  # neuron i reads feature i; only features 0..2 carry the class
    info = information_scores(x @ w.T, y)
    assert set(info["target"].topk(3).indices.tolist()) == {0, 1, 2}


def test_scores_are_minmax_mixtures():
    info = {"input": torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64),
            "target": torch.tensor([5.0, -1.0, 2.0], dtype=torch.float64)}
    torch.testing.assert_close(campaign_scores(info, 1.0), torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64))
    torch.testing.assert_close(campaign_scores(info, 0.0), torch.tensor([1.0, 0.0, 0.5], dtype=torch.float64))
    torch.testing.assert_close(campaign_scores(info, 0.25), 0.25 * torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
                               + 0.75 * torch.tensor([1.0, 0.0, 0.5], dtype=torch.float64))
    torch.testing.assert_close(campaign_scores(info, 0.3, "tie"), campaign_scores(info, 0.0))
    torch.testing.assert_close(campaign_scores(info, 0.3, "iim"), campaign_scores(info, 1.0))
    r = campaign_scores(info, 0.3, "random", generator=gen())
    assert r.shape == (3,) and ((r >= 0) & (r <= 1)).all()
    with pytest.raises(ValueError, match="alpha"):
        campaign_scores(info, 1.5)
    with pytest.raises(ValueError, match="mode"):
        campaign_scores(info, 0.5, "best")


def test_default_alphas():
    assert default_alphas(2) == [1.0, 0.0]
    assert default_alphas(3) == [1.0, 0.5, 0.0]
    assert default_alphas(1) == [0.5]
    with pytest.raises(ValueError):
        default_alphas(0)


# ---------------------------------------------------------------------------------------------- election
def test_election_by_hand_in_2d():
    # w0 = (1, 0), w1 = (1, 1), w2 = (0, 2); scores 1.0, 0.9, 0.6
    w = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    s = torch.tensor([1.0, 0.9, 0.6])
    e = select_neurons(w, s, 2)
    # step 1: all residual ratios are 1 -> highest score, w0. Step 2: residuals (0, 1) and (0, 2):
    # ratios 1/sqrt(2) = 0.707 and 1 -> criteria 0.9 * 0.707 = 0.636 < 0.6 * 1? no: 0.636 > 0.6 -> w1
    assert e.indices.tolist() == [0, 1]
    torch.testing.assert_close(e.residual_ratio, torch.tensor([1.0, 1 / math.sqrt(2)], dtype=torch.float64))
    torch.testing.assert_close(e.directions, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    # with w2 scored a bit higher it wins the second seat: 0.65 * 1 > 0.9 * 0.707
    assert select_neurons(w, torch.tensor([1.0, 0.9, 0.65]), 2).indices.tolist() == [0, 2]


def test_elected_directions_are_orthonormal_and_first_pick_is_best_score():
    w = torch.randn(200, 50, generator=gen(2))
    s = torch.rand(200, generator=gen(3))
    e = select_neurons(w, s, 40)
    assert e.indices[0] == s.argmax()
    assert len(set(e.indices.tolist())) == 40
    torch.testing.assert_close(e.directions @ e.directions.T, torch.eye(40), atol=1e-5, rtol=0)
    # each direction is the elected candidate's component orthogonal to the earlier directions
    for t in [1, 17, 39]:
        wi = w[e.indices[t]].double()
        basis = e.directions[:t].double()
        p = wi - basis.T @ (basis @ wi)
        torch.testing.assert_close(e.directions[t].double(), p / p.norm(), atol=1e-6, rtol=0)
        assert e.residual_ratio[t].item() == pytest.approx((p.norm() / wi.norm()).item(), rel=1e-6)
    assert ((e.residual_ratio > 0) & (e.residual_ratio <= 1 + 1e-9)).all()


def greedy_by_residuals(w, s, k, tol=1e-6):
    """The election written out with every residual formed: P <- P - (P a) a^T after each pick."""
    w, s = w.double(), s.double() + 1e-12
    residuals, norms = w.clone(), w.norm(dim=1)
    free = torch.ones(len(w), dtype=torch.bool)
    picks, rounds, ratios, round_ = [], [], [], 0
    for _ in range(k):
        ratio = residuals.norm(dim=1) / norms
        usable = free & (ratio > tol)
        if not usable.any():  # the picks span the space: a new round starts from the candidates
            residuals, ratio, usable, round_ = w.clone(), torch.ones_like(norms), free, round_ + 1
        i = int(torch.where(usable, s * ratio, torch.tensor(-math.inf, dtype=torch.float64)).argmax())
        a = residuals[i] / residuals[i].norm()
        residuals = residuals - torch.outer(residuals @ a, a)
        free[i] = False
        picks.append(i)
        rounds.append(round_)
        ratios.append(ratio[i].item())
    return picks, rounds, ratios


@pytest.mark.parametrize("n, dim, k", [(400, 40, 120), (300, 200, 150), (150, 9, 30)])
def test_election_matches_the_greedy_rule_with_every_residual_formed(n, dim, k):
    # pools larger than the election's shortlist, and more picks than dimensions (rounds)
    w = torch.randn(n, dim, generator=gen(n + dim))
    s = torch.rand(n, generator=gen(k))
    picks, rounds, ratios = greedy_by_residuals(w, s, k)
    e = select_neurons(w, s, k)
    assert e.indices.tolist() == picks
    assert e.rounds.tolist() == rounds
    torch.testing.assert_close(e.residual_ratio, torch.tensor(ratios, dtype=torch.float64), rtol=1e-9, atol=1e-12)


def test_nearly_parallel_candidates_still_give_orthonormal_directions():
    # every candidate within 1e-5 of one vector: each new direction is a tiny residual, where one
    # Gram-Schmidt pass leaves a trace of the earlier directions far above rounding
    g = gen(22)
    w = torch.randn(1, 30, generator=g, dtype=torch.float64) + 1e-5 * torch.randn(200, 30, generator=g,
                                                                                dtype=torch.float64)
    e = select_neurons(w, torch.rand(200, generator=g), 25)
    assert e.residual_ratio[1:].max() < 1e-4
    torch.testing.assert_close(e.directions @ e.directions.T, torch.eye(25, dtype=torch.float64), atol=1e-12, rtol=0)


def test_duplicate_candidates_are_never_both_elected_in_a_round():
    w = torch.randn(5, 8, generator=gen(4))
    w = torch.cat([w, w])  # every candidate twice
    e = select_neurons(w, torch.ones(10), 5)
    assert len({i % 5 for i in e.indices.tolist()}) == 5


def test_more_picks_than_dimensions_start_new_rounds():
    d = 3
    w = torch.randn(20, d, generator=gen(5))
    e = select_neurons(w, torch.rand(20, generator=gen(6)), 8)
    assert e.rounds.tolist() == [0, 0, 0, 1, 1, 1, 2, 2]
    for r in range(3):
        a = e.directions[e.rounds == r]
        torch.testing.assert_close(a @ a.T, torch.eye(len(a)), atol=1e-5, rtol=0)
    assert len(set(e.indices.tolist())) == 8


def test_grouped_election_splits_slots_evenly():
    w = torch.randn(30, 20, generator=gen(7))
    groups = torch.tensor([0] * 12 + [1] * 3 + [2] * 15)
    e = select_neurons(w, torch.rand(30, generator=gen(8)), 9, groups=groups)
    counts = torch.bincount(groups[e.indices], minlength=3).tolist()
    assert counts == [3, 3, 3]
    assert (groups[e.indices] == e.groups).all()
    # a group too small for its share passes the rest on: 12 slots over groups of 12, 3, 15
    e = select_neurons(w, torch.rand(30, generator=gen(8)), 12, groups=groups)
    # shares of 4; the group of 3 passes 1 on, to the group with the most room left
    assert torch.bincount(groups[e.indices], minlength=3).tolist() == [4, 3, 5]
    # within a group the directions are orthonormal
    a = e.directions[e.groups == 2]
    torch.testing.assert_close(a @ a.T, torch.eye(len(a)), atol=1e-5, rtol=0)


def test_best_class_groups_is_the_class_of_the_largest_mean():
    # candidate 0 responds most to class 2, candidate 1 to class 0 (class means written out by hand)
    z = torch.tensor([[0.0, 5.0], [1.0, 3.0], [2.0, 0.0], [4.0, 1.0], [9.0, 0.0], [7.0, 2.0]])
    y = torch.tensor([0, 0, 1, 1, 2, 2])  # class means: (0.5, 4), (3, 0.5), (8, 1)
    assert best_class_groups(z, y).tolist() == [2, 0]
    with pytest.raises(ValueError, match=r"class\(es\) \[3\]"):
        best_class_groups(z, y, num_classes=4)


def test_election_bad_input():
    w = torch.randn(10, 4)
    with pytest.raises(ValueError, match="k=11"):
        select_neurons(w, torch.ones(10), 11)
    with pytest.raises(ValueError, match="scores"):
        select_neurons(w, torch.ones(9), 3)
    with pytest.raises(ValueError, match="non-negative"):
        select_neurons(w, -torch.ones(10), 3)
    with pytest.raises(ValueError, match="zero vector"):
        select_neurons(torch.zeros(10, 4), torch.ones(10), 3)
    with pytest.raises(ValueError, match=r"\[C, d\]"):
        select_neurons(torch.randn(10), torch.ones(10), 3)


# ---------------------------------------------------------------------------------------------- campaign
def test_campaign_mlp_elected_neurons_are_orthogonal_and_keep_the_base_scale():
    x, y = blobs(dim=40)
    model = models.MLP([40, 16, 8, 3])
    model.fc1.bias.data.fill_(1.0)
    _, report = campaign_(model, x, y, generator=gen(), return_report=True)
    assert list(report) == ["fc1", "fc2", "fc3"]
    assert [r.alpha for r in report.values()] == [1.0, 0.5, 0.0]
    for name, r in report.items():
        layer = getattr(model, name)
        w = layer.weight.detach()
        gram = w @ w.T
        torch.testing.assert_close(gram - torch.diag(torch.diag(gram)), torch.zeros_like(gram), atol=1e-5, rtol=0)
        # each row has its candidate's norm
        torch.testing.assert_close(w.norm(dim=1), r.candidates[r.election.indices].flatten(1).norm(dim=1))
        assert (layer.bias == 0).all()
        assert r.candidates.shape[0] == min(5 * w.shape[0], 1000)
        assert r.election.indices[0] == r.scores.argmax()
        assert r.elected.sum() == w.shape[0]
    columns = report["fc1"].table()
    assert set(columns) == {"layer", "input_info", "target_info", "score", "elected"}
    assert all(len(v) == report["fc1"].candidates.shape[0] for v in columns.values())
    assert columns["elected"].sum() == 16 and (columns["layer"] == "fc1").all()
    frame = pd.DataFrame(columns)  # what the notebook does with it
    assert frame.loc[frame.elected, "score"].max() == pytest.approx(report["fc1"].scores.max().item())


def test_candidates_use_the_true_fan_in():
    x, y = blobs(n_per_class=20, dim=784, classes=2)
    for base, std in [("xavier", math.sqrt(2 / (784 + 100))), ("he", math.sqrt(2 / 784))]:
        layer_model = nn.Sequential(nn.Linear(784, 100), nn.ReLU(), nn.Linear(100, 2))
        _, report = campaign_(layer_model, x, y, base=base, generator=gen(), return_report=True)
        assert report["0"].candidates.std().item() == pytest.approx(std, rel=0.01)


def test_scores_in_the_report_match_a_manual_forward():
    x, y = blobs(dim=20)
    model = models.MLP([20, 10, 6, 3])
    _, report = campaign_(model, x, y, generator=gen(), return_report=True)
    # fc2's candidates are scored on the output of act1 with fc1 already campaign-initialized
    hidden = torch.relu(model.fc1(x))
    manual = information_scores(hidden @ report["fc2"].candidates.T, y)
    torch.testing.assert_close(report["fc2"].info["input"], manual["input"])
    torch.testing.assert_close(report["fc2"].info["target"], manual["target"])
    # response_fn=torch.relu scores post-activation responses
    _, report = campaign_(models.MLP([20, 10, 3]), x, y, generator=gen(), response_fn=torch.relu,
                          return_report=True)
    manual = information_scores(torch.relu(x @ report["fc1"].candidates.T), y)
    torch.testing.assert_close(report["fc1"].info["input"], manual["input"])


def test_modes_change_only_the_scores():
    x, y = blobs(dim=30)
    reports = {}
    for mode in ["ibci", "tie", "iim", "random"]:
        _, reports[mode] = campaign_(models.MLP([30, 12, 3]), x, y, mode=mode, generator=gen(), return_report=True)
    for mode in ["tie", "iim", "random"]:  # same generator -> same candidates for the first layer
        torch.testing.assert_close(reports[mode]["fc1"].candidates, reports["ibci"]["fc1"].candidates)
    def minmax(v):  # written out here, not taken from the module under test
        return (v - v.min()) / (v.max() - v.min())

    r = reports["tie"]["fc1"]
    torch.testing.assert_close(r.scores.double(), minmax(r.info["target"]), atol=1e-6, rtol=0)
    r = reports["iim"]["fc1"]
    torch.testing.assert_close(r.scores.double(), minmax(r.info["input"]), atol=1e-6, rtol=0)


def test_target_only_campaign_elects_discriminative_neurons():
    x, y = blobs(n_per_class=100, dim=30)
    _, report = campaign_(models.MLP([30, 5, 3]), x, y, mode="tie", generator=gen(), return_report=True)
    r = report["fc1"]
    assert r.info["target"][r.elected].mean() > r.info["target"][~r.elected].mean()


def test_campaign_is_reproducible_under_a_seed():
    x, y = blobs(dim=20)
    a = campaign_(models.MLP([20, 10, 3]), x, y, generator=gen(11))
    b = campaign_(models.MLP([20, 10, 3]), x, y, generator=gen(11))
    torch.testing.assert_close(a.fc1.weight, b.fc1.weight)


def test_campaign_on_a_cnn_handles_more_filters_than_inputs():
    g = gen(12)
    x = torch.randn(60, 1, 12, 12, generator=g)
    y = torch.arange(3).repeat(20)
    model = models.SmallCNN(in_channels=1, num_classes=3, channels=(12, 16), hidden=20, image_size=12)
    _, report = campaign_(model, x, y, generator=g, return_report=True)
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    first = report[convs[0]]
    # 12 filters of 1x3x3 = 9 inputs: a second round starts after 9
    assert first.election.rounds.tolist() == [0] * 9 + [1] * 3
    w = model.get_submodule(convs[0]).weight.detach().flatten(1)[:9]
    gram = w @ w.T
    torch.testing.assert_close(gram - torch.diag(torch.diag(gram)), torch.zeros_like(gram), atol=1e-5, rtol=0)
    # the filter responses used for scoring are position means of the candidate convolution
    conv = model.get_submodule(convs[0])
    manual = nn.functional.conv2d(x, first.candidates, None, conv.stride, conv.padding).mean(dim=(2, 3))
    torch.testing.assert_close(first.info["input"], information_scores(manual, y)["input"])
    assert torch.isfinite(model(x)).all()


@pytest.mark.filterwarnings("ignore:Using padding='same'")  # torch's note on the even kernel's padding
@pytest.mark.parametrize("conv", [nn.Conv1d(2, 3, 3, stride=2, padding=1), nn.Conv2d(2, 3, 2, padding="same"),
                                  nn.Conv2d(2, 3, (3, 2), stride=(2, 1), dilation=(1, 2)),
                                  nn.Conv3d(2, 3, 3, dilation=2, padding=2)], ids=["1d", "2d-same", "2d", "3d"])
def test_filter_responses_are_position_means_of_the_convolution(conv):
    # the campaign scores a filter by its mean response without running the convolution of every
    # candidate; compare with the convolution itself, in float64
    dims = conv.weight.dim() - 2
    x = torch.randn(45, 2, *[9, 8, 7][:dims], generator=gen(dims))
    y = torch.arange(3).repeat(15)
    with torch.no_grad():
        features = nn.Flatten()(conv(x)).shape[1]
    model = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.Linear(features, 3))
    _, report = campaign_(model, x, y, layers=["0"], generator=gen(), return_report=True)
    candidates = report["0"].candidates.double()
    convolve = [nn.functional.conv1d, nn.functional.conv2d, nn.functional.conv3d][dims - 1]
    manual = convolve(x.double(), candidates, None, conv.stride, conv.padding, conv.dilation).flatten(2).mean(2)
    expected = information_scores(manual, y)
    for key in ["input", "between", "within"]:
        torch.testing.assert_close(report["0"].info[key], expected[key], rtol=1e-5, atol=1e-9)


class Wrapped(nn.Module):
    """The same network behind a forward of its own, so the campaign reaches each layer with a hook."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)


def test_walking_a_sequential_gives_the_layers_the_inputs_of_a_forward_pass():
    # a plain nn.Sequential is walked child by child, in chunks sized by its activations; any other
    # model is run from the start for each layer: both must elect the same neurons
    g = gen(13)
    x = torch.randn(90, 1, 12, 12, generator=g)
    y = torch.arange(3).repeat(30)
    torch.manual_seed(0)
    net = models.SmallCNN(in_channels=1, num_classes=3, channels=(6, 8), hidden=10, image_size=12)
    wrapped = Wrapped(copy.deepcopy(net))
    _, walked = campaign_(net, x, y, generator=gen(14), return_report=True)
    _, hooked = campaign_(wrapped, x, y, generator=gen(14), batch_size=32, return_report=True)
    assert list(walked) == [name.removeprefix("net.") for name in hooked]
    for name, r in walked.items():
        assert r.election.indices.tolist() == hooked["net." + name].election.indices.tolist()
    for a, b in zip(net.parameters(), wrapped.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_lsuv_after_campaign_rescales_without_turning():
    x, y = blobs(dim=40)
    model = campaign_(models.MLP([40, 16, 8, 3]), x, y, generator=gen())
    before = {n: getattr(model, n).weight.detach().clone() for n in ["fc1", "fc2", "fc3"]}
    _, report = init.lsuv_(model, x, orthogonal=False, return_report=True)
    for name, w in before.items():
        cos = nn.functional.cosine_similarity(w, getattr(model, name).weight.detach(), dim=1)
        torch.testing.assert_close(cos, torch.ones_like(cos))
        assert report[name]["variance"] == pytest.approx(1.0, abs=0.05)


def test_importing_the_method_pulls_in_no_plotting_or_tables():
    code = ("import sys, neuronlab.campaign; "
            "print(sorted(m for m in ('pandas', 'matplotlib', 'seaborn', 'ipywidgets') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout
    assert out.strip() == "[]"


def test_labels_may_be_a_numpy_array():
    x, y = blobs(dim=20)
    a = campaign_(models.MLP([20, 10, 3]), x, y, generator=gen(4))
    b = campaign_(models.MLP([20, 10, 3]), x, y.numpy(), generator=gen(4))
    torch.testing.assert_close(a.fc1.weight, b.fc1.weight, atol=0, rtol=0)
    torch.testing.assert_close(information_scores(x, y)["target"], information_scores(x, y.numpy())["target"])


def test_campaign_bad_input_and_hooks_removed():
    x, y = blobs(dim=20)
    model = models.MLP([20, 10, 3])
    with pytest.raises(ValueError, match=r"class\(es\) \[1\]"):
        campaign_(model, x[y != 1], torch.where(y[y != 1] == 2, 2, 0))
    with pytest.raises(ValueError, match="shape"):
        campaign_(model, x, y[:-1])
    with pytest.raises(ValueError, match="does not fit"):
        campaign_(model, torch.randn(30, 7), y[:30])
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in model.modules())
    with pytest.raises(ValueError, match="NaN"):
        campaign_(model, torch.full_like(x, float("nan")), y)
    with pytest.raises(ValueError, match="labels must lie"):
        campaign_(model, x, y, num_classes=2)
    with pytest.raises(ValueError, match="mode"):
        campaign_(model, x, y, mode="lottery")
    with pytest.raises(ValueError, match="alphas"):
        campaign_(model, x, y, alphas=[0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match="unknown layer"):
        campaign_(model, x, y, layers=["fc9"])
    with pytest.raises(ValueError, match="candidate_ratio"):
        campaign_(model, x, y, candidate_ratio=0.5)
    with pytest.raises(ValueError, match="integer"):
        campaign_(model, x, y.float())


def test_layers_subset_and_train_mode_restored():
    x, y = blobs(dim=20)
    model = models.MLP([20, 10, 3], dropout=0.5)
    w2 = model.fc2.weight.detach().clone()
    model.train()
    campaign_(model, x, y, layers=["fc1"], alphas=0.3, generator=gen())
    assert model.training
    torch.testing.assert_close(model.fc2.weight, w2)


def test_xavier_and_he_campaigns_elect_the_same_directions():
    # the candidates differ only by a per-layer scale, which min-max normalized scores do not see
    x, y = blobs(dim=30)
    a = campaign_(models.MLP([30, 12, 3]), x, y, base="xavier", generator=gen(3))
    b = campaign_(models.MLP([30, 12, 3]), x, y, base="he", generator=gen(3))
    for name in ["fc1", "fc2"]:
        wa, wb = getattr(a, name).weight.detach(), getattr(b, name).weight.detach()
        torch.testing.assert_close(nn.functional.normalize(wa, dim=1), nn.functional.normalize(wb, dim=1),
                                   atol=1e-5, rtol=0)
        ratio = wb.norm(dim=1) / wa.norm(dim=1)
        torch.testing.assert_close(ratio, torch.full_like(ratio, ratio[0].item()))
    assert not torch.allclose(a.fc1.weight, b.fc1.weight)
