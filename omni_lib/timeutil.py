"""One rule for user-given dates and times, shared by every module.

A bound the user types ("2025-06-30", a Timestamp, a datetime) is compared with a
timestamp column that may be tz-aware (the loader gives the config's timezone) or
naive (hand-made frames, CDNOW). :func:`as_bound` makes the two comparable: a naive
bound is read in the column's zone, an aware bound is converted to it (or to local
wall-clock time for a naive column), and a bare date can mean the end of that day.
"""
from __future__ import annotations

import datetime as _dt

import pandas as pd


def as_bound(value, like: pd.Series | None = None, *, end_of_day: bool = False,
             error: type[Exception] = ValueError, what: str = "date") -> pd.Timestamp:
    """A Timestamp comparable with the column ``like``; bad input raises ``error`` naming ``what``."""
    date_only = isinstance(value, _dt.date) and not isinstance(value, _dt.datetime)
    if isinstance(value, str):
        date_only = len(value.strip()) == 10
    try:
        t = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise error(f"{what}: cannot read {value!r} as a date or timestamp (write e.g. '2026-06-30')") from None
    if t is pd.NaT:
        raise error(f"{what}: {value!r} is not a date")
    if date_only and end_of_day:
        t = t + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)
    tz = getattr(getattr(like, "dt", None), "tz", None) if like is not None else None
    if tz is not None:
        t = t.tz_localize(tz) if t.tzinfo is None else t.tz_convert(tz)
    elif like is not None and t.tzinfo is not None:
        t = t.tz_localize(None)
    return t
