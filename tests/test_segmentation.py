"""Segmentation: features, RFM, clustering, choosing k, profiles, output and bad input.

The planted truth of the default sample (``data/sample/truth/customers.parquet``,
column ``segment``; design in ``truth.json["segments"]``) is the yardstick.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import adjusted_rand_score

from omni_lib import io, privacy
from omni_lib import segmentation as sg
from omni_lib.segmentation import BehaviouralSegmenter, SegmentationInputError

TABLES = ["customers", "orders", "surveys", "tickets"]


# ------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def sample(true_ds, sample_config, sample_dir):
    ds = true_ds
    tables, info = privacy.apply_consent(ds.tables)
    feats = sg.customer_features(tables, ds.config.channels, as_of=ds.config.data_end)
    truth = pd.read_parquet(sample_dir / "truth" / "customers.parquet").set_index("customer_id")
    design = json.loads((sample_dir / "truth" / "truth.json").read_text())["segments"]
    return {"ds": ds, "tables": tables, "info": info, "feats": feats, "truth": truth, "design": design}


@pytest.fixture(scope="module")
def fitted(sample):
    model = BehaviouralSegmenter(n_clusters=6, random_state=0).fit(sample["feats"])
    profiles = sg.segment_profiles(sample["feats"], model.labels_, sample["tables"]["surveys"])
    names = sg.persona_names(profiles)
    return {"model": model, "profiles": profiles, "names": names}


def _tiny_orders():
    ts = pd.to_datetime(["2026-01-01 10:00", "2026-01-11 10:00", "2026-01-21 10:00",   # A: 3 orders
                         "2026-01-05 12:00", "2026-01-25 12:00",                       # B: 1 + a cancelled
                         "2026-02-15 09:00"]).tz_localize("Asia/Jakarta")              # A: after as_of
    return pd.DataFrame({
        "order_id": ["o1", "o2", "o3", "o4", "o5", "o6"],
        "customer_id": pd.array(["A", "A", "A", "B", "B", "A"], dtype="str"),
        "order_ts": ts,
        "channel": pd.array(["web", "store", "store", "app", "web", "web"], dtype="str"),
        "net_amount": [100.0, 200.0, 300.0, 50.0, 999.0, 1000.0],
        "discount": [0.0, 100.0, 0.0, 50.0, 0.0, 0.0],
        "items": pd.array([1, 2, 3, 1, 1, 1], dtype="Int64"),
        "status": pd.array(["completed", "returned", "completed", "completed", "cancelled", "completed"],
                           dtype="str"),
    })


def _numeric_frame(n=60, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.normal(size=n)})


# ------------------------------------------------------------------------ features
def test_features_hand_computed():
    orders = _tiny_orders()
    f = sg.customer_features({"orders": orders}, {"web": "online", "app": "online", "store": "offline"},
                             as_of="2026-01-31")
    assert list(f.index) == ["A", "B"]
    a, b = f.loc["A"], f.loc["B"]
    # the cancelled order (B) and the order after as_of (A) are ignored
    assert a["frequency"] == 3 and b["frequency"] == 1
    assert a["monetary"] == 600 and b["monetary"] == 50
    assert a["aov"] == 200
    # as_of "2026-01-31" = end of that day; last purchase 2026-01-21 10:00
    assert a["recency_days"] == pytest.approx(10 + 14 / 24, abs=1e-6)
    assert a["share_web"] == pytest.approx(1 / 3) and a["share_store"] == pytest.approx(2 / 3)
    assert a["share_app"] == 0 and b["share_app"] == 1
    assert a["online_share"] == pytest.approx(1 / 3) and b["online_share"] == 1
    assert a["n_channels"] == 2 and b["n_channels"] == 1
    assert a["discount_share"] == pytest.approx(100 / 700) and b["discount_share"] == pytest.approx(0.5)
    assert a["return_rate"] == pytest.approx(1 / 3) and b["return_rate"] == 0
    assert a["items_per_order"] == pytest.approx(2.0)
    assert f.attrs["as_of"].startswith("2026-01-31T23:59:59")


def test_features_match_plain_groupby(sample):
    """The vectorised builder equals a straightforward pandas computation on the sample."""
    t, f = sample["tables"], sample["feats"]
    o = t["orders"][t["orders"]["status"] != "cancelled"]
    g = o.groupby("customer_id")
    end = sample["ds"].config.data_end
    exp = pd.DataFrame({
        "frequency": g.size().astype(float),
        "monetary": g["net_amount"].sum(),
        "recency_days": (end - g["order_ts"].max()).dt.total_seconds() / 86400,
        "discount_share": g["discount"].sum() / (g["discount"].sum() + g["net_amount"].sum()),
        "return_rate": (o["status"] == "returned").groupby(o["customer_id"]).mean(),
        "share_store": (o["channel"] == "store").groupby(o["customer_id"]).mean(),
        "n_channels": g["channel"].nunique().astype(float),
    })
    pd.testing.assert_frame_equal(f[exp.columns], exp.reindex(f.index), check_names=False, rtol=1e-9)
    tk = t["tickets"].groupby("customer_id")["contacts"].sum().reindex(f.index).fillna(0)
    np.testing.assert_allclose(f["contacts_per_order"], tk / f["frequency"])
    nps = t["surveys"].groupby("customer_id")["nps"].mean().reindex(f.index)
    np.testing.assert_allclose(f["nps_mean"], nps)
    assert len(f) == o["customer_id"].nunique()
    assert not f.drop(columns="nps_mean").isna().any().any()


def test_features_ignore_later_events(sample):
    """Features as of a date do not change when everything after it changes."""
    t = sample["tables"]
    cut = pd.Timestamp("2025-06-30 23:59:59", tz="Asia/Jakarta")
    before = sg.customer_features(t, sample["ds"].config.channels, as_of=cut)
    o = t["orders"].copy()
    late = (o["order_ts"] > cut).to_numpy()
    o.loc[late, "net_amount"] = o.loc[late, "net_amount"] * 7 + 1
    o.loc[late, "channel"] = "whatsapp"
    o.loc[late, "customer_id"] = o["customer_id"].sample(frac=1, random_state=0).to_numpy()[late]
    after = sg.customer_features({**t, "orders": o}, sample["ds"].config.channels, as_of=cut)
    pd.testing.assert_frame_equal(before, after)
    assert before["recency_days"].min() >= 0


# ------------------------------------------------------------------------ RFM
def test_rfm_scores_without_ties_are_equal_quintiles():
    f = pd.DataFrame({"recency_days": np.arange(100.0), "frequency": np.arange(100.0) + 1,
                      "monetary": np.arange(100.0)[::-1]})
    s = sg.rfm_scores(f)
    for col in ("r_score", "f_score", "m_score"):
        assert s[col].value_counts().to_dict() == {1: 20, 2: 20, 3: 20, 4: 20, 5: 20}
    # recent purchase = high R; more orders = high F
    assert s["r_score"].iloc[0] == 5 and s["r_score"].iloc[-1] == 1
    assert s["f_score"].iloc[-1] == 5 and s["m_score"].iloc[0] == 5
    assert s["rfm_cell"].iloc[0] == "515"


def test_rfm_ties_share_a_score():
    # 60 one-time buyers and 40 with 2..41 orders: all one-timers must get the same F
    freq = np.r_[np.ones(60), np.arange(2, 42)]
    f = pd.DataFrame({"recency_days": np.arange(100.0), "frequency": freq, "monetary": freq * 10})
    s = sg.rfm_scores(f)
    assert s["f_score"].iloc[:60].nunique() == 1
    assert s["f_score"].iloc[0] == 2  # mid-rank 30.5 of 100 -> second quintile
    assert (s["f_score"].iloc[60:] >= s["f_score"].iloc[0]).all()
    assert s["f_score"].is_monotonic_increasing


def test_rfm_grid_is_complete_and_uses_all_eleven_names():
    grid = sg.rfm_segment_grid()
    assert grid.shape == (5, 5) and not grid.isna().any().any()
    assert set(grid.to_numpy().ravel()) == set(sg.RFM_SEGMENTS)
    assert grid.loc[5, 5] == "Champions" and grid.loc[1, 1] == "Lost" and grid.loc[5, 1] == "New"
    assert grid.loc[1, 5] == "Can't Lose Them"


def test_rfm_segments_on_sample_follow_the_planted_behaviour(sample):
    f, truth = sample["feats"], sample["truth"]["segment"]
    s = sg.rfm_scores(f)
    summary = sg.rfm_summary(f, s)
    assert summary["customers"].sum() == len(f)
    assert summary.loc["Champions", "spend_per_customer"] > summary.loc["Lost", "spend_per_customer"]
    assert summary.loc["Lost", "median_recency_days"] > summary.loc["Champions", "median_recency_days"]
    seg = s["rfm_segment"].astype(str)
    tr = truth.reindex(f.index)
    # planted dormant one-timers (dropout 0.8, ~1.3 orders) land in Lost / Hibernating;
    # planted omnichannel loyalists mostly in Champions / Loyal
    assert seg[tr == "dormant_one_timer"].isin(["Lost", "Hibernating"]).mean() > 0.85
    assert seg[tr == "omnichannel_loyalist"].isin(["Champions", "Loyal"]).mean() > 0.55


# ------------------------------------------------------------------------ clustering
def test_recovers_planted_segments(sample, fitted):
    truth = sample["truth"]["segment"].reindex(sample["feats"].index)
    ari = adjusted_rand_score(truth, fitted["model"].labels_)
    assert ari >= 0.8, f"k-means ARI vs planted segments {ari:.3f}"


@pytest.mark.parametrize("algorithm", ["minibatch", "gmm"])
def test_other_algorithms_recover_planted_segments(sample, algorithm):
    model = BehaviouralSegmenter(6, algorithm=algorithm, random_state=0).fit(sample["feats"])
    ari = adjusted_rand_score(sample["truth"]["segment"].reindex(sample["feats"].index), model.labels_)
    assert ari >= 0.8, f"{algorithm} ARI {ari:.3f}"
    if algorithm == "gmm":
        p = model.predict_proba(sample["feats"].iloc[:100])
        np.testing.assert_allclose(p.sum(axis=1), 1.0)
        assert (p.argmax(axis=1) == model.labels_[:100]).mean() > 0.99


def test_pca_option_still_recovers(sample):
    model = BehaviouralSegmenter(6, pca=0.95, n_init=4, random_state=0).fit(sample["feats"])
    assert "pca" in model.pipeline_.named_steps
    assert model.transform(sample["feats"].iloc[:5]).shape[1] < sample["feats"].shape[1]
    ari = adjusted_rand_score(sample["truth"]["segment"].reindex(sample["feats"].index), model.labels_)
    assert ari >= 0.8


def test_estimator_conventions(sample, fitted):
    model, X = fitted["model"], sample["feats"]
    assert model.get_params()["n_clusters"] == 6
    c = clone(model)
    assert not hasattr(c, "labels_") and c.get_params() == model.get_params()
    assert c.fit(X.iloc[:2000]) is c
    with pytest.raises(NotFittedError):
        clone(model).predict(X)
    # segments numbered by size, 0 = largest; predict on the training rows gives labels_
    sizes = np.bincount(model.labels_)
    assert (np.diff(sizes) <= 0).all() and list(sizes) == list(model.cluster_sizes_)
    np.testing.assert_array_equal(model.predict(X), model.labels_)
    assert list(model.feature_names_in_) == list(X.columns) and model.n_features_in_ == X.shape[1]
    assert model.cluster_centers_.shape == (6, X.shape[1])
    assert set(model.log_columns_) == set(sg.LOG_FEATURES) & set(X.columns)
    # same seed, same segments
    again = BehaviouralSegmenter(6, random_state=0).fit(X)
    np.testing.assert_array_equal(again.labels_, model.labels_)


def test_pipeline_log_scales_imputes_and_standardises():
    X = pd.DataFrame({"frequency": [1.0, 3, 7, 15, 31, 63, 2, 4, 9, 20],
                      "share_web": [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 0.1, 0.3, 0.5, 0.7],
                      "nps_mean": [np.nan, 2.0, np.nan, 6.0, 8.0, 10.0, 9.0, np.nan, 3.0, 7.0]})
    model = BehaviouralSegmenter(2, log_features="auto", n_init=2).fit(X)
    assert list(model.log_columns_) == ["frequency"]
    freq = np.log1p(X["frequency"].to_numpy())
    nps = X["nps_mean"].fillna(7.0).to_numpy()  # median of the answers 2, 3, 6, 7, 8, 9, 10
    expected = np.column_stack([(v - v.mean()) / v.std() for v in (freq, X["share_web"].to_numpy(), nps)])
    np.testing.assert_allclose(model.transform(X), expected)


def test_select_features_and_single_channel_data():
    X = _numeric_frame().assign(share_web=1.0, n_channels=1.0, nps_mean=np.nan)
    kept, dropped = sg.select_features(X)
    assert list(kept.columns) == ["a", "b", "c"]
    assert dropped == {"share_web": "constant: 1", "n_channels": "constant: 1", "nps_mean": "all values missing"}
    # a rare channel absent from evaluate_k's subsample does not stop the choice of k
    rare = _numeric_frame(400).assign(share_whatsapp=np.r_[np.zeros(399), 1.0])
    scores = sg.evaluate_k(rare, ks=[2, 3], n_bootstrap=2, sample_size=100)
    assert list(scores.index) == [2, 3]


# ------------------------------------------------------------------------ choosing k
def test_choose_k_finds_planted_number_on_sample(sample):
    scores = sg.evaluate_k(sample["feats"], ks=range(2, 10))
    assert list(scores.index) == list(range(2, 10))
    assert scores["silhouette"].between(-1, 1).all() and (scores["davies_bouldin"] > 0).all()
    k, reason = sg.choose_k(scores)
    assert k == 6, scores
    assert scores.loc[6, "stability"] >= 0.8
    assert "k = 6" in reason and "stability" in reason


def test_evaluate_k_on_separated_blobs():
    rng = np.random.default_rng(3)
    centres = np.array([[0, 0, 0], [8, 0, 0], [0, 8, 0], [0, 0, 8]], dtype=float)
    X = pd.DataFrame(np.vstack([c + rng.normal(size=(150, 3)) for c in centres]), columns=["a", "b", "c"])
    scores = sg.evaluate_k(X, ks=range(2, 8), n_bootstrap=4, log_features=())
    assert scores.loc[4, "stability"] > 0.98
    assert scores["silhouette"].idxmax() == 4
    assert sg.choose_k(scores)[0] == 4


def test_choose_k_rule():
    scores = pd.DataFrame({
        "silhouette": [0.50, 0.40, 0.45, 0.30],
        "davies_bouldin": [0.9, 1.0, 0.8, 1.2],
        "calinski_harabasz": [900, 800, 850, 700],
        "stability": [0.6, 0.95, 0.9, 0.85],
    }, index=pd.Index([2, 3, 4, 5], name="k"))
    # k=2 has the best indices but is unstable, so it is excluded
    assert sg.choose_k(scores)[0] == 4
    assert sg.choose_k(scores, min_stability=0.5)[0] == 2
    k, reason = sg.choose_k(scores, min_stability=0.99)  # none stable: all considered, and said
    assert k == 2 and "not robust" in reason
    tie = scores.assign(silhouette=[0.1, 0.5, 0.5, 0.1], davies_bouldin=[2, 1, 1, 2],
                        calinski_harabasz=[1, 9, 9, 1], stability=1.0)
    assert sg.choose_k(tie)[0] == 3  # ties go to the smaller k


# ------------------------------------------------------------------------ profiles and personas
def test_profiles_add_up(sample, fitted):
    p, f = fitted["profiles"], sample["feats"]
    assert p["customers"].sum() == len(f)
    assert p["customer_share"].sum() == pytest.approx(1) and p["revenue_share"].sum() == pytest.approx(1)
    assert p["revenue"].sum() == pytest.approx(f["monetary"].sum())
    shares = p[[c for c in p.columns if c.startswith("share_")]]
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)
    assert p["nps"].between(-100, 100).all() and p["nps_answers"].sum() > 0


def test_personas_name_the_planted_segments(sample, fitted):
    """Each planted segment's customers mostly sit in a cluster whose generated name fits its design."""
    truth = sample["truth"]["segment"].reindex(sample["feats"].index)
    named = pd.Series(fitted["model"].labels_, index=truth.index).map(fitted["names"])
    majority = pd.crosstab(truth, named).idxmax(axis=1)
    expect = {"store_regular": "Store", "app_first_young_urban": "App", "marketplace_occasional": "Marketplace",
              "omnichannel_loyalist": "Omnichannel loyalists", "online_bargain_hunter": "bargain hunters",
              "dormant_one_timer": "one-timers"}
    for planted, word in expect.items():
        assert word in majority[planted], (planted, majority[planted])
    assert majority.nunique() == 6 and fitted["names"].is_unique


