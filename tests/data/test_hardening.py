"""neuronlab.data under bad input and faults (issue 15): no code runs from a file, nothing another notebook
wrote is lost, and every mistake gets an error that names the problem and the fix.

Every planted file carries a payload that provably runs code under plain ``pickle`` / ``torch.load``
(:func:`test_the_planted_payloads_do_run_code_when_unpickled_naively` shows it), so a test that finds
no marker file after a neuronlab load is a real test. Downloads are monkeypatched; no test touches the
network.
"""

import builtins
import gzip
import math
import os
import pickle
import pickletools
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from datafiles import tree, write_amazon, write_cifar, write_idx, write_idx_dataset, write_planetoid, write_wikics
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from neuronlab.data import DatasetNotAvailableError, graphs, images, load_dataset, make_csbm
from neuronlab.data._safeio import (CIFAR_GLOBALS, PLANETOID_GLOBALS, STAGING_PREFIX, UnsafePickleError, publish,
                                    restricted_load)
from neuronlab.data.registry import rollback_on_failure

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# ---------------------------------------------------------------------------------------------- payloads


class Exec:
    """Unpickling this runs ``builtins.exec`` on Python code that writes ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.exec, (f"import pathlib; pathlib.Path({self.marker!r}).write_text('ran')",)


class System:
    """Unpickling this runs ``os.system`` (``posix.system``), a shell command that writes ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"echo ran > '{self.marker}'",)


