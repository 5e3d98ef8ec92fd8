"""CLTV and churn on the sample retailer, checked against its planted truth and lifetimes."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifetimes.utils import summary_data_from_transaction_data
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from omni_lib import churn, clv, datasets

HOLDOUT = 182


@pytest.fixture(scope="module")
def data(sample_dir, true_store):
    # the true store: rows keyed by the planted person, so results can be scored per person
    return datasets.load_for_modelling("sample", store=true_store)


@pytest.fixture(scope="module")
def truth(sample_dir):
    return pd.read_parquet(sample_dir / "truth" / "customers.parquet").set_index("customer_id")


@pytest.fixture(scope="module")
def result(data):
    end = data["data_end"].tz_localize(None)
    return clv.cltv_analysis(data["tables"]["orders"], end.normalize() - pd.Timedelta(days=HOLDOUT), end)


def test_summary_equals_lifetimes_on_sample(data):
    o = data["tables"]["orders"]
    tx = o.assign(order_ts=o["order_ts"].dt.tz_localize(None))[["customer_id", "order_ts", "net_amount"]]
    mine = clv.rfm_summary(tx, monetary_col="net_amount", freq="D", freq_multiplier=7)
    ref = summary_data_from_transaction_data(tx, "customer_id", "order_ts", "net_amount",
                                             freq="D", freq_multiplier=7)
    ref = ref.loc[mine.index]
    np.testing.assert_allclose(mine.to_numpy(), ref.to_numpy(), rtol=1e-10, atol=1e-6)


def test_holdout_forecast_and_choice(result):
    assert result.failed == {}                              # every model converged (restarts if needed)
    s = result.scores
    assert result.chosen == s["model"].iloc[0]
    assert abs(s["total_error_pct"].iloc[0]) < 10          # aggregate holdout forecast within 10%
    assert set(result.tracking["period"]) == {"calibration", "holdout"}


def test_p_alive_recovers_planted_dropouts(result, truth):
    v = result.clv[result.clv["frequency"] > 0]
    alive = truth.loc[v.index, "alive_at_end"].astype(int)
    assert roc_auc_score(alive, v["p_alive"]) > 0.75


def test_gamma_gamma_recovers_planted_spend(result, truth):
    v = result.clv[result.clv["frequency"] >= 3]
    rho = spearmanr(v["expected_spend"], truth.loc[v.index, "expected_order_value"]).statistic
    assert rho > 0.7


def test_clv_higher_for_omnichannel_customers(result, data):
    flag = clv.omnichannel_flag(data["tables"]["orders"], ["web", "app", "marketplace", "store", "whatsapp"])
    g = clv.clv_by_group(result.clv, flag).set_index("group")
    assert g.loc["omnichannel", "mean"] > 1.5 * g.loc["single-channel", "mean"]
    assert g["value_share"].sum() == pytest.approx(1.0)
    assert g["customers"].sum() == len(result.clv)


def test_churn_model_beats_both_baselines_on_sample(data):
    end = data["data_end"].tz_localize(None).normalize()
    res = churn.evaluate_time_based(data["tables"], end - pd.Timedelta(days=HOLDOUT), HOLDOUT,
                                    data["channel_kinds"], data_end=data["data_end"])
    assert res["scheme"].startswith("time-based")
    m = res["metrics"].set_index("model")["roc_auc"]
    assert m["churn model"] > m["baseline: days since last purchase"] + 0.005
    assert m["churn model"] > m["baseline: BG/NBD expected purchases"] + 0.005
    assert m["churn model"] > m["baseline: Pareto/NBD expected purchases"]
    assert m["churn model"] > m["baseline: frequency (repeat purchases)"] + 0.005
    kf = churn.baseline_key_figures(res["metrics"])
    assert kf["auc_margin_over_best_baseline"] == pytest.approx(
        m["churn model"] - max(v for k, v in m.items() if k.startswith("baseline")))
    print("sample churn AUCs:", kf)
    # the richer features are in use: service, surveys and channel mix columns exist
    assert {"tickets", "last_nps", "n_channels", "online_share", "visits_30d"} <= set(res["X_test"].columns)
