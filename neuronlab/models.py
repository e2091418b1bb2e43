"""The networks of the book, with named layers so that every layer can be probed by name.

Every model names its layers (``fc1``, ``act1``, ``conv1``, ``layer3``, ``features.block1`` ...) so that
:func:`neuronlab.probe.record` can find them with ``model.named_modules()`` names. Activations are
modules (never ``F.relu``) and never in-place, so their outputs can be recorded and later modified
safely.

Depth conventions differ between the papers this book reproduces, for the *same* networks:

* the NSR paper (Fu et al., NeurIPS 2022) counts the input layer: ``MLP-3`` is 784-100-10 and ``MLP-4``
  is 784-256-100-10 (``MLP-k`` has ``k`` widths, hence ``k - 1`` weight layers);
* the IBCI paper (Mao et al., CIKM 2021) counts weight layers: 784-100-10 is its "2 layers",
  784-256-100-10 its "3 layers", and 784-32-32-32-32-10 its "5 layers".

:func:`paper_mlp` accepts both names (``"MLP-4"`` and ``"IBCI-3"`` are the same network), and
:attr:`MLP.depth` is always the number of linear (weight) layers, whatever the paper calls the net.
"""

from __future__ import annotations

import copy
import math
import re
import warnings
from collections import OrderedDict
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Union

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
    "BracketRNN",
    "count_parameters",
    "weights_restored_on_error",
    "build_model",
]

#: Activation names accepted by :class:`MLP`, mapped to the module class built for each hidden layer.
ACTIVATIONS: Dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "linear": nn.Identity,
    "identity": nn.Identity,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
}

#: Layer widths (input, hidden..., output) of the papers' MNIST MLPs.
#:
#: * NSR (``MLP-k``, the input layer counted): the hidden widths are the "Model" table of the official
#:   repository's README (github ``HaitaoMao/Neuron-with-Steady-Response-Leads-to-Better-Generalization``):
#:   MLP-3 [100], MLP-4 [256, 100], MLP-6 [256, 128, 64, 32], MLP-8 [256, 128, 64, 32, 32, 16],
#:   MLP-10 [256, 128, 64, 64, 32, 32, 16, 16] (MLP-4 is the scripts' default, says the README).
#: * IBCI (``IBCI-k``, weight layers counted): the three networks of its Table 1.
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


def _activation_factory(activation: Union[str, Callable[[], nn.Module], nn.Module]) -> Callable[[], nn.Module]:
    """A function returning a fresh, not in-place activation module for each layer."""
    if isinstance(activation, str):
        key = activation.lower()
        if key not in ACTIVATIONS:
            raise ValueError(f"Unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)} "
                             "or pass an nn.Module class.")
        make = ACTIVATIONS[key]
    elif isinstance(activation, nn.Module):  # an instance: one copy per layer, never shared
        make = lambda: copy.deepcopy(activation)  # noqa: E731
    elif callable(activation):
        make = activation
    else:
        raise ValueError(f"activation must be a name or an nn.Module class, got {activation!r}")

    def build() -> nn.Module:
        module = make()
        if not isinstance(module, nn.Module):
            raise ValueError(f"activation {activation!r} must build an nn.Module, got {type(module).__name__}")
        if getattr(module, "inplace", False):  # in-place outputs would corrupt recorded responses
            module.inplace = False
        return module

    return build


def _check_dropout(dropout: float) -> None:
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")


def _check_positive(**sizes: int) -> None:
    for name, value in sizes.items():
        if int(value) < 1:
            raise ValueError(f"{name} must be a positive integer, got {value}")


