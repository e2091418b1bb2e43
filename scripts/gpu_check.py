r"""GPU check of the full profile: does every experiment train on CUDA, how fast, and how long would it take?

    bash scripts/gpu_check.sh [--out DIR] [--budget-seconds 420] [--dry]

Meant for a CUDA machine **without internet**: no dataset is read or downloaded. Every tensor is
synthetic, of the real shape and size (see :data:`DATASETS`): the same arithmetic as the real runs, so
the step times, evaluation times and GPU memory stand for theirs, while what the networks learn does not.
The one exception is chapter 5's Dyck-1 bracket strings: :func:`neuronlab.data.dyck1_dataset` generates
the real data in code, so they are used as they are.

What it measures
----------------
1. **Every experiment of the full profile, every distinct model/data setting.** For each chapter of
   :data:`neuronlab.experiments.CHAPTERS` and each experiment of its ``EXPERIMENTS``, the run
   configurations of ``experiment_grid(name, "full")`` are grouped into *settings*: configurations that
   differ only in what does not change the cost of a training step (seed, initialization scheme,
   regularization strength, fraction of corrupted labels, whether a network is rejuvenated). Each
   setting's network is built by the chapter's own code (``initialized_mlp``, ``build_model`` +
   ``initialize_for_method``, ``paper_model`` + ``regularized_layers``, ``relu_mlp``, ``vision_network``,
   ``rejuvenation_network``, and :class:`~neuronlab.models.BracketRNN` as ``train_bracket_model`` builds
   it), gets the chapter's optimizer (SGD, momentum, weight decay, Adam, learning rate), batch size, loss
   terms (NSR, L1, L2, Jacobian, orthogonality, the L1 penalty on BatchNorm scales
   :class:`~neuronlab.rejuvenation.GammaL1`) and augmentation (CIFAR crop and flip), and is trained on the
   device for a capped number of steps, each step as :func:`neuronlab.train.fit` takes it: a shuffled
   mini-batch gathered from the whole training split held on the device (graphs: the whole graph, full
   batch), forward, cross-entropy plus the extra terms, a finiteness check, backward, optimizer step.
   Chapter 5's bracket LSTMs go through ``fit`` too, as ``train_bracket_model`` calls it: the Dyck-1
   training strings one-hot and padded to the longest, targets -1 on padding (``bracket_training_data``),
   and ``masked_bce`` (binary cross-entropy over the real steps) in place of the cross-entropy.
2. **The NSR overhead** on the device: MLP-4 (batch 100, NSR on the logits, m = 5) and ResNet-18
   (batch 128, NSR on the logits, m = 1), steps with and without :class:`neuronlab.nsr.NeuronSteadiness`
   on copies of the same network, interleaved step by step, median step times (the approach of
   ``scripts/bench.py``, with ``torch.cuda.synchronize`` around each step); and ``scripts/bench.py``'s
   NSR table on the device: MLP-4 at each memory m in 1, 5, 20, 50, with NSR, with the official-style FIFO
   and with the cheapest extra term, as ratios to the plain step.
3. **Peak GPU memory** of each setting (``torch.cuda.max_memory_allocated``, the training data on the
   device included, as ``fit`` holds it there).

The synthetic data are learnable: every class has a fixed random template (an image, or a feature vector
of a graph node) and a sample is its class's template plus Gaussian noise; graph edges join nodes of the
same class with probability 0.8 (Dyck-1 strings: the real ones). A setting passes when every loss is
finite, the network's parameters and its evaluation are finite after the steps, and the training loss
fell (the mean data loss of the last quarter of the steps is below the first step's, the untrained
network's; ``loss first`` and ``loss last`` in the table).

How to read the projection
--------------------------
``s/step`` is the median wall time of one training step after a warm-up, synchronized.
``projected s/epoch = ceil(n_train / batch) * s/step + eval s``: the steps of one epoch over the real
training split (1 step for a graph: full batch) plus one end-of-epoch evaluation of the validation and
test splits (measured: ``fit`` evaluates both every epoch; ``train_bracket_model`` gives ``fit`` neither
split: 0 s). A run that trains on part of the training split (chapter 5's memorization runs:
the first 10,000 images) has the steps of that part. ``projected hours = s/epoch * epochs * runs`` with
``runs`` the configurations of the setting in the full grid (a run two experiments share, e.g. the
vanilla and NSR runs of chapter 3's ``baselines`` that belong to ``mlp``, is counted once, under the
experiment listed first). Runs are assumed to run one after another on one GPU of this kind. **The
projection assumes no early stopping** where the protocol has it (chapter 4's grids stop after 5 epochs
without a better validation accuracy; they are projected at their maximum of epochs), so it is an upper
bound there. Chapter 5's ``vision`` and ``bracket`` runs each train one network per seed (the analyses
compare them): their ``epochs`` are the epochs of all those networks, networks x epochs per network, so
that the same formula holds. Not included: one-off initializations (LSUV, the IBCI campaign), the
post-training analyses (chapter 3's intra-class variance, chapter 4's perplexities and layer classifiers,
chapter 4's label-noise tracking every 10 epochs, chapter 5's similarities, rankings, conductance,
ablations, bracket interventions and per-epoch utilization tracking, and its rejuvenation step), loading
the real data, and the first-epoch CUDA/cuDNN warm-up.

Without CUDA (or with ``--dry``) it runs a **dry form**: the same code on the CPU with tiny step counts,
tiny data (a few hundred samples, nodes or strings, batches of at most 16) and the CIFAR networks at
width 8, so that CI proves the script works; ``table.md`` then says "dry run on CPU: timings are not GPU timings".

Output (``--out``, else ``$OUT`` when set, else ``gpu_check_out/``): ``table.csv`` and ``table.md``, one row
per (chapter, experiment, setting) with the columns of :data:`COLUMNS`; ``table.md`` adds the device, the
torch version, the NSR ratios, the hours per chapter and the data sizes with their sources. The exit
status is 1 when a result is not finite, a loss did not fall or a setting failed, else 0.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import dataclasses
import inspect
import json
import math
import os
import re
import statistics
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

START = time.perf_counter()
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
warnings.filterwarnings("ignore", category=FutureWarning)  # torch_geometric's torch.jit.script notices

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from neuronlab import regularizers  # noqa: E402
from neuronlab.data import dyck1_dataset, random_crop_flip  # noqa: E402
from neuronlab.experiments import CHAPTERS, chapter  # noqa: E402
from neuronlab.experiments.__main__ import chapter_name, folder_path, folder_problem  # noqa: E402
from neuronlab.models import BracketRNN, SmallCNN, build_model  # noqa: E402
from neuronlab.nsr import NeuronSteadiness  # noqa: E402
from neuronlab.rejuvenation import GammaL1  # noqa: E402
from neuronlab.train import StepContext, evaluate, fit, make_optimizer  # noqa: E402

from neuronlab.experiments import bench  # noqa: E402  (the same interleaved timing as the CPU benchmark)
from neuronlab.experiments.bench import interleaved_times  # noqa: E402

PROFILE = "full"
DRY_LABEL = "dry run on CPU: timings are not GPU timings"
COLUMNS = ["chapter", "experiment", "setting", "steps measured", "s/step", "projected s/epoch", "epochs", "runs",
           "projected hours", "peak MB", "finite", "loss fell", "loss first", "loss last", "note"]


# ============================================================================== the real datasets' sizes
def _default(fn: Callable, name: str) -> Any:
    """The default value of parameter ``name`` of ``fn`` (the protocol a run function applies)."""
    return inspect.signature(fn).parameters[name].default


@dataclass(frozen=True)
class DataSize:
    """The size of a full-profile dataset as the real loader returns it: what the synthetic twin copies.

    Dense data: ``shape`` is one sample's image shape ``(C, H, W)`` (MLPs see it flattened) and ``n_train``,
    ``n_val``, ``n_test`` the split sizes. Graphs: ``shape`` is ``(features,)``, ``nodes`` and ``edges`` (columns
    of ``edge_index``, both directions of an undirected edge counted) and the mask sizes as split sizes.
    Sequences (Dyck-1): ``shape`` is ``(symbols,)``, the split sizes count strings, ``num_classes`` is 2 (the
    per-step target: may ")" follow?).
    ``twin`` names the dataset whose synthetic tensors stand in (same shape and sizes).
    """

    name: str
    kind: str  # "dense", "graph" or "sequence"
    shape: Tuple[int, ...]
    num_classes: int
    n_train: int
    n_val: int
    n_test: int
    source: str
    nodes: int = 0
    edges: int = 0
    twin: str = ""


def _graph_size(name: str, nodes: int, edges: int, features: int, classes: int, train: float, val: float,
                test: float, source: str) -> DataSize:
    """A graph's :class:`DataSize`; ``train``/``val``/``test`` are node counts (>= 1) or fractions (< 1)."""
    count = [int(round(f * nodes)) if f < 1 else int(f) for f in (train, val, test)]
    return DataSize(name, "graph", (features,), classes, *count, source=source, nodes=nodes, edges=edges)


