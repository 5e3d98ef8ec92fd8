"""A/B-test statistics against scipy, statsmodels and tea-tasting on the same (synthetic) data."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, special
from scipy import stats as sps

from omni_lib import experiments as ab
from omni_lib.experiments import sequential as seqmod
from omni_lib.experiments.errors import ExperimentInputError
from omni_lib.experiments.simulate import Pool, simulate_peeking

import statsmodels.api as sm
import tea_tasting as tt   # the second, independent engine (a dev dependency): no skip if missing


@pytest.fixture(scope="module")
def data():
    """Heavy-tailed revenue with a correlated pre-period covariate, conversions, orders."""
    rng = np.random.default_rng(7)
    n_c, n_t = 2400, 2600
    x = rng.gamma(0.6, 200.0, n_c + n_t)                          # pre-period revenue
    lam = 0.1 + x / 80
    orders = rng.poisson(lam)
    treat = np.r_[np.zeros(n_c, bool), np.ones(n_t, bool)]
    orders = orders + (treat & (rng.random(n_c + n_t) < 0.03))
    value = np.array([rng.gamma(2.0, 60.0, k).sum() for k in orders]) * np.where(treat, 1.08, 1.0)
    returned = rng.binomial(orders, np.where(treat, 0.15, 0.10))
    return pd.DataFrame({"t": treat, "x": x, "orders": orders.astype(float), "value": value,
                         "conv": (orders > 0).astype(float), "returned": returned.astype(float)})


def _tt(df, metric):
    r = tt.Experiment(m=metric).analyze(df.assign(variant=df["t"].astype(int)), control=0)
    return r["m"]


# --------------------------------------------------------------------------- Welch
def test_welch_equals_scipy_and_statsmodels(data):
    c, t = data.loc[~data["t"], "value"], data.loc[data["t"], "value"]
    r = ab.compare_means(c, t, alpha=0.05)
    ref = sps.ttest_ind(t, c, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert r["stat"] == pytest.approx(ref.statistic, rel=1e-12)
    assert r["p_value"] == pytest.approx(ref.pvalue, rel=1e-10)
    assert r["df"] == pytest.approx(ref.df, rel=1e-12)
    assert (r["abs_low"], r["abs_high"]) == pytest.approx((ci.low, ci.high), rel=1e-10)
    from statsmodels.stats.weightstats import CompareMeans, DescrStatsW
    cm = CompareMeans(DescrStatsW(t.to_numpy()), DescrStatsW(c.to_numpy()))
    assert cm.ttest_ind(usevar="unequal")[1] == pytest.approx(r["p_value"], rel=1e-10)
    assert cm.tconfint_diff(usevar="unequal") == pytest.approx((r["abs_low"], r["abs_high"]), rel=1e-10)


def test_conversion_welch_agrees_with_two_proportion_z_test(data):
    """A rate is the mean of 0/1: Welch matches the unpooled z interval to O(1/n)."""
    from statsmodels.stats.proportion import confint_proportions_2indep

    c, t = data.loc[~data["t"], "conv"], data.loc[data["t"], "conv"]
    r = ab.compare_means(c, t)
    lo, hi = confint_proportions_2indep(t.sum(), len(t), c.sum(), len(c), method="wald")
    assert r["abs_low"] == pytest.approx(lo, abs=2e-4) and r["abs_high"] == pytest.approx(hi, abs=2e-4)


def test_relative_lift_equals_tea_tasting(data):
    c, t = data.loc[~data["t"], "value"], data.loc[data["t"], "value"]
    r = ab.compare_means(c, t)
    ref = _tt(data, tt.Mean("value"))
    assert r["rel"] == pytest.approx(ref.rel_effect_size, rel=1e-10)
    # tea-tasting's relative interval is the log-scale one (kept as rel_log_*)
    assert r["rel_log_low"] == pytest.approx(ref.rel_effect_size_ci_lower, rel=1e-9)
    assert r["rel_log_high"] == pytest.approx(ref.rel_effect_size_ci_upper, rel=1e-9)
    assert r["p_value"] == pytest.approx(ref.pvalue, rel=1e-9)
    assert r["abs_low"] == pytest.approx(ref.effect_size_ci_lower, rel=1e-9)


def test_relative_interval_agrees_with_bootstrap(data):
    """An independent check of the log-scale delta method: scipy's BCa bootstrap of the ratio."""
    c = data.loc[~data["t"], "conv"].to_numpy()
    t = data.loc[data["t"], "conv"].to_numpy()
    r = ab.compare_means(c, t)
    boot = sps.bootstrap((t, c), lambda a, b, axis=-1: a.mean(axis) / b.mean(axis) - 1, n_resamples=4000,
                         method="percentile", rng=np.random.default_rng(1), vectorized=True)
    ci = boot.confidence_interval
    assert r["rel_low"] == pytest.approx(ci.low, abs=0.01)
    assert r["rel_high"] == pytest.approx(ci.high, abs=0.01)


