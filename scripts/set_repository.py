"""Point every notebook at the repository and branch named in ``_config.yml`` (``repository.url``, ``branch``).

The address is written once, in ``_config.yml``; this script copies it into the places a reader meets it:
each notebook's first code cell (``REPOSITORY = ...`` and ``BRANCH = ...``, which the Colab setup clones)
and each notebook's *Open in Colab* badge, plus the README's example link. Moving the project to its
public home is one edit of ``_config.yml`` and one run of::

    python scripts/set_repository.py          # rewrite the notebooks and the README
    python scripts/set_repository.py --check  # exit 1 if anything disagrees with _config.yml (the tests run this)

Both are checked before any file is read or written: ``repository.url`` must be a GitHub address
``https://github.com/<owner>/<name>`` and ``branch`` a plain branch name (letters, digits and ``._/+-``,
as git allows them and as they can stand in a Colab address and a Python string); otherwise the script
exits with status 2 and says what is wrong in ``_config.yml``, having changed nothing.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import List, Tuple

import yaml

ROOT = Path(__file__).resolve().parents[1]
BADGE = re.compile(r"https://colab\.research\.google\.com/github/[^/\s)\"]+/[^/\s)\"]+/blob/[^/\s)\"]+/notebooks/")
# The address may sit on the line after "REPOSITORY = os.environ.get(" (the setup cell keeps lines short).
REPOSITORY_LINE = re.compile(r'^(REPOSITORY = os\.environ\.get\(\s*)"NEURONLAB_REPOSITORY", "[^"]*"\)', re.M)
BRANCH_LINE = re.compile(r'^BRANCH = os\.environ\.get\("NEURONLAB_BRANCH", "[^"]*"\)', re.M)


GITHUB_URL = re.compile(r"https://github\.com/([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+?)(?:\.git)?")
BRANCH_NAME = re.compile(r"[A-Za-z0-9_+][A-Za-z0-9._/+-]*")


def repository(config_path: Path = ROOT / "_config.yml") -> Tuple[str, str]:
    """``(url, branch)`` from ``_config.yml``'s ``repository`` section (``branch`` defaults to ``main``).

    Raises:
        ValueError: the section or its ``url`` is missing, or ``url``/``branch`` is not text; the message
            names the file.
    """
    config = yaml.safe_load(config_path.read_text())
    section = config.get("repository") if isinstance(config, dict) else None
    if not isinstance(section, dict) or not isinstance(section.get("url"), str):
        raise ValueError(f"{config_path} has no repository.url: add a 'repository:' section with "
                         "'url: https://github.com/<owner>/<name>' and 'branch: main'")
    branch = section.get("branch", "main")
    if not isinstance(branch, str):
        raise ValueError(f"{config_path}: repository.branch must be a branch name, got {branch!r}")
    return section["url"].rstrip("/"), branch


def colab_prefix(url: str, branch: str) -> str:
    """The Colab address of the repository's ``notebooks/`` folder, e.g. ``.../github/owner/name/blob/main/notebooks/``.

    Raises:
        ValueError: ``url`` is not ``https://github.com/<owner>/<name>`` (GitHub's characters: letters,
            digits, ``_.-``), or ``branch`` is not a plain branch name (letters, digits, ``._/+-``; no
            ``..``, no leading ``-``, ``.`` or ``/``, no trailing ``/``, ``.`` or ``.lock``).
    """
    match = GITHUB_URL.fullmatch(url)
    if not match:
        raise ValueError(f"repository.url must be a GitHub address https://github.com/<owner>/<name>, got {url!r}")
    if (not BRANCH_NAME.fullmatch(branch) or ".." in branch or "//" in branch
            or branch.endswith(("/", ".", ".lock"))):
        raise ValueError(f"repository.branch must be a branch name (letters, digits and ._/+-, e.g. main), "
                         f"got {branch!r}")
    return f"https://colab.research.google.com/github/{match.group(1)}/{match.group(2)}/blob/{branch}/notebooks/"


def rewrite(text: str, url: str, branch: str) -> str:
    """``text`` with the badge links, the ``REPOSITORY`` and the ``BRANCH`` lines set to ``url`` and ``branch``."""
    text = BADGE.sub(colab_prefix(url, branch), text)
    text = REPOSITORY_LINE.sub(lambda m: f'{m.group(1)}"NEURONLAB_REPOSITORY", "{url}")', text)
    return BRANCH_LINE.sub(f'BRANCH = os.environ.get("NEURONLAB_BRANCH", "{branch}")', text)


def _rewrite_notebook(path: Path, url: str, branch: str) -> bool:
    notebook = json.loads(path.read_text())
    changed = False
    for cell in notebook["cells"]:
        old = "".join(cell["source"])
        new = rewrite(old, url, branch)
        if new != old:
            lines = new.split("\n")
            cell["source"] = [line + "\n" for line in lines[:-1]] + [lines[-1]]
            changed = True
    if changed:
        path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
    return changed


def disagreements(url: str, branch: str) -> List[str]:
    """The files whose repository address or branch differs from ``url`` / ``branch``, or that lack one."""
    found = []
    prefix = colab_prefix(url, branch)
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        text = "\n".join("".join(c["source"]) for c in cells)
        setup = "".join(next(c for c in cells if c["cell_type"] == "code")["source"])
        badge_ok = f"{prefix}{path.name}" in text and rewrite(text, url, branch) == text
        setup_ok = f'"NEURONLAB_REPOSITORY", "{url}"' in setup and f'"NEURONLAB_BRANCH", "{branch}"' in setup
        if not (badge_ok and setup_ok):
            found.append(path.name)
    readme = (ROOT / "README.md").read_text()
    if rewrite(readme, url, branch) != readme:
        found.append("README.md")
    return found


def main(argv=None) -> int:
    """Rewrite (or with ``--check`` only report) the files; ``_config.yml`` is checked first (exit status 2,
    nothing changed, when its address or branch is unusable)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report files that disagree with _config.yml")
    args = parser.parse_args(argv)
    try:
        url, branch = repository()
        colab_prefix(url, branch)
    except ValueError as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    if args.check:
        wrong = disagreements(url, branch)
        for name in wrong:
            print(f"{name} does not point at {url} (branch {branch}): run python scripts/set_repository.py")
        return 1 if wrong else 0
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        if _rewrite_notebook(path, url, branch):
            print(f"rewrote {path.relative_to(ROOT)}")
    readme = ROOT / "README.md"
    readme.write_text(rewrite(readme.read_text(), url, branch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
