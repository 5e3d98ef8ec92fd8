"""``omni prepare``: raw exports -> one prepared store (an embedded DuckDB file).

The store is the staged layer every analysis reads (dbt's staging models,
cookiecutter-data-science's raw -> interim -> processed). Built once per change of the
config or an input file, in these steps:

1. **read + validate** every configured table against the contract (the same full
   problem list as ``omni validate``; a problem stops the prepare and the previous
   store stays as it was);
2. **unify**: identity resolution links the channel records (``identities``) into
   unified customers; every row keyed by a channel ``record_id`` gets that customer's
   ``customer_id`` (a ``customer_id`` given in the data is used as given);
3. **customers**: the given table, or one derived from the records and orders (first
   seen, acquisition channel = channel of the first order, region = the records' city);
4. **consent**: customers without analytics consent are dropped from every analysis
   table (the rule in :mod:`omni_lib.privacy`);
5. **pseudonymise**: raw e-mails, phones and names never enter the store; the record
   map carries keyed hashes only;
6. **write** atomically (a new file, then one rename) with a ``_meta`` table holding
   the fingerprint, counts, consent and identity summaries.

The fingerprint covers the config file, every input file's path, size and mtime, the
store format version and a keyed digest of the pseudonymisation key, so a changed
export, config or key is noticed and anything else reuses the store.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from omni_lib.config import Config, ConfigError, load_config
from omni_lib.schema import CONTRACT, PERSON_KEYS, TABLES, ContractError

log = logging.getLogger(__name__)

#: bump when the store's layout or meaning changes: every store is rebuilt
STORE_VERSION = "1"
#: tables whose rows belong to a person (by customer_id, or record_id to be mapped)
PERSON_TABLES = ("orders", "touchpoints", "surveys", "tickets")
#: DuckDB memory while staging and writing big tables (beyond it, DuckDB spills to disk)
STAGE_MEMORY = os.environ.get("OMNI_STORE_MEMORY", "3GB")
#: thresholds at which the record -> customer labels are kept for the identity report
CURVE_THRESHOLDS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)


class StoreError(RuntimeError):
    """The store cannot be built or read (the message says what to do)."""


# --------------------------------------------------------------------------- fingerprint
def _input_files(cfg: Config) -> list[Path]:
    files: list[Path] = []
    if cfg.database is not None:
        files.append(Path(cfg.database))
    for name in TABLES:
        if name in cfg.tables and cfg.table_format(name) != "duckdb":
            files.append(Path(cfg.source(name)))
    labels = (getattr(cfg, "identity", None) or {}).get("labels")
    if labels:  # clerical-review labels change the links
        files.append(Path(labels))
    return files


def fingerprint(cfg: Config, key: bytes | None = None) -> str:
    """What the store was built from: config bytes, input files (path, size, mtime), version."""
    h = hashlib.sha256()
    h.update(f"store {STORE_VERSION}\n".encode())
    if cfg.path is not None and Path(cfg.path).is_file():
        h.update(Path(cfg.path).read_bytes())
    for f in _input_files(cfg):
        try:
            st = f.stat()
            h.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{f}|missing\n".encode())
    if key is not None:  # a new key means new pseudonyms; the digest does not reveal the key
        h.update(hmac.new(key, b"omni-store-fingerprint", hashlib.sha256).digest())
    return h.hexdigest()


def read_meta(path: Path) -> dict | None:
    """The ``_meta`` of a store file, or None when there is no readable store."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error:
        return None
    try:
        rows = con.execute("SELECT key, value FROM _meta").fetchall()
    except duckdb.Error:
        return None
    finally:
        con.close()
    return {k: json.loads(v) for k, v in rows}


def is_current(cfg: Config, key: bytes | None = None) -> bool:
    """True when the store exists and was built from exactly this config and these files."""
    meta = read_meta(cfg.store_path)
    return bool(meta) and meta.get("fingerprint") == fingerprint(cfg, key)


