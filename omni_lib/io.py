"""Load the contract tables from the user's files, mapped and validated.

``load()`` reads CSV, Parquet or a DuckDB database as ``omni.yaml`` says, renames
the user's columns onto contract names, casts types (timestamps tz-aware in the
configured timezone) and validates. Every problem in every table (missing file,
broken CSV row, unreadable value, failed check) is collected, then raised at once
as one ``ContractError``; ``check()`` returns the same list instead.

``duckdb_connection()`` gives the heavy set-based steps SQL views over the same
files, without loading them into pandas.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from pathlib import Path
from typing import Iterable, Iterator

import duckdb
import pandas as pd

from omni_lib import schema
from omni_lib.config import Config, ConfigError, TableConfig, load_config
from omni_lib.schema import CONTRACT, TABLES, ContractError, Problem

__all__ = ["Dataset", "load", "check", "duckdb_connection", "ContractError", "ConfigError", "Problem"]

log = logging.getLogger(__name__)


class Dataset:
    """The loaded tables: ``ds.orders``, ``ds["orders"]`` or ``ds.tables["orders"]``.

    Tables that are not configured (optional) or not asked for are None.
    """

    identities: pd.DataFrame | None
    customers: pd.DataFrame | None
    orders: pd.DataFrame | None
    touchpoints: pd.DataFrame | None
    surveys: pd.DataFrame | None
    tickets: pd.DataFrame | None
    experiments: pd.DataFrame | None
    spend: pd.DataFrame | None
    prices: pd.DataFrame | None

    def __init__(self, tables: dict[str, pd.DataFrame | None], config: Config,
                 notes: list[str] | None = None):
        self.config = config
        self.tables: dict[str, pd.DataFrame | None] = {t: tables.get(t) for t in TABLES}
        self.notes: list[str] = list(notes or [])
        for name, df in self.tables.items():
            setattr(self, name, df)

    def __getitem__(self, name: str) -> pd.DataFrame | None:
        if name not in self.tables:
            raise KeyError(f"'{name}' is not a contract table; tables: {', '.join(TABLES)}")
        return self.tables[name]

    def __contains__(self, name: object) -> bool:
        """True when the table is loaded (not None)."""
        return self.tables.get(name) is not None  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[str]:
        """The names of the loaded tables."""
        return (n for n, df in self.tables.items() if df is not None)

    def __repr__(self) -> str:
        parts = [f"{n}={len(df):,} rows" if df is not None else f"{n}=None" for n, df in self.tables.items()]
        return f"Dataset({', '.join(parts)})"


# ---------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------

def load(config: Config | str | os.PathLike | None = None, tables: Iterable[str] | None = None,
         validate: bool = True) -> Dataset:
    """Read, map, cast and validate the configured tables.

    config: a Config, a path to ``omni.yaml``, or None (``$OMNI_CONFIG`` / ``./omni.yaml``).
    tables: names to load (default: every configured table); foreign keys into a
    table that is not loaded are not checked.
    validate: False skips the contract checks (values that do not cast become
    NA/NaT silently); a file that cannot be read still raises.
    Raises ContractError listing every problem found, in all tables at once.
    """
    cfg = _config(config)
    frames, problems, notes = _load(cfg, _select(cfg, tables), validate)
    if problems:
        raise ContractError(problems)
    return Dataset(frames, cfg, notes)


def check(config: Config | str | os.PathLike | None = None, tables: Iterable[str] | None = None
          ) -> list[Problem]:
    """Every contract problem in the configured data (empty list = the data is fine).

    This is ``omni validate``. A broken ``omni.yaml`` still raises ConfigError.
    """
    cfg = _config(config)
    _, problems, _ = _load(cfg, _select(cfg, tables), True)
    return problems


def diagnose(config: Config | str | os.PathLike | None = None, tables: Iterable[str] | None = None
             ) -> tuple[Dataset, list[Problem]]:
    """Read once, return the data as far as it casts *and* every contract problem.

    For the data-health report, which shows problems instead of stopping on them.
    Values that do not cast are NA/NaT in the returned frames.
    """
    cfg = _config(config)
    frames, problems, notes = _load(cfg, _select(cfg, tables), True)
    return Dataset(frames, cfg, notes), problems


def duckdb_connection(config: Config | str | os.PathLike | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view per configured table.

    The views read the files in place (nothing is loaded into pandas), carry the
    contract column names and types (ids VARCHAR, amounts DOUBLE, timestamps
    TIMESTAMPTZ) and the session TimeZone is the config's, so naive timestamps
    mean local time as in ``load()``. The views do not validate: run
    ``check()`` / ``omni validate`` first; a value that does not cast fails the query.
    """
    cfg = _config(config)
    con = duckdb.connect()
    con.execute(f"SET TimeZone = {_lit(cfg.timezone)}")
    problems: list[Problem] = []
    if any(cfg.table_format(n) == "duckdb" for n in cfg.tables):
        if cfg.database is None or not cfg.database.is_file():
            raise ContractError([_missing_database(cfg)])
        con.execute(f"ATTACH {_lit(str(cfg.database))} AS src (READ_ONLY)")
    for name in TABLES:
        if name not in cfg.tables:
            continue
        t = cfg.tables[name]
        fmt = cfg.table_format(name)
        src = cfg.source(name)
        if fmt == "duckdb":
            relation = f"src.{_ident(str(src))}"
        elif not Path(src).is_file():
            problems.append(_missing_file(name, Path(src), t))
            continue
        elif fmt == "parquet":
            relation = f"read_parquet({_lit(str(src))})"
        else:
            opts = f"header=true, delim={_lit(t.sep)}"
            if t.encoding.lower().replace("-", "") != "utf8":
                opts += f", encoding={_lit(t.encoding)}"
            names = [r[0] for r in con.execute(
                f"DESCRIBE SELECT * FROM read_csv({_lit(str(src))}, {opts}, all_varchar=true)").fetchall()]
            text_cols = [t.columns.get(c.name, c.name) for c in CONTRACT[name].columns
                         if c.kind in ("id", "text", "channel", "category")]
            forced = [c for c in names if c in text_cols]
            if forced:  # keep ids as text: '007' must not become 7
                opts += ", types={" + ", ".join(f"{_lit(c)}: 'VARCHAR'" for c in forced) + "}"
            relation = f"read_csv({_lit(str(src))}, {opts})"
        try:
            cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()]
        except duckdb.Error as e:
            problems.append(Problem(name, None, "readable", 0, [], _display_source(cfg, name),
                                    f"cannot be read: {_first_line(e)}"))
            continue
        con.execute(f"CREATE VIEW {_ident(name)} AS SELECT {_view_select(name, t, cols)} FROM {relation}")
    if problems:
        con.close()
        raise ContractError(problems)
    return con


