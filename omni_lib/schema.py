"""The data contract: nine canonical tables, their types and checks.

Three layers, all vectorised (no Python loop over rows):

1. ``conform``: cast each contract column to its contract type (ids -> string,
   amounts -> float, timestamps -> tz-aware in the configured timezone). Values that
   do not cast become Problems (count + examples) instead of exceptions.
2. pandera ``DataFrameSchema`` per table (``build_schema``): columns present, dtypes,
   value checks (ranges, allowed values, channel vocabulary), run with ``lazy=True``
   so that one run reports every problem.
3. Hand-written checks pandera can't do alone (or does slowly on 1M rows): nulls,
   unique keys, foreign keys between tables, timestamps after ``data_end``, mixed
   UTC offsets, ``first_response_at >= opened_at``.

Every failure is a :class:`Problem`; ``ContractError`` carries them all.
See docs/contract.md for the contract in words.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow as pa_arrow
import pyarrow.compute as pc
from pandera.engines import pandas_engine

if TYPE_CHECKING:  # config imports this module; avoid the cycle at run time
    from omni_lib.config import Config

__all__ = [
    "CONTRACT",
    "TABLES",
    "REQUIRED_TABLES",
    "ColumnSpec",
    "TableSpec",
    "Problem",
    "ContractError",
    "format_problems",
    "sort_problems",
    "build_schema",
    "conform",
    "conform_table",
    "validate",
]

TS_UNIT = "us"  # microseconds: pandas 3's default, and 9999-12-31 still fits (ns does not)
N_EXAMPLES = 5


# ---------------------------------------------------------------------------------
# The contract, as data (docs/contract.md is the same table in words)
# ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ColumnSpec:
    """One contract column.

    kind: id | text | channel | category | ts | float | int | bool.
    checks: tuples ``("ge", 0)``, ``("gt", 0)``, ``("between", lo, hi)``,
    ``("open_closed", lo, hi)`` for lo < x <= hi.
    references: ``"table.column"`` this column must point into (foreign key).
    nullable: may hold empty values (default: optional columns may, required may not).
    """

    name: str
    kind: str
    required: bool = False
    checks: tuple = ()
    values: tuple[str, ...] = ()
    references: str | None = None
    nullable: bool | None = None

    @property
    def allows_null(self) -> bool:
        return (not self.required) if self.nullable is None else self.nullable


@dataclass(frozen=True)
class TableSpec:
    name: str
    key: tuple[str, ...]
    columns: tuple[ColumnSpec, ...]

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    def __getitem__(self, column: str) -> ColumnSpec:
        for c in self.columns:
            if c.name == column:
                return c
        raise KeyError(column)


def _C(name, kind, required=False, **kw) -> ColumnSpec:
    return ColumnSpec(name, kind, required, **kw)


_FK_CUSTOMER = "customers.customer_id"
_FK_RECORD = "identities.record_id"
EVENT_TYPES = ("impression", "click", "visit", "product_view", "add_to_cart",
               "checkout", "inquiry", "purchase", "review")

CONTRACT: dict[str, TableSpec] = {t.name: t for t in (
    TableSpec("identities", ("record_id",), (
        _C("record_id", "id", True), _C("source", "channel", True), _C("created_at", "ts", True),
        _C("email", "text"), _C("phone", "text"), _C("full_name", "text"), _C("city", "text"),
        _C("loyalty_id", "text"),
        # consent as the channel system recorded it (siloed data has no customers table)
        _C("consent_analytics", "bool"), _C("consent_marketing", "bool"),
    )),
    TableSpec("customers", ("customer_id",), (
        _C("customer_id", "id", True), _C("first_seen", "ts", True),
        _C("acquisition_channel", "channel"), _C("region", "text"),
        _C("consent_analytics", "bool"), _C("consent_marketing", "bool"),
    )),
    TableSpec("orders", ("order_id",), (
        _C("order_id", "id", True), _C("customer_id", "id", references=_FK_CUSTOMER),
        _C("order_ts", "ts", True), _C("channel", "channel", True),
        _C("net_amount", "float", True, checks=(("ge", 0),)),
        _C("record_id", "id", references=_FK_RECORD), _C("store_id", "id"),
        _C("items", "int", checks=(("ge", 1),)), _C("discount", "float", checks=(("ge", 0),)),
        _C("fulfilment", "category", values=("delivery", "pickup_in_store", "in_store")),
        _C("status", "category", values=("completed", "cancelled", "returned")),
        _C("return_channel", "channel"), _C("sku", "id"),
    )),
    TableSpec("touchpoints", ("event_id",), (
        _C("event_id", "id", True), _C("event_ts", "ts", True), _C("channel", "channel", True),
        _C("event_type", "category", True, values=EVENT_TYPES),
        _C("customer_id", "id", references=_FK_CUSTOMER),  # empty = anonymous visitor
        _C("record_id", "id", references=_FK_RECORD),      # or the channel system's record
        _C("session_id", "id"), _C("campaign", "text"), _C("store_id", "id"), _C("order_id", "id"),
    )),
    TableSpec("surveys", ("response_id",), (
        _C("response_id", "id", True), _C("customer_id", "id", references=_FK_CUSTOMER),
        _C("record_id", "id", references=_FK_RECORD),
        _C("channel", "channel", True), _C("responded_at", "ts", True),
        _C("nps", "int", checks=(("between", 0, 10),)), _C("csat", "int", checks=(("between", 1, 5),)),
        _C("ces", "int", checks=(("between", 1, 7),)), _C("awareness_source", "text"),
    )),
    TableSpec("tickets", ("ticket_id",), (
        _C("ticket_id", "id", True), _C("customer_id", "id", references=_FK_CUSTOMER),
        _C("record_id", "id", references=_FK_RECORD),
        _C("channel", "channel", True), _C("opened_at", "ts", True),
        _C("first_response_at", "ts"), _C("resolved_at", "ts"),
        _C("contacts", "int", checks=(("ge", 1),)), _C("topic", "text"),
    )),
    TableSpec("experiments", ("experiment_id", "unit_id"), (
        # unit_id may be any id (a customer, a record, a session, a store); the store links
        # it to a customer only where it matches one
        _C("experiment_id", "id", True), _C("unit_id", "id", True),
        _C("variant", "text", True), _C("assigned_at", "ts"),
        _C("is_control", "bool"), _C("planned_share", "float", checks=(("open_closed", 0, 1),)),
        _C("pre_revenue", "float", checks=(("ge", 0),)), _C("pre_orders", "int", checks=(("ge", 0),)),
        _C("channel", "channel"),
    )),
    TableSpec("spend", ("date", "channel", "campaign"), (
        _C("date", "ts", True), _C("channel", "channel", True),
        _C("spend", "float", True, checks=(("ge", 0),)), _C("campaign", "text"),
    )),
    TableSpec("prices", ("sku", "channel", "observed_at"), (
        _C("sku", "id", True), _C("channel", "channel", True),
        _C("price", "float", True, checks=(("gt", 0),)), _C("observed_at", "ts", True),
        _C("product_name", "text"),
    )),
)}

TABLES: tuple[str, ...] = tuple(CONTRACT)
REQUIRED_TABLES: tuple[str, ...] = ("orders",)
# Rows that belong to a person name them by the unified ``customer_id`` or by the channel
# system's ``record_id`` (siloed exports); every row of these tables needs one of the two
# (touchpoints may be anonymous).
PERSON_KEYS: dict[str, tuple[str, ...]] = {
    "orders": ("customer_id", "record_id"),
    "surveys": ("customer_id", "record_id"),
    "tickets": ("customer_id", "record_id"),
}
# Timestamp pairs that must be ordered: (table, later column, earlier column, what it means).
ORDERED_TIMESTAMPS = (
    ("tickets", "first_response_at", "opened_at", "answered before it was opened"),
    ("tickets", "resolved_at", "opened_at", "resolved before it was opened"),
)


# ---------------------------------------------------------------------------------
# Problems and the error that carries them
# ---------------------------------------------------------------------------------

@dataclass
class Problem:
    """One contract violation: where (table, column, file), what (check), how many rows."""

    table: str
    column: str | None
    check: str
    n_bad: int
    examples: list = field(default_factory=list)
    file: str | None = None
    message: str = ""

    def __post_init__(self):
        # PII never leaves the data in clear: examples of PII columns are masked, and any
        # e-mail or phone number in an example or the message (a shifted row puts them
        # under other columns) too. Problems reach the terminal, reports and logs.
        from omni_lib.privacy import mask_example, mask_text

        self.examples = [mask_example(self.table, self.column, v) for v in (self.examples or [])]
        self.message = mask_text(self.message)

    def __str__(self) -> str:
        where = f"{self.table}.{self.column}" if self.column else self.table
        text = f"{where}: {self.message or f'{self.n_bad} rows fail {self.check!r}'}"
        if self.file:
            text += f" (file {self.file})"
        if self.examples:
            text += f", e.g. {self.examples!r}"
        return text


def format_problems(problems: Iterable[Problem]) -> str:
    """One line per problem (a caller such as the CLI prints its own header above)."""
    problems = list(problems)
    if not problems:
        return "no problems: the data meets the contract"
    return "\n".join(f"  {p}" for p in problems)


def _headline(problems: list[Problem]) -> str:
    n = len(problems)
    tables = sorted({p.table for p in problems}, key=_table_order)
    return (f"The data breaks the contract: {n} problem{'s' if n != 1 else ''} "
            f"in {', '.join(tables)}:")


class ContractError(Exception):
    """The data breaks the contract. ``.problems`` lists every Problem found;
    ``str()`` is a headline plus one line per problem."""

    def __init__(self, problems: Iterable[Problem]):
        self.problems: list[Problem] = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        return _headline(self.problems) + "\n" + format_problems(self.problems)


def _table_order(name: str) -> int:
    return TABLES.index(name) if name in TABLES else -1


def sort_problems(problems: Iterable[Problem]) -> list[Problem]:
    """Contract order: by table, then file-level problems, then by column."""
    def key(p: Problem):
        if p.column is None or p.table not in CONTRACT:
            return (_table_order(p.table), -1)
        names = CONTRACT[p.table].column_names
        first = p.column.split("+")[0]
        return (_table_order(p.table), names.index(first) if first in names else len(names))
    return sorted(problems, key=key)


# ---------------------------------------------------------------------------------
# Small helpers shared by the checks
# ---------------------------------------------------------------------------------

def _native(v: Any) -> Any:
    """Make an example printable and JSON-friendly (numpy/pandas scalars -> Python)."""
    if isinstance(v, (pd.Timestamp, np.datetime64)):
        return str(pd.Timestamp(v))
    if isinstance(v, np.generic):
        return v.item()
    return v


def _examples(values: pd.Series, mask: pd.Series | np.ndarray, n: int = N_EXAMPLES) -> list:
    """Up to ``n`` distinct values where ``mask`` is true, in order of appearance."""
    picked = values[np.asarray(mask, dtype=bool)]
    return [_native(v) for v in picked.drop_duplicates().head(n).tolist()]


def _row_labels(mask, file: str | None, n: int = N_EXAMPLES) -> list[str]:
    """Where the bad rows are: file lines for CSV (header = line 1), else 0-based rows."""
    pos = np.flatnonzero(np.asarray(mask, dtype=bool))[:n]
    if file and file.lower().endswith(".csv"):
        return [f"line {int(p) + 2}" for p in pos]
    return [f"row {int(p)}" for p in pos]


_SINGULAR = {"are": "is", "fail": "fails", "have": "has", "share": "shares", "point": "points",
             "carry": "carries", "lack": "lacks"}


def _rows(n: int, phrase: str = "") -> str:
    """'3 rows are ...' / '1 row is ...': the verb (first word of phrase) agrees with n."""
    if n == 1 and phrase:
        verb, _, rest = phrase.partition(" ")
        phrase = " ".join(filter(None, [_SINGULAR.get(verb, verb), rest]))
    return f"{n:,} row{'s' if n != 1 else ''}" + (f" {phrase}" if phrase else "")


def _count(mask) -> int:
    return int(np.count_nonzero(np.asarray(mask, dtype=bool)))


# ---------------------------------------------------------------------------------
# 1. Conform: cast to contract types, collect what does not cast
# ---------------------------------------------------------------------------------

_TRUE = ("true", "t", "yes", "y", "1", "1.0")
_FALSE = ("false", "f", "no", "n", "0", "0.0")
# An explicit UTC offset (or Z) after a time of day: "...10:00+07:00", "...T03:00Z".
# Requiring the time part keeps "2026-01-03" (ends in "-03") from looking like an offset.
# Written with [0-9] and ' ?' (not \d, \s) so pandas runs it in pyarrow's RE2: with
# \d or \s it falls back to Python's re, one row at a time (~1.5 s per 1M rows).
_OFFSET_RE = r"[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)? ?(Z|z|[+-][0-9]{2}(?::?[0-9]{2})?)$"
_AWARE_RE = _OFFSET_RE.replace("(Z|", "(?:Z|")  # same, without a capture group
_TS_HINT = "expected ISO 8601, e.g. 2026-01-31 14:05:00 or 2026-01-31T14:05:00+07:00"


def _to_text(s: pd.Series) -> pd.Series:
    """Ids and text -> pandas string dtype; ints stay ints ('12', not '12.0'), blanks -> NA."""
    if pd.api.types.is_float_dtype(s.dtype):
        # Integer ids that picked up a NaN are floats (parquet/CSV); print them as ints.
        finite = s.dropna()
        if len(finite) and bool((finite % 1 == 0).all()) and bool((finite.abs() < 2**63).all()):
            try:
                s = s.astype("Int64")
            except (TypeError, ValueError, OverflowError):  # beyond int64: keep the float text
                pass
    out = s if isinstance(s.dtype, pd.StringDtype) else s.astype("str")
    out = out.str.strip()
    return out.mask(out == "")


def _vocabulary_case(s: pd.Series, vocab: list[str]) -> pd.Series:
    """Channel names spelt in another case or with spaces ('WEB', 'Call Center') -> the
    vocabulary's spelling; a name that matches no channel is left as it is (and reported)."""
    key = {v.lower().replace(" ", "_"): v for v in vocab}
    if len(key) < len(vocab):  # the vocabulary itself differs only in case: take values as given
        return s
    uniq = s.dropna().unique()
    fix = {u: key[str(u).lower().replace(" ", "_")] for u in uniq
           if str(u) not in vocab and str(u).lower().replace(" ", "_") in key}
    return s.replace(fix) if fix else s


