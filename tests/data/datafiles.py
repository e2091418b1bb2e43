"""Helpers of the ``neuronlab.data`` tests that write tiny datasets and compare folder trees.

Shared by ``test_images.py``, ``test_graphs.py`` and ``test_registry.py`` (pytest puts this folder on
``sys.path``, so they import it as ``datafiles``). The writers of the libraries' raw formats live in
``neuronlab.experiments.smoke``, whose smoke mode runs the full profile on the same kind of tiny files.
"""

from pathlib import Path

from neuronlab.experiments.smoke import (write_amazon, write_cifar, write_idx, write_idx_dataset, write_planetoid,
                                         write_wikics)

__all__ = ["tree", "write_idx", "write_idx_dataset", "write_cifar", "write_planetoid", "write_amazon", "write_wikics"]


def tree(path: Path):
    """Every path below ``path`` (to check that a failed load left the disk exactly as it was)."""
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))
