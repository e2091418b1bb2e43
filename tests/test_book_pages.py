"""The chapters as pages of a book: the prose quotes no number that the run did not glue, every figure is
captioned, numbered and referred to, cross-references are labels, and the page hides its plumbing.

These tests read the committed notebooks (source and outputs); the book build (`-W`) then checks that
every label and glued name resolves.
"""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
#: Longest code or printed line that fits the page's code column at desktop width without clipping.
MAX_LINE = 79

GLUE_ROLE = re.compile(r"\{glue(?::(?:text|md|any))?\}`([^`:]+)(?::[^`]*)?`")
GLUE_FIGURE = re.compile(r"^[`:]{3,}\{glue:figure\}\s+(\S+)", re.M)
MARKED = re.compile(r"\[[^\]]*\]\{\.(?:paper|constant)\}")  # [98.5]{.paper}, [0.01]{.constant}
ROLE = re.compile(r"\{[a-z:]+\}`[^`]*`")
RESULT_LIKE = re.compile(r"(?<![\w.])(\d+\.\d+|\d+(?:\.\d+)?\s?%|\d+ of \d+\b)")
TYPED_REFERENCE = re.compile(r"\b(Section|Sections|Chapter|Chapters|Exercise|Exercises|Figure|Fig\.)\s+\d")


def _cells(path, kind):
    nb = json.loads(path.read_text())
    return [c for c in nb["cells"] if c["cell_type"] == kind]


def _source(cell):
    return "".join(cell["source"])


def _tags(cell):
    return set(cell.get("metadata", {}).get("tags", []))


def _prose(markdown: str) -> str:
    """The words a reader sees as text: no code, math, roles, directive options, links or marked constants."""
    text = re.sub(r"^(```|~~~).*?^\1", "", markdown, flags=re.S | re.M)   # fenced code
    text = re.sub(r"^[`:]{3,}\{glue:figure\}.*$", "", text, flags=re.M)  # directive heads name a glue
    text = re.sub(r"^\s*:[a-z-]+:.*$", "", text, flags=re.M)            # directive options
    text = re.sub(r"\$\$.*?\$\$", "", text, flags=re.S)
    text = re.sub(r"\$[^$]+\$", "", text)
    text = MARKED.sub("", text)
    text = ROLE.sub("", text)
    text = re.sub(r"`[^`]*`", "", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)                               # link targets
    text = re.sub(r"<[^>]+>", "", text)                                     # html tags, badge images
    return text


