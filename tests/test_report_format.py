"""The formatting layer (omni_lib.report) and the runner's HTML post-processing (issue 14).

Expected strings come from the issue's own examples ("58.2 bn IDR", "p = 0.0004",
"1 Jul 2024", "add to cart") and from the peers the layer builds on (pandas' Styler,
matplotlib's PercentFormatter), not from the functions themselves.
"""
from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from omni_lib import report, runner  # noqa: E402


def test_money_with_currency_and_units():
    assert report.money(58_202_633_400, "IDR") == "58.2 bn IDR"
    assert report.money(1_400_000, "IDR") == "1.4 M IDR"
    assert report.money(55_030, "IDR") == "55,030 IDR"
    assert report.money(58_202_633_400, "IDR", units=False) == "58,202,633,400 IDR"
    assert report.money(123.4, "USD") == "123 USD" and report.money(12.5, "USD") == "12.50 USD"
    assert report.money(float("nan"), "IDR") == "–"


def test_percent_p_values_dates_booleans_names():
    assert report.pct(0.372) == "37.2%" and report.pct(0.031, signed=True) == "+3.1%"
    assert report.pvalue(0.0004) == "p = 0.0004"
    assert report.pvalue(3.72e-05) == "p < 0.0001"
    assert report.pvalue(0.0312) == "p = 0.031" and report.pvalue(0.41) == "p = 0.41"
    assert report.p_cell(3.8e-07) == "< 0.0001"
    # a UTC instant shown on the business's own calendar (Jakarta is UTC+7: the 1st, not the 30th)
    assert report.date("2024-06-30T17:59:10+00:00", "Asia/Jakarta") == "1 Jul 2024"
    assert report.date(pd.Timestamp("2026-06-30 23:59:59", tz="Asia/Jakarta"), with_time=True) == "30 Jun 2026 23:59"
    assert report.yes_no(np.bool_(False)) == "no" and report.yes_no(True) == "yes"
    assert report.humanise("add_to_cart") == "add to cart"
    assert report.humanise("roc_auc_churn_model") == "ROC AUC churn model"


@pytest.mark.parametrize("value", [2.91e-07, 361246.532635, 8_476_969_000.0, 0.000123456, 1234.5678, 3.14159265])
def test_numbers_never_scientific_nor_long_decimals(value):
    text = report.number(value)
    assert "e" not in text.lower()
    assert not report._LONG_DECIMALS.search(text)
    if value >= 1:
        assert float(text.replace(",", "")) == pytest.approx(value, rel=1e-3)


def test_key_figure_kinds_from_names():
    f = report.format_value
    assert f("revenue_total", 58_202_633_400.0, currency="IDR") == "58.2 bn IDR"
    assert f("top_channel_revenue_share", 0.372) == "37.2%"
    assert f("srm_alert", False) == "no"
    assert f("srm_p_value", 3.7e-05) == "p < 0.0001"
    assert f("data_start", "2024-07-01T00:59:10+07:00") == "1 Jul 2024"
    assert f("high_value_probably_inactive", 73, currency="IDR") == "73"      # a count, not money
    assert f("orders_total", 149200) == "149,200"
    assert f("holdout_total_error_pct", -3.21) == "-3.2%"
    assert f("excluded_from_spend_model", 3553, currency="IDR") == "3,553"
    assert f("relative_lift", 0.326) == "32.6%" and f("chosen_model", "bgnbd") == "BG/NBD"


def test_table_styler_formats_hides_index_and_truncates():
    df = pd.DataFrame({"channel": ["web", "app", "store"], "revenue_share": [0.5, 0.3, 0.2],
                       "revenue": [5e9, 3e9, 2e9], "p_value": [3e-7, 0.04, np.nan], "flag": [True, False, True]})
    html = report.table(df, max_rows=2, full_file="all.csv", currency="IDR").to_html()
    assert "50.0%" in html and "5,000,000,000 IDR" in html and "&lt; 0.0001" in html
    assert "yes" in html and "True" not in html
    assert "revenue share" in html and "store" not in html          # humanised headers; truncated
    assert "showing the first 2 of 3 rows" in html and "href='all.csv'" in html
    assert 'class="row_heading' not in html                          # no index column
    assert report.lint_report_html(f"<div class='omni-period'></div>{html}") == []


def test_tick_formatters():
    from matplotlib.ticker import PercentFormatter

    fmt = report.money_formatter("IDR")
    assert [fmt(v) for v in (0, 500_000, 1_500_000, 2e9)] == ["0", "500 k", "1.5 M", "2 bn"]
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 0.5])
    report.pct_axis(ax, "y")
    assert isinstance(ax.yaxis.get_major_formatter(), PercentFormatter)
    assert ax.yaxis.get_major_formatter().format_pct(0.25, 1) == PercentFormatter(1.0).format_pct(0.25, 1)
    plt.close(fig)


