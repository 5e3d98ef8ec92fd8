"""Privacy rules every analysis goes through.

* Consent (:func:`apply_consent`): see below.
* Pseudonymisation (:func:`pseudonymise`): keyed hashes (HMAC-SHA256) replace e-mail,
  phone, name and loyalty ids right after identity linking; the key comes from the
  environment variable ``OMNI_PSEUDONYM_KEY`` (:func:`pseudonym_key`). Outside sample
  mode nothing runs without it (:func:`preflight`, called by ``omni run``).
* Checking outputs (:func:`scan_for_pii`): e-mail addresses and phone numbers in
  reports.
* Rights of the data subject (:func:`erase_customer`, :func:`export_customer`;
  ``omni erase`` / ``omni export-customer``).


Customers without recorded analytics consent (``customers.consent_analytics``
False or empty: no record of consent is treated as no consent) are removed from every table before any analysis; the count is reported, never
silent. A missing consent column means consent was collected outside the data
(everyone included, noted).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
from pathlib import Path
from typing import Mapping

import duckdb
import pandas as pd

log = logging.getLogger(__name__)

#: table -> the column that holds the unified customer id
CUSTOMER_KEY = {"customers": "customer_id", "orders": "customer_id", "touchpoints": "customer_id",
                "surveys": "customer_id", "tickets": "customer_id", "experiments": "unit_id"}


def apply_consent(tables: Mapping[str, pd.DataFrame | None]) -> tuple[dict[str, pd.DataFrame | None], dict]:
    """Drop customers without analytics consent from every table.

    Returns ``(tables, info)`` with ``info = {"excluded_customers": n, "rows_removed": {table: n},
    "note": text}``. Anonymous rows (no customer id) are kept.
    """
    out = dict(tables)
    customers = tables.get("customers")
    info = {"excluded_customers": 0, "rows_removed": {}, "note": ""}
    if customers is None or "consent_analytics" not in customers:
        info["note"] = "no consent_analytics column: every customer is included"
        return out, info
    no = ~customers["consent_analytics"].eq(True).fillna(False).to_numpy(dtype=bool)
    excluded = set(customers.loc[no, "customer_id"])
    info["excluded_customers"] = len(excluded)
    if not excluded:
        info["note"] = "every customer gave analytics consent"
        return out, info
    for name, col in CUSTOMER_KEY.items():
        df = tables.get(name)
        if df is None or col not in df:
            continue
        drop = df[col].isin(excluded).to_numpy(dtype=bool)
        info["rows_removed"][name] = int(drop.sum())
        out[name] = df.loc[~drop].reset_index(drop=True)
    info["note"] = (f"{len(excluded):,} customers without analytics consent were excluded from the analysis "
                    f"({info['rows_removed'].get('orders', 0):,} of their orders)")
    return out, info


# ---------------------------------------------------------------------------------
# pseudonymisation: keyed hashes (HMAC-SHA256), key from the environment
# ---------------------------------------------------------------------------------

#: environment variable holding the pseudonymisation key
KEY_ENV = "OMNI_PSEUDONYM_KEY"
#: the key used in sample mode when none is set: public, so sample pseudonyms protect nothing
SAMPLE_KEY = b"omni-workbench-sample-data-key-not-secret"
MIN_KEY_BYTES = 16
MODES = ("sample", "production")


class PrivacyError(RuntimeError):
    """A privacy rule stops the work: no key outside sample mode, unknown customer, ..."""


def is_sample_mode(config) -> bool:
    """True when the config works on the generated sample retailer.

    ``mode: sample`` or ``mode: production`` in ``omni.yaml`` decides. Without the key,
    the data folder decides: it is sample mode only when ``data.root`` holds the
    sample generator's ``meta.json`` (``"generator": "omni_lib.sample"``), so a config
    pointed at real data is never in sample mode by accident.
    """
    mode = getattr(config, "mode", None)
    if mode is None:
        mode = (getattr(config, "extra", {}) or {}).get("mode")
    if mode is not None:
        if mode not in MODES:
            raise PrivacyError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
        return mode == "sample"
    meta = Path(getattr(config, "root", ".")) / "meta.json"
    try:
        return json.loads(meta.read_text(encoding="utf-8")).get("generator") == "omni_lib.sample"
    except (OSError, ValueError, AttributeError):
        return False


def pseudonym_key(config=None, environ: Mapping[str, str] | None = None) -> bytes:
    """The pseudonymisation key: ``$OMNI_PSEUDONYM_KEY`` (at least 16 bytes).

    Without it: in sample mode the public :data:`SAMPLE_KEY` (with a warning);
    otherwise :class:`PrivacyError`, so real data is never hashed with a known key.
    """
    env = os.environ if environ is None else environ
    raw = env.get(KEY_ENV, "")
    if raw:
        key = raw.encode("utf-8")
        if len(key) < MIN_KEY_BYTES:
            raise PrivacyError(f"{KEY_ENV} is too short ({len(key)} bytes); use at least {MIN_KEY_BYTES}, "
                               "e.g. the output of: python -c \"import secrets; print(secrets.token_hex(32))\"")
        return key
    if config is not None and is_sample_mode(config):
        log.warning("%s is not set: sample mode uses the public sample key", KEY_ENV)
        return SAMPLE_KEY
    raise PrivacyError(
        f"{KEY_ENV} is not set. Outside sample mode personal data is pseudonymised with a secret key "
        f"from this environment variable, and nothing runs without it. Set it, e.g. "
        f"export {KEY_ENV}=$(python -c \"import secrets; print(secrets.token_hex(32))\"), and keep it "
        "with your other secrets (the same key gives the same pseudonyms next time). For the bundled "
        "sample put `mode: sample` in omni.yaml.")


def preflight(config_path) -> str:
    """Checks before a run touches data; raises :class:`PrivacyError`, returns a note.

    Outside sample mode a run refuses to start without a pseudonymisation key.
    """
    from omni_lib.config import load_config

    cfg = load_config(config_path)
    pseudonym_key(cfg)
    if os.environ.get(KEY_ENV):
        return f"pseudonymisation key from {KEY_ENV}"
    return "sample mode: pseudonyms use the public sample key"


def pseudonymise(values: pd.Series, key: bytes, prefix: str = "") -> pd.Series:
    """HMAC-SHA256 (hex) of each value under ``key``; missing stays missing.

    Computed in DuckDB (``sha256`` over bytes, the HMAC construction of RFC 2104), so a
    million values take a fraction of a second; equal to Python's ``hmac`` (tested).
    Normalise values first (the same e-mail written twice ways must hash alike).
    """
    if not isinstance(key, (bytes, bytearray)) or len(key) == 0:
        raise PrivacyError("pseudonymise: the key must be non-empty bytes")
    k = bytes(key)
    if len(k) > 64:
        k = hashlib.sha256(k).digest()
    k = k.ljust(64, b"\0")
    ipad = bytes(b ^ 0x36 for b in k).hex()
    opad = bytes(b ^ 0x5C for b in k).hex()
    df = pd.DataFrame({"v": pd.Series(values, copy=False).astype("str").to_numpy()})
    con = duckdb.connect()
    try:
        con.register("vals", df)
        out = con.execute("SELECT CASE WHEN v IS NULL THEN NULL ELSE "
                          "sha256(unhex(?) || unhex(sha256(unhex(?) || encode(v)))) END AS h FROM vals",
                          [opad, ipad]).df()["h"]
    finally:
        con.close()
    out = out.astype("str")
    if prefix:
        out = prefix + out
    out.index = values.index
    return out


def pseudonymise_id(value: str, key: bytes) -> str:
    """One identifier's HMAC-SHA256 (hex), e.g. for the erasure log."""
    return hmac.new(bytes(key), str(value).encode("utf-8"), hashlib.sha256).hexdigest()


