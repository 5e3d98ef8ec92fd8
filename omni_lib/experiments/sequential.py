"""Always-valid inference for teams that look at a running test every day.

A fixed-horizon test (the Welch p-value) is valid once, at the planned end. Looked
at every day and stopped at the first p < 0.05, it declares far more winners than
5% among tests with no effect (the report shows by how much). The mixture
sequential probability ratio test (mSPRT) below gives a *confidence sequence*: an
interval that holds at every look at once, so a team may look daily and stop as
soon as it excludes zero, with the false-positive rate still at most ``alpha``.

Source (formulas written out here, a few lines, because they run vectorised over
simulations; scipy has no confidence sequences): Robbins (1970), "Statistical
methods related to the law of the iterated logarithm", *Ann. Math. Statist.* 41;
Johari, Koomen, Pekelis & Walsh (2022), "Always Valid Inference: Continuous
Monitoring of A/B Tests", *Operations Research* 70(3), sec. 4 (normal mixture with
a plug-in variance, asymptotically valid); Howard, Ramdas, McAuliffe & Sekhon (2021),
"Time-uniform, nonparametric, nonasymptotic confidence sequences", *Ann. Statist.*
49(2), sec. 3.5 (tuning the mixture to a target sample size).

For an estimate ``θ̂`` with variance ``v`` (shrinking as units arrive) and a normal
mixing distribution N(0, τ²) over the effect, the mixture likelihood ratio against
``θ = θ0`` is ``Λ = sqrt(v/(v+τ²)) · exp(τ²(θ̂-θ0)² / (2v(v+τ²)))``; the sequence is
``{θ0 : Λ < 1/α}``, i.e. ``θ̂ ± sqrt(v(v+τ²)/τ² · (2 log(1/α) + log((v+τ²)/v)))``,
and the always-valid p-value is the running minimum of ``min(1, 1/Λ(0))``.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
from scipy import optimize

from .stats import welch_from_stats

__all__ = ["mixture_ratio", "optimal_ratio", "tune_tau2", "confidence_sequence", "cumulative_looks"]


def mixture_ratio(diff, v, tau2, theta0: float = 0.0):
    """The normal-mixture likelihood ratio Λ (vectorised); see the module docstring."""
    diff, v = np.asarray(diff, dtype=float), np.asarray(v, dtype=float)
    with np.errstate(over="ignore"):
        return np.sqrt(v / (v + tau2)) * np.exp(tau2 * (diff - theta0) ** 2 / (2.0 * v * (v + tau2)))


@lru_cache(maxsize=32)
def optimal_ratio(alpha: float = 0.05) -> float:
    """``r = τ²/v`` that makes the sequence narrowest at the variance ``v`` (Howard et al. 2021, 3.5).

    The half-width² is ``v · (1+r)/r · (2 log(1/α) + log(1+r))``; minimised over r.
    """
    c = 2.0 * np.log(1.0 / alpha)
    res = optimize.minimize_scalar(lambda lr: np.log1p(np.exp(-lr)) + np.log(c + np.log1p(np.exp(lr))),
                                   bounds=(-10, 10), method="bounded")
    return float(np.exp(res.x))


def tune_tau2(v_target, alpha: float = 0.05):
    """Mixing variance τ² tuned so the sequence is narrowest when the estimate's variance is ``v_target``.

    Use the variance expected at the planned sample size; looks before and after it
    are still valid, only a little wider.
    """
    return optimal_ratio(alpha) * np.asarray(v_target, dtype=float)


def confidence_sequence(diff, se, tau2, alpha: float = 0.05, axis: int = -1) -> dict[str, np.ndarray]:
    """Confidence sequence and always-valid p-values over looks along ``axis``.

    ``diff`` and ``se`` are the estimate and its standard error at each look (the
    Welch ones). Returns ``low``, ``high`` (the running intersection, itself valid
    because the sequence holds at every look at once), ``half_width`` (of the look
    alone) and ``p_value`` (always-valid: running minimum of ``min(1, 1/Λ(0))``).
    """
    diff, se = np.asarray(diff, dtype=float), np.asarray(se, dtype=float)
    v = se ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        hw = np.sqrt(v * (v + tau2) / tau2 * (2.0 * np.log(1.0 / alpha) + np.log((v + tau2) / v)))
        low = np.where(np.isfinite(hw), diff - hw, -np.inf)
        high = np.where(np.isfinite(hw), diff + hw, np.inf)
        p = np.minimum(1.0, 1.0 / mixture_ratio(diff, v, tau2))
    p = np.where(np.isfinite(p), p, 1.0)
    if np.ndim(p) == 0:  # a single look
        return {"low": low, "high": high, "half_width": hw, "p_value": p}
    return {"low": np.maximum.accumulate(low, axis=axis), "high": np.minimum.accumulate(high, axis=axis),
            "half_width": hw, "p_value": np.minimum.accumulate(p, axis=axis)}


def cumulative_looks(units: pd.DataFrame, value: str, treat: str, control: str, look: str = "day",
                     variant: str = "variant", denominator: str | None = None,
                     alpha: float = 0.05, tau2: float | None = None,
                     v_target: float | None = None) -> pd.DataFrame:
    """One row per look (e.g. per assignment day): the fixed-horizon and the sequential answer.

    Cumulative over looks: the units assigned up to that look (with their outcomes
    over the full window: a cohort look). ``denominator`` given = a ratio metric
    (delta method from sums). Columns: ``look, n_control, n_treatment, control,
    treatment, diff, se, p_fixed, fixed_low, fixed_high, cs_low, cs_high, p_always_valid,
    fixed_says_significant, sequential_says_significant``. τ² is tuned to ``v_target``
    (default: the variance at the last look, i.e. the planned size when the test has ended).
    """
    d = units.loc[units[variant].isin([control, treat])]
    num = d[value].astype(float)
    den = d[denominator].astype(float) if denominator else pd.Series(1.0, index=d.index)
    parts = pd.DataFrame({"look": d[look].to_numpy(), "t": (d[variant] == treat).to_numpy(),
                          "n": 1.0, "a": num.to_numpy(), "b": den.to_numpy(),
                          "aa": (num * num).to_numpy(), "bb": (den * den).to_numpy(), "ab": (num * den).to_numpy()})
    s = parts.groupby(["look", "t"], sort=True).sum().unstack("t", fill_value=0.0).sort_index().cumsum()
    looks = s.index

    def moments(flag: bool):
        n, a, b = s[("n", flag)], s[("a", flag)], s[("b", flag)]
        aa, bb, ab = s[("aa", flag)], s[("bb", flag)], s[("ab", flag)]
        with np.errstate(divide="ignore", invalid="ignore"):
            r = a / b
            # Var(num - R·den) with ddof=1, from sums (its mean is 0 by construction)
            var = (aa - 2 * r * ab + r * r * bb) / (n - 1) / (b / n) ** 2
        return n.to_numpy(), r.to_numpy(), var.to_numpy()

    nc, mc, vc = moments(False)
    nt, mt, vt = moments(True)
    w = welch_from_stats(mc, vc, nc, mt, vt, nt, alpha)
    ok = (nc >= 2) & (nt >= 2) & np.isfinite(w["se"]) & (w["se"] > 0)
    if tau2 is None:
        last = np.nonzero(ok)[0]
        v_t = v_target if v_target is not None else (w["se"][last[-1]] ** 2 if len(last) else np.nan)
        tau2 = float(tune_tau2(v_t, alpha))
    se = np.where(ok, w["se"], np.inf)
    cs = confidence_sequence(np.where(ok, w["diff"], 0.0), se, tau2, alpha)
    out = pd.DataFrame({
        "look": looks, "n_control": nc.astype(int), "n_treatment": nt.astype(int), "control": mc, "treatment": mt,
        "diff": w["diff"], "se": w["se"], "p_fixed": w["p_value"], "fixed_low": w["abs_low"], "fixed_high": w["abs_high"],
        "cs_low": cs["low"], "cs_high": cs["high"], "p_always_valid": cs["p_value"]})
    out["fixed_says_significant"] = out["p_fixed"] < alpha
    out["sequential_says_significant"] = out["p_always_valid"] < alpha
    out.attrs.update(tau2=tau2, alpha=alpha, treatment=treat, control=control)
    return out
