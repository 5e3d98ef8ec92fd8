"""Planning a test: sample size, power, minimum detectable effect, run time.

Power comes from ``statsmodels.stats.power.NormalIndPower`` (two-sided z test of two
independent means). For a conversion rate the two arms have different variances
(p(1-p) and p'(1-p')); NormalIndPower assumes one standard deviation, so the effect
size is scaled with the pooled value that gives the same variance of the
difference: ``sd² = (v_c + v_t/ratio) / (1 + 1/ratio)``, with ``ratio = n_t/n_c``.
This is the usual unpooled sample-size formula (Chow, Shao & Wang 2008, *Sample
Size Calculations in Clinical Research*, 2nd ed., sec. 4.2) expressed through
statsmodels; the tests check both.

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

__all__ = ["sample_size", "power_at", "minimum_detectable_effect", "plan_table"]


def _check_baseline(baseline: float, variance: float | None) -> None:
    if variance is None and not 0 < baseline < 1:
        raise ExperimentInputError(f"a baseline conversion rate must lie in (0, 1), got {baseline}")
    if not (math.isfinite(baseline) and baseline != 0):
        raise ExperimentInputError(
            f"the baseline mean must be finite and non-zero (lifts are relative to it), got {baseline}")


def _arm_var(baseline: float, effect: float, variance: float | None) -> tuple[float, float]:
    _check_baseline(baseline, variance)
    if variance is None:  # a proportion
        p2 = baseline + effect
        if not 0 < p2 < 1:
            raise ExperimentInputError(f"baseline {baseline:.3g} + effect {effect:.3g} leaves (0, 1)")
        return baseline * (1 - baseline), p2 * (1 - p2)
    if variance <= 0:
        raise ExperimentInputError(f"the metric's variance must be positive, got {variance}")
    return variance, variance


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
             alpha: float = 0.05, ratio: float = 1.0, variants: int = 2) -> float:
    """Power of a two-sided test with ``n_control`` control units and ``ratio·n_control`` per treatment.

    ``variance=None``: the metric is a proportion with rate ``baseline``; otherwise a
    mean with that per-unit variance. ``mde_rel`` is the relative lift to detect.
    """
    from statsmodels.stats.power import NormalIndPower

    _check(alpha, None, ratio, variants)
    delta = baseline * mde_rel
    vc, vt = _arm_var(baseline, delta, variance)
    sd = math.sqrt((vc + vt / ratio) / (1 + 1 / ratio))
    return float(NormalIndPower().power(effect_size=abs(delta) / sd, nobs1=n_control,
                                        alpha=alpha / (variants - 1), ratio=ratio, alternative="two-sided"))


def sample_size(baseline: float, mde_rel: float, variance: float | None = None, alpha: float = 0.05,
                power: float = 0.8, ratio: float = 1.0, variants: int = 2) -> dict:
    """Units needed per control and per treatment variant to detect ``mde_rel`` with ``power``.

    Returns ``n_control``, ``n_treatment`` (each rounded up), ``n_total`` (all variants),
    and the inputs.
    """
    from statsmodels.stats.power import NormalIndPower

    _check(alpha, power, ratio, variants)
    if mde_rel == 0:
        raise ExperimentInputError("the minimum detectable effect must not be 0")
    delta = baseline * mde_rel
    vc, vt = _arm_var(baseline, delta, variance)
    sd = math.sqrt((vc + vt / ratio) / (1 + 1 / ratio))
    n1 = NormalIndPower().solve_power(effect_size=abs(delta) / sd, nobs1=None, alpha=alpha / (variants - 1),
                                      power=power, ratio=ratio, alternative="two-sided")
    n_c = int(math.ceil(float(n1)))
    n_t = int(math.ceil(float(n1) * ratio))
    return {"n_control": n_c, "n_treatment": n_t, "n_total": n_c + n_t * (variants - 1),
            "baseline": baseline, "mde_rel": mde_rel, "mde_abs": delta, "alpha": alpha, "power": power,
            "ratio": ratio, "variants": variants}


def minimum_detectable_effect(n_control: float, baseline: float, variance: float | None = None,
                              alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0,
                              variants: int = 2) -> float:
    """Smallest relative lift (positive) detectable with ``power`` at ``n_control`` control units."""
    _check(alpha, power, ratio, variants)
    if n_control < 2:
        raise ExperimentInputError(f"need at least 2 control units, got {n_control}")
    _check_baseline(baseline, variance)
    hi = (1.0 / baseline - 1.0) * 0.999 if variance is None else 1e6
    f = lambda m: power_at(n_control, baseline, m, variance, alpha, ratio, variants) - power  # noqa: E731
    if f(hi) < 0:
        return float("nan")
    return float(optimize.brentq(f, 1e-9, hi, xtol=1e-10))


def plan_table(baseline: float, variance: float | None, traffic_per_day: float,
               mde_grid=(0.02, 0.05, 0.10, 0.15, 0.20, 0.30), alpha: float = 0.05, power: float = 0.8,
               ratio: float = 1.0, variants: int = 2) -> pd.DataFrame:
    """Units and days needed for a range of relative lifts at the current traffic (units/day, all variants)."""
    if not traffic_per_day > 0:
        raise ExperimentInputError(f"traffic per day must be positive, got {traffic_per_day}")
    rows = []
    for m in mde_grid:
        try:
            s = sample_size(baseline, m, variance, alpha, power, ratio, variants)
        except ExperimentInputError:
            continue
        rows.append({"mde_rel": m, "mde_abs": s["mde_abs"], "n_control": s["n_control"],
                     "n_per_treatment": s["n_treatment"], "n_total": s["n_total"],
                     "days": float(np.ceil(s["n_total"] / traffic_per_day))})
    return pd.DataFrame(rows)