# ---------------------------------------------------------------------------------
# scanning outputs for personal data
# ---------------------------------------------------------------------------------

#: an e-mail address
EMAIL_PATTERN = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
#: an Indonesian phone number in any of the usual spellings (+62 / 62 / 0 then 8xx, with
#: spaces or dashes)
PHONE_PATTERN = re.compile(r"(?<![\w.+\-])(?:\+62|62|0)[\s\-]?8(?:[\s\-]?\d){7,11}(?![\w.])")


def scan_for_pii(paths, patterns: Mapping[str, re.Pattern] | None = None) -> pd.DataFrame:
    """Files (or folders, searched for .html / .json / .ipynb / .csv / .txt) holding
    e-mail addresses or phone numbers: one row per hit with ``file``, ``kind`` and a
    masked excerpt (the hit itself is not repeated in full)."""
    patterns = patterns or {"email": EMAIL_PATTERN, "phone": PHONE_PATTERN}
    files: list[Path] = []
    for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths):
        p = Path(p)
        if p.is_dir():
            files += [f for f in sorted(p.rglob("*")) if f.is_file()
                      and f.suffix.lower() in (".html", ".json", ".ipynb", ".csv", ".txt", ".md")]
        elif p.is_file():
            files.append(p)
    rows = []
    for f in files:
        text = f.read_text(encoding="utf-8", errors="replace")
        for kind, pat in patterns.items():
            for m in pat.finditer(text):
                hit = m.group(0)
                rows.append({"file": str(f), "kind": kind, "masked": hit[:2] + "***" + hit[-2:]})
    return pd.DataFrame(rows, columns=["file", "kind", "masked"])


