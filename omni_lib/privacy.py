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


#: contract columns that hold personal data in clear; their values are masked wherever they
#: could be shown (problem examples, warnings, logs)
PII_COLUMNS: dict[str, tuple[str, ...]] = {"identities": ("email", "phone", "full_name", "loyalty_id")}


def mask_value(value, kind: str | None = None) -> str:
    """A personal value as it may be shown: ``lestari83@yahoo.com`` -> ``l***3@yahoo.com``,
    ``088858620580`` -> ``08***80``, ``Lestari Sutanto`` -> ``L*** S***``.

    ``kind``: ``email``, ``phone`` or None (guessed from the value). Enough is kept to
    recognise a typo or a shifted column, never enough to contact the person.
    """
    text = str(value).strip()
    if not text:
        return text
    if kind == "email" or (kind is None and "@" in text):
        local, _, domain = text.rpartition("@")
        if local:
            return f"{local[0]}***{local[-1] if len(local) > 1 else ''}@{domain}"
        return "***@" + domain
    digits = re.sub(r"\D", "", text)
    if kind == "phone" or (kind is None and len(digits) >= 7 and len(digits) >= len(text) - 4):
        return f"{text[:2]}***{text[-2:]}" if len(text) > 4 else "***"
    words = text.split()
    if len(words) > 1:
        return " ".join(w[0] + "***" for w in words)
    return f"{text[0]}***{text[-1]}" if len(text) > 2 else "***"


def mask_text(text: str) -> str:
    """Every e-mail address and phone number inside ``text`` masked (:func:`mask_value`)."""
    if not isinstance(text, str) or not text:
        return text
    text = EMAIL_PATTERN.sub(lambda m: mask_value(m.group(0), "email"), text)
    return PHONE_PATTERN.sub(lambda m: mask_value(m.group(0), "phone"), text)


def mask_example(table: str | None, column: str | None, value):
    """One example value of a problem or warning: masked when the column holds PII, and any
    e-mail / phone inside it masked wherever it is (a shifted CSV row puts an e-mail
    under ``created_at``)."""
    if value is None or (isinstance(value, float) and value != value):
        return value
    if isinstance(value, tuple):
        return tuple(mask_example(table, column, v) for v in value)
    if column is not None and column in PII_COLUMNS.get(table or "", ()):
        kind = {"email": "email", "phone": "phone"}.get(column)
        return mask_value(value, kind)
    if isinstance(value, str):
        return mask_text(value)
    return value


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
        if col and col in df and cid is not None:
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


# --- derived outputs: structured redaction ------------------------------------------
#
# A report is edited as what it is (JSON by value, CSV by rows, an executed notebook by
# its cells' outputs, HTML by element or regenerated from the edited notebook), never as
# text: a bare "12" is someone's customer id in a customer_id column and a count, a
# decimal or an execution_count everywhere else. Each format is one function in
# REDACTORS; every edited file is parsed again before it replaces the original.

ERASED = "[erased]"
#: names of columns / JSON keys that hold identifiers
_ID_NAME = re.compile(r"(?:^|_)ids?$|^(?:customer|record|order|unit)$", re.I)


def _is_id_name(name) -> bool:
    return name is not None and bool(_ID_NAME.search(str(name).strip()))


def _distinctive(token: str) -> bool:
    """A value that no figure or unrelated text can contain by chance (``C0000012``,
    ``R00000002``, an e-mail, a phone number, a hash): safe to find inside free text.
    Short numbers (``12``, ``007``) are matched only where a field names an id."""
    if token.isdigit():
        return len(token) >= 9
    return len(token) >= 5 and not re.fullmatch(r"[\d.,:+\- ]+", token)


