"""File safety for the loaders (private): restricted unpickling, staging folders, no-clobber moves.

Two rules of the data folder (which ``NEURONLAB_DATA`` may point at a shared or synced folder) live here:

* **No code runs from a file.** Datasets that are distributed as Python pickles (CIFAR-10's
  ``cifar-10-batches-py``, PubMed's Planetoid ``ind.pubmed.*``) are read with
  :class:`RestrictedUnpickler`, which resolves a global only from a fixed table of harmless types
  (:data:`CIFAR_GLOBALS`, :data:`PLANETOID_GLOBALS`) and refuses anything else -- ``os.system``,
  ``builtins.exec``, any class of any other module -- *before* it is called, naming the file.
* **Nothing finished is lost.** A download or a processing step writes into a private, uniquely named
  staging folder (:func:`staging_path`) and is then moved into place by :func:`publish`, which never
  replaces anything already there. A failure removes only that staging folder, never a file that another
  notebook wrote into the data folder meanwhile.

This module is internal to ``neuronlab.data``: ``registry``, ``images`` and ``graphs`` import it.
"""

from __future__ import annotations

import _codecs
import _compat_pickle
import collections
import copyreg
import os
import pickle
import shutil
import uuid
from pathlib import Path
from typing import Any, Dict, Mapping, Tuple, Union

import numpy as np

try:                                  # numpy >= 2 keeps its internals in numpy._core ...
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:                   # pragma: no cover  (numpy 1.x)
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric

__all__ = ["CIFAR_GLOBALS", "PLANETOID_GLOBALS", "STAGING_PREFIX", "DataFileError", "UnsafePickleError",
           "RestrictedUnpickler", "restricted_load", "staging_path", "publish", "remove"]

Globals = Mapping[Tuple[str, str], Any]


def _numpy_arrays() -> Dict[Tuple[str, str], Any]:
    """The globals a pickled numpy array or scalar refers to, under both module names numpy has used
    (``numpy.core`` up to 1.x, ``numpy._core`` from 2.0): pickles written by either load with either."""
    table: Dict[Tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for core in ("numpy.core", "numpy._core"):
        table[(f"{core}.multiarray", "_reconstruct")] = _multiarray._reconstruct   # protocols 0-4
        table[(f"{core}.multiarray", "scalar")] = _multiarray.scalar               # numpy scalars
        table[(f"{core}.numeric", "_frombuffer")] = _numeric._frombuffer           # protocol 5
    return table


#: The plain builtin types a pickle may name as globals (calling them on unpickled values runs no code).
_BUILTINS = {("builtins", t.__name__): t for t in (dict, list, tuple, set, frozenset, str, bytes, bytearray,
                                                   int, float, complex, bool)}

#: What the ``cifar-10-batches-py`` files contain: a dict of a numpy ``uint8`` array, lists of ints and
#: strings (``batches.meta``: a list of strings and ints). ``_codecs.encode`` is how Python 3 pickles
#: ``bytes`` with protocols 0-2.
CIFAR_GLOBALS: Globals = {**_numpy_arrays(), **_BUILTINS, ("_codecs", "encode"): _codecs.encode}


def _planetoid_globals() -> Dict[Tuple[str, str], Any]:
    import scipy.sparse as sp

    table = dict(CIFAR_GLOBALS)
    # x / tx / allx are scipy CSR matrices, pickled as scipy.sparse.csr (old scipy) or ._csr (new)
    for module in ("scipy.sparse.csr", "scipy.sparse._csr", "scipy.sparse"):
        table[(module, "csr_matrix")] = sp.csr_matrix
    # graph is a defaultdict(list); protocols 0 and 1 rebuild objects with copyreg._reconstructor, which
    # only calls __new__ / __init__ of classes that are themselves in this table
    table[("collections", "defaultdict")] = collections.defaultdict
    table[("collections", "OrderedDict")] = collections.OrderedDict
    table[("copyreg", "_reconstructor")] = copyreg._reconstructor
    table[("builtins", "object")] = object
    return table


class _LazyGlobals(Mapping):
    """A table built on first use (so that importing this module does not import scipy)."""

    def __init__(self, build):
        self._build, self._table = build, None

    def _get(self) -> Dict[Tuple[str, str], Any]:
        if self._table is None:
            self._table = self._build()
        return self._table

    def __getitem__(self, key):
        return self._get()[key]

    def __iter__(self):
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())


#: What PubMed's Planetoid raw pickles contain: numpy arrays (the one-hot labels), scipy CSR matrices
#: (the features) and a ``collections.defaultdict`` of lists (the graph).
PLANETOID_GLOBALS: Globals = _LazyGlobals(_planetoid_globals)