# ---------------------------------------------------------------------------------
# rights of the data subject: erasure and access (export)
# ---------------------------------------------------------------------------------

REPORT_SUFFIXES = (".html", ".json", ".ipynb", ".csv", ".txt", ".md")


def _subject(ds, customer_id: str, resolve: bool = True) -> dict:
    """Everything that belongs to one given customer id: ids per table and identity records.

    Identity records: those the person's orders name (``orders.record_id``) plus the
    records identity resolution put in the same unified customer, except records
    that orders tie to another customer (resolution may err; another person's data is
    never erased on its word).
    """
    cid = str(customer_id).strip()
    found = {}
    for name, col in CUSTOMER_KEY.items():
        df = ds.tables.get(name)
        if df is not None and col in df:
            found[name] = int(df[col].eq(cid).fillna(False).sum())
    if not any(found.values()):
        raise PrivacyError(f"customer {cid!r} is not in any table ({', '.join(found) or 'no customer tables'})")
    orders = ds.tables.get("orders")
    order_ids: set = set()
    direct: set = set()
    others: set = set()
    if orders is not None:
        mine = orders["customer_id"].eq(cid).fillna(False).to_numpy(dtype=bool)
        order_ids = set(orders.loc[mine, "order_id"].dropna())
        if "record_id" in orders:
            direct = set(orders.loc[mine, "record_id"].dropna())
            others = set(orders.loc[~mine, "record_id"].dropna())
    records, unified, via_resolution = set(direct), [], set()
    ids = ds.tables.get("identities")
    if ids is not None and resolve and direct:
        from omni_lib.identity import IdentityResolver

        links = IdentityResolver().fit(ids).links_
        unified = sorted(links.loc[links["record_id"].isin(direct), "customer_id"].unique())
        cluster = set(links.loc[links["customer_id"].isin(unified), "record_id"])
        via_resolution = cluster - direct - others
        records |= via_resolution
    if ids is not None:
        records &= set(ids["record_id"].dropna())
    return {"customer_id": cid, "order_ids": order_ids, "record_ids": records,
            "records_via_resolution": via_resolution, "unified_customer_ids": unified}


def _masks(ds, subj: dict) -> dict[str, pd.Series]:
    """Per table, a boolean mask (contract names) of the rows that belong to the person."""
    cid = subj["customer_id"]
    out = {}
    for name, df in ds.tables.items():
        if df is None:
            continue
        m = pd.Series(False, index=df.index)
        col = CUSTOMER_KEY.get(name)
        if col and col in df:
            m |= df[col].eq(cid).fillna(False).astype(bool)
        if name == "identities":
            m |= df["record_id"].isin(subj["record_ids"])
        if name == "touchpoints" and "order_id" in df and subj["order_ids"]:
            m |= df["order_id"].isin(subj["order_ids"]).fillna(False).astype(bool)
        if m.any():
            out[name] = m
    return out


