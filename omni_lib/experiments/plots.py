"""Figures for the A/B-test reports (matplotlib; each returns the Figure, titled and labelled)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import PercentFormatter

__all__ = ["plot_srm", "plot_srm_overview", "plot_method_check", "plot_lifts", "plot_posterior", "plot_sequential",
           "plot_plan", "plot_breakdown",
           "plot_peeking", "plot_overview"]

def _forest(ax, y, est, low, high, colours):
    """Intervals as horizontal lines with a dot at the estimate (one colour per row)."""
    colours = list(colours)
    ax.hlines(y, np.asarray(low, float), np.asarray(high, float), colors=colours, lw=2)
    ax.scatter(np.asarray(est, float), y, c=colours, zorder=3, s=22)
    ax.axvline(0, color="black", lw=0.8)


_ROLE_COLOUR = {"primary": "#1f77b4", "secondary": "#7f7f7f", "guardrail": "#9467bd"}


def plot_srm(srm: dict, title: str = "Units per variant: planned vs observed"):
    t = srm["table"]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    x = np.arange(len(t))
    ax.bar(x - 0.2, t["expected_units"], 0.4, label="planned split", color="#c7c7c7")
    ax.bar(x + 0.2, t["units"], 0.4, label="observed", color="#d62728" if srm["alert"] else "#2ca02c")
    ax.set_xticks(x, t["variant"])
    ax.set_xlabel("variant")
    ax.set_ylabel("units")
    from ..report import pvalue

    ax.set_title(f"{title}\nsample-ratio check: {pvalue(srm['p_value'])}"
                 + ("  (split does not match the plan)" if srm["alert"] else ""))
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def plot_lifts(results: pd.DataFrame, title: str = "Relative lift vs control, 95% intervals"):
    """Forest plot of the decision rows: one line per metric and variant, guardrails in their colour."""
    r = results.loc[results["decision_row"] & np.isfinite(results["rel_low"])].iloc[::-1]
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(r) + 1.4))
    y = np.arange(len(r))
    colours = ["#d62728" if h else _ROLE_COLOUR[ro] for ro, h in zip(r["role"], r["harmful"])]
    _forest(ax, y, r["rel_lift"], r["rel_low"], r["rel_high"], colours)
    from ..report import humanise

    label = r["label"] if "label" in r else r["metric"].map(humanise)
    ax.set_yticks(y, [f"{ro}: {lb} ({v}, {humanise(me)})" for ro, lb, v, me in zip(r["role"], label, r["variant"],
                                                                                  r["method"])])
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("relative lift vs control (treatment / control - 1)")
    ax.set_ylabel("metric (variant, method)")
    ax.set_title(title + "\n(red: guardrail significantly worse)")
    fig.tight_layout()
    return fig


def plot_posterior(units: pd.DataFrame, control: str, treatments: list[str], column: str = "converted",
                   draws: int = 40_000, seed: int = 0, title: str = "Posterior of the relative lift (conversion)"):
    """Beta-binomial posterior draws of treatment/control - 1, one histogram per treatment."""
    rng = np.random.default_rng(seed)
    g = units.groupby("variant")[column].agg(["sum", "size"])
    c = rng.beta(1 + g.loc[control, "sum"], 1 + g.loc[control, "size"] - g.loc[control, "sum"], draws)
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    for v in treatments:
        t = rng.beta(1 + g.loc[v, "sum"], 1 + g.loc[v, "size"] - g.loc[v, "sum"], draws)
        rel = t / c - 1
        ax.hist(rel, bins=80, density=True, alpha=0.5, label=f"{v}: P(beats {control}) = {np.mean(rel > 0):.1%}")
    ax.axvline(0, color="black", lw=0.8)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("relative lift vs control")
    ax.set_ylabel("posterior density")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_sequential(seq: pd.DataFrame, unit: str = "share",
                    title: str = "Daily monitoring: fixed-horizon interval vs always-valid interval"):
    """Per variant: the estimate, the fixed 95% interval and the confidence sequence over the looks."""
    variants = list(dict.fromkeys(seq["variant"]))
    fig, axes = plt.subplots(len(variants), 1, figsize=(7.5, 3.2 * len(variants)), squeeze=False)
    k = 100.0 if unit == "share" else 1.0
    for ax, v in zip(axes[:, 0], variants):
        s = seq.loc[seq["variant"] == v]
        x = pd.to_datetime(s["look"])
        ax.fill_between(x, k * s["cs_low"].clip(lower=-1e9), k * s["cs_high"].clip(upper=1e9), alpha=0.25,
                        color="#2ca02c", label="always-valid (look daily)", step="post")
        ax.fill_between(x, k * s["fixed_low"], k * s["fixed_high"], alpha=0.25, color="#ff7f0e",
                        label="fixed-horizon 95% (valid once)", step="post")
        ax.plot(x, k * s["diff"], color="black", lw=1.2, label="estimate", drawstyle="steps-post")
        ax.axhline(0, color="grey", lw=0.8)
        finite = np.r_[k * s["fixed_low"].to_numpy(), k * s["fixed_high"].to_numpy()]
        finite = finite[np.isfinite(finite)]
        if finite.size:
            span = finite.max() - finite.min()
            ax.set_ylim(finite.min() - span, finite.max() + span)
        ax.set_title(f"{title}: {v} vs control")
        ax.set_xlabel("assignment day (units assigned up to that day)")
        ax.set_ylabel("lift (percentage points)" if unit == "share" else "lift")
        ax.legend(loc="upper right", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def plot_plan(table: pd.DataFrame, current_units: int | None = None, traffic_per_day: float | None = None,
              title: str = "How long a test must run to detect a lift"):
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    ax.plot(table["mde_rel"], table["days"], marker="o")
    for _, r in table.iterrows():
        ax.annotate(f"{r['n_total']:,.0f}", (r["mde_rel"], r["days"]), textcoords="offset points", xytext=(4, 4),
                    fontsize=7)
    if current_units and traffic_per_day:
        ax.axhline(current_units / traffic_per_day, color="grey", ls="--", lw=0.8, label="this test's length")
        ax.legend()
    ax.set_yscale("log")
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("relative lift to detect (80% power, labels: units needed)")
    ax.set_ylabel("days at the current traffic (log scale)")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_breakdown(bd: pd.DataFrame, by: str, title: str | None = None):
    r = bd.loc[np.isfinite(bd["rel_low"])].iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.38 * len(r) + 1.4))
    y = np.arange(len(r))
    colours = ["#c7c7c7" if s else "#1f77b4" for s in r["small"]]
    _forest(ax, y, r["rel_lift"], r["rel_low"], r["rel_high"], colours)
    ax.set_yticks(y, [f"{s} ({v}, n={a + b:,})" for s, v, a, b in zip(r[by], r["variant"], r["n_control"],
                                                                      r["n_variant"])])
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("relative lift vs control, 95% interval (uncorrected)")
    ax.set_ylabel(by.replace("_", " "))
    ax.set_title(title or f"Lift by {by.replace('_', ' ')} (grey: too small to read)")
    fig.tight_layout()
    return fig


def plot_peeking(sim: dict, title: str = "A/A tests looked at every day: share declared 'significant'"):
    b = sim["by_look"]
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    ax.plot(b["day"], b["fixed_any_so_far"], label=f"fixed-horizon p < 0.05 at any look "
                                                   f"(ends at {sim['fpr_fixed_peeking']:.1%})", color="#d62728")
    ax.plot(b["day"], b["sequential_any_so_far"], label=f"always-valid sequence (ends at {sim['fpr_sequential']:.1%})",
            color="#2ca02c")
    ax.axhline(0.05, color="grey", ls="--", lw=0.8, label="promised 5%")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("day of the test (one look per day)")
    ax.set_ylabel("false positives so far")
    ax.set_title(f"{title}\n({sim['n_sims']:,} simulated tests with no true effect)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_overview(ov: pd.DataFrame, title: str = "Every experiment: relative lift of the primary metric"):
    r = ov.loc[ov["decision"] != "error"].iloc[::-1]
    fig, ax = plt.subplots(figsize=(7.5, 0.5 * len(r) + 1.4))
    y = np.arange(len(r))
    col = {"ship": "#2ca02c", "do not ship": "#d62728", "keep running": "#ff7f0e"}
    colours = [col[d] for d in r["decision"]]
    _forest(ax, y, r["rel_lift"], r["rel_low"], r["rel_high"], colours)
    ax.set_yticks(y, [f"{e} ({v})" + (" SRM!" if s else "") for e, v, s in zip(r["experiment"], r["variant"],
                                                                                r["srm_alert"])])
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("relative lift vs control, 95% interval (green ship, red do not ship, orange keep running)")
    ax.set_ylabel("experiment (variant shown)")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_srm_overview(ov: pd.DataFrame, threshold: float = 0.001,
                      title: str = "Sample-ratio check per experiment"):
    r = ov.loc[ov["decision"] != "error"].iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(r) + 1.4))
    score = -np.log10(np.maximum(r["srm_p_value"].astype(float), 1e-300))
    ax.barh(np.arange(len(r)), score, color=["#d62728" if a else "#2ca02c" for a in r["srm_alert"]])
    ax.axvline(-np.log10(threshold), color="black", ls="--", lw=0.8, label=f"alarm at p = {threshold:g}")
    ax.set_yticks(np.arange(len(r)), r["experiment"])
    ax.set_xlabel("-log10(p-value) of the chi-square test (longer = stronger mismatch)")
    ax.set_ylabel("experiment")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def plot_method_check(mc: pd.DataFrame, alpha: float = 0.05,
                      title: str = "Looking every day: false positives with and without the always-valid interval"):
    """The A/A false-positive rows of ``simulate.method_check`` as bars with 95% simulation error."""
    fp = mc.loc[mc["check"].str.startswith("A/A false")]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    labels = [c.split(": ", 1)[1] for c in fp["check"]]
    colours = ["#2ca02c" if "always" in c else ("#d62728" if "every day" in c else "#7f7f7f") for c in labels]
    ax.barh(labels, fp["result"], xerr=1.96 * fp["simulation_error"], color=colours)
    ax.axvline(alpha, color="black", ls="--", lw=0.8, label=f"promised {alpha:.0%}")
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel(f"share of {int(fp['simulated_tests'].iloc[0]):,} simulated A/A tests declared significant")
    ax.set_ylabel("how the test is read")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig
