"""Non-contractual churn: who will not buy again in the next window, and why.

A customer "churns" at a cutoff when they bought at least once on or before the
cutoff and make no purchase in the following ``horizon_days``. Features use only
events on or before the cutoff (a test shuffles later events to prove it), built
set-based with pandas group-bys from the contract tables.

Validation is time-based: the model is trained at an earlier cutoff
(``cutoff - horizon``, labels from the window that ends at ``cutoff``) and
scored at ``cutoff``, so no label of the evaluation window is ever seen in
training. When the data are too short for that (CDNOW's 39/39 weeks), the
fallback is customer-level cross-fitting at the same cutoff, and the report says so.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from threadpoolctl import threadpool_limits

from . import clv


class ChurnInputError(ValueError):
    """Cutoffs, horizons or tables that cannot give a churn dataset."""


def _local(ts: pd.Series) -> pd.Series:
    ts = pd.to_datetime(ts)
    return ts.dt.tz_localize(None) if getattr(ts.dt, "tz", None) is not None else ts


def _ts(x) -> pd.Timestamp:
    t = pd.Timestamp(x)
    return t.tz_localize(None) if t.tzinfo is not None else t


# --------------------------------------------------------------------------- labels
def churn_labels(orders: pd.DataFrame, cutoff, horizon_days: float,
                 customer_col: str = "customer_id", time_col: str = "order_ts", data_end=None) -> pd.Series:
    """1 if a customer active on or before ``cutoff`` makes no purchase in the next window.

    Cutoff is inclusive of its whole day when given as a date. The window must
    end by ``data_end`` (default: the last order), with one day of tolerance.
    """
    cutoff, ts = _end_of(cutoff), _local(orders[time_col])
    end = cutoff + pd.Timedelta(days=horizon_days)
    last = _ts(data_end) if data_end is not None else ts.max()
    if end.normalize() > last.normalize() + pd.Timedelta(days=1):
        raise ChurnInputError(
            f"the churn window runs to {end.date()} but the data end on {last.date()}: "
            "shorten horizon_days or move the cutoff earlier")
    active = orders.loc[(ts <= cutoff).to_numpy(), customer_col].unique()
    if len(active) == 0:
        raise ChurnInputError(f"no customer bought on or before the cutoff {cutoff.date()}")
    bought = orders.loc[((ts > cutoff) & (ts <= end)).to_numpy(), customer_col].unique()
    y = pd.Series(1, index=pd.Index(np.sort(active), name=customer_col), name="churned")
    y[y.index.isin(bought)] = 0
    return y


def _end_of(cutoff) -> pd.Timestamp:
    t = _ts(cutoff)
    return t + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1) if t == t.normalize() else t


# --------------------------------------------------------------------------- features
FEATURE_LABELS = {
    "days_since_last": "days since the last purchase",
    "frequency": "number of repeat purchases",
    "tenure_days": "days since the first purchase",
    "orders_90d": "orders in the last 90 days",
    "spend_total": "total spend",
    "aov": "average order value",
    "ipt_mean": "mean days between purchases",
    "ipt_std": "spread of days between purchases",
    "overdue_ratio": "days since last purchase relative to the usual gap",
    "spend_trend": "recent vs earlier spend",
    "n_channels": "number of sales channels used",
    "online_share": "share of orders online",
    "return_rate": "share of orders returned",
    "discount_share": "share of spend discounted",
    "tickets": "service tickets",
    "fcr_rate": "tickets resolved at first contact",
    "last_nps": "latest NPS answer",
    "last_csat": "latest CSAT answer",
    "experiments": "experiments the customer was in",
    "visits_30d": "visits in the last 30 days",
    "bgnbd_expected": "BG/NBD expected purchases in the window",
    "bgnbd_p_alive": "BG/NBD probability of being alive",
}


def churn_features(tables: Mapping[str, pd.DataFrame | None], cutoff, channel_kinds: Mapping[str, str] | None = None,
                   horizon_days: float | None = None) -> pd.DataFrame:
    """Customer features from events on or before ``cutoff`` only (one row per active customer).

    ``tables`` holds contract tables (``orders`` required; ``tickets``,
    ``surveys``, ``experiments``, ``touchpoints`` used when present).
    ``channel_kinds`` maps channel -> online/offline for the online share.
    With ``horizon_days`` the BG/NBD expectation for that window is added.
    """
    orders = tables.get("orders")
    if orders is None or orders.empty:
        raise ChurnInputError("orders are empty: churn needs purchase history")
    cutoff = _end_of(cutoff)
    ts = _local(orders["order_ts"])
    o = orders.loc[(ts <= cutoff).to_numpy()].copy()
    if o.empty:
        raise ChurnInputError(f"no orders on or before the cutoff {cutoff.date()}")
    o["_ts"] = _local(o["order_ts"])
    o["_day"] = o["_ts"].dt.normalize()
    if "status" in o:
        completed = o[o["status"].astype("string").ne("cancelled").fillna(True).to_numpy(dtype=bool)]
    else:
        completed = o
    g = completed.groupby("customer_id")
    first, last = g["_ts"].min(), g["_ts"].max()
    f = pd.DataFrame(index=first.index)
    f.index.name = "customer_id"
    f["days_since_last"] = (cutoff - last).dt.total_seconds() / 86400
    f["tenure_days"] = (cutoff - first).dt.total_seconds() / 86400
    days = completed.drop_duplicates(["customer_id", "_day"])
    n_days = days.groupby("customer_id").size()
    f["frequency"] = (n_days - 1).reindex(f.index).fillna(0)
    f["orders_90d"] = completed[completed["_ts"] > cutoff - pd.Timedelta(days=90)].groupby("customer_id").size() \
        .reindex(f.index).fillna(0)
    f["spend_total"] = g["net_amount"].sum()
    f["aov"] = g["net_amount"].mean()
    # inter-purchase times between distinct purchase days
    d = days.sort_values(["customer_id", "_day"])
    gap = d["_day"].diff().dt.days.where(d["customer_id"].eq(d["customer_id"].shift()))
    ipt = gap.groupby(d["customer_id"]).agg(["mean", "std"])
    f["ipt_mean"] = ipt["mean"].reindex(f.index)
    f["ipt_std"] = ipt["std"].reindex(f.index)
    f["overdue_ratio"] = f["days_since_last"] / f["ipt_mean"]
    # spend trend: spend in the last 180 days vs the 180 before (log ratio, +1 smoothing)
    recent = completed[completed["_ts"] > cutoff - pd.Timedelta(days=180)].groupby("customer_id")["net_amount"].sum()
    before = completed[(completed["_ts"] <= cutoff - pd.Timedelta(days=180))
                      & (completed["_ts"] > cutoff - pd.Timedelta(days=360))].groupby("customer_id")["net_amount"].sum()
    f["spend_trend"] = np.log1p(recent.reindex(f.index).fillna(0)) - np.log1p(before.reindex(f.index).fillna(0))
    if "channel" in completed:
        ch = completed["channel"].astype("string")
        f["n_channels"] = ch.groupby(completed["customer_id"]).nunique().reindex(f.index)
        if channel_kinds:
            online = ch.map(lambda c: channel_kinds.get(c) == "online" if c is not pd.NA else False)
            f["online_share"] = online.astype(float).groupby(completed["customer_id"]).mean().reindex(f.index)
        shares = pd.crosstab(completed["customer_id"], ch, normalize="index")
        shares.columns = [f"share_{c}" for c in shares.columns]
        f = f.join(shares)
    if "status" in o:
        f["return_rate"] = o["status"].astype("string").eq("returned").fillna(False).groupby(o["customer_id"]).mean() \
            .reindex(f.index).fillna(0)
    if "discount" in o:
        disc = o.groupby("customer_id")["discount"].sum()
        f["discount_share"] = (disc / (disc + o.groupby("customer_id")["net_amount"].sum())).reindex(f.index).fillna(0)

    f = f.join(_ticket_features(tables.get("tickets"), cutoff), how="left")
    f = f.join(_survey_features(tables.get("surveys"), cutoff), how="left")
    exp = tables.get("experiments")
    if exp is not None and not exp.empty:
        key = "customer_id" if "customer_id" in exp else "unit_id"  # the store links units to customers
        if "assigned_at" in exp:
            e = exp[(_local(exp["assigned_at"]) <= cutoff).fillna(False).to_numpy(dtype=bool)]
            f["experiments"] = e.groupby(key).size().reindex(f.index).fillna(0)
    tp = tables.get("touchpoints")
    if tp is not None and not tp.empty and "customer_id" in tp:
        t = _local(tp["event_ts"])
        m = ((t <= cutoff) & (t > cutoff - pd.Timedelta(days=30)) & tp["customer_id"].notna()).to_numpy()
        sel = tp.loc[m]
        if "event_type" in sel:
            sel = sel[sel["event_type"].astype("string") == "visit"]
        f["visits_30d"] = sel.groupby("customer_id").size().reindex(f.index).fillna(0)
    if horizon_days is not None:
        f = f.join(_btyd_features(completed, cutoff, horizon_days), how="left")
    return f.astype("float64")


def _ticket_features(tickets, cutoff) -> pd.DataFrame:
    if tickets is None or tickets.empty:
        return pd.DataFrame()
    t = tickets[_local(tickets["opened_at"]) <= cutoff]
    out = pd.DataFrame({"tickets": t.groupby("customer_id").size()})
    if "contacts" in t:
        # a ticket's final contact count is only known once it is resolved: tickets
        # still open at the cutoff do not count (their outcome lies in the future)
        done = t
        if "resolved_at" in t:
            done = t[(_local(t["resolved_at"]) <= cutoff).fillna(False).to_numpy(dtype=bool)]
        out["fcr_rate"] = (done["contacts"] <= 1).groupby(done["customer_id"]).mean()
    return out


def _survey_features(surveys, cutoff) -> pd.DataFrame:
    if surveys is None or surveys.empty:
        return pd.DataFrame()
    s = surveys[_local(surveys["responded_at"]) <= cutoff].sort_values("responded_at")
    out = {}
    for col, name in (("nps", "last_nps"), ("csat", "last_csat")):
        if col in s:
            sub = s.dropna(subset=[col])
            out[name] = sub.groupby("customer_id")[col].last()
    return pd.DataFrame(out)


def _btyd_features(orders: pd.DataFrame, cutoff, horizon_days: float) -> pd.DataFrame:
    """BG/NBD expected purchases in the next window and P(alive), fitted on pre-cutoff data only."""
    import warnings

    s = clv.rfm_summary(orders, observation_end=cutoff, freq="D", freq_multiplier=7)
    try:
        fit = clv.fit_transactions_model(s, "bgnbd")
    except (clv.ConvergenceError, clv.CLVInputError):
        fit = clv.fit_transactions_model(s, "bgnbd", penalizer=0.01)
    t = horizon_days / 7
    # lifetimes' closed forms overflow harmlessly (log of 0) for extreme customers
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return _btyd_frame(fit, s, t)


def _btyd_frame(fit, s, t):
    return pd.DataFrame({
        "bgnbd_expected": fit.conditional_expected_number_of_purchases_up_to_time(
            t, s["frequency"].to_numpy(), s["recency"].to_numpy(), s["T"].to_numpy()),
        "bgnbd_p_alive": fit.conditional_probability_alive(
            s["frequency"].to_numpy(), s["recency"].to_numpy(), s["T"].to_numpy()),
    }, index=s.index)


def build_dataset(tables, cutoff, horizon_days, channel_kinds=None, data_end=None):
    """(features at cutoff, labels for the window after it), aligned on customer."""
    y = churn_labels(tables["orders"], cutoff, horizon_days, data_end=data_end)
    X = churn_features(tables, cutoff, channel_kinds, horizon_days=horizon_days)
    X = X.reindex(y.index)
    return X, y


# --------------------------------------------------------------------------- models
class ChurnModel(ClassifierMixin, BaseEstimator):
    """Churn classifier on :func:`churn_features` output (scikit-learn conventions).

    ``kind="hgb"``: HistGradientBoostingClassifier (handles missing values);
    ``kind="logit"``: median imputation, log1p of skewed counts, scaling,
    logistic regression.
    """

    def __init__(self, kind: str = "hgb", random_state: int = 0, max_iter: int = 150, learning_rate: float = 0.1):
        self.kind = kind
        self.random_state = random_state
        self.max_iter = max_iter
        self.learning_rate = learning_rate

    def _make(self):
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import FunctionTransformer, StandardScaler

        if self.kind == "hgb":
            return HistGradientBoostingClassifier(
                max_iter=self.max_iter, learning_rate=self.learning_rate, max_leaf_nodes=6,
                min_samples_leaf=50, l2_regularization=1.0, early_stopping=True,
                validation_fraction=0.15, n_iter_no_change=30, random_state=self.random_state)
        if self.kind == "logit":
            return make_pipeline(
                SimpleImputer(strategy="median", add_indicator=True),
                FunctionTransformer(lambda a: np.sign(a) * np.log1p(np.abs(a))),
                StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
        raise ValueError(f"kind must be 'hgb' or 'logit', got {self.kind!r}")

    def fit(self, X: pd.DataFrame, y):
        y = np.asarray(y)
        if len(np.unique(y)) < 2:
            raise ChurnInputError("labels hold one class only (everyone churned, or no one): nothing to learn")
        self.feature_names_in_ = np.asarray(X.columns)
        # One OpenMP thread: on small, busy machines HistGradientBoosting's threads
        # spin-wait against each other and run 5-10x slower (measured here, 2 cores).
        with threadpool_limits(limits=1, user_api="openmp"):
            self.model_ = self._make().fit(X.to_numpy(dtype="float64"), y)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X: pd.DataFrame):
        X = X.reindex(columns=self.feature_names_in_)
        with threadpool_limits(limits=1, user_api="openmp"):
            return self.model_.predict_proba(X.to_numpy(dtype="float64"))

    def predict(self, X):
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


def align_columns(train: pd.DataFrame, test: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Same columns in both (channel shares may differ between cutoffs); missing -> 0 share."""
    cols = sorted(set(train.columns) | set(test.columns), key=list(train.columns).index if False else str)
    fill = {c: 0.0 for c in cols if c.startswith("share_")}
    return train.reindex(columns=cols).fillna(fill), test.reindex(columns=cols).fillna(fill)


