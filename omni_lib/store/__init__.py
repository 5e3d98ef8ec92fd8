"""The prepared store: validate once, unify once, every analysis on the unified customer.

Flow of the package: contract (``schema``, ``config``, ``io`` readers) -> **store**
(``prepare``: read, validate, resolve identity, apply consent, pseudonymise, write one
DuckDB file) -> analyses (read the store through :class:`Store`) -> reports (``runner``).
"""
from .prepare import STORE_VERSION, StoreError, fingerprint, is_current, prepare, read_meta
from .reader import ANALYSIS_TABLES, Store, open_store

__all__ = ["STORE_VERSION", "StoreError", "Store", "fingerprint", "is_current", "open_store", "prepare",
           "read_meta", "ANALYSIS_TABLES"]
