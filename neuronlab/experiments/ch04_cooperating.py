"""Chapter 4's experiments: ReLU MLPs read as layers of cooperating classifiers (Davel et al., AAAI 2020).

Three experiments, all on plain ReLU MLPs (Glorot-uniform weights, zero biases, no BatchNorm, dropout or
augmentation) trained with Adam (:func:`train_relu_mlp`):

* ``"grid"`` -- the paper's two families on the chapter's dataset (mnist-5k quick, MNIST full): networks
  of ``depth x 100`` nodes and of ``10 x width`` nodes, early stopping on the validation accuracy; per
  hidden layer the class-averaged perplexity of the training set and the test accuracy of the layer
  classifiers (:func:`train_cooperating_run`);
* ``"fashion"`` -- the same grids on Fashion-MNIST (quick: one seed, at most 20 epochs);
* ``"noise"`` -- a 6 x 100 network trained without early stopping on partly corrupted labels, following
  clean and corrupted training samples through the layers (:func:`label_noise_run`).

The quick-profile runs of all three are stored with the book in ``notebooks/results/ch04/<experiment>_quick``
(:data:`STORED`), so the book build trains no sweep.

The measures themselves (activation patterns, perplexity, node classifiers, path sums) are the method,
in :mod:`neuronlab.cooperating`. The paper has no public code and reports no table of numbers we could
match; :func:`comparison_table` puts its qualitative findings beside our measurements, and
:func:`reproduction_summary` turns them into claim-by-claim verdicts by stated criteria (:data:`CRITERIA`).
:func:`layer_frame` and :func:`network_frame` are the grids' tidy numbers behind the chapter's figures.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..book import count_phrase
from ..cooperating import (MODES, ActivationPatterns, NodeClassifiers, layer_accuracies_from_responses,
                           layer_perplexity, relu_layers)
from ..init import xavier_
from ..models import build_model
from ..probe import collect_responses, output_layer
from ..runs import format_mean_std, summarize
from ..train import History, fit
from ._common import (ChapterRun, Timer, cached_dataset, check_dataset, history_summary, run_chapter_experiment,
                      setup_chapter)

__all__ = ["CHAPTER", "TITLE", "SETTINGS", "EXPERIMENTS", "STORED", "setup", "corrupt_labels", "relu_mlp",
           "train_relu_mlp", "class_mean_perplexity", "train_cooperating_run", "label_noise_run", "grid_configs",
           "noise_configs", "experiment_grid", "run_config", "run_experiment", "tracks_frame", "network_table",
           "noise_table", "comparison_table", "layer_frame", "network_frame", "VERDICTS", "CRITERIA", "CLAIMS",
           "reproduction_summary", "summary"]

CHAPTER = "ch04"
TITLE = "DNNs as layers of cooperating classifiers: activation patterns, perplexity, node classifiers"
#: Per profile. ``quick``: mnist-5k on the CPU, a thinned grid (depths 1-10, widths 20-200), two seeds;
#: Fashion-MNIST with one seed and at most 20 epochs. ``full``: the paper's grids (depth 1-10 x 100 nodes,
#: width 20-200 x 10 layers) on full MNIST and Fashion-MNIST, three seeds, on a GPU when there is one.
SETTINGS = {
    "quick": dict(dataset="mnist-5k", depths=[1, 2, 4, 6, 8, 10], widths=[20, 50, 100, 200], seeds=[0, 1],
                  max_epochs=40, fashion_seeds=[0], fashion_max_epochs=20, noise_fractions=[0.0, 0.2, 0.4],
                  noise_epochs=60, noise_seeds=[0], track_every=10, device="cpu"),
    "full": dict(dataset="mnist", depths=list(range(1, 11)), widths=list(range(20, 201, 20)), seeds=[0, 1, 2],
                 max_epochs=300, fashion_seeds=[0, 1, 2], fashion_max_epochs=300,
                 noise_fractions=[0.0, 0.2, 0.4, 0.6, 0.8], noise_epochs=300, noise_seeds=[0, 1, 2],
                 track_every=10, device=None),
}
EXPERIMENTS = ("grid", "fashion", "noise")
#: Every quick-profile experiment ships with the book (``notebooks/results/ch04``), so that the book build
#: trains no sweep; the Fashion-MNIST runs alone took about 9 CPU minutes.
STORED: Tuple[str, ...] = EXPERIMENTS


def setup(profile: Optional[str] = None, seed: int = 0, runs_dir=None, device: Optional[str] = None,
          smoke: Optional[bool] = None) -> Tuple[Dict[str, Any], ChapterRun]:
    """The notebook's first line: ``SETTINGS, RUN = ch04.setup(PROFILE, SEED, RUNS_DIR)`` (see
    :func:`neuronlab.experiments._common.setup_chapter`; ``smoke``: ``neuronlab.experiments.smoke``)."""
    return setup_chapter(CHAPTER, SETTINGS, profile, seed, runs_dir, device, STORED, smoke=smoke)


# ------------------------------------------------------------------------------------------ the protocol
def corrupt_labels(labels: torch.Tensor, fraction: float, num_classes: int, generator: torch.Generator
                   ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Replace the labels of a random ``fraction`` of the samples by a different, uniformly drawn class
    (Zhang et al. 2017 draw uniformly, so a tenth keep their label by chance; we always change it, so that
    "corrupted" means wrong). ``generator`` is a CPU generator; the labels are read on the CPU.

    Returns:
        ``(noisy_labels, corrupted_mask)``, on the CPU.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction}")
    labels = labels.cpu()
    n = labels.shape[0]
    corrupted = torch.zeros(n, dtype=torch.bool)
    chosen = torch.randperm(n, generator=generator)[: int(round(fraction * n))]
    corrupted[chosen] = True
    shift = torch.randint(1, num_classes, (n,), generator=generator)
    noisy = torch.where(corrupted, (labels + shift) % num_classes, labels)
    return noisy, corrupted


def relu_mlp(in_features: int, depth: int, width: int, num_classes: int, seed: int) -> nn.Module:
    """The paper's network: ``depth`` hidden ReLU layers of ``width`` nodes, Glorot-uniform weights ("normalized
    uniform" initialization), zero biases, no BatchNorm or dropout; seeded (the global RNG is seeded with
    ``seed`` before the model is built, and the weights are drawn from their own generator)."""
    torch.manual_seed(seed)
    model = build_model(f"MLP-{depth}x{width}", in_features=in_features, num_classes=num_classes)
    return xavier_(model, distribution="uniform", generator=torch.Generator().manual_seed(seed))


def train_relu_mlp(data, *, depth: int, width: int, seed: int, max_epochs: int, lr: float = 1e-3,
                   batch_size: int = 128, patience: Optional[int] = 5,
                   device: Optional[Union[str, torch.device]] = None,
                   callbacks: Sequence[Callable[[History, nn.Module], Any]] = (), progress: bool = False
                   ) -> Tuple[nn.Module, History]:
    """The chapter's training protocol: build :func:`relu_mlp` for ``data`` and train it with Adam.

    With ``patience`` (the default, 5): early stopping on the validation accuracy, which stops when the
    best epoch is ``patience`` epochs old; the best epoch's weights are kept and restored. With
    ``patience=None``: all ``max_epochs`` epochs, and the model keeps its final weights.

    Args:
        data: a dataset of :func:`neuronlab.data.load_dataset` (or any object with ``x_train``, ``y_train``,
            ``x_val``, ... and ``num_classes``); images are flattened by the network.
        depth, width: ``depth`` hidden layers of ``width`` nodes.
        seed: seeds the weights (:func:`relu_mlp`) and training (:func:`neuronlab.train.fit`).
        max_epochs: at most this many epochs.
        lr, batch_size: Adam's learning rate and the mini-batch size.
        patience: see above.
        device: where to train (``None``: a GPU when there is one); the model stays there.
        callbacks: ``cb(history, model)`` after each epoch (before the early-stopping check).
        progress: show a bar over the epochs.

    Returns:
        ``(model, history)``.
    """
    in_features = int(np.prod(tuple(data.x_train.shape[1:])))
    model = relu_mlp(in_features, depth, width, data.num_classes, seed)
    callbacks = list(callbacks)
    if patience is not None:
        callbacks.append(lambda history, _model: len(history) - history.best_epoch >= patience)
    history = fit(model, data, epochs=max_epochs, lr=lr, optimizer="adam", batch_size=batch_size, seed=seed,
                  progress=progress, keep_best=patience is not None, callbacks=callbacks, device=device)
    if patience is not None:
        history.restore_best(model)
    return model, history


def class_mean_perplexity(patterns: ActivationPatterns, labels: torch.Tensor, num_classes: int,
                          mask: Optional[torch.Tensor] = None) -> Tuple[float, float]:
    """Class-averaged perplexity (:func:`~neuronlab.cooperating.layer_perplexity`, NaN classes left out) of
    the samples in ``mask`` (default: all), and the same with each class's perplexity divided by its size
    (1: every sample has its own pattern)."""
    labels = labels.cpu()
    if mask is not None:
        idx = torch.nonzero(mask.cpu()).flatten()
        if len(idx) == 0:
            return float("nan"), float("nan")
        patterns, labels = patterns[idx], labels[idx]
    perplexity = layer_perplexity(patterns, labels, num_classes)
    sizes = np.bincount(labels.numpy(), minlength=num_classes).astype(float)
    sizes[sizes == 0] = np.nan
    return float(np.nanmean(perplexity)), float(np.nanmean(perplexity / sizes))


# ---------------------------------------------------------------------------------------------- the runs
def train_cooperating_run(data, *, depth: int, width: int, seed: int, max_epochs: int, lr: float = 1e-3,
                          batch_size: int = 128, patience: int = 5, dataset: Optional[str] = None,
                          device: Optional[Union[str, torch.device]] = None, progress: bool = False
                          ) -> Dict[str, Any]:
    """One point of the depth/width grids: :func:`train_relu_mlp` on ``device`` (early stopping, best weights
    restored; ``progress``: a bar over the epochs), then the analysis of the trained network: its responses
    computed on ``device``, the measures on the CPU.

    Returns:
        dict: JSON-ready, with :func:`~neuronlab.experiments._common.history_summary`'s keys (``seconds`` is
        ``train_seconds + analysis_seconds``), and ``epochs_trained``; ``perplexity``: per hidden layer, the
        class-averaged perplexity of the training set; ``layer_accuracy``: ``{mode: [per hidden layer]}``,
        the layer classifiers' test accuracy (fraction) for the three node modes; ``node_accuracy_combined``:
        per hidden layer, the mean test accuracy of its single (combined) nodes; ``train_seconds`` (building
        and training) and ``analysis_seconds``.
    """
    check_dataset(dataset, data)
    with Timer() as training:
        model, history = train_relu_mlp(data, depth=depth, width=width, seed=seed, max_epochs=max_epochs, lr=lr,
                                        batch_size=batch_size, patience=patience, device=device, progress=progress)
    with Timer() as analysis:
        names = relu_layers(model)
        # collect_responses runs the model where it is and returns CPU tensors; one pass serves both measures
        train_acts = collect_responses(model, data.x_train.flatten(1), names, reduce="flatten")
        perplexity = [class_mean_perplexity(ActivationPatterns.from_responses(a), data.y_train,
                                            data.num_classes)[0] for a in train_acts.values()]
        rows = layer_accuracies_from_responses(
            train_acts, data.y_train, collect_responses(model, data.x_test.flatten(1), names, reduce="flatten"),
            data.y_test, data.num_classes)
    return {
        **history_summary(history, training.seconds + analysis.seconds),
        "epochs_trained": len(history),
        "perplexity": perplexity,
        "layer_accuracy": {mode: [r["accuracy"] for r in rows if r["mode"] == mode] for mode in MODES},
        "node_accuracy_combined": [r["node_accuracy"] for r in rows if r["mode"] == "combined"],
        "train_seconds": training.seconds,
        "analysis_seconds": analysis.seconds,
    }


def label_noise_run(data, *, fraction: float, seed: int, epochs: int, depth: int = 6, width: int = 100,
                    lr: float = 1e-3, batch_size: int = 128, track_every: int = 5, dataset: Optional[str] = None,
                    device: Optional[Union[str, torch.device]] = None, progress: bool = False) -> Dict[str, Any]:
    """Train on labels of which ``fraction`` are corrupted (:func:`corrupt_labels`), without early stopping
    (:func:`train_relu_mlp` with ``patience=None``, on ``device``; ``progress``: a bar over the epochs), and
    follow the two systems for clean and corrupted training samples after epoch 1 and every ``track_every``
    epochs.

    Tracked: test error; training error on clean samples (against their true labels) and on corrupted
    samples (against their *noisy* labels: 0 means memorized). Per hidden layer: class-averaged
    perplexity of clean and of corrupted samples (grouped by training label), divided by the class sizes
    so the two groups compare (1: every sample has its own pattern); and the accuracy of the combined
    layer classifier fitted on the noisy training set, on clean and on corrupted samples (again against
    the training labels: how far into the network the noise is memorized).

    Returns:
        :func:`~neuronlab.experiments._common.history_summary`'s keys (the validation split is clean), and
        ``track``: one dict per tracked epoch; ``corrupted``: the number of corrupted training labels.
    """
    check_dataset(dataset, data)
    x_train, y_train = data.x_train.flatten(1), data.y_train.cpu()
    noisy, corrupted = corrupt_labels(y_train, fraction, data.num_classes, torch.Generator().manual_seed(seed))
    noisy_data = SimpleNamespace(name=data.name, num_classes=data.num_classes, x_train=x_train, y_train=noisy,
                                 x_val=data.x_val.flatten(1), y_val=data.y_val,
                                 x_test=data.x_test.flatten(1), y_test=data.y_test)
    clean = ~corrupted
    track: List[Dict[str, Any]] = []

    def follow(history: History, net: nn.Module) -> bool:
        epoch = len(history)
        if epoch % track_every and epoch != 1:
            return False
        names = relu_layers(net)
        # one pass for everything, on the model's device; the responses come back on the CPU, where the
        # labels and masks are
        acts = collect_responses(net, x_train, names + [output_layer(net)], reduce="flatten")
        pred = acts.pop(output_layer(net)).argmax(1)
        row = {"epoch": epoch, "test_error": 100 * (1 - history.rows[-1]["test_acc"]),
               "train_error_clean": 100 * (pred[clean] != y_train[clean]).double().mean().item(),
               "train_error_corrupted": 100 * (pred[corrupted] != noisy[corrupted]).double().mean().item()
               if corrupted.any() else float("nan"),
               "perplexity_clean": [], "perplexity_corrupted": [], "layer_acc_clean": [], "layer_acc_corrupted": []}
        for name in names:
            patterns = ActivationPatterns.from_responses(acts[name])
            row["perplexity_clean"].append(class_mean_perplexity(patterns, noisy, data.num_classes, clean)[1])
            row["perplexity_corrupted"].append(class_mean_perplexity(patterns, noisy, data.num_classes, corrupted)[1])
            nc = NodeClassifiers(data.num_classes).fit(acts[name], noisy)
            hit = (nc.layer_proba(acts[name]).argmax(1) == noisy).double()
            row["layer_acc_clean"].append(hit[clean].mean().item())
            row["layer_acc_corrupted"].append(hit[corrupted].mean().item() if corrupted.any() else float("nan"))
        track.append(row)
        return False

    with Timer() as timer:
        _, history = train_relu_mlp(noisy_data, depth=depth, width=width, seed=seed, max_epochs=epochs, lr=lr,
                                    batch_size=batch_size, patience=None, device=device, callbacks=[follow],
                                    progress=progress)
    return {**history_summary(history, timer.seconds), "track": track, "corrupted": int(corrupted.sum())}


# ---------------------------------------------------------------------------------------------- the grids
def grid_configs(dataset: str, depths: Sequence[int], widths: Sequence[int], seeds: Sequence[int], max_epochs: int,
                 lr: float = 1e-3, batch_size: int = 128, patience: int = 5) -> List[Dict[str, Any]]:
    """Run configurations of the two grids: ``depth x 100`` nodes for each depth, and ``10 x width`` for each
    width (the 10 x 100 network belongs to both and is listed once)."""
    shapes = [(d, 100) for d in depths] + [(10, w) for w in widths]
    shapes = list(dict.fromkeys(shapes))
    return [dict(dataset=dataset, depth=d, width=w, seed=s, max_epochs=max_epochs, lr=lr, batch_size=batch_size,
                 patience=patience) for d, w in shapes for s in seeds]


def noise_configs(dataset: str, fractions: Sequence[float], seeds: Sequence[int], epochs: int, track_every: int,
                  depth: int = 6, width: int = 100) -> List[Dict[str, Any]]:
    """Run configurations of the label-noise experiment: each fraction of corrupted labels, each seed."""
    return [dict(dataset=dataset, fraction=f, seed=s, epochs=epochs, depth=depth, width=width,
                 track_every=track_every) for f in fractions for s in seeds]


def experiment_grid(name: str, profile: str = "quick") -> List[Dict[str, Any]]:
    """The run configurations of experiment ``name`` (one of ``EXPERIMENTS``) in ``profile``."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {EXPERIMENTS}")
    s = SETTINGS[profile]
    if name == "grid":
        return grid_configs(s["dataset"], s["depths"], s["widths"], s["seeds"], s["max_epochs"])
    if name == "fashion":
        return grid_configs("fashion-mnist", s["depths"], s["widths"], s["fashion_seeds"], s["fashion_max_epochs"])
    return noise_configs(s["dataset"], s["noise_fractions"], s["noise_seeds"], s["noise_epochs"], s["track_every"])


