"""Command line: ``python -m neuronlab.experiments ch02 --profile full --runs runs --device cuda``.

Runs (or resumes, or reads back) a chapter's experiments into exactly the folders its notebook reads
(``<runs>/chNN/<experiment>_<profile>``; the book's stored quick-profile runs are read where they are) and
prints each experiment's table, with progress bars over the runs and the epochs. ``--list`` shows the
chapters and their experiments.

``--smoke`` (or ``NEURONLAB_SMOKE=1``) runs every chosen experiment through its real code paths with a tiny
budget on tiny generated data files (:mod:`neuronlab.experiments.smoke`), into ``<runs>/smoke/...``: a check,
in minutes on a CPU, that e.g. ``ch03 --profile full`` runs end to end before it is started on a GPU.

Every argument is checked before anything runs (:func:`parse_args`); a mistake ends the command with exit
status 2 and a message that names the argument, the value and what is allowed: the chapter (``ch03``, or
its number ``3``), the profile (``quick`` or ``full``, also when it comes from ``$NEURONLAB_PROFILE``), the
seed (an integer from 0 to 2**64 - 1), the device (``cpu``, ``cuda``, ``cuda:N`` or ``mps``, and only one
this machine has: ``cuda`` without a GPU is refused, not left to fail inside the first run), the runs
folder (not a file, nor under one, also when it comes from ``$NEURONLAB_RUNS``), ``$NEURONLAB_SMOKE`` (on
or off, not a misspelling that would silently mean off) and the experiments (at least one name if
``--experiments`` is given, each one of the chapter's, none twice). Whether the runs folder is writable is
left to the run store, which checks it before the first run: a read-only folder of finished runs can
still be read back.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pandas as pd
import torch

from ..config import PROFILE_ENV, PROFILES, RUNS_ENV, get_profile, runs_dir as resolve_runs_dir
from . import CHAPTERS, chapter
from .smoke import SMOKE_ENV

#: The seeds ``torch.manual_seed`` accepts: 0 to 2**64 - 1.
SEED_LIMIT = 2**64
_DEVICES = "cpu, cuda, cuda:N (N a GPU index) or mps"
_SMOKE_ON, _SMOKE_OFF = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


# ------------------------------------------------------------------------------------------ argument types
def chapter_name(text: str) -> str:
    """``text`` as a chapter name of :data:`neuronlab.experiments.CHAPTERS` (``"ch03"``, ``"ch3"``, ``"3"``
    -> ``"ch03"``); an ``argparse.ArgumentTypeError`` that lists the chapters otherwise."""
    key = text.strip().lower()
    digits = key[2:] if key.startswith("ch") else key
    if digits.isascii() and digits.isdigit():
        key = f"ch{int(digits):02d}"
    if key not in CHAPTERS:
        raise argparse.ArgumentTypeError(f"unknown chapter {text!r}; choose one of {', '.join(CHAPTERS)} "
                                         "(or its number, e.g. 3)")
    return key


def profile_name(text: str) -> str:
    """``text`` as a profile of :data:`neuronlab.config.PROFILES` (case and spaces ignored)."""
    try:
        return get_profile(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"unknown profile {text!r}; choose one of {', '.join(PROFILES)}") from None


def seed_value(text: str) -> int:
    """``text`` as a seed: an integer from 0 to ``SEED_LIMIT - 1`` (what ``torch.manual_seed`` accepts)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer; the seed is an integer from 0 to "
                                         "2**64 - 1") from None
    if not 0 <= value < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range; the seed is an integer from 0 to 2**64 - 1")
    return value


