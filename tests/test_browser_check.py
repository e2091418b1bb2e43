"""The headless-browser check of the rendered pages finds what it claims to find (scripts/check_in_browser.py)."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("check_in_browser", ROOT / "scripts" / "check_in_browser.py")
check_in_browser = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_in_browser)

BROWSER = check_in_browser.find_browser()
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no headless chromium on this machine")

PAGE = """<!DOCTYPE html><html><head><style>pre {{ width: 300px; overflow: auto; }}</style></head>
<body><header class="bd-header">site</header><article><h1>Title</h1>{body}</article></body></html>"""


def _problems(tmp_path, body):
    page = tmp_path / "page.html"
    page.write_text(PAGE.format(body=body))
    return check_in_browser.check_page(BROWSER, page)


def test_a_clean_page_passes(tmp_path):
    assert _problems(tmp_path, "<p>Plain text.</p><pre>short line</pre>") == []


def test_raw_tex_clipped_lines_missing_images_and_extra_titles_are_found(tmp_path):
    body = ("<p>The loss is $\\frac{1}{n}$ here.</p>"
            f"<pre>{'x' * 200}</pre>"
            "<img src='missing.png'><img src='https://example.org/badge.svg'>"
            "<h1>Second title</h1>")
    problems = _problems(tmp_path, body)
    kinds = sorted(p.split(":")[0].split(" (")[0] for p in problems)
    assert kinds == ["2 h1 titles", "clipped line", "image does not load", "raw TeX"], problems


def test_a_second_header_is_found(tmp_path):
    problems = _problems(tmp_path, "<header class='bd-header'>again</header>")
    assert problems == ["2 page headers"]


def test_a_page_that_never_reports_is_not_passed(tmp_path, monkeypatch):
    class Silent:
        stdout, stderr, returncode = "<html></html>", "", 0

    monkeypatch.setattr(check_in_browser, "_chromium", lambda *a, **k: Silent())
    page = tmp_path / "page.html"
    page.write_text(PAGE.format(body=""))
    with pytest.raises(check_in_browser.NotLoaded):
        check_in_browser.check_page(BROWSER, page)
    assert not (tmp_path / "_browser_check_page.html").exists()  # the probe copy is always removed


def test_the_script_reads_a_book_given_by_a_relative_path(tmp_path, monkeypatch):
    (tmp_path / "html" / "book").mkdir(parents=True)
    (tmp_path / "html" / "book" / "page.html").write_text(PAGE.format(body="<p>Fine.</p>"))
    monkeypatch.chdir(tmp_path)
    assert check_in_browser.main(["html"]) == 0
