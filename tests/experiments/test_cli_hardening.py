"""Every command line refuses a bad argument before anything runs (issue 15): exit status 2 and a message that
names the argument, the bad value and what is allowed. The functions that would train, measure, time or
write are replaced by ones that fail the test when called, so a rejected command line provably does nothing.

Entry points: ``python -m neuronlab.experiments`` and the scripts ``gpu_check.py``, ``bench.py``,
``set_repository.py`` and ``check_rendered_pages.py`` (``check_in_browser.py`` has its own tests).
"""

import contextlib
import io
import os
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neuronlab.experiments import CHAPTERS, chapter
from neuronlab.experiments import __main__ as cli
from neuronlab.experiments import bench

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
import check_rendered_pages  # noqa: E402
import set_repository  # noqa: E402

CH03 = list(chapter("ch03").EXPERIMENTS)
NOT_ROOT = pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                              reason="root may write into a read-only folder")


def _fail(what):
    def fail(*args, **kwargs):
        pytest.fail(f"{what} ran on a command line that should have been refused")
    return fail


def rejected(main, argv, *needles, code=2):
    """Run ``main(argv)``; it must exit with ``code`` and print every one of ``needles`` on stderr."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exc:
        main(argv)
    message = err.getvalue()
    assert exc.value.code == code, message
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


@pytest.fixture
def file_path(tmp_path):
    path = tmp_path / "a_file"
    path.write_text("not a folder")
    return path


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


# ====================================================================== python -m neuronlab.experiments
@pytest.fixture
def no_run(monkeypatch):
    """No chapter's setup or experiment may run."""
    for name in CHAPTERS:
        module = chapter(name)
        monkeypatch.setattr(module, "setup", _fail(f"{name}.setup"))
        monkeypatch.setattr(module, "run_experiment", _fail(f"{name}.run_experiment"))


EXPERIMENTS_CASES = {
    "no chapter": ([], ["name a chapter", "ch01, ch02, ch03, ch04, ch05", "--list"]),
    "unknown chapter": (["ch9"], ["argument chapter", "'ch9'", "ch01, ch02, ch03, ch04, ch05"]),
    "unknown chapter number": (["06"], ["argument chapter", "'06'", "ch01, ch02, ch03, ch04, ch05"]),
    "--experiments without a name": (["ch01", "--experiments"],
                                     ["argument --experiments", "at least one", "training"]),
    "unknown experiment": (["ch03", "--experiments", "mlp", "nope"],
                           ["argument --experiments", "'nope'", ", ".join(CH03)]),
    "comma-separated experiments": (["ch03", "--experiments", "mlp,gnn"], ["'mlp,gnn'", "separate names with spaces"]),
    "experiment named twice": (["ch03", "--experiments", "mlp", "gnn", "mlp"],
                               ["argument --experiments", "'mlp' named more than once"]),
    "unknown profile": (["ch01", "--profile", "bogus"], ["argument --profile", "'bogus'", "quick, full"]),
    "empty profile": (["ch01", "--profile", ""], ["argument --profile", "''", "quick, full"]),
    "negative seed": (["ch01", "--seed", "-1"], ["argument --seed", "-1", "0 to 2**64 - 1"]),
    "seed not an integer": (["ch01", "--seed", "1.5"], ["argument --seed", "'1.5' is not an integer"]),
    "seed too large": (["ch01", "--seed", str(2**64)], ["argument --seed", str(2**64), "0 to 2**64 - 1"]),
    "unknown device": (["ch01", "--device", "gpu"], ["argument --device", "'gpu'", "cpu, cuda, cuda:N"]),
    "device in capitals": (["ch01", "--device", "CUDA"], ["argument --device", "'CUDA'", "cpu, cuda"]),
    "device not on this machine": (["ch01", "--device", "meta"], ["argument --device", "'meta'", "not available"]),
    "empty --runs": (["ch01", "--runs", ""], ["argument --runs", "empty path"]),
    "unknown option": (["ch01", "--epochs", "3"], ["unrecognized arguments: --epochs 3"]),
}


@pytest.mark.parametrize("case", list(EXPERIMENTS_CASES))
def test_experiments_cli_refuses_bad_arguments_before_setup(case, no_run):
    argv, needles = EXPERIMENTS_CASES[case]
    rejected(cli.main, argv, *needles)


