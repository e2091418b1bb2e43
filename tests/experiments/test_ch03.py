"""Chapter 3's experiments: the NSR runs of every family, the grids and their stored runs, the tables, the CLI."""

import json
import math
import re
import statistics
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from neuronlab.classwise import IntraClassVariance
from neuronlab.data import make_csbm
from neuronlab.experiments import __main__ as cli
from neuronlab import book
from neuronlab.experiments import ch03_nsr as ch03
from neuronlab.experiments._common import STORED_RESULTS
from neuronlab.runs import config_key

SCHEMA = ("test_error", "best_epoch", "val_error", "min_test_error", "epoch_of_min", "seconds", "test_error_curve",
          "train_loss_curve")


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------------- runs
def test_reproduction_runs_for_each_family_and_method(tiny_mnist_like):
    tiny = tiny_mnist_like
    vanilla = ch03.train_nsr_run(tiny, arch="MLP-4", method="vanilla", seed=0, epochs=2, device="cpu")
    nsr = ch03.train_nsr_run(tiny, arch="MLP-4", method="nsr", seed=0, epochs=2, device="cpu")
    assert vanilla["layer"] == nsr["layer"] == "fc3" and nsr["lam"] == ch03.OFFICIAL_LAMBDAS["MLP-4"]
    assert vanilla["lam"] == 0.0
    assert nsr["intra_class_variance"] < vanilla["intra_class_variance"]  # the regularized layer steadies
    auto = ch03.train_nsr_run(tiny, arch="MLP-3", method="nsr", seed=0, epochs=1, layer="auto")
    assert auto["layer"] in ("fc1", "fc2")
    for method in ["l1", "l2", "jacobian", "orthogonality"]:
        out = ch03.train_nsr_run(tiny, arch="MLP-3", method=method, seed=0, epochs=1, lam=0.01)
        assert 0 <= out["test_error"] <= 100
    assert set(ch03.PAPER_TABLE["MLP-4"]) == {"vanilla", "nsr"}
    with pytest.raises(ValueError, match="method"):
        ch03.train_nsr_run(tiny, arch="MLP-4", method="dropout", seed=0, epochs=1)
    with pytest.raises(ValueError, match="architecture"):
        ch03.train_nsr_run(tiny, arch="Transformer", method="nsr", seed=0, epochs=1)
    with pytest.raises(ValueError, match="dataset"):
        ch03.train_nsr_run(tiny, arch="MLP-4", method="nsr", seed=0, epochs=1, dataset="mnist")

    images = SimpleNamespace(**{k: (v.reshape(-1, 1, 28, 28) if k.startswith("x_") else v)
                                for k, v in vars(tiny).items()})
    out = ch03.train_nsr_run(images, arch="SmallCNN", method="nsr", seed=0, epochs=1)
    assert out["layer"] == "fc2"
    graph = make_csbm(num_nodes=120, num_classes=3, num_features=8, seed=0)
    out = ch03.train_nsr_run(graph, arch="GraphSAGE-2", method="nsr", seed=0, epochs=3, lam=0.5)
    assert out["layer"] == "conv2" and len(out["test_error_curve"]) == 3
    with pytest.raises(ValueError, match="dense inputs"):
        ch03.train_nsr_run(graph, arch="GraphSAGE-2", method="nsr", seed=0, epochs=1, layer="auto")


def test_a_run_returns_the_shared_schema_consistent_with_its_curves(tiny_mnist_like):
    out = ch03.train_nsr_run(tiny_mnist_like, arch="MLP-4", method="nsr", seed=0, epochs=3, lam=1.0,
                             dataset="tiny", device="cpu")
    assert set(SCHEMA) <= set(out) and out["diverged"] is False
    curve = out["test_error_curve"]
    assert len(curve) == 3 and len(out["train_loss_curve"]) == 3
    assert out["test_error"] == pytest.approx(curve[out["best_epoch"] - 1], abs=1e-3)
    assert out["min_test_error"] == pytest.approx(min(curve), abs=1e-3)
    assert curve.index(min(curve)) + 1 == out["epoch_of_min"] and out["min_test_error"] <= out["test_error"]
    assert out["seconds"] > 0
    json.dumps(out)  # ready for the run store