#: The lengths of Dyck-1's training and test strings, :func:`~neuronlab.data.dyck1_dataset`'s defaults
#: (the protocol of Suzgun et al. 2019, which chapter 5's ``bracket_run`` uses).
DYCK1_LENGTHS = (_default(dyck1_dataset, "train_lengths"), _default(dyck1_dataset, "test_lengths"))

#: The full profile's datasets. Image split sizes are those of :mod:`neuronlab.data.images` (MNIST and
#: Fashion-MNIST: the official 60,000 training images less a 10,000 validation split, the official 10,000
#: test images; CIFAR-10: 50,000 less 5,000, and 10,000). Graph sizes are the PyTorch Geometric
#: documentation's dataset statistics (``Planetoid``, ``Amazon``, ``WikiCS``), with the splits
#: :mod:`neuronlab.data.graphs` uses. Dyck-1: chapter 5's full profile (``bracket_train``, ``bracket_test``).
DATASETS: Dict[str, DataSize] = {
    "mnist": DataSize("mnist", "dense", (1, 28, 28), 10, 50_000, 10_000, 10_000,
                      "MNIST: 60,000 train (less 10,000 validation) + 10,000 test, 1x28x28, 10 classes"),
    "fashion-mnist": DataSize("fashion-mnist", "dense", (1, 28, 28), 10, 50_000, 10_000, 10_000,
                              "Fashion-MNIST: as MNIST", twin="mnist"),
    "cifar10": DataSize("cifar10", "dense", (3, 32, 32), 10, 45_000, 5_000, 10_000,
                        "CIFAR-10: 50,000 train (less 5,000 validation) + 10,000 test, 3x32x32, 10 classes"),
    "pubmed": _graph_size("pubmed", 19_717, 88_648, 500, 3, 60, 500, 1_000,
                          "PyG Planetoid docs (PubMed): 19,717 nodes, 88,648 edges, 500 features, 3 classes; "
                          "public split 20 per class / 500 / 1,000"),
    "amazon-photo": _graph_size("amazon-photo", 7_650, 238_162, 745, 8, 0.6, 0.2, 0.2,
                                "PyG Amazon docs (Photo): 7,650 nodes, 238,162 edges, 745 features, 8 classes; "
                                "neuronlab's seeded split 60 % / 20 % / 20 %"),
    "amazon-computers": _graph_size("amazon-computers", 13_752, 491_722, 767, 10, 0.6, 0.2, 0.2,
                                    "PyG Amazon docs (Computers): 13,752 nodes, 491,722 edges, 767 features, "
                                    "10 classes; neuronlab's seeded split 60 % / 20 % / 20 %"),
    "wikics": _graph_size("wikics", 11_701, 431_726, 300, 10, 0.05, 0.225, 0.5,
                          "PyG WikiCS docs: 11,701 nodes, 216,123 links, 300 features, 10 classes; loaded with "
                          "is_undirected=True, i.e. 431,726 directed edges (the count DGL's docs give for the "
                          "same symmetrization); masks about 5 % / 22.5 % / 50 % (approximate: one of the 20 "
                          "official training splits; a full-batch step's cost does not depend on them)"),
    "dyck1": DataSize("dyck1", "sequence", (2,), 2, 5_000, 0, 1_000,
                      "Dyck-1 (Suzgun et al. 2019; neuronlab.data.dyck1_dataset, generated in code: the real "
                      f"strings, not a twin): 5,000 distinct training strings of even length "
                      f"{DYCK1_LENGTHS[0][0]}-{DYCK1_LENGTHS[0][1]}, 1,000 test strings of even length "
                      f"{DYCK1_LENGTHS[1][0]}-{DYCK1_LENGTHS[1][1]}, 2 symbols, no validation split"),
}


# ============================================================================== run modes
@dataclass(frozen=True)
class Mode:
    """How much to run: the real sizes on CUDA, or the tiny dry form on the CPU."""

    dry: bool
    device: torch.device
    warmup: int            # untimed steps first
    min_timed: int         # timed steps at least (the loss check needs them)
    max_timed: int         # timed steps at most
    max_batch: int         # batch sizes are capped at this (dry form)
    dense_sizes: Optional[Tuple[int, int, int]]  # (train, val, test) of the dry form, None: real sizes
    graph_nodes: Optional[int]                     # nodes of the dry form's graphs, None: real sizes
    cnn_width: Optional[int]                       # width of ResNet-18 / VGG-19 in the dry form
    nsr_repeats: Tuple[int, int]                   # timed steps per round: (MLP-4, ResNet-18)
    nsr_rounds: int


GPU_MODE = dict(dry=False, warmup=5, min_timed=20, max_timed=200, max_batch=10**9, dense_sizes=None,
                graph_nodes=None, cnn_width=None, nsr_repeats=(300, 40), nsr_rounds=3)
DRY_MODE = dict(dry=True, warmup=3, min_timed=21, max_timed=21, max_batch=16, dense_sizes=(384, 64, 64),
                graph_nodes=200, cnn_width=8, nsr_repeats=(20, 4), nsr_rounds=1)
#: Mean degree (directed edges per node) of the dry form's graphs.
DRY_DEGREE = 4


def make_mode(dry: bool) -> Mode:
    """The GPU mode on ``cuda``, or the dry mode on the CPU."""
    settings = DRY_MODE if dry else GPU_MODE
    return Mode(device=torch.device("cpu" if dry else "cuda"), **settings)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU), so wall times mean something."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ============================================================================== synthetic twins of the data
SIGNAL = 1.0        # template amplitude against unit Gaussian noise
HOMOPHILY = 0.8     # fraction of graph edges that join two nodes of the same class


def smooth_templates(num_classes: int, shape: Tuple[int, ...], gen: torch.Generator, device: torch.device
                     ) -> torch.Tensor:
    """One template image per class, ``[K, C, H, W]`` with unit standard deviation: a random 4x4 pattern
    per channel, upsampled and made left-right symmetric, so that CIFAR's random crops (shifts of at
    most 4 pixels) and flips keep it recognizable."""
    coarse = torch.randn(num_classes, shape[0], 4, 4, generator=gen, device=device)
    coarse = coarse + coarse.flip(-1)
    fine = F.interpolate(coarse, size=shape[1:], mode="bilinear", align_corners=False)
    return fine / fine.flatten(1).std(1).view(-1, 1, 1, 1)


def synthetic_dense(size: DataSize, mode: Mode, seed: int = 0) -> SimpleNamespace:
    """Images ``[n, C, H, W]`` on the device, split into train/val/test like ``load_dataset``'s splits:
    sample ``i`` is ``SIGNAL * template[y_i] + noise``, with one fixed random template per class."""
    n_train, n_val, n_test = mode.dense_sizes or (size.n_train, size.n_val, size.n_test)
    n = n_train + n_val + n_test
    device = mode.device
    gen = torch.Generator(device=device).manual_seed(seed)
    templates = SIGNAL * smooth_templates(size.num_classes, size.shape, gen, device)
    y = torch.randint(0, size.num_classes, (n,), generator=gen, device=device)
    x = torch.randn(n, *size.shape, generator=gen, device=device)
    for chunk in range(0, n, 10_000):  # add the templates in chunks: no second full-size tensor
        x[chunk:chunk + 10_000] += templates[y[chunk:chunk + 10_000]]
    cut = [0, n_train, n_train + n_val, n]
    splits = {split: (x[cut[i]:cut[i + 1]], y[cut[i]:cut[i + 1]]) for i, split in enumerate(("train", "val", "test"))}
    return SimpleNamespace(name=size.name, kind="dense", num_classes=size.num_classes,
                           **{f"x_{s}": xy[0] for s, xy in splits.items()},
                           **{f"y_{s}": xy[1] for s, xy in splits.items()})


