"""From the contract tables to one row per experiment unit, with its metrics.

``prepare()`` takes the assignments of one experiment (``experiments`` table),
checks them (known id, at least two variants, one control, nothing after the data
end), flags units seen in more than one variant (excluded, counted), keeps units
whose outcome window is complete by the data end, and measures per unit over the
window ``[assigned_at, assigned_at + window_days)``:

* ``orders`` (not cancelled), ``converted`` (orders > 0), ``order_value`` (their
  ``net_amount``), ``revenue`` (``net_amount`` of completed orders: net of returns
  and cancellations), ``returned`` (returned orders), ``sessions`` (distinct
  ``session_id`` in ``touchpoints``);
* the pre-period covariates ``pre_revenue`` / ``pre_orders`` (from the experiments
  table, or computed from orders over ``pre_period_days`` before assignment);
* segments for breakdowns: ``acquisition_channel``, ``region`` (customers) and
  ``customer_type`` (new = no order in the pre-period, returning).

Which orders count (``attribution``): ``"campaign"`` = orders whose purchase
touchpoint carries the experiment id as ``campaign`` (how the sample retailer and
most e-mail / web tools tag an experiment's orders); ``"all"`` = every order of the
unit in the window; ``"auto"`` (default) = campaign when such touchpoints exist.

Everything is set-based (merges and group-bys); no loop over units.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import pandas as pd

from ..timeutil import as_bound

from .errors import ExperimentInputError

__all__ = ["Metric", "METRICS", "ExperimentData", "prepare", "experiment_ids", "DEFAULT_WINDOW_DAYS"]

DEFAULT_WINDOW_DAYS = 14
PRE_PERIOD_DAYS = 90


@dataclass(frozen=True)
class Metric:
    """A per-unit metric: a mean of ``numerator`` per unit, or a ratio of sums when ``denominator`` is set.

    ``covariate``: the pre-period column CUPED uses; ``higher_is_better``: the good
    direction; ``kind``: ``proportion`` / ``mean`` / ``ratio``; ``unit``: ``share`` /
    ``currency`` / ``count`` (for labels); ``cappable``: winsorising applies.
    """

    name: str
    label: str
    numerator: str
    denominator: str | None = None
    covariate: str | None = None
    higher_is_better: bool = True
    kind: str = "mean"
    unit: str = "count"
    cappable: bool = False


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("conversion", "Conversion rate", "converted", covariate="pre_orders", kind="proportion", unit="share"),
    Metric("revenue_per_user", "Revenue per unit", "revenue", covariate="pre_revenue", unit="currency",
           cappable=True),
    Metric("orders_per_user", "Orders per unit", "orders", covariate="pre_orders"),
    Metric("aov", "Average order value", "order_value", "orders", kind="ratio", unit="currency", cappable=True),
    Metric("orders_per_session", "Orders per session", "orders", "sessions", kind="ratio"),
    Metric("return_rate", "Return rate (returned / orders)", "returned", "orders", higher_is_better=False,
           kind="ratio", unit="share"),
)}


@dataclass
class ExperimentData:
    """One experiment's units (one row each) and what was checked on the way."""

    experiment_id: str
    units: pd.DataFrame
    control: str
    variants: list[str]                     # control first
    planned_shares: dict[str, float] | None
    window_days: float
    attribution: str
    data_end: pd.Timestamp
    first_assigned: pd.Timestamp
    last_assigned: pd.Timestamp
    running: bool
    assigned_units: int                     # distinct units before exclusions
    excluded: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def treatments(self) -> list[str]:
        return [v for v in self.variants if v != self.control]

    def counts(self) -> dict[str, int]:
        vc = self.units["variant"].value_counts()
        return {v: int(vc.get(v, 0)) for v in self.variants}

    @property
    def enrolment_days(self) -> float:
        return (self.last_assigned - self.first_assigned).total_seconds() / 86400.0

    @property
    def traffic_per_day(self) -> float:
        """Units assigned per day (all variants); a one-shot send (< 1 day) counts as one day."""
        return self.assigned_units / max(self.enrolment_days, 1.0)


def experiment_ids(tables: Mapping[str, pd.DataFrame | None]) -> list[str]:
    """The experiment ids in the experiments table, oldest first (by first assignment)."""
    exps = _experiments_table(tables)
    if "assigned_at" not in exps:  # no assignment times: in the order of the table
        return [str(x) for x in exps["experiment_id"].dropna().unique()]
    first = exps.groupby("experiment_id", sort=False)["assigned_at"].min().sort_values(kind="stable")
    return [str(x) for x in first.index]


