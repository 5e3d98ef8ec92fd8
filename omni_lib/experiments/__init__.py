"""A/B test analysis: sound statistics, a clear decision, safe peeking.

Typical use (a notebook)::

    from omni_lib import io, privacy
    from omni_lib import experiments as ab

    ds = io.load(config_path)
    tables, info = privacy.apply_consent(ds.tables)
    res = ab.analyze(tables, "EXP01_email_subject", config=ds.config)
    res.decision.verdict          # "ship" / "do not ship" / "keep running"
    res.srm, res.results, res.bayes, res.sequential, res.plan

Modules: ``units`` (assignments -> one row per unit with metrics), ``stats`` (pooled
z test / chi-square, Welch, delta method incl. GrowthBook's relative lift, CUPED, SRM,
Bayes incl. GrowthBook's relative-lift posterior, Holm / BH), ``sequential`` (always-valid
confidence sequences), ``planning`` (sample size, power, MDE), ``analysis``
(``analyze``, ``decide``, ``breakdown``, ``overview``), ``simulate`` (A/A and A/B
simulations for coverage and peeking), ``plots``.
"""
from __future__ import annotations

from .analysis import (CUPED_MIN_VARIANCE_REDUCTION, DEFAULT_GUARDRAILS, DEFAULT_SECONDARY, Decision, ExperimentResult, analyze, breakdown,
                       compare, decide, overview)
from .errors import ExperimentInputError
from .planning import (minimum_detectable_effect, plan_table, power_at, power_for_effect, sample_size,
                       sample_size_for_effect)
from .sequential import confidence_sequence, cumulative_looks, tune_tau2
from .stats import (adjust_pvalues, bayes_binary, bayes_normal, bayes_relative, compare_cuped, compare_means,
                    compare_proportions, compare_ratios, proportions_from_counts, relative_delta, srm_check,
                    welch_from_stats)
from .units import DEFAULT_WINDOW_DAYS, METRICS, ExperimentData, Metric, experiment_ids, prepare

__all__ = [
    "ExperimentInputError", "ExperimentData", "ExperimentResult", "Decision", "Metric", "METRICS",
    "DEFAULT_WINDOW_DAYS", "DEFAULT_SECONDARY", "DEFAULT_GUARDRAILS", "CUPED_MIN_VARIANCE_REDUCTION",
    "prepare", "experiment_ids", "analyze", "decide", "compare", "breakdown", "overview",
    "compare_means", "compare_ratios", "compare_cuped", "welch_from_stats", "srm_check", "bayes_binary",
    "bayes_normal", "bayes_relative", "compare_proportions", "proportions_from_counts", "relative_delta",
    "sample_size_for_effect", "power_for_effect", "adjust_pvalues", "confidence_sequence", "cumulative_looks", "tune_tau2",
    "sample_size", "power_at", "minimum_detectable_effect", "plan_table",
]
