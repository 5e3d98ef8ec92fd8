"""Big tables in chunks: read, conform and check a Parquet table a slice at a time, staged in DuckDB.

At a retailer's size the event tables dominate (72.5M touchpoints at 1M customers): held as one
pandas frame they need more memory than the machine has. A table above ``CHUNK_ROWS`` rows is
therefore read ``CHUNK_ROWS`` rows at a time; each slice is conformed and checked by the same
contract code as a small table (``schema.check_conformed``), its problems added up, and appended
to a staging table in DuckDB. The checks that need the whole table (unique keys, foreign keys,
an empty table) then run as SQL over the staged rows. The problem list is the one a whole-table
read gives (tests compare both paths).

Only the event tables are staged this way (touchpoints, surveys, tickets): orders, customers and
identities feed identity resolution and the customers step in pandas.
"""
from __future__ import annotations

import re
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from omni_lib import schema
from omni_lib.schema import CONTRACT, N_EXAMPLES, Problem

#: rows per slice (and the size above which a table is read in slices)
CHUNK_ROWS = 2_000_000
#: tables that may be staged in slices (not needed as pandas by the later prepare steps)
CHUNKABLE = ("touchpoints", "surveys", "tickets")


def big_tables(cfg, names) -> dict[str, int]:
    """``{table: rows}`` of the configured Parquet tables to read in slices."""
    out = {}
    for n in names:
        if n not in CHUNKABLE or n not in cfg.tables or cfg.table_format(n) != "parquet":
            continue
        try:
            rows = pq.ParquetFile(Path(cfg.source(n))).metadata.num_rows
        except Exception:  # unreadable: the whole-table reader reports it
            continue
        if rows > CHUNK_ROWS:
            out[n] = rows
    return out


def _batch_frame(batch: pa.RecordBatch) -> pd.DataFrame:
    """A slice as pandas, integer columns with nulls kept as nullable integers (as ``io`` does)."""
    df = batch.to_pandas()
    for f in batch.schema:
        if pa.types.is_integer(f.type) and f.name in df and pd.api.types.is_float_dtype(df[f.name].dtype):
            df[f.name] = pd.Series(batch.column(f.name).to_pandas(types_mapper=pd.ArrowDtype).to_numpy(),
                                   index=df.index).astype("Int64")
    return df


_ROW_LABEL = re.compile(r"^(row|line) (\d+)$")


def _shift(examples: list, offset: int) -> list:
    out = []
    for e in examples:
        m = _ROW_LABEL.match(str(e)) if isinstance(e, str) else None
        out.append(f"{m.group(1)} {int(m.group(2)) + offset}" if m else e)
    return out


def _merge(problems: list[Problem]) -> list[Problem]:
    """Problems of the slices as one list: counts added, examples of the first slices, the
    count in the message made the total."""
    groups: dict[tuple, list[Problem]] = {}
    for p in problems:
        groups.setdefault((p.table, p.column, p.check), []).append(p)
    out = []
    for (table, column, check), ps in groups.items():
        total = sum(p.n_bad for p in ps)
        examples: list = []
        for p in ps:
            for e in p.examples:
                if e not in examples and len(examples) < N_EXAMPLES:
                    examples.append(e)
        base = next((p for p in ps if p.n_bad != 1), ps[0])
        msg = base.message
        if len(ps) > 1:
            n0 = f"{base.n_bad:,}"
            if base.n_bad == 1 and msg.startswith("1 row "):   # the singular form: rebuild the plural
                verb, _, rest = msg[len("1 row "):].partition(" ")
                plural = {v: k for k, v in schema._SINGULAR.items()}.get(verb, verb)
                msg = schema._rows(total, " ".join(filter(None, [plural, rest])))
            else:
                msg = re.sub(rf"(?<![\d,.]){re.escape(n0)}(?![\d,.])", f"{total:,}", msg)
        if len(ps) > 1 and check.endswith("channel vocabulary"):
            msg = _merge_value_counts(msg, [q.message for q in ps])
        p = Problem(table, column, check, total, [], base.file, "")
        p.examples, p.message = examples, msg   # already masked by the slices' Problems
        out.append(p)
    return out


_LISTED = re.compile(r"outside the vocabulary: (.*?)(?: \(names are case-sensitive[^;]*\))?; add it under")
_PAIR = re.compile(r"'((?:[^']|'(?! \())*)' \((\d[\d,]*)\)")


def _merge_value_counts(msg: str, messages: list[str]) -> str:
    """The channel-vocabulary message lists each unknown value with its count: add them up."""
    counts: dict[str, int] = {}
    for m in messages:
        found = _LISTED.search(m)
        for v, c in _PAIR.findall(found.group(1) if found else ""):
            counts[v] = counts.get(v, 0) + int(c.replace(",", ""))
    order = sorted(counts, key=lambda v: -counts[v])   # stable: ties keep their first appearance
    listed = ", ".join(f"'{v}' ({counts[v]})" for v in order[:20])
    found = _LISTED.search(msg)
    return msg if not found else msg[:found.start(1)] + listed + msg[found.end(1):]


