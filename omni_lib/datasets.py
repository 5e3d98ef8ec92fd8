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
