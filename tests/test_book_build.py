"""The book build trains no sweep: every experiment a chapter's notebook runs is stored with the book
(``STORED``), and its stored folder holds every run of its quick grid, so the quick profile reads the runs
back instead of training them. (The training code itself stays tested: tests/experiments/test_smoke.py runs
every experiment's smoke budget through the real run functions.)"""

import ast
import json
import re
from pathlib import Path

import nbformat
import pytest

from neuronlab.experiments import CHAPTERS, chapter
from neuronlab.experiments._common import STORED_RESULTS, store_path
from neuronlab.runs import config_key

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
#: Calls that train a sweep outside ``run_experiment`` (which reads stored runs back first).
SWEEP_CALLS = ("sweep", "run_chapter_experiment")


def _chapter_of(path: Path) -> str:
    return f"ch{path.name[:2]}"


def _code(notebook) -> str:
    """The notebook's Python code: IPython magics and shell lines dropped, so that ``ast`` can parse it."""
    lines = []
    for cell in notebook.cells:
        if cell.cell_type == "code":
            lines += [line for line in cell.source.splitlines() if not re.match(r"\s*[%!]", line)]
    return "\n".join(lines)


def _called_name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def experiment_calls(code: str):
    """``(experiments, dynamic, sweeps)`` of a notebook's code: the literal names passed as first argument
    to ``run_experiment``, the number of such calls whose name is computed (a variable), and the calls of
    :data:`SWEEP_CALLS`."""
    experiments, dynamic, sweeps = [], 0, []
    for node in ast.walk(ast.parse(code)):
        if not isinstance(node, ast.Call):
            continue
        name = _called_name(node)
        if name == "run_experiment" and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                experiments.append(first.value)
            else:
                dynamic += 1
        elif name in SWEEP_CALLS:
            sweeps.append(name)
    return experiments, dynamic, sweeps


def test_the_detector_finds_literal_computed_and_raw_sweep_calls():
    code = ('table = ch02.run_experiment("tables", RUN)\n'
            'def experiment(name):\n    return ch03.run_experiment(name, RUN)\n'
            'store.sweep(configs, train)\nprint("run_experiment(\'nope\')")\n')
    assert experiment_calls(code) == (["tables"], 1, ["sweep"])
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("%matplotlib inline\nx = 1"),
                                               nbformat.v4.new_markdown_cell("run_experiment('x', RUN)"),
                                               nbformat.v4.new_code_cell("run_experiment('y', RUN)")])
    assert experiment_calls(_code(notebook)) == (["y"], 0, [])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_experiment_a_notebook_runs_is_stored_with_the_book(path):
    module = chapter(_chapter_of(path))
    experiments, dynamic, sweeps = experiment_calls(_code(nbformat.read(path, as_version=4)))
    assert experiments or dynamic, f"{path.name} runs no experiment: is the detector out of date?"
    not_stored = sorted(set(experiments) - set(module.STORED))
    assert not not_stored, (f"{path.name} trains {not_stored} in the quick profile during the book build; "
                            f"store their quick runs with the book (add them to {module.__name__}.STORED and "
                            f"run `python -m neuronlab.experiments {module.CHAPTER} --experiments ...`)")
    if dynamic:  # a computed name may be any experiment of the chapter
        assert set(module.STORED) == set(module.EXPERIMENTS), f"{path.name} runs experiments by computed name"
    assert not sweeps, f"{path.name} trains a sweep directly ({sweeps}); use run_experiment on a stored one"


def _owned_configs(module, experiment):
    """The quick grid of ``experiment`` by the store that owns each configuration (its ``experiment`` key,
    chapter 3's shared runs, else the experiment itself)."""
    owners = {}
    for config in module.experiment_grid(experiment, "quick"):
        owners.setdefault(config.get("experiment", experiment), []).append(config)
    return owners


@pytest.mark.parametrize("name", list(CHAPTERS))
def test_every_stored_experiment_holds_every_run_of_its_quick_grid(name):
    module = chapter(name)
    assert module.STORED, f"{name} stores nothing"
    for experiment in module.STORED:
        for owner, configs in _owned_configs(module, experiment).items():
            assert owner in module.STORED, f"{name} {experiment}: its runs of {owner!r} are not stored"
            folder = store_path(STORED_RESULTS, name, owner, "quick")
            files = {f.stem: f for f in folder.glob("*.json")}
            missing = [c for c in configs if config_key(c) not in files]
            assert not missing, f"{folder} lacks {len(missing)} runs, e.g. {missing[0]}"
            for config in configs:
                record = json.loads(files[config_key(config)].read_text())
                assert config_key(record["config"]) == config_key(config)
                assert "test_error" in record["result"], files[config_key(config)]


@pytest.mark.parametrize("name", list(CHAPTERS))
def test_the_quick_profile_reads_every_stored_experiment_back_without_training(name, monkeypatch, tmp_path):
    module = chapter(name)
    monkeypatch.setattr(module, "run_config",
                        lambda config, *args, **kwargs: pytest.fail(f"{name} trained {config} in the quick profile"))
    monkeypatch.delenv("NEURONLAB_SMOKE", raising=False)
    _, run = module.setup("quick", 0, tmp_path / "runs")
    for experiment in module.STORED:
        assert STORED_RESULTS in run.store_path(experiment).parents
        table = module.run_experiment(experiment, run)
        assert len(table) == sum(len(c) for c in _owned_configs(module, experiment).values())
    assert not (tmp_path / "runs").exists()   # nothing written to the user's runs folder


def test_stored_folders_hold_json_records_of_stored_experiments_only():
    """What ships with the book is run records (no model weights, no temporaries or claims), each in the
    folder of an experiment the quick profile reads from there."""
    files = [p for p in STORED_RESULTS.rglob("*") if p.is_file()]
    assert files and all(p.suffix == ".json" and not p.name.startswith(".") for p in files), \
        sorted({p.suffix or p.name for p in files})
    for name in CHAPTERS:
        module = chapter(name)
        owners = {owner for experiment in module.STORED for owner in _owned_configs(module, experiment)}
        folders = {p.name for p in (STORED_RESULTS / name).glob("*") if p.is_dir()}
        assert folders == {f"{owner}_quick" for owner in owners}, name
