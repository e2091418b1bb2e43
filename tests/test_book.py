"""Gluing numbers and figures from a run into the page (myst-nb), and the fallbacks outside a kernel."""

import json

import nbformat
import numpy as np
import torch
import pytest
from nbclient import NotebookClient

from neuronlab import book


def test_count_phrase_reads_as_words():
    assert [book.count_phrase(k, 4) for k in (0, 1, 4)] == ["none of the 4", "1 of 4", "all 4"]
    with pytest.raises(ValueError, match="between 0"):
        book.count_phrase(5, 4)


def test_outside_a_kernel_glue_does_nothing_and_returns_nothing():
    assert book.glue("x", 3.5) is None and book.glue_text("y", "{} of {}", 2, 3) is None
    with pytest.raises(ValueError, match="name"):
        book.glue("", 1)


def test_in_a_kernel_numbers_phrases_and_figures_are_glued_and_the_figure_drawn_once(tmp_path):
    cells = [
        "from neuronlab import book\nimport matplotlib.pyplot as plt\nimport numpy as np\nimport torch\n"
        "book.glue('n', np.float64(0.125))\nbook.glue('t', torch.tensor(7))\nbook.glue_text('p', '{} of {} rows', 4, 6)",
        "fig, ax = plt.subplots()\nax.plot([0, 1])\nbook.glue_figure('f', fig)",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    numbers, figure = nb.cells[0].outputs, nb.cells[1].outputs
    glued = {o["metadata"]["scrapbook"]["name"]: o["data"] for o in numbers if "scrapbook" in o.get("metadata", {})}
    assert set(glued) == {"n", "t", "p"}
    assert [o for o in numbers if "scrapbook" not in o.get("metadata", {})] == []  # nothing else shown
    plain = {name: next(v for k, v in data.items() if k.endswith("text/plain")) for name, data in glued.items()}
    # NumPy and torch scalars as plain numbers (a format spec can apply), no quotes around the phrase
    assert plain == {"n": "0.125", "t": "7", "p": "4 of 6 rows"}
    images = [o for o in figure if any(k.startswith("image/") for k in o.get("data", {}))]
    assert len(images) == 1 and images[0]["metadata"]["scrapbook"]["name"] == "f"
    json.dumps(nb)  # outputs are plain JSON
