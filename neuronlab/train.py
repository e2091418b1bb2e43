"""A small training loop: seeded, resumable, with a per-epoch history table. Not a framework.

.. code-block:: python

    history = fit(model, load_dataset("mnist-5k"), epochs=20, lr=0.01, seed=0)
    history.table  # a row per epoch: losses, accuracies, extra terms, time
    history.best_epoch  # the epoch with the best validation accuracy
    history.test_error_at_best  # test error (%) at that epoch (NSR's protocol)
    history.min_test_error  # lowest test error (%) of all epochs (IBCI's protocol)
    history.plot()

What :func:`fit` accepts as ``data``:

* an object with ``x_train, y_train, x_val, y_val, x_test, y_test`` (validation and test may be ``None``
  or empty), such as :class:`neuronlab.data.DatasetSplits`;
* a dict ``{"train": (x, y), "val": (x, y), "test": (x, y)}`` (``"val"`` and ``"test"`` optional);
* a PyTorch Geometric ``Data`` with ``x, y, edge_index, train_mask`` (and optionally ``val_mask``,
  ``test_mask``): trained full-batch, one optimizer step per epoch, ``model(x, edge_index)``.

Extra loss terms (NSR in Chapter 3) plug in through ``extra_losses``: each is a callable that receives a
:class:`StepContext` (model, inputs, targets, logits, ...) and returns a scalar tensor added to the data
loss. A term that needs layer responses reads them from forward hooks it registered itself (see
:mod:`neuronlab.probe`): the hooks fire during the forward pass that produced ``ctx.logits``.

Reproducibility: ``fit`` seeds Python, NumPy and PyTorch with ``seed`` (:func:`neuronlab.config.seed_everything`)
and shuffles epoch ``e`` with a generator seeded from ``(seed, e)``, so an interrupted run that is resumed
from its checkpoint ends with exactly the weights and history of an uninterrupted one (on the CPU; on a
GPU up to the nondeterminism of its kernels).

What :func:`fit` checks before the first epoch (a mistake raises ``ValueError``/``TypeError`` saying what is
wrong and what to do; neither the weights nor any file has been changed, though the model may have been
moved to ``device``):

* the data: its form, matching input/label counts, no NaN or infinite inputs;
* dtypes: floating inputs are converted to the floating dtype of the model's parameters (float64 or float16
  inputs of a float32 model become float32; values beyond that dtype's range are refused). Integer and
  boolean *inputs* are passed as they are (an embedding layer takes them); a model that cannot take them
  gets a ``TypeError`` saying to convert them (``x.float()``, and ``x.float() / 255`` for 8-bit images).
  Integer and boolean *labels* of any width (int32, uint8, ...) are converted to int64;
* with a class-index loss (the default cross-entropy, ``F.nll_loss`` or their modules): float labels holding
  whole numbers are converted to int64; fractional, NaN or infinite labels are refused; one-hot labels
  ``(N, classes)`` are refused ("use ``y.argmax(1)``"); float ``(N, classes)`` labels that are not one-hot
  are class probabilities and go to the loss as they are;
* the model against the data: it is run once, in eval mode without gradients, on two examples of each
  split (the whole graph for graphs), before seeding, so the run is the same as without the check. Its
  output must be logits ``(batch, classes)`` (class-index losses), and every label of every split must lie
  in ``0 .. classes - 1``. If the model fails on the inputs, 1-D inputs ("pass ``x.reshape(-1, 1)``") and
  integer inputs get their own message; any other error is the model's own, re-raised with a note giving
  the shape and dtype it was fed. A model with uninitialized lazy layers is refused (run it once on a
  batch first: their first forward pass draws their weights);
* the checkpoint: its folder must be writable (or creatable), and the path must not be a folder.

Checkpoints hold only tensors, numbers, strings and plain lists and dicts (state dicts, the RNG states as
tensors, the history as a list of plain dicts), and are read with ``torch.load(weights_only=True)``: a file
planted at the checkpoint path cannot run code. A file that cannot be read that way (an old checkpoint,
written by neuronlab before checkpoint version 2, a truncated or foreign file, the checkpoint of another
model) is refused with a message naming it, before anything is loaded.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import math
import os
import pickle
import random
import re
import threading
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin

from .config import get_device, seed_everything
from .probe import is_graph

__all__ = ["StepContext", "History", "fit", "evaluate", "evaluate_graph", "predict", "make_optimizer", "OPTIMIZERS",
           "SCHEDULERS"]

#: Optimizer names :func:`fit` understands (or pass a callable ``params -> optimizer`` / an instance).
OPTIMIZERS = ("sgd", "adam", "adamw")
#: Scheduler names :func:`fit` understands (or pass a callable ``optimizer -> scheduler``).
SCHEDULERS = ("cosine",)
_SPLITS = ("train", "val", "test")
#: Version 2 (neuronlab after issue 15): only tensors, numbers, strings and plain containers, read with
#: ``torch.load(weights_only=True)``. Version 1 held NumPy arrays and was read with unsafe unpickling.
_CHECKPOINT_VERSION = 2
_CHECKPOINT_FORMAT = "neuronlab.train.fit checkpoint"
_CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "history", "epoch", "stopped", "rng", "best_state",
                    "settings")
#: How labels and inputs of each split are named in messages.
_SPLIT_NAMES = {"train": "training", "val": "validation", "test": "test"}


@dataclass
class StepContext:
    """What an extra loss term sees at each training step (``term(ctx) -> scalar tensor``).

    Attributes:
        model: the model being trained (in train mode).
        inputs: the batch fed to the model (after ``augment``); for graphs the tuple ``(x, edge_index)``.
        targets: the labels of the batch; for graphs the labels of *all* nodes (use ``mask``).
        logits: the model's output on ``inputs`` (still attached to the graph: gradients flow through it).
        mask: the training mask for graphs, ``None`` for mini-batches.
        epoch: the current epoch, 1-based.
        step: the step within the epoch, 0-based (always 0 for full-batch graphs).
    """

    model: nn.Module
    inputs: Any
    targets: torch.Tensor
    logits: torch.Tensor
    mask: Optional[torch.Tensor]
    epoch: int
    step: int


# ============================================================================================ History
def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, (float, np.floating)) and math.isnan(value))


class History:
    """Per-epoch record of a training run; ``history.table`` is a pandas DataFrame, one row per epoch.

    Columns written by :func:`fit`:

    * ``epoch`` (1-based);
    * ``train_loss``: mean of the epoch's per-batch *data* losses (``loss_fn``, cross-entropy by default;
      extra terms excluded);
    * ``train_acc``: accuracy on the training batches *as they were seen during the epoch* (train mode,
      weights changing between batches). It costs nothing, but lags slightly behind an end-of-epoch
      evaluation and includes the effect of dropout and augmentation;
    * ``val_loss``, ``val_acc``, ``test_loss``, ``test_acc``: eval mode, no gradients, the whole split, at the
      end of the epoch (NaN when the split is absent);
    * ``lr``: learning rate of the first parameter group during the epoch;
    * ``loss_<name>``: mean over the epoch's steps of each extra loss term;
    * one column per metric, and ``time_s`` (wall time of the epoch, evaluation included).

    Accuracies are fractions in ``[0, 1]``; the error properties below are percentages.

    Args:
        rows: one dict per epoch (what :func:`fit` produces, or a table read back with :meth:`from_csv`).
        select_by: ``"val_acc"`` (highest wins) or ``"val_loss"`` (lowest wins), for :attr:`best_epoch`.
    """

    def __init__(self, rows: Optional[Sequence[Mapping[str, Any]]] = None, select_by: str = "val_acc"):
        if select_by not in ("val_acc", "val_loss"):
            raise ValueError(f"select_by must be 'val_acc' or 'val_loss', got {select_by!r}")
        self.rows: List[Dict[str, Any]] = [dict(r) for r in (rows or [])]
        self.select_by = select_by
        #: CPU copy of the state dict at :attr:`best_epoch` (``fit(..., keep_best=True)``), else ``None``.
        self.best_state: Optional[Dict[str, torch.Tensor]] = None

    # ------------------------------------------------------------------ table access
    @property
    def table(self) -> pd.DataFrame:
        """The history as a DataFrame, a fresh copy that can be edited without changing the history."""
        return pd.DataFrame(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def _column(self, name: str) -> np.ndarray:
        return np.array([np.nan if _is_missing(r.get(name)) else float(r[name]) for r in self.rows], dtype=float)

    def _has(self, name: str) -> bool:
        return bool(self.rows) and not np.isnan(self._column(name)).all()

    def __repr__(self) -> str:
        if not self.rows:
            return "History(0 epochs)"
        table = self.table
        cols = [c for c in ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "test_acc")
                if c in table and (c == "epoch" or self._has(c))]
        cols += [c for c in table if c.startswith("loss_")]
        text = table[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}", max_rows=12)
        head = f"History({len(self)} epochs, best epoch {self.best_epoch} by {self.select_by}"
        if self._has("test_acc"):
            head += f", test error there {self.test_error_at_best:.2f}%"
        return f"{head})\n{text}"

    # ------------------------------------------------------------------ best epoch and errors
    @property
    def best_epoch(self) -> int:
        """The epoch with the highest ``val_acc`` (ties: the earliest), or the lowest ``val_loss`` when
        ``select_by="val_loss"``. Without a validation split (the column is absent or all NaN) this is the
        final epoch: nothing else can be selected without looking at the test set."""
        if not self.rows:
            raise ValueError("the history is empty: train for at least one epoch")
        values = self._column(self.select_by)
        if np.isnan(values).all():
            return int(self.rows[-1]["epoch"])
        index = int(np.nanargmax(values) if self.select_by == "val_acc" else np.nanargmin(values))
        return int(self.rows[index]["epoch"])

    @property
    def best(self) -> pd.Series:
        """The row at :attr:`best_epoch`, as a pandas Series (``history.best["test_acc"]``, ``.to_dict()``)."""
        best = self.best_epoch
        return pd.Series(next(r for r in self.rows if int(r["epoch"]) == best))

    def _test_acc(self) -> np.ndarray:
        values = self._column("test_acc")
        if np.isnan(values).all():
            raise ValueError("this history has no test accuracy: train with a test split")
        return values

    @property
    def test_error_at_best(self) -> float:
        """Test error in percent at :attr:`best_epoch` (report this: the epoch is chosen without the test set)."""
        self._test_acc()
        return 100.0 * (1.0 - float(self.best["test_acc"]))

    @property
    def min_test_error(self) -> float:
        """Lowest test error in percent over all epochs (what the IBCI paper reports; optimistic, since the
        epoch is chosen by looking at the test set)."""
        return 100.0 * (1.0 - float(np.nanmax(self._test_acc())))

    @property
    def epoch_of_min_test_error(self) -> int:
        """The first epoch at which :attr:`min_test_error` is reached."""
        return int(self.rows[int(np.nanargmax(self._test_acc()))]["epoch"])

    def restore_best(self, model: nn.Module) -> nn.Module:
        """Load the weights of :attr:`best_epoch` into ``model`` and return it (needs ``keep_best=True``)."""
        if self.best_state is None:
            raise RuntimeError("no best state was kept: train with fit(..., keep_best=True)")
        model.load_state_dict(self.best_state)
        return model

    # ------------------------------------------------------------------ files and plots
    def to_csv(self, path: Union[str, Path]) -> None:
        """Write :attr:`table` to ``path`` as CSV (the best state, if any, is not written)."""
        self.table.to_csv(path, index=False)

    @classmethod
    def from_csv(cls, path: Union[str, Path], select_by: str = "val_acc") -> "History":
        """Read a history written by :meth:`to_csv`."""
        return cls(pd.read_csv(path).to_dict("records"), select_by=select_by)

    def plot(self, ax=None, metrics: Sequence[str] = ("loss", "acc")):
        """Train / validation / test curves against the epoch, one panel per metric; returns the figure.

        Args:
            ax: ``None`` (a new figure), or one matplotlib Axes per metric (a single Axes for one metric).
            metrics: column suffixes, e.g. ``("loss", "acc")``; each panel plots ``train_<m>``, ``val_<m>``
                and ``test_<m>`` where present. The best epoch is marked by a dotted vertical line.
        """
        import matplotlib.pyplot as plt

        metrics = (metrics,) if isinstance(metrics, str) else tuple(metrics)
        if ax is None:
            fig, ax = plt.subplots(1, len(metrics), figsize=(4.8 * len(metrics), 3.4), constrained_layout=True)
        axes = list(np.atleast_1d(ax))
        if len(axes) != len(metrics):
            raise ValueError(f"got {len(axes)} axes for {len(metrics)} metrics {metrics}")
        epochs = self._column("epoch")
        labels = {"loss": "loss", "acc": "accuracy"}
        for panel, metric in zip(axes, metrics):
            for split, style in (("train", "-"), ("val", "--"), ("test", ":")):
                col = f"{split}_{metric}"
                if self._has(col):
                    panel.plot(epochs, self._column(col), style, label=split)
            if self.rows:
                panel.axvline(self.best_epoch, color="0.6", lw=0.8, ls=":")
            panel.set_xlabel("epoch")
            panel.set_ylabel(labels.get(metric, metric))
            if panel.get_legend_handles_labels()[0]:
                panel.legend()
        return axes[0].figure


# ============================================================================================ data forms
_DATA_FORMS = (
    "fit() accepts three forms of data: (a) an object with attributes x_train, y_train, x_val, y_val, x_test, "
    "y_test (validation/test may be None), such as neuronlab.data.load_dataset(...); (b) a dict "
    "{'train': (x, y), 'val': (x, y), 'test': (x, y)} ('val' and 'test' optional); (c) a torch_geometric "
    "Data with x, y, edge_index and train_mask (val_mask, test_mask optional)."
)


def _as_tensor(value: Any, what: str) -> torch.Tensor:
    """``value`` as a tensor (a numpy array shares its memory; a reversed or otherwise negatively strided view
    is copied); at least one dimension (one entry per example)."""
    if isinstance(value, np.ndarray):
        if not (np.issubdtype(value.dtype, np.number) or value.dtype == np.bool_):
            raise TypeError(f"{what} are a numpy array of dtype {value.dtype}, not numbers: convert them, e.g. "
                            "np.asarray(x, dtype=np.float32) for inputs, np.asarray(y, dtype=np.int64) for labels")
        try:
            value = torch.from_numpy(value)
        except ValueError:  # negative strides (x[::-1]): torch cannot share that memory
            value = torch.from_numpy(np.ascontiguousarray(value))
        except TypeError as err:
            raise TypeError(f"{what} are a numpy array of dtype {value.dtype}, which torch cannot hold: convert "
                            "them to float32 (inputs) or int64 (labels)") from err
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor or a numpy array, got {type(value).__name__}. {_DATA_FORMS}")
    if value.dim() == 0:
        raise ValueError(f"{what} are a single number (a 0-d tensor): pass one entry per example, shape (N, ...)")
    return value


def _check_inputs(x: torch.Tensor, what: str) -> None:
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"the {what} contain NaN or infinite values: clean or impute them before training")


def _model_float_dtype(model: nn.Module) -> Optional[torch.dtype]:
    """The floating dtype of the model's parameters, or ``None`` when it has none or several."""
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    return dtypes.pop() if len(dtypes) == 1 else None


