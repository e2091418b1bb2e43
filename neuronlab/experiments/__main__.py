"""Command line: ``python -m neuronlab.experiments ch02 --profile full --runs runs --device cuda``.

Runs (or resumes, or reads back) a chapter's experiments into exactly the folders its notebook reads
(``<runs>/chNN/<experiment>_<profile>``; the book's stored quick-profile runs are read where they are) and
prints each experiment's table, with progress bars over the runs and the epochs. ``--list`` shows the
chapters and their experiments.

``--smoke`` (or ``NEURONLAB_SMOKE=1``) runs every chosen experiment through its real code paths with a tiny
budget on tiny generated data files (:mod:`neuronlab.experiments.smoke`), into ``<runs>/smoke/...``: a check,
in minutes on a CPU, that e.g. ``ch03 --profile full`` runs end to end before it is started on a GPU.
"""

from __future__ import annotations

import argparse
from typing import Dict, Optional, Sequence

import pandas as pd

from . import CHAPTERS, chapter


def parser() -> argparse.ArgumentParser:
    """The command line's arguments."""
    p = argparse.ArgumentParser(prog="python -m neuronlab.experiments",
                                description="Run the experiments of a chapter of the neuronlab book.")
    p.add_argument("chapter", nargs="?", choices=list(CHAPTERS), help="the chapter, e.g. ch03")
    p.add_argument("--list", action="store_true", help="list the chapters and their experiments, then stop")
    p.add_argument("--profile", default=None, help="quick (default, or $NEURONLAB_PROFILE) or full")
    p.add_argument("--runs", default=None,
                   help="root folder of new runs (default $NEURONLAB_RUNS or ~/.neuronlab/runs); runs go to "
                        "<runs>/<chapter>/<experiment>_<profile>")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: the profile's)")
    p.add_argument("--seed", type=int, default=0, help="the seed of the setup (each run has its own seeds)")
    p.add_argument("--experiments", nargs="*", default=None, help="which experiments (default: all)")
    p.add_argument("--smoke", action="store_true", default=None,
                   help="smoke test: every run of the profile's grids through the real code, first seed only, "
                        "1-2 epochs, on tiny generated data files, stored under <runs>/smoke "
                        "(default: $NEURONLAB_SMOKE)")
    return p


def list_chapters() -> str:
    """One line per chapter: its name, title and experiments."""
    lines = []
    for name in CHAPTERS:
        module = chapter(name)
        lines.append(f"{name}  {module.TITLE}\n      experiments: {', '.join(module.EXPERIMENTS)}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, pd.DataFrame]:
    """Parse ``argv``, run the chosen experiments and print their tables; returns ``{experiment: table}``."""
    args = parser().parse_args(argv)
    if args.list:
        print(list_chapters())
        return {}
    if args.chapter is None:
        parser().error("name a chapter (e.g. ch03) or use --list")
    module = chapter(args.chapter)
    names = args.experiments or list(module.EXPERIMENTS)
    unknown = [n for n in names if n not in module.EXPERIMENTS]
    if unknown:
        parser().error(f"{args.chapter} has no experiment(s) {unknown}; it has {list(module.EXPERIMENTS)}")
    _, run = module.setup(args.profile, args.seed, args.runs, device=args.device, smoke=args.smoke)
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