# --------------------------------------------------------------------------- progress
class _Steps:
    """Progress per step as plain lines (a log file stays readable), with timings."""

    def __init__(self, enabled: bool, out=None):
        self.enabled = enabled
        self.out = out or sys.stderr
        self.timings: dict[str, float] = {}
        self._name: str | None = None
        self._t0 = 0.0

    def __call__(self, name: str) -> None:
        self.done()
        self._name, self._t0 = name, time.perf_counter()
        if self.enabled:
            print(f"prepare: {name} ...", file=self.out, flush=True)

    def done(self) -> None:
        if self._name is not None:
            dt = time.perf_counter() - self._t0
            self.timings[self._name] = round(dt, 2)
            if self.enabled:
                print(f"prepare: {self._name} done in {dt:.1f} s", file=self.out, flush=True)
            self._name = None


# --------------------------------------------------------------------------- the pipeline
def prepare(config: Config | str | os.PathLike | None = None, *, force: bool = False,
            progress: bool = True, resolver_params: dict | None = None,
            links: pd.DataFrame | None = None) -> dict:
    """Build the store if the config or an input changed (or ``force``); return its meta.

    ``links``: a given record -> customer map (``record_id``, ``customer_id``; e.g. a CDP's
    export, or the sample's planted truth in tests) used instead of identity resolution.
    Raises ``ContractError`` (every problem, as ``omni validate``) or ``ConfigError``;
    the previous store is then left untouched.
    """
    from omni_lib import privacy

    cfg = config if isinstance(config, Config) else load_config(config)
    key = privacy.pseudonym_key(cfg)
    fp = fingerprint(cfg, key)
    if links is not None:
        fp = hashlib.sha256((fp + str(pd.util.hash_pandas_object(
            links[["record_id", "customer_id"]], index=False).sum())).encode()).hexdigest()
    meta = read_meta(cfg.store_path)
    if not force and meta and meta.get("fingerprint") == fp:
        if progress:
            print(f"prepare: the store {cfg.store_path} is up to date", file=sys.stderr)
        return {**meta, "rebuilt": False}
    steps = _Steps(progress)
    t_start = time.perf_counter()

    steps("read and validate")
    from omni_lib import io

    from . import chunked

    names = [t for t in TABLES if t in cfg.tables]
    big = chunked.big_tables(cfg, names)   # event tables too big for one frame: staged in slices
    frames, problems, notes = io._load(cfg, [n for n in names if n not in big], True)
    problems += _outcomes(cfg, frames)
    stage_path = Path(cfg.store_path).with_name(f".{Path(cfg.store_path).name}.{os.getpid()}.stage")
    stage_con = None
    if big:
        stage_path.parent.mkdir(parents=True, exist_ok=True)
        stage_path.unlink(missing_ok=True)
        stage_con = _stage_connection(stage_path, cfg.timezone)
    try:
        staged_rows = {}
        broken = {p.table for p in problems if p.check in ("CSV row shape", "CSV quotes", "readable",
                                                             "unique column names", "non-empty")}
        for name in big:
            n, probs, nts = chunked.stage(stage_con, cfg, name, frames, {}, broken)
            staged_rows[name] = n
            problems += probs
            notes += nts
        if problems:
            steps.done()
            from omni_lib.schema import sort_problems

            raise ContractError(sort_problems(problems))
        frames = {k: v for k, v in frames.items() if v is not None}
        rows_in = {**{k: int(len(v)) for k, v in frames.items()}, **staged_rows}
        return _prepare_rest(cfg, key, fp, frames, rows_in, notes, names, steps, t_start, progress,
                             links, resolver_params, stage_con, list(big))
    finally:
        if stage_con is not None:
            stage_con.close()
        for q in (stage_path, Path(str(stage_path) + ".wal")):
            q.unlink(missing_ok=True)


def _stage_connection(path: Path, tz: str) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(path))
    con.execute(f"SET TimeZone = '{tz}'")
    # bounded memory: big sorts and joins spill to disk beside the store instead
    con.execute(f"SET memory_limit = '{STAGE_MEMORY}'")
    con.execute(f"SET temp_directory = '{path.parent / '.duckdb_tmp'}'")
    return con


def _prepare_rest(cfg, key, fp, frames, rows_in, notes, names, steps, t_start, progress, links,
                  resolver_params, stage_con, staged):
    """Steps 2-6 of :func:`prepare` (after the tables were read and validated)."""
    sv = _Staged(stage_con, staged)

    steps("unify identities")
    if sv:  # record ids the staged tables use are records too (each its own customer if unknown)
        frames[_STAGED_IDS] = pd.DataFrame({"record_id": sv.record_ids()})
    if links is not None:
        record_map, identity_meta, identity_tables = _given_links(frames, links)
    else:
        record_map, identity_meta, identity_tables = _unify(cfg, frames, key, resolver_params or {})
    frames.pop(_STAGED_IDS, None)

    steps("map rows to customers")
    frames, mapping_meta = _map_rows(frames, record_map)
    if sv:
        rows = {**mapping_meta["rows"], **sv.map(record_map)}
        mapping_meta["rows"] = {t: rows[t] for t in PERSON_TABLES if t in rows}
        mapping_meta["notes"] = _mapping_notes(mapping_meta["rows"])

    steps("customers")
    customers, customers_meta = _customers(cfg, frames, record_map, extra_ids=sv.customer_ids() if sv else None)

    steps("consent")
    frames, customers, record_map, consent = _consent(cfg, frames, customers, record_map)
    if sv:
        removed = sv.consent(consent.pop("_excluded"))
        consent["rows_removed"].update({k: v for k, v in removed.items() if v or consent["excluded_customers"]})
    consent.pop("_excluded", None)

    steps("write the store")
    meta = {
        "fingerprint": fp,
        "store_version": STORE_VERSION,
        "created": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "config": str(cfg.path) if cfg.path else None,
        "data_root": str(cfg.root),
        "timezone": cfg.timezone,
        "currency": cfg.currency,
        "data_end": cfg.data_end.isoformat() if cfg.data_end is not None else None,
        "tables_configured": names,
        "rows_in": rows_in,
        "notes": notes + mapping_meta["notes"] + customers_meta["notes"],
        "consent": consent,
        "identity": identity_meta,
        "customers": customers_meta,
        "mapping": mapping_meta,
    }
    tables = {**frames, "customers": customers, "record_map": record_map, **identity_tables}
    tables.pop("identities", None)  # raw PII never enters the store
    meta["rows"] = {k: int(len(v)) for k, v in tables.items()}
    if sv:
        meta["rows"].update(sv.rows())
        meta["rows"] = {k: meta["rows"][k] for k in [*TABLES, *meta["rows"]] if k in meta["rows"]}
    steps.timings["write the store"] = 0.0
    _write(cfg.store_path, tables, meta, cfg.timezone, also=sv.write if sv else None)
    steps.done()
    meta["timings"] = steps.timings
    meta["seconds"] = round(time.perf_counter() - t_start, 2)
    _write_meta(cfg.store_path, {"timings": steps.timings, "seconds": meta["seconds"]})
    if progress:
        print(f"prepare: store written to {cfg.store_path} in {meta['seconds']:.1f} s", file=sys.stderr)
    return {**meta, "rebuilt": True}


# --------------------------------------------------------------------------- steps
def _outcomes(cfg: Config, frames: dict) -> list:
    """Per-unit experiment outcomes (``experiments.outcomes`` in omni.yaml): your column ->
    the outcome name, numeric (0/1 or true/false is a rate). Returns contract problems."""
    from omni_lib.schema import Problem, _rows

    t = cfg.tables.get("experiments")
    exp = frames.get("experiments")
    if t is None or exp is None or not t.outcomes:
        return []
    problems = []
    for name, col in t.outcomes.items():
        if col not in exp:
            problems.append(Problem("experiments", name, "column present", len(exp), [], str(cfg.source("experiments")),
                                    f"outcome '{name}' is mapped from your column '{col}', which is not in the file "
                                    f"(columns there: {', '.join(map(str, list(exp.columns)[:12]))}); check "
                                    "data.tables.experiments.outcomes in omni.yaml"))
            continue
        raw = exp[col]
        if pd.api.types.is_bool_dtype(raw.dtype):
            val = raw.astype("Float64")
        else:
            text = raw.astype("string").str.strip().str.lower()
            text = text.replace({"true": "1", "false": "0", "yes": "1", "no": "0"})
            val = pd.to_numeric(text, errors="coerce")
            bad = val.isna() & text.notna()
            if bad.any():
                problems.append(Problem("experiments", name, "number", int(bad.sum()),
                                        raw[bad].astype(str).head(5).tolist(), str(cfg.source("experiments")),
                                        _rows(int(bad.sum()), f"of outcome column '{col}' are not numbers "
                                              "(an outcome is a number per unit; 0/1 or true/false for a rate)")))
                continue
        exp = exp.drop(columns=[col]).assign(**{name: val.astype("float64").to_numpy()})
    frames["experiments"] = exp
    return problems


