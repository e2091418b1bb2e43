"""The course editions of the chapters: student notebooks for Colab and reveal.js slide decks.

The instructor edition is the chapter itself (``notebooks/0N_*.ipynb``). From it this script makes:

* **student editions**, ``notebooks/student/0N_*.ipynb``: solutions removed (every ``:::{solution}`` block,
  and the hidden code cells tagged ``solution-run`` that compute what they quote), each reference solution
  (code cell tagged ``exercise-solution``) replaced by its skeleton that raises ``NotImplementedError``
  (:func:`neuronlab.exercises._checks.skeleton`), each followed by its check cell (``exercise-check``);
  outputs cleared; and the book's MyST markup converted to what Colab's markdown renders (CommonMark,
  tables, ``$math$``): labels dropped, cross-references written out ("Figure 3.2", "Exercise 3.1", a
  section's title, "Chapter 1"), citations as "(Author et al., year)" with a reference list at the end,
  glued numbers as the book's run shows them, exercises as headings, admonitions as blockquotes, dropdowns
  as ``<details>`` blocks. Markup the converter does not know stops it with the cell and the markup::

      python scripts/editions.py student           # (re)write notebooks/student/
      python scripts/editions.py student --check   # exit 1 naming the stale files (the tests run this)

* **slide decks**, one reveal.js deck per chapter, ``DIR/<stem>.slides.html``, from the cells tagged
  ``slide`` of the executed chapter (``jupyter nbconvert --to slides``): one slide per tagged cell,
  markdown converted as above, figure cells (they call ``book.glue_figure``) as their figure and caption
  without code, the live-run cell with its code::

      python scripts/editions.py slides --out _build/html/slides [--executed _build/jupyter_execute/notebooks]

  Without ``--executed`` the book build's executed copies are used when present, else the committed
  notebooks (which carry their outputs). ``scripts/build_book.sh`` runs this after the book.
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import re
import subprocess
import sys
import tempfile
import time
from ast import literal_eval
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Set, Tuple, Union

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
STUDENT = NOTEBOOKS / "student"
BIB = ROOT / "book" / "references.bib"
EXECUTED = ROOT / "_build" / "jupyter_execute" / "notebooks"
if str(ROOT) not in sys.path:  # run as a script from anywhere: the package sits at the root
    sys.path.insert(0, str(ROOT))

__all__ = ["MarkupError", "Bibliography", "LabelIndex", "Converter", "chapters", "student_notebook",
           "student_editions", "stale_student_editions", "write_student_editions", "slides_notebook",
           "build_slides", "solution_blocks", "split_blocks", "glue_values", "main"]


class MarkupError(ValueError):
    """Markup the converter cannot turn into Colab markdown; the message names the notebook, cell and markup."""


# --------------------------------------------------------------------------------------------- bibliography

_ACCENTS = {"'": "\u0301", "`": "\u0300", '"': "\u0308", "^": "\u0302", "~": "\u0303", "c": "\u0327",
            "v": "\u030c", "=": "\u0304", ".": "\u0307", "u": "\u0306", "H": "\u030b"}
_LATEX_SYMBOLS = {r"\&": "&", r"\%": "%", r"\_": "_", r"\ss": "ß", r"\o": "ø", r"\O": "Ø", r"\aa": "å",
                  r"\AA": "Å", r"\ae": "æ", r"\l": "ł", "--": "–", "~": "\u00a0"}


def _latex_text(text: str) -> str:
    """BibTeX field text as plain Unicode: accents (``{\\'e}``, ``\\"o``) composed, braces dropped."""
    import unicodedata

    def accent(match):
        return unicodedata.normalize("NFC", match.group(2) + _ACCENTS[match.group(1)])

    text = re.sub(r"\{\\([\'`\"^~=.])\s*\{?([A-Za-z])\}?\}", accent, text)
    text = re.sub(r"\\([\'`\"^~=.])\s*\{?([A-Za-z])\}?", accent, text)
    text = re.sub(r"\{\\([cvuH])\s*\{?([A-Za-z])\}?\}", accent, text)
    text = re.sub(r"\\([cvuH])\{([A-Za-z])\}", accent, text)
    for macro, char in _LATEX_SYMBOLS.items():
        text = text.replace(macro, char)
    return re.sub(r"\s+", " ", text.replace("{", "").replace("}", "")).strip()


def _split_names(field_text: str) -> List[Tuple[str, str]]:
    """``[(first, last), ...]`` of a BibTeX name list ("Last, First and First Last")."""
    names = []
    for name in re.split(r"\s+and\s+", field_text.strip()):
        name = name.strip()
        if not name:
            continue
        if "," in name:
            last, first = [part.strip() for part in name.split(",", 1)]
        else:  # "First von Last": the last word, with lowercase particles before it
            words = name.split()
            k = len(words) - 1
            while k > 0 and words[k - 1][:1].islower():
                k -= 1
            first, last = " ".join(words[:k]), " ".join(words[k:])
        names.append((_latex_text(first), _latex_text(last)))
    return names


@dataclass
class BibEntry:
    key: str
    kind: str
    fields: Dict[str, str]

    @property
    def authors(self) -> List[Tuple[str, str]]:
        return _split_names(self.fields.get("author") or self.fields.get("editor") or "")

    @property
    def year(self) -> str:
        return self.fields.get("year", "n.d.")

    def base_label(self) -> str:
        """"Last, year", "Last and Other, year" or "Last et al., year" (book/_ext/authoryear_bib.py)."""
        names = [last for _, last in self.authors]
        if not names:
            who = _latex_text(self.fields.get("title", self.key))
        elif len(names) == 1:
            who = names[0]
        elif len(names) == 2:
            who = f"{names[0]} and {names[1]}"
        else:
            who = f"{names[0]} et al."
        return f"{who}, {self.year}"


class Bibliography:
    """The entries of a ``.bib`` file, parsed here (no dependency), labelled by author and year as the book."""

    def __init__(self, entries: Dict[str, BibEntry]):
        self.entries = entries
        order = sorted(entries.values(), key=lambda e: (
            [(last.lower(), first.lower()) for first, last in e.authors], e.year,
            _latex_text(e.fields.get("title", "")).lower()))
        labels = [e.base_label() for e in order]
        counts = {label: labels.count(label) for label in labels}
        seen: Dict[str, int] = {}
        self.labels: Dict[str, str] = {}
        self.order = {entry.key: k for k, entry in enumerate(order)}  # the book's list: author, year, title
        for entry, label in zip(order, labels):
            if counts[label] > 1:  # "2019a", "2019b", as the book's list
                k = seen.get(label, 0)
                seen[label] = k + 1
                label += "abcdefghijklmnopqrstuvwxyz"[k]
            self.labels[entry.key] = label

    @classmethod
    def from_text(cls, text: str) -> "Bibliography":
        entries: Dict[str, BibEntry] = {}
        pos = 0
        while True:
            match = re.compile(r"@(\w+)\s*\{\s*([^,\s]+)\s*,").search(text, pos)
            if not match:
                break
            kind, key = match.group(1).lower(), match.group(2)
            pos = match.end()
            fields: Dict[str, str] = {}
            while True:
                field_match = re.compile(r"\s*(\w[\w-]*)\s*=\s*").match(text, pos)
                if not field_match:
                    end = re.compile(r"\s*,?\s*\}").match(text, pos)
                    if not end:
                        raise ValueError(f"references.bib: cannot read the entry {key!r} near {text[pos:pos + 40]!r}")
                    pos = end.end()
                    break
                name = field_match.group(1).lower()
                pos = field_match.end()
                if text[pos] == "{":
                    depth, start = 0, pos
                    while True:
                        depth += {"{": 1, "}": -1}.get(text[pos], 0)
                        pos += 1
                        if depth == 0:
                            break
                    value = text[start + 1:pos - 1]
                elif text[pos] == '"':
                    end_quote = text.index('"', pos + 1)
                    value, pos = text[pos + 1:end_quote], end_quote + 1
                else:
                    value_match = re.compile(r"[\w.-]+").match(text, pos)
                    value, pos = value_match.group(0), value_match.end()
                fields[name] = re.sub(r"\s+", " ", value).strip()
                comma = re.compile(r"\s*,").match(text, pos)
                if comma:
                    pos = comma.end()
            if kind not in ("comment", "preamble", "string"):
                entries[key] = BibEntry(key, kind, fields)
        return cls(entries)

    @classmethod
    def load(cls, path: Path = BIB) -> "Bibliography":
        return cls.from_text(path.read_text(encoding="utf-8"))

    def entry(self, key: str) -> BibEntry:
        if key not in self.entries:
            raise MarkupError(f"citation {key!r} is not in book/references.bib")
        return self.entries[key]

    def parenthetical(self, keys: Sequence[str]) -> str:
        """``(Mao et al., 2021; Glorot and Bengio, 2010)``."""
        return "(" + "; ".join(self.labels[self.entry(k).key] for k in keys) + ")"

    def textual(self, keys: Sequence[str]) -> str:
        """``Suzgun et al. (2019)``."""
        parts = []
        for key in keys:
            who, year = self.labels[self.entry(key).key].rsplit(", ", 1)
            parts.append(f"{who} ({year})")
        return "; ".join(parts)

    def reference(self, key: str) -> str:
        """One markdown line of the reference list: label, authors, title, venue, link."""
        entry = self.entry(key)
        f = entry.fields
        authors = [f"{first} {last}".strip() for first, last in entry.authors]
        who = (", ".join(authors[:-1]) + " and " + authors[-1]) if len(authors) > 1 else "".join(authors)
        title = _latex_text(f.get("title", key))
        parts = [f"**{self.labels[key]}.**", f"{who}." if who else "",
                 f"*{title}*" + ("" if title.endswith(("?", "!", ".")) else ".")]
        venue = f.get("booktitle") or f.get("journal") or f.get("howpublished") or ""
        if venue:
            venue = _latex_text(venue)
            if f.get("volume"):
                venue += f" {f['volume']}" + (f"({f['number']})" if f.get("number") else "")
            if f.get("pages"):
                venue += f", pages {_latex_text(f['pages'])}"
            parts.append(venue + ".")
        if f.get("note"):
            parts.append(_latex_text(f["note"]) + ".")
        if f.get("eprint"):
            parts.append(f"[arXiv:{f['eprint']}](https://arxiv.org/abs/{f['eprint']})")
        if f.get("doi"):
            parts.append(f"[doi:{f['doi']}](https://doi.org/{f['doi']})")
        if f.get("url"):
            parts.append(f"<{f['url']}>")
        return " ".join(p for p in parts if p)


# ------------------------------------------------------------------------------------------ block parsing

FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,}|:{3,})(?P<info>.*)$")
DIRECTIVE_HEAD = re.compile(r"^\{(?P<name>[^{}\s]+)\}\s*(?P<arg>.*)$")
OPTION = re.compile(r"^:(?P<key>[\w-]+):(?:\s+(?P<value>.*))?$")
LABEL_LINE = re.compile(r"^\s*\((?P<label>[^()\s]+)\)=\s*$")
HEADING = re.compile(r"^(?P<hashes>#{1,6})\s+(?P<title>.+?)\s*#*\s*$")