class Subprocess:
    """Unpickling this runs a program through ``subprocess.check_call`` that writes ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return subprocess.check_call, (["touch", self.marker],)


PAYLOADS = {"exec": Exec, "os.system": System, "subprocess": Subprocess}


def planted_batch(kind, marker, n=4):
    """A dict that looks like a CIFAR-10 batch, whose ``data`` runs code when unpickled."""
    return {"batch_label": "x", "data": PAYLOADS[kind](marker), "labels": list(range(n)), "filenames": ["a"] * n}


def test_the_planted_payloads_do_run_code_when_unpickled_naively(tmp_path):
    """The positive control of every test below: the payloads work under plain pickle and torch.load."""
    for kind in PAYLOADS:
        marker = tmp_path / f"{kind}.marker"
        pickle.loads(pickle.dumps(planted_batch(kind, marker)))
        assert marker.exists(), kind
    marker = tmp_path / "torch.marker"
    torch.save((PAYLOADS["exec"](marker), {}), tmp_path / "data.pt")
    torch.load(tmp_path / "data.pt", weights_only=False)
    assert marker.read_text() == "ran"


# ---------------------------------------------------------------------------------------------- CIFAR safety


@pytest.mark.parametrize("kind", sorted(PAYLOADS))
@pytest.mark.parametrize("planted", ["data_batch_3", "test_batch", "batches.meta"])
def test_a_planted_cifar_file_is_refused_and_its_code_never_runs(tmp_path, kind, planted):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    marker = tmp_path / "marker"
    content = ({"label_names": PAYLOADS[kind](marker)} if planted == "batches.meta"
               else planted_batch(kind, marker))
    (folder / planted).write_bytes(pickle.dumps(content))
    before = {p: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(ValueError, match=f"{planted}: refusing to unpickle the global .*could run code"):
        load_dataset("cifar10", root=tmp_path, download=False, val_size=10)
    assert not marker.exists()
    assert {p: p.read_bytes() for p in folder.iterdir()} == before      # refused, not deleted


def _as_python2_pickle(obj) -> bytes:
    """``obj`` pickled with protocol 2 under the names a Python 2 / numpy 1 writer used (as the real
    CIFAR-10 files are): numpy.core.multiarray, and str where Python 3 pickles bytes."""
    data = pickle.dumps(obj, protocol=2).replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    pickletools.dis(data, out=open(os.devnull, "w"))                  # still a valid pickle
    return data


@pytest.mark.parametrize("protocol", [0, 2, 4, 5, "python2"])
def test_genuine_cifar_batches_of_every_pickle_protocol_still_load(tmp_path, protocol):
    folder = tmp_path / "cifar-10-batches-py"
    batches = write_cifar(folder)
    label_types = [list, lambda v: np.asarray(v, np.int32), lambda v: np.asarray(v, np.uint8)]
    for k, name in enumerate(list(batches)):
        data, labels = batches[name]
        content = {"batch_label": name, "data": data, "labels": label_types[k % 3](labels),
                   "filenames": [f"img_{i}.png" for i in range(len(labels))]}
        raw = _as_python2_pickle(content) if protocol == "python2" else pickle.dumps(content, protocol=protocol)
        (folder / name).write_bytes(raw)
    meta = {"label_names": [f"class{i}" for i in range(10)], "num_vis": 3072, "num_cases_per_batch": 4}
    (folder / "batches.meta").write_bytes(_as_python2_pickle(meta) if protocol == "python2"
                                          else pickle.dumps(meta, protocol=protocol))
    data = load_dataset("cifar10", root=tmp_path, download=False, val_size=10, standardize=False)
    test_x, test_y = batches["test_batch"]
    assert np.array_equal(np.rint(data.x_test.numpy() * 255).astype(np.uint8).reshape(10, -1), test_x)
    assert data.y_test.tolist() == list(test_y) and data.y_test.dtype == torch.int64
    assert data.classes == [f"class{i}" for i in range(10)]


plain_data = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=5)
    | st.binary(max_size=5) | st.complex_numbers(allow_nan=False)
    | st.builds(lambda v, t: np.asarray(v, dtype=t), st.lists(st.integers(0, 100), max_size=6),
                st.sampled_from([np.uint8, np.int32, np.int64, np.float32])),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4)
    | st.tuples(inner, inner) | st.frozensets(st.integers(), max_size=3) | st.sets(st.text(max_size=2), max_size=3),
    max_leaves=12)


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return type(b) is dict and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@FAST
@given(value=plain_data, protocol=st.integers(0, 5))
def test_restricted_unpickler_reads_any_plain_data_exactly_as_pickle_does(tmp_path, value, protocol):
    path = tmp_path / "plain.pickle"
    path.write_bytes(pickle.dumps(value, protocol=protocol))
    assert _same(value, restricted_load(path, CIFAR_GLOBALS, "plain data", "fix"))


@FAST
@given(kind=st.sampled_from(sorted(PAYLOADS)), protocol=st.integers(0, 5), depth=st.integers(0, 3))
def test_restricted_unpickler_refuses_a_payload_at_any_depth_and_protocol(tmp_path, kind, protocol, depth):
    marker = tmp_path / "deep.marker"
    value = PAYLOADS[kind](marker)
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    path = tmp_path / "deep.pickle"
    path.write_bytes(pickle.dumps(value, protocol=protocol))
    for table in (CIFAR_GLOBALS, PLANETOID_GLOBALS):
        with pytest.raises(UnsafePickleError, match="deep.pickle: refusing"):
            restricted_load(path, table, "plain data", "fix")
    assert not marker.exists()


def test_a_truncated_pickle_is_a_clear_error_not_a_raw_one(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    good = (folder / "data_batch_2").read_bytes()
    (folder / "data_batch_2").write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="data_batch_2: cannot be read as a CIFAR-10 batch .*truncated or corrupt"):
        load_dataset("cifar10", root=tmp_path, download=False, val_size=10)


# ---------------------------------------------------------------------------------------------- PyG safety


def _pubmed(tmp_path):
    write_planetoid(tmp_path / "PubMed" / "raw")
    return tmp_path / "PubMed"


def test_a_planted_pyg_processed_file_is_refused_and_its_code_never_runs(tmp_path):
    folder = _pubmed(tmp_path)
    good = load_dataset("pubmed", root=tmp_path, download=False)           # writes processed/data.pt
    cache = folder / "processed" / "data.pt"
    marker = tmp_path / "marker"
    torch.save((Exec(marker), {}, dict), cache)
    # PyG 2.8's own loader would fall back to weights_only=False for this file (its global is unknown)
    with pytest.raises(ValueError, match=r"data\.pt: refusing to load this PyG processed file.*delete the folder"):
        load_dataset("pubmed", root=tmp_path, download=False)
    assert not marker.exists() and cache.exists()
    cache.unlink()                                                            # as the message says: rebuilt
    again = load_dataset("pubmed", root=tmp_path, download=False)
    assert torch.equal(again.x, good.x) and torch.equal(again.edge_index, good.edge_index)


def test_a_planted_pre_transform_file_is_never_read(tmp_path):
    folder = _pubmed(tmp_path)
    (folder / "processed").mkdir()
    marker = tmp_path / "marker"
    torch.save(Exec(marker), folder / "processed" / "pre_transform.pt")    # PyG reads it with weights_only=False
    torch.save(Exec(marker), folder / "processed" / "pre_filter.pt")
    data = load_dataset("pubmed", root=tmp_path, download=False)
    assert data.num_nodes == 530 and not marker.exists()
    # the planted files are the user's problem, not ours to delete; the processed cache was added beside them
    assert (folder / "processed" / "data.pt").is_file() and (folder / "processed" / "pre_transform.pt").is_file()


@pytest.mark.parametrize("part", ["graph", "allx", "y"])
def test_a_planted_planetoid_raw_pickle_is_refused_and_its_code_never_runs(tmp_path, part):
    folder = _pubmed(tmp_path)
    marker = tmp_path / "marker"
    (folder / "raw" / f"ind.pubmed.{part}").write_bytes(pickle.dumps(Exec(marker), protocol=2))
    with pytest.raises(ValueError, match=rf"ind\.pubmed\.{part}: refusing to unpickle the global builtins\.exec"):
        load_dataset("pubmed", root=tmp_path, download=False)
    assert not marker.exists()
    assert [p.name for p in folder.iterdir()] == ["raw"]                     # no processed/, no staging left


def test_pubmed_raw_pickles_read_by_the_restricted_reader_as_pyg_reads_them(tmp_path, monkeypatch):
    """The check before processing and the swapped unpickler inside PyG's reader both admit genuine files
    (old-scipy module names included); the result equals PyG's own, unrestricted processing."""
    from torch_geometric.datasets import Planetoid

    folder = _pubmed(tmp_path)
    allx = folder / "raw" / "ind.pubmed.allx"
    protocol2 = pickle.dumps(pickle.loads(allx.read_bytes()), protocol=2)
    old_name = protocol2.replace(b"cscipy.sparse._csr\n", b"cscipy.sparse.csr\n")      # how old scipy named it
    assert old_name != protocol2
    allx.write_bytes(old_name)
    checked = []
    real_check = graphs._check_planetoid_raw
    monkeypatch.setattr(graphs, "_check_planetoid_raw", lambda *a: checked.append(a) or real_check(*a))
    ours = load_dataset("pubmed", root=tmp_path, download=False)
    assert len(checked) == 1
    theirs_root = tmp_path / "theirs"
    write_planetoid(theirs_root / "PubMed" / "raw")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = Planetoid(str(theirs_root), "PubMed")[0]
    assert torch.equal(ours.x, theirs.x) and torch.equal(ours.edge_index, theirs.edge_index)
    assert torch.equal(ours.y, theirs.y) and torch.equal(ours.val_mask, theirs.val_mask)


