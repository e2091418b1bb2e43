"""Fixtures shared by the ``neuronlab.data`` tests.

Every test gets an empty ``NEURONLAB_DATA`` folder, so that no test reads or writes a user's data; the
mnist-5k splits are loaded once per test module for the tests that only read them.
"""

import pytest

from neuronlab.data import load_dataset


@pytest.fixture(autouse=True)
def _isolated_data_folder(tmp_path_factory, monkeypatch):
    """No test may read or write the user's data folder: NEURONLAB_DATA points to an empty folder."""
    monkeypatch.setenv("NEURONLAB_DATA", str(tmp_path_factory.mktemp("neuronlab_data_env")))


@pytest.fixture(scope="module")
def mnist5k():
    return load_dataset("mnist-5k")