@dataclass
class Directive:
    """A MyST directive: ``{name} arg``, its ``:key: value`` options and its body."""

    name: str
    arg: str
    options: Dict[str, str]
    body: str
    raw: str


Block = Tuple[str, Union[str, Directive]]  # ("text", text) | ("code", fenced code) | ("directive", Directive)


def split_blocks(text: str) -> List[Block]:
    """The top-level blocks of a markdown text: prose, fenced code (kept verbatim) and directives.

    A fence closes at the next line of the same character at least as long (MyST nests a directive in
    one with a longer fence). A ``:::`` fence that does not open a ``{directive}`` is an error.
    """
    lines = text.split("\n")
    blocks: List[Block] = []
    prose: List[str] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match or (match.group("fence")[0] == "`" and "`" in match.group("info")):
            prose.append(lines[i])
            i += 1
            continue
        fence, info = match.group("fence"), match.group("info").strip()
        closing = re.compile(r"^ {0,3}" + re.escape(fence[0]) + "{" + str(len(fence)) + r",}\s*$")
        j = i + 1
        while j < len(lines) and not closing.match(lines[j]):
            j += 1
        head = DIRECTIVE_HEAD.match(info)
        if fence[0] == ":" and not head:
            raise MarkupError(f"a ':::' fence without a {{directive}}: {lines[i]!r}")
        if head and j == len(lines):
            raise MarkupError(f"the directive {lines[i]!r} is not closed")
        if prose:
            blocks.append(("text", "\n".join(prose)))
            prose = []
        raw = "\n".join(lines[i:j + 1])
        if head:
            blocks.append(("directive", _directive(head.group("name"), head.group("arg").strip(),
                                                   lines[i + 1:j], raw)))
        else:
            blocks.append(("code", raw))
        i = j + 1
    if prose:
        blocks.append(("text", "\n".join(prose)))
    return blocks


