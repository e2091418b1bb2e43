"""Smoke mode: every experiment of every chapter's full profile runs end to end through the real code paths
(real loaders on tiny generated files, real run functions, models and protocols) with a tiny budget; the
runs land apart from the book's results and the user's runs; progress bars and devices reach ``fit``."""

import math

import pandas as pd
import pytest
import torch

from neuronlab.config import data_dir
from neuronlab.experiments import CHAPTERS, chapter
from neuronlab.experiments import __main__ as cli
from neuronlab.experiments import smoke
from neuronlab.experiments._common import STORED_RESULTS, cached_dataset
from neuronlab.runs import config_key

CHAPTER_NAMES = list(CHAPTERS)
SCHEMA = ("test_error", "best_epoch", "val_error", "min_test_error", "epoch_of_min", "seconds", "test_error_curve",
          "train_loss_curve")


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """An empty NEURONLAB_DATA (a loader that escaped the tiny files would fail there: no network) and an
    empty runs folder."""
    data, runs = tmp_path / "data", tmp_path / "runs"
    data.mkdir()
    monkeypatch.setenv("NEURONLAB_DATA", str(data))
    monkeypatch.delenv("NEURONLAB_SMOKE", raising=False)
    return data, runs


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny runs gain nothing from a second thread, and two threads slow to a crawl when another process
    shares this 2-core machine; restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _stored_files():
    return sorted(p for p in STORED_RESULTS.rglob("*") if p.is_file())


def _epochs(config):
    return config.get("epochs", config.get("max_epochs"))


def _setting(config):
    """A configuration's key without its seed and budget."""
    budget = ("seed", "seeds", "epochs", "max_epochs", "track_every", "num_train", "num_test")
    return config_key({k: v for k, v in config.items() if k not in budget})


# ------------------------------------------------------------------------------------------------ budget
def test_smoke_grid_keeps_the_first_seed_of_every_setting_and_caps_the_epochs():
    grid = [dict(arch=a, seed=s, epochs=100, lam=l) for a in ("MLP-3", "MLP-4") for l in (0.1, 1.0) for s in (0, 1, 2)]
    small = smoke.smoke_grid(grid)
    assert small == [dict(arch=a, seed=0, epochs=1, lam=l) for a in ("MLP-3", "MLP-4") for l in (0.1, 1.0)]
    early = smoke.smoke_grid([dict(depth=2, seed=s, max_epochs=300, patience=5) for s in (0, 1)])
    assert early == [dict(depth=2, seed=0, max_epochs=2, patience=5)]
    noise = smoke.smoke_grid([dict(fraction=0.2, seed=1, epochs=300, track_every=10)])
    assert noise == [dict(fraction=0.2, seed=1, epochs=2, track_every=1)]
    assert smoke.smoke_grid([dict(arch="SmallCNN", seed=0, epochs=1)]) == [dict(arch="SmallCNN", seed=0, epochs=1)]
    group = smoke.smoke_grid([dict(seeds=[3, 4, 5], num_train=5000, num_test=10, epochs=3)])   # chapter 5
    assert group == [dict(seeds=[3, 4], num_train=smoke.SMOKE_GENERATED["num_train"], num_test=10, epochs=1)]


@pytest.mark.parametrize("name", CHAPTER_NAMES)
def test_every_setting_of_the_full_profile_is_in_its_smoke_budget(name):
    module = chapter(name)
    for experiment in module.EXPERIMENTS:
        full = module.experiment_grid(experiment, "full")
        small = smoke.smoke_grid(full)
        assert {_setting(c) for c in small} == {_setting(c) for c in full}
        assert len(small) == len({_setting(c) for c in full})
        assert all(_epochs(c) <= smoke.SMOKE_TRACKED_EPOCHS for c in small)


