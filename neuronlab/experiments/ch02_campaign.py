"""Chapter 2's experiments: the reproduction of the IBCI paper (Mao et al., CIKM 2021) and two extensions.

Three experiments, each a grid of training runs with the official protocol (plain SGD, lr 0.1, batch
100, no momentum; :func:`fit_protocol`), one run per (base scheme, network, initialization, seed):

* ``"tables"`` -- the paper's Tables 1 and 2: the three MLPs (:data:`ARCHITECTURES`), Xavier and He
  candidates, every method of :data:`METHODS` (vanilla, LSUV, IBCI, its ablations TIE and IIM, and a
  random-election control) on mnist-5k for 20 epochs (quick) or MNIST for 101 epochs (full).
* ``"fashion"`` -- vanilla, LSUV and IBCI on Fashion-MNIST (two networks, 20 epochs in the quick
  profile).
* ``"cnn"`` -- beyond the paper: a small CNN (16 and 32 filters) on the images of the chapter's dataset,
  He candidates, lr 0.02, vanilla / LSUV / IBCI / IBCI followed by LSUV.

The quick-profile runs of all three are stored with the book in ``notebooks/results/ch02/<experiment>_quick``
(:data:`STORED`), so the book build trains no sweep.

From a shell: ``python -m neuronlab.experiments ch02 --profile full --device cuda`` (all three) or
``--experiments fashion``; the runs go to the folders the notebook reads.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..book import count_phrase, join_phrase
from ..campaign import BASES, MODES, campaign_
from ..init import he_, lsuv_, xavier_
from ..models import build_model
from ..runs import format_mean_std
from ..train import History, fit
from ._common import (ChapterRun, Timer, cached_dataset, check_dataset, history_summary, run_chapter_experiment,
                      setup_chapter)

__all__ = ["CHAPTER", "TITLE", "SETTINGS", "EXPERIMENTS", "STORED", "PAPER_TABLE1", "PAPER_TABLE2", "METHODS",
           "ARCHITECTURES", "METHOD_LABELS", "FASHION_DATASET", "FASHION_METHODS", "CNN_ARCH", "CNN_METHODS",
           "setup", "experiment_grid", "initialize_for_method", "fit_protocol", "train_campaign_run", "run_config",
           "run_experiment", "comparison_table", "cnn_table", "summary", "network_label", "reproduction_frame",
           "compare_methods", "comparison_phrase", "best_counts", "first_epoch_below"]

CHAPTER = "ch02"
TITLE = "Neuron Campaign initialization guided by the information bottleneck (IBCI)"

#: The paper's Table 1 on MNIST, minimum test error (%) with its std and the epoch of the minimum,
#: as ``{(base, architecture): {method: (mean, std, epoch)}}``.
PAPER_TABLE1: Dict[Tuple[str, str], Dict[str, Tuple[float, float, int]]] = {
    ("xavier", "IBCI-2"): {"vanilla": (2.04, 0.03, 75), "lsuv": (2.05, 0.06, 51), "ibci": (1.93, 0.06, 60)},
    ("xavier", "IBCI-3"): {"vanilla": (1.82, 0.05, 52), "lsuv": (1.80, 0.07, 63), "ibci": (1.71, 0.09, 36)},
    ("xavier", "IBCI-5"): {"vanilla": (2.83, 0.16, 98), "lsuv": (3.13, 0.17, 69), "ibci": (2.53, 0.09, 78)},
    ("he", "IBCI-2"): {"vanilla": (2.03, 0.03, 65), "lsuv": (2.00, 0.04, 70), "ibci": (1.93, 0.07, 57)},
    ("he", "IBCI-3"): {"vanilla": (1.83, 0.05, 54), "lsuv": (1.86, 0.07, 71), "ibci": (1.73, 0.04, 35)},
    ("he", "IBCI-5"): {"vanilla": (2.76, 0.07, 80), "lsuv": (2.90, 0.12, 77), "ibci": (2.62, 0.08, 73)},
}
#: The paper's Table 2 (the ablation on MNIST) in the layout of :data:`PAPER_TABLE1`, with the methods IBCI,
#: TIE (target information only) and IIM (input information only).
PAPER_TABLE2: Dict[Tuple[str, str], Dict[str, Tuple[float, float, int]]] = {
    ("xavier", "IBCI-2"): {"ibci": (1.93, 0.06, 60), "tie": (2.04, 0.07, 58), "iim": (2.07, 0.09, 84)},
    ("xavier", "IBCI-3"): {"ibci": (1.71, 0.09, 36), "tie": (1.82, 0.03, 43), "iim": (1.82, 0.05, 52)},
    ("xavier", "IBCI-5"): {"ibci": (2.53, 0.09, 78), "tie": (2.68, 0.05, 82), "iim": (2.57, 0.09, 84)},
    ("he", "IBCI-2"): {"ibci": (1.93, 0.07, 57), "tie": (2.07, 0.06, 59), "iim": (2.034, 0.09, 62)},
    ("he", "IBCI-3"): {"ibci": (1.73, 0.04, 35), "tie": (1.83, 0.07, 42), "iim": (1.856, 0.05, 55)},
    ("he", "IBCI-5"): {"ibci": (2.62, 0.08, 73), "tie": (2.89, 0.11, 74), "iim": (2.67, 0.12, 86)},
}
#: Initialization methods of the reproduction, namely the base scheme alone, LSUV on top of it, the
#: campaign and its ablations.
METHODS = ("vanilla", "lsuv", "ibci", "tie", "iim", "random")
#: The paper's three MLPs, named as in :func:`neuronlab.models.paper_mlp` (IBCI names count weight layers).
ARCHITECTURES = ("IBCI-2", "IBCI-3", "IBCI-5")
METHOD_LABELS = {"vanilla": "Vanilla", "lsuv": "LSUV", "ibci": "IBCI", "tie": "TIE", "iim": "IIM",
                 "random": "random election"}

#: The data, epochs and seeds of the MLP runs and of the CNN runs in each profile, and the device.
SETTINGS = {
    "quick": dict(dataset="mnist-5k", epochs=20, seeds=[0, 1, 2], cnn_epochs=4, cnn_seeds=[0, 1], device="cpu"),
    "full": dict(dataset="mnist", epochs=101, seeds=[0, 1, 2, 3, 4], cnn_epochs=20, cnn_seeds=[0, 1, 2],
                 device=None),
}
EXPERIMENTS = ("tables", "fashion", "cnn")
#: Every quick-profile experiment is stored with the book, so that the book build trains no sweep (the
#: Fashion-MNIST runs alone took about 15 CPU minutes).
STORED: Tuple[str, ...] = EXPERIMENTS

#: The dataset of the Fashion-MNIST experiment (its methods and networks follow).
FASHION_DATASET = "fashion-mnist"
FASHION_METHODS = ("vanilla", "lsuv", "ibci")
FASHION_ARCHS = {"quick": ("IBCI-2", "IBCI-3"), "full": ARCHITECTURES}
#: The network of the CNN experiment (its candidate scheme, methods and learning rate follow).
CNN_ARCH = "SmallCNN-16-32"
CNN_BASE = "he"
CNN_METHODS = ("vanilla", "lsuv", "ibci", "ibci+lsuv")
CNN_LR = 0.02


def setup(profile: Optional[str] = None, seed: int = 0, runs_dir=None, device: Optional[str] = None,
          smoke: Optional[bool] = None) -> Tuple[Dict[str, Any], ChapterRun]:
    """The notebook's first line: ``SETTINGS, RUN = ch02.setup(PROFILE, SEED, RUNS_DIR)`` (see
    :func:`neuronlab.experiments._common.setup_chapter`; ``smoke``: ``neuronlab.experiments.smoke``)."""
    return setup_chapter(CHAPTER, SETTINGS, profile, seed, runs_dir, device, STORED, smoke=smoke)


def _mlp_grid(dataset: str, methods: Sequence[str], archs: Sequence[str], epochs: int, seeds: Sequence[int]
              ) -> List[Dict[str, Any]]:
    return [dict(dataset=dataset, arch=arch, base=base, method=method, lr=0.1, batch_size=100, epochs=epochs,
                 seed=seed)
            for base in BASES for arch in archs for method in methods for seed in seeds]


def experiment_grid(name: str, profile: str = "quick") -> List[Dict[str, Any]]:
    """The run configurations (one dict per run) of experiment ``name`` in ``profile``.

    ``"tables"``: every base, network and method of :data:`METHODS` on the profile's dataset;
    ``"fashion"``: vanilla, LSUV and IBCI on Fashion-MNIST (IBCI-2 and IBCI-3 in the quick profile, all
    three networks in the full one); ``"cnn"``: ``CNN_METHODS`` on :data:`CNN_ARCH` with He candidates.
    """
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {EXPERIMENTS}")
    settings = SETTINGS[profile]
    if name == "tables":
        return _mlp_grid(settings["dataset"], METHODS, ARCHITECTURES, settings["epochs"], settings["seeds"])
    if name == "fashion":
        return _mlp_grid(FASHION_DATASET, FASHION_METHODS, FASHION_ARCHS[profile], settings["epochs"],
                         settings["seeds"])
    return [dict(dataset=settings["dataset"], arch=CNN_ARCH, base=CNN_BASE, method=method, lr=CNN_LR,
                 batch_size=100, epochs=settings["cnn_epochs"], seed=seed)
            for method in CNN_METHODS for seed in settings["cnn_seeds"]]


def initialize_for_method(model: nn.Module, method: str, base: str, x: torch.Tensor, y: torch.Tensor,
                          generator: torch.Generator) -> nn.Module:
    """Initialize ``model`` in place the way a reproduction row does.

    ``"vanilla"``: ``base`` alone; ``"lsuv"``: ``base`` then LSUV rescaling (the paper pairs LSUV with
    Xavier and with He, so the rescaling keeps the base directions: ``orthogonal=False``); ``"ibci"``,
    ``"tie"``, ``"iim"``, ``"random"``: a campaign with ``base`` candidates; a campaign name followed by
    ``"+lsuv"`` (e.g. ``"ibci+lsuv"``): the campaign, then LSUV rescaling.
    """
    if base not in BASES:
        raise ValueError(f"unknown base scheme {base!r}; choose one of {BASES}")
    core, plus_lsuv = (method[:-len("+lsuv")], True) if method.endswith("+lsuv") else (method, False)
    if core == "lsuv":
        core, plus_lsuv = "vanilla", True
    if core == "vanilla":
        (xavier_ if base == "xavier" else he_)(model, generator=generator)
    elif core in MODES:
        campaign_(model, x, y, base=base, mode=core, generator=generator)
    else:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS} (a campaign may end in '+lsuv')")
    if plus_lsuv:
        lsuv_(model, x[:1000], orthogonal=False)
    return model


def fit_protocol(model: nn.Module, data, *, epochs: int, seed: int, lr: float = 0.1, batch_size: int = 100,
                 device: Optional[Union[str, torch.device]] = None, progress: bool = False) -> History:
    """Train ``model`` with the official IBCI protocol: plain SGD (no momentum, no weight decay), lr 0.1,
    batch 100, the validation and test errors recorded every epoch (:func:`neuronlab.train.fit` on ``device``;
    ``progress``: a bar over the epochs)."""
    return fit(model, data, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, progress=progress,
               device=device)


def train_campaign_run(data, *, arch: str, base: str, method: str, seed: int, epochs: int, lr: float = 0.1,
                       batch_size: int = 100, dataset: Optional[str] = None,
                       device: Optional[Union[str, torch.device]] = None, progress: bool = False,
                       **_: object) -> Dict[str, Any]:
    """One row of the reproduction: build ``arch`` (:func:`neuronlab.models.build_model`: ``"IBCI-2/3/5"``
    or ``"SmallCNN-a-b"`` for images), initialize it by ``method`` (:func:`initialize_for_method`) on the
    training split, train it with :func:`fit_protocol` on ``device`` (``progress``: a bar over the epochs) and
    summarize.

    Returns a JSON-ready dict: :func:`~neuronlab.experiments._common.history_summary`'s keys
    (``min_test_error`` and ``epoch_of_min`` are the paper's statistic; ``test_error`` at the best
    validation epoch ``best_epoch`` does not peek at the test set) plus ``init_seconds`` and
    ``epoch_seconds`` (mean seconds per training epoch). Extra configuration keys are ignored.
    """
    check_dataset(dataset, data)
    torch.manual_seed(seed)
    model = build_model(arch, data)
    generator = torch.Generator().manual_seed(seed)
    with Timer() as init_timer:
        initialize_for_method(model, method, base, data.x_train, data.y_train, generator)
    with Timer() as train_timer:
        history = fit_protocol(model, data, epochs=epochs, seed=seed, lr=lr, batch_size=batch_size, device=device,
                               progress=progress)
    return {**history_summary(history, init_timer.seconds + train_timer.seconds),
            "init_seconds": init_timer.seconds, "epoch_seconds": train_timer.seconds / epochs}


def run_config(config: Mapping[str, Any], device=None, progress: bool = False) -> Dict[str, Any]:
    """Load the configuration's data (flattened for the MLPs, images for the CNN) and train it on ``device``
    (:func:`train_campaign_run`)."""
    images = config["arch"].upper().startswith("SMALLCNN")
    return train_campaign_run(cached_dataset(config["dataset"], flatten=not images), **config, device=device,
                              progress=progress)


def run_experiment(name: str, run: ChapterRun, progress: Optional[bool] = None) -> pd.DataFrame:
    """Run (or resume, or read back) experiment ``name`` into ``run``'s store; returns its table. ``progress``:
    bars over the runs and the epochs (``None``: in the full profile only)."""
    return run_chapter_experiment(experiment_grid(name, run.profile), name, run, run_config, progress)


def _cell(mean: float, std: float, epoch: float) -> str:
    return f"{format_mean_std(mean, std)} ({epoch:.0f})"


def comparison_table(table: pd.DataFrame, paper: Mapping[Tuple[str, str], Mapping[str, Tuple[float, float, int]]],
                     methods: Sequence[str], value: str = "min_test_error", epoch: str = "epoch_of_min"
                     ) -> pd.DataFrame:
    """Paper beside ours: one row per (base, architecture), for each method a "paper" and an "ours" column
    with ``mean ± std (epoch)``: error in %, the epoch as a mean over seeds.

    Args:
        table: runs with columns ``base``, ``arch``, ``method``, ``value`` and ``epoch`` (e.g. the table of
            :func:`run_experiment`).
        paper: :data:`PAPER_TABLE1` or :data:`PAPER_TABLE2`; a method the paper lacks shows "–".
        methods: which methods, in order.
        value, epoch: the statistic and its epoch: the paper's ``min_test_error`` and ``epoch_of_min``
            (default), or ``test_error`` and ``best_epoch`` (at the best validation epoch).
    """
    missing = [c for c in ("base", "arch", "method", value, epoch) if c not in table.columns]
    if missing:
        raise KeyError(f"columns {missing} not in the table; it has {list(table.columns)}")
    rows = []
    for (base, arch), group in table.groupby(["base", "arch"], sort=False):
        row = {"init": {"xavier": "Xavier", "he": "He"}[base], "layers": arch.split("-")[1],
               "seeds": int(group["seed"].nunique()) if "seed" in group else len(group)}
        for method in methods:
            runs_ = group[group["method"] == method]
            ref = paper.get((base, arch), {}).get(method)
            label = METHOD_LABELS.get(method, method)
            row[f"{label} (paper)"] = _cell(*ref) if ref else "–"
            row[f"{label} (ours)"] = _cell(runs_[value].mean(), runs_[value].std(), runs_[epoch].mean()) \
                if len(runs_) else "–"
        rows.append(row)
    return pd.DataFrame(rows)


def cnn_table(table: pd.DataFrame) -> pd.DataFrame:
    """The CNN runs per method: minimum test error and test error at the best validation epoch (mean ±
    std over seeds, %), and the mean seconds of the initialization and of one epoch."""
    rows = []
    for method, group in table.groupby("method", sort=False):
        rows.append({"method": method, "seeds": int(group["seed"].nunique()),
                     "min test error %": _cell(group["min_test_error"].mean(), group["min_test_error"].std(),
                                               group["epoch_of_min"].mean()),
                     "test error % at best val": _cell(group["test_error"].mean(), group["test_error"].std(),
                                                       group["best_epoch"].mean()),
                     "initialization (s)": round(float(group["init_seconds"].mean()), 2),
                     "one epoch (s)": round(float(group["epoch_seconds"].mean()), 2)})
    return pd.DataFrame(rows)


def summary(name: str, table: pd.DataFrame) -> pd.DataFrame:
    """What the command line prints for experiment ``name``: ``"tables"``, the paper's Tables 1 and 2 in one
    (minimum test error % (epoch) per method, paper beside ours); ``"fashion"``, ours only (the paper has
    no Fashion-MNIST); ``"cnn"``, :func:`cnn_table`."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {EXPERIMENTS}")
    if not len(table):
        return pd.DataFrame()
    if name == "tables":
        paper = {key: {**PAPER_TABLE1[key], **PAPER_TABLE2[key]} for key in PAPER_TABLE1}
        return comparison_table(table, paper, METHODS)
    if name == "fashion":
        ours = comparison_table(table, {}, FASHION_METHODS)
        return ours[[c for c in ours.columns if "(paper)" not in c]]
    return cnn_table(table)


