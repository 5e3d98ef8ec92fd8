"""Channel performance, funnels, voice of customer, service levels and price consistency.

Every function takes contract tables (pandas) and returns a tidy DataFrame; all set-based
(groupby / merge_asof), no loop over customers or events. Definitions:

* **visits**: sessions (distinct ``session_id``) with a ``visit`` event on the channel, plus
  session-less ``visit`` events (store visits, direct visits) counted one each;
* **contacts**: ``inquiry`` touchpoints plus service tickets opened on the channel;
  **qualified contacts**: contacts by an identified customer who then added to cart, checked
  out or ordered (any channel) within ``qualify_days``;
* **orders / revenue / AOV**: non-cancelled orders; **buying customers**: distinct customers;
* **conversion rate** (interaction -> purchase): orders / (visits + contacts);
* **new vs repeat visitors**: a known customer's visit is *new* in the period of their first
  visit to that channel in the data, *repeat* afterwards (NumOfVisit); anonymous visits apart;
* **new customers**: customers whose ``first_seen`` falls in the period, by
  ``acquisition_channel``; **CAC** = spend / new customers where the spend table has the channel.
"""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["ChannelInputError", "channel_performance", "funnel", "cart_abandonment", "nps_table",
           "voice_of_customer", "awareness_check", "map_awareness", "service_levels",
           "price_consistency", "plot_funnel", "plot_metric", "FUNNEL_STAGES", "AWARENESS_RULES"]

FUNNEL_STAGES = ("visit", "product_view", "add_to_cart", "checkout", "purchase")
Tables = Mapping[str, "pd.DataFrame | None"]


class ChannelInputError(ValueError):
    """The tables cannot give the asked figures (the message names the table/column)."""


def _period(ts: pd.Series, freq: str) -> pd.Series:
    if freq not in ("D", "W", "M", "Q", "Y"):
        raise ChannelInputError(f"freq must be one of D, W, M, Q, Y; got {freq!r}")
    t = ts.dt.tz_localize(None) if ts.dt.tz is not None else ts   # local wall-clock periods
    return t.dt.to_period(freq).dt.start_time


def _in_range(df: pd.DataFrame, col: str, start, end) -> pd.DataFrame:
    if df is None or df.empty:
        return df
    m = np.ones(len(df), dtype=bool)
    from .timeutil import as_bound

    for bound, op in ((start, "ge"), (end, "lt")):
        if bound is not None:
            b = as_bound(bound, df[col], error=ChannelInputError, what="start" if op == "ge" else "end")
            m &= np.array(getattr(df[col], op)(b), dtype=bool)
    return df[m]


def channel_performance(tables: Tables, freq: str = "M", start=None, end=None,
                        qualify_days: float = 7.0) -> pd.DataFrame:
    """Per channel and period (``freq`` D/W/M/Q/Y, local time; ``start`` <= t < ``end``):
    visits, visitors (new / repeat / anonymous visits), contacts, qualified contacts, orders,
    buying customers, revenue, AOV, conversion rate, new customers, spend, CAC."""
    o = tables.get("orders")
    if o is None:
        raise ChannelInputError("orders: the table is required")
    tp, tk = tables.get("touchpoints"), tables.get("tickets")
    cu, sp = tables.get("customers"), tables.get("spend")
    frames = []
    # orders
    oo = o[np.array(o.get("status", pd.Series("completed", index=o.index)).ne("cancelled").fillna(True),
                    dtype=bool)]
    oo = _in_range(oo, "order_ts", start, end)
    g = oo.assign(period=_period(oo["order_ts"], freq)).groupby(["period", "channel"], observed=True)
    frames.append(g.agg(orders=("order_id", "size"), buying_customers=("customer_id", "nunique"),
                        revenue=("net_amount", "sum")))
    if tp is not None and not tp.empty:
        # first visit per (customer, channel) over the whole data: new vs repeat visitors
        v_all = tp[np.array(tp["event_type"] == "visit", dtype=bool)]
        first = v_all.groupby(["customer_id", "channel"], observed=True)["event_ts"].min().rename("first_visit")
        v = _in_range(v_all, "event_ts", start, end)
        v = v.assign(period=_period(v["event_ts"], freq))
        sess = v["session_id"].astype("str")
        key = sess.where(sess.notna(), "E:" + v["event_id"].astype("str"))
        visits = (pd.DataFrame({"period": v["period"], "channel": v["channel"], "k": key})
                  .drop_duplicates().groupby(["period", "channel"], observed=True).size().rename("visits"))
        known = v[np.array(v["customer_id"].notna(), dtype=bool)].join(first, on=["customer_id", "channel"])
        known = known.assign(new=np.array(_period(known["first_visit"], freq) == known["period"], dtype=bool))
        vis = known.drop_duplicates(["period", "channel", "customer_id"])
        gv = vis.groupby(["period", "channel"], observed=True)["new"]
        anon = (v[np.array(v["customer_id"].isna(), dtype=bool)].groupby(["period", "channel"], observed=True)
                .size().rename("anonymous_visits"))
        frames += [visits, gv.sum().rename("new_visitors"), (gv.size() - gv.sum()).rename("repeat_visitors"),
                   anon, known.groupby(["period", "channel"], observed=True).size().rename("known_visits")]
        inq = tp[np.array(tp["event_type"] == "inquiry", dtype=bool)][["customer_id", "channel", "event_ts"]]
    else:
        inq = pd.DataFrame(columns=["customer_id", "channel", "event_ts"])
    contacts = inq.rename(columns={"event_ts": "ts"})
    if tk is not None and not tk.empty:
        contacts = pd.concat([contacts, tk[["customer_id", "channel", "opened_at"]].rename(columns={"opened_at": "ts"})],
                             ignore_index=True)
    contacts = _in_range(contacts, "ts", start, end) if len(contacts) else contacts
    if len(contacts):
        contacts = contacts.assign(period=_period(contacts["ts"], freq))
        q = _qualified(contacts, tp, o, qualify_days)
        gc = contacts.assign(qualified=q).groupby(["period", "channel"], observed=True)["qualified"]
        frames += [gc.size().rename("contacts"), gc.sum().rename("qualified_contacts")]
    if cu is not None and "acquisition_channel" in cu:
        c = _in_range(cu, "first_seen", start, end)
        frames.append(c.assign(period=_period(c["first_seen"], freq))
                      .groupby(["period", "acquisition_channel"], observed=True).size()
                      .rename_axis(["period", "channel"]).rename("new_customers"))
    if sp is not None and not sp.empty:
        s = _in_range(sp, "date", start, end)
        frames.append(s.assign(period=_period(s["date"], freq)).groupby(["period", "channel"], observed=True)
                      ["spend"].sum())
    res = pd.concat(frames, axis=1).sort_index()
    for col in ("orders", "buying_customers", "revenue", "visits", "contacts", "qualified_contacts",
                "new_visitors", "repeat_visitors", "anonymous_visits", "new_customers"):
        if col in res:
            res[col] = res[col].fillna(0)
        else:
            res[col] = 0.0
    res["aov"] = res["revenue"] / res["orders"].replace(0, np.nan)
    inter = res["visits"] + res["contacts"]
    res["conversion_rate"] = res["orders"] / inter.replace(0, np.nan)
    res["cac"] = (res["spend"] / res["new_customers"].replace(0, np.nan)) if "spend" in res else np.nan
    cols = ["visits", "new_visitors", "repeat_visitors", "anonymous_visits", "contacts", "qualified_contacts",
            "orders", "buying_customers", "revenue", "aov", "conversion_rate", "new_customers", "spend", "cac"]
    if "spend" not in res:
        res["spend"] = np.nan
    return res[cols].reset_index()