class DataFileError(ValueError):
    """A file in the data folder is unsafe, truncated, corrupt or not what its name says; the message
    names the file and says what to do."""


class UnsafePickleError(DataFileError):
    """A pickle named a global (or a persistent id) that its format never contains; nothing was run."""


class RestrictedUnpickler(pickle.Unpickler):
    """A ``pickle.Unpickler`` that resolves globals from a fixed table only, and refuses the rest.

    A pickle runs code only through the globals it names (``os.system``, ``builtins.exec``, a class with
    a harmful ``__reduce__`` / ``__setstate__``) and through persistent ids; here every global is looked
    up in ``allowed`` -- never imported -- and anything not in it, or any persistent id, raises
    ``ValueError`` *before* it is called, with a message that names the file. Python 2 module names
    (``__builtin__``, ``copy_reg``) are translated first, as ``pickle`` does itself.

    Args:
        file: a binary file object.
        allowed: ``{(module, name): object}``, e.g. :data:`CIFAR_GLOBALS`.
        path: the file's path, for the message.
        what: what the file should be, for the message (e.g. ``"a CIFAR-10 batch"``).
        **kwargs: passed to ``pickle.Unpickler`` (``encoding="latin1"`` for Python 2 pickles).
    """

    def __init__(self, file, allowed: Globals, path: Union[str, Path], what: str, **kwargs: Any):
        super().__init__(file, **kwargs)
        self._allowed, self._path, self._what = allowed, Path(path), what

    def _refuse(self, thing: str) -> UnsafePickleError:
        return UnsafePickleError(
            f"{self._path}: refusing to unpickle {thing}: {self._what} holds only plain data (numbers, "
            f"strings, lists, dicts, arrays), so this file is not what its name says; unpickling it could "
            f"run code. neuronlab did not run it. Delete the file (and find out who wrote it), then load "
            f"the dataset again to download a genuine copy.")

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise self._refuse(f"the global {module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise self._refuse(f"a persistent id ({type(pid).__name__})")


def restricted_load(path: Union[str, Path], allowed: Globals, what: str, fix: str) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler` (``encoding="latin1"``, as the Python 2 era
    dataset pickles need).

    Raises:
        UnsafePickleError: the file names a global that is not in ``allowed`` (refused before anything
            is called); it is a ``ValueError``.
        DataFileError: the file is not a readable pickle (truncated, corrupt); the message names the
            file and ends with ``fix``.
    """
    path = Path(path)
    with open(path, "rb") as handle:
        unpickler = RestrictedUnpickler(handle, allowed, path, what, encoding="latin1")
        try:
            return unpickler.load()
        except UnsafePickleError:
            raise
        except Exception as err:        # truncated or corrupt pickles fail in many ways
            failure = err
    text = " ".join(str(failure).split())[:200]
    raise DataFileError(f"{path}: cannot be read as {what} ({type(failure).__name__}: {text}); the file is "
                     f"truncated or corrupt: {fix}.") from failure


# --------------------------------------------------------------------------------------------------
# Staging folders and no-clobber moves
# --------------------------------------------------------------------------------------------------

#: Names of staging folders start with this (a download killed mid-way leaves one; it can be deleted).
STAGING_PREFIX = ".neuronlab-staging-"


def staging_path(parent: Path, label: str) -> Path:
    """A new, unique path for a staging folder in ``parent`` (not created here): this process's id and a
    random part make the name unique, so only the call that asked for it ever writes there."""
    return Path(parent) / f"{STAGING_PREFIX}{label}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


def remove(path: Path) -> None:
    """Remove a file, a link or a whole folder; a path that is already gone is fine."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except OSError:
            pass


def publish(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst`` without replacing anything that is at ``dst``.

    A missing ``dst`` gets ``src`` by one ``os.rename`` (atomic on one file system, so no one sees half a
    folder). A folder on both sides is merged entry by entry. A file that is already at ``dst`` -- the
    user's, or another download's that finished first -- is kept, and ``src``'s copy stays behind, to be
    removed with the staging folder. Files are placed with a hard link where the file system has them
    (atomic: it fails if ``dst`` appeared meanwhile), else by ``os.rename`` after a check.
    """
    src, dst = Path(src), Path(dst)
    if src.is_dir() and not src.is_symlink():
        if not os.path.lexists(dst):
            try:
                os.rename(src, dst)
                return
            except OSError:
                pass                         # dst appeared meanwhile: merge into it below
        if dst.is_dir():
            for entry in sorted(os.listdir(src)):
                publish(src / entry, dst / entry)
        return
    if os.path.lexists(dst):
        return
    try:
        os.link(src, dst, follow_symlinks=False)
    except FileExistsError:
        return
    except OSError:                          # no hard links on this file system
        if not os.path.lexists(dst):
            os.rename(src, dst)
