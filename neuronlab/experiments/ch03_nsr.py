r"""Chapter 3's experiments: Neuron Steadiness Regularization (Fu, Du, Mao et al., NeurIPS 2022) beside the paper.

The paper's tables (:data:`PAPER_TABLE`, :data:`PAPER_BASELINES`, :data:`PAPER_NORMALIZATION`,
:data:`PAPER_LAYERS`, :data:`PAPER_GNN_TABLE`) and the official strengths (:data:`OFFICIAL_LAMBDAS`); the
training protocol of each model family (:data:`FAMILY_DEFAULTS`, :func:`fit_family`) and the models as the
official code initializes them (:func:`paper_model`); one run (:func:`train_nsr_run`) and the per-epoch
steadiness curves (:func:`steadiness_history`); the experiments (:data:`EXPERIMENTS`,
:func:`experiment_grid`) and their tables (:func:`select_lambda`, :func:`summary_table`,
:func:`comparison_table`), and the numbers its page quotes and plots (:func:`reproduction_frame`,
:func:`gain_table`, :func:`paper_gnn_gains`). What NSR costs per step is timed by
:func:`neuronlab.experiments.bench.nsr_table`. The method itself is :mod:`neuronlab.nsr`.

Every quick-profile run of every experiment (258 runs, about an hour of CPU time) is stored with the book
in ``notebooks/results/ch03/<experiment>_quick``. From a shell::

    python -m neuronlab.experiments ch03 --profile full --device cuda \
        --experiments mlp gnn
"""

from __future__ import annotations

import contextlib
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import pandas as pd
import torch
from torch import nn

from .. import regularizers
from ..classwise import IntraClassVariance
from ..data import random_crop_flip
from ..init import xavier_
from ..models import build_model
from ..nsr import NeuronSteadiness, pick_layer_by_variance, variance_metrics
from ..probe import collect_responses, is_graph, output_layer
from ..runs import format_mean_std
from ..train import fit
from ._common import (ChapterRun, Timer, cached_dataset, check_dataset, experiment_configs, history_summary,
                      run_chapter_experiment, setup_chapter)

__all__ = [
    "CHAPTER", "TITLE", "SETTINGS", "EXPERIMENTS", "STORED",
    "PAPER_TABLE", "OFFICIAL_LAMBDAS", "METHODS", "FAMILY_DEFAULTS", "PAPER_GNN_TABLE", "PAPER_BASELINES",
    "PAPER_NORMALIZATION", "PAPER_LAYERS", "MLP_ARCHS", "GNN_ARCHS", "CSBM_SETTINGS", "LAMBDA_CHOICES",
    "LAMBDA_CURVE", "CNN_LAMBDAS",
    "setup", "family_of", "paper_model", "fit_family", "regularized_layers", "train_nsr_run",
    "steadiness_history", "mlp_grid", "experiment_grid", "config_data", "run_config", "run_experiment",
    "missing_runs", "tidy", "select_lambda", "summary_table", "comparison_table", "summary",
    "relative_gain", "change_phrase", "reproduction_frame", "gain_table", "paper_gnn_gains",
]

CHAPTER = "ch03"
TITLE = "Neuron Steadiness Regularization (NSR, NeurIPS 2022) for MLPs, CNNs and GNNs"

#: The paper's MLP and CNN results as test error in percent (mean and std), in the form
#: ``{model: {"vanilla": (m, s), "nsr": (m, s)}}``. MLPs on MNIST (NSR's names count the input layer, so
#: MLP-4 is 784-256-100-10), CNNs on CIFAR-10.
PAPER_TABLE = {
    "MLP-3": {"vanilla": (3.09, 0.10), "nsr": (2.80, 0.08)},
    "MLP-4": {"vanilla": (2.29, 0.07), "nsr": (1.64, 0.04)},
    "MLP-6": {"vanilla": (2.44, 0.09), "nsr": (1.76, 0.06)},
    "MLP-8": {"vanilla": (2.87, 0.09), "nsr": (1.98, 0.09)},
    "MLP-10": {"vanilla": (3.06, 0.06), "nsr": (1.72, 0.14)},
    "ResNet-18": {"vanilla": (7.96, 0.12), "nsr": (7.20, 0.09)},
    "VGG-19": {"vanilla": (10.57, 0.17), "nsr": (8.77, 0.10)},
}
#: The lambdas of the official README (tuned with NNI), for the official ``mean`` neuron reduction.
OFFICIAL_LAMBDAS = {"MLP-3": 0.02475, "MLP-4": 7.4865, "MLP-6": 0.0538, "MLP-8": 0.2542, "MLP-10": 0.4158,
                    "ResNet-18": 0.5, "VGG-19": 0.11}


METHODS = ("vanilla", "nsr", "l1", "l2", "jacobian", "orthogonality")

#: Per-family training defaults of :func:`train_nsr_run`. MLPs follow the official code (SGD lr 0.01, no
#: momentum, batch 100, m = 5), CNNs a standard CIFAR-style recipe (SGD momentum 0.9, weight decay 5e-4,
#: cosine schedule, crop and flip on CIFAR-10, m = 1), GNNs full-batch Adam (lr 0.01, weight decay 5e-4,
#: m = 1).
FAMILY_DEFAULTS = {
    "mlp": dict(optimizer="sgd", lr=0.01, momentum=0.0, weight_decay=0.0, scheduler=None, memory=5),
    "cnn": dict(optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=5e-4, scheduler="cosine", memory=1),
    "gnn": dict(optimizer="adam", lr=0.01, momentum=0.0, weight_decay=5e-4, scheduler=None, memory=1),
}

