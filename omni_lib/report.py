"""Helpers notebooks use to talk to the report runner.

A notebook calls :func:`key_figures` once (usually near the top, after the
numbers are known). The call shows a small table in the report *and* emits the
same figures under a private MIME type, which ``omni run`` reads back from the
executed notebook to write ``<notebook>.json`` and the run's ``index.html``.
Nothing is written to disk by the notebook itself, so the notebook behaves the
same in JupyterLab, under Papermill and under nbval.
"""
from __future__ import annotations

import datetime as _dt
import html
import json
import math
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

KEY_FIGURES_MIME = "application/vnd.omni.key-figures+json"


def to_jsonable(value: Any) -> Any:
    """Turn numpy / pandas scalars and containers into plain JSON values."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        f = float(value)
        return None if math.isnan(f) or math.isinf(f) else f
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (pd.Timestamp, _dt.datetime, _dt.date)):
        return value.isoformat()
    if isinstance(value, pd.Timedelta):
        return value.total_seconds()
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if value is pd.NA or value is pd.NaT:
        return None
    return str(value)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:,.3g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def key_figures(figures: Mapping[str, Any], headline: str | None = None, *,
                kinds: Mapping[str, str] | None = None, currency: str | None = None):
    """Show the notebook's key figures and hand them to the runner.

    ``figures`` maps a short name (``orders_total``) to a number or string;
    ``headline`` is one plain-language sentence for the run's index page.
    Each figure is shown formatted (:func:`format_value`: money with currency and units,
    shares as %, p-values, dates, yes/no); ``kinds`` overrides the kind inferred from a
    name (``{"spend_ratio": "ratio"}``). The formatted text travels with the raw values
    (``display``) so the index shows exactly what the report shows.
    Returns nothing, so the call can end a notebook cell without echoing.
    """
    from IPython.display import display

    raw = to_jsonable(dict(figures))
    kinds = dict(kinds or {})
    shown = {k: format_value(k, v, kind=kinds.get(k), currency=currency) for k, v in raw.items()}
    payload = {"headline": headline, "figures": raw, "display": shown,
               "order": [str(k) for k in figures]}  # JSON objects may be re-sorted on the way
    rows = "".join(
        f"<tr><th style='text-align:left'>{html.escape(humanise(k))}</th>"
        f"<td style='text-align:right'>{html.escape(v)}</td></tr>"
        for k, v in shown.items()
    )
    head = f"<p><b>{html.escape(headline)}</b></p>" if headline else ""
    table_html = f"{head}<table class='omni-key-figures'>{rows}</table>"
    text = (headline + "\n" if headline else "") + "\n".join(
        f"{humanise(k)}: {v}" for k, v in shown.items()
    )
    display(
        {KEY_FIGURES_MIME: payload, "text/html": table_html, "text/plain": text},
        raw=True,
    )


def extract_key_figures(nb) -> dict | None:
    """Return the last key-figures payload found in an executed notebook."""
    found = None
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if KEY_FIGURES_MIME in data:
                payload = data[KEY_FIGURES_MIME]
                found = json.loads(payload) if isinstance(payload, str) else dict(payload)
    if found and found.get("order"):
        for part in ("figures", "display"):
            figs = found.get(part) or {}
            if figs:
                found[part] = {k: figs[k] for k in found["order"] if k in figs}
    return found


# =========================================================================== formatting layer
# One place for how a number reads in a report, on a chart and on the run index (issue 14):
# money in the configured currency with units, shares as %, p-values as "p = 0.004" / "p < 0.001",
# dates in the business timezone as "1 Jul 2024", booleans as words, names humanised. The string
# code is small and built on Python's format mini-language; tables use pandas' Styler, charts
# matplotlib's tick formatters and its "tableau-colorblind10" style.

#: report-wide defaults, set by :func:`set_context` (``period_statement`` calls it)
_CONTEXT: dict[str, Any] = {"currency": None, "timezone": None}

#: words kept upper-case (or spelled out) when a snake_case name is humanised
_ACRONYMS = {
    "aov": "AOV", "cac": "CAC", "nps": "NPS", "csat": "CSAT", "ces": "CES", "fcr": "FCR", "clv": "CLV",
    "cltv": "CLTV", "srm": "SRM", "rfm": "RFM", "roc": "ROC", "auc": "AUC", "pr": "PR", "rmse": "RMSE",
    "mae": "MAE", "ari": "ARI", "gmm": "GMM", "bgnbd": "BG/NBD", "mde": "MDE", "f1": "F1", "id": "id",
    "robo": "research-online-buy-offline", "did": "DiD", "bh": "BH", "cuped": "CUPED", "se": "std. error",
    "pct": "%", "12m": "12 months", "p90": "90th percentile", "kmeans": "k-means", "csv": "CSV",
    "sku": "SKU", "skus": "SKUs", "ab": "A/B", "idr": "IDR", "usd": "USD", "eur": "EUR",
}

_MONEY_WORDS = ("revenue", "spend", "value", "cac", "aov", "clv", "amount", "price", "gap", "cost")
_SHARE_WORDS = ("share", "rate", "ratio_pct", "conversion", "abandonment", "fcr", "retention", "churn_risk",
                "probability", "p_alive", "capture", "power", "rel_", "removal_effect", "credit", "cannibalised",
                "unresolved", "satisfied", "lift_rel", "_low", "_high", "prob_", "reduction", "relative_")
#: count words: a figure named like this is a number of things even when a money word is in it
_COUNT_WORDS = ("customers", "orders", "_count", "n_", "inactive", "records", "units", "tickets", "skus", "alerts",
                "harms", "experiments", "segments", "conversions", "excluded")
_UNITS = (
    (1e12, "tn"), (1e9, "bn"), (1e6, "M"), (1e3, "k"),
)


def set_context(currency: str | None = None, timezone: str | None = None) -> None:
    """Set the report's currency and business timezone (used when a call gives none)."""
    if currency is not None:
        _CONTEXT["currency"] = currency
    if timezone is not None:
        _CONTEXT["timezone"] = timezone


