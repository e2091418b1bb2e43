"""What every chapter's experiments module shares: the notebook setup, the store-path rule, running an
experiment into its stores, and the result schema of a training run.

**Store-path rule.** The runs of experiment ``exp`` of chapter ``chNN`` in profile ``p`` live in the
:class:`~neuronlab.runs.RunStore` folder ``<root>/chNN/<exp>_<p>``. ``root`` is the runs folder
(:func:`neuronlab.config.runs_dir`: ``RUNS_DIR`` in a notebook, ``--runs`` on the command line), except
for the experiments whose quick-profile runs are stored with the book (:data:`STORED_RESULTS`, i.e.
``notebooks/results``), which are read from there. Notebook and command line both call
:meth:`ChapterRun.store_path`, so what one writes the other reads.

**Smoke mode** (``neuronlab.experiments.smoke``; ``setup(..., smoke=True)``, ``--smoke`` or
``NEURONLAB_SMOKE=1``): every experiment runs through its real code paths with the smoke budget
(``smoke.smoke_grid``) on tiny generated data files; its runs are stored under
``<runs_dir>/smoke/chNN/<exp>_<profile>``, never in the book's stored results, and are trained afresh in every
process.

**Progress.** In the full profile a sweep shows a progress bar over its runs and, nested, one over the epochs
of the run in progress; the quick profile (the book build) stays quiet.

**Result schema.** Every training run returns :func:`history_summary`'s keys (``test_error``,
``best_epoch``, ``val_error``, ``min_test_error``, ``epoch_of_min``, ``seconds``, the per-epoch
``test_error_curve`` and ``train_loss_curve``) plus what its chapter measures.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import pandas as pd
import torch

from ..config import data_dir, device_description, get_device, get_profile, runs_dir as resolve_runs_dir
from ..config import seed_everything
from ..data import load_dataset
from ..plots import use_book_style
from ..runs import RunStore
from . import smoke as smoke_mode

__all__ = ["STORED_RESULTS", "SMOKE_FOLDER", "ChapterRun", "store_path", "setup_chapter", "experiment_configs",
           "show_progress", "run_chapter_experiment", "history_summary", "cached_dataset", "check_dataset", "Timer"]

#: The runs stored with the book (quick profile), in the repository beside the notebooks.
STORED_RESULTS = Path(__file__).resolve().parents[2] / "notebooks" / "results"
#: The folder under the runs folder that holds smoke runs (``neuronlab.experiments.smoke``).
SMOKE_FOLDER = "smoke"


def store_path(root: Union[str, Path], chapter: str, experiment: str, profile: str) -> Path:
    """``<root>/<chapter>/<experiment>_<profile>``: the one rule for where an experiment's runs live."""
    return Path(root) / chapter / f"{experiment}_{profile}"


@dataclass(frozen=True)
class ChapterRun:
    """Where and how a chapter's runs happen; the ``RUN`` of every notebook (see :func:`setup_chapter`).

    Attributes:
        chapter: ``"ch01"`` ... ``"ch05"``.
        profile: ``"quick"`` or ``"full"``.
        seed: the notebook's seed.
        dataset: the chapter's main dataset in this profile.
        device: the device every training run of the chapter uses.
        runs_dir: the root folder of new runs.
        stored: experiments whose quick-profile runs ship with the book (read from :data:`STORED_RESULTS`).
        smoke: smoke mode (``neuronlab.experiments.smoke``): the smoke budget on tiny generated data,
            stored under ``<runs_dir>/smoke``.
        data_dir: in smoke mode, the folder of tiny data files the runs load (``None`` otherwise: the data
            folder of :func:`neuronlab.config.data_dir`).
    """

    chapter: str
    profile: str
    seed: int
    dataset: str
    device: torch.device
    runs_dir: Path
    stored: Tuple[str, ...] = field(default=())
    smoke: bool = False
    data_dir: Optional[Path] = None

    def root(self, experiment: str) -> Path:
        """The root folder of ``experiment``'s store: ``<runs_dir>/smoke`` in smoke mode, else the book's
        stored results (quick profile, :attr:`stored` experiments) or :attr:`runs_dir`."""
        if self.smoke:
            return self.runs_dir / SMOKE_FOLDER
        if self.profile == "quick" and experiment in self.stored and STORED_RESULTS.is_dir():
            return STORED_RESULTS
        return self.runs_dir

    def store_path(self, experiment: str) -> Path:
        """The folder of ``experiment``'s runs (:func:`store_path` under :meth:`root`)."""
        return store_path(self.root(experiment), self.chapter, experiment, self.profile)

    def store(self, experiment: str) -> RunStore:
        """The :class:`~neuronlab.runs.RunStore` of ``experiment``."""
        return RunStore(self.store_path(experiment))

    def __str__(self) -> str:
        profile, data = self.profile, self.dataset
        if self.smoke:
            profile += " (smoke: first seed, 1-2 epochs per run)"
            data += f" (smoke: tiny generated files in {self.data_dir}, not the real datasets)"
        # Three short lines: the page's code column clips lines longer than about 80 characters.
        return (f"neuronlab {self.chapter} | profile: {profile} | seed {self.seed}\ndata: {data}\n"
                f"device: {device_description(self.device)} | torch {torch.__version__}")