def _directive(name: str, arg: str, inner: List[str], raw: str) -> Directive:
    options: Dict[str, str] = {}
    k = 0
    if inner and inner[0].strip() == "---":  # options as a YAML block
        import yaml

        end = next((n for n in range(1, len(inner)) if inner[n].strip() == "---"), None)
        if end is None:
            raise MarkupError(f"unclosed option block in {raw.splitlines()[0]!r}")
        options = {str(key): str(value) for key, value in (yaml.safe_load("\n".join(inner[1:end])) or {}).items()}
        k = end + 1
    else:
        while k < len(inner) and OPTION.match(inner[k]):
            option = OPTION.match(inner[k])
            options[option.group("key")] = (option.group("value") or "").strip()
            k += 1
    body = "\n".join(inner[k:]).strip("\n")
    return Directive(name, arg, options, body, raw)


def walk_directives(text: str) -> Iterator[Directive]:
    """Every directive of ``text``, nested ones included, in document order."""
    for kind, item in split_blocks(text):
        if kind == "directive":
            yield item
            yield from walk_directives(item.body)


def solution_blocks(notebook: dict) -> List[str]:
    """The bodies of every ``{solution}`` directive in the notebook's markdown cells."""
    found = []
    for cell in notebook["cells"]:
        if cell["cell_type"] == "markdown":
            found += [d.body for d in walk_directives(_source(cell)) if d.name == "solution"]
    return found


# ------------------------------------------------------------------------------------------------ labels

@dataclass
class Label:
    kind: str  # chapter, section, figure, exercise
    chapter: int
    number: str = ""  # "3.2" for figures and exercises, "3" for chapters
    title: str = ""  # a section's or chapter's title (raw markdown)


@dataclass
class LabelIndex:
    """Every label of the chapters, and the numbers Sphinx gives their figures and exercises."""

    labels: Dict[str, Label] = field(default_factory=dict)
    numbers: Dict[Tuple[str, int, str], str] = field(default_factory=dict)  # (stem, cell, raw) -> "3.2"
    figures: Dict[Tuple[str, str], Tuple[int, Directive]] = field(default_factory=dict)  # (stem, glue name)
    chapter_titles: Dict[int, str] = field(default_factory=dict)

    @classmethod
    def from_notebooks(cls, paths: Sequence[Path]) -> "LabelIndex":
        index = cls()
        for path in paths:
            index.add(path.stem, chapter_number(path), json.loads(path.read_text(encoding="utf-8")))
        return index

    def add(self, stem: str, number: int, notebook: dict) -> None:
        figures = exercises = 0
        for ci, cell in enumerate(notebook["cells"]):
            if cell["cell_type"] != "markdown":
                continue
            text = _source(cell)
            lines = text.split("\n")
            for n, line in enumerate(lines):
                label = LABEL_LINE.match(line)
                if not label:
                    continue
                following = next((x for x in lines[n + 1:] if x.strip() and not LABEL_LINE.match(x)), "")
                heading = HEADING.match(following)
                if heading and len(heading.group("hashes")) == 1:
                    self.labels[label.group("label")] = Label("chapter", number, str(number), heading.group("title"))
                    self.chapter_titles[number] = heading.group("title")
                elif heading:
                    self.labels[label.group("label")] = Label("section", number, "", heading.group("title"))
                else:
                    self.labels[label.group("label")] = Label("target", number)
            try:
                directives = list(walk_directives(text))
            except MarkupError as error:
                raise MarkupError(f"{stem}, cell {ci}: {error}") from None
            for directive in directives:
                if directive.name in ("glue:figure", "figure") and directive.body.strip():
                    figures += 1
                    self.numbers[(stem, ci, directive.raw)] = f"{number}.{figures}"
                    if directive.options.get("name"):
                        self.labels[directive.options["name"]] = Label("figure", number, f"{number}.{figures}")
                    if directive.name == "glue:figure":
                        self.figures[(stem, directive.arg)] = (ci, directive)
                elif directive.name == "exercise" and "nonumber" not in directive.options:
                    exercises += 1
                    self.numbers[(stem, ci, directive.raw)] = f"{number}.{exercises}"
                    if directive.options.get("label"):
                        self.labels[directive.options["label"]] = Label("exercise", number, f"{number}.{exercises}")


