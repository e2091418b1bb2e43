"""Bad input to the method modules (nsr, init, campaign, cooperating, classwise; issue 15).

Every rejected call must say what is wrong (the message is checked) and, where the call would change a
model, leave it exactly as it was (``state_dict`` compared bit for bit, train/eval mode too). Valid inputs
of another integer dtype are accepted and must give the same result as ``int64``. Property-based tests
(``hypothesis``) draw NaN positions, label dtypes and label ranges.
"""

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from neuronlab import cooperating as co
from neuronlab.campaign import campaign_, select_neurons
from neuronlab.classwise import check_labels
from neuronlab.init import gaussian_, he_, initialize_, lsuv_, orthogonal_, xavier_
from neuronlab.models import MLP
from neuronlab.nsr import NeuronSteadiness, NonFiniteResponseError
from neuronlab.probe import LayerNotFoundError

FAST = settings(max_examples=30, deadline=None)

INT_DTYPES = [torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8]
NP_INT_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, model.training


def assert_unchanged(model, snap):
    state, training = snap
    now = model.state_dict()
    assert set(now) == set(state)
    changed = [k for k in state if not torch.equal(now[k], state[k])]
    assert changed == [], f"a rejected call changed {changed}"
    assert model.training == training, "a rejected call changed the train/eval mode"
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules()), "a hook was left"


# ================================================================================================ nsr
def nsr_penalty(model, x, y, layer="fc1", **kwargs):
    kwargs.setdefault("num_classes", 3)
    with NeuronSteadiness(model, layer, **kwargs) as nsr:
        model(x)
        return nsr.loss(y)


def reference_icv(h, y):
    """Independent: frequency-weighted within-class population variance, mean over neurons."""
    total = torch.zeros(h.shape[1], dtype=torch.float64)
    for c in torch.unique(y):
        hc = h[y == c].double()
        total += len(hc) / len(h) * hc.var(0, unbiased=False)
    return total.mean().item()


@pytest.mark.parametrize("lam, error, match", [
    (-1.0, ValueError, "rewards variance"),
    (-1, ValueError, "rewards variance"),
    (np.float32(-0.5), ValueError, "rewards variance"),
    (float("nan"), ValueError, "finite"),
    (float("inf"), ValueError, "finite"),
    (-float("inf"), ValueError, "finite"),
    (torch.tensor([1.0, float("nan"), 1.0, 1.0, 1.0]), ValueError, "NaN or inf"),
    (torch.tensor([1.0, -2.0, 1.0, 1.0, 1.0]), ValueError, "negative for some neuron"),
    (torch.ones(3), ValueError, r"shape \[5\]"),
    (torch.ones(5, 1), ValueError, "shape"),
    (torch.ones(5, dtype=torch.bool), TypeError, "real numbers"),
    ([1.0, 2.0], TypeError, "must be a number"),
    ("0.1", TypeError, "must be a number"),
    (True, TypeError, "must be a number"),
])
def test_nsr_rejects_bad_lambda(lam, error, match):
    model = MLP([4, 5, 3])
    with pytest.raises(error, match=match) as info:
        NeuronSteadiness(model, "fc1", num_classes=3, lam=lam)
    assert "responses" not in str(info.value)  # the real cause, not "responses contain NaN"
    assert_unchanged(model, snapshot(model))


def test_nsr_lambda_zero_switches_the_term_off():
    model = MLP([4, 5, 3])
    x, y = torch.randn(9, 4, generator=gen(1)), torch.arange(3).repeat(3)
    penalty = nsr_penalty(model, x, y, lam=0.0)
    assert penalty.item() == 0.0
    assert all(g is None or (g == 0).all() for g in torch.autograd.grad(penalty, list(model.parameters()),
                                                                          allow_unused=True))


