"""Cross-channel customer journeys: paths to purchase, transitions, cross-channel patterns and
journey stages. Set-based throughout (merge_asof per customer, groupby), no loop over customers.

* :func:`purchase_paths`: for each order, the channels the customer went through since their
  previous order (at most ``lookback_days`` before), consecutive repeats collapsed, ending in
  ``buy:<order channel>``; plus path length and time to purchase.
* :func:`transition_matrix` / :func:`plot_flow`: channel-to-channel moves within those paths.
* :func:`cross_channel_patterns`: research online -> buy offline (ROBO), showrooming (see in
  store -> buy online), ask in one store -> buy in another; shares and revenue.
* :func:`journey_stages`: awareness, consideration, decision, retention, advocacy per customer,
  from touchpoint types, orders and surveys; where customers drop out.
"""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from omni_lib.attribution import _from_us, _us

__all__ = ["JourneyInputError", "purchase_paths", "top_paths", "transition_matrix", "plot_flow",
           "cross_channel_patterns", "journey_stages", "STAGES", "STAGE_OF_EVENT", "plot_stages"]

STAGES = ("awareness", "consideration", "decision", "retention", "advocacy")
#: touchpoint event type -> journey stage (purchase: decision; repeat orders: retention;
#: reviews and NPS promoters: advocacy)
STAGE_OF_EVENT = {"impression": "awareness", "click": "consideration", "visit": "consideration",
                  "product_view": "consideration", "inquiry": "consideration", "add_to_cart": "decision",
                  "checkout": "decision", "purchase": "decision", "review": "advocacy"}


class JourneyInputError(ValueError):
    """The tables cannot give the asked journeys (message names the table/column/count)."""


def _need(df, name, cols):
    if df is None:
        raise JourneyInputError(f"{name}: the table is missing")
    miss = [c for c in cols if c not in df.columns]
    if miss:
        raise JourneyInputError(f"{name}: missing column(s) {miss}")


def purchase_paths(touchpoints: pd.DataFrame, orders: pd.DataFrame, lookback_days: float = 30.0,
                   event_types: Iterable[str] | None = ("impression", "click", "visit", "product_view",
                                                          "add_to_cart", "checkout", "inquiry"),
                   sep: str = " > ") -> pd.DataFrame:
    """One row per (non-cancelled) order of a known customer: ``path`` (channels in time order,
    repeats collapsed, then ``buy:<channel>``), ``n_channels`` touched, ``n_steps``,
    ``days_to_purchase`` (first touch of the path to the order; 0 without touches),
    ``order_channel``, ``value``."""
    _need(touchpoints, "touchpoints", ("customer_id", "event_ts", "channel", "event_type"))
    _need(orders, "orders", ("order_id", "customer_id", "order_ts", "channel", "net_amount"))
    o = orders
    if "status" in o:
        o = o[np.array(o["status"].ne("cancelled").fillna(True), dtype=bool)]
    o = o[np.array(o["customer_id"].notna(), dtype=bool)]
    tp = touchpoints[np.array(touchpoints["customer_id"].notna(), dtype=bool)]
    if event_types is not None:
        tp = tp[np.array(tp["event_type"].isin(list(event_types)), dtype=bool)]
    t = pd.DataFrame({"customer_id": tp["customer_id"].to_numpy(), "t": _us(tp["event_ts"]),
                      "channel": tp["channel"].to_numpy()}).sort_values("t", kind="stable")
    oo = pd.DataFrame({"customer_id": o["customer_id"].to_numpy(), "t_order": _us(o["order_ts"]),
                       "order_id": o["order_id"].to_numpy(), "order_channel": o["channel"].to_numpy(),
                       "value": o["net_amount"].to_numpy(dtype=float)}).sort_values(["t_order", "order_id"])
    m = pd.merge_asof(t, oo[["customer_id", "t_order", "order_id"]], left_on="t", right_on="t_order",
                      by="customer_id", direction="forward")
    lb = float(lookback_days) * 86_400e6
    ok = np.array(m["order_id"].notna(), dtype=bool) & (m["t_order"].to_numpy(dtype=float) - m["t"].to_numpy() <= lb)
    m = m[ok].sort_values(["order_id", "t"], kind="stable")
    # collapse consecutive repeats of a channel within one order's path
    oid, ch = m["order_id"].to_numpy(), m["channel"].to_numpy()
    keep = np.ones(len(m), dtype=bool)
    keep[1:] = (oid[1:] != oid[:-1]) | (ch[1:] != ch[:-1])
    mm = m[keep]
    first_t = m.groupby("order_id")["t"].min()
    oo = oo.set_index("order_id")
    codes = pd.Categorical(mm["order_id"], categories=oo.index).codes
    lens = np.bincount(codes, minlength=len(oo))
    order = np.argsort(codes, kind="stable")
    chans = pa.array(mm["channel"].to_numpy(dtype=object)[order], pa.string())
    lists = pa.ListArray.from_arrays(pa.array(np.r_[0, np.cumsum(lens)].astype(np.int32)), chans)
    body = pc.binary_join(lists, sep).to_pandas()
    buy = "buy:" + oo["order_channel"].astype("str").to_numpy()
    path = np.where(lens > 0, body.to_numpy(dtype=object) + sep + buy, buy)
    n_ch = mm.drop_duplicates(["order_id", "channel"]).groupby("order_id").size().reindex(oo.index).fillna(0)
    days = (oo["t_order"] - first_t.reindex(oo.index)).fillna(0.0) / 86_400e6
    return pd.DataFrame({"order_id": oo.index, "customer_id": oo["customer_id"].to_numpy(),
                         "order_ts": _from_us(oo["t_order"].to_numpy(dtype=float), o["order_ts"].dt.tz).to_numpy(),
                         "order_channel": oo["order_channel"].to_numpy(), "value": oo["value"].to_numpy(),
                         "path": path, "n_steps": lens, "n_channels": n_ch.to_numpy(dtype=int),
                         "days_to_purchase": days.to_numpy()}).reset_index(drop=True)