def _to_float(s: pd.Series) -> tuple[pd.Series, pd.Series | None]:
    """Numbers -> float64; returns (values, mask of non-empty values that are not numbers)."""
    if pd.api.types.is_bool_dtype(s.dtype) or pd.api.types.is_numeric_dtype(s.dtype):
        return s.astype("float64"), None
    text = _to_text(s)
    num = pd.to_numeric(text, errors="coerce").astype("float64")
    bad = text.notna() & num.isna()
    return num, (bad if bad.any() else None)


def _to_int(s: pd.Series) -> tuple[pd.Series, pd.Series | None, pd.Series | None]:
    """Whole numbers -> nullable Int64; returns (values, not-a-number mask, not-whole mask)."""
    num, bad = _to_float(s)
    frac = num.notna() & ((num % 1 != 0) | (num.abs() >= 2**63))  # inf and beyond int64 too
    num = num.mask(frac)
    return num.astype("Int64"), bad, (frac if frac.any() else None)


def _to_bool(s: pd.Series) -> tuple[pd.Series, pd.Series | None]:
    """true/false, yes/no, 1/0 (any case) -> nullable boolean."""
    if pd.api.types.is_bool_dtype(s.dtype):
        return s.astype("boolean"), None
    text = _to_text(s).str.lower()
    out = pd.Series(pd.NA, index=s.index, dtype="boolean")
    out = out.mask(text.isin(_TRUE), True).mask(text.isin(_FALSE), False)
    bad = text.notna() & out.isna()
    return out, (bad if bad.any() else None)


