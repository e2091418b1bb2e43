"""Chapter 1's experiments: deep MLPs initialized by each variance-scaling scheme and trained with SGD.

One experiment, ``"training"``: a 10-layer, 100-unit MLP with tanh or ReLU, initialized by
:math:`\\mathcal N(0, 0.01^2)`, Xavier, He or LSUV, trained with plain SGD (lr 0.05, batch 100) on
mnist-5k (quick) or MNIST (full), several seeds each. Each run records its per-epoch curves, the test
error at the best validation epoch and how many epochs it took to reach 90 % validation accuracy.
Its 24 quick-profile runs are stored with the book (``notebooks/results/ch01/training_quick``), so the
book build reads them back and trains no sweep.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np
import pandas as pd
import torch

from ..init import initialize_
from ..models import MLP, build_model
from ..runs import format_mean_std, summarize
from ..train import fit
from ._common import (ChapterRun, Timer, cached_dataset, check_dataset, history_summary, run_chapter_experiment,
                      setup_chapter)

__all__ = ["CHAPTER", "TITLE", "SETTINGS", "EXPERIMENTS", "STORED", "SCHEMES", "ACTIVATIONS", "HISTORY_COLUMNS",
           "setup", "initialized_mlp", "experiment_grid", "train_init_run", "run_config", "run_experiment",
           "curves_frame", "comparison_table", "summary", "summary_frame", "profile_summary",
           "lsuv_summary"]

CHAPTER = "ch01"
TITLE = "Vanishing and exploding signals; Xavier, He and LSUV initialization"
#: The data, epochs and seeds of the training runs in each profile, and the device they use.
SETTINGS = {
    "quick": dict(dataset="mnist-5k", epochs=25, seeds=[0, 1, 2], device="cpu"),
    "full": dict(dataset="mnist", epochs=60, seeds=[0, 1, 2, 3, 4], device=None),
}
EXPERIMENTS = ("training",)
#: Every experiment's quick-profile runs are stored with the book, so that the book build trains no sweep.
STORED: Tuple[str, ...] = EXPERIMENTS
#: The initialization schemes compared (:func:`neuronlab.init.initialize_` names).
SCHEMES = ("gaussian", "xavier", "he", "lsuv")
ACTIVATIONS = ("tanh", "relu")
HISTORY_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")


def setup(profile: Optional[str] = None, seed: int = 0, runs_dir=None, device: Optional[str] = None,
          smoke: Optional[bool] = None) -> Tuple[Dict[str, Any], ChapterRun]:
    """The notebook's first line: ``SETTINGS, RUN = ch01.setup(PROFILE, SEED, RUNS_DIR)`` (see
    :func:`neuronlab.experiments._common.setup_chapter`; ``smoke``: ``neuronlab.experiments.smoke``)."""
    return setup_chapter(CHAPTER, SETTINGS, profile, seed, runs_dir, device, STORED, smoke=smoke)


def initialized_mlp(depth: int, width: int, *, activation: str = "relu", scheme: str = "he", in_features: int = 784,
                    num_classes: int = 10, weight_std: float = 0.01, x: Optional[torch.Tensor] = None,
                    seed: int = 0) -> MLP:
    """The chapter's network: ``depth`` linear layers (hidden width ``width``) initialized by ``scheme``.

    ``scheme`` is one of ``"gaussian"`` (``N(0, weight_std^2)``), ``"xavier"``, ``"he"``, ``"lsuv"``
    (needs a data batch ``x``). Biases are zero, as in the papers' protocols; the draw is seeded.
    """
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = build_model(f"MLP-{depth - 1}x{width}", activation=activation, in_features=in_features,
                        num_classes=num_classes)
    options = {"std": weight_std} if scheme == "gaussian" else {}
    initialize_(model, scheme, x=x, generator=generator, **options)
    return model


def experiment_grid(name: str, profile: str = "quick") -> List[Dict[str, Any]]:
    """The run configurations of ``"training"``: every scheme and activation on a 10 x 100 MLP, each seed."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {EXPERIMENTS}")
    settings = SETTINGS[profile]
    return [dict(dataset=settings["dataset"], scheme=scheme, activation=activation, depth=10, width=100, lr=0.05,
                 batch_size=100, epochs=settings["epochs"], seed=seed)
            for activation in ACTIVATIONS for scheme in SCHEMES for seed in settings["seeds"]]


