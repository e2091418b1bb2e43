"""A small training loop: seeded, resumable, with a per-epoch history table. Not a framework.

.. code-block:: python

    history = fit(model, load_dataset("mnist-5k"), epochs=20, lr=0.01, seed=0)
    history.table                 # one row per epoch: losses, accuracies, extra terms, time
    history.test_error_at_best    # test error (%) at the epoch with the best validation accuracy

Extra loss terms (NSR in Chapter 3) plug in through ``extra_losses``: each is a callable receiving a
:class:`StepContext` and returning a scalar added to the cross-entropy. Graphs (a PyG ``Data`` with
masks) are trained full-batch.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .config import get_device

__all__ = ["StepContext", "History", "fit", "evaluate", "evaluate_graph", "predict"]

OPTIMIZERS = ("sgd", "adam", "adamw")


@dataclass
class StepContext:
    """What an extra loss term sees at each training step.

    ``targets`` are the labels of the batch (for graphs: of all nodes, with ``mask`` the training mask;
    ``mask`` is ``None`` for ordinary mini-batches).
    """

    model: nn.Module
    inputs: Any
    targets: torch.Tensor
    logits: torch.Tensor
    mask: Optional[torch.Tensor]
    epoch: int
    step: int


class History:
    """Per-epoch record of a training run, as a pandas table (``history.table``).

    Columns: ``epoch`` (1-based), ``train_loss`` (mean cross-entropy of the epoch's batches),
    ``train_acc`` (accuracy on the training batches as they were seen during the epoch, in train mode:
    free to compute, slightly behind an end-of-epoch evaluation), ``val_loss``, ``val_acc``, ``test_loss``,
    ``test_acc`` (eval mode, whole split), ``lr``, ``time_s``, one ``loss_<name>`` per extra term and one
    column per metric. Accuracies are fractions; errors reported by the properties are percentages.
    """

    def __init__(self, rows: Optional[List[Dict[str, float]]] = None, select_by: str = "val_acc"):
        if select_by not in ("val_acc", "val_loss"):
            raise ValueError(f"select_by must be 'val_acc' or 'val_loss', got {select_by!r}")
        self.rows: List[Dict[str, float]] = list(rows or [])
        self.select_by = select_by
        self.best_state: Optional[Dict[str, torch.Tensor]] = None

    @property
    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        if not self.rows:
            return "History(empty)"
        cols = [c for c in ("epoch", "train_loss", "train_acc", "val_acc", "test_acc") if c in self.rows[0]]
        return f"History({len(self)} epochs)\n{self.table[cols].to_string(index=False, float_format='%.4f')}"

    def _has(self, col: str) -> bool:
        return bool(self.rows) and col in self.rows[0] and not all(
            r[col] is None or (isinstance(r[col], float) and math.isnan(r[col])) for r in self.rows)

    @property
    def best_epoch(self) -> int:
        """The epoch with the best validation accuracy, the earliest one on a tie, or with the lowest
        validation loss for ``select_by="val_loss"``. Without a validation split, the last epoch."""
        if not self.rows:
            raise ValueError("the history is empty: train for at least one epoch")
        table = self.table
        if not self._has(self.select_by):
            return int(table["epoch"].iloc[-1])
        values = table[self.select_by].to_numpy(dtype=float)
        index = int(np.nanargmax(values) if self.select_by == "val_acc" else np.nanargmin(values))
        return int(table["epoch"].iloc[index])

    @property
    def best(self) -> pd.Series:
        """The table's row at :attr:`best_epoch`."""
        table = self.table
        return table[table["epoch"] == self.best_epoch].iloc[0]

    @property
    def test_error_at_best(self) -> float:
        """Test error in percent at the best validation epoch (the NSR protocol)."""
        return 100.0 * (1.0 - float(self.best["test_acc"]))

    @property
    def min_test_error(self) -> float:
        """Lowest test error in percent over all epochs (the IBCI paper's metric)."""
        return 100.0 * (1.0 - float(self.table["test_acc"].max()))

    @property
    def epoch_of_min_test_error(self) -> int:
        """First epoch at which :attr:`min_test_error` is reached."""
        table = self.table
        return int(table["epoch"].iloc[int(table["test_acc"].to_numpy(dtype=float).argmax())])

    def restore_best(self, model: nn.Module) -> nn.Module:
        """Load the weights of the best epoch (needs ``fit(..., keep_best=True)``)."""
        if self.best_state is None:
            raise RuntimeError("no best state kept: call fit(..., keep_best=True)")
        model.load_state_dict(self.best_state)
        return model

    def to_csv(self, path: Union[str, Path]) -> None:
        self.table.to_csv(path, index=False)

    @classmethod
    def from_csv(cls, path: Union[str, Path], select_by: str = "val_acc") -> "History":
        return cls(pd.read_csv(path).to_dict("records"), select_by=select_by)

    def plot(self, axes=None, metrics: Tuple[str, ...] = ("loss", "acc")):
        """Train / validation / test curves against epochs, one panel per metric. Returns the figure."""
        import matplotlib.pyplot as plt

        if axes is None:
            fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.4), constrained_layout=True)
        axes = np.atleast_1d(axes)
        table = self.table
        for ax, metric in zip(axes, metrics):
            for split in ("train", "val", "test"):
                col = f"{split}_{metric}"
                if self._has(col):
                    ax.plot(table["epoch"], table[col], label=split)
            ax.set_xlabel("epoch")
            ax.set_ylabel({"loss": "cross-entropy", "acc": "accuracy"}.get(metric, metric))
            ax.legend()
        return axes[0].figure


