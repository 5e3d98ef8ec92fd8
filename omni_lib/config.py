"""Read ``omni.yaml``: where the data is, how its columns map onto the contract,
and the few global settings (timezone, currency, data end, channel vocabulary).

The config file is the user's only place to bring their own data, so every
mistake in it becomes a :class:`ConfigError` that names the offending key,
instead of a ``KeyError`` deep inside a notebook.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
import yaml

from omni_lib.schema import CONTRACT, REQUIRED_TABLES, TABLES

__all__ = [
    "Config",
    "ConfigError",
    "TableConfig",
    "Channel",
    "DEFAULT_CHANNELS",
    "FORMATS",
    "load_config",
    "find_config",
]

FORMATS = ("csv", "parquet", "duckdb")
KINDS = ("online", "offline")
ROLES = ("sales", "communication", "both")

# The default channel vocabulary (docs/contract.md, "Channels").
DEFAULT_CHANNELS: dict[str, tuple[str, str]] = {
    "web": ("online", "sales"),
    "app": ("online", "sales"),
    "marketplace": ("online", "sales"),
    "store": ("offline", "sales"),
    "whatsapp": ("online", "both"),
    "call_center": ("offline", "both"),
    "live_chat": ("online", "communication"),
    "email": ("online", "communication"),
    "social_ad": ("online", "communication"),
    "search": ("online", "communication"),
    "direct": ("online", "communication"),
}

_TOP_KEYS = (
    "data",
    "timezone",
    "currency",
    "data_end",
    "allow_mixed_offsets",
    "channels",
    "params",
    "mode",
    "store",
    "privacy",
    "identity",
)
_DATA_KEYS = ("format", "root", "database", "tables")
# Per-table keys. ``format`` lets one CSV table sit beside Parquet ones;
# ``sep``/``encoding`` are passed to the CSV reader (Excel exports often use ';').
_TABLE_KEYS = ("path", "columns", "format", "sep", "encoding")
# experiments only: per-unit outcome columns (name -> your column) and the control arm's name
_EXPERIMENT_KEYS = ("outcomes", "control")
_STORE_KEYS = ("path",)
_PRIVACY_KEYS = ("consent_default",)
#: where the prepared store goes unless ``store.path`` says otherwise (relative to the config)
DEFAULT_STORE = "data/store/omni_store.duckdb"


class ConfigError(Exception):
    """``omni.yaml`` is missing or wrong; the message names the key to fix."""


@dataclass(frozen=True)
class Channel:
    """One channel of the vocabulary: ``kind`` online|offline, ``role`` sales|communication|both."""

    name: str
    kind: str
    role: str

    @property
    def sells(self) -> bool:
        return self.role in ("sales", "both")

    @property
    def communicates(self) -> bool:
        return self.role in ("communication", "both")


@dataclass(frozen=True)
class TableConfig:
    """Where one contract table comes from and how its columns are named there.

    ``columns`` maps contract name -> the user's column name (only the renamed ones).
    """

    name: str
    path: str
    columns: dict[str, str] = field(default_factory=dict)
    format: str | None = None  # per-table override of data.format (csv|parquet)
    sep: str = ","
    encoding: str = "utf-8"
    outcomes: dict[str, str] = field(default_factory=dict)  # experiments: outcome name -> your column
    control: str | None = None  # experiments: the control variant's name


@dataclass
class Config:
    """The parsed ``omni.yaml``. Paths are absolute; ``data_end`` is tz-aware or None."""

    format: str = "parquet"
    root: Path = Path(".")
    database: Path | None = None
    tables: dict[str, TableConfig] = field(default_factory=dict)
    timezone: str = "Asia/Jakarta"
    currency: str = "IDR"
    data_end: pd.Timestamp | None = None
    allow_mixed_offsets: bool = False
    channels: dict[str, Channel] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None  # the config file itself (None when built from a dict)
    notes: list[str] = field(default_factory=list)  # non-fatal remarks for the user
    extra: dict[str, Any] = field(default_factory=dict)  # unknown top-level keys, kept
    mode: str | None = None  # "sample" | "production"; None = decided from the data (omni_lib.privacy)
    store_path: Path | None = None  # the prepared store (DuckDB file); default DEFAULT_STORE
    consent_default: bool | None = None  # consent of customers whose data records none
    found_by: str = ""  # how the config file was found (explicit path, $OMNI_CONFIG, ...)
    # identity resolution settings, as IdentityResolver keyword arguments:
    # {"one_record_per_source": bool | {source: bool}, "labels": Path | None}
    identity: dict[str, Any] = field(default_factory=lambda: {"one_record_per_source": False, "labels": None})

    # -- convenience -------------------------------------------------------------
    @property
    def channel_names(self) -> list[str]:
        return list(self.channels)

    @property
    def sales_channels(self) -> list[str]:
        return [c.name for c in self.channels.values() if c.sells]

    @property
    def communication_channels(self) -> list[str]:
        return [c.name for c in self.channels.values() if c.communicates]

    @property
    def online_channels(self) -> list[str]:
        return [c.name for c in self.channels.values() if c.kind == "online"]

    @property
    def offline_channels(self) -> list[str]:
        return [c.name for c in self.channels.values() if c.kind == "offline"]

    def table_format(self, table: str) -> str:
        """The reader for ``table``: its own ``format`` if set, else ``data.format``."""
        t = self.tables[table]
        return t.format or self.format

    def source(self, table: str) -> Path | str:
        """The file (csv/parquet) or the table name inside the database (duckdb)."""
        t = self.tables[table]
        if self.table_format(table) == "duckdb":
            return t.path
        p = Path(t.path).expanduser()
        return p if p.is_absolute() else self.root / p

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None, base_dir: str | Path = ".",
                  path: str | Path | None = None) -> "Config":
        """Build a Config from an already-parsed mapping (what ``omni.yaml`` holds).

        Relative paths resolve against ``base_dir`` (the config file's folder).
        """
        return _parse(raw or {}, Path(base_dir).resolve(), Path(path) if path else None)


# -- loading -----------------------------------------------------------------------

def project_config() -> Path:
    """The ``omni.yaml`` of the project this package was installed from (a checkout)."""
    return Path(__file__).resolve().parents[1] / "omni.yaml"


def find_config(path: str | Path | None = None) -> Path:
    """The config file to use, by one rule for every command and notebook.

    ``path`` (an explicit argument), else ``$OMNI_CONFIG``, else ``./omni.yaml``, else
    the project's own ``omni.yaml`` (so a notebook opened in JupyterLab from
    ``notebooks/`` finds it). :func:`config_source` says which one was used.
    """
    return _find(path)[0]


def config_source(path: str | Path | None = None) -> str:
    """One line saying which config file the rule of :func:`find_config` picks, and why."""
    p, why = _find(path)
    return f"config {p} ({why})"


def _find(path) -> tuple[Path, str]:
    if path is not None and str(path) != "":
        source = "given explicitly"
    else:
        path = os.environ.get("OMNI_CONFIG") or None
        source = "from $OMNI_CONFIG"
    if path is not None:
        p = Path(path).expanduser()
        if p.is_dir():
            p = p / "omni.yaml"
        if not p.is_file():
            raise ConfigError(f"config file not found: {p} ({source})")
        return p.resolve(), source
    here = Path.cwd() / "omni.yaml"
    if here.is_file():
        return here.resolve(), "./omni.yaml in the working folder"
    proj = project_config()
    if proj.is_file():
        return proj, "the project's omni.yaml (no --config, no $OMNI_CONFIG, none in the working folder)"
    raise ConfigError(
        f"no omni.yaml in {Path.cwd()}; pass --config /path/to/omni.yaml or set OMNI_CONFIG=/path/to/omni.yaml"
    )


class _Loader(yaml.SafeLoader):
    """YAML's safe loader, except that a date that is not a date (``2026-02-30``) stays
    text, so the key it belongs to can say so (PyYAML would raise a bare ValueError)."""


def _timestamp_or_text(loader, node):
    try:
        return yaml.SafeLoader.construct_yaml_timestamp(loader, node)
    except ValueError:
        return loader.construct_scalar(node)


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_or_text)


def load_config(path: str | Path | None = None) -> Config:
    """Read and check ``omni.yaml`` (default: ``$OMNI_CONFIG`` or ``./omni.yaml``)."""
    p = find_config(path)
    try:
        raw = yaml.load(p.read_text(encoding="utf-8"), Loader=_Loader)
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read: {e}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{p}: the top level must be a mapping of keys (data:, timezone:, ...)")
    cfg = _parse(raw, p.parent.resolve(), p)
    cfg.found_by = _find(path)[1]
    return cfg


# -- parsing (every error names its key) -------------------------------------------

def _suggest(word: str, options) -> str:
    close = difflib.get_close_matches(str(word), list(options), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _check_keys(mapping: Mapping, allowed, where: str) -> None:
    for k in mapping:
        if k not in allowed:
            raise ConfigError(
                f"{where}: unknown key '{k}'{_suggest(k, allowed)}; allowed: {', '.join(allowed)}"
            )


def _mapping(value, where: str) -> Mapping:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping (key: value lines), got {type(value).__name__}")
    return value


def _resolve(base: Path, value, where: str) -> Path:
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise ConfigError(f"{where}: expected a path, got {value!r}")
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p)


def _parse(raw: Mapping[str, Any], base: Path, path: Path | None) -> Config:
    notes: list[str] = []
    extra: dict[str, Any] = {}
    for k in raw:
        if k in _TOP_KEYS:
            continue
        # A near-miss of a known key is a typo that would silently fall back to a
        # default (e.g. 'timezon'); anything else is kept for other tools in `extra`.
        hint = _suggest(k, _TOP_KEYS)
        if hint:
            raise ConfigError(f"unknown key '{k}'{hint}; allowed: {', '.join(_TOP_KEYS)}")
        extra[k] = raw[k]
        notes.append(f"key '{k}' is not used by the data loader (kept in config.extra)")

    # timezone / currency
    tz = raw.get("timezone", "Asia/Jakarta") or "Asia/Jakarta"
    try:
        ZoneInfo(str(tz))
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"timezone: unknown timezone '{tz}' (use an IANA name such as Asia/Jakarta)") from None
    tz = str(tz)
    currency = str(raw.get("currency", "IDR") or "IDR")

    # data_end
    data_end = _parse_data_end(raw.get("data_end"), tz)
    if data_end is None:
        notes.append("data_end is not set: timestamps in the future are not checked "
                     "(set data_end in omni.yaml to the end of your export)")

    allow_mixed = raw.get("allow_mixed_offsets", False)
    if not isinstance(allow_mixed, bool):
        raise ConfigError(f"allow_mixed_offsets: expected true or false, got {allow_mixed!r}")

    channels = _parse_channels(raw.get("channels"))

    params = _mapping(raw.get("params"), "params")

    mode = raw.get("mode")
    if mode is not None and mode not in ("sample", "production"):
        raise ConfigError(f"mode: expected sample or production, got {mode!r} (sample = the bundled "
                          "generated data; production = real data, needs OMNI_PSEUDONYM_KEY)")

    store = _mapping(raw.get("store"), "store")
    _check_keys(store, _STORE_KEYS, "store")
    store_path = _resolve(base, store.get("path") or DEFAULT_STORE, "store.path")
    priv = _mapping(raw.get("privacy"), "privacy")
    _check_keys(priv, _PRIVACY_KEYS, "privacy")
    consent_default = priv.get("consent_default")
    if consent_default is not None and not isinstance(consent_default, bool):
        raise ConfigError(f"privacy.consent_default: expected true or false, got {consent_default!r}")
    identity = _parse_identity(raw.get("identity"), base)

    # data
    if "data" not in raw:
        raise ConfigError("data: missing; it says where your tables are (data.format, data.root, data.tables)")
    data = _mapping(raw["data"], "data")
    _check_keys(data, _DATA_KEYS, "data")
    fmt = str(data.get("format", "parquet")).lower()
    if fmt not in FORMATS:
        raise ConfigError(f"data.format: unknown format '{data.get('format')}'; use one of {', '.join(FORMATS)}")
    root = _resolve(base, data.get("root", "."), "data.root")
    database = None
    if fmt == "duckdb":
        if not data.get("database"):
            raise ConfigError("data.database: required for format duckdb (the .duckdb file)")
        database = _resolve(base, data["database"], "data.database")
    elif data.get("database"):
        database = _resolve(base, data["database"], "data.database")

    tables_raw = _mapping(data.get("tables"), "data.tables")
    tables: dict[str, TableConfig] = {}
    for name, spec in tables_raw.items():
        where = f"data.tables.{name}"
        if name not in TABLES:
            raise ConfigError(f"{where}: unknown table '{name}'{_suggest(name, TABLES)}; "
                              f"contract tables: {', '.join(TABLES)}")
        tables[name] = _parse_table(name, spec, where, fmt)
    for name in REQUIRED_TABLES:
        if name not in tables:
            raise ConfigError(f"data.tables.{name}: missing; the table '{name}' is required "
                              f"(only {', '.join(t for t in TABLES if t not in REQUIRED_TABLES)} may be left out)")
    for name in TABLES:
        if name not in tables:
            notes.append(f"table '{name}' is not configured: analyses that need it are skipped")

    return Config(format=fmt, root=root.resolve(), database=database.resolve() if database else None,
                  tables=tables, timezone=tz, currency=currency, data_end=data_end,
                  allow_mixed_offsets=allow_mixed, channels=channels, params=dict(params),
                  path=path, notes=notes, extra=extra, mode=mode, store_path=store_path.resolve(),
                  consent_default=consent_default, identity=identity)


def _parse_identity(raw, base: Path) -> dict[str, Any]:
    """``identity:``: ``one_record_per_source`` (true/false, or per source) and ``labels``."""
    spec = _mapping(raw, "identity")
    _check_keys(spec, ("one_record_per_source", "labels"), "identity")
    one = spec.get("one_record_per_source", False)
    if isinstance(one, Mapping):
        bad = {k: v for k, v in one.items() if not isinstance(v, bool)}
        if bad:
            raise ConfigError(f"identity.one_record_per_source: expected true or false per source, got {bad}")
        one = {str(k): v for k, v in one.items()}
    elif one is None:
        one = False
    elif not isinstance(one, bool):
        raise ConfigError("identity.one_record_per_source: expected true, false or a mapping "
                          f"source: true/false, got {one!r}")
    labels = spec.get("labels")
    return {"one_record_per_source": one,
            "labels": _resolve(base, labels, "identity.labels") if labels not in (None, "") else None}


def _parse_table(name: str, spec, where: str, fmt: str) -> TableConfig:
    if isinstance(spec, str):  # shorthand:  orders: orders.csv
        spec = {"path": spec}
    spec = _mapping(spec, where)
    _check_keys(spec, _TABLE_KEYS + (_EXPERIMENT_KEYS if name == "experiments" else ()), where)
    if not spec.get("path") or not isinstance(spec["path"], str):
        raise ConfigError(f"{where}.path: missing; give the file name (or the table name inside the duckdb database)")
    tfmt = spec.get("format")
    if tfmt is not None:
        tfmt = str(tfmt).lower()
        if tfmt not in FORMATS:
            raise ConfigError(f"{where}.format: unknown format '{spec['format']}'; use one of {', '.join(FORMATS)}")
        if (tfmt == "duckdb") != (fmt == "duckdb"):
            raise ConfigError(f"{where}.format: a per-table format can switch between csv and parquet only")
    known = CONTRACT[name].column_names
    cols = _mapping(spec.get("columns"), f"{where}.columns")
    mapping: dict[str, str] = {}
    for contract_col, user_col in cols.items():
        if contract_col not in known:
            hint = _suggest(contract_col, known)
            if user_col in known:  # written the wrong way round
                hint = (f" (the mapping goes contract_name: your_column, "
                        f"so write '{user_col}: {contract_col}')")
            raise ConfigError(f"{where}.columns: unknown contract column '{contract_col}'{hint}; "
                              f"columns of {name}: {', '.join(known)}")
        if not isinstance(user_col, str) or not user_col:
            raise ConfigError(f"{where}.columns.{contract_col}: expected your column's name, got {user_col!r}")
        mapping[str(contract_col)] = user_col
    dup = pd.Series(list(mapping.values()), dtype=object)
    dup = dup[dup.duplicated()].unique().tolist()
    if dup:
        raise ConfigError(f"{where}.columns: your column '{dup[0]}' is mapped to more than one contract column")
    outcomes: dict[str, str] = {}
    for out_name, user_col in _mapping(spec.get("outcomes"), f"{where}.outcomes").items():
        if not str(out_name).isidentifier():
            raise ConfigError(f"{where}.outcomes: the outcome name {out_name!r} must be a simple name "
                              "(letters, digits, _), e.g. converted: YourColumn")
        if not isinstance(user_col, str) or not user_col:
            raise ConfigError(f"{where}.outcomes.{out_name}: expected your column's name, got {user_col!r}")
        if str(out_name) in known:
            raise ConfigError(f"{where}.outcomes.{out_name}: '{out_name}' is a contract column of {name}; "
                              "give the outcome another name")
        outcomes[str(out_name)] = user_col
    control = spec.get("control")
    if control is not None and (not isinstance(control, (str, int)) or str(control) == ""):
        raise ConfigError(f"{where}.control: expected the control variant's name, got {control!r}")
    return TableConfig(name=name, path=spec["path"], columns=mapping, format=tfmt,
                       sep=str(spec.get("sep", ",")), encoding=str(spec.get("encoding", "utf-8")),
                       outcomes=outcomes, control=None if control is None else str(control))


def _parse_channels(raw) -> dict[str, Channel]:
    if raw is None:
        return {n: Channel(n, k, r) for n, (k, r) in DEFAULT_CHANNELS.items()}
    raw = _mapping(raw, "channels")
    if not raw:
        raise ConfigError("channels: empty; list each channel with its kind and role (or remove the key for the default)")
    out: dict[str, Channel] = {}
    for name, spec in raw.items():
        where = f"channels.{name}"
        spec = _mapping(spec, where)
        _check_keys(spec, ("kind", "role"), where)
        kind, role = spec.get("kind"), spec.get("role")
        if kind not in KINDS:
            raise ConfigError(f"{where}.kind: expected one of {', '.join(KINDS)}, got {kind!r}")
        if role not in ROLES:
            raise ConfigError(f"{where}.role: expected one of {', '.join(ROLES)}, got {role!r}")
        out[str(name)] = Channel(str(name), kind, role)
    return out


def _parse_data_end(value, tz: str) -> pd.Timestamp | None:
    if value is None or value == "":
        return None
    date_only = isinstance(value, _dt.date) and not isinstance(value, _dt.datetime)
    if isinstance(value, str):
        date_only = len(value.strip()) == 10
    hint = "write ISO 8601, year first, e.g. 2026-06-30 or '2026-06-30 23:59:59'"
    try:
        if isinstance(value, str):
            # ISO only: pandas would read "01.07.2026" month first, as 7 January
            ts = pd.to_datetime(value.strip(), format="ISO8601")
        else:
            ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        import re

        shaped = isinstance(value, str) and re.match(r"\s*\d{4}-\d{1,2}-\d{1,2}", value)
        why = "no such date or time" if shaped else "not ISO 8601 (a day-first or month-first date is ambiguous)"
        raise ConfigError(f"data_end: cannot read {value!r} as a date: {why}; {hint}") from None
    if ts is pd.NaT:
        raise ConfigError(f"data_end: cannot read {value!r} as a timestamp")
    if date_only:  # a bare date means "up to the end of that day"
        ts = ts + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)
    return ts.tz_localize(tz) if ts.tz is None else ts.tz_convert(tz)
