"""Checks for the chapters' code exercises: ``exercises.ch02.check_elect(elect)`` and so on.

Each chapter module holds one ``check_<name>(fn)`` per code exercise. A check runs the student's function
on cases it draws itself and compares the results with properties or with an independent method of
``neuronlab``, never with a stored answer; it prints one line when everything passes and otherwise
raises :class:`ExerciseFailed` with what is wrong.
"""

from importlib import import_module

from ._checks import ExerciseFailed, expect, run_check

__all__ = ["ExerciseFailed", "expect", "run_check", "ch01", "ch02", "ch03", "ch04", "ch05"]


def __getattr__(name):
    if name in ("ch01", "ch02", "ch03", "ch04", "ch05"):
        return import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
