"""The dataset registry and the entry points: :func:`load_dataset`, :func:`list_datasets`.

Every dataset is one :class:`DatasetSpec` -- its name, kind, origin, loader and availability check --
added with :func:`register` by the module that knows how to load it (``images`` and ``graphs``). This
module imports neither of them; importing ``neuronlab.data`` imports both, which fills the registry before
any name can be looked up. :func:`load_dataset` checks the arguments that every dataset shares (name,
seed, sizes, keyword options) before it touches the disk, then hands a :class:`LoadRequest` to the loader.

Also here, because every loader shares them:

* the image result type :class:`DatasetSplits` and :func:`check_seed`;
* the error :class:`DatasetNotAvailableError`, built by :func:`not_available_error` with a message that
  says where the loader looked, how to get the data and which offline dataset can stand in;
* :func:`guarded_download` and :func:`rollback_on_failure`: a download writes into a private staging
  folder and is moved into the data folder only when it has succeeded, so a failed one leaves no new
  files or (empty) folders behind -- and removes nothing but what it wrote itself (another notebook may
  be writing into the same data folder at the same time).
"""

from __future__ import annotations

import difflib
import importlib.util
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, TensorDataset

from ..config import DATA_ENV, data_dir
from ._safeio import publish, remove, staging_path
from .transforms import resolve_size

__all__ = [
    "PathLike",
    "DatasetNotAvailableError",
    "DatasetSplits",
    "check_seed",
    "LoadRequest",
    "DatasetSpec",
    "register",
    "dataset_names",
    "module_locator",
    "not_available_error",
    "rollback_on_failure",
    "guarded_download",
    "load_dataset",
    "list_datasets",
]

PathLike = Union[str, Path]


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