#: The paper's GNN results as test error in percent (mean and std), in the form
#: ``{dataset: {arch: {"vanilla": (m, s), "nsr": (m, s)}}}``.
PAPER_GNN_TABLE = {
    "pubmed": {"GraphSAGE-2": {"vanilla": (10.73, 0.06), "nsr": (9.89, 0.08)},
               "GraphSAGE-3": {"vanilla": (10.20, 0.25), "nsr": (9.48, 0.12)},
               "GraphSAGE-4": {"vanilla": (10.43, 0.17), "nsr": (9.79, 0.19)},
               "GCN-2": {"vanilla": (12.02, 0.00), "nsr": (11.92, 0.00)},
               "GCN-3": {"vanilla": (12.76, 0.18), "nsr": (12.19, 0.11)},
               "GCN-4": {"vanilla": (14.01, 0.07), "nsr": (12.96, 0.08)}},
    "amazon-photo": {"GraphSAGE-2": {"vanilla": (5.82, 0.00), "nsr": (4.54, 0.10)},
                     "GraphSAGE-3": {"vanilla": (5.20, 0.14), "nsr": (4.86, 0.13)},
                     "GraphSAGE-4": {"vanilla": (6.37, 0.30), "nsr": (5.62, 0.59)},
                     "GCN-2": {"vanilla": (6.73, 0.00), "nsr": (6.27, 0.00)},
                     "GCN-3": {"vanilla": (8.00, 0.11), "nsr": (7.96, 0.10)},
                     "GCN-4": {"vanilla": (10.24, 0.14), "nsr": (9.03, 0.25)}},
    "amazon-computers": {"GraphSAGE-2": {"vanilla": (11.37, 0.55), "nsr": (10.47, 0.05)},
                         "GraphSAGE-3": {"vanilla": (11.88, 1.05), "nsr": (10.22, 0.54)},
                         "GraphSAGE-4": {"vanilla": (15.49, 0.90), "nsr": (12.86, 0.82)},
                         "GCN-2": {"vanilla": (12.17, 0.07), "nsr": (10.86, 0.03)},
                         "GCN-3": {"vanilla": (14.90, 0.25), "nsr": (13.66, 0.12)},
                         "GCN-4": {"vanilla": (18.07, 0.74), "nsr": (16.02, 0.23)}},
    "wikics": {"GraphSAGE-2": {"vanilla": (16.81, 0.21), "nsr": (16.06, 0.33)},
               "GraphSAGE-3": {"vanilla": (15.97, 0.18), "nsr": (15.27, 0.21)},
               "GraphSAGE-4": {"vanilla": (16.63, 0.31), "nsr": (15.43, 0.24)},
               "GCN-2": {"vanilla": (18.41, 0.06), "nsr": (17.99, 0.05)},
               "GCN-3": {"vanilla": (18.66, 0.23), "nsr": (18.10, 0.27)},
               "GCN-4": {"vanilla": (19.21, 0.31), "nsr": (18.84, 0.26)}},
}
#: The paper's comparison with other regularizers in test error percent, lambdas tuned with NNI. MLP-4 on
#: MNIST, ResNet-18 on CIFAR-10, GraphSAGE(-2) on Amazon-Computers.
PAPER_BASELINES = {
    "MLP-4": {"vanilla": (2.29, 0.07), "l1": (2.27, 0.05), "l2": (2.27, 0.05), "jacobian": (2.21, 0.04),
              "nsr": (1.64, 0.04)},
    "ResNet-18": {"vanilla": (7.96, 0.12), "l1": (7.83, 0.23), "l2": (7.67, 0.18), "jacobian": (7.90, 0.07),
                  "nsr": (7.20, 0.09)},
    "GraphSAGE": {"vanilla": (11.37, 0.55), "l1": (10.81, 0.13), "l2": (10.68, 0.35), "jacobian": (11.27, 0.45),
                  "nsr": (10.52, 0.22)},
}
#: The paper's MLP-4 with BatchNorm or Dropout, with and without NSR (test error %).
PAPER_NORMALIZATION = {"vanilla": (2.29, 0.07), "batchnorm": (2.22, 0.04), "batchnorm + nsr": (1.62, 0.08),
                       "dropout": (2.19, 0.04), "dropout + nsr": (1.64, 0.04)}
#: The paper's per-layer ablation (test error %). Its layers count the input as layer 1, so MLP-4's layers
#: 2, 3, 4 are our ``fc1``, ``fc2``, ``fc3`` (the logits); their intra-class variances were 409, 510, 1660.
#: For GraphSAGE-2 on Amazon-Computers the layers are ``conv1`` and ``conv2``.
PAPER_LAYERS = {
    "MLP-4": {"none": (2.29, 0.07), "fc1": (2.22, 0.08), "fc2": (1.90, 0.13), "fc3": (1.64, 0.04),
              "fc2+fc3": (1.63, 0.08)},
    "GraphSAGE-2": {"none": (11.37, 0.55), "conv1": (10.47, 0.05), "conv2": (10.52, 0.22),
                    "conv1+conv2": (10.30, 0.17)},
}