# --------------------------------------------------------------------------- metrics
def lift_table(y, score, bins: int = 10) -> pd.DataFrame:
    """Deciles by score (1 = highest risk): churn rate, lift and cumulative capture."""
    y = np.asarray(y)
    order = np.argsort(-np.asarray(score), kind="stable")
    decile = np.empty(len(y), dtype=int)
    decile[order] = np.arange(len(y)) * bins // len(y) + 1
    df = pd.DataFrame({"decile": decile, "y": y})
    t = df.groupby("decile")["y"].agg(customers="size", churners="sum")
    t["churn_rate"] = t["churners"] / t["customers"]
    t["lift"] = t["churn_rate"] / y.mean()
    t["capture"] = t["churners"].cumsum() / max(y.sum(), 1)
    return t.reset_index()


def metrics(y, scores: Mapping[str, np.ndarray], probabilities: set[str] | None = None) -> pd.DataFrame:
    """ROC AUC, PR AUC, top-decile lift and capture per score; Brier where it is a probability."""
    y = np.asarray(y)
    rows = []
    for name, s in scores.items():
        s = np.asarray(s, dtype=float)
        lt = lift_table(y, s)
        rows.append({
            "model": name,
            "roc_auc": roc_auc_score(y, s),
            "pr_auc": average_precision_score(y, s),
            "brier": brier_score_loss(y, s) if probabilities and name in probabilities else np.nan,
            "top_decile_lift": float(lt["lift"].iloc[0]),
            "top_decile_capture": float(lt["capture"].iloc[0]),
        })
    return pd.DataFrame(rows).sort_values("roc_auc", ascending=False).reset_index(drop=True)


def baseline_scores(X: pd.DataFrame, pnbd_expected: pd.Series | None = None) -> dict[str, np.ndarray]:
    """The classic baselines as churn scores (higher = more likely to churn).

    Recency (days since the last purchase) and frequency (repeat purchases, fewer =
    riskier) are the two simple rules; BG/NBD (Fader, Hardie & Lee 2005) and Pareto/NBD
    (Schmittlein, Morrison & Colombo 1987) the two buy-till-you-die models, scored by
    their expected purchases in the window (P(alive) is 1 for every customer without a
    repeat purchase under BG/NBD, so it is no churn score for them). ``pnbd_expected``:
    :func:`pareto_expected` for the same customers and cutoff (left out when None).
    """
    out = {
        "baseline: days since last purchase": X["days_since_last"].to_numpy(),
        "baseline: frequency (repeat purchases)": -X["frequency"].to_numpy(dtype=float),
        "baseline: BG/NBD expected purchases": -X["bgnbd_expected"].to_numpy(),
    }
    if pnbd_expected is not None:
        out["baseline: Pareto/NBD expected purchases"] = -pnbd_expected.reindex(X.index).to_numpy(dtype=float)
    return out


def pareto_expected(orders: pd.DataFrame, cutoff, horizon_days: float) -> pd.Series:
    """Pareto/NBD expected purchases in the ``horizon_days`` after ``cutoff``, fitted on data up to it.

    A baseline only (not a model feature: its fit takes a few seconds, and BG/NBD already
    carries the same information into the model).
    """
    import warnings

    s = clv.rfm_summary(orders, observation_end=cutoff, freq="D", freq_multiplier=7)
    try:
        fit = clv.fit_transactions_model(s, "pareto")
    except (clv.ConvergenceError, clv.CLVInputError):
        fit = clv.fit_transactions_model(s, "pareto", penalizer=0.01)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        e = fit.conditional_expected_number_of_purchases_up_to_time(
            horizon_days / 7, s["frequency"].to_numpy(), s["recency"].to_numpy(), s["T"].to_numpy())
    return pd.Series(np.asarray(e, dtype=float), index=s.index, name="pnbd_expected")


def calibration_table(y, p, bins: int = 10) -> pd.DataFrame:
    """Mean predicted vs observed churn per probability bin (for the calibration plot)."""
    from sklearn.calibration import calibration_curve

    obs, pred = calibration_curve(np.asarray(y), np.asarray(p), n_bins=bins, strategy="quantile")
    return pd.DataFrame({"predicted": pred, "observed": obs})


def permutation_importance_table(model, X, y, n_repeats: int = 5, random_state: int = 0,
                                 max_rows: int = 6000) -> pd.DataFrame:
    """Drop in ROC AUC when each feature is shuffled (scikit-learn permutation importance).

    On at most ``max_rows`` customers (a seeded random subset): the ranking of
    features is stable well before that, and it keeps the report quick.
    """
    from sklearn.inspection import permutation_importance

    y = np.asarray(y)
    if len(X) > max_rows:
        idx = np.random.default_rng(random_state).choice(len(X), max_rows, replace=False)
        X, y = X.iloc[idx], y[idx]
    r = permutation_importance(model, X, np.asarray(y), scoring="roc_auc", n_repeats=n_repeats,
                               random_state=random_state, n_jobs=1)
    return pd.DataFrame({"feature": X.columns, "importance": r.importances_mean, "std": r.importances_std}) \
        .sort_values("importance", ascending=False).reset_index(drop=True)


