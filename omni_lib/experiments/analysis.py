"""One experiment end to end, the decision, breakdowns, and the overview of all experiments.

``analyze()`` runs, in the order a careful analyst would:

1. the sample-ratio-mismatch check (and the units excluded on the way);
2. every metric for every treatment against control. The difference is tested with the
   pooled two-proportion z test (= chi-square) for rates, Welch's t test for means and
   the delta method for ratios (AOV, return rate, orders per session): ``p_diff``. The
   relative lift gets GrowthBook's delta-method interval and p-value
   (:func:`stats.relative_delta`): ``rel_low``/``rel_high``/``p_value``. **The decision
   uses the relative lift's delta-method test** (``p_value``, Holm-adjusted), so the
   interval shown, the p-value and the Bayesian posterior tell one story; ``p_diff``
   is shown beside it (it is the same hypothesis, no difference, and agrees closely at
   A/B-test sizes). CUPED on the pre-period covariate where one exists: it is *computed*
   always but *decides* only when it removes at least ``CUPED_MIN_VARIANCE_REDUCTION``
   (5%) of the variance of the difference; a smaller gain is worth less than 5% more
   units and not worth a fitted θ in the explanation;
3. Holm (the decision family: the primary metric over the treatment variants) and
   Benjamini-Hochberg adjusted p-values, per family (primary, secondary, guardrails);
4. Bayesian: GrowthBook's engine on the relative lift (expected lift, credible interval,
   chance to beat control, expected loss, :func:`stats.bayes_relative`), and the joint
   posteriors' probability to be best (beta-binomial for rates, normal otherwise);
5. daily monitoring: the fixed-horizon p-value and the always-valid confidence
   sequence per assignment day;
6. planning numbers: power at this size, the minimum detectable effect, units and
   days needed for a range of lifts at the current traffic;
7. the decision (``ship`` / ``do not ship`` / ``keep running``) with reasons in plain words.

The decision rules (:func:`decide`), in order: a sample-ratio mismatch stops
everything (do not ship; the comparison is broken). A treatment ships when it beats
control on the primary metric after the Holm correction (the relative lift's
delta-method test) *and* no guardrail is
significantly worse (guardrails are not corrected, and are judged by the test of the
difference, ``p_diff``: missing a harm costs more than a false alarm). A significant guardrail harm, or a significant loss on the primary
metric (a harm, either way, is judged by the test of the difference, Holm-adjusted for
the primary metric), means do not ship. While the test is still running (some units' windows are
still open at the data end) the primary metric is judged by the always-valid p-value
and confidence sequence instead, so a team may re-read the report every day.
Otherwise the result is inconclusive: keep running when
the lift worth having (``mde``) is still inside the interval and reaching the
needed size takes at most ``max_extra_days`` more days at the current traffic; do not
ship when the interval already rules that lift out, or when it would take longer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from . import planning, sequential, stats
from ..report import pvalue as _pvalue  # p = 0.0004 / p < 0.001 in report text (issue 14)
from .errors import ExperimentInputError
from .units import DEFAULT_WINDOW_DAYS, METRICS, ExperimentData, Metric, experiment_ids, prepare

__all__ = ["ExperimentResult", "Decision", "analyze", "decide", "compare", "breakdown", "overview",
           "DEFAULT_SECONDARY", "DEFAULT_GUARDRAILS", "CUPED_MIN_VARIANCE_REDUCTION"]

DEFAULT_SECONDARY = ("revenue_per_user", "orders_per_user", "aov", "orders_per_session")
DEFAULT_GUARDRAILS = ("return_rate",)

#: CUPED decides only when it removes at least this share of the variance of the difference
CUPED_MIN_VARIANCE_REDUCTION = 0.05

METHOD_NAMES = {"z-test": "pooled two-proportion z test", "welch": "Welch t test", "delta": "delta-method test",
                "cuped": "CUPED-adjusted Welch t test"}


@dataclass
class Decision:
    """``verdict`` is ``ship``, ``do not ship`` or ``keep running``; ``variant`` the one to ship (if any)."""

    verdict: str
    variant: str | None
    headline: str
    reasons: list[str]

    def markdown(self) -> str:
        return f"**Decision: {self.verdict.upper()}**" + (f" (variant {self.variant})" if self.variant else "") + \
            "\n\n" + "\n".join(f"* {r}" for r in self.reasons)


@dataclass
class ExperimentResult:
    """Everything :func:`analyze` found for one experiment (frames are ready to show)."""

    data: ExperimentData
    srm: dict
    results: pd.DataFrame
    bayes: pd.DataFrame
    sequential: pd.DataFrame
    plan: dict
    decision: Decision
    primary: str
    alpha: float
    notes: list[str] = field(default_factory=list)

    @property
    def experiment_id(self) -> str:
        return self.data.experiment_id

    def decision_rows(self, role: str | None = None) -> pd.DataFrame:
        r = self.results.loc[self.results["decision_row"]]
        return r if role is None else r.loc[r["role"] == role]

    def cuped_summary(self) -> pd.DataFrame:
        """Per metric and variant with a pre-period covariate: standard errors plain and CUPED,
        the variance reduction and whether CUPED decides (empty when there is no covariate)."""
        r = self.results
        cu = r.loc[r["method"] == "cuped"]
        cols = ["metric", "variant", "covariate", "se_plain", "se_cuped", "variance_reduction", "used_for_decision"]
        if cu.empty:
            return pd.DataFrame(columns=cols)
        plain = r.loc[r["method"] != "cuped"].set_index(["metric", "variant"])["se"]
        out = cu[["metric", "variant", "covariate", "se", "variance_reduction", "decision_row"]].rename(
            columns={"se": "se_cuped", "decision_row": "used_for_decision"})
        out.insert(3, "se_plain", plain.reindex(pd.MultiIndex.from_frame(out[["metric", "variant"]])).to_numpy())
        return out[cols].reset_index(drop=True)

    def methods_note(self) -> str:
        """Which test was used for what, in plain words (for the report)."""
        p = self.decision_rows("primary")
        meth = p["method"].iloc[0] if len(p) else "welch"
        cu = self.cuped_summary()
        if cu.empty:
            cuped = ("No pre-period measurement was available, so no CUPED adjustment was made "
                     "(every figure is the plain comparison).")
        else:
            pc = cu.loc[cu["metric"] == self.primary]
            used = bool(pc["used_for_decision"].any())
            vr = pc["variance_reduction"].max() if len(pc) else float("nan")
            cuped = (f"CUPED (adjusting for the pre-period) removes {vr:.1%} of the variance of the primary metric; "
                     f"it decides only when it removes at least {CUPED_MIN_VARIANCE_REDUCTION:.0%}, so here "
                     + ("the CUPED-adjusted figures decide (and every figure in a sentence about it is adjusted)."
                        if used else "the plain figures decide."))
        return (f"How the numbers are tested: a rate (conversion) by the pooled two-proportion z test, the same "
                f"p-value as the chi-square test of the 2x2 table; a mean per unit (revenue, orders) by Welch's t "
                f"test; a ratio (order value, return rate) by the delta method. The **decision** uses the relative "
                f"lift and its delta-method interval and p-value (as GrowthBook's frequentist engine), Holm-corrected "
                f"over the versions; the Bayesian chance to beat control uses the same lift and standard error, so "
                f"the two views agree. A harm (a primary or guardrail metric getting worse) is judged by the test of "
                f"the difference, which is the quicker to raise it. Primary metric here: {self.primary}, "
                f"decided on the {METHOD_NAMES[meth]} figures. " + cuped)

    def key_figures(self) -> dict:
        """The numbers a scheduled run charts (for ``omni_lib.report.key_figures``)."""
        p = self.decision_rows("primary")
        best = p.loc[p["variant"] == self.decision.variant] if self.decision.variant else p
        best = best.iloc[_argbest(best)] if len(best) else None
        g = self.decision_rows("guardrail")
        bayes = self.bayes.loc[self.bayes["metric"] == self.primary]
        fig = {"experiment": self.experiment_id, "decision": self.decision.verdict,
               "variant_to_ship": self.decision.variant or "none", "units": int(len(self.data.units)),
               "srm_p_value": self.srm["p_value"], "srm_alert": self.srm["alert"]}
        if best is not None:
            fig.update({"primary_metric": self.primary, "compared_variant": best["variant"],
                        "control_rate": best["control_value"], "variant_rate": best["variant_value"],
                        "relative_lift": best["rel_lift"], "relative_lift_ci_low": best["rel_low"],
                        "relative_lift_ci_high": best["rel_high"], "p_value_holm": best["p_holm"],
                        "relative_lift_p_value": best["p_value"], "difference_p_value": best["p_diff"],
                        "method": best["method"], "cuped_variance_reduction": best["variance_reduction"]})
            pb = bayes.loc[bayes["variant"] == best["variant"]]
            if len(pb) and "chance_to_beat_control" in pb:
                b = pb.iloc[0]
                fig.update({"bayes_expected_relative_lift": float(b["expected_rel_lift"]),
                            "bayes_relative_lift_ci_low": float(b["rel_ci_low"]),
                            "bayes_relative_lift_ci_high": float(b["rel_ci_high"]),
                            "prob_beats_control": float(b["chance_to_beat_control"]),
                            "expected_relative_loss": float(b["risk_ship"])})
        fig["guardrails_breached"] = int(g["harmful"].sum()) if len(g) else 0
        return fig


def _argbest(rows: pd.DataFrame) -> int:
    """Position of the row with the largest relative lift (NaN lifts last)."""
    return int(np.argmax(np.nan_to_num(rows["rel_lift"].to_numpy(float), nan=-np.inf)))


# --------------------------------------------------------------------------- comparisons
def _metric(m: str | Metric) -> Metric:
    if isinstance(m, Metric):
        return m
    if m not in METRICS:
        raise ExperimentInputError(f"unknown metric '{m}'; known: {', '.join(METRICS)}")
    return METRICS[m]


def _values(units: pd.DataFrame, col: str, metric: str) -> pd.Series:
    if col not in units:
        raise ExperimentInputError(f"metric '{metric}': column '{col}' is not in the units table")
    v = units[col]
    if v.isna().all():
        raise ExperimentInputError(f"metric '{metric}' is empty: '{col}' has no values "
                                   "(e.g. no touchpoints with a session_id)")
    return v.astype(float)


def _capped(units: pd.DataFrame, m: Metric, cap_quantile: float | None) -> tuple[pd.DataFrame, float | None]:
    """Winsorise the metric's numerator at a quantile of all units (both arms: blind to assignment)."""
    if not cap_quantile or not m.cappable:
        return units, None
    if not 0.5 < cap_quantile < 1:
        raise ExperimentInputError(f"cap_quantile must lie in (0.5, 1), got {cap_quantile}")
    x = units[m.numerator].astype(float)
    if m.denominator is None:
        cap = float(x.quantile(cap_quantile))
    else:  # cap per-order value: the numerator may not exceed cap × denominator
        per = x[units[m.denominator] > 0] / units.loc[units[m.denominator] > 0, m.denominator]
        cap = float(per.quantile(cap_quantile))
        return units.assign(**{m.numerator: np.minimum(x, cap * units[m.denominator].astype(float))}), cap
    return units.assign(**{m.numerator: np.minimum(x, cap)}), cap


