"""CLTV building blocks against lifetimes and the published CDNOW results.

Published values: Fader, Hardie & Lee (2005) "Counting your customers the easy way"
(BG/NBD) and "RFM and CLV" / Fader & Hardie's Gamma-Gamma note, on the CDNOW 1/10
sample, 39-week calibration (1997-01-01 .. 1997-09-30), time unit one week.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifetimes.utils import summary_data_from_transaction_data

from omni_lib import clv, datasets

CAL_END, OBS_END = "1997-09-30", "1998-06-30"


@pytest.fixture(scope="module")
def tx() -> pd.DataFrame:
    return datasets.cdnow_transactions()


@pytest.fixture(scope="module")
def cal(tx) -> pd.DataFrame:
    ch = clv.calibration_holdout(tx, CAL_END, OBS_END, freq="D", freq_multiplier=7, monetary_col="net_amount")
    return ch


def _cal_summary(ch):
    return ch[["frequency_cal", "recency_cal", "T_cal", "monetary_value_cal"]].rename(
        columns=lambda c: c.removesuffix("_cal"))


@pytest.mark.parametrize("freq,mult,monetary", [("D", 1, "net_amount"), ("W", 1, "net_amount"),
                                                 ("D", 7, None), ("W", 1, None)])
def test_summary_equals_lifetimes(tx, freq, mult, monetary):
    mine = clv.rfm_summary(tx, monetary_col=monetary, freq=freq, freq_multiplier=mult)
    ref = summary_data_from_transaction_data(tx, "customer_id", "order_ts", monetary,
                                             freq=freq, freq_multiplier=mult)
    assert set(mine.index) == set(ref.index)
    ref = ref.loc[mine.index, list(mine.columns)]
    np.testing.assert_allclose(mine.to_numpy(), ref.to_numpy(), rtol=1e-12, atol=1e-9)
    assert mine.attrs["time_unit_days"] == (7 if freq == "W" else 1) * mult


def test_calibration_matches_published_summary(cal):
    pub = datasets.cdnow_summary()
    pub.index = pub.index.astype(str)
    j = cal.join(pub, how="inner")
    assert len(j) == len(pub) == 2357
    assert (j["frequency_cal"] == j["frequency"]).all()
    # the published file rounds to two decimals
    assert np.abs(j["recency_cal"] - j["recency"]).max() < 0.006
    assert np.abs(j["T_cal"] - j["T"]).max() < 0.006
    assert j["frequency_holdout"].sum() > 0
    assert (cal["duration_holdout"] == 39).all()


def test_holdout_counts_are_distinct_days(tx, cal):
    hold = tx[(tx.order_ts > CAL_END) & (tx.order_ts <= OBS_END)]
    expected = hold.drop_duplicates(["customer_id", "order_ts"]).groupby("customer_id").size()
    got = cal["frequency_holdout"]
    assert got.sum() == expected.reindex(cal.index).fillna(0).sum()
    cid = expected.idxmax()
    assert got[cid] == expected[cid]


def test_bgnbd_reproduces_fader_hardie_lee_2005(cal):
    f = clv.fit_transactions_model(_cal_summary(cal), "bgnbd")
    p = f.fit_info_.params
    assert p["r"] == pytest.approx(0.243, abs=0.001)
    assert p["alpha"] == pytest.approx(4.414, abs=0.002)
    assert p["a"] == pytest.approx(0.793, abs=0.001)
    assert p["b"] == pytest.approx(2.426, abs=0.002)
    assert f.fit_info_.log_likelihood == pytest.approx(-9582.4, abs=0.1)


def test_pareto_nbd_reproduces_published(cal):
    f = clv.fit_transactions_model(_cal_summary(cal), "pareto")
    p = f.fit_info_.params
    assert p["r"] == pytest.approx(0.553, abs=0.002)
    assert p["alpha"] == pytest.approx(10.578, abs=0.02)
    assert p["s"] == pytest.approx(0.606, abs=0.005)
    assert p["beta"] == pytest.approx(11.669, abs=0.1)
    assert f.fit_info_.log_likelihood == pytest.approx(-9595.0, abs=0.2)


def test_gamma_gamma_reproduces_published(cal):
    g = clv.fit_gamma_gamma(_cal_summary(cal))
    assert g.n_fitted_ == 946
    assert g.excluded_["no_repeat_purchase"] == 2357 - 946
    assert g.params_["p"] == pytest.approx(6.25, abs=0.01)
    assert g.params_["q"] == pytest.approx(3.74, abs=0.01)
    assert g.params_["v"] == pytest.approx(15.44, abs=0.02)


def test_compression_gives_same_fit(cal):
    s = _cal_summary(cal)
    a = clv.fit_transactions_model(s, "bgnbd", compress=True)
    b = clv.fit_transactions_model(s, "bgnbd", compress=False)
    assert a.fit_info_.n_patterns < b.fit_info_.n_patterns == len(s)
    for k in a.fit_info_.params:
        assert a.fit_info_.params[k] == pytest.approx(b.fit_info_.params[k], rel=1e-4)


@pytest.mark.parametrize("kwargs,needle", [
    ({"calibration_end": "1999-01-01", "observation_end": "1999-06-01"}, "after the data end"),
    ({"calibration_end": "1997-09-30", "observation_end": "1999-06-30"}, "longer than the data"),
    ({"calibration_end": "1996-01-01"}, "before the first transaction"),
])
def test_bad_periods_are_clear(tx, kwargs, needle):
    with pytest.raises(clv.CLVInputError, match=needle):
        clv.calibration_holdout(tx, **kwargs)


def test_bad_transactions_are_clear(tx):
    with pytest.raises(clv.CLVInputError, match="empty"):
        clv.rfm_summary(tx.iloc[:0])
    neg = tx.copy()
    neg.loc[neg.index[:3], "net_amount"] = -1.0
    with pytest.raises(clv.CLVInputError, match="3 transactions have a negative"):
        clv.rfm_summary(neg, monetary_col="net_amount")
    one_day = pd.DataFrame({"customer_id": ["a", "a", "b"],
                            "order_ts": pd.to_datetime(["2024-01-01 09:00", "2024-01-01 17:00", "2024-01-01 00:00"])})
    s = clv.rfm_summary(one_day)
    assert s.loc["a", "frequency"] == 0  # same-day purchases collapse into one
    with pytest.raises(clv.CLVInputError, match="no customer has a repeat purchase"):
        clv.fit_transactions_model(s, "bgnbd")


def test_clv_equals_lifetimes_helper_with_same_units(cal):
    """lifetimes' helper: 12 steps of 4.345 weeks, monthly rate 1%. Ours, in explicit days."""
    s = _cal_summary(cal)
    s.attrs = cal.attrs
    f = clv.fit_transactions_model(s, "bgnbd")
    g = clv.fit_gamma_gamma(s)
    ref = g.customer_lifetime_value(f, s["frequency"], s["recency"].to_numpy(), s["T"].to_numpy(),
                                    s["monetary_value"], time=12, discount_rate=0.01, freq="W")
    step = 4.345 * 7
    annual = 1.01 ** (365.25 / step) - 1
    ours = clv.customer_lifetime_value(f, g, s, horizon_days=12 * step, step_days=step,
                                       annual_discount_rate=annual)
    np.testing.assert_allclose(ours["clv"].to_numpy(), ref.to_numpy(), rtol=1e-8, atol=1e-8)
    # a longer horizon is worth more; discounting is worth less
    longer = clv.customer_lifetime_value(f, g, s, horizon_days=730)
    cheaper = clv.customer_lifetime_value(f, g, s, horizon_days=730, annual_discount_rate=0.5)
    assert longer["clv"].sum() > ours["clv"].sum() > 0
    assert cheaper["clv"].sum() < longer["clv"].sum()


def test_holdout_scores_and_choice(cal):
    s = _cal_summary(cal)
    fits = {m: clv.fit_transactions_model(s, m) for m in ("bgnbd", "pareto")}
    scores = clv.holdout_scores(cal, fits)
    assert list(scores.columns[:3]) == ["model", "mae", "rmse"]
    assert scores["rmse"].is_monotonic_increasing
    assert scores["actual_total"].iloc[0] == cal["frequency_holdout"].sum()
    # published: BG/NBD forecasts the 39-week holdout total within a few percent of actual
    assert abs(scores.set_index("model").loc["bgnbd", "total_error_pct"]) < 15
    name, why = clv.choose_model(scores)
    assert name == scores["model"].iloc[0] and "RMSE" in why
