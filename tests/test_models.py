"""neuronlab.models: layer names, parameter counts by closed form, shapes, paper conventions."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from neuronlab.models import (GCN, MLP, PAPER_MLP_WIDTHS, GraphSAGE, SmallCNN, build_model, count_parameters,
                              paper_mlp, resnet18_cifar, vgg19_cifar)


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


def test_nsr_widths_are_those_of_the_official_repository():
    # README "Model" table of HaitaoMao/Neuron-with-Steady-Response-Leads-to-Better-Generalization
    hidden = {"MLP-3": [100], "MLP-4": [256, 100], "MLP-6": [256, 128, 64, 32],
              "MLP-8": [256, 128, 64, 32, 32, 16], "MLP-10": [256, 128, 64, 64, 32, 32, 16, 16]}
    for name, h in hidden.items():
        assert PAPER_MLP_WIDTHS[name] == [784, *h, 10]
        assert paper_mlp(name).depth == int(name.split("-")[1]) - 1
    assert paper_mlp("IBCI-5").widths == [784, 32, 32, 32, 32, 10]
    model = paper_mlp("mlp-4", batchnorm=True)  # case-insensitive, keywords reach MLP
    assert isinstance(model.bn1, nn.BatchNorm1d) and model.bn1.num_features == 256


@pytest.mark.parametrize("name, cls", [("relu", nn.ReLU), ("tanh", nn.Tanh), ("sigmoid", nn.Sigmoid),
                                       ("linear", nn.Identity), ("identity", nn.Identity),
                                       ("leaky_relu", nn.LeakyReLU), ("gelu", nn.GELU), ("ReLU", nn.ReLU)])
def test_every_named_activation(name, cls):
    model = MLP([3, 4, 4, 2], activation=name)
    assert isinstance(model.act1, cls) and isinstance(model.act2, cls) and model.act1 is not model.act2


def test_activation_instances_are_copied_and_never_in_place():
    shared = nn.ReLU(inplace=True)
    model = MLP([3, 4, 4, 2], activation=shared)
    assert model.act1 is not model.act2 and model.act1 is not shared
    assert not model.act1.inplace and not model.act2.inplace
    assert not MLP([3, 4, 2], activation=lambda: nn.ReLU(inplace=True)).act1.inplace
    with pytest.raises(ValueError, match="nn.Module"):
        MLP([3, 4, 2], activation=lambda: "relu")


def test_linear_mlp_is_the_product_of_its_weights():
    torch.manual_seed(0)
    model = MLP([5, 4, 3], activation="linear")
    x = torch.randn(6, 5)
    w1, b1, w2, b2 = model.fc1.weight, model.fc1.bias, model.fc2.weight, model.fc2.bias
    assert torch.allclose(model(x), (x @ w1.T + b1) @ w2.T + b2, atol=1e-6)


def test_small_cnn_options():
    model = SmallCNN(in_channels=3, num_classes=7, channels=(4, 6), hidden=16, image_size=32,
                     batchnorm=True, dropout=0.3)
    names = [n for n, _ in model.named_children()]
    assert names == ["conv1", "bn1", "act1", "pool1", "conv2", "bn2", "act2", "pool2", "flatten", "fc1",
                     "act3", "drop", "fc2"]
    assert model.fc1.in_features == 6 * 8 * 8
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_resnet18_cifar_stem_keeps_resolution_and_stages_halve_it():
    model = resnet18_cifar(width=8).eval()
    x = torch.randn(1, 3, 32, 32)
    stem = model.act1(model.bn1(model.conv1(x)))
    assert stem.shape == (1, 8, 32, 32)  # 3x3 stride-1 stem, no max-pool
    out = model.layer4(model.layer3(model.layer2(model.layer1(stem))))
    assert out.shape == (1, 64, 4, 4)
    assert model.conv1.kernel_size == (3, 3) and not any(isinstance(m, nn.MaxPool2d) for m in model.modules())


def test_vgg19_without_batchnorm_and_block_layout():
    cfg = [[64, 64], [128, 128], [256] * 4, [512] * 4, [512] * 4]
    model = vgg19_cifar(num_classes=100, batchnorm=False)
    cin, expected = 3, 0
    for block in cfg:
        for c in block:
            expected += 9 * cin * c + c
            cin = c
    assert count_parameters(model) == expected + 512 * 100 + 100
    small = vgg19_cifar(width=8)
    assert [n for n, _ in small.features.named_children()] == [f"block{b}" for b in range(1, 6)]
    assert [n for n, _ in small.features.block1.named_children()] == ["conv1", "bn1", "act1", "conv2", "bn2",
                                                                      "act2", "pool"]


def test_one_layer_gcn_equals_the_normalized_adjacency_formula():
    torch.manual_seed(0)
    edge_index = torch.tensor([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]])  # path 0-1-2-3
    x = torch.randn(4, 5)
    model = GCN(5, 8, 3, num_layers=1)
    a = torch.zeros(4, 4)
    a[edge_index[0], edge_index[1]] = 1
    a_hat = a + torch.eye(4)
    d = a_hat.sum(1).rsqrt()
    lin = model.conv1.lin.weight
    expected = d[:, None] * a_hat * d[None, :] @ x @ lin.T + model.conv1.bias
    assert torch.allclose(model(x, edge_index), expected, atol=1e-5)


def test_graphsage_uses_mean_aggregation_and_validates_arguments():
    assert GraphSAGE(5, 8, 3).conv1.aggr == "mean"
    with pytest.raises(ValueError, match="dropout"):
        GCN(5, 8, 3, dropout=1.5)
    with pytest.raises(ValueError, match="positive"):
        GraphSAGE(5, 0, 3)


def test_importing_the_graph_models_emits_no_future_warning():
    import subprocess
    import sys
    from pathlib import Path

    code = "from neuronlab.models import GCN; GCN(2, 2, 2)"
    result = subprocess.run([sys.executable, "-W", "error::FutureWarning", "-c", code], capture_output=True,
                            text=True, cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_build_model_sizes_every_family_for_its_data():
    dense = SimpleNamespace(x_train=torch.zeros(4, 20), num_classes=3)
    images = SimpleNamespace(x_train=torch.zeros(4, 1, 28, 28), num_classes=10)
    assert build_model("mlp-4").widths == [784, 256, 100, 10]          # case does not matter
    assert build_model("IBCI-5").widths == [784, 32, 32, 32, 32, 10]
    assert build_model("MLP-2x50", dense, activation="tanh").widths == [20, 50, 50, 3]
    assert build_model("MLP-0x7", dense).widths == [20, 3]
    cnn = build_model("SmallCNN-16-32", images)
    assert cnn.conv1.out_channels == 16 and cnn.fc2.out_features == 10
    assert build_model("SmallCNN", images, batchnorm=True).conv2.out_channels == 64
    assert build_model("ResNet-18-w16", images)(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert build_model("VGG-19-w8", num_classes=4, in_channels=3)(torch.zeros(2, 3, 32, 32)).shape == (2, 4)
    with pytest.raises(ValueError, match="flatten=False"):
        build_model("SmallCNN", SimpleNamespace(x_train=torch.zeros(4, 784), num_classes=10))
    with pytest.raises(ValueError, match="needs in_features"):
        build_model("MLP-2x50")
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("Transformer-12")
    with pytest.raises(TypeError, match="unexpected"):
        build_model("MLP-4", widht=3)


def test_build_model_graph_networks_take_their_sizes_from_the_graph():
    graph = SimpleNamespace(num_features=6, num_classes=4)
    gcn = build_model("GCN-3", graph)
    assert gcn.num_layers == 3 and gcn.dropout.p == 0.5
    assert build_model("GraphSAGE-2", graph, dropout=0.1).dropout.p == 0.1
    x, edge_index = torch.randn(5, 6), torch.tensor([[0, 1, 2], [1, 2, 3]])
    assert gcn(x, edge_index).shape == (5, 4)
