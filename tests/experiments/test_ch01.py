"""Chapter 1's experiments: the training grid, one run, the curves and the table, the runs stored with the
book."""

import json
import math
import statistics

import pandas as pd
import pytest
import torch

from neuronlab.experiments import ch01_signals as ch01
from neuronlab.experiments._common import STORED_RESULTS
from neuronlab.init import lsuv_
from neuronlab.runs import config_key

STORED = STORED_RESULTS / "ch01" / "training_quick"


def test_training_grid_crosses_every_scheme_activation_and_seed_once():
    for profile in ("quick", "full"):
        grid = ch01.experiment_grid("training", profile)
        settings = ch01.SETTINGS[profile]
        assert len(grid) == len(ch01.SCHEMES) * len(ch01.ACTIVATIONS) * len(settings["seeds"])
        assert len({config_key(c) for c in grid}) == len(grid)
        assert {c["dataset"] for c in grid} == {settings["dataset"]}
    with pytest.raises(ValueError, match="unknown experiment"):
        ch01.experiment_grid("nope")


def test_initialized_mlp_has_the_requested_depth_and_scheme_variance():
    model = ch01.initialized_mlp(5, 64, scheme="he", in_features=32, num_classes=3)
    assert model.depth == 5 and model.widths == [32, 64, 64, 64, 64, 3]
    # He: Var[W] = 2 / fan_in, measured over a 64 x 64 layer
    assert model.fc3.weight.var().item() == pytest.approx(2 / 64, rel=0.1)
    assert torch.equal(model.fc3.bias, torch.zeros(64))
    same = ch01.initialized_mlp(5, 64, scheme="he", in_features=32, num_classes=3)
    assert torch.equal(model.fc1.weight, same.fc1.weight)  # seeded
    with pytest.raises(ValueError, match="depth"):
        ch01.initialized_mlp(0, 8)


def test_one_run_returns_the_shared_schema_consistent_with_its_curves(tiny_mnist_like):
    result = ch01.train_init_run(tiny_mnist_like, scheme="xavier", activation="tanh", depth=3, width=16,
                                 epochs=3, seed=0, dataset="tiny", device="cpu")
    for key in ("test_error", "best_epoch", "val_error", "min_test_error", "epoch_of_min", "seconds",
                "test_error_curve", "train_loss_curve", "history", "epochs_to_90"):
        assert key in result
    curve = result["test_error_curve"]
    assert len(curve) == 3 and len(result["history"]["test_acc"]) == 3
    assert result["min_test_error"] == pytest.approx(min(curve), abs=1e-3)
    assert curve[result["epoch_of_min"] - 1] == pytest.approx(min(curve), abs=1e-3)
    assert result["test_error"] == pytest.approx(curve[result["best_epoch"] - 1], abs=1e-3)
    best_val = max(result["history"]["val_acc"])
    assert result["val_error"] == pytest.approx(100 * (1 - best_val))
    assert result["seconds"] > 0
    with pytest.raises(ValueError, match="dataset"):
        ch01.train_init_run(tiny_mnist_like, scheme="he", activation="relu", epochs=1, dataset="mnist")


def test_curves_frame_has_one_row_per_run_and_epoch():
    history = {c: [0.0, 1.0] for c in ch01.HISTORY_COLUMNS}
    table = pd.DataFrame([{"scheme": "he", "seed": 0, "history": history, "test_error_curve": [1, 2]},
                          {"scheme": "xavier", "seed": 0, "history": history, "test_error_curve": [1, 2]}])
    curves = ch01.curves_frame(table)
    assert len(curves) == 4 and set(curves["scheme"]) == {"he", "xavier"}
    assert "test_error_curve" not in curves
    with pytest.raises(ValueError, match="history"):
        ch01.curves_frame(pd.DataFrame([{"scheme": "he"}]))


def test_comparison_table_gives_mean_and_std_over_seeds():
    table = pd.DataFrame([dict(activation="relu", scheme="he", seed=s, test_error=e, epochs_to_90=2)
                          for s, e in enumerate([2.0, 4.0])])
    row = ch01.comparison_table(table).iloc[0]
    assert row["test error at best val epoch (%)"] == f"3.00 ± {math.sqrt(2):.2f}"
    assert row["seeds"] == 2