def _glued_names(path):
    names = {}
    for cell in _cells(path, "code"):
        for output in cell.get("outputs", []):
            scrap = output.get("metadata", {}).get("scrapbook")
            if scrap:
                names[scrap["name"]] = output.get("data", {})
    return names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_prose_quotes_no_unglued_result_number(path):
    offending = []
    for cell in _cells(path, "markdown"):
        for line in _prose(_source(cell)).splitlines():
            offending += [f"{m.group(0)!r} in: {line.strip()[:100]}" for m in RESULT_LIKE.finditer(line)]
    assert not offending, ("numbers typed into the prose; glue them from the run with neuronlab.book.glue "
                           "and {glue:text}, or mark a paper's number as [..]{.paper} and a fixed setting "
                           "as [..]{.constant}:\n" + "\n".join(offending))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_glued_name_in_the_prose_exists_in_the_outputs(path):
    glued = _glued_names(path)
    used = set()
    for cell in _cells(path, "markdown"):
        used |= set(GLUE_ROLE.findall(_source(cell))) | set(GLUE_FIGURE.findall(_source(cell)))
    assert used - set(glued) == set(), f"prose uses names no cell glued: {sorted(used - set(glued))}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_figure_is_glued_captioned_numbered_and_referred_to(path):
    glued = _glued_names(path)
    for cell in _cells(path, "code"):
        for output in cell.get("outputs", []):
            if any(k.startswith("image/") for k in output.get("data", {})):
                assert "scrapbook" in output.get("metadata", {}), (
                    "a figure drawn outside neuronlab.book.glue_figure has no caption or number:\n"
                    + _source(cell)[:200])
                assert {"remove-output", "hide-input"} <= _tags(cell), (
                    "a figure cell is tagged remove-output (the figure appears in its captioned place) and "
                    "hide-input (plotting code stays one click away):\n" + _source(cell)[:200])
    figures = {n for n, data in glued.items() if any(k.startswith("image/") for k in data)}
    markdown = "\n".join(_source(c) for c in _cells(path, "markdown"))
    placed = {}
    for match in re.finditer(r"^([`:]{3,})\{glue:figure\}\s+(\S+)\n(.*?)^\1\s*$", markdown, re.S | re.M):
        body = match.group(3)
        label = re.search(r"^:name:\s*(\S+)", body, re.M)
        caption = re.sub(r"^:[a-z-]+:.*$", "", body, flags=re.M).strip()
        assert label and caption, f"{{glue:figure}} {match.group(2)} needs a :name: label and a caption"
        placed[match.group(2)] = label.group(1)
    assert figures - set(placed) == set(), f"figures glued but never placed on the page: {figures - set(placed)}"
    for name, label in placed.items():
        assert re.search(r"\{numref\}`(?:[^`<]*<)?" + re.escape(label) + r">?`", markdown), (
            f"figure {label} is never referred to by {{numref}}`{label}`")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_cross_references_are_labels_not_typed_numbers(path):
    for cell in _cells(path, "markdown"):
        source = _source(cell)
        for line in source.splitlines():
            assert not re.match(r"#+\s+\d", line), f"heading with a typed number (Sphinx numbers them): {line}"
        typed = TYPED_REFERENCE.findall(_prose(source))
        assert not typed, (f"typed cross-reference(s) {typed} in: {source[:160]!r}; use {{numref}}/{{ref}}/"
                           "{doc} with a label")
    labels = re.findall(r":label:\s*(\S+)", "\n".join(_source(c) for c in _cells(path, "markdown")))
    chapter = path.stem[:2]
    assert all(label.startswith(f"ex-ch{chapter}-") for label in labels), labels


def _code_blocks(markdown: str):
    """The contents of the fenced code blocks of ``markdown``, also those inside directives (a
    ````{solution}```` fence holds markdown that may hold code)."""
    lines, i = markdown.splitlines(), 0
    while i < len(lines):
        opener = re.match(r"^\s*(`{3,}|~{3,})(.*)$", lines[i])
        if not opener:
            i += 1
            continue
        fence, info = opener.group(1), opener.group(2).strip()
        end = next((j for j in range(i + 1, len(lines))
                    if re.match(rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$", lines[j])), len(lines))
        body = "\n".join(lines[i + 1:end])
        if info.startswith("{"):
            yield from _code_blocks(body)
        else:
            yield body
        i = end + 1


def test_code_blocks_are_found_inside_directives():
    text = "````{solution} ex\nText\n```python\nx = 1\n```\n````\n```\ny\n```"
    assert list(_code_blocks(text)) == ["x = 1", "y"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_code_in_the_prose_fits_the_page(path):
    for cell in _cells(path, "markdown"):
        for block in _code_blocks(_source(cell)):
            long = [line for line in block.splitlines() if len(line) > MAX_LINE]
            assert not long, f"code lines longer than {MAX_LINE} characters are clipped on the page: {long}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_plumbing_is_hidden_and_lines_fit_the_page(path):
    code = _cells(path, "code")
    assert "hide-input" in _tags(code[0]) and "hide-input" in _tags(code[1]), "the setup cells are hide-input"
    for cell in code:
        source = _source(cell)
        assert "# NBVAL_" not in source, "nbval markers belong in the cell's tags (nbval-check-output, ...)"
        long = [line for line in source.splitlines() if len(line) > MAX_LINE]
        assert not long, f"code lines longer than {MAX_LINE} characters are clipped on the page: {long}"
        if "remove-output" in _tags(cell):
            continue
        for output in cell.get("outputs", []):
            text = "".join(output.get("text", "")) or "".join(output.get("data", {}).get("text/plain", ""))
            if "text/html" in output.get("data", {}):
                continue  # tables are rendered as HTML, which wraps
            long = [line for line in text.splitlines() if len(line) > MAX_LINE]
            assert not long, f"printed lines longer than {MAX_LINE} characters are clipped: {long[:3]}"