def top_paths(paths: pd.DataFrame, n: int = 15) -> pd.DataFrame:
    """The most frequent paths with their orders, share, revenue and median days to purchase."""
    g = paths.groupby("path")
    out = g.agg(orders=("order_id", "size"), revenue=("value", "sum"),
                median_days=("days_to_purchase", "median")).sort_values("orders", ascending=False)
    out["share"] = out["orders"] / len(paths)
    return out.head(n).reset_index()


def transition_matrix(paths: pd.DataFrame, sep: str = " > ", normalize: bool = True) -> pd.DataFrame:
    """From-state (rows: ``(start)`` and channels) to next state (columns: channels and
    ``buy:<channel>``) counts, or row shares with ``normalize``."""
    arr = pa.array(paths["path"].to_numpy(dtype=object), pa.string())
    parts = pc.split_pattern(arr, sep)
    lens = pc.list_value_length(parts).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = np.asarray(parts.flatten().to_numpy(zero_copy_only=False), dtype=object)
    starts = np.r_[0, np.cumsum(lens)[:-1]]
    is_first = np.zeros(len(flat), dtype=bool)
    is_first[starts] = True
    frm = np.where(is_first, "(start)", np.r_[np.array([""], dtype=object), flat[:-1]])
    m = pd.crosstab(pd.Series(frm, name="from"), pd.Series(flat, name="to"))
    if normalize:
        m = m.div(m.sum(axis=1), axis=0)
    return m


