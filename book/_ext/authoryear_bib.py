"""The book's bibliography style: entries labelled by author and year, like the citations in the text.

The text cites with ``bibtex_reference_style: author_year`` ("[Mao et al., 2021]"), but pybtex's stock
styles label the list itself ``[MCF+21]`` (alpha) or ``[1]`` (unsrt), so a reader cannot find a citation
in the list by its label. This extension registers the pybtex formatting style ``authoryear``
(``bibtex_default_style: authoryear`` in ``_config.yml``):

* labels as the text cites: "Glorot and Bengio, 2010", "Mao et al., 2021"; a label shared by two entries
  gets a letter after the year ("2019a", "2019b");
* entries sorted by author, then year, then title;
* the entries themselves formatted by pybtex's ``unsrt`` style, which links the ``eprint`` (arXiv),
  ``doi`` and ``url`` fields.
"""

from __future__ import annotations

from collections import Counter
from string import ascii_lowercase

from pybtex.plugin import register_plugin
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle
from pybtex.style.sorting.author_year_title import SortingStyle as AuthorYearTitleSorting

__all__ = ["AuthorYearLabelStyle", "AuthorYearStyle", "author_year_label", "setup"]


def _last_name(person) -> str:
    """``von Last`` of a pybtex ``Person``, with LaTeX markup ({...}, accents) rendered as plain text."""
    parts = person.rich_prelast_names + person.rich_last_names
    return " ".join(part.render_as("text") for part in parts)


def author_year_label(entry) -> str:
    """"Last, year", "Last and Other, year" or "Last et al., year", as ``author_year`` cites the entry.

    Falls back on the editors, then on the title, when an entry has no author; on "n.d." without a year.
    """
    persons = entry.persons.get("author") or entry.persons.get("editor") or []
    names = [_last_name(person) for person in persons]
    if not names:
        who = entry.fields.get("title", entry.key).replace("{", "").replace("}", "")
    elif len(names) == 1:
        who = names[0]
    elif len(names) == 2:
        who = f"{names[0]} and {names[1]}"
    else:
        who = f"{names[0]} et al."
    return f"{who}, {entry.fields.get('year', 'n.d.')}"


class AuthorYearLabelStyle(BaseLabelStyle):
    """pybtex label style ``authoryear``: :func:`author_year_label`, made unique with a letter after the year."""

    def format_labels(self, sorted_entries):
        labels = [author_year_label(entry) for entry in sorted_entries]
        counts = Counter(labels)
        seen: Counter = Counter()
        for label in labels:
            if counts[label] > 1:
                suffix = ascii_lowercase[seen[label] % len(ascii_lowercase)]
                seen[label] += 1
                label = label + suffix
            yield label


class AuthorYearStyle(UnsrtStyle):
    """pybtex formatting style ``authoryear``: ``unsrt`` entries, author-year labels, sorted by author and year."""

    default_label_style = AuthorYearLabelStyle
    default_sorting_style = AuthorYearTitleSorting


def setup(app):
    register_plugin("pybtex.style.labels", "authoryear", AuthorYearLabelStyle)
    register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