# --------------------------------------------------------------------------- scoring
def _fmt_value(feature: str, v: float) -> str:
    if pd.isna(v):
        return "none"
    if feature.startswith("share_") or feature.endswith(("_share", "_rate", "p_alive")):
        return f"{v:.0%}"
    return f"{v:,.0f}" if abs(v) >= 10 else f"{v:,.2g}"


#: features grouped into the plain-language drivers a reason names (model-derived BG/NBD
#: features are summaries of when and how often a customer bought, so they count as "recency")
DRIVERS = {
    "recency": ("days_since_last", "overdue_ratio", "bgnbd_expected", "bgnbd_p_alive", "orders_90d", "visits_30d"),
    "frequency": ("frequency", "tenure_days", "ipt_mean", "ipt_std"),
    "spend": ("spend_total", "aov", "spend_trend", "discount_share"),
    "channels": ("n_channels", "online_share"),
    "returns": ("return_rate",),
    "service": ("tickets", "fcr_rate"),
    "satisfaction": ("last_nps", "last_csat"),
}


def _driver_of(feature: str) -> str:
    if feature.startswith("share_"):
        return "channels"
    return next((d for d, feats in DRIVERS.items() if feature in feats), "other")


def _describe(driver: str, row: Mapping, med: Mapping, top_feature: str) -> str:
    """One plain sentence for a driver, from the customer's own values (and the typical customer's)."""
    def v(name, default=np.nan):
        x = row.get(name, default)
        return default if x is None or pd.isna(x) else float(x)

    if driver == "recency":
        days, gap = v("days_since_last"), v("ipt_mean")
        if np.isfinite(days) and np.isfinite(gap) and gap > 0:
            return f"no purchase for {days:,.0f} days, against a usual gap of {gap:,.0f} days"
        if np.isfinite(days):
            return f"no purchase for {days:,.0f} days (typical customer: {float(med.get('days_since_last', np.nan)):,.0f})"
        return "no recent purchase"
    if driver == "frequency":
        n, typical_n = v("frequency", 0) + 1, float(med.get("frequency", 0)) + 1
        if n <= 1:
            return "a single purchase so far"
        if n < typical_n:
            return f"only {n:,.0f} purchases so far (typical customer: {typical_n:,.0f})"
        gap = v("ipt_mean")
        often = f", about every {gap:,.0f} days" if np.isfinite(gap) else ""
        return f"a frequent buyer until now ({n:,.0f} purchases{often}), so a pause stands out"
    if driver == "spend":
        trend = v("spend_trend")
        if np.isfinite(trend) and trend < 0 and top_feature == "spend_trend":
            return "spending less in the last six months than in the six before"
        if top_feature == "discount_share":
            return f"buys mostly on discount ({v('discount_share', 0):.0%} of spend)"
        spent, typical = v("spend_total", 0), float(med.get("spend_total", 0))
        word = "low spend" if spent < typical else "spend"
        return f"{word} so far {spent:,.0f} (typical customer: {typical:,.0f})"
    if driver == "channels":
        shares = {k[len('share_'):]: float(row[k]) for k in row if k.startswith("share_") and pd.notna(row[k])}
        if shares:
            ch, sh = max(shares.items(), key=lambda kv: kv[1])
            if sh >= 0.99:
                return f"buys only in one channel ({ch})"
        return f"uses few channels ({v('n_channels', 1):,.0f})"
    if driver == "returns":
        return f"returns many orders ({v('return_rate', 0):.0%} of orders)"
    if driver == "service":
        return f"needed customer service often ({v('tickets', 0):,.0f} tickets)"
    if driver == "satisfaction":
        nps = v("last_nps")
        return f"rated us low (last NPS answer {nps:,.0f} of 10)" if np.isfinite(nps) else "rated us low"
    label = FEATURE_LABELS.get(top_feature, top_feature.replace("_", " "))
    return f"{label}: {_fmt_value(top_feature, v(top_feature))} (typical customer: {_fmt_value(top_feature, med.get(top_feature, np.nan))})"


