"""Data health: what is in the tables, over which dates, per channel, and what looks wrong.

Backs ``notebooks/00_data_health.ipynb``. Every function takes the loaded tables
(``{name: DataFrame or None}``) and returns a tidy DataFrame or a matplotlib figure.
"""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
import pandas as pd

#: The timestamp that dates each table's rows (contract, docs/contract.md).
TIME_COLUMN = {
    "identities": "created_at",
    "customers": "first_seen",
    "orders": "order_ts",
    "touchpoints": "event_ts",
    "surveys": "responded_at",
    "tickets": "opened_at",
    "experiments": "assigned_at",
    "spend": "date",
    "prices": "observed_at",
}
#: The id column of each table (None: the key is several columns).
ID_COLUMN = {
    "identities": "record_id",
    "customers": "customer_id",
    "orders": "order_id",
    "touchpoints": "event_id",
    "surveys": "response_id",
    "tickets": "ticket_id",
}
#: Columns that tie a row to a unified customer.
CUSTOMER_COLUMN = {t: "customer_id" for t in ("orders", "touchpoints", "surveys", "tickets")}
CUSTOMER_COLUMN["experiments"] = "unit_id"

Tables = Mapping[str, "pd.DataFrame | None"]


def _revenue(orders: pd.DataFrame) -> np.ndarray:
    """Net amount per order, 0 for cancelled orders (revenue as every report counts it)."""
    amount = orders["net_amount"].to_numpy(dtype="float64", na_value=np.nan)
    if "status" in orders:
        cancelled = orders["status"].astype("string").eq("cancelled").fillna(False).to_numpy(dtype=bool)
        amount = np.where(cancelled, 0.0, amount)
    return amount


def _present(tables: Tables) -> Iterable[tuple[str, pd.DataFrame]]:
    for name in TIME_COLUMN:
        df = tables.get(name)
        if df is not None:
            yield name, df


def table_overview(tables: Tables) -> pd.DataFrame:
    """Rows, columns and date coverage per table."""
    rows = []
    for name, df in _present(tables):
        ts_col = TIME_COLUMN[name]
        ts = df[ts_col] if ts_col in df else pd.Series(dtype="datetime64[ns]")
        ts = pd.to_datetime(ts, errors="coerce")
        first, last = (ts.min(), ts.max()) if len(ts) else (pd.NaT, pd.NaT)
        rows.append({
            "table": name,
            "rows": len(df),
            "columns": df.shape[1],
            "dated_by": ts_col,
            "first": first,
            "last": last,
            "days_covered": (last.normalize() - first.normalize()).days + 1 if pd.notna(first) and pd.notna(last) else 0,
        })
    return pd.DataFrame(rows, columns=["table", "rows", "columns", "dated_by", "first", "last", "days_covered"])


def channel_volumes(tables: Tables, freq: str = "W") -> pd.DataFrame:
    """Rows per table x channel x period (plus revenue for orders), tidy.

    ``freq`` is a pandas period alias: ``D``, ``W`` or ``M``.
    """
    frames = []
    for name in ("orders", "touchpoints", "tickets", "surveys"):
        df = tables.get(name)
        if df is None or "channel" not in df or df.empty:
            continue
        ts_col = TIME_COLUMN[name]
        # Periods are computed on local wall-clock time; dropping the zone keeps
        # week boundaries in the data's own timezone.
        ts = df[ts_col]
        if getattr(ts.dt, "tz", None) is not None:
            ts = ts.dt.tz_localize(None)
        period = ts.dt.to_period(freq).dt.start_time
        g = pd.DataFrame({"period": period, "channel": df["channel"].astype("string")})
        if name == "orders" and "net_amount" in df:
            g["revenue"] = _revenue(df)
            agg = g.groupby(["period", "channel"], observed=True).agg(
                rows=("revenue", "size"), revenue=("revenue", "sum"))
        else:
            agg = g.groupby(["period", "channel"], observed=True).size().to_frame("rows")
            agg["revenue"] = np.nan
        agg = agg.reset_index()
        agg.insert(0, "table", name)
        frames.append(agg)
    cols = ["table", "period", "channel", "rows", "revenue"]
    if not frames:
        return pd.DataFrame(columns=cols)
    return pd.concat(frames, ignore_index=True)[cols]