def _conform_inputs(x: torch.Tensor, what: str, dtype: Optional[torch.dtype]) -> torch.Tensor:
    """Floating ``x`` in the model's floating ``dtype`` (unchanged, the same tensor, when it already is, when it
    is not floating, or when ``dtype`` is ``None``). Values that overflow ``dtype`` are refused."""
    if dtype is None or not x.is_floating_point() or x.dtype == dtype:
        return x
    converted = x.to(dtype)
    if not bool(torch.isfinite(converted).all()):
        raise ValueError(f"the {what} are {x.dtype} with values beyond the range of {dtype}, the dtype of the "
                         f"model's weights (largest {torch.finfo(dtype).max:.3g}): rescale them (e.g. standardize "
                         "them) before training")
    return converted


def _takes_class_indices(loss_fn: Optional[Callable]) -> bool:
    """Whether ``loss_fn`` reads targets as class indices: ``fit``'s default cross-entropy, ``F.cross_entropy``,
    ``F.nll_loss`` and their modules. Only then are labels checked and converted as class labels."""
    return (loss_fn is None or loss_fn is F.cross_entropy or loss_fn is F.nll_loss
            or isinstance(loss_fn, (nn.CrossEntropyLoss, nn.NLLLoss)))


def _widen_labels(y: torch.Tensor) -> torch.Tensor:
    """Integer and boolean labels of any width (int8/16/32, uint8, bool) as int64: the same classes."""
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.int64:
        return y
    return y.long()


def _is_one_hot(y: torch.Tensor) -> bool:
    return y.dim() == 2 and bool(((y == 0) | (y == 1)).all()) and bool((y.sum(1) == 1).all())


def _one_hot_error(y: torch.Tensor, what: str) -> ValueError:
    kind = " (one-hot)" if _is_one_hot(y) else ""
    return ValueError(f"the {what} labels have shape {tuple(y.shape)}{kind}: labels must be class indices, shape "
                      f"({len(y)},), not one-hot; use y.argmax(1)")