# --------------------------------------------------------------------------------------------- tiny data
def test_tiny_files_load_without_network_and_only_inside_the_smoke_context(isolated, tmp_path):
    from neuronlab.data import DatasetNotAvailableError, load_dataset

    folders = smoke.write_tiny_datasets(tmp_path / "tiny")
    assert set(folders) == set(smoke.TINY_DATASETS)
    with smoke.tiny_data(tmp_path / "tiny") as root:
        assert data_dir() == root
        for name in ("mnist", "fashion-mnist", "cifar10"):
            data = load_dataset(name, download=False, **smoke.load_options(name))
            assert str(root) in data.source and sum(data.sizes.values()) < 500
        for name in ("pubmed", "amazon-photo", "amazon-computers", "wikics"):
            graph = load_dataset(name, download=False)
            assert graph.num_nodes <= 530 and graph.train_mask.any() and str(root) in graph.source
    assert data_dir() == isolated[0] and smoke.load_options("mnist") == {}
    with pytest.raises(DatasetNotAvailableError):
        load_dataset("mnist", download=False)          # outside the context: the (empty) user folder again


# ------------------------------------------------------------------------------------------------- runs
@pytest.mark.parametrize("name", CHAPTER_NAMES)
def test_every_full_profile_experiment_runs_end_to_end_in_smoke_mode(name, isolated, capsys):
    data, runs = isolated
    module = chapter(name)
    stored_before = _stored_files()
    tables = cli.main([name, "--profile", "full", "--runs", str(runs), "--smoke"])
    out = capsys.readouterr().out
    header = out.splitlines()[:3]
    assert header[0].startswith(f"neuronlab {name} | profile: full (smoke") and "tiny generated files" in header[1]
    assert set(tables) == set(module.EXPERIMENTS)
    for experiment, table in tables.items():
        configs = smoke.smoke_grid(module.experiment_grid(experiment, "full"))
        assert len(table) == len(configs), experiment
        for _, row in table.iterrows():
            where = f"{name} {experiment} {dict(row[[c for c in row.index if c in configs[0]]])}"
            assert all(key in row for key in SCHEMA), where
            for key in ("test_error", "val_error", "min_test_error", "seconds"):
                assert math.isfinite(row[key]) and row[key] >= 0, where
            assert not row.get("diverged", False), where
            epochs = len(row["test_error_curve"])
            assert 1 <= epochs <= smoke.SMOKE_TRACKED_EPOCHS and len(row["train_loss_curve"]) == epochs, where
            assert 1 <= row["best_epoch"] <= epochs and 1 <= row["epoch_of_min"] <= epochs, where
            assert all(math.isfinite(v) for v in row["test_error_curve"] + row["train_loss_curve"]), where
        owners = {c.get("experiment", experiment) for c in configs}
        for owner in owners:
            assert list((runs / "smoke" / name / f"{owner}_full").glob("*.json")), (experiment, owner)
        assert isinstance(module.summary(experiment, table), pd.DataFrame)
    # nothing outside the smoke folder: not the book's results, not the normal runs, not the user's data
    assert _stored_files() == stored_before
    assert [p.name for p in runs.iterdir()] == ["smoke"]
    assert list(data.iterdir()) == []


@pytest.mark.parametrize("name", CHAPTER_NAMES)
def test_smoke_mode_from_the_environment_and_a_second_session_trains_again(name, isolated, monkeypatch):
    data, runs = isolated
    module = chapter(name)
    monkeypatch.setenv("NEURONLAB_SMOKE", "1")
    _, run = module.setup("full", 0, str(runs))
    assert run.smoke and run.store_path("x") == runs / "smoke" / name / "x_full"
    assert (run.data_dir / "MNIST" / "raw").is_dir()
    _, quick = module.setup("quick", 0, str(runs))
    for experiment in module.STORED:  # never the book's stored results
        assert STORED_RESULTS not in quick.store_path(experiment).parents
    _, normal = module.setup("full", 0, str(runs), smoke=False)
    assert not normal.smoke and normal.store_path("x") == runs / name / "x_full"