def _qualified(contacts: pd.DataFrame, tp: pd.DataFrame | None, orders: pd.DataFrame, days: float) -> np.ndarray:
    """A contact is qualified when its (known) customer shows buying intent within ``days``."""
    intent = [orders[["customer_id", "order_ts"]].rename(columns={"order_ts": "t"})]
    if tp is not None:
        e = tp[np.array(tp["event_type"].isin(["add_to_cart", "checkout"]) & tp["customer_id"].notna(), dtype=bool)]
        intent.append(e[["customer_id", "event_ts"]].rename(columns={"event_ts": "t"}))
    it = pd.concat(intent, ignore_index=True).dropna().sort_values("t")
    c = contacts.reset_index(drop=True).assign(_i=np.arange(len(contacts)))
    known = c[np.array(c["customer_id"].notna(), dtype=bool)].sort_values("ts")
    m = pd.merge_asof(known, it.rename(columns={"t": "t_next"}), left_on="ts", right_on="t_next",
                      by="customer_id", direction="forward")
    ok = np.array((m["t_next"] - m["ts"]) <= pd.Timedelta(days=days), dtype=bool)
    out = np.zeros(len(c), dtype=bool)
    out[m["_i"].to_numpy()[ok]] = True
    return out


# ============================================================================ funnel
def funnel(touchpoints: pd.DataFrame, channels: Iterable[str] | None = None, start=None, end=None,
           exclude_campaigns: Iterable[str] | None = None) -> pd.DataFrame:
    """Sessions per channel reaching each stage visit -> product_view -> add_to_cart -> checkout
    -> purchase (a stage counts when the session has that event), with the step conversion
    (``continue``: share of the previous stage's sessions) and ``drop_off`` (1 - continue).
    Sessions with an event of a campaign in ``exclude_campaigns`` (e.g. experiments) are left out."""
    tp = _in_range(touchpoints, "event_ts", start, end)
    tp = tp[np.array(tp["session_id"].notna() & tp["event_type"].isin(FUNNEL_STAGES), dtype=bool)]
    if channels is not None:
        tp = tp[np.array(tp["channel"].isin(list(channels)), dtype=bool)]
    if exclude_campaigns is not None and "campaign" in tp:
        bad = tp.loc[np.array(tp["campaign"].isin(list(exclude_campaigns)), dtype=bool), "session_id"].unique()
        tp = tp[~np.array(tp["session_id"].isin(bad), dtype=bool)]
    if tp.empty:
        raise ChannelInputError("touchpoints: no session with funnel events (visit, product_view, ...)")
    s = tp[["channel", "session_id", "event_type"]].drop_duplicates()
    cnt = s.groupby(["channel", "event_type"], observed=True)["session_id"].size().unstack(fill_value=0)
    cnt = cnt.reindex(columns=list(FUNNEL_STAGES), fill_value=0)
    tidy = cnt.stack().rename("sessions").reset_index().rename(columns={"event_type": "stage"})
    tidy["stage"] = pd.Categorical(tidy["stage"], FUNNEL_STAGES, ordered=True)
    tidy = tidy.sort_values(["channel", "stage"]).reset_index(drop=True)
    prev = tidy.groupby("channel", observed=True)["sessions"].shift()
    tidy["continue"] = tidy["sessions"] / prev
    tidy["drop_off"] = 1 - tidy["continue"]
    first = tidy.groupby("channel", observed=True)["sessions"].transform("first")
    tidy["of_visits"] = tidy["sessions"] / first
    return tidy


def cart_abandonment(funnel_table: pd.DataFrame) -> pd.DataFrame:
    """Per channel: sessions with add_to_cart, with purchase, and the abandonment rate
    (1 - purchases / carts)."""
    w = funnel_table.pivot(index="channel", columns="stage", values="sessions")
    out = pd.DataFrame({"carts": w["add_to_cart"], "purchases": w["purchase"]})
    out["abandonment_rate"] = 1 - out["purchases"] / out["carts"].replace(0, np.nan)
    return out.reset_index()


def plot_funnel(funnel_table: pd.DataFrame, title: str = "Funnel per channel (share of visits reaching each stage)"):
    import matplotlib.pyplot as plt

    from . import report

    w = funnel_table.pivot(index="stage", columns="channel", values="of_visits")
    w.index = [report.humanise(s) for s in w.index]  # "add_to_cart" -> "add to cart"
    fig, ax = plt.subplots(figsize=(9, 4.5))
    w.plot(ax=ax, marker="o")
    ax.set_title(title)
    ax.set_xlabel("funnel stage")
    ax.set_ylabel("share of sessions with a visit")
    ax.yaxis.set_major_formatter(plt.matplotlib.ticker.PercentFormatter(1.0))
    ax.legend(title="channel")
    fig.tight_layout()
    return fig


