#!/usr/bin/env bash
# Build the book: execute every notebook (quick profile unless NEURONLAB_PROFILE=full) and render HTML
# into _build/html, then a reveal.js slide deck per chapter into _build/html/slides. Open
# _build/html/index.html in a browser.
source "$(dirname "$0")/_venv.sh"
echo "==> building the book (profile: $NEURONLAB_PROFILE)"
.venv/bin/jupyter-book build . -W -n --keep-going "$@"
echo "==> slide decks: one reveal.js deck per chapter from its cells tagged 'slide'"
.venv/bin/python scripts/editions.py slides --out _build/html/slides --executed _build/jupyter_execute/notebooks
echo "    the decks are in _build/html/slides/ (e.g. _build/html/slides/03_neuron_steadiness.slides.html)"
echo "==> reading the pages in a headless browser (skipped without chromium); first screens in _build/screenshots"
.venv/bin/python scripts/check_in_browser.py _build/html --screenshots _build/screenshots
echo "==> done: open _build/html/index.html"
