"""Headless-Chromium checks of report pages (used by tests/test_report_browser.py and for the
screenshots in docs/screenshots/).

No Python browser library: the system's Chromium (``.ci/install-browser``) runs a page with a
small script appended that measures the page and writes the result into the DOM, and
``--dump-dom`` hands that back. The script runs on the ``load`` event, so every image has
loaded (or failed) by then.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT = 1400, 2000

CHECK_JS = r"""
<script>
window.addEventListener('load', function () {
  var de = document.documentElement, r = {};
  r.scrollWidth = de.scrollWidth; r.clientWidth = de.clientWidth; r.height = de.scrollHeight;
  r.images = Array.from(document.images).map(function (i) {
    return {ok: i.complete && i.naturalWidth > 0, alt: i.alt || '', width: i.getBoundingClientRect().width}; });
  r.toc = Array.from(document.querySelectorAll('nav.omni-nav a[href^="#"]')).map(function (a) {
    var raw = a.getAttribute('href').slice(1);
    return {href: a.getAttribute('href'),
            ok: !!(document.getElementById(raw) || document.getElementById(decodeURIComponent(raw)))}; });
  r.links = Array.from(document.querySelectorAll('nav.omni-nav a:not([href^="#"])')).map(function (a) {
    return a.getAttribute('href'); });
  r.scrolledTables = Array.from(document.querySelectorAll('.omni-table-wrap')).filter(function (w) {
    return w.scrollWidth > w.clientWidth + 1; }).length;
  // tables wider than the report column: JupyterLab's output area hides what does not fit
  r.wideTables = Array.from(document.querySelectorAll('table')).filter(function (t) {
    var box = t.closest('.jp-OutputArea-output') || document.body;
    return t.getBoundingClientRect().width > box.clientWidth + 1; }).length;
  var pre = document.createElement('pre'); pre.id = 'omni-check'; pre.textContent = JSON.stringify(r);
  document.body.appendChild(pre);
});
</script>
"""


def chromium() -> str | None:
    for b in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(b):
            return shutil.which(b)
    return None


def ensure_chromium() -> str:
    """The browser's path; installs Debian's chromium (``.ci/install-browser``) when missing."""
    found = chromium()
    if found:
        return found
    subprocess.run([str(ROOT / ".ci" / "install-browser")], check=True, timeout=900)
    found = chromium()
    if not found:
        raise RuntimeError("chromium could not be installed (see .ci/install-browser)")
    return found


def _flags(profile: str) -> list[str]:
    return ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
            f"--user-data-dir={profile}", f"--window-size={WIDTH},{HEIGHT}"]


def check_page(html_file: Path, browser: str | None = None) -> dict:
    """Render ``html_file`` at 1400 px and return the measurements of :data:`CHECK_JS`."""
    browser = browser or ensure_chromium()
    html_file = Path(html_file)
    text = html_file.read_text(encoding="utf-8")
    text = text.replace("</body>", CHECK_JS + "</body>") if "</body>" in text else text + CHECK_JS
    probe = html_file.with_name(f".check-{html_file.name}")  # beside the page, so relative links resolve
    probe.write_text(text, encoding="utf-8")
    try:
        with tempfile.TemporaryDirectory() as profile:
            out = subprocess.run([browser, *_flags(profile), "--virtual-time-budget=15000", "--dump-dom",
                                  probe.resolve().as_uri()], capture_output=True, text=True, timeout=180)
    finally:
        probe.unlink(missing_ok=True)
    m = re.search(r'<pre id="omni-check">(.*?)</pre>', out.stdout, re.S)
    if not m:
        raise RuntimeError(f"no measurement from chromium for {html_file.name}: {out.stderr[-500:]}")
    import html as _html

    return json.loads(_html.unescape(m.group(1)))


def screenshot(html_file: Path, png: Path, browser: str | None = None, height: int = HEIGHT) -> Path:
    """A 1400-px-wide screenshot of the top ``height`` px of a page."""
    browser = browser or ensure_chromium()
    with tempfile.TemporaryDirectory() as profile:
        flags = [f for f in _flags(profile) if not f.startswith("--window-size")] + [f"--window-size={WIDTH},{height}"]
        subprocess.run([browser, *flags, f"--screenshot={png}", Path(html_file).resolve().as_uri()],
                       capture_output=True, timeout=180, check=True)
    return Path(png)