def _conform_labels(y: torch.Tensor, what: str, class_indices: bool) -> torch.Tensor:
    """The labels as :func:`fit` uses them (see the module docstring): integers widened to int64; with a
    class-index loss also whole-number float labels converted, and fractional, non-finite and one-hot labels
    refused. Labels with three or more dimensions (dense targets) are left to the loss."""
    y = _widen_labels(y)
    if not class_indices or y.dim() >= 3:
        return y
    if y.dim() == 2:
        if y.shape[1] == 1:
            raise ValueError(f"the {what} labels have shape {tuple(y.shape)}: fit needs one class index per "
                             f"example, shape ({len(y)},): pass y.squeeze(1)")
        if not y.is_floating_point():
            return y  # one class index per position (logits (N, classes, k)) or one-hot: _check_outputs decides
        if not bool(torch.isfinite(y).all()):
            raise ValueError(f"the {what} labels contain NaN or infinite values: fix or drop those examples")
        if _is_one_hot(y):
            raise _one_hot_error(y, what)
        return y  # class probabilities (soft labels): the cross-entropy takes them as they are
    if y.is_floating_point():
        if not bool(torch.isfinite(y).all()):
            raise ValueError(f"the {what} labels contain NaN or infinite values: fix or drop those examples")
        fractional = y != torch.round(y)
        if bool(fractional.any()):
            raise ValueError(f"the {what} labels are {y.dtype} with values that are not whole numbers (e.g. "
                             f"{float(y[fractional][0]):g}): with the cross-entropy loss labels are class indices "
                             "0 .. classes - 1. Pass integer class labels, or a loss_fn for other targets")
        return y.long()
    return y


def _tensor_splits(data: Any) -> Dict[str, Optional[Tuple[torch.Tensor, torch.Tensor]]]:
    """``{split: (x, y) or None}`` from form (a) or (b); empty splits become ``None``."""
    raw: Dict[str, Any] = {}
    if isinstance(data, Mapping):
        unknown = set(data) - set(_SPLITS)
        if "train" not in data or unknown:
            problem = f"unknown keys {sorted(map(str, unknown))}" if unknown else "no 'train' key"
            raise TypeError(f"the dict of splits has {problem}. {_DATA_FORMS}")
        for split in _SPLITS:
            pair = data.get(split)
            if pair is not None and (not isinstance(pair, (tuple, list)) or len(pair) != 2):
                raise TypeError(f"data[{split!r}] must be an (x, y) pair, got {type(pair).__name__}. {_DATA_FORMS}")
            raw[split] = pair
    elif hasattr(data, "x_train") and hasattr(data, "y_train"):
        for split in _SPLITS:
            x, y = getattr(data, f"x_{split}", None), getattr(data, f"y_{split}", None)
            raw[split] = None if x is None or y is None else (x, y)
    else:
        raise TypeError(f"fit() cannot read data of type {type(data).__name__}. {_DATA_FORMS}")
    splits: Dict[str, Optional[Tuple[torch.Tensor, torch.Tensor]]] = {}
    for split, pair in raw.items():
        if pair is None:
            splits[split] = None
            continue
        x, y = _as_tensor(pair[0], f"the {split} inputs"), _as_tensor(pair[1], f"the {split} labels")
        if len(x) != len(y):
            raise ValueError(f"the {split} split has {len(x)} inputs but {len(y)} labels: they must match")
        if len(x) == 0:
            if split == "train":
                raise ValueError("the training split is empty")
            splits[split] = None
            continue
        _check_inputs(x, f"{split} inputs")
        splits[split] = (x, y)
    return splits


def _graph_tensors(data: Any) -> Dict[str, Optional[torch.Tensor]]:
    """x, edge_index, y and the three masks of a PyG ``Data`` (masks may be ``None``, except train)."""
    out = {"x": data.x, "edge_index": data.edge_index, "y": getattr(data, "y", None)}
    if out["y"] is None:
        raise ValueError("the graph has no labels: set data.y")
    num_nodes = len(out["x"])
    if len(out["y"]) != num_nodes:
        raise ValueError(f"the graph has {num_nodes} nodes (rows of x) but {len(out['y'])} labels: they must match")
    for split in _SPLITS:
        mask = getattr(data, f"{split}_mask", None)
        if mask is not None:
            if mask.dtype != torch.bool or mask.dim() != 1 or len(mask) != num_nodes:
                raise ValueError(f"{split}_mask must be a 1-D boolean tensor of length {num_nodes} (one entry per "
                                 f"node), got dtype {mask.dtype} and shape {tuple(mask.shape)}")
            if not bool(mask.any()):
                mask = None
        if mask is None and split == "train":
            raise ValueError("the graph needs a non-empty train_mask: which nodes are trained on")
        out[f"{split}_mask"] = mask
    _check_inputs(out["x"], "node features")
    return out


def _is_classification(logits: torch.Tensor, y: torch.Tensor) -> bool:
    return logits.dim() == 2 and not y.is_floating_point() and not y.is_complex() and y.dim() == 1


def _check_labels(num_outputs: int, y: torch.Tensor, what: str) -> None:
    """Class labels must lie in ``0 .. num_outputs - 1``."""
    if y.numel() == 0:
        return
    bad = (y < 0) | (y >= num_outputs)
    if bool(bad.any()):
        wrong = torch.unique(y[bad]).tolist()
        shown = ", ".join(map(str, wrong[:10])) + (", ..." if len(wrong) > 10 else "")
        raise ValueError(f"{what} labels {shown} are out of range: the model has {num_outputs} outputs, so labels "
                         f"must be 0 .. {num_outputs - 1}. Build the model with num_classes = number of classes.")


# ============================================================================================ evaluation
def _model_device(model: nn.Module) -> torch.device:
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 2000, *,
            device: Optional[Union[str, torch.device]] = None) -> torch.Tensor:
    """Logits of ``model`` on ``x``: eval mode, no gradients, in chunks of ``batch_size``.

    The model's previous mode (train/eval) is restored afterwards. ``device`` is where the chunks are sent
    (default: the device of the model's parameters; the model itself is not moved). The logits are
    returned on that device. Floating inputs are converted to the floating dtype of the model's parameters
    (as :func:`fit` does).
    """
    x = _conform_inputs(_as_tensor(x, "x"), "inputs", _model_float_dtype(model))
    target = torch.device(device) if device is not None else _model_device(model)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return torch.cat([model(chunk.to(target)) for chunk in x.split(batch_size)])
    finally:
        model.train(was_training)


def _loss_acc(logits: torch.Tensor, y: torch.Tensor, loss_fn: Callable, what: str) -> Tuple[float, float]:
    if _is_classification(logits, y):
        _check_labels(logits.shape[1], y, what)
        acc = float((logits.argmax(1) == y).float().mean())
    else:
        acc = float("nan")
    return float(loss_fn(logits, y)), acc


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 2000,
             loss_fn: Optional[Callable] = None, device: Optional[Union[str, torch.device]] = None
             ) -> Tuple[float, float]:
    """Loss and accuracy of ``model`` on ``(x, y)``: eval mode, no gradients, the model's mode restored.

    Integer and boolean labels of any width (int32, uint8, ...) are taken as int64; floating inputs are
    converted to the floating dtype of the model's parameters (as :func:`fit` does).

    Returns:
        ``(loss, acc)``: ``loss_fn(logits, y)`` over the whole set (mean cross-entropy by default) and the
        fraction of correct ``argmax`` predictions (NaN when ``y`` are not class labels).

    Raises:
        ValueError: empty or mismatched ``x``/``y``, or labels outside ``0 .. outputs - 1``.
    """
    x, y = _as_tensor(x, "x"), _widen_labels(_as_tensor(y, "y"))
    if len(x) != len(y):
        raise ValueError(f"{len(x)} inputs but {len(y)} labels: they must match")
    if len(x) == 0:
        raise ValueError("cannot evaluate on an empty set")
    logits = predict(model, x, batch_size, device=device)
    with torch.no_grad():
        return _loss_acc(logits, y.to(logits.device), loss_fn or F.cross_entropy, "evaluation")


