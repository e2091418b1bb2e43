r"""Chapter 1: vanishing and exploding signals, measured layer by layer.

Two views of the same effect:

* :func:`propagate_random_product` -- the talk's demo: multiply a vector by ``n_layers`` random
  ``width x width`` Gaussian matrices. Each product scales the signal's standard deviation by about
  :math:`\sqrt{\text{width}}\,\sigma_W`: 0.23 for :math:`\sigma_W = 0.01` (the signal dies, then
  underflows to exact zeros) and 22.6 for :math:`\sigma_W = 1` (it overflows to ``inf``/``nan``).
  :func:`predicted_nonfinite_layer` gives the overflow layer in closed form.
* :func:`signal_profile` -- a deep MLP at initialization, one forward and one backward pass on real data:
  per layer the spread of activations (forward signal), of the gradient with respect to the layer's
  output (backward signal) and the norm of the weight gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .init import initialize_
from .models import MLP
from .probe import record

__all__ = [
    "SignalTrace",
    "propagate_random_product",
    "predicted_nonfinite_layer",
    "predicted_std_ratio",
    "build_init_mlp",
    "signal_profile",
    "plot_signal_profile",
    "signal_explorer",
    "train_with_init",
    "curves_frame",
]


@dataclass
class SignalTrace:
    """Per-layer mean and standard deviation of a signal pushed through random matrices.

    ``means[l]`` and ``stds[l]`` describe the vector after layer ``l + 1``. ``first_nonfinite`` is the
    1-based index of the first layer whose output holds ``inf`` or ``nan`` (``None`` if none did);
    ``first_all_zero`` the first layer whose output underflowed to exact zeros.
    """

    means: np.ndarray
    stds: np.ndarray
    first_nonfinite: Optional[int]
    first_all_zero: Optional[int]
    width: int
    weight_std: float
    dtype: torch.dtype

    @property
    def n_layers(self) -> int:
        return len(self.stds)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"layer": np.arange(1, self.n_layers + 1), "mean": self.means, "std": self.stds})


def propagate_random_product(n_layers: int = 100, width: int = 512, weight_std: float = 0.01, *, seed: int = 0,
                             dtype: torch.dtype = torch.float32) -> SignalTrace:
    r"""Push ``x ~ N(0, I)`` through ``n_layers`` matrices ``A_l ~ N(0, weight_std^2)``: ``x <- A_l x``.

    This is the talk's demo with a seeded ``torch.Generator``, so the layer where the signal overflows is
    the same on every run. The loop stops at the first non-finite layer (later layers stay NaN in
    ``stds``), exactly as the slide's ``break`` does.
    """
    if n_layers < 1 or width < 1:
        raise ValueError(f"n_layers and width must be positive, got n_layers={n_layers}, width={width}")
    if not weight_std > 0:
        raise ValueError(f"weight_std must be positive, got {weight_std}")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(width, generator=gen, dtype=dtype)
    means = np.full(n_layers, np.nan)
    stds = np.full(n_layers, np.nan)
    first_nonfinite = first_zero = None
    for layer in range(n_layers):  # sequential by nature: layer l needs layer l-1
        a = torch.randn(width, width, generator=gen, dtype=dtype) * weight_std
        x = a @ x
        # statistics in float64: the float32 std of a still-finite x overflows one layer early
        means[layer], stds[layer] = x.double().mean().item(), x.double().std().item()
        if first_zero is None and bool((x == 0).all()):
            first_zero = layer + 1
        if not bool(torch.isfinite(x).all()):
            first_nonfinite = layer + 1
            break
    return SignalTrace(means, stds, first_nonfinite, first_zero, width, weight_std, dtype)


def predicted_std_ratio(fan_in: int, weight_var: float, activation: str = "linear") -> float:
    r"""Expected factor by which one layer multiplies the second moment of the signal.

    For :math:`y = Wx` with i.i.d. zero-mean weights of variance :math:`v` independent of :math:`x`,
    :math:`\mathbb E[y_i^2] = n_\text{in} v\, \mathbb E[x_j^2]`. A ReLU keeps half of a symmetric
    pre-activation's second moment, :math:`\mathbb E[\mathrm{relu}(y)^2] = \tfrac12 \mathbb E[y^2]`.
    Returns the factor for the second moment; its square root is the factor for the standard deviation.
    """
    factor = fan_in * weight_var
    if activation == "relu":
        return factor / 2.0
    if activation == "linear":
        return factor
    raise ValueError(f"closed form known for 'linear' and 'relu', got {activation!r}")


def predicted_nonfinite_layer(width: int, weight_std: float, dtype: torch.dtype = torch.float32) -> float:
    r"""Closed-form estimate of the layer at which :func:`propagate_random_product` overflows.

    After :math:`l` layers the entries have standard deviation :math:`(\sqrt{n}\,\sigma_W)^l`; the largest
    of :math:`n` Gaussian entries is about :math:`\sqrt{2 \ln n}` standard deviations. Overflow happens when
    that reaches the largest float, so
    :math:`l^\ast = \ln(\text{max} / \sqrt{2\ln n}) / \ln(\sqrt n\, \sigma_W)`. Returns ``inf`` when the
    signal shrinks (:math:`\sqrt n\,\sigma_W \le 1`).
    """
    growth = math.sqrt(width) * weight_std
    if growth <= 1.0:
        return math.inf
    largest = torch.finfo(dtype).max
    return math.log(largest / math.sqrt(2.0 * math.log(width))) / math.log(growth)


def build_init_mlp(depth: int, width: int, *, activation: str = "relu", scheme: str = "he", in_features: int = 784,
                   num_classes: int = 10, weight_std: float = 0.01, x: Optional[torch.Tensor] = None,
                   seed: int = 0) -> MLP:
    """A ``depth``-layer MLP (``depth`` linear layers, hidden width ``width``) initialized by ``scheme``.

    ``scheme`` is one of ``"gaussian"`` (``N(0, weight_std^2)``), ``"xavier"``, ``"he"``, ``"lsuv"``
    (needs a data batch ``x``). Biases are zero, as in the papers' protocols.
    """
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = MLP([in_features] + [width] * (depth - 1) + [num_classes], activation=activation)
    kwargs = {"std": weight_std} if scheme == "gaussian" else {}
    initialize_(model, scheme, x=x, generator=gen, **kwargs)
    return model


def signal_profile(model: MLP, x: torch.Tensor, y: torch.Tensor) -> pd.DataFrame:
    r"""Forward and backward signal of an MLP at one batch, layer by layer.

    Columns, one row per linear layer ``fc1 .. fcL``:

    * ``activation_std`` -- std of the layer's activation (after the nonlinearity; the logits for the
      last layer): the forward signal.
    * ``preactivation_std`` -- std of the linear output :math:`z = Wa + b`.
    * ``gradient_std`` -- std of :math:`\partial L / \partial z` (cross-entropy, mean over the batch):
      the backward signal that reaches this layer.
    * ``weight_grad_norm`` -- Frobenius norm :math:`\|\partial L/\partial W\|_F`.
    * ``dead_fraction`` -- fraction of activations that are exactly zero (ReLU units off).
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} samples but y has {y.shape[0]} labels")
    linear = model.linear_names
    activations = model.activation_names
    model.zero_grad(set_to_none=True)
    with record(model, linear + activations, detach=False) as rec:
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        pre = [rec.responses[name] for name in linear]
        post = [rec.responses[name] for name in activations] + [logits]
        grads = torch.autograd.grad(loss, pre, retain_graph=True)
    loss.backward()
    rows = []
    for i, name in enumerate(linear):
        weight = getattr(model, name).weight
        rows.append({
            "layer": i + 1,
            "name": name,
            "activation_std": post[i].detach().std().item(),
            "preactivation_std": pre[i].detach().std().item(),
            "gradient_std": grads[i].std().item(),
            "weight_grad_norm": weight.grad.norm().item(),
            "dead_fraction": (post[i].detach() == 0).float().mean().item(),
        })
    model.zero_grad(set_to_none=True)
    return pd.DataFrame(rows)