def test_several_layers_divergence_and_the_steadiness_history(tiny_mnist_like):
    out = ch03.train_nsr_run(tiny_mnist_like, arch="MLP-4", method="nsr", seed=0, epochs=1, layer="fc2+fc3", lam=1.0)
    assert out["layer"] == "fc2+fc3" and 0 <= out["val_error"] <= 100 and out["diverged"] is False
    exploded = ch03.train_nsr_run(tiny_mnist_like, arch="MLP-4", method="nsr", seed=0, epochs=2, lam=1e8)
    assert exploded["diverged"] is True and math.isnan(exploded["test_error"])  # NaN, kept as a result
    assert math.isnan(exploded["min_test_error"]) and exploded["epoch_of_min"] == exploded["best_epoch"] == -1
    assert re.search(r"(lower|smaller) (the )?learning rate", exploded["message"]) and exploded["seconds"] > 0
    model, history = ch03.steadiness_history(tiny_mnist_like, arch="MLP-4", lam=1.0, epochs=2, watch=["fc2"])
    stat = IntraClassVariance(10)
    stat.update(model.fc2(torch.relu(model.fc1(tiny_mnist_like.x_train))).detach(), tiny_mnist_like.y_train)
    assert history.table["icv_fc2"].iloc[-1] == pytest.approx(stat.compute()["layer"].item(), rel=1e-5)
    assert "loss_nsr" in history.table
    _, vanilla = ch03.steadiness_history(tiny_mnist_like, arch="MLP-3", epochs=1)
    assert {"icv_fc1", "icv_fc2"} <= set(vanilla.table) and "loss_nsr" not in vanilla.table


def test_cifar_style_cnn_run_crops_and_flips(monkeypatch):
    g = gen(3)
    cifar_like = SimpleNamespace(name="cifar10", num_classes=10,  # name "cifar10": crop-and-flip augmentation
                                 x_train=torch.randn(40, 3, 32, 32, generator=g), y_train=torch.arange(10).repeat(4),
                                 x_val=torch.randn(20, 3, 32, 32, generator=g), y_val=torch.arange(10).repeat(2),
                                 x_test=torch.randn(20, 3, 32, 32, generator=g), y_test=torch.arange(10).repeat(2))
    crops = []
    original = ch03.random_crop_flip
    monkeypatch.setattr(ch03, "random_crop_flip",
                        lambda x, generator: crops.append(len(x)) or original(x, generator=generator))
    out = ch03.train_nsr_run(cifar_like, arch="VGG-19-w4", method="nsr", seed=0, epochs=1, batch_size=20, lam=0.1)
    assert out["layer"] == "fc"
    assert len(out["test_error_curve"]) == 1 and out["diverged"] is False
    assert crops == [20, 20]  # every training batch of the epoch


def test_paper_model_initializes_the_mlps_as_the_official_code_and_keeps_graph_dropout():
    torch.manual_seed(0)
    mlp = ch03.paper_model("MLP-4", None)
    assert mlp.widths == [784, 256, 100, 10]
    for layer, (fan_in, fan_out) in (("fc1", (784, 256)), ("fc2", (256, 100))):
        weight = getattr(mlp, layer).weight
        assert weight.std().item() == pytest.approx(math.sqrt(2 / (fan_in + fan_out)), rel=0.05)  # Xavier normal
        assert torch.equal(getattr(mlp, layer).bias, torch.zeros(fan_out))
    torch.manual_seed(0)
    again = ch03.paper_model("MLP-4", None)
    assert torch.equal(mlp.fc1.weight, again.fc1.weight)  # the draw follows the global seed
    graph = make_csbm(num_nodes=60, num_classes=3, num_features=8, seed=0)
    assert ch03.paper_model("GraphSAGE-2", graph).dropout.p == 0.5  # the configuration's dropout 0.0 means "default"
    assert ch03.paper_model("GCN-3", graph, dropout=0.2).dropout.p == 0.2
    assert [ch03.family_of(a) for a in ("MLP-10", "SmallCNN", "ResNet-18-w16", "GCN-2", "GraphSAGE-4")] == \
        ["mlp", "cnn", "cnn", "gnn", "gnn"]