def humanise(name: Any) -> str:
    """``add_to_cart`` -> "add to cart", ``roc_auc_churn_model`` -> "ROC AUC churn model"."""
    text = str(name)
    if " " in text.strip() and "_" not in text:
        return text
    words = [w for w in text.replace("-", " ").replace("_", " ").split(" ") if w]
    out = []
    for w in words:
        low = w.lower()
        out.append(_ACRONYMS.get(low, w) if (low in _ACRONYMS and (w.islower() or w.isupper())) else w)
    if len(out) > 1 and out[-1] in ("l", "r"):  # pair tables: record_id_l / record_id_r
        out[-1] = "(first)" if out[-1] == "l" else "(second)"
    return " ".join(out)


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    try:
        return bool(isinstance(value, (float, np.floating)) and not math.isfinite(float(value)))
    except (TypeError, ValueError):
        return False


def number(value: Any, digits: int = 3, missing: str = "–") -> str:
    """A plain number with thousands separators and never scientific notation.

    Integers in full (``12,345``); other values with at most ``digits`` significant digits
    below 1,000 (``0.0123``, ``3.14``, ``271``) and rounded to whole numbers above.
    """
    if _is_missing(value):
        return missing
    if isinstance(value, (bool, np.bool_)):
        return yes_no(value)
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    v = float(value)
    if v == 0:
        return "0"
    if abs(v) >= 1000 or v == round(v) and abs(v) >= 1:
        return f"{v:,.0f}"
    decimals = max(0, min(4, digits - 1 - math.floor(math.log10(abs(v)))))
    text = f"{v:,.{decimals}f}"
    if float(text.replace(",", "")) == 0:  # smaller than the 4th decimal
        return "< 0.0001" if v > 0 else "> -0.0001"
    return text.rstrip("0").rstrip(".") if "." in text else text