def train_init_run(data, *, scheme: str, activation: str, depth: int = 10, width: int = 100, lr: float = 0.05,
                   batch_size: int = 100, epochs: int = 25, seed: int = 0, weight_std: float = 0.01,
                   lsuv_samples: int = 512, dataset: Optional[str] = None,
                   device: Optional[Union[str, torch.device]] = None, progress: bool = False) -> Dict[str, Any]:
    """Train a ``depth``-layer MLP initialized by ``scheme`` with plain SGD on ``device``; return a JSON-ready
    summary (``progress``: a bar over the epochs).

    The result holds :func:`~neuronlab.experiments._common.history_summary`'s keys, the per-epoch curves
    (``history``: lists keyed by column), ``epochs_to_90`` (the first epoch with validation accuracy
    >= 90 %, ``None`` if never) and the final training loss.
    """
    check_dataset(dataset, data)
    in_features = int(np.prod(data.x_train.shape[1:]))
    with Timer() as timer:
        model = initialized_mlp(depth, width, activation=activation, scheme=scheme, in_features=in_features,
                                num_classes=data.num_classes, weight_std=weight_std,
                                x=data.x_train[:lsuv_samples].reshape(-1, in_features), seed=seed)
        history = fit(model, data, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, progress=progress,
                      device=device)
    table = history.table
    reached = table.loc[table["val_acc"] >= 0.9, "epoch"]
    return {
        **history_summary(history, timer.seconds),
        "history": {col: table[col].astype(float).tolist() for col in HISTORY_COLUMNS},
        "epochs_to_90": int(reached.iloc[0]) if len(reached) else None,
        "final_train_loss": float(table["train_loss"].iloc[-1]),
    }


def run_config(config: Mapping[str, Any], device=None, progress: bool = False) -> Dict[str, Any]:
    """Load the configuration's data (flattened images) and train it on ``device`` (:func:`train_init_run`)."""
    return train_init_run(cached_dataset(config["dataset"], flatten=True), **config, device=device,
                          progress=progress)


def run_experiment(name: str, run: ChapterRun, progress: Optional[bool] = None) -> pd.DataFrame:
    """Run (or resume, or read back) experiment ``name`` into ``run``'s store; returns its table. ``progress``:
    bars over the runs and the epochs (``None``: in the full profile only)."""
    return run_chapter_experiment(experiment_grid(name, run.profile), name, run, run_config, progress)


def curves_frame(table: pd.DataFrame) -> pd.DataFrame:
    """Long-format per-epoch curves from a run table whose ``history`` column holds :func:`train_init_run`
    results: one row per (run, epoch), with the run's configuration columns kept."""
    history_cols = [c for c in table.columns if c == "history" or c.startswith("history.")]
    if not history_cols:
        raise ValueError("the table has no 'history' column: pass the table returned by run_experiment")
    config_cols = [c for c in table.columns if not c.startswith("history") and not c.endswith("_curve")]
    frames = []
    for _, row in table.iterrows():
        if "history" in table.columns:
            curves = pd.DataFrame(row["history"])
        else:
            curves = pd.DataFrame({c.split(".", 1)[1]: row[c] for c in history_cols})
        for col in config_cols:
            curves[col] = row[col]
        frames.append(curves)
    return pd.concat(frames, ignore_index=True)


