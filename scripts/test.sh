#!/usr/bin/env bash
# Run every test: unit tests, every notebook under nbval (quick profile), and a -W build of the book's
# structure (pages, references, API docs; notebooks are not executed a second time here).
source "$(dirname "$0")/_venv.sh"
echo "==> unit tests and notebooks (profile: $NEURONLAB_PROFILE)"
.venv/bin/python -m pytest tests notebooks --nbval-lax --nbval-current-env --nbval-cell-timeout=900 -p no:cacheprovider "$@"
echo "==> book structure check: jupyter-book build -W -n --keep-going (execution off)"
rm -rf _build/ci && mkdir -p _build/ci
sed "s/^  execute_notebooks: .*/  execute_notebooks: 'off'/" _config.yml > _build/ci/_config.yml
.venv/bin/jupyter-book build . --config _build/ci/_config.yml --path-output _build/ci -W -n --keep-going --quiet
echo "==> all tests passed"