def compare(units: pd.DataFrame, metric: str | Metric, control: str, treatment: str, *, alpha: float = 0.05,
            cuped: bool = True, cap_quantile: float | None = None, variant_col: str = "variant") -> list[dict]:
    """The rows of the results table for one metric and one treatment (plain, plus CUPED when possible)."""
    m = _metric(metric)
    units, cap = _capped(units, m, cap_quantile)
    c = units.loc[units[variant_col] == control]
    t = units.loc[units[variant_col] == treatment]
    if c.empty or t.empty:
        raise ExperimentInputError(f"metric '{m.name}': variant '{control if c.empty else treatment}' has no units")
    base = {"metric": m.name, "label": m.label, "variant": treatment, "higher_is_better": m.higher_is_better,
            "unit": m.unit, "kind": m.kind, "cap": cap}
    rows = []
    if m.denominator is None:
        yc, yt = _values(c, m.numerator, m.name), _values(t, m.numerator, m.name)
        binary = m.kind == "proportion" and bool(np.isin(np.r_[yc.to_numpy(), yt.to_numpy()], (0.0, 1.0)).all())
        if binary:
            r = stats.compare_proportions(yc, yt, alpha)
            rows.append({**base, "method": "z-test", **_row(r, yc.mean(), yt.mean())})
        else:
            r = stats.compare_means(yc, yt, alpha)
            rows.append({**base, "method": "welch", **_row(r, yc.mean(), yt.mean())})
        cov = m.covariate
        if cuped and cov and cov in units and units[cov].notna().all() and units[cov].astype(float).var() > 0:
            rc = stats.compare_cuped(yc, c[cov].astype(float), yt, t[cov].astype(float), alpha)
            # every figure of a CUPED row is adjusted (means too), so no sentence mixes raw and adjusted
            rows.append({**base, "method": "cuped", **_row(rc, rc["mean_c"], rc["mean_t"]),
                         "raw_control_value": float(yc.mean()), "raw_variant_value": float(yt.mean()),
                         "variance_reduction": rc["variance_reduction"], "theta": rc["theta"],
                         "covariate": cov})
    else:
        nc, dc = _values(c, m.numerator, m.name), _values(c, m.denominator, m.name)
        nt, dt = _values(t, m.numerator, m.name), _values(t, m.denominator, m.name)
        for side, d in (("control", dc), ("treatment", dt)):
            if d.sum() <= 0:
                raise ExperimentInputError(
                    f"metric '{m.name}' is empty for the {side} ('{control if side == 'control' else treatment}'): "
                    f"no unit has any {m.denominator} in the window")
        r = stats.compare_ratios(nc, dc, nt, dt, alpha)
        rows.append({**base, "method": "delta", **_row(r, r["mean_c"], r["mean_t"])})
    return rows


