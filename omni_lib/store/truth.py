"""Scoring against planted truth (the generated sample only): which true person each
unified customer stands for.

Analyses run on *resolved* customers; the sample's truth is keyed by the *true* person.
A unified customer stands for the person who holds most of its records (ties: the
first). Used only to score (reports' "against the known truth" lines, tests' bounds),
never to analyse.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd


def true_person(record_map: pd.DataFrame, truth_links: pd.DataFrame) -> pd.Series:
    """Unified ``customer_id`` -> the true person holding most of its records."""
    m = record_map[["record_id", "customer_id"]].merge(
        truth_links[["record_id", "customer_id"]].rename(columns={"customer_id": "person"}), on="record_id")
    n = m.groupby(["customer_id", "person"]).size().rename("n").reset_index()
    n = n.sort_values(["customer_id", "n", "person"], ascending=[True, False, True])
    return n.drop_duplicates("customer_id").set_index("customer_id")["person"]


def truth_for_customers(store, column: str, table: str = "customers.parquet") -> pd.Series | None:
    """A planted per-person column (e.g. ``segment``) for every unified customer of the store,
    through :func:`true_person`; None when the data has no planted truth."""
    root = Path(store.config.root) / "truth"
    links_file, table_file = root / "identity_links.parquet", root / table
    if not (links_file.is_file() and table_file.is_file()):
        return None
    person = true_person(store.table("record_map"), pd.read_parquet(links_file))
    values = pd.read_parquet(table_file, columns=["customer_id", column]).set_index("customer_id")[column]
    return person.map(values).rename(column)