def money(value: Any, currency: str | None = None, *, units: bool = True, missing: str = "–") -> str:
    """Money in the report's currency: ``58.2 bn IDR``, ``1.4 M IDR``, ``55,030 IDR``.

    ``units=False`` writes the amount in full (``58,202,633,400 IDR``). Amounts below a
    million are written in full, rounded to whole units (two decimals below 100).
    """
    if _is_missing(value):
        return missing
    cur = currency if currency is not None else _CONTEXT["currency"]
    v = float(value)
    suffix = f" {cur}" if cur else ""
    if units and abs(v) >= 1e6:
        for size, unit in _UNITS:
            if abs(v) >= size:
                return f"{v / size:,.{1 if abs(v) / size < 100 else 0}f} {unit}{suffix}"
    if abs(v) < 100 and v != round(v):
        return f"{v:,.2f}{suffix}"
    return f"{v:,.0f}{suffix}"


def pct(value: Any, digits: int = 1, *, signed: bool = False, missing: str = "–") -> str:
    """A share or rate (0.372) as a percentage: ``37.2%``; ``signed`` for changes (``+3.1%``)."""
    if _is_missing(value):
        return missing
    return f"{float(value):{'+' if signed else ''}.{digits}%}"


def pvalue(p: Any, missing: str = "–", *, bare: bool = False) -> str:
    """``p = 0.0004`` / ``p = 0.032`` / ``p < 0.0001`` / ``p = 0.41``: never scientific notation.

    ``bare`` drops the "p = " (for a table column already headed p-value): ``0.032``, ``< 0.0001``.
    """
    if _is_missing(p):
        return missing
    p = float(p)
    if p < 0.0001:
        text = "p < 0.0001"
    elif p < 0.01:
        text = f"p = {p:.4f}"
    else:
        text = f"p = {p:.3f}" if p < 0.1 else f"p = {p:.2f}"
    return text.replace("p = ", "").replace("p < ", "< ") if bare else text


def p_cell(p: Any) -> str:
    """A p-value in a table cell: ``0.032``, ``< 0.0001`` (see :func:`pvalue`)."""
    return pvalue(p, bare=True)


def signed(value: Any, missing: str = "–") -> str:
    """A change with its sign: ``+0.0123``, ``-1,250`` (see :func:`number`)."""
    if _is_missing(value):
        return missing
    text = number(value)
    return text if text.startswith(("-", "<", ">")) or float(value) == 0 else "+" + text


def date(value: Any, timezone: str | None = None, *, with_time: bool = False, missing: str = "–") -> str:
    """A date in the business timezone as ``1 Jul 2024`` (``1 Jul 2024 09:05`` with time)."""
    if _is_missing(value):
        return missing
    ts = pd.Timestamp(value)
    tz = timezone if timezone is not None else _CONTEXT["timezone"]
    if tz and ts.tzinfo is not None:
        ts = ts.tz_convert(tz)
    text = f"{ts.day} {ts:%b %Y}"
    return text + (f" {ts:%H:%M}" if with_time else "")


def yes_no(value: Any, missing: str = "–") -> str:
    """``True`` -> "yes", ``False`` -> "no", missing -> "–"."""
    if _is_missing(value):
        return missing
    return "yes" if bool(value) else "no"


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([+-]\d{2}:?\d{2}|Z)?)?$")