# --------------------------------------------------------------------------------------------- glue values

def glue_values(notebook: dict) -> Dict[str, Dict[str, str]]:
    """``{name: {mime type: data}}`` of every value the notebook's outputs glue (myst-nb ``scrapbook``)."""
    values: Dict[str, Dict[str, str]] = {}
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            scrapbook = output.get("metadata", {}).get("scrapbook")
            if not scrapbook or "name" not in scrapbook:
                continue
            prefix = scrapbook.get("mime_prefix", "")
            values[scrapbook["name"]] = {
                (mime[len(prefix):] if prefix and mime.startswith(prefix) else mime):
                    ("".join(data) if isinstance(data, list) else data)
                for mime, data in output.get("data", {}).items()}
    return values


def format_plain_text(text: str, fmt_spec: str) -> str:
    """A glued ``text/plain`` value formatted as ``{glue:text}`name:fmt``` shows it (myst-nb's rule)."""
    try:
        value = literal_eval(text)
    except (SyntaxError, ValueError):
        value = text
    if fmt_spec == "":
        return str(value)
    type_char = fmt_spec[-1]
    if type_char == "s":
        value = str(value)
    elif type_char in "bcdoxX":
        value = int(value)
    elif type_char in "eEfFgGn%":
        value = float(value)
    return format(value, fmt_spec)


# -------------------------------------------------------------------------------------------- the converter

ADMONITIONS = {"note": "Note", "tip": "Tip", "warning": "Warning", "important": "Important",
               "seealso": "See also", "caution": "Caution", "attention": "Attention", "danger": "Danger",
               "error": "Error", "hint": "Hint", "admonition": None}
INLINE = re.compile(r"\{(?P<role>[^{}\s`]+)\}(?P<rt>`+)(?P<content>.+?)(?<!`)(?P=rt)(?!`)"
                    r"|(?P<ct>`+)(?P<code>.+?)(?<!`)(?P=ct)(?!`)"
                    r"|(?P<math>\$\$.+?\$\$|(?<![\\$])\$(?=\S)[^$]*?[^\s\\]\$(?!\$)|(?<![\\$])\$[^\s$]\$(?!\$))", re.S)
SPAN = re.compile(r"\[(?P<text>[^\[\]]*)\]\{(?P<attrs>[^{}]*)\}")
EXPLICIT = re.compile(r"^(?P<text>.*?)\s*<(?P<target>[^<>]+)>$", re.S)
RELATIVE_LINK = re.compile(r"\]\((?!https?:|mailto:|#)(?P<target>[^)\s]+)\)")
LEFTOVER = re.compile(r"\{(?:glue|numref|ref|doc|cite|term|math|eq|index|abbr)(?::\w+)?\}|\{glue|\]\{[.#]"
                      r"|^\s*\([^()\s]+\)=\s*$", re.M)
SPAN_CLASSES = {".paper", ".constant"}
COLAB = "https://colab.research.google.com/github/"


def chapter_number(path: Path) -> int:
    match = re.match(r"(\d+)_", path.name)
    if not match:
        raise ValueError(f"{path.name}: a chapter notebook's name starts with its number, e.g. 03_...")
    return int(match.group(1))


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _lines(text: str) -> List[str]:
    lines = text.split("\n")
    return [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])


def _repository() -> Tuple[str, str]:
    try:
        import yaml

        section = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
        return section["url"].rstrip("/"), section.get("branch", "main")
    except Exception:  # noqa: BLE001 - a hand-made test tree may have no _config.yml
        return "https://github.com/neuronlab/neuronlab", "main"


