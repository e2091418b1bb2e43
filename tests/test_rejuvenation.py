"""Neural Rejuvenation against hand counts, autograd and an ablated twin of the network.

The facts checked: the dead criterion on hand cases and its scale invariance; utilization counted by hand
and by element-wise masks; the gamma-L1 term's value and gradient (lam * sign); what ``rejuvenate_``
writes (gamma, beta, statistics, zero cross connections, He statistics), what it leaves bit for bit
(everything between surviving neurons), and the function it leaves: the old network with its dead
neurons silenced.
"""

import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from neuronlab import models
from neuronlab.rejuvenation import (DEAD_THRESHOLD, GammaL1, Rejuvenator, batchnorm_pairs, dead_neurons, live_fraction,
                                    rejuvenate_, utilization)
from neuronlab.train import fit


def tiny_chain():
    """Conv(2->4) BN ReLU Conv(4->6) BN ReLU AvgPool(2) Flatten Linear(24->5): the module docstring's chain."""
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(6 * 4, 5))


def randomise_(model, generator):
    """Random weights, biases and BatchNorm parameters/statistics, so that 'untouched' means something."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * 0.3)
                module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.1)
            elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                n = module.num_features
                module.weight.copy_(0.5 + torch.rand(n, generator=generator))  # |gamma| in [0.5, 1.5)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.2)
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
    return model


def kill_(bn, channels, generator, silent=False):
    """Make ``channels`` dead: |gamma| ~ 1e-4 (below 1 % of >= 0.5), either sign; beta 0 if ``silent``."""
    with torch.no_grad():
        signs = torch.where(torch.rand(len(channels), generator=generator) < 0.5, -1.0, 1.0)
        bn.weight[channels] = 0.0 if silent else 1e-4 * signs
        if silent:
            bn.bias[channels] = 0.0


def silenced(model, dead):
    """A copy of ``model`` whose BatchNorms output 0 on the ``dead`` channels ({bn name: bool mask})."""
    twin = copy.deepcopy(model)
    modules = dict(twin.named_modules())
    for name, mask in dead.items():
        def zero(module, inputs, output, mask=mask):
            output = output.clone()
            output[:, mask] = 0
            return output
        modules[name].register_forward_hook(zero)
    return twin


# ------------------------------------------------------------------------------------------ criterion
def test_dead_criterion_hand_case():
    gamma = torch.tensor([1.0, 0.005, -0.02, 0.0])
    assert dead_neurons(gamma).tolist() == [False, True, False, True]
    bn = nn.BatchNorm1d(4)
    with torch.no_grad():
        bn.weight.copy_(gamma)
    assert dead_neurons(bn).tolist() == [False, True, False, True]
    # threshold 0.03: 0.02 < 0.03 * 1 is dead too; threshold 0.001: 0.005 lives, only the exact 0 is dead
    assert dead_neurons(gamma, threshold=0.03).tolist() == [False, True, True, True]
    assert dead_neurons(gamma, threshold=0.001).tolist() == [False, False, False, True]
    assert dead_neurons(torch.zeros(3)).tolist() == [True, True, True]  # max |gamma| = 0: all dead
    assert DEAD_THRESHOLD == 0.01


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-10, 10, allow_nan=False), min_size=1, max_size=12), st.integers(-8, 8))
def test_dead_criterion_ignores_sign_and_scale(values, power):
    gamma = torch.tensor(values, dtype=torch.float64)
    scale = 2.0 ** power  # a power of two: the scaled comparison is exact
    assert torch.equal(dead_neurons(gamma), dead_neurons(-gamma))
    assert torch.equal(dead_neurons(gamma), dead_neurons(scale * gamma))
    largest = gamma.abs().max()
    if largest > 0:
        assert not dead_neurons(gamma)[gamma.abs().argmax()]  # the largest always lives


def test_live_fraction_and_utilization_by_hand():
    model = tiny_chain()
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([1.0, 0.0, 0.8, 0.004]))  # layer 1: live 2 of 4 (0 and 2)
        model[4].weight.copy_(torch.tensor([0.3, 0.001, 1.0, 0.0, -0.5, 1e-3]))  # layer 2: live 3 of 6
    assert live_fraction(model) == pytest.approx(5 / 10)
    # conv1: 4*2*9 weights + 4 biases = 76; live: 2 outputs x 2 inputs (the image) x 9 + 2 biases = 38
    # conv2: 6*4*9 + 6 = 222; live: 3 outputs x 2 live inputs x 9 + 3 = 57
    # fc (no BN, outputs live): 5*24 + 5 = 125; live: 5 outputs x (3 live channels x 4 features) + 5 = 65
    assert utilization(model) == pytest.approx((38 + 57 + 65) / (76 + 222 + 125), rel=1e-12)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.booleans(), min_size=4, max_size=4), st.lists(st.booleans(), min_size=6, max_size=6))
def test_utilization_equals_a_count_of_element_masks(dead1, dead2):
    """Reference written differently: mark every weight entry live or not, then count the marks."""
    model = models.SmallCNN(in_channels=1, channels=(4, 6), hidden=7, image_size=8, batchnorm=True)
    dead1, dead2 = torch.tensor(dead1), torch.tensor(dead2)
    if dead1.all() or dead2.all():
        return  # a layer of zeros only is all dead, also by the criterion; covered elsewhere
    with torch.no_grad():
        model.bn1.weight.copy_(torch.where(dead1, 0.0, 1.0))
        model.bn2.weight.copy_(torch.where(dead2, 0.0, 1.0))
    live1, live2 = ~dead1, ~dead2
    marks = {
        "conv1.weight": live1[:, None, None, None].expand(4, 1, 3, 3),
        "conv1.bias": live1,
        "conv2.weight": (live2[:, None] & live1[None, :])[:, :, None, None].expand(6, 4, 3, 3),
        "conv2.bias": live2,
        # fc1 reads the flattened [6, 2, 2] map: feature f belongs to channel f // 4
        "fc1.weight": torch.stack([live2[f // 4] for f in range(24)]).expand(7, 24),
        "fc1.bias": torch.ones(7, dtype=torch.bool),
        "fc2.weight": torch.ones(10, 7, dtype=torch.bool),
        "fc2.bias": torch.ones(10, dtype=torch.bool),
    }
    expected = sum(int(m.sum()) for m in marks.values()) / sum(m.numel() for m in marks.values())
    assert utilization(model) == pytest.approx(expected, rel=1e-12)


def test_batchnorm_pairs_on_the_book_models():
    cnn = models.SmallCNN(channels=(4, 8), hidden=16, batchnorm=True)
    assert [(n, b) for n, _, b, _ in batchnorm_pairs(cnn)] == [("conv1", "bn1"), ("conv2", "bn2")]
    mlp = models.build_model("MLP-3x16", in_features=10, num_classes=3, batchnorm=True)
    pairs = batchnorm_pairs(mlp)
    assert [(n, b) for n, _, b, _ in pairs] == [("fc1", "bn1"), ("fc2", "bn2"), ("fc3", "bn3")]
    assert pairs[0][1] is mlp.fc1 and pairs[0][3] is mlp.bn1
    vgg = models.vgg19_cifar(width=8)
    assert len(batchnorm_pairs(vgg)) == 16
    assert utilization(cnn) == 1.0 and live_fraction(mlp) == 1.0


# ------------------------------------------------------------------------------------------ pressure
def test_gamma_l1_value_and_gradient():
    g = torch.Generator().manual_seed(0)
    model = randomise_(models.SmallCNN(channels=(3, 5), hidden=8, image_size=8, batchnorm=True), g)
    with torch.no_grad():
        model.bn1.weight[1] = -0.7
        model.bn2.weight[0] = 0.0  # |x| at 0: autograd gives 0 = sign(0), as lam * sign(gamma) does
    lam = 0.3
    gammas = [model.bn1.weight, model.bn2.weight]
    value = GammaL1(model, lam=lam)(None)
    assert value.item() == pytest.approx(lam * sum(float(gm.detach().abs().sum()) for gm in gammas), rel=1e-6)
    value.backward()
    for gm in gammas:
        torch.testing.assert_close(gm.grad, lam * torch.sign(gm.detach()))
    assert model.conv1.weight.grad is None  # only the scales are penalised


def test_training_with_gamma_l1_lowers_utilization_and_the_rejuvenator_stops_fit():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1024, 12, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()  # 3 classes that need few of the 64 neurons
    torch.manual_seed(0)
    model = models.MLP([12, 32, 32, 3], batchnorm=True)
    with torch.no_grad():
        model.bn1.weight.fill_(0.5)  # the official start value of gamma
        model.bn2.weight.fill_(0.5)
    start = utilization(model)
    rejuvenator = Rejuvenator(model, target=0.6, seed=0)
    history = fit(model, {"train": (x, y)}, epochs=15, lr=0.1, momentum=0.9, batch_size=32, seed=0,
                  extra_losses={"gamma_l1": GammaL1(model, lam=0.01)}, callbacks=[rejuvenator])
    table = history.table
    assert start == 1.0 and table["utilization"].iloc[-1] < start
    assert rejuvenator.done and len(table) < 15  # stopped on the epoch it rejuvenated
    assert table["utilization"].iloc[-1] <= 0.6 and (table["utilization"].iloc[:-1] > 0.6).all()
    assert table["rejuvenated"].iloc[-1] == sum(rejuvenator.counts.values()) > 0
    assert (table["rejuvenated"].iloc[:-1] == 0).all()
    assert live_fraction(model) == 1.0  # rejuvenated
    assert rejuvenator.step() is None  # only once


# ------------------------------------------------------------------------------------------ rejuvenation
def test_rejuvenate_writes_the_official_start_values_and_zero_cross_connections():
    g = torch.Generator().manual_seed(2)
    model = randomise_(tiny_chain(), g)
    conv1, bn1, conv2, bn2, fc = model[0], model[1], model[3], model[4], model[8]
    dead1, dead2 = [1, 3], [0, 2, 5]
    kill_(bn1, dead1, g)
    kill_(bn2, dead2, g)
    before = copy.deepcopy(model)
    counts = rejuvenate_(model, gamma=0.5, generator=torch.Generator().manual_seed(0))
    assert counts == {"1": 2, "4": 3}
    live1, live2 = [0, 2], [1, 3, 4]
    for bn, dead in ((bn1, dead1), (bn2, dead2)):
        assert torch.equal(bn.weight[dead].detach(), torch.full((len(dead),), 0.5))
        assert torch.equal(bn.bias[dead].detach(), torch.zeros(len(dead)))
        assert torch.equal(bn.running_mean[dead], torch.zeros(len(dead)))
        assert torch.equal(bn.running_var[dead], torch.ones(len(dead)))
    assert torch.equal(conv1.bias[dead1].detach(), torch.zeros(2))
    assert torch.equal(conv2.bias[dead2].detach(), torch.zeros(3))
    w2 = conv2.weight.detach()
    assert (w2[dead2][:, live1] == 0).all()  # S->R
    assert (w2[live2][:, dead1] == 0).all()  # R->S
    assert (w2[dead2][:, dead1] != 0).all()  # R->R drawn
    assert (conv1.weight[dead1].detach() != 0).all()  # first layer: revived read the image
    fc_cols = torch.arange(24).view(6, 4)  # channel c -> features 4c .. 4c+3
    assert (fc.weight[:, fc_cols[dead2].flatten()].detach() == 0).all()  # R->S into a layer without BN
    # surviving -> surviving: bit for bit
    old = dict(before.named_parameters())
    assert torch.equal(conv1.weight[live1], old["0.weight"][live1])
    assert torch.equal(conv2.weight[live2][:, live1], old["3.weight"][live2][:, live1])
    assert torch.equal(fc.weight[:, fc_cols[live2].flatten()], old["8.weight"][:, fc_cols[live2].flatten()])
    assert torch.equal(fc.bias, old["8.bias"])
    for index, live in ((1, live1), (4, live2)):
        for key in ("weight", "bias", "running_mean", "running_var"):
            assert torch.equal(getattr(model[index], key)[live], getattr(before[index], key)[live])
    assert live_fraction(model) == 1.0 and utilization(model) == 1.0  # nothing dead afterwards


def test_revived_weights_have_he_statistics_with_fan_out():
    g = torch.Generator().manual_seed(3)
    model = randomise_(nn.Sequential(nn.Conv2d(3, 256, 3), nn.BatchNorm2d(256), nn.ReLU(),
                                     nn.Conv2d(256, 256, 3), nn.BatchNorm2d(256), nn.ReLU()), g)
    dead = torch.arange(0, 256, 2)
    kill_(model[1], dead, g)
    kill_(model[4], dead, g)
    rejuvenate_(model, generator=torch.Generator().manual_seed(0))
    fan = 256 * 3 * 3  # out_channels * kh * kw, the official n
    first = model[0].weight[dead].detach()  # 128 x 3 x 3 x 3 draws
    second = model[3].weight[dead][:, dead].detach()  # 128 x 128 x 3 x 3 draws
    for draws in (first, second):
        assert draws.std().item() == pytest.approx(math.sqrt(2 / fan), rel=0.2)
        assert abs(draws.mean().item()) < 0.2 * math.sqrt(2 / fan)
    linear = randomise_(models.MLP([64, 512, 512, 3], batchnorm=True), g)
    kill_(linear.bn1, dead, g)
    kill_(linear.bn2, dead, g)
    rejuvenate_(linear, generator=torch.Generator().manual_seed(1))
    assert linear.fc2.weight[dead][:, dead].std().item() == pytest.approx(math.sqrt(2 / 512), rel=0.2)


def test_rejuvenated_network_computes_the_old_one_with_dead_neurons_silenced():
    """R->S zero everywhere: surviving neurons and the logits never see a revived neuron."""
    g = torch.Generator().manual_seed(4)
    cnn = randomise_(models.SmallCNN(in_channels=1, channels=(6, 8), hidden=10, image_size=12, batchnorm=True), g)
    mlp = randomise_(models.build_model("MLP-3x16", in_features=9, num_classes=4, batchnorm=True), g)
    cases = [(cnn, {"bn1": [0, 4], "bn2": [1, 2, 7]}, torch.randn(16, 1, 12, 12, generator=g)),
             (mlp, {"bn1": [3, 5, 6], "bn2": [], "bn3": list(range(0, 16, 3))}, torch.randn(16, 9, generator=g))]
    for model, dead, x in cases:
        modules = dict(model.named_modules())
        for name, channels in dead.items():
            kill_(modules[name], channels, g)
        masks = {name: dead_neurons(modules[name]) for name in dead}
        reference = silenced(model, masks).eval()
        rejuvenate_(model, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            torch.testing.assert_close(model.eval()(x), reference(x), rtol=1e-5, atol=1e-6)


def test_exactly_silent_dead_neurons_leave_the_output_unchanged_in_eval_and_train_mode():
    g = torch.Generator().manual_seed(5)
    model = randomise_(models.SmallCNN(in_channels=1, channels=(6, 8), hidden=10, image_size=12, batchnorm=True), g)
    kill_(model.bn1, [1, 5], g, silent=True)  # gamma = beta = 0 before a ReLU: output exactly 0
    kill_(model.bn2, [0, 3, 4], g, silent=True)
    x = torch.randn(32, 1, 12, 12, generator=g)
    with torch.no_grad():
        before_eval = model.eval()(x)
        before_train = copy.deepcopy(model).train()(x)  # batch statistics; a copy keeps running stats
        rejuvenate_(model, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(model.eval()(x), before_eval, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(model.train()(x), before_train, rtol=1e-5, atol=1e-6)


def test_revived_neurons_read_every_input_when_the_layer_before_revived_none():
    g = torch.Generator().manual_seed(6)
    model = randomise_(models.MLP([8, 10, 12, 3], batchnorm=True), g)
    kill_(model.bn2, [2, 7], g)  # bn1 keeps all its neurons
    rejuvenate_(model, generator=torch.Generator().manual_seed(0))
    assert (model.fc2.weight[[2, 7]] != 0).all()
    with torch.no_grad():
        pre_activation = model.fc2(model.act1(model.bn1.eval()(model.fc1(torch.randn(64, 8, generator=g)))))
    assert (pre_activation[:, [2, 7]].std(0) > 0).all()  # not a constant: the neuron can learn


def test_rejuvenate_is_reproducible_and_returns_every_batchnorm():
    g = torch.Generator().manual_seed(7)
    model = randomise_(models.MLP([5, 6, 6, 2], batchnorm=True), g)
    kill_(model.bn1, [0], g)
    twin = copy.deepcopy(model)
    assert rejuvenate_(model, generator=torch.Generator().manual_seed(9)) == {"bn1": 1, "bn2": 0}
    rejuvenate_(twin, generator=torch.Generator().manual_seed(9))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), twin.state_dict().values()))


# ------------------------------------------------------------------------------------------ bad input
def test_bad_models_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="no BatchNorm"):
        batchnorm_pairs(models.MLP([4, 5, 2]))
    with pytest.raises(ValueError, match="no BatchNorm"):
        GammaL1(models.MLP([4, 5, 2]))
    with pytest.raises(ValueError, match="6 channels"):
        utilization(nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(6)))
    with pytest.raises(ValueError, match="before any"):
        batchnorm_pairs(nn.Sequential(nn.BatchNorm1d(4), nn.Linear(4, 5)))
    with pytest.raises(ValueError, match="residual"):
        batchnorm_pairs(models.resnet18_cifar(width=4))  # a shortcut conv breaks the chain
    with pytest.raises(ValueError, match="Conv1d"):
        batchnorm_pairs(nn.Sequential(nn.Conv1d(2, 3, 1), nn.Linear(3, 4), nn.BatchNorm1d(4)))
    with pytest.raises(ValueError, match="affine"):
        batchnorm_pairs(nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, affine=False)))
    with pytest.raises(TypeError):
        live_fraction("not a model")


@pytest.mark.parametrize("gamma", [torch.zeros(2, 3), torch.zeros(0), torch.tensor([1.0, float("nan")]),
                                   torch.tensor([1, 0])])
def test_bad_gammas_are_refused(gamma):
    with pytest.raises(ValueError):
        dead_neurons(gamma)


def test_bad_numbers_are_refused_before_anything_changes():
    g = torch.Generator().manual_seed(8)
    model = randomise_(models.MLP([4, 6, 2], batchnorm=True), g)
    kill_(model.bn1, [1], g)
    state = copy.deepcopy(model.state_dict())
    for kwargs in ({"threshold": 0.0}, {"threshold": 1.0}, {"threshold": -0.1}, {"gamma": 0.0},
                   {"gamma": -0.5}, {"gamma": float("nan")}, {"gamma": 1e-3}):  # 1e-3 < 0.01 * |gamma| >= 0.5
        with pytest.raises(ValueError):
            rejuvenate_(model, **kwargs)
    with pytest.raises(TypeError):
        rejuvenate_(model, gamma="0.5")
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    for lam in (-1e-4, float("inf")):
        with pytest.raises(ValueError, match="lam"):
            GammaL1(model, lam=lam)
    for target in (0.0, 1.5):
        with pytest.raises(ValueError, match="target"):
            Rejuvenator(model, target=target)
    with pytest.raises(ValueError, match="threshold"):
        live_fraction(model, threshold=2.0)
