"""Chapter 5's experiments: the grids, the bracket protocol on a hand-built counter, the tables and verdicts,
and the runs stored with the book."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from neuronlab import models
from neuronlab.data import dyck1_dataset, encode_dyck
from neuronlab.experiments import ch05_neurons as ch05
from neuronlab.experiments._common import STORED_RESULTS
from neuronlab.runs import RunStore

STORED = STORED_RESULTS / "ch05"


# ------------------------------------------------------------------------------------------ the grids
def test_grids_of_both_profiles():
    quick = {name: ch05.experiment_grid(name, "quick") for name in ch05.EXPERIMENTS}
    s = ch05.SETTINGS["quick"]
    assert [(c["dataset"], c["arch"]) for c in quick["vision"]] == [(d, "mlp") for d in s["vision_datasets"]]
    assert all(c["seeds"] == s["vision_seeds"] and len(c["seeds"]) >= 2 for c in quick["vision"])
    assert len(quick["memorization"]) == len(s["memo_fractions"]) * len(s["memo_seeds"])
    assert len(quick["bracket"]) == 1 and quick["bracket"][0]["seeds"] == s["bracket_seeds"]
    assert sorted((c["seed"], c["rejuvenate"]) for c in quick["rejuvenation"]) == sorted(
        (seed, flag) for seed in s["rejuv_seeds"] for flag in (False, True))
    full = ch05.experiment_grid("vision", "full")
    assert {c["arch"] for c in full} == {"mlp", "cnn"}
    assert ch05.experiment_grid("bracket", "full")[0]["batch_size"] == 1   # Suzgun et al.: string by string
    with pytest.raises(ValueError, match="unknown experiment"):
        ch05.experiment_grid("nope")


def test_run_config_picks_the_run_kind(monkeypatch):
    seen = []
    for name in ("vision_run", "memorization_run", "bracket_run", "rejuvenation_run"):
        monkeypatch.setattr(ch05, name, lambda *a, _name=name, **k: seen.append(_name) or {})
    monkeypatch.setattr(ch05, "cached_dataset", lambda name, **options: options)
    for experiment in ch05.EXPERIMENTS:
        ch05.run_config(ch05.experiment_grid(experiment, "quick")[0])
    assert seen == ["vision_run", "memorization_run", "bracket_run", "rejuvenation_run"]


# --------------------------------------------------------------------------------- the bracket protocol
def test_masked_bce_ignores_padding_and_equals_the_mean_over_real_steps():
    logits = torch.tensor([[0.3, -1.0, 2.0], [1.5, 0.2, -0.7]])
    targets = torch.tensor([[1.0, 0.0, -1.0], [0.0, -1.0, -1.0]])
    real = [(0, 0), (0, 1), (1, 0)]
    by_hand = np.mean([F.binary_cross_entropy_with_logits(logits[i, j], targets[i, j]).item() for i, j in real])
    assert ch05.masked_bce(logits, targets).item() == pytest.approx(by_hand)


def test_bracket_training_data_marks_padding_with_minus_one():
    batch = encode_dyck(["()", "(())"])
    x, y = ch05.bracket_training_data(batch)["train"]
    assert x.shape == (2, 4, 2)
    assert y.tolist() == [[1.0, 0.0, -1.0, -1.0], [1.0, 1.0, 1.0, 0.0]]


def test_train_bracket_model_is_seeded_and_returned_in_eval_mode_on_the_cpu():
    data = dyck1_dataset(num_train=60, num_test=10, seed=3)
    a, history = ch05.train_bracket_model(data.train, hidden=4, seed=5, epochs=1, batch_size=8)
    b, _ = ch05.train_bracket_model(data.train, hidden=4, seed=5, epochs=1, batch_size=8)
    assert len(history) == 1
    assert not a.training and next(a.parameters()).device.type == "cpu"
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def hand_counter() -> models.BracketRNN:
    """An LSTM that counts by construction: unit 0's cell adds tanh(+-20) = +-1 per bracket (input, forget and
    output gates saturated open); unit 1 is silent; the read-out allows ")" iff tanh(c) is clearly above 0."""
    model = models.BracketRNN(cell="lstm", hidden=2)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        lstm = model.rnn      # rows: input gate (units 0, 1), forget gate, cell candidate, output gate
        lstm.bias_ih_l0[[0, 2, 6]] = 20.0
        lstm.weight_ih_l0[4] = torch.tensor([20.0, -20.0])     # "(" -> +1, ")" -> -1
        lstm.bias_ih_l0[[1, 3, 7]] = -20.0    # unit 1: gates shut, its cell stays 0
        model.readout.weight[0] = torch.tensor([10.0, 0.0])
        model.readout.bias[0] = -3.0
    return model.eval()


def test_bracket_analysis_finds_breaks_and_pushes_a_hand_built_counter():
    test = dyck1_dataset(num_train=10, num_test=50, seed=1).test
    found = ch05.bracket_analysis(hand_counter(), test)
    assert found["depth_unit"] == 0
    assert found["cell_correlation"][0] == pytest.approx(1.0, abs=1e-6)
    assert found["cell_correlation"][1] == 0.0          # a constant unit correlates with nothing
    assert found["slope"] == pytest.approx(1.0, abs=1e-3)   # one bracket, one unit of cell state
    accuracy = found["sequence_accuracy"]
    assert accuracy["plain"] == 1.0
    assert accuracy["cell ablated"] == 0.0              # no count: ")" is never allowed
    assert accuracy["other cell ablated"] == 1.0        # the silent unit does not matter
    assert found["allowed_at_depth_zero"] == 0.0
    assert found["allowed_at_depth_zero_pushed"] == 1.0  # three phantom brackets are never closed
    longest = int(test.lengths.argmax())
    assert found["trace"]["depth"] == test.depth[longest, : int(test.lengths[longest])].tolist()
    assert np.allclose(found["trace"]["cell"], found["trace"]["depth"], atol=1e-3)


# ------------------------------------------------------------------------------------ tables by hand
def memorization_table(curves):
    return pd.DataFrame([dict(fraction=f, seed=0, ablation_counts=[0, 2, 4], ablation=c)
                         for f, c in curves.items()])


def test_memorization_frame_normalizes_by_the_unablated_accuracy():
    frame = ch05.memorization_frame(memorization_table({0.0: [0.8, 0.6, 0.2]}))
    assert frame.normalized.tolist() == pytest.approx([1.0, 0.75, 0.25])
    assert frame.accuracy.tolist() == pytest.approx([80, 60, 20])


@pytest.mark.parametrize("curves, verdict", [
    ({0.0: [1.0, 0.9, 0.1], 0.5: [1.0, 0.7, 0.1], 1.0: [1.0, 0.5, 0.1]}, "reproduces"),
    ({0.0: [1.0, 0.9, 0.1], 0.5: [1.0, 0.95, 0.1], 1.0: [1.0, 0.5, 0.1]}, "partly"),
    ({0.0: [1.0, 0.5, 0.1], 0.5: [1.0, 0.7, 0.1], 1.0: [1.0, 0.9, 0.1]}, "does not reproduce"),
])
def test_memorization_verdict_follows_its_criterion(curves, verdict):
    summary = ch05.reproduction_summary({"memorization": memorization_table(curves)})
    assert summary.set_index("key").loc["memorizers-fragile", "verdict"] == verdict


@pytest.mark.parametrize("util, errors, verdict", [
    ((0.5, 0.9), (3.0, 2.5), "reproduces"),
    ((0.5, 0.9), (3.0, 3.5), "partly"),
    ((0.9, 0.5), (3.0, 2.5), "does not reproduce"),
])
def test_rejuvenation_verdict_follows_its_criterion(util, errors, verdict):
    table = pd.DataFrame([dict(seed=0, rejuvenate=flag, utilization=[1.0, u], live_fraction=[1.0, u],
                               test_error_per_epoch=[5.0, e], test_error=e)
                          for flag, u, e in zip((False, True), util, errors)])
    summary = ch05.reproduction_summary({"rejuvenation": table}).set_index("key")
    assert summary.loc["rejuvenation", "verdict"] == verdict
    assert ch05.rejuvenation_table(table).set_index("training").loc["with rejuvenation",
                                                                    "final utilization"] == util[1]


# ---------------------------------------------------------------------------------- the stored runs
def stored_table(name):
    return RunStore(STORED / f"{name}_quick").table()


@pytest.mark.parametrize("name", ch05.EXPERIMENTS)
def test_every_stored_run_is_reached_by_the_quick_grid(name):
    records = [json.loads(p.read_text())["config"] for p in (STORED / f"{name}_quick").glob("*.json")]
    grid = ch05.experiment_grid(name, "quick")
    assert records and all(r in grid for r in records)
    assert len(records) == len(grid)


def test_stored_runs_are_read_back_without_training(monkeypatch, tmp_path):
    monkeypatch.setattr(ch05, "run_config", lambda config, device: pytest.fail("a stored run was retrained"))
    _, run = ch05.setup("quick", 0, tmp_path)
    for name in ch05.EXPERIMENTS:
        assert len(ch05.run_experiment(name, run)) == len(ch05.experiment_grid(name, "quick"))


def test_stored_vision_runs_are_consistent():
    table = stored_table("vision")
    for _, row in table.iterrows():
        layers = row["layers"]
        for measure in ch05.MEASURES:
            itself = np.array(row[f"self_similarity.{measure}"])
            assert itself.shape == (len(layers), len(layers))
            assert np.allclose(np.diag(itself), 1.0, atol=1e-6)          # a layer is identical to itself
            assert np.allclose(itself, itself.T, atol=1e-9)
            assert ((np.array(row[f"similarity.{measure}"]) >= -1e-9)
                    & (np.array(row[f"similarity.{measure}"]) <= 1 + 1e-9)).all()
        agreement = np.array(row["agreement"])
        assert np.allclose(np.diag(agreement), 1.0) and np.allclose(agreement, agreement.T)
        curves = ch05._dotted(row, "ablation")
        width = row["ablation_counts"][-1]
        plain = curves["random"][0]
        for name in ch05.RANKINGS:   # nothing ablated: the same network; everything ablated: the same too
            assert curves[f"{name} top"][0] == curves[f"{name} bottom"][0] == plain
            assert curves[f"{name} top"][-1] == pytest.approx(curves[f"{name} bottom"][-1])
        assert len(row["rankings.MaxCorr"]) == width
        assert len(row["test_errors"]) == len(row["seeds"])


def test_stored_bracket_runs_have_one_analysis_per_seed():
    table = stored_table("bracket")
    per_seed = ch05.bracket_table(table)
    assert per_seed.seed.tolist() == table.iloc[0]["seeds"]
    assert (per_seed["|ρ| cell"] <= 1).all() and (per_seed["depth unit"] < table.iloc[0]["hidden"]).all()


def test_stored_rejuvenation_runs_revive_only_when_asked():
    table = stored_table("rejuvenation")
    s = ch05.SETTINGS["quick"]
    for _, row in table.iterrows():
        assert len(row["utilization"]) == s["rejuv_epochs"] == len(row["test_error_per_epoch"])
        if row["rejuvenate"] and row["rejuvenated_at"] is not None and not pd.isna(row["rejuvenated_at"]):
            at = int(row["rejuvenated_at"])
            assert row["utilization"][at - 1] <= s["rejuv_target"]      # the trigger
            assert row["utilization"][at] > row["utilization"][at - 1]  # the revival
        if not row["rejuvenate"]:
            assert row["rejuvenated_at"] is None or pd.isna(row["rejuvenated_at"])


def test_reproduction_summary_of_the_stored_runs_has_a_verdict_per_claim():
    tables = {name: stored_table(name) for name in ch05.EXPERIMENTS}
    summary = ch05.reproduction_summary(tables)
    assert set(summary.key) == set(ch05.PAPER_FINDINGS) == set(ch05.CRITERIA)
    assert set(summary.verdict) <= set(ch05.VERDICTS)
    for name in ch05.EXPERIMENTS:
        assert len(ch05.summary(name, tables[name]))