def comparison_table(table: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over seeds per activation and scheme: the test error at the best validation epoch and
    the epochs to 90 % validation accuracy. Chapter 1 reproduces no paper table: the literature's claim
    (Glorot & Bengio 2010; He et al. 2015) is qualitative, that N(0, 0.01²) fails to train a deep net
    while Xavier (tanh) and He (ReLU) train it."""
    errors = summarize(table, by=["activation", "scheme"], value="test_error")
    epochs = summarize(table, by=["activation", "scheme"], value="epochs_to_90")
    return pd.DataFrame({
        "activation": errors["activation"], "scheme": errors["scheme"], "seeds": errors["n"],
        "test error at best val epoch (%)": [format_mean_std(m, s) for m, s in zip(errors["mean"], errors["std"])],
        "epochs to 90% val acc": [format_mean_std(m, s, digits=1) for m, s in zip(epochs["mean"], epochs["std"])],
    })


def summary(name: str, table: pd.DataFrame) -> pd.DataFrame:
    """What the command line prints for experiment ``name``."""
    return comparison_table(table)


def summary_frame(table: pd.DataFrame) -> pd.DataFrame:
    """The training runs per activation and scheme, one tidy row each (the numbers the chapter's text and
    figure quote).

    Columns: ``activation``, ``scheme``, ``n`` (seeds), ``test_error_mean`` / ``_std`` / ``_min`` / ``_max``
    (test error at the best validation epoch, %), ``reached_90`` (seeds whose validation accuracy reached
    90 %), ``epochs_to_90_mean`` / ``_std`` (over the seeds that reached it; NaN if none did) and
    ``final_train_loss_mean``. Groups keep the table's order.
    """
    missing = [c for c in ("activation", "scheme", "test_error", "epochs_to_90", "final_train_loss")
               if c not in table.columns]
    if missing:
        raise KeyError(f"columns {missing} not in the table; pass the table returned by run_experiment")
    rows = []
    for (activation, scheme), group in table.groupby(["activation", "scheme"], sort=False):
        errors = pd.to_numeric(group["test_error"], errors="coerce")
        epochs = pd.to_numeric(group["epochs_to_90"], errors="coerce").dropna()
        rows.append({
            "activation": activation, "scheme": scheme, "n": len(group),
            "test_error_mean": errors.mean(), "test_error_std": errors.std(),
            "test_error_min": errors.min(), "test_error_max": errors.max(),
            "reached_90": len(epochs),
            "epochs_to_90_mean": epochs.mean() if len(epochs) else float("nan"),
            "epochs_to_90_std": epochs.std() if len(epochs) > 1 else float("nan"),
            "final_train_loss_mean": pd.to_numeric(group["final_train_loss"]).mean(),
        })
    return pd.DataFrame(rows)


def _per_layer_factor(values: np.ndarray) -> float:
    """Geometric mean factor between consecutive entries: ``(values[-1] / values[0]) ** (1 / (n - 1))``."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        raise ValueError("a per-layer factor needs at least two layers")
    return float((values[-1] / values[0]) ** (1.0 / (len(values) - 1)))


def profile_summary(profiles: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Numbers that describe :func:`neuronlab.signal.signal_profile` frames of deep MLPs, one row per
    profile (``profiles`` maps a label to a frame).

    The hidden-to-hidden layers (``2 .. L-1``: the first layer has a different fan-in, the last one
    gives the logits) are summarized by

    * ``forward_factor``: geometric mean factor by which a layer multiplies the activation std;
    * ``backward_factor``: the same for the gradient std :math:`\\partial L/\\partial z`, going
      *towards the input* (below 1: gradients shrink on their way back);
    * ``forward_spread`` / ``backward_spread``: largest over smallest std across those layers (1: flat);
    * ``first_gradient_std``: gradient std that reaches the first layer.
    """
    rows = []
    for label, frame in profiles.items():
        frame = frame.sort_values("layer")
        if len(frame) < 4:
            raise ValueError(f"profile {label!r} has {len(frame)} layers; the summary needs at least 4")
        hidden = frame.iloc[1:-1]
        fwd, bwd = hidden["activation_std"].to_numpy(), hidden["gradient_std"].to_numpy()
        rows.append({
            "profile": label,
            "forward_factor": _per_layer_factor(fwd),
            "backward_factor": _per_layer_factor(bwd[::-1]),
            "forward_spread": float(fwd.max() / fwd.min()),
            "backward_spread": float(bwd.max() / bwd.min()),
            "first_gradient_std": float(frame["gradient_std"].iloc[0]),
        })
    return pd.DataFrame(rows)


def lsuv_summary(report: Mapping[str, Mapping[str, float]]) -> Dict[str, Any]:
    """What :func:`neuronlab.init.lsuv_`'s report says in one line: the number of ``layers``, the largest
    distance ``max_deviation`` of an output variance from 1, and the fewest and most rescalings a layer
    needed (``min_iterations``, ``max_iterations``)."""
    if not report:
        raise ValueError("the LSUV report is empty")
    variances = [float(r["variance"]) for r in report.values()]
    iterations = [int(r["iterations"]) for r in report.values()]
    return {"layers": len(report), "max_deviation": max(abs(v - 1.0) for v in variances),
            "min_iterations": min(iterations), "max_iterations": max(iterations)}
