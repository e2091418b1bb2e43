"""What every chapter's experiments module shares: the notebook setup, the store-path rule, running an
experiment into its stores, and the result schema of a training run.

**Store-path rule.** The runs of experiment ``exp`` of chapter ``chNN`` in profile ``p`` live in the
:class:`~neuronlab.runs.RunStore` folder ``<root>/chNN/<exp>_<p>``. ``root`` is the runs folder
(:func:`neuronlab.config.runs_dir`: ``RUNS_DIR`` in a notebook, ``--runs`` on the command line), except
for the experiments whose quick-profile runs are stored with the book (:data:`STORED_RESULTS`, i.e.
``notebooks/results``), which are read from there. Notebook and command line both call
:meth:`ChapterRun.store_path`, so what one writes the other reads.

**Result schema.** Every training run returns :func:`history_summary`'s keys (``test_error``,
``best_epoch``, ``val_error``, ``min_test_error``, ``epoch_of_min``, ``seconds``, the per-epoch
``test_error_curve`` and ``train_loss_curve``) plus what its chapter measures.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import pandas as pd
import torch

from ..config import device_description, get_device, get_profile, runs_dir as resolve_runs_dir, seed_everything
from ..data import load_dataset
from ..plots import use_book_style
from ..runs import RunStore

__all__ = ["STORED_RESULTS", "ChapterRun", "store_path", "setup_chapter", "run_chapter_experiment",
           "history_summary", "cached_dataset", "check_dataset", "Timer"]

#: The runs stored with the book (quick profile), in the repository beside the notebooks.
STORED_RESULTS = Path(__file__).resolve().parents[2] / "notebooks" / "results"


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
    """

    chapter: str
    profile: str
    seed: int
    dataset: str
    device: torch.device
    runs_dir: Path
    stored: Tuple[str, ...] = field(default=())

    def root(self, experiment: str) -> Path:
        """The root folder of ``experiment``'s store: the book's stored results or :attr:`runs_dir`."""
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
        return (f"neuronlab {self.chapter} | profile: {self.profile} | data: {self.dataset} | "
                f"device: {device_description(self.device)} | torch {torch.__version__} | seed {self.seed}")


def setup_chapter(chapter: str, settings: Mapping[str, Mapping[str, Any]], profile: Optional[str], seed: int,
                  runs_dir: Optional[Union[str, Path]] = None, device: Optional[str] = None,
                  stored: Sequence[str] = ()) -> Tuple[Dict[str, Any], ChapterRun]:
    """Check the profile, seed everything, apply the book's plot style and print the chapter's header.

    The device is ``device`` if given, else the profile's (``settings[profile]["device"]``: the quick
    profile runs on the CPU so that its numbers match the stored ones; ``None`` picks a GPU when there
    is one). Every run function of the chapter is given :attr:`ChapterRun.device`, so the header states
    the device the runs really use.

    Returns:
        ``(SETTINGS, RUN)``: the profile's settings (a copy) and the :class:`ChapterRun`.
    """
    profile = get_profile(profile)
    chosen = dict(settings[profile])
    run = ChapterRun(chapter=chapter, profile=profile, seed=int(seed), dataset=chosen["dataset"],
                     device=get_device(device if device is not None else chosen.get("device")),
                     runs_dir=resolve_runs_dir(runs_dir), stored=tuple(stored))
    seed_everything(seed)
    use_book_style()
    print(run)
    return chosen, run


def run_chapter_experiment(grid: Sequence[Mapping[str, Any]], name: str, run: ChapterRun,
                           run_config: Callable[[Dict[str, Any], torch.device], Mapping[str, Any]],
                           progress: bool = False) -> pd.DataFrame:
    """Run (or resume, or read back) the configurations of experiment ``name``; return their table.

    A configuration with an ``experiment`` key belongs to that experiment's store (chapter 3's tables
    share runs this way: a run two tables need is trained and stored once); the others go to ``name``'s.
    Every finished run is saved at once, so a killed sweep resumes where it stopped.

    Args:
        grid: the configurations, e.g. ``experiment_grid(name, profile)``.
        run: the chapter's :class:`ChapterRun` (profile, device, folders).
        run_config: ``run_config(config, device) -> result`` trains one configuration.
        progress: print how many runs are reused and show a progress bar (the command line does).
    """
    owners: Dict[str, List[Mapping[str, Any]]] = {}
    for config in grid:
        owners.setdefault(config.get("experiment", name), []).append(config)
    tables = [run.store(owner).sweep(configs, lambda cfg: run_config(cfg, run.device), progress=progress)
              for owner, configs in owners.items()]
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
    """:func:`neuronlab.data.load_dataset` ``(name, seed=0, **options)``, loaded once per process: a sweep's
    runs share their data (the split is seeded, so every run sees the same one)."""
    key = (name, tuple(sorted((k, str(v)) for k, v in options.items())))
    if key not in _DATASETS:
        _DATASETS[key] = load_dataset(name, seed=0, **options)
    return _DATASETS[key]


def check_dataset(dataset: Optional[str], data) -> None:
    """A configuration that names a dataset must be given that dataset (it keys the stored result)."""
    if dataset is not None and dataset != getattr(data, "name", None):
        raise ValueError(f"the configuration says dataset={dataset!r} but the data passed is "
                         f"{getattr(data, 'name', None)!r}")
