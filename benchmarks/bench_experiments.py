"""A/B-test analysis: timings, recovered effects vs the planted truth, and simulations.

    .venv/bin/python benchmarks/bench_experiments.py [--sims 2000] [--data data/sample]

Prints (no assertions; the slow tests assert the same bounds):

1. times: load + consent, ``analyze`` per experiment, ``overview`` of all;
2. per experiment and treatment: the planted lift vs the estimate and its 95% interval
   (CUPED and plain Welch), the SRM p-value, the guardrail and the decision;
3. coverage of the 95% intervals over ``--sims`` simulated A/A and A/B tests per
   experiment, drawn from the generator's planted per-unit conversion probabilities
   (``truth/experiment_units.parquet``) with its own treatment rule, at each
   experiment's size; plus revenue (Welch) and return rate (delta method) from the
   sample's observed units. Target 93.5%-96.5%;
4. daily peeking, per experiment with a multi-day enrolment, at its traffic: A/A false
   positives of the fixed-horizon test read once / read daily vs the always-valid
   sequence read daily (target <= 5%), and with the planted lift the power of each and
   the sequence's coverage at all looks at once.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from omni_lib import io, privacy  # noqa: E402
from omni_lib import experiments as ab  # noqa: E402
from omni_lib.experiments.simulate import Pool, sample_truth_pool, simulate_fixed, simulate_peeking  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
pd.set_option("display.width", 200)
pd.set_option("display.max_columns", 30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sims", type=int, default=2000)
    ap.add_argument("--data", default=str(ROOT / "data" / "sample"))
    a = ap.parse_args()
    data = Path(a.data)
    truth = json.loads((data / "truth" / "truth.json").read_text())["experiments"]

    # 1. times -------------------------------------------------------------------------
    t0 = time.perf_counter()
    cfg = ROOT / "omni.yaml"
    ds = io.load(cfg, tables=["customers", "orders", "touchpoints", "experiments"])
    tables, consent = privacy.apply_consent(ds.tables)
    t_load = time.perf_counter() - t0
    res, times = {}, {}
    for x in ab.experiment_ids(tables):
        t = time.perf_counter()
        res[x] = ab.analyze(tables, x, config=ds.config)
        times[x] = time.perf_counter() - t
    t = time.perf_counter()
    ab.overview(tables, config=ds.config)
    t_over = time.perf_counter() - t
    print("== 1. times (s)")
    print(f"load + validate + consent: {t_load:.1f}; overview of {len(res)} experiments: {t_over:.1f}")
    print(", ".join(f"{x}: {v:.2f}" for x, v in times.items()))

    # 2. recovered vs planted -------------------------------------------------------------
    rows = []
    for x, r in res.items():
        tv = truth[x]["variants"]
        for v in r.data.treatments:
            c = r.results.query("metric == 'conversion' and method == 'cuped' and variant == @v").iloc[0]
            w = r.results.query("metric == 'conversion' and method == 'welch' and variant == @v").iloc[0]
            g = r.decision_rows("guardrail").query("variant == @v")
            rows.append({"experiment": x, "variant": v, "true_lift": tv[v]["true_lift"],
                         "expected_lift": tv[v]["expected_lift_vs_control"],
                         "cuped_lift": c["rel_lift"], "cuped_ci": f"[{c['rel_low']:+.3f}, {c['rel_high']:+.3f}]",
                         "welch_lift": w["rel_lift"], "welch_ci": f"[{w['rel_low']:+.3f}, {w['rel_high']:+.3f}]",
                         "true_in_ci": c["rel_low"] <= tv[v]["true_lift"] <= c["rel_high"],
                         "var_red": c["variance_reduction"], "srm_p": r.srm["p_value"],
                         "return_diff": (g["abs_lift"].iloc[0] if len(g) else float("nan")),
                         "decision": r.decision.verdict + (f" {r.decision.variant}" if r.decision.variant else "")})
    print("\n== 2. recovered effects (relative lift in conversion) vs the planted truth")
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda f: f"{f:.4g}"))

    # 3. coverage ----------------------------------------------------------------------------
    cov = []
    for i, (x, tx) in enumerate(truth.items()):
        pool = sample_truth_pool(data, x)
        lifts = sorted({0.0} | {v["true_lift"] for v in tx["variants"].values()} | ({0.2} if x == "EXP02_cta_button"
                                                                                        else set()))
        for j, lift in enumerate(lifts):
            for method in ("welch", "cuped"):
                r = simulate_fixed(pool, tx["n_units"], a.sims, lift, method=method, seed=1000 + 10 * i + j)
                cov.append({"pool": f"{x} (planted p)", "units": tx["n_units"], "lift": lift, "method": method,
                            "coverage_abs": r["coverage_abs"], "coverage_rel": r["coverage_rel"],
                            "rejects": r["rejection_rate"], "mc_se": r["coverage_abs_se"]})
    u = res["EXP01_email_subject"].data.units
    for name, pool, method in (("revenue per unit (EXP01 units)", Pool("values", u["revenue"].to_numpy(float)), "welch"),
                               ("return rate (EXP01 units)", Pool("ratio", u["returned"].to_numpy(float),
                                                                  u["orders"].to_numpy(float)), "delta")):
        for j, lift in enumerate((0.0, 0.2)):
            r = simulate_fixed(pool, 6000, a.sims, lift, method=method, seed=2000 + j)
            cov.append({"pool": name, "units": 6000, "lift": lift, "method": method, "coverage_abs": r["coverage_abs"],
                        "coverage_rel": r["coverage_rel"], "rejects": r["rejection_rate"], "mc_se": r["coverage_abs_se"]})
    cov = pd.DataFrame(cov)
    cov["in_target"] = cov["coverage_abs"].between(0.935, 0.965) & cov["coverage_rel"].between(0.935, 0.965)
    print(f"\n== 3. coverage of 95% intervals, {a.sims:,} simulated tests per row (target 93.5%-96.5%)")
    print(cov.to_string(index=False, float_format=lambda f: f"{f:.4g}"))
    print(f"rows in target: {int(cov['in_target'].sum())}/{len(cov)}; simulated tests: {a.sims * len(cov):,}")

    # 4. peeking -----------------------------------------------------------------------------
    pk = []
    for i, (x, tx) in enumerate(truth.items()):
        days = int(tx["enrollment_days"])
        if days < 2:
            continue
        per_day = int(round(tx["n_units"] / days))
        pool = sample_truth_pool(data, x)
        lift = max(v["true_lift"] for v in tx["variants"].values())
        for lft in sorted({0.0, lift}):
            r = simulate_peeking(pool, per_day, days, a.sims, lft, seed=3000 + 10 * i + (lft > 0))
            pk.append({"experiment": x, "days": days, "units_per_day": per_day, "lift": lft,
                       "fixed_read_once": r["fpr_fixed_final"], "fixed_read_daily": r["fpr_fixed_peeking"],
                       "sequential_read_daily": r["fpr_sequential"], "cs_covers_all_looks": r["cs_coverage_all_looks"],
                       "mc_se_seq": r["fpr_sequential_se"]})
    pk = pd.DataFrame(pk)
    print(f"\n== 4. daily peeking, {a.sims:,} simulated tests per row "
          "(lift 0: false-positive rates, target <= 5% for the sequence; lift > 0: power)")
    print(pk.to_string(index=False, float_format=lambda f: f"{f:.4g}"))
    print(f"\ntotal time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