def test_a_smoke_store_is_emptied_once_per_process(isolated, monkeypatch):
    from neuronlab.experiments import _common

    data, runs = isolated
    module = chapter("ch01")
    _, run = module.setup("full", 0, str(runs), smoke=True)
    store = run.store("training")
    stale = smoke.smoke_grid(module.experiment_grid("training", "full"))[0]
    store.put(stale, {"test_error": -1.0})
    calls = []
    monkeypatch.setattr(module, "run_config", lambda config, device, progress=False: calls.append(config) or dict(
        test_error=1.0))
    monkeypatch.setattr(_common, "_SMOKE_CLEARED", set())
    table = module.run_experiment("training", run, progress=False)
    assert len(calls) == len(table) == 8 and (table["test_error"] == 1.0).all()   # the stale record was dropped
    module.run_experiment("training", run, progress=False)
    assert len(calls) == 8                                                        # then reused in this process


# ----------------------------------------------------------------------------------- progress and devices
class Reached(Exception):
    """Raised by the spy in place of training."""


def _spy_fit(module, monkeypatch):
    seen = []

    def fit(model, data, **kwargs):
        seen.append((kwargs.get("device"), kwargs.get("progress")))
        raise Reached

    monkeypatch.setattr(module, "fit", fit)
    return seen


@pytest.mark.parametrize("name", CHAPTER_NAMES)
def test_every_run_function_trains_on_the_device_it_is_given(name, isolated, monkeypatch):
    """Every configuration of every experiment of the full profile (its smoke budget, on the tiny files)
    reaches ``fit`` with the device and the progress flag ``run_config`` was given: no run picks its own."""
    module = chapter(name)
    seen = _spy_fit(module, monkeypatch)
    target = torch.device("cuda", 7)          # no machine has it: only passing it through can produce it
    count = 0
    with smoke.tiny_data():
        for experiment in module.EXPERIMENTS:
            for index, config in enumerate(smoke.smoke_grid(module.experiment_grid(experiment, "full"))):
                progress = index % 2 == 1
                with pytest.raises(Reached):
                    module.run_config(config, target, progress=progress)
                assert seen[-1] == (target, progress), (experiment, config)
                count += 1
        if name == "ch03":
            data = cached_dataset("mnist", flatten=True)
            with pytest.raises(Reached):
                module.steadiness_history(data, epochs=1, device=target, progress=True)
            assert seen[-1] == (target, True)
            count += 1
    assert len(seen) == count


@pytest.mark.parametrize("name", CHAPTER_NAMES)
@pytest.mark.parametrize("profile", ["quick", "full"])
def test_progress_bars_in_the_full_profile_only(name, profile, isolated, monkeypatch, capsys):
    data, runs = isolated
    module = chapter(name)
    _, run = module.setup(profile, 0, str(runs), device="cpu", smoke=True)
    capsys.readouterr()
    seen = _spy_fit(module, monkeypatch)
    experiment = module.EXPERIMENTS[0]
    with pytest.raises(Reached):
        module.run_experiment(experiment, run)                      # progress=None: the profile decides
    assert seen == [(run.device, profile == "full")]
    captured = capsys.readouterr()
    if profile == "quick":                                          # the book build stays quiet
        assert captured.out == "" and captured.err == ""
    else:
        assert "runs already finished" in captured.out and "runs" in captured.err   # the sweep's bar
    with pytest.raises(Reached):
        module.run_experiment(experiment, run, progress=False)
    assert seen[-1] == (run.device, False)


@pytest.mark.parametrize("value, expected", [("1", True), ("Yes", True), (" on ", True), ("", False),
                                             ("0", False), ("off", False), ("FALSE", False)])
def test_smoke_environment_values(value, expected, monkeypatch):
    monkeypatch.setenv(smoke.SMOKE_ENV, value)
    assert smoke.smoke_requested() is expected


@pytest.mark.parametrize("value", ["ture", "2", "smoke", "y e s"])
def test_a_misspelt_smoke_variable_is_refused_not_read_as_off(value, monkeypatch):
    monkeypatch.setenv(smoke.SMOKE_ENV, value)
    with pytest.raises(ValueError, match="neither on"):
        smoke.smoke_requested()