def plot_flow(matrix: pd.DataFrame, title: str = "Journey flow: where customers go next", min_share: float = 0.01):
    """Flow plot: from-states on the left, next states on the right, band widths proportional
    to the number of moves (a two-column Sankey drawn with matplotlib)."""
    import matplotlib.pyplot as plt
    from matplotlib.path import Path as MPath
    from matplotlib.patches import PathPatch

    counts = matrix.astype(float)
    total = counts.to_numpy().sum()
    left = counts.sum(axis=1).sort_values(ascending=False)
    right = counts.sum(axis=0).sort_values(ascending=False)
    gap = 0.01 * total
    def positions(s):
        y, pos = 0.0, {}
        for k, v in s.items():
            pos[k] = [y, y + v]
            y += v + gap
        return pos, y
    lp, lh = positions(left)
    rp, rh = positions(right)
    H = max(lh, rh)
    fig, ax = plt.subplots(figsize=(10, 6.5))
    cmap = plt.get_cmap("tab20")
    colours = {k: cmap(i % 20) for i, k in enumerate(left.index)}
    lcur = {k: v[0] for k, v in lp.items()}
    rcur = {k: v[0] for k, v in rp.items()}
    for a in left.index:
        for b in right.index:
            v = counts.at[a, b] if (a in counts.index and b in counts.columns) else 0.0
            if v <= 0 or v < min_share * total:
                continue
            y0a, y0b = lcur[a], rcur[b]
            lcur[a] += v
            rcur[b] += v
            verts = [(0.1, y0a), (0.5, y0a), (0.5, y0b), (0.9, y0b), (0.9, y0b + v), (0.5, y0b + v),
                     (0.5, y0a + v), (0.1, y0a + v), (0.1, y0a)]
            codes = [MPath.MOVETO, MPath.CURVE4, MPath.CURVE4, MPath.CURVE4, MPath.LINETO, MPath.CURVE4,
                     MPath.CURVE4, MPath.CURVE4, MPath.CLOSEPOLY]
            ax.add_patch(PathPatch(MPath(verts, codes), facecolor=colours[a], alpha=0.45, lw=0))
    for k, (y0, y1) in lp.items():
        ax.add_patch(plt.Rectangle((0.07, y0), 0.03, y1 - y0, color=colours[k]))
        ax.text(0.065, (y0 + y1) / 2, f"{k} ({(y1 - y0) / total:.0%})", ha="right", va="center", fontsize=8)
    for k, (y0, y1) in rp.items():
        ax.add_patch(plt.Rectangle((0.9, y0), 0.03, y1 - y0, color="grey"))
        ax.text(0.935, (y0 + y1) / 2, f"{k} ({(y1 - y0) / total:.0%})", ha="left", va="center", fontsize=8)
    ax.set_xlim(-0.25, 1.25)
    ax.set_ylim(H, -gap)
    ax.set_xticks([0.085, 0.915], ["from (this step)", "to (next step)"])
    ax.set_yticks([])
    ax.set_ylabel("moves (band height = number of moves)")
    ax.set_title(title)
    for s in ("top", "right", "left"):
        ax.spines[s].set_visible(False)
    fig.tight_layout()
    return fig