_STAGED_IDS = "__staged_record_ids"


def _record_ids_in(frames: dict[str, pd.DataFrame]) -> pd.Series:
    parts = [df["record_id"].dropna() for name, df in frames.items()
             if (name in PERSON_TABLES or name == _STAGED_IDS) and "record_id" in df]
    if not parts:
        return pd.Series([], dtype="string")
    return pd.concat(parts, ignore_index=True).drop_duplicates().astype("string")


def _unify(cfg: Config, frames: dict[str, pd.DataFrame], key: bytes, params: dict
           ) -> tuple[pd.DataFrame, dict, dict[str, pd.DataFrame]]:
    """Record -> unified customer map (no raw PII), identity summary, tables for report 01."""
    ident = frames.get("identities")
    if ident is None or ident.empty:
        rids = _record_ids_in(frames)
        rm = pd.DataFrame({"record_id": rids.to_numpy(), "source": pd.array([None] * len(rids), dtype="string"),
                           "customer_id": rids.to_numpy(), "linked_by": "no identities table"})
        for c in ("record_id", "source", "customer_id", "linked_by"):
            rm[c] = rm[c].astype("string")
        note = ("no identities table: each channel record id is its own customer (records of one person in "
                "two channel systems are not linked)" if len(rids) else "")
        return rm, {"resolved": False, "records": int(len(rids)), "note": note}, {}

    from omni_lib import identity

    # identity: settings from omni.yaml (per-system one-account rule, a clerical-review labels file)
    p = {"threshold": 0.5, "seed": 42, **(getattr(cfg, "identity", None) or {}), **params}
    resolver = identity.IdentityResolver(key=key, **p).fit(ident)
    links = resolver.links_.copy()
    # creation time and consent recorded by each channel system travel with the record
    extra_cols = [c for c in ("created_at", "consent_analytics", "consent_marketing", "city") if c in ident]
    extra = ident.drop_duplicates("record_id").set_index("record_id")[extra_cols]
    links = links.join(extra, on="record_id")
    if "city" in links:  # a city is not a direct identifier; kept normalised for the region
        links["city"] = links["city"].astype("string").str.strip().str.title()
    tables: dict[str, pd.DataFrame] = {}
    # labels at other thresholds (the identity report's quality curve), reusing the scored pairs
    curve = pd.DataFrame({"record_id": links["record_id"]})
    # The labels at other thresholds serve one chart: quality against known links, which only a
    # data set with labelled truth has (the generated sample). Without it they are not computed
    # (8 re-clusterings: a third of identity's time at 200k customers).
    scored = (Path(cfg.root) / "truth" / "identity_links.parquet").is_file()
    for t in (CURVE_THRESHOLDS if scored else ()):
        lab = resolver.recluster(t).set_index("record_id")["customer_id"]
        curve[f"t_{t:g}"] = curve["record_id"].map(lab).astype("string")
    tables["identity_curve"] = curve
    tables["identity_review"] = resolver.borderline_pairs(100)
    model_rows = []
    for comp in resolver.model_.get("comparisons", []):
        for lvl in comp["comparison_levels"]:
            if lvl.get("is_null_level"):
                continue
            m, u = lvl.get("m_probability"), lvl.get("u_probability")
            model_rows.append({"comparison": comp["output_column_name"], "level": lvl["label_for_charts"],
                               "m": m, "u": u, "weight": float(np.log2(m / u)) if m and u else None})
    tables["identity_model"] = pd.DataFrame(model_rows, columns=["comparison", "level", "m", "u", "weight"])
    meta = {"resolved": True, "records": int(len(links)), "params": p,
            "counts": {k: (int(v) if isinstance(v, (int, np.integer)) else v) for k, v in resolver.counts_.items()},
            "timings": resolver.timings_,
            "prior": resolver.model_.get("probability_two_random_records_match"),
            "model_skipped": bool(getattr(resolver, "model_skipped_", False)),
            # the resolver's own estimate of its quality from its match probabilities (no labels needed)
            "estimated_quality": getattr(resolver, "quality_", None)}
    # record ids used by rows but absent from identities: each is its own customer
    missing = _record_ids_in(frames)
    missing = missing[~missing.isin(links["record_id"])]
    if len(missing):
        add = pd.DataFrame({"record_id": missing.to_numpy(), "customer_id": missing.to_numpy(),
                            "linked_by": "not in identities"})
        links = pd.concat([links, add], ignore_index=True)
    for c in ("record_id", "source", "customer_id", "linked_by"):
        links[c] = links[c].astype("string")
    return links, meta, tables