def run_config(config: Mapping[str, Any], device=None, progress: bool = False) -> Dict[str, Any]:
    """Load the configuration's data (flattened images) and train it on ``device``: :func:`label_noise_run`
    for a configuration with a ``fraction``, else :func:`train_cooperating_run` (``progress``: a bar over the
    epochs)."""
    data = cached_dataset(config["dataset"], flatten=True)
    run = label_noise_run if "fraction" in config else train_cooperating_run
    return run(data, **config, device=device, progress=progress)


def run_experiment(name: str, run: ChapterRun, progress: Optional[bool] = None) -> pd.DataFrame:
    """Run (or resume, or read back) experiment ``name`` into ``run``'s store; returns its table (one row per
    run: the configuration, then the result, nested dicts as dotted columns). ``progress``: bars over the runs
    and the epochs (``None``: in the full profile only)."""
    return run_chapter_experiment(experiment_grid(name, run.profile), name, run, run_config, progress)


# ---------------------------------------------------------------------------------------------- the tables
def tracks_frame(table: pd.DataFrame) -> pd.DataFrame:
    """The label-noise runs' ``track`` rows, one per run and tracked epoch, with ``fraction`` and ``seed``."""
    if "track" not in table.columns:
        raise ValueError("the table has no 'track' column: pass run_experiment('noise', RUN)")
    return pd.concat([pd.DataFrame(row["track"]).assign(fraction=row["fraction"], seed=row["seed"])
                      for _, row in table.iterrows()], ignore_index=True)


