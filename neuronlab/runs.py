"""Sweeps that survive a dying Colab session: every finished run is saved at once, and skipped next time.

.. code-block:: python

    store = RunStore("runs/ch01")  # e.g. a folder on Google Drive
    table = store.sweep(configs, train_one)  # a re-run reads finished runs back
    summary = summarize(table, by=["scheme"], value="test_error")
    pairs = zip(summary["mean"], summary["std"])
    summary["error (%)"] = [format_mean_std(m, s) for m, s in pairs]

Storage format: a :class:`RunStore` is a folder holding one JSON file per finished run, named
``<key>.json`` where ``key = config_key(config)`` is a hash of the configuration's canonical JSON (sorted
keys, compact separators), so the order of the keys of a configuration does not matter. Each file holds
``{"config": ..., "result": ..., "finished": <UTC time>}``. A file is written under a temporary name,
flushed to disk and renamed, so a process killed mid-write leaves either the complete record or none.
An unreadable file (e.g. damaged by hand or by a sync tool) is ignored with a warning, and its run is
redone by the next sweep. One file per run also means several processes (or notebooks) can share a
store without overwriting each other's records.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import math
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd

__all__ = ["config_key", "RunStore", "summarize", "format_mean_std"]

logger = logging.getLogger(__name__)


def _to_json(value: Any) -> Any:
    """``json.dumps`` fallback: NumPy scalars and arrays, tuples-as-lists already handled by json."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if hasattr(value, "tolist") and hasattr(value, "dtype"):  # torch tensors without importing torch
        return value.tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _dumps(obj: Any, what: str) -> str:
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_to_json)
    except (TypeError, ValueError) as err:
        raise TypeError(f"a run {what} must be JSON-serializable (numbers, strings, booleans, None, lists, dicts; "
                        f"NumPy values are converted): {err}") from None


def config_key(config: Mapping[str, Any]) -> str:
    """Stable 20-hex-character key of a JSON-serializable configuration, independent of key order.

    It is the start of the SHA-256 of the canonical JSON text (sorted keys, compact separators).

    Raises:
        TypeError: ``config`` is not a mapping or holds values JSON cannot represent.
    """
    if not isinstance(config, Mapping):
        raise TypeError(f"a run configuration must be a dict, got {type(config).__name__}")
    return hashlib.sha256(_dumps(dict(config), "configuration").encode()).hexdigest()[:20]