def device_name(text: str) -> str:
    """``text`` if it names a device this machine has: ``cpu``, ``cuda``, ``cuda:N`` with ``N`` below the
    number of GPUs, ``mps`` where Apple's backend is available (or another ``torch`` device type whose
    backend reports itself available). Otherwise an ``argparse.ArgumentTypeError`` that says why: an
    unknown name, CUDA missing (no GPU or driver, or a CPU-only build of torch), a GPU index too large."""
    name = text.strip()
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; use {_DEVICES}") from None
    if device.type == "cpu":
        return name
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = ("this torch is a CPU-only build" if torch.version.cuda is None
                   else "no NVIDIA GPU or driver was found")
            raise argparse.ArgumentTypeError(
                f"{text!r}: CUDA is not available on this machine ({why}; torch {torch.__version__}); use "
                "--device cpu, or leave --device out to use the profile's device")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise argparse.ArgumentTypeError(
                f"{text!r}: there is no GPU {device.index}; this machine has {count} "
                f"(cuda:0 to cuda:{count - 1})")
        return name
    backend = torch.backends.mps if device.type == "mps" else getattr(torch, device.type, None)
    available = getattr(backend, "is_available", None)
    if callable(available) and available():
        return name
    raise argparse.ArgumentTypeError(f"device {text!r} is not available on this machine; use {_DEVICES}")


def folder_path(text: str) -> str:
    """``text`` unless it is empty (an empty path would silently mean the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty path; name a folder (it is created when missing)")
    return text


def folder_problem(path: Path, writable: bool = False) -> Optional[str]:
    """Why ``path`` cannot be a folder to keep files in, or ``None``: it is a file, or lies under one, or
    (``writable``) the nearest existing folder at or above it cannot be written to."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        return f"{str(path)!r} is a file, not a folder; name a folder (it is created when missing)"
    for above in [path, *path.parents]:
        if above.exists():
            if not above.is_dir():
                return f"{str(path)!r} lies under {str(above)!r}, which is a file, not a folder"
            if writable and not os.access(above, os.W_OK | os.X_OK):
                return f"{str(above)!r} is not writable, so {str(path)!r} cannot be written; name another folder"
            return None
    return None


# -------------------------------------------------------------------------------------------- the parser
def parser() -> argparse.ArgumentParser:
    """The command line's arguments."""
    p = argparse.ArgumentParser(prog="python -m neuronlab.experiments",
                                description="Run the experiments of a chapter of the neuronlab book.")
    p.add_argument("chapter", nargs="?", type=chapter_name, choices=list(CHAPTERS),
                   help="the chapter, e.g. ch03 (or 3)")
    p.add_argument("--list", action="store_true", help="list the chapters and their experiments, then stop")
    p.add_argument("--profile", default=None, type=profile_name,
                   help=f"quick (default, or ${PROFILE_ENV}) or full")
    p.add_argument("--runs", default=None, type=folder_path,
                   help=f"root folder of new runs (default ${RUNS_ENV} or ~/.neuronlab/runs); runs go to "
                        "<runs>/<chapter>/<experiment>_<profile>")
    p.add_argument("--device", default=None, type=device_name,
                   help="cpu, cuda, cuda:1, mps, ... (default: the profile's); checked against this machine")
    p.add_argument("--seed", type=seed_value, default=0,
                   help="the seed of the setup (each run has its own seeds), 0 to 2**64 - 1")
    p.add_argument("--experiments", nargs="*", default=None, metavar="NAME",
                   help="which experiments, separated by spaces (default: all; --list shows them)")
    p.add_argument("--smoke", action="store_true", default=None,
                   help="smoke test: every run of the profile's grids through the real code, first seed only, "
                        "1-2 epochs, on tiny generated data files, stored under <runs>/smoke "
                        "(default: $NEURONLAB_SMOKE)")
    return p