# --------------------------------------------------------------------------- delta method
def test_ratio_metric_equals_tea_tasting(data):
    d = data
    r = ab.compare_ratios(d.loc[~d["t"], "returned"], d.loc[~d["t"], "orders"], d.loc[d["t"], "returned"],
                          d.loc[d["t"], "orders"])
    ref = _tt(d, tt.RatioOfMeans("returned", "orders"))
    assert r["diff"] == pytest.approx(ref.effect_size, rel=1e-10)
    assert (r["abs_low"], r["abs_high"]) == pytest.approx((ref.effect_size_ci_lower, ref.effect_size_ci_upper), rel=1e-9)
    assert (r["rel_log_low"], r["rel_log_high"]) == pytest.approx(
        (ref.rel_effect_size_ci_lower, ref.rel_effect_size_ci_upper), rel=1e-9)
    assert r["p_value"] == pytest.approx(ref.pvalue, rel=1e-9)


def test_ratio_metric_equals_cluster_robust_ols():
    """Delta method = OLS on order-level rows with unit-clustered errors (x n/(n-1), equal arms)."""
    rng = np.random.default_rng(3)
    n = 1500
    orders = rng.poisson(1.3, 2 * n)
    treat = np.r_[np.zeros(n, bool), np.ones(n, bool)]
    ret = rng.binomial(orders, np.where(treat, 0.2, 0.12))
    r = ab.compare_ratios(ret[:n], orders[:n], ret[n:], orders[n:])
    unit = np.repeat(np.arange(2 * n), orders)
    y = np.concatenate([np.r_[np.ones(k), np.zeros(o - k)] for k, o in zip(ret, orders)])
    X = sm.add_constant(np.repeat(treat, orders).astype(float))
    fit = sm.OLS(y, X).fit(cov_type="cluster", cov_kwds={"groups": unit, "use_correction": False})
    assert fit.params[1] == pytest.approx(r["diff"], rel=1e-10)
    assert r["se"] == pytest.approx(fit.bse[1] * np.sqrt(n / (n - 1)), rel=1e-10)


# --------------------------------------------------------------------------- CUPED
def test_cuped_equals_tea_tasting_and_is_close_to_ols(data):
    d = data
    r = ab.compare_cuped(d.loc[~d["t"], "value"], d.loc[~d["t"], "x"], d.loc[d["t"], "value"], d.loc[d["t"], "x"])
    ref = _tt(d, tt.Mean("value", "x"))
    assert r["diff"] == pytest.approx(ref.effect_size, rel=1e-9)
    assert (r["abs_low"], r["abs_high"]) == pytest.approx((ref.effect_size_ci_lower, ref.effect_size_ci_upper), rel=1e-9)
    assert (r["rel_log_low"], r["rel_log_high"]) == pytest.approx(
        (ref.rel_effect_size_ci_lower, ref.rel_effect_size_ci_upper), rel=1e-9)
    assert r["p_value"] == pytest.approx(ref.pvalue, rel=1e-8)
    # regression adjustment (ANCOVA) gives nearly the same estimate and standard error
    fit = sm.OLS(d["value"], sm.add_constant(np.c_[d["t"].astype(float), d["x"]])).fit(cov_type="HC1")
    assert r["diff"] == pytest.approx(fit.params.iloc[1], abs=0.05 * r["se"])
    assert r["se"] == pytest.approx(fit.bse.iloc[1], rel=0.03)
    # the covariate explains a share rho^2 of the variance; CUPED removes about that much
    rho2 = np.corrcoef(d["value"], d["x"])[0, 1] ** 2
    assert r["variance_reduction"] == pytest.approx(rho2, abs=0.03)
    assert r["variance_reduction"] > 0.2


