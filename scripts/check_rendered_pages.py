"""Check the rendered book's pages carry what a reader uses: a Colab launch button on every chapter, a
download of each page's source (.ipynb for chapters, .md for the other pages) and the repository button.

    python scripts/check_rendered_pages.py _build/html      # scripts/test.sh runs it after its build
"""

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def problems(html_root: Path):
    """One line per missing button."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
    url, branch = config["url"].rstrip("/"), config.get("branch", "main")
    owner_name = url.split("github.com/", 1)[1]
    found = []
    for notebook in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        page = (html_root / "notebooks" / f"{notebook.stem}.html").read_text()
        colab = f"colab.research.google.com/github/{owner_name}/blob/{branch}/notebooks/{notebook.name}"
        for what, needle in [("Colab launch button", colab), ("download of the .ipynb",
                                                              f"_sources/notebooks/{notebook.name}"),
                             ("repository button", f'href="{url}"')]:
            if needle not in page:
                found.append(f"{notebook.stem}.html lacks the {what} ({needle})")
    for source in sorted((ROOT / "book").glob("*.md")):
        page = (html_root / "book" / f"{source.stem}.html").read_text()
        if f"_sources/book/{source.name}" not in page:
            found.append(f"book/{source.stem}.html lacks the download of its .md source")
    return found


if __name__ == "__main__":
    missing = problems(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "_build" / "html")
    print("\n".join(missing) or "every page has its launch, download and repository buttons")
    sys.exit(1 if missing else 0)
