"""The course guide is a plan a teacher can follow: five 90-minute sessions, each with a minute-by-minute
block table (recap, board, live run with a checkpoint, pair exercise, wrap-up) and a link to its slides;
homework sheets with a task, a deliverable, a compute budget and a rubric that adds up; final projects
with rubrics; and every label the two pages cite exists in the chapters.

These tests read ``book/course_guide.md``, ``book/homework.md`` and the chapter notebooks; the book build
(``-W``) then checks that the references resolve.
"""

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "book" / "course_guide.md"
HOMEWORK = ROOT / "book" / "homework.md"
PAGES = [GUIDE, HOMEWORK]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SESSIONS = range(1, 6)
SESSION_MINUTES = 90

#: The kinds of block a session table may use; the first five must all appear in every session.
REQUIRED_BLOCKS = ("recap", "board", "live run", "pair exercise", "wrap-up")
BLOCKS = REQUIRED_BLOCKS + ("stored runs",)
#: The old homework items whose answers the chapters work out (issue 14): a sheet must not be built on them.
ANSWERED_IN_THE_BOOK = ("ch02-ablation", "ch03-which-layer", "ch04-noise")

NUMREF = re.compile(r"\{numref\}`([^`]*)`")
REF = re.compile(r"\{ref\}`([^`]*)`")
DOC = re.compile(r"\{doc\}`([^`]*)`")
MINUTES = re.compile(r"^(\d+)\s*[–-]\s*(\d+)$")
CHECKPOINT = re.compile(r"\*\*Checkpoint:\*\*\s+by minute (\d+) every student's Colab has finished (.+)")
RESULT_LIKE = re.compile(r"(?<![\w.])(\d+\.\d+|\d+(?:\.\d+)?\s?%|\d+ of \d+\b)")
TYPED_REFERENCE = re.compile(r"\b(Section|Sections|Chapter|Chapters|Exercise|Exercises|Figure|Fig\.)\s+\d")


# ------------------------------------------------------------------------------------------ reading

def _target(role_text: str) -> str:
    """The label of a role's text: ``Chapter %s <ch01>`` -> ``ch01``, ``ch01-lsuv`` -> ``ch01-lsuv``."""
    match = re.search(r"<([^<>]+)>\s*$", role_text)
    return (match.group(1) if match else role_text).strip()


def _notebook_labels():
    """Section labels ``(chNN-...)=``, exercise labels ``:label: ex-...`` and figure names ``:name: fig-...``
    of the chapter notebooks."""
    sections, exercises, figures = set(), set(), set()
    for path in NOTEBOOKS:
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] != "markdown":
                continue
            source = "".join(cell["source"])
            sections |= set(re.findall(r"^\((ch\d\d[\w-]*)\)=\s*$", source, re.M))
            exercises |= set(re.findall(r"^:label:\s*(ex-\S+)\s*$", source, re.M))
            figures |= set(re.findall(r"^:name:\s*(fig-\S+)\s*$", source, re.M))
    return sections, exercises, figures


SECTIONS, EXERCISES, FIGURES = _notebook_labels()


def _page_labels(text: str):
    return set(re.findall(r"^\(([\w-]+)\)=\s*$", text, re.M))


def _section(text: str, heading: str, level: int) -> str:
    """The text under the heading that starts with ``heading`` (at ``level`` #'s), up to the next heading of
    the same or a higher level."""
    hashes = "#" * level
    start = re.search(rf"^{hashes} {re.escape(heading)}.*$", text, re.M)
    assert start, f"no heading {hashes} {heading}..."
    rest = text[start.end():]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.M)
    return rest[:end.start()] if end else rest


def _table(text: str, header: str):
    """The body rows of the markdown table whose header row starts with ``header``, as lists of cells."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(header)]
    assert len(starts) == 1, f"expected one table with the header {header!r}, found {len(starts)}"
    rows = []
    for line in lines[starts[0] + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def _prose(markdown: str) -> str:
    """The words a reader sees as text: no code, math, roles, directive options, links or HTML tags."""
    text = re.sub(r"^(```|~~~).*?^\1", "", markdown, flags=re.S | re.M)
    text = re.sub(r"\$\$.*?\$\$", "", text, flags=re.S)
    text = re.sub(r"\$[^$]+\$", "", text)
    text = re.sub(r"\{[a-z:]+\}`[^`]*`", "", text)
    text = re.sub(r"`[^`]*`", "", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    text = re.sub(r"<[^>]+>", "", text)
    return text


def _rubric_points(text: str, total: int):
    """Check the rubric table of ``text``: criteria with integer points that add up to its bold total row,
    which must be ``total``; return the criteria."""
    rows = _table(text, "| Criterion | Points |")
    assert rows and all(len(row) == 2 for row in rows), f"a rubric row is not 'criterion | points': {rows}"
    *criteria, last = rows
    assert last[0] == "**Total**", f"the rubric's last row is the total, got {last}"
    stated = int(last[1].strip("*"))
    points = [int(row[1]) for row in criteria]
    assert all(p > 0 for p in points) and len(criteria) >= 3, criteria
    assert sum(points) == stated == total, (f"rubric points {points} add up to {sum(points)}, the total row "
                                            f"says {stated}, expected {total}")
    return criteria


def _stem(session: int) -> str:
    matches = [p.stem for p in NOTEBOOKS if p.stem.startswith(f"{session:02d}_")]
    assert len(matches) == 1, f"one notebook per chapter expected for session {session}: {matches}"
    return matches[0]


GUIDE_TEXT = GUIDE.read_text()
HOMEWORK_TEXT = HOMEWORK.read_text()


def _session(session: int) -> str:
    return _section(GUIDE_TEXT, f"Session {session}:", 2)


def _blocks(session: int):
    """``[(start, end, kind, what happens)]`` of the session's block table."""
    blocks = []
    for row in _table(_session(session), "| Minutes | Block | What happens |"):
        assert len(row) == 3, f"session {session}: a block row needs minutes, block and text: {row}"
        minutes = MINUTES.match(row[0])
        assert minutes, f"session {session}: minutes are written 'start–end', got {row[0]!r}"
        blocks.append((int(minutes.group(1)), int(minutes.group(2)), row[1].lower(), row[2]))
    return blocks


