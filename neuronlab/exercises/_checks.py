"""What every exercise check shares: run a student's function on cases, and say in plain words what is wrong.

A check never compares with a stored answer a student could read off: it compares with properties (an
invariant, a closed form, a hand case) or with an independent method of :mod:`neuronlab` on random
problems drawn inside the check.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Optional, Tuple

import numpy as np
import torch

__all__ = ["ExerciseFailed", "run_check", "expect", "as_number", "as_array"]


class ExerciseFailed(AssertionError):
    """A student's answer is not right yet; the message says which case failed and what was expected."""


def expect(condition: bool, message: str) -> None:
    """Fail the check with ``message`` (what was expected, what came out) unless ``condition`` holds."""
    if not condition:
        raise ExerciseFailed(message)


def as_number(value, call: str) -> float:
    """The student's result as one finite float (a number or a one-element tensor), else a failure
    that quotes ``call``, the call that returned it."""
    try:
        number = float(value)
    except (TypeError, ValueError, RuntimeError):
        number = None
    expect(number is not None, f"{call} returned {value!r}; it should return one number")
    expect(math.isfinite(number), f"{call} returned {number}")
    return number


def as_array(result, shape: Tuple[int, ...], what: str, layout: str = "") -> np.ndarray:
    """The student's result (a tensor, an array or a list) as a float64 array of ``shape``, else a
    failure that asks for ``what`` of that shape (``layout`` says what its axes are)."""
    if isinstance(result, torch.Tensor):
        result = result.detach().cpu().double().numpy()
    try:
        values = np.asarray(result, dtype=np.float64)
    except (TypeError, ValueError):
        values = None
    expect(values is not None and values.shape == tuple(shape),
           f"return {what} of shape {tuple(shape)}{f' ({layout})' if layout else ''}, as a tensor, array or "
           f"list; got {getattr(values, 'shape', type(result).__name__)}")
    return values


def run_check(name: str, fn: Callable, cases: Iterable[Tuple[str, Callable[[Callable], None]]],
              hint: Optional[str] = None) -> None:
    """Run ``fn`` through every ``(description, case)`` of ``cases`` and print one line when all pass.

    ``case(fn)`` calls the student's function and raises :class:`ExerciseFailed` (through :func:`expect`)
    when a property does not hold. A skeleton that still raises ``NotImplementedError`` fails with a
    message saying so; any other exception is reported with the case it happened in. Returns ``True``.
    """
    if not callable(fn):
        raise ExerciseFailed(f"{name}: pass your function itself, e.g. check({name}), not {fn!r}")
    for description, case in cases:
        try:
            case(fn)
        except NotImplementedError:
            raise ExerciseFailed(f"{name} is not implemented yet: replace the `raise NotImplementedError` "
                                 "line by your code, run that cell, then this one again") from None
        except ExerciseFailed as failure:
            extra = f"\nHint: {hint}" if hint else ""
            raise ExerciseFailed(f"{name} is not right yet ({description}): {failure}{extra}") from None
        except Exception as error:  # noqa: BLE001 - the student's code may raise anything
            raise ExerciseFailed(f"{name} raised {type(error).__name__} ({description}): {error}") from error
    print(f"{name}: all checks passed")


def skeleton(source: str) -> str:
    r"""The student's version of a reference-solution cell: every top-level function keeps its decorators,
    signature and docstring, and its body becomes ``raise NotImplementedError("Student exercise: ...")``
    with the docstring's first line (split over lines of at most 79 characters); imports are kept, any
    other top-level statement and every comment is dropped (a solution cell holds imports and functions).

    >>> source = "import math\n\ndef area(r):\n    'The area of a circle of radius r.'\n    return math.pi * r ** 2\n"
    >>> print(skeleton(source))
    import math
    <BLANKLINE>
    <BLANKLINE>
    def area(r):
        'The area of a circle of radius r.'
        raise NotImplementedError(
            'Student exercise: the area of a circle of radius r.')
    <BLANKLINE>
    """
    import ast
    import textwrap

    tree = ast.parse(source)
    lines = source.splitlines()
    out: list = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append("\n".join(lines[node.lineno - 1:node.end_lineno]))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            docstring = ast.get_docstring(node)
            if not docstring:
                raise ValueError(f"the solution function {node.name}() needs a docstring that states the task")
            first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
            head = lines[first - 1:node.body[0].end_lineno]
            indent = " " * node.body[0].col_offset
            task = docstring.strip().splitlines()[0].rstrip(".")
            task = task[0].lower() + task[1:] if task[:1].isupper() and task[1:2].islower() else task
            message = f"Student exercise: {task}."
            line = f"{indent}raise NotImplementedError({message!r})"
            if len(line) > 79:  # the book's line length: one string per line inside the parentheses
                words = textwrap.wrap(message, 79 - len(indent) - 6, drop_whitespace=False)
                line = (f"{indent}raise NotImplementedError(\n"
                        + "\n".join(f"{indent}    {word!r}" for word in words) + ")")
            out.append("\n\n" + "\n".join(head) + f"\n{line}\n")
    text = "\n".join(out).strip("\n") + "\n"
    return text.replace("\n\n\n\n", "\n\n\n")
