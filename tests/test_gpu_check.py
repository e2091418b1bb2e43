"""The dry form of ``scripts/gpu_check.py`` (CPU, tiny sizes) runs, within a minute, and covers the full profile.

The GPU check itself needs a CUDA machine; its dry form runs the same code on the CPU, so this test proves
that every full-profile experiment of every chapter can be planned, built, trained and tabulated.
"""

import csv
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from neuronlab.experiments import CHAPTERS, chapter

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_check.py"


def test_dry_run_covers_every_full_profile_experiment(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    env["PYTHONWARNINGS"] = "ignore::FutureWarning"
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(SCRIPT), "--dry", "--out", str(tmp_path)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    wall = time.perf_counter() - start
    log = f"exit {proc.returncode} after {wall:.1f} s\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, log

    with open(tmp_path / "table.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    expected = {(name, experiment) for name in CHAPTERS for experiment in chapter(name).EXPERIMENTS}
    assert {(r["chapter"], r["experiment"]) for r in rows} == expected, log
    for row in rows:
        assert row["finite"] == "True", row
        assert row["loss fell"] == "True", row
        for column in ("s/step", "projected s/epoch", "projected hours", "loss first", "loss last"):
            assert math.isfinite(float(row[column])), (column, row)
        assert int(row["steps measured"]) > 0 and int(row["epochs"]) > 0, row
    # every configuration of the full grids is counted once
    runs = sum(int(r["runs"]) for r in rows)
    configs = {(name, repr(sorted(c.items()))) for name in CHAPTERS for e in chapter(name).EXPERIMENTS
               for c in chapter(name).experiment_grid(e, "full")}
    assert runs == len(configs)

    table_md = (tmp_path / "table.md").read_text()
    assert "dry run on CPU: timings are not GPU timings" in table_md
    assert "torch " in table_md and "NSR overhead" in table_md
    assert all(f"| MLP-4, m={m} |" in table_md for m in (1, 5, 20, 50)), table_md