def _delete_rows(cfg, name: str, contract_col: str, values: set) -> int:
    """Delete rows whose ``contract_col`` is in ``values`` from the table's own file,
    in its own format (CSV, Parquet, DuckDB); the file is replaced atomically."""
    t = cfg.tables[name]
    col = t.columns.get(contract_col, contract_col)
    vals = sorted(str(v) for v in values)
    fmt = cfg.table_format(name)
    if fmt == "duckdb":
        con = duckdb.connect(str(cfg.database))
        try:
            ident = ".".join('"' + p.replace('"', '""') + '"' for p in t.path.split("."))
            cname = '"' + col.replace('"', '""') + '"'
            con.register("erase_values", pd.DataFrame({"v": vals}))
            n = con.execute(f"SELECT count(*) FROM {ident} WHERE trim(CAST({cname} AS VARCHAR)) "
                            "IN (SELECT v FROM erase_values)").fetchone()[0]
            con.execute(f"DELETE FROM {ident} WHERE trim(CAST({cname} AS VARCHAR)) IN (SELECT v FROM erase_values)")
            con.execute("CHECKPOINT")
        finally:
            con.close()
        return int(n)
    path = Path(cfg.source(name))
    tmp = path.with_name(f".{path.name}.erasing")
    if fmt == "csv":
        enc = "utf-8-sig" if t.encoding.lower().replace("_", "-") in ("utf-8", "utf8") else t.encoding
        raw = pd.read_csv(path, sep=t.sep, encoding=enc, dtype=str, keep_default_na=False)
        drop = raw[col].str.strip().isin(vals).to_numpy()
        raw.loc[~drop].to_csv(tmp, sep=t.sep, encoding=t.encoding, index=False)
    else:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        tab = pq.read_table(path)
        key = pc.utf8_trim_whitespace(pc.cast(tab[col], "string"))
        drop = pc.fill_null(pc.is_in(key, value_set=pa.array(vals, pa.string())), False).to_numpy(
            zero_copy_only=False)
        pq.write_table(tab.filter(pa.array(~drop)), tmp)
    os.replace(tmp, path)
    return int(drop.sum())


def _redact_reports(reports_dir: Path, tokens: set, dry_run: bool) -> list[str]:
    """Replace the person's ids in derived outputs by ``[erased]``; returns the files touched."""
    if not tokens or not reports_dir.is_dir():
        return []
    pat = re.compile(r"(?<![\w-])(?:" + "|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True))
                     + r")(?![\w-])")
    touched = []
    for f in sorted(reports_dir.rglob("*")):
        if f.is_symlink() or not f.is_file() or f.suffix.lower() not in REPORT_SUFFIXES:
            continue
        text = f.read_text(encoding="utf-8", errors="surrogateescape")
        new, n = pat.subn("[erased]", text)
        if n:
            touched.append(str(f))
            if not dry_run:
                tmp = f.with_name(f".{f.name}.erasing")
                tmp.write_text(new, encoding="utf-8", errors="surrogateescape")
                os.replace(tmp, f)
    return touched


def erasure_log_path(cfg) -> Path:
    base = cfg.path.parent if getattr(cfg, "path", None) else Path.cwd()
    return base / "privacy" / "erasure_log.jsonl"


def erasures_logged(cfg, customer_id: str, key: bytes) -> list[dict]:
    """Entries of the erasure log for this customer id (matched by its keyed hash)."""
    path = erasure_log_path(cfg)
    if not path.is_file():
        return []
    h = pseudonymise_id(str(customer_id).strip(), key)
    entries = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [e for e in entries if e.get("subject") == h]


def _subject_or_erased(ds, cfg, key, customer_id, resolve) -> dict:
    try:
        return _subject(ds, customer_id, resolve=resolve)
    except PrivacyError:
        done = erasures_logged(cfg, customer_id, key)
        if done:
            raise PrivacyError(f"customer {str(customer_id).strip()!r} is in no table: erased on "
                               f"{done[-1]['at']} (privacy/erasure_log.jsonl)") from None
        raise