# ------------------------------------------------------------------------------------------------ grids
def test_mlp_grid_and_comparison_table():
    grid = ch03.mlp_grid("quick", archs=["MLP-4"], seeds=[0, 1], epochs=3)
    assert len(grid) == 6 and {g["method"] for g in grid} == {"vanilla", "nsr"}
    rows = [dict(arch="MLP-4", seed=s, method=m, layer=l, test_error=e)
            for s, m, l, e in [(0, "vanilla", "logits", 8.0), (1, "vanilla", "logits", 10.0),
                               (0, "nsr", "logits", 6.0), (1, "nsr", "logits", 6.0)]]
    row = ch03.comparison_table(pd.DataFrame(rows)).iloc[0]
    assert row["vanilla (paper)"] == "2.29 ± 0.07" and row["NSR (paper)"] == "1.64 ± 0.04"
    assert row["gain (paper)"] == "28.4 %"  # the paper prints 28.38 %
    assert row["vanilla (ours)"] == "9.00 ± 1.41" and row["NSR, logits (ours)"] == "6.00 ± 0.00"
    assert row["gain, logits (ours)"] == "33.3 %"


def test_experiment_grids_share_runs_and_cover_the_paper():
    grids = {name: ch03.experiment_grid(name, "quick") for name in ch03.EXPERIMENTS}
    for name, grid in grids.items():
        assert len({config_key(c) for c in grid}) == len(grid), f"{name} repeats a configuration"
    mlp = grids["mlp"]
    assert len(mlp) == len(ch03.MLP_ARCHS) * 3 * 3
    assert {c["layer"] for c in mlp if c["method"] == "nsr"} == {"logits", "auto"}
    # vanilla and NSR of the baselines table are the very runs of the MLP table (one store: trained once)
    shared = [c for c in grids["baselines"] if c["method"] in ("vanilla", "nsr")]
    assert len(shared) == 6 and {config_key(c) for c in shared} <= {config_key(c) for c in mlp}
    assert {c["experiment"] for c in shared} == {"mlp"}
    for method in ("l1", "l2", "jacobian", "orthogonality"):
        lams = sorted({c["lam"] for c in grids["baselines"] if c["method"] == method})
        assert lams == sorted(ch03.LAMBDA_CHOICES[method])
    assert {c["layer"] for c in grids["layers"]} == {"fc1", "fc2", "fc3", "fc2+fc3"}
    assert {c["arch"] for c in grids["gnn"]} >= {"GCN-2", "GCN-4", "GraphSAGE-2", "GraphSAGE-4"}
    full_cnn = ch03.experiment_grid("cnn", "full")
    assert {(c["dataset"], c["lr"], c["batch_size"]) for c in full_cnn} == {("cifar10", 0.1, 128)}
    assert {c["arch"] for c in full_cnn} == {"ResNet-18", "VGG-19"}
    assert all("device" not in c for grid in grids.values() for c in grid)  # the device is no part of a run's key
    with pytest.raises(ValueError, match="experiment"):
        ch03.experiment_grid("resnet", "quick")