def test_persona_lines_and_nps_order(sample, fitted):
    p, names = fitted["profiles"], fitted["names"]
    lines = sg.persona_lines(p, names, currency="IDR")
    loyal = names[names == "Omnichannel loyalists"].index[0]
    line = lines[loyal]
    assert line.startswith("Omnichannel loyalists — ")
    assert f"{p.loc[loyal, 'customer_share']:.0%} of customers" in line
    assert f"{p.loc[loyal, 'revenue_share']:.0%} of revenue" in line and "in store" in line and "NPS" in line
    # planted NPS means: loyalists 8.9 > store regulars 8.5 > bargain hunters 5.8 > one-timers 3.7
    by_name = p.set_index(names.reindex(p.index))["nps"]
    design = sample["design"]
    assert design["omnichannel_loyalist"]["realised_nps_mean"] > design["dormant_one_timer"]["realised_nps_mean"]
    assert by_name["Omnichannel loyalists"] > by_name["Store regulars"] > by_name["Web bargain hunters"] \
        > by_name["Web one-timers"]


def test_nps_score_formula():
    f = pd.DataFrame({"recency_days": [1.0, 2, 3, 4], "frequency": [1.0, 1, 1, 1], "monetary": [1.0, 1, 1, 1],
                      "n_channels": [1.0, 1, 1, 1], "share_web": [1.0, 1, 1, 1]},
                     index=pd.Index(["a", "b", "c", "d"], name="customer_id"))
    surveys = pd.DataFrame({"customer_id": ["a", "a", "b", "c", "d", "zz"], "nps": [10, 9, 3, 8, 0, 10]})
    p = sg.segment_profiles(f, [0, 0, 1, 1], surveys)
    assert p.loc[0, "nps"] == pytest.approx(100 * (2 / 3 - 1 / 3))  # a: 10, 9 promoters; b: 3 detractor
    assert p.loc[1, "nps"] == pytest.approx(-50)                    # c passive, d detractor
    assert p.loc[0, "nps_answers"] == 3
    # per-customer extras (e.g. CLTV, churn risk) are averaged per segment; unknown customers ignored
    extra = pd.DataFrame({"churn_risk": [0.1, 0.3, 0.5, 0.9, 0.0]}, index=["a", "b", "c", "d", "zz"])
    p = sg.segment_profiles(f, [0, 0, 1, 1], extra=extra)
    assert p["churn_risk"].tolist() == pytest.approx([0.2, 0.7])
    assert "churn risk 70%" in sg.persona_lines(p)[1]