@pytest.mark.parametrize("lam, match", [
    ({"fc1": 1.0}, r"no lambda for layer\(s\) \['fc2'\].*\['fc1', 'fc2'\]"),
    ({"fc1": 1.0, "fc2": 1.0, "fc3": 1.0}, r"not regularized: \['fc3'\].*\['fc1', 'fc2'\]"),
    ({"fc1": 1.0, "fc2": float("nan")}, r"lam\['fc2'\]"),
    ({"fc1": -0.1, "fc2": 1.0}, r"lam\['fc1'\] must be >= 0"),
    ({"fc1": 1.0, "fc2": torch.ones(4)}, r"lam\['fc2'\] must have shape \[3\]"),
])
def test_nsr_lambda_dict_names_the_layers(lam, match):
    with pytest.raises(ValueError, match=match):
        NeuronSteadiness(MLP([4, 5, 3]), ["fc1", "fc2"], num_classes=3, lam=lam)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"memory": 0}, ValueError, "memory must be at least 1"),
    ({"memory": -3}, ValueError, "memory must be at least 1"),
    ({"memory": 1.5}, TypeError, "memory must be an integer"),
    ({"memory": "5"}, TypeError, "memory must be an integer"),
    ({"memory": True}, TypeError, "memory must be an integer"),
    ({"num_classes": 1}, ValueError, "num_classes must be at least 2"),
    ({"num_classes": 0}, ValueError, "num_classes must be at least 2"),
    ({"num_classes": 2.5}, TypeError, "num_classes must be an integer"),
    ({"class_weights": torch.tensor([0.5, float("nan"), 0.5])}, ValueError, "finite and >= 0"),
    ({"class_weights": torch.tensor([0.5, -0.5, 0.5])}, ValueError, "finite and >= 0"),
    ({"class_weights": [0.3, 0.3, 0.4]}, TypeError, "class_weights"),
])
def test_nsr_rejects_bad_options(kwargs, error, match):
    kwargs = {"num_classes": 3, **kwargs}
    with pytest.raises(error, match=match):
        NeuronSteadiness(MLP([4, 5, 3]), "fc1", **kwargs)


def test_nsr_accepts_numpy_integer_counts():
    model = MLP([4, 5, 3])
    x, y = torch.randn(9, 4, generator=gen(2)), torch.arange(3).repeat(3)
    a = nsr_penalty(model, x, y, num_classes=np.int64(3), memory=np.int32(2))
    b = nsr_penalty(model, x, y, num_classes=3, memory=2)
    assert torch.equal(a, b)


def test_nsr_unknown_layer_lists_the_models_layers():
    with pytest.raises(LayerNotFoundError, match=r"no layer named 'fc9'.*Its layers are: flatten, fc1, act1, fc2"):
        NeuronSteadiness(MLP([4, 5, 3]), "fc9", num_classes=3)
    with pytest.raises(LayerNotFoundError, match="no layer named 'fc1.weight'.*Its layers are"):
        NeuronSteadiness(MLP([4, 5, 3]), ["fc1", "fc1.weight"], num_classes=3)
    with pytest.raises(ValueError, match="warmup must be a pair"):
        NeuronSteadiness(MLP([4, 5, 3]), "auto", num_classes=3, warmup=torch.randn(4, 4))


@FAST
@given(dtype=st.sampled_from(INT_DTYPES + NP_INT_DTYPES), n=st.integers(3, 20), seed=st.integers(0, 10_000))
def test_nsr_accepts_every_integer_label_dtype(dtype, n, seed):
    model = MLP([4, 5, 3])
    x = torch.randn(n, 4, generator=gen(seed))
    y = torch.randint(0, 3, (n,), generator=gen(seed + 1))
    expected = nsr_penalty(model, x, y, lam=1.0, memory=1)
    labels = y.numpy().astype(dtype) if isinstance(dtype, type) else y.to(dtype)
    penalty = nsr_penalty(model, x, labels, lam=1.0, memory=1)
    assert torch.equal(penalty, expected)  # bit-identical to int64 labels
    assert penalty.item() == pytest.approx(reference_icv(model.fc1(x).detach(), y), rel=1e-5)


@FAST
@given(bad=st.one_of(st.integers(3, 1000), st.integers(-1000, -1)), position=st.integers(0, 7),
       dtype=st.sampled_from([torch.int16, torch.int32, torch.int64]))
def test_nsr_rejects_labels_out_of_range(bad, position, dtype):
    model = MLP([4, 5, 3])
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    y[position] = bad
    with pytest.raises(ValueError, match=r"class indices in 0\.\.2"):
        nsr_penalty(model, torch.randn(8, 4), y.to(dtype))


@pytest.mark.parametrize("targets, match", [
    (torch.tensor([0.0, 1.0, 2.0, 0.0, 1.0, 2.0]), "dtype torch.float32"),
    (torch.eye(3).repeat(2, 1).long(), r"one-hot or soft labels: pass \.argmax\(1\)"),
    (torch.tensor([True, False, True, False, True, False]), "dtype torch.bool"),
    ([0, 1, 2, 0, 1, 2], "must be a tensor"),
    (torch.tensor([0, 1, 2]), "saw 6 samples but 3 targets"),
])
def test_nsr_rejects_bad_targets(targets, match):
    with pytest.raises((ValueError, TypeError), match=match):
        nsr_penalty(MLP([4, 5, 3]), torch.randn(6, 4), targets)