class Converter:
    """Turns one notebook's MyST markdown into Colab markdown.

    ``mode`` is ``"student"`` (solutions dropped, the chapter's own "References" heading becomes "Further
    reading": the full list is appended) or ``"slides"``. ``cited`` collects the keys cited by what was
    converted, in order; ``dropped_solution`` says whether the last converted cell held a solution.
    """

    def __init__(self, stem: str, number: int, index: LabelIndex, glue: Dict[str, Dict[str, str]],
                 bib: Bibliography, mode: str = "student", root: Path = ROOT):
        self.stem, self.number, self.index, self.glue, self.bib, self.mode = stem, number, index, glue, bib, mode
        self.root = root
        self.cited: List[str] = []
        self.cell_index = -1
        self.dropped_solution = False

    # -- entry points
    def cell(self, text: str, cell_index: int) -> str:
        """The converted markdown of cell ``cell_index``; raises :class:`MarkupError` naming the cell."""
        self.cell_index = cell_index
        self.dropped_solution = False
        try:
            out = self.blocks(text)
        except MarkupError as error:
            raise MarkupError(f"{self.stem}.ipynb, cell {cell_index}: {error}\n--- the cell:\n{text}") from None
        return _tidy(out)

    def blocks(self, text: str) -> str:
        parts = []
        for kind, item in split_blocks(text):
            if kind == "text":
                parts.append(self.prose(item))
            elif kind == "code":
                parts.append(item)
            else:
                parts.append("\n" + self.directive(item) + "\n")
        return "\n".join(parts)

    # -- prose
    def prose(self, text: str) -> str:
        lines = [line for line in text.split("\n") if not LABEL_LINE.match(line)]
        if self.mode == "student":
            lines = ["## Further reading" if re.fullmatch(r"##\s+References\s*", line) else line for line in lines]
        paragraphs = re.split(r"(\n[ \t]*\n)", "\n".join(lines))
        # the book's reference page is not in the notebook: the student edition lists the entries at its end
        paragraphs = ["" if re.search(r"\]\([^)\s]*references\.md\)", p) else p for p in paragraphs]
        return self.inline("".join(paragraphs))

    def inline(self, text: str) -> str:
        out, pos = [], 0
        for match in INLINE.finditer(text):
            out.append(self.plain(text[pos:match.start()]))
            if match.group("role"):
                out.append(self.role(match.group("role"), match.group("content"), match.group(0)))
            else:
                out.append(match.group(0))
            pos = match.end()
        out.append(self.plain(text[pos:]))
        return "".join(out)

    def plain(self, text: str) -> str:
        """Text outside code spans: ``[x]{.paper}`` spans and relative links; then no MyST may be left."""
        def span(match):
            attrs = set(match.group("attrs").split())
            if not attrs or not attrs <= SPAN_CLASSES:
                raise MarkupError(f"unknown span attributes: {match.group(0)!r}")
            return match.group("text")

        text = SPAN.sub(span, text)
        text = RELATIVE_LINK.sub(lambda m: "](" + self.link(m.group("target")) + ")", text)
        leftover = LEFTOVER.search(text)
        if leftover or re.search(r"\{[^{}\s`]+\}`", text):
            bad = leftover.group(0) if leftover else re.search(r"\{[^{}\s`]+\}`", text).group(0)
            raise MarkupError(f"unconverted MyST markup {bad!r}")
        return text

    def link(self, target: str) -> str:
        """A relative link of the chapter as an absolute one: a chapter to its student edition in Colab,
        any other file to its page on GitHub."""
        url, branch = _repository()
        path, _, anchor = target.partition("#")
        resolved = (NOTEBOOKS / path).resolve()
        try:
            relative = resolved.relative_to(ROOT).as_posix()
        except ValueError:
            raise MarkupError(f"a link outside the repository: {target!r}") from None
        if re.fullmatch(r"notebooks/\d\d_[^/]+\.ipynb", relative):
            return f"{COLAB}{url.split('github.com/')[1]}/blob/{branch}/notebooks/student/{resolved.name}"
        return f"{url}/blob/{branch}/{relative}" + (f"#{anchor}" if anchor else "")

    # -- roles
    def role(self, name: str, content: str, raw: str) -> str:
        try:
            return self._role(name, content)
        except MarkupError as error:
            raise MarkupError(f"{error} (in {raw!r})") from None

    def _role(self, name: str, content: str) -> str:
        explicit = EXPLICIT.match(content)
        text, target = (explicit.group("text"), explicit.group("target")) if explicit else ("", content.strip())
        if name == "numref":
            return self.numref(target, text)
        if name == "ref":
            return self.inline(text) if text else self.reference(target, numbered=False)
        if name == "doc":
            return self.inline(text) if text else self.doc_title(target)
        if name in ("cite", "cite:p", "cite:t"):
            keys = [k.strip() for k in content.split(",") if k.strip()]
            for key in keys:
                self.bib.entry(key)
                if key not in self.cited:
                    self.cited.append(key)
            return self.bib.textual(keys) if name == "cite:t" else self.bib.parenthetical(keys)
        if name in ("glue:text", "glue"):
            key, _, fmt = content.partition(":") if name == "glue:text" else (content, "", "")
            return format_plain_text(self.glued(key.strip(), "text/plain"), fmt)
        if name == "glue:md":
            key = content.split(":")[0].strip()
            data = self.glue.get(key, {})
            return data.get("text/markdown") or format_plain_text(self.glued(key, "text/plain"), "")
        if name in ("term", "index"):
            return text or content
        if name == "abbr":
            return content
        if name == "math":
            return f"${content}$"
        if name in ("sub", "sup"):
            return f"<{name}>{content}</{name}>"
        raise MarkupError(f"unknown role {{{name}}}")

    def glued(self, key: str, mime: str) -> str:
        data = self.glue.get(key)
        if data is None or mime not in data:
            raise MarkupError(f"the glued value {key!r} is not in the notebook's outputs ({mime}): execute "
                              "the chapter so that its outputs carry it")
        return data[mime]

    def label(self, target: str) -> Label:
        label = self.index.labels.get(target)
        if label is None or label.kind == "target":
            raise MarkupError(f"unknown label {target!r}")
        return label

    def numref(self, target: str, template: str) -> str:
        label = self.label(target)
        if label.kind == "section":
            title = self.section_title(label)
            return template.replace("%s", title).replace("{number}", title) if template else f"Section {title}"
        name = {"chapter": "Chapter", "figure": "Figure", "exercise": "Exercise"}[label.kind]
        if not template:
            return f"{name} {label.number}"
        return template.replace("%s", label.number).replace("{number}", label.number).replace(
            "{name}", self.inline(label.title))

    def reference(self, target: str, numbered: bool) -> str:
        label = self.label(target)
        if label.kind == "section":
            return self.section_title(label)
        if label.kind == "chapter":
            return self.inline(label.title)
        return self.numref(target, "")

    def section_title(self, label: Label) -> str:
        title = f"“{self.inline(label.title)}”"
        return title if label.chapter == self.number else f"{title} of Chapter {label.chapter}"

    def doc_title(self, target: str) -> str:
        base = (NOTEBOOKS / target).resolve()
        for path in (base, base.with_suffix(".md"), base.with_suffix(".ipynb")):
            if path.is_file():
                if re.fullmatch(r"\d\d_.*\.ipynb", path.name) and path.parent == NOTEBOOKS:
                    return f"Chapter {chapter_number(path)}"
                text = path.read_text(encoding="utf-8")
                if path.suffix == ".ipynb":
                    text = "\n".join(_source(c) for c in json.loads(text)["cells"] if c["cell_type"] == "markdown")
                heading = re.search(r"^#\s+(.+)$", text, re.M)
                if heading:
                    return heading.group(1).strip()
        raise MarkupError(f"{{doc}} target {target!r} not found")

    # -- directives
    def directive(self, d: Directive) -> str:
        try:
            return self._directive(d)
        except MarkupError as error:
            if "--- in" in str(error):
                raise
            raise MarkupError(f"{error}\n--- in the directive:\n{d.raw}") from None

    def _directive(self, d: Directive) -> str:
        name = d.name
        if name == "solution":
            self.dropped_solution = True
            if self.mode in ("student", "slides"):
                return ""
        if name == "exercise":
            number = self.index.numbers.get((self.stem, self.cell_index, d.raw))
            head = f"Exercise {number}" if number else "Exercise"
            title = self.inline(d.arg) if d.arg else ""
            return f"### {head}" + (f": {title}" if title else "") + "\n\n" + self.blocks(d.body)
        if name in ("glue:figure", "figure"):
            if name == "figure":
                raise MarkupError("a {figure} directive (an image file) is not converted: glue the figure")
            number = self.index.numbers.get((self.stem, self.cell_index, d.raw))
            caption = self.blocks(d.body).strip()
            return f"**Figure {number}.** {caption}" if caption and number else caption
        if name == "glue":
            data = self.glue.get(d.arg)
            if data is None:
                raise MarkupError(f"the glued value {d.arg!r} is not in the notebook's outputs")
            if "text/markdown" in data:
                return data["text/markdown"]
            if "text/html" in data:
                return data["text/html"]
            return "```text\n" + format_plain_text(self.glued(d.arg, "text/plain"), "") + "\n```"
        if name in ("math", "math:"):
            content = "\n".join(x for x in (d.arg, d.body) if x).strip()
            return f"$$\n{content}\n$$"
        if name in ("code", "code-block", "sourcecode"):
            return f"```{d.arg}\n{d.body}\n```"
        if name == "dropdown":
            return self.details(self.inline(d.arg) if d.arg else "Details", d.body, "open" in d.options)
        if name in ADMONITIONS:
            title = ADMONITIONS[name]
            body = d.body
            if title is None:  # {admonition} Title
                if not d.arg:
                    raise MarkupError("an {admonition} needs a title")
                title = self.inline(d.arg)
            elif d.arg:  # a {note} has no title: its first line is content
                body = d.arg + ("\n" + body if body else "")
            if "dropdown" in d.options.get("class", "").split():
                return self.details(title, body, "open" in d.options)
            return self.quote(title, body)
        raise MarkupError(f"unknown directive {{{name}}}")

    def quote(self, title: str, body: str) -> str:
        content = self.blocks(body).strip("\n")
        first = content.split("\n", 1)[0]
        if content and not re.match(r"^(\s*[-*+]\s|\s*\d+\.\s|```|~~~|\$\$|#|>|\|)", first):
            content = f"**{title}.** {content}"
        else:
            content = f"**{title}.**\n\n{content}" if content else f"**{title}.**"
        return "\n".join(f"> {line}" if line.strip() else ">" for line in content.split("\n"))

    def details(self, title: str, body: str, is_open: bool = False) -> str:
        summary = re.sub(r"\*\*|__", "", title)
        return (f"<details{' open' if is_open else ''}><summary>{summary}</summary>\n\n"
                f"{self.blocks(body).strip()}\n\n</details>")