def test_segment_channel_table(sample, fitted):
    seg = pd.Series(fitted["model"].labels_, index=sample["feats"].index).map(fitted["names"])
    t = sg.segment_channel_table(sample["tables"]["orders"], seg)
    np.testing.assert_allclose(t.sum(axis=1), 1.0)
    assert t.loc["Store regulars", "store"] > 0.9 and t.loc["App regulars", "app"] > 0.7
    counts = sg.segment_channel_table(sample["tables"]["orders"], seg, value="orders", normalize=False)
    assert counts.to_numpy().sum() == sample["feats"]["frequency"].sum()


def test_migration_sees_the_app_launch(sample, fitted):
    """The app launched on 2025-07-01 (truth.json app_launch): nobody can be an app customer before."""
    names = fitted["names"].to_dict()
    mig = sg.segment_migration(sample["tables"], fitted["model"], "2025-06-30", sample["ds"].config.data_end,
                               sample["ds"].config.channels, names=names)
    assert mig.to_numpy().sum() == len(sample["feats"])
    assert list(mig.columns) == list(names.values()) and mig.index[0] == "not yet a customer"
    assert mig.loc["App regulars"].sum() == 0
    moved_to_app = mig["App regulars"].drop(["not yet a customer", "App regulars"]).sum()
    assert moved_to_app > 50  # web customers who moved to the app after the launch
    first = sample["tables"]["orders"].query("status != 'cancelled'").groupby("customer_id")["order_ts"].min()
    new = (first > pd.Timestamp("2025-06-30 23:59:59.999999", tz="Asia/Jakarta")).sum()
    assert mig.loc["not yet a customer"].sum() == new