MLP_ARCHS = ("MLP-3", "MLP-4", "MLP-6", "MLP-8", "MLP-10")
GNN_ARCHS = ("GraphSAGE-2", "GraphSAGE-3", "GraphSAGE-4", "GCN-2", "GCN-3", "GCN-4")
#: The graph of the quick profile, a contextual SBM (:func:`neuronlab.data.make_csbm`) with 5 classes, weak
#: features, mild homophily and 20 % labelled nodes, so that GNNs still make 15-30 % errors on it.
CSBM_SETTINGS = dict(num_nodes=2000, num_classes=5, avg_degree=5.0, homophily=0.4, signal=0.4,
                     train_fraction=0.2, val_fraction=0.2)
#: Strengths tried where no published lambda applies; :func:`select_lambda` keeps, per setting, the one with
#: the lowest mean validation error (never the test error).
LAMBDA_CHOICES = {
    "nsr": (0.1, 1.0, 7.4865),
    "l1": (1e-4, 1e-3, 1e-2),
    "l2": (1e-5, 1e-4, 1e-3),
    "jacobian": (1e-3, 1e-2, 1e-1),
    "orthogonality": (1e-5, 1e-4, 1e-3),
    "nsr-gnn": (0.1, 1.0),
    "l1-gnn": (1e-3, 1e-2),
    "l2-gnn": (1e-4, 1e-3),
}
#: The strengths of the lambda curve (MLP-4, logits).
LAMBDA_CURVE = (0.01, 0.1, 1.0, 3.0, 7.4865, 20.0, 50.0)
#: Published or chosen fixed strengths of the CNN runs (the official ResNet-18 lambda for NSR).
CNN_LAMBDAS = {"nsr": 0.5, "l1": 1e-3, "l2": 1e-4, "jacobian": 1e-2}

#: The experiments of the chapter, each a list of run configurations built by :func:`experiment_grid`.
EXPERIMENTS = ("mlp", "lambda", "baselines", "normalization", "layers", "cnn", "gnn", "fashion")

#: Per profile, the data, epochs and seeds of each family of experiments, and the device the runs use.
#: ``quick`` runs on a CPU in about an hour for all experiments together (the chapter reads the stored
#: results); ``full`` is the paper's scale, for a GPU (``device=None`` picks one; MNIST, CIFAR-10 and the
#: PyG graph datasets are downloaded), with the standard CIFAR recipe's learning rate 0.1 and batch 128 for
#: the CNNs.
SETTINGS = {
    "quick": dict(dataset="mnist-5k", epochs=60, seeds=[0, 1, 2],
                  cnn=dict(dataset="mnist-5k", runs=[("SmallCNN", 15, ("vanilla", "nsr", "l1", "jacobian")),
                                                     ("ResNet-18-w16", 10, ("vanilla", "nsr"))]),
                  gnn=dict(datasets=["csbm"], epochs=200), fashion=dict(archs=["MLP-4", "MLP-10"], epochs=30),
                  device="cpu"),
    "full": dict(dataset="mnist", epochs=100, seeds=[0, 1, 2, 3, 4],
                 cnn=dict(dataset="cifar10", runs=[("ResNet-18", 200, ("vanilla", "nsr", "l1", "l2", "jacobian")),
                                                   ("VGG-19", 200, ("vanilla", "nsr"))],
                          training=dict(lr=0.1, batch_size=128)),
                 gnn=dict(datasets=["pubmed", "amazon-photo", "amazon-computers", "wikics"], epochs=500),
                 fashion=dict(archs=list(MLP_ARCHS), epochs=100), device=None),
}
#: Every experiment's quick-profile runs are stored with the book (``notebooks/results/ch03``).
STORED: Tuple[str, ...] = EXPERIMENTS


def setup(profile: Optional[str] = None, seed: int = 0, runs_dir=None, device: Optional[str] = None,
          smoke: Optional[bool] = None) -> Tuple[Dict[str, Any], ChapterRun]:
    """The notebook's first line: ``SETTINGS, RUN = ch03.setup(PROFILE, SEED, RUNS_DIR)`` (see
    :func:`neuronlab.experiments._common.setup_chapter`; ``smoke``: ``neuronlab.experiments.smoke``)."""
    return setup_chapter(CHAPTER, SETTINGS, profile, seed, runs_dir, device, STORED, smoke=smoke)


# ------------------------------------------------------------------------------------ models and protocol
def family_of(arch: str) -> str:
    """``"mlp"``, ``"cnn"`` or ``"gnn"``: the family of an architecture name, which sets its training
    protocol (:data:`FAMILY_DEFAULTS`)."""
    name = arch.upper()
    if name.startswith(("MLP", "IBCI")):
        return "mlp"
    if name.startswith(("GCN", "GRAPHSAGE")):
        return "gnn"
    return "cnn"


def paper_model(arch: str, data, *, batchnorm: bool = False, dropout: float = 0.0) -> nn.Module:
    """The chapter's model ``arch`` sized for ``data`` (:func:`neuronlab.models.build_model`), initialized
    as the official code does: the MLPs (``"MLP-3"`` ... ``"MLP-10"``) get Xavier-normal weights and zero
    biases (:func:`neuronlab.init.xavier_`), the CNNs (``"SmallCNN"``, ``"ResNet-18[-wN]"``,
    ``"VGG-19[-wN]"``) and graph networks (``"GCN-L"``, ``"GraphSAGE-L"``: 64 hidden channels, dropout 0.5
    unless ``dropout`` is given) keep PyTorch's default initialization. Seed the global generator first
    (``torch.manual_seed(seed)``) for a reproducible draw."""
    model = build_model(arch, data, batchnorm=batchnorm, dropout=dropout or None)
    if family_of(arch) == "mlp":
        xavier_(model)
    return model


