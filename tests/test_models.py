"""neuronlab.models: layer names, parameter counts by closed form, shapes, paper conventions."""

import pytest
import torch
from torch import nn

from neuronlab.models import (GCN, MLP, PAPER_MLP_WIDTHS, GraphSAGE, SmallCNN, count_parameters, paper_mlp,
                              resnet18_cifar, vgg19_cifar)


def test_mlp_names_order_and_parameter_count():
    model = MLP([784, 256, 100, 10], batchnorm=True, dropout=0.2)
    names = [n for n, _ in model.named_children()]
    assert names == ["flatten", "fc1", "bn1", "act1", "drop1", "fc2", "bn2", "act2", "drop2", "fc3"]
    linear = 784 * 256 + 256 + 256 * 100 + 100 + 100 * 10 + 10
    batchnorm = 2 * (256 + 100)
    assert count_parameters(model) == linear + batchnorm
    assert model.depth == 3 and model.linear_names == ["fc1", "fc2", "fc3"]
    assert model.activation_names == ["act1", "act2"]
    assert model(torch.randn(5, 1, 28, 28)).shape == (5, 10)


def test_mlp_without_bias_and_activation_choices():
    model = MLP([10, 20, 3], bias=False, activation="tanh")
    assert model.fc1.bias is None and isinstance(model.act1, nn.Tanh)
    assert isinstance(MLP([4, 4, 2], activation=nn.SiLU).act1, nn.SiLU)
    relu = MLP([4, 4, 2]).act1
    assert isinstance(relu, nn.ReLU) and not relu.inplace


def test_paper_depth_conventions_name_the_same_networks():
    assert paper_mlp("MLP-4").widths == paper_mlp("IBCI-3").widths == [784, 256, 100, 10]
    assert paper_mlp("MLP-3").widths == paper_mlp("IBCI-2").widths == [784, 100, 10]
    # NSR counts the input layer: MLP-k has k - 1 weight layers
    for name, widths in PAPER_MLP_WIDTHS.items():
        if name.startswith("MLP-"):
            assert len(widths) == int(name.split("-")[1]) and widths[0] == 784 and widths[-1] == 10
    assert paper_mlp("IBCI-5").depth == 5


def test_bad_configurations_raise_clear_errors():
    with pytest.raises(ValueError, match="choose one of"):
        MLP([4, 2], activation="swishy")
    with pytest.raises(ValueError, match="at least 2"):
        MLP([4])
    with pytest.raises(ValueError, match="positive"):
        MLP([4, 0, 2])
    with pytest.raises(ValueError, match="dropout"):
        MLP([4, 4, 2], dropout=1.0)
    with pytest.raises(ValueError, match="Unknown paper MLP"):
        paper_mlp("MLP-5")


def test_small_cnn_shapes_and_names():
    model = SmallCNN()
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert {"conv1", "conv2", "fc1", "fc2"} <= dict(model.named_children()).keys()
    # conv: 9*cin*cout + cout; fc1 sees 64 channels of 7x7
    expected = (9 * 1 * 32 + 32) + (9 * 32 * 64 + 64) + (64 * 49 * 128 + 128) + (128 * 10 + 10)
    assert count_parameters(model) == expected


def test_resnet18_has_the_standard_parameter_count():
    assert count_parameters(resnet18_cifar()) == 11_173_962
    narrow = resnet18_cifar(in_channels=1, width=8)
    assert narrow(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert {"layer1", "layer4", "pool", "fc"} <= dict(narrow.named_children()).keys()


def test_vgg19_parameter_count_by_closed_form():
    cfg = [64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512]
    cin, expected = 3, 0
    for c in cfg:
        expected += 9 * cin * c + c + 2 * c  # conv weight + bias + BN affine
        cin = c
    expected += 512 * 10 + 10
    model = vgg19_cifar()
    assert count_parameters(model) == expected
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 16
    small = vgg19_cifar(width=8)
    assert small(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert "features.block1" in dict(small.named_modules())


@pytest.mark.parametrize("cls", [GCN, GraphSAGE])
def test_graph_networks_shapes_and_named_convs(cls):
    edge_index = torch.tensor([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]])
    model = cls(5, 16, 3, num_layers=3)
    assert model(torch.randn(4, 5), edge_index).shape == (4, 3)
    assert {"conv1", "act1", "conv2", "act2", "conv3"} <= dict(model.named_children()).keys()
    with pytest.raises(ValueError):
        cls(5, 16, 3, num_layers=0)