def cross_channel_patterns(touchpoints: pd.DataFrame, orders: pd.DataFrame,
                           online_channels: Iterable[str], store_channel: str = "store",
                           research_days: tuple[float, float] = (0.0, 5.0),
                           showroom_days: tuple[float, float] = (0.0, 7.0),
                           store_to_store_days: tuple[float, float] = (0.0, 10.0)) -> pd.DataFrame:
    """Per pattern: orders, share of the relevant orders, revenue, revenue share.

    * ``research_online_buy_offline``: a store order whose customer viewed a product online
      (``product_view`` on an online channel) between ``research_days`` before it;
    * ``showrooming``: an online order whose customer visited a store (``visit`` on the store
      channel) within ``showroom_days`` before it;
    * ``store_to_store``: a store order whose customer made an ``inquiry`` at *another* store
      (``store_id`` differs) within ``store_to_store_days`` before it.

    Shares are of store orders (ROBO, store-to-store) or of online orders (showrooming).
    Returns the table and, as ``.attrs["flags"]``, the per-order flags."""
    online = list(online_channels)
    o = orders
    if "status" in o:
        o = o[np.array(o["status"].ne("cancelled").fillna(True), dtype=bool)]
    o = o[np.array(o["customer_id"].notna(), dtype=bool)].sort_values("order_ts")
    tp = touchpoints[np.array(touchpoints["customer_id"].notna(), dtype=bool)]

    def preceded(target: pd.DataFrame, events: pd.DataFrame, window, other_store=False) -> np.ndarray:
        if target.empty or events.empty:
            return np.zeros(len(target), dtype=bool)
        ev = events[["customer_id", "event_ts"] + (["store_id"] if other_store else [])].sort_values("event_ts")
        lo, hi = (pd.Timedelta(days=window[0]), pd.Timedelta(days=window[1]))
        tg = target[["order_id", "customer_id", "order_ts"] + (["store_id"] if other_store else [])]
        if other_store:
            # the last inquiry at a store other than the order's store: merge per (customer)
            # on events with their store, then keep matches at another store
            ev = ev.rename(columns={"store_id": "ev_store"})
            m = tg.merge(ev, on="customer_id")
            d = m["order_ts"] - m["event_ts"]
            ok = np.array((d >= lo) & (d <= hi) & (m["ev_store"] != m["store_id"]).fillna(False), dtype=bool)
            hit = set(m.loc[ok, "order_id"])
            return np.array(tg["order_id"].isin(hit), dtype=bool)
        # the latest event at or before order_ts - lo; a hit when it is no older than
        # order_ts - hi (searching from order_ts itself would miss an older event when a
        # newer one falls inside the first lo days)
        tg = tg.assign(_until=tg["order_ts"] - lo)
        m = pd.merge_asof(tg.sort_values("_until"), ev.rename(columns={"event_ts": "t_ev"}), left_on="_until",
                          right_on="t_ev", by="customer_id", direction="backward", tolerance=hi - lo)
        ok = np.array(m["t_ev"].notna(), dtype=bool)
        return np.array(tg["order_id"].isin(set(m.loc[ok, "order_id"])), dtype=bool)

    store_o = o[np.array(o["channel"] == store_channel, dtype=bool)]
    online_o = o[np.array(o["channel"].isin(online), dtype=bool)]
    views = tp[np.array(tp["channel"].isin(online) & (tp["event_type"] == "product_view"), dtype=bool)]
    svis = tp[np.array((tp["channel"] == store_channel) & (tp["event_type"] == "visit"), dtype=bool)]
    inq = tp[np.array((tp["channel"] == store_channel) & (tp["event_type"] == "inquiry"), dtype=bool)]
    robo = preceded(store_o, views, research_days)
    show = preceded(online_o, svis, showroom_days)
    s2s = preceded(store_o, inq, store_to_store_days, other_store=True) if "store_id" in tp else \
        np.zeros(len(store_o), dtype=bool)
    rows = []
    for name, base, flag, of in (("research_online_buy_offline", store_o, robo, "store orders"),
                                 ("showrooming", online_o, show, "online orders"),
                                 ("store_to_store", store_o, s2s, "store orders")):
        rev = base["net_amount"].to_numpy(dtype=float)
        rows.append({"pattern": name, "orders": int(flag.sum()), "of": of, "base_orders": len(base),
                     "share": flag.mean() if len(base) else np.nan, "revenue": float(rev[flag].sum()),
                     "revenue_share": float(rev[flag].sum() / rev.sum()) if rev.sum() else np.nan})
    out = pd.DataFrame(rows)
    flags = pd.concat([pd.DataFrame({"order_id": store_o["order_id"].to_numpy(), "pattern": "research_online_buy_offline",
                                     "flag": robo}),
                       pd.DataFrame({"order_id": online_o["order_id"].to_numpy(), "pattern": "showrooming", "flag": show}),
                       pd.DataFrame({"order_id": store_o["order_id"].to_numpy(), "pattern": "store_to_store",
                                     "flag": s2s})], ignore_index=True)
    out.attrs["flags"] = flags[flags["flag"]].drop(columns="flag").reset_index(drop=True)
    return out


