"""Sweeps that survive a dying Colab session: every finished run is saved at once, and skipped next time.

.. code-block:: python

    store = RunStore("runs/ch01")  # e.g. a folder on Google Drive
    table = store.sweep(configs, train_one)  # a re-run reads finished runs back
    summary = summarize(table, by=["scheme"], value="test_error")
    pairs = zip(summary["mean"], summary["std"])
    summary["error (%)"] = [format_mean_std(m, s) for m, s in pairs]

**Storage format.** A :class:`RunStore` is a folder holding one JSON file per finished run, named
``<key>.json`` where ``key = config_key(config)`` is a hash of the configuration's canonical JSON (sorted
keys, compact separators), so the order of the keys of a configuration does not matter. Each file holds
``{"config": ..., "result": ..., "finished": <UTC time>}``; the stored configuration always gives back its
file's key.

**Numbers in keys.** Python numbers are hashed as written, so every record stored so far keeps its key
(``1`` and ``1.0`` hash differently: both spellings are in stored configurations). Other spellings are
turned into the number the user meant first: NumPy and torch integers and booleans into Python ones,
float16/float32 values into the shortest decimal that gives the same value (``np.float32(0.1)`` becomes
``0.1``, not ``0.10000000149011612``), tuples into lists. A store also treats configurations that are
equal as numbers as the same run (``{"lam": 1}`` finds the run stored for ``{"lam": 1.0}``, ``-0.0``
that of ``0.0``, ``0.1`` that of a run stored by an older version as ``0.10000000149011612``), so no run
is trained twice for a spelling; booleans stay apart from numbers. Configuration keys must be strings.

**Writing.** A record is written to a temporary file of its own (``.<key>.<host>.<pid>.<random>.tmp``, one
per call, so threads never share one), flushed and fsynced, renamed over ``<key>.json`` (atomic), and
then the folder is fsynced, so a process killed or a machine losing power mid-write leaves either the
complete record or the previous one. Opening a store removes temporaries abandoned by killed writers:
those of a process of this host that no longer runs and older than 10 minutes, and any older than a
day (a live writer's temporary exists for a fraction of a second; a writer on another machine sharing
the folder cannot be checked, hence the day). An unreadable record (e.g. damaged by hand or by a sync
tool) is ignored with a warning, and its run is redone by the next sweep.

**Unusable folders.** Before it trains anything, :meth:`RunStore.sweep` (and :meth:`RunStore.run`)
creates the folder and writes and removes a probe file in it, so a read-only folder, a path that is a
file or a parent that cannot be created gives a clear ``OSError`` (``PermissionError``,
``NotADirectoryError``, ...) naming the folder, and no training is thrown away. A store whose runs are
all finished is only read, so it may be read-only (e.g. the runs stored with the book).

**Several processes** (or notebooks, or machines on a synced folder) may share a store: one file per run
means they never overwrite each other's different runs, and two writes of the same run go to the same
file by atomic renames, so the last complete record wins. A sweep marks the run it is training with an
advisory claim file (``.<hash>.claim``: host, process id, time; removed when the run is stored or fails)
and first trains the missing runs nobody has claimed, then goes back to the claimed ones: those finished
meanwhile are read back, those still running elsewhere are trained again (a sweep never waits). So two
sweeps of one grid split it, and at most the run each other one is busy with at the end is trained
twice. A claim is ignored when its process is gone (same host) or it is older than a day. Claims are
created exclusively (``O_EXCL``), which a synced folder across machines may not honour: then a run may
be trained twice, never lost or corrupted.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import math
import os
import re
import secrets
import socket
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

__all__ = ["config_key", "RunStore", "summarize", "format_mean_std"]

logger = logging.getLogger(__name__)

#: This machine in temporary and claim file names (letters, digits and ``-`` only).
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"
#: A temporary of a dead process of this host is removed once older than this (seconds).
_DEAD_WRITER_AGE = 10 * 60
#: Any temporary or claim older than this is abandoned (seconds).
_ABANDONED_AGE = 24 * 3600
_TEMPORARY = re.compile(r"^\.(?P<stem>[^.]+)\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[0-9a-f]{16}\.tmp$")
_OLD_TEMPORARY = re.compile(r"^\.(?P<stem>[0-9a-f]{20})\.(?P<pid>\d+)\.tmp$")   # before per-call names
_CLAIM = re.compile(r"^\.[0-9a-f]{20}\.claim$")
_TAKEN = "taken"   # _claim's answer when another live process holds the claim


# ---------------------------------------------------------------------------------------------- keys
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


def _plain(value: Any, where: str = "configuration") -> Any:
    """``value`` with the numbers a user meant in plain Python types (see the module docstring).

    Python values are returned as they are (so keys of stored configurations do not change); NumPy and
    torch scalars and arrays become Python numbers and lists, float16/float32 values the shortest decimal
    that gives the same value; tuples become lists. Anything else is left for ``json`` to reject.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"a run configuration's keys must be strings, got {key!r} "
                                f"({type(key).__name__}) in {where}; write it as {str(key)!r}")
            out[key] = _plain(item, f"{where}[{key!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):   # float32(0.1) -> 0.1: NumPy prints the shortest round-trip decimal
        return float(str(value)) if value.dtype.itemsize < 8 else float(value)
    if isinstance(value, np.ndarray):
        return _plain(value[()], where) if value.ndim == 0 else [_plain(v, where) for v in value]
    if hasattr(value, "detach") and hasattr(value, "dtype"):   # a torch tensor, without importing torch
        try:
            return _plain(value.detach().cpu().numpy(), where)
        except (TypeError, RuntimeError):   # e.g. bfloat16, which NumPy lacks
            return value.tolist()
    return value


def _plain_config(config: Mapping[str, Any]) -> Dict[str, Any]:
    """:func:`_plain` of a configuration, which must be a mapping (``TypeError`` otherwise)."""
    if not isinstance(config, Mapping):
        raise TypeError(f"a run configuration must be a dict, got {type(config).__name__}")
    try:
        return _plain(dict(config))
    except RecursionError:
        raise TypeError("a run configuration must be JSON-serializable; this one contains itself (or is nested "
                        "too deeply)") from None


def _value_form(value: Any) -> Any:
    """A plain value with its numbers spelled by value: a float that is an integer becomes the int, one
    that a float32 holds exactly its shortest float32 decimal (``0.10000000149011612`` -> ``0.1``)."""
    if isinstance(value, dict):
        return {k: _value_form(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_value_form(v) for v in value]
    if isinstance(value, float) and math.isfinite(value):
        if abs(value) < 3.4e38 and float(np.float32(value)) == value:
            value = float(str(np.float32(value)))
        return int(value) if value.is_integer() else value
    return value


def config_key(config: Mapping[str, Any]) -> str:
    """Stable 20-hex-character key of a JSON-serializable configuration, independent of key order.

    It is the start of the SHA-256 of the canonical JSON text (sorted keys, compact separators) of the
    configuration with NumPy/torch numbers turned into the Python numbers they stand for (see the module
    docstring: Python numbers are hashed as written, so the keys of stored runs never change):

    >>> numpy_spelled = {"lr": np.float32(0.1), "seed": np.int64(0)}
    >>> config_key(numpy_spelled) == config_key({"seed": 0, "lr": 0.1})
    True
    >>> config_key({"hidden": (64, 32)}) == config_key({"hidden": [64, 32]})
    True

    Raises:
        TypeError: ``config`` is not a mapping, has a key that is not a string, or holds values JSON
            cannot represent.
    """
    return hashlib.sha256(_dumps(_plain_config(config), "configuration").encode()).hexdigest()[:20]


def _value_key(config: Mapping[str, Any]) -> str:
    """The key of ``config`` with its numbers compared by value (``1 == 1.0``): which records are one run."""
    plain = json.loads(_dumps(_plain_config(config), "configuration"))
    return hashlib.sha256(_dumps(_value_form(plain), "configuration").encode()).hexdigest()[:20]


# ---------------------------------------------------------------------------------------------- files
def _pid_alive(pid: int) -> Optional[bool]:
    """Whether process ``pid`` of this host runs; ``None`` where that cannot be told (not POSIX)."""
    if os.name != "posix":
        return None   # os.kill(pid, 0) would terminate the process on Windows
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True   # it runs, as another user
    except OSError:
        return None
    return True


def _fsync_folder(folder: Path) -> None:
    """Make a rename or creation in ``folder`` durable. Where folders cannot be opened or fsynced (Windows,
    some FUSE mounts) this is skipped: the rename has happened and readers see the new file."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as err:
        logger.debug("cannot fsync folder %s: %s", folder, err)
    finally:
        os.close(fd)


def _flatten(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Nested dicts become dotted columns (``history.val_acc``); lists stay as cell values."""
    if not records:
        return pd.DataFrame()
    return pd.json_normalize([dict(r) for r in records], sep=".")


class RunStore:
    """A folder of finished runs, keyed by their configuration dicts (see the module docstring).

    Args:
        path: the folder; created before the first run is trained (or the first :meth:`put`). Opening a
            store removes temporary and claim files abandoned there by killed writers (module docstring).

    ``config in store``, ``len(store)`` and iteration over :meth:`records` read the folder each time, so
    runs finished by another process are seen. A store may be used from several threads at once.

    Raises:
        TypeError: ``path`` is not a string or path.
        ValueError: ``path`` is empty.
    """

    def __init__(self, path: Union[str, Path]):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"RunStore needs a folder path (str or pathlib.Path), got {type(path).__name__}")
        if str(path).strip() == "":
            raise ValueError("RunStore needs a folder path, got an empty one (which would mean the current "
                             "folder); give the folder explicitly, e.g. RunStore('runs/ch01')")
        self.path = Path(path).expanduser()
        self._index_lock = threading.Lock()
        self._index: Dict[str, Tuple[Optional[str], str]] = {}   # record file -> (value key, finished)
        self._remove_abandoned()

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r}, {len(self)} finished runs)"

    # ------------------------------------------------------------------ folder
    def _ensure_folder(self, consequence: str) -> None:
        """Create the folder, or raise an ``OSError`` that names it, what is wrong and what to do."""
        if self.path.is_dir():
            return
        advice = "choose a folder you can write to (the experiments' runs folder: --runs or NEURONLAB_RUNS)"
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            if self.path.is_dir():   # made meanwhile by another thread or process
                return
            if self.path.exists() or self.path.is_symlink():
                raise NotADirectoryError(f"the run store {self.path} is a file, not a folder; {consequence}. Give "
                                         f"RunStore a folder (it is created if missing) or move that file "
                                         f"away") from None
            blocker = next((p for p in self.path.parents if p.exists() and not p.is_dir()), None)
            if blocker is not None:
                raise NotADirectoryError(f"cannot create the run store folder {self.path}: {blocker} is a file, "
                                         f"not a folder; {consequence}. Move that file away or {advice}") from None
            raise type(err)(f"cannot create the run store folder {self.path} ({err.strerror or err}); "
                            f"{consequence}. Create it with write permission or {advice}") from err
        _fsync_folder(self.path.parent)

    def _open_temporary(self, stem: str) -> Tuple[int, Path]:
        """A new file of this call only, ``.<stem>.<host>.<pid>.<random>.tmp``, opened for writing."""
        while True:
            tmp = self.path / f".{stem}.{_HOST}.{os.getpid()}.{secrets.token_hex(8)}.tmp"
            try:
                return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), tmp
            except FileExistsError:   # 64 random bits: practically never
                continue

    def _check_writable(self, consequence: str = "nothing was run") -> None:
        """Create the folder and write and remove a probe file, or raise an ``OSError`` saying what to do."""
        self._ensure_folder(consequence)
        try:
            fd, tmp = self._open_temporary("writable-probe")
            try:
                os.write(fd, b"probe")
            finally:
                os.close(fd)
                tmp.unlink()
        except OSError as err:
            raise type(err)(
                f"the run store folder {self.path} is not writable ({err.strerror or err}); {consequence}, since "
                f"a finished run could not be saved there. Make it writable (e.g. chmod u+w '{self.path}') or "
                f"choose another folder (the experiments' runs folder: --runs or NEURONLAB_RUNS)") from err

    def _abandoned(self, name: str, mtime: float, now: float) -> bool:
        """Whether temporary or claim file ``name`` was left by a writer that is gone (module docstring)."""
        age = now - mtime
        if age > _ABANDONED_AGE:
            return True
        match = _TEMPORARY.match(name)
        if match is not None:
            return (match["host"] == _HOST and age > _DEAD_WRITER_AGE
                    and _pid_alive(int(match["pid"])) is False)
        if _CLAIM.match(name):
            return self._claim_is_stale(self.path / name, age)
        return False

    def _remove_abandoned(self) -> List[str]:
        """Remove abandoned temporaries and claims; return their names. Never raises (e.g. read-only)."""
        removed = []
        try:
            if not self.path.is_dir():
                return removed
            now = time.time()
            for entry in os.scandir(self.path):
                name = entry.name
                if not (_TEMPORARY.match(name) or _OLD_TEMPORARY.match(name) or _CLAIM.match(name)):
                    continue
                try:
                    if self._abandoned(name, entry.stat().st_mtime, now):
                        os.unlink(entry.path)
                        removed.append(name)
                except OSError:
                    continue
        except OSError:
            pass
        if removed:
            logger.info("RunStore %s: removed %d files abandoned by killed writers", self.path, len(removed))
        return removed

    # ------------------------------------------------------------------ claims
    def _claim_file(self, config: Mapping[str, Any]) -> Path:
        return self.path / f".{_value_key(config)}.claim"

    def _claim_is_stale(self, file: Path, age: float) -> bool:
        """A claim whose process of this host is gone, or older than a day; an unreadable one (being
        written) counts as live unless older than a day."""
        if age > _ABANDONED_AGE:
            return True
        try:
            owner = json.loads(file.read_text(encoding="utf-8"))
            return owner["host"] == _HOST and _pid_alive(int(owner["pid"])) is False
        except (OSError, ValueError, KeyError, TypeError):
            return False

    def _claim(self, config: Mapping[str, Any]) -> Any:
        """Claim ``config``'s run: ``(file, token)`` if this call made the claim, :data:`_TAKEN` if another live
        process holds it, ``None`` if no claim can be made here (claims are advisory)."""
        file = self._claim_file(config)
        token = secrets.token_hex(8)
        for attempt in range(2):
            try:
                fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                try:
                    stale = self._claim_is_stale(file, time.time() - file.stat().st_mtime)
                except OSError:
                    stale = True   # released meanwhile
                if attempt == 0 and stale:
                    try:
                        file.unlink()
                    except OSError:
                        pass
                    continue
                return _TAKEN
            except OSError:
                return None
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(json.dumps({"host": _HOST, "pid": os.getpid(), "token": token,
                                         "since": _dt.datetime.now(_dt.timezone.utc).isoformat()}))
            return file, token
        return _TAKEN

    @staticmethod
    def _release(claim: Any) -> None:
        """Remove a claim made by :meth:`_claim` if it is still this call's."""
        if not isinstance(claim, tuple):
            return
        file, token = claim
        try:
            if json.loads(file.read_text(encoding="utf-8")).get("token") == token:
                file.unlink()
        except (OSError, ValueError, AttributeError):
            pass

    # ------------------------------------------------------------------ single records
    def _file(self, config: Mapping[str, Any]) -> Path:
        return self.path / f"{config_key(config)}.json"

    def _read(self, file: Path, quiet: bool = False) -> Optional[Dict[str, Any]]:
        try:
            record = json.loads(file.read_text(encoding="utf-8"))
            if not isinstance(record, dict) or not isinstance(record.get("result"), dict) or "config" not in record:
                raise ValueError("not a run record")
            return record
        except (FileNotFoundError, NotADirectoryError):   # no such record (or the store path is a file)
            return None
        except (OSError, UnicodeDecodeError, ValueError) as err:
            if not quiet:
                warnings.warn(f"ignoring unreadable run record {file} ({err}); that run will be redone",
                              stacklevel=3)
            return None

    def _equivalents(self, value_key: str) -> List[Path]:
        """The readable records whose configuration equals one with ``value_key`` by value, newest first.

        A record file is read once per store object (a file keeps its configuration: its name is the
        configuration's key), an unreadable one again at each call."""
        try:
            names = [n for n in os.listdir(self.path) if n.endswith(".json")]
        except OSError:
            return []
        with self._index_lock:
            for name in names:
                if self._index.get(name, (None,))[0] is not None:
                    continue
                record = self._read(self.path / name, quiet=True)
                try:
                    key = None if record is None else _value_key(record["config"])
                except TypeError:
                    key = None
                self._index[name] = (key, "" if record is None else str(record.get("finished", "")))
            present = set(names)
            for name in [n for n in self._index if n not in present]:
                del self._index[name]
            matches = [(finished, name) for name, (key, finished) in self._index.items() if key == value_key]
        return [self.path / name for _, name in sorted(matches, reverse=True)]

    def _locate(self, config: Mapping[str, Any], quiet: bool = False) -> Tuple[Optional[Dict[str, Any]], Path]:
        """``(record, file)`` of ``config``'s run: its own file, else the record of a configuration equal to
        it by value (``1`` vs ``1.0``); ``(None, own file)`` if the run has not finished."""
        own = self._file(config)
        record = self._read(own, quiet=quiet)
        if record is not None:
            return record, own
        for file in self._equivalents(_value_key(config)):
            if file != own:
                record = self._read(file, quiet=True)
                if record is not None:
                    return record, file
        return None, own

    def get(self, config: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
        """The stored result of ``config`` (a dict), or ``None`` if the run has not finished yet.

        A run stored for a configuration equal to ``config`` by value (``{"lam": 1.0}`` for ``{"lam": 1}``)
        is the same run."""
        record, _ = self._locate(config)
        return None if record is None else record["result"]

    def put(self, config: Mapping[str, Any], result: Mapping[str, Any]) -> Dict[str, Any]:
        """Store ``result`` (a JSON-serializable dict) for ``config``, atomically; replaces an older record.

        An older record of a configuration equal to ``config`` by value is the one replaced (it keeps its
        spelling of the configuration, so its key still matches). The record is written to a temporary file
        of this call, fsynced, renamed over the record and the folder is fsynced (module docstring).

        Returns the result as it was stored (i.e. as :meth:`get` will return it: tuples become lists,
        NumPy numbers become Python numbers).

        Raises:
            TypeError: ``config`` or ``result`` is not a dict or not JSON-serializable (nothing is written).
            OSError: the folder cannot be created or written (the message says what to do).
        """
        if not isinstance(result, Mapping):
            raise TypeError(f"a run result must be a dict, got {type(result).__name__}")
        record = {"config": json.loads(_dumps(_plain_config(config), "configuration")),
                  "result": json.loads(_dumps(dict(result), "result")),
                  "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")}
        text = json.dumps(record, sort_keys=True)
        self._ensure_folder("nothing was written")
        existing, file = self._locate(config, quiet=True)
        if existing is not None and file != self._file(config):
            record["config"] = existing["config"]
            text = json.dumps(record, sort_keys=True)
        fd, tmp = self._open_temporary(file.stem)
        renamed = False
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, file)
            renamed = True
            _fsync_folder(self.path)
        finally:
            if not renamed:
                try:
                    tmp.unlink()
                except FileNotFoundError:
                    pass
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
    def _train(self, config: Mapping[str, Any], fn: Callable[[Dict[str, Any]], Mapping[str, Any]],
               claim: Any) -> Dict[str, Any]:
        """``fn(config)`` stored, unless another process stored the run meanwhile; releases ``claim``."""
        try:
            result = self.get(config)   # finished elsewhere between the caller's look and the claim?
            if result is None:
                result = self.put(config, fn(dict(config)))
            return result
        finally:
            self._release(claim)

    def run(self, config: Mapping[str, Any], fn: Callable[[Dict[str, Any]], Mapping[str, Any]]) -> Dict[str, Any]:
        """The stored result of ``config``; if there is none, ``fn(config)``, stored as soon as it returns.

        Before ``fn`` is called the folder is checked to be writable (an ``OSError`` that names it and says
        what to do otherwise), so no training is thrown away. The value returned is the stored one (see
        :meth:`put`), so a first run and a later read-back give identical results.
        """
        if not callable(fn):
            raise TypeError(f"fn must be a function config -> result dict, got {type(fn).__name__}")
        result = self.get(config)
        if result is None:
            self._check_writable()
            result = self._train(config, fn, self._claim(config))
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
        printed when ``progress`` is true, along with a ``tqdm`` bar over the missing runs). Configurations
        equal by value (``1`` and ``1.0``) are one run. If ``fn`` raises, the runs finished so far stay
        stored and the next sweep resumes after them.

        Before the first run is trained the folder is checked to be writable: a read-only folder, a path
        that is a file or a parent that cannot be created raises an ``OSError`` naming the folder and what
        to do, and ``fn`` is never called. Runs another process has claimed are left to the end (module
        docstring: several processes).

        Returns:
            :meth:`table` of ``configs`` (duplicates counted once), in their order.

        Raises:
            TypeError: a configuration is not a JSON-serializable dict, or ``fn`` is not callable (before
                anything runs).
        """
        from tqdm.auto import tqdm

        if not callable(fn):
            raise TypeError(f"fn must be a function config -> result dict, got {type(fn).__name__}")
        unique: Dict[str, Mapping[str, Any]] = {}
        for config in configs:
            unique.setdefault(_value_key(config), config)
        missing = [c for c in unique.values() if c not in self]
        message = (f"RunStore {self.path}: {len(unique) - len(missing)} of {len(unique)} runs already finished "
                   f"(reused), {len(missing)} to run")
        logger.info(message)
        if progress:
            print(message)
        if missing:
            self._check_writable()
        deferred = []
        with tqdm(total=len(missing), disable=not progress, desc="runs", unit="run") as bar:
            for config in missing:
                claim = self._claim(config)
                if claim == _TAKEN:   # another process is training it: come back at the end
                    deferred.append(config)
                    continue
                self._train(config, fn, claim)
                bar.update()
            for config in deferred:
                if self.get(config) is None:
                    self._train(config, fn, self._claim(config))
                bar.update()
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