def _given_links(frames: dict[str, pd.DataFrame], links: pd.DataFrame):
    """A record map from a given record -> customer table (no resolution)."""
    ident = frames.get("identities")
    rm = links[["record_id", "customer_id"]].astype("string").drop_duplicates("record_id")
    if ident is not None:
        cols = [c for c in ("source", "created_at", "consent_analytics", "consent_marketing", "city") if c in ident]
        rm = rm.join(ident.drop_duplicates("record_id").set_index("record_id")[cols], on="record_id")
        if "city" in rm:
            rm["city"] = rm["city"].astype("string").str.strip().str.title()
    rm["linked_by"] = "given"
    missing = _record_ids_in(frames)
    missing = missing[~missing.isin(rm["record_id"])]
    if len(missing):
        rm = pd.concat([rm, pd.DataFrame({"record_id": missing.to_numpy(), "customer_id": missing.to_numpy(),
                                          "linked_by": "not in identities"})], ignore_index=True)
    for c in ("record_id", "customer_id", "linked_by"):
        rm[c] = rm[c].astype("string")
    return rm.reset_index(drop=True), {"resolved": False, "given_links": True, "records": int(len(rm))}, {}


def _map_rows(frames: dict[str, pd.DataFrame], record_map: pd.DataFrame
              ) -> tuple[dict[str, pd.DataFrame], dict]:
    """Fill ``customer_id`` from ``record_id`` through the record map (given ids are kept)."""
    lookup = record_map.set_index("record_id")["customer_id"]
    out = dict(frames)
    counts, notes = {}, []
    for name in PERSON_TABLES:
        df = frames.get(name)
        if df is None or "record_id" not in df:
            continue
        mapped = df["record_id"].map(lookup).astype("string")
        if "customer_id" in df:
            given = df["customer_id"].astype("string")
            n_given = int(given.notna().sum())
            cust = given.fillna(mapped)
        else:
            n_given, cust = 0, mapped
        df = df.copy()
        df["customer_id"] = cust
        counts[name] = {"given": n_given, "from_record": int((cust.notna()).sum()) - n_given,
                        "no_customer": int(cust.isna().sum())}
        out[name] = df
    exp = frames.get("experiments")
    if exp is not None:
        exp = exp.copy()
        exp["unit_id"] = exp["unit_id"].astype("string")
        exp["customer_id"] = exp["unit_id"].map(lookup).astype("string")
        out["experiments"] = exp
    notes += _mapping_notes(counts)
    return out, {"rows": counts, "notes": notes}


def _mapping_notes(counts: dict) -> list[str]:
    if not any(v["from_record"] for v in counts.values()):
        return []
    return ["rows keyed by channel record ids were mapped to unified customers: " + "; ".join(
        f"{t} {v['from_record']:,}" for t, v in counts.items() if v["from_record"])]