def _row(r: dict, control_value: float, variant_value: float) -> dict:
    """One results row. ``p_value`` is the relative lift's delta-method p (it decides), ``p_diff``
    the test of the difference; where the relative lift is undefined (control mean 0) the
    difference's p is used."""
    p_rel = r["rel_p_value"]
    return {"n_control": r["n_c"], "n_variant": r["n_t"], "control_value": float(control_value),
            "variant_value": float(variant_value), "raw_control_value": float(control_value),
            "raw_variant_value": float(variant_value), "abs_lift": r["diff"], "abs_low": r["abs_low"],
            "abs_high": r["abs_high"], "rel_lift": r["rel"], "rel_low": r["rel_low"], "rel_high": r["rel_high"],
            "rel_se": r["rel_se"], "rel_log_low": r["rel_log_low"], "rel_log_high": r["rel_log_high"],
            "rel_imprecise": bool(r["rel_imprecise"]),
            "se": r["se"], "p_value": p_rel if np.isfinite(p_rel) else r["p_value"], "p_diff": r["p_value"],
            "mean_c": r["mean_c"], "mean_t": r["mean_t"],
            "var_c": r["var_c"], "var_t": r["var_t"], "variance_reduction": np.nan, "theta": np.nan,
            "covariate": None}


# --------------------------------------------------------------------------- analysis
def analyze(tables: Mapping[str, pd.DataFrame | None], experiment_id: str, *, config=None,
            window_days: float = DEFAULT_WINDOW_DAYS, attribution: str = "auto", control: str | None = None,
            primary: str = "conversion", secondary: Sequence[str] = DEFAULT_SECONDARY,
            guardrails: Sequence[str] = DEFAULT_GUARDRAILS, alpha: float = 0.05, mde: float = 0.10,
            power: float = 0.8, max_extra_days: float = 60, cap_quantile: float | None = None,
            cuped: bool = True, draws: int = 100_000, seed: int = 0, data_end=None,
            data: ExperimentData | None = None) -> ExperimentResult:
    """Analyse one experiment; see the module docstring for the steps and the decision rules.

    ``tables`` are the contract tables after ``privacy.apply_consent``; ``mde`` the
    smallest relative lift of the primary metric worth having; ``cap_quantile``
    (e.g. 0.99) winsorises revenue-like metrics; ``data_end`` overrides the config's
    (an export taken mid-test); ``data`` reuses a prepared
    :class:`ExperimentData`. Raises :class:`ExperimentInputError` for bad input
    (unknown id, one variant, no control, empty or constant primary metric, ...).
    """
    if not 0 < alpha < 0.5:
        raise ExperimentInputError(f"alpha must lie in (0, 0.5), got {alpha}")
    if mde <= 0:
        raise ExperimentInputError(f"mde (the smallest relative lift worth having) must be positive, got {mde}")
    d = data if data is not None else prepare(tables, experiment_id, config=config, window_days=window_days,
                                              attribution=attribution, control=control, data_end=data_end)
    notes = list(d.notes)
    srm = stats.srm_check(d.counts(), d.planned_shares)
    pm = _metric(primary)
    guards = [_metric(g) for g in guardrails if _metric(g).name != pm.name]
    roles = [("primary", pm)] + [("secondary", _metric(s)) for s in secondary
                                 if _metric(s).name not in {pm.name, *(g.name for g in guards)}] + \
        [("guardrail", g) for g in guards]
    rows = []
    for role, m in roles:
        try:
            mrows = [r for v in d.treatments for r in compare(d.units, m, d.control, v, alpha=alpha, cuped=cuped,
                                                              cap_quantile=cap_quantile)]
        except ExperimentInputError as e:
            if role == "primary":
                raise ExperimentInputError(f"experiment '{d.experiment_id}', primary metric: {e}") from None
            notes.append(f"{role} metric '{m.name}' skipped: {e}")
            continue
        for r in mrows:
            r["role"] = role
        rows += mrows
    res = pd.DataFrame(rows)
    # decision row per metric and variant: CUPED where it removes a material share of the variance
    use_cuped = (res["method"] == "cuped") & (res["variance_reduction"] >= CUPED_MIN_VARIANCE_REDUCTION)
    has_cuped = use_cuped.groupby([res["metric"], res["variant"]]).transform("any")
    res["decision_row"] = use_cuped | (~has_cuped & (res["method"] != "cuped"))
    res["p_holm"] = np.nan
    res["p_bh"] = np.nan
    res["p_holm_diff"] = np.nan
    for role in ("primary", "secondary", "guardrail"):
        sel = res["decision_row"] & (res["role"] == role)
        if sel.any():
            res.loc[sel, "p_holm"] = stats.adjust_pvalues(res.loc[sel, "p_value"], "holm")
            res.loc[sel, "p_bh"] = stats.adjust_pvalues(res.loc[sel, "p_value"], "fdr_bh")
            res.loc[sel, "p_holm_diff"] = stats.adjust_pvalues(res.loc[sel, "p_diff"], "holm")
    good = np.where(res["higher_is_better"], res["abs_lift"] > 0, res["abs_lift"] < 0)
    # A gain counts when the relative lift's delta-method test says so (p_value; Holm for the
    # primary metric); a harm when the test of the difference does (p_diff): the relative
    # lift's Wald test grows more cautious as an increase grows (its variance has μ_t²), which
    # is the right bias for shipping and the wrong one for catching harm.
    primary = res["role"] == "primary"
    p_gain = np.where(primary, res["p_holm"], res["p_value"])
    p_harm = np.where(primary, res["p_holm_diff"], res["p_diff"])
    res["significant"] = np.where(good, p_gain < alpha, p_harm < alpha)
    res["harmful"] = (res["role"] == "guardrail") & res["significant"] & ~good & res["decision_row"]
    res["direction"] = np.where(~res["significant"], "no clear change", np.where(good, "better", "worse"))
    lead = ["role", "metric", "label", "variant", "method", "n_control", "n_variant", "control_value",
            "variant_value", "abs_lift", "abs_low", "abs_high", "rel_lift", "rel_low", "rel_high", "p_value",
            "p_holm", "p_bh", "p_diff", "significant", "direction", "harmful", "variance_reduction",
            "decision_row"]
    res = res[lead + [c for c in res.columns if c not in lead]]

    bayes = _bayes(d, res, roles, draws, seed, cap_quantile)
    seq = _monitor(d, pm, alpha)
    plan = _plan(d, res, pm, alpha, power, mde)
    dec = decide(d, srm, res, bayes, plan, alpha=alpha, mde=mde, max_extra_days=max_extra_days, sequential=seq)
    return ExperimentResult(data=d, srm=srm, results=res, bayes=bayes, sequential=seq, plan=plan, decision=dec,
                            primary=pm.name, alpha=alpha, notes=notes)