def kind_of(name: str, value: Any = None) -> str:
    """The kind a named figure is shown as: money, pct, p, date, bool, count, number or text.

    Inferred from the value's type and the figure's name (``revenue_total`` -> money,
    ``top_channel_revenue_share`` -> pct, ``srm_p_value`` -> p). ``share``/``rate`` win over
    money words (a revenue share is a share).
    """
    n = str(name).lower()
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, str):
        return "date" if _ISO_DATE.match(value.strip()) else "text"
    if isinstance(value, (pd.Timestamp, _dt.date)):
        return "date"
    if n.endswith("_pct") or "_pct_" in n:
        return "pct_points"
    if "p_value" in n or n.startswith("p_") or n.endswith("_p") or n in ("p", "p_holm", "p_bh"):
        return "p"
    if any(w in n for w in ("lift_x", "times", "per_customer_ratio", "spend_ratio", "top_decile_lift")):
        return "ratio"
    if any(w in n for w in _SHARE_WORDS) and not any(w in n for w in ("_per_", "per_customer")):
        if value is None or _is_missing(value) or -1.5 <= float(value) <= 1.5:
            return "pct"
    if any(w in n for w in _MONEY_WORDS) and not any(w in n for w in _COUNT_WORDS):
        return "money"
    if isinstance(value, (int, np.integer)):
        return "count"
    return "number"


def format_value(name: str, value: Any, kind: str | None = None, currency: str | None = None,
                 timezone: str | None = None) -> str:
    """Format one named figure for a reader (see :func:`kind_of` for the kinds)."""
    kind = kind or kind_of(name, value)
    if _is_missing(value):
        return "–"
    if kind == "bool":
        return yes_no(value)
    if kind == "date":
        return date(value, timezone)
    if kind == "text":
        return humanise(value) if " " not in str(value).strip() else str(value)
    if kind == "money":
        return money(value, currency)
    if kind == "pct":
        return pct(value)
    if kind == "pct_points":
        return f"{float(value):+.1f}%"
    if kind == "p":
        return pvalue(value)
    if kind == "p_cell":
        return p_cell(value)
    if kind == "ratio":
        return f"{float(value):,.2f}×"
    return number(value)


# --------------------------------------------------------------------------- tables
#: text columns that hold vocabulary codes (never ids or free text): shown humanised in tables
_CODE_COLUMNS = {"pattern", "metric", "event_type", "stage", "role", "method", "direction", "channel",
                 "channels", "acquisition_channel", "return_channel", "fulfilment", "status", "view",
                 "severity", "linked_by", "source", "risk_tier"}


