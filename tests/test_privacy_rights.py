"""Pseudonymisation, the key rule, the PII scan of a real run, erasure and export."""
from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from omni_lib import privacy, runner
from omni_lib.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]
KEY = b"unit-test-key-0123456789"


# --------------------------------------------------------------------------- pseudonyms
def test_pseudonymise_is_hmac_sha256_and_keeps_missing():
    s = pd.Series(["adi@gmail.com", None, "+6281234567890", "Ádi Sétiawan"], dtype="str", index=[3, 1, 2, 9])
    out = privacy.pseudonymise(s, KEY)
    assert list(out.index) == [3, 1, 2, 9] and pd.isna(out.loc[1])
    for i in (3, 2, 9):
        assert out.loc[i] == hmac.new(KEY, s.loc[i].encode("utf-8"), hashlib.sha256).hexdigest()
    other = privacy.pseudonymise(s, b"another-key-0123456789")
    assert (other.dropna() != out.dropna()).all()              # the key matters
    long_key = b"k" * 100                                       # keys longer than a block are hashed first
    assert privacy.pseudonymise(s.iloc[:1], long_key).iloc[0] == hmac.new(
        long_key, b"adi@gmail.com", hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------- the key rule
def _project(tmp_path: Path, mode: str | None, sample_meta: bool = False) -> Path:
    data = tmp_path / "data"
    data.mkdir(parents=True, exist_ok=True)
    if sample_meta:
        (data / "meta.json").write_text(json.dumps({"generator": "omni_lib.sample"}))
    cfg = ("data:\n  format: csv\n  root: data\n  tables:\n    customers: {path: c.csv}\n"
           "    orders: {path: o.csv}\n")
    if mode:
        cfg += f"mode: {mode}\n"
    (tmp_path / "omni.yaml").write_text(cfg)
    nbs = tmp_path / "notebooks"
    nbs.mkdir(exist_ok=True)
    import nbformat

    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell('config_path = "../omni.yaml"')
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell("print('ran')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, nbs / "00_x.ipynb")
    return tmp_path / "omni.yaml"


def test_key_from_environment_and_its_length(tmp_path):
    cfg = load_config(_project(tmp_path, "production"))
    assert privacy.pseudonym_key(cfg, {privacy.KEY_ENV: "x" * 32}) == b"x" * 32
    with pytest.raises(privacy.PrivacyError, match="too short"):
        privacy.pseudonym_key(cfg, {privacy.KEY_ENV: "short"})
    with pytest.raises(privacy.PrivacyError, match=privacy.KEY_ENV):
        privacy.pseudonym_key(cfg, {})


def test_sample_mode_uses_the_public_key_only_there(tmp_path):
    assert privacy.pseudonym_key(load_config(_project(tmp_path / "a", "sample")), {}) == privacy.SAMPLE_KEY
    # no mode key: decided by the data folder
    assert privacy.is_sample_mode(load_config(_project(tmp_path / "b", None, sample_meta=True)))
    assert not privacy.is_sample_mode(load_config(_project(tmp_path / "c", None)))
    # explicit production wins over a sample folder
    assert not privacy.is_sample_mode(load_config(_project(tmp_path / "d", "production", sample_meta=True)))


def test_config_rejects_an_unknown_mode(tmp_path):
    with pytest.raises(ConfigError, match="mode"):
        load_config(_project(tmp_path, "demo"))


def test_run_refuses_to_start_without_key_outside_sample_mode(tmp_path, monkeypatch):
    cfg = _project(tmp_path, "production")
    monkeypatch.delenv(privacy.KEY_ENV, raising=False)
    with pytest.raises(runner.RunError, match=privacy.KEY_ENV):
        runner.run(config_path=cfg, progress=False)
    assert not (tmp_path / "reports").exists() or not any((tmp_path / "reports").iterdir())
    env = {k: v for k, v in __import__("os").environ.items() if k != privacy.KEY_ENV}
    proc = subprocess.run([sys.executable, "-m", "omni_lib.cli", "run", "-q", "--config", str(cfg)],
                          cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2 and privacy.KEY_ENV in proc.stderr
    # with a key it starts (and runs the notebook)
    monkeypatch.setenv(privacy.KEY_ENV, "k" * 32)
    assert runner.run(config_path=cfg, progress=False).ok


def test_preflight_passes_in_sample_mode(tmp_path, monkeypatch):
    monkeypatch.delenv(privacy.KEY_ENV, raising=False)
    assert "sample" in privacy.preflight(_project(tmp_path, "sample"))


# --------------------------------------------------------------------------- the PII scan
def test_scanner_finds_planted_emails_and_phones(tmp_path):
    (tmp_path / "r.html").write_text("<td>Budi.Santoso77@gmail.com</td><td>0812-3456-7890</td>")
    (tmp_path / "r.json").write_text('{"p": "+62 857 1234 5678", "ok": "R00012345", "n": 20261122205821}')
    (tmp_path / "clean.json").write_text('{"f1": 0.95, "run": "20261122-205821", "amount": 81234567}')
    hits = privacy.scan_for_pii(tmp_path)
    assert sorted(hits["kind"]) == ["email", "phone", "phone"]
    assert set(Path(f).name for f in hits["file"]) == {"r.html", "r.json"}


@pytest.mark.slow
def test_a_real_run_writes_no_email_or_phone(sample_config, tmp_path, monkeypatch):
    """Run the notebooks that read identities (data health, unified customers) on the
    sample and scan every HTML and JSON the run writes."""
    monkeypatch.delenv(privacy.KEY_ENV, raising=False)
    res = runner.run(["00", "01"], config_path=sample_config, reports_dir=tmp_path / "reports", progress=False)
    assert res.ok, [r.failure_line() for r in res.failed]
    written = [p for p in res.run_dir.rglob("*") if p.suffix in (".html", ".json")]
    assert any(p.name == "01_unified_customers.html" for p in written) and len(written) >= 5
    hits = privacy.scan_for_pii(written)
    assert hits.empty, hits.head(10).to_string()
    # and the scanner would have seen them: the raw identities hold both kinds
    ids = pd.read_parquet(ROOT / "data" / "sample" / "identities.parquet")
    raw = ids[["email", "phone"]].dropna().head(50).to_csv(index=False)
    assert privacy.EMAIL_PATTERN.search(raw) and privacy.PHONE_PATTERN.search(raw)


# --------------------------------------------------------------------------- erasure and export
@pytest.fixture()
def small_shop(tmp_path_factory) -> Path:
    """A 300-customer shop in a folder of its own (erasure rewrites its files), written as a
    retailer with a CRM would: a customers table, and rows keyed by its customer ids (the
    sample's planted persons); customers and orders as CSV, the rest Parquet."""
    from omni_lib.sample import generate, true_keyed

    base = tmp_path_factory.mktemp("shop")
    generate(out_dir=base / "data", n_customers=300, progress=False)
    for t, df in true_keyed(base / "data").items():
        if t in ("customers", "orders"):
            df.to_csv(base / "data" / f"{t}.csv", index=False)
        elif t != "identities":
            df.to_parquet(base / "data" / f"{t}.parquet")
    (base / "omni.yaml").write_text(
        "data:\n  format: parquet\n  root: data\n  tables:\n"
        "    identities: {path: identities.parquet}\n"
        "    customers: {path: customers.csv, format: csv}\n"
        "    orders: {path: orders.csv, format: csv}\n"
        "    touchpoints: {path: touchpoints.parquet}\n"
        "    surveys: {path: surveys.parquet}\n    tickets: {path: tickets.parquet}\n"
        "    experiments: {path: experiments.parquet}\n"
        "mode: sample\n")
    return base


def _busy_customer(base: Path) -> str:
    orders = pd.read_csv(base / "data" / "orders.csv", dtype=str)
    return orders["customer_id"].value_counts().index[0]


def test_export_writes_everything_held(small_shop, tmp_path):
    cid = _busy_customer(small_shop)
    out = privacy.export_customer(cid, small_shop / "omni.yaml", out=tmp_path / "x.json")
    doc = json.loads(out.read_text())
    orders = pd.read_csv(small_shop / "data" / "orders.csv", dtype=str)
    assert doc["customer_id"] == cid and doc["rows"]["customers"] == 1
    assert doc["rows"]["orders"] == int((orders["customer_id"] == cid).sum())
    own_records = set(orders.loc[orders["customer_id"] == cid, "record_id"])
    assert own_records <= {r["record_id"] for r in doc["tables"]["identities"]}
    assert doc["unified_customer_ids"] and not doc["erasure_logged_before"]


def test_erase_removes_the_person_everywhere_and_logs(small_shop):
    cfg = small_shop / "omni.yaml"
    cid = _busy_customer(small_shop)
    orders = pd.read_csv(small_shop / "data" / "orders.csv", dtype=str)
    order_ids = set(orders.loc[orders["customer_id"] == cid, "order_id"])
    reports = small_shop / "reports" / "20260101-000000"
    reports.mkdir(parents=True)
    (reports / "x.json").write_text(json.dumps({"top": [cid, "C9999999"], "order": sorted(order_ids)[0]}))

    dry = privacy.erase_customer(cid, cfg, dry_run=True)
    assert dry["rows_removed"]["orders"] == len(order_ids)
    assert (pd.read_csv(small_shop / "data" / "orders.csv", dtype=str)["customer_id"] == cid).any()  # untouched

    before = {t: len(pd.read_parquet(small_shop / "data" / f"{t}.parquet"))
              for t in ("identities", "touchpoints", "experiments")}
    s = privacy.erase_customer(cid, cfg)
    assert s["rows_removed"]["orders"] == len(order_ids) and s["rows_removed"]["customers"] == 1
    assert not (pd.read_csv(small_shop / "data" / "orders.csv", dtype=str)["customer_id"] == cid).any()
    assert not (pd.read_csv(small_shop / "data" / "customers.csv", dtype=str)["customer_id"] == cid).any()
    for t, col in (("touchpoints", "customer_id"), ("experiments", "unit_id")):
        df = pd.read_parquet(small_shop / "data" / f"{t}.parquet")
        assert not (df[col] == cid).any()
        assert len(df) == before[t] - s["rows_removed"].get(t, 0)
    ids_left = pd.read_parquet(small_shop / "data" / "identities.parquet")
    assert not ids_left["record_id"].isin(orders.loc[orders["customer_id"] == cid, "record_id"]).any()
    assert len(ids_left) == before["identities"] - s["rows_removed"]["identities"]
    # derived outputs: their ids gone, others kept
    text = (reports / "x.json").read_text()
    assert cid not in text and "C9999999" in text and "[erased]" in text
    # the log: pseudonymised id, counts; never the id in clear
    log_text = (small_shop / "privacy" / "erasure_log.jsonl").read_text()
    assert cid not in log_text
    entry = json.loads(log_text.splitlines()[-1])
    assert entry["subject"] == privacy.pseudonymise_id(cid, privacy.SAMPLE_KEY)
    assert entry["rows_removed"]["orders"] == len(order_ids)
    # the data still loads and meets the contract, and a second erasure says it was done
    from omni_lib.io import check

    assert check(cfg) == []
    with pytest.raises(privacy.PrivacyError, match="erased on"):
        privacy.erase_customer(cid, cfg)


def test_cli_erase_and_export_unknown_customer_is_exit_2(small_shop):
    for cmd in (["erase", "--customer", "NOPE"], ["export-customer", "--customer", "NOPE"]):
        proc = subprocess.run([sys.executable, "-m", "omni_lib.cli", *cmd, "--config", str(small_shop / "omni.yaml")],
                              cwd=small_shop, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2 and "NOPE" in proc.stderr


def test_cli_help_for_the_rights_commands():
    for cmd in (["erase"], ["export-customer"]):
        out = subprocess.run([sys.executable, "-m", "omni_lib.cli", *cmd, "--help"], capture_output=True, text=True)
        assert out.returncode == 0 and "--customer" in out.stdout and len(out.stdout) > 500