def _layer_means(group: pd.DataFrame, column: str) -> np.ndarray:
    """Mean over the runs of a group of a per-layer list column (the runs share their depth)."""
    return np.array(group[column].tolist(), dtype=float).mean(0)


def network_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per network of a depth/width grid (``"grid"`` or ``"fashion"``), means over the seeds: test
    error (mean ± std), epochs trained, and the first and last hidden layer's perplexity per class and
    combined layer-classifier test accuracy (%)."""
    errors = summarize(table, by=["depth", "width"], value="test_error")
    epochs = summarize(table, by=["depth", "width"], value="epochs_trained")["mean"]
    rows = []
    for (depth, width), group in table.groupby(["depth", "width"], sort=False):
        perplexity, accuracy = _layer_means(group, "perplexity"), 100 * _layer_means(group, "layer_accuracy.combined")
        rows.append({"perplexity, layer 1": perplexity[0], "perplexity, last layer": perplexity[-1],
                     "layer accuracy, layer 1 (%)": accuracy[0], "layer accuracy, last layer (%)": accuracy[-1]})
    return pd.concat([pd.DataFrame({
        "network": [f"{d} × {w}" for d, w in zip(errors["depth"], errors["width"])], "n": errors["n"],
        "test error (%)": [format_mean_std(m, s) for m, s in zip(errors["mean"], errors["std"])],
        "epochs (early stopping)": epochs.round(1).values}), pd.DataFrame(rows).round(1)], axis=1)


def noise_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per fraction of corrupted labels, means over the seeds, at the first tracked epoch after epoch 1
    and at the last: test error, training error on clean samples, corrupted samples not yet memorized, and
    the last hidden layer's combined classifier accuracy on corrupted samples (against their wrong label)."""
    tracks = tracks_frame(table)
    rows = []
    for fraction, group in tracks.groupby("fraction"):
        epochs = sorted(group["epoch"].unique())
        early, last = (epochs[1] if len(epochs) > 1 else epochs[0]), epochs[-1]
        at = {e: group[group["epoch"] == e] for e in (early, last)}
        row = {"corrupted (%)": 100 * fraction, "runs": group["seed"].nunique()}
        for e in (early, last):
            row[f"test error, epoch {e}"] = at[e]["test_error"].mean()
            row[f"clean train error, epoch {e}"] = at[e]["train_error_clean"].mean()
            row[f"corrupted not memorized, epoch {e}"] = at[e]["train_error_corrupted"].mean()
        last_layer = [acc[-1] for acc in at[last]["layer_acc_corrupted"]]
        row[f"last layer on corrupted, epoch {last}"] = 100 * np.mean(last_layer)
        rows.append(row)
    return pd.DataFrame(rows).round(1)