def test_the_processed_cache_is_read_back_with_weights_only_and_not_rebuilt(tmp_path, monkeypatch):
    _pubmed(tmp_path)
    first = load_dataset("pubmed", root=tmp_path, download=False)

    def no_processing(*args, **kwargs):
        raise AssertionError("the raw files were processed again")

    monkeypatch.setattr(graphs, "_check_planetoid_raw", no_processing)
    loads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(k.get("weights_only")) or real_load(*a, **k))
    second = load_dataset("pubmed", root=tmp_path, download=False)
    assert loads == [True]
    assert torch.equal(first.x, second.x) and torch.equal(first.test_mask, second.test_mask)


def test_a_cache_written_by_pyg_itself_loads_and_a_truncated_one_is_a_clear_error(tmp_path):
    from torch_geometric.datasets import Amazon

    attr, labels = write_amazon(tmp_path / "Photo" / "raw" / "amazon_electronics_photo.npz")
    Amazon(str(tmp_path), "Photo")                                          # PyG's own processing
    data = load_dataset("amazon-photo", root=tmp_path, download=False)
    assert torch.equal(data.x, torch.from_numpy(attr))
    cache = tmp_path / "Photo" / "processed" / "data.pt"
    cache.write_bytes(cache.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"data\.pt: cannot read this PyG processed file.*truncated or corrupt"):
        load_dataset("amazon-photo", root=tmp_path, download=False)
    assert cache.stat().st_size == 100                                      # not deleted behind the user's back


def test_without_safe_globals_the_cache_is_never_read(tmp_path, monkeypatch):
    """torch < 2.4 cannot admit PyG's types with weights_only=True: the raw files are processed every time."""
    folder = _pubmed(tmp_path)
    (folder / "processed").mkdir()
    marker = tmp_path / "marker"
    torch.save((Exec(marker), {}, dict), folder / "processed" / "data.pt")
    monkeypatch.setattr(graphs, "_SAFE_CACHE", False)
    data = load_dataset("pubmed", root=tmp_path, download=False)
    assert data.num_nodes == 530 and not marker.exists()


def test_a_read_only_data_folder_is_processed_without_caching(tmp_path, monkeypatch):
    (tmp_path / "blocker").write_text("a file where the staging folder would go")
    write_wikics(tmp_path / "WikiCS" / "raw")
    monkeypatch.setattr(graphs, "staging_path", lambda parent, label: tmp_path / "blocker" / "staging")
    data = load_dataset("wikics", root=tmp_path, download=False)
    assert data.num_nodes == 30
    assert sorted(p.name for p in (tmp_path / "WikiCS").iterdir()) == ["raw"]


# ---------------------------------------------------------------------------------------------- nothing lost


@pytest.fixture
def no_debian(monkeypatch, tmp_path_factory):
    monkeypatch.setattr(images, "FASHION_MNIST_DEBIAN_DIR", tmp_path_factory.mktemp("no_debian") / "absent")


DOWNLOADED = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "cifar10": "cifar-10-batches-py",
              "pubmed": "PubMed", "amazon-photo": "Photo", "wikics": "WikiCS"}


@pytest.fixture
def concurrent_failing_downloads(monkeypatch):
    """Every downloader writes a partial file of its own, then "another notebook" writes into the data
    folder (a new top-level file, and a file inside another dataset's folder), then the download fails."""
    import torchvision.datasets as tvd
    from torch_geometric.datasets import Amazon, Planetoid, WikiCS

    state = {}

    def someone_else_writes():
        root = state["root"]
        root.mkdir(parents=True, exist_ok=True)
        (root / "other-notebook.txt").write_text("finished work of another notebook")
        (root / "FashionMNIST" / "raw").mkdir(parents=True, exist_ok=True)
        (root / "FashionMNIST" / "raw" / "their-download.gz").write_bytes(b"theirs")

    def failing_torchvision(self):
        Path(self.raw_folder).mkdir(parents=True, exist_ok=True)
        (Path(self.raw_folder) / "train-images-idx3-ubyte.gz").write_bytes(b"partial")
        someone_else_writes()
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: Name or service not known")

    def failing_cifar(self):
        (Path(self.root) / "cifar-10-python.tar.gz").write_bytes(b"partial")
        someone_else_writes()
        raise RuntimeError("<urlopen error [Errno -2] Name or service not known>")

    def failing_pyg(self):
        (Path(self.raw_dir) / self.raw_file_names[0]).write_bytes(b"partial")
        someone_else_writes()
        raise OSError("Cannot connect to host github.com:443 ssl:default [Name or service not known]")

    monkeypatch.setattr(tvd.MNIST, "download", failing_torchvision)
    monkeypatch.setattr(tvd.CIFAR10, "download", failing_cifar)
    for cls in (Planetoid, Amazon, WikiCS):
        monkeypatch.setattr(cls, "download", failing_pyg)
    return state