# ----------------------------------------------------------------------------------------- data forms
def _as_splits(data) -> Tuple[str, Dict[str, Optional[Tuple[torch.Tensor, torch.Tensor]]]]:
    """Normalize the accepted data forms to ("tensors", {split: (x, y) or None}) or ("graph", ...)."""
    if hasattr(data, "edge_index") and hasattr(data, "train_mask"):
        return "graph", {}
    if isinstance(data, Mapping):
        if "train" not in data:
            raise TypeError("a dict of splits needs a 'train' key mapping to (x, y)")
        splits = {k: (tuple(data[k]) if data.get(k) is not None else None) for k in ("train", "val", "test")}
    elif all(hasattr(data, f"{a}_train") for a in ("x", "y")):
        splits = {}
        for split in ("train", "val", "test"):
            x, y = getattr(data, f"x_{split}", None), getattr(data, f"y_{split}", None)
            splits[split] = (x, y) if x is not None and y is not None else None
    else:
        raise TypeError(
            f"fit() cannot read data of type {type(data).__name__}. Pass an object with x_train, y_train "
            "(and optionally x_val, y_val, x_test, y_test) such as neuronlab.data.load_dataset(...), a dict "
            "{'train': (x, y), 'val': (x, y), 'test': (x, y)}, or a PyG Data with train/val/test masks.")
    for split, pair in splits.items():
        if pair is None:
            continue
        x, y = pair
        if len(x) != len(y):
            raise ValueError(f"the {split} split has {len(x)} inputs but {len(y)} labels")
        if x.is_floating_point() and not bool(torch.isfinite(x).all()):
            raise ValueError(f"the {split} inputs contain NaN or inf: clean or impute them before training")
    return "tensors", splits


def _check_labels(logits: torch.Tensor, y: torch.Tensor, what: str) -> None:
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= logits.shape[1]):
        raise ValueError(f"{what} labels range over [{int(y.min())}, {int(y.max())}] but the model has "
                         f"{logits.shape[1]} outputs: labels must be 0 .. {logits.shape[1] - 1}")


