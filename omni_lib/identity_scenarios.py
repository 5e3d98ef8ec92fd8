"""Identity scenarios: siloed channel records with known people, phenomena set one by one.

The sample retailer (:mod:`omni_lib.sample`) has one fixed recipe of identity noise (one
record per channel used, no shared phones, no second accounts). A resolver tuned to it
fits it. This module writes other retailers' identity tables, each phenomenon its own
knob, so that a resolver is checked on data it was not tuned to:

* ``shared_phone``: share of people who use another person's phone number (households,
  families: one number for several accounts);
* ``second_account``: share of people with a second account in one of their systems,
  usually under an older e-mail address;
* ``coverage``: per system, how often a record carries an e-mail, a phone, a loyalty
  card (``SPARSE``: e-mail rare at the store desk, on WhatsApp and from marketplaces);
* ``name_forms``: how often a record's name is written in another form (``B. Santoso``,
  ``Budi S.``, first name only, a nickname, a title, capitals, stray spaces, a typo);
* ``single_name``: people with one name only;
* ``namesakes``: share of people drawn from a small pool of very common full names (a
  personal e-mail address still belongs to one person);
* ``email_variants``: how often an address is written another way (capitals, gmail dots,
  ``+tags``, a domain typo);
* phone formats (``0812-...``, ``+62 812 ...``, ``62812...``) always vary.

The names, cities and proportions are written here, independently of the sample
generator. :data:`MIXES` holds the named mixes; each says whether it may be used to
choose settings (``role="tune"``) or only to report (``role="report"``): settings are
chosen on the tuning mixes and reported on the others, never tuned on what is reported.

:func:`deterministic_rule` is the baseline a resolver must beat: same normalised
e-mail, or same loyalty card, or same phone where the first names agree.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

__all__ = ["Mix", "MIXES", "TUNING", "REPORTING", "generate", "deterministic_rule"]

SOURCES = ("web", "app", "marketplace", "store", "whatsapp")
#: share of people who have a record in each system (at least one: see generate())
USE = {"web": 0.55, "app": 0.35, "marketplace": 0.45, "store": 0.35, "whatsapp": 0.25}

#: per system: P(e-mail recorded), P(phone recorded), P(loyalty card recorded | person holds one)
COVERAGE = {"web": (0.97, 0.60, 0.05), "app": (0.92, 0.90, 0.15), "marketplace": (0.70, 0.85, 0.0),
            "store": (0.50, 0.92, 0.95), "whatsapp": (0.15, 1.00, 0.0)}
#: e-mail rare at the store desk, on WhatsApp and from the marketplace (masked relay addresses)
SPARSE = {"web": (0.95, 0.50, 0.05), "app": (0.85, 0.85, 0.10), "marketplace": (0.20, 0.80, 0.0),
          "store": (0.10, 0.90, 0.90), "whatsapp": (0.03, 1.00, 0.0)}

FIRST = ("Muhammad", "Ahmad", "Budi", "Agus", "Dedi", "Eko", "Hendra", "Iwan", "Joko", "Rudi",
         "Slamet", "Sugeng", "Wahyu", "Yudi", "Fajar", "Rizal", "Arif", "Bayu", "Dani", "Gita",
         "Hari", "Ikhsan", "Kurnia", "Lukman", "Nanda", "Oki", "Pandu", "Rama", "Sandi", "Toni",
         "Umar", "Wisnu", "Yosef", "Zainal", "Andreas", "Benny", "Christian", "Doni", "Erwin", "Ferry",
         "Siti", "Nur", "Sri", "Dewi", "Ani", "Ayu", "Desi", "Eni", "Fitri", "Heni", "Ika", "Lina",
         "Mira", "Nia", "Okta", "Puspita", "Ratih", "Sinta", "Tuti", "Umi", "Vivi", "Wati", "Yanti",
         "Zaskia", "Agnes", "Bella", "Clara", "Diah", "Elsa", "Fanny", "Grace", "Hana", "Irma",
         "Juwita", "Kiki", "Lusi", "Marlina", "Nurul", "Oktavia", "Ririn")
LAST = ("Santoso", "Wijaya", "Saputra", "Pratama", "Hidayat", "Setiawan", "Nugraha", "Kurniawan",
        "Susilo", "Purnomo", "Hartono", "Gunadi", "Halim", "Tan", "Lim", "Sihombing", "Simatupang",
        "Nainggolan", "Pardede", "Situmorang", "Batubara", "Nasution", "Lubis", "Siregar", "Rangkuti",
        "Effendi", "Syahrial", "Fauzi", "Hakim", "Ramadhani", "Maulana", "Firdaus", "Utami", "Wulandari",
        "Anggraeni", "Permatasari", "Puspitasari", "Rahmawati", "Yulianti", "Kartini", "Suharto",
        "Subagyo", "Prabowo", "Wibisono", "Handayani", "Susanti", "Irawan", "Darmawan", "Gunawan",
        "Tjahjono", "Salim", "Chandra", "Sutrisno", "Mulyadi", "Suryana", "Kusnadi", "Sitorus",
        "Manullang", "Tambunan", "Aritonang")
NICK = {"Muhammad": "Mamat", "Ahmad": "Amat", "Budi": "Bud", "Agus": "Gus", "Hendra": "Hen",
        "Joko": "Jek", "Wahyu": "Yayu", "Fajar": "Jay", "Christian": "Chris", "Andreas": "Andre",
        "Siti": "Titi", "Nur": "Nunung", "Sri": "Cici", "Dewi": "Wiwi", "Fitri": "Pipit",
        "Yanti": "Yan", "Puspita": "Pita", "Oktavia": "Okta", "Marlina": "Lina", "Nurul": "Uul"}
COMMON = (("Muhammad", "Hidayat"), ("Siti", "Rahmawati"), ("Budi", "Santoso"), ("Agus", "Setiawan"),
          ("Dewi", "Lestari"), ("Sri", "Wahyuni"), ("Eko", "Prasetyo"), ("Nur", "Hidayah"),
          ("Ahmad", "Fauzi"), ("Dedi", "Kurniawan"), ("Ayu", "Wulandari"), ("Rudi", "Hartono"))
TITLES = ("Bpk.", "Pak", "Ibu", "Bu", "Sdr.", "Mr.", "Mrs.", "Hj.")
CITIES = ("Jakarta Selatan", "Jakarta Timur", "Jakarta Barat", "Bekasi", "Tangerang", "Depok", "Bogor",
          "Bandung", "Cimahi", "Surabaya", "Gresik", "Sidoarjo", "Semarang", "Solo", "Yogyakarta",
          "Medan", "Binjai", "Palembang", "Pekanbaru", "Padang", "Makassar", "Manado", "Denpasar",
          "Balikpapan", "Samarinda", "Pontianak", "Banjarmasin", "Malang")
CITY_W = np.array([9, 6, 6, 6, 5, 4, 4, 7, 1, 7, 1, 2, 4, 2, 3, 5, 1, 3, 2, 2, 3, 1, 2, 1, 1, 1, 1, 2], float)
DOMAINS = ("gmail.com", "yahoo.co.id", "yahoo.com", "hotmail.com", "outlook.com", "icloud.com", "ymail.com")
DOMAIN_W = np.array([0.58, 0.12, 0.08, 0.07, 0.06, 0.05, 0.04])
DOMAIN_TYPO = {"gmail.com": "gmial.com", "yahoo.co.id": "yaho.co.id", "yahoo.com": "yahooo.com",
               "hotmail.com": "hotmial.com", "outlook.com": "outlok.com", "icloud.com": "iclod.com",
               "ymail.com": "ymai.com"}
PREFIX = ("811", "812", "813", "814", "821", "822", "852", "853", "855", "856", "857", "858",
          "877", "878", "881", "882", "895", "896", "897", "898")


@dataclass(frozen=True)
class Mix:
    """One scenario: the knobs of :func:`generate` (see the module docstring)."""

    name: str
    role: str                       # "tune" (settings may be chosen on it) or "report"
    people: int = 3000
    shared_phone: float = 0.0
    second_account: float = 0.0
    coverage: dict = field(default_factory=lambda: COVERAGE)
    name_forms: float = 0.15
    single_name: float = 0.10
    namesakes: float = 0.02
    email_variants: float = 0.08
    second_phone: float = 0.05      # people with a second number used on some records
    second_email: float = 0.08      # people with a second address used on some records
    seed: int = 0


#: The named mixes. Tuning: ``tune_plain``, ``tune_households``, ``tune_sparse``; reporting only:
#: ``report_second_accounts``, ``report_sparse``, ``report_hard`` (never look at these to
#: choose a setting; they are what the benchmark table reports).
MIXES = {m.name: m for m in (
    Mix("tune_plain", "tune", seed=101),
    Mix("tune_households", "tune", shared_phone=0.08, second_account=0.03, namesakes=0.04, seed=102),
    Mix("tune_sparse", "tune", shared_phone=0.04, coverage=SPARSE, name_forms=0.2, single_name=0.12, seed=103),
    Mix("report_second_accounts", "report", shared_phone=0.03, second_account=0.08, name_forms=0.2, seed=201),
    Mix("report_sparse", "report", coverage=SPARSE, name_forms=0.25, single_name=0.15, seed=202),
    Mix("report_hard", "report", shared_phone=0.15, second_account=0.06, coverage=SPARSE, name_forms=0.3,
        single_name=0.15, namesakes=0.06, email_variants=0.15, seed=203),
)}
TUNING = tuple(k for k, m in MIXES.items() if m.role == "tune")
REPORTING = tuple(k for k, m in MIXES.items() if m.role == "report")


def _pick(rng, options, n, p=None):
    return np.asarray(options, dtype=object)[rng.choice(len(options), size=n, p=p)]


def _s(a) -> pd.Series:
    return pd.Series(np.asarray(a, dtype=object))


def generate(mix: Mix | str, people: int | None = None, seed: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """An identities table (the contract's columns) and its truth for one mix.

    Returns ``(identities, truth)``: ``identities`` has ``record_id``, ``source``,
    ``created_at``, ``email``, ``phone``, ``full_name``, ``city``, ``loyalty_id``;
    ``truth`` has ``record_id``, ``customer_id`` (the true person) and what was planted
    on the record (``shared_phone``, ``second_account``). Same mix and seed, same tables.
    """
    if isinstance(mix, str):
        mix = MIXES[mix]
    if people is not None or seed is not None:
        mix = replace(mix, people=people or mix.people, seed=mix.seed if seed is None else seed)
    rng = np.random.default_rng(mix.seed)
    n = mix.people
    # ------------------------------------------------------------------ people
    first = _pick(rng, FIRST, n)
    last = _pick(rng, LAST, n)
    common = rng.random(n) < mix.namesakes
    ci = rng.integers(0, len(COMMON), n)
    first = np.where(common, np.array([c[0] for c in COMMON], dtype=object)[ci], first)
    last = np.where(common, np.array([c[1] for c in COMMON], dtype=object)[ci], last)
    single = (rng.random(n) < mix.single_name) & ~common
    last = np.where(single, None, last)
    city = _pick(rng, CITIES, n, CITY_W / CITY_W.sum())
    dom = _pick(rng, DOMAINS, n, DOMAIN_W)
    dom2 = _pick(rng, DOMAINS, n, DOMAIN_W)
    efmt = rng.choice(4, size=n, p=[0.45, 0.25, 0.15, 0.15])
    enum, enum2 = rng.integers(1, 10000, n), rng.integers(1, 10000, n)
    phone = np.array([p + str(x).zfill(8) for p, x in zip(_pick(rng, PREFIX, n), rng.integers(0, 10 ** 8, n))],
                     dtype=object)
    phone2 = np.array([p + str(x).zfill(8) for p, x in zip(_pick(rng, PREFIX, n), rng.integers(0, 10 ** 8, n))],
                      dtype=object)
    card = np.array([f"LC{x}" for x in rng.integers(10 ** 8, 10 ** 9, n)], dtype=object)
    born = pd.Timestamp("2021-01-01", tz="Asia/Jakarta") + pd.to_timedelta(rng.integers(0, 1400, n), unit="D")
    # households: a sharer uses a host's phone on every record; most take the host's last
    # name and city (a family), a host is never a sharer; several sharers may share a host
    sharer = rng.random(n) < mix.shared_phone
    hosts = np.flatnonzero(~sharer)
    host = np.full(n, -1)
    host[sharer] = rng.choice(hosts, size=int(sharer.sum()))
    s_idx = np.flatnonzero(sharer)
    h_idx = host[s_idx]
    family = rng.random(len(s_idx)) < 0.7
    last[s_idx[family]] = last[h_idx[family]]
    city[s_idx] = np.where(rng.random(len(s_idx)) < 0.85, city[h_idx], city[s_idx])
    # a family member with the same first name as the host is redrawn (parents rarely do that)
    same = first[s_idx] == first[h_idx]
    first[s_idx[same]] = _pick(rng, FIRST, int(same.sum()))
    phone[s_idx] = phone[h_idx]
    phone2[s_idx] = phone[h_idx]
    has_card = rng.random(n) < 0.85
    # ------------------------------------------------------------------ records
    use = np.column_stack([rng.random(n) < USE[s] for s in SOURCES])
    none = ~use.any(axis=1)
    use[none, rng.integers(0, len(SOURCES), int(none.sum()))] = True
    pid, sj = np.nonzero(use)
    second = np.zeros(len(pid), dtype=bool)
    # second accounts: one more record in one of the person's systems (web, app or marketplace
    # most often), under an older address
    extra = np.flatnonzero(rng.random(n) < mix.second_account)
    if len(extra):
        # in one of the systems the person uses (web, app or marketplace most often)
        w = use[extra] * np.array([0.45, 0.15, 0.3, 0.05, 0.05]) + 1e-12
        cum = np.cumsum(w / w.sum(axis=1, keepdims=True), axis=1)
        xs = np.minimum((cum < rng.random(len(extra))[:, None]).sum(axis=1), len(SOURCES) - 1)
        pid = np.r_[pid, extra]
        sj = np.r_[sj, xs]
        second = np.r_[second, np.ones(len(extra), dtype=bool)]
    NR = len(pid)
    src = np.asarray(SOURCES, dtype=object)[sj]
    u = rng.random((NR, 16))
    cov = np.array([mix.coverage[s] for s in SOURCES])[sj]
    # ---- names
    f, l_ = first[pid].astype(object), last[pid].astype(object)
    full = np.where(pd.isna(l_), f, f + " " + np.where(pd.isna(l_), "", l_).astype(object))
    form = np.where(u[:, 0] < mix.name_forms, rng.integers(0, 8, NR), -1)
    has_last = ~pd.isna(l_)
    lstr = np.where(has_last, l_, "").astype(str)
    fstr = f.astype(str)
    name = full.astype(object)
    initial_first = np.char.add(np.char.add(np.array([s[0] for s in fstr]), ". "), lstr)
    initial_last = np.char.add(np.char.add(fstr, " "), np.char.add(np.array([s[:1] for s in lstr]), "."))
    nick = np.array([NICK.get(s, s) for s in fstr], dtype=object)
    name = np.where((form == 0) & has_last, initial_first, name)                     # B. Santoso
    name = np.where((form == 1) & has_last, initial_last, name)                      # Budi S.
    name = np.where(form == 2, f, name)                                              # first name only
    name = np.where(form == 3, np.where(has_last, nick + " " + lstr, nick), name)    # nickname
    tit = _pick(rng, TITLES, NR)
    name = np.where(form == 4, tit + " " + name.astype(str), name)                   # a title
    typo_pos = rng.integers(1, 4, NR)
    typod = np.array([s[:k] + s[k + 1:] if len(s) > k + 1 else s for s, k in zip(name.astype(str), typo_pos)],
                     dtype=object)
    name = np.where(form == 5, typod, name)                                          # a letter dropped
    name = np.where(form == 6, np.char.upper(name.astype(str)), name)                # capitals
    name = np.where(form == 7, "  " + np.char.lower(name.astype(str)) + " ", name)   # stray spaces, lower
    name = np.where(u[:, 1] < 0.05, None, name)
    # ---- e-mail: the person's address, sometimes their second one (second accounts: always)
    fl = np.char.lower(fstr)
    ll = np.char.lower(lstr)
    dot = np.where(has_last, np.char.add(np.char.add(fl, "."), ll), fl)
    cat = np.char.add(fl, ll)
    n1 = enum[pid].astype(str)
    n2 = enum2[pid].astype(str)
    alt = second | (u[:, 2] < mix.second_email)
    num = np.where(alt, n2, n1)
    ef = efmt[pid]
    # name-only addresses (format 3) are shared by namesakes; the others carry a number
    local = np.where(ef == 0, np.char.add(dot, num), np.where(ef == 1, np.char.add(cat, num),
                     np.where(ef == 2, np.char.add(np.char.add(fl, "_"), num),
                              np.where(alt, np.char.add(cat, num), cat))))
    d = np.where(alt & (u[:, 3] < 0.6), dom2[pid], dom[pid]).astype(str)
    ev = np.where(u[:, 4] < mix.email_variants, rng.integers(0, 4, NR), -1)
    is_gmail = d == "gmail.com"
    local = np.where((ev == 1) & is_gmail, np.char.replace(local, ".", ""), local)   # gmail ignores dots
    local = np.where((ev == 1) & is_gmail & (ef != 0),
                     np.array([s[:2] + "." + s[2:] for s in local]), local)
    local = np.where(ev == 2, np.char.add(local, np.where(u[:, 5] < 0.5, "+shop", "+promo")), local)
    d = np.where(ev == 3, np.array([DOMAIN_TYPO[x] for x in d]), d)
    email = np.char.add(np.char.add(local, "@"), d).astype(object)
    email = np.where(ev == 0, np.char.upper(email.astype(str)), email)
    email = np.where(u[:, 6] < cov[:, 0], email, None)
    # ---- phone
    has2 = rng.random(n) < mix.second_phone
    ph = np.where(has2[pid] & (u[:, 7] < 0.4), phone2[pid], phone[pid]).astype(str)
    fmt = rng.integers(0, 6, NR)
    a, b, c = (np.array([s[i:j] for s in ph]) for i, j in ((0, 3), (3, 7), (7, 20)))
    spelled = np.select([fmt == 0, fmt == 1, fmt == 2, fmt == 3, fmt == 4],
                        [np.char.add("0", ph), np.char.add("62", ph),
                         np.char.add(np.char.add(np.char.add(np.char.add("+62 ", a), " "), np.char.add(b, " ")), c),
                         np.char.add(np.char.add(np.char.add(np.char.add("0", a), "-"), np.char.add(b, "-")), c),
                         np.char.add("+62", ph)],
                        np.char.add(np.char.add(np.char.add("(0", a), ") "), np.char.add(b, c)))
    # second accounts are often opened without a phone, or with the same one
    ph_cov = np.where(second, cov[:, 1] * 0.5, cov[:, 1])
    phone_s = np.where(u[:, 8] < ph_cov, spelled.astype(object), None)
    # ---- loyalty card
    loyal = np.where(has_card[pid] & (u[:, 9] < cov[:, 2]) & ~second, card[pid], None)
    # ---- city, created
    cty = np.where(u[:, 10] < 0.75, city[pid], None)
    cty = np.where((u[:, 11] < 0.1) & ~pd.isna(cty), np.char.upper(cty.astype(str)), cty)
    days = np.where(second, -rng.integers(200, 900, NR), rng.exponential(150, NR).astype(int))
    created = born[pid] + pd.to_timedelta(days, unit="D") + pd.to_timedelta(rng.integers(0, 86400, NR), unit="s")
    order = rng.permutation(NR)
    rid = np.array([f"S{mix.seed:03d}-{i:06d}" for i in range(1, NR + 1)], dtype=object)
    ids = pd.DataFrame({
        "record_id": rid, "source": src[order], "created_at": pd.DatetimeIndex(created)[order],
        "email": email[order], "phone": phone_s[order], "full_name": name[order], "city": cty[order],
        "loyalty_id": loyal[order]})
    for col in ("record_id", "source", "email", "phone", "full_name", "city", "loyalty_id"):
        ids[col] = ids[col].astype("str")
    truth = pd.DataFrame({"record_id": rid, "customer_id": np.char.add("P", pid[order].astype(str)),
                          "shared_phone": sharer[pid][order] | np.isin(pid[order], host[sharer]),
                          "second_account": second[order]})
    truth["record_id"] = truth["record_id"].astype("str")
    truth["customer_id"] = truth["customer_id"].astype("str")
    return ids, truth


def _canonical_email(s: pd.Series) -> pd.Series:
    """Lower case, trimmed; ``+tags`` dropped; gmail dots dropped (gmail ignores both)."""
    e = s.str.strip().str.lower()
    user, dom = e.str.extract(r"^([^@]+)@(.+)$")[0], e.str.extract(r"^([^@]+)@(.+)$")[1]
    user = user.str.replace(r"\+.*$", "", regex=True)
    user = user.where(dom != "gmail.com", user.str.replace(".", "", regex=False))
    return (user + "@" + dom).astype("str")


def deterministic_rule(identities: pd.DataFrame) -> pd.DataFrame:
    """The baseline: same normalised e-mail, or same loyalty card, or same phone where
    the first names agree; connected components. Returns ``record_id``, ``customer_id``."""
    from omni_lib import identity as idn

    df = identities.reset_index(drop=True)
    rec = pd.DataFrame({"row": np.arange(len(df))})
    rec["email"] = _canonical_email(idn.normalize_email(df["email"])[0])
    rec["loyalty"] = idn.normalize_loyalty(df["loyalty_id"])
    first = idn.normalize_name(df["full_name"]).str.split(" ").str[0]
    rec["phone_first"] = (idn.normalize_phone(df["phone"])[0] + "|" + first).astype("str")
    labels = idn._components(len(rec), idn._key_edges(rec, ["email", "loyalty", "phone_first"]))
    return pd.DataFrame({"record_id": df["record_id"].astype("str"),
                         "customer_id": pd.Series(labels).astype("str").radd("D")})