def plot_metric(perf: pd.DataFrame, metric: str, title: str, ylabel: str, channels: Iterable[str] | None = None,
                freq: str | None = None, data_end=None, currency: str | None = None):
    """One line per channel: ``metric`` of :func:`channel_performance` per period.

    With ``freq`` and ``data_end`` an incomplete last period is drawn dashed; money metrics
    get "1.5 bn" ticks (currency in the label), rates percentage ticks.
    """
    import matplotlib.pyplot as plt

    from . import report

    p = perf if channels is None else perf[perf["channel"].isin(list(channels))]
    w = p.pivot_table(index="period", columns="channel", values=metric, aggfunc="sum").sort_index()
    w = w.loc[:, (w.fillna(0) != 0).any()]
    fig, ax = plt.subplots(figsize=(10, 4.2))
    partial = bool(freq) and not w.empty and report.last_period_partial(w.index[-1], freq, data_end)
    if not w.empty:
        report.plot_lines(w, ax, partial_last=partial, period=report.period_name(freq) if freq else "period")
    ax.set_title(title)
    ax.set_xlabel(f"{report.period_name(freq)} (start date)" if freq else "period")
    ax.set_ylabel(ylabel)
    if metric in ("revenue", "spend", "aov", "cac"):
        report.money_axis(ax, "y", currency)
    elif metric.endswith("_rate") or metric.endswith("_share"):
        report.pct_axis(ax, "y")
    fig.tight_layout()
    return fig


def totals_for_report(totals: pd.DataFrame, channel_config: Mapping | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The channel totals table as a reader should see it, and the notes that explain it.

    * conversion rate is orders per online interaction (visits plus contacts); for an offline
      channel (the store) the recorded visits are not sessions (only some store visits are
      logged), so no rate is shown there;
    * CAC is left empty with "no spend recorded" where the channel has no marketing spend
      (a 0 would read as free customers), and "no new customers" where spend bought none.
    Returns ``(table, notes)``; the table's ``cac_note`` column says why a CAC is missing.
    """
    t = totals.copy()
    notes = []
    kinds = {k: getattr(v, "kind", v) for k, v in (channel_config or {}).items()}
    offline = [c for c in t.index if kinds.get(c) == "offline"]
    if "conversion_rate" in t and offline:
        t.loc[offline, "conversion_rate"] = np.nan
        notes.append(f"conversion rate (orders per visit or contact) is not shown for {', '.join(offline)}: "
                     "recorded store visits are not sessions, so there is no denominator")
    if "cac" in t and "spend" in t:
        no_spend = t["spend"].fillna(0).le(0)
        t.loc[no_spend, "cac"] = np.nan
        t["cac_note"] = np.where(no_spend, "no spend recorded",
                                 np.where(t["cac"].isna(), "no new customers", ""))
        if no_spend.any():
            notes.append(f"no marketing spend is recorded for {', '.join(t.index[no_spend])}: their cost per new "
                         "customer (CAC) is unknown, not zero")
    return t, notes


# ============================================================================ voice of customer
def nps_table(scores: pd.Series, level: float = 0.95) -> dict:
    """NPS (promoters 9-10 minus detractors 0-6, in points) with a normal-approximation
    interval: var(NPS) = (p_p + p_d - (p_p - p_d)^2) / n (multinomial)."""
    s = scores.dropna().astype(float)
    n = len(s)
    if n == 0:
        return {"responses": 0, "nps": np.nan, "nps_low": np.nan, "nps_high": np.nan}
    pp, pd_ = float((s >= 9).mean()), float((s <= 6).mean())
    nps = pp - pd_
    se = np.sqrt(max(pp + pd_ - nps ** 2, 0.0) / n)
    z = stats.norm.ppf(0.5 + level / 2)
    return {"responses": n, "promoters": pp, "detractors": pd_, "nps": 100 * nps,
            "nps_low": 100 * max(nps - z * se, -1.0), "nps_high": 100 * min(nps + z * se, 1.0)}


def voice_of_customer(surveys: pd.DataFrame, freq: str | None = "M", level: float = 0.95) -> pd.DataFrame:
    """Per channel (and period, unless ``freq`` is None): responses, NPS with its interval,
    CSAT (mean 1-5 and share 4-5), CES (mean 1-7, higher = easier)."""
    if surveys is None or surveys.empty:
        raise ChannelInputError("surveys: the table is missing or empty")
    s = surveys.copy()
    keys = ["channel"]
    if freq is not None:
        s["period"] = _period(s["responded_at"], freq)
        keys = ["period", "channel"]
    s["nps"] = s["nps"].astype(float) if "nps" in s else np.nan
    s["promoter"] = np.where(s["nps"].notna(), (s["nps"] >= 9).astype(float), np.nan)
    s["detractor"] = np.where(s["nps"].notna(), (s["nps"] <= 6).astype(float), np.nan)
    s["csat_f"] = s["csat"].astype(float) if "csat" in s else np.nan
    s["csat_top2"] = np.where(s["csat_f"].notna(), (s["csat_f"] >= 4).astype(float), np.nan)
    s["ces_f"] = s["ces"].astype(float) if "ces" in s else np.nan
    g = s.groupby(keys, observed=True)
    out = g.agg(responses=("response_id", "size"), nps_n=("nps", "count"), promoters=("promoter", "mean"),
                detractors=("detractor", "mean"), csat=("csat_f", "mean"), csat_satisfied=("csat_top2", "mean"),
                ces=("ces_f", "mean"))
    nps = out["promoters"] - out["detractors"]
    se = np.sqrt(np.maximum(out["promoters"] + out["detractors"] - nps ** 2, 0) / out["nps_n"].replace(0, np.nan))
    z = stats.norm.ppf(0.5 + level / 2)
    out["nps"] = 100 * nps
    out["nps_low"] = 100 * (nps - z * se).clip(lower=-1)
    out["nps_high"] = 100 * (nps + z * se).clip(upper=1)
    return out.reset_index()


#: answer keywords -> awareness category (checked in this order; lower-cased, stripped answers)
AWARENESS_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("search_engine", ("google", "googling", "pencarian")),
    ("social_media", ("instagram", "dari ig", "tiktok", "facebook", "iklan di instagram")),
    ("messaging", ("whatsapp", "grup wa", "broadcast", "email", "e-mail")),
    ("marketplace", ("marketplace", "shopee", "tokopedia", "lazada", "bukalapak")),
    ("store", ("toko", "mall")),
    ("friends_family", ("teman", "keluarga", "saudara", "rekomendasi")),
    ("tv_print", ("iklan tv", "tv", "baliho", "majalah", "koran", "radio")),
)


def map_awareness(answers: pd.Series, rules=AWARENESS_RULES, exact: Mapping[str, str] | None = None) -> pd.Series:
    """Free-text "where did you hear about us?" answers -> categories. ``exact`` (lower-case
    answer -> category) wins; then the first keyword rule that matches; ``wa`` alone is
    messaging; any other answer is ``other``; no answer stays missing."""
    a = answers.astype("str").str.strip().str.lower()
    out = pd.Series(pd.NA, index=a.index, dtype="str")
    todo = a.notna().to_numpy(dtype=bool) & (a.fillna("") != "").to_numpy(dtype=bool)
    if exact:
        hit = a.map(dict(exact))
        out = out.where(hit.isna(), hit)
        todo &= hit.isna().to_numpy(dtype=bool)
    for cat, words in rules:
        m = todo & np.array(a.str.contains("|".join(map(_re_escape, words)), regex=True).fillna(False), dtype=bool)
        out[m] = cat
        todo &= ~m
    wa = todo & np.array(a.isin(["wa", "dari wa"]), dtype=bool)
    out[wa] = "messaging"
    todo &= ~wa
    out[todo] = "other"
    return out


def _re_escape(w: str) -> str:
    import re
    return re.escape(w)


def awareness_check(surveys: pd.DataFrame, normalize: bool = True, **kw) -> pd.DataFrame:
    """Purchase journey check: awareness category (rows) by survey channel (columns, the
    channel the customer bought or was served in); shares per column with ``normalize``."""
    cat = map_awareness(surveys["awareness_source"], **kw)
    t = pd.crosstab(cat.rename("heard about us via"), surveys["channel"].rename("channel"))
    return t / t.sum() if normalize else t


def service_levels(tickets: pd.DataFrame, freq: str | None = None) -> pd.DataFrame:
    """Per service channel (and period): tickets, first response time median and p90
    (minutes), first-contact resolution (``contacts == 1`` among resolved tickets... the FCR
    share counts every ticket with one contact), median resolution hours, unresolved share."""
    if tickets is None or tickets.empty:
        raise ChannelInputError("tickets: the table is missing or empty")
    t = tickets.copy()
    keys = ["channel"] if freq is None else ["period", "channel"]
    if freq is not None:
        t["period"] = _period(t["opened_at"], freq)
    t["response_min"] = (t["first_response_at"] - t["opened_at"]).dt.total_seconds() / 60
    t["resolution_h"] = (t["resolved_at"] - t["opened_at"]).dt.total_seconds() / 3600
    t["fcr"] = np.where(t["contacts"].notna(), (t["contacts"] == 1).astype(float), np.nan)
    t["unresolved"] = t["resolved_at"].isna().astype(float)
    g = t.groupby(keys, observed=True)
    out = g.agg(tickets=("ticket_id", "size"), response_median_min=("response_min", "median"),
                response_p90_min=("response_min", lambda x: x.quantile(0.9)), fcr=("fcr", "mean"),
                resolution_median_h=("resolution_h", "median"), unresolved=("unresolved", "mean"))
    return out.reset_index()


# ============================================================================ consistency
def price_consistency(prices: pd.DataFrame, tolerance: float = 0.0) -> pd.DataFrame:
    """SKUs priced differently across channels at the same observation time.

    One row per (sku, channel pair with the largest gap): the lowest and highest price, the
    channels holding them, gap (absolute and relative to the lowest), the share of the SKU's
    observation times with a gap, first and last time seen. Sorted by relative gap."""
    if prices is None or prices.empty:
        raise ChannelInputError("prices: the table is missing or empty")
    p = prices
    g = p.groupby(["sku", "observed_at"], observed=True)["price"]
    spread = (g.max() - g.min()).rename("gap")
    rel = spread / g.min()
    bad = rel[rel > tolerance]
    if bad.empty:
        return pd.DataFrame(columns=["sku", "product_name", "low_channel", "low_price", "high_channel",
                                     "high_price", "gap", "gap_pct", "share_of_observations", "first_seen",
                                     "last_seen"])
    pb = p.set_index(["sku", "observed_at"]).loc[bad.index].reset_index()
    lo = pb.sort_values(["sku", "observed_at", "price", "channel"]).groupby(["sku", "observed_at"]).head(1)
    hi = pb.sort_values(["sku", "observed_at", "price", "channel"], ascending=[True, True, False, True]) \
        .groupby(["sku", "observed_at"]).head(1)
    pair = lo[["sku", "observed_at", "channel", "price"]].merge(
        hi[["sku", "observed_at", "channel", "price"]], on=["sku", "observed_at"], suffixes=("_lo", "_hi"))
    pair["gap"] = pair["price_hi"] - pair["price_lo"]
    pair["gap_pct"] = pair["gap"] / pair["price_lo"]
    # the latest observation per sku describes the current gap
    latest = pair.sort_values("observed_at").groupby("sku").tail(1).set_index("sku")
    n_obs = p.groupby("sku")["observed_at"].nunique()
    n_bad = pair.groupby("sku")["observed_at"].nunique()
    out = pd.DataFrame({
        "low_channel": latest["channel_lo"], "low_price": latest["price_lo"], "high_channel": latest["channel_hi"],
        "high_price": latest["price_hi"], "gap": latest["gap"], "gap_pct": latest["gap_pct"],
        "share_of_observations": n_bad / n_obs.reindex(n_bad.index),
        "first_seen": pair.groupby("sku")["observed_at"].min(), "last_seen": pair.groupby("sku")["observed_at"].max()})
    if "product_name" in p:
        out.insert(0, "product_name", p.drop_duplicates("sku").set_index("sku")["product_name"].reindex(out.index))
    return out.sort_values("gap_pct", ascending=False).rename_axis("sku").reset_index()