def synthetic_graph(size: DataSize, mode: Mode, seed: int = 0) -> SimpleNamespace:
    """A graph on the device with the real node, edge, feature and class counts (scaled down to
    ``mode.graph_nodes`` nodes of mean degree ``DRY_DEGREE`` in the dry form): node features are class template plus
    noise, undirected edges (both directions stored) join same-class nodes with probability ``HOMOPHILY``,
    and random train/val/test masks of the real sizes."""
    device = mode.device
    nodes = mode.graph_nodes or size.nodes
    scale = nodes / size.nodes
    edges = (DRY_DEGREE * nodes if mode.graph_nodes else size.edges) // 2  # pairs, stored both ways
    n_train = max(int(round(size.n_train * scale)), 5 * size.num_classes) if mode.graph_nodes else size.n_train
    n_val = max(int(round(size.n_val * scale)), 1)
    n_test = max(int(round(size.n_test * scale)), 1)
    gen = torch.Generator(device=device).manual_seed(seed)
    k, features = size.num_classes, size.shape[0]
    y = torch.randint(0, k, (nodes,), generator=gen, device=device)
    x = torch.randn(nodes, features, generator=gen, device=device)
    x += SIGNAL * torch.randn(k, features, generator=gen, device=device)[y]
    src = torch.randint(0, nodes, (edges,), generator=gen, device=device)
    order = torch.argsort(y)
    counts = torch.bincount(y, minlength=k)
    offsets = torch.cumsum(counts, 0) - counts
    pick = (torch.rand(edges, generator=gen, device=device) * counts[y[src]]).long()
    same_class = order[offsets[y[src]] + pick]
    anywhere = torch.randint(0, nodes, (edges,), generator=gen, device=device)
    dst = torch.where(torch.rand(edges, generator=gen, device=device) < HOMOPHILY, same_class, anywhere)
    edge_index = torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], dim=1)
    perm = torch.randperm(nodes, generator=gen, device=device)
    masks = {}
    for split, (lo, hi) in (("train", (0, n_train)), ("val", (n_train, n_train + n_val)),
                            ("test", (n_train + n_val, min(nodes, n_train + n_val + n_test)))):
        mask = torch.zeros(nodes, dtype=torch.bool, device=device)
        mask[perm[lo:hi]] = True
        masks[f"{split}_mask"] = mask
    return SimpleNamespace(name=size.name, kind="graph", num_classes=k, num_features=features, x=x, y=y,
                           edge_index=edge_index, **masks)


def dyck1_strings_data(size: DataSize, mode: Mode, seed: int = 0) -> SimpleNamespace:
    """The Dyck-1 strings themselves (:func:`~neuronlab.data.dyck1_dataset`, data seed 0 as ``bracket_run``
    draws them; the dry form: as many training and test strings as it has dense training and test samples),
    as chapter 5's ``bracket_training_data`` gives them to ``fit`` (one-hot ``[strings, steps, 2]``, targets
    ``[strings, steps]`` with -1 on padding), on the device. The test strings only check that the trained
    network's loss is finite (``train_bracket_model`` does not evaluate them)."""
    n_train, _, n_test = (mode.dense_sizes[0], 0, mode.dense_sizes[2]) if mode.dense_sizes else \
        (size.n_train, size.n_val, size.n_test)
    splits = dyck1_dataset(num_train=n_train, num_test=n_test, train_lengths=DYCK1_LENGTHS[0],
                           test_lengths=DYCK1_LENGTHS[1], seed=seed)
    as_fit_data = chapter("ch05").bracket_training_data
    (x_train, y_train), (x_test, y_test) = (as_fit_data(split)["train"] for split in (splits.train, splits.test))
    device = mode.device
    return SimpleNamespace(name=size.name, kind="sequence", num_classes=size.num_classes,
                           x_train=x_train.to(device), y_train=y_train.to(device), x_test=x_test.to(device),
                           y_test=y_test.to(device))


def synthetic(size: DataSize, mode: Mode) -> SimpleNamespace:
    """The synthetic twin of a dataset (dense or graph), on the mode's device; Dyck-1's real strings."""
    if size.kind == "sequence":
        return dyck1_strings_data(size, mode)
    return synthetic_graph(size, mode) if size.kind == "graph" else synthetic_dense(size, mode)


# ============================================================================== recipes: what one setting trains
@dataclass(frozen=True)
class Recipe:
    """Everything that decides the cost of a training step of one setting, read off a run configuration
    by the chapter's adapter (:data:`ADAPTERS`). Equal recipes are measured once."""

    chapter: str
    dataset: str
    arch: str
    flatten: bool = True
    activation: str = "relu"
    init: str = ""                 # the scheme the timed network gets (does not change a step's cost)
    batchnorm: bool = False
    dropout: float = 0.0
    method: str = "vanilla"
    layer: str = "logits"
    lam: float = 0.0
    memory: int = 1
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.0
    weight_decay: float = 0.0
    batch_size: int = 100
    augment: bool = False
    train_samples: int = 0         # a run trains on the first this many training samples (0: all of them)

    def setting_key(self) -> "Recipe":
        """The recipe without what does not change the cost (the strength ``lam``): rows group by this."""
        return dataclasses.replace(self, lam=0.0)

    def describe(self, layers: Sequence[str] = ()) -> str:
        """A one-line label: data, network, loss term, optimizer, batch."""
        net = self.arch + ("" if self.activation in ("relu", "") else f" {self.activation}")
        net += " +BatchNorm" if self.batchnorm else ""
        net += f" +dropout {self.dropout:g}" if self.dropout else ""
        if DATASETS[self.dataset].kind == "sequence":
            term = "masked BCE"
        elif self.method == "vanilla":
            term = "plain CE"
        else:
            where = "+".join(layers) if layers else self.layer
            where = f"{self.layer}→{where}" if self.layer in ("auto", "logits") and layers else where
            term = f"{self.method}@{where}" + (f" m={self.memory}" if self.method == "nsr" else "")
        opt = f"{self.optimizer} lr {self.lr:g}"
        opt += f" mom {self.momentum:g}" if self.momentum else ""
        opt += f" wd {self.weight_decay:g}" if self.weight_decay else ""
        extra = " · crop+flip" if self.augment else ""
        extra += f" · first {self.train_samples:,} training samples" if self.train_samples else ""
        batch = "full batch" if DATASETS[self.dataset].kind == "graph" else f"batch {self.batch_size}"
        return f"{self.dataset} · {net} · {term} · {opt} · {batch}{extra}"


@dataclass
class Planned:
    """One config of an experiment grid, translated: its recipe, its epochs and a note for its row."""

    recipe: Recipe
    epochs: int
    note: str = ""


def plan_ch01(module: ModuleType, config: Mapping[str, Any]) -> Planned:
    """Chapter 1: a deep MLP, plain SGD (``train_init_run``). The four init schemes share a step; the timed
    network gets the scheme that trains it (Xavier for tanh, He for ReLU)."""
    init = "xavier" if config["activation"] == "tanh" else "he"
    depth, width = config["depth"], config["width"]
    recipe = Recipe("ch01", config["dataset"], f"MLP-{depth - 1}x{width}", activation=config["activation"],
                    init=init, optimizer="sgd", lr=config["lr"], batch_size=config["batch_size"])
    return Planned(recipe, config["epochs"], f"init schemes share this step; timed with {init}")


def plan_ch02(module: ModuleType, config: Mapping[str, Any]) -> Planned:
    """Chapter 2: the IBCI MLPs or the small CNN, plain SGD (``fit_protocol``). The base schemes and
    initialization methods share a step; the timed network gets He initialization alone (no campaign)."""
    images = config["arch"].upper().startswith("SMALLCNN")
    recipe = Recipe("ch02", config["dataset"], config["arch"], flatten=not images, init="he",
                    optimizer="sgd", lr=config.get("lr", _default(module.fit_protocol, "lr")),
                    batch_size=config.get("batch_size", _default(module.fit_protocol, "batch_size")))
    return Planned(recipe, config["epochs"], "init methods share this step; timed with he; one-off init not timed")