#: What the papers report, qualitatively: Davel et al. (2020) publish figures, not tables, and no code; the
#: label-noise findings are Theunissen, Davel & Barnard (2019), after Zhang et al. (2017).
PAPER_FINDINGS = {
    "build-up": ("class information builds up layer by layer",
                 "layer classifiers built from the node classifiers: their accuracy per layer shows how class "
                 "information builds up through the network (MNIST, FMNIST; no numbers we can match)"),
    "nodes": ("nodes classify, alone and together",
              "discrete (on/off counts) and continuous (activation density) node estimators both classify, "
              "individually and in collaboration"),
    "perplexity": ("layer perplexity",
                   "P(c, l) = exp H(c, l) per layer, averaged over classes, through both families (figures only)"),
    "error": ("test error across the families",
              "depth 1-10 x 100 and width 20-200 x 10, early stopping on validation error; no error table"),
    "clean-first": ("clean samples are fitted first", "models fit clean samples first (Theunissen et al. 2019)"),
    "memorized-late": ("corrupted samples are memorized late",
                       "corrupted samples are memorized late in training (Zhang et al. 2017; Theunissen et al. 2019)"),
    "quarantine": ("the noise is fitted in the last layers",
                   "corrupted samples are fitted by the deep layers (\"quarantine paths\", Theunissen et al. 2019)"),
}


