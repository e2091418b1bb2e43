"""The GitHub Actions workflows parse and use only keys that GitHub Actions accepts."""

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
TOP = {"name", "run-name", "on", "permissions", "env", "defaults", "concurrency", "jobs"}
JOB = {"name", "needs", "permissions", "if", "runs-on", "environment", "concurrency", "outputs", "env", "defaults",
       "steps", "timeout-minutes", "strategy", "continue-on-error", "container", "services", "uses", "with", "secrets"}
STEP = {"id", "if", "name", "uses", "run", "working-directory", "shell", "with", "env", "continue-on-error",
        "timeout-minutes"}
EVENTS = {"push", "pull_request", "workflow_dispatch", "schedule", "release", "workflow_call"}


def _load(path):
    data = yaml.safe_load(path.read_text())
    if True in data:  # YAML 1.1 reads the key `on` as the boolean true
        data["on"] = data.pop(True)
    return data


def test_both_workflows_exist():
    assert {p.name for p in WORKFLOWS} >= {"book.yml", "tests.yml"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_keys_are_those_github_actions_accepts(path):
    data = _load(path)
    assert set(data) <= TOP and {"on", "jobs"} <= set(data)
    assert set(data["on"]) <= EVENTS
    for name, job in data["jobs"].items():
        assert set(job) <= JOB, f"{path.name}: job {name} has unknown keys {set(job) - JOB}"
        assert "runs-on" in job and job["steps"]
        for needed in [job["needs"]] if isinstance(job.get("needs"), str) else job.get("needs", []):
            assert needed in data["jobs"]
        for step in job["steps"]:
            assert set(step) <= STEP, f"{path.name}: a step has unknown keys {set(step) - STEP}"
            assert ("uses" in step) != ("run" in step), f"{path.name}: a step needs exactly one of uses/run"


def test_the_book_workflow_builds_with_the_readme_command_and_deploys_the_html():
    data = _load(ROOT / ".github" / "workflows" / "book.yml")
    steps = data["jobs"]["build"]["steps"]
    assert any(s.get("run") == "bash scripts/build_book.sh" for s in steps)
    assert any(s.get("uses", "").startswith("actions/upload-pages-artifact") and s["with"]["path"] == "_build/html"
               for s in steps)
    assert data["permissions"]["pages"] == "write" and data["jobs"]["deploy"]["needs"] == "build"
    assert "bash scripts/build_book.sh" in (ROOT / "README.md").read_text()
    tests = _load(ROOT / ".github" / "workflows" / "tests.yml")
    assert any(s.get("run") == "bash .ci/run" for s in tests["jobs"]["test"]["steps"])
