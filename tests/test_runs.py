"""neuronlab.runs: finished runs survive, are never recomputed, and summaries match numpy."""

import json
import os

import numpy as np
import pandas as pd
import pytest

from neuronlab.runs import RunStore, config_key, format_mean_std, summarize


def test_key_ignores_dict_order_and_put_get_round_trip(tmp_path):
    assert config_key({"a": 1, "b": [1, 2]}) == config_key({"b": [1, 2], "a": 1})
    assert config_key({"a": 1}) != config_key({"a": 2})
    assert config_key({"n": np.int64(3)}) == config_key({"n": 3})
    assert len(config_key({"a": 1})) == 20
    store = RunStore(tmp_path / "s")
    assert store.get({"a": 1}) is None and len(store) == 0 and {"a": 1} not in store
    stored = store.put({"a": 1, "b": "x"}, {"err": np.float64(2.5), "curve": (1, 2), "nested": {"k": None}})
    assert stored == {"err": 2.5, "curve": [1, 2], "nested": {"k": None}}
    assert RunStore(tmp_path / "s").get({"b": "x", "a": 1}) == stored  # a fresh store object reads the file
    assert {"a": 1, "b": "x"} in store and len(store) == 1
    with pytest.raises(TypeError, match="JSON"):
        config_key({"f": object()})
    with pytest.raises(TypeError, match="JSON"):
        store.put({"a": 2}, {"f": object()})


def test_run_calls_fn_once(tmp_path):
    store = RunStore(tmp_path)
    calls = []

    def work(cfg):
        calls.append(cfg)
        return {"value": cfg["x"] * 2, "pair": (1, 2)}

    first = store.run({"x": 3}, work)
    assert first == store.run({"x": 3}, work) == {"value": 6, "pair": [1, 2]} and calls == [{"x": 3}]


def test_sweep_skips_finished_runs_and_reports_them(tmp_path, capsys):
    calls = []

    def work(cfg):
        calls.append(cfg["seed"])
        return {"err": float(cfg["seed"])}

    store = RunStore(tmp_path)
    configs = [{"seed": s, "model": "mlp"} for s in range(4)]
    store.sweep(configs[:2], work, progress=False)
    table = store.sweep(configs + [configs[0]], work, progress=True)  # a duplicate is run and listed once
    assert calls == [0, 1, 2, 3]
    assert list(table["seed"]) == [0, 1, 2, 3] and list(table["err"]) == [0.0, 1.0, 2.0, 3.0]
    assert "2 of 4 runs already finished (reused), 2 to run" in capsys.readouterr().out
    store.sweep(configs, work, progress=False)
    assert calls == [0, 1, 2, 3] and len(store) == 4
    assert list(store.table()["seed"]) == [0, 1, 2, 3]  # the whole store, oldest first


def test_a_failing_run_keeps_the_finished_ones(tmp_path):
    def work(cfg):
        if cfg["i"] == 2:
            raise RuntimeError("session died")
        return {"i2": cfg["i"] ** 2}

    store = RunStore(tmp_path)
    with pytest.raises(RuntimeError):
        store.sweep([{"i": i} for i in range(4)], work, progress=False)
    assert len(store) == 2 and store.get({"i": 1}) == {"i2": 1}


def test_survives_a_truncated_record_and_an_interrupted_write(tmp_path, monkeypatch):
    calls = []

    def work(cfg):
        calls.append(cfg["seed"])
        return {"err": float(cfg["seed"])}

    store = RunStore(tmp_path)
    configs = [{"seed": s} for s in range(3)]
    store.sweep(configs, work, progress=False)
    # a record cut short (e.g. copied by a sync tool while it was written) is ignored and redone
    (tmp_path / f"{config_key(configs[2])}.json").write_text('{"config": {"seed": 2}, "res')
    with pytest.warns(UserWarning, match="unreadable"):
        assert len(store) == 2
    with pytest.warns(UserWarning, match="unreadable"):
        table = store.sweep(configs, work, progress=False)
    assert calls == [0, 1, 2, 2] and list(table["err"]) == [0.0, 1.0, 2.0]
    # a process killed in the middle of writing leaves the previous record intact and no stray file
    def killed(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", killed)
    with pytest.raises(KeyboardInterrupt):
        store.put(configs[0], {"err": 99.0})
    monkeypatch.undo()
    assert store.get(configs[0]) == {"err": 0.0}
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json"] * 3
    record = json.loads((tmp_path / f"{config_key(configs[0])}.json").read_text())
    assert record["config"] == configs[0] and "finished" in record


def test_table_flattens_nested_results(tmp_path):
    store = RunStore(tmp_path)
    store.put({"seed": 0, "lr": 0.1}, {"history": {"val_acc": [0.5, 0.6]}, "seed": "echo", "best": 2})
    table = store.table()
    assert list(table.columns[:2]) == ["lr", "seed"]  # configuration first, then results
    assert sorted(table.columns[2:]) == ["best", "history.val_acc", "result.seed"]
    assert table.loc[0, "history.val_acc"] == [0.5, 0.6] and table.loc[0, "result.seed"] == "echo"
    assert RunStore(tmp_path / "empty").table().empty


def test_summarize_matches_numpy_and_formats():
    table = pd.DataFrame({"m": ["a", "a", "a", "b", "c"], "depth": [2, 2, 2, 2, 3],
                          "err": [1.0, 2.0, 4.0, 3.0, None]})
    out = summarize(table, by=["m"], value="err").set_index("m")
    assert list(out.index) == ["a", "b", "c"] and list(out.columns) == ["mean", "std", "n"]
    assert out.loc["a", "mean"] == pytest.approx(np.mean([1, 2, 4]))
    assert out.loc["a", "std"] == pytest.approx(np.std([1, 2, 4], ddof=1))
    assert out.loc["a", "n"] == 3 and np.isnan(out.loc["b", "std"]) and out.loc["b", "n"] == 1
    assert out.loc["c", "n"] == 0
    two = summarize(table, by=["depth", "m"], value="err")
    assert len(two) == 3 and two.loc[0, "mean"] == pytest.approx(7 / 3)
    assert summarize(table.rename(columns={"err": "test_error"}), by="m")["n"].tolist() == [3, 1, 0]
    assert format_mean_std(2.04, 0.031) == "2.04 ± 0.03"
    assert format_mean_std(12.345, 1.0, digits=1) == "12.3 ± 1.0"
    assert format_mean_std(3.0, float("nan")) == "3.00"
    assert format_mean_std(float("nan"), float("nan")) == "–"
    with pytest.raises(KeyError, match="not in the table"):
        summarize(table, by=["model"], value="err")