def test_partial_last_period():
    assert report.last_period_partial(pd.Timestamp("2026-06-29"), "W", pd.Timestamp("2026-06-30 23:59:59", tz="Asia/Jakarta"))
    assert not report.last_period_partial(pd.Timestamp("2026-06-01"), "M", "2026-06-30 23:59:59")
    assert report.period_name("W") == "week" and report.period_name("M") == "month"


def test_lint_catches_what_a_reader_should_not_see():
    bad = ("<table><tr><td>nan</td><td>True</td></tr></table><p>p = 3.72e-05, 0.123456</p>"
           "<img src='x.png' alt='No description has been provided for this image'>")
    problems = " | ".join(report.lint_report_html(bad))
    for what in ("scientific notation", "more than 4 decimals", "raw values", "period statement", "alt text"):
        assert what in problems


def test_postprocess_adds_nav_toc_alt_and_wraps_tables():
    body = ("<html><head><title>x</title></head><body><div class='jp-Cell'><h1 id='T'>Title</h1><p>intro</p></div>"
            "<h2 id='A-&quot;q&quot;'>Part \"A\"<a class='anchor-link' href='#A-&quot;q&quot;'>¶</a></h2>"
            "<h3 id='a1'>Sub</h3><img src='data:image/png;base64,QUJD'><img src='data:image/png;base64,WFla'>"
            "<table><tr><td>1</td></tr></table></body></html>")
    out = runner.postprocess_html(body, {"QUJD": "Revenue per week"}, outputs=["t.csv", "x.json"])
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(out, "html.parser")
    nav = soup.select_one("nav.omni-nav")
    assert nav.select_one("a.omni-back")["href"] == "index.html"
    assert [a["href"] for a in nav.select(".omni-files a")] == ["t.csv", "x.json"]
    toc = [a["href"][1:] for a in nav.select(".omni-toc a")]
    assert toc == ["part-a", "sub"] and all(soup.find(id=t) for t in toc)
    assert soup.select_one(".anchor-link")["href"] == "#part-a"
    assert [i["alt"] for i in soup.find_all("img")] == ["Revenue per week", "figure 2 of Title"]
    assert soup.find("table").parent["class"] == ["omni-table-wrap"]
    numbered = runner.postprocess_html("<body><h1>T</h1><h2 id='x'>1. Can we trust it?</h2></body>")
    assert "<ul class=\"omni-toc\"" in numbered                 # no "1. 1. Can we trust it?"


def test_figure_alt_text_from_the_kernel_reaches_the_html(tmp_path):
    """use_style() makes each figure's PNG carry its title; to_html writes it into alt."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Demo\n\n## Part one"), nbformat.v4.new_code_cell(
        "import matplotlib.pyplot as plt\nfrom omni_lib import report\nreport.use_style()\n"
        "fig, ax = plt.subplots(); ax.plot([1, 2]); ax.set_title('Orders per week'); plt.show()\n"
        "import logging; logging.getLogger('x').warning('a library notice')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    from nbclient import NotebookClient

    NotebookClient(nb, kernel_name="python3").execute()
    assert runner.move_stderr_to_log(nb, tmp_path / "run.log", "demo") == 1
    assert "a library notice" in (tmp_path / "run.log").read_text()
    html = runner.to_html(nb)
    assert 'alt="Orders per week"' in html and "a library notice" not in html
    assert 'href="#part-one"' in html


def test_index_lists_earlier_runs_with_status(tmp_path):
    for rid, ok in (("20260101-090000", True), ("20260102-090000", False)):
        (tmp_path / rid).mkdir()
        (tmp_path / rid / "run.json").write_text(json.dumps({
            "started": f"2026-01-0{rid[7]}T09:00:00+07:00", "ok": ok,
            "notebooks": [{"status": "ok"}, {"status": "ok" if ok else "failed"}]}))
    hist = runner._run_history(tmp_path)
    assert [h["run_id"] for h in hist] == ["20260102-090000", "20260101-090000"]
    res = runner.NotebookResult("02_channel_performance", "ok", 1.0, html="02_channel_performance.html",
                                key_figures={"revenue_total": 5.5e10, "srm_alert": False},
                                key_figures_display={"revenue_total": "55.3 bn IDR", "srm_alert": "no"},
                                outputs=["table.csv"], executed="02_channel_performance.ipynb")
    page = runner._index_html("r", [res], {"started": "2026-01-03T09:00:00+07:00"}, history=hist)
    assert "55.3 bn IDR" in page and "SRM alert: <b>no</b>" in page and "href='table.csv'" in page
    assert "../20260101-090000/index.html" in page and "1 failed" in page and "2 Jan 2026 09:00" in page


def test_table_cells_escaped_exactly_once():
    html = report.table(pd.DataFrame({"segment": ["Can't Lose Them", "a<b"], "p_value": [1e-6, 0.5]})).to_html()
    assert "Can't Lose Them" in html and "&amp;" not in html and "&#39;" not in html
    assert "a&lt;b" in html and "&lt; 0.0001" in html