def channel_totals(tables: Tables) -> pd.DataFrame:
    """Per channel: orders, revenue, buying customers, touchpoints, tickets."""
    out = {}
    o = tables.get("orders")
    if o is not None and not o.empty:
        o = o.assign(revenue=_revenue(o))
        g = o.groupby(o["channel"].astype("string"), observed=True)
        out["orders"] = g.size()
        out["revenue"] = g["revenue"].sum()
        # siloed exports name the channel account (record_id), not the person
        out["buying_customers"] = g["customer_id" if "customer_id" in o else "record_id"].nunique()
    for name in ("touchpoints", "tickets"):
        df = tables.get(name)
        if df is not None and not df.empty:
            out[name] = df.groupby(df["channel"].astype("string"), observed=True).size()
    if not out:
        return pd.DataFrame()
    res = pd.DataFrame(out).fillna(0)
    res.index.name = "channel"
    if "revenue" in res:
        res["revenue_share"] = res["revenue"] / res["revenue"].sum()
        res = res.sort_values("revenue", ascending=False)
    return res.reset_index()


def quality_findings(tables: Tables, channels: Iterable[str] | None = None,
                     contract_problems: Iterable | None = None) -> pd.DataFrame:
    """Data-quality findings a reader should know about, one row each.

    Columns: ``severity`` (error / warning / info), ``table``, ``column``,
    ``finding``, ``rows`` and ``share`` of the table's rows.
    Contract problems (``schema.Problem`` objects) are included as errors.
    """
    found = []

    def add(severity, table, column, finding, n, total):
        found.append({"severity": severity, "table": table, "column": column, "finding": finding,
                      "rows": int(n), "share": (n / total) if total else np.nan})

    for p in contract_problems or []:
        total = len(tables.get(p.table)) if tables.get(p.table) is not None else 0
        add("error", p.table, p.column or "", f"contract: {p.check}", p.n_bad or 0, total)

    vocab = set(channels) if channels is not None else None
    for name, df in _present(tables):
        n = len(df)
        if n == 0:
            add("error", name, "", "table is empty", 0, 0)
            continue
        id_col = ID_COLUMN.get(name)
        if id_col and id_col in df:
            dup_ids = int(df[id_col].duplicated().sum())
            if dup_ids:
                add("error", name, id_col, "duplicate ids", dup_ids, n)
            rest = [c for c in df.columns if c != id_col]
            # Identical events under two ids point to a double export; two customer
            # records that look alike are no such sign (identity resolution's job).
            check_rows = name in ("orders", "touchpoints", "surveys", "tickets")
            dup_rows = int(df.duplicated(subset=rest).sum()) if rest and check_rows else 0
            if dup_rows:
                add("warning", name, ", ".join(rest[:3]) + ("…" if len(rest) > 3 else ""),
                    "rows identical apart from their id (double export?)", dup_rows, n)
        if vocab is not None and "channel" in df:
            unknown = ~df["channel"].astype("string").isin(vocab) & df["channel"].notna()
            if unknown.any():
                names = sorted(df.loc[unknown, "channel"].astype("string").unique())[:5]
                add("error", name, "channel", f"unknown channels {names}", unknown.sum(), n)

    customers = tables.get("customers")
    known_c = set(customers["customer_id"]) if customers is not None and "customer_id" in customers else None
    ident = tables.get("identities")
    known_r = set(ident["record_id"]) if ident is not None and "record_id" in ident else None
    for name, col in CUSTOMER_COLUMN.items():
        df = tables.get(name)
        if df is None or df.empty:
            continue
        if col not in df:  # a siloed export: rows name the channel system's record
            if "record_id" not in df:
                continue
            col = "record_id"
        known = known_c if col == "customer_id" else known_r
        missing = df[col].isna()
        if name == "orders" and missing.any():
            add("warning", name, col, "orders not linked to a customer", missing.sum(), len(df))
        elif name == "touchpoints" and missing.any():
            add("info", name, col, "anonymous events (no customer)", missing.sum(), len(df))
        if known is not None:
            orphan = ~missing & ~df[col].isin(known)
            if orphan.any():
                add("error", name, col, "customer id not in customers" if col == "customer_id"
                    else "record id not in identities", orphan.sum(), len(df))

    orders = tables.get("orders")
    if orders is not None and "status" in orders and not orders.empty:
        for status in ("cancelled", "returned"):
            k = int((orders["status"] == status).sum())
            if k:
                add("info", "orders", "status", f"{status} orders", k, len(orders))
    if customers is not None and "consent_analytics" in customers and not customers.empty:
        k = int((customers["consent_analytics"] == False).sum())  # noqa: E712 (nullable bool)
        if k:
            add("info", "customers", "consent_analytics",
                "customers without analytics consent (excluded from analyses)", k, len(customers))

    cols = ["severity", "table", "column", "finding", "rows", "share"]
    res = pd.DataFrame(found, columns=cols)
    order = pd.Categorical(res["severity"], ["error", "warning", "info"], ordered=True)
    return res.assign(_o=order).sort_values(["_o", "table"]).drop(columns="_o").reset_index(drop=True)


