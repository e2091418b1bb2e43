"""neuronlab.config: profile resolution, data folder, seeding."""

import random

from pathlib import Path

import numpy as np
import pytest
import torch

from neuronlab.config import data_dir, get_profile, runs_dir, seed_everything


def test_profile_from_argument_environment_and_default(monkeypatch):
    monkeypatch.delenv("NEURONLAB_PROFILE", raising=False)
    assert get_profile() == "quick"
    monkeypatch.setenv("NEURONLAB_PROFILE", " Full ")
    assert get_profile() == "full"
    assert get_profile("quick") == "quick"  # an explicit argument wins
    with pytest.raises(ValueError, match="NEURONLAB_PROFILE"):
        get_profile("paper")


def test_data_dir_order(monkeypatch, tmp_path):
    monkeypatch.delenv("NEURONLAB_DATA", raising=False)
    assert data_dir().parts[-2:] == (".neuronlab", "data")
    monkeypatch.setenv("NEURONLAB_DATA", str(tmp_path))
    assert data_dir() == tmp_path
    assert data_dir(tmp_path / "x") == tmp_path / "x"
    assert not (tmp_path / "x").exists()  # resolving a folder never creates it


def test_seed_everything_makes_all_generators_repeat():
    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()

    seed_everything(3)
    first = draw()
    gen = seed_everything(3)
    assert draw() == first
    assert torch.equal(torch.rand(2, generator=gen), torch.rand(2, generator=torch.Generator().manual_seed(3)))
    with pytest.raises(ValueError):
        seed_everything(-1)


def test_runs_dir_argument_then_environment_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("NEURONLAB_RUNS", str(tmp_path / "env"))
    assert runs_dir(tmp_path / "arg") == tmp_path / "arg"
    assert runs_dir() == tmp_path / "env"
    monkeypatch.delenv("NEURONLAB_RUNS")
    assert runs_dir() == Path.home() / ".neuronlab" / "runs"