def _experiments_table(tables) -> pd.DataFrame:
    exps = tables.get("experiments")
    if exps is None:
        raise ExperimentInputError("no experiments table: add `experiments: {path: ...}` under data.tables in "
                                   "omni.yaml (columns experiment_id, unit_id, variant, assigned_at)")
    missing = [c for c in ("experiment_id", "unit_id", "variant") if c not in exps]  # assigned_at optional
    if missing:
        raise ExperimentInputError(f"experiments table lacks required column(s) {missing}")
    if exps.empty:
        raise ExperimentInputError("the experiments table has no rows")
    return exps


def _data_end(tables, config, data_end) -> tuple[pd.Timestamp, str | None]:
    if data_end is not None:
        # a bare date means the end of that day, as for data_end in omni.yaml
        return as_bound(data_end, end_of_day=True, error=ExperimentInputError, what="data_end"), None
    if config is not None and getattr(config, "data_end", None) is not None:
        return pd.Timestamp(config.data_end), None
    cands = []
    for name, col in (("orders", "order_ts"), ("touchpoints", "event_ts")):
        df = tables.get(name)
        if df is not None and col in df and len(df):
            cands.append(df[col].max())
    if not cands:
        raise ExperimentInputError("cannot tell where the data end: no data_end in omni.yaml and no orders")
    end = max(cands)
    return end, f"no data_end configured: the data end is taken as the last order/touchpoint ({end})"


