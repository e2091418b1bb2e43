"""The networks of the book, with named layers so that every layer can be probed by name.

Depth conventions differ between the papers this book reproduces, for the *same* networks:

* the NSR paper (Fu et al., NeurIPS 2022) counts the input layer: ``MLP-3`` is 784-100-10 and ``MLP-4``
  is 784-256-100-10;
* the IBCI paper (Mao et al., CIKM 2021) counts weight layers: 784-100-10 is its "2 layers",
  784-256-100-10 its "3 layers", and 784-32-32-32-32-10 its "5 layers".

:func:`paper_mlp` accepts both names (``"MLP-4"`` and ``"IBCI-3"`` are the same network), and
:class:`MLP.depth` is always the number of linear (weight) layers.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from typing import Callable, Dict, List, Sequence, Union

import torch
from torch import nn

__all__ = [
    "ACTIVATIONS",
    "PAPER_MLP_WIDTHS",
    "MLP",
    "paper_mlp",
    "SmallCNN",
    "resnet18_cifar",
    "vgg19_cifar",
    "GCN",
    "GraphSAGE",
    "count_parameters",
]

ACTIVATIONS: Dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "linear": nn.Identity,
    "identity": nn.Identity,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
}

#: Layer widths (input, hidden..., output) of the papers' MNIST MLPs. NSR's widths are those of the
#: official repository's README (hidden 100 / 256-100 / 256-128-64-32 / 256-128-64-32-32-16 /
#: 256-128-64-64-32-32-16-16); IBCI's are from its Table 1.
PAPER_MLP_WIDTHS: Dict[str, List[int]] = {
    "MLP-3": [784, 100, 10],
    "MLP-4": [784, 256, 100, 10],
    "MLP-6": [784, 256, 128, 64, 32, 10],
    "MLP-8": [784, 256, 128, 64, 32, 32, 16, 10],
    "MLP-10": [784, 256, 128, 64, 64, 32, 32, 16, 16, 10],
    "IBCI-2": [784, 100, 10],
    "IBCI-3": [784, 256, 100, 10],
    "IBCI-5": [784, 32, 32, 32, 32, 10],
}


def _activation_factory(activation: Union[str, Callable[[], nn.Module]]) -> Callable[[], nn.Module]:
    if isinstance(activation, str):
        key = activation.lower()
        if key not in ACTIVATIONS:
            raise ValueError(f"Unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)} "
                             "or pass an nn.Module class.")
        return ACTIVATIONS[key]
    if callable(activation):
        return activation
    raise ValueError(f"activation must be a name or an nn.Module class, got {activation!r}")


def _check_dropout(dropout: float) -> None:
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")


class MLP(nn.Sequential):
    """A fully connected network with named layers: ``flatten, fc1, [bn1], act1, [drop1], fc2, ..., fcL``.

    Args:
        widths: layer sizes including input and output, e.g. ``[784, 256, 100, 10]`` (3 linear layers).
        activation: ``"relu"``, ``"tanh"``, ``"sigmoid"``, ``"linear"``, ``"leaky_relu"``, ``"gelu"`` or an
            ``nn.Module`` class. Never in-place, so recorded responses stay valid.
        bias: whether the linear layers have a bias.
        batchnorm: insert ``BatchNorm1d`` between each hidden linear layer and its activation.
        dropout: dropout probability after each hidden activation (0 disables).

    The input is flattened first, so images ``[N, 1, 28, 28]`` work directly. The last linear layer
    ``fcL`` outputs the logits; it has no activation, normalization or dropout.
    """

    def __init__(self, widths: Sequence[int], activation: Union[str, Callable[[], nn.Module]] = "relu",
                 bias: bool = True, batchnorm: bool = False, dropout: float = 0.0):
        widths = [int(w) for w in widths]
        if len(widths) < 2 or any(w <= 0 for w in widths):
            raise ValueError(f"widths needs at least 2 positive entries (input and output), got {widths}")
        _check_dropout(dropout)
        make_act = _activation_factory(activation)
        layers: "OrderedDict[str, nn.Module]" = OrderedDict(flatten=nn.Flatten())
        depth = len(widths) - 1
        for i in range(1, depth + 1):
            layers[f"fc{i}"] = nn.Linear(widths[i - 1], widths[i], bias=bias)
            if i == depth:
                break
            if batchnorm:
                layers[f"bn{i}"] = nn.BatchNorm1d(widths[i])
            layers[f"act{i}"] = make_act()
            if dropout > 0:
                layers[f"drop{i}"] = nn.Dropout(dropout)
        super().__init__(layers)
        self.widths = widths

    @property
    def depth(self) -> int:
        """Number of linear (weight) layers."""
        return len(self.widths) - 1

    @property
    def linear_names(self) -> List[str]:
        """``["fc1", ..., "fcL"]``."""
        return [f"fc{i}" for i in range(1, self.depth + 1)]

    @property
    def activation_names(self) -> List[str]:
        """``["act1", ..., "act{L-1}"]``: the hidden activations."""
        return [f"act{i}" for i in range(1, self.depth)]


def paper_mlp(name: str, **kwargs) -> MLP:
    """The MNIST MLP a paper calls ``name`` (see :data:`PAPER_MLP_WIDTHS`).

    NSR names (``"MLP-3"`` ... ``"MLP-10"``) count the input layer; IBCI names (``"IBCI-2"``, ``"IBCI-3"``,
    ``"IBCI-5"``) count weight layers, so ``paper_mlp("MLP-4")`` and ``paper_mlp("IBCI-3")`` are both
    784-256-100-10. Keyword arguments go to :class:`MLP`.
    """
    key = name.upper()
    if key not in PAPER_MLP_WIDTHS:
        raise ValueError(f"Unknown paper MLP {name!r}; choose one of {list(PAPER_MLP_WIDTHS)}")
    return MLP(PAPER_MLP_WIDTHS[key], **kwargs)


class SmallCNN(nn.Sequential):
    """Two convolution blocks and two linear layers, for 28×28 (or ``image_size``) images.

    Layers: ``conv1, [bn1], act1, pool1, conv2, [bn2], act2, pool2, flatten, fc1, act3, [drop], fc2``.
    Each convolution is 3×3 with padding 1, each pool halves the resolution.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, channels: Sequence[int] = (32, 64),
                 hidden: int = 128, image_size: int = 28, batchnorm: bool = False, dropout: float = 0.0):
        _check_dropout(dropout)
        if len(channels) != 2:
            raise ValueError(f"channels must give the widths of the two conv blocks, got {channels}")
        c1, c2 = channels
        layers: "OrderedDict[str, nn.Module]" = OrderedDict()
        for i, (cin, cout) in enumerate([(in_channels, c1), (c1, c2)], start=1):
            layers[f"conv{i}"] = nn.Conv2d(cin, cout, 3, padding=1)
            if batchnorm:
                layers[f"bn{i}"] = nn.BatchNorm2d(cout)
            layers[f"act{i}"] = nn.ReLU()
            layers[f"pool{i}"] = nn.MaxPool2d(2)
        side = image_size // 4
        layers["flatten"] = nn.Flatten()
        layers["fc1"] = nn.Linear(c2 * side * side, hidden)
        layers["act3"] = nn.ReLU()
        if dropout > 0:
            layers["drop"] = nn.Dropout(dropout)
        layers["fc2"] = nn.Linear(hidden, num_classes)
        super().__init__(layers)


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
        self.act2 = nn.ReLU()

    def forward(self, x):
        out = self.act1(self.bn1(self.conv1(x)))
        return self.act2(self.bn2(self.conv2(out)) + self.shortcut(x))


class _ResNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.act1 = nn.ReLU()
        cin = width
        for stage, mult in enumerate((1, 2, 4, 8), start=1):
            cout = width * mult
            stride = 1 if stage == 1 else 2
            setattr(self, f"layer{stage}", nn.Sequential(_BasicBlock(cin, cout, stride), _BasicBlock(cout, cout, 1)))
            cin = cout
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.flatten(self.pool(x)))


def resnet18_cifar(num_classes: int = 10, in_channels: int = 3, width: int = 64) -> nn.Module:
    """CIFAR-style ResNet-18 (He et al. 2016): a 3×3 stride-1 stem without max-pool, four stages of two
    basic blocks with widths ``width × (1, 2, 4, 8)``, global average pooling (``pool``), and ``fc``.

    ``width=64`` is the standard network (11,173,962 parameters for 10 classes); smaller widths give a
    narrow version that trains on a CPU.
    """
    return _ResNet(num_classes, in_channels, width)


_VGG19_CFG = [[64, 64], [128, 128], [256, 256, 256, 256], [512, 512, 512, 512], [512, 512, 512, 512]]


class _VGG(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, width: int, batchnorm: bool):
        super().__init__()
        blocks: "OrderedDict[str, nn.Module]" = OrderedDict()
        cin = in_channels
        for b, cfg in enumerate(_VGG19_CFG, start=1):
            layers: "OrderedDict[str, nn.Module]" = OrderedDict()
            for j, c in enumerate(cfg, start=1):
                cout = max(1, c * width // 64)
                layers[f"conv{j}"] = nn.Conv2d(cin, cout, 3, padding=1)
                if batchnorm:
                    layers[f"bn{j}"] = nn.BatchNorm2d(cout)
                layers[f"act{j}"] = nn.ReLU()
                cin = cout
            layers["pool"] = nn.MaxPool2d(2)
            blocks[f"block{b}"] = nn.Sequential(layers)
        self.features = nn.Sequential(blocks)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.fc(self.flatten(self.features(x)))


def vgg19_cifar(num_classes: int = 10, in_channels: int = 3, width: int = 64, batchnorm: bool = True) -> nn.Module:
    """VGG-19 (configuration E of Simonyan & Zisserman 2015) for 32×32 inputs, the common CIFAR variant:
    16 convolutions in five blocks ``features.block1`` ... ``features.block5`` (each ending in a 2×2
    max-pool), then a single linear classifier ``fc`` on the 1×1×512 map. ``width`` scales every
    convolution's channels by ``width / 64``. The NSR code regularizes the first block, ``features.block1``.
    """
    return _VGG(num_classes, in_channels, width, batchnorm)


def _import_pyg_convs():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from torch_geometric.nn import GCNConv, SAGEConv
    return GCNConv, SAGEConv


class _GraphNet(nn.Module):
    conv_type = "gcn"

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int, num_layers: int = 2,
                 dropout: float = 0.5):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        _check_dropout(dropout)
        GCNConv, SAGEConv = _import_pyg_convs()
        conv = GCNConv if self.conv_type == "gcn" else SAGEConv
        sizes = [in_channels] + [hidden_channels] * (num_layers - 1) + [out_channels]
        self.num_layers = num_layers
        for i in range(1, num_layers + 1):
            setattr(self, f"conv{i}", conv(sizes[i - 1], sizes[i]))
            if i < num_layers:
                setattr(self, f"act{i}", nn.ReLU())
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        for i in range(1, self.num_layers + 1):
            x = getattr(self, f"conv{i}")(x, edge_index)
            if i < self.num_layers:
                x = self.dropout(getattr(self, f"act{i}")(x))
        return x


class GCN(_GraphNet):
    """Graph convolutional network (Kipf & Welling, ICLR 2017): ``conv1, act1, ..., convL`` with
    dropout between layers; ``forward(x, edge_index)`` returns node logits."""

    conv_type = "gcn"


class GraphSAGE(_GraphNet):
    """GraphSAGE with mean aggregation (Hamilton et al., NeurIPS 2017): ``conv1, act1, ..., convL``;
    ``forward(x, edge_index)`` returns node logits."""

    conv_type = "sage"


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