def setup_chapter(chapter: str, settings: Mapping[str, Mapping[str, Any]], profile: Optional[str], seed: int,
                  runs_dir: Optional[Union[str, Path]] = None, device: Optional[str] = None,
                  stored: Sequence[str] = (), smoke: Optional[bool] = None) -> Tuple[Dict[str, Any], ChapterRun]:
    """Check the profile, seed everything, apply the book's plot style and print the chapter's header.

    The device is ``device`` if given, else the profile's (``settings[profile]["device"]``: the quick
    profile runs on the CPU so that its numbers match the stored ones; ``None`` picks a GPU when there
    is one). Every run function of the chapter is given :attr:`ChapterRun.device`, so the header states
    the device the runs really use.

    ``smoke`` (default: the ``NEURONLAB_SMOKE`` environment variable) turns on smoke mode
    (``neuronlab.experiments.smoke``): the tiny data files are written into a temporary folder
    (:attr:`ChapterRun.data_dir`) and the header says so.

    Returns:
        ``(SETTINGS, RUN)``: the profile's settings (a copy) and the :class:`ChapterRun`.
    """
    profile = get_profile(profile)
    chosen = dict(settings[profile])
    smoke = smoke_mode.smoke_requested(smoke)
    run = ChapterRun(chapter=chapter, profile=profile, seed=int(seed), dataset=chosen["dataset"],
                     device=get_device(device if device is not None else chosen.get("device")),
                     runs_dir=resolve_runs_dir(runs_dir), stored=tuple(stored), smoke=smoke,
                     data_dir=smoke_mode.tiny_data_root() if smoke else None)
    seed_everything(seed)
    use_book_style()
    print(run)
    return chosen, run


def experiment_configs(grid: Sequence[Mapping[str, Any]], run: ChapterRun) -> List[Dict[str, Any]]:
    """The configurations ``run`` trains of an experiment's ``grid``: all of them, or in smoke mode their
    smoke budget (``smoke.smoke_grid``)."""
    return smoke_mode.smoke_grid(grid) if run.smoke else [dict(config) for config in grid]


def show_progress(progress: Optional[bool], run: ChapterRun) -> bool:
    """Whether to show progress bars: ``progress``, or when it is ``None`` whether ``run`` is in the full
    profile (the quick profile, which the book build runs, stays quiet)."""
    return run.profile == "full" if progress is None else bool(progress)


_SMOKE_CLEARED: set = set()   # smoke stores emptied by this process


def _fresh_smoke_store(store: RunStore) -> RunStore:
    """Empty a smoke store the first time this process uses it, so that smoke runs are trained, not read back."""
    if store.path not in _SMOKE_CLEARED:
        for record in store.path.glob("*.json"):
            record.unlink()
        _SMOKE_CLEARED.add(store.path)
    return store


