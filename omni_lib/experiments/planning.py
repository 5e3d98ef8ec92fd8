"""Planning a test: sample size, power, minimum detectable effect, run time.

Power comes from statsmodels: ``TTestIndPower`` (``kind="t"``, the default: the
two-sample t test the analysis runs, as ``statsmodels.stats.power.tt_ind_solve_power``)
or ``NormalIndPower`` (``kind="normal"``, the z test). Both take a standardised effect
size ``d = δ / sd``; :func:`sample_size_for_effect` and :func:`power_for_effect` accept
one directly (Cohen's d), the other functions build it from a baseline and a minimum
detectable effect:

* a mean: ``sd`` is the metric's per-unit standard deviation;
* a conversion rate: the pooled variance ``p̄(1-p̄)``, with ``p̄ = (p_c + ratio·p_t)/(1 + ratio)``
  the rate of both arms together, the variance the pooled z test uses under the null
  (Fleiss, Levin & Paik 2003, *Statistical Methods for Rates and Proportions*, 3rd ed.,
  sec. 4.2; the same standardisation as ``NormalIndPower`` with ``d = δ/sqrt(p̄(1-p̄))``).

Several treatment variants compared with one control: alpha is split
Bonferroni-wise (``alpha / (variants - 1)``), the conservative choice that matches
the Holm correction at the analysis (Holm is never less powerful).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import optimize

from .errors import ExperimentInputError

__all__ = ["sample_size", "power_at", "minimum_detectable_effect", "plan_table", "sample_size_for_effect",
           "power_for_effect", "KINDS"]

KINDS = ("t", "normal")


def _check_baseline(baseline: float, variance: float | None) -> None:
    if variance is None and not 0 < baseline < 1:
        raise ExperimentInputError(f"a baseline conversion rate must lie in (0, 1), got {baseline}")
    if not (math.isfinite(baseline) and baseline != 0):
        raise ExperimentInputError(
            f"the baseline mean must be finite and non-zero (lifts are relative to it), got {baseline}")


def _arm_sd(baseline: float, effect: float, variance: float | None, ratio: float) -> float:
    """The standard deviation that standardises ``effect`` (pooled for a proportion)."""
    _check_baseline(baseline, variance)
    if variance is None:  # a proportion
        p2 = baseline + effect
        if not 0 < p2 < 1:
            raise ExperimentInputError(f"baseline {baseline:.3g} + effect {effect:.3g} leaves (0, 1)")
        pbar = (baseline + ratio * p2) / (1 + ratio)
        return math.sqrt(pbar * (1 - pbar))
    if variance <= 0:
        raise ExperimentInputError(f"the metric's variance must be positive, got {variance}")
    return math.sqrt(variance)


def _engine(kind: str):
    from statsmodels.stats.power import NormalIndPower, TTestIndPower

    if kind not in KINDS:
        raise ExperimentInputError(f"unknown power calculation '{kind}'; use 't' or 'normal'")
    return TTestIndPower() if kind == "t" else NormalIndPower()


def _power(kind: str, effect_size: float, nobs1: float, alpha: float, ratio: float) -> float:
    """statsmodels' power; where the t version's noncentral t is NaN (scipy's ``nct`` fails at
    very large noncentrality, i.e. power indistinguishable from 1) the normal power is used."""
    from statsmodels.stats.power import NormalIndPower

    pw = float(_engine(kind).power(effect_size=effect_size, nobs1=nobs1, alpha=alpha, ratio=ratio,
                                   alternative="two-sided"))
    if not math.isfinite(pw):
        pw = float(NormalIndPower().power(effect_size=effect_size, nobs1=nobs1, alpha=alpha, ratio=ratio,
                                          alternative="two-sided"))
    return pw


def power_for_effect(effect_size: float, nobs1: float, alpha: float = 0.05, ratio: float = 1.0,
                     kind: str = "t") -> float:
    """Power of a two-sided two-sample test for a standardised effect ``d`` with ``nobs1`` control units."""
    _check(alpha, None, ratio, 2)
    return _power(kind, abs(effect_size), nobs1, alpha, ratio)


def sample_size_for_effect(effect_size: float, alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0,
                           kind: str = "t") -> dict:
    """Units per arm to detect a standardised effect ``d`` (Cohen's d) with ``power``, two-sided.

    Returns ``n_control_exact`` (statsmodels' solution, e.g. 63.77 for d = 0.5 with the
    t test), ``n_control`` and ``n_treatment`` rounded up (64: Cohen 1988, Table 2.4.1).
    """
    _check(alpha, power, ratio, 2)
    if not effect_size or not math.isfinite(effect_size):
        raise ExperimentInputError(f"the effect size must be finite and non-zero, got {effect_size}")
    n1 = float(_engine(kind).solve_power(effect_size=abs(effect_size), nobs1=None, alpha=alpha, power=power,
                                         ratio=ratio, alternative="two-sided"))
    return {"n_control_exact": n1, "n_control": int(math.ceil(n1)), "n_treatment": int(math.ceil(n1 * ratio)),
            "effect_size": effect_size, "alpha": alpha, "power": power, "ratio": ratio, "kind": kind}


def _check(alpha: float, power: float | None, ratio: float, variants: int):
    if not 0 < alpha < 1:
        raise ExperimentInputError(f"alpha must lie in (0, 1), got {alpha}")
    if power is not None and not 0 < power < 1:
        raise ExperimentInputError(f"power must lie in (0, 1), got {power}")
    if ratio <= 0:
        raise ExperimentInputError(f"ratio (treatment/control units) must be positive, got {ratio}")
    if variants < 2:
        raise ExperimentInputError(f"a test needs at least 2 variants, got {variants}")


def power_at(n_control: float, baseline: float, mde_rel: float, variance: float | None = None,
             alpha: float = 0.05, ratio: float = 1.0, variants: int = 2, kind: str = "t") -> float:
    """Power of a two-sided test with ``n_control`` control units and ``ratio·n_control`` per treatment.

    ``variance=None``: the metric is a proportion with rate ``baseline``; otherwise a
    mean with that per-unit variance. ``mde_rel`` is the relative lift to detect.
    """
    _check(alpha, None, ratio, variants)
    delta = baseline * mde_rel
    sd = _arm_sd(baseline, delta, variance, ratio)
    return _power(kind, abs(delta) / sd, n_control, alpha / (variants - 1), ratio)


def sample_size(baseline: float, mde_rel: float, variance: float | None = None, alpha: float = 0.05,
                power: float = 0.8, ratio: float = 1.0, variants: int = 2, kind: str = "t") -> dict:
    """Units needed per control and per treatment variant to detect ``mde_rel`` with ``power``.

    Returns ``n_control``, ``n_treatment`` (each rounded up), ``n_total`` (all variants),
    and the inputs.
    """
    _check(alpha, power, ratio, variants)
    if mde_rel == 0:
        raise ExperimentInputError("the minimum detectable effect must not be 0")
    delta = baseline * mde_rel
    sd = _arm_sd(baseline, delta, variance, ratio)
    n1 = _engine(kind).solve_power(effect_size=abs(delta) / sd, nobs1=None, alpha=alpha / (variants - 1),
                                   power=power, ratio=ratio, alternative="two-sided")
    n_c = int(math.ceil(float(n1)))
    n_t = int(math.ceil(float(n1) * ratio))
    return {"n_control": n_c, "n_treatment": n_t, "n_total": n_c + n_t * (variants - 1),
            "baseline": baseline, "mde_rel": mde_rel, "mde_abs": delta, "alpha": alpha, "power": power,
            "ratio": ratio, "variants": variants, "kind": kind, "effect_size": abs(delta) / sd,
            "n_control_exact": float(n1)}


def minimum_detectable_effect(n_control: float, baseline: float, variance: float | None = None,
                              alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0,
                              variants: int = 2, kind: str = "t") -> float:
    """Smallest relative lift (positive) detectable with ``power`` at ``n_control`` control units."""
    _check(alpha, power, ratio, variants)
    if n_control < 2:
        raise ExperimentInputError(f"need at least 2 control units, got {n_control}")
    _check_baseline(baseline, variance)
    hi = (1.0 / baseline - 1.0) * 0.999 if variance is None else 1e6
    f = lambda m: power_at(n_control, baseline, m, variance, alpha, ratio, variants, kind) - power  # noqa: E731
    if f(hi) < 0:
        return float("nan")
    return float(optimize.brentq(f, 1e-9, hi, xtol=1e-10))


def plan_table(baseline: float, variance: float | None, traffic_per_day: float,
               mde_grid=(0.02, 0.05, 0.10, 0.15, 0.20, 0.30), alpha: float = 0.05, power: float = 0.8,
               ratio: float = 1.0, variants: int = 2, kind: str = "t") -> pd.DataFrame:
    """Units and days needed for a range of relative lifts at the current traffic (units/day, all variants)."""
    if not traffic_per_day > 0:
        raise ExperimentInputError(f"traffic per day must be positive, got {traffic_per_day}")
    rows = []
    for m in mde_grid:
        try:
            s = sample_size(baseline, m, variance, alpha, power, ratio, variants, kind)
        except ExperimentInputError:
            continue
        rows.append({"mde_rel": m, "mde_abs": s["mde_abs"], "n_control": s["n_control"],
                     "n_per_treatment": s["n_treatment"], "n_total": s["n_total"],
                     "days": float(np.ceil(s["n_total"] / traffic_per_day))})
    return pd.DataFrame(rows)
