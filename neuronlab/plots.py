"""Figures shared by the chapters: the book's one plot style and the plots that more than one page draws.

Every figure of the book follows :func:`use_book_style`: a colour-blind-safe palette (Okabe–Ito, without
its yellow, which vanishes on white), fonts of at least 11 pt for text and 9 pt for legends at the
rendered size, figures at most :data:`FIGURE_WIDTH` inches wide (panels are stacked when more are
needed) and high-resolution output. Compared methods differ in colour *and* marker or line style
(:func:`method_style`), so that they stay apart in grey print and under colour blindness.

Matplotlib and seaborn are imported here and nowhere below: the method modules never plot, so importing
:mod:`neuronlab.nsr` or :mod:`neuronlab.campaign` stays free of matplotlib (a test fences this).
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

__all__ = ["PALETTE", "FIGURE_WIDTH", "BOOK_STYLE", "use_book_style", "method_style", "book_figure",
           "mark_axis_break", "plain_log_ticks", "plot_mean_band", "plot_reproduction", "plot_signal_profile",
           "plot_steadiness", "plot_matrix"]

#: The Okabe–Ito colours without yellow, in the order the book uses them.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
_DASHES = ("-", "--", "-.", ":", (0, (5, 1, 1, 1)), (0, (3, 1)), (0, (1, 1)))

#: The widest figure in inches, the page's text column at desktop width. Wider figures are shrunk by
#: the browser until their text is unreadable, so :func:`book_figure` refuses them.
FIGURE_WIDTH = 7.5

#: Matplotlib settings of every figure in the book (applied on top of seaborn's ``ticks`` theme).
BOOK_STYLE = {
    "figure.dpi": 96, "savefig.dpi": 200, "figure.figsize": (FIGURE_WIDTH, 3.2),
    "font.size": 11, "axes.titlesize": 11, "axes.labelsize": 11,
    "xtick.labelsize": 10, "ytick.labelsize": 10, "legend.fontsize": 9.5, "legend.title_fontsize": 10,
    "figure.titlesize": 12, "lines.linewidth": 1.8, "lines.markersize": 5,
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
    "figure.constrained_layout.use": True,
}


def use_book_style() -> None:
    """Apply the book's style to every figure drawn from now on (each chapter's ``setup`` calls it).

    In a notebook, figures are then sent as PNG at twice the screen resolution ("retina"), sharp on
    high-density screens and when zoomed.
    """
    import seaborn as sns

    sns.set_theme(context="notebook", style="ticks", palette=list(PALETTE), rc=BOOK_STYLE)
    plt.rcParams.update(BOOK_STYLE)
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:
        return
    if get_ipython() is not None:
        set_matplotlib_formats("retina")


def method_style(index: int) -> dict:
    """Colour, marker and line style of the ``index``-th compared method (cycling after seven):
    keyword arguments for ``ax.plot``.

    >>> method_style(0)["color"], method_style(1)["marker"]
    ('#0072B2', 's')
    """
    i = index % len(PALETTE)
    return {"color": PALETTE[i], "marker": _MARKERS[i], "linestyle": _DASHES[i]}


def book_figure(nrows: int = 1, ncols: int = 1, panel_height: float = 2.8, width: float = FIGURE_WIDTH,
                **kwargs):
    """``plt.subplots`` for the book: ``width`` at most :data:`FIGURE_WIDTH` inches and ``panel_height``
    inches per row of panels. Returns ``(fig, axes)`` like ``plt.subplots``.

    >>> fig, axes = book_figure(2, 1); fig.get_size_inches().tolist(), len(axes)
    ([7.5, 5.6], 2)
    >>> plt.close(fig)
    """
    if width > FIGURE_WIDTH + 1e-9:
        raise ValueError(f"a book figure is at most {FIGURE_WIDTH} in wide (got {width}); stack the panels "
                         "in more rows instead")
    kwargs.setdefault("constrained_layout", True)
    return plt.subplots(nrows, ncols, figsize=(width, panel_height * nrows), **kwargs)


def mark_axis_break(ax) -> None:
    """Two short strokes across the foot of the y axis: the axis does not start at zero.

    For axes where a zero-based range would flatten what matters (accuracies between 80 and 100 %);
    the caption should say so too.
    """
    strokes = dict(transform=ax.transAxes, color="0.2", linewidth=1, clip_on=False)
    for y in (0.015, 0.045):
        ax.plot([-0.012, 0.012], [y - 0.012, y + 0.012], **strokes)


def plain_log_ticks(ax) -> None:
    """Label a log-scale y axis with plain numbers at 1, 2 and 5 per decade (50, 100, 200) instead of
    powers of ten."""
    from matplotlib import ticker

    ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1, 2, 5)))
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:,.0f}"))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())


def plot_mean_band(ax, x, runs, label: str, index: int = 0, log: bool = False, marker_every=None):
    """Draw the mean over seeds of ``runs`` (an array ``seeds × len(x)``) with a band, and put the number
    of seeds in the legend label.

    On a linear axis the band is mean ± one standard deviation; on a log axis (``log=True``) the line is
    the geometric mean and the band runs from the smallest to the largest seed, because mean − std can
    fall below zero there. Returns the line.
    """
    runs = np.asarray(runs, dtype=float)
    if runs.ndim == 1:
        runs = runs[None, :]
    x = np.asarray(x)
    if runs.shape[1] != len(x):
        raise ValueError(f"runs has {runs.shape[1]} columns but x has {len(x)} points")
    n = runs.shape[0]
    style = method_style(index)
    if log:
        if (runs <= 0).any():
            raise ValueError("log=True needs positive values; plot them on a linear axis instead")
        centre = np.exp(np.log(runs).mean(axis=0))
        low, high = runs.min(axis=0), runs.max(axis=0)
        spread = "min–max"
    else:
        centre = runs.mean(axis=0)
        std = runs.std(axis=0, ddof=1) if n > 1 else np.zeros_like(centre)
        low, high = centre - std, centre + std
        spread = "± std"
    text = f"{label} (n = {n} seed{'s' if n != 1 else ''}" + (f", {spread})" if n > 1 else ")")
    (line,) = ax.plot(x, centre, label=text, color=style["color"], linestyle=style["linestyle"],
                      marker=style["marker"], markevery=marker_every or max(1, len(x) // 8))
    if n > 1:
        ax.fill_between(x, low, high, color=style["color"], alpha=0.2, linewidth=0)
    if log:
        ax.set_yscale("log")
    return line


def plot_reproduction(frame: pd.DataFrame, row: str, method: str, value: str = "ours_mean",
                      spread: str = "ours_std", paper: Optional[str] = "paper", xlabel: str = "test error (%)",
                      n_seeds: Optional[int] = None, ax=None, methods: Optional[Sequence[str]] = None,
                      zero_based: bool = True):
    """A dot plot of a reproduction table: one horizontal band per ``row`` (an architecture, a dataset),
    one marker per ``method`` with our mean ± std as an error bar and the paper's number as an open marker
    beside it. Replaces a wide table that wraps on a phone.

    ``frame`` is long: one line per (row, method) with columns ``value``, ``spread`` and (optional)
    ``paper``; missing numbers (a method not run on a row, a paper silent on it) are simply not drawn,
    and every row keeps its band. The value axis starts at zero unless ``zero_based=False``, in which
    case its label says so. Returns the figure.
    """
    missing = [c for c in (row, method, value, spread) + ((paper,) if paper else ()) if c not in frame.columns]
    if missing:
        raise ValueError(f"plot_reproduction: frame has no column(s) {missing}; it has {list(frame.columns)}")
    rows = list(dict.fromkeys(frame[row]))
    methods = list(methods) if methods is not None else list(dict.fromkeys(frame[method]))
    if ax is None:
        fig, ax = book_figure(1, 1, panel_height=0.45 * len(rows) * max(1, len(methods)) ** 0.5 + 1.2)
    else:
        fig = ax.figure
    step = 0.8 / max(1, len(methods))
    for j, name in enumerate(methods):
        style = method_style(j)
        part = frame[frame[method] == name].set_index(row).reindex(rows)
        y = np.arange(len(rows)) - 0.4 + step * (j + 0.5)
        ax.errorbar(part[value], y, xerr=part[spread], fmt=style["marker"], color=style["color"], capsize=3,
                    label=f"{name}, ours" if paper else name)
        if paper and part[paper].notna().any():
            ax.plot(part[paper], y, linestyle="none", marker=style["marker"], markerfacecolor="white",
                    markeredgecolor=style["color"], alpha=0.9, label=f"{name}, paper")
    ax.set_yticks(np.arange(len(rows)), [str(r) for r in rows])
    ax.set_ylim(len(rows) - 0.5, -0.5)  # every row in view, the first on top, even where values are missing
    if zero_based:
        ax.set_xlim(left=0)
    for k in range(1, len(rows)):
        ax.axhline(k - 0.5, color="0.85", linewidth=0.8)
    ax.grid(axis="y", visible=False)
    seeds = f" (ours: mean ± std over n = {n_seeds} seeds)" if n_seeds else " (ours: mean ± std)"
    ax.set_xlabel(xlabel + seeds + ("" if zero_based else "; axis not from zero"))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def plot_signal_profile(profiles: Mapping[str, pd.DataFrame], axes: Optional[Sequence] = None, title: str = "",
                        styles: Optional[Sequence[int]] = None, legend: bool = True):
    """Plot forward (activation std) and backward (gradient std) signal against depth, one line per profile
    (:func:`neuronlab.signal.signal_profile` frames), in two stacked panels.

    Both axes use a log scale: a constant per-layer factor appears as a straight line; a panel spans two
    decades at least, so that a flat profile looks flat. ``styles`` gives each profile's
    :func:`method_style` index (default: their order), so that a method keeps its look across figures.
    Returns the figure.
    """
    if axes is None:
        fig, axes = book_figure(2, 1, panel_height=2.6, sharex=True)
    else:
        fig = axes[0].figure
    indices = list(styles) if styles is not None else list(range(len(profiles)))
    if len(indices) != len(profiles):
        raise ValueError(f"styles has {len(indices)} entries for {len(profiles)} profiles")
    for i, (label, frame) in zip(indices, profiles.items()):
        style = method_style(i)
        for ax, column in zip(axes, ("activation_std", "gradient_std")):
            ax.plot(frame["layer"], frame[column], label=label, markevery=max(1, len(frame) // 10), **style)
    for ax, what in zip(axes, ("activation std\n(forward)", "std of $\\partial L/\\partial z$\n(backward)")):
        ax.set_yscale("log")
        low, high = ax.get_ylim()
        if high / low < 100:  # a flat profile should look flat, not like magnified noise
            centre = (low * high) ** 0.5
            ax.set_ylim(centre / 10, centre * 10)
        ax.set_ylabel(what)
        ax.grid(alpha=0.3, which="both")
    axes[-1].set_xlabel("layer")
    if legend:
        axes[0].legend(loc="best")
    if title:
        fig.suptitle(title)
    return fig


def plot_steadiness(histories: Mapping[str, object], layer: str, axes=None):
    """The NSR paper's three panels for several runs, stacked: test accuracy, training cross-entropy and
    the mean intra-class variance of ``layer`` on the training data, per epoch. ``histories`` maps a label
    to a :class:`neuronlab.train.History` with an ``icv_<layer>`` column (see
    :func:`neuronlab.experiments.ch03_nsr.steadiness_history`). Each line is one run (one seed). Returns
    the axes."""
    if axes is None:
        _, axes = book_figure(3, 1, panel_height=2.1, sharex=True)
    for i, (label, history) in enumerate(histories.items()):
        table = history.table
        style = dict(method_style(i), markevery=max(1, len(table) // 8))
        axes[0].plot(table["epoch"], 100 * table["test_acc"], label=label, **style)
        axes[1].plot(table["epoch"], table["train_loss"], label=label, **style)
        axes[2].plot(table["epoch"], table[f"icv_{layer}"], label=label, **style)
    axes[0].set(ylabel="test acc. (%)", title="(a) test accuracy (one seed per line)")
    axes[1].set(ylabel="cross-entropy", title="(b) training cross-entropy (nats)", yscale="log")
    axes[2].set(xlabel="epoch", ylabel="intra-class var.", title=f"(c) mean intra-class variance of {layer}",
                yscale="log")
    axes[0].legend(loc="lower right")
    return axes


def plot_matrix(ax, matrix, rows: Sequence[str], cols: Sequence[str], title: str = "", vmin: float = 0.0,
                vmax: float = 1.0):
    """A square heatmap with every value written in its cell (two decimals): layer x layer similarities,
    rank agreements. The colour map is viridis (readable with colour blindness and in grey); the text is
    black on the light half of the scale and white on the dark half. Returns the image."""
    matrix = np.asarray(matrix, dtype=float)
    if matrix.shape != (len(rows), len(cols)):
        raise ValueError(f"plot_matrix: a {matrix.shape} matrix for {len(rows)} rows and {len(cols)} columns")
    image = ax.imshow(matrix, vmin=vmin, vmax=vmax, cmap="viridis")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8.5,
                color="black" if value > (vmin + vmax) / 2 else "white")
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_title(title)
    ax.grid(False)
    return image
