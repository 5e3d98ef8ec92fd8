"""Churn: labels, leakage-free features, models that beat the baselines (CDNOW)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from omni_lib import churn, datasets

CUT, H = "1997-09-30", 273  # the 39/39-week split


@pytest.fixture(scope="module")
def cdnow() -> dict:
    t = datasets.cdnow_transactions()
    t["channel"] = "web"
    t["order_id"] = [f"o{i}" for i in range(len(t))]
    return {"orders": t}


def test_labels_match_a_direct_count(cdnow):
    o = cdnow["orders"]
    y = churn.churn_labels(o, CUT, H)
    before = set(o.loc[o.order_ts <= CUT, "customer_id"])
    after = set(o.loc[(o.order_ts > CUT) & (o.order_ts <= pd.Timestamp(CUT) + pd.Timedelta(days=H + 1)),
                      "customer_id"])
    assert set(y.index) == before
    assert y.sum() == len(before - after)


def test_shuffling_holdout_events_does_not_change_features(cdnow):
    o = cdnow["orders"]
    X1 = churn.churn_features(cdnow, CUT, horizon_days=H)
    rng = np.random.default_rng(0)
    later = o.order_ts > pd.Timestamp(CUT) + pd.Timedelta(days=1)
    shuffled = o.copy()
    # move every later event to another customer and date within the holdout, and change its amount
    shuffled.loc[later, "customer_id"] = rng.permutation(o.loc[later, "customer_id"].to_numpy())
    shuffled.loc[later, "order_ts"] = rng.permutation(o.loc[later, "order_ts"].to_numpy())
    shuffled.loc[later, "net_amount"] = rng.uniform(1, 500, later.sum())
    X2 = churn.churn_features({"orders": shuffled}, CUT, horizon_days=H)
    pd.testing.assert_frame_equal(X1, X2)
    # ... while shifting one *earlier* event does change them (the test can fail)
    early = shuffled.copy()
    early.loc[early.index[0], "net_amount"] += 100
    X3 = churn.churn_features({"orders": early}, CUT, horizon_days=H)
    assert not X3.equals(X2)


def test_churn_model_beats_both_baselines_on_cdnow(cdnow):
    res = churn.evaluate_time_based(cdnow, CUT, H)
    m = res["metrics"].set_index("model")["roc_auc"]
    # the baselines land where the literature puts them (about 0.77)
    assert 0.74 < m["baseline: days since last purchase"] < 0.80
    assert 0.74 < m["baseline: BG/NBD expected purchases"] < 0.80
    assert m["churn model"] > m["baseline: days since last purchase"]
    assert m["churn model"] > m["baseline: BG/NBD expected purchases"]
    assert "cross-fitted" in res["scheme"]
    # frequency and Pareto/NBD, the other classic baselines (the 0.7576 and 0.7787)
    assert m["baseline: frequency (repeat purchases)"] == pytest.approx(0.7576, abs=5e-4)
    assert m["baseline: Pareto/NBD expected purchases"] == pytest.approx(0.7787, abs=5e-4)
    # on CDNOW (purchases only, no other features) the model is only on a par with Pareto/NBD
    assert m["churn model"] > m["baseline: Pareto/NBD expected purchases"] - 0.005


def test_pareto_baseline_equals_lifetimes_directly(cdnow):
    """The Pareto/NBD baseline against lifetimes' own fitter and summary, with sklearn's AUC."""
    import lifetimes
    from lifetimes.utils import summary_data_from_transaction_data
    from sklearn.metrics import roc_auc_score

    o = cdnow["orders"]
    e = churn.pareto_expected(o, CUT, H)
    s = summary_data_from_transaction_data(o, "customer_id", "order_ts", observation_period_end=CUT, freq="D",
                                           freq_multiplier=7)
    f = lifetimes.ParetoNBDFitter().fit(s["frequency"], s["recency"], s["T"])
    ref = f.conditional_expected_number_of_purchases_up_to_time(H / 7, s["frequency"], s["recency"], s["T"])
    common = e.index.intersection(s.index)
    assert len(common) == len(s) == len(e)
    np.testing.assert_allclose(e.loc[common], ref.loc[common], rtol=2e-3)
    y = churn.churn_labels(o, CUT, H).reindex(common)
    assert roc_auc_score(y, -e.loc[common]) == pytest.approx(roc_auc_score(y, -ref.loc[common]), abs=1e-4)


def test_lift_table_and_metrics():
    y = np.array([1] * 10 + [0] * 90)
    perfect = np.r_[np.ones(10), np.zeros(90)]
    lt = churn.lift_table(y, perfect)
    assert lt.loc[0, "lift"] == pytest.approx(10.0) and lt.loc[0, "capture"] == 1.0
    m = churn.metrics(y, {"perfect": perfect, "random": np.random.default_rng(1).random(100)})
    assert m.loc[0, "model"] == "perfect" and m.loc[0, "roc_auc"] == 1.0


def test_scored_table_has_tiers_and_reasons(cdnow):
    X, y = churn.build_dataset(cdnow, CUT, H)
    model = churn.ChurnModel("logit").fit(X, y)
    scored = churn.score_customers(model, X.head(200))
    assert set(scored["risk_tier"]) <= {"low", "medium", "high"}
    assert scored["churn_probability"].is_monotonic_decreasing
    top = scored.iloc[0]
    assert top["main_reasons"] != ""
    # the riskiest customer has not bought for longer than the typical customer
    assert X.loc[scored.index[0], "days_since_last"] > X["days_since_last"].median()


@pytest.mark.parametrize("cut,h,needle", [("1998-06-01", 273, "data end on"),
                                          ("1996-01-01", 30, "no customer bought")])
def test_bad_windows_are_clear(cdnow, cut, h, needle):
    with pytest.raises(churn.ChurnInputError, match=needle):
        churn.churn_labels(cdnow["orders"], cut, h)


def test_one_class_labels_are_clear(cdnow):
    X, y = churn.build_dataset(cdnow, CUT, H)
    with pytest.raises(churn.ChurnInputError, match="one class"):
        churn.ChurnModel("hgb").fit(X, np.ones(len(y)))
