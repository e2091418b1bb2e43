"""Read the rendered book in a real (headless) browser and fail on what a reader would see as broken:
raw TeX that MathJax did not typeset, code or output lines clipped at desktop width, images that do not
load, a duplicated header or search bar, a traceback. Saves a screenshot of each chapter's first screen
(desktop and phone width) for the build's artefacts.

    python scripts/check_in_browser.py _build/html --screenshots _build/screenshots

Needs Chromium (Debian: ``apt-get install chromium``); ``scripts/test.sh`` runs this when one is installed.
Each page is copied beside itself with a small script added that waits for MathJax, measures the page and
writes its findings into the DOM, which ``chromium --dump-dom`` prints.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DESKTOP = (1280, 900)
PHONE = (390, 844)

# Runs in the page: waits for MathJax, then measures. Elements inside the article only (the theme's own
# navigation is not ours to check).
PROBE = r"""
<script>
(() => {  // no globals: the page's own scripts must not clash with the probe's names
  let reported = false;
  const report = (found) => {
    if (reported) return;
    reported = true;
    const out = document.createElement("div");  // not a <pre>: the theme adds attributes to those
    out.id = "browser-check";
    out.hidden = true;
    out.textContent = JSON.stringify(found);
    document.body.appendChild(out);
  };
  const measure = () => {
    try {
      const article = document.querySelector("article") || document.body;
      const found = [];
      const visible = (el) => el.offsetParent !== null && getComputedStyle(el).visibility !== "hidden";
      // Raw TeX: text outside code and outside typeset math that still holds TeX commands or $ pairs.
      const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT);
      const tex = /\\(frac|mathrm|mathbf|mathbb|texttt|sum|sqrt|left|right|begin|partial|lambda|alpha|sigma)\b|\$[^$\s][^$]*\$/;
      while (walker.nextNode()) {
        const node = walker.currentNode;
        const parent = node.parentElement;
        if (!parent || parent.closest("pre, code, mjx-container, script, style, .highlight, .MathJax")) continue;
        if (tex.test(node.textContent)) found.push("raw TeX: " + node.textContent.trim().slice(0, 120));
      }
      // Clipped lines: a code or output block wider than its box (only blocks a reader can see).
      for (const pre of article.querySelectorAll("pre")) {
        if (!visible(pre)) continue;
        if (pre.scrollWidth > pre.clientWidth + 2) {
          const longest = pre.textContent.split("\n").reduce((a, b) => (b.length > a.length ? b : a), "");
          found.push(`clipped line (${pre.scrollWidth}px in ${pre.clientWidth}px): ${longest.trim().slice(0, 100)}`);
        }
      }
      // Images: every local image must load; remote ones (badges) cannot be fetched offline.
      for (const img of article.querySelectorAll("img")) {
        const src = img.getAttribute("src") || "";
        if (/^https?:/.test(src)) continue;
        if (!img.complete || img.naturalWidth === 0) found.push("image does not load: " + src);
      }
      // One header, one search field, one title.
      const headers = [...document.querySelectorAll("header.bd-header, .bd-header.navbar")].filter(visible);
      if (headers.length > 1) found.push(`${headers.length} page headers`);
      const searches = [...document.querySelectorAll(".search-button-field, .bd-search")].filter(visible);
      if (searches.length > 1) found.push(`${searches.length} search bars visible`);
      const titles = article.querySelectorAll("h1");
      if (titles.length !== 1) found.push(`${titles.length} h1 titles`);
      for (const out of article.querySelectorAll(".output, .cell_output")) {
        if (/Traceback \(most recent call last\)/.test(out.textContent)) found.push("traceback in an output");
      }
      return found;
    } catch (error) {
      return ["the probe failed: " + error];
    }
  };
  // Never wait forever: a resource that hangs must not hide the report (virtual time makes this fast).
  const waitAtMost = (promise, ms) => Promise.race([promise, new Promise((r) => setTimeout(r, ms))]);
  const loaded = new Promise((r) => (document.readyState === "complete" ? r() : window.addEventListener("load", r)));
  document.addEventListener("DOMContentLoaded", async () => {
    await waitAtMost(loaded, 8000);
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
      try { await waitAtMost(MathJax.startup.promise, 8000); } catch (e) {}
    }
    report(measure());
  });
  setTimeout(() => report(measure()), 18000);  // in case the events above never come
})();
</script>
"""


def find_browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _chromium(browser: str, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    # A profile folder of its own: two browsers sharing the default one (a parallel build) block each other.
    with tempfile.TemporaryDirectory(prefix="neuronlab-chromium-") as profile:
        command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                   "--allow-file-access-from-files", f"--user-data-dir={profile}", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


class NotLoaded(RuntimeError):
    """The browser returned the page without the probe's report (the page never finished loading)."""