# ------------------------------------------------------------------------------------------------------
# What the page says about the tables: tidy frames and comparisons computed from the runs, so that the
# prose quotes (glues) them instead of typing numbers that a rerun on another machine would contradict.
# Comparisons use the means rounded to the decimals the tables show, so a tie in the table is a tie here.

_BASE_LABELS = {"xavier": "Xavier", "he": "He"}


def network_label(base: str, arch: str) -> str:
    """The name of a reproduction row, fit for a plot's axis and a sentence:
    ``network_label("xavier", "IBCI-2") == "Xavier 2-layer"`` (the paper's networks are named by their
    number of weight layers)."""
    return f"{_BASE_LABELS.get(base, base)} {arch.split('-')[1]}-layer"


def reproduction_frame(table: pd.DataFrame,
                       paper: Mapping[Tuple[str, str], Mapping[str, Tuple[float, float, int]]],
                       methods: Sequence[str], value: str = "min_test_error", epoch: str = "epoch_of_min"
                       ) -> pd.DataFrame:
    """The long (tidy) form of :func:`comparison_table`, for :func:`neuronlab.plots.plot_reproduction`
    and for computing what the text says: one line per (base, architecture, method), in the table's
    order of rows and in the order of ``methods``.

    Columns: ``network`` (:func:`network_label`), ``base``, ``arch``, ``method`` (its label, e.g.
    ``"IBCI"``), ``key`` (e.g. ``"ibci"``), ``seeds``, ``ours_mean``, ``ours_std`` (over seeds),
    ``ours_epoch`` (mean epoch of ``epoch``) and the paper's ``paper``, ``paper_std``, ``paper_epoch``
    (NaN where ``paper`` lacks the method). A method without runs in a row is left out.
    """
    missing = [c for c in ("base", "arch", "method", "seed", value, epoch) if c not in table.columns]
    if missing:
        raise KeyError(f"columns {missing} not in the table; it has {list(table.columns)}")
    lines = []
    for (base, arch), group in table.groupby(["base", "arch"], sort=False):
        for method in methods:
            runs_ = group[group["method"] == method]
            if not len(runs_):
                continue
            ref = paper.get((base, arch), {}).get(method, (np.nan, np.nan, np.nan))
            lines.append({"network": network_label(base, arch), "base": base, "arch": arch,
                          "method": METHOD_LABELS.get(method, method), "key": method,
                          "seeds": int(runs_["seed"].nunique()), "ours_mean": float(runs_[value].mean()),
                          "ours_std": float(runs_[value].std()), "ours_epoch": float(runs_[epoch].mean()),
                          "paper": float(ref[0]), "paper_std": float(ref[1]), "paper_epoch": float(ref[2])})
    return pd.DataFrame(lines)


