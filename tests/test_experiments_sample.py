"""A/B-test analysis on the sample retailer: metrics, planted effects, SRM, decisions, bad input."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from omni_lib import io, privacy, report
from omni_lib import experiments as ab
from omni_lib.experiments.errors import ExperimentInputError

TABLES = ["customers", "orders", "touchpoints", "experiments"]


@pytest.fixture(scope="module")
def ds(sample_config, sample_dir):
    """Before the consent filter, keyed by the planted person (the files are siloed)."""
    from omni_lib import sample
    from omni_lib.config import load_config

    return io.Dataset(sample.true_keyed(sample_dir), load_config(sample_config))


@pytest.fixture(scope="module")
def tables(ds):
    t, _ = privacy.apply_consent(ds.tables)
    return t


@pytest.fixture(scope="module")
def truth(sample_dir):
    return json.loads((sample_dir / "truth" / "truth.json").read_text())["experiments"]


@pytest.fixture(scope="module")
def results(tables, ds):
    ov, res = ab.overview(tables, config=ds.config)
    return ov, res


# --------------------------------------------------------------------------- metrics
def test_unit_metrics_equal_the_planted_counts(ds, truth):
    """Before the consent filter, units, conversions, returns and completed revenue equal the truth exactly."""
    for x, t in truth.items():
        d = ab.prepare(ds.tables, x, config=ds.config)
        g = d.units.groupby("variant").agg(n=("unit_id", "size"), conv=("converted", "sum"),
                                           orders=("orders", "sum"), ret=("returned", "sum"), rev=("revenue", "sum"))
        assert d.attribution == "campaign" and not d.running and not d.excluded
        for v, tv in t["variants"].items():
            assert g.loc[v, "n"] == tv["n_units"], (x, v)
            assert g.loc[v, "conv"] == tv["conversions"], (x, v)
            assert g.loc[v, "orders"] == tv["orders"], (x, v)
            assert g.loc[v, "ret"] == tv["returned_orders"], (x, v)
            assert g.loc[v, "rev"] == pytest.approx(tv["completed_revenue"], abs=0.5), (x, v)
        assert d.control == "A" and d.planned_shares == {v: tv["planned_share"] for v, tv in t["variants"].items()}


def test_pre_period_covariates_can_be_computed_from_orders(ds):
    """Without pre_revenue / pre_orders in the table they are computed from orders: same values."""
    x = "EXP06_abandoned_cart"
    given = ab.prepare(ds.tables, x, config=ds.config).units.set_index("unit_id")
    t2 = dict(ds.tables, experiments=ds.experiments.drop(columns=["pre_revenue", "pre_orders"]))
    d2 = ab.prepare(t2, x, config=ds.config)
    comp = d2.units.set_index("unit_id").loc[given.index]
    assert any("computed from orders" in n for n in d2.notes)
    assert (comp["pre_orders"] == given["pre_orders"]).mean() > 0.999
    np.testing.assert_allclose(comp["pre_revenue"].sum(), given["pre_revenue"].sum(), rtol=1e-4)


def test_primary_rows_equal_statsmodels_on_the_units(results):
    """Conversion: the pooled z test (= chi-square) and the Wald interval, as statsmodels computes them."""
    from statsmodels.stats.proportion import confint_proportions_2indep, proportions_chisquare, proportions_ztest

    _, res = results
    for x, r in res.items():
        u = r.data.units
        c = u.loc[u["variant"] == r.data.control, "converted"]
        for v in r.data.treatments:
            row = r.results.query("metric == 'conversion' and method == 'z-test' and variant == @v").iloc[0]
            t = u.loc[u["variant"] == v, "converted"]
            counts, nobs = [t.sum(), c.sum()], [len(t), len(c)]
            assert row["p_diff"] == pytest.approx(proportions_ztest(counts, nobs)[1], rel=1e-9)
            assert row["p_diff"] == pytest.approx(proportions_chisquare(counts, nobs)[1], rel=1e-9)
            ci = confint_proportions_2indep(counts[0], nobs[0], counts[1], nobs[1], method="wald")
            assert (row["abs_low"], row["abs_high"]) == pytest.approx(ci, rel=1e-9)


# --------------------------------------------------------------------------- planted truth
def test_srm_is_detected_only_where_planted(results, truth):
    _, res = results
    for x, r in res.items():
        planted = truth[x].get("sample_ratio_mismatch", {}).get("planted", False)
        assert r.srm["alert"] == planted, (x, r.srm["p_value"])
    assert res["EXP05_landing_page"].srm["p_value"] < 1e-5


def test_each_planted_effect_lies_in_its_interval(results, truth):
    """Primary metric, every treatment: the 95% intervals (CUPED and plain) cover the planted effect.

    Planted: ``true_lift`` (the design's relative lift) and ``expected_lift_vs_control`` (the
    lift of the expected conversion rates of these very units, after the generator's 0.95
    cap), and for the absolute lift the difference of ``expected_conversion_rate``. The SRM
    experiment's planted effect is its true lift, 0; its expected lift over the units that
    survived the biased loss (+3.5%) is the *bias* the SRM check exists to catch, not an
    effect to recover (the sample's realised lift happens to be negative), so it is not asserted.
    """
    _, res = results
    for x, r in res.items():
        t = truth[x]["variants"]
        srm = x == "EXP05_landing_page"
        for v in r.data.treatments:
            rel = t[v]["expected_lift_vs_control"]
            diff = t[v]["expected_conversion_rate"] - t[r.data.control]["expected_conversion_rate"]
            for method in ("cuped", "z-test"):
                row = r.results.query("metric == 'conversion' and method == @method and variant == @v").iloc[0]
                assert row["rel_low"] <= t[v]["true_lift"] <= row["rel_high"], (x, v, method)
                if not srm:
                    assert row["rel_low"] <= rel <= row["rel_high"], (x, v, method, rel)
                    assert row["abs_low"] <= diff <= row["abs_high"], (x, v, method, diff)


def test_harmful_guardrail_is_caught_and_its_effect_recovered(results, truth):
    _, res = results
    r = res["EXP04_personalised_offer"]
    g = r.decision_rows("guardrail").iloc[0]
    t = truth["EXP04_personalised_offer"]["variants"]
    true_diff = t["B"]["true_return_rate"] - t["A"]["true_return_rate"]
    assert g["metric"] == "return_rate" and g["harmful"]
    assert g["abs_low"] <= true_diff <= g["abs_high"]
    assert g["abs_low"] > 0
    # and no guardrail alarm where no harm was planted (at this seed)
    for x in ("EXP01_email_subject", "EXP03_checkout_flow", "EXP06_abandoned_cart"):
        assert not res[x].decision_rows("guardrail")["harmful"].any(), x


def test_cuped_reduces_variance_on_the_sample(results):
    _, res = results
    vr = {x: r.results.query("role == 'primary' and method == 'cuped'")["variance_reduction"].max()
          for x, r in res.items()}
    assert all(v >= 0 for v in vr.values())
    assert vr["EXP03_checkout_flow"] > 0.15       # heterogeneous base rates: the pre-period explains a lot
    # CUPED decides only where it removes at least 5% of the variance; the plain row decides elsewhere
    for x, r in res.items():
        p = r.decision_rows("primary")
        cu = r.results.query("role == 'primary' and method == 'cuped'").set_index("variant")
        for _, row in p.iterrows():
            material = cu.loc[row["variant"], "variance_reduction"] >= ab.CUPED_MIN_VARIANCE_REDUCTION
            assert (row["method"] == "cuped") == material, (x, row["variant"])
    assert res["EXP03_checkout_flow"].decision_rows("primary")["method"].eq("cuped").all()
    assert res["EXP04_personalised_offer"].decision_rows("primary")["method"].eq("z-test").all()   # 0.2%


def test_decisions(results):
    ov, res = results
    dec = {x: (r.decision.verdict, r.decision.variant) for x, r in res.items()}
    assert dec["EXP01_email_subject"] == ("ship", "B")            # clear win
    assert dec["EXP06_abandoned_cart"] == ("ship", "B")           # the abandoned-cart workflow works
    assert dec["EXP04_personalised_offer"] == ("do not ship", None)   # more orders, more returns
    assert "return rate" in res["EXP04_personalised_offer"].decision.headline
    assert dec["EXP05_landing_page"] == ("do not ship", None)      # SRM
    assert "sample ratio mismatch" in res["EXP05_landing_page"].decision.headline
    assert dec["EXP02_cta_button"][0] != "ship"                    # null
    assert dec["EXP03_checkout_flow"][1] in (None, "B")            # never the worse variant C
    for r in res.values():
        assert r.decision.reasons and r.decision.verdict in ("ship", "do not ship", "keep running")
    assert list(ov["decision"]) == [res[x].decision.verdict for x in ov["experiment"]]


def test_three_variant_experiment_uses_holm(results):
    _, res = results
    p = res["EXP03_checkout_flow"].decision_rows("primary")
    assert len(p) == 2
    from statsmodels.stats.multitest import multipletests

    np.testing.assert_allclose(p["p_holm"], multipletests(p["p_value"], method="holm")[1])
    assert (p["p_holm"] >= p["p_value"]).all()


def test_bayes_and_key_figures(results):
    _, res = results
    r = res["EXP01_email_subject"]
    b = r.bayes.query("metric == 'conversion' and variant == 'B'").iloc[0]
    assert b["p_beat_control"] > 0.99 and b["expected_loss_vs_control"] < 1e-4
    kf = r.key_figures()
    assert kf["decision"] == "ship" and kf["variant_to_ship"] == "B" and not kf["srm_alert"]
    json.dumps(report.to_jsonable(kf))


def test_sequential_monitoring_on_a_real_experiment(results):
    _, res = results
    s = res["EXP06_abandoned_cart"].sequential
    assert s["look"].is_monotonic_increasing and s["n_control"].is_monotonic_increasing
    assert (s["cs_high"] - s["cs_low"] >= s["fixed_high"] - s["fixed_low"] - 1e-12).all()
    last = s.iloc[-1]
    assert last["n_control"] + last["n_treatment"] == len(res["EXP06_abandoned_cart"].data.units)
    assert last["sequential_says_significant"]        # a 30% lift is found even with daily looks


def test_breakdown(results):
    _, res = results
    d = res["EXP04_personalised_offer"].data
    bd = ab.breakdown(d, "customer_type")
    assert bd["n_control"].sum() + bd["n_variant"].sum() == len(d.units)
    bd2 = ab.breakdown(d, "region", min_units=300)
    assert bd2["small"].any() and "chance" in bd2.attrs["warning"]
    assert "B" in bd2.attrs["heterogeneity"] or bd2["small"].sum() >= len(bd2) - 1
    with pytest.raises(ExperimentInputError, match="unknown breakdown column"):
        ab.breakdown(d, "shoe_size")


def test_plan_for_a_new_test(results):
    _, res = results
    p = res["EXP02_cta_button"].plan
    assert 0 < p["power_now"] < 0.8 and p["mde_now"] > p["mde"]      # the null test was underpowered
    assert (p["table"]["days"].diff().dropna() < 0).all()            # bigger lifts need fewer days


# --------------------------------------------------------------------------- bad input
def _exp(tables, rows):
    return dict(tables, experiments=rows)


def test_unknown_experiment_id(tables, ds):
    with pytest.raises(ExperimentInputError, match=r"unknown experiment id 'EXP01_email'.*did you mean 'EXP01_email_subject'"):
        ab.analyze(tables, "EXP01_email", config=ds.config)


def test_one_variant_only(tables, ds):
    e = tables["experiments"]
    one = e.loc[(e["experiment_id"] == "EXP02_cta_button") & (e["variant"] == "A")]
    with pytest.raises(ExperimentInputError, match="only one variant"):
        ab.analyze(_exp(tables, one), "EXP02_cta_button", config=ds.config)


def test_no_control(tables, ds):
    e = tables["experiments"].assign(is_control=False)
    with pytest.raises(ExperimentInputError, match="no control"):
        ab.analyze(_exp(tables, e), "EXP02_cta_button", config=ds.config)
    e2 = tables["experiments"].drop(columns="is_control").assign(variant=lambda x: x["variant"].map({"A": "old", "B": "new", "C": "other"}))
    with pytest.raises(ExperimentInputError, match="no control"):
        ab.analyze(_exp(tables, e2), "EXP02_cta_button", config=ds.config)
    r = ab.analyze(_exp(tables, e2), "EXP02_cta_button", config=ds.config, control="old")
    assert r.data.control == "old"


def test_empty_and_constant_metric(tables, ds):
    no_orders = dict(tables, orders=tables["orders"].iloc[:0])
    with pytest.raises(ExperimentInputError, match="zero variance"):
        ab.analyze(no_orders, "EXP02_cta_button", config=ds.config, attribution="all")
    # a secondary ratio metric with no denominator is skipped with a note, not a crash
    no_tp = dict(tables, touchpoints=None)
    r = ab.analyze(no_tp, "EXP02_cta_button", config=ds.config)
    assert r.data.attribution == "all" and any("orders_per_session" in n and "empty" in n for n in r.notes)
    with pytest.raises(ExperimentInputError, match="metric 'aov' is empty"):
        d = r.data
        u = d.units.assign(orders=np.where(d.units["variant"] == "B", 0.0, d.units["orders"]))
        ab.compare(u, "aov", "A", "B")
    with pytest.raises(ExperimentInputError, match="attribution='campaign'"):
        ab.prepare(no_tp, "EXP02_cta_button", config=ds.config, attribution="campaign")


def test_assignments_after_data_end(tables, ds):
    e = tables["experiments"].copy()
    sel = e.index[e["experiment_id"] == "EXP06_abandoned_cart"][:3]
    e.loc[sel, "assigned_at"] = pd.Timestamp("2026-07-04 10:00", tz="Asia/Jakarta")
    with pytest.raises(ExperimentInputError, match="3 assignments .* after the data end"):
        ab.analyze(_exp(tables, e), "EXP06_abandoned_cart", config=ds.config)


def test_open_windows_are_left_out_and_the_test_is_running(tables, ds):
    """Data exported mid-test: units whose 14-day window is still open are left out and counted."""
    cut = pd.Timestamp("2026-04-01 00:00:00", tz="Asia/Jakarta")
    e = tables["experiments"].loc[lambda x: x["assigned_at"] <= cut]
    d = ab.prepare(_exp(tables, e), "EXP06_abandoned_cart", config=ds.config, data_end=cut)
    assert d.running and d.excluded["window_not_complete"] > 0
    assert (d.units["window_end"] <= cut).all() and len(d.units) + d.excluded["window_not_complete"] == d.assigned_units
    with pytest.raises(ExperimentInputError, match="no unit .* has a complete 14-day window"):
        early = pd.Timestamp("2026-03-10 00:00:00", tz="Asia/Jakarta")
        ab.prepare(_exp(tables, e.loc[e["assigned_at"] <= early]), "EXP06_abandoned_cart", config=ds.config,
                   data_end=early)


def test_units_in_two_variants_are_excluded_and_counted(tables, ds):
    e = tables["experiments"]
    x = e.loc[e["experiment_id"] == "EXP01_email_subject"]
    dup = x.iloc[:25].assign(variant=lambda d: d["variant"].map({"A": "B", "B": "A"}))
    d = ab.prepare(_exp(tables, pd.concat([e, dup], ignore_index=True)), "EXP01_email_subject", config=ds.config)
    assert d.excluded["in_two_variants"] == 25
    assert len(d.units) == len(x) - 25 and not d.units["unit_id"].isin(dup["unit_id"]).any()
    assert any("more than one variant" in n for n in d.notes)


def test_no_experiments_table(tables, ds):
    with pytest.raises(ExperimentInputError, match="no experiments table"):
        ab.analyze(dict(tables, experiments=None), "EXP01_email_subject", config=ds.config)


def test_overview_reports_errors_as_rows(tables, ds):
    e = tables["experiments"]
    bad = e.loc[~((e["experiment_id"] == "EXP02_cta_button") & (e["variant"] == "B"))]
    ov, res = ab.overview(_exp(tables, bad), config=ds.config, ids=["EXP02_cta_button", "EXP06_abandoned_cart"])
    assert list(ov["decision"]) == ["error", "ship"]
    assert "only one variant" in ov.loc[0, "headline"] and isinstance(res["EXP02_cta_button"], str)


def test_primary_can_be_any_metric(tables, ds):
    r = ab.analyze(tables, "EXP04_personalised_offer", config=ds.config, primary="return_rate")
    assert r.decision.verdict == "do not ship" and "worse" in r.decision.headline
    assert set(r.results["role"]) == {"primary", "secondary"}      # not also a guardrail of itself
    r2 = ab.analyze(tables, "EXP01_email_subject", config=ds.config, primary="revenue_per_user")
    assert (r2.decision.verdict, r2.decision.variant) == ("ship", "B")
    assert r2.bayes.query("role == 'primary'")["model"].str.contains("normal").all()


def test_a_running_test_is_judged_by_the_always_valid_sequence(tables, ds):
    """Mid-test export: the decision uses the confidence sequence, not the daily fixed p-value."""
    cut = pd.Timestamp("2026-03-30 00:00:00", tz="Asia/Jakarta")
    e = tables["experiments"].loc[lambda x: x["assigned_at"] <= cut]
    r = ab.analyze(_exp(tables, e), "EXP06_abandoned_cart", config=ds.config, data_end=cut)
    assert r.data.running
    last = r.sequential.iloc[-1]
    reasons = " ".join(r.decision.reasons)
    assert "always-valid" in reasons
    if r.decision.verdict == "ship":
        assert last["p_always_valid"] < 0.05
    else:
        assert last["p_always_valid"] >= 0.05 or r.decision_rows("guardrail")["harmful"].any()


def test_no_pre_period_data_no_crash_and_no_cuped(tables, ds):
    """Without pre_* columns the covariates come from orders; with CUPED off nothing is adjusted,
    the CUPED summary is empty and the report says so (07 crashed with KeyError 'cuped')."""
    t2 = dict(tables, experiments=tables["experiments"].drop(columns=["pre_revenue", "pre_orders"]))
    r = ab.analyze(t2, "EXP04_personalised_offer", config=ds.config)
    assert len(r.cuped_summary()) and "CUPED" in r.methods_note()
    r0 = ab.analyze(t2, "EXP04_personalised_offer", config=ds.config, cuped=False)
    assert r0.cuped_summary().empty and "No pre-period" in r0.methods_note()
    assert not (r0.results["method"] == "cuped").any()
    assert r0.decision.verdict == r.decision.verdict


def test_cuped_sentences_never_mix_raw_and_adjusted(results):
    """Where CUPED decides, the sentence's rates are the adjusted means and say so."""
    _, res = results
    r = res["EXP03_checkout_flow"]
    row = r.decision_rows("primary").query("variant == 'B'").iloc[0]
    assert row["method"] == "cuped"
    assert row["control_value"] == pytest.approx(row["mean_c"]) and row["variant_value"] == pytest.approx(row["mean_t"])
    assert row["abs_lift"] == pytest.approx(row["variant_value"] - row["control_value"])
    assert row["raw_control_value"] != pytest.approx(row["control_value"], abs=1e-6)
    line = next(x for x in r.decision.reasons if x.startswith("B vs A") or x.startswith("Also compared: B vs A"))
    assert "CUPED-adjusted" in line
    assert f"{row['control_value']:.1%} → {row['variant_value']:.1%}" in line
    if r.decision.verdict == "ship":
        assert "CUPED-adjusted" in r.decision.headline


def test_bayesian_key_figures_follow_growthbook(results):
    """The key figures' Bayesian view is GrowthBook's: posterior N(rel, rel_se²) of the deciding row."""
    _, res = results
    for x in ("EXP01_email_subject", "EXP06_abandoned_cart", "EXP02_cta_button"):
        r = res[x]
        kf = r.key_figures()
        row = r.decision_rows("primary").query("variant == @kf['compared_variant']").iloc[0]
        assert kf["bayes_expected_relative_lift"] == pytest.approx(row["rel_lift"], rel=1e-12)
        z = row["rel_lift"] / row["rel_se"]
        assert kf["prob_beats_control"] == pytest.approx(sps.norm.cdf(z), rel=1e-9)
        assert kf["bayes_relative_lift_ci_low"] == pytest.approx(row["rel_lift"] - 1.959964 * row["rel_se"], rel=1e-5)
        assert kf["relative_lift_p_value"] == pytest.approx(row["p_value"])
        assert 0 <= kf["expected_relative_loss"] < abs(row["rel_lift"]) + row["rel_se"]


def test_a_harm_sentence_shows_the_interval_of_the_test_that_found_it(results):
    """A guardrail harm is found by the test of the difference, so its sentence shows the difference's
    interval (which excludes zero), not the relative lift's (which, for a rare event, may not)."""
    _, res = results
    r = res["EXP04_personalised_offer"]
    g = r.decision_rows("guardrail").iloc[0]
    line = next(x for x in r.decision.reasons if x.startswith("Guardrail breached"))
    assert f"{100 * g['abs_low']:+.1f} to {100 * g['abs_high']:+.1f} pp" in line and g["abs_low"] > 0
    from omni_lib.report import pvalue

    assert pvalue(g["p_diff"]) in line
