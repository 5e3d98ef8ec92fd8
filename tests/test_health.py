"""Data-health findings: each kind of finding appears with the right count."""
import pandas as pd

from omni_lib import health


def _tables():
    ts = pd.to_datetime(["2025-01-01 10:00", "2025-01-02 11:00", "2025-01-02 11:00", "2025-01-03 09:00"]).tz_localize("Asia/Jakarta")
    orders = pd.DataFrame({"order_id": ["o1", "o2", "o3", "o4"], "customer_id": ["a", "b", "b", None],
                           "order_ts": ts, "channel": ["web", "store", "store", "tiktok"],
                           "net_amount": [10.0, 20.0, 20.0, 5.0]})
    customers = pd.DataFrame({"customer_id": ["a", "b"], "first_seen": ts[:2]})
    return {"orders": orders, "customers": customers}


def test_findings_count_duplicates_unlinked_and_unknown_channels():
    f = health.quality_findings(_tables(), channels=["web", "store"]).set_index("finding")
    assert f.loc["rows identical apart from their id (double export?)", "rows"] == 1
    assert f.loc["orders not linked to a customer", "rows"] == 1
    unknown = [k for k in f.index if k.startswith("unknown channels")]
    assert unknown == ["unknown channels ['tiktok']"] and f.loc[unknown[0], "rows"] == 1
    assert f.loc[unknown[0], "severity"] == "error"


def test_overview_and_volumes():
    t = _tables()
    ov = health.table_overview(t).set_index("table")
    assert ov.loc["orders", "rows"] == 4 and ov.loc["orders", "days_covered"] == 3
    v = health.channel_volumes(t, freq="D")
    store = v[(v.table == "orders") & (v.channel == "store")]
    assert store["rows"].sum() == 2 and store["revenue"].sum() == 40.0
    text, figures = health.headline(ov.reset_index(), health.quality_findings(t, ["web", "store"]), t)
    assert figures["orders"] == 4 and "1 contract error" in text
