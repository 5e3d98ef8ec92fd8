"""Marketing attribution: which channels bring conversions, by six heuristic rules and two
data-driven models.

The input everywhere is a *touch table*, one row per marketing touch, built from the contract
tables by :func:`build_journeys`:

=================  =====================================================================
``journey_id``     the journey (the touches before one order, or a run of touches that did
                   not lead to an order)
``customer_id``    whose journey
``event_ts``       when the touch happened (NaT for a converting journey with no touch)
``channel``        the touch's channel (<NA> for a converting journey with no touch)
``converted``      bool, the journey ended in a conversion
``conversion_ts``  when it converted (NaT when it did not)
``order_id``       the order that closed it (<NA> when it did not)
``value``          revenue of that order (0 when it did not convert)
=================  =====================================================================

Models

* heuristic (:func:`heuristic_attribution`): ``first_touch``, ``last_touch``,
  ``last_non_direct``, ``linear``, ``time_decay`` (half-life), ``position_based``
  (40/20/40); a lookback window; credit for conversions and revenue.
* :class:`MarkovAttribution`: removal effects of an order-k Markov chain over the paths
  ``(start) > c1 > ... > ck > (conversion | null)``, computed **exactly** from the absorbing
  chain: P(conversion) = the absorption probability, a linear solve ``(I - Q) x = r``; the
  removal effect of a channel is ``1 - P(conversion without it) / P(conversion)``, where
  removing a channel sends every transition into a state holding it to (null).
  ``max_steps`` bounds the paths' length as the ChannelAttribution package does (its
  ``markov_model`` simulates walks and, by default, counts a walk longer than the longest
  observed path + 1 as not converting); with it the same quantities of the truncated chain
  are computed exactly by matrix products.
* :class:`ShapleyAttribution`: exact Shapley values of the coalition game
  ``v(S) = conversion rate of journeys whose channel set is exactly S`` (Shao & Li 2011),
  for up to ``max_channels`` channels (2^n coalitions).

Bad input (``AttributionInputError``, naming the column and the count): unknown channels,
missing columns, no conversions at all. Documented handling, reported in the result's
``notes`` (or ``notes_``): touches after their journey's conversion are dropped; converting
journeys without any touch are kept and credited to ``(no touch)`` by the heuristic models
(the data-driven models count them as ``(start) > (conversion)`` paths); a single channel
gets all the credit (with a note saying the comparison is trivial).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "AttributionInputError", "build_journeys", "check_touches", "heuristic_attribution",
    "all_heuristics", "touches_to_paths", "MarkovAttribution", "ShapleyAttribution",
    "HEURISTIC_MODELS", "NO_TOUCH", "compare_models", "plot_model_comparison",
    "absorption_probability",
]

NO_TOUCH = "(no touch)"
START, CONV, NULL = "(start)", "(conversion)", "(null)"
HEURISTIC_MODELS = ("first_touch", "last_touch", "last_non_direct", "linear", "time_decay",
                    "position_based")
TOUCH_COLUMNS = ("journey_id", "customer_id", "event_ts", "channel", "converted",
                 "conversion_ts", "order_id", "value")
#: event types that are marketing touches by default (inquiries, carts, purchases are not)
MARKETING_EVENTS = ("impression", "click", "visit")


class AttributionInputError(ValueError):
    """The journeys cannot be attributed as given; the message names the column and count."""


# ============================================================================ journeys
def build_journeys(touchpoints: pd.DataFrame, orders: pd.DataFrame, *,
                   channels: Iterable[str], conversion_channels: Iterable[str],
                   lookback_days: float = 7.0, event_types: Iterable[str] = MARKETING_EVENTS,
                   exclude_campaigns: Iterable[str] | None = None,
                   exclude_cancelled: bool = False) -> pd.DataFrame:
    """Cut each customer's marketing touches into journeys (the touch table, module doc).

    * touches: ``touchpoints`` rows of a known customer, on ``channels`` (the marketing
      channels, e.g. ``config.communication_channels``), of ``event_types``, without a
      campaign in ``exclude_campaigns`` (e.g. the experiment ids: touches a test caused);
    * a **converting journey** = the touches of a customer after their previous order (of
      any channel) and at most ``lookback_days`` before an order in ``conversion_channels``
      (at or before the order time); orders without such touches are journeys with no touch;
    * every other touch is **non-converting**; one customer's non-converting touches are cut
      into journeys where two touches are more than ``lookback_days`` apart (touches followed
      by an order outside ``conversion_channels`` within the window end at that order).

    Set-based (``merge_asof`` per customer), no loop over customers.
    """
    _need(touchpoints, "touchpoints", ("customer_id", "event_ts", "channel", "event_type"))
    _need(orders, "orders", ("order_id", "customer_id", "order_ts", "channel"))
    channels, conv_ch = list(channels), list(conversion_channels)
    if not channels:
        raise AttributionInputError("build_journeys: no marketing channels given (channels=[])")
    if not conv_ch:
        raise AttributionInputError("build_journeys: no conversion channels given")
    lb = int(round(float(lookback_days) * 86_400_000_000))            # microseconds
    tp = touchpoints
    tz = tp["event_ts"].dt.tz
    keep = np.array(tp["customer_id"].notna() & tp["channel"].isin(channels)
                    & tp["event_type"].isin(list(event_types)), dtype=bool)
    if exclude_campaigns is not None and "campaign" in tp:
        keep &= ~np.array(tp["campaign"].isin(list(exclude_campaigns)), dtype=bool)
    t = pd.DataFrame({"customer_id": tp["customer_id"].to_numpy()[keep],
                      "t": _us(tp["event_ts"])[keep],
                      "channel": tp["channel"].to_numpy()[keep]})
    o = orders
    if exclude_cancelled and "status" in o:
        o = o[np.array(o["status"].ne("cancelled").fillna(True), dtype=bool)]
    o = pd.DataFrame({"order_id": o["order_id"].to_numpy(), "customer_id": o["customer_id"].to_numpy(),
                      "t_order": _us(o["order_ts"]),
                      "value": (o["net_amount"].to_numpy(dtype=float) if "net_amount" in o
                                else np.zeros(len(o))),
                      "is_conv": np.array(o["channel"].isin(conv_ch), dtype=bool)})
    o = o[np.array(o["customer_id"].notna(), dtype=bool)]
    o = o.sort_values(["t_order", "order_id"], kind="stable").reset_index(drop=True)
    t = t.sort_values("t", kind="stable").reset_index(drop=True)
    m = pd.merge_asof(t, o[["customer_id", "t_order", "order_id", "is_conv"]], left_on="t",
                      right_on="t_order", by="customer_id", direction="forward",
                      allow_exact_matches=True)
    t_next = m["t_order"].to_numpy(dtype=float)           # NaN: no later order
    near = ~np.isnan(t_next) & (t_next - m["t"].to_numpy() <= lb)
    conv_touch = near & np.array(m["is_conv"].fillna(False), dtype=bool)

    # converting journeys: one per conversion order (journey id = order id); orders of the
    # conversion channels without a touch are journeys with no touch
    oc = o[o["is_conv"].to_numpy()]
    ct = m[conv_touch]
    no_touch = oc[~oc["order_id"].isin(ct["order_id"]).to_numpy(dtype=bool)]
    conv = pd.DataFrame({
        "journey_id": np.r_[ct["order_id"].to_numpy(dtype=object), no_touch["order_id"].to_numpy(dtype=object)],
        "customer_id": np.r_[ct["customer_id"].to_numpy(dtype=object),
                             no_touch["customer_id"].to_numpy(dtype=object)],
        "t": np.r_[ct["t"].to_numpy(dtype=float), np.full(len(no_touch), np.nan)],
        "channel": np.r_[ct["channel"].to_numpy(dtype=object), np.full(len(no_touch), None, dtype=object)]})
    info = oc.set_index("order_id")
    conv["converted"] = True
    conv["t_conv"] = info["t_order"].reindex(conv["journey_id"]).to_numpy(dtype=float)
    conv["order_id"] = conv["journey_id"]
    conv["value"] = info["value"].reindex(conv["journey_id"]).to_numpy(dtype=float)

    # non-converting: split each customer's remaining touches where the gap exceeds lookback
    # (or where an order outside the conversion channels closes the window)
    rest = m[~conv_touch]
    closer = rest["order_id"].where(near[~conv_touch]).fillna("").to_numpy(dtype=object)
    nt = pd.DataFrame({"customer_id": rest["customer_id"].to_numpy(), "t": rest["t"].to_numpy(),
                       "channel": rest["channel"].to_numpy(), "closer": closer})
    nt = nt.sort_values(["customer_id", "t"], kind="stable").reset_index(drop=True)
    cust, ts, cl = nt["customer_id"].to_numpy(), nt["t"].to_numpy(), nt["closer"].to_numpy()
    new = np.ones(len(nt), dtype=bool)
    if len(nt):
        new[1:] = (cust[1:] != cust[:-1]) | (ts[1:] - ts[:-1] > lb) | (cl[1:] != cl[:-1])
    jid = np.cumsum(new)
    non = pd.DataFrame({"journey_id": ("N" + pd.Series(jid).astype(str).str.zfill(9)).to_numpy(),
                        "customer_id": cust, "t": ts.astype(float), "channel": nt["channel"].to_numpy()})
    non["converted"] = False
    non["t_conv"] = np.nan
    non["order_id"] = None
    non["value"] = 0.0
    out = pd.concat([conv, non], ignore_index=True)
    out = out.sort_values(["journey_id", "t"], kind="stable").reset_index(drop=True)
    res = pd.DataFrame({
        "journey_id": out["journey_id"].astype("str"), "customer_id": out["customer_id"].astype("str"),
        "event_ts": _from_us(out["t"].to_numpy(), tz), "channel": out["channel"].astype("str"),
        "converted": out["converted"].astype(bool), "conversion_ts": _from_us(out["t_conv"].to_numpy(), tz),
        "order_id": out["order_id"].astype("str"), "value": out["value"].astype(float)})
    return res[list(TOUCH_COLUMNS)]


def _us(ts: pd.Series) -> np.ndarray:
    """Timestamps as int64 microseconds since the epoch (UTC), without Python objects."""
    s = ts.dt.tz_convert("UTC").dt.tz_localize(None) if ts.dt.tz is not None else ts
    return s.dt.as_unit("us").to_numpy().astype(np.int64)


def _from_us(x: np.ndarray, tz) -> pd.Series:
    """int/float microseconds (NaN = missing) back to tz-aware timestamps."""
    v = pd.Series(pd.to_datetime(x, unit="us", utc=True))
    return v.dt.tz_convert(tz) if tz is not None else v.dt.tz_localize(None)


def _need(df: pd.DataFrame | None, name: str, cols: Sequence[str]) -> None:
    if df is None:
        raise AttributionInputError(f"{name}: the table is missing (None)")
    miss = [c for c in cols if c not in df.columns]
    if miss:
        raise AttributionInputError(f"{name}: missing column(s) {miss}; has {list(df.columns)}")


def check_touches(touches: pd.DataFrame, channels: Iterable[str] | None = None,
                  require_conversions: bool = True) -> tuple[pd.DataFrame, list[str]]:
    """Validate a touch table; return it cleaned plus notes on what was done.

    Raises AttributionInputError for: missing columns, unknown channels (when ``channels``
    is given; names are case-sensitive), a converting journey without ``conversion_ts``,
    journeys with inconsistent ``converted`` flags, and (``require_conversions``) no
    conversion at all. Touches after their journey's conversion are dropped (noted).
    """
    _need(touches, "touches", ("journey_id", "channel", "converted"))
    notes: list[str] = []
    t = touches
    if "value" not in t:
        t = t.assign(value=np.where(t["converted"].to_numpy(dtype=bool), 1.0, 0.0))
        notes.append("no value column: revenue credit equals conversion credit (value 1 each)")
    if t["journey_id"].isna().any():
        raise AttributionInputError(f"touches.journey_id: {int(t['journey_id'].isna().sum())} rows have "
                                    "no journey id")
    conv = t["converted"]
    if conv.isna().any():
        raise AttributionInputError(f"touches.converted: {int(conv.isna().sum())} rows have no "
                                    "converted flag (true/false)")
    conv = conv.astype(bool)
    per_j = conv.groupby(t["journey_id"]).agg(["min", "max"])
    mixed = per_j.index[per_j["min"] != per_j["max"]]
    if len(mixed):
        raise AttributionInputError(f"touches.converted: {len(mixed)} journeys are marked converted on some "
                                    f"touches and not on others, e.g. {list(mixed[:5])}")
    if channels is not None:
        vocab = set(channels)
        ch = t["channel"]
        bad = ch.notna() & ~ch.isin(vocab)
        if bad.any():
            counts = ch[bad].value_counts()
            listed = ", ".join(f"'{k}' ({v})" for k, v in counts.head(10).items())
            raise AttributionInputError(
                f"touches.channel: {int(bad.sum())} touches have a channel outside the vocabulary: "
                f"{listed} (names are case-sensitive); add it under channels: in omni.yaml or fix the data")
    if "event_ts" in t and "conversion_ts" in t:
        if conv.any() and t.loc[conv.to_numpy(dtype=bool), "conversion_ts"].isna().any():
            n = int(t.loc[conv.to_numpy(dtype=bool), "conversion_ts"].isna().sum())
            raise AttributionInputError(f"touches.conversion_ts: {n} rows of converting journeys have no "
                                        "conversion time")
        after = (conv & t["event_ts"].notna() & (t["event_ts"] > t["conversion_ts"])).fillna(False)
        if after.any():
            nj = t.loc[after.to_numpy(dtype=bool), "journey_id"].nunique()
            notes.append(f"{int(after.sum()):,} touches after their journey's conversion (in {nj:,} journeys) "
                         "were dropped: they cannot have caused it")
            t = _drop_keep_journeys(t, after.to_numpy(dtype=bool))
    n_conv = int(t.loc[t["converted"].to_numpy(dtype=bool), "journey_id"].nunique())
    if require_conversions and n_conv == 0:
        raise AttributionInputError(f"touches: no converting journey among {t['journey_id'].nunique():,} "
                                    "journeys: there is nothing to attribute")
    empty_conv = int((t["converted"].astype(bool) & t["channel"].isna()).sum())
    if empty_conv:
        notes.append(f"{empty_conv:,} of {n_conv:,} conversions had no marketing touch: the heuristic models "
                     f"credit them to '{NO_TOUCH}', the data-driven ones count them as (start) > (conversion)")
    t = t[~(t["channel"].isna() & ~t["converted"].astype(bool)).to_numpy(dtype=bool)]
    n_ch = t["channel"].dropna().nunique()
    if n_ch == 1:
        notes.append(f"only one channel ('{t['channel'].dropna().iloc[0]}') in the journeys: every model "
                     "gives it all the touch credit, so the comparison is trivial")
    elif n_ch == 0 and n_conv:
        notes.append("no touch at all: every conversion is unattributed")
    return t, notes


def _drop_keep_journeys(t: pd.DataFrame, drop: np.ndarray) -> pd.DataFrame:
    """Drop rows but keep each journey present (a converting journey emptied keeps one NA row)."""
    kept = t[~drop]
    lost = set(t.loc[drop, "journey_id"]) - set(kept["journey_id"])
    if lost:
        first = t[drop & t["journey_id"].isin(lost).to_numpy(dtype=bool)].drop_duplicates("journey_id").copy()
        first["channel"] = pd.NA
        first["event_ts"] = pd.NaT
        kept = pd.concat([kept, first], ignore_index=True)
    return kept


# ============================================================================ heuristics
def heuristic_attribution(touches: pd.DataFrame, model: str = "last_touch", *,
                          lookback_days: float | None = None, half_life_days: float = 7.0,
                          position_weights: tuple[float, float, float] = (0.4, 0.2, 0.4),
                          direct_channels: Iterable[str] = ("direct",),
                          channels: Iterable[str] | None = None) -> pd.DataFrame:
    """Credit each conversion (and its revenue) to channels by a rule.

    Returns one row per channel: ``conversions`` (credit, sums to the number of conversions),
    ``revenue`` (credit weighted by the order value), ``share`` of conversions. Converting
    journeys without a touch in the window go to ``(no touch)``.

    * ``lookback_days``: only touches at most this long before the conversion count;
    * ``time_decay``: weight ``2 ** (-(conversion_ts - event_ts) / half_life_days)``;
    * ``position_based``: first and last get ``position_weights[0]`` and ``[2]``, the middle
      touches share ``[1]``; two touches split 50/50, one touch takes all;
    * ``last_non_direct``: the last touch not in ``direct_channels`` (else the last touch).
    """
    if model not in HEURISTIC_MODELS:
        raise AttributionInputError(f"unknown heuristic model '{model}'; choose from {HEURISTIC_MODELS}")
    t, _ = check_touches(touches, channels)
    t = t[t["converted"].astype(bool).to_numpy(dtype=bool)]
    w = _heuristic_weights(t, model, lookback_days, half_life_days, position_weights, set(direct_channels))
    return _credit_table(t, w)


def _window(t: pd.DataFrame, lookback_days: float | None) -> np.ndarray:
    has = np.array(t["channel"].notna(), dtype=bool)
    if lookback_days is not None:
        if "event_ts" not in t or "conversion_ts" not in t:
            raise AttributionInputError("lookback_days needs event_ts and conversion_ts columns")
        age = (t["conversion_ts"] - t["event_ts"]) / pd.Timedelta(days=1)
        has &= (age <= float(lookback_days)).fillna(False).to_numpy(dtype=bool)
    return has


def _heuristic_weights(t, model, lookback_days, half_life_days, position_weights, direct):
    """Per-row credit in [0, 1]; rows of one journey sum to 1 (0 if no touch in the window)."""
    if "event_ts" in t:
        t = t.assign(_o=np.arange(len(t)))
        order = np.lexsort((t["_o"].to_numpy(), t["event_ts"].to_numpy(dtype="datetime64[ns]").astype(np.int64),
                            pd.factorize(t["journey_id"])[0]))
    else:  # the row order within a journey is the touch order
        order = np.lexsort((np.arange(len(t)), pd.factorize(t["journey_id"])[0]))
    inv = np.empty_like(order)
    inv[order] = np.arange(len(order))
    ts = t.iloc[order]
    valid = _window(ts, lookback_days)
    jid = pd.factorize(ts["journey_id"])[0]
    g = pd.Series(valid.astype(np.int64))
    n = g.groupby(jid).transform("sum").to_numpy()
    pos = g.groupby(jid).cumsum().to_numpy() - 1          # position among valid touches
    w = np.zeros(len(ts))
    if model == "first_touch":
        w = (valid & (pos == 0)).astype(float)
    elif model == "last_touch":
        w = (valid & (pos == n - 1)).astype(float)
    elif model == "last_non_direct":
        nd = valid & ~ts["channel"].isin(list(direct)).to_numpy(dtype=bool)
        gnd = pd.Series(nd.astype(np.int64))
        n_nd = gnd.groupby(jid).transform("sum").to_numpy()
        pos_nd = gnd.groupby(jid).cumsum().to_numpy() - 1
        w = np.where(n_nd > 0, (nd & (pos_nd == n_nd - 1)), valid & (pos == n - 1)).astype(float)
    elif model == "linear":
        w = np.where(valid, 1.0 / np.maximum(n, 1), 0.0)
    elif model == "time_decay":
        if half_life_days <= 0:
            raise AttributionInputError(f"half_life_days must be > 0, got {half_life_days}")
        age = ((ts["conversion_ts"] - ts["event_ts"]) / pd.Timedelta(days=1)).to_numpy(dtype=float)
        raw = np.where(valid, np.exp2(-np.nan_to_num(age, nan=0.0) / half_life_days), 0.0)
        tot = pd.Series(raw).groupby(jid).transform("sum").to_numpy()
        w = np.divide(raw, tot, out=np.zeros_like(raw), where=tot > 0)
    elif model == "position_based":
        f, mid, last = position_weights
        if not math.isclose(f + mid + last, 1.0, abs_tol=1e-9) or min(position_weights) < 0:
            raise AttributionInputError(f"position_weights must be >= 0 and sum to 1, got {position_weights}")
        w = np.select([~valid, n == 1, n == 2, pos == 0, pos == n - 1],
                      [0.0, 1.0, 0.5, f, last], default=mid / np.maximum(n - 2, 1))
    return w[inv]


def _credit_table(t: pd.DataFrame, w: np.ndarray) -> pd.DataFrame:
    conv = t.drop_duplicates("journey_id")
    n_conv, total_value = len(conv), float(conv["value"].sum())
    ch = t["channel"].astype("str")
    df = pd.DataFrame({"channel": ch.to_numpy(), "conversions": w, "revenue": w * t["value"].to_numpy(dtype=float)})
    res = df.groupby("channel", observed=True)[["conversions", "revenue"]].sum()
    got = pd.Series(w).groupby(pd.factorize(t["journey_id"])[0]).sum()
    unattributed = n_conv - float(got.sum())
    if unattributed > 1e-9:
        lost_value = total_value - float(res["revenue"].sum())
        res.loc[NO_TOUCH] = [unattributed, lost_value]
    res["share"] = res["conversions"] / n_conv if n_conv else np.nan
    res.index.name = "channel"
    return res.sort_values("conversions", ascending=False).reset_index()


def all_heuristics(touches: pd.DataFrame, *, value: bool = False, **kwargs) -> pd.DataFrame:
    """Wide table: one row per channel, one column per heuristic model (share of conversions,
    or of revenue with ``value=True``)."""
    cols = {}
    for m in HEURISTIC_MODELS:
        r = heuristic_attribution(touches, m, **kwargs).set_index("channel")
        cols[m] = r["revenue"] / r["revenue"].sum() if value else r["share"]
    return pd.DataFrame(cols).fillna(0.0).rename_axis("channel")


# ============================================================================ paths
def touches_to_paths(touches: pd.DataFrame, channels: Iterable[str] | None = None, sep: str = ">",
                     lookback_days: float | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Aggregate the touch table into identical paths: ``path`` ('a>b>c', '' for no touch),
    ``conversions``, ``nulls``, ``value`` (the input of the Markov model). Returns (paths, notes)."""
    t, notes = check_touches(touches, channels)
    if "event_ts" in t:
        t = t.sort_values(["journey_id", "event_ts"], kind="stable")
    valid = _window(t, lookback_days)
    valid &= t["channel"].notna().to_numpy(dtype=bool)
    jcode, jids = pd.factorize(t["journey_id"])        # touches of a journey are contiguous (sorted)
    n_j = len(jids)
    lens = np.bincount(jcode[valid], minlength=n_j)
    chans = pa.array(t["channel"].to_numpy(dtype=object)[valid], pa.string())
    offsets = np.r_[0, np.cumsum(lens)].astype(np.int32)
    path = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), chans), sep)
    first = np.r_[True, jcode[1:] != jcode[:-1]] if len(jcode) else np.zeros(0, bool)
    conv = t["converted"].to_numpy(dtype=bool)[first]
    val = t["value"].to_numpy(dtype=float)[first]
    df = pd.DataFrame({"path": path.to_pandas(), "conversions": conv.astype(np.int64),
                       "nulls": (~conv).astype(np.int64), "value": np.where(conv, val, 0.0)})
    out = df.groupby("path", sort=True)[["conversions", "nulls", "value"]].sum().reset_index()
    out = out[~((out["path"] == "") & (out["conversions"] == 0))].reset_index(drop=True)
    return out, notes


