"""The data contract through the public loader: bad inputs give clear problems.

Each test builds a valid mini dataset of all nine tables in tmp_path (see
``mini_tables`` / ``write_dataset``), breaks one thing, and checks that the report
names the table, the column and the number of bad rows.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pytest
import yaml

from omni_lib import schema
from omni_lib.config import Config, ConfigError, load_config
from omni_lib.io import check, duckdb_connection, load
from omni_lib.schema import ContractError, Problem, format_problems

TZ = "Asia/Jakarta"


# ---------------------------------------------------------------------------------
# fixture data
# ---------------------------------------------------------------------------------

def mini_tables() -> dict[str, pd.DataFrame]:
    """A small, valid dataset of all nine tables, as a user's export might hold it
    (timestamps as naive local-time text, ids mixed, a few optional blanks)."""
    customers = pd.DataFrame({
        "customer_id": ["C001", "C002", "C003", "C004", "C005"],
        "first_seen": ["2025-01-05 10:00:00", "2025-02-01 09:30:00", "2025-03-10 14:00:00",
                       "2025-04-02 08:15:00", "2025-05-20 19:45:00"],
        "acquisition_channel": ["web", "store", "social_ad", "marketplace", "search"],
        "region": ["Jakarta", "Bandung", "Surabaya", "Jakarta", None],
        "consent_analytics": [True, True, False, True, True],
        "consent_marketing": [True, False, False, True, False],
    })
    identities = pd.DataFrame({
        "record_id": ["R1", "R2", "R3", "R4", "R5", "R6"],
        "source": ["web", "app", "store", "marketplace", "whatsapp", "web"],
        "created_at": ["2025-01-05 10:00:00", "2025-01-20 11:00:00", "2025-02-01 09:30:00",
                       "2025-04-02 08:15:00", "2025-03-10 14:00:00", "2025-05-20 19:45:00"],
        "email": ["ani@example.com", "ANI@example.com", None, "budi@example.com", None, "cici@example.com"],
        "phone": ["+628111", "08111", "08222", None, "+62833", "08444"],
        "full_name": ["Ani", "Ani S", "Budi", "Budi", "Citra", "Cici"],
        "city": ["Jakarta", "Jakarta", "Bandung", "Jakarta", "Surabaya", None],
        "loyalty_id": [None, None, "L-01", None, None, None],
    })
    orders = pd.DataFrame({
        "order_id": ["O1", "O2", "O3", "O4", "O5", "O6", "O7", "O8"],
        "customer_id": ["C001", "C001", "C002", "C003", "C004", "C004", "C005", "C002"],
        "order_ts": ["2025-06-01 10:00:00", "2025-07-15 12:30:00", "2025-06-20 18:00:00",
                     "2025-08-01 09:00:00", "2025-09-09 20:00:00", "2026-01-02 11:11:00",
                     "2026-03-03 15:00:00", "2026-06-30 23:00:00"],
        "channel": ["web", "app", "store", "marketplace", "web", "store", "whatsapp", "store"],
        "net_amount": [150000.0, 250000.0, 99000.0, 1200000.0, 45000.0, 0.0, 310000.0, 87500.0],
        "record_id": ["R1", "R2", "R3", None, "R4", "R4", "R6", "R3"],
        "store_id": [None, None, "KEBON_SIRIH", None, None, "AEON_BSD", None, "KEBON_SIRIH"],
        "items": [1, 3, 2, 5, 1, 1, 2, 1],
        "discount": [0.0, 10000.0, 0.0, 50000.0, 0.0, 0.0, 0.0, 2500.0],
        "fulfilment": ["delivery", "delivery", "in_store", "delivery", "pickup_in_store",
                       "in_store", "delivery", "in_store"],
        "status": ["completed", "completed", "completed", "returned", "completed",
                   "cancelled", "completed", "completed"],
        "return_channel": [None, None, None, "store", None, None, None, None],
        "sku": ["SKU-1", "SKU-2", "SKU-1", "SKU-3", "SKU-2", "SKU-1", "SKU-3", "SKU-2"],
    })
    touchpoints = pd.DataFrame({
        "event_id": [f"E{i}" for i in range(1, 11)],
        "event_ts": ["2025-06-01 09:40:00", "2025-06-01 09:50:00", "2025-06-01 09:58:00",
                     "2025-06-19 20:00:00", "2025-06-20 17:30:00", "2025-07-30 10:00:00",
                     "2025-08-01 08:55:00", "2025-09-01 12:00:00", "2026-02-01 13:00:00",
                     "2026-03-03 14:50:00"],
        "channel": ["social_ad", "web", "web", "search", "store", "email", "marketplace",
                    "web", "live_chat", "whatsapp"],
        "event_type": ["impression", "click", "purchase", "click", "visit", "impression",
                       "purchase", "visit", "inquiry", "inquiry"],
        "customer_id": ["C001", "C001", "C001", None, "C002", "C003", "C003", None, "C004", "C005"],
        "session_id": ["s1", "s1", "s1", "s2", None, None, "s3", "s4", "s5", "s6"],
        "campaign": ["promo_juni", None, None, "brand", None, "newsletter", None, None, None, None],
        "store_id": [None, None, None, None, "KEBON_SIRIH", None, None, None, None, None],
        "order_id": [None, None, "O1", None, None, None, "O4", None, None, None],
    })
    surveys = pd.DataFrame({
        "response_id": ["S1", "S2", "S3", "S4"],
        "customer_id": ["C001", "C002", "C003", "C005"],
        "channel": ["email", "store", "web", "whatsapp"],
        "responded_at": ["2025-06-05 10:00:00", "2025-06-21 10:00:00", "2025-08-05 10:00:00",
                         "2026-03-05 10:00:00"],
        "nps": [9, 10, 3, None],
        "csat": [5, 4, 2, 4],
        "ces": [2, 1, 6, 3],
        "awareness_source": ["instagram", "teman", "google", None],
    })
    tickets = pd.DataFrame({
        "ticket_id": ["T1", "T2", "T3"],
        "customer_id": ["C003", "C004", "C001"],
        "channel": ["call_center", "live_chat", "whatsapp"],
        "opened_at": ["2025-08-03 09:00:00", "2026-02-01 13:00:00", "2025-07-16 08:00:00"],
        "first_response_at": ["2025-08-03 09:05:00", "2026-02-01 13:01:00", None],
        "resolved_at": ["2025-08-04 10:00:00", "2026-02-01 13:30:00", None],
        "contacts": [2, 1, 1],
        "topic": ["return", "stock", "delivery"],
    })
    experiments = pd.DataFrame({
        "experiment_id": ["subject_line"] * 4 + ["cart_reminder"] * 2,
        "unit_id": ["C001", "C002", "C003", "C004", "C001", "C005"],
        "variant": ["A", "B", "A", "B", "control", "reminder_1h"],
        "assigned_at": ["2025-06-01 00:00:00"] * 4 + ["2025-09-01 00:00:00"] * 2,
        "is_control": [True, False, True, False, True, False],
        "planned_share": [0.5, 0.5, 0.5, 0.5, 0.5, 0.5],
        "pre_revenue": [150000.0, 99000.0, 0.0, 0.0, 400000.0, 0.0],
        "pre_orders": [1, 1, 0, 0, 2, 0],
        "channel": ["email", "email", "email", "email", "whatsapp", "whatsapp"],
    })
    spend = pd.DataFrame({
        "date": ["2025-06-01", "2025-06-01", "2025-06-02", "2025-06-01"],
        "channel": ["social_ad", "search", "social_ad", "social_ad"],
        "spend": [500000.0, 250000.0, 480000.0, 100000.0],
        "campaign": ["promo_juni", "brand", "promo_juni", "brand"],
    })
    prices = pd.DataFrame({
        "sku": ["SKU-1", "SKU-1", "SKU-2", "SKU-3"],
        "channel": ["web", "app", "web", "store"],
        "price": [75000.0, 79000.0, 125000.0, 240000.0],
        "observed_at": ["2025-06-01 00:00:00"] * 4,
        "product_name": ["Kopi Toraja 250g", "Kopi Toraja 250g", "Teh Melati", "Batik Tulis"],
    })
    return {"identities": identities, "customers": customers, "orders": orders,
            "touchpoints": touchpoints, "surveys": surveys, "tickets": tickets,
            "experiments": experiments, "spend": spend, "prices": prices}


EXT = {"csv": "csv", "parquet": "parquet", "duckdb": None}


def _typed(name: str, df: pd.DataFrame, utc: bool = False) -> pd.DataFrame:
    """The same data with real timestamp columns (as a Parquet / DuckDB export has):
    naive local time, or (utc=True) tz-aware in UTC."""
    df = df.copy()
    for col in schema.CONTRACT[name].columns:
        if col.kind == "ts" and col.name in df.columns:
            ts = pd.to_datetime(df[col.name], format="ISO8601")
            df[col.name] = ts.dt.tz_localize(TZ).dt.tz_convert("UTC") if utc else ts
    return df


def write_dataset(tmp_path: Path, tables: dict[str, pd.DataFrame] | None = None, fmt: str = "csv",
                  config: dict | None = None, table_cfg: dict | None = None) -> Path:
    """Write ``tables`` in ``fmt`` under tmp_path/data and an omni.yaml; return its path.

    config: top-level keys to add / override; table_cfg: per-table extra keys
    (e.g. ``{"orders": {"columns": {...}}}``).
    """
    tables = mini_tables() if tables is None else tables
    root = tmp_path / "data"
    root.mkdir(exist_ok=True)
    entries = {}
    if fmt == "duckdb":
        con = duckdb.connect(str(root / "shop.duckdb"))
        for name, df in tables.items():
            frame = _typed(name, df)  # noqa: F841 - used by DuckDB's replacement scan
            con.execute(f'CREATE OR REPLACE TABLE "{name}" AS SELECT * FROM frame')
            entries[name] = {"path": name}
        con.close()
    else:
        for name, df in tables.items():
            path = root / f"{name}.{EXT[fmt]}"
            if fmt == "csv":
                df.to_csv(path, index=False)
            else:
                _typed(name, df, utc=True).to_parquet(path, index=False)
            entries[name] = {"path": path.name}
    for name, extra in (table_cfg or {}).items():
        entries.setdefault(name, {}).update(extra)
    cfg = {"data": {"format": fmt, "root": "data", "tables": entries},
           "timezone": TZ, "currency": "IDR", "data_end": "2026-06-30 23:59:59"}
    if fmt == "duckdb":
        cfg["data"]["database"] = "data/shop.duckdb"
    cfg.update(config or {})
    path = tmp_path / "omni.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def broken(**changes) -> dict[str, pd.DataFrame]:
    """mini_tables() with ``table=callable(df) -> df`` applied."""
    tables = mini_tables()
    for name, fn in changes.items():
        tables[name] = fn(tables[name].copy())
    return tables


def only(problems: list[Problem], table: str, column: str | None = None) -> Problem:
    """The single problem for table(.column); fail with the whole report otherwise."""
    hits = [p for p in problems if p.table == table and (column is None or p.column == column)]
    assert len(hits) == 1, format_problems(problems)
    return hits[0]


def assert_names(p: Problem, *parts: str) -> None:
    """The printed problem contains every part (table.column, row count, ...)."""
    text = str(p)
    for part in parts:
        assert part in text, f"{part!r} not in {text!r}"


# ---------------------------------------------------------------------------------
# good data
# ---------------------------------------------------------------------------------

def test_good_dataset_passes_and_is_typed(tmp_path):
    ds = load(write_dataset(tmp_path))
    assert check(ds.config) == []
    assert len(ds.orders) == 8 and len(ds["customers"]) == 5
    assert str(ds.orders["order_ts"].dtype) == f"datetime64[us, {TZ}]"
    assert ds.orders["order_ts"].iloc[0] == pd.Timestamp("2025-06-01 10:00:00", tz=TZ)
    assert ds.orders["net_amount"].dtype == "float64"
    assert ds.orders["items"].dtype == "Int64"
    assert isinstance(ds.orders["order_id"].dtype, pd.StringDtype)
    assert ds.customers["consent_marketing"].dtype == "boolean"
    assert ds.touchpoints["customer_id"].isna().sum() == 2  # anonymous visitors stay empty
    assert set(ds) == set(schema.TABLES)
    assert "orders=8 rows" in repr(ds)


def test_same_dataset_from_csv_parquet_duckdb_is_equal(tmp_path):
    frames = {}
    for fmt in ("csv", "parquet", "duckdb"):
        folder = tmp_path / fmt
        folder.mkdir()
        frames[fmt] = load(write_dataset(folder, fmt=fmt))
    for name in schema.TABLES:
        base = frames["csv"][name]
        for fmt in ("parquet", "duckdb"):
            pd.testing.assert_frame_equal(base, frames[fmt][name], obj=f"{name} ({fmt} vs csv)")


def test_column_mapping_renames_user_columns(tmp_path):
    tables = mini_tables()
    tables["orders"] = tables["orders"].rename(
        columns={"order_id": "no_pesanan", "net_amount": "total_rp", "order_ts": "tanggal"})
    cfg = write_dataset(tmp_path, tables, table_cfg={"orders": {"columns": {
        "order_id": "no_pesanan", "net_amount": "total_rp", "order_ts": "tanggal"}}})
    ds = load(cfg)
    assert {"order_id", "net_amount", "order_ts"} <= set(ds.orders.columns)
    assert not {"no_pesanan", "total_rp", "tanggal"} & set(ds.orders.columns)
    assert ds.orders["net_amount"].sum() == mini_tables()["orders"]["net_amount"].sum()


def test_excel_style_csv_semicolons_and_byte_order_mark(tmp_path):
    cfg = write_dataset(tmp_path, table_cfg={"orders": {"sep": ";"}})
    path = tmp_path / "data" / "orders.csv"
    mini_tables()["orders"].to_csv(path, sep=";", index=False, encoding="utf-8-sig")
    ds = load(cfg)
    assert ds.orders["order_id"].tolist()[:2] == ["O1", "O2"]


def test_optional_tables_may_be_left_out(tmp_path):
    tables = mini_tables()
    for name in ("identities", "touchpoints", "surveys", "tickets", "experiments", "spend", "prices"):
        del tables[name]
    tables["orders"] = tables["orders"].drop(columns=["record_id"])
    ds = load(write_dataset(tmp_path, tables))
    assert ds.touchpoints is None and ds["prices"] is None and len(ds.orders) == 8


def test_naive_and_aware_timestamps_land_in_config_timezone(tmp_path):
    def fix(df):
        df.loc[0, "order_ts"] = "2025-06-01T03:00:00Z"     # aware: converted
        df["order_ts"] = df["order_ts"].str.replace(r"^(2025-0[7-9].*)$", r"\1+07:00", regex=True)
        return df
    # only offsets +07:00 / Z, mixed on purpose and allowed here
    ds = load(write_dataset(tmp_path, broken(orders=fix), config={"allow_mixed_offsets": True}))
    ts = ds.orders.set_index("order_id")["order_ts"]
    assert ts["O1"] == pd.Timestamp("2025-06-01 10:00", tz=TZ)     # 03:00 UTC
    assert ts["O2"] == pd.Timestamp("2025-07-15 12:30", tz=TZ)     # +07:00 kept
    assert ts["O3"] == pd.Timestamp("2025-06-20 18:00", tz=TZ)     # naive = local


def test_numeric_ids_become_text_and_keep_leading_zeros(tmp_path):
    tables = mini_tables()
    tables["prices"]["sku"] = ["007", "007", "010", "3"]
    ds = load(write_dataset(tmp_path, tables))
    assert ds.prices["sku"].tolist() == ["007", "007", "010", "3"]
    tables["spend"]["campaign"] = [1, 2, 1, 2]  # ints in parquet -> '1', not '1.0'
    ds = load(write_dataset(tmp_path / "", tables, fmt="parquet"))
    assert ds.spend["campaign"].tolist() == ["1", "2", "1", "2"]


# ---------------------------------------------------------------------------------
# one broken thing each
# ---------------------------------------------------------------------------------

def test_missing_column(tmp_path):
    problems = check(write_dataset(tmp_path, broken(orders=lambda d: d.drop(columns=["net_amount"]))))
    p = only(problems, "orders", "net_amount")
    assert p.check == "column present" and p.n_bad == 8
    assert_names(p, "orders.net_amount", "8 rows", "missing")


def test_missing_mapped_column_names_the_users_column(tmp_path):
    cfg = write_dataset(tmp_path, table_cfg={"orders": {"columns": {"net_amount": "total_rp"}}})
    p = only(check(cfg), "orders", "net_amount")
    assert_names(p, "orders.net_amount", "'total_rp'", "8 rows")


def test_wrong_type_text_in_amount(tmp_path):
    def bad(d):
        d["net_amount"] = d["net_amount"].astype(object)
        d.loc[[1, 4], "net_amount"] = ["seratus ribu", "1.000.000,00"]
        return d
    p = only(check(write_dataset(tmp_path, broken(orders=bad))), "orders", "net_amount")
    assert p.check == "number" and p.n_bad == 2
    assert p.examples == ["seratus ribu", "1.000.000,00"]
    assert_names(p, "orders.net_amount: 2 rows have a value that is not a number", "orders.csv")


def test_unparseable_timestamp(tmp_path):
    def bad(d):
        d.loc[[2, 5, 6], "order_ts"] = ["kemarin", "2025-13-45 10:00:00", "kemarin"]
        return d
    p = only(check(write_dataset(tmp_path, broken(orders=bad))), "orders", "order_ts")
    assert p.check == "timestamp" and p.n_bad == 3
    assert p.examples == ["kemarin", "2025-13-45 10:00:00"]
    assert_names(p, "orders.order_ts: 3 rows have a value that is not a readable timestamp")


def test_negative_amount(tmp_path):
    def bad(d):
        d.loc[[0, 3, 5], "net_amount"] = [-5.0, -1.0, -2.0]
        return d
    p = only(check(write_dataset(tmp_path, broken(orders=bad))), "orders", "net_amount")
    assert p.n_bad == 3 and p.examples == [-5.0, -1.0, -2.0]
    assert_names(p, "orders.net_amount: 3 rows fail 'net_amount >= 0'", "e.g. [-5.0, -1.0, -2.0]")


def test_duplicate_ids(tmp_path):
    def bad(d):
        d.loc[[3, 6], "order_id"] = "O2"
        return d
    p = only(check(write_dataset(tmp_path, broken(orders=bad))), "orders", "order_id")
    assert p.n_bad == 3 and p.examples == ["O2"]
    assert_names(p, "orders.order_id", "3 rows", "1 duplicated key value")


def test_duplicate_composite_key(tmp_path):
    def bad(d):
        d.loc[1, ["date", "channel", "campaign"]] = ["2025-06-01", "social_ad", "promo_juni"]
        return d
    p = only(check(write_dataset(tmp_path, broken(spend=bad))), "spend")
    assert p.column == "date+channel+campaign" and p.n_bad == 2
    assert_names(p, "spend.date+channel+campaign", "2 rows")


def test_unknown_channel_listed_by_name(tmp_path):
    def bad(d):
        d.loc[[1, 4], "channel"] = "tiktok"
        d.loc[7, "channel"] = "Web"
        return d
    p = only(check(write_dataset(tmp_path, broken(touchpoints=bad))), "touchpoints", "channel")
    # 'Web' is the vocabulary's 'web' in another case (exports often write WEB): read as web, not an error
    assert p.n_bad == 2 and p.examples == ["tiktok"]
    assert_names(p, "touchpoints.channel", "2 rows", "'tiktok' (2)", "vocabulary")


def test_channel_vocabulary_comes_from_config(tmp_path):
    channels = {"web": {"kind": "online", "role": "sales"}, "store": {"kind": "offline", "role": "sales"}}
    problems = check(write_dataset(tmp_path, config={"channels": channels}))
    p = only(problems, "orders", "channel")
    assert p.n_bad == 3  # app, marketplace, whatsapp
    assert_names(p, "'marketplace' (1)", "'app' (1)", "'whatsapp' (1)")


def test_nps_out_of_range(tmp_path):
    def bad(d):
        d.loc[0, "nps"] = 11
        return d
    p = only(check(write_dataset(tmp_path, broken(surveys=bad))), "surveys", "nps")
    assert p.n_bad == 1 and p.examples == [11]
    assert_names(p, "surveys.nps: 1 row fails 'nps in 0..10'")


def test_empty_table(tmp_path):
    problems = check(write_dataset(tmp_path, broken(tickets=lambda d: d.iloc[0:0])))
    p = only(problems, "tickets")
    assert p.check == "non-empty" and p.n_bad == 0
    assert_names(p, "tickets: table is empty (0 rows)", "tickets.csv")


def test_zero_byte_csv_is_empty_table(tmp_path):
    cfg = write_dataset(tmp_path)
    (tmp_path / "data" / "spend.csv").write_text("")
    p = only(check(cfg), "spend")
    assert p.check == "non-empty"
    assert_names(p, "spend: table is empty", "spend.csv")


def test_orders_pointing_at_unknown_customers(tmp_path):
    def bad(d):
        d.loc[[2, 3], "customer_id"] = ["C999", "C777"]
        return d
    p = only(check(write_dataset(tmp_path, broken(orders=bad))), "orders", "customer_id")
    assert p.check == "references customers.customer_id" and p.n_bad == 2
    assert p.examples == ["C999", "C777"]
    assert_names(p, "orders.customer_id", "2 rows", "customers that do not exist")


def test_mixed_timezone_offsets(tmp_path):
    def bad(d):
        d["event_ts"] = d["event_ts"] + "+07:00"
        d.loc[[2, 8], "event_ts"] = ["2025-06-01T02:58:00Z", "2026-02-01T06:00:00Z"]
        return d
    problems = check(write_dataset(tmp_path, broken(touchpoints=bad)))
    p = only(problems, "touchpoints", "event_ts")
    assert p.check == "single UTC offset" and p.n_bad == 2
    assert p.examples == ["+07:00: 8 rows", "+00:00: 2 rows"]
    assert_names(p, "touchpoints.event_ts", "2 rows", "allow_mixed_offsets")
    # allowed in the config: no problem, and both are converted correctly
    ds = load(write_dataset(tmp_path, broken(touchpoints=bad), config={"allow_mixed_offsets": True}))
    assert ds.touchpoints["event_ts"].iloc[2] == pd.Timestamp("2025-06-01 09:58", tz=TZ)


def test_naive_mixed_with_aware_is_mixed_offsets(tmp_path):
    def bad(d):
        d.loc[0, "opened_at"] = "2025-08-03T02:00:00+00:00"
        return d
    p = only(check(write_dataset(tmp_path, broken(tickets=bad))), "tickets", "opened_at")
    assert p.n_bad == 1 and "none (local time): 2 rows" in p.examples


def test_csv_with_broken_quote(tmp_path):
    cfg = write_dataset(tmp_path)
    path = tmp_path / "data" / "orders.csv"
    lines = path.read_text().splitlines()
    lines[4] = lines[4].replace(",", ',"', 1)  # line 5: a quote that never closes
    path.write_text("\n".join(lines) + "\n")
    problems = check(cfg)
    p = only(problems, "orders")
    assert p.check == "CSV quotes"
    assert_names(p, "orders: has an unclosed quote", "line 5", "orders.csv")
    # orders could not be read, so nothing downstream is reported about it
    assert [q.table for q in problems] == ["orders"]


def test_csv_with_ragged_rows(tmp_path):
    cfg = write_dataset(tmp_path)
    path = tmp_path / "data" / "customers.csv"
    lines = path.read_text().splitlines()
    lines[2] += ",extra"
    lines[4] += ",extra,more"
    path.write_text("\n".join(lines) + "\n")
    p = only(check(cfg), "customers")
    assert p.check == "CSV row shape" and p.n_bad == 2
    assert p.examples[0].startswith("line 3: expected 6 fields, saw 7")
    assert_names(p, "customers: 2 rows have the wrong number of fields", "line 3")


def test_missing_file(tmp_path):
    cfg = write_dataset(tmp_path)
    (tmp_path / "data" / "prices.csv").unlink()
    p = only(check(cfg), "prices")
    assert p.check == "file exists"
    assert_names(p, "prices: file not found", "prices.csv", "data.tables.prices.path")


def test_missing_duckdb_table(tmp_path):
    cfg = write_dataset(tmp_path, fmt="duckdb", table_cfg={"spend": {"path": "marketing_spend"}})
    p = only(check(cfg), "spend")
    assert_names(p, "spend: table 'marketing_spend' is not in the database", "shop.duckdb")


def test_timestamp_after_data_end(tmp_path):
    def bad(d):
        d.loc[[6, 7], "order_ts"] = ["2026-07-01 00:00:00", "2026-12-31 10:00:00"]
        return d
    p = only(check(write_dataset(tmp_path, broken(orders=bad))), "orders", "order_ts")
    assert p.check == "<= data_end" and p.n_bad == 2
    assert_names(p, "orders.order_ts: 2 rows are after data_end 2026-06-30 23:59:59+07:00")


def test_first_response_before_opened(tmp_path):
    def bad(d):
        d.loc[0, "first_response_at"] = "2025-08-03 08:00:00"
        return d
    p = only(check(write_dataset(tmp_path, broken(tickets=bad))), "tickets", "first_response_at")
    assert p.n_bad == 1
    assert_names(p, "tickets.first_response_at: 1 row fails 'first_response_at >= opened_at'")


def test_required_value_empty(tmp_path):
    def bad(d):
        d.loc[[1, 2], "channel"] = None
        return d
    p = only(check(write_dataset(tmp_path, broken(orders=bad))), "orders", "channel")
    assert p.check == "not null" and p.n_bad == 2 and p.examples == ["line 3", "line 4"]
    assert_names(p, "orders.channel: 2 rows are empty")


# ---------------------------------------------------------------------------------
# many at once, API behaviour
# ---------------------------------------------------------------------------------

def test_several_problems_reported_in_one_error(tmp_path):
    def orders(d):
        d.loc[0, "net_amount"] = -5.0
        d.loc[1, "customer_id"] = "C999"
        return d

    def surveys(d):
        d.loc[1, "nps"] = 11
        return d

    def touchpoints(d):
        d.loc[0, "channel"] = "tiktok"
        return d
    cfg = write_dataset(tmp_path, broken(orders=orders, surveys=surveys, touchpoints=touchpoints))
    (tmp_path / "data" / "prices.csv").unlink()
    with pytest.raises(ContractError) as err:
        load(cfg)
    problems = err.value.problems
    assert {(p.table, p.column) for p in problems} == {
        ("orders", "net_amount"), ("orders", "customer_id"), ("surveys", "nps"),
        ("touchpoints", "channel"), ("prices", None)}
    report = str(err.value)
    assert report.splitlines()[0].startswith("The data breaks the contract: 5 problems")
    assert len(report.splitlines()) == 6  # header + one line per problem
    for p in problems:
        assert str(p) in report


def test_validate_false_skips_checks(tmp_path):
    def bad(d):
        d.loc[0, "net_amount"] = -5.0
        return d
    ds = load(write_dataset(tmp_path, broken(orders=bad)), validate=False)
    assert ds.orders["net_amount"].iloc[0] == -5.0


def test_load_subset_of_tables(tmp_path):
    ds = load(write_dataset(tmp_path), tables=["orders"])
    assert ds.orders is not None and ds.customers is None
    with pytest.raises(KeyError, match="ordrs"):
        load(write_dataset(tmp_path), tables=["ordrs"])


def test_validate_accepts_frames_directly(tmp_path):
    cfg = load_config(write_dataset(tmp_path))
    tables = mini_tables()
    assert schema.validate(tables, cfg) == []
    assert schema.validate(load(cfg).tables, cfg) == []  # loaded frames validate as they are
    tables["prices"].loc[0, "price"] = 0.0
    p = only(schema.validate(tables, cfg), "prices", "price")
    assert_names(p, "prices.price: 1 row fails 'price > 0'")


def test_duckdb_views_over_the_files(tmp_path):
    for fmt in ("csv", "parquet", "duckdb"):
        folder = tmp_path / fmt
        folder.mkdir()
        tables = mini_tables()
        tables["orders"] = tables["orders"].rename(columns={"net_amount": "total_rp"})
        cfg = write_dataset(folder, tables, fmt=fmt,
                            table_cfg={"orders": {"columns": {"net_amount": "total_rp"}}})
        con = duckdb_connection(cfg)
        n, revenue = con.execute(
            "SELECT count(*), sum(o.net_amount) FROM orders o JOIN customers c USING (customer_id)").fetchone()
        assert (n, revenue) == (8, mini_tables()["orders"]["net_amount"].sum()), fmt
        first = con.execute("SELECT strftime(min(order_ts), '%Y-%m-%d %H:%M') FROM orders").fetchone()[0]
        assert first == "2025-06-01 10:00", fmt  # local time, as in load()
        con.close()


# ---------------------------------------------------------------------------------
# config errors name the key
# ---------------------------------------------------------------------------------

def _cfg(tmp_path, **data) -> Path:
    raw = {"data": {"format": "csv", "root": ".",
                    "tables": {"customers": {"path": "c.csv"}, "orders": {"path": "o.csv"}}}}
    raw["data"].update(data.pop("data", {}))
    raw.update(data)
    p = tmp_path / "omni.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


@pytest.mark.parametrize("change, key", [
    ({"data": {"format": "xlsx"}}, "data.format"),
    ({"data": {"tables": {"customers": {"path": "c.csv"}, "orders": {"path": "o.csv"},
                          "order": {"path": "x.csv"}}}}, "data.tables.order"),
    ({"data": {"tables": {"customers": {"path": "c.csv"},
                          "orders": {"path": "o.csv", "columns": {"amount": "total"}}}}},
     "data.tables.orders.columns"),
    ({"data": {"tables": {"customers": {"path": "c.csv"}}}}, "data.tables.orders"),
    ({"timezone": "Asia/Jakartaa"}, "timezone"),
    ({"timezon": "Asia/Jakarta"}, "timezon"),
    ({"channels": {"web": {"kind": "online", "role": "sale"}}}, "channels.web.role"),
    ({"data_end": "soon"}, "data_end"),
])
def test_bad_config_names_the_key(tmp_path, change, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(_cfg(tmp_path, **change))


def test_reversed_column_mapping_gets_a_hint(tmp_path):
    p = _cfg(tmp_path, data={"tables": {"customers": {"path": "c.csv"},
                                        "orders": {"path": "o.csv", "columns": {"total_rp": "net_amount"}}}})
    with pytest.raises(ConfigError, match="net_amount: total_rp"):
        load_config(p)


def test_config_defaults_paths_and_env(tmp_path, monkeypatch):
    cfg_path = _cfg(tmp_path, data={"root": "exports"})
    cfg = load_config(cfg_path)
    assert cfg.root == (tmp_path / "exports").resolve()
    assert cfg.source("orders") == cfg.root / "o.csv"
    assert cfg.timezone == TZ and cfg.currency == "IDR" and cfg.params == {}
    assert cfg.data_end is None and any("data_end" in n for n in cfg.notes)
    assert "direct" in cfg.channels and cfg.channels["whatsapp"].role == "both"
    monkeypatch.setenv("OMNI_CONFIG", str(cfg_path))
    assert load_config().path == cfg_path.resolve()
    monkeypatch.setenv("OMNI_CONFIG", str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match="not found"):
        load_config()


def test_repository_omni_yaml_is_valid():
    cfg = load_config(Path(__file__).resolve().parents[1] / "omni.yaml")
    assert cfg.format == "parquet" and set(cfg.tables) == set(schema.TABLES) - {"customers"}  # siloed sample
    assert cfg.source("orders").name == "orders.parquet" and cfg.root.name == "sample"
    assert cfg.data_end == pd.Timestamp("2026-06-30 23:59:59", tz=TZ)
    assert cfg.params == {} and len(cfg.channels) == 11


def test_config_from_dict_for_notebooks(tmp_path):
    write_dataset(tmp_path)
    cfg = Config.from_dict({"data": {"format": "csv", "root": "data", "tables": {
        "customers": "customers.csv", "orders": "orders.csv"}}}, base_dir=tmp_path)
    ds = load(cfg)
    assert len(ds.orders) == 8 and ds.surveys is None
    assert cfg.sales_channels[:3] == ["web", "app", "marketplace"]