def fit_family(model: nn.Module, data, family: str, *, epochs: int, seed: int, lr: Optional[float] = None,
               progress: bool = False, **kwargs: Any):
    """:func:`neuronlab.train.fit` with the protocol of ``family`` (:data:`FAMILY_DEFAULTS`: optimizer,
    learning rate, momentum, weight decay, schedule); ``lr`` overrides the family's learning rate,
    ``progress`` shows a bar over the epochs and ``kwargs`` go to ``fit`` (``batch_size``, ``extra_losses``,
    ``metrics``, ``augment``, ``device``, ...). Returns the :class:`~neuronlab.train.History`."""
    defaults = FAMILY_DEFAULTS[family]
    return fit(model, data, epochs=epochs, lr=lr or defaults["lr"], optimizer=defaults["optimizer"],
               momentum=defaults["momentum"], weight_decay=defaults["weight_decay"],
               scheduler=defaults["scheduler"], seed=seed, progress=progress, **kwargs)


def regularized_layers(model: nn.Module, layer: str, data) -> List[str]:
    """The names of the layers a run configuration's ``layer`` means: ``"logits"`` the output layer
    (:func:`neuronlab.probe.output_layer`), ``"auto"`` the layer (``nn.Linear`` or ``nn.Conv2d``) with the
    largest intra-class variance on the first 1,000 training samples (dense inputs only), otherwise the
    names joined by ``+`` (``"fc2+fc3"``)."""
    if layer == "logits":
        return [output_layer(model)]
    if layer == "auto":
        if is_graph(data):
            raise ValueError("layer='auto' is for dense inputs; name a graph layer (conv1, ...) instead")
        candidates = [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
        return [pick_layer_by_variance(model, data.x_train[:1000], data.y_train[:1000], data.num_classes,
                                       candidates)]
    return layer.split("+")


def train_nsr_run(data, *, arch: str, method: str, seed: int, epochs: int, layer: str = "logits",
                  lam: Optional[float] = None, memory: Optional[int] = None, batchnorm: bool = False,
                  dropout: float = 0.0, batch_size: int = 100, lr: Optional[float] = None,
                  dataset: Optional[str] = None, device: Optional[Union[str, torch.device]] = None,
                  progress: bool = False, **_: object) -> Dict[str, Any]:
    """One run of the NSR reproduction: build ``arch``, train it with ``method`` and summarize.

    Args:
        arch: see :func:`paper_model`; the family sets the optimizer (:data:`FAMILY_DEFAULTS`).
        method: ``"vanilla"``, ``"nsr"``, or a baseline of :mod:`neuronlab.regularizers`: ``"l1"`` (on the
            same layer's responses), ``"l2"``, ``"jacobian"`` (dense inputs only), ``"orthogonality"``.
        layer: the regularized layer: ``"logits"`` (the output layer, as the official code), ``"auto"``
            (the largest intra-class variance at initialization, as the paper recommends), a name, or
            names joined by ``+`` (``"fc2+fc3"``).
        lam: the strength; default :data:`OFFICIAL_LAMBDAS` for NSR on the paper's models, else 0.1.
        memory: NSR's ``m`` (default from the family).
        lr: the learning rate (default from the family).
        device: where to train (default: a GPU when there is one); the trained model's responses are
            computed there too.
        progress: show a bar over the epochs.

    Extra keys of a sweep configuration (``experiment``, ...) are accepted and ignored; a ``dataset`` that
    is not ``data``'s is an error.

    Returns a JSON-ready dict: :func:`~neuronlab.experiments._common.history_summary`'s keys (the test and
    validation error at the best validation epoch in %, the epoch, the lowest test error and its epoch,
    the wall time in seconds, the per-epoch test error and training loss), the regularized layer(s)
    (``layer``), ``lam`` (0 for vanilla), ``intra_class_variance``: the mean intra-class variance of that
    layer's responses on the training data (training nodes for graphs) after training, and ``diverged``.
    A run whose loss diverges returns ``diverged=True``, the error message, NaN errors and epochs -1.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    check_dataset(dataset, data)
    family = family_of(arch)
    with Timer() as timer:
        torch.manual_seed(seed)
        model = paper_model(arch, data, batchnorm=batchnorm, dropout=dropout)
        targets = regularized_layers(model, layer, data)
        if lam is None:
            lam = OFFICIAL_LAMBDAS.get(arch, 0.1) if method == "nsr" else 0.1
        memory = memory or FAMILY_DEFAULTS[family]["memory"]
        build = {"vanilla": lambda: None,
                 "nsr": lambda: NeuronSteadiness(model, targets, data.num_classes, lam=lam, memory=memory),
                 "l1": lambda: regularizers.ActivationL1(model, targets, lam),
                 "l2": lambda: regularizers.WeightL2(model, lam),
                 "jacobian": lambda: regularizers.JacobianNorm(lam, generator=torch.Generator().manual_seed(seed)),
                 "orthogonality": lambda: regularizers.WeightOrthogonality(model, lam)}
        term = build[method]()
        extra = None if term is None else {method: term}
        hooks = term if isinstance(term, (NeuronSteadiness, regularizers.ActivationL1)) else contextlib.nullcontext()
        augment = _crop_flip if getattr(data, "name", None) == "cifar10" else None
        try:
            with hooks:  # only the terms that record responses register hooks, and only for this run
                history = fit_family(model, data, family, epochs=epochs, seed=seed, extra_losses=extra, lr=lr,
                                     augment=augment, batch_size=batch_size, device=device, progress=progress)
        except FloatingPointError as err:  # a too strong penalty can make training diverge: a result, not a crash
            diverged: Optional[FloatingPointError] = err
        else:
            diverged = None
            variance = _trained_variance(model, data, targets)
    described = {"layer": "+".join(targets), "lam": lam if method != "vanilla" else 0.0}
    if diverged is not None:
        nan = float("nan")
        return {"test_error": nan, "best_epoch": -1, "val_error": nan, "min_test_error": nan, "epoch_of_min": -1,
                "seconds": timer.seconds, "test_error_curve": [], "train_loss_curve": [], **described,
                "intra_class_variance": nan, "diverged": True, "message": str(diverged)[:300]}
    return {**history_summary(history, timer.seconds), **described, "intra_class_variance": variance,
            "diverged": False}


def _trained_variance(model: nn.Module, data, targets: Sequence[str]) -> float:
    """The mean intra-class variance of the ``targets`` layers' responses (several layers: one statistic over
    all their neurons) on the training data, or the training nodes of a graph. The model runs where it is;
    the statistic is computed on the CPU, where :func:`~neuronlab.probe.collect_responses` returns them."""
    if is_graph(data):
        responses = collect_responses(model, data, targets)
        responses, labels = {n: r[data.train_mask] for n, r in responses.items()}, data.y[data.train_mask]
    else:
        responses, labels = collect_responses(model, data.x_train, targets), data.y_train
    stat = IntraClassVariance(data.num_classes)
    observed = torch.cat([r.flatten(1) for r in responses.values()], 1) if len(targets) > 1 else responses[targets[0]]
    stat.update(observed, labels)
    return stat.compute()["layer"].item()


def _crop_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """CIFAR-10's augmentation: ``fit`` calls ``augment(x, generator)``."""
    return random_crop_flip(x, generator=generator)