@pytest.mark.parametrize("root_exists", [True, False])
@pytest.mark.parametrize("name", sorted(DOWNLOADED))
def test_a_failed_download_keeps_what_another_notebook_wrote_meanwhile(tmp_path, name, root_exists, no_debian,
                                                                       concurrent_failing_downloads):
    root = tmp_path / ("existing" if root_exists else "new") / "data"
    if root_exists:
        root.mkdir(parents=True)
        (root / "mine.txt").write_text("the user's file")
    concurrent_failing_downloads["root"] = root
    with pytest.raises(DatasetNotAvailableError, match="download failed.*Name or service not known"):
        load_dataset(name, root=root, download=True)
    expected = ["FashionMNIST", "FashionMNIST/raw", "FashionMNIST/raw/their-download.gz", "other-notebook.txt"]
    assert tree(root) == sorted(expected + (["mine.txt"] if root_exists else []))
    assert (root / "other-notebook.txt").read_text() == "finished work of another notebook"
    assert (root / "FashionMNIST" / "raw" / "their-download.gz").read_bytes() == b"theirs"


def test_a_failed_download_keeps_the_part_of_the_set_the_user_had(tmp_path, concurrent_failing_downloads):
    raw = tmp_path / "MNIST" / "raw"
    write_idx(raw / "train-images-idx3-ubyte", np.zeros((3, 28, 28), np.uint8))
    kept = (raw / "train-images-idx3-ubyte").read_bytes()
    concurrent_failing_downloads["root"] = tmp_path
    with pytest.raises(DatasetNotAvailableError, match="download failed"):
        load_dataset("mnist", root=tmp_path, download=True)
    assert (raw / "train-images-idx3-ubyte").read_bytes() == kept
    assert "MNIST/raw/train-images-idx3-ubyte.gz" not in tree(tmp_path)                 # the partial download
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(STAGING_PREFIX)]


def test_a_successful_download_is_published_without_replacing_a_file_that_is_there(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    def tiny_download(self):
        write_idx_dataset(self.raw_folder, n_train=20, n_test=10, seed=5)

    monkeypatch.setattr(tvd.MNIST, "download", tiny_download)
    raw = tmp_path / "MNIST" / "raw"
    mine = write_idx_dataset(tmp_path / "mine", n_train=20, n_test=10, seed=9)
    raw.mkdir(parents=True)
    (raw / "t10k-labels-idx1-ubyte").write_bytes((tmp_path / "mine" / "t10k-labels-idx1-ubyte").read_bytes())
    before = (raw / "t10k-labels-idx1-ubyte").read_bytes()
    data = load_dataset("mnist", root=tmp_path, download=True, val_size=10, standardize=False)
    assert (raw / "t10k-labels-idx1-ubyte").read_bytes() == before                     # the user's file kept
    assert sorted(p.name for p in raw.iterdir()) == sorted(images._IDX_STEMS)
    assert data.y_test.tolist() == mine["t10k"][1].tolist()
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(STAGING_PREFIX)]


def test_a_successful_pyg_download_is_processed_in_staging_and_published(tmp_path, monkeypatch):
    from torch_geometric.datasets import Planetoid

    monkeypatch.setattr(Planetoid, "download", lambda self: write_planetoid(self.raw_dir))
    data = load_dataset("pubmed", root=tmp_path, download=True)
    assert data.num_nodes == 530 and "downloaded by PyG" in data.source
    assert sorted(p.name for p in (tmp_path / "PubMed").iterdir()) == ["processed", "raw"]
    assert (tmp_path / "PubMed" / "processed" / "data.pt").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["PubMed"]


def test_a_failed_processing_removes_only_its_own_staging(tmp_path, monkeypatch):
    import torch_geometric.datasets.amazon as amazon

    write_amazon(tmp_path / "Photo" / "raw" / "amazon_electronics_photo.npz")
    raw_before = (tmp_path / "Photo" / "raw" / "amazon_electronics_photo.npz").read_bytes()

    def failing_read(path, to_undirected=True):
        (tmp_path / "Photo" / "someone-else.txt").write_text("theirs")
        (tmp_path / "Photo" / "processed").mkdir()
        (tmp_path / "Photo" / "processed" / "theirs.pt").write_bytes(b"theirs")
        raise ValueError("corrupt npz")

    monkeypatch.setattr(amazon, "read_npz", failing_read)
    with pytest.raises(ValueError, match=r"Photo/raw: PyG cannot process these raw files \(ValueError: corrupt "
                                         r"npz\); one of amazon_electronics_photo.npz is truncated or corrupt"):
        load_dataset("amazon-photo", root=tmp_path, download=False)
    assert tree(tmp_path / "Photo") == ["processed", "processed/theirs.pt", "raw",
                                        "raw/amazon_electronics_photo.npz", "someone-else.txt"]
    assert (tmp_path / "Photo" / "raw" / "amazon_electronics_photo.npz").read_bytes() == raw_before


