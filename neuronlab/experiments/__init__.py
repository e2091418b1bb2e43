"""The papers' experiments, one module per chapter, all of the same shape.

Each ``chNN_*`` module has

* ``SETTINGS[profile]`` -- data, epochs, seeds and device of the ``quick`` and ``full`` profiles;
* ``EXPERIMENTS`` -- the names of its experiments, and ``STORED``: those whose quick-profile runs are
  stored with the book;
* ``setup(profile, seed, runs_dir)`` -- the notebook's first line: ``SETTINGS, RUN = ch03.setup(...)``;
* ``experiment_grid(name, profile)`` -- the run configurations of an experiment;
* ``train_*_run(data, **config)`` -- one run of each kind, and ``run_config(config, device)``, which
  loads the configuration's data and calls the right one;
* ``run_experiment(name, RUN)`` -- run, resume or read back an experiment (every finished run is saved
  at once, :mod:`neuronlab.runs`);
* ``comparison_table(...)`` -- the paper's numbers beside ours, and ``summary(name, table)``, the table
  the command line prints.

From a shell, ``python -m neuronlab.experiments ch03 --profile full --device cuda`` runs a chapter's
experiments into the same folders the notebook reads (``--list`` shows what exists).

:mod:`neuronlab.experiments.bench` times what the methods cost (``python scripts/bench.py``).
"""

from importlib import import_module
from types import ModuleType

__all__ = ["CHAPTERS", "chapter"]

#: Chapter name -> module name.
CHAPTERS = {
    "ch01": "ch01_signals",
    "ch02": "ch02_campaign",
    "ch03": "ch03_nsr",
    "ch04": "ch04_cooperating",
    "ch05": "ch05_neurons",
}


def chapter(name: str) -> ModuleType:
    """The experiments module of chapter ``name`` (``"ch03"`` or ``"3"``)."""
    key = name if name in CHAPTERS else f"ch{int(name):02d}" if name.isdigit() else name
    if key not in CHAPTERS:
        raise ValueError(f"unknown chapter {name!r}; choose one of {list(CHAPTERS)}")
    return import_module(f".{CHAPTERS[key]}", __name__)
