"""Property tests (hypothesis) for the readers and the contract on generated frames and
files: random dtypes, nulls, unicode and id formats. Two promises:

* never an uncaught exception: bad input is a list of Problems, not a traceback;
* never a silent change of an id: an id comes out as the text it went in as (trimmed),
  or the change is reported as a Problem (a float id).
"""
from __future__ import annotations

import string
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omni_lib import io as oio
from omni_lib import schema
from omni_lib.config import TableConfig, load_config

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    root = tmp_path_factory.mktemp("props")
    (root / "omni.yaml").write_text(
        "data:\n  format: csv\n  root: .\n  tables:\n    customers: {path: c.csv}\n    orders: {path: o.csv}\n"
        "    identities: {path: i.csv}\nmode: sample\ntimezone: Asia/Jakarta\n")
    return load_config(root / "omni.yaml")


# text as people and exports write it: any unicode letter, digits, punctuation, spaces
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
ID_TEXT = st.one_of(
    st.text(alphabet=string.digits, min_size=1, max_size=12),                  # 007, 12, 000123
    st.from_regex(r"[A-Z]{1,3}[0-9]{1,9}", fullmatch=True),                      # C0000012
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), min_size=1, max_size=10),
    st.sampled_from(["NA", "null", "None", "nan", "N/A", "-", "1e5", "12.0", "١٢٣"]),  # look like something else
)


def _customers(ids: list) -> pd.DataFrame:
    n = len(ids)
    return pd.DataFrame({"customer_id": pd.Series(ids, dtype=object),
                         "first_seen": ["2025-01-01 10:00:00"] * n})


@SETTINGS
@given(ids=st.lists(st.one_of(ID_TEXT, st.none(), st.just(""), st.just("  ")), min_size=1, max_size=30))
def test_text_ids_come_out_as_they_went_in(cfg, ids):
    conformed, problems, _ = schema.conform({"customers": _customers(ids)}, cfg)
    out = conformed["customers"]["customer_id"]
    for given_id, got in zip(ids, out.tolist()):
        want = None if given_id is None or str(given_id).strip() == "" else str(given_id).strip()
        if want is None:
            assert pd.isna(got)
        else:
            assert got == want
    # and the checks run to the end without raising
    assert isinstance(schema.check_conformed(conformed, cfg), list)


@SETTINGS
@given(ids=st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), min_size=1, max_size=20),
       with_null=st.booleans())
def test_integer_ids_keep_every_digit(cfg, ids, with_null):
    s = pd.Series(ids + ([None] if with_null else []), dtype="Int64")
    df = pd.DataFrame({"customer_id": s, "first_seen": ["2025-01-01"] * len(s)})
    conformed, problems, _ = schema.conform({"customers": df}, cfg)
    got = conformed["customers"]["customer_id"].tolist()
    assert got[:len(ids)] == [str(i) for i in ids]
    assert not [p for p in problems if p.check == "id type"]


@SETTINGS
@given(ids=st.lists(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e15, max_value=1e15),
                    min_size=1, max_size=20))
def test_float_ids_are_reported_not_silently_rewritten(cfg, ids):
    df = pd.DataFrame({"customer_id": pd.Series(ids, dtype="float64"), "first_seen": ["2025-01-01"] * len(ids)})
    conformed, problems, _ = schema.conform({"customers": df}, cfg)
    hits = [p for p in problems if p.table == "customers" and p.column == "customer_id" and p.check == "id type"]
    assert len(hits) == 1 and hits[0].n_bad == len(ids)


# any column of any dtype, for every contract column of orders
def _column(n: int):
    return st.one_of(
        st.lists(st.one_of(st.integers(-10**6, 10**6), st.none()), min_size=n, max_size=n).map(
            lambda v: pd.Series(v, dtype="Int64")),
        st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=n, max_size=n).map(pd.Series),
        st.lists(st.one_of(TEXT, st.none()), min_size=n, max_size=n).map(lambda v: pd.Series(v, dtype=object)),
        st.lists(st.booleans(), min_size=n, max_size=n).map(pd.Series),
        st.lists(st.datetimes(min_value=pd.Timestamp("1900-01-01").to_pydatetime(),
                              max_value=pd.Timestamp("2200-01-01").to_pydatetime()),
                 min_size=n, max_size=n).map(pd.Series),
        st.lists(st.sampled_from(["2025-01-01 10:00:00+07:00", "2025-01-01T03:00Z", "2025-13-01", "kemarin",
                                  "2025-03-30 02:30:00", "", None]), min_size=n, max_size=n)
        .map(lambda v: pd.Series(v, dtype=object)),
    )