@FAST
@given(rows=st.lists(st.integers(0, 5), min_size=1, max_size=6), col=st.integers(0, 3),
       value=st.sampled_from([float("nan"), float("inf"), -float("inf")]))
def test_nsr_names_layers_whose_responses_are_not_finite(rows, col, value):
    model = MLP([4, 5, 3])
    x = torch.randn(6, 4, generator=gen(len(rows)))
    x[rows, col] = value
    with pytest.raises(NonFiniteResponseError, match=r"responses of layer\(s\) \['fc1'\] contain NaN or inf"):
        nsr_penalty(model, x, torch.arange(3).repeat(2), lam=1.0)


def test_nsr_overflow_is_reported_as_lambda_not_as_nan_data():
    model = MLP([4, 5, 3])
    with pytest.raises(NonFiniteResponseError, match="responses of .* are finite.*overflowed float32.*lower lambda"):
        nsr_penalty(model, torch.randn(6, 4, generator=gen(3)), torch.arange(3).repeat(2), lam=1e300)


def test_nsr_checks_mask_and_per_neuron_lambda_of_other_layers():
    model = MLP([4, 5, 3])
    x, y = torch.randn(6, 4), torch.arange(3).repeat(2)
    with pytest.raises(ValueError, match="boolean mask has 4 entries but there are 6 targets"):
        with NeuronSteadiness(model, "fc1", num_classes=3) as nsr:
            model(x)
            nsr.loss(y, mask=torch.ones(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="boolean or integer node indices"):
        with NeuronSteadiness(model, "fc1", num_classes=3) as nsr:
            model(x)
            nsr.loss(y, mask=torch.ones(6))
    with pytest.raises(ValueError, match=r"lam for layer 'act1' has 3 entries but the layer has 5 neurons"):
        with NeuronSteadiness(model, "act1", num_classes=3, lam=torch.ones(3)) as nsr:  # width known at run time
            model(x)
            nsr.loss(y)
    assert_unchanged(model, snapshot(model))


# =============================================================================================== init
@pytest.mark.parametrize("call, error, match", [
    (lambda m: gaussian_(m, std=float("inf")), ValueError, "std must be a finite number, got inf"),
    (lambda m: gaussian_(m, std=-float("inf")), ValueError, "std must be a finite number"),
    (lambda m: gaussian_(m, std=float("nan")), ValueError, "std must be a finite number, got nan"),
    (lambda m: gaussian_(m, std=0.0), ValueError, "std must be positive"),
    (lambda m: gaussian_(m, std=-0.1), ValueError, "std must be positive"),
    (lambda m: gaussian_(m, std="0.1"), TypeError, "std must be a number"),
    (lambda m: gaussian_(m, std=torch.ones(2)), TypeError, "std must be a number"),
    (lambda m: xavier_(m, gain=float("inf")), ValueError, "gain must be a finite number, got inf"),
    (lambda m: xavier_(m, "uniform", gain=float("inf")), ValueError, "gain must be a finite number"),
    (lambda m: xavier_(m, gain=float("nan")), ValueError, "gain must be a finite number"),
    (lambda m: xavier_(m, gain=0.0), ValueError, "gain must be positive"),
    (lambda m: xavier_(m, "uniform", gain=-1.0), ValueError, "gain must be positive"),
    (lambda m: xavier_(m, gain=True), TypeError, "gain must be a number"),
    (lambda m: xavier_(m, "gaussian"), ValueError, "distribution must be 'normal' or 'uniform'"),
    (lambda m: he_(m, negative_slope=float("nan")), ValueError, "negative_slope must be a finite number"),
    (lambda m: he_(m, negative_slope=float("inf")), ValueError, "negative_slope must be a finite number"),
    (lambda m: orthogonal_(m, gain=float("inf")), ValueError, "gain must be a finite number"),
    (lambda m: orthogonal_(m, gain=0), ValueError, "gain must not be 0"),
    (lambda m: initialize_(m, "gaussian", std=float("inf")), ValueError, "std must be a finite number"),
    (lambda m: initialize_(m, "xavier", gain=float("nan")), ValueError, "gain must be a finite number"),
])
def test_init_rejects_non_finite_and_ill_typed_numbers_before_any_change(call, error, match):
    model = MLP([6, 7, 3])
    snap = snapshot(model)
    with pytest.raises(error, match=match):
        call(model)
    assert_unchanged(model, snap)


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors:UserWarning")
@pytest.mark.parametrize("scheme", [xavier_, he_])
def test_init_checks_every_layer_before_drawing(scheme):
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(0, 2))  # the second layer has no inputs
    snap = snapshot(model)
    with pytest.raises(ValueError, match="layer '2' has fan-in 0"):
        scheme(model)
    assert_unchanged(model, snap)  # the first layer was not drawn either