def _homework(number: int) -> str:
    return _section(HOMEWORK_TEXT, f"Homework {number}:", 3)


def _projects():
    projects = _section(HOMEWORK_TEXT, "Final projects", 2)
    names = re.findall(r"^### (Project [A-Z]): ", projects, re.M)
    return projects, names


# ------------------------------------------------------------------------------------------ sessions

def test_the_guide_has_five_sessions_in_order():
    found = [int(n) for n in re.findall(r"^## Session (\d+):", GUIDE_TEXT, re.M)]
    assert found == list(SESSIONS), found


@pytest.mark.parametrize("session", SESSIONS)
def test_blocks_follow_each_other_and_fill_ninety_minutes(session):
    blocks = _blocks(session)
    assert blocks[0][0] == 0, f"session {session} starts at minute {blocks[0][0]}"
    for (_, end, *_), (start, *_) in zip(blocks, blocks[1:]):
        assert start == end, f"session {session}: a block starts at {start} after one that ends at {end}"
    lengths = [end - start for start, end, *_ in blocks]
    assert all(length > 0 for length in lengths), lengths
    assert sum(lengths) == SESSION_MINUTES == blocks[-1][1], f"session {session}: {lengths} sum to {sum(lengths)}"


@pytest.mark.parametrize("session", SESSIONS)
def test_every_session_has_every_kind_of_block(session):
    kinds = [kind for _, _, kind, _ in _blocks(session)]
    assert set(kinds) <= set(BLOCKS), f"session {session}: unknown block kinds {set(kinds) - set(BLOCKS)}"
    assert set(REQUIRED_BLOCKS) <= set(kinds), f"session {session} lacks {set(REQUIRED_BLOCKS) - set(kinds)}"
    assert kinds[0] == "recap" and kinds[-1] == "wrap-up", kinds


@pytest.mark.parametrize("session", SESSIONS)
def test_every_live_run_ends_at_a_checkpoint_inside_it_that_names_a_cell(session):
    chapter = f"ch{session:02d}"
    for start, end, kind, text in _blocks(session):
        if kind != "live run":
            continue
        checkpoint = CHECKPOINT.search(text)
        assert checkpoint, f"session {session}, live run {start}–{end}: no '**Checkpoint:** by minute X ...'"
        assert start < int(checkpoint.group(1)) <= end, (
            f"session {session}: checkpoint at minute {checkpoint.group(1)} outside its block {start}–{end}")
        assert "cell" in checkpoint.group(2), f"the checkpoint names the cell to have finished: {text}"
        sections = [_target(t) for t in NUMREF.findall(text) if _target(t).startswith(f"{chapter}-")]
        assert sections, f"session {session}, live run {start}–{end}: name the sections ({chapter}-...)"


@pytest.mark.parametrize("session", SESSIONS)
def test_blocks_name_what_they_use(session):
    chapter = f"ch{session:02d}"
    for start, end, kind, text in _blocks(session):
        cited = [_target(t) for t in NUMREF.findall(text)]
        if kind == "recap":
            assert f"{chapter}-setup" in cited, f"session {session}: the recap starts Colab ({chapter}-setup)"
        if kind in ("board", "stored runs"):
            assert any(label.startswith(f"{chapter}-") for label in cited), (
                f"session {session}, {kind} {start}–{end}: name the chapter's section")
        if kind == "pair exercise":
            assert any(label.startswith(f"ex-{chapter}-") for label in cited), (
                f"session {session}: the pair exercise names exercises of the chapter (ex-{chapter}-...)")
        if kind == "wrap-up":
            assert f"hw-{session}" in [_target(t) for t in REF.findall(text)], (
                f"session {session}: the wrap-up hands out homework {session}")


@pytest.mark.parametrize("session", SESSIONS)
def test_every_session_links_its_own_slides(session):
    text = _session(session)
    linked = set(re.findall(r"(?:href=\"|\]\()\.\./slides/([\w.-]+)\.slides\.html[\")]", text))
    assert linked == {_stem(session)}, f"session {session} links slides {linked}, expected {_stem(session)}"