def _graph_logits(model: nn.Module, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model(x, edge_index)
    finally:
        model.train(was_training)


def evaluate_graph(model: nn.Module, data: Any, mask: torch.Tensor, *, loss_fn: Optional[Callable] = None
                   ) -> Tuple[float, float]:
    """Loss and accuracy of a node classifier ``model(data.x, data.edge_index)`` over the nodes in ``mask``.

    One full-graph forward pass in eval mode without gradients; the model's mode is restored. The graph's
    tensors are moved to the model's device for the pass (``data`` itself is not modified).
    """
    device = _model_device(model)
    logits = _graph_logits(model, data.x.to(device), data.edge_index.to(device))
    mask = mask.to(device)
    with torch.no_grad():
        return _loss_acc(logits[mask], data.y.to(device)[mask], loss_fn or F.cross_entropy, "evaluation")


# ============================================================================================ fit helpers
def make_optimizer(model: nn.Module, optimizer: Any, lr: float, momentum: float = 0.0, weight_decay: float = 0.0
                   ) -> torch.optim.Optimizer:
    """The optimizer :func:`fit` trains with: a name of :data:`OPTIMIZERS` (``"sgd"`` takes ``momentum``), a
    callable ``params -> optimizer``, or an optimizer instance (returned as it is)."""
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    if isinstance(optimizer, str):
        name = optimizer.lower()
        if name != "sgd" and momentum:
            warnings.warn(f"momentum={momentum} is ignored by optimizer {optimizer!r} (it applies to 'sgd')",
                          stacklevel=3)
        if name == "sgd":
            return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
        if name == "adam":
            return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
        if name == "adamw":
            return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    elif callable(optimizer):
        made = optimizer(model.parameters())
        if not isinstance(made, torch.optim.Optimizer):
            raise TypeError(f"the optimizer callable returned {type(made).__name__}, not a torch.optim.Optimizer")
        return made
    raise ValueError(f"Unknown optimizer {optimizer!r}: choose one of {', '.join(map(repr, OPTIMIZERS))}, or pass a "
                     "callable params -> torch.optim.Optimizer, or an optimizer instance")


def _make_scheduler(optimizer: torch.optim.Optimizer, scheduler: Any, epochs: int):
    if scheduler is None:
        return None
    if isinstance(scheduler, str):
        if scheduler.lower() == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
        raise ValueError(f"Unknown scheduler {scheduler!r}: choose None, {', '.join(map(repr, SCHEDULERS))}, or pass "
                         "a callable optimizer -> scheduler")
    if callable(scheduler):
        return scheduler(optimizer)
    raise ValueError(f"scheduler must be None, 'cosine' or a callable optimizer -> scheduler, got {scheduler!r}")


def _name_of(obj: Any) -> Optional[str]:
    if obj is None:
        return None
    if isinstance(obj, str):
        return obj.lower()
    return getattr(obj, "__qualname__", None) or type(obj).__qualname__


def _optimizer_description(opt: torch.optim.Optimizer, optimizer: Any, lr: float, momentum: float,
                           weight_decay: float) -> Dict[str, Any]:
    if isinstance(optimizer, str):
        return {"name": optimizer.lower(), "lr": lr, "momentum": momentum, "weight_decay": weight_decay}
    keys = ("lr", "momentum", "weight_decay", "betas", "eps", "nesterov", "dampening", "alpha")
    groups = [{k: g[k] for k in keys if k in g} for g in opt.param_groups]
    return {"name": type(opt).__name__, "groups": groups}


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A CPU generator that depends on ``(seed, epoch)`` only (not on what ran before)."""
    state = np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def _rng_state() -> Dict[str, Any]:
    """The Python, NumPy and torch (CPU, CUDA) RNG states as tensors, numbers and plain containers only."""
    key, mt, pos, has_gauss, cached = np.random.get_state(legacy=True)
    version, internal, gauss_next = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"key": str(key), "mt": torch.from_numpy(mt.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
             "python": {"version": int(version), "internal": [int(v) for v in internal], "gauss_next": gauss_next}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _parse_rng_state(state: Any) -> Dict[str, Any]:
    """The RNG states of a checkpoint (see :func:`_rng_state`), checked on throwaway generators, in the form
    :func:`_set_rng_state` applies. Raises ``ValueError``, ``TypeError`` or ``KeyError`` if they are damaged."""
    torch_state = state["torch"]
    if not isinstance(torch_state, torch.Tensor) or torch_state.dtype != torch.uint8 or \
            torch_state.shape != torch.get_rng_state().shape:
        raise ValueError("the torch RNG state is not a byte tensor of the right size")
    n = state["numpy"]
    mt = n["mt"]
    if not isinstance(mt, torch.Tensor) or mt.shape != (624,) or bool(((mt < 0) | (mt >= 2**32)).any()):
        raise ValueError("the NumPy RNG state is not 624 32-bit words")
    numpy_state = (str(n["key"]), mt.numpy().astype(np.uint32), int(n["pos"]), int(n["has_gauss"]),
                   float(n["cached_gaussian"]))
    np.random.RandomState().set_state(numpy_state)
    py = state["python"]
    gauss_next = None if py["gauss_next"] is None else float(py["gauss_next"])
    python_state = (int(py["version"]), tuple(int(v) for v in py["internal"]), gauss_next)
    random.Random().setstate(python_state)
    cuda = state.get("cuda")
    if cuda is not None and not (isinstance(cuda, (list, tuple)) and all(isinstance(c, torch.Tensor) for c in cuda)):
        raise ValueError("the CUDA RNG states are not a list of tensors")
    return {"torch": torch_state, "numpy": numpy_state, "python": python_state, "cuda": cuda}


def _set_rng_state(state: Mapping[str, Any]) -> None:
    """Apply RNG states parsed by :func:`_parse_rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _plain(value: Any, where: str) -> Any:
    """``value`` built only of what ``torch.load(weights_only=True)`` reads back: ``None``, bool, int, float,
    str, tensors (moved to the CPU), lists, tuples and dicts. NumPy scalars become Python numbers."""
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, np.generic):
        return _plain(value.item(), where)
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    for kind in (bool, int, float, str):  # subclasses (IntEnum, ...) as the plain type
        if isinstance(value, kind):
            return kind(value)
    if isinstance(value, (list, tuple)):
        items = [_plain(v, where) for v in value]
        return tuple(items) if isinstance(value, tuple) else items
    if isinstance(value, Mapping):
        out = {}
        for key, v in value.items():
            if type(key) not in (str, int):
                raise TypeError(f"cannot write {where} into the checkpoint: a dict key of type {type(key).__name__}; "
                                "use string keys")
            out[key] = _plain(v, where)
        return out
    raise TypeError(f"cannot write {where} into the checkpoint: it holds a {type(value).__name__}. A checkpoint "
                    "stores only numbers, strings, tensors, lists and dicts (so that loading it cannot run code): "
                    "store a number or a string instead")


def _plain_rows(rows: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """The history rows as plain dicts (see :func:`_plain`); a callback's column of another type is named."""
    return [{key: _plain(value, f"history column {key!r} (epoch {row.get('epoch')})") for key, value in row.items()}
            for row in rows]


def _fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable: ``fsync`` the folder itself (POSIX). Skipped where a folder
    cannot be opened (not POSIX, e.g. Windows) or the file system does not sync folders."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _save_atomic(obj: Mapping[str, Any], path: Path) -> None:
    """``torch.save`` to a temporary file next to ``path`` (a name unique to this call), ``fsync`` it, rename
    it to ``path`` and ``fsync`` the folder: a killed process or a power cut never leaves a half-written
    checkpoint (the previous one stays), and a written one survives."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "xb") as f:
            torch.save(dict(obj), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _checkpoint_path(checkpoint: Any) -> Path:
    """``checkpoint`` as a path, refused at once when it is a folder or lies below a file."""
    if not isinstance(checkpoint, (str, os.PathLike)):
        raise TypeError(f"checkpoint must be a file path (str or pathlib.Path), got {type(checkpoint).__name__}")
    path = Path(checkpoint)
    if path.is_dir():
        raise ValueError(f"the checkpoint path {path} is a folder: pass a file path, e.g. {path / 'run.pt'}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"cannot write the checkpoint {path}: {parent} is a file, not a folder. Pass a "
                                 "checkpoint path inside a folder")
            break
    return path


def _check_writable(path: Path) -> None:
    """Create and delete a probe file in the checkpoint's folder (or, if that does not exist yet, in its
    nearest existing parent, where ``fit`` will create it): ``os.access`` is not trusted (it ignores
    read-only mounts and ACLs)."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    probe = folder / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.probe"
    try:
        with open(probe, "xb"):
            pass
        probe.unlink()
    except OSError as err:
        where = f"the folder {folder}" + ("" if folder == path.parent else f" (where {path.parent} would be made)")
        raise ValueError(f"cannot write the checkpoint {path}: {where} is not writable ({err.strerror or err}). "
                         "Pass a checkpoint path in a writable folder, or checkpoint=None; nothing was trained") \
            from err


def _check_checkpointable(opt: torch.optim.Optimizer, sched: Any, path: Path) -> None:
    """The optimizer and scheduler states must survive ``torch.load(weights_only=True)``: tried in memory
    before the first epoch rather than found after it."""
    buffer = io.BytesIO()
    state = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict() if sched is not None else None}
    try:
        torch.save(state, buffer)
        buffer.seek(0)
        torch.load(buffer, map_location="cpu", weights_only=True)
    except Exception as err:
        raise TypeError(f"cannot checkpoint this run to {path}: the state of the optimizer "
                        f"({type(opt).__name__}) or scheduler ({type(sched).__name__}) holds objects other than "
                        "tensors, numbers, strings and containers, which a safe checkpoint cannot store. Use another "
                        "optimizer/scheduler, or checkpoint=None") from err


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def _settings_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    keys = sorted(set(old) | set(new))
    diffs = [f"{k}: {_canonical(old.get(k))} in the checkpoint, {_canonical(new.get(k))} now"
             for k in keys if _canonical(old.get(k)) != _canonical(new.get(k))]
    return "; ".join(diffs)


def _term_value(term: Callable, ctx: StepContext, name: str, device: torch.device) -> torch.Tensor:
    value = term(ctx)
    if not isinstance(value, torch.Tensor):
        value = torch.as_tensor(float(value), device=device)
    if value.numel() != 1:
        raise ValueError(f"extra loss term {name!r} returned a tensor of shape {tuple(value.shape)}; "
                         "it must return a scalar (reduce it with .sum() or .mean())")
    return value.reshape(())


# ============================================================================================ fit: its parts
@dataclass
class _FitData:
    """The data of a :func:`fit` call, checked, in one of two layouts (``graph`` says which).

    Attributes:
        graph: ``True`` for a PyG graph (full batch), ``False`` for ``(x, y)`` splits (mini-batches).
        tensors: graphs: ``x``, ``edge_index``, ``y``, ``train_mask``, ``val_mask``, ``test_mask`` (the last two
            may be ``None``); splits: ``{"train": (x, y), "val": (x, y) or None, "test": (x, y) or None}``.
        n_train: the number of training examples (training nodes for graphs).
        y_train: their labels, as passed (not moved to the device), for the label check of the first epoch.
    """

    graph: bool
    tensors: Dict[str, Any]
    n_train: int
    y_train: torch.Tensor

    @classmethod
    def read(cls, data: Any, augment: Optional[Callable]) -> "_FitData":
        """Check ``data`` (any of the three forms of the module docstring) and bring it to one layout."""
        if not is_graph(data):
            splits = _tensor_splits(data)
            return cls(False, splits, len(splits["train"][0]), splits["train"][1])
        if augment is not None:
            raise ValueError("augment is not supported for graph data (full-batch node classification)")
        tensors = _graph_tensors(data)
        return cls(True, tensors, int(tensors["train_mask"].sum()), tensors["y"][tensors["train_mask"]])

    def conform(self, model: nn.Module, class_indices: bool) -> "_FitData":
        """A copy with inputs in the model's floating dtype and labels as ``fit`` uses them (see
        :func:`_conform_inputs`, :func:`_conform_labels`); tensors that need no change are kept as they are.
        For a graph, labels are checked on the nodes of the three masks only (the others may be unlabelled)."""
        dtype = _model_float_dtype(model)
        if not self.graph:
            splits = {split: (None if pair is None else
                              (_conform_inputs(pair[0], f"{split} inputs", dtype),
                               _conform_labels(pair[1], _SPLIT_NAMES[split], class_indices)))
                      for split, pair in self.tensors.items()}
            return _FitData(False, splits, self.n_train, splits["train"][1])
        t = dict(self.tensors)
        t["x"] = _conform_inputs(t["x"], "node features", dtype)
        y = _widen_labels(t["y"])
        if y.is_floating_point():
            labelled = torch.zeros(len(y), dtype=torch.bool, device=y.device)
            for split in _SPLITS:
                if t[f"{split}_mask"] is not None:
                    labelled |= t[f"{split}_mask"].to(y.device)
            used = _conform_labels(y[labelled], "node", class_indices)
            if not used.is_floating_point():  # whole numbers: class indices; unlabelled nodes get 0 (never read)
                y = torch.zeros(y.shape, dtype=torch.long, device=y.device).index_put_((labelled,), used)
        else:
            y = _conform_labels(y, "node", class_indices)
        t["y"] = y
        return _FitData(True, t, self.n_train, y[t["train_mask"]])

    def to(self, device: torch.device) -> "_FitData":
        """A copy with every tensor on ``device`` (``y_train`` stays where it is)."""
        if self.graph:
            moved = {k: (v.to(device) if v is not None else None) for k, v in self.tensors.items()}
        else:
            moved = {split: (tuple(t.to(device) for t in pair) if pair is not None else None)
                     for split, pair in self.tensors.items()}
        return _FitData(self.graph, moved, self.n_train, self.y_train)

    def batches(self, gen: torch.Generator, batch_size: int, device: torch.device) -> Iterable[Tuple[Any, ...]]:
        """One epoch's training batches ``(inputs, targets, mask)``: the whole graph once (``inputs`` is
        ``(x, edge_index)``, ``mask`` the training mask), or the training split shuffled by ``gen`` and cut
        into ``batch_size`` pieces (``mask`` is ``None``). The shuffle is drawn now, before any batch is used."""
        if self.graph:
            t = self.tensors
            return [((t["x"], t["edge_index"]), t["y"], t["train_mask"])]
        x_train, y_train = self.tensors["train"]
        order = torch.randperm(self.n_train, generator=gen).to(device)
        return ((x_train[idx], y_train[idx], None) for idx in order.split(int(batch_size)))


def _has_lazy_weights(model: nn.Module) -> bool:
    return any(isinstance(m, LazyModuleMixin) and m.has_uninitialized_params() for m in model.modules())


def _checked_forward(model: nn.Module, inputs: Tuple[torch.Tensor, ...], x: torch.Tensor, what: str) -> Any:
    """``model(*inputs)``; a failure on integer inputs of a float model or on 1-D inputs becomes a
    ``TypeError``/``ValueError`` saying what to do, any other error is re-raised with a note on what it was fed."""
    try:
        return model(*inputs)
    except Exception as err:
        sample = inputs[0]
        dtype = _model_float_dtype(model)
        embeds = any(isinstance(m, (nn.Embedding, nn.EmbeddingBag)) for m in model.modules())
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if not x.is_floating_point() and not x.is_complex() and dtype is not None and not embeds:
            raise TypeError(f"the {what} are {x.dtype} but the model's weights are {dtype}, and the model failed on "
                            f"them ({first}). Convert the inputs to floating point before training: x.float(), "
                            "and x.float() / 255 for 8-bit images") from err
        if x.dim() == 1:
            raise ValueError(f"the {what} are 1-D, shape {tuple(x.shape)}: one number per example, and the model "
                             f"failed on them ({first}). fit takes one row per example: pass x.reshape(-1, 1) if "
                             "each example is a single feature") from err
        err.add_note(f"(neuronlab.fit ran the model on {len(sample)} of the {what}, shape {tuple(sample.shape)}, "
                     f"dtype {sample.dtype}, to check the data before training. If the data are right, check the "
                     "model's input size, e.g. in_features or in_channels.)")
        raise


def _check_outputs(out: Any, n: int, y: torch.Tensor, x: torch.Tensor, what: str, class_indices: bool) -> None:
    """The output of the model on ``n`` examples of a split against all the labels ``y`` of that split: logits
    ``(n, classes)`` for a class-index loss (``(n, classes, k)`` for integer labels ``(N, k)``, one class per
    position; other integer ``(N, k)`` labels are one-hot), and every label in ``0 .. classes - 1`` when they
    are class labels."""
    if class_indices and y.dim() <= 2:
        classes = f"{y.shape[1]}" if y.dim() == 2 else "classes"
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"the model returned a {type(out).__name__}, not a tensor of logits: with the "
                            "cross-entropy loss it must return logits (or pass a loss_fn that reads its output)")
        if y.dim() == 2 and not y.is_floating_point():
            if out.dim() == 3 and out.shape[0] == n and out.shape[2] == y.shape[1]:
                return
            raise _one_hot_error(y, what)
        if out.dim() != 2 or out.shape[0] != n or (y.dim() == 2 and out.shape[1] != y.shape[1]):
            hint = (" The inputs are 1-D, one number per example: if each example is a single feature, pass "
                    "x.reshape(-1, 1)." if x.dim() == 1 else "")
            raise ValueError(f"the model returned an output of shape {tuple(out.shape)} for {n} {what} example(s) "
                             f"of shape {tuple(x.shape[1:])}: with these labels it must return logits of shape "
                             f"({n}, {classes}).{hint}")
    if isinstance(out, torch.Tensor) and _is_classification(out, y):
        _check_labels(out.shape[1], y, what)


def _check_model_takes_data(model: nn.Module, fit_data: _FitData, class_indices: bool, device: torch.device
                            ) -> None:
    """Run ``model`` once on up to two examples of each split (the whole graph for graphs), in eval mode
    without gradients, and check its outputs against the labels (:func:`_check_outputs`). The model's mode
    is restored; ``fit`` calls this before seeding, so the random numbers of the run are unaffected.
    A model with uninitialized lazy layers is refused (their first pass would draw their weights here)."""
    if _has_lazy_weights(model):
        raise ValueError(f"{type(model).__name__} has uninitialized lazy layers (nn.LazyLinear, ...): run it once "
                         "on a batch, model(x[:2]), before fit, so that their weights are drawn where you seed them")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if fit_data.graph:
                t = fit_data.tensors
                out = _checked_forward(model, (t["x"].to(device), t["edge_index"].to(device)), t["x"],
                                       "node features")
                if not isinstance(out, torch.Tensor) or out.dim() == 0 or len(out) != len(t["x"]):
                    _check_outputs(out, len(t["x"]), t["y"], t["x"], "node", class_indices)
                    return  # not one row per node, and a loss of the caller's reads it
                for split in _SPLITS:
                    if t[f"{split}_mask"] is not None:
                        y = t["y"][t[f"{split}_mask"]]
                        _check_outputs(out[t[f"{split}_mask"].to(out.device)], len(y), y, t["x"], _SPLIT_NAMES[split],
                                       class_indices)
                return
            for split, pair in fit_data.tensors.items():
                if pair is not None:
                    x, y = pair
                    out = _checked_forward(model, (x[:2].to(device),), x, f"{split} inputs")
                    _check_outputs(out, len(x[:2]), y, x, _SPLIT_NAMES[split], class_indices)
    finally:
        model.train(was_training)


def _fit_settings(model: nn.Module, fit_data: _FitData, opt_description: Mapping[str, Any], *, batch_size: int,
                  seed: int, loss_fn: Callable, extra_losses: Mapping[str, Callable], metrics: Mapping[str, Callable],
                  augment: Optional[Callable], scheduler: Any, select_by: str, keep_best: bool, epochs: int
                  ) -> Dict[str, Any]:
    """The fingerprint of a :func:`fit` call stored in its checkpoint: resuming requires an equal one."""
    settings = {
        "model": type(model).__qualname__, "parameters": sum(p.numel() for p in model.parameters()),
        "data": {"kind": "graph" if fit_data.graph else "tensors", "n_train": fit_data.n_train},
        "optimizer": opt_description, "batch_size": None if fit_data.graph else int(batch_size), "seed": int(seed),
        "loss_fn": _name_of(loss_fn), "extra_losses": sorted(extra_losses), "metrics": sorted(metrics),
        "augment": _name_of(augment), "scheduler": _name_of(scheduler), "select_by": select_by,
        "keep_best": bool(keep_best),
    }
    if isinstance(scheduler, str):
        settings["epochs (shapes the cosine schedule)"] = int(epochs)
    return settings


def _unusable(path: Path, problem: str) -> ValueError:
    return ValueError(f"cannot resume from the checkpoint {path}: {problem}. Nothing was loaded. Delete the file "
                      "to start over (or pass resume=False to overwrite it, or another checkpoint path).")


def _check_state_dict(path: Path, stored: Any, model: nn.Module, what: str) -> None:
    """``stored`` must be a state dict of tensors with the keys and shapes of ``model.state_dict()``."""
    if not isinstance(stored, Mapping) or not all(isinstance(v, torch.Tensor) for v in stored.values()):
        raise _unusable(path, f"it is damaged: its {what} is not a state dict of tensors")
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(stored)), sorted(set(stored) - set(expected))
    if missing or unexpected:
        raise _unusable(path, f"its {what} belongs to another model (missing: {missing[:5]}, unexpected: "
                              f"{unexpected[:5]})")
    shapes = [f"{k}: {tuple(stored[k].shape)} in the file, {tuple(v.shape)} in the model"
              for k, v in expected.items() if stored[k].shape != v.shape]
    if shapes:
        raise _unusable(path, f"its {what} belongs to another model ({'; '.join(shapes[:3])})")


def _read_checkpoint(path: Path, settings: Mapping[str, Any], model: nn.Module) -> Dict[str, Any]:
    """Read the checkpoint at ``path`` with ``torch.load(weights_only=True)`` and check all of it (format,
    version, settings against ``settings``, the model state against ``model``, history, RNG states) without
    changing anything. Returns the checkpoint, its ``"rng"`` parsed (:func:`_parse_rng_state`).

    Raises:
        ValueError: the file needs unsafe unpickling (an old or foreign file), cannot be read (truncated,
            damaged, not a torch file), is not a ``fit`` checkpoint, or was written with other settings or
            for another model. The message names the file and says what to do.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        if not any("Unsupported global" in line or "Unsupported operand" in line for line in lines):
            why = next((line for line in lines if line.startswith("WeightsUnpickler error")), lines[0] if lines else "")
            raise _unusable(path, f"it is not a readable checkpoint (damaged, or not a torch file: {why})") from err
        found = re.search(r"GLOBAL (\S+)", str(err))
        needs = f" (it asks for {found.group(1)})" if found else ""
        raise _unusable(path, "it holds Python objects other than tensors, numbers, strings and containers, and "
                              "loading those could run code from the file, so it is read with "
                              "torch.load(weights_only=True) only. An old checkpoint (neuronlab before checkpoint "
                              f"version {_CHECKPOINT_VERSION}) or a file from elsewhere looks like this{needs}"
                        ) from None
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise _unusable(path, f"it cannot be read (truncated, damaged, or not a checkpoint: {type(err).__name__}"
                              f"{': ' + first if first else ''})") from err
    if not isinstance(state, dict) or state.get("format") != _CHECKPOINT_FORMAT:
        keys = f" with keys {sorted(map(str, state))[:6]}" if isinstance(state, dict) else ""
        raise _unusable(path, f"it is not a checkpoint written by fit() (it holds a {type(state).__name__}{keys})")
    if state.get("version") != _CHECKPOINT_VERSION:
        raise _unusable(path, f"it is a fit() checkpoint of version {state.get('version')!r}; this neuronlab reads "
                              f"version {_CHECKPOINT_VERSION}")
    missing = [k for k in _CHECKPOINT_KEYS if k not in state]
    if missing or not isinstance(state["settings"], Mapping):
        raise _unusable(path, f"it is damaged (it lacks {missing or ['settings']})")
    if _canonical(state["settings"]) != _canonical(settings):
        raise ValueError(
            f"the checkpoint {path} was written by a fit() call with other settings "
            f"({_settings_diff(state['settings'], settings)}). Delete the file, pass another checkpoint "
            "path, or pass resume=False to start afresh.")
    _check_state_dict(path, state["model"], model, "model state")
    if state["best_state"] is not None:
        _check_state_dict(path, state["best_state"], model, "best state")
    rows, epoch = state["history"], state["epoch"]
    if (type(epoch) is not int or epoch < 1 or not isinstance(rows, list) or not rows
            or not all(isinstance(r, dict) and "epoch" in r for r in rows) or rows[-1]["epoch"] != epoch
            or not isinstance(state["stopped"], bool) or not isinstance(state["optimizer"], Mapping)):
        raise _unusable(path, "it is damaged (its epoch, history, stop flag or optimizer state is malformed)")
    try:
        state["rng"] = _parse_rng_state(state["rng"])
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise _unusable(path, f"it is damaged (its random-number-generator states: {err})") from err
    return state


def _apply_checkpoint(path: Path, state: Mapping[str, Any], model: nn.Module, opt: torch.optim.Optimizer,
                      sched: Any, select_by: str) -> Tuple[History, int, bool]:
    """Load a checkpoint read by :func:`_read_checkpoint` into the optimizer, scheduler and model, and restore
    the RNG states.

    Returns:
        ``(history, start_epoch, stopped)``: the stored history (with its best state), the first epoch still
        to train, and whether a callback stopped the run.
    """
    try:
        opt.load_state_dict(state["optimizer"])
        if sched is not None and state["scheduler"] is not None:
            sched.load_state_dict(state["scheduler"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise _unusable(path, f"its optimizer or scheduler state does not fit this run ({err})") from err
    model.load_state_dict(state["model"])
    history = History(state["history"], select_by=select_by)
    history.best_state = state["best_state"]
    _set_rng_state(state["rng"])
    return history, int(state["epoch"]) + 1, bool(state["stopped"])


def _save_checkpoint(path: Path, *, model: nn.Module, opt: torch.optim.Optimizer, sched: Any, history: History,
                     epoch: int, stopped: bool, settings: Mapping[str, Any]) -> None:
    """Write everything :func:`_apply_checkpoint` needs after ``epoch`` (atomically, see :func:`_save_atomic`),
    the RNG states included: resuming continues with the random numbers an uninterrupted run would draw.
    Only tensors, numbers, strings and plain containers are written (see :func:`_read_checkpoint`)."""
    _save_atomic({"format": _CHECKPOINT_FORMAT, "version": _CHECKPOINT_VERSION, "model": model.state_dict(),
                  "optimizer": opt.state_dict(), "scheduler": sched.state_dict() if sched is not None else None,
                  "history": _plain_rows(history.rows), "epoch": int(epoch), "stopped": bool(stopped),
                  "rng": _rng_state(), "best_state": history.best_state,
                  "settings": json.loads(_canonical(settings))}, path)


def _optimizer_step(opt: torch.optim.Optimizer, ctx: StepContext, data_loss: torch.Tensor,
                    extra_losses: Mapping[str, Callable], device: torch.device) -> Dict[str, torch.Tensor]:
    """One step on ``data_loss + sum of the extra terms`` (each called on ``ctx``); returns the terms' values.

    Raises ``FloatingPointError`` before the step when the total is not finite (the weights stay as they were).
    """
    total = data_loss
    term_values = {}
    for name, term in extra_losses.items():
        term_values[name] = _term_value(term, ctx, name, device)
        total = total + term_values[name]
    if not bool(torch.isfinite(total.detach()).all()):
        _raise_non_finite(total, data_loss, term_values, ctx.epoch, ctx.step)
    opt.zero_grad(set_to_none=True)
    total.backward()
    opt.step()
    return term_values


def _train_epoch(model: nn.Module, opt: torch.optim.Optimizer, batches: Iterable[Tuple[Any, ...]],
                 gen: torch.Generator, epoch: int, *, graph: bool, loss_fn: Callable,
                 extra_losses: Mapping[str, Callable], augment: Optional[Callable], device: torch.device,
                 check_labels: Optional[torch.Tensor] = None) -> Tuple[Dict[str, float], Dict[str, float]]:
    """The batch loop of one epoch: one optimizer step per batch of ``batches`` (see :meth:`_FitData.batches`).

    The model must already be in train mode. ``augment(inputs, gen)`` is applied to mini-batches (not graphs).
    ``check_labels``: the training labels to check against the number of outputs at the first step (``fit``
    passes them in its first epoch only).

    Returns:
        ``({"train_loss": ..., "train_acc": ...}, {term name: mean over the steps})``: the mean data loss over
        the batches and the accuracy on them as they were seen (NaN when the targets are not class labels).
    """
    loss_sum = torch.zeros((), device=device)
    term_sums = {name: torch.zeros((), device=device) for name in extra_losses}
    correct = torch.zeros((), device=device, dtype=torch.long)
    counted, steps, classification = 0, 0, True
    for step, (inputs, targets, mask) in enumerate(batches):
        if graph:
            logits = model(*inputs)
        else:
            if augment is not None:
                inputs = augment(inputs, gen)
            logits = model(inputs)
        fit_logits = logits[mask] if mask is not None else logits
        fit_targets = targets[mask] if mask is not None else targets
        if step == 0:
            classification = _is_classification(fit_logits, fit_targets)
            if classification and check_labels is not None:
                _check_labels(fit_logits.shape[1], check_labels, "training")
        data_loss = loss_fn(fit_logits, fit_targets)
        ctx = StepContext(model, inputs, targets, logits, mask, epoch, step)
        term_values = _optimizer_step(opt, ctx, data_loss, extra_losses, device)
        loss_sum += data_loss.detach()
        for name, value in term_values.items():
            term_sums[name] += value.detach()
        if classification:
            correct += (fit_logits.detach().argmax(1) == fit_targets).sum()
            counted += len(fit_targets)
        steps += 1
    train = {"train_loss": float(loss_sum) / steps,
             "train_acc": float(correct) / counted if classification and counted else float("nan")}
    return train, {name: float(total) / steps for name, total in term_sums.items()}


def _evaluate_held_out(model: nn.Module, fit_data: _FitData, loss_fn: Callable, eval_batch_size: int
                       ) -> Dict[str, float]:
    """The end-of-epoch evaluation: ``{"val_loss", "val_acc", "test_loss", "test_acc"}`` in eval mode without
    gradients over each whole split (NaN for an absent split); the model's mode is restored.

    Splits are evaluated with :func:`evaluate` in chunks of ``eval_batch_size``; a graph with one eval-mode
    forward pass over all nodes, then restricted to each mask (as :func:`evaluate_graph` does).
    """
    nan = float("nan")
    row: Dict[str, float] = {}
    if fit_data.graph:
        t = fit_data.tensors
        logits = _graph_logits(model, t["x"], t["edge_index"])
        for split in ("val", "test"):
            mask = t[f"{split}_mask"]
            loss, acc = _loss_acc(logits[mask], t["y"][mask], loss_fn, split) if mask is not None else (nan, nan)
            row[f"{split}_loss"], row[f"{split}_acc"] = loss, acc
    else:
        for split in ("val", "test"):
            pair = fit_data.tensors[split]
            loss, acc = (evaluate(model, pair[0], pair[1], batch_size=eval_batch_size, loss_fn=loss_fn)
                         if pair is not None else (nan, nan))
            row[f"{split}_loss"], row[f"{split}_acc"] = loss, acc
    return row


def _metric_values(model: nn.Module, metrics: Mapping[str, Callable], data: Any) -> Dict[str, float]:
    """``{name: fn(model, data)}`` with the model in eval mode (gradients enabled), back in train mode after."""
    if not metrics:
        return {}
    model.eval()
    values = {name: float(fn(model, data)) for name, fn in metrics.items()}
    model.train()
    return values


def _progress_postfix(row: Mapping[str, Any]) -> Dict[str, str]:
    """The latest losses and accuracies shown next to the progress bar."""
    postfix = {"loss": f"{row['train_loss']:.3f}", "train_acc": f"{row['train_acc']:.3f}"}
    if not math.isnan(row["val_acc"]):
        postfix["val_acc"] = f"{row['val_acc']:.3f}"
    return postfix


# ============================================================================================ fit
def fit(model: nn.Module, data: Any, *, epochs: int, lr: float = 0.01,
        optimizer: Union[str, Callable, torch.optim.Optimizer] = "sgd", momentum: float = 0.0,
        weight_decay: float = 0.0, batch_size: int = 100, seed: int = 0, loss_fn: Optional[Callable] = None,
        extra_losses: Optional[Mapping[str, Callable[[StepContext], torch.Tensor]]] = None,
        metrics: Optional[Mapping[str, Callable[[nn.Module, Any], float]]] = None, scheduler: Any = None,
        augment: Optional[Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = None,
        device: Optional[Union[str, torch.device]] = None, checkpoint: Optional[Union[str, Path]] = None,
        resume: bool = True, progress: bool = True, select_by: str = "val_acc", eval_batch_size: int = 2000,
        keep_best: bool = False, callbacks: Optional[Sequence[Callable[[History, nn.Module], Any]]] = None
        ) -> History:
    """Train ``model`` on ``data`` for ``epochs`` epochs and return its :class:`History`.

    Each epoch: shuffle (generator seeded from ``(seed, epoch)``), one optimizer step per mini-batch on
    ``loss_fn + sum of extra terms``, then evaluate the validation and test splits (eval mode, whole split),
    compute ``metrics``, call ``callbacks``, step the scheduler and save the checkpoint.

    Args:
        model: a classifier ``model(x) -> logits`` (graphs: ``model(x, edge_index) -> logits``), moved to
            ``device``. On return it holds the final weights (see ``keep_best``) in the mode it had before.
        data: one of the three forms in the module docstring (an ``x_train``... object, a dict of ``(x, y)``
            pairs, a PyG ``Data`` with masks). Checked before training and converted where the conversion loses
            nothing the model could use (inputs to the model's float dtype, labels to int64: see "What fit
            checks" in the module docstring). Tensors are copied to ``device`` once; ``data`` is not modified.
        epochs: total number of epochs, at least 1. A resumed run continues up to this number.
        lr, momentum, weight_decay: for the named optimizers (``momentum`` applies to ``"sgd"`` only; the three
            are ignored when ``optimizer`` is a callable or an instance).
        optimizer: ``"sgd"``, ``"adam"``, ``"adamw"``, a callable ``params -> Optimizer``, or an Optimizer
            instance already built on ``model.parameters()``.
        batch_size: mini-batch size (the last batch may be smaller); ignored for graphs (full batch).
        seed: seeds Python, NumPy and PyTorch at the start (dropout, etc.) and each epoch's shuffling.
        loss_fn: the data loss ``loss_fn(logits, targets) -> scalar`` (default: mean cross-entropy).
        extra_losses: ``{name: term}``; ``term(ctx: StepContext) -> scalar tensor`` is added to the loss at
            every step and its mean over the epoch's steps is logged as ``loss_<name>``. ``fit`` only calls
            the term: it never calls ``train()``, ``eval()`` or ``reset()`` on it, so a stateful term manages
            its own state (e.g. from ``ctx.epoch``/``ctx.step``, or through ``callbacks``).
        metrics: ``{name: fn(model, data) -> float}`` computed at the end of each epoch (model in eval mode,
            gradients enabled, ``data`` exactly as passed to ``fit``) and logged as column ``name``.
        scheduler: ``None``, ``"cosine"`` (``CosineAnnealingLR`` with ``T_max=epochs``) or a callable
            ``optimizer -> scheduler``; stepped once per epoch.
        augment: ``fn(x_batch, generator) -> x_batch``, applied to training batches only (not for graphs).
            ``generator`` is the epoch's CPU ``torch.Generator``: draw random numbers on the CPU with it
            (then move them to ``x_batch.device``) to keep augmentation reproducible and resumable.
        device: ``None`` picks CUDA when available (:func:`neuronlab.config.get_device`).
        checkpoint: a file path. After *every* epoch the model, optimizer and scheduler states, the history,
            the RNG states, the best state (if kept) and a fingerprint of the settings are written there
            atomically and durably (a temporary file of a name unique to the call, ``fsync``, rename, then an
            ``fsync`` of the folder on POSIX). Only tensors, numbers, strings and plain containers are
            written; a callback's history column of another type is refused when it is written. A path that
            is a folder, or lies below a file, or a folder that is not writable, is refused before the first
            epoch.
        resume: when ``checkpoint`` exists, continue after its last epoch (its settings must match this
            call's, ``epochs`` aside, so a finished run can be extended; with ``scheduler="cosine"`` the
            number of epochs shapes the schedule and must match too). The file is read with
            ``torch.load(weights_only=True)`` (it cannot run code) and checked whole before anything is
            loaded: an old (version 1), truncated or foreign file, or one of another model, is refused with a
            message naming it. If all epochs are done the stored history is returned at once, with the
            model holding the stored weights (the folder may then be read-only). ``resume=False`` starts
            afresh and overwrites the file.
        progress: a ``tqdm`` bar over epochs with the latest losses and accuracies; nothing else is printed.
        select_by: ``"val_acc"`` or ``"val_loss"``, defines :attr:`History.best_epoch`.
        eval_batch_size: chunk size of the evaluation passes.
        keep_best: keep a CPU copy of the weights at the best epoch in ``history.best_state``; restore them
            with ``history.restore_best(model)``.
        callbacks: callables ``cb(history, model)`` called after each epoch's row is in ``history.rows[-1]``
            (a callback may add entries to that dict: they become columns and are checkpointed). If a
            callback returns ``True`` training stops after this epoch; the checkpoint remembers the stop, and
            resuming it returns the history without training.

    Returns:
        The :class:`History` (``history.table`` has one row per epoch).

    Raises:
        ValueError: before the first epoch, with nothing changed but the model's device: ``epochs < 1``,
            mismatched input/label lengths, NaN or infinite inputs or labels, inputs beyond the range of the
            model's dtype, fractional or one-hot class labels, labels outside ``0 .. outputs - 1`` in any
            split, a model output that is not ``(batch, classes)`` logits, 1-D inputs the model cannot take,
            an unknown optimizer or scheduler name, a checkpoint path that is a folder or not writable, a
            checkpoint that cannot be read safely, is damaged, or was written with other settings or for
            another model.
        TypeError: ``data`` of none of the accepted forms, integer inputs the model cannot take, an
            optimizer or scheduler whose state a safe checkpoint cannot hold; a history column that a
            checkpoint cannot hold (when it is written).
        FloatingPointError: the loss became NaN or infinite; the message names the epoch, the step and
            which part (data loss or extra term) went non-finite.
    """
    if not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if select_by not in ("val_acc", "val_loss"):
        raise ValueError(f"select_by must be 'val_acc' or 'val_loss', got {select_by!r}")
    fit_data = _FitData.read(data, augment)
    ckpt_path = _checkpoint_path(checkpoint) if checkpoint is not None else None
    class_indices = _takes_class_indices(loss_fn)
    fit_data = fit_data.conform(model, class_indices)
    device = get_device(device)
    loss_fn = loss_fn if loss_fn is not None else F.cross_entropy
    extra_losses = dict(extra_losses or {})
    metrics = dict(metrics or {})
    callbacks = list(callbacks or [])
    was_training = model.training

    model.to(device)
    _check_model_takes_data(model, fit_data, class_indices, device)  # before seeding: it draws no run's numbers
    seed_everything(seed)
    opt = make_optimizer(model, optimizer, lr, momentum, weight_decay)
    opt_description = _optimizer_description(opt, optimizer, lr, momentum, weight_decay)
    sched = _make_scheduler(opt, scheduler, epochs)
    settings = _fit_settings(model, fit_data, opt_description, batch_size=batch_size, seed=seed, loss_fn=loss_fn,
                             extra_losses=extra_losses, metrics=metrics, augment=augment, scheduler=scheduler,
                             select_by=select_by, keep_best=keep_best, epochs=epochs)

    history = History(select_by=select_by)
    start_epoch, stopped = 1, False
    stored = (_read_checkpoint(ckpt_path, settings, model)
              if ckpt_path is not None and resume and ckpt_path.exists() else None)
    finished = stored is not None and (stored["epoch"] >= epochs or stored["stopped"])
    if ckpt_path is not None and not finished:  # found now, not after the first epoch
        _check_writable(ckpt_path)
        _check_checkpointable(opt, sched, ckpt_path)
    if stored is not None:
        history, start_epoch, stopped = _apply_checkpoint(ckpt_path, stored, model, opt, sched, select_by)
        if finished:
            model.train(was_training)
            return history

    on_dev = fit_data.to(device)  # tensors on the device, once
    from tqdm.auto import tqdm

    bar = tqdm(total=epochs, initial=start_epoch - 1, disable=not progress, desc="epochs", unit="epoch",
               leave=False)
    try:
        for epoch in range(start_epoch, epochs + 1):
            t0 = time.perf_counter()
            model.train()
            gen = _epoch_generator(seed, epoch)
            train, term_means = _train_epoch(
                model, opt, on_dev.batches(gen, batch_size, device), gen, epoch, graph=on_dev.graph,
                loss_fn=loss_fn, extra_losses=extra_losses, augment=augment, device=device,
                check_labels=on_dev.y_train if epoch == start_epoch else None)
            row: Dict[str, Any] = {"epoch": epoch, **train}
            row.update(_evaluate_held_out(model, on_dev, loss_fn, eval_batch_size))
            row["lr"] = float(opt.param_groups[0]["lr"])
            row.update({f"loss_{name}": mean for name, mean in term_means.items()})
            row.update(_metric_values(model, metrics, data))
            row["time_s"] = time.perf_counter() - t0
            history.rows.append(row)
            stopped = any([callback(history, model) is True for callback in callbacks])  # call them all
            if sched is not None:
                sched.step()
            if keep_best and history.best_epoch == epoch:
                history.best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            if ckpt_path is not None:
                _save_checkpoint(ckpt_path, model=model, opt=opt, sched=sched, history=history, epoch=epoch,
                                 stopped=stopped, settings=settings)
            bar.update(1)
            if progress:
                bar.set_postfix(_progress_postfix(row))
            if stopped:
                break
    finally:
        bar.close()
        model.train(was_training)
    return history


def _raise_non_finite(total: torch.Tensor, data_loss: torch.Tensor, term_values: Mapping[str, torch.Tensor],
                      epoch: int, step: int) -> None:
    culprits = []
    if not bool(torch.isfinite(data_loss.detach()).all()):
        culprits.append(f"the data loss ({float(data_loss.detach()):g})")
    bad_terms = [name for name, v in term_values.items() if not bool(torch.isfinite(v.detach()))]
    culprits += [f"extra loss term {name!r} ({float(term_values[name].detach()):g})" for name in bad_terms]
    what = " and ".join(culprits) if culprits else "the sum of the (finite) terms overflowed"
    advice = "Try a smaller learning rate"
    if bad_terms:
        advice += f" or a smaller weight (lambda) for {', '.join(map(repr, bad_terms))}"
    raise FloatingPointError(f"the training loss became {float(total.detach()):g} at epoch {epoch}, step {step}: "
                             f"{what} went non-finite. {advice}.")