@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_experiments_cli_refuses_cuda_without_a_gpu(device, no_run, no_cuda):
    rejected(cli.main, ["ch02", "--profile", "full", "--device", device],
             "argument --device", repr(device), "CUDA is not available on this machine", "--device cpu")


def test_experiments_cli_refuses_a_gpu_index_the_machine_lacks(no_run, two_gpus):
    rejected(cli.main, ["ch02", "--device", "cuda:2"], "argument --device", "there is no GPU 2",
             "has 2 (cuda:0 to cuda:1)")
    assert cli.parse_args(["ch02", "--device", "cuda:1"]).device == "cuda:1"  # the machine has that one


def test_experiments_cli_refuses_mps_where_it_is_missing(no_run, monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    rejected(cli.main, ["ch01", "--device", "mps"], "argument --device", "'mps'", "not available on this machine")


def test_experiments_cli_refuses_a_runs_path_that_is_a_file(no_run, file_path):
    rejected(cli.main, ["ch01", "--runs", str(file_path)], "argument --runs", repr(str(file_path)), "is a file")
    rejected(cli.main, ["ch01", "--runs", str(file_path / "sub")], "argument --runs",
             f"lies under {str(file_path)!r}, which is a file")


def test_experiments_cli_names_the_environment_variable_that_is_wrong(no_run, file_path, monkeypatch):
    monkeypatch.setenv("NEURONLAB_RUNS", str(file_path))
    rejected(cli.main, ["ch01"], "$NEURONLAB_RUNS", "is a file")
    monkeypatch.delenv("NEURONLAB_RUNS")
    monkeypatch.setenv("NEURONLAB_PROFILE", "ful")
    rejected(cli.main, ["ch01"], "$NEURONLAB_PROFILE='ful'", "quick, full", "--profile")
    assert cli.parse_args(["ch01", "--profile", "full"]).profile == "full"  # the argument overrides it
    monkeypatch.delenv("NEURONLAB_PROFILE")
    monkeypatch.setenv("NEURONLAB_SMOKE", "ture")  # a misspelt "true" used to mean off: a real full run
    rejected(cli.main, ["ch01", "--profile", "full"], "$NEURONLAB_SMOKE='ture'", "1, true, yes, on", "--smoke")
    assert cli.parse_args(["ch01", "--smoke"]).smoke is True  # the argument overrides it
    for value in ("1", "TRUE", " on ", "0", "no", ""):
        monkeypatch.setenv("NEURONLAB_SMOKE", value)
        assert cli.parse_args(["ch01"]).smoke is None  # left to the setup, as before


@pytest.mark.parametrize("smoke", [False, True])
def test_experiments_cli_checks_every_store_folder_before_the_first_run(smoke, tmp_path, monkeypatch):
    monkeypatch.setattr(chapter("ch01"), "run_experiment", _fail("ch01.run_experiment"))
    monkeypatch.delenv("NEURONLAB_SMOKE", raising=False)
    blocker = (tmp_path / "smoke" / "ch01") if smoke else (tmp_path / "ch01")
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("a file where the chapter's folder belongs")
    argv = ["ch01", "--profile", "full", "--device", "cpu", "--runs", str(tmp_path)] + (["--smoke"] if smoke else [])
    rejected(cli.main, argv, "the runs of ch01 training cannot be stored", f"{str(blocker)!r}, which is a file")
    assert blocker.read_text() == "a file where the chapter's folder belongs"


def test_experiments_cli_valid_arguments_parse_as_before():
    args = cli.parse_args(["ch03"])
    assert (args.chapter, args.profile, args.runs, args.device, args.seed, args.experiments, args.smoke,
            args.list) == ("ch03", None, None, None, 0, None, None, False)
    args = cli.parse_args(["ch03", "--profile", "full", "--runs", "runs", "--device", "cpu", "--seed", "7",
                           "--experiments", "mlp", "gnn", "--smoke"])
    assert (args.chapter, args.profile, args.runs, args.device, args.seed, args.experiments, args.smoke) == (
        "ch03", "full", "runs", "cpu", 7, ["mlp", "gnn"], True)
    assert cli.parse_args(["--list"]).list and cli.parse_args(["--list"]).chapter is None
    # what chapter() and get_profile() already accepted, the command line accepts too
    assert [cli.parse_args([name]).chapter for name in ("3", "03", "ch3", "CH03")] == ["ch03"] * 4
    assert cli.parse_args(["ch01", "--profile", " FULL "]).profile == "full"


@settings(max_examples=40, deadline=None)
@given(seed=st.one_of(st.integers(-2**70, 2**70), st.sampled_from([-1, 0, 2**64 - 1, 2**64])))
def test_experiments_cli_seed_range_is_what_torch_accepts(seed):
    if 0 <= seed < 2**64:
        assert cli.parse_args(["ch01", "--seed", str(seed)]).seed == seed
        torch.Generator().manual_seed(seed)  # the independent fact: torch takes it
    else:
        rejected(cli.parse_args, ["ch01", "--seed", str(seed)], "argument --seed", str(seed))


@settings(max_examples=40, deadline=None)
@given(names=st.lists(st.sampled_from(CH03 + ["nope", "MLP", ""]), max_size=4))
def test_experiments_cli_accepts_exactly_nonempty_lists_of_distinct_known_experiments(names):
    valid = bool(names) and all(n in CH03 for n in names) and len(set(names)) == len(names)
    if valid:
        assert cli.parse_args(["ch03", "--experiments", *names]).experiments == names
    else:
        rejected(cli.parse_args, ["ch03", "--experiments", *names], "argument --experiments")


@settings(max_examples=50, deadline=None)
@given(text=st.one_of(st.text(max_size=6), st.integers(-3, 12).map(str), st.sampled_from(["ch²", "²", "ch", "ch-1"])))
def test_argument_types_answer_any_text_with_a_value_or_a_clear_refusal(text):
    """Never a raw ValueError/RuntimeError from int() or torch.device(): a value, or ArgumentTypeError."""
    import argparse

    for check in (cli.chapter_name, cli.profile_name, cli.seed_value, cli.device_name, cli.folder_path):
        try:
            value = check(text)
        except argparse.ArgumentTypeError as err:
            assert repr(text) in str(err) or "empty" in str(err)
            continue
        if check is cli.chapter_name:
            assert value in CHAPTERS
            if text.strip().isascii() and text.strip().isdigit():
                assert value == f"ch{int(text):02d}"


# ============================================================================== scripts/gpu_check.py
@pytest.fixture
def gpu_check(monkeypatch):
    """The script's module, with everything that measures or writes failing the test when called."""
    import gpu_check as module  # imported here: it sets a warnings filter and a start time on import
    for name in ("make_mode", "plan_rows", "nsr_ratios", "run_measurements", "write_outputs"):
        monkeypatch.setattr(module, name, _fail(f"gpu_check.{name}"))
    monkeypatch.delenv("OUT", raising=False)
    return module


GPU_CHECK_CASES = {
    "--chapters without a name": (["--chapters"], ["argument --chapters", "at least one", "ch01, ch02, ch03, ch04, ch05"]),
    "unknown chapter": (["--chapters", "ch03", "ch9"], ["argument --chapters", "'ch9'", "ch01, ch02, ch03, ch04, ch05"]),
    "chapter named twice": (["--chapters", "ch03", "3"], ["argument --chapters", "ch03 named more than once"]),
    "zero budget": (["--budget-seconds", "0"], ["argument --budget-seconds", "'0'", "positive finite"]),
    "negative budget": (["--budget-seconds", "-5"], ["argument --budget-seconds", "'-5'", "positive finite"]),
    "NaN budget": (["--budget-seconds", "nan"], ["argument --budget-seconds", "'nan'", "positive finite"]),
    "infinite budget": (["--budget-seconds", "inf"], ["argument --budget-seconds", "'inf'", "positive finite"]),
    "budget not a number": (["--budget-seconds", "7m"], ["argument --budget-seconds", "'7m' is not a number"]),
    "empty --out": (["--out", ""], ["argument --out", "empty path"]),
    "unknown option": (["--device", "cuda"], ["unrecognized arguments: --device cuda"]),
}


@pytest.mark.parametrize("case", list(GPU_CHECK_CASES))
def test_gpu_check_refuses_bad_arguments_before_measuring(case, gpu_check):
    argv, needles = GPU_CHECK_CASES[case]
    rejected(gpu_check.main, argv, *needles)


def test_gpu_check_refuses_an_output_folder_it_cannot_write_before_measuring(gpu_check, file_path, monkeypatch):
    rejected(gpu_check.main, ["--out", str(file_path)], "argument --out", repr(str(file_path)), "is a file")
    rejected(gpu_check.main, ["--out", str(file_path / "out")], "argument --out", "which is a file")
    monkeypatch.setenv("OUT", str(file_path))
    rejected(gpu_check.main, [], "$OUT", repr(str(file_path)), "is a file")


@NOT_ROOT
def test_gpu_check_refuses_a_read_only_output_folder(gpu_check, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        rejected(gpu_check.main, ["--out", str(locked / "out")], "argument --out", "is not writable")
    finally:
        locked.chmod(0o700)


def test_gpu_check_refuses_a_folder_the_os_denies_writing(gpu_check, tmp_path, monkeypatch):
    """The same refusal where the tests run as root (who may write anywhere): the OS says no."""
    denied = tmp_path / "denied"
    denied.mkdir()
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != denied)
    rejected(gpu_check.main, ["--out", str(denied / "out")], "argument --out", f"{str(denied)!r} is not writable")
    assert not (denied / "out").exists()


def test_gpu_check_valid_arguments_parse_as_before(gpu_check, tmp_path, monkeypatch):
    args = gpu_check.parse_args([])
    assert (args.out, args.budget_seconds, args.dry, args.chapters) == (None, 420.0, False, None)
    args = gpu_check.parse_args(["--out", str(tmp_path / "new"), "--budget-seconds", "60", "--dry",
                                 "--chapters", "ch03", "1"])
    assert (args.out, args.budget_seconds, args.dry, args.chapters) == (tmp_path / "new", 60.0, True,
                                                                        ["ch03", "ch01"])
    monkeypatch.setenv("HOME", str(tmp_path))
    assert gpu_check.parse_args(["--out", "~/x"]).out == tmp_path / "x"  # not a folder literally named "~"


# ============================================================================== scripts/bench.py
BENCH_CASES = {
    "zero repeats": (["--repeats", "0"], ["argument --repeats", "0 is not a count of at least 1"]),
    "negative repeats": (["--repeats", "-3"], ["argument --repeats", "-3 is not a count of at least 1"]),
    "repeats not an integer": (["--repeats", "2.5"], ["argument --repeats", "'2.5' is not an integer"]),
    "zero rounds": (["--rounds", "0"], ["argument --rounds", "0 is not a count of at least 1"]),
    "rounds not an integer": (["--rounds", "x"], ["argument --rounds", "'x' is not an integer"]),
    "zero threads": (["--threads", "0"], ["argument --threads", "0 is not a count of at least 1"]),
    "unknown table": (["nsr", "speed"], ["unknown table 'speed'", "nsr, campaign, perplexity, similarity"]),
}
TABLE_FUNCTIONS = ("nsr_table", "campaign_table", "perplexity_table", "similarity_table")


@pytest.mark.parametrize("case", list(BENCH_CASES))
def test_bench_refuses_bad_arguments_before_timing(case, monkeypatch):
    for name in TABLE_FUNCTIONS:
        monkeypatch.setattr(bench, name, _fail(f"bench.{name}"))
    argv, needles = BENCH_CASES[case]
    rejected(bench.main, argv, *needles)


def test_bench_times_only_the_tables_asked_for(monkeypatch, capsys):
    import pandas as pd
    calls = []
    for name in TABLE_FUNCTIONS:
        monkeypatch.setattr(bench, name, _fail(f"bench.{name}"))
    frame = pd.DataFrame({"case": ["MLP-4, m=1"], "round": [1], "memory": [1], "plain_ms": [1.0],
                          "square_ratio": [1.1], "nsr_ratio": [1.1], "fifo_ratio": [1.2], "nsr_extra_us": [100.0],
                          "nsr_over_fifo": [0.9]})
    monkeypatch.setattr(bench, "nsr_table", lambda **kw: calls.append(kw) or frame)
    out = bench.main(["nsr", "--repeats", "1", "--rounds", "2"])
    assert list(out) == ["nsr"] and calls == [{"repeats": 1, "rounds": 2, "device": None}]
    printed = capsys.readouterr().out
    assert printed.startswith("machine: ") and "PyTorch threads" in printed and "MLP-4, m=1" in printed


# ============================================================================== scripts/set_repository.py
@pytest.fixture
def no_rewrite(monkeypatch):
    monkeypatch.setattr(set_repository, "_rewrite_notebook", _fail("set_repository._rewrite_notebook"))
    monkeypatch.setattr(set_repository, "disagreements", _fail("set_repository.disagreements"))


@pytest.mark.parametrize("argv,needle", [(["--check", "extra"], "unrecognized arguments: extra"),
                                         (["--chek"], "unrecognized arguments: --chek")])
def test_set_repository_refuses_unknown_arguments(argv, needle, no_rewrite):
    rejected(set_repository.main, argv, needle)


@pytest.mark.parametrize("url,branch,needle", [
    ("https://gitlab.com/x/y", "main", "repository.url must be a GitHub address"),
    ('https://github.com/a"b/c', "main", "repository.url must be a GitHub address"),
    ("https://github.com/x/y", "", "repository.branch must be a branch name"),
    ("https://github.com/x/y", 'ma"in', "repository.branch must be a branch name"),
    ("https://github.com/x/y", "my branch", "repository.branch must be a branch name"),
    ("https://github.com/x/y", "-main", "repository.branch must be a branch name"),
    ("https://github.com/x/y", "a/../b", "repository.branch must be a branch name"),
])
@pytest.mark.parametrize("check", [False, True])
def test_set_repository_refuses_an_unusable_config_before_touching_a_file(url, branch, needle, check, no_rewrite,
                                                                          monkeypatch):
    readme = (REPO / "README.md").read_text()
    monkeypatch.setattr(set_repository, "repository", lambda: (url, branch))
    rejected(set_repository.main, ["--check"] if check else [], needle, repr(branch if "branch" in needle else url))
    assert (REPO / "README.md").read_text() == readme


@pytest.mark.parametrize("text,needle", [("title: x\n", "has no repository.url"),
                                         ("repository:\n  branch: main\n", "has no repository.url"),
                                         ("repository:\n  url: [1]\n", "has no repository.url"),
                                         ("repository:\n  url: https://github.com/x/y\n  branch: 3\n",
                                          "repository.branch must be a branch name, got 3")])
def test_set_repository_names_the_config_file_that_is_wrong(text, needle, tmp_path):
    config = tmp_path / "_config.yml"
    config.write_text(text)
    with pytest.raises(ValueError, match=needle) as exc:
        set_repository.repository(config)
    assert str(config) in str(exc.value)


def test_set_repository_accepts_the_projects_own_config_and_common_branch_names():
    url, branch = set_repository.repository()
    assert set_repository.colab_prefix(url, branch).endswith(f"/blob/{branch}/notebooks/")
    for name in ("main", "gh-pages", "release/v1.2", "feature_x+y"):
        assert f"/blob/{name}/" in set_repository.colab_prefix("https://github.com/o/n.git", name)


# ============================================================================== scripts/check_rendered_pages.py
@pytest.fixture
def no_check(monkeypatch):
    monkeypatch.setattr(check_rendered_pages, "problems", _fail("check_rendered_pages.problems"))


def test_check_rendered_pages_refuses_a_folder_that_is_not_a_built_book(no_check, tmp_path, file_path):
    rejected(check_rendered_pages.main, [str(tmp_path / "missing")], "argument html_root", "does not exist",
             "build it first")
    rejected(check_rendered_pages.main, [str(file_path)], "argument html_root", "is a file")
    rejected(check_rendered_pages.main, [str(tmp_path)], "argument html_root", "has no notebooks/ pages")
    rejected(check_rendered_pages.main, [str(tmp_path), "extra"], "unrecognized arguments: extra")


def _built_book(root: Path, skip: str = "") -> None:
    """A stand-in for a built book: every page with the buttons the checker looks for."""
    url, branch = set_repository.repository()
    owner_name = url.split("github.com/", 1)[1]
    (root / "notebooks").mkdir(parents=True)
    (root / "book").mkdir()
    for nb in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        if nb.stem != skip:
            (root / "notebooks" / f"{nb.stem}.html").write_text(
                f'colab.research.google.com/github/{owner_name}/blob/{branch}/notebooks/{nb.name} '
                f'_sources/notebooks/{nb.name} href="{url}"')
    for md in sorted((REPO / "book").glob("*.md")):
        (root / "book" / f"{md.stem}.html").write_text(f"_sources/book/{md.name}")


def test_check_rendered_pages_reports_a_missing_page_instead_of_crashing(tmp_path, capsys):
    _built_book(tmp_path)
    assert check_rendered_pages.main([str(tmp_path)]) == 0
    first = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))[0]
    (tmp_path / "notebooks" / f"{first.stem}.html").unlink()
    assert check_rendered_pages.main([str(tmp_path)]) == 1
    assert f"notebooks/{first.stem}.html is missing" in capsys.readouterr().out
