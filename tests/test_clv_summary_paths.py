"""rfm_summary's id-encoding paths all give lifetimes' numbers.

The summary encodes customer ids in one of several ways (Arrow string hashing, exact
64-bit words for ids of one width <= 8 bytes, integer hashing, the codes of a
categorical). Each path is checked here against lifetimes on the same shuffled log.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from lifetimes.utils import summary_data_from_transaction_data

from omni_lib import clv

COLS = ["frequency", "recency", "T", "monetary_value"]


@pytest.fixture(scope="module")
def log() -> pd.DataFrame:
    """3,000 customers, 20,000 purchases in random (not customer) order, several per day."""
    rng = np.random.default_rng(11)
    n = 20_000
    cust = rng.integers(0, 3_000, n)
    day = rng.integers(0, 400, n)
    # a few customers buy twice on their first day: tests the first-period spend
    cust = np.r_[cust, cust[:500]]
    day = np.r_[day, day[:500]]
    ts = pd.Timestamp("2025-01-01") + pd.to_timedelta(day, "D") + pd.to_timedelta(rng.integers(0, 86_400, len(day)), "s")
    return pd.DataFrame({"cid": cust, "order_ts": ts, "net_amount": rng.gamma(2.0, 50.0, len(day)).round(2)})


def _reference(tx: pd.DataFrame, end=None) -> pd.DataFrame:
    return summary_data_from_transaction_data(tx, "customer_id", "order_ts", "net_amount",
                                              observation_period_end=end, freq="D", freq_multiplier=7)


def _check(tx: pd.DataFrame, end=None) -> pd.DataFrame:
    mine = clv.rfm_summary(tx, monetary_col="net_amount", observation_end=end, freq="D", freq_multiplier=7)
    ref = _reference(tx, end)
    assert mine.index.is_unique and len(mine) == len(ref)
    np.testing.assert_allclose(mine[COLS].to_numpy(), ref.loc[mine.index, COLS].to_numpy(), rtol=1e-12)
    return mine


ID_FORMATS = {
    "fixed width 8 (words)": lambda c: "C" + pd.Series(c).map("{:07d}".format),
    "fixed width 3 (padded words)": lambda c: pd.Series(c).map("{:03d}".format),
    "variable width (Arrow hashing)": lambda c: "cust-" + pd.Series(c).astype(str),
    "integer ids": lambda c: pd.Series(c) * 7 + 100,
    "short, varying, one empty": lambda c: pd.Series(c).map(lambda x: "" if x == 0 else format(int(x), "x")),
}


@pytest.mark.parametrize("fmt", list(ID_FORMATS))
def test_every_id_path_equals_lifetimes(log, fmt):
    tx = log.assign(customer_id=ID_FORMATS[fmt](log["cid"].to_numpy()).to_numpy())
    mine = _check(tx)
    assert set(mine.index) == set(tx["customer_id"])


@pytest.mark.parametrize("fmt", list(ID_FORMATS))
def test_two_thread_split_equals_lifetimes(log, fmt, monkeypatch):
    """Above _PARALLEL_MIN rows, ids of one width <= 8 bytes are split by hash over two threads
    (other ids take the one-thread path: checked here too)."""
    monkeypatch.setattr(clv, "_PARALLEL_MIN", 1)
    tx = log.assign(customer_id=ID_FORMATS[fmt](log["cid"].to_numpy()).to_numpy())
    mine = _check(tx)
    assert set(mine.index) == set(tx["customer_id"])
    _check(tx, pd.Timestamp("2025-08-01 23:59:59"))
    no_money = clv.rfm_summary(tx, freq="D", freq_multiplier=7)            # no spend column
    pd.testing.assert_frame_equal(no_money, mine[["frequency", "recency", "T"]])


def test_categorical_ids_with_unused_categories(log):
    ids = "C" + pd.Series(log["cid"].to_numpy()).map("{:07d}".format)
    cats = pd.Categorical(ids, categories=sorted(set(ids)) + ["C9999999", "C9999998"])
    mine = _check(log.assign(customer_id=cats))
    assert "C9999999" not in mine.index


def test_observation_end_drops_later_purchases_on_every_path(log):
    end = pd.Timestamp("2025-08-01 23:59:59")
    for ids in ("C" + pd.Series(log["cid"].to_numpy()).map("{:07d}".format),
                "cust-" + pd.Series(log["cid"].to_numpy()).astype(str)):
        tx = log.assign(customer_id=ids.to_numpy())
        _check(tx, end)
        _check(tx.assign(customer_id=tx["customer_id"].astype("category")), end)


def test_chunked_arrow_ids_from_parquet(log, tmp_path):
    """Frames read from Parquet hold their strings in several Arrow chunks."""
    tx = log.assign(customer_id=("C" + pd.Series(log["cid"].to_numpy()).map("{:07d}".format)).to_numpy())
    path = tmp_path / "tx.parquet"
    tx.to_parquet(path, row_group_size=3_000)
    back = pd.read_parquet(path)
    assert pa.array(back["customer_id"], from_pandas=True).num_chunks > 1
    _check(back)


def test_sliced_frame_with_unaligned_string_buffer(log):
    """A slice whose 8-byte ids start at an odd byte of the Arrow buffer."""
    ids = list(("C" + pd.Series(log["cid"].to_numpy()).map("{:07d}".format)))
    arr = pa.array(["X"] + ids, type=pa.large_string()).slice(1)
    part = log.assign(customer_id=pd.Series(pd.arrays.ArrowExtensionArray(arr)))
    back = pa.array(part["customer_id"], from_pandas=True)
    assert np.frombuffer(back.buffers()[1], dtype=np.int64)[back.offset] % 8 == 1
    _check(part)


def test_missing_ids_and_timestamps_are_counted(log):
    tx = log.assign(customer_id=("C" + pd.Series(log["cid"].to_numpy()).map("{:07d}".format)).to_numpy())
    bad = tx.copy()
    bad.loc[[1, 5, 9], "customer_id"] = None
    with pytest.raises(clv.CLVInputError, match="3 transactions have no customer id"):
        clv.rfm_summary(bad, monetary_col="net_amount")
    bad = tx.copy()
    bad.loc[[2, 4], "order_ts"] = pd.NaT
    with pytest.raises(clv.CLVInputError, match="2 transactions have no timestamp"):
        clv.rfm_summary(bad, monetary_col="net_amount")


def test_summary_in_a_forked_child_does_not_hang(log):
    """The worker threads are made again after a fork (the parent's do not exist there)."""
    import multiprocessing as mp

    tx = log.assign(customer_id=("C" + pd.Series(log["cid"].to_numpy()).map("{:07d}".format)).to_numpy())
    parent = clv.rfm_summary(tx, monetary_col="net_amount")       # the pool exists now
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:
        child = pool.apply_async(_summary_rows, (tx,)).get(timeout=60)
    assert child == len(parent)


def _summary_rows(tx):
    return len(clv.rfm_summary(tx, monetary_col="net_amount"))


def test_bad_ids_and_timestamps_are_clear_errors(log):
    tx = log.assign(customer_id=pd.Series(["C1", 2] * (len(log) // 2) + ["C3"] * (len(log) % 2), dtype=object))
    with pytest.raises(clv.CLVInputError, match="all text or all numbers"):
        clv.rfm_summary(tx)
    bad = log.assign(customer_id="C1", order_ts=log["order_ts"].astype(str))
    bad.loc[[3, 8], "order_ts"] = "yesterday"
    with pytest.raises(clv.CLVInputError, match="2 transactions have a timestamp that is not a date/time"):
        clv.rfm_summary(bad)


def test_64_bit_keys_when_customers_times_periods_exceed_32_bits():
    """300,000 customers over 80,000 days: the (customer, period) key needs 64 bits."""
    rng = np.random.default_rng(5)
    n = 300_000
    cust = np.r_[np.arange(n), rng.integers(0, n, 50_000)]
    day = np.r_[rng.integers(0, 80_000, n), rng.integers(0, 80_000, 50_000)]
    day[0], day[1] = 0, 79_999
    tx = pd.DataFrame({"customer_id": cust, "order_ts": pd.Timestamp("1850-01-01") + pd.to_timedelta(day, "D"),
                       "net_amount": rng.gamma(2.0, 10.0, len(cust))})
    assert n << (79_999).bit_length() >= 2**32
    _check(tx)


def test_two_thread_split_with_one_customer(log, monkeypatch):
    """Every row lands in one half of the split: the other half is empty."""
    monkeypatch.setattr(clv, "_PARALLEL_MIN", 1)
    _check(log.assign(customer_id="C0000001"))