def _col_formatter(col: str, series: pd.Series, currency: str | None):
    """A Styler formatter for one column, inferred from its name and dtype."""
    if pd.api.types.is_bool_dtype(series):
        return yes_no
    if isinstance(series.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(series):
        return lambda v: date(v)
    if not pd.api.types.is_numeric_dtype(series):
        if series.dtype == object and series.map(lambda v: isinstance(v, (bool, np.bool_))).any():
            return lambda v: yes_no(v) if isinstance(v, (bool, np.bool_)) else ("–" if _is_missing(v) else str(v))
        if col.lower() in _CODE_COLUMNS:  # vocabulary codes read as words: research_online_buy_offline
            return lambda v: "–" if _is_missing(v) else humanise(str(v))
        return lambda v: "–" if _is_missing(v) else str(v)
    finite = series[np.isfinite(series.astype(float))] if len(series) else series
    kind = kind_of(col, float(finite.abs().max()) if len(finite) else None)
    if kind == "count" or (kind == "number" and pd.api.types.is_integer_dtype(series)):
        return lambda v: number(v)
    if kind == "money":
        return lambda v: money(v, currency, units=False)
    if kind == "p":
        return p_cell
    return lambda v: format_value(col, v, kind=kind, currency=currency)


def table(df: pd.DataFrame, formats: Mapping[str, Any] | None = None, *, index: bool | None = None,
          max_rows: int | None = 30, full_file: str | None = None, currency: str | None = None,
          caption: str | None = None, humanise_headers: bool = True):
    """A report table: pandas Styler with every column formatted, numbers right-aligned,
    headers humanised, no index column, at most ``max_rows`` rows (then a note, with a link to
    ``full_file`` when the full table is written beside the report).

    ``formats`` maps a column to a format string or function and wins over the inferred ones.
    ``index``: keep the index as the first column (default: unless it is unnamed integers,
    i.e. row numbers).
    """
    df = df.copy()
    keep_index = index if index is not None else not (  # an unnamed integer index is row numbers
        df.index.name is None and all(n is None for n in df.index.names) and pd.api.types.is_integer_dtype(df.index))
    if keep_index:
        df = df.reset_index()
    df.columns = [str(c) for c in df.columns]
    n = len(df)
    shown = df.head(max_rows) if max_rows is not None and n > max_rows else df
    fmt = {c: _col_formatter(c, shown[c], currency) for c in shown.columns}
    fmt.update(dict(formats or {}))
    # every cell's final text is HTML-escaped once ("< 0.0001", "Can't Lose Them"); Styler's own
    # escape= works on the input value, so a formatter's output would slip through or be escaped twice
    def _escaped(f):
        render = f if callable(f) else (lambda v: f.format(v))
        return lambda v: html.escape(str(render(v)), quote=False)

    fmt = {c: _escaped(f) for c, f in fmt.items()}
    sty = shown.style.format(fmt, na_rep="–").hide(axis="index")
    numeric = [c for c in shown.columns if pd.api.types.is_numeric_dtype(shown[c])
               and not pd.api.types.is_bool_dtype(shown[c])]
    if numeric:
        sty = sty.set_properties(subset=numeric, **{"text-align": "right", "white-space": "nowrap"})
    text_cols = [c for c in shown.columns if c not in numeric]
    if text_cols:
        sty = sty.set_properties(subset=text_cols, **{"text-align": "left"})
    if humanise_headers:
        sty = sty.relabel_index([humanise(c) for c in shown.columns], axis="columns")
    sty = sty.set_table_attributes('class="omni-table"')
    notes = []
    if caption:
        notes.append(html.escape(caption))
    if len(shown) < n:
        more = f"showing the first {len(shown):,} of {n:,} rows"
        if full_file:
            more += f"; the full table is in <a href='{html.escape(full_file)}'>{html.escape(full_file)}</a>"
        notes.append(more)
    if notes:
        sty = sty.set_caption("; ".join(notes))
    return sty


# --------------------------------------------------------------------------- charts
def money_formatter(currency: str | None = None):
    """Matplotlib tick formatter for amounts: 0, 500 k, 1.5 M, 2 bn (the axis label names the currency)."""
    from matplotlib.ticker import FuncFormatter

    def _f(v, _pos=None):
        if v == 0:
            return "0"
        for size, unit in _UNITS:
            if abs(v) >= size:
                return f"{v / size:,.{0 if (v / size) == round(v / size) else 1}f} {unit}"
        return f"{v:,.0f}"

    return FuncFormatter(_f)


def money_axis(ax, axis: str = "y", currency: str | None = None, label: str | None = None) -> None:
    """Amounts on an axis with units instead of matplotlib's "1e8" offset; the label names the currency."""
    cur = currency if currency is not None else _CONTEXT["currency"]
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_formatter(money_formatter(cur))
    if label is not None:
        target.set_label_text(f"{label} ({cur})" if cur and cur not in label else label)


def pct_axis(ax, axis: str = "y", xmax: float = 1.0, decimals: int | None = None) -> None:
    """Shares (0..1) on an axis as percentages."""
    from matplotlib.ticker import PercentFormatter

    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(PercentFormatter(xmax, decimals=decimals))


#: Okabe-Ito colours (colour-blind safe, Okabe & Ito 2008), then grey, wine and teal from Paul Tol's set
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999",
           "#882255", "#44AA99"]  # no black: charts keep black for a reference (truth, estimate)


