"""Customer segmentation: RFM scores with named segments, and behavioural clustering.

Three layers, all set-based (numpy / pandas group-bys, never a loop over customers):

1. **Customer features** (:func:`customer_features`): one row per customer who bought,
   from the contract tables as of a date: recency, frequency and monetary value, average
   order value, items per order, the share of orders in each sales channel, the online
   share (channel kinds from ``omni.yaml``), the number of sales channels used
   (omnichannel breadth), the discount share, the return rate, service contacts per
   order and the mean NPS answer (NaN without one).
2. **RFM** (:func:`rfm_scores`): quintile scores 1-5 for recency, frequency and
   monetary value, and a fixed, documented map (:data:`RFM_SEGMENT_GRID`) from the
   recency score and the combined frequency-monetary score to eleven named segments.
3. **Behavioural clustering** (:class:`BehaviouralSegmenter`): a scikit-learn pipeline
   (log1p of the skewed counts and amounts, median imputation, scaling, optional PCA,
   then KMeans, MiniBatchKMeans for millions of customers, or a Gaussian mixture),
   with :func:`evaluate_k` / :func:`choose_k` to pick the number of segments from
   silhouette, Davies-Bouldin, Calinski-Harabasz and bootstrap stability, and
   profiles, persona lines, a segment x channel table and segment migration.

**RFM recency is not BTYD recency.** Here (as in marketing practice) *recency* is the
number of days from the last purchase to the as-of date: small is good. In the
buy-till-you-die models of :mod:`omni_lib.clv` (lifetimes), *recency* is the age of the
customer at the last repeat purchase (first to last purchase): large is good. The two
must not be mixed.

Orders with ``status == "cancelled"`` are ignored everywhere (revenue is the
``net_amount`` of non-cancelled orders); returned orders count as purchases and feed
the return rate.
"""
from __future__ import annotations

import numbers
import re
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin, clone
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.metrics import (adjusted_rand_score, calinski_harabasz_score, davies_bouldin_score,
                             silhouette_score)
from sklearn.mixture import GaussianMixture
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from threadpoolctl import threadpool_limits

__all__ = [
    "SegmentationInputError", "FEATURE_LABELS", "LOG_FEATURES", "customer_features",
    "RFM_SEGMENTS", "RFM_SEGMENT_GRID", "rfm_scores", "rfm_segment_grid", "rfm_summary",
    "BehaviouralSegmenter", "MIN_CUSTOMERS_PER_SEGMENT", "select_features", "evaluate_k", "choose_k",
    "segment_profiles", "persona_names", "persona_lines", "segment_channel_table",
    "segment_migration", "customer_segment_table", "write_segment_table",
    "plot_k_metrics", "plot_projection", "plot_profile_heatmap", "plot_size_revenue",
    "plot_rfm_segments", "plot_migration",
]


class SegmentationInputError(ValueError):
    """Tables, features or settings that cannot give a segmentation (the message says which)."""


# =====================================================================================
# customer features
# =====================================================================================

FEATURE_LABELS = {
    "recency_days": "days since the last purchase",
    "frequency": "number of purchases (orders)",
    "monetary": "total spend",
    "aov": "average order value",
    "items_per_order": "items per order",
    "online_share": "share of orders in online channels",
    "n_channels": "number of sales channels used",
    "discount_share": "discount as a share of list value",
    "return_rate": "share of orders returned",
    "contacts_per_order": "service contacts per order",
    "nps_mean": "mean NPS answer (0-10)",
}
#: skewed counts and amounts that the clustering pipeline log-scales (log1p)
LOG_FEATURES = ("recency_days", "frequency", "monetary", "aov", "items_per_order", "contacts_per_order")

_DAY_US = 86_400 * 1_000_000


def _feature_label(col: str) -> str:
    if col.startswith("share_"):
        return f"share of orders via {col[6:]}"
    return FEATURE_LABELS.get(col, col)


def _as_of(value, ts: pd.Series, what: str = "as_of") -> pd.Timestamp:
    """A timestamp comparable with ``ts`` (date-only values mean the end of that day)."""
    try:
        t = pd.Timestamp(value)
    except (TypeError, ValueError) as e:
        raise SegmentationInputError(f"{what}={value!r} is not a date or timestamp ({e})") from None
    if t is pd.NaT:
        raise SegmentationInputError(f"{what} is missing (NaT)")
    if isinstance(value, str) and t == t.normalize() and len(value.strip()) <= 10:
        t = t + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)
    tz = getattr(ts.dt, "tz", None)
    if tz is not None and t.tzinfo is None:
        t = t.tz_localize(tz)
    elif tz is None and t.tzinfo is not None:
        t = t.tz_localize(None)
    return t


def _require(df: pd.DataFrame | None, table: str, cols: Iterable[str]) -> None:
    if df is None:
        raise SegmentationInputError(f"the {table} table is missing: segmentation needs it")
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise SegmentationInputError(f"{table} lacks column(s) {missing} (contract names; see docs/contract.md)")


def _kinds(channels) -> dict[str, str]:
    """channel -> 'online'/'offline' from ``config.channels`` (Channel objects) or a plain mapping."""
    if not channels:
        return {}
    out = {}
    for name, spec in dict(channels).items():
        kind = getattr(spec, "kind", spec)
        if isinstance(kind, Mapping):
            kind = kind.get("kind")
        if kind in ("online", "offline"):
            out[str(name)] = kind
    return out


def _ts_us(ts: pd.Series) -> np.ndarray:
    """Timestamps as int64 microseconds (time zone irrelevant for differences)."""
    return ts.to_numpy(dtype="datetime64[us]").astype("int64") if getattr(ts.dt, "tz", None) is None \
        else ts.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[us]").astype("int64")