# ---------------------------------------------------------------------------------
# the loading pipeline
# ---------------------------------------------------------------------------------

def _config(config) -> Config:
    if isinstance(config, Config):
        return config
    return load_config(config)


def _select(cfg: Config, tables: Iterable[str] | None) -> list[str]:
    if tables is None:
        return [t for t in TABLES if t in cfg.tables]
    if isinstance(tables, str):
        tables = [tables]
    names = list(tables)
    unknown = [t for t in names if t not in CONTRACT]
    if unknown:
        raise KeyError(f"unknown table(s) {unknown}; contract tables: {', '.join(TABLES)}")
    return [t for t in TABLES if t in names]


def _load(cfg: Config, names: list[str], validate: bool
          ) -> tuple[dict[str, pd.DataFrame | None], list[Problem], list[str]]:
    notes = list(cfg.notes)
    for note in cfg.notes:
        (log.warning if note.startswith("data_end") else log.info)(note)
    raw, problems, files, read_notes = _read_all(cfg, [n for n in names if n in cfg.tables])
    notes += read_notes
    frames, cast_problems, failed = schema.conform(raw, cfg, files)
    if validate:
        problems += cast_problems
        partial = {p.table for p in problems if p.check in ("CSV row shape", "CSV quotes")}
        problems += schema.check_conformed(frames, cfg, files, failed, partial=partial)
    return frames, schema.sort_problems(problems), notes


