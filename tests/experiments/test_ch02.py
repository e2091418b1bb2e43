"""Chapter 2's experiments: grids, the run protocol, the stored Fashion-MNIST runs, tables and command line."""

import json
import statistics
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from neuronlab import init, models, train
from neuronlab.experiments import _common
from neuronlab import book
from neuronlab.experiments import ch02_campaign as ch02
from neuronlab.runs import config_key

STORED = _common.STORED_RESULTS / "ch02" / "fashion_quick"


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# -------------------------------------------------------------------------------------------------- grids
def test_tables_grid_covers_every_base_network_method_and_seed():
    for profile, dataset, epochs, seeds in [("quick", "mnist-5k", 20, [0, 1, 2]), ("full", "mnist", 101, [0, 1, 2, 3, 4])]:
        grid = ch02.experiment_grid("tables", profile)
        assert len(grid) == 2 * 3 * 6 * len(seeds)
        assert {(c["base"], c["arch"], c["method"], c["seed"]) for c in grid} == {
            (b, a, m, s) for b in ("xavier", "he") for a in ("IBCI-2", "IBCI-3", "IBCI-5")
            for m in ("vanilla", "lsuv", "ibci", "tie", "iim", "random") for s in seeds}
        assert all(c["dataset"] == dataset and c["epochs"] == epochs and c["lr"] == 0.1 and c["batch_size"] == 100
                   for c in grid)
        # the configuration keys the runs were stored under before this module existed
        assert set(grid[0]) == {"dataset", "arch", "base", "method", "lr", "batch_size", "epochs", "seed"}


def test_fashion_and_cnn_grids():
    quick = ch02.experiment_grid("fashion", "quick")
    assert len(quick) == 2 * 2 * 3 * 3 and {c["arch"] for c in quick} == {"IBCI-2", "IBCI-3"}
    assert {c["dataset"] for c in quick} == {"fashion-mnist"} and {c["epochs"] for c in quick} == {20}
    full = ch02.experiment_grid("fashion", "full")
    assert len(full) == 2 * 3 * 3 * 5 and {c["epochs"] for c in full} == {101}
    assert {c["method"] for c in full} == {"vanilla", "lsuv", "ibci"}
    cnn = ch02.experiment_grid("cnn", "quick")
    assert [(c["method"], c["seed"]) for c in cnn] == [(m, s) for m in ("vanilla", "lsuv", "ibci", "ibci+lsuv")
                                                       for s in (0, 1)]
    assert all(c["arch"] == "SmallCNN-16-32" and c["base"] == "he" and c["lr"] == 0.02 and c["epochs"] == 4
               and c["dataset"] == "mnist-5k" for c in cnn)
    assert {c["epochs"] for c in ch02.experiment_grid("cnn", "full")} == {20}
    with pytest.raises(ValueError, match="unknown experiment"):
        ch02.experiment_grid("table3", "quick")


def test_every_stored_run_belongs_to_the_fashion_grid_and_has_the_schema():
    files = sorted(STORED.glob("*.json"))
    assert len(files) == 36
    keys = {config_key(c) for c in ch02.experiment_grid("fashion", "quick")}
    assert {f.stem for f in files} == keys  # every stored run is reached, and every run is stored
    for f in files:
        record = json.loads(f.read_text())
        assert config_key(record["config"]) == f.stem
        result = record["result"]
        assert {"test_error", "best_epoch", "min_test_error", "epoch_of_min", "test_error_curve"} <= set(result)
        assert not {"test_error_at_best_val", "best_val_epoch"} & set(result)
        assert result["min_test_error"] == pytest.approx(min(result["test_error_curve"]), abs=1e-3)
        assert result["test_error"] == pytest.approx(result["test_error_curve"][result["best_epoch"] - 1], abs=1e-3)


