#!/usr/bin/env bash
# GPU check of the full profile (no internet needed: synthetic tensors of the real sizes). A thin wrapper:
#   bash scripts/gpu_check.sh [--out DIR] [--budget-seconds 420] [--dry] [--chapters ch03 ...]
# Output: DIR (default $OUT when set, else gpu_check_out/)/table.csv and table.md; exit status 1 when a
# result is not finite or a training loss did not fall. Without CUDA it runs the dry form on the CPU.
# See the docstring of scripts/gpu_check.py for what is measured and how to read the projection.
# PYTHON picks the interpreter (default: .venv/bin/python when it works, else python3).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ] && .venv/bin/python -c "import torch" 2>/dev/null; then
    PYTHON=.venv/bin/python
  else
    PYTHON=python3
  fi
fi
export PYTHONWARNINGS=${PYTHONWARNINGS:-"ignore::FutureWarning"}
exec "$PYTHON" scripts/gpu_check.py "$@"