def _to_timestamp(s: pd.Series, tz: str) -> tuple[pd.Series, dict[str, pd.Series], pd.Series | None]:
    """Anything -> datetime64[us, tz].

    Naive values are local time in ``tz``; aware ones are converted to it.
    Returns (values, {check: bad-mask}, offsets) where ``offsets`` labels each text
    value by its UTC offset ('+07:00', or 'none (local time)') for the mixed-offset
    check (None when there is no text with an offset).
    pandas refuses a column that mixes naive and aware strings (and one that mixes
    offsets unless utc=True), so the two kinds are told apart by a regex and parsed apart.
    """
    bad: dict[str, pd.Series] = {}
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        return s.dt.tz_convert(tz).dt.as_unit(TS_UNIT), bad, None
    if pd.api.types.is_datetime64_dtype(s.dtype):
        return _localize(s, tz, bad).dt.as_unit(TS_UNIT), bad, None
    text = _to_text(s)
    present = text.notna()
    aware = text.str.contains(_AWARE_RE, regex=True).fillna(False).astype(bool)
    offsets = None
    if not aware.any():  # the common case: all local time, one vectorised parse
        out = _localize(pd.to_datetime(text, format="ISO8601", errors="coerce"), tz, bad)
    else:
        raw = text.str.extract(_OFFSET_RE, expand=False)
        # normalise '+0700' / '+07' / 'Z' so equal offsets compare equal
        norm = raw.str.upper().str.replace("Z", "+00:00", regex=False)
        norm = norm.str.replace(r"^([+-]\d{2})$", r"\1:00", regex=True)
        norm = norm.str.replace(r"^([+-]\d{2})(\d{2})$", r"\1:\2", regex=True)
        offsets = norm.where(aware, "none (local time)").where(present)
        parsed_aware = pd.to_datetime(text.where(aware), format="ISO8601", utc=True, errors="coerce")
        out = parsed_aware.dt.tz_convert(tz).dt.as_unit(TS_UNIT)
        naive = present & ~aware
        if naive.any():
            parsed = pd.to_datetime(text.where(naive), format="ISO8601", errors="coerce")
            out = out.where(aware, _localize(parsed, tz, bad).dt.as_unit(TS_UNIT))
    unreadable = present & out.isna()
    for m in bad.values():  # already counted as e.g. 'valid local time'
        unreadable &= ~m
    if unreadable.any():
        bad["timestamp"] = unreadable
        if offsets is not None:  # an unreadable value has no offset: not a second export
            offsets = offsets.where(~unreadable)
    return out.dt.as_unit(TS_UNIT), bad, offsets