def _tidy(text: str) -> str:
    """At most one blank line between blocks (code fences untouched), no blank lines at either end."""
    out: List[str] = []
    fence: Optional[str] = None
    for line in text.split("\n"):
        stripped = line.strip()
        if fence is None:
            match = re.match(r"^ {0,3}(`{3,}|~{3,})", line)
            if match:
                fence = match.group(1)
            elif not stripped and out and not out[-1].strip():
                continue
            out.append(line.rstrip() if not stripped else line)
        else:
            if re.match(r"^ {0,3}" + re.escape(fence[0]) + "{" + str(len(fence)) + r",}\s*$", line):
                fence = None
            out.append(line)
    return "\n".join(out).strip("\n")


# ------------------------------------------------------------------------------------------ student edition

BADGE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\((?P<url>[^)\s]+)\)[^\n]*")
STUDENT_BADGE = re.compile(r"\[!\[Open the student edition in Colab\]\([^)]*\)\]\((?P<url>[^)\s]+)\)[^\n]*")
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"


def chapters(root: Path = NOTEBOOKS) -> List[Path]:
    return sorted(root.glob("[0-9][0-9]_*.ipynb"))


def _student_header(text: str, stem: str) -> str:
    """The first cell keeps only the student badge; the instructor edition is linked as text."""
    full = BADGE.search(text)
    if not full:
        raise MarkupError(f"{stem}.ipynb, cell 0: no 'Open In Colab' badge to derive the student link from")
    url = full.group("url")
    student = STUDENT_BADGE.search(text)
    student_line = student.group(0) if student else (
        f"[![Open the student edition in Colab]({BADGE_IMAGE})]({url.replace('/notebooks/', '/notebooks/student/')}) "
        "student edition: exercises to complete, no solutions")
    text = STUDENT_BADGE.sub("", text)
    text = BADGE.sub(lambda m: f"{student_line}\n\nInstructor edition: <{url}>", text, count=1)
    return _tidy(text)