def erase_customer(customer_id: str, config=None, *, reports_dir=None, dry_run: bool = False,
                   resolve: bool = True) -> dict:
    """Remove one person from every stored table and derived output, and log it.

    * every configured table: the rows keyed by the customer id (``customers``,
      ``orders``, ``touchpoints``, ``surveys``, ``tickets``, ``experiments.unit_id``),
      touchpoints of their orders, and their ``identities`` records (those their orders
      name plus those identity resolution linked to them, see :func:`_subject`); the
      files are rewritten in their own format;
    * derived outputs: the person's customer, order and record ids in ``reports/``
      are replaced by ``[erased]`` (aggregate figures stay: they are no one's data);
    * the erasure is appended to ``privacy/erasure_log.jsonl`` beside the config, with
      the customer id pseudonymised (keyed hash), the time and the counts.

    ``dry_run`` only reports what would go. Regenerating the sample brings the
    sample's synthetic person back; real data re-imported must be erased again
    (the log's keyed hash tells whether an id was erased before).
    """
    from omni_lib.config import load_config
    from omni_lib.io import load

    cfg = load_config(config)
    key = pseudonym_key(cfg)
    ds = load(cfg, validate=False)
    subj = _subject_or_erased(ds, cfg, key, customer_id, resolve)
    masks = _masks(ds, subj)
    removed = {name: int(m.sum()) for name, m in masks.items()}
    if not dry_run:
        cid = subj["customer_id"]
        for name, m in masks.items():
            df = ds.tables[name]
            n = 0
            col = CUSTOMER_KEY.get(name)
            if col and col in df:
                n += _delete_rows(cfg, name, col, {cid})
            if name == "identities" and subj["record_ids"]:
                n += _delete_rows(cfg, name, "record_id", subj["record_ids"])
            if name == "touchpoints" and "order_id" in df and subj["order_ids"]:
                n += _delete_rows(cfg, name, "order_id", subj["order_ids"])
            removed[name] = n
    reports = Path(reports_dir) if reports_dir else (
        (cfg.path.parent if cfg.path else Path.cwd()) / "reports")
    tokens = {subj["customer_id"], *subj["order_ids"], *subj["record_ids"]}
    touched = _redact_reports(reports, tokens, dry_run)
    summary = {
        "at": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
        "subject": pseudonymise_id(subj["customer_id"], key),
        "dry_run": dry_run,
        "rows_removed": removed,
        "identity_records": len(subj["record_ids"]),
        "identity_records_via_resolution": len(subj["records_via_resolution"]),
        "report_files_redacted": len(touched),
    }
    if not dry_run:
        path = erasure_log_path(cfg)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(summary, ensure_ascii=False) + "\n")
        summary["log"] = str(path)
    summary["report_files"] = touched
    return summary


def export_customer(customer_id: str, config=None, out=None, *, resolve: bool = True) -> Path:
    """Write everything held about one person to a JSON file (right of access / portability).

    Every row of every table that belongs to them (contract column names, values as
    stored, including their own e-mail, phone and name: it is their data), the unified
    customer id(s) and identity records linked to them and how, and whether their
    erasure was ever logged. The file holds personal data: hand it to the person,
    do not keep it in ``reports/``. Returns the path.
    """
    from omni_lib.config import load_config
    from omni_lib.io import load
    from omni_lib.report import to_jsonable

    cfg = load_config(config)
    key = pseudonym_key(cfg)
    ds = load(cfg, validate=False)
    subj = _subject_or_erased(ds, cfg, key, customer_id, resolve)
    masks = _masks(ds, subj)
    tables = {}
    for name, m in masks.items():
        df = ds.tables[name].loc[m]
        tables[name] = [to_jsonable(r) for r in df.astype(object).where(df.notna(), None).to_dict("records")]
    erased_before = bool(erasures_logged(cfg, subj["customer_id"], key))
    doc = {
        "customer_id": subj["customer_id"],
        "generated_at": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
        "what_this_is": "Every record Omni Workbench holds about this customer, table by table "
                        "(docs/contract.md explains the columns).",
        "unified_customer_ids": subj["unified_customer_ids"],
        "identity_records_linked_by_resolution": sorted(subj["records_via_resolution"]),
        "rows": {k: len(v) for k, v in tables.items()},
        "tables": tables,
        "erasure_logged_before": erased_before,
    }
    path = Path(out) if out else Path.cwd() / f"export_{subj['customer_id']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)
    return path