def run_chapter_experiment(grid: Sequence[Mapping[str, Any]], name: str, run: ChapterRun,
                           run_config: Callable[..., Mapping[str, Any]],
                           progress: Optional[bool] = None) -> pd.DataFrame:
    """Run (or resume, or read back) the configurations of experiment ``name``; return their table.

    A configuration with an ``experiment`` key belongs to that experiment's store (chapter 3's tables
    share runs this way: a run two tables need is trained and stored once); the others go to ``name``'s.
    Every finished run is saved at once, so a killed sweep resumes where it stopped. In smoke mode the
    grid is cut to its smoke budget (:func:`experiment_configs`) and the data load from the tiny files of
    :attr:`ChapterRun.data_dir`.

    Args:
        grid: the configurations, e.g. ``experiment_grid(name, profile)``.
        run: the chapter's :class:`ChapterRun` (profile, device, folders, smoke mode).
        run_config: ``run_config(config, device) -> result`` trains one configuration; with progress on it is
            called as ``run_config(config, device, progress=True)`` and shows a bar over the run's epochs.
        progress: print how many runs are reused and show a progress bar over the runs with, nested, one
            over the epochs of the current run; ``None``: on in the full profile, off in the quick one.
    """
    progress = show_progress(progress, run)
    owners: Dict[str, List[Mapping[str, Any]]] = {}
    for config in experiment_configs(grid, run):
        owners.setdefault(config.get("experiment", name), []).append(config)

    def train(config: Dict[str, Any]) -> Mapping[str, Any]:
        return run_config(config, run.device, progress=True) if progress else run_config(config, run.device)

    tables = []
    with smoke_mode.tiny_data(run.data_dir) if run.smoke else nullcontext():
        for owner, configs in owners.items():
            store = _fresh_smoke_store(run.store(owner)) if run.smoke else run.store(owner)
            tables.append(store.sweep(configs, train, progress=progress))
    tables = [t for t in tables if len(t)]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


class Timer:
    """Wall time of a ``with`` block, in its ``seconds`` attribute."""

    def __enter__(self) -> "Timer":
        self._start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc) -> bool:
        self.seconds = time.perf_counter() - self._start
        return False


def history_summary(history, seconds: float) -> Dict[str, Any]:
    """The result schema every training run shares, from a :class:`neuronlab.train.History`.

    ``test_error`` (%): the test error at the epoch of best validation accuracy (our honest metric, no
    peeking at the test set) and ``best_epoch``, that epoch; ``val_error`` (%) there; ``min_test_error``
    and ``epoch_of_min``: the lowest test error over the epochs (what the IBCI paper reports);
    ``seconds``: the run's wall time; ``test_error_curve`` and ``train_loss_curve``: one value per epoch.
    """
    table = history.table
    return {
        "test_error": float(history.test_error_at_best),
        "best_epoch": int(history.best_epoch),
        "val_error": 100.0 * (1.0 - float(history.best["val_acc"])),
        "min_test_error": float(history.min_test_error),
        "epoch_of_min": int(history.epoch_of_min_test_error),
        "seconds": float(seconds),
        "test_error_curve": (100 * (1 - table["test_acc"])).round(3).tolist(),
        "train_loss_curve": table["train_loss"].astype(float).round(5).tolist(),
    }


_DATASETS: Dict[Tuple, Any] = {}


def cached_dataset(name: str, **options: Any):
    """:func:`neuronlab.data.load_dataset` ``(name, seed=0, **options)``, loaded once per process and data
    folder: a sweep's runs share their data (the split is seeded, so every run sees the same one). Inside
    smoke mode's ``smoke.tiny_data`` the tiny files' split sizes are added."""
    options = {**smoke_mode.load_options(name), **options}
    key = (name, str(data_dir()), tuple(sorted((k, str(v)) for k, v in options.items())))
    if key not in _DATASETS:
        _DATASETS[key] = load_dataset(name, seed=0, **options)
    return _DATASETS[key]


def check_dataset(dataset: Optional[str], data) -> None:
    """A configuration that names a dataset must be given that dataset (it keys the stored result)."""
    if dataset is not None and dataset != getattr(data, "name", None):
        raise ValueError(f"the configuration says dataset={dataset!r} but the data passed is "
                         f"{getattr(data, 'name', None)!r}")