def test_config_data_flattens_for_mlps_and_builds_the_csbm_graph(monkeypatch):
    calls = []
    monkeypatch.setattr(ch03, "cached_dataset", lambda name, **options: calls.append((name, options)))
    for arch in ("MLP-4", "SmallCNN", "GCN-2"):
        ch03.config_data({"dataset": "csbm" if arch == "GCN-2" else "mnist-5k", "arch": arch})
    assert calls == [("mnist-5k", {"flatten": True}), ("mnist-5k", {"flatten": False}),
                     ("csbm", ch03.CSBM_SETTINGS)]


def test_select_lambda_looks_at_validation_not_test():
    rows = []
    for seed in (0, 1):
        rows.append(dict(arch="MLP-4", method="l1", layer="logits", seed=seed, lam=0.1, val_error=5.0 + seed,
                         test_error=9.0 + seed))
        rows.append(dict(arch="MLP-4", method="l1", layer="logits", seed=seed, lam=1.0, val_error=7.0,
                         test_error=4.0))  # better on test, worse on validation: must not be chosen
        rows.append(dict(arch="MLP-4", method="vanilla", layer="logits", seed=seed, lam=0.0, val_error=8.0,
                         test_error=8.0 + 2 * seed))
    chosen = ch03.select_lambda(pd.DataFrame(rows))
    assert sorted(chosen.loc[chosen.method == "l1", "lam"]) == [0.1, 0.1]
    summary = ch03.summary_table(chosen, ["method"], paper={"l1": (2.27, 0.05)}, paper_key=lambda r: r["method"])
    l1 = summary.set_index("method").loc["l1"]
    assert l1["ours"] == "9.50 ± 0.71" and l1["paper"] == "2.27 ± 0.05" and l1["lambda"] == "0.1" and l1["seeds"] == 2
    assert summary.set_index("method").loc["vanilla", "paper"] == "–"


# ------------------------------------------------------------------------------------------ stored runs
def _stored_files():
    return sorted((STORED_RESULTS / "ch03").glob("*_quick/*.json"))


def test_every_stored_run_is_reached_by_its_experiments_quick_grid_and_every_quick_run_is_stored():
    files = _stored_files()
    reached = {}
    for name in ch03.EXPERIMENTS:
        for config in ch03.experiment_grid(name, "quick"):
            reached.setdefault(config["experiment"], set()).add(config_key(config))
    by_folder = {}
    for file in files:
        owner = file.parent.name[: -len("_quick")]
        assert file.stem in reached.get(owner, set()), f"{file} is reached by no quick grid config of {owner!r}"
        record = json.loads(file.read_text())
        assert config_key(record["config"]) == file.stem and record["config"]["experiment"] == owner
        by_folder.setdefault(owner, set()).add(file.stem)
    assert by_folder == reached  # STORED = EXPERIMENTS: the book ships every quick run (258)
    assert len(files) == 258 and set(ch03.STORED) == set(ch03.EXPERIMENTS)


def test_stored_records_hold_the_schema_consistent_with_their_curves():
    for file in _stored_files():
        result = json.loads(file.read_text())["result"]
        assert {"test_error", "best_epoch", "val_error", "min_test_error", "epoch_of_min", "test_error_curve",
                "train_loss_curve", "intra_class_variance", "lam", "layer"} <= set(result), file
        if result.get("diverged"):
            assert math.isnan(result["min_test_error"]) and result["epoch_of_min"] == -1
            continue
        curve = result["test_error_curve"]
        assert result["test_error"] == pytest.approx(curve[result["best_epoch"] - 1], abs=5e-4), file
        assert result["min_test_error"] == pytest.approx(min(curve), abs=5e-4), file
        assert result["epoch_of_min"] == curve.index(min(curve)) + 1, file