def comparison_table(table: pd.DataFrame, experiment: str = "grid") -> pd.DataFrame:
    """The papers' findings beside our measurements: one row per finding, with what the paper reports
    (qualitatively: the paper gives figures, not numbers we could match) and what our runs show.

    Args:
        table: :func:`run_experiment`'s table of ``experiment``.
        experiment: ``"grid"`` or ``"fashion"`` (a depth/width grid) or ``"noise"``.
    """
    if experiment not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {experiment!r}; choose one of {EXPERIMENTS}")
    ours = _noise_evidence(table) if experiment == "noise" else _grid_evidence(table)
    return pd.DataFrame([{"finding": PAPER_FINDINGS[key][0], "paper": PAPER_FINDINGS[key][1], "ours": text}
                         for key, text in ours.items()])


def _grid_evidence(table: pd.DataFrame) -> Dict[str, str]:
    deep = [(key, group) for key, group in table.groupby(["depth", "width"], sort=False) if key[0] >= 2]
    if not deep:
        raise ValueError("the table has no network with two or more hidden layers")
    first = np.array([100 * _layer_means(g, "layer_accuracy.combined")[0] for _, g in deep])
    last = np.array([100 * _layer_means(g, "layer_accuracy.combined")[-1] for _, g in deep])
    p_first = np.array([_layer_means(g, "perplexity")[0] for _, g in deep])
    p_last = np.array([_layer_means(g, "perplexity")[-1] for _, g in deep])
    modes = {m: 100 * np.mean([_layer_means(g, f"layer_accuracy.{m}")[-1] for _, g in deep]) for m in MODES}
    errors = summarize(table, by=["depth", "width"], value="test_error")
    best, worst = errors["mean"].idxmin(), errors["mean"].idxmax()
    name = lambda i: f"{errors['depth'][i]} × {errors['width'][i]}"  # noqa: E731
    return {
        "build-up": f"combined layer classifier, first → last hidden layer: "
                    f"{first.mean():.1f} → {last.mean():.1f} % "
                    f"(mean of {len(deep)} networks with ≥ 2 hidden layers); last above first in "
                    f"{int((last > first).sum())} of {len(deep)}",
        "nodes": "last hidden layer, test accuracy: " + ", ".join(f"{m} {v:.1f} %" for m, v in modes.items())
                 + f"; the networks themselves {100 - table['test_error'].mean():.1f} %",
        "perplexity": f"first → last hidden layer: {p_first.mean():.0f} → {p_last.mean():.0f} patterns per class "
                      f"(mean of the same networks); lower in the last layer in {int((p_last < p_first).sum())} "
                      f"of {len(deep)}",
        "error": f"lowest {name(best)}: {errors['mean'][best]:.2f} %; highest {name(worst)}: "
                 f"{errors['mean'][worst]:.2f} % ({len(errors)} networks, {int(errors['n'].max())} seed(s))",
    }