def _localize(s: pd.Series, tz: str, bad: dict[str, pd.Series]) -> pd.Series:
    """Naive -> aware in ``tz``; a wall time that does not exist or is ambiguous (DST) is NaT."""
    out = s.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
    lost = s.notna() & out.isna()
    if lost.any():
        bad["valid local time"] = lost
    return out


def conform_table(name: str, df: pd.DataFrame, config: "Config", file: str | None = None
                  ) -> tuple[pd.DataFrame, list[Problem], dict[str, pd.Series]]:
    """Cast the contract columns of one table; other columns pass through untouched.

    Returns (frame, problems, {column: mask of rows whose value did not cast}).
    """
    spec = CONTRACT[name]
    df = df.copy()  # copy-on-write: cheap, and the caller's frame stays as it was
    problems: list[Problem] = []
    failed: dict[str, pd.Series] = {}

    def report(col: str, check: str, mask: pd.Series, what: str, original: pd.Series):
        n = _count(mask)
        problems.append(Problem(name, col, check, n, _examples(original, mask), file,
                                _rows(n, what)))
        failed[col] = failed[col] | mask if col in failed else mask

    for col in spec.columns:
        if col.name not in df.columns:
            continue
        s = df[col.name]
        if isinstance(s, pd.DataFrame):  # duplicate column names: leave to the column check
            continue
        k = col.kind
        if k == "id" and pd.api.types.is_float_dtype(s.dtype) and s.notna().any():
            # The contract: ids are text or whole-number columns. A float column may already
            # have lost digits (above 2**53) or been rounded; "12.0" must not quietly become "12".
            present = s.notna()
            n = _count(present)
            problems.append(Problem(
                name, col.name, "id type", n, [repr(float(v)) for v in s[present].drop_duplicates().head(N_EXAMPLES)],
                file, f"holds ids as floating-point numbers (type {s.dtype}, {_rows(n)}): store the column "
                      "as text or as a whole-number type in your export (a float id may have lost digits)"))
            failed[col.name] = present
        if k in ("id", "text", "channel", "category"):
            df[col.name] = _to_text(s)
            if k == "channel" and getattr(config, "channels", None):
                df[col.name] = _vocabulary_case(df[col.name], list(config.channels))
        elif k == "float":
            out, bad = _to_float(s)
            if bad is not None:
                report(col.name, "number", bad, "have a value that is not a number", s)
            df[col.name] = out
        elif k == "int":
            out, bad, frac = _to_int(s)
            if bad is not None:
                report(col.name, "number", bad, "have a value that is not a number", s)
            if frac is not None:
                report(col.name, "whole number", frac, "have a value that is not a whole number", s)
            df[col.name] = out
        elif k == "bool":
            out, bad = _to_bool(s)
            if bad is not None:
                report(col.name, "true/false", bad,
                       "have a value that is not true/false (use true/false, yes/no or 1/0)", s)
            df[col.name] = out
        elif k == "ts":
            out, bads, offsets = _to_timestamp(s, config.timezone)
            for check, mask in bads.items():
                what = {"timestamp": f"have a value that is not a readable timestamp ({_TS_HINT})",
                        "valid local time": f"have a local time that does not exist or is ambiguous in "
                                            f"{config.timezone} (a daylight-saving change)"}[check]
                report(col.name, check, mask, what, s)
            if offsets is not None and not config.allow_mixed_offsets:
                p = _mixed_offsets(name, col.name, offsets, file)
                if p:
                    problems.append(p)
            df[col.name] = out
        else:  # pragma: no cover - the contract above uses only the kinds handled here
            raise ValueError(f"unknown column kind {k!r}")
    return df, problems, failed


