"""Reading the prepared store: the one interface every analysis and notebook uses.

``open_store(config_path)`` returns a :class:`Store`; ``store.tables`` gives the
analysis tables as pandas (read on first use, consent already applied, every row keyed
by the unified ``customer_id``); ``store.sql(query)`` runs DuckDB SQL over the store for
the heavy set-based steps, returning only the aggregate to pandas.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Callable, Iterator

import duckdb
import pandas as pd

from omni_lib.config import Config, load_config
from omni_lib.schema import TABLES

from .prepare import StoreError, is_current, prepare, read_meta

#: analysis tables (the contract's, without the raw identities) plus the record map
ANALYSIS_TABLES = tuple(t for t in TABLES if t != "identities")


class _Tables(Mapping):
    """Lazy dict of the store's tables as pandas frames; absent tables are None."""

    def __init__(self, store: "Store"):
        self._store = store
        self._cache: dict[str, pd.DataFrame | None] = {}

    def __getitem__(self, name: str) -> pd.DataFrame | None:
        if name not in self._cache:
            self._cache[name] = self._store.table(name)
        return self._cache[name]

    def get(self, name, default=None):
        v = self[name] if name in ANALYSIS_TABLES or self._store.has(name) else None
        return default if v is None else v

    def __iter__(self) -> Iterator[str]:
        return iter(ANALYSIS_TABLES)

    def __len__(self) -> int:
        return len(ANALYSIS_TABLES)

    def __setitem__(self, name, value):  # notebooks may drop a table they are done with
        self._cache[name] = value


class Store:
    """A prepared store (DuckDB file) and the config it was built from."""

    def __init__(self, path: str | os.PathLike, config: Config):
        self.path = Path(path)
        self.config = config
        meta = read_meta(self.path)
        if meta is None:
            raise StoreError(f"no prepared store at {self.path}: run `omni prepare` first")
        self.meta: dict = meta
        self._con: duckdb.DuckDBPyConnection | None = None
        self.tables = _Tables(self)

    # -- connection ----------------------------------------------------------------
    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """A read-only DuckDB connection on the store (session TimeZone = the config's)."""
        if self._con is None:
            self._con = duckdb.connect(str(self.path), read_only=True)
            self._con.execute(f"SET TimeZone = '{self.config.timezone}'")
        return self._con

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- tables --------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return [r[0] for r in self.con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_name <> '_meta'").fetchall()]

    def has(self, name: str) -> bool:
        """True when the store holds the table (an optional table absent from the data is not)."""
        return name in self.names

    def table(self, name: str, columns: list[str] | None = None) -> pd.DataFrame | None:
        """One table as pandas (None when the data has no such table)."""
        if not self.has(name):
            return None
        cols = "*" if not columns else ", ".join(f'"{c}"' for c in columns)
        return self.con.sql(f'SELECT {cols} FROM "{name}"').to_arrow_table().to_pandas()

    def sql(self, query: str, params: list | None = None) -> pd.DataFrame:
        """Run SQL over the store; the result (an aggregate, please) comes back as pandas."""
        return self.con.execute(query, params or []).to_arrow_table().to_pandas()

    # -- derived tables, computed once ---------------------------------------------
    @property
    def cache_dir(self) -> Path:
        """Where derived tables of this store are kept (beside the store file)."""
        return self.path.with_name(self.path.name + ".cache")

    def cached(self, name: str, params: Mapping | None, compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
        """A derived table (per-customer features, paths, ...) computed once per store and parameters.

        The first call runs ``compute()`` and keeps its frame as Parquet beside the store; later
        calls (the same run's other notebooks, the next run on unchanged data) read it back. The
        key is the store's fingerprint plus ``params``, so a rebuilt store or other parameters
        never see an old result (a rebuilt store also empties the folder).
        """
        import hashlib
        import json

        import omni_lib

        key = json.dumps({"fp": self.meta.get("fingerprint"), "version": omni_lib.__version__, "name": name,
                          "params": params or {}},
                         sort_keys=True, default=str)
        path = self.cache_dir / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.parquet"
        def read():
            try:
                return pd.read_parquet(path) if path.is_file() else None
            except Exception:  # a torn or foreign file: compute again
                path.unlink(missing_ok=True)
                return None

        df = read()
        if df is not None:
            return df
        import fcntl

        self.cache_dir.mkdir(parents=True, exist_ok=True)
        # notebooks run side by side: the second asking for the same table waits for the first
        with open(path.with_name(f".{path.name}.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            df = read()
            if df is not None:
                return df
            df = compute()
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            df.to_parquet(tmp)
            os.replace(tmp, path)
        return df

    # -- summaries -----------------------------------------------------------------
    @property
    def consent(self) -> dict:
        """``{"excluded_customers", "rows_removed", "note"}`` of the consent rule."""
        return self.meta.get("consent", {})

    @property
    def notes(self) -> list[str]:
        return list(self.meta.get("notes", []))

    @property
    def data_end(self) -> pd.Timestamp | None:
        return self.config.data_end

    def missing(self, *names: str) -> list[str]:
        """The given tables the data does not have."""
        return [n for n in names if not self.has(n)]

    def __repr__(self) -> str:
        rows = self.meta.get("rows", {})
        return f"Store({self.path}, " + ", ".join(f"{k}={v:,}" for k, v in rows.items()) + ")"


def open_store(config: Config | str | os.PathLike | None = None, *, prepare_if_needed: bool = True,
               progress: bool = False) -> Store:
    """The store for this config, prepared first when it is missing or out of date.

    Config resolution is the one rule of :func:`omni_lib.config.find_config` (explicit
    path, ``$OMNI_CONFIG``, ``./omni.yaml``, the project's ``omni.yaml``).
    """
    from omni_lib import privacy

    cfg = config if isinstance(config, Config) else load_config(config)
    if prepare_if_needed and not is_current(cfg, privacy.pseudonym_key(cfg)):
        prepare(cfg, progress=progress)
    return Store(cfg.store_path, cfg)