@st.composite
def order_frames(draw):
    n = draw(st.integers(0, 12))
    cols = draw(st.lists(st.sampled_from(schema.CONTRACT["orders"].column_names), unique=True, max_size=13))
    return pd.DataFrame({c: draw(_column(n)).reset_index(drop=True) for c in cols}, index=range(n))


@SETTINGS
@given(orders=order_frames(), customers=order_frames())
def test_validate_never_raises_on_any_frame(cfg, orders, customers):
    cust = customers.rename(columns={"order_id": "customer_id", "order_ts": "first_seen"})
    problems = schema.validate({"orders": orders, "customers": cust}, cfg)
    assert all(isinstance(p, schema.Problem) for p in problems)
    for p in problems:
        str(p)  # every problem can be printed


# ---------------------------------------------------------------------------- the CSV reader
CELL = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r"), max_size=15)


@SETTINGS
@given(rows=st.lists(st.tuples(ID_TEXT.filter(lambda s: s.strip() == s and "\r" not in s and "\x00" not in s),
                               CELL, CELL), min_size=1, max_size=25))
def test_csv_reader_keeps_ids_and_text(tmp_path, rows):
    """Whatever the values (commas, quotes, line breaks, "NA", unicode), a CSV written by a
    standard writer reads back with the same ids and text, and no problem is invented."""
    df = pd.DataFrame(rows, columns=["record_id", "full_name", "email"])
    df.insert(1, "source", "web")
    df.insert(2, "created_at", "2025-01-01 10:00:00")
    path = tmp_path / "i.csv"
    df.to_csv(path, index=False)
    t = TableConfig(name="identities", path="i.csv")
    got, problems = oio._read_csv("identities", path, t, "i.csv")
    assert problems == [], [str(p) for p in problems]
    assert got["record_id"].tolist() == df["record_id"].tolist()
    for col in ("full_name", "email"):
        want = [None if v == "" else v for v in df[col]]
        assert [None if pd.isna(v) else v for v in got[col]] == want


@SETTINGS
@given(text=st.text(alphabet=st.sampled_from(list('ab1,;"\n\r\t é@')), max_size=200))
def test_csv_reader_never_raises_on_any_text(tmp_path, text):
    path = tmp_path / "x.csv"
    path.write_text("record_id,source,created_at\n" + text, encoding="utf-8")
    t = TableConfig(name="identities", path="x.csv")
    df, problems = oio._read_csv("identities", path, t, "x.csv")
    assert df is not None or problems
    assert all(isinstance(p, schema.Problem) for p in problems)


@SETTINGS
@given(ids=st.lists(st.one_of(st.integers(0, 2**62), st.none()), min_size=1, max_size=20))
def test_parquet_integer_ids_with_nulls_stay_integers(tmp_path, ids):
    """pandas turns an integer Parquet column with nulls into floats; the reader must not."""
    path = tmp_path / "c.parquet"
    pd.DataFrame({"customer_id": pd.Series(ids, dtype="Int64")}).to_parquet(path)
    df, problems = oio._read_parquet("customers", path, "c.parquet")
    assert problems == []
    got = [None if pd.isna(v) else int(v) for v in df["customer_id"]]
    assert got == ids


def test_mask_value_keeps_too_little_to_contact():
    from omni_lib.privacy import mask_example, mask_value

    assert mask_value("lestarisutanto83@yahoo.com") == "l***3@yahoo.com"
    assert mask_value("088858620580") == "08***80"
    assert mask_value("Lestari Sutanto") == "L*** S***"
    assert mask_example("identities", "full_name", "Budi") == "B***i"
    assert mask_example("orders", "note", "call 0812-3456-7890 or budi@gmail.com") == "call 08***90 or b***i@gmail.com"
    assert mask_example("orders", "order_id", "O00000001") == "O00000001"   # not PII: shown as is


@SETTINGS
@given(local=st.from_regex(r"[a-z][a-z0-9._]{1,20}[a-z0-9]", fullmatch=True),
       domain=st.sampled_from(["gmail.com", "yahoo.co.id", "mail.example.org"]))
def test_masked_email_never_holds_the_address(local, domain):
    from omni_lib.privacy import mask_text

    addr = f"{local}@{domain}"
    out = mask_text(f"e.g. ['{addr}', 'x']")
    assert addr not in out and "***" in out and domain in out
