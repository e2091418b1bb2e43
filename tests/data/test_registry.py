"""neuronlab.data.registry: load_dataset's argument checks, DatasetSplits, list_datasets, and what
happens when a dataset is missing or its download fails.

Downloads are monkeypatched to fail the way a machine without network fails, so no test ever touches the
network, here or on a machine that has it.
"""

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from datafiles import tree, write_idx_dataset

import neuronlab.data as nd
from neuronlab.data import DatasetNotAvailableError, DatasetSplits, images, list_datasets, load_dataset


# ---------------------------------------------------------------------------------------------- the package


def test_every_public_name_is_importable_from_the_package():
    from neuronlab.data.registry import load_dataset as from_registry

    for name in nd.__all__:
        assert getattr(nd, name) is not None
    assert nd.load_dataset is from_registry
    # the offline datasets first, then the downloadable ones, each in the order of the old single module
    assert nd.DATASETS == ("mnist-5k", "fashion-mnist", "digits", "csbm", "karate",
                           "mnist", "cifar10", "pubmed", "amazon-photo", "amazon-computers", "wikics")


def test_import_is_light_and_heavy_packages_stay_deferred():
    heavy = ("matplotlib", "seaborn", "ipywidgets", "torch_geometric", "torchvision", "sklearn", "mlxtend")
    code = f"import sys, neuronlab.data; print([m for m in {heavy!r} if m in sys.modules])"
    # a fresh interpreter: this one has imported all of them already
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[]"


def test_a_name_or_alias_cannot_be_registered_twice():
    from neuronlab.data.registry import DatasetSpec, register

    with pytest.raises(ValueError, match="already registered"):
        register(DatasetSpec("digits", "image", True, "", lambda req: None, lambda root: None))
    with pytest.raises(ValueError, match="already registered"):
        register(DatasetSpec("new-name", "image", True, "", lambda req: None, lambda root: None,
                             aliases=("cifar",)))
    assert "new-name" not in list_datasets()["name"].tolist()


# ---------------------------------------------------------------------------------------------- DatasetSplits


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


# ---------------------------------------------------------------------------------------------- missing data


MISSING = ["mnist", "fashion-mnist", "cifar10", "pubmed", "amazon-photo", "amazon-computers", "wikics"]


@pytest.fixture
def no_debian(monkeypatch, tmp_path_factory):
    monkeypatch.setattr(images, "FASHION_MNIST_DEBIAN_DIR", tmp_path_factory.mktemp("no_debian") / "absent")


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
