"""Privacy rules every analysis goes through.

Customers without recorded analytics consent (``customers.consent_analytics``
False or empty: no record of consent is treated as no consent) are removed from every table before any analysis; the count is reported, never
silent. A missing consent column means consent was collected outside the data
(everyone included, noted).
"""
from __future__ import annotations

from typing import Mapping

import pandas as pd

#: table -> the column that holds the unified customer id
CUSTOMER_KEY = {"customers": "customer_id", "orders": "customer_id", "touchpoints": "customer_id",
                "surveys": "customer_id", "tickets": "customer_id", "experiments": "unit_id"}


def apply_consent(tables: Mapping[str, pd.DataFrame | None]) -> tuple[dict[str, pd.DataFrame | None], dict]:
    """Drop customers without analytics consent from every table.

    Returns ``(tables, info)`` with ``info = {"excluded_customers": n, "rows_removed": {table: n},
    "note": text}``. Anonymous rows (no customer id) are kept.
    """
    out = dict(tables)
    customers = tables.get("customers")
    info = {"excluded_customers": 0, "rows_removed": {}, "note": ""}
    if customers is None or "consent_analytics" not in customers:
        info["note"] = "no consent_analytics column: every customer is included"
        return out, info
    no = ~customers["consent_analytics"].eq(True).fillna(False).to_numpy(dtype=bool)
    excluded = set(customers.loc[no, "customer_id"])
    info["excluded_customers"] = len(excluded)
    if not excluded:
        info["note"] = "every customer gave analytics consent"
        return out, info
    for name, col in CUSTOMER_KEY.items():
        df = tables.get(name)
        if df is None or col not in df:
            continue
        drop = df[col].isin(excluded).to_numpy(dtype=bool)
        info["rows_removed"][name] = int(drop.sum())
        out[name] = df.loc[~drop].reset_index(drop=True)
    info["note"] = (f"{len(excluded):,} customers without analytics consent were excluded from the analysis "
                    f"({info['rows_removed'].get('orders', 0):,} of their orders)")
    return out, info