def _cuped_arms(units: pd.DataFrame, m: Metric, variants, cap_quantile) -> tuple[list, list]:
    """Per-variant CUPED-adjusted means and standard errors with one θ for all arms.

    The pairwise comparisons each fit θ on control + that treatment; a joint posterior over
    three or more arms needs one adjustment for every arm, so θ is refitted on all units
    (for two arms it is the same θ).
    """
    units, _ = _capped(units, m, cap_quantile)
    y, x = units[m.numerator].astype(float), units[m.covariate].astype(float)
    theta = float(np.cov(y, x, ddof=1)[0, 1] / x.var(ddof=1))
    g = (y - theta * (x - x.mean())).groupby(units["variant"]).agg(["mean", "var", "size"]).reindex(variants)
    return g["mean"].tolist(), np.sqrt(g["var"] / g["size"]).tolist()


def _bayes(d: ExperimentData, res: pd.DataFrame, roles, draws: int, seed: int,
           cap_quantile: float | None = None) -> pd.DataFrame:
    parts = []
    for role, m in roles:
        if role == "secondary":
            continue
        rows = res.loc[(res["metric"] == m.name) & (res["role"] == role) & res["decision_row"]]
        if rows.empty:
            continue
        if m.kind == "proportion":
            g = d.units.groupby("variant")[m.numerator].agg(["sum", "size"]).reindex(d.variants)
            b = stats.bayes_binary(g["sum"].to_numpy(), g["size"].to_numpy(), 0, draws, seed,
                                   higher_is_better=m.higher_is_better)
            b["model"] = "beta-binomial"
        elif (rows["method"] == "cuped").all():
            means, ses = _cuped_arms(d.units, m, d.variants, cap_quantile)
        else:
            c = rows.iloc[0]
            means = [c["mean_c"]] + rows["mean_t"].tolist()
            ses = [math.sqrt(c["var_c"] / c["n_control"])] + \
                  np.sqrt(rows["var_t"] / rows["n_variant"]).tolist()
        if m.kind != "proportion":
            b = stats.bayes_normal(means, ses, 0, draws, seed, higher_is_better=m.higher_is_better)
            b["model"] = "normal approximation" + (" (CUPED)" if (rows["method"] == "cuped").any() else "")
        b.insert(0, "variant", d.variants)
        b.insert(0, "metric", m.name)
        b.insert(0, "role", role)
        # GrowthBook's Bayesian engine on the relative lift (flat prior, closed form)
        rr = rows.set_index("variant").reindex(d.variants)
        g = stats.bayes_relative(rr["rel_lift"].to_numpy(float), rr["rel_se"].to_numpy(float),
                                 higher_is_better=m.higher_is_better)
        b["expected_rel_lift"], b["rel_ci_low"], b["rel_ci_high"] = g["expected"], g["ci_low"], g["ci_high"]
        b["chance_to_beat_control"] = g["chance_to_win"]
        b["risk_ship"], b["risk_keep_control"] = g["risk_treatment"], g["risk_control"]
        parts.append(b)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _monitor(d: ExperimentData, m: Metric, alpha: float) -> pd.DataFrame:
    """Daily looks for each treatment (Bonferroni over the treatments)."""
    a = alpha / len(d.treatments)
    parts = []
    for v in d.treatments:
        try:
            s = sequential.cumulative_looks(d.units, m.numerator, v, d.control, look="day",
                                            denominator=m.denominator, alpha=a)
        except (ValueError, ZeroDivisionError):  # pragma: no cover - degenerate data
            continue
        s.insert(0, "variant", v)
        parts.append(s)
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    out.attrs["alpha_per_comparison"] = a
    return out