# --------------------------------------------------------------------------- plots
def plot_coverage(overview: pd.DataFrame):
    """Horizontal bars: the date range each table covers."""
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    ov = overview.dropna(subset=["first", "last"]).iloc[::-1]
    fig, ax = plt.subplots(figsize=(9, 0.45 * max(len(ov), 2) + 1))
    first = ov["first"].map(lambda t: t.tz_localize(None) if t.tzinfo else t)
    last = ov["last"].map(lambda t: t.tz_localize(None) if t.tzinfo else t)
    start = mdates.date2num(first.to_numpy())
    width = mdates.date2num(last.to_numpy()) - start
    ax.barh(ov["table"], width, left=start, color="#4C78A8")
    ax.xaxis_date()
    ax.set_title("Date coverage per table")
    ax.set_xlabel("date")
    ax.set_ylabel("table")
    fig.tight_layout()
    return fig


def plot_channel_volume(volumes: pd.DataFrame, table: str, value: str = "rows", title: str | None = None,
                        freq: str | None = None, data_end=None, currency: str | None = None):
    """One line per channel: rows (or revenue) of ``table`` per period.

    With ``freq`` and ``data_end`` a last period that ends after the data does is drawn
    dashed (an incomplete week is not a drop); revenue ticks read "1.5 bn" with the
    currency in the axis label.
    """
    import matplotlib.pyplot as plt

    from . import report

    v = volumes[volumes["table"] == table]
    wide = v.pivot_table(index="period", columns="channel", values=value, aggfunc="sum").sort_index()
    fig, ax = plt.subplots(figsize=(10, 4.5))
    partial = bool(freq) and not wide.empty and report.last_period_partial(wide.index[-1], freq, data_end)
    if not wide.empty:
        report.plot_lines(wide, ax, partial_last=partial, period=report.period_name(freq) if freq else "period")
    ax.set_title(title or f"{table}: {value} per channel over time")
    ax.set_xlabel(f"{report.period_name(freq)} (start date)" if freq else "period")
    if value == "revenue":
        report.money_axis(ax, "y", currency, label="revenue")
    else:
        ax.set_ylabel(f"{table} per {report.period_name(freq)}" if freq else value)
        ax.yaxis.set_major_formatter(plt.matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
    fig.tight_layout()
    return fig


def headline(overview: pd.DataFrame, findings: pd.DataFrame, tables: Tables) -> tuple[str, dict]:
    """One plain-language sentence and the key figures of the data-health report."""
    ov = overview.set_index("table")
    orders = tables.get("orders")
    customers = tables.get("customers")
    n_err = int((findings["severity"] == "error").sum())
    n_warn = int((findings["severity"] == "warning").sum())
    figures = {
        "tables_loaded": int(len(ov)),
        "customers": (int(len(customers)) if customers is not None else
                      int(orders["customer_id"].nunique()) if orders is not None and "customer_id" in orders else 0),
        "channel_accounts": int(len(tables["identities"])) if tables.get("identities") is not None else 0,
        "orders": int(len(orders)) if orders is not None else 0,
        "revenue": float(_revenue(orders).sum()) if orders is not None else 0.0,
        "first_order": ov.loc["orders", "first"] if "orders" in ov.index else None,
        "last_order": ov.loc["orders", "last"] if "orders" in ov.index else None,
        "sales_channels_used": int(orders["channel"].nunique()) if orders is not None else 0,
        "errors": n_err,
        "warnings": n_warn,
    }
    days = int(ov.loc["orders", "days_covered"]) if "orders" in ov.index else 0
    verdict = ("the data meets the contract" if n_err == 0
               else f"{n_err} contract error(s) must be fixed before the analyses can be trusted")
    who = (f"{figures['customers']:,} customers" if figures["customers"]
           else f"{figures['channel_accounts']:,} channel accounts (one person may hold several)"
           if figures["channel_accounts"] else "customers not yet known")
    text = (f"{figures['orders']:,} orders from {who} over {days:,} days "
            f"in {figures['sales_channels_used']} sales channels; {verdict}"
            + (f", {n_warn} warning(s) to review." if n_warn else "."))
    return text, figures