def customer_features(tables: Mapping[str, pd.DataFrame | None], channels=None, as_of=None) -> pd.DataFrame:
    """One row per customer with at least one non-cancelled order on or before ``as_of``.

    tables: contract tables (after :func:`omni_lib.privacy.apply_consent`); ``orders``
    required, ``tickets`` and ``surveys`` used when present.
    channels: ``ds.config.channels`` (or ``{name: "online"|"offline"}``) for the online
    share; without it ``online_share`` is left out.
    as_of: the reference date (default: the last order); later events are ignored.
    A date without a time means the end of that day.

    Columns (float64; see :data:`FEATURE_LABELS`): ``recency_days`` (as-of minus last
    purchase, in days: RFM recency, *not* BTYD recency), ``frequency`` (orders),
    ``monetary`` (total net amount), ``aov``, ``items_per_order`` (if ``items``),
    ``share_<channel>`` per sales channel that has orders, ``online_share``,
    ``n_channels``, ``discount_share`` (discount / (discount + net amount), if
    ``discount``), ``return_rate`` (if ``status``), ``contacts_per_order`` (if
    ``tickets``), ``nps_mean`` (if ``surveys`` has ``nps``; NaN for customers who never
    answered).
    """
    orders = tables.get("orders")
    _require(orders, "orders", ("customer_id", "order_ts", "channel", "net_amount"))
    if orders.empty:
        raise SegmentationInputError("orders has no rows: segmentation needs purchase history")
    # Work on integer codes and numpy arrays: filtering the frame itself would copy every
    # (Arrow string) column, which costs seconds on millions of orders.
    cust_codes, ids = pd.factorize(orders["customer_id"], sort=True)  # -1 = no customer_id
    keep = cust_codes >= 0
    if "status" in orders:
        keep = keep & ~orders["status"].eq("cancelled").fillna(False).to_numpy(dtype=bool)
    if as_of is None:
        as_of = orders["order_ts"].max()
    as_of = _as_of(as_of, orders["order_ts"])
    keep = keep & (orders["order_ts"] <= as_of).fillna(False).to_numpy(dtype=bool)
    if not keep.any():
        raise SegmentationInputError(
            f"no non-cancelled orders with a customer_id on or before {as_of}: nothing to segment")
    used = np.bincount(cust_codes[keep], minlength=len(ids)) > 0
    codes = (np.cumsum(used) - 1)[cust_codes[keep]]  # 0..n-1 over customers who bought
    ids = ids[used]
    n = len(ids)

    def col(name, na_value=np.nan):
        return orders[name].to_numpy(dtype="float64", na_value=na_value)[keep]

    freq = np.bincount(codes, minlength=n).astype("float64")
    monetary = np.bincount(codes, weights=col("net_amount", 0.0), minlength=n)
    last = pd.Series(_ts_us(orders["order_ts"])[keep]).groupby(codes, sort=True).max().to_numpy()
    as_of_us = _ts_us(pd.Series([as_of]))[0]

    f = {"recency_days": (as_of_us - last) / _DAY_US, "frequency": freq, "monetary": monetary,
         "aov": monetary / freq}
    if "items" in orders:
        items = col("items")
        ok = ~np.isnan(items)
        with np.errstate(invalid="ignore", divide="ignore"):
            f["items_per_order"] = (np.bincount(codes[ok], weights=items[ok], minlength=n)
                                    / np.bincount(codes[ok], minlength=n))
    # channel mix: orders per (customer, channel) in one bincount
    ch_codes, ch_names = pd.factorize(orders["channel"], sort=False)
    ch_codes = ch_codes[keep]
    kinds = _kinds(channels)
    ch_order = sorted(range(len(ch_names)), key=lambda i: (list(kinds).index(ch_names[i])
                                                          if ch_names[i] in kinds else len(kinds), ch_names[i]))
    valid = ch_codes >= 0
    counts = np.bincount(codes[valid] * len(ch_names) + ch_codes[valid],
                         minlength=n * len(ch_names)).reshape(n, len(ch_names))
    for i in ch_order:
        if counts[:, i].any():  # only channels with orders up to as_of
            f[f"share_{ch_names[i]}"] = counts[:, i] / freq
    if kinds:
        online = np.array([kinds.get(c) == "online" for c in ch_names], dtype=bool)
        f["online_share"] = counts[:, online].sum(axis=1) / freq
    f["n_channels"] = (counts > 0).sum(axis=1).astype("float64")
    if "discount" in orders:
        disc = np.bincount(codes, weights=col("discount", 0.0), minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            f["discount_share"] = np.where(disc + monetary > 0, disc / (disc + monetary), 0.0)
    if "status" in orders:
        returned = orders["status"].eq("returned").fillna(False).to_numpy(dtype=bool)[keep]
        f["return_rate"] = np.bincount(codes[returned], minlength=n) / freq
    index = pd.Index(ids, name="customer_id")

    tickets = tables.get("tickets")
    if tickets is not None and "customer_id" in tickets and "opened_at" in tickets:
        tk = tickets.loc[(tickets["opened_at"] <= as_of).fillna(False).to_numpy(dtype=bool)]
        pos = index.get_indexer(tk["customer_id"])
        w = (tk["contacts"].to_numpy(dtype="float64", na_value=1.0) if "contacts" in tk
             else np.ones(len(tk)))
        f["contacts_per_order"] = np.bincount(pos[pos >= 0], weights=w[pos >= 0], minlength=n) / freq
    surveys = tables.get("surveys")
    if surveys is not None and "nps" in surveys and "customer_id" in surveys:
        s = surveys.loc[((surveys["responded_at"] <= as_of) if "responded_at" in surveys
                         else pd.Series(True, index=surveys.index)).fillna(False).to_numpy(dtype=bool)]
        nps = s["nps"].to_numpy(dtype="float64", na_value=np.nan)
        pos = index.get_indexer(s["customer_id"])
        ok = (pos >= 0) & ~np.isnan(nps)
        if ok.any():
            with np.errstate(invalid="ignore", divide="ignore"):
                f["nps_mean"] = (np.bincount(pos[ok], weights=nps[ok], minlength=n)
                                 / np.bincount(pos[ok], minlength=n))
    out = pd.DataFrame(f, index=index)
    out.attrs["as_of"] = as_of.isoformat()  # text, so the frame still writes to Parquet
    return out


# =====================================================================================
# RFM
# =====================================================================================

#: the eleven named RFM segments, best first
RFM_SEGMENTS = ("Champions", "Loyal", "Potential Loyalist", "New", "Promising", "Need Attention",
                "About to Sleep", "At Risk", "Can't Lose Them", "Hibernating", "Lost")

#: rows: recency score R (5 = bought most recently); columns: FM = floor((F + M) / 2).
#: Every one of the 25 cells has a name, so every customer gets a segment.
RFM_SEGMENT_GRID = pd.DataFrame(
    [  # FM=1                FM=2                   FM=3                  FM=4              FM=5
        ["New",             "Potential Loyalist",  "Potential Loyalist", "Champions",       "Champions"],        # R=5
        ["Promising",       "Potential Loyalist",  "Potential Loyalist", "Loyal",           "Loyal"],            # R=4
        ["About to Sleep",  "About to Sleep",      "Need Attention",     "Loyal",           "Loyal"],            # R=3
        ["Hibernating",     "Hibernating",         "At Risk",            "At Risk",         "Can't Lose Them"],  # R=2
        ["Lost",            "Lost",                "At Risk",            "At Risk",         "Can't Lose Them"],  # R=1
    ],
    index=pd.Index([5, 4, 3, 2, 1], name="R"), columns=pd.Index([1, 2, 3, 4, 5], name="FM"))

RFM_DESCRIPTIONS = {
    "Champions": "bought recently, often and spent the most",
    "Loyal": "buy regularly with good value; recent enough",
    "Potential Loyalist": "recent customers with a few purchases; could become loyal",
    "New": "bought very recently for the first time(s), little spend yet",
    "Promising": "fairly recent, low frequency and spend so far",
    "Need Attention": "middling on all three; slipping",
    "About to Sleep": "below-average recency, frequency and spend",
    "At Risk": "used to buy often or spend well, but not for a while",
    "Can't Lose Them": "were among the best customers, have not bought for a long time",
    "Hibernating": "long since the last, small and infrequent purchases",
    "Lost": "longest since the last purchase, lowest frequency and spend",
}


def rfm_segment_grid() -> pd.DataFrame:
    """The R x FM map as a table (for the report)."""
    return RFM_SEGMENT_GRID.copy()


def _score(values: np.ndarray, bins: int) -> np.ndarray:
    """Quantile score 1..bins from mid-ranks: equal values always share a score.

    score = floor(bins * (average_rank - 0.5) / n) + 1. Without ties this cuts the
    customers into ``bins`` groups of equal size; with ties (many one-time buyers) the
    tied customers all get the score of their mid-rank, so groups can be unequal and a
    score can be empty. (``pd.qcut`` would fail on duplicate edges; ``rank(method="first")``
    would give identical customers different scores.)
    """
    ranks = pd.Series(values).rank(method="average").to_numpy()
    return (np.floor(bins * (ranks - 0.5) / len(values)).astype("int64") + 1).clip(1, bins)


def rfm_scores(features: pd.DataFrame, bins: int = 5) -> pd.DataFrame:
    """R, F and M scores (1-``bins``, higher is better) and the named segment per customer.

    features: a frame with ``recency_days``, ``frequency`` and ``monetary`` (e.g.
    :func:`customer_features`). R scores *low* recency (a recent purchase) high. Ties
    share a score (see :func:`_score`). FM = floor((F + M) / 2); the segment is
    ``RFM_SEGMENT_GRID.loc[R, FM]`` (only defined for ``bins=5``; otherwise no segment).
    Returns ``r_score, f_score, m_score, fm_score, rfm_cell`` ("545") and ``rfm_segment``
    (ordered categorical, best first).
    """
    need = ("recency_days", "frequency", "monetary")
    missing = [c for c in need if c not in features.columns]
    if missing:
        raise SegmentationInputError(f"RFM needs columns {list(need)}; missing {missing}")
    if isinstance(bins, bool) or not isinstance(bins, numbers.Integral) or not 2 <= bins <= 10:
        raise SegmentationInputError(f"bins={bins!r} is out of range: use a whole number from 2 to 10 (5 = quintiles)")
    n = len(features)
    if n < bins:
        raise SegmentationInputError(f"{n} customers are too few for {bins} RFM score groups")
    vals = features[list(need)].to_numpy(dtype="float64", na_value=np.nan)
    bad = [c for c, m in zip(need, np.isnan(vals).any(axis=0)) if m]
    if bad:
        raise SegmentationInputError(f"RFM columns {bad} have missing values")
    r = _score(-vals[:, 0], bins)
    f_ = _score(vals[:, 1], bins)
    m = _score(vals[:, 2], bins)
    fm = (f_ + m) // 2
    out = pd.DataFrame({"r_score": r, "f_score": f_, "m_score": m, "fm_score": fm}, index=features.index)
    out["rfm_cell"] = pd.Series(r * 100 + f_ * 10 + m, index=features.index).astype("str")  # "545"
    if bins == 5:
        grid = RFM_SEGMENT_GRID.to_numpy()
        names = grid[5 - r, fm - 1]  # row 0 is R=5, column 0 is FM=1
        out["rfm_segment"] = pd.Categorical(names, categories=list(RFM_SEGMENTS), ordered=True)
    return out


def rfm_summary(features: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """Per RFM segment: customers, share, revenue share, median recency, mean orders and spend."""
    df = features[["recency_days", "frequency", "monetary"]].join(scores["rfm_segment"])
    g = df.groupby("rfm_segment", observed=False)
    out = pd.DataFrame({
        "customers": g.size(),
        "revenue": g["monetary"].sum(),
        "median_recency_days": g["recency_days"].median(),
        "orders_per_customer": g["frequency"].mean(),
        "spend_per_customer": g["monetary"].mean(),
    })
    out.insert(1, "customer_share", out["customers"] / out["customers"].sum())
    out.insert(3, "revenue_share", out["revenue"] / out["revenue"].sum())
    out["description"] = [RFM_DESCRIPTIONS[s] for s in out.index]
    out.index = out.index.astype(str)
    return out


# =====================================================================================
# behavioural clustering
# =====================================================================================

#: a segmentation needs at least this many customers per segment on average
MIN_CUSTOMERS_PER_SEGMENT = 5
_ALGORITHMS = ("kmeans", "minibatch", "gmm")


def _threads(n_threads: int | None):
    """Limit the OpenMP / BLAS threads scikit-learn's k-means and scaling use.

    On a busy 2-core machine (other notebooks, CI) k-means with 2 threads spin-waits:
    a 3,000-row fit took 0.35 s instead of 0.012 s single-threaded, and 1,000,000
    customers 80 s instead of 16 s (MiniBatchKMeans). Single-threaded full k-means on
    1,000,000 x 16 features takes about 2 s, so 1 thread is the default.
    """
    return nullcontext() if n_threads is None else threadpool_limits(limits=int(n_threads))


class _MedianImputer(TransformerMixin, BaseEstimator):
    """Fill missing values with each column's median.

    Hand-written instead of ``SimpleImputer(strategy="median")``, which computes medians
    through numpy masked arrays: 2.5 s for 1,000,000 x 16 against 0.2 s with ``nanmedian``.
    """

    def fit(self, X, y=None):
        X = np.asarray(X, dtype="float64")
        self.statistics_ = np.nanmedian(X, axis=0)
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X):
        X = np.asarray(X, dtype="float64")
        nan = np.isnan(X)
        if not nan.any():
            return X
        return np.where(nan, self.statistics_, X)


def select_features(features: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """Leave out columns that cannot separate customers: returns ``(features, dropped)``.

    ``dropped`` maps each removed column to the reason ("all values missing" or
    "constant: <value>"), for the report. Single-channel data, for example, has a
    constant channel share and number of channels. :class:`BehaviouralSegmenter` itself
    refuses such columns (with a message naming them) rather than dropping them silently.
    """
    arr = features.to_numpy(dtype="float64", na_value=np.nan)
    dropped = {}
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        lo, hi = np.nanmin(arr, axis=0), np.nanmax(arr, axis=0)
    for i, c in enumerate(features.columns):
        if np.isnan(lo[i]):
            dropped[str(c)] = "all values missing"
        elif lo[i] == hi[i]:
            dropped[str(c)] = f"constant: {lo[i]:g}"
    return features.drop(columns=list(dropped)), dropped


def _log1p_columns(X, columns=()):
    X = np.array(X, dtype="float64", copy=True)
    if len(columns):
        X[:, columns] = np.log1p(X[:, columns])
    return X


def _check_k(k, n_samples: int | None = None, what: str = "n_clusters") -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise SegmentationInputError(f"{what}={k!r} is not a whole number of segments")
    k = int(k)
    if k < 2:
        raise SegmentationInputError(f"{what}={k} is out of range: a segmentation needs at least 2 segments")
    if n_samples is not None and n_samples < MIN_CUSTOMERS_PER_SEGMENT * k:
        raise SegmentationInputError(
            f"too few customers for {what}={k}: {n_samples} customers, need at least "
            f"{MIN_CUSTOMERS_PER_SEGMENT * k} ({MIN_CUSTOMERS_PER_SEGMENT} per segment); "
            + (f"use at most {n_samples // MIN_CUSTOMERS_PER_SEGMENT} segments"
               if n_samples >= 2 * MIN_CUSTOMERS_PER_SEGMENT else
               f"segmenting needs at least {2 * MIN_CUSTOMERS_PER_SEGMENT} customers"))
    return k


class BehaviouralSegmenter(ClusterMixin, TransformerMixin, BaseEstimator):
    """Behavioural segments from customer features (scikit-learn conventions).

    Pipeline (``pipeline_``): log1p of the skewed columns (``log_features``), median
    imputation of missing values (e.g. NPS for customers who never answered), standard
    scaling, optional PCA (``pca``: number of components, or a variance share in (0, 1)),
    then the clustering model:

    * ``algorithm="kmeans"``: :class:`~sklearn.cluster.KMeans` (``n_init`` restarts);
    * ``"minibatch"``: :class:`~sklearn.cluster.MiniBatchKMeans` for millions of customers;
    * ``"gmm"``: :class:`~sklearn.mixture.GaussianMixture` started from the k-means
      centres, ``covariance_type`` "tied" by default (one shared covariance: elongated
      segments, fast; "full" and "diag" also work); soft assignments via
      :meth:`predict_proba`.

    ``n_threads``: OpenMP/BLAS threads for the fit (None = the libraries' default, all
    cores); 1 by default because threads slow k-means down badly on a busy 2-core
    machine (see :func:`_threads`) and one thread fits 1,000,000 customers in seconds.

    Segments are numbered by size, 0 = largest, so numbers are stable across refits.
    Fitted attributes: ``pipeline_``, ``labels_``, ``feature_names_in_``,
    ``n_features_in_``, ``log_columns_``, ``cluster_sizes_``, ``cluster_centers_`` (in
    the scaled model space), ``inertia_`` (k-means only).
    Bad input raises :class:`SegmentationInputError` naming the columns or counts.
    """

    def __init__(self, n_clusters: int = 6, algorithm: str = "kmeans", pca=None,
                 log_features="auto", n_init: int = 10, max_iter: int = 300,
                 batch_size: int = 8192, covariance_type: str = "tied", n_threads: int | None = 1,
                 random_state: int | None = 0):
        self.n_clusters = n_clusters
        self.algorithm = algorithm
        self.pca = pca
        self.log_features = log_features
        self.n_init = n_init
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.covariance_type = covariance_type
        self.n_threads = n_threads
        self.random_state = random_state

    # ----------------------------------------------------------------- input checks
    def _validate(self, X, fitting: bool) -> np.ndarray:
        if isinstance(X, pd.DataFrame):
            names = np.asarray([str(c) for c in X.columns], dtype=object)
            non_num = [c for c in X.columns if not (pd.api.types.is_numeric_dtype(X[c])
                                                    or pd.api.types.is_bool_dtype(X[c]))]
            if non_num:
                raise SegmentationInputError(
                    f"feature column(s) {non_num} are not numeric; pass numbers only "
                    "(e.g. the output of customer_features)")
            arr = X.to_numpy(dtype="float64", na_value=np.nan)
        else:
            try:
                arr = np.asarray(X, dtype="float64")
            except (TypeError, ValueError) as e:
                raise SegmentationInputError(f"features are not numeric: {e}") from None
            if arr.ndim != 2:
                raise SegmentationInputError(f"features must be a table (2-D), got {arr.ndim}-D")
            names = np.asarray([f"x{i}" for i in range(arr.shape[1])], dtype=object)
        if arr.shape[1] == 0:
            raise SegmentationInputError("no feature columns given")
        if arr.shape[0] == 0:
            raise SegmentationInputError("no customers (0 rows) to segment")
        if np.isinf(arr).any():
            bad = list(names[np.isinf(arr).any(axis=0)])
            raise SegmentationInputError(f"feature column(s) {bad} hold infinite values")
        if fitting:
            self.feature_names_in_ = names
            self.n_features_in_ = arr.shape[1]
            nan_all = np.isnan(arr).all(axis=0)
            if nan_all.any():
                raise SegmentationInputError(
                    f"feature column(s) {list(names[nan_all])} are empty (all values missing) "
                    f"for all {arr.shape[0]} customers; drop them")
            with np.errstate(invalid="ignore"):
                const = np.nanmax(arr, axis=0) == np.nanmin(arr, axis=0)
            if const.any():
                vals = [float(np.nanmax(arr[:, i])) for i in np.flatnonzero(const)]
                raise SegmentationInputError(
                    f"feature column(s) {list(names[const])} are constant (values {vals}) and cannot "
                    "separate customers; drop them")
            _check_k(self.n_clusters, arr.shape[0])
        else:
            if arr.shape[1] != self.n_features_in_:
                raise SegmentationInputError(
                    f"expected {self.n_features_in_} feature columns {list(self.feature_names_in_)}, "
                    f"got {arr.shape[1]}")
            if isinstance(X, pd.DataFrame) and list(names) != list(self.feature_names_in_):
                missing = [c for c in self.feature_names_in_ if c not in set(names)]
                raise SegmentationInputError(
                    f"feature columns differ from those the model was fitted on; missing {missing}, "
                    f"expected order {list(self.feature_names_in_)}")
        return arr

    def _kmeans(self):
        if self.algorithm == "minibatch":
            return MiniBatchKMeans(n_clusters=self.n_clusters, n_init=self.n_init, max_iter=self.max_iter,
                                   batch_size=self.batch_size, random_state=self.random_state)
        return KMeans(n_clusters=self.n_clusters, n_init=self.n_init, max_iter=self.max_iter,
                      random_state=self.random_state)

    # ------------------------------------------------------------------ estimator API
    def fit(self, X, y=None):
        if self.algorithm not in _ALGORITHMS:
            raise SegmentationInputError(f"algorithm={self.algorithm!r} is unknown; use one of {_ALGORITHMS}")
        if self.algorithm == "gmm" and self.covariance_type not in ("full", "tied", "diag", "spherical"):
            raise SegmentationInputError(f"covariance_type={self.covariance_type!r}: use full, tied, diag or spherical")
        arr = self._validate(X, fitting=True)
        if self.log_features == "auto":
            logs = [i for i, c in enumerate(self.feature_names_in_) if c in LOG_FEATURES]
        else:
            wanted = list(self.log_features or [])
            unknown = [c for c in wanted if c not in set(self.feature_names_in_)]
            if unknown:
                raise SegmentationInputError(f"log_features {unknown} are not feature columns")
            logs = [i for i, c in enumerate(self.feature_names_in_) if c in wanted]
        neg = [self.feature_names_in_[i] for i in logs if np.nanmin(arr[:, i]) <= -1]
        if neg:
            raise SegmentationInputError(f"column(s) {neg} have values <= -1 and cannot be log-scaled")
        self.log_columns_ = np.asarray([self.feature_names_in_[i] for i in logs], dtype=object)
        steps = [("log1p", FunctionTransformer(_log1p_columns, kw_args={"columns": logs})),
                 ("impute", _MedianImputer()),
                 ("scale", StandardScaler())]
        if self.pca is not None:
            p = self.pca
            ok = (isinstance(p, numbers.Integral) and not isinstance(p, bool) and 1 <= p <= arr.shape[1]) or \
                 (isinstance(p, float) and 0 < p < 1)
            if not ok:
                raise SegmentationInputError(
                    f"pca={p!r} is out of range: a number of components from 1 to {arr.shape[1]} "
                    "or a share of variance between 0 and 1")
            steps.append(("pca", PCA(n_components=p, random_state=self.random_state)))
        with _threads(self.n_threads), warnings.catch_warnings():
            # too few distinct customers is reported below as a SegmentationInputError
            warnings.filterwarnings("ignore", message="Number of distinct clusters", category=ConvergenceWarning)
            prep = Pipeline(steps)
            Z = prep.fit_transform(arr)
            model = self._kmeans().fit(Z)
            if self.algorithm == "gmm":
                # started from the k-means centres: EM from random starts often stalls in poor optima here
                model = GaussianMixture(n_components=self.n_clusters, covariance_type=self.covariance_type,
                                        means_init=model.cluster_centers_, max_iter=self.max_iter,
                                        reg_covar=1e-4, random_state=self.random_state).fit(Z)
            self.pipeline_ = Pipeline(steps + [("model", model)])
            raw = model.predict(Z)
        sizes = np.bincount(raw, minlength=self.n_clusters)
        if (sizes == 0).any():
            raise SegmentationInputError(
                f"only {int((sizes > 0).sum())} distinct groups found for n_clusters={self.n_clusters}: "
                "the customers do not differ enough; use fewer segments")
        # number segments by size (0 = largest), ties by the model's own order
        order = np.lexsort((np.arange(self.n_clusters), -sizes))
        self._relabel = np.empty(self.n_clusters, dtype="int64")
        self._relabel[order] = np.arange(self.n_clusters)
        self.labels_ = self._relabel[raw]
        self.cluster_sizes_ = sizes[order]
        model = self.pipeline_.named_steps["model"]
        centers = model.means_ if self.algorithm == "gmm" else model.cluster_centers_
        self.cluster_centers_ = centers[order]
        if self.algorithm != "gmm":
            self.inertia_ = float(model.inertia_)
        return self

    def _check_fitted(self):
        if not hasattr(self, "pipeline_"):
            raise NotFittedError("BehaviouralSegmenter is not fitted yet; call fit first")

    def predict(self, X) -> np.ndarray:
        """Segment number (0 = largest at fit time) for each row."""
        self._check_fitted()
        arr = self._validate(X, fitting=False)
        with _threads(self.n_threads):
            return self._relabel[self.pipeline_.predict(arr)]

    def predict_proba(self, X) -> np.ndarray:
        """Segment membership probabilities (``algorithm="gmm"`` only)."""
        self._check_fitted()
        if self.algorithm != "gmm":
            raise SegmentationInputError("predict_proba needs algorithm='gmm' (k-means assignments are hard)")
        arr = self._validate(X, fitting=False)
        with _threads(self.n_threads):
            p = self.pipeline_.predict_proba(arr)
        out = np.empty_like(p)
        out[:, self._relabel] = p
        return out

    def transform(self, X) -> np.ndarray:
        """The rows in the model space (log-scaled, imputed, standardised, PCA if set)."""
        self._check_fitted()
        arr = self._validate(X, fitting=False)
        with _threads(self.n_threads):
            return self.pipeline_[:-1].transform(arr)

    def fit_predict(self, X, y=None, **kwargs) -> np.ndarray:
        return self.fit(X).labels_


# =====================================================================================
# choosing k
# =====================================================================================

def evaluate_k(X, ks: Iterable[int] = range(2, 11), n_bootstrap: int = 5, sample_size: int | None = 5000,
               random_state: int = 0, **params) -> pd.DataFrame:
    """Fit/internal-validity metrics and bootstrap stability for each k.

    On a random subsample of ``sample_size`` customers (all if None or fewer): for each
    k a segmenter (``params`` as for :class:`BehaviouralSegmenter`) is fitted and scored
    by silhouette (higher is better), Davies-Bouldin (lower) and Calinski-Harabasz
    (higher), in the model space. Stability: ``n_bootstrap`` refits on bootstrap
    resamples (with the same ``n_init`` restarts as the main fit, so that a poor random
    start is not mistaken for unstable segments) each label the whole subsample;
    ``stability`` is the mean adjusted Rand index between all pairs of those labelings
    (1 = the same segments every time), ``stability_min`` the worst pair.
    Returns one row per k.
    """
    ks = list(ks)
    if not ks:
        raise SegmentationInputError("ks is empty: give the numbers of segments to compare, e.g. range(2, 11)")
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, numbers.Integral) or n_bootstrap < 2:
        raise SegmentationInputError(f"n_bootstrap={n_bootstrap!r}: stability needs at least 2 bootstrap refits")
    n = len(X)
    rng = np.random.default_rng(random_state)
    if sample_size is not None and n > sample_size:
        idx = np.sort(rng.choice(n, size=sample_size, replace=False))
        X = X.iloc[idx] if isinstance(X, pd.DataFrame) else np.asarray(X)[idx]
        n = sample_size
        if isinstance(X, pd.DataFrame):
            # a rare behaviour (a channel a handful of customers use) can be absent from the
            # subsample; such a column cannot inform the choice of k, so it is left out here
            X, dropped = select_features(X)
            if dropped and params.get("log_features", "auto") not in ("auto", None):
                params["log_features"] = [c for c in params["log_features"] if c in X.columns]
    for k in ks:
        _check_k(k, n, what="k")
    params = {"random_state": random_state, "n_init": 4, **params}
    base = BehaviouralSegmenter(**params)
    rows = []
    for k in ks:
        seg = clone(base).set_params(n_clusters=k).fit(X)
        Z = seg.transform(X)
        labels = seg.labels_
        boots = []
        for b in range(n_bootstrap):
            bi = rng.integers(0, n, size=n)
            Xb = X.iloc[bi] if isinstance(X, pd.DataFrame) else np.asarray(X)[bi]
            try:
                sb = clone(base).set_params(n_clusters=k, random_state=random_state + 1 + b).fit(Xb)
            except SegmentationInputError:  # a resample where some column is constant: skip it
                continue
            boots.append(sb.predict(X))
        pairs = [adjusted_rand_score(boots[i], boots[j]) for i in range(len(boots)) for j in range(i + 1, len(boots))]
        with _threads(params.get("n_threads", 1)):
            sil = silhouette_score(Z, labels, sample_size=min(n, 3000), random_state=random_state)
        rows.append({
            "k": k,
            "silhouette": sil,
            "davies_bouldin": davies_bouldin_score(Z, labels),
            "calinski_harabasz": calinski_harabasz_score(Z, labels),
            "stability": float(np.mean(pairs)) if pairs else np.nan,
            "stability_min": float(np.min(pairs)) if pairs else np.nan,
            "smallest_segment_share": seg.cluster_sizes_.min() / n,
        })
    return pd.DataFrame(rows).set_index("k")


def choose_k(scores: pd.DataFrame, min_stability: float = 0.8) -> tuple[int, str]:
    """Pick k from :func:`evaluate_k` output; returns ``(k, reason)``.

    Rule: among the k whose bootstrap stability is at least ``min_stability`` (all k if
    none is), take the best average rank over silhouette, Davies-Bouldin and
    Calinski-Harabasz (each index has its own bias: CH favours few segments, silhouette
    often favours more; the average rank asks for agreement). Ties go to the smaller k.
    """
    need = ("silhouette", "davies_bouldin", "calinski_harabasz", "stability")
    missing = [c for c in need if c not in scores.columns]
    if missing or scores.empty:
        raise SegmentationInputError(f"scores need the columns of evaluate_k(); missing {missing or 'all rows'}")
    cand = scores[scores["stability"] >= min_stability]
    note = ""
    if cand.empty:
        cand = scores
        note = (f" No k reached bootstrap stability {min_stability:.2f} (best "
                f"{scores['stability'].max():.2f}), so the segments are not robust; treat them with care.")
    ranks = pd.DataFrame({
        "silhouette": cand["silhouette"].rank(ascending=False, method="min"),
        "davies_bouldin": cand["davies_bouldin"].rank(ascending=True, method="min"),
        "calinski_harabasz": cand["calinski_harabasz"].rank(ascending=False, method="min"),
    })
    avg = ranks.mean(axis=1)
    k = int(avg[avg == avg.min()].index.min())
    r = ranks.loc[k]
    reason = (f"k = {k}: the best average rank over silhouette ({_ordinal(r['silhouette'])}), "
              f"Davies-Bouldin ({_ordinal(r['davies_bouldin'])}) and Calinski-Harabasz "
              f"({_ordinal(r['calinski_harabasz'])}) among the {len(cand)} of {len(scores)} values of k "
              f"whose bootstrap stability (adjusted Rand index between refits) is at least "
              f"{min_stability:.2f}; at k = {k} it is {scores.loc[k, 'stability']:.2f}.{note}")
    return k, reason


def _ordinal(x: float) -> str:
    n = int(x)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


# =====================================================================================
# profiles and personas
# =====================================================================================

def _labels_series(labels, index: pd.Index, what: str = "labels") -> pd.Series:
    if isinstance(labels, pd.Series):
        s = labels.reindex(index)
    else:
        arr = np.asarray(labels)
        if len(arr) != len(index):
            raise SegmentationInputError(f"{what} has {len(arr)} values for {len(index)} customers")
        s = pd.Series(arr, index=index)
    if s.isna().any():
        raise SegmentationInputError(f"{int(s.isna().sum())} customers have no segment in {what}")
    return s.rename("segment")


def segment_profiles(features: pd.DataFrame, labels, surveys: pd.DataFrame | None = None,
                     extra: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per segment: size, revenue, channel mix, AOV, frequency, NPS and more.

    features: :func:`customer_features` output; labels: a segment per row (array or a
    Series indexed by customer_id). ``surveys`` (contract table) gives the NPS score per
    segment (% promoters 9-10 minus % detractors 0-6, over the answers of the segment's
    customers). ``extra``: more per-customer columns (e.g. ``clv``, ``churn_risk``),
    indexed by customer_id; their segment means are added.
    Channel mix, online share and return rate are order-weighted (share of the
    segment's orders); AOV is the segment's revenue over its orders.
    """
    seg = _labels_series(labels, features.index)
    f = features
    g = f.groupby(seg)
    orders = g["frequency"].sum()
    out = pd.DataFrame({"customers": g.size()})
    out["customer_share"] = out["customers"] / out["customers"].sum()
    out["revenue"] = g["monetary"].sum()
    out["revenue_share"] = out["revenue"] / out["revenue"].sum()
    out["revenue_per_customer"] = out["revenue"] / out["customers"]
    out["orders_per_customer"] = orders / out["customers"]
    out["aov"] = out["revenue"] / orders
    out["median_recency_days"] = g["recency_days"].median()
    share_cols = [c for c in f.columns if c.startswith("share_")]
    weighted = f[share_cols + [c for c in ("online_share", "return_rate") if c in f]].mul(f["frequency"], axis=0)
    mix = weighted.groupby(seg).sum().div(orders, axis=0)
    out = out.join(mix)
    out["n_channels"] = g["n_channels"].mean()
    out["multichannel_share"] = (f["n_channels"] >= 2).groupby(seg).mean()
    for c in ("items_per_order", "discount_share", "contacts_per_order", "nps_mean"):
        if c in f:
            out[c] = g[c].mean()
    if surveys is not None and "nps" in surveys and "customer_id" in surveys:
        s = surveys[["customer_id", "nps"]].dropna()
        s = s.assign(segment=s["customer_id"].map(seg)).dropna(subset=["segment"])
        score = s["nps"].astype("float64")
        nps = ((score >= 9).astype(float) - (score <= 6).astype(float)).groupby(s["segment"]).mean() * 100
        out["nps"] = nps.reindex(out.index)
        out["nps_answers"] = s.groupby("segment").size().reindex(out.index).fillna(0).astype("int64")
    if extra is not None:
        e = extra.reindex(f.index)
        for c in e.columns:
            if pd.api.types.is_numeric_dtype(e[c]):
                out[c] = e[c].groupby(seg).mean()
    out.index.name = "segment"
    return out


_CHANNEL_WORDS = {"store": "Store", "web": "Web", "app": "App", "marketplace": "Marketplace",
                  "whatsapp": "WhatsApp", "call_center": "Call-centre"}
_CHANNEL_PHRASES = {"store": "in store", "web": "on the web shop", "app": "in the app",
                    "marketplace": "on marketplaces", "whatsapp": "via WhatsApp",
                    "call_center": "by phone"}


def persona_names(profiles: pd.DataFrame, dominant_share: float = 0.6) -> pd.Series:
    """A short persona name per segment, generated from its profile (not hand-written).

    Channel word: the channel with at least ``dominant_share`` of the segment's orders
    ("Store", "App", ...); "Omnichannel" when most customers use two or more channels;
    "Online" when no channel dominates but nearly all orders are online; else "Mixed".
    Behaviour word (first rule that holds): "one-timers" (at most 2 orders each and a
    median recency at or above the segments' median), "loyalists" (revenue share at
    least 1.5x the customer share), "bargain hunters" (discount share at least 1.5x the
    customer average and >= 10%), "regulars" (orders per customer at least 3/4 of the
    average) and "occasionals" otherwise.
    Duplicate names get " (2)", " (3)" in order of revenue.
    """
    p = profiles
    shares = p[[c for c in p.columns if c.startswith("share_")]]
    all_orders = (p["orders_per_customer"] * p["customers"]).sum() / p["customers"].sum()
    avg_disc = (p["discount_share"] * p["customers"]).sum() / p["customers"].sum() if "discount_share" in p else np.nan
    names = {}
    for seg, row in p.iterrows():  # one iteration per segment (a handful), not per customer
        top = shares.loc[seg].idxmax() if not shares.empty else None
        if top is not None and shares.loc[seg, top] >= dominant_share:
            ch = top[6:]
            word = _CHANNEL_WORDS.get(ch, ch.replace("_", " ").capitalize())
        elif row.get("multichannel_share", 0) >= 0.5:
            word = "Omnichannel"
        elif row.get("online_share", 0) >= 0.9:
            word = "Online"
        else:
            word = "Mixed-channel"
        if row["orders_per_customer"] <= 2 and row["median_recency_days"] >= p["median_recency_days"].median():
            what = "one-timers"
        elif row["revenue_share"] >= 1.5 * row["customer_share"]:
            what = "loyalists"
        elif "discount_share" in p and row["discount_share"] >= max(1.5 * avg_disc, 0.10):
            what = "bargain hunters"
        elif row["orders_per_customer"] >= 0.75 * all_orders:
            what = "regulars"
        else:
            what = "occasionals"
        names[seg] = f"{word} {what}"
    s = pd.Series(names, name="persona")
    order = p["revenue"].sort_values(ascending=False).index
    seen: dict[str, int] = {}
    for seg in order:
        base = s[seg]
        seen[base] = seen.get(base, 0) + 1
        if seen[base] > 1:
            s[seg] = f"{base} ({seen[base]})"
    return s


def _fmt_money(x: float, currency: str) -> str:
    """IDR 790k, IDR 1.2 m, IDR 35 bn: short amounts for persona lines."""
    if not np.isfinite(x):
        return "n/a"
    for div, suffix in ((1e9, " bn"), (1e6, " m"), (1e3, "k")):
        if abs(x) >= div:
            v = x / div
            return f"{currency} {v:,.0f}{suffix}" if abs(v) >= 10 else f"{currency} {v:,.1f}{suffix}"
    return f"{currency} {x:,.0f}"


def persona_lines(profiles: pd.DataFrame, names: pd.Series | None = None, currency: str = "IDR",
                  min_channel_share: float = 0.15) -> pd.Series:
    """A plain-language line per segment, e.g. "Omnichannel loyalists — 12% of customers,
    38% of revenue, buy on the web shop, in store and in the app; 16.6 orders each, AOV
    IDR 790k, NPS 62". Channels listed are those with at least ``min_channel_share`` of
    the segment's orders, largest first; ``churn_risk`` is added when the profiles have it."""
    names = persona_names(profiles) if names is None else names
    p = profiles
    shares = p[[c for c in p.columns if c.startswith("share_")]]
    lines = {}
    for seg, row in p.iterrows():  # one per segment
        s = shares.loc[seg].sort_values(ascending=False)
        chans = [_CHANNEL_PHRASES.get(c[6:], f"via {c[6:]}") for c, v in s.items() if v >= min_channel_share]
        where = ", ".join(chans[:-1]) + (" and " if len(chans) > 1 else "") + chans[-1] if chans else "across channels"
        parts = [f"{row['customer_share']:.0%} of customers", f"{row['revenue_share']:.0%} of revenue",
                 f"buy {where}"]
        tail = [f"{row['orders_per_customer']:.1f} orders each", f"AOV {_fmt_money(row['aov'], currency)}"]
        if "discount_share" in p and row["discount_share"] >= 0.10:
            tail.append(f"{row['discount_share']:.0%} discount")
        if "nps" in p and pd.notna(row["nps"]):
            tail.append(f"NPS {row['nps']:.0f}")
        if "churn_risk" in p and pd.notna(row["churn_risk"]):
            tail.append(f"churn risk {row['churn_risk']:.0%}")
        lines[seg] = f"{names[seg]} — " + ", ".join(parts) + "; " + ", ".join(tail)
    return pd.Series(lines, name="persona_line")


def segment_channel_table(orders: pd.DataFrame, segments: pd.Series, value: str = "revenue",
                          normalize: bool = True) -> pd.DataFrame:
    """Segment x channel: revenue (or ``value="orders"``) of non-cancelled orders.

    segments: segment per customer (Series indexed by customer_id). ``normalize``: each
    row sums to 1 (the segment's channel mix); else totals.
    """
    _require(orders, "orders", ("customer_id", "channel", "net_amount"))
    if value not in ("revenue", "orders"):
        raise SegmentationInputError(f"value={value!r}: use 'revenue' or 'orders'")
    o = orders
    if "status" in o:
        o = o.loc[~o["status"].eq("cancelled").fillna(False).to_numpy(dtype=bool)]
    seg = o["customer_id"].map(segments)
    ok = seg.notna().to_numpy(dtype=bool)
    if not ok.any():
        raise SegmentationInputError("no order belongs to a segmented customer (customer_id values do not match)")
    vals = o.loc[ok, "net_amount"] if value == "revenue" else pd.Series(1.0, index=o.index[ok])
    t = vals.groupby([seg[ok].astype(str).to_numpy(), o.loc[ok, "channel"].to_numpy()]).sum().unstack(fill_value=0.0)
    t.index.name, t.columns.name = "segment", "channel"
    if normalize:
        t = t.div(t.sum(axis=1), axis=0)
    return t


def segment_migration(tables: Mapping[str, pd.DataFrame | None], model: BehaviouralSegmenter, start, end=None,
                      channels=None, names: Mapping[int, str] | None = None,
                      new_label: str = "not yet a customer") -> pd.DataFrame:
    """Who moved where: segment at ``start`` (rows) x segment at ``end`` (columns), counts.

    The fitted ``model`` assigns both periods from features computed as of each date
    (only events up to that date), so a move is a change in behaviour, not in the
    model. Customers without a purchase by ``start`` are in the row ``new_label``.
    ``names`` maps segment numbers to persona names.
    """
    cols = list(model.feature_names_in_)
    f_end = customer_features(tables, channels, as_of=end)
    f_start = customer_features(tables, channels, as_of=start)
    if pd.Timestamp(f_start.attrs["as_of"]) >= pd.Timestamp(f_end.attrs["as_of"]):
        raise SegmentationInputError(f"start ({start}) must be before end ({f_end.attrs['as_of']})")

    def assign(f):
        missing = [c for c in cols if c not in f.columns and not c.startswith("share_")]
        if missing:
            raise SegmentationInputError(f"features {missing} cannot be built for this period")
        X = f.reindex(columns=cols)
        X[[c for c in cols if c.startswith("share_")]] = X[[c for c in cols if c.startswith("share_")]].fillna(0.0)
        lab = pd.Series(model.predict(X), index=f.index)
        return lab.map(names) if names is not None else lab

    to = assign(f_end)
    frm = assign(f_start).reindex(to.index)
    frm = frm.astype(object).where(frm.notna(), new_label)
    t = pd.crosstab(frm.rename("from"), to.rename("to"))
    order = [str(v) for v in (names.values() if names is not None else sorted(set(to)))]
    t.index = t.index.astype(str)
    t.columns = t.columns.astype(str)
    return t.reindex(index=[new_label] + order, columns=order, fill_value=0)


# =====================================================================================
# output
# =====================================================================================

def customer_segment_table(features: pd.DataFrame, labels, names: Mapping[int, str] | None = None,
                           rfm: pd.DataFrame | None = None, customers: pd.DataFrame | None = None
                           ) -> pd.DataFrame:
    """The customer -> segment table for a CRM or campaign tool, one row per customer.

    Columns: ``customer_id, segment_id, segment`` (persona name), then ``rfm_segment``,
    ``r_score, f_score, m_score`` when ``rfm`` is given, and ``consent_marketing`` from
    ``customers`` when that column exists (campaigns may only target True).
    """
    seg = _labels_series(labels, features.index)
    out = pd.DataFrame({"customer_id": features.index.astype("str"), "segment_id": seg.to_numpy().astype("int64")})
    out["segment"] = (seg.map(names).astype("str").to_numpy() if names is not None
                      else out["segment_id"].astype("str"))
    if rfm is not None:
        r = rfm.reindex(features.index)
        for c in ("rfm_segment", "r_score", "f_score", "m_score"):
            if c in r:
                out[c] = r[c].astype("str").to_numpy() if c == "rfm_segment" else r[c].to_numpy()
    if customers is not None and "consent_marketing" in customers:
        cm = customers.set_index("customer_id")["consent_marketing"]
        out["consent_marketing"] = out["customer_id"].map(cm).astype("boolean").fillna(False).to_numpy()
    return out


def write_segment_table(table: pd.DataFrame, output_dir, filename: str = "customer_segments.csv") -> Path | None:
    """Write the table as CSV (UTF-8, header) into ``output_dir``; None (nothing written)
    when ``output_dir`` is None. Returns the path written."""
    if output_dir is None:
        return None
    if not re.fullmatch(r"[\w.-]+\.csv", filename):
        raise SegmentationInputError(f"filename {filename!r} must be a plain name ending in .csv")
    folder = Path(output_dir)
    if not folder.is_dir():
        raise SegmentationInputError(f"output_dir {str(folder)!r} is not an existing folder")
    path = folder / filename
    table.to_csv(path, index=False)
    return path


# =====================================================================================
# plots (each returns the figure; titles and axis labels always set)
# =====================================================================================

def plot_k_metrics(scores: pd.DataFrame, chosen_k: int | None = None):
    """Silhouette, Davies-Bouldin, Calinski-Harabasz and bootstrap stability against k."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5), sharex=True)
    spec = [("silhouette", "silhouette (higher is better)"),
            ("davies_bouldin", "Davies-Bouldin (lower is better)"),
            ("calinski_harabasz", "Calinski-Harabasz (higher is better)"),
            ("stability", "bootstrap stability, ARI (higher is better)")]
    for ax, (col, label) in zip(axes.ravel(), spec):
        ax.plot(scores.index, scores[col], marker="o")
        if col == "stability" and "stability_min" in scores:
            ax.fill_between(scores.index, scores["stability_min"], scores["stability"], alpha=0.2,
                            label="worst pair to mean")
            ax.legend(loc="lower left", fontsize=8)
        if chosen_k is not None:
            ax.axvline(chosen_k, color="grey", linestyle="--")
        ax.set_title(label, fontsize=10)
        ax.set_ylabel(col.replace("_", " "))
    for ax in axes[-1]:
        ax.set_xlabel("number of segments k")
    fig.suptitle("How many segments? Cluster-quality indices and stability by k"
                 + (f" (chosen k = {chosen_k}, dashed)" if chosen_k is not None else ""))
    fig.tight_layout()
    return fig


def plot_projection(model: BehaviouralSegmenter, X, labels, names: Mapping[int, str] | None = None,
                    max_points: int = 5000, random_state: int = 0):
    """Customers on the first two principal components of the model space, coloured by segment."""
    import matplotlib.pyplot as plt

    labels = np.asarray(labels)
    rng = np.random.default_rng(random_state)
    idx = np.sort(rng.choice(len(labels), size=min(max_points, len(labels)), replace=False))
    Xs = X.iloc[idx] if isinstance(X, pd.DataFrame) else np.asarray(X)[idx]
    Z = model.transform(Xs)
    pca = PCA(n_components=2, random_state=random_state).fit(Z)
    P = pca.transform(Z)
    fig, ax = plt.subplots(figsize=(8, 6))
    cmap = plt.get_cmap("tab10")
    for i, seg in enumerate(np.unique(labels)):
        m = labels[idx] == seg
        ax.scatter(P[m, 0], P[m, 1], s=6, alpha=0.5, color=cmap(i % 10),
                   label=(names or {}).get(seg, f"segment {seg}"))
    ev = pca.explained_variance_ratio_
    ax.set_xlabel(f"principal component 1 ({ev[0]:.0%} of variance)")
    ax.set_ylabel(f"principal component 2 ({ev[1]:.0%} of variance)")
    ax.set_title(f"Customers in two dimensions, coloured by segment ({len(idx):,} shown)")
    ax.legend(markerscale=3, fontsize=8, loc="best")
    fig.tight_layout()
    return fig


_PROFILE_LABELS = {
    "online_share": "online share of orders", "n_channels": "sales channels used",
    "orders_per_customer": "orders per customer", "aov": "average order value",
    "median_recency_days": "days since last purchase (median)", "discount_share": "discount share",
    "return_rate": "share of orders returned", "contacts_per_order": "service contacts per order",
    "nps": "NPS (-100 to 100)", "nps_mean": "mean NPS answer (0-10)", "customer_share": "share of customers",
    "revenue_share": "share of revenue", "items_per_order": "items per order",
    "multichannel_share": "share using 2+ channels", "clv_12m": "predicted value, 12 months",
    "churn_risk": "churn risk",
}


def _profile_label(col: str) -> str:
    if col.startswith("share_"):
        return f"{col[6:].replace('_', ' ')} share of orders"
    return _PROFILE_LABELS.get(col, col.replace("_", " "))


def _compact(x: float, col: str) -> str:
    if not np.isfinite(x):
        return ""
    if "share" in col or "rate" in col or col == "churn_risk":
        return f"{x:.0%}"
    if abs(x) >= 1e6:
        return f"{x / 1e6:.1f}m"
    if abs(x) >= 1e4:
        return f"{x / 1e3:.0f}k"
    return f"{x:,.0f}" if abs(x) >= 100 or col in ("nps", "median_recency_days") else f"{x:.1f}"


def plot_profile_heatmap(profiles: pd.DataFrame, columns: Sequence[str] | None = None,
                         names: Mapping | None = None):
    """Segments x profile measures; colour = standardised across segments, text = the value."""
    import matplotlib.pyplot as plt

    if columns is None:
        columns = [c for c in profiles.columns if c.startswith("share_")] + [
            c for c in ("online_share", "n_channels", "orders_per_customer", "aov", "median_recency_days",
                        "discount_share", "return_rate", "contacts_per_order", "nps", "clv_12m", "churn_risk")
            if c in profiles]
    columns = list(columns)
    v = profiles[columns].astype("float64")
    z = (v - v.mean()) / v.std(ddof=0).replace(0, 1)
    fig, ax = plt.subplots(figsize=(1.5 + 0.75 * len(columns), 1.6 + 0.5 * len(v)))
    im = ax.imshow(z.to_numpy(), cmap="RdBu_r", vmin=-2, vmax=2, aspect="auto")
    ax.set_xticks(range(len(columns)), [_profile_label(c) for c in columns], rotation=40, ha="right")
    ax.set_yticks(range(len(v)), [str((names or {}).get(i, i)) for i in v.index])
    for i in range(v.shape[0]):
        for j in range(v.shape[1]):
            ax.text(j, i, _compact(v.iat[i, j], columns[j]), ha="center", va="center", fontsize=7,
                    color="white" if abs(z.iat[i, j]) > 1.2 else "black")
    ax.set_xlabel("profile measure (colour: above / below the average segment)")
    ax.set_ylabel("segment")
    ax.set_title("Segment profiles")
    fig.colorbar(im, ax=ax, label="standard deviations from\nthe segment average", shrink=0.8)
    fig.tight_layout()
    return fig


def plot_size_revenue(profiles: pd.DataFrame, names: Mapping | None = None):
    """Share of customers next to share of revenue, per segment."""
    import matplotlib.pyplot as plt

    p = profiles.sort_values("revenue_share", ascending=True)
    y = np.arange(len(p))
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(p) + 1.5))
    ax.barh(y - 0.2, p["customer_share"] * 100, height=0.4, label="share of customers")
    ax.barh(y + 0.2, p["revenue_share"] * 100, height=0.4, label="share of revenue")
    ax.set_yticks(y, [str((names or {}).get(i, i)) for i in p.index])
    ax.set_xlabel("percent")
    ax.set_ylabel("segment")
    ax.set_title("Segment size and revenue")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def plot_rfm_segments(summary: pd.DataFrame):
    """Customers and revenue share per named RFM segment."""
    import matplotlib.pyplot as plt

    s = summary.iloc[::-1]
    y = np.arange(len(s))
    fig, ax = plt.subplots(figsize=(8, 5))
    ax.barh(y - 0.2, s["customer_share"] * 100, height=0.4, label="share of customers")
    ax.barh(y + 0.2, s["revenue_share"] * 100, height=0.4, label="share of revenue")
    ax.set_yticks(y, s.index)
    ax.set_xlabel("percent")
    ax.set_ylabel("RFM segment")
    ax.set_title("RFM segments: customers and revenue")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def plot_migration(migration: pd.DataFrame, start_label: str = "start", end_label: str = "end"):
    """Row-normalised migration matrix: where each starting segment's customers are at the end."""
    import matplotlib.pyplot as plt

    share = migration.div(migration.sum(axis=1).replace(0, 1), axis=0)
    fig, ax = plt.subplots(figsize=(1.5 + 1.1 * share.shape[1], 1.2 + 0.6 * share.shape[0]))
    im = ax.imshow(share.to_numpy(), cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(share.shape[1]), share.columns, rotation=30, ha="right")
    ax.set_yticks(range(share.shape[0]), [f"{r} ({n:,})" for r, n in migration.sum(axis=1).items()])
    for i in range(share.shape[0]):
        for j in range(share.shape[1]):
            ax.text(j, i, f"{share.iat[i, j]:.0%}", ha="center", va="center", fontsize=7,
                    color="white" if share.iat[i, j] > 0.6 else "black")
    ax.set_xlabel(f"segment at {end_label}")
    ax.set_ylabel(f"segment at {start_label} (customers)")
    ax.set_title("Segment migration: where each group's customers went")
    fig.colorbar(im, ax=ax, label="share of the row's customers", shrink=0.8)
    fig.tight_layout()
    return fig