def test_init_valid_numbers_of_other_types_are_accepted():
    a, b = MLP([6, 7, 3]), MLP([6, 7, 3])
    gaussian_(a, std=np.float32(0.5), generator=gen(4))
    gaussian_(b, std=0.5, generator=gen(4))
    assert torch.equal(a.fc1.weight, b.fc1.weight)
    orthogonal_(a, gain=-1.0, generator=gen(5))  # a negative gain is still orthogonal
    w = a.fc1.weight  # [7, 6]: orthonormal columns
    torch.testing.assert_close(w.T @ w, torch.eye(6), atol=1e-5, rtol=0)


LSUV_BAD = [
    (lambda m: lsuv_(m, torch.randn(20, 7)), ValueError, r"shape \(20, 7\).*'fc1' takes 10 input features"),
    (lambda m: lsuv_(m, torch.randn(20, 10, 2)), ValueError, "'fc1' takes 10 input features"),
    (lambda m: lsuv_(m, torch.randint(0, 5, (20, 10))), ValueError, "dtype torch.int64.*of dtype torch.float32"),
    (lambda m: lsuv_(m, torch.randn(20, 10, dtype=torch.float64)), ValueError, "dtype torch.float64"),
    (lambda m: lsuv_(m, torch.tensor(3.0)), ValueError, "0-d tensor"),
    (lambda m: lsuv_(m, torch.randn(0, 10)), ValueError, "at least 2 samples.*batch of 0"),
    (lambda m: lsuv_(m, torch.randn(1, 10)), ValueError, "at least 2 samples"),
    (lambda m: lsuv_(m, [[0.0] * 10] * 4), TypeError, "as a tensor, got list"),
    (lambda m: lsuv_(m, torch.randn(20, 10), tol=float("nan")), ValueError, "tol must be a finite number"),
    (lambda m: lsuv_(m, torch.randn(20, 10), tol=float("inf")), ValueError, "tol must be a finite number"),
    (lambda m: lsuv_(m, torch.randn(20, 10), tol=0.0), ValueError, "tol must be positive"),
    (lambda m: lsuv_(m, torch.randn(20, 10), max_iter=0), ValueError, "max_iter >= 1"),
    (lambda m: lsuv_(m, torch.randn(20, 10), max_iter=2.5), TypeError, "max_iter must be an integer"),
    (lambda m: lsuv_(m, torch.randn(20, 10), layers=["fc1", "fc7"]), ValueError, r"unknown layer\(s\) \['fc7'\]"),
    (lambda m: initialize_(m, "lsuv", torch.randn(20, 3)), ValueError, "takes 10 input features"),
]


@pytest.mark.parametrize("call, error, match", LSUV_BAD)
def test_lsuv_validates_everything_before_changing_the_model(call, error, match):
    model = MLP([10, 12, 3], dropout=0.2)
    model.train()
    snap = snapshot(model)
    with pytest.raises(error, match=match):
        call(model)
    assert_unchanged(model, snap)


@FAST
@given(cells=st.lists(st.tuples(st.integers(0, 19), st.integers(0, 9)), min_size=1, max_size=5),
       value=st.sampled_from([float("nan"), float("inf"), -float("inf")]))
def test_lsuv_rejects_nan_anywhere_and_changes_nothing(cells, value):
    model = MLP([10, 12, 3])
    snap = snapshot(model)
    x = torch.randn(20, 10, generator=gen(6))
    for row, col in cells:
        x[row, col] = value
    with pytest.raises(ValueError, match="NaN or inf in the input batch"):
        lsuv_(model, x)
    assert_unchanged(model, snap)


def test_lsuv_dead_layer_raises_and_restores_every_weight():
    model = MLP([10, 12, 8, 3])
    with torch.no_grad():
        model.fc2.weight.zero_()
        model.fc2.bias.zero_()
    snap = snapshot(model)
    with pytest.raises(RuntimeError, match="layer 'fc2' has variance 0.0.*left as they were"):
        lsuv_(model, torch.randn(50, 10, generator=gen(7)), orthogonal=False)  # fc1 was rescaled first
    assert_unchanged(model, snap)
    model = MLP([10, 12, 3])
    snap = snapshot(model)
    with pytest.raises(RuntimeError, match="layer 'fc1' has variance 0.0"):
        lsuv_(model, torch.zeros(20, 10))  # the orthogonal re-draw happened, then fc1's output is all 0
    assert_unchanged(model, snap)