def test_cuped_with_useless_covariate_changes_nothing(data):
    d = data
    r = ab.compare_cuped(d.loc[~d["t"], "value"], np.ones((~d["t"]).sum()), d.loc[d["t"], "value"],
                         np.ones(d["t"].sum()))
    plain = ab.compare_means(d.loc[~d["t"], "value"], d.loc[d["t"], "value"])
    assert r["theta"] == 0 and r["diff"] == pytest.approx(plain["diff"]) and r["se"] == pytest.approx(plain["se"])


# --------------------------------------------------------------------------- SRM
def test_srm_chi_square_by_hand_and_alerts():
    r = ab.srm_check({"A": 4686, "B": 4207}, {"A": 0.5, "B": 0.5})
    e = (4686 + 4207) / 2
    chi2 = ((4686 - e) ** 2 + (4207 - e) ** 2) / e
    assert r["chi2"] == pytest.approx(chi2) and r["p_value"] == pytest.approx(sps.chi2.sf(chi2, 1))
    assert r["alert"] and "mismatch" in r["message"].lower()
    ok = ab.srm_check({"A": 3103, "B": 2354, "C": 2347}, {"A": 0.4, "B": 0.3, "C": 0.3})
    assert not ok["alert"] and ok["p_value"] > 0.1
    # a planned 40/30/30 split read as equal would be a (false) mismatch: the plan matters
    assert ab.srm_check({"A": 3103, "B": 2354, "C": 2347})["alert"]


# --------------------------------------------------------------------------- corrections
def test_holm_and_bh_equal_statsmodels():
    from statsmodels.stats.multitest import multipletests

    p = np.array([0.001, 0.04, 0.03, 0.2, 0.012, np.nan, 0.5])
    ok = ~np.isnan(p)
    for method in ("holm", "fdr_bh"):
        got = ab.adjust_pvalues(p, method)
        assert np.isnan(got[~ok]).all()
        np.testing.assert_allclose(got[ok], multipletests(p[ok], method=method)[1], rtol=1e-12)


# --------------------------------------------------------------------------- Bayes
def _miller_p_b_beats_a(a_s, a_n, b_s, b_n):
    """Evan Miller's closed form of P(p_B > p_A) for Beta(1+s, 1+n-s) posteriors."""
    aa, ba, ab_, bb = 1 + a_s, 1 + a_n - a_s, 1 + b_s, 1 + b_n - b_s
    i = np.arange(ab_)
    terms = special.betaln(aa + i, ba + bb) - np.log(bb + i) - special.betaln(1 + i, bb) - special.betaln(aa, ba)
    return float(np.exp(special.logsumexp(terms)))


def test_bayes_binary_matches_closed_form():
    b = ab.bayes_binary([190, 240], [1500, 1510], draws=400_000, seed=3)
    exact = _miller_p_b_beats_a(190, 1500, 240, 1510)
    mc_se = np.sqrt(exact * (1 - exact) / 400_000)
    assert abs(b.loc[1, "p_beat_control"] - exact) < 4 * mc_se
    # expected loss of choosing B = E[max(pA - pB, 0)], by numerical integration
    fa = sps.beta(191, 1311)
    fb = sps.beta(241, 1271)
    # E[(A - x)+] = E[A] P(A' > x) - x P(A > x), with A' ~ Beta(a + 1, b) (size-biased beta)
    inner = lambda x: fa.mean() * sps.beta(192, 1311).sf(x) - x * fa.sf(x)  # noqa: E731
    loss, _ = integrate.quad(lambda x: fb.pdf(x) * inner(x), 0.1, 0.25, limit=200)
    assert b.loc[1, "expected_loss_vs_control"] == pytest.approx(loss, rel=0.05, abs=2e-6)
    assert b["p_best"].sum() == pytest.approx(1.0)