class Redactor:
    """Finds one person's values (exact values, case-insensitive) in structured outputs."""

    def __init__(self, tokens):
        self.all = {str(t).strip().lower() for t in tokens
                    if t is not None and str(t).strip() and str(t).strip() != ERASED}
        self.distinct = {t for t in self.all if _distinctive(t)}
        self._pat = None
        if self.distinct:
            alts = "|".join(re.escape(t) for t in sorted(self.distinct, key=len, reverse=True))
            self._pat = re.compile(r"(?<![\w.@+\-])(?:" + alts + r")(?![\w@\-]|\.\w)", re.I)
        self.hits = 0

    def __bool__(self) -> bool:
        return bool(self.all)

    def is_theirs(self, value, id_field: bool = False) -> bool:
        """The whole value is one of theirs (anywhere when distinctive; in id fields always)."""
        if value is None or isinstance(value, bool) or not isinstance(value, (str, int)):
            return False
        v = str(value).strip().lower()
        return v in self.distinct or (id_field and v in self.all)

    def text(self, text: str) -> str:
        """Their distinctive values inside free text replaced by ``[erased]``."""
        if self._pat is None or not isinstance(text, str) or not text:
            return text
        new, n = self._pat.subn(ERASED, text)
        self.hits += n
        return new

    def value(self, value, id_field: bool = False):
        if self.is_theirs(value, id_field):
            self.hits += 1
            return ERASED
        return self.text(value) if isinstance(value, str) else value

    def row_is_theirs(self, cells, id_flags) -> bool:
        return any(self.is_theirs(c, f) for c, f in zip(cells, id_flags))


def _redact_obj(obj, r: Redactor, key=None):
    """JSON-like data: their values replaced, their records (dicts with one of their ids
    in an id field) dropped from lists, entries keyed by one of their ids dropped."""
    idf = _is_id_name(key)
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if r.is_theirs(k):
                r.hits += 1
                continue
            out[k] = _redact_obj(v, r, k)
        return out
    if isinstance(obj, list):
        out = []
        for v in obj:
            if isinstance(v, dict) and any(r.is_theirs(x, _is_id_name(k)) for k, x in v.items()):
                r.hits += 1
                continue
            out.append(_redact_obj(v, r, key))
        return out
    if isinstance(obj, str):
        return r.value(obj, idf)
    if isinstance(obj, int) and not isinstance(obj, bool) and idf and r.is_theirs(obj, True):
        r.hits += 1
        return ERASED
    return obj


def _redact_json(text: str, r: Redactor, path: Path) -> str:
    doc = _redact_obj(json.loads(text), r)
    return json.dumps(doc, indent=2, ensure_ascii=False)


def _redact_csv(text: str, r: Redactor, path: Path) -> str:
    import csv
    import io

    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
        sep = dialect.delimiter
    except csv.Error:
        sep = ","
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=sep))
    if not rows:
        return text
    header, body = rows[0], rows[1:]
    flags = [_is_id_name(h) for h in header]
    keep = []
    for row in body:
        if r.row_is_theirs(row, flags):
            r.hits += 1
            continue
        keep.append([r.text(c) for c in row])
    buf = io.StringIO(newline="")
    w = csv.writer(buf, delimiter=sep, lineterminator="\n")
    w.writerow(header)
    w.writerows(keep)
    return buf.getvalue()


def _header_names(table) -> list[str]:
    """Column names of an HTML table (a pandas table: the last non-empty header per column)."""
    names: list[str] = []
    head = table.find("thead")
    rows = head.find_all("tr") if head else table.find_all("tr", limit=1)
    for tr in rows:
        pos = 0
        for cell in tr.find_all(["th", "td"], recursive=False):
            span = int(cell.get("colspan", 1) or 1) if str(cell.get("colspan", "1")).isdigit() else 1
            label = cell.get_text(" ", strip=True)
            for _ in range(span):
                while len(names) <= pos:
                    names.append("")
                if label:
                    names[pos] = label
                pos += 1
    return names


def _redact_html(text: str, r: Redactor, path: Path | None = None) -> str:
    from bs4 import BeautifulSoup, Comment, NavigableString

    soup = BeautifulSoup(text, "html.parser")
    for table in soup.find_all("table"):
        names = _header_names(table)
        flags = [_is_id_name(n) for n in names]
        head = table.find("thead")
        for tr in table.find_all("tr"):
            if head is not None and head in tr.parents:
                continue
            cells = [c.get_text(" ", strip=True) for c in tr.find_all(["th", "td"], recursive=False)]
            if r.row_is_theirs(cells, flags + [False] * (len(cells) - len(flags))):
                r.hits += 1
                tr.decompose()
    for node in list(soup.find_all(string=True)):
        if isinstance(node, Comment) or (node.parent is not None and node.parent.name == "style"):
            continue
        new = r.text(str(node))
        if new != str(node):
            node.replace_with(NavigableString(new))
    return str(soup)


def _redact_plain(text: str, r: Redactor, path: Path | None = None) -> str:
    return r.text(text)


def _join(v) -> str:
    return "".join(v) if isinstance(v, list) else (v or "")


