"""Smoke mode: every experiment of a chapter through its real code paths, on tiny generated files, in minutes.

``python -m neuronlab.experiments ch03 --profile full --smoke`` (or ``NEURONLAB_SMOKE=1`` in the
environment of a notebook or a shell) runs every experiment of the chapter's profile with the real
loaders, run functions, models and training protocols (MNIST MLPs, CIFAR-10 ResNet-18 and VGG-19 with
crop-and-flip augmentation and the cosine schedule, the PyG graph datasets, ...), but with

* a tiny budget (:func:`smoke_grid`): the first seed of every setting, one epoch per run, two where a run
  needs them (early stopping, epochs tracked during training);
* tiny data: the downloadable datasets are replaced by tiny files in torchvision's and PyG's on-disk layouts
  (:func:`write_tiny_datasets`), written into a temporary data folder that stands in for
  ``NEURONLAB_DATA`` while the runs load their data (:func:`tiny_data`); the user's data folder is never
  read or written. Datasets that ship with packages (``mnist-5k``, ``digits``, ``csbm``) stay as they are.

What a smoke run proves is that the code runs end to end and returns results of the shared schema, not
what the numbers are. Its runs are stored apart, under ``<runs>/smoke/chNN/<experiment>_<profile>``
(:class:`neuronlab.experiments._common.ChapterRun`), never with the book's stored results, and are trained
afresh in every process.

The writers are also what the ``neuronlab.data`` tests use to check the loaders against each library's raw
format without a network.
"""

from __future__ import annotations

import atexit
import gzip
import json
import os
import pickle
import shutil
import struct
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..config import DATA_ENV

__all__ = ["SMOKE_ENV", "SMOKE_EPOCHS", "SMOKE_TRACKED_EPOCHS", "SMOKE_GENERATED", "TINY_DATASETS", "TINY_SIZES",
           "TINY_LOAD_OPTIONS", "smoke_requested", "smoke_grid", "write_idx", "write_idx_dataset", "write_cifar", "write_planetoid",
           "write_amazon", "write_wikics", "write_tiny_datasets", "tiny_data_root", "tiny_data", "load_options"]

#: The environment variable that turns smoke mode on (``1``, ``true``, ``yes`` or ``on``) when ``setup`` is
#: not told either way.
SMOKE_ENV = "NEURONLAB_SMOKE"
#: The epochs of a smoke run.
SMOKE_EPOCHS = 1
#: The epochs of a smoke run that needs two, with early stopping (``max_epochs``) or epochs tracked during
#: training (``track_every``, then set to 1 so both epochs are tracked).
SMOKE_TRACKED_EPOCHS = 2
#: The most strings a smoke run generates (chapter 5's Dyck-1 data), for training and for testing.
SMOKE_GENERATED = {"num_train": 40, "num_test": 20}

#: The datasets that :func:`write_tiny_datasets` writes (the downloadable ones and Fashion-MNIST).
TINY_DATASETS = ("mnist", "fashion-mnist", "cifar10", "pubmed", "amazon-photo", "amazon-computers", "wikics")
#: Sizes of the tiny image files (per split) and of the graphs.
TINY_SIZES = dict(idx_train=200, idx_test=100, cifar_per_batch=6, cifar_test=10, pubmed_rest=514,
                  amazon_nodes=60, wikics_nodes=50)
#: The options the loaders get in smoke mode, since the default validation hold-outs (10,000 MNIST images,
#: 5,000 CIFAR-10 images) are larger than the tiny files.
TINY_LOAD_OPTIONS: Dict[str, Dict[str, Any]] = {"mnist": dict(val_size=50), "fashion-mnist": dict(val_size=50),
                                                "cifar10": dict(val_size=10)}

_CIFAR10_LABEL_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def smoke_requested(smoke: Optional[bool] = None) -> bool:
    """``smoke`` if given, else whether :data:`SMOKE_ENV` is set to ``1``/``true``/``yes``/``on``.

    Unset, empty or ``0``/``false``/``no``/``off`` mean no smoke mode. Any other value is refused: a
    misspelt "ture" silently meaning "off" would start the real full-profile training.
    """
    if smoke is not None:
        return bool(smoke)
    value = os.environ.get(SMOKE_ENV, "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise ValueError(f"{SMOKE_ENV}={os.environ[SMOKE_ENV]!r} is neither on (1/true/yes/on) nor off "
                     f"(0/false/no/off, or unset): fix or unset it")