# ----------------------------------------------------------------------------------------- evaluation
def _restore_mode(model: nn.Module, was_training: bool) -> None:
    model.train(was_training)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    """Logits of ``model`` on ``x`` in eval mode, batched, without gradients (mode restored afterwards)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        return torch.cat([model(chunk.to(device)) for chunk in x.split(batch_size)])
    finally:
        _restore_mode(model, was_training)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 2000,
             loss_fn: Optional[Callable] = None) -> Tuple[float, float]:
    """Mean loss (cross-entropy by default) and accuracy (fraction) of ``model`` on ``(x, y)``."""
    logits = predict(model, x, batch_size)
    y = y.to(logits.device)
    _check_labels(logits, y, "evaluation")
    loss = (loss_fn or F.cross_entropy)(logits, y)
    return float(loss), float((logits.argmax(1) == y).float().mean())


@torch.no_grad()
def evaluate_graph(model: nn.Module, data, mask: torch.Tensor, *, loss_fn: Optional[Callable] = None
                   ) -> Tuple[float, float]:
    """Loss and accuracy of a node classifier ``model(x, edge_index)`` over the nodes in ``mask``."""
    was_training = model.training
    model.eval()
    try:
        logits = model(data.x, data.edge_index)
    finally:
        _restore_mode(model, was_training)
    loss = (loss_fn or F.cross_entropy)(logits[mask], data.y[mask])
    return float(loss), float((logits[mask].argmax(1) == data.y[mask]).float().mean())


# ----------------------------------------------------------------------------------------- fit
def _make_optimizer(model, optimizer, lr, momentum, weight_decay):
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    if callable(optimizer) and not isinstance(optimizer, str):
        return optimizer(model.parameters())
    name = str(optimizer).lower()
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    raise ValueError(f"Unknown optimizer {optimizer!r}; choose one of {OPTIMIZERS}, or pass an optimizer")


def _make_scheduler(optimizer, scheduler, epochs):
    if scheduler is None:
        return None
    if scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    if callable(scheduler):
        return scheduler(optimizer)
    raise ValueError(f"scheduler must be None, 'cosine' or a callable optimizer -> scheduler, got {scheduler!r}")


def _fingerprint(settings: Dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _rng_state() -> Dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def _save_atomic(obj: Dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def fit(model: nn.Module, data, *, epochs: int, lr: float = 0.01, optimizer: Union[str, Callable, torch.optim.Optimizer] = "sgd",
        momentum: float = 0.0, weight_decay: float = 0.0, batch_size: int = 100, seed: int = 0,
        loss_fn: Optional[Callable] = None, extra_losses: Optional[Mapping[str, Callable[[StepContext], torch.Tensor]]] = None,
        metrics: Optional[Mapping[str, Callable[[nn.Module, Any], float]]] = None, scheduler=None,
        augment: Optional[Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = None,
        device: Optional[Union[str, torch.device]] = None, checkpoint: Optional[Union[str, Path]] = None,
        resume: bool = True, progress: bool = True, select_by: str = "val_acc", eval_batch_size: int = 2000,
        keep_best: bool = False) -> History:
    """Train ``model`` on ``data`` for ``epochs`` epochs and return its :class:`History`.

    Args:
        data: an object with ``x_train, y_train`` (and optionally ``x_val, y_val, x_test, y_test``) such as
            :class:`neuronlab.data.DatasetSplits`; a dict ``{"train": (x, y), "val": ..., "test": ...}``; or
            a PyG ``Data`` with ``train_mask, val_mask, test_mask`` (full-batch, ``model(x, edge_index)``).
        epochs: total number of epochs (a resumed run continues up to this number).
        optimizer: ``"sgd"`` (with ``momentum``), ``"adam"``, ``"adamw"``, a callable ``params -> optimizer``
            or an optimizer instance.
        seed: seeds the initial RNG state and the shuffling; epoch ``e`` always sees the same batch order,
            whether or not the run was resumed.
        loss_fn: the data loss (default: mean cross-entropy).
        extra_losses: ``{name: term}``; each term gets a :class:`StepContext` and returns a scalar that is
            added to the loss; its epoch mean is logged as ``loss_<name>``.
        metrics: ``{name: fn(model, data) -> float}`` evaluated at the end of each epoch.
        scheduler: ``None``, ``"cosine"`` or a callable ``optimizer -> scheduler`` (stepped once per epoch).
        augment: ``fn(x_batch, generator) -> x_batch`` applied to training batches only.
        checkpoint: a file path; the full state is saved there atomically after every epoch.
        resume: continue from ``checkpoint`` when it exists (its settings must match, ``epochs`` aside).
        progress: show a ``tqdm`` progress bar over epochs.
        select_by: ``"val_acc"`` or ``"val_loss"``, for :attr:`History.best_epoch`.
        keep_best: keep a CPU copy of the weights at the best epoch (``history.restore_best(model)``).

    Raises:
        ValueError: labels outside ``0 .. outputs-1``, inputs with NaN, mismatched lengths, ``epochs < 1``.
        FloatingPointError: the loss became NaN or infinite (names the epoch, the step and the term).
    """
    from tqdm.auto import tqdm

    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    kind, splits = _as_splits(data)
    device = get_device(device)
    loss_fn = loss_fn or F.cross_entropy
    extra_losses = dict(extra_losses or {})
    metrics = dict(metrics or {})
    torch.manual_seed(seed)
    model.to(device)
    opt = _make_optimizer(model, optimizer, lr, momentum, weight_decay)
    sched = _make_scheduler(opt, scheduler, epochs)
    history = History(select_by=select_by)
    best_value: Optional[float] = None

    settings = {"lr": lr, "optimizer": optimizer if isinstance(optimizer, str) else type(opt).__name__,
                "momentum": momentum, "weight_decay": weight_decay, "batch_size": batch_size, "seed": seed,
                "extra_losses": sorted(extra_losses), "kind": kind, "model": type(model).__name__,
                "scheduler": scheduler if isinstance(scheduler, (str, type(None))) else "custom"}
    fingerprint = _fingerprint(settings)
    start_epoch = 1
    ckpt_path = Path(checkpoint) if checkpoint is not None else None
    if ckpt_path is not None and resume and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        if state["fingerprint"] != fingerprint:
            raise ValueError(f"the checkpoint {ckpt_path} was written with other settings ({state['settings']}) "
                             f"than this call ({settings}); delete it or pass resume=False")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if sched is not None and state.get("scheduler") is not None:
            sched.load_state_dict(state["scheduler"])
        history = History(state["history"], select_by=select_by)
        history.best_state = state.get("best_state")
        best_value = state.get("best_value")
        _set_rng_state(state["rng"])
        start_epoch = state["epoch"] + 1
        if start_epoch > epochs:
            return history

    if kind == "tensors":
        x_train, y_train = splits["train"]
        x_train, y_train = x_train.to(device), y_train.to(device)
    else:
        data = data.to(device)
        y_all, train_mask = data.y, data.train_mask

    bar = tqdm(range(start_epoch, epochs + 1), disable=not progress, desc="epochs", leave=False,
               initial=start_epoch - 1, total=epochs)
    for epoch in bar:
        model.train()
        t0 = time.perf_counter()
        sums = {"loss": 0.0, "correct": 0.0, "count": 0.0, **{name: 0.0 for name in extra_losses}}
        steps = 0
        gen = torch.Generator(device="cpu").manual_seed(seed * 100_003 + epoch)
        if kind == "tensors":
            order = torch.randperm(len(x_train), generator=gen).to(device)
            batches = ((x_train[idx], y_train[idx], None) for idx in order.split(batch_size))
        else:
            batches = iter([((data.x, data.edge_index), y_all, train_mask)])
        for step, (inputs, targets, mask) in enumerate(batches):
            if kind == "tensors":
                if augment is not None:
                    inputs = augment(inputs, gen)
                logits = model(inputs)
                fit_logits, fit_targets = logits, targets
            else:
                logits = model(*inputs)
                fit_logits, fit_targets = logits[mask], targets[mask]
            if epoch == start_epoch and step == 0:
                _check_labels(logits, targets, "training")
            data_loss = loss_fn(fit_logits, fit_targets)
            total = data_loss
            ctx = StepContext(model, inputs, targets, logits, mask, epoch, step)
            term_values = {}
            for name, term in extra_losses.items():
                value = term(ctx)
                term_values[name] = value
                total = total + value
            if not bool(torch.isfinite(total)):
                culprits = [n for n, v in term_values.items() if not bool(torch.isfinite(v))]
                what = f"the extra term(s) {culprits}" if culprits else "the data loss"
                raise FloatingPointError(f"the loss became {total.detach().item()} at epoch {epoch}, step {step}: {what} "
                                         "went non-finite. Try a smaller learning rate or regularization weight.")
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            n = len(fit_targets)
            sums["loss"] += data_loss.item() * n
            sums["correct"] += float((fit_logits.detach().argmax(1) == fit_targets).sum())
            sums["count"] += n
            for name, value in term_values.items():
                sums[name] += value.item()
            steps += 1
        row: Dict[str, float] = {"epoch": epoch, "train_loss": sums["loss"] / sums["count"],
                                 "train_acc": sums["correct"] / sums["count"]}
        for split in ("val", "test"):
            if kind == "tensors":
                pair = splits.get(split)
                loss, acc = (evaluate(model, pair[0], pair[1], batch_size=eval_batch_size, loss_fn=loss_fn)
                             if pair is not None else (float("nan"), float("nan")))
            else:
                mask = getattr(data, f"{split}_mask", None)
                loss, acc = (evaluate_graph(model, data, mask, loss_fn=loss_fn) if mask is not None
                             else (float("nan"), float("nan")))
            row[f"{split}_loss"], row[f"{split}_acc"] = loss, acc
        row["lr"] = opt.param_groups[0]["lr"]
        for name in extra_losses:
            row[f"loss_{name}"] = sums[name] / max(steps, 1)
        for name, fn in metrics.items():
            row[name] = float(fn(model, data))
        row["time_s"] = time.perf_counter() - t0
        history.rows.append(row)
        if sched is not None:
            sched.step()

        value = row[select_by]
        better = (best_value is None or (not math.isnan(value) and (
            value > best_value if select_by == "val_acc" else value < best_value)))
        if better and not math.isnan(value):
            best_value = value
            if keep_best:
                history.best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        bar.set_postfix(loss=f"{row['train_loss']:.3f}", val_acc=f"{row['val_acc']:.3f}")
        if ckpt_path is not None:
            _save_atomic({"model": model.state_dict(), "optimizer": opt.state_dict(),
                          "scheduler": sched.state_dict() if sched is not None else None,
                          "history": history.rows, "epoch": epoch, "rng": _rng_state(),
                          "best_state": history.best_state, "best_value": best_value,
                          "fingerprint": fingerprint, "settings": settings}, ckpt_path)
    bar.close()
    return history