def _redact_ipynb(text: str, r: Redactor, path: Path) -> str:
    """An executed notebook: cell sources, and outputs by kind (HTML tables lose their
    rows, JSON by value, text and tracebacks by value); execution counts, images and
    everything else untouched."""
    nb = json.loads(text)
    for cell in nb.get("cells", []):
        cell["source"] = r.text(_join(cell.get("source")))
        for out in cell.get("outputs", []) or []:
            kind = out.get("output_type")
            if kind == "stream":
                out["text"] = r.text(_join(out.get("text")))
            elif kind == "error":
                out["evalue"] = r.text(out.get("evalue", ""))
                out["traceback"] = [r.text(t) for t in out.get("traceback", [])]
            data = out.get("data") or {}
            html_changed = False
            for mime in list(data):
                v = data[mime]
                if mime == "text/html":
                    before = r.hits
                    data[mime] = _redact_html(_join(v), r)
                    html_changed = r.hits > before
                elif mime.startswith("text/"):
                    data[mime] = r.text(_join(v))
                elif mime.endswith("json"):
                    data[mime] = _redact_obj(v, r)
            if html_changed and "text/plain" in data:
                # the plain twin of an edited table would still hold the person's row
                data["text/plain"] = "[edited by erasure: see the HTML version of this output]"
    nb["metadata"] = _redact_obj(nb.get("metadata", {}), r)
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


#: suffix -> redactor(text, Redactor, path) -> new text; one entry per output format
REDACTORS = {".json": _redact_json, ".csv": _redact_csv, ".ipynb": _redact_ipynb,
             ".html": _redact_html, ".txt": _redact_plain, ".md": _redact_plain}
#: suffix -> parser that proves an edited file still parses
_PARSES = {".json": json.loads, ".ipynb": lambda t: __import__("nbformat").reads(t, as_version=4),
           ".csv": lambda t: list(__import__("csv").reader(__import__("io").StringIO(t)))}


