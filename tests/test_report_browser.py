"""Every report of a sample run, rendered in headless Chromium at 1400 px (issue 14): no
horizontal overflow, every image loaded, every table-of-contents link resolves.

The browser is the system's Chromium; `make test` installs it (`.ci/install-browser`, Debian
package `chromium`) and the `browser` fixture does the same when it is missing.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser_tools import WIDTH, check_page, ensure_chromium

NOTEBOOKS = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.fixture(scope="session")
def browser() -> str:
    return ensure_chromium()


@pytest.mark.parametrize("stem", NOTEBOOKS + ["index"])
def test_page_fits_1400px_images_load_toc_resolves(report_run, browser, stem):
    r = check_page(report_run / f"{stem}.html", browser)
    assert r["clientWidth"] == WIDTH
    assert r["scrollWidth"] <= r["clientWidth"], "page wider than the window"
    assert r["wideTables"] == 0 and r["scrolledTables"] == 0, "a table is wider than the report column"
    assert all(i["ok"] for i in r["images"]), [i["alt"] for i in r["images"] if not i["ok"]]
    assert all(i["width"] <= WIDTH for i in r["images"])
    assert all(i["alt"] and not i["alt"].startswith("No description") for i in r["images"])
    if stem != "index":
        assert r["toc"], "no table of contents"
        assert all(t["ok"] for t in r["toc"]), [t["href"] for t in r["toc"] if not t["ok"]]
        assert "index.html" in r["links"]
        assert r["images"], "every report has at least one chart"