def prepare(tables: Mapping[str, pd.DataFrame | None], experiment_id: str, *, config=None,
            window_days: float = DEFAULT_WINDOW_DAYS, attribution: str = "auto", control: str | None = None,
            data_end=None, pre_period_days: float = PRE_PERIOD_DAYS) -> ExperimentData:
    """One row per unit of ``experiment_id`` with its metrics, covariates and segments.

    ``tables``: the contract tables after ``privacy.apply_consent`` (``experiments``
    and ``orders`` needed; ``touchpoints`` for campaign attribution and sessions;
    ``customers`` for segments). ``config``: the Config (for ``data_end``).
    ``control``: the control variant when the table has no ``is_control`` column.
    Raises :class:`ExperimentInputError` with a plain message for bad input.
    """
    if not window_days or window_days <= 0:
        raise ExperimentInputError(f"window_days must be positive, got {window_days}")
    if attribution not in ("auto", "campaign", "all"):
        raise ExperimentInputError(f"attribution must be 'auto', 'campaign' or 'all', got {attribution!r}")
    exps = _experiments_table(tables)
    orders = tables.get("orders")
    if orders is None:
        raise ExperimentInputError("no orders table: the metrics are measured on orders")
    notes: list[str] = []
    excluded: dict[str, int] = {}

    ids = exps["experiment_id"].dropna().unique()
    if experiment_id not in set(ids):
        close = difflib.get_close_matches(str(experiment_id), [str(i) for i in ids], n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ExperimentInputError(f"unknown experiment id '{experiment_id}'{hint} The experiments table has "
                                   f"{len(ids)}: {', '.join(sorted(map(str, ids)))}")
    e = exps.loc[exps["experiment_id"] == experiment_id].copy()
    tcfg = getattr(config, "tables", {}).get("experiments") if config is not None else None
    # per-unit outcomes given in the data (experiments.outcomes in omni.yaml): measured already,
    # so they need no window and no orders
    outcomes = [o for o in (tcfg.outcomes if tcfg is not None else {}) if o in e]
    if control is None and tcfg is not None and tcfg.control is not None:
        control = tcfg.control
    end0, _ = _data_end(tables, config, data_end)
    if "assigned_at" not in e or e["assigned_at"].isna().all():
        if not outcomes:
            raise ExperimentInputError(
                f"experiment '{experiment_id}': the experiments table has no assigned_at, so outcomes cannot be "
                "measured from orders after assignment; give assigned_at, or per-unit outcome columns "
                "(data.tables.experiments.outcomes in omni.yaml)")
        e["assigned_at"] = pd.Timestamp(end0)
        notes.append("no assignment times: units are analysed as of the data end (no daily monitoring)")
    for o in outcomes:
        miss = e[o].isna()
        if miss.any():
            notes.append(f"{int(miss.sum()):,} units without a value of outcome '{o}' are left out")
            e = e.loc[~miss]

    bad = e["unit_id"].isna() | e["variant"].isna() | e["assigned_at"].isna()
    if bad.any():
        excluded["missing_unit_variant_or_time"] = int(bad.sum())
        notes.append(f"{int(bad.sum()):,} assignment rows without unit, variant or time were dropped")
        e = e.loc[~bad]

    # --- data end: nothing may be assigned after it
    end, note = _data_end(tables, config, data_end)
    if note:
        notes.append(note)
    end = as_bound(end, e["assigned_at"], error=ExperimentInputError, what="data_end")
    late = e["assigned_at"] > end
    if late.any():
        ex = e.loc[late, "assigned_at"].sort_values().head(3).astype(str).tolist()
        raise ExperimentInputError(
            f"experiments: {int(late.sum()):,} assignments of '{experiment_id}' are after the data end ({end}), "
            f"e.g. {ex}; a timezone mistake, or the export is older than the assignments")

    # --- units seen in two variants: excluded and counted; repeated identical rows: first kept
    nvar = e.groupby("unit_id")["variant"].nunique()
    both = nvar.index[nvar > 1]
    if len(both):
        excluded["in_two_variants"] = int(len(both))
        notes.append(f"{len(both):,} units were assigned to more than one variant and are excluded")
        e = e.loc[~e["unit_id"].isin(both)]
    before = len(e)
    e = e.sort_values("assigned_at", kind="stable").drop_duplicates("unit_id", keep="first")
    if len(e) < before:
        excluded["repeated_assignment"] = before - len(e)
        notes.append(f"{before - len(e):,} repeated assignments of the same unit to the same variant "
                     "were counted once (the first)")
    assigned_units = len(e)

    # --- variants and the control
    variants = sorted(str(v) for v in e["variant"].unique())
    if len(variants) < 2:
        only = variants[0] if variants else "none"
        raise ExperimentInputError(
            f"experiment '{experiment_id}' has only one variant ('{only}', {len(e):,} units): an A/B test "
            "needs a control and at least one other variant")
    if control is not None:
        if control not in variants:
            raise ExperimentInputError(f"control '{control}' is not a variant of '{experiment_id}' ({variants})")
        ctrl = control
    elif "is_control" in e:
        marked = sorted(str(v) for v in e.loc[e["is_control"].eq(True).fillna(False).astype(bool),
                                               "variant"].unique())
        if not marked:
            raise ExperimentInputError(
                f"experiment '{experiment_id}' has no control: no variant of {variants} has is_control = true; "
                "mark the control in the experiments table or pass control='...'")
        if len(marked) > 1:
            raise ExperimentInputError(
                f"experiment '{experiment_id}' has {len(marked)} variants marked as control ({marked}); "
                "mark exactly one, or pass control='...'")
        ctrl = marked[0]
    else:
        named = [v for v in variants if v.lower() in ("control", "a")]
        if len(named) != 1:
            raise ExperimentInputError(
                f"experiment '{experiment_id}' has no control: the table has no is_control column and no "
                f"variant is called 'control' or 'A' ({variants}); pass control='...'")
        ctrl = named[0]
        notes.append(f"no is_control column: '{ctrl}' is taken as the control")
    variants = [ctrl] + [v for v in variants if v != ctrl]

    planned = None
    if "planned_share" in e and e["planned_share"].notna().any():
        ps = e.groupby("variant")["planned_share"].first()
        planned = {v: float(ps.get(v, np.nan)) for v in variants}
        if any(np.isnan(x) for x in planned.values()):
            notes.append("some variants have no planned share: the SRM check assumes an equal split")
            planned = None
    else:
        notes.append("no planned_share column: the SRM check assumes an equal split")

    # --- windows: only units whose window has closed by the data end
    win = pd.Timedelta(days=float(window_days))
    e = e.assign(window_end=e["assigned_at"] + win)
    open_ = (e["window_end"] > end) & (not outcomes)   # given outcomes are already final
    running = bool(open_.any())
    if open_.all():
        raise ExperimentInputError(
            f"no unit of '{experiment_id}' has a complete {window_days:g}-day window by the data end ({end}): "
            f"the first assignment is {e['assigned_at'].min()}; wait, or shorten window_days")
    if open_.any():
        excluded["window_not_complete"] = int(open_.sum())
        notes.append(f"{int(open_.sum()):,} units assigned in the last {window_days:g} days are left out until "
                     "their window closes (the test is still running)")
        e = e.loc[~open_]

    first_assigned, last_assigned = e["assigned_at"].agg(["min", "max"])
    keep = [c for c in ("unit_id", "variant", "assigned_at", "window_end", "planned_share", "pre_revenue",
                        "pre_orders") if c in e] + [o for o in outcomes if o not in ("unit_id", "variant")]
    units = e[keep].reset_index(drop=True)
    units["variant"] = units["variant"].astype(str)
    # the customer behind each unit: the store links units to customers where the id matches one
    # (a unit may be a record, a session or a store: then it has no orders of its own)
    units["_cust"] = (e["customer_id"] if "customer_id" in e else e["unit_id"]).to_numpy()

    # --- attribution and metrics
    tp = tables.get("touchpoints")
    camp_orders = None
    if attribution in ("auto", "campaign"):
        if tp is not None and {"campaign", "event_type", "order_id"} <= set(tp.columns):
            sel = tp["event_type"].eq("purchase").fillna(False) & tp["campaign"].eq(experiment_id).fillna(False)
            camp_orders = tp.loc[sel, "order_id"].dropna().unique()
        if camp_orders is None or len(camp_orders) == 0:
            if attribution == "campaign":
                raise ExperimentInputError(
                    f"attribution='campaign' but no purchase touchpoint has campaign '{experiment_id}'; "
                    "use attribution='all' (every order of the unit in the window)")
            camp_orders = None
    used = "campaign" if camp_orders is not None else "all"
    if attribution == "auto":
        notes.append("orders counted: " + ("those tagged with the experiment's campaign (purchase touchpoints)"
                                           if used == "campaign" else "every order of the unit in the window "
                                           "(no purchase touchpoint carries the experiment id as campaign)"))
    units = _order_metrics(units, orders, camp_orders)
    units = _sessions(units, tp)
    if "pre_revenue" not in units or "pre_orders" not in units:
        units = _pre_period(units, orders, pre_period_days)
        notes.append(f"pre-period covariates computed from orders in the {pre_period_days:g} days before assignment")
    units = _segments(units, tables.get("customers")).drop(columns="_cust")
    for o in outcomes:  # a given outcome replaces the order-based metric of that name
        given = e.set_index("unit_id")[o]
        units[o] = units["unit_id"].map(given).astype(float).to_numpy()
        _register_outcome(o, units[o])
    if outcomes:
        notes.append("outcomes given per unit in the experiments table: " + ", ".join(outcomes))
    tz = units["assigned_at"].dt.tz
    units["day"] = units["assigned_at"].dt.tz_localize(None).dt.floor("D") if tz is not None else \
        units["assigned_at"].dt.floor("D")
    return ExperimentData(experiment_id=experiment_id, units=units, control=ctrl, variants=variants,
                          planned_shares=planned, window_days=float(window_days), attribution=used, data_end=end,
                          first_assigned=first_assigned, last_assigned=last_assigned, running=running,
                          assigned_units=assigned_units, excluded=excluded, notes=notes)


def _register_outcome(name: str, values: pd.Series) -> None:
    """Make a per-unit outcome column usable as a metric by its own name (0/1 -> a rate)."""
    if name == "converted" or name in METRICS:
        return
    is_rate = bool(values.dropna().isin([0.0, 1.0]).all())
    METRICS[name] = Metric(name, name.replace("_", " ").capitalize(), name,
                           kind="proportion" if is_rate else "mean", unit="share" if is_rate else "count")


def _order_metrics(units: pd.DataFrame, orders: pd.DataFrame, camp_orders) -> pd.DataFrame:
    o = orders
    if camp_orders is not None:
        o = o.loc[o["order_id"].isin(camp_orders)]
    o = o.loc[(o["order_ts"] >= units["assigned_at"].min()) & (o["order_ts"] < units["window_end"].max())]
    o = o.loc[o["customer_id"].isin(units["_cust"])]
    cols = ["customer_id", "order_ts", "net_amount"] + (["status"] if "status" in o else [])
    m = units[["unit_id", "_cust", "assigned_at", "window_end"]].merge(o[cols], left_on="_cust", right_on="customer_id")
    m = m.loc[(m["order_ts"] >= m["assigned_at"]) & (m["order_ts"] < m["window_end"])]
    status = m["status"].astype(object).where(m["status"].notna(), "completed") if "status" in m else \
        pd.Series("completed", index=m.index, dtype=object)
    valid = (status != "cancelled").to_numpy(dtype=bool)
    returned = (status == "returned").to_numpy(dtype=bool)
    amount = m["net_amount"].to_numpy(dtype=float)
    agg = pd.DataFrame({"unit_id": m["unit_id"].to_numpy(), "orders": valid.astype(float),
                        "order_value": np.where(valid, amount, 0.0),
                        "revenue": np.where(valid & ~returned, amount, 0.0),
                        "returned": returned.astype(float)}).groupby("unit_id", sort=False).sum()
    out = units.merge(agg, left_on="unit_id", right_index=True, how="left")
    for c in ("orders", "order_value", "revenue", "returned"):
        out[c] = out[c].fillna(0.0).astype(float)
    out["converted"] = (out["orders"] > 0).astype(float)
    return out


def _sessions(units: pd.DataFrame, tp: pd.DataFrame | None) -> pd.DataFrame:
    if tp is None or not {"session_id", "customer_id", "event_ts"} <= set(tp.columns):
        return units.assign(sessions=np.nan)
    ts = tp["event_ts"]
    t = tp.loc[(ts >= units["assigned_at"].min()) & (ts < units["window_end"].max()),
               ["customer_id", "event_ts", "session_id"]]   # cheap time filter first
    t = t.loc[t["session_id"].notna() & t["customer_id"].isin(units["_cust"])]
    m = units[["unit_id", "_cust", "assigned_at", "window_end"]].merge(t, left_on="_cust", right_on="customer_id")
    m = m.loc[(m["event_ts"] >= m["assigned_at"]) & (m["event_ts"] < m["window_end"])]
    s = m.drop_duplicates(["unit_id", "session_id"]).groupby("unit_id", sort=False).size().rename("sessions")
    out = units.merge(s, left_on="unit_id", right_index=True, how="left")
    out["sessions"] = out["sessions"].fillna(0).astype(float)
    return out


def _pre_period(units: pd.DataFrame, orders: pd.DataFrame, days: float) -> pd.DataFrame:
    """Orders (not cancelled) and their net amount in ``[assigned_at - days, assigned_at)``."""
    o = orders.loc[(orders["order_ts"] >= units["assigned_at"].min() - pd.Timedelta(days=days))
                   & (orders["order_ts"] < units["assigned_at"].max())]
    o = o.loc[o["customer_id"].isin(units["_cust"])]
    if "status" in o:
        o = o.loc[o["status"].ne("cancelled").fillna(True).astype(bool)]
    m = units[["unit_id", "_cust", "assigned_at"]].merge(o[["customer_id", "order_ts", "net_amount"]],
                                                         left_on="_cust", right_on="customer_id")
    m = m.loc[(m["order_ts"] >= m["assigned_at"] - pd.Timedelta(days=days)) & (m["order_ts"] < m["assigned_at"])]
    g = m.groupby("unit_id", sort=False).agg(pre_orders_c=("net_amount", "size"), pre_revenue_c=("net_amount", "sum"))
    out = units.drop(columns=[c for c in ("pre_orders", "pre_revenue") if c in units]).merge(
        g, left_on="unit_id", right_index=True, how="left")
    out["pre_orders"] = out.pop("pre_orders_c").fillna(0).astype(float)
    out["pre_revenue"] = out.pop("pre_revenue_c").fillna(0.0).astype(float)
    return out


def _segments(units: pd.DataFrame, customers: pd.DataFrame | None) -> pd.DataFrame:
    out = units
    for c in ("pre_orders", "pre_revenue"):
        out[c] = out[c].astype(float)
    if customers is not None:
        cols = [c for c in ("acquisition_channel", "region") if c in customers]
        if cols:
            out = out.merge(customers[["customer_id"] + cols], left_on="_cust", right_on="customer_id",
                            how="left").drop(columns="customer_id")
            for c in cols:
                out[c] = out[c].astype(object).where(out[c].notna(), "unknown").astype(str)
    out["customer_type"] = np.where(out["pre_orders"] > 0, "returning", "new")
    return out
