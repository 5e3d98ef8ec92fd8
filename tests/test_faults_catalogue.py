"""The bad-input catalogue (issue 15): what a new user or an operator gets wrong, and what
the workbench must say. Each case builds a small project (a 300-customer sample as CSV,
made once per session), breaks one thing, runs one ``omni`` command in-process and checks

* the exit code,
* the key words of the message (file / table, column, what to change), and words that
  must NOT appear (a raw e-mail, a false knock-on error, a traceback),
* that nothing was written or changed: every file of the project (data, reports,
  ``reports/latest``, the erasure log) hashes as before.

Cases that already behaved well are here too, so they stay that way. The serious cases
that need real processes (concurrent runs, signals) are in ``test_faults_processes.py``.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest

from omni_lib import cli

ROOT = Path(__file__).resolve().parents[1]
TABLES = ("identities", "customers", "orders", "touchpoints", "surveys", "tickets", "experiments",
          "spend", "prices")


# --------------------------------------------------------------------------- the project
@pytest.fixture(scope="session")
def base_project(tmp_path_factory) -> Path:
    """A 300-customer shop as CSV files with omni.yaml (mode: sample) and the notebooks, written as a
    retailer with a CRM would (a customers table, rows keyed by its customer ids: the sample's
    planted persons, via ``sample.true_keyed``; the bundled sample itself is siloed)."""
    from omni_lib.sample import generate, true_keyed

    base = tmp_path_factory.mktemp("catalogue") / "project"
    raw = base.parent / "raw"
    generate(out_dir=raw, n_customers=300, progress=False)
    (base / "data").mkdir(parents=True)
    keyed = true_keyed(raw)
    for t in TABLES:
        keyed[t].to_csv(base / "data" / f"{t}.csv", index=False)
    shutil.copy(raw / "meta.json", base / "data" / "meta.json")
    cfg = (ROOT / "omni.yaml").read_text(encoding="utf-8")
    cfg = cfg.replace("    # customers:  {path: customers.parquet}", "    customers:    {path: customers.parquet}")
    cfg = cfg.replace("format: parquet", "format: csv").replace("root: data/sample", "root: data")
    cfg = re.sub(r"\{path: (\w+)\.parquet\}", r"{path: \1.csv}", cfg)
    (base / "omni.yaml").write_text(cfg, encoding="utf-8")
    (base / "notebooks").symlink_to(ROOT / "notebooks")
    return base


class Project:
    def __init__(self, root: Path):
        self.root = root
        self.data = root / "data"

    # tables as text, exactly as stored
    def read(self, table: str) -> pd.DataFrame:
        return pd.read_csv(self.data / f"{table}.csv", dtype=str, keep_default_na=False)

    def write(self, table: str, df: pd.DataFrame, **kw) -> None:
        df.to_csv(self.data / f"{table}.csv", index=False, **kw)

    def lines(self, table: str) -> list[str]:
        return (self.data / f"{table}.csv").read_text(encoding="utf-8").split("\n")

    def write_lines(self, table: str, lines: list[str]) -> None:
        (self.data / f"{table}.csv").write_text("\n".join(lines), encoding="utf-8")

    def set_cell(self, table: str, row: int, col: str, value: str) -> None:
        df = self.read(table)
        df.loc[row, col] = value
        self.write(table, df)

    def config(self) -> str:
        return (self.root / "omni.yaml").read_text(encoding="utf-8")

    def set_config(self, text: str) -> None:
        (self.root / "omni.yaml").write_text(text, encoding="utf-8")

    def sub_config(self, pattern: str, repl: str) -> None:
        new, n = re.subn(pattern, repl, self.config(), flags=re.M)
        assert n, f"pattern {pattern!r} not in omni.yaml"
        self.set_config(new)

    def table_line(self, table: str, extra: str) -> None:
        """Add keys to a table's entry, e.g. ``sep: ";"``."""
        self.sub_config(rf"^    {table}:\s*\{{path: {table}\.csv\}}", f"    {table}: {{path: {table}.csv, {extra}}}")

    def to_parquet(self, table: str, df: pd.DataFrame) -> None:
        (self.data / f"{table}.csv").unlink()
        df.to_parquet(self.data / f"{table}.parquet", index=False)
        self.table_line(table, "format: parquet")
        self.sub_config(rf"path: {table}\.csv", f"path: {table}.parquet")

    def fake_run(self, run_id: str = "20260101-000000") -> Path:
        """A published run folder with latest pointing at it (for 'latest unchanged')."""
        run = self.root / "reports" / run_id
        run.mkdir(parents=True)
        (run / "index.html").write_text("<html><body><p>run</p></body></html>")
        (run / "run.json").write_text(json.dumps({"run_id": run_id, "ok": True}))
        os.symlink(run_id, self.root / "reports" / "latest")
        return run