def _mixed_offsets(table: str, column: str, offsets: pd.Series, file: str | None) -> Problem | None:
    """One timestamp column should carry one UTC offset; several mean stitched exports."""
    counts = offsets.value_counts()
    if len(counts) < 2:
        return None
    n_bad = int(counts.iloc[1:].sum())
    examples = [f"{off}: {_rows(int(n))}" for off, n in counts.head(N_EXAMPLES).items()]
    return Problem(
        table, column, "single UTC offset", n_bad, examples, file,
        _rows(n_bad, f"carry another UTC offset than the most common one ({counts.index[0]}): ") +
        "two exports stitched together? (set allow_mixed_offsets: true in omni.yaml if "
        "this is expected, e.g. daylight saving)")


def conform(tables: Mapping[str, pd.DataFrame | None], config: "Config",
            files: Mapping[str, str | None] | None = None
            ) -> tuple[dict[str, pd.DataFrame | None], list[Problem], dict[tuple[str, str], pd.Series]]:
    """Cast every table (see ``conform_table``). Absent tables (None) stay None."""
    files = files or {}
    out: dict[str, pd.DataFrame | None] = {}
    problems: list[Problem] = []
    failed: dict[tuple[str, str], pd.Series] = {}
    for name, df in tables.items():
        _check_name(name)
        if df is None:
            out[name] = None
            continue
        out[name], p, f = conform_table(name, df, config, files.get(name))
        problems += p
        failed.update({(name, c): m for c, m in f.items()})
    return out, problems, failed


def _check_name(name: str) -> None:
    if name not in CONTRACT:
        raise KeyError(f"'{name}' is not a contract table; tables: {', '.join(TABLES)}")


# ---------------------------------------------------------------------------------
# 2. pandera schemas
# ---------------------------------------------------------------------------------

def _label(col: str, check: tuple) -> str:
    op, *a = check
    return {"ge": f"{col} >= {a[0]}", "gt": f"{col} > {a[0]}",
            "between": f"{col} in {a[0]}..{a[-1]}",
            "open_closed": f"{a[0]} < {col} <= {a[-1]}"}[op]


def _pa_checks(col: ColumnSpec, config: "Config") -> list[pa.Check]:
    # n_failure_cases: pandera builds its error text from *every* failing value in a
    # Python loop (~2 s per fully bad 1M-row column). We only need to know that a
    # check failed; counts and examples are recomputed vectorised in _from_pandera.
    kw = {"n_failure_cases": N_EXAMPLES}
    checks = []
    for c in col.checks:
        op, *a = c
        lab = _label(col.name, c)
        if op == "ge":
            checks.append(pa.Check.ge(a[0], error=lab, **kw))
        elif op == "gt":
            checks.append(pa.Check.gt(a[0], error=lab, **kw))
        elif op == "between":
            checks.append(pa.Check.in_range(a[0], a[1], error=lab, **kw))
        elif op == "open_closed":
            checks.append(pa.Check.in_range(a[0], a[1], include_min=False, error=lab, **kw))
    if col.kind == "channel":
        checks.append(pa.Check.isin(list(config.channels), error=f"{col.name} in channel vocabulary", **kw))
    if col.kind == "category":
        checks.append(pa.Check.isin(list(col.values), error=f"{col.name} in {{{', '.join(col.values)}}}", **kw))
    return checks


