"""Chapter 4's experiments: the network and its protocol, the two run kinds, the grids, the stored Fashion-MNIST
runs, the tables and the command line."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from neuronlab import models
from neuronlab.experiments import ch04_cooperating as ch04
from neuronlab.experiments._common import STORED_RESULTS
from neuronlab.runs import RunStore, config_key

STORED = STORED_RESULTS / "ch04" / "fashion_quick"
SCHEMA = ("test_error", "best_epoch", "val_error", "min_test_error", "epoch_of_min", "seconds", "test_error_curve",
          "train_loss_curve")


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


class Tiny:
    name = "tiny"
    g = gen(9)
    x_train = torch.randn(120, 10, generator=g)
    y_train = (x_train[:, 0] > 0).long() + 2 * (x_train[:, 1] > 0).long()
    x_val, x_test = x_train[:40], x_train[40:80]
    y_val, y_test = y_train[:40], y_train[40:80]
    num_classes = 4


# ------------------------------------------------------------------------------------------- the protocol
def test_corrupt_labels_changes_exactly_the_chosen_fraction():
    y = torch.arange(10).repeat(30)
    noisy, corrupted = ch04.corrupt_labels(y, 0.2, 10, gen(8))
    assert corrupted.sum() == 60
    assert (noisy[corrupted] != y[corrupted]).all()
    assert torch.equal(noisy[~corrupted], y[~corrupted])
    assert noisy.max() < 10 and noisy.min() >= 0
    with pytest.raises(ValueError):
        ch04.corrupt_labels(y, 1.5, 10, gen())


def test_relu_mlp_is_glorot_uniform_with_zero_biases_and_seeded():
    model = ch04.relu_mlp(30, depth=3, width=40, num_classes=5, seed=3)
    assert model.widths == [30, 40, 40, 40, 5]
    assert [type(m).__name__ for m in model.children()].count("ReLU") == 3
    bound = math.sqrt(6 / (40 + 40))  # U[-a, a], a = sqrt(6 / (fan_in + fan_out))
    assert model.fc2.weight.abs().max().item() <= bound
    assert model.fc2.weight.var().item() == pytest.approx(bound ** 2 / 3, rel=0.15)
    assert all(torch.equal(getattr(model, f"fc{i}").bias, torch.zeros_like(getattr(model, f"fc{i}").bias))
               for i in range(1, 5))
    # the RNG order of the chapter's network: seed the global RNG, build, then Xavier from its own generator
    torch.manual_seed(3)
    by_hand = models.MLP([30, 40, 40, 40, 5], activation="relu")
    from neuronlab.init import xavier_
    xavier_(by_hand, distribution="uniform", generator=gen(3))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), by_hand.state_dict().values()))
    assert not torch.equal(model.fc1.weight, ch04.relu_mlp(30, 3, 40, 5, seed=4).fc1.weight)


def test_train_relu_mlp_stops_early_and_restores_the_best_epoch():
    seen = []
    model, history = ch04.train_relu_mlp(Tiny, depth=2, width=8, seed=0, max_epochs=40, batch_size=32, patience=2,
                                         device="cpu", callbacks=[lambda h, m: seen.append(len(h))])
    assert seen == list(range(1, len(history) + 1))  # the caller's callbacks see every epoch
    assert len(history) == 40 or len(history) - history.best_epoch == 2
    assert all(torch.equal(v, history.best_state[k]) for k, v in model.state_dict().items())
    _, full = ch04.train_relu_mlp(Tiny, depth=2, width=8, seed=0, max_epochs=6, batch_size=32, patience=None,
                                  device="cpu")
    assert len(full) == 6 and full.best_state is None
    # the same seed gives the same run: the first epochs agree
    assert full.table["test_acc"].tolist()[:2] == history.table["test_acc"].tolist()[:2]


# ------------------------------------------------------------------------------------------------ the runs
def test_train_cooperating_run_has_the_schema_and_one_value_per_hidden_layer():
    out = ch04.train_cooperating_run(Tiny, depth=2, width=8, seed=0, max_epochs=3, batch_size=32, device="cpu")
    assert set(SCHEMA) <= set(out)
    assert len(out["perplexity"]) == 2 and set(out["layer_accuracy"]) == {"discrete", "continuous", "combined"}
    assert all(len(v) == 2 and all(0 <= a <= 1 for a in v) for v in out["layer_accuracy"].values())
    assert all(1 <= p <= 30 for p in out["perplexity"])  # 30 training samples per class at most
    assert 1 <= out["epochs_trained"] <= 3 and len(out["test_error_curve"]) == out["epochs_trained"]
    assert out["test_error"] == pytest.approx(out["test_error_curve"][out["best_epoch"] - 1], abs=1e-3)
    assert out["seconds"] == out["train_seconds"] + out["analysis_seconds"]
    with pytest.raises(ValueError, match="dataset"):
        ch04.train_cooperating_run(Tiny, depth=1, width=4, seed=0, max_epochs=1, dataset="mnist")


def test_label_noise_run_tracks_clean_and_corrupted_samples():
    out = ch04.label_noise_run(Tiny, fraction=0.25, seed=0, epochs=2, depth=2, width=8, track_every=1,
                               batch_size=32, device="cpu")
    assert out["corrupted"] == 30 and [r["epoch"] for r in out["track"]] == [1, 2]
    assert set(SCHEMA) <= set(out) and len(out["test_error_curve"]) == 2
    row = out["track"][-1]
    assert row["test_error"] == pytest.approx(out["test_error_curve"][-1], abs=1e-3)
    assert len(row["perplexity_clean"]) == 2 and all(0 < p <= 1 for p in row["perplexity_corrupted"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_runs_on_a_gpu_analyse_on_the_cpu():
    out = ch04.train_cooperating_run(Tiny, depth=2, width=8, seed=0, max_epochs=2, batch_size=32, device="cuda")
    assert len(out["perplexity"]) == 2 and len(out["layer_accuracy"]["combined"]) == 2
    noise = ch04.label_noise_run(Tiny, fraction=0.25, seed=0, epochs=2, depth=2, width=8, track_every=1,
                                 batch_size=32, device="cuda")
    assert [r["epoch"] for r in noise["track"]] == [1, 2]


# ----------------------------------------------------------------------------------------------- the grids
def test_grids_of_both_profiles():
    for profile in ("quick", "full"):
        s = ch04.SETTINGS[profile]
        grid = ch04.experiment_grid("grid", profile)
        shapes = {(c["depth"], c["width"]) for c in grid}
        assert shapes == {(d, 100) for d in s["depths"]} | {(10, w) for w in s["widths"]}
        assert len(grid) == len(shapes) * len(s["seeds"]) and {c["dataset"] for c in grid} == {s["dataset"]}
        fashion = ch04.experiment_grid("fashion", profile)
        assert {c["dataset"] for c in fashion} == {"fashion-mnist"}
        noise = ch04.experiment_grid("noise", profile)
        assert len(noise) == len(s["noise_fractions"]) * len(s["noise_seeds"])
    assert len(ch04.experiment_grid("grid", "quick")) == 18 and len(ch04.experiment_grid("fashion", "quick")) == 9
    with pytest.raises(ValueError, match="unknown experiment"):
        ch04.experiment_grid("nope")


def test_quick_configurations_are_those_of_the_book_key_for_key():
    # the stored Fashion-MNIST runs were made with this grid (notebook, before the experiments module)
    book = [dict(dataset="fashion-mnist", depth=d, width=w, seed=0, max_epochs=20, lr=1e-3, batch_size=128,
                 patience=5) for d, w in [(1, 100), (2, 100), (4, 100), (6, 100), (8, 100), (10, 100), (10, 20),
                                          (10, 50), (10, 200)]]
    assert ch04.experiment_grid("fashion", "quick") == book
    noise = [dict(dataset="mnist-5k", fraction=f, seed=0, epochs=60, depth=6, width=100, track_every=10)
             for f in (0.0, 0.2, 0.4)]
    assert ch04.experiment_grid("noise", "quick") == noise


def test_every_stored_run_is_reached_by_the_quick_fashion_grid_and_has_the_schema():
    keys = {config_key(c) for c in ch04.experiment_grid("fashion", "quick")}
    files = sorted(STORED.glob("*.json"))
    assert len(files) == 9
    for file in files:
        record = json.loads(file.read_text())
        assert file.stem in keys and config_key(record["config"]) == file.stem
        result = record["result"]
        assert result["seconds"] == result["train_seconds"] + result["analysis_seconds"]
        assert len(result["perplexity"]) == record["config"]["depth"]


def test_run_config_picks_the_run_kind(monkeypatch):
    calls = []
    monkeypatch.setattr(ch04, "cached_dataset", lambda name, **options: (name, options))
    monkeypatch.setattr(ch04, "train_cooperating_run", lambda data, **kw: calls.append(("grid", data, kw)) or {})
    monkeypatch.setattr(ch04, "label_noise_run", lambda data, **kw: calls.append(("noise", data, kw)) or {})
    ch04.run_config(ch04.experiment_grid("grid", "quick")[0], device="cpu")
    ch04.run_config(ch04.experiment_grid("noise", "quick")[0], device="cpu")
    assert [c[0] for c in calls] == ["grid", "noise"]
    assert calls[0][1] == ("mnist-5k", {"flatten": True}) and calls[1][2]["device"] == "cpu"


# ---------------------------------------------------------------------------------------------- the tables
def stored_table():
    return RunStore(STORED).table(ch04.experiment_grid("fashion", "quick"))


def test_network_table_of_the_stored_runs_matches_their_records():
    records = {(r["config"]["depth"], r["config"]["width"]): r["result"] for r in RunStore(STORED).records()}
    table = ch04.summary("fashion", stored_table())
    assert len(table) == 9 and table["n"].eq(1).all()
    row = table[table["network"] == "10 × 50"].iloc[0]
    result = records[(10, 50)]
    assert row["test error (%)"] == f"{result['test_error']:.2f}"
    assert row["perplexity, last layer"] == round(result["perplexity"][-1], 1)
    assert row["layer accuracy, layer 1 (%)"] == round(100 * result["layer_accuracy"]["combined"][0], 1)
    assert row["epochs (early stopping)"] == result["epochs_trained"]


def test_comparison_table_puts_the_papers_findings_beside_the_stored_runs():
    table = stored_table()
    comparison = ch04.comparison_table(table, "fashion")
    assert list(comparison.columns) == ["finding", "paper", "ours"] and len(comparison) == 4
    deep = [r["result"] for r in RunStore(STORED).records() if r["config"]["depth"] >= 2]
    first = np.mean([100 * r["layer_accuracy"]["combined"][0] for r in deep])
    last = np.mean([100 * r["layer_accuracy"]["combined"][-1] for r in deep])
    ours = comparison.set_index("finding")["ours"]
    assert f"{first:.1f} → {last:.1f} %" in ours["class information builds up layer by layer"]
    assert f"of {len(deep)} networks" in ours["class information builds up layer by layer"]
    with pytest.raises(ValueError, match="unknown experiment"):
        ch04.comparison_table(table, "cifar")


def noise_table_by_hand():
    nan = math.nan

    def track(fraction, errors):
        return [{"epoch": e, "test_error": t, "train_error_clean": c, "train_error_corrupted": k,
                 "layer_acc_clean": [0.9, 0.95], "layer_acc_corrupted": [0.1, a]}
                for e, (t, c, k, a) in errors.items()]
    return pd.DataFrame([
        {"fraction": 0.0, "seed": 0, "track": track(0.0, {1: (20, 10, nan, nan), 10: (10, 1, nan, nan),
                                                         20: (9, 0, nan, nan)})},
        {"fraction": 0.4, "seed": 0, "track": track(0.4, {1: (30, 20, 90, 0.1), 10: (15, 3, 80, 0.2),
                                                         20: (35, 0, 5, 0.9)})},
    ])


def test_noise_summary_and_comparison_from_tracks():
    table = noise_table_by_hand()
    summary = ch04.summary("noise", table)
    row = summary[summary["corrupted (%)"] == 40].iloc[0]
    assert row["test error, epoch 10"] == 15 and row["corrupted not memorized, epoch 20"] == 5
    assert row["last layer on corrupted, epoch 20"] == 90
    ours = ch04.comparison_table(table, "noise").set_index("finding")["ours"]
    assert "40%: 3.0 % vs 80.0 %" in ours["clean samples are fitted first"]  # epoch 10: lowest test error
    assert "80.0 % → 5.0 %" in ours["corrupted samples are memorized late"]
    assert "layer 1 10.0 % → last layer 90.0 %" in ours["the noise is fitted in the last layers"]
    assert ch04.summary("noise", pd.DataFrame()).empty


# -------------------------------------------------------------------------------------------- command line


def test_stored_runs_are_read_back_without_training(monkeypatch, tmp_path):
    monkeypatch.setattr(ch04, "run_config", lambda config, device: pytest.fail("a stored run was retrained"))
    _, run = ch04.setup("quick", 0, tmp_path)
    table = ch04.run_experiment("fashion", run)
    assert len(table) == 9 and set(table["width"]) == {20, 50, 100, 200}
    grid = ch04.run_experiment("grid", run)
    assert len(grid) == 18 and set(grid["seed"]) == {0, 1} and set(grid["dataset"]) == {"mnist-5k"}
    noise = ch04.run_experiment("noise", run)
    assert sorted(noise["fraction"]) == [0.0, 0.2, 0.4]


def test_stored_grid_runs_stop_by_their_protocol():
    """Early stopping ends a run ``patience`` epochs after its best validation epoch, or at the cap."""
    store = RunStore(STORED_RESULTS / "ch04" / "grid_quick")
    assert {config_key(r["config"]) for r in store.records()} == {config_key(c)
                                                                   for c in ch04.experiment_grid("grid", "quick")}
    for record in store.records():
        config, result = record["config"], record["result"]
        curve = result["test_error_curve"]
        assert len(curve) == result["epochs_trained"] <= config["max_epochs"]
        assert (result["epochs_trained"] - result["best_epoch"] == config["patience"]
                or result["epochs_trained"] == config["max_epochs"])
        assert result["test_error"] == pytest.approx(curve[result["best_epoch"] - 1], abs=1e-3)
        assert result["seconds"] == result["train_seconds"] + result["analysis_seconds"]
        assert len(result["perplexity"]) == config["depth"]
        assert all(len(v) == config["depth"] for v in result["layer_accuracy"].values())


def test_stored_noise_runs_track_their_epochs_and_corrupt_their_share():
    store = RunStore(STORED_RESULTS / "ch04" / "noise_quick")
    records = store.records()
    assert {config_key(r["config"]) for r in records} == {config_key(c) for c in ch04.experiment_grid("noise")}
    train_size = 3500                                   # mnist-5k's training split
    for record in records:
        config, result = record["config"], record["result"]
        every, epochs = config["track_every"], config["epochs"]
        track = result["track"]
        assert [row["epoch"] for row in track] == [1] + list(range(every, epochs + 1, every))
        assert len(result["test_error_curve"]) == epochs     # no early stopping
        for row in track:                                   # the tracked test error is the curve's
            assert row["test_error"] == pytest.approx(result["test_error_curve"][row["epoch"] - 1], abs=1e-3)
            assert len(row["layer_acc_clean"]) == config["depth"]
        assert result["corrupted"] == round(config["fraction"] * train_size)
        assert math.isnan(track[-1]["train_error_corrupted"]) == (config["fraction"] == 0)


# ---------------------------------------------------------------------------------- the page's frames
def grid_table_by_hand():
    """Two networks, two seeds each: 2 × 4 (perplexity hardly falls) and 3 × 4 (it falls by half)."""
    def run(depth, seed, perplexity, combined, error, epochs):
        layers = range(depth)
        return {"dataset": "toy", "depth": depth, "width": 4, "seed": seed, "max_epochs": 10,
                "test_error": error, "epochs_trained": epochs, "perplexity": perplexity,
                "layer_accuracy.combined": combined, "layer_accuracy.discrete": [a - 0.1 for a in combined],
                "layer_accuracy.continuous": combined, "node_accuracy_combined": [0.2 for _ in layers]}
    return pd.DataFrame([
        run(2, 0, [100.0, 98.0], [0.80, 0.90], 9.0, 10), run(2, 1, [100.0, 96.0], [0.80, 0.92], 11.0, 7),
        run(3, 0, [100.0, 80.0, 50.0], [0.85, 0.88, 0.90], 12.0, 5),
        run(3, 1, [100.0, 70.0, 40.0], [0.85, 0.86, 0.70], 10.0, 6),
    ])


def test_layer_frame_has_one_row_per_network_and_layer_with_seed_statistics():
    frame = ch04.layer_frame(grid_table_by_hand())
    assert len(frame) == 2 + 3 and frame["n"].eq(2).all()
    row = frame[(frame["network"] == "3 × 4") & (frame["layer"] == 3)].iloc[0]
    assert row["perplexity"] == pytest.approx(45.0) and row["perplexity_std"] == pytest.approx(np.std([50, 40], ddof=1))
    assert row["accuracy_combined"] == pytest.approx(80.0) and row["accuracy_discrete"] == pytest.approx(70.0)
    single = ch04.layer_frame(stored_table())
    assert len(single) == sum(c["depth"] for c in ch04.experiment_grid("fashion", "quick"))
    assert single["perplexity_std"].isna().all()  # one seed: no spread


def test_network_frame_of_the_stored_runs_matches_their_records():
    records = {(r["config"]["depth"], r["config"]["width"]): r for r in RunStore(STORED).records()}
    frame = ch04.network_frame(stored_table()).set_index("network")
    for (depth, width), record in records.items():
        row, result = frame.loc[f"{depth} × {width}"], record["result"]
        assert row["perplexity_last"] == pytest.approx(result["perplexity"][-1])
        assert row["layer_first"] == pytest.approx(100 * result["layer_accuracy"]["combined"][0])
        assert row["accuracy"] == pytest.approx(100 - result["test_error"])
        assert row["capped"] == int(result["epochs_trained"] >= record["config"]["max_epochs"])
    by_hand = ch04.network_frame(grid_table_by_hand()).set_index("network")
    assert by_hand.loc["2 × 4", "test_error_std"] == pytest.approx(np.std([9.0, 11.0], ddof=1))
    assert by_hand.loc["2 × 4", "gain"] == pytest.approx(11.0) and by_hand.loc["2 × 4", "capped"] == 1


def test_reproduction_summary_computes_each_verdict_by_its_criterion():
    summary = ch04.reproduction_summary([grid_table_by_hand()], noise_table_by_hand(), path_gap=1e-3)
    assert list(summary.columns) == ["key", "claim", "paper", "data", "seeds", "ours", "verdict", "hits", "total"]
    assert list(summary["key"]) == ["perplexity", "build-up", "nodes", "paths", "error", "clean-first",
                                    "memorized-late", "quarantine"]
    verdict = summary.set_index("key")["verdict"]
    # perplexity: 2 × 4 falls by 3 % (not more than a tenth), 3 × 4 by 55 %: one of two
    assert verdict["perplexity"] == "partly" and summary.set_index("key").loc["perplexity", "hits"] == 1
    # layer classifiers: 2 × 4 rises from 80 to 91 %, 3 × 4 falls from 85 to 80 % (mean of its seeds)
    assert verdict["build-up"] == "partly"
    # nodes: 2 × 4 ends at 91 % vs a network at 90 %; 3 × 4 at 80 % vs 89 %: one of two within 2 points
    assert verdict["nodes"] == "partly"
    assert verdict["paths"] == "does not reproduce" and verdict["error"] == "not compared"
    assert pd.isna(summary.set_index("key").loc["error", "total"])
    assert (verdict[["clean-first", "memorized-late", "quarantine"]] == "reproduces").all()
    assert summary.set_index("key").loc["perplexity", "seeds"] == "2 seeds"
    exact = ch04.reproduction_summary(path_gap=1e-17)
    assert list(exact["verdict"]) == ["reproduces"] and len(exact) == 1
    assert set(summary["verdict"]) <= set(ch04.VERDICTS)


def test_reproduction_summary_of_the_stored_runs_counts_the_networks():
    summary = ch04.reproduction_summary([stored_table()]).set_index("key")
    nets = ch04.network_frame(stored_table())
    deep = nets[nets["depth"] >= 2]
    assert summary.loc["build-up", "hits"] == int((deep["layer_last"] > deep["layer_first"]).sum())
    assert summary.loc["build-up", "total"] == len(deep) and summary.loc["perplexity", "seeds"] == "1 seed"
    assert summary.loc["perplexity", "data"].startswith("fashion-mnist")