@pytest.mark.parametrize("name, path, content", [
    ("amazon-photo", "Photo/raw/amazon_electronics_photo.npz", b"PK\x03\x04 truncated"),
    ("wikics", "WikiCS/raw/data.json", b'{"features": [[0.1, 0.2'),
    ("pubmed", "PubMed/raw/ind.pubmed.ty", b"\x80\x02]q\x00(K\x01"),
])
def test_corrupt_raw_graph_files_name_the_file_or_folder_and_stay(tmp_path, name, path, content):
    (tmp_path / path).parent.mkdir(parents=True)
    (tmp_path / path).write_bytes(content)
    if name == "pubmed":
        write_planetoid(tmp_path / "PubMed" / "raw")
        (tmp_path / path).write_bytes(content)
    with pytest.raises(ValueError, match=r"(PyG cannot process these raw files|cannot be read as a Planetoid raw "
                                         r"file).*truncated or corrupt"):
        load_dataset(name, root=tmp_path, download=False)
    assert (tmp_path / path).read_bytes() == content
    assert "processed" not in tree(tmp_path / path.split("/")[0])


def test_rollback_removes_what_the_block_created_and_keeps_folders_others_wrote_into(tmp_path):
    mine = tmp_path / "a" / "b" / "mine"
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "old.txt").write_text("old")
    with pytest.raises(KeyError):
        with rollback_on_failure([mine, existing]):
            mine.mkdir(parents=True)
            (mine / "partial").write_text("partial")
            (tmp_path / "a" / "theirs.txt").write_text("theirs")                # another notebook, meanwhile
            (existing / "new-theirs.txt").write_text("theirs")
            raise KeyError("fail")
    assert tree(tmp_path) == ["a", "a/theirs.txt", "existing", "existing/new-theirs.txt", "existing/old.txt"]
    with pytest.raises(KeyError):
        with rollback_on_failure([mine]):
            mine.mkdir(parents=True)
            raise KeyError("fail")
    assert tree(tmp_path / "a") == ["theirs.txt"]                               # a/b was empty: removed


def test_publish_merges_and_never_replaces(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "raw").mkdir(parents=True)
    (src / "raw" / "a").write_text("new a")
    (src / "raw" / "b").write_text("new b")
    (src / "processed").mkdir()
    (src / "processed" / "data.pt").write_text("new")
    (dst / "raw").mkdir(parents=True)
    (dst / "raw" / "a").write_text("old a")
    publish(src, dst)
    assert (dst / "raw" / "a").read_text() == "old a" and (dst / "raw" / "b").read_text() == "new b"
    assert (dst / "processed" / "data.pt").read_text() == "new"
    fresh = tmp_path / "fresh"
    (tmp_path / "whole").mkdir()
    (tmp_path / "whole" / "x").write_text("x")
    publish(tmp_path / "whole", fresh)                                          # a missing target: one rename
    assert (fresh / "x").read_text() == "x" and not (tmp_path / "whole").exists()


# ---------------------------------------------------------------------------------------------- labels and files


def _write_labels(raw: Path, stem: str, labels: np.ndarray, code: int = 0x08):
    import struct

    dtype = {0x08: np.uint8, 0x09: np.int8, 0x0C: ">i4", 0x0D: ">f4"}[code]
    payload = struct.pack(">BBBBI", 0, 0, code, 1, len(labels)) + np.asarray(labels, dtype=dtype).tobytes()
    (raw / stem).write_bytes(payload)


@FAST
@given(labels=st.lists(st.integers(0, 255), min_size=10, max_size=10), part=st.sampled_from(["train", "t10k"]),
       gz=st.booleans())
def test_idx_labels_outside_the_classes_are_rejected_naming_the_file(tmp_path_factory, labels, part, gz):
    root = tmp_path_factory.mktemp("idx")
    raw = root / "MNIST" / "raw"
    write_idx_dataset(raw, n_train=20, n_test=10, gz=gz)
    labels = np.asarray(labels + (labels if part == "train" else []), dtype=np.uint8)
    stem = f"{part}-labels-idx1-ubyte"
    payload_path = raw / (stem + (".gz" if gz else ""))
    _write_labels(raw, stem, labels)
    if gz:
        payload_path.write_bytes(gzip.compress((raw / stem).read_bytes()))
        (raw / stem).unlink()
    if (labels >= 10).any():                                                     # the independent fact
        with pytest.raises(ValueError, match=rf"{stem}(\.gz)?: \d+ label\(s\) outside 0\.\.9"):
            load_dataset("mnist", root=root, download=False, val_size=0)
    else:
        data = load_dataset("mnist", root=root, download=False, val_size=0)
        got = data.y_test if part == "t10k" else data.y_train
        assert sorted(got.tolist()) == sorted(labels.tolist())


@FAST
@given(labels=st.lists(st.integers(-3, 13), min_size=4, max_size=4), batch=st.sampled_from(["data_batch_1",
                                                                                           "test_batch"]),
       as_array=st.sampled_from([None, np.int64, np.int32, np.int16]))