def _dtype(col: ColumnSpec, config: "Config"):
    dtype = {"id": "str", "text": "str", "channel": "str", "category": "str",
             "float": "float64", "int": "Int64", "bool": "boolean",
             "ts": pd.DatetimeTZDtype(TS_UNIT, config.timezone)}[col.kind]
    return pandas_engine.Engine.dtype(dtype)  # resolved once, not on every validate


def build_schema(name: str, config: "Config") -> pa.DataFrameSchema:
    """The pandera schema of one table (as ``conform`` leaves it).

    Nulls and key uniqueness are checked by hand in ``validate`` (vectorised, with
    row counts), so every column is ``nullable=True`` here.
    """
    _check_name(name)
    spec = CONTRACT[name]
    columns = {c.name: pa.Column(_dtype(c, config), checks=_pa_checks(c, config), nullable=True,
                                 required=c.required, name=c.name)
               for c in spec.columns}
    return pa.DataFrameSchema(columns, name=name, strict=False, ordered=False)


def _run_pandera(name: str, df: pd.DataFrame, config: "Config", file: str | None) -> list[Problem]:
    """Validate one table with pandera (lazy) and translate its failure cases to Problems."""
    schema = build_schema(name, config)
    try:
        schema.validate(df, lazy=True, inplace=True)
        return []
    except pa.errors.SchemaErrors as e:
        try:
            return _from_pandera(name, df, schema, e.failure_cases, config, file)
        except Exception:  # translation failed: fall back to pandera's own cases, grouped
            return _raw_pandera(name, e.failure_cases, file)
    except Exception as e:  # never let a bare pandera traceback reach the user
        return [Problem(name, None, "schema", len(df), [], file,
                        f"could not be checked: {type(e).__name__}: {_first_line(e)}")]


def _raw_pandera(name: str, fc: pd.DataFrame, file: str | None) -> list[Problem]:
    out = []
    for (column, check), cases in fc.groupby([fc["column"].astype(object).fillna(""),
                                              fc["check"].astype(str)], sort=False):
        ex = [_native(v) for v in cases["failure_case"].drop_duplicates().head(N_EXAMPLES).tolist()]
        out.append(Problem(name, column or None, check, len(cases), ex, file,
                           _rows(len(cases), f"fail {check!r}")))
    return out


def _first_line(e: object) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _failing(check: pa.Check, s: pd.Series) -> np.ndarray:
    """Boolean mask of the rows of ``s`` that fail a pandera check (nulls pass).

    pandera drops nulls before some checks, so its output can be shorter than
    the column; align it on a fresh positional index.
    """
    s = s.reset_index(drop=True)
    out = check(s).check_output
    if isinstance(out, pd.Series):
        out = out.reindex(s.index, fill_value=True)
    return ~np.asarray(out, dtype=bool)


def _from_pandera(name: str, df: pd.DataFrame, schema: pa.DataFrameSchema, fc: pd.DataFrame,
                  config: "Config", file: str | None) -> list[Problem]:
    """Group pandera's failure cases by (column, check); count and sample vectorised."""
    problems: list[Problem] = []
    mapping = config.tables[name].columns if name in config.tables else {}
    fc = fc.astype({"column": object, "check": object})
    groups = fc.groupby([fc["column"].fillna(""), fc["check"].astype(str)], sort=False)
    for (column, check), cases in groups:
        if check == "column_in_dataframe":
            for missing in cases["failure_case"].astype(str).unique():
                via = f" (mapped from your column '{mapping[missing]}', which is not there)" \
                    if missing in mapping else ""
                found = [c for c in df.columns if c not in CONTRACT[name].column_names][:12]
                hint = f"; unmapped columns found: {found}" if found else ""
                problems.append(Problem(
                    name, missing, "column present", len(df), [], file,
                    f"required column is missing{via}, so all {_rows(len(df))} lack it{hint}; "
                    f"map it under data.tables.{name}.columns in omni.yaml"))
            continue
        column = column or None
        if check.startswith("dtype("):
            expected = check[len("dtype('"):-2]
            got = str(df[column].dtype) if column in df.columns else "?"
            problems.append(Problem(name, column, f"type {expected}", len(df), [], file,
                                    f"has type {got}, expected {expected} (all {_rows(len(df))})"))
            continue
        pa_check = None
        if column in schema.columns:
            pa_check = next((c for c in schema.columns[column].checks if c.error == check), None)
        if pa_check is not None:
            s = df[column]
            mask = _failing(pa_check, s)
            n = _count(mask)
            if config.channels and check.endswith("channel vocabulary"):
                unknown = s[mask].value_counts()
                listed = ", ".join(f"'{v}' ({c})" for v, c in unknown.head(20).items())
                case = [v for v in unknown.index[:20] if str(v).lower() in config.channels]
                if case:
                    listed += f" (names are case-sensitive: '{case[0]}' is not '{str(case[0]).lower()}')"
                problems.append(Problem(
                    name, column, check, n, [_native(v) for v in unknown.index[:N_EXAMPLES]], file,
                    _rows(n, f"have a channel outside the vocabulary: {listed}; add it under ") +
                    "channels: in omni.yaml or fix the data"))
            else:
                problems.append(Problem(name, column, check, n, _examples(s, mask), file,
                                        _rows(n, f"fail {check!r}")))
        else:  # a pandera check we did not write (should not happen): report as is
            ex = [_native(v) for v in cases["failure_case"].head(N_EXAMPLES).tolist()]
            problems.append(Problem(name, column, check, len(cases), ex, file,
                                    _rows(len(cases), f"fail {check!r}")))
    return problems