def test_summary_frame_counts_the_seeds_that_reach_90_and_averages_only_those():
    table = pd.DataFrame([dict(activation="relu", scheme="he", seed=s, test_error=e, epochs_to_90=k,
                               final_train_loss=0.1)
                          for s, (e, k) in enumerate([(8.0, 4), (10.0, 6), (9.0, None)])]
                         + [dict(activation="relu", scheme="gaussian", seed=0, test_error=90.0,
                                 epochs_to_90=None, final_train_loss=2.3)])
    frame = ch01.summary_frame(table)
    he = frame.set_index("scheme").loc["he"]
    assert he["n"] == 3 and he["reached_90"] == 2
    assert he["test_error_mean"] == pytest.approx(9.0) and he["test_error_std"] == pytest.approx(1.0)
    assert (he["test_error_min"], he["test_error_max"]) == (8.0, 10.0)
    assert he["epochs_to_90_mean"] == pytest.approx(5.0)
    assert he["epochs_to_90_std"] == pytest.approx(math.sqrt(2))
    gaussian = frame.set_index("scheme").loc["gaussian"]
    assert gaussian["reached_90"] == 0 and math.isnan(gaussian["epochs_to_90_mean"])
    assert list(frame["scheme"]) == ["he", "gaussian"]  # the table's order
    with pytest.raises(KeyError, match="epochs_to_90"):
        ch01.summary_frame(table.drop(columns="epochs_to_90"))


def test_profile_summary_measures_per_layer_factors_on_the_hidden_layers():
    layers = pd.Series(range(1, 7))
    # activation std halves per layer, gradient std doubles per layer towards the output;
    # the first and last layers (different fan-in, logits) are left out of the factors
    frame = pd.DataFrame({"layer": layers, "activation_std": [9.0] + [0.5 ** k for k in range(4)] + [9.0],
                          "gradient_std": [1e-3] + [2.0 ** k for k in range(4)] + [9.0]})
    row = ch01.profile_summary({"halving": frame}).iloc[0]
    assert row["profile"] == "halving"
    assert row["forward_factor"] == pytest.approx(0.5) and row["backward_factor"] == pytest.approx(0.5)
    assert row["forward_spread"] == pytest.approx(8.0) and row["backward_spread"] == pytest.approx(8.0)
    assert row["first_gradient_std"] == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="at least 4"):
        ch01.profile_summary({"short": frame.iloc[:3]})


def test_lsuv_summary_of_a_he_relu_mlp_reaches_unit_variance_in_one_rescaling_per_layer():
    # the chapter's claim: with zero biases a layer's output is linear in W, so one rescaling is exact
    model = ch01.initialized_mlp(10, 100, activation="relu", scheme="he", in_features=784, seed=0)
    x = torch.randn(512, 784, generator=torch.Generator().manual_seed(0))
    _, report = lsuv_(model, x, tol=0.01, generator=torch.Generator().manual_seed(0), return_report=True)
    summary = ch01.lsuv_summary(report)
    assert summary["layers"] == 10
    assert summary["min_iterations"] == summary["max_iterations"] == 1
    assert summary["max_deviation"] < 1e-4
    with pytest.raises(ValueError, match="empty"):
        ch01.lsuv_summary({})


# ------------------------------------------------------------------------------------------ stored runs
def _records():
    return [json.loads(f.read_text()) for f in sorted(STORED.glob("*.json"))]


def test_every_quick_run_is_stored_and_its_summary_agrees_with_its_own_history():
    records = _records()
    assert {config_key(r["config"]) for r in records} == {config_key(c) for c in ch01.experiment_grid("training")}
    for record in records:
        config, result = record["config"], record["result"]
        history = result["history"]
        assert history["epoch"] == list(range(1, config["epochs"] + 1))
        curve = result["test_error_curve"]
        assert curve == pytest.approx([100 * (1 - a) for a in history["test_acc"]], abs=1e-3)
        val = history["val_acc"]
        assert val[result["best_epoch"] - 1] == max(val)
        assert result["test_error"] == pytest.approx(curve[result["best_epoch"] - 1], abs=1e-3)
        assert result["min_test_error"] == pytest.approx(min(curve), abs=1e-3)
        reached = [e for e, v in zip(history["epoch"], val) if v >= 0.9]
        assert result["epochs_to_90"] == (reached[0] if reached else None)
        assert result["final_train_loss"] == history["train_loss"][-1] and result["seconds"] > 0


def test_stored_runs_are_read_back_without_training_and_give_the_chapters_numbers(monkeypatch, tmp_path):
    monkeypatch.setattr(ch01, "run_config", lambda config, *a, **k: pytest.fail(f"retrained {config}"))
    _, run = ch01.setup("quick", 0, tmp_path)
    table = ch01.run_experiment("training", run)
    assert len(table) == len(ch01.experiment_grid("training"))
    frame = ch01.summary_frame(table).set_index(["activation", "scheme"])
    # against the raw JSON records, averaged with the statistics module
    for (activation, scheme), row in frame.iterrows():
        results = [r["result"] for r in _records()
                   if (r["config"]["activation"], r["config"]["scheme"]) == (activation, scheme)]
        assert row["n"] == len(results) == len(ch01.SETTINGS["quick"]["seeds"])
        assert row["test_error_mean"] == pytest.approx(statistics.mean(r["test_error"] for r in results))
        reached = [r["epochs_to_90"] for r in results if r["epochs_to_90"] is not None]
        assert row["reached_90"] == len(reached)
        if reached:
            assert row["epochs_to_90_mean"] == pytest.approx(statistics.mean(reached))