def _customers(cfg: Config, frames: dict[str, pd.DataFrame], record_map: pd.DataFrame,
               extra_ids: pd.Series | None = None) -> tuple[pd.DataFrame, dict]:
    """The given customers table, with any customer only the record map knows added; or derived.

    ``extra_ids``: customer ids of the staged (big) tables."""
    given = frames.get("customers")
    ids = [] if given is not None else [record_map["customer_id"]]
    if extra_ids is not None:
        ids.append(pd.Series(extra_ids, dtype="string"))
    for name in PERSON_TABLES:
        df = frames.get(name)
        if df is not None and "customer_id" in df:
            ids.append(df["customer_id"])
    all_ids = pd.Index(pd.concat(ids, ignore_index=True).dropna().astype("string").unique(), name="customer_id")
    orders = frames["orders"]
    o = orders[orders["customer_id"].notna()]
    first = o.sort_values("order_ts", kind="stable").drop_duplicates("customer_id").set_index("customer_id")
    if given is not None:
        extra = all_ids.difference(pd.Index(given["customer_id"].astype("string")))
        meta = {"derived": False, "given": int(len(given)), "added_from_records": int(len(extra)), "notes": []}
        if len(extra) == 0:
            return given.reset_index(drop=True), meta
        add = _derive(extra, first, record_map, cfg.timezone)
        meta["notes"].append(f"{len(extra):,} unified customers known only from channel records were added "
                             "to the customers table (derived first seen, acquisition channel, region)")
        return pd.concat([given, add], ignore_index=True), meta
    cust = _derive(all_ids, first, record_map, cfg.timezone)
    meta = {"derived": True, "given": 0, "added_from_records": int(len(cust)),
            "notes": ["no customers table: customers were derived (first seen = first record or order, "
                      "acquisition channel = channel of the first order, region = the records' city)"]}
    return cust, meta


def _derive(ids: pd.Index, first_orders: pd.DataFrame, record_map: pd.DataFrame, tz: str) -> pd.DataFrame:
    out = pd.DataFrame(index=pd.Index(ids, name="customer_id"))
    fo = first_orders.reindex(out.index)
    first_seen = fo["order_ts"]
    if "created_at" in record_map:
        created = record_map.groupby("customer_id")["created_at"].min()
        first_seen = pd.concat([first_seen, created.reindex(out.index)], axis=1).min(axis=1)
    out["first_seen"] = pd.to_datetime(first_seen).dt.tz_convert(tz) if len(out) else pd.Series(
        [], dtype=f"datetime64[us, {tz}]")
    out["acquisition_channel"] = fo["channel"].astype("string")
    if "city" in record_map:
        city = (record_map.dropna(subset=["city"]).groupby(["customer_id", "city"]).size()
                .reset_index(name="n").sort_values(["customer_id", "n", "city"], ascending=[True, False, True])
                .drop_duplicates("customer_id").set_index("customer_id")["city"])
        out["region"] = city.reindex(out.index).astype("string")
    else:
        out["region"] = pd.array([None] * len(out), dtype="string")
    for col in ("consent_analytics", "consent_marketing"):
        if col in record_map:
            out[col] = _unified_consent(record_map, col).reindex(out.index)
    return out.reset_index()


def _unified_consent(record_map: pd.DataFrame, col: str) -> pd.Series:
    """One customer's consent from their records: a refusal in any channel system wins;
    otherwise consent when at least one system recorded it; else unknown (NA)."""
    v = record_map[["customer_id", col]].dropna(subset=["customer_id"])
    val = v[col].astype("boolean")
    g = pd.DataFrame({"customer_id": v["customer_id"], "yes": val.eq(True).fillna(False),
                      "no": val.eq(False).fillna(False)}).groupby("customer_id")
    yes, no = g["yes"].any(), g["no"].any()
    out = pd.Series(pd.NA, index=yes.index, dtype="boolean")
    out[yes] = True
    out[no] = False
    return out


