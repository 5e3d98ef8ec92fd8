"""Report lint over the HTML text of a real sample run (issue 14): what a manager reads must be
formatted (no scientific notation, at most 4 decimals, no raw nan/None/True/False cells), state
its data and period, and describe every image; each page links back to the index and to its files."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from omni_lib.report import lint_report_html

NOTEBOOKS = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("stem", NOTEBOOKS)
def test_report_passes_the_lint(report_run, stem):
    page = report_run / f"{stem}.html"
    assert page.exists()
    assert lint_report_html(page.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("stem", NOTEBOOKS)
def test_report_links_back_and_to_its_files(report_run, stem):
    from bs4 import BeautifulSoup

    soup = BeautifulSoup((report_run / f"{stem}.html").read_text(encoding="utf-8"), "html.parser")
    nav = soup.select_one("nav.omni-nav")
    assert nav is not None and nav.select_one("a.omni-back")["href"] == "index.html"
    files = [a["href"] for a in nav.select(".omni-files a")]
    assert f"{stem}.json" in files and f"{stem}.ipynb" in files
    assert all((report_run / f).is_file() for f in files)
    assert "OMNI_PSEUDONYM_KEY" not in soup.get_text()          # notices go to run.log, not the report


def test_index_shows_formatted_figures_and_files(report_run):
    index = (report_run / "index.html").read_text(encoding="utf-8")
    assert lint_report_html(index, period_required=False) == []
    run = json.loads((report_run / "run.json").read_text())
    for nb in run["notebooks"]:
        assert f"href='{nb['html']}'" in index
        for f in nb["outputs"]:
            assert f"href='{f}'" in index and (report_run / f).is_file()
    figs = {nb["notebook"]: nb["key_figures_display"] for nb in run["notebooks"]}
    assert figs["02_channel_performance"]["revenue_total"].endswith(" bn IDR")
    assert figs["02_channel_performance"]["top_channel_revenue_share"].endswith("%")
    assert figs["07_ab_test"]["srm_alert"] in ("yes", "no")
    assert "T00:" not in index and "+07:00" not in index         # dates as "1 Jul 2024"


def test_action_files_carry_marketing_consent(report_run, sample_config):
    import pandas as pd

    from omni_lib import store

    # the unified customers' own flag, as the store derived it from the channel records' consent
    customers = store.open_store(sample_config).table("customers")
    truth = customers.set_index("customer_id")["consent_marketing"].astype(bool)
    for name in ("churn_scores.csv", "customer_value.csv"):
        t = pd.read_csv(report_run / name, dtype={"customer_id": str}).set_index("customer_id")
        assert t["consent_marketing"].dtype == bool
        assert (t["consent_marketing"] == truth.reindex(t.index)).all(), name   # the customers table's own flag
        assert not t.index.str.contains("@").any()                              # ids, never e-mails
    value = pd.read_csv(report_run / "customer_value.csv")
    assert {"predicted_value", "p_alive", "segment", "consent_marketing"} <= set(value.columns)
    assert value["predicted_value"].is_monotonic_decreasing
    # the 06 headline's "N high-value customers probably no longer active" is the file's own count
    headline = json.loads((report_run / "06_cltv.json").read_text())["key_figures"]["high_value_probably_inactive"]
    assert int(value["high_value_probably_inactive"].sum()) == headline
