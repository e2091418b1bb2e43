"""The student editions (notebooks/student/) and the slide decks, made by scripts/editions.py.

A student edition must be in sync with its chapter, render in Colab as plain CommonMark (no MyST fences,
roles, labels or glue left), hold no solution, turn every code exercise into a skeleton that raises
``NotImplementedError`` followed by its check, and list the works it cites at its end.
"""

import html.parser
import inspect
import json
import re
import sys
from pathlib import Path

import nbformat
import pytest
from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import editions  # noqa: E402

CHAPTERS = editions.chapters()
MARKDOWN = MarkdownIt("commonmark").enable("table")


def _student(path: Path) -> dict:
    student = editions.STUDENT / path.name
    assert student.is_file(), f"{student} is missing: run python scripts/editions.py student"
    return json.loads(student.read_text(encoding="utf-8"))


def _markdown(notebook: dict) -> str:
    return "\n\n".join(editions._source(c) for c in notebook["cells"] if c["cell_type"] == "markdown")


def _words(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


# ------------------------------------------------------------------------------------ (a) in sync

def test_student_editions_are_in_sync_with_the_chapters():
    stale = editions.stale_student_editions()
    assert not stale, f"stale student editions {stale}: run python scripts/editions.py student"


def test_check_command_reports_stale_files(monkeypatch, capsys):
    monkeypatch.setattr(editions, "stale_student_editions", lambda: ["03_neuron_steadiness.ipynb"])
    assert editions.main(["student", "--check"]) == 1
    assert "03_neuron_steadiness.ipynb is stale" in capsys.readouterr().out


# ------------------------------------------------------------- (b) Colab renders them as plain CommonMark

def _rendered_problems(text: str):
    """What Colab would show of MyST in ``text``: fences, roles, labels, glue."""
    rendered = MARKDOWN.render(text)
    problems = []
    if 'class="language-{' in rendered:
        problems.append("a ```{directive} fence")
    prose = re.sub(r"<pre>.*?</pre>", "", rendered, flags=re.S)
    role = re.search(r"\{[\w:.+-]+\}<code>", prose)
    if role:
        problems.append(f"a role {role.group(0)}")
    prose = re.sub(r"<code>.*?</code>", "", prose, flags=re.S)
    for needle in (":::", "```{", "{glue", "{numref}", "{cite}"):
        if needle in prose:
            problems.append(f"{needle!r}")
    label = re.search(r"(?:^|>|\n)\s*\([\w:.-]+\)=\s*(?:<|\n|$)", prose)
    if label:
        problems.append(f"a label line {label.group(0).strip()!r}")
    return problems


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_student_markdown_renders_as_plain_commonmark(path):
    for k, cell in enumerate(_student(path)["cells"]):
        if cell["cell_type"] == "markdown":
            problems = _rendered_problems(editions._source(cell))
            assert not problems, f"{path.stem} student cell {k}: {problems}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_student_edition_holds_no_solution_text(path):
    chapter = json.loads(path.read_text(encoding="utf-8"))
    blocks = editions.solution_blocks(chapter)
    student_text = _words(_markdown(_student(path)))
    converter = editions.Converter(path.stem, editions.chapter_number(path),
                                   editions.LabelIndex.from_notebooks(CHAPTERS), editions.glue_values(chapter),
                                   editions.Bibliography.load(), mode="student")
    checked = 0
    for body in blocks:
        text = converter.blocks(body)
        text = re.sub(r"```.*?```|\$\$.*?\$\$", " ", text, flags=re.S)  # code and display math
        for sentence in re.split(r"(?<=[.!?:;])\s+", _words(text)):
            if len(sentence.split()) >= 6:
                checked += 1
                assert sentence not in student_text, f"{path.stem}: solution text in the student edition: {sentence}"
    assert checked or not blocks


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_student_edition_drops_solution_cells_outputs_and_metadata(path):
    student = _student(path)
    chapter = json.loads(path.read_text(encoding="utf-8"))
    for cell in student["cells"]:
        tags = cell["metadata"].get("tags", [])
        assert set(cell["metadata"]) <= {"tags"} and set(tags) <= {"parameters", "exercise-skeleton",
                                                                    "exercise-check"}
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
    solution_run = [editions._source(c) for c in chapter["cells"]
                    if "solution-run" in c.get("metadata", {}).get("tags", [])]
    code = [editions._source(c) for c in student["cells"] if c["cell_type"] == "code"]
    assert not set(solution_run) & set(code)
    ids = [c["id"] for c in student["cells"]]
    assert len(ids) == len(set(ids))
    nbformat.validate(nbformat.from_dict(student))
    first = editions._source(next(c for c in student["cells"] if c["cell_type"] == "markdown"))
    assert "Open the student edition in Colab" in first and "[![Open In Colab]" not in first
    assert "Instructor edition: <https://colab.research.google.com/github/" in first
    assert first.split("Instructor edition: <", 1)[1].split(">")[0].endswith(f"/notebooks/{path.name}")


# ------------------------------------------------------- (c) code exercises: a skeleton, then its check

@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_code_exercises_become_skeletons_followed_by_their_check(path):
    chapter = json.loads(path.read_text(encoding="utf-8"))
    solutions = [c for c in chapter["cells"] if "exercise-solution" in c.get("metadata", {}).get("tags", [])]
    cells = _student(path)["cells"]
    skeletons = [k for k, c in enumerate(cells) if "exercise-skeleton" in c["metadata"].get("tags", [])]
    assert len(skeletons) == len(solutions)
    for k in skeletons:
        source = editions._source(cells[k])
        namespace: dict = {}
        exec(compile(source, f"{path.stem} student cell {k}", "exec"), namespace)  # noqa: S102
        functions = [v for n, v in namespace.items()
                     if inspect.isfunction(v) and v.__code__.co_filename.startswith(path.stem)]
        assert functions, f"{path.stem} student cell {k} defines no function"
        for function in functions:
            required = [p for p in inspect.signature(function).parameters.values()
                        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            with pytest.raises(NotImplementedError, match="Student exercise"):
                function(*[None] * len(required))
        check = cells[k + 1]
        assert "exercise-check" in check["metadata"].get("tags", []), f"{path.stem}: no check after cell {k}"
        assert any(f.__name__ in editions._source(check) for f in functions)


# --------------------------------------------------------------------- (d) references where citations are

@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_reference_list_where_citations_were(path):
    student = _student(path)
    bib = editions.Bibliography.load()
    text = _markdown(student)
    cited = [key for key, label in bib.labels.items() if f"({label})" in text or f"{label})" in text]
    last = editions._source(student["cells"][-1])
    if cited:
        assert last.startswith("## References\n"), f"{path.stem}: no reference list at the end"
        for key in cited:
            assert f"**{bib.labels[key]}.**" in last, f"{path.stem}: {key} cited but not listed"
    chapter_text = "\n".join(editions._source(c) for c in json.loads(path.read_text())["cells"]
                             if c["cell_type"] == "markdown")
    assert bool(cited) == ("{cite" in chapter_text)


# ------------------------------------------------------------------------- (e) the converter's rules

BIB = """
@inproceedings{smith2020one, title = {One {Thing}}, author = {Smith, Ann}, year = {2020},
  booktitle = {Proc. Things}, eprint = {2001.00001}}
@article{doe2019two, title = "Two things", author = {Doe, Jo and Roe, R{\\'e}my}, journal = {J}, year = 2019,
  doi = {10.1/x}}
@misc{lee2018many, title = {Many}, author = {Lee, A. and Kim, B. and Park, C.}, year = {2018}, url = {https://x.org}}
"""


def _demo(tmp_path, cells, name="09_demo.ipynb", glue=None):
    """A hand-made chapter: ``cells`` are (type, source) or (type, source, tags)."""
    notebook = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    for k, spec in enumerate(cells):
        kind, source = spec[0], spec[1]
        cell = {"cell_type": kind, "id": f"c{k}", "metadata": {"tags": list(spec[2])} if len(spec) > 2 else {},
                "source": source}
        if kind == "code":
            cell.update(outputs=list(spec[3]) if len(spec) > 3 else [], execution_count=1)
        notebook["cells"].append(cell)
    for key, value in (glue or {}).items():
        notebook["cells"][-1].setdefault("outputs", []).append(
            {"output_type": "display_data",
             "metadata": {"scrapbook": {"name": key, "mime_prefix": "application/papermill.record/"}},
             "data": {"application/papermill.record/text/plain": value}})
    path = tmp_path / name
    path.write_text(json.dumps(notebook))
    return path


CHAPTER_CELLS = [
    ("markdown", "(ch09)=\n# Demo chapter\n\n[![Open In Colab](https://colab.research.google.com/assets/"
                 "colab-badge.svg)](https://colab.research.google.com/github/o/r/blob/main/notebooks/09_demo.ipynb)"
                 "\n\nIntro {cite}`smith2020one`."),
    ("code", "PROFILE = 'quick'", ["parameters", "hide-input"]),
    ("markdown", "(ch09-first)=\n## First `steps`\n\nText."),
    ("markdown", "```{glue:figure} ch09_fig\n:name: fig-ch09-a\n\n**Caption A.** See {numref}`ch09-first`.\n```"),
    ("markdown", ":::{exercise} Count them\n:label: ex-ch09-count\n\n**Difficulty** ★☆☆ · **Time** 5 min · "
                 "**Type** code\n\nWrite `count`.\n:::"),
    ("code", "import math\n\n\ndef count(xs):\n    \"\"\"Count the items.\"\"\"\n    return len(xs)\n",
     ["exercise-solution", "hide-input"]),
    ("code", "check(count)", ["exercise-check"]),
    ("markdown", ":::{solution} ex-ch09-count\n:class: dropdown\n\nThe secret answer is the length of the list.\n:::"),
    ("code", "secret = 42\nbook.glue('ch09_secret', secret)", ["solution-run", "hide-input"]),
    ("markdown", "(ch09-second)=\n## Second\n\n```{glue:figure} ch09_fig2\n:name: fig-ch09-b\n\nCaption B.\n```"),
    ("code", "x = 1", ["nbval-check-output"], [{"output_type": "stream", "name": "stdout", "text": "1\n"}]),
]


@pytest.fixture
def convert(tmp_path):
    path = _demo(tmp_path, CHAPTER_CELLS, glue={"ch09_value": "3.14159", "ch09_phrase": "all 6",
                                               "ch09_count": "7"})
    index = editions.LabelIndex.from_notebooks([path])
    notebook = json.loads(path.read_text())
    converter = editions.Converter("09_demo", 9, index, editions.glue_values(notebook),
                                   editions.Bibliography.from_text(BIB), mode="student")

    def run(text):
        return converter.cell(text, 99)
    run.converter = converter
    return run


@pytest.mark.parametrize("source, expected", [
    ("(ch09-x)=\n## Title", "## Title"),
    ("See {numref}`ch09-first`.", "See Section “First `steps`”."),
    ("{numref}`Chapter %s <ch09>` and {numref}`fig-ch09-b`", "Chapter 9 and Figure 9.2"),
    ("{numref}`ex-ch09-count`; {numref}`Exercise %s <ex-ch09-count>`", "Exercise 9.1; Exercise 9.1"),
    ("{ref}`ch09-second`, {ref}`that part <ch09-second>`", "“Second”, that part"),
    ("{doc}`the guide <../book/course_guide>`", "the guide"),
    ("{cite}`smith2020one`", "(Smith, 2020)"),
    ("{cite}`doe2019two,lee2018many`", "(Doe and Roe, 2019; Lee et al., 2018)"),
    ("{cite:t}`lee2018many`", "Lee et al. (2018)"),
    ("{glue:text}`ch09_value:.2f` and {glue:text}`ch09_phrase` and {glue}`ch09_count`", "3.14 and all 6 and 7"),
    ("{glue:text}`ch09_value:.0f` %", "3 %"),
    ("{term}`neuron`, {term}`units <unit>`, {index}`ablation`", "neuron, units, ablation"),
    ("{abbr}`CKA (centred kernel alignment)`", "CKA (centred kernel alignment)"),
    ("{math}`x^2` and $\\text{term 1}$", "$x^2$ and $\\text{term 1}$"),
    ("[98.5]{.paper} and [0.01]{.constant}", "98.5 and 0.01"),
    ("`{numref}` in code stays", "`{numref}` in code stays"),
    ("```{math}\n:label: eq-a\na = b\n```", "$$\na = b\n$$"),
    ("```{note}\nMind the gap.\n```", "> **Note.** Mind the gap."),
    (":::{admonition} Careful\nTwo\n\nparagraphs.\n:::", "> **Careful.** Two\n>\n> paragraphs."),
    ("```{tip}\n* a\n```", "> **Tip.**\n>\n> * a"),
    ("```{warning}\nW\n```\n```{important}\nI\n```\n```{seealso}\nS\n```",
     "> **Warning.** W\n\n> **Important.** I\n\n> **See also.** S"),
    (":::{dropdown} More\nHidden **text**.\n:::", "<details><summary>More</summary>\n\nHidden **text**.\n\n</details>"),
    (":::{note}\n:class: dropdown\nFolded.\n:::", "<details><summary>Note</summary>\n\nFolded.\n\n</details>"),
    (":::{exercise}\n:label: ex-ch09-count\n\nDo it.\n:::", "### Exercise\n\nDo it."),
    ("Read [the guide](../book/how_to_use.md) and [chapter 1](01_vanishing_exploding_signals.ipynb).",
     "Read [the guide](https://github.com/neuronlab/neuronlab/blob/main/book/how_to_use.md) and [chapter 1]"
     "(https://colab.research.google.com/github/neuronlab/neuronlab/blob/main/notebooks/student/"
     "01_vanishing_exploding_signals.ipynb)."),
    ("Before.\n\n:::{solution} ex-ch09-count\n:class: dropdown\n\nGone.\n:::\n\nAfter.", "Before.\n\nAfter."),
    ("## References\n\n* Smith {cite}`smith2020one`.\n\n"
     "Full entries are on the [references page](../book/references.md).",
     "## Further reading\n\n* Smith (Smith, 2020)."),
])
def test_converter_rules(convert, source, expected):
    assert convert(source) == expected


def test_exercise_and_figure_numbers_follow_the_chapter(tmp_path):
    path = _demo(tmp_path, CHAPTER_CELLS)
    index = editions.LabelIndex.from_notebooks([path])
    notebook = json.loads(path.read_text())
    converter = editions.Converter("09_demo", 9, index, {}, editions.Bibliography.from_text(BIB))
    exercise = converter.cell(editions._source(notebook["cells"][4]), 4)
    assert exercise.startswith("### Exercise 9.1: Count them\n\n**Difficulty** ★☆☆")
    assert converter.cell(editions._source(notebook["cells"][3]), 3) == (
        "**Figure 9.1.** **Caption A.** See Section “First `steps`”.")
    assert converter.cell(editions._source(notebook["cells"][9]), 9) == "## Second\n\n**Figure 9.2.** Caption B."


@pytest.mark.parametrize("source, message", [
    ("{kbd}`Ctrl`", "unknown role {kbd}"),
    ("```{figure} image.png\nCaption\n```", "{figure}"),
    (":::{sidebar} Aside\nText\n:::", "unknown directive {sidebar}"),
    (":::\nfenced\n:::", "':::' fence without a {directive}"),
    ("[9]{.secret}", "unknown span"),
    ("{glue:text}`ch09_missing:.2f`", "'ch09_missing' is not in the notebook's outputs"),
    ("{numref}`fig-ch09-missing`", "unknown label"),
    ("{cite}`nobody2000`", "not in book/references.bib"),
    (":::{note}\nnot closed", "is not closed"),
])
def test_converter_fails_loudly_on_what_it_does_not_know(convert, source, message):
    with pytest.raises(editions.MarkupError, match=re.escape(message)) as error:
        convert(source)
    assert "09_demo.ipynb, cell 99" in str(error.value) and source.splitlines()[0] in str(error.value)


def test_bibliography_labels_and_entries():
    bib = editions.Bibliography.from_text(BIB + "@misc{smith2020two, title={Two}, author={Smith, Ann}, year={2020}}")
    assert bib.labels["smith2020one"] == "Smith, 2020a" and bib.labels["smith2020two"] == "Smith, 2020b"
    assert bib.labels["doe2019two"] == "Doe and Roe, 2019"
    assert bib.reference("doe2019two") == ("**Doe and Roe, 2019.** Jo Doe and Rémy Roe. *Two things*. J. "
                                           "[doi:10.1/x](https://doi.org/10.1/x)")
    assert "[arXiv:2001.00001](https://arxiv.org/abs/2001.00001)" in bib.reference("smith2020one")
    book = editions.Bibliography.load()
    assert len(book.entries) == len(re.findall(r"^@\w+\{", editions.BIB.read_text(), re.M))
    assert book.labels["glorot2010understanding"] == "Glorot and Bengio, 2010"


def test_student_notebook_of_a_hand_made_chapter(tmp_path):
    path = _demo(tmp_path, CHAPTER_CELLS)
    notebook = editions.student_notebook(path, editions.LabelIndex.from_notebooks([path]),
                                         editions.Bibliography.from_text(BIB))
    cells = notebook["cells"]
    sources = [editions._source(c) for c in cells]
    assert sources[0].startswith("# Demo chapter\n\n[![Open the student edition in Colab]")
    assert "notebooks/student/09_demo.ipynb" in sources[0]
    assert "Instructor edition: <https://colab.research.google.com/github/o/r/blob/main/notebooks/09_demo.ipynb>" \
        in sources[0]
    assert cells[1]["metadata"] == {"tags": ["parameters"]}
    assert not any("secret" in s for s in sources), "the solution and its run stay out"
    k = next(i for i, c in enumerate(cells) if c["metadata"].get("tags") == ["exercise-skeleton"])
    assert "raise NotImplementedError('Student exercise: count the items.')" in sources[k]
    assert "return len" not in sources[k] and cells[k + 1]["metadata"] == {"tags": ["exercise-check"]}
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in cells if c["cell_type"] == "code")
    assert sources[-1] == ("## References\n\n* **Smith, 2020.** Ann Smith. *One Thing*. Proc. Things. "
                           "[arXiv:2001.00001](https://arxiv.org/abs/2001.00001)")
    nbformat.validate(nbformat.from_dict(notebook))


def test_a_cell_that_needs_a_dropped_solution_fails(tmp_path):
    path = _demo(tmp_path, CHAPTER_CELLS + [("code", "print(secret)")])
    with pytest.raises(editions.MarkupError, match=r"uses \['secret'\]"):
        editions.student_notebook(path, editions.LabelIndex.from_notebooks([path]),
                                  editions.Bibliography.from_text(BIB))
    path = _demo(tmp_path, CHAPTER_CELLS + [("code", "count([1, 2])")])
    with pytest.raises(editions.MarkupError, match=r"uses \['count'\]"):
        editions.student_notebook(path, editions.LabelIndex.from_notebooks([path]),
                                  editions.Bibliography.from_text(BIB))


# ------------------------------------------------------------------------------------------- (f) slides

PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


class _Sections(html.parser.HTMLParser):
    """Counts the innermost <section> elements (reveal.js: one per slide)."""

    def __init__(self):
        super().__init__()
        self.stack, self.leaves = [], 0

    def handle_starttag(self, tag, attrs):
        if tag == "section":
            if self.stack:
                self.stack[-1] = True
            self.stack.append(False)

    def handle_endtag(self, tag):
        if tag == "section":
            self.leaves += not self.stack.pop()


def test_slides_one_section_per_tagged_cell(tmp_path):
    figure_output = {"output_type": "display_data", "data": {"image/png": PNG, "text/plain": "<Figure>"},
                     "metadata": {"scrapbook": {"name": "ch09_fig", "mime_prefix": ""}}}
    number_output = {"output_type": "display_data", "metadata": {"scrapbook": {
        "name": "ch09_value", "mime_prefix": "application/papermill.record/"}},
        "data": {"application/papermill.record/text/plain": "2.5"}}
    cells = [
        ("markdown", "(ch09)=\n# Demo deck\n\n[![Open In Colab](https://colab.research.google.com/assets/"
                     "colab-badge.svg)](https://colab.research.google.com/github/o/r/blob/main/notebooks/09_demo.ipynb)"
                     "\n\n**Objectives** {cite}`glorot2010understanding`", ["slide"]),
        ("markdown", "The key equation, {glue:text}`ch09_value:.1f`:\n\n$$\nE = mc^2\n$$", ["slide"]),
        ("code", "hidden_figure_code = plot()\nbook.glue_figure(name, fig)", ["slide", "hide-input"],
         [figure_output, number_output]),
        ("markdown", "```{glue:figure} ch09_fig\n:name: fig-ch09-fig\n\n**A captioned figure.** Details.\n```"),
        ("markdown", "Not on a slide."),
        ("code", "live_run_code = train()", ["slide"], [{"output_type": "stream", "name": "stdout",
                                                         "text": "epoch 1 done\n"}]),
    ]
    path = _demo(tmp_path, cells)
    (deck,) = editions.build_slides([path], tmp_path / "slides")
    assert deck == tmp_path / "slides" / "09_demo.slides.html"
    page = deck.read_text()
    sections = _Sections()
    sections.feed(page)
    assert sections.leaves == 4
    assert "reveal.js" in page and "Demo deck" in page and "(Glorot and Bengio, 2010)" in page
    assert "Open In Colab" not in page and "Not on a slide" not in page
    assert "2.5" in page and "E = mc^2" in page
    assert "hidden_figure_code" not in page and f"data:image/png;base64,{PNG}" in page
    assert "Figure 9.1." in page and "A captioned figure." in page
    assert "live_run_code" in page and "epoch 1 done" in page


def test_slides_need_tagged_cells(tmp_path):
    path = _demo(tmp_path, [("markdown", "# Nothing tagged")])
    with pytest.raises(editions.MarkupError, match="no cells tagged 'slide'"):
        editions.build_slides([path], tmp_path / "slides")


def test_slides_of_an_executed_copy_take_missing_glued_values_from_the_committed_run(tmp_path):
    """myst-nb's executed copies (_build/jupyter_execute) keep the glued figures but may drop glued numbers
    and phrases; the deck then quotes the committed run's values instead of failing."""
    chapter = sorted((ROOT / "notebooks").glob("01_*.ipynb"))[0]  # its summary slide quotes glued numbers
    notebook = json.loads(chapter.read_text())
    dropped = 0
    for cell in notebook["cells"]:
        kept = []
        for output in cell.get("outputs", []):
            record = output.get("metadata", {}).get("scrapbook", {})
            if record.get("mime_prefix", "").startswith("application/papermill.record"):
                dropped += 1
                continue
            kept.append(output)
        if cell["cell_type"] == "code":
            cell["outputs"] = kept
    assert dropped > 0
    executed = tmp_path / "executed" / chapter.name
    executed.parent.mkdir()
    executed.write_text(json.dumps(notebook))
    (deck,) = editions.build_slides([executed], tmp_path / "slides")
    page = deck.read_text()
    assert "{glue" not in page and "reveal.js" in page
