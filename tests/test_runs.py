"""neuronlab.runs: finished runs survive, are never recomputed, and summaries match numpy."""

import numpy as np
import pandas as pd
import pytest

from neuronlab.runs import RunStore, config_key, format_mean_std, summarize


def test_key_ignores_dict_order_and_put_get_round_trip(tmp_path):
    assert config_key({"a": 1, "b": [1, 2]}) == config_key({"b": [1, 2], "a": 1})
    assert config_key({"a": 1}) != config_key({"a": 2})
    store = RunStore(tmp_path / "s")
    assert store.get({"a": 1}) is None and len(store) == 0
    store.put({"a": 1}, {"err": 2.5, "curve": [1, 2]})
    assert store.get({"a": 1}) == {"err": 2.5, "curve": [1, 2]} and {"a": 1} in store


def test_sweep_skips_finished_runs_and_survives_a_corrupt_record(tmp_path):
    calls = []

    def work(cfg):
        calls.append(cfg["seed"])
        return {"err": float(cfg["seed"])}

    store = RunStore(tmp_path)
    configs = [{"seed": s} for s in range(4)]
    store.sweep(configs[:2], work, progress=False)
    table = store.sweep(configs, work, progress=False)
    assert calls == [0, 1, 2, 3] and list(table["err"]) == [0.0, 1.0, 2.0, 3.0]
    (tmp_path / f"{config_key(configs[3])}.json").write_text('{"config": {"seed": 3}, "res')  # killed mid-write
    with pytest.warns(UserWarning, match="unreadable"):
        store.sweep(configs, work, progress=False)
    assert calls == [0, 1, 2, 3, 3]
    with pytest.raises(TypeError, match="JSON"):
        config_key({"f": object()})


def test_summarize_matches_numpy_and_formats():
    table = pd.DataFrame({"m": ["a", "a", "a", "b"], "err": [1.0, 2.0, 4.0, 3.0]})
    out = summarize(table, by=["m"], value="err").set_index("m")
    assert out.loc["a", "mean"] == pytest.approx(np.mean([1, 2, 4]))
    assert out.loc["a", "std"] == pytest.approx(np.std([1, 2, 4], ddof=1))
    assert out.loc["a", "n"] == 3 and np.isnan(out.loc["b", "std"])
    assert format_mean_std(2.04, 0.031) == "2.04 ± 0.03"
    assert format_mean_std(3.0, float("nan")) == "3.00"
    with pytest.raises(KeyError, match="not in the table"):
        summarize(table, by=["model"], value="err")
