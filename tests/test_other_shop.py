"""A data set the workbench was not built on (tests/datasets/orders_only_shop.py): only orders
and experiments, other column names, numeric ids, upper-case channels, experiment units that are
not customers, no assignment times, a per-unit 0/1 outcome. Run from another folder as a user would."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.datasets import orders_only_shop

KEY = {"OMNI_PSEUDONYM_KEY": "test-key-0123456789abcdef"}


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    return orders_only_shop.write(tmp_path_factory.mktemp("shop") / "export")


def _omni(args, cwd):
    env = {**os.environ, **KEY}
    env.pop("OMNI_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "omni_lib.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)


def test_validate_passes(shop, tmp_path):
    proc = _omni(["validate", "--config", str(shop)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "meets the contract" in proc.stdout and str(shop) in proc.stderr  # says which config


def test_run_from_another_folder_skips_what_has_no_data(shop, tmp_path):
    proc = _omni(["run", "-q", "--config", str(shop)], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = [p for p in (shop.parent / "reports").iterdir() if p.is_dir() and not p.is_symlink()]
    assert len(runs) == 1 and not (tmp_path / "reports").exists()
    run = json.loads((runs[0] / "run.json").read_text())
    status = {r["notebook"][:2]: r["status"] for r in run["notebooks"]}
    assert status == {"00": "ok", "01": "skipped", "02": "skipped", "03": "skipped", "04": "ok",
                      "05": "ok", "06": "ok", "07": "ok", "08": "ok"}, status
    skipped = {r["notebook"][:2]: r["reason"] for r in run["notebooks"] if r["status"] == "skipped"}
    assert "identities" in skipped["01"] and "touchpoints" in skipped["03"]
    assert "Not run" in (runs[0] / "index.html").read_text()
    # the planted experiment effect (+30% on 10%) is found from the per-unit outcome column
    ab = json.loads((runs[0] / "07_ab_test.json").read_text())
    assert ab["parameters"]["experiment_id"] == "PROMO_BANNER"
    assert "ship treatment" in ab["headline"]
    health = json.loads((runs[0] / "00_data_health.json").read_text())
    assert health["key_figures"]["customers"] == 3000   # numeric ids read as ids, every customer found
    assert (shop.parent / "reports" / "latest").resolve() == runs[0].resolve()


def test_experiment_outcome_and_control_from_config(shop, monkeypatch):
    for k, v in KEY.items():
        monkeypatch.setenv(k, v)   # never leaks to other tests
    from omni_lib import experiments as ab, store

    st = store.open_store(shop)
    res = ab.analyze(st.tables, "PROMO_BANNER", config=st.config)
    row = res.results.query("role == 'primary' and decision_row").iloc[0]
    assert res.data.control == "control" and row["n_control"] + row["n_variant"] == 8000
    assert row["rel_low"] < orders_only_shop.TRUE_LIFT < row["rel_high"]
    null = ab.analyze(st.tables, "FREE_SHIPPING", config=st.config).results.query("role == 'primary'").iloc[0]
    assert null["rel_low"] < 0 < null["rel_high"]
