"""Every code exercise of every chapter: its check passes on the notebook's reference solution and prints
one line, fails as "not implemented" on the skeleton the student edition gives, and no solution or check
is left without the other. The typical wrong answers of each check are in test_exercises_chNN.py."""

import importlib

import pytest

from neuronlab.exercises import ExerciseFailed

CHAPTERS = range(1, 6)


def _checks(number):
    module = importlib.import_module(f"neuronlab.exercises.ch{number:02d}")
    return {name[len("check_"):]: getattr(module, name) for name in module.__all__ if name.startswith("check_")}


CASES = [(number, name) for number in CHAPTERS for name in sorted(_checks(number))]


@pytest.mark.parametrize("number, name", CASES)
def test_the_reference_solution_passes_with_one_line(number, name, solutions, capsys):
    _checks(number)[name](solutions(number)[name])
    assert capsys.readouterr().out.strip() == f"{name}: all checks passed"


@pytest.mark.parametrize("number, name", CASES)
def test_the_skeleton_fails_as_not_implemented(number, name, skeletons):
    with pytest.raises(ExerciseFailed, match="not implemented"):
        _checks(number)[name](skeletons(number)[name])


@pytest.mark.parametrize("number", CHAPTERS)
def test_every_solution_has_its_check_and_every_check_its_solution(number, solutions):
    defined = set(solutions(number))
    assert defined == set(_checks(number)) and len(defined) >= 2