class MLP(nn.Sequential):
    r"""A fully connected network with named layers: ``flatten, fc1, [bn1], act1, [drop1], fc2, ..., fcL``.

    Hidden layer :math:`l`: :math:`a_l = \mathrm{drop}(\phi(\mathrm{BN}(W_l a_{l-1} + b_l)))`; output
    :math:`\mathrm{fc}_L(a_{L-1}) = W_L a_{L-1} + b_L` (the logits: no activation, BN or dropout).

    Args:
        widths: layer sizes including input and output, e.g. ``[784, 256, 100, 10]`` (3 linear layers).
        activation: ``"relu"``, ``"tanh"``, ``"sigmoid"``, ``"linear"``/``"identity"``, ``"leaky_relu"``,
            ``"gelu"``, an ``nn.Module`` class or factory (called once per layer), or a module instance
            (deep-copied per layer). Modules with an ``inplace`` flag are made not in-place, so recorded
            responses stay valid.
        bias: whether the linear layers have a bias.
        batchnorm: insert ``BatchNorm1d`` between each hidden linear layer and its activation.
        dropout: dropout probability after each hidden activation, in ``[0, 1)`` (0: no dropout module).

    The input is flattened first (module ``flatten``), so images ``[N, 1, 28, 28]`` work directly.
    ``model.widths`` keeps the widths; :attr:`depth`, :attr:`linear_names` and :attr:`activation_names`
    give the layers to probe.

    Example: ``MLP([784, 256, 100, 10], batchnorm=True, dropout=0.2)`` has children
    ``flatten, fc1, bn1, act1, drop1, fc2, bn2, act2, drop2, fc3``.
    """

    def __init__(self, widths: Sequence[int], activation: Union[str, Callable[[], nn.Module], nn.Module] = "relu",
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
    """The MNIST MLP a paper calls ``name`` (widths in :data:`PAPER_MLP_WIDTHS`).

    The two papers count depth differently:

    =========  ==========================  ========================
    name       widths                      the other paper's name
    =========  ==========================  ========================
    MLP-3      784-100-10                  IBCI "2 layers" (IBCI-2)
    MLP-4      784-256-100-10              IBCI "3 layers" (IBCI-3)
    MLP-6      784-256-128-64-32-10        --
    MLP-8      784-256-128-64-32-32-16-10  --
    MLP-10     784-256-128-64-64-32-32-    --
               16-16-10
    IBCI-5     784-32-32-32-32-10          --
    =========  ==========================  ========================

    NSR names (``"MLP-3"`` ... ``"MLP-10"``, Fu et al. NeurIPS 2022) count the input layer: ``MLP-k`` has
    ``k - 1`` weight layers. IBCI names (``"IBCI-2"``, ``"IBCI-3"``, ``"IBCI-5"``, Mao et al. CIKM 2021)
    count weight layers: ``IBCI-k`` has ``k``. The hidden widths of MLP-6/8/10 are those of the official NSR
    repository (README "Model" table), not our choice. Keyword arguments (``activation``, ``bias``,
    ``batchnorm``, ``dropout``) go to :class:`MLP`; both papers use ReLU MLPs.
    """
    key = name.upper()
    if key not in PAPER_MLP_WIDTHS:
        raise ValueError(f"Unknown paper MLP {name!r}; choose one of {list(PAPER_MLP_WIDTHS)}")
    return MLP(PAPER_MLP_WIDTHS[key], **kwargs)


class SmallCNN(nn.Sequential):
    """Two convolution blocks and two linear layers, for 28×28 (or ``image_size``) images.

    Children: ``conv1, [bn1], act1, pool1, conv2, [bn2], act2, pool2, flatten, fc1, act3, [drop], fc2``.
    Each convolution is 3×3 with padding 1 (size kept), each 2×2 max-pool halves the resolution, so
    ``fc1`` sees ``channels[1] * (image_size // 4) ** 2`` features. ``fc2`` gives the logits.

    Args:
        in_channels: input channels (1 for MNIST, 3 for CIFAR).
        num_classes: number of logits.
        channels: output channels of ``conv1`` and ``conv2``.
        hidden: width of ``fc1``.
        image_size: side of the (square) input images.
        batchnorm: ``BatchNorm2d`` between each convolution and its ReLU.
        dropout: dropout before ``fc2`` (module ``drop``, present only when > 0).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, channels: Sequence[int] = (32, 64),
                 hidden: int = 128, image_size: int = 28, batchnorm: bool = False, dropout: float = 0.0):
        _check_dropout(dropout)
        if len(channels) != 2:
            raise ValueError(f"channels must give the widths of the two conv blocks, got {channels}")
        _check_positive(in_channels=in_channels, num_classes=num_classes, hidden=hidden,
                        channels=min(channels))
        if image_size < 4:
            raise ValueError(f"image_size must be at least 4 (two 2x2 poolings), got {image_size}")
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
    """ResNet basic block: ``act2(bn2(conv2(act1(bn1(conv1(x))))) + shortcut(x))`` with 3×3 convolutions
    and a 1×1 convolution + BN shortcut when the shape changes (option B of He et al. 2016)."""

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
    """CIFAR ResNet-18; see :func:`resnet18_cifar`."""

    def __init__(self, num_classes: int, in_channels: int, width: int):
        super().__init__()
        _check_positive(num_classes=num_classes, in_channels=in_channels, width=width)
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
    """CIFAR-style ResNet-18 (He, Zhang, Ren, Sun, CVPR 2016; the common CIFAR adaptation).

    A 3×3 stride-1 stem (``conv1, bn1, act1``) without max-pool, four stages ``layer1`` ... ``layer4`` of
    two basic blocks each with widths ``width × (1, 2, 4, 8)`` (stages 2-4 start with stride 2), global
    average pooling ``pool``, ``flatten`` and the linear classifier ``fc``. Inside a stage the blocks are
    ``layer2.0``, ``layer2.1``, each with ``conv1, bn1, act1, conv2, bn2, shortcut, act2`` (``act2`` is
    the block's output, after the residual sum).

    ``width=64`` is the standard network (11,173,962 parameters for 10 classes); smaller widths (e.g. 8
    or 16) give a narrow version that trains on a CPU. Thanks to the global pooling any input size works
    (e.g. 28×28 MNIST with ``in_channels=1``).
    The NSR code regularizes the logits of this network, i.e. the output of ``fc``.
    """
    return _ResNet(num_classes, in_channels, width)


_VGG19_CFG = [[64, 64], [128, 128], [256, 256, 256, 256], [512, 512, 512, 512], [512, 512, 512, 512]]


class _VGG(nn.Module):
    """CIFAR VGG-19; see :func:`vgg19_cifar`."""

    def __init__(self, num_classes: int, in_channels: int, width: int, batchnorm: bool):
        super().__init__()
        _check_positive(num_classes=num_classes, in_channels=in_channels, width=width)
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
    """VGG-19 (configuration E of Simonyan & Zisserman, ICLR 2015) for 32×32 inputs, the common CIFAR variant.

    Configuration E is ``64, 64, M, 128, 128, M, 256×4, M, 512×4, M, 512×4, M``: 16 convolutions (3×3,
    padding 1, with bias) in five blocks ``features.block1`` ... ``features.block5``; inside block ``b`` the
    layers are ``conv1, [bn1], act1, conv2, ..., pool`` (each block ends in a 2×2 max-pool), so a 32×32
    input leaves a 1×1×512 map. Then ``flatten`` and a single linear classifier ``fc`` (512 → classes), as
    in the usual CIFAR VGGs, instead of ImageNet's 4096-4096 head. ``width`` scales every convolution's
    channels by ``width / 64`` (``width=8``: 8, 16, 32, 64, 64 channels).

    The official NSR code uses a different VGG-19 for CIFAR-10: convolutions without bias, only four
    max-pools (after convolutions 2, 4, 8 and 12) with dropout 0.2-0.4, and a 2048-4096-4096-10 head with
    dropout 0.5. What it regularizes as "the first conv block" is the output of its first
    convolution + BN + ReLU, which here is ``features.block1.act1``.
    """
    return _VGG(num_classes, in_channels, width, batchnorm)


def _import_pyg_convs():
    """Import PyG's convolutions lazily, silencing the FutureWarning its import emits (torch.jit.script)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from torch_geometric.nn import GCNConv, SAGEConv
    return GCNConv, SAGEConv


class _GraphNet(nn.Module):
    """Shared code of :class:`GCN` and :class:`GraphSAGE`: ``conv1, act1, conv2, ..., convL`` as children."""

    conv_type = "gcn"

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int, num_layers: int = 2,
                 dropout: float = 0.5):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        _check_dropout(dropout)
        _check_positive(in_channels=in_channels, hidden_channels=hidden_channels, out_channels=out_channels)
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
        """Node logits ``[num_nodes, out_channels]`` from features ``x`` and ``edge_index`` ``[2, E]``."""
        for i in range(1, self.num_layers + 1):
            x = getattr(self, f"conv{i}")(x, edge_index)
            if i < self.num_layers:
                x = self.dropout(getattr(self, f"act{i}")(x))
        return x


class GCN(_GraphNet):
    r"""Graph convolutional network (Kipf & Welling, ICLR 2017) built from PyG ``GCNConv``.

    Each layer computes :math:`H' = \hat D^{-1/2} (A + I) \hat D^{-1/2} H W + b`. Children:
    ``conv1, act1, conv2, act2, ..., convL`` (ReLU modules ``act1 .. act{L-1}``) and one ``dropout`` module
    applied after every hidden activation. ``forward(x, edge_index)`` returns the logits of every node,
    ``[num_nodes, out_channels]``; recorded responses are ``[num_nodes, C]`` too (mask them yourself).

    Args:
        in_channels: node feature size.
        hidden_channels: width of the hidden layers.
        out_channels: number of classes.
        num_layers: number of graph convolutions ``L`` (at least 1).
        dropout: dropout probability between layers, in ``[0, 1)``.
    """

    conv_type = "gcn"


class GraphSAGE(_GraphNet):
    r"""GraphSAGE with mean aggregation (Hamilton, Ying, Leskovec, NeurIPS 2017) built from PyG ``SAGEConv``.

    Each layer computes :math:`h_v' = W_1 h_v + W_2 \operatorname{mean}_{u \in N(v)} h_u`. Same
    arguments, children (``conv1, act1, ..., convL``, ``dropout``) and output as :class:`GCN`.
    """

    conv_type = "sage"


class BracketRNN(nn.Module):
    r"""A one-layer LSTM or GRU that reads bracket strings and predicts, at every step, whether ``")"`` may
    come next (the Dyck-1 task of Suzgun, Gehrmann, Belinkov & Shieber 2019, 8 hidden units by default).

    Children: ``rnn`` (``nn.LSTM`` or ``nn.GRU``, one layer, ``batch_first=True``, zero initial state),
    ``tap`` (an ``nn.Identity`` on the hidden state sequence ``[B, T, hidden]``) and ``readout``
    (``nn.Linear(hidden, 1)``):

    .. math::

        h_t = \mathrm{RNN}(x_t, h_{t-1}), \qquad \mathrm{logit}_t = w^\top h_t + b

    ``tap`` exists because a hook on ``rnn`` receives a tuple (``(output, (h_n, c_n))`` for an LSTM):
    record, ablate or attribute (Captum ``LayerConductance(model, model.tap)``) the hidden units there.
    A hook on ``tap`` or ``rnn`` changes only what the read-out sees, never the recurrence: :math:`h_{t-1}`
    inside the LSTM keeps its original value, so an "ablated" unit still carries the count to later steps.
    To intervene inside the recurrence (and to see the LSTM's cell state :math:`c_t` at every step), run
    the same weights step by step with :class:`neuronlab.neurons.UnrolledLSTM`.

    The network is causal (one direction), so padding after a string's end does not change the outputs at
    its real steps: padded batches need no packing. On a GPU, cuDNN runs an RNN's backward pass only in
    training mode; for gradients of a model in eval mode (Captum attributions), call it inside
    ``torch.backends.cudnn.flags(enabled=False)``.

    Args:
        cell: ``"lstm"`` or ``"gru"``.
        hidden: number of hidden units.
        num_symbols: size of the alphabet (2 for Dyck-1: ``0 = "("``, ``1 = ")"``).

    ``forward(x)`` takes one-hot inputs ``[B, T, num_symbols]`` (float) or tokens ``[B, T]`` (integers,
    one-hot encoded inside) and returns one logit per step, ``[B, T]``.

    Raises:
        ValueError: an unknown ``cell``, a non-positive size; in ``forward``, inputs of the wrong shape
            or tokens outside ``0 .. num_symbols - 1``.

    Example:
        >>> model = BracketRNN("lstm", hidden=8)
        >>> tokens = torch.tensor([[0, 0, 1, 1], [0, 1, 0, 1]])   # (()), ()()
        >>> model(tokens).shape
        torch.Size([2, 4])
        >>> [name for name, _ in model.named_children()]
        ['rnn', 'tap', 'readout']
    """

    _CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}

    def __init__(self, cell: str = "lstm", hidden: int = 8, num_symbols: int = 2):
        super().__init__()
        key = cell.lower() if isinstance(cell, str) else None
        if key not in self._CELLS:
            raise ValueError(f"cell must be 'lstm' or 'gru', got {cell!r}.")
        for value, what in ((hidden, "hidden"), (num_symbols, "num_symbols")):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{what} must be a positive integer, got {value!r}.")
        self.cell = key
        self.hidden = hidden
        self.num_symbols = num_symbols
        self.rnn = self._CELLS[key](num_symbols, hidden, num_layers=1, batch_first=True)
        self.tap = nn.Identity()
        self.readout = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, T]`` (``")"`` allowed after step ``t``) from one-hot ``[B, T, S]`` or tokens ``[B, T]``."""
        if torch.is_floating_point(x):
            if x.dim() != 3 or x.shape[-1] != self.num_symbols:
                raise ValueError(f"one-hot inputs must be [batch, steps, {self.num_symbols}], got shape "
                                 f"{tuple(x.shape)}; or pass integer tokens [batch, steps].")
        else:
            if x.dim() != 2:
                raise ValueError(f"tokens must be [batch, steps] integers, got shape {tuple(x.shape)}; or pass "
                                 f"one-hot floats [batch, steps, {self.num_symbols}].")
            if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.num_symbols):
                raise ValueError(f"tokens must lie in 0 .. {self.num_symbols - 1}, got values "
                                 f"{int(x.min())} .. {int(x.max())}.")
            x = nn.functional.one_hot(x.long(), self.num_symbols).to(self.readout.weight.dtype)
        sequence, _state = self.rnn(x)
        return self.readout(self.tap(sequence)).squeeze(-1)


def _weight_and_bias(layer: nn.Module) -> List[torch.Tensor]:
    return [t for t in (layer.weight, getattr(layer, "bias", None)) if t is not None]


@contextmanager
def weights_restored_on_error(layers: Mapping[str, nn.Module]) -> Iterator[None]:
    """Undo every change to the ``weight`` and ``bias`` of ``layers`` if the block raises.

    The in-place initializers (:func:`neuronlab.init.lsuv_`, :func:`neuronlab.campaign.campaign_`)
    change a model layer after layer; a failure half-way must not leave a half-initialized model. The
    error is re-raised unchanged.

    >>> layer = nn.Linear(2, 2)
    >>> before = layer.weight.detach().clone()
    >>> try:
    ...     with weights_restored_on_error({"fc": layer}), torch.no_grad():
    ...         _ = layer.weight.fill_(7.0)
    ...         raise RuntimeError("half-way")
    ... except RuntimeError:
    ...     pass
    >>> torch.equal(layer.weight, before)
    True
    """
    saved = {name: [t.detach().clone() for t in _weight_and_bias(layer)] for name, layer in layers.items()}
    try:
        yield
    except BaseException:
        with torch.no_grad():
            for name, values in saved.items():
                for target, value in zip(_weight_and_bias(layers[name]), values):
                    target.copy_(value)
        raise


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of parameters of ``model`` (only those with ``requires_grad`` when ``trainable_only``).

    A parameter shared by several layers is counted once. BatchNorm running statistics are buffers, not
    parameters, and are not counted.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _sizes_of(data: Any) -> Dict[str, Optional[int]]:
    """Input and output sizes read off a dataset: dense splits (``x_train``) or a graph (``num_features``)."""
    if data is None:
        return {}
    sizes: Dict[str, Optional[int]] = {"num_classes": getattr(data, "num_classes", None)}
    x = getattr(data, "x_train", None)
    if x is not None:
        sizes.update(in_features=math.prod(x.shape[1:]), in_channels=x.shape[1] if x.dim() == 4 else None,
                     image_size=x.shape[-1] if x.dim() == 4 else None, images=x.dim() == 4)
    elif getattr(data, "num_features", None) is not None:
        sizes["in_features"] = int(data.num_features)
    return sizes


def build_model(name: str, data: Any = None, *, activation: str = "relu", batchnorm: bool = False,
                dropout: Optional[float] = None, **sizes: int) -> nn.Module:
    """The one model factory of the book: a network by name, sized for ``data`` (a twin of
    :func:`neuronlab.data.load_dataset`). Weights keep PyTorch's default initialization; each chapter
    applies its paper's scheme (:mod:`neuronlab.init`).

    ==========================  ===============================================================
    name                        network
    ==========================  ===============================================================
    ``MLP-3`` ... ``MLP-10``,   the papers' MNIST MLPs (:data:`PAPER_MLP_WIDTHS`, :func:`paper_mlp`)
    ``IBCI-2/3/5``
    ``MLP-6x100``               an :class:`MLP` with 6 hidden layers of 100 units, sized for ``data``
    ``SmallCNN[-16-32]``        :class:`SmallCNN` (conv channels 32, 64 unless given); needs images
    ``ResNet-18[-w16]``         :func:`resnet18_cifar` (width 64 unless ``-wN``)
    ``VGG-19[-w16]``            :func:`vgg19_cifar` with BatchNorm (width 64 unless ``-wN``)
    ``GCN-2``, ``GraphSAGE-3``  :class:`GCN` / :class:`GraphSAGE` with that many layers, 64 hidden channels
    ``BracketLSTM-8``,          :class:`BracketRNN` with that many hidden units, 2 symbols (Dyck-1)
    ``BracketGRU-8``
    ==========================  ===============================================================

    Args:
        name: see the table (case does not matter).
        data: a dataset of :func:`neuronlab.data.load_dataset` (dense splits or a graph); it gives the
            input size, the image shape and the number of classes. Optional for the paper MLPs.
        activation: hidden activation of the MLPs.
        batchnorm: BatchNorm in the MLPs and SmallCNN.
        dropout: dropout in the MLPs and SmallCNN (default 0) and between graph layers (default 0.5).
        sizes: ``in_features``, ``in_channels``, ``image_size``, ``num_classes`` to override or replace
            what ``data`` gives.

    Example:
        >>> build_model("MLP-4").widths
        [784, 256, 100, 10]
        >>> build_model("MLP-2x50", in_features=20, num_classes=3).widths
        [20, 50, 50, 3]
    """
    unknown = set(sizes) - {"in_features", "in_channels", "image_size", "num_classes"}
    if unknown:
        raise TypeError(f"build_model got unexpected keyword arguments {sorted(unknown)}")
    known = {**_sizes_of(data), **sizes}

    def need(key: str) -> int:
        if known.get(key) is None:
            raise ValueError(f"{name} needs {key}: pass the dataset (build_model(name, data)) or {key}=...")
        return int(known[key])

    key = name.upper()
    mlp_options = dict(activation=activation, batchnorm=batchnorm, dropout=dropout or 0.0)
    if key in PAPER_MLP_WIDTHS:
        return MLP(PAPER_MLP_WIDTHS[key], **mlp_options)
    shape = re.fullmatch(r"MLP-(\d+)X(\d+)", key)
    if shape:
        hidden, width = int(shape.group(1)), int(shape.group(2))
        return MLP([need("in_features")] + [width] * hidden + [need("num_classes")], **mlp_options)
    if key.startswith("SMALLCNN"):
        if known.get("images") is False:
            raise ValueError(f"{name} needs images [N, C, H, W]; load the dataset with flatten=False")
        channels = tuple(int(c) for c in key.split("-")[1:]) or (32, 64)
        return SmallCNN(in_channels=need("in_channels"), num_classes=need("num_classes"), channels=channels,
                        image_size=need("image_size"), batchnorm=batchnorm, dropout=dropout or 0.0)
    cifar = re.fullmatch(r"(RESNET-18|VGG-19)(?:-W(\d+))?", key)
    if cifar:
        width = int(cifar.group(2) or 64)
        build = resnet18_cifar if cifar.group(1) == "RESNET-18" else vgg19_cifar
        return build(need("num_classes"), in_channels=need("in_channels"), width=width)
    graph = re.fullmatch(r"(GCN|GRAPHSAGE)-(\d+)", key)
    if graph:
        cls = GCN if graph.group(1) == "GCN" else GraphSAGE
        return cls(need("in_features"), 64, need("num_classes"), num_layers=int(graph.group(2)),
                   dropout=0.5 if dropout is None else dropout)
    bracket = re.fullmatch(r"BRACKET(LSTM|GRU)-(\d+)", key)
    if bracket:
        return BracketRNN(bracket.group(1).lower(), hidden=int(bracket.group(2)))
    raise ValueError(f"unknown architecture {name!r}: use MLP-3..MLP-10, IBCI-2/3/5, MLP-<hidden>x<width>, "
                     "SmallCNN[-a-b], ResNet-18[-wN], VGG-19[-wN], GCN-<layers>, GraphSAGE-<layers>, "
                     "BracketLSTM-<hidden> or BracketGRU-<hidden>")
