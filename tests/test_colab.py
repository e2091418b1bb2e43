"""The Colab path: every notebook's setup cell run as Colab would, and one repository address everywhere."""

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
sys.path.insert(0, str(ROOT / "scripts"))
import set_repository  # noqa: E402


def _setup_cell(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    return "".join(next(c for c in cells if c["cell_type"] == "code")["source"])


@pytest.fixture(scope="module")
def local_repository(tmp_path_factory):
    """A clone of this repository with a ``main`` branch, standing in for the public address."""
    source = tmp_path_factory.mktemp("origin") / "neuronlab"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(source)], check=True)
    subprocess.run(["git", "-C", str(source), "checkout", "-q", "-B", "main"], check=True)
    return source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_setup_cell_on_colab_clones_installs_and_finds_the_stored_results(path, local_repository, tmp_path,
                                                                          monkeypatch):
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setenv("NEURONLAB_REPOSITORY", str(local_repository))
    monkeypatch.setenv("NEURONLAB_BRANCH", "main")
    monkeypatch.delenv("NEURONLAB_PROFILE", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)
    calls = []
    real_run = subprocess.run

    def run(args, **kwargs):
        calls.append(list(args))
        if args[1:4] == ["-m", "pip", "install"]:  # the install itself is Colab's business: record it only
            return subprocess.CompletedProcess(args, 0)
        return real_run(args, **kwargs)

    monkeypatch.setattr(subprocess, "run", run)
    namespace = {}
    exec(compile(_setup_cell(path), str(path), "exec"), namespace)

    clone = tmp_path / "neuronlab"
    assert Path.cwd() == clone / "notebooks" and Path("results").is_dir()
    assert calls[0][:2] == ["git", "clone"] and calls[0][-2:] == [str(local_repository), "neuronlab"]
    # pip installs the clone in place and pins nothing: a preinstalled torch that satisfies the package's
    # requirement is left as it is
    assert calls[1] == [sys.executable, "-m", "pip", "install", "-q", "-e", "./neuronlab"]
    assert sys.path[0] == str(clone)
    assert namespace["PROFILE"] == "quick" and namespace["SEED"] == 0
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); import neuronlab; "
             "from neuronlab.experiments import chapter; "
             "module = chapter(sys.argv[2]); _, run = module.setup('quick', 0, sys.argv[3]); "
             "print(neuronlab.__file__); print(all(run.store_path(e).is_dir() for e in module.STORED))")
    out = real_run([sys.executable, "-c", probe, str(clone), f"ch{path.name[:2]}", str(tmp_path / "runs")],
                   capture_output=True, text=True, check=True, cwd=clone / "notebooks").stdout.splitlines()
    assert Path(out[-2]).resolve().is_relative_to(clone.resolve()), "the notebook would import another neuronlab"
    assert out[-1] == "True", "the stored results of the chapter are not found after the Colab setup"

    # run again in the same session (Colab's "Run all" twice): nothing is cloned or installed again
    calls.clear()
    exec(compile(_setup_cell(path), str(path), "exec"), {})
    assert calls == []


def test_setup_cell_does_nothing_outside_colab(tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("the setup cell ran a command off Colab"))
    namespace = {}
    exec(compile(_setup_cell(NOTEBOOKS[0]), "setup", "exec"), namespace)
    assert Path.cwd() == tmp_path and namespace["RUNS_DIR"] == os.environ.get("NEURONLAB_RUNS")


def test_notebooks_and_readme_point_at_the_repository_of_config():
    url, branch = set_repository.repository()
    assert set_repository.disagreements(url, branch) == []
    for path in NOTEBOOKS:
        assert f'"NEURONLAB_REPOSITORY", "{url}"' in _setup_cell(path)


def test_set_repository_rewrites_badge_and_setup_lines():
    text = ('[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]'
            '(https://colab.research.google.com/github/old/place/blob/dev/notebooks/01_x.ipynb)\n'
            'REPOSITORY = os.environ.get("NEURONLAB_REPOSITORY", "https://github.com/old/place")\n'
            'BRANCH = os.environ.get("NEURONLAB_BRANCH", "dev")\n')
    new = set_repository.rewrite(text, "https://github.com/uva/neuronlab", "book")
    assert "https://colab.research.google.com/github/uva/neuronlab/blob/book/notebooks/01_x.ipynb" in new
    assert '"NEURONLAB_REPOSITORY", "https://github.com/uva/neuronlab")' in new
    assert '"NEURONLAB_BRANCH", "book")' in new
    assert set_repository.rewrite(new, "https://github.com/uva/neuronlab", "book") == new
    with pytest.raises(ValueError, match="GitHub address"):
        set_repository.colab_prefix("https://gitlab.com/x/y", "main")
