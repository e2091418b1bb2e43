"""Sweeps that survive a dying Colab session: every finished run is saved at once, and skipped next time.

.. code-block:: python

    store = RunStore("runs/ch01")
    table = store.sweep(configs, train_one)     # re-running reads finished runs back
    summarize(table, by=["scheme"], value="test_error")

A store is a folder with one JSON file per finished run, named by a hash of its configuration (the
canonical JSON with sorted keys, so key order does not matter). Files are written to a temporary name
and renamed, so a run killed mid-write leaves no half-written record; unreadable files are ignored
with a warning and the run is redone.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd

__all__ = ["config_key", "RunStore", "summarize", "format_mean_std"]


def config_key(config: Mapping[str, Any]) -> str:
    """A stable 20-character key of a JSON-serializable configuration (independent of key order)."""
    try:
        text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    except TypeError as err:
        raise TypeError(f"a run configuration must be JSON-serializable (numbers, strings, lists, dicts): {err}")
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class RunStore:
    """A folder of finished runs, one JSON file ``<key>.json`` holding ``{"config": ..., "result": ...}``."""

    def __init__(self, path: Union[str, Path]):
        self.path = Path(path)

    def _file(self, config: Mapping[str, Any]) -> Path:
        return self.path / f"{config_key(config)}.json"

    def _read(self, file: Path) -> Optional[Dict[str, Any]]:
        try:
            return json.loads(file.read_text())
        except (OSError, json.JSONDecodeError):
            warnings.warn(f"ignoring unreadable run record {file}; the run will be redone")
            return None

    def get(self, config: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
        """The stored result of ``config``, or ``None``."""
        file = self._file(config)
        if not file.exists():
            return None
        record = self._read(file)
        return None if record is None else record["result"]

    def put(self, config: Mapping[str, Any], result: Mapping[str, Any]) -> None:
        """Store ``result`` (JSON-serializable) for ``config`` atomically."""
        self.path.mkdir(parents=True, exist_ok=True)
        file = self._file(config)
        tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"config": dict(config), "result": dict(result)}))
        os.replace(tmp, file)

    def __contains__(self, config: Mapping[str, Any]) -> bool:
        return self.get(config) is not None

    def records(self) -> List[Dict[str, Any]]:
        """All readable ``{"config", "result"}`` records, in file-name order."""
        if not self.path.exists():
            return []
        records = (self._read(f) for f in sorted(self.path.glob("*.json")))
        return [r for r in records if r is not None]

    def __len__(self) -> int:
        return len(self.records())

    def run(self, config: Mapping[str, Any], fn: Callable[[Dict[str, Any]], Mapping[str, Any]]) -> Dict[str, Any]:
        """The stored result of ``config``; if there is none, ``fn(config)``, stored before it is returned."""
        result = self.get(config)
        if result is None:
            result = dict(fn(dict(config)))
            self.put(config, result)
        return result

    def table(self, configs: Optional[Iterable[Mapping[str, Any]]] = None) -> pd.DataFrame:
        """One row per run: configuration columns, then result columns (nested dicts are kept as values).

        With ``configs``, only those runs, in that order; otherwise every run in the store.
        """
        if configs is None:
            records = self.records()
        else:
            records = [{"config": dict(c), "result": self.get(c)} for c in configs]
            records = [r for r in records if r["result"] is not None]
        return pd.DataFrame([{**r["config"], **r["result"]} for r in records])

    def sweep(self, configs: Sequence[Mapping[str, Any]], fn: Callable[[Dict[str, Any]], Mapping[str, Any]],
              progress: bool = True) -> pd.DataFrame:
        """Run every configuration not yet stored (in order), store each as it finishes, return the table."""
        from tqdm.auto import tqdm

        configs = list(configs)
        missing = [c for c in configs if c not in self]
        if progress and len(missing) < len(configs):
            print(f"RunStore {self.path}: reusing {len(configs) - len(missing)} finished runs, "
                  f"running {len(missing)}")
        for config in tqdm(missing, disable=not progress, desc="runs", leave=False):
            self.run(config, fn)
        return self.table(configs)


def summarize(table: pd.DataFrame, by: Sequence[str], value: str) -> pd.DataFrame:
    """Mean, sample standard deviation (ddof=1; NaN for a single run) and count of ``value`` per group.

    Rows whose ``value`` is missing (``None``/NaN) are not counted.
    """
    missing = [c for c in list(by) + [value] if c not in table.columns]
    if missing:
        raise KeyError(f"columns {missing} not in the table; it has {list(table.columns)}")
    numeric = table.assign(**{value: pd.to_numeric(table[value], errors="coerce")})
    grouped = numeric.groupby(list(by), sort=False)[value]
    return grouped.agg(mean="mean", std="std", n="count").reset_index()


def format_mean_std(mean: float, std: float, digits: int = 2) -> str:
    """``"2.04 ± 0.03"``; a missing std (a single run) gives just the mean, a missing mean gives ``"–"``."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    if std is None or (isinstance(std, (float, np.floating)) and math.isnan(std)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"