def _plan(d: ExperimentData, res: pd.DataFrame, m: Metric, alpha: float, power: float, mde: float) -> dict:
    c = d.units.loc[d.units["variant"] == d.control]
    if m.denominator is None:
        baseline = float(c[m.numerator].mean())
        variance = None if m.kind == "proportion" else float(c[m.numerator].var(ddof=1))
    else:
        r = res.loc[(res["metric"] == m.name) & res["decision_row"]].iloc[0]
        baseline, variance = float(r["mean_c"]), float(r["var_c"])
    k = len(d.variants)
    counts = d.counts()
    n_c = counts[d.control]
    n_t = float(np.mean([counts[v] for v in d.treatments]))
    ratio = n_t / n_c
    traffic = d.traffic_per_day
    out = {"baseline": baseline, "variance": variance, "traffic_per_day": traffic, "one_shot": d.enrolment_days < 1,
           "mde": mde, "alpha": alpha, "power": power, "variants": k, "ratio": ratio,
           "n_control": n_c, "n_per_treatment": n_t, "n_total": int(len(d.units))}
    if variance is None and not 0 < baseline < 1:
        out.update(power_now=np.nan, mde_now=np.nan, needed=None, table=pd.DataFrame())
        return out
    try:
        out["power_now"] = planning.power_at(n_c, baseline, mde, variance, alpha, ratio, k)
        out["mde_now"] = planning.minimum_detectable_effect(n_c, baseline, variance, alpha, power, ratio, k)
        out["needed"] = planning.sample_size(baseline, mde, variance, alpha, power, ratio, k)
    except ExperimentInputError as e:
        out.update(power_now=np.nan, mde_now=np.nan, needed=None, note=str(e))
    grid = sorted(set((0.02, 0.05, 0.10, 0.15, 0.20, 0.30, mde)))
    out["table"] = planning.plan_table(baseline, variance, traffic, grid, alpha, power, ratio, k)
    return out


# --------------------------------------------------------------------------- decision
def _fmt(value: float, unit: str) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    if unit == "share":
        return f"{value:.1%}"
    if unit == "currency":
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _lift(r: pd.Series) -> str:
    """'+4.1 pp, +19.3% (95% CI +9.6% to +29.7%)' or, without a relative interval, the absolute one."""
    if np.isfinite(r["rel_low"]):
        pp = f"{100 * r['abs_lift']:+.1f} pp, " if r["unit"] == "share" else ""
        return f"{pp}{r['rel_lift']:+.1%} (95% CI {r['rel_low']:+.1%} to {r['rel_high']:+.1%})"
    return f"{_fmt(r['abs_lift'], r['unit'])} (95% CI {_fmt(r['abs_low'], r['unit'])} to {_fmt(r['abs_high'], r['unit'])})"