# ============================================================================ Markov
#: rows per thread when grouping identical paths (below this one thread is faster)
_ROWS_PER_THREAD = 250_000


def _threads() -> int:
    """Threads for hashing long path columns: Arrow's CPU pool size (OMP_NUM_THREADS caps it)."""
    return pa.cpu_count()


_POOL: tuple[int, int, object] | None = None


def _pool():
    """A thread pool kept for the process (starting threads on every fit costs about as much as
    the work after the hashing); a new one when ``_threads()`` grows or after a fork (the
    child has none of the parent's threads)."""
    global _POOL
    import os
    from concurrent.futures import ThreadPoolExecutor
    size = max(_threads() - 1, 1)
    if _POOL is None or _POOL[0] != os.getpid() or _POOL[1] < size:
        _POOL = (os.getpid(), size, ThreadPoolExecutor(size, thread_name_prefix="omni-paths"))
    return _POOL[2]


def _tokenize(paths: pa.Array, sep: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Channel names (object array), each token's code and each path's length of a string
    array of paths (pyarrow split + hashing of the tokens)."""
    parts = pc.split_pattern(paths, sep)
    lens = pc.list_value_length(parts).to_numpy(zero_copy_only=False).astype(np.int64)
    tok = pc.dictionary_encode(parts.flatten())
    return (np.asarray(tok.dictionary.to_numpy(zero_copy_only=False), dtype=object),
            tok.indices.to_numpy(zero_copy_only=False), lens)


def _sums_by_code(codes: np.ndarray, k: int, ws: Sequence[np.ndarray]) -> tuple[list[np.ndarray], list[bool]]:
    """Per-code sums (float64) of each weight column, and whether each column has a negative
    or missing value.

    ``np.bincount`` holds the GIL (the other threads are still hashing), so the first two
    columns, when they are integer counts (conversions, nulls), are summed in one pass,
    packed exactly into one float64 as ``a + b * 2^s`` with ``2^s`` above the total of ``a``
    (every partial sum stays an integer below 2^53, so nothing is rounded).
    """
    bad = [len(w) > 0 and not w.min() >= 0 for w in ws]          # NaN fails too
    out: list[np.ndarray | None] = [None] * len(ws)
    if len(ws) >= 2 and not (bad[0] or bad[1]) and ws[0].dtype.kind in "biu" and ws[1].dtype.kind in "biu":
        s = int(ws[0].sum()).bit_length()
        if int(ws[1].sum()).bit_length() + s <= 52:
            scale = float(2 ** s)
            packed = ws[1].astype(np.float64)
            packed *= scale
            packed += ws[0]
            tot = np.bincount(codes, packed, minlength=k)
            hi = np.floor(tot / scale)
            out[0], out[1] = tot - hi * scale, hi
    for j, w in enumerate(ws):
        if out[j] is None:
            out[j] = np.bincount(codes, w if w.dtype == np.float64 else w.astype(np.float64), minlength=k)
    return out, bad


def _weighted_paths(arr: pa.Array, weights: Sequence[np.ndarray], weight_names: Sequence[str], sep: str
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    """Group identical paths of a string array, sum each weight column per path and split the
    paths into channels: (sorted channel names, token codes, path lengths, per-path sums).

    Hashing the strings dominates (about 30 ns a row); after it only the distinct paths (a
    few thousand) are handled. pyarrow's ``dictionary_encode`` releases the GIL, so long
    inputs are cut into one slice per Arrow CPU thread (``pa.cpu_count()``), each hashed and
    summed in its own thread. Each other slice then looks its distinct paths up among slice
    0's (``index_in``, a few thousand strings) and maps its sums onto them; slice 0's distinct
    paths are split into channels in as many pieces, one per thread; only paths that slice 0
    did not see are split separately. Negative or missing weights are refused (checked in the
    same threads, on the original dtype).
    """
    from concurrent.futures import Future

    n = len(arr)
    n_parts = max(1, min(_threads(), n // _ROWS_PER_THREAD))
    bounds = np.linspace(0, n, n_parts + 1).astype(np.int64)
    dict0: Future = Future()                    # slice 0's distinct paths, for the other slices

    def part(i: int):
        lo, hi = int(bounds[i]), int(bounds[i + 1])
        de = pc.dictionary_encode(arr.slice(lo, hi - lo))
        if i == 0:
            dict0.set_result(de.dictionary)
        codes = de.indices.to_numpy(zero_copy_only=False)
        sums, bad = _sums_by_code(codes, len(de.dictionary), [w[lo:hi] for w in weights])
        return de.dictionary, sums, bad

    def piece(d0: pa.Array, i: int) -> pa.Array:
        # slice 0's distinct paths are split into channels in n_parts pieces, one per thread;
        # the other threads first look their paths up (about half the cost of splitting as
        # many paths), so slice 0's thread takes a larger piece and all finish together
        w0 = (1 + (n_parts - 1) / 2) / n_parts
        b = np.r_[0, w0 + np.arange(n_parts) * (1 - w0) / max(n_parts - 1, 1)] * len(d0)
        b = np.minimum(b, len(d0)).astype(np.int64)
        return d0.slice(int(b[i]), int(b[i + 1] - b[i]))

    def other(i: int):
        d, s_part, bad = part(i)
        d0 = dict0.result()
        at0 = pc.index_in(d, value_set=d0)
        seen = at0.is_valid().to_numpy(zero_copy_only=False)
        pos = at0.fill_null(0).to_numpy(zero_copy_only=False)[seen]
        mapped = [np.bincount(pos, s[seen], minlength=len(d0)) for s in s_part]
        return mapped, d.filter(pa.array(~seen)), [s[~seen] for s in s_part], bad, _tokenize(piece(d0, i), sep)

    ex = _pool() if n_parts > 1 else None
    futures = [ex.submit(other, i) for i in range(1, n_parts)]
    try:
        d0, sums, bad = part(0)
    except BaseException as e:                  # do not leave the other slices waiting
        if not dict0.done():
            dict0.set_exception(e)
        raise
    tok = [_tokenize(piece(d0, 0), sep)]
    others = [f.result() for f in futures]
    tok += [o[4] for o in others]
    bad = [nm for j, nm in enumerate(weight_names) if bad[j] or any(o[3][j] for o in others)]
    if bad:
        raise AttributionInputError(f"paths: {bad} must be >= 0 (no missing values)")
    for o in others:
        sums = [s + m for s, m in zip(sums, o[0])]
    unseen = [o[1] for o in others if len(o[1])]
    if unseen:                                  # paths slice 0 did not see: split them too
        tok.append(_tokenize(pa.concat_arrays(unseen), sep))
        sums = [np.concatenate([s] + [o[2][j] for o in others]) for j, s in enumerate(sums)]
    # one sorted channel vocabulary (a handful of names)
    names = np.unique(np.concatenate([t[0] for t in tok]))
    codes = np.concatenate([np.searchsorted(names, t[0])[t[1]] for t in tok]).astype(np.int64)
    lens = np.concatenate([t[2] for t in tok])
    return names, codes, lens, sums


def absorption_probability(Q: np.ndarray, r: np.ndarray, keep: np.ndarray | None = None,
                           max_steps: int | None = None) -> np.ndarray:
    """Absorption probabilities of an absorbing chain, exact.

    ``max_steps=None``: ``x = (I - Q)^-1 r`` (linear solve), the probability of ever being
    absorbed. ``max_steps=M``: the probability of being absorbed after at most ``M`` more
    visits to transient states, ``x_0 = r``, ``x_m = r + Q x_(m-1)`` (M products).
    ``keep`` (bool mask over transient states): states not kept are made absorbing with
    value 0 (their incoming probability is lost), i.e. the channel is removed.
    """
    n = Q.shape[0]
    x = np.zeros(n)
    idx = np.arange(n) if keep is None else np.nonzero(keep)[0]
    if len(idx) == 0:
        return x
    Qs, rs = Q[np.ix_(idx, idx)], r[idx]
    if max_steps is not None:
        if n > 400:
            import scipy.sparse as sp
            Qs = sp.csr_matrix(Qs)
        y = rs.copy()
        for _ in range(int(max_steps)):          # M sparse/dense products: a loop over steps only
            y = rs + Qs @ y
        x[idx] = y
        return x
    A = np.eye(len(idx)) - Qs
    if n > 400:
        import scipy.sparse as sp
        import scipy.sparse.linalg as spl
        x[idx] = spl.spsolve(sp.csc_matrix(A), rs)
    else:
        x[idx] = np.linalg.solve(A, rs)
    return x


def _absorb_each(Q: np.ndarray, r: np.ndarray, keep: np.ndarray, max_steps: int | None) -> np.ndarray:
    """``absorption_probability`` for each column of the bool matrix ``keep`` (states x cases)
    at once: column j is the chain with the states not kept removed. Batched for small chains
    (the stacked systems take m * n * n floats)."""
    n, m = keep.shape
    if n > 400 or m * n * n > 2_000_000:
        return np.column_stack([absorption_probability(Q, r, keep[:, j], max_steps) for j in range(m)])
    R = np.where(keep, r[:, None], 0.0)
    if max_steps is not None:
        Y = R.copy()
        for _ in range(int(max_steps)):          # a loop over steps only
            Y = np.where(keep, R + Q @ Y, 0.0)   # removed states are never entered
        return Y
    # one linear system per case: removed rows and columns of Q zeroed, so x = 0 there
    A = np.eye(n)[None] - Q[None] * (keep.T[:, :, None] & keep.T[:, None, :])
    return np.linalg.solve(A, R.T[:, :, None])[:, :, 0].T


class MarkovAttribution:
    """Order-k Markov chain attribution with exact removal effects.

    ``fit(paths)`` takes either a path table (``path`` 'a>b>c', ``conversions``, ``nulls``,
    optional ``value``; one row per journey or pre-aggregated, identical paths are grouped
    first) or a touch table (module doc). Fitted attributes:

    * ``channels_``; ``transition_matrix_`` (tidy: from, to, probability, for order 1 the
      states are channels; for order k, tuples of the last k channels joined by ',');
    * ``conversion_probability_`` = P(start reaches conversion) (within ``max_steps_``);
    * ``removal_effects_`` (Series): ``1 - P(conv without c) / P(conv)``, which equals
      P(the path visits c | it converts);
    * ``value_removal_effects_``: the same on the chain's expected revenue;
    * ``attribution_`` (DataFrame): channel, removal_effect, share, conversions, revenue
      (totals split in proportion to the removal effects, as ChannelAttribution does);
    * ``max_steps_``: the horizon used (None = unbounded); ``notes_``.

    ``max_steps`` chooses the horizon:

    * ``None`` (default): the absorbing chain as it is, paths of any length (linear solves).
      Loops (a state repeated in a row) are kept as self-transitions; they change neither the
      absorption probabilities nor the removal effects.
    * an int ``M`` or ``"data"``: ChannelAttribution's ``markov_model`` semantics, computed
      exactly instead of simulated. Repeated consecutive states are first collapsed into one
      (as it does: 'a>a>b' is 'a>b'), and a path counts as converting only if it reaches
      (conversion) after at most ``M`` visits to channel states; longer paths count as not
      converting. ``"data"`` is its default ``max_step``: 1 + the longest observed path (in
      states, after collapsing; rows with zero journeys ignored). Its simulated removal
      effects (the share of simulated converting paths that visit a channel) estimate
      exactly these numbers. For order >= 2 the chains differ anyway: ChannelAttribution's
      states are the k-channel windows starting at the first touch, ours grow from the first
      channel to the last k.
    """

    def __init__(self, order: int = 1, sep: str = ">", channels: Iterable[str] | None = None,
                 max_steps: int | str | None = None):
        if int(order) < 1:
            raise AttributionInputError(f"order must be >= 1, got {order}")
        if not (max_steps is None or (isinstance(max_steps, str) and max_steps == "data")
                or (isinstance(max_steps, (int, np.integer)) and not isinstance(max_steps, bool)
                    and max_steps >= 1)):
            raise AttributionInputError(f"max_steps must be None, 'data' or an int >= 1, got {max_steps!r}")
        self.order = int(order)
        self.sep = sep
        self.channels = None if channels is None else list(channels)
        self.max_steps = max_steps

    # -- input -------------------------------------------------------------------
    def _paths(self, data: pd.DataFrame):
        """(sorted channel names, token codes, path lengths, conversions, nulls, value) of
        the paths, identical paths grouped (value None: no value column)."""
        if "path" in data.columns:
            _need(data, "paths", ("path", "conversions", "nulls"))
            if len(data) == 0:
                raise AttributionInputError("paths: no conversions among 0 journeys: there is nothing to attribute")
            p = data["path"]
            try:
                arr = pa.array(p.to_numpy(dtype=object), from_pandas=True) if p.dtype == object else pa.array(p)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise AttributionInputError(f"paths.path: strings expected ({exc})") from None
            if isinstance(arr, pa.ChunkedArray):
                arr = arr.combine_chunks()
            if pa.types.is_dictionary(arr.type):      # a categorical column
                arr = arr.dictionary_decode()
            if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
                raise AttributionInputError(f"paths.path: strings expected, got {arr.type}")
            if arr.null_count:
                raise AttributionInputError(f"paths.path: {arr.null_count} rows have no path "
                                            "(use '' for a conversion without touches)")
            cols = ["conversions", "nulls"] + (["value"] if "value" in data else [])
            # numeric weights stay in their own dtype until each thread casts its slice
            weights = []
            for c in cols:
                w = data[c].to_numpy()
                if w.dtype.kind not in "biuf":
                    try:
                        w = data[c].to_numpy(dtype=float, na_value=np.nan)
                    except (TypeError, ValueError):
                        raise AttributionInputError(f"paths.{c}: numbers expected, got {data[c].dtype}") from None
                weights.append(w)
            names, codes, lens, sums = _weighted_paths(arr, weights, cols, self.sep)
            return names, codes, lens, sums[0], sums[1], (sums[2] if len(sums) > 2 else None)
        t_paths, notes = touches_to_paths(data, self.channels, self.sep)
        self.notes_ += notes
        tok_names, tok_codes, lens = _tokenize(pa.array(t_paths["path"].to_numpy(dtype=object), pa.string()),
                                               self.sep)
        names = np.unique(tok_names)
        return (names, np.searchsorted(names, tok_names)[tok_codes].astype(np.int64), lens,
                t_paths["conversions"].to_numpy(float), t_paths["nulls"].to_numpy(float),
                t_paths["value"].to_numpy(float))

    # -- fit -----------------------------------------------------------------------
    def fit(self, data: pd.DataFrame) -> "MarkovAttribution":
        self.notes_: list[str] = []
        names, ch_codes, lens, conv, nul, val = self._paths(data)
        if conv.sum() <= 0:
            raise AttributionInputError(f"paths: no conversions among {int(conv.sum() + nul.sum()):,} "
                                        "journeys: there is nothing to attribute")
        # '' (a conversion without touches) is a path of length 0
        empty_name = np.nonzero(names == "")[0]
        if len(empty_name):
            e = empty_name[0]
            is_empty_tok = ch_codes == e
            if is_empty_tok.any():
                # a lone '' means no touch; '' between separators is a blank channel name
                starts = np.r_[0, np.cumsum(lens)[:-1]]
                lone = (lens == 1) & is_empty_tok[np.minimum(starts, len(ch_codes) - 1)]
                if (is_empty_tok.sum() != lone.sum()):
                    raise AttributionInputError("paths.path: a blank channel name between separators "
                                                f"(e.g. 'a{self.sep}{self.sep}b')")
                drop_tok = np.zeros(len(ch_codes), bool)
                drop_tok[starts[lone]] = True
                ch_codes = ch_codes[~drop_tok]
                lens = np.where(lone, 0, lens)
            names = np.delete(names, e)
            ch_codes = np.where(ch_codes > e, ch_codes - 1, ch_codes)
        names = [str(x) for x in names]
        if not names:
            raise AttributionInputError("paths: no channel at all (every path is '', conversions without "
                                        "touches): there is nothing to attribute")
        if self.channels is not None:
            unknown = sorted(set(names) - set(self.channels))
            if unknown:
                raise AttributionInputError(f"paths.path: channel(s) outside the vocabulary: {unknown[:10]} "
                                            "(names are case-sensitive)")
        if len(names) == 1:
            self.notes_.append(f"only one channel ('{names[0]}'): it has removal effect 1 and all the credit")
        C = len(names)
        self.channels_ = names
        self._solve_chain(ch_codes, lens, conv, nul, val, C)
        return self

    def _solve_chain(self, ch, lens, conv, nul, val, C):
        k = self.order
        n_paths, n_tok = len(lens), len(ch)
        ends = np.cumsum(lens)
        path_of = np.repeat(np.arange(n_paths), lens)
        first = np.zeros(n_tok, dtype=bool)              # the first touch of its path
        first[(ends - lens)[lens > 0]] = True
        # state of each touch = the last k channels (codes 1..C; 0 = before the start)
        base = C + 1
        if k == 1:
            code = ch + 1
        else:
            pos = np.arange(n_tok) - (ends - lens)[path_of]
            code = np.zeros(n_tok, dtype=np.int64)
            for j in range(k):                  # k is the model order (1-4): a loop over lags only
                prev = np.where(pos >= j, ch[np.maximum(np.arange(n_tok) - j, 0)] + 1, 0)
                code += prev * base ** j
        horizon = None
        if self.max_steps is not None:
            # ChannelAttribution's semantics: a state repeated in a row is one visit
            rep = ~first & (code == np.r_[-1, code[:-1]])
            if rep.any():
                code, path_of, first = code[~rep], path_of[~rep], first[~rep]
                lens = np.bincount(path_of, minlength=n_paths).astype(np.int64)
                ends = np.cumsum(lens)
            seen = lens[(conv + nul) > 0]
            horizon = int(seen.max()) + 1 if self.max_steps == "data" else int(self.max_steps)
        self.max_steps_ = horizon
        if k == 1:                               # the states are the channels
            st_codes, st_idx = np.arange(1, C + 1), code - 1
        else:
            st_codes, st_idx = np.unique(code, return_inverse=True)
        S = len(st_codes)          # transient channel states; index S = (start)
        START_I, N_T = S, S + 1
        wt = (conv + nul)[path_of]
        # from: previous state (or start); to: this state
        frm = np.where(first, START_I, np.r_[0, st_idx[:-1]])
        counts = np.bincount(frm * N_T + st_idx, wt, minlength=N_T * N_T).reshape(N_T, N_T)
        # absorption: last state of each path (start for empty paths)
        last = np.full(n_paths, START_I, dtype=np.int64)
        has = lens > 0
        last[has] = st_idx[ends[has] - 1]
        to_conv = np.bincount(last, conv, minlength=N_T)
        to_null = np.bincount(last, nul, minlength=N_T)
        out = counts.sum(1) + to_conv + to_null
        out_safe = np.where(out > 0, out, 1.0)
        Q = counts / out_safe[:, None]
        r_conv = to_conv / out_safe
        # channels present in each state; column 0 keeps every state, column 1 + c removes c
        digits = (st_codes[:, None] // base ** np.arange(k)[None, :]) % base      # S x k, 0 = none
        keep = np.ones((N_T, C + 1), dtype=bool)
        keep[:S, 1:] = ~(digits[:, :, None] == np.arange(1, C + 1)[None, None, :]).any(1)
        x = _absorb_each(Q, r_conv, keep, horizon)[START_I]
        p0 = x[0]
        if not p0 > 0:
            raise AttributionInputError(f"paths: no conversion is reached within max_steps={horizon} channel "
                                        "visits: raise max_steps")
        re = 1.0 - x[1:] / p0
        if val is None:                          # no value column: the value is the conversion
            val, v0, rv = conv, p0, re.copy()
        else:
            xv = _absorb_each(Q, np.bincount(last, val, minlength=N_T) / out_safe, keep, horizon)[START_I]
            v0 = xv[0]
            rv = 1.0 - xv[1:] / v0 if v0 > 0 else np.ones(C)
        names = self.channels_
        self.conversion_probability_ = float(p0)
        self.expected_value_ = float(v0)
        self.removal_effects_ = pd.Series(re, index=pd.Index(names, name="channel"), name="removal_effect")
        self.value_removal_effects_ = pd.Series(rv, index=self.removal_effects_.index,
                                                name="value_removal_effect")
        tot_c, tot_v = float(conv.sum()), float(val.sum())
        share = re / re.sum() if re.sum() > 0 else np.full(C, np.nan)
        vshare = rv / rv.sum() if rv.sum() > 0 else np.full(C, np.nan)
        o = np.argsort(-share, kind="stable")          # largest share first (NaN last)
        self.attribution_ = pd.DataFrame({"channel": np.asarray(names, dtype=object)[o], "removal_effect": re[o],
                                          "share": share[o], "conversions": share[o] * tot_c,
                                          "revenue": vshare[o] * tot_v})
        self._tm_parts = (digits, Q, r_conv, to_null / out_safe)
        self._tm = None
        self._Q, self._r = Q, r_conv
        return self


    @property
    def transition_matrix_(self) -> pd.DataFrame:
        """Tidy transition probabilities (from, to, probability), built on first access."""
        if getattr(self, "_tm", None) is None:
            if not hasattr(self, "_tm_parts"):
                raise AttributeError("transition_matrix_: call fit first")
            digits, Q, r_conv, r_null = self._tm_parts
            names = self.channels_
            n_t = Q.shape[0]
            lab = [",".join(names[d - 1] for d in row[::-1] if d > 0) for row in digits]
            labels = np.array(lab + [START] + [CONV, NULL], dtype=object)
            full = np.zeros((n_t, n_t + 2))
            full[:, :n_t] = Q
            full[:, n_t] = r_conv
            full[:, n_t + 1] = r_null
            i, j = np.nonzero(full)
            self._tm = pd.DataFrame({"from": labels[i], "to": labels[j], "probability": full[i, j]})
        return self._tm


# ============================================================================ Shapley
class ShapleyAttribution:
    """Exact Shapley values of the channel-set game (Shao & Li 2011).

    ``v(S)`` = conversion rate of the journeys whose set of channels is exactly ``S``;
    ``v(empty) = base_rate`` (default 0: journeys without any touch that did not convert are
    never observed, so their rate cannot be estimated; 0 shares the base rate among the
    channels). Coalitions seen in fewer than ``min_journeys`` journeys take the best rate of
    their observed subsets (a monotone fill). The Shapley value of channel i averages its
    marginal contribution ``v(S + i) - v(S)`` over all orders: exact sum over the 2^n
    coalitions, vectorised; refused above ``max_channels``.

    Two readings of the same game:

    * ``values_`` / ``shares_``: the Shapley values of the whole game (all channels), normalised;
    * ``credit_shares_`` and the ``conversions`` / ``revenue`` columns of ``attribution_``:
      every conversion (and its revenue) split among *its own* journey's channels by the
      Shapley values of the game restricted to that journey's channel set ("data-driven
      attribution" per conversion); needs at most ``per_journey_max`` channels.

    Fitted: ``values_``, ``shares_``, ``credit_shares_``, ``coalitions_`` (set, journeys,
    conversions, rate, value_used), ``attribution_`` (channel, shapley_value, share,
    credit_share, conversions, revenue; plus ``(no touch)`` for conversions without a touch),
    ``notes_``.
    """

    def __init__(self, base_rate: float = 0.0, min_journeys: int = 10, max_channels: int = 16,
                 per_journey_max: int = 12, channels: Iterable[str] | None = None):
        self.base_rate = float(base_rate)
        self.per_journey_max = int(per_journey_max)
        self.min_journeys = int(min_journeys)
        self.max_channels = int(max_channels)
        self.channels = None if channels is None else list(channels)

    def fit(self, touches: pd.DataFrame) -> "ShapleyAttribution":
        t, notes = check_touches(touches, self.channels)
        self.notes_ = list(notes)
        names = sorted(t["channel"].dropna().unique().tolist())
        n = len(names)
        if n == 0:
            raise AttributionInputError("touches: no channel at all, nothing to attribute")
        if n > self.max_channels:
            raise AttributionInputError(f"{n} channels: exact Shapley values need 2^{n} coalitions; "
                                        f"the limit is max_channels={self.max_channels} (group channels "
                                        "or use the Markov model)")
        code = {c: i for i, c in enumerate(names)}
        bit = t["channel"].map(code)
        b = np.where(bit.notna(), np.left_shift(1, bit.fillna(0).to_numpy(dtype=np.int64)), 0)
        jf = pd.factorize(t["journey_id"])[0]
        # bitwise OR per journey = the sum of its distinct channel bits (cython groupby sum)
        mask = (pd.DataFrame({"j": jf, "b": b}).drop_duplicates().groupby("j", sort=True)["b"].sum()
                .to_numpy())
        first = t.drop_duplicates("journey_id")
        conv = first["converted"].astype(bool).to_numpy()
        val = first["value"].to_numpy(dtype=float)
        N = 1 << n
        nj = np.bincount(mask, minlength=N).astype(float)
        nc = np.bincount(mask, conv.astype(float), minlength=N)
        seen = nj >= self.min_journeys
        seen[0] = True
        rate = np.divide(nc, nj, out=np.zeros(N), where=nj > 0)
        v = np.where(seen, rate, -np.inf)
        v[0] = self.base_rate
        fill = v.copy()
        masks = np.arange(N)
        for i in range(n):                      # sum-over-subsets max, one pass per channel
            has = (masks >> i) & 1 == 1
            fill[has] = np.maximum(fill[has], fill[masks[has] ^ (1 << i)])
        v = np.where(seen, v, fill)
        if (~seen).any():
            self.notes_.append(f"{int((~seen).sum())} of {N - 1} channel sets had fewer than "
                               f"{self.min_journeys} journeys; they take the best rate of their subsets")
        pop = np.array([bin(m).count("1") for m in range(N)]) if N <= 1 << 12 else \
            np.unpackbits(masks.astype(">u4").view(np.uint8).reshape(-1, 4), axis=1).sum(1)
        fact = np.array([math.factorial(k) for k in range(n + 1)], dtype=float)
        wgt = fact[pop] * fact[n - pop - 1].clip(min=0) / fact[n]
        phi = np.zeros(n)
        for i in range(n):                      # one vectorised sum per channel
            without = ((masks >> i) & 1) == 0
            m = masks[without]
            phi[i] = float(np.sum(wgt[m] * (v[m | (1 << i)] - v[m])))
        self.channels_ = names
        self.values_ = pd.Series(phi, index=pd.Index(names, name="channel"), name="shapley_value")
        tot = phi.sum()
        self.shares_ = self.values_ / tot if tot > 0 else self.values_ * np.nan
        sets = ["|".join(c for i, c in enumerate(names) if (m >> i) & 1) or "(none)" for m in range(N)]
        self.coalitions_ = pd.DataFrame({"set": sets, "journeys": nj.astype(np.int64),
                                         "conversions": nc.astype(np.int64), "rate": rate,
                                         "value_used": v})
        self._v, self._fact = v, fact
        # per-conversion credit: each converting journey's conversion (and revenue) split among
        # its own channels by the Shapley values of the game restricted to its channel set
        n_conv, tot_val = float(conv.sum()), float(val[conv].sum())
        cm = mask[conv]
        credit_c, credit_v = np.zeros(n), np.zeros(n)
        unattributed = (float((cm == 0).sum()), float(val[conv][cm == 0].sum()))
        if n <= self.per_journey_max:
            cu, inv_u = np.unique(cm, return_inverse=True)
            k_conv = np.bincount(inv_u, minlength=len(cu)).astype(float)
            k_val = np.bincount(inv_u, val[conv], minlength=len(cu))
            for u, kc, kv in zip(cu, k_conv, k_val):      # one small game per distinct channel set
                if u == 0:
                    continue
                ph = self._restricted(int(u), n)
                tot_u = ph.sum()
                share_u = ph / tot_u if tot_u > 0 else np.where(ph != 0, 1.0 / (ph != 0).sum(), 0.0)
                credit_c += kc * share_u
                credit_v += kv * share_u
            self.credit_shares_ = pd.Series(credit_c / credit_c.sum(), index=self.values_.index,
                                            name="credit_share")
        else:
            self.notes_.append(f"{n} channels: per-conversion credit needs n <= {self.per_journey_max}; "
                               "conversions and revenue are split by the global Shapley shares")
            credit_c = self.shares_.to_numpy() * (n_conv - unattributed[0])
            credit_v = self.shares_.to_numpy() * (tot_val - unattributed[1])
            self.credit_shares_ = self.shares_.rename("credit_share")
        self.attribution_ = pd.DataFrame({"channel": names, "shapley_value": phi,
                                          "share": self.shares_.to_numpy(),
                                          "credit_share": self.credit_shares_.to_numpy(),
                                          "conversions": credit_c, "revenue": credit_v}
                                         ).sort_values("share", ascending=False).reset_index(drop=True)
        if unattributed[0]:
            self.attribution_.loc[len(self.attribution_)] = [NO_TOUCH, np.nan, np.nan, np.nan,
                                                             unattributed[0], unattributed[1]]
        return self

    def _restricted(self, u: int, n: int) -> np.ndarray:
        """Shapley values of the game v restricted to the channels of mask u (others 0)."""
        v, fact = self._v, self._fact
        masks = np.arange(1 << n)
        sub = masks[(masks & ~u) == 0]
        size = bin(u).count("1")
        pop = np.array([bin(m).count("1") for m in sub])
        ph = np.zeros(n)
        for i in range(n):
            if not (u >> i) & 1:
                continue
            t = sub[(sub >> i) & 1 == 0]
            pt = pop[(sub >> i) & 1 == 0]
            w = fact[pt] * fact[size - pt - 1] / fact[size]
            ph[i] = float(np.sum(w * (v[t | (1 << i)] - v[t])))
        return ph


# ============================================================================ comparison
def compare_models(touches: pd.DataFrame, *, markov_order: int = 1, shapley: bool = True,
                   channels: Iterable[str] | None = None, markov: "MarkovAttribution | None" = None,
                   shapley_model: "ShapleyAttribution | None" = None, **heuristic_kwargs) -> pd.DataFrame:
    """Share of conversions per channel under every model, side by side (rows: channels).

    Heuristic shares include ``(no touch)`` when some conversions had no touch; the
    data-driven shares are over the touched channels (they sum to 1 over channels).
    """
    cols = {}
    touches, _ = check_touches(touches, channels)          # once, not once per model
    for m in HEURISTIC_MODELS:
        r = heuristic_attribution(touches, m, **heuristic_kwargs).set_index("channel")
        cols[m] = r["share"]
    mk = markov if markov is not None else MarkovAttribution(order=markov_order).fit(touches)
    cols[f"markov_o{mk.order}"] = mk.attribution_.set_index("channel")["share"]
    if shapley:
        sh = shapley_model if shapley_model is not None else ShapleyAttribution().fit(touches)
        cols["shapley"] = sh.shares_
        cols["shapley_per_conversion"] = sh.credit_shares_
    return pd.DataFrame(cols).fillna(0.0).rename_axis("channel")


#: readable column names for the model comparison table, data-driven models first
MODEL_LABELS = {
    "shapley_per_conversion": "Shapley, per conversion (headline)", "markov_o1": "Markov chain",
    "markov_o2": "Markov chain (order 2)", "markov_o3": "Markov chain (order 3)", "shapley": "Shapley, overall",
    "first_touch": "first touch", "last_touch": "last touch", "last_non_direct": "last non-direct touch",
    "linear": "linear", "time_decay": "time decay", "position_based": "position based",
}


def comparison_for_report(table: pd.DataFrame, by: str = "shapley_per_conversion") -> pd.DataFrame:
    """The model comparison ordered as the headline reads it: channels by the ``by`` model's credit
    (largest first, "(no touch)" last), data-driven models first, columns named in words."""
    t = table.copy()
    if by in t:
        key = t[by].drop("(no touch)", errors="ignore").sort_values(ascending=False).index.tolist()
        t = t.loc[key + [c for c in t.index if c not in key]]
    first = [c for c in ("shapley_per_conversion", "markov_o1", "markov_o2", "markov_o3", "shapley") if c in t]
    t = t[first + [c for c in t.columns if c not in first]]
    t.columns = [MODEL_LABELS.get(c, c.replace("_", " ")) for c in t.columns]
    t.index.name = "channel"
    return t


def plot_model_comparison(table: pd.DataFrame, title: str = "Channel credit by attribution model",
                          truth: Mapping[str, float] | None = None, truth_label: str = "planted truth",
                          keep_order: bool = False):
    """Grouped bars: channels on the x axis, one bar per model (share of conversions).

    ``keep_order``: channels in the table's order (as :func:`comparison_for_report` sorts
    them), else by mean credit over the models."""
    import matplotlib.pyplot as plt

    from .report import PALETTE

    tab = table.copy()
    if truth is not None:
        tab[truth_label] = pd.Series(truth)
    tab = tab.fillna(0.0)
    order = tab.index if keep_order else tab.mean(axis=1).sort_values(ascending=False).index
    tab = tab.loc[order]
    fig, ax = plt.subplots(figsize=(11, 4.8))
    k = tab.shape[1]
    width = 0.8 / k
    x = np.arange(len(tab))
    for i, col in enumerate(tab.columns):
        kw = dict(color="black", alpha=0.85) if col == truth_label else dict(color=PALETTE[i % len(PALETTE)])
        ax.bar(x + (i - (k - 1) / 2) * width, tab[col].to_numpy(), width, label=col, **kw)
    ax.set_xticks(x, tab.index, rotation=20)
    ax.set_ylabel("share of conversions credited")
    ax.set_xlabel("channel")
    ax.yaxis.set_major_formatter(plt.matplotlib.ticker.PercentFormatter(1.0))
    ax.set_title(title)
    ax.legend(title="model", bbox_to_anchor=(1.01, 1), loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig
