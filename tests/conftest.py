"""Shared fixtures."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The default sample (data/sample), generated once if missing or made by another
    generator version (a stale sample would test the old generator's data)."""
    from omni_lib.sample import GENERATOR_VERSION, generate

    out = ROOT / "data" / "sample"
    meta = out / "meta.json"
    version = json.loads(meta.read_text()).get("generator_version") if meta.exists() else None
    if version != GENERATOR_VERSION:
        generate(out_dir=out)
    return out


@pytest.fixture(scope="session")
def sample_config(sample_dir) -> Path:
    return ROOT / "omni.yaml"


@pytest.fixture(scope="session")
def true_store(sample_dir, tmp_path_factory):
    """The sample's store built with the planted identity links instead of resolution: every
    row keyed by its true person, consent applied. For tests that check an analysis against the
    planted truth by customer id (the bundled sample itself is siloed: rows name channel records)."""
    from omni_lib import store
    from omni_lib.config import load_config

    cfg = dataclasses.replace(load_config(ROOT / "omni.yaml"),
                              store_path=tmp_path_factory.mktemp("true_store") / "true.duckdb")
    links = pd.read_parquet(sample_dir / "truth" / "identity_links.parquet", columns=["record_id", "customer_id"])
    store.prepare(cfg, links=links, progress=False)
    return store.Store(cfg.store_path, cfg)


@pytest.fixture()
def true_tables(true_store) -> dict:
    """Fresh pandas copies of the true store's tables (a test may change them)."""
    return {name: true_store.table(name) for name in true_store.tables}


@pytest.fixture(scope="module")
def true_ds(true_store):
    """The true store's analysis tables as an ``io.Dataset`` (what ``io.load`` + consent gave
    before the sample was siloed), re-read per module so that no test sees another's edits."""
    from omni_lib import io
    from omni_lib.store import ANALYSIS_TABLES

    return io.Dataset({t: true_store.table(t) for t in ANALYSIS_TABLES}, true_store.config)


@pytest.fixture(scope="session")
def report_run(sample_config, tmp_path_factory) -> Path:
    """One `omni run` of every notebook on the sample, shared by the report lint and browser tests.

    Set OMNI_TEST_REPORT_RUN=<reports/run folder> to reuse an existing run instead (faster
    while iterating; the tests then check that run).
    """
    import os

    reuse = os.environ.get("OMNI_TEST_REPORT_RUN")
    if reuse:
        return Path(reuse).resolve()
    from omni_lib import runner

    res = runner.run(config_path=sample_config, reports_dir=tmp_path_factory.mktemp("reports"), progress=False)
    assert res.ok, [r.failure_line() for r in res.failed]
    return res.run_dir
