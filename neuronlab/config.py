"""Run configuration shared by every chapter: profiles, seeds, devices and the data folder.

Two profiles exist:

``quick`` (the default)
    Offline data that ships with packages, few epochs, minutes on a CPU. Continuous integration and
    the book build run this profile.
``full``
    Paper-scale data and epochs, meant for a GPU (e.g. Colab). Datasets are downloaded on first use.

The profile comes from the argument, else from the ``NEURONLAB_PROFILE`` environment variable, else
``quick``. Notebooks expose it as a visible parameter in their first code cell.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

#: The two profile names, ``"quick"`` (the default) and ``"full"``.
PROFILES = ("quick", "full")
#: The environment variable that picks the profile (``quick`` or ``full``) when none is passed.
PROFILE_ENV = "NEURONLAB_PROFILE"
#: The environment variable naming the folder for downloaded datasets (default ``~/.neuronlab/data``).
DATA_ENV = "NEURONLAB_DATA"
#: The environment variable naming the folder for new runs (default ``~/.neuronlab/runs``).
RUNS_ENV = "NEURONLAB_RUNS"


def get_profile(profile: Optional[str] = None) -> str:
    """Return the active profile name, ``"quick"`` or ``"full"``.

    Args:
        profile: an explicit choice; ``None`` reads ``NEURONLAB_PROFILE`` and falls back to ``"quick"``.

    Raises:
        ValueError: the name is not one of :data:`PROFILES`.
    """
    chosen = profile if profile is not None else os.environ.get(PROFILE_ENV, "quick")
    chosen = chosen.strip().lower()
    if chosen not in PROFILES:
        raise ValueError(
            f"Unknown profile {chosen!r}: use one of {PROFILES} "
            f"(set it with the {PROFILE_ENV} environment variable or the notebook's PROFILE parameter)."
        )
    return chosen


def data_dir(root: Optional[Union[str, Path]] = None) -> Path:
    """Return the folder where downloadable datasets are stored.

    Order: the ``root`` argument, the ``NEURONLAB_DATA`` environment variable, ``~/.neuronlab/data``.
    The folder is not created here; loaders create it only when they are about to write into it.
    """
    return _user_folder(root, DATA_ENV, "data")


def runs_dir(root: Optional[Union[str, Path]] = None) -> Path:
    """Return the folder where new training runs are saved (and read back: sweeps resume from it).

    Order: the ``root`` argument, the ``NEURONLAB_RUNS`` environment variable, ``~/.neuronlab/runs``. The
    notebooks (``RUNS_DIR``) and the command line (``--runs``) resolve it the same way, so both find the
    same runs wherever they are started; point it at a mounted Google Drive on Colab.
    """
    return _user_folder(root, RUNS_ENV, "runs")


def _user_folder(root: Optional[Union[str, Path]], env_var: str, default: str) -> Path:
    """The argument, else the environment variable, else ``~/.neuronlab/<default>``; ``~`` expanded."""
    chosen = root if root is not None else os.environ.get(env_var) or Path.home() / ".neuronlab" / default
    return Path(chosen).expanduser()


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) and return a fresh ``torch.Generator`` at ``seed``.

    Notebooks call this once, in the setup cell, so that every random draw below is reproducible.
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(int(seed))
    np.random.seed(int(seed) % (2**32))
    torch.manual_seed(int(seed))
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(int(seed))
    return torch.Generator().manual_seed(int(seed))


def get_device(device: Optional[Union[str, torch.device]] = None) -> torch.device:
    """Return ``device`` as a ``torch.device``; ``None`` picks CUDA when available, else the CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_description(device: torch.device) -> str:
    """A human-readable name for ``device`` (the GPU model on CUDA, core count on CPU)."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    threads = torch.get_num_threads()
    return f"cpu ({threads} thread{'s' if threads != 1 else ''})"