def _regenerate_html(nb_path: Path, html_path: Path) -> str:
    """The HTML report made again from the (edited) executed notebook, as the runner does."""
    import nbformat

    from omni_lib.runner import to_html

    nb = nbformat.read(nb_path, as_version=4)
    nb.metadata["title"] = nb_path.stem.replace("_", " ")
    failed = any(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", []))
    return to_html(nb, include_code=failed)


def redact_outputs(reports_dir: Path, tokens: set, dry_run: bool) -> list[str]:
    """Remove one person's values from every derived output under ``reports_dir``;
    returns the files that held them (edited unless ``dry_run``)."""
    reports_dir = Path(reports_dir)
    r = Redactor(tokens)
    if not r or not reports_dir.is_dir():
        return []
    files = [f for f in sorted(reports_dir.rglob("*")) if f.is_file() and not f.is_symlink()
             and f.suffix.lower() in REDACTORS and not any(part.startswith(".") for part in
                                                          f.relative_to(reports_dir).parts)]
    # notebooks first: their HTML twin is regenerated from the edited notebook
    files.sort(key=lambda f: (str(f.parent), f.suffix.lower() != ".ipynb", f.name))
    touched, edited_nbs = [], set()
    for f in files:
        suffix = f.suffix.lower()
        text = f.read_text(encoding="utf-8", errors="surrogateescape")
        before = r.hits
        try:
            new = REDACTORS[suffix](text, r, f)
        except (ValueError, UnicodeError) as exc:  # not what its suffix says: only free text
            log.warning("%s: not valid %s (%s); redacted as plain text", f, suffix, _first_line(exc))
            new = _redact_plain(text, r, f)
        twin = f.with_suffix(".ipynb")
        if suffix == ".html" and twin in edited_nbs:
            new = _regenerate_html(twin, f) if not dry_run else new
            r.hits += 1
        if r.hits == before:
            continue
        touched.append(str(f))
        if suffix == ".ipynb":
            edited_nbs.add(f)
        if dry_run:
            continue
        if suffix in _PARSES:
            _PARSES[suffix](new)  # raises rather than replace a file with one that does not parse
        tmp = f.with_name(f".{f.name}.erasing")
        tmp.write_text(new, encoding="utf-8", errors="surrogateescape")
        os.replace(tmp, f)
    return touched


def _first_line(e: object) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _redact_reports(reports_dir: Path, tokens: set, dry_run: bool) -> list[str]:
    """Kept for callers of the old name; see :func:`redact_outputs`."""
    return redact_outputs(reports_dir, tokens, dry_run)


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


#: how a person can be named to ``omni erase``: --customer, --record, --email, --phone
SELECTORS = ("customer", "record", "email", "phone")


def _matching_records(ids: pd.DataFrame | None, by: str, value: str) -> set:
    """Identity records named by a record id, or holding an e-mail / phone (normalised as
    identity resolution does: case, spaces, +62 / 0 spellings)."""
    if ids is None:
        return set()
    from omni_lib.identity import normalize_email, normalize_phone

    if by == "record":
        return set(ids.loc[ids["record_id"].eq(value).fillna(False).to_numpy(dtype=bool), "record_id"])
    col = {"email": "email", "phone": "phone"}[by]
    if col not in ids:
        return set()
    norm = normalize_email if by == "email" else normalize_phone
    want = norm(pd.Series([value], dtype="str"))[0].iloc[0]
    if pd.isna(want):
        raise PrivacyError(f"--{by} {mask_value(value, by)!r} is not a valid {'e-mail address' if by == 'email' else 'phone number'}")
    have = norm(ids[col])[0]
    return set(ids.loc[have.eq(want).fillna(False).to_numpy(dtype=bool), "record_id"])


def _lookalikes(ds, subj: dict) -> dict[str, str]:
    """Identity records that share an e-mail, a phone or the name with the person's records
    but that nothing linked to them (nor ties to another customer by orders): perhaps
    theirs too. Record id -> what they share. Listed for the operator, never erased on
    this evidence alone (a name is not unique)."""
    ids = ds.tables.get("identities")
    if ids is None or not subj["record_ids"]:
        return {}
    from omni_lib.identity import normalize_email, normalize_name, normalize_phone

    mine = ids["record_id"].isin(subj["record_ids"]).to_numpy(dtype=bool)
    orders = ds.tables.get("orders")
    tied = set()
    if orders is not None and "record_id" in orders:
        other = ~orders["customer_id"].eq(subj["customer_id"] or "").fillna(False).to_numpy(dtype=bool)
        tied = set(orders.loc[other, "record_id"].dropna())
    found: dict[str, str] = {}
    for col, norm, what in (("email", lambda x: normalize_email(x)[0], "the e-mail"),
                            ("phone", lambda x: normalize_phone(x)[0], "the phone"),
                            ("full_name", normalize_name, "the name only")):
        if col not in ids:
            continue
        v = norm(ids[col])
        theirs = set(v[mine].dropna())
        hit = v.isin(theirs).fillna(False).to_numpy(dtype=bool) & ~mine
        for rid in ids.loc[hit, "record_id"]:
            if rid not in tied:
                found.setdefault(rid, what)
    return dict(sorted(found.items()))


def find_subject(ds, cfg, key, by: str, value: str, resolve: bool = True) -> dict:
    """The person named by ``by`` (one of :data:`SELECTORS`) and everything that is theirs.

    A record id, e-mail or phone leads to the customer whose orders name one of the
    matching identity records (or, with ``resolve``, whose records identity resolution
    put in the same unified customer); when none does, the matching records alone are
    the person's data. Records of two or more customers are refused: erase them one by
    one with ``--customer``.
    """
    if by not in SELECTORS:
        raise PrivacyError(f"erase by one of {', '.join(SELECTORS)}, not {by!r}")
    value = str(value).strip()
    if not value:
        raise PrivacyError(f"--{by} is empty")
    if by == "customer":
        subj = _subject_or_erased(ds, cfg, key, value, resolve)
        subj["matched_records"] = set()
    else:
        shown = value if by == "record" else mask_value(value, by)
        matched = _matching_records(ds.tables.get("identities"), by, value)
        if not matched:
            raise PrivacyError(f"no identity record has {by} {shown!r} (identities.{by if by != 'record' else 'record_id'})")
        orders = ds.tables.get("orders")
        customers: set = set()
        if orders is not None and "record_id" in orders:
            customers = set(orders.loc[orders["record_id"].isin(matched).fillna(False).to_numpy(dtype=bool),
                                       "customer_id"].dropna())
        if not customers and resolve and orders is not None and "record_id" in orders:
            from omni_lib.identity import IdentityResolver

            links = IdentityResolver().fit(ds.tables["identities"]).links_
            unified = set(links.loc[links["record_id"].isin(matched), "customer_id"])
            cluster = set(links.loc[links["customer_id"].isin(unified), "record_id"])
            customers = set(orders.loc[orders["record_id"].isin(cluster).fillna(False).to_numpy(dtype=bool),
                                       "customer_id"].dropna())
        if len(customers) > 1:
            raise PrivacyError(f"{by} {shown!r} is on identity records of {len(customers)} customers; nothing "
                               "was changed. Erase each person by --customer ID once you know which is theirs")
        if customers:
            subj = _subject(ds, next(iter(customers)), resolve=resolve)
        else:
            subj = {"customer_id": None, "order_ids": set(), "record_ids": set(),
                    "records_via_resolution": set(), "unified_customer_ids": []}
        subj["record_ids"] = set(subj["record_ids"]) | matched
        subj["matched_records"] = matched
    subj["by"], subj["value"] = by, value
    subj["lookalike_records"] = _lookalikes(ds, subj)
    return subj


def _personal_tokens(ds, subj: dict, key: bytes) -> set:
    """Every value of theirs a derived output could hold: ids, their identity records'
    raw PII (as written and normalised) and the pseudonyms identity resolution makes."""
    tokens = {subj["customer_id"], *subj["order_ids"], *subj["record_ids"], *subj.get("unified_customer_ids", [])}
    ids = ds.tables.get("identities")
    if ids is not None and subj["record_ids"]:
        from omni_lib.identity import normalize_email, normalize_loyalty, normalize_name, normalize_phone

        rows = ids.loc[ids["record_id"].isin(subj["record_ids"]).to_numpy(dtype=bool)]
        for col, norm in (("email", lambda x: normalize_email(x)[0]), ("phone", lambda x: normalize_phone(x)[0]),
                          ("full_name", normalize_name), ("loyalty_id", normalize_loyalty)):
            if col not in rows:
                continue
            raw = rows[col].dropna().astype("str")
            normed = norm(raw).dropna()
            tokens |= set(raw) | set(normed)
            if len(normed):
                tokens |= set(pseudonymise(normed, key))
    return {str(t) for t in tokens if t is not None and str(t).strip()}


def _erase_tables(cfg, ds, subj: dict, dry_run: bool, **context) -> dict:
    """Target 1: the configured tables, rewritten in their own format."""
    masks = _masks(ds, subj)
    removed = {name: int(m.sum()) for name, m in masks.items()}
    if not dry_run:
        cid = subj["customer_id"]
        for name, m in masks.items():
            df = ds.tables[name]
            n = 0
            col = CUSTOMER_KEY.get(name)
            if cid is not None and col and col in df:
                n += _delete_rows(cfg, name, col, {cid})
            if name == "identities" and subj["record_ids"]:
                n += _delete_rows(cfg, name, "record_id", subj["record_ids"])
            if name == "touchpoints" and "order_id" in df and subj["order_ids"]:
                n += _delete_rows(cfg, name, "order_id", subj["order_ids"])
            removed[name] = n
    return {"rows_removed": removed}


def _erase_reports(cfg, ds, subj: dict, dry_run: bool, *, reports_dir: Path, tokens: set, **context) -> dict:
    """Target 2: derived outputs under reports/, edited by structure (:func:`redact_outputs`)."""
    from omni_lib.runner import reports_lock

    with reports_lock(reports_dir, purpose="erase", wait=True):
        touched = redact_outputs(reports_dir, tokens, dry_run)
    return {"report_files_redacted": len(touched), "report_files": touched}


#: the places a person's data is erased from, in order: name -> function(cfg, ds, subj,
#: dry_run, **context) -> summary fields (``context``: ``reports_dir``, ``tokens`` = every
#: value of theirs, see :func:`_personal_tokens`). A new store (e.g. the prepared DuckDB
#: file under data/store/) is one more entry: delete ``subj``'s rows (customer_id,
#: order_ids, record_ids) there and return its counts.
ERASE_TARGETS = {"tables": _erase_tables, "reports": _erase_reports}


def erase(by: str, value: str, config=None, *, reports_dir=None, dry_run: bool = False,
          resolve: bool = True) -> dict:
    """Remove one person, named by customer id, record id, e-mail or phone (:data:`SELECTORS`),
    from every stored table and derived output, and log it.

    * every configured table: the rows keyed by the customer id (``customers``,
      ``orders``, ``touchpoints``, ``surveys``, ``tickets``, ``experiments.unit_id``),
      touchpoints of their orders, and their ``identities`` records (those their orders
      name, those identity resolution linked to them, and those the record id / e-mail /
      phone named); the files are rewritten in their own format;
    * derived outputs under ``reports/``: edited by structure (see :func:`redact_outputs`):
      their rows leave tables and CSVs, their ids, e-mails, phones, names and pseudonyms
      become ``[erased]``; aggregate figures stay (they are no one's data) and every file
      still parses;
    * the erasure is appended to ``privacy/erasure_log.jsonl`` beside the config, with
      the customer (or record) id pseudonymised (keyed hash), the time and the counts.

    ``dry_run`` only reports what would go. Records that share an e-mail or phone with
    the person's but that nothing linked to them are listed (``lookalike_records``) and
    kept: erase them by ``record`` if they are the person's.
    """
    from omni_lib.config import load_config
    from omni_lib.io import load

    cfg = load_config(config)
    key = pseudonym_key(cfg)
    ds = load(cfg, validate=False)
    subj = find_subject(ds, cfg, key, by, value, resolve)
    reports = Path(reports_dir) if reports_dir else (
        (cfg.path.parent if cfg.path else Path.cwd()) / "reports")
    context = {"reports_dir": reports, "tokens": _personal_tokens(ds, subj, key)}
    summary = {
        "at": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
        "by": by,
        "subject": pseudonymise_id(subj["customer_id"] if subj["customer_id"] is not None
                                   else sorted(subj["record_ids"])[0], key),
        "dry_run": dry_run,
    }
    extra = {}
    for name, target in ERASE_TARGETS.items():
        out = target(cfg, ds, subj, dry_run, **context)
        extra.update({k: v for k, v in out.items() if k == "report_files"})
        summary.update({k: v for k, v in out.items() if k != "report_files"})
    summary.update({
        "customer_found": subj["customer_id"] is not None,
        "identity_records": len(subj["record_ids"]),
        "identity_records_via_resolution": len(subj["records_via_resolution"]),
        "lookalike_records_kept": len(subj["lookalike_records"]),
    })
    if not dry_run:
        path = erasure_log_path(cfg)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(summary, ensure_ascii=False) + "\n")
        summary["log"] = str(path)
    summary["lookalike_records"] = subj["lookalike_records"]
    summary["report_files"] = extra.get("report_files", [])
    return summary