def _names(source: str) -> Tuple[Set[str], Set[str]]:
    """(names a cell defines at its top level, names it reads) of Python source; empty if it won't parse."""
    source = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.split("\n"))
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set(), set()
    defined: Set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defined |= {(a.asname or a.name).split(".")[0] for a in node.names}
        else:
            defined |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return defined, used


def student_notebook(path: Path, index: LabelIndex, bib: Bibliography) -> dict:
    """The student edition of the chapter notebook at ``path`` (a notebook as a JSON dict)."""
    from neuronlab.exercises._checks import skeleton

    notebook = json.loads(path.read_text(encoding="utf-8"))
    stem, number = path.stem, chapter_number(path)
    converter = Converter(stem, number, index, glue_values(notebook), bib, mode="student")
    cells: List[dict] = []
    first_markdown, first_code = True, True
    dropped: List[Tuple[int, Set[str]]] = []  # (cell, names) that the student edition lacks or stubs
    kept_defined: Set[str] = set()
    for ci, cell in enumerate(notebook["cells"]):
        tags = cell.get("metadata", {}).get("tags", [])
        source = _source(cell)
        new: Dict[str, object] = {"cell_type": cell["cell_type"], "id": cell.get("id", f"cell-{ci}"), "metadata": {}}
        if cell["cell_type"] == "markdown":
            text = converter.cell(source, ci)
            if first_markdown:
                text, first_markdown = _student_header(text, stem), False
            if not text.strip():
                continue  # a solution cell, or a cell that held only a label
            new["source"] = _lines(text)
        elif cell["cell_type"] == "code":
            defined, used = _names(source)
            if "solution-run" in tags:
                dropped.append((ci, defined))
                continue
            if "exercise-check" not in tags and "exercise-solution" not in tags:
                for cj, names in dropped:
                    missing = (names & used) - kept_defined - defined
                    if missing:
                        raise MarkupError(
                            f"{stem}.ipynb, cell {ci} uses {sorted(missing)}, which only cell {cj} defines: a "
                            "solution, dropped or turned into a skeleton in the student edition")
            if "exercise-solution" in tags:
                functions = {n for n in defined if _is_function(source, n)}
                source, new_tags = skeleton(source).rstrip("\n"), ["exercise-skeleton"]
                new["id"] = str(new["id"]).replace("solution", "skeleton")
                dropped.append((ci, functions))
                kept_defined |= defined - functions
            elif "exercise-check" in tags:
                new_tags = ["exercise-check"]
                kept_defined |= defined
            else:
                new_tags = ["parameters"] if first_code and "parameters" in tags else []
                kept_defined |= defined
            first_code = False
            if new_tags:
                new["metadata"] = {"tags": new_tags}
            new.update(source=_lines(source), outputs=[], execution_count=None)
        else:
            continue  # raw cells are the book's business
        cells.append(new)
    if converter.cited:
        entries = sorted(converter.cited, key=bib.order.get)
        cells.append({"cell_type": "markdown", "id": "references", "metadata": {},
                      "source": _lines("## References\n\n" + "\n".join(f"* {bib.reference(k)}" for k in entries))})
    return {"cells": cells,
            "metadata": {"colab": {"provenance": [], "toc_visible": True},
                         "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                         "language_info": {"name": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def _is_function(source: str, name: str) -> bool:
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name
               for n in ast.parse(source).body)


def _dumps(notebook: dict) -> str:
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"


def student_editions(notebooks: Optional[Sequence[Path]] = None) -> Dict[Path, str]:
    """``{student path: file text}`` for ``notebooks`` (default: every chapter); every chapter is
    label-indexed for the cross-references."""
    paths = list(notebooks) if notebooks is not None else chapters()
    index = LabelIndex.from_notebooks(sorted(set(chapters()) | set(paths)))
    bib = Bibliography.load()
    return {STUDENT / path.name: _dumps(student_notebook(path, index, bib)) for path in paths}


def stale_student_editions() -> List[str]:
    """The student files that differ from what the chapters generate now, or that no chapter generates."""
    expected = student_editions()
    stale = [path.name for path, text in expected.items()
             if not path.is_file() or path.read_text(encoding="utf-8") != text]
    stale += [path.name for path in sorted(STUDENT.glob("*.ipynb")) if path not in expected]
    return sorted(stale)


def write_student_editions(names: Sequence[str] = ()) -> List[Path]:
    """Write the student editions (of the chapters whose file names start with one of ``names``, or of
    all, removing student files no chapter makes); returns the files written or removed."""
    STUDENT.mkdir(parents=True, exist_ok=True)
    written = []
    selected = [p for p in chapters() if not names or any(p.name.startswith(n) for n in names)]
    if names and not selected:
        raise MarkupError(f"no chapter notebook starts with {list(names)}")
    editions = student_editions(selected)
    for path, text in editions.items():
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            written.append(path)
    for path in sorted(STUDENT.glob("*.ipynb")):
        if not names and path not in editions:
            path.unlink()
            written.append(path)
    return written


# --------------------------------------------------------------------------------------------------- slides

GLUE_FIGURE_CALL = re.compile(r"glue_figure\(\s*[\"'](?P<name>[^\"']+)[\"']")


def slides_notebook(path: Path, index: LabelIndex, bib: Bibliography) -> dict:
    """The deck of the (executed) chapter notebook at ``path``: its cells tagged ``slide``, one slide each."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    stem, number = path.stem, chapter_number(path)
    values = glue_values(notebook)
    committed = NOTEBOOKS / path.name
    if committed.resolve() != path.resolve() and committed.is_file():
        # myst-nb's executed copies keep the glued figures but not every glued number or phrase: those
        # come from the committed run (the one the student editions quote), the executed copy wins
        values = {**glue_values(json.loads(committed.read_text(encoding="utf-8"))), **values}
    converter = Converter(stem, number, index, values, bib, mode="slides")
    cells: List[dict] = []
    for ci, cell in enumerate(notebook["cells"]):
        if "slide" not in cell.get("metadata", {}).get("tags", []):
            continue
        source = _source(cell)
        slide = {"slideshow": {"slide_type": "slide"}}
        if cell["cell_type"] == "markdown":
            text = converter.cell(source, ci)
            text = _tidy(STUDENT_BADGE.sub("", BADGE.sub("", text)))
            cells.append({"cell_type": "markdown", "id": f"slide-{ci}", "metadata": slide, "source": _lines(text)})
            continue
        if cell["cell_type"] != "code":
            continue
        is_figure = "glue_figure(" in source
        figures: List[str] = []  # the glued figures' names: their captions go under them
        outputs = []
        for output in cell.get("outputs", []):
            output = copy.deepcopy(output)
            scrapbook = output.get("metadata", {}).pop("scrapbook", None)
            if scrapbook:
                prefix = scrapbook.get("mime_prefix", "")
                output["data"] = {(k[len(prefix):] if prefix and k.startswith(prefix) else k): v
                                  for k, v in output["data"].items()}
                if not any(k.startswith("image/") for k in output["data"]):
                    continue  # a glued number or phrase: shown in the text, not under the code
                figures.append(scrapbook["name"])
            if is_figure and not any(k.startswith("image/") for k in output.get("data", {})):
                continue  # a figure slide shows the figure only
            outputs.append(output)
        if is_figure and not figures:  # outputs without glue metadata: the names in the source
            figures = GLUE_FIGURE_CALL.findall(source)
        new = {"cell_type": "code", "id": f"slide-{ci}", "execution_count": cell.get("execution_count"),
               "metadata": dict(slide, tags=["remove-input"]) if is_figure else slide,
               "outputs": outputs, "source": _lines(source)}
        cells.append(new)
        for name in figures:  # the caption under the figure, on the same slide
            found = index.figures.get((stem, name))
            if found:
                fig_cell, directive = found
                converter.cell_index = fig_cell
                caption = _tidy(converter.directive(directive))
                cells.append({"cell_type": "markdown", "id": f"caption-{ci}-{name}"[:64],
                              "metadata": {"slideshow": {"slide_type": "-"}}, "source": _lines(caption)})
    if not cells:
        raise MarkupError(f"{path.name} has no cells tagged 'slide': tag the deck's cells (convention E)")
    kernelspec = notebook.get("metadata", {}).get("kernelspec") or {
        "display_name": "Python 3", "language": "python", "name": "python3"}
    return {"cells": cells, "metadata": {"kernelspec": kernelspec, "language_info": {"name": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def build_slides(notebooks: Sequence[Path], out: Path, index: Optional[LabelIndex] = None,
                 bib: Optional[Bibliography] = None) -> List[Path]:
    """Write ``out/<stem>.slides.html`` for every notebook (reveal.js via ``jupyter nbconvert --to slides``)."""
    index = index or LabelIndex.from_notebooks(notebooks)
    bib = bib or Bibliography.load()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        decks = []
        for path in notebooks:
            deck = Path(tmp) / path.name
            deck.write_text(_dumps(slides_notebook(path, index, bib)), encoding="utf-8")
            decks.append(deck)
        command = [sys.executable, "-m", "nbconvert", "--to", "slides", "--no-prompt",
                   "--SlidesExporter.reveal_scroll=True", "--SlidesExporter.reveal_number=c/t",
                   "--TagRemovePreprocessor.enabled=True", "--TagRemovePreprocessor.remove_input_tags=remove-input",
                   "--output-dir", str(out), *map(str, decks)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"jupyter nbconvert --to slides failed:\n{result.stderr[-3000:]}")
    return [out / f"{path.stem}.slides.html" for path in notebooks]


# ------------------------------------------------------------------------------------------- command line

def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    student = commands.add_parser("student", help="write notebooks/student/ from the chapters")
    student.add_argument("--check", action="store_true", help="only report stale student editions (exit 1)")
    student.add_argument("chapters", nargs="*", help="only these chapters, e.g. 01 03 (default: all)")
    slides = commands.add_parser("slides", help="a reveal.js deck per chapter from its cells tagged 'slide'")
    slides.add_argument("--out", type=Path, required=True, help="folder for <stem>.slides.html")
    slides.add_argument("--executed", type=Path, help="folder of the executed chapter notebooks "
                        "(default: _build/jupyter_execute/notebooks when present, else notebooks/)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        if args.command == "student":
            if args.check:
                stale = stale_student_editions()
                for name in stale:
                    print(f"notebooks/student/{name} is stale: run python scripts/editions.py student")
                return 1 if stale else 0
            written = write_student_editions(args.chapters)
            for path in written:
                print(f"wrote {path.relative_to(ROOT)}" if path.exists() else f"removed {path.relative_to(ROOT)}")
            print(f"student editions up to date in notebooks/student/ ({time.perf_counter() - start:.1f} s)")
            return 0
        sources = []
        for chapter in chapters():
            executed = (args.executed or EXECUTED) / chapter.name
            if executed.is_file():
                sources.append(executed)
            elif args.executed:
                parser.exit(2, f"{parser.prog}: error: {executed} does not exist\n")
            else:
                sources.append(chapter)
        for deck in build_slides(sources, args.out, index=LabelIndex.from_notebooks(sources)):
            print(f"wrote {deck}")
        print(f"slides built from {sources[0].parent} in {time.perf_counter() - start:.1f} s")
        return 0
    except MarkupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
