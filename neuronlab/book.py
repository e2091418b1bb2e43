"""Publishing a notebook as a page of the book: numbers and figures travel from the run into the text.

The book re-executes every notebook when it is built, and retrained CPU runs differ slightly from machine
to machine. A number typed into the prose would then disagree with the table beside it, so the prose
never types one: the cell that computes a number *glues* it (myst-nb's ``glue``), and the markdown
inserts it with ``{glue:text}`name:.2f``` (a number) or ``{glue:text}`name``` (a phrase). Figures are
glued too and placed by a ``{glue:figure}`` directive, which gives them a caption, a number and a label
to refer to.

In Jupyter or Colab, where myst-nb may be missing, :func:`glue` does nothing and
:func:`glue_figure` shows the figure as usual: the notebooks run everywhere.

>>> glue("ch00_answer", 42)  # shows nothing, returns nothing
>>> glue_text("ch00_phrase", "{} of {} rows", 3, 6)
"""

from __future__ import annotations

from typing import Any

__all__ = ["glue", "glue_text", "glue_figure", "count_phrase", "join_phrase"]


class _Phrase(str):
    """A string whose displayed form has no quotes, so that ``{glue:text}`` inserts the bare phrase."""

    def __repr__(self) -> str:
        return str(self)


def _myst_glue():
    try:
        from myst_nb import glue as myst_glue
    except ImportError:  # Colab or a bare Jupyter: nothing to glue into
        return None
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return myst_glue if get_ipython() is not None else None


def glue(name: str, value: Any) -> None:
    """Store ``value`` under ``name`` for the page's prose.

    Use numbers as they are (``{glue:text}`name:.2f``` formats them in the text) and strings for
    phrases; NumPy scalars and 0-d tensors are glued as plain Python numbers. Nothing is shown in the
    notebook (like myst-nb's own ``glue(..., display=False)``, this returns nothing, so a cell that ends
    in a glue prints nothing); outside an IPython kernel with myst-nb it does nothing at all.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"glue needs a non-empty string name, got {name!r}")
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        value = value.item()  # a NumPy scalar or 0-d tensor displays as np.float64(...): use the number
    myst_glue = _myst_glue()
    if myst_glue is not None:
        myst_glue(name, _Phrase(value) if isinstance(value, str) else value, display=False)


def glue_text(name: str, template: str, *values: Any) -> None:
    """Format ``template`` with ``values`` (``str.format``) and glue the phrase under ``name``.

    For sentences whose words depend on the run: ``glue_text("wins", "{} of {} rows", 3, 6)``.
    """
    glue(name, template.format(*values))


def count_phrase(count: int, total: int) -> str:
    """``"all 6"``, ``"none of the 6"`` or ``"4 of 6"``: a count of ``total`` in words fit for a sentence.

    >>> [count_phrase(6, 6), count_phrase(0, 6), count_phrase(4, 6)]
    ['all 6', 'none of the 6', '4 of 6']
    """
    if not 0 <= count <= total:
        raise ValueError(f"count {count} is not between 0 and total {total}")
    if count == total:
        return f"all {total}"
    if count == 0:
        return f"none of the {total}"
    return f"{count} of {total}"


def join_phrase(items, empty: str = "none") -> str:
    """``"a"``, ``"a and b"``, ``"a, b and c"``: a list in words for a sentence; ``empty`` when there
    is nothing.

    >>> join_phrase(["MLP-3"]), join_phrase(["MLP-3", "MLP-6"])
    ('MLP-3', 'MLP-3 and MLP-6')
    >>> join_phrase(["a", "b", "c"]), join_phrase([])
    ('a, b and c', 'none')
    """
    items = [str(i) for i in items]
    if not items:
        return empty
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def glue_figure(name: str, fig) -> None:
    """Show a matplotlib figure in the notebook and glue it under ``name`` for a captioned
    ``{glue:figure}`` on the page; the figure is then closed so that it is not drawn twice.

    The cell that calls this is tagged ``remove-output`` (the page shows the figure in its captioned
    place, not under the code).
    """
    import matplotlib.pyplot as plt

    if not isinstance(name, str) or not name:
        raise ValueError(f"glue_figure needs a non-empty string name, got {name!r}")
    myst_glue = _myst_glue()
    if myst_glue is not None:
        myst_glue(name, fig, display=True)
    else:
        try:
            from IPython.display import display
        except ImportError:
            pass
        else:
            display(fig)
    plt.close(fig)
