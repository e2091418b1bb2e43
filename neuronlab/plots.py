"""Figures shared by the chapters: the book's plot style and the plots that more than one page draws.

Matplotlib is imported here and nowhere below: the method modules never plot, so importing
:mod:`neuronlab.nsr` or :mod:`neuronlab.campaign` stays free of matplotlib (a test fences this).
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import matplotlib.pyplot as plt
import pandas as pd

__all__ = ["BOOK_STYLE", "use_book_style", "plot_signal_profile", "plot_steadiness"]

#: Matplotlib settings of every figure in the book.
BOOK_STYLE = {"figure.dpi": 110, "axes.spines.top": False, "axes.spines.right": False}


def use_book_style() -> None:
    """Apply :data:`BOOK_STYLE` to every figure drawn from now on (each chapter's ``setup`` calls it)."""
    plt.rcParams.update(BOOK_STYLE)


def plot_signal_profile(profiles: Mapping[str, pd.DataFrame], axes: Optional[Sequence] = None, title: str = ""):
    """Plot forward (activation std) and backward (gradient std) signal against depth, one line per profile
    (:func:`neuronlab.signal.signal_profile` frames).

    Both axes use a log scale: a constant per-layer factor appears as a straight line. Returns the figure.
    """
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


def plot_steadiness(histories: Mapping[str, object], layer: str, axes=None):
    """The NSR paper's three panels for several runs: test accuracy, training cross-entropy and the mean
    intra-class variance of ``layer`` on the training data, per epoch. ``histories`` maps a label to a
    :class:`neuronlab.train.History` with an ``icv_<layer>`` column (see
    :func:`neuronlab.experiments.ch03_nsr.steadiness_history`). Returns the axes."""
    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(13, 3.6), constrained_layout=True)
    for label, history in histories.items():
        table = history.table
        axes[0].plot(table["epoch"], 100 * table["test_acc"], label=label)
        axes[1].plot(table["epoch"], table["train_loss"], label=label)
        axes[2].plot(table["epoch"], table[f"icv_{layer}"], label=label)
    axes[0].set(xlabel="epoch", ylabel="test accuracy (%)", title="(a) test accuracy")
    axes[1].set(xlabel="epoch", ylabel="cross-entropy (nats)", title="(b) training cross-entropy", yscale="log")
    axes[2].set(xlabel="epoch", ylabel="mean intra-class variance", title=f"(c) intra-class variance of {layer}",
                yscale="log")
    axes[0].legend()
    return axes