def journey_stages(customers: pd.DataFrame, touchpoints: pd.DataFrame | None, orders: pd.DataFrame,
                   surveys: pd.DataFrame | None = None,
                   stage_of_event: Mapping[str, str] = STAGE_OF_EVENT) -> pd.DataFrame:
    """Customers reaching each stage and dropping out there.

    A customer reaches *awareness* with any touch (or any later stage), *consideration* with a
    click / visit / view / inquiry, *decision* with a cart, checkout or order, *retention* with a
    second (non-cancelled) order, *advocacy* with a review or an NPS of 9-10. Stages are
    cumulative (a later stage implies the earlier ones); ``dropped_here`` counts customers
    whose furthest stage is this one."""
    level = pd.Series(-1, index=pd.Index(customers["customer_id"].unique(), name="customer_id"))
    rank = {s: i for i, s in enumerate(STAGES)}
    if touchpoints is not None:
        tp = touchpoints[np.array(touchpoints["customer_id"].notna(), dtype=bool)]
        st = tp["event_type"].map(dict(stage_of_event)).map(rank)
        best = st.groupby(tp["customer_id"]).max()
        level = np.maximum(level, best.reindex(level.index).fillna(-1)).astype(int)
    o = orders
    if "status" in o:
        o = o[np.array(o["status"].ne("cancelled").fillna(True), dtype=bool)]
    n_o = o.groupby("customer_id").size().reindex(level.index).fillna(0)
    level = np.maximum(level, np.where(n_o >= 1, rank["decision"], -1))
    level = np.maximum(level, np.where(n_o >= 2, rank["retention"], -1))
    if surveys is not None and "nps" in surveys:
        prom = set(surveys.loc[np.array(surveys["nps"].fillna(0) >= 9, dtype=bool), "customer_id"])
        level = np.where(level.index.isin(list(prom)), rank["advocacy"], level)
    level = pd.Series(np.asarray(level), index=n_o.index)
    n = len(level)
    reached = [(level >= i).sum() for i in range(len(STAGES))]
    dropped = [(level == i).sum() for i in range(len(STAGES))]
    out = pd.DataFrame({"stage": STAGES, "customers": reached, "share_of_customers": np.array(reached) / n,
                        "dropped_here": dropped})
    out["continue_to_next"] = out["customers"].shift(-1) / out["customers"]
    out.attrs["never_reached"] = int((level < 0).sum())
    return out


def stages_note(stages: pd.DataFrame) -> str | None:
    """Why the first stages read 100%, when they do: every customer in the data has bought.

    The customers table holds buyers; a buyer has reached awareness, consideration and
    decision by definition, so those stages say nothing about drop-off (visitors who never
    bought are anonymous and cannot be counted as people)."""
    if stages.empty:
        return None
    top = stages["customers"].iloc[0]
    full = stages.loc[stages["customers"].eq(top), "stage"].tolist()
    if len(full) >= 2 and "decision" in full:
        return (f"Every one of the {top:,} customers has bought at least once, so {', '.join(full)} are 100% "
                "by definition (visitors who never bought are anonymous and cannot be counted as people). "
                "The chart therefore starts at the first purchase: how many buy again (retention) and "
                "recommend us (advocacy).")
    return None


def plot_stages(stages: pd.DataFrame, title: str = "Journey stages: customers reaching each stage"):
    """Customers reaching each stage; stages that every customer reached by definition are left out
    (see :func:`stages_note`), so the bars show real drop-off."""
    import matplotlib.pyplot as plt

    s = stages
    if stages_note(stages) is not None:
        s = stages.iloc[list(stages["stage"]).index("decision"):]
        title = "After the first purchase: customers who buy again and who recommend us"
    fig, ax = plt.subplots(figsize=(9, 3.6))
    ax.barh(s["stage"][::-1], s["customers"][::-1], color="#0072B2")
    for y, (c, sh) in enumerate(zip(s["customers"][::-1], s["share_of_customers"][::-1])):
        ax.text(c, y, f" {c:,} ({sh:.0%})", va="center", fontsize=9)
    ax.set_xlim(0, s["customers"].max() * 1.2)
    ax.set_xlabel("customers reaching the stage")
    ax.set_ylabel("journey stage")
    ax.set_title(title)
    fig.tight_layout()
    return fig