def _flatten(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Nested dicts become dotted columns (``history.val_acc``); lists stay as cell values."""
    if not records:
        return pd.DataFrame()
    return pd.json_normalize([dict(r) for r in records], sep=".")


class RunStore:
    """A folder of finished runs, keyed by their configuration dicts (see the module docstring).

    Args:
        path: the folder; created on the first :meth:`put`.

    ``config in store``, ``len(store)`` and iteration over :meth:`records` read the folder each time, so
    runs finished by another process are seen.
    """

    def __init__(self, path: Union[str, Path]):
        self.path = Path(path).expanduser()

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r}, {len(self)} finished runs)"

    # ------------------------------------------------------------------ single records
    def _file(self, config: Mapping[str, Any]) -> Path:
        return self.path / f"{config_key(config)}.json"

    def _read(self, file: Path) -> Optional[Dict[str, Any]]:
        try:
            record = json.loads(file.read_text(encoding="utf-8"))
            if not isinstance(record, dict) or not isinstance(record.get("result"), dict) or "config" not in record:
                raise ValueError("not a run record")
            return record
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, ValueError) as err:
            warnings.warn(f"ignoring unreadable run record {file} ({err}); that run will be redone", stacklevel=3)
            return None

    def get(self, config: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
        """The stored result of ``config`` (a dict), or ``None`` if the run has not finished yet."""
        record = self._read(self._file(config))
        return None if record is None else record["result"]

    def put(self, config: Mapping[str, Any], result: Mapping[str, Any]) -> Dict[str, Any]:
        """Store ``result`` (a JSON-serializable dict) for ``config``, atomically; replaces an older record.

        Returns the result as it was stored (i.e. as :meth:`get` will return it: tuples become lists,
        NumPy numbers become Python numbers).
        """
        if not isinstance(result, Mapping):
            raise TypeError(f"a run result must be a dict, got {type(result).__name__}")
        file = self._file(config)
        record = {"config": json.loads(_dumps(dict(config), "configuration")),
                  "result": json.loads(_dumps(dict(result), "result")),
                  "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")}
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = file.with_name(f".{file.stem}.{os.getpid()}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as handle:
                handle.write(json.dumps(record, sort_keys=True))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, file)
        finally:
            if tmp.exists():
                tmp.unlink()
        return record["result"]

    def __contains__(self, config: Mapping[str, Any]) -> bool:
        return self.get(config) is not None

    def records(self) -> List[Dict[str, Any]]:
        """Every readable ``{"config", "result", "finished"}`` record, oldest first."""
        if not self.path.is_dir():
            return []
        records = [r for r in (self._read(f) for f in sorted(self.path.glob("*.json"))) if r is not None]
        return sorted(records, key=lambda r: str(r.get("finished", "")))

    def __len__(self) -> int:
        return len(self.records())

    # ------------------------------------------------------------------ running
    def run(self, config: Mapping[str, Any], fn: Callable[[Dict[str, Any]], Mapping[str, Any]]) -> Dict[str, Any]:
        """The stored result of ``config``; if there is none, ``fn(config)``, stored as soon as it returns.

        The value returned is the stored one (see :meth:`put`), so a first run and a later read-back give
        identical results.
        """
        result = self.get(config)
        if result is None:
            result = self.put(config, fn(dict(config)))
        return result

    def table(self, configs: Optional[Iterable[Mapping[str, Any]]] = None) -> pd.DataFrame:
        """One row per finished run: configuration columns, then result columns, flattened.

        Nested dicts become dotted columns (``{"history": {"val_acc": [...]}}`` gives ``history.val_acc``);
        lists stay as cell values. A result key that is also a configuration key is prefixed ``result.``.

        Args:
            configs: only these runs, in this order (unfinished ones are left out); default: every run in
                the store, oldest first.
        """
        if configs is None:
            records = self.records()
        else:
            records = []
            for config in configs:
                result = self.get(config)
                if result is not None:
                    records.append({"config": dict(config), "result": result})
        if not records:
            return pd.DataFrame()
        config_part = _flatten([r["config"] for r in records])
        result_part = _flatten([r["result"] for r in records])
        result_part.columns = [f"result.{c}" if c in config_part.columns else c for c in result_part.columns]
        return pd.concat([config_part, result_part], axis=1)

    def sweep(self, configs: Iterable[Mapping[str, Any]], fn: Callable[[Dict[str, Any]], Mapping[str, Any]],
              progress: bool = True) -> pd.DataFrame:
        """Run the configurations that have no stored result, in order, storing each as it finishes.

        Finished runs are reused, not recomputed; how many is logged (``logging`` at INFO level, and
        printed when ``progress`` is true, along with a ``tqdm`` bar over the missing runs). If ``fn`` raises,
        the runs finished so far stay stored and the next sweep resumes after them.

        Returns:
            :meth:`table` of ``configs`` (duplicates counted once), in their order.
        """
        from tqdm.auto import tqdm

        unique: Dict[str, Mapping[str, Any]] = {}
        for config in configs:
            unique.setdefault(config_key(config), config)
        missing = [c for c in unique.values() if c not in self]
        message = (f"RunStore {self.path}: {len(unique) - len(missing)} of {len(unique)} runs already finished "
                   f"(reused), {len(missing)} to run")
        logger.info(message)
        if progress:
            print(message)
        for config in tqdm(missing, disable=not progress, desc="runs", unit="run"):
            self.run(config, fn)
        return self.table(list(unique.values()))


def summarize(table: pd.DataFrame, by: Union[str, Sequence[str]], value: str = "test_error") -> pd.DataFrame:
    """Mean, sample standard deviation and count of ``value`` per group, e.g. over seeds.

    Args:
        table: e.g. :meth:`RunStore.table`.
        by: the grouping column(s); groups keep their order of first appearance, missing values form a
            group of their own, and list values (e.g. layer sizes) are turned into tuples.
        value: the numeric column to summarize. Missing values (``None``/NaN) are not counted.

    Returns:
        A DataFrame with the ``by`` columns, ``mean``, ``std`` (``ddof=1``; NaN when a group has a single
        run) and ``n``.

    Raises:
        KeyError: a column is not in the table (the message lists the table's columns).
    """
    by = [by] if isinstance(by, str) else list(by)
    missing = [c for c in by + [value] if c not in table.columns]
    if missing:
        raise KeyError(f"columns {missing} not in the table; it has {list(table.columns)}")
    frame = table[by].apply(lambda col: col.map(lambda v: tuple(v) if isinstance(v, list) else v))
    frame[value] = pd.to_numeric(table[value], errors="coerce")
    grouped = frame.groupby(by, sort=False, dropna=False)[value]
    return grouped.agg(mean="mean", std="std", n="count").reset_index()  # pandas std has ddof=1


def format_mean_std(mean: Optional[float], std: Optional[float], digits: int = 2) -> str:
    """``format_mean_std(2.04, 0.031) == "2.04 ± 0.03"``.

    A missing std (NaN or ``None``, e.g. a single run) gives just the mean, ``"3.00"``; a missing mean
    gives ``"–"``.
    """
    def missing(v: Any) -> bool:
        return v is None or (isinstance(v, (float, np.floating)) and math.isnan(v))

    if missing(mean):
        return "–"
    if missing(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"
