"""Two-sample statistics for A/B tests: pooled z / chi-square, Welch, delta method, CUPED, SRM, Bayes, corrections.

Peers matched in ``tests/test_experiments_peers.py`` (to their published 5 decimals or
better): GrowthBook's frequentist relative lift (:func:`relative_delta`) and Bayesian
engine (:func:`bayes_relative`), spotify-confidence's chi-square difference and
statsmodels' ``proportions_ztest`` (:func:`proportions_from_counts`).

Everything here works on plain numbers or numpy arrays (per-unit values, or the
per-group summaries ``n, mean, var``), so the same code serves one experiment and
a simulation of thousands (arrays broadcast). The data side (which unit, which
window) is in :mod:`omni_lib.experiments.units`.

Library first: t / normal / chi-square distributions, the chi-square
goodness-of-fit test and Benjamini-Hochberg from scipy. The few formulas written
out here (Welch's interval from summaries, the log-scale delta method for the
relative lift, the delta method for ratio metrics, CUPED) are a few lines each and
are written by hand because they must run vectorised over simulations and over
subgroups; Holm is written out because statsmodels' version is slow here (see
:func:`adjust_pvalues`). Each cites its source, and the tests check them against
scipy, statsmodels and tea-tasting on the same data.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from ..report import pvalue as _pvalue  # p = 0.0004 / p < 0.001 in report text (issue 14)
from .errors import ExperimentInputError

__all__ = ["welch_from_stats", "relative_delta", "proportions_from_counts", "compare_proportions",
           "bayes_relative", "compare_means", "compare_ratios", "compare_cuped", "group_summary",
           "srm_check", "bayes_binary", "bayes_normal", "adjust_pvalues", "SRM_THRESHOLD"]

#: p-value below which a sample-ratio mismatch is raised (Fabijan et al. 2019 use 0.0005;
#: 0.001 is the common choice, e.g. Kohavi, Tang & Xu 2020, ch. 21)
SRM_THRESHOLD = 0.001


# --------------------------------------------------------------------------- frequentist
def welch_from_stats(mean_c, var_c, n_c, mean_t, var_t, n_t, alpha: float = 0.05) -> dict[str, np.ndarray]:
    """Welch's two-sample t test and intervals from group summaries (vectorised).

    ``var_*`` are sample variances (ddof=1) of the per-unit values. Returns a dict of
    arrays: ``diff`` (treatment - control), ``se``, ``df``, ``stat``, ``p_value``
    (two-sided, of the difference), ``abs_low/abs_high`` (the ``1-alpha`` interval of the
    difference), ``rel`` (treatment/control - 1) with GrowthBook's delta-method
    ``rel_low/rel_high``, ``rel_se``, ``rel_p_value`` (see :func:`relative_delta`), and
    the log-scale interval ``rel_log_low/rel_log_high``.

    Sources: Welch (1947), *Biometrika* 34:28-35, with the Satterthwaite (1946)
    degrees of freedom: ``df = (v_t/n_t + v_c/n_c)^2 / ((v_t/n_t)^2/(n_t-1) + (v_c/n_c)^2/(n_c-1))``;
    the same numbers as ``scipy.stats.ttest_ind(equal_var=False)``.
    Log-scale relative interval: the delta method on the log scale, ``Var(log ȳ) ≈ Var(ȳ)/μ²``
    (Deng, Knoblich & Lu 2018, "Applying the Delta Method in Metric Analytics", KDD,
    sec. 3; Kohavi, Tang & Xu 2020, *Trustworthy Online Controlled Experiments*,
    ch. 18), so the interval is ``ratio · exp(±q·se_log) - 1`` (asymmetric, never below
    -100%), with Welch degrees of freedom on that scale (as tea-tasting does). It is
    undefined (NaN) when a mean is not positive.
    """
    mean_c, var_c, n_c, mean_t, var_t, n_t = (np.asarray(a, dtype=float) for a in
                                              (mean_c, var_c, n_c, mean_t, var_t, n_t))
    with np.errstate(divide="ignore", invalid="ignore"):
        a, b = var_t / n_t, var_c / n_c
        se = np.sqrt(a + b)
        df = (a + b) ** 2 / (a ** 2 / (n_t - 1) + b ** 2 / (n_c - 1))
        diff = mean_t - mean_c
        stat = diff / se
        p = 2.0 * sps.t.sf(np.abs(stat), df)
        q = sps.t.ppf(1.0 - alpha / 2.0, df)
        # relative lift, log-scale delta method
        la, lb = a / mean_t ** 2, b / mean_c ** 2
        se_log = np.sqrt(la + lb)
        df_log = (la + lb) ** 2 / (la ** 2 / (n_t - 1) + lb ** 2 / (n_c - 1))
        q_log = sps.t.ppf(1.0 - alpha / 2.0, df_log)
        ratio = mean_t / mean_c
        ok = (mean_t > 0) & (mean_c > 0)
        rel_log_low = np.where(ok, ratio * np.exp(-q_log * se_log) - 1.0, np.nan)
        rel_log_high = np.where(ok, ratio * np.exp(q_log * se_log) - 1.0, np.nan)
    out = {"diff": diff, "se": se, "df": df, "stat": stat, "p_value": p,
           "abs_low": diff - q * se, "abs_high": diff + q * se,
           "rel_log_low": rel_log_low, "rel_log_high": rel_log_high}
    out.update(relative_delta(mean_c, var_c, n_c, mean_t, var_t, n_t, alpha))
    return out


def relative_delta(mean_c, var_c, n_c, mean_t, var_t, n_t, alpha: float = 0.05,
                   df=None) -> dict[str, np.ndarray]:
    """Relative lift ``(mean_t - mean_c)/|mean_c|`` with its delta-method interval and p-value (vectorised).

    This is GrowthBook's frequentist engine (``gbstats.frequentist.tests.TwoSidedTTest``
    with ``difference_type="relative"``; ``gbstats.utils.frequentist_variance`` and
    ``variance_of_ratios``): ``Var(rel) = v_t/(n_t μ_c²) + v_c μ_t²/(n_c μ_c⁴)`` (the
    first-order delta method for a ratio of two independent means; Deng, Knoblich & Lu
    2018, KDD, sec. 3), a Wald t statistic ``rel / se`` with the Welch-Satterthwaite
    degrees of freedom of the raw variances (``df=None``; pass ``np.inf`` for a z test),
    and the symmetric interval ``rel ± t_{1-α/2} · se``. Returns ``rel``, ``rel_se``,
    ``rel_df``, ``rel_p_value``, ``rel_low``, ``rel_high``; NaN where ``mean_c == 0``.

    Why this one decides and the log-scale interval (``rel_log_*`` in
    :func:`welch_from_stats`) is kept only beside it: both are first-order delta methods
    and agree when the control mean is precise (relative standard error ``se_c/μ_c`` of a
    few percent, every A/B test of a useful size); the delta-method test is the more
    cautious one for a positive lift (its variance grows with ``μ_t²``), it is what
    GrowthBook reports, and its p-value, interval and the Bayesian posterior (same mean and
    standard error) always tell one story. The log-scale interval is better when the control
    mean is imprecise (``se_c/μ_c`` above ~10%, a few hundred units of a skewed metric):
    the ratio is then skewed and the symmetric interval can reach below -100%; the report
    then flags the lift as imprecise (``rel_imprecise``).
    """
    mean_c, var_c, n_c, mean_t, var_t, n_t = (np.asarray(a, dtype=float) for a in
                                              (mean_c, var_c, n_c, mean_t, var_t, n_t))
    with np.errstate(divide="ignore", invalid="ignore"):
        a, b = var_t / n_t, var_c / n_c
        if df is None:
            df = (a + b) ** 2 / (a ** 2 / (n_t - 1) + b ** 2 / (n_c - 1))
        df = np.broadcast_to(np.asarray(df, dtype=float), np.broadcast(a, b).shape)
        ok = mean_c != 0
        rel = np.where(ok, (mean_t - mean_c) / np.abs(mean_c), np.nan)
        var_rel = a / mean_c ** 2 + b * mean_t ** 2 / mean_c ** 4
        se = np.where(ok, np.sqrt(var_rel), np.nan)
        stat = rel / se
        p = 2.0 * sps.t.sf(np.abs(stat), df)
        q = sps.t.ppf(1.0 - alpha / 2.0, df)
        imprecise = np.sqrt(b) / np.abs(mean_c) > REL_IMPRECISE
    return {"rel": rel, "rel_se": se, "rel_df": df, "rel_p_value": p, "rel_low": rel - q * se,
            "rel_high": rel + q * se, "rel_imprecise": imprecise}


#: relative standard error of the control mean above which a relative lift is flagged imprecise
REL_IMPRECISE = 0.10


def proportions_from_counts(successes_c, n_c, successes_t, n_t, alpha: float = 0.05) -> dict[str, np.ndarray]:
    """Two rates from counts: the pooled two-proportion z test (= chi-square) and intervals (vectorised).

    * ``p_value``: the pooled z test, ``z = (p_t - p_c) / sqrt(p̄(1-p̄)(1/n_c + 1/n_t))`` with
      ``p̄`` the rate of both arms together; ``z²`` is the Pearson chi-square of the 2x2 table
      without continuity correction, so the p-values are identical (statsmodels
      ``proportions_ztest`` and ``proportions_chisquare``; spotify-confidence ``ChiSquared`` /
      ``ZTest``). Pooling is right under the null of equal rates, which is what is tested.
    * ``abs_low/abs_high``: the unpooled Wald interval of the difference (statsmodels
      ``confint_proportions_2indep(method="wald")``, as spotify-confidence reports it).
    * relative lift: :func:`relative_delta` with the per-unit variance ``p(1-p)`` and
      Welch degrees of freedom (GrowthBook's ``ProportionStatistic`` in ``TwoSidedTTest``).
    """
    s_c, n_c, s_t, n_t = (np.asarray(a, dtype=float) for a in (successes_c, n_c, successes_t, n_t))
    with np.errstate(divide="ignore", invalid="ignore"):
        pc, pt = s_c / n_c, s_t / n_t
        vc, vt = pc * (1 - pc), pt * (1 - pt)
        pbar = (s_c + s_t) / (n_c + n_t)
        se0 = np.sqrt(pbar * (1 - pbar) * (1 / n_c + 1 / n_t))
        diff = pt - pc
        z = diff / se0
        p = 2.0 * sps.norm.sf(np.abs(z))
        se = np.sqrt(vc / n_c + vt / n_t)
        q = sps.norm.ppf(1.0 - alpha / 2.0)
        # log-scale interval of the ratio, as in welch_from_stats (normal quantile)
        ok = (pc > 0) & (pt > 0)
        se_log = np.sqrt(vt / n_t / pt ** 2 + vc / n_c / pc ** 2)
        ratio = pt / pc
        rel_log_low = np.where(ok, ratio * np.exp(-q * se_log) - 1.0, np.nan)
        rel_log_high = np.where(ok, ratio * np.exp(q * se_log) - 1.0, np.nan)
    out = {"diff": diff, "se": se, "se_pooled": se0, "df": np.full(np.shape(diff), np.inf), "stat": z,
           "chi2": z ** 2, "p_value": p, "abs_low": diff - q * se, "abs_high": diff + q * se,
           "rel_log_low": rel_log_low, "rel_log_high": rel_log_high, "mean_c": pc, "mean_t": pt,
           "var_c": vc, "var_t": vt}
    out.update(relative_delta(pc, vc, n_c, pt, vt, n_t, alpha))
    return out


def compare_proportions(control, treatment, alpha: float = 0.05) -> dict:
    """A conversion rate per unit (0/1 values): :func:`proportions_from_counts` on the counts.

    Returns the same keys as :func:`compare_means` (``var_*`` are ``p(1-p)``), plus
    ``chi2`` and ``se_pooled``.
    """
    c, t = _as_1d(control, "control"), _as_1d(treatment, "treatment")
    bad = int((~np.isin(c, (0.0, 1.0))).sum() + (~np.isin(t, (0.0, 1.0))).sum())
    if bad:
        raise ExperimentInputError(f"a rate needs 0/1 values per unit; {bad:,} units have other values")
    _check_variance(c.var(), t.var(), "the rate", c.mean(), t.mean())
    out = _scalars(proportions_from_counts(c.sum(), c.size, t.sum(), t.size, alpha))
    out.update(n_c=int(c.size), n_t=int(t.size))
    return out


def _as_1d(x, what: str) -> np.ndarray:
    a = np.asarray(x, dtype=float).ravel()
    if a.size == 0:
        raise ExperimentInputError(f"{what}: no values (the metric is empty)")
    if np.isnan(a).any():
        raise ExperimentInputError(f"{what}: {int(np.isnan(a).sum()):,} missing values; fill or drop them first")
    if a.size < 2:
        raise ExperimentInputError(f"{what}: only one unit; a variance needs at least two")
    return a


def _scalars(d: dict) -> dict:
    return {k: (float(v) if np.ndim(v) == 0 else v) for k, v in d.items()}


def _check_variance(var_c: float, var_t: float, what: str, value_c: float, value_t: float):
    if var_c == 0 and var_t == 0:
        raise ExperimentInputError(
            f"{what} has zero variance: every unit has the same value in each variant "
            f"(control {value_c:g}, treatment {value_t:g}); there is nothing to test "
            "(check the metric definition, the window and the attribution)")


def compare_means(control, treatment, alpha: float = 0.05) -> dict:
    """Welch test of the difference in means of per-unit values (conversion 0/1, revenue, ...).

    For a conversion rate (0/1 per unit) use :func:`compare_proportions` (the pooled z
    test); Welch on 0/1 values agrees with it only to O(1/n).
    Returns :func:`welch_from_stats` as floats plus ``n_c, n_t, mean_c, mean_t, var_c, var_t``.
    """
    c, t = _as_1d(control, "control"), _as_1d(treatment, "treatment")
    vc, vt = c.var(ddof=1), t.var(ddof=1)
    _check_variance(vc, vt, "the metric", c.mean(), t.mean())
    out = _scalars(welch_from_stats(c.mean(), vc, c.size, t.mean(), vt, t.size, alpha))
    out.update(n_c=int(c.size), n_t=int(t.size), mean_c=float(c.mean()), mean_t=float(t.mean()),
               var_c=float(vc), var_t=float(vt))
    return out


def _ratio_stats(num: np.ndarray, den: np.ndarray, what: str) -> tuple[float, float]:
    """Ratio of means and the delta-method variance of its per-unit linearisation.

    ``R = Σnum / Σden``; ``Var(R̂) ≈ Var(num - R·den) / (n · mean(den)²)`` (Deng et al. 2018,
    KDD, eq. 3 and sec. 3.2: the randomisation unit is the unit, not the order/session,
    so orders of one customer are not treated as independent). Returned as the
    per-unit variance ``Var(num - R·den)/mean(den)²`` (ddof=1), to be divided by n.
    """
    if den.sum() <= 0:
        raise ExperimentInputError(f"{what}: the denominator is zero in every unit (the metric is empty)")
    r = num.sum() / den.sum()
    lin = num - r * den
    return float(r), float(lin.var(ddof=1) / den.mean() ** 2)


def compare_ratios(num_c, den_c, num_t, den_t, alpha: float = 0.05) -> dict:
    """Welch-type test of a ratio metric (AOV = revenue/orders, return rate = returns/orders, ...).

    Each group's ratio of sums gets its delta-method variance (see :func:`_ratio_stats`),
    then the difference / relative lift are tested as in :func:`welch_from_stats`.
    Equal to ``tea_tasting.RatioOfMeans`` and, up to ``n/(n-1)``, to an OLS of the
    order-level values on the variant with standard errors clustered by unit.
    """
    nc, dc = _as_1d(num_c, "control numerator"), _as_1d(den_c, "control denominator")
    nt, dt = _as_1d(num_t, "treatment numerator"), _as_1d(den_t, "treatment denominator")
    if nc.size != dc.size or nt.size != dt.size:
        raise ExperimentInputError("numerator and denominator must have one value per unit")
    rc, vc = _ratio_stats(nc, dc, "control")
    rt, vt = _ratio_stats(nt, dt, "treatment")
    _check_variance(vc, vt, "the ratio metric", rc, rt)
    out = _scalars(welch_from_stats(rc, vc, nc.size, rt, vt, nt.size, alpha))
    out.update(n_c=int(nc.size), n_t=int(nt.size), mean_c=rc, mean_t=rt, var_c=vc, var_t=vt,
               den_c=float(dc.sum()), den_t=float(dt.sum()))
    return out


def compare_cuped(y_c, x_c, y_t, x_t, alpha: float = 0.05) -> dict:
    """CUPED: the Welch test on ``y - θ(x - x̄)`` with a pre-period covariate ``x``.

    ``θ = Cov(y, x) / Var(x)`` over all units of both groups, ``x̄`` the pooled mean
    (Deng, Xu, Kohavi & Walker 2013, "Improving the Sensitivity of Online Controlled
    Experiments by Utilizing Pre-Experiment Data", WSDM, sec. 3.1-3.3). The covariate
    is measured before assignment, so the adjustment keeps the estimate unbiased and
    removes the share ρ² of the variance it explains. Same numbers as
    ``tea_tasting.Mean(value, covariate)``; close to the treatment coefficient of an
    OLS ``y ~ treatment + x``.

    Adds ``theta``, ``variance_reduction`` (1 - Var(adjusted diff) / Var(plain diff)),
    ``se_plain`` and the adjusted means ``mean_c``, ``mean_t``.
    """
    yc, xc = _as_1d(y_c, "control metric"), _as_1d(x_c, "control covariate")
    yt, xt = _as_1d(y_t, "treatment metric"), _as_1d(x_t, "treatment covariate")
    if yc.size != xc.size or yt.size != xt.size:
        raise ExperimentInputError("the covariate must have one value per unit")
    y, x = np.r_[yc, yt], np.r_[xc, xt]
    vx = x.var(ddof=1)
    theta = float(np.cov(y, x, ddof=1)[0, 1] / vx) if vx > 0 else 0.0
    xbar = x.mean()
    ac, at = yc - theta * (xc - xbar), yt - theta * (xt - xbar)
    vc, vt = ac.var(ddof=1), at.var(ddof=1)
    _check_variance(vc, vt, "the CUPED-adjusted metric", ac.mean(), at.mean())
    out = _scalars(welch_from_stats(ac.mean(), vc, ac.size, at.mean(), vt, at.size, alpha))
    se_plain = float(np.sqrt(yc.var(ddof=1) / yc.size + yt.var(ddof=1) / yt.size))
    out.update(n_c=int(yc.size), n_t=int(yt.size), mean_c=float(ac.mean()), mean_t=float(at.mean()),
               var_c=float(vc), var_t=float(vt), theta=theta, se_plain=se_plain,
               variance_reduction=float(1.0 - out["se"] ** 2 / se_plain ** 2) if se_plain > 0 else 0.0)
    return out


def group_summary(df: pd.DataFrame, value: str, by: str | Sequence[str]) -> pd.DataFrame:
    """``n``, ``mean``, ``var`` (ddof=1) of one column per group, set-based."""
    g = df.groupby(by, observed=True, sort=True)[value]
    return pd.DataFrame({"n": g.size(), "mean": g.mean(), "var": g.var(ddof=1)})


# --------------------------------------------------------------------------- SRM
def srm_check(counts: Mapping[str, int], planned: Mapping[str, float] | None = None,
              threshold: float = SRM_THRESHOLD) -> dict:
    """Sample-ratio-mismatch test: chi-square goodness of fit of the units per variant.

    ``planned`` maps variant -> planned share (normalised to sum 1 over the variants
    present; None = equal split). Returns ``chi2``, ``df``, ``p_value``, ``alert``
    (p < ``threshold``), ``table`` (variant, units, planned share, expected, observed
    share) and a plain ``message``. Uses ``scipy.stats.chisquare``; the threshold
    follows Kohavi, Tang & Xu (2020), ch. 21 (a mismatch invalidates the comparison:
    something removed or added units differently per variant).
    """
    variants = list(counts)
    if len(variants) < 2:
        raise ExperimentInputError(f"a sample-ratio check needs at least two variants, got {variants}")
    obs = np.array([counts[v] for v in variants], dtype=float)
    if planned is None:
        share = np.full(len(variants), 1.0 / len(variants))
    else:
        missing = [v for v in variants if v not in planned or not np.isfinite(planned[v])]
        if missing:
            raise ExperimentInputError(f"no planned share for variant(s) {missing}")
        share = np.array([planned[v] for v in variants], dtype=float)
        if (share <= 0).any():
            raise ExperimentInputError(f"planned shares must be positive, got {dict(zip(variants, share))}")
        share = share / share.sum()
    n = obs.sum()
    expected = share * n
    chi2, p = sps.chisquare(obs, expected)
    table = pd.DataFrame({"variant": variants, "units": obs.astype(int), "planned_share": share,
                          "expected_units": expected, "observed_share": obs / n})
    alert = bool(p < threshold)
    worst = table.iloc[int(np.argmax(np.abs(obs - expected)))]
    if alert:
        message = (f"Sample ratio mismatch ({_pvalue(p)}, alarm below {threshold:g}): {worst['variant']} has "
                   f"{int(worst['units']):,} units where the plan expects {worst['expected_units']:,.0f} "
                   f"({worst['observed_share']:.1%} instead of {worst['planned_share']:.1%}). Units were lost "
                   "or added unevenly (logging, bots, redirects, late assignment), so the variants are no "
                   "longer comparable: do not trust the lifts until the cause is found.")
    else:
        message = (f"No sample ratio mismatch (chi-square {_pvalue(p)}): the split matches the plan "
                   f"({', '.join(f'{v} {s:.1%}' for v, s in zip(variants, obs / n))}).")
    return {"chi2": float(chi2), "df": len(variants) - 1, "p_value": float(p), "alert": alert,
            "threshold": threshold, "table": table, "message": message}


# --------------------------------------------------------------------------- Bayesian
def _bayes_from_draws(draws: np.ndarray, control_index: int, higher_is_better: bool) -> pd.DataFrame:
    """P(beat control), P(best) and expected loss from posterior draws (draws x variants).

    Expected loss of choosing variant v = E[max_j θ_j - θ_v] (the value given up if v
    is not the best), and against control E[max(θ_c - θ_v, 0)] (Stucchio 2015,
    "Bayesian A/B Testing at VWO", sec. 4). For lower-is-better metrics the sign is flipped.
    """
    s = draws if higher_is_better else -draws
    best = s.argmax(axis=1)
    k = s.shape[1]
    ctrl = s[:, [control_index]]
    return pd.DataFrame({
        "p_beat_control": (s > ctrl).mean(axis=0),
        "p_best": np.bincount(best, minlength=k) / s.shape[0],
        "expected_loss": (s.max(axis=1, keepdims=True) - s).mean(axis=0),
        "expected_loss_vs_control": np.maximum(ctrl - s, 0.0).mean(axis=0),
    })


def bayes_binary(successes: Sequence[int], trials: Sequence[int], control_index: int = 0,
                 draws: int = 200_000, seed: int = 0, prior: tuple[float, float] = (1.0, 1.0),
                 higher_is_better: bool = True) -> pd.DataFrame:
    """Beta-binomial posteriors per variant, Monte Carlo (seeded) probabilities and losses.

    Posterior Beta(a + successes, b + failures) (uniform prior by default). For two
    variants P(B > A) has a closed form (Miller 2015, "Formulas for Bayesian A/B
    Testing"); the tests check these draws against it.
    """
    s, n = np.asarray(successes, dtype=float), np.asarray(trials, dtype=float)
    if (s < 0).any() or (s > n).any():
        raise ExperimentInputError("successes must lie between 0 and the number of trials")
    rng = np.random.default_rng(seed)
    d = rng.beta(prior[0] + s, prior[1] + n - s, size=(draws, s.size))
    out = _bayes_from_draws(d, control_index, higher_is_better)
    out.insert(0, "posterior_mean", (prior[0] + s) / (prior[0] + prior[1] + n))
    return out


def bayes_normal(means: Sequence[float], ses: Sequence[float], control_index: int = 0,
                 draws: int = 200_000, seed: int = 0, higher_is_better: bool = True) -> pd.DataFrame:
    """Normal (large-sample, flat-prior) posteriors N(mean, se²) per variant, as :func:`bayes_binary`.

    Used for revenue, ratio and CUPED-adjusted metrics, where the sampling
    distribution of the mean is close to normal at A/B-test sizes (Gelman et al.
    2013, *Bayesian Data Analysis*, 3rd ed., sec. 4.1).
    """
    m, se = np.asarray(means, dtype=float), np.asarray(ses, dtype=float)
    rng = np.random.default_rng(seed)
    d = m + se * rng.standard_normal((draws, m.size))
    out = _bayes_from_draws(d, control_index, higher_is_better)
    out.insert(0, "posterior_mean", m)
    return out


def bayes_relative(rel, rel_se, alpha: float = 0.05, higher_is_better: bool = True) -> dict[str, np.ndarray]:
    """Bayesian relative lift, closed form: GrowthBook's Bayesian engine with its default prior.

    ``gbstats.bayesian.tests.EffectBayesianABTest`` (improper flat prior on the relative
    effect, the default ``GaussianPrior(proper=False)``): the posterior of the relative lift
    is ``N(rel, rel_se²)`` with ``rel, rel_se`` from :func:`relative_delta`. Returns
    ``expected`` (the posterior mean), ``ci_low/ci_high`` (the central ``1-alpha`` credible
    interval), ``chance_to_win`` (P(lift > 0), or P(lift < 0) for a lower-is-better metric),
    ``risk_control`` and ``risk_treatment``: the expected relative loss of choosing control
    / the treatment (``E[max(lift, 0)]`` and ``E[max(-lift, 0)]``, swapped for lower-is-better,
    GrowthBook's ``get_risk``), by the normal partial expectations
    ``E[max(X,0)] = μΦ(μ/σ) + σφ(μ/σ)``.
    """
    mu, sd = np.asarray(rel, dtype=float), np.asarray(rel_se, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        zq = sps.norm.ppf(1 - alpha / 2)
        k = mu / sd
        up = mu * sps.norm.cdf(k) + sd * sps.norm.pdf(k)        # E[max(X, 0)]
        down = sd * sps.norm.pdf(k) - mu * sps.norm.cdf(-k)     # E[max(-X, 0)]
        win = sps.norm.sf(0.0, mu, sd)
    if not higher_is_better:
        win, up, down = 1 - win, down, up
    return {"expected": mu, "ci_low": mu - zq * sd, "ci_high": mu + zq * sd, "chance_to_win": win,
            "risk_control": up, "risk_treatment": down}


# --------------------------------------------------------------------------- corrections
def adjust_pvalues(p: Sequence[float], method: str = "holm") -> np.ndarray:
    """Holm (``"holm"``) or Benjamini-Hochberg (``"fdr_bh"``) adjusted p-values.

    Benjamini-Hochberg is ``scipy.stats.false_discovery_control``. Holm (1979), *Scand.
    J. Statist.* 6:65-70, is written out (sorted ``p_(i)·(m-i+1)``, running maximum,
    capped at 1) because ``statsmodels.stats.multitest.multipletests(method="holm")``
    calls ``gc.collect()`` on every call, which costs ~0.15 s with the sample loaded;
    the tests check it against statsmodels. NaN p-values are left out of the family
    and stay NaN.
    """
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if not ok.any():
        return out
    q = p[ok]
    if method == "holm":
        order = np.argsort(q, kind="stable")
        m = q.size
        adj = np.minimum(1.0, np.maximum.accumulate(q[order] * (m - np.arange(m))))
        res = np.empty(m)
        res[order] = adj
    elif method == "fdr_bh":
        res = sps.false_discovery_control(q, method="bh")
    else:
        raise ExperimentInputError(f"unknown correction '{method}'; use 'holm' or 'fdr_bh'")
    out[ok] = res
    return out