def erase_customer(customer_id: str, config=None, *, reports_dir=None, dry_run: bool = False,
                   resolve: bool = True) -> dict:
    """:func:`erase` by customer id (``omni erase --customer ID``)."""
    return erase("customer", customer_id, config, reports_dir=reports_dir, dry_run=dry_run, resolve=resolve)


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
    reports = (cfg.path.parent if cfg.path else Path.cwd()) / "reports"
    path = Path(out) if out else Path.cwd() / f"export_{str(customer_id).strip()}.json"
    if _inside(path, reports) or _in_a_reports_folder(path):
        raise PrivacyError(f"--out {path}: the export holds personal data in clear and must not be written "
                           f"into a reports folder ({reports}); choose a secure place outside it")
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
        "derived": _derived_rows(reports / "latest", subj["customer_id"]),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)
    return path


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


#: per-customer tables the reports publish (file in the run folder -> what it is)
DERIVED_TABLES = {"customer_segments.csv": "segment (04_segmentation)",
                  "churn_scores.csv": "churn score (05_churn)"}


def _derived_rows(run_dir: Path, customer_id: str) -> dict:
    """The person's rows in the per-customer tables of the latest complete run (their
    segment, churn score): what the analyses concluded about them is their data too."""
    out = {}
    for name, what in DERIVED_TABLES.items():
        f = Path(run_dir) / name
        if not f.is_file():
            out[name] = {"what": what, "rows": [], "note": "not in the latest run"}
            continue
        df = pd.read_csv(f, dtype=str, keep_default_na=False)
        if "customer_id" not in df:
            continue
        rows = df.loc[df["customer_id"].str.strip().eq(str(customer_id))].to_dict("records")
        out[name] = {"what": what, "run": Path(run_dir).resolve().name, "rows": rows}
    return out


def _in_a_reports_folder(path: Path) -> bool:
    """True when a folder above ``path`` is a run folder or a reports folder (``--out``
    of ``omni run`` may be anywhere): it holds ``run.json`` or the runner's lock file."""
    for folder in Path(path).resolve().parents:
        if (folder / "run.json").is_file() or (folder / ".omni-run.lock").exists():
            return True
    return False
