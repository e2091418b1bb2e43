"""neuronlab.runs under faults and odd input: concurrent writers, abandoned files, unusable folders,
numbers spelled differently, two processes sharing a store, and the runs stored with the book."""

import errno
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from neuronlab import runs
from neuronlab.runs import RunStore, config_key

STORED_RESULTS = Path(__file__).resolve().parents[1] / "notebooks" / "results"
ROOT = Path(__file__).resolve().parents[1]


def never_called(config):
    raise AssertionError(f"the training function was called for {config}")


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


# ------------------------------------------------------------------------------------------ book runs
def respelled(value):
    """The same configuration with every number written another way (int <-> float, NumPy, tuples)."""
    if isinstance(value, dict):
        return {k: respelled(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(respelled(v) for v in value)
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, float):
        return int(value) if value.is_integer() else np.float64(value)
    raise AssertionError(value)


def test_every_run_stored_with_the_book_is_still_found_by_its_key():
    files = sorted(STORED_RESULTS.rglob("*.json"))
    assert len(files) >= 100   # the book stores a few hundred quick-profile runs
    stores = {}
    for file in files:
        record = json.loads(file.read_text(encoding="utf-8"))
        # the file names were written by earlier versions: the key of the stored config must not move
        assert config_key(record["config"]) == file.stem, file
        store = stores.setdefault(file.parent, RunStore(file.parent))
        assert store.get(record["config"]) == record["result"], file
        # the same run spelled with other number types (seed 0.0, lam 1, tuples) is the same run
        assert store.get(respelled(record["config"])) == record["result"], file


# ------------------------------------------------------------------------------------------ writers
def test_many_threads_writing_the_same_and_different_records(tmp_path):
    path = tmp_path / "store"
    threads, rounds, size = 8, 15, 3000
    barrier = threading.Barrier(threads)
    errors = []

    def writer(t):
        try:
            barrier.wait()
            for i in range(rounds):
                store = RunStore(path) if i % 3 == 0 else shared_store   # opening cleans up concurrently
                store.put({"shared": True}, {"writer": t, "round": i, "payload": [t] * size})
                store.put({"thread": t, "round": i}, {"writer": t, "payload": [i] * size})
                got = store.get({"shared": True})
                assert got["payload"] == [got["writer"]] * size
        except BaseException as err:   # noqa: B902 - reported below
            errors.append(repr(err))

    shared_store = RunStore(path)
    workers = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    store = RunStore(path)
    shared = store.get({"shared": True})
    assert shared["payload"] == [shared["writer"]] * size and 0 <= shared["writer"] < threads
    for t in range(threads):
        for i in range(rounds):
            assert store.get({"thread": t, "round": i}) == {"writer": t, "payload": [i] * size}
    names = sorted(p.name for p in path.iterdir())
    assert len(names) == 1 + threads * rounds and all(n.endswith(".json") for n in names)   # no temporaries
    for file in path.iterdir():
        assert config_key(json.loads(file.read_text())["config"]) == file.stem


def test_put_fsyncs_the_file_before_the_rename_and_the_folder_after(tmp_path, record_durable_writes):
    store = RunStore(tmp_path / "s")
    store.put({"a": 0}, {"v": 0})   # creates the folder
    events = record_durable_writes()
    store.put({"a": 1}, {"v": 1})
    if os.name == "posix":
        assert events == ["file", "rename", "folder"]
    else:
        assert events[:2] == ["file", "rename"]


def test_a_write_that_fails_leaves_the_previous_record_and_no_temporary(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    store.put({"a": 1}, {"v": 1})

    def disk_full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OSError, match="No space"):
        store.put({"a": 1}, {"v": 2})
    monkeypatch.undo()
    assert store.get({"a": 1}) == {"v": 1} and [p.suffix for p in tmp_path.iterdir()] == [".json"]


def test_opening_a_store_removes_only_files_of_writers_that_are_gone(tmp_path):
    key, dead, host = "0" * 20, dead_pid(), runs._HOST
    files = {
        # temporaries of this host: a dead writer's once older than 10 minutes; a live writer's never
        f".{key}.{host}.{dead}.{'a' * 16}.tmp": (20 * 60, False),
        f".{key}.{host}.{dead}.{'b' * 16}.tmp": (60, True),
        f".{key}.{host}.{os.getpid()}.{'c' * 16}.tmp": (2 * 3600, True),
        # another machine's (its processes cannot be checked) and the old per-process names: after a day
        f".{key}.otherhost.{dead}.{'d' * 16}.tmp": (2 * 3600, True),
        f".{key}.otherhost.{dead}.{'e' * 16}.tmp": (2 * 86400, False),
        f".{key}.{dead}.tmp": (3600, True),
        f".{'1' * 20}.{dead}.tmp": (2 * 86400, False),
        # claims: gone process of this host, live process, another host, one being written, a stale one
        f".{'2' * 20}.claim": (0, False),
        f".{'3' * 20}.claim": (0, True),
        f".{'4' * 20}.claim": (0, True),
        f".{'5' * 20}.claim": (0, True),
        f".{'6' * 20}.claim": (2 * 86400, False),
        # not the store's
        "notes.tmp": (5 * 86400, True),
        ".hidden": (5 * 86400, True),
        f".{key}.tmp": (5 * 86400, True),
    }
    owners = {f".{'2' * 20}.claim": {"host": host, "pid": dead},
              f".{'3' * 20}.claim": {"host": host, "pid": os.getpid()},
              f".{'4' * 20}.claim": {"host": "otherhost", "pid": dead},
              f".{'6' * 20}.claim": {"host": "x", "pid": 1}}
    for name, (seconds, _) in files.items():
        (tmp_path / name).write_text(json.dumps(owners[name]) if name in owners else "")
        age(tmp_path / name, seconds)
    RunStore(tmp_path).put({"seed": 0}, {"v": 1})
    age(tmp_path / f"{config_key({'seed': 0})}.json", 9 * 86400)
    RunStore(tmp_path)
    kept = {p.name for p in tmp_path.iterdir()}
    assert kept == {n for n, (_, stays) in files.items() if stays} | {f"{config_key({'seed': 0})}.json"}
    assert RunStore(tmp_path).get({"seed": 0}) == {"v": 1}


# ------------------------------------------------------------------------------------------ unusable folders
def test_a_sweep_into_a_file_trains_nothing(tmp_path):
    path = tmp_path / "runs"
    path.write_text("not a folder")
    with pytest.raises(NotADirectoryError, match=r"runs is a file, not a folder; nothing was run"):
        RunStore(path).sweep([{"seed": 0}], never_called, progress=False)
    with pytest.raises(NotADirectoryError, match="is a file"):
        RunStore(path).run({"seed": 0}, never_called)
    with pytest.raises(NotADirectoryError, match="nothing was written"):
        RunStore(path).put({"seed": 0}, {"v": 1})
    assert path.read_text() == "not a folder"
    assert RunStore(path).get({"seed": 0}) is None and len(RunStore(path)) == 0


def test_a_sweep_under_a_file_trains_nothing(tmp_path):
    (tmp_path / "drive").write_text("x")
    with pytest.raises(NotADirectoryError, match=r"cannot create the run store folder .*drive is a file"):
        RunStore(tmp_path / "drive" / "ch01" / "exp").sweep([{"seed": 0}], never_called, progress=False)


def test_a_folder_that_cannot_be_created_trains_nothing(tmp_path, monkeypatch):
    def refuse(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(PermissionError, match=r"cannot create the run store folder .*new.*Permission denied.*"
                                              r"nothing was run.*NEURONLAB_RUNS"):
        RunStore(tmp_path / "new").sweep([{"seed": 0}], never_called, progress=False)


@pytest.mark.parametrize("error", [PermissionError(errno.EACCES, "Permission denied"),
                                   OSError(errno.EROFS, "Read-only file system")], ids=["denied", "read-only fs"])
def test_a_folder_that_cannot_be_written_trains_nothing(tmp_path, monkeypatch, error):
    real_open = os.open

    def open_(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and Path(path).parent == tmp_path:
            raise error
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_)
    with pytest.raises(type(error), match=rf"{tmp_path.name} is not writable \({error.strerror}\); nothing was "
                                          r"run.*chmod u\+w"):
        RunStore(tmp_path).sweep([{"seed": 0}], never_called, progress=False)
    with pytest.raises(type(error), match="not writable"):
        RunStore(tmp_path).run({"seed": 0}, never_called)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_trains_nothing(tmp_path):
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match="not writable"):
            RunStore(tmp_path).sweep([{"seed": 0}], never_called, progress=False)
    finally:
        tmp_path.chmod(0o755)


def test_a_finished_store_that_cannot_be_written_is_still_read(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    store.sweep([{"seed": s} for s in range(3)], lambda c: {"v": c["seed"]}, progress=False)
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        if flags & (os.O_CREAT | os.O_WRONLY):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    table = RunStore(tmp_path).sweep([{"seed": s} for s in range(3)], never_called, progress=False)
    assert list(table["v"]) == [0, 1, 2]


def test_bad_arguments_are_rejected_before_anything_is_created(tmp_path):
    with pytest.raises(TypeError, match="folder path"):
        RunStore(None)
    with pytest.raises(ValueError, match="empty"):
        RunStore("")
    store = RunStore(tmp_path / "s")
    with pytest.raises(TypeError, match="fn must be a function"):
        store.sweep([{"seed": 0}], {"not": "callable"}, progress=False)
    with pytest.raises(TypeError, match="fn must be a function"):
        store.run({"seed": 0}, None)
    with pytest.raises(TypeError, match="must be a dict, got list"):
        store.sweep([{"seed": 0}, ["seed", 1]], never_called, progress=False)
    with pytest.raises(TypeError, match=r"keys must be strings, got 1 \(int\).*write it as '1'"):
        store.sweep([{1: "a"}], never_called, progress=False)
    with pytest.raises(TypeError, match=r"keys must be strings.*\['opt'\]"):
        config_key({"opt": {0.5: "x"}})
    with pytest.raises(TypeError, match="JSON-serializable"):
        store.sweep([{"seed": 0}, {"seed": 1, "model": object()}], never_called, progress=False)
    looped = {"layers": []}
    looped["layers"].append(looped)
    with pytest.raises(TypeError, match="contains itself"):
        store.sweep([looped], never_called, progress=False)
    with pytest.raises(TypeError, match="result must be a dict"):
        store.put({"seed": 0}, [1, 2])
    assert not store.path.exists()


def test_a_record_that_is_valid_json_but_no_record_is_redone(tmp_path):
    store = RunStore(tmp_path)
    (tmp_path / f"{config_key({'seed': 0})}.json").write_text("[1, 2, 3]")
    with pytest.warns(UserWarning, match="unreadable run record"):
        table = store.sweep([{"seed": 0}], lambda c: {"v": 7}, progress=False)
    assert list(table["v"]) == [7]


# ------------------------------------------------------------------------------------------ numbers in keys
def test_numbers_a_user_means_alike_are_one_key():
    assert config_key({"lr": np.float32(0.1)}) == config_key({"lr": 0.1})
    assert config_key({"lr": np.float16(0.5)}) == config_key({"lr": 0.5})
    assert config_key({"lr": np.float64(0.1)}) == config_key({"lr": 0.1})
    assert config_key({"n": np.int32(3), "b": np.bool_(True)}) == config_key({"n": 3, "b": True})
    assert config_key({"h": np.array([0.1, 0.2], dtype=np.float32)}) == config_key({"h": [0.1, 0.2]})
    assert config_key({"h": np.array(5)}) == config_key({"h": 5})
    assert config_key({"h": (1, 2)}) == config_key({"h": [1, 2]})
    # Python numbers are hashed as written: the book's stored runs hold both spellings (seed 0, lam 1.0)
    assert config_key({"lam": 1}) != config_key({"lam": 1.0})
    assert config_key({"flag": True}) != config_key({"flag": 1})


def test_torch_numbers_are_the_numbers_they_stand_for():
    torch = pytest.importorskip("torch")
    assert config_key({"lr": torch.tensor(0.1)}) == config_key({"lr": 0.1})
    assert config_key({"n": torch.tensor(3)}) == config_key({"n": 3})
    assert config_key({"w": torch.tensor([0.25, 0.1])}) == config_key({"w": [0.25, 0.1]})


def test_configurations_equal_by_value_are_one_run(tmp_path):
    store = RunStore(tmp_path)
    calls = []

    def work(config):
        calls.append(config)
        return {"v": len(calls)}

    table = store.sweep([{"lam": 1, "seed": 0}, {"lam": 1.0, "seed": 0.0}, {"lam": np.float32(1), "seed": 0}],
                        work, progress=False)
    assert len(calls) == 1 and len(table) == 1 and len(list(tmp_path.glob("*.json"))) == 1
    assert store.get({"lam": 1.0, "seed": 0}) == {"v": 1} and {"lam": np.int64(1), "seed": -0.0} in store
    # booleans are not numbers here: a flag and a count stay different runs
    store.sweep([{"lam": True, "seed": 0}], work, progress=False)
    assert len(calls) == 2
    # a later put of the same run replaces its record, which keeps its spelling (and so its key)
    store.put({"lam": 1.0, "seed": 0.0}, {"v": 99})
    assert store.get({"lam": 1, "seed": 0}) == {"v": 99} and len(list(tmp_path.glob("*.json"))) == 2
    for file in tmp_path.glob("*.json"):
        assert config_key(json.loads(file.read_text())["config"]) == file.stem


def test_runs_stored_with_float32_expanded_are_found(tmp_path):
    # what an earlier version stored for {"lr": np.float32(0.1)}: the float32 value written out in full
    store = RunStore(tmp_path)
    store.put({"lr": 0.10000000149011612, "seed": 0}, {"v": 1})
    assert store.get({"lr": np.float32(0.1), "seed": 0}) == {"v": 1}
    store.sweep([{"lr": np.float32(0.1), "seed": 0}], never_called, progress=False)


decimals = st.builds(lambda m, e, sign: float(f"{sign}{m}e{e}"), st.integers(1, 999_999), st.integers(-20, 20),
                     st.sampled_from(["", "-"]))


@settings(max_examples=50, deadline=None)
@given(decimals)
def test_a_float32_is_the_decimal_it_was_written_from(value):
    # a decimal of at most 6 significant digits is the only one that short within its float32's interval
    assert config_key({"v": np.float32(value)}) == config_key({"v": value})
    assert runs._value_key({"v": float(np.float32(value))}) == runs._value_key({"v": value})


scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), decimals, st.text(max_size=5),
                    st.integers(-1000, 1000).map(np.int64), decimals.map(np.float32),
                    st.integers(-1000, 1000).map(float))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3), st.tuples(inner, inner),
                                                       st.dictionaries(st.text(max_size=4), inner, max_size=3)),
                      max_leaves=8)


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=6), values, min_size=1, max_size=4))
def test_a_stored_record_is_found_again_and_keeps_its_key(config):
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        store = RunStore(folder)
        store.put(config, {"ok": 1})
        (file,) = Path(folder).glob("*.json")
        stored = json.loads(file.read_text())["config"]
        assert config_key(stored) == file.stem == config_key(config)
        assert store.get(config) == store.get(stored) == {"ok": 1}