def _abs_lift(r: pd.Series) -> str:
    """The difference with its interval (what a harm is judged by), e.g. '+9.1 pp (95% CI +3.0 to +15.2 pp)'."""
    if r["unit"] == "share":
        return (f"{100 * r['abs_lift']:+.1f} pp (95% CI {100 * r['abs_low']:+.1f} to "
                f"{100 * r['abs_high']:+.1f} pp)")
    return f"{_fmt(r['abs_lift'], r['unit'])} (95% CI {_fmt(r['abs_low'], r['unit'])} to {_fmt(r['abs_high'], r['unit'])})"


def _change(r: pd.Series) -> str:
    adj = "CUPED-adjusted " if r.get("method") == "cuped" else ""
    return (f"{adj}{r['label'].split(' (')[0].lower()} {_fmt(r['control_value'], r['unit'])} → "
            f"{_fmt(r['variant_value'], r['unit'])}")


def decide(d: ExperimentData, srm: dict, res: pd.DataFrame, bayes: pd.DataFrame, plan: dict, *,
           alpha: float = 0.05, mde: float = 0.10, max_extra_days: float = 60,
           sequential: pd.DataFrame | None = None) -> Decision:
    """Ship / do not ship / keep running, with reasons in plain words (rules: module docstring)."""
    name = d.experiment_id
    p = res.loc[(res["role"] == "primary") & res["decision_row"]].set_index("variant")
    g = res.loc[(res["role"] == "guardrail") & res["decision_row"]]
    metric_label = p["label"].iloc[0].split(" (")[0].lower()
    adj_label = ("CUPED-adjusted " if p["method"].iloc[0] == "cuped" else "") + metric_label
    method = ("delta-method test of the relative lift on the " + METHOD_NAMES[p["method"].iloc[0]]
              .replace(" test", "").replace("pooled two-proportion z", "rates") + " figures")
    if p["method"].iloc[0] == "cuped":
        method = "delta-method test of the CUPED-adjusted relative lift"
    elif p["method"].iloc[0] == "delta":
        method = "delta-method test of the relative lift of the ratio"
    else:
        method = "delta-method test of the relative lift"
    k = len(p)
    holm = f", Holm-adjusted over {k} variants" if k > 1 else ""
    pb = bayes.loc[bayes["role"] == "primary"].set_index("variant") if len(bayes) else pd.DataFrame()
    # A test that is still running is looked at before its end: judge it by the always-valid
    # sequence (safe under repeated looks), not by the fixed-horizon p-value.
    seq_p = None
    if d.running and sequential is not None and len(sequential):
        last = sequential.groupby("variant").tail(1).set_index("variant")
        a_seq = sequential.attrs.get("alpha_per_comparison", alpha / k)
        seq_p = last["p_always_valid"].reindex(p.index)
        p = p.assign(significant=(seq_p < a_seq).to_numpy())

    def primary_line(v: str) -> str:
        r = p.loc[v]
        extra = ""
        if v in pb.index and "chance_to_beat_control" in pb:
            extra = f"; chance it beats control {pb.loc[v, 'chance_to_beat_control']:.1%} (Bayesian)"
        if seq_p is not None:
            extra += (f"; still running, so judged by the always-valid {_pvalue(seq_p[v])} "
                      f"(needs < {a_seq:.3g})")
        diff_test = (f" The difference alone: {METHOD_NAMES[r['method']]}, {_pvalue(r['p_diff'])}."
                     if np.isfinite(r.get("p_diff", np.nan)) else "")
        return (f"{v} vs {d.control}: {_change(r)}, {_lift(r)}, {_pvalue(r['p_holm'])} ({method}{holm}){extra}."
                + diff_test)

    if srm["alert"]:
        reasons = [srm["message"]]
        reasons += [f"For the record only (not to act on): {primary_line(v)}" for v in p.index]
        reasons.append("Find the cause (units lost in logging, a redirect, bot filtering, a late assignment "
                       "trigger), fix it and run the test again.")
        return Decision("do not ship", None, f"{name}: do not ship. The split of units is broken (sample ratio "
                        f"mismatch, {_pvalue(srm['p_value'])}), so the result cannot be trusted.", reasons)

    harm = {v: g.loc[(g["variant"] == v) & g["harmful"]] for v in p.index}
    good = np.where(p["higher_is_better"], p["abs_lift"] > 0, p["abs_lift"] < 0)
    winners = [v for v, ok, s in zip(p.index, good, p["significant"]) if ok and s]
    losers = [v for v, ok, s in zip(p.index, good, p["significant"]) if not ok and s]

    def guard_lines(v: str) -> list[str]:
        h = harm[v]
        return [f"Guardrail breached: {_change(r)} for {v}, {_abs_lift(r)}, {_pvalue(r['p_diff'])} "
                f"({METHOD_NAMES[r['method']]} of the difference)."
                for _, r in h.iterrows()]

    def guard_ok(v: str) -> str:
        gv = g.loc[g["variant"] == v]
        if gv.empty:
            return "No guardrail metric could be computed."
        return "Guardrails hold: " + "; ".join(f"{_change(r)} (no significant harm, {_pvalue(r['p_diff'])})"
                                               for _, r in gv.iterrows()) + "."

    clean = [v for v in winners if harm[v].empty]
    if clean:
        best = max(clean, key=lambda v: p.loc[v, "rel_lift"])
        reasons = [primary_line(best), guard_ok(best)]
        if best in pb.index and "risk_ship" in pb:
            loss = pb.loc[best, "risk_ship"]
            reasons.append(f"Risk of shipping {best}: the expected relative loss in {metric_label}, counting only "
                           f"the cases where it is in fact worse, is {loss:.2%} (Bayesian expected loss).")
        others = [v for v in p.index if v != best]
        reasons += [f"Also compared: {primary_line(v)}" for v in others]
        reasons += [line for v in winners if v != best for line in guard_lines(v)]
        return Decision("ship", best, f"{name}: ship {best}. It lifts {adj_label} by {p.loc[best, 'rel_lift']:+.1%} "
                        f"({_fmt(p.loc[best, 'control_value'], p.loc[best, 'unit'])} → "
                        f"{_fmt(p.loc[best, 'variant_value'], p.loc[best, 'unit'])}) with no guardrail harm.", reasons)

    any_harm = [v for v in p.index if not harm[v].empty]
    if winners:  # every winner breaks a guardrail
        v = max(winners, key=lambda v: p.loc[v, "rel_lift"])
        h = harm[v].iloc[0]
        reasons = [primary_line(v)] + guard_lines(v) + [
            f"The gain in {metric_label} comes with a significant harm on a guardrail, so {v} should not ship "
            "as it is; fix the cause of the harm and test again."]
        return Decision("do not ship", None, f"{name}: do not ship {v}. It lifts {adj_label} by "
                        f"{p.loc[v, 'rel_lift']:+.1%}, but {_change(h)}.", reasons)
    if losers:
        reasons = [primary_line(v) for v in p.index] + [line for v in any_harm for line in guard_lines(v)]
        worst = max(losers, key=lambda v: abs(p.loc[v, "rel_lift"]))
        return Decision("do not ship", None, f"{name}: do not ship. {worst} makes {adj_label} worse "
                        f"({_fmt(p.loc[worst, 'control_value'], p.loc[worst, 'unit'])} → "
                        f"{_fmt(p.loc[worst, 'variant_value'], p.loc[worst, 'unit'])}, "
                        f"{p.loc[worst, 'rel_lift']:+.1%}); no variant beats control.", reasons)

    # inconclusive
    reasons = [primary_line(v) for v in p.index] + [line for v in any_harm for line in guard_lines(v)]
    rel_high = p["rel_high"] if p["higher_is_better"].iloc[0] else -p["rel_low"]
    if seq_p is not None:  # running: the fixed interval is not valid yet; use the sequence
        hb = p["higher_is_better"].iloc[0]
        rel_high = (last["cs_high"] if hb else -last["cs_low"]).reindex(p.index) / p["control_value"]
    ruled_out = bool((rel_high < mde).all())
    needed = plan.get("needed")
    extra_units = max(0, needed["n_total"] - plan["n_total"]) if needed else None
    if plan.get("one_shot"):
        extra_time = (f"{extra_units:,} more units (another send of about that size)" if extra_units is not None
                      else "more units")
        extra_days = 0 if extra_units == 0 else (1 if extra_units is not None else math.inf)
    else:
        extra_days = math.ceil(extra_units / plan["traffic_per_day"]) if extra_units is not None else math.inf
        extra_time = (f"{extra_units:,} more units, about {extra_days:,} more days at the current traffic of "
                      f"{plan['traffic_per_day']:,.0f} units a day" if extra_units is not None else "more units")
    power_now = plan.get("power_now", np.nan)
    if any_harm:
        reasons.append("A guardrail is significantly worse, so there is nothing to gain by waiting.")
        return Decision("do not ship", None, f"{name}: do not ship. No clear gain in {metric_label}, and a "
                        "guardrail got worse.", reasons)
    if ruled_out:
        reasons.append(f"The interval rules out a lift of {mde:.0%} or more, the smallest worth having: "
                       "any effect is too small to matter. Keep the current version.")
        return Decision("do not ship", None, f"{name}: do not ship. No variant changes {metric_label} by a "
                        f"worthwhile amount (a {mde:.0%} lift is ruled out).", reasons)
    reasons.append(f"Inconclusive: at this size the test had {power_now:.0%} power to detect a {mde:.0%} lift; "
                   f"reaching 80% power needs {extra_time}.")
    if sequential is not None and len(sequential) and d.running:
        reasons.append("While it runs, read the always-valid interval (daily monitoring below), not the daily "
                       "p-value: it may be looked at every day and stopped as soon as it excludes zero.")
    if extra_days <= max_extra_days:
        return Decision("keep running", None, f"{name}: keep running. No clear difference in {metric_label} yet; "
                        f"it needs {extra_time}.", reasons)
    reasons.append(f"That is longer than {max_extra_days:g} days, so the test is not worth continuing at this "
                   "traffic: keep the current version (or test a bolder change).")
    return Decision("do not ship", None, f"{name}: do not ship. No clear difference in {metric_label}, and "
                    f"finding a {mde:.0%} lift would take about {extra_days:,} more days.", reasons)