def test_bayes_normal_matches_closed_form():
    b = ab.bayes_normal([10.0, 10.4], [0.2, 0.25], draws=400_000, seed=1)
    mu, s = 0.4, np.hypot(0.2, 0.25)
    assert b.loc[1, "p_beat_control"] == pytest.approx(sps.norm.cdf(mu / s), abs=0.003)
    loss = s * sps.norm.pdf(mu / s) - mu * sps.norm.cdf(-mu / s)
    assert b.loc[1, "expected_loss_vs_control"] == pytest.approx(loss, rel=0.03)
    worse = ab.bayes_normal([0.10, 0.15], [0.01, 0.01], higher_is_better=False, seed=1)
    assert worse.loc[1, "p_beat_control"] < 0.001   # a higher return rate is worse


# --------------------------------------------------------------------------- planning
def test_sample_size_matches_textbook_formula():
    """Proportions: the pooled-variance normal formula n = (z_a + z_b)² · 2p̄(1-p̄) / δ² (Fleiss et al. 2003, 4.2)."""
    p1, rel = 0.12, 0.10
    p2 = p1 * (1 + rel)
    pbar = (p1 + p2) / 2
    z = sps.norm.ppf(0.975) + sps.norm.ppf(0.8)
    n_book = z ** 2 * 2 * pbar * (1 - pbar) / (p2 - p1) ** 2
    s = ab.sample_size(p1, rel, kind="normal")
    assert s["n_control_exact"] == pytest.approx(n_book, rel=1e-4)
    assert s["n_control"] == int(np.ceil(n_book))
    # the t version needs a hair more (at this n, less than one unit)
    st = ab.sample_size(p1, rel)
    assert st["kind"] == "t" and 0 < st["n_control_exact"] - s["n_control_exact"] < 1
    assert ab.power_at(st["n_control"], p1, rel) >= 0.8 > ab.power_at(st["n_control"] - 50, p1, rel)
    mde = ab.minimum_detectable_effect(st["n_control"], p1)
    assert mde == pytest.approx(rel, rel=0.01)
    # means: statsmodels NormalIndPower with d = delta / sd
    from statsmodels.stats.power import NormalIndPower

    sm_n = NormalIndPower().solve_power(effect_size=5 / 40, alpha=0.05, power=0.9, ratio=1.0)
    assert ab.sample_size(100.0, 0.05, variance=1600.0, power=0.9, kind="normal")["n_control"] == int(np.ceil(sm_n))
    # three variants: the level is split, so more units per arm
    assert ab.sample_size(p1, rel, variants=3)["n_control"] > st["n_control"]


def test_planning_bad_input():
    with pytest.raises(ExperimentInputError, match=r"\(0, 1\)"):
        ab.sample_size(1.2, 0.1)
    with pytest.raises(ExperimentInputError, match="must not be 0"):
        ab.sample_size(0.1, 0.0)
    with pytest.raises(ExperimentInputError, match="traffic"):
        ab.plan_table(0.1, None, 0)
    # a zero baseline: relative lifts are undefined (was a bare ZeroDivisionError)
    with pytest.raises(ExperimentInputError, match=r"\(0, 1\)"):
        ab.minimum_detectable_effect(1000, 0.0)
    with pytest.raises(ExperimentInputError, match="non-zero"):
        ab.minimum_detectable_effect(1000, 0.0, variance=4.0)
    with pytest.raises(ExperimentInputError, match="non-zero"):
        ab.sample_size(0.0, 0.1, variance=4.0)