def stage(con: duckdb.DuckDBPyConnection, cfg, name: str, frames: dict, files: dict, unusable: set
          ) -> tuple[int, list[Problem], list[str]]:
    """Read ``name`` in slices into the staging table ``name`` of ``con``; return rows, problems, notes.

    ``frames``: the small tables already read (parents of the foreign keys).
    """
    from omni_lib import io

    t = cfg.tables[name]
    path = Path(cfg.source(name))
    file = files.get(name) or io._display_source(cfg, name)
    pf = pq.ParquetFile(path)
    problems: list[Problem] = []
    notes: list[str] = []
    offset = 0
    created = False
    for i, batch in enumerate(pf.iter_batches(batch_size=CHUNK_ROWS)):
        df = _batch_frame(batch)
        df, probs, nts = io._rename(name, df, t, file)
        if i == 0:
            notes += nts
        problems += probs
        conf, cast, failed = schema.conform_table(name, df, cfg, file)
        failed_k = {(name, c): m for c, m in failed.items()}
        checks = schema.check_conformed({name: conf}, cfg, {name: file}, failed_k)
        # whole-table checks run below in SQL, on every slice at once
        checks = [p for p in checks if not p.check.startswith("unique ") and p.check != "non-empty"]
        for p in cast + checks:
            p.examples = _shift(p.examples, offset) if p.check == "not null" else p.examples
        problems += cast + checks
        conf = conf.reset_index(drop=True)
        conf["_row"] = np.arange(offset, offset + len(conf), dtype="int64")
        con.register("_slice", pa.Table.from_pandas(conf, preserve_index=False))
        if not created:
            con.execute(f'CREATE TABLE "{name}" AS SELECT * FROM _slice')
            created = True
        else:
            con.execute(f'INSERT INTO "{name}" BY NAME SELECT * FROM _slice')
        con.unregister("_slice")
        offset += len(conf)
        del df, conf
    problems = _merge(problems)
    if offset == 0:
        problems.append(Problem(name, None, "non-empty", 0, [], file,
                                "table is empty (0 rows); remove it from omni.yaml if you have no such data"))
        return 0, problems, notes
    cols = [r[0] for r in con.execute(f'DESCRIBE "{name}"').fetchall()]
    problems += _unique_sql(con, name, cols, file)
    problems += _foreign_keys_sql(con, name, cols, frames, file, unusable)
    return offset, problems, notes


def _unique_sql(con, name: str, cols: list[str], file: str) -> list[Problem]:
    spec = CONTRACT[name]
    if any(k not in cols and spec[k].required for k in spec.key):
        return []
    key = [k for k in spec.key if k in cols]
    k_sql = ", ".join(f'"{k}"' for k in key)
    not_null = " AND ".join(f'"{k}" IS NOT NULL' for k in key)
    dups = con.execute(
        f'SELECT {k_sql}, count(*) AS n, min(_row) AS first FROM "{name}" WHERE {not_null} '
        f'GROUP BY {k_sql} HAVING count(*) > 1 ORDER BY first').df()
    if dups.empty:
        return []
    n, n_keys = int(dups["n"].sum()), len(dups)
    shown = dups.head(N_EXAMPLES)
    ex = ([schema._native(v) for v in shown[key[0]].tolist()] if len(key) == 1 else
          [tuple(schema._native(v) for v in row) for row in shown[key].itertuples(index=False)])
    col = "+".join(key)
    return [Problem(name, col, f"unique {col}", n, ex, file,
                    schema._rows(n, f"share {n_keys} duplicated key value{'s' if n_keys != 1 else ''} ") +
                    f"(each {col} must appear once)")]


def _foreign_keys_sql(con, name: str, cols: list[str], frames: dict, file: str, unusable: set) -> list[Problem]:
    out = []
    for col in CONTRACT[name].columns:
        if not col.references or col.name not in cols:
            continue
        ptable, pcol = col.references.split(".")
        parent = frames.get(ptable)
        if ptable in unusable or parent is None or pcol not in parent.columns:
            continue
        con.register("_parent", pa.table({"k": pa.array(parent[pcol].dropna().astype("string").unique())}))
        bad = con.execute(
            f'SELECT "{col.name}" AS v, count(*) OVER () AS n FROM "{name}" s '
            f'WHERE "{col.name}" IS NOT NULL AND NOT EXISTS (SELECT 1 FROM _parent p WHERE p.k = s."{col.name}") '
            f'ORDER BY _row LIMIT 1000').df()
        con.unregister("_parent")
        if bad.empty:
            continue
        n = int(bad["n"].iloc[0])
        ex = [schema._native(v) for v in bad["v"].drop_duplicates().head(N_EXAMPLES).tolist()]
        out.append(Problem(name, col.name, f"references {col.references}", n, ex, file,
                           schema._rows(n, f"point to {ptable} that do not exist ") +
                           f"({col.name} not found in {col.references})"))
    return out