def reasons(model, X: pd.DataFrame, top: int = 2, typical: pd.Series | None = None) -> pd.Series:
    """Main reasons per customer: the few plain-language drivers that push risk up most.

    For each feature, the risk is recomputed with that feature set to its
    median; the rise in log-odds over the median is the feature's push (a simple
    "what if typical" attribution, one model call per feature, vectorised over
    customers; log-odds keep the comparison meaningful near 0 or 1). Features are
    then grouped into drivers (:data:`DRIVERS`: recency, frequency, spend, channels,
    returns, service, satisfaction) and the ``top`` drivers with a clear push are
    described in words from the customer's own data, e.g. "no purchase for 412 days,
    against a usual gap of 61 days; buys only in one channel (web)".
    """
    eps = 1e-6

    def logit(p):
        p = np.clip(p, eps, 1 - eps)
        return np.log(p / (1 - p))

    base = logit(model.predict_proba(X)[:, 1])
    med = typical if typical is not None else X.median(numeric_only=True)
    names = [c for c in X.columns if not X[c].isna().all() and pd.notna(med.get(c))]
    deltas = np.zeros((len(X), len(names)))
    for j, c in enumerate(names):  # loop over features, vectorised over customers
        Xc = X.copy()
        Xc[c] = med[c]
        deltas[:, j] = base - logit(model.predict_proba(Xc)[:, 1])
    drivers = sorted({_driver_of(c) for c in names})
    pos = np.clip(deltas, 0, None)
    member = np.array([[_driver_of(c) == d for c in names] for d in drivers], dtype=float)  # drivers x features
    push = pos @ member.T                                                                # customers x drivers
    order = np.argsort(-push, axis=1)[:, :top]
    records = X.to_dict("records")
    text = []
    for i in range(len(X)):  # formatting only
        picked = []
        for d_idx in order[i]:
            if push[i, d_idx] <= 0.05:
                continue
            cols = np.flatnonzero(member[d_idx])
            feat = names[cols[np.argmax(pos[i, cols])]]
            picked.append(_describe(drivers[d_idx], records[i], med, feat))
        text.append("; ".join(picked) if picked else "no single driver")
    return pd.Series(text, index=X.index, name="main_reasons")


def scores_for_export(scored: pd.DataFrame, customers: pd.DataFrame | None) -> pd.DataFrame:
    """The scored table as written to ``churn_scores.csv``: with ``consent_marketing``, so a
    campaign tool can take it as is (only customers where it is true may be contacted)."""
    out = scored.copy()
    if customers is not None and "consent_marketing" in customers and "customer_id" in customers:
        consent = customers.drop_duplicates("customer_id").set_index("customer_id")["consent_marketing"]
        out["consent_marketing"] = consent.reindex(out.index).fillna(False).astype(bool).to_numpy()
    else:
        out["consent_marketing"] = False  # unknown consent: nobody may be contacted
    return out


def score_customers(model, X: pd.DataFrame, tiers=(0.5, 0.8)) -> pd.DataFrame:
    """Scored customer table: churn probability, risk tier (low / medium / high) and reasons.

    Reasons compare each customer with the median of all customers scored (the "typical" one).
    """
    p = model.predict_proba(X)[:, 1]
    tier = np.where(p >= tiers[1], "high", np.where(p >= tiers[0], "medium", "low"))
    out = pd.DataFrame({"churn_probability": p, "risk_tier": tier}, index=X.index)
    # reasons are what someone acts on: worked out for medium and high risk only
    out["main_reasons"] = "low risk"
    risky = p >= tiers[0]
    if risky.any():
        out.loc[risky, "main_reasons"] = reasons(model, X.loc[risky], typical=X.median(numeric_only=True)).to_numpy()
    return out.sort_values("churn_probability", ascending=False)