def test_stored_runs_are_read_back_without_training_and_give_the_books_table(monkeypatch, tmp_path):
    monkeypatch.setattr(ch03, "run_config", lambda config, device: pytest.fail(f"trained {config}"))
    _, run = ch03.setup("quick", 0, tmp_path)
    assert ch03.missing_runs("baselines", run) == []
    mlp = ch03.run_experiment("mlp", run)
    assert len(mlp) == 45
    row = ch03.comparison_table(mlp).set_index("model").loc["MLP-4"]
    # against the raw JSON records, averaged with the statistics module
    records = [json.loads(f.read_text()) for f in (STORED_RESULTS / "ch03" / "mlp_quick").glob("*.json")]

    def cell(method, layer):
        errors = [r["result"]["test_error"] for r in records
                  if (r["config"]["arch"], r["config"]["method"], r["config"]["layer"]) == ("MLP-4", method, layer)]
        return f"{statistics.mean(errors):.2f} ± {statistics.stdev(errors):.2f}"

    assert row["vanilla (ours)"] == cell("vanilla", "logits") and row["NSR, logits (ours)"] == cell("nsr", "logits")
    baselines = ch03.run_experiment("baselines", run)  # 6 runs from the mlp store, 36 from its own
    assert len(baselines) == 42 and set(ch03.tidy(baselines)["lam"][:3]) == {0.0}
    assert not (tmp_path / "ch03").exists()  # nothing was written to the runs folder