def _consent(cfg: Config, frames: dict[str, pd.DataFrame], customers: pd.DataFrame, record_map: pd.DataFrame):
    """Drop customers without analytics consent from every analysis table (privacy rule)."""
    from omni_lib import privacy

    has_col = "consent_analytics" in customers
    if not has_col:
        if cfg.consent_default is None and not privacy.is_sample_mode(cfg):
            raise ConfigError(
                "privacy.consent_default: your data records no analytics consent (no consent_analytics column "
                "in customers or identities), so omni.yaml must say what applies: `privacy: {consent_default: "
                "true}` if consent was collected outside this data (everyone is analysed), or false")
        allow = True if cfg.consent_default is None else bool(cfg.consent_default)
        customers = customers.copy()
        customers["consent_analytics"] = allow
        note_src = ("no consent_analytics column: every customer is included" if cfg.consent_default is None
                    else f"no consent_analytics column: privacy.consent_default is {str(allow).lower()}")
    else:
        note_src = None
        if cfg.consent_default is not None:
            customers = customers.copy()
            customers["consent_analytics"] = customers["consent_analytics"].astype("boolean").fillna(
                cfg.consent_default)
    tables = {**frames, "customers": customers}
    out, info = privacy.apply_consent(tables)
    if note_src and not info["excluded_customers"]:
        info["note"] = note_src
    excluded = set(customers.loc[~customers["consent_analytics"].astype("boolean").eq(True).fillna(False)
                                 .to_numpy(dtype=bool), "customer_id"])
    exp = out.get("experiments")
    if exp is not None and "customer_id" in exp and excluded:
        drop = exp["customer_id"].isin(excluded).to_numpy(dtype=bool)
        info["rows_removed"]["experiments"] = int(drop.sum())
        out["experiments"] = exp.loc[~drop].reset_index(drop=True)
    rm = record_map.copy()
    given_ids = set(customers["customer_id"])
    if rm["customer_id"].isin(given_ids).all() or frames.get("orders") is None:
        rm["analysed"] = ~rm["customer_id"].isin(excluded).to_numpy(dtype=bool)
    else:  # unified ids beside given customer ids: consent through the orders that tie records to them
        from omni_lib import identity

        ok, _ = identity.consent_by_unified_customer(rm, frames["orders"], customers)
        rm["analysed"] = rm["customer_id"].map(ok).fillna(False).astype(bool).to_numpy()
    customers_out = out.pop("customers")
    info = {k: v for k, v in info.items()}
    info["_excluded"] = excluded   # for the staged tables; not kept in the meta
    return out, customers_out, rm, info


# --------------------------------------------------------------------------- staged tables
class _Staged:
    """The big tables staged in DuckDB (:mod:`.chunked`), taken through steps 2-6 in SQL:
    the same rules as the pandas steps (a given customer id is kept, else the record's customer;
    rows of excluded customers dropped, anonymous rows kept), in the rows' original order."""

    def __init__(self, con: duckdb.DuckDBPyConnection | None, names: list[str]):
        self.con, self.names = con, list(names)
        self._excluded: set = set()

    def __bool__(self) -> bool:
        return bool(self.names)

    def _cols(self, name: str) -> list[str]:
        return [r[0] for r in self.con.execute(f'DESCRIBE "{name}"').fetchall()]

    def record_ids(self) -> pd.Series:
        parts = [f'SELECT DISTINCT record_id FROM "{n}" WHERE record_id IS NOT NULL'
                 for n in self.names if "record_id" in self._cols(n)]
        if not parts:
            return pd.Series([], dtype="string")
        return self.con.sql(" UNION ".join(parts)).df()["record_id"].astype("string")

    def map(self, record_map: pd.DataFrame) -> dict:
        """Views ``_mapped_<table>`` with the unified customer id; counts as ``_map_rows``."""
        rm = record_map[["record_id", "customer_id"]].dropna(subset=["record_id"]).drop_duplicates("record_id")
        self.con.register("_rm", pa.Table.from_pandas(rm.astype("string"), preserve_index=False))
        counts = {}
        for n in self.names:
            cols = self._cols(n)
            if "record_id" not in cols:
                self.con.execute(f'CREATE OR REPLACE TEMP VIEW "_mapped_{n}" AS SELECT * FROM "{n}"')
                continue
            if "customer_id" in cols:
                sel = 's.* REPLACE (COALESCE(s.customer_id, m.customer_id) AS customer_id)'
                given = "count(s.customer_id)"
            else:
                sel, given = "s.*, m.customer_id", "0"
            self.con.execute(f'CREATE OR REPLACE TEMP VIEW "_mapped_{n}" AS SELECT {sel} FROM "{n}" s '
                             f'LEFT JOIN _rm m ON m.record_id = s.record_id')
            g, cust, tot = self.con.execute(
                f'SELECT {given}, count(COALESCE({"s.customer_id, " if "customer_id" in cols else ""}m.customer_id)), '
                f'count(*) FROM "{n}" s LEFT JOIN _rm m ON m.record_id = s.record_id').fetchone()
            counts[n] = {"given": int(g), "from_record": int(cust) - int(g), "no_customer": int(tot) - int(cust)}
        return counts

    def customer_ids(self) -> pd.Series:
        parts = [f'SELECT DISTINCT customer_id FROM "_mapped_{n}" WHERE customer_id IS NOT NULL'
                 for n in self.names if "customer_id" in self._cols(f"_mapped_{n}")]
        if not parts:
            return pd.Series([], dtype="string")
        return self.con.sql(" UNION ".join(parts)).df()["customer_id"].astype("string")

    def consent(self, excluded: set) -> dict:
        """Rows of customers without analytics consent, per staged table (they are left out)."""
        self._excluded = set(excluded)
        self.con.register("_excl", pa.table({"customer_id": pa.array(sorted(map(str, self._excluded)),
                                                                      type=pa.string())}))
        out = {}
        for n in self.names:
            if "customer_id" not in self._cols(f"_mapped_{n}"):
                continue
            out[n] = int(self.con.execute(
                f'SELECT count(*) FROM "_mapped_{n}" WHERE customer_id IN (SELECT customer_id FROM _excl)'
            ).fetchone()[0])
        return out

    def _select(self, n: str) -> str:
        keep = ("WHERE customer_id IS NULL OR customer_id NOT IN (SELECT customer_id FROM _excl)"
                if "customer_id" in self._cols(f"_mapped_{n}") and self._excluded else "")
        return f'SELECT * EXCLUDE (_row) FROM "_mapped_{n}" {keep} ORDER BY _row'

    def rows(self) -> dict:
        return {n: int(self.con.execute(f"SELECT count(*) FROM ({self._select(n)})").fetchone()[0])
                for n in self.names}

    def write(self, tmp: Path) -> None:
        """The staged tables, mapped and consent-filtered, into the new store file."""
        self.con.execute(f"ATTACH '{tmp}' AS _out")
        try:
            for n in self.names:
                self.con.execute(f'CREATE TABLE _out."{n}" AS {self._select(n)}')
            self.con.execute("CHECKPOINT _out")
        finally:
            self.con.execute("DETACH _out")