# ------------------------------------------------------------------------------------------------ budget
def smoke_grid(grid: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """The smoke budget of an experiment's run configurations.

    Keeps the first configuration of every setting (a setting: the configuration without its ``seed``), in
    order, and caps its epochs: ``epochs`` to :data:`SMOKE_EPOCHS`; ``max_epochs`` (early stopping) and the
    ``epochs`` of a configuration with ``track_every`` (tracked during training) to
    :data:`SMOKE_TRACKED_EPOCHS`, with ``track_every = 1`` so every epoch is tracked. A run that trains a
    group of networks (``seeds``, a list: chapter 5 compares networks across seeds) keeps its first two
    seeds; a run that generates its data (``num_train``, ``num_test``: chapter 5's Dyck-1 strings) gets
    :data:`SMOKE_GENERATED` strings at most. Every other key (data set, model, method, strength, layer,
    learning rate, ...) is kept, so each setting still runs its real code path.

    Example:
        >>> smoke_grid([dict(arch="MLP-4", seed=s, epochs=100) for s in range(5)])
        [{'arch': 'MLP-4', 'seed': 0, 'epochs': 1}]
        >>> smoke_grid([dict(fraction=0.2, seed=0, epochs=300, track_every=10)])
        [{'fraction': 0.2, 'seed': 0, 'epochs': 2, 'track_every': 1}]
        >>> smoke_grid([dict(depth=2, max_epochs=300)])
        [{'depth': 2, 'max_epochs': 2}]
        >>> smoke_grid([dict(seeds=[0, 1, 2], num_train=5000, num_test=1000)])
        [{'seeds': [0, 1], 'num_train': 40, 'num_test': 20}]
    """
    kept: Dict[str, Dict[str, Any]] = {}
    for config in grid:
        setting = json.dumps({k: v for k, v in config.items() if k != "seed"}, sort_keys=True, default=str)
        if setting in kept:
            continue
        small = dict(config)
        if "track_every" in small:
            small["epochs"] = min(int(small["epochs"]), SMOKE_TRACKED_EPOCHS)
            small["track_every"] = 1
        elif "epochs" in small:
            small["epochs"] = min(int(small["epochs"]), SMOKE_EPOCHS)
        if "max_epochs" in small:
            small["max_epochs"] = min(int(small["max_epochs"]), SMOKE_TRACKED_EPOCHS)
        if isinstance(small.get("seeds"), list):
            small["seeds"] = small["seeds"][:2]
        for key, cap in SMOKE_GENERATED.items():
            if key in small:
                small[key] = min(int(small[key]), cap)
        kept[setting] = small
    return list(kept.values())


# ---------------------------------------------------------------------------------- torchvision layouts
def write_idx(path: Union[str, Path], array: np.ndarray, gz: bool = False) -> Path:
    """One IDX file (the MNIST format): two zero bytes, type code ``0x08`` (uint8), the number of dimensions,
    the big-endian dimensions, then the data; gzip-compressed if ``gz``."""
    path = Path(path)
    array = np.ascontiguousarray(array, dtype=np.uint8)
    payload = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload += array.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def write_idx_dataset(raw: Union[str, Path], n_train: int = 20, n_test: int = 10, gz: bool = False,
                      seed: int = 0) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """The four MNIST-style IDX files in ``raw`` (torchvision's ``<root>/MNIST/raw`` or ``FashionMNIST/raw``):
    random 28 x 28 images, label ``i % 10`` for image ``i``. Returns ``{"train" | "t10k": (images, labels)}``."""
    raw = Path(raw)
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


def write_cifar(folder: Union[str, Path], per_batch: int = 4, n_test: int = 10, seed: int = 0
                ) -> Dict[str, Tuple[np.ndarray, List[int]]]:
    """``cifar-10-batches-py`` as torchvision extracts it: five pickled training batches of ``per_batch``
    random images, ``test_batch`` with ``n_test``, and ``batches.meta``; rows of 3,072 bytes (1,024 red, then
    green, then blue values). Returns ``{batch name: (data, labels)}``."""
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
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
        pickle.dump({"label_names": list(_CIFAR10_LABEL_NAMES), "num_vis": 3072}, handle)
    return batches


# ----------------------------------------------------------------------------------------- PyG layouts
def write_planetoid(raw: Union[str, Path], n_train: int = 6, n_rest: int = 514, n_test: int = 10,
                    num_features: int = 5, seed: int = 0) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PubMed's raw files (PyG ``io/planetoid.py``): pickled ``x``/``tx``/``allx`` (sparse), ``y``/``ty``/``ally``
    (one-hot, 3 classes), ``graph`` (node -> neighbours ``i + 1`` and ``i + 7``) and ``test.index`` (text,
    the test nodes in shuffled order). PyG's public split needs ``n_train + 500 <= n_train + n_rest``.
    Returns ``(features, labels, test_index)``."""
    import scipy.sparse as sp

    raw = Path(raw)
    rng = np.random.default_rng(seed)
    raw.mkdir(parents=True, exist_ok=True)
    n_all = n_train + n_rest
    n = n_all + n_test
    feats = rng.random((n, num_features)).astype(np.float32)
    labels = np.arange(n) % 3
    onehot = np.eye(3, dtype=np.int64)[labels]
    test_index = n_all + rng.permutation(n_test)
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


def write_amazon(path: Union[str, Path], n: int = 40, num_features: int = 6, num_classes: int = 4, seed: int = 0
                 ) -> Tuple[np.ndarray, np.ndarray]:
    """An Amazon raw file (PyG ``io/npz.py``): CSR features and adjacency (a directed ring) and labels
    ``i % num_classes`` in one ``.npz``. Returns ``(dense features, labels)``."""
    import scipy.sparse as sp

    path = Path(path)
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    attr = sp.csr_matrix((rng.random((n, num_features)) < 0.3).astype(np.float32))
    src = np.arange(n)
    adj = sp.csr_matrix((np.ones(n), (src, (src + 1) % n)), shape=(n, n))
    labels = np.arange(n) % num_classes
    np.savez(path, attr_data=attr.data, attr_indices=attr.indices, attr_indptr=attr.indptr,
             attr_shape=np.array(attr.shape), adj_data=adj.data, adj_indices=adj.indices,
             adj_indptr=adj.indptr, adj_shape=np.array(adj.shape), labels=labels)
    return attr.toarray(), labels


def write_wikics(raw: Union[str, Path], n: int = 30, splits: int = 3, num_features: int = 4, num_classes: int = 5,
                 test_from: Optional[int] = None, seed: int = 0) -> Dict[str, Any]:
    """WikiCS's raw ``data.json`` (PyG ``datasets/wikics.py``): features, labels ``i % num_classes``, links
    (node ``i`` -> ``i + 1``), ``splits`` official train/val/stopping masks (split ``k`` trains the nodes
    ``i % splits == k`` and validates on the next residue) and the test mask (nodes from ``test_from``,
    default the last sixth). Returns the JSON content."""
    raw = Path(raw)
    rng = np.random.default_rng(seed)
    raw.mkdir(parents=True, exist_ok=True)
    test_from = n - max(1, n // 6) if test_from is None else test_from
    train = [(np.arange(n) % splits == k).tolist() for k in range(splits)]
    val = [(np.arange(n) % splits == (k + 1) % splits).tolist() for k in range(splits)]
    content = dict(features=rng.random((n, num_features)).round(3).tolist(),
                   labels=(np.arange(n) % num_classes).tolist(), links=[[(i + 1) % n] for i in range(n)],
                   train_masks=train, val_masks=val, stopping_masks=val,
                   test_mask=(np.arange(n) >= test_from).tolist())
    (raw / "data.json").write_text(json.dumps(content))
    return content


# ------------------------------------------------------------------------------------------- tiny data
def write_tiny_datasets(root: Union[str, Path], seed: int = 0) -> Dict[str, Path]:
    """Tiny files of every dataset in :data:`TINY_DATASETS`, in the layouts :func:`neuronlab.data.load_dataset`
    reads from a data folder without any network access: ``MNIST/raw`` and ``FashionMNIST/raw`` (IDX),
    ``cifar-10-batches-py`` (pickles), ``PubMed/raw``, ``Photo/raw``, ``Computers/raw``, ``WikiCS/raw``.

    Sizes (:data:`TINY_SIZES`): 200 training and 100 test images per MNIST-like dataset; 30 training and 10
    test CIFAR-10 images (an epoch of the full-width ResNet-18 on them takes about a second on two CPU
    cores); graphs of 530 (PubMed: PyG's public split holds 500 validation nodes out), 60 (Amazon) and 50
    (WikiCS) nodes. Load them with :data:`TINY_LOAD_OPTIONS` (smaller validation splits).

    Returns:
        ``{dataset: folder written}``.
    """
    root = Path(root)
    sizes = TINY_SIZES
    folders = {"mnist": root / "MNIST" / "raw", "fashion-mnist": root / "FashionMNIST" / "raw",
               "cifar10": root / "cifar-10-batches-py", "pubmed": root / "PubMed" / "raw",
               "amazon-photo": root / "Photo" / "raw", "amazon-computers": root / "Computers" / "raw",
               "wikics": root / "WikiCS" / "raw"}
    write_idx_dataset(folders["mnist"], n_train=sizes["idx_train"], n_test=sizes["idx_test"], seed=seed)
    write_idx_dataset(folders["fashion-mnist"], n_train=sizes["idx_train"], n_test=sizes["idx_test"],
                      seed=seed + 1)
    write_cifar(folders["cifar10"], per_batch=sizes["cifar_per_batch"], n_test=sizes["cifar_test"], seed=seed)
    write_planetoid(folders["pubmed"], n_train=6, n_rest=sizes["pubmed_rest"], n_test=10, num_features=16,
                    seed=seed)
    for name, file in (("amazon-photo", "amazon_electronics_photo.npz"),
                       ("amazon-computers", "amazon_electronics_computers.npz")):
        write_amazon(folders[name] / file, n=sizes["amazon_nodes"], num_features=16, num_classes=4, seed=seed)
    write_wikics(folders["wikics"], n=sizes["wikics_nodes"], splits=3, num_features=16, num_classes=5, seed=seed)
    return folders


_TINY_ROOT: List[Path] = []      # the process's tiny data folder, once written
_ACTIVE: List[Path] = []         # the tiny data folders in use (innermost last)


def tiny_data_root() -> Path:
    """This process's folder of tiny datasets (:func:`write_tiny_datasets`): a new temporary folder, written
    on the first call and removed when the process exits."""
    if not _TINY_ROOT or not _TINY_ROOT[0].is_dir():
        root = Path(tempfile.mkdtemp(prefix="neuronlab-smoke-data-"))
        write_tiny_datasets(root)
        atexit.register(shutil.rmtree, root, True)
        _TINY_ROOT[:] = [root]
    return _TINY_ROOT[0]


@contextmanager
def tiny_data(root: Optional[Union[str, Path]] = None) -> Iterator[Path]:
    """Within the block, datasets load from the tiny files in ``root`` (default :func:`tiny_data_root`):
    ``NEURONLAB_DATA`` points there and :func:`load_options` gives their split sizes. Restored on exit."""
    folder = Path(root) if root is not None else tiny_data_root()
    before = os.environ.get(DATA_ENV)
    os.environ[DATA_ENV] = str(folder)
    _ACTIVE.append(folder)
    try:
        yield folder
    finally:
        _ACTIVE.pop()
        if before is None:
            os.environ.pop(DATA_ENV, None)
        else:
            os.environ[DATA_ENV] = before


def load_options(name: str) -> Dict[str, Any]:
    """The loader options of dataset ``name`` inside :func:`tiny_data` (:data:`TINY_LOAD_OPTIONS`), else ``{}``."""
    return dict(TINY_LOAD_OPTIONS.get(name, {})) if _ACTIVE else {}