def test_shared_runs_are_trained_once_into_their_owners_store(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(ch03, "run_config", lambda config, device, progress=False: calls.append(config) or dict(
        test_error=1.0, val_error=1.0, lam=config.get("lam", 0.0)))
    _, run = ch03.setup("full", 0, tmp_path, device="cpu")
    assert len(ch03.missing_runs("baselines", run)) == 2 * 5 + 4 * 3 * 5
    first = ch03.run_experiment("baselines", run)
    assert len(first) == len(calls) == 70
    assert len(list((tmp_path / "ch03" / "mlp_full").glob("*.json"))) == 10  # vanilla and NSR, MLP-4, 5 seeds
    assert len(list((tmp_path / "ch03" / "baselines_full").glob("*.json"))) == 60
    again = ch03.run_experiment("baselines", run)
    assert len(again) == 70 and len(calls) == 70  # read back, not retrained
    assert len(ch03.missing_runs("mlp", run)) == len(ch03.experiment_grid("mlp", "full")) - 10


# -------------------------------------------------------------------------------------------- command line


def test_command_line_trains_into_the_runs_folder_and_prints_the_summary(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(ch03, "run_config", lambda config, device, progress=False: dict(
        test_error=5.0 + config["seed"] + (config["method"] == "vanilla"), val_error=5.0,
        lam=config.get("lam", 7.4865)))
    tables = cli.main(["ch03", "--profile", "full", "--runs", str(tmp_path), "--experiments", "normalization"])
    printed = capsys.readouterr().out
    assert len(tables["normalization"]) == 20
    assert len(list((tmp_path / "ch03" / "normalization_full").glob("*.json"))) == 20
    # seeds 0..4: NSR 5..9 (mean 7), vanilla 6..10 (mean 8), sample std 1.58
    assert "7.00 ± 1.58" in printed and "8.00 ± 1.58" in printed
    summary = ch03.summary("normalization", tables["normalization"])
    assert list(summary.columns[:5]) == ["dataset", "arch", "method", "layer", "batchnorm"]
    assert len(summary) == 4


# ------------------------------------------------------------------------------------ numbers for the page
def _runs(rows):
    return pd.DataFrame([dict(arch=a, method=m, layer=l, seed=s, test_error=e) for a, m, l, s, e in rows])


def test_reproduction_frame_is_long_in_order_with_the_papers_numbers_where_it_has_them():
    table = _runs([("MLP-4", "vanilla", "logits", 0, 8.0), ("MLP-4", "vanilla", "logits", 1, 10.0),
                   ("MLP-4", "nsr", "logits", 0, 6.0), ("MLP-4", "nsr", "logits", 1, 7.0),
                   ("MLP-3", "vanilla", "logits", 0, 5.0)])
    frame = ch03.reproduction_frame(table, "arch", "method",
                                    paper=lambda arch, method: ch03.PAPER_TABLE[arch].get(method))
    assert list(zip(frame.arch, frame.method)) == [("MLP-4", "vanilla"), ("MLP-4", "nsr"), ("MLP-3", "vanilla")]
    first = frame.iloc[0]
    assert first.ours_mean == 9.0 and first.ours_std == pytest.approx(math.sqrt(2)) and first.seeds == 2
    assert (first.paper, first.paper_std) == ch03.PAPER_TABLE["MLP-4"]["vanilla"]
    assert math.isnan(frame.iloc[2].ours_std)  # one seed: no spread
    bare = ch03.reproduction_frame(table, "arch", "method")
    assert bare["paper"].isna().all() and set(bare.columns) >= {"ours_mean", "ours_std", "seeds", "paper"}
    with pytest.raises(ValueError, match="column"):
        ch03.reproduction_frame(table, "dataset", "method")


def test_gain_table_compares_nsr_on_one_layer_with_vanilla_seed_by_seed():
    table = _runs([("MLP-4", "vanilla", "logits", 0, 8.0), ("MLP-4", "vanilla", "logits", 1, 10.0),
                   ("MLP-4", "nsr", "logits", 0, 6.0), ("MLP-4", "nsr", "logits", 1, 7.0),
                   ("MLP-4", "nsr", "auto", 0, 12.0), ("MLP-4", "nsr", "auto", 1, 12.0)])
    row = ch03.gain_table(table, paper=ch03.PAPER_TABLE).loc["MLP-4"]
    assert (row.vanilla, row.nsr, row.gain, row.seeds) == (9.0, 6.5, 2.5, 2)
    assert row.gain_pct == pytest.approx(100 * 2.5 / 9)
    assert row.spreads == pytest.approx(2.5 / math.sqrt(2))  # the larger std is vanilla's
    # per-seed gains 2/9 and 3/9 of the vanilla mean
    assert row.gain_pct_std == pytest.approx(statistics.stdev([200 / 9, 300 / 9]))
    assert row.paper_gain_pct == pytest.approx(100 * (2.29 - 1.64) / 2.29)
    auto = ch03.gain_table(table, layer="auto").loc["MLP-4"]
    assert auto.gain == -3.0 and auto.spreads < 0 and math.isnan(auto.paper_gain_pct)
    assert ch03.gain_table(table[table.method == "vanilla"]).empty  # nothing to compare


def test_paper_gnn_gains_average_the_papers_four_datasets():
    gains = ch03.paper_gnn_gains()
    assert list(gains.index) == list(ch03.GNN_ARCHS)
    assert set(gains.columns) == set(ch03.PAPER_GNN_TABLE) | {"mean", "std"}
    pubmed = ch03.PAPER_GNN_TABLE["pubmed"]["GCN-2"]
    assert gains.loc["GCN-2", "pubmed"] == pytest.approx(100 * (12.02 - 11.92) / 12.02)
    assert gains.loc["GCN-2", "pubmed"] == pytest.approx(ch03.relative_gain(pubmed["vanilla"][0], pubmed["nsr"][0]))
    assert gains.loc["GCN-2", "mean"] == pytest.approx(statistics.mean(
        gains.loc["GCN-2", list(ch03.PAPER_GNN_TABLE)]))


def test_phrases_for_the_page():
    assert book.join_phrase(["a", "b", "c"]) == "a, b and c" and book.join_phrase([], empty="no layer") == "no layer"
    assert ch03.change_phrase(1.0, 1.0) == "the same"
    assert ch03.change_phrase(0.5, 1.0) == "2.0 times lower" and ch03.change_phrase(0.6, 1.0) == "40 % lower"
    assert ch03.change_phrase(2.0, 1.0) == "2.0 times higher"
    with pytest.raises(ValueError):
        ch03.change_phrase(0.0, 1.0)


