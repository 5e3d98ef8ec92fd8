"""Identity resolution: one customer across channels.

Each channel system keeps its own customer records (the ``identities`` table: a web
account, an app login, a marketplace buyer, a store loyalty card, a WhatsApp number).
This module links them into one unified customer per person:

1. **Normalise** the keys (:func:`normalize_email`, :func:`normalize_phone` to E.164,
   :func:`normalize_name`, :func:`normalize_loyalty`). Values that cannot be read
   (``budi@@mail``, ``0812-12``) are counted as malformed and not used as keys.
2. **Deterministic links** on keys that name one person: the same loyalty card, and
   the same phone number (E.164) unless several people use it: a number whose records
   carry given names that cannot be one person's (``siti`` and ``budi``, households and
   families) links only records with the same given name (:func:`_household_phones`);
   its other records go to the probabilistic step. (An identical e-mail address is strong evidence
   but not proof here: first-name addresses such as ``amelia@gmail.com`` are shared by
   different people, so e-mail goes to the probabilistic step, where a common address
   counts for less than a rare one.)
3. **Probabilistic matching** of the rest with Splink (DuckDB backend), trained
   without labels: the share of matching pairs from the deterministic rules, the
   ``u`` probabilities from random pairs (less the matching pairs that random
   sampling also draws; for identical keys counted among records of one source,
   which are seldom one person: an upper bound, so a key's weight errs low), the
   ``m`` probabilities by expectation-maximisation
   (those of the pairs of sources instead from the pairs that share a phone, weighted
   for how often each source records one: :func:`_source_pair_m`); term-frequency
   adjustments for e-mail, name and city (each value counted once per deterministic
   group, the pair's own two groups left out: :func:`_tf_table`). Comparisons: e-mail
   (also the same user name with another number; gmail dots and ``+tags`` ignored),
   phone (the same number with given names of two people is a level of its own, as is
   a number several people use), loyalty card, name (given names of two people; one
   name the other with an initial, ``b santoso`` / ``budi s``), city, the pair of
   sources (and the same source, ``m`` learned) and when each record was created.
   Blocking: each key, a full name with its city, and a rare full name on its own. A record is compared with what its deterministic group knows: a field it
   lacks (a store card without a city, a WhatsApp number without a name) is taken
   from the other records that share its phone or card.
4. **Connected components** over deterministic and probabilistic links: one
   ``customer_id`` per person.

Bad input is counted and reported, never dropped silently: records with no usable
key (no readable e-mail, phone or loyalty id) stay single-record customers, flagged;
malformed e-mails and phones are counted per column; rows sharing a ``record_id``
are the same source record and are linked to each other (and counted).

Quality against a planted truth (the sample retailer's ``truth/identity_links``):
:func:`pairwise_quality` (pairwise precision, recall, F1, cluster purity). Without a
truth: :meth:`IdentityResolver.estimated_quality` (``quality_``), the precision, recall
and F1 the model expects from its own match probabilities. Clerical review:
:meth:`IdentityResolver.review_pairs` (masked), labels back through ``labels=``.
Varied test data with known people: :mod:`omni_lib.identity_scenarios`.

Privacy: the resolved table holds no raw e-mail, phone or name: right after linking
the keys are replaced by keyed hashes (:func:`omni_lib.privacy.pseudonymise`).
"""
from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

__all__ = [
    "IdentityInputError",
    "IdentityResolver",
    "read_labels",
    "normalize_email",
    "normalize_phone",
    "normalize_name",
    "normalize_loyalty",
    "prepare",
    "pairwise_quality",
    "channel_overlap",
    "customer_channels",
    "omnichannel_comparison",
    "consent_by_unified_customer",
]

log = logging.getLogger(__name__)

KEY_FIELDS = ("email", "phone", "loyalty_id")


class IdentityInputError(ValueError):
    """The identities table cannot be resolved (missing columns, no rows, ...)."""


# ---------------------------------------------------------------------------------
# normalisation: SQL expressions run by DuckDB over whole columns (vectorised,
# multi-threaded; pandas' string methods fall back to Python per value for several of
# these steps, 20 s on a million records instead of 2)
# ---------------------------------------------------------------------------------

# RFC 5322 is far looser; this is the practical shape of a deliverable address:
# local part of letters, digits and . _ % + - (no leading/trailing/double dot),
# a domain of labels and a top-level domain of 2+ letters.
_EMAIL_RE = (r"[a-z0-9_%+\-]+(?:\.[a-z0-9_%+\-]+)*"
             r"@[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?)*\.[a-z]{2,}")

#: titles and honorifics dropped from the front of a name (Indonesian and English)
TITLES = ("bapak", "bpk", "pak", "sdr", "sdri", "saudara", "saudari", "ibu", "bu", "nyonya",
          "ny", "nona", "nn", "tuan", "tn", "mr", "mrs", "ms", "miss", "dr", "drs", "ir", "prof",
          "h", "hj")
_TITLE_RE = r"^(?:(?:" + "|".join(TITLES) + r")\.?\s+)+"


def _q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _email_sql(col: str) -> tuple[str, str]:
    e = f"nullif(lower(trim({col})), '')"
    ok = f"regexp_full_match({e}, {_q(_EMAIL_RE)})"
    return f"CASE WHEN {ok} THEN {e} END", f"coalesce({e} IS NOT NULL AND NOT {ok}, false)"


def _phone_sql(col: str, cc: str) -> tuple[str, str]:
    c = f"regexp_replace(nullif(trim({col}), ''), '[\\s\\-\\.\\(\\)/]', '', 'g')"
    d = f"ltrim({c}, '+')"
    domestic = f"starts_with({d}, {_q(cc)})"
    nsn0 = f"(CASE WHEN {domestic} THEN substr({d}, {len(cc) + 1}) ELSE {d} END)"
    nsn = f"(CASE WHEN starts_with({nsn0}, '0') THEN substr({nsn0}, 2) ELSE {nsn0} END)"
    foreign = f"(starts_with({c}, '+') AND NOT {domestic})"
    digits = f"regexp_full_match({c}, '\\+?[0-9]+')"
    ok_dom = f"(NOT {foreign} AND {digits} AND regexp_full_match({nsn}, '[1-9][0-9]{{7,11}}'))"
    ok_for = f"({foreign} AND {digits} AND regexp_full_match({d}, '[1-9][0-9]{{7,14}}'))"
    value = f"CASE WHEN {ok_dom} THEN '+' || {_q(cc)} || {nsn} WHEN {ok_for} THEN '+' || {d} END"
    bad = f"coalesce({c} IS NOT NULL AND NOT ({ok_dom} OR {ok_for}), false)"
    return value, bad


def _name_sql(col: str) -> str:
    a = f"trim(regexp_replace(regexp_replace(lower(strip_accents({col})), '[^a-z\\s\\.'']', ' ', 'g'), '\\s+', ' ', 'g'))"
    stripped = f"trim(regexp_replace(regexp_replace({a}, {_q(_TITLE_RE)}, ''), '[\\.'']', '', 'g'))"
    whole = f"trim(regexp_replace({a}, '[\\.'']', '', 'g'))"
    return f"nullif(CASE WHEN length({stripped}) > 0 THEN {stripped} ELSE {whole} END, '')"


def _loyalty_sql(col: str) -> str:
    return f"nullif(regexp_replace(upper({col}), '[\\s\\-\\.]', '', 'g'), '')"


def _city_sql(col: str) -> str:
    t = f"regexp_replace(lower(strip_accents({col})), '[^a-z\\s]', ' ', 'g')"
    t = f"regexp_replace(trim(regexp_replace({t}, '\\s+', ' ', 'g')), '^(kota|kabupaten|kab) ', '')"
    return f"nullif(trim({t}), '')"


def _run_sql(frame: pd.DataFrame, select: str) -> pd.DataFrame:
    """``SELECT <select> FROM frame`` in DuckDB; rows keep their order."""
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("SET preserve_insertion_order = true")
        _quiet(con)
        con.register("t", frame.assign(_row=np.arange(len(frame), dtype=np.int64)))
        out = con.execute(f"SELECT {select} FROM t ORDER BY _row").df()
    finally:
        con.close()
    out.index = frame.index
    return out


def _quiet(con) -> None:
    """No DuckDB progress bar on the terminal (a million records take seconds per query).
    Under Jupyter DuckDB refuses the setting without ipywidgets; it draws none there anyway."""
    import duckdb

    try:
        con.execute("SET enable_progress_bar = false")
    except duckdb.Error:
        pass


def _as_str(s: pd.Series) -> pd.Series:
    return s.astype("str") if s.dtype != "str" else s


def _text(s: pd.Series) -> pd.DataFrame:
    return pd.DataFrame({"v": _as_str(s).to_numpy()}, index=s.index)