# ---------------------------------------------------------------------------------
# 3. Hand-written checks (vectorised pandas)
# ---------------------------------------------------------------------------------

def _not_null(name, df, failed, file) -> list[Problem]:
    # By hand, not pandera's nullable=False: on an all-empty 1M-row column pandera
    # spends seconds building its message; isna().sum() takes milliseconds.
    out = []
    for col in CONTRACT[name].columns:
        if col.allows_null or col.name not in df.columns:
            continue
        mask = df[col.name].isna()
        if (name, col.name) in failed:  # already reported as unreadable
            mask &= ~failed[(name, col.name)]
        n = _count(mask)
        if n:
            out.append(Problem(name, col.name, "not null", n, _row_labels(mask, file), file,
                               _rows(n, "are empty (the column is required)")))
    return out


def _person_key(name, df, failed, file) -> list[Problem]:
    """Rows of ``PERSON_KEYS`` tables must name a person: a ``customer_id`` or a ``record_id``."""
    cols = PERSON_KEYS.get(name)
    if not cols:
        return []
    present = [c for c in cols if c in df.columns]
    if not present:
        return [Problem(name, cols[0], "column present", len(df), [], file,
                        f"has neither {' nor '.join(cols)}, so no row can be tied to a person: give the unified "
                        f"customer id, or the channel system's record id (a row of identities), and map it under "
                        f"data.tables.{name}.columns in omni.yaml")]
    mask = np.ones(len(df), dtype=bool)
    for c in present:
        mask &= df[c].isna().to_numpy()
        if (name, c) in failed:  # already reported as unreadable
            mask &= ~np.asarray(failed[(name, c)], dtype=bool)
    n = _count(mask)
    if not n:
        return []
    return [Problem(name, present[0], "not null", n, _row_labels(mask, file), file,
                    _rows(n, f"have no {' and no '.join(present)} (each row needs one to name its customer)"))]


def _unique_key(name, df, file) -> list[Problem]:
    # By hand: pandera's unique= reports every duplicate as a failure case (slow when
    # there are many), and we want rows and distinct keys counted.
    spec = CONTRACT[name]
    if any(k not in df.columns and spec[k].required for k in spec.key):
        return []  # a key column is missing: already reported
    key = [k for k in spec.key if k in df.columns]  # an optional part may be absent
    if len(key) == 1 and df[key[0]].is_unique:  # fast path for the clean case
        return []
    # empty keys are reported by the not-null check; "duplicated key nan" would be noise
    dup = df.duplicated(subset=key, keep=False) & df[key].notna().all(axis=1)
    n = _count(dup)
    if not n:
        return []
    dup_keys = df.loc[dup, key].drop_duplicates()
    shown = dup_keys.head(N_EXAMPLES)
    if len(key) == 1:
        ex = [_native(v) for v in shown[key[0]].tolist()]
    else:  # only the few examples are turned into tuples
        ex = [tuple(_native(v) for v in row) for row in shown.itertuples(index=False)]
    col = "+".join(key)
    n_keys = len(dup_keys)
    return [Problem(name, col, f"unique {col}", n, ex, file,
                    _rows(n, f"share {n_keys} duplicated key value{'s' if n_keys != 1 else ''} ") +
                    f"(each {col} must appear once)")]


def _isin(s: pd.Series, ref: pd.Series) -> np.ndarray:
    """``s.isin(ref)`` as a numpy mask (nulls: False).

    By hand with pyarrow: pandas' isin on Arrow strings walks the reference values
    in a Python loop (~0.15 s per 1M-row foreign key); pyarrow's is_in is ~10x faster.
    """
    if isinstance(s.dtype, pd.StringDtype) and isinstance(ref.dtype, pd.StringDtype):
        try:
            found = pc.is_in(pa_arrow.array(s), value_set=pa_arrow.array(ref.dropna().drop_duplicates()))
            return np.asarray(found.to_numpy(zero_copy_only=False), dtype=bool)
        except (pa_arrow.ArrowException, TypeError, ValueError):
            pass
    return np.asarray(s.isin(ref.dropna()), dtype=bool)