def evaluate_time_based(tables, cutoff, horizon_days: float, channel_kinds=None, random_state: int = 0,
                        min_history_days: float = 90, data_end=None):
    """Train at ``cutoff - horizon`` and test at ``cutoff``; cross-fit when history is short.

    Returns a dict: ``metrics`` (table), ``X_test``, ``y_test``, ``scores``,
    ``models`` (fitted on the training cutoff), ``scheme`` (plain words).
    """
    cutoff = _end_of(cutoff)
    start = _local(tables["orders"]["order_ts"]).min()
    train_cut = cutoff - pd.Timedelta(days=horizon_days)
    X_te, y_te = build_dataset(tables, cutoff, horizon_days, channel_kinds, data_end)
    models = {"logistic regression": ChurnModel("logit", random_state),
              "gradient boosting": ChurnModel("hgb", random_state)}
    scores = dict(baseline_scores(X_te, pareto_expected(tables["orders"], cutoff, horizon_days)))
    if (train_cut - start).days >= min_history_days:
        X_tr, y_tr = build_dataset(tables, train_cut, horizon_days, channel_kinds)
        X_tr, X_te = align_columns(X_tr, X_te)
        for name, m in models.items():
            m.fit(X_tr, y_tr)
            scores[name] = m.predict_proba(X_te)[:, 1]
        scheme = (f"time-based: trained on customers active by {train_cut.date()} with churn labels from the "
                  f"{horizon_days:.0f} days after; tested on customers active by {cutoff.date()} and the "
                  f"{horizon_days:.0f} days after")
    else:
        from sklearn.model_selection import StratifiedKFold

        folds = StratifiedKFold(5, shuffle=True, random_state=random_state)
        for name, m in models.items():
            oof = np.zeros(len(X_te))
            for tr, te in folds.split(X_te, y_te):
                oof[te] = m.fit(X_te.iloc[tr], y_te.iloc[tr]).predict_proba(X_te.iloc[te])[:, 1]
            scores[name] = oof
            m.fit(X_te, y_te)
        scheme = (f"cross-fitted (5 folds of customers) at {cutoff.date()}: the data before the cutoff are "
                  f"too short for a training window of {horizon_days:.0f} days; the model type is then chosen "
                  "on the same customers, so its figures are slightly optimistic")
    chosen, cv_auc = select_model(models, X_tr if "X_tr" in locals() else X_te,
                                  y_tr if "y_tr" in locals() else y_te, random_state)
    scores["churn model"] = scores[chosen]
    table = metrics(y_te, scores, probabilities={"logistic regression", "gradient boosting", "churn model"})
    return {"metrics": table, "X_test": X_te, "y_test": y_te, "scores": scores,
            "models": models, "scheme": scheme, "chosen": chosen, "model": models[chosen],
            "selection_auc": cv_auc}


def select_model(models: Mapping[str, ChurnModel], X, y, random_state: int = 0) -> tuple[str, dict]:
    """Pick the candidate with the best 3-fold ROC AUC on the *training* data only.

    The test window never influences the choice, so the reported test metrics of
    the chosen model are honest.
    """
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    folds = StratifiedKFold(3, shuffle=True, random_state=random_state)
    auc = {name: float(np.mean(cross_val_score(clone(m), X, np.asarray(y), cv=folds, scoring="roc_auc")))
           for name, m in models.items()}
    return max(auc, key=auc.get), auc


# --------------------------------------------------------------------------- plots
def plot_roc_pr(y, scores: Mapping[str, np.ndarray]):
    """ROC and precision-recall curves of every score, side by side."""
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.8))
    for name, s in scores.items():
        fpr, tpr, _ = roc_curve(y, s)
        a1.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y, s):.3f})")
        p, r, _ = precision_recall_curve(y, s)
        a2.plot(r, p, label=f"{name} (AP {average_precision_score(y, s):.3f})")
    a1.plot([0, 1], [0, 1], ":", color="grey")
    a1.set_title("ROC curve: churners found vs loyal customers flagged")
    a1.set_xlabel("false positive rate (active customers flagged)")
    a1.set_ylabel("true positive rate (churners found)")
    a1.legend(fontsize=8, loc="lower right")
    a2.axhline(np.mean(y), color="grey", linestyle=":", label="churn rate")
    a2.set_title("Precision-recall curve")
    a2.set_xlabel("recall (share of churners found)")
    a2.set_ylabel("precision (share of flagged who churn)")
    a2.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig


def plot_calibration(table: pd.DataFrame, name: str = "churn model"):
    """Predicted vs observed churn per bin; the diagonal is perfect calibration."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfectly calibrated")
    ax.plot(table["predicted"], table["observed"], "o-", label=name)
    ax.set_title("Calibration: predicted vs observed churn")
    ax.set_xlabel("predicted churn probability")
    ax.set_ylabel("observed churn rate")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_lift(table: pd.DataFrame):
    """Churn rate per risk decile and cumulative capture."""
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4))
    a1.bar(table["decile"], table["churn_rate"], color="#E45756")
    a1.set_title("Observed churn rate by risk decile (1 = highest risk)")
    a1.set_xlabel("risk decile")
    a1.set_ylabel("churn rate")
    a2.plot(table["decile"] * 10, 100 * table["capture"], "o-")
    a2.plot([0, 100], [0, 100], ":", color="grey")
    a2.set_title("Share of all churners captured by contacting the riskiest")
    a2.set_xlabel("% of customers contacted (riskiest first)")
    a2.set_ylabel("% of churners captured")
    fig.tight_layout()
    return fig


def plot_importance(table: pd.DataFrame, top: int = 12):
    """Permutation importance (drop in ROC AUC) of the top features."""
    import matplotlib.pyplot as plt

    t = table.head(top).iloc[::-1]
    labels = [FEATURE_LABELS.get(f, f.replace("share_", "share of orders in ").replace("_", " "))
              for f in t["feature"]]
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(t) + 1.2))
    ax.barh(labels, t["importance"], xerr=t["std"], color="#4C78A8")
    ax.set_title("What the churn model relies on (permutation importance)")
    ax.set_xlabel("drop in ROC AUC when the feature is shuffled")
    ax.set_ylabel("feature")
    fig.tight_layout()
    return fig


def churn_headline(scored: pd.DataFrame, metrics_table: pd.DataFrame, value: pd.Series | None = None,
                   currency: str = "") -> str:
    """One plain sentence: how many are at high risk, how good the model is vs the baselines."""
    m = metrics_table.set_index("model")["roc_auc"]
    high = int((scored["risk_tier"] == "high").sum())
    base = {k: v for k, v in m.items() if k.startswith("baseline")}
    best_name = max(base, key=base.get)
    text = (f"{high:,} of {len(scored):,} active customers are at high churn risk; the churn model ranks "
            f"churners with ROC AUC {m['churn model']:.3f} vs {base[best_name]:.3f} for the best classic "
            f"baseline ({best_name.split(': ', 1)[1]})")
    if value is not None:
        v = value.reindex(scored.index[scored["risk_tier"] == "high"]).sum()
        text += f"; they hold {v:,.0f} {currency} of predicted value"
    return text + "."


def churn_analysis(tables, data_end, horizon_days: float = 182, cutoff=None, channel_kinds=None,
                   random_state: int = 0) -> dict:
    """The whole churn report: honest evaluation, then a scored table for today.

    1. Evaluation: :func:`evaluate_time_based` at ``cutoff`` (default: data end
       minus the horizon, the latest cutoff whose window is fully observed).
    2. Production: the chosen model is refit on customers active at ``cutoff``
       with the labels observed since, and scores every customer active at the
       data end (features from all data), with risk tier and main reasons.
    """
    end = _ts(data_end)
    cutoff = _ts(cutoff) if cutoff is not None else end.normalize() - pd.Timedelta(days=horizon_days)
    ev = evaluate_time_based(tables, cutoff, horizon_days, channel_kinds, random_state, data_end=data_end)
    chosen = ev["chosen"]
    y_te = ev["y_test"]
    p_chosen = ev["scores"]["churn model"]
    X_now = churn_features(tables, end, channel_kinds, horizon_days=horizon_days)
    X_cut, X_now = align_columns(ev["X_test"], X_now)
    prod = ChurnModel(ev["model"].kind, random_state).fit(X_cut, y_te)
    scored = score_customers(prod, X_now)
    # importance on the evaluation window, with the model that was evaluated there
    imp_model = ev["models"][chosen]
    X_imp = ev["X_test"].reindex(columns=imp_model.feature_names_in_).fillna(
        {c: 0.0 for c in imp_model.feature_names_in_ if c.startswith("share_")})
    importance = permutation_importance_table(imp_model, X_imp, y_te, n_repeats=3, random_state=random_state)
    return {
        **ev,
        "cutoff": cutoff,
        "lift": lift_table(y_te, p_chosen),
        "calibration": calibration_table(y_te, p_chosen),
        "importance": importance,
        "scored": scored,
        "X_now": X_now,
        "churn_rate": float(np.mean(y_te)),
    }


def baseline_key_figures(metrics_table: pd.DataFrame) -> dict:
    """ROC AUC of the churn model and of every baseline, and the margin over the best baseline."""
    m = metrics_table.set_index("model")["roc_auc"]
    names = {"baseline: days since last purchase": "auc_baseline_recency",
             "baseline: frequency (repeat purchases)": "auc_baseline_frequency",
             "baseline: BG/NBD expected purchases": "auc_baseline_bgnbd",
             "baseline: Pareto/NBD expected purchases": "auc_baseline_pareto_nbd"}
    out = {"auc_churn_model": float(m["churn model"])}
    out.update({v: float(m[k]) for k, v in names.items() if k in m})
    base = {k: float(v) for k, v in m.items() if k.startswith("baseline")}
    best = max(base, key=base.get)
    out["best_baseline"] = best.split(": ", 1)[1]
    out["auc_margin_over_best_baseline"] = float(m["churn model"]) - base[best]
    return out