def test_cifar_labels_outside_the_classes_are_rejected_naming_the_file(tmp_path_factory, labels, batch, as_array):
    root = tmp_path_factory.mktemp("cifar")
    folder = root / "cifar-10-batches-py"
    write_cifar(folder, n_test=4)
    content = pickle.loads((folder / batch).read_bytes())
    content["labels"] = labels if as_array is None else np.asarray(labels, dtype=as_array)
    (folder / batch).write_bytes(pickle.dumps(content))
    if min(labels) < 0 or max(labels) > 9:
        with pytest.raises(ValueError, match=rf"{batch}: \d+ label\(s\) outside 0\.\.9"):
            load_dataset("cifar10", root=root, download=False, val_size=0)
    else:
        data = load_dataset("cifar10", root=root, download=False, val_size=0)
        if batch == "test_batch":
            assert data.y_test.tolist() == labels


@pytest.mark.parametrize("labels, match", [
    (np.array([0.5, 1.0, 2.0, 3.0]), "labels must be integers, found dtype float64"),
    (np.array(["a", "b", "c", "d"]), "labels must be integers"),
    (np.array([1.0, 2.0, np.nan, 3.0]), "labels must be integers"),
])
def test_cifar_labels_that_are_not_integers_are_rejected(tmp_path, labels, match):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder, n_test=4)
    content = pickle.loads((folder / "test_batch").read_bytes())
    content["labels"] = labels
    (folder / "test_batch").write_bytes(pickle.dumps(content))
    with pytest.raises(ValueError, match=f"test_batch: {match}"):
        load_dataset("cifar10", root=tmp_path, download=False, val_size=0)


def test_cifar_integral_float_labels_and_int_pixels_are_accepted_and_converted(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    batches = write_cifar(folder, n_test=4)
    content = pickle.loads((folder / "test_batch").read_bytes())
    content["labels"] = np.array([3.0, 1.0, 0.0, 9.0])
    content["data"] = content["data"].astype(np.int64)
    (folder / "test_batch").write_bytes(pickle.dumps(content))
    data = load_dataset("cifar10", root=tmp_path, download=False, val_size=0, standardize=False)
    assert data.y_test.tolist() == [3, 1, 0, 9]
    assert np.array_equal(np.rint(data.x_test.numpy() * 255).reshape(4, -1), batches["test_batch"][0])


@pytest.mark.parametrize("change, match", [
    (lambda c: c.update(data=c["data"].astype(np.int64) + 200), r"'data' must hold pixel values 0\.\.255.*to 455"),
    (lambda c: c.update(data=c["data"][:, :100]), r"expected 'data' of shape \[N, 3072\]"),
    (lambda c: c.update(labels=c["labels"][:2]), r"expected 'data' of shape \[N, 3072\] and N labels"),
    (lambda c: c.pop("labels"), "not a CIFAR-10 python batch"),
])
def test_cifar_batches_with_bad_pixels_or_shapes_name_the_file(tmp_path, change, match):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder, n_test=4)
    content = pickle.loads((folder / "data_batch_5").read_bytes())
    change(content)
    (folder / "data_batch_5").write_bytes(pickle.dumps(content))
    with pytest.raises(ValueError, match=f"data_batch_5: .*{match}"):
        load_dataset("cifar10", root=tmp_path, download=False, val_size=0)


@pytest.mark.parametrize("meta", [{"label_names": [f"c{i}" for i in range(100)]}, {"label_names": "airplane"},
                                  {"fine_label_names": ["a"] * 10}, ["not", "a", "dict"]])
def test_a_foreign_batches_meta_names_the_file(tmp_path, meta):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder, n_test=4)
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    with pytest.raises(ValueError, match=r"batches\.meta: expected a dict whose 'label_names' lists the 10 class"):
        load_dataset("cifar10", root=tmp_path, download=False, val_size=0)