def test_lsuv_warns_when_a_layer_cannot_reach_unit_variance():
    model = MLP([10, 12, 3])
    with torch.no_grad():
        model.fc1.weight.zero_()  # dead: the output is the bias, whatever the weight's scale
        model.fc1.bias.copy_(torch.linspace(-0.2, 0.2, 12))
    with pytest.warns(RuntimeWarning, match=r"layer 'fc1' did not reach unit variance.*after 4 rescaling\(s\)"):
        _, report = lsuv_(model, torch.randn(30, 10, generator=gen(8)), orthogonal=False, max_iter=4,
                          layers=["fc1"], return_report=True)
    # the output is the bias on every one of the 30 samples: the unbiased variance of 30 x 12 numbers
    bias_variance = torch.linspace(-0.2, 0.2, 12).var(unbiased=False).item() * 360 / 359
    assert report["fc1"]["variance"] == pytest.approx(bias_variance, rel=1e-5)
    assert report["fc1"]["iterations"] == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a layer that converges gives no warning
        _, report = lsuv_(MLP([10, 12, 3]), torch.randn(30, 10, generator=gen(8)), generator=gen(9),
                          return_report=True)
    assert all(abs(r["variance"] - 1) < 0.05 for r in report.values())


def test_lsuv_warning_as_error_restores_the_model():
    model = MLP([10, 12, 8, 3])
    with torch.no_grad():
        model.fc2.weight.zero_()
        model.fc2.bias.copy_(torch.linspace(-0.2, 0.2, 8))
    snap = snapshot(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(RuntimeWarning, match="'fc2' did not reach unit variance"):
            lsuv_(model, torch.randn(30, 10, generator=gen(8)), orthogonal=False, max_iter=2)
    assert_unchanged(model, snap)  # fc1, rescaled before fc2 failed, is restored too


def test_lsuv_takes_a_single_layer_name():
    x = torch.randn(40, 10, generator=gen(10))
    a, b = MLP([10, 12, 3]), MLP([10, 12, 3])
    b.load_state_dict(a.state_dict())
    lsuv_(a, x, layers="fc2", generator=gen(11))
    lsuv_(b, x, layers=["fc2"], generator=gen(11))
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())


# =========================================================================================== campaign
def blobs(n_per_class=20, dim=8, classes=3, seed=0):
    g = gen(seed)
    y = torch.arange(classes).repeat(n_per_class)
    x = torch.randn(len(y), dim, generator=g) + 2.0 * nn.functional.one_hot(y, dim).float()
    return x, y