def plot_signal_profile(profiles: Mapping[str, pd.DataFrame], axes: Optional[Sequence] = None, title: str = ""):
    """Plot forward (activation std) and backward (gradient std) signal against depth, one line per profile.

    Both axes use a log scale: a constant per-layer factor appears as a straight line. Returns the figure.
    """
    import matplotlib.pyplot as plt

    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    else:
        fig = axes[0].figure
    for label, frame in profiles.items():
        axes[0].plot(frame["layer"], frame["activation_std"], marker="o", ms=3, label=label)
        axes[1].plot(frame["layer"], frame["gradient_std"], marker="o", ms=3, label=label)
    for ax, what in zip(axes, ("activation std (forward signal)", r"std of $\partial L/\partial z$ (backward signal)")):
        ax.set_yscale("log")
        low, high = ax.get_ylim()
        if high / low < 100:  # a flat profile should look flat, not like magnified noise
            centre = (low * high) ** 0.5
            ax.set_ylim(centre / 10, centre * 10)
        ax.set_xlabel("layer")
        ax.set_ylabel(what)
        ax.grid(alpha=0.3, which="both")
    axes[1].legend(fontsize=8, loc="best")
    if title:
        fig.suptitle(title)
    return fig


def signal_explorer(x: torch.Tensor, y: torch.Tensor, *, in_features: Optional[int] = None, num_classes: int = 10):
    """An ipywidgets explorer: choose depth, width, weight std, activation and init; see the profile.

    Returns the widget (display it as a cell's last line). The rendered book cannot run Python, so the
    notebook shows a static figure with the default settings beside it.
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from IPython.display import display

    in_features = in_features or int(np.prod(x.shape[1:]))
    controls = {
        "depth": widgets.IntSlider(value=20, min=2, max=60, step=1, description="depth"),
        "width": widgets.IntSlider(value=256, min=16, max=1024, step=16, description="width"),
        "weight_std": widgets.FloatLogSlider(value=0.01, base=10, min=-3, max=0, step=0.1,
                                             description="σ_W (gaussian)"),
        "activation": widgets.Dropdown(options=["relu", "tanh"], value="relu", description="activation"),
        "scheme": widgets.Dropdown(options=["gaussian", "xavier", "he", "lsuv"], value="he", description="init"),
    }
    out = widgets.Output()

    def redraw(**params):
        model = build_init_mlp(params["depth"], params["width"], activation=params["activation"],
                               scheme=params["scheme"], weight_std=params["weight_std"], x=x,
                               in_features=in_features, num_classes=num_classes)
        frame = signal_profile(model, x, y)
        with out:
            out.clear_output(wait=True)
            label = f"{params['scheme']}, {params['activation']}, {params['depth']}×{params['width']}"
            fig = plot_signal_profile({label: frame})
            display(fig)
            plt.close(fig)

    widgets.interactive_output(redraw, controls)
    return widgets.VBox([widgets.HBox(list(controls.values())[:3]), widgets.HBox(list(controls.values())[3:]), out])


HISTORY_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")


def train_with_init(data, *, scheme: str, activation: str, depth: int = 10, width: int = 100, lr: float = 0.05,
                    batch_size: int = 100, epochs: int = 25, seed: int = 0, weight_std: float = 0.01,
                    lsuv_samples: int = 512, dataset: Optional[str] = None) -> Dict:
    """Train a ``depth``-layer MLP initialized by ``scheme`` with plain SGD; return a JSON-ready summary.

    The result holds the per-epoch curves (``history``: lists keyed by column), the test error at the
    best validation epoch, the minimum test error and its epoch, and ``epochs_to_90`` (the first epoch
    with validation accuracy >= 90 %, ``None`` if never). ``dataset``, when given, must equal
    ``data.name``: it makes the configuration that keys a :class:`neuronlab.runs.RunStore` honest.
    """
    from .train import fit

    if dataset is not None and dataset != data.name:
        raise ValueError(f"the configuration says dataset={dataset!r} but the data passed is {data.name!r}")
    in_features = int(np.prod(data.x_train.shape[1:]))
    model = build_init_mlp(depth, width, activation=activation, scheme=scheme, in_features=in_features,
                           num_classes=data.num_classes, weight_std=weight_std,
                           x=data.x_train[:lsuv_samples].reshape(-1, in_features), seed=seed)
    history = fit(model, data, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, progress=False)
    table = history.table
    reached = table.loc[table["val_acc"] >= 0.9, "epoch"]
    return {
        "history": {col: table[col].astype(float).tolist() for col in HISTORY_COLUMNS},
        "test_error_at_best": float(history.test_error_at_best),
        "best_epoch": int(history.best_epoch),
        "min_test_error": float(history.min_test_error),
        "epoch_of_min_test_error": int(history.epoch_of_min_test_error),
        "epochs_to_90": int(reached.iloc[0]) if len(reached) else None,
        "final_train_loss": float(table["train_loss"].iloc[-1]),
    }


def curves_frame(table: pd.DataFrame) -> pd.DataFrame:
    """Long-format per-epoch curves from a run table whose ``history`` column holds :func:`train_with_init`
    results: one row per (run, epoch), with the run's configuration columns kept."""
    history_cols = [c for c in table.columns if c == "history" or c.startswith("history.")]
    if not history_cols:
        raise ValueError("the table has no 'history' column: pass the table returned by RunStore.sweep/table()")
    config_cols = [c for c in table.columns if not c.startswith("history")]
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