def _read_all(cfg: Config, names: list[str]
              ) -> tuple[dict[str, pd.DataFrame | None], list[Problem], dict[str, str], list[str]]:
    """Read every table; a table that cannot be read is None plus a Problem."""
    frames: dict[str, pd.DataFrame | None] = {}
    problems: list[Problem] = []
    files: dict[str, str] = {}
    notes: list[str] = []
    con = None
    if any(cfg.table_format(n) == "duckdb" for n in names):
        if cfg.database is None or not cfg.database.is_file():
            problems.append(_missing_database(cfg))
        else:
            try:
                con = duckdb.connect(str(cfg.database), read_only=True)
            except duckdb.Error as e:
                problems.append(Problem("database", None, "readable", 0, [], _display(cfg.database),
                                        f"cannot open the database: {_first_line(e)}"))
    try:
        for name in names:
            t = cfg.tables[name]
            files[name] = _display_source(cfg, name)
            fmt = cfg.table_format(name)
            if fmt == "duckdb":
                df, probs = (_read_duckdb(con, name, t, cfg, files[name]) if con is not None
                             else (None, []))
            else:
                path = Path(cfg.source(name))
                if not path.is_file():
                    df, probs = None, [_missing_file(name, path, t)]
                elif fmt == "csv":
                    df, probs = _read_csv(name, path, t, files[name])
                else:
                    df, probs = _read_parquet(name, path, files[name])
            problems += probs
            if df is not None:
                df, probs, nts = _rename(name, df, t, files[name])
                problems += probs
                notes += nts
            frames[name] = df
    finally:
        if con is not None:
            con.close()
    return frames, problems, files, notes