def normalize_email(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Trim and lower-case e-mail addresses.

    Returns ``(normalised, malformed)``: addresses that do not look like an address
    after trimming (``budi@``, ``budi at gmail``, ``a..b@x.com``) are missing in
    ``normalised`` and True in ``malformed``; empty values are missing, not malformed.
    """
    v, bad = _email_sql("v")
    out = _run_sql(_text(s), f"{v} AS e, {bad} AS bad")
    return _as_str(out["e"]), out["bad"].astype(bool)


def normalize_phone(s: pd.Series, country_code: str = "62") -> tuple[pd.Series, pd.Series]:
    """Phone numbers to E.164 (``+62812...``); Indonesian by default.

    Accepts ``0812-3456-789``, ``812 3456 789``, ``62812...``, ``+62 812-...``, dots
    and brackets. A number written with another country code (``+65 ...``) keeps it.
    The national number must have 8 to 12 digits and not start with 0 (Indonesian
    mobiles are ``8xx`` + 7 to 9 digits; landlines ``21...``). Returns
    ``(e164, malformed)``; letters, too few or too many digits are malformed.
    """
    if not str(country_code).isdigit():
        raise IdentityInputError(f"country_code must be digits, got {country_code!r}")
    v, bad = _phone_sql("v", str(country_code))
    out = _run_sql(_text(s), f"{v} AS p, {bad} AS bad")
    return _as_str(out["p"]), out["bad"].astype(bool)


def normalize_name(s: pd.Series) -> pd.Series:
    """Lower case, no accents or punctuation, single spaces, leading titles removed.

    ``"  Bpk. ADI  Setiawan "`` -> ``"adi setiawan"``; a title alone stays (``"Ibu"``
    is someone's whole name on a WhatsApp record more often than not).
    """
    return _as_str(_run_sql(_text(s), f"{_name_sql('v')} AS n")["n"])


def normalize_loyalty(s: pd.Series) -> pd.Series:
    """Loyalty card numbers: upper case, no spaces, dashes or dots."""
    return _as_str(_run_sql(_text(s), f"{_loyalty_sql('v')} AS l")["l"])


# ---------------------------------------------------------------------------------
# preparation and bad-input accounting
# ---------------------------------------------------------------------------------

@dataclass
class Prepared:
    """Normalised records (one row per input row, ``row`` = position) and bad-input counts."""

    records: pd.DataFrame
    issues: pd.DataFrame          # one row per record with a problem: record_id, source, problem
    counts: dict = field(default_factory=dict)


def prepare(identities: pd.DataFrame) -> Prepared:
    """Normalise the identities table and account for bad input.

    Needs ``record_id`` and ``source``; ``email``, ``phone``, ``full_name``, ``city``
    and ``loyalty_id`` are used when present. Raises :class:`IdentityInputError`
    when a required column is missing or the table is empty.
    """
    if identities is None or len(identities) == 0:
        raise IdentityInputError("identities: the table is empty or not loaded; nothing to resolve")
    missing = [c for c in ("record_id", "source") if c not in identities]
    if missing:
        raise IdentityInputError(f"identities: missing column(s) {missing} (see docs/contract.md)")
    n = len(identities)
    df = identities.reset_index(drop=True)

    def col(name):
        return df[name] if name in df else pd.Series(None, index=df.index, dtype="str")

    rid = _as_str(df["record_id"]).str.strip()
    if rid.isna().any():
        raise IdentityInputError(f"identities.record_id: {int(rid.isna().sum())} rows have no record_id")
    src = pd.DataFrame({c: _as_str(col(c)).to_numpy() for c in ("email", "phone", "loyalty_id", "full_name", "city")})
    e, bad_e = _email_sql("email")
    p, bad_p = _phone_sql("phone", "62")
    # a '+tag' ('budi+promo@gmail.com') is the same mailbox: dropped before any comparison
    inner = (f"regexp_replace({e}, '\\+[^@]*@', '@') AS email, {bad_e} AS bad_email, {p} AS phone, {bad_p} AS bad_phone, "
             f"{_loyalty_sql('loyalty_id')} AS loyalty, {_name_sql('full_name')} AS name, "
             f"{_city_sql('city')} AS city")
    outer = ("email, regexp_extract(email, '^([^@]+)@', 1) AS email_user, "
             # gmail ignores dots in the user name: 'budi.santoso7@gmail.com' = 'budisantoso7@...'
             "CASE WHEN ends_with(email, '@gmail.com') OR ends_with(email, '@googlemail.com') "
             "THEN replace(regexp_extract(email, '^([^@]+)@', 1), '.', '') || '@gmail.com' END AS email_nodots, "
             "regexp_extract(email, '@(.+)$', 1) AS email_domain, "
             # the letters of the user name: 'adi.setiawan5698' and 'adi_setiawan' -> 'adisetiawan'
             "nullif(regexp_replace(regexp_extract(email, '^([^@]+)@', 1), '[^a-z]', '', 'g'), '') AS email_stem, "
             # its digits ('5698'; '' for a name-only address such as amelia@gmail.com)
             "regexp_replace(regexp_extract(email, '^([^@]+)@', 1), '[^0-9]', '', 'g') AS email_digits, "
             # the user name without its digits, dots and underscores kept: 'adi.setiawan5698'
             # and 'adi.setiawan5715' -> 'adi.setiawan' (one person's second address), while
             # 'adisetiawan12' -> 'adisetiawan' (another way of writing, often another person)
             "nullif(regexp_replace(regexp_extract(email, '^([^@]+)@', 1), '[0-9]', '', 'g'), '') AS email_shape, "
             "phone, loyalty, name, split_part(name, ' ', 1) AS first_name, "
             # the given name for telling people apart on one phone: a title alone ('ibu') is none
             # (a regular expression, not NOT IN (...): DuckDB plans a long IN list as a join)
             f"CASE WHEN NOT regexp_full_match(split_part(name, ' ', 1), {_q('(?:' + '|'.join(TITLES) + ')')}) "
             "THEN split_part(name, ' ', 1) END AS given, "
             "CASE WHEN contains(name, ' ') THEN regexp_extract(name, ' ([^ ]+)$', 1) END AS last_name, "
             "city, bad_email, bad_phone")
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("SET preserve_insertion_order = true")
        _quiet(con)
        # rows in input order whatever the plan (a join in the plan may reorder them)
        con.register("t", src.assign(_row=np.arange(n, dtype=np.int64)))
        norm = con.execute(f"SELECT {outer} FROM (SELECT _row, {inner} FROM t) ORDER BY _row").df()
    finally:
        con.close()
    bad_email = norm.pop("bad_email").astype(bool)
    bad_phone = norm.pop("bad_phone").astype(bool)
    for c in norm.columns:
        norm[c] = _as_str(norm[c])
    rec = pd.concat([pd.DataFrame({"row": np.arange(n, dtype=np.int64), "record_id": rid.astype("str").to_numpy(),
                                   "source": _as_str(df["source"]).to_numpy()}), norm], axis=1)
    if "created_at" in df:
        rec["created_at"] = df["created_at"]
    has_key = rec[["email", "phone", "loyalty"]].notna().any(axis=1).to_numpy()
    rec["has_key"] = has_key
    dup = rec["record_id"].duplicated(keep=False).to_numpy()
    rec["duplicate_record_id"] = dup

    problems = []
    for mask, what in ((~has_key, "no usable key (no readable e-mail, phone or loyalty id)"),
                       (bad_email.to_numpy(), "malformed e-mail"),
                       (bad_phone.to_numpy(), "malformed phone"),
                       (dup, "duplicate record_id (rows linked as one record)")):
        if mask.any():
            problems.append(pd.DataFrame({"record_id": rec.loc[mask, "record_id"].to_numpy(),
                                          "source": rec.loc[mask, "source"].to_numpy(),
                                          "problem": what}))
    issues = (pd.concat(problems, ignore_index=True) if problems
              else pd.DataFrame({"record_id": pd.Series(dtype="str"), "source": pd.Series(dtype="str"),
                                 "problem": pd.Series(dtype="str")}))
    counts = {
        "records": n,
        "distinct_record_ids": int(rec["record_id"].nunique()),
        "duplicate_record_id_rows": int(dup.sum()),
        "duplicate_record_ids": int(rec.loc[dup, "record_id"].nunique()),
        "no_usable_key": int((~has_key).sum()),
        "malformed_email": int(bad_email.sum()),
        "malformed_phone": int(bad_phone.sum()),
        "with_email": int(rec["email"].notna().sum()),
        "with_phone": int(rec["phone"].notna().sum()),
        "with_loyalty_id": int(rec["loyalty"].notna().sum()),
        "with_name": int(rec["name"].notna().sum()),
    }
    return Prepared(rec, issues, counts)


# ---------------------------------------------------------------------------------
# shared phones: a number several people use (households, families)
# ---------------------------------------------------------------------------------

def _given_ok(a: str, b: str) -> str:
    """SQL: two given names can be one person's: equal, a typo apart (close by Jaro-Winkler,
    or one edit apart when both have four letters or more: ``lras`` / ``laras``), or one an initial
    or a short form of the other (``b`` / ``budi``, ``bud`` / ``budi``)."""
    return (f"({a} = {b} OR jaro_winkler_similarity({a}, {b}) >= 0.88 "
            f"OR (least(length({a}), length({b})) >= 4 AND damerau_levenshtein({a}, {b}) <= 1) "
            f"OR (length({a}) = 1 AND starts_with({b}, {a})) OR (length({b}) = 1 AND starts_with({a}, {b})) "
            f"OR (length({a}) >= 3 AND starts_with({b}, {a})) OR (length({b}) >= 3 AND starts_with({a}, {b})))")


def _household_phones(rec: pd.DataFrame) -> np.ndarray:
    """Per record: its phone number is used by several people (two given names on
    records with that number that cannot be one person's: ``siti`` and ``budi``).

    Households and families often share one number across their accounts; such a number
    names no one person, so it is no deterministic key. Counted on the distinct
    (number, given name) pairs, so a number on a thousand records costs little.
    """
    import duckdb

    sub = rec.loc[rec["phone"].notna() & rec["given"].notna(), ["phone", "given"]].drop_duplicates()
    if sub.empty:
        return np.zeros(len(rec), dtype=bool)
    con = duckdb.connect()
    try:
        _quiet(con)
        con.register("g", sub)
        shared = con.execute(f"SELECT DISTINCT a.phone FROM g a JOIN g b ON a.phone = b.phone AND a.given < b.given "
                             f"WHERE NOT {_given_ok('a.given', 'b.given')}").df()["phone"]
    finally:
        con.close()
    return rec["phone"].isin(set(shared)).to_numpy()


# ---------------------------------------------------------------------------------
# the resolver
# ---------------------------------------------------------------------------------

#: blocking rules (which pairs are compared at all): each names a key two records share
BLOCKING = (
    ("phone",), ("loyalty",), ("email",), ("email_user",), ("email_nodots",), ("name", "city"),
)
_PERSONAL = "email_personal_l"   # the address carries a number of its own (see prepare())
#: both records name a given name and the two cannot be one person's
_GIVEN_DISAGREE = f"given_l IS NOT NULL AND given_r IS NOT NULL AND NOT {_given_ok('given_l', 'given_r')}"
_PHONE_TWO_PEOPLE = "same phone, given names of two people"
#: one name is the other with its given or last name written as an initial
_INITIALS = ("(last_name_l = last_name_r AND least(length(first_name_l), length(first_name_r)) = 1 "
             "AND left(first_name_l, 1) = left(first_name_r, 1)) OR "
             "(first_name_l = first_name_r AND least(length(last_name_l), length(last_name_r)) = 1 "
             "AND left(last_name_l, 1) = left(last_name_r, 1))")
_PHONE_SHARED = "same phone, a number several people use"
#: both e-mail user names have the same letters and they spell the (same) name:
#: 'adi.setiawan5698' / 'adi.setiawan5715' / 'adisetiawan12' for "Adi Setiawan"
_SAME_NAME_IN_USER = ("email_stem_l = email_stem_r AND name_l = name_r "
                      "AND email_stem_l = replace(name_l, ' ', '')")
#: the fields a record takes from its deterministic group when it lacks them (see _enrich)
_FIELD_SETS = (
    ("email", "email_user", "email_shape", "email_stem", "email_digits", "email_domain", "email_personal"),
    ("phone", "household_phone"),
    ("name", "first_name", "last_name", "given", "rare_name"),
    ("city",),
)
#: lowest m of "another phone number": EM on a table where few people have a second
#: number can find almost none, which would make one such pair a veto
_PHONE_OTHER_M_FLOOR = 0.02
#: a full name carried by at most this many records is a blocking key on its own
_RARE_NAME_RECORDS = 20
#: days between the creation of two records (created_at), closest level first
_CREATED_DAYS = (7, 60, 365)
#: m of "two records from the same source" (fixed: rarely one person, see _splink_settings)
_SAME_SOURCE_M = 0.01
#: up to this many sources, each pair of them is a level of the source comparison
_MAX_SOURCE_PAIR_LEVELS = 8


def _splink_settings(tf_weight_name_only: float, with_created: bool = True, sources=()):
    """Splink comparisons. Why each level is there:

    * e-mail: an address with a number of its own (``adi.setiawan5698@``) names one
      person; a name-only address (``amelia@gmail.com``) is shared by namesakes, so it
      is a separate, weaker level with a term-frequency adjustment (common addresses
      count for less); a one-letter typo with the same digits; the same user name at
      another domain; the same user name with another number (a person's second
      address, or a namesake who writes addresses the same way: weaker, and adjusted
      for how common that user name is).
    * phone: the same number; another number counts against, with ``m`` learned but
      not below 2% (people keep a second number, often a SIM of another operator, so
      the operator prefix is no evidence either way and is not compared).
    * name: when both records carry the same name-only address the name adds nothing
      the address did not already say (the address *is* the name), so that case
      counts as neutral instead of being counted twice; the same holds whenever both
      user names have the same letters and those letters are the name
      (``adi.setiawan5698`` / ``adi.setiawan5715`` / ``adisetiawan12`` for "Adi Setiawan":
      counting the user name and the name both made namesakes look like one person,
      all the more on a large table, where two namesakes' ``adisetiawan12`` collide).
    * city and loyalty disagreement: fixed, not learned; the sample's people never
      move, real ones do, so a different city must not be close to proof of a
      non-match (``m`` = 5%); two cards per person happen (2%).
    * source: two records from the same channel system are rarely one person
      (``m`` = 1%, fixed), but it is evidence, not a rule. Each pair of different
      sources is a level of its own (up to ``_MAX_SOURCE_PAIR_LEVELS`` sources; beyond
      that one "different sources" level), ``m`` learned: which channels one person's
      records tend to come from (an app and a WhatsApp number often; a marketplace
      buyer and a store card seldom, on the sample retailer).
    * created: records one person opens in different channels tend to be opened in
      the same period (within a week, two months, a year); learned, so weak when they
      are not. Left out when the table has no ``created_at``.
    """
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    p = _PERSONAL
    email = cl.CustomComparison(output_column_name="email", comparison_levels=[
        cll.NullLevel("email"),
        cll.CustomLevel(f"(email_l = email_r OR email_nodots_l = email_nodots_r) AND {p}",
                        label_for_charts="same address with a personal number"),
        cll.CustomLevel(f"email_user_l = email_user_r AND {p}",
                        label_for_charts="same user name with a personal number, other domain"),
        cll.CustomLevel("email_nodots_l = email_nodots_r AND NOT email_l = email_r",
                        label_for_charts="same gmail address apart from dots"),
        cll.CustomLevel("email_l = email_r", label_for_charts="same name-only address").configure(
            tf_adjustment_column="email", tf_adjustment_weight=tf_weight_name_only),
        cll.CustomLevel("email_user_l = email_user_r", label_for_charts="same name-only user name, other domain"
                        ).configure(tf_adjustment_column="email_user", tf_adjustment_weight=tf_weight_name_only),
        cll.And(cll.DamerauLevenshteinLevel("email", 1),
                cll.CustomLevel("email_digits_l = email_digits_r")
                ).configure(label_for_charts="one-letter typo, same digits"),
        # the levels above catch the same address or user name, so this one is the
        # same user name apart from its number (or one side without a number)
        cll.ExactMatchLevel("email_shape", term_frequency_adjustments=True).configure(
            label_for_charts="same user name, another number"),
        cll.ElseLevel(),
    ])
    phone = cl.CustomComparison(output_column_name="phone", comparison_levels=[
        cll.NullLevel("phone"),
        cll.CustomLevel(f"phone_l = phone_r AND {_GIVEN_DISAGREE}", label_for_charts=_PHONE_TWO_PEOPLE),
        cll.CustomLevel("phone_l = phone_r AND household_phone_l", label_for_charts=_PHONE_SHARED),
        cll.ExactMatchLevel("phone"), cll.ElseLevel()])
    loyalty = cl.CustomComparison(output_column_name="loyalty", comparison_levels=[
        cll.NullLevel("loyalty"), cll.ExactMatchLevel("loyalty"),
        cll.ElseLevel().configure(m_probability=0.02, fix_m_probability=True)])
    name = cl.CustomComparison(output_column_name="name", comparison_levels=[
        cll.NullLevel("name"),
        cll.CustomLevel(f"email_user_l = email_user_r AND NOT {p}",
                        label_for_charts="implied by a shared name-only address").configure(is_null_level=True),
        cll.CustomLevel(_SAME_NAME_IN_USER,
                        label_for_charts="implied by the e-mail user name").configure(
            is_null_level=True),
        cll.ExactMatchLevel("name", term_frequency_adjustments=True),
        cll.CustomLevel(_GIVEN_DISAGREE, label_for_charts="given names of two people"),
        cll.JaroWinklerLevel("name", 0.92),
        cll.CustomLevel(_INITIALS, label_for_charts="the same but for an initial ('b santoso', 'budi s')"),
        cll.CustomLevel("(last_name_l IS NULL OR last_name_r IS NULL) AND first_name_l = first_name_r",
                        label_for_charts="same first name, one has no last name"),
        cll.JaroWinklerLevel("name", 0.8),
        cll.ElseLevel(),
    ])
    city = cl.CustomComparison(output_column_name="city", comparison_levels=[
        cll.NullLevel("city"), cll.ExactMatchLevel("city", term_frequency_adjustments=True),
        cll.ElseLevel().configure(m_probability=0.05, fix_m_probability=True)])
    pair_levels = []
    srcs = sorted(set(sources))
    if len(srcs) <= _MAX_SOURCE_PAIR_LEVELS:
        for i, a in enumerate(srcs):
            for b in srcs[i + 1:]:
                pair_levels.append(cll.CustomLevel(
                    f"least(source_l, source_r) = {_q(a)} AND greatest(source_l, source_r) = {_q(b)}",
                    label_for_charts=f"sources {a} and {b}"))
    source = cl.CustomComparison(output_column_name="source", comparison_levels=[
        cll.ExactMatchLevel("source").configure(m_probability=_SAME_SOURCE_M, fix_m_probability=True),
        *pair_levels, cll.ElseLevel()])
    comparisons = [email, phone, loyalty, name, city, source]
    if with_created:
        comparisons.append(cl.CustomComparison(output_column_name="created", comparison_levels=[
            cll.NullLevel("created_days"),
            *[cll.CustomLevel(f"abs(created_days_l - created_days_r) <= {d}",
                              label_for_charts=f"created within {d} days of each other") for d in _CREATED_DAYS],
            cll.ElseLevel()]))
    rules = [block_on(*cols) for cols in BLOCKING[:-1]]
    # name + city only for full names: single names ("melati") in one city are too many
    # pairs on a large table and too little evidence to act on
    rules.append("l.name = r.name AND l.city = r.city AND l.last_name IS NOT NULL")
    # a full name few records carry, whatever the city (often missing): bounded cost,
    # at most _RARE_NAME_RECORDS^2 / 2 pairs per name
    rules.append(block_on("rare_name"))
    # the same personal number at the same provider: catches typos in the letters
    rules.append("l.email_digits = r.email_digits AND l.email_domain = r.email_domain "
                 "AND length(l.email_digits) >= 3")
    return SettingsCreator(
        link_type="dedupe_only",
        comparisons=comparisons,
        blocking_rules_to_generate_predictions=rules,
        retain_matching_columns=False,
        retain_intermediate_calculation_columns=True,
        additional_columns_to_retain=[],
    )


def _rare_name(rec: pd.DataFrame) -> pd.Series:
    """A full name carried by at most ``_RARE_NAME_RECORDS`` records (else missing)."""
    full = rec["name"].where(rec["last_name"].notna())
    return full.where(full.map(full.value_counts()).le(_RARE_NAME_RECORDS)).astype("str")


def _blocking_coverage(rec: pd.DataFrame, det_lab: np.ndarray) -> float | None:
    """Share of one person's pairs of records that a blocking rule other than phone and
    card would compare: the pairs inside deterministic groups (known to be one person
    without labels) that share an e-mail, a user name, a full name and city, a rare full
    name or a personal number at one provider. The pairs that share no phone or card
    are found only through these rules, so about this share of them is ever scored
    (an estimate from the records as they are, before :func:`_enrich` completes them:
    it errs low, which makes the estimated recall err low). None without such pairs.
    """
    size = np.bincount(det_lab)[det_lab]
    r = rec.loc[size > 1, ["row"]].assign(g=det_lab[size > 1])
    if r.empty:
        return None
    pairs = r.merge(r, on="g")
    pairs = pairs[pairs["row_x"] < pairs["row_y"]]
    if len(pairs) > 2_000_000:
        pairs = pairs.sample(2_000_000, random_state=0)
    full = rec["name"].where(rec["last_name"].notna())
    digits = rec["email_digits"].where(rec["email_digits"].str.len() >= 3)
    keys = [rec["email"], rec["email_user"], rec["email_nodots"], _rare_name(rec),
            full + "|" + rec["city"], digits + "|" + rec["email_domain"]]
    hit = np.zeros(len(pairs), dtype=bool)
    x, y = pairs["row_x"].to_numpy(), pairs["row_y"].to_numpy()
    for k in keys:
        v = k.to_numpy(dtype=object)
        a, b = v[x], v[y]
        hit |= pd.notna(a) & (a == b)
    return float(hit.mean())


def _enrich(df: pd.DataFrame, lab: np.ndarray) -> pd.DataFrame:
    """Each record with the fields it lacks taken from its deterministic group.

    Records that share a phone number or a loyalty card are one person already; what
    one of them says (a city, a name, an e-mail) is also true of the others. So a store
    card without a city is compared with the rest of the data as if it carried the city
    of the WhatsApp number it shares its phone with: the evidence of the whole group,
    not of each record alone. Only missing values are filled, each field set
    (``_FIELD_SETS``: e-mail and its parts, phone, name and its parts,
    city) from one record (the group's first that has it), so the parts stay consistent.
    """
    out = df.copy()
    g = lab[out["unique_id"].to_numpy()]
    pos = np.arange(len(out))
    for cols in _FIELD_SETS:
        cols = [c for c in cols if c in out]      # the parts a caller's table has
        have = out[cols[0]].notna().to_numpy()
        donor = pd.Series(pos[have]).groupby(g[have]).min()          # group -> first row that has it
        d = pd.Series(g).map(donor).to_numpy()
        fill = ~have & ~np.isnan(d)
        if not fill.any():
            continue
        src = d[fill].astype(np.int64)
        for c in cols:
            vals = out[c].to_numpy().copy()
            vals[fill] = vals[src]
            out[c] = pd.Series(vals, index=out.index).astype(out[c].dtype)
    return out


def _same_source_u(df: pd.DataFrame) -> dict:
    """``u`` of the exact-key levels, from pairs of records in the same source.

    Random pairs include matches, and for a key that non-matches almost never share
    (one person's e-mail address, phone, card) those matches are nearly all that a
    random sample finds: the sampled ``u`` is the matches' share, not the non-matches'.
    Two records of one channel system are not one person (the premise of
    ``one_record_per_source``), so within a source every pair that shares the key is a
    non-match sharing it: counted exactly, by value (no sampling), over all sources.
    Returns ``{(comparison, level label): u}``; half a pair is added to each count so
    that a key nobody shares does not become proof.
    """
    def c2(n):
        n = np.asarray(n, dtype=np.float64)
        return float((n * (n - 1) / 2).sum())

    def pairs_sharing(cols, mask):
        sub = df.loc[mask, ["source", *cols]].dropna()
        return c2(sub.groupby(["source", *cols], sort=False).size()) if len(sub) else 0.0

    def pairs_with(col):
        return c2(df.loc[df[col].notna(), "source"].value_counts())

    out = {}
    personal = df["email_personal"].to_numpy(dtype=bool)
    e_all = pairs_with("email")
    if e_all:
        for lbl, cond in (("same address with a personal number", personal),
                          ("same name-only address", ~personal)):
            out[("email", lbl)] = (pairs_sharing(["email"], cond) + 0.5) / e_all
        for lbl, cond in (("same user name with a personal number, other domain", personal),
                          ("same name-only user name, other domain", ~personal)):
            k = pairs_sharing(["email_user"], cond) - pairs_sharing(["email"], cond)
            out[("email", lbl)] = (k + 0.5) / e_all
    d = pairs_with("loyalty")
    if d:
        out[("loyalty", "Exact match on loyalty")] = (pairs_sharing(["loyalty"], df["loyalty"].notna().to_numpy())
                                                      + 0.5) / d
    d = pairs_with("phone")
    if d:
        for lbl, k in zip(("Exact match on phone", _PHONE_SHARED, _PHONE_TWO_PEOPLE), _phone_pairs_by_level(df)):
            out[("phone", lbl)] = (k + 0.5) / d
    return out


def _phone_pairs_by_level(df: pd.DataFrame) -> tuple[float, float, float]:
    """Pairs of records of one source that share a phone, by the phone comparison's
    levels: (a number one person uses, one several people use, given names of two people)."""
    import duckdb

    sub = df.loc[df["phone"].notna(), ["source", "phone", "given", "household_phone"]]
    if sub.empty:
        return 0.0, 0.0, 0.0
    con = duckdb.connect()
    try:
        _quiet(con)
        con.register("t", sub.assign(i=np.arange(len(sub))))
        disagree = _GIVEN_DISAGREE.replace("given_l", "a.given").replace("given_r", "b.given")
        row = con.execute(f"""SELECT count(*) FILTER (WHERE {disagree}),
                                     count(*) FILTER (WHERE NOT coalesce({disagree}, false) AND a.household_phone),
                                     count(*) FILTER (WHERE NOT coalesce({disagree}, false) AND NOT a.household_phone)
                              FROM t a JOIN t b ON a.source = b.source AND a.phone = b.phone AND a.i < b.i""").fetchone()
    finally:
        con.close()
    return float(row[2]), float(row[1]), float(row[0])


def _source_pair_m(df: pd.DataFrame, same_source_m: float | None = None) -> dict:
    """``m`` of each pair of sources: which channels one person's records come from.

    Learned by EM on the pairs that share a loyalty card or a phone, these came out
    biased: only store, app and web records carry cards, so in that block the pairs
    with a store record are most of the matches (app + store 0.24, where one person's
    pairs of records are app + store about one time in ten). Instead the pairs that
    share a phone number, the deterministic key that every channel collects, are
    counted per source pair and weighted by the inverse of how often each of the two
    sources records a phone at all (inverse-probability weighting for a missing key):
    the share of one person's pairs of records that fall on each pair of sources,
    without labels. Pairs within one source are left out (two records of one channel
    system are not one person, ``same_source_m`` stands for them); half a pair is added
    to each count so that a pair of sources never seen together is unlikely, not
    impossible. Returns ``{level label: m}``; empty when some source records no
    phone at all (its pairs cannot be counted; EM's values stay).
    """
    k = df.loc[df["phone"].notna(), ["source", "phone"]]
    cov = df["phone"].notna().groupby(df["source"]).mean()
    srcs = sorted(cov.index)
    if len(srcs) < 2 or (cov <= 0).any():
        return {}
    by = k.groupby(["phone", "source"], sort=False).size().rename("n").reset_index()
    pairs = by.merge(by, on="phone")
    pairs = pairs[pairs["source_x"] < pairs["source_y"]]
    cnt = (pairs["n_x"] * pairs["n_y"]).groupby([pairs["source_x"], pairs["source_y"]]).sum()
    w = {}
    for i, a in enumerate(srcs):
        for b in srcs[i + 1:]:
            w[f"sources {a} and {b}"] = (float(cnt.get((a, b), 0)) + 0.5) / (cov[a] * cov[b])
    if same_source_m is not None:
        total = sum(w.values())
        return {lbl: (1 - same_source_m) * v / total for lbl, v in w.items()}
    # learned too: pairs of one source that share a phone and whose given names can be
    # one person's (a second account under the same number), weighted the same way
    import duckdb

    sub = df.loc[df["phone"].notna(), ["source", "phone", "given"]]
    con = duckdb.connect()
    try:
        _quiet(con)
        con.register("t", sub.assign(i=np.arange(len(sub))))
        dis = _GIVEN_DISAGREE.replace("given_l", "a.given").replace("given_r", "b.given")
        within = dict(con.execute(f"""SELECT a.source, count(*) FROM t a JOIN t b ON a.source = b.source
                                      AND a.phone = b.phone AND a.i < b.i WHERE NOT coalesce({dis}, false)
                                      GROUP BY a.source""").fetchall())
    finally:
        con.close()
    w_same = sum((float(within.get(a, 0)) + 0.5) / cov[a] ** 2 for a in srcs)
    total = sum(w.values()) + w_same
    out = {lbl: v / total for lbl, v in w.items()}
    out["Exact match on source"] = w_same / total
    return out


def _tf_table(df: pd.DataFrame, groups: np.ndarray, col: str) -> pd.DataFrame:
    """Term frequencies of ``col`` counted once per deterministic group, not per record.

    A term-frequency adjustment stands in for ``u``: how likely two *different people*
    share the value. Counted over records, a value one person left in three channels
    counts three times, so a rare name or address looked common exactly when its owner
    used many channels. Records that share a phone or card are one person already:
    counting each value once per such group is the count over people as far as it is
    known without labels.

    The adjustment is only ever used for a pair that shares the value, and the
    question is how many *other* people have it: so the pair's own two groups are
    left out (``n - 2``; Splink's own table counts them, which makes a name that
    only this pair carries look as common as one two strangers share). Half a group
    is added so that a value nobody else has is rare, not proof.
    """
    v = pd.DataFrame({"v": df[col].to_numpy(), "g": groups}).dropna().drop_duplicates()
    n = v["v"].value_counts()
    tf = (np.maximum(n.to_numpy() - 2, 0) + 0.5) / n.sum()
    return pd.DataFrame({col: n.index.astype("str"), f"tf_{col}": tf})


def _tf_columns(model: Mapping) -> list[str]:
    """The columns the model's levels adjust for term frequency."""
    cols = {lvl["tf_adjustment_column"] for c in model.get("comparisons", []) for lvl in c["comparison_levels"]
            if lvl.get("tf_adjustment_column")}
    return sorted(cols)


def _adjust_model(model: dict, max_pairs: float, exact_u: dict | None = None,
                  source_m: dict | None = None, given_disagree: float | None = None) -> dict:
    """Corrections to the trained model (returns a copy).

    * ``u`` without the matches: random sampling draws matching pairs too (about
      one in 30,000 on the sample retailer), and for a level that non-matches rarely
      reach those few matches are much of what it counts, so its weight came out too
      low. With the prior ``p``
      and the level's ``m``, ``u_sampled = (1 - p) u + p m``; solved for ``u``, and kept
      at or above half a sampled pair (``0.5 / max_pairs``, the resolution of the
      sample) or the sampled value when that is smaller.
    * the phone's "another number" level: ``m`` at least ``_PHONE_OTHER_M_FLOOR``.
    * ``exact_u``: the exact-key levels, whose ``u`` is counted directly
      (:func:`_same_source_u`), take that value instead; for them the correction
      above is too coarse (a handful of sampled pairs, nearly all matches).
    """
    import copy

    model = copy.deepcopy(model)
    lam = model.get("probability_two_random_records_match")
    for c in model.get("comparisons", []):
        for lvl in c["comparison_levels"]:
            m, u = lvl.get("m_probability"), lvl.get("u_probability")
            if lvl.get("is_null_level"):
                continue
            if c["output_column_name"] == "phone" and lvl.get("label_for_charts", "").startswith("All other"):
                if m is None or m < _PHONE_OTHER_M_FLOOR:
                    lvl["m_probability"] = m = _PHONE_OTHER_M_FLOOR
            key = (c["output_column_name"], lvl.get("label_for_charts", ""))
            if source_m and c["output_column_name"] == "source" and key[1] in source_m:
                lvl["m_probability"] = m = source_m[key[1]]
            if exact_u and key in exact_u:
                lvl["u_probability"] = exact_u[key]
            elif lam and m is not None and u is not None:
                lvl["u_probability"] = max((u - lam * m) / (1 - lam), min(u, 0.5 / max_pairs))
    if given_disagree is not None:
        # m of "same phone, given names of two people": EM never sees it (the phone block
        # does not train the phone, the card block holds almost no shared phones), so it is
        # the chance one person's two records carry given names that cannot be one person's
        # (a nickname: 'titi' for 'siti') times the chance they share the phone
        for c in model.get("comparisons", []):
            if c["output_column_name"] != "phone":
                continue
            lv = {lvl.get("label_for_charts", ""): lvl for lvl in c["comparison_levels"]}
            if _PHONE_TWO_PEOPLE in lv:
                same = [lv[k] for k in ("Exact match on phone", _PHONE_SHARED) if k in lv]
                m_same = sum(lvl.get("m_probability") or 0.0 for lvl in same)
                for lvl in same:
                    if lvl.get("m_probability"):
                        lvl["m_probability"] *= 1 - given_disagree
                lv[_PHONE_TWO_PEOPLE]["m_probability"] = max(m_same * given_disagree, 1e-6)
    return model


def _given_disagree_rate(df: pd.DataFrame) -> float | None:
    """Share of one person's pairs of records whose given names cannot be one person's.

    Counted on the pairs that share a loyalty card or an e-mail address with a number of
    its own (each names one person), without labels; half a pair added. None when there
    are no such pairs with both given names.
    """
    import duckdb

    sub = df.loc[df["given"].notna(), ["given", "loyalty", "email", "email_personal"]]
    con = duckdb.connect()
    try:
        _quiet(con)
        con.register("t", sub.assign(i=np.arange(len(sub))))
        dis = _GIVEN_DISAGREE.replace("given_l", "a.given").replace("given_r", "b.given")
        # two equi-joins (an OR in the join condition would compare every pair of records)
        n, k = con.execute(f"""WITH p AS (
                                   SELECT a.i AS x, b.i AS y, {dis} AS d FROM t a JOIN t b
                                   ON a.loyalty = b.loyalty AND a.i < b.i
                                   UNION
                                   SELECT a.i, b.i, {dis} FROM t a JOIN t b
                                   ON a.email = b.email AND a.email_personal AND a.i < b.i)
                               SELECT count(*), count(*) FILTER (WHERE d) FROM p""").fetchone()
    finally:
        con.close()
    return (k + 0.5) / (n + 1) if n else None


def _components(n: int, edges: np.ndarray) -> np.ndarray:
    """Connected components of an edge list (rows) -> component label per row."""
    if len(edges) == 0:
        return np.arange(n)
    g = coo_matrix((np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])), shape=(n, n))
    return connected_components(g, directed=False)[1]


def _key_edges(rec: pd.DataFrame, cols) -> np.ndarray:
    """Star edges row -> first row holding the same value, for each key column."""
    parts = []
    for c in cols:
        m = rec[c].notna().to_numpy()
        if not m.any():
            continue
        rows = rec["row"].to_numpy()[m]
        first = rec.loc[m].groupby(c, sort=False)["row"].transform("min").to_numpy()
        keep = rows != first
        parts.append(np.c_[rows[keep], first[keep]])
    return np.vstack(parts) if parts else np.empty((0, 2), dtype=np.int64)


@dataclass
class _Clustering:
    labels: np.ndarray
    rounds: int


class IdentityResolver:
    """Link identity records into unified customers (scikit-learn style: ``fit`` returns self).

    Parameters
    ----------
    threshold : float
        Match probability at or above which two groups of records are joined. Lower =
        more links. Default 0.5, chosen without labels: join when the model finds one
        person more likely than not. For probabilities that mean what they say, a pair
        raises the expected pairwise F1 exactly when its probability exceeds F1 / 2,
        so the best cut sits just under 0.5 whenever linking works well; the F1 the
        model expects from its own probabilities (the sum of the probabilities of the
        pairs it joins, against the sum over all scored pairs) peaks at 0.496 on the
        sample retailer.
    one_record_per_source : bool or mapping source -> bool
        Treat a channel system as holding at most one record per person (a loyalty
        scheme with one card per person): two groups that both hold a record of such a
        source are never joined. Default False: a second account in one system (a web
        account under an older e-mail) may join its owner's records, but only against
        the evidence that two records of one system are seldom one person (the source
        comparison's "same source" weight, whose ``m`` is learned from records of one
        system sharing a phone, counts once per system the two groups both hold). A
        mapping sets it per source (unlisted sources: False). ``omni.yaml``:
        ``identity.one_record_per_source``.
    labels : DataFrame, path or None
        Reviewed pairs (``record_id_l``, ``record_id_r``, ``label`` = match / no match;
        the file :meth:`review_pairs` / ``omni identity-review`` writes, filled in;
        :func:`read_labels`). Labelled matches are joined before clustering, labelled
        non-matches never end in one customer (unless one deterministic group holds
        both). With at least ``min_label_matches_for_m`` labelled matches, Splink's
        labelled-pair estimation (``estimate_m_from_pairwise_labels``) sets ``m``
        instead of EM. ``omni.yaml``: ``identity.labels``.
    min_label_matches_for_m : int
        Default 500: a few hundred of the most uncertain pairs are no fair sample of
        one person's pairs of records (on the tuning mix ``tune_households``, m from 200
        of them gave the same F1 as EM's and a worse self-estimate).
    tf_weight_name_only : float
        Weight of the term-frequency adjustment for name-only e-mail addresses
        (1 = full adjustment; 0.5 = halfway: such an address is shared by namesakes,
        and how often it is shared is measured exactly within sources for the level
        as a whole (:func:`_same_source_u`); the count of one address is the weaker
        evidence, so it moves the weight only halfway).
    u_max_pairs : float
        Random pairs drawn to estimate the ``u`` probabilities.
    seed : int
        Seed for that sampling (results are reproducible).
    min_records_for_model : int
        Below this many records the probabilistic step is skipped (nothing to learn
        from without labels): deterministic links only, flagged in ``model_skipped_``.
    key : bytes or None
        Pseudonymisation key; when given, ``links_`` carries HMAC-SHA256 pseudonyms of
        the normalised e-mail, phone, name and loyalty id (never the raw values).

    Fitted attributes
    -----------------
    links_ : one row per distinct ``record_id``: ``record_id``, ``source``,
        ``customer_id`` (unified, ``UC0000001``...), ``linked_by``
        (deterministic / probabilistic / not linked / no usable key), ``has_key`` and
        the pseudonyms.
    pairs_ : scored candidate pairs (record ids, match probability and weight, the
        weight each comparison contributed), without any raw value.
    issues_ : one row per record with a problem (record_id, source, problem).
    counts_ : bad-input and size counts.
    model_ : the trained Splink model (settings with m and u probabilities).
    timings_ : seconds per step.
    """

    def __init__(self, threshold: float = 0.5, one_record_per_source: bool | Mapping[str, bool] = False,
                 tf_weight_name_only: float = 0.5, u_max_pairs: float = 1e6, seed: int = 42,
                 key: bytes | None = None, predict_floor: float = 0.01, min_records_for_model: int = 200,
                 labels=None, min_label_matches_for_m: int = 500):
        self.labels = labels
        self.min_label_matches_for_m = min_label_matches_for_m
        self.threshold = threshold
        self.one_record_per_source = one_record_per_source
        self.tf_weight_name_only = tf_weight_name_only
        self.u_max_pairs = u_max_pairs
        self.seed = seed
        self.key = key
        self.predict_floor = predict_floor
        self.min_records_for_model = min_records_for_model

    # -- fitting ---------------------------------------------------------------------
    def fit(self, identities: pd.DataFrame) -> "IdentityResolver":
        if not 0 < self.threshold < 1:
            raise IdentityInputError(f"threshold must be between 0 and 1, got {self.threshold}")
        t = {}
        t0 = time.perf_counter()
        prep = prepare(identities)
        rec = prep.records
        n = len(rec)
        self._label_rows = self._labels_to_rows(rec)
        t["normalise"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        # rows sharing a record_id are one source record; a loyalty card names one person, and
        # so does a phone number unless several people use it (then only records with the
        # same given name are linked by it; the rest go to the probabilistic step)
        rec["household_phone"] = _household_phones(rec)
        hh = rec["household_phone"].to_numpy()
        rec["phone_key"] = rec["phone"].where(~hh, (rec["phone"] + "|" + rec["given"]).where(hh)).astype("str")
        det_edges = _key_edges(rec, ["record_id", "phone_key", "loyalty"])
        det_lab = _components(n, det_edges)
        t["deterministic"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        pairs, model = self._score(rec, det_lab)
        t["probabilistic"] = time.perf_counter() - t0
        t.update({f"  {k}": v for k, v in getattr(self, "_steps", {}).items()})

        t0 = time.perf_counter()
        # from here on only codes of the keys are kept, never their values
        self._rec = rec[["row", "record_id", "source", "has_key"]].copy()
        # masked forms for clerical review (never the raw values)
        self._masked_rec = _masked(rec)
        self._key_codes = {k: (rec["row"].to_numpy()[rec[k].notna().to_numpy()], pd.factorize(rec[k].dropna())[0])
                           for k in ("email", "phone", "loyalty")}
        # the initial of the given name: two groups whose records name only given names of
        # other initials are two people (a WhatsApp number without a name on a household
        # phone must not join the mother's group to the son's)
        ini = rec["given"].str[0]
        self._key_codes["given"] = (rec["row"].to_numpy()[ini.notna().to_numpy()], pd.factorize(ini.dropna())[0])
        self._det_lab = det_lab
        self._weights_else = _else_weights(model)
        if "name" in self._weights_else:
            self._weights_else["given"] = self._weights_else["name"]
        self._weights_same = _level_weights(model, "source", "Exact match on source")
        cl = self._cluster(self.threshold, pairs)
        t["cluster"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        self._pseudonyms = None
        if self.key is not None:
            from omni_lib.privacy import pseudonymise

            self._pseudonyms = pd.DataFrame({
                f"{c}_pseudonym": pseudonymise(rec[src], self.key)
                for c, src in (("email", "email"), ("phone", "phone"), ("name", "name"), ("loyalty", "loyalty"))})
        t["pseudonymise"] = time.perf_counter() - t0
        self.pairs_ = pairs
        self.model_ = model
        self.issues_ = prep.issues
        self.rounds_ = cl.rounds
        self.links_ = self._links(cl.labels)
        self._labels = cl.labels
        self._coverage = _blocking_coverage(rec, det_lab)
        self.quality_ = self.estimated_quality()
        self.timings_ = {k: round(v, 3) for k, v in t.items()}
        self.counts_ = {**prep.counts, **self._link_counts()}
        return self

    def _labels_to_rows(self, rec: pd.DataFrame) -> pd.DataFrame | None:
        """The labelled pairs (``labels``) as rows of ``rec``; pairs naming an unknown record
        id are counted in ``labels_unknown_`` and left out."""
        self.labels_unknown_ = 0
        if self.labels is None:
            return None
        lab = read_labels(self.labels)
        first = pd.Series(rec["row"].to_numpy(), index=rec["record_id"].to_numpy())
        first = first[~first.index.duplicated()]
        rl = first.reindex(lab["record_id_l"].to_numpy()).to_numpy()
        rr = first.reindex(lab["record_id_r"].to_numpy()).to_numpy()
        known = ~(np.isnan(rl) | np.isnan(rr))
        self.labels_unknown_ = int((~known).sum())
        if self.labels_unknown_:
            log.warning("labels: %d labelled pair(s) name a record_id not in the identities; left out",
                        self.labels_unknown_)
        return pd.DataFrame({"row_l": rl[known].astype(np.int64), "row_r": rr[known].astype(np.int64),
                             "match": lab["match"].to_numpy()[known]})

    def _one_per_source(self, sources: list) -> np.ndarray:
        """Per source (in the given order): does it hold at most one record per person?"""
        opt = self.one_record_per_source
        if isinstance(opt, Mapping):
            unknown = sorted(set(opt) - set(sources))
            if unknown:
                log.warning("one_record_per_source names source(s) not in the identities: %s", unknown)
            return np.array([bool(opt.get(s, False)) for s in sources], dtype=bool)
        if not isinstance(opt, (bool, np.bool_)):
            raise IdentityInputError("one_record_per_source must be true/false or a mapping source -> true/false, "
                                     f"got {opt!r}")
        return np.full(len(sources), bool(opt), dtype=bool)

    def _score(self, rec: pd.DataFrame, det_lab: np.ndarray) -> tuple[pd.DataFrame, dict]:
        """Train the Splink model without labels and score the blocked pairs.

        The model learns from the records as they are; the pairs are then scored on
        the records completed from their deterministic groups (:func:`_enrich`), so the
        evidence of a group counts and the training does not see copied values as
        agreement.
        """
        import duckdb
        from splink import DuckDBAPI, Linker, block_on

        cols = ["row", "source", "email", "email_user", "email_shape", "email_stem", "email_digits", "email_domain",
                "phone", "loyalty", "name", "first_name", "last_name", "city", "given", "household_phone",
                "email_nodots"]
        df = rec[cols].rename(columns={"row": "unique_id"})
        df["rare_name"] = _rare_name(rec)
        df["email_personal"] = df["email_digits"].str.len().gt(0).fillna(False).astype(bool)
        with_created = "created_at" in rec
        if with_created:
            ts = pd.to_datetime(rec["created_at"], utc=True, errors="coerce")
            with_created = bool(ts.notna().any())
            df["created_days"] = ((ts - pd.Timestamp("2000-01-01", tz="UTC")).dt.total_seconds() / 86400).to_numpy()
        empty = pd.DataFrame({"unique_id_l": pd.Series(dtype=np.int64), "unique_id_r": pd.Series(dtype=np.int64),
                              "match_probability": pd.Series(dtype=float), "match_weight": pd.Series(dtype=float)})
        in_model = rec["has_key"].to_numpy() | rec["name"].notna().to_numpy()
        keyed = df[in_model]
        if len(keyed) < self.min_records_for_model:
            # too few records to learn m and u without labels: deterministic links only
            log.warning("identities: %d records, fewer than %d: probabilistic matching skipped",
                        len(keyed), self.min_records_for_model)
            self.model_skipped_ = True
            return empty, {}
        self.model_skipped_ = False
        steps = self._steps = {}
        con = duckdb.connect()
        try:
            _quiet(con)
            db = DuckDBAPI(con)
            linker = Linker(db.register(keyed, table_name="identity_records"),
                            _splink_settings(self.tf_weight_name_only, with_created, keyed['source'].dropna().unique()), log_level=logging.ERROR)
            quiet = logging.getLogger("splink")
            old = quiet.level
            quiet.setLevel(logging.ERROR)
            try:
                # the share of matching pairs, from the keys that name one person
                # (assumed to find 70% of the matches; EM refines the rest)
                t0 = time.perf_counter()
                linker.training.estimate_probability_two_random_records_match(
                    [block_on("phone"), block_on("loyalty")], recall=0.7)
                steps["train_prior"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                linker.training.estimate_u_using_random_sampling(max_pairs=self.u_max_pairs, seed=self.seed)
                steps["train_u"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                # m by expectation-maximisation, on pairs that share a loyalty card (trains
                # e-mail, phone, name, city) and pairs that share a phone (trains the rest)
                for br in (block_on("loyalty"), block_on("phone")):
                    try:
                        linker.training.estimate_parameters_using_expectation_maximisation(br)
                    except Exception as e:  # too few pairs in a small table: keep the defaults
                        log.info("EM on %s skipped: %s", br, e)
                lr = self._label_rows
                if lr is not None:
                    ok = in_model[lr["row_l"].to_numpy()] & in_model[lr["row_r"].to_numpy()] & lr["match"].to_numpy()
                    self.label_m_used_ = bool(ok.sum() >= self.min_label_matches_for_m)
                    if self.label_m_used_:
                        # m from the pairs a person labelled as one person (Splink's
                        # labelled-pair estimation), in place of EM's
                        lab_tab = pd.DataFrame({"unique_id_l": lr["row_l"].to_numpy()[ok],
                                                "unique_id_r": lr["row_r"].to_numpy()[ok]})
                        linker.training.estimate_m_from_pairwise_labels(
                            db.register(lab_tab, table_name="identity_labels"))
                steps["train_m"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                # the trained model, corrected (_adjust_model), scores the completed records.
                # The u of the exact-key levels is counted within sources (a within-source
                # pair that shares a key may be one person's second account, which makes the
                # count an upper bound: the key's weight errs low, never high). Rows sharing a
                # record id are one record: counted once.
                exact_u = _same_source_u(keyed[~rec["duplicate_record_id"].to_numpy()[in_model]])
                model = _adjust_model(linker.misc.save_model_to_json(), self.u_max_pairs, exact_u,
                                      _source_pair_m(keyed[~rec["duplicate_record_id"].to_numpy()[in_model]]),
                                      _given_disagree_rate(keyed[~rec["duplicate_record_id"].to_numpy()[in_model]]))
                # term frequencies from the records as they are (a value copied into the
                # other records of a group by _enrich would count once per copy), each
                # value once per deterministic group
                tf = {c: db.register(_tf_table(df[in_model], det_lab[in_model], c), table_name=f"tf_lookup_{c}")
                      for c in _tf_columns(model)}
                linker = Linker(db.register(_enrich(df, det_lab)[in_model], table_name="identity_records_completed"),
                                model, log_level=logging.ERROR)
                for c, tf_df in tf.items():
                    linker.table_management.register_term_frequency_lookup(tf_df, c)
                pred = linker.inference.predict(threshold_match_probability=self.predict_floor,
                                                warning_mode="never")
                keep = ["unique_id_l", "unique_id_r", "match_probability", "match_weight"]
                # the weight each comparison contributed (mw_email, ...; not the separate
                # term-frequency parts); SplinkDataFrame.columns are InputColumn objects, so
                # the names are read from the table itself
                names = con.sql(f"SELECT * FROM {pred.physical_name} LIMIT 0").columns
                mw = [c for c in names if c.startswith("mw_") and not c.startswith("mw_tf")]
                pairs = con.sql(f"SELECT {', '.join(keep + mw)} FROM {pred.physical_name}").df()
                steps["predict"] = time.perf_counter() - t0
            finally:
                quiet.setLevel(old)
        finally:
            con.close()
        for c in ("unique_id_l", "unique_id_r"):
            pairs[c] = pairs[c].astype(np.int64)
        return pairs, model

    def _cluster(self, threshold: float, pairs: pd.DataFrame) -> _Clustering:
        """Join groups along their best links, a few vectorised rounds.

        Start from the deterministic groups. Each round, every group picks its best
        link to another group (highest match weight of any record pair between them,
        lowered by the e-mail / phone / loyalty disagreements between the *groups* that
        the pair itself could not see, e.g. one record has no phone but its group
        does); links below the threshold, and (``one_record_per_source``) links that
        would put two records of one source in a group, are not candidates. Groups that
        are each other's best link join. Repeat until nothing joins.

        Hand-written rather than Splink's ``cluster_using_single_best_links`` because
        that one needs the input split into one table per source (``link_only``) and
        its training then ran out of time and memory on our data; this is the same
        idea on the dedupe model, as pandas set operations.
        """
        rec = self._rec
        n = len(rec)
        lab = self._det_lab.copy()
        lr = self._label_rows
        cannot = None
        if lr is not None and len(lr):
            must = lr[lr["match"]]
            if len(must):   # labelled one person: joined before anything else
                lab = _components(n, np.c_[lab[must["row_l"].to_numpy()], lab[must["row_r"].to_numpy()]])[lab]
            cannot = lr.loc[~lr["match"], ["row_l", "row_r"]].to_numpy()
        if pairs.empty:
            return _Clustering(lab, 0)
        tw = np.log2(threshold / (1 - threshold))
        E = pairs[["unique_id_l", "unique_id_r"]].to_numpy()
        W = pairs["match_weight"].to_numpy()
        null_at_pair = {k: (pairs[f"mw_{c}"].to_numpy() == 0) if f"mw_{c}" in pairs else np.zeros(len(pairs), bool)
                        for k, c in (("email", "email"), ("phone", "phone"), ("loyalty", "loyalty"),
                                     ("given", "name"))}
        cat = pd.Categorical(rec["source"])
        src_codes = cat.codes.astype(np.int64)
        one = self._one_per_source(list(cat.categories))
        use_sources = bool(one.any()) and src_codes.max(initial=0) < 63
        src_bits = np.where(one[src_codes], np.left_shift(1, src_codes), 0)
        # the other sources: two groups that both hold a record of one source join only
        # against that evidence too (two records of one system are seldom one person), which
        # the best pair between them does not carry unless it is itself that same-source pair
        soft = src_codes.max(initial=0) < 63 and "source" in self._weights_same
        all_bits = np.left_shift(1, src_codes)
        same_pair = (src_codes[E[:, 0]] == src_codes[E[:, 1]])
        key_rows = self._key_codes
        rounds = 0
        for rounds in range(1, 100):
            a, b = lab[E[:, 0]], lab[E[:, 1]]
            ed = pd.DataFrame({"a": np.minimum(a, b), "b": np.maximum(a, b), "w": W, "i": np.arange(len(W))})
            ed = ed[ed["a"] != ed["b"]]
            if ed.empty:
                break
            ed = ed.sort_values(["w", "i"], ascending=[False, True]).drop_duplicates(["a", "b"])
            if use_sources:
                mask = np.zeros(n, dtype=np.int64)
                np.bitwise_or.at(mask, lab, src_bits)
                ed = ed[(mask[ed["a"].to_numpy()] & mask[ed["b"].to_numpy()]) == 0]
            if cannot is not None and len(cannot):
                # labelled two people: their groups never join
                ga, gb = lab[cannot[:, 0]], lab[cannot[:, 1]]
                banned = pd.DataFrame({"a": np.minimum(ga, gb), "b": np.maximum(ga, gb)}).drop_duplicates()
                ed = ed.merge(banned.assign(_x=True), on=["a", "b"], how="left")
                ed = ed[ed["_x"].isna()].drop(columns="_x")
            w = ed["w"].to_numpy().copy()
            ea, eb, ei = ed["a"].to_numpy(), ed["b"].to_numpy(), ed["i"].to_numpy()
            if soft:
                amask = np.zeros(n, dtype=np.int64)
                np.bitwise_or.at(amask, lab, all_bits)
                both_src = amask[ea] & amask[eb]
                k_over = _popcount(both_src)
                w += (k_over - same_pair[ei].astype(np.int64)).clip(0) * self._weights_same["source"]
            for k, (rows, codes) in key_rows.items():
                if len(rows) == 0 or k not in self._weights_else:
                    continue
                kv = pd.DataFrame({"g": lab[rows], "v": codes}).drop_duplicates()
                has = np.zeros(n, dtype=bool)
                has[kv["g"].to_numpy()] = True
                cand = pd.DataFrame({"a": ea, "b": eb, "j": np.arange(len(ea))})
                shared = cand.merge(kv.rename(columns={"g": "a"}), on="a").merge(
                    kv.rename(columns={"g": "b"}), on=["b", "v"])["j"].unique()
                share = np.zeros(len(ea), dtype=bool)
                share[shared] = True
                conflict = has[ea] & has[eb] & ~share & null_at_pair[k][ei]
                w[conflict] += self._weights_else[k]
            ok = w >= tw
            if not ok.any():
                break
            ea, eb, w = ea[ok], eb[ok], w[ok]
            both = pd.DataFrame({"x": np.r_[ea, eb], "y": np.r_[eb, ea], "w": np.r_[w, w]})
            best = both.sort_values(["x", "w", "y"], ascending=[True, False, True]).drop_duplicates("x")
            best_of = pd.Series(best["y"].to_numpy(), index=best["x"].to_numpy())
            mutual = best[(best_of.reindex(best["y"].to_numpy()).to_numpy() == best["x"].to_numpy())
                          & (best["x"].to_numpy() < best["y"].to_numpy())]
            if mutual.empty:
                break
            lab = _components(n, np.c_[mutual["x"].to_numpy(), mutual["y"].to_numpy()])[lab]
        return _Clustering(lab, rounds)

    # -- outputs -----------------------------------------------------------------------
    def _links(self, labels: np.ndarray) -> pd.DataFrame:
        """One row per distinct record_id with its unified customer id and pseudonyms."""
        rec = self._rec
        # unified ids numbered in the order of each group's first record (stable for the same input)
        lab = pd.Series(labels)
        first = lab.groupby(labels).transform("min").to_numpy()      # rows are 0..n-1
        num = pd.factorize(first, sort=True)[0] + 1
        width = max(7, len(str(int(num.max(initial=1)))))
        cust = pd.Series(num).astype("str").str.zfill(width).radd("UC").to_numpy()
        size = lab.map(lab.value_counts()).to_numpy()
        det = pd.Series(self._det_lab)
        det_size = det.map(det.value_counts()).to_numpy()
        linked_by = np.where(~rec["has_key"].to_numpy() & (size == 1), "no usable key",
                             np.where(size == 1, "not linked",
                                      np.where(size > det_size, "probabilistic", "deterministic")))
        out = pd.DataFrame({"record_id": rec["record_id"].to_numpy(), "source": rec["source"].to_numpy(),
                            "customer_id": cust, "linked_by": linked_by,
                            "has_key": rec["has_key"].to_numpy()})
        if self._pseudonyms is not None:
            out = pd.concat([out, self._pseudonyms.reset_index(drop=True)], axis=1)
        out = out.drop_duplicates("record_id").reset_index(drop=True)
        for c in ("record_id", "source", "customer_id", "linked_by"):
            out[c] = out[c].astype("str")
        return out

    def _link_counts(self) -> dict:
        lk = self.links_
        sizes = lk.groupby("customer_id").size()
        return {
            "unified_customers": int(len(sizes)),
            "records_linked": int((lk["linked_by"].isin(["deterministic", "probabilistic"])).sum()),
            "records_linked_deterministic": int((lk["linked_by"] == "deterministic").sum()),
            "records_linked_probabilistic": int((lk["linked_by"] == "probabilistic").sum()),
            "records_not_linked": int((lk["linked_by"] == "not linked").sum()),
            "records_no_usable_key": int((lk["linked_by"] == "no usable key").sum()),
            "pairs_scored": int(len(self.pairs_)),
        }

    def estimated_quality(self, labels: np.ndarray | None = None, low: float = 0.2, high: float = 0.8) -> dict:
        """Pairwise precision, recall and F1 as the model itself expects them, without labels.

        Each pair of records is one person with its match probability: 1 for two records
        of one deterministic group, the scored probability for a scored pair, and for a
        pair the clustering joined only through others (never scored itself) the mean
        probability of the scored pairs inside its cluster. Expected correct pairs: the
        sum over the pairs the clustering joins; expected true pairs: the sum over every
        pair (deterministic and scored). The
        true pairs never compared are estimated from how often one person's records share
        a key other than phone or card (:func:`_blocking_coverage`): the scored mass is
        scaled up by it (this errs low for recall on the data measured so far).

        Also: ``uncertain_pairs`` (scored pairs between deterministic groups with
        ``low <= p < high``), and ``uncertain_joined`` / ``uncertain_apart``, the expected
        number of wrong decisions among them: a joined uncertain pair is wrong with
        probability 1 - p, one left apart with p.
        """
        self._check_fitted()
        lab = self._labels if labels is None else labels
        det = self._det_lab
        n = len(lab)

        def c2(x):
            x = np.asarray(x, dtype=np.float64)
            return x * (x - 1) / 2

        cl_pairs = pd.Series(c2(np.bincount(lab)))
        # deterministic pairs, per cluster (a deterministic group lies inside one cluster)
        dg = pd.DataFrame({"d": det, "c": lab}).groupby("d")["c"].agg(["first", "size"])
        det_in = pd.Series(c2(dg["size"].to_numpy())).groupby(dg["first"].to_numpy()).sum()
        p = self.pairs_
        if len(p):
            a, b = p["unique_id_l"].to_numpy(), p["unique_id_r"].to_numpy()
            cross = det[a] != det[b]
            pr = p["match_probability"].to_numpy()[cross]
            ca, cb = lab[a][cross], lab[b][cross]
            inside = ca == cb
            sc = pd.DataFrame({"c": ca[inside], "p": pr[inside]}).groupby("c")["p"].agg(["sum", "size"])
        else:
            pr = np.zeros(0)
            inside = np.zeros(0, dtype=bool)
            sc = pd.DataFrame({"sum": pd.Series(dtype=float), "size": pd.Series(dtype=float)})
        per = pd.DataFrame({"pairs": cl_pairs})
        per["det"] = det_in.reindex(per.index).fillna(0.0)
        per["sc_sum"] = sc["sum"].reindex(per.index).fillna(0.0)
        per["sc_n"] = sc["size"].reindex(per.index).fillna(0.0)
        rest = (per["pairs"] - per["det"] - per["sc_n"]).clip(lower=0)
        mean_p = (per["sc_sum"] / per["sc_n"]).where(per["sc_n"] > 0, 1.0)
        e_tp = float((per["det"] + per["sc_sum"] + rest * mean_p).sum())
        pp = float(per["pairs"].sum())
        # the true pairs that share no phone or card, scaled up for the ones no blocking
        # rule compares (_blocking_coverage); at least what the clustering already joins
        cov = self._coverage if self._coverage else 1.0
        e_true = max(float(per["det"].sum() + pr.sum() / max(cov, 0.05)), e_tp)
        precision = e_tp / pp if pp else 1.0
        recall = e_tp / e_true if e_true else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        unc = (pr >= low) & (pr < high)
        return {"precision": precision, "recall": recall, "f1": f1, "pairs_predicted": pp,
                "expected_correct_pairs": e_tp, "expected_true_pairs": e_true,
                "uncertain_pairs": int(unc.sum()),
                "uncertain_joined": float((1 - pr[unc & inside]).sum()),
                "uncertain_apart": float(pr[unc & ~inside].sum()), "records": n}

    def review_pairs(self, n: int = 200) -> pd.DataFrame:
        """The ``n`` pairs the model is least sure about, masked, for a person to label.

        Scored pairs between different deterministic groups, closest to an even chance
        first (smallest ``|match_weight|``; a pair already labelled is left out). Values
        are masked (``b***@gmail.com``, ``***1234``, initials ``B. S.``, city, month created).
        Fill in ``label`` with ``match`` or ``no match`` (leave empty to skip) and pass the
        file back as ``labels=`` (``identity.labels`` in ``omni.yaml``): the labelled pairs
        are joined / kept apart, and with enough matches they train ``m`` too.
        """
        self._check_fitted()
        p = self.pairs_
        det = self._det_lab
        a, b = p["unique_id_l"].to_numpy(), p["unique_id_r"].to_numpy()
        cand = p[det[a] != det[b]]
        if self._label_rows is not None and len(self._label_rows):
            lr = self._label_rows
            done = set(zip(np.minimum(lr["row_l"], lr["row_r"]), np.maximum(lr["row_l"], lr["row_r"])))
            key = list(zip(np.minimum(cand["unique_id_l"], cand["unique_id_r"]),
                           np.maximum(cand["unique_id_l"], cand["unique_id_r"])))
            cand = cand[[k not in done for k in key]]
        cand = cand.iloc[np.argsort(np.abs(cand["match_weight"].to_numpy()), kind="stable")[:n]]
        L, R = cand["unique_id_l"].to_numpy(), cand["unique_id_r"].to_numpy()
        rid, src = self._rec["record_id"].to_numpy(), self._rec["source"].to_numpy()
        m = self._masked_rec
        cust = self._labels
        out = pd.DataFrame({"record_id_l": rid[L], "record_id_r": rid[R], "source_l": src[L], "source_r": src[R]})
        for c in m.columns:
            out[f"{c}_l"] = m[c].to_numpy()[L]
            out[f"{c}_r"] = m[c].to_numpy()[R]
        out["match_probability"] = cand["match_probability"].round(3).to_numpy()
        out["joined_now"] = cust[L] == cust[R]
        out["label"] = ""
        return out.reset_index(drop=True)

    def recluster(self, threshold: float) -> pd.DataFrame:
        """``links_`` as it would be at another threshold (the scored pairs are reused)."""
        self._check_fitted()
        return self._links(self._cluster(threshold, self.pairs_).labels)

    def borderline_pairs(self, n: int = 20, low: float = 0.2, high: float = 0.8) -> pd.DataFrame:
        """Pairs the model is unsure about, for manual review (record ids, no raw values).

        A random sample (seeded) of pairs with ``low <= match_probability < high``,
        with the weight each comparison contributed (positive = for a match).
        """
        self._check_fitted()
        p = self.pairs_
        band = p[(p["match_probability"] >= low) & (p["match_probability"] < high)]
        band = band.sample(min(n, len(band)), random_state=self.seed) if len(band) else band
        rid = self._rec["record_id"].to_numpy()
        src = self._rec["source"].to_numpy()
        cust = self._links_by_row
        out = pd.DataFrame({
            "record_id_l": rid[band["unique_id_l"].to_numpy()], "source_l": src[band["unique_id_l"].to_numpy()],
            "record_id_r": rid[band["unique_id_r"].to_numpy()], "source_r": src[band["unique_id_r"].to_numpy()],
            "match_probability": band["match_probability"].round(3).to_numpy(),
            "same_customer_now": cust[band["unique_id_l"].to_numpy()] == cust[band["unique_id_r"].to_numpy()],
        })
        for c in [c for c in band.columns if c.startswith("mw_")]:
            out["weight_" + c[3:]] = band[c].round(1).to_numpy()
        return out.sort_values("match_probability", ascending=False).reset_index(drop=True)

    @property
    def _links_by_row(self) -> np.ndarray:
        m = self.links_.set_index("record_id")["customer_id"]
        return m.reindex(self._rec["record_id"]).to_numpy()

    def _check_fitted(self):
        if not hasattr(self, "links_"):
            raise IdentityInputError("the resolver is not fitted yet: call fit(identities) first")


_MATCH_WORDS = {"match": True, "yes": True, "y": True, "true": True, "1": True, "same": True,
                "no match": False, "no": False, "n": False, "false": False, "0": False, "different": False,
                "non-match": False, "nonmatch": False, "no_match": False}


def read_labels(labels) -> pd.DataFrame:
    """A labels file (CSV or Parquet path) or DataFrame -> ``record_id_l``, ``record_id_r``, ``match``.

    The file :meth:`IdentityResolver.review_pairs` writes, with its ``label`` column
    filled in: ``match`` / ``no match`` (also yes/no, true/false, 1/0). Rows with an
    empty label are skipped (not yet reviewed); any other value is an error naming the
    file, the column and the number of bad rows. When a pair is labelled twice, the
    last label counts.
    """
    where = "labels"
    if isinstance(labels, (str, bytes)) or hasattr(labels, "__fspath__"):
        from pathlib import Path

        path = Path(labels)
        where = str(path)
        if not path.exists():
            raise IdentityInputError(f"{where}: labels file not found")
        df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype=str)
    elif isinstance(labels, pd.DataFrame):
        df = labels
    else:
        raise IdentityInputError(f"labels must be a path or a DataFrame, got {type(labels).__name__}")
    missing = [c for c in ("record_id_l", "record_id_r", "label") if c not in df]
    if missing:
        raise IdentityInputError(f"{where}: missing column(s) {missing} (expected record_id_l, record_id_r, label)")
    raw = df["label"]
    txt = raw.map(lambda v: v if isinstance(v, str) else ("" if pd.isna(v) else str(int(v)) if isinstance(v, (bool, np.bool_)) or float(v).is_integer() else str(v)))
    txt = txt.str.strip().str.lower()
    done = txt.ne("")
    val = txt[done].map(_MATCH_WORDS)
    bad = val.isna()
    if bad.any():
        raise IdentityInputError(
            f"{where}: column 'label' has {int(bad.sum())} row(s) that are not 'match' or 'no match' "
            f"(e.g. {sorted(set(raw[done][bad].astype(str)))[:3]})")
    out = pd.DataFrame({"record_id_l": df.loc[done, "record_id_l"].astype("str").str.strip().to_numpy(),
                        "record_id_r": df.loc[done, "record_id_r"].astype("str").str.strip().to_numpy(),
                        "match": val.astype(bool).to_numpy()})
    if out[["record_id_l", "record_id_r"]].isna().any(axis=None):
        raise IdentityInputError(f"{where}: {int(out[['record_id_l', 'record_id_r']].isna().any(axis=1).sum())} "
                                 "labelled row(s) lack record_id_l or record_id_r")
    key = np.where(out["record_id_l"] < out["record_id_r"], out["record_id_l"] + "\x1f" + out["record_id_r"],
                   out["record_id_r"] + "\x1f" + out["record_id_l"])
    return out[~pd.Series(key).duplicated(keep="last").to_numpy()].reset_index(drop=True)


def _masked(rec: pd.DataFrame) -> pd.DataFrame:
    """What a reviewer may see of each record: ``b***@gmail.com``, the phone's last four
    digits, the name's initials, the city and the month the record was created."""
    m = _run_sql(rec[["email_user", "email_domain", "phone", "name"]],
                 "left(email_user, 1) || '***@' || email_domain AS email, '***' || right(phone, 4) AS phone, "
                 "upper(regexp_replace(name, '([a-z])[a-z]*', '\\1.', 'g')) AS name")
    out = pd.DataFrame({"email": _as_str(m["email"]), "phone": _as_str(m["phone"]),
                        "name": _as_str(m["name"]), "city": rec["city"].astype("str")})
    if "created_at" in rec:
        ts = pd.to_datetime(rec["created_at"], utc=True, errors="coerce")
        out["created"] = ts.dt.strftime("%Y-%m").astype("str")
    return out


def _popcount(x: np.ndarray) -> np.ndarray:
    """Number of bits set in each int64."""
    x = x.astype(np.uint64)
    c = np.zeros(len(x), dtype=np.int64)
    while x.any():
        c += (x & np.uint64(1)).astype(np.int64)
        x = x >> np.uint64(1)
    return c


def _level_weights(model: Mapping, comparison: str, label: str) -> dict:
    """``{comparison: log2(m/u)}`` of one level, when the model has it."""
    for c in model.get("comparisons", []):
        if c["output_column_name"] != comparison:
            continue
        for lvl in c["comparison_levels"]:
            if lvl.get("label_for_charts") == label and lvl.get("m_probability") and lvl.get("u_probability"):
                return {comparison: float(np.log2(lvl["m_probability"] / lvl["u_probability"]))}
    return {}


def _else_weights(model: Mapping) -> dict:
    """log2(m/u) of each comparison's 'all other' (disagreement) level."""
    out = {}
    for c in model.get("comparisons", []):
        for lvl in c["comparison_levels"]:
            if lvl.get("label_for_charts", "").startswith("All other") and "u_probability" in lvl:
                m = lvl.get("m_probability")
                if m:
                    out[c["output_column_name"]] = float(np.log2(m / lvl["u_probability"]))
    return out


# ---------------------------------------------------------------------------------
# quality against a planted truth
# ---------------------------------------------------------------------------------

def _pairs(sizes: pd.Series | np.ndarray) -> int:
    s = np.asarray(sizes, dtype=np.int64)
    return int((s * (s - 1) // 2).sum())


def pairwise_quality(predicted: pd.DataFrame, truth: pd.DataFrame, on: str = "record_id",
                     predicted_col: str = "customer_id", truth_col: str = "customer_id") -> dict:
    """Pairwise precision, recall, F1 and cluster purity of a clustering against the truth.

    A pair of records counts as predicted when both records carry the same predicted id,
    as true when they carry the same true id. Purity: the share of records whose
    predicted cluster's majority true customer is their own (1 = no cluster mixes two
    people); inverse purity the same with the roles swapped (1 = no person is split).
    Computed on the records present in both tables; ``records_missing`` counts those in
    one only. Counting is set-based (group sizes), never pair by pair.
    """
    for df, col, what in ((predicted, predicted_col, "predicted"), (truth, truth_col, "truth")):
        missing = [c for c in (on, col) if c not in df]
        if missing:
            raise IdentityInputError(f"{what}: missing column(s) {missing}")
    p = predicted[[on, predicted_col]].drop_duplicates(on).rename(columns={predicted_col: "p"})
    t = truth[[on, truth_col]].drop_duplicates(on).rename(columns={truth_col: "t"})
    m = p.merge(t, on=on)
    if m.empty:
        raise IdentityInputError("predicted and truth share no record ids")
    both = m.groupby(["p", "t"], sort=False).size()
    tp = _pairs(both)
    pp = _pairs(m.groupby("p", sort=False).size())
    tt = _pairs(m.groupby("t", sort=False).size())
    precision = tp / pp if pp else 1.0
    recall = tp / tt if tt else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    purity = both.groupby(level=0).max().sum() / len(m)
    inverse = both.groupby(level=1).max().sum() / len(m)
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1),
            "purity": float(purity), "inverse_purity": float(inverse),
            "pairs_predicted": pp, "pairs_true": tt, "pairs_correct": tp,
            "records": int(len(m)), "records_missing": int(len(p) + len(t) - 2 * len(m)),
            "clusters_predicted": int(m["p"].nunique()), "customers_true": int(m["t"].nunique())}


# ---------------------------------------------------------------------------------
# the unified view: channels, overlap, consent, omnichannel vs single-channel
# ---------------------------------------------------------------------------------

def customer_channels(links: pd.DataFrame) -> pd.DataFrame:
    """Unified customer x source: True where the customer has a record in that source.

    Adds ``n_channels`` and ``channels`` (the sorted combination, e.g. ``app+web``).
    """
    m = pd.crosstab(links["customer_id"], links["source"]).gt(0)
    m.columns = [str(c) for c in m.columns]
    m.columns.name = None
    out = m.copy()
    out["n_channels"] = m.sum(axis=1).astype(int)
    names = np.array(m.columns, dtype=object)
    arr = m.to_numpy()
    # the combination label, built column by column (a handful of sources), not per customer
    label = np.full(len(m), "", dtype=object)
    for j, name in enumerate(names):
        label = np.where(arr[:, j], np.where(label == "", name, label + "+" + name), label)
    out["channels"] = label
    out.index.name = "customer_id"
    return out


def channel_overlap(links: pd.DataFrame, top: int | None = None) -> pd.DataFrame:
    """UpSet-style counts: customers per exact combination of sources, largest first."""
    ch = customer_channels(links)
    sources = [c for c in ch.columns if c not in ("n_channels", "channels")]
    g = ch.groupby("channels").agg(customers=("n_channels", "size"), n_channels=("n_channels", "first"))
    flags = ch.drop_duplicates("channels").set_index("channels")[sources]
    out = g.join(flags).sort_values(["customers", "n_channels"], ascending=[False, True]).reset_index()
    out["share"] = out["customers"] / out["customers"].sum()
    return out.head(top) if top else out


def match_rates(links: pd.DataFrame) -> pd.DataFrame:
    """Per source: records, share linked to any other record, and to another channel."""
    size = links.groupby("customer_id")["record_id"].transform("size")
    nsrc = links.groupby("customer_id")["source"].transform("nunique")
    d = links.assign(linked=size.to_numpy() > 1, cross=nsrc.to_numpy() > 1,
                     no_key=links["linked_by"].eq("no usable key").to_numpy())
    out = d.groupby("source").agg(records=("record_id", "size"), linked=("linked", "mean"),
                                  linked_to_other_channel=("cross", "mean"), no_usable_key=("no_key", "sum"))
    return out.sort_values("records", ascending=False)


def consent_by_unified_customer(links: pd.DataFrame, orders: pd.DataFrame | None,
                                customers: pd.DataFrame | None) -> tuple[pd.Series, dict]:
    """Analytics consent of each unified customer.

    The identities table carries no consent; the ``customers`` table does, per given
    customer id, and orders tie records to given ids (``orders.record_id``). A unified
    customer is in the analysis only if every given customer it is tied to consented;
    one tied to none has no record of consent and, like unknown consent everywhere in
    the workbench (:func:`omni_lib.privacy.apply_consent`), counts as no consent.
    Returns ``(consent, info)``: a boolean Series by unified customer id and counts.
    """
    uc = pd.Index(links["customer_id"].unique(), name="customer_id")
    if customers is None or "consent_analytics" not in customers:
        return pd.Series(True, index=uc), {"excluded": 0, "no_consent": 0, "unknown": 0,
                                           "note": "no consent_analytics column: every customer is included"}
    if orders is None or "record_id" not in orders:
        return pd.Series(False, index=uc), {"excluded": len(uc), "no_consent": 0, "unknown": len(uc),
                                            "note": "orders carry no record_id: consent cannot be tied to "
                                                    "identity records, so no unified customer is analysed"}
    tie = orders[["record_id", "customer_id"]].dropna().drop_duplicates().rename(columns={"customer_id": "given"})
    tie = tie.merge(links[["record_id", "customer_id"]], on="record_id")
    ok = customers.set_index("customer_id")["consent_analytics"].eq(True).fillna(False).astype(bool)
    tie["consent"] = tie["given"].map(ok).fillna(False).astype(bool).to_numpy()
    per = tie.groupby("customer_id")["consent"].all()
    consent = per.reindex(uc).fillna(False).astype(bool)
    unknown = int((~uc.isin(per.index)).sum())
    no = int((~per).sum())
    info = {"excluded": int((~consent).sum()), "no_consent": no, "unknown": unknown,
            "note": (f"{int((~consent).sum()):,} of {len(uc):,} unified customers are left out of the analysis: "
                     f"{no:,} are tied to a customer without analytics consent and {unknown:,} to no customer "
                     "record at all (no record of consent counts as no consent)")}
    return consent, info


def omnichannel_comparison(links: pd.DataFrame, orders: pd.DataFrame, data_end: pd.Timestamp | None = None,
                           retention_days: int = 180) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Spend and retention of omnichannel vs single-channel unified customers.

    Orders are tied to unified customers through ``orders.record_id``; completed orders
    count for spend (cancelled and returned do not, when ``status`` is present). A
    customer is *omnichannel* with records in two or more sources. *Retained*: among
    customers whose first order came before the last ``retention_days`` of the data,
    the share who ordered again within them. Returns ``(per_customer, summary)``.
    """
    if "record_id" not in orders:
        raise IdentityInputError("orders: no record_id column, so orders cannot be tied to identity records")
    o = orders
    if "status" in o:
        o = o[o["status"].isna() | o["status"].eq("completed")]
    o = o[["record_id", "order_ts", "net_amount"]].merge(links[["record_id", "customer_id"]], on="record_id")
    end = data_end if data_end is not None else o["order_ts"].max()
    start = end - pd.Timedelta(days=retention_days)
    per = o.groupby("customer_id").agg(spend=("net_amount", "sum"), orders=("net_amount", "size"),
                                       first_order=("order_ts", "min"), last_order=("order_ts", "max"))
    ch = customer_channels(links)[["n_channels", "channels"]]
    per = ch.join(per, how="left")
    per["spend"] = per["spend"].fillna(0.0)
    per["orders"] = per["orders"].fillna(0).astype(int)
    per["omnichannel"] = per["n_channels"] >= 2
    per["eligible"] = per["first_order"].notna() & (per["first_order"] < start)
    per["retained"] = per["eligible"] & (per["last_order"] >= start)
    per["group"] = np.where(per["omnichannel"], "omnichannel", "single channel")
    g = per.groupby("group")
    summary = pd.DataFrame({
        "customers": g.size(),
        "buyers": g["orders"].apply(lambda s: int((s > 0).sum())),
        "mean_spend": g["spend"].mean(),
        "median_spend": g["spend"].median(),
        "mean_orders": g["orders"].mean(),
        "retention_rate": per[per["eligible"]].groupby("group")["retained"].mean(),
    })
    return per, summary
