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


def key_figures(figures: Mapping[str, Any], headline: str | None = None):
    """Show the notebook's key figures and hand them to the runner.

    ``figures`` maps a short name (``orders_total``) to a number or string;
    ``headline`` is one plain-language sentence for the run's index page.
    Returns nothing, so the call can end a notebook cell without echoing.
    """
    from IPython.display import display

    payload = {"headline": headline, "figures": to_jsonable(dict(figures)),
               "order": [str(k) for k in figures]}  # JSON objects may be re-sorted on the way
    rows = "".join(
        f"<tr><th style='text-align:left'>{html.escape(k.replace('_', ' '))}</th>"
        f"<td style='text-align:right'>{html.escape(_fmt(v))}</td></tr>"
        for k, v in payload["figures"].items()
    )
    head = f"<p><b>{html.escape(headline)}</b></p>" if headline else ""
    table_html = f"{head}<table>{rows}</table>"
    text = (headline + "\n" if headline else "") + "\n".join(
        f"{k}: {_fmt(v)}" for k, v in payload["figures"].items()
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
        figs = found.get("figures", {})
        found["figures"] = {k: figs[k] for k in found["order"] if k in figs}
    return found