def _experiment_problem(name: str, requested: Optional[List[str]], known: Sequence[str]) -> Optional[str]:
    """Why ``--experiments requested`` is wrong for chapter ``name`` (experiments ``known``), or ``None``."""
    if requested is None:
        return None
    choices = ", ".join(known)
    if not requested:
        return (f"argument --experiments: expected at least one experiment name; {name} has {choices} "
                "(leave --experiments out to run them all)")
    unknown = list(dict.fromkeys(n for n in requested if n not in known))
    if unknown:
        hint = ""
        if any("," in n and all(part in known for part in n.split(",") if part) for n in unknown):
            hint = " (separate names with spaces, not commas)"
        return (f"argument --experiments: {name} has no experiment {', '.join(map(repr, unknown))}; "
                f"choose from {choices}{hint}")
    twice = sorted({n for n in requested if requested.count(n) > 1})
    if twice:
        return f"argument --experiments: {', '.join(map(repr, twice))} named more than once; name each once"
    return None


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse and check ``argv`` (default ``sys.argv[1:]``); a mistake exits with status 2 and a message.

    Besides each argument's own check (:func:`chapter_name`, :func:`profile_name`, :func:`seed_value`,
    :func:`device_name`, :func:`folder_path`) it checks what depends on more than one argument or on the
    environment: a chapter is named unless ``--list`` is given, ``--experiments`` names at least one of the
    chapter's experiments and none twice, ``$NEURONLAB_PROFILE`` is a profile when ``--profile`` is left
    out, ``$NEURONLAB_SMOKE`` is on or off when ``--smoke`` is left out (a misspelt value would otherwise
    mean off, and a full-profile run would train for real), and the runs folder (``--runs``, else
    ``$NEURONLAB_RUNS``) is not a file nor under one.
    """
    p = parser()
    args = p.parse_args(argv)
    if args.list:
        return args
    if args.chapter is None:
        p.error(f"name a chapter ({', '.join(CHAPTERS)}, e.g. ch03) or use --list")
    problem = _experiment_problem(args.chapter, args.experiments, list(chapter(args.chapter).EXPERIMENTS))
    if problem:
        p.error(problem)
    if args.profile is None:
        try:
            get_profile(None)
        except ValueError:
            p.error(f"${PROFILE_ENV}={os.environ.get(PROFILE_ENV)!r} is not a profile; set it to one of "
                    f"{', '.join(PROFILES)}, or pass --profile")
    smoke_env = os.environ.get(SMOKE_ENV, "")
    if args.smoke is None and smoke_env.strip().lower() not in _SMOKE_ON + _SMOKE_OFF:
        p.error(f"${SMOKE_ENV}={smoke_env!r} is neither on ({', '.join(_SMOKE_ON)}) nor off "
                f"({', '.join(_SMOKE_OFF[1:])}, or unset); fix it, or pass --smoke for a smoke run")
    problem = folder_problem(resolve_runs_dir(args.runs))
    if problem:
        p.error(f"argument --runs: {problem}" if args.runs is not None else f"${RUNS_ENV}: {problem}")
    return args


def list_chapters() -> str:
    """One line per chapter: its name, title and experiments."""
    lines = []
    for name in CHAPTERS:
        module = chapter(name)
        lines.append(f"{name}  {module.TITLE}\n      experiments: {', '.join(module.EXPERIMENTS)}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, pd.DataFrame]:
    """Parse ``argv``, run the chosen experiments and print their tables; returns ``{experiment: table}``.

    Every argument is checked first (:func:`parse_args`), and every store folder of the chosen experiments
    after the chapter's setup, before the first run: a mistake trains nothing."""
    args = parse_args(argv)
    if args.list:
        print(list_chapters())
        return {}
    module = chapter(args.chapter)
    names = args.experiments or list(module.EXPERIMENTS)
    _, run = module.setup(args.profile, args.seed, args.runs, device=args.device, smoke=args.smoke)
    for name in names:
        problem = folder_problem(run.store_path(name))
        if problem:
            parser().error(f"the runs of {args.chapter} {name} cannot be stored: {problem}")
    tables = {}
    for name in names:
        mode = f"{run.profile}, smoke" if run.smoke else run.profile
        print(f"\n== {args.chapter} {name} ({mode}) -> {run.store_path(name)}")
        tables[name] = table = module.run_experiment(name, run, progress=True)
        with pd.option_context("display.width", 200, "display.max_columns", 30):
            print(module.summary(name, table).to_string(index=False))
    return tables


if __name__ == "__main__":  # pragma: no cover
    main()
