"""What every chapter shares: the store-path rule, the command line, the device, the stored runs."""

import json

import pytest
import torch

from neuronlab.experiments import CHAPTERS, chapter
from neuronlab.experiments import __main__ as cli
from neuronlab.experiments._common import STORED_RESULTS, history_summary, store_path
from neuronlab.runs import config_key
from neuronlab.train import History

CHAPTER_NAMES = list(CHAPTERS)


def test_store_path_rule():
    assert store_path("runs", "ch03", "mlp", "full").as_posix() == "runs/ch03/mlp_full"


@pytest.mark.parametrize("name", CHAPTER_NAMES)
def test_every_chapter_module_has_the_same_shape(name):
    module = chapter(name)
    assert module.CHAPTER == name
    assert set(module.SETTINGS) == {"quick", "full"}
    assert module.SETTINGS["quick"]["device"] == "cpu"  # the stored quick runs were made on a CPU
    assert set(module.STORED) <= set(module.EXPERIMENTS)
    for attr in ("setup", "experiment_grid", "run_config", "run_experiment", "summary", "comparison_table"):
        assert callable(getattr(module, attr)), f"{name} lacks {attr}"
    for experiment in module.EXPERIMENTS:
        for profile in ("quick", "full"):
            grid = module.experiment_grid(experiment, profile)
            assert grid and all(isinstance(c, dict) for c in grid)


@pytest.mark.parametrize("profile", ["quick", "full"])
@pytest.mark.parametrize("name", CHAPTER_NAMES)
def test_the_command_line_writes_where_the_notebook_reads(name, profile, tmp_path, monkeypatch, capsys):
    module = chapter(name)
    seen = {}

    def fake_run_experiment(experiment, run, progress=False):
        seen[experiment] = (run.store_path(experiment), run.device)
        import pandas as pd

        return pd.DataFrame()

    monkeypatch.setattr(module, "run_experiment", fake_run_experiment)
    monkeypatch.setattr(module, "summary", lambda experiment, table: table)
    cli.main([name, "--profile", profile, "--runs", str(tmp_path)])
    _, notebook_run = module.setup(profile, 0, str(tmp_path))  # what the notebook's setup line computes
    assert set(seen) == set(module.EXPERIMENTS)
    for experiment, (path, device) in seen.items():
        assert path == notebook_run.store_path(experiment)
        assert device == notebook_run.device
        expected_root = STORED_RESULTS if profile == "quick" and experiment in module.STORED else tmp_path
        assert path == expected_root / name / f"{experiment}_{profile}"
    assert f"neuronlab {name} | profile: {profile}" in capsys.readouterr().out


@pytest.mark.parametrize("name", CHAPTER_NAMES)
def test_runs_use_the_device_the_header_states(name, tmp_path, monkeypatch):
    module = chapter(name)
    _, run = module.setup("full", 0, str(tmp_path), device="cpu")
    devices = []

    def fake_run_config(config, device, progress=False):
        devices.append(device)
        return {"test_error": 0.0}

    monkeypatch.setattr(module, "run_config", fake_run_config)
    experiment = module.EXPERIMENTS[0]
    grid = module.experiment_grid(experiment, "full")[:2]
    monkeypatch.setattr(module, "experiment_grid", lambda e, p: grid)
    module.run_experiment(experiment, run)
    assert devices and all(d == run.device == torch.device("cpu") for d in devices)


def test_command_line_lists_chapters_and_rejects_unknown_experiments(capsys):
    cli.main(["--list"])
    out = capsys.readouterr().out
    assert all(name in out for name in CHAPTER_NAMES)
    with pytest.raises(SystemExit):
        cli.main(["ch01", "--experiments", "nope"])
    with pytest.raises(SystemExit):
        cli.main([])


def test_every_stored_run_is_reached_by_a_quick_grid():
    files = sorted(STORED_RESULTS.glob("ch*/*_quick/*.json"))
    assert files, f"no stored runs under {STORED_RESULTS}"
    reached = {}
    for name in CHAPTER_NAMES:
        module = chapter(name)
        for experiment in module.EXPERIMENTS:
            for config in module.experiment_grid(experiment, "quick"):
                owner = config.get("experiment", experiment)
                reached.setdefault((name, owner), set()).add(config_key(config))
    for file in files:
        chapter_name, folder = file.parent.parent.name, file.parent.name
        owner = folder[: -len("_quick")]
        assert file.stem in reached.get((chapter_name, owner), set()), f"{file} is reached by no quick grid"
        record = json.loads(file.read_text())
        assert config_key(record["config"]) == file.stem
        assert "test_error" in record["result"]


def test_history_summary_is_consistent_with_the_history():
    rows = [dict(epoch=e, train_loss=1.0 / e, train_acc=0.5, val_acc=v, test_acc=t)
            for e, v, t in [(1, 0.5, 0.40), (2, 0.9, 0.80), (3, 0.7, 0.85)]]
    summary = history_summary(History(rows), seconds=1.5)
    assert summary["best_epoch"] == 2 and summary["test_error"] == pytest.approx(20.0)
    assert summary["val_error"] == pytest.approx(10.0)
    assert summary["min_test_error"] == pytest.approx(15.0) and summary["epoch_of_min"] == 3
    assert summary["test_error_curve"] == pytest.approx([60.0, 20.0, 15.0])
    assert summary["seconds"] == 1.5