def steadiness_history(data, *, arch: str = "MLP-4", lam: float = 0.0, layer: str = "logits",
                       memory: Optional[int] = None, epochs: int = 60, seed: int = 0,
                       watch: Optional[Sequence[str]] = None, device: Optional[Union[str, torch.device]] = None,
                       progress: bool = False):
    """Train ``arch`` on ``data`` (dense inputs) with NSR of strength ``lam`` on ``layer`` (``lam=0``: vanilla)
    with the family's protocol, recording after every epoch the mean intra-class variance of the training
    responses of the ``watch`` layers (default: every ``nn.Linear``) as ``icv_<layer>`` columns
    (:func:`neuronlab.nsr.variance_metrics`). Trained on ``device`` (``progress``: a bar over the epochs).

    Returns ``(model, history)``, the model moved back to the CPU where the chapter's data are. The chapter's curves (:func:`neuronlab.plots.plot_steadiness`) and
    :func:`neuronlab.widgets.lambda_explorer` use it."""
    family = family_of(arch)
    if family == "gnn" or is_graph(data):
        raise ValueError("steadiness_history is for dense inputs; use train_nsr_run for graphs")
    torch.manual_seed(seed)
    model = paper_model(arch, data)
    watch = list(watch) if watch is not None else [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    targets = regularized_layers(model, layer, data)
    term = NeuronSteadiness(model, targets, data.num_classes, lam=lam,
                            memory=memory or FAMILY_DEFAULTS[family]["memory"])
    with term if lam else contextlib.nullcontext():
        history = fit_family(model, data, family, epochs=epochs, seed=seed, device=device, progress=progress,
                             extra_losses={"nsr": term} if lam else None, metrics=variance_metrics(watch))
    return model.cpu(), history


# ------------------------------------------------------------------------------------------- experiments
def mlp_grid(profile: str, archs: Sequence[str] = MLP_ARCHS, layers: Sequence[str] = ("logits", "auto"),
             seeds: Optional[Sequence[int]] = None, epochs: Optional[int] = None) -> List[Dict[str, Any]]:
    """Run configurations of the MLP table: vanilla once per architecture and seed, NSR per layer variant."""
    settings = SETTINGS[profile]
    seeds = settings["seeds"] if seeds is None else seeds
    epochs = epochs or settings["epochs"]
    grid = []
    for arch in archs:
        for seed in seeds:
            base = dict(dataset=settings["dataset"], arch=arch, seed=seed, epochs=epochs)
            grid.append(dict(base, method="vanilla", layer="logits"))
            grid += [dict(base, method="nsr", layer=layer) for layer in layers]
    return grid


def experiment_grid(name: str, profile: str = "quick") -> List[Dict[str, Any]]:
    """The run configurations of one experiment of the chapter (see :data:`EXPERIMENTS`).

    * ``"mlp"``: MLP-3..10, vanilla and NSR with the official lambdas on the logits and on the ``auto`` layer;
    * ``"lambda"``: MLP-4, NSR on the logits for each strength of :data:`LAMBDA_CURVE`;
    * ``"baselines"``: MLP-4 with L1, L2, Jacobian and orthogonality regularization, each at the strengths of
      :data:`LAMBDA_CHOICES` (plus vanilla and NSR, shared with ``"mlp"``);
    * ``"normalization"``: MLP-4 with BatchNorm or Dropout (p = 0.2), without and with NSR;
    * ``"layers"``: MLP-4 with NSR on ``fc1``, ``fc2``, ``fc3`` and ``fc2+fc3``, strengths of ``nsr``;
    * ``"cnn"``: the CNNs of the profile (quick: SmallCNN and a width-16 ResNet-18 on MNIST digits);
    * ``"gnn"``: GraphSAGE and GCN with 2-4 layers, vanilla and NSR on the logits; on GraphSAGE-2 also L1,
      L2 and NSR on each layer (quick: the :data:`CSBM_SETTINGS` graph);
    * ``"fashion"``: MLPs on Fashion-MNIST, vanilla and NSR on the logits.
    """
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {EXPERIMENTS}")
    settings = SETTINGS[profile]
    seeds, epochs, dataset = settings["seeds"], settings["epochs"], settings["dataset"]

    def runs(base, **variants):
        return [dict(base, seed=seed, **variants) for seed in seeds]

    mlp4 = dict(experiment="mlp", dataset=dataset, arch="MLP-4", epochs=epochs)
    grid: list = []
    if name == "mlp":
        grid = [dict(config, experiment="mlp") for config in mlp_grid(profile)]
    elif name == "lambda":
        for lam in LAMBDA_CURVE:
            grid += runs(dict(mlp4, experiment="lambda"), method="nsr", layer="logits", lam=lam)
    elif name == "baselines":
        grid += runs(mlp4, method="vanilla", layer="logits") + runs(mlp4, method="nsr", layer="logits")
        for method in ("l1", "l2", "jacobian", "orthogonality"):
            for lam in LAMBDA_CHOICES[method]:
                grid += runs(dict(mlp4, experiment="baselines"), method=method, layer="logits", lam=lam)
    elif name == "normalization":
        for extra in (dict(batchnorm=True), dict(dropout=0.2)):
            base = dict(mlp4, experiment="normalization", **extra)
            grid += runs(base, method="vanilla", layer="logits") + runs(base, method="nsr", layer="logits")
    elif name == "layers":
        for layer in ("fc1", "fc2", "fc3", "fc2+fc3"):
            for lam in LAMBDA_CHOICES["nsr"]:
                grid += runs(dict(mlp4, experiment="layers"), method="nsr", layer=layer, lam=lam)
    elif name == "cnn":
        cnn = settings["cnn"]
        for arch, cnn_epochs, methods in cnn["runs"]:
            base = dict(experiment="cnn", dataset=cnn["dataset"], arch=arch, epochs=cnn_epochs,
                        **cnn.get("training", {}))
            for method in methods:
                extra = {} if method == "vanilla" else dict(lam=CNN_LAMBDAS[method])
                grid += runs(base, method=method, layer="logits", **extra)
    elif name == "gnn":
        gnn = settings["gnn"]
        for graph in gnn["datasets"]:
            for arch in GNN_ARCHS:
                base = dict(experiment="gnn", dataset=graph, arch=arch, epochs=gnn["epochs"])
                grid += runs(base, method="vanilla", layer="logits")
                for lam in LAMBDA_CHOICES["nsr-gnn"]:
                    grid += runs(base, method="nsr", layer="logits", lam=lam)
            base = dict(experiment="gnn", dataset=graph, arch="GraphSAGE-2", epochs=gnn["epochs"])
            for method in ("l1", "l2"):
                for lam in LAMBDA_CHOICES[f"{method}-gnn"]:
                    grid += runs(base, method=method, layer="logits", lam=lam)
            for layer in ("conv1", "conv1+conv2"):
                for lam in LAMBDA_CHOICES["nsr-gnn"]:
                    grid += runs(base, method="nsr", layer=layer, lam=lam)
    elif name == "fashion":
        fashion = settings["fashion"]
        for arch in fashion["archs"]:
            base = dict(experiment="fashion", dataset="fashion-mnist", arch=arch, epochs=fashion["epochs"])
            grid += runs(base, method="vanilla", layer="logits") + runs(base, method="nsr", layer="logits")
    return grid


def config_data(config: Mapping[str, Any]):
    """The data of a run configuration, loaded once per process
    (:func:`~neuronlab.experiments._common.cached_dataset`): flattened images for MLPs, images for CNNs, and
    for ``"csbm"`` the :data:`CSBM_SETTINGS` graph (generated with seed 0: every run trains on the same
    graph)."""
    family = family_of(config["arch"])
    options: Dict[str, Any] = dict(CSBM_SETTINGS) if config["dataset"] == "csbm" else {}
    if family != "gnn":
        options["flatten"] = family == "mlp"
    return cached_dataset(config["dataset"], **options)


def run_config(config: Mapping[str, Any], device=None, progress: bool = False) -> Dict[str, Any]:
    """Train one configuration of :func:`experiment_grid` on its data (:func:`config_data`) with
    :func:`train_nsr_run` on ``device`` (``progress``: a bar over the epochs)."""
    return train_nsr_run(config_data(config), **config, device=device, progress=progress)


def run_experiment(name: str, run: ChapterRun, progress: Optional[bool] = None) -> pd.DataFrame:
    """Run (or resume, or read back) experiment ``name`` into ``run``'s stores; returns the table of its runs.

    A configuration is stored with the experiment named by its ``experiment`` key: the vanilla and NSR runs
    of the ``baselines`` table are those of the ``mlp`` table, trained and stored once. ``progress``: bars over
    the runs and the epochs (``None``: in the full profile only)."""
    return run_chapter_experiment(experiment_grid(name, run.profile), name, run, run_config, progress)


def missing_runs(name: str, run: ChapterRun) -> List[Dict[str, Any]]:
    """The configurations of experiment ``name`` that have no stored result yet in ``run``'s stores (what
    :func:`run_experiment` would train; in smoke mode, of the smoke budget)."""
    return [config for config in experiment_configs(experiment_grid(name, run.profile), run)
            if config not in run.store(config.get("experiment", name))]


# ------------------------------------------------------------------------------------------------ tables
def _setting_columns(table: pd.DataFrame) -> List[str]:
    return [c for c in ("dataset", "arch", "method", "layer", "batchnorm", "dropout") if c in table]


def tidy(table: pd.DataFrame) -> pd.DataFrame:
    """A copy of a run table with ``lam`` the strength actually used (0 for vanilla) and ``trained_layer`` the
    regularized layer's name (``layer`` stays the configuration's ``"logits"``/``"auto"``/name), whichever
    of the configuration or the result recorded them; missing BatchNorm, Dropout and divergence entries
    become ``False``, ``0`` and ``False``."""
    table = table.copy()
    for key, name in (("lam", "lam"), ("layer", "trained_layer")):
        result = f"result.{key}"
        if result in table and name in table:  # tables concatenated from several sweeps: keep what is known
            table[name] = table[result].where(table[result].notna(), table[name])
        elif result in table:
            table[name] = table[result]
        elif name != key:
            table[name] = table[key]
    for column, default in (("batchnorm", False), ("dropout", 0.0), ("diverged", False)):
        table[column] = table[column].fillna(default) if column in table else default
    return table


def select_lambda(table: pd.DataFrame) -> pd.DataFrame:
    """Keep, for every setting (dataset, architecture, method, layer, BatchNorm, Dropout), the runs of the
    strength with the lowest mean validation error over seeds. Settings with one strength are kept as
    they are."""
    table = tidy(table)
    columns = _setting_columns(table)
    kept = []
    for _, group in table.groupby(columns, sort=False, dropna=False):
        means = group.groupby("lam")["val_error"].mean()
        kept.append(group[group["lam"] == means.idxmin()])
    return pd.concat(kept)


def summary_table(table: pd.DataFrame, by: Sequence[str], paper: Optional[Mapping] = None,
                  paper_key=None) -> pd.DataFrame:
    """Mean ± std over seeds of the test error at the best validation epoch per group of ``by``, with the
    strength used, the number of seeds, and (when ``paper`` and ``paper_key(row) -> key`` are given) the
    paper's number beside ours."""
    table = tidy(table)
    rows = []
    for keys, group in table.groupby(list(by), sort=False, dropna=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        row = dict(zip(by, keys))
        if paper is not None and paper_key is not None:
            ref = paper.get(paper_key(row))
            row["paper"] = format_mean_std(*ref) if ref else "–"
        row["ours"] = format_mean_std(group["test_error"].mean(), group["test_error"].std())
        lams = sorted(set(group["lam"]))
        row["lambda"] = ", ".join(f"{v:g}" for v in lams)
        row["seeds"] = int(group["seed"].nunique())
        rows.append(row)
    return pd.DataFrame(rows)


def comparison_table(table: pd.DataFrame, paper: Mapping = PAPER_TABLE) -> pd.DataFrame:
    """Paper beside ours, one row per architecture: the paper's vanilla and NSR errors, ours (mean ± std over
    seeds, test error at the best validation epoch) for vanilla and for each NSR layer variant, and the
    relative gain of NSR as the paper computes it, ``(vanilla - nsr) / vanilla``."""
    rows = []
    for arch, group in table.groupby("arch", sort=False):
        row = {"model": arch, "seeds": int(group["seed"].nunique())}
        ref = paper.get(arch)
        row["vanilla (paper)"] = format_mean_std(*ref["vanilla"]) if ref else "–"
        row["NSR (paper)"] = format_mean_std(*ref["nsr"]) if ref else "–"
        row["gain (paper)"] = f"{100 * (ref['vanilla'][0] - ref['nsr'][0]) / ref['vanilla'][0]:.1f} %" if ref else "–"
        vanilla = group.loc[group["method"] == "vanilla", "test_error"]
        row["vanilla (ours)"] = format_mean_std(vanilla.mean(), vanilla.std())
        for variant, runs_ in group[group["method"] == "nsr"].groupby("layer", sort=False):
            row[f"NSR, {variant} (ours)"] = format_mean_std(runs_["test_error"].mean(), runs_["test_error"].std())
            gain = 100 * (vanilla.mean() - runs_["test_error"].mean()) / vanilla.mean()
            row[f"gain, {variant} (ours)"] = f"{gain:.1f} %"
        rows.append(row)
    return pd.DataFrame(rows)


def summary(name: str, table: pd.DataFrame) -> pd.DataFrame:
    """What the command line prints for experiment ``name``: the paper beside ours for ``"mlp"``
    (:func:`comparison_table`), otherwise mean ± std per setting with each setting's strength chosen on
    the validation set (:func:`select_lambda`, :func:`summary_table`)."""
    if name == "mlp":
        return comparison_table(table)
    return summary_table(select_lambda(table), _setting_columns(table))


# --------------------------------------------------------------------------------- numbers for the page
# The chapter's page quotes no number that the run did not compute: these functions turn the run tables
# into the long frames its dot plots draw (neuronlab.plots.plot_reproduction) and the comparisons its prose
# glues (neuronlab.book).
def relative_gain(vanilla: float, other: float) -> float:
    """The paper's relative gain in percent, ``100 (vanilla - other) / vanilla``: positive when ``other``
    has the lower error.

    >>> round(relative_gain(2.29, 1.64), 1)  # MLP-4 in the paper
    28.4
    """
    return 100.0 * (vanilla - other) / vanilla


def change_phrase(new: float, old: float) -> str:
    """How ``new`` compares with ``old``, in words for a sentence: ``"2.5 times lower"`` or ``"12 % higher"``
    (a factor from a factor of two on, a percentage below), ``"the same"`` when equal.

    >>> [change_phrase(new, 1.0) for new in (0.4, 0.97, 1.1, 3.0)]
    ['2.5 times lower', '3 % lower', '10 % higher', '3.0 times higher']
    """
    if old <= 0 or new <= 0:
        raise ValueError(f"change_phrase compares positive numbers, got {new!r} and {old!r}")
    ratio = new / old
    if ratio == 1:
        return "the same"
    if ratio <= 0.5:
        return f"{1 / ratio:.1f} times lower"
    if ratio < 1:
        return f"{100 * (1 - ratio):.0f} % lower"
    if ratio < 2:
        return f"{100 * (ratio - 1):.0f} % higher"
    return f"{ratio:.1f} times higher"


def reproduction_frame(table: pd.DataFrame, row: str, method: str,
                       paper: Optional[Any] = None) -> pd.DataFrame:
    """The long form of a reproduction table, as :func:`neuronlab.plots.plot_reproduction` draws it: one
    line per (``row``, ``method``) value pair of the run ``table``, in order of first appearance, with
    ``ours_mean`` and ``ours_std`` (test error over seeds, %), ``seeds``, and the paper's ``paper`` and
    ``paper_std`` where ``paper(row_value, method_value)`` returns ``(mean, std)`` (NaN where it returns
    ``None`` or no ``paper`` is given)."""
    missing = [c for c in (row, method, "test_error", "seed") if c not in table]
    if missing:
        raise ValueError(f"reproduction_frame: the run table has no column(s) {missing}")
    lines = []
    for (row_value, method_value), group in table.groupby([row, method], sort=False):
        ref = paper(row_value, method_value) if paper is not None else None
        lines.append({row: row_value, method: method_value,
                      "ours_mean": group["test_error"].mean(), "ours_std": group["test_error"].std(),
                      "seeds": int(group["seed"].nunique()),
                      "paper": ref[0] if ref else float("nan"), "paper_std": ref[1] if ref else float("nan")})
    return pd.DataFrame(lines)


def gain_table(table: pd.DataFrame, by: str = "arch", layer: str = "logits",
               paper: Optional[Mapping] = None) -> pd.DataFrame:
    """NSR on ``layer`` against vanilla training, one row per value of ``by`` (in order of appearance):
    mean and std of the test error over seeds (``vanilla``, ``vanilla_std``, ``nsr``, ``nsr_std``),
    ``seeds``, the gain in points (``gain``, positive when NSR has the lower mean error), the relative
    gain in percent (``gain_pct``, :func:`relative_gain`), ``spreads``: the gain in units of the larger
    of the two standard deviations, and, where ``paper`` (:data:`PAPER_TABLE`'s form) has the row, the
    paper's relative gain ``paper_gain_pct``. ``gain_pct_std`` is the standard deviation over seeds of
    the per-seed relative gains (seed by seed, relative to the vanilla mean; NaN with fewer than two
    seeds run with both)."""
    rows = []
    for key, group in table.groupby(by, sort=False):
        vanilla_runs = group[group["method"] == "vanilla"]
        nsr_runs = group[(group["method"] == "nsr") & (group["layer"] == layer)]
        vanilla, nsr = vanilla_runs["test_error"], nsr_runs["test_error"]
        if vanilla.empty or nsr.empty:
            continue
        paired = pd.merge(vanilla_runs[["seed", "test_error"]], nsr_runs[["seed", "test_error"]], on="seed",
                          suffixes=("_vanilla", "_nsr"))
        per_seed = 100 * (paired["test_error_vanilla"] - paired["test_error_nsr"]) / vanilla.mean()
        gain = vanilla.mean() - nsr.mean()
        spread = pd.Series([vanilla.std(), nsr.std()]).max()  # NaN for single runs
        ref = (paper or {}).get(key)
        rows.append({by: key, "vanilla": vanilla.mean(), "vanilla_std": vanilla.std(), "nsr": nsr.mean(),
                     "nsr_std": nsr.std(), "seeds": int(group["seed"].nunique()), "gain": gain,
                     "gain_pct": relative_gain(vanilla.mean(), nsr.mean()), "gain_pct_std": per_seed.std(),
                     "spreads": gain / spread if spread > 0 else float("nan"),
                     "paper_gain_pct": (relative_gain(ref["vanilla"][0], ref["nsr"][0]) if ref
                                        else float("nan"))})
    columns = [by, "vanilla", "vanilla_std", "nsr", "nsr_std", "seeds", "gain", "gain_pct", "gain_pct_std",
               "spreads", "paper_gain_pct"]
    return pd.DataFrame(rows, columns=columns).set_index(by)


def paper_gnn_gains(paper: Mapping = PAPER_GNN_TABLE) -> pd.DataFrame:
    """The paper's relative gain of NSR (%, :func:`relative_gain`) per graph network (rows, in the order
    of ``GNN_ARCHS``) and dataset (columns), with their ``mean`` and ``std`` over the datasets."""
    gains = pd.DataFrame({dataset: {arch: relative_gain(results[arch]["vanilla"][0], results[arch]["nsr"][0])
                                    for arch in GNN_ARCHS} for dataset, results in paper.items()})
    gains = gains.loc[list(GNN_ARCHS)]
    return gains.assign(mean=gains.mean(axis=1), std=gains.std(axis=1))