# --------------------------------------------------------------------------- breakdown
def breakdown(data: ExperimentData, by: str, metric: str | Metric = "conversion", *, alpha: float = 0.05,
              min_units: int = 300) -> pd.DataFrame:
    """Lift per subgroup (``by``: a column of the units, e.g. ``acquisition_channel``), set-based.

    Each row: subgroup, variant, units per arm, the rates, absolute and relative lift
    with a (uncorrected) 95% interval, p-value, ``small`` (fewer than ``min_units``
    units in an arm), and the heterogeneity test across the subgroups (Cochran's Q,
    Cochran 1954, *Biometrics* 10:101-129: ``Q = Σ w_i (d_i - d̄)²``, ``w = 1/se²``,
    chi-square with k-1 df) in ``attrs["heterogeneity"]``. Read with care: with many
    subgroups some will look different by chance alone.
    """
    m = _metric(metric)
    u = data.units
    if by not in u:
        raise ExperimentInputError(f"unknown breakdown column '{by}'; available: "
                                   f"{[c for c in ('acquisition_channel', 'region', 'customer_type') if c in u]}")
    col = m.numerator
    den = m.denominator
    parts = pd.DataFrame({"seg": u[by].astype(str).to_numpy(), "variant": u["variant"].to_numpy(),
                          "n": 1.0, "a": u[col].astype(float).to_numpy(),
                          "b": u[den].astype(float).to_numpy() if den else 1.0})
    parts["aa"], parts["bb"], parts["ab"] = parts["a"] ** 2, parts["b"] ** 2, parts["a"] * parts["b"]
    s = parts.groupby(["seg", "variant"]).sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        s["mean"] = s["a"] / s["b"]
        s["var"] = (s["aa"] - 2 * s["mean"] * s["ab"] + s["mean"] ** 2 * s["bb"]) / (s["n"] - 1) / (s["b"] / s["n"]) ** 2
    rows = []
    het = {}
    for v in data.treatments:
        c = s.xs(data.control, level="variant")
        t = s.xs(v, level="variant") if v in s.index.get_level_values("variant") else c.iloc[:0]
        segs = c.index.intersection(t.index)
        c, t = c.loc[segs], t.loc[segs]
        w = stats.welch_from_stats(c["mean"], c["var"], c["n"], t["mean"], t["var"], t["n"], alpha)
        df = pd.DataFrame({by: segs, "variant": v, "n_control": c["n"].astype(int).to_numpy(),
                           "n_variant": t["n"].astype(int).to_numpy(), "control_value": c["mean"].to_numpy(),
                           "variant_value": t["mean"].to_numpy(), "abs_lift": w["diff"], "abs_low": w["abs_low"],
                           "abs_high": w["abs_high"], "rel_lift": w["rel"], "rel_low": w["rel_low"],
                           "rel_high": w["rel_high"], "p_value": w["p_value"]})
        df["small"] = (df["n_control"] < min_units) | (df["n_variant"] < min_units)
        ok = np.isfinite(w["se"]) & (w["se"] > 0) & ~df["small"].to_numpy()
        if ok.sum() >= 2:
            wt = 1 / w["se"][ok] ** 2
            dbar = np.sum(wt * w["diff"][ok]) / wt.sum()
            q = float(np.sum(wt * (w["diff"][ok] - dbar) ** 2))
            het[v] = {"Q": q, "df": int(ok.sum() - 1), "p_value": float(sps.chi2.sf(q, ok.sum() - 1)),
                      "subgroups": int(ok.sum())}
        rows.append(df)
    out = pd.concat(rows, ignore_index=True)
    out.attrs["heterogeneity"] = het
    n_seg = out[by].nunique()
    small = int(out["small"].sum())
    hp = [f"{v}: {_pvalue(h['p_value'])}" for v, h in het.items()]
    out.attrs["warning"] = (
        f"{n_seg} subgroups by {by}: at a 5% level about {0.05 * n_seg:.1f} of them would look 'significant' by "
        f"chance alone, and the intervals are not corrected for that. {small} subgroup rows have fewer than "
        f"{min_units} units in an arm and are flagged small: do not read their lifts. Whether the lift differs "
        f"between subgroups at all is the heterogeneity test ({'; '.join(hp) if hp else 'too few subgroups'}): "
        "unless it is small, treat every subgroup as having the overall lift.")
    return out