# ------------------------------------------------------------------------------------------ claims
def _claim(folder: Path, config, pid: int, host: str = None) -> Path:
    file = folder / f".{runs._value_key(config)}.claim"
    file.write_text(json.dumps({"host": host or runs._HOST, "pid": pid, "token": "x"}))
    return file


def test_a_run_claimed_by_a_live_process_is_left_to_the_end(tmp_path):
    calls = []
    store = RunStore(tmp_path)
    claim = _claim(tmp_path, {"seed": 0}, os.getpid())   # a live process (this one) trains seed 0
    table = store.sweep([{"seed": s} for s in range(3)], lambda c: calls.append(c["seed"]) or {"v": c["seed"]},
                        progress=False)
    assert calls == [1, 2, 0] and list(table["v"]) == [0, 1, 2]   # still unfinished at the end: trained here
    assert claim.exists()   # not this sweep's claim: left alone


def test_a_claimed_run_finished_meanwhile_is_read_back(tmp_path):
    calls = []
    store = RunStore(tmp_path)
    _claim(tmp_path, {"seed": 0}, os.getpid())

    def work(config):
        calls.append(config["seed"])
        if config["seed"] == 2:   # meanwhile the other process stores seed 0
            RunStore(tmp_path).put({"seed": 0}, {"v": "other"})
        return {"v": config["seed"]}

    table = store.sweep([{"seed": s} for s in range(3)], work, progress=False)
    assert calls == [1, 2] and list(table["v"]) == ["other", 1, 2]


def test_claims_of_processes_that_are_gone_are_ignored(tmp_path):
    calls = []
    _claim(tmp_path, {"seed": 0}, dead_pid())
    table = RunStore(tmp_path).sweep([{"seed": s} for s in range(2)], lambda c: calls.append(c["seed"]) or {},
                                     progress=False)
    assert calls == [0, 1] and len(table) == 2 and sorted(p.suffix for p in tmp_path.iterdir()) == [".json"] * 2


def test_a_failing_run_releases_its_claim(tmp_path):
    def fail(config):
        raise RuntimeError("session died")

    with pytest.raises(RuntimeError, match="session died"):
        RunStore(tmp_path).sweep([{"seed": 0}], fail, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_two_processes_sweeping_one_store_split_the_runs(tmp_path):
    script = textwrap.dedent("""
        import json, os, sys, time
        from neuronlab.runs import RunStore

        store, log = sys.argv[1], sys.argv[2]

        def work(config):
            with open(log, "a") as handle:
                handle.write(f"{config['seed']}\\n")
            time.sleep(0.25)
            return {"seed2": config["seed"] ** 2, "payload": list(range(500))}

        table = RunStore(store).sweep([{"seed": s} for s in range(8)], work, progress=False)
        print(json.dumps(table["seed2"].tolist()))
    """)
    store, log = tmp_path / "store", tmp_path / "log.txt"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", script, str(store), str(log)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert [json.loads(out) for out, _ in outputs] == [[s * s for s in range(8)]] * 2
    trained = log.read_text().split()
    assert sorted(set(trained)) == [str(s) for s in range(8)]
    assert len(trained) <= 8 + 2   # at most the run each other one is busy with at its end is trained twice
    files = sorted(store.iterdir())
    assert [f.suffix for f in files] == [".json"] * 8   # no temporary or claim left
    for file in files:
        record = json.loads(file.read_text())
        assert record["result"]["payload"] == list(range(500)) and config_key(record["config"]) == file.stem