class _Twice(nn.Module):
    """Feeds its second layer a 3-D input, which the campaign cannot score: a failure after layer 1."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(8, 6)
        self.fc2 = nn.Linear(3, 3)

    def forward(self, x):
        return self.fc2(self.fc1(x).reshape(-1, 2, 3)).mean(1)


CAMPAIGN_BAD = [
    (lambda m, x, y: campaign_(m, torch.randn(60, 7), y), ValueError, r"shape \(60, 7\).*does not fit"),
    (lambda m, x, y: campaign_(m, x.long(), y), ValueError, "dtype torch.int64.*does not fit"),
    (lambda m, x, y: campaign_(m, x, y, alphas=[0.5, 2.0]), ValueError, r"alphas must lie in \[0, 1\].*2\.0"),
    (lambda m, x, y: campaign_(m, x, y, alphas=[0.5, float("nan")]), ValueError, "each alpha must be a finite"),
    (lambda m, x, y: campaign_(m, x, y, alphas=-0.1), ValueError, r"alphas must lie in \[0, 1\]"),
    (lambda m, x, y: campaign_(m, x, y, alphas="0.5"), TypeError, "alphas must be a number"),
    (lambda m, x, y: campaign_(m, x, y, alphas=True), TypeError, "alphas must be a number"),
    (lambda m, x, y: campaign_(m, x, y, alphas=[0.5, 0.5, 0.5]), ValueError, "alphas has 3 entries but 2 layers"),
    (lambda m, x, y: campaign_(m, x, y, candidate_ratio=float("nan")), ValueError, "candidate_ratio must be a finite"),
    (lambda m, x, y: campaign_(m, x, y, candidate_ratio=float("inf")), ValueError, "candidate_ratio must be a finite"),
    (lambda m, x, y: campaign_(m, x, y, max_candidates=2.5), TypeError, "max_candidates must be an integer"),
    (lambda m, x, y: campaign_(m, x, y, batch_size=0), ValueError, "batch_size must be at least 1"),
    (lambda m, x, y: campaign_(m, x, y, response_fn="relu"), TypeError, "response_fn must be a function"),
    (lambda m, x, y: campaign_(m, x, y, response_fn=lambda z: z * float("nan")), ValueError,
     "responses contain NaN or inf"),
    (lambda m, x, y: campaign_(m, x, y, num_classes=2.5), TypeError, "num_classes must be an integer"),
    (lambda m, x, y: campaign_(m, x, y, num_classes=2), ValueError, r"labels must lie in 0\.\.1"),
    (lambda m, x, y: campaign_(m, x, y, num_classes=4), ValueError, r"class\(es\) \[3\] have no sample"),
    (lambda m, x, y: campaign_(m, x, y.float()), ValueError, "integer class indices"),
    (lambda m, x, y: campaign_(m, x, nn.functional.one_hot(y)), ValueError, r"shape \[60\]"),
    (lambda m, x, y: campaign_(m, x, y[:-1]), ValueError, r"shape \[60\]"),
    (lambda m, x, y: campaign_(m, x, torch.zeros_like(y)), ValueError, "single class"),
    (lambda m, x, y: campaign_(m, x[:0], y[:0]), ValueError, "no samples"),
    (lambda m, x, y: campaign_(m, torch.tensor(1.0), y), ValueError, "0-d tensor"),
    (lambda m, x, y: campaign_(m, x.tolist(), y), TypeError, "x must be a tensor"),
    (lambda m, x, y: campaign_(m, x, y, layers=["fc1", "fc9"]), ValueError, r"unknown layer\(s\) \['fc9'\]"),
    (lambda m, x, y: campaign_(m, x, y, base="glorot"), ValueError, "unknown base scheme"),
]


@pytest.mark.parametrize("call, error, match", CAMPAIGN_BAD)
def test_campaign_validates_before_changing_the_model(call, error, match):
    x, y = blobs()
    model = MLP([8, 6, 3], dropout=0.2)
    model.train()
    snap = snapshot(model)
    with pytest.raises(error, match=match):
        call(model, x, y)
    assert_unchanged(model, snap)


def test_campaign_rolls_back_a_failure_after_the_first_layer():
    x, y = blobs()
    model = _Twice()
    snap = snapshot(model)
    with pytest.raises(ValueError, match=r"fed \[N, features\]; got input \(60, 2, 3\)"):
        campaign_(model, x, y, generator=gen(12))
    assert_unchanged(model, snap)
    conv = nn.Sequential(nn.Conv2d(2, 4, 3, groups=2), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    snap = snapshot(conv)
    with pytest.raises(ValueError, match="layer '0' has groups=2"):
        campaign_(conv, torch.randn(30, 2, 6, 6), torch.arange(3).repeat(10))
    assert_unchanged(conv, snap)


@FAST
@given(rows=st.lists(st.integers(0, 59), min_size=1, max_size=5), col=st.integers(0, 7),
       value=st.sampled_from([float("nan"), float("inf"), -float("inf")]))
def test_campaign_rejects_nan_anywhere(rows, col, value):
    x, y = blobs()
    x[rows, col] = value
    model = MLP([8, 6, 3])
    snap = snapshot(model)
    with pytest.raises(ValueError, match="x contains NaN or inf"):
        campaign_(model, x, y)
    assert_unchanged(model, snap)


@FAST
@given(position=st.integers(0, 59), bad=st.one_of(st.integers(4, 10_000), st.integers(-10_000, -1)),
       num_classes=st.sampled_from([None, 3]))
def test_campaign_rejects_labels_out_of_range(position, bad, num_classes):
    # without num_classes, a label 4 or more makes K = label + 1, so class 3 has no sample
    x, y = blobs()
    y[position] = bad
    model = MLP([8, 6, 3])
    snap = snapshot(model)
    match = r"labels must lie in 0\.\." if num_classes or bad < 0 else r"class\(es\) \[.*\] have no sample"
    with pytest.raises(ValueError, match=match):
        campaign_(model, x, y, num_classes=num_classes)
    assert_unchanged(model, snap)


@FAST
@given(missing=st.integers(0, 3), classes=st.just(4))
def test_campaign_rejects_a_missing_class(missing, classes):
    x, y = blobs(classes=classes)
    keep = y != missing
    model = MLP([8, 6, 4])
    snap = snapshot(model)
    with pytest.raises(ValueError, match=rf"class\(es\) \[{missing}\] have no sample"):
        campaign_(model, x[keep], y[keep], num_classes=classes)
    assert_unchanged(model, snap)


@settings(max_examples=len(INT_DTYPES) + len(NP_INT_DTYPES), deadline=None)
@given(dtype=st.sampled_from(INT_DTYPES + NP_INT_DTYPES))
def test_campaign_accepts_every_integer_label_dtype(dtype):
    x, y = blobs()
    a, b = MLP([8, 6, 3]), MLP([8, 6, 3])
    campaign_(a, x, y, generator=gen(13))
    labels = y.numpy().astype(dtype) if isinstance(dtype, type) else y.to(dtype)
    campaign_(b, x, labels, generator=gen(13))
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())


def test_campaign_single_class_is_fine_without_the_target_term():
    x, y = blobs()
    model = MLP([8, 6, 3])
    campaign_(model, x, torch.zeros_like(y), mode="iim", generator=gen(14))
    w = model.fc1.weight
    torch.testing.assert_close(w @ w.T, torch.diag((w * w).sum(1)), atol=1e-6, rtol=0)


@FAST
@given(dtype=st.sampled_from([torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8]),
       seed=st.integers(0, 10_000), k=st.integers(1, 6))
def test_select_neurons_integer_candidates_give_float_directions(dtype, seed, k):
    w = torch.randint(1, 9, (6, 4), generator=gen(seed)).to(dtype)  # positive: no zero row
    scores = torch.rand(6, generator=gen(seed + 1))
    ints = select_neurons(w, scores, k)
    floats = select_neurons(w.float(), scores, k)
    assert ints.directions.dtype == torch.get_default_dtype()  # not truncated to integers
    assert torch.equal(ints.indices, floats.indices)
    torch.testing.assert_close(ints.directions, floats.directions, atol=1e-6, rtol=0)
    gram = ints.directions @ ints.directions.T  # unit vectors: the diagonal is 1
    torch.testing.assert_close(gram.diagonal(), torch.ones(k), atol=1e-5, rtol=0)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"candidates": torch.ones(4, 3, dtype=torch.bool)}, TypeError, "real weight vectors"),
    ({"candidates": torch.ones(4, 3, dtype=torch.complex64)}, TypeError, "real weight vectors"),
    ({"candidates": [[1.0, 0.0]] * 4}, TypeError, "must be tensors"),
    ({"scores": torch.ones(4, dtype=torch.complex64)}, TypeError, "scores must be real"),
    ({"scores": torch.tensor([1.0, float("nan"), 1.0, 1.0])}, ValueError, "finite and non-negative"),
    ({"k": 2.5}, TypeError, "k .* must be an integer"),
    ({"k": True}, TypeError, "k .* must be an integer"),
    ({"k": 0}, ValueError, r"k=0 .* 1\.\.4"),
    ({"tol": float("nan")}, ValueError, "tol must be a finite number"),
    ({"tol": 1.5}, ValueError, r"tol must lie in \[0, 1\)"),
    ({"tol": -0.1}, ValueError, r"tol must lie in \[0, 1\)"),
    ({"groups": torch.tensor([0.0, 0.5, 1.0, 1.0])}, ValueError, "integer group ids"),
    ({"groups": [0, 0, 1, 1]}, TypeError, "groups must be a tensor"),
])
def test_select_neurons_rejects_ill_typed_input(kwargs, error, match):
    args = {"candidates": torch.randn(4, 3, generator=gen(15)), "scores": torch.rand(4, generator=gen(16)), "k": 2,
            **kwargs}
    with pytest.raises(error, match=match):
        select_neurons(args.pop("candidates"), args.pop("scores"), args.pop("k"), **args)


# ======================================================================================== cooperating
def tiny_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def test_path_sum_guard_counts_the_paths_and_states_the_limit():
    net = tiny_net()
    x, y = torch.randn(5, 3, generator=gen(17)), torch.tensor([0, 1, 1, 0, 1])
    count = 4 * 3 * 2 + 3 * 2 + 2  # from each layer's nodes to the outputs: 32
    assert len(co.path_sum_gradients(net, x, y, max_paths=count)) == 3
    with pytest.raises(ValueError, match=r"would enumerate 32 paths .* widths \[4, 3, 2\], more than max_paths=31"):
        co.path_sum_gradients(net, x, y, max_paths=count - 1)
    big = MLP([784, 100, 100, 100, 10])  # 10^7 + 10^5 + 10^3 + 10 paths: refused before any allocation
    with pytest.raises(ValueError, match=r"10,101,010 paths .* max_paths=1,000,000"):
        co.path_sum_gradients(big, torch.randn(2, 784), torch.tensor([0, 1]))


@pytest.mark.parametrize("call, error, match", [
    (lambda n, x, y: co.path_sum_gradients(n, x[:0], y[:0]), ValueError, "x holds no sample"),
    (lambda n, x, y: co.path_sum_gradients(n, torch.randn(5, 4), y), ValueError, "5 features|4 features"),
    (lambda n, x, y: co.path_sum_gradients(n, x[0], y[:1]), ValueError, r"batch \[N, features\].*x\[None\]"),
    (lambda n, x, y: co.path_sum_gradients(n, x.to(torch.complex64), y), TypeError, "real numbers"),
    (lambda n, x, y: co.path_sum_gradients(n, x.tolist(), y), TypeError, "x must be a tensor"),
    (lambda n, x, y: co.path_sum_gradients(n, x, y.float()), ValueError, "integer class indices"),
    (lambda n, x, y: co.path_sum_gradients(n, x, y[:3]), ValueError, r"shape \[5\]"),
    (lambda n, x, y: co.path_sum_gradients(n, x, nn.functional.one_hot(y)), ValueError, r"shape \[5\]"),
    (lambda n, x, y: co.path_sum_gradients(n, x, y, lr=float("nan")), ValueError, "lr must be a finite number"),
    (lambda n, x, y: co.path_sum_gradients(n, x, y, lr=float("inf")), ValueError, "lr must be a finite number"),
    (lambda n, x, y: co.path_sum_gradients(n, x, y, max_paths=0), ValueError, "max_paths must be a positive"),
    (lambda n, x, y: co.path_sum_gradients(n, x, y, max_paths=2.5), ValueError, "max_paths must be a positive"),
    (lambda n, x, y: co.count_active_paths(n, torch.randn(5, 7)), ValueError, "7 features .* first layer takes 3"),
    (lambda n, x, y: co.count_active_paths(n, torch.full((5, 3), float("nan"))), ValueError, "NaN or inf"),
])
def test_path_view_rejects_bad_input(call, error, match):
    net = tiny_net()
    snap = snapshot(net)
    with pytest.raises(error, match=match):
        call(net, torch.randn(5, 3, generator=gen(18)), torch.tensor([0, 1, 1, 0, 1]))
    assert_unchanged(net, snap)


@FAST
@given(rows=st.lists(st.integers(0, 4), min_size=1, max_size=3), col=st.integers(0, 2),
       value=st.sampled_from([float("nan"), float("inf"), -float("inf")]))
def test_path_sum_rejects_nan_anywhere(rows, col, value):
    x = torch.randn(5, 3, generator=gen(19))
    x[rows, col] = value
    with pytest.raises(ValueError, match="x contains NaN or inf"):
        co.path_sum_gradients(tiny_net(), x, torch.tensor([0, 1, 1, 0, 1]))


@FAST
@given(position=st.integers(0, 4), bad=st.one_of(st.integers(2, 1000), st.integers(-1000, -1)))
def test_path_sum_rejects_labels_out_of_range(position, bad):
    y = torch.tensor([0, 1, 1, 0, 1])
    y[position] = bad
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.1"):
        co.path_sum_gradients(tiny_net(), torch.randn(5, 3), y)


@settings(max_examples=len(INT_DTYPES) + len(NP_INT_DTYPES), deadline=None)
@given(dtype=st.sampled_from(INT_DTYPES + NP_INT_DTYPES))
def test_path_sum_accepts_every_integer_label_dtype(dtype):
    net, x, y = tiny_net(), torch.randn(5, 3, generator=gen(20)), torch.tensor([0, 1, 1, 0, 1])
    labels = y.numpy().astype(dtype) if isinstance(dtype, type) else y.to(dtype)
    for (w1, b1), (w2, b2) in zip(co.path_sum_gradients(net, x, labels), co.path_sum_gradients(net, x, y)):
        assert torch.equal(w1, w2) and torch.equal(b1, b2)


# ========================================================================================== classwise
@pytest.mark.parametrize("dtype", [np.uint16, np.uint32, np.uint64, torch.uint16, torch.uint32, torch.uint64])
def test_check_labels_accepts_wide_unsigned_labels(dtype):
    y = np.array([0, 2, 1, 2])
    labels = y.astype(dtype) if isinstance(dtype, type) else torch.from_numpy(y).to(dtype)
    checked, k = check_labels(labels, 4, every_class=True)
    assert checked.dtype == torch.long and checked.tolist() == [0, 2, 1, 2] and k == 3


def test_check_labels_rejects_huge_unsigned_labels():
    with pytest.raises(ValueError, match=r"2\*\*63 or more"):
        check_labels(np.array([0, 2**63 + 1], dtype=np.uint64), 2)
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.2, got values from 0 to 9"):
        check_labels(np.array([0, 9], dtype=np.uint32), 2, 3)