def _foreign_keys(tables, usable, files, children=None) -> list[Problem]:
    out = []
    children = usable if children is None else children
    for name, df in tables.items():
        if df is None or name not in children:
            continue
        for col in CONTRACT[name].columns:
            if not col.references or col.name not in df.columns:
                continue
            ptable, pcol = col.references.split(".")
            parent = tables.get(ptable)
            if ptable not in usable or parent is None or pcol not in parent.columns:
                continue  # parent absent or already broken: checking would only echo that
            s = df[col.name]
            mask = s.notna().to_numpy() & ~_isin(s, parent[pcol])
            n = _count(mask)
            if n:
                out.append(Problem(name, col.name, f"references {col.references}", n,
                                   _examples(s, mask), files.get(name),
                                   _rows(n, f"point to {ptable} that do not exist ") +
                                   f"({col.name} not found in {col.references})"))
    return out


def _after_data_end(name, df, config, file) -> list[Problem]:
    if config.data_end is None:
        return []
    out = []
    for col in CONTRACT[name].columns:
        if col.kind != "ts" or col.name not in df.columns:
            continue
        s = df[col.name]
        if not isinstance(s.dtype, pd.DatetimeTZDtype):
            continue
        mask = s > config.data_end
        n = _count(mask)
        if n:
            out.append(Problem(name, col.name, "<= data_end", n, _examples(s, mask), file,
                               _rows(n, f"are after data_end {config.data_end} ") +
                               "(future timestamps; wrong timezone, or data_end too early?)"))
    return out


def _ordered(name, df, file) -> list[Problem]:
    out = []
    for table, later, earlier, meaning in ORDERED_TIMESTAMPS:
        if table != name or later not in df.columns or earlier not in df.columns:
            continue
        a, b = df[later], df[earlier]
        if not (isinstance(a.dtype, pd.DatetimeTZDtype) and isinstance(b.dtype, pd.DatetimeTZDtype)):
            continue
        mask = a.notna() & b.notna() & (a < b)
        n = _count(mask)
        if n:
            out.append(Problem(name, later, f"{later} >= {earlier}", n, _examples(a, mask), file,
                               _rows(n, f"fail '{later} >= {earlier}' ({meaning})")))
    return out


def _whole_days(name, df, file) -> list[Problem]:
    if name != "spend" or "date" not in df.columns or not isinstance(df["date"].dtype, pd.DatetimeTZDtype):
        return []
    s = df["date"]
    mask = s.notna() & (s != s.dt.normalize())
    n = _count(mask)
    if not n:
        return []
    return [Problem(name, "date", "whole day", n, _examples(s, mask), file,
                    _rows(n, "are not whole days (spend is per day: give the date only)"))]


# ---------------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------------

def check_conformed(tables: Mapping[str, pd.DataFrame | None], config: "Config",
                    files: Mapping[str, str | None] | None = None,
                    failed: Mapping[tuple[str, str], pd.Series] | None = None,
                    unusable: Iterable[str] = (), partial: Iterable[str] = ()) -> list[Problem]:
    """All contract checks on already-conformed tables (``conform`` output).

    ``unusable``: tables with a file-level problem; foreign keys into them are skipped.
    """
    files = files or {}
    failed = failed or {}
    problems: list[Problem] = []
    usable = set()
    for name in sorted(tables, key=_table_order):
        df = tables[name]
        if df is None or name in unusable:
            continue
        file = files.get(name)
        if len(df) == 0:
            problems.append(Problem(name, None, "non-empty", 0, [], file,
                                    "table is empty (0 rows); remove it from omni.yaml if you have no such data"))
            continue
        dupe_cols = df.columns[df.columns.duplicated()].unique().tolist()
        if dupe_cols:
            problems.append(Problem(name, str(dupe_cols[0]), "unique column names", len(df), dupe_cols, file,
                                    f"column name appears more than once: {dupe_cols}"))
            continue
        usable.add(name)
        problems += _run_pandera(name, df, config, file)
        problems += _not_null(name, df, failed, file)
        problems += _person_key(name, df, failed, file)
        problems += _unique_key(name, df, file)
        problems += _after_data_end(name, df, config, file)
        problems += _ordered(name, df, file)
        problems += _whole_days(name, df, file)
    # a table whose broken rows were left out (CSV row shape / quotes) is no parent to check
    # against: every child of a left-out row would be a false "does not exist"
    problems += _foreign_keys(tables, usable - set(partial), files, children=usable)
    return sort_problems(problems)


def validate(tables: Mapping[str, pd.DataFrame | None], config: "Config",
             files: Mapping[str, str | None] | None = None) -> list[Problem]:
    """Check tables against the contract; return every Problem (empty list = all good).

    Accepts raw frames (strings for timestamps, ints for ids, ...) or frames as
    ``omni_lib.io.load`` returns them: values are cast first, as the loader does.
    ``files`` (table -> path) only labels the problems.
    """
    conformed, problems, failed = conform(tables, config, files)
    problems += check_conformed(conformed, config, files, failed)
    return sort_problems(problems)
