"""Chapter 1's experiments: deep MLPs initialized by each variance-scaling scheme and trained with SGD.

One experiment, ``"training"``: a 10-layer, 100-unit MLP with tanh or ReLU, initialized by
:math:`\\mathcal N(0, 0.01^2)`, Xavier, He or LSUV, trained with plain SGD (lr 0.05, batch 100) on
mnist-5k (quick) or MNIST (full), several seeds each. Each run records its per-epoch curves, the test
error at the best validation epoch and how many epochs it took to reach 90 % validation accuracy.
The chapter's runs are trained when the book is built (about a minute each on a CPU); nothing is stored.
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
           "curves_frame", "comparison_table", "summary"]

CHAPTER = "ch01"
TITLE = "Vanishing and exploding signals; Xavier, He and LSUV initialization"
#: The data, epochs and seeds of the training runs in each profile, and the device they use.
SETTINGS = {
    "quick": dict(dataset="mnist-5k", epochs=25, seeds=[0, 1, 2], device="cpu"),
    "full": dict(dataset="mnist", epochs=60, seeds=[0, 1, 2, 3, 4], device=None),
}
EXPERIMENTS = ("training",)
#: The experiments whose quick runs are stored with the book (none here; the book build trains them).
STORED: Tuple[str, ...] = ()
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
