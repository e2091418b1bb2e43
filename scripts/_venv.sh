# Sourced by build_book.sh and test.sh: make .venv (if missing) and install neuronlab with its extras.
# PYTHON picks the interpreter (default python3, 3.10 or newer).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
echo "==> installing neuronlab[test,book] into .venv (first time: several minutes, PyTorch is large)"
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test,book]"
export NEURONLAB_PROFILE=${NEURONLAB_PROFILE:-quick}
export PYTHONWARNINGS=${PYTHONWARNINGS:-"ignore::FutureWarning:torch_geometric"}