@pytest.mark.parametrize("session", SESSIONS)
def test_every_session_states_its_learning_objectives(session):
    text = _session(session)
    assert "**Learning objectives.**" in text, f"session {session} has no learning objectives"
    objectives = text.split("**Learning objectives.**", 1)[1].split("| Minutes |", 1)[0]
    items = re.findall(r"^\d+\. ", objectives, re.M)
    assert len(items) >= 3, f"session {session}: {len(items)} objectives"
    assert f"{{doc}}`../notebooks/{_stem(session)}`" in text, f"session {session} links its chapter"


# ------------------------------------------------------------------------------------------ homework

def test_there_is_one_homework_sheet_per_session():
    found = [int(n) for n in re.findall(r"^### Homework (\d+):", HOMEWORK_TEXT, re.M)]
    assert found == list(SESSIONS), found
    for session in SESSIONS:
        assert f"(hw-{session})=" in HOMEWORK_TEXT


@pytest.mark.parametrize("number", SESSIONS)
def test_every_homework_has_task_deliverable_budget_and_a_rubric_that_adds_up(number):
    text = _homework(number)
    for part in ("**Task.**", "**Deliverable.**", "**Compute budget.**", "**Rubric.**", "**Not in the book.**"):
        assert part in text, f"homework {number} lacks {part}"
    budget = text.split("**Compute budget.**", 1)[1].split("\n\n", 1)[0]
    assert re.search(r"\b(CPU|GPU)\b", budget) and "minutes" in budget and "estimate" in budget, (
        f"homework {number}: the budget says where it runs, how many minutes, and that it is an estimate")
    task = text.split("**Task.**", 1)[1].split("**Deliverable.**", 1)[0]
    assert "Prediction" in task, f"homework {number} asks for a prediction to test"
    _rubric_points(text, total=10)


@pytest.mark.parametrize("number", SESSIONS)
def test_homework_is_not_built_on_what_the_book_answers(number):
    cited = {_target(t) for t in NUMREF.findall(_homework(number))}
    assert not cited & set(ANSWERED_IN_THE_BOOK), (
        f"homework {number} cites {cited & set(ANSWERED_IN_THE_BOOK)}, whose answers are in the book")


def test_there_are_four_to_six_final_projects_each_with_a_rubric():
    projects, names = _projects()
    assert 4 <= len(names) <= 6, names
    for name in names:
        text = _section(projects, name + ":", 3)
        for part in ("**Scope.**", "**Deliverables.**", "**Compute.**"):
            assert part in text, f"{name} lacks {part}"
        _rubric_points(text, total=100)


# ------------------------------------------------------------------------------------------ both pages

@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_cited_label_exists(page):
    text = page.read_text()
    missing = []
    for role in NUMREF.findall(text):
        label = _target(role)
        if label.startswith("ex-"):
            known = EXERCISES
        elif label.startswith("fig-"):
            known = FIGURES
        else:
            assert re.match(r"ch\d\d", label), f"{{numref}} of an unexpected label {label!r}"
            known = SECTIONS
        if label not in known:
            missing.append(label)
    own = _page_labels(GUIDE_TEXT) | _page_labels(HOMEWORK_TEXT) | SECTIONS
    missing += [_target(r) for r in REF.findall(text) if _target(r) not in own]
    for doc in DOC.findall(text):
        target = (page.parent / _target(doc)).resolve()
        if not (target.with_suffix(".md").exists() or target.with_suffix(".ipynb").exists()):
            missing.append(doc)
    assert not missing, f"{page.name} cites labels or pages that do not exist: {sorted(set(missing))}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_prose_quotes_no_result_and_no_typed_reference(page):
    offending = []
    for line in _prose(page.read_text()).splitlines():
        offending += [f"{m.group(0)!r} in: {line.strip()[:100]}" for m in RESULT_LIKE.finditer(line)]
        offending += [f"typed reference {m.group(0)!r}" for m in TYPED_REFERENCE.finditer(line)]
    assert not offending, ("numbers from runs belong on the chapter pages, glued; cross-references are "
                           "labels:\n" + "\n".join(offending))


def test_the_homework_page_follows_the_course_guide_in_the_toc():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [entry["file"] for part in toc["parts"] for entry in part.get("chapters", [])]
    assert files.index("book/homework") == files.index("book/course_guide") + 1, files


def test_the_helpers_read_tables_and_sections():
    text = "## A: x\n\n| Minutes | Block | What happens |\n|---|---|---|\n| 0–90 | Recap | all |\n\n## B: y\n"
    assert _table(_section(text, "A:", 2), "| Minutes |") == [["0–90", "Recap", "all"]]
    assert _target("Chapter %s <ch01>") == "ch01" and _target("ex-ch01-width") == "ex-ch01-width"
    assert RESULT_LIKE.findall(_prose("error 3.2 and 90 % and 3 of 5")) == ["3.2", "90 %", "3 of 5"]
    assert RESULT_LIKE.findall(_prose("`lr=0.1`, $0.5$, {numref}`ex-ch01-lsuv`, minutes 0–10")) == []
