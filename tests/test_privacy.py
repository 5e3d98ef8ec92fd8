import pandas as pd

from omni_lib.privacy import apply_consent


def test_consent_excludes_customers_everywhere_and_counts():
    customers = pd.DataFrame({"customer_id": ["a", "b", "c"], "consent_analytics": [True, False, pd.NA]})
    orders = pd.DataFrame({"customer_id": ["a", "b", "b", "c"], "net_amount": [1.0, 2.0, 3.0, 4.0]})
    tp = pd.DataFrame({"customer_id": ["b", None, "a"]})
    exp = pd.DataFrame({"unit_id": ["b", "a"]})
    out, info = apply_consent({"customers": customers, "orders": orders, "touchpoints": tp, "experiments": exp})
    assert info["excluded_customers"] == 2                           # unknown consent counts as no consent
    assert info["rows_removed"] == {"customers": 2, "orders": 3, "touchpoints": 1, "experiments": 1}
    assert list(out["orders"]["customer_id"]) == ["a"]
    assert out["touchpoints"]["customer_id"].isna().sum() == 1       # anonymous rows kept
    assert "2 customers without analytics consent" in info["note"]


def test_no_consent_column_keeps_everyone():
    out, info = apply_consent({"customers": pd.DataFrame({"customer_id": ["a"]})})
    assert info["excluded_customers"] == 0 and "every customer is included" in info["note"]