def _method_rows(frame: pd.DataFrame, method: str, column: str) -> pd.DataFrame:
    label = METHOD_LABELS.get(method, method)
    part = frame[frame["method"] == label]
    if not len(part):
        raise ValueError(f"no method {method!r} in the frame; it has {list(dict.fromkeys(frame['method']))}")
    return part.set_index("network")


def compare_methods(frame: pd.DataFrame, a: str, b: str, column: str = "ours_mean",
                    spread: Optional[str] = "ours_std", decimals: int = 2) -> pd.DataFrame:
    """Method ``a`` against method ``b`` (keys or labels) in every row of a :func:`reproduction_frame`.

    One line per network (rows where both have a number): ``a`` and ``b``, the means rounded to
    ``decimals``; ``diff`` = ``b - a`` (positive: ``a`` is lower, i.e. better for an error);
    ``outcome``: ``"lower"``, ``"higher"`` or ``"tie"`` (equal when rounded) for ``a``; with ``spread``,
    ``noise`` = the larger of the two standard deviations and ``clear`` = ``|diff| > noise`` (the gap is
    larger than the seed-to-seed spread of either method).
    """
    left, right = _method_rows(frame, a, column), _method_rows(frame, b, column)
    networks = [n for n in left.index if n in right.index and pd.notna(left.loc[n, column])
                and pd.notna(right.loc[n, column])]
    out = pd.DataFrame(index=pd.Index(networks, name="network"))
    out["a"] = left.loc[networks, column].round(decimals)
    out["b"] = right.loc[networks, column].round(decimals)
    out["diff"] = (out["b"] - out["a"]).round(decimals)
    out["outcome"] = np.where(out["diff"] > 0, "lower", np.where(out["diff"] < 0, "higher", "tie"))
    if spread is not None:
        out["noise"] = np.maximum(left.loc[networks, spread], right.loc[networks, spread]).round(decimals)
        out["clear"] = out["diff"].abs() > out["noise"]
    return out


