"""Helpers of the ``neuronlab.data`` tests that write tiny IDX datasets and compare folder trees.

Shared by ``test_images.py`` and ``test_registry.py`` (pytest puts this folder on ``sys.path``, so they
import it as ``datafiles``).
"""

import gzip
import struct
from pathlib import Path

import numpy as np


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
