"""Public reference data that ships inside installed wheels (no internet needed).

CDNOW: the 1/10 sample of the CDNOW music retailer's transaction log (23,570
customers who first bought in Q1 1997, 1997-01 to 1998-06; the sample holds 2,357
of them), used by Fader, Hardie & Lee (2005) and shipped in the ``lifetimes``
wheel. Read with ``importlib.resources`` because ``lifetimes.datasets`` imports
``pkg_resources``, which setuptools >= 81 no longer provides.
"""
from __future__ import annotations

from importlib import resources

import pandas as pd

#: Calibration end used by Fader, Hardie & Lee (2005): 39 weeks after 1997-01-01.
CDNOW_CALIBRATION_END = pd.Timestamp("1997-09-30")
CDNOW_OBSERVATION_END = pd.Timestamp("1998-06-30")


def _lifetimes_file(name: str):
    return resources.files("lifetimes").joinpath("datasets", name)


def cdnow_transactions() -> pd.DataFrame:
    """CDNOW 1/10 sample as transactions: ``customer_id, order_ts, items, net_amount``.

    One row per order line of the original file (customer, date, CDs, dollars).
    """
    with _lifetimes_file("CDNOW_sample.txt").open("r") as fh:
        raw = pd.read_csv(
            fh, sep=r"\s+", header=None,
            names=["customer_id", "customer_id_sample", "date", "items", "net_amount"],
            dtype={"customer_id": str, "customer_id_sample": str, "date": str},
        )
    return pd.DataFrame({
        # the sample's own 1..2357 id, the ID used in the published summary files
        "customer_id": raw["customer_id_sample"].str.lstrip("0"),
        "order_ts": pd.to_datetime(raw["date"], format="%Y%m%d"),
        "items": raw["items"].astype("int64"),
        "net_amount": raw["net_amount"].astype("float64"),
    })


def cdnow_summary() -> pd.DataFrame:
    """The published CDNOW summary (frequency, recency, T in weeks) from the lifetimes wheel."""
    with _lifetimes_file("cdnow_customers_summary.csv").open("r") as fh:
        return pd.read_csv(fh, index_col="ID")


def load_for_modelling(dataset: str = "sample", config_path: str | None = None, store=None) -> dict:
    """Tables and settings for the churn and CLTV notebooks.

    ``dataset``: ``"cdnow"`` (the public CDNOW sample, dollars) or ``"sample"`` /
    ``"configured"`` (the data configured in ``omni.yaml``, after the consent rule).
    Returns ``{"tables", "currency", "data_end", "channel_kinds", "consent_note", "name"}``;
    ``store``: an open :class:`omni_lib.store.Store` to read instead of the configured one.
    ``tables["orders"]`` holds completed and returned orders (cancelled ones are
    dropped; a returned order is a purchase occasion worth 0).
    """
    if dataset == "cdnow":
        tx = cdnow_transactions()
        tx["channel"] = "web"
        tx["order_id"] = tx.index.astype(str)
        return {"tables": {"orders": tx}, "currency": "USD", "data_end": CDNOW_OBSERVATION_END,
                "channel_kinds": {"web": "online"}, "consent_note": "public data set, no consent rule",
                "name": "CDNOW 1/10 sample", "returned_value": 0.0}
    if dataset not in ("sample", "configured"):
        raise ValueError(f"dataset must be 'sample', 'configured' or 'cdnow', got {dataset!r}")
    from .store import open_store

    st = store if store is not None else open_store(config_path)
    tables, info = st.tables, st.consent   # lazy: a table is read when first used
    orders = tables["orders"]
    if orders is None or orders.empty:
        raise ValueError("the configured data has no orders: churn and CLTV need purchase history")
    if "status" in orders:
        status = orders["status"].astype("string")
        orders = orders[status.ne("cancelled").fillna(True).to_numpy(dtype=bool)].copy()
        returned = orders["status"].astype("string").eq("returned").fillna(False).to_numpy(dtype=bool)
        returned_value = float(orders.loc[returned, "net_amount"].sum())   # what the reports' revenue counts more
        orders.loc[returned, "net_amount"] = 0.0
    else:
        returned_value = 0.0
    orders = orders[orders["customer_id"].notna()]
    tables["orders"] = orders.reset_index(drop=True)
    data_end = st.config.data_end
    if data_end is None:
        data_end = orders["order_ts"].max()
    kinds = {name: ch.kind for name, ch in st.config.channels.items()}
    return {"tables": tables, "currency": st.config.currency, "data_end": pd.Timestamp(data_end),
            "channel_kinds": kinds, "consent_note": info["note"], "name": "configured data",
            "returned_value": returned_value}
