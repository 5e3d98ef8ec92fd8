"""Simulated A/A and A/B tests: do the intervals cover, does peeking inflate false positives?

Units are drawn (with replacement) from a *pool* taken from the data, so the
simulated tests have the data's own heterogeneity, heavy tails and covariate:

* ``"bernoulli"``: per-unit conversion probabilities ``p`` (the sample generator's
  planted ``p_convert``, ``data/sample/truth/experiment_units.parquet``); treatment
  units convert with ``min(p·(1+lift), cap)`` as the generator does;
* ``"values"``: observed per-unit values (e.g. revenue), treatment values × (1+lift);
* ``"ratio"``: observed per-unit (numerator, denominator) pairs, treatment numerator × (1+lift).

The true effect is then known exactly: for ``bernoulli`` the absolute effect is
``mean(min(p(1+l), cap)) - mean(p)`` over the pool, for the others ``l`` times the
pool's mean (ratio). Everything is vectorised over batches of simulations (arrays of
shape simulations × units); no Python loop over units.
"""
from __future__ import annotations

import numpy as np

from .sequential import confidence_sequence, tune_tau2
from .stats import welch_from_stats

__all__ = ["Pool", "simulate_fixed", "simulate_peeking", "method_check", "sample_truth_pool"]


class Pool:
    """Where simulated units come from; see the module docstring for the three kinds."""

    def __init__(self, kind: str, a: np.ndarray, b: np.ndarray | None = None, covariate: np.ndarray | None = None,
                 cap: float = 0.95):
        if kind not in ("bernoulli", "values", "ratio"):
            raise ValueError(f"unknown pool kind {kind!r}")
        self.kind, self.cap = kind, cap
        self.a = np.asarray(a, dtype=float)
        self.b = None if b is None else np.asarray(b, dtype=float)
        self.x = None if covariate is None else np.asarray(covariate, dtype=float)
        if kind == "ratio" and self.b is None:
            raise ValueError("a ratio pool needs numerator and denominator")

    def truth(self, lift: float) -> tuple[float, float]:
        """(absolute, relative) true effect of ``lift`` over this pool."""
        if self.kind == "bernoulli":
            c = self.a.mean()
            t = np.minimum(self.a * (1 + lift), self.cap).mean()
            return float(t - c), float(t / c - 1)
        base = self.a.mean() if self.kind == "values" else self.a.sum() / self.b.sum()
        return float(lift * base), float(lift)

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...], treat: np.ndarray, lift: float):
        """Per-unit (numerator, denominator, covariate) arrays of ``shape``."""
        idx = rng.integers(0, self.a.size, size=shape)
        if self.kind == "bernoulli":
            p = self.a[idx]
            if lift:
                p = np.where(treat, np.minimum(p * (1 + lift), self.cap), p)
            y = (rng.random(shape) < p).astype(float)
            den = None
        else:
            y = self.a[idx] * np.where(treat, 1.0 + lift, 1.0) if lift else self.a[idx]
            den = self.b[idx] if self.kind == "ratio" else None
        x = self.x[idx] if self.x is not None else None
        return y, den, x


def _moments(y, den, x, treat, axis):
    """Per-arm sums along ``axis``: n, Σy, Σy², Σd, Σd², Σyd, Σx, Σx², Σxy."""
    out = {}
    for arm, m in (("c", ~treat), ("t", treat)):
        mf = m.astype(float)
        s = {"n": mf.sum(axis), "y": (y * mf).sum(axis), "yy": (y * y * mf).sum(axis)}
        if den is not None:
            s.update(d=(den * mf).sum(axis), dd=(den * den * mf).sum(axis), yd=(y * den * mf).sum(axis))
        if x is not None:
            s.update(x=(x * mf).sum(axis), xx=(x * x * mf).sum(axis), xy=(x * y * mf).sum(axis))
        out[arm] = s
    return out


def _mean_var(s: dict, ratio: bool):
    n = s["n"]
    with np.errstate(divide="ignore", invalid="ignore"):
        if ratio:
            r = s["y"] / s["d"]
            var = (s["yy"] - 2 * r * s["yd"] + r * r * s["dd"]) / (n - 1) / (s["d"] / n) ** 2
            return n, r, var
        m = s["y"] / n
        return n, m, (s["yy"] - n * m * m) / (n - 1)


def _cuped(sc: dict, st: dict):
    """CUPED means and variances from sums (same formulas as ``stats.compare_cuped``)."""
    out = []
    N = sc["n"] + st["n"]
    sy, sx = sc["y"] + st["y"], sc["x"] + st["x"]
    cov = (sc["xy"] + st["xy"] - sy * sx / N) / (N - 1)
    vx = (sc["xx"] + st["xx"] - sx * sx / N) / (N - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = np.where(vx > 0, cov / vx, 0.0)
        xbar = sx / N
        for s in (sc, st):
            n = s["n"]
            my, mx = s["y"] / n, s["x"] / n
            vy = (s["yy"] - n * my * my) / (n - 1)
            vxx = (s["xx"] - n * mx * mx) / (n - 1)
            cxy = (s["xy"] - n * mx * my) / (n - 1)
            out.append((n, my - theta * (mx - xbar), vy + theta ** 2 * vxx - 2 * theta * cxy))
    return out


def simulate_fixed(pool: Pool, n_units: int, n_sims: int = 1000, lift: float = 0.0, share: float = 0.5,
                   alpha: float = 0.05, method: str = "welch", seed: int = 0, batch: int = 100) -> dict:
    """Fixed-horizon tests: coverage of the absolute and relative intervals, rejection rate.

    ``method``: ``"welch"`` (means), ``"cuped"`` (needs a pool covariate) or
    ``"delta"`` (ratio pools). Returns ``coverage_abs``, ``coverage_rel``,
    ``rejection_rate`` (false-positive rate when ``lift == 0``, else power), their
    Monte Carlo standard errors, the truth and the settings.
    """
    rng = np.random.default_rng(seed)
    ratio = pool.kind == "ratio"
    if method == "cuped" and pool.x is None:
        raise ValueError("CUPED needs a covariate in the pool")
    true_abs, true_rel = pool.truth(lift)
    cov_a = cov_r = rej = 0
    done = 0
    while done < n_sims:
        b = min(batch, n_sims - done)
        treat = rng.random((b, n_units)) < share
        y, den, x = pool.draw(rng, (b, n_units), treat, lift)
        mo = _moments(y, den, x, treat, axis=1)
        if method == "cuped":
            (nc, mc, vc), (nt, mt, vt) = _cuped(mo["c"], mo["t"])
        else:
            nc, mc, vc = _mean_var(mo["c"], ratio)
            nt, mt, vt = _mean_var(mo["t"], ratio)
        w = welch_from_stats(mc, vc, nc, mt, vt, nt, alpha)
        cov_a += int(np.sum((w["abs_low"] <= true_abs) & (true_abs <= w["abs_high"])))
        cov_r += int(np.sum((w["rel_low"] <= true_rel) & (true_rel <= w["rel_high"])))
        rej += int(np.sum(w["p_value"] < alpha))
        done += b
    se = lambda q: float(np.sqrt(q * (1 - q) / n_sims))  # noqa: E731
    ca, cr, rr = cov_a / n_sims, cov_r / n_sims, rej / n_sims
    return {"n_sims": n_sims, "n_units": n_units, "lift": lift, "method": method, "pool": pool.kind,
            "true_abs": true_abs, "true_rel": true_rel, "coverage_abs": ca, "coverage_abs_se": se(ca),
            "coverage_rel": cr, "coverage_rel_se": se(cr), "rejection_rate": rr, "rejection_rate_se": se(rr)}


def simulate_peeking(pool: Pool, n_per_day: int, days: int, n_sims: int = 1000, lift: float = 0.0,
                     share: float = 0.5, alpha: float = 0.05, seed: int = 0, batch: int = 100) -> dict:
    """Daily looks at a growing test: fixed-horizon p-values vs the always-valid sequence.

    Returns the share of simulated tests declared significant at *any* look by the
    fixed-horizon test (``fpr_fixed_peeking`` when ``lift == 0``), at the last look
    only (``fpr_fixed_final``), and by the confidence sequence (``fpr_sequential``),
    each with its Monte Carlo standard error; ``by_look`` (cumulative shares per
    day) and, for ``lift != 0``, ``cs_coverage_all_looks`` (the true effect inside
    the sequence at every look at once). The mixture is tuned to the variance
    expected at the planned end (the pool's variance and ``n_per_day·days`` units),
    as a team would before starting.
    """
    rng = np.random.default_rng(seed)
    ratio = pool.kind == "ratio"
    true_abs, _ = pool.truth(lift)
    n_final = n_per_day * days
    if ratio:
        r = pool.a.sum() / pool.b.sum()
        unit_var = np.var(pool.a - r * pool.b, ddof=1) / pool.b.mean() ** 2
    elif pool.kind == "bernoulli":
        m = pool.a.mean()
        unit_var = m * (1 - m)
    else:
        unit_var = pool.a.var(ddof=1)
    v_target = unit_var * (1 / (n_final * share) + 1 / (n_final * (1 - share)))
    tau2 = float(tune_tau2(v_target, alpha))
    any_fixed = np.zeros(days)
    any_seq = np.zeros(days)
    final_fixed = 0
    cs_cover = 0
    done = 0
    while done < n_sims:
        b = min(batch, n_sims - done)
        treat = rng.random((b, days, n_per_day)) < share
        y, den, x = pool.draw(rng, (b, days, n_per_day), treat, lift)
        mo = _moments(y, den, None, treat, axis=2)
        cum = {arm: {k: np.cumsum(v, axis=1) for k, v in s.items()} for arm, s in mo.items()}
        nc, mc, vc = _mean_var(cum["c"], ratio)
        nt, mt, vt = _mean_var(cum["t"], ratio)
        w = welch_from_stats(mc, vc, nc, mt, vt, nt, alpha)
        ok = np.isfinite(w["se"]) & (w["se"] > 0)
        pf = np.where(ok, w["p_value"], 1.0)
        cs = confidence_sequence(np.where(ok, w["diff"], 0.0), np.where(ok, w["se"], np.inf), tau2, alpha, axis=1)
        sig_f = np.maximum.accumulate(pf < alpha, axis=1)
        sig_s = np.maximum.accumulate(cs["p_value"] < alpha, axis=1)
        any_fixed += sig_f.sum(axis=0)
        any_seq += sig_s.sum(axis=0)
        final_fixed += int(np.sum(pf[:, -1] < alpha))
        cs_cover += int(np.sum(np.all((cs["low"] <= true_abs) & (true_abs <= cs["high"]), axis=1)))
        done += b
    se = lambda q: float(np.sqrt(q * (1 - q) / n_sims))  # noqa: E731
    ff, fs, f1 = any_fixed[-1] / n_sims, any_seq[-1] / n_sims, final_fixed / n_sims
    out = {"n_sims": n_sims, "days": days, "n_per_day": n_per_day, "lift": lift, "pool": pool.kind, "tau2": tau2,
           "true_abs": true_abs, "fpr_fixed_peeking": float(ff), "fpr_fixed_peeking_se": se(ff),
           "fpr_fixed_final": float(f1), "fpr_fixed_final_se": se(f1),
           "fpr_sequential": float(fs), "fpr_sequential_se": se(fs),
           "cs_coverage_all_looks": cs_cover / n_sims,
           "by_look": {"day": np.arange(1, days + 1), "fixed_any_so_far": any_fixed / n_sims,
                       "sequential_any_so_far": any_seq / n_sims}}
    return out


def method_check(units: "pd.DataFrame", n_sims: int = 1000, n_units: int = 6000, lift: float = 0.10,
                 n_per_day: int = 200, days: int = 28, alpha: float = 0.05, seed: int = 0) -> "pd.DataFrame":
    """Do the methods keep their promises on *this* data? One row per simulated check.

    ``units``: per-unit rows (e.g. the control units of every experiment) with
    ``converted``, ``pre_orders``, ``revenue``, ``returned`` and ``orders``. Pools are
    bootstrapped from them, so the checks carry the data's own skew and heavy tails:
    interval coverage (A/A and A/B with ``lift``) for conversion (Welch and CUPED; each
    unit converts with the observed rate of units with its pre-period order count),
    revenue per unit (Welch) and the return rate (delta method), and the A/A false-
    positive rate of daily looks, fixed-horizon vs always-valid. Target: coverage
    ``1 - alpha``; false positives at most ``alpha``.
    """
    import pandas as pd

    # conversion: each unit converts with the rate of units like it (same pre-period order count,
    # capped at 10), so the pool keeps the data's heterogeneity and the covariate that CUPED uses
    bucket = np.minimum(units["pre_orders"].to_numpy(float), 10)
    p_unit = units["converted"].astype(float).groupby(bucket).transform("mean").to_numpy(float)
    conv = Pool("bernoulli", p_unit, covariate=units["pre_orders"].to_numpy(float))
    rev = Pool("values", units["revenue"].to_numpy(float))
    has_orders = units["orders"].to_numpy(float) > 0
    ret = Pool("ratio", units["returned"].to_numpy(float), units["orders"].to_numpy(float))
    rows = []
    checks = [("conversion", "welch", conv), ("conversion", "cuped", conv), ("revenue per unit", "welch", rev)]
    if has_orders.sum() >= 50:
        checks.append(("return rate", "delta", ret))
    for i, (metric, method, pool) in enumerate(checks):
        for lft in (0.0, lift):
            r = simulate_fixed(pool, n_units, n_sims, lft, alpha=alpha, method=method, seed=seed + 10 * i + (lft > 0))
            rows.append({"check": f"95% interval covers the true lift ({'A/A' if lft == 0 else f'A/B, +{lft:.0%}'})",
                         "metric": metric, "method": method, "simulated_tests": n_sims, "units_per_test": n_units,
                         "result": r["coverage_abs"], "simulation_error": r["coverage_abs_se"],
                         "target": f"{1 - alpha:.0%}"})
    pk = simulate_peeking(conv, n_per_day, days, n_sims, 0.0, alpha=alpha, seed=seed + 99)
    for name, key in (("fixed-horizon test, read once at the end", "fpr_fixed_final"),
                      ("fixed-horizon test, read every day", "fpr_fixed_peeking"),
                      ("always-valid interval, read every day", "fpr_sequential")):
        rows.append({"check": f"A/A false positives: {name}", "metric": "conversion",
                     "method": "sequential" if "always" in name else "welch", "simulated_tests": n_sims,
                     "units_per_test": n_per_day * days, "result": pk[key], "simulation_error": pk[key + "_se"],
                     "target": f"at most {alpha:.0%}"})
    return pd.DataFrame(rows)


def sample_truth_pool(sample_dir, experiment_id: str, variant: str = "A"):
    """The sample generator's planted conversion probabilities of one experiment's control units.

    Reads ``truth/experiment_units.parquet`` (``p_convert``: base rate × the unit's
    engagement, as planted) and the unit's ``pre_orders`` from ``experiments.parquet``
    as the covariate. Returns a ``bernoulli`` :class:`Pool` (treatment: ``min(p(1+l), 0.95)``,
    the generator's own rule), so simulated tests follow the generator's mechanism.
    """
    from pathlib import Path

    import pandas as pd

    root = Path(sample_dir)
    u = pd.read_parquet(root / "truth" / "experiment_units.parquet")
    e = pd.read_parquet(root / "experiments.parquet", columns=["experiment_id", "unit_id", "pre_orders"])
    m = u.loc[(u["experiment_id"] == experiment_id) & (u["variant"] == variant)].merge(
        e, on=["experiment_id", "unit_id"], how="left")
    if m.empty:
        raise ValueError(f"no truth units for {experiment_id} / {variant} in {root}")
    return Pool("bernoulli", m["p_convert"].to_numpy(float), covariate=m["pre_orders"].fillna(0).to_numpy(float))