def check_seed(seed: Any) -> int:
    """``seed`` as a Python int, after checking that it is an integer in ``[0, 2**32)``.

    Raises:
        ValueError: anything else (bools, floats, strings, negative or too large numbers).
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}; "
                         f"pass e.g. seed=0 (the same seed gives the same split).")
    return int(seed)


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
            generator = torch.Generator().manual_seed(check_seed(self.seed if seed is None else seed))
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
# Requests, specs and the registry
# --------------------------------------------------------------------------------------------------


@dataclass
class LoadRequest:
    """One call of :func:`load_dataset`, with its arguments checked, as a loader receives it.

    Attributes:
        name: the canonical dataset name.
        root: the resolved data folder (it may not exist yet).
        seed: the checked seed of the split (and of generated data).
        download: whether a missing dataset may be downloaded.
        flatten: flatten image inputs to ``[N, C*H*W]``.
        standardize: standardize image channels with the training statistics.
        val_size: the validation size as the user gave it (``None``: the dataset's default).
        test_size: the test size as the user gave it (``None``: the dataset's default).
        kwargs: the dataset-specific options, already checked against :attr:`DatasetSpec.kwargs`.
    """

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
class DatasetSpec:
    """Everything the registry knows about one dataset.

    Attributes:
        name: canonical name, lower case with dashes (``"mnist-5k"``).
        kind: ``"image"`` (the loader returns a :class:`DatasetSplits`) or ``"graph"`` (a PyG ``Data``).
        offline: usable without internet once its package is installed.
        origin: one line on where the data comes from, shown by :func:`list_datasets`.
        loader: loads the dataset for a :class:`LoadRequest`.
        locate: given the data folder, where the dataset was found (a short text), or ``None`` if it
            is not loadable without a download; it may only check files and packages, never read them.
        kwargs: the dataset-specific keyword options :func:`load_dataset` accepts.
        alternative: which offline dataset to use instead, for the "not available" message.
        expected_files: the files that must be in the data folder, for the "not available" message.
        official_test: the dataset ships its own test set, so ``test_size`` cannot be set.
        aliases: other accepted names (after lower-casing and ``_`` / space to ``-``).
        more_ways_to_get: returns further "how to get it" lines for the "not available" message; it is
            called when the message is made, so it sees the current value of any module setting.
    """

    name: str
    kind: str
    offline: bool
    origin: str
    loader: Callable[[LoadRequest], Any]
    locate: Callable[[Path], Optional[str]]
    kwargs: Tuple[str, ...] = ()
    alternative: str = ""
    expected_files: str = ""
    official_test: bool = False
    aliases: Tuple[str, ...] = ()
    more_ways_to_get: Callable[[], Sequence[str]] = tuple


_REGISTRY: Dict[str, DatasetSpec] = {}
_ALIASES: Dict[str, str] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
    """Add a dataset to the registry, so that :func:`load_dataset` and :func:`list_datasets` know it.

    Returns:
        ``spec``, unchanged.

    Raises:
        ValueError: its name or one of its aliases is already taken.
    """
    taken = [n for n in (spec.name,) + tuple(spec.aliases) if n in _REGISTRY or n in _ALIASES]
    if taken:
        raise ValueError(f"Cannot register dataset {spec.name!r}: {taken} already registered.")
    _REGISTRY[spec.name] = spec
    for alias in spec.aliases:
        _ALIASES[alias] = spec.name
    return spec


def dataset_names() -> Tuple[str, ...]:
    """The canonical names of all registered datasets: the offline ones first, each group in the order
    the datasets were registered."""
    return tuple(sorted(_REGISTRY, key=lambda name: not _REGISTRY[name].offline))


def module_locator(module: str, text: str) -> Callable[[Path], Optional[str]]:
    """A :attr:`DatasetSpec.locate` for a dataset that comes with a package: ``text`` if ``module`` is
    installed (checked without importing it), else ``None``."""
    def locate(root: Path) -> Optional[str]:
        return text if importlib.util.find_spec(module) is not None else None
    return locate


def _canonical(name: Any) -> str:
    if not isinstance(name, str):
        raise ValueError(f"Dataset name must be a string, one of {list(dataset_names())}; got {name!r}.")
    key = name.strip().lower().replace("_", "-").replace(" ", "-")
    key = _ALIASES.get(key, key)
    if key in _REGISTRY:
        return key
    candidates = list(_REGISTRY) + list(_ALIASES)
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.5)
    hint = f" Did you mean {_ALIASES.get(close[0], close[0])!r}?" if close else ""
    raise ValueError(f"Unknown dataset {name!r}.{hint} Known datasets: {', '.join(dataset_names())} "
                     f"(see list_datasets()).")


# --------------------------------------------------------------------------------------------------
# Missing data and safe downloads
# --------------------------------------------------------------------------------------------------


def not_available_error(name: str, root: Path, looked_in: Sequence[Path], reason: str
                        ) -> DatasetNotAvailableError:
    """The error for a registered dataset that cannot be loaded (returned, for the caller to raise).

    Args:
        name: the canonical dataset name.
        root: the data folder a download would go to.
        looked_in: the folders that were searched.
        reason: why it failed, one sentence (e.g. ``"no local files and download=False."``).
    """
    spec = _REGISTRY[name]
    folders = ", ".join(str(p) for p in looked_in)
    lines = [
        f"Dataset {name!r} is not available on this machine: {reason}",
        f"Looked in: {folders}",
        "How to get it:",
        f"  - on a machine with internet (Colab, a laptop): load_dataset({name!r}, download=True) "
        f"downloads it into {root}",
        f"  - or set {DATA_ENV} (or pass root=...) to a folder that already holds {spec.expected_files}",
    ]
    lines += [f"  - {way}" for way in spec.more_ways_to_get()]
    if spec.alternative:
        lines.append(f"Offline instead: {spec.alternative}")
    return DatasetNotAvailableError("\n".join(lines), dataset=name, looked_in=looked_in)


@contextmanager
def rollback_on_failure(paths: Sequence[Path]) -> Iterator[None]:
    """Undo what a failed block created at ``paths`` -- and nothing else.

    ``paths`` are the files or folders that the block itself writes, e.g. a uniquely named staging folder
    (never a shared folder such as the data folder itself: what other notebooks write there is theirs).
    Before the block, every path that does not exist yet is remembered, with the folders above it that do
    not exist either. On any exception, each remembered path is removed if it exists by then (it did not
    exist before, so this block made it), and the remembered folders above it are removed, deepest
    first, only if they are empty: a folder that someone else wrote into meanwhile is kept with what they
    wrote. A path that existed before the block is never touched, nor anything in it. Then the exception
    propagates.
    """
    created: List[Path] = []
    parents: List[Path] = []
    for path in map(Path, paths):
        if os.path.lexists(path):
            continue
        created.append(path)
        top = path.parent
        while not os.path.lexists(top) and top != top.parent:
            parents.append(top)
            top = top.parent
    try:
        yield
    except BaseException:
        for path in created:
            remove(path)
        for folder in sorted(set(parents), key=lambda p: len(p.parts), reverse=True):
            try:
                folder.rmdir()                  # only if empty
            except OSError:
                pass
        raise


def _first_line(err: BaseException, limit: int = 300) -> str:
    """The error's type and message on one line, shortened to ``limit`` characters."""
    text = " ".join(str(err).split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(err).__name__}: {text}".strip()


def guarded_download(req: LoadRequest, looked_in: Sequence[Path], touched: Sequence[PathLike],
                     action: Callable[[Path], Any]) -> Any:
    """Run a download in a private staging folder, then move what it produced into the data folder.

    ``action`` gets a new, empty, uniquely named folder inside the data folder ``req.root`` (created,
    with its missing parents, if need be) and downloads into it as if it were the data folder. When it
    succeeds, each entry of the staging folder named in ``touched`` is moved into the data folder without
    replacing anything already there (a file that is there -- the user's, or another notebook's that
    finished first -- is kept), and the staging folder is removed. When it fails, only the staging folder
    and the parent folders created for it (if still empty) are removed, with
    :func:`rollback_on_failure`: files that another notebook writes into the data folder meanwhile, and
    everything that was there before, survive. Other notebooks never see a half-downloaded dataset.

    Args:
        req: the request being served (its name and root go into the error message).
        looked_in: the folders that were searched, for the error message.
        touched: the entries the download creates, named relative to the data folder (e.g. ``["MNIST"]``
            or ``["cifar-10-python.tar.gz", "cifar-10-batches-py"]``); anything else it writes is dropped.
        action: ``action(folder)`` downloads into ``folder`` and returns what the caller needs; it must
            not keep a reference to files in ``folder`` (they are moved when it returns).

    Returns:
        What ``action`` returned.

    Raises:
        DatasetNotAvailableError: the download failed (no network, a server error, a data folder that
            cannot be written); the message has the first line of the original error.
        ValueError: the data folder is an existing file, not a folder.
    """
    root = Path(req.root)
    if root.exists() and not root.is_dir():
        raise ValueError(f"The data folder {root} is a file, not a folder: pass root=... (or set {DATA_ENV}) "
                         f"to a folder where datasets may be downloaded.")
    names = []
    for entry in map(Path, touched):
        if entry.is_absolute():
            entry = entry.relative_to(root)
        names.append(entry.parts[0])
    staging = staging_path(root, req.name)
    try:
        # the staging folder is this call's alone; the data folder and its parents are removed on failure
        # only if this call created them and they are still empty
        with rollback_on_failure([staging]):
            try:
                staging.mkdir(parents=True)
            except OSError as err:
                raise not_available_error(
                    req.name, req.root, looked_in,
                    f"cannot write into the data folder {root} ({_first_line(err)}); pass root=... (or set "
                    f"{DATA_ENV}) to a folder you can write.") from err
            result = action(staging)
            for name in dict.fromkeys(names):
                if os.path.lexists(staging / name):
                    publish(staging / name, root / name)
        return result
    except DatasetNotAvailableError:
        raise
    except Exception as err:  # network errors come in many types (URLError, aiohttp, RuntimeError, ...)
        raise not_available_error(req.name, req.root, looked_in,
                                  f"the download failed ({_first_line(err)}).") from err
    finally:
        remove(staging)                         # what publish left behind (copies of files that were kept)


# --------------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------------

_COMMON_ARGUMENTS = ("root", "seed", "download", "flatten", "standardize", "val_size", "test_size")


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

    Every argument is checked before anything is read, downloaded or written: an unknown name (the
    message suggests the closest one), a seed that is not an integer in ``[0, 2**32)``, sizes that are
    not counts or fractions in ``[0, 1)`` (NaN and infinity included), ``download`` / ``flatten`` /
    ``standardize`` that are not booleans, a ``root`` that is not a path, a misspelt or foreign keyword
    option (the message suggests the closest one) and the dataset's own options (e.g. a non-finite
    ``signal`` of ``csbm``) each raise ``ValueError`` saying what to pass instead. Files are checked as
    they are read: labels outside ``0 .. num_classes - 1``, a file of the set that is missing, a truncated
    file, or a pickle that names anything but plain data (it is refused, never run) raise an error that
    names the file.

    Raises:
        ValueError: unknown name (with the closest known name), bad sizes, seed, flags or keyword
            arguments; a dataset file that is corrupt, has labels out of range or is not what it should be.
        DatasetNotAvailableError: the data is neither on this machine nor downloadable now; the message
            says where it looked, how to get it and which offline dataset to use instead.

    Example:
        >>> data = load_dataset("mnist-5k")                # doctest: +SKIP
        >>> xb, yb = next(iter(data.loader("train", 64)))  # doctest: +SKIP
    """
    key = _canonical(name)
    spec = _REGISTRY[key]
    seed = check_seed(seed)
    if root is not None and not isinstance(root, (str, os.PathLike)):
        raise ValueError(f"root must be a folder path (a str or pathlib.Path), got {root!r} of type "
                         f"{type(root).__name__}; or leave it out to use {DATA_ENV} / ~/.neuronlab/data.")
    for value, what in ((download, "download"), (flatten, "flatten"), (standardize, "standardize")):
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"{what} must be True or False, got {value!r} of type {type(value).__name__} "
                             f"(a string such as 'no' would count as True).")
    unexpected = sorted(set(kwargs) - set(spec.kwargs))
    if unexpected:
        accepted = ", ".join(spec.kwargs) if spec.kwargs else "none"
        hints = [f"{u!r} -> {close[0]!r}" for u in unexpected
                 for close in [difflib.get_close_matches(u, list(spec.kwargs) + list(_COMMON_ARGUMENTS), n=1,
                                                         cutoff=0.6)] if close]
        hint = f" Did you mean: {', '.join(hints)}?" if hints else ""
        raise ValueError(f"load_dataset({key!r}) got unexpected keyword argument(s) {unexpected};{hint} "
                         f"its options are: {accepted} (and the common arguments "
                         f"{', '.join(_COMMON_ARGUMENTS)}).")
    for value, what in ((val_size, "val_size"), (test_size, "test_size")):
        if value is not None:
            resolve_size(value, 0, what)        # type and range checks before any disk or network access
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
    request = LoadRequest(key, resolved_root, seed, bool(download), bool(flatten),
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
    for spec in (_REGISTRY[name] for name in dataset_names()):
        location = spec.locate(folder)
        rows.append(dict(name=spec.name, kind=spec.kind, offline=spec.offline, origin=spec.origin,
                         available=location is not None, location=location or ""))
    return pd.DataFrame(rows)