# ------------------------------------------------------------------------ output
def test_customer_segment_table_written_and_read_back(sample, fitted, tmp_path):
    rfm = sg.rfm_scores(sample["feats"])
    table = sg.customer_segment_table(sample["feats"], fitted["model"].labels_, fitted["names"].to_dict(), rfm,
                                      sample["tables"]["customers"])
    assert list(table.columns) == ["customer_id", "segment_id", "segment", "rfm_segment", "r_score", "f_score",
                                   "m_score", "consent_marketing"]
    assert table["customer_id"].is_unique and len(table) == len(sample["feats"])
    cm = sample["tables"]["customers"].set_index("customer_id")["consent_marketing"]
    assert (table["consent_marketing"].to_numpy() == cm.reindex(table["customer_id"]).to_numpy()).all()
    path = sg.write_segment_table(table, tmp_path)
    assert path == tmp_path / "customer_segments.csv"
    back = pd.read_csv(path, dtype={"customer_id": str})
    assert back["customer_id"].tolist() == table["customer_id"].tolist()
    assert back["segment"].tolist() == table["segment"].tolist()
    assert sg.write_segment_table(table, None) is None


# ------------------------------------------------------------------------ bad input
def test_bad_k_and_too_few_customers():
    X = _numeric_frame(20)
    with pytest.raises(SegmentationInputError, match=r"too few customers for n_clusters=6: 20 customers.*at least 30"):
        BehaviouralSegmenter(6).fit(X)
    with pytest.raises(SegmentationInputError, match="at least 2 segments"):
        BehaviouralSegmenter(1).fit(X)
    with pytest.raises(SegmentationInputError, match="segmenting needs at least 10 customers"):
        BehaviouralSegmenter(2).fit(X.iloc[:7])
    for bad in (2.5, "6", True):
        with pytest.raises(SegmentationInputError, match="not a whole number"):
            BehaviouralSegmenter(bad).fit(X)
    with pytest.raises(SegmentationInputError, match="too few customers for k=5"):
        sg.evaluate_k(X, ks=[2, 5])
    with pytest.raises(SegmentationInputError, match="ks is empty"):
        sg.evaluate_k(X, ks=[])


def test_bad_features():
    X = _numeric_frame()
    with pytest.raises(SegmentationInputError, match=r"\['c'\] are constant"):
        BehaviouralSegmenter(3).fit(X.assign(c=1.0))
    with pytest.raises(SegmentationInputError, match=r"\['b'\] are empty \(all values missing\) for all 60"):
        BehaviouralSegmenter(3).fit(X.assign(b=np.nan))
    with pytest.raises(SegmentationInputError, match=r"\['name'\] are not numeric"):
        BehaviouralSegmenter(3).fit(X.assign(name="x"))
    with pytest.raises(SegmentationInputError, match=r"\['a'\] hold infinite"):
        BehaviouralSegmenter(3).fit(X.assign(a=np.inf))
    with pytest.raises(SegmentationInputError, match="0 rows"):
        BehaviouralSegmenter(3).fit(X.iloc[:0])
    with pytest.raises(SegmentationInputError, match="algorithm='dbscan' is unknown"):
        BehaviouralSegmenter(3, algorithm="dbscan").fit(X)
    with pytest.raises(SegmentationInputError, match="pca=9 is out of range"):
        BehaviouralSegmenter(3, pca=9).fit(X)
    with pytest.raises(SegmentationInputError, match="cannot be log-scaled"):
        BehaviouralSegmenter(3, log_features=["a"]).fit(X.assign(a=X["a"] - 5))
    with pytest.raises(SegmentationInputError, match="only 2 distinct groups"):
        BehaviouralSegmenter(3).fit(pd.DataFrame({"a": [0.0, 1.0] * 30, "b": [1.0, 0.0] * 30}))
    model = BehaviouralSegmenter(3).fit(X)
    with pytest.raises(SegmentationInputError, match=r"missing \['c'\]"):
        model.predict(X[["a", "b"]].assign(d=0.0))
    with pytest.raises(SegmentationInputError, match="predict_proba needs algorithm='gmm'"):
        model.predict_proba(X)


def test_bad_tables_and_rfm_input(tmp_path):
    orders = _tiny_orders()
    with pytest.raises(SegmentationInputError, match="orders table is missing"):
        sg.customer_features({"orders": None})
    with pytest.raises(SegmentationInputError, match=r"orders lacks column\(s\) \['net_amount'\]"):
        sg.customer_features({"orders": orders.drop(columns="net_amount")})
    with pytest.raises(SegmentationInputError, match="orders has no rows"):
        sg.customer_features({"orders": orders.iloc[:0]})
    with pytest.raises(SegmentationInputError, match="no non-cancelled orders .* on or before 2025-01-01"):
        sg.customer_features({"orders": orders}, as_of="2025-01-01")
    with pytest.raises(SegmentationInputError, match="not a date"):
        sg.customer_features({"orders": orders}, as_of="next tuesday")
    with pytest.raises(SegmentationInputError, match=r"missing \['monetary'\]"):
        sg.rfm_scores(pd.DataFrame({"recency_days": [1.0], "frequency": [1.0]}))
    with pytest.raises(SegmentationInputError, match="3 customers are too few for 5"):
        sg.rfm_scores(pd.DataFrame({"recency_days": [1.0, 2, 3], "frequency": [1.0, 2, 3], "monetary": [1.0, 2, 3]}))
    with pytest.raises(SegmentationInputError, match=r"\['monetary'\] have missing values"):
        sg.rfm_scores(pd.DataFrame({"recency_days": np.arange(9.0), "frequency": np.arange(9.0),
                                    "monetary": [np.nan] + list(range(8))}))
    with pytest.raises(SegmentationInputError, match="bins=1 is out of range"):
        sg.rfm_scores(pd.DataFrame({"recency_days": [1.0], "frequency": [1.0], "monetary": [1.0]}), bins=1)
    with pytest.raises(SegmentationInputError, match="is not an existing folder"):
        sg.write_segment_table(pd.DataFrame({"customer_id": ["a"]}), tmp_path / "nope")
    with pytest.raises(SegmentationInputError, match="2 values for 3 customers"):
        sg.segment_profiles(pd.DataFrame({"frequency": [1.0, 2, 3]}), [0, 1])