def _span(values: Sequence[float], decimals: int) -> str:
    low, high = min(values), max(values)
    return f"{low:.{decimals}f}" if round(high - low, decimals) == 0 else f"{low:.{decimals}f} to {high:.{decimals}f}"


def comparison_phrase(comparison: pd.DataFrame, a: str, b: str, decimals: int = 2) -> str:
    """A :func:`compare_methods` result in words, for the page's prose: in how many rows ``a`` is lower
    than ``b``, higher, or level, each with the range of the gaps. ``a`` and ``b`` are the names written.

    >>> frame = pd.DataFrame({
    ...     "network": ["X", "X", "Y", "Y", "Z", "Z"], "method": ["A", "B"] * 3,
    ...     "ours_mean": [1.0, 1.5, 2.0, 2.1, 3.0, 3.0], "ours_std": [0.1] * 6})
    >>> print(comparison_phrase(compare_methods(frame, "A", "B"), "A", "B"))
    A is lower than B in 2 of 3 rows (by 0.10 to 0.50 points) and level with it in 1
    """
    rows = len(comparison)
    lower = comparison.loc[comparison["outcome"] == "lower", "diff"].tolist()
    higher = [-d for d in comparison.loc[comparison["outcome"] == "higher", "diff"]]
    ties = int((comparison["outcome"] == "tie").sum())
    text = f"{a} is lower than {b} in {count_phrase(len(lower), rows)} rows"
    if lower:
        text += f" (by {_span(lower, decimals)} points)"
    rest = []
    if higher:
        rest.append(f"higher in {len(higher)} (by {_span(higher, decimals)} points)")
    if ties:
        rest.append(f"level with it in {ties}")
    return text + (", " if len(rest) > 1 else " and ") + join_phrase(rest) if rest else text