def _read_csv(name: str, path: Path, t: TableConfig, file: str) -> tuple[pd.DataFrame | None, list[Problem]]:
    """pandas' C reader; ragged rows and broken quotes become Problems with line numbers.

    Contract columns are read as text (ids keep leading zeros; casting and its
    error reporting happen in schema.conform); other columns are inferred.
    """
    dtype = {t.columns.get(c, c): "str" for c in CONTRACT[name].column_names}
    # utf-8-sig reads plain UTF-8 too, and drops the byte-order mark Excel puts in
    # front of the first header (which would otherwise hide that column).
    encoding = "utf-8-sig" if t.encoding.lower().replace("_", "-") in ("utf-8", "utf8") else t.encoding
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", pd.errors.ParserWarning)
        try:
            df = pd.read_csv(path, sep=t.sep, encoding=encoding, dtype=dtype, on_bad_lines="warn",
                             keep_default_na=False, na_values=_na_values(path, t, name, encoding))
        except pd.errors.EmptyDataError:
            return None, [Problem(name, None, "non-empty", 0, [], file,
                                  "table is empty (the file has no header and no rows)")]
        except pd.errors.ParserError as e:
            return None, [_csv_syntax_problem(name, str(e), file)]
        except UnicodeDecodeError as e:
            return None, [Problem(name, None, "readable", 0, [], file,
                                  f"is not {t.encoding} text ({e.reason} at byte {e.start}); "
                                  f"set data.tables.{name}.encoding in omni.yaml (e.g. latin-1)")]
        except (OSError, ValueError) as e:
            return None, [Problem(name, None, "readable", 0, [], file, f"cannot be read: {_first_line(e)}")]
    # The C reader reports every skipped row in ParserWarnings: "Skipping line 7: expected 5 fields, saw 6"
    skipped = [m.groups() for w in caught if issubclass(w.category, pd.errors.ParserWarning)
               for m in re.finditer(r"line (\d+): (.+)", str(w.message))]
    problems = []
    dupes = _duplicate_header(path, t.sep, encoding)
    if dupes:  # pandas renames the second 'x' to 'x.1', silently
        return None, [Problem(name, dupes[0], "unique column names", len(df), dupes, file,
                              f"the header names a column more than once: {dupes}; rename or remove "
                              "the repeated column")]
    if len(df.columns) == 1:
        header = str(df.columns[0])
        other = [c for c in (";", "\t", "|", ",") if c != t.sep and c in header]
        if other:
            shown = {"\t": "\\t"}.get(other[0], other[0])
            return None, [Problem(name, None, "CSV separator", 0, [header[:80]], file,
                                  f"has one column only ('{header[:60]}'): the file looks separated by "
                                  f"'{shown}', not '{t.sep}'; set data.tables.{name}.sep: \"{shown}\" in omni.yaml")]
    # Rows with too FEW fields are padded with empty values by pandas, silently, and the
    # values after the missing field land in the wrong columns (an e-mail under
    # created_at); a stray quote swallows the rows up to the next quote into one field.
    # Only a row with an empty last column, or a value holding a line break, can be one
    # of these, so the exact scan below runs only then.
    suspicious = len(df.columns) and df.iloc[:, -1].isna().any()
    if len(df.columns) and not suspicious:
        text_cols = [c for c in df.columns if df[c].dtype == object or isinstance(df[c].dtype, pd.StringDtype)]
        suspicious = any(df[c].str.contains("\n", regex=False).fillna(False).any() for c in text_cols)
    if suspicious:
        short, swallowed, positions = _scan_rows(path, t.sep, encoding, len(df.columns), len(df))
        if short:
            n = len(short)
            problems.append(Problem(
                name, None, "CSV row shape", n,
                [f"line {ln}: expected {len(df.columns)} fields, saw {k}" for ln, k in short[:schema.N_EXAMPLES]],
                file, f"{n} row{'s' if n != 1 else ''} have fewer fields than the header's {len(df.columns)} "
                      f"(first at line {short[0][0]}): a field is missing or a separator was deleted; these "
                      "rows are left out (the values after the gap would land in the wrong columns)"))
        if swallowed:
            n = len(swallowed)
            a, b = swallowed[0]
            problems.append(Problem(
                name, None, "CSV quotes", n, [f"lines {x}-{y}" for x, y in swallowed[:schema.N_EXAMPLES]], file,
                f"has a stray quote (\") at line {a}: the lines up to {b} were read as one value "
                f"({n} such place{'s' if n != 1 else ''}); remove the stray quote or quote the field fully "
                "(these rows are left out)"))
        if positions:
            df = df.drop(index=df.index[positions]).reset_index(drop=True)
    if skipped:
        n = len(skipped)
        problems.append(Problem(
            name, None, "CSV row shape", n, [f"line {ln}: {why}" for ln, why in skipped[:schema.N_EXAMPLES]],
            file, f"{n} row{'s' if n != 1 else ''} have the wrong number of fields "
                  f"(first at line {skipped[0][0]}); a stray separator or quote?"))
    return df, problems


def _scan_rows(path: Path, sep: str, encoding: str, n_fields: int, expected_rows: int
               ) -> tuple[list[tuple[int, int]], list[tuple[int, int]], list[int]]:
    """Records with fewer than ``n_fields`` fields, and records whose quoted value runs
    over several lines *and* holds separators (a stray quote that swallowed rows).

    Returns ``([(line, fields)], [(first line, last line)], [row positions in pandas'
    frame])``. By hand with the csv module (same quoting rules as pandas' C reader),
    because neither pandas nor pyarrow reports short rows with their physical line
    numbers (pyarrow's invalid-row handler miscounts lines after a quoted newline).
    Blank lines and over-long rows, which pandas skips, are not counted in positions.
    """
    import csv

    short: list[tuple[int, int]] = []
    swallowed: list[tuple[int, int]] = []
    positions: list[int] = []
    pos = 0
    delim = sep if len(sep) == 1 else ","
    with open(path, newline="", encoding=encoding, errors="replace") as fh:
        reader = csv.reader(fh, delimiter=delim, strict=False)
        start = 1
        for i, row in enumerate(reader):
            line, end = start, reader.line_num
            start = end + 1
            if i == 0 or not row:
                continue
            k = len(row)
            bad = False
            if k < n_fields:
                short.append((line, k))
                bad = True
            elif end > line and n_fields >= 3 and any(_holds_rows(f, delim, n_fields) for f in row):
                swallowed.append((line, end))
                bad = True
            if bad and k <= n_fields:
                positions.append(pos)
            if k <= n_fields:
                pos += 1
    if pos != expected_rows:  # pandas split the file otherwise (a lone \r, ...): do not guess rows
        positions = []
    return short, swallowed, positions