# --------------------------------------------------------------------------- writing
def _write(path: Path, tables: dict[str, pd.DataFrame], meta: dict, tz: str, also=None) -> None:
    """Write every table into a new DuckDB file, then rename it over the old one (atomic).

    ``also(tmp_path)``: writes more tables into the new file (the staged big tables) before the rename."""
    from omni_lib.report import to_jsonable

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    for p in (tmp, Path(str(tmp) + ".wal")):
        if p.exists():
            p.unlink()
    con = duckdb.connect(str(tmp))
    try:
        con.execute(f"SET TimeZone = '{tz}'")
        for name, df in tables.items():
            # through Arrow: DuckDB copies Arrow columns without a per-value conversion
            con.register("_df", pa.Table.from_pandas(df, preserve_index=False))
            con.execute(f'CREATE TABLE "{name}" AS SELECT * FROM _df')
            con.unregister("_df")
        con.execute("CREATE TABLE _meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        con.executemany("INSERT INTO _meta VALUES (?, ?)",
                        [(k, json.dumps(to_jsonable(v), ensure_ascii=False)) for k, v in meta.items()])
        con.execute("CHECKPOINT")
    except BaseException:
        con.close()
        tmp.unlink(missing_ok=True)
        raise
    con.close()
    if also is not None:
        try:
            also(tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    os.replace(tmp, path)
    _clear_cache(path)


def _clear_cache(path: Path) -> None:
    """A rebuilt store makes every derived table of the old one stale (see ``Store.cached``)."""
    import shutil

    shutil.rmtree(path.with_name(path.name + ".cache"), ignore_errors=True)


def _write_meta(path: Path, values: dict[str, Any]) -> None:
    from omni_lib.report import to_jsonable

    con = duckdb.connect(str(path))
    try:
        for k, v in values.items():
            con.execute("INSERT OR REPLACE INTO _meta VALUES (?, ?)", [k, json.dumps(to_jsonable(v))])
    finally:
        con.close()