# --------------------------------------------------------------------------- overview
def overview(tables: Mapping[str, pd.DataFrame | None], *, config=None, ids: Iterable[str] | None = None,
             **kwargs) -> tuple[pd.DataFrame, dict[str, ExperimentResult | str]]:
    """Analyse every experiment; one summary row each (errors become a row with the message)."""
    ids = list(ids) if ids is not None else experiment_ids(tables)
    rows, results = [], {}
    for x in ids:  # a loop over experiments (a handful), not over units
        try:
            r = analyze(tables, x, config=config, **kwargs)
        except ExperimentInputError as e:
            results[x] = str(e)
            rows.append({"experiment": x, "decision": "error", "headline": str(e)})
            continue
        results[x] = r
        p = r.decision_rows("primary")
        best = p.iloc[_argbest(p)] if r.decision.variant is None else \
            p.loc[p["variant"] == r.decision.variant].iloc[0]
        g = r.decision_rows("guardrail")
        rows.append({"experiment": x, "start": r.data.first_assigned, "variants": len(r.data.variants),
                     "units": len(r.data.units), "srm_p_value": r.srm["p_value"], "srm_alert": r.srm["alert"],
                     "variant": best["variant"], "control_value": best["control_value"],
                     "variant_value": best["variant_value"], "rel_lift": best["rel_lift"],
                     "rel_low": best["rel_low"], "rel_high": best["rel_high"], "p_holm": best["p_holm"],
                     "method": best["method"], "p_diff": best["p_diff"],
                     "chance_to_beat_control": r.key_figures().get("prob_beats_control", np.nan),
                     "guardrail_harm": bool(g["harmful"].any()) if len(g) else False,
                     "decision": r.decision.verdict, "ship": r.decision.variant or "",
                     "headline": r.decision.headline})
    return pd.DataFrame(rows), results