def _noise_evidence(table: pd.DataFrame) -> Dict[str, str]:
    tracks = tracks_frame(table)
    noisy = tracks[tracks["fraction"] > 0]
    if noisy.empty:
        raise ValueError("the table has no run with corrupted labels")
    clean_first, late, quarantine = [], [], []
    for fraction, group in noisy.groupby("fraction"):
        mean = group.groupby("epoch").mean(numeric_only=True)
        best, last = int(mean["test_error"].idxmin()), int(mean.index.max())
        clean_first.append(f"{fraction:.0%}: {mean.loc[best, 'train_error_clean']:.1f} % vs "
                           f"{mean.loc[best, 'train_error_corrupted']:.1f} %")
        late.append(f"{fraction:.0%}: {mean.loc[best, 'train_error_corrupted']:.1f} % → "
                    f"{mean.loc[last, 'train_error_corrupted']:.1f} % (test error "
                    f"{mean.loc[best, 'test_error']:.1f} → {mean.loc[last, 'test_error']:.1f} %)")
        at_last = np.array(group.loc[group["epoch"] == last, "layer_acc_corrupted"].tolist(), dtype=float).mean(0)
        quarantine.append(f"{fraction:.0%}: layer 1 {100 * at_last[0]:.1f} % → last layer {100 * at_last[-1]:.1f} %")
    return {
        "clean-first": "at the tracked epoch of lowest test error, training error on clean samples vs corrupted "
                       "samples not yet memorized: " + "; ".join(clean_first),
        "memorized-late": "corrupted samples not yet memorized, that epoch → the last: " + "; ".join(late),
        "quarantine": "last epoch, combined layer classifier on corrupted samples against their wrong label: "
                      + "; ".join(quarantine),
    }


# ------------------------------------------------------------------------------- the page: tidy frames
def _std(values: np.ndarray) -> np.ndarray:
    """Sample standard deviation over the first axis (the seeds); NaN for a single run."""
    return values.std(0, ddof=1) if len(values) > 1 else np.full(values.shape[1:], np.nan)


def layer_frame(table: pd.DataFrame) -> pd.DataFrame:
    """One row per network of a depth/width grid (``"grid"`` or ``"fashion"``) and hidden layer, for plots:
    ``network`` ("6 × 100"), ``depth``, ``width``, ``layer`` (1 = first hidden layer), ``n`` (seeds), and
    mean and sample std over the seeds of the layer's ``perplexity`` (patterns per class, training set) and
    of the three layer classifiers' test accuracy (``accuracy_<mode>``, %), std columns ending in ``_std``
    (NaN for one seed)."""
    rows = []
    for (depth, width), group in table.groupby(["depth", "width"], sort=False):
        values = {"perplexity": np.array(group["perplexity"].tolist(), dtype=float)}
        for mode in MODES:
            values[f"accuracy_{mode}"] = 100 * np.array(group[f"layer_accuracy.{mode}"].tolist(), dtype=float)
        means = {k: v.mean(0) for k, v in values.items()}
        stds = {k: _std(v) for k, v in values.items()}
        for layer in range(int(depth)):
            row = {"network": f"{depth} × {width}", "depth": int(depth), "width": int(width), "layer": layer + 1,
                   "n": len(group)}
            for key in values:
                row[key], row[f"{key}_std"] = means[key][layer], stds[key][layer]
            rows.append(row)
    return pd.DataFrame(rows)


def network_frame(table: pd.DataFrame) -> pd.DataFrame:
    """One row per network of a depth/width grid, numbers rather than :func:`network_table`'s text: ``n``
    (seeds), ``test_error`` and ``test_error_std`` (%, at the best validation epoch), ``accuracy`` (the
    network's own test accuracy, 100 − test error), ``epochs`` (mean epochs trained) and ``capped`` (runs
    that reached ``max_epochs`` instead of stopping early), and, means over the seeds, the first and last
    hidden layer's ``perplexity_first``/``perplexity_last`` and combined layer classifier test accuracy
    ``layer_first``/``layer_last`` (%), ``gain`` (last − first, points) and ``node_last`` (mean test accuracy
    of the last hidden layer's single nodes, combined, %)."""
    rows = []
    for (depth, width), group in table.groupby(["depth", "width"], sort=False):
        perplexity = _layer_means(group, "perplexity")
        accuracy = 100 * _layer_means(group, "layer_accuracy.combined")
        errors = group["test_error"].astype(float)
        rows.append({
            "network": f"{depth} × {width}", "depth": int(depth), "width": int(width), "n": len(group),
            "test_error": errors.mean(), "test_error_std": errors.std(ddof=1) if len(group) > 1 else np.nan,
            "accuracy": 100 - errors.mean(), "epochs": group["epochs_trained"].mean(),
            "capped": int((group["epochs_trained"] >= group["max_epochs"]).sum()),
            "perplexity_first": perplexity[0], "perplexity_last": perplexity[-1],
            "layer_first": accuracy[0], "layer_last": accuracy[-1], "gain": accuracy[-1] - accuracy[0],
            "node_last": 100 * _layer_means(group, "node_accuracy_combined")[-1]})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------ the page: what reproduces