def best_counts(frame: pd.DataFrame, column: str = "ours_mean", decimals: int = 2) -> pd.DataFrame:
    """For every method of a :func:`reproduction_frame`, in how many rows its mean (rounded to
    ``decimals``) is the lowest and the highest of the methods in the frame.

    Columns: ``lowest`` (rows where it is lowest, alone or tied), ``sole_lowest`` (alone), ``highest``,
    ``sole_highest``; index: the method labels in the frame's order. ``rows`` (an attribute of the
    result, ``.attrs["rows"]``) is the number of rows compared.
    """
    wide = frame.pivot(index="network", columns="method", values=column).round(decimals).dropna()
    methods = list(dict.fromkeys(frame["method"]))
    wide = wide[methods]
    low, high = wide.min(axis=1), wide.max(axis=1)
    is_low, is_high = wide.eq(low, axis=0), wide.eq(high, axis=0)
    out = pd.DataFrame({"lowest": is_low.sum(), "sole_lowest": is_low[is_low.sum(axis=1) == 1].sum(),
                        "highest": is_high.sum(), "sole_highest": is_high[is_high.sum(axis=1) == 1].sum()})
    out = out.loc[methods].astype(int)
    out.attrs["rows"] = len(wide)
    return out


def first_epoch_below(a: Sequence[float], b: Sequence[float]) -> Optional[int]:
    """The first epoch (counted from 1) from which curve ``a`` stays strictly below curve ``b`` to the
    end, or ``None`` when it is not below at the last epoch.

    >>> first_epoch_below([5, 3, 4, 2, 1], [4, 4, 3, 3, 3])
    4
    >>> first_epoch_below([1, 2], [2, 2]) is None
    True
    """
    if len(a) != len(b) or not len(a):
        raise ValueError(f"two curves of the same non-zero length needed, got {len(a)} and {len(b)}")
    below = np.asarray(a, dtype=float) < np.asarray(b, dtype=float)
    if not below[-1]:
        return None
    above = np.flatnonzero(~below)
    return int(above[-1] + 2) if len(above) else 1


