#!/usr/bin/env bash
# Run every test: unit tests, the docstrings' examples (doctests), every notebook under nbval (quick
# profile), and a -W build of the book's structure (pages, references, API docs; notebooks are not
# executed a second time here).
source "$(dirname "$0")/_venv.sh"
# New training runs go to a fresh folder, so the notebooks under test train what they do not read from
# the book's stored results instead of reading back runs left by an earlier session.
if [ -z "${NEURONLAB_RUNS:-}" ]; then
  export NEURONLAB_RUNS="$PWD/_build/test-runs"
  rm -rf "$NEURONLAB_RUNS"
fi
echo "==> unit tests, doctests and notebooks (profile: $NEURONLAB_PROFILE, new runs: $NEURONLAB_RUNS)"
# (the student editions in notebooks/student are not run: generated from the chapters, their check cells
# fail on purpose until a student fills in the skeletons; tests/test_student_editions.py checks them)
.venv/bin/python -m pytest tests neuronlab notebooks --ignore=notebooks/student --doctest-modules --nbval-lax \
  --nbval-current-env --nbval-cell-timeout=900 -p no:cacheprovider "$@"
echo "==> book structure check: jupyter-book build -W -n --keep-going (execution off)"
rm -rf _build/ci && mkdir -p _build/ci
# (the copy names the local Sphinx extensions by absolute path: relative ones resolve beside the copy)
sed -e "s/^  execute_notebooks: .*/  execute_notebooks: 'off'/" -e "s|: book/_ext|: $PWD/book/_ext|" \
  _config.yml > _build/ci/_config.yml
.venv/bin/jupyter-book build . --config _build/ci/_config.yml --path-output _build/ci -W -n --keep-going --quiet
echo "==> rendered pages: Colab launch, source download and repository buttons"
.venv/bin/python scripts/check_rendered_pages.py _build/ci/_build/html
echo "==> the pages in a headless browser: raw TeX, clipped lines, missing images, one header (needs chromium)"
.venv/bin/python scripts/check_in_browser.py _build/ci/_build/html --screenshots _build/screenshots
echo "==> all tests passed"