#: The verdicts of :func:`reproduction_summary`.
VERDICTS = ("reproduces", "partly", "does not reproduce", "not compared")
#: The thresholds behind the verdicts. Perplexity "falls" when the last hidden layer's is below the first's
#: by more than ``perplexity_drop``; a layer classifier is "near" its network within ``near_points`` of its
#: test accuracy; on corrupted samples a layer is "near chance" below ``near_chance`` (%) and "memorizes"
#: them above ``memorized`` (%); a group of training samples is "fitted" below ``fitted`` (% training
#: error) and "not yet memorized" above ``not_memorized`` (%).
CRITERIA = {"perplexity_drop": 0.10, "near_points": 2.0, "near_chance": 25.0, "memorized": 50.0,
            "fitted": 10.0, "not_memorized": 50.0}
#: The claims of the paper (Davel et al. 2020) and, for label noise, of Theunissen, Davel & Barnard (2019),
#: shown in the same talk; the papers publish figures, not tables.
CLAIMS = {
    "perplexity": ("training groups the samples of a class: perplexity falls through the layers",
                   "Davel et al. 2020, perplexity figures, depth and width families, MNIST and FMNIST"),
    "build-up": ("class information builds up layer by layer",
                 "Davel et al. 2020, layer classifiers from node classifiers, MNIST and FMNIST"),
    "nodes": ("nodes are classifiers, and the nodes of a layer together predict accurately",
              "Davel et al. 2020, discrete, continuous and combined node estimators, combined per layer"),
    "paths": ("the SGD update of a weight is a sum over active paths",
              "Davel et al. 2020, the update formula (ReLU, softmax, cross-entropy)"),
    "error": ("test error across the depth and width families",
              "Davel et al. 2020, test error figure, full MNIST and FMNIST"),
    "clean-first": ("clean samples are fitted first", "Theunissen et al. 2019, after Zhang et al. 2017"),
    "memorized-late": ("corrupted samples are memorized late, and the test error rises",
                       "Theunissen et al. 2019, after Zhang et al. 2017"),
    "quarantine": ("the corrupted labels are fitted by the last layers (quarantine paths)",
                   "Theunissen et al. 2019"),
}


def _count_verdict(hits: int, total: int) -> str:
    """All → reproduces, at least half → partly, fewer → does not reproduce."""
    if total and hits == total:
        return VERDICTS[0]
    return VERDICTS[1] if total and 2 * hits >= total else VERDICTS[2]


def _seeds_text(n: int) -> str:
    return f"{n} seed{'s' if n != 1 else ''}"


def _grid_claims(table: pd.DataFrame) -> List[Dict[str, Any]]:
    nets = network_frame(table)
    deep = nets[nets["depth"] >= 2]
    if deep.empty:
        raise ValueError("the table has no network with two or more hidden layers")
    dataset, seeds, k = str(table["dataset"].iloc[0]), _seeds_text(int(nets["n"].max())), len(deep)
    data = f"{dataset}, {len(nets)} networks"
    drop = deep["perplexity_last"] < (1 - CRITERIA["perplexity_drop"]) * deep["perplexity_first"]
    rises = deep["layer_last"] > deep["layer_first"]
    near = (deep["accuracy"] - deep["layer_last"]).abs() <= CRITERIA["near_points"]
    low, high = nets["test_error"].idxmin(), nets["test_error"].idxmax()
    modes = {m: 100 * np.mean([_layer_means(g, f"layer_accuracy.{m}")[-1]
                               for key, g in table.groupby(["depth", "width"], sort=False) if key[0] >= 2])
             for m in MODES}
    return [
        {"key": "perplexity", "data": data, "seeds": seeds, "verdict": _count_verdict(int(drop.sum()), k),
         "hits": int(drop.sum()), "total": k,
         "ours": f"last hidden layer below the first by more than {CRITERIA['perplexity_drop']:.0%} in "
                 f"{count_phrase(int(drop.sum()), k)} networks with ≥ 2 hidden layers; mean "
                 f"{deep['perplexity_first'].mean():.0f} → {deep['perplexity_last'].mean():.0f} patterns per class"},
        {"key": "build-up", "data": data, "seeds": seeds, "verdict": _count_verdict(int(rises.sum()), k),
         "hits": int(rises.sum()), "total": k,
         "ours": f"combined layer classifier better in the last hidden layer than in the first in "
                 f"{count_phrase(int(rises.sum()), k)} networks; gain {deep['gain'].min():.1f} to "
                 f"{deep['gain'].max():.1f} points"},
        {"key": "nodes", "data": data, "seeds": seeds, "verdict": _count_verdict(int(near.sum()), k),
         "hits": int(near.sum()), "total": k,
         "ours": "last hidden layer, test accuracy (mean of the networks): single nodes "
                 f"{deep['node_last'].mean():.1f} %; layer classifiers "
                 + ", ".join(f"{m} {v:.1f} %" for m, v in modes.items())
                 + f"; the networks {deep['accuracy'].mean():.1f} %. Combined layer within "
                 f"{CRITERIA['near_points']:.0f} points of its network in {count_phrase(int(near.sum()), k)}"},
        {"key": "error", "data": data, "seeds": seeds, "verdict": VERDICTS[3], "hits": None, "total": None,
         "ours": f"{nets['test_error'].min():.2f} % ({nets['network'][low]}) to {nets['test_error'].max():.2f} % "
                 f"({nets['network'][high]}); the paper's numbers are for other training sets"},
    ]