# --------------------------------------------------------------------------- sequential
def test_confidence_sequence_boundary_is_where_the_mixture_ratio_hits_one_over_alpha():
    v = np.array([4e-4, 1e-4, 2.5e-5])
    tau2 = float(ab.tune_tau2(1e-4))
    cs = ab.confidence_sequence(np.array([0.01, 0.012, 0.011]), np.sqrt(v), tau2, alpha=0.05)
    lam = seqmod.mixture_ratio(cs["half_width"], v, tau2)           # theta0 at the edge
    np.testing.assert_allclose(lam, 1 / 0.05, rtol=1e-10)
    # wider than the fixed 95% interval at every look; narrowest around the tuned variance
    assert (cs["half_width"] > 1.96 * np.sqrt(v)).all()
    hw = lambda t2: seqmod.confidence_sequence(0.0, 1e-2, t2)["half_width"]  # noqa: E731
    assert hw(tau2) < hw(tau2 * 3) and hw(tau2) < hw(tau2 / 3)
    # always-valid p-value below alpha exactly when the sequence excludes 0
    assert ((cs["p_value"] < 0.05) == ((cs["low"] > 0) | (cs["high"] < 0))).all()


def test_daily_peeking_inflates_fixed_test_but_not_the_sequence():
    """A quick A/A check (the 1,000+ simulation is in the slow tests and benchmarks)."""
    pool = Pool("bernoulli", np.random.default_rng(0).beta(2, 14, 5000))
    sim = simulate_peeking(pool, n_per_day=150, days=20, n_sims=400, seed=11)
    assert sim["fpr_sequential"] <= 0.05
    assert sim["fpr_fixed_peeking"] > 0.12 > sim["fpr_fixed_final"]


# --------------------------------------------------------------------------- bad input
def test_bad_numbers_give_clear_messages():
    with pytest.raises(ExperimentInputError, match="zero variance"):
        ab.compare_means(np.zeros(50), np.zeros(60))
    with pytest.raises(ExperimentInputError, match="empty"):
        ab.compare_means([], [1.0, 2.0])
    with pytest.raises(ExperimentInputError, match="missing"):
        ab.compare_means([1.0, np.nan, 2.0], [1.0, 2.0])
    with pytest.raises(ExperimentInputError, match="denominator is zero"):
        ab.compare_ratios([0, 0], [0, 0], [1, 2], [1, 3])
    with pytest.raises(ExperimentInputError, match="at least two variants"):
        ab.srm_check({"A": 100})


# --------------------------------------------------------------------------- CUPED in the joint posterior
def test_cuped_arms_use_one_theta_for_every_arm():
    """The Bayes step needs one CUPED adjustment for all arms (pairwise θs differ with 3+ arms)."""
    from omni_lib.experiments.analysis import _cuped_arms
    from omni_lib.experiments.units import Metric

    rng = np.random.default_rng(4)
    n = 3_000
    variant = rng.choice(["control", "B", "C"], n)
    x = rng.gamma(2.0, 50.0, n)
    slope = np.where(variant == "C", 1.6, 0.6)           # makes the pairwise θs differ
    y = 20 + slope * x + rng.normal(0, 30, n) + np.where(variant == "B", 5.0, 0.0)
    units = pd.DataFrame({"variant": variant, "rev": y, "pre_rev": x})
    m = Metric("revenue", "Revenue", "rev", covariate="pre_rev")
    means, ses = _cuped_arms(units, m, ["control", "B", "C"], None)
    theta = np.polyfit(x, y, 1)[0]                      # pooled least-squares slope = cov/var
    for v, mean in zip(["control", "B", "C"], means):
        sel = variant == v
        assert mean == pytest.approx(y[sel].mean() - theta * (x[sel].mean() - x.mean()), rel=1e-10)
    # with two arms it is exactly the pairwise CUPED comparison
    two = units[units["variant"] != "C"]
    means2, ses2 = _cuped_arms(two, m, ["control", "B"], None)
    c, t = two[two.variant == "control"], two[two.variant == "B"]
    from omni_lib.experiments.stats import compare_cuped

    r = compare_cuped(c.rev, c.pre_rev, t.rev, t.pre_rev)
    assert means2 == pytest.approx([r["mean_c"], r["mean_t"]], rel=1e-10)
    assert ses2 == pytest.approx([np.sqrt(r["var_c"] / r["n_c"]), np.sqrt(r["var_t"] / r["n_t"])], rel=1e-10)