def test_stored_fashion_runs_are_read_back_and_give_the_books_table(monkeypatch, tmp_path):
    monkeypatch.setattr(ch02, "run_config", lambda config, device: pytest.fail(f"retrained {config}"))
    _, run = ch02.setup("quick", 0, tmp_path)
    table = ch02.run_experiment("fashion", run)
    assert len(table) == 36
    ours = ch02.comparison_table(table, {}, ["vanilla", "lsuv", "ibci"])
    # each cell against the raw JSON records, averaged with the statistics module
    assert ours.loc[0, ["init", "layers"]].tolist() == ["Xavier", "2"]
    assert ours.loc[0, "Vanilla (ours)"] == _cell_from_records("xavier", "IBCI-2", "vanilla", "min_test_error",
                                                               "epoch_of_min")
    assert ours.loc[3, "IBCI (ours)"] == _cell_from_records("he", "IBCI-3", "ibci", "min_test_error", "epoch_of_min")
    honest = ch02.comparison_table(table, {}, ["vanilla", "lsuv", "ibci"], value="test_error", epoch="best_epoch")
    assert honest.loc[2, "Vanilla (ours)"] == _cell_from_records("he", "IBCI-2", "vanilla", "test_error",
                                                                 "best_epoch")


def _cell_from_records(base, arch, method, value, epoch, folder=STORED):
    results = [r["result"] for r in (json.loads(f.read_text()) for f in folder.glob("*.json"))
               if (r["config"]["base"], r["config"]["arch"], r["config"]["method"]) == (base, arch, method)]
    errors = [r[value] for r in results]
    return f"{statistics.mean(errors):.2f} ± {statistics.stdev(errors):.2f} " \
           f"({statistics.mean(r[epoch] for r in results):.0f})"


@pytest.mark.parametrize("experiment", ["tables", "cnn"])
def test_every_quick_run_of_the_tables_and_the_cnn_is_stored_with_consistent_timings(experiment):
    folder = _common.STORED_RESULTS / "ch02" / f"{experiment}_quick"
    records = [json.loads(f.read_text()) for f in sorted(folder.glob("*.json"))]
    assert {config_key(r["config"]) for r in records} == {config_key(c) for c in ch02.experiment_grid(experiment)}
    for record in records:
        config, result = record["config"], record["result"]
        curve = result["test_error_curve"]
        assert len(curve) == len(result["train_loss_curve"]) == config["epochs"]
        assert result["min_test_error"] == pytest.approx(min(curve), abs=1e-3)
        assert curve[result["epoch_of_min"] - 1] == pytest.approx(min(curve), abs=1e-3)
        assert result["test_error"] == pytest.approx(curve[result["best_epoch"] - 1], abs=1e-3)
        # seconds: the initialization plus the training, whose mean per epoch is epoch_seconds
        assert result["seconds"] == pytest.approx(result["init_seconds"] + config["epochs"] * result["epoch_seconds"])
        assert result["init_seconds"] > 0 and result["epoch_seconds"] > 0


def test_stored_tables_and_cnn_runs_are_read_back_and_give_the_books_tables(monkeypatch, tmp_path):
    monkeypatch.setattr(ch02, "run_config", lambda config, device: pytest.fail(f"retrained {config}"))
    _, run = ch02.setup("quick", 0, tmp_path)
    table = ch02.run_experiment("tables", run)
    assert len(table) == 108
    folder = _common.STORED_RESULTS / "ch02" / "tables_quick"
    ours = ch02.comparison_table(table, ch02.PAPER_TABLE1, ["vanilla", "lsuv", "ibci"]).set_index(["init", "layers"])
    assert ours.loc[("Xavier", "2"), "IBCI (ours)"] == _cell_from_records("xavier", "IBCI-2", "ibci",
                                                                          "min_test_error", "epoch_of_min", folder)
    assert ours.loc[("He", "5"), "Vanilla (ours)"] == _cell_from_records("he", "IBCI-5", "vanilla",
                                                                         "min_test_error", "epoch_of_min", folder)
    cnn = ch02.cnn_table(ch02.run_experiment("cnn", run)).set_index("method")
    records = [json.loads(f.read_text()) for f in (_common.STORED_RESULTS / "ch02" / "cnn_quick").glob("*.json")]
    init = [r["result"]["init_seconds"] for r in records if r["config"]["method"] == "ibci"]
    assert cnn.loc["ibci", "initialization (s)"] == round(statistics.mean(init), 2)
    assert list(cnn.index) == list(ch02.CNN_METHODS)


# ------------------------------------------------------------------------------------------------- runs
def test_one_run_has_the_schema_and_follows_the_protocol(tiny_mnist_like):
    out = ch02.train_campaign_run(tiny_mnist_like, arch="IBCI-2", base="he", method="ibci", seed=0, epochs=2,
                                  dataset="tiny", device="cpu")
    assert {"test_error", "best_epoch", "val_error", "min_test_error", "epoch_of_min", "seconds", "init_seconds",
            "epoch_seconds", "test_error_curve", "train_loss_curve"} <= set(out)
    assert len(out["test_error_curve"]) == 2
    assert out["min_test_error"] == pytest.approx(min(out["test_error_curve"]), abs=1e-3)
    assert out["seconds"] >= out["init_seconds"] > 0
    with pytest.raises(ValueError, match="dataset"):
        ch02.train_campaign_run(tiny_mnist_like, arch="IBCI-2", base="he", method="ibci", seed=0, epochs=1,
                                dataset="mnist")
    with pytest.raises(ValueError, match="method"):
        ch02.initialize_for_method(models.build_model("IBCI-2"), "magic", "he", tiny_mnist_like.x_train,
                                   tiny_mnist_like.y_train, gen())


def test_a_vanilla_run_is_he_from_the_seeds_generator_then_plain_sgd(tiny_mnist_like):
    # written out: seed torch, build, He drawn from a generator seeded with the run's seed, SGD lr 0.1 batch 100
    torch.manual_seed(3)
    model = models.build_model("IBCI-2")
    init.he_(model, generator=gen(3))
    history = train.fit(model, tiny_mnist_like, epochs=2, lr=0.1, batch_size=100, seed=3, progress=False,
                        optimizer="sgd", momentum=0.0)
    out = ch02.train_campaign_run(tiny_mnist_like, arch="IBCI-2", base="he", method="vanilla", seed=3, epochs=2)
    assert out["train_loss_curve"] == history.table["train_loss"].astype(float).round(5).tolist()
    assert out["min_test_error"] == float(history.min_test_error)


def test_campaign_then_lsuv_on_the_cnn_and_run_config_loads_images(monkeypatch):
    g = gen(0)
    images = SimpleNamespace(name="tiny-images", num_classes=3, x_train=torch.randn(60, 1, 12, 12, generator=g),
                             y_train=torch.arange(3).repeat(20))
    model = models.build_model("SmallCNN-4-6", images)
    ch02.initialize_for_method(model, "ibci+lsuv", "he", images.x_train, images.y_train, gen(1))
    with torch.no_grad():
        assert model(images.x_train).var().item() == pytest.approx(1.0, abs=0.05)  # LSUV ran last
    loaded = []
    monkeypatch.setattr(ch02, "cached_dataset", lambda name, **options: loaded.append((name, options)) or name)
    monkeypatch.setattr(ch02, "train_campaign_run", lambda data, **config: {"data": data})
    for config in ch02.experiment_grid("cnn", "quick")[:1] + ch02.experiment_grid("tables", "quick")[:1]:
        ch02.run_config(config, "cpu")
    assert loaded == [("mnist-5k", {"flatten": False}), ("mnist-5k", {"flatten": True})]


# ------------------------------------------------------------------------------------------------ tables
def test_comparison_table_puts_paper_beside_ours():
    rows = [dict(base="xavier", arch="IBCI-2", method=m, seed=s, min_test_error=e, epoch_of_min=ep,
                 test_error=e + 1, best_epoch=ep + 1)
            for m, s, e, ep in [("vanilla", 0, 3.0, 10), ("vanilla", 1, 5.0, 20), ("ibci", 0, 2.0, 4),
                                ("ibci", 1, 2.0, 6)]]
    table = ch02.comparison_table(pd.DataFrame(rows), ch02.PAPER_TABLE1, ["vanilla", "lsuv", "ibci"])
    row = table.iloc[0]
    assert row["Vanilla (paper)"] == "2.04 ± 0.03 (75)"
    assert row["Vanilla (ours)"] == "4.00 ± 1.41 (15)"
    assert row["IBCI (ours)"] == "2.00 ± 0.00 (5)"
    assert row["LSUV (ours)"] == "–"
    assert row["seeds"] == 2
    honest = ch02.comparison_table(pd.DataFrame(rows), {}, ["vanilla"], value="test_error", epoch="best_epoch")
    assert honest.iloc[0]["Vanilla (ours)"] == "5.00 ± 1.41 (16)"
    with pytest.raises(KeyError, match="test_error_at_best_val"):
        ch02.comparison_table(pd.DataFrame(rows), {}, ["vanilla"], value="test_error_at_best_val")


def test_summaries_of_the_three_experiments():
    rows = [dict(base=b, arch=a, method=m, seed=s, min_test_error=2.0 + s, epoch_of_min=5, test_error=3.0,
                 best_epoch=6, init_seconds=0.5, epoch_seconds=1.0)
            for b in ("xavier", "he") for a in ("IBCI-2",) for m in ch02.METHODS for s in (0, 1)]
    tables = ch02.summary("tables", pd.DataFrame(rows))
    assert tables.loc[0, "TIE (paper)"] == "2.04 ± 0.07 (58)" and tables.loc[0, "Vanilla (paper)"] == "2.04 ± 0.03 (75)"
    assert tables.loc[0, "random election (paper)"] == "–" and tables.loc[0, "IIM (ours)"] == "2.50 ± 0.71 (5)"
    fashion = ch02.summary("fashion", pd.DataFrame(rows))
    assert not [c for c in fashion.columns if "paper" in c] and "LSUV (ours)" in fashion.columns
    cnn_rows = [dict(r, arch="SmallCNN-16-32") for r in rows if r["base"] == "he" and r["method"] in ("vanilla", "ibci")]
    cnn = ch02.summary("cnn", pd.DataFrame(cnn_rows))
    assert cnn["method"].tolist() == ["vanilla", "ibci"] and cnn.loc[0, "initialization (s)"] == 0.5
    assert ch02.summary("tables", pd.DataFrame()).empty


# ------------------------------------------------------------------------------- what the page says
def _runs(rows):
    return pd.DataFrame([dict(base=b, arch=a, method=m, seed=s, min_test_error=e, epoch_of_min=ep,
                              test_error=e + 1, best_epoch=ep + 1) for b, a, m, s, e, ep in rows])


def test_reproduction_frame_is_the_long_form_of_the_comparison_table():
    runs = _runs([("xavier", "IBCI-2", "vanilla", 0, 3.0, 10), ("xavier", "IBCI-2", "vanilla", 1, 5.0, 20),
                  ("xavier", "IBCI-2", "random", 0, 2.0, 4), ("xavier", "IBCI-2", "random", 1, 2.0, 6),
                  ("he", "IBCI-5", "vanilla", 0, 7.0, 3), ("he", "IBCI-5", "vanilla", 1, 7.0, 5)])
    frame = ch02.reproduction_frame(runs, ch02.PAPER_TABLE1, ["vanilla", "lsuv", "random"])
    # one line per (row, method with runs), in the table's row order and the given method order
    assert frame[["network", "method"]].values.tolist() == [
        ["Xavier 2-layer", "Vanilla"], ["Xavier 2-layer", "random election"], ["He 5-layer", "Vanilla"]]
    first = frame.iloc[0]
    assert (first["ours_mean"], first["ours_epoch"], first["seeds"]) == (4.0, 15.0, 2)
    assert first["ours_std"] == pytest.approx(2 ** 0.5)
    assert (first["paper"], first["paper_std"], first["paper_epoch"]) == ch02.PAPER_TABLE1[("xavier", "IBCI-2")]["vanilla"]
    assert frame.iloc[1][["paper", "paper_std", "paper_epoch"]].isna().all()  # the paper has no control
    honest = ch02.reproduction_frame(runs, {}, ["vanilla"], value="test_error", epoch="best_epoch")
    assert honest["ours_mean"].tolist() == [5.0, 8.0] and honest["paper"].isna().all()
    # the comparison table shows the same numbers
    table = ch02.comparison_table(runs, ch02.PAPER_TABLE1, ["vanilla"])
    assert table.loc[0, "Vanilla (ours)"] == f"{first['ours_mean']:.2f} ± {first['ours_std']:.2f} (15)"
    with pytest.raises(KeyError, match="seed"):
        ch02.reproduction_frame(runs.drop(columns="seed"), {}, ["vanilla"])


def _frame(means, stds=None):
    """A reproduction frame from {network: {method label: mean}}."""
    return pd.DataFrame([{"network": n, "method": m, "ours_mean": v,
                          "ours_std": (stds or {}).get(n, {}).get(m, 0.1)}
                         for n, row in means.items() for m, v in row.items()])


