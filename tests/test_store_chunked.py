"""Big event tables are read, checked and staged in slices: same store, same problem list."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from omni_lib import store
from omni_lib.config import load_config
from omni_lib.schema import ContractError
from omni_lib.store import chunked

from .test_store import _small_project


def _tables(path: Path) -> dict[str, pd.DataFrame]:
    con = duckdb.connect(str(path), read_only=True)
    con.execute("SET TimeZone = 'Asia/Jakarta'")
    names = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables "
                                       "WHERE table_name <> '_meta' ORDER BY 1").fetchall()]
    out = {n: con.sql(f'SELECT * FROM "{n}"').df() for n in names}
    meta = {k: json.loads(v) for k, v in con.execute("SELECT key, value FROM _meta").fetchall()}
    con.close()
    return out, meta


@pytest.fixture(scope="module")
def two_stores(tmp_path_factory):
    """The same small project prepared whole and in slices of 997 rows."""
    base = tmp_path_factory.mktemp("whole")
    cfg_path = _small_project(base, n=300)
    sliced = tmp_path_factory.mktemp("sliced")
    shutil.copytree(base / "data", sliced / "data")
    shutil.copy(cfg_path, sliced / "omni.yaml")
    store.prepare(cfg_path, progress=False)
    mp = pytest.MonkeyPatch()
    mp.setattr(chunked, "CHUNK_ROWS", 997)
    try:
        assert chunked.big_tables(load_config(sliced / "omni.yaml"), ["touchpoints", "orders"]) == {
            "touchpoints": len(pd.read_parquet(sliced / "data" / "touchpoints.parquet"))}
        store.prepare(sliced / "omni.yaml", progress=False)
    finally:
        mp.undo()
    return load_config(cfg_path), load_config(sliced / "omni.yaml")


def test_sliced_prepare_writes_the_same_store(two_stores):
    whole, sliced = two_stores
    a, ma = _tables(whole.store_path)
    b, mb = _tables(sliced.store_path)
    assert sorted(a) == sorted(b)
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], check_dtype=True, obj=name)
    for k in ("rows", "rows_in", "consent", "mapping", "customers", "notes"):
        assert ma[k] == mb[k], k
    assert len(b["touchpoints"]) > 997 * 3   # it really was sliced


def test_sliced_checks_report_the_same_problems(two_stores, tmp_path):
    whole, sliced = two_stores
    tp = pd.read_parquet(whole.source("touchpoints"))
    # faults across slices: empty required timestamps, a duplicated key, an unknown record,
    # a channel outside the vocabulary
    ts = "event_ts"
    tp.loc[[5, 1500, 2999], ts] = None
    tp.loc[2500, "event_id"] = tp.loc[10, "event_id"]
    tp.loc[[7, 2001], "record_id"] = "no-such-record"
    tp.loc[[3, 1996], "channel"] = "fax"
    problems = {}
    for label, cfg, size in (("whole", whole, 10**9), ("sliced", sliced, 997)):
        tp.to_parquet(cfg.source("touchpoints"))
        mp = pytest.MonkeyPatch()
        mp.setattr(chunked, "CHUNK_ROWS", size)
        try:
            with pytest.raises(ContractError) as err:
                store.prepare(cfg.path, progress=False)
        finally:
            mp.undo()
        problems[label] = [(p.table, p.column, p.check, p.n_bad, p.examples, p.message) for p in err.value.problems]
    assert problems["whole"] == problems["sliced"]
    checks = {(c, k) for _, c, k, *_ in problems["sliced"]}
    assert {(ts, "not null"), ("event_id", "unique event_id"),
            ("record_id", "references identities.record_id")} <= checks