def figure_title(fig) -> str:
    """A figure's title for alt text: the suptitle, else the axes' titles joined."""
    sup = getattr(fig, "_suptitle", None)
    titles = [sup.get_text()] if sup is not None and sup.get_text() else []
    if not titles:
        titles = [a.get_title() for a in fig.axes if a.get_title()]
    if not titles:
        labels = [a.get_ylabel() for a in fig.axes if a.get_ylabel()]
        titles = [f"chart of {', '.join(labels)}"] if labels else []
    return "; ".join(dict.fromkeys(t.replace("\n", " ").strip() for t in titles)) or "chart"


def use_style() -> None:
    """Colour-blind-safe colours, readable fonts and titled-figure alt text for the report.

    Sets matplotlib's rcParams (Okabe-Ito colour cycle, font sizes, no "1e8" offsets) and,
    inside IPython, makes every figure's PNG carry its title as ``alt`` metadata, which the
    runner writes into the HTML ``alt`` attribute.
    """
    import matplotlib as mpl
    from cycler import cycler

    mpl.rcParams.update({
        "axes.prop_cycle": cycler(color=PALETTE),
        "figure.dpi": 100,
        "axes.titlesize": 12,
        "axes.labelsize": 10,
        "axes.formatter.useoffset": False,
        "axes.formatter.limits": (-5, 12),  # no scientific tick labels below a trillion
        "legend.fontsize": 9,
        "image.cmap": "cividis",
        "axes.spines.top": False,
        "axes.spines.right": False,
    })
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        return
    ip = get_ipython()
    if ip is None or type(ip).__name__ != "ZMQInteractiveShell":  # only inside a Jupyter kernel
        return
    # activate the inline backend now: it registers its own PNG formatter when it starts, which
    # would otherwise replace the one below at the first figure
    ip.run_line_magic("matplotlib", "inline")
    from IPython.core.pylabtools import print_figure
    from matplotlib.figure import Figure

    def _png_with_alt(fig):
        data = print_figure(fig, "png", bbox_inches="tight")
        return (data, {"alt": figure_title(fig)}) if data else None

    ip.display_formatter.formatters["image/png"].for_type(Figure, _png_with_alt)


# --------------------------------------------------------------------------- period statement
PERIOD_CLASS = "omni-period"


def revenue_total(orders: pd.DataFrame | None) -> float | None:
    """Revenue as every report counts it: the net amount of orders that were not cancelled
    (returned orders count with their net amount as recorded)."""
    if orders is None or "net_amount" not in orders:
        return None
    keep = np.ones(len(orders), dtype=bool)
    if "status" in orders:
        keep = ~orders["status"].astype("string").eq("cancelled").fillna(False).to_numpy(dtype=bool)
    return float(pd.to_numeric(orders["net_amount"], errors="coerce").to_numpy()[keep].sum())


def dataset_label(config) -> str:
    """A reader's name for the configured data: "the bundled sample retailer (data/sample)"."""
    root = getattr(config, "database", None) or getattr(config, "root", None)
    where = ""
    if root is not None:
        try:
            where = str(Path(root).resolve().relative_to(Path(config.path).resolve().parent))
        except (ValueError, TypeError, AttributeError):
            where = Path(root).name
    if getattr(config, "mode", None) == "sample":
        return f"the bundled sample retailer Toko Nusantara ({where})" if where else "the bundled sample retailer"
    return f"configured data ({where})" if where else "configured data"


def period_statement(tables: Mapping[str, pd.DataFrame | None], *, config=None, dataset: str | None = None,
                     currency: str | None = None, timezone: str | None = None,
                     consent: Mapping[str, Any] | str | None = None, date_column: str = "order_ts",
                     raw_tables: Mapping[str, pd.DataFrame | None] | None = None,
                     revenue_definition: str | None = None,
                     note: str | None = None, show: bool = True) -> str | None:
    """Show (or, with ``show=False``, return) the report's data and period statement; set the report context.

    One paragraph at the top of every report: the data set, the date range of its orders (in
    the business timezone), the customers and orders covered, the revenue by the one
    definition every report uses (:func:`revenue_total`), the consent exclusions and when the
    report ran. ``config`` (an ``omni_lib.config.Config``) gives the data set name, currency
    and timezone; ``consent`` is ``privacy.apply_consent``'s info dict or its note.
    ``raw_tables``: for a report on the raw tables (data health), the consent rule is applied
    here only to say how much less revenue the other reports count. ``revenue_definition``:
    for a report whose orders follow another definition, says which (shown instead of the
    common one).
    """
    if config is not None:
        currency = currency or getattr(config, "currency", None)
        timezone = timezone or getattr(config, "timezone", None)
        dataset = dataset or dataset_label(config)
    orders = tables.get("orders")
    if timezone is None and orders is not None and date_column in orders:
        tz = getattr(orders[date_column].dtype, "tz", None)
        timezone = str(tz) if tz is not None else None
    set_context(currency=currency, timezone=timezone)
    customers = tables.get("customers")
    parts = []
    if dataset:
        parts.append(f"<b>Data:</b> {html.escape(dataset)}")
    if orders is not None and len(orders) and date_column in orders:
        ts = orders[date_column]
        tz_text = f" ({html.escape(str(timezone))} time)" if timezone else ""
        parts.append(f"<b>period:</b> {date(ts.min(), timezone)} to {date(ts.max(), timezone)}{tz_text}")
    n_cust = (len(customers) if customers is not None else
              (orders["customer_id"].nunique() if orders is not None and "customer_id" in orders else None))
    covered = []
    if n_cust is not None:
        covered.append(f"{n_cust:,} customers")
    if orders is not None:
        covered.append(f"{len(orders):,} orders")
    if covered:
        parts.append("<b>covered:</b> " + " and ".join(covered))
    rev = revenue_total(orders)
    if rev is not None:
        what = (html.escape(revenue_definition) if revenue_definition else
                "net amount of orders not cancelled, the definition every report uses")
        parts.append(f"<b>revenue:</b> {money(rev, currency)} ({what})")
    cnote = consent.get("note") if isinstance(consent, Mapping) else consent
    if cnote:
        parts.append(f"<b>consent:</b> {html.escape(str(cnote))}")
    if raw_tables is not None:
        from .privacy import apply_consent

        kept, info = apply_consent(raw_tables)
        after = revenue_total(kept.get("orders"))
        if after is not None and rev is not None and info.get("excluded_customers"):
            parts.append(f"these are the raw tables, every customer included; the other reports leave out the "
                         f"{info['excluded_customers']:,} customers without analytics consent and count "
                         f"{money(after, currency)} revenue ({money(rev - after, currency)} less)")
    now = pd.Timestamp.now(tz=timezone or "UTC")
    parts.append(f"<b>report run:</b> {date(now, timezone, with_time=True)}")
    if note:
        parts.append(html.escape(note))
    body = "; ".join(parts) + "."
    out = f"<div class='{PERIOD_CLASS}'><p>{body}</p></div>"
    if show:
        from IPython.display import display

        text = re.sub(r"<[^>]+>", "", body)
        display({"text/html": out, "text/plain": text}, raw=True)
        return None  # shown; returning the HTML would echo it as text at the end of a cell
    return out


# --------------------------------------------------------------------------- time-series charts
_PERIOD_NAMES = {"D": "day", "W": "week", "M": "month", "MS": "month", "ME": "month", "Q": "quarter",
                 "QS": "quarter", "QE": "quarter", "Y": "year", "A": "year", "YS": "year", "YE": "year"}


def period_name(freq: str) -> str:
    """A pandas period alias in words: ``W`` -> "week", ``M`` -> "month"."""
    f = str(freq).upper().split("-")[0]
    return _PERIOD_NAMES.get(f, _PERIOD_NAMES.get(f.rstrip("SE"), str(freq)))


