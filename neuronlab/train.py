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
"""

from __future__ import annotations

import json
import math
import os
import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .config import get_device, seed_everything
from .probe import is_graph

__all__ = ["StepContext", "History", "fit", "evaluate", "evaluate_graph", "predict", "make_optimizer", "OPTIMIZERS",
           "SCHEDULERS"]

#: Optimizer names :func:`fit` understands (or pass a callable ``params -> optimizer`` / an instance).
OPTIMIZERS = ("sgd", "adam", "adamw")
#: Scheduler names :func:`fit` understands (or pass a callable ``optimizer -> scheduler``).
SCHEDULERS = ("cosine",)
_SPLITS = ("train", "val", "test")
_CHECKPOINT_VERSION = 1


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
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    raise TypeError(f"{what} must be a torch.Tensor or a numpy array, got {type(value).__name__}. {_DATA_FORMS}")


def _check_inputs(x: torch.Tensor, what: str) -> None:
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"the {what} contain NaN or infinite values: clean or impute them before training")


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
    returned on that device.
    """
    x = _as_tensor(x, "x")
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

    Returns:
        ``(loss, acc)``: ``loss_fn(logits, y)`` over the whole set (mean cross-entropy by default) and the
        fraction of correct ``argmax`` predictions (NaN when ``y`` are not class labels).

    Raises:
        ValueError: empty or mismatched ``x``/``y``, or labels outside ``0 .. outputs - 1``.
    """
    x, y = _as_tensor(x, "x"), _as_tensor(y, "y")
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
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _save_atomic(obj: Mapping[str, Any], path: Path) -> None:
    """``torch.save`` to a temporary file next to ``path``, then rename: a killed process never leaves a
    half-written checkpoint (the previous one stays)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(dict(obj), tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


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


def _load_checkpoint(path: Path, settings: Mapping[str, Any], model: nn.Module, opt: torch.optim.Optimizer,
                     sched: Any, select_by: str) -> Tuple[History, int, bool]:
    """Resume from the checkpoint at ``path``: check its settings against ``settings``, load the model,
    optimizer and scheduler states and the RNG states.

    Returns:
        ``(history, start_epoch, stopped)``: the stored history (with its best state), the first epoch still
        to train, and whether a callback stopped the run.
    """
    state = torch.load(path, map_location="cpu", weights_only=False)
    if _canonical(state["settings"]) != _canonical(settings):
        raise ValueError(
            f"the checkpoint {path} was written by a fit() call with other settings "
            f"({_settings_diff(state['settings'], settings)}). Delete the file, pass another checkpoint "
            "path, or pass resume=False to start afresh.")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    if sched is not None and state.get("scheduler") is not None:
        sched.load_state_dict(state["scheduler"])
    history = History(state["history"], select_by=select_by)
    history.best_state = state.get("best_state")
    _set_rng_state(state["rng"])
    return history, int(state["epoch"]) + 1, bool(state.get("stopped", False))


def _save_checkpoint(path: Path, *, model: nn.Module, opt: torch.optim.Optimizer, sched: Any, history: History,
                     epoch: int, stopped: bool, settings: Mapping[str, Any]) -> None:
    """Write everything :func:`_load_checkpoint` needs after ``epoch`` (atomically, see :func:`_save_atomic`),
    the RNG states included: resuming continues with the random numbers an uninterrupted run would draw."""
    _save_atomic({"version": _CHECKPOINT_VERSION, "model": model.state_dict(), "optimizer": opt.state_dict(),
                  "scheduler": sched.state_dict() if sched is not None else None,
                  "history": history.rows, "epoch": epoch, "stopped": stopped, "rng": _rng_state(),
                  "best_state": history.best_state, "settings": settings}, path)


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
            pairs, a PyG ``Data`` with masks). Tensors are copied to ``device`` once; ``data`` is not modified.
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
            atomically (temporary file, then rename).
        resume: when ``checkpoint`` exists, continue after its last epoch (its settings must match this
            call's, ``epochs`` aside, so a finished run can be extended; with ``scheduler="cosine"`` the
            number of epochs shapes the schedule and must match too). If all epochs are done the stored
            history is returned at once, with the model holding the stored weights. ``resume=False``
            starts afresh and overwrites the file.
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
        ValueError: ``epochs < 1``, mismatched input/label lengths, NaN or infinite inputs, labels outside
            ``0 .. outputs - 1``, an unknown optimizer or scheduler name, a checkpoint written with other
            settings.
        TypeError: ``data`` of none of the accepted forms.
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
    device = get_device(device)
    loss_fn = loss_fn if loss_fn is not None else F.cross_entropy
    extra_losses = dict(extra_losses or {})
    metrics = dict(metrics or {})
    callbacks = list(callbacks or [])
    was_training = model.training

    seed_everything(seed)
    model.to(device)
    opt = make_optimizer(model, optimizer, lr, momentum, weight_decay)
    opt_description = _optimizer_description(opt, optimizer, lr, momentum, weight_decay)
    sched = _make_scheduler(opt, scheduler, epochs)
    settings = _fit_settings(model, fit_data, opt_description, batch_size=batch_size, seed=seed, loss_fn=loss_fn,
                             extra_losses=extra_losses, metrics=metrics, augment=augment, scheduler=scheduler,
                             select_by=select_by, keep_best=keep_best, epochs=epochs)

    history = History(select_by=select_by)
    start_epoch, stopped = 1, False
    ckpt_path = Path(checkpoint) if checkpoint is not None else None
    if ckpt_path is not None and resume and ckpt_path.exists():
        history, start_epoch, stopped = _load_checkpoint(ckpt_path, settings, model, opt, sched, select_by)
        if start_epoch > epochs or stopped:
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
