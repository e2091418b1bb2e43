"""Read a chapter's code exercises from its notebook: the reference solution cells (tag
``exercise-solution``) and the check cells (tag ``exercise-check``), for tests that prove every check passes
on the reference, fails on the student's skeleton and fails on a typical wrong answer."""

import json
from pathlib import Path
from typing import Dict, List

import pytest

from neuronlab.exercises._checks import skeleton

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def chapter_notebook(number: int) -> Path:
    (path,) = NOTEBOOKS.glob(f"{number:02d}_*.ipynb")
    return path


def tagged_cells(number: int, tag: str) -> List[str]:
    """The sources of the chapter's code cells tagged ``tag``, in order."""
    cells = json.loads(chapter_notebook(number).read_text())["cells"]
    return ["".join(c["source"]) for c in cells
            if c["cell_type"] == "code" and tag in c.get("metadata", {}).get("tags", [])]


def functions_of(source: str) -> Dict[str, object]:
    """The top-level functions a cell defines, executed in a fresh namespace."""
    namespace: Dict[str, object] = {}
    exec(compile(source, "<exercise cell>", "exec"), namespace)  # noqa: S102 - our own notebooks' cells
    return {name: value for name, value in namespace.items()
            if callable(value) and getattr(value, "__module__", None) is None and not name.startswith("_")}


@pytest.fixture
def solutions():
    """``solutions(number)``: every reference-solution function of chapter ``number`` by name."""
    def load(number: int) -> Dict[str, object]:
        found: Dict[str, object] = {}
        for source in tagged_cells(number, "exercise-solution"):
            found.update(functions_of(source))
        return found
    return load


@pytest.fixture
def skeletons():
    """``skeletons(number)``: every function of chapter ``number`` as the student edition gives it."""
    def load(number: int) -> Dict[str, object]:
        found: Dict[str, object] = {}
        for source in tagged_cells(number, "exercise-solution"):
            found.update(functions_of(skeleton(source)))
        return found
    return load
