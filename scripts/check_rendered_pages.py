"""Check the rendered book's pages carry what a reader uses: a Colab launch button on every chapter, a
download of each page's source (.ipynb for chapters, .md for the other pages) and the repository button.

    python scripts/check_rendered_pages.py _build/html      # scripts/test.sh runs it after its build

The folder (default ``_build/html``) must be a built book: a folder that is missing, is a file or holds no
``notebooks/`` pages ends the script with exit status 2 and a message saying to build the book first; a
single page that is missing is reported like a missing button (exit status 1).
"""

import argparse
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _page(path: Path):
    """The page's text, or ``None`` when the build did not write it."""
    return path.read_text() if path.is_file() else None


def problems(html_root: Path):
    """One line per missing button (or missing page)."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
    url, branch = config["url"].rstrip("/"), config.get("branch", "main")
    owner_name = url.split("github.com/", 1)[1]
    found = []
    for notebook in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        page = _page(html_root / "notebooks" / f"{notebook.stem}.html")
        if page is None:
            found.append(f"notebooks/{notebook.stem}.html is missing (is {notebook.name} in _toc.yml?)")
            continue
        colab = f"colab.research.google.com/github/{owner_name}/blob/{branch}/notebooks/{notebook.name}"
        for what, needle in [("Colab launch button", colab), ("download of the .ipynb",
                                                              f"_sources/notebooks/{notebook.name}"),
                             ("repository button", f'href="{url}"')]:
            if needle not in page:
                found.append(f"{notebook.stem}.html lacks the {what} ({needle})")
    for source in sorted((ROOT / "book").glob("*.md")):
        page = _page(html_root / "book" / f"{source.stem}.html")
        if page is None:
            found.append(f"book/{source.stem}.html is missing (is book/{source.name} in _toc.yml?)")
        elif f"_sources/book/{source.name}" not in page:
            found.append(f"book/{source.stem}.html lacks the download of its .md source")
    return found


def main(argv=None) -> int:
    """Check the pages under the folder named in ``argv`` (default ``_build/html``); exit status 0 when every
    page has its buttons, 1 when one lacks one, 2 when the folder is not a built book."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("html_root", nargs="?", type=Path, default=ROOT / "_build" / "html",
                        help="the built book's HTML folder (default: _build/html)")
    args = parser.parse_args(argv)
    root = args.html_root
    if not root.is_dir():
        what = "is a file" if root.exists() else "does not exist"
        parser.error(f"argument html_root: {str(root)!r} {what}; name the HTML folder of a built book "
                     "(build it first: bash scripts/build_book.sh, which writes _build/html)")
    if not (root / "notebooks").is_dir():
        parser.error(f"argument html_root: {str(root)!r} has no notebooks/ pages, so it is not a built book's "
                     "HTML folder (build it first: bash scripts/build_book.sh, which writes _build/html)")
    missing = problems(root)
    print("\n".join(missing) or "every page has its launch, download and repository buttons")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