def _snapshot(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if rel.startswith("notebooks"):
            continue
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[rel] = "dir"
    return out


# --------------------------------------------------------------------------- the cases
@dataclass
class Case:
    id: str
    setup: Callable[[Project], None] | None
    argv: list[str]
    code: int
    words: list[str]
    absent: list[str] = field(default_factory=list)
    #: a value computed by setup that must not appear in the output (e.g. a raw e-mail)
    secret: Callable[[Project], list[str]] | None = None


def _first_email(p: Project) -> str:
    return p.read("identities")["email"].replace("", None).dropna().iloc[0]


def _drop_field(table: str, field_index: int, rows=(2, 5)):
    def f(p: Project):
        lines = p.lines(table)
        for i in rows:
            parts = lines[i].split(",")
            del parts[field_index]
            lines[i] = ",".join(parts)
        p.write_lines(table, lines)
    return f


def _rows_with_email(p: Project, n: int = 2) -> list[int]:
    """Line indices (0 = header) of the first identity records that hold an e-mail."""
    df = p.read("identities")
    return [int(i) + 1 for i in df.index[df["email"] != ""][:n]]


def _short_identity_rows(p: Project):
    _drop_field("identities", 1, rows=_rows_with_email(p))(p)  # the `source` field, as in issue 15


def _identity_emails(p: Project) -> list[str]:
    df = p.read("identities")
    return [df.loc[i - 1, "email"] for i in _rows_with_email(p)]


def _shift_email_into_created_at(p: Project):
    df = p.read("identities")
    df.loc[3, "created_at"] = df.loc[3, "email"] or "budi.santoso77@gmail.com"
    df.loc[4, "created_at"] = "0812-3456-7890"
    p.write("identities", df)


def _shifted_secrets(p: Project) -> list[str]:
    df = p.read("identities")
    return [df.loc[3, "email"] or "budi.santoso77@gmail.com", "0812-3456-7890"]


def _extra_field(p: Project):
    lines = p.lines("orders")
    lines[4] += ",surplus"
    p.write_lines("orders", lines)


def _stray_quotes(p: Project):
    lines = p.lines("customers")
    for i in (10, 20):
        parts = lines[i].split(",")
        parts[3] = '"' + parts[3]
        lines[i] = ",".join(parts)
    p.write_lines("customers", lines)


def _unclosed_quote(p: Project):
    lines = p.lines("customers")
    parts = lines[-3].split(",")
    parts[3] = '"' + parts[3]
    lines[-3] = ",".join(parts)
    p.write_lines("customers", lines)


def _semicolons(p: Project):
    p.write("orders", p.read("orders"), sep=";")


def _latin1(p: Project):
    df = p.read("customers")
    df.loc[5, "region"] = "Jawa Barat Ñ"
    df.to_csv(p.data / "customers.csv", index=False, encoding="latin-1")


def _empty_file(table):
    return lambda p: (p.data / f"{table}.csv").write_text("")


def _header_only(table):
    return lambda p: (p.data / f"{table}.csv").write_text(p.lines(table)[0] + "\n")


def _drop_column(table, col):
    return lambda p: p.write(table, p.read(table).drop(columns=[col]))


def _cell(table, row, col, value):
    return lambda p: p.set_cell(table, row, col, value)


def _cells(table, col, values: dict):
    def f(p: Project):
        df = p.read(table)
        for r, v in values.items():
            df.loc[r, col] = v
        p.write(table, df)
    return f


def _dupe_order_id(p: Project):
    df = p.read("orders")
    df.loc[7, "order_id"] = df.loc[6, "order_id"]
    p.write("orders", df)


def _dupe_header(p: Project):
    lines = p.lines("customers")
    lines[0] = lines[0].replace("region", "first_seen")
    p.write_lines("customers", lines)


def _float_ids_parquet(p: Project):
    df = pd.read_csv(p.data / "customers.csv")
    df["customer_id"] = df["customer_id"].str[1:].astype(float)
    p.to_parquet("customers", df)


def _damaged_parquet(p: Project):
    (p.data / "prices.csv").unlink()
    (p.data / "prices.parquet").write_bytes(b"PAR1 this is not parquet")
    p.sub_config(r"prices:\s*\{path: prices\.csv\}", "prices: {path: prices.parquet, format: parquet}")


def _bom(p: Project):
    text = (p.data / "customers.csv").read_text(encoding="utf-8")
    (p.data / "customers.csv").write_text("\ufeff" + text, encoding="utf-8")


def _leading_zeros(p: Project):
    for t in ("customers", "orders", "touchpoints", "surveys", "tickets"):
        df = p.read(t)
        df["customer_id"] = df["customer_id"].where(df["customer_id"] == "", "00" + df["customer_id"].str[1:])
        p.write(t, df)
    df = p.read("experiments")
    df["unit_id"] = "00" + df["unit_id"].str[1:]
    p.write("experiments", df)


def _spend_with_time(p: Project):
    df = p.read("spend")
    df.loc[0, "date"] = "2024-07-01 10:30:00+07:00"
    p.write("spend", df)


def _ticket_backwards(p: Project):
    df = p.read("tickets")
    df.loc[0, "first_response_at"] = "2020-01-01 00:00:00+07:00"
    p.write("tickets", df)


def _dst_gap(p: Project):
    p.sub_config(r"^timezone: .*$", "timezone: Europe/Berlin")
    p.sub_config(r"^allow_mixed_offsets: .*$", "allow_mixed_offsets: true")
    df = p.read("orders")
    df.loc[0, "order_ts"] = "2025-03-30 02:30:00"  # does not exist in Berlin
    p.write("orders", df)


def _production(p: Project):
    p.sub_config(r"^mode: sample", "mode: production")


def _erased_before(p: Project):
    assert cli.main(["erase", "--customer", "C0000007", "--config", str(p.root / "omni.yaml")]) == 0


def _out_is_file(p: Project):
    (p.root / "afile").write_text("x")


V = ["validate", "--config", "omni.yaml"]


def _run(*args):
    return ["run", "-q", "--config", "omni.yaml", *args]


CASES = [
    # ---- config ----------------------------------------------------------------
    Case("config-typo-key", lambda p: p.sub_config(r"^timezone:", "timezon:"), V, 2, ["timezon", "did you mean 'timezone'"]),
    Case("config-bad-timezone", lambda p: p.sub_config(r"^timezone: .*$", "timezone: Asia/Jakrta"), V, 2, ["timezone", "Asia/Jakrta"]),
    Case("config-data-end-no-such-day", lambda p: p.sub_config(r"^data_end: .*$", "data_end: 2026-02-30"), V, 2,
         ["data_end", "2026-02-30", "no such date", "ISO 8601"], ["Traceback"]),
    Case("config-data-end-day-first", lambda p: p.sub_config(r"^data_end: .*$", 'data_end: "01.07.2026"'), V, 2,
         ["data_end", "01.07.2026", "ISO 8601", "year first"]),
    Case("config-data-end-garbage", lambda p: p.sub_config(r"^data_end: .*$", "data_end: soon"), V, 2, ["data_end", "soon"]),
    Case("config-unknown-mode", lambda p: p.sub_config(r"^mode: sample", "mode: demo"), V, 2, ["mode", "demo"]),
    Case("config-unknown-table", lambda p: p.sub_config(r"^    prices:", "    price:"), V, 2, ["price", "did you mean 'prices'"]),
    Case("config-bad-format", lambda p: p.sub_config(r"format: csv", "format: xlsx"), V, 2, ["format", "xlsx"]),
    Case("config-not-yaml", lambda p: p.set_config(p.config() + "\n  : : [unclosed\n"), V, 2, ["not valid YAML"]),
    Case("config-missing-file", None, ["validate", "--config", "nope.yaml"], 2, ["nope.yaml"]),
    Case("config-channel-kind", lambda p: p.sub_config(r"web:\s+\{kind: online", "web:         {kind: onlin"), V, 2,
         ["web", "kind", "onlin"]),
    Case("config-mapping-unknown-contract-column",
         lambda p: p.table_line("orders", "columns: {order_idx: no_pesanan}"), V, 2, ["order_idx"]),
    # customers is optional since the prepared store (derived from the orders when absent)
    Case("config-no-customers-table", lambda p: p.sub_config(r"^    customers:.*\n", ""), V, 0, ["OK"]),
    # ---- CSV shape (serious 2 and its relatives) --------------------------------------
    Case("csv-short-rows-identities", _short_identity_rows, V, 1,
         ["identities", "fewer fields", "expected 10 fields, saw 9", "data/identities.csv"],
         ["created_at", "UTC offset", "vocabulary", "do not exist"], secret=_identity_emails),
    Case("csv-short-rows-orders", _drop_field("orders", 4, rows=(9,)), V, 1, ["orders", "fewer fields", "line 10"]),
    Case("csv-extra-field", _extra_field, V, 1, ["orders", "wrong number of fields", "line 5"]),
    Case("csv-stray-quotes", _stray_quotes, V, 1, ["customers", "stray quote", "line 11", "21"],
         ["do not exist", "required"]),
    Case("csv-unclosed-quote", _unclosed_quote, V, 1, ["customers", "unclosed quote", "line"]),
    Case("csv-semicolons-without-sep", _semicolons, V, 1, ["orders", 'sep: ";"', "data.tables.orders.sep"],
         ["required column is missing"]),
    Case("csv-semicolons-with-sep", lambda p: (_semicolons(p), p.table_line("orders", 'sep: ";"')), V, 0, ["OK"]),
    Case("csv-latin1-undeclared", _latin1, V, 1, ["customers", "encoding", "latin-1"]),
    Case("csv-latin1-declared", lambda p: (_latin1(p), p.table_line("customers", "encoding: latin-1")), V, 0, ["OK"]),
    Case("csv-empty-file", _empty_file("surveys"), V, 1, ["surveys", "empty"]),
    Case("csv-header-only", _header_only("tickets"), V, 1, ["tickets", "empty", "0 rows"]),
    Case("csv-missing-file", lambda p: (p.data / "spend.csv").unlink(), V, 1, ["spend", "file not found", "data.root"]),
    Case("csv-duplicate-header", _dupe_header, V, 1, ["customers", "more than once", "first_seen"]),
    Case("csv-bom-header", _bom, V, 0, ["OK"]),
    Case("clean-sample", None, V, 0, ["OK", "meets the contract"]),
    Case("ids-with-leading-zeros", _leading_zeros, V, 0, ["OK"]),
    # ---- columns and values -------------------------------------------------------
    Case("missing-required-column", _drop_column("orders", "order_ts"), V, 1, ["orders.order_ts", "missing", "columns"]),
    Case("mapped-column-absent", lambda p: p.table_line("orders", "columns: {order_ts: tanggal}"), V, 1,
         ["orders.order_ts", "tanggal"]),
    Case("unreadable-timestamps", _cells("orders", "order_ts", {3: "kemarin", 8: "31/12/2025 10:00"}), V, 1,
         ["orders.order_ts", "2 rows", "not a readable timestamp", "ISO 8601"], ["UTC offset"]),
    Case("mixed-offsets", _cells("orders", "order_ts", {3: "2025-01-01 10:00:00+00:00"}), V, 1,
         ["orders.order_ts", "another UTC offset", "allow_mixed_offsets"]),
    Case("empty-ids", _cells("orders", "order_id", {3: "", 4: " "}), V, 1,
         ["orders.order_id", "2 rows are empty"], ["duplicated", "nan"]),
    Case("duplicate-ids", _dupe_order_id, V, 1, ["orders.order_id", "duplicated", "each order_id must appear once"]),
    Case("unknown-channel", _cell("orders", 2, "channel", "tiktok_shop"), V, 1, ["orders.channel", "tiktok_shop", "channels:"]),
    # a channel spelt in another case is the vocabulary's channel (exports often write WEB)
    Case("channel-wrong-case", _cell("orders", 2, "channel", "Web"), V, 0, ["OK"]),
    Case("negative-amount", _cell("orders", 2, "net_amount", "-5"), V, 1, ["orders.net_amount", "net_amount >= 0"]),
    Case("amount-not-a-number", _cell("orders", 2, "net_amount", "12,5 rb"), V, 1, ["orders.net_amount", "not a number"]),
    Case("orphan-customer", _cell("orders", 2, "customer_id", "C9999999"), V, 1,
         ["orders.customer_id", "C9999999", "customers.customer_id"]),
    Case("orphan-record", _cell("orders", 2, "record_id", "R99999999"), V, 1, ["orders.record_id", "identities"]),
    Case("after-data-end", _cell("orders", 2, "order_ts", "2027-01-01 10:00:00+07:00"), V, 1,
         ["orders.order_ts", "after data_end", "timezone"]),
    Case("items-not-whole", _cell("orders", 2, "items", "1.5"), V, 1, ["orders.items", "whole number"]),
    Case("nps-out-of-range", _cell("surveys", 0, "nps", "11"), V, 1, ["surveys.nps", "0..10"]),
    Case("consent-not-bool", _cell("customers", 0, "consent_analytics", "maybe"), V, 1,
         ["customers.consent_analytics", "true/false"]),
    Case("status-unknown", _cell("orders", 0, "status", "refunded"), V, 1, ["orders.status", "refunded"]),
    Case("ticket-answered-before-opened", _ticket_backwards, V, 1, ["tickets.first_response_at", "answered before"]),
    Case("spend-not-whole-day", _spend_with_time, V, 1, ["spend.date", "whole days"]),
    Case("dst-gap", _dst_gap, V, 1, ["orders.order_ts", "does not exist", "Europe/Berlin"]),
    Case("float-ids-in-parquet", _float_ids_parquet, V, 1,
         ["customers.customer_id", "floating-point", "as text or as a whole-number type"]),
    Case("damaged-parquet", _damaged_parquet, V, 1, ["prices", "not a readable Parquet"]),
    # ---- PII never in clear in messages -------------------------------------------
    Case("pii-shifted-into-created-at", _shift_email_into_created_at, V, 1,
         ["identities.created_at", "not a readable timestamp", "***"], secret=_shifted_secrets),
    # ---- the CLI's own arguments --------------------------------------------------
    Case("sample-negative-customers", None, ["sample", "--customers", "-5", "--out", "s"], 2,
         ["--customers", "at least 1", "-5"], ["Traceback"]),
    Case("sample-zero-customers", None, ["sample", "--customers", "0", "--out", "s"], 2, ["--customers"]),
    Case("sample-negative-seed", None, ["sample", "--seed", "-1", "--out", "s"], 2, ["--seed"]),
    Case("sample-not-a-number", None, ["sample", "--customers", "many"], 2, ["invalid int value"]),
    Case("sample-out-is-a-file", _out_is_file, ["sample", "--customers", "10", "--out", "afile"], 2, ["is a file"]),
    Case("erase-unknown-customer", None, ["erase", "--customer", "NOPE", "--config", "omni.yaml"], 2,
         ["NOPE", "not in any table"]),
    Case("erase-no-selector", None, ["erase", "--config", "omni.yaml"], 2, ["one of the arguments"]),
    Case("erase-two-selectors", None, ["erase", "--customer", "C0000001", "--email", "a@b.co", "--config", "omni.yaml"], 2,
         ["not allowed with"]),
    Case("erase-malformed-email", None, ["erase", "--email", "budi@", "--config", "omni.yaml"], 2, ["not a valid e-mail"]),
    Case("erase-unknown-email", None, ["erase", "--email", "nobody.here@example.com", "--config", "omni.yaml"], 2,
         ["no identity record", "n***e@example.com"], ["nobody.here@example.com"]),
    Case("erase-unknown-phone", None, ["erase", "--phone", "0899-0000-0001", "--config", "omni.yaml"], 2,
         ["no identity record"]),
    Case("erase-unknown-record", None, ["erase", "--record", "R99999999", "--config", "omni.yaml"], 2,
         ["no identity record", "R99999999"]),
    Case("erase-without-key-in-production", _production, ["erase", "--customer", "C0000001", "--config", "omni.yaml"], 2,
         ["OMNI_PSEUDONYM_KEY"]),
    Case("erase-twice", _erased_before, ["erase", "--customer", "C0000007", "--config", "omni.yaml"], 2, ["erased on"]),
    Case("erase-dry-run-changes-nothing", None, ["erase", "--customer", "C0000001", "--dry-run", "--config", "omni.yaml"], 0,
         ["DRY RUN", "orders"]),
    Case("export-unknown-customer", None, ["export-customer", "--customer", "NOPE", "--config", "omni.yaml"], 2, ["NOPE"]),
    Case("export-into-reports", lambda p: p.fake_run(),
         ["export-customer", "--customer", "C0000001", "--config", "omni.yaml", "--out", "reports/20260101-000000/x.json"],
         2, ["reports folder", "personal data"]),
    Case("run-param-wrong-type", lambda p: p.fake_run(), _run("05", "-p", "churn_days=abc"), 2,
         ["churn_days", "expected a number", "abc"]),
    Case("run-param-unknown", lambda p: p.fake_run(), _run("05", "-p", "churn_dayz=90"), 2, ["unknown parameter", "churn_dayz"]),
    Case("run-param-no-equals", lambda p: p.fake_run(), _run("05", "-p", "churn_days"), 2, ["key=value"]),
    Case("run-unknown-notebook", lambda p: p.fake_run(), _run("99"), 2, ["unknown notebook", "99", "00_data_health"]),
    Case("run-without-key-in-production", lambda p: (_production(p), p.fake_run()), _run("00"), 2, ["OMNI_PSEUDONYM_KEY"]),
    Case("run-config-param-unknown", lambda p: (p.sub_config(r"^params: \{\}", "params: {churn_dayz: 3}"), p.fake_run()),
         _run("05"), 2, ["churn_dayz", "params"]),
]


def test_the_catalogue_is_large_enough():
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, base_project: Path, tmp_path: Path, monkeypatch, capsys):
    root = tmp_path / "project"
    shutil.copytree(base_project, root, symlinks=True)
    monkeypatch.chdir(root)
    monkeypatch.delenv("OMNI_CONFIG", raising=False)
    monkeypatch.delenv("OMNI_PSEUDONYM_KEY", raising=False)
    p = Project(root)
    secrets = case.secret(p) if case.secret else []  # read before the damage
    if case.setup:
        case.setup(p)
    capsys.readouterr()
    before = _snapshot(root)
    try:
        code = cli.main(case.argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    out = capsys.readouterr()
    text = out.out + out.err
    assert code == case.code, text[-3000:]
    for w in case.words:
        assert w in text, f"{w!r} not in:\n{text[-3000:]}"
    for w in case.absent + ["Traceback"]:
        assert w not in text, f"{w!r} in:\n{text[-3000:]}"
    for s in secrets:
        assert s and s not in text, f"personal value {s[:2]}... shown in clear"
    after = _snapshot(root)
    assert after == before, {k: (before.get(k), after.get(k)) for k in set(before) | set(after)
                             if before.get(k) != after.get(k)}