def test_compare_methods_decides_on_the_means_the_tables_show():
    frame = _frame({"A": {"IBCI": 5.0, "Vanilla": 5.5}, "B": {"IBCI": 6.001, "Vanilla": 5.996},
                    "C": {"IBCI": 7.3, "Vanilla": 7.1}},
                   stds={"A": {"IBCI": 0.2, "Vanilla": 0.6}, "C": {"IBCI": 0.1, "Vanilla": 0.1}})
    versus = ch02.compare_methods(frame, "ibci", "Vanilla")     # a key or a label
    assert versus.index.tolist() == ["A", "B", "C"]
    assert versus["outcome"].tolist() == ["lower", "tie", "higher"]  # 6.00 and 6.00 as printed: a tie
    assert versus["diff"].tolist() == [0.5, 0.0, -0.2]
    assert versus["clear"].tolist() == [False, False, True]        # 0.5 is not beyond a std of 0.6
    assert ch02.comparison_phrase(versus, "IBCI", "vanilla") == (
        "IBCI is lower than vanilla in 1 of 3 rows (by 0.50 points), higher in 1 (by 0.20 points) "
        "and level with it in 1")
    everywhere = ch02.compare_methods(_frame({"A": {"IBCI": 1.0, "TIE": 2.0}, "B": {"IBCI": 1.0, "TIE": 1.2}}),
                                      "ibci", "tie")
    assert ch02.comparison_phrase(everywhere, "IBCI", "TIE") == "IBCI is lower than TIE in all 2 rows (by 0.20 to 1.00 points)"
    with pytest.raises(ValueError, match="no method"):
        ch02.compare_methods(frame, "tie", "vanilla")


def test_best_counts_count_a_tie_for_every_tied_method():
    frame = _frame({"A": {"IBCI": 5.0, "TIE": 6.0, "IIM": 5.004}, "B": {"IBCI": 7.0, "TIE": 6.0, "IIM": 6.5},
                    "C": {"IBCI": 5.0, "TIE": 5.0, "IIM": 4.0}})
    counts = ch02.best_counts(frame)
    assert counts.index.tolist() == ["IBCI", "TIE", "IIM"] and counts.attrs["rows"] == 3
    assert counts.loc["IBCI"].tolist() == [1, 0, 2, 1]   # lowest (tied in A), sole, highest (tied in C), sole
    assert counts.loc["TIE"].tolist() == [1, 1, 2, 1]
    assert counts.loc["IIM"].tolist() == [2, 1, 0, 0]


def test_first_epoch_below_and_join_phrase():
    assert ch02.first_epoch_below([5, 3, 4, 2, 1], [4, 4, 3, 3, 3]) == 4
    assert ch02.first_epoch_below([1, 1, 1], [2, 2, 2]) == 1
    assert ch02.first_epoch_below([1, 3], [2, 2]) is None
    with pytest.raises(ValueError, match="same"):
        ch02.first_epoch_below([1, 2], [1, 2, 3])
    assert book.join_phrase([]) == "none" and book.join_phrase([], empty="no row") == "no row"
    assert book.join_phrase(["a"]) == "a" and book.join_phrase(["a", "b"]) == "a and b"
    assert book.join_phrase(["a", "b", "c"]) == "a, b and c"
    assert ch02.network_label("he", "IBCI-5") == "He 5-layer"


def test_xavier_and_he_starts_differ_only_in_scale_which_lsuv_removes(tiny_mnist_like):
    # what chapter 2 says about its tables: a Xavier and a He campaign elect the same directions,
    # and LSUV after Xavier or after He gives the same weights (within LSUV's tolerance)
    x, y = tiny_mnist_like.x_train, tiny_mnist_like.y_train
    for method, close in [("ibci", "directions"), ("lsuv", "weights")]:
        nets = {base: ch02.initialize_for_method(models.build_model("IBCI-3"), method, base, x, y, gen(4))
                for base in ("xavier", "he")}
        for (name, a), b in zip(nets["xavier"].named_parameters(), nets["he"].parameters()):
            if not name.endswith("weight"):
                continue
            if close == "directions":
                a, b = torch.nn.functional.normalize(a, dim=1), torch.nn.functional.normalize(b, dim=1)
                assert torch.allclose(a, b, atol=1e-5), name
                ratio = nets["he"].get_parameter(name).norm(dim=1) / nets["xavier"].get_parameter(name).norm(dim=1)
                assert torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-4), name  # one scale per layer
            else:
                assert ((a - b).abs().max() / a.abs().max()).item() < 0.05, name