def check_page(browser: str, page: Path) -> list[str]:
    """The problems a reader sees on ``page`` at desktop width; raises :class:`NotLoaded` if the browser
    did not let the probe report."""
    probe_page = page.with_name(f"_browser_check_{page.name}")
    source = page.read_text()
    probe_page.write_text(source.replace("</body>", PROBE + "</body>") if "</body>" in source else source + PROBE)
    try:
        for budget in (20000, 40000, 60000):  # longer tries for a page slowed down by a busy machine
            result = _chromium(browser, f"--window-size={DESKTOP[0]},{DESKTOP[1]}",
                               f"--virtual-time-budget={budget}", "--enable-logging=stderr", "--v=0",
                               "--dump-dom", probe_page.as_uri())
            match = re.search(r'<div id="browser-check"[^>]*>(.*?)</div>', result.stdout, re.S)
            if match:
                return json.loads(html.unescape(match.group(1)))
    finally:
        probe_page.unlink()
    errors = [line.split("] ", 1)[-1] for line in result.stderr.splitlines()
              if ("ERROR" in line and "dbus" not in line) or "FATAL" in line or "Uncaught" in line][-3:]
    raise NotLoaded(f"exit {result.returncode}; {len(result.stdout)} bytes of DOM; "
                    f"{' | '.join(errors) or 'no error printed'}")


def screenshot(browser: str, page: Path, target: Path, size) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    _chromium(browser, f"--window-size={size[0]},{size[1]}", "--virtual-time-budget=10000",
              f"--screenshot={target}", page.as_uri())


def pages(html_root: Path) -> list[Path]:
    """The chapters, the other book pages and the API pages."""
    found = sorted((html_root / "notebooks").glob("[0-9][0-9]_*.html"))
    found += sorted(p for p in (html_root / "book").rglob("*.html") if not p.name.startswith("_"))
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("html", type=Path, nargs="?", default=ROOT / "_build" / "html")
    parser.add_argument("--screenshots", type=Path, default=None,
                        help="folder for each chapter's first screen (desktop and phone width)")
    args = parser.parse_args(argv)
    args.html = args.html.resolve()  # the browser opens file:// addresses, which must be absolute
    browser = find_browser()
    if browser is None:
        print("no headless browser (chromium) found: browser check skipped")
        return 0
    failures, queue, unread = 0, pages(args.html), {}
    for _ in range(2):  # a page the browser returned without a report gets a second try at the end
        for page in queue:
            name = page.relative_to(args.html)
            try:
                problems = check_page(browser, page)
            except NotLoaded as why:
                unread[page] = str(why)
                continue
            unread.pop(page, None)
            print(f"{'ok ' if not problems else 'BAD'} {name}" + "".join(f"\n      {p}" for p in problems))
            failures += bool(problems)
        queue = list(unread)
    for page, why in unread.items():
        print(f"BAD {page.relative_to(args.html)}: the page never finished loading ({why})")
    if args.screenshots:
        for page in pages(args.html):
            if page.parent.name == "notebooks":
                for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
                    screenshot(browser, page, args.screenshots / f"{page.stem}_{label}.png", size)
        print(f"screenshots of each chapter's first screen: {args.screenshots}")
    return 1 if failures or unread else 0


if __name__ == "__main__":
    sys.exit(main())