def _noise_claims(table: pd.DataFrame) -> List[Dict[str, Any]]:
    tracks = tracks_frame(table)
    noisy = tracks[tracks["fraction"] > 0]
    if noisy.empty:
        raise ValueError("the table has no run with corrupted labels")
    if {"dataset", "depth", "width"} <= set(table.columns):
        row = table.iloc[0]
        data = f"{row['dataset']}, {row['depth']} × {row['width']} network, no early stopping"
    else:
        data = "label-noise runs"
    seeds = _seeds_text(int(noisy.groupby("fraction")["seed"].nunique().max()))
    first: List[bool] = []
    late: List[bool] = []
    quarantine: List[bool] = []
    texts = {"clean-first": [], "memorized-late": [], "quarantine": []}
    for fraction, group in noisy.groupby("fraction"):
        mean = group.groupby("epoch").mean(numeric_only=True)
        best, last = int(mean["test_error"].idxmin()), int(mean.index.max())
        clean, kept = mean.loc[best, "train_error_clean"], mean.loc[best, "train_error_corrupted"]
        first.append(clean < CRITERIA["fitted"] and kept > CRITERIA["not_memorized"])
        texts["clean-first"].append(f"{fraction:.0%}: {clean:.1f} % vs {kept:.1f} % (epoch {best})")
        end, rise = mean.loc[last, "train_error_corrupted"], mean.loc[last, "test_error"] - mean.loc[best, "test_error"]
        late.append(end < CRITERIA["fitted"] and rise > 0)
        texts["memorized-late"].append(f"{fraction:.0%}: {kept:.1f} % → {end:.1f} % not memorized, test error "
                                       f"{mean.loc[best, 'test_error']:.1f} → {mean.loc[last, 'test_error']:.1f} %")
        layers = 100 * np.array(group.loc[group["epoch"] == last, "layer_acc_corrupted"].tolist(), dtype=float).mean(0)
        quarantine.append(layers[0] < CRITERIA["near_chance"] and layers[-1] > CRITERIA["memorized"])
        texts["quarantine"].append(f"{fraction:.0%}: layer 1 {layers[0]:.1f} % → last layer {layers[-1]:.1f} %")
    prefix = {"clean-first": "at the tracked epoch of lowest test error, training error on clean samples vs "
                             "corrupted samples not yet memorized: ",
              "memorized-late": "from that epoch to the last: ",
              "quarantine": "last epoch, combined layer classifier on corrupted samples, against their wrong "
                            "label: "}
    hits = {"clean-first": first, "memorized-late": late, "quarantine": quarantine}
    return [{"key": key, "data": data, "seeds": seeds, "verdict": _count_verdict(sum(hits[key]), len(hits[key])),
             "hits": int(sum(hits[key])), "total": len(hits[key]), "ours": prefix[key] + "; ".join(texts[key])}
            for key in hits]


def reproduction_summary(grids: Sequence[pd.DataFrame] = (), noise: Optional[pd.DataFrame] = None,
                         path_gap: Optional[float] = None) -> pd.DataFrame:
    """What reproduces: the papers' claims (:data:`CLAIMS`) beside our measurements, one row per claim and
    dataset, with a verdict computed by the rules of :data:`CRITERIA` (:data:`VERDICTS`: all networks or
    noise levels meet the criterion → reproduces; at least half → partly; fewer → does not reproduce; the
    test errors are not compared, the paper's being for other training sets).

    Args:
        grids: :func:`run_experiment` tables of depth/width grids (``"grid"``, ``"fashion"``).
        noise: the ``"noise"`` table, or ``None``.
        path_gap: the largest difference between the path-sum update and autograd (float64), or ``None``;
            below ``1e-12`` the claim reproduces exactly.

    Returns:
        Columns ``key``, ``claim``, ``paper`` (source), ``data``, ``seeds``, ``ours``, ``verdict``, and
        ``hits`` of ``total``: how many networks (noise levels) meet the criterion (``None`` when not
        compared).
    """
    rows: List[Dict[str, Any]] = []
    for table in grids:
        rows += _grid_claims(table)
    if path_gap is not None:
        rows.append({"key": "paths", "data": "a 4-5-4-3 ReLU network, 8 samples, float64", "seeds": _seeds_text(1),
                     "verdict": VERDICTS[0] if path_gap < 1e-12 else VERDICTS[2],
                     "hits": int(path_gap < 1e-12), "total": 1,
                     "ours": f"largest difference from autograd: {path_gap:.1e}"})
    if noise is not None:
        rows += _noise_claims(noise)
    order = list(CLAIMS)
    rows.sort(key=lambda r: order.index(r["key"]))
    frame = pd.DataFrame(rows, columns=["key", "data", "seeds", "ours", "verdict", "hits", "total"])
    frame[["hits", "total"]] = frame[["hits", "total"]].astype("Int64")
    frame.insert(1, "claim", [CLAIMS[k][0] for k in frame["key"]])
    frame.insert(2, "paper", [CLAIMS[k][1] for k in frame["key"]])
    return frame


def summary(name: str, table: pd.DataFrame) -> pd.DataFrame:
    """What the command line prints for experiment ``name``: :func:`network_table` for the grids,
    :func:`noise_table` for ``"noise"``."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {EXPERIMENTS}")
    if not len(table):
        return pd.DataFrame()
    return noise_table(table) if name == "noise" else network_table(table)