#: pandas' default missing-value spellings (pandas.read_csv ``na_values``)
_DEFAULT_NA = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
               "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]


def _na_values(path: Path, t: TableConfig, name: str, encoding: str) -> dict[str, list[str]]:
    """Missing-value spellings per column: only the empty field for ids and text (a
    record id "NA" or a customer named "Nan" must not become empty), pandas' usual
    list ("NULL", "n/a", ...) for every other column."""
    import csv

    try:
        with open(path, newline="", encoding=encoding, errors="replace") as fh:
            header = next(csv.reader(fh, delimiter=t.sep if len(t.sep) == 1 else ","), [])
    except (OSError, csv.Error):
        header = []
    literal = {t.columns.get(c.name, c.name) for c in CONTRACT[name].columns if c.kind in ("id", "text")}
    return {h: ([""] if h.strip() in literal else _DEFAULT_NA) for h in header}


def _duplicate_header(path: Path, sep: str, encoding: str) -> list[str]:
    """Names the header line repeats (read apart: pandas has already renamed them)."""
    import csv

    try:
        with open(path, newline="", encoding=encoding, errors="replace") as fh:
            header = next(csv.reader(fh, delimiter=sep if len(sep) == 1 else ","), [])
    except (OSError, csv.Error):
        return []
    names = [h.strip() for h in header]
    return sorted({h for h in names if h and names.count(h) > 1})


def _holds_rows(value: str, delim: str, n_fields: int) -> bool:
    """A quoted value that holds whole rows: a line inside it has a row's worth of
    separators (a legitimate multi-line comment has a comma or two, not a row)."""
    if "\n" not in value:
        return False
    return any(ln.count(delim) >= n_fields - 1 for ln in value.split("\n")[1:])


def _csv_syntax_problem(name: str, message: str, file: str) -> Problem:
    m = re.search(r"EOF inside string starting at row (\d+)", message)
    if m:
        line = int(m.group(1)) + 1  # the tokenizer counts rows from 0 (the header)
        return Problem(name, None, "CSV quotes", 1, [f"line {line}"], file,
                       f"has an unclosed quote (\") starting at line {line}; the rest of the file "
                       "cannot be read (quote the field fully or remove the stray quote)")
    m = re.search(r"line (\d+)", message)
    where = f" at line {m.group(1)}" if m else ""
    return Problem(name, None, "CSV syntax", 1, [], file,
                   f"is not valid CSV{where}: {_first_line(message).replace('Error tokenizing data. ', '')}")


def _read_parquet(name: str, path: Path, file: str) -> tuple[pd.DataFrame | None, list[Problem]]:
    try:
        df = pd.read_parquet(path, engine="pyarrow")
        return _keep_integers(df, path), []
    except Exception as e:  # pyarrow raises several types for damaged / non-parquet files
        return None, [Problem(name, None, "readable", 0, [], file,
                              f"is not a readable Parquet file: {_first_line(e)}")]


def _keep_integers(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Integer Parquet columns with nulls come out of pandas as float64; read them again as
    nullable integers, so an integer id keeps every digit and is never taken for a float id."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    cols = [f.name for f in schema if pa.types.is_integer(f.type) and f.name in df.columns
            and not isinstance(df[f.name], pd.DataFrame) and pd.api.types.is_float_dtype(df[f.name].dtype)]
    if not cols:
        return df
    tab = pq.read_table(path, columns=cols)
    for c in cols:
        df[c] = pd.Series(tab.column(c).to_pandas(types_mapper=lambda t: pd.ArrowDtype(t)).to_numpy(),
                          index=df.index).astype("Int64")
    return df


