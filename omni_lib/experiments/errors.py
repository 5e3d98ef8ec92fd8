"""The one exception the A/B-test package raises for bad input."""
from __future__ import annotations


class ExperimentInputError(ValueError):
    """Bad input for an experiment analysis: names the experiment, table, column and count."""