def plan_ch03(module: ModuleType, config: Mapping[str, Any]) -> Planned:
    """Chapter 3: the family protocol of ``FAMILY_DEFAULTS`` (``train_nsr_run``), with the config's loss
    term on its layer(s) and, on CIFAR-10, crop-and-flip augmentation."""
    arch, method = config["arch"], config["method"]
    family = module.family_of(arch)
    defaults = module.FAMILY_DEFAULTS[family]
    lam = config.get("lam")
    if lam is None:  # train_nsr_run's default strength
        lam = module.OFFICIAL_LAMBDAS.get(arch, 0.1) if method == "nsr" else 0.1
    recipe = Recipe("ch03", config["dataset"], arch, flatten=family == "mlp", init="paper",
                    batchnorm=bool(config.get("batchnorm", False)), dropout=float(config.get("dropout", 0.0)),
                    method=method, layer=config.get("layer", "logits"),
                    lam=0.0 if method == "vanilla" else float(lam), memory=defaults["memory"],
                    optimizer=defaults["optimizer"], lr=config.get("lr") or defaults["lr"],
                    momentum=defaults["momentum"], weight_decay=defaults["weight_decay"],
                    batch_size=config.get("batch_size", _default(module.train_nsr_run, "batch_size")),
                    augment=config["dataset"] == "cifar10")
    note = "cosine schedule: constant over the capped steps" if defaults["scheduler"] else ""
    return Planned(recipe, config["epochs"], note)


def plan_ch04(module: ModuleType, config: Mapping[str, Any]) -> Planned:
    """Chapter 4: a ReLU MLP with Glorot-uniform weights and Adam (``train_relu_mlp``); the grids stop early
    (projected at ``max_epochs``), the label-noise runs do not (the fraction does not change a step)."""
    noise = "fraction" in config
    run = module.label_noise_run if noise else module.train_cooperating_run
    recipe = Recipe("ch04", config["dataset"], f"MLP-{config['depth']}x{config['width']}", init="xavier-uniform",
                    optimizer="adam", lr=config.get("lr", _default(run, "lr")),
                    batch_size=config.get("batch_size", _default(run, "batch_size")))
    if noise:
        return Planned(recipe, config["epochs"], "no early stopping; noise fractions share this step; "
                                                 "tracking every few epochs not timed")
    patience = config.get("patience", _default(run, "patience"))
    return Planned(recipe, config["max_epochs"],
                   f"early stopping (patience {patience}) ignored: all {config['max_epochs']} epochs")


#: Chapter 5's memorization runs: ``memorization_run`` trains with Adam at this learning rate and batch size
#: (fixed in its body, not parameters).
CH05_MEMORIZATION_PROTOCOL = dict(lr=1e-3, batch_size=128)
#: Chapter 5's rejuvenation runs: ``rejuvenation_run`` trains with SGD at this momentum (fixed in its body).
CH05_REJUVENATION_MOMENTUM = 0.9


def plan_ch05(module: ModuleType, config: Mapping[str, Any]) -> Planned:
    """Chapter 5, by experiment (read off the configuration's keys, as ``run_config`` does):

    * ``vision``: ``vision_network`` (``"mlp"``: chapter 4's ReLU MLP on flattened images; ``"cnn"``:
      :class:`~neuronlab.models.SmallCNN` with ``width`` hidden nodes, on images) with Adam
      (``train_vision_network``). One run trains one network per seed, so the row's epochs are
      seeds x ``max_epochs`` (early stopping ignored);
    * ``memorization``: the ReLU MLP with Adam on the first ``train_samples`` training images;
    * ``bracket``: one :class:`~neuronlab.models.BracketRNN` per seed on Dyck-1 (masked binary cross-entropy,
      Adam, the configuration's batch size); epochs: seeds x ``epochs``;
    * ``rejuvenation``: ``rejuvenation_network`` (SmallCNN with BatchNorm) with SGD, momentum and the
      :class:`~neuronlab.rejuvenation.GammaL1` penalty at ``lam`` as a loss term.
    """
    if "num_train" in config:  # bracket
        size = DATASETS["dyck1"]
        if (config["num_train"], config["num_test"]) != (size.n_train, size.n_test):
            raise ValueError(f"the bracket grid asks for {config['num_train']} training and {config['num_test']} "
                             f"test strings, DATASETS['dyck1'] has {size.n_train} and {size.n_test}: update it")
        seeds = len(config["seeds"])
        recipe = Recipe("ch05", "dyck1", f"{config['cell'].upper()}-{config['hidden']}", flatten=False,
                        activation="", init="pytorch", optimizer="adam",
                        lr=config.get("lr", _default(module.bracket_run, "lr")), batch_size=config["batch_size"])
        return Planned(recipe, seeds * config["epochs"],
                       f"one run trains {seeds} networks (one per seed): epochs = {seeds} x {config['epochs']}; "
                       "fit's step on bracket_training_data with masked_bce; no evaluation during training "
                       "(fit gets no validation or test split); the analyses (correlations, interventions, "
                       "rankings) not timed")
    if "seeds" in config:  # vision
        seeds, arch = len(config["seeds"]), config["arch"]
        run = module.train_vision_network
        if arch == "mlp":
            net, flatten = f"MLP-{config['depth']}x{config['width']}", True
        elif arch == "cnn":
            channels = _default(SmallCNN.__init__, "channels")
            net, flatten = f"SmallCNN-{channels[0]}-{channels[1]}-h{config['width']}", False
        else:
            raise ValueError(f"unknown vision arch {arch!r}: gpu_check knows 'mlp' and 'cnn'")
        recipe = Recipe("ch05", config["dataset"], net, flatten=flatten,
                        init="xavier-uniform" if flatten else "pytorch", optimizer="adam", lr=_default(run, "lr"),
                        batch_size=_default(run, "batch_size"))
        return Planned(recipe, seeds * config["max_epochs"],
                       f"one run trains {seeds} networks (one per seed): epochs = {seeds} x {config['max_epochs']}; "
                       f"early stopping (patience {_default(run, 'patience')}) ignored; the analyses (similarity, "
                       "rankings, conductance, ablation) and the first network's per-epoch snapshots not timed")
    if "fraction" in config:  # memorization
        recipe = Recipe("ch05", config["dataset"], f"MLP-{config['depth']}x{config['width']}", init="xavier-uniform",
                        optimizer="adam", train_samples=config["train_samples"], **CH05_MEMORIZATION_PROTOCOL)
        return Planned(recipe, config["epochs"],
                       f"trains on the first {config['train_samples']:,} training images (timed on the whole "
                       "split: the same step); no early stopping; label-noise fractions share this step; "
                       "the ablation not timed")
    if "lam" in config:  # rejuvenation
        run = module.rejuvenation_run
        channels, hidden = _default(module.rejuvenation_network, "channels"), _default(module.rejuvenation_network,
                                                                                      "hidden")
        recipe = Recipe("ch05", config["dataset"], f"SmallCNN-{channels[0]}-{channels[1]}-h{hidden}", flatten=False,
                        init="pytorch", batchnorm=True, method="gamma_l1", layer="BatchNorm",
                        lam=float(config["lam"]), optimizer="sgd", lr=_default(run, "lr"),
                        momentum=CH05_REJUVENATION_MOMENTUM, batch_size=_default(run, "batch_size"))
        return Planned(recipe, config["epochs"],
                       "with and without rejuvenation share this step; timed with the GammaL1 penalty throughout "
                       "(after reaching the utilization target, training goes on without it: an upper bound); "
                       "utilization tracking and rejuvenate_ not timed")
    raise ValueError(f"cannot tell which chapter 5 experiment this configuration belongs to: {sorted(config)}")


#: Chapter name -> the function that reads a run configuration of its grid (a new chapter needs one).
ADAPTERS: Dict[str, Callable[[ModuleType, Mapping[str, Any]], Planned]] = {
    "ch01": plan_ch01, "ch02": plan_ch02, "ch03": plan_ch03, "ch04": plan_ch04, "ch05": plan_ch05}


@dataclass
class Row:
    """One row of the table: a setting of an experiment (its recipe, epochs and number of runs, the strengths
    its runs use, notes), or the error that kept an experiment from being planned."""

    chapter: str
    experiment: str
    recipe: Recipe
    epochs: int
    runs: int
    lams: List[float] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    error: str = ""


def plan_rows(chapters: Sequence[str]) -> List[Row]:
    """The table's rows: per chapter and experiment of the full profile, one row per setting (recipe
    without ``lam``, and epochs), counting each configuration once per chapter (under the first
    experiment whose grid lists it)."""
    rows: List[Row] = []
    for name in chapters:
        module = chapter(name)
        seen: Dict[str, str] = {}
        for experiment in module.EXPERIMENTS:
            if name not in ADAPTERS:
                rows.append(Row(name, experiment, Recipe(name, "mnist", "?"), 0, 0,
                                error=f"gpu_check has no adapter for chapter {name}: add one to ADAPTERS"))
                continue
            by_setting: Dict[Tuple[Recipe, int], Row] = {}
            try:
                grid = [(config, ADAPTERS[name](module, config))
                        for config in module.experiment_grid(experiment, PROFILE)]
            except Exception as err:  # noqa: BLE001 - a grid the adapter cannot read is a failed row, not a crash
                rows.append(Row(name, experiment, Recipe(name, "mnist", "?"), 0, 0,
                                error=f"cannot plan it: {type(err).__name__}: {err}"))
                continue
            for config, planned in grid:
                key = (planned.recipe.setting_key(), planned.epochs)
                row = by_setting.get(key)
                if row is None:
                    row = by_setting[key] = Row(name, experiment, planned.recipe, planned.epochs, 0,
                                                notes=[planned.note] if planned.note else [])
                if planned.recipe.lam not in row.lams and planned.recipe.method != "vanilla":
                    row.lams.append(planned.recipe.lam)
                canonical = json.dumps(config, sort_keys=True, default=str)
                if canonical in seen:
                    note = f"runs counted under {seen[canonical]}"
                    if note not in row.notes:
                        row.notes.append(note)
                else:
                    seen[canonical] = experiment
                    row.runs += 1
            rows.extend(by_setting.values())
    return rows


# ============================================================================== building and training one setting
@dataclass
class Built:
    """A setting ready to train: the network, its loss terms (hook terms listed in ``hooked``), the
    regularized layers, and the protocol's optimizer and augmentation."""

    model: nn.Module
    terms: Dict[str, Callable]
    hooked: List[Any]
    layers: List[str]
    loss_fn: Optional[Callable] = None  # the data loss ``fit`` gets, None: its default cross-entropy


def _twin(size: DataSize, data: SimpleNamespace, flatten: bool) -> SimpleNamespace:
    """A CPU stand-in of the data for the chapters' model builders: sizes, and the first 1,000 training
    samples (what ``regularized_layers(..., "auto")`` and LSUV read)."""
    if size.kind == "graph":
        return SimpleNamespace(name=size.name, num_classes=size.num_classes, num_features=size.shape[0])
    if size.kind == "sequence":
        return SimpleNamespace(name=size.name, num_classes=size.num_classes)
    x = data.x_train[:1000].cpu()
    return SimpleNamespace(name=size.name, num_classes=size.num_classes, x_train=x.flatten(1) if flatten else x,
                           y_train=data.y_train[:1000].cpu())


def _dry_arch(arch: str, mode: Mode) -> str:
    """The dry form trains ResNet-18 and VGG-19 at width ``mode.cnn_width`` (e.g. ``ResNet-18-w8``)."""
    if mode.cnn_width and re.fullmatch(r"(ResNet-18|VGG-19)", arch, flags=re.IGNORECASE):
        return f"{arch}-w{mode.cnn_width}"
    return arch