def last_period_partial(last_start: Any, freq: str, data_end: Any) -> bool:
    """True when the period starting at ``last_start`` ends after ``data_end`` (it is incomplete).

    ``last_start`` is a naive local period start (as ``to_period(...).start_time`` gives);
    ``data_end`` may be tz-aware (then compared in its own local time).
    """
    if data_end is None or last_start is None:
        return False
    end = pd.Timestamp(data_end)
    if end.tzinfo is not None:
        end = end.tz_localize(None)
    period_end = pd.Period(pd.Timestamp(last_start), freq=freq).end_time
    return bool(period_end > end + pd.Timedelta(seconds=1))


def plot_lines(wide: pd.DataFrame, ax, *, partial_last: bool = False, legend_title: str | None = "channel",
               period: str = "period") -> None:
    """One line per column of ``wide`` (index: period starts), colour-blind palette, legend outside.

    With ``partial_last`` the last, incomplete period is drawn dashed and the legend says so,
    so a drop at the end is not read as a real fall.
    """
    cols = list(wide.columns)
    for k, c in enumerate(cols):
        color = PALETTE[k % len(PALETTE)]
        y = wide[c]
        if partial_last and len(y) >= 2:
            ax.plot(y.index[:-1], y.iloc[:-1], color=color, lw=1.5, label=humanise(c))
            ax.plot(y.index[-2:], y.iloc[-2:], color=color, lw=1.5, ls=(0, (2, 2)))
        else:
            ax.plot(y.index, y, color=color, lw=1.5, label=humanise(c))
    handles, labels = ax.get_legend_handles_labels()
    if partial_last and len(wide) >= 2:
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], color="grey", ls=(0, (2, 2))))
        labels.append(f"last {period} incomplete (dashed)")
    if handles:
        ax.legend(handles, labels, title=legend_title, bbox_to_anchor=(1.01, 1), loc="upper left", fontsize=8)


# --------------------------------------------------------------------------- report lint
_SCI = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?[eE][-+]?\d+(?![\w])")
_LONG_DECIMALS = re.compile(r"(?<![\w.])\d[\d,]*\.\d{5,}(?!\w)")
_RAW_CELLS = {"nan", "NaN", "None", "True", "False", "<NA>", "NaT", "inf", "-inf", "+nan%", "nan%"}
DEFAULT_ALT = "No description has been provided for this image"


def lint_report_html(text: str, *, period_required: bool = True) -> list[str]:
    """Problems a reader would see in a report page (plain HTML text in, list of problems out).

    Checks the visible text (not scripts, styles or image data): no scientific notation,
    no number with more than 4 decimals, no raw ``nan`` / ``None`` / ``True`` / ``False``
    table cells, a period statement (``report.period_statement``) present, and every image
    with alt text other than nbconvert's default.
    """
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(text, features="html.parser")
    for tag in soup(["script", "style", "head"]):
        tag.decompose()
    problems = []
    visible = soup.get_text(" ")
    for rx, what in ((_SCI, "scientific notation"), (_LONG_DECIMALS, "more than 4 decimals")):
        hits = sorted(set(rx.findall(visible)))
        if hits:
            problems.append(f"{what}: {', '.join(hits[:8])}" + (f" (+{len(hits) - 8} more)" if len(hits) > 8 else ""))
    raw = sorted({c.get_text(strip=True) for c in soup.find_all(["td", "th"])} & _RAW_CELLS)
    if raw:
        problems.append(f"raw values in table cells: {', '.join(raw)}")
    if "nan%" in visible:
        problems.append("'nan%' in the text")
    if period_required and not soup.select(f".{PERIOD_CLASS}"):
        problems.append("no period statement (report.period_statement) at the top")
    bad_alt = [img for img in soup.find_all("img") if not img.get("alt") or img.get("alt") == DEFAULT_ALT]
    if bad_alt:
        problems.append(f"{len(bad_alt)} image(s) without a real alt text")
    return problems