def _read_duckdb(con, name: str, t: TableConfig, cfg: Config, file: str
                 ) -> tuple[pd.DataFrame | None, list[Problem]]:
    try:
        # via Arrow: pandas' string and tz-aware dtypes come out directly
        return con.sql(f"SELECT * FROM {_ident(t.path)}").to_arrow_table().to_pandas(), []
    except duckdb.CatalogException:
        there = [r[0] for r in con.execute(
            "SELECT DISTINCT table_name FROM information_schema.tables ORDER BY 1").fetchall()]
        return None, [Problem(name, None, "table exists", 0, [], file,
                              f"table '{t.path}' is not in the database {_display(cfg.database)}; "
                              f"tables there: {there[:20]}")]
    except duckdb.Error as e:
        return None, [Problem(name, None, "readable", 0, [], file, f"cannot be read: {_first_line(e)}")]


def _rename(name: str, df: pd.DataFrame, t: TableConfig, file: str
            ) -> tuple[pd.DataFrame, list[Problem], list[str]]:
    """Put contract names on the user's columns (``columns:`` in omni.yaml)."""
    problems, notes = [], []
    present = {c: u for c, u in t.columns.items() if u in df.columns}
    for contract_col, user_col in t.columns.items():
        if user_col in df.columns:
            continue
        if CONTRACT[name][contract_col].required and contract_col not in df.columns:
            continue  # reported by the schema check as a missing column, with this hint
        problems.append(Problem(name, contract_col, "column present", len(df), [], file,
                                f"mapped from your column '{user_col}', which is not in the file, "
                                f"so all {len(df)} rows lack it (check data.tables.{name}.columns "
                                "in omni.yaml)"))
    # A contract-named column that the mapping replaces is kept under another name.
    shadowed = {c: f"{c}_unmapped" for c, u in present.items() if c in df.columns and c != u}
    if shadowed:
        notes.append(f"{name}: columns {sorted(shadowed)} are replaced by your mapping; "
                     f"the originals are kept as {sorted(shadowed.values())}")
        df = df.rename(columns=shadowed)
    df = df.rename(columns={u: c for c, u in present.items()})
    return df, problems, notes


# ---------------------------------------------------------------------------------
# DuckDB views
# ---------------------------------------------------------------------------------

_SQL_TYPES = {"id": "VARCHAR", "text": "VARCHAR", "channel": "VARCHAR", "category": "VARCHAR",
              "float": "DOUBLE", "int": "BIGINT", "bool": "BOOLEAN", "ts": "TIMESTAMPTZ"}


def _view_select(name: str, t: TableConfig, cols: list[str]) -> str:
    """SELECT list: contract columns renamed and cast, every other column as it is."""
    parts, used = [], set()
    for c in CONTRACT[name].columns:
        user = t.columns.get(c.name, c.name)
        if user in cols:
            parts.append(f"CAST({_ident(user)} AS {_SQL_TYPES[c.kind]}) AS {_ident(c.name)}")
            used.add(user)
    contract_names = set(CONTRACT[name].column_names)
    for col in cols:
        if col not in used:
            alias = f"{col}_unmapped" if col in contract_names else col
            parts.append(f"{_ident(col)} AS {_ident(alias)}")
    return ", ".join(parts) or "*"


def _ident(name: str) -> str:
    """Quote a (possibly schema-qualified) SQL identifier."""
    return ".".join('"' + p.replace('"', '""') + '"' for p in name.split("."))


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# ---------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------

def _display(path: Path | str | None) -> str:
    """A path as the user would type it: relative to the working folder when inside it."""
    if path is None:
        return "?"
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def _display_source(cfg: Config, name: str) -> str:
    if cfg.table_format(name) == "duckdb":
        return f"{_display(cfg.database)}, table {cfg.tables[name].path}"
    return _display(cfg.source(name))


def _missing_file(name: str, path: Path, t: TableConfig) -> Problem:
    folder = path.parent
    hint = "" if folder.is_dir() else f"; the folder {_display(folder)} does not exist either"
    return Problem(name, None, "file exists", 0, [], _display(path),
                   f"file not found{hint} (set data.root / data.tables.{name}.path in omni.yaml)")


def _missing_database(cfg: Config) -> Problem:
    return Problem("database", None, "file exists", 0, [], _display(cfg.database),
                   "the DuckDB database file is not there (set data.database in omni.yaml)")


def _first_line(e: object) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