def build(recipe: Recipe, size: DataSize, data: SimpleNamespace, mode: Mode, seed: int = 0) -> Built:
    """Build the setting's network with its chapter's own functions, and its loss terms (chapters 3 and 5)."""
    module = chapter(recipe.chapter)
    twin = _twin(size, data, recipe.flatten)
    in_features = math.prod(size.shape)
    torch.manual_seed(seed)
    terms: Dict[str, Callable] = {}
    hooked: List[Any] = []
    layers: List[str] = []
    loss_fn: Optional[Callable] = None
    if recipe.chapter == "ch01":
        depth, width = (int(v) for v in re.fullmatch(r"MLP-(\d+)x(\d+)", recipe.arch).groups())
        model = module.initialized_mlp(depth + 1, width, activation=recipe.activation, scheme=recipe.init,
                                       in_features=in_features, num_classes=size.num_classes,
                                       x=twin.x_train[:512], seed=seed)
    elif recipe.chapter == "ch02":
        model = build_model(recipe.arch, twin)
        module.initialize_for_method(model, "vanilla", recipe.init, twin.x_train, twin.y_train,
                                     torch.Generator().manual_seed(seed))
    elif recipe.chapter == "ch04":
        depth, width = (int(v) for v in re.fullmatch(r"MLP-(\d+)x(\d+)", recipe.arch).groups())
        model = module.relu_mlp(in_features, depth, width, size.num_classes, seed)
    elif recipe.chapter == "ch03":
        model = module.paper_model(_dry_arch(recipe.arch, mode), twin, batchnorm=recipe.batchnorm,
                                   dropout=recipe.dropout)
        layers = module.regularized_layers(model, recipe.layer, twin) if recipe.method != "vanilla" else []
        lam = recipe.lam
        make = {"nsr": lambda: NeuronSteadiness(model, layers, size.num_classes, lam=lam, memory=recipe.memory),
                "l1": lambda: regularizers.ActivationL1(model, layers, lam),
                "l2": lambda: regularizers.WeightL2(model, lam),
                "jacobian": lambda: regularizers.JacobianNorm(lam, generator=torch.Generator().manual_seed(seed)),
                "orthogonality": lambda: regularizers.WeightOrthogonality(model, lam)}
        if recipe.method != "vanilla":
            term = make[recipe.method]()
            terms[recipe.method] = term
            if isinstance(term, (NeuronSteadiness, regularizers.ActivationL1)):
                hooked.append(term)
    elif recipe.chapter == "ch05":
        mlp = re.fullmatch(r"MLP-(\d+)x(\d+)", recipe.arch)
        cnn = re.fullmatch(r"SmallCNN-(\d+)-(\d+)-h(\d+)", recipe.arch)
        rnn = re.fullmatch(r"(LSTM|GRU)-(\d+)", recipe.arch)
        if mlp:  # vision and memorization: chapter 4's ReLU MLP
            model = module.vision_network("mlp", twin, int(mlp[1]), int(mlp[2]), seed)
        elif cnn and recipe.batchnorm:
            model = module.rejuvenation_network(twin, seed, channels=(int(cnn[1]), int(cnn[2])), hidden=int(cnn[3]))
        elif cnn:  # vision_network's SmallCNN has the default channels, which plan_ch05 names
            model = module.vision_network("cnn", twin, 0, int(cnn[3]), seed)
        elif rnn:  # as train_bracket_model builds and trains it
            torch.manual_seed(seed)
            model = BracketRNN(cell=rnn[1].lower(), hidden=int(rnn[2]))
            loss_fn = module.masked_bce
        else:
            raise ValueError(f"no chapter 5 builder for network {recipe.arch!r}")
        if recipe.method == "gamma_l1":
            terms["gamma_l1"] = GammaL1(model, recipe.lam)
            layers = [name for name, m in model.named_modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
        elif recipe.method != "vanilla":
            raise ValueError(f"no chapter 5 loss term {recipe.method!r}")
    else:
        raise ValueError(f"no builder for chapter {recipe.chapter}")
    return Built(model, terms, hooked, layers, loss_fn)


def dense_batches(n_train: int, batch_size: int, device: torch.device, seed: int = 0
                  ) -> Iterator[Tuple[torch.Tensor, torch.Generator]]:
    """Index batches as ``fit`` draws them: per epoch a CPU generator, a permutation moved to the device,
    cut into ``batch_size`` pieces; epochs follow one another for as long as asked."""
    epoch = 1
    while True:
        gen = torch.Generator().manual_seed(seed * 1000 + epoch)
        for idx in torch.randperm(n_train, generator=gen).to(device).split(batch_size):
            yield idx, gen
        epoch += 1


def train_step(model: nn.Module, opt: torch.optim.Optimizer, terms: Mapping[str, Callable], inputs: Any,
               targets: torch.Tensor, mask: Optional[torch.Tensor], graph: bool, step: int,
               loss_fn: Optional[Callable] = None) -> Tuple[float, float]:
    """One step as ``fit`` takes it: forward, cross-entropy (on the masked nodes of a graph; or ``loss_fn``),
    plus each extra term called with a :class:`~neuronlab.train.StepContext`, a finiteness check (a device
    sync, as in ``fit``), backward, optimizer step. Returns ``(data loss, total loss)``; no step is taken
    when the total is not finite."""
    logits = model(*inputs) if graph else model(inputs)
    fit_logits = logits[mask] if mask is not None else logits
    fit_targets = targets[mask] if mask is not None else targets
    data_loss = (loss_fn or F.cross_entropy)(fit_logits, fit_targets)
    ctx = StepContext(model, inputs, targets, logits, mask, 1, step)
    total = data_loss
    for term in terms.values():
        total = total + term(ctx)
    watched = [data_loss.detach(), total.detach()]
    if loss_fn is None:  # class labels: fit counts the accuracy seen in training (not for other targets)
        watched.append((fit_logits.detach().argmax(1) == fit_targets).sum().to(total.dtype))
    values = torch.stack(watched).tolist()  # one sync
    if not (math.isfinite(values[0]) and math.isfinite(values[1])):
        return values[0], values[1]
    opt.zero_grad(set_to_none=True)
    total.backward()
    opt.step()
    return values[0], values[1]


def evaluation_seconds(model: nn.Module, data: SimpleNamespace, size: DataSize, flatten: bool,
                       device: torch.device, loss_fn: Optional[Callable] = None) -> Tuple[float, bool]:
    """Wall time of one end-of-epoch evaluation as ``fit`` does it (validation and test splits, eval mode,
    no gradients; a graph: one forward pass, both masks), the second of two calls; and whether its losses
    were finite. Dyck-1: 0 s (``train_bracket_model`` gives ``fit`` no split to evaluate), and whether the
    loss (``loss_fn``) on the test strings is finite."""
    if size.kind == "sequence":
        loss, _ = evaluate(model, data.x_test, data.y_test, batch_size=_default(fit, "eval_batch_size"),
                           loss_fn=loss_fn)
        return 0.0, math.isfinite(loss)
    eval_batch = _default(fit, "eval_batch_size")
    finite = True
    seconds = float("nan")
    for _ in range(2):
        synchronize(device)
        start = time.perf_counter()
        if size.kind == "graph":
            model.eval()
            with torch.no_grad():
                logits = model(data.x, data.edge_index)
                for mask in (data.val_mask, data.test_mask):
                    loss = float(F.cross_entropy(logits[mask], data.y[mask]))
                    float((logits[mask].argmax(1) == data.y[mask]).float().mean())  # the accuracy, as fit reads it
                    finite &= math.isfinite(loss)
            model.train()
        else:
            for split in ("val", "test"):
                x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
                loss, _ = evaluate(model, x.flatten(1) if flatten else x, y, batch_size=eval_batch)
                finite &= math.isfinite(loss)
        synchronize(device)
        seconds = time.perf_counter() - start
    return seconds, finite


@dataclass
class Measurement:
    """What training one setting for the capped number of steps gave."""

    steps_timed: int = 0
    seconds_per_step: float = float("nan")
    eval_seconds: float = float("nan")
    peak_mb: Optional[float] = None
    finite: bool = False
    loss_fell: bool = False
    loss_first: float = float("nan")
    loss_last: float = float("nan")
    layers: List[str] = field(default_factory=list)
    error: str = ""


def loss_fell(losses: Sequence[float]) -> Tuple[bool, float, float]:
    """Whether training lowered the loss: the mean loss of the last quarter of the steps (at least two
    steps) is below the loss of the first step, the untrained network's. Returns that and the two losses."""
    k = max(2, len(losses) // 4)
    if len(losses) < k + 1:
        return False, float("nan"), float("nan")
    first, last = losses[0], statistics.fmean(losses[-k:])
    return last < first, first, last


def measure(recipe: Recipe, size: DataSize, data: SimpleNamespace, mode: Mode, allowance_s: float) -> Measurement:
    """Train one setting on the device: ``mode.warmup`` untimed steps, then timed steps (each synchronized)
    until ``mode.min_timed`` are done and either ``allowance_s`` seconds have passed or ``mode.max_timed``
    steps are done; then time one evaluation and read the peak memory."""
    result = Measurement()
    device = mode.device
    graph = size.kind == "graph"
    built = build(recipe, size, data, mode)
    result.layers = list(built.layers)
    model = built.model
    with contextlib.ExitStack() as stack:
        for term in built.hooked:
            stack.enter_context(term)
        model.to(device)
        opt = make_optimizer(model, recipe.optimizer, recipe.lr, recipe.momentum, recipe.weight_decay)
        model.train()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        batch = min(recipe.batch_size, mode.max_batch)
        batches = None if graph else dense_batches(data.x_train.shape[0], batch, device)
        x_train = None if graph else (data.x_train.flatten(1) if recipe.flatten else data.x_train)
        losses: List[float] = []
        times: List[float] = []
        started = None
        finite = True
        for step in range(mode.warmup + mode.max_timed):
            synchronize(device)
            t0 = time.perf_counter()
            if graph:
                inputs, targets, mask = (data.x, data.edge_index), data.y, data.train_mask
            else:
                idx, gen = next(batches)
                inputs, targets, mask = x_train[idx], data.y_train[idx], None
                if recipe.augment:
                    inputs = random_crop_flip(inputs, generator=gen)
            data_loss, total = train_step(model, opt, built.terms, inputs, targets, mask, graph, step, built.loss_fn)
            synchronize(device)
            elapsed = time.perf_counter() - t0
            losses.append(data_loss)
            if not (math.isfinite(data_loss) and math.isfinite(total)):
                finite = False
                break
            if step >= mode.warmup:
                started = started if started is not None else t0
                times.append(elapsed)
                if len(times) >= mode.min_timed and time.perf_counter() - started > allowance_s:
                    break
        eval_s, eval_finite = evaluation_seconds(model, data, size, recipe.flatten, device, built.loss_fn)
    params_finite = all(bool(torch.isfinite(p).all()) for p in model.parameters())
    result.steps_timed = len(times)
    result.seconds_per_step = statistics.median(times) if times else float("nan")
    result.eval_seconds = eval_s
    result.finite = finite and eval_finite and params_finite and math.isfinite(result.seconds_per_step)
    result.loss_fell, result.loss_first, result.loss_last = loss_fell(losses)
    if device.type == "cuda":
        result.peak_mb = torch.cuda.max_memory_allocated(device) / 2**20
    return result


# ============================================================================== the NSR overhead
def nsr_overhead(model: nn.Module, layer: str, x: torch.Tensor, y: torch.Tensor, *, lam: float, memory: int,
                 opt_kwargs: Mapping[str, float], repeats: int, rounds: int, device: torch.device,
                 warmup: int = 10) -> Dict[str, float]:
    """Median step time without and with :class:`NeuronSteadiness` on ``layer``, as ``scripts/bench.py``
    measures it: each variant on its own copy of ``model``, the two interleaved step by step (so drifts in
    the device's speed hit both alike), ``warmup`` untimed steps, ``repeats`` timed ones, over ``rounds``
    fresh rounds; the ratio is the median of the rounds' ratios."""
    plain_all, nsr_all, ratios = [], [], []
    for _ in range(rounds):
        copies = [copy.deepcopy(model).to(device) for _ in range(2)]
        opts = [torch.optim.SGD(m.parameters(), **opt_kwargs) for m in copies]
        with NeuronSteadiness(copies[1], layer, num_classes=10, lam=lam, memory=memory) as nsr:
            times = interleaved_times(copies, opts, [None, nsr], x, y, repeats, warmup, device)
        plain_all += times[0]
        nsr_all += times[1]
        ratios.append(statistics.median(times[1]) / statistics.median(times[0]))
    return {"plain_ms": 1e3 * statistics.median(plain_all), "nsr_ms": 1e3 * statistics.median(nsr_all),
            "ratio": statistics.median(ratios), "steps": repeats * rounds}


def nsr_ratios(mode: Mode) -> Dict[str, Dict[str, float]]:
    """The NSR overhead of MLP-4 (batch 100, logits, m = 5, the MLP protocol) and ResNet-18 (batch 128,
    logits, m = 1, the CNN protocol with CIFAR-10's learning rate), with chapter 3's official strengths."""
    ch03 = chapter("ch03")
    device = mode.device
    gen = torch.Generator().manual_seed(0)
    out = {}
    mlp_opt = {k: ch03.FAMILY_DEFAULTS["mlp"][k] for k in ("lr", "momentum", "weight_decay")}
    torch.manual_seed(0)
    mlp = ch03.paper_model("MLP-4", SimpleNamespace(num_classes=10, x_train=torch.zeros(1, 784)))
    x = torch.randn(100, 784, generator=gen).to(device)
    y = torch.randint(0, 10, (100,), generator=gen).to(device)
    out["MLP-4, batch 100, NSR on the logits, m=5"] = nsr_overhead(
        mlp, "fc3", x, y, lam=ch03.OFFICIAL_LAMBDAS["MLP-4"], memory=5, opt_kwargs=mlp_opt,
        repeats=mode.nsr_repeats[0], rounds=mode.nsr_rounds, device=device)
    cnn_opt = {k: ch03.FAMILY_DEFAULTS["cnn"][k] for k in ("momentum", "weight_decay")}
    cnn_opt["lr"] = 0.1
    arch = _dry_arch("ResNet-18", mode)
    batch = min(128, mode.max_batch)
    torch.manual_seed(0)
    resnet = ch03.paper_model(arch, SimpleNamespace(num_classes=10, x_train=torch.zeros(1, 3, 32, 32)))
    x = torch.randn(batch, 3, 32, 32, generator=gen).to(device)
    y = torch.randint(0, 10, (batch,), generator=gen).to(device)
    out[f"{arch}, batch {batch}, NSR on the logits, m=1"] = nsr_overhead(
        resnet, "fc", x, y, lam=ch03.OFFICIAL_LAMBDAS["ResNet-18"], memory=1, opt_kwargs=cnn_opt,
        repeats=mode.nsr_repeats[1], rounds=mode.nsr_rounds, device=device, warmup=3 if mode.dry else 10)
    return out


def nsr_memory_table(mode: Mode):
    """``scripts/bench.py``'s NSR table on the device (MLP-4, batch 100, every memory of
    :data:`neuronlab.experiments.bench.MEMORIES`; no CNN): the summary over rounds."""
    return bench.nsr_summary(bench.nsr_table(repeats=mode.nsr_repeats[0], rounds=mode.nsr_rounds, cnn=False,
                                             device=str(mode.device)))


# ============================================================================== the whole check
def steps_per_epoch(recipe: Recipe) -> int:
    """Optimizer steps in one epoch of the real training split, or of its first ``recipe.train_samples``
    samples (1 for a graph: full batch)."""
    size = DATASETS[recipe.dataset]
    n_train = min(recipe.train_samples, size.n_train) if recipe.train_samples else size.n_train
    return 1 if size.kind == "graph" else math.ceil(n_train / recipe.batch_size)


def measured_recipe(recipe: Recipe) -> Recipe:
    """The recipe a row's numbers come from: the same on the dataset whose synthetic twin stands in for its
    data (Fashion-MNIST's rows share MNIST's measurements: same shapes and sizes), on the whole training
    split (a step costs the same whichever part of it its batch comes from)."""
    return dataclasses.replace(recipe, dataset=DATASETS[recipe.dataset].twin or recipe.dataset, train_samples=0)


def run_measurements(rows: Sequence[Row], mode: Mode, deadline: float) -> Dict[Recipe, Measurement]:
    """Measure every distinct recipe of ``rows`` (each row's recipe carries the strength of its first
    configuration), dataset by dataset (one synthetic twin on the device at a time), sharing the time left
    before ``deadline`` equally among the recipes still to measure."""
    recipes = list(dict.fromkeys(measured_recipe(row.recipe) for row in rows if not row.error))
    twin_of = lambda r: r.dataset  # noqa: E731
    order = list(dict.fromkeys(twin_of(r) for r in recipes))
    order.sort(key=lambda name: name == "cifar10")  # the slow CNNs last: they get the time the others leave
    results: Dict[Recipe, Measurement] = {}
    todo = sum(1 for _ in recipes)
    for twin in order:
        size = DATASETS[twin]
        try:
            data = synthetic(size, mode)
        except Exception as err:  # noqa: BLE001 - report, go on with the other datasets
            for recipe in (r for r in recipes if twin_of(r) == twin):
                results[recipe] = Measurement(error=f"synthetic {twin}: {type(err).__name__}: {err}")
                todo -= 1
            continue
        for recipe in (r for r in recipes if twin_of(r) == twin):
            allowance = max(0.0, deadline - time.perf_counter()) / max(1, todo)
            try:
                result = measure(recipe, DATASETS[recipe.dataset], data, mode, allowance)
            except Exception as err:  # noqa: BLE001 - one broken setting must not hide the others
                result = Measurement(error=f"{type(err).__name__}: {err}")
                traceback.print_exc()
            results[recipe] = result
            todo -= 1
            status = "ok" if result.finite and result.loss_fell else "FAIL"
            print(f"[{time.perf_counter() - START:6.1f}s] {status:4} {recipe.describe(result.layers)}: "
                  f"{result.steps_timed} steps, {1e3 * result.seconds_per_step:.3f} ms/step, "
                  f"loss {result.loss_first:.3f} -> {result.loss_last:.3f}"
                  + (f", {result.error}" if result.error else ""), flush=True)
        del data
        if mode.device.type == "cuda":
            torch.cuda.empty_cache()
    return results


def table_rows(rows: Sequence[Row], results: Mapping[Recipe, Measurement], mode: Mode) -> List[Dict[str, Any]]:
    """The CSV/Markdown rows: each planned row with its recipe's measurement and projection."""
    out = []
    for row in rows:
        m = Measurement(error=row.error) if row.error else \
            results.get(measured_recipe(row.recipe), Measurement(error="not measured"))
        s_epoch = steps_per_epoch(row.recipe) * m.seconds_per_step + m.eval_seconds
        hours = s_epoch * row.epochs * row.runs / 3600
        label = row.recipe.describe(m.layers)
        if len(row.lams) > 1:
            label += f" · λ ∈ {{{', '.join(f'{v:g}' for v in row.lams)}}} (timed at {row.recipe.lam:g})"
        elif row.lams:
            label += f" · λ {row.lams[0]:g}"
        if mode.dry and row.recipe.arch != _dry_arch(row.recipe.arch, mode):
            label += f" (dry: width {mode.cnn_width})"
        notes = list(row.notes) + ([f"error: {m.error}"] if m.error else [])
        out.append({
            "chapter": row.chapter, "experiment": row.experiment, "setting": label,
            "steps measured": m.steps_timed, "s/step": f"{m.seconds_per_step:.4g}",
            "projected s/epoch": f"{s_epoch:.4g}", "epochs": row.epochs, "runs": row.runs,
            "projected hours": f"{hours:.3g}", "peak MB": "" if m.peak_mb is None else f"{m.peak_mb:.0f}",
            "finite": m.finite and not m.error and math.isfinite(hours),
            "loss fell": m.loss_fell and not m.error,
            "loss first": f"{m.loss_first:.4g}", "loss last": f"{m.loss_last:.4g}", "note": "; ".join(notes)})
    return out


def device_name(mode: Mode) -> str:
    """The device in words: the GPU's name, or the CPU and its threads."""
    if mode.device.type == "cuda":
        props = torch.cuda.get_device_properties(mode.device)
        return f"{torch.cuda.get_device_name(mode.device)} ({props.total_memory / 2**30:.0f} GiB)"
    return f"CPU ({torch.get_num_threads()} threads)"


def _md_escape(value: Any) -> str:
    return str(value).replace("|", "\\|")


def write_outputs(out_dir: Path, table: Sequence[Mapping[str, Any]], ratios: Mapping[str, Mapping[str, float]],
                  mode: Mode, wall_s: float, budget_s: float, memories=None) -> None:
    """Write ``table.csv`` (the rows) and ``table.md`` (header with device, torch version and NSR ratios, the
    rows, totals per chapter, and the data sizes with their sources)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "table.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(table)
    try:
        import torch_geometric
        pyg = torch_geometric.__version__
    except Exception:  # noqa: BLE001
        pyg = "not installed"
    lines = ["# GPU check of the full profile", ""]
    if not mode.dry:
        lines += [f"Each setting: {mode.warmup} warm-up steps, then {mode.min_timed} to {mode.max_timed} timed "
                  "steps (synchronized) within its share of the time budget; synthetic data of the real sizes.", ""]
    if mode.dry:
        lines += [f"**{DRY_LABEL}.** Tiny data, {mode.warmup}+{mode.max_timed} steps per setting, batches of at "
                  f"most {mode.max_batch}, ResNet-18/VGG-19 at width {mode.cnn_width}: this proves the script "
                  "works, nothing more.", ""]
    cuda = (f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}" if mode.device.type == "cuda"
            else f"built for CUDA {torch.version.cuda}, not used")
    lines += [f"- device: {device_name(mode)}",
              f"- torch {torch.__version__} ({cuda}), torch_geometric {pyg}, Python {sys.version.split()[0]}",
              f"- wall time {wall_s:.0f} s (budget {budget_s:.0f} s)", "",
              "## NSR overhead (median step time with / without NeuronSteadiness, interleaved)", "",
              "| network | plain ms/step | with NSR ms/step | ratio | timed steps per variant |",
              "|---|---|---|---|---|"]
    for name, r in ratios.items():
        lines.append(f"| {name} | {r['plain_ms']:.3f} | {r['nsr_ms']:.3f} | {r['ratio']:.3f} | {r['steps']} |")
    if not ratios:
        lines.append("| (not measured) | | | | |")
    lines += ["", "## NSR per memory m (MLP-4, batch 100; step time / plain step, medians over rounds)", "",
              "| case | plain ms/step | lam*mean(x^2) | NeuronSteadiness | official-style FIFO | NSR faster than "
              "FIFO in every round |", "|---|---|---|---|---|---|"]
    for case, r in (memories.iterrows() if memories is not None else []):
        lines.append(f"| {case} | {r['plain_ms']:.3f} | {r['square_ratio']:.3f} | {r['nsr_ratio']:.3f} | "
                     f"{r['fifo_ratio']:.3f} | {bool(r['beats_fifo'])} |")
    if memories is None:
        lines.append("| (not measured) | | | | | |")
    lines += ["", "## Settings", "",
              "Projected s/epoch = ceil(real training split / batch) x s/step + one evaluation of validation "
              "and test; projected hours = s/epoch x epochs x runs, runs one after another on this device. "
              "**No early stopping is assumed** (chapter 4's grids stop early: their hours are an upper "
              "bound). One-off initializations, post-training analyses and data loading are not included. "
              "Runs shared by two experiments are counted once. Where one run trains several networks (chapter "
              "5's vision and bracket runs: one per seed), epochs counts the epochs of all of them.", "",
              "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in table:
        lines.append("| " + " | ".join(_md_escape(row[c]) for c in COLUMNS) + " |")
    lines += ["", "## Projected hours per chapter", "", "| chapter | runs | projected hours |", "|---|---|---|"]
    total_runs, total_hours = 0, 0.0
    for name in dict.fromkeys(r["chapter"] for r in table):
        mine = [r for r in table if r["chapter"] == name]
        runs = sum(int(r["runs"]) for r in mine)
        hours = sum(float(r["projected hours"]) for r in mine)
        total_runs, total_hours = total_runs + runs, total_hours + hours
        lines.append(f"| {name} | {runs} | {hours:.3g} |")
    lines += [f"| all | {total_runs} | {total_hours:.3g} |", "",
              "## Data sizes (synthetic twins of these)", "", "| dataset | shape | classes | train / val / test | "
              "source |", "|---|---|---|---|---|"]
    for size in DATASETS.values():
        shape = "x".join(map(str, size.shape)) + (f", {size.nodes:,} nodes, {size.edges:,} edges"
                                                  if size.kind == "graph" else "")
        shape += " symbols, one target per step" if size.kind == "sequence" else ""
        lines.append(f"| {size.name} | {shape} | {size.num_classes} | {size.n_train:,} / {size.n_val:,} / "
                     f"{size.n_test:,} | {_md_escape(size.source)} |")
    failed = [r for r in table if not (r["finite"] and r["loss fell"])]
    lines += ["", f"**{len(failed)} of {len(table)} rows failed** (not finite, or the loss did not fall)."
              if failed else f"All {len(table)} rows are finite and their training loss fell.", ""]
    (out_dir / "table.md").write_text("\n".join(lines))


def positive_seconds(text: str) -> float:
    """``text`` as a time budget: a finite number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; give the seconds, e.g. 420") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive finite number of seconds, e.g. 420")
    return value


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The command line, checked before anything is measured (a mistake exits with status 2 and a message
    naming the argument, the value and what is allowed): ``--budget-seconds`` a positive finite number,
    ``--chapters`` at least one known chapter (``ch03`` or ``3``), none twice, and the output folder
    (``--out``, else ``$OUT``, else ``gpu_check_out/``) one that can be written: not a file, not under a
    file, its nearest existing folder writable (checked now, not after minutes of measuring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=folder_path, default=None,
                        help="output folder (default: $OUT when set, else gpu_check_out/)")
    parser.add_argument("--budget-seconds", type=positive_seconds, default=420.0,
                        help="time for everything (training steps share what the NSR ratios leave); "
                             "every setting still gets its minimum of steps")
    parser.add_argument("--dry", action="store_true", help="the dry form on the CPU (automatic without CUDA)")
    parser.add_argument("--chapters", nargs="*", default=None, type=chapter_name, metavar="CHAPTER",
                        help=f"only these chapters, separated by spaces ({', '.join(CHAPTERS)}; default: all)")
    args = parser.parse_args(argv)
    if args.chapters is not None:
        if not args.chapters:
            parser.error(f"argument --chapters: expected at least one chapter; choose from {', '.join(CHAPTERS)} "
                         "(leave --chapters out to check them all)")
        twice = sorted({c for c in args.chapters if args.chapters.count(c) > 1})
        if twice:
            parser.error(f"argument --chapters: {', '.join(twice)} named more than once; name each once")
    if args.out is not None:
        args.out = Path(args.out).expanduser()
    out, source = (args.out, "argument --out") if args.out is not None else (
        (Path(os.environ["OUT"]), "$OUT") if os.environ.get("OUT") else (Path("gpu_check_out"), "gpu_check_out/"))
    problem = folder_problem(out, writable=True)
    if problem:
        parser.error(f"{source}: {problem}")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the check; returns the exit status (1 if a row is not finite, a loss did not fall, or the NSR
    ratios could not be measured)."""
    args = parse_args(argv)
    dry = args.dry or not torch.cuda.is_available()
    mode = make_mode(dry)
    out_dir = args.out or Path(os.environ.get("OUT") or "gpu_check_out")
    deadline = START + args.budget_seconds - 10.0  # keep a few seconds for the tables
    print(f"gpu_check: {'dry form, ' if dry else ''}{device_name(mode)}, torch {torch.__version__}, "
          f"output in {out_dir}", flush=True)
    rows = plan_rows(args.chapters or list(CHAPTERS))
    print(f"{len(rows)} rows, {len(set(measured_recipe(r.recipe) for r in rows))} distinct settings to measure",
          flush=True)
    ok = True
    try:
        ratios = nsr_ratios(mode)
        for name, r in ratios.items():
            print(f"NSR overhead, {name}: {r['plain_ms']:.3f} -> {r['nsr_ms']:.3f} ms/step, ratio {r['ratio']:.3f}",
                  flush=True)
            ok &= math.isfinite(r["ratio"])
    except Exception:  # noqa: BLE001 - the table is still worth having
        traceback.print_exc()
        ratios, ok = {}, False
    try:
        memories = nsr_memory_table(mode)
        for case, r in memories.iterrows():
            print(f"NSR per memory, {case}: NSR {r['nsr_ratio']:.3f}, FIFO {r['fifo_ratio']:.3f}, "
                  f"lam*mean(x^2) {r['square_ratio']:.3f} (ratios to {r['plain_ms']:.3f} ms)", flush=True)
            ok &= math.isfinite(r["nsr_ratio"])
    except Exception:  # noqa: BLE001 - the rest of the check is still worth having
        traceback.print_exc()
        memories, ok = None, False
    results = run_measurements(rows, mode, deadline)
    table = table_rows(rows, results, mode)
    write_outputs(out_dir, table, ratios, mode, time.perf_counter() - START, args.budget_seconds, memories)
    failed = [r for r in table if not (r["finite"] and r["loss fell"])]
    for r in failed:
        print(f"FAILED: {r['chapter']} {r['experiment']} {r['setting']}: finite={r['finite']}, "
              f"loss fell={r['loss fell']} {r['note']}", flush=True)
    hours = sum(float(r["projected hours"]) for r in table)
    print(f"wrote {out_dir / 'table.csv'} and {out_dir / 'table.md'}: {len(table)} rows, {len(failed)} failed, "
          f"projected {hours:.1f} h for the full profile; {time.perf_counter() - START:.1f} s", flush=True)
    return 0 if ok and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