def test_idx_files_of_the_wrong_kind_name_the_file(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    write_idx_dataset(raw)
    _write_labels(raw, "train-labels-idx1-ubyte", np.arange(20) % 10 + 0.5, code=0x0D)   # float32, not integral
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte: labels must be integers, found dtype float32"):
        load_dataset("mnist", root=tmp_path, download=False, val_size=10)
    _write_labels(raw, "train-labels-idx1-ubyte", np.arange(20) % 10, code=0x0D)         # integral floats: kept
    assert load_dataset("mnist", root=tmp_path, download=False, val_size=10).sizes["train"] == 10
    _write_labels(raw, "train-labels-idx1-ubyte", np.arange(20) % 10, code=0x0C)       # int32: accepted
    assert load_dataset("mnist", root=tmp_path, download=False, val_size=10).sizes["train"] == 10
    _write_labels(raw, "train-labels-idx1-ubyte", np.arange(20) % 10 - 1, code=0x09)   # int8 with a -1
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte: 2 label\(s\) outside 0\.\.9 \(e\.g\. \[-1\]"):
        load_dataset("mnist", root=tmp_path, download=False, val_size=10)
    write_idx_dataset(raw)
    write_idx(raw / "t10k-images-idx3-ubyte", np.zeros((10, 32, 32), np.uint8))
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte: test images are 32x32 but the training images "
                                         "are 28x28"):
        load_dataset("mnist", root=tmp_path, download=False, val_size=10)
    import struct
    floats = np.zeros((10, 28, 28), ">f4")
    (raw / "t10k-images-idx3-ubyte").write_bytes(struct.pack(">BBBB3I", 0, 0, 0x0D, 3, 10, 28, 28)
                                                  + floats.tobytes())
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte: MNIST-style images must have uint8 pixels"):
        load_dataset("mnist", root=tmp_path, download=False, val_size=10)


@pytest.mark.parametrize("missing", list(images._IDX_STEMS))
def test_a_partial_idx_set_names_the_missing_file(tmp_path, missing, no_debian):
    raw = tmp_path / "FashionMNIST" / "raw"
    write_idx_dataset(raw, gz=True)
    (raw / f"{missing}.gz").unlink()
    before = tree(tmp_path)
    with pytest.raises(DatasetNotAvailableError, match=rf"holds only part of the dataset: {missing} \(or \.gz\) "
                                                       r"missing \(and download=False\)"):
        load_dataset("fashion-mnist", root=tmp_path, download=False)
    assert tree(tmp_path) == before


@pytest.mark.parametrize("name, files, remove", [
    ("cifar10", "cifar-10-batches-py", "data_batch_4"),
    ("pubmed", "PubMed/raw", "ind.pubmed.graph"),
    ("pubmed", "PubMed/raw", "ind.pubmed.test.index"),
])
def test_a_partial_cifar_or_pubmed_set_names_the_missing_file(tmp_path, name, files, remove):
    (write_cifar if name == "cifar10" else write_planetoid)(tmp_path / files)
    (tmp_path / files / remove).unlink()
    before = tree(tmp_path)
    with pytest.raises(DatasetNotAvailableError, match=rf"holds only part of the dataset: {remove} missing"):
        load_dataset(name, root=tmp_path, download=False)
    assert tree(tmp_path) == before


# ---------------------------------------------------------------------------------------------- arguments

CSBM_BAD = [
    (dict(signal=float("nan")), "signal must be a finite non-negative number, got nan"),
    (dict(signal=float("inf")), "signal must be a finite non-negative number, got inf"),
    (dict(signal=-float("inf")), "signal must be a finite non-negative number"),
    (dict(signal=np.float32("nan")), "signal must be a finite non-negative number, got nan"),
    (dict(signal="1"), "signal must be a finite non-negative number, got '1' of type str"),
    (dict(avg_degree=float("nan")), "avg_degree must be a finite non-negative number, got nan"),
    (dict(avg_degree=float("inf")), "avg_degree must be a finite non-negative number, got inf"),
    (dict(homophily=float("nan")), "homophily must be a finite non-negative number, got nan"),
    (dict(homophily=None), "homophily must be a finite non-negative number, got None"),
    (dict(num_nodes=1000.0), "num_nodes must be an integer, got 1000.0 of type float; e.g. num_nodes=1000"),
    (dict(num_features=True), "num_features must be an integer, got True"),
    (dict(num_classes="3"), "num_classes must be an integer"),
    (dict(train_fraction=float("nan")), r"train_fraction is a fraction of the nodes and must be in \(0, 1\)"),
    (dict(val_fraction=float("inf")), r"val_fraction is a fraction of the nodes and must be in \[0, 1\)"),
    (dict(train_fraction="0.5"), "train_fraction must be a number in .* of type str"),
    (dict(train_fraction=0.7, val_fraction=0.4), "train_fraction \\+ val_fraction = 1.1 exceeds 1"),
    (dict(num_nodes=10**9, num_features=32), "num_nodes \\* num_features feature values = 3.2e\\+10 is too large"),
    (dict(num_nodes=10**9, num_features=1, avg_degree=10), "num_nodes \\* avg_degree edge endpoints"),
]


@pytest.mark.parametrize("kwargs, match", CSBM_BAD, ids=[str(k) for k, _ in CSBM_BAD])
def test_csbm_rejects_non_finite_and_ill_typed_parameters_before_drawing(kwargs, match, monkeypatch):
    def no_drawing(*args, **kw):
        raise AssertionError("a random number was drawn before the parameters were checked")

    monkeypatch.setattr(graphs.np.random, "default_rng", no_drawing)
    with pytest.raises(ValueError, match=match):
        load_dataset("csbm", **kwargs)
    with pytest.raises(ValueError, match=match):
        make_csbm(**kwargs)


BAD_REALS = [float("nan"), float("inf"), -float("inf"), -1.0, np.float32("nan")]


@settings(max_examples=50, deadline=None)
@given(signal=st.one_of(st.floats(0, 5), st.integers(0, 5), st.sampled_from(BAD_REALS)),
       avg_degree=st.one_of(st.floats(0, 5), st.sampled_from(BAD_REALS)),
       homophily=st.one_of(st.floats(0, 1), st.sampled_from(BAD_REALS + [1.5])))
@example(signal=float("nan"), avg_degree=2.0, homophily=0.5)
@example(signal=float("inf"), avg_degree=2.0, homophily=0.5)
@example(signal=1.0, avg_degree=float("nan"), homophily=0.5)
@example(signal=1.0, avg_degree=2.0, homophily=float("nan"))
def test_csbm_either_generates_finite_features_or_names_the_bad_parameter(signal, avg_degree, homophily):
    values = dict(avg_degree=avg_degree, homophily=homophily, signal=signal)
    # the independent fact: a real parameter is valid iff finite and >= 0 (homophily also <= 1); with 40
    # nodes in 2 classes and avg_degree <= 5, p_in = h d / 19 and p_out = (1 - h) d / 20 stay below 1
    bad = [k for k, v in values.items() if not math.isfinite(v) or v < 0 or (k == "homophily" and v > 1)]
    if bad:
        named = "|".join(bad)                                  # the message names one of the bad parameters
        with pytest.raises(ValueError, match=f"^({named}) (must be a finite non-negative number|is a fraction)"):
            make_csbm(num_nodes=40, num_features=4, **values)
        return
    data = make_csbm(num_nodes=40, num_features=4, **values)
    assert torch.isfinite(data.x).all()
    assert abs(data.class_means.norm(dim=1) - float(signal)).max() < 1e-3 * max(1.0, float(signal))


BAD_ARGUMENTS = [
    ("mnist-5k", dict(root=5), "root must be a folder path .* got 5 of type int"),
    ("mnist-5k", dict(root=["data"]), "root must be a folder path"),
    ("mnist-5k", dict(download="no"), r"download must be True or False, got 'no' of type str \(a string such as"),
    ("mnist-5k", dict(flatten="yes"), "flatten must be True or False, got 'yes'"),
    ("mnist-5k", dict(standardize=None), "standardize must be True or False, got None"),
    ("mnist-5k", dict(standardize=1), "standardize must be True or False, got 1 of type int"),
    ("mnist-5k", dict(val_size=float("nan")), r"val_size=nan: a float is a fraction .* must be in \[0, 1\)"),
    ("mnist-5k", dict(test_size=float("inf")), r"test_size=inf: a float is a fraction"),
    ("mnist-5k", dict(val_size=None, test_size=[100]), "test_size must be a count"),
    ("mnist-5k", dict(seed=np.float64(1.0)), "seed must be an integer"),
    ("mnist-5k", dict(seed=None), "seed must be an integer"),
    ("mnist-5k", dict(seed=2**32), "seed must be an integer in \\[0, 2\\*\\*32\\)"),
    ("mnist-5k", dict(valsize=0.1), "unexpected keyword argument\\(s\\) \\['valsize'\\]; Did you mean: "
                                    "'valsize' -> 'val_size'\\?"),
    ("csbm", dict(signa=2.0), "Did you mean: 'signa' -> 'signal'\\?.*its options are: num_nodes"),
    ("csbm", dict(split=1), "unexpected keyword argument\\(s\\) \\['split'\\]"),
    ("mnsit", {}, "Unknown dataset 'mnsit'. Did you mean 'mnist'\\?"),
    ("cifar-100", {}, "Did you mean 'cifar10'\\?"),
    ("", {}, "Unknown dataset ''. Known datasets: mnist-5k"),
    (None, {}, "Dataset name must be a string"),
    (["mnist"], {}, "Dataset name must be a string"),
]


@pytest.mark.parametrize("name, kwargs, match", BAD_ARGUMENTS, ids=[f"{n}-{k}" for n, k, _ in BAD_ARGUMENTS])
def test_bad_load_dataset_arguments_say_what_to_do(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_dataset(name, **kwargs)


OPTIONS_BEFORE_DISK = [
    ("wikics", dict(split=-1), "split must be a non-negative integer .* e.g. split=0"),
    ("wikics", dict(split="0"), "split must be a non-negative integer .* got '0'"),
    ("wikics", dict(split=1.0), "split must be a non-negative integer"),
    ("amazon-photo", dict(train_fraction=float("nan")), "train_fraction is a fraction of the nodes"),
    ("amazon-computers", dict(val_fraction=-0.1), "val_fraction is a fraction of the nodes"),
    ("amazon-photo", dict(train_fraction=0.9, val_fraction=0.2), "exceeds 1"),
    ("mnist", dict(val_size=-5), "val_size must be >= 0"),
    ("cifar10", dict(download="yes"), "download must be True or False"),
    ("pubmed", dict(flatten=True), "flatten=True applies to image data only"),
]


@pytest.mark.parametrize("name, kwargs, match", OPTIONS_BEFORE_DISK,
                         ids=[f"{n}-{k}" for n, k, _ in OPTIONS_BEFORE_DISK])
def test_dataset_options_are_checked_before_any_disk_or_network_access(tmp_path, name, kwargs, match,
                                                                      concurrent_failing_downloads):
    concurrent_failing_downloads["root"] = tmp_path / "data"
    with pytest.raises(ValueError, match=match):
        load_dataset(name, root=tmp_path / "data", **{"download": True, **kwargs})
    assert tree(tmp_path) == []                                            # nothing read, nothing written


def test_a_data_folder_that_is_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "data").write_text("not a folder")
    with pytest.raises(ValueError, match="The data folder .*data is a file, not a folder: pass root=..."):
        load_dataset("mnist", root=tmp_path / "data", download=True)
    assert (tmp_path / "data").read_text() == "not a folder"


def test_valid_arguments_of_other_types_are_accepted(tmp_path):
    data = load_dataset("digits", seed=np.uint8(3), val_size=np.float32(0.1), test_size=np.int64(300),
                        flatten=np.True_, standardize=np.False_, root=str(tmp_path))
    assert data.sizes["test"] == 300 and data.input_shape == (64,) and data.mean is None and data.seed == 3
    graph = load_dataset("csbm", num_nodes=np.int32(60), num_classes=np.int64(3), signal=np.float32(2.0),
                         avg_degree=4, homophily=np.float64(0.5), train_fraction=np.float32(0.5))
    assert graph.num_nodes == 60 and graph.num_classes == 3
    assert abs(graph.class_means.norm(dim=1) - 2.0).max() < 1e-5
